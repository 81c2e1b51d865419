"""The emulated-suite record (.ci/avx2_qemu_record.py) says which test files passed in full."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _record_module():
    spec = importlib.util.spec_from_file_location(
        "avx2_qemu_record", REPO / ".ci/avx2_qemu_record.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(file: str, selection: str, passed: int, failed: int = 0, skipped: int = 0) -> dict:
    tests = passed + failed + skipped
    return {
        "file": file,
        "selection": selection,
        "tests": tests,
        "passed": passed,
        "failed": failed,
        "errors": 0,
        "skipped": skipped,
    }


def test_a_file_counts_as_covered_only_when_its_selections_pass_every_test_it_collects():
    record = _record_module()
    edge = "not tensorflow and not slow and not pi"
    rows = {
        # The edge lane's selection and its complement: together the whole file.
        "test_a [edge]": _row("test_a", edge, passed=10),
        "test_a [rest]": _row("test_a", "tensorflow or slow or pi", passed=3),
        # Only the edge lane's selection ran.
        "test_b [edge]": _row("test_b", edge, passed=10),
        # Whole, but a test was skipped for data the checkout lacked: it did not pass.
        "test_c []": _row("test_c", "", passed=4, skipped=1),
        # Whole, with a failure.
        "test_d []": _row("test_d", "", passed=4, failed=1),
        "test_e []": _row("test_e", "", passed=2),
    }
    collected = {"test_a": 13, "test_b": 13, "test_c": 5, "test_d": 5, "test_e": 2, "test_f": 7}
    groups = record.coverage(rows, collected)
    assert groups["covered"] == ["test_a", "test_e"]
    assert groups["partly"] == [
        "test_b (10 of 13 passed)",
        "test_c (4 of 5 passed)",
        "test_d (4 of 5 passed)",
    ]
    assert groups["not yet"] == ["test_f"]
    # A file that gained tests since its row ran is no longer covered.
    assert "test_e" not in record.coverage(rows, collected | {"test_e": 3})["covered"]
