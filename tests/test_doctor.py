"""python -m edge.doctor on this machine: every check reports, with a fix when something is missing."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

import pytest
from edge_fixtures import PERSON_FINDER, POSE_FLOAT

from edge import doctor
from edge.deploy import ServiceSettings, render_env


@pytest.fixture(scope="module")
def float_model() -> Path:
    return POSE_FLOAT  # committed: no TensorFlow needed (tests/make_fixtures.py)


def _checks(capsys, *args: str) -> tuple[int, dict[str, dict]]:
    code = doctor.main([*args, "--json"])
    checks = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in checks}


def test_doctor_reports_python_runtime_model_and_latency(float_model: Path, capsys) -> None:
    code, checks = _checks(
        capsys, "--model", str(float_model), "--frames", "3", "--threads", "1", "--no-camera"
    )
    assert code == 0
    assert checks["python"]["status"] == "ok" and platform.machine() in checks["python"]["detail"]
    assert checks["numpy"]["status"] == "ok"
    import importlib.util

    # Python <= 3.11 here has tflite-runtime 2.14 too; Python 3.13 only ai-edge-litert.
    wanted = (
        "tflite_runtime 2.14.0"
        if importlib.util.find_spec("tflite_runtime")
        else "ai_edge_litert 2.3"
    )
    assert wanted in checks["runtime"]["detail"]
    assert (
        checks["model"]["status"] == "ok"
        and "mpii16 (16 points), lost below a mean score of 0.30 (the default cut), "
        "input 64x64, float"
        in checks["model"]["detail"]
    )
    assert checks["load"]["status"] == "ok"
    latency = checks["latency"]
    assert latency["status"] == "ok" and latency["detail"].startswith(
        "3 frames, 1 threads: median "
    )
    assert "picamera2" not in checks  # --no-camera


def test_doctor_names_the_native_library_and_its_simd_path(capsys) -> None:
    from edge import native

    library = native.ensure_library()
    _, checks = _checks(capsys, "--no-camera")
    assert checks["native"]["status"] == "ok"
    assert str(library) in checks["native"]["detail"]
    assert native.simd_path(library) in checks["native"]["detail"]
    # ... and what that path measured here, in binary MACs per second per core.
    peak = re.search(r"measured peak ([\d,]+) G binary MACs/s per core", checks["native"]["detail"])
    assert peak and int(peak.group(1).replace(",", "")) > 0, checks["native"]["detail"]
    assert checks["model"]["status"] == "skip"  # no --model and no deployed service here


def test_doctor_finds_the_deployed_model_through_the_service_settings(
    float_model: Path, tmp_path, capsys
) -> None:
    settings = ServiceSettings(
        model_name=float_model.name, prefix=str(tmp_path), token="a-deployed-token-0123"
    )
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / float_model.name).write_bytes(float_model.read_bytes())
    config = tmp_path / "binland.env"
    config.write_text(render_env(settings))
    config.chmod(0o600)  # as edge.deploy writes it: root only
    code, checks = _checks(capsys, "--config", str(config), "--frames", "0", "--no-camera")
    assert code == 0
    assert checks["model"]["detail"].startswith(float_model.name)
    assert "latency" not in checks  # --frames 0


def test_doctor_fails_a_corrupt_model_with_a_fix(tmp_path, capsys) -> None:
    bad = tmp_path / "pose.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    code, checks = _checks(capsys, "--model", str(bad), "--no-camera")
    assert code == 1
    assert checks["model"]["status"] == "FAIL" and "TFL3" in checks["model"]["detail"]
    assert "converters.convert" in checks["model"]["fix"]


def _deployed(tmp_path: Path, finder: bytes, **settings) -> Path:
    """The model and a finder file where edge.deploy puts them under ``tmp_path`` (its
    --prefix), and the settings file it writes for them; returns that file."""
    models = tmp_path / "models"
    models.mkdir()
    (models / POSE_FLOAT.name).write_bytes(POSE_FLOAT.read_bytes())
    (models / PERSON_FINDER.name).write_bytes(finder)
    deployed = ServiceSettings(
        model_name=POSE_FLOAT.name,
        prefix=str(tmp_path),
        token="a-deployed-token-0123",
        person_finder=str(models / PERSON_FINDER.name),
        finder_name=PERSON_FINDER.name,
        **settings,
    )
    config = tmp_path / "binland.env"
    config.write_text(render_env(deployed))
    config.chmod(0o600)
    return config


def test_doctor_names_the_deployed_finder_its_file_and_its_time(tmp_path, capsys) -> None:
    """Issue 27: the finder edge.live runs with the deployed settings: which, its file, that it
    loads, and its time per frame here."""
    config = _deployed(tmp_path, PERSON_FINDER.read_bytes(), max_people=3)
    args = ("--config", str(config), "--frames", "2", "--threads", "1", "--no-camera")
    code, checks = _checks(capsys, *args)
    assert code == 0
    finder = checks["finder"]
    assert finder["status"] == "ok", finder
    assert finder["detail"].startswith(
        f"binary, our 1-bit finder ({tmp_path}/models/{PERSON_FINDER.name}), loads; "
        f"finds newcomers among up to 3 people (settings from {config}); 2 frames: median "
    )
    # The flags override the settings file: one person, found again by the bundled finder
    # ("auto"), or by nothing.
    from edge.tracking import BUNDLED_PERSON_FINDER

    _, checks = _checks(capsys, *args, "--max-people", "1", "--person-finder", "auto")
    assert checks["finder"]["status"] == "ok"
    assert checks["finder"]["detail"].startswith(
        f"binary, our 1-bit finder ({BUNDLED_PERSON_FINDER}), loads; "
        "finds the person when the track is lost (the flags given and "
    )
    _, checks = _checks(capsys, *args, "--max-people", "1", "--person-finder", "none")
    assert checks["finder"]["detail"].startswith("none (the flags given and ")


def test_doctor_fails_a_bad_finder_file_in_one_line_with_a_fix(tmp_path, capsys) -> None:
    damaged = bytearray(PERSON_FINDER.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one weight changed after conversion
    config = _deployed(tmp_path, bytes(damaged), max_people=2)
    args = ("--config", str(config), "--frames", "0", "--no-camera")
    code, checks = _checks(capsys, *args)
    assert code == 1
    finder = checks["finder"]
    assert finder["status"] == "FAIL" and "\n" not in finder["detail"]
    assert PERSON_FINDER.name in finder["detail"] and "is corrupt" in finder["detail"]
    assert "edge.deploy --person-finder PATH" in finder["fix"]
    assert checks["model"]["status"] == "ok"  # the model itself is fine
    # Not a model at all; the text output gives the line and its fix.
    (tmp_path / "models" / PERSON_FINDER.name).write_bytes(b"junk")
    assert doctor.main(list(args)) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("FAIL  finder"))
    assert "TFL3" in line
    assert out.splitlines()[out.splitlines().index(line) + 1].strip().startswith("fix: ")
    # A setting edge.live would refuse: several people and no finder.
    _, checks = _checks(capsys, *args, "--person-finder", "none")
    assert checks["finder"]["status"] == "FAIL"
    assert "following several people needs a finder" in checks["finder"]["detail"]


def test_doctor_recognises_a_finder_model(capsys) -> None:
    code, checks = _checks(
        capsys, "--model", str(PERSON_FINDER), "--frames", "2", "--threads", "1", "--no-camera"
    )
    assert code == 0
    assert checks["model"]["status"] == "ok"
    assert "finder of person (10 channels), input 64x64" in checks["model"]["detail"]
    assert checks["load"]["status"] == checks["latency"]["status"] == "ok"
    assert (
        checks["finder"]["status"] == "skip" and "is itself a finder" in checks["finder"]["detail"]
    )


def test_doctor_camera_checks_give_a_fix_when_there_is_no_camera(capsys, monkeypatch) -> None:
    import importlib.util

    import cv2

    class NoCamera:  # what cv2.VideoCapture(0) gives on a machine without a camera
        def __init__(self, index):
            self.index = index

        def isOpened(self):
            return False

        def release(self):
            pass

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(cv2, "VideoCapture", NoCamera)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "picamera2" else real_find_spec(name, *a),
    )
    _, checks = _checks(capsys, "--frames", "0")
    assert checks["opencv"]["status"] == "warn"
    assert "no camera at index 0" in checks["opencv"]["detail"]
    assert "USB camera" in checks["opencv"]["fix"] and "--source" in checks["opencv"]["fix"]
    assert checks["picamera2"]["status"] == "warn"
    assert "not importable" in checks["picamera2"]["detail"]
    assert "sudo apt install python3-picamera2" in checks["picamera2"]["fix"]


def test_doctor_reports_a_working_camera_as_ok(capsys, monkeypatch) -> None:
    import cv2
    import numpy as np

    class Camera:
        def __init__(self, index):
            pass

        def isOpened(self):
            return True

        def read(self):
            return True, np.zeros((480, 640, 3), np.uint8)

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Camera)
    _, checks = _checks(capsys, "--frames", "0")
    assert checks["opencv"]["status"] == "ok"
    assert "camera 0 gives 640x480 frames" in checks["opencv"]["detail"]


def test_doctor_text_output_prints_fixes(tmp_path, capsys) -> None:
    bad = tmp_path / "pose.tflite"
    bad.write_bytes(b"junk")
    assert doctor.main(["--model", str(bad), "--no-camera"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  model" in out and "fix: convert it with: python -m converters.convert" in out


def test_doctor_bad_flags_are_one_line_errors(capsys) -> None:
    assert doctor.main(["--model", "/nonexistent/pose.tflite"]) == 2
    err = capsys.readouterr().err
    assert err == "error: model file not found: /nonexistent/pose.tflite\n"
    assert doctor.main(["--frames", "-1"]) == 2


def test_doctor_says_whether_the_stream_is_protected_and_who_runs_the_service(
    tmp_path, capsys
) -> None:
    from edge.deploy import render_unit

    token = "doctor-" + "t" * 20
    config, unit = tmp_path / "binland.env", tmp_path / "binland.service"
    deployed = ServiceSettings(model_name="pose.tflite", prefix=str(tmp_path), token=token)
    config.write_text(render_env(deployed))
    config.chmod(0o600)
    unit.write_text(render_unit(deployed))
    args = ("--config", str(config), "--unit", str(unit), "--frames", "0", "--no-camera")
    code, checks = _checks(capsys, *args)
    assert checks["stream"]["status"] == "ok"
    assert checks["stream"]["detail"].startswith("protected: 0.0.0.0:8080 needs the token")
    service = checks["service"]
    assert service["status"] == "ok" and "binland.service runs as binland" in service["detail"]
    for word in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        f"writes only {tmp_path}/output",
        "Restart=always",
    ):
        assert word in service["detail"], word
    assert token not in json.dumps(checks)

    config.chmod(0o644)  # a token others can read
    _, checks = _checks(capsys, *args)
    assert checks["stream"]["status"] == "FAIL" and "chmod 600" in checks["stream"]["fix"]
    # An older deploy: no token on 0.0.0.0, and a unit that runs as root.
    config.write_text(render_env(ServiceSettings(model_name="pose.tflite")))
    unit.write_text(
        render_unit(ServiceSettings(model_name="pose.tflite")).replace("User=binland\n", "")
    )
    code, checks = _checks(capsys, *args)
    assert code == 1 and checks["stream"]["status"] == "FAIL"
    assert "edge.deploy" in checks["stream"]["fix"]
    assert checks["service"]["status"] == "warn" and "runs as root" in checks["service"]["detail"]
    # Loopback only: open, and fine.
    config.write_text(render_env(ServiceSettings(model_name="pose.tflite", serve="127.0.0.1:8080")))
    _, checks = _checks(capsys, *args)
    assert checks["stream"]["status"] == "ok" and "this machine only" in checks["stream"]["detail"]
    # Nothing deployed: both skipped.
    _, checks = _checks(
        capsys,
        "--config",
        str(tmp_path / "none.env"),
        "--unit",
        str(tmp_path / "none.service"),
        "--frames",
        "0",
        "--no-camera",
    )
    assert checks["stream"]["status"] == checks["service"]["status"] == "skip"


def test_doctor_names_the_os_release(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_CODENAME=trixie\n')
    check = doctor.check_os(release)
    assert check.status == "ok" and check.detail.startswith("Debian GNU/Linux 13 (trixie)")
    assert doctor.check_os(tmp_path / "missing").status == "warn"


def _numpy_install(site: Path, version: str) -> Path:
    (site / "numpy").mkdir(parents=True)
    (site / "numpy" / "__init__.py").write_text("")
    (site / f"numpy-{version}.dist-info").mkdir()
    return site / "numpy" / "__init__.py"


def test_doctor_says_where_numpy_comes_from_and_warns_when_the_venv_shadows_the_system(
    tmp_path: Path, monkeypatch
) -> None:
    import numpy

    venv_site = tmp_path / "venv/lib/python3/site-packages"
    system = tmp_path / "usr/lib/python3/dist-packages"
    ours = _numpy_install(venv_site, "1.26.4")
    _numpy_install(system, "2.2.4")
    origin, hidden = doctor.numpy_origin(
        ours, [str(venv_site), str(system)], prefix=str(tmp_path / "venv")
    )
    assert origin == "this venv" and hidden == [(str(system.resolve()), "2.2.4")]
    origin, hidden = doctor.numpy_origin(
        system / "numpy/__init__.py", [str(system)], prefix=str(tmp_path / "venv")
    )
    assert origin == "the system" and hidden == []

    # The real numpy here, shadowing a system numpy of the other major version: a warning.
    other = "1.24.2" if numpy.__version__.startswith("2.") else "2.2.4"
    monkeypatch.setattr(
        doctor, "numpy_origin", lambda *a, **k: ("this venv", [(str(system), other)])
    )
    check = doctor.check_numpy()
    assert check.status == "warn" and f"shadows numpy {other} in {system}" in check.detail
    assert "pip uninstall numpy" in check.fix
    # ... and the same major version is only worth a mention.
    same = numpy.__version__
    monkeypatch.setattr(
        doctor, "numpy_origin", lambda *a, **k: ("this venv", [(str(system), same)])
    )
    assert doctor.check_numpy().status == "ok"
