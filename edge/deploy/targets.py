"""Where the files go: a Pi root filesystem on this machine, or a live Pi over ssh."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import DeployError
from .wheels import PythonInfo, _cross_compiler, _pip, _platform_args, parse_os_release

_ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64", 0x28: "armv7l"}
# Where a venv's own numpy lives (a wheel's files); removed when the system's numpy is used.
NUMPY_IN_SITE = ("numpy", "numpy-*.dist-info", "numpy.libs")


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Target:
    """Where the files go. Paths are absolute paths as the Pi will see them."""

    name: str

    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes, mode: int = 0o644) -> None: ...
    def mode(self, path: str) -> int | None: ...  # permission bits; None: no such file
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
    def host_name(self) -> str: ...  # how a browser on the same network reaches the Pi


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
        tmp.unlink(missing_ok=True)
        # Created with its final mode (less the umask), so a secret is never readable by others.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.chmod(mode)
        tmp.replace(p)

    def mode(self, path: str) -> int | None:
        p = self._p(path)
        return p.stat().st_mode & 0o7777 if p.is_file() else None

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
        release = self.read("/etc/os-release") or self.read("/usr/lib/os-release") or b""
        os_release = parse_os_release(release.decode(errors="replace"))
        return PythonInfo(m.group(1), machine, (int(found.group(1)), int(found.group(2))),
                          tuple(os_release.items()), self._system_numpy())  # fmt: skip

    def _system_numpy(self) -> str | None:
        """The numpy version apt installed (python3-numpy), from its metadata in the rootfs."""
        for dist in sorted(self.root.glob("usr/lib/python3/dist-packages/numpy-*.*-info")):
            m = re.fullmatch(r"numpy-(\d[^-]*)\.(dist|egg)-info", dist.name)
            if m:
                return m.group(1)
        return None

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
        if info.uses_system_numpy:
            # Exactly the staged wheels (resolved against the system's numpy, which is not
            # among them), and no numpy left over in the venv to shadow the system's.
            for pattern in NUMPY_IN_SITE:
                for p in site.glob(pattern):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            _pip(["install", "--upgrade", "--no-compile", "--target", str(site), "--no-deps",
                  *_platform_args(info), *(str(w) for w in sorted(wheel_dir.glob("*.whl")))])  # fmt: skip
            return
        _pip(["install", "--upgrade", "--no-compile", "--target", str(site), "--no-index",
              "--find-links", str(wheel_dir), *_platform_args(info), *info.venv_requirements()])  # fmt: skip

    def build_native(self, dest: str, info: PythonInfo) -> None:
        # Cross-compile here: the rootfs has no compiler we could run, and needs none.
        from .. import native

        cc = self.cross_cc or _cross_compiler(info.machine)
        with tempfile.TemporaryDirectory() as tmp:
            lib = native.build(tmp, cc=cc)
            self.write(dest, lib.read_bytes(), 0o755)

    def systemd_running(self) -> bool:
        return False

    def run(self, argv: list[str]) -> str:
        raise DeployError("cannot run programs inside a rootfs")

    def host_name(self) -> str:
        name = (self.read("/etc/hostname") or b"").decode(errors="replace").strip()
        return f"{name or 'raspberrypi'}.local"  # Raspberry Pi OS answers mDNS as NAME.local


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
        # The file is created unreadable to others (umask 077) and then given its mode, so a
        # secret is never readable by others, not even for a moment.
        self._sh(
            f"mkdir -p $(dirname {q}) && rm -f {q}.tmp && (umask 077 && cat > {q}.tmp) && "
            f"chmod {mode:o} {q}.tmp && mv {q}.tmp {q}",
            data=data,
        )

    def mode(self, path: str) -> int | None:
        proc = self._sh(f"stat -c %a {shlex.quote(path)}", check=False)
        return int(proc.stdout.decode().strip(), 8) if proc.returncode == 0 else None

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
        # The system python3 (not a venv): its version, CPU, C library, OS and apt's numpy.
        code = (
            "import json, platform, sys\n"
            "try:\n    import numpy; n = numpy.__version__\nexcept Exception: n = None\n"
            "try:\n    r = platform.freedesktop_os_release()\nexcept Exception: r = {}\n"
            "print(json.dumps(['%d.%d' % sys.version_info[:2], platform.machine(),"
            " platform.libc_ver()[1], r, n]))\n"
        )
        proc = self._sh(f"python3 -c {shlex.quote(code)}", check=False)
        if proc.returncode != 0:
            raise DeployError(
                f"{self.name}: cannot run python3 there ({proc.stderr.decode().strip()[-200:]})"
            )
        version, machine, libc, release, numpy = json.loads(proc.stdout.decode().splitlines()[-1])
        major, minor = (int(x) for x in libc.split(".")[:2])
        return PythonInfo(version, machine, (major, minor), tuple(sorted(release.items())), numpy)

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
        venv_q, dir_q = shlex.quote(venv), shlex.quote(remote_dir)
        if info.uses_system_numpy:
            # The staged wheels as they are (resolved against the system's numpy, which is not
            # among them): pip cannot pull a second numpy into the venv.
            site = shlex.quote(f"{venv}/lib/python{info.version}/site-packages")
            drop = " ".join(f"{site}/{p}" for p in NUMPY_IN_SITE)
            install = (f"rm -rf {drop} && {venv_q}/bin/python -m pip install -q --upgrade --no-index "
                       f"--no-deps {dir_q}/*.whl")  # fmt: skip
        else:
            reqs = " ".join(shlex.quote(r) for r in info.venv_requirements())
            install = (f"{venv_q}/bin/python -m pip install -q --upgrade --no-index "
                       f"--find-links {dir_q} {reqs}")  # fmt: skip
        # The wheels are only a transfer medium: remove them once installed (SD cards are small).
        self._sh(f"{install} && rm -rf {dir_q}")

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

    def host_name(self) -> str:
        return self.dest.rpartition("@")[2].strip("[]")
