"""The finder codec (edge.finder_codec): encode -> decode gives back the objects, in image
pixels through the letterbox, with the crop's rotation; the finder metadata record and the
model class edge opens it with. No TensorFlow."""

import json

import numpy as np
import pytest

from edge.finder_codec import (
    REGRESSIONS,
    FinderCodec,
    Found,
    letterbox,
    merge_finds,
    tile_boxes,
    transform_object,
)
from edge.transform import CropBox, apply_affine, crop_matrix, invert_affine


def as_logits(target: np.ndarray, num_classes: int) -> np.ndarray:
    """A network output that says exactly what the target says: heatmaps as logits, the
    regression weight channel dropped."""
    out = target[..., :-1].astype(np.float64).copy()
    p = np.clip(out[..., :num_classes], 1e-6, 1 - 1e-6)
    out[..., :num_classes] = np.log(p / (1 - p))
    return out.astype(np.float32)


def people_in_a_wide_frame() -> tuple[tuple[int, int], list[Found]]:
    """A 640x360 frame with four people: one upright, one leaning (crop turned 30 degrees),
    a small one, and one whose box touches the frame's right edge."""
    shape = (360, 640)
    objects = [
        Found(1.0, (100.0, 60.0, 80.0, 250.0), CropBox((140.0, 190.0), 300.0, 0.0)),
        Found(1.0, (300.0, 100.0, 120.0, 200.0), CropBox((350.0, 210.0), 260.0, 30.0)),
        Found(1.0, (470.0, 200.0, 30.0, 70.0), CropBox((486.0, 240.0), 90.0, -12.5)),
        Found(1.0, (560.0, 20.0, 79.5, 330.0), CropBox((600.0, 180.0), 380.0, 170.0)),
    ]
    return shape, objects


def test_round_trip_through_the_letterbox_gives_back_every_box_and_crop():
    codec = FinderCodec(input_size=160, stride=4, num_classes=1)
    shape, objects = people_in_a_wide_frame()
    frame_box = letterbox(shape)
    to_input = codec.image_to_input(frame_box)
    target = codec.encode([transform_object(o, to_input) for o in objects])
    assert target.shape == (40, 40, 1 + len(REGRESSIONS) + 1)
    assert target[..., -1].sum() == len(objects)  # one regression cell per object

    found = codec.decode(as_logits(target, 1), frame_box, min_score=0.5)
    assert len(found) == len(objects)
    # Best first: every peak is 1, so match by position.
    for want in objects:
        got = min(found, key=lambda f: np.abs(f.corners - want.corners).sum())
        np.testing.assert_allclose(got.corners, want.corners, atol=1e-3)
        np.testing.assert_allclose(got.box.center, want.box.center, atol=1e-3)
        assert got.box.size == pytest.approx(want.box.size, abs=1e-3)
        assert got.box.rotation == pytest.approx(want.box.rotation, abs=1e-3)
        assert got.score == pytest.approx(1.0, abs=1e-4)
        assert got.class_id == 0


def test_decode_keeps_the_best_top_k_and_drops_weak_peaks():
    codec = FinderCodec(input_size=64, stride=4, num_classes=2, top_k=2)
    out = np.full((16, 16, codec.channels), 0.0, np.float32)
    out[..., :2] = -10.0  # background everywhere
    out[..., 4:6] = np.log(3.0)  # boxes 12 x 12 input pixels
    out[..., 10] = 1.0  # cos: no rotation
    for (y, x, k), logit in zip([(2, 3, 0), (10, 12, 1), (8, 4, 0)], [3.0, 1.0, -0.5], strict=True):
        out[y, x, k] = logit
    found = codec.decode(out)
    assert [f.class_id for f in found] == [0, 1]  # the third peak is cut by top_k
    assert found[0].score > found[1].score
    assert codec.decode(out, min_score=0.9)[0].class_id == 0
    assert len(codec.decode(out, min_score=0.9)) == 1
    assert len(codec.decode(out, top_k=5, min_score=0.3)) == 3  # sigmoid(-0.5) = 0.38
    # The first peak's box: centre cell (3, 2) -> input pixel ((3 + .5) * 4 - .5, ...).
    x, y, w, h = found[0].rect
    assert (x + w / 2, y + h / 2) == pytest.approx((13.5, 9.5))
    assert (w, h) == pytest.approx((12.0, 12.0))


def test_a_plateau_neighbour_is_suppressed_by_the_3x3_maximum():
    codec = FinderCodec(input_size=32, stride=4, num_classes=1)
    out = np.zeros((8, 8, codec.channels), np.float32)
    out[..., 0] = -10.0
    out[4, 4, 0], out[4, 5, 0], out[5, 5, 0] = 4.0, 3.0, 2.0  # one blob, one peak
    out[..., 9] = 1.0
    assert len(codec.decode(out)) == 1


def test_two_peaks_on_one_body_give_one_find_but_neighbours_stay_apart():
    """Non-maximum suppression: a second peak whose box overlaps a better one of its class
    by more than nms_iou (0.6) is one body's second centre; people side by side, and a
    find of another class, are kept."""
    codec = FinderCodec(input_size=64, stride=4, num_classes=2)
    assert codec.nms_iou == pytest.approx(0.6)

    def two_peaks(side: float, second_class: int = 0) -> np.ndarray:
        out = np.zeros((16, 16, codec.channels), np.float32)
        out[..., :2] = -10.0
        out[..., 4:6] = np.log(side / 4)  # square boxes of `side` input pixels
        out[..., 10] = 1.0  # cos: no rotation
        out[6, 6, 0] = 3.0
        out[6, 8, second_class] = 2.0  # two cells (8 px) to the right: both 3x3 maxima
        return out

    # 24 px boxes 8 px apart: IoU 16 x 24 / (2 x 576 - 384) = 0.5: two people side by side.
    assert len(codec.decode(two_peaks(24.0))) == 2
    # 48 px boxes 8 px apart: IoU 40 x 48 / (2 x 2304 - 1920) = 0.71: one body, the best kept.
    found = codec.decode(two_peaks(48.0))
    assert len(found) == 1 and found[0].score == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert found[0].rect[0] == pytest.approx((6 + 0.5) * 4 - 0.5 - 24)
    assert len(codec.decode(two_peaks(48.0), nms_iou=1.0)) == 2  # suppression off
    assert sorted(f.class_id for f in codec.decode(two_peaks(48.0, second_class=1))) == [0, 1]


def test_objects_outside_the_input_or_degenerate_are_not_encoded():
    codec = FinderCodec(input_size=64, stride=4)
    crop = CropBox((10.0, 10.0), 20.0)
    target = codec.encode(
        [
            Found(1.0, (70.0, 10.0, 20.0, 20.0), crop),  # centre right of the input
            Found(1.0, (10.0, 10.0, 0.5, 20.0), crop),  # under a pixel wide
            Found(1.0, (10.0, 10.0, 20.0, 20.0), crop, class_id=3),  # no such class
        ]
    )
    assert not target.any()


def test_a_centre_on_the_last_pixel_uses_the_last_cell():
    codec = FinderCodec(input_size=64, stride=4)
    # Centre (63.5, 63.5): the input's bottom-right pixel edge, half a cell past the last
    # cell's centre.
    obj = Found(1.0, (50.0, 50.0, 27.0, 27.0), CropBox((56.0, 56.0), 20.0))
    target = codec.encode([obj])
    assert target[15, 15, -1] == 1.0 and target[15, 15, 0] == pytest.approx(1.0)
    found = codec.decode(as_logits(target, 1))
    np.testing.assert_allclose(found[0].corners, obj.corners, atol=1e-4)


@pytest.mark.parametrize("rotation", [0.0, 25.0, -140.0])
def test_transform_object_keeps_the_crop_content(rotation):
    """The crop after a transform shows what it showed before: its image->crop matrix, after
    the transform, equals the old one (a mirror mirrors the crop as well)."""
    obj = Found(0.9, (40.0, 30.0, 60.0, 90.0), CropBox((70.0, 80.0), 110.0, rotation))
    turn = CropBox((120.0, 90.0), 300.0, 35.0)  # a turned, scaled, shifted view
    flip = np.array([[-1.0, 0.0, 199.0], [0.0, 1.0, 0.0]])  # a mirror of a 200-wide image
    mirror_crop = np.array([[-1.0, 0.0, 63.0], [0.0, 1.0, 0.0]])  # of the 64-px crop
    for matrix, mirrored in [(crop_matrix(turn, (160, 160)), False), (flip, True)]:
        moved = transform_object(obj, matrix)
        before = crop_matrix(obj.box, (64, 64))
        after = crop_matrix(moved.box, (64, 64))
        a = np.vstack([after, [0, 0, 1]]) @ np.vstack([matrix, [0, 0, 1]])
        expected = np.vstack([mirror_crop, [0, 0, 1]]) @ np.vstack([before, [0, 0, 1]])
        np.testing.assert_allclose(a[:2], expected[:2] if mirrored else before, atol=1e-9)
        assert moved.score == obj.score and moved.class_id == obj.class_id
    # Mapping there and back gives the object again.
    m = crop_matrix(turn, (160, 160))
    back = transform_object(transform_object(obj, m), invert_affine(m))
    assert back.box.rotation == pytest.approx(rotation)
    np.testing.assert_allclose(back.box.center, obj.box.center)


def test_transform_object_maps_an_unrotated_box_exactly():
    obj = Found(1.0, (10.0, 20.0, 30.0, 40.0), CropBox((25.0, 40.0), 50.0))
    m = np.array([[0.5, 0.0, 3.0], [0.0, 0.5, -2.0]])
    moved = transform_object(obj, m)
    np.testing.assert_allclose(moved.corners, [8.0, 8.0, 23.0, 28.0])
    np.testing.assert_allclose(
        apply_affine(m, np.array(obj.box.center)), np.array(moved.box.center)
    )
    assert moved.box.size == pytest.approx(25.0)


def test_found_object_round_trips_through_its_dict():
    obj = Found(0.75, (1.0, 2.0, 3.0, 4.0), CropBox((5.0, 6.0), 7.0, 8.0), 1)
    again = Found.from_dict(obj.to_dict())
    assert again.rect == obj.rect and again.box == obj.box
    assert (again.score, again.class_id) == (0.75, 1)


def test_bad_shapes_and_settings_are_refused():
    codec = FinderCodec(input_size=64, stride=4)
    with pytest.raises(ValueError, match="expected a finder output"):
        codec.decode(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError):
        FinderCodec(input_size=62, stride=4)
    with pytest.raises(ValueError):
        FinderCodec(num_classes=0)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="nms_iou must be in"):
            FinderCodec(nms_iou=bad)


def finder_metadata(**finder):
    from edge.metadata import LandmarkMetadata

    codec = FinderCodec(input_size=160, stride=4, num_classes=1)
    return LandmarkMetadata.for_finder(
        ("person",), codec, input_size=(160, 160), heatmap_size=(40, 40), **finder
    )


def test_finder_metadata_round_trips_and_gives_back_its_codec():
    from edge.metadata import FINDER_FORMAT, LandmarkMetadata

    meta = finder_metadata(model_name="pf")
    record = json.loads(meta.to_json())
    assert record["task"] == "finder" and record["classes"] == ["person"]
    assert record["format_version"] == FINDER_FORMAT
    assert record["finder"]["regressions"] == list(REGRESSIONS)
    assert "class_colors" not in record  # segmentation's fields stay out
    again = LandmarkMetadata.from_json(meta.to_json())
    assert again == meta and again.num_outputs == 10
    assert again.finder_codec() == FinderCodec(input_size=160, stride=4, num_classes=1)


def test_other_records_carry_no_finder_entry():
    from edge.metadata import LandmarkMetadata

    pose = LandmarkMetadata.for_skeleton("mpii16", input_size=(64, 64), heatmap_size=(16, 16))
    record = json.loads(pose.to_json())
    assert "finder" not in record and "classes" not in record and record["format_version"] == 2


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["finder"].pop("stride"), "missing stride"),
        (lambda r: r.update(classes=[]), "class names"),
        (lambda r: r["finder"].update(regressions=["offset_x"]), "upgrade the edge package"),
        (lambda r: r["finder"].update(stride=7), "malformed"),
    ],
)
def test_a_malformed_finder_record_is_one_line(change, message):
    from edge.errors import ModelError
    from edge.metadata import LandmarkMetadata

    record = json.loads(finder_metadata().to_json())
    change(record)
    with pytest.raises(ModelError, match=message):
        LandmarkMetadata.from_json(json.dumps(record))


def test_finder_model_refuses_a_landmark_model_and_open_model_keeps_landmarks():
    from edge_fixtures import POSE_FLOAT

    from edge.errors import ModelError
    from edge.finder import FinderModel
    from edge.model import LandmarkModel
    from edge.tasks import model_class, open_model

    with pytest.raises(ModelError, match="not a finder"):
        FinderModel(POSE_FLOAT, backend="tflite", num_threads=1)
    assert model_class("finder") is FinderModel
    assert isinstance(open_model(POSE_FLOAT, backend="tflite", num_threads=1), LandmarkModel)


@pytest.mark.parametrize("shape", [(720, 1280), (300, 200), (1080, 1920)])
def test_letterbox_input_puts_a_frame_pixel_where_its_matrix_says(shape):
    from edge.finder_codec import letterbox_input

    frame = np.zeros((*shape, 3), np.uint8)
    h, w = shape
    spot = np.array([0.7 * w, 0.3 * h])
    r = max(h, w) // 40
    x, y = spot.astype(int)
    frame[y - r : y + r + 1, x - r : x + r + 1] = 255
    crop, matrix = letterbox_input(frame, 160)
    assert crop.shape == (160, 160, 3)
    ys, xs = np.nonzero(crop[..., 0] > 100)
    found = np.array([xs.mean(), ys.mean()])
    np.testing.assert_allclose(found, apply_affine(matrix, spot), atol=0.6)
    # The letterbox's own affine says the same: what decode maps finds back through.
    expected = crop_matrix(letterbox(frame.shape), (160, 160))
    np.testing.assert_allclose(apply_affine(matrix, spot), apply_affine(expected, spot), atol=0.05)


@pytest.mark.parametrize("shape", [(480, 640), (342, 548), (1920, 1080), (100, 100)])
def test_tiles_cover_the_frame_and_hold_every_small_subject_whole(shape):
    """The finder's second look: squares of half the long side over the whole frame, so that
    any subject up to half a tile across lies whole inside one of them."""
    height, width = shape
    tiles = tile_boxes(width, height)
    side = max(width, height) / 2
    assert all(t.size == side and t.rotation == 0.0 for t in tiles)
    if shape == (480, 640):
        assert sorted({t.center for t in tiles}) == sorted(
            (x, y) for x in (160.0, 320.0, 480.0) for y in (160.0, 320.0)
        )
    rng = np.random.default_rng(0)
    for _ in range(500):  # subjects of up to half a tile, anywhere in the frame
        w, h = rng.uniform(1, side / 2, 2)
        x0, y0 = rng.uniform(0, width - min(w, width)), rng.uniform(0, height - min(h, height))
        x1, y1 = min(x0 + w, width), min(y0 + h, height)
        assert any(
            t.center[0] - side / 2 <= x0
            and x1 <= t.center[0] + side / 2
            and t.center[1] - side / 2 <= y0
            and y1 <= t.center[1] + side / 2
            for t in tiles
        ), (x0, y0, x1, y1)
    with pytest.raises(ValueError, match="fraction"):
        tile_boxes(width, height, 0.0)


def test_finds_of_several_looks_merge_best_first_one_per_subject():
    box = CropBox((0.0, 0.0), 1.0, 0.0)
    whole = Found(0.5, (200.0, 130.0, 30.0, 34.0), box)  # the whole frame's look, weaker
    tiled = Found(0.8, (204.0, 128.0, 30.0, 34.0), box)  # the same face in a tile
    other = Found(0.4, (50.0, 110.0, 120.0, 130.0), box)
    face_class = Found(0.9, (204.0, 128.0, 30.0, 34.0), box, class_id=1)  # another class
    merged = merge_finds([whole, other, tiled, face_class], nms_iou=0.6)
    assert merged == [face_class, tiled, other]
    assert merge_finds([], nms_iou=0.6) == []
