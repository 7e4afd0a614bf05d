"""fusegen.converter: Keras models -> .tflite with each recurrent layer as one CUSTOM op.

The lowering here is hand-made for SimpleRNN so that these tests depend only on the FusedCall
contract, not on fusegen.lower. Every model is small and converted once per module (conversion
costs about a second), then inspected by several tests.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from fusegen.converter import composite, tflite_file
from fusegen.converter.fused_call import FusedCall
from fusegen.converter.model import convert, float_weight_bytes

T, I, UNITS = 5, 3, 6
OP = "FUSEGEN_SIMPLE_RNN"
# Weights are float32 and stored once; the rest is the flatbuffer's tables, tensor names and
# the converter's metadata, well under 4 KiB for these models.
OVERHEAD_BYTES = 4096

# Our round-trip test needs the interpreter that ships with TF, deprecated or not.
pytestmark = pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")


# --- A hand-made lowering of SimpleRNN -----------------------------------------------------


def simple_rnn_body(
    x: tf.Tensor, kernel: tf.Tensor, recurrent: tf.Tensor, bias: tf.Tensor, sequences: bool
) -> tf.Tensor:
    """Keras SimpleRNN (tanh, zero initial state), unrolled over the static T."""
    h = tf.zeros([1, recurrent.shape[0]])
    outputs = []
    for t in range(x.shape[1]):
        h = tf.tanh(tf.matmul(x[:, t, :], kernel) + tf.matmul(h, recurrent) + bias)
        outputs.append(h)
    return tf.stack(outputs, axis=1) if sequences else h


def options_of(layer: keras.layers.SimpleRNN) -> dict[str, bool | int | float]:
    # One option of each type, so every encoding path is exercised by every conversion.
    return {"return_sequences": layer.return_sequences, "units": layer.units, "clip": 2.5}


def lower_simple_rnn(layer: keras.layers.Layer) -> FusedCall | None:
    if not isinstance(layer, keras.layers.SimpleRNN):
        return None
    params = tuple(np.asarray(w, np.float32) for w in layer.get_weights())
    seq = layer.return_sequences
    steps = layer.input.shape[1]
    shape = (1, steps, layer.units) if seq else (1, layer.units)
    return FusedCall(
        OP,
        options_of(layer),
        params,
        shape,
        lambda x, k, r, b: simple_rnn_body(x, k, r, b, seq),
    )


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Non-zero weights everywhere: the converter folds away zero biases, which hides bugs."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.weights])
    return model


def rnn_layers(model: keras.Model) -> list[keras.layers.SimpleRNN]:
    """The SimpleRNN layers in execution order, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += rnn_layers(layer)
        elif isinstance(layer, keras.layers.SimpleRNN):
            found.append(layer)
    return found


# --- Models, each converted once -----------------------------------------------------------


def sequential() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((T, I)),  # batch None: the dynamic-batch case
            keras.layers.SimpleRNN(UNITS),
            keras.layers.Dense(4),
        ]
    )


def functional() -> keras.Model:
    x = keras.Input((T, I), batch_size=1)  # a fixed batch of 1 is accepted as is
    y = keras.layers.Conv1D(8, 2, activation="relu")(x)
    y = keras.layers.Dropout(0.5)(y)
    y = keras.layers.SimpleRNN(UNITS)(y)
    return keras.Model(x, keras.layers.Dense(3)(y))


def built_without_input() -> keras.Model:
    model = keras.Sequential([keras.layers.SimpleRNN(UNITS), keras.layers.Dense(2)])
    model.build((None, T, I))
    return model


def stacked() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((T, I)),
            keras.layers.SimpleRNN(UNITS, return_sequences=True),
            keras.layers.SimpleRNN(UNITS + 1),
            keras.layers.Dense(2),
        ]
    )


def nested() -> keras.Model:
    inner = keras.Sequential(
        [keras.Input((T, I)), keras.layers.SimpleRNN(UNITS, return_sequences=True)]
    )
    x = keras.Input((T, I))
    y = keras.layers.SimpleRNN(UNITS + 1)(inner(x))
    return keras.Model(x, keras.layers.Dense(2)(y))


BUILDERS = {
    "sequential": sequential,
    "functional": functional,
    "built_without_input": built_without_input,
    "stacked": stacked,
    "nested": nested,
}


@pytest.fixture(scope="module")
def converted() -> dict[str, tuple[keras.Model, bytes]]:
    keras.utils.set_random_seed(0)
    models = {name: randomize(build()) for name, build in BUILDERS.items()}
    return {name: (m, convert(m, lower_simple_rnn)) for name, m in models.items()}


@pytest.mark.parametrize("name", BUILDERS)
def test_one_subgraph_one_custom_op_per_layer_no_while(converted, name):
    model, data = converted[name]
    info = tflite_file.summary(data)
    names = info.op_names()
    assert info.subgraphs == 1
    assert "WHILE" not in names
    assert names.count(OP) == len(rnn_layers(model))
    # Float32 model: int32 only appears as shape operands (Conv1D's reshapes).
    assert {t.dtype for t in info.tensors} <= {"FLOAT32", "INT32"}


@pytest.mark.parametrize("name", BUILDERS)
def test_options_and_input_shapes(converted, name):
    model, data = converted[name]
    ops = tflite_file.custom_ops(data)
    assert [op.name for op in ops] == [OP] * len(rnn_layers(model))
    for op, layer in zip(ops, rnn_layers(model)):
        # Bools come back as ints 0/1 (see composite.py), which compare equal to False/True.
        assert op.options == options_of(layer)
        assert isinstance(op.options["clip"], float)
        steps, width = layer.input.shape[1:]
        assert op.input_shapes == (
            (1, steps, width),
            (width, layer.units),
            (layer.units, layer.units),
            (layer.units,),
        )


@pytest.mark.parametrize("name", BUILDERS)
def test_weights_stored_once(converted, name):
    model, data = converted[name]
    assert len(data) <= float_weight_bytes(model) + OVERHEAD_BYTES
    # And not dropped either: the float buffers hold at least every weight once.
    assert tflite_file.summary(data).buffer_bytes >= float_weight_bytes(model)


def test_params_are_the_layer_weights_in_order(converted):
    model, data = converted["stacked"]
    tree = tflite_file.read_model(data)
    graph = tree.subgraphs[0]
    custom = [op for op in graph.operators if tflite_file.op_name(tree, op) == OP]
    for op, layer in zip(custom, rnn_layers(model)):
        stored = [tflite_file.tensor_value(tree, i) for i in op.inputs[1:]]
        for got, want in zip(stored, layer.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)


def test_stacked_second_layer_consumes_first(converted):
    _, data = converted["stacked"]
    graph = tflite_file.summary(data)
    first, second = [op for op in graph.ops if op.name == OP]
    assert second.inputs[0] == first.outputs[0]
    assert graph.tensors[first.outputs[0]].shape == (1, T, UNITS)
    assert graph.tensors[second.outputs[0]].shape == (1, UNITS + 1)


def test_options_bytes_match_the_converter(converted):
    model, data = converted["sequential"]
    tree = tflite_file.read_model(data)
    op = next(o for o in tree.subgraphs[0].operators if o.customOptions is not None)
    want = tflite_file.encode_options(options_of(rnn_layers(model)[0]))
    assert bytes(bytearray(op.customOptions)) == want


def test_fixed_batch_other_than_one_is_an_error():
    model = keras.Sequential([keras.Input((T, I), batch_size=8), keras.layers.SimpleRNN(UNITS)])
    with pytest.raises(ValueError, match="fixed batch of 8"):
        convert(model, lower_simple_rnn)


def test_multiple_outputs_is_an_error():
    x = keras.Input((T, I))
    h = keras.layers.SimpleRNN(UNITS)(x)
    model = keras.Model(x, [keras.layers.Dense(2)(h), keras.layers.Dense(3)(h)])
    with pytest.raises(ValueError, match="2 outputs"):
        convert(model, lower_simple_rnn)


def test_body_shape_must_match_output_shape():
    model = sequential()

    def wrong(layer: keras.layers.Layer) -> FusedCall | None:
        call = lower_simple_rnn(layer)
        if call is None:
            return None
        return FusedCall(call.op_name, call.options, call.params, (1, UNITS + 1), call.body)

    with pytest.raises(ValueError, match="output_shape"):
        convert(model, wrong)


# --- composite ------------------------------------------------------------------------------


def test_implements_signature_types_each_option():
    text = composite.implements_signature("OP", {"b": True, "n": -3, "x": 0.5})
    assert 'name: "OP"' in text
    assert 'key: "tfl_fusable_op" value { b: true }' in text
    # Bools travel as ints: a `b:` attr would reach the flexbuffer as -1 for true.
    assert 'key: "b" value { i: 1 }' in text
    assert 'key: "n" value { i: -3 }' in text
    assert 'key: "x" value { f: 0.5 }' in text


def test_composite_carries_the_implements_attribute():
    call = FusedCall("OP", {"k": 1}, (), (1, 2), lambda x: x[:, 0, :])
    fn = composite.make_composite(call)
    graph = fn.get_concrete_function(tf.TensorSpec([1, 3, 2])).function_def
    assert graph.attr["_implements"].func.name == "OP"
    assert graph.attr["_implements"].func.attr["k"].i == 1


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"s": "text"}, TypeError, "must be bool, int or float"),
        ({"tfl_fusable_op": True}, ValueError, "reserved"),
        ({"big": 2**63}, ValueError, "int64"),
    ],
    ids=["string", "reserved", "too_big"],
)
def test_bad_options_rejected(options, error, match):
    with pytest.raises(error, match=match):
        FusedCall("OP", options, (), (1, 1), lambda x: x)


def test_params_must_be_float32():
    with pytest.raises(ValueError, match="float32"):
        FusedCall("OP", {}, (np.zeros(3),), (1, 1), lambda x, p: x)


# --- tflite_file ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin_model() -> tuple[keras.Model, bytes]:
    model = randomize(
        keras.Sequential(
            [
                keras.Input((T, I)),
                keras.layers.Conv1D(4, 2),
                keras.layers.Flatten(),
                keras.layers.Dense(3, activation="tanh"),
            ]
        )
    )
    return model, convert(model, lambda layer: None)


def run(data: bytes, x: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_builtin_model_matches_keras(builtin_model):
    model, data = builtin_model
    x = np.random.default_rng(1).normal(size=(1, T, I)).astype(np.float32)
    # Float32 throughout; only summation order differs between TF and TFLite kernels.
    np.testing.assert_allclose(run(data, x), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_round_trip_keeps_model_loadable_and_equal(builtin_model):
    _, data = builtin_model
    again = tflite_file.write_model(tflite_file.read_model(data))
    x = np.random.default_rng(2).normal(size=(1, T, I)).astype(np.float32)
    np.testing.assert_array_equal(run(again, x), run(data, x))
    assert tflite_file.summary(again).op_names() == tflite_file.summary(data).op_names()
    # Packing twice is stable: nothing is lost or reordered on the second pass.
    assert tflite_file.write_model(tflite_file.read_model(again)) == again


def test_written_buffers_are_16_byte_aligned(converted):
    _, data = converted["functional"]
    packed = tflite_file.write_model(tflite_file.read_model(data))
    root = tflite_file.schema.Model.GetRootAs(packed, 0)
    starts = []
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength():
            starts.append(buffer._tab.Vector(buffer._tab.Offset(4)))
    assert starts and all(s % tflite_file.BUFFER_ALIGNMENT == 0 for s in starts)


def test_replace_custom_options(converted):
    _, data = converted["stacked"]
    rewritten = tflite_file.replace_custom_options(data, OP, {"units": 99, "scale": 0.25}, index=1)
    ops = tflite_file.custom_ops(rewritten)
    assert ops[0].options == tflite_file.custom_ops(data)[0].options
    assert ops[1].options == {"units": 99, "scale": 0.25}
    assert ops[1].input_shapes == tflite_file.custom_ops(data)[1].input_shapes


def test_replace_custom_options_unknown_op(converted):
    _, data = converted["sequential"]
    with pytest.raises(ValueError, match="no CUSTOM op named"):
        tflite_file.replace_custom_options(data, "NOPE", {})


def test_summary_text(converted):
    _, data = converted["functional"]
    text = str(tflite_file.summary(data))
    assert f"{len(data)} bytes" in text
    assert OP in text and "CONV_2D" in text


def test_read_rejects_non_tflite():
    with pytest.raises(ValueError, match="not a .tflite file"):
        tflite_file.read_model(b"\0" * 16)
