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
#include "tflm_kernels/runtime/fg_elementwise.h"

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
 *   kRescaleRight: shift <= -2 and multiplier >= 0 (no left shift, so no int64 saturation):
 *     both roundings in one. With P = x * multiplier, r = right >= 1, h = floor((P + 2^30) /
 *     2^31) and RoundingDivideByPot(h, r) = floor((h + 2^(r-1) - [h < 0]) / 2^r), the nested-floor
 *     identity gives floor((P + 2^30 + 2^(30+r) - [h < 0] 2^31) / 2^(31+r)), and [h < 0] may be
 *     replaced by [x < 0]: they differ only when x < 0 and h = 0, i.e. -2^30 <= P < 0, where
 *     both versions give 0 (the numerator is then in [0, 2^(31+r))). So: one multiply-accumulate
 *     onto a constant made from the sign of x, and the high word rounded and shifted right
 *     (RescaleRightSplit). Exact for every int32 x. (shift -1 is kRescaleGeneral.)
 *   kRescaleHighMul: shift 0 and multiplier >= 0: the doubling high multiply alone (right = 0).
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
enum {
  kRescaleGeneral,
  kRescaleRight,
  kRescaleShiftLeft,
  kRescaleHalveRound,
  kRescaleReference,
  kRescaleHighMul
};

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
  int32_t half2;   /* kRescaleRight: 2^(right - 2) */
} Rescale;

/* kRescaleRight's arithmetic, for right = sh + 1 >= 2 and multiplier >= 0, half2 = 2^(right-2):
 * with q = x * multiplier + (x < 0 ? -2^30 : 2^30) (that is P + 2^30 - [x < 0] 2^31), the
 * result floor((q + 2^(30+r)) / 2^(31+r)) is (hi(q) + 2^(r-2)) >> (r-1), since 2^(30+r) is a
 * multiple of 2^32 for r >= 2; |hi(q)| < 2^30, so the add cannot overflow. The constant is built
 * from the sign bit (x >> 31 shifted to bit 31, or 2^30) rather than selected: no branch, no
 * constant registers. */
static inline int32_t RescaleRightSplit(int32_t x, int32_t multiplier, int32_t half2, int32_t sh) {
  const int32_t nudge = (int32_t)(((uint32_t)(x >> 31) << 31) | ((uint32_t)1 << 30));
  const int64_t q = (int64_t)x * multiplier + nudge;
  return ((int32_t)(q >> 32) + half2) >> sh;
}

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
  r.half2 = r.right >= 2 ? (int32_t)1 << (r.right - 2) : 0;
  if (multiplier == INT32_MIN) {
    r.kind = kRescaleReference;
  } else if (multiplier == (1 << 30) && shift >= 1 && shift <= 30 - bound_log2) {
    r.kind = kRescaleShiftLeft; /* |x| * 2^shift <= 2^30: x << shift never saturates */
  } else if (multiplier == (1 << 30) && shift <= 0 && shift >= -29 && bound_log2 <= 30) {
    r.kind = kRescaleHalveRound;
  } else {
    r.kind = r.left > 0 || multiplier < 0 || r.right == 1
                 ? kRescaleGeneral
                 : (r.right == 0 ? kRescaleHighMul : kRescaleRight);
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
    case kRescaleRight:
      return RescaleRightSplit(x, r->multiplier, r->half2, r->right - 1);
    case kRescaleHighMul:
      return (int32_t)(((int64_t)x * r->multiplier + ((int64_t)1 << 30)) >> 31);
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

/* MBQM(x, multiplier, shift) for a per-channel pair, unpacked per output: shift <= -2 (right >=
 * 2) and multiplier >= 0 take kRescaleRight's one rounding with its constant split in two: with
 * q = x * multiplier + (x < 0 ? -2^30 : 2^30) (P + 2^30 - [x < 0] 2^31), the result
 * floor((q + 2^(30+r)) / 2^(31+r)) is (hi(q) + 2^(r-2)) >> (r-1), since 2^(30+r) is a multiple of
 * 2^32 for r >= 2; |hi(q)| < 2^30, so the add cannot overflow. Other pairs: the general code. */
FG_ALWAYS_INLINE int32_t RescalePerChannel(int32_t x, int32_t multiplier, int32_t shift) {
  if (shift <= -2 && shift >= -31 && multiplier >= 0) {
    return RescaleRightSplit(x, multiplier, (int32_t)1 << (-shift - 2), -shift - 1);
  }
  const Rescale r = RescaleMake(multiplier, shift, 31);
  return RescaleApply(&r, r.kind, x);
}

int32_t fg_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
  const Rescale r = RescaleMake(multiplier, shift, 31);
  return RescaleApply(&r, r.kind, x);
}

int16_t fg_lut_lookup_s16(int16_t x, const int16_t* lut) {
  return (int16_t)fg_s16_lut(lut, x); /* fg_elementwise.h */
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
/* Not inlined: the asm needs 13 free registers, which the callers' loops do not leave. */
static __attribute__((noinline)) void DotS8Rows4(const int8_t* x, const int8_t* w, int32_t depth,
                                                 const int32_t* bias, int32_t acc[4]) {
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
  int32_t k = 0;
  if (depth >= 4) {
    /* Hand-scheduled: GCC's version of this loop spills two row pointers and the bound at every
     * -O level (30 instructions per 16 MACs); this one keeps all 13 values in registers and takes
     * 25. Rows 1 and 3 are read at [row 0 + depth] and [row 2 + depth], so two post-incremented
     * base pointers serve four rows. */
    const int8_t* xp = x;
    const int8_t* p0 = w0;
    const int8_t* p2 = w2;
    int32_t blocks = depth >> 2;
    int32_t x02, x13, wv, t;
    __asm__ volatile(
        "1:\n\t"
        "ldr %[x02], [%[xp]], #4\n\t"
        "sxtb16 %[x13], %[x02], ror #8\n\t"
        "sxtb16 %[x02], %[x02]\n\t"
        "ldr %[wv], [%[p0], %[d]]\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "smlad %[a1], %[x02], %[t], %[a1]\n\t"
        "sxtb16 %[wv], %[wv], ror #8\n\t"
        "smlad %[a1], %[x13], %[wv], %[a1]\n\t"
        "ldr %[wv], [%[p0]], #4\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "smlad %[a0], %[x02], %[t], %[a0]\n\t"
        "sxtb16 %[wv], %[wv], ror #8\n\t"
        "smlad %[a0], %[x13], %[wv], %[a0]\n\t"
        "ldr %[wv], [%[p2], %[d]]\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "smlad %[a3], %[x02], %[t], %[a3]\n\t"
        "sxtb16 %[wv], %[wv], ror #8\n\t"
        "smlad %[a3], %[x13], %[wv], %[a3]\n\t"
        "ldr %[wv], [%[p2]], #4\n\t"
        "sxtb16 %[t], %[wv]\n\t"
        "smlad %[a2], %[x02], %[t], %[a2]\n\t"
        "sxtb16 %[wv], %[wv], ror #8\n\t"
        "smlad %[a2], %[x13], %[wv], %[a2]\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        : [xp] "+r"(xp), [p0] "+r"(p0), [p2] "+r"(p2), [n] "+r"(blocks), [a0] "+r"(a0),
          [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x02] "=&r"(x02), [x13] "=&r"(x13),
          [wv] "=&r"(wv), [t] "=&r"(t)
        : [d] "r"(depth)
        : "cc", "memory");
    k = depth & ~3;
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
      out = RescalePerChannel(dots[c], multiplier[n], shift[n]);
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
    /* One body per accumulator rescale kind for the usual per-tensor dot rescale (no left
     * shift), so none of them dispatches per element; one generic body for the rest. */
    const int32_t acc_kind = acc == NULL ? -1 : acc_rescale.kind;
#define FG_MATMUL_ROW(DOT_KIND, ACC_KIND)                                                       \
  MatmulRow(x_row, depth, w, bias, multiplier, shift, &dot_rescale, DOT_KIND, cols, acc_row,   \
            &acc_rescale, ACC_KIND, y_row)
    if (dot_kind == kRescaleRight && acc_kind == -1) {
      FG_MATMUL_ROW(kRescaleRight, kRescaleGeneral); /* acc_row is NULL: the kind is unused */
    } else if (dot_kind == kRescaleRight && acc_kind == kRescaleShiftLeft) {
      FG_MATMUL_ROW(kRescaleRight, kRescaleShiftLeft);
    } else if (dot_kind == kRescaleRight && acc_kind == kRescaleHalveRound) {
      FG_MATMUL_ROW(kRescaleRight, kRescaleHalveRound);
    } else if (dot_kind == kRescaleRight && acc_kind == kRescaleRight) {
      FG_MATMUL_ROW(kRescaleRight, kRescaleRight);
    } else if (dot_kind == -1 && acc_kind == -1) {
      FG_MATMUL_ROW(-1, kRescaleGeneral);
    } else if (dot_kind == -1 && acc_kind == kRescaleShiftLeft) {
      FG_MATMUL_ROW(-1, kRescaleShiftLeft);
    } else if (dot_kind == -1 && acc_kind == kRescaleHalveRound) {
      FG_MATMUL_ROW(-1, kRescaleHalveRound);
    } else if (dot_kind == -1 && acc_kind == kRescaleRight) {
      FG_MATMUL_ROW(-1, kRescaleRight);
    } else {
      FG_MATMUL_ROW(dot_kind, acc_rescale.kind);
    }
#undef FG_MATMUL_ROW
  }
}

/* The elementwise int16 functions below are loops over fg_elementwise.h's per-value forms (the
 * fused loops of generated cores call the same ones): the power-of-two body when every rescale
 * of the call is a power of two, the general one otherwise. */

void fg_lut_s16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n) {
#ifdef FG_MATMUL_S8_MVE
  /* Each vector's lanes are read before they are written: in place (x == y) stays allowed. */
  FgMveLutS16(lut, x, y, n, FG_LUT_SEGMENT_BITS);
  return;
#endif
  for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)fg_s16_lut(lut, x[i]);
}

void fg_binary_s16(FgBinaryOp op, const int16_t* a, int32_t a_step, const int16_t* b,
                   int32_t b_step, int32_t a_multiplier, int32_t a_shift, int32_t b_multiplier,
                   int32_t b_shift, int16_t* y, int32_t n) {
  /* Both operands at the output scale first; only the final saturation clips. Each y[i] is
   * written after a[i] and b[i] are read: in place is safe. */
  const FgRescale ra = fg_s16_rescale(a_multiplier, a_shift, 15);
  const FgRescale rb = fg_s16_rescale(b_multiplier, b_shift, 15);
  if (ra.p2 && rb.p2) {
    switch (op) { /* one body per op for the usual case */
      case kFgAdd:
        for (int32_t i = 0; i < n; ++i) {
          y[i] = (int16_t)fg_s16_binary_p2(kFgAdd, a[i * a_step], b[i * b_step], &ra, &rb);
        }
        return;
      case kFgSub:
        for (int32_t i = 0; i < n; ++i) {
          y[i] = (int16_t)fg_s16_binary_p2(kFgSub, a[i * a_step], b[i * b_step], &ra, &rb);
        }
        return;
      default:
        for (int32_t i = 0; i < n; ++i) {
          y[i] = (int16_t)fg_s16_binary_p2(op, a[i * a_step], b[i * b_step], &ra, &rb);
        }
        return;
    }
  }
  for (int32_t i = 0; i < n; ++i) {
    y[i] = (int16_t)fg_s16_binary_any(op, a[i * a_step], b[i * b_step], &ra, &rb);
  }
}

void fg_mul_s16(const int16_t* a, int32_t a_step, const int16_t* b, int32_t b_step,
                int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  const FgRescale r = fg_s16_rescale(multiplier, shift, 30); /* |a * b| <= 2^30 */
  if (r.p2) {
    for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)fg_s16_mul_p2(a[i * a_step], b[i * b_step], &r);
    return;
  }
  for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)fg_s16_mul_any(a[i * a_step], b[i * b_step], &r);
}

void fg_rescale_s16(const int16_t* x, int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  const FgRescale r = fg_s16_rescale(multiplier, shift, 15);
  if (r.p2) {
    for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)fg_s16_rescale_p2(x[i], &r);
    return;
  }
  for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)fg_s16_rescale_any(x[i], &r);
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
