"""verify --profile: the int8 error per timestep and the op whose quantization contributes most."""

from __future__ import annotations

import keras
import numpy as np

from fusegen import cli
from fusegen.commands.profile import profile_layer
from fusegen.lower import cell_factory, lower_cell


def test_profile_of_an_lstm_layer():
    keras.utils.set_random_seed(0)
    layer = keras.layers.LSTM(6, return_sequences=True)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 11, 3)).astype(np.float32)
    layer(x)
    for w in layer.weights:
        w.assign(np.random.default_rng(1).uniform(-0.6, 0.6, w.shape))
    lowered = lower_cell(cell_factory(layer.cell), layer.cell, 3)
    p = profile_layer("lstm", lowered.bound, x)
    assert len(p.per_step) == 11 and all(0 < e < 2 for e in p.per_step)
    c = p.contributions
    assert c and [k.mean_steps for k in c] == sorted((k.mean_steps for k in c), reverse=True)
    # one value rounded alone moves the output by less than the whole int8 twin, and by more
    # than nothing: the matmul operands and the gates' int16 values all count
    assert 0 < c[0].mean_steps <= 2 * max(p.per_step)
    assert {k.fmt for k in c} == {"int16", "int8 operand"}
    assert "most: %" in p.text() and "per timestep" in p.text()


def test_cli_profile(tmp_path, capsys):
    import fusegen

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((7, 3)), keras.layers.GRU(5), keras.layers.Dense(2)])
    x = np.random.default_rng(3).uniform(-1, 1, (6, 7, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "m8.tflite").write_bytes(fusegen.convert(model, quantize="int8", calibration=x))
    code = cli.main(["verify", str(tmp_path / "m8.tflite"), "--keras", str(tmp_path / "m.keras"),
                     "--inputs", str(tmp_path / "x.npy"), "--profile"])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err, out + err
    line = next(s for s in out.splitlines() if s.startswith("profile gru"))
    assert len(line.split("output steps:")[1].split()) == 7  # one figure per timestep
    assert "most: %" in out
