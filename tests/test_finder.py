"""The 1-bit finder, training side to device: teacher labels of whole real frames (every
person), the reader and its whole-frame augmentation, the model and loss, a short real
training, the LCE conversion with the finder metadata, and the converted file found by
edge.tasks.open_model and run in both stock runtimes with the native delegate.

The teacher models come from the mediapipe wheel (cached, never committed); without them the
labelling tests skip. Media: ../shared/media, read in place."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.finder_codec import FinderCodec, Found, transform_object
from edge.transform import CropBox
from training.data.augment import AugmentParams
from training.data.base import CorruptSample, iter_samples
from training.finder.data import FinderDataset, FinderSample, finder_crop, mosaic_crop
from training.finder.evaluate import match_frame

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
FOUR_MEN = MEDIA / "images2" / "body" / "azuresamples_four_men_standing_bw.jpg"
COUPLE = MEDIA / "images2" / "body" / "azuresamples_older_couple_embracing_garden.jpg"
OFFICE = MEDIA / "pose" / "office_two_walking_intel.gif"
SOURCES = (FOUR_MEN, COUPLE, OFFICE)
# A tiny finder that trains in seconds: 64 px input, 16 x 16 output.
TINY = [
    "input_size=64",
    "model.depth=1",
    "model.features=32",
    "model.stem_channels=16",
    "model.stem_block_channels=32",
    "batch_size=4",
    "val_batch_size=4",
    "epochs=2",
    "steps_per_epoch=15",
    "average_last=1",
]


def run(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Two real photos and three frames of a real clip, labelled by the person-finder tool:
    the couple held out on the valid side, the clip on the select side."""
    from training.label.teacher_models import TeacherUnavailable, teacher_model

    missing = [p.name for p in SOURCES if not p.is_file()]
    if missing:
        pytest.skip(f"needs ../shared/media: {', '.join(missing)}")
    try:
        teacher_model("pose_detection"), teacher_model("pose_landmark_full")
    except TeacherUnavailable as exc:
        pytest.skip(f"pose teacher models unavailable: {exc}")
    root = tmp_path_factory.mktemp("finder")
    split = root / "split.yaml"
    split.write_text(
        "valid:\n  pose: [azuresamples_older_couple_*]\nselect:\n  pose: [office_two_walking_*]\n"
    )
    out = root / "set"
    args = [*map(str, SOURCES), "--out", str(out), "--split", str(split)]
    done = run("training.label", "person-finder", *args, "--max-per-source", "3", "--threads", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    again = run("training.label", "person-finder", *args, "--max-per-source", "3")
    assert again.returncode == 0 and "sources resumed: 3" in again.stdout, again.stdout
    return out


def records(folder: Path, side: str) -> list[dict]:
    return json.loads((folder / f"finder_{side}.json").read_text())["records"]


def test_every_person_of_a_group_is_labelled_with_a_box_and_an_upright_crop(labelled):
    doc = json.loads((labelled / "finder_train.json").read_text())
    assert doc["classes"] == ["person"]
    (men,) = doc["records"]  # the four men: the only training source
    image = cv2.imread(str(labelled / men["image"]))
    assert max(image.shape[:2]) == 320  # stored at --frame-px
    people = [Found.from_dict(o) for o in men["objects"]]
    # BlazePose's detector finds one of them in the whole photo; the tiles find all four.
    assert len(people) == 4
    for p in people:
        x, y, w, h = p.rect
        assert h > 1.8 * w and h > 0.5 * image.shape[0]  # standing people, most of the height
        assert x <= p.box.center[0] <= x + w  # the crop is centred on its person
        # The landmark models' own crop: upright, box_margin x the joints' extent.
        assert p.box.rotation == 0 and p.box.size > 0.8 * h
        assert p.score > 0.8
    lefts = sorted(p.rect[0] for p in people)
    assert all(b - a > 0.1 * image.shape[1] for a, b in zip(lefts, lefts[1:], strict=False))
    # The held-out sources went to their sides, the clip's frames with two people walking.
    assert len(records(labelled, "valid")) == 1
    clip = records(labelled, "select")
    assert len(clip) == 3 and max(len(r["objects"]) for r in clip) == 2
    summary = json.loads((labelled / "summary_person-finder.json").read_text())
    assert summary["records"] == {"train": 1, "select": 3, "valid": 1}


def test_one_person_found_in_the_frame_and_its_tiles_is_refined_once():
    """The labeller refines each distinct detector ROI once (two landmark runs each): the
    same person found in the whole frame and in two overlapping tiles is one ROI, while two
    people standing shoulder to shoulder stay two."""
    from training.label.finder import distinct_rois

    person = CropBox((200.0, 150.0), 120.0, 0.0)
    same_in_tiles = [CropBox((204.0, 147.0), 116.0, 5.0), CropBox((197.0, 153.0), 126.0, -3.0)]
    assert distinct_rois([person, *same_in_tiles]) == [person]
    neighbour = CropBox((200.0 + 0.4 * 120.0, 150.0), 120.0, 0.0)  # body squares IoU 0.43
    assert distinct_rois([person, neighbour, *same_in_tiles]) == [person, neighbour]


def test_a_corrupt_record_is_skipped_and_counted(labelled, tmp_path):
    copy = tmp_path / "set"
    shutil.copytree(labelled, copy)
    index = copy / "finder_select.json"
    doc = json.loads(index.read_text())
    doc["records"][1]["objects"] = [{"rect": [1, 2]}]  # no box, a short rect
    index.write_text(json.dumps(doc))
    jpeg = copy / doc["records"][2]["image"]
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # cut short
    data = FinderDataset(copy, split="select")
    with pytest.raises(CorruptSample):
        data.load(2)
    assert len(list(iter_samples(data))) == 1
    assert data.skipped.count == 2


def test_bad_label_flags_give_one_line_and_status_2(tmp_path):
    done = run(
        "training.label", "person-finder", str(FOUR_MEN), "--out", str(tmp_path), "--frame-px", "8"
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --frame-px must be >= 32"]


def _drawn_sample() -> FinderSample:
    """A 300 x 200 frame with two white boxes, one person's crop turned 20 degrees."""
    image = np.zeros((200, 300, 3), np.uint8)
    objects = [
        Found(1.0, (30.0, 40.0, 50.0, 120.0), CropBox((55.0, 100.0), 140.0, 20.0)),
        Found(1.0, (180.0, 20.0, 60.0, 150.0), CropBox((210.0, 95.0), 170.0, -5.0)),
    ]
    for o in objects:
        x0, y0, x1, y1 = o.corners
        image[int(y0 + 0.5) : int(y1 + 0.5), int(x0 + 0.5) : int(x1 + 0.5)] = 255
    return FinderSample(image, objects)


@pytest.mark.parametrize(
    "params",
    [
        AugmentParams(),
        AugmentParams(scale=1.3, shift=(0.05, -0.08)),
        AugmentParams(scale=0.8, flip=True),
    ],
)
def test_augmentation_moves_the_boxes_with_the_pixels(params):
    sample = _drawn_sample()
    crop, objects = finder_crop(sample, 160, params)
    assert crop.shape == (160, 160, 3) and len(objects) == 2
    white = crop[..., 0] > 127
    for o in objects:
        x0, y0, x1, y1 = o.corners
        inner = white[int(y0) + 2 : int(y1) - 1, int(x0) + 2 : int(x1) - 1]
        assert inner.mean() > 0.97  # the box sits on its white rectangle
    # ... and no white pixel lies outside every box.
    covered = np.zeros_like(white)
    for o in objects:
        x0, y0, x1, y1 = o.corners
        covered[max(int(y0) - 1, 0) : int(y1) + 2, max(int(x0) - 1, 0) : int(x1) + 2] = True
    assert not (white & ~covered).any()
    # A mirror turns the crops the other way; the scale follows the zoom.
    first = min(objects, key=lambda o: abs(o.rect[3] / o.rect[2] - 120 / 50))
    assert first.box.rotation == pytest.approx(-20.0 if params.flip else 20.0)
    assert first.box.size == pytest.approx(140.0 * (160 / 300) / params.scale)


def test_a_box_mostly_outside_the_input_is_dropped_and_one_cut_short_is_clipped():
    sample = _drawn_sample()
    # Zoomed in on the left half: the right person is cut off entirely.
    crop, objects = finder_crop(sample, 160, AugmentParams(scale=0.5, shift=(-0.25, 0.0)))
    assert len(objects) == 1
    x0, y0, x1, y1 = objects[0].corners
    assert x0 >= -0.5 and y0 >= -0.5 and x1 <= 159.5 and y1 <= 159.5


def test_a_mosaic_puts_each_frame_and_its_people_in_their_own_quarter():
    # Four frames: the drawn one as it is, zoomed in, mirrored and zoomed out.
    sample = _drawn_sample()
    draws = [
        AugmentParams(),
        AugmentParams(scale=0.5, shift=(-0.25, 0.0)),  # the right person cut off
        AugmentParams(flip=True),
        AugmentParams(scale=1.4),
    ]
    image, objects = mosaic_crop([sample] * 4, 160, draws)
    assert image.shape == (160, 160, 3)
    quarters = [(0, 0), (0, 80), (80, 0), (80, 80)]  # (top, left), left to right, top to bottom
    expected = 0
    for (top, left), draw in zip(quarters, draws, strict=True):
        tile, found = finder_crop(sample, 80, draw)
        # Each quarter is that frame cut alone at half the side ...
        assert np.array_equal(image[top : top + 80, left : left + 80], tile)
        # ... and its people are the ones found there, moved by the quarter's corner.
        mine = [o for o in objects if left - 0.5 <= o.corners[0] and o.corners[2] <= left + 79.5]
        mine = [o for o in mine if top - 0.5 <= o.corners[1] and o.corners[3] <= top + 79.5]
        assert len(mine) == len(found)
        for o, f in zip(
            sorted(mine, key=lambda o: o.corners[0]),
            sorted(found, key=lambda f: f.corners[0]),
            strict=True,
        ):
            assert np.allclose(o.corners, np.add(f.corners, (left, top, left, top)))
            assert np.allclose(o.box.center, np.add(f.box.center, (left, top)))
            assert o.box.size == pytest.approx(f.box.size)
            assert o.box.rotation == pytest.approx(f.box.rotation)
        expected += len(found)
    assert len(objects) == expected == 7  # two per quarter, one cut off by the zoom
    # Every white pixel is inside some box: nobody spills into a neighbour's quarter.
    white = image[..., 0] > 127
    covered = np.zeros_like(white)
    for o in objects:
        x0, y0, x1, y1 = o.corners
        covered[max(int(y0) - 1, 0) : int(y1) + 2, max(int(x0) - 1, 0) : int(x1) + 2] = True
    assert white.any() and not (white & ~covered).any()


def test_training_examples_with_mosaic_prob_one_are_mosaics_of_the_labelled_frames(labelled):
    """finder.mosaic_prob: 1 in the real training loader: every example shows four labelled
    frames at once (the training side here is one photo of four men, so one frame alone
    holds at most four people), with a centre peak for the people of each quarter."""
    from training.config import load_config
    from training.finder.task import _Loader, finder_codec, open_sets

    config = load_config(
        REPO / "configs" / "person_finder.yaml",
        [f"dataset.path={labelled}", "finder.mosaic_prob=1"],  # 160 px input, 40 x 40 cells
    )
    train, _ = open_sets(config)
    most = max(len(r["objects"]) for r in records(labelled, "train"))
    assert most == 4
    loader = _Loader(train, config)
    half = finder_codec(config, 1).grid // 2
    people = []
    for counter in range(4):
        image, target, ok = loader(np.int64(0), np.int64(counter))
        assert ok and image.shape == (160, 160, 3)
        peaks = np.argwhere(target[:, :, 0] > 0.999)  # one cell per person's centre
        assert len({(int(y) // half, int(x) // half) for y, x in peaks}) >= 2
        people.append(len(peaks))
    assert max(people) > most, people


def test_a_mosaic_needs_four_frames_and_an_even_input():
    sample = _drawn_sample()
    with pytest.raises(ValueError, match="4 samples"):
        mosaic_crop([sample] * 3, 160, [AugmentParams()] * 3)
    with pytest.raises(ValueError, match="even input"):
        mosaic_crop([sample] * 4, 161, [AugmentParams()] * 4)


def test_matching_counts_small_and_ignored_people_neither_way():
    crop = CropBox((0.0, 0.0), 10.0)
    tall = Found(1.0, (10.0, 10.0, 40.0, 100.0), crop)
    small = Found(1.0, (200.0, 10.0, 10.0, 20.0), crop)  # under a sixth of 300
    weak = Found(0.4, (100.0, 10.0, 40.0, 100.0), crop)
    finds = [
        Found(0.9, (12.0, 12.0, 40.0, 96.0), crop),  # tall, right
        Found(0.8, (201.0, 11.0, 10.0, 20.0), crop),  # on a small person: ignored
        Found(0.7, (101.0, 10.0, 40.0, 100.0), crop),  # on a weak one: ignored
        Found(0.6, (250.0, 100.0, 40.0, 100.0), crop),  # nobody there: false
        Found(0.5, (11.0, 10.0, 40.0, 100.0), crop),  # a second find of the tall one
    ]
    m = match_frame(finds, [tall, small], [weak], 300)
    assert (m.matched, m.missed, m.false, m.ignored) == (1, 0, 2, 2)
    assert match_frame([], [tall, small], [], 300).missed == 1


def test_finder_network_and_loss():
    import tensorflow as tf

    from training.models import FinderLoss, build_finder
    from training.models.finder import PRIOR

    model = build_finder(
        num_classes=1,
        num_stacks=2,
        depth=1,
        features=32,
        input_size=64,
        stem_channels=16,
        stem_block_channels=32,
    )
    assert [tuple(o.shape) for o in model.outputs] == [(None, 16, 16, 10)] * 2
    bias = model.get_layer("stack1_heatmaps").get_weights()[1]
    assert bias[0] == pytest.approx(np.log(PRIOR / (1 - PRIOR)))
    codec = FinderCodec(input_size=64, stride=4)
    target = codec.encode([Found(1.0, (10.0, 8.0, 20.0, 40.0), CropBox((20.0, 30.0), 50.0, 10.0))])[
        None
    ]
    heat = np.clip(target[..., :1], 1e-4, 1 - 1e-4)
    right = np.concatenate([np.log(heat / (1 - heat)) * 3, target[..., 1:-1]], axis=-1)
    wrong_place = np.roll(right, 5, axis=2)
    loss = FinderLoss(1)
    values = [
        float(loss(tf.constant(target), tf.constant(o, tf.float32)))
        for o in (right, wrong_place, np.zeros_like(right))
    ]
    assert values[0] < 0.05 < values[2] < values[1]


@pytest.fixture(scope="module")
def trained(labelled, tmp_path_factory) -> tuple[Path, Path, str]:
    """The tiny finder trained a few dozen steps on the labels, converted to LCE by the CLI:
    (model.keras, model.tflite, the converter's output)."""
    out = tmp_path_factory.mktemp("run") / "run"
    done = run(
        "training.train",
        "--config",
        "configs/person_finder.yaml",
        "--out",
        str(out),
        "--verbose",
        "2",
        f"dataset.path={labelled}",
        *TINY,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    tflite = out / "model.tflite"
    converted = run(
        "converters.convert", str(out / "model.keras"), "-o", str(tflite), "--threads", "1"
    )
    assert converted.returncode == 0, converted.stderr[-3000:]
    return out / "model.keras", tflite, converted.stdout


def test_training_writes_a_finder_with_its_metadata(trained):
    keras, _, _ = trained
    sidecar = json.loads(keras.with_suffix(".landmarks.json").read_text())
    assert sidecar["task"] == "finder" and sidecar["classes"] == ["person"]
    assert sidecar["finder"]["stride"] == 4 and sidecar["input_size"] == [64, 64]
    history = [
        json.loads(line) for line in (keras.parent / "history.jsonl").read_text().splitlines()
    ]
    assert {"val_recall", "val_precision", "val_f1"} <= set(history[-1])
    assert history[-1]["loss"] < history[0]["loss"]


def test_converted_finder_is_bitpacked_and_runs_in_both_stock_runtimes(trained):
    import tensorflow as tf

    from converters.lce import binary_conv_layers
    from converters.tflite_metadata import op_counts
    from edge import native
    from edge.backends import create_backend
    from edge.finder import FinderModel
    from edge.metadata import read_metadata
    from edge.tasks import open_model
    from training.artifacts import load_keras_model

    keras, tflite, printed = trained
    assert "inputs' finds identical: 8/8" in printed, printed
    data = tflite.read_bytes()
    assert len(data) < 500_000
    ops = op_counts(data)
    model = load_keras_model(keras)
    binary = binary_conv_layers(model)
    assert ops["LceBconv2d"] == len(binary) > 0 and ops["LceQuantize"] > 0
    float_convs = sum(isinstance(lyr, tf.keras.layers.Conv2D) for lyr in model.layers) - len(binary)
    assert ops.get("CONV_2D", 0) == float_convs  # the stem, skips and head stay real
    meta = read_metadata(data)
    assert meta.task == "finder" and meta.classes == ("person",) and meta.format_version == 4
    assert meta.heatmap_size == (16, 16) and meta.num_outputs == 10

    native.ensure_library()
    frame = cv2.imread(str(FOUR_MEN))
    reference = create_backend("lce", data, num_threads=1)
    found = {}
    for runtime in ("tflite_runtime", "ai_edge_litert"):
        finder = open_model(
            tflite,
            backend="tflite",
            runtime=runtime,
            num_threads=1,
            min_score=0.0,
            top_k=5,
            nms_iou=1.0,  # every peak: an untrained network's boxes overlap
        )
        assert isinstance(finder, FinderModel)
        assert "native LCE delegate" in finder.backend_description
        x = finder.preprocess(cv2.resize(frame, (64, 64))[None])
        np.testing.assert_allclose(finder.run_input(x), reference.run(x), atol=1e-4)
        found[runtime] = finder.find(frame)
    a, b = found["tflite_runtime"], found["ai_edge_litert"]
    assert len(a) == len(b) == 5
    assert [f.score for f in a] == sorted((f.score for f in a), reverse=True)
    for f, g in zip(a, b, strict=True):
        np.testing.assert_allclose(f.corners, g.corners, rtol=1e-4, atol=1e-3)
        assert isinstance(f.box, CropBox) and len(f.rect) == 4


def test_a_finder_file_is_a_person_finder_for_edge_live_and_no_landmark_model(trained):
    from edge.errors import ModelError
    from edge.finders import BinaryFinder, create_finder
    from edge.model import LandmarkModel
    from edge.tasks import open_model

    _, tflite, _ = trained
    finder = create_finder(str(tflite), subject="person", margin=1.5, min_score=0.0)
    assert isinstance(finder, BinaryFinder)
    frame = cv2.imread(str(FOUR_MEN))
    model = open_model(tflite, min_score=0.0)
    direct, through = model.find(frame), finder.find(frame)
    assert len(through) == len(direct) > 0
    for f, g in zip(direct, through, strict=True):
        assert g.rect == f.rect and g.box.center == f.box.center
        assert g.box.size == pytest.approx(f.box.size * 1.5 / 1.25)  # the landmark model's margin
    with pytest.raises(ModelError, match="finds person, not a face"):
        create_finder(str(tflite), subject="face")
    with pytest.raises(ModelError, match="is a finder"):
        LandmarkModel(tflite)


def test_keras_and_tflite_score_the_same_on_the_held_out_side(trained, labelled, tmp_path):
    keras, tflite, _ = trained
    scores = {}
    for model in (keras, tflite):
        out = tmp_path / model.suffix[1:]
        done = run(
            "training.evaluate",
            "--model",
            str(model),
            "--dataset",
            "finder",
            "--data",
            str(labelled),
            "--split",
            "select",
            "--threads",
            "1",
            "--out",
            str(out),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "recall" in done.stdout and "precision" in done.stdout
        scores[model.suffix] = json.loads((out / "metrics.json").read_text())["values"]
    for key in ("recall", "precision", "labels", "matched", "false"):
        assert scores[".keras"][key] == pytest.approx(scores[".tflite"][key], nan_ok=True)
    assert scores[".keras"]["labels"] >= 3
    # people count from a sixth of the frame's height (faces from a tenth: see below)
    assert json.loads((tmp_path / "tflite" / "metrics.json").read_text())["min_height"] == (
        pytest.approx(1 / 6)
    )


def test_the_height_bar_follows_what_the_labels_are_of():
    from training.config import evaluation_min_height, load_config

    assert evaluation_min_height(["person"]) == pytest.approx(1 / 6)
    assert evaluation_min_height(["face"]) == pytest.approx(0.1)
    # the shipped recipes monitor their training with the same bars
    for kind in ("person", "face"):
        config = load_config(REPO / "configs" / f"{kind}_finder.yaml").finder
        assert config.min_height == pytest.approx(evaluation_min_height([kind]), abs=1e-6)


def test_a_finder_config_with_a_bad_value_is_one_line():
    from training.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="finder.min_score"):
        load_config(REPO / "configs" / "person_finder.yaml", ["finder.min_score=2"])
    with pytest.raises(ConfigError, match="finder.classes"):
        load_config(REPO / "configs" / "face_finder.yaml", ["finder.classes=[]"])
    with pytest.raises(ConfigError, match="finder.mosaic_prob"):
        load_config(REPO / "configs" / "person_finder.yaml", ["finder.mosaic_prob=1.5"])


def test_transform_object_is_what_the_reader_and_codec_share():
    # The round trip a training target and a device decode make: image -> input -> image.
    codec = FinderCodec(input_size=64, stride=4)
    obj = Found(1.0, (40.0, 10.0, 30.0, 80.0), CropBox((55.0, 50.0), 100.0, 15.0))
    frame_box = CropBox((99.5, 49.5), 200.0)
    there = transform_object(obj, codec.image_to_input(frame_box))
    back = transform_object(there, codec.input_to_image(frame_box))
    np.testing.assert_allclose(back.corners, obj.corners, atol=1e-9)
    assert back.box.rotation == pytest.approx(15.0)
