"""Where the time of a bitpacked model goes: per node and per op type, in a stock runtime.

Our delegate's ops are timed inside the delegate (CLOCK_MONOTONIC around each op and each
partition). Neither stock runtime exposes its op profiler to Python, so the builtin ops (run by
the runtime and its XNNPACK) are timed by difference: the delegate also records, between
``binland_profile_begin`` and ``_end`` (called around each ``invoke()``), the gap before each
of its partitions, which is the runtime running the builtin nodes scheduled in between; the
time after the last partition is the tail. A gap holding one op type gives that type's time;
a gap holding several is reported as the mix it is (never split by a guess).

Used by ``python -m edge.bench --profile``; :func:`profile_model` returns the JSON-ready dict,
:func:`format_profile` the table.
"""

from __future__ import annotations

import ctypes
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edge.errors import BackendError

__all__ = ["format_profile", "profile_model"]


def _exports(delegate) -> ctypes.CDLL:
    """The delegate library instance the runtime loaded (load_delegate keeps it as _library)."""
    lib = getattr(delegate, "_library", None)
    if lib is None or not hasattr(lib, "binland_profile_json"):
        raise BackendError("this delegate is not the binland native library (no profile exports)")
    for name in ("binland_profile_begin", "binland_profile_end", "binland_profile_reset"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_int
    lib.binland_profile_json.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.binland_profile_json.restype = ctypes.c_long
    return lib


def _read_profile(lib, pointer) -> dict:
    import json

    size = lib.binland_profile_json(pointer, None, 0)
    if size < 0:
        raise BackendError("the native library does not recognise this delegate")
    buf = ctypes.create_string_buffer(size + 1)
    lib.binland_profile_json(pointer, buf, size + 1)
    return json.loads(buf.value.decode())


def _random_inputs(interpreter, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(seed)
    inputs = []
    for detail in interpreter.get_input_details():
        shape, dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
        else:
            x = rng.standard_normal(shape).astype(dtype)
        inputs.append((detail["index"], x))
    return inputs


def profile_model(
    model_path: str | Path,
    *,
    runtime: str | None = None,
    threads: int = 2,
    runs: int = 20,
    warmup: int = 3,
    options: dict[str, str] | None = None,
) -> dict:
    """Run a bitpacked model ``warmup + runs`` times with profiling on; times per run in ms.

    ``options`` go to the delegate (``simd``, ``fuse``, ``num_threads``)."""
    from edge.backends.tflite import choose_runtime, interpreter_api, runtime_version

    from . import ensure_library

    if runs < 1 or warmup < 0 or threads < 1:
        raise BackendError("runs and threads must be >= 1, warmup >= 0")
    runtime = choose_runtime(runtime)
    interpreter_cls, load_delegate = interpreter_api(runtime)
    library = ensure_library(announce=True)
    try:
        delegate = load_delegate(str(library), dict(options or {}, profile="1"))
    except (ValueError, OSError, RuntimeError) as exc:
        raise BackendError(f"cannot load {library} into {runtime}: {exc}") from None
    try:
        interpreter = interpreter_cls(
            model_path=str(model_path), experimental_delegates=[delegate], num_threads=threads
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise BackendError(f"{runtime} cannot load {model_path}: {reason}") from None
    lib = _exports(delegate)
    pointer = ctypes.c_void_p(delegate._get_native_delegate_pointer())
    feeds = _random_inputs(interpreter)

    def run_once() -> float:
        for index, x in feeds:
            interpreter.set_tensor(index, x)
        start = time.perf_counter()  # outside begin/end: the delegate's sums never exceed it
        lib.binland_profile_begin(pointer)
        try:
            interpreter.invoke()
        except RuntimeError as exc:  # the delegate refused at run time (edge.errors, one line)
            reason = " ".join(str(exc).split())[:300]
            raise BackendError(f"{runtime} failed while running {model_path}: {reason}") from None
        lib.binland_profile_end(pointer)
        return time.perf_counter() - start

    for _ in range(warmup):
        run_once()
    lib.binland_profile_reset(pointer)
    times = np.array([run_once() for _ in range(runs)]) * 1e3
    raw = _read_profile(lib, pointer)
    nodes = {
        d["index"]: d["op_name"]
        for d in interpreter._get_ops_details()
        if d["op_name"] != "DELEGATE"
    }
    report = _summarise(raw, nodes, times, runs)
    report.update(
        model=str(model_path),
        runtime=f"{runtime} {runtime_version(runtime)}",
        threads=threads,
        warmup=warmup,
        library=str(library),
    )
    return report


def _summarise(raw: dict, names: dict[int, str], times: np.ndarray, runs: int) -> dict:
    per_run = 1e3 / max(runs, 1)  # seconds in total -> ms per run
    parts = sorted((p for p in raw["partitions"] if p["seq"] >= 0), key=lambda p: p["seq"])
    ours = {n for p in raw["partitions"] for n in p["nodes"]}
    builtin = sorted(i for i in names if i not in ours)
    # Each builtin node goes to the gap before the first partition (in run order) that
    # starts after it, else to the tail.
    gaps: list[list[int]] = [[] for _ in range(len(parts) + 1)]
    for i in builtin:
        slot = next((k for k, p in enumerate(parts) if min(p["nodes"]) > i), len(parts))
        gaps[slot].append(i)
    rows = []
    by_type: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "nodes": 0, "timed": "delegate"})
    for k, part in enumerate(parts + [None]):
        gap_ms = (part["gap_seconds"] if part else raw["tail_seconds"]) * per_run
        members = gaps[k]
        if members or gap_ms > 0.0:
            types = sorted({names[i] for i in members}) or ["(none)"]
            label = "+".join(types)
            rows.append(
                {
                    "nodes": members,
                    "op": label,
                    "ms": gap_ms,
                    "timed": "by difference",
                    "where": "runtime (XNNPACK)" if members else "runtime",
                }
            )
            entry = by_type[label if len(types) == 1 else f"mixed: {label}"]
            entry["ms"] += gap_ms
            entry["nodes"] += len(members)
            entry["timed"] = "by difference"
        if part is None:
            break
        ops_ms = 0.0
        for op in part["ops"]:
            if op["absorbed"]:
                continue  # computed in the epilogue of the binary conv before it
            ms = op["seconds"] * per_run
            ops_ms += ms
            # "into": the concat this conv writes into, which has its own row.
            fused = [f[0] if f[0] != "into" else "into CONCATENATION" for f in op["fused"]]
            fused_nodes = [f[1] for f in op["fused"] if f[0] != "into"]
            if op["op"] == "LceBconv2d":  # then the next quantize, in its epilogue
                label, members = "+".join([op["op"]] + fused), [op["node"]] + fused_nodes
            elif op["op"] == "CONCATENATION":  # and the ADD after it
                label, members = "+".join([op["op"]] + fused), [op["node"]] + fused_nodes
                if op["in_place"]:
                    label += " (in place)"
            else:  # the MUL/ADD before it
                label, members = "+".join(fused + [op["op"]]), fused_nodes + [op["node"]]
            row = {
                "nodes": members,
                "op": label,
                "ms": ms,
                "timed": "delegate",
                "where": f"binland ({raw['kernel']})",
                "output": op["output"],
                "shape": op["shape"],
            }
            if op["binary_macs"]:
                row["binary_macs"] = op["binary_macs"]
                row["gmacs_per_s"] = op["binary_macs"] / (ms * 1e6) if ms > 0 else None
            rows.append(row)
            entry = by_type[label]
            entry["ms"] += ms
            entry["nodes"] += len(row["nodes"])
        overhead = part["seconds"] * per_run - ops_ms
        by_type["binland partition overhead"]["ms"] += overhead
    mean_ms = float(times.mean())
    delegate_ms = sum(p["seconds"] for p in parts) * per_run
    builtin_ms = (sum(p["gap_seconds"] for p in parts) + raw["tail_seconds"]) * per_run
    total = {
        "mean_ms": mean_ms,
        "median_ms": float(np.median(times)),
        "min_ms": float(times.min()),
        "delegate_ms": delegate_ms,
        "builtin_ms": builtin_ms,
        "unaccounted_ms": mean_ms - delegate_ms - builtin_ms,
    }
    types = [
        {"op": k, **v, "share": v["ms"] / mean_ms if mean_ms else 0.0}
        for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]["ms"])
    ]
    return {
        "kernel": raw["kernel"],
        "fuse": bool(raw["fuse"]),
        "runs": runs,
        "partitions": len(parts),
        "total": total,
        "op_types": types,
        "nodes": rows,
    }


def format_profile(report: dict, top: int = 25) -> str:
    t = report["total"]
    lines = [
        f"profile: {report['model']} in {report['runtime']}, {report['threads']} threads, "
        f"kernel {report['kernel']}, fusion {'on' if report['fuse'] else 'off'}, "
        f"{report['runs']} runs after {report['warmup']} warm-up",
        f"per run: mean {t['mean_ms']:.2f} ms (median {t['median_ms']:.2f}, min "
        f"{t['min_ms']:.2f}); binland delegate {t['delegate_ms']:.2f} ms in "
        f"{report['partitions']} partitions, runtime builtin ops {t['builtin_ms']:.2f} ms (by "
        f"difference), unaccounted {t['unaccounted_ms']:.2f} ms",
        "",
        f"{'op type':<44} {'nodes':>5} {'ms/run':>8} {'share':>6}  timed",
    ]
    for r in report["op_types"]:
        lines.append(
            f"{r['op'][:44]:<44} {r['nodes']:>5} {r['ms']:8.3f} {100 * r['share']:5.1f}%"
            f"  {r['timed']}"
        )
    lines += [
        "",
        f"slowest {top} nodes (or groups of builtin nodes timed together):",
        f"{'nodes':<22} {'op':<30} {'ms/run':>8} {'GMAC/s':>8}  shape",
    ]
    for r in sorted(report["nodes"], key=lambda r: -r["ms"])[:top]:
        nodes = ",".join(str(n) for n in r["nodes"])
        nodes = nodes if len(nodes) <= 22 else nodes[:19] + "..."
        rate = f"{r['gmacs_per_s']:8.0f}" if r.get("gmacs_per_s") else f"{'-':>8}"
        shape = "x".join(str(s) for s in r["shape"]) if "shape" in r else ""
        lines.append(f"{nodes:<22} {r['op'][:30]:<30} {r['ms']:8.3f} {rate}  {shape}")
    return "\n".join(lines)
