"""Where results go: an annotated video, a JSONL log, an MJPEG stream, a desktop window.

**Recordings survive.** A recording never replaces an earlier one: when ``OUT`` exists (a
restart of the service, a second run by hand), the run writes ``OUT``'s next free number
instead (``demo.mp4`` -> ``demo.0001.mp4``). The video is written in segments, each a
complete, indexed file (``segment_frames`` frames: ``--segment`` seconds), so a SIGKILL or a
power cut loses only the segment being written; SIGINT, SIGTERM and SIGHUP finish it. Every
JSONL record is one ``write`` of a whole line: a kill loses at most the record being written.
A write that fails (a full disk, a file size limit) raises :class:`OutputError` naming what
was saved, and leaves the JSONL ending on a whole record. :class:`DiskBudget` keeps a folder's
recordings under ``--keep-mb`` by deleting the oldest.
"""

from __future__ import annotations

import errno
import html
import json
import math
import os
import re
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

try:
    import resource  # POSIX: the file size limit, to name it when a write fails
except ImportError:  # Windows
    resource = None

from .access import STREAM_USER, authorized, check_token, host_allowed, is_loopback
from .errors import EdgeError, OutputError


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")


# --- numbered recordings and the disk budget ------------------------------------------------------


def numbered_path(path: str | Path, number: int) -> Path:
    """``OUT`` itself for 0, else ``OUT``'s stem, the number in 4 digits, ``OUT``'s suffix:
    ``demo.mp4`` -> ``demo.0001.mp4``, so that ``ls`` lists them in order."""
    path = Path(path)
    return path if number == 0 else path.with_name(f"{path.stem}.{number:04d}{path.suffix}")


def recordings(path: str | Path) -> list[tuple[int, Path]]:
    """The files of ``OUT``'s series on disk, oldest first: ``OUT`` (number 0) and every
    ``OUT``-stem.N.suffix, as (number, path). Regular files only."""
    path = Path(path)
    pattern = re.compile(rf"{re.escape(path.stem)}(?:\.(\d+))?{re.escape(path.suffix)}")
    found = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and entry.is_file(follow_symlinks=False):
            found.append((int(m.group(1) or 0), Path(entry.path)))
    return sorted(found)


def claim_next(path: str | Path) -> tuple[Path, int]:
    """Create the next free file of ``OUT``'s series (``OUT`` itself when the series is empty)
    and return it with an open, write-only descriptor. O_EXCL: never an existing file, even
    when two runs start at once."""
    path = Path(path)
    _check_parent(path)
    existing = recordings(path)
    number = existing[-1][0] + 1 if existing else 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        candidate = numbered_path(path, number)
        try:
            return candidate, os.open(candidate, flags, 0o644)
        except FileExistsError:
            number += 1  # another run took it, or a non-numbered file has the name
        except OSError as exc:
            raise OutputError(f"cannot write {candidate}: {exc.strerror}") from None


class DiskBudget:
    """Keeps the recordings of one or more series (``--output``, ``--jsonl``) under
    ``max_bytes`` by deleting the oldest files, never one being written. Checked whenever a
    file starts, so the series may go over by what the files being written hold."""

    def __init__(
        self, paths: list[Path], max_bytes: int, *, say: Callable[[str], None] | None = None
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.max_bytes = int(max_bytes)
        self.say = say or (lambda _msg: None)
        self._open: set[Path] = set()  # resolved: the series' names may be relative
        self.deleted: list[Path] = []

    def opened(self, path: Path) -> None:
        """``path`` is being written: never delete it; then make room."""
        self._open.add(path.resolve())
        self.enforce()

    def closed(self, path: Path) -> None:
        self._open.discard(path.resolve())

    def enforce(self) -> None:
        files = []
        for series in self.paths:
            for _, path in recordings(series):
                try:
                    info = path.stat()
                except OSError:
                    continue  # deleted meanwhile
                files.append((info.st_mtime, str(path), info.st_size))
        total = sum(size for *_, size in files)
        for _, name, size in sorted(files):  # oldest first
            if total <= self.max_bytes:
                break
            path = Path(name)
            if path.resolve() in self._open:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise OutputError(f"--keep-mb cannot delete {path}: {exc.strerror}") from None
            total -= size
            self.deleted.append(path)
            self.say(f"removed {path.name} ({size / 1e6:.1f} MB) to stay under --keep-mb")


def _write_failure(path: Path, exc: OSError | None = None) -> str:
    """Why writing ``path`` failed, in words: the OS error, else a full disk or the process's
    file size limit (RLIMIT_FSIZE) when those explain it."""
    if exc is not None and exc.strerror:
        reason = exc.strerror
        if exc.errno == errno.EFBIG:
            reason += _file_size_limit()
        return reason
    try:
        info = os.statvfs(path.parent)
        if info.f_bavail * info.f_frsize < (1 << 20):
            return os.strerror(errno.ENOSPC)
    except OSError:
        pass
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    limit = _size_limit()
    if limit is not None and size >= limit - (1 << 16):  # within one write of the limit
        return os.strerror(errno.EFBIG) + _file_size_limit()
    return "the video writer failed"


def _size_limit() -> int | None:
    if resource is None:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else int(limit)


def _file_size_limit() -> str:
    limit = _size_limit()
    return "" if limit is None else f" (this process may write {limit} bytes a file)"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class VideoOutput:
    """Annotated frames to video files (MPEG-4 Part 2, ``mp4v``, which every OpenCV build can
    write), in segments of ``segment_frames`` frames (None: one file).

    Each segment is a file of its own, finished (its index written) and read back when it is
    full, so a process killed at any moment leaves every earlier segment playable. The first
    segment goes to ``path`` when no file of its series exists, later ones to the next free
    numbers (:func:`claim_next`). The writer opens on the first frame, whose size fixes the
    video's size. OpenCV's writer reports no write errors, so a segment that does not read
    back with every frame raises :class:`OutputError` (a full disk, a file size limit).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float = 30.0,
        fourcc: str = "mp4v",
        segment_frames: int | None = None,
        budget: DiskBudget | None = None,
    ) -> None:
        self.path = Path(path)
        _check_parent(self.path)
        if self.path.exists() and not self.path.is_file():
            raise OutputError(f"cannot write video {self.path}: not a regular file")
        self.fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 30.0
        self.fourcc = fourcc
        if segment_frames is not None and segment_frames < 1:
            raise OutputError("a video segment needs at least 1 frame")
        self.segment_frames = segment_frames
        self.budget = budget
        self.frames_written = 0  # into finished, checked files
        self.saved: list[tuple[Path, int]] = []  # (file, frames): read back complete
        self.current: Path | None = None  # the file being written
        self._in_segment = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        # The first file's name is taken now: errors come before the run, and the run can say
        # where its video goes. Removed again if no frame comes.
        self.first, fd = claim_next(self.path)
        os.close(fd)
        self._claimed: Path | None = self.first

    def _open_segment(self, size: tuple[int, int]) -> None:
        if self._claimed is not None:
            path, self._claimed = self._claimed, None
        else:
            path, fd = claim_next(self.path)
            os.close(fd)
        # OpenCV opens the file by name and truncates the empty file it finds.
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size)
        if not writer.isOpened():
            path.unlink(missing_ok=True)
            raise OutputError(f"cannot write video {path} (codec {self.fourcc!r})")
        self._writer, self.current, self._in_segment = writer, path, 0
        if self.budget is not None:
            self.budget.opened(path)

    def _close_segment(self) -> None:
        writer, path, frames = self._writer, self.current, self._in_segment
        if writer is None or path is None:
            return
        self._writer = self.current = None
        writer.release()
        if self.budget is not None:
            self.budget.closed(path)
        if not _reads_back(path, frames):
            raise OutputError(
                f"cannot write video {path}: {_write_failure(path)}; it is incomplete"
            )
        self.saved.append((path, frames))
        self.frames_written += frames

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._size is None:
            self._size = (w, h)
        if self._writer is None:
            self._open_segment(self._size)
        if (w, h) != self._size:  # a source may change size (a folder of photos)
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self._in_segment += 1
        if self.segment_frames is not None and self._in_segment >= self.segment_frames:
            self._close_segment()

    def describe(self) -> str:
        """What is saved, for a message: 'demo.mp4 (150 frames)', several files, or ''."""
        if not self.saved:
            return ""
        if len(self.saved) == 1:
            path, frames = self.saved[0]
            return f"{path.name} ({_plural(frames, 'frame')})"
        return (
            f"{self.saved[0][0].name} to {self.saved[-1][0].name} "
            f"({len(self.saved)} files, {_plural(self.frames_written, 'frame')})"
        )

    def close(self) -> None:
        if self._claimed is not None:  # not a single frame came
            self._claimed.unlink(missing_ok=True)
            self._claimed = None
        self._close_segment()


def _reads_back(path: Path, frames: int) -> bool:
    """Whether OpenCV opens ``path`` and its index counts ``frames`` frames (containers that
    estimate the count from the duration may be one off). A file whose end never reached the
    disk has no index: mp4 then does not open at all."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return False
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if count > 0:
            return abs(count - frames) <= 1
        return frames == 0 or cap.read()[0]
    finally:
        cap.release()


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def landmark_list(
    names: tuple[str, ...] | list[str] | None, points: np.ndarray | None, scores: np.ndarray | None
) -> list[dict]:
    """Landmarks as ``{"name", "x", "y", "score"}`` in image pixels; a hidden landmark has
    ``x`` and ``y`` null. No points: []."""
    landmarks = []
    if points is not None:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        s = np.asarray(scores, dtype=np.float64).reshape(len(p))
        for i in range(len(p)):
            landmarks.append(
                {
                    "name": names[i] if names is not None else str(i),
                    "x": _finite_or_none(p[i, 0]),
                    "y": _finite_or_none(p[i, 1]),
                    "score": _finite_or_none(s[i]),
                }
            )
    return landmarks


def landmark_record(
    frame_index: int,
    timestamp: float,
    *,
    names: tuple[str, ...] | list[str] | None = None,
    points: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    box=None,
    tracking: bool = False,
    **extra,
) -> dict:
    """One JSONL record of one subject (:func:`landmark_list`). No subject in the frame:
    ``landmarks`` is []."""
    record = {
        "frame": int(frame_index),
        "timestamp": float(timestamp),
        "box": box.to_dict() if box is not None else None,
        "tracking": bool(tracking),
        "landmarks": landmark_list(names, points, scores),
    }
    record.update(extra)
    return record


def people_record(
    frame_index: int,
    timestamp: float,
    people,
    *,
    names: tuple[str, ...] | list[str] | None = None,
    **extra,
) -> dict:
    """One JSONL record of several tracked subjects (``--max-people``/``--max-faces`` above
    1): ``people`` is a list, by ID, of ``{"id", "box", "score", "tracking", "landmarks"}``
    (``score``: the mean landmark score; ``box``: the crop; ``landmarks`` as
    :func:`landmark_list`). ``people`` items need ``id``, ``box``, ``points``, ``scores`` and
    ``tracking`` attributes. Nobody in the frame: ``people`` is []."""
    listed = []
    for person in people:
        scores = np.asarray(person.scores, np.float64)
        listed.append(
            {
                "id": int(person.id),
                "box": person.box.to_dict() if person.box is not None else None,
                "score": _finite_or_none(float(scores.mean())) if scores.size else None,
                "tracking": bool(person.tracking),
                "landmarks": landmark_list(names, person.points, person.scores),
            }
        )
    record = {"frame": int(frame_index), "timestamp": float(timestamp), "people": listed}
    record.update(extra)
    return record


class JsonlOutput:
    """One JSON object per line, each written by one unbuffered ``write``.

    A new file of ``path``'s series (never an existing file: :func:`claim_next`); with
    ``segment_records``, a new one every that many records, so that a :class:`DiskBudget` can
    delete old ones. A path that exists and is no regular file (a FIFO a reader waits on,
    /dev/null) is written as it is. A failed write raises :class:`OutputError` and cuts the
    file back to its last whole record."""

    def __init__(
        self,
        path: str | Path,
        *,
        segment_records: int | None = None,
        budget: DiskBudget | None = None,
    ) -> None:
        self.path = Path(path)
        _check_parent(self.path)
        self.segment_records = segment_records
        self.budget = budget
        self.records_written = 0
        self.saved: list[tuple[Path, int]] = []  # (file, records), the current one last
        self._fd: int | None = None
        self._regular = True
        self._size = 0  # bytes of whole records in the current file
        try:
            special = self.path.exists() and not stat.S_ISREG(self.path.stat().st_mode)
        except OSError:
            special = False
        if special:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
            self._regular = False
            self._start(self.path, fd)
        else:
            self._start(*claim_next(self.path))

    @property
    def current(self) -> Path | None:
        return self.saved[-1][0] if self._fd is not None else None

    def _start(self, path: Path, fd: int) -> None:
        self._fd, self._size = fd, 0
        self.saved.append((path, 0))
        if self.budget is not None and self._regular:
            self.budget.opened(path)

    def _finish(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self.budget is not None:
            self.budget.closed(self.saved[-1][0])
        try:
            os.close(fd)
        except OSError as exc:
            raise OutputError(f"cannot write {self.saved[-1][0]}: {exc.strerror}") from None

    def write(self, record: dict) -> None:
        assert self._fd is not None, "write after close"
        path, count = self.saved[-1]
        if self.segment_records is not None and count >= self.segment_records and self._regular:
            self._finish()
            self._start(*claim_next(self.path))
            path, count = self.saved[-1]
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            if written and self._regular:
                try:  # no half record at the end, and the next write where it belongs
                    os.ftruncate(self._fd, self._size)
                    os.lseek(self._fd, self._size, os.SEEK_SET)
                except OSError:
                    pass
            raise OutputError(f"cannot write {path}: {_write_failure(path, exc)}") from None
        self._size += len(data)
        self.saved[-1] = (path, count + 1)
        self.records_written += 1

    def describe(self) -> str:
        """What is saved, for a message: 'demo.jsonl (150 records)', several files, or ''."""
        kept = [(p, n) for p, n in self.saved if n]
        if not kept:
            return ""
        if len(kept) == 1:
            return f"{kept[0][0].name} ({_plural(kept[0][1], 'record')})"
        return (
            f"{kept[0][0].name} to {kept[-1][0].name} "
            f"({len(kept)} files, {_plural(self.records_written, 'record')})"
        )

    def close(self) -> None:
        self._finish()


def display_available() -> bool:
    """A window can open only with a display server (X11 or XWayland sets $DISPLAY)."""
    return bool(os.environ.get("DISPLAY"))


class Display:
    """An OpenCV window. ``show`` returns False once the user presses q or Esc."""

    def __init__(self, title: str = "edge.live") -> None:
        self.title = title
        self._ok = True

    def show(self, image: np.ndarray) -> bool:
        if not self._ok:
            return True
        try:
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error:
            # opencv-python-headless has no GUI backend; carry on without a window.
            print(
                "warning: this OpenCV build cannot open windows; use --no-display", file=sys.stderr
            )
            self._ok = False
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self._ok:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


def parse_host_port(spec: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``"8080"`` -> (default_host, 8080); ``"0.0.0.0:8080"`` -> ("0.0.0.0", 8080);
    ``"[::1]:8080"`` -> ("::1", 8080)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = default_host, spec
    if host.startswith("[") != host.endswith("]"):
        raise OutputError(f"--serve expects HOST:PORT, [IPv6]:PORT or PORT, got {spec!r}")
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise OutputError(f"--serve expects HOST:PORT, [IPv6]:PORT or PORT, got {spec!r}") from None
    if not 0 <= number <= 65535:
        raise OutputError(f"port {number} is out of range 0-65535")
    return host, number


# --- the MJPEG server ----------------------------------------------------------------------------

DEFAULT_MAX_CLIENTS = 4
# How long close() waits for the requests it ended: a JPEG being encoded finishes well within
# it, even on an emulated Pi.
CLOSE_WAIT_SECONDS = 5.0


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ margin: 0; background: #111; color: #ddd; font: 14px system-ui, sans-serif; }}
 header {{ padding: 8px 12px; }} img {{ display: block; max-width: 100%; margin: 0 auto; }}
</style></head>
<body><header>{title}: live landmarks (<a href="/frame.jpg{query}" style="color:#8cf">snapshot</a>)</header>
<img src="/stream.mjpg{query}" alt="live landmark overlay"></body></html>
"""

_UNAUTHORIZED = (
    "401: this stream needs its token. Open /?token=TOKEN, or sign in with user "
    f"{STREAM_USER} and the token as password.\n"
).encode()


_MISDIRECTED = (
    b"403: this stream answers only requests to localhost, 127.0.0.1 or [::1] (or the names "
    b"given with --allow-host), which keeps other web sites out of it.\n"
)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A viewer that goes away mid-write is normal. Anything else: one line, never a
        # traceback or the request line (which may hold the token), into the service's log.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            print(f"warning: a stream request failed ({type(exc).__name__})", file=sys.stderr)


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class MjpegServer:
    """Serves the overlay as an MJPEG stream (``multipart/x-mixed-replace``) on a thread.

    ``/`` is a small HTML page showing the stream, ``/stream.mjpg`` the stream itself and
    ``/frame.jpg`` the latest frame. Each published frame is JPEG-encoded once, by the first
    client that asks for it, so publishing costs nothing when nobody is watching.

    **Access.** With a ``token``, every request must carry it, whatever the path or the
    client's address: as ``?token=`` in the URL (the page then passes it on to the stream and
    snapshot), as HTTP basic auth (any user name, the token as password) or as
    ``Authorization: Bearer``. Anything else gets 401 and no image bytes. Tokens are compared in
    constant time. Without a token the server binds to loopback addresses only. Bound to
    loopback, it answers only requests whose ``Host`` is an IP address, ``localhost`` or one of
    ``allowed_hosts``; others get 403: a web page that re-points its own name at 127.0.0.1 (DNS
    rebinding) would otherwise read the camera. IPv6 addresses work as well (``"::1"``).

    **Viewers.** At most ``max_clients`` streams at once; the next one gets 503. Publishing
    never waits for a viewer: the server keeps only the latest frame, and each viewer takes the
    newest one whenever it is ready for another, so a viewer that stops reading only misses
    frames. One that does not take a write for ``send_timeout`` seconds is disconnected, which
    frees its place.
    """

    boundary = "frame"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        title: str = "edge.live",
        quality: int = 80,
        token: str | None = None,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        send_timeout: float = 20.0,
        allowed_hosts: tuple[str, ...] | list[str] = (),
    ) -> None:
        if max_clients < 1:
            raise EdgeError("the stream needs room for at least 1 client")
        self.title = title
        self.quality = int(quality)
        self.max_clients = int(max_clients)
        self.send_timeout = float(send_timeout)
        self._token = check_token(token, "the caller").encode() if token is not None else None
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._serial = 0
        self._jpeg: bytes | None = None
        self._jpeg_serial = -1
        self._stopping = False
        self._clients = 0
        # Every request being answered: its thread and socket, so close() can end them. A
        # daemon thread still in OpenCV when Python exits aborts the process ("terminate
        # called without an active exception": the JPEG encoder's frame cannot be unwound).
        self._requests: dict[threading.Thread, socket.socket] = {}
        self.allowed_hosts = tuple(allowed_hosts)
        shown = f"[{host}]" if ":" in host else host
        try:
            families = {
                info[0]
                for info in socket.getaddrinfo(
                    host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
            }
        except OSError:
            raise EdgeError(f"cannot serve on {shown}:{port}: unknown host {host!r}") from None
        # IPv4 where the name has an IPv4 address ("localhost" stays 127.0.0.1, as before).
        ipv6 = socket.AF_INET not in families and socket.AF_INET6 in families
        server_class = _HttpServer6 if ipv6 else _HttpServer
        try:
            self._httpd = server_class((host, port), self._handler_class())
        except OSError as exc:
            reason = "port is busy" if exc.errno in (98, 48, 10048) else exc.strerror
            raise EdgeError(f"cannot serve on {shown}:{port}: {reason}") from None
        self.host, self.port = self._httpd.server_address[:2]
        # Bound to loopback, the stream may be open, and then only the Host check keeps web
        # pages that rebind their name to 127.0.0.1 out (see edge.access.host_allowed).
        self.checks_host = is_loopback(self.host)
        if self._token is None and not self.checks_host:
            self._httpd.server_close()
            raise EdgeError(
                f"{shown}:{self.port} is reachable from other machines: the stream needs a token"
            )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mjpeg", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The address the server listens on (never with the token)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def protected(self) -> bool:
        return self._token is not None

    @property
    def clients(self) -> int:
        """Streams being served now."""
        with self._cond:
            return self._clients

    def publish(self, image: np.ndarray) -> None:
        """Offer a new BGR frame. The array must not be modified afterwards."""
        with self._cond:
            self._image = image
            self._serial += 1
            self._cond.notify_all()

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """Block until a frame newer than serial ``after`` exists; (serial, jpeg)."""
        with self._cond:
            self._cond.wait_for(lambda: self._serial > after or self._stopping, timeout)
            if self._stopping or self._serial <= after or self._image is None:
                return after, None
            serial, image = self._serial, self._image
            if self._jpeg_serial == serial:
                return serial, self._jpeg
        # Encode outside the lock, so publish() never waits for a viewer. Two viewers may
        # race to encode the same frame; both results are equal.
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        jpeg = buf.tobytes() if ok else None
        with self._cond:
            if serial > self._jpeg_serial:
                self._jpeg, self._jpeg_serial = jpeg, serial
        return serial, jpeg

    def _take_client(self) -> bool:
        with self._cond:
            if self._clients >= self.max_clients:
                return False
            self._clients += 1
            return True

    def _drop_client(self) -> None:
        with self._cond:
            self._clients -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Socket timeout: a client that sends no request, or takes no bytes, for this long
            # is disconnected.
            timeout = server.send_timeout
            server_version = "binland"
            sys_version = ""

            def setup(self) -> None:
                super().setup()
                with server._cond:
                    server._requests[threading.current_thread()] = self.connection

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with server._cond:
                        server._requests.pop(threading.current_thread(), None)

            def log_message(self, format, *args):  # noqa: A002 - keep the console for results
                pass  # and never log a request line: it may hold the token

            def __getattr__(self, name: str):
                # http.server answers a method without a do_* handler with 501 before any check;
                # here every method is checked for credentials first.
                if name.startswith("do_"):
                    return self._other_method
                raise AttributeError(name)

            def _allowed(self) -> bool:
                if server.checks_host and not host_allowed(
                    self.headers.get("Host"), server.allowed_hosts
                ):
                    self._send(HTTPStatus.FORBIDDEN, "text/plain; charset=utf-8", _MISDIRECTED)
                    return False
                if authorized(server._token, self.path, self.headers.get("Authorization")):
                    return True
                self._send(
                    HTTPStatus.UNAUTHORIZED,
                    "text/plain; charset=utf-8",
                    _UNAUTHORIZED,
                    {"WWW-Authenticate": 'Basic realm="binland stream", charset="UTF-8"'},
                )
                return False

            def _other_method(self) -> None:
                if self._allowed():
                    self._send(
                        HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"only GET\n", {"Allow": "GET"}
                    )

            def do_GET(self):  # noqa: N802 - name fixed by http.server
                if not self._allowed():
                    return
                url = urlsplit(self.path)
                path = url.path
                if path in ("/", "/index.html"):
                    # Signed in with ?token=: the page's own requests carry it on.
                    query = ""
                    if server._token is not None and "token" in parse_qs(url.query):
                        query = "?token=" + quote(server._token.decode(), safe="")
                    body = _PAGE.format(
                        title=html.escape(server.title), query=html.escape(query)
                    ).encode()
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", body)
                elif path == "/frame.jpg":
                    serial, jpeg = server.next_jpeg(0, timeout=2.0)
                    if jpeg is None:
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                    else:
                        self._send(HTTPStatus.OK, "image/jpeg", jpeg)
                elif path == "/stream.mjpg":
                    if not server._take_client():
                        body = f"503: {server.max_clients} viewers already; try again later\n"
                        self._send(
                            HTTPStatus.SERVICE_UNAVAILABLE,
                            "text/plain",
                            body.encode(),
                            {"Retry-After": "10"},
                        )
                        return
                    try:
                        self._stream()
                    finally:
                        server._drop_client()
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

            def _send(self, status, ctype: str, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Referrer-Policy", "no-referrer")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client went away

            def _stream(self) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={server.boundary}"
                )
                self.send_header("Cache-Control", "no-store")
                self.send_header("Referrer-Policy", "no-referrer")
                serial = 0
                try:
                    self.end_headers()
                    while not server._stopping:
                        # The newest frame, whatever was published while the last one was
                        # being sent: a slow viewer skips frames, the camera never waits.
                        serial, jpeg = server.next_jpeg(serial)
                        if jpeg is None:
                            continue
                        self.wfile.write(
                            f"--{server.boundary}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                except OSError:
                    pass  # the viewer went away, or took nothing for send_timeout seconds

        return Handler

    def close(self) -> None:
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2.0)
        # End the requests still being answered and wait for their threads (a viewer blocked
        # on a write or a request line wakes with an error), so none is inside OpenCV when
        # the process exits.
        with self._cond:
            requests = list(self._requests.items())
        for _, connection in requests:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its viewer
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        for thread, _ in requests:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
