"""Part segmentation on the device side, without TensorFlow: metadata, decoding, encoding."""

import json

import numpy as np
import pytest
from edge_fixtures import POSE_FLOAT

from edge.errors import ModelError
from edge.metadata import LandmarkMetadata, read_metadata
from edge.parts import FACE_PARTS
from edge.segmentation import (
    SegmentationModel,
    box_points,
    class_map_in_image,
    decode_run_lengths,
    draw_parts,
    part_areas,
    run_lengths,
)
from edge.transform import CropBox, crop_matrix


def parts_meta(input_size=8, heatmap_size=2) -> LandmarkMetadata:
    return LandmarkMetadata.for_parts(
        FACE_PARTS.name, input_size=(input_size,) * 2, heatmap_size=(heatmap_size,) * 2
    )


def test_segmentation_metadata_round_trips_and_landmark_records_keep_format_2():
    meta = parts_meta()
    back = LandmarkMetadata.from_json(meta.to_json())
    assert back == meta
    assert back.classes == FACE_PARTS.classes and back.num_outputs == 11
    assert back.class_colors[1] == FACE_PARTS.colors[1] and back.format_version == 3
    landmark = read_metadata(POSE_FLOAT)
    record = json.loads(landmark.to_json())
    assert record["format_version"] == 2 and "classes" not in record


def test_segmentation_metadata_without_colours_is_refused():
    record = json.loads(parts_meta().to_json())
    record["class_colors"] = record["class_colors"][:3]
    with pytest.raises(ModelError, match="one colour per class"):
        LandmarkMetadata.from_json(json.dumps(record))


def test_a_landmark_model_is_refused_in_one_line():
    with pytest.raises(ModelError, match="not a segmentation model"):
        SegmentationModel(POSE_FLOAT)


def test_class_map_follows_the_crop_into_image_pixels():
    # An 8x8 crop of a 4x4-pixel region (scale 2) whose 2x2 logits say class c in cell c.
    meta = parts_meta(input_size=8, heatmap_size=2)
    box = CropBox((5.5, 3.5), 4.0)  # covers image pixels 4..7 x 2..5
    to_crop = crop_matrix(box, (8, 8))
    logits = np.zeros((2, 2, 11), np.float32)
    for c, (j, i) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        logits[j, i, c + 1] = 5.0
    class_map = class_map_in_image(logits, to_crop, meta, (10, 12, 3))
    assert class_map.shape == (10, 12)
    # Each cell covers a 2x2 block of image pixels; everything outside the box is background.
    expected = np.zeros((10, 12), np.uint8)
    expected[2:4, 4:6], expected[2:4, 6:8], expected[4:6, 4:6], expected[4:6, 6:8] = 1, 2, 3, 4
    assert np.array_equal(class_map, expected)


def test_box_points_areas_and_run_lengths():
    m = np.zeros((6, 7), np.uint8)
    m[1:4, 2:6] = 1  # skin
    m[2, 3] = 4  # an eye
    m[0, :] = 10  # hair: not part of the box
    corners = box_points(np.kron(m, np.ones((3, 3), np.uint8)), FACE_PARTS.box_classes)
    assert corners[0].tolist() == [6.0, 3.0] and corners[3].tolist() == [17.0, 11.0]
    assert box_points(m, FACE_PARTS.box_classes) is None  # fewer than 16 face pixels
    areas = part_areas(m, FACE_PARTS.classes)
    assert areas["skin"] == 11 and areas["left_eye"] == 1 and areas["hair"] == 7
    assert "background" not in areas
    runs = run_lengths(m)
    assert runs[:4] == [10, 7, 0, 2] and sum(runs[1::2]) == m.size
    assert np.array_equal(decode_run_lengths(runs, m.shape), m)


def test_overlay_colours_only_labelled_pixels():
    image = np.full((4, 4, 3), 100, np.uint8)
    m = np.zeros((4, 4), np.uint8)
    m[0, 0] = 6  # nose: RGB (255, 255, 0) -> BGR (0, 255, 255)
    draw_parts(image, m, FACE_PARTS.colors, alpha=0.5)
    assert image[0, 0].tolist() == [50, 177, 177] and image[1, 1].tolist() == [100, 100, 100]
