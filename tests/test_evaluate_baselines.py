"""The validation protocol of docs/validation.md (training.validation, training.crop_jitter,
run by training.evaluate): the mean shape placed in the same crop beside every score,
inner-point face NME, per-group and per-source tables from the label tool's sources index,
and crop jitter measured on the data's own clips.

The datasets are written in the label tool's layout by its own writers (MPII JSON with
``frame_box``, ``.pts`` beside each crop, ``sources_<task>.json``) and read by the real
readers; the models are the committed tiny .tflite fixtures. One test runs the real label
tool (BlazePose teacher) on a panned clip and measures the pan as crop jitter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fixtures import FACE_FLOAT, POSE_FLOAT
from opencv_samples import MESSI, needs_messi

import training  # noqa: F401 - sets TF_USE_LEGACY_KERAS before TensorFlow loads
from edge.skeletons import IBUG68, MPII16
from edge.transform import CropBox
from training.crop_jitter import crop_jitter
from training.data.base import open_dataset
from training.data.pts import write_pts
from training.label.writers import mpii_record, write_json
from training.landmarks.evaluate import predict_dataset
from training.predictor import load_predictor
from training.scoring import Predictions, score
from training.validation import collect_shapes, find_source_index

ROOT = Path(__file__).resolve().parents[1]
SIDE = 96  # stored crop width of the test sets (the label tool's is 320)

# A standing person in a 96 px crop, MPII-16 order.
PERSON = np.array(
    [
        [40, 85],
        [41, 70],
        [42, 55],
        [54, 55],
        [55, 70],
        [56, 85],
        [48, 55],
        [48, 32],
        [48, 27],
        [48, 15],
        [34, 50],
        [36, 40],
        [40, 31],
        [56, 31],
        [60, 40],
        [62, 50],
    ],
    np.float64,
)


def _cli(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        TF_USE_LEGACY_KERAS="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8))


def _pose_record(root: Path, key: str, stem: str, points, visible=None, frame_box=None) -> dict:
    """One person as the label tool writes it: the crop image and its MPII record."""
    visible = np.ones(16, bool) if visible is None else np.asarray(visible, bool)
    image = f"{key}/{stem}.jpg"
    _image(root / "images" / image, zlib.crc32(image.encode()))
    head = np.array([points[9, 0] - 6, points[9, 1] - 2, points[9, 0] + 6, points[9, 1] + 12])
    box = CropBox((SIDE / 2, SIDE / 2), SIDE / 2)
    record = mpii_record(image, points, visible, np.ones(16), head, box, f"{key}/{stem[:6]}")
    if frame_box is not None:
        record["frame_box"] = frame_box.to_dict()
    return record


def _write_pose_set(root: Path, splits: dict[str, list[dict]], sources: dict[str, dict]) -> None:
    for split, records in splits.items():
        write_json(root / "annot" / f"{split}.json", records)
    write_json(root / "sources_pose.json", sources)


def _box(points: np.ndarray, visible: np.ndarray, margin: float = 1.25) -> tuple:
    """The reader's box, by hand: the square around the visible points times the margin."""
    p = points[visible]
    lo, hi = p.min(axis=0), p.max(axis=0)
    return (lo + hi) / 2, max(hi - lo) * margin


def test_mean_shape_is_the_training_splits_mean_in_crop_coordinates(tmp_path):
    rng = np.random.default_rng(0)
    train = [PERSON + rng.normal(0, 3, PERSON.shape) for _ in range(3)]
    train[1] = train[1] * 0.7 + 20  # another size and place: crop coordinates undo both
    hidden = np.ones((3, 16), bool)
    hidden[0, 10] = hidden[2, [10, 15]] = False  # wrists unlabelled in some samples
    valid = [PERSON + rng.normal(0, 3, PERSON.shape) for _ in range(2)]
    sources = {
        "photos-1": {"path": "p/a.jpg", "split": "train", "group": "standing"},
        "held-2": {"path": "p/b.jpg", "split": "valid", "group": "standing"},
    }
    _write_pose_set(
        tmp_path,
        {
            "train": [
                _pose_record(tmp_path, "photos-1", f"00000{i}_0", p, hidden[i])
                for i, p in enumerate(train)
            ],
            "valid": [
                _pose_record(tmp_path, "held-2", f"00000{i}_0", p) for i, p in enumerate(valid)
            ],
        },
        sources,
    )

    # By hand, from the file's own numbers (the JSON keeps 2 decimals, 1-based).
    written = json.loads((tmp_path / "annot" / "train.json").read_text())
    expected = np.zeros((16, 2))
    for k in range(16):
        rows = []
        for i, record in enumerate(written):
            if hidden[i, k]:
                q = np.asarray(record["joints"]) - 1.0
                centre, side = _box(q, hidden[i])
                rows.append((q[k] - centre) / side)
        expected[k] = np.mean(rows, axis=0)

    out = tmp_path / "eval"
    proc = _cli(
        "training.evaluate",
        "--model",
        str(POSE_FLOAT),
        "--dataset",
        "mpii",
        "--data",
        str(tmp_path),
        "--split",
        "valid",
        "--out",
        str(out),
        "--pictures",
        "0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "metrics.json").read_text())
    baseline = report["baseline"]
    assert baseline["from"].startswith("mpii/train") and not baseline["own_mean"]
    assert baseline["samples"] == 3 and baseline["counts"][10] == 1 and baseline["counts"][15] == 2
    np.testing.assert_allclose(baseline["shape"], expected, atol=1e-5)
    # The printout: the mean shape beside every joint and the headline.
    assert "mean shape: averaged over mpii/train" in proc.stdout
    head_top = next(line for line in proc.stdout.splitlines() if "head_top" in line).split()
    assert len(head_top) == 3  # name, model, mean shape
    assert "model vs mean shape in the same crop: pckh@0.5" in proc.stdout
    assert baseline["values"]["samples"] == report["values"]["samples"] == 2

    # Without a train split the evaluated set's own mean is used, and said so.
    (tmp_path / "annot" / "train.json").unlink()
    proc = _cli(
        "training.evaluate",
        "--model",
        str(POSE_FLOAT),
        "--dataset",
        "mpii",
        "--data",
        str(tmp_path),
        "--split",
        "valid",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mean shape (own mean): averaged over the evaluated set, 2 samples" in proc.stdout


def _face(rng: np.random.Generator) -> np.ndarray:
    shape = rng.uniform(20, 70, (68, 2))
    shape[36], shape[45] = (30.0, 40.0), (62.0, 40.0)  # outer eye corners
    return shape


def _write_face_set(root: Path, shape: np.ndarray, n: dict[str, int], moves=None) -> None:
    """The label tool's face layout: <split>/<key>/<frame>.jpg + .pts, <split>.index.json,
    sources_face.json. Every face is ``shape`` moved and scaled inside its crop."""
    rng = np.random.default_rng(1)
    sources, index = {}, {}
    for split, count in n.items():
        key = f"clip_{split}-0000"
        sources[key] = {"path": f"media/{key}.mp4", "split": split, "group": "talking"}
        index[split] = []
        for f in range(count):
            scale, shift = rng.uniform(0.8, 1.1), rng.uniform(-6, 6, 2)
            points = (shape - 48) * scale + 48 + shift
            rel = f"{split}/{key}/{f:06d}"
            _image(root / f"{rel}.jpg", f)
            write_pts(root / f"{rel}.pts", points)
            box = CropBox((100.0 + 7 * f, 80.0), 192.0) if moves is None else moves(f)
            index[split].append({"image": f"{rel}.jpg", "frame_box": box.to_dict()})
    for split, records in index.items():
        write_json(root / f"{split}.index.json", records)
    write_json(root / "sources_face.json", sources)


def test_a_set_of_mean_shapes_scores_zero_for_the_baseline(tmp_path):
    _write_face_set(tmp_path, _face(np.random.default_rng(0)), {"train": 4, "valid": 3})
    out = tmp_path / "eval"
    proc = _cli(
        "training.evaluate",
        "--model",
        str(FACE_FLOAT),
        "--dataset",
        "300w",
        "--data",
        str(tmp_path / "valid"),
        "--split",
        "all",
        "--out",
        str(out),
        "--pictures",
        "0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "metrics.json").read_text())
    base = report["baseline"]
    # The label tool's sibling folder valid/ -> train/ is the training split.
    assert base["from"].startswith(f"300w/train ({tmp_path / 'train'})") and base["samples"] == 4
    assert base["values"]["nme"] == pytest.approx(0.0, abs=1e-4)
    assert base["values"]["nme_inner"] == pytest.approx(0.0, abs=1e-4)
    assert report["values"]["nme"] > 1.0 and "nme_inner" in report["values"]  # untrained model
    assert report["crop"] == {"mode": "exact"}
    lines = proc.stdout.splitlines()
    assert any(line.split()[0] == "nme_inner" and len(line.split()) == 3 for line in lines)
    assert "WARNING: the model does not clearly beat the mean shape" in proc.stdout

    # The same baseline in a jittered crop is off by the jitter.
    proc = _cli(
        "training.evaluate",
        "--model",
        str(FACE_FLOAT),
        "--dataset",
        "300w",
        "--data",
        str(tmp_path / "valid"),
        "--split",
        "all",
        "--out",
        str(out),
        "--pictures",
        "0",
        "--crop",
        "jitter",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "metrics.json").read_text())
    assert report["crop"]["measured"] and report["crop"]["pairs"] == 2
    assert report["baseline"]["values"]["nme"] > 0.1


def test_inner_nme_leaves_the_jaw_line_out():
    rng = np.random.default_rng(0)
    gt = _face(rng)[None].repeat(2, axis=0)
    pred = gt.copy()
    pred[:, :17] += np.array([5.0, -3.0])  # only the jaw line is wrong
    p = Predictions(
        pred, np.ones((2, 68)), gt, np.ones((2, 68), bool), np.full(2, np.nan), np.ones(2)
    )
    for protocol in ("nme", "nme_box"):
        values = score(p, protocol, IBUG68).values
        assert values["nme_inner"] == pytest.approx(0.0) and values["nme"] > 0.5
    pred[:, 40] += 3.2  # an eye point too: inner NME is its error over the 51 inner points
    values = score(p, "nme", IBUG68).values
    assert values["nme_inner"] == pytest.approx(100 * np.hypot(3.2, 3.2) / 51 / 32)
    assert (
        "nme_inner"
        not in score(
            Predictions(
                gt[:, :16] * 1,
                np.ones((2, 16)),
                gt[:, :16],
                np.ones((2, 16), bool),
                np.full(2, 10.0),
                np.ones(2),
            ),
            "pckh",
            MPII16,
        ).values
    )


def _clip_records(root: Path, key: str, frames: list[int], centres, sizes) -> list[dict]:
    """A clip as the label tool stores it: each frame's crop centred on the person (so the
    crop points are the same), its frame_box where that crop sat in the frame."""
    return [
        _pose_record(
            root, key, f"{f:06d}_0", PERSON, frame_box=CropBox(tuple(map(float, c)), float(s))
        )
        for f, c, s in zip(frames, centres, sizes, strict=True)
    ]


def _expected_steps(frames, centres, sizes, max_gap: int = 8) -> np.ndarray:
    """The tracker's step between labelled frames, by hand: landmark boxes in frame pixels
    (crop point -> frame: centre + (p - (side - 1) / 2) * size / side)."""
    boxes = []
    for c, s in zip(centres, sizes, strict=True):
        q = np.asarray(c) + (np.round(PERSON + 1, 2) - 1 - (SIDE - 1) / 2) * s / SIDE
        boxes.append(_box(q, np.ones(16, bool)))
    rows = []
    for i in range(1, len(frames)):
        if 0 < frames[i] - frames[i - 1] <= max_gap:
            (c0, s0), (c1, s1) = boxes[i - 1], boxes[i]
            rows.append([*((c0 - c1) / s1), np.log(s0 / s1)])
    return np.asarray(rows)


def _jitter_set(root: Path) -> tuple[list[int], np.ndarray, np.ndarray]:
    frames = [0, 2, 4, 6, 8, 10, 12, 40]  # the last is too far from its predecessor
    rng = np.random.default_rng(5)
    centres = np.cumsum(rng.normal(0, 6, (len(frames), 2)), axis=0) + 300
    sizes = 200 * np.exp(np.cumsum(rng.normal(0, 0.05, len(frames))))
    records = _clip_records(root, "squat_clip-1", frames, centres, sizes)
    photos = [
        _pose_record(root, "photo-2", "000000_0", PERSON * 0.9 + 4),
        _pose_record(root, "photo-2", "000000_1", PERSON * 0.8 + 9),
        _pose_record(root, "unindexed-3", "000000_0", PERSON),
    ]
    sources = {
        "squat_clip-1": {"path": "m/squat_clip.mp4", "split": "valid", "group": "squats"},
        "photo-2": {"path": "m/photo.jpg", "split": "select", "group": "standing"},
    }
    _write_pose_set(root, {"valid": records + photos}, sources)
    return frames, centres, sizes


def test_crop_jitter_draws_from_the_measured_tracker_steps(tmp_path):
    frames, centres, sizes = _jitter_set(tmp_path)
    expected = _expected_steps(frames, centres, sizes)
    assert len(expected) == 6
    dataset = open_dataset("mpii", tmp_path, split="valid")
    shapes = collect_shapes(dataset, range(len(dataset)), threads=1)
    index = find_source_index(tmp_path, None, shapes.ids)
    assert index is not None and index.path == tmp_path / "sources_pose.json"
    jitter = crop_jitter(dataset, index, 1.25, seed=3, shapes=shapes)
    assert jitter.clips == 1 and list(jitter.gaps) == [2] * 6
    np.testing.assert_allclose(
        np.sort(jitter.offsets, axis=0), np.sort(expected, axis=0), atol=1e-6
    )

    predictor = load_predictor(POSE_FLOAT)
    first = predict_dataset(predictor, dataset, jitter=jitter, threads=1)
    again = predict_dataset(predictor, dataset, jitter=jitter, batch_size=4, threads=2)
    np.testing.assert_array_equal(first.boxes, again.boxes)  # any batch size, any threads
    np.testing.assert_array_equal(first.points, again.points)
    # Each crop is its sample's box moved by one of the measured steps.
    own, crop = first.sample_boxes, first.boxes
    applied = np.column_stack(
        [(crop[:, :2] - own[:, :2]) / own[:, 2:3], np.log(crop[:, 2] / own[:, 2])]
    )
    distance = np.abs(applied[:, None, :] - expected[None]).max(axis=-1).min(axis=1)
    assert distance.max() < 1e-6
    other = crop_jitter(dataset, index, 1.25, seed=4, shapes=shapes)
    moved = predict_dataset(predictor, dataset, jitter=other, threads=1)
    assert not np.array_equal(moved.boxes, first.boxes)
    exact = predict_dataset(predictor, dataset, threads=1)
    np.testing.assert_array_equal(exact.boxes, exact.sample_boxes)

    # The CLI reports the magnitudes it drew from; a second run with the seed is identical.
    runs = []
    for _ in range(2):
        out = tmp_path / f"eval{len(runs)}"
        proc = _cli(
            "training.evaluate",
            "--model",
            str(POSE_FLOAT),
            "--dataset",
            "mpii",
            "--data",
            str(tmp_path),
            "--split",
            "valid",
            "--crop",
            "jitter",
            "--jitter-seed",
            "3",
            "--baseline-split",
            "own",
            "--out",
            str(out),
            "--pictures",
            "0",
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs.append(json.loads((out / "metrics.json").read_text()))
    assert runs[0] == runs[1]
    crop = runs[0]["crop"]
    shift = np.hypot(expected[:, 0], expected[:, 1])
    assert crop["pairs"] == 6 and crop["clips"] == 1 and crop["median_frame_gap"] == 2
    assert crop["shift_median"] == pytest.approx(np.median(shift))
    assert crop["log_scale_p90"] == pytest.approx(np.percentile(np.abs(expected[:, 2]), 90))
    assert "drawn from 6 frame pairs of 1 clip (median gap 2 frames)" in proc.stdout


def test_photos_only_fall_back_to_the_documented_constants(tmp_path):
    records = [_pose_record(tmp_path, f"photo-{i}", "000000_0", PERSON + i) for i in range(3)]
    sources = {
        f"photo-{i}": {"path": f"m/p{i}.png", "split": "valid", "group": "standing"}
        for i in range(3)
    }
    _write_pose_set(tmp_path, {"valid": records}, sources)
    dataset = open_dataset("mpii", tmp_path, split="valid")
    index = find_source_index(tmp_path, None, [f"photo-{i}/000000_0.jpg#{i}" for i in range(3)])
    jitter = crop_jitter(dataset, index, 1.25, seed=0)
    assert jitter.offsets is None and not jitter.summary()["measured"]
    assert "fallback constants" in jitter.describe()
    draws = np.array([jitter.draw(i) for i in range(2000)])
    np.testing.assert_allclose(draws.std(axis=0), 0.03, rtol=0.1)
    np.testing.assert_array_equal(draws[7], jitter.draw(7))


def test_group_and_source_tables_add_up_to_the_whole_set(tmp_path):
    _jitter_set(tmp_path)
    out = tmp_path / "eval"
    proc = _cli(
        "training.evaluate",
        "--model",
        str(POSE_FLOAT),
        "--dataset",
        "mpii",
        "--data",
        str(tmp_path / "annot" / "valid.json"),
        "--out",
        str(out),
        "--pictures",
        "0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "metrics.json").read_text())
    total = report["values"]["samples"]
    assert total == 11 and report["sources_index"].endswith("sources_pose.json")
    groups, sources = report["groups"], report["sources"]
    assert set(groups) == {"squats", "standing", "(unknown)"}
    assert sum(g["samples"] for g in groups.values()) == total
    assert sum(s["samples"] for s in sources.values()) == total
    assert sources["squat_clip-1"]["samples"] == 8 and sources["squat_clip-1"]["group"] == "squats"
    assert sources["(unknown)"]["samples"] == 1
    for row in [*groups.values(), *sources.values()]:
        assert set(row["model"]) == set(row["mean_shape"]) >= {"pckh@0.5", "samples"}
    assert "per activity group" in proc.stdout and "per source:" in proc.stdout
    # Which side of the split the samples come from: 'select' ones are for choosing models.
    assert report["sides"] == {"(unknown)": 1, "select": 2, "valid": 8}
    assert "note: 2 samples come from 'select' sources" in proc.stdout
    squats = next(line for line in proc.stdout.splitlines() if line.split()[:1] == ["squats"])
    assert squats.split()[1] == "8"


def test_new_options_fail_in_one_line(tmp_path):
    _jitter_set(tmp_path)
    base = [
        "training.evaluate",
        "--model",
        str(POSE_FLOAT),
        "--dataset",
        "mpii",
        "--data",
        str(tmp_path),
        "--split",
        "valid",
    ]
    for extra, message in (
        (["--baseline-limit", "0"], "error: --baseline-limit must be at least 1"),
        (["--jitter-seed", "-1"], "error: --jitter-seed must be a non-negative integer"),
        (["--sources", str(tmp_path / "none.json")], "error: --sources: no such file"),
        (["--baseline-split", "test"], "error: --baseline-split test: no such split"),
        (["--crop", "wobbly"], "argument --crop: invalid choice"),
        # found before scoring, not after it (a traceback then)
        (["--batch-size", "0"], "error: --batch-size must be at least 1"),
        (["--out", str(tmp_path / "a_file")], "is a file, not a folder"),
    ):
        (tmp_path / "a_file").write_text("")
        proc = _cli(*base, *extra)
        assert proc.returncode == 2, (extra, proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        # The last line (a runtime may log before it) is the whole message.
        assert message in proc.stderr.strip().splitlines()[-1], proc.stderr
    (tmp_path / "broken.json").write_text("[1, 2")
    proc = _cli(*base, "--sources", str(tmp_path / "broken.json"))
    assert proc.returncode == 2 and "cannot read the sources index" in proc.stderr
    # A training split none of whose images can be read: the mean shape cannot be made, and
    # the line says why (the first record's reason), not only that they are all corrupt.
    records = json.loads((tmp_path / "annot" / "valid.json").read_text())
    write_json(tmp_path / "annot" / "train.json", [{**r, "image": "gone.jpg"} for r in records])
    proc = _cli(*base)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "for the mean shape is corrupt (first: " in last, last
    assert "gone.jpg" in last and "--baseline-split own" in last
    help_text = _cli("training.evaluate", "--help").stdout
    for option in ("--baseline-split", "--baseline-limit", "--crop", "--jitter-seed", "--sources"):
        assert option in help_text


@needs_messi
def test_label_tool_clip_measures_its_pan_as_crop_jitter(tmp_path):
    """The real chain: training.label (BlazePose teacher) on a clip panned 6 px a frame, then
    --crop jitter measures that pan from the stored records' frame boxes."""
    from training.label.teacher_models import TeacherUnavailable

    try:
        from training.label.pose import BlazePoseTeacher

        BlazePoseTeacher()
    except TeacherUnavailable as exc:
        pytest.skip(f"pose teacher models unavailable: {exc}")
    image = cv2.imread(str(MESSI))
    clip = tmp_path / "pan.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (500, 342))
    for i in range(5):
        writer.write(np.ascontiguousarray(image[:, 6 * i : 6 * i + 500]))
    writer.release()
    split = tmp_path / "split.yaml"
    split.write_text("valid:\n  pose: [pan]\ngroups:\n  pose:\n    kicking: ['pa*']\n")
    out = tmp_path / "set"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.label",
            "pose",
            str(clip),
            "--out",
            str(out),
            "--split",
            str(split),
            "--every",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    proc = _cli(
        "training.evaluate",
        "--model",
        str(POSE_FLOAT),
        "--dataset",
        "mpii",
        "--data",
        str(out),
        "--split",
        "valid",
        "--crop",
        "jitter",
        "--out",
        str(out / "eval"),
        "--pictures",
        "0",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "eval" / "metrics.json").read_text())
    crop = report["crop"]
    assert crop["measured"] and crop["pairs"] == 4 and crop["clips"] == 1
    records = json.loads((out / "annot" / "valid.json").read_text())
    side = np.median([r["frame_box"]["size"] for r in records]) / 2.0  # context 2 x the box
    # The pan moves the person 6 px a frame; the teacher's own wobble adds a little.
    assert crop["shift_median"] * side == pytest.approx(6.0, abs=2.0)
    assert crop["log_scale_median"] < 0.05
    assert report["groups"]["kicking"]["samples"] == report["values"]["samples"] == 5
    # The baseline came from the empty train split's absence: the set's own mean.
    assert report["baseline"]["own_mean"]
