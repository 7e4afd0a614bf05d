"""The recurrent part of a converted model, as core mode runs it: a chain of fused ops.

`read_chain` takes the fused ops of a .tflite (their weights and options) and the kernel
directory `fusegen convert --kernels` wrote (each op's IR, `<stem>.ir.txt`). Builtin ops are
outside core mode: they are listed, not run, and the fused ops must be consecutive, each reading
the previous one's output. `HostChain` runs the same chain through the host-compiled cores (the
reference the firmware is checked against), and `CoreOp.macs` counts multiply-accumulates from
the IR.

    chain = read_chain(Path("m.tflite").read_bytes(), Path("generated"))
    y = HostChain(chain).run(x)            # x [N, T, I] -> [N, ...]
"""

from __future__ import annotations

import ctypes
import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from fusegen.codegen import kernel_files, runtime_sources
from fusegen.codegen import core_context
from fusegen.converter import tflite_file, validate
from fusegen.errors import FileFormatError
from fusegen.frontend.errors import ModelError
from fusegen.host.core import HostCore, StepMask, compile_core, steps_arg
from fusegen.host.core import _plan_struct as plan_struct
from fusegen.ir import Graph, IRError, Op
from fusegen.ir.bound import BoundGraph
from fusegen.ir.text import parse_graph
from fusegen.abi import fused_params
from fusegen.abi import DTYPES as DTYPE_ABIS
from fusegen.abi import MAX_CHUNK, OP_PREFIX

DTYPES = tuple(DTYPE_ABIS)  # the core's eval functions: float32, and int8 (abi.py)


@dataclass(frozen=True)
class CoreOp:
    """One fused op at its sizes, with its constant inputs as stored in the .tflite.

    float32 ("f32"): one float array per graph param ([N, K] matrices). int8 ("s8"): the
    params (int8 matrices, int32 biases, int16 vectors), then qparams and luts."""

    op_name: str
    graph: Graph
    params: tuple[np.ndarray, ...]
    input_size: int
    units: int
    timesteps: int
    return_sequences: bool
    go_backwards: bool
    dtype: str = "f32"
    stateful: bool = False  # states kept between inferences, cleared by RESET_STATE

    @property
    def stem(self) -> str:
        return self.op_name.lower()

    @property
    def graph_params(self) -> tuple[np.ndarray, ...]:
        """The inputs that are graph params (the float op's only constant inputs)."""
        return self.params[:len(self.graph.params)]

    @property
    def bound(self) -> BoundGraph:
        """The graph with the weights in IR layout ([K, N]); checks every weight's shape."""
        weights = {p.name: (w.T if w.ndim == 2 else w)
                   for p, w in zip(self.graph.params, self.graph_params, strict=True)}
        bound = BoundGraph(self.graph, weights, self.units, self.input_size)
        bound.param_values()
        return bound

    @property
    def output_width(self) -> int:
        return self.graph.output_width(self.units, self.input_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One inference's output: [T, W] with return_sequences, else [W]."""
        w = self.output_width
        return (self.timesteps, w) if self.return_sequences else (w,)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one inference: every MATMUL's depth x columns, per step."""
        per_step = sum(self._width(n.inputs[0]) * n.width(self.units, self.input_size)
                       for n in self.graph.nodes if n.op is Op.MATMUL)
        return per_step * self.timesteps

    @property
    def weight_bytes(self) -> int:
        return sum(p.nbytes for p in self.params)

    def _width(self, index: int) -> int:
        return self.graph.nodes[index].width(self.units, self.input_size)

    def summary(self) -> str:
        flags = [f for f, on in (("return_sequences", self.return_sequences),
                                 ("go_backwards", self.go_backwards)) if on]
        return (f"{self.op_name}(input {self.input_size}, units {self.units}, "
                f"{self.timesteps} timesteps{''.join(', ' + f for f in flags)})")


@dataclass(frozen=True)
class CoreChain:
    ops: tuple[CoreOp, ...]
    skipped: tuple[str, ...]  # the model's builtin ops, which core mode does not run
    # int8: (scale, zero point) of the first op's input, as the .tflite records it
    input_qparams: tuple[float, int] | None = None
    # Keras Masking on the chain's input: a step is padding where every feature equals this
    # value (in the input's type: float, or int8 for an int8 chain); every op skips those steps
    # (FgSteps). The firmware computes the mask as the model does: NOT_EQUAL, reduced in the op.
    mask_value: float | int | None = None

    def step_mask(self, x: np.ndarray):
        """The StepMask of one input sample [T, I] (None without mask_value)."""
        if self.mask_value is None:
            return None
        return StepMask((np.asarray(x) != self.mask_value).astype(np.uint8))

    @property
    def dtype(self) -> str:
        return self.ops[0].dtype

    @property
    def input_shape(self) -> tuple[int, int]:
        first = self.ops[0]
        return (first.timesteps, first.input_size)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.ops[-1].output_shape

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def timesteps(self) -> int:
        return self.ops[0].timesteps

    @property
    def weight_bytes(self) -> int:
        return sum(op.weight_bytes for op in self.ops)

    def scope_note(self) -> str:
        """What core mode runs of the model, in one line."""
        ran = " -> ".join(op.op_name for op in self.ops)
        if not self.skipped:
            return f"core mode runs {ran}: the whole model"
        return (f"core mode runs {ran}; builtin ops are out of its scope and not run: "
                f"{', '.join(self.skipped)}")


def read_chain(data: bytes, kernels: Path) -> CoreChain:
    """The chain of fused ops of a .tflite, with each op's graph from `kernels`."""
    validate.read_model(data)  # a damaged file is one line before anything reads it
    summary = tflite_file.summary(data)
    positions = [k for k, op in enumerate(summary.ops) if op.name.startswith(OP_PREFIX)]
    if not positions:
        names = ", ".join(dict.fromkeys(summary.op_names())) or "none"
        raise ModelError(f"the model has no {OP_PREFIX}* ops (its ops: {names}); core mode runs "
                         "the fused recurrent ops of a model converted with `fusegen convert`")
    _check_chain(summary, positions)
    model = validate.read_model(data)
    fused = [op for op in model.subgraphs[0].operators
             if tflite_file.op_name(model, op).startswith(OP_PREFIX)]
    ops = tuple(_core_op(summary.ops[k], model, op, kernels)
                for k, op in zip(positions, fused, strict=True))
    if len({op.dtype for op in ops}) > 1:
        raise ModelError("the fused ops mix float32 and int8; core mode runs one dtype")
    skipped = tuple(op.name for k, op in enumerate(summary.ops) if k not in positions)
    qparams = _qparams(data, summary.ops[positions[0]].inputs[0]) if ops[0].dtype == "s8" else None
    return CoreChain(ops, skipped, qparams, _mask_value(model, summary, positions, fused))


def _mask_value(model, summary: tflite_file.Summary, positions: list[int], fused: list):
    """The Keras `Masking` value of a masked chain (None without a mask): every fused op's mask
    must be NOT_EQUAL(the chain's input, a constant), the mask core mode computes (FgSteps)."""
    masks = {validate.read_options(op.customOptions, "").get("mask", 0) for op in fused}
    if masks == {0}:
        return None
    first = summary.ops[positions[0]]
    sources = {summary.ops[k].inputs[-1] for k in positions}
    makers = [op for op in summary.ops if set(op.outputs) & sources]
    if (0 in masks or len(sources) != 1 or len(makers) != 1 or makers[0].name != "NOT_EQUAL"
            or makers[0].inputs[0] != first.inputs[0]):
        raise ModelError("core mode runs masks computed from the model's input by Keras Masking "
                         "(NOT_EQUAL before the first fused op); this model's mask or length "
                         "input is out of its scope: run it with `fusegen verify` on the host")
    value = tflite_file.tensor_value(model, makers[0].inputs[1])
    if value is None or value.size != 1:
        raise ModelError("the mask's NOT_EQUAL does not compare with one constant value")
    return value.reshape(()).item()


def _qparams(data: bytes, tensor: int) -> tuple[float, int] | None:
    q = tflite_file.read_model(data).subgraphs[0].tensors[tensor].quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def single_op_chain(op_name: str, bound: BoundGraph, timesteps: int, *,
                    return_sequences: bool = False, go_backwards: bool = False) -> CoreChain:
    """A chain of one op with a bound graph's weights, stored as the converter stores them:
    what `read_chain` returns for a converted Input -> RNN model, without converting."""
    op = CoreOp(op_name, bound.graph, fused_params(bound), bound.input_size, bound.units,
                timesteps, return_sequences, go_backwards)
    return CoreChain((op,), ())


def _check_chain(summary: tflite_file.Summary, positions: list[int]) -> None:
    names = [summary.ops[k].name for k in positions]
    if positions != list(range(positions[0], positions[-1] + 1)):
        raise ModelError(f"the fused ops {', '.join(names)} are not consecutive in the model: core "
                         "mode runs one chain of fused ops (builtin layers between them are out of "
                         "its scope)")
    for a, b in itertools.pairwise(positions):
        if summary.ops[b].inputs[0] != summary.ops[a].outputs[0]:
            raise ModelError(f"{summary.ops[b].name} does not read the output of "
                             f"{summary.ops[a].name}: core mode runs a chain of fused ops, not "
                             "branches (Bidirectional layers are out of its scope)")


def _core_op(info: tflite_file.OpInfo, model, tfl_op, kernels: Path) -> CoreOp:
    """The op checked by converter/validate.py against the IR in `kernels`, then what core
    mode adds: one output, constant inputs only."""
    name = info.name
    graph = _graph(name, kernels)
    try:
        checked = validate.fused_op(model, tfl_op, graph)
    except FileFormatError as e:
        raise ModelError(f"{e}; were the kernels in {kernels} generated for this model?") from e
    if checked.return_state or len(info.outputs) != 1:
        raise ModelError(f"{name}: core mode runs ops with one output (no return_state)")
    if checked.state_inputs and not checked.stateful:
        raise ModelError(f"{name}: an input after x is not constant (initial states from another "
                         "op are out of core mode's scope)")
    op = CoreOp(name, graph, checked.consts, checked.input_size, checked.units,
                checked.timesteps, checked.return_sequences, checked.go_backwards,
                checked.dtype, checked.stateful)
    if checked.dtype == "f32":
        op.bound  # noqa: B018 - the weights in IR layout
    return op


def kernel_graphs(data: bytes, kernels: Path) -> dict[str, Graph]:
    """Op name -> IR graph of every fused op of a .tflite, from the kernel directory (checked
    to hold what this fusegen generates)."""
    names = [op.name for op in tflite_file.summary(data).ops if op.name.startswith(OP_PREFIX)]
    return {name: _graph(name, kernels) for name in dict.fromkeys(names)}


def _graph(op_name: str, kernels: Path) -> Graph:
    path = Path(kernels) / f"{op_name.lower()}.ir.txt"
    if not path.is_file():
        raise ModelError(f"{path} not found: --kernels must be the directory `fusegen convert "
                         f"--kernels` wrote for this model")
    try:
        graph = parse_graph(path.read_text())
    except IRError as e:
        raise ModelError(f"{path}: {e}") from e
    _check_generated(op_name, graph, Path(kernels))
    return graph


def _check_generated(op_name: str, graph: Graph, kernels: Path) -> None:
    """The firmware compiles the directory's core, the check the one this fusegen generates from
    the same IR: they must be the same code (comments aside), or the check means nothing."""
    path = kernels / f"{op_name.lower()}_core.c"
    if not path.is_file():
        raise ModelError(f"{path} not found: --kernels must be the directory `fusegen convert "
                         f"--kernels` wrote for this model")
    have = _code(path.read_text())
    for dtypes in (("f32",), ("s8",), DTYPES):
        try:
            if _code(kernel_files(graph, op_name, dtypes)[path.name]) == have:
                return
        except ValueError:  # a cell with no int8 program (QuantizeError)
            continue
    raise ModelError(f"{path} is not what this fusegen generates for {op_name}: regenerate the "
                     f"kernels (fusegen convert ... --kernels {kernels})")


def _code(text: str) -> list[str]:
    """C source without its // comments (the generated cores carry source locations there)."""
    return [line.split("//", 1)[0].rstrip() for line in text.splitlines()]


class HostChain:
    """The chain run by its host-compiled cores: the reference for the firmware."""

    def __init__(self, chain: CoreChain) -> None:
        self.chain = chain

    @cached_property
    def cores(self) -> tuple[HostCore | HostCoreInt8, ...]:
        return tuple(HostCore(op.bound, op.op_name, params=op.params) if op.dtype == "f32"
                     else HostCoreInt8(op) for op in self.chain.ops)

    def plans(self) -> list[object]:
        return [core.plan(op.timesteps, MAX_CHUNK) for core, op in zip(self.cores, self.chain.ops)]

    def run(self, x: np.ndarray) -> np.ndarray:
        """x [N, T, I] -> outputs [N, *output_shape], each sample from zero states."""
        return np.stack([self._one(sample) for sample in x])

    def _one(self, x: np.ndarray) -> np.ndarray:
        mask = self.chain.step_mask(x)
        for core, op in zip(self.cores, self.chain.ops):
            x, _ = core.run(x, op.return_sequences, op.go_backwards, max_chunk=MAX_CHUNK,
                            mask=mask)
        return x


class HostCoreInt8:
    """An int8 op's `_eval_s8`, compiled for the host, run on the op's constant inputs as stored
    (fusegen.host.core_s8.HostCoreS8 does the same from a QuantizedCell)."""

    def __init__(self, op: CoreOp) -> None:
        self.op = op
        self.ctx = core_context(op.graph, op.op_name, DTYPES)
        files = kernel_files(op.graph, op.op_name, DTYPES)
        lib = compile_core(files, self.ctx.stem, (), runtime_sources(DTYPES))
        self.lib = ctypes.CDLL(str(lib))
        self._plan_type = plan_struct(self.ctx)
        *params, self.qparams, self.luts = (np.ascontiguousarray(a) for a in op.params)
        self.params = tuple(params)

    def plan(self, timesteps: int, max_chunk: int = MAX_CHUNK) -> ctypes.Structure:
        plan = self._plan_type()
        fn = getattr(self.lib, f"{self.ctx.stem}_plan")
        fn.restype = ctypes.c_char_p
        error = fn(self.op.input_size, self.op.units, timesteps, max_chunk, ctypes.byref(plan))
        if error is not None:
            raise ValueError(error.decode())
        return plan

    def run(self, x: np.ndarray, return_sequences: bool = False, go_backwards: bool = False,
            max_chunk: int = MAX_CHUNK, mask: StepMask | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """x int8 [T, I] -> (y int8, final states int16)."""
        x = np.ascontiguousarray(x, dtype=np.int8)
        plan = self.plan(x.shape[0], max_chunk)
        states = np.zeros(plan.state_total, np.int16)
        y = np.zeros((x.shape[0], plan.output_width) if return_sequences else plan.output_width,
                     np.int8)
        scratch = np.zeros(plan.scratch_elems_s8, np.int16)
        pointers = (ctypes.c_void_p * max(len(self.params), 1))(
            *[p.ctypes.data for p in self.params])
        fn = getattr(self.lib, f"{self.ctx.stem}_eval_s8")
        fn(ctypes.byref(plan), int(return_sequences), int(go_backwards), _ptr(x), pointers,
           _ptr(self.qparams), _ptr(self.luts), _ptr(states), _ptr(y), _ptr(scratch),
           steps_arg(mask, x.shape[0]))
        return y, states


def _ptr(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)
