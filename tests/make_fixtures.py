"""Regenerate the tiny committed .tflite fixtures in tests/fixtures/ (needs the train extra).

    python tests/make_fixtures.py                 # rewrites tests/fixtures/*.tflite
    python tests/make_fixtures.py --out DIR       # writes them elsewhere (tests/test_fixtures.py)

The edge tests run on these files with only ``pip install ".[edge,dev]"``: no TensorFlow, no
larq (a Raspberry Pi has neither). Each is a small network of the project's kind (a float
stem, two residual 3x3 blocks, binary or float, a 1x1 heatmap head; 64x64 input, 16x16
heatmaps; untrained, seeded weights, BatchNorm statistics drawn from a seeded generator as a
trained model would have them) converted by the real converter CLI, so it carries the
landmark metadata a trained model has, and the bitpacked one LCE's custom ops:

* ``pose_float.tflite``: MPII-16, ``--format float`` (stock TFLite ops);
* ``pose_lce.tflite``: MPII-16, binary convolutions, ``--format lce`` (bitpacked LceBconv2d);
* ``face_float.tflite``: iBUG-68, ``--format float``;
* ``person_finder_float.tflite``: a 1-bit finder's kind of file (metadata task ``finder``, class
  ``person``, the finder codec at stride 4: 1 + 9 output channels), ``--format float``, its
  metadata from a sidecar as a ``training.finder`` run writes one.

The same seeds give the same network: tests/test_fixtures.py checks that the committed files
are what this script makes, to the bit but for the last bits of the float constants the
converter folds (they depend on the host's CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
# file name -> (skeleton, or "finder:" and the classes it finds; converter format)
FIXTURES = {
    "pose_float.tflite": ("mpii16", "float"),
    "pose_lce.tflite": ("mpii16", "lce"),
    "face_float.tflite": ("ibug68", "float"),
    "person_finder_float.tflite": ("finder:person", "float"),
}
SEED = 14


def finder_metadata(classes: tuple[str, ...], name: str):
    """A finder's metadata for the tiny network (64 px input, stride 4), as a sidecar holds it."""
    from edge.finder_codec import FinderCodec
    from edge.metadata import LandmarkMetadata

    codec = FinderCodec(input_size=64, stride=4, num_classes=len(classes))
    return LandmarkMetadata.for_finder(
        classes, codec, input_size=(64, 64), heatmap_size=(16, 16), model_name=name
    )


def build_keras(path: Path, skeleton: str, *, binary: bool, seed: int = SEED) -> None:
    """The tiny network for ``skeleton`` (or a finder's channels for "finder:CLASSES"), saved
    as .keras (imports TensorFlow and larq)."""
    import larq as lq
    import numpy as np
    import tensorflow as tf

    from edge.skeletons import get_skeleton

    if skeleton.startswith("finder:"):
        outputs = finder_metadata(tuple(skeleton[7:].split("+")), "").num_outputs
    else:
        outputs = get_skeleton(skeleton).num_landmarks
    tf.keras.utils.set_random_seed(seed)

    def conv(x, filters):
        if not binary:
            return tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        return lq.layers.QuantConv2D(
            filters,
            3,
            padding="same",
            pad_values=1.0,
            use_bias=False,
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign",
            kernel_constraint="weight_clip",
        )(x)

    bn = tf.keras.layers.BatchNormalization
    inputs = tf.keras.Input((64, 64, 3))
    x = tf.keras.layers.Conv2D(32, 5, strides=2, padding="same")(inputs)  # float stem
    x = tf.keras.layers.MaxPool2D()(tf.keras.layers.ReLU()(bn()(x)))  # 16x16
    for _ in range(2):  # residual blocks, binary or float
        x = tf.keras.layers.Add()([x, bn()(conv(bn()(x), 32))])
    heads = tf.keras.layers.Conv2D(outputs, 1)(x)
    model = tf.keras.Model(inputs, heads)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, bn):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                    (rng.standard_normal(beta.shape) * 0.3).astype(np.float32),
                    (rng.standard_normal(mean.shape) * 0.3).astype(np.float32),
                    rng.uniform(0.5, 1.5, var.shape).astype(np.float32),
                ]
            )
    model.save(path)


def make(out: Path) -> list[Path]:
    """Build and convert every fixture into ``out``; returns the files written."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import converters  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
    from converters.convert import main as convert

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="binland-fixtures-") as tmp:
        for name, (skeleton, fmt) in FIXTURES.items():
            keras = Path(tmp) / f"{Path(name).stem}.keras"
            build_keras(keras, skeleton, binary=fmt == "lce")
            target = out / name
            if skeleton.startswith("finder:"):  # the metadata from a sidecar, as training's
                meta = finder_metadata(tuple(skeleton[7:].split("+")), keras.stem)
                keras.with_suffix(".landmarks.json").write_text(meta.to_json())
                what = []
            else:
                what = ["--skeleton", skeleton]
            status = convert(
                [
                    str(keras),
                    "-o",
                    str(target),
                    "--format",
                    fmt,
                    *what,
                    "--name",
                    f"fixture-{Path(name).stem}",
                    "--version",
                    "1",
                    "--check-inputs",
                    "0",
                ]
            )
            if status != 0:
                raise SystemExit(f"converting {name} failed (status {status})")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=FIXTURES_DIR, help="folder to write into")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    for path in make(args.out):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
