"""Write the landmark record into a .tflite flatbuffer's own ``metadata`` field.

The reader lives in :mod:`edge.metadata` (no TensorFlow). Writing goes through TensorFlow's
generated object API for the TFLite schema: unpack the model, add one buffer holding the JSON
and one ``Metadata`` entry naming it, pack again. Weight buffers are re-packed 16-byte aligned,
as TFLite's own writer does (``force_align: 16`` in schema.fbs); the Python object API would
otherwise pack them with 1-byte alignment, which some kernels and mmap loaders dislike.
The last write is the model's SHA-256 record (:func:`write_digest`), which edge checks at load.
"""

from __future__ import annotations

import numpy as np
from flatbuffers import builder as fb_builder
from tensorflow.lite.python import schema_py_generated as schema

from edge.errors import ModelError
from edge.metadata import (
    DIGEST_NAME,
    DIGEST_PLACEHOLDER,
    DIGEST_PREFIX,
    METADATA_NAME,
    LandmarkMetadata,
    metadata_span,
    model_digest,
    read_metadata_bytes,
    verify_digest,
)

_BUFFER_ALIGNMENT = 16
_TFLITE_IDENTIFIER = b"TFL3"


class _AlignedBuffer(schema.BufferT):
    """A BufferT whose data vector starts on a 16-byte boundary of the final file."""

    def Pack(self, builder: fb_builder.Builder) -> int:  # noqa: N802 (flatbuffers API name)
        data_offset = None
        if self.data is not None:
            payload = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), _BUFFER_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data_offset = builder.EndVector()
        schema.BufferStart(builder)
        if data_offset is not None:
            schema.BufferAddData(builder, data_offset)
        schema.BufferAddOffset(builder, self.offset)
        schema.BufferAddSize(builder, self.size)
        return schema.BufferEnd(builder)


def _aligned(buffer: schema.BufferT) -> _AlignedBuffer:
    out = _AlignedBuffer()
    out.data, out.offset, out.size = buffer.data, buffer.offset, buffer.size
    return out


def add_metadata_entry(flatbuffer: bytes, name: str, payload: bytes) -> bytes:
    """A copy of ``flatbuffer`` with ``payload`` stored under ``name`` (replacing an old entry)."""
    if len(flatbuffer) < 8 or flatbuffer[4:8] != _TFLITE_IDENTIFIER:
        raise ModelError("not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    if any(b.offset and b.offset > 1 for b in model.buffers or []):
        # Models over 2 GB keep weights after the flatbuffer; re-packing would drop them.
        raise ModelError("models with external (offset) buffers are not supported")
    model.buffers = [_aligned(b) for b in model.buffers or []]
    entries = [e for e in (model.metadata or []) if _entry_name(e) != name]
    # An old entry's buffer stays in place (indices of other buffers must not shift) but is
    # emptied, so re-writing metadata does not grow the file.
    for e in model.metadata or []:
        if _entry_name(e) == name:
            model.buffers[e.buffer].data = None
    buffer = _AlignedBuffer()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]

    builder = fb_builder.Builder(max(1024, len(flatbuffer) + len(payload) + 4096))
    builder.Finish(model.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _entry_name(entry: schema.MetadataT) -> str:
    name = entry.name
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def write_landmark_metadata(flatbuffer: bytes, metadata: LandmarkMetadata) -> bytes:
    """Embed ``metadata`` as JSON under :data:`edge.metadata.METADATA_NAME`, then the model's
    digest (:func:`write_digest`); check both read back."""
    out = add_metadata_entry(flatbuffer, METADATA_NAME, metadata.to_json().encode("utf-8"))
    if read_metadata_bytes(out) != metadata.to_json().encode("utf-8"):
        raise ModelError("internal error: the metadata did not read back from the written model")
    return write_digest(out)


def write_digest(flatbuffer: bytes) -> bytes:
    """Record the model's SHA-256 under :data:`edge.metadata.DIGEST_NAME` (replacing an old
    one), which edge checks at load. The last write to a model: any later change to its bytes
    is a mismatch. The record is written as zeros, the file hashed, then the digits filled in
    place (same size, so nothing moves); the weights are not touched."""
    out = bytearray(add_metadata_entry(flatbuffer, DIGEST_NAME, DIGEST_PLACEHOLDER))
    start, size = metadata_span(bytes(out), DIGEST_NAME)
    out[start : start + size] = DIGEST_PREFIX + model_digest(bytes(out)).encode()
    if verify_digest(bytes(out)) is None:
        raise ModelError("internal error: the digest did not read back from the written model")
    return bytes(out)


_BUILTIN_NAMES = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}


def op_counts(flatbuffer: bytes) -> dict[str, int]:
    """How many times each operator (builtin or custom name) appears in the main subgraph."""
    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        names.append(custom.decode() if custom else _BUILTIN_NAMES.get(builtin, str(builtin)))
    counts: dict[str, int] = {}
    graph = model.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        name = names[graph.Operators(i).OpcodeIndex()]
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
