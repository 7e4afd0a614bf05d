"""The closed set of operations a fused recurrent cell is made of.

Every value is a vector (batch 1) whose width is a symbolic `Dim`. Passes match on the groups
below; anything the frontend cannot express with these ops is an error at trace time.
"""

from __future__ import annotations

import enum


class Op(enum.Enum):
    # Leaves.
    INPUT = "input"  # x_t, width I
    STATE = "state"  # attrs: index
    PARAM = "param"  # attrs: index (into Graph.params); a weight vector used elementwise
    CONST = "const"  # attrs: value (a float scalar, broadcast)
    # x @ W: inputs (x, W) [+ bias] [+ acc]; attrs: has_bias, has_acc, param (index of W)
    MATMUL = "matmul"
    # Elementwise binary; operands of equal width, or one of width 1 (broadcast).
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"
    # Elementwise unary.
    NEG = "neg"
    SIGMOID = "sigmoid"
    HARD_SIGMOID = "hard_sigmoid"  # relu6(x + 3) / 6, as Keras 3 defines it
    TANH = "tanh"
    RELU = "relu"
    RELU6 = "relu6"
    SOFTSIGN = "softsign"
    SILU = "silu"  # x * sigmoid(x)
    EXP = "exp"
    CLIP = "clip"  # attrs: lo, hi
    ABS = "abs"
    SQUARE = "square"
    SQRT = "sqrt"
    RSQRT = "rsqrt"  # 1 / sqrt(x)
    LOG = "log"
    POW = "pow"  # attrs: exponent (a float constant)
    # (a <cmp> b) ? x : y, elementwise: inputs (a, b, x, y), each of the node's width or of width
    # 1 (broadcast); attrs: cmp, one of CMP. Comparisons exist only inside a where (a comparison
    # used as a number is where(a cmp b, 1, 0)).
    WHERE = "where"
    # A reduction over the feature axis to one value (width 1, broadcast by the elementwise ops
    # that use it): attrs: fn, one of REDUCE_KINDS. Softmax is max, sub, exp, sum, div.
    REDUCE = "reduce"
    # Shape ops.
    SLICE = "slice"  # attrs: start (Dim); width is the node's
    CONCAT = "concat"


CMP = ("gt", "ge", "lt", "le", "eq", "ne")  # the comparisons of Op.WHERE
REDUCE_KINDS = ("sum", "mean", "max")  # the reductions of Op.REDUCE
LEAVES = frozenset({Op.INPUT, Op.STATE, Op.PARAM, Op.CONST})
BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MAXIMUM, Op.MINIMUM})
UNARY = frozenset({
    Op.NEG, Op.SIGMOID, Op.HARD_SIGMOID, Op.TANH, Op.RELU, Op.RELU6, Op.SOFTSIGN, Op.SILU,
    Op.EXP, Op.CLIP, Op.ABS, Op.SQUARE, Op.SQRT, Op.RSQRT, Op.LOG, Op.POW,
})
ELEMENTWISE = BINARY | UNARY
