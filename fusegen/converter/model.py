"""Keras model -> .tflite bytes with every lowered recurrent layer as one fused custom op.

The forward pass is rebuilt as a batch-1 tf.function: ordinary layers are called as they are
(the standard converter maps them to float32 builtins) and each layer that `lower` accepts is
replaced by its composite function fed with constant weights (see composite.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from fusegen.abi import OP_PREFIX
from fusegen.converter.composite import make_composite
from fusegen.converter.fused_call import FusedCall, FusedLayer
from fusegen.converter.tflite_file import op_name, read_model, schema, write_model

Lower = Callable[[keras.layers.Layer], FusedCall | FusedLayer | None]
LayerFn = Callable[..., Any]


def convert(model: keras.Model, lower: Lower) -> bytes:
    """The model as a float32 .tflite flatbuffer at batch 1, recurrent layers fused."""
    converter, trace = _prepare(model, lower)
    data = converter.convert()
    _check_fused(data, [call.op_name for call in trace.emitted])
    return _add_state_variables(data, trace.emitted)


def make_converter(model: keras.Model, lower: Lower) -> tf.lite.TFLiteConverter:
    """The TFLiteConverter behind `convert`, for callers that set quantization options."""
    return _prepare(model, lower)[0]


@dataclass
class _Trace:
    fused: dict[int, FusedLayer]  # id(layer) -> its lowering
    emitted: list[FusedCall] = field(default_factory=list)  # the composites called, in order
    # id(tensor) -> (tensor, its step mask): the masks fusegen computes and carries itself (see
    # _masking_fn); the tensor is kept so that its id stays unique.
    masks: dict[int, tuple[tf.Tensor, tf.Tensor]] = field(default_factory=dict)

    def mask_of(self, x: Any) -> tf.Tensor | None:
        entry = self.masks.get(id(x))
        return entry[1] if entry is not None and entry[0] is x else None

    def set_mask(self, x: Any, mask: tf.Tensor | None) -> None:
        if mask is not None and isinstance(x, tf.Tensor):
            self.masks[id(x)] = (x, mask)


def _prepare(model: keras.Model, lower: Lower) -> tuple[tf.lite.TFLiteConverter, _Trace]:
    spec = input_spec(model)
    # `lower` reads weights as numpy, which needs eager mode: ask it before tracing.
    trace = _Trace(_lower_all(model, lower))
    forward = tf.function(
        lambda x: _forward(model, trace, x), input_signature=[spec], autograph=False
    )
    concrete = forward.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], _trackable(model))
    return converter, trace


def _check_fused(data: bytes, emitted: list[str]) -> None:
    # The converter falls back, silently, to a path that inlines composites (e.g. when it
    # cannot save the temporary SavedModel); the result would then hold the body, not the op.
    model = read_model(data)
    names = [op_name(model, op) for graph in model.subgraphs for op in graph.operators]
    for name, count in Counter(emitted).items():
        if names.count(name) != count:
            raise RuntimeError(
                f"expected {count} {name} op(s), the converter emitted {names.count(name)}; "
                f"ops: {sorted(set(names))}"
            )


def _trackable(model: keras.Model) -> tf.Module:
    """The object the converter saves as a temporary SavedModel before importing it.

    A trackable object is what routes conversion through the SavedModel importer, the only path
    on which composite functions survive to become custom ops. It must track the tf.Variables
    behind Keras 3's variable wrappers: given the Keras model itself, the importer cannot freeze
    them and emits VAR_HANDLE/READ_VARIABLE ops with no weight data.
    """
    module = tf.Module()
    module.variables_ = [v.value for v in model.variables]
    return module


def input_spec(model: keras.Model) -> tf.TensorSpec:
    """The batch-1 TensorSpec of the model's single input."""
    inputs = _model_inputs(model)
    if len(inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(inputs)} inputs; only 1 is supported")
    if len(model.outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.outputs)} outputs; only 1 is supported"
        )
    shape = tuple(inputs[0].shape)
    if shape[0] not in (None, 1):
        raise ValueError(
            f"model {model.name!r} has a fixed batch of {shape[0]}; rebuild it with batch 1 "
            "or a dynamic batch (None)"
        )
    if any(d is None for d in shape[1:]):
        raise ValueError(f"model {model.name!r} input shape {shape} has a dynamic non-batch dim")
    ids = "int" in str(getattr(inputs[0], "dtype", "float32"))  # token ids (int8 Embedding)
    return tf.TensorSpec((1, *shape[1:]), tf.int32 if ids else tf.float32, name="input")


def _model_inputs(model: keras.Model) -> list[Any]:
    try:
        return list(model.inputs)
    except (AttributeError, ValueError) as e:  # subclassed or unbuilt models
        raise ValueError(f"model {model.name!r} has no symbolic inputs: {e}") from None


def _lower_all(model: keras.Model, lower: Lower) -> dict[int, FusedLayer]:
    fused: dict[int, FusedLayer] = {}
    for layer in _layers(model):
        if isinstance(layer, keras.Model):  # a nested model may hold recurrent layers too
            fused.update(_lower_all(layer, lower))
        elif (call := lower(layer)) is not None:
            fused[id(layer)] = call if isinstance(call, FusedLayer) else FusedLayer.single(call)
    return fused


def _layers(model: keras.Model) -> list[keras.layers.Layer]:
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    return [op for op in model.operations if not isinstance(op, keras.layers.InputLayer)]


def _forward(model: keras.Model, trace: _Trace, x: tf.Tensor) -> tf.Tensor:
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = _layer_fn(layer, trace)(x)
        return x
    outputs = model._run_through_graph(x, operation_fn=lambda op: _layer_fn(op, trace))
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _layer_fn(layer: keras.layers.Layer, trace: _Trace) -> LayerFn:
    """What to call in place of `layer`: its composite if lowered, else the layer in inference."""
    if isinstance(layer, keras.Model):
        return lambda x, **kwargs: _forward(layer, trace, x)
    if id(layer) in trace.fused:
        return _fused_fn(layer, trace.fused[id(layer)], trace)
    if isinstance(layer, keras.layers.Masking):
        return lambda x, **kwargs: _masking_fn(layer, x, trace)

    def call(*args, **kwargs):
        kwargs.pop("mask", None)  # fusegen carries the masks (trace.masks)
        out = layer(*args, **_inference(layer, kwargs))
        mask = trace.mask_of(args[0]) if args else None
        if isinstance(layer, keras.layers.Embedding) and layer.mask_zero:
            mask = tf.not_equal(args[0], tf.zeros_like(args[0]))  # NOT_EQUAL, as Keras
        elif mask is not None and not getattr(layer, "supports_masking", False):
            mask = None  # Keras drops it too (a layer that does not support masking)
        trace.set_mask(out, mask)
        return out

    return call


def _masking_fn(layer: keras.layers.Masking, x: tf.Tensor, trace: _Trace) -> tf.Tensor:
    """Masking's step mask is any(x != mask_value) over the features; TFLM has NOT_EQUAL but
    no REDUCE_ANY, so the fused op gets NOT_EQUAL's [1, T, F] and reduces it itself (abi.py,
    MASK_STEPS). The values pass unchanged: Keras zeroes the masked steps, which every masked
    recurrent layer skips."""
    y = tf.identity(x)
    trace.set_mask(y, tf.not_equal(x, tf.constant(layer.mask_value, x.dtype)))
    return y


def _inference(layer: keras.layers.Layer, kwargs: dict[str, Any]) -> dict[str, Any]:
    if getattr(layer, "_call_has_training_arg", False):
        return {**kwargs, "training": False}
    return kwargs


def _fused_fn(layer: keras.layers.Layer, fused_layer: FusedLayer, trace: _Trace) -> LayerFn:
    composites = [make_composite(call) for call in fused_layer.calls]
    emitted = trace.emitted
    step_mask: list[tf.Tensor | None] = [None]

    def run(k: int, x: tf.Tensor, states: list[tf.Tensor] | None = None):
        call = fused_layer.calls[k]
        params = [tf.constant(p, dtype=tf.float32) for p in call.params]
        emitted.append(call)
        mask = [step_mask[0]] if call.mask else []
        return composites[k](x, *params, *(states or []), *mask)

    def fused(x: tf.Tensor, *args: Any, **kwargs: Any):
        explicit = kwargs.pop("mask", None)
        step_mask[0] = trace.mask_of(x)
        if step_mask[0] is None and explicit is not None:
            step_mask[0] = tf.cast(explicit, tf.bool)
        expects = bool(fused_layer.calls[0].mask)
        if expects != (step_mask[0] is not None):
            raise ValueError(f"layer {layer.name!r}: Keras calls it "
                             f"{'with' if not expects else 'without'} a mask, the conversion "
                             f"found {'none' if expects else 'one'}")
        result = _fused_body(layer, fused_layer, run, x, args, kwargs)
        rs = bool(getattr(layer, "return_sequences", False))
        trace.set_mask(result if not isinstance(result, list) else result[0],
                       step_mask[0] if rs else None)
        return result

    return fused


def _fused_body(layer, fused_layer: FusedLayer, run, x, args, kwargs):
    """The layer's fused calls on x (with initial states, return_state: a plain RNN)."""
    states = kwargs.pop("initial_state", None)
    if args and states is None:
        states, args = args[0], args[1:]
    given = [*args, *(v for k, v in kwargs.items() if k != "training")]
    extra = [a for a in given if a is not None]
    if extra:
        raise ValueError(
            f"layer {layer.name!r} is called with extra inputs (a mask, ...); "
            f"{fused_layer.calls[0].op_name} takes the sequence and initial states only"
        )
    call = fused_layer.calls[0]
    if states is not None or call.return_state:
        if len(fused_layer.calls) != 1 or bool(states) != call.initial_states:
            raise ValueError(f"layer {layer.name!r}: initial_state/return_state need a "
                             "plain RNN layer whose lowering expects them")
        result = run(0, x, list(states) if states is not None else None)
        return list(result) if call.return_state else result
    return fused_layer.wire(x, run, tnp)


def _add_state_variables(data: bytes, calls: list[FusedCall]) -> bytes:
    """Stateful ops get their states as variable tensors, the inputs after the params: TFLM keeps
    them between invocations and MicroInterpreter::Reset() zeroes them. (The composite path
    cannot make variable operands, so they are added to the converted file.)"""
    if not any(call.options.get("stateful") for call in calls):
        return data
    model = read_model(data)
    graph = model.subgraphs[0]
    fused = [op for op in graph.operators if op_name(model, op).startswith(OP_PREFIX)]
    for op, call in zip(fused, calls, strict=True):
        if not call.options.get("stateful"):
            continue
        inputs = list(op.inputs)
        mask = [inputs.pop()] if call.mask else []  # the mask stays the last input
        for k, shape in enumerate(call.state_shapes):
            tensor = schema.TensorT()
            tensor.name = f"{call.op_name.lower()}/state_{k}".encode()
            tensor.shape, tensor.type, tensor.buffer = list(shape), schema.TensorType.FLOAT32, 0
            tensor.isVariable = True
            graph.tensors.append(tensor)
            inputs.append(len(graph.tensors) - 1)
        op.inputs = inputs + mask
    return write_model(model)


def float_weight_bytes(model: keras.Model) -> int:
    """Bytes of the model's weights stored as float32: the size a converted file should track."""
    return sum(int(np.prod(w.shape)) * 4 for w in model.weights)
