"""python -m benchmarks.delegate_ab: a bad command line fails in one line before any slow work, and
rounds are classed fast or slow by the first build's time, each state with its own medians.
The timing itself is a benchmark, never a test."""

from __future__ import annotations

import pytest

from benchmarks import delegate_ab


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        delegate_ab.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_bad_command_lines_are_one_line(tmp_path, capsys):
    assert "no such library" in _fails([str(tmp_path / "missing.so")], capsys)
    assert "must be positive" in _fails(["current", "--seconds", "0"], capsys)
    assert "not a number" in _fails(["current", "--runs", "many"], capsys)
    assert "--threads 1" in _fails(["current", "--clock", "cpu"], capsys)
    assert "invalid choice" in _fails(["current", "--simd", "sse9"], capsys)


def test_rounds_are_classed_by_the_first_build():
    # Build a is 25 % slower in the "slow" rounds; b barely moves; the twin is the last column.
    fast = [[6.7, 6.6, 36.0]] * 8
    slow = [[8.4, 6.8, 38.0]] * 4
    text, ratios = delegate_ab.table(["a", "b"], fast + slow, slow_factor=1.15)
    assert ratios[("fast", "a")] == pytest.approx(36.0 / 6.7)
    assert ratios[("slow", "a")] == pytest.approx(38.0 / 8.4)
    assert ratios[("slow", "b")] == pytest.approx(38.0 / 6.8)
    assert "| fast | 8 | a |" in text and "| slow | 4 | b |" in text
