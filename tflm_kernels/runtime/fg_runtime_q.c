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
  /* x + 32768 is in [0, 65535]: its top 9 bits pick the segment, its low 7 bits the position in
   * it. (Same as TFLM's 256 + (x >> 7) and x & 0x7f, without shifting a negative value.) */
  const int32_t biased = (int32_t)x + 32768;
  const int32_t index = biased >> 7;
  const int32_t offset = biased & 0x7f;
  const int32_t base = lut[index];
  const int32_t slope = (int32_t)lut[index + 1] - base;
  /* slope * offset fits easily in int32 (|slope| < 2^16, offset < 2^7); the result lies between
   * lut[index] and lut[index + 1], so it is an int16. */
  const int32_t delta = (slope * offset + 64) >> 7;
  return (int16_t)(base + delta);
}

void fg_matmul_s8(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth, const int8_t* w,
                  const int32_t* bias, const int32_t* multiplier, const int32_t* shift,
                  int32_t cols, const int16_t* acc, int32_t acc_multiplier, int32_t acc_shift,
                  int16_t* y, int32_t y_stride) {
  for (int32_t r = 0; r < rows; ++r) {
    const int8_t* x_row = x + r * x_stride;
    int16_t* y_row = y + r * y_stride;
    const int16_t* acc_row = acc == NULL ? NULL : acc + r * y_stride;
    for (int32_t n = 0; n < cols; ++n) {
      /* The zero point of x lives in bias (bias[n] - zero_point * sum_k w[n][k]), so the inner
       * loop is a plain int8 x int8 dot product, as in TFLM's FullyConnected. */
      const int8_t* w_row = w + n * depth;
      int32_t dot = bias == NULL ? 0 : bias[n];
      for (int32_t k = 0; k < depth; ++k) dot += (int32_t)x_row[k] * (int32_t)w_row[k];
      int64_t out = fg_multiply_by_quantized_multiplier(dot, multiplier[n], shift[n]);
      /* Read acc_row[n] before y_row[n] is written: that is what makes acc == y safe. */
      if (acc_row != NULL) {
        out += fg_multiply_by_quantized_multiplier(acc_row[n], acc_multiplier, acc_shift);
      }
      y_row[n] = Saturate16(out);
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
