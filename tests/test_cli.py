"""What every command-line tool shares (edge.cli): one error line and exit 2, Ctrl-C as 130,
``--model pose|face|PATH``, ``--backend`` from the backend registry, one ``--threads``
default, and help that shows each flag's default the same way."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
from pathlib import Path

import pytest
from edge_fixtures import POSE_FLOAT

from edge.backends import backend_names
from edge.cli import (
    BUNDLED,
    DEFAULT_THREADS,
    ArgumentParser,
    HelpFormatter,
    float_in_range,
    max_threads,
    positive_float,
    resolve_model,
    run_cli,
    thread_count,
    unit_float,
)
from edge.errors import BackendError, ModelError

REPO = Path(__file__).resolve().parents[1]
train = pytest.mark.tensorflow  # their modules import the train extra
CLIS = [
    "edge.live",
    "edge.bench",
    "edge.doctor",
    "edge.deploy.command",
    "edge.native.__main__",
    pytest.param("converters.convert", marks=train),
    pytest.param("training.evaluate", marks=train),
    pytest.param("training.train", marks=train),
    pytest.param("training.label.cli", marks=train),
    pytest.param("training.data.synthetic", marks=train),
    "examples/train_demo.py",  # the scripts that make the bundled models
    "examples/train_faceparts.py",
]


def _parser(module: str) -> argparse.ArgumentParser:
    if module.endswith(".py"):  # a script, not a package module
        spec = importlib.util.spec_from_file_location(Path(module).stem, REPO / module)
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        return script.build_parser()
    if module == "training.data.synthetic":  # python -m training.data.synthetic_pose / _face
        return importlib.import_module(module).build_preview_parser("synthetic-pose")
    return importlib.import_module(module).build_parser()


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_run_cli_turns_failures_into_one_line_and_a_status(capsys):
    def fails():
        raise BackendError("no runtime")

    assert run_cli(fails) == 2
    assert capsys.readouterr().err == "error: no runtime\n"

    def oserror():
        raise OSError("disk full")

    assert run_cli(oserror, errors=(OSError,)) == 2
    assert capsys.readouterr().err == "error: disk full\n"
    with pytest.raises(OSError):
        run_cli(oserror)  # only the errors named: a bug still shows its traceback

    def interrupted():
        raise KeyboardInterrupt

    assert run_cli(interrupted) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert run_cli(interrupted, interrupted=lambda: "stopped; resume with --resume") == 130
    assert capsys.readouterr().err == "error: stopped; resume with --resume\n"
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 1) == 1


def test_model_names_and_paths_resolve(tmp_path):
    assert resolve_model(str(POSE_FLOAT)) == POSE_FLOAT
    for name in ("pose", "pose-coco17", "face"):
        if BUNDLED[name].is_file():
            assert resolve_model(name) == BUNDLED[name]
        else:
            with pytest.raises(ModelError, match=f"bundled {name} model"):
                resolve_model(name)
    if BUNDLED["pose"].is_file():
        assert resolve_model(None) == BUNDLED["pose"]  # no --model: the bundled pose model
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(str(tmp_path / "missing.tflite"))


@pytest.mark.parametrize("module", CLIS)
def test_every_cli_follows_the_same_conventions(module, capsys):
    parser = _parser(module)
    assert isinstance(parser, ArgumentParser) and parser.formatter_class is HelpFormatter
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, f"{module} {action.option_strings[0]} has no help"
    backend = _option(parser, "--backend")
    if backend is not None:
        assert list(backend.choices) == backend_names() and backend.default == "auto"
    threads = _option(parser, "--threads")
    if threads is not None and module != "edge.bench":  # edge.bench times a list of counts
        assert threads.default == DEFAULT_THREADS
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["--threads", "0"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert (
            err.startswith("error: argument --threads: must be at least 1") and err.count("\n") == 1
        )
    model = _option(parser, "--model")
    if model is not None:
        assert model.type is None and "'pose'/'face'" in model.help  # names or paths
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--no-such-flag"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_help_shows_the_defaults_a_user_relies_on(capsys):
    parser = _parser("edge.live")
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"--threads N interpreter threads (default: {DEFAULT_THREADS})" in text
    assert "--backend {" + ",".join(backend_names()) + "}" in text
    assert "(default: the bundled pose model)" in text
    assert "--min-score MIN_SCORE landmarks scoring below this" in text and "(default: 0.3)" in text
    # An off switch says nothing about a default.
    assert "--no-smoothing turn the One Euro filter off --" in text


def test_numeric_types_refuse_nan_infinities_and_out_of_range_values():
    """Every comparison with NaN is false, so a plain `type=float` with a range check lets
    `--min-score nan` through; these types refuse it, and say why in one line."""
    for parse, text in [
        (positive_float, "nan"),
        (positive_float, "inf"),
        (positive_float, "-inf"),
        (positive_float, "0"),
        (positive_float, "-5"),
        (unit_float, "1.01"),
        (unit_float, "-0.1"),
        (unit_float, "NaN"),
        (float_in_range(1.0), "0.5"),
        (positive_float, "five"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    assert positive_float("1e-3") == 0.001 and unit_float("1") == 1.0 and unit_float("0") == 0.0
    assert max_threads() == 4 * (os.cpu_count() or 1)
    assert thread_count(str(max_threads())) == max_threads()
    with pytest.raises(argparse.ArgumentTypeError, match=f"must be at most {max_threads()}"):
        thread_count(str(max_threads() + 1))


# The tools with --threads N (edge.bench's N[,N...]: each count has the same cap).
THREAD_CLIS = [
    "edge.live",
    "edge.bench",
    "edge.doctor",
    "edge.deploy.command",
    "examples/train_demo.py",
    pytest.param("converters.convert", marks=train),
    pytest.param("training.evaluate", marks=train),
    pytest.param("training.label.cli", marks=train),
]


@pytest.mark.parametrize("module", THREAD_CLIS)
def test_every_cli_caps_threads(module, capsys):
    """--threads 64 started 128 threads on 2 cores: no tool takes more than 4 per CPU."""
    parser = _parser(module)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--threads", "100000"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --threads: must be at most") and err.count("\n") == 1
