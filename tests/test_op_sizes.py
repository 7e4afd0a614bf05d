"""Cells that used to stop before their kernel: unnamed weights (issue 14, item 6) and output
widths that do not grow with units (the op's units option, item 4; the catalog's LSTMPCell and
HeadCell run through every parametrized cell test as well)."""

from __future__ import annotations

import keras
import numpy as np
from cells_catalog import randomize
from keras import ops

from fusegen.host.core import HostCore
from fusegen.lower import cell_factory, lower_cell

ATOL = 1e-5  # as tests/test_cells.py


class UnnamedWeightsCell(keras.layers.Layer):
    """add_weight without a name: Keras numbers them variable, variable_1, ... per session."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))
        self.recurrent = self.add_weight(shape=(self.units, self.units))
        self.bias = self.add_weight(shape=(self.units,))
        self.extra = [self.add_weight(shape=(self.units,))]  # no attribute holds it directly

    def call(self, inputs, states):
        z = ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent) + self.bias
        h = ops.tanh(z) * self.extra[0]
        return h, [h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_a_cell_with_unnamed_weights_lowers_and_matches_keras():
    keras.layers.RNN(UnnamedWeightsCell(3))(np.zeros((1, 2, 2), np.float32))  # numbers taken
    layer = keras.layers.RNN(UnnamedWeightsCell(7), return_sequences=True)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 6, 5)).astype(np.float32)
    layer(x)
    randomize(layer, 1)
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, 5)
    names = [p.name for p in lowered.bound.graph.params]
    assert names[:3] == ["kernel", "recurrent", "bias"] and names[3] == "weight3"
    again = lower_cell(cell_factory(layer.cell), layer.cell, 5)
    assert again.op_name == lowered.op_name  # the name does not follow Keras' counter
    got, _ = HostCore(lowered.bound, lowered.op_name).run(x[1], return_sequences=True)
    np.testing.assert_allclose(got, np.asarray(layer(x))[1], rtol=0, atol=ATOL)


def _small_model(path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.SimpleRNN(6)])
    model.save(path)


def test_convert_writes_nothing_when_no_kernel_can_be_made(tmp_path, monkeypatch, capsys):
    """Without --kernels the kernels are still made in memory: a cell whose kernel codegen
    cannot emit leaves no .tflite behind (and an existing one untouched), one line, exit 1."""
    import fusegen.commands.build as build
    from fusegen import cli

    _small_model(tmp_path / "m.keras")
    out = tmp_path / "m.tflite"
    out.write_bytes(b"previous")

    def no_emitter(*args, **kwargs):
        raise NotImplementedError("no C emitter for cumsum")

    monkeypatch.setattr(build, "kernel_files", no_emitter)
    code = cli.main(["convert", str(tmp_path / "m.keras"), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and out.read_bytes() == b"previous"
    assert err == ["fusegen: error: no kernel can be made for SimpleRNNCell (FUSEGEN_SIMPLE_RNN): "
                   "no C emitter for cumsum; nothing was written"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.tflite"]
