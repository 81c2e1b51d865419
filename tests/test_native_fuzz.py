"""The native delegate on crafted models (issue 25): every case of the fuzz corpus
(tests/fuzz_corpus/, rebuilt from the committed base models by tests/native_fuzz.py) in
every installed stock runtime, without sanitizers; the issue's cases through the Python
backend (edge.errors.BackendError, one line) and a command line (``error: ...``, exit 2);
and the fuzzer itself (its mutants, its shape inference, a short deterministic run).

The same corpus and the fuzzer run under AddressSanitizer and UBSan in .ci/fuzz_lane.sh.
Real runtimes and the real library throughout; each run is in its own process, so a crash
fails a test instead of killing pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import native_fuzz as nf
import numpy as np
import pytest

import edge.native as native

CORPUS_CASES = sorted(nf.CORPUS.glob("*.json"))


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    return native.build(tmp_path_factory.mktemp("native-lib"))


def _case(name: str) -> dict:
    return json.loads((nf.CORPUS / f"{name}.json").read_text())


def test_corpus_is_small_and_covers_the_issue():
    names = {p.stem for p in CORPUS_CASES}
    assert {"dilation_2147483647", "dilation_536870912", "dilation_100000000"} <= names
    assert {"stride_2147483647", "stride_100000000", "stride_unfitted"} <= names
    assert {"zero_dimension", "tensor_2gb", "maxpool_filter_2147483647"} <= names
    assert sum(p.stat().st_size for p in nf.CORPUS.rglob("*") if p.is_file()) < 100_000
    for path in CORPUS_CASES:
        case = json.loads(path.read_text())
        assert case["why"] and (nf.REPO / case["base"]).is_file(), path
        assert nf.dump_case(case) == path.read_text(), f"{path}: not in the corpus format"


def test_corpus_replays_cleanly_in_every_runtime(library, tmp_path):
    """Each case ends cleanly (the model runs, or the runtime raises with the delegate's
    message) in every runtime, and as the case expects: the issue's dilations are refused
    naming the dilation, a huge stride on an axis of one output pixel runs, a tensor over
    the budget is refused naming the limit, an out-of-order graph is refused."""
    cases = nf.load_corpus()
    runtimes = nf.installed_runtimes()
    assert runtimes
    results = nf.run_cases(
        cases, library, nf.worker_env(sanitize=False), tmp_path, runtimes=runtimes, timeout=60
    )
    bad = [
        f"{runtime} {Path(case['file']).name}: {result['status']}: {result.get('message', '')}"
        for case, runtime, result in results
        if nf._failure(result) or not nf.as_expected(case, result)
    ]
    assert not bad, "\n".join(bad)
    assert len(results) == len(cases) * len(runtimes)


BACKEND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from edge.backends.tflite import TFLiteBackend
    from edge.errors import BackendError
    for path in sys.argv[2:]:
        try:
            backend = TFLiteBackend(open(path, "rb").read(), runtime=sys.argv[1])
            backend._invoke(np.zeros(backend.input_shape, np.float32))
            outcome = {"path": path, "ran": True}
        except BackendError as exc:
            outcome = {"path": path, "ran": False, "error": str(exc)}
        print(json.dumps(outcome), flush=True)
    """
)


@pytest.mark.parametrize("runtime", nf.installed_runtimes())
def test_bad_models_are_one_line_backend_errors(runtime, tmp_path):
    """Through edge.backends (the project's own loader of bitpacked models): a crafted
    dilation or a tensor over the budget is an edge.errors.BackendError of one line naming
    the cause; the valid huge-stride model runs."""
    names = ("dilation_2147483647", "dilation_536870912", "tensor_2gb", "stride_100000000")
    paths = {}
    for name in names:
        paths[name] = tmp_path / f"{name}.tflite"
        paths[name].write_bytes(nf.build_case(_case(name)))
    proc = subprocess.run(
        [sys.executable, "-c", BACKEND_SCRIPT, runtime, *map(str, paths.values())],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=nf.REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = {Path(o["path"]).stem: o for o in map(json.loads, proc.stdout.splitlines())}
    assert {name: o["ran"] for name, o in outcomes.items()} == {
        "dilation_2147483647": False,
        "dilation_536870912": False,
        "tensor_2gb": False,
        "stride_100000000": True,
    }, proc.stdout
    for name, cause in (
        ("dilation_2147483647", "dilation 2147483647"),
        ("dilation_536870912", "dilation 536870912"),
        ("tensor_2gb", "512 MB limit"),
    ):
        message = outcomes[name]["error"]
        assert cause in message and "binland delegate" in message, message
        assert len(message.splitlines()) == 1, message


def test_command_line_reports_a_crafted_model_in_one_line(tmp_path):
    """python -m edge.bench --profile on the issue's model: ``error: ...`` and exit 2."""
    model = tmp_path / "dilated.tflite"
    model.write_bytes(nf.build_case(_case("dilation_2147483647")))
    command = ["--profile", "--model", str(model), "--threads", "1", "--frames", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "edge.bench", *command, "--warmup", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=nf.REPO,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "dilation 2147483647" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_shape_inference_keeps_every_base_model_as_it_is():
    """fit_shapes recomputes the shapes the mutations change; on an unchanged model it must
    change nothing, or the fuzzer would test its own mistakes."""
    for base in nf.BASES:
        model = nf.load_model((nf.REPO / base).read_bytes())
        before = [list(t.shape) for t in model.subgraphs[0].tensors]
        nf.fit_shapes(model)
        after = [list(t.shape) for t in model.subgraphs[0].tensors]
        assert before == after, base


def test_mutants_are_reproducible_flatbuffers():
    """A case is rebuilt from its JSON, byte for byte, and the same seed gives the same
    cases (a failure found once is found again)."""
    import random

    bases = {}
    for base in nf.BASES:
        model = nf.load_model((nf.REPO / base).read_bytes())
        bases[base] = (model, nf.find_targets(model))
    assert nf.random_case(random.Random(7), bases) == nf.random_case(random.Random(7), bases)
    rng = random.Random(3)
    for _ in range(30):
        case = json.loads(json.dumps(nf.random_case(rng, bases)))
        try:
            content = nf.build_case(case)
        except (TypeError, ValueError, OverflowError):
            continue  # a mutation the flatbuffer cannot hold; the fuzzer skips these too
        assert content == nf.build_case(case)
        assert content[4:8] == b"TFL3"
    for base in nf.BASES:  # the bases' own inputs exist for the worker to fill
        model = nf.load_model((nf.REPO / base).read_bytes())
        graph = model.subgraphs[0]
        assert all(np.prod(graph.tensors[i].shape) > 0 for i in graph.inputs)


def test_a_short_fuzz_run_finds_nothing(library, tmp_path):
    """40 fixed-seed mutants in both runtimes, without sanitizers (the CI lane runs
    minutes of them under ASan and UBSan)."""
    # A case that gives no answer within --case-timeout counts as a hang. Under the emulated
    # AVX2 CPU (.ci/avx2_qemu.sh, which says how much slower it is in BINLAND_TEST_SLOWDOWN)
    # a case of the bundled pose model took over the native 30 s and was reported as one;
    # natively it replays cleanly in both runtimes, the avx2 and portable paths forced too
    # (about 10 s for the whole replay, workers' start-up included). Both limits stretch.
    slowdown = float(os.environ.get("BINLAND_TEST_SLOWDOWN", "1"))
    arguments = [
        *("--seconds", str(300 * slowdown), "--case-timeout", str(30 * slowdown)),
        *("--cases", "40", "--seed", "25", "--library", str(library)),
    ]
    proc = subprocess.run(
        [sys.executable, nf.__file__, "fuzz", *arguments, "--save", str(tmp_path / "found")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=nf.REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fuzz: 40 cases" in proc.stdout and "0 crashed, 0 hung" in proc.stdout, proc.stdout
