"""Masked sequences on a Cortex-M4: an inference on a sequence padded to half its length
against the full sequence (core mode, QEMU mps2-an386, -icount shift=0: exact instruction
counts).

    .venv/bin/python benchmarks/masking_bench.py > benchmarks/results/masking.md

For each cell and dtype, at input 28, units 32, 28 timesteps (device_bench.py's anchor): one op
behind Keras `Masking(0.0)` (the firmware computes NOT_EQUAL(x, 0) over the input, the op reduces
it to a step mask and skips the padded steps, FgSteps in fg_runtime.h) runs a full sequence, the
same sequence with its last 14 steps zero (suffix padding, `pad_sequences(padding="post")`), with
its first 14 zero (prefix padding, the default "pre"), and with 14 zero steps in the middle
(masked one by one: the states are carried, the input projection of a batch of steps is still
computed). The unmasked op on the full sequence is the reference. Every device output equals
the host cores' (int8: bit for bit; float32: within 1e-5), which tests/test_masking_core.py
holds to Keras.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_bench import DTYPE_NAMES, anchor_kernels, anchor_op, qemu_steps, run_main, tool_versions

from fusegen.bench.firmware.core_model import CoreChain, CoreOp, HostChain

SHAPE = (28, 32, 28)  # input size, units, timesteps
MASKED = ("LSTM", "GRU", "SimpleRNN", "MinimalGated")
BUILD = ROOT / "build" / "masking-bench"
FLOAT_TOLERANCE = 1e-5


def padded(x: np.ndarray, pad: float) -> dict[str, np.ndarray]:
    half = SHAPE[2] // 2
    suffix, prefix, middle = x.copy(), x.copy(), x.copy()
    suffix[half:] = pad
    prefix[:half] = pad
    middle[7:7 + half] = pad
    return {"full": x, "suffix": suffix, "prefix": prefix, "middle": middle}


def device_run(chain: CoreChain, kernels: Path, name: str, x: np.ndarray):
    result = qemu_steps(chain, kernels, name, x, BUILD, reset_each=True)
    expected = HostChain(chain).run(x)
    diff = float(np.max(np.abs(result.outputs.reshape(expected.shape).astype(np.float64)
                               - expected)))
    if diff > (0.0 if chain.dtype == "s8" else FLOAT_TOLERANCE):
        raise SystemExit(f"{name}: the device differs from the host cores by {diff}")
    return result.counts


def measure(cell_name: str, dtype: str, kernels: Path) -> dict:
    input_size, units, timesteps = SHAPE
    low, weights, x, pad = anchor_op(cell_name, SHAPE, dtype)  # pad: 0.0 in the input's type
    cases = padded(x, pad)
    op = CoreOp(low.op_name, low.graph, weights, input_size, units, timesteps, False, False,
                dtype)
    tag = f"{cell_name}-{dtype}"
    plain = device_run(CoreChain((op,), ()), kernels, tag + "-plain", x[None])[0]
    masked = device_run(CoreChain((op,), (), mask_value=pad), kernels, tag + "-masked",
                        np.stack(list(cases.values())))
    return {"cell": cell_name, "dtype": DTYPE_NAMES[dtype], "plain": plain,
            **dict(zip(cases, masked))}


def main() -> None:
    start = time.monotonic()
    kernels = anchor_kernels(MASKED, SHAPE, BUILD)
    rows = [measure(name, dtype, kernels) for dtype in ("f32", "s8") for name in MASKED]
    out = [
        "# Masked sequences: cost that follows the length (core mode, QEMU mps2-an386)", "",
        "```", ".venv/bin/python benchmarks/masking_bench.py > benchmarks/results/masking.md",
        "```", "", __doc__.split("\n\n", 2)[2].strip(), "",
        f"Tools: {tool_versions()}. Wall time: {time.monotonic() - start:.0f} s.", "",
        "Instructions per inference (28 steps; 14 of them padding where padded):", "",
        "| cell | dtype | unmasked, full | masked, full | suffix-padded | prefix-padded | "
        "middle-padded | suffix / full | prefix / full |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = 0.0
    for r in rows:
        ratios = (r["suffix"] / r["full"], r["prefix"] / r["full"])
        worst = max(worst, *ratios)
        out.append(f"| {r['cell']} | {r['dtype']} | {r['plain']:,} | {r['full']:,} | "
                   f"{r['suffix']:,} | {r['prefix']:,} | {r['middle']:,} | {ratios[0]:.3f} | "
                   f"{ratios[1]:.3f} |")
    out += ["", f"Largest half-padded / full ratio: {worst:.3f} (the bound is 0.55)."]
    print("\n".join(out))
    if worst > 0.55:
        raise SystemExit(f"a half-padded sequence costs {worst:.3f} x the full one (> 0.55)")


if __name__ == "__main__":
    run_main(main, BUILD)
