"""An estimate, before flashing, of the TFLM arena a converted model needs (`fusegen convert`
prints it): what a user puts in `kArenaSize` first; `fusegen bench --tflm-*` measures it.

    tensors   every tensor without constant data (input, output, activations, variable states),
              summed: an upper bound of what TFLM's planner places (it reuses the room of
              activations whose lifetimes do not overlap)
    scratch   each fused op's scratch buffer (RequestScratchBufferInArena in its Prepare), from
              the host plan of its core; the planner may overlap them (one op runs at a time), so
              the largest is counted
    per-op    TFLM's own per-node data and the fused ops' OpData are not counted: allow about
              1 KiB more
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# TFLM's per-node and per-tensor bookkeeping and the fused ops' OpData, measured on small
# classifiers (Input -> RNN -> Dense: 0.7 to 1 KiB over the tensors and scratch).
TFLM_OVERHEAD = 1024
_TYPE_BYTES = {"FLOAT32": 4, "INT8": 1, "UINT8": 1, "INT16": 2, "INT32": 4, "INT64": 8,
               "BOOL": 1, "FLOAT16": 2}


@dataclass(frozen=True)
class ArenaEstimate:
    tensors: int
    scratch: int
    scratch_known: bool = True  # False: not one chain of fused ops, scratch not estimated

    @property
    def total(self) -> int:
        return self.tensors + self.scratch

    @property
    def suggested(self) -> int:
        """total + TFLM_OVERHEAD, rounded up to 16 bytes."""
        return -(-(self.total + TFLM_OVERHEAD) // 16) * 16

    def line(self) -> str:
        if not self.scratch_known:
            return (f"TFLM arena estimate: tensors without constant data {self.tensors:,} B; the "
                    "fused ops' scratch is estimated only for a chain of fused ops, so measure "
                    "this model with `fusegen bench --tflm-*`")
        return (f"TFLM arena estimate: {self.total:,} B (tensors without constant data "
                f"{self.tensors:,} B + the fused ops' scratch {self.scratch:,} B); with TFLM's "
                f"own per-op data try kArenaSize = {self.suggested:,} and measure with "
                "`fusegen bench --tflm-*`")


def estimate(tflite_bytes: bytes, kernels: Path) -> ArenaEstimate:
    from fusegen.bench.firmware.core_model import HostChain, read_chain
    from fusegen.converter import tflite_file

    info = tflite_file.summary(tflite_bytes)
    tensors = sum(_TYPE_BYTES.get(t.dtype, 4) * int(np.prod(t.shape or (1,)))
                  for t in info.tensors if t.buffer_bytes == 0)
    from fusegen.errors import UserError

    try:
        chain = read_chain(tflite_bytes, kernels)
    except UserError:  # fused ops with builtin layers between them: core mode's plans do not apply
        return ArenaEstimate(tensors, 0, scratch_known=False)
    scratch = 0
    for plan in HostChain(chain).plans():
        if chain.dtype == "s8":
            scratch = max(scratch, 2 * int(plan.scratch_elems_s8))
        else:
            scratch = max(scratch, 4 * int(plan.scratch_elems))
    return ArenaEstimate(tensors, scratch)
