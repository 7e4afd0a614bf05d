"""Instructions per inference of the anchor cells on every target (fusegen/bench/targets.py).

    .venv/bin/python benchmarks/targets_bench.py > benchmarks/results/targets.md

LSTM, GRU and SimpleRNN at the anchor shape (28 inputs, 32 units, 28 timesteps), float32 and
int8, each built in core mode (the generated compute core, weights in flash, no TFLM) for every
target with arm-none-eabi-gcc / riscv64-unknown-elf-gcc -O2 and run in QEMU with
-icount shift=0. Every output is checked against the host-compiled core: int8 equal, float32
within 1e-5. The random cells, inputs and int8 calibration are device_bench.py's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_bench import ANCHOR, CELLS, inputs, int8_chain, quantized, random_cell, run_main

from fusegen.bench.core_bench import CoreBench, core_firmware
from fusegen.bench.firmware.build import FirmwareBuildError
from fusegen.bench.firmware.core_model import HostChain, single_op_chain
from fusegen.bench.targets import TARGETS
from fusegen.codegen import write_package
from fusegen.lower import class_factory, lower_cell

BUILD = Path(__file__).resolve().parents[1] / "build" / "targets-bench"
ANCHOR_CELLS = ("LSTM", "GRU", "SimpleRNN")


def measure(target: str, name: str, chain, kernels: Path, x) -> dict:
    host = HostChain(chain)
    config = core_firmware(chain, host.plans(), kernels, name, build_root=BUILD, target=target)
    try:
        bench = CoreBench.run_qemu(chain, config, x, host, BUILD, progress=lambda _m: None)
    except FirmwareBuildError as e:
        overflow = "overflowed by" in str(e) or "will not fit" in str(e)
        return {"error": "does not fit the board's memory" if overflow else
                str(e).splitlines()[0][:80]}
    if not bench.passed:
        raise SystemExit(f"{target} {name}: outputs differ from the host by {bench.max_abs_diff}")
    s = bench.summary()
    return {"count": s["count_mean"], "ram": s["ram_static_bytes"], "stack": s["stack_used_bytes"],
            "flash": s["flash_bytes"], "diff": bench.max_abs_diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()
    start = time.monotonic()
    targets = args.targets.split(",")
    lowered = {}
    for k, cell_name in enumerate(CELLS):
        if cell_name in ANCHOR_CELLS:
            cls = CELLS[cell_name]
            cell = random_cell(cls, ANCHOR[0], ANCHOR[1], seed=k)
            lowered[cell_name] = lower_cell(class_factory(cls, {}), cell, ANCHOR[0])
    kernels = {"f32": BUILD / "kernels", "s8": BUILD / "kernels-int8"}
    ops = {low.op_name: low.graph for low in lowered.values()}
    write_package(ops, kernels["f32"])
    write_package(ops, kernels["s8"], ("f32", "s8"))
    jobs = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        for cell_name, low in lowered.items():
            for dtype in ("s8", "f32"):
                if dtype == "f32":
                    chain, x = single_op_chain(low.op_name, low.bound, ANCHOR[2]), inputs(ANCHOR)
                else:
                    qcell = quantized(low, ANCHOR)
                    chain, x = int8_chain(low, qcell, ANCHOR[2]), qcell.quantize_input(inputs(ANCHOR))
                for target in targets:
                    name = f"{cell_name}-{dtype}"
                    jobs[cell_name, dtype, target] = pool.submit(measure, target, name, chain,
                                                                 kernels[dtype], x)
        results = {key: job.result() for key, job in jobs.items()}
    report(results, targets, time.monotonic() - start)


def report(results: dict, targets: list[str], elapsed: float) -> None:
    print("# Instructions per inference on every target\n")
    print("Made by `.venv/bin/python benchmarks/targets_bench.py > benchmarks/results/targets.md` "
          f"({elapsed / 60:.0f} min on a shared 2-core machine).\n")
    print("Anchor shape: 28 inputs, 32 units, 28 timesteps, one fused op in core mode "
          "(device_bench.py's random cells and inputs, 2 samples). Every output equals the "
          "host-compiled core (int8) or is within 1e-5 of it (float32). Counts are QEMU "
          "`-icount shift=0` instructions per inference (mean of 2), to the target's resolution; "
          "they are not cycles.\n")
    print("| target | core | int8 kernels | float32 | " +
          " | ".join(f"{c} {d}" for c in ANCHOR_CELLS for d in ("int8", "float32")) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---:" for _ in ANCHOR_CELLS for _ in "ab") + " |")
    for t in targets:
        target = TARGETS[t]
        cells = []
        for c in ANCHOR_CELLS:
            for d in ("s8", "f32"):
                r = results[c, d, t]
                cells.append(f"{r['count']:,.0f}" if "count" in r else r["error"])
        print(f"| `{t}` | {target.core} | {target.kernels} | "
              f"{'hardware' if target.has_fpu else 'emulated'} | " + " | ".join(cells) + " |")
    print("\nMemory of the int8 LSTM (bytes: flash; static RAM; deepest stack):\n")
    print("| target | flash | static RAM | stack used | board RAM |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for t in targets:
        r = results["LSTM", "s8", t]
        if "count" in r:
            print(f"| `{t}` | {r['flash']:,} | {r['ram']:,} | {r['stack']:,} | "
                  f"{TARGETS[t].ram_bytes:,} |")
    m4, m55 = results.get(("LSTM", "s8", "qemu-m4")), results.get(("LSTM", "s8", "qemu-m55"))
    if m4 and m55 and "count" in m4 and "count" in m55:
        print(f"\nint8 LSTM, Cortex-M55 (Helium) / Cortex-M4 (DSP): "
              f"{m55['count'] / m4['count']:.2f}x the instructions.")


if __name__ == "__main__":
    run_main(main, BUILD)
