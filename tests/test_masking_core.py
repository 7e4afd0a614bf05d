"""Masked steps in the generated cores: the C core (float32 and int8) against the twins and Keras.

Keras' rule (keras.src.backend.tensorflow.rnn): a masked step keeps the states and outputs zeros
(zero_output_for_mask) or the previous step's output (zeros before the first valid step); the
last output of return_sequences=False is the output of the last step under that rule. The core
does not run padded steps before the first valid one or after the last (fg_step_range); the
results must not show it. Float tolerance: FLOAT_TOLERANCE (see test_cells.py); int8: the C core
equals the integer twin exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cells_catalog import CELLS, random_layer

from fusegen.cli import FLOAT_TOLERANCE
from fusegen.host.core import HostCore, StepMask
from fusegen.host.core_s8 import HostCoreS8
from fusegen.lower import cell_factory, lower_cell
from fusegen.quantize import quantize_cell
from fusegen.quantize.scales import asymmetric_int8
from fusegen.reference import float_interp, int_interp
from fusegen.verdict import INT8_MAX_STEPS, INT8_MEAN_STEPS

T = 11
PADDINGS = {  # valid steps of x, by row
    "prefix": np.arange(T) >= 4,
    "suffix": np.arange(T) < 6,
    "middle": ~np.isin(np.arange(T), [3, 4, 8]),
    "mixed": np.isin(np.arange(T), [2, 3, 5, 6, 7]),
    "none_valid": np.zeros(T, bool),
}


def _keras(layer, x, valid, zero_output):
    layer.zero_output_for_mask = zero_output
    return np.asarray(layer(x, mask=np.repeat(valid[None], len(x), 0)))


@pytest.mark.parametrize("cell,return_sequences,go_backwards", [
    ("lstm", True, False), ("gru", False, False), ("simple_rnn", True, True),
    ("minimal_gated", False, True), ("peephole_lstm", True, False)])
def test_masked_float_core_matches_keras(cell, return_sequences, go_backwards):
    layer, x = random_layer(cell, 3, 7, T, return_sequences, go_backwards, seed=5)
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, 3)
    core = HostCore(lowered.bound, lowered.op_name)
    for (padding, valid), zero_output in itertools.product(PADDINGS.items(), (False, True)):
        expected = _keras(layer, x, valid, zero_output)
        for sample in range(len(x)):
            twin, twin_states = float_interp.run(lowered.bound, x[sample], None,
                                                 return_sequences, go_backwards, valid,
                                                 zero_output)
            np.testing.assert_allclose(twin, expected[sample], rtol=0, atol=FLOAT_TOLERANCE,
                                       err_msg=padding)
            for chunk in (4, 1):
                got, states = core.run(x[sample], return_sequences, go_backwards,
                                       max_chunk=chunk,
                                       mask=StepMask(valid.astype(np.uint8), None, zero_output))
                np.testing.assert_allclose(got, expected[sample], rtol=0, atol=FLOAT_TOLERANCE,
                                           err_msg=padding)
                np.testing.assert_allclose(states, np.concatenate(twin_states), rtol=0,
                                           atol=FLOAT_TOLERANCE, err_msg=padding)
            # the masked steps really changed something (an ignored mask would differ)
            unmasked, _ = core.run(x[sample], return_sequences, go_backwards)
            if 0 < valid.sum() < T:
                assert np.abs(np.concatenate(twin_states)).max() > 1e-3
                assert not np.allclose(got, unmasked, atol=1e-4), padding


def test_mask_reduces_inner_values_and_length_cuts_the_suffix():
    """[T, K] masks (a NOT_EQUAL of the input, reduced in the op) and a length input."""
    layer, x = random_layer("gru", 3, 5, T, True, seed=2)
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, 3)
    core = HostCore(lowered.bound, lowered.op_name)
    inner = np.zeros((T, 3), np.uint8)
    inner[:, 1] = PADDINGS["middle"]
    by_inner, _ = core.run(x[0], True, mask=StepMask(inner))
    by_steps, _ = core.run(x[0], True, mask=StepMask(PADDINGS["middle"].astype(np.uint8)))
    np.testing.assert_array_equal(by_inner, by_steps)
    by_length, s_length = core.run(x[0], True, mask=StepMask(None, 6))
    by_suffix, s_suffix = core.run(x[0], True, mask=StepMask(PADDINGS["suffix"].astype(np.uint8)))
    np.testing.assert_array_equal(by_length, by_suffix)
    np.testing.assert_array_equal(s_length, s_suffix)
    short, _ = core.run(x[0][:6], True)
    np.testing.assert_allclose(by_length[:6], short, rtol=0, atol=0)


@pytest.mark.parametrize("zero_output", [False, True], ids=["previous", "zeros"])
@pytest.mark.parametrize("cell,go_backwards", [("lstm", False), ("gru", True),
                                               ("minimal_gated", False)])
def test_masked_int8_core_equals_integer_twin(cell, go_backwards, zero_output):
    layer, x = random_layer(cell, 4, 9, T, True, go_backwards, seed=7)
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, 4)
    rng = np.random.default_rng(3)
    x_cal = rng.uniform(-1.5, 1.5, (8, T, 4)).astype(np.float32)
    qcell = quantize_cell(lowered.bound, x_cal, asymmetric_int8(x_cal.min(), x_cal.max()))
    core = HostCoreS8(qcell, lowered.op_name + "_S8")
    x_q = qcell.quantize_input(x)
    for padding, valid in PADDINGS.items():
        for rs in (True, False):
            y_twin, s_twin = int_interp.run(qcell.program, qcell.inputs, qcell.sizes, x_q[0], rs,
                                            go_backwards, None, valid, zero_output)
            y_c, s_c = core.run(x_q[0], rs, go_backwards,
                                mask=StepMask(valid.astype(np.uint8), None, zero_output))
            assert np.array_equal(y_c, y_twin), padding
            assert np.array_equal(s_c, np.concatenate(s_twin)), padding
        if padding == "middle":  # and the masked int8 output is Keras' within the int8 bound
            expected = _keras(layer, x, valid, zero_output)[0]
            y_c, _ = core.run(x_q[0], True, go_backwards,
                              mask=StepMask(valid.astype(np.uint8), None, zero_output))
            step = qcell.output_qparams[0]
            err = np.abs(qcell.dequantize_output(y_c) - expected)
            assert err.mean() <= 2.0 * step and err.max() <= 16 * step


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_catalog_cell_honours_a_mask_in_float32_and_int8(cell):
    """The mask lives in the generated step loop, so it must hold for any cell: every catalog
    cell (the built-in ones, the custom ones, the projected and fixed-head ones), prefix, suffix
    and middle padding. float32 C core against Keras; int8 C core equal to the integer twin and
    within verify's int8 bound of Keras."""
    layer, x = random_layer(cell, 3, 6, T, True, False, seed=11)
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, 3)
    core = HostCore(lowered.bound, lowered.op_name)
    rng = np.random.default_rng(4)
    # The calibration set holds the evaluated sequences: the bound is on the kernel, not on how
    # far 8 random sequences reach. LSTMP's output (a linear projection, bounded by no
    # activation) went 14% past the range of 8 others and was clipped, 20 steps off, with or
    # without a mask (README, int8 calibration).
    x_cal = np.concatenate([rng.uniform(-1.5, 1.5, (8, T, 3)).astype(np.float32), x])
    qcell = quantize_cell(lowered.bound, x_cal, asymmetric_int8(x_cal.min(), x_cal.max()))
    core_s8 = HostCoreS8(qcell, lowered.op_name + "_S8")
    x_q = qcell.quantize_input(x)
    step = qcell.output_qparams[0]
    for padding in ("prefix", "suffix", "middle"):
        valid = PADDINGS[padding]
        mask = StepMask(valid.astype(np.uint8), None, False)
        expected = _keras(layer, x, valid, False)[0]
        got, _ = core.run(x[0], True, False, mask=mask)
        np.testing.assert_allclose(got, expected, rtol=0, atol=FLOAT_TOLERANCE, err_msg=padding)
        y_twin, s_twin = int_interp.run(qcell.program, qcell.inputs, qcell.sizes, x_q[0], True,
                                        False, None, valid, False)
        y_c, s_c = core_s8.run(x_q[0], True, False, mask=mask)
        assert np.array_equal(y_c, y_twin), padding
        assert np.array_equal(s_c, np.concatenate(s_twin)), padding
        err = np.abs(qcell.dequantize_output(y_c) - expected)
        assert err.mean() <= INT8_MEAN_STEPS * step and err.max() <= INT8_MAX_STEPS * step, padding
