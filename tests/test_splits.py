"""training.splits: which real sources are held out, and which activity group each one shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import EdgeError
from training.splits import UNGROUPED, SourceSplit, load_split, source_names

ROOT = Path(__file__).resolve().parents[1]

SPLIT = """
valid:
  pose:
    - squats_studio_woman_tfjs.mp4     # a name with its suffix means the stem
    - "codebasics_*"
    - "tfjs_models/*"                  # a whole folder of photos
  face: [talking_woman_lp_d3]
select:
  pose: ["azuresamples_*", "codebasics_messi"]   # both lists: valid wins
groups:
  pose:
    squats: ["squats_*", "*squat*"]
    sports: ["codebasics_*", "*squat_jump*"]   # squat_jump matches squats first
    photos: ["tfjs_models/*"]
"""


@pytest.fixture
def split(tmp_path) -> SourceSplit:
    path = tmp_path / "split.yaml"
    path.write_text(SPLIT)
    return load_split(path)


def test_patterns_match_the_stem_and_folder_slash_stem(split):
    assert source_names("media/pose/clip.mp4") == ("clip", "pose/clip")
    assert split.held_out(Path("/m/pose/squats_studio_woman_tfjs.mp4"), "pose")
    assert split.held_out("images2/body/codebasics_messi.jpg", "pose")
    assert split.held_out("../shared/media/images/tfjs_models/pose.jpg", "pose")
    # A stem alone does not match a folder pattern, nor another task's list.
    assert not split.held_out("elsewhere/pose.jpg", "pose")
    assert not split.held_out("/m/pose/squats_studio_woman_tfjs.mp4", "face")
    assert split.held_out("/m/face/talking_woman_lp_d3.mp4", "face")
    assert not split.held_out("/m/pose/squats_studio_woman_tfjs_2.mp4", "pose")
    assert not split.held_out("anything.mp4", "faceparts")  # a task the file does not name


def test_select_is_the_second_held_out_side(split):
    assert split.side("images2/body/azuresamples_man.jpg", "pose") == "select"
    assert split.side("images2/body/codebasics_messi.jpg", "pose") == "valid"
    assert split.side("clips/walking_park.mp4", "pose") == "train"
    assert not split.held_out("images2/body/azuresamples_man.jpg", "pose")


def test_the_first_matching_group_wins(split):
    assert split.group("clips/squat_jump_gym.mp4", "pose") == "squats"
    assert split.group("images2/body/codebasics_kohli.jpg", "pose") == "sports"
    assert split.group("images/tfjs_models/three_people.jpg", "pose") == "photos"
    assert split.group("clips/walking_park.mp4", "pose") == UNGROUPED == "other"
    assert split.group("clips/squats_gym.mp4", "face") == UNGROUPED  # no face groups


def test_unused_patterns_are_the_ones_no_source_matches(split):
    given = [Path("/m/squats_studio_woman_tfjs.mp4"), Path("/i/tfjs_models/pose.jpg")]
    assert split.unused(given, "pose") == ["codebasics_*", "azuresamples_*", "codebasics_messi"]
    assert split.unused([], "face") == ["talking_woman_lp_d3"]
    assert load_split(None).unused(given, "pose") == []
    assert not load_split(None).held_out(given[0], "pose")


def test_a_finder_holds_out_its_landmark_tasks_sources_and_its_own(tmp_path):
    path = tmp_path / "split.yaml"
    face_line = "  face: [talking_woman_lp_d3]\n"
    path.write_text(SPLIT.replace(face_line, face_line + "  person-finder: [lab_two_people_*]\n"))
    split = load_split(path)
    two_people = "/m/pose/lab_two_people_cam1.mp4"
    # The pose task's lists hold for its finder, sides and groups alike ...
    assert split.side("images2/body/codebasics_messi.jpg", "person-finder") == "valid"
    assert split.side("images2/body/azuresamples_man.jpg", "person-finder") == "select"
    assert split.group("clips/squats_gym.mp4", "person-finder") == "squats"
    # ... and the finder's own list holds out what the pose model still trains on.
    assert split.side(two_people, "person-finder") == "valid"
    assert split.side(two_people, "pose") == "train"
    assert split.side(two_people, "face-finder") == "train"  # the face finder's parent is face
    assert "lab_two_people_*" in split.unused([], "person-finder")
    assert "lab_two_people_*" not in split.unused([], "pose")


def test_the_committed_split_holds_the_multi_person_benchmark_clips_out_of_the_finder():
    from benchmarks.multi_person import CLIPS

    split = load_split(ROOT / "configs" / "splits" / "held_out_sources.yaml")
    assert [c for c in CLIPS if split.side(f"pose/{c}", "person-finder") == "train"] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("valid: [a, b]\n", "map a task to its sources"),
        ("valid:\n  pose: squats\n", "valid.pose must be a list of source names or patterns"),
        ("valid:\n  pose: [{a: 1}]\n", "valid.pose must be a list"),
        ("groups:\n  pose: [a]\n", "groups.pose maps a group name to source patterns"),
        ("groups:\n  pose:\n    yoga: yoga_*\n", "groups.pose.yoga must be a list"),
        ("- valid\n", "must be a mapping with 'valid:'"),
        ("valid: [unclosed\n", "cannot read the split file"),
        # a typo would train on what was meant to be held out
        ("vaild:\n  pose: [squats_*]\n", "unknown key 'vaild'"),
    ],
)
def test_a_malformed_file_is_a_one_line_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(EdgeError) as caught:
        load_split(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file_is_a_one_line_error_through_the_label_cli(tmp_path):
    with pytest.raises(EdgeError, match="cannot read the split file"):
        load_split(tmp_path / "none.yaml")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.label",
            "pose",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--split",
            str(tmp_path / "no.yaml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot read the split file")
    assert "Traceback" not in proc.stderr


def test_the_committed_split_files_load():
    for path in sorted((ROOT / "configs" / "splits").glob("*.yaml")):
        split = load_split(path)
        assert split.valid.get("pose"), path
