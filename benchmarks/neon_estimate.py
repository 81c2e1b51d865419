"""ESTIMATE, not a measurement: how fast the NEON binary kernels and the bundled models would
run on a Raspberry Pi 4 (Cortex-A72) and Pi 5 (Cortex-A76), from a cycle model, without a Pi.

Method (each step is printed into the results file):

1. ``edge/native/bgemm.c`` is cross-compiled for aarch64 with the project's own flags
   (``edge.native.CFLAGS``; as shipped, no ``-mcpu``, and also with ``-mcpu=cortex-a72`` /
   ``-mcpu=cortex-a76``), linked into a tiny harness that makes one kernel call of k words.
2. The call runs once under ``qemu-aarch64-static`` with one instruction per translation block,
   which logs every executed instruction's address: the dynamic trace of exactly one call
   (prologue, k words of loop, widening, stores), mapped to its disassembly.
3. ``llvm-mca`` times (a) one iteration of the hot loop, steady state, and (b) the whole call,
   calls back to back. Cores: ``-mcpu=cortex-a72`` (LLVM's Cortex-A57 model, the A72's
   parent: same pipes), and for the Cortex-A76 ``-mcpu=neoverse-n1`` (the server twin of the
   A76 core; LLVM up to at least 19 maps ``-mcpu=cortex-a76`` to the Cortex-A57 model, which
   the table also shows, labelled). A "step" is one 128-bit XOR + CNT + accumulate: 128 binary
   MACs. The issue limit is what the same model gives for a loop of nothing but independent
   EOR/CNT/ADD triples (3 ASIMD instructions on 2 ASIMD pipes: 1.5 cycles per step on both).
4. The bundled models' ops (parsed from the .tflite) give kernel calls per op; times cycles per
   call / clock / threads gives the binary convs' time. Float convs: MACs / a public per-core
   throughput. Everything else (elementwise ops, epilogues, pools, copies): bytes / bandwidth.
   See ``ASSUMPTIONS`` for each number and its source.

    python -m benchmarks.neon_estimate                       # writes results/neon_estimate.md
    python -m benchmarks.neon_estimate --baseline 71a5bed    # adds a before column (git rev)

Needs aarch64-linux-gnu-gcc, qemu-aarch64-static and llvm-mca + llvm-objdump (Debian:
gcc-aarch64-linux-gnu, qemu-user-static, llvm-19), and a TFLite runtime to read the models.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import REPO, RESULTS_DIR
from edge import native

RESULTS = RESULTS_DIR / "neon_estimate.md"
SOURCE = REPO / "edge" / "native" / "bgemm.c"
MODELS = {"pose": REPO / "edge/models/pose.tflite", "face": REPO / "edge/models/face.tflite"}
CROSS_CC = "aarch64-linux-gnu-gcc"

# (label, llvm-mca -mcpu, clock range in GHz, board)
CORES = (
    ("Cortex-A72", "cortex-a72", (1.5, 1.8), "Pi 4"),
    ("Cortex-A76", "neoverse-n1", (2.4, 2.4), "Pi 5"),
)

# Numbers that are not ours, each with its source; the estimate is only as good as these.
ASSUMPTIONS = {
    # XNNPACK's README (google/XNNPACK, Raspberry Pi table, benchmarked 2020 with end2end-bench):
    # FP32 MobileNet v1 1.0X on an RPi 4 (BCM2711, ARM64), 4 threads: 77 ms. MobileNet v1 is
    # 569 M multiply-adds (Howard et al. 2017, table 1): 2 * 569e6 / 0.077 s = 14.8 GFLOP/s
    # on 4 cores at 1.5 GHz = 2.46 FLOP per cycle per core, the whole network (depthwise and
    # all) included. We use it for the float convs; a 1x1 conv is friendlier than MobileNet's
    # mix, so this errs slow.
    "a72_float_flop_per_cycle": 2 * 569e6 / 0.077 / 4 / 1.5e9,
    # No public XNNPACK figure for the Pi 5 was found. The A76 has the same two 128-bit FMA
    # pipes; its larger window, caches and prefetchers are worth 1x-2x per cycle on such
    # kernels. Range, not a number.
    "a76_float_per_cycle_vs_a72": (1.0, 2.0),
    # Pi 4 STREAM copy, 5.5 GB/s (www.sci-pi.org.uk/bench/stream.html, gcc -O3, whole chip).
    # The models' tensors mostly fit the caches (Pi 4: 1 MB L2; Pi 5: 512 KB L2 per core and
    # 2 MB L3), so DRAM speed is the slow end and 3x it the fast end for the A72.
    "pi4_bandwidth_gbs": (5.5, 16.5),
    # Pi 5: LPDDR4X-4267 against the Pi 4's LPDDR4-3200, and a bigger cache: assumed 2x Pi 4.
    "pi5_bandwidth_gbs": (11.0, 33.0),
    # Share of ideal speed-up the binary convs keep on 4 threads (rows split among threads;
    # small maps have few rows). Low end: 0.6 of min(threads, rows); high end: all of it.
    "thread_efficiency": (0.6, 1.0),
}


# ------------------------------------------------------------------------ tools


def find_tools(preferred: str | None = None) -> dict:
    """The cross compiler, qemu, and every llvm-mca with a Neoverse N1 model: the primary one
    (``preferred``, else llvm-mca-19, Debian Bookworm's, else the newest) and the others, for a
    cross-check. A clear error naming the Debian package for whatever is missing."""
    tools: dict = {}
    for name, package in (
        (CROSS_CC, "gcc-aarch64-linux-gnu"),
        ("qemu-aarch64-static", "qemu-user-static"),
    ):
        found = shutil.which(name)
        if not found:
            raise SystemExit(f"error: {name} not found (apt-get install {package})")
        tools[name] = found
    found = {}
    for version in range(30, 13, -1):
        mca, objdump = shutil.which(f"llvm-mca-{version}"), shutil.which(f"llvm-objdump-{version}")
        if mca and objdump and "N1Unit" in run_mca(mca, ["nop"], "neoverse-n1", 1):
            found[mca] = objdump
    if not found:
        raise SystemExit("error: no llvm-mca with a Neoverse N1 model (apt-get install llvm-19)")
    primary = shutil.which(preferred) if preferred else shutil.which("llvm-mca-19")
    if primary not in found:
        if preferred:
            raise SystemExit(f"error: {preferred} not found or without a Neoverse N1 model")
        primary = next(iter(found))
    tools["llvm-mca"], tools["llvm-objdump"] = primary, found[primary]
    tools["cross-check"] = [m for m in found if m != primary]
    return tools


def tool_versions(tools: dict[str, str]) -> list[str]:
    def first_line(cmd: list[str]) -> str:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()
        return next(
            (line.strip() for line in out if "version" in line.lower()), out[0] if out else "?"
        )

    return [
        f"{CROSS_CC}: {first_line([tools[CROSS_CC], '--version'])}",
        f"qemu-aarch64-static: {first_line([tools['qemu-aarch64-static'], '--version'])}",
        *(
            f"{Path(m).name}: {first_line([m, '--version'])}"
            + (" (primary)" if m == tools["llvm-mca"] else " (cross-check of section 1)")
            for m in [tools["llvm-mca"], *tools["cross-check"]]
        ),
    ]


def run_mca(mca: str, lines: list[str], cpu: str, iterations: int) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".s") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        cmd = [mca, "-march=aarch64", f"-mcpu={cpu}", f"-iterations={iterations}", f.name]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: llvm-mca failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


@dataclass
class Mca:
    cycles: float  # per iteration of the input
    pressure: dict[str, float]  # resource -> cycles of use per iteration
    instructions: int
    uops: float
    dispatch_width: int

    @property
    def binding(self) -> str:
        """The busiest resource, or "dispatch" when the front end's width binds."""
        name, busiest = max(self.pressure.items(), key=lambda kv: kv[1])
        if self.uops / self.dispatch_width >= busiest:
            return f"dispatch ({self.uops:.0f} uops / {self.dispatch_width} a cycle)"
        return f"{name} ({busiest:.1f} cycles)"


def mca(tools: dict, lines: list[str], cpu: str, iterations: int = 200, exe: str = "") -> Mca:
    out = run_mca(exe or tools["llvm-mca"], lines, cpu, iterations)

    def field(name: str) -> float:
        return float(re.search(rf"^{name}:\s+([\d.]+)", out, re.M).group(1))

    names = dict(re.findall(r"^\[([\d.]+)\]\s+-\s+(\S+)", out, re.M))
    block = out.split("Resource pressure per iteration:")[1].strip().splitlines()
    header, values = block[0].split(), block[1].split()
    pressure: dict[str, float] = {}
    for key, value in zip(header, values, strict=True):
        unit = names[key.strip("[]")]
        pressure[unit] = pressure.get(unit, 0.0) + (0.0 if value == "-" else float(value))
    return Mca(
        cycles=field("Total Cycles") / iterations,
        pressure=pressure,
        instructions=int(field("Instructions") / iterations),
        uops=field("Total uOps") / iterations,
        dispatch_width=int(field("Dispatch Width")),
    )


def mca_model_name(tools: dict[str, str], cpu: str) -> str:
    out = run_mca(tools["llvm-mca"], ["nop"], cpu, 1)
    unit = re.search(r"^\[[\d.]+\]\s+-\s+(\S+)", out, re.M).group(1)
    return {"A57": "Cortex-A57 model", "N1": "Neoverse N1 model"}.get(
        re.match(r"[A-Za-z0-9]+?(?=Unit)", unit).group(0), unit
    )


# ------------------------------------------------------------------ the kernels

HARNESS = r"""
#include <stdint.h>
#include <stdlib.h>
#include "bgemm.h"
/* One NEON kernel call of k words (direct: through a koff table), for a trace. */
int main(int argc, char** argv) {
  const int k = atoi(argv[1]), direct = atoi(argv[2]);
  const bgemm_impl* g = bgemm_pick("neon");
  static uint32_t a[8192], b[8192];
  static int32_t koff[512], c[64 * 8];
  for (int i = 0; i < 8192; ++i) a[i] = b[i] = 2654435761u * (unsigned)i;
  for (int i = 0; i < k; ++i) koff[i] = (i / 3) * 40 + i % 3;
  if (direct) g->direct(a, 3, koff, b, k, c, 64);
  else g->kernel(a, (size_t)k, b, k, c, 64);
  return c[0] == 12345;
}
"""


@dataclass
class Build:
    exe: Path
    code: dict[int, str]  # address -> instruction text, for the NEON kernels
    symbols: dict[str, tuple[int, int]]  # name -> [start, end)
    mr: int
    nr: int


def build(tools: dict[str, str], source_text: str, mcpu: str | None, work: Path) -> Build:
    """Cross-compile bgemm.c (the project's flags, optionally -mcpu) into the harness."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "bgemm.c").write_text(source_text)
    shutil.copy(SOURCE.parent / "bgemm.h", work / "bgemm.h")
    (work / "harness.c").write_text(HARNESS)
    flags = [f for f in native.CFLAGS if f != "-shared"] + ([f"-mcpu={mcpu}"] if mcpu else [])
    cc = tools[CROSS_CC]
    subprocess.run([cc, *flags, "-c", "bgemm.c", "-o", "bgemm.o"], cwd=work, check=True)
    subprocess.run(
        [cc, "-O2", "-static", "harness.c", "bgemm.o", "-o", "harness"], cwd=work, check=True
    )
    dis = subprocess.run(
        [
            tools["llvm-objdump"],
            "-d",
            "--no-show-raw-insn",
            "--disassemble-symbols=direct_neon,kernel_neon",
            "harness",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    code: dict[int, str] = {}
    symbols: dict[str, tuple[int, int]] = {}
    current = None
    for line in dis.splitlines():
        if m := re.match(r"^([0-9a-f]+) <(\w+)>:", line):
            current = m.group(2)
            symbols[current] = (int(m.group(1), 16), int(m.group(1), 16))
        elif (m := re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)) and current:
            address = int(m.group(1), 16)
            code[address] = m.group(2).split("//")[0].strip()
            symbols[current] = (symbols[current][0], address + 4)
    return Build(work / "harness", code, symbols, *neon_shape(source_text))


def neon_shape(source_text: str) -> tuple[int, int]:
    """(NEON_MR, NEON_NR) as bgemm.c defines them."""
    mr = int(re.search(r"#define NEON_MR (\d+)", source_text).group(1))
    nr = int(re.search(r"#define NEON_NR (\d+)", source_text).group(1))
    return mr, nr


def trace(tools: dict[str, str], b: Build, k: int, direct: bool) -> list[int]:
    """Addresses of the instructions one kernel call executes, in order."""
    log = b.exe.parent / f"trace-{k}-{int(direct)}.log"
    qemu = tools["qemu-aarch64-static"]
    help_text = subprocess.run([qemu, "-h"], capture_output=True, text=True).stdout
    one = "-one-insn-per-tb" if "one-insn-per-tb" in help_text else "-singlestep"
    subprocess.run(
        [qemu, one, "-d", "exec,nochain", "-D", str(log), str(b.exe), str(k), str(int(direct))],
        check=False,
    )
    start, end = b.symbols["direct_neon" if direct else "kernel_neon"]
    pcs = []
    for line in log.read_text().splitlines():
        if m := re.search(r"\[[0-9a-f]+/([0-9a-f]+)/", line):
            pc = int(m.group(1), 16)
            if start <= pc < end:
                pcs.append(pc)
    log.unlink()
    if not pcs:
        raise SystemExit("error: the qemu trace holds no kernel instruction")
    return pcs


def assembler(b: Build, pcs: list[int]) -> list[str]:
    """The traced instructions as llvm-mca input (branch targets pointed at a label)."""
    lines = ["L0:"]
    for pc in pcs:
        text = re.sub(r"0x[0-9a-f]+ <[^>]*>", "L0", b.code[pc])
        lines.append(text)
    return lines


def hot_loop(pcs: list[int]) -> list[int]:
    """One iteration of the most executed backward jump's loop, in trace order."""
    jumps: dict[tuple[int, int], int] = {}
    for here, after in zip(pcs, pcs[1:], strict=False):
        if after <= here:
            jumps[(after, here)] = jumps.get((after, here), 0) + 1
    (target, branch), _ = max(jumps.items(), key=lambda kv: kv[1])
    first = pcs.index(target)
    end = pcs.index(branch, first)
    return pcs[first : end + 1]


def steps_in(b: Build, pcs: list[int]) -> int:
    """128-bit XOR + CNT + accumulate steps: one per CNT instruction."""
    return sum(b.code[pc].startswith("cnt") for pc in pcs)


IDEAL = [
    line
    for i in range(8)
    for line in (
        f"eor v{i}.16b, v{16 + i}.16b, v{24 + i % 2}.16b",
        f"cnt v{i}.16b, v{i}.16b",
        f"add v{8 + i}.16b, v{8 + i}.16b, v{i}.16b",
    )
]


@dataclass
class KernelCost:
    loop_cycles_per_step: float
    loop_binding: str
    loop_instructions: int
    loop_steps: int
    call_cycles: dict[tuple[int, bool], float]  # (k, direct) -> cycles per call


def kernel_cost(
    tools: dict[str, str], b: Build, cpu: str, ks: list[tuple[int, bool]]
) -> KernelCost:
    pcs = trace(tools, b, 27, True)
    loop = hot_loop(pcs)
    loop_mca = mca(tools, assembler(b, loop), cpu)
    steps = steps_in(b, loop)
    calls = {}
    for k, direct in ks:
        call = trace(tools, b, k, direct)
        calls[(k, direct)] = mca(tools, assembler(b, call), cpu, iterations=50).cycles
    return KernelCost(loop_mca.cycles / steps, loop_mca.binding, len(loop), steps, calls)


# ---------------------------------------------------------------------- models


@dataclass
class Op:
    kind: str
    out_shape: tuple[int, ...]
    k_words: int = 0  # binary convs
    in_channels: int = 0  # real channels (binary: from the producing quantize)
    kernel: tuple[int, int] = (1, 1)
    out_channels: int = 0
    bytes_moved: int = 0  # activations read + written


def read_model(path: Path) -> list[Op]:
    from edge.backends.tflite import choose_runtime, interpreter_api

    interpreter_cls, _ = interpreter_api(choose_runtime())
    it = interpreter_cls(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops_raw = it._get_ops_details()
    producer = {o: op for op in ops_raw for o in op["outputs"]}
    constant = {
        i for i, t in tensors.items() if i not in producer and t["name"] and _is_const(it, i)
    }
    ops = []
    for op in ops_raw:
        name = op["op_name"]
        ins = [i for i in op["inputs"] if i >= 0]
        out = tensors[op["outputs"][0]]
        moved = sum(_nbytes(tensors[i]) for i in ins if i not in constant)
        moved += sum(_nbytes(tensors[o]) for o in op["outputs"])
        entry = Op(name, tuple(int(d) for d in out["shape"]), bytes_moved=moved)
        if name in ("LceBconv2d", "CONV_2D"):
            filt = tuple(int(d) for d in tensors[ins[1]]["shape"])  # (O, kh, kw, I)
            entry.kernel, entry.out_channels = (filt[1], filt[2]), filt[0]
            if name == "LceBconv2d":
                entry.k_words = filt[1] * filt[2] * filt[3]
                quantize = producer.get(ins[0])
                entry.in_channels = (
                    int(tensors[quantize["inputs"][0]]["shape"][-1]) if quantize else 32 * filt[3]
                )
            else:
                entry.in_channels = filt[3]
        ops.append(entry)
    return ops


def _is_const(it, index: int) -> bool:
    try:
        it.get_tensor(index)
    except ValueError:
        return False
    return True


def _nbytes(tensor: dict) -> int:
    return int(math.prod(int(d) for d in tensor["shape"])) * tensor["dtype"]().itemsize


def macs(op: Op) -> int:
    n, h, w, c = op.out_shape
    return n * h * w * c * op.kernel[0] * op.kernel[1] * op.in_channels


def kernel_calls(op: Op, mr: int, nr: int) -> tuple[int, bool]:
    """(calls, direct) the delegate makes for a binary conv (op_bconv2d.c's rule: direct when an
    output row is at least mr pixels wide, else im2col with rows padded to mr)."""
    n, h, w, c = op.out_shape
    blocks = -(-c // nr)
    if w >= mr:
        return n * h * -(-w // mr) * blocks, True
    return -(-(n * h * w) // mr) * blocks, False


# -------------------------------------------------------------------- estimate


def estimate(ops: list[Op], cost: KernelCost, b: Build, core: tuple, threads: int) -> dict:
    label, _, (f_lo, f_hi), board = core
    eff_lo, eff_hi = ASSUMPTIONS["thread_efficiency"]
    binary_cycles_1t = binary_lo = binary_hi = 0.0
    float_flops = rest_bytes = 0.0
    bmacs = 0
    for op in ops:
        if op.kind == "LceBconv2d":
            calls, direct = kernel_calls(op, b.mr, b.nr)
            cycles = calls * cost.call_cycles[(op.k_words, direct)]
            binary_cycles_1t += cycles
            rows = op.out_shape[0] * op.out_shape[1]
            binary_lo += cycles / min(threads, rows)
            binary_hi += cycles / (eff_lo * min(threads, rows))
            bmacs += macs(op)
            rest_bytes += op.bytes_moved  # its epilogue writes the float output
        elif op.kind == "CONV_2D":
            float_flops += 2 * macs(op)
        else:
            rest_bytes += op.bytes_moved
    a72 = ASSUMPTIONS["a72_float_flop_per_cycle"]
    if label == "Cortex-A76":
        lo_mul, hi_mul = ASSUMPTIONS["a76_float_per_cycle_vs_a72"]
        bw = ASSUMPTIONS["pi5_bandwidth_gbs"]
    else:
        lo_mul = hi_mul = 1.0
        bw = ASSUMPTIONS["pi4_bandwidth_gbs"]

    def ms(cycles: float, ghz: float) -> float:
        return 1e3 * cycles / (ghz * 1e9)

    # The float rate is a 4-thread end-to-end figure: its threading is already in it.
    float_fast = float_flops / (a72 * hi_mul * f_hi * 1e9 * threads) * 1e3
    float_slow = float_flops / (a72 * lo_mul * f_lo * 1e9 * threads) * 1e3
    rest_fast, rest_slow = rest_bytes / (bw[1] * 1e9) * 1e3, rest_bytes / (bw[0] * 1e9) * 1e3
    binary_fast, binary_slow = ms(binary_lo / eff_hi, f_hi), ms(binary_hi, f_lo)
    return {
        "board": board,
        "core": label,
        "threads": threads,
        "binary_macs": bmacs,
        "float_macs": float_flops / 2,
        "binary_ms_1t": (ms(binary_cycles_1t, f_hi), ms(binary_cycles_1t, f_lo)),
        "binary_ms": (binary_fast, binary_slow),
        "float_ms": (float_fast, float_slow),
        "rest_ms": (rest_fast, rest_slow),
        "rest_mb": rest_bytes / 1e6,
        "total_ms": (binary_fast + float_fast + rest_fast, binary_slow + float_slow + rest_slow),
    }


# ---------------------------------------------------------------------- report


def rng(t: tuple[float, float]) -> str:
    return f"{t[0]:.1f}-{t[1]:.1f} ms"


def git_source(rev: str) -> str:
    return subprocess.run(
        ["git", "show", f"{rev}:edge/native/bgemm.c"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="REV", help="git revision of bgemm.c to compare")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--mca", help="llvm-mca to use (default: llvm-mca-19, else the newest)")
    args = parser.parse_args(argv)

    tools = find_tools(args.mca)
    sources = {"now": SOURCE.read_text()}
    if args.baseline:
        sources = {f"before ({args.baseline})": git_source(args.baseline), **sources}
    models = {name: read_model(path) for name, path in MODELS.items()}
    ks = sorted(
        {
            (op.k_words, kernel_calls(op, *neon_shape(sources["now"]))[1])
            for ops in models.values()
            for op in ops
            if op.kind == "LceBconv2d"
        }
    )

    lines = [
        "# NEON kernels on a Raspberry Pi: an ESTIMATE from a cycle model (no Pi was used)",
        "",
    ]
    lines += [
        "Made by `python -m benchmarks.neon_estimate"
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + "`. Tools:",
        "",
    ]
    lines += [f"- {v}" for v in tool_versions(tools)]
    lines += [
        f"- llvm-mca `-mcpu=cortex-a72` uses LLVM's {mca_model_name(tools, 'cortex-a72')}; `-mcpu=cortex-a76` its {mca_model_name(tools, 'cortex-a76')}; `-mcpu=neoverse-n1` its {mca_model_name(tools, 'neoverse-n1')} (the A76's server twin: used for the A76 below)",
        "",
    ]

    limits = {cpu: mca(tools, IDEAL, cpu).cycles / 8 for _, cpu, _, _ in CORES}
    lines += ["## 1. The hot loop, steady state (llvm-mca)", ""]
    lines += [
        "One step = one 128-bit EOR + CNT + byte ADD = 128 binary MACs. Issue limit = the same "
        "model's cycles per step for a loop of only independent EOR/CNT/ADD triples: "
        + ", ".join(f"{label} {limits[cpu]:.2f}" for label, cpu, _, _ in CORES)
        + " cycles (3 ASIMD instructions on 2 ASIMD pipes). The loop is the direct "
        "convolution's (k = 27: a 3x3 window of 96 channels); binds = the busiest resource "
        "in the model's pressure table, or dispatch when the front end's width binds.",
        "",
    ]
    lines += [
        "| bgemm.c | compiled with | llvm-mca | -mcpu (model) | loop: instructions / steps "
        "| cycles per step | x issue limit | binds |",
        "|---|---|---|---|---|---:|---:|---|",
    ]
    cpus = {
        "cortex-a72": "cortex-a72 (A57 model)",
        "neoverse-n1": "neoverse-n1 (N1 model)",
        "cortex-a76": "cortex-a76 (A57 model)",
    }
    variants = [
        (None, "as shipped (no -mcpu)", list(cpus)),
        ("cortex-a72", "-mcpu=cortex-a72", ["cortex-a72"]),
        ("cortex-a76", "-mcpu=cortex-a76", ["neoverse-n1", "cortex-a76"]),
    ]
    costs: dict[str, dict[str, KernelCost]] = {}
    builds: dict[str, Build] = {}
    summary: dict[tuple[str, str], tuple[float, float, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, text in sources.items():
            for mcpu, how, targets in variants:
                b = build(tools, text, mcpu, Path(tmp) / f"{len(builds)}")
                builds[f"{tag}/{how}"] = b
                loop = hot_loop(trace(tools, b, 27, True))
                steps = steps_in(b, loop)
                exes = [tools["llvm-mca"], *(tools["cross-check"] if mcpu is None else [])]
                for exe in exes:
                    for cpu in targets:
                        if exe != tools["llvm-mca"] and cpu == "cortex-a76":
                            continue
                        m = mca(tools, assembler(b, loop), cpu, exe=exe)
                        limit = mca(tools, IDEAL, cpu, exe=exe).cycles / 8
                        per = m.cycles / steps
                        if exe == tools["llvm-mca"] and mcpu is None and cpu != "cortex-a76":
                            summary[(tag, cpu)] = (per, per / limit, m.binding)
                        lines.append(
                            f"| {tag} | {how} | {Path(exe).name} | {cpus[cpu]} | {len(loop)} / "
                            f"{steps} | {per:.3f} | {per / limit:.2f} | {m.binding} |"
                        )
            for label, cpu, _, _ in CORES:
                costs.setdefault(tag, {})[label] = kernel_cost(
                    tools, builds[f"{tag}/as shipped (no -mcpu)"], cpu, ks
                )

        said = [
            f"**Hot loop ({tag}, as shipped, {Path(tools['llvm-mca']).name}):** "
            + "; ".join(
                f"{label} {summary[(tag, cpu)][0]:.2f} cycles per 128 binary MACs, "
                f"{summary[(tag, cpu)][1]:.2f}x the issue limit, bound by "
                f"{summary[(tag, cpu)][2]}"
                for label, cpu, _, _ in CORES
            )
            + "."
            for tag in sources
        ]
        at = lines.index("## 1. The hot loop, steady state (llvm-mca)")
        lines[at:at] = [*(line + "\n" for line in said)]
        lines += [
            "",
            "## 2. Whole kernel calls (the code as shipped; a call = 4 pixels x 8 channels x k words)",
            "",
        ]
        lines += [
            "A72: `-mcpu=cortex-a72`, A76: `-mcpu=neoverse-n1`, primary llvm-mca. "
            "Cycles per call from the dynamic trace of one call (prologue, loop, widening, stores), calls back to back; per step = cycles / (8 k).",
            "",
        ]
        header = "| k words | path |" + "".join(
            f" {tag}: {label} cycles (per step) |" for tag in sources for label, _, _, _ in CORES
        )
        lines += [header, "|---:|---|" + "---:|" * (len(sources) * len(CORES))]
        for k, direct in ks:
            row = f"| {k} | {'direct' if direct else 'im2col'} |"
            for tag in sources:
                for label, _, _, _ in CORES:
                    c = costs[tag][label].call_cycles[(k, direct)]
                    row += f" {c:.0f} ({c / (8 * k):.2f}) |"
            lines.append(row)

        now = builds["now/as shipped (no -mcpu)"]
        lines += ["", f"## 3. Estimated latency of the bundled models ({args.threads} threads)", ""]
        lines += [
            "**ESTIMATE.** Binary convs: the delegate's kernel calls per op x the cycle model's cycles per call (section 2, the code as it is now) / clock / threads. Float convs (CONV_2D, XNNPACK): MACs at a public per-core rate. Everything else (quantize, MUL/ADD, concat, pools, upsampling, the convs' float epilogues): bytes read + written / bandwidth. Low end: the higher clock, ideal threading, cache-speed bandwidth; high end: the lower clock, 60 % threading efficiency, DRAM bandwidth.",
            "",
        ]
        lines += [
            "| model | board (core, clock) | binary MACs | binary convs, 1 thread | binary convs | float convs (MACs) | rest (MB moved) | **total (estimate)** |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, ops in models.items():
            for core in CORES:
                e = estimate(ops, costs["now"][core[0]], now, core, args.threads)
                clock = (
                    f"{core[2][0]}-{core[2][1]} GHz"
                    if core[2][0] != core[2][1]
                    else f"{core[2][0]} GHz"
                )
                lines.append(
                    f"| {name} | {e['board']} ({e['core']}, {clock}) | {e['binary_macs'] / 1e6:.0f} M | {rng(e['binary_ms_1t'])} | {rng(e['binary_ms'])} | {rng(e['float_ms'])} ({e['float_macs'] / 1e6:.0f} M) | {rng(e['rest_ms'])} ({e['rest_mb']:.1f}) | **{rng(e['total_ms'])}** |"
                )
    lines += ["", "### Assumptions and sources", ""]
    a = ASSUMPTIONS
    lines += [
        f"- Float convs: {a['a72_float_flop_per_cycle']:.2f} FLOP per cycle per A72 core, from XNNPACK's README (google/XNNPACK, Raspberry Pi table): FP32 MobileNet v1 1.0X, RPi 4 (BCM2711, ARM64), 4 threads, 77 ms; 569 M MACs (MobileNet paper) -> 14.8 GFLOP/s at 1.5 GHz = 3.7 GFLOP/s per core. A76: {a['a76_float_per_cycle_vs_a72'][0]:.0f}-{a['a76_float_per_cycle_vs_a72'][1]:.0f}x that per cycle (no public Pi 5 XNNPACK figure found: an assumption).",
        f"- Bandwidth for the rest: Pi 4 {a['pi4_bandwidth_gbs'][0]}-{a['pi4_bandwidth_gbs'][1]} GB/s (STREAM copy 5.5 GB/s on a Pi 4, www.sci-pi.org.uk/bench/stream.html; 3x that for cache-resident tensors); Pi 5 {a['pi5_bandwidth_gbs'][0]}-{a['pi5_bandwidth_gbs'][1]} GB/s (assumed 2x Pi 4). Bytes counted as every op's activations in + out, unfused: the delegate fuses most MUL/ADD/concat passes, so this errs slow.",
        f"- Threads: binary convs split by output rows, min(threads, rows) ways, {a['thread_efficiency'][0]:.0%}-{a['thread_efficiency'][1]:.0%} efficient; the rest is memory-bound (bandwidth is the chip's, not per thread); the float rate is already a 4-thread figure (scaled linearly for other thread counts).",
        "- Not modelled: cache misses inside the kernels (llvm-mca assumes L1 hits; a call's A rows and B panel are a few KB), the per-task row copies and im2col, the output transform's arithmetic (counted only as bytes), thread wake-ups and partition switches between the delegate and XNNPACK, thermal throttling (a Pi 4 without a heatsink drops below 1.5 GHz). The kernel numbers are a cycle model, not a measurement: llvm-mca's A72 is LLVM's Cortex-A57 model and its A76 the Neoverse N1 model.",
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
