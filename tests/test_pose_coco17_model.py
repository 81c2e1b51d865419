"""The opt-in COCO-17 pose model (edge/models/pose_coco17.tflite, ``--model pose-coco17``).

What a user relies on: the file is small, bitpacked and labelled COCO-17 with the tracker's
lost cut it was calibrated with; ``edge.live --model pose-coco17`` writes COCO-17 names; the
drawn demo figure scores what edge/models/README.md says (below the default model's bar:
why it is opt-in); and, where the teacher's labels of the media are here, the source-held-out
numbers of its committed report (benchmarks/results/held_out_pose_v11.md) reproduce.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import BUNDLED, resolve_model
from edge.metadata import custom_op_names, read_metadata
from edge.skeletons import COCO17
from edge.tracking import recorded_lost_below

REPO = Path(__file__).resolve().parents[1]
MODEL = BUNDLED["pose-coco17"]
REPORT = REPO / "benchmarks" / "results" / "held_out_pose_v11.md"
MODELS_README = REPO / "edge" / "models" / "README.md"
# What training.label read for each set, with the options past --out/--split its summary records.
LABEL_SOURCES = {
    "clips": "../shared/media/pose --every 1 --max-per-source 400",
    "photos": "../shared/media/images ../shared/media/images2/body",
}


def test_the_model_is_small_bitpacked_coco17_and_calibrated():
    assert resolve_model("pose-coco17") == MODEL
    data = MODEL.read_bytes()
    assert len(data) <= 1_300_000  # issue 24's size bar for a bundled pose model
    meta = read_metadata(data)
    assert meta.task == "pose" and meta.skeleton == "coco17"
    assert meta.landmarks == COCO17.landmarks and meta.weights_format == "lce"
    assert {"LceBconv2d", "LceQuantize"} <= set(custom_op_names(data))
    # Calibrated on the select clips (training.evaluate --calibrate-tracking): edge.live's
    # --lost-below auto uses it.
    lost_below = recorded_lost_below(meta)
    assert lost_below is not None and 0.1 < lost_below < 0.5


def test_edge_live_writes_coco17_names(tmp_path):
    jsonl = tmp_path / "out.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.live",
            "--model",
            "pose-coco17",
            "--source",
            "demo",
            "--max-frames",
            "12",
            "--jsonl",
            str(jsonl),
            "--threads",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 12
    for record in records:
        assert [p["name"] for p in record["landmarks"]] == list(COCO17.landmarks)


def _readme_demo_score() -> float:
    """The demo figure's limb score edge/models/README.md reports for this model."""
    found = re.search(r"demo figure[^|\n]*\|[^|\n]*\*\*(0\.\d+)\*\*", MODELS_README.read_text())
    assert found, "edge/models/README.md reports no demo figure score for pose_coco17.tflite"
    return float(found.group(1))


def test_the_demo_figure_scores_what_the_readme_says():
    """The README's first command draws a figure whose waving wrist every student here misses;
    this model's score there is reported, and it is why the model is opt-in."""
    from benchmarks.demo_figure import score

    result = score(MODEL, threads=1)
    assert result.skeleton == "coco17" and result.tracked > 0.95
    assert abs(result.limbs - _readme_demo_score()) < 0.02


def _reported(kind: str) -> tuple[int, float, float]:
    """(samples, model, mean shape) of the report's 'pose {kind}' row (PCK@0.2, all points)."""
    row = re.search(
        rf"^\| pose {kind} \| (\d+) \| \*\*([\d.]+)\*\* \| ([\d.]+) \|", REPORT.read_text(), re.M
    )
    assert row, f"{REPORT.name} has no 'pose {kind}' row"
    return int(row.group(1)), float(row.group(2)), float(row.group(3))


@pytest.mark.slow
@pytest.mark.tensorflow  # training.evaluate: the train extra
@pytest.mark.parametrize("kind", ["clips", "photos"])
def test_the_reported_held_out_numbers_reproduce(kind, tmp_path):
    from benchmarks.held_out import evaluate, held_out_sets

    spec = next(s for s in held_out_sets("coco17") if s["name"] == f"pose {kind}")
    if not spec["labels"].is_file():
        pytest.skip(
            f"{spec['labels']} is not here (teacher labels of the media, never committed): "
            f"make it with python -m training.label pose {LABEL_SOURCES[kind]} --out "
            f"data/pose_v2_{kind} --split configs/splits/held_out_sources.yaml"
        )
    metrics = evaluate(MODEL, spec, tmp_path, threads=2)
    samples, model, mean_shape = _reported(kind)
    assert metrics["values"]["samples"] == samples
    assert abs(metrics["values"]["pck@0.2"] - model) < 1.0
    assert abs(metrics["baseline"]["values"]["pck@0.2"] - mean_shape) < 0.1
