"""A trained model on disk: the Keras file and its metadata sidecar, written and read here only.

Training saves ``model.keras`` and, beside it, ``model.landmarks.json`` (a
:class:`edge.metadata.LandmarkMetadata` as JSON: skeleton or classes, input contract, codec).
Everything that opens a trained model (``python -m training.evaluate``, ``python -m
converters.convert``, ``init_from`` in a config) goes through :func:`load_keras_model` and
:func:`load_sidecar`, so the checks and the sidecar rule cannot drift apart.

The sidecar rule: ``NAME.landmarks.json`` (what training writes: the model's suffix replaced),
then ``NAME.keras.landmarks.json`` (the suffix kept, as some hand-written sidecars are named).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import ModelError
from edge.metadata import LandmarkMetadata

if TYPE_CHECKING:
    import tensorflow as tf

SIDECAR_SUFFIX = ".landmarks.json"
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def sidecar_path(model_path: str | Path) -> Path:
    """Where training writes the metadata of ``model_path``: ``model.landmarks.json``."""
    return Path(model_path).with_suffix(SIDECAR_SUFFIX)


def sidecar_paths(model_path: str | Path) -> list[Path]:
    """Every name a sidecar of ``model_path`` may have, in the order they are tried."""
    p = Path(model_path)
    return [sidecar_path(p), p.with_name(p.name + SIDECAR_SUFFIX)]


def load_sidecar(model_path: str | Path) -> tuple[LandmarkMetadata | None, Path | None]:
    """The metadata beside ``model_path`` and the file it came from; ``(None, None)`` when
    there is none. A sidecar that does not parse is a one-line :class:`ModelError`."""
    for candidate in sidecar_paths(model_path):
        if candidate.is_file():
            try:
                return LandmarkMetadata.from_json(candidate.read_text()), candidate
            except ModelError as exc:
                raise ModelError(f"{candidate}: {exc}") from None
    return None, None


def require_sidecar(model_path: str | Path) -> LandmarkMetadata:
    """The sidecar's metadata, or a :class:`ModelError` saying where it was looked for."""
    meta, _ = load_sidecar(model_path)
    if meta is None:
        raise ModelError(
            f"{model_path} has no landmark sidecar {sidecar_path(model_path).name}; "
            "it is written by training.train next to the model"
        )
    return meta


def load_keras_model(path: str | Path) -> tf.keras.Model:
    """Load a ``.keras``/``.h5`` file or SavedModel folder without its optimizer state.

    larq's layers and quantizers and the project's own layers are registered first, so a
    binary model deserialises; any failure is one :class:`ModelError` line.
    """
    import larq  # noqa: F401 - registers larq's quantizers and layers for deserialisation
    import tensorflow as tf

    import training.models  # noqa: F401 - registers the project's custom layers

    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        raise ModelError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
    if path.is_file() and path.suffix not in KERAS_SUFFIXES:
        raise ModelError(f"{path}: expected a .keras or .h5 file or a SavedModel folder")
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; all mean "cannot load".
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {path} as a Keras model: {reason[:300]}") from None
    if not isinstance(model, tf.keras.Model):
        raise ModelError(f"{path} holds no Keras model")
    return model


def open_trained(path: str | Path) -> tuple[tf.keras.Model, LandmarkMetadata]:
    """A trained Keras model with its sidecar metadata (the sidecar is checked first: it is
    the cheap one to be missing)."""
    meta = require_sidecar(path)
    return load_keras_model(path), meta


def save_trained(model: tf.keras.Model, metadata: LandmarkMetadata, path: Path) -> Path:
    """Write ``path`` (a .keras file) and its sidecar; returns the model's path."""
    model.save(str(path))
    sidecar_path(path).write_text(metadata.to_json())
    return path
