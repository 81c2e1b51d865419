"""Part segmentation with the hourglass: head wiring, readers, metrics, conversion, runtime."""

import functools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fixtures import run_python_module

from edge.parts import FACE_PARTS
from training.data.augment import AugmentParams
from training.data.base import DatasetError
from training.metrics import class_f1, class_iou, confusion_matrix, mean_iou, overall_f1
from training.segmentation.augment import crop_parts
from training.segmentation.data import open_parts_dataset, write_label_map

REPO = Path(__file__).resolve().parents[1]
FACE_CLIP = REPO.parent / "shared" / "media" / "face" / "talking_man_lp_d18.mp4"


def face_mask(h=40, w=40) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[8:32, 10:30] = 1  # skin
    m[12:15, 12:16], m[12:15, 24:28] = 5, 4  # right eye (image left), left eye
    m[0:8, 5:35] = 10  # hair
    return m


def image_for(mask: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)


def test_the_head_gives_class_logits_on_every_stack_and_trains_them_all():
    import tensorflow as tf

    from training.models import build_segmenter, is_binary_conv, segmentation_losses

    model = build_segmenter(
        num_classes=11, num_stacks=2, depth=1, features=32, input_size=32, block="hpm", binary=True
    )
    assert [tuple(o.shape) for o in model.outputs] == [(None, 8, 8, 11)] * 2
    assert any(is_binary_conv(layer) for layer in model.layers)
    with pytest.raises(TypeError, match="num_classes"):
        build_segmenter(num_classes=11, num_landmarks=3, input_size=32, depth=1)
    losses = segmentation_losses(2)
    x = tf.random.uniform((2, 32, 32, 3))
    y = tf.constant(np.random.default_rng(0).integers(0, 11, (2, 8, 8)), tf.int32)
    with tf.GradientTape() as tape:
        outs = model(x, training=True)
        loss0 = losses[0](y, outs[0])  # only the first stack's loss
    # Intermediate supervision: the first stack's head is trained by its own loss.
    head0 = model.get_layer("stack0_heatmaps").kernel
    grad = tape.gradient(loss0, head0)
    assert float(tf.reduce_max(tf.abs(grad))) > 0
    assert abs(float(loss0) - np.log(11)) < 3.0  # softmax CE over 11 classes, untrained


def write_helen(root: Path, name: str, mask: np.ndarray, image: np.ndarray) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / f"{name}.jpg"), image)
    for c in range(11):  # label probabilities, 0-255, as Helen's files hold them
        cv2.imwrite(
            str(folder / f"{name}_lbl{c:02d}.png"), np.where(mask == c, 255, 0).astype(np.uint8)
        )


def test_helen_reader_takes_the_most_probable_label_and_skips_a_corrupt_folder(tmp_path):
    m = face_mask()
    write_helen(tmp_path, "100032540_1", m, image_for(m))
    write_helen(tmp_path, "bad_1", m, image_for(m))
    (tmp_path / "bad_1" / "bad_1_lbl04.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "testing.txt").write_text("1 , 100032540_1\n2 , bad_1\n")
    ds = open_parts_dataset("helen-parts", tmp_path, split="testing")
    assert len(ds) == 2
    sample = ds.load(0)
    assert np.array_equal(sample.mask, m)
    # The box: the face classes' extent (x 10..29, y 8..31), square, times 1.25.
    assert sample.box.center == (19.5, 19.5) and sample.box.size == pytest.approx(23 * 1.25)
    from training.segmentation.evaluate import score_dataset  # counts skips as training does

    class Exact:
        metadata = __import__("edge.metadata", fromlist=["x"]).LandmarkMetadata.for_parts(
            FACE_PARTS.name, input_size=(32, 32), heatmap_size=(32, 32)
        )
        description = "the label itself"

        def heatmaps(self, batch):  # never called with a wrong crop: checked below
            return self.logits

    exact = Exact()
    crop = crop_parts(sample, 32, 32, FACE_PARTS)[1]
    exact.logits = np.eye(11, dtype=np.float32)[crop][None] * 10
    result = score_dataset(exact, ds, batch_size=4)
    assert result.samples == 1 and result.skipped == 1
    assert ds.skipped.count == 1 and "bad_1" in ds.skipped.reasons[0]


def test_label_map_reader_checks_classes_and_sizes(tmp_path):
    m = face_mask()
    write_label_map(tmp_path, "train", "a", image_for(m), m)
    write_label_map(tmp_path, "train", "b", image_for(m), m)
    (tmp_path / "train" / "labels" / "b.png").write_bytes(b"")  # corrupt: empty file
    ds = open_parts_dataset("label-map", tmp_path, split="train")
    assert len(ds) == 2 and np.array_equal(ds.load(0).mask, m)
    from training.data.base import CorruptSample

    with pytest.raises(CorruptSample):
        ds.load(1)
    write_label_map(tmp_path, "train", "c", image_for(m), m[:30])  # a mask of the wrong size
    with pytest.raises(DatasetError, match="mask is 40x30 but the image is 40x40"):
        open_parts_dataset("label-map", tmp_path, split="train").load(2)
    (tmp_path / "classes.txt").write_text("background\nface\n")
    with pytest.raises(DatasetError, match="classes.txt lists background, face"):
        open_parts_dataset("label-map", tmp_path, split="train")


def test_a_flip_swaps_left_and_right_classes():
    m = face_mask()
    ds_sample = __import__("training.segmentation.data", fromlist=["x"]).PartsSample
    from edge.transform import CropBox

    sample = ds_sample(image_for(m), m, CropBox((19.5, 19.5), 40.0))
    _, plain, _ = crop_parts(sample, 40, 40, FACE_PARTS)
    _, flipped, _ = crop_parts(sample, 40, 40, FACE_PARTS, AugmentParams(flip=True))
    assert np.array_equal(plain, m)
    swapped = np.asarray(FACE_PARTS.flip_permutation(), np.uint8)[m[:, ::-1]]
    assert np.array_equal(flipped, swapped)
    assert (flipped == 4).sum() == (m == 5).sum()


def test_synthetic_faces_render_every_part_and_the_same_picture():
    from training.data.synthetic_face import render_sample

    ds = open_parts_dataset("synthetic-faceparts", split="val", size=12, image_size=128)
    seen = set()
    for i in range(12):
        s = ds.load(i)
        seen |= set(np.unique(s.mask).tolist())
        assert s.mask.shape == s.image.shape[:2]
    assert seen == set(range(11))
    # Drawing the class map changes nothing in the picture.
    a = render_sample(np.random.default_rng(5), 96)[0]
    b = render_sample(np.random.default_rng(5), 96, parts=np.zeros((96, 96), np.uint8))[0]
    assert np.array_equal(a, b)


def test_metrics_against_hand_computed_values():
    gt = np.array([[0, 1, 1, 2], [2, 2, 3, 3]])
    pred = np.array([[0, 1, 2, 2], [2, 3, 3, 0]])
    c = confusion_matrix(pred, gt, 4)
    # class 1: TP 1, FN 1, FP 0 -> F1 2/3, IoU 1/2; class 2: TP 2, FP 1, FN 1 -> F1 2/3, IoU 1/2
    # class 3: TP 1, FP 1, FN 1 -> F1 1/2, IoU 1/3; class 0: TP 1, FP 1 -> F1 2/3, IoU 1/2
    assert class_f1(c) == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1 / 2])
    assert class_iou(c) == pytest.approx([1 / 2, 1 / 2, 1 / 2, 1 / 3])
    assert mean_iou(c) == pytest.approx((0.5 * 3 + 1 / 3) / 4)
    # Overall over classes 1-3 pooled: gt foreground 7 pixels, predicted 6, both 6 -> 12/13.
    assert overall_f1(c, (1, 2, 3)) == pytest.approx(12 / 13)
    assert np.isnan(class_f1(confusion_matrix([0], [0], 2))[1])


# Each CLI in a fresh interpreter from the repository root; a tiny training run takes minutes.
_run = functools.partial(run_python_module, timeout=400)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A tiny untrained binary segmenter, saved as training saves it and converted by the CLI."""
    from training.config import make_config
    from training.segmentation.task import build_model, parts_metadata

    folder = tmp_path_factory.mktemp("faceparts")
    config = make_config(
        {
            "name": "tiny_parts",
            "task": "segmentation",
            "input_size": 32,
            "model": {"num_stacks": 1, "depth": 1, "features": 32},
        }
    )
    model = build_model(config, 11)
    model.save(str(folder / "model.keras"))
    (folder / "model.landmarks.json").write_text(parts_metadata(config, FACE_PARTS.name).to_json())
    done = _run(
        "converters.convert",
        str(folder / "model.keras"),
        "-o",
        str(folder / "parts.tflite"),
        "--check-inputs",
        "2",
        "--threads",
        "1",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cell classes identical" in done.stdout
    return folder / "parts.tflite"


def test_conversion_keeps_classes_and_bitpacks(converted):
    from edge.metadata import custom_op_names, read_metadata

    meta = read_metadata(converted)
    assert meta.task == "segmentation" and meta.classes == FACE_PARTS.classes
    assert meta.heatmap_size == (8, 8) and meta.weights_format == "lce"
    assert "LceBconv2d" in custom_op_names(converted.read_bytes())


def test_the_bitpacked_model_runs_in_the_stock_runtime_and_gives_a_class_map(converted):
    from edge.segmentation import SegmentationModel
    from edge.transform import CropBox

    model = SegmentationModel(converted, backend="tflite", num_threads=1)
    assert "delegate" in model.backend_description or "native" in model.backend_description
    image = image_for(face_mask(60, 80))
    parts = model.predict(image, CropBox((40.0, 30.0), 40.0))
    assert parts.class_map.shape == (60, 80) and parts.class_map.dtype == np.uint8
    assert parts.class_map[:, :15].max() == 0  # outside the crop: background
    assert sum(parts.areas().values()) == int((parts.class_map > 0).sum())


def test_live_writes_a_record_per_frame_and_the_overlay(converted, tmp_path):
    if not FACE_CLIP.is_file():
        pytest.skip(f"needs the shared face clip {FACE_CLIP}")
    done = _run(
        "edge.live",
        "--model",
        str(converted),
        "--source",
        str(FACE_CLIP),
        "--no-display",
        "--output",
        str(tmp_path / "out.mp4"),
        "--jsonl",
        str(tmp_path / "out.jsonl"),
        "--max-frames",
        "6",
        "--threads",
        "1",
        "--rle",
        "--backend",
        "tflite",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(t) for t in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(6))
    assert set(records[0]["areas"]) == set(FACE_PARTS.classes[1:])
    w, h = records[0]["size"]
    assert sum(records[0]["rle"][1::2]) == w * h
    video = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_bad_input_gets_one_line(converted, tmp_path):
    from edge_fixtures import POSE_FLOAT

    m = face_mask()
    write_label_map(tmp_path, "val", "a", image_for(m), m)
    done = _run(
        "training.evaluate",
        "--model",
        str(POSE_FLOAT),
        "--dataset",
        "label-map",
        "--data",
        str(tmp_path),
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error:")
    assert "landmark model" in done.stderr and "Traceback" not in done.stderr
    done = _run(
        "training.evaluate",
        "--model",
        str(converted),
        "--dataset",
        "synthetic-face",
        "--option",
        "size=4",
    )
    assert done.returncode == 2 and "is a segmentation model" in done.stderr
    assert "Traceback" not in done.stderr
    write_label_map(tmp_path, "val", "b", image_for(m), m[:20])
    done = _run(
        "training.evaluate",
        "--model",
        str(converted),
        "--dataset",
        "label-map",
        "--data",
        str(tmp_path),
    )
    assert done.returncode == 2 and "does not match" not in done.stdout
    assert "mask is 40x20 but the image is 40x40" in done.stderr
    assert "Traceback" not in done.stderr


def test_training_resumes_from_its_checkpoint_and_never_overwrites_a_run(tmp_path):
    """A segmentation run continues where it stopped, like a landmark run: checkpoint,
    optimizer and history; a second run into the same folder is refused in one line."""
    config = tmp_path / "tiny_parts.yaml"
    config.write_text(
        "name: tiny_parts\ntask: segmentation\n"
        "dataset: {name: synthetic-faceparts, options: {image_size: 48},\n"
        "          train_options: {size: 16, seed: 0}, val_options: {size: 4, seed: 0}}\n"
        "model: {num_stacks: 1, depth: 1, features: 32}\n"
        "input_size: 32\nbatch_size: 4\nepochs: 1\nsteps_per_epoch: 2\nval_batch_size: 4\n"
    )
    run = tmp_path / "run"
    first = _run("training.train", "--config", str(config), "--out", str(run), "--verbose", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    again = _run("training.train", "--config", str(config), "--out", str(run))
    assert again.returncode == 2 and "already holds checkpoints" in again.stderr
    assert "Traceback" not in again.stderr
    resumed = _run("training.train", "--out", str(run), "--resume", "--verbose", "2", "epochs=2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {run / 'checkpoints' / 'epoch'}-1 (epoch 1 of 2)" in resumed.stdout
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/" not in resumed.stdout
    history = [json.loads(t) for t in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and "val_miou" in history[-1]
    assert json.loads((run / "state.json").read_text())["optimizer_iterations"] == 2 * 2
    wrong = _run("training.train", "--out", str(run), "--resume", "epochs=3", "model.features=64")
    assert wrong.returncode == 2 and "does not fit the model" in wrong.stderr
    assert "Traceback" not in wrong.stderr
