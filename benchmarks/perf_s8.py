"""int8 anchor rows of device_bench.py (issue 11's int8 half), without the float32 rows.

    .venv/bin/python benchmarks/perf_s8.py > benchmarks/results/perf_s8.md
    .venv/bin/python benchmarks/perf_s8.py --cells LSTM --no-cycles   # while tuning

The same firmwares, cells, weights, inputs and calibration as benchmarks/device_bench.py (its
functions), at the anchor shape only (input 28, units 32, 28 timesteps), int8 only: core mode on
QEMU mps2-an386 with -icount shift=0, two sessions that must agree, device outputs equal to the
host-compiled core's, and the estimated Cortex-M4 cycles of the first input.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import device_bench as db  # noqa: E402

from fusegen.codegen import write_package  # noqa: E402
from fusegen.lower import class_factory, lower_cell  # noqa: E402

# The int8 anchor figures of benchmarks/results/device_bench.md before this work (main at
# c113128: instructions, estimated M4 cycles) and the instructions when issue 11 was filed.
BEFORE = {"LSTM": (677_760, 924_292), "GRU": (629_640, 886_603), "SimpleRNN": (173_280, 236_632),
          "MinimalGated": (507_800, 727_484), "PeepholeLSTM": (825_320, 1_144_575),
          "IndRNN": (141_240, 200_455), "Exotic": (656_680, 919_574)}
FILED = {"LSTM": 815_600, "GRU": 732_440, "SimpleRNN": 224_180}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", choices=sorted(db.CELLS), default=list(db.CELLS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-cycles", dest="cycles", action="store_false")
    args = parser.parse_args()
    start = time.monotonic()
    shape = db.ANCHOR
    lowered = {}
    for k, (name, cls) in enumerate(db.CELLS.items()):
        if name in args.cells:
            cell = db.random_cell(cls, shape[0], shape[1], seed=k)
            lowered[name] = lower_cell(class_factory(cls, {}), cell, shape[0])
    kernels = db.BUILD / "kernels-int8"
    write_package({low.op_name: low.graph for low in lowered.values()}, kernels, ("f32", "s8"))
    with ThreadPoolExecutor(args.jobs) as pool:
        jobs = {}
        for name, low in lowered.items():
            qcell = db.quantized(low, shape)
            chain = db.int8_chain(low, qcell, shape[2])
            x = qcell.quantize_input(db.inputs(shape))
            jobs[name] = pool.submit(db.measure, f"{name}-{'x'.join(map(str, shape))}-s8", chain,
                                     kernels, x, args.cycles)
        rows = [db.Row(name, "int8", shape, *job.result()) for name, job in jobs.items()]
    elapsed = time.monotonic() - start
    print("# int8 anchor rows on a Cortex-M4 (core mode, QEMU mps2-an386)\n")
    print("```\n.venv/bin/python benchmarks/perf_s8.py > benchmarks/results/perf_s8.md\n```\n")
    print(__doc__.split("\n\n", 2)[2].strip() + "\n")
    print(f"Tools: {db.tool_versions()}. Wall time: {elapsed:.0f} s.\n")
    print(db.COLUMNS + "\n")
    print("\n".join(db.table(rows)) + "\n")
    print("| cell | instructions (first input) | before (device_bench.md, c113128) | "
          "at issue 11 | now / before | estimated M4 cycles | before | now / before |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        count = r.repeat[0][0]
        before, cycles_before = BEFORE[r.cell]
        filed = f"{FILED[r.cell]:,}" if r.cell in FILED else "-"
        cycles = (f"{r.cycles.cycles:,} | {cycles_before:,} | "
                  f"{r.cycles.cycles / cycles_before:.3f}") if r.cycles else "- | - | -"
        print(f"| {r.cell} | {count:,} | {before:,} | {filed} | {count / before:.3f} | "
              f"{cycles} |")


if __name__ == "__main__":
    db.run_main(main)
