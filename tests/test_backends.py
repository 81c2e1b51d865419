"""Backends (LCE interpreter, stock runtimes) and LandmarkModel on real converted files: the
committed fixtures (tests/make_fixtures.py), so that most of this runs without TensorFlow.
Tests that need the LCE interpreter or TensorFlow (the train extra) are marked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fixtures import POSE_FLOAT, POSE_LCE, run_python, test_inputs

import edge
from converters.fidelity import compare
from edge.backends import (
    auto_backend_name,
    backend_names,
    create_backend,
    is_bitpacked,
    native_library,
)
from edge.codec import HeatmapCodec
from edge.errors import BackendError, ModelError
from edge.transform import CropBox, apply_affine, crop_matrix, full_frame_box, invert_affine

CODEC = HeatmapCodec(input_size=(64, 64), heatmap_size=(16, 16))


def test_registry_names_and_unknown_backend():
    assert {"auto", "lce", "tflite"} <= set(backend_names())
    with pytest.raises(BackendError, match="unknown backend 'onnx'"):
        create_backend("onnx", POSE_FLOAT)
    with pytest.raises(BackendError, match="unknown TFLite runtime"):
        create_backend("tflite", POSE_FLOAT, runtime="tflite_micro")
    with pytest.raises(BackendError, match="num_threads"):
        create_backend("tflite", POSE_FLOAT, num_threads=0)


@pytest.fixture
def without_native(tmp_path):
    """A copy of the edge package with no built library, an empty build cache and no C
    compiler.

    That is what a user gets when ``pip install`` found no C compiler. The test's own
    ``edge`` may hold a library built at install time, so the check runs in a child process
    that imports the copy.
    """
    copy = tmp_path / "site"
    shutil.copytree(
        Path(edge.__file__).parent,
        copy / "edge",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    # After a non-editable `pip install`, the installed distribution's library is found for
    # any copy of the same C sources (edge.native._distribution_library). A comment makes
    # the copy's sources another version, which no installed library was built from, so the
    # child sees no library in editable and non-editable installs alike.
    with open(copy / "edge" / "native" / "delegate.c", "a", encoding="utf-8") as f:
        f.write("\n/* a copy made by tests/test_backends.py: built from nothing installed */\n")
    return {
        "PYTHONPATH": str(copy),
        "XDG_CACHE_HOME": str(tmp_path / "empty-cache"),
        "CC": str(tmp_path / "no-such-compiler"),
    }


@pytest.fixture
def with_native():
    from edge import native

    native.ensure_library()  # compiles once into the user cache if needed
    assert native_library() is not None


def test_auto_picks_the_stock_runtime_for_float_files():
    float_data = POSE_FLOAT.read_bytes()
    assert not is_bitpacked(float_data)
    assert auto_backend_name(float_data) == "tflite"


@pytest.mark.tensorflow  # the LCE interpreter
def test_without_native_library_bitpacked_files_go_to_lce_or_fail_clearly(without_native, tmp_path):
    lce_path = POSE_LCE
    assert is_bitpacked(lce_path.read_bytes())
    np.save(tmp_path / "x.npy", test_inputs(2))
    code = f"""
import json, numpy as np
from edge.backends import auto_backend_name, create_backend, native_library
import edge
from edge.errors import BackendError
data = open({str(lce_path)!r}, "rb").read()
out = {{"edge": edge.__file__, "native": native_library(), "auto": auto_backend_name(data),
       "shape": list(create_backend("auto", data).run(np.load({str(tmp_path / "x.npy")!r})).shape)}}
try:
    create_backend("tflite", data)
except BackendError as exc:
    out["message"] = str(exc)
print(json.dumps(out, default=str))
"""
    env = {**os.environ, **without_native}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["edge"].startswith(without_native["PYTHONPATH"])
    assert out["native"] is None
    assert out["auto"] == "lce"
    assert out["shape"] == [2, 16, 16, 16]
    message = out["message"]
    assert "\n" not in message
    assert "sudo apt install gcc" in message and "larq-compute-engine" in message
    assert "--format float" in message
    assert not (tmp_path / "empty-cache").exists()


def test_a_missing_native_library_is_built_once_at_first_use(without_native, tmp_path):
    """With a C compiler, a bitpacked model builds the library into the user cache the first
    time, says so in one line on stderr, and finds the build afterwards."""
    lce_path = POSE_LCE
    code = f"""
from edge.backends import auto_backend_name, create_backend
data = open({str(lce_path)!r}, "rb").read()
backend = create_backend("auto", data, num_threads=1)
print(auto_backend_name(data), backend.native)
"""
    env = {**os.environ, **without_native}
    del env["CC"]  # the system's compiler
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for _ in range(2)
    ]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    cache = tmp_path / "empty-cache" / "binland" / "native"
    built = list(cache.glob("libbinland_lce-*.so"))
    assert len(built) == 1
    assert [line.split()[0] for line in runs[0].stdout.splitlines()] == ["tflite"]
    assert runs[0].stdout.split()[1] == runs[1].stdout.split()[1] == str(built[0])
    says = [line for line in runs[0].stderr.splitlines() if line.startswith("binland:")]
    assert len(says) == 1 and "building the native library" in says[0] and str(cache) in says[0]
    assert "binland:" not in runs[1].stderr


@pytest.mark.tensorflow  # the LCE interpreter
def test_with_native_library_stock_runtimes_run_bitpacked_files_like_lce(with_native):
    lce_data = POSE_LCE.read_bytes()
    assert auto_backend_name(lce_data) == "tflite"
    x = test_inputs(8)
    reference = create_backend("lce", lce_data).run(x)
    for runtime in ("tflite_runtime", "ai_edge_litert"):
        backend = create_backend("tflite", lce_data, runtime=runtime)
        assert "native LCE delegate" in backend.description
        report = compare(reference, backend.run(x), CODEC, runtime)
        # Float rounding may differ between runtimes, and a binary net turns a difference
        # right at a sign() threshold into a flipped bit: allow a rare differing input.
        assert report.inputs_close >= 0.75 * report.num_inputs, report.summary()
        assert report.same_landmarks >= 0.99, report.summary()


def test_with_native_library_both_stock_runtimes_agree_on_bitpacked_files(with_native):
    lce_data = POSE_LCE.read_bytes()
    x = test_inputs(8)
    out = {}
    for runtime in ("tflite_runtime", "ai_edge_litert"):
        backend = create_backend("tflite", lce_data, runtime=runtime, num_threads=1)
        assert "native LCE delegate" in backend.description
        out[runtime] = backend.run(x)
    report = compare(out["tflite_runtime"], out["ai_edge_litert"], CODEC, "both")
    assert report.same_landmarks >= 0.99, report.summary()


@pytest.mark.tensorflow  # TensorFlow's own interpreter is one of the three
def test_every_stock_runtime_gives_the_same_heatmaps():
    data = POSE_FLOAT.read_bytes()
    x = test_inputs(3)
    outputs = {}
    for runtime in ("tflite_runtime", "ai_edge_litert", "tensorflow"):
        backend = create_backend("tflite", data, runtime=runtime, num_threads=1)
        assert backend.input_shape == (1, 64, 64, 3) and backend.output_shape == (1, 16, 16, 16)
        outputs[runtime] = backend.run(x)
    ref = outputs["tflite_runtime"]
    for out in outputs.values():
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.ptp(ref))


def test_run_accepts_one_input_or_a_batch_and_rejects_wrong_shapes():
    backend = create_backend("tflite", POSE_FLOAT, num_threads=1)
    x = test_inputs(2)
    batch = backend.run(x)
    np.testing.assert_array_equal(backend.run(x[1]), batch[1])
    with pytest.raises(BackendError, match="does not fit"):
        backend.run(np.zeros((1, 32, 32, 3), np.float32))


def test_runtime_can_be_forced_by_environment(monkeypatch):
    monkeypatch.setenv("BINLAND_TFLITE_RUNTIME", "ai-edge-litert")
    backend = create_backend("tflite", POSE_FLOAT)
    assert backend.runtime == "ai_edge_litert"


# --- LandmarkModel ---


def _scene(width: int = 200, height: int = 150, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("fmt", ["lce", "float"])
def test_landmark_model_predicts_in_image_pixels(fmt):
    model = edge.LandmarkModel(POSE_LCE if fmt == "lce" else POSE_FLOAT, num_threads=1)
    assert model.backend_name in ("tflite", "lce")
    if fmt == "float":
        assert model.backend_name == "tflite"
    image = _scene()
    result = model.predict(image)
    assert result.points.shape == (16, 2) and result.scores.shape == (16,)
    assert result.names == model.metadata.landmarks and len(result) == 16
    assert result.box == full_frame_box(200, 150)

    # A landmark found in a crop maps back through the crop transform (rotated, scaled box).
    box = CropBox(center=(110.0, 70.0), size=96.0, rotation=25.0)
    in_image = model.predict(image, box)
    to_crop = crop_matrix(box, model.metadata.input_size)
    crop = cv2.warpAffine(image, to_crop, model.metadata.input_size, flags=cv2.INTER_LINEAR)
    in_crop = model.predict(crop, full_frame_box(*model.metadata.input_size))
    np.testing.assert_allclose(
        in_image.points, apply_affine(invert_affine(to_crop), in_crop.points), atol=1e-6
    )
    np.testing.assert_array_equal(in_image.scores, in_crop.scores)

    # Moving the object and its box together moves the landmarks by the same amount.
    shifted = np.pad(image, ((7, 0), (10, 0), (0, 0)))
    moved = model.predict(shifted, CropBox(center=(120.0, 77.0), size=96.0, rotation=25.0))
    np.testing.assert_allclose(moved.points, in_image.points + [10.0, 7.0], atol=1e-6)


def test_predict_heatmaps_uses_the_metadata_colour_order():
    model = edge.LandmarkModel(POSE_FLOAT, num_threads=1)
    assert model.metadata.input_color == "RGB"
    crops = (test_inputs(2) * 255).round().astype(np.uint8)  # RGB images
    expected = model._backend.run(crops.astype(np.float32) / 255.0)
    np.testing.assert_allclose(model.predict_heatmaps(crops[..., ::-1]), expected, atol=1e-5)


def test_greyscale_and_bgra_frames_are_accepted():
    model = edge.LandmarkModel(POSE_LCE, num_threads=1)
    grey = cv2.cvtColor(_scene(), cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(_scene(), cv2.COLOR_BGR2BGRA)
    assert model.predict(grey).points.shape == (16, 2)
    np.testing.assert_array_equal(model.predict(bgra).points, model.predict(_scene()).points)


def test_landmark_model_rejects_bad_files(tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(np.random.default_rng(0).bytes(500))
    # A real flatbuffer whose metadata entry is renamed: no landmark record in it.
    data = POSE_FLOAT.read_bytes()
    assert data.count(b"binland.landmarks") == 1
    no_metadata = tmp_path / "plain.tflite"
    no_metadata.write_bytes(data.replace(b"binland.landmarks", b"someone.else.data"))
    cases = {
        tmp_path / "missing.tflite": "not found",
        garbage: "not a TFLite flatbuffer",
        no_metadata: "no landmark metadata",
    }
    for path, expected in cases.items():
        with pytest.raises(ModelError) as info:
            edge.LandmarkModel(path)
        assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.tensorflow  # the LCE interpreter
def test_edge_runs_a_bitpacked_model_without_tensorflow_or_larq():
    path = POSE_LCE
    code = (
        "import sys, numpy as np, edge\n"
        f"m = edge.LandmarkModel({str(path)!r}, backend='lce')\n"
        "r = m.predict(np.full((90, 120, 3), 128, np.uint8))\n"
        "bad = [n for n in ('tensorflow', 'larq', 'keras', 'tf_keras') if n in sys.modules]\n"
        "assert not bad, bad\n"
        "print(m.backend_name, r.points.shape)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lce (16, 2)"
