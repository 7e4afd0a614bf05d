"""A `FusedCall` as a TFLite composite function, which the converter turns into one custom op.

The recipe (verified on TF 2.21): a `tf.function` whose `experimental_implements` is a
`NameAttrList` in protobuf text format, named after the op, with attr `tfl_fusable_op: true`.
The converter's prepare-composite-functions pass erases the body and emits a `TFL::CustomOp`
whose inputs are the function's arguments and whose custom options are a flexbuffer map of the
remaining attrs. This only happens on the SavedModel import path, i.e. converting with
`TFLiteConverter.from_concrete_functions(funcs, trackable_obj)` or `from_saved_model`; without a
trackable object the legacy path inlines the function and the body is converted instead.

How each option type travels (text format -> MLIR attr -> flexbuffer, see
CreateTflFusableOpCustomOptions in
tensorflow/compiler/mlir/lite/transforms/prepare_composite_functions_tf.cc):
  float -> `f:` (a proto float, so float32) -> FloatAttr f32 -> fbb.Float: FBT_FLOAT, 32-bit.
  int   -> `i:` (int64) -> IntegerAttr i64 -> fbb.Int(int64): FBT_INT, stored at the map's
           byte width (the smallest holding every value: 4 bytes unless a value needs 8).
  bool  -> `i:` 0 or 1, deliberately not `b:`. A `b:` attr becomes a BoolAttr, which *is* an
           IntegerAttr of type i1; the pass tests IntegerAttr before BoolAttr and calls getInt(),
           which sign-extends i1, so `b: true` arrives as FBT_INT -1 and `b: false` as 0.
           Never FBT_BOOL either way. Writing `i:` gives FBT_INT 0/1, which C++ reads as
           AsBool() or AsInt32() alike.
Keys come out sorted (a flexbuffer map is always sorted), so kernels must look options up by
key, never by position. tflite_file.encode_options reproduces these bytes exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import attr_value_pb2

from fusegen.converter.fused_call import RESERVED_OPTION, FusedCall, OptionValue


def implements_signature(op_name: str, options: dict[str, OptionValue]) -> str:
    """The `experimental_implements` text: a NameAttrList marking a fusable custom op."""
    attrs = attr_value_pb2.NameAttrList(name=op_name)
    attrs.attr[RESERVED_OPTION].b = True
    for key, value in options.items():
        _set_attr(attrs.attr[key], value)
    return text_format.MessageToString(attrs, as_one_line=True)


def _set_attr(attr: attr_value_pb2.AttrValue, value: OptionValue) -> None:
    # bool is an int in Python, and goes as one on purpose (see the module docstring).
    if isinstance(value, int):
        attr.i = int(value)
    elif isinstance(value, float):
        attr.f = value
    else:
        raise TypeError(f"option value {value!r} is not bool, int or float")


def make_composite(call: FusedCall) -> Callable[..., tf.Tensor]:
    """A tf.function `f(x, *params)` that converts to one CUSTOM op named `call.op_name`.

    Call it inside the traced forward pass with the params as `tf.constant`s; they become the
    custom op's constant inputs after `x`.
    """
    signature = implements_signature(call.op_name, call.options)
    _check_parses(signature)

    def body(x: tf.Tensor, *params: tf.Tensor):
        result = call.body(x, *params)
        outputs = list(result) if call.return_state else [result]
        expected = [call.output_shape, *(call.state_shapes if call.return_state else ())]
        # The custom op's output tensors take their shapes from this result; a wrong shape here
        # would only surface as a kernel Prepare failure on the device.
        got = [tuple(t.shape) for t in outputs]
        if got != [tuple(s) for s in expected]:
            raise ValueError(f"{call.op_name}: body returned shapes {got}, but output_shape "
                             f"and state_shapes say {expected}")
        return tuple(outputs) if call.return_state else outputs[0]

    return tf.function(body, experimental_implements=signature, autograph=False)


def _check_parses(signature: str) -> None:
    # tf.function silently falls back to a plain-string attribute on a parse error, and the
    # converter then keeps the body instead of fusing: fail here instead.
    text_format.Parse(signature, attr_value_pb2.NameAttrList())
