"""Landmark metadata written into real converted flatbuffers and read back without TensorFlow."""

from __future__ import annotations

import dataclasses

import flatbuffers
import larq_models as lm
import numpy as np
import pytest
import tensorflow as tf
from edge_fixtures import run_python, test_inputs  # the models here take the fixtures' inputs
from larq_models import converted, saved_model
from tensorflow.lite.python import schema_py_generated as schema

from converters.lce import binary_conv_layers
from converters.tflite_metadata import (
    add_metadata_entry,
    op_counts,
    write_digest,
    write_landmark_metadata,
)
from edge.backends import create_backend
from edge.errors import ModelError
from edge.metadata import (
    DIGEST_NAME,
    METADATA_NAME,
    LandmarkMetadata,
    custom_op_names,
    read_metadata,
    read_metadata_bytes,
    recorded_digest,
    verify_digest,
)

META = LandmarkMetadata.for_skeleton(
    "ibug68",
    input_size=(256, 256),
    heatmap_size=(64, 64),
    input_mean=(127.5, 127.5, 127.5),
    input_std=(128.0, 128.0, 128.0),
    input_color="BGR",
    model_name="faces",
    model_version="3",
    weights_format="lce",
    box_margin=1.3,
    extra={"trained_on": "300W", "nme": 3.26},
)


def _entries(data: bytes) -> list[str]:
    model = schema.Model.GetRootAs(data, 0)
    return [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]


@pytest.mark.parametrize("fmt", ["lce", "float"])
def test_metadata_round_trips_and_replaces_an_old_entry(fmt):
    data = converted("binary", fmt).read_bytes()
    written = write_landmark_metadata(data, META)
    assert read_metadata(written) == META
    again = write_landmark_metadata(written, dataclasses.replace(META, model_version="4"))
    assert read_metadata(again).model_version == "4"
    assert _entries(again).count(METADATA_NAME) == 1
    assert "min_runtime_version" in _entries(again)  # the converter's own entry survives
    assert len(again) < len(written) + 64  # the old record's buffer was emptied, not kept
    assert custom_op_names(again) == custom_op_names(data)


def _buffer_data_offsets(data: bytes) -> list[int]:
    model = schema.Model.GetRootAs(data, 0)
    offsets = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength() > 0:
            tab = buffer._tab
            field = flatbuffers.number_types.UOffsetTFlags.py_type(tab.Offset(4))
            offsets.append(tab.Vector(field))
    return offsets


def test_rewritten_model_keeps_weights_aligned_and_computes_the_same():
    original = converted("binary", "lce").read_bytes()
    stripped = add_metadata_entry(original, METADATA_NAME, b"{}")
    rewritten = write_landmark_metadata(stripped, META)
    offsets = _buffer_data_offsets(rewritten)
    assert offsets and all(offset % 16 == 0 for offset in offsets)
    x = test_inputs(3)
    a = create_backend("lce", original).run(x)
    b = create_backend("lce", rewritten).run(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fmt", ["lce", "float"])
def test_the_converter_records_a_digest_that_edge_checks(fmt):
    """Issue 25: nothing checked a model's integrity. The converter's last write is the SHA-256
    record; writing it changes no weight, and any later change to the bytes is a mismatch."""
    data = converted("binary", fmt).read_bytes()  # made by the converter CLI
    assert verify_digest(data) is not None and _entries(data).count(DIGEST_NAME) == 1
    rewritten = write_landmark_metadata(data, dataclasses.replace(META, model_version="9"))
    assert verify_digest(rewritten) != verify_digest(data)  # a new record, a new digest
    assert _entries(rewritten).count(DIGEST_NAME) == 1
    # As an older converter wrote it: no entry of that name (renamed in place).
    stripped = data.replace(DIGEST_NAME.encode(), b"binland.olders")
    assert recorded_digest(stripped) is None and verify_digest(stripped) is None
    again = write_digest(stripped)
    assert verify_digest(again) is not None
    x = test_inputs(3)
    a, b = create_backend("lce", data).run(x), create_backend("lce", again).run(x)
    np.testing.assert_array_equal(a, b)
    # A change after the digest, even one more metadata entry, is caught at load.
    with pytest.raises(ModelError, match="the model file is corrupt"):
        verify_digest(add_metadata_entry(data, "someone.else", b"{}"))


def test_reader_needs_no_tensorflow():
    path = converted("real", "float")
    code = (
        "import sys\nfrom edge.metadata import read_metadata\n"
        f"m = read_metadata({str(path)!r})\n"
        "assert 'tensorflow' not in sys.modules and 'flatbuffers' not in sys.modules\n"
        "print(m.skeleton, m.input_size, m.weights_format)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mpii16", "(64,", "64)", "float"]


def test_writer_refuses_a_file_that_is_not_tflite():
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        write_landmark_metadata(b"PK\x03\x04 a zip file, not a model", META)


def test_op_counts_show_one_bconv_per_binary_layer():
    model = lm.load_keras(saved_model("binary"))
    final = tf.keras.Model(model.inputs, model.outputs[-1])
    counts = op_counts(converted("binary", "lce").read_bytes())
    assert counts["LceBconv2d"] == len(binary_conv_layers(final)) > 0
    float_counts = op_counts(converted("binary", "float").read_bytes())
    assert "LceBconv2d" not in float_counts and float_counts["CONV_2D"] >= counts["LceBconv2d"]


def test_metadata_sizes_match_the_network():
    meta = read_metadata(converted("binary", "lce"))
    assert meta.input_size == (lm.INPUT, lm.INPUT)
    assert meta.heatmap_size == (lm.INPUT // 4, lm.INPUT // 4)
    assert meta.num_landmarks == lm.LANDMARKS and meta.heatmap_stride == 4.0
    assert read_metadata_bytes(converted("binary", "lce").read_bytes(), "no-such-entry") is None
