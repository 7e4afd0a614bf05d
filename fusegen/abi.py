"""The fused op's interface, defined once: its name, inputs, outputs and custom options.

The converter writes these (converter/), the generated TFLM kernel reads them (op_templates/
kernel.cc.j2 renders the same lists), and tests/test_opdef_roundtrip.py checks that bytes written
here decode to the same values in C.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fusegen.ir import Graph

OP_PREFIX = "FUSEGEN_"


@dataclass(frozen=True)
class OptionDef:
    key: str
    kind: str  # "bool" or "int" (the flexbuffer type the converter writes)
    default: int
    doc: str


# Every custom option of every fused op. Keys are flexbuffer map keys, read by name in C.
OPTIONS: tuple[OptionDef, ...] = (
    OptionDef("return_sequences", "bool", 0, "output every timestep [1, T, W], else the last [1, W]"),
    OptionDef("go_backwards", "bool", 0, "process the sequence from its last timestep, as Keras"),
    OptionDef("return_state", "bool", 0, "the final states follow y as outputs, in Keras order"),
    OptionDef("stateful", "bool", 0, "the states are variable tensors, the inputs after the "
              "params: kept between invocations, cleared by MicroInterpreter::Reset()"),
)


def option_values(return_sequences: bool, go_backwards: bool, return_state: bool = False,
                  stateful: bool = False) -> dict[str, bool]:
    values = {"return_sequences": bool(return_sequences), "go_backwards": bool(go_backwards),
              "return_state": bool(return_state), "stateful": bool(stateful)}
    assert set(values) == {o.key for o in OPTIONS}
    return values


@dataclass(frozen=True)
class OpInterface:
    """Inputs: x [1, T, I], then every param in graph order (matrices stored [N, K]), then
    either the initial states or (stateful) the state variables, [1, width] each, in Keras
    order. Outputs: y [1, T, W] or [1, W], then with return_state the final states."""

    op_name: str
    graph: Graph

    @property
    def stem(self) -> str:
        return self.op_name.lower()

    def input_names(self) -> list[str]:
        return ["input"] + [p.name for p in self.graph.params]


def class_token(cls_name: str) -> str:
    """LSTMCell -> LSTM, SimpleRNNCell -> SIMPLE_RNN, MinimalGatedCell -> MINIMAL_GATED."""
    base = cls_name[:-4] if cls_name.endswith("Cell") and len(cls_name) > 4 else cls_name
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|\d+|[A-Z]+", base)
    return "_".join(w.upper() for w in words) or "CELL"


def op_name(cls_name: str, graph: Graph, default_graph: Graph | None) -> str:
    """FUSEGEN_GRU for a cell with its class's default math; FUSEGEN_GRU_<digest> otherwise."""
    name = OP_PREFIX + class_token(cls_name)
    if default_graph is not None and default_graph.digest() == graph.digest():
        return name
    return f"{name}_{graph.digest().upper()}"
