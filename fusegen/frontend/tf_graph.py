"""TensorFlow graph of one cell step -> concrete IR.

The cell is traced with `tf.compat.v1.wrap_function`, which keeps every op's Python traceback
(so errors can name the user's source line) and can be pruned to evaluate any weight-only
subexpression (a split bias, a transposed kernel) to numbers. Widths here are concrete
(`Dim(0, 0, w)`); `trace.py` turns several concrete graphs into one symbolic graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fusegen.errors import FrontendError
from fusegen.ir import Dim, Graph, Node, Op, Param, Weights

# TF op types that only forward their (single) data input.
_PASS_THROUGH = {"Identity", "IdentityN", "Squeeze", "ExpandDims", "Reshape", "Cast",
                 "StopGradient", "EnsureShape", "PreventGradient"}
_UNARY = {"Neg": Op.NEG, "Sigmoid": Op.SIGMOID, "Tanh": Op.TANH, "Relu": Op.RELU,
          "Relu6": Op.RELU6, "Softsign": Op.SOFTSIGN, "Exp": Op.EXP,
          "Abs": Op.ABS, "Square": Op.SQUARE, "Sqrt": Op.SQRT, "Rsqrt": Op.RSQRT, "Log": Op.LOG}
_BINARY = {"AddV2": Op.ADD, "Add": Op.ADD, "BiasAdd": Op.ADD, "Sub": Op.SUB, "Mul": Op.MUL,
           "RealDiv": Op.DIV, "Maximum": Op.MAXIMUM, "Minimum": Op.MINIMUM}
_COMPARE = {"Greater": "gt", "GreaterEqual": "ge", "Less": "lt", "LessEqual": "le",
            "Equal": "eq", "NotEqual": "ne"}
_REDUCE = {"Mean": "mean", "Sum": "sum", "Max": "max", "Min": "max"}  # min x = -max(-x)
_SLICING = {"StridedSlice", "Slice", "GatherV2", "Unpack"}
_SKIP = {"NoOp", "Placeholder", "Const", "ReadVariableOp", "VarHandleOp"}


class UnsupportedOpError(FrontendError):
    """Ops in a cell that fusegen cannot fuse; the message names each op and its source line.

    `details` lists them one by one ("file.py:12: TensorFlow op 'Abs' (tf op 'abs')")."""

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details) if details else [message]

    @property
    def detail(self) -> str:
        return "; ".join(self.details)


@dataclass
class _Value:
    node: int | None = None  # index of an IR node (a data vector)
    const: np.ndarray | None = None  # a value known without running the cell
    compare: tuple[str, int, int] | None = None  # (cmp, a, b): a boolean a <cmp> b


class GraphReader:
    """Walks the ops of a traced cell step in creation order and emits IR nodes."""

    def __init__(self, wrapped, cell_name: str, source_file: str, num_states: int,
                 variable_names: dict[str, str]):
        self.wrapped = wrapped
        self.graph = wrapped.graph
        self.cell_name = cell_name
        self.source_file = os.path.realpath(source_file) if source_file else ""
        self.nodes: list[Node] = []
        self.params: list[Param] = []
        self.weights: Weights = {}
        self.values: dict[str, _Value] = {}
        self.num_states = num_states
        self.variable_names = variable_names  # resource placeholder op name -> variable name
        self._param_ids: dict[str, int] = {}

    # -- entry point -------------------------------------------------------------------------
    def read(self, outputs: list[tf.Tensor], state_widths: list[int]) -> tuple[Graph, Weights]:
        placeholders = [op for op in self.graph.get_operations() if op.type == "Placeholder"
                        and op.outputs[0].dtype != tf.resource]
        self._bind_placeholders(placeholders)
        self._fold_weights(outputs)
        live = _ancestors(outputs)
        problems: list[str] = []  # every unsupported op, reported together
        poisoned: set[str] = set()  # tensors downstream of an unsupported op
        for op in self.graph.get_operations():
            if op.name in self._done or op.type in _SKIP or op.name not in live:
                continue
            if any(t.name in poisoned for t in op.inputs):
                poisoned.update(t.name for t in op.outputs)
                continue
            try:
                self._read_op(op)
            except UnsupportedOpError as err:
                problems.append(err)
                poisoned.update(t.name for t in op.outputs)
        if len(problems) == 1:
            raise problems[0]
        if problems:
            raise UnsupportedOpError(
                f"cell {self.cell_name} uses {len(problems)} thing(s) fusegen cannot fuse: "
                + "; ".join(p.detail for p in problems),
                [d for p in problems for d in p.details])
        result = tuple(self._data(t, None) for t in outputs)
        graph = Graph(self.cell_name, tuple(self.nodes), tuple(self.params),
                      tuple(Dim(0, 0, w) for w in state_widths), result)
        return graph, self.weights

    def _bind_placeholders(self, placeholders) -> None:
        self._done: set[str] = set()
        x, *states = placeholders
        self.values[x.outputs[0].name] = _Value(self._emit(Op.INPUT, (), _width(x.outputs[0]), x))
        for k, st in enumerate(states):
            node = self._emit(Op.STATE, (), _width(st.outputs[0]), st, index=k)
            self.values[st.outputs[0].name] = _Value(node)

    def _fold_weights(self, outputs: list[tf.Tensor]) -> None:
        """Evaluates every tensor that does not depend on the input or the states."""
        data_ops = _downstream_of_placeholders(self.graph)
        folded = [t for op in self.graph.get_operations() if op.name not in data_ops
                  and op.type not in ("NoOp", "Placeholder", "VarHandleOp") for t in op.outputs
                  if t.dtype in (tf.float32, tf.int32, tf.int64, tf.bool)]
        if not folded:
            return
        fetch = self.wrapped.prune(feeds=[], fetches=folded)
        for t, value in zip(folded, fetch()):
            self.values[t.name] = _Value(const=np.asarray(value))
            self._done.add(t.op.name)

    # -- one op ------------------------------------------------------------------------------
    def _read_op(self, op) -> None:
        kind = op.type
        if kind in _PASS_THROUGH:
            self._pass_through(op)
        elif kind in _UNARY:
            self._set(op.outputs[0], self._emit(_UNARY[kind], (self._data(op.inputs[0], op),),
                                                _width(op.outputs[0]), op))
        elif kind in _COMPARE:
            a, b = (self._operand(t, op) for t in op.inputs[:2])
            _check_vector(self, op, op.outputs[0])
            self.values[op.outputs[0].name] = _Value(compare=(_COMPARE[kind], a, b))
        elif kind in ("SelectV2", "Select"):
            self._select(op)
        elif kind == "Pow":
            self._pow(op)
        elif kind in _REDUCE:
            self._reduce(op)
        elif kind == "SquaredDifference":
            diff = self._emit(Op.SUB, tuple(self._operand(t, op) for t in op.inputs[:2]),
                              _width(op.outputs[0]), op)
            self._set(op.outputs[0], self._emit(Op.SQUARE, (diff,), _width(op.outputs[0]), op))
        elif kind in ("Softmax", "LogSoftmax"):
            self._softmax(op)
        elif kind in _BINARY:
            self._binary(op, _BINARY[kind])
        elif kind in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            self._matmul(op)
        elif kind in ("Split", "SplitV"):
            self._split(op)
        elif kind == "ConcatV2":
            self._concat(op)
        elif kind in _SLICING:
            self._slicing(op)
        else:
            raise self.unsupported(op, f"TensorFlow op '{kind}'")

    def _pass_through(self, op) -> None:
        source = op.inputs[1] if op.type == "Reshape" else None
        if source is not None and op.outputs[0].shape.num_elements() != op.inputs[0].shape.num_elements():
            raise self.unsupported(op, "a reshape that changes the element count")
        value = self.values.get(op.inputs[0].name) if op.inputs else None
        if op.type == "Cast" and value is not None and value.compare is not None:
            if op.outputs[0].dtype != tf.float32:
                raise self.unsupported(op, f"a comparison cast to {op.outputs[0].dtype.name}")
            cmp, a, b = value.compare
            one = self._emit(Op.CONST, (), Dim(0, 0, 1), op, value=1.0)
            zero = self._emit(Op.CONST, (), Dim(0, 0, 1), op, value=0.0)
            self._set(op.outputs[0], self._emit(Op.WHERE, (a, b, one, zero),
                                                _width(op.outputs[0]), op, cmp=cmp))
            return
        if op.type == "Cast" and op.outputs[0].dtype != tf.float32:
            raise self.unsupported(op, f"a cast to {op.outputs[0].dtype.name}")
        for t_in, t_out in zip(op.inputs, op.outputs):
            _check_vector(self, op, t_out)
            self.values[t_out.name] = self.values[t_in.name]

    def _binary(self, op, kind: Op) -> None:
        a, b = (self._operand(t, op) for t in op.inputs[:2])
        width = _width(op.outputs[0])
        self._set(op.outputs[0], self._emit(kind, (a, b), width, op))

    def _compare_of(self, tensor, op) -> tuple[str, int, int]:
        value = self.values.get(tensor.name)
        if value is None or value.compare is None:
            raise self.unsupported(op, "a condition that is not one comparison of two values "
                                       "(greater, less, equal, ...)")
        return value.compare

    def _select(self, op) -> None:
        """where(a <cmp> b, x, y)."""
        cmp, a, b = self._compare_of(op.inputs[0], op)
        x, y = (self._operand(t, op) for t in op.inputs[1:3])
        self._set(op.outputs[0], self._emit(Op.WHERE, (a, b, x, y), _width(op.outputs[0]), op,
                                            cmp=cmp))

    def _pow(self, op) -> None:
        """x ** c with a constant scalar c (a data-dependent exponent has no kernel)."""
        base, exponent = op.inputs
        value = self.values.get(exponent.name)
        if value is None or value.const is None or np.asarray(value.const).size != 1:
            raise self.unsupported(op, "'Pow' with an exponent that is not a constant scalar")
        e = float(np.asarray(value.const, np.float32).reshape(()))
        self._set(op.outputs[0], self._emit(Op.POW, (self._data(base, op),),
                                            _width(op.outputs[0]), op, exponent=e))

    def _reduce(self, op) -> None:
        """mean/sum/max over the feature axis (and over batch axes of size 1)."""
        data, axes = op.inputs
        shape = data.shape.as_list()
        picked = np.asarray(self.values[axes.name].const).reshape(-1) if axes.name in self.values \
            and self.values[axes.name].const is not None else None
        if picked is None:
            raise self.unsupported(op, f"'{op.type}' over axes that are not constants")
        picked = {int(a) % max(len(shape), 1) for a in picked}
        rest = [d for k, d in enumerate(shape) if k not in picked]
        if shape and (len(shape) - 1 not in picked or any(d != 1 for d in rest)):
            raise self.unsupported(op, f"'{op.type}' over axes {sorted(picked)} of a tensor of "
                                       f"shape {shape} (only the feature axis)")
        x = self._data(data, op)
        if op.type == "Min":
            negated = self._emit(Op.NEG, (x,), _width(data), op)
            top = self._emit(Op.REDUCE, (negated,), 1, op, fn="max")
            self._set(op.outputs[0], self._emit(Op.NEG, (top,), 1, op))
            return
        self._set(op.outputs[0], self._emit(Op.REDUCE, (x,), 1, op, fn=_REDUCE[op.type]))

    def _softmax(self, op) -> None:
        """softmax(x) = exp(x - max x) / sum(exp(x - max x)), over the feature axis (TF's own
        order); log_softmax(x) = (x - max x) - log(sum(exp(x - max x)))."""
        x, width = self._data(op.inputs[0], op), _width(op.outputs[0])
        top = self._emit(Op.REDUCE, (x,), 1, op, fn="max")
        shifted = self._emit(Op.SUB, (x, top), width, op)
        e = self._emit(Op.EXP, (shifted,), width, op)
        total = self._emit(Op.REDUCE, (e,), 1, op, fn="sum")
        if op.type == "Softmax":
            out = self._emit(Op.DIV, (e, total), width, op)
        else:
            out = self._emit(Op.SUB, (shifted, self._emit(Op.LOG, (total,), 1, op)), width, op)
        self._set(op.outputs[0], out)

    def _matmul(self, op) -> None:
        x, w = op.inputs
        adj_x = _attr(op, "transpose_a") or _attr(op, "adj_x")
        adj_w = _attr(op, "transpose_b") or _attr(op, "adj_y")
        weight = self.values[w.name].const
        if weight is None or adj_x or x.name not in self.values or self.values[x.name].node is None:
            raise self.unsupported(op, "a matmul that is not (vector @ weight matrix)")
        weight = weight.T if adj_w else weight
        if weight.ndim != 2:
            raise self.unsupported(op, f"a matmul with a weight of rank {weight.ndim}")
        xi = self._data(x, op)
        wi = self._param(w if not adj_w else w.name + "^T", weight, op)
        self._set(op.outputs[0], self._emit(Op.MATMUL, (xi, wi), Dim(0, 0, weight.shape[1]), op,
                                            has_bias=False, has_acc=False))

    def _split(self, op) -> None:
        value = op.inputs[1] if op.type == "Split" else op.inputs[0]
        axis_tensor = op.inputs[0] if op.type == "Split" else op.inputs[2]
        self._check_last_axis(op, value, axis_tensor)
        src, start = self._data(value, op), 0
        for out in op.outputs:
            width = _width(out)
            self._set(out, self._emit(Op.SLICE, (src,), Dim(0, 0, width), op, start=Dim(0, 0, start)))
            start += width

    def _concat(self, op) -> None:
        *parts, axis_tensor = op.inputs
        self._check_last_axis(op, op.outputs[0], axis_tensor)
        inputs = tuple(self._operand(t, op) for t in parts)
        self._set(op.outputs[0], self._emit(Op.CONCAT, inputs, _width(op.outputs[0]), op))

    def _slicing(self, op) -> None:
        """Strided slices, gathers, unpacks: found by running the op on an index vector."""
        source = op.inputs[0]
        width = _width(source)
        probe = self.wrapped.prune(feeds=[source], fetches=list(op.outputs))
        index = np.arange(width, dtype=np.float32).reshape(source.shape.as_list())
        for out, picked in zip(op.outputs, probe(tf.constant(index))):
            picked = np.asarray(picked).reshape(-1).astype(int)
            if picked.size == 0 or np.any(np.diff(picked) != 1):
                raise self.unsupported(op, "a slice that is not one contiguous range")
            node = self._emit(Op.SLICE, (self._data(source, op),), Dim(0, 0, picked.size), op,
                              start=Dim(0, 0, int(picked[0])))
            self._set(out, node)

    # -- helpers -----------------------------------------------------------------------------
    def _check_last_axis(self, op, tensor, axis_tensor) -> None:
        axis = int(self.values[axis_tensor.name].const)
        rank = tensor.shape.rank
        if axis not in (rank - 1, -1):
            raise self.unsupported(op, f"'{op.type}' along axis {axis} (only the feature axis)")

    def _operand(self, tensor, op) -> int:
        """A data node, or a weight/constant operand made into a PARAM or CONST leaf."""
        value = self.values.get(tensor.name)
        if value is None:
            raise self.unsupported(op, f"an input produced by '{tensor.op.type}'")
        if value.node is not None:
            return value.node
        array = np.asarray(value.const, dtype=np.float32)
        if array.size == 1:
            return self._emit(Op.CONST, (), Dim(0, 0, 1), op, value=float(array.reshape(())))
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 1:
            raise self.unsupported(op, f"an elementwise operand of shape {array.shape}")
        return self._emit(Op.PARAM, (), Dim(0, 0, array.size), op,
                          index=self._param_index(tensor, array, op))

    def _param(self, key, array: np.ndarray, op) -> int:
        index = self._param_index(key, array, op)
        return self._emit(Op.PARAM, (), Dim(0, 0, array.shape[-1]), op, index=index)

    def _param_index(self, tensor, array: np.ndarray, op) -> int:
        key = tensor if isinstance(tensor, str) else tensor.name
        if key not in self._param_ids:
            origin = self._origin(self.graph.get_tensor_by_name(key.removesuffix("^T")))
            name = _param_name(origin + ("_t" if key.endswith("^T") else ""),
                               [p.name for p in self.params])
            self._param_ids[key] = len(self.params)
            self.params.append(Param(name, tuple(Dim(0, 0, d) for d in array.shape)))
            self.weights[name] = np.ascontiguousarray(array, dtype=np.float32)
        return self._param_ids[key]

    def _origin(self, tensor) -> str:
        """The name of the variable a weight tensor was computed from ("w" for constants)."""
        op = tensor.op
        while op.inputs and op.type != "ReadVariableOp":
            op = max(op.inputs, key=lambda t: t.shape.num_elements() or 0).op
        if op.type == "ReadVariableOp":
            return self.variable_names.get(op.inputs[0].op.name, "w")
        return "const"

    def _data(self, tensor, op) -> int:
        value = self.values.get(tensor.name)
        if value is None or value.node is None:
            where = op if op is not None else tensor.op
            raise self.unsupported(where, "a value that does not depend on the input or state "
                                          "where a vector is expected")
        return value.node

    def _set(self, tensor, node: int) -> None:
        _check_vector(self, tensor.op, tensor)
        self.values[tensor.name] = _Value(node)

    def _emit(self, kind: Op, inputs: tuple[int, ...], width, op, **attrs) -> int:
        width = width if isinstance(width, Dim) else Dim(0, 0, width)
        self.nodes.append(Node(kind, inputs, width, tuple(sorted(attrs.items())),
                               self.location(op)))
        return len(self.nodes) - 1

    def location(self, op) -> str:
        """The user's source line that created `op` (innermost frame in the cell's file)."""
        frames = list(op.traceback or [])
        for frame in reversed(frames):
            if self.source_file and os.path.realpath(frame.filename) == self.source_file:
                return f"{os.path.basename(frame.filename)}:{frame.lineno}"
        for frame in reversed(frames):
            if not any(s in frame.filename for s in ("/tensorflow/", "/keras/src/ops", "/keras/src/backend")):
                return f"{os.path.basename(frame.filename)}:{frame.lineno}"
        return ""

    def unsupported(self, op, what: str) -> UnsupportedOpError:
        where = self.location(op) or "unknown location"
        return UnsupportedOpError(f"{where}: cell {self.cell_name} uses {what} (tf op "
                                  f"'{op.name}'), which fusegen cannot fuse",
                                  [f"{where}: {what} (tf op '{op.name}')"])


def _width(tensor) -> int:
    shape = tensor.shape.as_list()
    if None in shape:
        raise ValueError(f"tensor {tensor.name} has an unknown shape {shape}")
    return int(np.prod(shape[-1:])) if shape else 1


def _check_vector(reader: GraphReader, op, tensor) -> None:
    shape = tensor.shape.as_list()
    if len(shape) > 2 or (len(shape) == 2 and shape[0] != 1):
        raise reader.unsupported(op, f"a tensor of shape {shape} (only batch-1 vectors)")


def _attr(op, name: str) -> bool:
    try:
        return bool(op.get_attr(name))
    except ValueError:
        return False


def _ancestors(tensors) -> set[str]:
    """Names of the ops the given tensors depend on (dead code is never read)."""
    seen: set[str] = set()
    stack = [t.op for t in tensors]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen.add(op.name)
            stack.extend(t.op for t in op.inputs)
    return seen


def _downstream_of_placeholders(graph) -> set[str]:
    """Names of ops whose value depends on a (non-resource) placeholder."""
    tainted: set[str] = set()
    for op in graph.get_operations():  # creation order is a topological order
        if op.type == "Placeholder" and op.outputs[0].dtype != tf.resource:
            tainted.add(op.name)
        elif any(t.op.name in tainted for t in op.inputs):
            tainted.add(op.name)
    return tainted


def _param_name(key: str, taken: list[str]) -> str:
    base = key.rsplit("/", 1)[-1]
    base = "".join(c if c.isalnum() else "_" for c in base).strip("_").lower() or "w"
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name
