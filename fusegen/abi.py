"""Everything that crosses from Python into C, defined once.

The op's name prefix, its custom options (key, flexbuffer kind, default), the tensor types of
each dtype, the order of the op's inputs per dtype, the fields of the Plan struct, the default
chunk size. The converter writes these (converter/), codegen renders them into the generated C
(templates/), the host runners read them (host/, bench/), and the tests check the round trip:
tests/test_opdef_roundtrip.py (option bytes written here decode to the same values in C) and
tests/test_abi_roundtrip.py (Plan layout and input order seen from C equal these tables).

The fused op's inputs, in order, for either dtype:

    0          x        [1, T, I]        float32, or int8 asymmetric at the input's qparams
    1 .. P     params   one per graph param, in graph order (matrices stored [N, K]);
                        float32, or for int8 typed by role (PARAM_TYPES_S8):
                          matmul matrix     int8  [N, K]  symmetric, per tensor or per channel
                          matmul bias       int32 [N]     operand zero point folded in
                          elementwise       int16 [N]     symmetric per tensor
    P + 1 ..   extras   the dtype's inputs after the params (int8: qparams int32 [Q], then
                        luts int16 [L, FG_LUT_SIZE]; layout in schedule/program.py)
    then       states   [1, width] each, in Keras order (float32, or int16 at the state's own
                        power-of-two scale): the initial states, or with `stateful` variable
                        tensors; optional
    last       mask     with option `mask` (MASK_STEPS): bool [1, T] or [1, T, K], a step is
                        valid where any of its K values is true (Keras' mask, or NOT_EQUAL of
                        the input reduced in the op); MASK_LENGTH: int32 [] or [1], the number
                        of valid steps from the start of x (MASK_INPUT_TYPES; mask_input())
  outputs: y [1, T, W] or [1, W]; with `return_state` the final states, typed like the state
  inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from fusegen.ir import Graph

OP_PREFIX = "FUSEGEN_"

# Largest number of timesteps whose input projection is batched (scratch grows with it): the
# kernel's default FUSEGEN_MAX_CHUNK, and the host runners' default.
MAX_CHUNK = 4

# Lookup tables of the int8 kernels (FG_LUT_SEGMENT_BITS, FG_LUT_SIZE in fg_runtime.h): the
# int16 input range cut into 2^16 / 2^SEGMENT_BITS segments, LUT_SIZE knots.
SEGMENT_BITS = 9
LUT_SIZE = (1 << 16) // (1 << SEGMENT_BITS) + 1  # 129

# The float32 runtime's sigmoid and tanh (fg_elementwise.h) and their numpy twin
# (reference/float_activations.py): e^y as 2^(y log2 e), 2^y = 2^n * 2^f by the shifter trick
# (1.5 * 2^23 + 127: n + 127 lands in t's low mantissa bits) and 2^f on [-1/2, 1/2] as a ratio
# P / Q with P = a + f b, Q = a - f b, a = 1 + A2 f^2, b = B1 + B3 f^2 (2^f = P / Q means
# f b / a = tanh(f ln2 / 2); A2, B1, B3 minimax in the relative error of P / Q, 1.8e-9 with
# these float32 values, so only the roundings remain; sigmoid and tanh take the quotient in their
# one division). Beyond the limits (and for NaN) the functions saturate. Rendered into fg_abi.h
# as exact hexadecimal float literals.
F32_EXP2_SHIFTER = 12583039.0
F32_EXP2_A2 = 0.0480332225561142
F32_EXP2_B1 = 0.3465735912322998
F32_EXP2_B3 = 0.002771040191873908
F32_MINUS_LOG2E = -1.44269502162933349609375  # -log2(e) rounded to float32
F32_TWO_LOG2E = 2.8853900432586669921875  # 2 log2(e) rounded to float32
F32_SIGMOID_LIMIT = 87.0  # |x| >= this: sigmoid is 0 or 1 (2^y would leave its range)
F32_TANH_LIMIT = 9.0  # |x| >= this: tanh is -1 or 1 (within 3.1e-8)


def c_float(value: float) -> str:
    """`value` rounded to float32 as an exact C99 / C++17 hexadecimal float literal."""
    mantissa, exponent = float(np.float32(value)).hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


@dataclass(frozen=True)
class OptionDef:
    key: str
    kind: str  # "bool" or "int" (the flexbuffer type the converter writes, the C reader used)
    default: int
    doc: str

    @property
    def c_type(self) -> str:
        """The C type the kernel reads the option into."""
        return OPTION_C_TYPES[self.kind]

    @property
    def c_enum(self) -> str:
        """Its index in the shell's option array: kFgOption<CamelCaseKey>."""
        return "kFgOption" + "".join(w.capitalize() for w in self.key.split("_"))

    @property
    def c_kind(self) -> str:
        return OPTION_C_KINDS[self.kind]


OPTION_C_TYPES = {"bool": "int", "int": "int64_t"}
OPTION_C_KINDS = {"bool": "kFgOptionKindBool", "int": "kFgOptionKindInt"}  # fg_shell.h


# Every custom option of every fused op. Keys are flexbuffer map keys, read by name in C.
OPTIONS: tuple[OptionDef, ...] = (
    OptionDef("return_sequences", "bool", 0, "output every timestep [1, T, W], else the last [1, W]"),
    OptionDef("go_backwards", "bool", 0, "process the sequence from its last timestep, as Keras"),
    OptionDef("return_state", "bool", 0, "the final states follow y as outputs, in Keras order"),
    OptionDef("stateful", "bool", 0, "the states are variable tensors, the inputs after the "
              "params: kept between invocations, cleared by MicroInterpreter::Reset()"),
    OptionDef("weight_layout", "int", 0, "byte order of the matmul matrices (WEIGHT_LAYOUTS): "
              "0 row-major [N, K] (float32), 1 int8 blocks of 4 rows (abi.pack_s8_matrix)"),
    OptionDef("mask", "int", 0, "0: every step runs; 1: the last input is a bool step mask; "
              "2: the last input is an int32 length (MASK_* in abi.py)"),
    OptionDef("zero_output_for_mask", "bool", 0, "a masked step outputs zeros, else the "
              "previous step's output (Keras' zero_output_for_mask)"),
    OptionDef("units", "int", 0, "the layer's units, written when the output width does not "
              "grow with units (a projection, a fixed-width head); 0: found from the output "
              "width. Prepare checks the output, state and weight shapes against it"),
)

# The `mask` option's values: how the op learns which timesteps are padding.
MASK_NONE, MASK_STEPS, MASK_LENGTH = 0, 1, 2
# TfLiteType codes the shell checks the mask input against (common.h; fg_tflm_shell.h asserts
# them against TFLite's enum).
TFLITE_BOOL, TFLITE_INT32 = 6, 2


def option_values(return_sequences: bool, go_backwards: bool, return_state: bool = False,
                  stateful: bool = False, mask: int = MASK_NONE,
                  zero_output_for_mask: bool = False, units: int = 0) -> dict[str, bool | int]:
    """The options a converter writes for the op's call (weight_layout is the dtype's, added by
    the writer of each dtype: absent means 0, what the float32 file needs; mask and
    zero_output_for_mask only for a masked op; `units` only when non-zero (carries_units)): an
    op that needs none of them keeps the four flags it always had, and the file its bytes."""
    values: dict[str, bool | int] = {
        "return_sequences": bool(return_sequences), "go_backwards": bool(go_backwards),
        "return_state": bool(return_state), "stateful": bool(stateful)}
    if mask != MASK_NONE:
        values |= {"mask": int(mask), "zero_output_for_mask": bool(zero_output_for_mask)}
    if units:
        values["units"] = int(units)
    assert set(values) <= {o.key for o in OPTIONS} - {"weight_layout"}
    return values


def mask_input(num_inputs: int, mask: int) -> int | None:
    """The index of the op's mask (or length) input: its last input, if the op has one."""
    return num_inputs - 1 if mask != MASK_NONE else None


def carries_units(graph: Graph) -> bool:
    """Whether an op of this cell records its units in its options: its output width does not
    grow with units (LSTM with projection, a fixed-width head), so no kernel can find units
    from the output tensor. Input size always comes from x."""
    return graph.output_width.u <= 0


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


# The suffix a dtype adds to the op name (and so to every C symbol and file of its kernel), so
# that the float32 and int8 kernels of one cell can live in one firmware: FUSEGEN_LSTM (float32),
# FUSEGEN_LSTM_S8 (int8), with Register_FUSEGEN_LSTM_S8(), fusegen_lstm_s8_plan(), ...
DTYPE_SUFFIX = {"f32": "", "s8": "_S8"}


def dtype_op_name(base: str, dtype: str) -> str:
    """The op name of `base` (op_name()) for one dtype: FUSEGEN_GRU, FUSEGEN_GRU_S8."""
    try:
        return base + DTYPE_SUFFIX[dtype]
    except KeyError:
        raise ValueError(f"no dtype {dtype!r} (known: {', '.join(DTYPE_SUFFIX)})") from None


# -- tensor types and dtypes -------------------------------------------------------------------

@dataclass(frozen=True)
class TensorType:
    numpy: type
    tflite: str  # the TfLiteType enumerator
    c: str  # the C element type
    name: str  # as users read it

    @property
    def tflite_name(self) -> str:
        """The schema's TensorType name (FLOAT32, INT8, ...)."""
        return self.tflite.removeprefix("kTfLite").upper()


FLOAT32 = TensorType(np.float32, "kTfLiteFloat32", "float", "float32")
INT8 = TensorType(np.int8, "kTfLiteInt8", "int8_t", "int8")
INT16 = TensorType(np.int16, "kTfLiteInt16", "int16_t", "int16")
INT32 = TensorType(np.int32, "kTfLiteInt32", "int32_t", "int32")

# Roles of an int8 op's params (schedule/program.py assigns them) and their tensor types.
PARAM_MATRIX, PARAM_BIAS, PARAM_VECTOR = "matrix", "bias", "vector"
PARAM_TYPES_S8 = {PARAM_MATRIX: INT8, PARAM_BIAS: INT32, PARAM_VECTOR: INT16}


@dataclass(frozen=True)
class InputDef:
    name: str
    type: TensorType
    rank: int
    doc: str

    @property
    def dtype(self) -> type:
        return self.type.numpy

    @property
    def tflite_type(self) -> str:
        return self.type.tflite


@dataclass(frozen=True)
class DtypeABI:
    """One dtype of the fused op: its eval suffix, tensor types and inputs after the params."""

    name: str  # the core's eval suffix: <stem>_eval_<name>
    io: TensorType  # x and y
    state: TensorType  # state inputs, variables and outputs
    extra_inputs: tuple[InputDef, ...]

    def param_types(self, roles: tuple[str, ...] | None, count: int) -> tuple[TensorType, ...]:
        if self.name == "f32":
            return (FLOAT32,) * count
        assert roles is not None and len(roles) == count
        return tuple(PARAM_TYPES_S8[r] for r in roles)


S8_INPUTS: tuple[InputDef, ...] = (
    InputDef("qparams", INT32, 1,
             "channel flag, multipliers, shifts, zero points, per-channel arrays"),
    InputDef("luts", INT16, 2, "one FG_LUT_SIZE-entry table per function of a scale group"),
)
DTYPES: dict[str, DtypeABI] = {
    "f32": DtypeABI("f32", FLOAT32, FLOAT32, ()),
    "s8": DtypeABI("s8", INT8, INT16, S8_INPUTS),
}
# The dtype of an op whose input tensor has this schema type name.
DTYPE_OF_TENSOR = {abi.io.tflite_name: name for name, abi in DTYPES.items()}


def dtype_abi(name: str) -> DtypeABI:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"no dtype {name!r} (known: {', '.join(DTYPES)})") from None


@dataclass(frozen=True)
class OpInputs:
    """The indices of a fused op's inputs for one dtype and number of params."""

    dtype: str
    num_params: int

    @property
    def extras(self) -> tuple[InputDef, ...]:
        return dtype_abi(self.dtype).extra_inputs

    @property
    def params(self) -> range:
        return range(1, 1 + self.num_params)

    @property
    def constants(self) -> int:
        """The constant inputs after x: params and the dtype's extras."""
        return self.num_params + len(self.extras)

    def extra(self, name: str) -> int:
        names = [d.name for d in self.extras]
        return 1 + self.num_params + names.index(name)

    @property
    def first_state(self) -> int:
        """Also the number of inputs without states (kNumInputs in the kernel)."""
        return 1 + self.constants


# -- the Plan struct ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanField:
    """An int32 field of every op's `<Prefix>Plan`. `count` names the array length: "" (a
    scalar), "states", "params" (with pairs: [params][2]), "slots" or "hoists" (at least 1)."""

    name: str
    count: str = ""
    pairs: bool = False
    comment: str = ""


PLAN_FIELDS: tuple[PlanField, ...] = (
    PlanField("input_size"),
    PlanField("units"),
    PlanField("timesteps"),
    PlanField("chunk", comment="timesteps whose input projection is computed in one batch"),
    PlanField("output_width"),
    PlanField("state_width", "states"),
    PlanField("state_total"),
    PlanField("param_rank", "params"),
    PlanField("param_dims", "params", pairs=True),
    PlanField("scratch_elems", comment="elements of scratch eval needs"),
    PlanField("bank_offset"),
    PlanField("slot_offset", "slots"),
    PlanField("hoist_offset", "hoists"),
)


def plan_array_lengths(states: int, params: int, slots: int, hoists: int) -> dict[str, int]:
    """The length of each PlanField.count kind (slot and hoist arrays have at least one)."""
    return {"states": states, "params": params, "slots": max(slots, 1), "hoists": max(hoists, 1)}


# -- int8 lookups that are clamps ---------------------------------------------------------------
# A relu/relu6/clip lookup (schedule/program.py CLAMP_OPS) whose exact integer function is
# clamp(x, lo, hi) runs as that clamp, exactly (a table can be off: relu's top knot, 32768, is
# stored as 32767; a clip bound between knots). Its row of the luts input then holds no table but
# a clamp row: knot 0 above the last knot, which no table of these non-decreasing functions has,
# and lo and hi at knots CLAMP_LO_KNOT and CLAMP_HI_KNOT, lo <= hi (the kernel's Prepare checks).
# The quantizer writes it, the twin and the generated code read it: no qparams, no extra bytes.
CLAMP_LO_KNOT, CLAMP_HI_KNOT = 1, 2


def clamp_row(lo: int, hi: int) -> np.ndarray:
    """The luts row of clamp(x, lo, hi)."""
    row = np.zeros(LUT_SIZE, np.int16)
    row[0], row[-1] = 32767, -32768
    row[CLAMP_LO_KNOT], row[CLAMP_HI_KNOT] = lo, hi
    return row


def row_clamp(row: np.ndarray) -> tuple[int, int] | None:
    """(lo, hi) of a clamp row; None for a table."""
    if int(row[0]) <= int(row[-1]):
        return None
    return int(row[CLAMP_LO_KNOT]), int(row[CLAMP_HI_KNOT])


# -- weight layout -----------------------------------------------------------------------------
def fused_params(bound) -> tuple[np.ndarray, ...]:
    """The op's weight inputs (a BoundGraph's params): matrices transposed to [N, K] (rows
    contiguous per output), float32."""
    return tuple(np.ascontiguousarray(v.T if v.ndim == 2 else v, dtype=np.float32)
                 for v in bound.param_values())


# The byte order of the int8 op's matmul matrices in the .tflite: the order in which
# fg_matmul_s8's inner loop reads them (tflm_kernels/runtime/fg_runtime_q.c), recorded in the op's
# `weight_layout` option and checked by the kernel's Prepare (fg_shell.c) and by validate.py.
# A matrix [N, K] (row n holds output n's K weights) is cut into groups of S8_BLOCK_ROWS = 4
# rows; each group is stored as its blocks of 4 rows x S8_BLOCK_DEPTH = 16 columns, then blocks
# of 4 rows x 4 columns for its remaining whole 32-bit words, then 4 rows x (K % 4) columns; each
# block row by row. The N % 4 rows after the last group stay row-major. Same bytes, same tensor
# shape [N, K], nothing padded: a group is 4K bytes, so every group and every block starts at a
# multiple of 4 bytes from the matrix. The inner loop reads a group front to back with one
# pointer (no row pointers, no stride register), four accumulators in registers; 16-column
# blocks keep each row's 16 bytes contiguous for Helium's 16-lane VMLADAVA and give the
# Cortex-M4 SMLAD loop 64 multiply-accumulates per iteration.
WEIGHT_LAYOUT_ROW_MAJOR = 0
WEIGHT_LAYOUT_S8_BLOCKS = 1
WEIGHT_LAYOUTS = {"f32": WEIGHT_LAYOUT_ROW_MAJOR, "s8": WEIGHT_LAYOUT_S8_BLOCKS}
S8_BLOCK_ROWS = 4
S8_BLOCK_DEPTH = 16


def s8_block_order(rows: int, depth: int) -> np.ndarray:
    """The flat row-major index [n * depth + k] of each stored byte of a [rows, depth] matrix in
    WEIGHT_LAYOUT_S8_BLOCKS: stored[i] = matrix.flat[order[i]]."""
    index = np.arange(rows * depth).reshape(rows, depth)
    groups, full = rows // S8_BLOCK_ROWS, depth // S8_BLOCK_DEPTH * S8_BLOCK_DEPTH
    parts = []
    for g in range(groups):
        block = index[g * S8_BLOCK_ROWS:(g + 1) * S8_BLOCK_ROWS]
        words = depth // 4 * 4
        for k in range(0, full, S8_BLOCK_DEPTH):
            parts.append(block[:, k:k + S8_BLOCK_DEPTH].ravel())
        for k in range(full, words, 4):
            parts.append(block[:, k:k + 4].ravel())
        parts.append(block[:, words:].ravel())
    parts.append(index[groups * S8_BLOCK_ROWS:].ravel())
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def pack_s8_matrix(matrix: np.ndarray) -> np.ndarray:
    """An int8 [N, K] matrix (row-major) in WEIGHT_LAYOUT_S8_BLOCKS, still shaped [N, K]."""
    matrix = np.ascontiguousarray(matrix)
    rows, depth = matrix.shape
    return matrix.ravel()[s8_block_order(rows, depth)].reshape(rows, depth)


def unpack_s8_matrix(stored: np.ndarray) -> np.ndarray:
    """The row-major [N, K] matrix of a WEIGHT_LAYOUT_S8_BLOCKS one (pack_s8_matrix's inverse)."""
    rows, depth = stored.shape
    out = np.empty(rows * depth, stored.dtype)
    out[s8_block_order(rows, depth)] = np.ascontiguousarray(stored).ravel()
    return out.reshape(rows, depth)
