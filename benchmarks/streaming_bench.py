"""Streaming on a Cortex-M4: a stateful op fed one frame per inference against one call on the
whole sequence (core mode, QEMU mps2-an386, -icount shift=0: exact instruction counts).

    .venv/bin/python benchmarks/streaming_bench.py > benchmarks/results/streaming_bench.md

For each cell and dtype, at input 28, units 32: the op converted with timesteps=1 and
`stateful=True` runs 28 frames, one inference each, its states kept in the firmware between
inferences (RESET_STATE once, before the first frame); the same op with timesteps=28 runs the
whole sequence in one inference. The last streamed output must equal the whole-sequence output
(int8: bit for bit; float32: within 1e-5), on the device.
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

from fusegen.bench.firmware.core_model import CoreChain, CoreOp

SHAPE = (28, 32, 28)  # input size, units, timesteps: device_bench.py's anchor
STREAMED = ("LSTM", "GRU", "SimpleRNN", "MinimalGated")
BUILD = ROOT / "build" / "streaming-bench"
FLOAT_TOLERANCE = 1e-5


def chain_of(low, weights: tuple, timesteps: int, dtype: str, stateful: bool) -> CoreChain:
    op = CoreOp(low.op_name, low.graph, weights, low.bound.input_size, low.bound.units,
                timesteps, False, False, dtype, stateful)
    return CoreChain((op,), ())


def measure(cell_name: str, dtype: str, kernels: Path) -> dict:
    timesteps = SHAPE[2]
    low, weights, x, _ = anchor_op(cell_name, SHAPE, dtype)
    tag = f"{cell_name}-{dtype}"
    # The whole sequence in one inference; then its frames, one inference each (RESET_STATE once).
    whole = qemu_steps(chain_of(low, weights, timesteps, dtype, False), kernels, tag + "-whole",
                       x[None], BUILD)
    frames = qemu_steps(chain_of(low, weights, 1, dtype, True), kernels, tag + "-stream",
                        x[:, None], BUILD)
    last, expected = frames.outputs.reshape(timesteps, -1)[-1], whole.outputs.reshape(-1)
    diff = float(np.max(np.abs(last.astype(np.float64) - expected)))
    limit = 0.0 if dtype == "s8" else FLOAT_TOLERANCE
    if diff > limit:
        raise SystemExit(f"{tag}: the streamed output differs from the whole sequence by {diff}")
    return {"cell": cell_name, "dtype": DTYPE_NAMES[dtype], "frame": frames.counts,
            "whole": whole.counts[0], "diff": diff}


def main() -> None:
    start = time.monotonic()
    kernels = anchor_kernels(STREAMED, SHAPE, BUILD)
    rows = [measure(name, dtype, kernels) for dtype in ("f32", "s8") for name in STREAMED]
    out = [
        "# Streaming one frame per inference (core mode, QEMU mps2-an386)", "", "```",
        ".venv/bin/python benchmarks/streaming_bench.py > benchmarks/results/streaming_bench.md",
        "```", "", __doc__.split("\n\n", 2)[2].strip(), "",
        f"Tools: {tool_versions()}. Wall time: {time.monotonic() - start:.0f} s.", "",
        "| cell | dtype | instructions / frame (mean; min-max) | whole sequence / timestep | "
        "frame / timestep | last frame vs whole |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        frame, per_step = np.mean(r["frame"]), r["whole"] / SHAPE[2]
        out.append(f"| {r['cell']} | {r['dtype']} | {frame:,.0f}; {min(r['frame']):,}-"
                   f"{max(r['frame']):,} | {per_step:,.0f} | {frame / per_step:.2f} | "
                   f"{r['diff']:.1e} |")
    out += ["", "A frame costs more than a timestep of the whole sequence: the input projection "
            "is batched over up to 4 timesteps in one call (FUSEGEN_MAX_CHUNK), a frame has one; "
            "each inference also pays the call, the plan and the state copy in and out."]
    print("\n".join(out))


if __name__ == "__main__":
    run_main(main, BUILD)
