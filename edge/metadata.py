"""The landmark record that travels inside a .tflite file, and a TensorFlow-free reader for it.

The converter stores a JSON document in the flatbuffer's own ``metadata`` field (a list of
(name, buffer index) pairs in the TFLite schema) under the name :data:`METADATA_NAME`. The
runtime reads it back here with a minimal flatbuffer walker, so a Raspberry Pi needs neither
TensorFlow nor the ``flatbuffers`` package to know what a model predicts.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ModelError
from .skeletons import get_skeleton

METADATA_NAME = "binland.landmarks"
# The model's integrity record, a metadata entry of its own beside the landmark record (so
# runtimes that predate it read the model as before): "sha256:" and the hex SHA-256 of the whole
# file with this record's 64 hex digits as zeros. Weights, graph, op options, the landmark
# record: a flip of any byte but the digits themselves changes it. See model_digest().
DIGEST_NAME = "binland.sha256"
DIGEST_PREFIX = b"sha256:"
DIGEST_PLACEHOLDER = DIGEST_PREFIX + b"0" * 64
# 2: heatmap_sigma and refine recorded; landmark_convention (a free-text note nobody read)
# dropped: the one convention is edge.codec's. Version 1 records still load.
FORMAT_VERSION = 2
# 3: segmentation models (task "segmentation": classes, class_colors, box_classes). Landmark
# records stay at 2 and leave those fields out, so older runtimes still read them.
SEGMENTATION_FORMAT = 3
# 4: finders (task "finder": classes, and "finder", the decoding of edge.finder_codec). Other
# records leave "finder" out, so runtimes from before it still read them.
FINDER_FORMAT = 4
NEWEST_FORMAT = FINDER_FORMAT
_SEGMENTATION_FIELDS = ("classes", "class_colors", "box_classes")
# What a finder record's "finder" entry must hold (edge.finder_codec.FinderCodec.to_dict).
_FINDER_KEYS = ("stride", "sigma_scale", "min_sigma", "min_score", "top_k", "regressions")


@dataclass(frozen=True)
class LandmarkMetadata:
    task: str  # "pose", "face", "segmentation" or "finder"
    skeleton: str  # key into edge.skeletons.SKELETONS
    landmarks: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    input_size: tuple[int, int]  # (width, height) of the crop the model takes
    heatmap_size: tuple[int, int]  # (width, height) of the heatmaps it returns
    # x_model = (pixel - mean) / std, per channel, in input_color order.
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    input_std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    input_color: str = "RGB"
    # The Gaussian targets' sigma (heatmap cells) the model was trained on, and the sub-cell
    # refinement its decoding uses (edge.codec.REFINEMENTS); the runtime's codec takes both.
    heatmap_sigma: float = 1.5
    refine: str = "quarter"
    model_name: str = "unnamed"
    model_version: str = "0"
    weights_format: str = "lce"  # "lce" (bitpacked custom ops) or "float" (stock TFLite ops)
    # Crop margin around the landmarks' bounding box that the model was trained with.
    box_margin: float = 1.25
    extra: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    # Segmentation models only (edge.parts): per-pixel class names, their RGB overlay colours,
    # and the classes whose pixels make the tracked crop box. Their output is one logit map
    # per class at heatmap resolution.
    classes: tuple[str, ...] = ()
    class_colors: tuple[tuple[int, int, int], ...] = ()
    box_classes: tuple[int, ...] = ()
    # Finder models only (edge.finder): what they find (``classes``, e.g. ("person",)) and
    # how their output grid decodes (edge.finder_codec.FinderCodec.to_dict: stride, the
    # regression channels, the default score threshold and top-k, the training heatmaps'
    # sigma rule). Their output is (grid, grid, classes + 9) at heatmap resolution.
    finder: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_outputs(self) -> int:
        """Channels of the network's output: classes for segmentation, the heatmaps and
        regressions of a finder, else landmarks."""
        if self.task == "finder":
            return self.num_classes + len(self.finder.get("regressions", ()))
        return self.num_classes if self.task == "segmentation" else self.num_landmarks

    def finder_codec(self):
        """The :class:`~edge.finder_codec.FinderCodec` a finder model was trained with."""
        from .finder_codec import FinderCodec

        f = self.finder
        return FinderCodec(
            input_size=int(self.input_size[0]),
            stride=int(f["stride"]),
            num_classes=self.num_classes,
            sigma_scale=float(f["sigma_scale"]),
            min_sigma=float(f["min_sigma"]),
            min_score=float(f["min_score"]),
            top_k=int(f["top_k"]),
            **({"nms_iou": float(f["nms_iou"])} if "nms_iou" in f else {}),
        )

    def codec(self, refine: str | None = None):
        """The :class:`~edge.codec.HeatmapCodec` this model was trained with (``refine``
        overrides the recorded refinement)."""
        from .codec import HeatmapCodec

        return HeatmapCodec(
            input_size=tuple(self.input_size),
            heatmap_size=tuple(self.heatmap_size),
            sigma=self.heatmap_sigma,
            refine=refine or self.refine,
        )

    @property
    def heatmap_stride(self) -> float:
        return self.input_size[0] / self.heatmap_size[0]

    @property
    def num_landmarks(self) -> int:
        return len(self.landmarks)

    @classmethod
    def for_skeleton(cls, skeleton: str, **kwargs) -> LandmarkMetadata:
        """Metadata whose names, edges and flip pairs come from a registered skeleton."""
        s = get_skeleton(skeleton)
        return cls(
            task=s.task,
            skeleton=s.name,
            landmarks=s.landmarks,
            edges=s.edges,
            flip_pairs=s.flip_pairs,
            **kwargs,
        )

    @classmethod
    def for_parts(cls, labels: str, **kwargs) -> LandmarkMetadata:
        """Segmentation metadata whose classes come from a label set of :mod:`edge.parts`."""
        from .parts import get_part_labels

        p = get_part_labels(labels)
        return cls(
            task="segmentation",
            skeleton=p.name,
            landmarks=(),
            edges=(),
            flip_pairs=p.flip_pairs,
            classes=p.classes,
            class_colors=p.colors,
            box_classes=p.box_classes,
            format_version=SEGMENTATION_FORMAT,
            **kwargs,
        )

    @classmethod
    def for_finder(cls, classes: tuple[str, ...], codec, **kwargs) -> LandmarkMetadata:
        """Finder metadata: the ``classes`` it finds and its
        :class:`~edge.finder_codec.FinderCodec` (input size, stride, decoding)."""
        classes = tuple(classes)
        return cls(
            task="finder",
            skeleton="+".join(classes),
            landmarks=(),
            edges=(),
            flip_pairs=(),
            classes=classes,
            finder=codec.to_dict(),
            format_version=FINDER_FORMAT,
            **kwargs,
        )

    def to_json(self) -> str:
        d = asdict(self)
        d["heatmap_stride"] = self.heatmap_stride
        if self.task != "segmentation":
            for key in _SEGMENTATION_FIELDS[1:]:
                d.pop(key)
            if self.task != "finder":
                d.pop("classes")
        if self.task != "finder":
            d.pop("finder")
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> LandmarkMetadata:
        try:
            d = json.loads(text)
            d.pop("heatmap_stride", None)
            d.pop("landmark_convention", None)  # format 1's note; edge.codec is the convention
            version = int(d.get("format_version", 0))
            if version > NEWEST_FORMAT:
                raise ModelError(
                    f"model metadata version {version} is newer than this runtime understands "
                    f"({NEWEST_FORMAT}); upgrade the edge package"
                )
            tuples = {
                "landmarks",
                "input_size",
                "heatmap_size",
                "input_mean",
                "input_std",
                "classes",
                "box_classes",
            }
            for key in tuples & d.keys():
                d[key] = tuple(d[key])
            for key in ("edges", "flip_pairs", "class_colors"):
                d[key] = tuple(tuple(int(i) for i in pair) for pair in d.get(key, ()))
            meta = cls(**d)
        except ModelError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"landmark metadata is malformed: {exc}") from None
        if meta.task == "segmentation" and (
            not meta.classes or len(meta.class_colors) != len(meta.classes)
        ):
            raise ModelError("segmentation metadata needs class names and one colour per class")
        if meta.task == "finder":
            missing = [key for key in _FINDER_KEYS if key not in meta.finder]
            if not meta.classes or missing:
                raise ModelError(
                    "finder metadata needs class names and its decoding"
                    + (f" (missing {', '.join(missing)})" if missing else "")
                )
            from .finder_codec import REGRESSIONS

            if tuple(meta.finder["regressions"]) != REGRESSIONS:
                raise ModelError(
                    f"this finder's output channels ({', '.join(meta.finder['regressions'])}) "
                    "are not the ones this runtime decodes; upgrade the edge package"
                )
            try:
                meta.finder_codec()
            except (ValueError, TypeError) as exc:
                raise ModelError(f"finder metadata is malformed: {exc}") from None
        return meta


# --- A minimal reader for the TFLite flatbuffer schema (tensorflow/lite/schema/schema.fbs). ---

_MODEL_OPERATOR_CODES, _MODEL_BUFFERS, _MODEL_METADATA = 1, 4, 6


class _Table:
    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        (soff,) = struct.unpack_from("<i", buf, pos)
        self.vt = pos - soff
        self.vt_len = struct.unpack_from("<H", buf, self.vt)[0]

    def _field(self, i: int) -> int | None:
        o = 4 + 2 * i
        if o >= self.vt_len:
            return None
        off = struct.unpack_from("<H", self.buf, self.vt + o)[0]
        return self.pos + off if off else None

    def uint(self, i: int, fmt: str = "<I", default: int = 0) -> int:
        p = self._field(i)
        return default if p is None else struct.unpack_from(fmt, self.buf, p)[0]

    def _deref(self, i: int) -> int | None:
        p = self._field(i)
        return None if p is None else p + struct.unpack_from("<I", self.buf, p)[0]

    def string(self, i: int) -> str | None:
        p = self._deref(i)
        if p is None:
            return None
        (n,) = struct.unpack_from("<I", self.buf, p)
        return self.buf[p + 4 : p + 4 + n].decode("utf-8", "replace")

    def bytes_vector(self, i: int) -> bytes:
        start, n = self.vector_span(i)
        return self.buf[start : start + n]

    def vector_span(self, i: int) -> tuple[int, int]:
        """Where a byte vector's contents lie in the buffer: (offset, length)."""
        p = self._deref(i)
        if p is None:
            return 0, 0
        (n,) = struct.unpack_from("<I", self.buf, p)
        if p + 4 + n > len(self.buf):
            raise struct.error("vector past the end of the buffer")
        return p + 4, n

    def tables(self, i: int) -> list[_Table]:
        p = self._deref(i)
        if p is None:
            return []
        (n,) = struct.unpack_from("<I", self.buf, p)
        out = []
        for j in range(n):
            q = p + 4 + 4 * j
            out.append(_Table(self.buf, q + struct.unpack_from("<I", self.buf, q)[0]))
        return out


def _model_table(data: bytes) -> _Table:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    try:
        return _Table(data, struct.unpack_from("<I", data, 0)[0])
    except struct.error:
        raise ModelError("the TFLite flatbuffer is truncated or corrupt") from None


def metadata_span(data: bytes, name: str = METADATA_NAME) -> tuple[int, int] | None:
    """Where the metadata buffer stored under ``name`` lies in ``data``: (offset, length), or
    None if the model has no such entry."""
    model = _model_table(data)
    try:
        buffers = model.tables(_MODEL_BUFFERS)
        for entry in model.tables(_MODEL_METADATA):
            if entry.string(0) == name:
                index = entry.uint(1)
                if index >= len(buffers):
                    raise ModelError("the model's metadata points at a missing buffer")
                buf = buffers[index]
                start, size = buf.vector_span(0)
                if not size:  # large models keep buffers after the flatbuffer (offset, size)
                    start, size = buf.uint(1, "<Q"), buf.uint(2, "<Q")
                    if start + size > len(data):
                        raise ModelError("the TFLite flatbuffer is truncated or corrupt")
                return start, size
    except (struct.error, IndexError):
        raise ModelError("the TFLite flatbuffer is truncated or corrupt") from None
    return None


def read_metadata_bytes(data: bytes, name: str = METADATA_NAME) -> bytes | None:
    """The raw metadata buffer stored under ``name``, or None if the model has none."""
    span = metadata_span(data, name)
    return None if span is None else bytes(data[span[0] : span[0] + span[1]])


def model_digest(data: bytes) -> str:
    """The SHA-256 (hex) that the integrity record of ``data`` must hold: of the whole file
    with the record's digits as zeros (one fixed-size record, so writing it moves nothing)."""
    span = metadata_span(data, DIGEST_NAME)
    if span is None:
        raise ModelError("the model has no digest record")
    start, size = span
    if size != len(DIGEST_PLACEHOLDER):
        raise ModelError(f"the model's digest record ({DIGEST_NAME}) is malformed")
    h = hashlib.sha256(memoryview(data)[:start])
    h.update(DIGEST_PLACEHOLDER)
    h.update(memoryview(data)[start + size :])
    return h.hexdigest()


def recorded_digest(data: bytes) -> str | None:
    """The SHA-256 the converter recorded in the model, or None for a model from before
    digests were recorded."""
    raw = read_metadata_bytes(data, DIGEST_NAME)
    if raw is None:
        return None
    found = re.fullmatch(re.escape(DIGEST_PREFIX) + rb"([0-9a-f]{64})", raw)
    if found is None:
        raise ModelError(
            f"the model file is corrupt: its digest record ({DIGEST_NAME}) is malformed; copy "
            "or convert it again"
        )
    return found.group(1).decode()


def verify_digest(model: str | Path | bytes) -> str | None:
    """Check a model's bytes against the digest its converter recorded. Returns the digest, or
    None when the model has none (older files: they load, unchecked). Raises a one-line
    :class:`ModelError` on a mismatch: a flipped weight byte moves landmarks by 100+ px and
    would otherwise run silently."""
    data = model_bytes(model)
    recorded = recorded_digest(data)
    if recorded is None:
        return None
    actual = model_digest(data)
    if actual != recorded:
        raise ModelError(
            f"the model file is corrupt: its SHA-256 is {actual[:16]}..., the converter "
            f"recorded {recorded[:16]}...; copy or convert it again"
        )
    return recorded


def custom_op_names(data: bytes) -> list[str]:
    """Names of the custom ops a model uses (e.g. ['LceQuantize', 'LceBconv2d'])."""
    model = _model_table(data)
    try:
        names = {t.string(1) for t in model.tables(_MODEL_OPERATOR_CODES)}
    except (struct.error, IndexError):
        raise ModelError("the TFLite flatbuffer is truncated or corrupt") from None
    return sorted(n for n in names if n)


def model_bytes(model: str | Path | bytes) -> bytes:
    """The flatbuffer of a .tflite model given as a path or as its bytes."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return path.read_bytes()
    return bytes(model)


def read_metadata(model: str | Path | bytes) -> LandmarkMetadata:
    """Landmark metadata of a .tflite file (path or bytes). Raises ModelError with a clear reason."""
    data = model_bytes(model)
    raw = read_metadata_bytes(data)
    if raw is None:
        raise ModelError(
            "this .tflite has no landmark metadata: it was not made by `python -m converters.convert`"
        )
    return LandmarkMetadata.from_json(raw)


def metadata_dict(meta: LandmarkMetadata) -> dict:
    return json.loads(meta.to_json())
