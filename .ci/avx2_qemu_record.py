"""The record of which test files passed on an emulated AVX2-only CPU (.ci/avx2_qemu_suite.sh).

    python .ci/avx2_qemu_record.py --passed OUT/test_x.xml   # exit 0: it ran tests, all good
    python .ci/avx2_qemu_record.py --record OUT [--mark EXPR] [--results DIR]

``--record`` folds every junit XML in OUT into ``DIR/avx2_qemu_suite.json`` (one row per test
file and marker selection: tests, passed, failed, errors, skipped, seconds, the commit and
host it ran on, the date), a new row replacing the old one of the same file and selection,
and writes the same rows as ``avx2_qemu_suite.md`` with, under the table, which test files
passed emulated in full: a file counts as covered when its rows' selections together pass as
many tests as the file collects now (natively, at the checkout that folds the record), so a
file run with the edge lane's selection and again with its complement is covered, and one that
gained tests since its row, or skipped one, is not.
The record lives in the repository because the XML files do not outlive a session.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from .ci/

from edge.host import cpu_name  # noqa: E402


def totals(xml_path: Path) -> dict | None:
    """A junit file's counts, or None if it is missing or unreadable (a run cut off)."""
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0}
    for suite in suites:
        counts["tests"] += int(suite.get("tests", 0))
        counts["failed"] += int(suite.get("failures", 0))
        counts["errors"] += int(suite.get("errors", 0))
        counts["skipped"] += int(suite.get("skipped", 0))
        counts["seconds"] += float(suite.get("time", 0.0))
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    counts["seconds"] = round(counts["seconds"])
    return counts


def passed(counts: dict | None) -> bool:
    return counts is not None and counts["passed"] > 0 and not counts["failed"] + counts["errors"]


def commit() -> str:
    run = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path.cwd()
    )
    return run.stdout.strip() or "unknown"


def collected_counts() -> dict[str, int]:
    """How many tests each test file collects at this checkout (``pytest --collect-only``)."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if run.returncode != 0:  # counts from a failed collection would call every file covered
        last = (run.stdout.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"error: pytest --collect-only failed ({last})")
    counts: dict[str, int] = {}
    for line in run.stdout.splitlines():
        if line.startswith("tests/test_") and "::" in line:
            name = Path(line.split("::")[0]).stem
            counts[name] = counts.get(name, 0) + 1
    return counts


def coverage(rows: dict[str, dict], collected: dict[str, int]) -> dict[str, list[str]]:
    """The test files sorted by how much of them passed emulated: ``covered`` (every test the
    file collects passed, in one whole-file row or in selections that add up to it),
    ``partly`` and ``not yet``. Selections are taken as disjoint (the suite uses the edge
    lane's expression and its complement); a whole-file row stands alone."""
    groups: dict[str, list[str]] = {"covered": [], "partly": [], "not yet": []}
    for name in sorted(collected):
        mine = [r for r in rows.values() if r["file"] == name]
        whole = [r for r in mine if not r["selection"]]
        # Passed, not run: a test skipped for data this checkout lacks did not pass emulated.
        passed = whole[0]["passed"] if whole else sum(r["passed"] for r in mine)
        clean = all(not r["failed"] + r["errors"] for r in (whole or mine))
        if not mine:
            groups["not yet"].append(name)
        elif clean and passed >= collected[name]:
            groups["covered"].append(name)
        else:
            groups["partly"].append(f"{name} ({passed} of {collected[name]} passed)")
    return groups


def render(rows: dict[str, dict], groups: dict[str, list[str]]) -> str:
    total = {k: sum(r[k] for r in rows.values()) for k in ("tests", "passed", "failed", "errors")}
    lines = [
        "# The suite on an emulated AVX2-only CPU",
        "",
        "Each test file in its own pytest process under `.ci/avx2_qemu.sh` (QEMU user mode, "
        "Haswell model without AVX-512: numpy, TensorFlow's oneDNN, TFLite's XNNPACK, OpenCV and "
        "the delegate all take their AVX2 code), driven by `.ci/avx2_qemu_suite.sh`; the tests' "
        "deadlines on child processes stretched by `BINLAND_TEST_SLOWDOWN`. Host: the real CPU "
        "under the emulator. Seconds are emulated wall time on a shared 2-core machine, not a "
        "speed figure. A row is the file's latest run; `selection` is the pytest marker "
        "expression it ran with (empty: every test of the file).",
        "",
        f"Recorded: {len(rows)} runs of {len({r['file'] for r in rows.values()})} files, {total['tests']} tests: {total['passed']} passed, "
        f"{total['failed']} failed, {total['errors']} errors.",
        "",
        "| file | tests | passed | failed | errors | skipped | seconds | selection | commit | host | date |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for key in sorted(rows):
        r = rows[key]
        lines.append(
            f"| {r['file']} | {r['tests']} | {r['passed']} | {r['failed']} | {r['errors']} | "
            f"{r['skipped']} | {r['seconds']} | {r['selection']} | {r['commit']} | {r['host']} "
            f"| {r['date']} |"
        )
    files = sum(len(v) for v in groups.values())
    lines += [
        "",
        f"Every test passed emulated, {len(groups['covered'])} of {files} files (in a whole-file "
        "row, or in selections that together pass every test the file collects now; a test "
        "skipped for data the checkout lacked has not passed): "
        + (", ".join(groups["covered"]) or "none")
        + ".",
        "",
        "Partly: " + (", ".join(groups["partly"]) or "none") + ".",
        "",
        "Not yet recorded: " + (", ".join(groups["not yet"]) or "none") + ".",
    ]
    return "\n".join(lines) + "\n"


def record(out: Path, mark: str, results: Path) -> int:
    json_path = results / "avx2_qemu_suite.json"
    rows: dict[str, dict] = json.loads(json_path.read_text()) if json_path.exists() else {}
    stamp = {"selection": mark, "host": cpu_name(), "date": datetime.date.today().isoformat()}
    for xml_path in sorted(out.glob("*.xml")):
        counts = totals(xml_path)
        if counts is None or counts["tests"] == 0:
            continue
        # The commit the file ran at, which the suite script notes beside its XML: --record-only
        # may fold the files from another checkout than the one that ran them.
        ran_at = xml_path.with_suffix(".commit")
        tested = ran_at.read_text().strip() if ran_at.is_file() else commit()
        rows[f"{xml_path.stem} [{mark}]"] = (
            counts | stamp | {"commit": tested, "file": xml_path.stem}
        )
    results.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    collected = collected_counts()
    for name in (p.stem for p in (REPO / "tests").glob("test_*.py")):
        collected.setdefault(name, 0)  # a file that collects nothing here still gets listed
    text = render(rows, coverage(rows, collected))
    (results / "avx2_qemu_suite.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passed", type=Path, help="exit 0 only if this junit XML passed")
    parser.add_argument("--record", type=Path, help="fold this folder's junit XML files")
    parser.add_argument("--mark", default="", help="the marker selection the files ran with")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.passed is not None:
        return 0 if passed(totals(args.passed)) else 1
    if args.record is not None:
        return record(args.record, args.mark, args.results)
    parser.error("give --passed XML or --record OUT")
    return 2


if __name__ == "__main__":
    sys.exit(main())
