"""benchmarks.tracked's scoring rules (issue 24): a frame where our chain gave no landmarks
misses every joint, for the model and for the mean shape beside it; the mean shape is placed
in our crop of each frame."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow  # training.scoring and training.validation: the train extra


def _pose() -> np.ndarray:
    """An upright MPII-16 figure, 200 px tall, in frame pixels."""
    from edge.skeletons import MPII16

    where = {
        "right_ankle": (90, 300), "right_knee": (92, 250), "right_hip": (95, 200),
        "left_hip": (115, 200), "left_knee": (118, 250), "left_ankle": (120, 300),
        "pelvis": (105, 200), "thorax": (105, 140), "upper_neck": (105, 125),
        "head_top": (105, 100), "right_wrist": (70, 200), "right_elbow": (75, 170),
        "right_shoulder": (90, 140), "left_shoulder": (120, 140), "left_elbow": (135, 170),
        "left_wrist": (140, 200),
    }  # fmt: skip
    return np.array([where[name] for name in MPII16.landmarks], np.float64)


def test_a_frame_without_our_landmarks_is_a_miss_for_us_and_for_the_mean_shape():
    from benchmarks.tracked import ClipScore, _cells
    from edge.skeletons import MPII16
    from training import metrics
    from training.validation import MeanShape

    gt = _pose()
    crop = np.array([105.0, 200.0, 260.0, 0.0])  # [cx, cy, side, rotation]
    # The mean shape is this very figure: placed in our crop it lands on the truth.
    shape = metrics.to_box_frame(gt[None], crop[None])[0]
    mean = MeanShape(shape, np.ones(16), "the figure itself", 1)
    found = ClipScore("clip", frames=2, scored=2, followed=1, covered=1)
    found.points = [gt + 2.0, np.full((16, 2), np.nan)]  # the second frame: nothing from us
    found.truth, found.visible = [gt, gt], [np.ones(16, bool)] * 2
    found.crops = [crop, np.full(4, np.nan)]
    frames, followed, ours, mean_shape = _cells("pose", [found], mean, MPII16)
    assert (frames, followed) == ("2", "50.0")
    assert float(ours) == pytest.approx(50.0) and float(mean_shape) == pytest.approx(50.0)
    # Followed in both frames: both score every limb joint.
    found.points[1], found.crops[1], found.followed = gt - 2.0, crop, 2
    assert _cells("pose", [found], mean, MPII16) == ["2", "100.0", "100.0", "100.0"]
