"""MediaPipe's SSD detectors run on a whole frame: BlazeFace and BlazePose's person detector.

:class:`SsdModel` letterboxes the frame into the detector's square input, runs it through
:mod:`edge.backends` and decodes every detection back to image pixels. The helpers are
MediaPipe's ``SsdAnchorsCalculator`` with fixed anchor sizes (:func:`ssd_anchors`) and
``TensorsToDetectionsCalculator`` with weighted non-maximum suppression (:func:`decode_ssd`),
as the published graph files configure them. The device's finders and ``training.label``'s
teachers both run their detectors through this one copy; :class:`SsdFinder` is what the
device's MediaPipe finders (BlazeFace, BlazePose's person detector) share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..boxes import iou
from ..errors import ModelError
from ..transform import CropBox, full_frame_box, normalise_input, warp_crop
from .base import Finder, teacher_file


@dataclass(frozen=True, eq=False)
class Detection:
    score: float
    box: np.ndarray  # (4,) x0, y0, x1, y1 in image pixels
    keypoints: np.ndarray  # (n, 2) image pixels


class SsdModel:
    """One MediaPipe SSD detector (.tflite): ``detect(image)`` -> :class:`Detection` list,
    best first.

    ``strides`` are the anchor layers' strides (BlazeFace short-range: (8, 16, 16, 16), 896
    anchors; the pose detector: (8, 16, 32, 32, 32), 2254 anchors); a file whose outputs do
    not have that many anchors is refused in one line. The input is RGB scaled to [-1, 1].
    """

    def __init__(
        self,
        path: str | Path,
        strides: tuple[int, ...],
        *,
        min_score: float = 0.5,
        overlap: float = 0.3,
        backend: str = "tflite",
        num_threads: int = 1,
        what: str = "an SSD detector",
    ) -> None:
        from ..backends import create_backend

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"file not found: {path}")
        self.path = path
        self._backend = create_backend(backend, path, num_threads=num_threads)
        self.size = int(self._backend.input_shape[1])
        self.anchors = ssd_anchors(self.size, strides)
        n = len(self.anchors)
        shapes = sorted(self._backend.output_shapes, key=lambda s: s[-1])
        if len(shapes) != 2 or tuple(shapes[0][1:]) != (n, 1) or shapes[1][1] != n:
            raise ModelError(f"{path} is not {what} ({n} anchors); its outputs are {shapes}")
        self.min_score, self.overlap = min_score, overlap

    @classmethod
    def teacher(
        cls,
        path: str | Path | None,
        strides: tuple[int, ...],
        *,
        stem: str,
        what: str,
        flag: str,
        **options,
    ) -> SsdModel:
        """The MediaPipe detector at ``path``, or (None) the teacher cache's ``stem``.tflite;
        ``what`` names it in errors and ``flag`` is the option that gives another file.
        ``options``: :class:`SsdModel`'s own (``min_score``, ``overlap``, ``backend``,
        ``num_threads``)."""
        return cls(teacher_file(path, stem, what, flag), strides, what=what, **options)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Every detection in the frame (letterboxed into the input), best first."""
        h, w = image_bgr.shape[:2]
        frame_box = full_frame_box(w, h)
        crop, _ = warp_crop(image_bgr, frame_box, (self.size, self.size))
        x = normalise_input(crop, "RGB", (127.5,) * 3, (127.5,) * 3)  # RGB in [-1, 1]
        outputs = sorted(self._backend.run_all(x), key=lambda o: o.shape[-1])
        logits, raw = outputs[0][:, 0], outputs[1]
        found = decode_ssd(
            raw, logits, self.anchors, self.size, min_score=self.min_score, overlap=self.overlap
        )
        return [
            Detection(
                score,
                letterbox_to_image(box.reshape(2, 2), frame_box).reshape(4),
                letterbox_to_image(kps, frame_box),
            )
            for score, box, kps in found
        ]


class SsdFinder(Finder):
    """A finder that runs one MediaPipe SSD detector (:class:`SsdModel`) on the whole frame.

    BlazeFace and BlazePose's person detector load alike (``path``, or None: the teacher
    cache's file, :func:`~edge.finders.base.teacher_file`) and take the same options, so
    they are set up here once; a subclass names its detector (the class attributes below)
    and turns :meth:`detections` into finds.
    """

    strides: ClassVar[tuple[int, ...]]  # the detector's anchor layers (see SsdModel)
    teacher_stem: ClassVar[str]  # its file in the teacher cache: TEACHER_STEM.tflite
    detector_name: ClassVar[str]  # what error messages call it
    path_flag: ClassVar[str]  # the command-line option that gives another file

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        margin: float = 1.25,
        min_score: float = 0.5,
        overlap: float = 0.3,
        backend: str = "tflite",
        num_threads: int = 1,
    ) -> None:
        super().__init__(margin=margin)
        self.detector = SsdModel.teacher(
            path,
            self.strides,
            stem=self.teacher_stem,
            what=self.detector_name,
            flag=self.path_flag,
            min_score=min_score,
            overlap=overlap,
            backend=backend,
            num_threads=num_threads,
        )
        self.path = self.detector.path

    def detections(self, image: np.ndarray) -> list[Detection]:
        """The detector's own output (box, keypoints) in image pixels, best first."""
        return self.detector.detect(image)


def ssd_anchors(input_size: int, strides: tuple[int, ...]) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] (x, y), in the order the model emits them.

    Layers that share a stride share one grid, and each layer adds two anchors per cell
    (aspect ratio 1 and the interpolated scale); with fixed anchor sizes only the centres
    matter. BlazeFace short-range: ``ssd_anchors(128, (8, 16, 16, 16))``, 896 anchors.
    """
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


def decode_ssd(
    raw: np.ndarray,
    logits: np.ndarray,
    anchors: np.ndarray,
    input_size: int,
    *,
    min_score: float,
    overlap: float = 0.3,
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Weighted-NMS detections in normalised input coordinates: [(score, box, keypoints)],
    best first; ``box`` is (x0, y0, x1, y1) and ``keypoints`` (n, 2).

    ``raw`` is (N, 4 + 2n): centre x, y, width, height, then n keypoints, in input pixels
    relative to the anchor centre; ``logits`` (N,) are clipped to +-100.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    r = np.asarray(raw)[keep].astype(np.float64) / input_size
    a = anchors[keep]
    centre = r[:, :2] + a
    half = r[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    kps = r[:, 4:].reshape(len(keep), -1, 2) + a[:, None, :]
    s = scores[keep]
    out = []
    for group in weighted_nms_groups(boxes, s, overlap):
        w = s[group]
        merged_box = (boxes[group] * w[:, None]).sum(0) / w.sum()
        merged_kps = (kps[group] * w[:, None, None]).sum(0) / w.sum()
        out.append((float(s[group[0]]), merged_box, merged_kps))
    return out


def weighted_nms_groups(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[list[int]]:
    """Indices of the boxes (x0, y0, x1, y1) merged into each detection, best first: the best
    remaining box and every remaining box overlapping it by IoU above ``overlap``."""
    order = list(np.argsort(-np.asarray(scores)))
    groups = []
    while order:
        ious = iou(boxes[order[0]], boxes[order])
        group = [i for i, v in zip(order, ious, strict=True) if v > overlap]
        groups.append(group)
        order = [i for i in order if i not in group]
    return groups


def letterbox_to_image(points01: np.ndarray, box: CropBox) -> np.ndarray:
    """Normalised [0, 1] coordinates of a letterboxed square crop back to image pixels."""
    x0 = box.center[0] - box.size / 2.0  # pixel edge of the box (pixel-centre convention)
    y0 = box.center[1] - box.size / 2.0
    p = np.asarray(points01, np.float64)
    return np.stack([x0 + p[..., 0] * box.size, y0 + p[..., 1] * box.size], axis=-1)
