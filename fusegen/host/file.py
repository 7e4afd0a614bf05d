"""A converted .tflite run on the host as TFLM runs it, op by op, everything read from the file.

Builtin ops run through tf.lite (a one-op model each); fused ops through their generated C
cores compiled for the host (float32: `_eval_f32`, int8: `_eval_s8`), fed with the op's
constant inputs as stored. Variable tensors (a stateful op's states) persist between `invoke`s
until `reset()`, as in MicroInterpreter. This is what `fusegen verify` runs for int8 files, and
what the streaming tests run for stateful models of either type.
"""

from __future__ import annotations

import copy as _copy

import numpy as np
import tensorflow as tf
from fusegen.converter.tflite_file import schema

from fusegen.converter import tflite_file, validate
from fusegen.errors import FileFormatError
from fusegen.frontend.errors import ModelError
from fusegen.abi import MASK_NONE, MASK_STEPS, OP_PREFIX

_NUMPY = {schema.TensorType.INT8: np.int8, schema.TensorType.INT16: np.int16,
          schema.TensorType.INT32: np.int32, schema.TensorType.FLOAT32: np.float32}


class HostFile:
    """`ops`: op name -> IR graph, from lowering the Keras model (ModelLowering.ops)."""

    def __init__(self, data: bytes, ops: dict, twin: bool = False) -> None:
        """twin: run int8 fused ops through the integer twin (reference/int_interp.py) instead
        of their C cores, on the same constant inputs: the two must agree bit for bit."""
        self.model = model = validate.read_model(data)
        self.graph = graph = model.subgraphs[0]
        x, _ = validate.io_tensors(model)
        if x.type not in _NUMPY:
            raise FileFormatError(f"the model's input has type {x.type}; the host runner takes "
                                  "FLOAT32, INT8, INT16 or INT32 inputs")
        self.input_type = _NUMPY[x.type]
        self.length_input = validate.length_input(model)
        for i, t in enumerate(graph.tensors):
            if t.isVariable and t.type not in _NUMPY:
                raise FileFormatError(f"variable tensor {i} has type {t.type}; the host runner "
                                      "keeps FLOAT32, INT8, INT16 or INT32 variables")
        self.steps: list[tuple[schema.OperatorT, object]] = []
        for op in graph.operators:
            name = tflite_file.op_name(model, op)
            if name.startswith(OP_PREFIX):
                if name not in ops:
                    raise FileFormatError(f"the file has a {name} op that the Keras model does "
                                          "not lower to; was it converted from this model?")
                checked = validate.fused_op(model, op, ops[name])
                self.steps.append((op, _FusedOp(checked, ops[name], twin)))
            elif name == "QUANTIZE" and _types(graph, op) == (schema.TensorType.INT8,
                                                               schema.TensorType.INT16):
                self.steps.append((op, _Requantize(graph, op)))  # not in tf.lite; in TFLM
            else:
                self.steps.append((op, _OneOp(model, op)))
        self.reset()

    def reset(self) -> None:
        self.variables = {i: np.zeros(t.shape, _NUMPY[t.type])
                          for i, t in enumerate(self.graph.tensors) if t.isVariable}
        for _, step in self.steps:
            if isinstance(step, _OneOp):
                step.reset()

    def invoke(self, x: np.ndarray, length: int | None = None) -> np.ndarray:
        """One input sample (no batch axis) -> the output (no batch axis). length: the value of
        a --length-input file's "length" input (default: all T steps)."""
        values = {self.graph.inputs[0]: np.asarray(x, self.input_type)[None]}
        if self.length_input is not None:
            steps = np.asarray(x).shape[0] if length is None else length
            values[self.length_input] = np.array(steps, np.int32)
        elif length is not None:
            raise ModelError("this model has no length input (convert it with --length-input)")
        self.fused_outputs = []
        for op, step in self.steps:
            outputs = step.run([self._value(i, values) if i >= 0 else None for i in op.inputs])
            values.update(zip(op.outputs, outputs))
            if isinstance(step, _FusedOp):
                self.fused_outputs.append(outputs[0])
            if isinstance(step, _FusedOp) and step.stateful:
                for i, state in zip(op.inputs[1 + step.n_consts:], step.final_states):
                    self.variables[i] = state.reshape(self.variables[i].shape)
        return values[self.graph.outputs[0]][0]

    def run(self, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Independent samples, each from reset states (lengths: one per sample, for a
        --length-input file)."""
        return np.stack(list(self._samples(x, lengths)))

    def run_fused(self, x: np.ndarray, lengths: np.ndarray | None = None) -> list[np.ndarray]:
        """As run(), but each fused op's output (graph order), [N, ...] each: what the C cores
        and the integer twin (twin=True) must equal bit for bit."""
        per_sample = [list(self.fused_outputs) for _ in self._samples(x, lengths)]
        return [np.stack(outputs) for outputs in zip(*per_sample)]

    def _samples(self, x: np.ndarray, lengths: np.ndarray | None):
        for k, sample in enumerate(x):
            self.reset()
            yield self.invoke(sample, None if lengths is None else int(lengths[k]))

    def _value(self, index: int, values: dict[int, np.ndarray]) -> np.ndarray:
        if index in values:
            return values[index]
        if index in self.variables:
            return self.variables[index]
        value = tflite_file.tensor_value(self.model, index)
        if value is None:
            raise ModelError(f"tensor {index} is read before any op writes it")
        return value


class _FusedOp:
    """A fused op through its host-compiled core: float32 or int8 by its input tensor's type."""

    def __init__(self, op: validate.FusedOp, ir, twin: bool = False):
        from fusegen.host.core import HostCore
        from fusegen.host.core_s8 import HostCoreS8

        units, input_size, consts = op.units, op.input_size, list(op.consts)
        self.n_consts = len(consts)
        cell = _FileCell(ir, units, input_size, consts)
        if twin and op.dtype == "s8":
            self.core = _IntTwin(ir, units, input_size, consts)
        else:
            self.core = (HostCoreS8(cell, op.name) if op.dtype == "s8"
                         else HostCore(cell.bound, op.name, consts))
        self.state_widths = [w(units, input_size) for w in ir.state_widths]
        self.rs, self.gb, self.stateful = op.return_sequences, op.go_backwards, op.stateful
        self.mask, self.zero_output = op.options["mask"], bool(op.options["zero_output_for_mask"])
        self.final_states: list[np.ndarray] = []

    def run(self, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        from fusegen.host.core import StepMask

        mask = None
        if self.mask != MASK_NONE:  # the last input (abi.mask_input)
            value = np.asarray(inputs[-1])
            mask = (StepMask(value[0].astype(np.uint8), None, self.zero_output)
                    if self.mask == MASK_STEPS
                    else StepMask(None, int(value.reshape(-1)[0]), self.zero_output))
            inputs = inputs[:-1]
        state_inputs = inputs[1 + self.n_consts:]
        states = (np.concatenate([s.reshape(-1) for s in state_inputs])
                  if state_inputs else None)
        y, final = self.core.run(inputs[0][0], self.rs, self.gb, states, mask=mask)
        self.final_states = np.split(final, np.cumsum(self.state_widths)[:-1])
        return [y[None], *(s[None] for s in self.final_states)]


class _IntTwin:
    """The integer twin with HostCoreS8's run(): the op's constants as stored in the file."""

    def __init__(self, ir, units: int, input_size: int, consts: list[np.ndarray]) -> None:
        from fusegen.schedule.program import build_program
        from fusegen.reference.int_interp import OpInputs

        self.program = build_program(ir)
        *params, qparams, luts = consts
        self.inputs = OpInputs(tuple(params), qparams, luts)
        self.sizes = (units, input_size)
        self.widths = [w(units, input_size) for w in ir.state_widths]

    def run(self, x, return_sequences, go_backwards, states=None, mask=None):
        from fusegen.reference import int_interp

        if states is not None:
            states = np.split(np.asarray(states, np.int16), np.cumsum(self.widths)[:-1])
        valid = None if mask is None else mask.step_valid(x.shape[0])
        y, final = int_interp.run(self.program, self.inputs, self.sizes, x, return_sequences,
                                  go_backwards, states, valid,
                                  bool(mask is not None and mask.zero_output))
        return y, np.concatenate(final)


class _FileCell:
    """What the host cores need of a cell, read from a .tflite instead of a quantizer."""

    def __init__(self, graph, units: int, input_size: int, consts: list[np.ndarray]):
        self.bound = type("FileBound", (), {"graph": graph, "units": units,
                                            "input_size": input_size})
        self.sizes = (units, input_size)
        self._consts = consts

    def op_inputs(self) -> list[np.ndarray]:
        return self._consts


class _OneOp:
    """One builtin op as a model of its own, run by TFLM's own interpreter (the tflite-micro
    wheel: the kernels and requantization the device runs), or tf.lite's where TFLM lacks it."""

    def __init__(self, model: schema.ModelT, op: schema.OperatorT) -> None:
        from fusegen.converter.builder import TfliteBuilder

        graph = model.subgraphs[0]
        joiner = TfliteBuilder()
        # A builtin's variable inputs (UNIDIRECTIONAL_SEQUENCE_LSTM's states) stay variable in
        # the one-op model: its interpreter keeps them between invokes, as the device does, and
        # reset() zeroes them. Its intermediates (an int8 LSTM's gate scales) come along.
        self.inputs = [k for k, i in enumerate(op.inputs)
                       if i >= 0 and not _constant(model, i) and not graph.tensors[i].isVariable]
        self.stateful = any(i >= 0 and graph.tensors[i].isVariable for i in op.inputs)
        intermediates = [i for i in (op.intermediates if op.intermediates is not None else [])
                         if i >= 0]
        mapping: dict[int, int] = {}
        for i in dict.fromkeys([*(op.inputs[k] for k in self.inputs),
                                *(i for i in op.inputs if i >= 0), *op.outputs, *intermediates]):
            copy = _copy.copy(graph.tensors[i])
            copy.buffer = joiner.buffer(model.buffers[copy.buffer].data)
            copy.isVariable = bool(graph.tensors[i].isVariable) and i in op.inputs
            mapping[i] = joiner.tensor(copy)
        new = _copy.copy(op)
        new.opcodeIndex = joiner.opcode(model.operatorCodes[op.opcodeIndex])
        new.inputs = [mapping[i] if i >= 0 else -1 for i in op.inputs]
        new.outputs = [mapping[i] for i in op.outputs]
        new.intermediates = [mapping[i] for i in intermediates] or None
        joiner.graph.operators.append(new)
        joiner.graph.inputs = [mapping[op.inputs[k]] for k in self.inputs]
        joiner.graph.outputs = [mapping[i] for i in op.outputs]
        self.name = tflite_file.op_name(model, op)
        if _is_custom(model, op):
            raise FileFormatError(f"the model has a custom op {self.name!r} that is not a "
                                  "fused op; the host runner runs builtin and FUSEGEN_* ops")
        data = tflite_file.write_model(joiner.model)
        # TFLM's own interpreter where it can run the op (bit-exact with the device), else
        # tf.lite without delegates.
        self.micro = micro_interpreter(data)
        self.n_outputs = len(op.outputs)
        self.interpreter = None
        if self.micro is None:
            try:
                self.interpreter = reference_interpreter(data)
            except (RuntimeError, ValueError) as err:
                raise FileFormatError(f"builtin op {self.name}: tf.lite rejects it "
                                      f"({_first_line(err)})") from None

    def reset(self) -> None:
        """Zeroes the op's variable tensors (MicroInterpreter::Reset on the device)."""
        if not self.stateful:
            return
        if self.micro is not None:
            self.micro.reset()
        else:
            self.interpreter.reset_all_variables()

    def run(self, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        if self.micro is not None:
            for n, k in enumerate(self.inputs):
                self.micro.set_input(np.ascontiguousarray(inputs[k]), n)
            self.micro.invoke()
            return [np.array(self.micro.get_output(n)) for n in range(self.n_outputs)]
        interpreter = self.interpreter
        try:
            for detail, k in zip(interpreter.get_input_details(), self.inputs, strict=True):
                interpreter.set_tensor(detail["index"], inputs[k])
            interpreter.invoke()
        except (RuntimeError, ValueError) as err:
            raise FileFormatError(f"builtin op {self.name}: tf.lite cannot run it "
                                  f"({_first_line(err)})") from None
        return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


class _Requantize:
    """TFLM's QUANTIZE between integer types (reference_ops::Requantize), for the int8 ->
    int16 case tf.lite lacks: (x - zp_in) * MultiplyByQuantizedMultiplier(s_in / s_out) + zp_out,
    saturated."""

    def __init__(self, graph: schema.SubGraphT, op: schema.OperatorT) -> None:
        from fusegen.quantize.scales import quantize_multiplier

        q_in, q_out = (graph.tensors[i].quantization for i in (op.inputs[0], op.outputs[0]))
        real = float(np.float32(q_in.scale[0])) / float(np.float32(q_out.scale[0]))
        self.multiplier, self.shift = quantize_multiplier(real)
        self.zp_in, self.zp_out = int(q_in.zeroPoint[0]), int(q_out.zeroPoint[0])
        self.dtype = _NUMPY[graph.tensors[op.outputs[0]].type]

    def run(self, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        from fusegen.reference.int_interp import multiply_by_quantized_multiplier, saturate

        x = np.asarray(inputs[0], np.int64) - self.zp_in
        out = multiply_by_quantized_multiplier(x, self.multiplier, self.shift) + self.zp_out
        return [saturate(out, self.dtype)]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_custom(model: schema.ModelT, op: schema.OperatorT) -> bool:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM


def _types(graph: schema.SubGraphT, op: schema.OperatorT) -> tuple[int, int]:
    return graph.tensors[op.inputs[0]].type, graph.tensors[op.outputs[0]].type


# Arena of the one-op TFLM interpreters: generous for one builtin op of a model that fits a MCU.
MICRO_ARENA_BYTES = 1 << 22


def micro_interpreter(data: bytes):
    """TFLM's interpreter (tflite-micro wheel) for a builtin-only model, or None when the wheel
    is missing or TFLM cannot allocate the model (an op it lacks): the caller then uses tf.lite."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return None
    try:
        return runtime.Interpreter.from_bytes(data, arena_size=MICRO_ARENA_BYTES)
    except (RuntimeError, ValueError):
        return None


def reference_interpreter(data: bytes) -> tf.lite.Interpreter:
    """tf.lite's builtin kernels without the default XNNPACK delegate: XNNPACK requantizes int8
    with one float rounding, TFLM (and these kernels) with gemmlowp's two, so they differ by
    one step where a value is near a half (seen: a FULLY_CONNECTED output, -34 against TFLM's
    -33)."""
    interpreter = tf.lite.Interpreter(
        model_content=data,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.
        BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _constant(model: schema.ModelT, index: int) -> bool:
    data = model.buffers[model.subgraphs[0].tensors[index].buffer].data
    return data is not None and len(data) > 0
