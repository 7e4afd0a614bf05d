"""The IR and its passes on their own: what each pass must produce, and what the verifier
rejects. Numerics of the whole pipeline are covered by test_cells.py."""

from __future__ import annotations

from dataclasses import replace

import keras
import pytest
from cells_catalog import CELLS

from fusegen.frontend.trace import random_weights, trace_symbolic
from fusegen.ir import Dim, IRError, Op, verify
from fusegen.ir.bound import BoundGraph
from fusegen.ir.dims import solve
from fusegen.lower import class_factory, lower_cell
from fusegen.passes import PIPELINE, run_pipeline


def _ops(graph):
    return [n.op for n in graph.nodes]


def _lowered(name):
    return lower_cell(CELLS[name]).graph


def test_dims_solve_linear_widths():
    # widths of 3*U + I + 2 at TRACE_SIZES (7,5) (13,5) (7,11) (10,9): 3*7+5+2 = 28, ...
    assert solve((28, 46, 34, 41)) == Dim(3, 1, 2)
    assert solve((7, 13, 7, 11)) is None  # 11 != 10 at the 4th size: not linear in U and I


def test_lstm_input_projection_is_hoisted_and_recurrent_matmul_accumulates():
    graph = _lowered("lstm")
    mats = [n for n in graph.nodes if n.op is Op.MATMUL]
    assert len(mats) == 2
    hoisted = [graph.nodes[i] for i in graph.hoisted]
    assert len(hoisted) == 1 and hoisted[0].attr("has_bias")  # x @ W + b, before the loop
    recurrent = next(n for n in mats if not n.attr("has_bias"))
    assert recurrent.attr("has_acc")  # h @ U accumulates onto the hoisted projection
    adds = [n for n in graph.nodes if n.op is Op.ADD]  # only c = f * c + i * g is left
    assert len(adds) == 1 and all(graph.nodes[j].op is Op.MUL for j in adds[0].inputs)


def test_concat_matmul_is_split_so_the_input_half_can_be_hoisted():
    graph = _lowered("minimal_gated")
    assert Op.CONCAT not in _ops(graph)
    # x @ gate_kernel[:I] and x @ kernel are merged into one hoisted matmul over [I, 2U].
    hoisted = [graph.nodes[i] for i in graph.hoisted]
    assert len(hoisted) == 1 and hoisted[0].width == Dim(2, 0, 0)


def test_activation_patterns_are_named():
    assert Op.HARD_SIGMOID in _ops(_lowered("peephole_lstm"))
    assert Op.RELU6 not in _ops(_lowered("peephole_lstm"))
    exotic = _ops(_lowered("exotic"))
    assert Op.SILU in exotic and Op.CLIP in exotic and Op.SOFTSIGN in exotic
    assert Op.CLIP in _ops(_lowered("indrnn"))


def test_same_math_same_name_other_math_other_name():
    assert lower_cell(CELLS["gru"]).op_name == "FUSEGEN_GRU"
    other = lower_cell(CELLS["gru_reset_before"]).op_name
    assert other.startswith("FUSEGEN_GRU_") and len(other) == len("FUSEGEN_GRU_") + 8
    tanh = lower_cell(class_factory(keras.layers.SimpleRNNCell, {})).op_name
    relu = lower_cell(class_factory(keras.layers.SimpleRNNCell, {"activation": "relu"})).op_name
    assert tanh == "FUSEGEN_SIMPLE_RNN" and relu != tanh


def test_every_pass_keeps_the_graph_valid():
    graph = trace_symbolic(CELLS["exotic"])
    bound = BoundGraph(graph, random_weights(graph, 7, 5), 7, 5)
    stages = []
    run_pipeline(bound, dump=lambda name, b: stages.append(name))
    assert len(stages) == len(PIPELINE)


def test_verifier_rejects_a_broken_graph():
    graph = trace_symbolic(CELLS["simple_rnn"])
    bad_width = replace(graph.nodes[-1], width=Dim(2, 0, 0))
    with pytest.raises(IRError, match="tanh"):
        verify(replace(graph, nodes=graph.nodes[:-1] + (bad_width,)))
    forward_ref = replace(graph.nodes[-1], inputs=(len(graph.nodes),))
    with pytest.raises(IRError, match="not earlier nodes"):
        verify(replace(graph, nodes=graph.nodes[:-1] + (forward_ref,)))
