"""MediaPipe-style SSD detectors (BlazePose's person detector, BlazeFace) run on a whole frame.

Anchors, decoding and weighted non-maximum suppression are :mod:`edge.detectors`' (one copy
for the device's BlazeFace and the teachers), as the published graph files configure them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.detectors import decode_ssd, letterbox_to_image, ssd_anchors
from edge.transform import full_frame_box, normalise_input, warp_crop

__all__ = ["Detection", "detect", "load_interpreter", "ssd_anchors"]


@dataclass(frozen=True)
class Detection:
    score: float
    box: np.ndarray  # (4,) x0, y0, x1, y1 in image pixels
    keypoints: np.ndarray  # (n, 2) image pixels


def detect(
    interpreter,
    image_bgr: np.ndarray,
    anchors: np.ndarray,
    *,
    min_score: float,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> list[Detection]:
    """Run an SSD detector on the whole frame, letterboxed, best detection first."""
    inp = interpreter.get_input_details()[0]
    size = int(inp["shape"][1])
    frame_box = full_frame_box(image_bgr.shape[1], image_bgr.shape[0])
    crop, _ = warp_crop(image_bgr, frame_box, (size, size))
    lo, hi = value_range  # RGB scaled to [lo, hi]
    x = normalise_input(crop[None], "RGB", (-lo * 255.0 / (hi - lo),) * 3, (255.0 / (hi - lo),) * 3)
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    outs = sorted(interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
    raw = interpreter.get_tensor(outs[0]["index"])[0]
    logits = interpreter.get_tensor(outs[1]["index"])[0, :, 0]
    found = decode_ssd(raw, logits, anchors, size, min_score=min_score)
    return [
        Detection(
            score,
            letterbox_to_image(box.reshape(2, 2), frame_box).reshape(4),
            letterbox_to_image(kps, frame_box),
        )
        for score, box, kps in found
    ]


def load_interpreter(path, num_threads: int = 1):
    """A stock-runtime interpreter for a float teacher model (no delegate needed)."""
    from edge.backends.tflite import choose_runtime, interpreter_api

    cls, _ = interpreter_api(choose_runtime())
    interpreter = cls(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter
