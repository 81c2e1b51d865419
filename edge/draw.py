"""The overlay: skeleton edges and landmarks coloured by confidence (or, with several
people, each person in their own colour with their ID), crop box, FPS text.

Drawing is kept apart from inference: it takes plain arrays and the model's metadata, and
draws in place on a BGR image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .transform import CropBox

LOW_COLOUR = np.array([0, 0, 255], np.float64)  # red (BGR): unsure
HIGH_COLOUR = np.array([0, 255, 0], np.float64)  # green: confident
# One colour per tracked ID (BGR), far apart in hue and bright on most scenes; IDs beyond
# the list reuse it, by then the earlier owners have long gone.
TRACK_COLOURS = (
    (255, 128, 0),  # azure
    (0, 165, 255),  # orange
    (255, 0, 255),  # magenta
    (0, 255, 255),  # yellow
    (255, 255, 0),  # cyan
    (128, 0, 255),  # pink-red
    (0, 255, 128),  # spring green
    (255, 0, 128),  # violet
)


def track_colour(track_id: int) -> tuple[int, int, int]:
    """The BGR colour of a tracked ID."""
    return TRACK_COLOURS[(int(track_id) - 1) % len(TRACK_COLOURS)]


def score_colour(score: float) -> tuple[int, int, int]:
    """BGR colour from red (score <= 0) to green (score >= 1)."""
    t = float(np.clip(score, 0.0, 1.0)) if np.isfinite(score) else 0.0
    c = LOW_COLOUR * (1 - t) + HIGH_COLOUR * t
    return (int(c[0]), int(c[1]), int(c[2]))


def _pt(p: np.ndarray) -> tuple[int, int]:
    # OpenCV wants int32 coordinates; a wild prediction far off the image is just clipped.
    x, y = np.clip(np.round(np.asarray(p, dtype=np.float64)), -(2**20), 2**20)
    return (int(x), int(y))


def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    scores: np.ndarray,
    edges: Sequence[tuple[int, int]],
    *,
    min_score: float = 0.3,
    radius: int | None = None,
    colour: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Draw edges between landmarks scoring >= ``min_score`` and every finite landmark.

    Points are filled when confident and hollow when not, coloured red to green by score, or
    all in ``colour`` (BGR; one person among several). Landmarks that are NaN (hidden) are
    skipped. Returns ``image``.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(scores, dtype=np.float64).reshape(len(p))
    finite = np.isfinite(p).all(axis=1)
    ok = finite & (s >= min_score)
    if radius is None:
        radius = max(2, int(round(max(image.shape[:2]) / 200)))
    thickness = max(1, radius // 2)
    for a, b in edges:
        if ok[a] and ok[b]:
            c = colour or score_colour(min(s[a], s[b]))
            cv2.line(image, _pt(p[a]), _pt(p[b]), c, thickness, cv2.LINE_AA)
    for i in np.flatnonzero(finite):
        c = colour or score_colour(s[i])
        cv2.circle(image, _pt(p[i]), radius, c, -1 if ok[i] else 1, cv2.LINE_AA)
    return image


def draw_label(
    image: np.ndarray, text: str, at: tuple[float, float], colour: tuple[int, int, int]
) -> np.ndarray:
    """``text`` in ``colour`` on a dark outline, its bottom-left corner at ``at`` (kept on the
    image): a person's ID above their landmarks."""
    scale = max(0.5, max(image.shape[:2]) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    ax, ay = (float(v) if np.isfinite(v) else 0.0 for v in at)
    x = int(np.clip(ax, 0, max(image.shape[1] - tw, 0)))
    y = int(np.clip(ay, th + base, max(image.shape[0] - base, th + base)))
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 2, cv2.LINE_AA)
    return image


def draw_box(image: np.ndarray, box: CropBox, colour=(255, 255, 255)) -> np.ndarray:
    rect = ((box.center[0], box.center[1]), (box.size, box.size), -box.rotation)
    corners = np.round(cv2.boxPoints(rect)).astype(np.int32)
    cv2.polylines(image, [corners], True, colour, 1, cv2.LINE_AA)
    return image


def draw_text(image: np.ndarray, lines: Sequence[str], origin=(8, 8)) -> np.ndarray:
    """White text with a dark outline, one line under the other, from the top-left."""
    scale = max(0.4, max(image.shape[:2]) / 1200)
    x, y = origin
    for line in lines:
        (_, th), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        y += th + base
        cv2.putText(image, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            image, line, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return image


def draw_fps(image: np.ndarray, fps: float | None, extra: str = "") -> np.ndarray:
    """The frame rate and a note (``extra``). No rate yet (the first frame) or none at all (a
    still image): ``fps`` is 0 or None and only the note is drawn, if there is one."""
    parts = [f"{fps:5.1f} FPS"] if fps is not None and np.isfinite(fps) and fps > 0 else []
    parts += [extra] if extra else []
    return draw_text(image, ["  ".join(parts)]) if parts else image
