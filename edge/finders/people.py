"""Finding people: MediaPipe BlazePose's person detector (``pose_detection.tflite``).

The detector finds a face box and four alignment keypoints per person: keypoint 0 is the
mid-hip, keypoint 1 lies on the circle around the hips that holds the whole body. MediaPipe's
``pose_detection_to_roi.pbtxt`` turns them into BlazePose's landmark ROI
(:func:`roi_from_alignment`: a square of twice that radius, turned so the body stands
upright, enlarged 1.25x); ``training.label``'s teacher uses exactly that.

Our pose models are trained on upright squares around their landmarks times ``box_margin``
(:func:`edge.transform.box_from_points`), so :class:`BlazePoseFinder` cuts that instead:
measured on 35 of the teacher's detections in six clips of ``shared/media/pose``, the
landmarks' box is 0.84 of the circle's diameter (quartiles 0.74 and 0.87) and its centre
sits 0.05 of it above the mid-hip.
"""

from __future__ import annotations

import numpy as np

from ..transform import CropBox
from .base import Found
from .ssd import Detection, SsdFinder

# The anchor layers of MediaPipe's pose detector (224x224 input, 2254 anchors).
POSE_DETECTOR_STRIDES = (8, 16, 32, 32, 32)
# BlazePose's ROI: the alignment circle's diameter times this (RectTransformationCalculator).
ROI_SCALE = 1.25
# The landmarks' box of a person against the alignment circle (see the module docstring).
BODY_SIDE = 0.84  # side of the landmarks' box / the circle's diameter
BODY_CENTRE_SHIFT = -0.05  # its centre below the mid-hip, in diameters (negative: above)


def roi_from_alignment(centre: np.ndarray, scale_point: np.ndarray) -> CropBox:
    """MediaPipe's AlignmentPointsRects + RectTransformation(1.25, square_long) rule.

    MediaPipe's rotation and :class:`~edge.transform.CropBox`'s agree: a positive angle turns
    the content counter-clockwise in the crop, which makes a body leaning clockwise upright.
    """
    d = np.asarray(scale_point, np.float64) - np.asarray(centre, np.float64)
    size = 2.0 * float(np.hypot(*d)) * ROI_SCALE
    rotation = np.pi / 2 - np.arctan2(-d[1], d[0])
    rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
    return CropBox(
        (float(centre[0]), float(centre[1])), max(size, 1.0), float(np.degrees(rotation))
    )


def body_rect(detection: Detection) -> tuple[float, float, float, float]:
    """The square (x, y, w, h) the person's landmarks are expected to fill."""
    hip = np.asarray(detection.keypoints[0], np.float64)
    diameter = 2.0 * float(np.hypot(*(detection.keypoints[1] - hip)))
    side = max(BODY_SIDE * diameter, 1.0)
    cx, cy = hip[0], hip[1] + BODY_CENTRE_SHIFT * diameter
    return (float(cx - side / 2), float(cy - side / 2), side, side)


class BlazePoseFinder(SsdFinder):
    """People through MediaPipe's BlazePose person detector, run by an :mod:`edge.backends`
    backend (3 MB, float). ``path`` None: ``pose_detection.tflite`` is looked up in the
    teacher cache (:func:`edge.host.teacher_dir`); loading, options and :meth:`detections`
    (the detector's own output: face box, alignment keypoints) are
    :class:`~edge.finders.ssd.SsdFinder`'s."""

    name = "blazepose"
    subject = "person"
    strides = POSE_DETECTOR_STRIDES
    teacher_stem = "pose_detection"
    detector_name = "BlazePose's person detector"
    path_flag = "--person-finder"

    def find(self, image: np.ndarray) -> list[Found]:
        found = []
        for d in self.detections(image):
            x, y, w, h = rect = body_rect(d)
            box = CropBox((x + w / 2, y + h / 2), w * self.margin)
            found.append(Found(d.score, rect, box))
        return found
