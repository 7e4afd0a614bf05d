"""Many models and dtypes in one firmware (issue 17): kernel directories merge, their names and
symbols carry the dtype, their CMake files and registration headers compose.

Two kernel directories: `rnn_a` (a float32 GRU and SimpleRNN, added by two `fusegen build` runs)
and `rnn_b` (a float32 LSTM model and the int8 conversion of the same model, added by two
`fusegen convert --kernels` runs). The cores of both build into one host binary through the
generated CMake files (no TFLM needed); with a TFLM build, one TFLM runner registers both
directories and runs the three models, each against the host (float: Keras within the float
rule; int8: the host C cores, bit for bit).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from cells_catalog import randomize
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_LIB, TFLM_M4_LIB, needs_tflm, needs_tflm_m4

from fusegen.cli import main
from fusegen.codegen import MANIFEST, directory_namespace, read_kernel_dir
from fusegen.converter.int8.chain import io_qparams
from fusegen.host.file import HostFile
from fusegen.quantize.scales import quantize_int8

TIMESTEPS, FEATURES = 6, 3
# float32 through TFLM against Keras: see test_tflm_runner.TOLERANCE.
TOLERANCE = 1e-5


def _cli(*args) -> None:
    assert main([str(a) for a in args]) == 0


def _lstm_model() -> keras.Model:
    model = keras.Sequential([keras.Input((TIMESTEPS, FEATURES)),
                              keras.layers.LSTM(5, return_sequences=True)])
    randomize(model.layers[0], seed=3)
    return model


def _gru_rnn_model() -> keras.Model:
    model = keras.Sequential([keras.Input((TIMESTEPS, FEATURES)),
                              keras.layers.GRU(7, return_sequences=True),
                              keras.layers.SimpleRNN(6)])
    for seed, layer in enumerate(model.layers):
        randomize(layer, seed + 10)
    return model


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """The two kernel directories and the three .tflite files, made through the CLI."""
    root = tmp_path_factory.mktemp("dirs")
    a, b = root / "rnn_a", root / "rnn_b"
    _cli("build", "gru", "-o", a)
    _cli("build", "simple_rnn", "-o", a)  # adds to a
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (4, TIMESTEPS, FEATURES)).astype(np.float32)
    np.save(root / "calibration.npy", rng.uniform(-1, 1, (64, TIMESTEPS, FEATURES)).astype(np.float32))
    _lstm_model().save(root / "lstm.keras")
    _gru_rnn_model().save(root / "gru_rnn.keras")
    _cli("convert", root / "lstm.keras", "-o", root / "lstm_f32.tflite", "--kernels", b)
    _cli("convert", root / "lstm.keras", "-o", root / "lstm_s8.tflite", "--kernels", b,
         "--quantize", "int8", "--calibration", root / "calibration.npy")
    _cli("convert", root / "gru_rnn.keras", "-o", root / "gru_rnn.tflite")
    return root, a, b, x


def test_directories_merge_and_name_the_dtype(dirs):
    _, a, b, _ = dirs
    assert read_kernel_dir(a).ops.keys() == {"FUSEGEN_GRU", "FUSEGEN_SIMPLE_RNN"}
    kb = read_kernel_dir(b)
    assert {n: d for n, (_, d) in kb.ops.items()} == {"FUSEGEN_LSTM": ("f32",),
                                                      "FUSEGEN_LSTM_S8": ("s8",)}
    ops_a, ops_b = (d / "fusegen_ops.h" for d in (a, b))
    text_a, text_b = ops_a.read_text(), ops_b.read_text()
    assert "namespace rnn_a {" in text_a and "namespace rnn_b {" in text_b
    assert "Register_FUSEGEN_GRU()" in text_a and "Register_FUSEGEN_SIMPLE_RNN()" in text_a
    assert "Register_FUSEGEN_LSTM()" in text_b and "Register_FUSEGEN_LSTM_S8()" in text_b
    assert "kNumOps = 2;" in text_a and "kNumOps = 2;" in text_b
    guard = [line for line in text_a.splitlines() if line.startswith("#ifndef")]
    assert guard != [line for line in text_b.splitlines() if line.startswith("#ifndef")]
    # The int8 kernel's symbols are its own: a firmware holds both.
    assert "fusegen_lstm_s8_plan" in (b / "fusegen_lstm_s8_core.h").read_text()
    assert "fusegen_lstm_plan" in (b / "fusegen_lstm_core.h").read_text()
    assert (b / "tflm_kernels" / "runtime" / "fg_runtime_q.c").is_file()


def test_int8_file_names_the_int8_op(dirs):
    root = dirs[0]
    from fusegen.converter import tflite_file

    def names(path):
        return [op.name for op in tflite_file.summary(path.read_bytes()).ops]

    assert names(root / "lstm_s8.tflite") == ["FUSEGEN_LSTM_S8"]
    assert names(root / "lstm_f32.tflite") == ["FUSEGEN_LSTM"]


def test_prefix_names_the_namespace(tmp_path):
    _cli("build", "gru", "-o", tmp_path / "k", "--prefix", "board-1")
    assert "namespace board_1 {" in (tmp_path / "k" / "fusegen_ops.h").read_text()
    _cli("build", "lstm", "-o", tmp_path / "k")  # the directory keeps its namespace
    manifest = json.loads((tmp_path / "k" / MANIFEST).read_text())
    assert manifest["namespace"] == "board_1" and len(manifest["ops"]) == 2
    assert directory_namespace("2x") == "d_2x" and directory_namespace("new") == "d_new"


def test_unreadable_directory_is_one_line(tmp_path, capsys):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / MANIFEST).write_text("{not json")
    assert main(["build", "gru", "-o", str(tmp_path / "k")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable fusegen kernel directory" in err[0]


CORES_MAIN = r"""
#include <stdio.h>
#include "rnn_a/fusegen_gru_core.h"
#include "rnn_a/fusegen_simple_rnn_core.h"
#include "rnn_b/fusegen_lstm_core.h"
#include "rnn_b/fusegen_lstm_s8_core.h"

int main(void) {
  FusegenGruPlan gru;
  FusegenSimpleRnnPlan rnn;
  FusegenLstmPlan lstm;
  FusegenLstmS8Plan lstm_s8;
  const char* e[4] = {fusegen_gru_plan(3, 7, 6, 4, &gru), fusegen_simple_rnn_plan(3, 6, 6, 4, &rnn),
                      fusegen_lstm_plan(3, 5, 6, 4, &lstm), fusegen_lstm_s8_plan(3, 5, 6, 4, &lstm_s8)};
  for (int k = 0; k < 4; ++k) {
    if (e[k] != NULL) { printf("plan %d: %s\n", k, e[k]); return 1; }
  }
  printf("units %d %d %d %d\n", (int)gru.units, (int)rnn.units, (int)lstm.units,
         (int)lstm_s8.units);
  /* Both LSTM evals linked into one binary. */
  void (*volatile evals[2])(void) = {(void (*)(void))fusegen_lstm_eval_f32,
                                     (void (*)(void))fusegen_lstm_s8_eval_s8};
  return evals[0] != evals[1] ? 0 : 2;
}
"""


def test_two_directories_build_into_one_binary_with_cmake(dirs, tmp_path):
    """No TFLM: the generated CMake files of both directories in one project (one runtime
    target, per-directory core targets, fusegen_core holding all), one executable."""
    _, a, b, _ = dirs
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.c").write_text(CORES_MAIN)
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(two_dirs C)\n"
        "set(CMAKE_C_STANDARD 99)\nadd_compile_options(-Wall -Wextra -Werror)\n"
        f"add_subdirectory({a} rnn_a)\nadd_subdirectory({b} rnn_b)\n"
        "add_executable(two_dirs main.c)\ntarget_link_libraries(two_dirs PRIVATE fusegen_core)\n")
    build = tmp_path / "build"
    for cmd in (["cmake", "-S", project, "-B", build], ["cmake", "--build", build, "-j2"]):
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([str(build / "two_dirs")], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and run.stdout.strip() == "units 7 6 5 5", run.stdout


@needs_tflm
def test_one_tflm_runner_runs_every_model_of_two_directories(dirs, tmp_path):
    from fusegen.host.tflm import build_runner, run_runner

    root, a, b, x = dirs
    files = {name: (root / f"{name}.tflite").read_bytes()
             for name in ("gru_rnn", "lstm_f32", "lstm_s8")}
    work = tmp_path / "work"
    work.mkdir()
    # The models have no builtin ops: the runner rendered for one serves all three.
    exe = build_runner(files["lstm_f32"], [a, b], TFLM_INCLUDE, TFLM_LIB, work, TFLM_FLAGS)
    for name, keras_file in (("gru_rnn", "gru_rnn.keras"), ("lstm_f32", "lstm.keras")):
        expected = np.asarray(keras.models.load_model(root / keras_file)(x))
        got = np.stack([run_runner(exe, files[name], x[k:k + 1], work).outputs[0]
                        for k in range(len(x))])
        assert np.max(np.abs(got - expected)) < TOLERANCE, name
    data = files["lstm_s8"]
    x_q = quantize_int8(x, io_qparams(data)[0])
    host = HostFile(data, read_kernel_graphs(b, data)).run(x_q)
    got = np.stack([run_runner(exe, data, x_q[k:k + 1], work).outputs[0] for k in range(len(x))])
    assert got.dtype == np.int8 and np.array_equal(got, host)


def read_kernel_graphs(kernels: Path, data: bytes) -> dict:
    from fusegen.bench.firmware.core_model import kernel_graphs
    return kernel_graphs(data, kernels)


def test_convert_prints_an_arena_estimate(dirs, tmp_path, capsys):
    """With --kernels, convert estimates the TFLM arena: at least the input and output tensors
    (float32, [1, T, F] and [1, T, 5]) and the fused op's scratch from its plan."""
    from fusegen.bench.firmware.arena import estimate

    root = dirs[0]
    main(["convert", str(root / "lstm.keras"), "-o", str(tmp_path / "m.tflite"), "--kernels",
          str(tmp_path / "k")])
    out = capsys.readouterr().out
    est = estimate((tmp_path / "m.tflite").read_bytes(), tmp_path / "k")
    assert est.tensors >= 4 * TIMESTEPS * (FEATURES + 5) and est.scratch > 0
    assert f"TFLM arena estimate: {est.total:,} B" in out
    assert f"try kArenaSize = {est.suggested:,}" in out and est.suggested >= est.total + 1024


@needs_tflm_m4
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
                         and shutil.which("arm-none-eabi-nm")),
                    reason="needs arm-none-eabi-gcc, arm-none-eabi-nm and qemu-system-arm")
def test_firmware_with_two_directories_runs_on_the_emulated_m4(dirs, tmp_path):
    """The benchmark firmware in TFLM mode on the emulated Cortex-M4 with both directories
    registered (both namespaces, every kernel linked, the runtime once): the float32 LSTM model
    against Keras, the int8 one against the host run bit for bit."""
    from fusegen.bench.firmware.build import FirmwareConfig, build_firmware
    from fusegen.bench.firmware.tflm_model import tflm_kernel_sources, write_tflm_model_source
    from fusegen.bench.runner import bench_qemu
    from fusegen.codegen import Registration, registration

    root, a, b, x = dirs
    regs = [Registration(registration(d).name, str((d / "fusegen_ops.h").resolve()))
            for d in (a, b)]
    options = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON",
               *(f"-isystem{d}" for d in TFLM_INCLUDE), *TFLM_FLAGS]
    for name in ("lstm_f32", "lstm_s8"):
        data = (root / f"{name}.tflite").read_bytes()
        source = write_tflm_model_source(data, tmp_path / name, name, regs)
        config = FirmwareConfig(model_sources=(source, *tflm_kernel_sources([a, b])),
                                model_include_dirs=(a.resolve(), b.resolve()),
                                cache={"FUSEGEN_MODEL_COMPILE_OPTIONS": ";".join(options),
                                       "FUSEGEN_MODEL_LINK_LIBRARIES": TFLM_M4_LIB})
        elf = build_firmware(config, tmp_path / "build")
        symbols = subprocess.run(["arm-none-eabi-nm", "-C", str(elf)], capture_output=True,
                                 text=True, check=True).stdout
        for op in ("GRU", "SIMPLE_RNN", "LSTM", "LSTM_S8"):
            assert f"Register_FUSEGEN_{op}()" in symbols, op
        if name == "lstm_f32":
            result = bench_qemu(config, x, reset_each=True, build_root=tmp_path / "build")
            expected = np.asarray(keras.models.load_model(root / "lstm.keras")(x))
            assert np.max(np.abs(result.outputs.reshape(expected.shape) - expected)) < TOLERANCE
        else:
            x_q = quantize_int8(x, io_qparams(data)[0])
            result = bench_qemu(config, x_q, reset_each=True, build_root=tmp_path / "build")
            host = HostFile(data, read_kernel_graphs(b, data)).run(x_q)
            assert np.array_equal(result.outputs.reshape(host.shape), host)
