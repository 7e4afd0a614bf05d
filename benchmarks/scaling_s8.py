"""int8 LSTM on a Cortex-M4 across sizes: instructions per multiply-accumulate (issue 11's
scaling table, int8 half).

    .venv/bin/python benchmarks/scaling_s8.py > benchmarks/results/scaling_s8.md

Input 28, units 16/32/64/128, timesteps 7/28/112; the firmwares, weights, inputs and
calibration of benchmarks/device_bench.py (its functions), core mode on QEMU mps2-an386 with
-icount shift=0, two sessions that must agree, device outputs equal to the host core's. MACs
come from the IR (every matmul's depth x columns, times T).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parent))

import device_bench as db  # noqa: E402

from fusegen.codegen import write_package  # noqa: E402
from fusegen.lower import class_factory, lower_cell  # noqa: E402

INPUT = 28
UNITS = (16, 32, 64, 128)
STEPS = (7, 28, 112)


def main() -> None:
    start = time.monotonic()
    cls = keras.layers.LSTMCell
    lowered = {u: lower_cell(class_factory(cls, {}), db.random_cell(cls, INPUT, u, seed=0), INPUT)
               for u in UNITS}
    kernels = db.BUILD / "kernels-int8-scaling"
    first = next(iter(lowered.values()))
    write_package({first.op_name: first.graph}, kernels, ("f32", "s8"))
    with ThreadPoolExecutor(2) as pool:
        jobs = {}
        for units, low in lowered.items():
            for steps in STEPS:
                shape = (INPUT, units, steps)
                qcell = db.quantized(low, shape)
                chain = db.int8_chain(low, qcell, steps)
                x = qcell.quantize_input(db.inputs(shape))
                jobs[shape] = pool.submit(db.measure, f"scaling-LSTM-{units}x{steps}-s8", chain,
                                          kernels, x, False)
        rows = [(shape, *job.result()) for shape, job in jobs.items()]
    print("# int8 LSTM across sizes on a Cortex-M4 (core mode, QEMU mps2-an386)\n")
    print("```\n.venv/bin/python benchmarks/scaling_s8.py > benchmarks/results/scaling_s8.md\n```\n")
    print(__doc__.split("\n\n", 2)[2].strip() + "\n")
    print(f"Tools: {db.tool_versions()}. Wall time: {time.monotonic() - start:.0f} s.\n")
    print("| input, units, T | instructions / inference | MACs | instructions / MAC | "
          "per timestep | two runs |")
    print("|---|---:|---:|---:|---:|---|")
    for shape, bench, repeat, _ in rows:
        s = bench.summary()
        equal = "equal" if repeat[0] == repeat[1] else "DIFFER"
        print(f"| {', '.join(map(str, shape))} | {repeat[0][0]:,} | {s['macs']:,} | "
              f"{s['count_per_mac']:.2f} | {s['count_per_timestep']:,.0f} | {equal} |")


if __name__ == "__main__":
    db.run_main(main)
