"""Install the landmark camera service on a Raspberry Pi: ``python -m edge.deploy``.

One plan, two ways to reach the Pi:

* ``--ssh user@host`` runs each step on a live Pi over ssh (files travel as tar streams on
  stdin, so only ``ssh`` is needed on this side and ``tar`` + ``python3-venv`` on the Pi);
* ``--rootfs PATH`` writes the same files into a Pi's root filesystem on this machine (an SD
  card mounted here, or an image being prepared). Nothing runs on the Pi's CPU then: the
  aarch64 wheels are unpacked by this machine's pip and the native library is cross-compiled.

What ends up on the Pi (all under ``--prefix``, plus the unit file)::

    /opt/binland/venv/              Python venv with --system-site-packages, so apt's
                                    python3-picamera2 stays visible; numpy<2, tflite-runtime,
                                    OpenCV come from wheels this machine downloads once
    /opt/binland/venv/.../edge/     this project's runtime package, copied as source (pure
                                    Python + the C sources of the native delegate). Copying
                                    keeps the Pi free of build tools for Python and TF/larq.
    /opt/binland/models/NAME.tflite the model
    /opt/binland/binland.env        the service's settings (source, thresholds, outputs);
                                    edit and `systemctl restart binland` to change them
    /etc/systemd/system/binland.service  runs `python -m edge.live` headless at boot

Every step first checks whether it is already done, so a second run changes nothing, and a
run after ``git pull`` replaces only what changed. ``--dry-run`` prints the plan.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .cli import ArgumentParser
from .errors import EdgeError, ModelError
from .metadata import custom_op_names, read_metadata

SERVICE_NAME = "binland.service"
DEFAULT_PREFIX = "/opt/binland"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
DEFAULT_SERVE = "0.0.0.0:8080"
DEFAULT_SOURCE = "picamera2"
# Debian packages the Pi needs: the camera stack (only apt ships libcamera's Python
# bindings), venv support, and a C compiler for the native bitpacked-op library.
APT_PACKAGES = ("python3-picamera2", "python3-venv", "gcc")
# The `edge` extra of pyproject.toml, per Python version; tests/test_deploy.py keeps them in step.
# tflite-runtime 2.14 has cp311 wheels for aarch64 (Pi OS Bookworm ships Python 3.11).
COMMON_REQUIREMENTS = ("numpy>=1.23,<2", "opencv-python-headless>=4.8,<4.12")


def runtime_requirements(python_version: str) -> tuple[str, ...]:
    """What the venv on the Pi needs for a Python "3.X"."""
    minor = int(python_version.split(".")[1])
    runtime = "tflite-runtime==2.14.0" if minor < 12 else "ai-edge-litert>=2.3,<2.4"
    return (*COMMON_REQUIREMENTS, runtime)


PACKAGE_DIR = Path(__file__).resolve().parent
_ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64", 0x28: "armv7l"}


class DeployError(EdgeError):
    """The target cannot be deployed to as asked (unreachable, wrong OS, missing tool...)."""


# --- what gets written ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The service's settings, written to ``PREFIX/binland.env`` (systemd EnvironmentFile)."""

    model_name: str
    prefix: str = DEFAULT_PREFIX
    source: str = DEFAULT_SOURCE
    serve: str = DEFAULT_SERVE
    threads: int = 4  # a Raspberry Pi 4 or 5 has four cores
    min_score: float = 0.3  # edge.live --min-score
    lost_below: float = 0.3  # edge.live --lost-below
    extra_args: tuple[str, ...] = ()  # more `edge.live` flags, e.g. outputs (--jsonl PATH)
    user: str | None = None  # run as this user (in group video) instead of root

    @property
    def model_path(self) -> str:
        return f"{self.prefix}/models/{self.model_name}"

    @property
    def venv(self) -> str:
        return f"{self.prefix}/venv"

    @property
    def env_path(self) -> str:
        return f"{self.prefix}/binland.env"


def render_env(s: ServiceSettings) -> str:
    def q(value: str) -> str:  # systemd EnvironmentFile quoting
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "# Settings of binland.service, written by `python -m edge.deploy`.\n"
        "# Edit, then: sudo systemctl restart binland\n"
        "# BINLAND_SOURCE: picamera2, a camera index (0), a video file or an image folder.\n"
        "# BINLAND_MIN_SCORE: landmarks below this score are not trusted (not drawn filled,\n"
        "# not used to track). BINLAND_LOST_BELOW: mean score below which the track restarts.\n"
        "# BINLAND_ARGS: further `python -m edge.live` flags (see its --help), e.g. outputs\n"
        "# such as --jsonl /opt/binland/landmarks.jsonl or --output /opt/binland/out.mp4.\n"
        f"BINLAND_MODEL={q(s.model_path)}\n"
        f"BINLAND_SOURCE={q(s.source)}\n"
        f"BINLAND_SERVE={q(s.serve)}\n"
        f"BINLAND_THREADS={q(str(s.threads))}\n"
        f"BINLAND_MIN_SCORE={q(repr(s.min_score))}\n"
        f"BINLAND_LOST_BELOW={q(repr(s.lost_below))}\n"
        f"BINLAND_ARGS={q(shlex.join(s.extra_args))}\n"
    )


def render_unit(s: ServiceSettings) -> str:
    user = f"User={s.user}\nSupplementaryGroups=video\n" if s.user else ""
    return (
        "[Unit]\n"
        "Description=binland landmark camera service (python -m edge.live)\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"{user}"
        f"EnvironmentFile={s.env_path}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        f"WorkingDirectory={s.prefix}\n"
        f"ExecStart={s.venv}/bin/python -m edge.live --model ${{BINLAND_MODEL}} "
        "--source ${BINLAND_SOURCE} --serve ${BINLAND_SERVE} --threads ${BINLAND_THREADS} "
        "--min-score ${BINLAND_MIN_SCORE} --lost-below ${BINLAND_LOST_BELOW} --no-display "
        "$BINLAND_ARGS\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (quotes removed)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        parts = shlex.split(value) if value.strip() else [""]
        env[key.strip()] = " ".join(parts)
    return env


def exec_start_argv(unit_text: str, env: dict[str, str]) -> list[str]:
    """The argv systemd runs for the unit's ExecStart, given its environment.

    ``${VAR}`` becomes one word and ``$VAR`` splits on whitespace, as in systemd.exec(5).
    """
    for line in unit_text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line[len("ExecStart=") :])
            break
    else:
        raise DeployError("the unit has no ExecStart line")
    argv: list[str] = []
    for word in words:
        whole = re.fullmatch(r"\$\{(\w+)\}", word)
        split = re.fullmatch(r"\$(\w+)", word)
        if whole:
            argv.append(env.get(whole.group(1), ""))
        elif split:
            argv.extend(shlex.split(env.get(split.group(1), "")))
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


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


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# --- the machine being deployed to ------------------------------------------------------------


@dataclass(frozen=True)
class PythonInfo:
    version: str  # "3.11"
    machine: str  # "aarch64"
    glibc: tuple[int, int]

    def platform_tags(self) -> list[str]:
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        return [*tags, f"manylinux2014_{self.machine}"]


class Target:
    """Where the files go. Paths are absolute paths as the Pi will see them."""

    name: str

    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes, mode: int = 0o644) -> None: ...
    def exists(self, path: str) -> bool: ...
    def readlink(self, path: str) -> str | None: ...
    def symlink(self, path: str, dest: str) -> None: ...
    def replace_tree(self, path: str, files: dict[str, bytes]) -> None: ...
    def python_info(self) -> PythonInfo: ...
    def make_venv(self, venv: str, info: PythonInfo) -> None: ...
    def install_wheels(self, wheel_dir: Path, venv: str, info: PythonInfo) -> None: ...
    def build_native(self, dest: str, info: PythonInfo) -> None: ...
    def systemd_running(self) -> bool: ...
    def run(self, argv: list[str]) -> str: ...


class RootfsTarget(Target):
    """A Pi root filesystem on this machine; nothing is executed on the Pi's CPU."""

    def __init__(self, root: Path, *, cross_cc: str | None = None):
        self.root = Path(root)
        self.cross_cc = cross_cc
        if not (self.root / "usr").is_dir():
            raise DeployError(f"{root} does not look like a root filesystem (no usr/)")
        self.name = f"rootfs {root}"

    def _p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def read(self, path: str) -> bytes | None:
        p = self._p(path)
        return p.read_bytes() if p.is_file() else None

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        p = self._p(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        tmp.replace(p)

    def exists(self, path: str) -> bool:
        return self._p(path).exists() or self._p(path).is_symlink()

    def readlink(self, path: str) -> str | None:
        p = self._p(path)
        return os.readlink(p) if p.is_symlink() else None

    def symlink(self, path: str, dest: str) -> None:
        p = self._p(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to(dest)

    def replace_tree(self, path: str, files: dict[str, bytes]) -> None:
        p = self._p(path)
        new = p.with_name(p.name + ".new")
        shutil.rmtree(new, ignore_errors=True)
        for rel, data in files.items():
            (new / rel).parent.mkdir(parents=True, exist_ok=True)
            (new / rel).write_bytes(data)
        shutil.rmtree(p, ignore_errors=True)
        new.rename(p)

    def python_info(self) -> PythonInfo:
        python = self._p("/usr/bin/python3")
        if not python.exists():
            raise DeployError(
                f"{self.name} has no /usr/bin/python3: install python3 on the Pi image"
            )
        real = (
            python.resolve()
            if not python.is_symlink()
            else self._p("/usr/bin") / os.readlink(python)
        )
        m = re.fullmatch(r"python(3\.\d+)", real.name)
        if not m:
            raise DeployError(f"cannot tell the Python version of {python} (-> {real.name})")
        head = real.read_bytes()[:20]
        machine = _ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "unknown")
        libcs = sorted(self.root.glob("usr/lib/*-linux-gnu/libc.so.6")) + sorted(
            self.root.glob("lib/*-linux-gnu/libc.so.6")
        )
        found = (
            re.search(rb"release version (\d+)\.(\d+)", libcs[0].read_bytes()) if libcs else None
        )
        if not found:
            raise DeployError(f"cannot find the GNU C library version in {self.name}")
        return PythonInfo(m.group(1), machine, (int(found.group(1)), int(found.group(2))))

    def make_venv(self, venv: str, info: PythonInfo) -> None:
        # What `python3 -m venv --system-site-packages --without-pip` writes; that command would
        # need the Pi's CPU. Absolute links, as venv makes them: they resolve on the Pi.
        py = f"python{info.version}"
        self._p(f"{venv}/lib/{py}/site-packages").mkdir(parents=True, exist_ok=True)
        self.symlink(f"{venv}/lib64", "lib")
        self.symlink(f"{venv}/bin/python", "/usr/bin/python3")
        self.symlink(f"{venv}/bin/python3", "python")
        self.symlink(f"{venv}/bin/{py}", "python")
        cfg = (
            "home = /usr/bin\ninclude-system-site-packages = true\n"
            f"version = {info.version}\nexecutable = /usr/bin/{py}\n"
            f"command = /usr/bin/python3 -m venv --system-site-packages {venv}\n"
        )
        self.write(f"{venv}/pyvenv.cfg", cfg.encode())

    def install_wheels(self, wheel_dir: Path, venv: str, info: PythonInfo) -> None:
        site = self._p(f"{venv}/lib/python{info.version}/site-packages")
        _pip(["install", "--upgrade", "--no-compile", "--target", str(site), "--no-index",
              "--find-links", str(wheel_dir), *_platform_args(info), *runtime_requirements(info.version)])  # fmt: skip

    def build_native(self, dest: str, info: PythonInfo) -> None:
        # Cross-compile here: the rootfs has no compiler we could run, and needs none.
        from . import native

        cc = self.cross_cc or _cross_compiler(info.machine)
        with tempfile.TemporaryDirectory() as tmp:
            lib = native.build(tmp, cc=cc)
            self.write(dest, lib.read_bytes(), 0o755)

    def systemd_running(self) -> bool:
        return False

    def run(self, argv: list[str]) -> str:
        raise DeployError("cannot run programs inside a rootfs")


class SshTarget(Target):
    """A live Pi reached with ssh; root-owned paths are written through `sudo -n`."""

    def __init__(self, dest: str, *, port: int | None = None, identity: str | None = None,
                 ssh_options: Iterable[str] = (), sudo: bool | None = None):  # fmt: skip
        self.dest = dest
        self.name = f"ssh {dest}"
        self.ssh = ["ssh", "-o", "BatchMode=yes"]
        if port:
            self.ssh += ["-p", str(port)]
        if identity:
            self.ssh += ["-i", identity]
        for opt in ssh_options:
            self.ssh += ["-o", opt]
        user = dest.split("@", 1)[0] if "@" in dest else None
        self.sudo = (user not in (None, "root")) if sudo is None else sudo

    def _sh(
        self, script: str, *, data: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        remote = shlex.join(["sh", "-c", script])
        if self.sudo:
            remote = "sudo -n " + remote
        try:
            proc = subprocess.run(
                [*self.ssh, self.dest, remote], input=data, capture_output=True, timeout=900
            )
        except FileNotFoundError:
            raise DeployError("ssh is not installed on this machine") from None
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise DeployError(
                f"{self.name}: `{script[:80]}` failed: {err[-1] if err else proc.returncode}"
            )
        return proc

    def run(self, argv: list[str]) -> str:
        return self._sh(shlex.join(argv)).stdout.decode()

    def read(self, path: str) -> bytes | None:
        proc = self._sh(f"cat {shlex.quote(path)} 2>/dev/null", check=False)
        return proc.stdout if proc.returncode == 0 else None

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        q = shlex.quote(path)
        self._sh(
            f"mkdir -p $(dirname {q}) && cat > {q}.tmp && chmod {mode:o} {q}.tmp && mv {q}.tmp {q}",
            data=data,
        )

    def exists(self, path: str) -> bool:
        q = shlex.quote(path)
        return self._sh(f"test -e {q} || test -L {q}", check=False).returncode == 0

    def readlink(self, path: str) -> str | None:
        proc = self._sh(f"readlink {shlex.quote(path)}", check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def symlink(self, path: str, dest: str) -> None:
        q = shlex.quote(path)
        self._sh(f"mkdir -p $(dirname {q}) && ln -sfn {shlex.quote(dest)} {q}")

    def replace_tree(self, path: str, files: dict[str, bytes]) -> None:
        q, new = shlex.quote(path), shlex.quote(path + ".new")
        self._sh(
            f"rm -rf {new} && mkdir -p {new} && tar -x -C {new} && rm -rf {q} && mv {new} {q}",
            data=_tar(files),
        )

    def python_info(self) -> PythonInfo:
        code = "import platform,sys;print('%d.%d'%sys.version_info[:2],platform.machine(),platform.libc_ver()[1])"
        proc = self._sh(f"python3 -c {shlex.quote(code)}", check=False)
        if proc.returncode != 0:
            raise DeployError(
                f"{self.name}: cannot run python3 there ({proc.stderr.decode().strip()[-200:]})"
            )
        version, machine, libc = proc.stdout.decode().split()
        major, minor = (int(x) for x in libc.split(".")[:2])
        return PythonInfo(version, machine, (major, minor))

    def make_venv(self, venv: str, info: PythonInfo) -> None:
        q = shlex.quote(venv)
        proc = self._sh(f"python3 -m venv --system-site-packages {q}", check=False)
        if proc.returncode != 0:
            raise DeployError(
                f"{self.name}: python3 -m venv failed; fix: sudo apt install python3-venv"
            )

    def install_wheels(self, wheel_dir: Path, venv: str, info: PythonInfo) -> None:
        remote_dir = f"{venv}/wheels"
        self.replace_tree(
            remote_dir, {p.name: p.read_bytes() for p in sorted(wheel_dir.glob("*.whl"))}
        )
        reqs = " ".join(shlex.quote(r) for r in runtime_requirements(info.version))
        # The wheels are only a transfer medium: remove them once installed (SD cards are small).
        self._sh(f"{shlex.quote(venv)}/bin/python -m pip install -q --upgrade --no-index "
                 f"--find-links {shlex.quote(remote_dir)} {reqs} && rm -rf {shlex.quote(remote_dir)}")  # fmt: skip

    def build_native(self, dest: str, info: PythonInfo) -> None:
        # Built on the Pi with its own gcc, from the sources the runtime step just copied.
        code = ("import shutil, sys, tempfile\nfrom edge import native\n"
                "with tempfile.TemporaryDirectory() as d:\n"
                "    shutil.copy(native.build(d), sys.argv[1])\n")  # fmt: skip
        venv_python = dest.split("/lib/python")[0] + "/bin/python"
        proc = self._sh(shlex.join([venv_python, "-c", code, dest]), check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise DeployError(
                f"building the native library on the Pi failed: {err[-1] if err else '?'}"
            )

    def systemd_running(self) -> bool:
        return self._sh("test -d /run/systemd/system", check=False).returncode == 0


# --- host-side wheel cache -----------------------------------------------------------------------


def _platform_args(info: PythonInfo) -> list[str]:
    args = ["--only-binary=:all:", "--python-version", info.version, "--implementation", "cp"]
    for tag in info.platform_tags():
        args += ["--platform", tag]
    return args


def _pip(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [str(proc.returncode)]
        raise DeployError(f"pip {args[0]} failed: {last[0]}")


def _cross_compiler(machine: str) -> str:
    """A C compiler on this machine that builds for ``machine`` (Debian's cross gcc names)."""
    for cc in (
        f"{machine}-linux-gnu-gcc",
        *(("gcc", "cc") if machine == platform.machine() else ()),
    ):
        if shutil.which(cc):
            return cc
    raise DeployError(
        f"no C compiler for {machine} here; fix: sudo apt install gcc-{machine.replace('_', '-')}-linux-gnu"
    )


def native_library_name(info: PythonInfo) -> str:
    """The file name edge.native looks for first: what setuptools would have built on the Pi."""
    from . import native

    return f"{native.INSTALLED_STEM}.cpython-{info.version.replace('.', '')}-{info.machine}-linux-gnu.so"


def wheel_cache(info: PythonInfo) -> Path:
    base = os.environ.get("BINLAND_WHEEL_CACHE") or Path.home() / ".cache" / "binland" / "wheels"
    return Path(base) / f"cp{info.version.replace('.', '')}-{info.machine}"


@contextmanager
def staged_wheels(info: PythonInfo) -> Iterator[Path]:
    """A temporary folder with exactly the runtime wheels for the Pi's Python and CPU.

    They are downloaded once into a cache on this machine (the Pi itself needs no internet).
    """
    if info.machine not in ("aarch64", "x86_64"):
        raise DeployError(
            f"the Pi runs a {info.machine} userland; tflite-runtime needs 64-bit Raspberry Pi OS (aarch64)"
        )
    cache = wheel_cache(info)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [*_platform_args(info), *runtime_requirements(info.version)]
    with tempfile.TemporaryDirectory(prefix="binland-wheels-") as tmp:
        try:  # everything already cached: no index needed
            _pip(["download", "--no-index", "--find-links", str(cache), "--dest", tmp, *wanted])
        except DeployError:
            _pip(["download", "--dest", str(cache), *wanted])
            _pip(["download", "--no-index", "--find-links", str(cache), "--dest", tmp, *wanted])
        yield Path(tmp)


def missing_apt_packages(target: Target) -> list[str] | None:
    """Which of APT_PACKAGES the Pi lacks, from its dpkg database (None: no database to read)."""
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
    return [name for name in APT_PACKAGES if name not in installed]


def apt_note(missing: list[str] | None) -> str:
    if missing is None:
        return f"the Pi needs these Debian packages: sudo apt install {' '.join(APT_PACKAGES)}"
    if not missing:
        return f"the Pi has the Debian packages it needs ({', '.join(APT_PACKAGES)})"
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


def plan(
    target: Target, settings: ServiceSettings, model: Path, *, unit_dir: str = DEFAULT_UNIT_DIR
) -> tuple[list[Step], list[str]]:
    """The deploy steps for ``target``, and notes to print after them."""
    info = target.python_info()
    s = settings
    site = f"{s.venv}/lib/python{info.version}/site-packages"
    unit_path = f"{unit_dir}/{SERVICE_NAME}"
    wants_link = f"{unit_dir}/multi-user.target.wants/{SERVICE_NAME}"
    runtime = runtime_files()
    wheels_id = digest([*runtime_requirements(info.version), *info.platform_tags()])
    runtime_id = digest([*runtime.keys(), *runtime.values()])
    env_text, unit_text = render_env(s).encode(), render_unit(s).encode()
    model_bytes = model.read_bytes()
    stamps = f"{s.venv}/.binland"
    needs_native = any(name.startswith("Lce") for name in custom_op_names(model_bytes))
    native_dest = f"{site}/edge/native/{native_library_name(info)}"
    notes = [apt_note(missing_apt_packages(target))]

    def same(path: str, data: bytes) -> Callable[[], bool]:
        return lambda: target.read(path) == data

    def install_wheels() -> None:
        with staged_wheels(info) as wheels:
            target.install_wheels(wheels, s.venv, info)
        target.write(f"{stamps}/wheels", wheels_id.encode())

    def install_runtime() -> None:
        target.replace_tree(f"{site}/edge", runtime)  # also removes an older native build
        target.write(f"{stamps}/runtime", runtime_id.encode())

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
        Step("wheels", f"{', '.join(runtime_requirements(info.version))} for {info.platform_tags()[0]} into {site}",
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
        Step("config", f"{s.env_path} (source {s.source}, serve {s.serve})",
             same(s.env_path, env_text), lambda: target.write(s.env_path, env_text)),
        Step("unit", f"{unit_path} (ExecStart python -m edge.live, Restart=on-failure)",
             same(unit_path, unit_text), lambda: target.write(unit_path, unit_text)),
    ]  # fmt: skip
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


def deploy(target: Target, settings: ServiceSettings, model: Path, *, dry_run: bool = False,
           unit_dir: str = DEFAULT_UNIT_DIR, log: Callable[[str], None] = print) -> Report:  # fmt: skip
    """Bring ``target`` to the wanted state; with ``dry_run`` only report what would change."""
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
    return report


# --- command line --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m edge.deploy",
        description="Install the landmark camera service (venv, runtime, model, settings, systemd "
        "unit) on a Raspberry Pi over ssh, or into a Pi root filesystem mounted here. "
        "Safe to run again: finished steps are skipped.",
    )
    add = p.add_argument
    add("--model", required=True, type=Path, help="the .tflite landmark model to serve")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--ssh", metavar="USER@HOST", help="deploy to a running Pi over ssh")
    where.add_argument("--rootfs", metavar="PATH", type=Path,
                       help="deploy into a Pi root filesystem at PATH (SD card or image mounted "
                       "here); nothing runs on the Pi's CPU")  # fmt: skip
    add(
        "--dry-run",
        action="store_true",
        help="print every step and whether it is needed; change nothing",
    )
    add(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"install folder on the Pi (default {DEFAULT_PREFIX})",
    )
    svc = p.add_argument_group("service settings (written to PREFIX/binland.env)")
    svc.add_argument("--source", default=DEFAULT_SOURCE,
                     help=f"what the service reads: picamera2, a camera index, a video file (default {DEFAULT_SOURCE})")  # fmt: skip
    svc.add_argument("--serve", default=DEFAULT_SERVE, metavar="HOST:PORT",
                     help=f"where edge.live serves the MJPEG stream and page (default {DEFAULT_SERVE})")  # fmt: skip
    svc.add_argument("--threads", type=int, default=4, help="interpreter threads (default 4)")
    svc.add_argument("--min-score", type=float, default=0.3,
                     help="edge.live --min-score: landmarks below it are not trusted (default 0.3)")  # fmt: skip
    svc.add_argument("--lost-below", type=float, default=0.3,
                     help="edge.live --lost-below: mean score that restarts tracking (default 0.3)")  # fmt: skip
    svc.add_argument("--live-arg", action="append", default=[], metavar="ARG",
                     help="one more `python -m edge.live` argument (repeatable), e.g. "
                     "--live-arg=--jsonl --live-arg=/opt/binland/landmarks.jsonl")  # fmt: skip
    svc.add_argument("--user", help="run the service as this user, in group video (default: root for "
                     "--rootfs, the ssh user otherwise)")  # fmt: skip
    svc.add_argument("--unit-dir", default=DEFAULT_UNIT_DIR,
                     help=f"where the systemd unit goes (default {DEFAULT_UNIT_DIR})")  # fmt: skip
    svc.add_argument("--cc", help="--rootfs only: the cross C compiler for the native library "
                     "(default aarch64-linux-gnu-gcc for an arm64 rootfs)")  # fmt: skip
    ssh = p.add_argument_group("ssh")
    ssh.add_argument("--port", type=int, help="ssh port (default: ssh's own, usually 22)")
    ssh.add_argument("--identity", help="ssh private key file")
    ssh.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                     help="extra `ssh -o` option (repeatable), e.g. StrictHostKeyChecking=accept-new")  # fmt: skip
    ssh.add_argument("--no-sudo", action="store_true",
                     help="the ssh user can write --prefix and --unit-dir itself: do not use sudo")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.model.is_file():
            raise ModelError(f"model file not found: {args.model}")
        read_metadata(args.model)  # refuse a file that edge.live could not use
        prefix = args.prefix.rstrip("/")
        if not args.prefix.startswith("/") or prefix in ("", "/usr", "/etc", "/opt", "/home"):
            raise DeployError(
                f"--prefix must be an absolute folder of its own, not {args.prefix!r}"
            )
        if args.threads < 1:
            raise DeployError("--threads must be at least 1")
        if args.rootfs:
            target: Target = RootfsTarget(args.rootfs, cross_cc=args.cc)
            user = args.user
        else:
            target = SshTarget(args.ssh, port=args.port, identity=args.identity,
                               ssh_options=args.ssh_option, sudo=False if args.no_sudo else None)  # fmt: skip
            remote_user = args.ssh.split("@", 1)[0] if "@" in args.ssh else None
            user = args.user or (remote_user if remote_user not in (None, "root") else None)
        settings = ServiceSettings(
            model_name=args.model.name, prefix=prefix, source=args.source, serve=args.serve,
            threads=args.threads, min_score=args.min_score, lost_below=args.lost_below,
            extra_args=tuple(args.live_arg), user=user,
        )  # fmt: skip
        print(f"{'plan for' if args.dry_run else 'deploying to'} {target.name}:")
        report = deploy(target, settings, args.model, dry_run=args.dry_run,
                        unit_dir=args.unit_dir.rstrip("/"))  # fmt: skip
        total = len(report.changed) + len(report.unchanged)
        print(
            f"{'would change' if args.dry_run else 'changed'} {len(report.changed)} of {total} steps"
        )
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "APT_PACKAGES",
    "DeployError",
    "PythonInfo",
    "RootfsTarget",
    "ServiceSettings",
    "SshTarget",
    "Target",
    "deploy",
    "exec_start_argv",
    "parse_env_file",
    "missing_apt_packages",
    "plan",
    "render_env",
    "render_unit",
    "runtime_requirements",
]
