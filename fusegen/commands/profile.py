"""`fusegen verify --profile`: where an int8 layer's error comes from.

For each recurrent layer (one fused op; a Bidirectional or stacked layer is skipped with a
note) the cell is quantized on the layer's own inputs (the Keras model's, from `--inputs`), and
  * the integer twin is compared with the float twin at every timestep (mean error in output
    steps): an error that comes from one op is flat over time, one the recurrence accumulates
    grows;
  * each value the int8 kernel holds in a reduced format (every int16 value at its scale, every
    int8 matmul operand at its scale and zero point) is rounded to that format alone in the
    float twin, one at a time: the op whose rounding alone moves the output most is the one
    whose quantization contributes most.
The float twin is the kernel's specification (reference/float_interp.py), so the attribution
measures the format, not a bug: a kernel that differs from its twin fails `verify` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from fusegen.converter.lowering import ModelLowering
from fusegen.frontend.keras_model import recurrent_layers, sequence_input
from fusegen.quantize import quantize_cell
from fusegen.quantize.scales import asymmetric_int8
from fusegen.reference import float_interp

PROFILE_SAMPLES = 8  # sequences profiled (the attribution runs the twin once per value)


@dataclass(frozen=True)
class Contribution:
    node: int
    text: str  # "%12 = sigmoid(%11)  [cell.py:23]"
    fmt: str  # "int16" or "int8 operand"
    mean_steps: float  # the output's mean error, this value alone rounded


@dataclass(frozen=True)
class LayerProfile:
    layer: str
    samples: int
    per_step: tuple[float, ...]  # mean error of the int8 twin per timestep, in output steps
    contributions: tuple[Contribution, ...]  # largest first
    note: str = ""

    def grows(self) -> bool:
        """Whether the error grows through time (its last quarter at least twice its first)."""
        q = max(1, len(self.per_step) // 4)
        first, last = np.mean(self.per_step[:q]), np.mean(self.per_step[-q:])
        return bool(last >= 2 * max(first, 1e-9))

    def text(self) -> str:
        if self.note:
            return f"profile {self.layer}: {self.note}"
        steps = " ".join(f"{e:.2f}" for e in self.per_step)
        lines = [f"profile {self.layer} ({self.samples} samples, the cell quantized on these "
                 f"inputs): mean error per timestep in output steps: {steps}",
                 f"  the error {'grows through time (the recurrence accumulates it)' if self.grows() else 'does not grow through time'}"]
        for c in self.contributions[:3]:
            lines.append(f"  {c.mean_steps:6.2f} steps with only {c.text} rounded ({c.fmt})")
        if self.contributions:
            lines.append(f"  most: {self.contributions[0].text}")
        return "\n".join(lines)


def profile_model(model: keras.Model, x: np.ndarray) -> list[LayerProfile]:
    lowering = ModelLowering("s8")
    layers = recurrent_layers(model)
    for layer in layers:
        lowering.lower_layer(layer)
    probe = keras.Model(model.inputs, [sequence_input(layer) for layer in layers])
    values = probe([x[:PROFILE_SAMPLES]])
    values = [values] if len(layers) == 1 else values
    found = []
    for layer, layer_in in zip(layers, values, strict=True):
        lowered = lowering.layers.get(layer.name, [])
        if len(lowered) != 1 or getattr(layer, "go_backwards", False):
            found.append(LayerProfile(layer.name, 0, (), (), note="profiled for one forward "
                                      "fused op per layer only; skipped"))
            continue
        found.append(profile_layer(layer.name, lowered[0].bound, np.asarray(layer_in)))
    return found


def profile_layer(name: str, bound, x: np.ndarray) -> LayerProfile:
    x = x.astype(np.float32)
    qcell = quantize_cell(bound, x, asymmetric_int8(x.min(), x.max()))
    step = qcell.output_qparams[0]
    exact = np.stack([float_interp.run(bound, s, return_sequences=True)[0] for s in x])
    y = qcell.dequantize_output(qcell.run(qcell.quantize_input(x), return_sequences=True))
    per_step = tuple(float(v) for v in np.abs(y - exact).mean(axis=(0, 2)) / step)
    rounders = {j: ("int16", _int16(s)) for j, s in qcell.scales.items()}
    rounders |= {j: ("int8 operand", _int8(*qp)) for j, qp in qcell.operand_qparams.items()}
    contributions = []
    for j, (fmt, rnd) in rounders.items():
        got = np.stack([_run_with(bound, s, {j: rnd}) for s in x])
        contributions.append(Contribution(j, _describe(bound.graph, j), fmt,
                                          float(np.abs(got - exact).mean() / step)))
    contributions.sort(key=lambda c: -c.mean_steps)
    return LayerProfile(name, len(x), per_step, tuple(contributions))


def _int16(scale: float):
    return lambda v: np.clip(np.round(v / scale), -32768, 32767).astype(np.float32) * scale


def _int8(scale: float, zero: int):
    return lambda v: ((np.clip(np.round(v / scale) + zero, -128, 127) - zero)
                      .astype(np.float32) * scale)


def _run_with(bound, x: np.ndarray, rounders: dict) -> np.ndarray:
    """The float twin on one sequence with the given node values rounded: outputs [T, W]."""
    graph, sizes = bound.graph, (bound.units, bound.input_size)
    params = bound.param_values()
    states = [np.zeros(w(*sizes), np.float32) for w in graph.state_widths]
    outputs = []
    for t in range(x.shape[0]):
        vals = []
        for k, node in enumerate(graph.nodes):
            v = float_interp._eval(node, [vals[j] for j in node.inputs], sizes, params, x[t],
                                   states, float_interp.NUMPY)
            vals.append(rounders[k](v) if k in rounders else v)
        out, *states = [vals[j] for j in graph.outputs]
        outputs.append(out)
    return np.stack(outputs)


def _describe(graph, j: int) -> str:
    node = graph.nodes[j]
    if node.op.value in ("input", "state"):  # their loc is fusegen's trace, not the user's
        return f"%{j} = {node.op.value}" + (f" {node.attr('index')}" if node.op.value == "state"
                                            else " x")
    args = ", ".join(f"%{i}" for i in node.inputs)
    return f"%{j} = {node.op.value}({args})" + (f"  [{node.loc}]" if node.loc else "")
