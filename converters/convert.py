"""Convert a trained Keras landmark model to a .tflite file with embedded landmark metadata.

    python -m converters.convert runs/pose/model.keras -o pose.tflite             # bitpacked (LCE)
    python -m converters.convert runs/pose/model.keras -o pose_float.tflite --format float

Only the final hourglass stack's heatmaps are exported. After converting, the file is run
through a real interpreter next to Keras and the agreement is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edge.backends import backend_names
from edge.cli import ArgumentParser, add_threads_argument, run_cli

FORMATS = ("lce", "float")


def _triple(text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers, got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected 1 or 3 numbers (R,G,B), got {text!r}")
    return values  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    from edge.skeletons import SKELETONS

    p = ArgumentParser(
        prog="python -m converters.convert",
        description="Convert a trained Keras landmark model (.keras, .h5 or SavedModel folder) to "
        "a .tflite file with embedded landmark metadata, then check it against Keras in a real "
        "interpreter.",
    )
    p.add_argument("model", type=Path, help="the trained Keras model")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output .tflite path (default: next to MODEL, as NAME.tflite, or NAME.float.tflite "
        "with --format float)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="lce",
        help="lce: bitpacked 1-bit ops (LceBconv2d), smallest and fastest with the LCE "
        "interpreter or the binland native library; float: standard TFLite builtin ops with "
        "the same math, for any stock runtime (default: lce)",
    )
    meta = p.add_argument_group(
        "metadata",
        "Stored in the .tflite. Defaults come from the sidecar that training writes next to the "
        "model (MODEL.landmarks.json, e.g. pose.keras.landmarks.json or pose.landmarks.json) "
        "if present; flags override it. With neither, the skeleton is guessed from the number "
        "of heatmaps (16 mpii16, 14 lsp14, 17 coco17, 68 ibug68, 98 wflw98).",
    )
    meta.add_argument(
        "--skeleton",
        choices=sorted(SKELETONS),
        default=None,
        help="landmark set the model predicts (names, edges, flip pairs)",
    )
    meta.add_argument("--name", default=None, help="model name stored in the metadata")
    meta.add_argument("--version", default=None, help="model version stored in the metadata")
    meta.add_argument(
        "--input-mean",
        type=_triple,
        default=None,
        metavar="R,G,B",
        help="per-channel mean subtracted from 0-255 pixels (sidecar or 0,0,0)",
    )
    meta.add_argument(
        "--input-std",
        type=_triple,
        default=None,
        metavar="R,G,B",
        help="per-channel divisor after the mean (sidecar or 255,255,255)",
    )
    meta.add_argument(
        "--input-color",
        choices=("RGB", "BGR"),
        default=None,
        help="channel order the model expects (sidecar or RGB)",
    )
    check = p.add_argument_group("check", "The comparison against Keras after converting.")
    check.add_argument(
        "--check-inputs",
        type=int,
        default=8,
        metavar="N",
        help="synthetic images to compare on; 0 skips the check (default: 8)",
    )
    check.add_argument(
        "--check-backend",
        choices=backend_names(),
        default=None,
        help="interpreter for the check (default: lce for --format lce, tflite for float)",
    )
    add_threads_argument(check, help="interpreter threads for the check")
    check.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 if fewer than 99%% of landmarks match Keras",
    )
    return p


def default_output(model: Path, fmt: str) -> Path:
    base = model.with_suffix("") if model.suffix else model
    return base.with_name(base.name + (".tflite" if fmt == "lce" else ".float.tflite"))


def _say(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace) -> int:
    from edge.errors import ModelError

    if not args.model.exists():  # answer before the slow TensorFlow import
        raise ModelError(f"model file not found: {args.model}")
    import tensorflow as tf

    from edge.backends import create_backend
    from training.artifacts import load_keras_model, load_sidecar

    from . import keras_model as km
    from .fidelity import check_fidelity
    from .tflite_metadata import op_counts, write_landmark_metadata

    tf.get_logger().setLevel("ERROR")
    if args.check_inputs < 0 or args.threads < 1:
        raise km.ConversionError("--check-inputs must be >= 0 and --threads >= 1")
    output = args.output or default_output(args.model, args.format)

    started = time.perf_counter()
    model = load_keras_model(args.model)
    km.check_float32(model)
    heatmaps = km.final_heatmap_model(model)
    sidecar, sidecar_path = load_sidecar(args.model)
    overrides = {
        "model_name": args.name,
        "model_version": args.version,
        "input_mean": args.input_mean,
        "input_std": args.input_std,
        "input_color": args.input_color,
    }
    metadata, notes = km.build_metadata(
        heatmaps,
        sidecar=sidecar,
        weights_format=args.format,
        skeleton=args.skeleton,
        overrides=overrides,
    )
    if sidecar_path is not None:
        notes.insert(0, f"metadata from {sidecar_path}")
    for note in notes:
        _say(f"note: {note}")
    _say(
        f"loaded {args.model} in {time.perf_counter() - started:.1f} s: "
        f"{len(model.outputs)} output(s), exporting the last, {heatmaps.count_params():,} "
        f"parameters, input {metadata.input_size}, heatmaps {metadata.heatmap_size} x "
        f"{metadata.num_outputs} ({metadata.skeleton})"
    )

    started = time.perf_counter()
    if args.format == "lce":
        from .lce import convert_lce

        flatbuffer = convert_lce(heatmaps)
    else:
        from .portable import convert_float

        flatbuffer = convert_float(heatmaps)
    flatbuffer = write_landmark_metadata(flatbuffer, metadata)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(flatbuffer)
    ops = op_counts(flatbuffer)
    _say(
        f"wrote {output} ({len(flatbuffer) / 1e6:.3f} MB, {args.format}) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    _say("ops: " + ", ".join(f"{name} x{count}" for name, count in ops.items()))
    if args.format == "lce":
        from .lce import binary_conv_layers

        bconvs, binary = ops.get("LceBconv2d", 0), len(binary_conv_layers(heatmaps))
        _say(f"binary convolutions: {bconvs} LceBconv2d for {binary} binary QuantConv2D layers")
        if bconvs < binary:
            # Read from the file itself: which layer variants LCE accelerates depends on its version.
            _say(
                f"warning: {binary - bconvs} binary layer(s) stayed float convolutions; LCE "
                "accelerates QuantConv2D with a sign input quantizer, a ste_sign or "
                "magnitude_aware_sign kernel quantizer and 'same' (pad_values 0 or 1) or 'valid' padding"
            )

    if args.check_inputs == 0:
        return 0
    started = time.perf_counter()
    backend_name = args.check_backend or ("lce" if args.format == "lce" else "tflite")
    backend = create_backend(backend_name, flatbuffer, num_threads=args.threads)
    report = check_fidelity(heatmaps, backend, metadata, num_inputs=args.check_inputs)
    _say(report.summary() + f" [{time.perf_counter() - started:.1f} s]")
    if report.same_landmarks < 0.99:
        _say(f"warning: fewer than 99% of {report.unit} decode as in Keras")
        if args.strict:
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # OSError: an unwritable output folder, a full disk...
    return run_cli(lambda: run(args), errors=(OSError,))


if __name__ == "__main__":
    # Set TF_USE_LEGACY_KERAS before TensorFlow loads, even when run as a plain script.
    import converters  # noqa: F401

    sys.exit(main())
