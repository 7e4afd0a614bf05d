"""One validation of a .tflite and of the fused ops in it, before anything runs them.

`fusegen verify`, `fusegen bench` (core mode), the host runner (converter/host_file.py) and
everything else that reads a converted file go through `read_model` and `fused_op`, so no tool
runs a file the kernel's Prepare would reject, and a malformed file is a one-line
FileFormatError, never a Python traceback or an out-of-bounds read by a C core.

`read_model` reads through tflite_file.read_model, the one place the generated schema code
meets bytes (it raises whatever a damaged buffer makes it raise: struct.error, IndexError,
UnicodeDecodeError, ...; that becomes one FileFormatError), then checks
what the object API does not: every index (opcode, tensor, buffer) in range and every constant
buffer exactly the size its tensor's shape and type say.

`fused_op` checks one FUSEGEN_* op against the IR of its cell, by the interface defined in
abi.py (OpInputs, DTYPES: per dtype): the number and order of inputs, each weight's
type and shape (the IR's symbolic shape at the op's sizes, matrices stored [N, K]), that every
weight is a constant tensor with its data, the int8 qparams length and LUT count, the states'
types and widths, the outputs and the custom options (a flexbuffer map of known keys with
bool values, read the way tflm_kernels/options/fg_flexbuffer.c reads them). The generated
kernel's Prepare (templates/kernel.cc.j2) checks the same on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from fusegen.converter.tflite_file import schema

from fusegen.converter import tflite_file
from fusegen.errors import FileFormatError
from fusegen.ir import Graph
from fusegen.abi import (DTYPE_OF_TENSOR, LUT_SIZE, MASK_LENGTH, MASK_NONE, MASK_STEPS, OP_PREFIX,
                         OPTIONS, WEIGHT_LAYOUTS, OpInputs, carries_units, dtype_abi, mask_input,
                         row_clamp)

# The largest units the generated plan accepts (core.c.j2: units * 16 fits in INT32_MAX / 4).
_MAX_UNITS = (2**31 - 1) // 4 // 16
_ITEMSIZE = {schema.TensorType.FLOAT32: 4, schema.TensorType.INT32: 4,
             schema.TensorType.INT16: 2, schema.TensorType.INT8: 1, schema.TensorType.UINT8: 1,
             schema.TensorType.INT64: 8, schema.TensorType.BOOL: 1,
             schema.TensorType.FLOAT16: 2, schema.TensorType.FLOAT64: 8}
_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_F32, _S8 = schema.TensorType.FLOAT32, schema.TensorType.INT8


def _schema_type(t) -> int:
    """abi.TensorType -> the schema's TensorType value."""
    return getattr(schema.TensorType, t.tflite_name)


def read_model(data: bytes, source: str = "the model") -> schema.ModelT:
    """The model's schema objects, every index and constant buffer checked; any damage is a
    FileFormatError naming `source`."""
    model = tflite_file.read_model(data, source)
    _check_model(model, source)
    return model


def _check_model(model: schema.ModelT, source: str) -> None:
    buffers = model.buffers or []
    codes = model.operatorCodes or []
    if not model.subgraphs:
        raise FileFormatError(f"{source} has no subgraph")
    for g, graph in enumerate(model.subgraphs):
        where = f"{source}, subgraph {g}"
        tensors = graph.tensors or []
        for i, t in enumerate(tensors):
            _check_tensor(t, i, buffers, where)
        for name in ("inputs", "outputs"):
            for i in _ints(getattr(graph, name)):
                if not 0 <= i < len(tensors):
                    raise FileFormatError(f"{where}: graph {name[:-1]} tensor {i} does not exist "
                                          f"({len(tensors)} tensors)")
        for k, op in enumerate(graph.operators or []):
            if not 0 <= op.opcodeIndex < len(codes):
                raise FileFormatError(f"{where}: op {k} has opcode index {op.opcodeIndex} of "
                                      f"{len(codes)}")
            for i in _ints(op.inputs):
                if not -1 <= i < len(tensors):
                    raise FileFormatError(f"{where}: op {k} reads tensor {i}, which does not "
                                          "exist")
            for i in _ints(op.outputs):
                if not 0 <= i < len(tensors):
                    raise FileFormatError(f"{where}: op {k} writes tensor {i}, which does not "
                                          "exist")


def _ints(values) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _check_tensor(t: schema.TensorT, index: int, buffers: list, where: str) -> None:
    name = f"{where}: tensor {index} ({tflite_file._text(t.name)!r})"
    if not 0 <= t.buffer < len(buffers):
        raise FileFormatError(f"{name} refers to buffer {t.buffer} of {len(buffers)}")
    if t.type not in _TYPE_NAMES:
        raise FileFormatError(f"{name} has unknown type {t.type}")
    shape = _ints(t.shape)
    if any(d < 0 for d in shape):
        raise FileFormatError(f"{name} has shape {shape} with a dynamic or negative dimension")
    data = buffers[t.buffer].data
    if data is not None and len(data) and t.type in _ITEMSIZE:
        expected = math.prod(shape) * _ITEMSIZE[t.type]
        if len(data) != expected:
            raise FileFormatError(f"{name}: its buffer holds {len(data)} bytes, its shape "
                                  f"{shape} of {_TYPE_NAMES[t.type]} needs {expected}")


def read_options(raw, where: str) -> dict[str, int]:
    """A fused op's custom options, checked: a flexbuffer map whose keys are abi.OPTIONS and
    whose values have the option's kind (a bool: bool or int 0/1/-1, as the C reader accepts;
    an int: any int); missing keys take their defaults."""
    try:
        value = tflite_file.decode_options(raw)
    except Exception:  # noqa: BLE001 - the flexbuffer reader raises anything on bad bytes
        raise FileFormatError(f"{where}: its custom options are not a readable flexbuffer map; "
                              "convert the model again") from None
    known = {o.key: o for o in OPTIONS}
    options = {o.key: o.default for o in OPTIONS}
    for key, v in value.items():
        if key not in known:
            raise FileFormatError(f"{where}: unknown custom option {key!r} (known: "
                                  f"{', '.join(known)})")
        kind = known[key].kind
        if kind == "bool" and (isinstance(v, bool) or (isinstance(v, int) and v in (0, 1, -1))):
            options[key] = int(bool(v))
        elif kind == "int" and isinstance(v, int) and not isinstance(v, bool):
            options[key] = int(v)
        else:
            raise FileFormatError(f"{where}: custom option {key!r} is {v!r}, not a {kind}")
    return options


@dataclass(frozen=True)
class FusedOp:
    """A fused op found valid for its cell's IR: its sizes, options and constant inputs."""

    name: str
    dtype: str  # "f32" or "s8", by the input tensor's type
    timesteps: int
    input_size: int
    units: int
    options: dict[str, int]
    consts: tuple[np.ndarray, ...]  # params (f32), or params + qparams + luts (s8), as stored
    n_params: int
    state_inputs: tuple[int, ...]  # tensor indices of the state inputs (may be empty)
    mask_input: int | None = None  # tensor index of the mask or length input (option mask)

    @property
    def return_sequences(self) -> bool:
        return bool(self.options["return_sequences"])

    @property
    def go_backwards(self) -> bool:
        return bool(self.options["go_backwards"])

    @property
    def stateful(self) -> bool:
        return bool(self.options["stateful"])

    @property
    def return_state(self) -> bool:
        return bool(self.options["return_state"])


def fused_op(model: schema.ModelT, op: schema.OperatorT, graph: Graph,
             source: str = "the model", subgraph: int = 0) -> FusedOp:
    """The fused op `op` of `model` (already through read_model) checked against `graph`, the
    IR of its cell; FileFormatError names the first thing that does not match."""
    name = tflite_file.op_name(model, op)
    where = f"{source}: {name}"
    g = model.subgraphs[subgraph]
    inputs, outputs = _ints(op.inputs), _ints(op.outputs)
    options = read_options(op.customOptions, where)
    if not inputs or inputs[0] < 0 or not outputs:
        raise FileFormatError(f"{where} has no input or no output tensor")
    x, y = g.tensors[inputs[0]], g.tensors[outputs[0]]
    dtype = DTYPE_OF_TENSOR.get(_TYPE_NAMES[x.type])
    if dtype is None:
        raise FileFormatError(f"{where}: input type {_TYPE_NAMES[x.type]}; fused ops take "
                              f"{' or '.join(DTYPE_OF_TENSOR)}")
    if options["weight_layout"] != WEIGHT_LAYOUTS[dtype]:
        raise FileFormatError(f"{where}: option weight_layout is {options['weight_layout']}, "
                              f"its {dtype} kernel reads weight layout {WEIGHT_LAYOUTS[dtype]}; "
                              "convert the model again with this fusegen version")
    if dtype == "s8":
        tensor_qparams(x, f"{where}: input")
        tensor_qparams(y, f"{where}: output")
    x_shape = _ints(x.shape)
    if len(x_shape) != 3 or x_shape[0] != 1 or x_shape[1] < 1 or x_shape[2] < 1:
        raise FileFormatError(f"{where}: input shape {x_shape} is not [1, timesteps, features]")
    _, timesteps, input_size = x_shape
    units = _units(graph, input_size, y, options, timesteps, where)
    const_types = _const_types(graph, dtype)
    n_consts, n_states = len(const_types), len(graph.state_widths)
    mask_index = _check_mask(g, inputs, options, timesteps, where)
    if mask_index is not None:
        inputs = inputs[:-1]
    extra = len(inputs) - 1 - n_consts
    if extra not in (0, n_states) or (options["stateful"] and extra != n_states):
        raise FileFormatError(f"{where}: {len(inputs)} inputs; its kernel takes 1 + {n_consts} "
                              f"(+ {n_states} states{', required when stateful' if options['stateful'] else ''})")
    expected_outputs = 1 + (n_states if options["return_state"] else 0)
    if len(outputs) != expected_outputs:
        raise FileFormatError(f"{where}: {len(outputs)} outputs, expected {expected_outputs} "
                              f"(return_state={options['return_state']})")
    if y.type != x.type:
        raise FileFormatError(f"{where}: output type {_TYPE_NAMES[y.type]} differs from its "
                              f"input's {_TYPE_NAMES[x.type]}")
    shapes = _const_shapes(graph, dtype, units, input_size)
    consts = []
    for k, (index, (label, ttype), shape) in enumerate(zip(inputs[1:1 + n_consts], const_types,
                                                           shapes)):
        consts.append(_constant(model, g, index, label, ttype, shape, f"{where}: input {1 + k}"))
    if dtype == "s8":
        _check_s8_consts(graph, consts, units, input_size, where)
    state_type = _schema_type(dtype_abi(dtype).state)
    widths = [w(units, input_size) for w in graph.state_widths]
    for k, index in enumerate(inputs[1 + n_consts:]):
        _check_state(g, index, state_type, widths[k], options["stateful"],
                     f"{where}: state input {k}")
    for k, index in enumerate(outputs[1:]):
        _check_state(g, index, state_type, widths[k], False, f"{where}: state output {k}")
    return FusedOp(name, dtype, timesteps, input_size, units, options, tuple(consts),
                   len(graph.params), tuple(inputs[1 + n_consts:]), mask_index)


def _check_mask(g, inputs: list[int], options: dict, timesteps: int, where: str) -> int | None:
    """The mask input's tensor index (abi.mask_input), checked: bool [1, T] or [1, T, K] for
    MASK_STEPS, int32 [] or [1] for MASK_LENGTH; None without option mask."""
    mode = options["mask"]
    if mode == MASK_NONE:
        return None
    if mode not in (MASK_STEPS, MASK_LENGTH):
        raise FileFormatError(f"{where}: custom option mask is {mode}, expected "
                              f"{MASK_NONE}, {MASK_STEPS} or {MASK_LENGTH}")
    index = mask_input(len(inputs), mode)
    if index is None or index < 1 or inputs[index] < 0:
        raise FileFormatError(f"{where}: option mask is set but its last input is missing")
    t = g.tensors[inputs[index]]
    shape = _ints(t.shape)
    if mode == MASK_STEPS:
        ok = (_TYPE_NAMES[t.type] == "BOOL" and len(shape) in (2, 3) and shape[:2] == [1, timesteps]
              and (len(shape) == 2 or shape[2] >= 1))
        want = f"BOOL[1, {timesteps}] or [1, {timesteps}, K]"
    else:
        ok = _TYPE_NAMES[t.type] == "INT32" and shape in ([], [1])
        want = "INT32[] (a length)"
    if not ok:
        raise FileFormatError(f"{where}: mask input is {_TYPE_NAMES[t.type]}{shape}, "
                              f"expected {want}")
    return inputs[index]


def _units(graph: Graph, input_size: int, y: schema.TensorT, options: dict, timesteps: int,
           where: str) -> int:
    shape = _ints(y.shape)
    rank = 3 if options["return_sequences"] else 2
    if len(shape) != rank or shape[0] != 1 or (rank == 3 and shape[1] != timesteps):
        want = "[1, timesteps, width]" if rank == 3 else "[1, width]"
        raise FileFormatError(f"{where}: output shape {shape} is not {want} (return_sequences="
                              f"{options['return_sequences']}, {timesteps} timesteps)")
    dim = graph.output_width
    carried = options.get("units", 0)
    if carried:  # the op records its units (abi.carries_units); the output must agree
        if carried < 1 or carried > _MAX_UNITS or dim(carried, input_size) != shape[-1]:
            raise FileFormatError(f"{where}: output width {shape[-1]} does not match its units "
                                  f"option {carried} (its cell {graph.name}: output width "
                                  f"{dim}); convert the model again")
        return carried
    if carries_units(graph):
        raise FileFormatError(f"{where}: its cell {graph.name}'s output width ({dim}) does not "
                              "grow with units, and the op has no units option; convert the "
                              "model again with this fusegen")
    rest = shape[-1] - dim.i * input_size - dim.c
    if rest < dim.u or rest % dim.u:
        raise FileFormatError(f"{where}: output width {shape[-1]} fits no number of units of "
                              f"its cell {graph.name} (output width {dim})")
    return rest // dim.u


def _const_types(graph: Graph, dtype: str) -> list[tuple[str, int]]:
    """(name, schema type) of every constant input after x, in the order abi.OpInputs says."""
    abi = dtype_abi(dtype)
    roles = None
    if dtype != "f32":
        from fusegen.schedule.program import build_program

        try:
            roles = build_program(graph).param_roles
        except ValueError as err:  # QuantizeError: no int8 program for this cell
            raise FileFormatError(f"cell {graph.name} has no {dtype} kernel: {err}") from None
    types = abi.param_types(roles, len(graph.params))
    found = [(p.name, _schema_type(t)) for p, t in zip(graph.params, types, strict=True)]
    found += [(d.name, _schema_type(d.type)) for d in abi.extra_inputs]
    assert len(found) == OpInputs(dtype, len(graph.params)).constants
    return found


def _const_shapes(graph: Graph, dtype: str, units: int, input_size: int) -> list:
    shapes = [tuple(reversed([d(units, input_size) for d in p.shape])) for p in graph.params]
    shapes += [None] * len(dtype_abi(dtype).extra_inputs)  # int8: _check_s8_consts
    return shapes


def _constant(model, g, index: int, label: str, ttype: int, shape, where: str) -> np.ndarray:
    if index < 0:
        raise FileFormatError(f"{where} ({label}) is omitted; the kernel needs it")
    t = g.tensors[index]
    if t.type != ttype:
        raise FileFormatError(f"{where} ({label}) has type {_TYPE_NAMES[t.type]}, expected "
                              f"{_TYPE_NAMES[ttype]}")
    if shape is not None and tuple(_ints(t.shape)) != shape:
        raise FileFormatError(f"{where} ({label}) has shape {_ints(t.shape)}, expected "
                              f"{list(shape)}")
    data = model.buffers[t.buffer].data
    if data is None or len(data) == 0 or t.isVariable:
        raise FileFormatError(f"{where} ({label}) is not a constant tensor (no data in the file); "
                              "weights must be stored in the model")
    return np.ascontiguousarray(tflite_file.tensor_value(model, index))


def _check_s8_consts(graph: Graph, consts: list[np.ndarray], units: int, input_size: int,
                     where: str) -> None:
    from fusegen.schedule.program import build_program

    program = build_program(graph)
    qparams, luts = consts[-2], consts[-1]
    if qparams.ndim != 1 or qparams.size == 0:
        raise FileFormatError(f"{where}: qparams has shape {list(qparams.shape)}, expected one "
                              "non-empty vector")
    per_channel = bool(qparams[0] != 0)
    count = program.qparam_count(per_channel)(units, input_size)
    if qparams.size != count:
        raise FileFormatError(f"{where}: qparams has {qparams.size} entries, its cell at "
                              f"{units} units needs {count}")
    if luts.shape != (program.lut_count, LUT_SIZE):
        raise FileFormatError(f"{where}: luts has shape {list(luts.shape)}, expected "
                              f"[{program.lut_count}, {LUT_SIZE}]")
    for row in program.clamp_rows():
        bounds = row_clamp(luts[row])
        if bounds is not None and bounds[0] > bounds[1]:
            raise FileFormatError(f"{where}: luts row {row} is a clamp to "
                                  f"{bounds[0]}..{bounds[1]}, lo above hi (reconvert the model)")


def _check_state(g, index: int, ttype: int, width: int, variable: bool, where: str) -> None:
    if index < 0:
        raise FileFormatError(f"{where} is omitted")
    t = g.tensors[index]
    if t.type != ttype or _ints(t.shape) != [1, width]:
        raise FileFormatError(f"{where} is {_TYPE_NAMES[t.type]}{_ints(t.shape)}, expected "
                              f"{_TYPE_NAMES[ttype]}[1, {width}]")
    if variable and not t.isVariable:
        raise FileFormatError(f"{where} of a stateful op is not a variable tensor")


def fused_ops(model: schema.ModelT, graphs: dict[str, Graph], source: str = "the model",
              subgraph: int = 0) -> list[FusedOp]:
    """Every fused op of a subgraph, in execution order, each checked against its IR
    (`graphs`: op name -> Graph; an op with no IR there is an error)."""
    found = []
    for op in model.subgraphs[subgraph].operators or []:
        name = tflite_file.op_name(model, op)
        if name.startswith(OP_PREFIX):
            if name not in graphs:
                raise FileFormatError(f"{source} has a {name} op that the Keras model does not "
                                      "lower to; was it converted from this model?")
            found.append(fused_op(model, op, graphs[name], source, subgraph))
    return found


def length_input(model: schema.ModelT) -> int | None:
    """The tensor index of a --length-input file's "length" input (its second input, a scalar
    int32), or None."""
    ins = _ints(model.subgraphs[0].inputs)
    if len(ins) != 2:
        return None
    t = model.subgraphs[0].tensors[ins[1]]
    if tflite_file._text(t.name) != "length" or t.type != schema.TensorType.INT32 or \
            int(np.prod(t.shape if t.shape is not None else [])) != 1:
        return None
    return ins[1]


def io_tensors(model: schema.ModelT, source: str = "the model") -> tuple:
    """The model's one input and one output tensor (the tools run single-input,
    single-output models)."""
    graph = model.subgraphs[0]
    ins, outs = _ints(graph.inputs), _ints(graph.outputs)
    if len(ins) == 2 and length_input(model) is not None:
        ins = ins[:1]  # a --length-input file: data, then the length
    if len(ins) != 1 or len(outs) != 1:
        raise FileFormatError(f"{source} has {len(ins)} inputs and {len(outs)} outputs; fusegen "
                              "runs models of one input and one output")
    return graph.tensors[ins[0]], graph.tensors[outs[0]]


def tensor_qparams(t: schema.TensorT, where: str) -> tuple[float, int]:
    """(scale, zero point) of a per-tensor quantized tensor."""
    q = t.quantization
    scale = None if q is None or q.scale is None else np.asarray(q.scale, np.float64)
    zero = None if q is None or q.zeroPoint is None else np.asarray(q.zeroPoint, np.int64)
    if scale is None or zero is None or scale.size != 1 or zero.size != 1:
        raise FileFormatError(f"{where} ({tflite_file._text(t.name)!r}) has no per-tensor "
                              "quantization parameters")
    if not (np.isfinite(scale[0]) and scale[0] > 0) or not -128 <= zero[0] <= 127:
        raise FileFormatError(f"{where} ({tflite_file._text(t.name)!r}) has scale {scale[0]} "
                              f"and zero point {zero[0]}: not a valid int8 quantization")
    return float(scale[0]), int(zero[0])


def check_calibrated_ranges(data: bytes, source: str = "the converted model") -> None:
    """Refuses an int8 model in which calibration left some activation tensor without a range:
    a real range (scale x 255) at or under MIN_RANGE, the floor fusegen's own scales clamp an
    empty range to (the TF converter's are smaller still, ~1e-8 x 255). Such a tensor rounds
    every deployment value to its zero point or saturates: a model off by millions of steps."""
    from fusegen.quantize.scales import MIN_RANGE

    model = read_model(data, source)
    for g, graph in enumerate(model.subgraphs):
        for i, t in enumerate(graph.tensors or []):
            buffer = model.buffers[t.buffer].data
            if t.type != _S8 or (buffer is not None and len(buffer)) or t.quantization is None:
                continue
            scale = t.quantization.scale
            if scale is None or len(scale) != 1:
                continue
            if float(scale[0]) * 255.0 <= MIN_RANGE * (1 + 1e-6):
                raise FileFormatError(
                    f"calibration data gives tensor {tflite_file._text(t.name)!r} an empty "
                    f"range (int8 scale {float(scale[0]):.3g}): its values did not vary over "
                    "the calibration samples; give calibration data like the deployment data "
                    "(varied, not constant or all zero)")
