"""The integer program of a cell: its step as a list of calls into fg_runtime_q.c.

`build_program(graph)` looks at the graph only (no weights, no calibration data), so the C of an
int8 kernel depends on the cell's math alone: every number the kernel needs (multipliers, shifts,
biases, zero points, tables) arrives in the op's `qparams` and `luts` inputs, whose layout this
module fixes. The C emitter (quantize/emit.py), the quantizer that fills the layout
(quantize/quantizer.py) and the integer twin (reference/int_interp.py) all walk the same steps.

The qparams layout (int32):
  scalars           qparams[0] is the channel flag (below); then every (multiplier, shift) pair
                    and zero point, one int32 each, in program order
  arrays            per-channel int32 arrays every quantization has: the folded zero-point terms
                    of matmuls without an IR bias
  channel arrays    only when the channel flag is 1: each matmul's per-output-channel multipliers
                    and shifts
With the flag 0 (per-tensor weights, the default) each matmul reads its one (multiplier, shift)
pair from the scalars with a channel step of 0; with 1 it reads its channel arrays with a step of
1. Both layouts are fixed by the graph, so the C is the same for both; qparams has
`qparam_count(False)` or `qparam_count(True)` entries.

Lookup tables are shared at graph level: unary nodes computing the same function of values in
one scale group (e.g. LSTM's three sigmoid gates, slices of one matmul output) are put in one
scale group themselves, so the quantizer gives them one output scale, and they read one row of
`luts`. Tables that only happen to be equal (two groups whose calibrated scales coincide) are not
merged: that would make the number of rows depend on the data.

Value formats (see fusegen/quantize/__init__.py for the whole design):
  x, y              int8, asymmetric (scale, zero point)
  everything else   int16, symmetric; values in one *scale group* share a scale: a slice shares
                    its source's, a state shares the scale of the value that becomes it
  matmul operands   int8: x as it comes, any other value requantized into an int8 scratch slot
  constants         int16 +-16384 (0 for 0.0) with scale |c| / 16384: exact

Reductions, normalisation, softmax, where (issue 14); the choices and why:
  sum, mean         an int32 accumulator of the int16 values (int64 in C, clamped: n < 2^16 never
                    clamps), rescaled once to the output's scale; a mean's 1/n is folded into that
                    multiplier at convert time (the quantizer knows the layer's sizes), so a mean
                    rounds once, not per element.
  max (and min)     the max of the int16 values, rescaled (min is -max(-x), from the frontend).
  square            an int16 x int16 product (Mul), exact before its rescale, not a table: a
                    variance or a mean of squares is a sum of them, and a table's interpolation
                    error would be summed n times.
  rsqrt             integer: q = 2^46 / isqrt(x * 2^30) (~2^31 / sqrt(x), 20+ significant bits
                    over the whole int16 range), then one rescale to the output's scale; x <= 0
                    saturates. Not a table: a variance spans decades, and a table's segments near
                    zero are far too coarse for 1/sqrt. Measured on the catalog's LayerNorm cells:
                    0.3-1.0 output steps of mean error (tests/test_cells_ops.py); a LayerNorm-LSTM
                    on digits loses no accuracy.
  sqrt, exp, log    one int16 table each, like every other one-argument function.
  a / b             fg_div_s16: q = a*2^15 / b in int32 (15 more bits than the operands, rounded
                    half away from zero), then one rescale; b == 0 saturates. Softmax is
                    exp(x - max x) / sum(exp(x - max x)): the exp table's input is <= 0, its
                    output in (0, 1], the sum an int32 sum, the division this one.
  where(a cmp b)    a and b rescaled to a common comparison scale, 1/256 of the coarser of their
                    two scales (int32: exact for both), x and y to the output's scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fusegen.errors import UserError
from fusegen.abi import PARAM_BIAS, PARAM_MATRIX, PARAM_VECTOR
from fusegen.schedule.plan import Plan, make_plan
from fusegen.ir import BINARY, UNARY, Dim, Graph, Op

SCALAR = Dim(0, 0, 1)
CONST_MAGNITUDE = 16384  # a constant c is stored as +-16384 at scale |c| / 16384


class QuantizeError(UserError, ValueError):
    """The cell (or its calibration) cannot be quantized; the message says where and why (one
    line, shown to the user as it is)."""


@dataclass(frozen=True)
class Rescale:
    """A real factor as a (multiplier, shift) pair: the names of two scalar qparams."""

    multiplier: str
    shift: str


@dataclass(frozen=True)
class Widen:
    """x_t (int8) -> the INPUT node's int16 value, for cells that use x elementwise."""

    node: int
    zero_point: str
    scale: Rescale


@dataclass(frozen=True)
class Narrow:
    """An int16 matmul operand -> int8 (asymmetric) in the int8 slot of its width."""

    node: int  # the matmul whose operand this is
    operand: int
    scale: Rescale
    zero_point: str


@dataclass(frozen=True)
class MatMul:
    node: int
    operand: int
    weight: int  # param index of the int8 [N, K] matrix
    bias_param: int | None  # param index of the int32 bias (zero point folded in), or
    bias_field: str | None  # the qparams array holding the folded zero point (no IR bias)
    scale: Rescale  # per-tensor weights: the one (multiplier, shift) pair, two scalars
    channel_multiplier: str  # per-channel weights: channel arrays, one entry per output channel
    channel_shift: str
    acc: int | None
    acc_scale: Rescale | None
    hoisted: bool


@dataclass(frozen=True)
class Lut:
    node: int
    source: int
    table: int  # row of the luts input (shared by the same function of one scale group)
    # A function that may be a clamp (CLAMP_OPS): its row is a table or, where the exact integer
    # function is clamp(x, lo, hi), a clamp row (abi.clamp_row), and the op runs as that clamp.
    clamp: bool = False


@dataclass(frozen=True)
class Binary:
    """add, sub, maximum, minimum: both operands rescaled to the output's scale."""

    node: int
    op: Op
    a: int
    b: int
    a_scale: Rescale
    b_scale: Rescale


@dataclass(frozen=True)
class Mul:
    """a * b (or a / b for a constant b: the constant's reciprocal is in the multiplier)."""

    node: int
    a: int
    b: int
    scale: Rescale
    reciprocal: bool


@dataclass(frozen=True)
class Concat:
    node: int
    parts: tuple[tuple[int, Rescale], ...]


@dataclass(frozen=True)
class Output:
    node: int
    scale: Rescale
    zero_point: str


@dataclass(frozen=True)
class Reduce:
    """sum / mean / max of a vector: an int32 sum (or the max) rescaled to the output's scale
    (a mean's 1/n is in the multiplier: the quantizer knows the layer's sizes)."""

    node: int
    source: int
    fn: str
    scale: Rescale


@dataclass(frozen=True)
class Div:
    """a / b of two values: a*2^15 / b rounded in int32, then rescaled (fg_div_s16)."""

    node: int
    a: int
    b: int
    scale: Rescale


@dataclass(frozen=True)
class Where:
    """(a <cmp> b) ? x : y: a and b rescaled to a common comparison scale (int32), x and y to
    the output's; the four pairs are consecutive scalars (fg_where_s16 reads them as one
    array)."""

    node: int
    cmp: str
    a: int
    b: int
    x: int
    y: int
    scales: tuple[Rescale, Rescale, Rescale, Rescale]


@dataclass(frozen=True)
class Rsqrt:
    """1 / sqrt(x) in integers (fg_rsqrt_s16): q = 2^46 / isqrt(x * 2^30) ~ 2^31 / sqrt(x),
    rescaled; x <= 0 saturates. No table: a normalisation's variance spans decades, where a
    table's segments near zero are too coarse for the curve."""

    node: int
    source: int
    scale: Rescale


Step = Widen | Narrow | MatMul | Lut | Binary | Mul | Concat | Reduce | Div | Where | Rsqrt

CHANNEL_FLAG = "per_channel"  # the first scalar: 1 if the channel arrays are present

# The lookups whose exact integer function can be clamp(x, lo, hi) for int16 lo <= hi (piecewise
# linear with slopes 0 and 1: at equal input and output scales relu, relu6 and clip are clamps).
# The quantizer makes the row of one that is a clamp a clamp row (abi.clamp_row).
CLAMP_OPS = frozenset({Op.RELU, Op.RELU6, Op.CLIP})


@dataclass
class IntProgram:
    graph: Graph
    plan: Plan  # the float plan: int16 values use its slots (same liveness)
    pre: list[Step] = field(default_factory=list)  # hoisted matmuls of x, per block of rows
    step: list[Step] = field(default_factory=list)  # one timestep, in order
    output: Output | None = None
    param_roles: tuple[str, ...] = ()  # PARAM_* per graph param: its int8 / int32 / int16 input
    scalars: list[str] = field(default_factory=list)  # int32 qparams, first
    arrays: list[tuple[str, Dim]] = field(default_factory=list)  # int32 arrays, after those
    channel_arrays: list[tuple[str, Dim]] = field(default_factory=list)  # last, if per channel
    lut_rows: dict[tuple, int] = field(default_factory=dict)  # (op, attrs, source group) -> row
    widen_input: bool = False  # x is used elementwise: an int16 copy of x_t in its own slot
    narrow_widths: list[Dim] = field(default_factory=list)  # int8 operand slots
    group: dict[int, int] = field(default_factory=dict)  # node -> its scale group's root node
    offsets: dict[str, Dim] = field(default_factory=dict)  # filled once the layout is complete

    def scalar(self, name: str) -> str:
        if name in self.scalars:
            raise QuantizeError(f"duplicate qparam {name}")
        self.scalars.append(name)
        return name

    def rescale(self, what: str) -> Rescale:
        return Rescale(self.scalar(f"{what}.multiplier"), self.scalar(f"{what}.shift"))

    def array(self, name: str, width: Dim) -> str:
        self.arrays.append((name, width))
        return name

    def channel_array(self, name: str, width: Dim) -> str:
        self.channel_arrays.append((name, width))
        return name

    @property
    def lut_count(self) -> int:
        return len(self.lut_rows)

    def clamp_rows(self) -> tuple[int, ...]:
        """The luts rows of the lookups that may be clamps (CLAMP_OPS): each a table or a clamp
        row (abi.clamp_row), which validation and the kernel's Prepare check."""
        return tuple(dict.fromkeys(s.table for s in self.step if isinstance(s, Lut) and s.clamp))

    def offset(self, name: str) -> Dim:
        """Where a qparam starts in the qparams input (scalars, arrays, channel arrays)."""
        return (self.offsets or self.layout())[name]

    def layout(self) -> dict[str, Dim]:
        offsets = {name: Dim(0, 0, k) for k, name in enumerate(self.scalars)}
        total = Dim(0, 0, len(self.scalars))
        for name, width in self.arrays + self.channel_arrays:
            offsets[name] = total
            total = total + width
        return offsets

    def qparam_count(self, per_channel: bool) -> Dim:
        """Entries of qparams: the channel arrays count only for per-channel weights."""
        total = Dim(0, 0, len(self.scalars))
        for _, width in self.arrays + (self.channel_arrays if per_channel else []):
            total = total + width
        return total

    def narrow_slot(self, width: Dim) -> int:
        if width not in self.narrow_widths:
            self.narrow_widths.append(width)
        return self.narrow_widths.index(width)

    def members(self, root: int) -> list[int]:
        return [j for j, r in self.group.items() if r == root]


def const_value(graph: Graph, index: int) -> int:
    """The int16 a CONST node is stored as."""
    value = float(graph.nodes[index].attr("value"))
    return 0 if value == 0.0 else (CONST_MAGNITUDE if value > 0 else -CONST_MAGNITUDE)


def build_program(graph: Graph) -> IntProgram:
    program = IntProgram(graph, make_plan(graph))
    program.param_roles = _param_roles(graph)
    program.group = _scale_groups(graph, program.plan)
    program.widen_input = _input_used_elementwise(graph, program.plan)
    program.scalar(CHANNEL_FLAG)
    if program.widen_input:
        index = next(i for i, n in enumerate(graph.nodes) if n.op is Op.INPUT)
        program.step.append(Widen(index, program.scalar("input.zero_point"),
                                  program.rescale(f"%{index}.widen")))
    for index in program.plan.hoisted:
        program.pre.append(_matmul(program, index, hoisted=True))
    for index in program.plan.step_nodes:
        program.step.extend(_steps(program, index))
    out = graph.outputs[0]
    program.output = Output(out, program.rescale("output"), program.scalar("output.zero_point"))
    program.offsets = program.layout()
    return program


def _steps(program: IntProgram, index: int) -> list[Step]:
    graph = program.graph
    node = graph.nodes[index]
    where = f"%{index} {node.op.value} ({node.loc or 'no location'})"
    if node.op is Op.MATMUL:
        steps: list[Step] = []
        operand = node.inputs[0]
        if graph.nodes[program.plan.root(operand)].op is not Op.INPUT:
            program.narrow_slot(graph.nodes[operand].width)
            steps.append(Narrow(index, operand, program.rescale(f"%{index}.operand"),
                                program.scalar(f"%{index}.operand.zero_point")))
        return steps + [_matmul(program, index, hoisted=False)]
    if node.op is Op.SQUARE:  # exact in int16 x int16 -> int32, no table
        return [Mul(index, node.inputs[0], node.inputs[0], program.rescale(f"%{index}"),
                    reciprocal=False)]
    if node.op is Op.RSQRT:
        return [Rsqrt(index, node.inputs[0], program.rescale(f"%{index}"))]
    if node.op is Op.REDUCE:
        return [Reduce(index, node.inputs[0], node.attr("fn"), program.rescale(f"%{index}"))]
    if node.op is Op.WHERE:
        scales = tuple(program.rescale(f"%{index}.{k}") for k in ("a", "b", "x", "y"))
        return [Where(index, node.attr("cmp"), *node.inputs, scales)]
    if node.op in UNARY:
        key = _function_of_group(graph, program.group, index)
        row = program.lut_rows.setdefault(key, len(program.lut_rows))
        return [Lut(index, node.inputs[0], row, node.op in CLAMP_OPS)]
    if node.op is Op.MUL:
        return [Mul(index, *node.inputs, program.rescale(f"%{index}"), reciprocal=False)]
    if node.op is Op.DIV:
        divisor = graph.nodes[node.inputs[1]]
        if divisor.op is not Op.CONST:
            return [Div(index, *node.inputs, program.rescale(f"%{index}"))]
        if float(divisor.attr("value")) == 0.0:
            raise QuantizeError(f"{where}: int8 kernels cannot divide by the constant 0")
        return [Mul(index, *node.inputs, program.rescale(f"%{index}"), reciprocal=True)]
    if node.op in BINARY:
        a, b = node.inputs
        return [Binary(index, node.op, a, b, program.rescale(f"%{index}.a"),
                       program.rescale(f"%{index}.b"))]
    if node.op is Op.CONCAT:
        parts = tuple((j, program.rescale(f"%{index}.part{k}")) for k, j in enumerate(node.inputs))
        return [Concat(index, parts)]
    raise QuantizeError(f"{where}: no int8 kernel for '{node.op.value}' yet; convert this cell "
                        "in float32 (without --quantize)")


def _matmul(program: IntProgram, index: int, hoisted: bool) -> MatMul:
    graph = program.graph
    node = graph.nodes[index]
    width = node.width
    bias_param = graph.nodes[node.inputs[2]].attr("index") if node.attr("has_bias") else None
    bias_field = None if bias_param is not None else program.array(f"%{index}.bias", width)
    acc = node.inputs[-1] if node.attr("has_acc") else None
    return MatMul(
        node=index, operand=node.inputs[0], weight=graph.nodes[node.inputs[1]].attr("index"),
        bias_param=bias_param, bias_field=bias_field, scale=program.rescale(f"%{index}"),
        channel_multiplier=program.channel_array(f"%{index}.channel_multiplier", width),
        channel_shift=program.channel_array(f"%{index}.channel_shift", width),
        acc=acc, acc_scale=program.rescale(f"%{index}.acc") if acc is not None else None,
        hoisted=hoisted)


def _param_roles(graph: Graph) -> tuple[str, ...]:
    """Each param's role, which fixes its int8 input's type. A param has exactly one."""
    uses: dict[int, set[str]] = {k: set() for k in range(len(graph.params))}
    bias_users: dict[int, int] = {k: 0 for k in range(len(graph.params))}
    for node in graph.nodes:
        for pos, j in enumerate(node.inputs):
            leaf = graph.nodes[j]
            if leaf.op is not Op.PARAM:
                continue
            k = leaf.attr("index")
            if node.op is Op.MATMUL and pos == 1:
                uses[k].add(PARAM_MATRIX)
            elif node.op is Op.MATMUL and pos == 2 and node.attr("has_bias"):
                uses[k].add(PARAM_BIAS)
                bias_users[k] += 1
            else:
                uses[k].add(PARAM_VECTOR)
    roles = []
    for k, p in enumerate(graph.params):
        role = uses[k].pop() if len(uses[k]) == 1 else None
        if role is None or (role == PARAM_BIAS and bias_users[k] != 1) or \
                (role == PARAM_MATRIX) != (len(p.shape) == 2):
            raise QuantizeError(f"param {p.name}: int8 kernels need each weight to be a matmul "
                                "matrix, the bias of one matmul, or an elementwise vector")
        roles.append(role)
    return tuple(roles)


def _scale_groups(graph: Graph, plan: Plan) -> dict[int, int]:
    """Union-find over the values that must share one int16 scale."""
    parent = list(range(len(graph.nodes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for index, node in enumerate(graph.nodes):
        if node.op is Op.SLICE:
            union(index, node.inputs[0])  # a view has its source's scale
        elif node.op is Op.STATE:
            union(index, graph.outputs[1 + node.attr("index")])  # written back without rescale
    # One function of one scale group: one output scale, so one table. Repeated, because joining
    # outputs can join the sources of other functions.
    while True:
        first: dict[tuple, int] = {}
        joined = False
        for index, node in enumerate(graph.nodes):
            if node.op in UNARY:
                other = first.setdefault((node.op, node.attrs, find(node.inputs[0])), index)
                joined |= find(other) != find(index)
                union(other, index)
        if not joined:
            break
    groups = {i: find(i) for i in range(len(graph.nodes))}
    for root in set(groups.values()):
        kinds = {graph.nodes[j].op for j, r in groups.items() if r == root} - {Op.SLICE}
        if len(kinds & {Op.INPUT, Op.PARAM, Op.CONST}) and Op.STATE in kinds:
            raise QuantizeError(f"cell {graph.name}: a new state is the input, a weight or a "
                                "constant; int8 kernels need states computed by the cell")
    return groups


def _function_of_group(graph: Graph, group: dict[int, int], index: int) -> tuple:
    """What makes two unary nodes' tables equal: the function and its input's scale group (the
    output's group then follows: _scale_groups joins them)."""
    node = graph.nodes[index]
    return node.op, node.attrs, group[node.inputs[0]]


def _input_used_elementwise(graph: Graph, plan: Plan) -> bool:
    for node in graph.nodes:
        for pos, j in enumerate(node.inputs):
            as_operand = node.op is Op.MATMUL and pos == 0
            if node.op is not Op.SLICE and not as_operand and \
                    graph.nodes[plan.root(j)].op is Op.INPUT:
                return True
    return any(graph.nodes[plan.root(j)].op is Op.INPUT for j in graph.outputs)
