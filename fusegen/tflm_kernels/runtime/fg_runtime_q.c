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

#if defined(__ARM_FEATURE_MVE)
/* Helium (Cortex-M55): fg_matmul_s8's dot products in fg_runtime_q_mve.h. */
#include "fg_runtime_q_mve.h"
#define FG_MATMUL_S8_MVE 1
#endif

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
/* Cortex-M4/M7/M33 with the DSP extension: fg_matmul_s8 does two 16-bit multiply-accumulates
 * per SMLAD, and the saturations are QADD/QSUB/SSAT. Elsewhere (host, M0/M3) the portable code
 * runs; both give the same results. */
#include <arm_acle.h>
#define FG_MATMUL_S8_DSP 1
#endif

/* sat16/sat8 of an int32: one SSAT with the DSP extension. */
static inline int32_t Clamp16(int32_t v) {
#ifdef FG_MATMUL_S8_DSP
  int32_t r; /* SSAT by hand: GCC 12's __ssat trips -Wsign-conversion */
  __asm__("ssat %0, #16, %1" : "=r"(r) : "r"(v));
  return r;
#else
  return v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v);
#endif
}

static inline int32_t Clamp8(int32_t v) {
#ifdef FG_MATMUL_S8_DSP
  int32_t r; /* SSAT by hand: GCC 12's __ssat trips -Wsign-conversion */
  __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
  return r;
#else
  return v < INT8_MIN ? INT8_MIN : (v > INT8_MAX ? INT8_MAX : v);
#endif
}

/* a + b and a - b saturated to int32: QADD/QSUB with the DSP extension, int64 elsewhere. A
 * saturated int32 keeps the sign and a magnitude beyond int16, so clamping it further to int16 or
 * int8 gives the value the exact sum would. */
static inline int32_t AddSat32(int32_t a, int32_t b) {
#ifdef FG_MATMUL_S8_DSP
  return __qadd(a, b);
#else
  const int64_t v = (int64_t)a + b;
  return (int32_t)(v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : v));
#endif
}

static inline int32_t SubSat32(int32_t a, int32_t b) {
#ifdef FG_MATMUL_S8_DSP
  return __qsub(a, b);
#else
  const int64_t v = (int64_t)a - b;
  return (int32_t)(v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : v));
#endif
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

/* The pieces of one (multiplier, shift) pair that MBQM needs, unpacked once per loop, and the
 * cheapest exact way to apply it to the loop's values (|x| <= 2^bound_log2, see RescaleMake).
 * Every kind returns fg_multiply_by_quantized_multiplier's value bit for bit:
 *   kRescaleGeneral: MBQM itself with the doubling high multiply as one rounding shift:
 *     (a * b + nudge) / 2^31 truncated equals (a * b + 2^30) >> 31 (floored) for either sign of
 *     a * b (for a * b < 0 the truncation is a ceiling: floor((a*b + 1 - 2^30 + 2^31 - 1) /
 *     2^31)); the one overflow, INT32_MIN * INT32_MIN, is kRescaleReference.
 *   kRescaleRight: kRescaleGeneral for shift <= 0 (no left shift, so no int64 saturation).
 *   kRescaleShiftLeft: multiplier 2^30 (a power-of-two scale) and shift >= 1, so right = 0 and
 *     the doubling high multiply by 2^30 is floor((v + 1) / 2) of v = x << shift, which does not
 *     saturate for the loop's bound: the value is x * 2^(shift - 1).
 *   kRescaleHalveRound: multiplier 2^30 and shift <= 0 (right = -shift <= 29): floor((x+1)/2)
 *     then RoundingDivideByPot(., right), which the nested-floor identity floor((floor(a/2) +
 *     c) / 2^right) = floor((a + 2c) / 2^(right+1)) turns into one shift: (x + bias) >>
 *     (right + 1), bias = 2^right + 1 if x >= -1 else 2^right - 1 (1 for right 0). No overflow
 *     for |x| <= 2^30.
 *   kRescaleReference: the multiplier INT32_MIN (never a QuantizeMultiplier output): MBQM's
 *     reference code. */
enum { kRescaleGeneral, kRescaleRight, kRescaleShiftLeft, kRescaleHalveRound, kRescaleReference };

typedef struct {
  int32_t kind;
  int32_t multiplier;
  int32_t shift;
  int32_t left;    /* 0..31 */
  int32_t right;   /* 0..31 */
  int32_t mask;    /* 2^right - 1 */
  int32_t half;    /* mask >> 1 */
  int32_t bias_nonneg; /* kRescaleHalveRound: the bias for x >= -1, and for x < -1 */
  int32_t bias_neg;
  int32_t step;    /* kRescaleShiftLeft: 2^(shift - 1) */
} Rescale;

#if defined(__GNUC__)
#define FG_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FG_ALWAYS_INLINE static inline
#endif

/* bound_log2: every x the loop rescales has |x| <= 2^bound_log2 (15 for int16, 30 for the
 * product of two int16, 31 for any int32). */
FG_ALWAYS_INLINE Rescale RescaleMake(int32_t multiplier, int32_t shift, int32_t bound_log2) {
  Rescale r;
  r.multiplier = multiplier;
  r.shift = shift;
  r.left = shift > 0 ? (shift < 31 ? shift : 31) : 0;
  r.right = shift > 0 ? 0 : (-shift < 31 ? -shift : 31);
  r.mask = (int32_t)(((int64_t)1 << r.right) - 1);
  r.half = r.mask >> 1;
  r.bias_nonneg = r.right == 0 ? 1 : (int32_t)(((int64_t)1 << r.right) + 1);
  r.bias_neg = r.right == 0 ? 1 : (int32_t)(((int64_t)1 << r.right) - 1);
  r.step = r.left > 0 ? (int32_t)1 << (r.left - 1) : 1;
  if (multiplier == INT32_MIN) {
    r.kind = kRescaleReference;
  } else if (multiplier == (1 << 30) && shift >= 1 && shift <= 30 - bound_log2) {
    r.kind = kRescaleShiftLeft; /* |x| * 2^shift <= 2^30: x << shift never saturates */
  } else if (multiplier == (1 << 30) && shift <= 0 && shift >= -29 && bound_log2 <= 30) {
    r.kind = kRescaleHalveRound;
  } else {
    r.kind = r.left == 0 ? kRescaleRight : kRescaleGeneral;
  }
  return r;
}

static int32_t ReferenceMultiplyByQuantizedMultiplier(int32_t x, int32_t multiplier,
                                                      int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  int32_t right = shift > 0 ? 0 : -shift;
  if (right > 31) right = 31;
  /* Any non-zero int32 shifted left by 31 or more saturates, so 31 bounds the int64 product. */
  const int64_t scaled = (int64_t)x * ((int64_t)1 << (left < 31 ? left : 31));
  const int32_t x_shifted = (int32_t)(scaled < INT32_MIN ? INT32_MIN
                                                         : (scaled > INT32_MAX ? INT32_MAX : scaled));
  return RoundingDivideByPot(RoundingDoublingHighMul(x_shifted, multiplier), right);
}

/* MBQM(x, r->multiplier, r->shift) by r->kind; `kind` is r->kind, passed separately so that a
 * loop dispatching on it once gets a specialised body. */
FG_ALWAYS_INLINE int32_t RescaleApply(const Rescale* r, int32_t kind, int32_t x) {
  switch (kind) {
    case kRescaleShiftLeft:
      return x * r->step;
    case kRescaleHalveRound:
      return (x + (x >= -1 ? r->bias_nonneg : r->bias_neg)) >> (r->right + 1);
    case kRescaleRight: {
      const int32_t h = (int32_t)(((int64_t)x * r->multiplier + ((int64_t)1 << 30)) >> 31);
      const int32_t threshold = r->half + (h < 0 ? 1 : 0);
      return (h >> r->right) + ((h & r->mask) > threshold ? 1 : 0);
    }
    case kRescaleGeneral: {
      int32_t v = x;
      if (r->left > 0) {
        const int64_t scaled = (int64_t)x * ((int64_t)1 << r->left);
        v = (int32_t)(scaled < INT32_MIN ? INT32_MIN : (scaled > INT32_MAX ? INT32_MAX : scaled));
      }
      const int32_t h = (int32_t)(((int64_t)v * r->multiplier + ((int64_t)1 << 30)) >> 31);
      const int32_t threshold = r->half + (h < 0 ? 1 : 0);
      return (h >> r->right) + ((h & r->mask) > threshold ? 1 : 0);
    }
    default:
      return ReferenceMultiplyByQuantizedMultiplier(x, r->multiplier, r->shift);
  }
}

int32_t fg_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  const Rescale r = RescaleMake(multiplier, shift, 31);
  return RescaleApply(&r, r.kind, x);
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

/* SXTB16 of v rotated right by 8 (bytes 1 and 3 widened), one instruction: GCC 12 does not fold
 * the rotate of __sxtb16(__ror(v, 8)) into the SXTB16. */
static inline int32_t Sxtb16Ror8(int32_t v) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}

/* acc[c] = bias[c] (0 without bias) + sum_k x[k] * w[c * depth + k] for four rows of w. Four int8 at a time: SXTB16 widens
 * elements 0 and 2 (and, after a rotate, 1 and 3) to int16 pairs and SMLAD adds both products,
 * so x is widened once for the four rows. The int32 sums are exact (|x * w| <= 2^14, depth <
 * 2^14 and |bias| < 2^30: no overflow), so the summation order does not change the result: it
 * equals the portable loop bit for bit. */
static void DotS8Rows4(const int8_t* x, const int8_t* w, int32_t depth, const int32_t* bias,
                       int32_t acc[4]) {
  /* Five base pointers and one index (register-offset loads): 14 live registers, no spills. */
  const int8_t* const w0 = w;
  const int8_t* const w1 = w0 + depth;
  const int8_t* const w2 = w1 + depth;
  const int8_t* const w3 = w2 + depth;
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  if (bias != NULL) {
    a0 = bias[0];
    a1 = bias[1];
    a2 = bias[2];
    a3 = bias[3];
  }
  const int32_t depth4 = depth & ~3;
  int32_t k = 0;
  for (; k < depth4; k += 4) {
    const int32_t xv = LoadS8x4(x + k);
    const int32_t x02 = __sxtb16(xv);
    const int32_t x13 = Sxtb16Ror8(xv);
    int32_t wv = LoadS8x4(w0 + k);
    a0 = __smlad(x02, __sxtb16(wv), a0);
    a0 = __smlad(x13, Sxtb16Ror8(wv), a0);
    wv = LoadS8x4(w1 + k);
    a1 = __smlad(x02, __sxtb16(wv), a1);
    a1 = __smlad(x13, Sxtb16Ror8(wv), a1);
    wv = LoadS8x4(w2 + k);
    a2 = __smlad(x02, __sxtb16(wv), a2);
    a2 = __smlad(x13, Sxtb16Ror8(wv), a2);
    wv = LoadS8x4(w3 + k);
    a3 = __smlad(x02, __sxtb16(wv), a3);
    a3 = __smlad(x13, Sxtb16Ror8(wv), a3);
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

/* y_row[n0 + c] = sat16(MBQM(dots[c], ...) + MBQM(acc_row[n0 + c], ...)) for c < count, the
 * store of fg_matmul_s8. dot_kind is the kind of the per-tensor dot_rescale, or -1 for a
 * rescale per channel (made here, column by column); acc_kind that of acc_rescale. Both are
 * constants where MatmulRow is called, so each call gets its own straight-line body. Reads
 * acc_row[n] before y_row[n] is written: that is what makes acc == y safe. */
FG_ALWAYS_INLINE void StoreRow(const int32_t* dots, int32_t n0, int32_t count,
                               const int32_t* multiplier, const int32_t* shift,
                               const Rescale* dot_rescale, int32_t dot_kind,
                               const int16_t* acc_row, const Rescale* acc_rescale, int32_t acc_kind,
                               int16_t* y_row) {
  for (int32_t c = 0; c < count; ++c) {
    const int32_t n = n0 + c;
    int32_t out;
    if (dot_kind < 0) {
      const Rescale r = RescaleMake(multiplier[n], shift[n], 31);
      out = RescaleApply(&r, r.kind, dots[c]);
    } else {
      out = RescaleApply(dot_rescale, dot_kind, dots[c]);
    }
    if (acc_row != NULL) out = AddSat32(out, RescaleApply(acc_rescale, acc_kind, acc_row[n]));
    y_row[n] = (int16_t)Clamp16(out);
  }
}

/* One row of fg_matmul_s8 (kinds as StoreRow). */
FG_ALWAYS_INLINE void MatmulRow(const int8_t* x_row, int32_t depth, const int8_t* w,
                                const int32_t* bias, const int32_t* multiplier,
                                const int32_t* shift, const Rescale* dot_rescale, int32_t dot_kind,
                                int32_t cols, const int16_t* acc_row, const Rescale* acc_rescale,
                                int32_t acc_kind, int16_t* y_row) {
  int32_t n = 0;
#ifdef FG_MATMUL_S8_MVE
  if (dot_kind == kRescaleRight && (acc_row == NULL || acc_kind == kRescaleShiftLeft)) {
    /* The usual case, stored four columns at a time: the dot rescale, the accumulator (its
     * power-of-two scale is a multiplication), the saturating add and the int16 clamp as
     * vectors, each equal to StoreRow's scalar arithmetic. acc_row is read before y_row is
     * written (acc == y is allowed). */
    for (; n + 4 <= cols; n += 4) {
      int32_t dots[4];
      FgMveDotS8Rows4(x_row, w + n * depth, depth, bias == NULL ? NULL : bias + n, dots);
      int32x4_t out = FgMveRescaleRight(vld1q_s32(dots), dot_rescale->multiplier,
                                        dot_rescale->right);
      if (acc_row != NULL) {
        out = vqaddq_s32(out, vmulq_n_s32(vldrhq_s32(acc_row + n), acc_rescale->step));
      }
      out = vmaxq_s32(vminq_s32(out, vdupq_n_s32(INT16_MAX)), vdupq_n_s32(INT16_MIN));
      vstrhq_s32(y_row + n, out);
    }
  }
  for (; n + 4 <= cols; n += 4) {
    int32_t dots[4];
    FgMveDotS8Rows4(x_row, w + n * depth, depth, bias == NULL ? NULL : bias + n, dots);
    StoreRow(dots, n, 4, multiplier, shift, dot_rescale, dot_kind, acc_row, acc_rescale, acc_kind,
             y_row);
  }
  for (; n < cols; ++n) {
    const int32_t dot = FgMveDotS8Row(x_row, w + n * depth, depth, bias == NULL ? NULL : bias + n);
    StoreRow(&dot, n, 1, multiplier, shift, dot_rescale, dot_kind, acc_row, acc_rescale, acc_kind,
             y_row);
  }
#endif
#ifdef FG_MATMUL_S8_DSP
  for (; n + 4 <= cols; n += 4) {
    int32_t dots[4];
    DotS8Rows4(x_row, w + n * depth, depth, bias == NULL ? NULL : bias + n, dots);
    StoreRow(dots, n, 4, multiplier, shift, dot_rescale, dot_kind, acc_row, acc_rescale, acc_kind,
             y_row);
  }
#endif
  for (; n < cols; ++n) {
    /* The zero point of x lives in bias (bias[n] - zero_point * sum_k w[n][k]), so the inner
     * loop is a plain int8 x int8 dot product, as in TFLM's FullyConnected. */
    const int8_t* w_row = w + n * depth;
    int32_t dot = bias == NULL ? 0 : bias[n];
    for (int32_t k = 0; k < depth; ++k) dot += (int32_t)x_row[k] * (int32_t)w_row[k];
    StoreRow(&dot, n, 1, multiplier, shift, dot_rescale, dot_kind, acc_row, acc_rescale, acc_kind,
             y_row);
  }
}

void fg_matmul_s8(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth, const int8_t* w,
                  const int32_t* bias, const int32_t* multiplier, const int32_t* shift,
                  int32_t channel_step, int32_t cols, const int16_t* acc, int32_t acc_multiplier,
                  int32_t acc_shift, int16_t* y, int32_t y_stride) {
  const Rescale dot_rescale = RescaleMake(multiplier[0], shift[0], 31);
  const Rescale acc_rescale = RescaleMake(acc_multiplier, acc_shift, 15);
  const int32_t dot_kind = channel_step != 0 ? -1 : dot_rescale.kind;
  for (int32_t r = 0; r < rows; ++r) {
    const int8_t* x_row = x + r * x_stride;
    int16_t* y_row = y + r * y_stride;
    const int16_t* acc_row = acc == NULL ? NULL : acc + r * y_stride;
    /* Bodies for the usual cases (a per-tensor rescale with no left shift; no accumulator, or
     * one with a power-of-two scale), one generic body for the rest. */
    if (dot_kind == kRescaleRight && acc == NULL) {
      MatmulRow(x_row, depth, w, bias, multiplier, shift, &dot_rescale, kRescaleRight, cols, NULL,
                &acc_rescale, kRescaleGeneral, y_row);
    } else if (dot_kind == kRescaleRight && acc_rescale.kind == kRescaleShiftLeft) {
      MatmulRow(x_row, depth, w, bias, multiplier, shift, &dot_rescale, kRescaleRight, cols,
                acc_row, &acc_rescale, kRescaleShiftLeft, y_row);
    } else {
      MatmulRow(x_row, depth, w, bias, multiplier, shift, &dot_rescale, dot_kind, cols, acc_row,
                &acc_rescale, acc_rescale.kind, y_row);
    }
  }
}

void fg_lut_s16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n) {
#ifdef FG_MATMUL_S8_MVE
  /* Each vector's lanes are read before they are written: in place (x == y) stays allowed. */
  FgMveLutS16(lut, x, y, n, FG_LUT_SEGMENT_BITS);
  return;
#endif
  for (int32_t i = 0; i < n; ++i) y[i] = fg_lut_lookup_s16(x[i], lut);
}

/* sat16(A <op> B) for one (op, kind of a, kind of b): the body of fg_binary_s16. */
FG_ALWAYS_INLINE void BinaryLoop(FgBinaryOp op, const int16_t* a, int32_t a_step,
                                 const int16_t* b, int32_t b_step, const Rescale* ra,
                                 int32_t a_kind, const Rescale* rb, int32_t b_kind, int16_t* y,
                                 int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    /* Both operands at the output scale first; only the final saturation clips. */
    const int32_t va = RescaleApply(ra, a_kind, a[i * a_step]);
    const int32_t vb = RescaleApply(rb, b_kind, b[i * b_step]);
    int32_t out = 0;
    switch (op) {
      case kFgAdd:
        out = Clamp16(AddSat32(va, vb));
        break;
      case kFgSub:
        out = Clamp16(SubSat32(va, vb));
        break;
      case kFgMaximum:
        out = Clamp16(va > vb ? va : vb);
        break;
      case kFgMinimum:
        out = Clamp16(va < vb ? va : vb);
        break;
      case kFgMul:
      case kFgDiv:
        out = 0; /* not a rescaled binary op: fg_mul_s16 multiplies, nothing divides */
        break;
    }
    y[i] = (int16_t)out;
  }
}

void fg_binary_s16(FgBinaryOp op, const int16_t* a, int32_t a_step, const int16_t* b,
                   int32_t b_step, int32_t a_multiplier, int32_t a_shift, int32_t b_multiplier,
                   int32_t b_shift, int16_t* y, int32_t n) {
  const Rescale ra = RescaleMake(a_multiplier, a_shift, 15);
  const Rescale rb = RescaleMake(b_multiplier, b_shift, 15);
  if (ra.kind == kRescaleHalveRound && rb.kind == kRescaleHalveRound) {
    /* Two power-of-two operand scales (the usual case): one body per op. */
    switch (op) {
      case kFgAdd:
        BinaryLoop(kFgAdd, a, a_step, b, b_step, &ra, kRescaleHalveRound, &rb,
                   kRescaleHalveRound, y, n);
        return;
      case kFgSub:
        BinaryLoop(kFgSub, a, a_step, b, b_step, &ra, kRescaleHalveRound, &rb,
                   kRescaleHalveRound, y, n);
        return;
      default:
        break;
    }
  }
  BinaryLoop(op, a, a_step, b, b_step, &ra, ra.kind, &rb, rb.kind, y, n);
}

void fg_mul_s16(const int16_t* a, int32_t a_step, const int16_t* b, int32_t b_step,
                int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  const Rescale r = RescaleMake(multiplier, shift, 30); /* |a * b| <= 2^30 */
  if (r.kind == kRescaleHalveRound) {
    for (int32_t i = 0; i < n; ++i) {
      const int32_t product = (int32_t)a[i * a_step] * (int32_t)b[i * b_step];
      y[i] = (int16_t)Clamp16(RescaleApply(&r, kRescaleHalveRound, product));
    }
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    const int32_t product = (int32_t)a[i * a_step] * (int32_t)b[i * b_step];
    y[i] = (int16_t)Clamp16(RescaleApply(&r, r.kind, product));
  }
}

void fg_rescale_s16(const int16_t* x, int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  const Rescale r = RescaleMake(multiplier, shift, 15);
  for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)Clamp16(RescaleApply(&r, r.kind, x[i]));
}

void fg_requantize_s16_s8(const int16_t* x, int32_t multiplier, int32_t shift, int32_t zero_point,
                          int8_t* y, int32_t n) {
  const Rescale r = RescaleMake(multiplier, shift, 15);
  if (r.kind == kRescaleRight) { /* the usual case: a smaller scale, not a power of two */
    for (int32_t i = 0; i < n; ++i) {
      y[i] = (int8_t)Clamp8(AddSat32(RescaleApply(&r, kRescaleRight, x[i]), zero_point));
    }
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    y[i] = (int8_t)Clamp8(AddSat32(RescaleApply(&r, r.kind, x[i]), zero_point));
  }
}

void fg_requantize_s8_s16(const int8_t* x, int32_t zero_point, int32_t multiplier, int32_t shift,
                          int16_t* y, int32_t n) {
  const Rescale r = RescaleMake(multiplier, shift, 31);
  for (int32_t i = 0; i < n; ++i) {
    /* |x - zero_point| <= 255: no overflow before the rescale. */
    y[i] = (int16_t)Clamp16(RescaleApply(&r, r.kind, (int32_t)x[i] - zero_point));
  }
}

void fg_copy_s16(const int16_t* x, int16_t* y, int32_t n) {
  if (n > 0) memmove(y, x, (size_t)n * sizeof(int16_t));
}

void fg_fill_s16(int16_t* y, int16_t value, int32_t n) {
  for (int32_t i = 0; i < n; ++i) y[i] = value;
}
