"""The template context of a generated compute core: names, sizes and one C statement per node.

Python decides everything here (pointers, strides, which runtime call); `core.c.j2` only
substitutes. Every statement calls into the hand-written runtime in tflm_kernels/runtime/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from fusegen.abi import PLAN_FIELDS, OpInputs, plan_array_lengths
from fusegen.ir import BINARY, UNARY, Dim, Graph, Node, Op
from fusegen.passes.fuse import SCALAR, FusedGroup, elementwise_groups
from fusegen.schedule.plan import Plan, make_plan

_RUNTIME_OP = {
    Op.NEG: "kFgNeg", Op.SIGMOID: "kFgSigmoid", Op.HARD_SIGMOID: "kFgHardSigmoid",
    Op.TANH: "kFgTanh", Op.RELU: "kFgRelu", Op.RELU6: "kFgRelu6", Op.SOFTSIGN: "kFgSoftsign",
    Op.SILU: "kFgSilu", Op.EXP: "kFgExp", Op.ABS: "kFgAbs", Op.SQUARE: "kFgSquare",
    Op.SQRT: "kFgSqrt", Op.RSQRT: "kFgRsqrt", Op.LOG: "kFgLog",
    Op.ADD: "kFgAdd", Op.SUB: "kFgSub", Op.MUL: "kFgMul", Op.DIV: "kFgDiv",
    Op.MAXIMUM: "kFgMaximum", Op.MINIMUM: "kFgMinimum",
}


_CMP = {"gt": "kFgGreater", "ge": "kFgGreaterEqual", "lt": "kFgLess", "le": "kFgLessEqual",
        "eq": "kFgEqual", "ne": "kFgNotEqual"}


_REDUCE = {"sum": "kFgReduceSum", "mean": "kFgReduceMean", "max": "kFgReduceMax"}


@dataclass(frozen=True)
class Statement:
    comment: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ParamShape:
    name: str
    dims: tuple[str, ...]  # C expressions of the TFLite tensor shape ([N, K] for matrices)


@dataclass(frozen=True)
class PlanField:
    """An int32 field of the Plan struct beyond the float ones; count > 0 makes it an array."""

    name: str
    count: int = 0

    @property
    def decl(self) -> str:
        return f"int32_t {self.name}[{self.count}];" if self.count else f"int32_t {self.name};"


@dataclass(frozen=True)
class Layout:
    """A scratch layout computed by the plan function: each field gets the running total."""

    comment: str
    entries: tuple[tuple[str, str], ...]  # (Plan field, C size expression)
    total: str  # the Plan field receiving the total


@dataclass(frozen=True)
class EvalContext:
    """One `_eval_<dtype>` function: everything the template's eval body substitutes."""

    dtype: str
    comment: tuple[str, ...]  # the header comment above the declaration
    signature: tuple[str, ...]  # "void <stem>_eval_<dtype>(...)" wrapped, without ; or {
    value_type: str  # element type of states and slots
    x_type: str
    consts: tuple[str, ...]  # declarations
    buffers: tuple[str, ...]  # declarations of slot, hoist and typed param pointers
    bank: str  # where the second state bank starts
    pre: tuple[Statement, ...]
    step: tuple[Statement, ...]
    uses_input_in_step: bool
    output_all: str  # the statement writing step `step` of y (return_sequences)
    output_last: str  # the statement writing y for the last step only
    state_copies: tuple[str, ...]
    copy_back: str  # the statement moving the final states into `states`
    y_type: str = "float"  # element type of y
    y_zero: str = "0.0f"  # C expression of a zero output (a masked step's, zero_output_for_mask)
    preamble: tuple[str, ...] = ()  # file-scope lines before the function (compile-time checks)


@dataclass(frozen=True)
class KernelInput:
    """An op input after the params (the int8 op's qparams and luts; the shell checks them)."""

    name: str  # CamelCase: k<Prefix><name>Tensor
    doc_name: str
    index: int
    doc: str


@dataclass(frozen=True)
class KernelContext:
    """What differs per op and dtype in the TFLM adapter (kernel.h.j2 / kernel.cc.j2); the
    generic logic is the hand-written shell (tflm_kernels/shell/fg_shell.c)."""

    dtype: str
    io_type: str  # TfLiteType of x and y
    type_name: str
    param_types: tuple[str, ...]  # the TfLiteType of each weight input
    extra_inputs: tuple[KernelInput, ...]
    num_inputs: int
    value_type: str  # scratch and state element type
    scratch_field: str  # the Plan field with the scratch size in elements
    param_ptr: str
    params_size: str
    param_read: str  # C expression for params[k]
    state_type: str  # TfLiteType of the state tensors (inputs, variables, outputs)
    eval_call: tuple[str, ...]  # the core's eval call: states in `buffer`, scratch after them
    has_s8_inputs: int = 0  # qparams and luts follow the params
    num_luts: str = "0"
    clamp_rows: tuple[int, ...] = ()  # luts rows that may be clamp rows (FgPlanView)
    qparam_counts: tuple[str, str] = ("0", "0")  # Plan expressions (per tensor, per channel)


def f32_kernel(ctx: CoreContext) -> KernelContext:
    return KernelContext(
        dtype="f32", io_type="kTfLiteFloat32", type_name="float32",
        param_types=("kTfLiteFloat32",) * len(ctx.params), extra_inputs=(),
        num_inputs=OpInputs("f32", len(ctx.params)).first_state, value_type="float",
        scratch_field="scratch_elems", param_ptr="const float*",
        params_size=f"{ctx.op_name}_NUM_PARAMS",
        param_read="tflite::micro::GetTensorData<float>(tflite::micro::GetEvalInput(context, "
                   "node, 1 + k))",
        state_type="kTfLiteFloat32",
        eval_call=(
            f"{ctx.stem}_eval_f32(&data->plan,",
            "    shell::Option(data->shell, kFgOptionReturnSequences),",
            "    shell::Option(data->shell, kFgOptionGoBackwards),",
            "    tflite::micro::GetTensorData<float>(input), params, buffer,",
            "    tflite::micro::GetTensorData<float>(output), buffer + data->plan.state_total,",
            "    shell::Steps(context, node, data->shell, data->plan.timesteps, &steps));",
        ))


@dataclass(frozen=True)
class CoreContext:
    op_name: str  # FUSEGEN_GRU
    stem: str  # fusegen_gru
    prefix: str  # FusegenGru
    ir_text: str
    units_dim: Dim
    input_dim: Dim
    output_width: str
    state_widths: tuple[str, ...]
    state_offsets: tuple[str, ...]
    state_total: str
    slot_widths: tuple[str, ...]
    hoist_widths: tuple[str, ...]
    params: tuple[ParamShape, ...]
    consts: tuple[tuple[str, str], ...]  # (C name, float literal)
    pre: tuple[Statement, ...]
    step: tuple[Statement, ...]
    output_ptr: str
    new_state_ptrs: tuple[str, ...]
    uses_input_in_step: bool
    evals: tuple[EvalContext, ...] = ()
    defines: tuple[tuple[str, str], ...] = ()  # extra #define <OP>_<name> <value> of the header
    plan_fields: tuple[PlanField, ...] = ()
    layouts: tuple[Layout, ...] = ()
    plan_counts: tuple[tuple[str, str], ...] = ()  # (Plan field, int64 C expression)
    kernel: KernelContext | None = None  # the TFLM shell's dtype: s8 if requested, else f32

    def plan_lengths(self) -> dict[str, int]:
        return plan_array_lengths(len(self.state_widths), len(self.params),
                                  len(self.slot_widths), len(self.hoist_widths))

    @property
    def plan_lines(self) -> tuple[str, ...]:
        """The declarations of the Plan struct: abi.PLAN_FIELDS, then the dtypes' fields."""
        lengths = {k: str(v) for k, v in self.plan_lengths().items()}
        lengths |= {"states": f"{self.op_name}_NUM_STATES", "params": f"{self.op_name}_NUM_PARAMS"}
        lines = []
        for f in PLAN_FIELDS:
            dims = (f"[{lengths[f.count]}]" if f.count else "") + ("[2]" if f.pairs else "")
            lines.append(f"int32_t {f.name}{dims};" + (f"  // {f.comment}" if f.comment else ""))
        return tuple(lines) + tuple(f.decl for f in self.plan_fields)


def c_float(value: float) -> str:
    text = repr(float(value))
    if "e" not in text and "." not in text and "inf" not in text:
        text += ".0"
    return text + "f"


def fusable_f32(graph: Graph, index: int) -> bool:
    """An elementwise node a fused loop can compute: operands of its width or broadcast."""
    node = graph.nodes[index]
    if node.op not in UNARY | BINARY and node.op is not Op.WHERE:
        return False
    return all(graph.nodes[j].width in (node.width, SCALAR) for j in node.inputs)


def state_targets(graph: Graph, groups: list[FusedGroup], offsets: list[Dim],
                  exclude: frozenset[int] = frozenset()) -> dict[int, str]:
    """New states a fused loop stores straight into the `next` bank (no copy at the step's end):
    node -> its pointer there. A node that is two states is stored as the first (the other is
    copied from it)."""
    stored = set().union(*(g.stored for g in groups)) - exclude
    targets: dict[int, str] = {}
    for k, j in enumerate(graph.outputs[1:]):
        if j in stored and j not in targets:
            targets[j] = "next" if offsets[k] == Dim() else f"(next + {offsets[k].c_expr()})"
    return targets


def fused_statement(graph: Graph, group: FusedGroup, body: list[str],
                    guard: str | None = None, alt_body: list[str] | None = None) -> Statement:
    """One fused loop over the group's width; with `guard`, `body` runs when it holds and
    `alt_body` otherwise (int8: the power-of-two rescales and the general ones)."""
    first, last = group.nodes[0], group.nodes[-1]
    n = group.width.c_expr()
    comment = (f"%{first}..%{last}: {len(group.nodes)} elementwise ops fused, one loop over "
               f"{n}")

    def loop(lines: list[str], indent: str) -> list[str]:
        return ([f"{indent}for (int32_t i = 0; i < {n}; ++i) {{"]
                + [f"{indent}  {line}" for line in lines] + [f"{indent}}}"])

    if guard is None:
        return Statement(comment, tuple(loop(body, "")))
    return Statement(comment, tuple([f"if ({guard}) {{"] + loop(body, "  ") + ["} else {"]
                                    + loop(alt_body or [], "  ") + ["}"]))


def node_comment(graph: Graph, index: int) -> str:
    node = graph.nodes[index]
    args = ", ".join(f"%{j}" for j in node.inputs)
    return f"%{index} = {node.op.value}({args})" + (f"  [{node.loc}]" if node.loc else "")


class _Emitter:
    def __init__(self, graph: Graph, plan: Plan):
        self.graph, self.plan = graph, plan
        self.consts: dict[float, str] = {}
        self.hoist_index = {j: k for k, j in enumerate(plan.hoisted)}
        self.targets: dict[int, str] = {}  # new states stored straight into `next`

    def width(self, index: int) -> str:
        return self.graph.nodes[index].width.c_expr()

    def ptr(self, index: int) -> str:
        node = self.graph.nodes[index]
        if node.op is Op.SLICE:
            start = node.attr("start")
            base = self.ptr(node.inputs[0])
            return base if start == Dim() else f"({base} + {start.c_expr()})"
        if node.op is Op.INPUT:
            return "x_t"
        if node.op is Op.STATE:
            offset = self.plan.state_offsets()[node.attr("index")]
            return "cur" if offset == Dim() else f"(cur + {offset.c_expr()})"
        if node.op is Op.PARAM:
            return f"params[{node.attr('index')}]"
        if node.op is Op.CONST:
            return "&" + self.const_name(node.attr("value"))
        if index in self.hoist_index:
            return f"(hoist{self.hoist_index[index]} + row * ({self.width(index)}))"
        if index in self.targets:
            return self.targets[index]
        return f"slot{self.plan.slot_of[index]}"

    def const_name(self, value: float) -> str:
        if value not in self.consts:
            self.consts[value] = f"kConst{len(self.consts)}"
        return self.consts[value]

    def statement(self, index: int) -> Statement:
        node = self.graph.nodes[index]
        return Statement(node_comment(self.graph, index), tuple(self.lines(index, node)))

    def step(self) -> tuple[Statement, ...]:
        """The step's statements: fused loops for the runs of elementwise ops, else one runtime
        call per node."""
        graph, nodes = self.graph, self.plan.step_nodes
        groups = elementwise_groups(graph, [j if fusable_f32(graph, j) else None for j in nodes])
        matmuls = [graph.nodes[j] for j in nodes if graph.nodes[j].op is Op.MATMUL]
        accumulated = frozenset(m.inputs[-1] for m in matmuls if m.attr("has_acc"))
        self.targets = state_targets(graph, groups, self.plan.state_offsets(), accumulated)
        at = {g.positions[0]: g for g in groups}
        fused = {p for g in groups for p in g.positions}
        out = []
        for pos, j in enumerate(nodes):
            if pos in at:
                out.append(self.fused(at[pos]))
            elif pos not in fused:
                out.append(self.statement(j))
        return tuple(out)

    def fused(self, group: FusedGroup) -> Statement:
        graph, body = self.graph, []
        done: set[int] = set()
        for j in group.nodes:
            node = graph.nodes[j]
            body.append(f"// {node_comment(graph, j)}")
            args = [self.value(a, done) for a in node.inputs]
            body.append(f"const float v{j} = {self.value_expr(node, args)};")
            if j in group.stored:
                body.append(f"{self.ptr(j)}[i] = v{j};")
            done.add(j)
        return fused_statement(graph, group, body)

    def value(self, index: int, done: set[int]) -> str:
        """Unit i of an operand inside a fused loop."""
        if index in done:
            return f"v{index}"
        node = self.graph.nodes[index]
        if node.op is Op.CONST:
            return self.const_name(node.attr("value"))
        if node.width == SCALAR:
            return f"{self.ptr(index)}[0]"
        return f"{self.ptr(index)}[i]"

    @staticmethod
    def value_expr(node: Node, args: list[str]) -> str:
        if node.op is Op.CLIP:
            return f"fg_f32_clip({args[0]}, {c_float(node.attr('lo'))}, {c_float(node.attr('hi'))})"
        if node.op is Op.POW:
            return f"fg_f32_pow({args[0]}, {c_float(node.attr('exponent'))})"
        if node.op is Op.WHERE:
            return f"fg_f32_where({_CMP[node.attr('cmp')]}, {', '.join(args)})"
        return f"fg_f32_{node.op.value}({', '.join(args)})"

    def lines(self, index: int, node: Node) -> list[str]:
        out, n = self.ptr(index), self.width(index)
        if node.op is Op.MATMUL:
            return self.matmul(index, node)
        if node.op is Op.CLIP:
            lo, hi = c_float(node.attr("lo")), c_float(node.attr("hi"))
            return [f"fg_clip_f32({self.ptr(node.inputs[0])}, {lo}, {hi}, {out}, {n});"]
        if node.op is Op.POW:
            e = c_float(node.attr("exponent"))
            return [f"fg_pow_f32({self.ptr(node.inputs[0])}, {e}, {out}, {n});"]
        if node.op in UNARY:
            op = _RUNTIME_OP[node.op]
            return [f"fg_unary_f32({op}, {self.ptr(node.inputs[0])}, {out}, {n});"]
        if node.op in BINARY:
            a, b = node.inputs
            steps = [0 if self.graph.nodes[j].width == Dim(0, 0, 1) else 1 for j in (a, b)]
            return [f"fg_binary_f32({_RUNTIME_OP[node.op]}, {self.ptr(a)}, {steps[0]}, "
                    f"{self.ptr(b)}, {steps[1]}, {out}, {n});"]
        if node.op is Op.WHERE:
            steps = [0 if self.graph.nodes[j].width == Dim(0, 0, 1) else 1 for j in node.inputs]
            operands = ", ".join(f"{self.ptr(j)}, {s}" for j, s in zip(node.inputs, steps))
            return [f"fg_where_f32({_CMP[node.attr('cmp')]}, {operands}, {out}, {n});"]
        if node.op is Op.CONCAT:
            return self.concat(index, node)
        if node.op is Op.REDUCE:
            x = node.inputs[0]
            return [f"fg_reduce_f32({_REDUCE[node.attr('fn')]}, {self.ptr(x)}, {out}, "
                    f"{self.width(x)});"]
        raise NotImplementedError(f"no C emitter for {node.op.value}")

    def matmul(self, index: int, node: Node) -> list[str]:
        x, w = node.inputs[:2]
        bias = self.ptr(node.inputs[2]) if node.attr("has_bias") else "NULL"
        depth = self.graph.nodes[x].width.c_expr()
        n = self.width(index)
        out = self.ptr(index)
        if index in self.hoist_index:
            k = self.hoist_index[index]
            return [f"fg_matmul_f32(x_rows, x_stride, rows, {depth}, {self.ptr(w)}, {bias}, {n}, "
                    f"hoist{k}, {n}, 0);"]
        if node.attr("has_acc"):
            # y = (acc + x @ W) + bias, read from the accumulator where it is (acc may be y)
            return [f"fg_matmul_acc_f32({self.ptr(x)}, {depth}, {self.ptr(w)}, {bias}, {n}, "
                    f"{self.ptr(node.inputs[-1])}, {out});"]
        return [f"fg_matmul_f32({self.ptr(x)}, 0, 1, {depth}, {self.ptr(w)}, {bias}, {n}, "
                f"{out}, 0, 0);"]

    def concat(self, index: int, node: Node) -> list[str]:
        lines, offset = [], Dim()
        out = self.ptr(index)
        for j in node.inputs:
            dst = out if offset == Dim() else f"({out} + {offset.c_expr()})"
            lines.append(f"fg_copy_f32({self.ptr(j)}, {dst}, {self.width(j)});")
            offset = offset + self.graph.nodes[j].width
        return lines


def add_f32(ctx: CoreContext, graph: Graph) -> CoreContext:
    """`ctx` with the eval_f32 function; the TFLM shell runs it unless another dtype is set."""
    return replace(ctx, evals=ctx.evals + (_f32_eval(ctx),), kernel=ctx.kernel or f32_kernel(ctx))


def used_slots(statements: tuple[Statement, ...], count: int,
               extra: tuple[str, ...] = ()) -> list[int]:
    """The slots the statements name: a value a fused loop keeps in registers leaves its slot
    unused (the plan still reserves it, so the scratch layout does not depend on the fusion)."""
    text = "\n".join([line for s in statements for line in s.lines] + list(extra))
    return [k for k in range(count) if re.search(rf"\bslot{k}\b", text)]


def signature(ctx: CoreContext, dtype: str, groups: list[list[str]]) -> tuple[str, ...]:
    """`void <stem>_eval_<dtype>(` + argument groups, one group per line, aligned."""
    head = f"void {ctx.stem}_eval_{dtype}("
    lines = [head + ", ".join(groups[0])]
    lines += [" " * len(head) + ", ".join(g) for g in groups[1:]]
    return tuple(line + "," for line in lines[:-1]) + (lines[-1] + ")",)


EVAL_COMMENT = (
    "Runs the cell over x[timesteps][input_size]. `states` [state_total] holds the initial states",
    "and receives the final ones. y is [timesteps][output_width] when return_sequences, else",
    "[output_width]. go_backwards reads x from the last timestep, as Keras does. `steps` (NULL:",
    "every step) masks timesteps: see FgSteps in fg_runtime.h.",
)


def _f32_eval(ctx: CoreContext) -> EvalContext:
    groups = [[f"const {ctx.prefix}Plan* plan", "int return_sequences"],
              ["int go_backwards", "const float* x", "const float* const* params"],
              ["float* states", "float* y", "float* scratch"], ["const FgSteps* steps"]]
    buffers = tuple(f"float* const slot{k} = scratch + plan->slot_offset[{k}];"
                    for k in used_slots(ctx.pre + ctx.step, len(ctx.slot_widths),
                                        (ctx.output_ptr, *ctx.new_state_ptrs)))
    buffers += tuple(f"float* const hoist{k} = scratch + plan->hoist_offset[{k}];"
                     for k in range(len(ctx.hoist_widths)))
    copies = tuple(
        f"fg_copy_f32({p}, {dst}, plan->state_width[{k}]);"
        for k, (p, off) in enumerate(zip(ctx.new_state_ptrs, ctx.state_offsets))
        if p != (dst := "next" if off == "0" else f"(next + {off})"))
    return EvalContext(
        dtype="f32", comment=EVAL_COMMENT, signature=signature(ctx, "f32", groups),
        value_type="float", x_type="float",
        consts=tuple(f"const float {name} = {value};" for name, value in ctx.consts),
        buffers=buffers, bank="scratch + plan->bank_offset", pre=ctx.pre, step=ctx.step,
        uses_input_in_step=ctx.uses_input_in_step,
        output_all=f"fg_copy_f32({ctx.output_ptr}, y + step * plan->output_width, "
                   "plan->output_width);",
        output_last=f"fg_copy_f32({ctx.output_ptr}, y, plan->output_width);",
        state_copies=copies, copy_back="fg_copy_f32(cur, states, plan->state_total);")


def base_context(graph: Graph, op_name: str) -> CoreContext:
    plan = make_plan(graph)
    emitter = _Emitter(graph, plan)
    pre = tuple(emitter.statement(j) for j in plan.hoisted)
    step = emitter.step()
    output_ptr = emitter.ptr(graph.outputs[0])
    new_states = tuple(emitter.ptr(j) for j in graph.outputs[1:])
    units_dim = graph.output_width  # u <= 0: units come from the op's options (fg_shell.c)
    stem = op_name.lower()
    prefix = "".join(part.capitalize() for part in stem.split("_"))
    reads = [j for i in plan.step_nodes for j in graph.nodes[i].inputs] + list(graph.outputs)
    step_uses_input = any(graph.nodes[plan.root(j)].op is Op.INPUT for j in reads)
    return CoreContext(
        op_name=op_name, stem=stem, prefix=prefix, ir_text=graph.text(),
        units_dim=units_dim, input_dim=Dim(0, 1, 0),
        output_width=units_dim.c_expr(),
        state_widths=tuple(w.c_expr() for w in graph.state_widths),
        state_offsets=tuple(o.c_expr() for o in plan.state_offsets()),
        state_total=plan.state_total().c_expr(),
        slot_widths=tuple(w.c_expr() for w in plan.slot_widths),
        hoist_widths=tuple(graph.nodes[j].width.c_expr() for j in plan.hoisted),
        params=tuple(_param_shape(p) for p in graph.params),
        consts=tuple((name, c_float(v)) for v, name in emitter.consts.items()),
        pre=pre, step=step, output_ptr=output_ptr, new_state_ptrs=new_states,
        uses_input_in_step=step_uses_input,
    )


def _param_shape(param) -> ParamShape:
    # Matrices are stored transposed, [N][K], so each output's weights are contiguous.
    dims = param.shape[::-1] if len(param.shape) == 2 else param.shape
    return ParamShape(param.name, tuple(d.c_expr() for d in dims))
