/* Fixed-point half of the portable runtime; see fg_runtime.h for the contract of each function.
 *
 * The rounding is TFLM's reference rounding (gemmlowp's SaturatingRoundingDoublingHighMul and
 * RoundingDivideByPOT, and the int16 LUT interpolation of kernels/internal/common.h), so a fused
 * int8 kernel rounds as TFLM's own int8 LSTM does. fusegen/reference/int_interp.py is the numpy
 * twin of this file: any change here changes it too, and tests/test_int8_runtime.py compares the
 * two over many values.
 *
 * Right shifts of negative values are arithmetic (floor), as on every compiler TFLM supports; the
 * intermediate products that could exceed int32 are computed in int64.
 */
#include "tflm_kernels/runtime/fg_runtime.h"

#include <stddef.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
/* Cortex-M4/M7/M33 with the DSP extension: fg_matmul_s8 does two 16-bit multiply-accumulates
 * per SMLAD. Elsewhere (host, M0/M3) the portable loop runs; both give the same results. */
#include <arm_acle.h>
#define FG_MATMUL_S8_DSP 1
#endif

static int16_t Saturate16(int64_t v) {
  return (int16_t)(v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v));
}

static int8_t Saturate8(int64_t v) {
  return (int8_t)(v < INT8_MIN ? INT8_MIN : (v > INT8_MAX ? INT8_MAX : v));
}

/* gemmlowp::SaturatingRoundingDoublingHighMul: round(a * b / 2^31), ties away from zero; the
 * one overflowing case (INT32_MIN * INT32_MIN) saturates. The division truncates toward zero,
 * which together with the signed nudge rounds half away from zero. */
static int32_t RoundingDoublingHighMul(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp::RoundingDivideByPOT: round(x / 2^exponent), ties away from zero, 0 <= exponent <= 31.
 * The mask is built in int64 so exponent 31 is defined. */
static int32_t RoundingDivideByPot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

void fg_quantize_multiplier(double real, int32_t* multiplier, int32_t* shift) {
  /* TFLM's frexp + round(fraction * 2^31), done on the bits of the double so that this file
   * needs no double-precision arithmetic on an FPU-less or single-precision target (as TFLM's
   * TFLITE_EMULATE_FLOAT variant; that one rounds ties down, this one away from zero, as round()
   * and the Python twin do). real = (2^52 + mantissa) * 2^(biased - 1075) for a normal double,
   * i.e. fraction = (2^52 + mantissa) / 2^53 and exponent = biased - 1022. */
  uint64_t bits = 0;
  memcpy(&bits, &real, sizeof(bits));
  const int32_t biased = (int32_t)((bits >> 52) & 0x7ff);
  const uint64_t mantissa = bits & (((uint64_t)1 << 52) - 1);
  *multiplier = 0;
  *shift = 0;
  /* Zero, subnormals (far below 2^-31), negatives, infinities and NaN: 0, the flushed value. */
  if ((bits >> 63) != 0 || biased == 0 || biased == 0x7ff) return;
  const uint64_t significand = ((uint64_t)1 << 52) | mantissa; /* fraction * 2^53 */
  uint64_t fixed = significand >> 22;                          /* fraction * 2^31, truncated */
  if ((significand & (((uint64_t)1 << 22) - 1)) >= ((uint64_t)1 << 21)) ++fixed; /* ties up */
  int32_t exponent = biased - 1022;
  if (fixed == ((uint64_t)1 << 31)) { /* fraction rounded up to 1.0 */
    fixed >>= 1;
    ++exponent;
  }
  if (exponent < -31) return; /* every product would shift out to zero: flush, as TFLM does */
  *multiplier = (int32_t)fixed;
  *shift = exponent;
}

int32_t fg_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  int32_t right = shift > 0 ? 0 : -shift;
  if (right > 31) right = 31;
  /* Any non-zero int32 shifted left by 31 or more saturates, so 31 bounds the int64 product. */
  const int64_t scaled = (int64_t)x * ((int64_t)1 << (left < 31 ? left : 31));
  const int32_t x_shifted = (int32_t)(scaled < INT32_MIN ? INT32_MIN
                                                         : (scaled > INT32_MAX ? INT32_MAX : scaled));
  return RoundingDivideByPot(RoundingDoublingHighMul(x_shifted, multiplier), right);
}

int16_t fg_lut_lookup_s16(int16_t x, const int16_t* lut) {
  /* x + 32768 is in [0, 65535]: its top bits pick the segment, its low FG_LUT_SEGMENT_BITS bits
   * the position in it. (TFLM's 256 + (x >> 7) and x & 0x7f for its 7-bit segments, without
   * shifting a negative value.) */
  const int32_t biased = (int32_t)x + 32768;
  const int32_t index = biased >> FG_LUT_SEGMENT_BITS;
  const int32_t offset = biased & ((1 << FG_LUT_SEGMENT_BITS) - 1);
  const int32_t base = lut[index];
  const int32_t slope = (int32_t)lut[index + 1] - base;
  /* slope * offset fits easily in int32 (|slope| < 2^16, offset < 2^9); the result lies between
   * lut[index] and lut[index + 1], so it is an int16. */
  const int32_t delta =
      (slope * offset + (1 << (FG_LUT_SEGMENT_BITS - 1))) >> FG_LUT_SEGMENT_BITS;
  return (int16_t)(base + delta);
}

#ifdef FG_MATMUL_S8_DSP
static inline int32_t LoadS8x4(const int8_t* p) {
  int32_t v; /* memcpy: an unaligned 32-bit load (LDR), without breaking aliasing rules */
  memcpy(&v, p, sizeof(v));
  return v;
}

static inline int32_t Ror8(int32_t v) {
  return (int32_t)(((uint32_t)v >> 8) | ((uint32_t)v << 24));
}

/* acc[c] += sum_k x[k] * w[c * depth + k] for four rows of w. Four int8 at a time: SXTB16 widens
 * elements 0 and 2 (and, after a rotate, 1 and 3) to int16 pairs and SMLAD adds both products,
 * so x is widened once for the four rows. The int32 sums are exact (|x * w| <= 2^14, depth <
 * 2^14 and |bias| < 2^30: no overflow), so the summation order does not change the result: it
 * equals the portable loop bit for bit. */
static void DotS8Rows4(const int8_t* x, const int8_t* w, int32_t depth, int32_t acc[4]) {
  const int8_t* w0 = w;
  const int8_t* w1 = w0 + depth;
  const int8_t* w2 = w1 + depth;
  const int8_t* w3 = w2 + depth;
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  int32_t k = 0;
  for (; k + 4 <= depth; k += 4) {
    const int32_t xv = LoadS8x4(x + k);
    const int32_t x02 = __sxtb16(xv);
    const int32_t x13 = __sxtb16(Ror8(xv));
    int32_t wv = LoadS8x4(w0 + k);
    a0 = __smlad(x02, __sxtb16(wv), a0);
    a0 = __smlad(x13, __sxtb16(Ror8(wv)), a0);
    wv = LoadS8x4(w1 + k);
    a1 = __smlad(x02, __sxtb16(wv), a1);
    a1 = __smlad(x13, __sxtb16(Ror8(wv)), a1);
    wv = LoadS8x4(w2 + k);
    a2 = __smlad(x02, __sxtb16(wv), a2);
    a2 = __smlad(x13, __sxtb16(Ror8(wv)), a2);
    wv = LoadS8x4(w3 + k);
    a3 = __smlad(x02, __sxtb16(wv), a3);
    a3 = __smlad(x13, __sxtb16(Ror8(wv)), a3);
  }
  for (; k < depth; ++k) {
    const int32_t xk = x[k];
    a0 += xk * w0[k];
    a1 += xk * w1[k];
    a2 += xk * w2[k];
    a3 += xk * w3[k];
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}
#endif

/* y_row[n] = sat16(MBQM(dot, multiplier[c], shift[c]) + MBQM(acc_row[n], ...)), c as in
 * fg_runtime.h. Reads acc_row[n] before y_row[n] is written: that is what makes acc == y safe. */
static inline void StoreS8Dot(int32_t dot, int32_t n, const int32_t* multiplier,
                              const int32_t* shift, int32_t channel_step, const int16_t* acc_row,
                              int32_t acc_multiplier, int32_t acc_shift, int16_t* y_row) {
  int64_t out = fg_multiply_by_quantized_multiplier(dot, multiplier[n * channel_step],
                                                    shift[n * channel_step]);
  if (acc_row != NULL) {
    out += fg_multiply_by_quantized_multiplier(acc_row[n], acc_multiplier, acc_shift);
  }
  y_row[n] = Saturate16(out);
}

void fg_matmul_s8(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth, const int8_t* w,
                  const int32_t* bias, const int32_t* multiplier, const int32_t* shift,
                  int32_t channel_step, int32_t cols, const int16_t* acc, int32_t acc_multiplier,
                  int32_t acc_shift, int16_t* y, int32_t y_stride) {
  for (int32_t r = 0; r < rows; ++r) {
    const int8_t* x_row = x + r * x_stride;
    int16_t* y_row = y + r * y_stride;
    const int16_t* acc_row = acc == NULL ? NULL : acc + r * y_stride;
    int32_t n = 0;
#ifdef FG_MATMUL_S8_DSP
    for (; n + 4 <= cols; n += 4) {
      int32_t dots[4];
      for (int32_t c = 0; c < 4; ++c) dots[c] = bias == NULL ? 0 : bias[n + c];
      DotS8Rows4(x_row, w + n * depth, depth, dots);
      for (int32_t c = 0; c < 4; ++c) {
        StoreS8Dot(dots[c], n + c, multiplier, shift, channel_step, acc_row, acc_multiplier,
                   acc_shift, y_row);
      }
    }
#endif
    for (; n < cols; ++n) {
      /* The zero point of x lives in bias (bias[n] - zero_point * sum_k w[n][k]), so the inner
       * loop is a plain int8 x int8 dot product, as in TFLM's FullyConnected. */
      const int8_t* w_row = w + n * depth;
      int32_t dot = bias == NULL ? 0 : bias[n];
      for (int32_t k = 0; k < depth; ++k) dot += (int32_t)x_row[k] * (int32_t)w_row[k];
      StoreS8Dot(dot, n, multiplier, shift, channel_step, acc_row, acc_multiplier, acc_shift,
                 y_row);
    }
  }
}

void fg_lut_s16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) y[i] = fg_lut_lookup_s16(x[i], lut);
}

void fg_binary_s16(FgBinaryOp op, const int16_t* a, int32_t a_step, const int16_t* b,
                   int32_t b_step, int32_t a_multiplier, int32_t a_shift, int32_t b_multiplier,
                   int32_t b_shift, int16_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    /* Both operands at the output scale first; the sum is formed in int64 so only the final
     * saturation can clip. */
    const int64_t va = fg_multiply_by_quantized_multiplier(a[i * a_step], a_multiplier, a_shift);
    const int64_t vb = fg_multiply_by_quantized_multiplier(b[i * b_step], b_multiplier, b_shift);
    int64_t out = 0;
    switch (op) {
      case kFgAdd:
        out = va + vb;
        break;
      case kFgSub:
        out = va - vb;
        break;
      case kFgMaximum:
        out = va > vb ? va : vb;
        break;
      case kFgMinimum:
        out = va < vb ? va : vb;
        break;
      case kFgMul:
      case kFgDiv:
        out = 0; /* not a rescaled binary op: fg_mul_s16 multiplies, nothing divides */
        break;
    }
    y[i] = Saturate16(out);
  }
}

void fg_mul_s16(const int16_t* a, int32_t a_step, const int16_t* b, int32_t b_step,
                int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    const int32_t product = (int32_t)a[i * a_step] * (int32_t)b[i * b_step]; /* |p| <= 2^30 */
    y[i] = Saturate16(fg_multiply_by_quantized_multiplier(product, multiplier, shift));
  }
}

void fg_rescale_s16(const int16_t* x, int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    y[i] = Saturate16(fg_multiply_by_quantized_multiplier(x[i], multiplier, shift));
  }
}

void fg_requantize_s16_s8(const int16_t* x, int32_t multiplier, int32_t shift, int32_t zero_point,
                          int8_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    const int64_t v = fg_multiply_by_quantized_multiplier(x[i], multiplier, shift);
    y[i] = Saturate8(v + zero_point);
  }
}

void fg_requantize_s8_s16(const int8_t* x, int32_t zero_point, int32_t multiplier, int32_t shift,
                          int16_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    /* |x - zero_point| <= 255: no overflow before the rescale. */
    y[i] = Saturate16(fg_multiply_by_quantized_multiplier((int32_t)x[i] - zero_point, multiplier,
                                                          shift));
  }
}

void fg_copy_s16(const int16_t* x, int16_t* y, int32_t n) {
  if (n > 0) memmove(y, x, (size_t)n * sizeof(int16_t));
}

void fg_fill_s16(int16_t* y, int16_t value, int32_t n) {
  for (int32_t i = 0; i < n; ++i) y[i] = value;
}
