"""Reproduce the bundled face-parts model, edge/models/faceparts.tflite, end to end.

    python examples/train_faceparts.py                    # label, train, convert, evaluate
    python examples/train_faceparts.py --install          # ... and copy it into edge/models

Steps, each an ordinary CLI of this project (run them by hand to change one):

1. ``python -m training.label faceparts ../shared/media/face --out data/real_faceparts
   --split configs/splits/real_media.yaml --every 3 --max-per-source 100``: face-mesh and
   selfie-segmentation teacher labels (resumes where a previous run stopped);
2. ``python -m training.train --config configs/faceparts.yaml --out runs/faceparts``
   (about an hour on 2 busy CPU cores: 3,000 steps of 16 at ~1.1 s);
3. ``python -m converters.convert runs/faceparts/model.keras -o runs/faceparts/faceparts.tflite``;
4. ``python -m training.evaluate`` on the held-out real clips (``label-map``, split ``valid``)
   and on synthetic validation faces (``synthetic-faceparts``), metrics and pictures under
   ``runs/faceparts/eval_*``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from edge.cli import ArgumentParser, run_cli  # noqa: E402
from edge.errors import EdgeError  # noqa: E402

MEDIA = REPO.parent / "shared" / "media" / "face"


class StepError(EdgeError):
    """A step's CLI failed; it printed why above."""


def step(*args: str) -> None:
    print("$", " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, check=False)
    if done.returncode != 0:
        raise StepError(f"step failed ({done.returncode}): python -m {' '.join(args)}")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python examples/train_faceparts.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--media", type=Path, default=MEDIA, help="folder of real face clips")
    p.add_argument("--out", type=Path, default=Path("runs/faceparts"), help="run folder")
    p.add_argument("--install", action="store_true", help="copy the model into edge/models")
    p.add_argument("overrides", nargs="*", help="training config overrides, e.g. epochs=2")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(
        lambda: make(args),
        interrupted=f"interrupted; rerun the same command to continue from {args.out}",
    )


def make(args) -> None:
    if not args.media.is_dir():
        raise StepError(f"no face clips in {args.media} (pass --media)")
    step(
        "training.label",
        "faceparts",
        str(args.media),
        "--out",
        "data/real_faceparts",
        "--split",
        "configs/splits/real_media.yaml",
        "--every",
        "3",
        "--max-per-source",
        "100",
    )
    resume = ["--resume"] if (args.out / "checkpoints").is_dir() else []
    step(
        "training.train",
        "--config",
        "configs/faceparts.yaml",
        "--out",
        str(args.out),
        *resume,
        *args.overrides,
    )
    model = args.out / "faceparts.tflite"
    step("converters.convert", str(args.out / "model.keras"), "-o", str(model))
    step(
        "training.evaluate",
        "--model",
        str(model),
        "--dataset",
        "label-map",
        "--data",
        "data/real_faceparts",
        "--split",
        "valid",
        "--out",
        str(args.out / "eval_real"),
    )
    step(
        "training.evaluate",
        "--model",
        str(model),
        "--dataset",
        "synthetic-faceparts",
        "--option",
        "size=200",
        "--option",
        "image_size=160",
        "--out",
        str(args.out / "eval_synthetic"),
    )
    if args.install:
        shutil.copyfile(model, REPO / "edge" / "models" / "faceparts.tflite")
        print(f"installed {REPO / 'edge' / 'models' / 'faceparts.tflite'}")


if __name__ == "__main__":
    sys.exit(main())
