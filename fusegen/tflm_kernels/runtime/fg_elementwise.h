/* Per-value forms of the runtime's elementwise functions, as static inline C99.
 *
 * A generated core's fused elementwise loop (fusegen/passes/fuse.py groups the ops, codegen
 * writes one loop over the units) calls these for each value, so every value is read and written
 * once per step instead of once per op. The array functions of fg_runtime_f32.c and
 * fg_runtime_q.c (fg_unary_f32, fg_lut_s16, fg_binary_s16, ...) are built from the same
 * functions, so a fused loop and the op-by-op calls give the same bits: float32 because each
 * value goes through the same IEEE single operations in the same order (-ffp-contract=off, no
 * libm for exp/sigmoid/tanh), int16 because the arithmetic is the integer twin's
 * (fusegen/reference/int_interp.py) bit for bit.
 *
 * Names: fg_f32_<op>(value...) for float32, fg_s16_<op>(value..., rescales) for int16. Include
 * after fg_runtime.h; C only (generated cores and the runtime's .c files).
 */
#ifndef TFLM_KERNELS_RUNTIME_FG_ELEMENTWISE_H_
#define TFLM_KERNELS_RUNTIME_FG_ELEMENTWISE_H_

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tflm_kernels/runtime/fg_runtime.h"

#if defined(__GNUC__)
#define FG_INLINE static inline __attribute__((always_inline))
#else
#define FG_INLINE static inline
#endif

/* ---- float32 --------------------------------------------------------------------------------
 * exp, sigmoid and tanh without libm: newlib's expf/tanhf take 83 and 110 instructions per value
 * on a Cortex-M4 (and glibc's differ from them in the last bit); these take about a third of that
 * and are the same IEEE single operations on every target, so the host build and the device agree
 * bit for bit. Error bounds, checked against libm in double over every 2^13-th float bit pattern
 * (524,288 values across all binades and both signs; tests/cpp/fg_runtime_f32_test.cc): exp
 * within 1 ulp of the result (FLT_TRUE_MIN for subnormal results); sigmoid and tanh (cheaper
 * still, absolute bounds) below, with their own measurements. */

FG_INLINE float fg_f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

FG_INLINE uint32_t fg_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

/* e^x. Range reduction x = n ln2 + r, |r| <= ln2 / 2, with ln2 split in two (C1 has 9
 * significant bits, so n * C1 is exact for |n| <= 150 and x - n * C1 is exact by Sterbenz); e^r
 * by Cephes' degree-7 minimax form 1 + r + r^2 P(r); then 2^n put in the exponent field. n is
 * rounded to nearest by the 1.5 * 2^23 trick: adding it leaves round(x log2 e) in the low
 * mantissa bits (default rounding mode, which every caller of this library runs in). NaN and
 * +inf return themselves, x > 88.72 +inf, x < -103.98 (below half the smallest subnormal) +0. */
FG_INLINE float fg_f32_exp(float x) {
  if (!(x < 88.72283935546875f)) return x + INFINITY; /* NaN stays NaN, the rest +inf */
  if (x < -103.97208404541015625f) return 0.0f;
  const float shifter = 12582912.0f; /* 1.5 * 2^23 */
  const float t = x * 1.44269502162933349609375f + shifter;
  const float n = t - shifter;
  const int32_t ni = (int32_t)(fg_f32_bits(t) - fg_f32_bits(shifter)); /* n, as an integer */
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  if (ni >= -126 && ni <= 127) return p * fg_f32_from_bits((uint32_t)(ni + 127) << 23);
  /* 2^n itself is not a normal float: scale in two steps. For n < -126 the first product is
   * exact, so the result is rounded once, into the subnormals. */
  if (ni > 127) return (p * 2.0f) * fg_f32_from_bits((uint32_t)(ni - 1 + 127) << 23);
  return (p * fg_f32_from_bits((uint32_t)(ni + 100 + 127) << 23)) *
         fg_f32_from_bits((uint32_t)(27) << 23);
}

/* Sigmoid and tanh: the two activations of every gated cell, so their cost is the per-unit
 * cost of a step (an LSTM step takes three sigmoids and two tanhs per unit). Both are built on
 * fg_f32_exp2_ratio below, which gives e^y as a quotient P 2^n / Q whose approximation error
 * (1.8e-9 relative) is far below float32's roundings, and take that quotient in the one division
 * they already need: sigmoid = Q / (P 2^n + Q), tanh = (P 2^n - Q) / (P 2^n + Q). About 21
 * instructions each on a Cortex-M4 against 40-50 for the exp above and its range handling; one
 * VDIV each (14 cycles).
 *
 * Why a ratio and not a polynomial for e^y: a degree-5 polynomial for 2^f (the previous form,
 * 1.1e-7 relative approximation error, the best a float32 degree-5 gets on [-1/2, 1/2]) has an
 * error that is a smooth function of the input, so a cell whose gate inputs drift slowly meets
 * the same signed error step after step and its cell state integrates it: a trained LSTM on
 * GunPoint (150 steps) was 1.48e-5 from float64 with it, 1.5e-6 with exactly rounded
 * activations, 3.6e-6 with this form. What remains here is rounding, which changes sign from one
 * input to the next. The ratio also costs two operations fewer than the polynomial (the anchor
 * LSTM, 28 steps x 32 units x 5 activations: 617,320 instructions against 634,320).
 *
 * Measured against libm in double over every float bit pattern (tests/cpp/fg_runtime_f32_test.cc,
 * DISABLED_Exhaustive; the default test sweeps every 2^13-th pattern and a dense grid): sigmoid
 * <= 1.1e-7 and tanh <= 1.6e-7 absolute (FG_F32_SIGMOID_MAX_ABS_ERROR, FG_F32_TANH_MAX_ABS_ERROR;
 * the exhaustive run measured 1.023e-7 at x = 1.7970 and 1.532e-7 at x = 1.4467).
 * Mean signed error over [-2, 2] (what an LSTM's gates see), in float64: sigmoid 3e-11, tanh 0
 * (the polynomial's: +3.7e-9 and -4.7e-9). tanh is odd bit for bit (x -> -x swaps P and Q and
 * inverts 2^n) and tanh(0) = 0 exactly.
 * Not kept: tanh's relative accuracy for tiny |x| (tanh(1e-10) is 0:
 * the absolute error is what is bounded) and the sign of zero (tanh(-0) = +0). Kept: sigmoid(x)
 * for x < 0 is Q / (P 2^n + Q) with 2^n large, so it keeps its relative accuracy (within 4e-6
 * down to x = -87, where it is 1.6e-38), which silu = x * sigmoid(x) needs for large negative x.
 * NaN returns NaN, +-inf the limits (sigmoid 1 and 0, tanh +-1).
 *
 * The numpy twin (fusegen/reference/float_activations.py) performs the same IEEE single
 * operations in the same order, so the host build, the device and the twin agree bit for bit. */
#define FG_F32_SIGMOID_MAX_ABS_ERROR 1.1e-7
#define FG_F32_TANH_MAX_ABS_ERROR 1.6e-7

/* 2^y = p / q for |y| < 126. y = n + f with n = round(y) and |f| <= 1/2 by the shifter trick:
 * adding 1.5 * 2^23 + 127 leaves n + 127 in the low mantissa bits of t (in the default rounding
 * mode), t - shifter is n exactly and y - n is exact. 2^f = P / Q with P = a + f b,
 * Q = a - f b, a = 1 + A2 f^2, b = B1 + B3 f^2 (f b / a approximates tanh(f ln2 / 2), minimax
 * in the relative error of P / Q, fitted for this file; they and the other constants are abi.py's
 * F32_*, in fg_abi.h); p = P 2^n, where 2^n is t's bits shifted left by 23: the shifter's own
 * bits (0x4B40007F) leave nothing but n + 127 in the exponent field, so no integer add or clamp
 * is needed. */
typedef struct {
  float p; /* P 2^n */
  float q; /* Q, within [0.84, 1.19] */
} FgF32Ratio;

FG_INLINE FgF32Ratio fg_f32_exp2_ratio(float y) {
  const float shifter = FG_F32_EXP2_SHIFTER; /* 1.5 * 2^23 + 127 */
  const float t = y + shifter;
  const float f = y - (t - shifter);
  const float f2 = f * f;
  const float a = FG_F32_EXP2_A2 * f2 + 1.0f;
  const float fb = f * (FG_F32_EXP2_B3 * f2 + FG_F32_EXP2_B1);
  FgF32Ratio r;
  r.p = (a + fb) * fg_f32_from_bits(fg_f32_bits(t) << 23);
  r.q = a - fb;
  return r;
}

/* 1 / (1 + e^-x) = Q / (P 2^n + Q). |x| >= 87 (and NaN) take the branch: e^-x would leave 2^y's
 * range; the results there are 1 and 0 (true values within 1.7e-38 of them), NaN. */
FG_INLINE float fg_f32_sigmoid(float x) {
  if (!(fabsf(x) < FG_F32_SIGMOID_LIMIT)) return x > 0.0f ? 1.0f : (x < 0.0f ? 0.0f : x);
  const FgF32Ratio r = fg_f32_exp2_ratio(x * FG_F32_MINUS_LOG2E);
  return r.q / (r.p + r.q);
}

/* (e^2x - 1) / (e^2x + 1) = (P 2^n - Q) / (P 2^n + Q), for either sign of x. |x| >= 9 (and NaN)
 * take the branch: +-1 there is within 3.1e-8. */
FG_INLINE float fg_f32_tanh(float x) {
  if (!(fabsf(x) < FG_F32_TANH_LIMIT)) return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);
  const FgF32Ratio r = fg_f32_exp2_ratio(x * FG_F32_TWO_LOG2E);
  return (r.p - r.q) / (r.p + r.q);
}

FG_INLINE float fg_f32_hard_sigmoid(float x) {
  /* Keras 3 writes relu6(x + 3) / 6 and eager TensorFlow divides. A true division, not a
   * multiplication by a rounded 1/6: the two differ by one ulp on about 15% of inputs
   * (e.g. x = 2). tf.function graphs constant-fold the division into that multiplication, which is
   * within the same ulp. */
  float t = x + 3.0f;
  t = t < 0.0f ? 0.0f : t;
  t = t > 6.0f ? 6.0f : t;
  return t / 6.0f;
}

/* "x < 0 ? 0 : x" rather than fmaxf so NaN propagates and -0 stays -0, as tf.nn.relu. */
FG_INLINE float fg_f32_relu(float x) { return x < 0.0f ? 0.0f : x; }

FG_INLINE float fg_f32_relu6(float x) {
  const float t = x < 0.0f ? 0.0f : x;
  return t > 6.0f ? 6.0f : t;
}

FG_INLINE float fg_f32_softsign(float x) { return x / (1.0f + fabsf(x)); }
FG_INLINE float fg_f32_silu(float x) { return x * fg_f32_sigmoid(x); }
FG_INLINE float fg_f32_neg(float x) { return -x; }
FG_INLINE float fg_f32_abs(float x) { return fabsf(x); }
FG_INLINE float fg_f32_square(float x) { return x * x; }
FG_INLINE float fg_f32_sqrt(float x) { return sqrtf(x); }
FG_INLINE float fg_f32_rsqrt(float x) { return 1.0f / sqrtf(x); }
FG_INLINE float fg_f32_log(float x) { return logf(x); }
FG_INLINE float fg_f32_pow(float x, float exponent) { return powf(x, exponent); }

FG_INLINE float fg_f32_add(float a, float b) { return a + b; }
FG_INLINE float fg_f32_sub(float a, float b) { return a - b; }
FG_INLINE float fg_f32_mul(float a, float b) { return a * b; }
FG_INLINE float fg_f32_div(float a, float b) { return a / b; }
/* tf.maximum / tf.minimum return NaN if either operand is NaN; fmaxf / fminf would drop it.
 * A NaN b already falls through to b, so only a needs the explicit test. */
FG_INLINE float fg_f32_maximum(float a, float b) { return (a > b || isnan(a)) ? a : b; }
FG_INLINE float fg_f32_minimum(float a, float b) { return (a < b || isnan(a)) ? a : b; }

/* min(max(x, lo), hi), NaN propagating; with lo > hi every output is hi. */
FG_INLINE float fg_f32_clip(float x, float lo, float hi) {
  const float t = x < lo ? lo : x;
  return t > hi ? hi : t;
}

/* The comparison of fg_where_f32; -1 for an unknown cmp. */
FG_INLINE int fg_f32_compare(FgCompareOp cmp, float a, float b) {
  switch (cmp) {
    case kFgGreater: return a > b;
    case kFgGreaterEqual: return a >= b;
    case kFgLess: return a < b;
    case kFgLessEqual: return a <= b;
    case kFgEqual: return a == b;
    case kFgNotEqual: return a != b;
  }
  return -1;
}

/* (a <cmp> b) ? x : t; NaN for an unknown cmp (a caller bug, made visible). */
FG_INLINE float fg_f32_where(FgCompareOp cmp, float a, float b, float x, float t) {
  const int c = fg_f32_compare(cmp, a, b);
  return c < 0 ? NAN : (c ? x : t);
}

/* ---- int16 fixed point ----------------------------------------------------------------------
 * Values are int16 held in int32; each operand is brought to its result's scale by a rescale
 * (a QuantizeMultiplier pair, fg_runtime.h). A fused loop prepares its rescales once
 * (fg_s16_rescale), then runs one of three bodies: the power-of-two body (fg_s16_*_p2) when
 * every rescale of the loop is a power of two (FgRescale.p2; for a sum's operands also
 * -12 <= shift <= 2, FgRescale.sum_ok), as calibration makes most of them
 * for fusegen's int16 values; the right-shift body when the sums' rescales are powers of two and
 * the products' allow the right-shift form (FgRescale.right_ok: a product by a parameter vector,
 * whose scale is not a power of two; fg_s16_mul_right); otherwise the general body
 * (fg_s16_*_any), which picks each rescale's form per value. All give MBQM's value bit for
 * bit. */

/* sat16 of an int32: one SSAT with the DSP extension. */
FG_INLINE int32_t fg_s16_clamp(int32_t v) {
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
  int32_t r; /* SSAT by hand: GCC 12's __ssat trips -Wsign-conversion */
  __asm__("ssat %0, #16, %1" : "=r"(r) : "r"(v));
  return r;
#else
  return v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v);
#endif
}

/* a + b and a - b saturated to int32 (QADD/QSUB with the DSP extension). A saturated int32
 * keeps the sign and a magnitude beyond int16, so clamping it further to int16 gives the value
 * the exact sum would. */
FG_INLINE int32_t fg_s32_add_sat(int32_t a, int32_t b) {
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
  int32_t r;
  __asm__("qadd %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  const int64_t v = (int64_t)a + b;
  return (int32_t)(v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : v));
#endif
}

FG_INLINE int32_t fg_s32_sub_sat(int32_t a, int32_t b) {
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
  int32_t r;
  __asm__("qsub %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  const int64_t v = (int64_t)a - b;
  return (int32_t)(v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : v));
#endif
}

/* One (multiplier, shift) pair, unpacked for values with |x| <= 2^bound_log2 (15 for an int16,
 * 30 for the product of two), with the cheapest exact form of its MBQM:
 *   kFgRescaleP2 (p2 = 1): a power of two, (x * step + (x >= -1 ? bias_nonneg : bias_neg)) >>
 *     right1. Multiplier 2^30 and 1 <= shift <= 30 - bound_log2: x * 2^(shift-1), which cannot
 *     saturate (step = 2^(shift-1), biases 0, right1 0); or multiplier 2^30 and -29 <= shift <= 0:
 *     the doubling high multiply by 2^30 is floor((x + 1) / 2) and its rounding division by 2^r
 *     folds into one shift by the nested-floor identity floor((floor(a/2) + c) / 2^r) =
 *     floor((a + 2c) / 2^(r+1)) (step 1, right1 = r + 1, biases 2^r + 1 for x >= -1 and
 *     2^r - 1 below; 1 for r = 0).
 *   kFgRescaleRight: multiplier >= 0 and -31 <= shift <= -2 (a smaller scale, no left shift):
 *     both roundings in one, (hi(q) + 2^(r-2)) >> (r-1) with q = x * multiplier + (x < 0 ? -2^30 :
 *     2^30) and r = -shift (fg_runtime_q.c, kRescaleRight, derives it).
 *   kFgRescaleGeneral: anything else, fg_multiply_by_quantized_multiplier itself. */
enum { kFgRescaleP2, kFgRescaleRight, kFgRescaleGeneral };

typedef struct {
  int32_t multiplier;
  int32_t shift;
  int32_t kind;
  int32_t p2; /* kind == kFgRescaleP2 */
  int32_t step;
  int32_t bias_nonneg;
  int32_t bias_neg;
  int32_t bias_delta; /* bias_neg - bias_nonneg */
  int32_t right1;
  int32_t half2; /* kFgRescaleRight: 2^(r - 2) */
  /* The right-shift form (kFgRescaleRight's arithmetic) whenever it is exact, whatever `kind`
   * says: multiplier >= 0 and -31 <= shift <= -2, which also holds for a power of two with
   * shift <= -2. A fused loop whose products are rescaled this way and whose sums by powers of
   * two (the usual case when a cell multiplies by a parameter vector: the parameter's scale is
   * not a power of two) runs fg_s16_mul_right without a branch per value. */
  int32_t right_ok;
  int32_t right_r1;   /* -shift - 1 */
  int32_t right_half; /* 2^(-shift - 2) */
  /* A sum's operand (fg_s16_apply_p2_s16): kFgRescaleP2 with -12 <= shift <= 2, so that the
   * rescale is (x * 2^k + sign(x) part + bias * 2^k) >> 13 with k = 13 - right1 >= 0, the shift
   * a constant of the code. sum_c: step * 2^k in the low half, -bias_delta * 2^k (0 or 2^(k+1))
   * in the high half; sum_bias: bias_nonneg * 2^k. */
  int32_t sum_ok;
  int32_t sum_c;
  int32_t sum_bias;
} FgRescale;

FG_INLINE FgRescale fg_s16_rescale(int32_t multiplier, int32_t shift, int32_t bound_log2) {
  FgRescale r;
  r.multiplier = multiplier;
  r.shift = shift;
  r.kind = kFgRescaleGeneral;
  r.step = 1;
  r.bias_nonneg = 0;
  r.bias_neg = 0;
  r.right1 = 0;
  r.half2 = 0;
  if (multiplier == (1 << 30) && shift >= 1 && shift <= 30 - bound_log2) {
    r.kind = kFgRescaleP2;
    r.step = (int32_t)1 << (shift - 1);
  } else if (multiplier == (1 << 30) && shift <= 0 && shift >= -29 && bound_log2 <= 30) {
    const int32_t right = -shift;
    r.kind = kFgRescaleP2;
    r.right1 = right + 1;
    r.bias_nonneg = right == 0 ? 1 : ((int32_t)1 << right) + 1;
    r.bias_neg = right == 0 ? 1 : ((int32_t)1 << right) - 1;
  } else if (multiplier >= 0 && shift <= -2 && shift >= -31) {
    r.kind = kFgRescaleRight;
    r.right1 = -shift - 1;
    r.half2 = (int32_t)1 << (-shift - 2);
  }
  r.p2 = r.kind == kFgRescaleP2;
  r.bias_delta = r.bias_neg - r.bias_nonneg;
  r.right_ok = multiplier >= 0 && shift <= -2 && shift >= -31;
  r.right_r1 = r.right_ok ? -shift - 1 : 0;
  r.right_half = r.right_ok ? (int32_t)1 << (-shift - 2) : 0;
  r.sum_ok = r.p2 && shift >= -12 && shift <= 2;
  const int32_t k = r.sum_ok ? 13 - (shift >= 1 ? 0 : r.right1) : 0;
  r.sum_c = r.sum_ok ? (int32_t)(((uint32_t)r.step << k) | ((uint32_t)(-r.bias_delta << k) << 16))
                     : 0;
  r.sum_bias = r.sum_ok ? r.bias_nonneg << k : 0;
  return r;
}

/* MBQM(x) for a power-of-two pair (r->p2 == 1). The bias is picked by the sign bit without a
 * compare: bias_neg - bias_nonneg (0 or -2) masked by x >> 31. The split at x >= 0 instead of
 * x >= -1 gives the same value: at x = -1 the biases are equal (left shifts, right1 == 1) or
 * both give (2^r +- 1 - 1) >> (r + 1) = 0. */
FG_INLINE int32_t fg_s16_apply_p2(const FgRescale* r, int32_t x) {
  return (x * r->step + r->bias_nonneg + ((x >> 31) & r->bias_delta)) >> r->right1;
}

/* fg_s16_apply_p2 of an int16 value x (|x| <= 2^15, held in an int32: the top half of the
 * register is 0 or -1, x's sign) for a pair with r->sum_ok: the numerator and the divisor
 * 2^right1 both times 2^k, k = 13 - right1 (floor(a * 2^k / 2^13) = floor(a / 2^right1)), so
 * the shift is 13 whatever the pair; x * step * 2^k + (x < 0 ? bias_delta * 2^k : 0) is one
 * SMLAD of x's two halves with (step * 2^k, -bias_delta * 2^k) (both <= 2^14, int16), onto
 * bias_nonneg * 2^k (the sum stays below 2^30). Two constants, no shift amount: a sum's
 * operands (fg_s16_binary_p2), every one an int16 value. */
FG_INLINE int32_t fg_s16_apply_p2_s16(const FgRescale* r, int32_t x) {
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
  int32_t sum;
  __asm__("smlad %0, %1, %2, %3" : "=r"(sum) : "r"(x), "r"(r->sum_c), "r"(r->sum_bias));
  return sum >> 13;
#else
  return fg_s16_apply_p2(r, x); /* sum_ok implies p2 */
#endif
}

/* The right-shift form: both roundings of MBQM in one, (hi(q) + 2^(r-2)) >> (r-1) with
 * q = x * multiplier + (x < 0 ? -2^30 : 2^30) and r = -shift (fg_runtime_q.c, kRescaleRight,
 * derives it); exact for multiplier >= 0 and 2 <= r <= 31. */
FG_INLINE int32_t fg_s16_right_form(int32_t x, int32_t multiplier, int32_t half, int32_t r1) {
  /* The nudge is built from the sign bit (2^30 or -2^30 as a bit pattern): no branch. As one
   * int64 whose high word also carries half (hi(q) + half = hi(q + half * 2^32), exact, and
   * |hi(q)| < 2^30 so nothing overflows): its low word is the nudge's bits, its high word half
   * plus the nudge's sign, so one SMLAL adds the product and the rounding is and/orr, add,
   * SMLAL, asr (fg_runtime_q.c's RescaleRightSplit). */
  const uint32_t low = ((uint32_t)x & 0x80000000u) | 0x40000000u;
  const int64_t constant = (int64_t)(half + (x >> 31)) * ((int64_t)1 << 32) + (int64_t)low;
  const int64_t q = (int64_t)x * multiplier + constant;
  return (int32_t)(q >> 32) >> r1;
}

/* MBQM(x) for a pair with r->right_ok (the mixed bodies' products). */
FG_INLINE int32_t fg_s16_apply_right(const FgRescale* r, int32_t x) {
  return fg_s16_right_form(x, r->multiplier, r->right_half, r->right_r1);
}

/* MBQM(x) for any pair. */
FG_INLINE int32_t fg_s16_apply_any(const FgRescale* r, int32_t x) {
  if (r->kind == kFgRescaleP2) return fg_s16_apply_p2(r, x);
  if (r->kind == kFgRescaleRight) return fg_s16_right_form(x, r->multiplier, r->half2, r->right1);
  return fg_multiply_by_quantized_multiplier(x, r->multiplier, r->shift);
}

/* TFLM's int16 LUTLookup with FG_LUT_SEGMENT_BITS-wide segments (fg_runtime.h):
 * lut[k] + ((slope * offset + 2^(b-1)) >> b), slope = lut[k + 1] - lut[k], b the segment bits.
 * Computed as (lut[k] * (2^b - offset) + lut[k + 1] * offset + 2^(b-1)) >> b, the same value
 * (lut[k] * 2^b is a multiple of 2^b, so it moves out of the floor unchanged): two products of
 * int16 by weights in [0, 2^b], one SMLAD with the DSP extension on the two knots read as one
 * word. The sum stays within +-2^(15+b) + 2^(b-1): no overflow. */
FG_INLINE int32_t fg_s16_lut(const int16_t* lut, int32_t x) {
  /* x + 32768 is in [0, 65535]: its top bits pick the segment, its low FG_LUT_SEGMENT_BITS bits
   * the position in it. 32768 is a multiple of 2^FG_LUT_SEGMENT_BITS, so these are (x >> b) +
   * 2^(15-b) and x's own low bits (TFLM's 256 + (x >> 7) and x & 0x7f for its 7-bit segments):
   * the 2^(15-b) goes into the table's address, an arithmetic shift of x makes the segment, and
   * no add is left per value. */
  const int16_t* const middle = lut + (1 << (15 - FG_LUT_SEGMENT_BITS));
  const int32_t index = x >> FG_LUT_SEGMENT_BITS; /* arithmetic: -2^(15-b) .. 2^(15-b) - 1 */
  const int32_t offset = x & ((1 << FG_LUT_SEGMENT_BITS) - 1);
  const int32_t rest = (1 << FG_LUT_SEGMENT_BITS) - offset;
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(__ARM_BIG_ENDIAN)
  /* lut[index] in the low half, lut[index + 1] in the high half (little endian; the word may be
   * unaligned: LDR allows it, memcpy lets the compiler say so). */
  uint32_t knots;
  memcpy(&knots, middle + index, sizeof(knots));
  const uint32_t weights = (uint32_t)rest | ((uint32_t)offset << 16);
  int32_t sum;
  __asm__("smlad %0, %1, %2, %3"
          : "=r"(sum)
          : "r"(knots), "r"(weights), "r"((int32_t)1 << (FG_LUT_SEGMENT_BITS - 1)));
  return sum >> FG_LUT_SEGMENT_BITS;
#else
  return ((int32_t)middle[index] * rest + (int32_t)middle[index + 1] * offset +
          (1 << (FG_LUT_SEGMENT_BITS - 1))) >> FG_LUT_SEGMENT_BITS;
#endif
}

/* A lookup whose exact integer function is clamp(x, lo, hi) (relu, relu6, clip at equal input
 * and output scales; the quantizer's exact_clamp): no table and no interpolation error, two
 * compares. lo <= hi, both int16 (Prepare checks the clamp row). */
FG_INLINE int32_t fg_s16_bound(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

/* 1 if a luts row is a clamp row (abi.clamp_row): knot 0 above the last knot, which no table of
 * relu, relu6 or clip (non-decreasing functions) has. */
FG_INLINE int fg_lut_is_clamp(const int16_t* lut) { return FG_LUT_IS_CLAMP_ROW(lut); }

/* A lookup of a row that may be a clamp row (program.py CLAMP_OPS): the clamp if clamp (its
 * fg_lut_is_clamp), the table otherwise. For the bodies of a fused loop whose rows are not all
 * clamp rows; the clamp bodies test the flags once. */
FG_INLINE int32_t fg_s16_lut_or_bound(int clamp, const int16_t* lut, int32_t x, int32_t lo,
                                      int32_t hi) {
  return clamp ? fg_s16_bound(x, lo, hi) : fg_s16_lut(lut, x);
}

/* sat16(A <op> B), A and B the operands at the output's scale (fg_binary_s16); 0 for an op that
 * is not a rescaled binary op (kFgMul, kFgDiv: a caller bug, made visible). */
FG_INLINE int32_t fg_s16_binary_of(FgBinaryOp op, int32_t va, int32_t vb) {
  switch (op) {
    case kFgAdd: return fg_s16_clamp(fg_s32_add_sat(va, vb));
    case kFgSub: return fg_s16_clamp(fg_s32_sub_sat(va, vb));
    case kFgMaximum: return fg_s16_clamp(va > vb ? va : vb);
    case kFgMinimum: return fg_s16_clamp(va < vb ? va : vb);
    case kFgMul:
    case kFgDiv:
      break;
  }
  return 0;
}

/* The sums' operands are int16 values (loaded, or results of a fused loop's clamps and
 * lookups), so the power-of-two body rescales them in fg_s16_apply_p2_s16's form. */
#define fg_s16_apply_p2_operand fg_s16_apply_p2_s16
#define fg_s16_apply_right_operand fg_s16_apply_right
#define fg_s16_apply_any_operand fg_s16_apply_any
#define FG_S16_BODIES(KIND)                                                                     \
  FG_INLINE int32_t fg_s16_binary_##KIND(FgBinaryOp op, int32_t a, int32_t b,                   \
                                         const FgRescale* ra, const FgRescale* rb) {            \
    return fg_s16_binary_of(op, fg_s16_apply_##KIND##_operand(ra, a),                           \
                            fg_s16_apply_##KIND##_operand(rb, b));                              \
  }                                                                                             \
  /* sat16(MBQM(a * b)): the int32 product of two int16, rescaled once (fg_mul_s16). */         \
  FG_INLINE int32_t fg_s16_mul_##KIND(int32_t a, int32_t b, const FgRescale* r) {               \
    return fg_s16_clamp(fg_s16_apply_##KIND(r, a * b));                                         \
  }                                                                                             \
  /* sat16(MBQM(x)): a value moved to another scale (fg_rescale_s16). */                        \
  FG_INLINE int32_t fg_s16_rescale_##KIND(int32_t x, const FgRescale* r) {                      \
    return fg_s16_clamp(fg_s16_apply_##KIND(r, x));                                             \
  }
FG_S16_BODIES(p2)
FG_S16_BODIES(right)
FG_S16_BODIES(any)
#undef FG_S16_BODIES
#undef fg_s16_apply_p2_operand
#undef fg_s16_apply_right_operand
#undef fg_s16_apply_any_operand

#endif /* TFLM_KERNELS_RUNTIME_FG_ELEMENTWISE_H_ */
