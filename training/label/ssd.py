"""MediaPipe-style SSD detectors (BlazePose's person detector, BlazeFace): anchors, decoding
and weighted non-maximum suppression, as the published graph files configure them.

The anchors follow MediaPipe's ``SsdAnchorsCalculator`` with ``fixed_anchor_size``: layers
that share a stride share one grid, and each layer adds two anchors per cell (aspect ratio 1
and the interpolated scale). With fixed sizes only the centres matter. Raw box values are in
input pixels relative to the anchor centre (``TensorsToDetectionsCalculator`` with the
input size as every scale); scores are logits clipped to +-100.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.transform import CropBox, full_frame_box


def ssd_anchors(input_size: int, strides: tuple[int, ...]) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] (x, y), in the order the model emits them."""
    centres = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        per_cell = 0
        while i < len(strides) and strides[i] == stride:
            per_cell += 2
            i += 1
        grid = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        c = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(c, per_cell, axis=0))
    return np.concatenate(centres)


@dataclass(frozen=True)
class Detection:
    score: float
    box: np.ndarray  # (4,) x0, y0, x1, y1 in image pixels
    keypoints: np.ndarray  # (n, 2) image pixels


def decode(
    raw: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    *,
    min_score: float,
    overlap: float = 0.3,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Weighted-NMS detections in normalised input coordinates: [(score, box, keypoints)].

    ``raw`` is (N, 4 + 2n): centre x, y, width, height, then n keypoints.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    r = raw[keep].astype(np.float64) / input_size
    a = anchors[keep]
    centre = r[:, :2] + a
    half = r[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    kps = r[:, 4:].reshape(len(keep), -1, 2) + a[:, None, :]
    s = scores[keep]
    order = list(np.argsort(-s))
    out = []
    while order:
        best = order[0]
        iou = _iou(boxes[best], boxes[order])
        group = [i for i, v in zip(order, iou, strict=True) if v > overlap]
        w = s[group]
        merged_box = (boxes[group] * w[:, None]).sum(0) / w.sum()
        merged_kps = (kps[group] * w[:, None, None]).sum(0) / w.sum()
        out.append((float(s[best]), merged_box, merged_kps))
        order = [i for i in order if i not in group]
    return out


def letterbox_to_image(points01: np.ndarray, box: CropBox) -> np.ndarray:
    """Normalised [0, 1] coordinates of a letterboxed square crop back to image pixels."""
    x0 = box.center[0] - box.size / 2.0  # pixel edge of the box (pixel-centre convention)
    y0 = box.center[1] - box.size / 2.0
    p = np.asarray(points01, np.float64)
    return np.stack([x0 + p[..., 0] * box.size, y0 + p[..., 1] * box.size], axis=-1)


def detect(
    interpreter,
    image_bgr: np.ndarray,
    anchors: np.ndarray,
    *,
    min_score: float,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> list[Detection]:
    """Run an SSD detector on the whole frame, letterboxed, best detection first."""
    from edge.transform import warp_crop

    inp = interpreter.get_input_details()[0]
    size = int(inp["shape"][1])
    frame_box = full_frame_box(image_bgr.shape[1], image_bgr.shape[0])
    crop, _ = warp_crop(image_bgr, frame_box, (size, size))
    lo, hi = value_range
    x = crop[None, :, :, ::-1].astype(np.float32) * ((hi - lo) / 255.0) + lo
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    outs = sorted(interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
    raw = interpreter.get_tensor(outs[0]["index"])[0]
    logits = interpreter.get_tensor(outs[1]["index"])[0, :, 0]
    found = decode(raw, logits, anchors, size, min_score=min_score)
    return [
        Detection(score, letterbox_to_image(box.reshape(2, 2), frame_box).reshape(4),
                  letterbox_to_image(kps, frame_box))
        for score, box, kps in found
    ]  # fmt: skip


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=1)

    def area(b: np.ndarray) -> np.ndarray:
        return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)

    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def load_interpreter(path, num_threads: int = 1):
    """A stock-runtime interpreter for a float teacher model (no delegate needed)."""
    from edge.backends.tflite import _interpreter_api, choose_runtime

    cls, _ = _interpreter_api(choose_runtime())
    interpreter = cls(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter
