"""The committed .tflite fixtures: what they hold, that the runtime reads what the metadata
records, and that tests/make_fixtures.py still makes exactly these files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edge_fixtures import FACE_FLOAT, FIXTURES, PERSON_FINDER, POSE_FLOAT, POSE_LCE, REPO

from edge.backends import is_bitpacked
from edge.codec import HeatmapCodec
from edge.errors import ModelError
from edge.metadata import LandmarkMetadata, custom_op_names, read_metadata
from edge.model import LandmarkModel


def test_fixtures_are_tiny_real_models_with_metadata():
    for path, skeleton, bitpacked in (
        (POSE_FLOAT, "mpii16", False),
        (POSE_LCE, "mpii16", True),
        (FACE_FLOAT, "ibug68", False),
    ):
        assert path.stat().st_size < 150_000, path
        meta = read_metadata(path)
        assert meta.skeleton == skeleton and meta.model_name == f"fixture-{path.stem}"
        assert meta.input_size == (64, 64) and meta.heatmap_size == (16, 16)
        assert meta.weights_format == ("lce" if bitpacked else "float")
        assert is_bitpacked(path.read_bytes()) == bitpacked
    assert {"LceBconv2d", "LceQuantize"} <= set(custom_op_names(POSE_LCE.read_bytes()))
    finder = read_metadata(PERSON_FINDER)
    assert (finder.task, finder.classes, finder.model_name) == (
        "finder",
        ("person",),
        "fixture-person_finder_float",
    )
    assert finder.input_size == (64, 64) and finder.heatmap_size == (16, 16)
    assert finder.num_outputs == 10 and finder.finder_codec().stride == 4


def test_runtime_decodes_with_the_recorded_sigma_and_refinement():
    meta = read_metadata(POSE_FLOAT)
    assert (meta.heatmap_sigma, meta.refine) == (1.5, "quarter")  # the converter's defaults
    model = LandmarkModel(POSE_FLOAT, num_threads=1)
    assert model.codec == HeatmapCodec((64, 64), (16, 16), sigma=1.5, refine="quarter")
    assert LandmarkModel(POSE_FLOAT, num_threads=1, refine="dark").codec.refine == "dark"
    dark = LandmarkMetadata.for_skeleton(
        "mpii16", input_size=(64, 64), heatmap_size=(16, 16), heatmap_sigma=2.0, refine="dark"
    )
    assert dark.codec() == HeatmapCodec((64, 64), (16, 16), sigma=2.0, refine="dark")
    # A recorded DARK model decodes a Gaussian peak at its exact sub-cell position.
    maps, _ = dark.codec().encode(np.array([[20.3, 41.7]] * 16))
    np.testing.assert_allclose(dark.codec().decode(maps)[0][0], [20.3, 41.7], atol=0.05)


def test_version_1_records_still_load_and_newer_ones_are_refused():
    record = json.loads(read_metadata(POSE_FLOAT).to_json())
    record["format_version"] = 1
    for key in ("heatmap_sigma", "refine"):
        del record[key]
    record["landmark_convention"] = "pixel-centre; cell j <-> crop (j+0.5)*stride-0.5"
    old = LandmarkMetadata.from_json(json.dumps(record))
    assert (old.heatmap_sigma, old.refine) == (1.5, "quarter")
    assert not hasattr(old, "landmark_convention")
    record["format_version"] = 99
    with pytest.raises(ModelError, match="upgrade the edge package"):
        LandmarkMetadata.from_json(json.dumps(record))


@pytest.mark.tensorflow
def test_the_script_makes_exactly_the_committed_fixtures(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "make_fixtures.py"), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    made = sorted(p.name for p in tmp_path.glob("*.tflite"))
    assert made == sorted(p.name for p in FIXTURES.glob("*.tflite"))
    for name in made:
        _assert_same_network(tmp_path / name, FIXTURES / name)


def _assert_same_network(made: Path, committed: Path) -> None:
    """``made`` is ``committed`` as far as the host allows: the same landmark record, ops
    and tensors (names, shapes, types), every integer tensor (the bitpacked weights among
    them) to the bit, and every float tensor within a millionth of its largest value. Not
    byte for byte: the converter folds BatchNorm into the convolutions in float32, and the
    last bit of that arithmetic depends on the host's CPU (an Intel Xeon and an AMD EPYC,
    both AVX-512, differ by up to 1.2e-7 on constants of about 1: one or two ulps)."""
    from ai_edge_litert.interpreter import Interpreter

    from converters.tflite_metadata import op_counts

    hint = f"tests/fixtures/{committed.name} differs from what tests/make_fixtures.py makes"
    a_bytes, b_bytes = made.read_bytes(), committed.read_bytes()
    assert read_metadata(a_bytes) == read_metadata(b_bytes), f"{hint}: its landmark record"
    assert op_counts(a_bytes) == op_counts(b_bytes), f"{hint}: its ops"
    a, b = Interpreter(model_content=a_bytes), Interpreter(model_content=b_bytes)
    a_details, b_details = a.get_tensor_details(), b.get_tensor_details()
    assert [(d["name"], tuple(d["shape"]), d["dtype"]) for d in a_details] == [
        (d["name"], tuple(d["shape"]), d["dtype"]) for d in b_details
    ], f"{hint}: its tensors"
    for x, y in zip(a_details, b_details, strict=True):
        try:
            mine, theirs = a.get_tensor(x["index"]), b.get_tensor(y["index"])
        except ValueError:  # an activation: no data before the graph runs
            continue
        if mine.dtype.kind != "f":
            assert np.array_equal(mine, theirs), f"{hint}: tensor {x['name']}"
        elif mine.size:
            scale = float(np.abs(theirs).max()) or 1.0
            worst = float(np.abs(mine.astype(np.float64) - theirs).max())
            assert worst <= 1e-6 * scale, f"{hint}: tensor {x['name']} by {worst:.3g}"
