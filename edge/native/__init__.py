"""Bitpacked LCE ops for stock TFLite runtimes, as a small C library.

LCE flatbuffers contain four custom ops (LceQuantize, LceDequantize, LceBconv2d,
LceBMaxPool2d) that stock ``tflite-runtime`` and ``ai-edge-litert`` do not know.
This package's C library is an *external delegate*: both runtimes load it with
their public ``load_delegate(path)``; it claims every ``Lce*`` node and runs it
with LCE's exact semantics, while builtin ops stay with the runtime (and XNNPACK).

The library is normally built at ``pip install`` time (an optional setuptools
extension). :func:`library_path` finds it next to this file, in the installed
distribution when a checkout's ``edge/`` shadows it (running from the repository
root after ``pip install .``), or in the user cache. Where none exists (no compiler
at install time, or a source checkout), :func:`build` compiles it with the system C
compiler into the user cache, keyed by a hash of the sources; :func:`ensure_library`
does whichever is needed.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edge.errors import BackendError
from edge.host import cache_dir

__all__ = [
    "SOURCES",
    "build",
    "compiler",
    "delegate_options",
    "ensure_library",
    "kernel_peak",
    "library_path",
    "simd_path",
    "simd_paths_available",
]

PACKAGE_DIR = Path(__file__).resolve().parent
# The delegate (entry points, partitions, fusion planning, options, profiling), the op table
# and one file per op over their shared core, the GEMM kernels, the thread pool, the
# flexbuffer reader. pyproject.toml's ext-modules lists the same files.
SOURCES = (
    "delegate.c",
    "partition.c",
    "fusion.c",
    "options.c",
    "profile.c",
    "op_table.c",
    "op_core.c",
    "op_quantize.c",
    "op_dequantize.c",
    "op_bconv2d.c",
    "bconv_core.c",
    "op_bmaxpool.c",
    "op_concat.c",
    "float_ops.c",
    "bgemm.c",
    "threadpool.c",
    "flexbuf.c",
)
HEADERS = (
    "tflite_abi.h",
    "delegate.h",
    "lce_ops.h",
    "op_core.h",
    "bconv_core.h",
    "float_ops.h",
    "bgemm.h",
    "threadpool.h",
    "flexbuf.h",
)
# The name setuptools gives the extension built at install time (plus an ABI suffix).
INSTALLED_STEM = "_lce_delegate"
# -ffp-contract=off: no fused multiply-add in the output transform, so float
# outputs round exactly like LCE's x86 build (and identically on aarch64).
CFLAGS = (
    "-std=c11",
    "-O3",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-ffp-contract=off",
    "-pthread",
)
LIBS = ("-lm",)


# What to say when a library is needed and there is no compiler to build it.
NO_COMPILER = (
    "no C compiler to build it: install one (Debian, Ubuntu, Raspberry Pi OS: "
    "sudo apt install gcc) and run again"
)


def _cache_dir() -> Path:
    return cache_dir("native")


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS + ("__init__.py",):
        digest.update(name.encode())
        digest.update((PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def _default_cc() -> str:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or "cc"


def compiler() -> str | None:
    """The C compiler :func:`build` would use ($CC, then cc, gcc, clang), if one exists."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _target_triple(cc: str) -> str:
    try:
        out = subprocess.run([cc, "-dumpmachine"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BackendError(f"C compiler {cc!r} is not usable: {exc}") from exc
    return out.stdout.strip() or "unknown"


def _cached_library_name(triple: str) -> str:
    return f"libbinland_lce-{_source_hash()}-{triple}.so"


# ELF e_machine codes of the machines this library is built for.
_ELF_MACHINES = {"x86_64": 62, "amd64": 62, "aarch64": 183, "arm64": 183}


def _runs_here(library: Path) -> bool:
    """Whether a shared library is built for this machine (a Pi deploy may stage an aarch64
    build next to an x86 one)."""
    import platform

    expected = _ELF_MACHINES.get(platform.machine().lower())
    try:
        header = library.read_bytes()[:20]
    except OSError:
        return False
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return False
    return expected is None or int.from_bytes(header[18:20], "little") == expected


def _stale_in_checkout(library: Path) -> bool:
    """In a git checkout (editable install), a library older than the C sources is stale:
    someone edited them since. Installed packages never count as stale."""
    if not (PACKAGE_DIR.parents[1] / ".git").exists():
        return False
    newest = max((PACKAGE_DIR / name).stat().st_mtime for name in SOURCES + HEADERS)
    return library.stat().st_mtime < newest


def _record_hash(path: Path) -> str:
    """A file's hash as a wheel's RECORD writes it (urlsafe base64 SHA-256, no padding)."""
    digest = hashlib.sha256(path.read_bytes()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _same_file(record, path: Path) -> bool:
    """Whether an installed file (an importlib.metadata PackagePath) has ``path``'s bytes."""
    if record is None or record.hash is None or record.hash.mode != "sha256":
        return False
    return record.hash.value == _record_hash(path)


def _distribution_library() -> Path | None:
    """The library ``pip install`` built into the installed distribution, when it was built
    from the same C sources as this package.

    Running from a checkout's root after ``pip install .``, the checkout's ``edge/`` shadows
    the installed one, whose folder holds the library; the install's RECORD names it and
    gives the hashes of the sources it was built from.
    """
    from importlib import metadata

    for dist in metadata.distributions(name="binland"):
        try:
            files = {str(f): f for f in dist.files or ()}
        except OSError:
            continue
        built = [
            f
            for key, f in sorted(files.items())
            if key.startswith(f"edge/native/{INSTALLED_STEM}") and key.endswith(".so")
        ]
        if not built:
            continue
        if not all(
            _same_file(files.get(f"edge/native/{name}"), PACKAGE_DIR / name)
            for name in SOURCES + HEADERS
        ):
            continue  # built from other sources: another version, or edited since
        for f in built:
            path = Path(f.locate()).resolve()
            if path.is_file() and _runs_here(path):
                return path
    return None


def library_path() -> Path | None:
    """The built delegate library for this machine, or None if there is none yet.

    Prefers the one built at install time (next to this file, else in the installed
    distribution when this is a checkout that shadows it); otherwise a cached build of the
    current sources for the default compiler's target.
    """
    for installed in sorted(PACKAGE_DIR.glob(f"{INSTALLED_STEM}*.so")):
        if _runs_here(installed) and not _stale_in_checkout(installed):
            return installed
    installed = _distribution_library()
    if installed is not None:
        return installed
    cache = _cache_dir()
    if not cache.is_dir():
        return None
    for candidate in sorted(cache.glob(f"libbinland_lce-{_source_hash()}-*.so")):
        if _runs_here(candidate):
            return candidate
    return None


def build(output_dir: str | os.PathLike | None = None, cc: str | None = None) -> Path:
    """Compile the delegate with a C compiler and return the library's path.

    ``cc`` names the compiler (default: ``$CC``, then ``cc``); a cross compiler
    such as ``aarch64-linux-gnu-gcc`` builds for another machine. The file name
    carries the source hash and target triple, so a finished build is reused.
    """
    cc = cc or _default_cc()
    triple = _target_triple(cc)
    out_dir = Path(output_dir) if output_dir is not None else _cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / _cached_library_name(triple)
    if target.exists():
        return target
    sources = [str(PACKAGE_DIR / name) for name in SOURCES]
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_lib = Path(tmp) / target.name
        cmd = [cc, *CFLAGS, "-o", str(tmp_lib), *sources, *LIBS]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            raise BackendError(f"cannot run the C compiler {cc!r}: {exc}") from exc
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise BackendError(f"building the LCE delegate with {cc} failed:\n{tail}")
        os.replace(tmp_lib, target)
    if output_dir is None:  # builds of older sources in the cache are dead weight
        for old in out_dir.glob(f"libbinland_lce-*-{triple}.so"):
            if old != target:
                old.unlink(missing_ok=True)
    return target


def ensure_library(*, announce: bool = False) -> Path:
    """The delegate library, building it into the user cache if needed.

    ``announce`` prints one line on stderr before a build. Without a C compiler it raises
    BackendError ending in :data:`NO_COMPILER`, which says what to install.
    """
    found = library_path()
    if found is not None:
        return found
    cc = compiler()
    if cc is None:
        raise BackendError(f"the binland native library is not built, and there is {NO_COMPILER}")
    if announce:
        print(
            f"binland: building the native library for bitpacked models with {cc} into "
            f"{_cache_dir()} (once)",
            file=sys.stderr,
            flush=True,
        )
    try:
        return build(cc=cc)
    except OSError as exc:  # a cache folder that cannot be written
        raise BackendError(f"cannot build the native library into {_cache_dir()}: {exc}") from None


def _load(library: str | os.PathLike | None) -> ctypes.CDLL:
    path = Path(library) if library is not None else ensure_library()
    lib = ctypes.CDLL(str(path))
    for name in ("binland_simd_path", "binland_simd_available"):
        getattr(lib, name).restype = ctypes.c_char_p
        getattr(lib, name).argtypes = []
    return lib


def simd_path(library: str | os.PathLike | None = None) -> str:
    """Which binary-GEMM kernel this CPU uses: 'avx512-vpopcntdq', 'avx2', 'neon',
    'popcnt' or 'portable' (``BINLAND_SIMD`` in the environment can force a slower one)."""
    return _load(library).binland_simd_path().decode()


def simd_paths_available(library: str | os.PathLike | None = None) -> list[str]:
    """All kernel paths this CPU can run, fastest first."""
    return _load(library).binland_simd_available().decode().split(",")


def kernel_peak(simd: str | None = None, seconds: float = 0.3, library=None) -> float:
    """Binary MACs per second one core reaches in the GEMM micro-kernel (cache-resident data).

    ``simd`` picks the kernel path (default: the fastest); -1 if this CPU lacks it. The
    benchmark uses it as the practical arithmetic limit of this CPU."""
    lib = _load(library)
    lib.binland_kernel_peak.restype = ctypes.c_double
    lib.binland_kernel_peak.argtypes = [ctypes.c_char_p, ctypes.c_double]
    return float(lib.binland_kernel_peak((simd or "").encode(), seconds))


def delegate_options(*, num_threads: int | None = None, simd: str | None = None) -> dict[str, str]:
    """Options for ``load_delegate(library, options)``.

    ``num_threads`` overrides the interpreter's thread count for the binary ops;
    ``simd`` picks a kernel path by name (for comparisons and tests).
    """
    options: dict[str, str] = {}
    if num_threads is not None:
        options["num_threads"] = str(int(num_threads))
    if simd is not None:
        options["simd"] = simd
    return options
