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
from pathlib import Path, PurePosixPath

from ..errors import DeployError
from .wheels import PythonInfo, cross_compiler, parse_os_release, platform_args, run_pip

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
    def listdir(self, path: str) -> list[str] | None: ...  # names in a folder; None: no folder
    def remove(self, path: str) -> None: ...  # one file or link (never a folder)
    def python_info(self) -> PythonInfo: ...
    def make_venv(self, venv: str, info: PythonInfo) -> None: ...
    def install_wheels(self, wheel_dir: Path, venv: str, info: PythonInfo) -> None: ...
    def build_native(self, dest: str, info: PythonInfo) -> None: ...
    def systemd_running(self) -> bool: ...
    def run(self, argv: list[str]) -> str: ...
    def host_name(self) -> str: ...  # how a browser on the same network reaches the Pi


# Modes the deploy gives what it creates, whatever this process's umask (under umask 000 the
# rootfs would otherwise get world-writable folders, code and /etc/sysusers.d).
DIR_MODE, FILE_MODE, EXEC_MODE = 0o755, 0o644, 0o755
_MAX_LINKS = 40  # as the kernel: more links than this in one path is a loop


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` with mode 0755 for each folder it creates (folders already there are left)."""
    missing = []
    while not path.exists() and not path.is_symlink():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir()
        folder.chmod(DIR_MODE)  # mkdir's mode is cut by the umask: set it explicitly


def set_tree_modes(root: Path) -> None:
    """Folders 0755, files 0755 if executable else 0644, in a tree the deploy wrote (pip's
    files included): nothing in it writable by others, whatever the umask was."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, DIR_MODE)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            os.chmod(p, EXEC_MODE if os.stat(p).st_mode & 0o111 else FILE_MODE)


class RootfsTarget(Target):
    """A Pi root filesystem on this machine; nothing is executed on the Pi's CPU.

    Every path is resolved inside the root as the Pi would resolve it: a symlink is followed
    within the root (an absolute target starts again at the root, not at this machine's /),
    and one that climbs out of the root with ``..`` is refused. So an image whose /etc or /opt
    is an absolute link never makes the deploy write onto this machine.
    """

    def __init__(self, root: Path, *, cross_cc: str | None = None):
        self.root = Path(root)
        self.cross_cc = cross_cc
        if not self._p("/usr").is_dir():
            raise DeployError(f"{root} does not look like a root filesystem (no usr/)")
        self.name = f"rootfs {root}"

    def _p(self, path: str, *, follow: bool = True) -> Path:
        """The host path of ``path`` (as the Pi sees it), resolved inside the root. With
        ``follow=False`` a link in the last place is left as it is (to replace or read it)."""
        todo = list(PurePosixPath("/" + path.lstrip("/")).parts[1:])
        done: list[str] = []  # real folders under the root, links already replaced
        links = 0
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if not done:
                    raise DeployError(f"{path} leads out of {self.name} (through ..)")
                done.pop()
                continue
            host = self.root.joinpath(*done, name)
            if host.is_symlink() and (follow or todo):
                links += 1
                if links > _MAX_LINKS:
                    raise DeployError(f"{path} in {self.name}: too many levels of symlinks")
                dest = os.readlink(host)
                if dest.startswith("/"):
                    done = []  # absolute: from the Pi's root, which is self.root
                todo = [*PurePosixPath(dest).parts[1 if dest.startswith("/") else 0 :], *todo]
                continue
            done.append(name)
        return self.root.joinpath(*done)

    def read(self, path: str) -> bytes | None:
        p = self._p(path)
        return p.read_bytes() if p.is_file() else None

    def write(self, path: str, data: bytes, mode: int = FILE_MODE) -> None:
        p = self._p(path, follow=False)  # a link there is replaced, never written through
        _make_dirs(p.parent)
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
        p = self._p(path, follow=False)
        return p.exists() or p.is_symlink()

    def readlink(self, path: str) -> str | None:
        p = self._p(path, follow=False)
        return os.readlink(p) if p.is_symlink() else None

    def symlink(self, path: str, dest: str) -> None:
        p = self._p(path, follow=False)
        _make_dirs(p.parent)
        if p.is_symlink() or p.is_file():
            p.unlink()
        p.symlink_to(dest)

    def listdir(self, path: str) -> list[str] | None:
        p = self._p(path)
        return sorted(os.listdir(p)) if p.is_dir() else None

    def remove(self, path: str) -> None:
        p = self._p(path, follow=False)
        if p.is_symlink() or p.is_file():
            p.unlink()

    def replace_tree(self, path: str, files: dict[str, bytes]) -> None:
        p = self._p(path, follow=False)
        _make_dirs(p.parent)
        new = p.with_name(p.name + ".new")
        for old in (new, p):  # a link in either place is removed, not followed
            if old.is_symlink() or old.is_file():
                old.unlink()
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        for rel, data in files.items():
            _make_dirs((new / rel).parent)
            (new / rel).write_bytes(data)
        set_tree_modes(new)
        shutil.rmtree(p, ignore_errors=True)
        new.rename(p)

    def python_info(self) -> PythonInfo:
        real = self._p("/usr/bin/python3")  # the interpreter the link names, inside the root
        if not real.is_file():
            raise DeployError(
                f"{self.name} has no /usr/bin/python3: install python3 on the Pi image"
            )
        m = re.fullmatch(r"python(3\.\d+)", real.name)
        if not m:
            raise DeployError(
                f"cannot tell the Python version of /usr/bin/python3 (-> {real.name})"
            )
        head = real.read_bytes()[:20]
        machine = _ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "unknown")
        libcs = [
            libc
            for lib in ("/usr/lib", "/lib")
            for name in self.listdir(lib) or []
            if name.endswith("-linux-gnu")
            and (libc := self._p(f"{lib}/{name}/libc.so.6")).is_file()
        ]
        found = (
            re.search(rb"release version (\d+)\.(\d+)", libcs[0].read_bytes()) if libcs else None
        )
        if not found:
            raise DeployError(f"cannot find the GNU C library version in {self.name}")
        release = self.read("/etc/os-release") or self.read("/usr/lib/os-release") or b""
        os_release = parse_os_release(release.decode(errors="replace"))
        return PythonInfo(
            m.group(1),
            machine,
            (int(found.group(1)), int(found.group(2))),
            tuple(os_release.items()),
            self._system_numpy(),
        )

    def _system_numpy(self) -> str | None:
        """The numpy version apt installed (python3-numpy), from its metadata in the rootfs."""
        for name in self.listdir("/usr/lib/python3/dist-packages") or []:
            m = re.fullmatch(r"numpy-(\d[^-]*)\.(dist|egg)-info", name)
            if m:
                return m.group(1)
        return None

    def make_venv(self, venv: str, info: PythonInfo) -> None:
        # What `python3 -m venv --system-site-packages --without-pip` writes; that command would
        # need the Pi's CPU. Absolute links, as venv makes them: they resolve on the Pi.
        py = f"python{info.version}"
        _make_dirs(self._p(f"{venv}/lib/{py}/site-packages"))
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
        _make_dirs(site)
        if info.uses_system_numpy:
            # Exactly the staged wheels (resolved against the system's numpy, which is not
            # among them), and no numpy left over in the venv to shadow the system's.
            for pattern in NUMPY_IN_SITE:
                for p in site.glob(pattern):
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            run_pip(
                [
                    "install",
                    "--upgrade",
                    "--no-compile",
                    "--target",
                    str(site),
                    "--no-deps",
                    *platform_args(info),
                    *(str(w) for w in sorted(wheel_dir.glob("*.whl"))),
                ]
            )
        else:
            run_pip(
                [
                    "install",
                    "--upgrade",
                    "--no-compile",
                    "--target",
                    str(site),
                    "--no-index",
                    "--find-links",
                    str(wheel_dir),
                    *platform_args(info),
                    *info.venv_requirements(),
                ]
            )
        set_tree_modes(site)  # pip creates files under this process's umask

    def build_native(self, dest: str, info: PythonInfo) -> None:
        # Cross-compile here: the rootfs has no compiler we could run, and needs none.
        from .. import native

        cc = self.cross_cc or cross_compiler(info.machine)
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

    def __init__(
        self,
        dest: str,
        *,
        port: int | None = None,
        identity: str | None = None,
        ssh_options: Iterable[str] = (),
        sudo: bool | None = None,
    ):
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
        # umask 022: what the deploy creates (folders, the venv, pip's files) is never writable
        # by others, whatever the login's umask; secrets get their mode explicitly (write).
        remote = shlex.join(["sh", "-c", f"umask 022; {script}"])
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

    def listdir(self, path: str) -> list[str] | None:
        # NUL-separated: any name survives; the trailing / follows a link to a folder.
        q, inside = shlex.quote(path), shlex.quote(path + "/")
        script = f"test -d {q} && find {inside} -mindepth 1 -maxdepth 1 -printf '%f\\0'"
        proc = self._sh(script, check=False)
        if proc.returncode != 0:
            return None
        return sorted(n.decode(errors="surrogateescape") for n in proc.stdout.split(b"\0") if n)

    def remove(self, path: str) -> None:
        q = shlex.quote(path)
        self._sh(f"if [ -L {q} ] || [ -f {q} ]; then rm -f {q}; fi")

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
            install = (
                f"rm -rf {drop} && {venv_q}/bin/python -m pip install -q --upgrade --no-index "
                f"--no-deps {dir_q}/*.whl"
            )
        else:
            reqs = " ".join(shlex.quote(r) for r in info.venv_requirements())
            install = (
                f"{venv_q}/bin/python -m pip install -q --upgrade --no-index "
                f"--find-links {dir_q} {reqs}"
            )
        # The wheels are only a transfer medium: remove them once installed (SD cards are small).
        self._sh(f"{install} && rm -rf {dir_q}")

    def build_native(self, dest: str, info: PythonInfo) -> None:
        # Built on the Pi with its own gcc, from the sources the runtime step just copied.
        code = (
            "import shutil, sys, tempfile\nfrom edge import native\n"
            "with tempfile.TemporaryDirectory() as d:\n"
            "    shutil.copy(native.build(d), sys.argv[1])\n"
        )
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
