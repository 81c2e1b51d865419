"""Outputs: the video writer and JSONL log on disk, the MJPEG server read by real HTTP clients."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError
from edge.outputs import JsonlOutput, MjpegServer, VideoOutput, landmark_record, parse_host_port
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


def test_outputs_refuse_missing_folders(tmp_path):
    with pytest.raises(EdgeError, match="does not exist"):
        VideoOutput(tmp_path / "nope" / "out.mp4")
    with pytest.raises(EdgeError, match="does not exist"):
        JsonlOutput(tmp_path / "nope" / "out.jsonl")


def test_jsonl_records_are_whole_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonlOutput(path)
    pts = np.array([[1.5, 2.0], [np.nan, np.nan]])
    log.write(landmark_record(0, 0.0, names=["a", "b"], points=pts, scores=np.array([0.9, 0.1]),
                              box=CropBox((5.0, 6.0), 10.0), tracking=True))  # fmt: skip
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
    with pytest.raises(EdgeError):
        parse_host_port("host:http")


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
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             f"--screenshot={shot}", "--window-size=800,600", server.url],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
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
