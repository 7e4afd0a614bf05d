"""Compile a generated core with its int8 eval on the host and run `_eval_s8` through ctypes.

The int8 counterpart of fusegen/hostcore.HostCore (same build flags and cache): what the tests
compare with the integer twin, element for element.
"""

from __future__ import annotations

import ctypes

import numpy as np

from fusegen.abi import MAX_CHUNK, OpInputs
from fusegen.codegen import kernel_files, runtime_sources
from fusegen.codegen import core_context
from fusegen.host.core import StepMask, _plan_struct, _ptr, compile_core, steps_arg
from fusegen.quantize.quantizer import QuantizedCell

DTYPES = ("f32", "s8")


class HostCoreS8:
    """One quantized op, compiled for the host (the core carries both evals, as deployed)."""

    def __init__(self, qcell: QuantizedCell, op_name: str, extra_flags: tuple[str, ...] = ()):
        graph = qcell.bound.graph
        self.qcell = qcell
        self.ctx = core_context(graph, op_name, DTYPES)
        self.files = kernel_files(graph, op_name, DTYPES)
        lib = compile_core(self.files, self.ctx.stem, extra_flags, runtime_sources(DTYPES))
        self.lib = ctypes.CDLL(str(lib))
        self._plan_type = _plan_struct(self.ctx)
        self.inputs = [np.ascontiguousarray(a) for a in qcell.op_inputs()]  # after x
        self.op_inputs = OpInputs("s8", len(graph.params))
        if len(self.inputs) != self.op_inputs.constants:
            raise ValueError(f"{op_name}: {len(self.inputs)} constant inputs, the op has "
                             f"{self.op_inputs.constants}")

    def plan(self, timesteps: int, max_chunk: int = MAX_CHUNK) -> ctypes.Structure:
        plan = self._plan_type()
        fn = getattr(self.lib, f"{self.ctx.stem}_plan")
        fn.restype = ctypes.c_char_p
        units, input_size = self.qcell.sizes
        error = fn(input_size, units, timesteps, max_chunk, ctypes.byref(plan))
        if error is not None:
            raise ValueError(error.decode())
        qparams = self.inputs[self.op_inputs.extra("qparams") - 1]
        # qparams[0], the channel flag, picks the layout, as in the kernel's Prepare.
        want = plan.qparam_count_per_channel if qparams[0] != 0 else plan.qparam_count
        if want != qparams.size:
            raise ValueError(f"plan wants {want} qparams, the op has {qparams.size}")
        return plan

    def run(self, x: np.ndarray, return_sequences: bool = False, go_backwards: bool = False,
            states: np.ndarray | None = None, max_chunk: int = MAX_CHUNK,
            mask: StepMask | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x int8 [T, I] -> (y int8, final states int16 [state_total])."""
        if x.dtype != np.int8:
            raise ValueError(f"x must be int8, got {x.dtype}")
        x = np.ascontiguousarray(x)
        plan = self.plan(x.shape[0], max_chunk)
        state = (np.zeros(plan.state_total, np.int16) if states is None
                 else np.array(states, np.int16).copy())
        shape = (x.shape[0], plan.output_width) if return_sequences else (plan.output_width,)
        y = np.zeros(shape, np.int8)
        scratch = np.zeros(plan.scratch_elems_s8, np.int16)
        params = self.inputs[:self.op_inputs.num_params]
        qparams, luts = (self.inputs[self.op_inputs.extra(n) - 1] for n in ("qparams", "luts"))
        pointers = (ctypes.c_void_p * max(len(params), 1))(*[p.ctypes.data for p in params])
        fn = getattr(self.lib, f"{self.ctx.stem}_eval_s8")
        fn(ctypes.byref(plan), int(return_sequences), int(go_backwards), _ptr(x), pointers,
           _ptr(qparams), _ptr(luts), _ptr(state), _ptr(y), _ptr(scratch),
           steps_arg(mask, x.shape[0]))
        return y, state
