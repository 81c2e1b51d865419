"""Outputs: the video writer and JSONL log on disk, the MJPEG server read by real HTTP clients."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError, OutputError
from edge.outputs import (
    DiskBudget,
    JsonlOutput,
    MjpegServer,
    VideoOutput,
    landmark_record,
    parse_host_port,
    recordings,
)
from edge.transform import CropBox

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_video_output_writes_every_frame(tmp_path):
    path = tmp_path / "out.mp4"
    video = VideoOutput(path, fps=20.0)
    for i in range(15):
        img = np.full((96, 128, 3), 16 * (i % 8), np.uint8)
        video.write(img)
    video.close()
    video.close()  # idempotent
    cap = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (96, 128, 3)
        count += 1
    assert count == 15 and video.frames_written == 15
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(20.0)


def read_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def _frame(i: int) -> np.ndarray:
    img = np.full((96, 128, 3), 16 * (i % 8), np.uint8)
    cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255))
    return img


def test_video_segments_are_each_a_complete_file(tmp_path):
    """Every segment is finished and read back as it fills: a kill loses only the last one."""
    path = tmp_path / "out.mp4"
    video = VideoOutput(path, fps=10.0, segment_frames=10)
    for i in range(25):
        video.write(_frame(i))
        if i == 14:  # mid-run, the first segment is already a playable file of its own
            assert read_frames(path) == 10
    video.close()
    names = [p.name for _, p in recordings(path)]
    assert names == ["out.mp4", "out.0001.mp4", "out.0002.mp4"]
    assert [read_frames(tmp_path / n) for n in names] == [10, 10, 5]
    assert video.frames_written == 25 and video.describe() == (
        "out.mp4 to out.0002.mp4 (3 files, 25 frames)"
    )


def test_recordings_never_replace_earlier_ones(tmp_path):
    """A second run (a restarted service) starts the next numbered file; nothing is cut."""
    video_path, log_path = tmp_path / "rec.mp4", tmp_path / "rec.jsonl"
    for run in range(3):
        video = VideoOutput(video_path, fps=10.0)
        log = JsonlOutput(log_path)
        for i in range(3 + run):
            video.write(_frame(i))
            log.write(landmark_record(i, i / 10))
        video.close()
        log.close()
    assert [p.name for _, p in recordings(log_path)] == [
        "rec.jsonl",
        "rec.0001.jsonl",
        "rec.0002.jsonl",
    ]
    assert [len(p.read_text().splitlines()) for _, p in recordings(log_path)] == [3, 4, 5]
    assert [read_frames(p) for _, p in recordings(video_path)] == [3, 4, 5]
    # A run that never got a frame leaves no empty video behind.
    VideoOutput(video_path).close()
    assert len(recordings(video_path)) == 3


def test_a_full_disk_is_an_output_error_and_the_jsonl_ends_on_a_whole_record(tmp_path):
    log = JsonlOutput("/dev/full")  # a device is written as it is, never numbered
    with pytest.raises(OutputError, match="cannot write /dev/full: No space left on device"):
        log.write(landmark_record(0, 0.0))
    log.close()
    assert log.describe() == ""


def test_the_jsonl_follows_segments_and_the_budget_deletes_the_oldest(tmp_path):
    old = tmp_path / "log.jsonl"
    old.write_bytes(b"x" * 5000)  # an earlier run's, older than anything written below
    os.utime(old, (time.time() - 100, time.time() - 100))
    other = tmp_path / "notes.jsonl"
    other.write_bytes(b"y" * 5000)  # not of the series: never touched
    removed = []
    budget = DiskBudget([tmp_path / "log.jsonl"], 3000, say=removed.append)
    log = JsonlOutput(tmp_path / "log.jsonl", segment_records=5, budget=budget)
    assert not old.exists() and "log.jsonl" in removed[0]  # over budget: the oldest goes first
    for i in range(40):
        log.write(landmark_record(i, i / 30))
    log.close()
    kept = recordings(tmp_path / "log.jsonl")
    assert sum(p.stat().st_size for _, p in kept) <= 3000 + 5 * 200  # + the file being written
    assert log.saved[-1][0] == kept[-1][1]  # the newest survive, whole
    assert [json.loads(line)["frame"] for line in kept[-1][1].read_text().splitlines()] == list(
        range(35, 40)
    )
    assert other.stat().st_size == 5000

    with pytest.raises(EdgeError, match="does not exist"):
        VideoOutput(tmp_path / "nope" / "out.mp4")
    with pytest.raises(EdgeError, match="does not exist"):
        JsonlOutput(tmp_path / "nope" / "out.jsonl")


def test_jsonl_records_are_whole_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonlOutput(path)
    pts = np.array([[1.5, 2.0], [np.nan, np.nan]])
    log.write(
        landmark_record(
            0,
            0.0,
            names=["a", "b"],
            points=pts,
            scores=np.array([0.9, 0.1]),
            box=CropBox((5.0, 6.0), 10.0),
            tracking=True,
        )
    )
    # Flushed at once: readable while the writer is still open.
    first = json.loads(path.read_text().splitlines()[0])
    assert first["landmarks"][0] == {"name": "a", "x": 1.5, "y": 2.0, "score": pytest.approx(0.9)}
    assert first["landmarks"][1]["x"] is None  # hidden landmark
    assert first["box"] == {"center": [5.0, 6.0], "size": 10.0, "rotation": 0.0}
    log.write(landmark_record(1, 0.033))
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["landmarks"] == []


def test_parse_host_port():
    assert parse_host_port("8080") == ("127.0.0.1", 8080)
    assert parse_host_port("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_host_port(":9000") == ("127.0.0.1", 9000)
    assert parse_host_port("[::1]:9000") == ("::1", 9000)
    with pytest.raises(EdgeError):
        parse_host_port("host:http")
    with pytest.raises(EdgeError):
        parse_host_port("[::1:9000")


def _get(port: int, path: str, host_header: str | None, *, address: str = "127.0.0.1"):
    conn = http.client.HTTPConnection(address, port, timeout=30)
    conn.putrequest("GET", path, skip_host=True)
    if host_header is not None:
        conn.putheader("Host", host_header)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_a_loopback_stream_answers_only_local_names():
    """DNS rebinding: a page from evil.example re-points its name at 127.0.0.1; its requests
    still say Host: evil.example, and get 403 and no picture."""
    server = MjpegServer("127.0.0.1", 0, allowed_hosts=("pi.example",))
    server.publish(_test_image())
    try:
        port = server.port
        for host in (
            "evil.example",
            f"evil.example:{port}",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "pi.example.evil",
            "",
        ):
            for path in ("/", "/frame.jpg", "/stream.mjpg"):
                status, body = _get(port, path, host)
                assert status == 403 and b"\xff\xd8" not in body, (host, path, status)
        for host in (
            f"127.0.0.1:{port}",
            "localhost",
            f"LOCALHOST.:{port}",
            f"[::1]:{port}",
            "pi.example",
            f"pi.example:{port}",
            None,
        ):
            status, body = _get(port, "/frame.jpg", host)
            assert status == 200 and body.startswith(b"\xff\xd8"), (host, status)
    finally:
        server.close()


def test_the_stream_serves_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    server = MjpegServer("::1", 0)
    server.publish(_test_image())
    try:
        assert server.url == f"http://[::1]:{server.port}/"
        status, body = _get(server.port, "/frame.jpg", f"[::1]:{server.port}", address="::1")
        assert status == 200 and body.startswith(b"\xff\xd8")
        assert _get(server.port, "/frame.jpg", "evil.example", address="::1")[0] == 403
    finally:
        server.close()


def _test_image() -> np.ndarray:
    img = np.zeros((120, 160, 3), np.uint8)
    img[:, :80] = (0, 0, 255)  # left half red, right half green (BGR)
    img[:, 80:] = (0, 255, 0)
    return img


def _read_multipart_frame(stream) -> bytes:
    """Read one part of a multipart/x-mixed-replace body: headers, then Content-Length bytes."""
    line = stream.readline()
    while line.strip() == b"":
        line = stream.readline()
    assert line.strip() == b"--frame", line
    headers = {}
    while (line := stream.readline().strip()) != b"":
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    return stream.read(int(headers["content-length"]))


def test_mjpeg_server_streams_frames_to_an_http_client():
    server = MjpegServer("127.0.0.1", 0)  # port 0: any free port
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        page = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert 'src="/stream.mjpg"' in page
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "missing", timeout=5)
        assert err.value.code == 404

        stop = threading.Event()

        def publisher():
            i = 0
            while not stop.is_set():
                img = _test_image()
                cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255))
                server.publish(img)
                i += 1
                stop.wait(0.02)

        thread = threading.Thread(target=publisher, daemon=True)
        thread.start()
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=5) as resp:
            assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
            jpegs = [_read_multipart_frame(resp) for _ in range(3)]
        stop.set()
        thread.join()
        decoded = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]
        for img in decoded:
            assert img.shape == (120, 160, 3)
            assert img[100, 20, 2] > 200 and img[100, 20, 1] < 60  # red stays red (BGR kept)
            assert img[100, 140, 1] > 200
        assert len({j for j in jpegs}) == 3  # three different frames, not one repeated
        snapshot = urllib.request.urlopen(server.url + "frame.jpg", timeout=5)
        assert snapshot.headers["Content-Type"] == "image/jpeg"
    finally:
        server.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)


def test_busy_port_is_a_clear_error():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        with pytest.raises(EdgeError, match=f"127.0.0.1:{port}: port is busy"):
            MjpegServer("127.0.0.1", port)
    finally:
        holder.close()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_page_renders_the_stream_in_headless_chromium(tmp_path):
    server = MjpegServer("127.0.0.1", 0)
    stop = threading.Event()

    def publisher():
        img = cv2.resize(_test_image(), (640, 480), interpolation=cv2.INTER_NEAREST)
        while not stop.is_set():
            server.publish(img)
            stop.wait(0.05)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    shot = tmp_path / "page.png"
    try:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--screenshot={shot}",
                "--window-size=800,600",
                server.url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        stop.set()
        thread.join()
        server.close()
    png = cv2.imread(str(shot))
    assert png is not None and png.shape[:2] == (600, 800)
    # The streamed picture is on the page: large red and green areas on the dark page.
    red = (png[..., 2] > 200) & (png[..., 1] < 60) & (png[..., 0] < 60)
    green = (png[..., 1] > 200) & (png[..., 2] < 60) & (png[..., 0] < 60)
    assert red.mean() > 0.1 and green.mean() > 0.1, (red.mean(), green.mean())
    assert Path(shot).stat().st_size > 5000
