"""OpenCV's own sample media (Debian package ``opencv-doc``): real video and photos for the
sources, tracking and live tests, which skip when the package is not installed."""

from pathlib import Path

import pytest

SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST = SAMPLES / "vtest.avi"
MESSI = SAMPLES / "messi5.jpg"

needs_samples = pytest.mark.skipif(
    not VTEST.is_file(), reason="OpenCV sample data missing: apt-get install opencv-doc"
)
needs_messi = pytest.mark.skipif(
    not MESSI.is_file(), reason="needs opencv-doc's messi5.jpg (apt-get install opencv-doc)"
)
