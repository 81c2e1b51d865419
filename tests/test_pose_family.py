"""python -m benchmarks.pose_family: its command line fails in one line before any slow work, and its
recommendation only ever picks a row that clears both of issue 13's bars (faster than BlazePose
in the same run, at most 1.3 MB). The timing itself is a benchmark, never a test."""

from __future__ import annotations

import pytest

from benchmarks import pose_family


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        pose_family.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_missing_trained_model_is_one_line(tmp_path, capsys):
    err = _fails(["--trained", f"mine={tmp_path / 'nope.tflite'}"], capsys)
    assert "model file not found" in err and "nope.tflite" in err


def test_trained_model_needs_its_config(tmp_path, capsys):
    model = tmp_path / "pose.tflite"
    model.write_bytes(b"not read before the config is found")
    err = _fails(["--trained", f"mine={model}"], capsys)
    assert "config.yaml" in err
    assert "NAME=MODEL" in _fails(["--trained", str(model)], capsys)


@pytest.mark.parametrize(
    "rows, why",
    [
        ("128x96x3", "INPUTxFEATURESxDEPTHxSTACKS"),
        ("96x96x4x1", "multiple of 64"),
        ("128x90x3x1", "multiple of 4"),
    ],
)
def test_bad_rows_are_one_line(rows, why, capsys):
    # Checked before any model is built: the rules are build_hourglass's own.
    assert pose_family.main(["--rows", rows]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --rows:") and why in err and "\n" not in err, err


def test_a_kernel_path_this_cpu_cannot_run_is_one_line(tmp_path, capsys):
    # Checked before any model is built or scored; the message lists the paths this CPU has.
    reference = tmp_path / "blazepose.tflite"
    reference.write_bytes(b"not read before the path is checked")
    argv = ["--rows", "128x96x3x1", "--reference", str(reference)]
    assert pose_family.main([*argv, "--simd", "sse9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "--simd sse9" in err and "this CPU runs" in err and "portable" in err


def _row(name: str, ms: float, mb: float, pck: float | None) -> dict:
    # pck: the limbs' PCK@0.2 averaged over the clips (pck + 2) and the photos (pck - 2).
    accuracy = None
    if pck is not None:
        accuracy = {"limbs": pck, "clips": pck + 2, "photos": pck - 2, "side": "select"}
    return {
        "name": name,
        "arch": name,
        "median_ms": ms,
        "size_bytes": mb * 1e6,
        "binary_macs": int(ms * 1e8),
        "accuracy": accuracy,
    }


def test_recommendation_clears_both_bars():
    reference = _row("blazepose", 10.0, 6.4, None)
    rows = [
        _row("too-big", 5.0, 1.4, 90.0),
        _row("too-slow", 12.0, 0.3, 95.0),
        _row("untrained-fast", 1.0, 0.3, None),
        _row("ok", 4.0, 0.4, 60.0),
        _row("better", 6.0, 1.2, 70.0),
    ]
    best, why = pose_family.recommend(rows, reference)
    assert best["name"] == "better" and "72.0 % on the select clips and 68.0 %" in why
    # Within a point of the best, the faster trained model is preferred.
    tie = [*rows, _row("tie-but-faster", 3.0, 0.5, 69.5)]
    best, why = pose_family.recommend(tie, reference)
    assert best["name"] == "tie-but-faster" and "better scores 0.5 points" in why
    assert "**untrained-fast** is the largest" in why  # the next to train: 2x margin or more
    best, why = pose_family.recommend(rows[:3], reference)
    assert best["name"] == "untrained-fast" and "no trained model" in why
    assert pose_family.recommend(rows[:2], reference)[0] is None
