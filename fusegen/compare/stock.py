"""The baselines: the stock TFLite converter on the same trained model rebuilt with unroll=True,
and, for a Keras LSTMCell, TF's own LSTM (a tf_keras LSTM with the same weights, which the
converter turns into the builtin UNIDIRECTIONAL_SEQUENCE_LSTM that TFLM runs).

Each dtype (float32, full int8 with int8 input and output, calibrated on training samples) is
converted (unroll_<dtype>.tflite, tflm_lstm_<dtype>.tflite) and its test accuracy measured with
tf.lite.Interpreter, each sample from reset states. The converter's calibrator is
known to crash the process (SIGSEGV) on some models, so all of this runs in a child process
(`python -m fusegen.compare.stock`), which reports a crash as that dtype's error; `start` and
`collect` let it run on the second core while the parent converts and measures the fused model.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusegen.fileio import write_bytes, write_text
from fusegen.quantize.scales import quantize_int8

TIMEOUT_S = 900
_CHILDREN: list[subprocess.Popen] = []  # running converter children, stopped by stop_children
CALIBRATION_SAMPLES = 100
DTYPES = ("float32", "int8")
LSTM_KEY = "tflm_lstm"  # stock.json: {dtype: {...}} for TF's builtin LSTM, None: not an LSTM
OUTPUTS = "{kind}_float32_outputs.npy"  # kind: unroll or LSTM_KEY; the test set's outputs


@dataclass
class StockRun:
    """A child process converting one model; `collect` waits for it."""

    process: subprocess.Popen
    out_dir: Path
    dtypes: tuple[str, ...]
    started: float


def start(model_path: Path, imports: list[str], data: Path, out_dir: Path,
          dtypes: tuple[str, ...], builtin_lstm: bool = False) -> StockRun:
    """Starts converting in the background; data is an .npz of x_cal, x_test and y_test.
    builtin_lstm: also TF's builtin LSTM files, when the model's cell is Keras' LSTMCell."""
    (out_dir / "stock.json").unlink(missing_ok=True)
    args = [sys.executable, "-m", "fusegen.compare.stock", str(model_path), str(data),
            str(out_dir), ",".join(dtypes), "lstm" if builtin_lstm else "-", *imports]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    with (out_dir / "stock.log").open("w") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=_die_with_parent)
    _CHILDREN.append(process)
    return StockRun(process, out_dir, dtypes, time.monotonic())


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the parent dies (Linux PR_SET_PDEATHSIG), so
    even a killed `compare` leaves no converter writing into its directory later."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def stop_children() -> None:
    """Ends every converter child still running (compare's exit path, signals included)."""
    while _CHILDREN:
        process = _CHILDREN.pop()
        if process.poll() is None:
            process.kill()
        process.wait()


def collect(run: StockRun) -> dict[str, dict]:
    """{dtype: {"bytes", "accuracy"} or {"error"}} once the child has ended, and under LSTM_KEY
    the same for TF's builtin LSTM (None: not asked for, or the model is no LSTMCell)."""
    try:
        code = run.process.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - run.started)))
        ended = _describe_exit(code, (run.out_dir / "stock.log").read_text())
    except subprocess.TimeoutExpired:
        run.process.kill()
        run.process.wait()
        ended = f"the converter ran longer than {TIMEOUT_S} s"
    if run.process in _CHILDREN:
        _CHILDREN.remove(run.process)
    result_path = run.out_dir / "stock.json"
    found = json.loads(result_path.read_text()) if result_path.exists() else {}
    out = {d: found.get(d) or {"error": ended} for d in run.dtypes}
    lstm = None
    if found.get("lstm"):  # the child started on it: a dtype it did not finish has `ended`
        got = found.get(LSTM_KEY) or {}
        lstm = {d: got.get(d) or {"error": ended} for d in run.dtypes}
    out[LSTM_KEY] = lstm
    return out


def _describe_exit(code: int, stderr: str) -> str:
    if code < 0:
        return f"the converter crashed: {signal.Signals(-code).name}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"exit {code}: {lines[-1][:160] if lines else 'no message'}"


def _child(model_path: str, data_path: str, out_dir: str, dtypes: str, lstm_wanted: str,
           *imports: str) -> None:
    import keras

    from fusegen.frontend.keras_model import import_file, load_model

    modules = [import_file(p) for p in imports]
    model = load_model(Path(model_path), modules)
    data = np.load(data_path)
    custom = {name: obj for m in modules for name, obj in vars(m).items()
              if isinstance(obj, type) and issubclass(obj, keras.layers.Layer)}
    with keras.saving.custom_object_scope(custom):  # cloning deserializes custom cells again
        unrolled = _unrolled(model)
    results: dict[str, dict] = {}
    for dtype in dtypes.split(","):
        out = Path(out_dir) / f"unroll_{dtype}.tflite"
        try:
            blob = _convert(unrolled, dtype, data["x_cal"])
            write_bytes(out, blob)
            results[dtype] = {"bytes": len(blob),
                              "accuracy": _accuracy(blob, data["x_test"], data["y_test"])}
        except Exception as err:  # noqa: BLE001 - reported in the row
            results[dtype] = {"error": f"{type(err).__name__}: {_first_line(err)}"}
        # Written after every dtype, so a crash in the next one keeps this one's numbers.
        write_text(Path(out_dir) / "stock.json", json.dumps(results))
    done = Path(out_dir) / "unroll_float32.tflite"
    _save_outputs(lambda: done.read_bytes() if "bytes" in results.get("float32", {})
                  else _convert(unrolled, "float32", data["x_cal"]), data["x_test"],
                  Path(out_dir) / OUTPUTS.format(kind="unroll"))
    builtin = _builtin_lstm_weights(model) if lstm_wanted == "lstm" else None
    if builtin is not None:
        results["lstm"] = True  # collect: a crash from here on is the LSTM's error
        write_text(Path(out_dir) / "stock.json", json.dumps(results))
        lstm: dict[str, dict] = {}
        try:
            tf_model = _tf_keras_lstm(model, *builtin)
        except Exception as err:  # noqa: BLE001 - reported in the rows
            tf_model, failed = None, f"{type(err).__name__}: {_first_line(err)}"
        for dtype in dtypes.split(","):
            out = Path(out_dir) / f"{LSTM_KEY}_{dtype}.tflite"
            try:
                if tf_model is None:
                    raise RuntimeError(f"tf_keras LSTM: {failed}")
                blob = _convert(tf_model, dtype, data["x_cal"], tf_keras_model=True)
                write_bytes(out, blob)
                lstm[dtype] = {"bytes": len(blob),
                               "accuracy": _accuracy(blob, data["x_test"], data["y_test"])}
            except Exception as err:  # noqa: BLE001 - reported in the rows
                lstm[dtype] = {"error": f"{type(err).__name__}: {_first_line(err)}"}
            results[LSTM_KEY] = lstm
            write_text(Path(out_dir) / "stock.json", json.dumps(results))
        if tf_model is not None:
            _save_outputs(lambda: _convert(tf_model, "float32", data["x_cal"],
                                           tf_keras_model=True),
                          data["x_test"], Path(out_dir) / OUTPUTS.format(kind=LSTM_KEY))
    keras.backend.clear_session()


def _save_outputs(convert, x: np.ndarray, path: Path) -> None:
    """The float32 file's outputs on the test samples (converted again: the int8 file comes
    from the same graph, so the float32 one shows whether the graph computes the Keras model;
    the parent holds them to verify's float rule). Nothing is saved when it fails to convert:
    that dtype's row has the error."""
    try:
        buffer = io.BytesIO()
        np.save(buffer, _outputs(convert(), x))
        write_bytes(path, buffer.getvalue())
    except Exception:  # noqa: BLE001 - the conversion's own row reports it
        path.unlink(missing_ok=True)


def _builtin_lstm_weights(model):
    """(rnn, dense) when the model's recurrent layer is Keras' own LSTMCell run forward (what TF's
    builtin LSTM computes), else None."""
    import keras

    from fusegen.compare.deploy import classifier_layers

    rnn, dense = classifier_layers(model)
    cell = rnn.cell
    if type(cell) is not keras.layers.LSTMCell or rnn.go_backwards or rnn.stateful:
        return None
    return rnn, dense


def _tf_keras_lstm(model, rnn, dense):
    """A tf_keras LSTM classifier with the trained weights: Keras 3's LSTM converts to a WHILE
    loop, tf_keras' to UNIDIRECTIONAL_SEQUENCE_LSTM (batch 1, as the other files)."""
    import tf_keras

    cell = rnn.cell
    timesteps, features = model.inputs[0].shape[1:]
    copy = tf_keras.Sequential([
        tf_keras.Input((timesteps, features), batch_size=1),
        tf_keras.layers.LSTM(cell.units, activation=keras_name(cell.activation),
                             recurrent_activation=keras_name(cell.recurrent_activation),
                             use_bias=cell.use_bias),
        tf_keras.layers.Dense(dense.units, activation=keras_name(dense.activation),
                              use_bias=dense.use_bias)])
    copy.set_weights(rnn.get_weights() + dense.get_weights())
    return copy


def keras_name(activation) -> str:
    """A Keras activation function's name, as tf_keras reads it ("tanh", "sigmoid", ...)."""
    return activation.__name__


def _unrolled(model):
    import keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.RNN):
            config["unroll"] = True
        return type(layer).from_config(config)

    unrolled = keras.models.clone_model(model, clone_function=clone)
    unrolled.set_weights(model.get_weights())
    return unrolled


def _convert(model, dtype: str, x_cal: np.ndarray, tf_keras_model: bool = False) -> bytes:
    import tensorflow as tf

    from fusegen.converter.model import make_converter

    converter = (tf.lite.TFLiteConverter.from_keras_model(model) if tf_keras_model
                 else make_converter(model, lambda layer: None))
    if dtype == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in x_cal[:CALIBRATION_SAMPLES])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif dtype != "float32":
        raise ValueError(f"unknown dtype {dtype}")
    return converter.convert()


def _accuracy(blob: bytes, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(_outputs(blob, x), axis=-1) == y))


def _outputs(blob: bytes, x: np.ndarray) -> np.ndarray:
    """The file's outputs [N, classes] (as stored: int8 files' int8) through tf.lite."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=blob)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    # TF's builtin LSTM keeps its states in variable tensors between invokes: every sample
    # starts from zero states, as the Keras model's do.
    scale, zero = inp["quantization"]
    outputs = []
    for sample in x:
        value = sample[None]
        if inp["dtype"] == np.int8:
            value = quantize_int8(value, (scale, zero))
        interpreter.reset_all_variables()
        interpreter.set_tensor(inp["index"], value.astype(inp["dtype"]))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(outputs)


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0][:160] if lines else ""


if __name__ == "__main__":
    _child(*sys.argv[1:])
