/* The portable runtime that fusegen's generated kernels call into.
 *
 * Generated code configures (shapes, buffers, which op), this library computes. It is plain C99
 * with no TFLite/TFLM include, no allocation and no global state, so the same object code runs
 * on the host (GoogleTest, ctypes), on a Cortex-M and inside any TFLM build.
 *
 * All buffers are caller-owned. Counts and strides are in elements. A count <= 0 means "nothing
 * to do". The float32 functions live in fg_runtime_f32.c; the fixed-point ones in fg_runtime_q.c,
 * declared in a section of their own below.
 */
#ifndef TFLM_KERNELS_RUNTIME_FG_RUNTIME_H_
#define TFLM_KERNELS_RUNTIME_FG_RUNTIME_H_

#include <stddef.h>
#include <stdint.h>

#include "tflm_kernels/shell/fg_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Elementwise unary ops. The numbering is part of the ABI between generated code and this
 * library: append new ops at the end. */
typedef enum {
  kFgNeg,
  kFgSigmoid,      /* 1 / (1 + exp(-x)) */
  kFgHardSigmoid,  /* min(max(x + 3, 0), 6) / 6, as Keras 3 */
  kFgTanh,
  kFgRelu,         /* max(x, 0) */
  kFgRelu6,        /* min(max(x, 0), 6) */
  kFgSoftsign,     /* x / (1 + |x|) */
  kFgSilu,         /* x * sigmoid(x) */
  kFgExp,
  /* Elementary math (fg_runtime_f32.c, its "elementary math" section). */
  kFgAbs,          /* |x| */
  kFgSquare,       /* x * x */
  kFgSqrt,         /* sqrt(x); NaN below 0 */
  kFgRsqrt,        /* 1 / sqrt(x) */
  kFgLog           /* natural log; -inf at 0, NaN below 0 */
} FgUnaryOp;

/* Elementwise binary ops: y = a <op> b. Maximum and minimum propagate NaN, as TensorFlow. */
typedef enum { kFgAdd, kFgSub, kFgMul, kFgDiv, kFgMaximum, kFgMinimum } FgBinaryOp;

/* ---- float32 (fg_runtime_f32.c) ------------------------------------------------------------ */

/* y[r*y_stride + n] = (accumulate ? y[r*y_stride + n] : 0) + (bias ? bias[n] : 0)
 *                     + sum_k x[r*x_stride + k] * w[n*depth + k]
 * for r < rows, n < cols. w is row-major [cols][depth] (the TFLM FullyConnected layout). rows > 1
 * is a batched projection (e.g. all timesteps' inputs at once). y must not overlap x, w or bias;
 * y elements outside the [rows][cols] window (stride padding) are left untouched. */
void fg_matmul_f32(const float* x, int32_t x_stride, int32_t rows, int32_t depth, const float* w,
                   const float* bias, int32_t cols, float* y, int32_t y_stride, int accumulate);

/* y[n] = (acc[n] + sum_k x[k] * w[n*depth + k]) + (bias ? bias[n] : 0) for n < cols: one row of
 * fg_matmul_f32 accumulating onto another vector (the hoisted input projection's row) without
 * copying it first; the same rounding order as fg_matmul_f32 with accumulate. acc may equal y;
 * otherwise y must not overlap acc, x, w or bias. */
void fg_matmul_acc_f32(const float* x, int32_t depth, const float* w, const float* bias,
                       int32_t cols, const float* acc, float* y);

/* y[i] = op(x[i]) for i < n. May be in place (x == y). An op outside FgUnaryOp fills y with NaN
 * (there is no error channel; NaN is the loudest failure a float kernel can produce). */
void fg_unary_f32(FgUnaryOp op, const float* x, float* y, int32_t n);

/* y[i] = a[i*a_step] <op> b[i*b_step] for i < n. a_step / b_step are 1 for a vector operand and
 * 0 to broadcast a[0] / b[0]. In place allowed (y == a or y == b). An op outside FgBinaryOp
 * fills y with NaN. */
void fg_binary_f32(FgBinaryOp op, const float* a, int32_t a_step, const float* b, int32_t b_step,
                   float* y, int32_t n);

/* Comparisons of fg_where_f32. Append new ones at the end (ABI). */
typedef enum { kFgGreater, kFgGreaterEqual, kFgLess, kFgLessEqual, kFgEqual, kFgNotEqual } FgCompareOp;

/* y[i] = (a[i*a_step] <cmp> b[i*b_step]) ? x[i*x_step] : t[i*t_step] for i < n (tf.where of a
 * comparison). Steps are 1 for a vector, 0 to broadcast element 0. In place allowed (y may be
 * any operand). A comparison with NaN is false (IEEE), except kFgNotEqual; an unknown cmp fills
 * y with NaN. */
void fg_where_f32(FgCompareOp cmp, const float* a, int32_t a_step, const float* b, int32_t b_step,
                  const float* x, int32_t x_step, const float* t, int32_t t_step, float* y,
                  int32_t n);

/* y[i] = powf(x[i], exponent) (tf.pow with a constant exponent). In place allowed. */
void fg_pow_f32(const float* x, float exponent, float* y, int32_t n);

/* y[i] = min(max(x[i], lo), hi), NaN propagating (tf.clip_by_value). In place allowed. */
void fg_clip_f32(const float* x, float lo, float hi, float* y, int32_t n);

/* y[i] = x[i]. The ranges may overlap. */
void fg_copy_f32(const float* x, float* y, int32_t n);

/* y[i] = value. */
void fg_fill_f32(float* y, float value, int32_t n);

/* ---- int8 / int16 fixed point (fg_runtime_q.c) --------------------------------------------- */
/* Integer arithmetic of the fully quantized kernels (`_eval_s8`). Values at the op boundary are
 * int8 with a zero point; values inside a cell are int16, symmetric; accumulators are int32.
 * Every real scale reaches this library as a (multiplier, shift) pair, computed once at convert
 * time by fusegen/quantize (QuantizeMultiplier below, mirrored there in Python): the real factor
 * is multiplier * 2^(shift - 31). Results saturate to their type, never wrap. Eval is integer-only;
 * only fg_quantize_multiplier touches floating point. fusegen/reference/int_interp.py reproduces
 * every function here bit for bit. */

/* The geometry of a lookup table (FG_LUT_SEGMENT_BITS, FG_LUT_SIZE: fg_abi.h, from abi.py's
 * SEGMENT_BITS and LUT_SIZE): the int16 input range is cut into 2^16 >> FG_LUT_SEGMENT_BITS = 128
 * segments of 512 input steps, and a table holds one knot per segment plus the end point of the last one.
 * (TFLM's int16 tables use 512 segments of 128 steps: 4x the bytes for 1/16 of the
 * interpolation error, which the int8 output does not need.) */

/* TFLM's QuantizeMultiplier: real = multiplier * 2^(shift - 31) with multiplier in [2^30, 2^31),
 * the fraction rounded to nearest, ties away from zero; (0, 0) for real == 0 and real < ~2^-31
 * (flushed, as TFLM), and for what is not a finite real >= 0. Integer-only (it reads the double's
 * bits). Not used by eval: the converter computes the same pairs in Python, and the tests check
 * that the two agree. */
void fg_quantize_multiplier(double real, int32_t* multiplier, int32_t* shift);

/* TFLM's MultiplyByQuantizedMultiplier (gemmlowp double rounding): round(x * real), ties away
 * from zero, computed as RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, m),
 * right). The one difference: x << left saturates to int32 where TFLM would overflow. */
int32_t fg_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

/* TFLM's int16 LUTLookup with FG_LUT_SEGMENT_BITS-wide segments: with b = FG_LUT_SEGMENT_BITS,
 * lut[(x + 32768) >> b] linearly interpolated towards the next knot by the low b bits of x,
 * rounded half up. lut has FG_LUT_SIZE entries. */
int16_t fg_lut_lookup_s16(int16_t x, const int16_t* lut);

/* y[r*y_stride + n] = sat16( (acc ? MBQM(acc[r*y_stride + n], acc_multiplier, acc_shift) : 0)
 *                            + MBQM(bias[n] + sum_k x[r*x_stride + k] * w[n*depth + k],
 *                                   multiplier[c], shift[c]) ),  c = n * channel_step
 * for r < rows, n < cols, where MBQM is fg_multiply_by_quantized_multiplier and w[n*depth + k]
 * the weight of output n, input k. x is int8 with its zero point folded into bias at convert time
 * (bias may be NULL: zero); w is int8 [cols][depth], symmetric, its bytes in the block order
 * FG_WEIGHT_LAYOUT_S8 (fusegen/abi.py pack_s8_matrix: groups of 4 rows as 4 x 16 blocks, 4 x 4
 * blocks, then the last depth % 4 columns; rows after the last group row-major): per output
 * channel (channel_step 1, one multiplier per column) or per tensor (channel_step 0, multiplier[0]
 * and shift[0] for every column). acc may equal y (in place); y must not overlap x, w or bias.
 * The int32 dot product cannot overflow for depth < 2^14. With the DSP extension it takes up to
 * 512 bytes of stack (x widened to int16 pairs). */
void fg_matmul_s8(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth, const int8_t* w,
                  const int32_t* bias, const int32_t* multiplier, const int32_t* shift,
                  int32_t channel_step, int32_t cols, const int16_t* acc, int32_t acc_multiplier,
                  int32_t acc_shift, int16_t* y, int32_t y_stride);

/* y[i] = fg_lut_lookup_s16(x[i], lut): every elementwise function of one argument. In place
 * allowed. */
void fg_lut_s16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n);

/* fg_lut_s16 of a row that may be a clamp row (program.py CLAMP_OPS, abi.clamp_row: knot 0 above
 * the last knot): then y[i] = clamp(x[i], lut[FG_CLAMP_LO_KNOT], lut[FG_CLAMP_HI_KNOT]). */
void fg_lut_or_bound_s16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n);

/* y[i] = sat16( A <op> B ) with A = MBQM(a[i*a_step], a_multiplier, a_shift) and B likewise:
 * both operands are first brought to the output's scale. op is kFgAdd, kFgSub, kFgMaximum or
 * kFgMinimum; any other op fills y with 0 (a caller bug, made visible). Steps as fg_binary_f32.
 * In place allowed. */
void fg_binary_s16(FgBinaryOp op, const int16_t* a, int32_t a_step, const int16_t* b,
                   int32_t b_step, int32_t a_multiplier, int32_t a_shift, int32_t b_multiplier,
                   int32_t b_shift, int16_t* y, int32_t n);

/* y[i] = sat16(MBQM(a[i*a_step] * b[i*b_step], multiplier, shift)): the int32 product of two
 * int16 values, rescaled once. In place allowed. */
void fg_mul_s16(const int16_t* a, int32_t a_step, const int16_t* b, int32_t b_step,
                int32_t multiplier, int32_t shift, int16_t* y, int32_t n);

/* y[i] = sat16(MBQM(x[i], multiplier, shift)): an int16 value moved to another scale. In place
 * allowed. */
void fg_rescale_s16(const int16_t* x, int32_t multiplier, int32_t shift, int16_t* y, int32_t n);

/* y[i] = sat8(MBQM(x[i], multiplier, shift) + zero_point): int16 to asymmetric int8 (the op's
 * output, and the int8 operand of a matmul). */
void fg_requantize_s16_s8(const int16_t* x, int32_t multiplier, int32_t shift, int32_t zero_point,
                          int8_t* y, int32_t n);

/* y[i] = sat16(MBQM(x[i] - zero_point, multiplier, shift)): asymmetric int8 to int16. */
void fg_requantize_s8_s16(const int8_t* x, int32_t zero_point, int32_t multiplier, int32_t shift,
                          int16_t* y, int32_t n);

/* y[i] = x[i]. The ranges may overlap. */
void fg_copy_s16(const int16_t* x, int16_t* y, int32_t n);

/* y[i] = value. */
void fg_fill_s16(int16_t* y, int16_t value, int32_t n);

/* ---- reductions over the feature axis, int8 where and division (the cell ops of issue 14) ---- */

/* Reductions of fg_reduce_f32 / fg_reduce_s16. Append new ones at the end (ABI). */
typedef enum { kFgReduceSum, kFgReduceMean, kFgReduceMax } FgReduceOp;

/* y[0] = sum, mean or max of x[0..n): the sum in index order in float32 (mean = sum / n; the
 * numpy twin adds in the same order); max propagates NaN. n >= 1; y may alias x. An unknown op
 * writes NaN. */
void fg_reduce_f32(FgReduceOp op, const float* x, float* y, int32_t n);

/* y[0] = sat16(MBQM(acc, multiplier, shift)) with acc the sum of x[0..n) in int64 clamped to
 * int32 (sum and mean: the mean's 1/n is folded into the multiplier at convert time) or the
 * max of x. n >= 1; y may alias x. An unknown op writes 0. */
void fg_reduce_s16(FgReduceOp op, const int16_t* x, int32_t multiplier, int32_t shift,
                   int16_t* y, int32_t n);

/* y[i] = sat16(MBQM(q, multiplier, shift)) with q = 2^46 / isqrt(x[i] * 2^30) (~2^31 / sqrt(x),
 * isqrt the floor square root, exact in integers) for x[i] > 0, q = INT32_MAX for x[i] <= 0:
 * 1 / sqrt(x) for a normalisation (real = 1 / (2^31 * sqrt(s_x) * s_y)). In place allowed. */
void fg_rsqrt_s16(const int16_t* x, int32_t multiplier, int32_t shift, int16_t* y, int32_t n);

/* y[i] = sat16(MBQM(q, multiplier, shift)) with q = a*2^15 / b rounded half away from zero and
 * clamped to int32 (b == 0: q = sign(a) * INT32_MAX): a quotient of two int16 values with 15
 * more bits than its operands, then rescaled to y's scale (real = s_a / (s_b * s_y * 2^15)).
 * Steps are 1 for a vector, 0 to broadcast element 0. In place allowed. */
void fg_div_s16(const int16_t* a, int32_t a_step, const int16_t* b, int32_t b_step,
                int32_t multiplier, int32_t shift, int16_t* y, int32_t n);

/* y[i] = (A <cmp> B) ? sat16(MBQM(x, rq[4], rq[5])) : sat16(MBQM(t, rq[6], rq[7])) with
 * A = MBQM(a, rq[0], rq[1]) and B = MBQM(b, rq[2], rq[3]) in int32 at a common comparison scale.
 * rq holds the four (multiplier, shift) pairs, consecutive. Steps as fg_div_s16; in place
 * allowed. An unknown cmp writes 0. */
void fg_where_s16(FgCompareOp cmp, const int16_t* a, int32_t a_step, const int16_t* b,
                  int32_t b_step, const int16_t* x, int32_t x_step, const int16_t* t,
                  int32_t t_step, const int32_t* rq, int16_t* y, int32_t n);

/* ---- masked and variable-length sequences -------------------------------------------------- */

/* Which timesteps of x a masked op runs (fusegen/abi.py, option `mask`). A step t of x (its row,
 * whatever the processing order) is valid if t < length and, with `valid`, any of
 * valid[t*inner .. t*inner + inner - 1] is non-zero (a Keras mask [T], or a NOT_EQUAL of the
 * input [T][inner] reduced here: TFLM has no REDUCE_ANY). A masked step leaves the states as they
 * are and outputs zeros (zero_output) or the previous step's output, as Keras. eval's `steps`
 * NULL: every step is valid. */
typedef struct {
  const uint8_t* valid;  /* [timesteps][inner], or NULL */
  int32_t inner;
  int32_t length;        /* steps at and after it are padding; >= timesteps: none */
  int zero_output;
} FgSteps;

static inline int fg_step_valid(const FgSteps* steps, int32_t t) {
  if (steps == NULL) return 1;
  if (t >= steps->length) return 0;
  if (steps->valid == NULL) return 1;
  for (int32_t k = 0; k < steps->inner; ++k) {
    if (steps->valid[t * steps->inner + k] != 0) return 1;
  }
  return 0;
}

/* [*begin, *end): the processing-order steps from the first valid one to the last; the padded
 * steps before and after (prefix and suffix padding) are not run at all. */
static inline void fg_step_range(const FgSteps* steps, int32_t timesteps, int go_backwards,
                                 int32_t* begin, int32_t* end) {
  int32_t b = 0, e = timesteps;
  while (b < e && !fg_step_valid(steps, go_backwards ? timesteps - 1 - b : b)) ++b;
  while (e > b && !fg_step_valid(steps, go_backwards ? timesteps - e : e - 1)) --e;
  *begin = b;
  *end = e;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TFLM_KERNELS_RUNTIME_FG_RUNTIME_H_ */
