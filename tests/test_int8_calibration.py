"""Calibration of int8 cells: bad data is refused with a clear message, degenerate ranges fall
back to a documented minimum, and the caller's quantization parameters are checked."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
from keras import ops

from fusegen.lower import class_factory, lower_cell
from fusegen.quantize import MIN_CALIBRATION_STEPS, calibrate, quantize_cell
from fusegen.host.core_s8 import HostCoreS8
from fusegen.quantize.scales import MIN_RANGE, pow2_scale

X_Q = (3.0 / 255, 0)  # int8 x covering about [-1.5, 1.5]


@functools.cache
def simple_rnn(zero: bool = False):
    cell = keras.layers.SimpleRNNCell(4)
    cell.build((1, 3))
    rng = np.random.default_rng(0)
    for w in cell.weights:
        w.assign(np.zeros(w.shape, np.float32) if zero else
                 rng.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    return lower_cell(class_factory(keras.layers.SimpleRNNCell, {}), cell, 3)


def data(n=8, t=6, i=3, seed=0):
    return np.random.default_rng(seed).uniform(-1.5, 1.5, (n, t, i)).astype(np.float32)


@pytest.mark.parametrize("bad, message", [
    ([[[0.0] * 3] * 6] * 8, "must be a numpy array"),
    (np.zeros((8, 6, 3), np.int32), "must be floating point"),
    (np.zeros((48, 3), np.float32), r"must be \[N, T, 3\]"),
    (np.zeros((8, 6, 4), np.float32), r"must be \[N, T, 3\]"),
    (np.zeros((2, 15, 3), np.float32), f"30 cell steps .* at least {MIN_CALIBRATION_STEPS}"),
    (np.where(np.arange(3) == 1, np.nan, data()), "NaN or infinity"),
    (np.where(np.arange(3) == 1, np.inf, data()), "NaN or infinity"),
], ids=["list", "int", "2d", "features", "too-few", "nan", "inf"])
def test_bad_calibration_data_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        quantize_cell(simple_rnn().bound, bad, X_Q)


def test_minimum_number_of_steps_is_accepted():
    x = data(n=1, t=MIN_CALIBRATION_STEPS)
    assert calibrate(simple_rnn().bound, x).steps == MIN_CALIBRATION_STEPS


def test_ranges_cover_the_float_twin():
    bound = simple_rnn().bound
    ranges = calibrate(bound, data())
    out = bound.graph.outputs[0]
    assert -1.0 <= ranges.lo[out] < 0 < ranges.hi[out] <= 1.0  # a tanh output
    assert ranges.lo[0] >= -1.5 and ranges.hi[0] <= 1.5  # the input


class ExpCell(keras.layers.Layer):
    """exp of the input projection: overflows float32 for large inputs."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units, self.state_size, self.output_size = units, units, units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

    def call(self, inputs, states):
        new_h = ops.tanh(ops.exp(ops.matmul(inputs, self.kernel)) * 0.001 + states[0])
        return new_h, [new_h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_non_finite_values_inside_the_cell_are_refused():
    cell = ExpCell(4)
    cell.build((1, 3))
    cell.kernel.assign(np.full((3, 4), 0.5, np.float32))
    bound = lower_cell(class_factory(ExpCell, {}), cell, 3).bound
    x = data()
    x[3, 2] = 1000.0  # exp(1500) overflows
    with pytest.raises(ValueError, match=r"calibration: %\d+ exp .* not finite at timestep 2"):
        quantize_cell(bound, x, X_Q)


def test_constant_zero_ranges_use_the_fallback_and_stay_exact():
    """All weights zero: every value is 0 throughout calibration. Each int16 value falls back to
    +-MIN_RANGE (Q-7.22), the output to an int8 range of width MIN_RANGE; the kernel outputs the
    zero point exactly, in the twin and in C."""
    lowered = simple_rnn(zero=True)
    q = quantize_cell(lowered.bound, data(), X_Q)
    fallback = pow2_scale(MIN_RANGE)
    computed = [j for j, n in enumerate(q.bound.graph.nodes)
                if n.op.value in ("matmul", "tanh", "state")]
    assert computed and all(q.scales[j] == fallback for j in computed)
    assert q.output_qparams[0] == pytest.approx(MIN_RANGE / 255)
    x = q.quantize_input(data(n=1, t=5)[0])
    y = q.run(x, return_sequences=True)
    assert np.all(y == q.output_qparams[1])
    assert np.array_equal(HostCoreS8(q, lowered.op_name).run(x, True)[0], y)
    assert np.all(q.dequantize_output(y) == 0.0)


@pytest.mark.parametrize("qparams, message", [
    ((0.0, 0), "scale must be finite and > 0"),
    ((-0.1, 0), "scale must be finite and > 0"),
    ((float("nan"), 0), "scale must be finite and > 0"),
    ((0.01, 128), r"zero point must be an integer in \[-128, 127\]"),
    ((0.01, 1.5), r"zero point must be an integer in \[-128, 127\]"),
    ((0.01,), r"must be \(scale, zero_point\)"),
], ids=["zero", "negative", "nan", "zp-range", "zp-fraction", "short"])
def test_bad_quantization_parameters_are_refused(qparams, message):
    with pytest.raises(ValueError, match=message):
        quantize_cell(simple_rnn().bound, data(), qparams)
    with pytest.raises(ValueError, match=message):
        quantize_cell(simple_rnn().bound, data(), X_Q, output_qparams=qparams)


def test_output_quantization_defaults_to_the_calibrated_range():
    q = quantize_cell(simple_rnn().bound, data(), X_Q)
    out = q.bound.graph.outputs[0]
    scale, zero_point = q.output_qparams
    lo, hi = q.ranges.lo[out], q.ranges.hi[out]
    assert scale == pytest.approx((hi - lo) / 255)
    assert (-128 - zero_point) * scale == pytest.approx(lo, abs=scale)
    q2 = quantize_cell(simple_rnn().bound, data(), X_Q, output_qparams=(1 / 128, 0))
    assert q2.output_qparams == (1 / 128, 0)
