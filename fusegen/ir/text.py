"""Reads `Graph.text()` back: the `<stem>.ir.txt` a generated kernel directory carries.

`fusegen bench` gets a model's ops from a .tflite and their math from the kernel directory, so it
needs the graph without the Keras cell. Everything but source locations round-trips:
`parse_graph(g.text()).text() == g.text()`.
"""

from __future__ import annotations

import ast
import re

from fusegen.ir.dims import Dim
from fusegen.ir.graph import Graph, Node, Param
from fusegen.ir.ops import Op
from fusegen.ir.verify import IRError, verify

_PARAM = re.compile(r"param (\d+) (\w+): \((.*)\)$")
_STATE = re.compile(r"state (\d+): (.+)$")
_NODE = re.compile(r"%(\d+) = (\w+)\(([^)]*)\)(.*) : (.+?)( \[hoisted\])?$")
_ATTR = re.compile(r" (\w+)=")
# Attributes whose value is a Dim (written as "2*U + 3"); every other value is a Python literal.
_DIM_ATTRS = frozenset({"start"})


def parse_dim(text: str) -> Dim:
    """'4*U', 'U + I', '2*U + -1', '0' -> Dim."""
    u = i = c = 0
    for term in text.split(" + "):
        coef, _, name = term.strip().rpartition("*") if "*" in term else ("1", "", term.strip())
        if name == "U":
            u += int(coef)
        elif name == "I":
            i += int(coef)
        else:
            c += int(term)
    return Dim(u, i, c)


def parse_graph(text: str) -> Graph:
    """The graph `Graph.text()` printed; raises IRError on anything else."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or not lines[0].startswith("cell "):
        raise IRError("IR text must start with 'cell <name>'")
    params, states, nodes, hoisted, outputs = [], [], [], set(), None
    for number, line in enumerate(lines[1:], start=2):
        try:
            if line.startswith("param "):
                params.append(_param(line))
            elif line.startswith("state "):
                states.append(parse_dim(_match(_STATE, line).group(2)))
            elif line.startswith("%"):
                if _node(line, nodes):
                    hoisted.add(len(nodes) - 1)
            elif line.startswith("return "):
                outputs = tuple(int(t.strip().lstrip("%")) for t in line[7:].split(","))
            else:
                raise ValueError("unknown line")
        except (ValueError, KeyError) as e:
            raise IRError(f"IR text line {number}: {line!r}: {e}") from e
    if outputs is None:
        raise IRError("IR text has no 'return' line")
    return verify(Graph(lines[0][5:], tuple(nodes), tuple(params), tuple(states), outputs,
                        frozenset(hoisted)))


def _match(pattern: re.Pattern[str], line: str) -> re.Match[str]:
    match = pattern.match(line)
    if match is None:
        raise ValueError("malformed")
    return match


def _param(line: str) -> Param:
    _, name, shape = _match(_PARAM, line).groups()
    return Param(name, tuple(parse_dim(d) for d in shape.split(", ")))


def _node(line: str, nodes: list[Node]) -> bool:
    """Appends the node of `line`; returns whether it is hoisted."""
    index, op, args, attrs, width, hoisted = _match(_NODE, line).groups()
    if int(index) != len(nodes):
        raise ValueError(f"node %{index} out of order")
    inputs = tuple(int(a.strip().lstrip("%")) for a in args.split(",") if a.strip())
    nodes.append(Node(Op(op), inputs, parse_dim(width), _attrs(attrs)))
    return hoisted is not None


def _attrs(text: str) -> tuple[tuple[str, object], ...]:
    parts = _ATTR.split(text)  # ["", key, value, key, value, ...]
    pairs = zip(parts[1::2], (v.strip() for v in parts[2::2]), strict=True)
    return tuple(sorted((k, parse_dim(v) if k in _DIM_ATTRS else _literal(v)) for k, v in pairs))


def _literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return float(text)  # inf, -inf, nan print bare
