"""fusegen.host.tflm: whole converted models through tflite::MicroInterpreter, against Keras.

Tests marked `tflm` need a TFLM build, which fusegen neither ships nor downloads. They run when
    FUSEGEN_TFLM_INCLUDE  colon-separated include dirs (TFLM root, flatbuffers/include, ...)
    FUSEGEN_TFLM_LIB      the static library (e.g. .../gen/<target>/lib/libtensorflow-microlite.a)
    FUSEGEN_TFLM_FLAGS    optional extra compiler flags, space-separated
are set, and are skipped otherwise (CI has no TFLM). The other tests only render the runner.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, randomize
from tflm_env import TFLM_FLAGS, TFLM_INCLUDE, TFLM_LIB, needs_tflm

from fusegen.codegen import Registration, write_package
from fusegen.converter import tflite_file
from fusegen.converter.model import convert
from fusegen.converter.lowering import ModelLowering
from fusegen.commands.verify import verify_model_tflm
from fusegen.host.tflm import (
    TflmError,
    build_runner,
    check_tflm,
    resolver_method,
    resolver_methods,
    run_runner,
    run_tflm_detailed,
    runner_source,
)

# Float32 against Keras: the kernels sum in another order than TF and call the C library's
# expf/tanhf; measured errors are ~1e-6 at most, so 1e-5 leaves an order of magnitude.
TOLERANCE = 1e-5
TIMESTEPS, FEATURES, UNITS, SAMPLES = 9, 5, 7, 4



# -- models --------------------------------------------------------------------------------------

def dense_stack(cell: str) -> keras.Model:
    """Dense -> RNN(return_sequences) -> RNN(last step) -> Dense, all weights random non-zero."""
    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES)),
        keras.layers.Dense(6, activation="tanh"),
        keras.layers.RNN(CELLS[cell](UNITS), return_sequences=True),
        keras.layers.RNN(CELLS[cell](UNITS - 2)),
        keras.layers.Dense(3),
    ])
    for seed, layer in enumerate(model.layers):
        randomize(layer, seed)
    return model


def compositions(merge_mode: str) -> keras.Model:
    """Bidirectional (fused forward and backward ops merged by builtins) and StackedRNNCells."""
    stacked = keras.layers.StackedRNNCells([CELLS["minimal_gated"](6), CELLS["gru"](5)])
    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES)),
        keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=True),
                                   merge_mode=merge_mode),
        keras.layers.RNN(stacked),
    ])
    for seed, layer in enumerate(model.layers):
        randomize(layer, seed)
    return model


def single_rnn(cell: str, return_sequences: bool, go_backwards: bool = False) -> keras.Model:
    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES)),
        keras.layers.RNN(CELLS[cell](UNITS), return_sequences=return_sequences,
                         go_backwards=go_backwards),
    ])
    randomize(model.layers[0], 7)
    return model


def converted(model: keras.Model, out_dir: Path) -> bytes:
    """The model's .tflite; its kernels written to out_dir."""
    lowering = ModelLowering()
    data = convert(model, lowering.lower_layer)
    write_package(lowering.ops, out_dir)
    return data


def samples(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.5, 1.5, (SAMPLES, TIMESTEPS, FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def lstm_stack(tmp_path_factory) -> tuple[keras.Model, bytes, Path]:
    out = tmp_path_factory.mktemp("lstm_stack")
    model = dense_stack("lstm")
    return model, converted(model, out), out


# -- without TFLM --------------------------------------------------------------------------------

def test_runner_registers_every_op_of_the_model(lstm_stack):
    _, data, _ = lstm_stack
    source = runner_source(data, [Registration("some_dir")])
    ops = set(tflite_file.summary(data).op_names())
    assert "FULLY_CONNECTED" in ops and "FUSEGEN_LSTM" in ops
    for name in ops - {"FUSEGEN_LSTM"}:
        assert f"(resolver.Add{resolver_method(name)}());  // {name}" in source
    assert f"kNumBuiltins = {len(ops) - 1};" in source
    assert "fusegen::some_dir::RegisterOps(resolver)" in source
    assert "fusegen::some_dir::kNumOps" in source


@pytest.mark.parametrize("builtin, method", [
    ("FULLY_CONNECTED", "FullyConnected"), ("CONV_2D", "Conv2D"),
    ("DEPTHWISE_CONV_2D", "DepthwiseConv2D"), ("EXPAND_DIMS", "ExpandDims"),
    ("L2_NORMALIZATION", "L2Normalization"), ("RELU6", "Relu6"), ("BATCH_MATMUL", "BatchMatMul"),
    ("UNIDIRECTIONAL_SEQUENCE_LSTM", "UnidirectionalSequenceLSTM"), ("PADV2", "PadV2"),
])
def test_resolver_method_names(builtin, method):
    assert resolver_method(builtin) == method


def test_resolver_methods_parses_the_resolver_header():
    text = "  TfLiteStatus AddConv2D(\n  TfLiteStatus AddFullyConnected(const TFLMRegistration& r"
    assert resolver_methods(text) == {"Conv2D", "FullyConnected"}


def test_runner_refuses_foreign_custom_ops(lstm_stack):
    _, data, _ = lstm_stack
    model = tflite_file.read_model(data)
    for code in model.operatorCodes:
        if code.customCode == b"FUSEGEN_LSTM":
            code.customCode = b"SOMEONE_ELSES_OP"
    with pytest.raises(TflmError, match="SOMEONE_ELSES_OP"):
        runner_source(tflite_file.write_model(model), [Registration("some_dir")])


def test_missing_tflm_is_a_clear_error(tmp_path):
    with pytest.raises(TflmError, match="do not exist"):
        check_tflm([str(tmp_path / "nowhere")], str(tmp_path / "lib.a"))
    with pytest.raises(TflmError, match="micro_interpreter.h"):
        check_tflm([str(tmp_path)], str(tmp_path / "lib.a"))


def fake_tflm(root: Path) -> tuple[list[str], str]:
    """An include tree that passes check_tflm but does not compile, and an empty 'library'."""
    micro = root / "tensorflow/lite/micro"
    micro.mkdir(parents=True)
    (micro / "micro_interpreter.h").write_text("#error not a real TFLM\n")
    (micro / "micro_mutable_op_resolver.h").write_text(
        "#error not a real TFLM\n// TfLiteStatus AddFullyConnected(\n// TfLiteStatus AddTanh(\n")
    (root / "flatbuffers").mkdir()
    (root / "flatbuffers/flatbuffers.h").write_text("")
    (root / "lib.a").write_bytes(b"")
    return [str(root)], str(root / "lib.a")


def test_compile_errors_show_the_compiler_output(lstm_stack, tmp_path):
    _, data, kernels = lstm_stack
    include, library = fake_tflm(tmp_path / "tflm")
    with pytest.raises(TflmError, match=r"(?s)compiling tflm_runner.cc failed.*not a real TFLM"):
        build_runner(data, kernels, include, library, tmp_path)


def test_builtins_this_tflm_lacks_are_named(lstm_stack, tmp_path):
    _, data, kernels = lstm_stack
    include, library = fake_tflm(tmp_path / "tflm")
    header = tmp_path / "tflm/tensorflow/lite/micro/micro_mutable_op_resolver.h"
    header.write_text("// TfLiteStatus AddFullyConnected(\n")
    with pytest.raises(TflmError, match=r"no kernel for the builtin op\(s\) \['TANH'\]"):
        build_runner(data, kernels, include, library, tmp_path)


def test_inputs_must_be_samples_of_the_model_input(lstm_stack, tmp_path):
    _, data, _ = lstm_stack
    with pytest.raises(TflmError, match=r"not N samples of the model input \(1, 9, 5\)"):
        run_runner(tmp_path / "no_runner_needed", data, samples()[:, :, :4], tmp_path)


def test_kernels_must_come_from_the_same_conversion(lstm_stack, tmp_path):
    _, data, _ = lstm_stack
    include, library = fake_tflm(tmp_path / "tflm")
    write_package({}, tmp_path / "empty")
    with pytest.raises(TflmError, match=r"has no kernel for \['FUSEGEN_LSTM'\]"):
        build_runner(data, tmp_path / "empty", include, library, tmp_path)


# -- with TFLM -----------------------------------------------------------------------------------

def _prepare_failure(message: str) -> str:
    """What a failed Prepare looks like: the kernel's message, or with a release TFLM's
    -DTF_LITE_STRIP_ERROR_STRINGS (messages compiled out) only the failed AllocateTensors."""
    if "-DTF_LITE_STRIP_ERROR_STRINGS" in TFLM_FLAGS:
        return r"(?s)exit 1\).*AllocateTensors failed"
    return rf"(?s)exit 1\).*{message}"


def run(data: bytes, kernels: Path, x: np.ndarray):
    return run_tflm_detailed(data, kernels, x, TFLM_INCLUDE, TFLM_LIB, TFLM_FLAGS)


def max_error(model: keras.Model, data: bytes, kernels: Path, seed: int = 0) -> float:
    x = samples(seed)
    result = run(data, kernels, x)
    expected = np.asarray(model(x))
    assert result.outputs.shape == expected.shape
    assert result.arena_used_bytes > 0
    return float(np.abs(result.outputs - expected).max())


@needs_tflm
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_dense_stack_matches_keras(cell, tmp_path):
    model = dense_stack(cell)
    assert max_error(model, converted(model, tmp_path), tmp_path) <= TOLERANCE


@needs_tflm
@pytest.mark.parametrize("return_sequences, go_backwards",
                         [(False, False), (True, False), (True, True)],
                         ids=["last", "sequences", "sequences_backwards"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_single_layer_matches_keras(cell, return_sequences, go_backwards, tmp_path):
    model = single_rnn(cell, return_sequences, go_backwards)
    assert max_error(model, converted(model, tmp_path), tmp_path) <= TOLERANCE


@needs_tflm
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
def test_compositions_match_keras(merge_mode, tmp_path):
    model = compositions(merge_mode)
    assert max_error(model, converted(model, tmp_path), tmp_path) <= TOLERANCE


@needs_tflm
def test_verify_model_tflm(lstm_stack, tmp_path):
    model, data, _ = lstm_stack
    model.save(tmp_path / "model.keras")
    (tmp_path / "model.tflite").write_bytes(data)
    np.save(tmp_path / "x.npy", samples(1))
    check = verify_model_tflm(tmp_path / "model.tflite", tmp_path / "model.keras", [],
                              tmp_path / "x.npy", TFLM_INCLUDE, TFLM_LIB, TFLM_FLAGS)
    assert check.samples == SAMPLES and check.max_abs <= TOLERANCE
    assert check.arena_used_bytes > 0


@needs_tflm
def test_garbage_options_fail_prepare_cleanly(lstm_stack):
    _, data, kernels = lstm_stack
    model = tflite_file.read_model(data)
    for graph in model.subgraphs:
        for op in graph.operators:
            if tflite_file.op_name(model, op) == "FUSEGEN_LSTM":
                op.customOptions = np.frombuffer(b"\xde\xad\xbe\xef\x01\x02", dtype=np.uint8)
    with pytest.raises(TflmError, match=_prepare_failure(r"FUSEGEN_LSTM: option \w+: malformed")):
        run(tflite_file.write_model(model), kernels, samples())


@needs_tflm
def test_wrong_weight_shape_fails_prepare_cleanly(lstm_stack):
    _, data, kernels = lstm_stack
    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    op = next(o for o in graph.operators if tflite_file.op_name(model, o) == "FUSEGEN_LSTM")
    weight = graph.tensors[op.inputs[1]]
    weight.shape = np.array([weight.shape[1], weight.shape[0]], dtype=np.int32)  # transposed
    with pytest.raises(TflmError, match=_prepare_failure(r"FUSEGEN_LSTM: weight input 0 has the wrong")):
        run(tflite_file.write_model(model), kernels, samples())


@needs_tflm
def test_every_resolver_method_has_a_builtin_name():
    """resolver_method's rule covers this TFLM: each Add<name> is a builtin's, or a custom op's."""
    from tensorflow.lite.python import schema_py_generated as schema

    header = next(Path(d) / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
                  for d in TFLM_INCLUDE
                  if (Path(d) / "tensorflow/lite/micro/micro_mutable_op_resolver.h").is_file())
    builtins = {resolver_method(n) for n in vars(schema.BuiltinOperator) if not n.startswith("_")}
    # Registrations of TFLM's own custom ops (signal/, Ethos-U, detection) and generic entries.
    custom = {"Custom", "Builtin", "CircularBuffer", "Decode", "Delay", "DetectionPostprocess", "Energy",
              "EthosU", "FftAutoScale", "FilterBank", "FilterBankLog", "FilterBankSquareRoot",
              "FilterBankSpectralSubtraction", "Framer", "Irfft", "OverlapAdd", "PCAN", "Rfft",
              "Stacker", "Window"}
    assert resolver_methods(header.read_text()) - custom <= builtins
