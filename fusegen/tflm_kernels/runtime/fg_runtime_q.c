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
#include "tflm_kernels/shell/fg_abi.h"

#include <stddef.h>
#include <string.h>

/* fg_matmul_s8's bodies, one family per core, in this order of precedence (the first whose
 * condition holds is compiled, the others are not):
 *   1. FG_MATMUL_S8_MVE, Helium (__ARM_FEATURE_MVE: Cortex-M55/M85, which have the DSP
 *      extension too): a group's 4 x 16 blocks by VMLADAVA, its tail columns gathered in x's
 *      order (fg_runtime_q_mve.h), one row of x at a time, no depth limit; the specialised
 *      kRescaleRight bodies rescale, accumulate, clamp and store a group's four outputs as one
 *      vector (Store4Mve), the others use Store1;
 *   2. FG_MATMUL_S8_DSP, the DSP extension without Helium (Cortex-M4/M7/M33), optimised
 *      builds: the SMLAD assembly over x widened once per row (depth <= 259; longer rows take
 *      the portable loop), and the hoisted input projection (rows >= 2, kRescaleRight, no
 *      accumulator, depth <= 131) two timesteps per pass; outputs by Store1;
 *   3. portable C (host, M0/M3, RV32, -O0 builds): the generic body alone (built for size).
 * The rescale forms are the same for the Helium and DSP families: a per-tensor dot rescale of
 * kRescaleRight with no accumulator or with one of kRescaleShiftLeft, kRescaleHalveRound,
 * kRescaleRight or kRescaleHighMul, and kRescaleRight1 without accumulator, have specialised
 * bodies, as has (in every family, the portable one too) a per-tensor dot rescale of shift >= 0
 * without accumulator whose dots the bias and depth bound (kRescaleLeft: trained models' input
 * projections); per-channel rescales, other kind pairs and a NULL bias take the generic body. Every
 * family computes the same exact int32 sums and the same rescales, so their outputs are equal,
 * and equal to the numpy twin. (Helium two timesteps per pass was tried: GCC 12 spills its
 * eight accumulators, +1% instructions on the anchor LSTM, inlined or out of line.) */
#if defined(__ARM_FEATURE_MVE)
#include "fg_runtime_q_mve.h"
#define FG_MATMUL_S8_MVE 1
#endif

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && defined(__OPTIMIZE__)
/* The DSP extension (Cortex-M4/M7/M33/M55): the saturations are QADD/QSUB/SSAT, and without
 * Helium fg_matmul_s8 does two 16-bit multiply-accumulates per SMLAD. Elsewhere (host, M0/M3)
 * the portable code runs; both give the same results. Not in an unoptimised (-O0) build: the
 * matmul's inline assembly holds 13 registers, which GCC at -O0 cannot allocate ("unable to
 * find a register to spill"); such a debug build runs the portable code. */
#include <arm_acle.h>
#define FG_S8_DSP 1
#if !defined(FG_MATMUL_S8_MVE)
#define FG_MATMUL_S8_DSP 1
#endif
#endif

/* sat8 of an int32: one SSAT with the DSP extension (sat16 and the saturating int32 sums are
 * fg_elementwise.h's fg_s16_clamp, fg_s32_add_sat and fg_s32_sub_sat). */
static inline int32_t Clamp8(int32_t v) {
#ifdef FG_S8_DSP
  int32_t r; /* SSAT by hand: GCC 12's __ssat trips -Wsign-conversion */
  __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
  return r;
#else
  return v < INT8_MIN ? INT8_MIN : (v > INT8_MAX ? INT8_MAX : v);
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
 *   kRescaleRight1: shift -1 and multiplier >= 0: the same formula with r = 1 is
 *     floor((q + 2^31) / 2^32), and q + 2^31 = P + (x < 0 ? 2^30 : 3 * 2^30): one SMLAL onto a
 *     non-negative int64 constant whose high word is 0 and whose low word is built from the sign
 *     bit of ~x, and its high word is the result (RescaleRight1).
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
 *     reference code.
 *   kRescaleLeft: shift >= 0 and multiplier >= 0 on values known to lie in [-2^(30 - shift),
 *     2^(30 - shift)) (never chosen by RescaleMake: fg_matmul_s8 picks it for a dot rescale when
 *     the bias and the depth bound every dot so, DotsFit). Then x << shift does not saturate and
 *     MBQM is floor((x * 2^shift * multiplier + 2^30) / 2^31); doubling numerator and
 *     denominator, floor((x' * multiplier + 2^31) / 2^32) with x' = x << (shift + 1), which
 *     fits an int32: the high word of x' * multiplier rounded, one SMMULR (FgSmmulr). Trained
 *     models give their input projection this kind: inputs wider than [-1, 1] (standardized
 *     features) and an int16 result scale make the dot's scale 1 or more (shift 0, 1 or 2). */
enum {
  kRescaleGeneral,
  kRescaleRight,
  kRescaleShiftLeft,
  kRescaleHalveRound,
  kRescaleReference,
  kRescaleHighMul,
  kRescaleRight1,
  kRescaleLeft
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
  int32_t sh;      /* kRescaleRight: right - 1 */
} Rescale;

/* kRescaleRight's arithmetic, for right = sh + 1 >= 2 and multiplier >= 0, half2 = 2^(right-2):
 * with q = x * multiplier + (x < 0 ? -2^30 : 2^30) (that is P + 2^30 - [x < 0] 2^31), the
 * result floor((q + 2^(30+r)) / 2^(31+r)) is (hi(q) + 2^(r-2)) >> (r-1), since 2^(30+r) is a
 * multiple of 2^32 for r >= 2; |hi(q)| < 2^30, so the add cannot overflow. The constant is built
 * from the sign bit (x >> 31 shifted to bit 31, or 2^30) rather than selected: no branch, no
 * constant registers. */
static inline int32_t RescaleRightSplit(int32_t x, int32_t multiplier, int32_t half2, int32_t sh) {
  /* The constant as one int64 whose high word also carries half2 (hi(q) + half2 = hi(q +
   * half2 * 2^32), exact): its low word is the nudge's, its high word half2 plus the nudge's
   * sign; one SMLAL adds the product, so the rounding is and/orr, add, SMLAL, asr. */
  const uint32_t low = ((uint32_t)x & 0x80000000u) | 0x40000000u;
  const int64_t constant = (int64_t)(half2 + (x >> 31)) * ((int64_t)1 << 32) + (int64_t)low;
  const int64_t q = (int64_t)x * multiplier + constant;
  return (int32_t)(q >> 32) >> sh;
}

/* kRescaleRight1: MBQM(x, multiplier, -1) for multiplier >= 0, hi(x * multiplier + c) with
 * c = 2^30 for x < 0 and 3 * 2^30 otherwise (the low word of c from the sign bit of ~x). */
static inline int32_t RescaleRight1(int32_t x, int32_t multiplier) {
  const uint32_t low = (~(uint32_t)x & 0x80000000u) | 0x40000000u;
  return (int32_t)(((int64_t)x * multiplier + (int64_t)low) >> 32);
}

/* hi(a * b + 2^31): the rounded high word of the product (SMMULR with the DSP extension). */
static inline int32_t FgSmmulr(int32_t a, int32_t b) {
#ifdef FG_S8_DSP
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
#else
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
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
  r.sh = r.right >= 1 ? r.right - 1 : 0;
  if (multiplier == INT32_MIN) {
    r.kind = kRescaleReference;
  } else if (multiplier == (1 << 30) && shift >= 1 && shift <= 30 - bound_log2) {
    r.kind = kRescaleShiftLeft; /* |x| * 2^shift <= 2^30: x << shift never saturates */
  } else if (multiplier == (1 << 30) && shift <= 0 && shift >= -29 && bound_log2 <= 30) {
    r.kind = kRescaleHalveRound;
  } else {
    r.kind = r.left > 0 || multiplier < 0
                 ? kRescaleGeneral
                 : (r.right == 0 ? kRescaleHighMul
                                 : (r.right == 1 ? kRescaleRight1 : kRescaleRight));
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
      return RescaleRightSplit(x, r->multiplier, r->half2, r->sh);
    case kRescaleRight1:
      return RescaleRight1(x, r->multiplier);
    case kRescaleLeft:
      return FgSmmulr((int32_t)((uint32_t)x << (r->left + 1)), r->multiplier);
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

/* ---- fg_matmul_s8 ---------------------------------------------------------------------------
 * w is in the block layout of fusegen/abi.py (pack_s8_matrix, FG_WEIGHT_LAYOUT_S8): each group of
 * FG_S8_BLOCK_ROWS = 4 rows is 4 * depth bytes, stored as its blocks of 4 rows x 16 columns (row
 * by row), then blocks of 4 rows x 4 columns for its remaining whole words, then 4 rows x
 * (depth % 4) bytes; rows after the last group are row-major. The group's dot products are
 * computed in one pass over its bytes with one pointer and four int32 accumulators, which stay
 * in registers through the rescale and the store (no array, no call). The int32 sums are exact
 * (|x * w| <= 2^14, depth < 2^14, |bias| < 2^30: no overflow), so the order of the additions
 * does not change the result: every variant equals the portable loop, and the numpy twin, bit
 * for bit. */
#if FG_S8_BLOCK_ROWS != 4 || FG_S8_BLOCK_DEPTH != 16
#error "fg_matmul_s8 reads blocks of 4 rows x 16 columns: fusegen/abi.py has another layout"
#endif

typedef struct {
  int32_t a0, a1, a2, a3;
} Dots4;

#ifdef FG_MATMUL_S8_DSP
/* x rows of up to 4 * FG_S8_WIDE_WORDS + 3 int8 are widened once per row into int16 pairs on
 * the stack (8 bytes per 4 int8: 512 bytes), so the group loop loads them with one LDRD per word
 * instead of LDR + 2 SXTB16 for each group of four outputs; longer rows take the C loop. */
#define FG_S8_WIDE_WORDS 64

/* wide[2j], wide[2j + 1] = x[4j], x[4j + 2] and x[4j + 1], x[4j + 3] as int16 pairs (SXTB16 and
 * SXTB16 ROR 8), for j < words. */
static void WidenRow(const int8_t* x, int32_t words, int32_t* wide) {
  /* By hand: 6 instructions per word (one STRD), GCC's loop takes 8 (two indexed STRs and a
   * bound compare). LDR reads the possibly unaligned int8 row. */
  if (words <= 0) return;
  int32_t v, odd;
  __asm__ volatile(
      "1:\n\t"
      "ldr %[v], [%[x]], #4\n\t"
      "sxtb16 %[odd], %[v], ror #8\n\t"
      "sxtb16 %[v], %[v]\n\t"
      "strd %[v], %[odd], [%[wp]], #8\n\t"
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      : [x] "+r"(x), [wp] "+r"(wide), [n] "+r"(words), [v] "=&r"(v), [odd] "=&r"(odd)
      :
      : "cc", "memory");
}

/* One row's word of a block: its four int8 widened in two SXTB16 (elements 0, 2 and, rotated,
 * 1, 3) and multiplied with x's two int16 pairs by two SMLADs. */
#define FG_DSP_ROW(LOAD, ACC)                        \
  LOAD                                               \
  "sxtb16 %[t], %[wv]\n\t"                           \
  "smlad %[" ACC "], %[x02], %[t], %[" ACC "]\n\t"   \
  "sxtb16 %[wv], %[wv], ror #8\n\t"                  \
  "smlad %[" ACC "], %[x13], %[wv], %[" ACC "]\n\t"
/* x's word J (0..3) of a block, widened: one LDRD. */
#define FG_DSP_X(OFFSET) "ldrd %[x02], %[x13], [%[xp], #" OFFSET "]\n\t"
#define FG_DSP_X_NEXT(STEP) "ldrd %[x02], %[x13], [%[xp]], #" STEP "\n\t"
/* Column word J (0..3) of a 4 x 16 block: row r at [wp + 16r + 4J]. Word 0 goes last: its x and
 * row-0 loads post-increment the pointers past the block. */
#define FG_DSP_WORD(J, XJ, R1, R2, R3)                         \
  FG_DSP_X(XJ)                                                 \
  FG_DSP_ROW("ldr %[wv], [%[wp], #" J "]\n\t", "a0")           \
  FG_DSP_ROW("ldr %[wv], [%[wp], #" R1 "]\n\t", "a1")          \
  FG_DSP_ROW("ldr %[wv], [%[wp], #" R2 "]\n\t", "a2")          \
  FG_DSP_ROW("ldr %[wv], [%[wp], #" R3 "]\n\t", "a3")
#define FG_DSP_OPERANDS                                                                       \
  : [xp] "+r"(xp), [wp] "+r"(wp), [n] "+r"(n), [a0] "+r"(a.a0), [a1] "+r"(a.a1),               \
    [a2] "+r"(a.a2), [a3] "+r"(a.a3), [x02] "=&r"(x02), [x13] "=&r"(x13), [wv] "=&r"(wv),      \
    [t] "=&r"(t)                                                                              \
  :                                                                                           \
  : "cc", "memory"

/* The group's dots with SMLAD, x from WidenRow's `wide` (the int8 x only for the depth % 4 last
 * columns): 86 instructions per 4 x 16 block (64 multiply-accumulates), 23 per 4 x 4 block.
 * Hand-written: GCC's loop spills pointers and the bound at every -O level; this one needs 11
 * registers. */
FG_ALWAYS_INLINE Dots4 GroupDots(const int8_t* x, const int32_t* wide, const int8_t* w,
                                 int32_t depth, Dots4 a) {
  const int8_t* wp = w;
  const int32_t* xp = wide;
  int32_t x02, x13, wv, t;
  int32_t n = depth >> 4;
  if (n > 0) {
    __asm__ volatile(
        "1:\n\t"
        FG_DSP_WORD("4", "8", "20", "36", "52")
        FG_DSP_WORD("8", "16", "24", "40", "56")
        FG_DSP_WORD("12", "24", "28", "44", "60")
        FG_DSP_X_NEXT("32")
        FG_DSP_ROW("ldr %[wv], [%[wp], #16]\n\t", "a1")
        FG_DSP_ROW("ldr %[wv], [%[wp], #32]\n\t", "a2")
        FG_DSP_ROW("ldr %[wv], [%[wp], #48]\n\t", "a3")
        FG_DSP_ROW("ldr %[wv], [%[wp]], #64\n\t", "a0")
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        FG_DSP_OPERANDS);
  }
  n = (depth >> 2) & 3;
  if (n > 0) {
    __asm__ volatile(
        "2:\n\t"
        FG_DSP_X_NEXT("8")
        FG_DSP_ROW("ldr %[wv], [%[wp], #4]\n\t", "a1")
        FG_DSP_ROW("ldr %[wv], [%[wp], #8]\n\t", "a2")
        FG_DSP_ROW("ldr %[wv], [%[wp], #12]\n\t", "a3")
        FG_DSP_ROW("ldr %[wv], [%[wp]], #16\n\t", "a0")
        "subs %[n], %[n], #1\n\t"
        "bne 2b\n\t"
        FG_DSP_OPERANDS);
  }
  const int32_t bytes = depth & 3;
  const int8_t* const xb = x + (depth & ~3);
  for (int32_t k = 0; k < bytes; ++k) {
    const int32_t xk = xb[k];
    a.a0 += xk * wp[k];
    a.a1 += xk * wp[bytes + k];
    a.a2 += xk * wp[2 * bytes + k];
    a.a3 += xk * wp[3 * bytes + k];
  }
  return a;
}
#undef FG_DSP_OPERANDS
#undef FG_DSP_WORD
#undef FG_DSP_X_NEXT
#undef FG_DSP_X
#undef FG_DSP_ROW

/* Two timesteps at once (the hoisted input projection, rows >= 2): rows r and r + 1 of x widened
 * and interleaved per word (wide[4j..4j+1] row r's pairs, wide[4j+2..4j+3] row r + 1's), and
 * two of a group's four weight rows per pass: each weight word is loaded and unpacked once for
 * both timesteps (64 instructions per 2 x 2 x 16 block instead of 2 x 43). */
static void WidenRows2(const int8_t* x0, const int8_t* x1, int32_t words, int32_t* wide) {
  /* By hand: 10 instructions per word (two STRDs), GCC's loop takes 13 (four STRs and a bound
   * compare). LDR reads the possibly unaligned int8 rows, as the memcpy of WidenRow does. */
  if (words <= 0) return;
  int32_t v0, v1, odd0, odd1;
  __asm__ volatile(
      "1:\n\t"
      "ldr %[v0], [%[x0]], #4\n\t"
      "ldr %[v1], [%[x1]], #4\n\t"
      "sxtb16 %[odd0], %[v0], ror #8\n\t"
      "sxtb16 %[v0], %[v0]\n\t"
      "sxtb16 %[odd1], %[v1], ror #8\n\t"
      "sxtb16 %[v1], %[v1]\n\t"
      "strd %[v0], %[odd0], [%[wp]], #8\n\t"
      "strd %[v1], %[odd1], [%[wp]], #8\n\t"
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      : [x0] "+r"(x0), [x1] "+r"(x1), [wp] "+r"(wide), [n] "+r"(words), [v0] "=&r"(v0),
        [v1] "=&r"(v1), [odd0] "=&r"(odd0), [odd1] "=&r"(odd1)
      :
      : "cc", "memory");
}

typedef struct {
  int32_t a0, a1; /* rows 2h, 2h + 1 of the group at timestep r */
  int32_t b0, b1; /* the same rows at timestep r + 1 */
} Dots2x2;

#define FG_DSP_ROW2(LOAD, A, B)                      \
  LOAD                                               \
  "sxtb16 %[t], %[wv]\n\t"                           \
  "smlad %[" A "], %[xa02], %[t], %[" A "]\n\t"      \
  "smlad %[" B "], %[xb02], %[t], %[" B "]\n\t"      \
  "sxtb16 %[wv], %[wv], ror #8\n\t"                  \
  "smlad %[" A "], %[xa13], %[wv], %[" A "]\n\t"     \
  "smlad %[" B "], %[xb13], %[wv], %[" B "]\n\t"
#define FG_DSP_X2(OFFSET_A, OFFSET_B)                           \
  "ldrd %[xa02], %[xa13], [%[xp], #" OFFSET_A "]\n\t"           \
  "ldrd %[xb02], %[xb13], [%[xp], #" OFFSET_B "]\n\t"
#define FG_DSP_X2_NEXT(STEP)                                    \
  "ldrd %[xb02], %[xb13], [%[xp], #8]\n\t"                      \
  "ldrd %[xa02], %[xa13], [%[xp]], #" STEP "\n\t"
#define FG_DSP_WORD2(XA, XB, J, R1)                             \
  FG_DSP_X2(XA, XB)                                             \
  FG_DSP_ROW2("ldr %[wv], [%[wp], #" J "]\n\t", "a0", "b0")     \
  FG_DSP_ROW2("ldr %[wv], [%[wp], #" R1 "]\n\t", "a1", "b1")
#define FG_DSP_OPERANDS2                                                                      \
  : [xp] "+r"(xp), [wp] "+r"(wp), [n] "+r"(n), [a0] "+r"(a.a0), [a1] "+r"(a.a1),               \
    [b0] "+r"(a.b0), [b1] "+r"(a.b1), [xa02] "=&r"(xa02), [xa13] "=&r"(xa13),                  \
    [xb02] "=&r"(xb02), [xb13] "=&r"(xb13), [wv] "=&r"(wv), [t] "=&r"(t)                       \
  :                                                                                           \
  : "cc", "memory"

/* Rows 2h and 2h + 1 of the group at w, for the two timesteps of WidenRows2's `wide` (x0, x1:
 * the int8 rows, for the depth % 4 last columns). */
FG_ALWAYS_INLINE Dots2x2 PairDots(const int8_t* x0, const int8_t* x1, const int32_t* wide,
                                  const int8_t* w, int32_t h, int32_t depth, Dots2x2 a) {
  const int32_t blocks = depth >> 4, words = (depth >> 2) & 3, bytes = depth & 3;
  const int8_t* wp = w + 32 * h;
  const int32_t* xp = wide;
  int32_t xa02, xa13, xb02, xb13, wv, t;
  int32_t n = blocks;
  if (n > 0) {
    __asm__ volatile(
        "1:\n\t"
        FG_DSP_WORD2("16", "24", "4", "20")
        FG_DSP_WORD2("32", "40", "8", "24")
        FG_DSP_WORD2("48", "56", "12", "28")
        FG_DSP_X2_NEXT("64")
        FG_DSP_ROW2("ldr %[wv], [%[wp], #16]\n\t", "a1", "b1")
        FG_DSP_ROW2("ldr %[wv], [%[wp]], #64\n\t", "a0", "b0")
        "subs %[n], %[n], #1\n\t"
        "bne 1b\n\t"
        FG_DSP_OPERANDS2);
  }
  /* The remaining whole words, unrolled: entered at the step that leaves `words` (0..3) steps,
   * without a loop counter. The block loop left wp at w + 64 * blocks + 32h; this part's rows
   * 2h, 2h + 1 start at w + 64 * blocks + 8h. Pointers derived from wp (not from w) keep GCC
   * from carrying them as separate induction variables on the stack. */
  wp -= 24 * h;
  n = words;
  __asm__ volatile(
      "cmp %[n], #2\n\t"
      "bhi 3f\n\t"
      "beq 4f\n\t"
      "cmp %[n], #0\n\t"
      "beq 6f\n\t"
      "b 5f\n\t"
      "3:\n\t"
      FG_DSP_X2_NEXT("16")
      FG_DSP_ROW2("ldr %[wv], [%[wp], #4]\n\t", "a1", "b1")
      FG_DSP_ROW2("ldr %[wv], [%[wp]], #16\n\t", "a0", "b0")
      "4:\n\t"
      FG_DSP_X2_NEXT("16")
      FG_DSP_ROW2("ldr %[wv], [%[wp], #4]\n\t", "a1", "b1")
      FG_DSP_ROW2("ldr %[wv], [%[wp]], #16\n\t", "a0", "b0")
      "5:\n\t"
      FG_DSP_X2_NEXT("16")
      FG_DSP_ROW2("ldr %[wv], [%[wp], #4]\n\t", "a1", "b1")
      FG_DSP_ROW2("ldr %[wv], [%[wp]], #16\n\t", "a0", "b0")
      "6:\n\t"
      FG_DSP_OPERANDS2);
  /* wp is now w + 64 * blocks + 16 * words + 8h: the depth % 4 bytes of row 2h are at
   * w + 64 * blocks + 16 * words + 2h * bytes. */
  const int8_t* const wb = wp - 8 * h + 2 * h * bytes;
  const int8_t* const xb0 = x0 + (depth & ~3);
  const int8_t* const xb1 = x1 + (depth & ~3);
  for (int32_t k = 0; k < bytes; ++k) {
    a.a0 += xb0[k] * wb[k];
    a.a1 += xb0[k] * wb[bytes + k];
    a.b0 += xb1[k] * wb[k];
    a.b1 += xb1[k] * wb[bytes + k];
  }
  return a;
}
#undef FG_DSP_OPERANDS2
#undef FG_DSP_WORD2
#undef FG_DSP_X2_NEXT
#undef FG_DSP_X2
#undef FG_DSP_ROW2
#endif

#ifdef FG_MATMUL_S8_MVE
/* The group's dots with Helium: per 4 x 16 block one x vector and four VMLADAVAs (one per row,
 * 16 multiply-accumulates each); the tail (depth % 16 columns, 4 x 4 blocks then the last
 * bytes) as one VLDRB gather and one VMLADAVA per row, with x_tail (x's tail columns, zero in
 * the lanes after) loaded once per row of x and `offsets` (FgMveTailOffsets) once per call. */
FG_ALWAYS_INLINE Dots4 GroupDotsMve(const int8_t* x, int8x16_t x_tail, const int8_t* w,
                                    int32_t depth, const uint8_t* offsets, Dots4 a) {
  const int32_t blocks = depth >> 4;
  for (int32_t b = 0; b < blocks; ++b, x += 16, w += 64) {
    const int8x16_t xv = vld1q_s8(x);
    a.a0 = vmladavaq_s8(a.a0, xv, vld1q_s8(w));
    a.a1 = vmladavaq_s8(a.a1, xv, vld1q_s8(w + 16));
    a.a2 = vmladavaq_s8(a.a2, xv, vld1q_s8(w + 32));
    a.a3 = vmladavaq_s8(a.a3, xv, vld1q_s8(w + 48));
  }
  if ((depth & 15) != 0) {
    a.a0 = vmladavaq_s8(a.a0, x_tail, vldrbq_gather_offset_s8(w, vld1q_u8(offsets)));
    a.a1 = vmladavaq_s8(a.a1, x_tail, vldrbq_gather_offset_s8(w, vld1q_u8(offsets + 16)));
    a.a2 = vmladavaq_s8(a.a2, x_tail, vldrbq_gather_offset_s8(w, vld1q_u8(offsets + 32)));
    a.a3 = vmladavaq_s8(a.a3, x_tail, vldrbq_gather_offset_s8(w, vld1q_u8(offsets + 48)));
  }
  return a;
}
#endif

/* The group's dots in C (host, M0/M3, RV32, and with the DSP extension the rows too long to
 * widen): the same bytes in the same order. */
FG_ALWAYS_INLINE Dots4 GroupDotsC(const int8_t* x, const int8_t* w, int32_t depth, Dots4 a) {
  const int32_t blocks = depth >> 4;
  for (int32_t b = 0; b < blocks; ++b, x += 16, w += 64) {
    for (int32_t k = 0; k < 16; ++k) {
      const int32_t xk = x[k];
      a.a0 += xk * w[k];
      a.a1 += xk * w[16 + k];
      a.a2 += xk * w[32 + k];
      a.a3 += xk * w[48 + k];
    }
  }
  const int32_t words = (depth >> 2) & 3;
  for (int32_t j = 0; j < words; ++j, x += 4, w += 16) {
    for (int32_t k = 0; k < 4; ++k) {
      const int32_t xk = x[k];
      a.a0 += xk * w[k];
      a.a1 += xk * w[4 + k];
      a.a2 += xk * w[8 + k];
      a.a3 += xk * w[12 + k];
    }
  }
  const int32_t bytes = depth & 3;
  for (int32_t k = 0; k < bytes; ++k) {
    const int32_t xk = x[k];
    a.a0 += xk * w[k];
    a.a1 += xk * w[bytes + k];
    a.a2 += xk * w[2 * bytes + k];
    a.a3 += xk * w[3 * bytes + k];
  }
  return a;
}

/* *y = sat16(MBQM(dot, ...) + MBQM(*acc, ...)), one output of fg_matmul_s8. dot_kind is the
 * kind of the per-tensor dot_rescale, or -1 for a rescale per channel (*multiplier, *shift);
 * acc_kind that of acc_rescale, or -1 without accumulator. Both are constants where MatmulRows
 * is specialised, so each body is straight-line code. Reads *acc before *y is written: that is
 * what makes acc == y safe. */
FG_ALWAYS_INLINE void Store1(int32_t dot, const int32_t* multiplier, const int32_t* shift,
                             const Rescale* dot_rescale, int32_t dot_kind, const int16_t* acc,
                             const Rescale* acc_rescale, int32_t acc_kind, int16_t* y) {
  int32_t out = dot_kind < 0 ? RescalePerChannel(dot, *multiplier, *shift)
                             : RescaleApply(dot_rescale, dot_kind, dot);
  if (acc_kind >= 0) out = fg_s32_add_sat(out, RescaleApply(acc_rescale, acc_kind, *acc));
  *y = (int16_t)fg_s16_clamp(out);
}

#ifdef FG_MATMUL_S8_MVE
/* RescaleApply on four lanes, for the kinds of the specialised bodies (each equal to the scalar
 * form, so to MBQM):
 *   kRescaleShiftLeft: x * 2^(shift - 1) (|x| <= 2^15: no overflow);
 *   kRescaleHalveRound: the scalar form, the bias selected by a compare;
 *   kRescaleHighMul: VQRDMULH, (2 x m + 2^31) >> 32 = floor((x m + 2^30) / 2^31) (it saturates
 *     only for x = m = INT32_MIN; m >= 0 here);
 *   kRescaleRight (right >= 2): VQRDMULH is gemmlowp's SaturatingRoundingDoublingHighMul for
 *     m >= 0 (floor((ab + 2^30) / 2^31) equals the truncated (ab + 1 - 2^30) / 2^31 for ab < 0),
 *     and RoundingDivideByPOT(h, right), half away from zero, is VRSHL's half-up rounding of
 *     h - 1 for negative h (|h| < 2^31: h - 1 does not wrap; VRSHL rounds without overflow). */
FG_ALWAYS_INLINE int32x4_t RescaleApplyMve(const Rescale* r, int32_t kind, int32x4_t x) {
  switch (kind) {
    case kRescaleShiftLeft:
      return vmulq_n_s32(x, r->step);
    case kRescaleHalveRound: {
      const int32x4_t bias = vpselq_s32(vdupq_n_s32(r->bias_nonneg), vdupq_n_s32(r->bias_neg),
                                        vcmpgeq_n_s32(x, -1));
      return vshlq_r_s32(vaddq_s32(x, bias), -(r->right + 1));
    }
    case kRescaleHighMul:
      return vqrdmulhq_n_s32(x, r->multiplier);
    default: { /* kRescaleRight */
      const int32x4_t h = vqrdmulhq_n_s32(x, r->multiplier);
      return vrshlq_n_s32(vaddq_s32(h, vshrq_n_s32(h, 31)), -r->right);
    }
  }
}

/* Store1 for a group's four outputs at once (a per-tensor kRescaleRight dot rescale, acc_kind
 * -1 or one of RescaleApplyMve's kinds): rescale, saturating add, clamp and a narrowing store
 * as vectors. *acc is read before *y is written (acc == y is allowed). */
FG_ALWAYS_INLINE void Store4Mve(Dots4 a, const Rescale* dot_rescale, const int16_t* acc,
                                const Rescale* acc_rescale, int32_t acc_kind, int16_t* y) {
  const int32x4_t dots = {a.a0, a.a1, a.a2, a.a3};
  int32x4_t out = RescaleApplyMve(dot_rescale, kRescaleRight, dots);
  if (acc_kind >= 0) out = vqaddq_s32(out, RescaleApplyMve(acc_rescale, acc_kind, vldrhq_s32(acc)));
  out = vmaxq_s32(vminq_s32(out, vdupq_n_s32(INT16_MAX)), vdupq_n_s32(INT16_MIN));
  vstrhq_s32(y, out);
}
#endif

/* Store1 with the kinds as values: the few outputs outside the groups of four. */
static __attribute__((noinline)) void StoreAny(int32_t dot, const int32_t* multiplier,
                                               const int32_t* shift, const Rescale* dot_rescale,
                                               int32_t dot_kind, const int16_t* acc,
                                               const Rescale* acc_rescale, int32_t acc_kind,
                                               int16_t* y) {
  Store1(dot, multiplier, shift, dot_rescale, dot_kind, acc, acc_rescale, acc_kind, y);
}

/* fg_matmul_s8 for one (dot kind, accumulator kind); `wide` (DSP: a buffer of 2 * (depth / 4)
 * int32) selects GroupDots over x widened once per row, NULL the C loop (Helium: `wide` holds
 * the 64 bytes of FgMveTailOffsets, never NULL); `pairs` 1 (DSP, a
 * per-tensor dot rescale, no accumulator, bias, and 4 * (depth / 4) int32 in `wide`) runs the
 * rows two timesteps at a time, 0 one at a time, -1 (the generic body) one at a time with bias
 * possibly NULL (every other body has a bias). */
FG_ALWAYS_INLINE void MatmulRows(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth,
                                 const int8_t* w, const int32_t* bias, const int32_t* multiplier,
                                 const int32_t* shift, const Rescale* dot_rescale,
                                 int32_t dot_kind, int32_t cols, const int16_t* acc,
                                 const Rescale* acc_rescale, int32_t acc_kind, int16_t* y,
                                 int32_t y_stride, int32_t* wide, int32_t pairs) {
  const int32_t groups = cols >> 2;
  const int32_t channel = dot_kind < 0 ? 1 : 0; /* multiplier and shift per output */
  int32_t r = 0;
#ifdef FG_MATMUL_S8_DSP
  if (pairs > 0) {
    for (; r + 1 < rows; r += 2) {
      const int8_t* const x0 = x + r * x_stride;
      const int8_t* const x1 = x0 + x_stride;
      int16_t* yp = y + r * y_stride;
      const int32_t* bp = bias;
      const int8_t* wg = w;
      WidenRows2(x0, x1, depth >> 2, wide);
      for (int32_t g = 0; g < groups; ++g, wg += 4 * depth, bp += 4, yp += 4) {
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 2
#endif
        for (int32_t h = 0; h < 2; ++h) {
          Dots2x2 a = {bp[2 * h], bp[2 * h + 1], bp[2 * h], bp[2 * h + 1]};
          a = PairDots(x0, x1, wide, wg, h, depth, a);
          Store1(a.a0, multiplier, shift, dot_rescale, dot_kind, NULL, acc_rescale, -1,
                 yp + 2 * h);
          Store1(a.a1, multiplier, shift, dot_rescale, dot_kind, NULL, acc_rescale, -1,
                 yp + 2 * h + 1);
          Store1(a.b0, multiplier, shift, dot_rescale, dot_kind, NULL, acc_rescale, -1,
                 yp + y_stride + 2 * h);
          Store1(a.b1, multiplier, shift, dot_rescale, dot_kind, NULL, acc_rescale, -1,
                 yp + y_stride + 2 * h + 1);
        }
      }
      for (int32_t k = 0; k < 2; ++k) {
        const int8_t* const x_row = x0 + k * x_stride;
        for (int32_t n = groups * 4; n < cols; ++n) {
          const int8_t* const w_row = wg + (n - groups * 4) * depth;
          int32_t dot = bias[n];
          for (int32_t j = 0; j < depth; ++j) dot += (int32_t)x_row[j] * (int32_t)w_row[j];
          StoreAny(dot, multiplier, shift, dot_rescale, dot_kind, NULL, acc_rescale, -1,
                   y + (r + k) * y_stride + n);
        }
      }
    }
  }
#else
  (void)pairs;
#endif
  for (; r < rows; ++r) {
    const int8_t* const x_row = x + r * x_stride;
    int16_t* yp = y + r * y_stride;
    const int16_t* ap = acc_kind < 0 ? NULL : acc + r * y_stride;
    const int32_t* bp = bias;
    const int32_t* mp = multiplier;
    const int32_t* sp = shift;
    const int8_t* wg = w;
#if defined(FG_MATMUL_S8_MVE)
    const int32_t tail = depth & 15;
    const int8x16_t x_tail = vld1q_z_s8(x_row + (depth - tail), vctp8q((uint32_t)tail));
#elif defined(FG_MATMUL_S8_DSP)
    if (wide != NULL) WidenRow(x_row, depth >> 2, wide);
#endif
    for (int32_t g = 0; g < groups; ++g) {
      Dots4 a = {0, 0, 0, 0};
      if (pairs >= 0 || bp != NULL) { /* pairs >= 0: a specialised body, bias != NULL */
        a.a0 = bp[0];
        a.a1 = bp[1];
        a.a2 = bp[2];
        a.a3 = bp[3];
        bp += 4;
      }
#if defined(FG_MATMUL_S8_MVE)
      a = GroupDotsMve(x_row, x_tail, wg, depth, (const uint8_t*)wide, a);
#elif defined(FG_MATMUL_S8_DSP)
      a = wide != NULL ? GroupDots(x_row, wide, wg, depth, a) : GroupDotsC(x_row, wg, depth, a);
#else
      (void)wide;
      a = GroupDotsC(x_row, wg, depth, a);
#endif
      wg += 4 * depth;
#ifdef FG_MATMUL_S8_MVE
      if (dot_kind == kRescaleRight && pairs >= 0) { /* a specialised body: constant kinds */
        Store4Mve(a, dot_rescale, ap, acc_rescale, acc_kind, yp);
      } else
#endif
      {
        Store1(a.a0, mp, sp, dot_rescale, dot_kind, ap, acc_rescale, acc_kind, yp);
        Store1(a.a1, mp + channel, sp + channel, dot_rescale, dot_kind, ap + 1, acc_rescale,
               acc_kind, yp + 1);
        Store1(a.a2, mp + 2 * channel, sp + 2 * channel, dot_rescale, dot_kind, ap + 2,
               acc_rescale, acc_kind, yp + 2);
        Store1(a.a3, mp + 3 * channel, sp + 3 * channel, dot_rescale, dot_kind, ap + 3,
               acc_rescale, acc_kind, yp + 3);
      }
      yp += 4;
      if (acc_kind >= 0) ap += 4;
      mp += 4 * channel;
      sp += 4 * channel;
    }
    for (int32_t n = groups * 4; n < cols; ++n) {
      /* The rows after the last group, row-major. The zero point of x lives in bias (bias[n] -
       * zero_point * sum_k w[n][k]), so this is a plain int8 x int8 dot product, as in TFLM's
       * FullyConnected. */
      const int8_t* const w_row = wg + (n - groups * 4) * depth;
      int32_t dot = bias == NULL ? 0 : bias[n];
#ifdef FG_MATMUL_S8_MVE
      dot = FgMveDotS8Row(x_row, w_row, depth, &dot);
#else
      for (int32_t k = 0; k < depth; ++k) dot += (int32_t)x_row[k] * (int32_t)w_row[k];
#endif
      StoreAny(dot, multiplier + n * channel, shift + n * channel, dot_rescale, dot_kind,
               acc_kind < 0 ? NULL : acc + r * y_stride + n, acc_rescale, acc_kind,
               y + r * y_stride + n);
    }
  }
}

/* MatmulRows for a dot rescale of shift -1 without accumulator (x widened into `wide`, or
 * Helium's tail offsets), out of line: inlined into fg_matmul_s8 it changes GCC's register
 * allocation of the other bodies (+1% instructions in them). */
#if defined(FG_MATMUL_S8_MVE) || defined(FG_MATMUL_S8_DSP)
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((noinline, optimize("no-store-merging", "no-tree-slp-vectorize")))
#endif
static void MatmulRight1(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth,
                         const int8_t* w, const int32_t* bias, const int32_t* multiplier,
                         const int32_t* shift, const Rescale* dot_rescale, int32_t cols,
                         int16_t* y, int32_t y_stride, int32_t* wide) {
  MatmulRows(x, x_stride, rows, depth, w, bias, multiplier, shift, dot_rescale, kRescaleRight1,
             cols, NULL, dot_rescale, -1, y, y_stride, wide, 0);
}
#endif

/* MatmulRows for a per-tensor dot rescale of kRescaleLeft without accumulator (every build: the
 * portable one runs it without `wide`), pairs of timesteps as for kRescaleRight; out of line
 * like MatmulRight1: inlined, it costs the anchor rows (input projections of kRescaleRight)
 * 0.2% to 0.6% instructions through GCC's register allocation of the other bodies. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((noinline, optimize("no-store-merging", "no-tree-slp-vectorize")))
#endif
static void MatmulLeft(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth,
                       const int8_t* w, const int32_t* bias, const int32_t* multiplier,
                       const int32_t* shift, const Rescale* dot_rescale, int32_t cols,
                       int16_t* y, int32_t y_stride, int32_t* wide, int32_t pairs) {
  MatmulRows(x, x_stride, rows, depth, w, bias, multiplier, shift, dot_rescale, kRescaleLeft,
             cols, NULL, dot_rescale, -1, y, y_stride, wide, pairs);
}

/* 1 if every dot of fg_matmul_s8 (bias[n], or 0 without bias, plus depth products of two int8,
 * each of magnitude <= 2^14) lies in [-2^log2, 2^log2): kRescaleLeft's condition. One pass over
 * the bias, for the per-tensor dot rescales of shift >= 0 only. */
static int DotsFit(const int32_t* bias, int32_t cols, int32_t depth, int32_t log2) {
  uint32_t most = 0;
  if (bias != NULL) {
    for (int32_t n = 0; n < cols; ++n) {
      const uint32_t b = bias[n] < 0 ? 0u - (uint32_t)bias[n] : (uint32_t)bias[n];
      most = b > most ? b : most;
    }
  }
  return (int64_t)most + ((int64_t)depth << 14) < ((int64_t)1 << log2);
}

/* GCC's store merging packs the four int16 results of a group into two words with four BFIs
 * and two zeroing moves: twice the instructions of four STRH. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-store-merging", "no-tree-slp-vectorize")))
#endif
void fg_matmul_s8(const int8_t* x, int32_t x_stride, int32_t rows, int32_t depth, const int8_t* w,
                  const int32_t* bias, const int32_t* multiplier, const int32_t* shift,
                  int32_t channel_step, int32_t cols, const int16_t* acc, int32_t acc_multiplier,
                  int32_t acc_shift, int16_t* y, int32_t y_stride) {
  const Rescale dot_rescale = RescaleMake(multiplier[0], shift[0], 31);
  const Rescale acc_rescale = RescaleMake(acc_multiplier, acc_shift, 15);
  const int32_t dot_kind = channel_step != 0 ? -1 : dot_rescale.kind;
  const int32_t acc_kind = acc == NULL ? -1 : acc_rescale.kind;
#if defined(FG_MATMUL_S8_MVE)
  /* the gather offsets of a group's tail columns, the same for every group of the call */
  int32_t offset_words[16];
  if ((depth & 15) != 0) FgMveTailOffsets(depth, (uint8_t*)offset_words);
  int32_t* const wide = offset_words;
  const int32_t pairs = 0;
#elif defined(FG_MATMUL_S8_DSP)
  /* x widened once per row (bounded stack: rows longer than 4 * FG_S8_WIDE_WORDS + 3 take the
   * generic body's C loop). */
  int32_t wide_row[2 * FG_S8_WIDE_WORDS];
  int32_t* const wide = depth <= 4 * FG_S8_WIDE_WORDS + 3 ? wide_row : NULL;
  /* two rows of x widened take twice the room: depth up to 2 * FG_S8_WIDE_WORDS + 3 */
  const int32_t pairs = rows >= 2 && depth <= 2 * FG_S8_WIDE_WORDS + 3;
#else
  int32_t* const wide = NULL;
  const int32_t pairs = 0;
#endif
  /* One body per pair of kinds that calibration produces with a per-tensor dot rescale to a
   * smaller scale (the default): no accumulator; an accumulator at a power-of-two scale above
   * or below the output's, at the output's own (shift 0), or at another scale; so none of them
   * dispatches per element; a dot rescale of shift -1 (kRescaleRight1, which calibration gives
   * a recurrent matmul now and then) without accumulator has its own body, one row at a time
   * (the pairs of timesteps would double its flash); a dot rescale of shift >= 0 on bounded dots
   * (kRescaleLeft: the input projection of trained models, whose inputs are wider than [-1, 1])
   * without accumulator has the pairs of timesteps too. Per-channel rescales, other pairs and a
   * NULL bias take one generic body. */
#define FG_MATMUL_BODY(DOT_KIND, ACC_KIND, WIDE, PAIRS)                                      \
  MatmulRows(x, x_stride, rows, depth, w, bias, multiplier, shift, &dot_rescale, DOT_KIND, \
             cols, acc, &acc_rescale, ACC_KIND, y, y_stride, WIDE, PAIRS)
  if (dot_kind == kRescaleRight && bias != NULL && wide != NULL) {
    switch (acc_kind) {
      case -1:
        FG_MATMUL_BODY(kRescaleRight, -1, wide, pairs);
        return;
      case kRescaleShiftLeft:
        FG_MATMUL_BODY(kRescaleRight, kRescaleShiftLeft, wide, 0);
        return;
      case kRescaleHalveRound:
        FG_MATMUL_BODY(kRescaleRight, kRescaleHalveRound, wide, 0);
        return;
      case kRescaleRight:
        FG_MATMUL_BODY(kRescaleRight, kRescaleRight, wide, 0);
        return;
      case kRescaleHighMul:
        FG_MATMUL_BODY(kRescaleRight, kRescaleHighMul, wide, 0);
        return;
      default:
        break;
    }
  }
  if (channel_step == 0 && shift[0] >= 0 && shift[0] <= 29 && multiplier[0] >= 0 &&
      bias != NULL && acc_kind == -1 && DotsFit(bias, cols, depth, 30 - shift[0])) {
    MatmulLeft(x, x_stride, rows, depth, w, bias, multiplier, shift, &dot_rescale, cols, y,
               y_stride, wide, pairs);
    return;
  }
#if defined(FG_MATMUL_S8_MVE) || defined(FG_MATMUL_S8_DSP)
  if (dot_kind == kRescaleRight1 && bias != NULL && wide != NULL && acc_kind == -1) {
    MatmulRight1(x, x_stride, rows, depth, w, bias, multiplier, shift, &dot_rescale, cols, y,
                 y_stride, wide);
    return;
  }
#endif
  FG_MATMUL_BODY(dot_kind, acc_kind, wide, -1);
#undef FG_MATMUL_BODY
}

/* The elementwise int16 functions below are loops over fg_elementwise.h's per-value forms (the
 * fused loops of generated cores call the same ones): the power-of-two body when every rescale
 * of the call is a power of two, the right-shift form for a product whose pair allows it, the
 * general body otherwise. */

void fg_lut_s16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n) {
#ifdef FG_MATMUL_S8_MVE
  /* Each vector's lanes are read before they are written: in place (x == y) stays allowed. */
  FgMveLutS16(lut, x, y, n, FG_LUT_SEGMENT_BITS);
  return;
#endif
  for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)fg_s16_lut(lut, x[i]);
}

void fg_lut_or_bound_s16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n) {
  if (!fg_lut_is_clamp(lut)) {
    fg_lut_s16(lut, x, y, n);
    return;
  }
  const int32_t lo = lut[FG_CLAMP_LO_KNOT], hi = lut[FG_CLAMP_HI_KNOT];
  for (int32_t i = 0; i < n; ++i) y[i] = (int16_t)fg_s16_bound(x[i], lo, hi);
}

void fg_binary_s16(FgBinaryOp op, const int16_t* a, int32_t a_step, const int16_t* b,
                   int32_t b_step, int32_t a_multiplier, int32_t a_shift, int32_t b_multiplier,
                   int32_t b_shift, int16_t* y, int32_t n) {
  /* Both operands at the output scale first; only the final saturation clips. Each y[i] is
   * written after a[i] and b[i] are read: in place is safe. */
  const FgRescale ra = fg_s16_rescale(a_multiplier, a_shift, 15);
  const FgRescale rb = fg_s16_rescale(b_multiplier, b_shift, 15);
  if (ra.sum_ok && rb.sum_ok) {
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
    for (int32_t i = 0; i < n; ++i) {
      y[i] = (int16_t)fg_s16_mul_p2(a[i * a_step], b[i * b_step], &r);
    }
    return;
  }
  if (r.right_ok) {
    for (int32_t i = 0; i < n; ++i) {
      y[i] = (int16_t)fg_s16_mul_right(a[i * a_step], b[i * b_step], &r);
    }
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    y[i] = (int16_t)fg_s16_mul_any(a[i * a_step], b[i * b_step], &r);
  }
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
  if (r.kind == kRescaleRight && r.sh <= 22 && zero_point >= -128 && zero_point <= 127) {
    /* The usual case: a smaller scale, not a power of two, and an int8 zero point. Adding zp
     * after the floor shift by sh equals adding zp * 2^sh before it, so the zero point joins
     * the rounding half in the high word of RescaleRightSplit's constant: no add per value.
     * For int16 x, |hi(q)| < 2^14 and half2 + |zp| 2^sh < 2^30 (sh <= 22): nothing overflows,
     * and the int32 sum the general loop saturates never reaches saturation. Two values per
     * pass. */
    const int32_t half2 = r.half2 + zero_point * ((int32_t)1 << r.sh);
    int32_t i = 0;
    for (; i + 1 < n; i += 2) {
      const int32_t a = RescaleRightSplit(x[i], r.multiplier, half2, r.sh);
      const int32_t b = RescaleRightSplit(x[i + 1], r.multiplier, half2, r.sh);
      y[i] = (int8_t)Clamp8(a);
      y[i + 1] = (int8_t)Clamp8(b);
    }
    if (i < n) y[i] = (int8_t)Clamp8(RescaleRightSplit(x[i], r.multiplier, half2, r.sh));
    return;
  }
  if (r.kind == kRescaleRight) {
    for (int32_t i = 0; i < n; ++i) {
      y[i] = (int8_t)Clamp8(fg_s32_add_sat(RescaleApply(&r, kRescaleRight, x[i]), zero_point));
    }
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    y[i] = (int8_t)Clamp8(fg_s32_add_sat(RescaleApply(&r, r.kind, x[i]), zero_point));
  }
}

void fg_requantize_s8_s16(const int8_t* x, int32_t zero_point, int32_t multiplier, int32_t shift,
                          int16_t* y, int32_t n) {
  const Rescale r = RescaleMake(multiplier, shift, 31);
  for (int32_t i = 0; i < n; ++i) {
    /* |x - zero_point| <= 255: no overflow before the rescale. */
    y[i] = (int16_t)fg_s16_clamp(RescaleApply(&r, r.kind, (int32_t)x[i] - zero_point));
  }
}

void fg_copy_s16(const int16_t* x, int16_t* y, int32_t n) {
  if (n > 0) memmove(y, x, (size_t)n * sizeof(int16_t));
}

void fg_fill_s16(int16_t* y, int16_t value, int32_t n) {
  for (int32_t i = 0; i < n; ++i) y[i] = value;
}

/* ---- reductions, division and where of int16 values ---------------------------------------- */
/* Plain loops through fg_multiply_by_quantized_multiplier: these ops run once per step on one
 * vector (a normalisation, a softmax), not in the matmul-bound inner loop. */

void fg_reduce_s16(FgReduceOp op, const int16_t* x, int32_t multiplier, int32_t shift,
                   int16_t* y, int32_t n) {
  int32_t acc = 0;
  if (op == kFgReduceMax) {
    acc = x[0];
    for (int32_t i = 1; i < n; ++i) acc = x[i] > acc ? x[i] : acc;
  } else if (op == kFgReduceSum || op == kFgReduceMean) {
    int64_t total = 0;
    for (int32_t i = 0; i < n; ++i) total += x[i];
    acc = total > INT32_MAX ? INT32_MAX : total < INT32_MIN ? INT32_MIN : (int32_t)total;
  } else {
    y[0] = 0;
    return;
  }
  y[0] = (int16_t)fg_s16_clamp(fg_multiply_by_quantized_multiplier(acc, multiplier, shift));
}

/* floor(sqrt(v)) of a 64-bit value, bit by bit (32 iterations, no division). */
static uint32_t IsqrtU64(uint64_t v) {
  uint64_t root = 0;
  uint64_t bit = (uint64_t)1 << 62;
  while (bit > v) bit >>= 2;
  while (bit != 0) {
    if (v >= root + bit) {
      v -= root + bit;
      root = (root >> 1) + bit;
    } else {
      root >>= 1;
    }
    bit >>= 2;
  }
  return (uint32_t)root;
}

void fg_rsqrt_s16(const int16_t* x, int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    int64_t q = INT32_MAX;
    if (x[i] > 0) {
      /* q = floor(2^46 / d), d = isqrt(x * 2^30) in [2^15, 2^23): q <= 2^31, clamped to int32
       * below. Long division in 32-bit steps (2^46 = 2^31 * 2^8 * 2^7; every partial remainder
       * times its step stays below 2^31), so no 64-bit division helper is needed. */
      const uint32_t d = IsqrtU64((uint64_t)x[i] << 30);
      const uint32_t q0 = 0x80000000u / d, r0 = 0x80000000u % d;
      const uint32_t q1 = (r0 << 8) / d, r1 = (r0 << 8) % d;
      const uint32_t q2 = (r1 << 7) / d;
      q = ((int64_t)q0 << 15) + ((int64_t)q1 << 7) + q2;
      q = q > INT32_MAX ? INT32_MAX : q;
    }
    y[i] = (int16_t)fg_s16_clamp(fg_multiply_by_quantized_multiplier((int32_t)q, multiplier, shift));
  }
}

void fg_div_s16(const int16_t* a, int32_t a_step, const int16_t* b, int32_t b_step,
                int32_t multiplier, int32_t shift, int16_t* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    /* 2 * a * 2^15 is in [-2^31, 2^31 - 2^16]: an int32, so the division is a 32-bit one (SDIV;
     * no 64-bit division helper from libgcc). Only -2^31 / -1 leaves int32: taken apart. */
    const int32_t num = (int32_t)a[i * a_step] * 65536;
    const int32_t den = b[i * b_step];
    int64_t q;
    if (den == 0) {
      q = num > 0 ? INT32_MAX : num < 0 ? -(int64_t)INT32_MAX : 0;
    } else {
      /* truncated: 2q rounded toward zero */
      const int64_t twice = den == -1 ? -(int64_t)num : (int64_t)(num / den);
      const int64_t away = twice + (twice > 0) - (twice < 0);
      q = (away + (away < 0)) >> 1; /* away / 2 toward zero: half away from zero */
      q = q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : q;
    }
    y[i] = (int16_t)fg_s16_clamp(fg_multiply_by_quantized_multiplier((int32_t)q, multiplier, shift));
  }
}

static int CompareS32(FgCompareOp cmp, int32_t a, int32_t b) {
  switch (cmp) {
    case kFgGreater:
      return a > b;
    case kFgGreaterEqual:
      return a >= b;
    case kFgLess:
      return a < b;
    case kFgLessEqual:
      return a <= b;
    case kFgEqual:
      return a == b;
    case kFgNotEqual:
      return a != b;
  }
  return -1;
}

void fg_where_s16(FgCompareOp cmp, const int16_t* a, int32_t a_step, const int16_t* b,
                  int32_t b_step, const int16_t* x, int32_t x_step, const int16_t* t,
                  int32_t t_step, const int32_t* rq, int16_t* y, int32_t n) {
  if (CompareS32(cmp, 0, 0) < 0) {
    fg_fill_s16(y, 0, n);
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    /* Every operand is read before y[i] is written, so y may alias any of them. */
    const int32_t va = fg_multiply_by_quantized_multiplier(a[i * a_step], rq[0], rq[1]);
    const int32_t vb = fg_multiply_by_quantized_multiplier(b[i * b_step], rq[2], rq[3]);
    const int32_t vx = fg_multiply_by_quantized_multiplier(x[i * x_step], rq[4], rq[5]);
    const int32_t vt = fg_multiply_by_quantized_multiplier(t[i * t_step], rq[6], rq[7]);
    y[i] = (int16_t)fg_s16_clamp(CompareS32(cmp, va, vb) ? vx : vt);
  }
}
