"""The int8 fused op's interface, defined once: its inputs, their order and types.

    0          x        int8 [1, T, I]   asymmetric, the input's (scale, zero point)
    1 .. P     params   one per graph param, in graph order, typed by role:
                          matmul matrix     int8  [N, K]  symmetric, per tensor or per channel
                          matmul bias       int32 [N]     operand zero point folded in
                          elementwise       int16 [N]     symmetric per tensor
    P + 1      qparams  int32 [Q]        the channel flag, scalars (multiplier, shift, zero
                                         point), per-channel arrays; Q depends on the flag;
                                         layout: quantize/program.py
    P + 2      luts     int16 [L, 129]   one table per function of a scale group (lut.py)
    P + 3 ..   states   int16 [1, width] each, in Keras order, symmetric at the state's own
                        power-of-two scale (QuantizedCell.state_scales): the initial states, or
                        with `stateful` variable tensors; optional
  outputs: y int8 [1, T, W] or [1, W], asymmetric; with `return_state` the final states, int16
  like the state inputs. States are the core's own int16 values, so nothing is lost between
  invocations: a stateful op streamed one step at a time equals the whole sequence, bit for bit.

The float op has the same first 1 + P inputs (float32), so one kernel serves both. The generated
TFLM kernel renders this order (kernel.h.j2) and quantizer.QuantizedCell.op_inputs() produces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusegen.ir import Graph
from fusegen.schedule.program import PARAM_BIAS, PARAM_MATRIX, PARAM_VECTOR, build_program


@dataclass(frozen=True)
class InputDef:
    name: str
    dtype: type  # numpy dtype
    tflite_type: str  # the TfLiteType the kernel checks
    rank: int
    doc: str


# The inputs that follow the params, in order.
S8_INPUTS: tuple[InputDef, ...] = (
    InputDef("qparams", np.int32, "kTfLiteInt32", 1,
             "channel flag, multipliers, shifts, zero points, per-channel arrays"),
    InputDef("luts", np.int16, "kTfLiteInt16", 2,
             "one FG_LUT_SIZE-entry table per function of a scale group"),
)
PARAM_DTYPES = {PARAM_MATRIX: np.int8, PARAM_BIAS: np.int32, PARAM_VECTOR: np.int16}
TFLITE_TYPES = {np.int8: "kTfLiteInt8", np.int16: "kTfLiteInt16", np.int32: "kTfLiteInt32"}


def s8_inputs(graph: Graph) -> list[tuple[str, type]]:
    """(name, numpy dtype) of every input of the int8 op, in order."""
    roles = build_program(graph).param_roles
    return ([("input", np.int8)] + [(p.name, PARAM_DTYPES[r]) for p, r in zip(graph.params, roles)]
            + [(d.name, d.dtype) for d in S8_INPUTS])


def param_tflite_types(graph: Graph) -> tuple[str, ...]:
    return tuple(TFLITE_TYPES[PARAM_DTYPES[r]] for r in build_program(graph).param_roles)
