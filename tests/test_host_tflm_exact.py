"""The host runs builtin ops as TFLM does (issue 17): HostFile runs them through TFLM's own
interpreter (the tflite-micro wheel), so an int8 FULLY_CONNECTED whose requantization lands on a
rounding tie gives TFLM's answer (gemmlowp's two roundings), not tf.lite's single rounding.

The tie is constructed: the input equals its zero point, so each output's accumulator is its
bias, and each bias is set to a value where the two roundings differ. The expected outputs are
computed here from TFLM's reference arithmetic (MultiplyByQuantizedMultiplier), in Python ints.
With a TFLM build (FUSEGEN_TFLM_*), the same file also runs through the TFLM runner compiled from
the user's TFLM, and the outputs must be equal.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_LIB, needs_tflm

from fusegen.converter import tflite_file
from fusegen.host.file import HostFile

pytest.importorskip("tflite_micro")


# -- TFLM's reference requantization (tensorflow/lite/kernels/internal/common.h), and tf.lite's
# -- single-rounding variant, on Python ints ------------------------------------------------

def quantize_multiplier(real: float) -> tuple[int, int]:
    q, shift = math.frexp(real)
    m = round(q * (1 << 31))
    if m == 1 << 31:
        m, shift = m // 2, shift + 1
    return m, shift


def _srdhm(a: int, b: int) -> int:
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    total = ab + nudge
    q = abs(total) >> 31
    return q if total >= 0 else -q


def _rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def double_rounding(acc: int, m: int, shift: int) -> int:
    return _rdbpot(_srdhm(acc * (1 << max(shift, 0)), m), max(-shift, 0))


def single_rounding(acc: int, m: int, shift: int) -> int:
    total = 31 - shift
    return (acc * m + (1 << (total - 1))) >> total


# -- the model -----------------------------------------------------------------------------------

def fc_model_at_ties() -> tuple[bytes, np.ndarray, np.ndarray, int, np.ndarray]:
    """An int8 Dense(4) .tflite whose biases put every output on a double/single rounding
    difference for an input at the zero point; that input, the expected output (TFLM's double
    rounding), how many outputs the single rounding gets wrong, and the single rounding's
    output."""
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    rng = np.random.default_rng(7)
    model.layers[0].set_weights([rng.uniform(-1, 1, (6, 4)).astype(np.float32),
                                 rng.uniform(-0.5, 0.5, 4).astype(np.float32)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 6)).astype(np.float32)] for _ in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    fb = tflite_file.read_model(converter.convert())
    graph = fb.subgraphs[0]
    (op,) = [o for o in graph.operators if tflite_file.op_name(fb, o) == "FULLY_CONNECTED"]
    x_t, w_t, b_t, y_t = (graph.tensors[i] for i in (*op.inputs, op.outputs[0]))
    s_in, s_out = float(x_t.quantization.scale[0]), float(y_t.quantization.scale[0])
    zp_in, zp_out = int(x_t.quantization.zeroPoint[0]), int(y_t.quantization.zeroPoint[0])
    w_scales = [float(s) for s in w_t.quantization.scale]
    bias = np.frombuffer(bytes(fb.buffers[b_t.buffer].data), np.int32).copy()
    expected, single, differ = [], [], 0
    for c in range(len(bias)):
        m, shift = quantize_multiplier(s_in * w_scales[c if len(w_scales) > 1 else 0] / s_out)
        acc = next(a for a in range(1, 1 << 20)
                   if double_rounding(a, m, shift) != single_rounding(a, m, shift)
                   and abs(double_rounding(a, m, shift) + zp_out) < 100)
        bias[c] = acc
        expected.append(double_rounding(acc, m, shift) + zp_out)
        single.append(single_rounding(acc, m, shift) + zp_out)
        differ += single[-1] != expected[-1]
    fb.buffers[b_t.buffer].data = np.frombuffer(bias.tobytes(), np.uint8)
    x = np.full((1, 6), zp_in, np.int8)
    return (tflite_file.write_model(fb), x, np.array([expected], np.int8), differ,
            np.array([single], np.int8))


@pytest.fixture(scope="module")
def tie_model():
    return fc_model_at_ties()


def _tf_lite(data: bytes, resolver: str = "AUTO") -> tf.lite.Interpreter:
    interpreter = tf.lite.Interpreter(
        model_content=data,
        experimental_op_resolver_type=getattr(tf.lite.experimental.OpResolverType, resolver))
    interpreter.allocate_tensors()
    return interpreter


@pytest.mark.parametrize("resolver", ["AUTO", "BUILTIN_REF"])
def test_the_old_tf_lite_path_fails_at_the_tie(tie_model, monkeypatch, resolver):
    """A host path through tf.lite's interpreter (its default, XNNPACK, and its reference
    kernels alike) rounds once: on this file HostFile then gives the single rounding, not
    TFLM's answer, so the test below fails on it. (tf.lite's optimized kernels without
    delegates, HostFile's fallback without the tflite-micro wheel, happen to round twice.)"""
    import fusegen.host.file as host_file

    data, x, expected, _, single = tie_model
    monkeypatch.setattr(host_file, "micro_interpreter", lambda _data: None)
    monkeypatch.setattr(host_file, "reference_interpreter", lambda d: _tf_lite(d, resolver))
    host = HostFile(data, {})
    assert all(getattr(step, "micro", None) is None for _, step in host.steps)
    got = host.run(x)
    assert not np.array_equal(got, expected)
    assert np.array_equal(got, single)


def test_host_file_rounds_a_fully_connected_tie_as_tflm(tie_model):
    data, x, expected, differ, _ = tie_model
    assert differ == expected.size  # every output is a case where the roundings disagree
    host = HostFile(data, {})
    assert all(getattr(step, "micro", None) is not None for _, step in host.steps)
    got = host.run(x)
    assert got.dtype == np.int8 and np.array_equal(got, expected)


@needs_tflm
def test_host_file_equals_the_tflm_runner(tie_model, tmp_path):
    """Against the user's TFLM build: the tie model, and a random int8 input batch."""
    from fusegen.host.tflm import build_runner, run_runner

    data, x, expected, _, _ = tie_model
    (tmp_path / "kernels").mkdir()
    from fusegen.codegen import write_package
    write_package({}, tmp_path / "kernels")
    exe = build_runner(data, tmp_path / "kernels", TFLM_INCLUDE, TFLM_LIB, tmp_path, TFLM_FLAGS)
    batch = np.concatenate([x, np.random.default_rng(8).integers(-128, 128, (16, 6))]).astype(np.int8)
    host = HostFile(data, {}).run(batch)
    device = np.stack([run_runner(exe, data, batch[k:k + 1], tmp_path).outputs[0]
                       for k in range(len(batch))])
    assert np.array_equal(device, host) and np.array_equal(device[:1], expected)
