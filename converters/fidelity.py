"""Does the converted flatbuffer compute what the Keras model computes?

Runs a few inputs through Keras and through a real interpreter (edge.backends) and compares
the final heatmaps numerically and as decoded landmarks, since that is what a user sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.backends import Backend
from edge.codec import HeatmapCodec
from edge.finder_codec import FinderCodec
from edge.metadata import LandmarkMetadata
from edge.transform import normalise_input

CLOSE = 1e-3  # relative to the heatmap range


@dataclass(frozen=True)
class FidelityReport:
    backend: str
    num_inputs: int
    max_abs_diff: float  # largest |keras - tflite| over all heatmap values
    heatmap_range: float  # max - min of the Keras heatmaps
    same_landmarks: float  # share of (input, landmark) pairs decoding to the same point
    num_landmarks: int  # how many pairs were compared
    # Inputs whose heatmaps all lie within CLOSE of the range. A binary net amplifies a
    # rounding difference right at a sign() threshold into a flipped bit, so an occasional
    # input differs visibly even though the conversion is exact.
    inputs_close: int
    unit: str = "landmarks"  # what same_landmarks counts: landmarks, cells' top classes, finds

    @property
    def max_rel_diff(self) -> float:
        return self.max_abs_diff / self.heatmap_range if self.heatmap_range > 0 else 0.0

    def summary(self) -> str:
        same = round(self.same_landmarks * self.num_landmarks)
        return (
            f"fidelity vs Keras on {self.num_inputs} inputs ({self.backend}): max heatmap diff "
            f"{self.max_abs_diff:.3g} ({self.max_rel_diff:.2e} of the heatmap range "
            f"{self.heatmap_range:.3g}); inputs within {CLOSE:g}: "
            f"{self.inputs_close}/{self.num_inputs}; {self.unit} identical: {same}/"
            f"{self.num_landmarks} ({100 * self.same_landmarks:.1f}%)"
        )


def sample_images(size: tuple[int, int], count: int, seed: int = 0) -> np.ndarray:
    """uint8 BGR test images (N, H, W, 3): uniform noise, blurred noise and smooth ramps with
    blobs, so both high-frequency and image-like statistics are covered."""
    import cv2

    w, h = size
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 1:
            noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            img = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(w, h) / 32)
            img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)
        else:
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            img = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], axis=-1) * 160.0
            for _ in range(3):
                cx, cy = rng.uniform(0, w), rng.uniform(0, h)
                r = rng.uniform(0.05, 0.2) * max(w, h)
                blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
                img += blob[..., None] * rng.uniform(-120, 120, 3)
            img = np.clip(img, 0, 255).astype(np.uint8)
        images.append(img)
    return np.stack(images)


def _same_finds(codec: FinderCodec, reference: np.ndarray, candidate: np.ndarray) -> bool:
    """Whether two finder outputs decode to the same finds: the same classes in the same
    order, their corners within half an input pixel or a thousandth of their value (an
    untrained network's boxes can be thousands of pixels long)."""
    a, b = codec.decode(reference), codec.decode(candidate)
    if [f.class_id for f in a] != [f.class_id for f in b]:
        return False
    return all(
        np.allclose(f.corners, g.corners, rtol=1e-3, atol=0.5) for f, g in zip(a, b, strict=True)
    )


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    codec: HeatmapCodec | FinderCodec | None,
    backend: str,
) -> FidelityReport:
    """Compare two output batches (N, h, w, K); ``codec`` None compares class logits by
    each cell's top class (then ``same_landmarks`` is the share of cells that agree); a
    :class:`FinderCodec` compares each input's decoded finds (the share of inputs whose finds
    are the same boxes)."""
    reference = np.asarray(reference, np.float32)
    candidate = np.asarray(candidate, np.float32)
    unit = "landmarks"
    if codec is None:  # class logits: does every cell keep its class?
        same = reference.argmax(axis=-1) == candidate.argmax(axis=-1)
        unit = "cell classes"
    elif isinstance(codec, FinderCodec):
        same = np.array(
            [_same_finds(codec, r, c) for r, c in zip(reference, candidate, strict=True)]
        )
        unit = "inputs' finds"
    else:
        points_ref, _ = codec.decode(reference)
        points_new, _ = codec.decode(candidate)
        same = np.all(np.abs(points_ref - points_new) < 1e-6, axis=-1)
    heatmap_range = float(reference.max() - reference.min())
    per_input = np.abs(reference - candidate).reshape(len(reference), -1).max(axis=1)
    return FidelityReport(
        backend=backend,
        num_inputs=len(reference),
        max_abs_diff=float(np.max(np.abs(reference - candidate))),
        heatmap_range=heatmap_range,
        same_landmarks=float(same.mean()),
        num_landmarks=int(same.size),
        inputs_close=int(np.sum(per_input <= CLOSE * heatmap_range)),
        unit=unit,
    )


def check_fidelity(
    keras_model, backend: Backend, metadata: LandmarkMetadata, *, num_inputs: int = 6, seed: int = 0
) -> FidelityReport:
    """Keras (final output) vs the backend on ``num_inputs`` synthetic images."""
    images = sample_images(metadata.input_size, num_inputs, seed)
    x = normalise_input(images, metadata.input_color, metadata.input_mean, metadata.input_std)
    reference = keras_model(x, training=False)
    if isinstance(reference, (list, tuple)):
        reference = reference[-1]
    from tqdm import tqdm

    # disable=None: a bar on a terminal only, so logs and captured output stay clean.
    rows = tqdm(x, desc=f"checking on {backend.name}", unit="input", leave=False, disable=None)
    candidate = np.stack([backend.run(row) for row in rows])
    codec = None
    if metadata.task == "finder":
        codec = metadata.finder_codec()
    elif metadata.task != "segmentation":
        codec = HeatmapCodec(input_size=metadata.input_size, heatmap_size=metadata.heatmap_size)
    return compare(np.asarray(reference), candidate, codec, backend.description)
