"""TF's own LSTM, the baseline fusegen is measured against (issue 17): a tf_keras LSTM converts to
the builtin UNIDIRECTIONAL_SEQUENCE_LSTM (float32 and int8), whose states are variable tensors;
with `unroll=True` to a chain of builtins. Keras 3's LSTM converts to a WHILE loop instead, so
the models come from tf_keras (scripts/setup.sh installs it).

The host run of a file (HostFile: every builtin through TFLM's own interpreter, the tflite-micro
wheel) keeps the LSTM's variable tensors between invokes and zeroes them at reset(), as
MicroInterpreter does. With a TFLM build it equals the TFLM runner compiled from it (tolerance
0, float32 and int8, samples from reset states and streamed); with a Cortex-M4 TFLM, `fusegen
bench --tflm-*` (no --kernels: the file has no fused op) passes its int8 check at tolerance 0 on
the emulated M4 and reports the arena used.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_LIB, TFLM_M4_LIB, needs_tflm, needs_tflm_m4

from fusegen.converter import tflite_file
from fusegen.host.file import HostFile

tf_keras = pytest.importorskip("tf_keras")
pytest.importorskip("tflite_micro")

TIMESTEPS, FEATURES, UNITS, OUT = 6, 3, 5, 2
# float32 against tf_keras: TFLM's LSTM and Dense sum in another order than TensorFlow's.
FLOAT_TOLERANCE = 1e-5
# int8 against float tf_keras, in output steps: a sanity bound, verify's --max-steps (TF's own
# unrolled int8 LSTM is 5.8 steps off here; a broken run is tens to thousands off).
INT8_MAX_STEPS = 16
VARIANTS = [("fused", "f32"), ("fused", "s8"), ("unroll", "f32"), ("unroll", "s8")]


def _model(unroll: bool):
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((TIMESTEPS, FEATURES), batch_size=1),
                                 tf_keras.layers.LSTM(UNITS, unroll=unroll),
                                 tf_keras.layers.Dense(OUT)])
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(-0.7, 0.7, w.shape).astype(np.float32)
                       for w in model.get_weights()])  # non-zero biases
    return model


def _convert(model, int8: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(2)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, TIMESTEPS, FEATURES)).astype(np.float32)] for _ in range(32))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(variant, dtype) -> (.tflite path, tf_keras model); and float inputs."""
    root = tmp_path_factory.mktemp("builtin_lstm")
    out = {}
    for kind, dtype in VARIANTS:
        model = _model(kind == "unroll")
        path = root / f"lstm_{kind}_{dtype}.tflite"
        path.write_bytes(_convert(model, dtype == "s8"))
        out[kind, dtype] = (path, model)
    x = np.random.default_rng(3).uniform(-1, 1, (4, TIMESTEPS, FEATURES)).astype(np.float32)
    return out, x


def _inputs(data: bytes, x: np.ndarray) -> np.ndarray:
    from fusegen.converter.int8.chain import io_qparams
    from fusegen.quantize.scales import quantize_int8

    graph = tflite_file.read_model(data).subgraphs[0]
    if graph.tensors[graph.inputs[0]].type == tflite_file.schema.TensorType.INT8:
        return quantize_int8(x, io_qparams(data)[0])
    return x


def test_files_hold_the_builtin_lstm(models):
    files, _ = models
    for (kind, _), (path, _) in files.items():
        names = {op.name for op in tflite_file.summary(path.read_bytes()).ops}
        assert ("UNIDIRECTIONAL_SEQUENCE_LSTM" in names) == (kind == "fused"), names
        assert not any(n in names for n in ("WHILE", "CUSTOM"))


@pytest.mark.parametrize("kind,dtype", VARIANTS)
def test_host_runs_the_file_with_its_variable_states(models, kind, dtype):
    """HostFile against tf_keras: each sample from zero states; and streamed (the LSTM's
    states carried from one invoke to the next) the outputs differ, until reset()."""
    from fusegen.converter.int8.chain import io_qparams
    from fusegen.quantize.scales import dequantize_int8

    files, x = models
    path, model = files[kind, dtype]
    data = path.read_bytes()
    host = HostFile(data, {})
    assert all(getattr(step, "micro", None) is not None for _, step in host.steps)
    got = host.run(_inputs(data, x))
    expected = np.asarray(model(x))
    if dtype == "f32":
        assert np.max(np.abs(got - expected)) < FLOAT_TOLERANCE
    else:
        q_out = io_qparams(data)[1]
        steps = np.abs(dequantize_int8(got, q_out) - expected) / q_out[0]
        assert np.max(steps) <= INT8_MAX_STEPS, np.max(steps)
    host.reset()
    streamed = np.stack([host.invoke(s) for s in _inputs(data, x)])
    np.testing.assert_array_equal(streamed[0], got[0])
    if kind == "fused":  # the fused op's states are variables; unrolled, states are not kept
        assert not np.array_equal(streamed[1:], got[1:])
    else:
        np.testing.assert_array_equal(streamed, got)
    host.reset()
    np.testing.assert_array_equal(host.invoke(_inputs(data, x)[0]), got[0])


@needs_tflm
@pytest.mark.parametrize("kind,dtype", VARIANTS)
def test_host_equals_the_tflm_runner(models, kind, dtype, tmp_path):
    """The file through the TFLM runner built from the user's TFLM (no fused ops, an empty
    kernel directory): equal to the host run, from reset states and streamed."""
    from fusegen.codegen import write_package
    from fusegen.host.tflm import build_runner, run_runner

    files, x = models
    data = files[kind, dtype][0].read_bytes()
    xs = _inputs(data, x)
    write_package({}, tmp_path / "kernels")
    exe = build_runner(data, tmp_path / "kernels", TFLM_INCLUDE, TFLM_LIB, tmp_path, TFLM_FLAGS)
    host = HostFile(data, {})
    each = np.stack([run_runner(exe, data, xs[k:k + 1], tmp_path).outputs[0]
                     for k in range(len(xs))])
    np.testing.assert_array_equal(each, host.run(xs))
    run = run_runner(exe, data, xs, tmp_path)
    host.reset()
    np.testing.assert_array_equal(run.outputs, np.stack([host.invoke(s) for s in xs]))
    assert run.arena_used_bytes > 0


@needs_tflm_m4
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
@pytest.mark.parametrize("kind,dtype", [("fused", "f32"), ("fused", "s8"), ("unroll", "s8")])
def test_bench_tflm_mode_measures_the_builtin_lstm(models, kind, dtype, tmp_path, capsys):
    """`fusegen bench --tflm-*` on TF's own file, no --kernels, independent sequences
    (--reset-each: a CMSIS-NN TFLM's int8 LSTM does not carry its states between Invokes,
    see the next test): checked against the host run at tolerance 0 for int8; the JSON reports
    instructions and the arena used."""
    from fusegen import cli

    files, x = models
    path = files[kind, dtype][0]
    np.save(tmp_path / "x.npy", x)
    code = cli.main(["bench", str(path), "--inputs", str(tmp_path / "x.npy"),
                     "--tflm-include", ":".join(TFLM_INCLUDE), "--tflm-lib", TFLM_M4_LIB,
                     *(f"--tflm-flag={f}" for f in TFLM_FLAGS),
                     "--build-root", str(tmp_path / "build"), "--json", str(tmp_path / "r.json"),
                     "--reset-each"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "tflm" and report["inferences"] == len(x)
    assert report["tolerance"] == (0.0 if dtype == "s8" else 1e-5)
    assert report["max_abs_diff"] <= report["tolerance"]
    assert 0 < report["arena_used_bytes"] <= report["arena_bytes"]
    assert report["count_min"] > 0
    assert f"TFLM arena: {report['arena_used_bytes']} of" in out.out


@needs_tflm_m4
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_bench_streaming_a_cmsis_nn_int8_lstm_says_why_it_differs(models, tmp_path, capsys):
    """Streamed (no --reset-each), TFLM's CMSIS-NN int8 LSTM restarts from zero states at each
    Invoke (TFLM's wrapper passes arm_lstm_unidirectional_s8 no hidden state) while TFLM's
    reference kernel, and the host, carry them: the first inference agrees, later ones do not,
    and the one-line error says to pass --reset-each. A reference-kernel TFLM streams equal."""
    from fusegen import cli

    files, x = models
    np.save(tmp_path / "x.npy", x)
    code = cli.main(["bench", str(files["fused", "s8"][0]), "--inputs", str(tmp_path / "x.npy"),
                     "--tflm-include", ":".join(TFLM_INCLUDE), "--tflm-lib", TFLM_M4_LIB,
                     *(f"--tflm-flag={f}" for f in TFLM_FLAGS),
                     "--build-root", str(tmp_path / "build"), "--output", str(tmp_path / "y.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    if code == 0:
        pytest.skip("this TFLM's int8 LSTM carries its states (not CMSIS-NN)")
    assert len(err) == 1 and "--reset-each" in err[0], err
    data = files["fused", "s8"][0].read_bytes()
    first = HostFile(data, {}).run(_inputs(data, x[:1]))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy")[:1], first)


@needs_tflm_m4
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_bench_names_the_arena_an_arena_too_small_needs(models, tmp_path, capsys):
    """An arena too small for TF's unrolled int8 LSTM: exit 1, one line naming the arena the
    model needs (the smallest it initialises in, searched on the emulated M4, not TFLM's first
    shortfall); an arena of exactly that many bytes then runs."""
    from fusegen import cli

    files, x = models
    np.save(tmp_path / "x.npy", x[:1])
    argv = ["bench", str(files["unroll", "s8"][0]), "--inputs", str(tmp_path / "x.npy"),
            "--tflm-include", ":".join(TFLM_INCLUDE), "--tflm-lib", TFLM_M4_LIB,
            *(f"--tflm-flag={f}" for f in TFLM_FLAGS), "--build-root", str(tmp_path / "build"),
            "--json", str(tmp_path / "r.json")]
    assert cli.main([*argv, "--tflm-arena", "2048"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    needed = int(err[0].split("the model needs ")[1].split(" bytes")[0])
    assert needed > 2048 and f"pass --tflm-arena {needed}" in err[0]
    assert cli.main([*argv, "--tflm-arena", str(needed)]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["arena_bytes"] == needed and 0 < report["arena_used_bytes"] <= needed
