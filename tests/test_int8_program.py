"""The integer program on a cell built to reach every lowering the catalog cells do not: x used
elementwise (an int16 copy of x_t), a concatenated output, maximum/minimum of vectors and with a
constant, negative and reciprocal constants, an elementwise weight vector, matmul operands that
are computed values and slices of them; and the cells the int8 kernels refuse, refused by name."""

from __future__ import annotations

import os
import subprocess

import keras
import numpy as np
import pytest
from keras import ops
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, needs_tflm_headers

from fusegen.codegen import kernel_files
from fusegen.lower import class_factory, lower_cell
from fusegen.quantize import QuantizeError, build_program, quantize_cell
from fusegen.host.core_s8 import HostCoreS8
from fusegen.quantize.lut import LUT_SIZE
from fusegen.schedule.program import CHANNEL_FLAG, Binary, Concat, Lut, MatMul, Mul, Narrow, Widen
from fusegen.quantize.scales import asymmetric_int8
from fusegen.reference import float_interp, int_interp


class CoverageCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units, self.state_size, self.output_size = units, units, 2 * units

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1] + u, 2 * u), name="kernel")
        self.gate_bias = self.add_weight(shape=(u,), name="gate_bias")
        self.decay = self.add_weight(shape=(u,), name="decay")
        self.mix = self.add_weight(shape=(u, u), name="mix")

    def call(self, inputs, states):
        h = states[0]
        xh = ops.concatenate([ops.tanh(inputs), h], axis=-1)
        a, b = ops.split(ops.matmul(xh, self.kernel), 2, axis=-1)
        gate = ops.hard_sigmoid(a + self.gate_bias + ops.matmul(b, self.mix))
        keep = ops.maximum(ops.relu(b), ops.minimum(h, 0.5))
        leak = ops.silu(b) / 3.0 - self.decay * h + ops.multiply(h, -0.25)
        new_h = ops.clip(gate * keep + (1.0 - gate) * leak, -2.0, 2.0)
        return ops.concatenate([new_h, leak], axis=-1), [new_h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class DividingCell(CoverageCell):
    def call(self, inputs, states):
        z = ops.matmul(ops.concatenate([inputs, states[0]], axis=-1), self.kernel)
        a, b = ops.split(z, 2, axis=-1)
        new_h = ops.tanh(a) / (2.0 + ops.tanh(b))
        return ops.concatenate([new_h, new_h], axis=-1), [new_h]


class SharedTablesCell(CoverageCell):
    """Two tanh of slices of one matmul output, then a sigmoid of each: the tanh share a table,
    which puts their outputs in one scale group, so the sigmoids share one too."""

    def call(self, inputs, states):
        z = ops.matmul(ops.concatenate([inputs, states[0]], axis=-1), self.kernel)
        a, b = ops.split(z, 2, axis=-1)
        new_h = ops.sigmoid(ops.tanh(a)) - ops.sigmoid(ops.tanh(b))
        return ops.concatenate([new_h, ops.tanh(new_h)], axis=-1), [new_h]


def _layer(cls, input_size, units, timesteps, seed=0):
    layer = keras.layers.RNN(cls(units), return_sequences=True)
    rng = np.random.default_rng(seed)
    layer(np.zeros((1, timesteps, input_size), np.float32))
    for w in layer.weights:
        scale = 1.2 / np.sqrt(w.shape[0]) if len(w.shape) == 2 else 0.6
        w.assign(rng.uniform(-scale, scale, w.shape).astype(np.float32))
    return layer


@pytest.fixture(scope="module")
def coverage():
    input_size, units, timesteps = 5, 6, 9
    layer = _layer(CoverageCell, input_size, units, timesteps)
    lowered = lower_cell(class_factory(CoverageCell, {}), layer.cell, input_size)
    rng = np.random.default_rng(1)
    x_cal = rng.uniform(-1.5, 1.5, (16, timesteps, input_size)).astype(np.float32)
    q = quantize_cell(lowered.bound, x_cal, asymmetric_int8(-1.5, 1.5))
    x = rng.uniform(-1.5, 1.5, (6, timesteps, input_size)).astype(np.float32)
    return layer, lowered, q, x


def test_coverage_cell_reaches_every_lowering(coverage):
    q = coverage[2]
    steps = q.program.step
    kinds = {type(s) for s in steps}
    assert {Widen, Narrow, Concat, Mul, Binary} <= kinds
    ops_used = {s.op.value for s in steps if isinstance(s, Binary)}
    assert {"maximum", "minimum", "add", "sub"} <= ops_used
    assert any(s.reciprocal for s in steps if isinstance(s, Mul))
    assert "vector" in q.program.param_roles
    graph = q.bound.graph
    narrowed = [graph.nodes[s.operand].op.value for s in steps if isinstance(s, Narrow)]
    assert "slice" in narrowed and "tanh" in narrowed


@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backwards"])
@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
def test_coverage_cell_c_equals_twin(coverage, return_sequences, go_backwards):
    _, lowered, q, x = coverage
    core = HostCoreS8(q, lowered.op_name)
    for seq in q.quantize_input(x[:2]):
        y_twin, states = int_interp.run(q.program, q.inputs, q.sizes, seq, return_sequences,
                                        go_backwards)
        y_c, states_c = core.run(seq, return_sequences, go_backwards, max_chunk=2)
        assert np.array_equal(y_c, y_twin)
        assert np.array_equal(states_c, np.concatenate(states))


def test_coverage_cell_is_close_to_keras(coverage):
    """Bound as in test_int8_cells.py: the format's own error plus half an output step."""
    layer, _, q, x = coverage
    keras_y = np.asarray(layer(x))
    y = q.dequantize_output(q.run(q.quantize_input(x), return_sequences=True))
    scale, zp = q.input_qparams
    x_dq = (q.quantize_input(x).astype(np.float32) - zp) * scale
    fake = np.stack([float_interp.run(q.dequantized(), s, return_sequences=True)[0] for s in x_dq])
    step = q.output_qparams[0]
    mae = np.mean(np.abs(y - keras_y))
    assert mae <= min(np.mean(np.abs(fake - keras_y)) + 0.5 * step, 2 * step)


def test_same_function_of_one_scale_group_shares_one_table():
    layer = _layer(SharedTablesCell, 3, 4, 5)
    lowered = lower_cell(class_factory(SharedTablesCell, {}), layer.cell, 3)
    rng = np.random.default_rng(3)
    q = quantize_cell(lowered.bound, rng.uniform(-1, 1, (8, 5, 3)).astype(np.float32),
                      asymmetric_int8(-1, 1))
    graph = q.bound.graph
    luts = [s for s in q.program.step if isinstance(s, Lut)]
    rows = {}
    for s in luts:
        rows.setdefault(graph.nodes[s.node].op.value, set()).add(s.table)
    assert len(luts) == 5 and q.program.lut_count == 3
    assert [len(rows[f]) for f in ("tanh", "sigmoid")] == [2, 1]  # tanh(a), tanh(b) | tanh(h)
    for s in luts:  # a shared row means the same scales in and out, so the same table
        for t in luts:
            if s.table == t.table:
                assert q.scales[s.source] == q.scales[t.source]
                assert q.scales[s.node] == q.scales[t.node]
    assert q.inputs.luts.shape == (3, LUT_SIZE)
    x = q.quantize_input(rng.uniform(-1, 1, (5, 3)).astype(np.float32))
    y_twin, _ = int_interp.run(q.program, q.inputs, q.sizes, x, True)
    assert np.array_equal(HostCoreS8(q, lowered.op_name).run(x, True)[0], y_twin)


def test_division_by_a_computed_value_is_integer_division():
    """a / b of two computed values: fg_div_s16 (a*2^15 / b in int32, rescaled), C equal to the
    twin, and close to the float cell."""
    layer = _layer(DividingCell, 3, 4, 5)
    lowered = lower_cell(class_factory(DividingCell, {}), layer.cell, 3)
    rng = np.random.default_rng(2)
    x_cal = rng.uniform(-1.5, 1.5, (16, 5, 3)).astype(np.float32)
    q = quantize_cell(lowered.bound, x_cal, asymmetric_int8(-1.5, 1.5))
    assert any(type(s).__name__ == "Div" for s in q.program.step)
    x = rng.uniform(-1.5, 1.5, (4, 5, 3)).astype(np.float32)
    x_q = q.quantize_input(x)
    y_twin, _ = int_interp.run(q.program, q.inputs, q.sizes, x_q[0], True)
    assert np.array_equal(HostCoreS8(q, lowered.op_name).run(x_q[0], True)[0], y_twin)
    y = q.dequantize_output(q.run(x_q, True))
    expected = np.asarray(layer(x))
    assert np.mean(np.abs(y - expected)) <= 2.0 * q.output_qparams[0]


def _quantize_coverage(per_channel: bool):
    input_size, units, timesteps = 5, 6, 9
    layer = _layer(CoverageCell, input_size, units, timesteps)
    lowered = lower_cell(class_factory(CoverageCell, {}), layer.cell, input_size)
    x_cal = np.random.default_rng(1).uniform(-1.5, 1.5, (16, timesteps, input_size))
    return lowered, quantize_cell(lowered.bound, x_cal.astype(np.float32),
                                  asymmetric_int8(-1.5, 1.5), per_channel=per_channel)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_qparam_layout_is_scalars_then_arrays(per_channel):
    _, q = _quantize_coverage(per_channel)
    program = q.program
    assert q.per_channel is per_channel
    assert program.scalars[0] == CHANNEL_FLAG and q.inputs.qparams[0] == int(per_channel)
    offsets = [program.offset(name)(*q.sizes) for name in program.scalars]
    assert offsets == list(range(len(program.scalars)))
    start = len(program.scalars)
    for name, width in program.arrays + (program.channel_arrays if per_channel else []):
        assert program.offset(name)(*q.sizes) == start
        start += width(*q.sizes)
    assert start == program.qparam_count(per_channel)(*q.sizes) == q.inputs.qparams.size
    assert build_program(q.bound.graph).offsets == program.offsets  # structure only


def test_per_channel_adds_two_int32_per_output_channel():
    _, per_tensor = _quantize_coverage(False)
    _, per_channel = _quantize_coverage(True)
    graph, sizes = per_tensor.bound.graph, per_tensor.sizes
    matmuls = [s for s in per_tensor.program.pre + per_tensor.program.step
               if isinstance(s, MatMul)]
    channels = sum(graph.nodes[s.node].width(*sizes) for s in matmuls)
    assert per_channel.inputs.qparams.size - per_tensor.inputs.qparams.size == 2 * channels
    # Per tensor: every channel of a matrix has the same scale.
    for k, role in enumerate(per_tensor.program.param_roles):
        if role == "matrix":
            assert np.ptp(per_tensor.param_scales[k]) == 0
            assert np.ptp(per_channel.param_scales[k]) > 0


def test_per_channel_and_per_tensor_share_the_c_and_equal_the_twin():
    """One generated core serves both: the channel flag in qparams picks the layout."""
    cores = []
    for per_channel in (False, True):
        lowered, q = _quantize_coverage(per_channel)
        core = HostCoreS8(q, lowered.op_name)
        cores.append(core)
        x = np.random.default_rng(2).uniform(-1.5, 1.5, (9, 5)).astype(np.float32)
        seq = q.quantize_input(x)
        y_twin, _ = int_interp.run(q.program, q.inputs, q.sizes, seq, True)
        assert np.array_equal(core.run(seq, True, max_chunk=2)[0], y_twin)
    assert cores[0].files == cores[1].files




@needs_tflm_headers
def test_int8_tflm_kernel_compiles(coverage, tmp_path):
    _, lowered, _, _ = coverage
    for name, text in kernel_files(lowered.graph, lowered.op_name, ("s8",)).items():
        (tmp_path / name).write_text(text)
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fusegen")
    cmd = ["g++", "-std=c++17", "-fsyntax-only", "-DTF_LITE_STATIC_MEMORY", "-Wall", "-Wextra",
           "-Werror", f"-I{tmp_path}", f"-I{root}", *(f"-isystem{d}" for d in TFLM_INCLUDE),
           *TFLM_FLAGS, str(tmp_path / f"{lowered.op_name.lower()}.cc")]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
