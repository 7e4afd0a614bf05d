"""On-device cost of every fused cell in core mode: flash, RAM, instructions per inference / MAC.

    .venv/bin/python benchmarks/device_bench.py > benchmarks/results/device_bench.md

Each (cell, shape) is one firmware (fusegen bench's core mode: the generated compute core called
directly, weights compiled in, no TFLM) built with arm-none-eabi-gcc -O2 -ffp-contract=off for
the Cortex-M4F and run in QEMU mps2-an386 with -icount shift=0, which counts instructions
exactly. The op is the cell lowered at that shape with random non-zero weights (the chain
`fusegen bench` reads from a converted .tflite, without converting); the anchor LSTM is also run
through `fusegen bench model.tflite` as a cross-check. Every firmware runs the same two inputs in
two separate QEMU sessions; both sessions must report the same counts and outputs within 1e-5
of the host-compiled core.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from exotic import ExoticCell  # noqa: E402
from indrnn import IndRNNCell  # noqa: E402
from minimal_gated import MinimalGatedCell  # noqa: E402
from peephole_lstm import PeepholeLSTMCell  # noqa: E402

from fusegen.bench.core_bench import CoreBench, core_firmware  # noqa: E402
from fusegen.bench.core_model import CoreChain, HostChain, single_op_chain  # noqa: E402
from fusegen.codegen import write_package  # noqa: E402
from fusegen.lower import class_factory, lower_cell  # noqa: E402

CELLS = {"LSTM": keras.layers.LSTMCell, "GRU": keras.layers.GRUCell,
         "SimpleRNN": keras.layers.SimpleRNNCell, "MinimalGated": MinimalGatedCell,
         "PeepholeLSTM": PeepholeLSTMCell, "IndRNN": IndRNNCell, "Exotic": ExoticCell}
SHAPES = ((28, 32, 28), (12, 32, 29), (40, 64, 49))  # (input size, units, timesteps)
ANCHOR = SHAPES[0]
SAMPLES = 2
BUILD = ROOT / "build" / "device-bench"
# TFLM at commit 90b983c2 on the same QEMU machine (arm-none-eabi-gcc 12.2), anchor shape,
# Input(28, 28) -> LSTM(32) -> Dense(10): what the fused op has to beat.
TFLM_FLOAT = 1_775_821  # builtin UNIDIRECTIONAL_SEQUENCE_LSTM, float32, incl. the Dense
TFLM_INT8 = 947_665  # the same with CMSIS-NN, int8


@dataclass(frozen=True)
class Row:
    cell: str
    dtype: str
    shape: tuple[int, int, int]
    bench: CoreBench
    repeat: tuple[list[int], list[int]]  # counts of the two QEMU sessions


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
    return rng.uniform(-1, 1, (SAMPLES, timesteps, input_size)).astype(np.float32)


def measure(name: str, chain: CoreChain, kernels: Path, x: np.ndarray) -> tuple[CoreBench, list]:
    """Builds once, runs the inputs in two QEMU sessions; returns the first and both counts."""
    host = HostChain(chain)
    config = core_firmware(chain, host.plans(), kernels, name, build_root=BUILD)
    quiet = lambda _message: None  # noqa: E731
    first = CoreBench.run_qemu(chain, config, x, host, BUILD, progress=quiet)
    second = CoreBench.run_qemu(chain, config, x, host, BUILD, progress=quiet)
    if not (first.passed and second.passed):
        raise SystemExit(f"{name}: outputs differ from the host core by {first.max_abs_diff}")
    if not np.array_equal(first.result.outputs, second.result.outputs):
        raise SystemExit(f"{name}: the two QEMU sessions gave different outputs")
    return first, [list(first.result.counts), list(second.result.counts)]


def cross_check(cell: keras.layers.Layer, kernels: Path, work: Path) -> dict:
    """The anchor LSTM through the command line: converted with a Dense(10), then benched."""
    import json

    from fusegen.build import convert_model

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
    lines = ["| cell | dtype | input, units, T | flash B | weights B | model code B | RAM B "
             "(model) | stack B | instructions / inference | per timestep | MACs | "
             "instructions / MAC | max abs diff | two runs |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        s, m = r.bench.summary(), r.bench.memory
        equal = "equal" if r.repeat[0] == r.repeat[1] else "DIFFER"
        counts = " / ".join(f"{c:,}" for c in r.repeat[0])
        lines.append(
            f"| {r.cell} | {r.dtype} | {', '.join(map(str, r.shape))} | {m.flash_bytes:,} | "
            f"{m.model_weight_bytes:,} | {m.model_code_bytes:,} | {m.ram_static_bytes:,} "
            f"({m.model_ram_bytes:,}) | {s['stack_used_bytes']:,} | {counts} | "
            f"{s['count_per_timestep']:,.0f} | {s['macs']:,} | {s['count_per_mac']:.2f} | "
            f"{r.bench.max_abs_diff:.1e} | {equal} |")
    return lines


def tool_versions() -> str:
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True)
    qemu = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True)
    return f"{gcc.stdout.splitlines()[0]}; {qemu.stdout.splitlines()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="firmwares built and run at once")
    args = parser.parse_args()
    start = time.monotonic()
    lowered = {}
    for k, (cell_name, cls) in enumerate(CELLS.items()):
        for shape in SHAPES:
            cell = random_cell(cls, shape[0], shape[1], seed=k)
            lowered[cell_name, shape] = (cell, lower_cell(class_factory(cls, {}), cell, shape[0]))
    kernels = BUILD / "kernels"
    write_package({low.op_name: low.graph for _, low in lowered.values()}, kernels)
    jobs = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for (cell_name, shape), (_, low) in lowered.items():
            chain = single_op_chain(low.op_name, low.bound, shape[2])
            name = f"{cell_name}-{'x'.join(map(str, shape))}"
            jobs[cell_name, shape] = pool.submit(measure, name, chain, kernels, inputs(shape))
        rows = [Row(c, "float32", s, *job.result()) for (c, s), job in jobs.items()]
    with tempfile.TemporaryDirectory() as work:
        cli = cross_check(lowered["LSTM", ANCHOR][0], kernels, Path(work))
    elapsed = time.monotonic() - start
    report(rows, cli, elapsed)


def report(rows: list[Row], cli: dict, elapsed: float) -> None:
    anchor = next(r for r in rows if r.cell == "LSTM" and r.shape == ANCHOR)
    anchor_count = anchor.bench.summary()["count_mean"]
    out = [
        "# Fused cells on a Cortex-M4 (core mode, QEMU mps2-an386)",
        "",
        "```",
        ".venv/bin/python benchmarks/device_bench.py > benchmarks/results/device_bench.md",
        "```",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Tools: {tool_versions()}. Wall time of this run: {elapsed:.0f} s on "
        f"{os.cpu_count()} cores.",
        "",
        "Columns: flash = the whole firmware (.text + .data image), of which the model's const "
        "weights and the model code (fw_model.c glue, the compute core, the runtime, libm's "
        "expf/tanhf); the rest (about 4 KB) is the serial server, protocol and board support. "
        "RAM = static .data + .bss, in brackets the model's share (plan, states, scratch, "
        "activations); the rest is the I/O buffers (sized to the model's tensors) and the "
        "server. Stack = deepest use since boot (the server included). Instructions per "
        "inference for each of the two inputs; per timestep and per MAC use their mean. MACs "
        "come from the IR: every MATMUL node's depth x columns, times T. max abs diff = device "
        "against the host-compiled core (float32). two runs = the counts of the second QEMU "
        "session equal the first's, input for input.",
        "",
        *table(rows),
        "",
        "## Against TFLM (anchor shape: input 28, units 32, 28 timesteps, batch 1)",
        "",
        f"- fused LSTM, float32, core mode: {anchor_count:,.0f} instructions per inference "
        f"({anchor.bench.summary()['macs']:,} MACs)",
        f"- TFLM builtin UNIDIRECTIONAL_SEQUENCE_LSTM, float32: {TFLM_FLOAT:,} (includes a "
        f"Dense(10): 320 MACs) -> fused is {TFLM_FLOAT / anchor_count:.2f}x fewer",
        f"- TFLM int8 with CMSIS-NN: {TFLM_INT8:,} (the fused int8 core is not measured here "
        "yet)",
        f"- cross-check through the command line (`fusegen bench lstm.tflite --kernels ... "
        f"--target qemu-m4` on Input -> LSTM -> Dense(10) with the same weights and inputs): "
        f"{', '.join(f'{c:,}' for c in cli['counts'])} instructions, max abs diff "
        f"{cli['check']['max_abs_diff']:.1e}; the Dense is outside core mode "
        f"(not run: {', '.join(cli['not_run'])})",
        "",
        "## Notes",
        "",
        "- Counts are exact and repeatable: QEMU's -icount shift=0 advances virtual time 1 ns per "
        "instruction and the firmware restarts SysTick before each inference (resolution 40). "
        "Two sessions give identical counts (last column).",
        "- The two inputs of a row differ by a few hundred instructions: newlib's expf/tanhf "
        "take data-dependent paths.",
        "- Device outputs differ from the host core (glibc) only through expf/tanhf; the "
        "matmuls and elementwise ops round identically (-ffp-contract=off, same order).",
    ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
