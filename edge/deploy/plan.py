"""The deploy steps, each able to tell whether it is already done, and the run over them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
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


# --- what the deploy installed -------------------------------------------------------------------

MANIFEST_NAME = ".binland-manifest"  # in --prefix: JSON, the files this deploy installed
# What may sit at the top of --prefix: the deploy's own layout (``output`` is the service's), and
# what a write or a tree replacement interrupted midway leaves (NAME.tmp, NAME.new).
LAYOUT = ("venv", "models", "output", "binland.env", "binland.env.new", MANIFEST_NAME)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Manifest:
    """The files the deploy installed, kept in ``PREFIX/.binland-manifest``: it deletes only
    these, and knows ``binland.env`` as its own only while the file holds what it last wrote
    (``env_sha256``); anything else there is the user's."""

    path: str
    files: set[str] = field(default_factory=set)  # absolute paths on the Pi
    env_sha256: str = ""  # of the settings text the deploy last rendered
    found: bool = False  # read from the Pi (False: a first deploy, or one from before manifests)
    _saved: str = ""

    @classmethod
    def load(cls, target: Target, settings: ServiceSettings) -> Manifest:
        path = f"{settings.prefix}/{MANIFEST_NAME}"
        raw = target.read(path)
        manifest = cls(path)
        if raw is None:
            return manifest
        try:
            record = json.loads(raw)
            if not isinstance(record["files"], list):
                raise TypeError("files is not a list")
            manifest.files = {str(f) for f in record["files"]}
            manifest.env_sha256 = str(record.get("env_sha256", ""))
        except (ValueError, KeyError, TypeError):
            raise DeployError(
                f"{path} is damaged (not the JSON a deploy writes): remove it, and the deploy "
                "takes the folder for one from before manifests"
            ) from None
        manifest.found, manifest._saved = True, manifest._text()
        return manifest

    def _text(self) -> str:
        record = {"format": 1, "files": sorted(self.files), "env_sha256": self.env_sha256}
        return json.dumps(record, indent=1) + "\n"

    def save(self, target: Target) -> None:
        """Write it if it changed (a run that changes nothing writes nothing)."""
        text = self._text()
        if text != self._saved:
            target.write(self.path, text.encode(), 0o644)
            self._saved = text

    def add(self, target: Target, path: str) -> None:
        """Record ``path`` before it is written: an interrupted run still knows it."""
        self.files.add(path)
        self.save(target)


def check_prefix(target: Target, s: ServiceSettings, manifest: Manifest) -> list[str]:
    """Refuse a --prefix that holds anything while no deploy has made it its own (e.g. a home
    folder): the service's files would mix with the user's, and models/ once lost a user's
    files that way. In a folder an earlier deploy made, other files are only named (the
    deploy never touches them). Returns notes."""
    entries = target.listdir(s.prefix)
    if not entries:  # no folder yet, or an empty one
        return []
    earlier = manifest.found or target.exists(f"{s.venv}/.binland")  # a deploy before manifests
    ours = {*LAYOUT, *(f"{n}.tmp" for n in LAYOUT), *(f"{n}.new" for n in LAYOUT)}
    foreign = [e for e in entries if not earlier or e not in ours]
    if not foreign:
        return []
    shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
    if not earlier:
        raise DeployError(
            f"--prefix {s.prefix} holds files this deploy did not install ({shown}): give a "
            "new or empty folder of its own (the default is /opt/binland)"
        )
    return [f"{s.prefix} also holds {shown}, which this deploy did not install: left as is"]


def adopt_earlier_model(target: Target, s: ServiceSettings, manifest: Manifest) -> None:
    """A deploy from before manifests served one model, named in its settings: that file is
    the deploy's own (to replace); anything else in models/ is left alone."""
    if manifest.found:
        return
    env = parse_env_file((target.read(s.env_path) or b"").decode(errors="replace"))
    model = env.get("BINLAND_MODEL", "")
    if model.startswith(f"{s.prefix}/models/") and "/" not in model[len(s.prefix) + 8 :]:
        manifest.files.add(model)


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
    target: Target,
    settings: ServiceSettings,
    model: Path,
    *,
    unit_dir: str = DEFAULT_UNIT_DIR,
    finder: Path | None = None,
) -> tuple[list[Step], list[str]]:
    """The deploy steps for ``target``, and notes to print after them. ``finder``: a finder
    .tflite to install beside the model, as ``settings.finder_name``."""
    if (finder.name if finder is not None else "") != settings.finder_name:
        raise DeployError(
            f"internal error: the finder file {finder} is not settings.finder_name "
            f"{settings.finder_name!r}"
        )
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
    finder_bytes = finder.read_bytes() if finder is not None else None
    stamps = f"{s.venv}/.binland"
    # The files that cannot run without the native library: bitpacked (LCE) ones.
    bitpacked = [
        path.name
        for path, data in ((model, model_bytes), (finder, finder_bytes))
        if path is not None and any(op.startswith("Lce") for op in custom_op_names(data))
    ]
    needs_native = bool(bitpacked)
    native_dest = f"{site}/edge/native/{native_library_name(info)}"
    numpy_note = (
        f"numpy {info.system_numpy or '(missing)'} from apt (python3-numpy); none in the venv"
        if info.uses_system_numpy
        else "numpy<2 in the venv (tflite-runtime 2.14 needs it)"
    )
    notes = [
        f"the Pi runs {info.os_name}, Python {info.version} on {info.machine}: {numpy_note}",
        apt_note(missing_apt_packages(target, info), info),
    ]
    # What an earlier deploy installed: the only files this one replaces or deletes.
    manifest = Manifest.load(target, s)
    notes += check_prefix(target, s, manifest)
    adopt_earlier_model(target, s, manifest)
    models_dir = f"{s.prefix}/models"
    # The files this deploy puts in models/: the model, and the finder when there is one.
    wanted = {s.model_path: model_bytes}
    if s.finder_path is not None and finder_bytes is not None:
        if s.finder_path == s.model_path:
            raise DeployError(
                f"the finder {finder} has the model's file name {s.model_name}: rename one"
            )
        wanted[s.finder_path] = finder_bytes
    for path, data in wanted.items():
        existing = target.read(path)
        if existing not in (None, data) and path not in manifest.files:
            raise DeployError(
                f"{path} is there already and this deploy did not install "
                "it: move it away, or rename the file to deploy"
            )
    others = [
        n
        for n in target.listdir(models_dir) or []
        if f"{models_dir}/{n}" not in manifest.files and f"{models_dir}/{n}" not in wanted
    ]
    if others:
        notes.append(
            f"{models_dir} also holds {', '.join(others)}, which this deploy did not "
            "install: left as they are"
        )
    env_new_path = f"{s.env_path}.new"

    def same(path: str, data: bytes) -> Callable[[], bool]:
        return lambda: target.read(path) == data

    def installed(path: str, write: Callable[[], None]) -> Callable[[], None]:
        """``write``, with ``path`` recorded in the manifest first."""

        def apply() -> None:
            manifest.add(target, path)
            write()

        return apply

    def stale_models() -> list[str]:  # models an earlier deploy installed, not this one's
        return [
            f
            for f in sorted(manifest.files)
            if f.startswith(f"{models_dir}/") and f not in wanted and target.exists(f)
        ]

    def install_model() -> None:
        manifest.add(target, s.model_path)
        target.write(s.model_path, model_bytes, 0o644)
        for old in stale_models():  # an upgrade leaves none of its own files behind
            target.remove(old)
            manifest.files.discard(old)
        manifest.save(target)

    def install_finder() -> None:
        manifest.add(target, s.finder_path)
        target.write(s.finder_path, finder_bytes, 0o644)

    def env_edited(current: bytes | None) -> bool:
        """binland.env holds neither the new settings nor what a deploy last wrote: the
        user's edits (its header invites them), to be kept."""
        return current not in (None, env_text) and _sha256(current) != manifest.env_sha256

    def config_done() -> bool:
        current = target.read(s.env_path)
        if current is None or target.mode(s.env_path) != 0o600:
            return False
        if current == env_text:
            return manifest.env_sha256 == _sha256(env_text)
        return (
            env_edited(current)
            and target.read(env_new_path) == env_text
            and target.mode(env_new_path) == 0o600
        )

    def write_config() -> None:
        current = target.read(s.env_path)
        if env_edited(current):
            manifest.add(target, env_new_path)
            target.write(env_new_path, env_text, 0o600)
            if target.mode(s.env_path) != 0o600:  # the edits stay; others' eyes go
                target.write(s.env_path, current, 0o600)
        else:
            target.write(s.env_path, env_text, 0o600)
            manifest.files.add(s.env_path)
            if env_new_path in manifest.files:  # new settings from an earlier run, now in effect
                target.remove(env_new_path)
                manifest.files.discard(env_new_path)
        manifest.env_sha256 = _sha256(env_text)  # after the write: an interruption errs on "edited"
        manifest.save(target)

    keeps_edits = env_edited(target.read(s.env_path))
    if keeps_edits:
        notes.append(
            f"{s.env_path} has edits of yours: kept as it is. The new settings go to "
            f"{env_new_path}: merge them (diff {s.env_path} {env_new_path}), then "
            "sudo systemctl restart binland"
        )
    config_detail = (
        f"{env_new_path} (new settings beside your edited {s.env_path}; mode 0600)"
        if keeps_edits
        else f"{s.env_path} (source {s.source}, serve {s.serve}; mode 0600)"
    )

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
                    f"{' and '.join(bitpacked)} {'is' if len(bitpacked) == 1 else 'are'} "
                    f"bitpacked (LCE) and need{'s' if len(bitpacked) == 1 else ''} the native "
                    f"library: {exc}"
                ) from None
            notes.append(f"native library not built ({exc}); float models run without it")
            return
        target.write(f"{stamps}/native", runtime_id.encode())

    steps = [
        Step(
            "venv",
            f"{s.venv} (python{info.version}, {info.machine}, --system-site-packages)",
            lambda: (
                b"include-system-site-packages = true"
                in (target.read(f"{s.venv}/pyvenv.cfg") or b"")
            ),
            installed(s.venv, lambda: target.make_venv(s.venv, info)),
        ),
        Step(
            "wheels",
            f"{', '.join(info.venv_requirements())} for {info.platform_tags()[0]} into {site}"
            + (f" (with the system's numpy {info.system_numpy})" if info.uses_system_numpy else ""),
            same(f"{stamps}/wheels", wheels_id.encode()),
            install_wheels,
        ),
        Step(
            "runtime",
            f"the edge package ({len(runtime)} files, {runtime_id}) into {site}/edge",
            same(f"{stamps}/runtime", runtime_id.encode()),
            install_runtime,
        ),
        Step(
            "native",
            f"the bitpacked-op library ({'needed by' if needs_native else 'optional for'} "
            f"this model) to {native_dest}",
            lambda: (
                target.read(f"{stamps}/native") == runtime_id.encode()
                and target.exists(native_dest)
            ),
            build_native,
        ),
        Step(
            "model",
            f"{model.name} ({len(model_bytes)} bytes) to {s.model_path}",
            lambda: (
                same(s.model_path, model_bytes)()
                and s.model_path in manifest.files
                and not stale_models()
            ),
            install_model,
        ),
    ]
    if s.finder_path is not None and finder_bytes is not None:
        steps.append(
            Step(
                "finder",
                f"{finder.name} ({len(finder_bytes)} bytes) to {s.finder_path}",
                lambda: same(s.finder_path, finder_bytes)() and s.finder_path in manifest.files,
                install_finder,
            )
        )
    # Root only: it holds the stream's token.
    steps.append(Step("config", config_detail, config_done, write_config))
    if s.creates_user:
        steps.append(
            Step(
                "user",
                f"system user {s.user} in group video ({s.sysusers_path})",
                lambda: (
                    target.read(s.sysusers_path) == sysusers_text
                    and (not target.systemd_running() or user_exists())
                ),
                installed(s.sysusers_path, make_user),
            )
        )
    steps.append(
        Step(
            "unit",
            f"{unit_path} (runs python -m edge.live as {s.user}, hardened, Restart=always)",
            same(unit_path, unit_text),
            installed(unit_path, lambda: target.write(unit_path, unit_text)),
        )
    )
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
        steps.append(
            Step(
                "enable",
                f"{wants_link} -> {unit_path} (starts at boot)",
                lambda: target.readlink(wants_link) == unit_path,
                installed(wants_link, lambda: target.symlink(wants_link, unit_path)),
            )
        )
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


def deploy(
    target: Target,
    settings: ServiceSettings,
    model: Path,
    *,
    dry_run: bool = False,
    unit_dir: str = DEFAULT_UNIT_DIR,
    log: Callable[[str], None] = print,
    renew_token: bool = False,
    finder: Path | None = None,
) -> Report:
    """Bring ``target`` to the wanted state; with ``dry_run`` only report what would change.
    ``finder``: a finder .tflite installed beside the model (``settings.finder_name``).

    The stream's token is kept from an earlier deploy unless ``renew_token``; a new one is
    printed once, in the URL to open, when it is written (never on a dry run)."""
    fresh = False
    if not settings.token:
        token, fresh = stream_token(target, settings, renew=renew_token)
        settings = dataclasses.replace(settings, token=token)
    steps, notes = plan(target, settings, model, unit_dir=unit_dir, finder=finder)
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
        log(
            f"note: the stream needs the token in {settings.env_path} (root only); to see it: "
            f"sudo grep {TOKEN_ENV} {settings.env_path}"
        )
    return report
