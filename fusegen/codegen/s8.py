"""The `_eval_s8` half of a generated core: one C statement per step of the integer program.

Python decides every pointer, offset and runtime call here; core.c.j2 renders the same eval body
as for float32. Scratch of eval_s8 is int16 elements: the second state bank, the int16 slots of
the float plan (same liveness), an int16 copy of x_t if x is used elementwise, the hoisted matmul
rows, and the int8 matmul operands (two per int16 element).
"""

from __future__ import annotations

from dataclasses import replace

from fusegen.codegen.core import (EVAL_COMMENT, CoreContext, EvalContext, KernelContext,
                                  KernelInput, Layout, PlanField, Statement, fused_statement,
                                  node_comment, signature, state_targets, used_slots)
from fusegen.passes.fuse import FusedGroup, elementwise_groups
from fusegen.ir import Dim, Graph, Op
from fusegen.abi import LUT_SIZE, SEGMENT_BITS, OpInputs, dtype_abi
from fusegen.schedule.program import (CHANNEL_FLAG, PARAM_BIAS, PARAM_MATRIX, SCALAR, Binary,
                                      Concat, Div, IntProgram, Lut, MatMul, Mul, Narrow, Reduce,
                                      Rescale, Rsqrt, Where, Widen, build_program, const_value)

_BINARY = {Op.ADD: "kFgAdd", Op.SUB: "kFgSub", Op.MAXIMUM: "kFgMaximum", Op.MINIMUM: "kFgMinimum"}
_REDUCE = {"sum": "kFgReduceSum", "mean": "kFgReduceMean", "max": "kFgReduceMax"}
_CMP = {"gt": "kFgGreater", "ge": "kFgGreaterEqual", "lt": "kFgLess", "le": "kFgLessEqual",
        "eq": "kFgEqual", "ne": "kFgNotEqual"}
_PARAM_TYPES = {PARAM_MATRIX: "int8_t", PARAM_BIAS: "int32_t"}  # else int16_t
S8_COMMENT = EVAL_COMMENT + (
    "int8 version, integer-only: x and y are int8 (zero points in qparams), states int16 in",
    "the scales the quantizer chose; params, qparams and luts are the op's inputs in the order",
    "of fusegen/abi.py; scratch holds plan->scratch_elems_s8 int16 elements.",
)


def fused_branches(graph: Graph, group: FusedGroup,
                   branches: list[tuple[str | None, list[str]]]) -> Statement:
    """One fused loop per branch: `if (guard) {loop} else if ... else {loop}`; the last
    branch's guard is None."""
    statement = fused_statement(graph, group, branches[-1][1])
    if len(branches) == 1:
        return statement
    loop = list(statement.lines)
    lines: list[str] = []
    for k, (guard, body) in enumerate(branches[:-1]):
        inner = fused_statement(graph, group, body).lines
        lines.append(("if" if k == 0 else "} else if") + f" ({guard}) {{")
        lines += [f"  {line}" for line in inner]
    lines.append("} else {")
    lines += [f"  {line}" for line in loop]
    lines.append("}")
    return Statement(statement.comment, tuple(lines))


def add_s8(ctx: CoreContext, graph: Graph) -> CoreContext:
    """`ctx` with the eval_s8 function, its Plan fields and its scratch layout added."""
    program = build_program(graph)
    emitter = _S8Emitter(ctx, program)
    eval_ctx = emitter.eval_context()
    defines = ctx.defines + (("NUM_LUTS", str(program.lut_count)),
                             ("NUM_INPUTS_S8", str(OpInputs("s8", len(graph.params)).constants)))
    counts = (("qparam_count", c_expr64(program.qparam_count(per_channel=False))),
              ("qparam_count_per_channel", c_expr64(program.qparam_count(per_channel=True))))
    return replace(ctx, evals=ctx.evals + (eval_ctx,), defines=defines, kernel=s8_kernel(ctx, program),
                   plan_fields=ctx.plan_fields + tuple(plan_fields(program)),
                   layouts=ctx.layouts + (emitter.layout(),),
                   plan_counts=ctx.plan_counts + counts)


def s8_kernel(ctx: CoreContext, program: IntProgram) -> KernelContext:
    """The TFLM adapter of the int8 op: inputs and types from abi.py; the qparams and luts
    checks are the shell's (fg_shell.c)."""
    graph_params = len(ctx.params)
    inputs = OpInputs("s8", graph_params)
    param_types = tuple(t.tflite for t in dtype_abi("s8").param_types(program.param_roles,
                                                                      graph_params))
    extra = tuple(
        KernelInput(d.name.capitalize(), d.name, inputs.extra(d.name), f"{d.name}: {d.doc}")
        for d in inputs.extras)
    tensor = "tflite::micro::GetTensorData<{}>(tflite::micro::GetEvalInput(context, node, {}))"
    prefix, op = ctx.prefix, ctx.op_name
    return KernelContext(
        dtype="s8", io_type="kTfLiteInt8", type_name="int8", param_types=param_types,
        extra_inputs=extra, num_inputs=inputs.first_state, value_type="int16_t",
        scratch_field="scratch_elems_s8", param_ptr="const void*",
        params_size=f"{op}_NUM_PARAMS + 1",
        param_read="tflite::micro::GetEvalInput(context, node, 1 + k)->data.data",
        state_type="kTfLiteInt16",
        eval_call=(
            f"{ctx.stem}_eval_s8(&data->plan,",
            "    shell::Option(data->shell, kFgOptionReturnSequences),",
            "    shell::Option(data->shell, kFgOptionGoBackwards),",
            "    tflite::micro::GetTensorData<int8_t>(input), params,",
            "    " + tensor.format("int32_t", f"k{prefix}QparamsTensor") + ",",
            "    " + tensor.format("int16_t", f"k{prefix}LutsTensor") + ", buffer,",
            "    tflite::micro::GetTensorData<int8_t>(output), buffer + data->plan.state_total,",
            "    shell::Steps(context, node, data->shell, data->plan.timesteps, &steps));",
        ),
        has_s8_inputs=1, num_luts=f"{op}_NUM_LUTS", clamp_rows=program.clamp_rows(),
        qparam_counts=("p->qparam_count", "p->qparam_count_per_channel"))


def plan_fields(program: IntProgram) -> list[PlanField]:
    """The Plan fields eval_s8 adds (hostcore.py mirrors them for ctypes)."""
    fields = [PlanField("qparam_count"), PlanField("qparam_count_per_channel"),
              PlanField("scratch_elems_s8"),
              PlanField("bank_offset_s8"),
              PlanField("slot_offset_s8", max(len(program.plan.slot_widths), 1))]
    if program.widen_input:
        fields.append(PlanField("wide_offset_s8"))
    fields += [PlanField("hoist_offset_s8", max(len(program.plan.hoisted), 1)),
               PlanField("narrow_offset_s8", max(len(program.narrow_widths), 1))]
    return fields


def c_expr64(dim: Dim) -> str:
    """A Dim evaluated in int64 (qparam counts can exceed the int32 checks on the sizes)."""
    terms = [f"{dim.u} * (int64_t)units" if dim.u else "",
             f"{dim.i} * (int64_t)input_size" if dim.i else "", str(dim.c) if dim.c else ""]
    return " + ".join(t for t in terms if t) or "(int64_t)0"


class _S8Emitter:
    def __init__(self, ctx: CoreContext, program: IntProgram):
        self.ctx, self.program = ctx, program
        self.graph = program.graph
        self.plan = program.plan
        self.hoist_index = {j: k for k, j in enumerate(self.plan.hoisted)}
        self.consts: dict[int, str] = {}
        self.used_params: set[int] = set()
        self.targets: dict[int, str] = {}  # new states a fused loop stores straight into `next`
        self.rescales: list[str] = []  # FgRescale declarations of the fused loops
        self.clamp_flags: set[str] = set()  # the clamp row flags declared among them
        self.lut_kind = "table"  # how the body being written runs a clamp row: clamp, table,
        # select (per value)

    # ---- pointers ----------------------------------------------------------------------------

    def width(self, index: int) -> str:
        return self.graph.nodes[index].width.c_expr()

    def ptr16(self, index: int) -> str:
        """The int16 value of a node."""
        node = self.graph.nodes[index]
        if node.op is Op.SLICE:
            return self._offset(self.ptr16(node.inputs[0]), node.attr("start"))
        if node.op is Op.INPUT:
            return "x_wide"
        if node.op is Op.STATE:
            return self._offset("cur", self.plan.state_offsets()[node.attr("index")])
        if node.op is Op.PARAM:
            self.used_params.add(node.attr("index"))
            return f"param{node.attr('index')}"
        if node.op is Op.CONST:
            value = const_value(self.graph, index)
            if value not in self.consts:
                self.consts[value] = f"kConst{len(self.consts)}"
            return "&" + self.consts[value]
        if index in self.hoist_index:
            return f"(hoist{self.hoist_index[index]} + row * ({self.width(index)}))"
        if index in self.targets:
            return self.targets[index]
        return f"slot{self.plan.slot_of[index]}"

    def ptr8(self, index: int) -> str:
        """The int8 matmul operand: a view of x_t, or the narrowed copy."""
        node = self.graph.nodes[index]
        if node.op is Op.SLICE and self.graph.nodes[self.plan.root(index)].op is Op.INPUT:
            return self._offset(self.ptr8(node.inputs[0]), node.attr("start"))
        if node.op is Op.INPUT:
            return "x_t"
        return f"narrow{self.program.narrow_widths.index(node.width)}"

    @staticmethod
    def _offset(base: str, start: Dim) -> str:
        return base if start == Dim() else f"({base} + {start.c_expr()})"

    def step_of(self, index: int) -> int:
        return 0 if self.graph.nodes[index].width == SCALAR else 1

    def q(self, name: str) -> str:
        return f"qparams[{self.program.offset(name).c_expr()}]"

    def qa(self, name: str) -> str:
        return f"(qparams + {self.program.offset(name).c_expr()})"

    def pair(self, r: Rescale) -> str:
        return f"{self.q(r.multiplier)}, {self.q(r.shift)}"

    # ---- statements --------------------------------------------------------------------------

    def statement(self, s) -> Statement:
        node = self.graph.nodes[s.node]
        args = ", ".join(f"%{j}" for j in node.inputs)
        where = f"  [{node.loc}]" if node.loc else ""
        if isinstance(s, Widen):
            comment = f"%{s.node} = input() as int16"
        elif isinstance(s, Narrow):
            comment = f"%{s.operand} as the int8 operand of %{s.node}"
        else:
            comment = f"%{s.node} = {node.op.value}({args}){where}"
        return Statement(comment, tuple(self.lines(s)))

    def lines(self, s) -> list[str]:
        if isinstance(s, Widen):
            return [f"fg_requantize_s8_s16(x_t, {self.q(s.zero_point)}, {self.pair(s.scale)}, "
                    f"x_wide, input_size);"]
        if isinstance(s, Narrow):
            return [f"fg_requantize_s16_s8({self.ptr16(s.operand)}, {self.pair(s.scale)}, "
                    f"{self.q(s.zero_point)}, {self.ptr8(s.operand)}, {self.width(s.operand)});"]
        if isinstance(s, MatMul):
            return [self.matmul(s)]
        if isinstance(s, Lut):
            table = "luts" if s.table == 0 else f"luts + {s.table} * FG_LUT_SIZE"
            if s.clamp:
                return [(f"fg_lut_or_bound_s16({table}, {self.ptr16(s.source)}, "
                         f"{self.ptr16(s.node)}, {self.width(s.node)});")]
            return [f"fg_lut_s16({table}, {self.ptr16(s.source)}, {self.ptr16(s.node)}, "
                    f"{self.width(s.node)});"]
        if isinstance(s, Binary):
            return [f"fg_binary_s16({_BINARY[s.op]}, {self.ptr16(s.a)}, {self.step_of(s.a)}, "
                    f"{self.ptr16(s.b)}, {self.step_of(s.b)}, {self.pair(s.a_scale)}, "
                    f"{self.pair(s.b_scale)}, {self.ptr16(s.node)}, {self.width(s.node)});"]
        if isinstance(s, Mul):
            return [f"fg_mul_s16({self.ptr16(s.a)}, {self.step_of(s.a)}, {self.ptr16(s.b)}, "
                    f"{self.step_of(s.b)}, {self.pair(s.scale)}, {self.ptr16(s.node)}, "
                    f"{self.width(s.node)});"]
        if isinstance(s, Concat):
            return self.concat(s)
        if isinstance(s, Reduce):
            return [f"fg_reduce_s16({_REDUCE[s.fn]}, {self.ptr16(s.source)}, {self.pair(s.scale)}, "
                    f"{self.ptr16(s.node)}, {self.width(s.source)});"]
        if isinstance(s, Rsqrt):
            return [f"fg_rsqrt_s16({self.ptr16(s.source)}, {self.pair(s.scale)}, "
                    f"{self.ptr16(s.node)}, {self.width(s.node)});"]
        if isinstance(s, Div):
            return [f"fg_div_s16({self.ptr16(s.a)}, {self.step_of(s.a)}, {self.ptr16(s.b)}, "
                    f"{self.step_of(s.b)}, {self.pair(s.scale)}, {self.ptr16(s.node)}, "
                    f"{self.width(s.node)});"]
        if isinstance(s, Where):
            operands = ", ".join(f"{self.ptr16(j)}, {self.step_of(j)}"
                                 for j in (s.a, s.b, s.x, s.y))
            return [f"fg_where_s16({_CMP[s.cmp]}, {operands}, {self.qa(s.scales[0].multiplier)}, "
                    f"{self.ptr16(s.node)}, {self.width(s.node)});"]
        raise NotImplementedError(f"no C emitter for {type(s).__name__}")

    def matmul(self, s: MatMul) -> str:
        node = self.graph.nodes[s.node]
        depth = self.graph.nodes[node.inputs[0]].width.c_expr()
        n = self.width(s.node)
        bias = f"bias{s.bias_param}" if s.bias_param is not None else self.qa(s.bias_field)
        self.used_params.update({s.weight} | ({s.bias_param} - {None}))
        weights = (f"weight{s.weight}, {bias}, multiplier{s.node}, shift{s.node}, channel_step, "
                   f"{n}")
        if s.hoisted:
            k = self.hoist_index[s.node]
            return (f"fg_matmul_s8(x_rows, x_stride, rows, {depth}, {weights}, NULL, 0, 0, "
                    f"hoist{k}, {n});")
        acc = (f"{self.ptr16(s.acc)}, {self.pair(s.acc_scale)}" if s.acc is not None
               else "NULL, 0, 0")
        return (f"fg_matmul_s8({self.ptr8(s.operand)}, 0, 1, {depth}, {weights}, {acc}, "
                f"{self.ptr16(s.node)}, 0);")

    # ---- fused elementwise loops -----------------------------------------------------------

    def step(self) -> tuple[Statement, ...]:
        """The step's statements: a fused loop per run of lookups, rescaled binary ops and
        products (fusegen/passes/fuse.py), one runtime call for the others."""
        program, graph = self.program, self.graph
        fusable = [s.node if isinstance(s, (Lut, Binary, Mul))
                   and all(graph.nodes[j].width in (graph.nodes[s.node].width, SCALAR)
                           for j in graph.nodes[s.node].inputs) else None
                   for s in program.step]
        groups = elementwise_groups(graph, fusable)
        self.targets = state_targets(graph, groups, self.plan.state_offsets())
        at = {g.positions[0]: g for g in groups}
        fused = {p for g in groups for p in g.positions}
        out = []
        for pos, s in enumerate(program.step):
            if pos in at:
                out.append(self.fused(at[pos]))
            elif pos not in fused:
                out.append(self.statement(s))
        return tuple(out)

    # The bodies of a fused loop, fastest first: (name, product form, sum form). One runs per
    # step, chosen by flags computed once per call from the qparams.
    _BODIES = (("p2", "p2", "p2"), ("right", "right", "p2"), ("any", "any", "any"))

    def fused(self, group: FusedGroup) -> Statement:
        """One loop, in up to three bodies, each exact for the rescales it runs on: every
        rescale a power of two, a sum's operands with -12 <= shift <= 2 (fg_s16_*_p2, the
        sums in one SMLAD and a shift by 13; the usual case); the sums so and the
        products in the right-shift form (fg_s16_mul_right, no branch per value: a product by a
        parameter vector, whose scale is not a power of two, as IndRNN's u * h or a peephole's
        w * c); or any (fg_s16_*_any, which picks each rescale's form per value). The same values
        either way."""
        graph = self.graph
        by_node = {s.node: s for s in self.program.step if isinstance(s, (Lut, Binary, Mul))}
        steps = [by_node[j] for j in group.nodes]
        has_mul = any(isinstance(s, Mul) for s in steps)
        # Lookups that may be clamps (program.py CLAMP_OPS): where every row is a clamp row
        # (abi.clamp_row), the clamp bodies run them as clamps (fg_s16_bound), consecutive ones as
        # one; otherwise the other bodies pick per value (fg_s16_lut_or_bound, a test of a
        # loop-invariant flag): a clamp row has no table to run.
        clamps = list(dict.fromkeys(self.clamp_flag(s) for s in steps
                                    if isinstance(s, Lut) and s.clamp))
        kinds = [("p2c", "p2", "p2", "clamp"), ("rightc", "right", "p2", "clamp")] if clamps else []
        kinds += [body + ("select" if clamps else "table",) for body in self._BODIES]
        composed = self.composed_clamps(group, steps) if clamps else {}
        bodies: dict[str, list[str]] = {}
        rescales: dict[str, list[str]] = {"mul": [], "binary": [], "all": []}
        for name, mul_kind, binary_kind, lut_kind in kinds:
            if mul_kind == "right" and not has_mul:
                continue
            self.lut_kind = lut_kind
            body = bodies[name] = []
            done: set[int] = set()
            for s in steps:
                j = s.node
                # The step's own operands, not the IR node's inputs: x * x (square) is a Mul of
                # one input with itself.
                operands = [s.source] if isinstance(s, Lut) else [s.a, s.b]
                args = [self.value(a, done) for a in operands]
                body.append(f"// {node_comment(graph, j)}")
                if lut_kind == "clamp" and j in composed:
                    source, bounds = composed[j]
                    if bounds is None:  # its only reader runs both clamps as one
                        body.append("// (one clamp with the next: fg_s16_bound of both bounds)")
                        done.add(j)
                        continue
                    expr = f"fg_s16_bound({self.value(source, done)}, {bounds})"
                else:
                    expr = self.value_expr(s, args, mul_kind, binary_kind, rescales)
                body.append(f"const int32_t v{j} = {expr};")
                if j in group.stored:
                    body.append(f"{self.ptr16(j)}[i] = (int16_t)v{j};")
                done.add(j)
        every = rescales["all"]
        first = group.nodes[0]
        guards: dict[str, str] = {}
        if clamps:
            self.rescales.append(f"const int clamps_{first} = {' && '.join(clamps)};")
        if not every:  # lookups only: one body, or the clamps and the one that picks
            if not clamps:
                return fused_statement(graph, group, bodies["p2"])
            return fused_branches(graph, group, [(f"clamps_{first}", bodies["p2c"]),
                                                 (None, bodies["p2"])])
        # A sum's operand takes the power-of-two body for -12 <= shift <= 2 (FgRescale.sum_ok,
        # fg_s16_apply_p2_s16: a shift by 13 whatever the pair), a product's for any.
        p2 = {name: "sum_ok" if name in rescales["binary"] else "p2" for name in every}
        rescale_flags = {
            "p2": " && ".join(f"{r}.{p2[r]}" for r in every),
            "right": " && ".join(f"{r}.right_ok" if r in rescales["mul"] else f"{r}.{p2[r]}"
                                 for r in every)}
        for name, flag in rescale_flags.items():
            if name in bodies:
                self.rescales.append(f"const int {name}_{first} = {flag};")
                guards[name] = f"{name}_{first}"
        for name in [b for b in bodies if b.endswith("c")]:  # after the flags they read
            self.rescales.append(f"const int {name}_{first} = {name[:-1]}_{first} && "
                                 f"clamps_{first};")
            guards[name] = f"{name}_{first}"
        branches = list(bodies.items())
        return fused_branches(graph, group, [(guards[name], body) for name, body in branches[:-1]]
                              + [(None, branches[-1][1])])

    def composed_clamps(self, group: FusedGroup,
                        steps: list) -> dict[int, tuple[int, str | None]]:
        """The chains of clamp rows the clamp bodies run as one clamp: clamp(clamp(x, a, b), c,
        d) is clamp(x, clamp(a, c, d), clamp(b, c, d)) for a <= b, c <= d (clamp(., c, d) is
        monotone), exactly. A clamp row whose value only the next clamp row reads (once, and it
        is not stored) maps to (its source, None); the reader to (the chain's first source, the
        composed bounds, declared once per call). Relu then clip (IndRNN) is one clamp."""
        by_node = {s.node: s for s in steps}
        reads: dict[int, int] = {}
        for s in steps:
            for a in ([s.source] if isinstance(s, Lut) else [s.a, s.b]):
                reads[a] = reads.get(a, 0) + 1
        composed: dict[int, tuple[int, str | None]] = {}
        for s in steps:
            inner = by_node.get(s.source) if isinstance(s, Lut) and s.clamp else None
            if (not isinstance(inner, Lut) or not inner.clamp or reads[inner.node] != 1
                    or inner.node in group.stored):
                continue
            source, (lo, hi) = inner.source, (f"lo{inner.table}", f"hi{inner.table}")
            if inner.node in composed:  # the inner one is itself a composed reader
                source, bounds = composed[inner.node]
                lo, hi = bounds.split(", ")
            name = f"{s.node}"
            self.rescales += [
                f"const int32_t lo_{name} = fg_s16_bound({lo}, lo{s.table}, hi{s.table});",
                f"const int32_t hi_{name} = fg_s16_bound({hi}, lo{s.table}, hi{s.table});"]
            composed[inner.node] = (inner.source, None)
            composed[s.node] = (source, f"lo_{name}, hi_{name}")
        return composed

    def clamp_flag(self, s: Lut) -> str:
        """The name of a flag, 1 if a row is a clamp row, declared (with the row's bounds) once per
        call."""
        name = f"clamp{s.table}"
        if name not in self.clamp_flags:
            self.clamp_flags.add(name)
            row = "luts" if s.table == 0 else f"luts + {s.table} * FG_LUT_SIZE"
            self.rescales += [f"const int {name} = fg_lut_is_clamp({row});",
                              f"const int32_t lo{s.table} = ({row})[FG_CLAMP_LO_KNOT];",
                              f"const int32_t hi{s.table} = ({row})[FG_CLAMP_HI_KNOT];"]
        return name

    def value(self, index: int, done: set[int]) -> str:
        """Unit i of an operand inside a fused loop (an int16 value, as int32)."""
        if index in done:
            return f"v{index}"
        pointer = self.ptr16(index)
        if self.graph.nodes[index].op is Op.CONST:
            return pointer.removeprefix("&")
        if self.graph.nodes[index].width == SCALAR:
            return f"{pointer}[0]"
        return f"{pointer}[i]"

    def rescale(self, name: str, r: Rescale, bound_log2: int, rescales: dict[str, list[str]],
                role: str) -> str:
        if name not in rescales["all"]:
            rescales["all"].append(name)
            rescales[role].append(name)
            self.rescales.append(f"const FgRescale {name} = fg_s16_rescale({self.pair(r)}, "
                                 f"{bound_log2});")
        return "&" + name

    def value_expr(self, s, args: list[str], mul_kind: str, binary_kind: str,
                   rescales: dict[str, list[str]]) -> str:
        if isinstance(s, Lut):
            table = "luts" if s.table == 0 else f"luts + {s.table} * FG_LUT_SIZE"
            if not s.clamp:
                return f"fg_s16_lut({table}, {args[0]})"
            bounds = f"lo{s.table}, hi{s.table}"
            if self.lut_kind == "clamp":
                return f"fg_s16_bound({args[0]}, {bounds})"
            if self.lut_kind == "table":
                return f"fg_s16_lut({table}, {args[0]})"
            return f"fg_s16_lut_or_bound({self.clamp_flag(s)}, {table}, {args[0]}, {bounds})"
        if isinstance(s, Binary):
            ra = self.rescale(f"r{s.node}a", s.a_scale, 15, rescales, "binary")
            rb = self.rescale(f"r{s.node}b", s.b_scale, 15, rescales, "binary")
            return (f"fg_s16_binary_{binary_kind}({_BINARY[s.op]}, {args[0]}, {args[1]}, {ra}, "
                    f"{rb})")
        r = self.rescale(f"r{s.node}", s.scale, 30, rescales, "mul")  # |a * b| <= 2^30
        return f"fg_s16_mul_{mul_kind}({args[0]}, {args[1]}, {r})"

    def concat(self, s: Concat) -> list[str]:
        lines, offset = [], Dim()
        out = self.ptr16(s.node)
        for j, r in s.parts:
            dst = self._offset(out, offset)
            lines.append(f"fg_rescale_s16({self.ptr16(j)}, {self.pair(r)}, {dst}, "
                         f"{self.width(j)});")
            offset = offset + self.graph.nodes[j].width
        return lines

    # ---- the function ------------------------------------------------------------------------

    def eval_context(self) -> EvalContext:
        ctx, program = self.ctx, self.program
        groups = [[f"const {ctx.prefix}Plan* plan", "int return_sequences"],
                  ["int go_backwards", "const int8_t* x", "const void* const* params"],
                  ["const int32_t* qparams", "const int16_t* luts", "int16_t* states"],
                  ["int8_t* y", "int16_t* scratch", "const FgSteps* steps"]]
        pre = tuple(self.statement(s) for s in program.pre)
        step = self.step()
        out = program.output
        out_ptr = self.ptr16(out.node)
        requant = f"{self.pair(out.scale)}, {self.q(out.zero_point)}"
        copies = tuple(
            f"fg_copy_s16({self.ptr16(j)}, {dst}, plan->state_width[{k}]);"
            for k, (j, off) in enumerate(zip(self.graph.outputs[1:], self.plan.state_offsets()))
            if self.ptr16(j) != (dst := self._offset("next", off)))
        operands = [s.operand for s in program.step if isinstance(s, MatMul)]
        uses_x = program.widen_input or any(
            self.graph.nodes[self.plan.root(j)].op is Op.INPUT for j in operands)
        return EvalContext(
            dtype="s8", comment=S8_COMMENT, signature=signature(ctx, "s8", groups),
            preamble=(
                "// The lookup tables this core reads were built by fusegen/quantize/lut.py for",
                f"// {LUT_SIZE}-entry tables of {1 << SEGMENT_BITS}-step segments.",
                f"#if FG_LUT_SIZE != {LUT_SIZE} || FG_LUT_SEGMENT_BITS != {SEGMENT_BITS}",
                '#error "fg_runtime.h does not match the lookup tables of fusegen/quantize/lut.py"',
                "#endif",
            ),
            value_type="int16_t", x_type="int8_t",
            consts=tuple(f"const int16_t {name} = {value};" for value, name in
                         self.consts.items()),
            buffers=self.buffers(pre + step, (out_ptr,) + copies),
            bank="scratch + plan->bank_offset_s8", pre=pre, step=step,
            uses_input_in_step=uses_x,
            output_all=f"fg_requantize_s16_s8({out_ptr}, {requant}, "
                       "y + step * plan->output_width, plan->output_width);",
            output_last=f"fg_requantize_s16_s8({out_ptr}, {requant}, y, plan->output_width);",
            state_copies=copies, copy_back="fg_copy_s16(cur, states, plan->state_total);",
            y_type="int8_t", y_zero=f"(int8_t){self.q(out.zero_point)}")

    def buffers(self, statements: tuple[Statement, ...] = (),
                extra: tuple[str, ...] = ()) -> tuple[str, ...]:
        lines = []
        matmuls = [s for s in self.program.pre + self.program.step if isinstance(s, MatMul)]
        if matmuls:
            flag = self.q(CHANNEL_FLAG)
            lines += [f"// {flag}: 1 if each matmul has a (multiplier, shift) per output channel,",
                      "// 0 if it has one (per-tensor weights); see fusegen/quantize/program.py.",
                      f"const int32_t channel_step = {flag} != 0;"]
        for s in matmuls:
            for name, array, scalar in (("multiplier", s.channel_multiplier, s.scale.multiplier),
                                        ("shift", s.channel_shift, s.scale.shift)):
                lines.append(f"const int32_t* const {name}{s.node} = channel_step ? "
                             f"{self.qa(array)} : {self.qa(scalar)};")
        for k, role in enumerate(self.program.param_roles):
            if k not in self.used_params:
                continue
            ctype = _PARAM_TYPES.get(role, "int16_t")
            name = {PARAM_MATRIX: "weight", PARAM_BIAS: "bias"}.get(role, "param")
            lines.append(f"const {ctype}* const {name}{k} = (const {ctype}*)params[{k}];")
        lines += [f"int16_t* const slot{k} = scratch + plan->slot_offset_s8[{k}];"
                  for k in used_slots(statements, len(self.plan.slot_widths), extra)]
        if self.program.widen_input:
            lines.append("int16_t* const x_wide = scratch + plan->wide_offset_s8;")
        lines += [f"int16_t* const hoist{k} = scratch + plan->hoist_offset_s8[{k}];"
                  for k in range(len(self.plan.hoisted))]
        lines += [f"int8_t* const narrow{k} = (int8_t*)(scratch + plan->narrow_offset_s8[{k}]);"
                  for k in range(len(self.program.narrow_widths))]
        if self.rescales:
            lines.append("// The fused loops' rescales (fg_elementwise.h), unpacked once.")
        return tuple(lines + self.rescales)

    def layout(self) -> Layout:
        widths = self.ctx.slot_widths
        entries = [("bank_offset_s8", "plan->state_total")]
        entries += [(f"slot_offset_s8[{k}]", w) for k, w in enumerate(widths)]
        if self.program.widen_input:
            entries.append(("wide_offset_s8", "input_size"))
        entries += [(f"hoist_offset_s8[{k}]", f"(int64_t)plan->chunk * ({w})")
                    for k, w in enumerate(self.ctx.hoist_widths)]
        entries += [(f"narrow_offset_s8[{k}]", f"(({w.c_expr()}) + 1) / 2")
                    for k, w in enumerate(self.program.narrow_widths)]
        return Layout("eval_s8 scratch, in int16 elements (int8 operands take half of one each)",
                      tuple(entries), "scratch_elems_s8")
