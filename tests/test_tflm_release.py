"""Release TFLM (issue 17): a `BUILD_TYPE=release` TFLM is built with TF_LITE_STRIP_ERROR_STRINGS
and has no MicroPrintf. The generated kernels log through FG_TFLM_LOG, which is MicroPrintf
with error strings and nothing without them: compiled with -DTF_LITE_STRIP_ERROR_STRINGS they
reference no MicroPrintf (so they link against a release library), and a failed Prepare is
still reported by its status (AllocateTensors fails), only without the message.

    FUSEGEN_TFLM_RELEASE_LIB  optional: libtensorflow-microlite.a built with BUILD_TYPE=release;
                              without it the runner links the default FUSEGEN_TFLM_LIB (the
                              strip flag only changes the kernels' objects).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil
import subprocess

import numpy as np
import pytest
from tflm_env import (
    TFLM_FLAGS,
    TFLM_INCLUDE,
    TFLM_LIB,
    TFLM_RELEASE_LIB,
    needs_tflm,
    needs_tflm_headers,
)

from fusegen.cli import main
from fusegen.host.tflm import CXX, CXX_FLAGS

STRIP = "-DTF_LITE_STRIP_ERROR_STRINGS"
RELEASE_LIB = TFLM_RELEASE_LIB
PRINTF = ("MicroPrintf", "VMicroPrintf")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "kernels"
    assert main(["build", "lstm", "-o", str(out)]) == 0  # float32 and int8 kernels
    return out


def _undefined(source, flags, work) -> str:
    """The symbols source compiled with TFLM's flags (but the strip flag: flags add it)
    references."""
    obj = work / (source.name + ".o")
    base = [f for f in TFLM_FLAGS if f != STRIP]  # FUSEGEN_TFLM_FLAGS of a release run has it
    subprocess.run([CXX, *CXX_FLAGS, f"-I{source.parent}",
                    *(f for d in TFLM_INCLUDE for f in ("-isystem", d)), *base, *flags,
                    "-c", str(source), "-o", str(obj)], check=True)
    return subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True,
                          check=True).stdout


@needs_tflm_headers
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm")
def test_stripped_kernels_reference_no_micro_printf(kernels, tmp_path):
    assert "MicroPrintf" in _undefined(kernels / "fusegen_lstm.cc", [], tmp_path)
    assert "MicroPrintf" not in _undefined(kernels / "fusegen_lstm.cc", [STRIP], tmp_path)


def test_every_kernel_message_goes_through_the_macro():
    """Every dtype's kernel (templates) and the shell log only through FG_TFLM_LOG."""
    from fusegen.paths import RUNTIME, TEMPLATES

    hits = [(p.name, line.strip()) for d in (TEMPLATES, RUNTIME)
            for p in sorted(d.rglob("*")) if p.is_file() and p.suffix != ".pyc"
            for line in p.read_text(errors="replace").splitlines()
            if "MicroPrintf(" in line and not line.strip().startswith("//")
            and "#define FG_TFLM_LOG" not in line]
    assert hits == []


@needs_tflm
def test_stripped_prepare_failure_is_reported_by_status(kernels, tmp_path):
    """A runner built with the strip flag (against the release library when given): the model
    runs; garbage custom options make Prepare fail, reported as AllocateTensors failing, and
    the kernel's message is gone."""
    import keras

    from fusegen.converter import tflite_file
    from fusegen.host.tflm import TflmError, build_runner, run_runner

    model = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(5)])
    model.save(tmp_path / "m.keras")
    assert main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.tflite"),
                 "--kernels", str(tmp_path / "k")]) == 0
    data = (tmp_path / "m.tflite").read_bytes()
    library = RELEASE_LIB or TFLM_LIB
    exe = build_runner(data, tmp_path / "k", TFLM_INCLUDE, library, tmp_path,
                       [*TFLM_FLAGS, STRIP])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 3)).astype(np.float32)
    run = run_runner(exe, data, x, tmp_path)
    np.testing.assert_allclose(run.outputs, np.asarray(model(x)), atol=1e-5, rtol=0)
    fb = tflite_file.read_model(data)
    fb.subgraphs[0].operators[0].customOptions = np.frombuffer(b"\xde\xad\xbe\xef", np.uint8)
    with pytest.raises(TflmError, match="AllocateTensors failed") as err:
        run_runner(exe, tflite_file.write_model(fb), x, tmp_path)
    assert "malformed" not in str(err.value)


def test_undefined_micro_printf_is_recognised():
    from fusegen.host.tflm import lacks_micro_printf

    ld = ("/usr/bin/ld: k.cc.o: in function `Prepare(TfLiteContext*, TfLiteNode*)':\n"
          "k.cc:(.text+0x391): undefined reference to `MicroPrintf(char const*, ...)'\n")
    assert lacks_micro_printf(ld)
    assert not lacks_micro_printf(ld.replace("MicroPrintf", "MicroPrintfLike"))
    assert not lacks_micro_printf("undefined reference to `tflite::GetModel(void const*)'")


@needs_tflm
@pytest.mark.skipif(not RELEASE_LIB, reason="needs FUSEGEN_TFLM_RELEASE_LIB (an existing release "
                    "libtensorflow-microlite.a)")
def test_release_library_without_the_strip_flag_says_what_to_pass(tmp_path):
    """Linked against a release TFLM without -DTF_LITE_STRIP_ERROR_STRINGS the runner does not
    link: one line (no linker dump) naming the flag to pass."""
    from fusegen.codegen import write_package
    from fusegen.host.tflm import TflmError, build_runner

    model = tf_model()
    write_package({}, tmp_path / "k")
    flags = [f for f in TFLM_FLAGS if f != STRIP]
    with pytest.raises(TflmError) as err:
        build_runner(model, tmp_path / "k", TFLM_INCLUDE, RELEASE_LIB, tmp_path, flags)
    message = str(err.value)
    assert "\n" not in message and "--tflm-flag=-DTF_LITE_STRIP_ERROR_STRINGS" in message


def tf_model() -> bytes:
    """A builtin-only float .tflite (no fused op): Dense(3) on 4 inputs."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()
