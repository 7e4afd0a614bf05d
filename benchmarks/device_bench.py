"""On-device cost of every fused cell in core mode: flash, RAM, instructions per inference / MAC.

    .venv/bin/python benchmarks/device_bench.py > benchmarks/results/device_bench.md

Each (cell, shape) is one firmware (fusegen bench's core mode: the generated compute core called
directly, weights compiled in, no TFLM) built with arm-none-eabi-gcc -O2 -ffp-contract=off for
the Cortex-M4F and run in QEMU mps2-an386 with -icount shift=0, which counts instructions
exactly. The op is the cell lowered at that shape with random non-zero weights (the chain
`fusegen bench` reads from a converted .tflite, without converting); the anchor LSTM is also run
through `fusegen bench model.tflite` as a cross-check. Every firmware runs the same two inputs in
two separate QEMU sessions; both must report the same counts, and outputs equal to the
host-compiled core's (int8) or within 1e-5 of them (float32).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from exotic import ExoticCell
from indrnn import IndRNNCell
from minimal_gated import MinimalGatedCell
from peephole_lstm import PeepholeLSTMCell

from fusegen.abi import fused_params
from fusegen.bench.cli import DEVICE_ERRORS, one_line
from fusegen.bench.core_bench import CoreBench, core_firmware
from fusegen.bench.cycles import CycleEstimate, estimate_from_log
from fusegen.bench.firmware.build import build_firmware
from fusegen.bench.firmware.core_model import CoreChain, CoreOp, HostChain, single_op_chain
from fusegen.bench.link.qemu import QemuMachine
from fusegen.bench.runner import BenchResult, run_steps
from fusegen.codegen import write_package
from fusegen.lower import LoweredCell, class_factory, lower_cell
from fusegen.quantize import QuantizedCell, quantize_cell
from fusegen.quantize.scales import asymmetric_int8

CELLS = {"LSTM": keras.layers.LSTMCell, "GRU": keras.layers.GRUCell,
         "SimpleRNN": keras.layers.SimpleRNNCell, "MinimalGated": MinimalGatedCell,
         "PeepholeLSTM": PeepholeLSTMCell, "IndRNN": IndRNNCell, "Exotic": ExoticCell}
SHAPES = ((28, 32, 28), (12, 32, 29), (40, 64, 49))  # (input size, units, timesteps)
ANCHOR = SHAPES[0]
SAMPLES = 2
CALIBRATION_SEQUENCES = 16
INPUT_RANGE = (-1.0, 1.0)  # of the random inputs, and so of the int8 input's quantization
DTYPE_NAMES = {"f32": "float32", "s8": "int8"}
BUILD = ROOT / "build" / "device-bench"
# TFLM at commit 90b983c2 on the same QEMU machine (arm-none-eabi-gcc 12.2), anchor shape,
# Input(28, 28) -> LSTM(32) -> Dense(10): what the fused op has to beat.
TFLM_FLOAT = 1_775_821  # builtin UNIDIRECTIONAL_SEQUENCE_LSTM, float32, incl. the Dense
TFLM_INT8 = 947_665  # the same with CMSIS-NN, int8


TABLE_HEADER = ("| cell | dtype | input, units, T | flash B | weights B | model code B | RAM B "
                "(model) | stack B | instructions / inference | per timestep | MACs | "
                "instructions / MAC | estimated M4 cycles | cycles / MAC | max abs diff | two runs |")
COLUMNS = (
    "Columns: flash = the whole firmware (.text + .data image), of which the model's constant "
    "inputs (weights; for int8 also qparams and lookup tables) and the model code (fw_model.c "
    "glue, the compute core, the runtime); the rest (about 4 KB) is "
    "the serial server, protocol and board support. RAM = static .data + .bss, in brackets the "
    "model's share (plan, states, scratch, activations); the rest is the I/O buffers (sized to "
    "the model's tensors) and the server. Stack = deepest use since boot (the server included). "
    "Instructions per inference for each of the two inputs; per timestep and per MAC use their "
    "mean. MACs come from the IR: every MATMUL node's depth x columns, times T. max abs diff = "
    "device against the host-compiled core (float32 values; int8 output steps, which must be "
    "0). two runs = the counts of the second QEMU session equal the first's, input for input. "
    "estimated M4 cycles (anchor shape) = the first input's inference in a third, traced QEMU "
    "session "
    "(-d in_asm,exec,nochain): every executed instruction weighted by its class's cost in the "
    "Cortex-M4 TRM's timing tables, zero wait states (fusegen/bench/cycles.py has the table and "
    "its limits); an estimate, not a measurement.")
NOTES = (
    ("- Counts are exact and repeatable: QEMU's -icount shift=0 advances virtual time 1 ns per "
     "instruction and the firmware restarts SysTick before each inference (resolution 40). Two "
     "sessions give identical counts (last column)."),
    ("- The two inputs of a row may differ by a few hundred instructions: saturation and "
     "rounding branches (int8); float32 sigmoid and tanh branch only beyond |x| = 87 and 9."),
    ("- Float device outputs equal the host core's: exp, sigmoid and tanh are the runtime's own "
     "IEEE single operations (no libm), the matmuls and elementwise ops round identically "
     "(-ffp-contract=off, same order)."),
    ("- The float32 matmul multiplies and adds with VMUL + VADD (2 cycles per MAC on a "
     "Cortex-M4), not VMLA.F32 (1 instruction, 3 cycles): optimised for cycles. Built with "
     "-DFG_F32_VMLA=1 (--f32-vmla) the anchor LSTM takes 409,440 instructions but 1,136,850 "
     "estimated cycles (VMUL + VADD: 617,320 and 929,245); "
     "both round identically."),
    ("- int8: quantized with fusegen.quantize (16 random calibration sequences, input range "
     "[-1, 1]); device outputs equal the host core's exactly."),
)


@dataclass(frozen=True)
class Row:
    cell: str
    dtype: str
    shape: tuple[int, int, int]
    bench: CoreBench
    repeat: tuple[list[int], list[int]]  # counts of the two QEMU sessions
    cycles: CycleEstimate | None  # of the first input, with --cycles


def random_cell(cls: type, input_size: int, units: int, seed: int) -> keras.layers.Layer:
    """A built cell with uniform non-zero weights, matrices scaled by 1/sqrt(fan-in)."""
    cell = cls(units)
    layer = keras.layers.RNN(cell)
    layer(np.zeros((1, 1, input_size), np.float32))
    rng = np.random.default_rng(seed)
    for w in cell.weights:
        scale = 1.2 / np.sqrt(w.shape[0]) if len(w.shape) == 2 else 0.6
        w.assign(rng.uniform(-scale, scale, w.shape).astype(np.float32))
    return cell


def inputs(shape: tuple[int, int, int]) -> np.ndarray:
    input_size, _, timesteps = shape
    rng = np.random.default_rng(sum(shape))
    return rng.uniform(*INPUT_RANGE, (SAMPLES, timesteps, input_size)).astype(np.float32)


def quantized(low: LoweredCell, shape: tuple[int, int, int]) -> QuantizedCell:
    """The int8 op of a lowered cell, calibrated on random sequences like the bench inputs."""
    input_size, _, timesteps = shape
    rng = np.random.default_rng(1000 + sum(shape))
    calibration = rng.uniform(*INPUT_RANGE, (CALIBRATION_SEQUENCES, timesteps, input_size))
    return quantize_cell(low.bound, calibration.astype(np.float32), asymmetric_int8(*INPUT_RANGE))


def int8_chain(low: LoweredCell, qcell: QuantizedCell, timesteps: int) -> CoreChain:
    op = CoreOp(low.op_name, low.graph, tuple(qcell.op_inputs()), low.bound.input_size,
                low.bound.units, timesteps, False, False, "s8")
    return CoreChain((op,), ())


def anchor_op(cell_name: str, shape: tuple[int, int, int], dtype: str):
    """The catalog cell `cell_name` with random weights (seeded by its place in CELLS), lowered;
    its op's weights in `dtype` (f32 or s8) and a random input sequence [T, I] in the op's
    input type. Returns (lowered cell, weights, x, the input's zero in the op's type)."""
    input_size, units, timesteps = shape
    cls = CELLS[cell_name]
    cell = random_cell(cls, input_size, units, seed=list(CELLS).index(cell_name))
    low = lower_cell(class_factory(cls, {}), cell, input_size)
    x = np.random.default_rng(7).uniform(-1, 1, (timesteps, input_size)).astype(np.float32)
    if dtype == "s8":
        qcell = quantized(low, shape)
        return low, tuple(qcell.op_inputs()), qcell.quantize_input(x), int(qcell.input_qparams[1])
    return low, fused_params(low.bound), x, 0.0


def anchor_kernels(cell_names: tuple[str, ...], shape: tuple[int, int, int], build: Path) -> Path:
    """The f32 and s8 kernels of the anchor ops of `cell_names`, in build/kernels."""
    ops = {}
    for name in cell_names:
        low = anchor_op(name, shape, "f32")[0]
        ops[low.op_name] = low.graph
    kernels = build / "kernels"
    write_package(ops, kernels, ("f32", "s8"))
    return kernels


def qemu_steps(chain: CoreChain, kernels: Path, name: str, steps: np.ndarray, build: Path,
               reset_each: bool = False) -> BenchResult:
    """Builds the core-mode firmware of `chain` and runs `steps` in one QEMU session:
    RESET_STATE, then one inference per step (reset_each: each from the zero state)."""
    config = core_firmware(chain, HostChain(chain).plans(), kernels, name, build_root=build)
    with QemuMachine(build_firmware(config, build)) as machine:
        return run_steps(machine.link, steps, reset_each=reset_each)


def measure(name: str, chain: CoreChain, kernels: Path, x: np.ndarray,
            cycles: bool) -> tuple[CoreBench, list, CycleEstimate | None]:
    """Builds once, runs the inputs in two QEMU sessions; returns the first, both counts and
    (with cycles) the estimated cycles of the first input from a third, traced session."""
    host = HostChain(chain)
    config = core_firmware(chain, host.plans(), kernels, name, build_root=BUILD)
    quiet = lambda _message: None
    first = CoreBench.run_qemu(chain, config, x, host, BUILD, progress=quiet)
    second = CoreBench.run_qemu(chain, config, x, host, BUILD, progress=quiet)
    if not (first.passed and second.passed):
        raise SystemExit(f"{name}: outputs differ from the host core by {first.max_abs_diff}")
    if not np.array_equal(first.result.outputs, second.result.outputs):
        raise SystemExit(f"{name}: the two QEMU sessions gave different outputs")
    counts = [list(first.result.counts), list(second.result.counts)]
    if not cycles:
        return first, counts, None
    trace = BUILD / f"{name}.trace"
    CoreBench.run_qemu(chain, config, x[:1], host, BUILD, progress=quiet, trace_path=trace)
    estimate = estimate_from_log(trace, build_firmware(config, BUILD))
    # The histogram counts what QEMU executed between fw_model_run's entry and return; the
    # firmware's SysTick count (resolution 40) differs from it by under 0.1%.
    if abs(estimate.instructions - counts[0][0]) > 0.002 * counts[0][0] + 40:
        raise SystemExit(f"{name}: the trace has {estimate.instructions} instructions, QEMU "
                         f"counted {counts[0][0]} (trace kept: {trace})")
    if os.environ.get("FUSEGEN_PROFILE"):
        top = ", ".join(f"{f} {n:,}" for f, n in estimate.functions.most_common(12))
        print(f"{name}: {top}", file=sys.stderr)
    if not os.environ.get("FUSEGEN_KEEP_TRACE"):
        trace.unlink()
    return first, counts, estimate


def cross_check(cell: keras.layers.Layer, work: Path) -> dict:
    """The anchor LSTM through the command line: converted with a Dense(10), then benched."""
    import json

    from fusegen.commands.build import convert_model

    input_size, _, timesteps = ANCHOR
    model = keras.Sequential([keras.Input((timesteps, input_size)), keras.layers.RNN(cell),
                              keras.layers.Dense(10)])
    model.save(work / "lstm.keras")
    convert_model(work / "lstm.keras", [], work / "lstm.tflite", work / "kernels")
    np.save(work / "x.npy", inputs(ANCHOR))
    command = [sys.executable, "-m", "fusegen.cli", "bench", str(work / "lstm.tflite"),
               "--kernels", str(work / "kernels"), "--inputs", str(work / "x.npy"),
               "--target", "qemu-m4", "--json", str(work / "r.json"), "--build-root", str(BUILD)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads((work / "r.json").read_text())


def table(rows: list[Row]) -> list[str]:
    lines = [TABLE_HEADER,
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        s, m = r.bench.summary(), r.bench.memory
        equal = "equal" if r.repeat[0] == r.repeat[1] else "DIFFER"
        counts = " / ".join(f"{c:,}" for c in r.repeat[0])
        cycles = f"{r.cycles.cycles:,}" if r.cycles else "-"
        cycles_per_mac = f"{r.cycles.cycles / s['macs']:.2f}" if r.cycles else "-"
        lines.append(
            f"| {r.cell} | {r.dtype} | {', '.join(map(str, r.shape))} | {m.flash_bytes:,} | "
            f"{m.model_weight_bytes:,} | {m.model_code_bytes:,} | {m.ram_static_bytes:,} "
            f"({m.model_ram_bytes:,}) | {s['stack_used_bytes']:,} | {counts} | "
            f"{s['count_per_timestep']:,.0f} | {s['macs']:,} | {s['count_per_mac']:.2f} | "
            f"{cycles} | {cycles_per_mac} | {r.bench.max_abs_diff:.1e} | {equal} |")
    return lines


def tool_versions() -> str:
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], check=True, capture_output=True,
                         text=True)
    qemu = subprocess.run(["qemu-system-arm", "--version"], check=True, capture_output=True,
                          text=True)
    return f"{gcc.stdout.splitlines()[0]}; {qemu.stdout.splitlines()[0]}"


def run_main(main: Callable[[], None], build: Path = BUILD) -> None:
    """Runs a benchmark script's main: a firmware that does not build, QEMU, the serial link or
    the device failing is one line on stderr and exit status 1, not a traceback (the details
    of a multi-line error go to a log in build, which the line names)."""
    try:
        main()
    except DEVICE_ERRORS as err:
        raise SystemExit(f"{Path(sys.argv[0]).name}: error: {one_line(err, build)}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="firmwares built and run at once")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPE_NAMES),
                        default=list(DTYPE_NAMES))
    parser.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=list(CELLS),
                        help="a subset of the cells (while tuning; the committed table has all)")
    parser.add_argument("--no-cycles", dest="cycles", action="store_false",
                        help="skip the traced QEMU session that estimates Cortex-M4 cycles")
    parser.add_argument("--anchor-only", action="store_true",
                        help="only the anchor shape (while tuning)")
    parser.add_argument("--shape", action="append", default=[], metavar="I,U,T",
                        help="measure this (input size, units, timesteps) instead of the table's "
                             "shapes (repeatable; cycles are estimated at the anchor only)")
    parser.add_argument("--f32-vmla", action="store_true",
                        help="build the float32 runtime with FG_F32_VMLA=1 (VMLA.F32: fewer "
                             "instructions, more Cortex-M4 cycles; same results)")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table only, without the command-line cross-check")
    args = parser.parse_args()
    try:
        shapes = tuple(tuple(int(v) for v in text.split(",")) for text in args.shape)
    except ValueError:
        parser.error("--shape takes three integers: input size, units, timesteps (28,32,28)")
    if any(len(shape) != 3 or min(shape) < 1 for shape in shapes):
        parser.error("--shape takes three positive integers: input size, units, timesteps")
    start = time.monotonic()
    lowered = {}
    for k, (cell_name, cls) in enumerate(CELLS.items()):
        if cell_name not in args.cells:
            continue
        for shape in shapes or ((ANCHOR,) if args.anchor_only else SHAPES):
            cell = random_cell(cls, shape[0], shape[1], seed=k)
            lowered[cell_name, shape] = (cell, lower_cell(class_factory(cls, {}), cell, shape[0]))
    ops = {low.op_name: low.graph for _, low in lowered.values()}
    kernels = {"f32": BUILD / "kernels", "s8": BUILD / "kernels-int8"}
    write_package(ops, kernels["f32"])
    write_package(ops, kernels["s8"], ("f32", "s8"))
    if args.f32_vmla:
        # The firmware builds the kernel directory's runtime copy: select VMLA there.
        for directory in kernels.values():
            path = directory / "tflm_kernels" / "runtime" / "fg_runtime_f32.c"
            text = path.read_text()
            if "#define FG_F32_VMLA 0\n" not in text:
                raise SystemExit(f"{path}: no FG_F32_VMLA default to change")
            path.write_text(text.replace("#define FG_F32_VMLA 0\n", "#define FG_F32_VMLA 1\n"))
    jobs = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for dtype in args.dtypes:
            for (cell_name, shape), (_, low) in lowered.items():
                if dtype == "f32":
                    chain, x = single_op_chain(low.op_name, low.bound, shape[2]), inputs(shape)
                else:
                    qcell = quantized(low, shape)
                    chain, x = int8_chain(low, qcell, shape[2]), qcell.quantize_input(inputs(shape))
                name = f"{cell_name}-{'x'.join(map(str, shape))}-{dtype}"
                jobs[cell_name, shape, dtype] = pool.submit(measure, name, chain, kernels[dtype], x,
                                                          args.cycles and shape == ANCHOR)
        rows = [Row(c, DTYPE_NAMES[d], s, *job.result()) for (c, s, d), job in jobs.items()]
    if ("LSTM", ANCHOR) not in lowered or args.table_only:
        print("\n".join(table(rows)))
        return
    with tempfile.TemporaryDirectory() as work:
        cli = cross_check(lowered["LSTM", ANCHOR][0], Path(work))
    elapsed = time.monotonic() - start
    report(rows, cli, elapsed)


def int8_matmul_note() -> str:
    """Which int8 matmul the runtime has: the Cortex-M DSP one (SMLAD) or only the portable."""
    source = (ROOT / "fusegen" / "tflm_kernels" / "runtime" / "fg_runtime_q.c").read_text()
    if "__smlad" in source:
        return ("The int8 matmul uses the DSP extension (SMLAD, two 16-bit multiply-accumulates "
                "per instruction).")
    return ("The int8 matmul is the portable C loop (5 instructions per multiply-accumulate on "
            "the M4); the DSP extension (SMLAD) is not used yet.")


def cross_check_text(cli: dict) -> str:
    counts = ", ".join(f"{c:,}" for c in cli["counts"])
    return ("Cross-check through the command line (`fusegen bench lstm.tflite --kernels ... "
            "--target qemu-m4` on Input -> LSTM -> Dense(10), same weights and inputs as the "
            f"float32 anchor row): {counts} instructions, max abs diff "
            f"{cli['check']['max_abs_diff']:.1e}; the Dense is outside core mode (not run: "
            f"{', '.join(cli['not_run'])}).")


def report(rows: list[Row], cli: dict, elapsed: float) -> None:
    anchor = {r.dtype: r.bench.summary() for r in rows if r.cell == "LSTM" and r.shape == ANCHOR}
    out = [
        "# Fused cells on a Cortex-M4 (core mode, QEMU mps2-an386)",
        "",
        "```",
        ".venv/bin/python benchmarks/device_bench.py > benchmarks/results/device_bench.md",
        "```",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        (f"Tools: {tool_versions()}. Wall time of this run: {elapsed:.0f} s on "
         f"{os.cpu_count()} cores."),
        "",
        COLUMNS,
        "",
        *table(rows),
        "",
        "## Against TFLM (anchor shape: input 28, units 32, 28 timesteps, batch 1)",
        "",
        "| | instructions / inference | TFLM | fused / TFLM |",
        "|---|---:|---:|---:|",
    ]
    for dtype, tflm, what in (("float32", TFLM_FLOAT, "builtin UNIDIRECTIONAL_SEQUENCE_LSTM"),
                              ("int8", TFLM_INT8, "with CMSIS-NN")):
        if dtype in anchor:
            mean = anchor[dtype]["count_mean"]
            out.append(f"| fused LSTM, {dtype} | {mean:,.0f} | {tflm:,} ({what}) | "
                       f"{mean / tflm:.2f} |")
    out += [
        "",
        "TFLM's counts include a Dense(10) (320 MACs, under 0.2% of the LSTM's 215,040). "
        + int8_matmul_note(),
        "",
        cross_check_text(cli),
        "",
        "## Notes",
        "",
        *NOTES,
    ]
    print("\n".join(out))


if __name__ == "__main__":
    run_main(main)
