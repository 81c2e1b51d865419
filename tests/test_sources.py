"""Frame sources on real files: OpenCV's sample media, videos and images written here."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from opencv_samples import MESSI, VTEST, needs_samples

from edge.errors import SourceError
from edge.sources import Frame, open_source
from edge.sources.demo import DEMO_FPS, DEMO_FRAMES, demo_joints
from edge.sources.images import ImageSource
from edge.sources.opencv import CameraSource, VideoFileSource


def write_video(path: Path, frames: int, size=(160, 120), fps=25.0) -> list[np.ndarray]:
    """A clip whose frame i shows a bright square at x = 4 * i, so frames can be told apart."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    images = []
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.rectangle(img, (4 * i, 30), (4 * i + 20, 60), (255, 255, 255), -1)
        writer.write(img)
        images.append(img)
    writer.release()
    return images


def test_video_file_every_frame_in_order_with_file_time(tmp_path):
    path = tmp_path / "clip.avi"
    written = write_video(path, 12, fps=25.0)
    with open_source(str(path)) as source:
        assert isinstance(source, VideoFileSource) and source.continuous
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(12) / 25.0)
    for f, img in zip(frames, written, strict=True):
        assert f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8
        # The moving square is where it was written (MJPG is lossy, so compare its position).
        col = f.image[45].astype(int).sum(axis=1)
        assert abs(int(np.argmax(col > 400)) - int(np.argmax(img[45].sum(axis=1) > 400))) <= 1


def test_video_loop_keeps_time_increasing(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, 5)
    with open_source(str(path), loop=True) as source:
        frames = [source.read() for _ in range(12)]
    stamps = [f.timestamp for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert [f.index for f in frames] == list(range(12))


@needs_samples
def test_vtest_avi_frame_count_matches_opencv():
    cap = cv2.VideoCapture(str(VTEST))
    expected = 0
    while cap.read()[0]:
        expected += 1
    cap.release()
    with open_source(str(VTEST)) as source:
        assert source.fps == pytest.approx(cap.get(cv2.CAP_PROP_FPS) or 10.0)
        assert sum(1 for _ in source) == expected == 795


@needs_samples
def test_image_file_folder_and_glob(tmp_path):
    one = open_source(str(MESSI))
    frame = one.read()
    assert frame.image.shape == cv2.imread(str(MESSI)).shape and one.read() is None
    assert not one.continuous

    for name in ("b.png", "a.jpg", "c.bmp"):
        cv2.imwrite(str(tmp_path / name), cv2.imread(str(MESSI)))
    (tmp_path / "notes.txt").write_text("not an image")
    folder = list(open_source(str(tmp_path)))
    assert len(folder) == 3  # the .txt is ignored
    assert [f.timestamp for f in folder] == [0.0, 1.0, 2.0]
    globbed = open_source(str(tmp_path / "*.png"))
    assert isinstance(globbed, ImageSource) and [p.name for p in globbed.paths] == ["b.png"]


def test_unreadable_sources_raise_one_line_errors(tmp_path):
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00" * 1000)
    bad_image = tmp_path / "broken.jpg"
    bad_image.write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match="cannot read video"):
        open_source(str(bad_video))
    with pytest.raises(SourceError, match="cannot read image"):
        open_source(str(bad_image)).read()
    with pytest.raises(SourceError, match="no files match"):
        open_source(str(tmp_path / "*.png"))
    with pytest.raises(SourceError, match="no images"):
        (tmp_path / "empty").mkdir()
        open_source(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="not a file, folder"):
        open_source(str(tmp_path / "missing.avi"))
    with pytest.raises(SourceError, match="cannot open camera"):
        open_source("97")  # no such V4L2 device


def test_camera_that_disappears_is_retried_then_reported(tmp_path):
    # OpenCV opens a device path the same way as a file: a clip stands in for a camera
    # whose device node vanishes after a few frames (an unplugged USB camera).
    device = tmp_path / "video0.avi"
    write_video(device, 4)
    camera = CameraSource(str(device), retries=3, retry_delay=0.01)
    assert camera.name == f"camera {device}" and camera.continuous
    frames = [camera.read() for _ in range(4)]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert all(b.timestamp >= a.timestamp for a, b in zip(frames, frames[1:], strict=False))
    device.unlink()
    with pytest.raises(SourceError, match=r"stopped delivering frames \(3 retries\)"):
        camera.read()
    camera.close()


def test_demo_clip_is_deterministic_and_moves():
    source = open_source("demo", size=(320, 240))
    frames = list(source)
    assert len(frames) == DEMO_FRAMES
    assert frames[1].timestamp == pytest.approx(1 / DEMO_FPS)
    assert frames[0].image.shape == (240, 320, 3)
    again = open_source("demo", size=(320, 240)).read()
    np.testing.assert_array_equal(again.image, frames[0].image)
    # The figure walks: its pelvis moves right, and the drawing is where the joints say.
    first, last = demo_joints(0, (320, 240)), demo_joints(DEMO_FRAMES - 1, (320, 240))
    assert last[6, 0] - first[6, 0] > 100
    background = frames[0].image[5, 5].astype(int)
    x, y = np.round((first[6] + first[7]) / 2).astype(int)  # mid-torso, inside the shirt
    assert np.abs(frames[0].image[y, x].astype(int) - background).sum() > 100


class FakePicamera2:
    """Mimics the documented picamera2 calls the adapter makes; records them for checking."""

    instances: list[FakePicamera2] = []

    def __init__(self, camera_num: int = 0):
        self.calls: list[str] = []
        self.config = None
        self.started = False
        self.closed = False
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main=None, queue=True, controls=None, **kwargs):
        self.calls.append("create_video_configuration")
        return {"main": dict(main or {}), "queue": queue, "controls": controls or {}}

    create_preview_configuration = create_video_configuration

    def configure(self, config):
        self.calls.append("configure")
        self.config = config

    def start(self):
        self.calls.append("start")
        self.started = True

    def capture_array(self, name="main"):
        assert self.started and name == "main"
        w, h = self.config["main"]["size"]
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = 255  # RGB888 in picamera2 is B, G, R in memory: blue stays channel 0
        return img

    def stop(self):
        self.calls.append("stop")
        self.started = False

    def close(self):
        self.calls.append("close")
        self.closed = True


def test_picamera2_adapter_with_fake_module(monkeypatch):
    fake = types.ModuleType("picamera2")
    fake.Picamera2 = FakePicamera2
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    FakePicamera2.instances.clear()
    source = open_source("picamera2", size=(320, 240))
    cam = FakePicamera2.instances[-1]
    assert cam.config["main"] == {"format": "RGB888", "size": (320, 240)}
    assert cam.config["queue"] is False
    assert cam.calls == ["create_video_configuration", "configure", "start"]
    frame = source.read()
    assert isinstance(frame, Frame) and frame.image.shape == (240, 320, 3)
    assert frame.image[0, 0].tolist() == [255, 0, 0]  # BGR: blue
    later = source.read()
    assert later.timestamp >= frame.timestamp and later.index == 1
    source.close()
    assert cam.calls[-2:] == ["stop", "close"] and cam.closed


def test_picamera2_lost_camera_is_retried_then_reported(monkeypatch):
    fake = types.ModuleType("picamera2")

    class Unplugged(FakePicamera2):
        failures = 0

        def capture_array(self, name="main"):
            if Unplugged.failures:
                Unplugged.failures -= 1
                raise RuntimeError("Camera frontend has timed out!")
            return super().capture_array(name)

    fake.Picamera2 = Unplugged
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    from edge.sources.picamera2 import PiCameraSource

    source = PiCameraSource(size=(64, 48), retries=2, retry_delay=0.0)
    Unplugged.failures = 2  # a hiccup: recovers within the retries
    assert source.read().image.shape == (48, 64, 3)
    Unplugged.failures = 3  # gone for good
    with pytest.raises(SourceError, match=r"stopped delivering frames \(2 retries\)"):
        source.read()
    source.close()


def test_default_source_prefers_picamera2(monkeypatch):
    fake = types.ModuleType("picamera2")
    fake.Picamera2 = FakePicamera2
    fake.__spec__ = types.SimpleNamespace(name="picamera2")  # find_spec reads sys.modules
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    source = open_source(None)
    assert source.name == "picamera2"
    source.close()


def test_missing_picamera2_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import now raises ImportError
    with pytest.raises(SourceError, match="picamera2 is not installed"):
        open_source("picamera2")
