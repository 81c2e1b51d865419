"""BlazePose as a teacher: person detector -> rotated ROI -> 33 landmarks, tracked in video.

The ROI rules are MediaPipe's published graph files (``pose_detection_to_roi.pbtxt`` and
``pose_landmarks_to_roi.pbtxt``): the detector's keypoint 0 (mid hip) is the ROI centre and
keypoint 1 encodes size and rotation; the box side is twice their distance, turned so that
the hip-to-scale-point vector points up (``rotation = 90 deg - atan2(-dy, dx)``), then
enlarged 1.25x (:func:`edge.finders.people.roi_from_alignment`). The person detector is the
device's own BlazePose finder (:class:`edge.finders.people.BlazePoseFinder`: one copy of its
anchors and decoding). In video the next ROI comes the same way from the landmark model's two
auxiliary points (33: hip centre, 34: scale point) until its pose presence drops below
``min_presence``, when the detector runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.finders.people import BlazePoseFinder, roi_from_alignment
from edge.transform import CropBox, apply_affine, invert_affine, normalise_input, warp_crop

from .teacher_models import load_interpreter, teacher_model
from .tracking import TrackingTeacher, sigmoid


@dataclass(frozen=True)
class BlazePoseResult:
    points: np.ndarray  # (33, 2) image pixels (pixel-centre convention)
    visibility: np.ndarray  # (33,) in [0, 1]: the point is in view and not occluded
    presence: float  # the model's confidence that a person is in the ROI
    roi: CropBox  # the crop the landmarks came from
    auxiliary: np.ndarray  # (2, 2) hip centre and scale point: the next frame's ROI
    mask: np.ndarray | None = None  # (256, 256) person mask in ROI crop coordinates


class BlazePoseTeacher(TrackingTeacher[BlazePoseResult]):
    """``process(frame)`` -> :class:`BlazePoseResult` or None; keeps a track across calls.

    >>> teacher = BlazePoseTeacher()
    >>> for frame in frames:
    ...     result = teacher.process(frame)   # None: nobody found
    >>> teacher.reset()                       # before an unrelated clip or photo
    """

    def __init__(
        self,
        *,
        min_detection: float = 0.5,
        min_presence: float = 0.5,
        num_threads: int = 1,
        with_mask: bool = False,
    ) -> None:
        self._finder = BlazePoseFinder(
            teacher_model("pose_detection"), min_score=min_detection, num_threads=num_threads
        )
        self._landmarker = load_interpreter(teacher_model("pose_landmark_full"), num_threads)
        out = {d["name"]: d["index"] for d in self._landmarker.get_output_details()}
        self._out_landmarks, self._out_presence = out["Identity"], out["Identity_1"]
        self._out_mask = out["Identity_2"]
        self._input = self._landmarker.get_input_details()[0]["index"]
        self.min_presence = min_presence
        self.with_mask = with_mask

    def detect(self, image_bgr: np.ndarray) -> CropBox | None:
        """ROI of the most confident person in the frame, or None."""
        rois = self.detect_all(image_bgr)
        return rois[0] if rois else None

    def detect_all(self, image_bgr: np.ndarray) -> list[CropBox]:
        """ROIs of every person the detector finds, the most confident first."""
        found = self._finder.detections(image_bgr)
        return [roi_from_alignment(d.keypoints[0], d.keypoints[1]) for d in found]

    def landmarks(self, image_bgr: np.ndarray, roi: CropBox) -> BlazePoseResult:
        crop, to_crop = warp_crop(image_bgr, roi, (256, 256))
        x = normalise_input(crop[None])  # RGB in [0, 1]
        self._landmarker.set_tensor(self._input, x)
        self._landmarker.invoke()
        raw = self._landmarker.get_tensor(self._out_landmarks).reshape(39, 5)
        presence = float(self._landmarker.get_tensor(self._out_presence).reshape(-1)[0])
        if not 0.0 <= presence <= 1.0:  # a logit in some exports
            presence = float(sigmoid(presence))
        # Outputs are in input pixels with 0 at the crop's left edge; our pixel centres are
        # integers, so shift by half a pixel before mapping back to the image.
        crop_points = raw[:, :2].astype(np.float64) - 0.5
        points = apply_affine(invert_affine(to_crop), crop_points)
        mask = None
        if self.with_mask:
            mask = sigmoid(self._landmarker.get_tensor(self._out_mask)[0, :, :, 0])
        return BlazePoseResult(
            points[:33], sigmoid(raw[:33, 3]), presence, roi, points[33:35], mask
        )

    def next_roi(self, result: BlazePoseResult) -> CropBox:
        return roi_from_alignment(result.auxiliary[0], result.auxiliary[1])
