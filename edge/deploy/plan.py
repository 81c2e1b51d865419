"""The deploy steps, each able to tell whether it is already done, and the run over them."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..access import TOKEN_ENV, check_token, new_token, stream_url
from ..errors import DeployError, EdgeError
from ..metadata import custom_op_names
from .service import (
    DEFAULT_UNIT_DIR,
    SERVICE_NAME,
    ServiceSettings,
    parse_env_file,
    render_env,
    render_sysusers,
    render_unit,
)
from .targets import Target
from .wheels import PythonInfo, check_system_numpy, native_library_name, staged_wheels

# Debian packages the Pi needs: the camera stack (only apt ships libcamera's Python
# bindings), venv support, and a C compiler for the native bitpacked-op library. On Trixie
# (Python 3.13) the venv also uses apt's numpy (python3-picamera2 pulls it in; named anyway).
APT_PACKAGES = ("python3-picamera2", "python3-venv", "gcc")
SYSTEM_NUMPY_PACKAGES = ("python3-numpy",)


def apt_packages(info: PythonInfo | None = None) -> tuple[str, ...]:
    """What to apt-install on that Pi."""
    if info is not None and info.uses_system_numpy:
        return (*APT_PACKAGES, *SYSTEM_NUMPY_PACKAGES)
    return APT_PACKAGES


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the edge package


def runtime_files() -> dict[str, bytes]:
    """The `edge` package as deployed: relative path -> content (no caches, no built objects)."""
    files = {}
    for path in sorted(PACKAGE_DIR.rglob("*")):
        rel = path.relative_to(PACKAGE_DIR)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in {".pyc", ".so", ".o"}:
            continue
        files[str(rel)] = path.read_bytes()
    return files


def digest(parts: Iterable[bytes | str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def missing_apt_packages(target: Target, info: PythonInfo | None = None) -> list[str] | None:
    """Which of the Pi's apt packages it lacks, from its dpkg database (None: no database)."""
    status = target.read("/var/lib/dpkg/status")
    if status is None:
        return None
    installed = set()
    for stanza in status.decode(errors="replace").split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in stanza.splitlines()
            if ": " in line and not line.startswith(" ")
        )
        if fields.get("Status", "").endswith(" installed"):
            installed.add(fields.get("Package"))
    return [name for name in apt_packages(info) if name not in installed]


def apt_note(missing: list[str] | None, info: PythonInfo | None = None) -> str:
    wanted = apt_packages(info)
    if missing is None:
        return f"the Pi needs these Debian packages: sudo apt install {' '.join(wanted)}"
    if not missing:
        return f"the Pi has the Debian packages it needs ({', '.join(wanted)})"
    return f"the Pi lacks Debian packages; on the Pi run: sudo apt install {' '.join(missing)}"


# --- the plan ------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    detail: str
    done: Callable[[], bool]  # already in the wanted state?
    apply: Callable[[], None]


@dataclass
class Report:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # A new stream token was written: the URL that opens the stream, to be shown once.
    open_url: str | None = field(default=None, repr=False)


def plan(
    target: Target, settings: ServiceSettings, model: Path, *, unit_dir: str = DEFAULT_UNIT_DIR
) -> tuple[list[Step], list[str]]:
    """The deploy steps for ``target``, and notes to print after them."""
    info = target.python_info()
    check_system_numpy(info)
    s = settings
    site = f"{s.venv}/lib/python{info.version}/site-packages"
    unit_path = f"{unit_dir}/{SERVICE_NAME}"
    wants_link = f"{unit_dir}/multi-user.target.wants/{SERVICE_NAME}"
    runtime = runtime_files()
    # Bookworm's id is what it always was; Trixie's says the system's numpy is used.
    system_numpy = ["system numpy"] if info.uses_system_numpy else []
    wheels_id = digest([*info.resolve_requirements(), *info.platform_tags(), *system_numpy])
    runtime_id = digest([*runtime.keys(), *runtime.values()])
    env_text, unit_text = render_env(s).encode(), render_unit(s).encode()
    sysusers_text = render_sysusers(s).encode()
    model_bytes = model.read_bytes()
    stamps = f"{s.venv}/.binland"
    needs_native = any(name.startswith("Lce") for name in custom_op_names(model_bytes))
    native_dest = f"{site}/edge/native/{native_library_name(info)}"
    numpy_note = (
        f"numpy {info.system_numpy or '(missing)'} from apt (python3-numpy); none in the venv"
        if info.uses_system_numpy
        else "numpy<2 in the venv (tflite-runtime 2.14 needs it)"
    )
    notes = [f"the Pi runs {info.os_name}, Python {info.version} on {info.machine}: {numpy_note}",
             apt_note(missing_apt_packages(target, info), info)]  # fmt: skip

    def same(path: str, data: bytes) -> Callable[[], bool]:
        return lambda: target.read(path) == data

    def install_wheels() -> None:
        with staged_wheels(info) as wheels:
            target.install_wheels(wheels, s.venv, info)
        target.write(f"{stamps}/wheels", wheels_id.encode())

    def install_runtime() -> None:
        target.replace_tree(f"{site}/edge", runtime)  # also removes an older native build
        target.write(f"{stamps}/runtime", runtime_id.encode())

    def user_exists() -> bool:
        passwd = (target.read("/etc/passwd") or b"").decode(errors="replace")
        return any(line.split(":", 1)[0] == s.user for line in passwd.splitlines())

    def make_user() -> None:
        target.write(s.sysusers_path, sysusers_text)
        if target.systemd_running():  # a live Pi: now; a rootfs: the unit does it at first start
            target.run(["systemd-sysusers", s.sysusers_path])

    def build_native() -> None:
        try:
            target.build_native(native_dest, info)
        except EdgeError as exc:
            if needs_native:  # a bitpacked model cannot run without it
                raise DeployError(
                    f"{model.name} is bitpacked (LCE) and needs the native library: {exc}"
                ) from None
            notes.append(f"native library not built ({exc}); float models run without it")
            return
        target.write(f"{stamps}/native", runtime_id.encode())

    steps = [
        Step("venv", f"{s.venv} (python{info.version}, {info.machine}, --system-site-packages)",
             lambda: b"include-system-site-packages = true" in (target.read(f"{s.venv}/pyvenv.cfg") or b""),
             lambda: target.make_venv(s.venv, info)),
        Step("wheels", f"{', '.join(info.venv_requirements())} for {info.platform_tags()[0]} into {site}"
             + (f" (with the system's numpy {info.system_numpy})" if info.uses_system_numpy else ""),
             same(f"{stamps}/wheels", wheels_id.encode()), install_wheels),
        Step("runtime", f"the edge package ({len(runtime)} files, {runtime_id}) into {site}/edge",
             same(f"{stamps}/runtime", runtime_id.encode()), install_runtime),
        Step("native", f"the bitpacked-op library ({'needed by' if needs_native else 'optional for'} "
             f"this model) to {native_dest}",
             lambda: target.read(f"{stamps}/native") == runtime_id.encode() and target.exists(native_dest),
             build_native),
        Step("model", f"{model.name} ({len(model_bytes)} bytes) to {s.model_path}",
             same(s.model_path, model_bytes),
             # The folder holds exactly the served model: an upgrade leaves no stale files.
             lambda: target.replace_tree(f"{s.prefix}/models", {s.model_name: model_bytes})),
        # Root only: it holds the stream's token.
        Step("config", f"{s.env_path} (source {s.source}, serve {s.serve}; mode 0600)",
             lambda: target.read(s.env_path) == env_text and target.mode(s.env_path) == 0o600,
             lambda: target.write(s.env_path, env_text, 0o600)),
    ]  # fmt: skip
    if s.creates_user:
        steps.append(Step("user", f"system user {s.user} in group video ({s.sysusers_path})",
                          lambda: target.read(s.sysusers_path) == sysusers_text
                          and (not target.systemd_running() or user_exists()),
                          make_user))  # fmt: skip
    steps.append(Step("unit", f"{unit_path} (runs python -m edge.live as {s.user}, hardened, "
                      "Restart=always)", same(unit_path, unit_text),
                      lambda: target.write(unit_path, unit_text)))  # fmt: skip
    if target.systemd_running():

        def enable() -> None:
            target.run(["systemctl", "daemon-reload"])
            target.run(["systemctl", "enable", SERVICE_NAME])
            target.run(["systemctl", "restart", SERVICE_NAME])

        steps.append(
            Step("enable", f"systemctl enable + restart {SERVICE_NAME}", lambda: False, enable)
        )
    else:
        # What `systemctl enable` would do; systemd starts the service at the next boot.
        steps.append(Step("enable", f"{wants_link} -> {unit_path} (starts at boot)",
                          lambda: target.readlink(wants_link) == unit_path,
                          lambda: target.symlink(wants_link, unit_path)))  # fmt: skip
    return steps, notes


def stream_token(
    target: Target, settings: ServiceSettings, *, renew: bool = False
) -> tuple[str, bool]:
    """The stream's token: the one already in the service's settings file, else (or with
    ``renew``) a new one. Returns (token, whether it is new)."""
    if not renew:
        text = (target.read(settings.env_path) or b"").decode(errors="replace")
        try:
            return check_token(parse_env_file(text).get(TOKEN_ENV, ""), settings.env_path), False
        except EdgeError:
            pass  # none yet, or not a usable one
    return new_token(), True


def stream_address(target: Target, settings: ServiceSettings, token: str) -> str:
    """The URL that opens the deployed stream, token included."""
    host, sep, port = settings.serve.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"  # edge.live's default host
    if host in ("0.0.0.0", "", "::"):
        host = target.host_name()
    return stream_url(host, int(port), token)


def deploy(target: Target, settings: ServiceSettings, model: Path, *, dry_run: bool = False,
           unit_dir: str = DEFAULT_UNIT_DIR, log: Callable[[str], None] = print,
           renew_token: bool = False) -> Report:  # fmt: skip
    """Bring ``target`` to the wanted state; with ``dry_run`` only report what would change.

    The stream's token is kept from an earlier deploy unless ``renew_token``; a new one is
    printed once, in the URL to open, when it is written (never on a dry run)."""
    fresh = False
    if not settings.token:
        token, fresh = stream_token(target, settings, renew=renew_token)
        settings = dataclasses.replace(settings, token=token)
    steps, notes = plan(target, settings, model, unit_dir=unit_dir)
    report = Report(notes=notes)
    changed_before_enable = False
    for step in steps:
        done = step.done()
        if step.name == "enable" and not changed_before_enable and target.systemd_running():
            done = True  # nothing changed: leave the running service alone
        if done:
            report.unchanged.append(step.name)
            log(f"  ok       {step.name:8} {step.detail}")
            continue
        log(f"  {'would' if dry_run else 'install':8} {step.name:8} {step.detail}")
        if not dry_run:
            step.apply()
        report.changed.append(step.name)
        changed_before_enable = True
    for note in notes:
        log(f"note: {note}")
    if fresh and dry_run:
        log("note: a new stream token would be made; its URL is printed once, when it is written")
    elif fresh:
        report.open_url = stream_address(target, settings, settings.token)
    else:
        log(f"note: the stream needs the token in {settings.env_path} (root only); to see it: "
            f"sudo grep {TOKEN_ENV} {settings.env_path}")  # fmt: skip
    return report
