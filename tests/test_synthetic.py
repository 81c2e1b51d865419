"""The procedural datasets: deterministic, well-formed, varied enough not to be trivial, fast."""

import cv2
import numpy as np
import pytest

from edge.skeletons import IBUG68, MPII16
from training import metrics
from training.data import DatasetError, iter_samples, open_dataset, synthetic_face, synthetic_pose

NAMES = ("synthetic-pose", "synthetic-face")


def _load_all(name: str, n: int, **kw):
    ds = open_dataset(name, split="val", size=n, seed=3, **kw)
    return ds, list(iter_samples(ds))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed_split_index(name):
    a = open_dataset(name, split="train", size=10, seed=1, image_size=96)
    b = open_dataset(name, split="train", size=10, seed=1, image_size=96)
    s1, s2 = a.load(4), b.load(4)
    assert np.array_equal(s1.image, s2.image) and np.array_equal(s1.points, s2.points)
    assert np.array_equal(s1.visible, s2.visible) and s1.box == s2.box
    for other in (
        a.load(5),
        open_dataset(name, split="val", size=10, seed=1, image_size=96).load(4),
        open_dataset(name, split="train", size=10, seed=2, image_size=96).load(4),
    ):
        assert not np.array_equal(other.points, s1.points)
    assert a.load(-1).id == a.load(9).id
    with pytest.raises(IndexError):
        a.load(10)


@pytest.mark.parametrize("name, skeleton", [("synthetic-pose", MPII16), ("synthetic-face", IBUG68)])
def test_samples_are_well_formed(name, skeleton):
    ds, samples = _load_all(name, 40, image_size=128)
    assert ds.skeleton is skeleton and len(samples) == 40 and ds.skipped.count == 0
    inside_total = visible_total = 0
    for s in samples:
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        assert s.points.shape == (skeleton.num_landmarks, 2) and s.points.dtype == np.float32
        assert np.isfinite(s.points).all()
        p = s.points
        inside = (p[:, 0] >= -0.5) & (p[:, 0] <= 127.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= 127.5)
        assert not (s.visible & ~inside).any(), "a point off the image is marked visible"
        inside_total += inside.sum()
        visible_total += s.visible.sum()
        # The square box holds every landmark with the 1.25 margin.
        lo, hi = p.min(0), p.max(0)
        assert s.box.size == pytest.approx(max(hi - lo) * 1.25, rel=1e-4)
        assert np.allclose(s.box.center, (lo + hi) / 2, atol=1e-3)
    # Occluders hide some in-frame points, but most stay visible.
    n = 40 * skeleton.num_landmarks
    assert 0.6 * n < visible_total < inside_total


def test_pose_anatomy_and_head_size():
    _, samples = _load_all("synthetic-pose", 60, image_size=128)
    j = synthetic_pose
    for s in samples:
        p = s.points.astype(np.float64)
        torso = np.linalg.norm(p[j.THORAX] - p[j.PELVIS])
        assert torso > 0
        for a, b in MPII16.edges:
            assert np.linalg.norm(p[a] - p[b]) <= 2.6 * torso
        # Pelvis between the hips, thorax between the shoulders (up to the shoulder drop).
        assert np.allclose(p[j.PELVIS], (p[j.R_HIP] + p[j.L_HIP]) / 2, atol=1.0)
        mid = (p[j.R_SHO] + p[j.L_SHO]) / 2
        assert np.linalg.norm(mid - p[j.THORAX]) <= 0.35 * torso + 1.0
        head = np.linalg.norm(p[j.HEAD] - p[j.NECK])
        assert s.head_size == pytest.approx(0.6 * np.sqrt(2) * head, rel=1e-5)


def test_pose_is_not_solved_by_a_mean_pose():
    """A predictor that places the average pose in the box scores low: the poses vary."""
    _, samples = _load_all("synthetic-pose", 150, image_size=128)
    norm = np.stack([(s.points - s.box.center) / s.box.size for s in samples])
    mean = norm.mean(axis=0)
    pred = np.stack([mean * s.box.size + s.box.center for s in samples])
    gt = np.stack([s.points for s in samples])
    vis = np.stack([s.visible for s in samples])
    hs = [s.head_size for s in samples]
    res = metrics.pckh(pred, gt, vis, hs, MPII16)
    assert res.total < 40.0
    # ... while the ground truth itself scores 100.
    assert metrics.pckh(gt, gt, vis, hs, MPII16).total == 100.0


def test_face_geometry():
    _, samples = _load_all("synthetic-face", 60, image_size=128)
    norm, gt = [], []
    for s in samples:
        p = s.points.astype(np.float64)
        across = p[45] - p[36]  # subject's right eye corner -> left eye corner
        down = p[8] - p[27]  # nose bridge -> chin
        # Upright-ish faces (roll <= 40 deg): "across" turns clockwise into "down".
        assert across[0] * down[1] - across[1] * down[0] > 0
        iod = np.linalg.norm(across)
        assert 0.15 * s.box.size < iod < 0.75 * s.box.size
        assert s.head_size is None
        norm.append((p - s.box.center) / s.box.size)
        gt.append(p)
    mean = np.mean(norm, axis=0)
    pred = [mean * s.box.size + s.box.center for s in samples]
    errors = metrics.nme(np.stack(pred), np.stack(gt), IBUG68)
    assert np.mean(errors) > 0.08  # the mean face is far from solving it


@pytest.mark.parametrize("name", NAMES)
def test_label_occluded_keeps_covered_points(name):
    hidden = open_dataset(name, size=30, seed=5, image_size=96)
    labelled = open_dataset(name, size=30, seed=5, image_size=96, label_occluded=True)
    some_covered = False
    for i in range(30):
        a, b = hidden.load(i), labelled.load(i)
        assert np.array_equal(a.image, b.image)
        assert not (a.visible & ~b.visible).any()
        some_covered |= bool((b.visible & ~a.visible).any())
    assert some_covered


@pytest.mark.parametrize("module", [synthetic_pose, synthetic_face])
def test_preview_cli(tmp_path, capsys, module):
    out = tmp_path / "sheet.png"
    argv = ["--preview", str(out), "--count", "6", "--image-size", "64", "--time", "3"]
    assert module.main(argv) == 0
    sheet = cv2.imread(str(out))
    assert sheet.shape == (512, 1024, 3)  # 6 tiles of 256 in rows of 4
    assert "ms per 64x64 image" in capsys.readouterr().out
    assert module.main(["--image-size", "8"]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_bad_options(name):
    with pytest.raises(DatasetError, match="split"):
        open_dataset(name, split="holdout")
    with pytest.raises(DatasetError, match="no path"):
        open_dataset(name, "/tmp")
    with pytest.raises(DatasetError, match="size"):
        open_dataset(name, size=0)


def _edges_outside_box(sample) -> float:
    """Share of the pixels outside the figure's box on a strong edge: how cluttered the scene
    is (a median first, so sensor noise is not an edge)."""
    grey = cv2.medianBlur(cv2.cvtColor(sample.image, cv2.COLOR_BGR2GRAY), 5).astype(np.float32)
    strength = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    (cx, cy), half = sample.box.center, sample.box.size / 2
    ys, xs = np.mgrid[: grey.shape[0], : grey.shape[1]]
    outside = (np.abs(xs - cx) > half) | (np.abs(ys - cy) > half)
    return float((strength[outside] > 40).mean()) if outside.any() else float("nan")


def test_plain_style_draws_one_figure_in_flat_colours_on_a_plain_wall():
    """style=plain: the demo clip's kind of drawing (one figure, no clutter, no occluders)."""
    kw = dict(split="val", size=30, seed=3, image_size=128)
    plain = list(iter_samples(open_dataset("synthetic-pose", style="plain", **kw)))
    cluttered = list(iter_samples(open_dataset("synthetic-pose", **kw)))
    # Same figures' kind (the skeleton and box rules are shared), a quieter scene around them.
    for s in plain:
        inside = (s.points >= -0.5).all(axis=1) & (s.points <= 127.5).all(axis=1)
        assert np.array_equal(s.visible, inside), "nothing covers a joint in a plain drawing"
    busy_plain = np.nanmedian([_edges_outside_box(s) for s in plain])
    busy_cluttered = np.nanmedian([_edges_outside_box(s) for s in cluttered])
    assert busy_plain < 0.5 * busy_cluttered  # 0.024 against 0.091 when written
    a = open_dataset("synthetic-pose", style="plain", **kw).load(7)
    assert np.array_equal(a.image, plain[7].image)  # deterministic like every style
    with pytest.raises(DatasetError, match="style"):
        open_dataset("synthetic-pose", style="cartoon")
