"""Full-integer int8 kernels of every catalog cell: C equals the integer twin, the twin is close
to float Keras.

Each (cell, size) is traced, quantized with calibration data and compiled once (cached); the
tests then compare
  * the generated `_eval_s8` (host build, house warnings) with the integer twin: np.array_equal
    on y and on the final int16 states, for two chunk sizes of the hoisted projection;
  * the twin's dequantized output with Keras float32, as a mean absolute error in output steps.

The accuracy bound, and why. Two errors are inherent in the format and not the kernel's: int8 x
and int8 weights (per tensor by default). Their effect is measured directly: the float twin run
on the dequantized x with the dequantized weights (QuantizedCell.dequantized(); 0.1 to 0.55
output steps on these cells, most for ExoticCell, whose state integrates its errors). On top of
that, y is rounded to int8 (a uniform rounding error: 0.25 steps on average), and the kernel
computes in int16 with 129-entry tables and int8 matmul operands (measured: under 0.15 steps for
gating cells, up to 0.3 for ExoticCell; 513-entry tables changed the mean error by under 0.02
steps except on ExoticCell, 0.05). So: mean error <= (format error) + 0.5 steps, and never
above 2. Per-channel weights (test_per_channel_weights) are held to the same bound.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

from cells_catalog import CELLS, IndRNNCell, random_layer
from fusegen.frontend.trace import trace_concrete, trace_symbolic
from fusegen.ir import Op
from fusegen.ir.bound import BoundGraph
from fusegen.abi import op_name
from fusegen.passes import run_pipeline
from fusegen.quantize import QuantizedCell, quantize_cell
from fusegen.host.core_s8 import HostCoreS8
from fusegen.quantize.lut import LUT_SIZE
from fusegen.abi import clamp_row, dtype_abi, row_clamp
from fusegen.schedule.program import Lut, MatMul
from fusegen.quantize.scales import asymmetric_int8
from fusegen.reference import float_interp, int_interp

SIZES = [(3, 5, 7), (8, 16, 12), (12, 32, 29)]  # (input_size, units, timesteps)
CALIBRATION_SEQUENCES, TEST_SEQUENCES, EXACT_SEQUENCES = 16, 8, 2
EXTRA_STEPS = 0.5  # mean error the kernel may add to the format's, in output steps
MAX_STEPS = 2.0
ACCURACY: dict[str, tuple[float, float, float]] = {}  # test id -> (mae, format mae, step)


@functools.cache
def _symbolic(cell: str):
    return trace_symbolic(CELLS[cell])


@dataclass(frozen=True)
class Case:
    qcell: QuantizedCell
    core: HostCoreS8
    x: np.ndarray  # float [N, T, I] test sequences
    x_q: np.ndarray  # the same, int8
    keras: np.ndarray  # float Keras outputs [N, T, W]
    format_only: np.ndarray  # the float twin, dequantized x and weights [N, T, W]


def _lower(cell_name: str, layer, input_size: int) -> tuple[BoundGraph, str]:
    """What lower_cell does, with the size-independent symbolic trace cached per cell."""
    cell = layer.cell
    _, weights = trace_concrete(cell, input_size)
    bound = run_pipeline(BoundGraph(_symbolic(cell_name), weights, cell.units, input_size))
    return bound, op_name(type(cell).__name__, bound.graph, None)


@functools.cache
def case(cell: str, size: tuple[int, int, int], go_backwards: bool = False,
         per_channel: bool = False) -> Case:
    input_size, units, timesteps = size
    seed = sorted(CELLS).index(cell) * 10 + SIZES.index(size)
    layer, _ = random_layer(cell, input_size, units, timesteps, return_sequences=True,
                            go_backwards=go_backwards, seed=seed)
    rng = np.random.default_rng(seed + 100)
    x_cal = rng.uniform(-1.5, 1.5, (CALIBRATION_SEQUENCES, timesteps, input_size))
    x = rng.uniform(-1.5, 1.5, (TEST_SEQUENCES, timesteps, input_size)).astype(np.float32)
    bound, name = _lower(cell, layer, input_size)
    qcell = quantize_cell(bound, x_cal.astype(np.float32),
                          asymmetric_int8(x_cal.min(), x_cal.max()), per_channel=per_channel)
    x_q = qcell.quantize_input(x)
    scale, zero_point = qcell.input_qparams
    x_dq = ((x_q.astype(np.float32) - zero_point) * scale).astype(np.float32)
    fake = qcell.dequantized()
    format_only = np.stack([float_interp.run(fake, s, return_sequences=True,
                                             go_backwards=go_backwards)[0] for s in x_dq])
    keras = np.asarray(layer(x))  # with go_backwards: in processing order, as the twin
    return Case(qcell, HostCoreS8(qcell, name), x, x_q, keras, format_only)


def _ids(size) -> str:
    return "I{}U{}T{}".format(*size)


@pytest.fixture(scope="module", autouse=True)
def accuracy_report():
    """Writes the accuracy table (mean abs error per cell) to build/int8_accuracy.txt."""
    yield
    if not ACCURACY:
        return
    lines = [f"{'test':36s} {'mae':>9s} {'steps':>6s} {'format':>7s}"]
    for key, (mae, format_mae, step) in sorted(ACCURACY.items()):
        lines.append(f"{key:36s} {mae:9.5f} {mae / step:6.3f} {format_mae / step:7.3f}")
    path = Path(__file__).resolve().parent.parent / "build" / "int8_accuracy.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("size", SIZES, ids=_ids)
@pytest.mark.parametrize("cell", list(CELLS))
def test_c_core_equals_integer_twin(cell, size, return_sequences):
    c = case(cell, size)
    q = c.qcell
    for k, seq in enumerate(c.x_q[:EXACT_SEQUENCES]):
        y_twin, states_twin = int_interp.run(q.program, q.inputs, q.sizes, seq, return_sequences)
        for chunk in (4, 1) if k == 0 else (4,):
            y_c, states_c = c.core.run(seq, return_sequences, max_chunk=chunk)
            assert y_c.dtype == np.int8
            assert np.array_equal(y_c, y_twin), f"sequence {k}, chunk {chunk}"
            assert np.array_equal(states_c, np.concatenate(states_twin)), f"sequence {k} states"


def _check_accuracy(c: Case, key: str, return_sequences: bool) -> None:
    y = c.qcell.dequantize_output(c.qcell.run(c.x_q, return_sequences))
    keras = c.keras if return_sequences else c.keras[:, -1]
    fake = c.format_only if return_sequences else c.format_only[:, -1]
    step = c.qcell.output_qparams[0]
    mae = float(np.mean(np.abs(y - keras)))
    format_mae = float(np.mean(np.abs(fake - keras)))
    ACCURACY[f"{key}-{'seq' if return_sequences else 'last'}"] = (mae, format_mae, step)
    assert mae <= min(format_mae + EXTRA_STEPS * step, MAX_STEPS * step), (
        f"mean abs error {mae:.5f} = {mae / step:.2f} output steps "
        f"(int8 x and weights alone: {format_mae / step:.2f})")


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("size", SIZES, ids=_ids)
@pytest.mark.parametrize("cell", list(CELLS))
def test_integer_twin_is_close_to_keras(cell, size, return_sequences, request):
    if (cell, size, return_sequences) == ("lstmp", SIZES[1], False):
        # 1.07 steps over the format's 0.27 on the last step of 4 outputs x 8 sequences (the
        # sequence test of the same cell: 0.61): 5 Keras outputs lie past the int8 output range
        # calibrated on 16 other sequences (LSTMP's output is a linear projection, bounded by
        # no activation) and are clipped: sequence 1's last step is 4.1 steps off, the other
        # seven 0.4-1.0. Calibration coverage, not the kernel (C equals the twin; the format
        # error does not clip); README, int8 calibration.
        request.applymarker(pytest.mark.xfail(reason="LSTMP outputs past the calibrated range "
                                              "are clipped (last output at U16)", strict=False))
    _check_accuracy(case(cell, size), f"{cell}-{_ids(size)}", return_sequences)


@pytest.mark.parametrize("cell", list(CELLS))
def test_per_channel_weights(cell):
    """The same core with a (multiplier, shift) per output channel: equal to the twin, as
    accurate as per-tensor weights (measured at this size: per-tensor adds under 0.01 output
    steps of mean error, 0.06 on ExoticCell), and two int32 qparams per channel larger."""
    c = case(cell, SIZES[-1], per_channel=True)
    q = c.qcell
    assert q.per_channel
    seq = c.x_q[0]
    y_twin, states_twin = int_interp.run(q.program, q.inputs, q.sizes, seq, True)
    y_c, states_c = c.core.run(seq, True, max_chunk=4)
    assert np.array_equal(y_c, y_twin) and np.array_equal(states_c, np.concatenate(states_twin))
    for return_sequences in (True, False):
        _check_accuracy(c, f"{cell}-{_ids(SIZES[-1])}-per_channel", return_sequences)
    per_tensor = case(cell, SIZES[-1]).qcell
    graph, sizes = q.bound.graph, q.sizes
    channels = sum(graph.nodes[s.node].width(*sizes) for s in q.program.pre + q.program.step
                   if isinstance(s, MatMul))
    assert q.inputs.qparams.size == per_tensor.inputs.qparams.size + 2 * channels


@pytest.mark.parametrize("cell", ["lstm", "exotic"])
def test_go_backwards(cell):
    c = case(cell, SIZES[1], go_backwards=True)
    q = c.qcell
    seq = c.x_q[0]
    y_twin, _ = int_interp.run(q.program, q.inputs, q.sizes, seq, True, go_backwards=True)
    y_c, _ = c.core.run(seq, True, go_backwards=True, max_chunk=3)
    assert np.array_equal(y_c, y_twin)
    y = q.dequantize_output(q.run(c.x_q, True, go_backwards=True))
    step = q.output_qparams[0]
    assert np.mean(np.abs(y - c.keras)) <= MAX_STEPS * step


@pytest.mark.parametrize("cell", list(CELLS))
def test_op_inputs_follow_opdef(cell):
    """The arrays the converter writes have the types and shapes abi.py defines and
    the generated kernel checks: params as the float op's ([N, K] matrices), then qparams and
    luts sized as the plan computes them."""
    c = case(cell, SIZES[0])
    q = c.qcell
    inputs = q.op_inputs()
    abi = dtype_abi("s8")
    spec = [t.numpy for t in abi.param_types(q.program.param_roles, len(q.bound.graph.params))]
    spec += [d.dtype for d in abi.extra_inputs]
    assert [a.dtype for a in inputs] == [np.dtype(d) for d in spec]
    float_params = [p.T if p.ndim == 2 else p for p in q.bound.param_values()]
    assert [a.shape for a in inputs[:-2]] == [p.shape for p in float_params]
    plan = c.core.plan(timesteps=SIZES[0][2])
    assert inputs[-2].shape == (plan.qparam_count,)
    assert inputs[-1].shape == (q.program.lut_count, LUT_SIZE)
    assert not q.per_channel and inputs[-2][0] == 0  # per-tensor weights by default


def test_lstm_gates_share_their_tables():
    """LSTM's i, f, o sigmoids read slices of one matmul output: one table (and one output
    scale) for the three, one for tanh of the same slices, one for tanh(c)."""
    q = case("lstm", SIZES[0]).qcell
    graph = q.bound.graph
    luts = [s for s in q.program.step if isinstance(s, Lut)]
    sigmoids = [s for s in luts if graph.nodes[s.node].op is Op.SIGMOID]
    assert len(luts) == 5 and len(sigmoids) == 3 and q.program.lut_count == 3
    assert len({s.table for s in sigmoids}) == 1
    assert len({q.scales[s.node] for s in sigmoids}) == 1
    assert q.inputs.luts.shape == (3, LUT_SIZE)


@pytest.mark.parametrize("cell", ["lstm", "gru_reset_before", "exotic"])
def test_c_core_under_undefined_behaviour_sanitizer(cell):
    """The same core built with -fsanitize=undefined (aborting on the first report), on data and
    on inputs pinned at the int8 limits, which drive every saturation path."""
    c = case(cell, SIZES[1])
    q = c.qcell
    core = HostCoreS8(q, f"FUSEGEN_UBSAN_{cell.upper()}",
                      extra_flags=("-fsanitize=undefined", "-fno-sanitize-recover=all"))
    for seq in (c.x_q[0], np.full_like(c.x_q[0], 127), np.full_like(c.x_q[0], -128)):
        y_twin, _ = int_interp.run(q.program, q.inputs, q.sizes, seq, True)
        assert np.array_equal(core.run(seq, True)[0], y_twin)


def _body(q: QuantizedCell) -> str:
    """Which body of the step's fused loops the generated core runs for these qparams: "p2",
    "right" or "any" (the conditions of fg_s16_rescale and s8.py's flags, for the step's
    products and rescaled sums together)."""
    from fusegen.schedule.program import Binary, Mul

    def pair(r) -> tuple[int, int]:
        return tuple(int(q.inputs.qparams[q.program.offset(n)(*q.sizes)])
                     for n in (r.multiplier, r.shift))

    def p2(r, bound_log2: int) -> bool:
        m, s = pair(r)
        return m == 2 ** 30 and (1 <= s <= 30 - bound_log2 or -29 <= s <= 0)

    products = [s.scale for s in q.program.step if isinstance(s, Mul)]
    sums = [r for s in q.program.step if isinstance(s, Binary) for r in (s.a_scale, s.b_scale)]
    if all(p2(r, 30) for r in products) and all(p2(r, 15) for r in sums):
        return "p2"
    if (all(pair(r)[0] >= 0 and -31 <= pair(r)[1] <= -2 for r in products)
            and all(p2(r, 15) for r in sums)):
        return "right"
    return "any"


@pytest.mark.parametrize("cell", ["indrnn", "peephole_lstm"])
def test_products_by_a_parameter_vector_run_the_right_shift_body(cell):
    """IndRNN's u * h and the peephole's w * c have a parameter's scale, not a power of two: at
    every size (units 5, 16 and 32) the fused loop takes the right-shift body
    (fg_s16_mul_right), so test_c_core_equals_integer_twin checks that body against the twin;
    LSTM's products stay on the power-of-two body."""
    for size in SIZES:
        assert _body(case(cell, size).qcell) == "right", size
    assert _body(case("lstm", SIZES[0]).qcell) == "p2"


def test_exact_clamp_finds_the_lookups_that_are_clamps():
    """exact_clamp compares the exact integer function (f(x * s_in) / s_out rounded, saturated)
    with clamp(x, lo, hi) on all 65,536 int16 inputs; the bounds here are worked by hand."""
    from fusegen.quantize.quantizer import exact_clamp

    s = 2.0 ** -13
    relu = float_interp.NUMPY.unary[Op.RELU]
    assert exact_clamp(relu, s, s) == (0, 32767)
    assert exact_clamp(relu, s, s / 2) is None  # 2 * relu(x): slope 2, no clamp
    assert exact_clamp(lambda v: np.clip(v, -2.0, 2.0), s, s) == (-16384, 16384)  # 2 / 2^-13
    assert exact_clamp(float_interp.NUMPY.unary[Op.RELU6], 2.0 ** -12, 2.0 ** -12) == (0, 24576)
    assert exact_clamp(float_interp.NUMPY.unary[Op.RELU6], s, s) == (0, 32767)  # 6 saturates
    assert exact_clamp(lambda v: np.clip(v, 0.3, 0.3), s, s) == (2458, 2458)  # round(0.3 * 2^13)
    assert exact_clamp(float_interp.NUMPY.unary[Op.SIGMOID], s, s) is None
    assert exact_clamp(lambda v: v + s, s, s) is None  # x + 1: no clamp


def test_relu_runs_as_an_exact_clamp_where_the_table_was_one_off():
    """The behaviour change of the clamp lookups: relu's table at equal scales stores its top
    knot 32768 as 32767, so the lookup gave x - 1 for the 255 inputs 32513..32767 and x
    everywhere else on x >= 0; the clamp gives x on all of them. IndRNN at 16 and 32 units runs
    relu and clip as clamps (clamp rows; clip's bounds 0..16384 are its upper limit 2 at the
    scale 2^-13), and the twin computes clamp, not table, on exactly those inputs."""
    from fusegen.quantize.lut import make_lut

    x = np.arange(-32768, 32768)
    s = 2.0 ** -13
    table = int_interp.lut_lookup(x, make_lut(float_interp.NUMPY.unary[Op.RELU], s, s))
    off = np.flatnonzero(table != np.maximum(x, 0))
    assert np.array_equal(x[off], np.arange(32513, 32768))
    assert np.array_equal(table[off], x[off] - 1)
    for size in SIZES[1:]:
        q = case("indrnn", size).qcell
        luts = [s for s in q.program.step if isinstance(s, Lut)]
        ops = [q.bound.graph.nodes[s.node].op for s in luts]
        assert ops == [Op.RELU, Op.CLIP] and all(s.clamp for s in luts)
        got = [row_clamp(q.inputs.luts[s.table]) for s in luts]
        assert got == [(0, 32767), (0, 16384)], size


@pytest.mark.parametrize("rows", [
    # relu's row, clip's row: a clamp's (lo, hi), or None for the table (the functions' own)
    ((-3000, 9000), (500, 20000)),  # clamps: one composed clamp to 500..9000
    ((-3000, 9000), None),  # mixed: relu's clamp, clip's table, picked per value
    (None, (2000, 4000)),  # mixed the other way
    (None, None),  # tables only
], ids=["composed", "relu_clamp_clip_table", "relu_table_clip_clamp", "tables"])
def test_clamp_rows_are_data_every_body_follows_them(rows):
    """Whether a lookup runs as a clamp is data, the luts row the generated core reads at run
    time: whatever mix a file holds, C equals the twin. The bounds here are not the quantizer's
    (relu is no clamp to -3000..9000), so a body that ran a clamp row's table, or a clamp on a
    table row, would differ from the twin; with both clamp rows, relu then clip run as one clamp
    to 500..9000 (s8.py composed_clamps)."""
    import copy
    from dataclasses import replace as dc_replace
    from fusegen.quantize.lut import make_lut

    c = case("indrnn", SIZES[2])
    q = c.qcell
    steps = [s for s in q.program.step if isinstance(s, Lut)]
    luts = q.inputs.luts.copy()
    for s, bounds in zip(steps, rows):
        if bounds is not None:
            luts[s.table] = clamp_row(*bounds)
        else:  # the function's own table at the row's (equal) scales
            op = q.bound.graph.nodes[s.node].op
            fn = (lambda v: np.clip(v, 0.0, 2.0)) if op is Op.CLIP else float_interp.NUMPY.unary[op]
            luts[s.table] = make_lut(fn, 2.0 ** -13, 2.0 ** -13)  # IndRNN's clip is 0..2
            assert row_clamp(luts[s.table]) is None
    inputs = dc_replace(q.inputs, luts=luts)
    core = copy.copy(c.core)
    core.inputs = [np.ascontiguousarray(a) for a in dc_replace(q, inputs=inputs).op_inputs()]
    for seq in c.x_q[:EXACT_SEQUENCES]:
        y_twin, states_twin = int_interp.run(q.program, inputs, q.sizes, seq, True)
        y_c, states_c = core.run(seq, True)
        assert np.array_equal(y_c, y_twin)
        assert np.array_equal(states_c, np.concatenate(states_twin))
        # Not the quantizer's arithmetic: these rows change the states.
        _, states_file = int_interp.run(q.program, q.inputs, q.sizes, seq, True)
        if rows != (None, None):
            assert not np.array_equal(np.concatenate(states_twin), np.concatenate(states_file))


class ClampChainCell(IndRNNCell):
    """IndRNN's weights, h = clip(relu6(relu(x W + h u + b)), 0, 5): three clamp-capable
    lookups in a row."""

    def call(self, inputs, states):
        pre = (keras.ops.matmul(inputs, self.kernel) + self.recurrent_weight * states[0]
               + self.bias)
        h = keras.ops.clip(keras.ops.relu6(keras.ops.relu(pre)), 0.0, 5.0)
        return h, [h]


def test_a_chain_of_three_clamp_rows_runs_as_one_clamp():
    """s8.py composed_clamps folds any chain of clamp rows whose values nothing else reads:
    relu, relu6 and clip (all clamp rows at this calibration) run as one fg_s16_bound of the
    relu's input, and C equals the twin."""
    from fusegen.codegen import kernel_files

    input_size, units, timesteps = 6, 7, 9
    layer = keras.layers.RNN(ClampChainCell(units), return_sequences=True)
    layer.build((None, timesteps, input_size))
    rng = np.random.default_rng(3)
    for w in layer.weights:
        w.assign(rng.uniform(-1.2, 1.2, w.shape).astype(np.float32))
    cell = layer.cell
    _, weights = trace_concrete(cell, input_size)
    bound = run_pipeline(BoundGraph(trace_symbolic(lambda u: ClampChainCell(u)), weights, units,
                                    input_size))
    name = op_name(type(cell).__name__, bound.graph, None)
    x_cal = rng.uniform(-1.5, 1.5, (8, timesteps, input_size)).astype(np.float32)
    q = quantize_cell(bound, x_cal, asymmetric_int8(x_cal.min(), x_cal.max()))
    luts = [s for s in q.program.step if isinstance(s, Lut)]
    assert [bound.graph.nodes[s.node].op for s in luts] == [Op.RELU, Op.RELU6, Op.CLIP]
    # relu's input reaches past 4 and relu6 saturates: one scale, 2^-12, for all three
    assert [row_clamp(q.inputs.luts[s.table]) for s in luts] == [(0, 32767), (0, 24576), (0, 20480)]
    core_c = next(v for k, v in kernel_files(bound.graph, name, ("f32", "s8")).items()
                  if k.endswith("_core.c"))
    last = luts[-1].node
    assert f"v{last} = fg_s16_bound(v{luts[0].source}, lo_{last}, hi_{last});" in core_c
    core = HostCoreS8(q, name)
    for seq in q.quantize_input(rng.uniform(-1.5, 1.5, (2, timesteps, input_size))):
        y_twin, states_twin = int_interp.run(q.program, q.inputs, q.sizes, seq, True)
        y_c, states_c = core.run(seq, True)
        assert np.array_equal(y_c, y_twin)
        assert np.array_equal(states_c, np.concatenate(states_twin))


@pytest.mark.parametrize("cell", ["simple_rnn", "minimal_gated", "gru", "lstm"])
def test_wide_inputs_run_the_projection_at_a_dot_scale_of_one_or_more(cell):
    """An input whose range is set by rare large values (a trained model's standardized
    features have outliers: here one feature reaching 40 among values in [-1, 1]; 12 inputs, 32
    units, as the JapaneseVowels compare) gives the hoisted input projection a dot rescale of
    shift >= 0 (the int16 result's scale is at most the int8 input's times the weights'), which
    fg_matmul_s8 runs in its kRescaleLeft body: the C core equals the twin, y and states, in
    chunks of 4 and 1 rows, on inputs that reach the outlier."""
    input_size, units, timesteps = 12, 32, 29
    layer, _ = random_layer(cell, input_size, units, timesteps, return_sequences=True, seed=71)
    rng = np.random.default_rng(72)
    x_cal = rng.uniform(-1, 1, (CALIBRATION_SEQUENCES, timesteps, input_size))
    x_cal[0, 3, 0] = 40.0
    x = rng.uniform(-1, 1, (EXACT_SEQUENCES, timesteps, input_size)).astype(np.float32)
    x[:, ::5, 0] = rng.uniform(-1, 40, x[:, ::5, 0].shape)
    bound, name = _lower(cell, layer, input_size)
    q = quantize_cell(bound, x_cal.astype(np.float32), asymmetric_int8(x_cal.min(), x_cal.max()))
    shifts = [int(q.inputs.qparams[q.program.offset(s.scale.shift)(*q.sizes)])
              for s in q.program.pre if isinstance(s, MatMul)]
    assert shifts and min(shifts) >= 0, shifts
    core = HostCoreS8(q, name)
    for seq in q.quantize_input(x):
        y_twin, states_twin = int_interp.run(q.program, q.inputs, q.sizes, seq, True)
        for chunk in (4, 1):
            y_c, states_c = core.run(seq, True, max_chunk=chunk)
            assert np.array_equal(y_c, y_twin), chunk
            assert np.array_equal(states_c, np.concatenate(states_twin)), chunk
