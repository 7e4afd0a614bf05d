"""Whole models through `fusegen convert` and `fusegen verify`, and the CLI's errors."""

from __future__ import annotations

import textwrap

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, EXAMPLES, randomize

from fusegen import cli
from fusegen.commands.build import convert_model
from fusegen.cli import FLOAT_TOLERANCE
from fusegen.converter import tflite_file
from fusegen.commands.verify import verify_model

EXAMPLE_FILES = [str(p) for p in sorted(EXAMPLES.glob("*.py"))]


def _save(model: keras.Model, tmp_path, x: np.ndarray):
    randomize(model, seed=7)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)


def _convert_and_verify(tmp_path, n_fused: int, n_layers: int | None = None):
    result = convert_model(tmp_path / "m.keras", EXAMPLE_FILES, tmp_path / "m.tflite",
                           tmp_path / "kernels")
    data = (tmp_path / "m.tflite").read_bytes()
    summary = tflite_file.summary(data)
    names = summary.op_names()
    assert summary.subgraphs == 1
    assert "WHILE" not in names
    assert sum(n.startswith("FUSEGEN_") for n in names) == n_fused
    assert all(not n.startswith("FUSEGEN_") or n in result.ops for n in names)
    assert len(data) <= result.weight_bytes + 4096
    for op in result.ops:
        assert (tmp_path / "kernels" / f"{op.lower()}.cc").exists()
    checks = verify_model(tmp_path / "m.tflite", tmp_path / "m.keras", EXAMPLE_FILES,
                          tmp_path / "x.npy")
    assert len(checks) == (n_fused if n_layers is None else n_layers)
    for check in checks:
        assert check.max_abs <= FLOAT_TOLERANCE, check
    return result


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_sequential_model_converts_to_one_custom_op(tmp_path, cell, return_sequences):
    model = keras.Sequential([keras.Input((10, 6)),
                              keras.layers.RNN(CELLS[cell](13), return_sequences=return_sequences),
                              keras.layers.Dense(4)])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 10, 6)).astype(np.float32)
    _save(model, tmp_path, x)
    _convert_and_verify(tmp_path, 1)


def test_builtin_layers_and_stacked_layers(tmp_path):
    model = keras.Sequential([keras.Input((12, 5)), keras.layers.Dense(8),
                              keras.layers.LSTM(9, return_sequences=True),
                              keras.layers.GRU(7, return_sequences=True),
                              keras.layers.SimpleRNN(6), keras.layers.Dense(3)])
    x = np.random.default_rng(1).uniform(-1, 1, (2, 12, 5)).astype(np.float32)
    _save(model, tmp_path, x)
    result = _convert_and_verify(tmp_path, 3)
    assert set(result.ops) == {"FUSEGEN_LSTM", "FUSEGEN_GRU", "FUSEGEN_SIMPLE_RNN"}


def test_functional_model_with_conv_before_and_dense_after(tmp_path):
    inputs = keras.Input((16, 3))
    h = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.RNN(CELLS["peephole_lstm"](10))(h)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(h))
    x = np.random.default_rng(2).uniform(-1, 1, (2, 16, 3)).astype(np.float32)
    _save(model, tmp_path, x)
    _convert_and_verify(tmp_path, 1)


def test_model_trained_at_batch_64_converts_at_batch_1(tmp_path):
    # Seeded: fusegen.compare's training enables TF op determinism for the whole process, and
    # under pytest-xdist a compare test may have run earlier in this worker (random ops then
    # need a seed).
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 4)), keras.layers.GRU(6), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    rng = np.random.default_rng(3)
    model.fit(rng.normal(size=(128, 8, 4)), rng.normal(size=(128, 2)), batch_size=64, epochs=1,
              verbose=0)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", rng.uniform(-1, 1, (2, 8, 4)).astype(np.float32))
    _convert_and_verify(tmp_path, 1)
    shapes = tflite_file.custom_ops((tmp_path / "m.tflite").read_bytes())[0].input_shapes
    assert shapes[0] == (1, 8, 4)


# -- errors: one line, non-zero exit -----------------------------------------------------------
def _run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line_error(code: int, err: str) -> str:
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("fusegen: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_unsupported_op_names_the_op_and_the_source_line(tmp_path, capsys):
    source = textwrap.dedent("""\
        import keras
        from keras import ops

        class CumsumCell(keras.layers.Layer):
            def __init__(self, units, **kwargs):
                super().__init__(**kwargs)
                self.units = units
                self.state_size = units

            def build(self, input_shape):
                self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

            def call(self, inputs, states):
                h = ops.cumsum(ops.matmul(inputs, self.kernel), axis=-1) + states[0]
                return h, [h]
        """)
    path = tmp_path / "cumsum_cell.py"
    path.write_text(source)
    line = _one_line_error(*_run_cli(capsys, "build", path, "-o", tmp_path / "out"))
    assert "cumsum_cell.py:14" in line and "Cumsum" in line


def test_masking_converts_and_an_unhonourable_mask_is_one_line(tmp_path, capsys):
    """Masks are fused (tests/test_masking_convert.py checks the numbers); one int8 cannot
    honour (a Masking after other layers) is one line naming the layer."""
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.Masking(),
                              keras.layers.SimpleRNN(4)])
    model.save(tmp_path / "m.keras")
    code, err = _run_cli(capsys, "convert", tmp_path / "m.keras", "-o", tmp_path / "m.tflite")
    assert code == 0 and (tmp_path / "m.tflite").exists(), err
    # int8 honours a Masking that is not the first layer only in float32: one line.
    inputs = keras.Input((6, 3))
    h = keras.layers.GRU(4, return_sequences=True)(inputs)
    late = keras.Model(inputs, keras.layers.SimpleRNN(4)(keras.layers.Masking(name="late")(h)))
    late.save(tmp_path / "t.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(8, 6, 3)).astype(np.float32))
    line = _one_line_error(*_run_cli(capsys, "convert", tmp_path / "t.keras", "-o",
                                     tmp_path / "t.tflite", "--quantize", "int8",
                                     "--calibration", tmp_path / "x.npy"))
    assert "layer late" in line and "float32" in line
    assert not (tmp_path / "t.tflite").exists()


def test_non_recurrent_model_is_rejected(tmp_path, capsys):
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.save(tmp_path / "m.keras")
    line = _one_line_error(*_run_cli(capsys, "convert", tmp_path / "m.keras", "-o",
                                     tmp_path / "m.tflite"))
    assert "no recurrent layer" in line


def test_fixed_batch_other_than_one_is_rejected(tmp_path, capsys):
    model = keras.Sequential([keras.Input((6, 3), batch_size=8), keras.layers.GRU(4)])
    model.save(tmp_path / "m.keras")
    line = _one_line_error(*_run_cli(capsys, "convert", tmp_path / "m.keras", "-o",
                                     tmp_path / "m.tflite"))
    assert "batch of 8" in line


def test_missing_import_is_named(tmp_path, capsys):
    from fusegen.frontend.keras_model import import_file

    path = tmp_path / "lonely_cell.py"
    path.write_text((EXAMPLES / "indrnn.py").read_text()
                    .replace("IndRNNCell", "LonelyCell").replace("fusegen_examples", "lonely"))
    cell_class = import_file(path).LonelyCell
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.RNN(cell_class(4))])
    model.save(tmp_path / "m.keras")
    keras.saving.get_custom_objects().pop("lonely>LonelyCell")  # as in a fresh process
    line = _one_line_error(*_run_cli(capsys, "convert", tmp_path / "m.keras", "-o",
                                     tmp_path / "m.tflite"))
    assert "LonelyCell" in line and "--import" in line
    code, _ = _run_cli(capsys, "convert", tmp_path / "m.keras", "-o", tmp_path / "m.tflite",
                       "--import", path)
    assert code == 0


def test_file_without_cells_is_rejected(tmp_path, capsys):
    (tmp_path / "empty.py").write_text("X = 1\n")
    line = _one_line_error(*_run_cli(capsys, "build", tmp_path / "empty.py"))
    assert "defines no cell class" in line


def test_build_writes_a_kernel_per_cell_class(tmp_path, capsys):
    code, _ = _run_cli(capsys, "build", EXAMPLES / "indrnn.py", "-o", tmp_path / "a")
    assert code == 0 and (tmp_path / "a" / "fusegen_ind_rnn.cc").exists()
    code, _ = _run_cli(capsys, "build", EXAMPLES / "indrnn.py", "--arg", "clip=1.0", "-o",
                       tmp_path / "b")
    other = sorted(p.name for p in (tmp_path / "b").glob("fusegen_ind_rnn_*.cc"))
    assert code == 0 and len(other) == 1  # another clip bound is other math: its own op name
    ops_h = (tmp_path / "a" / "fusegen_ops.h").read_text()
    assert "AddCustom(kFusegenIndRnnName, Register_FUSEGEN_IND_RNN())" in ops_h


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
def test_bidirectional_converts_to_two_fused_ops(tmp_path, merge_mode):
    model = keras.Sequential([keras.Input((9, 4)),
                              keras.layers.Bidirectional(keras.layers.GRU(5, return_sequences=True),
                                                         merge_mode=merge_mode),
                              keras.layers.Bidirectional(keras.layers.LSTM(6)),
                              keras.layers.Dense(2)])
    x = np.random.default_rng(4).uniform(-1, 1, (2, 9, 4)).astype(np.float32)
    _save(model, tmp_path, x)
    _convert_and_verify(tmp_path, 4, n_layers=2)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_stacked_rnn_cells_convert_to_a_chain(tmp_path, go_backwards):
    cells = keras.layers.StackedRNNCells([CELLS["minimal_gated"](7), keras.layers.LSTMCell(5)])
    model = keras.Sequential([keras.Input((8, 3)),
                              keras.layers.RNN(cells, go_backwards=go_backwards),
                              keras.layers.Dense(2)])
    x = np.random.default_rng(5).uniform(-1, 1, (2, 8, 3)).astype(np.float32)
    _save(model, tmp_path, x)
    _convert_and_verify(tmp_path, 2, n_layers=1)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_cell_bidirectional_and_stacked_backwards(tmp_path, cell):
    """The float32 half of the state/options matrix (tests/test_int8_state.py has the int8
    half): each catalog cell in a Bidirectional layer and first in a backwards stack."""
    stack = keras.layers.StackedRNNCells([CELLS[cell](5), keras.layers.GRUCell(4)])
    model = keras.Sequential([
        keras.Input((8, 3)),
        keras.layers.Bidirectional(keras.layers.RNN(CELLS[cell](6), return_sequences=True)),
        keras.layers.RNN(stack, go_backwards=True), keras.layers.Dense(2)])
    x = np.random.default_rng(6).uniform(-1, 1, (2, 8, 3)).astype(np.float32)
    _save(model, tmp_path, x)
    _convert_and_verify(tmp_path, 4, n_layers=2)
