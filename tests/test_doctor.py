"""python -m edge.doctor on this machine: every check reports, with a fix when something is missing."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pi as pi_lane
import pytest

from edge import doctor
from edge.deploy import ServiceSettings, render_env


@pytest.fixture(scope="module")
def float_model() -> Path:
    return pi_lane.tiny_model("float")


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
    assert "tflite_runtime 2.14.0" in checks["runtime"]["detail"]
    assert (
        checks["model"]["status"] == "ok"
        and "mpii16 (16 points), input 64x64, float" in checks["model"]["detail"]
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
    assert checks["model"]["status"] == "skip"  # no --model and no deployed service here


def test_doctor_finds_the_deployed_model_through_the_service_settings(
    float_model: Path, tmp_path, capsys
) -> None:
    settings = ServiceSettings(model_name=float_model.name, prefix=str(tmp_path),
                               token="a-deployed-token-0123")  # fmt: skip
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


def test_doctor_camera_checks_give_a_fix_when_there_is_no_camera(capsys) -> None:
    _, checks = _checks(capsys, "--frames", "0")
    for name in ("picamera2", "opencv"):
        assert checks[name]["status"] in ("ok", "warn")
        if checks[name]["status"] == "warn":
            assert checks[name]["fix"]


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
    for word in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                 f"writes only {tmp_path}/output", "Restart=always"):  # fmt: skip
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
    _, checks = _checks(capsys, "--config", str(tmp_path / "none.env"), "--unit",
                        str(tmp_path / "none.service"), "--frames", "0", "--no-camera")  # fmt: skip
    assert checks["stream"]["status"] == checks["service"]["status"] == "skip"
