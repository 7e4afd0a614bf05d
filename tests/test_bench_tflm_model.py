"""TFLM mode (fusegen/bench/tflm_model.py, op_templates/fw_model_tflm.cc.j2): a whole converted
.tflite run by tflite::MicroInterpreter inside the benchmark firmware, fused ops registered.

The render test always runs. The QEMU test needs a TFLM cross-built for Cortex-M4F, which
fusegen neither ships nor downloads; it runs when
    FUSEGEN_TFLM_INCLUDE     colon-separated include dirs (TFLM root, flatbuffers/include, ...)
    FUSEGEN_TFLM_M4_LIB      libtensorflow-microlite.a built with TARGET=cortex_m_generic
                             TARGET_ARCH=cortex-m4+fp (hard float)
are set, with arm-none-eabi-gcc and qemu-system-arm on PATH.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_M4_LIB, needs_tflm_m4

from fusegen.bench.firmware.build import FirmwareConfig
from fusegen.codegen import registration
from fusegen.bench.firmware.tflm_model import render_tflm_model, tflm_kernel_sources, write_tflm_model_source
from fusegen.commands.build import convert_model


@pytest.fixture(scope="module")
def lstm(tmp_path_factory) -> tuple[Path, keras.Model]:
    out = tmp_path_factory.mktemp("tflm_mode")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(5), keras.layers.Dense(2)])
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.save(out / "m.keras")
    convert_model(out / "m.keras", [], out / "m.tflite", out / "kernels")
    return out, model


def test_render(lstm) -> None:
    out, _ = lstm
    data = (out / "m.tflite").read_bytes()
    text = render_tflm_model(data, "m", "m.tflite", [registration(out / "kernels")],
                             arena_bytes=4096)
    assert f"kModel[{len(data)}]" in text
    assert "resolver.AddFullyConnected()" in text
    assert "fusegen::kernels::RegisterOps(resolver)" in text
    assert "kArenaBytes = 4096" in text
    assert "malloc(" not in text
    names = {p.name for p in tflm_kernel_sources(out / "kernels")}
    assert {"fusegen_lstm.cc", "fusegen_lstm_core.c", "fg_runtime_f32.c"} <= names


@needs_tflm_m4
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_qemu_matches_keras(lstm, tmp_path) -> None:
    from fusegen.bench.runner import bench_qemu

    out, model = lstm
    source = write_tflm_model_source((out / "m.tflite").read_bytes(), tmp_path, "m",
                                     [registration(out / "kernels")])
    options = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON",
               *(f"-isystem{d}" for d in TFLM_INCLUDE), *TFLM_FLAGS]
    config = FirmwareConfig(model_sources=(source, *tflm_kernel_sources(out / "kernels")),
                            model_include_dirs=(out / "kernels",),
                            cache={"FUSEGEN_MODEL_COMPILE_OPTIONS": ";".join(options),
                                   "FUSEGEN_MODEL_LINK_LIBRARIES": TFLM_M4_LIB})
    x = np.random.default_rng(2).uniform(-1, 1, (3, 6, 3)).astype(np.float32)
    result = bench_qemu(config, x, reset_each=True, build_root=tmp_path / "build")
    assert result.outputs.shape == (3, 2)
    np.testing.assert_allclose(result.outputs, np.asarray(model(x)), rtol=0, atol=1e-5)
    assert all(count > 0 for count in result.counts)


def test_cli_tflm_mode_says_what_is_missing(lstm, tmp_path, capsys) -> None:
    from fusegen import cli

    out, _ = lstm
    np.save(tmp_path / "x.npy", np.zeros((1, 6, 3), np.float32))
    code = cli.main(["bench", str(out / "m.tflite"), "--kernels", str(out / "kernels"),
                     "--inputs", str(tmp_path / "x.npy"), "--tflm-include", str(tmp_path),
                     "--tflm-lib", str(tmp_path / "nope.a")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--tflm-lib" in err[0] and "no such file" in err[0]


@needs_tflm_m4
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="needs arm-none-eabi-gcc and qemu-system-arm")
@pytest.mark.parametrize("quantize", [False, True], ids=["float32", "int8"])
def test_cli_tflm_mode_streams_a_stateful_model(tmp_path, capsys, quantize) -> None:
    """`fusegen bench --tflm-*`: frames streamed through MicroInterpreter on the emulated M4
    (variables kept between Invokes) equal the host run of the file; with --reset-each
    (MicroInterpreter::Reset() between inferences) too, and the two differ."""
    from cells_catalog import randomize

    from fusegen import cli

    model = keras.Sequential([keras.Input((1, 3), batch_size=1),
                              keras.layers.GRU(6, stateful=True), keras.layers.Dense(2)])
    randomize(model, seed=3)
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(4)
    np.save(tmp_path / "calib.npy", rng.uniform(-1, 1, (64, 1, 3)).astype(np.float32))
    np.save(tmp_path / "x.npy", rng.uniform(-1, 1, (12, 1, 3)).astype(np.float32))
    convert_model(tmp_path / "m.keras", [], tmp_path / "m.tflite", tmp_path / "kernels",
                  calibration=tmp_path / "calib.npy" if quantize else None)
    outputs = []
    for extra in ([], ["--reset-each"]):
        code = cli.main(["bench", str(tmp_path / "m.tflite"), "--kernels",
                         str(tmp_path / "kernels"), "--inputs", str(tmp_path / "x.npy"),
                         "--tflm-include", ":".join(TFLM_INCLUDE), "--tflm-lib", TFLM_M4_LIB,
                         *(f"--tflm-flag={f}" for f in TFLM_FLAGS),
                         "--build-root", str(tmp_path / "build"), "--output",
                         str(tmp_path / "y.npy"), *extra])
        assert code == 0, capsys.readouterr().err
        outputs.append(np.load(tmp_path / "y.npy"))
    assert outputs[0].dtype == (np.int8 if quantize else np.float32)
    assert not np.array_equal(outputs[0][1:], outputs[1][1:])  # the state was carried
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
