"""Model integrity (issue 25): a single flipped weight byte moved landmarks by 100+ px and ran
silently. The converter records a SHA-256 of the model in its metadata; edge checks it at load
(a mismatch is a one-line error) and edge.doctor reports it. Real files only: the committed
fixtures and the bundled models, corrupted byte by byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from edge_fixtures import FIXTURES, POSE_FLOAT, POSE_LCE, REPO

from edge import doctor
from edge.errors import ModelError
from edge.metadata import (
    _MODEL_BUFFERS,
    DIGEST_NAME,
    METADATA_NAME,
    _model_table,
    metadata_span,
    model_digest,
    read_metadata,
    recorded_digest,
    verify_digest,
)
from edge.model import LandmarkModel

MODELS = sorted((REPO / "edge" / "models").glob("*.tflite")) + sorted(FIXTURES.glob("*.tflite"))


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_committed_models_carry_a_digest_that_matches(path: Path) -> None:
    data = path.read_bytes()
    digest = recorded_digest(data)
    assert digest is not None and re.fullmatch(r"[0-9a-f]{64}", digest), path.name
    assert verify_digest(data) == digest == model_digest(data)


def _weight_span(data: bytes) -> tuple[int, int]:
    """(offset, length) of the model's largest weight buffer (not a metadata record)."""
    records = {metadata_span(data, name) for name in (METADATA_NAME, DIGEST_NAME)}
    spans = [b.vector_span(0) for b in _model_table(data).tables(_MODEL_BUFFERS)]
    return max((s for s in spans if s not in records), key=lambda s: s[1])


def _flipped(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0xFF
    return bytes(out)


def test_a_flipped_weight_byte_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    data = POSE_FLOAT.read_bytes()
    start, size = _weight_span(data)
    assert size > 1000
    bad = tmp_path / "pose_float.tflite"
    bad.write_bytes(_flipped(data, start + size // 2))
    with pytest.raises(ModelError) as caught:
        LandmarkModel(bad, num_threads=1)
    message = str(caught.value)
    assert message.startswith(f"{bad}: the model file is corrupt: its SHA-256 is ")
    assert "copy or convert it again" in message and "\n" not in message
    # The CLIs say so in one line and exit 2.
    from edge import live

    assert live.main(["--model", str(bad), "--source", "demo", "--no-display"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the model file is corrupt" in err
    assert err.count("\n") == 1
    # The metadata still reads: only the digest tells.
    assert read_metadata(bad) == read_metadata(POSE_FLOAT)


def test_any_single_flipped_byte_stops_the_load(tmp_path: Path) -> None:
    """Not just weights: op options, tensor shapes, the landmark record, padding. Every byte of
    the file is covered but the digest's own digits, and a flip there is a mismatch too."""
    data = POSE_LCE.read_bytes()
    digits = metadata_span(data, DIGEST_NAME)
    positions = sorted({*range(0, len(data), 61), digits[0] + 7, digits[0] + 40, len(data) - 1})
    bad = tmp_path / "pose_lce.tflite"
    loaded = []
    for position in positions:
        bad.write_bytes(_flipped(data, position))
        try:
            LandmarkModel(bad, num_threads=1, backend="tflite")
        except ModelError as exc:
            assert "\n" not in str(exc)
        else:
            loaded.append(position)
    assert loaded == [], f"flipped bytes at {loaded} went unnoticed"


def _without_digest(data: bytes) -> bytes:
    """The model as a converter from before digests wrote it: no entry of that name (renamed
    in place, so nothing else moves)."""
    name = DIGEST_NAME.encode()
    assert data.count(name) == 1
    return data.replace(name, b"binland.olders")


def test_a_model_without_a_digest_loads_and_doctor_notes_it(tmp_path: Path, capsys) -> None:
    old = tmp_path / "old_pose.tflite"
    old.write_bytes(_without_digest(POSE_FLOAT.read_bytes()))
    assert recorded_digest(old.read_bytes()) is None and verify_digest(old) is None
    crop = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(  # loads, and predicts what the checked model predicts
        LandmarkModel(old, num_threads=1).predict(crop).points,
        LandmarkModel(POSE_FLOAT, num_threads=1).predict(crop).points,
    )
    assert LandmarkModel(old, num_threads=1).digest is None
    code = doctor.main(["--model", str(old), "--frames", "0", "--no-camera", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert code == 0  # a note, not a failure
    assert checks["integrity"]["status"] == "warn"
    assert "records no digest" in checks["integrity"]["detail"]
    assert "converters.convert" in checks["integrity"]["fix"]
    assert checks["load"]["status"] == "ok"


def test_doctor_reports_the_digest_and_fails_a_corrupt_model(tmp_path: Path, capsys) -> None:
    code = doctor.main(["--model", str(POSE_FLOAT), "--frames", "0", "--no-camera", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert code == 0 and checks["integrity"]["status"] == "ok"
    assert recorded_digest(POSE_FLOAT.read_bytes())[:16] in checks["integrity"]["detail"]
    data = POSE_FLOAT.read_bytes()
    start, size = _weight_span(data)
    bad = tmp_path / "pose_float.tflite"
    bad.write_bytes(_flipped(data, start + 3))
    code = doctor.main(["--model", str(bad), "--frames", "0", "--no-camera", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert checks["integrity"]["status"] == "FAIL" and "corrupt" in checks["integrity"]["detail"]
    assert "load" not in checks  # it would not load: no second error for the same cause


def test_a_damaged_digest_record_is_a_one_line_error(tmp_path: Path) -> None:
    data = bytearray(POSE_FLOAT.read_bytes())
    start, _ = metadata_span(bytes(data), DIGEST_NAME)
    data[start : start + 7] = b"md5:xyz"  # not "sha256:" and 64 hex digits
    bad = tmp_path / "pose_float.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="digest record .* is malformed"):
        LandmarkModel(bad, num_threads=1)
