"""Where results go: an annotated video, a JSONL log, an MJPEG stream, a desktop window.

Every writer flushes as it goes and has an idempotent ``close()``, so a run stopped with
Ctrl-C (SIGINT) leaves complete files: every JSONL line is a whole record and the video
container is finalised.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from .errors import EdgeError


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise EdgeError(f"cannot write {path}: folder {path.parent} does not exist")


class VideoOutput:
    """Annotated frames to a video file (MPEG-4 Part 2, ``mp4v``, which every OpenCV build
    can write). The writer opens on the first frame, whose size fixes the video's size."""

    def __init__(self, path: str | Path, *, fps: float = 30.0, fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        _check_parent(self.path)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.fourcc = fourcc
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc),
                                           self.fps, (w, h))  # fmt: skip
            if not self._writer.isOpened():
                self._writer = None
                raise EdgeError(f"cannot write video {self.path} (codec {self.fourcc!r})")
            self._size = (w, h)
        if (w, h) != self._size:  # a source may change size (a folder of photos)
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


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
    """One JSONL record. Landmarks are ``{"name", "x", "y", "score"}`` in image pixels;
    a hidden landmark has ``x`` and ``y`` null. No subject in the frame: ``landmarks`` is []."""
    landmarks = []
    if points is not None:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        s = np.asarray(scores, dtype=np.float64).reshape(len(p))
        for i in range(len(p)):
            landmarks.append({
                "name": names[i] if names is not None else str(i),
                "x": _finite_or_none(p[i, 0]),
                "y": _finite_or_none(p[i, 1]),
                "score": _finite_or_none(s[i]),
            })  # fmt: skip
    record = {
        "frame": int(frame_index),
        "timestamp": float(timestamp),
        "box": box.to_dict() if box is not None else None,
        "tracking": bool(tracking),
        "landmarks": landmarks,
    }
    record.update(extra)
    return record


class JsonlOutput:
    """One JSON object per line, flushed after every record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _check_parent(self.path)
        try:
            self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise EdgeError(f"cannot write {self.path}: {exc.strerror}") from None
        self.records_written = 0

    def write(self, record: dict) -> None:
        assert self._file is not None, "write after close"
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self.records_written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


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
            print("warning: this OpenCV build cannot open windows; use --no-display",
                  file=sys.stderr)  # fmt: skip
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
    """``"8080"`` -> (default_host, 8080); ``"0.0.0.0:8080"`` -> ("0.0.0.0", 8080)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = default_host, spec
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise EdgeError(f"--serve expects HOST:PORT or PORT, got {spec!r}") from None
    if not 0 <= number <= 65535:
        raise EdgeError(f"port {number} is out of range 0-65535")
    return host, number


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ margin: 0; background: #111; color: #ddd; font: 14px system-ui, sans-serif; }}
 header {{ padding: 8px 12px; }} img {{ display: block; max-width: 100%; margin: 0 auto; }}
</style></head>
<body><header>{title}: live landmarks (<a href="/frame.jpg" style="color:#8cf">snapshot</a>)</header>
<img src="/stream.mjpg" alt="live landmark overlay"></body></html>
"""


class MjpegServer:
    """Serves the overlay as an MJPEG stream (``multipart/x-mixed-replace``) on a thread.

    ``/`` is a small HTML page showing the stream, ``/stream.mjpg`` the stream itself and
    ``/frame.jpg`` the latest frame. Each published frame is JPEG-encoded once, by the first
    client that asks for it, so publishing costs nothing when nobody is watching.
    """

    boundary = "frame"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        title: str = "edge.live",
        quality: int = 80,
    ) -> None:
        self.title = title
        self.quality = int(quality)
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._serial = 0
        self._jpeg: bytes | None = None
        self._jpeg_serial = -1
        self._stopping = False
        try:
            self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        except OSError as exc:
            reason = "port is busy" if exc.errno in (98, 48, 10048) else exc.strerror
            raise EdgeError(f"cannot serve on {host}:{port}: {reason}") from None
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mjpeg",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

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
            if self._serial <= after or self._image is None:
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

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - keep the console for results
                pass

            def do_GET(self):  # noqa: N802 - name fixed by http.server
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    body = _PAGE.format(title=server.title).encode()
                    self._send(HTTPStatus.OK, "text/html; charset=utf-8", body)
                elif path == "/frame.jpg":
                    serial, jpeg = server.next_jpeg(0, timeout=2.0)
                    if jpeg is None:
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                    else:
                        self._send(HTTPStatus.OK, "image/jpeg", jpeg)
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

            def _send(self, status, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={server.boundary}"
                )
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                serial = 0
                try:
                    while not server._stopping:
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
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer went away

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
