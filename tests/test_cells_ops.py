"""The issue-14 op catalog (tests/cells_catalog_ops.py) through the whole pipeline.

For every cell and size:
  * float32: the numpy twin and the compiled C core against Keras, within FLOAT_TOLERANCE
    (1e-5 absolute; the reductions add in index order where TF's Eigen reduction adds in tree
    order, a few float32 ulps of the normalised values: measured under 5e-7 here);
  * int8: the generated `_eval_s8` equals the integer twin bit for bit (y and final states, two
    chunk sizes of the hoisted projection), and the twin's mean error against Keras stays within
    the bound `fusegen verify` applies (2 output steps; see README "int8").
A model stacking every catalog cell converts, in float32 and in int8, to one CUSTOM op per
recurrent layer (no WHILE), and a cell with an op fusegen has no kernel for still fails with a
one-line error naming the user's file:line.
"""

from __future__ import annotations

import functools
import inspect

import keras
import numpy as np
import pytest
from cells_catalog_ops import OPS_CELLS, OPS_SIZES, random_ops_layer, randomize_ops
from keras import ops

from fusegen.cli import FLOAT_TOLERANCE
from fusegen.frontend.tf_graph import UnsupportedOpError
from fusegen.host.core import HostCore
from fusegen.host.core_s8 import HostCoreS8
from fusegen.ir import Op
from fusegen.lower import cell_factory, lower_cell
from fusegen.quantize import quantize_cell
from fusegen.quantize.scales import asymmetric_int8
from fusegen.reference import float_interp, int_interp

MAX_MEAN_STEPS = 2.0  # verify's default --mean-steps


def _ids(size) -> str:
    return "I{}U{}T{}".format(*size)


@functools.cache
def _lowered(cell: str, size: tuple[int, int, int]):
    input_size, units, timesteps = size
    seed = sorted(OPS_CELLS).index(cell) * 10 + OPS_SIZES.index(size)
    layer, x = random_ops_layer(cell, input_size, units, timesteps, seed=seed, batch=6)
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, input_size)
    return layer, x, lowered, np.asarray(layer(x))


@pytest.mark.parametrize("size", OPS_SIZES, ids=_ids)
@pytest.mark.parametrize("cell", sorted(OPS_CELLS))
def test_float32_twin_and_c_core_match_keras(cell, size):
    layer, x, lowered, expected = _lowered(cell, size)
    core = HostCore(lowered.bound, lowered.op_name)
    for sample in range(2):
        twin, _ = float_interp.run(lowered.bound, x[sample], return_sequences=True)
        got, _ = core.run(x[sample], return_sequences=True)
        np.testing.assert_allclose(twin, expected[sample], rtol=0, atol=FLOAT_TOLERANCE)
        np.testing.assert_allclose(got, expected[sample], rtol=0, atol=FLOAT_TOLERANCE)
        assert np.abs(got).max() > 1e-2


def test_catalog_uses_the_new_ops():
    """The cells really exercise what they are named for (a cell that traced to plain LSTM math
    would pass everything above without testing a reduction)."""
    size = OPS_SIZES[0]
    ops_of = {c: {(n.op, dict(n.attrs).get("fn")) for n in _lowered(c, size)[2].bound.graph.nodes}
              for c in OPS_CELLS}
    for cell in ("layernorm_lstm", "layernorm_gru", "rms_norm", "dense_backbone"):
        assert (Op.REDUCE, "mean") in ops_of[cell] and (Op.RSQRT, None) in ops_of[cell], cell
    assert {(Op.REDUCE, "max"), (Op.REDUCE, "sum"), (Op.EXP, None), (Op.DIV, None),
            (Op.MINIMUM, None), (Op.MAXIMUM, None)} <= ops_of["softmax_attention"]
    assert {(Op.ABS, None), (Op.SQUARE, None), (Op.LOG, None), (Op.WHERE, None)} \
        <= ops_of["elementary_ops"]


@functools.cache
def _quantized(cell: str, size: tuple[int, int, int]):
    layer, x, lowered, expected = _lowered(cell, size)
    rng = np.random.default_rng(7)
    x_cal = rng.uniform(-1.5, 1.5, (16, size[2], size[0])).astype(np.float32)
    qcell = quantize_cell(lowered.bound, x_cal, asymmetric_int8(-1.5, 1.5))
    return qcell, HostCoreS8(qcell, lowered.op_name), x, expected


@pytest.mark.parametrize("size", OPS_SIZES, ids=_ids)
@pytest.mark.parametrize("cell", sorted(OPS_CELLS))
def test_int8_c_core_equals_integer_twin(cell, size):
    q, core, x, _ = _quantized(cell, size)
    x_q = q.quantize_input(x)
    for k in range(2):
        y_twin, states_twin = int_interp.run(q.program, q.inputs, q.sizes, x_q[k], True)
        for chunk in (4, 1):
            y_c, states_c = core.run(x_q[k], True, max_chunk=chunk)
            assert np.array_equal(y_c, y_twin), f"sequence {k}, chunk {chunk}"
            assert np.array_equal(states_c, np.concatenate(states_twin)), f"sequence {k}"


@pytest.mark.parametrize("size", OPS_SIZES, ids=_ids)
@pytest.mark.parametrize("cell", sorted(OPS_CELLS))
def test_int8_twin_is_close_to_keras(cell, size):
    q, _, x, expected = _quantized(cell, size)
    y = q.dequantize_output(q.run(q.quantize_input(x), True))
    steps = np.abs(y - expected) / q.output_qparams[0]
    assert float(np.mean(steps)) <= MAX_MEAN_STEPS, f"mean {np.mean(steps):.2f} steps"


class ReduceErrorsCell(OPS_CELLS["rms_norm"]):
    """ops.min is supported (as -max(-x)); argmax and a reduction over the batch axis are not."""

    def call(self, inputs, states):
        h = states[0]
        low = ops.min(h, axis=-1, keepdims=True)
        pick = ops.cast(ops.argmax(h, axis=-1), "float32")
        over_batch = ops.sum(inputs, axis=0)
        new = ops.tanh(ops.matmul(inputs, self.kernel) + low + pick + ops.sum(over_batch))
        return new, [new]


class MinCell(OPS_CELLS["rms_norm"]):
    def call(self, inputs, states):
        h = states[0]
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel)
        new = ops.tanh(z - ops.min(z, axis=-1, keepdims=True) * self.gain)
        return new, [new]


def test_min_reduction_matches_keras():
    layer = keras.layers.RNN(MinCell(6), return_sequences=True)
    x = np.random.default_rng(3).uniform(-1.5, 1.5, (1, 5, 4)).astype(np.float32)
    layer(x)
    randomize_ops(layer, 3)
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, 4)
    got, _ = HostCore(lowered.bound, lowered.op_name).run(x[0], return_sequences=True)
    np.testing.assert_allclose(got, np.asarray(layer(x))[0], rtol=0, atol=FLOAT_TOLERANCE)


def test_unsupported_reductions_are_named_with_their_lines():
    """Every op fusegen cannot fuse, each with the user's file:line, in one error."""
    layer = keras.layers.RNN(ReduceErrorsCell(5))
    layer(np.zeros((1, 3, 4), np.float32))
    with pytest.raises(UnsupportedOpError) as err:
        lower_cell(cell_factory(layer.cell), layer.cell, 4)
    details = err.value.details
    assert len(details) == 2, details
    assert all(d.startswith("test_cells_ops.py:") for d in details), details
    lines, first = inspect.getsourcelines(ReduceErrorsCell.call)
    argmax = first + next(k for k, line in enumerate(lines) if "argmax" in line)
    over_batch = first + next(k for k, line in enumerate(lines) if "axis=0" in line)
    assert details[0].startswith(f"test_cells_ops.py:{argmax}:"), details
    assert details[1].startswith(f"test_cells_ops.py:{over_batch}:"), details
    assert "only the feature axis" in details[1], details
    assert "\n" not in str(err.value)
