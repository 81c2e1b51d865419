"""The record of which test files passed on an emulated AVX2-only CPU (.ci/avx2_qemu_suite.sh).

    python .ci/avx2_qemu_record.py --passed OUT/test_x.xml   # exit 0: it ran tests, all good
    python .ci/avx2_qemu_record.py --record OUT [--mark EXPR] [--results DIR]

``--record`` folds every junit XML in OUT into ``DIR/avx2_qemu_suite.json`` (one row per test
file and marker selection: tests, passed, failed, errors, skipped, seconds, the commit and
host it ran on, the date), a new row replacing the old one of the same file and selection,
and writes the same rows as ``avx2_qemu_suite.md`` with the test files not yet recorded
listed under the table.
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


def render(rows: dict[str, dict], unrecorded: list[str]) -> str:
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
    lines += ["", "Not yet recorded: " + (", ".join(unrecorded) if unrecorded else "none") + "."]
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
    every = sorted(p.stem for p in (REPO / "tests").glob("test_*.py"))
    recorded = {row["file"] for row in rows.values()}
    text = render(rows, [name for name in every if name not in recorded])
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
