"""Where results go: an annotated video, a JSONL log, an MJPEG stream, a desktop window.

Every writer flushes as it goes and has an idempotent ``close()``, so a run stopped with
Ctrl-C (SIGINT) leaves complete files: every JSONL line is a whole record and the video
container is finalised.
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, quote, urlsplit

import cv2
import numpy as np

from .access import STREAM_USER, authorized, check_token, is_loopback
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


# --- the MJPEG server ----------------------------------------------------------------------------

DEFAULT_MAX_CLIENTS = 4


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


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A viewer that goes away mid-write is normal. Anything else: one line, never a
        # traceback or the request line (which may hold the token), into the service's log.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            print(f"warning: a stream request failed ({type(exc).__name__})", file=sys.stderr)


class MjpegServer:
    """Serves the overlay as an MJPEG stream (``multipart/x-mixed-replace``) on a thread.

    ``/`` is a small HTML page showing the stream, ``/stream.mjpg`` the stream itself and
    ``/frame.jpg`` the latest frame. Each published frame is JPEG-encoded once, by the first
    client that asks for it, so publishing costs nothing when nobody is watching.

    **Access.** With a ``token``, every request must carry it, whatever the path or the
    client's address: as ``?token=`` in the URL (the page then passes it on to the stream and
    snapshot), as HTTP basic auth (any user name, the token as password) or as
    ``Authorization: Bearer``. Anything else gets 401 and no image bytes. Tokens are compared in
    constant time. Without a token the server binds to loopback addresses only.

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
        try:
            self._httpd = _HttpServer((host, port), self._handler_class())
        except OSError as exc:
            reason = "port is busy" if exc.errno in (98, 48, 10048) else exc.strerror
            raise EdgeError(f"cannot serve on {host}:{port}: {reason}") from None
        self.host, self.port = self._httpd.server_address[:2]
        if self._token is None and not is_loopback(self.host):
            self._httpd.server_close()
            raise EdgeError(
                f"{host}:{self.port} is reachable from other machines: the stream needs a token"
            )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mjpeg",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    @property
    def url(self) -> str:
        """The address the server listens on (never with the token)."""
        return f"http://{self.host}:{self.port}/"

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

            def log_message(self, format, *args):  # noqa: A002 - keep the console for results
                pass  # and never log a request line: it may hold the token

            def __getattr__(self, name: str):
                # http.server answers a method without a do_* handler with 501 before any check;
                # here every method is checked for credentials first.
                if name.startswith("do_"):
                    return self._other_method
                raise AttributeError(name)

            def _allowed(self) -> bool:
                if authorized(server._token, self.path, self.headers.get("Authorization")):
                    return True
                self._send(HTTPStatus.UNAUTHORIZED, "text/plain; charset=utf-8", _UNAUTHORIZED,
                           {"WWW-Authenticate": 'Basic realm="binland stream", charset="UTF-8"'})  # fmt: skip
                return False

            def _other_method(self) -> None:
                if self._allowed():
                    self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"only GET\n",
                               {"Allow": "GET"})  # fmt: skip

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
                    body = _PAGE.format(title=html.escape(server.title),
                                        query=html.escape(query)).encode()  # fmt: skip
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
                        self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", body.encode(),
                                   {"Retry-After": "10"})  # fmt: skip
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
