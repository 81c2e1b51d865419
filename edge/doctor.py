"""Check that this machine can run the landmark service: ``python -m edge.doctor``.

Run it on the Pi (``/opt/binland/venv/bin/python -m edge.doctor``) after ``edge.deploy``.
It checks the deployed model (or ``--model``) and the finder ``edge.live`` would run with the
deployed settings (or ``--max-people``, ``--person-finder``, ...): which, its file, that it
loads, and its time per frame here. Each check prints one line, and a fix when something is
missing::

    ok    os         Debian GNU/Linux 13 (trixie) (/etc/os-release)
    ok    python     3.13.5 on aarch64 (/opt/binland/venv/bin/python)
    ok    numpy      2.2.4 from the system (/usr/lib/python3/dist-packages/numpy)
    warn  native     the native LCE library is not built: bitpacked models cannot run ...
                    fix: sudo apt install gcc, then: python -m edge.native build (or run ...

Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 on bad flags.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .cli import (
    ArgumentParser,
    add_backend_argument,
    add_model_argument,
    add_several_people_arguments,
    add_threads_argument,
    resolve_model,
    run_cli,
)
from .errors import EdgeError

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
DEFAULT_CONFIG = "/opt/binland/binland.env"  # written by edge.deploy
DEFAULT_UNIT = "/etc/systemd/system/binland.service"  # written by edge.deploy


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn, FAIL or skip
    detail: str
    fix: str = ""


def check_os(os_release: str | os.PathLike | None = None) -> Check:
    """Which OS release this is: Trixie (Python 3.13, numpy 2) or Bookworm (3.11, numpy 1)."""
    paths = (
        [Path(os_release)] if os_release else [Path("/etc/os-release"), Path("/usr/lib/os-release")]
    )
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        info = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep:
                info[key] = value.strip().strip("\"'")
        name = info.get("PRETTY_NAME") or info.get("NAME", "unknown")
        return Check("os", OK, f"{name} ({path})")
    return Check(
        "os",
        WARN,
        "no /etc/os-release: cannot tell the OS release",
        "use Raspberry Pi OS (64-bit): Trixie or Bookworm",
    )


def check_python() -> Check:
    version = platform.python_version()
    machine = platform.machine()
    if sys.version_info[:2] < (3, 10) or sys.version_info[:2] >= (3, 14):
        return Check(
            "python",
            FAIL,
            f"{version} on {machine}; the runtime needs Python 3.10 to 3.13",
            "use Raspberry Pi OS Trixie (Python 3.13) or Bookworm (Python 3.11)",
        )
    if machine in ("armv7l", "armv6l"):
        return Check(
            "python",
            FAIL,
            f"{version} on 32-bit {machine}: no TFLite runtime wheels exist for it",
            "install the 64-bit Raspberry Pi OS (Trixie or Bookworm, arm64)",
        )
    return Check("python", OK, f"{version} on {machine} ({sys.executable})")


def _numpy_version_at(folder: Path) -> str | None:
    """The version of a numpy installed in ``folder`` (a sys.path entry), without importing it."""
    for dist in sorted(folder.glob("numpy-*.*-info")):
        version = dist.name[len("numpy-") :].rsplit(".", 1)[0]
        if version[:1].isdigit():
            return version
    try:
        text = (folder / "numpy" / "version.py").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() in ("version", "__version__", "full_version"):
            return value.strip().strip("\"'")
    return "unknown version"


def numpy_origin(
    numpy_file: str | os.PathLike, path: list[str] | None = None, prefix: str | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """Where the imported numpy comes from ("this venv" or "the system"), and the other numpy
    installs on sys.path that it hides, as (folder, version) pairs."""
    path = sys.path if path is None else path
    prefix = sys.prefix if prefix is None else prefix
    here = Path(numpy_file).resolve().parent.parent  # .../site-packages
    in_venv = prefix != getattr(sys, "base_prefix", prefix) and here.is_relative_to(
        Path(prefix).resolve()
    )
    origin = "this venv" if in_venv else "the system"
    hidden = []
    for entry in path:
        folder = Path(entry or ".").resolve()
        if folder == here or not (folder / "numpy" / "__init__.py").is_file():
            continue
        hidden.append((str(folder), _numpy_version_at(folder) or "unknown version"))
    return origin, hidden


def check_numpy() -> Check:
    try:
        import numpy
    except ImportError:
        return Check(
            "numpy",
            FAIL,
            "numpy is not installed",
            "on Trixie: sudo apt install python3-numpy; on Bookworm: pip install 'numpy<2'",
        )
    version = numpy.__version__
    major = int(version.split(".")[0])
    origin, hidden = numpy_origin(numpy.__file__)
    detail = f"{version} from {origin} ({Path(numpy.__file__).parent})"
    if major >= 2 and importlib.util.find_spec("tflite_runtime"):
        return Check(
            "numpy",
            FAIL,
            f"{detail}: tflite-runtime 2.14 fails under numpy 2",
            "pip install 'numpy<2' (Bookworm), or use ai-edge-litert",
        )
    if hidden:
        folder, other = hidden[0]
        other_major = int(other.split(".")[0]) if other[:1].isdigit() else None
        shadow = f"{detail} shadows numpy {other} in {folder}"
        if other_major != major:
            # apt's compiled modules (picamera2's simplejpeg, ...) are built against the system's.
            return Check(
                "numpy",
                WARN,
                f"{shadow}: modules built against the system's numpy "
                f"{other} (python3-picamera2's) may fail",
                f"remove the venv's numpy: {sys.executable} -m pip uninstall numpy "
                "(edge.deploy does not install one on Trixie)",
            )
        return Check("numpy", OK, f"{shadow} (same major version)")
    return Check("numpy", OK, detail)


def check_runtimes() -> Check:
    from .backends import LCEBackend
    from .backends.tflite import installed_runtimes, runtime_version

    found = [f"{name} {runtime_version(name)}" for name in installed_runtimes()]
    if LCEBackend.is_available():
        found.append("LCE interpreter (larq-compute-engine)")
    if not found:
        return Check(
            "runtime",
            FAIL,
            "no TFLite runtime is installed",
            "pip install tflite-runtime==2.14.0 (or ai-edge-litert)",
        )
    return Check("runtime", OK, ", ".join(found))


def check_native() -> Check:
    """The C library that runs bitpacked (LCE) ops inside stock runtimes."""
    fix = "sudo apt install gcc, then: python -m edge.native build (or run edge.deploy again)"
    try:
        from . import native
    except ImportError as exc:
        return Check(
            "native",
            WARN,
            f"edge.native cannot be imported ({exc}); bitpacked models cannot run",
            fix,
        )
    try:
        path = native.library_path()
    except (AttributeError, OSError) as exc:
        return Check("native", WARN, f"cannot locate the native library ({exc})", fix)
    if path is None or not Path(path).is_file():
        return Check(
            "native",
            WARN,
            "the native LCE library is not built: bitpacked models cannot run "
            "in stock runtimes (float models are fine)",
            fix,
        )
    try:
        simd = native.simd_path(path)
    except (OSError, AttributeError) as exc:  # a library for another CPU, or a broken build
        return Check("native", FAIL, f"{path} does not load here: {exc}", fix)
    others = [p for p in native.simd_paths_available(path) if p != simd]
    # The measured peak says what this CPU's path can do: ~2,800 G binary MACs/s a core with
    # AVX-512 VPOPCNTDQ, ~130 with AVX2 (same machine kind), far less on a Pi's NEON; a
    # speed figure from one host says little about another without it.
    peak = native.kernel_peak(simd, 0.2, path)
    rate = f", measured peak {peak / 1e9:,.0f} G binary MACs/s per core" if peak > 0 else ""
    return Check(
        "native",
        OK,
        f"{path} (kernel path {simd}{rate})"
        + (f"; also runs {', '.join(others)}" if others else ""),
    )


def check_picamera2() -> Check:
    fix = (
        "sudo apt install python3-picamera2; a venv must be made with --system-site-packages "
        "to see it (edge.deploy does this)"
    )
    if importlib.util.find_spec("picamera2") is None:
        return Check("picamera2", WARN, "picamera2 is not importable (only on a Raspberry Pi)", fix)
    try:
        from picamera2 import Picamera2

        cameras = Picamera2.global_camera_info()
    except Exception as exc:  # libcamera raises many types; report whatever it says
        return Check("picamera2", WARN, f"picamera2 failed: {exc}", fix)
    if not cameras:
        return Check(
            "picamera2",
            WARN,
            "picamera2 works but finds no camera",
            "check the ribbon cable, then: rpicam-hello --list-cameras",
        )
    models = ", ".join(str(c.get("Model", "?")) for c in cameras)
    return Check("picamera2", OK, f"{len(cameras)} camera(s): {models}")


def check_opencv_camera(index: int = 0) -> Check:
    try:
        import cv2
    except ImportError:
        return Check(
            "opencv", FAIL, "OpenCV is not installed", "pip install 'opencv-python-headless<4.12'"
        )
    cap = cv2.VideoCapture(index)
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
    finally:
        cap.release()
    if not ok or frame is None:
        return Check(
            "opencv",
            WARN,
            f"OpenCV {cv2.__version__}: no camera at index {index}",
            "plug in a USB camera, or use --source picamera2 / a video file",
        )
    return Check(
        "opencv",
        OK,
        f"OpenCV {cv2.__version__}: camera {index} gives {frame.shape[1]}x{frame.shape[0]} frames",
    )


def service_env(config: Path) -> dict[str, str]:
    """The settings edge.deploy gave the service (binland.env); {} when there are none here
    or they cannot be read (root only: it holds the stream's token; the stream check says so)."""
    if not config.is_file():
        return {}
    from .deploy import parse_env_file

    try:
        return parse_env_file(config.read_text())
    except OSError:
        return {}


def model_from_config(config: Path) -> Path | None:
    """The model that edge.deploy configured the service with, if this machine has one."""
    model = service_env(config).get("BINLAND_MODEL")
    return Path(model) if model else None


@dataclass(frozen=True)
class FinderSettings:
    """What decides the finder edge.live runs: its flags of the same names."""

    max_people: int = 1
    max_faces: int = 1
    person_finder: str | None = None  # None: "auto"
    face_detector: str = "auto"  # edge.tracking.DEFAULT_FACE_DETECTOR (imported late: numpy)
    source: str = "edge.live's defaults"  # where they came from, for the report
    problem: str = ""  # a setting edge.live would refuse


# binland.env's names for them (edge.deploy.service.multi_settings writes these).
FINDER_ENV = {
    "max_people": "BINLAND_MAX_PEOPLE",
    "max_faces": "BINLAND_MAX_FACES",
    "person_finder": "BINLAND_PERSON_FINDER",
    "face_detector": "BINLAND_FACE_DETECTOR",
}


def finder_settings(config: Path | None, **given) -> FinderSettings:
    """The finder's settings: the ``given`` flags (None: not given), else the deployed
    service's (``config``, binland.env), else edge.live's defaults."""
    env = service_env(config) if config is not None else {}
    values: dict = {}
    problem = ""
    for field, key in FINDER_ENV.items():
        if given.get(field) is not None:
            values[field] = given[field]
        elif env.get(key):
            value = env[key]
            if field.startswith("max_"):
                if not (value.isdigit() and int(value) >= 1):
                    problem = f"{key}={value!r} in {config} is not a count of 1 or more"
                    continue
                value = int(value)
            values[field] = value
    from_env = any(given.get(f) is None and env.get(k) for f, k in FINDER_ENV.items())
    source = f"settings from {config}" if from_env else "edge.live's defaults"
    if any(v is not None for v in given.values()):
        source = "the flags given" + (f" and {config}" if from_env else "")
    return FinderSettings(**values, source=source, problem=problem)


# What each finder is, for the report.
FINDER_KINDS = {
    "binary": "our 1-bit finder",
    "blazepose": "MediaPipe's person detector",
    "blazeface": "MediaPipe's BlazeFace",
    "haar": "OpenCV's Haar cascade",
}


def _time_ms(run: Callable[[], object], frames: int) -> tuple[float, float]:
    """Median and max milliseconds of ``frames`` calls, after one that warms up."""
    run()  # first call allocates and warms caches; not counted
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def _test_frame():
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


def check_finder(path: Path | None, settings: FinderSettings, *, frames: int) -> Check:
    """The finder edge.live would run for the model at ``path`` with ``settings``: which one,
    its file, that it loads, and its time per 640x480 frame here."""
    from .metadata import read_metadata
    from .multitrack import multi_tracker_for
    from .tracking import finder_spec, subject_of, tracker_for

    if path is None:
        return Check("finder", SKIP, "no model: which finder runs depends on the model's task")
    try:
        meta = read_metadata(path)
    except EdgeError:
        return Check("finder", SKIP, "the model does not load (see above)")
    if meta.task == "finder":
        return Check("finder", SKIP, f"{path.name} is itself a finder: edge.live runs it alone")
    if settings.problem:
        return Check(
            "finder",
            FAIL,
            f"{settings.problem}: edge.live would refuse it",
            "edit it to a whole number (1: one subject), then: sudo systemctl restart binland",
        )
    subject = subject_of(meta)
    count = settings.max_people if subject == "person" else settings.max_faces
    flag = "--person-finder" if subject == "person" else "--face-detector"
    spec = finder_spec(
        meta,
        several=count > 1,
        face_detector=settings.face_detector,
        person_finder=settings.person_finder,
    )
    plural = "people" if subject == "person" else "faces"
    when = (
        f"finds newcomers among up to {count} {plural}"
        if count > 1
        else f"finds the {subject} when the track is lost"
    )
    try:
        if count > 1:
            finder = multi_tracker_for(
                meta,
                count,
                face_detector=settings.face_detector,
                person_finder=settings.person_finder,
            ).finder
        else:
            finder = tracker_for(
                meta, face_detector=settings.face_detector, person_finder=settings.person_finder
            ).detector
    except EdgeError as exc:
        message = str(exc) if spec in str(exc) else f"{flag} {spec}: {exc}"
        if spec.endswith(".tflite") or Path(spec).is_file():
            fix = (
                f"copy the finder again (python -m edge.deploy {flag} PATH installs it), or "
                f"convert it again (python -m converters.convert); or choose another {flag}"
            )
        else:
            fix = (
                f"install a finder file with python -m edge.deploy {flag} PATH (our 1-bit "
                f"finder, or MediaPipe's .tflite), or choose another {flag}"
            )
        return Check("finder", FAIL, message.replace("\n", " "), fix)
    if finder is None:
        fallback = "the whole frame and the search boxes" if subject == "person" else "the frame"
        return Check("finder", OK, f"none ({settings.source}): {fallback} when the track is lost")
    kind = FINDER_KINDS.get(finder.name, finder.name)
    where = str(finder.path) if finder.path is not None else "bundled with OpenCV"
    detail = f"{finder.name}, {kind} ({where}), loads; {when} ({settings.source})"
    model = getattr(finder, "model", None)  # our finder's network: its digest
    if model is not None and getattr(model, "digest", "") is None:
        return Check(
            "finder",
            WARN,
            f"{detail}; {finder.path.name} records no digest: a corrupt copy would not be noticed",
            "convert it again with python -m converters.convert, which records one",
        )
    if frames > 0:
        frame = _test_frame()
        median, worst = _time_ms(lambda: finder.find(frame), frames)
        detail += f"; {frames} frames: median {median:.1f} ms, max {worst:.1f} ms"
    return Check("finder", OK, detail)


def check_stream(config: Path) -> Check:
    """Whether the deployed service's MJPEG stream needs a token (never shows the token)."""
    from .access import TOKEN_ENV, check_token, is_loopback
    from .deploy import parse_env_file

    if not config.is_file():
        return Check("stream", SKIP, f"no deployed service settings at {config}")
    try:
        env = parse_env_file(config.read_text(errors="replace"))
    except PermissionError:
        return Check(
            "stream",
            WARN,
            f"cannot read {config}: only root can (it holds the stream's token)",
            f"sudo {sys.executable} -m edge.doctor",
        )
    serve = env.get("BINLAND_SERVE", "")
    host, sep, _ = serve.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        check_token(env.get(TOKEN_ENV, ""), str(config))
        where = f"{TOKEN_ENV} in {config}"
    except EdgeError:
        where = "--token-file" if "--token-file" in env.get("BINLAND_ARGS", "") else ""
    mode = config.stat().st_mode & 0o777
    if where and mode & 0o077:
        return Check(
            "stream",
            FAIL,
            f"{config} holds the stream's token but others can read it (mode {mode:04o})",
            f"sudo chmod 600 {config}",
        )
    if where:
        return Check("stream", OK, f"protected: {serve} needs the token ({where}, mode {mode:04o})")
    if host and is_loopback(host):
        return Check("stream", OK, f"open, to this machine only ({serve})")
    return Check(
        "stream",
        FAIL,
        f"{serve} has no token: edge.live will not serve it open",
        f"run edge.deploy again (it makes a token), or set {TOKEN_ENV} in {config}",
    )


def check_service(unit: Path) -> Check:
    """The user the deployed service runs as, and its systemd hardening."""
    from .deploy.service import DEFAULT_USER, HARDENING

    if not unit.is_file():
        return Check("service", SKIP, f"no service unit at {unit}")
    lines = [line.strip() for line in unit.read_text(errors="replace").splitlines()]

    def value(key: str, default: str = "") -> str:
        found = [line.split("=", 1)[1] for line in lines if line.startswith(key + "=")]
        return found[-1] if found else default

    user = value("User", "root")
    fix = f"run edge.deploy again: it runs the service as the system user {DEFAULT_USER}, hardened"
    if user in ("root", "0"):
        return Check("service", WARN, f"{unit.name} runs as root", fix)
    try:
        import grp
        import pwd

        pwd.getpwnam(user)
        exists = ""
        if "video" not in value("SupplementaryGroups").split():
            in_video = user in grp.getgrnam("video").gr_mem
            exists = "" if in_video else " (not in group video: the camera may refuse it)"
    except (ImportError, KeyError):
        exists = " (made by systemd-sysusers at the first start)"
    missing = [h for h in HARDENING if h not in lines]
    if missing:  # e.g. a unit from an older deploy: name a few, count the rest
        named = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        return Check("service", WARN, f"{unit.name} runs as {user}{exists} without {named}", fix)
    # The first four name the essentials; the rest (devices, sockets, syscalls...) are counted.
    return Check(
        "service",
        OK,
        f"{unit.name} runs as {user}{exists}, group "
        f"{value('SupplementaryGroups', '-')}; {', '.join(HARDENING[:4])} and "
        f"{len(HARDENING) - 4} more sandbox settings, "
        f"writes only {value('ReadWritePaths', '-').lstrip('-')}; "
        f"Restart={value('Restart', 'no')}",
    )


def check_integrity(path: Path) -> Check:
    """Whether the model's bytes are the ones its converter recorded a digest of."""
    from .metadata import verify_digest

    try:
        digest = verify_digest(path)
    except EdgeError as exc:
        fix = "copy the model again, or convert it again: python -m converters.convert"
        return Check("integrity", FAIL, str(exc), fix)
    if digest is None:  # an older converter: it loads, but corruption would go unnoticed
        detail = (
            f"{path.name} records no digest (converted before digests were recorded): "
            "a corrupt copy would not be noticed"
        )
        fix = "convert it again with python -m converters.convert, which records one"
        return Check("integrity", WARN, detail, fix)
    return Check("integrity", OK, f"SHA-256 {digest[:16]}... as the converter recorded")


def check_model(path: Path | None, *, backend: str, num_threads: int, frames: int) -> list[Check]:
    """Metadata, loading, and a latency measurement over ``frames`` frames."""
    if path is None:
        return [
            Check(
                "model",
                SKIP,
                "no model given and no deployed service found",
                "pass --model pose.tflite",
            )
        ]
    from .metadata import read_metadata
    from .tasks import open_model

    try:
        meta = read_metadata(path)
    except EdgeError as exc:
        return [Check("model", FAIL, str(exc), "convert it with: python -m converters.convert")]
    if meta.task == "finder":  # our 1-bit finder, given as the model
        what = f"finder of {', '.join(meta.classes)} ({meta.num_outputs} channels)"
    elif meta.task == "segmentation":
        what = f"{meta.skeleton} ({meta.num_outputs} classes)"
    else:
        from .tracking import lost_below_of, recorded_lost_below

        own = recorded_lost_below(meta) is not None
        what = (
            f"{meta.skeleton} ({meta.num_landmarks} points), lost below a mean score of "
            f"{lost_below_of(meta):.2f} ({'its own cut' if own else 'the default cut'})"
        )
    detail = (
        f"{path.name}: {meta.model_name} {what}, "
        f"input {meta.input_size[0]}x{meta.input_size[1]}, {meta.weights_format} weights"
    )
    checks = [Check("model", OK, detail)]
    checks.append(check_integrity(path))
    if checks[-1].status == FAIL:  # it would not load
        return checks
    try:
        model = open_model(path, backend=backend, num_threads=num_threads)
    except EdgeError as exc:
        checks.append(Check("load", FAIL, str(exc), "see the runtime and native checks above"))
        return checks
    checks.append(Check("load", OK, model.backend_description))
    if frames <= 0:
        return checks
    frame = _test_frame()
    median, worst = _time_ms(lambda: model.predict(frame), frames)
    checks.append(
        Check(
            "latency",
            OK,
            f"{frames} frames, {num_threads} threads: median {median:.1f} ms, "
            f"max {worst:.1f} ms ({1000 / median:.1f} fps)",
        )
    )
    return checks


def run_checks(
    *,
    model: Path | None,
    backend: str = "auto",
    num_threads: int = 2,
    frames: int = 10,
    camera: bool = True,
    config: Path | None = None,
    unit: Path | None = None,
    finder: FinderSettings | None = None,
) -> list[Check]:
    """Every check; the model's and its finder's (``finder``: the settings that choose it,
    None: edge.live's defaults) after the machine's."""
    checks: list[Check] = []
    steps: list[Callable[[], Check]] = [
        check_os,
        check_python,
        check_numpy,
        check_runtimes,
        check_native,
    ]
    if camera:
        steps += [check_picamera2, check_opencv_camera]
    if config is not None:
        steps.append(functools.partial(check_stream, config))
    if unit is not None:
        steps.append(functools.partial(check_service, unit))
    for step in steps:
        try:
            checks.append(step())
        except Exception as exc:  # a broken check must not hide the others
            name = getattr(step, "func", step).__name__.removeprefix("check_")
            checks.append(Check(name, FAIL, f"check crashed: {exc!r}"))
    if all(c.status != FAIL for c in checks if c.name == "python"):
        checks += check_model(model, backend=backend, num_threads=num_threads, frames=frames)
        try:
            checks.append(check_finder(model, finder or FinderSettings(), frames=frames))
        except Exception as exc:  # a broken check must not hide the others
            checks.append(Check("finder", FAIL, f"check crashed: {exc!r}"))
    return checks


def format_check(c: Check) -> str:
    line = f"{c.status:5} {c.name:10} {c.detail}"
    return line + (f"\n{'':16}fix: {c.fix}" if c.fix and c.status in (WARN, FAIL) else "")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m edge.doctor",
        description="Check Python, TFLite runtimes, the native LCE library, cameras and a model "
        "on this machine, with a fix for anything missing.",
    )
    add_model_argument(
        p, what="model to check and time", default_help=f"the one in {DEFAULT_CONFIG} if deployed"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=Path(DEFAULT_CONFIG),
        help=f"the service settings edge.deploy wrote (default {DEFAULT_CONFIG}); "
        "the stream check says whether it needs a token",
    )
    p.add_argument(
        "--unit",
        type=Path,
        default=Path(DEFAULT_UNIT),
        help=f"the systemd unit edge.deploy wrote (default {DEFAULT_UNIT}); the "
        "service check says which user it runs as, and how it is hardened",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=10,
        help="frames for the latency checks of the model and its finder (0 skips them; default 10)",
    )
    found = p.add_argument_group(
        "the finder",
        "edge.live's flags that choose the finder it runs; each not given comes from --config "
        "(as edge.deploy set it), else edge.live's default",
    )
    add_several_people_arguments(
        found,
        unset=("max_people", "max_faces", "person_finder", "face_detector"),
        find_and_drop=False,  # they do not change which finder runs
    )
    add_threads_argument(p, help="inference threads")
    add_backend_argument(p)
    p.add_argument("--no-camera", action="store_true", help="skip the camera checks")
    p.add_argument("--json", action="store_true", help="print the checks as JSON instead of text")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _doctor(args))


def _doctor(args: argparse.Namespace) -> int:
    if args.frames < 0:
        raise EdgeError("--frames must be >= 0")
    if args.model is not None:
        args.model = resolve_model(args.model)
    model = args.model or model_from_config(args.config)
    finder = finder_settings(
        args.config,
        max_people=args.max_people,
        max_faces=args.max_faces,
        person_finder=args.person_finder,
        face_detector=args.face_detector,
    )
    checks = run_checks(
        model=model,
        backend=args.backend,
        num_threads=args.threads,
        frames=args.frames,
        camera=not args.no_camera,
        config=args.config,
        unit=args.unit,
        finder=finder,
    )
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=1))
    else:
        for c in checks:
            print(format_check(c))
        if model is not None and args.model is None:
            print(f"(model from {shlex.quote(str(args.config))})")
    return 1 if any(c.status == FAIL for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
