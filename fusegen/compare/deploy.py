"""A trained classifier deployed with fusegen: converted, verified, run and rendered as C.

The deployed float32 model is the fused layer run by its compiled C core (HostCore, with the
weights stored in the .tflite) followed by the Dense head in numpy. `c_model` renders the same
model as fusegen bench's core-mode fw_model.c (firmware/app/fw_model.h) with the Dense head in C,
which the targets time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from fusegen.abi import MAX_CHUNK
from fusegen.bench.firmware.core_model import CoreChain, CoreOp
from fusegen.bench.firmware.model_source import DenseHead, write_model_sources
from fusegen.commands.build import Converted, convert_model
from fusegen.frontend.keras_model import ModelError, import_file, load_model
from fusegen.host.core import HostCore
from fusegen.lower import LoweredCell, cell_factory, lower_cell
from fusegen.paths import FIRMWARE
from fusegen.reference.float_interp import run64
from fusegen.commands.verify import LayerCheck, fused_op_weights, input_padding, verify_model


def convert(model_path: Path, imports: list[str], out_dir: Path) -> Converted:
    """fused.tflite and kernels/ (the generated op package) in out_dir."""
    return convert_model(model_path, imports, out_dir / "fused.tflite", out_dir / "kernels")


def verify(tflite: Path, model_path: Path, imports: list[str], x: np.ndarray,
           out_dir: Path) -> LayerCheck:
    inputs = out_dir / "verify_inputs.npy"
    np.save(inputs, x.astype(np.float32))
    (check,) = verify_model(tflite, model_path, imports, inputs)
    return check


def without_softmax(data: bytes) -> bytes:
    """The .tflite without its final SOFTMAX (the output is then the logits): the scope of
    every timed row of compare, as the softmax does not change the class. A file that does not
    end in a SOFTMAX producing its only output is returned as it is."""
    from fusegen.converter import tflite_file

    model = tflite_file.read_model(data)
    graph = model.subgraphs[0]
    if not graph.operators:
        return data
    last = graph.operators[-1]
    if (tflite_file.op_name(model, last) != "SOFTMAX"
            or [int(i) for i in graph.outputs] != [int(last.outputs[0])]):
        return data
    graph.outputs = [int(last.inputs[0])]
    graph.operators = graph.operators[:-1]
    model.signatureDefs = []  # they name the dropped output
    return tflite_file.write_model(model)


def classifier_layers(model: keras.Model) -> tuple[keras.layers.RNN, keras.layers.Dense]:
    """The RNN and Dense layers of an Input [-> Masking] -> RNN -> Dense model, or a one-line
    error."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    kinds = [type(layer).__name__ for layer in layers]
    if layers and isinstance(layers[0], keras.layers.Masking):
        layers = layers[1:]
    if (len(layers) != 2 or not isinstance(layers[0], keras.layers.RNN)
            or not isinstance(layers[1], keras.layers.Dense)):
        raise ModelError(f"model {model.name}: compare runs Input [-> Masking] -> RNN -> Dense "
                         "classifiers; "
                         f"this one has {' -> '.join(kinds)}")
    rnn, dense = layers
    if rnn.return_sequences or dense.activation.__name__ not in ("softmax", "linear"):
        raise ModelError(f"model {model.name}: the RNN must return its last output only and the "
                         "Dense layer be softmax or linear")
    return rnn, dense


@dataclass
class Deployed:
    """The fused layer's C core (weights read back from the .tflite) + the Dense head."""

    label: str
    lowered: LoweredCell
    core: HostCore
    timesteps: int
    go_backwards: bool
    dense_kernel: np.ndarray  # [units, classes] float32
    dense_bias: np.ndarray  # [classes]
    source: str = ""  # the .tflite's file name, for the generated C's header
    mask_value: float | None = None  # Keras Masking before the RNN: padded steps are skipped

    @classmethod
    def load(cls, label: str, tflite: Path, model_path: Path, imports: list[str]) -> Deployed:
        model = load_model(model_path, [import_file(p) for p in imports])
        rnn, dense = classifier_layers(model)
        (name, options, weights), = fused_op_weights(tflite.read_bytes())
        if options.get("mask"):  # the last input is the mask (abi.mask_input), not a weight
            weights = weights[:-1]
        lowered = lower_cell(cell_factory(rnn.cell), rnn.cell, model.inputs[0].shape[-1])
        kernel, bias = (np.asarray(w, np.float32) for w in dense.get_weights())
        core = HostCore(lowered.bound, name, params=tuple(weights))
        return cls(label, lowered, core, int(model.inputs[0].shape[1]),
                   bool(options.get("go_backwards")), kernel, bias, tflite.name,
                   input_padding(model))  # classifier_layers: Masking or nothing

    def logits(self, x: np.ndarray) -> np.ndarray:
        """[N, T, F] -> [N, classes], every sample from a zero state (padded steps masked as the
        firmware masks them: CoreChain.step_mask)."""
        chain = self.chain()
        hidden = np.stack([self.core.run(sample, False, self.go_backwards,
                                         mask=chain.step_mask(sample))[0] for sample in x])
        return hidden @ self.dense_kernel + self.dense_bias

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(self.logits(x), axis=-1) == y))

    def c_model(self, out_dir: Path, kernels: Path) -> tuple[list[Path], list[Path]]:
        """Writes fw_model.c (the fused op, then the Dense head); returns (C sources, include
        dirs) of the whole model."""
        plan = self.core.plan(self.timesteps, MAX_CHUNK)
        sources, includes = write_model_sources(
            self.chain(), [plan], kernels, out_dir, self.label, self.source,
            DenseHead(self.dense_kernel, self.dense_bias), command="compare")
        return sources, [*includes, FIRMWARE / "app"]

    def chain(self) -> CoreChain:
        """The fused op as core mode's chain of one op, with the .tflite's weights."""
        bound = self.lowered.bound
        op = CoreOp(self.core.ctx.op_name, bound.graph, self.core.params, bound.input_size,
                    bound.units, self.timesteps, False, self.go_backwards)
        return CoreChain((op,), (), mask_value=self.mask_value)


def int8_head(tflite_bytes: bytes):
    """The int8 FULLY_CONNECTED that follows the last fused op of a full-int8 classifier file,
    as core mode's S8DenseHead; a ModelError when the file has no such op."""
    from fusegen.bench.firmware.model_source import S8DenseHead
    from fusegen.converter import tflite_file

    model = tflite_file.read_model(tflite_bytes)
    graph = model.subgraphs[0]
    info = tflite_file.summary(tflite_bytes)
    fused = [op for op in info.ops if op.name.startswith("FUSEGEN_")]
    if not fused:
        raise ModelError("the int8 file has no fused op")
    head = next((op for op in info.ops if op.name == "FULLY_CONNECTED"
                 and op.inputs[0] == fused[-1].outputs[0]), None)
    if head is None:
        raise ModelError("the int8 file has no FULLY_CONNECTED after its fused op")

    def scales(index: int) -> list[float]:
        q = graph.tensors[index].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise ModelError(f"tensor {index} of the int8 head is not quantized")
        return [float(v) for v in q.scale]

    def qparams(index: int) -> tuple[float, int]:
        (scale,) = scales(index)
        q = graph.tensors[index].quantization
        return scale, int(q.zeroPoint[0]) if q.zeroPoint is not None else 0

    weights = tflite_file.tensor_value(model, head.inputs[1])
    bias = (tflite_file.tensor_value(model, head.inputs[2])
            if len(head.inputs) > 2 and head.inputs[2] >= 0 else None)
    if weights is None or weights.dtype != np.int8:
        raise ModelError("the int8 head's weights are not constant int8")
    return S8DenseHead.from_tflite(weights, bias, qparams(head.inputs[0]),
                                   scales(head.inputs[1]), qparams(head.outputs[0]))


def reference_outputs(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Keras' outputs, the same classifier in float64) on x [N, T, F]: the cell's numpy twin
    in double under the model's mask (Masking), then the Dense head and its softmax in double.
    The yardstick a baseline file is held to (verdict.FloatBounds, as verify's float rule)."""
    rnn, dense = classifier_layers(model)
    lowered = lower_cell(cell_factory(rnn.cell), rnn.cell, model.inputs[0].shape[-1])
    pad = input_padding(model)
    hidden = np.stack([
        run64(lowered.bound, sample.astype(np.float64), False, rnn.go_backwards,
              None if pad is None else np.any(sample != pad, axis=-1),
              bool(rnn.zero_output_for_mask)) for sample in x])
    kernel, *bias = (np.asarray(w, np.float64) for w in dense.get_weights())
    logits = hidden @ kernel + (bias[0] if bias else 0.0)
    if dense.activation.__name__ == "softmax":
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        logits = e / e.sum(axis=-1, keepdims=True)
    return np.asarray(model(x)), logits
