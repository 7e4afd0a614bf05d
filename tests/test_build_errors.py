"""`fusegen build` on a file with good and bad cells: every problem in one run, good cells built,
op names unique per math, no kernel file overwritten by another op's math."""

from __future__ import annotations

import textwrap

from fusegen import cli

CELLS = textwrap.dedent("""\
    import keras
    from keras import ops


    class GoodCell(keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

        def call(self, inputs, states):
            h = ops.tanh(ops.matmul(inputs, self.kernel) + states[0])
            return h, [h]


    class BadCell(GoodCell):
        def call(self, inputs, states):
            a = ops.cumsum(ops.matmul(inputs, self.kernel), axis=-1)
            b = ops.cumprod(states[0], axis=-1)
            h = ops.tanh(a + b)
            return h, [h]


    class GRUCell(GoodCell):  # a user class with a built-in's name and other math
        def call(self, inputs, states):
            h = ops.sigmoid(ops.matmul(inputs, self.kernel)) * states[0]
            return h, [h]
    """)


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_build_reports_every_bad_op_and_builds_the_good_cells(tmp_path, capsys):
    path = tmp_path / "mixed_cells.py"
    path.write_text(CELLS)
    out = tmp_path / "k"
    code, stdout, err = _run(capsys, "build", path, "-o", out)
    assert code == 1
    assert "Traceback" not in err
    bad = [line for line in err.splitlines() if line.startswith("fusegen: error: BadCell:")]
    assert len(bad) == 1, err
    assert "mixed_cells.py:21" in bad[0] and "Cumsum" in bad[0]  # both ops, each at its line
    assert "mixed_cells.py:22" in bad[0] and "Cumprod" in bad[0]
    assert "1 of 3 cell(s) failed: BadCell" in err
    assert (out / "fusegen_good.cc").is_file()  # the good cells are still written
    user_gru = sorted(p.name for p in out.glob("fusegen_gru*.cc"))
    assert len(user_gru) == 1 and user_gru[0] != "fusegen_gru.cc", user_gru  # has a digest
    assert "FUSEGEN_GRU_" in stdout


def test_builtin_and_user_gru_share_a_directory(tmp_path, capsys):
    path = tmp_path / "cells.py"
    path.write_text(CELLS)
    out = tmp_path / "k"
    assert _run(capsys, "build", path, "--cell", "GRUCell", "-o", out)[0] == 0
    assert _run(capsys, "build", "gru", "-o", out)[0] == 0
    assert (out / "fusegen_gru.cc").is_file()
    assert len(list(out.glob("fusegen_gru_*.cc"))) == 1  # the user's kernel is still there


def test_another_op_with_the_same_name_is_refused(tmp_path, capsys):
    out = tmp_path / "k"
    first, second = tmp_path / "a" / "cells.py", tmp_path / "b" / "cells.py"
    for p in (first, second):
        p.parent.mkdir()
    first.write_text(CELLS)
    second.write_text(CELLS.replace("ops.tanh(ops.matmul(inputs, self.kernel) + states[0])",
                                    "ops.relu(ops.matmul(inputs, self.kernel) - states[0])"))
    assert _run(capsys, "build", first, "--cell", "GoodCell", "-o", out)[0] == 0
    before = (out / "fusegen_good.cc").read_text()
    code, _, err = _run(capsys, "build", second, "--cell", "GoodCell", "-o", out)
    assert code == 1 and "Traceback" not in err
    assert "different math" in err and len(err.strip().splitlines()) == 1
    assert (out / "fusegen_good.cc").read_text() == before
    # The same op again is fine (a rebuild).
    assert _run(capsys, "build", first, "--cell", "GoodCell", "-o", out)[0] == 0


def test_int8_of_a_where_cell_converts(tmp_path, capsys):
    """Comparisons and where have an int8 kernel too (fg_where_s16): int8 convert of the
    example where cell writes a file with one CUSTOM op."""
    import keras
    import numpy as np
    from cells_catalog import EXAMPLES

    from fusegen.converter import tflite_file
    from fusegen.frontend.keras_model import import_file

    cell = import_file(EXAMPLES / "where_cell.py").ThresholdCell(5)
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.RNN(cell)])
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).uniform(-1, 1, (8, 4, 3)).astype("f4"))
    code, _, err = _run(capsys, "convert", tmp_path / "m.keras", "-o", tmp_path / "m.tflite",
                        "--import", EXAMPLES / "where_cell.py", "--quantize", "int8",
                        "--calibration", tmp_path / "cal.npy")
    assert code == 0 and "Traceback" not in err, err
    names = tflite_file.summary((tmp_path / "m.tflite").read_bytes()).op_names()
    assert len([n for n in names if n.startswith("FUSEGEN_")]) == 1 and "WHILE" not in names
