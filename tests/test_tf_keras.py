"""Files written by tf_keras (Keras 2, TF_USE_LEGACY_KERAS=1): legacy LSTM/GRU models in .h5
and .keras convert and verify; a tf_keras cell class is a one-line error saying what to do.
The files are written by a child process with TF_USE_LEGACY_KERAS=1, as a user's would be."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("tf_keras")

WRITE = textwrap.dedent("""
    import os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    out = sys.argv[1]
    tf.keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).uniform(-1, 1, (4, 9, 4)).astype(np.float32)
    np.save(f"{out}/x.npy", x)
    for name, layer in [("lstm", tf.keras.layers.LSTM(7)),
                        ("gru", tf.keras.layers.GRU(6, return_sequences=True))]:
        model = tf.keras.Sequential([tf.keras.layers.InputLayer((9, 4)), layer,
                                     tf.keras.layers.Dense(3)])
        for w in model.weights:  # non-zero biases too
            w.assign(np.random.default_rng(2).uniform(-0.5, 0.5, w.shape))
        assert type(model).__module__.startswith("tf_keras")
        model.save(f"{out}/{name}.h5")
        model.save(f"{out}/{name}.keras")
        np.save(f"{out}/{name}_y.npy", model(x).numpy())
""")


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf_keras")
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run([sys.executable, "-c", WRITE, str(out)], check=True, env=env,
                   capture_output=True, timeout=300)
    return out


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_legacy_models_convert_and_verify(legacy, name, suffix):
    import fusegen
    from fusegen.commands.verify import run_float_file
    from fusegen.frontend.keras_model import load_model

    path = legacy / f"{name}{suffix}"
    x, y_tf_keras = np.load(legacy / "x.npy"), np.load(legacy / f"{name}_y.npy")
    data = fusegen.convert(path)
    report = fusegen.verify(data, path, inputs=x)
    assert report.passed, report
    got = run_float_file(data, load_model(path, []), x)  # the file, against tf_keras itself
    np.testing.assert_allclose(got, y_tf_keras, rtol=0, atol=1e-5)


def test_a_tf_keras_cell_class_is_one_line(tmp_path):
    cell = tmp_path / "legacy_cell.py"
    cell.write_text(textwrap.dedent("""
        import tf_keras

        class OldCell(tf_keras.layers.Layer):
            def __init__(self, units, **kwargs):
                super().__init__(**kwargs)
                self.units, self.state_size = units, units

            def call(self, inputs, states):
                return inputs, states
    """))
    done = subprocess.run([sys.executable, "-m", "fusegen.cli", "build", str(cell), "-o",
                           str(tmp_path / "gen")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "OldCell is a tf_keras (Keras 2) layer" in lines[0], lines
    assert "import keras" in lines[0] and not (tmp_path / "gen").exists()
