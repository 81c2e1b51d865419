"""edge.pipeline.LandmarkPipeline: the one per-frame chain behind LandmarkModel.predict,
python -m edge.live and edge.bench, on the committed fixtures (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest
from edge_fixtures import FACE_FLOAT, POSE_FLOAT

from edge.codec import HeatmapCodec
from edge.model import LandmarkModel
from edge.pipeline import STAGES, LandmarkPipeline
from edge.smoothing import OneEuroFilter
from edge.sources import Frame
from edge.sources.demo import DemoSource
from edge.timing import StageTimes
from edge.tracking import LandmarkTracker
from edge.transform import CropBox, full_frame_box


@pytest.fixture(scope="module")
def model() -> LandmarkModel:
    return LandmarkModel(POSE_FLOAT, num_threads=1)


class Oracle:
    """Stands in for the network: heatmaps with every landmark at fixed crop pixels."""

    def __init__(self, model, crop_points):
        codec = HeatmapCodec(model.metadata.input_size, model.metadata.heatmap_size)
        self.maps = codec.encode(np.asarray(crop_points, float))[0]
        self.calls = 0

    def __call__(self, crops):
        self.calls += len(crops)
        return np.repeat(self.maps[None], len(crops), axis=0)


def test_predict_is_the_pipeline_without_tracking_or_smoothing(model):
    image = DemoSource(size=(320, 240)).read().image
    box = CropBox((150.0, 110.0), 120.0, 10.0)
    result = LandmarkPipeline(model).process(image, box=box)
    landmarks = model.predict(image, box)
    np.testing.assert_array_equal(result.points, landmarks.points)
    np.testing.assert_array_equal(result.scores, landmarks.scores)
    assert result.box == landmarks.box == box and not result.tracking
    assert set(result.timings) == {"crop", "inference", "decode"}
    assert all(t > 0 for t in result.timings.values())
    assert model.predict(image).box == full_frame_box(320, 240)


def test_landmarks_come_back_in_frame_pixels(model):
    """The oracle puts every landmark on crop pixel (21.5, 37.5), the centre of heatmap cell
    (5, 9): a 64-pixel crop of a box of side 128 centred on (100, 80) maps it to
    (100 + (21.5 - 31.5) * 2, 80 + (37.5 - 31.5) * 2)."""
    pipeline = LandmarkPipeline(model)
    pipeline.infer = Oracle(model, [[21.5, 37.5]] * 16)
    result = pipeline.process(np.zeros((200, 240, 3), np.uint8), box=CropBox((100.0, 80.0), 128.0))
    np.testing.assert_allclose(result.points, [[80.0, 92.0]] * 16, atol=1e-6)


def test_tracking_and_smoothing_are_switched_by_arguments(model):
    source = DemoSource(size=(320, 240))
    frames = [source.read() for _ in range(6)]
    oracle_points = np.array([[20.0 + i, 12.0 + 2 * i] for i in range(16)])

    def run(**kwargs):
        pipeline = LandmarkPipeline(model, **kwargs)
        pipeline.infer = Oracle(model, oracle_points)
        times = StageTimes()
        return [pipeline.process(f, times) for f in frames], times

    plain, times = run()
    assert {r.box for r in plain} == {full_frame_box(320, 240)} and not any(
        r.tracking for r in plain
    )
    assert "tracking" not in times and "smoothing" not in times

    tracked, times = run(tracker=LandmarkTracker(margin=1.25, min_score=0.0, lost_below=0.0))
    assert [r.tracking for r in tracked] == [True] * 6
    assert tracked[1].box != tracked[0].box  # the second crop comes from the first landmarks
    assert "tracking" in times and "smoothing" not in times

    smoothed, times = run(smoother=OneEuroFilter())
    assert "smoothing" in times and set(times.stats) <= set(STAGES)
    np.testing.assert_array_equal(smoothed[0].points, smoothed[0].raw_points)  # first: as is
    for r in smoothed:
        assert r.points is not r.raw_points


def test_unrelated_stills_are_neither_tracked_nor_smoothed(model):
    pipeline = LandmarkPipeline(
        model,
        tracker=LandmarkTracker(margin=1.25, min_score=0.0, lost_below=0.0),
        smoother=OneEuroFilter(),
    )
    pipeline.infer = Oracle(model, [[30.0, 30.0]] * 16)
    image = np.zeros((100, 100, 3), np.uint8)
    for i in range(3):
        result = pipeline.process(Frame(image, float(i), i), continuous=False)
        assert result.box == full_frame_box(100, 100) and not result.tracking
        np.testing.assert_array_equal(result.points, result.raw_points)


def test_no_face_means_no_inference():
    model = LandmarkModel(FACE_FLOAT, num_threads=1)
    tracker = LandmarkTracker(margin=1.25, detector=lambda image: None)
    pipeline = LandmarkPipeline(model, tracker=tracker, smoother=OneEuroFilter())
    pipeline.infer = oracle = Oracle(model, [[30.0, 30.0]] * 68)
    result = pipeline.process(np.zeros((120, 160, 3), np.uint8))
    assert result.box is None and result.points is None and oracle.calls == 0
    assert set(result.timings) == {"crop"}


def test_a_better_probe_replaces_the_track(model):
    tracker = LandmarkTracker(margin=1.25, min_score=0.0, lost_below=0.0, probe_every=1)
    pipeline = LandmarkPipeline(model, tracker=tracker)
    codec = HeatmapCodec((64, 64), (16, 16))
    good = codec.encode(np.tile([[32.0, 32.0]], (16, 1)))[0]
    weak = good * 0.2
    boxes = []

    def infer(crops):
        # The tracked crop comes first, the probe second: the probe scores higher.
        boxes.append(len(crops))
        return weak[None] if len(boxes) % 2 else good[None]

    pipeline.infer = infer
    image = np.zeros((240, 320, 3), np.uint8)
    first = pipeline.process(Frame(image, 0.0, 0))  # lost: a search box, no probe
    second = pipeline.process(Frame(image, 0.1, 1))  # tracked, plus a probe that wins
    assert first.tracking and second.tracking
    assert second.scores.mean() == pytest.approx(good.max(), rel=1e-3)


def test_the_flip_test_predicts_a_mirrored_crop_as_the_mirror_of_the_crop():
    """LandmarkModel(flip_test=True) averages each crop's heatmaps with its mirror's (mirrored
    back, left and right swapped): so its heatmaps of a mirrored crop are exactly the mirror
    of the crop's, left and right swapped, which a plain 1-bit network's are not; and the
    landmarks predict() finds with it differ from the plain model's. The bundled model
    (bitpacked, through the delegate) on the demo figure."""
    import cv2

    from edge.cli import BUNDLED
    from edge.skeletons import get_skeleton
    from edge.transform import crop_matrix

    source = DemoSource()
    for _ in range(40):  # the figure mid-walk, one arm raised
        image = source.read().image
    box = CropBox((300.0, 250.0), 420.0)
    plain = LandmarkModel(BUNDLED["pose"], num_threads=1)
    flipped = LandmarkModel(BUNDLED["pose"], num_threads=1, flip_test=True)
    size = plain.metadata.input_size
    crop = cv2.warpAffine(image, crop_matrix(box, size), size)[None]
    mirror = np.ascontiguousarray(crop[:, :, ::-1])
    perm = get_skeleton(plain.metadata.skeleton).flip_permutation()

    def asymmetry(model: LandmarkModel) -> float:
        a, b = model.predict_heatmaps(crop), model.predict_heatmaps(mirror)
        return float(np.abs(b[:, :, ::-1, :][..., perm] - a).max())

    assert asymmetry(flipped) < 1e-6
    assert asymmetry(plain) > 0.05
    with_flip, without = flipped.predict(image, box), plain.predict(image, box)
    assert np.all(np.isfinite(with_flip.points)) and len(with_flip.points) == len(perm)
    assert np.abs(with_flip.points - without.points).max() > 0.5
