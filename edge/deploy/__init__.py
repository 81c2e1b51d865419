"""Install the landmark camera service on a Raspberry Pi: ``python -m edge.deploy``.

One plan, two ways to reach the Pi:

* ``--ssh user@host`` runs each step on a live Pi over ssh (files travel as tar streams on
  stdin, so only ``ssh`` is needed on this side and ``tar`` + ``python3-venv`` on the Pi);
* ``--rootfs PATH`` writes the same files into a Pi's root filesystem on this machine (an SD
  card mounted here, or an image being prepared). Nothing runs on the Pi's CPU then: the
  aarch64 wheels are unpacked by this machine's pip and the native library is cross-compiled.

What ends up on the Pi (all under ``--prefix``, plus the unit file)::

    /opt/binland/venv/              Python venv with --system-site-packages, so apt's
                                    python3-picamera2 stays visible. Bookworm (Python 3.11):
                                    numpy<2, tflite-runtime, OpenCV 4.11 from wheels this
                                    machine downloads once. Trixie (Python 3.13): apt's numpy 2
                                    (never a second one in the venv), ai-edge-litert and
                                    OpenCV 4.12+ wheels resolved against that numpy
    /opt/binland/venv/.../edge/     this project's runtime package, copied as source (pure
                                    Python + the C sources of the native delegate). Copying
                                    keeps the Pi free of build tools for Python and TF/larq.
    /opt/binland/models/NAME.tflite the model, and beside it the finder's file when the finder
                                    runs one (--person-finder / --face-detector: our 1-bit
                                    finder, or MediaPipe's detector from a path or this
                                    machine's teacher cache)
    /opt/binland/binland.env        the service's settings (source, thresholds, outputs, how
                                    many people or faces and their finder) and
                                    the stream's token, mode 0600 (root only); edit and
                                    `systemctl restart binland` to change them. A later
                                    deploy keeps your edits and writes its new settings to
                                    binland.env.new beside it, saying so
    /opt/binland/.binland-manifest  what the deploy installed: the only files it ever replaces
                                    or deletes (a --prefix holding anything else is refused)
    /opt/binland/output/            the one folder the service may write (made at start)
    /etc/sysusers.d/binland.conf    the system user `binland` (group video) it runs as
    /etc/systemd/system/binland.service  runs `python -m edge.live` headless at boot, as that
                                    user, sandboxed (systemd-analyze security <= 2.0, the
                                    camera's devices and the stream's sockets allowed),
                                    restarted with a back-off (5 s to 2 min) if it stops

The target's OS (/etc/os-release), Python, C library and apt's numpy are read first (from the
rootfs, or by the Pi's python3 over ssh); the native library is built for that Python.

The first deploy makes the stream's token and prints the URL to open, once.

Every step first checks whether it is already done, so a second run changes nothing, and a
run after ``git pull`` replaces only what changed. ``--dry-run`` prints the plan. With
``--rootfs``, paths resolve inside the root (absolute symlinks from its own /, never this
machine's), and every file and folder gets its mode explicitly, whatever the umask.

The parts: ``service`` (settings file and unit text), ``wheels`` (what the venv needs and
where it comes from), ``targets`` (rootfs or ssh), ``plan`` (the idempotent steps) and
``command`` (the CLI).
"""

from ..errors import DeployError
from .command import build_parser, main
from .plan import (
    APT_PACKAGES,
    Report,
    Step,
    apt_packages,
    deploy,
    missing_apt_packages,
    plan,
    runtime_files,
)
from .service import (
    ServiceSettings,
    exec_start_argv,
    parse_env_file,
    render_env,
    render_sysusers,
    render_unit,
)
from .targets import RootfsTarget, SshTarget, Target
from .wheels import PythonInfo, native_library_name, parse_os_release, runtime_requirements

__all__ = [
    "APT_PACKAGES",
    "apt_packages",
    "build_parser",
    "deploy",
    "DeployError",
    "exec_start_argv",
    "main",
    "missing_apt_packages",
    "native_library_name",
    "parse_env_file",
    "parse_os_release",
    "plan",
    "PythonInfo",
    "render_env",
    "render_sysusers",
    "render_unit",
    "Report",
    "RootfsTarget",
    "runtime_files",
    "runtime_requirements",
    "ServiceSettings",
    "SshTarget",
    "Step",
    "Target",
]
