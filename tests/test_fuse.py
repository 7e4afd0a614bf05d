"""Fused elementwise tails (fusegen/passes/fuse.py): which statements share one loop, what they
store, and the C a fused step becomes. That the fused kernels compute the same values is checked
where every kernel is: the float32 cores against Keras and the twin (test_cells.py), the int8
cores bit for bit against the integer twin (test_int8_cells.py), and on the device against the
host (test_firmware_qemu.py, benchmarks/device_bench.py)."""

from __future__ import annotations

from pathlib import Path

from fusegen.codegen import kernel_files
from fusegen.codegen.core import fusable_f32
from fusegen.ir.text import parse_graph
from fusegen.passes.fuse import elementwise_groups
from fusegen.schedule.plan import make_plan

GOLDEN = Path(__file__).resolve().parent / "golden"


def _groups(graph):
    plan = make_plan(graph)
    steps = [j if fusable_f32(graph, j) else None for j in plan.step_nodes]
    return plan, elementwise_groups(graph, steps)


def test_gru_tail_is_one_loop_storing_only_the_new_state():
    graph = parse_graph((GOLDEN / "gru" / "fusegen_gru.ir.txt").read_text())
    plan, groups = _groups(graph)
    (group,) = groups
    assert group.nodes == tuple(range(14, 22)) + (23, 24, 25)
    # %15 is read twice later in the loop, %20 once: only the new state leaves the registers.
    assert group.stored == {25}
    files = kernel_files(graph, "FUSEGEN_GRU")
    core = files["fusegen_gru_core.c"]
    assert "const float v15 = fg_f32_sigmoid(v14);" in core
    assert "next[i] = v25;" in core
    assert "fg_binary_f32" not in core and "fg_unary_f32" not in core
    assert "fg_copy_f32(slot" not in core  # no per-step copy of the state


def test_a_new_width_starts_a_new_loop_and_sliced_values_are_stored():
    # %8 reads units i and i + U of %5: another loop, after %5 is stored whole.
    graph = parse_graph("""cell Shifted
  param 0 kernel: (I, 2*U)
  state 0: U
  %0 = input() : I
  %1 = state() index=0 : U
  %2 = param() index=0 : 2*U
  %3 = matmul(%0, %2) has_acc=False has_bias=False : 2*U
  %4 = tanh(%3) : 2*U
  %5 = sigmoid(%4) : 2*U
  %6 = slice(%5) start=U : U
  %7 = slice(%5) start=0 : U
  %8 = mul(%6, %7) : U
  %9 = add(%8, %1) : U
  return %9, %9""")
    _, groups = _groups(graph)
    assert [g.nodes for g in groups] == [(4, 5), (8, 9)]
    assert groups[0].stored == {5}  # read through its slices by the next loop
    assert groups[1].stored == {9}


def test_matmul_between_elementwise_ops_ends_the_loop():
    graph = parse_graph((GOLDEN / "lstm_int8" / "fusegen_lstm.ir.txt").read_text())
    _, groups = _groups(graph)
    (group,) = groups
    assert group.nodes == (12, 13, 14, 15, 16, 17, 18, 19, 20)
    assert group.stored == {17, 20}  # the cell state and h: both go straight to `next`


def test_int8_loop_has_a_power_of_two_body_a_right_shift_one_and_a_general_one():
    graph = parse_graph((GOLDEN / "lstm_int8" / "fusegen_lstm.ir.txt").read_text())
    core = kernel_files(graph, "FUSEGEN_LSTM", ("f32", "s8"))["fusegen_lstm_core.c"]
    s8 = core[core.index("_eval_s8("):]
    # a sum's operands by powers of two with -12 <= shift <= 2 (sum_ok), products by any
    assert "const int p2_12 = r14.p2 && r16.p2 && r17a.sum_ok && r17b.sum_ok && r20.p2;" in s8
    # products in the right-shift form, sums by powers of two
    assert ("const int right_12 = r14.right_ok && r16.right_ok && r17a.sum_ok && r17b.sum_ok && "
            "r20.right_ok;") in s8
    assert "if (p2_12) {" in s8 and "} else if (right_12) {" in s8
    assert s8.count("fg_s16_mul_p2(") == 3 and s8.count("fg_s16_mul_any(") == 3
    assert s8.count("fg_s16_mul_right(") == 3 and s8.count("fg_s16_binary_p2(") == 2
    assert "(next + units)[i] = (int16_t)v17;" in s8
    assert "fg_lut_s16(" not in s8 and "fg_copy_s16(slot" not in s8
