"""Who may watch the MJPEG stream, and how many at once: real servers, real HTTP clients.

``edge.live --serve 0.0.0.0:PORT`` needs the token on every path, from every client address,
127.0.0.1 included; the token never shows in ``ps``, stdout, stderr or the JSONL. At most
``--max-clients`` streams (4) at once. A viewer that stops reading costs the camera loop no
frame: runs with and without one process the same frames.
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import ipaddress
import json
import os
import pty
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote

import cv2
import numpy as np
import pytest
from tiny_models import tiny_landmark_tflite

from edge.access import TOKEN_ENV, authorized, check_token, read_token
from edge.errors import EdgeError
from edge.outputs import MjpegServer

REPO = Path(__file__).resolve().parents[1]
TOKEN = secrets.token_urlsafe(18)  # a fresh one per test session
JPEG_START = b"\xff\xd8\xff"


@pytest.fixture(scope="session")
def pose_model(tmp_path_factory) -> Path:
    return tiny_landmark_tflite(tmp_path_factory.getbasetemp() / "models", "mpii16")


def basic(password: str, user: str = "binland") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def request(
    port: int,
    path: str,
    headers: dict | None = None,
    *,
    host: str = "127.0.0.1",
    method: str = "GET",
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """One request; the body is read whole unless it is a stream (then only the status)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    if resp.getheader("Content-Type", "").startswith("multipart/"):
        return resp.status, resp, b""
    body = resp.read()
    conn.close()
    return resp.status, resp, body


def read_part(stream) -> bytes:
    """One JPEG of a multipart/x-mixed-replace body."""
    line = stream.readline()
    while line in (b"\r\n", b"\n"):
        line = stream.readline()
    if not line:
        raise EOFError("the stream ended")
    assert line.strip() == b"--frame", line
    length = None
    while (line := stream.readline().strip()) != b"":
        key, _, value = line.decode().partition(":")
        if key.lower() == "content-length":
            length = int(value)
    assert length is not None
    return stream.read(length)


def own_address() -> str | None:
    """This machine's non-loopback IPv4 address, if it has a route anywhere (no packet sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
        except OSError:
            return None
        addr = s.getsockname()[0]
    return None if ipaddress.ip_address(addr).is_loopback else addr


def live_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop("DISPLAY", None)
    return env


def live_cmd(model: Path, *args) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edge.live",
        "--model",
        str(model),
        "--source",
        "demo",
        "--no-display",
        "--threads",
        "1",
        *map(str, args),
    ]


class LiveRun:
    """``edge.live`` serving the looping demo clip on 0.0.0.0 with the token in its
    environment, detached from any terminal (as under systemd). Stopped with SIGINT."""

    def __init__(self, model: Path, *args, env: dict | None = None):
        self.proc = subprocess.Popen(
            live_cmd(model, "--loop", "--serve", "0.0.0.0:0", *args),
            env=env or live_env(**{TOKEN_ENV: TOKEN}),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stderr_head = []
        for line in self.proc.stderr:  # until the server says where it listens
            self.stderr_head.append(line)
            if m := re.match(r"serving http://0\.0\.0\.0:(\d+)/", line):
                self.port = int(m.group(1))
                self.serving_line = line
                break
        else:
            raise AssertionError(f"edge.live never served: {''.join(self.stderr_head)[-3000:]}")

    def stop(self) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err
        return out, "".join(self.stderr_head) + err

    def __enter__(self) -> LiveRun:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_serving_all_addresses_needs_the_token_on_every_path(pose_model, tmp_path) -> None:
    log = tmp_path / "run.jsonl"
    with LiveRun(pose_model, "--jsonl", log) as run:
        port = run.port
        assert "token required" in run.serving_line and TOKEN not in run.serving_line
        wrong = [
            {},
            basic("not-the-token-at-all"),
            basic(TOKEN[:-1]),
            {"Authorization": "Bearer nope"},
            {"Authorization": "Basic !!!"},
        ]
        paths = [
            "/",
            "/index.html",
            "/stream.mjpg",
            "/frame.jpg",
            "/favicon.ico",
            f"/{secrets.token_hex(6)}",
            "/frame.jpg?token=",
            "/stream.mjpg?token=wrong",
            f"/frame.jpg?token={quote(TOKEN[:-1])}",
            f"/frame.jpg?tok={quote(TOKEN)}",
        ]
        hosts = ["127.0.0.1"] + ([own_address()] if own_address() else [])
        for host in hosts:
            for path in paths:
                for headers in wrong:
                    status, resp, body = request(port, path, headers, host=host)
                    assert status == 401, (host, path, headers, status)
                    assert resp.getheader("WWW-Authenticate", "").startswith("Basic ")
                    assert JPEG_START not in body and b"<img" not in body
            for method in ("HEAD", "POST", "PUT", "DELETE", "OPTIONS", "BREW"):
                assert request(port, "/frame.jpg", host=host, method=method)[0] == 401, method

        # With the token: as ?token= (the page passes it on), basic auth, or a bearer token.
        status, _, page = request(port, f"/?token={quote(TOKEN)}")
        assert status == 200
        assert f'src="/stream.mjpg?token={quote(TOKEN, safe="")}"'.encode() in page
        status, _, page = request(port, "/", basic(TOKEN, user="anyone"))
        assert status == 200 and b'src="/stream.mjpg"' in page  # the browser re-sends basic auth
        for headers, path in [
            (basic(TOKEN), "/frame.jpg"),
            ({}, f"/frame.jpg?token={quote(TOKEN)}"),
            ({"Authorization": f"Bearer {TOKEN}"}, "/frame.jpg"),
        ]:
            status, resp, jpeg = request(port, path, headers)
            assert status == 200 and resp.getheader("Content-Type") == "image/jpeg"
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (480, 640, 3)  # the demo clip's overlay
        status, resp, _ = request(port, f"/stream.mjpg?token={quote(TOKEN)}")
        assert status == 200
        assert read_part(resp).startswith(JPEG_START)
        resp.close()
        if len(hosts) > 1:
            assert request(port, "/frame.jpg", basic(TOKEN), host=hosts[1])[0] == 200
        assert request(port, "/nothing-here", basic(TOKEN))[0] == 404

        # ps shows every user the command line: the token is not on it.
        cmdline = Path(f"/proc/{run.proc.pid}/cmdline").read_bytes()
        assert b"edge.live" in cmdline and TOKEN.encode() not in cmdline
        out, err = run.stop()
    assert TOKEN not in out and TOKEN not in err
    text = log.read_text()
    assert text.count("\n") >= 1 and TOKEN not in text


def test_the_fifth_stream_viewer_gets_503(pose_model) -> None:
    with LiveRun(pose_model) as run:
        viewers = []
        for _ in range(4):  # the default --max-clients
            status, resp, _ = request(run.port, "/stream.mjpg", basic(TOKEN))
            assert status == 200
            assert read_part(resp).startswith(JPEG_START)  # each one is being streamed to
            viewers.append(resp)
        status, resp, body = request(run.port, "/stream.mjpg", basic(TOKEN))
        assert status == 503 and JPEG_START not in body
        assert resp.getheader("Retry-After")
        # Without the token it is still 401, whatever the load; snapshots are not streams.
        assert request(run.port, "/stream.mjpg")[0] == 401
        assert request(run.port, "/frame.jpg", basic(TOKEN))[0] == 200
        for resp in viewers:
            resp.close()
        run.stop()


def test_max_clients_flag(pose_model) -> None:
    with LiveRun(pose_model, "--max-clients", "1") as run:
        status, first, _ = request(run.port, "/stream.mjpg", basic(TOKEN))
        assert status == 200 and read_part(first).startswith(JPEG_START)
        assert request(run.port, "/stream.mjpg", basic(TOKEN))[0] == 503
        first.close()
        run.stop()


def test_a_viewer_that_leaves_frees_its_place() -> None:
    server = MjpegServer("0.0.0.0", 0, token=TOKEN, max_clients=1)
    stop = threading.Event()

    def publisher() -> None:
        while not stop.is_set():
            server.publish(np.full((48, 64, 3), 80, np.uint8))
            stop.wait(0.01)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    try:
        status, first, _ = request(server.port, "/stream.mjpg", basic(TOKEN))
        assert status == 200 and read_part(first).startswith(JPEG_START)
        assert request(server.port, "/stream.mjpg", basic(TOKEN))[0] == 503
        first.close()  # the server notices at its next write, and frees the place
        for _ in range(600):
            status, resp, _ = request(server.port, "/stream.mjpg", basic(TOKEN))
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200
        assert read_part(resp).startswith(JPEG_START)
        resp.close()
    finally:
        stop.set()
        thread.join()
        server.close()


def _connect_when_listening(port: int, proc: subprocess.Popen) -> socket.socket:
    for _ in range(6000):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a frame or two
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return sock
        sock.close()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("edge.live never listened")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _run_frames(model: Path, log: Path, *, stalled_viewer: bool) -> tuple[int, int, dict]:
    """edge.live on 300 demo frames, serving 0.0.0.0; with ``stalled_viewer``, a viewer that
    asks for the stream and never reads, plus one that reads everything. Returns the frames
    the run reports, the JSONL records, and what the viewers got."""
    port = _free_port()
    proc = subprocess.Popen(
        live_cmd(
            model, "--loop", "--max-frames", "300", "--serve", f"0.0.0.0:{port}", "--jsonl", log
        ),
        env=live_env(**{TOKEN_ENV: TOKEN}),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    viewers: dict = {}
    try:
        if stalled_viewer:
            # Connected while the model loads, before the first frame.
            stalled = _connect_when_listening(port, proc)
            auth = basic(TOKEN)["Authorization"]
            stalled.sendall(
                f"GET /stream.mjpg HTTP/1.1\r\nHost: pi\r\nAuthorization: {auth}\r\n\r\n".encode()
            )

            def read_all() -> None:
                status, resp, _ = request(port, "/stream.mjpg", basic(TOKEN))
                viewers["reader_status"] = status
                jpegs = []
                try:
                    while True:
                        jpegs.append(read_part(resp))
                except (EOFError, OSError, http.client.HTTPException):
                    pass  # the stream ended with the run
                viewers["reader_frames"] = len(set(jpegs))

            reader = threading.Thread(target=read_all, daemon=True)
            reader.start()
        out, err = proc.communicate(timeout=600)
        if stalled_viewer:
            reader.join(timeout=60)
            stalled.settimeout(30)
            got = b""
            while chunk := stalled.recv(1 << 20):  # what reached it before the run ended
                got += chunk
            stalled.close()
            viewers["stalled_head"] = got[:15]
            viewers["stalled_frames"] = got.count(b"--frame\r\n")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    frames = int(re.search(r"^(\d+) frames in", out, re.M).group(1))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return frames, len(records), viewers


def test_a_viewer_that_stops_reading_costs_the_camera_loop_no_frame(pose_model, tmp_path) -> None:
    alone = _run_frames(pose_model, tmp_path / "alone.jsonl", stalled_viewer=False)
    frames, records, viewers = _run_frames(
        pose_model, tmp_path / "stalled.jsonl", stalled_viewer=True
    )
    assert alone[:2] == (frames, records) == (300, 300)
    # The stalled viewer was admitted while the loop ran, then stopped reading: it holds only
    # the few frames its socket buffers took; the run went on without it.
    assert viewers["stalled_head"].startswith(b"HTTP/1.0 200")
    assert 1 <= viewers["stalled_frames"] < 300
    # Another viewer was served meanwhile.
    assert viewers["reader_status"] == 200 and viewers["reader_frames"] >= 1


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # stdin, a pty, becomes the controlling terminal


def test_a_made_up_token_is_shown_on_the_terminal_only(pose_model, tmp_path) -> None:
    """Run by hand on 0.0.0.0 with no token set: one is made up and its URL goes to the
    terminal, never to stdout or stderr (which a service manager would keep in its log)."""
    master, slave = pty.openpty()
    out_path, err_path, log = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "log.jsonl"
    env = live_env()
    env.pop(TOKEN_ENV, None)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            live_cmd(pose_model, "--loop", "--serve", "0.0.0.0:0", "--jsonl", log),
            env=env,
            cwd=REPO,
            stdin=slave,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
    os.close(slave)
    try:
        shown = b""
        while b"?token=" not in shown or not shown.rstrip(b" ").endswith(b"\n"):
            ready, _, _ = select.select([master], [], [], 120)
            assert ready, f"nothing on the terminal: {err_path.read_text()[-2000:]}"
            shown += os.read(master, 4096)
        m = re.search(rb"http://\S+:(\d+)/\?token=(\S+)", shown)
        assert m, shown
        port, token = int(m.group(1)), unquote(m.group(2).decode())
        assert len(token) >= 20 and token != TOKEN
        assert request(port, "/frame.jpg")[0] == 401
        assert request(port, f"/?token={quote(token)}")[0] == 200
        assert request(port, "/frame.jpg", basic(token))[0] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0, err_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert shown.count(b"?token=") == 1  # once
    for path in (out_path, err_path, log):
        assert token not in path.read_text()
    assert "serving http://0.0.0.0:" in err_path.read_text()


def _one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr


def test_no_token_and_no_terminal_means_no_open_stream(pose_model, tmp_path) -> None:
    env = live_env()
    env.pop(TOKEN_ENV, None)

    def run(*args, **extra) -> subprocess.CompletedProcess:
        return subprocess.run(
            live_cmd(pose_model, "--max-frames", "3", *args),
            env={**env, **extra},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
        )

    _one_line_error(run("--serve", "0.0.0.0:0"), f"set {TOKEN_ENV} or --token-file")
    _one_line_error(run("--serve", "0.0.0.0:0", **{TOKEN_ENV: "short"}), "shorter than 12")
    _one_line_error(
        run("--serve", "0.0.0.0:0", "--token-file", tmp_path / "missing"),
        "cannot read the token file",
    )
    _one_line_error(run("--serve", "127.0.0.1:0", "--max-clients", "0"), "--max-clients")
    # A token file works like the variable; loopback without one stays open.
    token_file = tmp_path / "token"
    token_file.write_text(f"\n{TOKEN}\n")
    proc = run("--serve", "0.0.0.0:0", "--token-file", token_file)
    assert proc.returncode == 0 and "token required" in proc.stderr, proc.stderr
    proc = run("--serve", "127.0.0.1:0")
    assert proc.returncode == 0 and "token required" not in proc.stderr, proc.stderr


def test_a_token_file_must_be_a_small_regular_file(pose_model, tmp_path) -> None:
    """A FIFO never blocks the start (nobody may ever write to it), /dev/zero never fills
    memory, and a big file is not read whole: each is one line and exit 2."""
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big"
    big.write_text(TOKEN + "\n" + "x" * 100_000)
    env = live_env()
    env.pop(TOKEN_ENV, None)
    for path, expected in (
        (fifo, "is not a regular file"),
        ("/dev/zero", "is not a regular file"),
        (big, "is larger than 4096 bytes"),
    ):
        proc = subprocess.run(
            live_cmd(pose_model, "--max-frames", "1", "--serve", "0.0.0.0:0", "--token-file", path),
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
        )
        _one_line_error(proc, f"the token file {path} {expected}")


def _loopback_live(*args) -> tuple[subprocess.Popen, int, str]:
    """edge.live serving the looping demo on a loopback address given in ``args``."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.live",
            "--model",
            str(args[0]),
            "--source",
            "demo",
            "--loop",
            "--no-display",
            "--threads",
            "1",
            *map(str, args[1:]),
        ],
        env=live_env(),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in proc.stderr:
        if m := re.match(r"serving (http://(\S+):(\d+)/)", line):
            return proc, int(m.group(3)), m.group(1)
    raise AssertionError(f"edge.live never served: {proc.communicate()}")


def _status(port: int, host_header: str, *, address: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(address, port, timeout=60)
    conn.putrequest("GET", "/frame.jpg", skip_host=True)
    conn.putheader("Host", host_header)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_a_loopback_stream_refuses_rebound_names(pose_model) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host.
    Without a token, the stream answers only localhost, IP addresses and --allow-host names."""
    proc, port, url = _loopback_live(
        pose_model, "--serve", "127.0.0.1:0", "--allow-host", "pi.example"
    )
    try:
        assert url == f"http://127.0.0.1:{port}/"
        for host in ("evil.example", f"evil.example:{port}", "attacker.localhost.example"):
            status, body = _status(port, host)
            assert status == 403 and JPEG_START not in body, (host, status)
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "pi.example"):
            for _ in range(600):  # the first frame may still be on its way
                status, body = _status(port, host)
                if status != 503:
                    break
                time.sleep(0.05)
            assert status == 200 and body.startswith(JPEG_START), (host, status)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert proc.returncode == 0


def test_serve_on_ipv6_loopback(pose_model) -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    proc, port, url = _loopback_live(pose_model, "--serve", "[::1]:0")
    try:
        assert url == f"http://[::1]:{port}/"
        for _ in range(600):
            status, body = _status(port, f"[::1]:{port}", address="::1")
            if status != 503:
                break
            time.sleep(0.05)
        assert status == 200 and body.startswith(JPEG_START)
        assert _status(port, "evil.example", address="::1")[0] == 403
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    assert proc.returncode == 0


def test_help_says_how_to_open_a_protected_stream() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge.live", "--help"],
        env=live_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    for words in (
        TOKEN_ENV,
        "--token-file",
        "?token=TOKEN",
        "sign in with user binland",
        "--max-clients",
    ):
        assert words in text, words


def test_token_checks(tmp_path, monkeypatch) -> None:
    token = TOKEN.encode()
    assert authorized(None, "/frame.jpg", None)  # no token: open
    assert not authorized(token, "/frame.jpg", None)
    assert authorized(token, f"/x?a=1&token={quote(TOKEN)}", None)
    assert authorized(token, "/", basic(TOKEN, user="")["Authorization"])
    assert authorized(token, "/", f"bearer {TOKEN}")
    assert not authorized(token, "/?token=x", basic("x")["Authorization"])
    assert not authorized(token, "/", "Basic " + base64.b64encode(b"\xff\xfe:x").decode())
    assert check_token(f"  {TOKEN}\n", "here") == TOKEN
    with pytest.raises(EdgeError, match="printable ASCII"):
        check_token("a token with spaces", "here")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_token() is None
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert read_token() == TOKEN
    with pytest.raises(EdgeError, match="needs a token"):
        MjpegServer("0.0.0.0", 0)  # never open on a non-loopback address


def test_closing_ends_every_viewer_even_one_that_stopped_reading() -> None:
    # A viewer's thread still inside OpenCV's JPEG encoder when Python exits aborts the process
    # ("terminate called without an active exception", exit -6): it happened to an emulated
    # Pi's service on systemctl stop. close() ends and joins them all.
    server = MjpegServer("127.0.0.1", 0, send_timeout=60.0)
    before = set(threading.enumerate())
    server.publish(np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8))
    status, reading, _ = request(server.port, "/stream.mjpg")
    assert status == 200 and read_part(reading).startswith(JPEG_START)
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    for _ in range(20):  # keep publishing until the stalled viewer's writes block
        server.publish(np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8))
        time.sleep(0.02)
    try:
        server.close()
        left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
        assert left == [], f"request threads still running after close(): {left}"
    finally:
        reading.close()
        stalled.close()
