"""Renders op_templates/fw_model.c.j2: a chain of fused ops as the firmware's model (core mode).

The generated fw_model.c implements firmware/app/fw_model.h by calling each op's compute core
(`<stem>_plan` once, `<stem>_eval_f32` per inference) with the weights compiled in, optionally
followed by a float32 Dense head (`fusegen compare`'s classifiers). Every number the template
prints is computed here; buffer sizes come from the host plan (`HostCore.plan`), which depends
only on the dims, so the device's plan agrees (its Prepare checks).

    sources, includes = write_model_sources(chain, plans, Path("generated"), out_dir, "m")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusegen.abi import MAX_CHUNK
from fusegen.bench.firmware.core_model import CoreChain, CoreOp
from fusegen.codegen.core import c_float
from fusegen.codegen.render import render, write
from fusegen.paths import RUNTIME
from fusegen.abi import S8_INPUTS

_NAME_LENGTH = 48  # DESCRIBE sends names as u8-length strings; keep them short


@dataclass(frozen=True)
class DtypeContext:
    """What changes in fw_model.c with the op's dtype (the core's `_eval_<suffix>`)."""

    suffix: str
    fw_dtype: str  # the fw_model.h enum value
    io_type: str  # x, y and the activations between ops
    state_type: str
    scratch_type: str
    params_type: str  # of the params pointer array eval takes
    state_suffix: str  # of fg_fill_<suffix>, which zeroes the states
    zero: str
    scratch_field: str  # the Plan field with the scratch size
    io_bytes: int
    runtime: tuple[str, ...]  # runtime sources to link, relative to the kernel directory


DTYPE_CONTEXTS = {
    "f32": DtypeContext("f32", "kFwDtypeFloat32", "float", "float", "float", "const float*",
                        "f32", "0.0f", "scratch_elems", 4,
                        ("tflm_kernels/runtime/fg_runtime_f32.c",)),
    # States are symmetric int16, so zero is 0. The s8 core also holds eval_f32, hence both.
    "s8": DtypeContext("s8", "kFwDtypeInt8", "int8_t", "int16_t", "int16_t", "const void*",
                       "s16", "0", "scratch_elems_s8", 1,
                       ("tflm_kernels/runtime/fg_runtime_f32.c",
                        "tflm_kernels/runtime/fg_runtime_q.c")),
}
_C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.int8): "int8_t",
            np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t"}


@dataclass(frozen=True)
class CArray:
    name: str
    c_type: str
    comment: str
    size: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Buffer:
    name: str
    elems: int
    comment: str


@dataclass(frozen=True)
class OpContext:
    index: int
    op_name: str
    stem: str
    prefix: str
    summary: str
    input_size: int
    units: int
    timesteps: int
    max_chunk: int
    return_sequences: int
    go_backwards: int
    state_total: int
    stateful: int  # 1: states survive inferences (cleared by fw_model_reset)
    params: tuple[CArray, ...]  # the params eval takes through its `params` pointer array
    extra: tuple[CArray, ...]  # constant inputs eval takes as arguments (int8: qparams, luts)
    x: str  # C expression of the op's input
    y: str  # and of its output


@dataclass(frozen=True)
class DenseHead:
    """A float32 Dense layer after the chain's last op, computed in C by fg_matmul_f32: the
    classifier head of `fusegen compare`. Its softmax is left out (the output is the logits):
    it does not change the predicted class."""

    kernel: np.ndarray  # [depth, classes], as Keras stores it
    bias: np.ndarray  # [classes]

    @property
    def classes(self) -> int:
        return int(self.bias.size)

    @property
    def weight_bytes(self) -> int:
        return 4 * (self.kernel.size + self.bias.size)  # float32 constants in C


@dataclass(frozen=True)
class S8DenseHead:
    """The int8 FULLY_CONNECTED after the chain's last op of a full-int8 file (TFLite's int8
    FULLY_CONNECTED arithmetic: int32 accumulation, MultiplyByQuantizedMultiplier, output zero
    point, clamp), computed in C by fg_matmul_s8; its SOFTMAX is left out, as DenseHead's."""

    weights: np.ndarray  # int8 [classes, depth], symmetric
    bias: np.ndarray  # int32 [classes], the input zero point folded in (bias - zp_in * sum w)
    multiplier: tuple[int, ...]  # one per tensor, or one per output channel
    shift: tuple[int, ...]
    output_zero_point: int

    @property
    def classes(self) -> int:
        return int(self.bias.size)

    @property
    def weight_bytes(self) -> int:
        return self.weights.size + 4 * self.bias.size

    @classmethod
    def from_tflite(cls, weights: np.ndarray, bias: np.ndarray | None, input_q: tuple[float, int],
                    weight_scales: list[float], output_q: tuple[float, int]) -> S8DenseHead:
        """weight_scales: one (per tensor) or one per output channel."""
        from fusegen.quantize.scales import quantize_multiplier

        w = np.asarray(weights, np.int8)
        b = np.zeros(w.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
        folded = b - int(input_q[1]) * w.astype(np.int64).sum(axis=1)
        if len(weight_scales) not in (1, w.shape[0]):
            raise ValueError(f"{len(weight_scales)} weight scales for {w.shape[0]} channels")
        pairs = [quantize_multiplier(input_q[0] * scale / output_q[0]) for scale in weight_scales]
        return cls(w, folded.astype(np.int32), tuple(m for m, _ in pairs),
                   tuple(s for _, s in pairs), int(output_q[1]))

    @property
    def channel_step(self) -> int:
        return 1 if len(self.multiplier) > 1 else 0

    def run(self, x: np.ndarray) -> np.ndarray:
        """The numpy twin: [N, depth] int8 -> [N, classes] int8."""
        from fusegen.reference.int_interp import MBQM

        acc = x.astype(np.int64) @ self.weights.astype(np.int64).T + self.bias
        multiplier = np.asarray(self.multiplier, np.int64)
        shift = np.asarray(self.shift, np.int64)
        y = np.clip(MBQM(acc, multiplier, shift), -32768, 32767)
        return np.clip(y + self.output_zero_point, -128, 127).astype(np.int8)


@dataclass(frozen=True)
class HeadContext:
    summary: str
    arrays: tuple[CArray, ...]
    weights: str  # names of the arrays
    bias: str
    x: str  # the buffer it reads: the last op's output
    depth: int
    classes: int
    dtype: str = "f32"
    multiplier: str = ""  # s8: the FULLY_CONNECTED's requantization (C initialisers), its
    shift: str = ""  # channel step and output zero point
    channel_step: int = 0
    output_zero_point: int = 0


def c_array(name: str, comment: str, values: np.ndarray, per_line: int = 6) -> CArray:
    """Exact C literals: str(np.float32) is the shortest text that reads back as the same float;
    integers print as they are."""
    c_type = _C_TYPES[values.dtype]
    if c_type == "float":
        flat = [c_float(float(str(np.float32(v)))) for v in np.ravel(values)]
    else:
        flat = [str(int(v)) for v in np.ravel(values)]
        per_line = 12
    lines = tuple(", ".join(flat[k:k + per_line]) + "," for k in range(0, len(flat), per_line))
    return CArray(name, c_type, comment, len(flat), lines)


def c_name(text: str) -> str:
    """A model name DESCRIBE can carry: printable ASCII, no quotes, at most 48 characters."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)[:_NAME_LENGTH] or "model"


def render_fw_model(chain: CoreChain, plans: list, name: str, source: str,
                    head: DenseHead | S8DenseHead | None = None, command: str = "bench") -> str:
    """fw_model.c for `chain`, then `head` if given; `plans` are the host plans of its ops
    (HostChain.plans()). `command` names the fusegen command in the header comment."""
    dtype = DTYPE_CONTEXTS[chain.dtype]
    # With a head, the last op writes a buffer too (the head's input), not the model's output.
    buffered = chain.ops if head else chain.ops[:-1]
    activations = [Buffer(f"g_model_act{k}", int(np.prod(op.output_shape)),
                          f"output of op {k}, {op.op_name}")
                   for k, op in enumerate(buffered)]
    ops = [_op_context(k, op, plan, activations, dtype) for k, (op, plan)
           in enumerate(zip(chain.ops, plans, strict=True))]
    scratch = max(int(getattr(p, dtype.scratch_field)) for p in plans)
    notes = [f"Not run here (builtin ops, outside core mode): {', '.join(chain.skipped)}."] \
        if chain.skipped else []
    head_ctx = _head_context(head, chain, activations) if head else None
    mask = None
    if chain.mask_value is not None:  # a C literal in the input's type
        value = (c_array("m", "", np.array([chain.mask_value], np.float32)).lines[0]
                 if chain.dtype == "f32" else str(int(chain.mask_value)))
        mask = {"value": value.rstrip(","), "elems": chain.timesteps * chain.input_shape[1],
                "inner": chain.input_shape[1], "timesteps": chain.timesteps}
    return render("fw_model.c.j2", command=command, source=source, name=c_name(name), ops=ops,
                  head=head_ctx, notes=notes, dtype=dtype, scratch_elems=scratch, mask=mask,
                  activations=activations,
                  info=_model_info(chain, ops, activations, scratch, dtype, head))


def _head_context(head: DenseHead | S8DenseHead, chain: CoreChain,
                  activations: list[Buffer]) -> HeadContext:
    if isinstance(head, S8DenseHead):
        return _s8_head_context(head, chain, activations)
    depth, classes = head.kernel.shape
    last = activations[-1]
    if chain.dtype != "f32":
        raise ValueError(f"a Dense head runs after float32 ops, not {chain.dtype} ones")
    if depth != last.elems or head.bias.shape != (classes,):
        raise ValueError(f"a Dense head of kernel [{depth}, {classes}] and bias "
                         f"{list(head.bias.shape)} does not fit the last op's {last.elems} outputs")
    weights = c_array("kModelDenseWeights", "Dense kernel, [classes][units] (row per class, as "
                      "fg_matmul_f32 reads it)", np.asarray(head.kernel, np.float32).T)
    bias = c_array("kModelDenseBias", "Dense bias, [classes]", np.asarray(head.bias, np.float32))
    # The softmax would not change the predicted class (argmax).
    summary = f"Dense({classes}) in C, without its softmax: the output is the logits"
    return HeadContext(summary, (weights, bias), weights.name, bias.name, last.name, depth,
                       classes)


def _s8_head_context(head: S8DenseHead, chain: CoreChain,
                     activations: list[Buffer]) -> HeadContext:
    classes, depth = head.weights.shape
    last = activations[-1]
    if chain.dtype != "s8":
        raise ValueError(f"an int8 FULLY_CONNECTED head runs after int8 ops, not {chain.dtype}")
    if depth != last.elems:
        raise ValueError(f"an int8 head of depth {depth} does not fit the last op's {last.elems} "
                         "outputs")
    from fusegen.abi import pack_s8_matrix

    weights = c_array("kModelDenseWeights", "FULLY_CONNECTED weights, int8 [classes][units] in "
                      "fg_matmul_s8's block order (abi.pack_s8_matrix)",
                      pack_s8_matrix(np.asarray(head.weights, np.int8)))
    bias = c_array("kModelDenseBias", "FULLY_CONNECTED bias, int32 [classes], the input zero "
                   "point folded in", np.asarray(head.bias, np.int32))
    summary = (f"FULLY_CONNECTED({classes}) int8 in C, without its SOFTMAX: the output is the "
               "int8 logits")
    return HeadContext(summary, (weights, bias), weights.name, bias.name, last.name, depth,
                       classes, "s8", ", ".join(map(str, head.multiplier)),
                       ", ".join(map(str, head.shift)), head.channel_step,
                       head.output_zero_point)


def _model_info(chain: CoreChain, ops: list[OpContext], activations: list[Buffer], scratch: int,
                dtype: DtypeContext, head: DenseHead | S8DenseHead | None) -> dict[str, int]:
    """FwModelInfo's numbers: tensor sizes, constant bytes, and the buffers as arena bytes."""
    sizes = {"float": 4, "int16_t": 2, "int8_t": 1}
    buffer_bytes = (sizes[dtype.scratch_type] * scratch
                    + sizes[dtype.state_type] * sum(o.state_total for o in ops)
                    + dtype.io_bytes * sum(a.elems for a in activations)
                    + (2 * head.classes if isinstance(head, S8DenseHead) else 0))
    input_elems = int(np.prod(chain.input_shape))
    output_elems = head.classes if head else int(np.prod(chain.output_shape))
    return {"input_bytes": dtype.io_bytes * input_elems,
            "output_bytes": dtype.io_bytes * output_elems, "input_elems": input_elems,
            "output_elems": output_elems,
            "model_bytes": chain.weight_bytes + (head.weight_bytes if head else 0),
            "arena_bytes": buffer_bytes}


def _op_context(k: int, op: CoreOp, plan, activations: list[Buffer],
                dtype: DtypeContext) -> OpContext:
    names = [p.name for p in op.graph.params]
    params = tuple(
        c_array(f"kModelOp{k}Param{j}", f"{name}: [{', '.join(map(str, w.shape))}]", w)
        for j, (name, w) in enumerate(zip(names, op.graph_params, strict=True)))
    extra_inputs = op.params[len(names):]
    extra = tuple(
        c_array(f"kModelOp{k}{d.name.capitalize()}", f"{d.name}: {d.doc}", w)
        for d, w in zip(S8_INPUTS, extra_inputs, strict=True)) if extra_inputs else ()
    x = f"(const {dtype.io_type}*)input" if k == 0 else activations[k - 1].name
    y = activations[k].name if k < len(activations) else f"({dtype.io_type}*)output"
    prefix = "".join(part.capitalize() for part in op.stem.split("_"))
    return OpContext(k, op.op_name, op.stem, prefix, op.summary(), op.input_size, op.units,
                     op.timesteps, MAX_CHUNK, int(op.return_sequences), int(op.go_backwards),
                     int(plan.state_total), int(op.stateful), params, extra, x, y)


def runtime_notes(kernels: Path, dtype: str) -> list[str]:
    """The runtime files of `kernels` that differ from this fusegen's: the firmware builds the
    directory's copies, so a hand-tuned runtime is benchmarked as it is (and checked)."""
    notes = []
    for rel in ("tflm_kernels/runtime/fg_runtime.h", *DTYPE_CONTEXTS[dtype].runtime):
        theirs, ours = Path(kernels) / rel, RUNTIME / rel.removeprefix("tflm_kernels/")
        if theirs.is_file() and theirs.read_bytes() != ours.read_bytes():
            notes.append(f"note: {theirs} differs from fusegen's {ours}; the firmware uses it")
    return notes


def op_names(chain: CoreChain, head: DenseHead | S8DenseHead | None = None) -> tuple[str, ...]:
    """The ops fw_model.c times one by one (fw_op_mark after each), in order."""
    return (*(op.op_name for op in chain.ops), *(("FULLY_CONNECTED",) if head else ()))


def write_model_sources(chain: CoreChain, plans: list, kernels: Path, out_dir: Path,
                        name: str, source: str = "", head: DenseHead | S8DenseHead | None = None,
                        command: str = "bench") -> tuple[list[Path], list[Path]]:
    """Writes fw_model.c into out_dir (only if it changed, so rebuilds stay incremental);
    returns the firmware's model sources and include directories."""
    text = render_fw_model(chain, plans, name, source or name, head, command)
    (path,) = write({"fw_model.c": text}, out_dir)
    kernels = Path(kernels).resolve()
    cores = [kernels / f"{stem}_core.c" for stem in dict.fromkeys(op.stem for op in chain.ops)]
    runtime = [kernels / rel for rel in DTYPE_CONTEXTS[chain.dtype].runtime]
    for needed in cores + runtime:
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found: --kernels must be the directory "
                                    "`fusegen convert --kernels` wrote for this model")
    return [path, *cores, *runtime], [kernels]
