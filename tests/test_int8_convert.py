"""Whole models to full int8 (`fusegen convert --quantize int8`): one subgraph, int8 on every
activation tensor, the file's pieces meeting at matching scales, and bad calibration data."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, EXAMPLES, randomize
from tensorflow.lite.python import schema_py_generated as schema

from fusegen import cli
from fusegen.converter import tflite_file
from fusegen.converter.int8 import convert_int8
from fusegen.converter.int8.chain import io_qparams
from fusegen.commands.verify import run_int8_file

RNG = np.random.default_rng(0)


def _calibration(shape, n=48):
    return RNG.uniform(-1, 1, (n, *shape)).astype(np.float32)


def _models():
    def middle():
        return keras.Sequential([keras.Input((12, 5)), keras.layers.Conv1D(8, 3, padding="same",
                                 activation="relu"), keras.layers.LSTM(10),
                                 keras.layers.Dense(4, activation="softmax")])

    def first_and_last():
        return keras.Sequential([keras.Input((10, 4)), keras.layers.RNN(CELLS["minimal_gated"](7))])

    def back_to_back():
        return keras.Sequential([keras.Input((9, 3)), keras.layers.Dense(6),
                                 keras.layers.GRU(8, return_sequences=True),
                                 keras.layers.RNN(CELLS["peephole_lstm"](5)),
                                 keras.layers.Dense(3)])

    return {"middle": middle, "first_and_last": first_and_last, "back_to_back": back_to_back}


@pytest.mark.parametrize("name", sorted(_models()))
def test_model_converts_to_all_int8(name):
    model = _models()[name]()
    randomize(model, seed=3)
    shape = tuple(model.inputs[0].shape[1:])
    data, pipeline = convert_int8(model, _calibration(shape))
    tfl = tflite_file.read_model(data)
    assert len(tfl.subgraphs) == 1
    graph = tfl.subgraphs[0]
    names = [tflite_file.op_name(tfl, op) for op in graph.operators]
    assert not {"QUANTIZE", "DEQUANTIZE", "WHILE"} & set(names)
    fused = [n for n in names if n.startswith("FUSEGEN_")]
    assert len(fused) == sum(isinstance(layer, keras.layers.RNN) for layer in model.layers)
    for i, tensor in enumerate(graph.tensors):
        if tflite_file.tensor_value(tfl, i) is None:  # an activation: int8, quantized
            assert tensor.type == schema.TensorType.INT8, tensor.name
            assert tensor.quantization is not None and len(tensor.quantization.scale) == 1
    # The file, run piece by piece with the compiled int8 cores, computes exactly what the
    # pipeline it was joined from computes (segments through TFLite, cells through the twin).
    x = _calibration(shape, n=6)
    from_file = run_int8_file(data, model, x)
    assert np.array_equal(from_file, pipeline.predict(x))
    # ... and stays close to float Keras: within a few output quantization steps.
    step = io_qparams(data)[1][0]
    assert np.abs(from_file - np.asarray(model(x))).max() <= 6 * step


def test_int8_through_the_cli(tmp_path, capsys):
    model = _models()["middle"]()
    randomize(model, seed=4)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "calib.npy", _calibration((12, 5)))
    np.save(tmp_path / "x.npy", _calibration((12, 5), n=5))
    np.save(tmp_path / "y.npy", np.arange(5) % 4)
    code = cli.main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "q.tflite"),
                     "--quantize", "int8", "--calibration", str(tmp_path / "calib.npy"),
                     "--kernels", str(tmp_path / "k")])
    assert code == 0
    assert "_eval_s8" in (tmp_path / "k" / "fusegen_lstm_s8_core.c").read_text()  # int8: _S8
    code = cli.main(["verify", str(tmp_path / "q.tflite"), "--keras", str(tmp_path / "m.keras"),
                     "--inputs", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")])
    out = capsys.readouterr().out
    assert code == 0 and "output steps" in out and "accuracy: Keras float" in out
    # --tflm-* is for float32 files: an int8 one is refused in one line, not passed untested
    code = cli.main(["verify", str(tmp_path / "q.tflite"), "--keras", str(tmp_path / "m.keras"),
                     "--inputs", str(tmp_path / "x.npy"), "--tflm-include", str(tmp_path),
                     "--tflm-lib", str(tmp_path / "lib.a")])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 1 and captured.out == "" and len(err) == 1 and "bench" in err[0], err


@pytest.mark.parametrize("bad, message", [
    (np.zeros((48, 12, 4), np.float32), "shape"),
    (np.zeros((48, 12, 5), np.int32), "float"),
    (np.zeros((1, 12, 5), np.float32), "at least"),
    (np.full((48, 12, 5), np.nan, np.float32), "NaN"),
], ids=["shape", "dtype", "too_few", "nan"])
def test_bad_calibration_data_is_one_clear_line(tmp_path, capsys, bad, message):
    model = _models()["middle"]()
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "calib.npy", bad)
    code = cli.main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "q.tflite"),
                     "--quantize", "int8", "--calibration", str(tmp_path / "calib.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "q.tflite").exists()


def test_missing_calibration_flag(tmp_path, capsys):
    code = cli.main(["convert", str(EXAMPLES / "nothing.keras"), "-o", str(tmp_path / "q.tflite"),
                     "--quantize", "int8"])
    assert code == 1 and "--calibration" in capsys.readouterr().err


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_int8_file_is_its_weights_plus_at_most_6_kib(cell):
    """Issue budget: int8 weights + int32 biases + 6 KiB (qparams, lookup tables, flatbuffer)."""
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.RNN(CELLS[cell](32))])
    randomize(model, seed=5)
    data, pipeline = convert_int8(model, _calibration((28, 28), n=8))
    weights = sum(p.nbytes for p in pipeline.parts[0].calls[0].qcell.inputs.params)
    assert len(data) <= weights + 6 * 1024, (len(data), weights)


def test_int8_matrices_are_stored_in_the_kernels_layout_at_the_same_size():
    """The int8 op's matrices are stored in abi.pack_s8_matrix's byte order and tagged
    weight_layout=1 in its options; the file is exactly as large as with row-major matrices
    (nothing padded; units 10 and inputs 5 leave tail rows, words and bytes), and a file whose
    tag was edited to another layout is refused with one line."""
    from fusegen import abi
    from fusegen.converter.validate import FileFormatError

    model = _models()["middle"]()
    randomize(model, seed=4)
    data, pipeline = convert_int8(model, _calibration((12, 5), n=8))
    qcell = pipeline.parts[1].calls[0].qcell if not hasattr(pipeline.parts[0], "calls") \
        else pipeline.parts[0].calls[0].qcell
    (name, options, consts), = tflite_file.fused_op_weights(data)
    assert options["weight_layout"] == abi.WEIGHT_LAYOUTS["s8"] == 1
    roles = qcell.program.param_roles
    matrices = [k for k, role in enumerate(roles) if role == abi.PARAM_MATRIX]
    assert matrices
    for k in matrices:
        stored = consts[k]
        row_major = abi.unpack_s8_matrix(stored)
        assert stored.shape == row_major.shape and stored.nbytes == row_major.nbytes
        assert not np.array_equal(stored, row_major)  # really reordered at these sizes
        # the twin's own matrices, quantized row-major, packed: the bytes in the file
        assert np.array_equal(stored, qcell.inputs.params[k])
    # The same file with row-major matrices (what a layout-free writer stores) has the same size.
    tfl = tflite_file.read_model(data)
    op = next(o for o in tfl.subgraphs[0].operators if tflite_file.op_name(tfl, o) == name)
    for k in matrices:
        buffer = tfl.buffers[tfl.subgraphs[0].tensors[op.inputs[1 + k]].buffer]
        stored = np.frombuffer(bytes(buffer.data), np.int8).reshape(consts[k].shape)
        buffer.data = abi.unpack_s8_matrix(stored).view(np.uint8).ravel()
    assert len(tflite_file.write_model(tfl)) == len(data)
    # A hand-edited tag: the host run (validate.py, as the kernel's Prepare) refuses it.
    edited = tflite_file.replace_custom_options(data, name, {**options, "weight_layout": 0})
    with pytest.raises(FileFormatError, match="weight_layout is 0, its s8 kernel reads weight "
                                              "layout 1; convert the model again"):
        run_int8_file(edited, model, _calibration((12, 5), n=1))


def test_a_clamp_row_with_lo_above_hi_is_refused():
    """IndRNN's relu and clip run as clamps: their luts rows are clamp rows (abi.clamp_row,
    lo <= hi). A file edited to lo > hi fails validation with one line (as the kernel's Prepare
    does, tests/cpp/fg_shell_test.cc); the file as written, edited to other bounds or to a table,
    runs."""
    from fusegen.abi import clamp_row, row_clamp
    from fusegen.converter.validate import FileFormatError
    from fusegen.ir import Op
    from fusegen.quantize.lut import make_lut
    from fusegen.reference import float_interp

    model = keras.Sequential([keras.Input((6, 3)), keras.layers.RNN(CELLS["indrnn"](7))])
    randomize(model, seed=5)
    data, _ = convert_int8(model, _calibration((6, 3), n=8))
    (name, _, consts), = tflite_file.fused_op_weights(data)
    assert [row_clamp(r) is not None for r in consts[-1]] == [True, True]
    run_int8_file(data, model, _calibration((6, 3), n=1))

    def edited(row: int, values: np.ndarray) -> bytes:
        tfl = tflite_file.read_model(data)
        op = next(o for o in tfl.subgraphs[0].operators if tflite_file.op_name(tfl, o) == name)
        luts = consts[-1].copy()
        luts[row] = values
        tensor = tfl.subgraphs[0].tensors[op.inputs[len(consts)]]
        tfl.buffers[tensor.buffer].data = luts.view(np.uint8)
        return tflite_file.write_model(tfl)

    with pytest.raises(FileFormatError, match=r"luts row 1 is a clamp to 5\.\.-3, lo above hi"):
        run_int8_file(edited(1, clamp_row(5, -3)), model, _calibration((6, 3), n=1))
    run_int8_file(edited(1, clamp_row(-3, -3)), model, _calibration((6, 3), n=1))
    relu = make_lut(float_interp.NUMPY.unary[Op.RELU], 2.0 ** -13, 2.0 ** -13)
    run_int8_file(edited(0, relu), model, _calibration((6, 3), n=1))
