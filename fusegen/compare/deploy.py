"""A trained classifier deployed with fusegen: converted, verified, run and rendered as C.

The deployed float32 model is the fused layer run by its compiled C core (HostCore, with the
weights stored in the .tflite) followed by the Dense head in numpy. `c_model` renders the same
model as one C file implementing firmware/app/fw_model.h, which the targets time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import keras
import numpy as np

from fusegen.build import Converted, convert_model
from fusegen.codegen import RUNTIME_SOURCES
from fusegen.codegen.core import c_float
from fusegen.frontend.keras_model import ModelError, import_file, load_model
from fusegen.hostcore import HostCore
from fusegen.lower import LoweredCell, cell_factory, lower_cell
from fusegen.paths import FIRMWARE
from fusegen.verify import LayerCheck, fused_op_weights, verify_model

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The TFLM kernel's default FUSEGEN_MAX_CHUNK (op_templates/kernel.h.j2): timesteps whose input
# projection is computed in one batch; it sets the scratch size.
MAX_CHUNK = 4
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=True, autoescape=False)


def convert(model_path: Path, imports: list[str], out_dir: Path) -> Converted:
    """fused.tflite and kernels/ (the generated op package) in out_dir."""
    return convert_model(model_path, imports, out_dir / "fused.tflite", out_dir / "kernels")


def verify(tflite: Path, model_path: Path, imports: list[str], x: np.ndarray,
           out_dir: Path) -> LayerCheck:
    inputs = out_dir / "verify_inputs.npy"
    np.save(inputs, x.astype(np.float32))
    (check,) = verify_model(tflite, model_path, imports, inputs)
    return check


def classifier_layers(model: keras.Model) -> tuple[keras.layers.RNN, keras.layers.Dense]:
    """The RNN and Dense layers of an Input -> RNN -> Dense model, or a one-line error."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    kinds = [type(layer).__name__ for layer in layers]
    if (len(layers) != 2 or not isinstance(layers[0], keras.layers.RNN)
            or not isinstance(layers[1], keras.layers.Dense)):
        raise ModelError(f"model {model.name}: compare runs Input -> RNN -> Dense classifiers; "
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

    @classmethod
    def load(cls, label: str, tflite: Path, model_path: Path, imports: list[str]) -> Deployed:
        model = load_model(model_path, [import_file(p) for p in imports])
        rnn, dense = classifier_layers(model)
        (name, options, weights), = fused_op_weights(tflite.read_bytes())
        lowered = lower_cell(cell_factory(rnn.cell), rnn.cell, rnn.input.shape[-1])
        kernel, bias = (np.asarray(w, np.float32) for w in dense.get_weights())
        core = HostCore(lowered.bound, name, params=tuple(weights))
        return cls(label, lowered, core, int(rnn.input.shape[1]),
                   bool(options.get("go_backwards")), kernel, bias)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """[N, T, F] -> [N, classes], every sample from a zero state."""
        hidden = np.stack([self.core.run(sample, False, self.go_backwards)[0] for sample in x])
        return hidden @ self.dense_kernel + self.dense_bias

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(self.logits(x), axis=-1) == y))

    def c_model(self, out_dir: Path, kernels: Path) -> tuple[list[Path], list[Path]]:
        """Writes compare_model.c; returns (C sources, include dirs) of the whole model."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "compare_model.c"
        path.write_text(_ENV.get_template("compare_model.c.j2").render(**self._context()))
        stem = self.core.ctx.stem
        runtime = [kernels / "tflm_kernels" / rel for rel in RUNTIME_SOURCES
                   if rel.startswith("runtime/") and rel.endswith(".c")]
        return [path, kernels / f"{stem}_core.c", *runtime], [kernels, FIRMWARE / "app"]

    @property
    def weight_bytes(self) -> int:
        return 4 * (sum(p.size for p in self.core.params) + self.dense_kernel.size
                    + self.dense_bias.size)

    def _context(self) -> dict:
        bound, ctx, timesteps = self.lowered.bound, self.core.ctx, self.timesteps
        plan = self.core.plan(timesteps, MAX_CHUNK)
        names = [p.name for p in ctx.params]
        return {
            "name": self.label, "op_name": ctx.op_name, "stem": ctx.stem, "prefix": ctx.prefix,
            "timesteps": timesteps, "input_size": bound.input_size, "units": bound.units,
            "input_elems": timesteps * bound.input_size, "classes": self.dense_bias.size,
            "max_chunk": MAX_CHUNK, "state_total": plan.state_total,
            "scratch_elems": plan.scratch_elems, "output_width": plan.output_width,
            "go_backwards": int(self.go_backwards), "weight_bytes": self.weight_bytes,
            "params": [_array(f"{name}: {'x'.join(map(str, p.shape))} as stored in the .tflite", p)
                       for name, p in zip(names, self.core.params)],
            "dense_weights": _array("", self.dense_kernel.T),
            "dense_bias": _array("", self.dense_bias),
        }


@dataclass(frozen=True)
class _CArray:
    comment: str
    size: int
    lines: list[str]


def _array(comment: str, values: np.ndarray, per_line: int = 6) -> _CArray:
    """Exact C literals: str(np.float32) is the shortest text that reads back as the same float."""
    flat = [c_float(float(str(np.float32(v)))) for v in np.ravel(values)]
    lines = [", ".join(flat[k:k + per_line]) + "," for k in range(0, len(flat), per_line)]
    return _CArray(comment, len(flat), lines)
