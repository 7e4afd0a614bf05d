// Tests of the fixed-point runtime (tflm_kernels/runtime/fg_runtime_q.c) on hand-derived values.
//
// Notation: a (multiplier, shift) pair means the real factor multiplier * 2^(shift - 31), so
// (2^30, 0) is 0.5, (2^30, 1) is 1.0 and (2^30, -1) is 0.25. MBQM(x, m, s) is
// RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << max(s, 0), m), max(-s, 0)):
//   SRDHM(a, b) = trunc((a*b + nudge) / 2^31), nudge = 2^30 if a*b >= 0 else 1 - 2^30
//                 (so +1.5 -> 2 but -1.5 -> -1: ties go up, as in gemmlowp),
//   RDBPOT(x, e) = round(x / 2^e), ties away from zero.
// The Python twin (fusegen/reference/int_interp.py) is compared with this library over many
// random values in tests/test_int8_runtime.py; these cases pin the semantics themselves.
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "tflm_kernels/runtime/fg_runtime.h"

namespace {

constexpr int32_t kHalf = 1 << 30;  // with shift 0: 0.5; shift 1: 1.0; shift -1: 0.25

struct Pair {
  int32_t multiplier;
  int32_t shift;
};

Pair Quantize(double real) {
  Pair p{-1, -1};
  fg_quantize_multiplier(real, &p.multiplier, &p.shift);
  return p;
}

TEST(FgQuantizeMultiplier, PowersOfTwoAndFractions) {
  // frexp(0.5) = 0.5 * 2^0 -> 0.5 * 2^31 = 2^30.
  EXPECT_EQ(Quantize(0.5).multiplier, kHalf);
  EXPECT_EQ(Quantize(0.5).shift, 0);
  // frexp(1.0) = 0.5 * 2^1.
  EXPECT_EQ(Quantize(1.0).multiplier, kHalf);
  EXPECT_EQ(Quantize(1.0).shift, 1);
  // frexp(0.75) = 0.75 * 2^0 -> 0.75 * 2^31 = 1610612736.
  EXPECT_EQ(Quantize(0.75).multiplier, 1610612736);
  EXPECT_EQ(Quantize(0.75).shift, 0);
  // frexp(3.0) = 0.75 * 2^2.
  EXPECT_EQ(Quantize(3.0).multiplier, 1610612736);
  EXPECT_EQ(Quantize(3.0).shift, 2);
}

TEST(FgQuantizeMultiplier, EdgeCases) {
  EXPECT_EQ(Quantize(0.0).multiplier, 0);
  EXPECT_EQ(Quantize(0.0).shift, 0);
  // 1 - 2^-40: fraction * 2^31 = 2^31 - 2^-9 rounds to 2^31, which is halved: (2^30, 1).
  EXPECT_EQ(Quantize(1.0 - 1.0 / 1099511627776.0).multiplier, kHalf);
  EXPECT_EQ(Quantize(1.0 - 1.0 / 1099511627776.0).shift, 1);
  // 2^-40 = 0.5 * 2^-39: exponent -39 < -31, flushed to zero.
  EXPECT_EQ(Quantize(1.0 / 1099511627776.0).multiplier, 0);
  EXPECT_EQ(Quantize(1.0 / 1099511627776.0).shift, 0);
}

TEST(FgMultiplyByQuantizedMultiplier, RoundsLikeGemmlowp) {
  // 1000 * 0.5: SRDHM = (1000 * 2^30 + 2^30) / 2^31 = 500.5 -> 500.
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(1000, kHalf, 0), 500);
  // 3 * 0.5 = 1.5: (3 * 2^30 + 2^30) / 2^31 = 2 exactly.
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(3, kHalf, 0), 2);
  // -3 * 0.5 = -1.5: (-3 * 2^30 + 1 - 2^30) / 2^31 = -1.99999... truncates to -1.
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(-3, kHalf, 0), -1);
  // 5 * 0.25 = 1.25 rounds twice: SRDHM(5, 2^30) = 2.5 -> 3, then RDBPOT(3, 1) = 1.5 -> 2.
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(5, kHalf, -1), 2);
  // 100 * 4: shift 3 is a left shift, 800 * 0.5 = 400 exactly.
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(100, kHalf, 3), 400);
}

TEST(FgMultiplyByQuantizedMultiplier, LeftShiftSaturates) {
  // 2^30 << 2 = 2^32 saturates to 2^31 - 1, then * 0.5: ((2^31 - 1) * 2^30 + 2^30) / 2^31 = 2^30.
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(1 << 30, kHalf, 2), 1 << 30);
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(-(1 << 30), kHalf, 2), -(1 << 30));
  // A multiplier of 0 (a flushed factor) gives 0 whatever the shift.
  EXPECT_EQ(fg_multiply_by_quantized_multiplier(12345, 0, 0), 0);
}

// lut[i] = (i - 64) * 512: the knots of the identity on int16 (the last, 32768, clipped).
std::vector<int16_t> IdentityLut() {
  std::vector<int16_t> lut(FG_LUT_SIZE);
  for (int i = 0; i < FG_LUT_SIZE; ++i) {
    const int32_t v = (i - 64) * 512;
    lut[static_cast<size_t>(i)] = static_cast<int16_t>(v > 32767 ? 32767 : v);
  }
  return lut;
}

TEST(FgLutLookup, GeometryIs128SegmentsOf512Steps) {
  EXPECT_EQ(FG_LUT_SEGMENT_BITS, 9);
  EXPECT_EQ(FG_LUT_SIZE, (65536 >> FG_LUT_SEGMENT_BITS) + 1);
}

TEST(FgLutLookup, IdentityTableInterpolatesExactly) {
  const std::vector<int16_t> lut = IdentityLut();
  // Inside a segment of slope 512: delta = (512 * offset + 256) >> 9 = offset.
  for (int32_t x : {-32768, -32767, -513, -512, -1, 0, 1, 511, 512, 1000, 32255}) {
    EXPECT_EQ(fg_lut_lookup_s16(static_cast<int16_t>(x), lut.data()), x) << x;
  }
  // Last segment: lut[127] = 32256, lut[128] = 32767 (clipped), slope 511. x = 32767 has
  // offset 511: (511 * 511 + 256) >> 9 = 261377 >> 9 = 510, so 32256 + 510 = 32766.
  EXPECT_EQ(fg_lut_lookup_s16(32767, lut.data()), 32766);
}

TEST(FgLutLookup, NegativeSlopeRoundsToNearest) {
  std::vector<int16_t> lut(FG_LUT_SIZE, 0);
  lut[64] = 1000;  // segment [0, 512) falls from 1000 to lut[65] = 0
  // x = 256: (-1000 * 256 + 256) >> 9 = -255744 >> 9 = floor(-499.5) = -500; 1000 - 500 = 500.
  EXPECT_EQ(fg_lut_lookup_s16(256, lut.data()), 500);
  // x = 1: (-1000 + 256) >> 9 = floor(-1.45) = -2; 998 (exact: 1000 - 1000/512 = 998.05).
  EXPECT_EQ(fg_lut_lookup_s16(1, lut.data()), 998);
  // x = -1 is the last point of segment 63, which rises from lut[63] = 0 to lut[64] = 1000:
  // (1000 * 511 + 256) >> 9 = 511256 >> 9 = 998.
  EXPECT_EQ(fg_lut_lookup_s16(-1, lut.data()), 998);
  // x = -513 lies in segment 62, flat at 0.
  EXPECT_EQ(fg_lut_lookup_s16(-513, lut.data()), 0);
}

// A clamp row (abi.clamp_row): knot 0 above the last knot, lo and hi at knots 1 and 2.
std::vector<int16_t> ClampRow(int16_t lo, int16_t hi) {
  std::vector<int16_t> row(FG_LUT_SIZE, 0);
  row[0] = 32767;
  row[FG_LUT_SIZE - 1] = -32768;
  row[FG_CLAMP_LO_KNOT] = lo;
  row[FG_CLAMP_HI_KNOT] = hi;
  return row;
}

TEST(FgLutOrBoundS16, AClampRowClampsExactlyATableLooksUp) {
  const std::vector<int16_t> lut = IdentityLut();
  const std::vector<int16_t> x = {-32768, -5, -4, 0, 3, 100, 32512, 32513, 32766, 32767};
  std::vector<int16_t> y(x.size());
  // A table (knot 0 below the last): its clipped top knot makes 32767 come out as 32766.
  fg_lut_or_bound_s16(lut.data(), x.data(), y.data(), static_cast<int32_t>(x.size()));
  EXPECT_EQ(y[9], 32766);
  // The clamp row of -4..32767: every x exact.
  const std::vector<int16_t> clamp = ClampRow(-4, 32767);
  fg_lut_or_bound_s16(clamp.data(), x.data(), y.data(), static_cast<int32_t>(x.size()));
  EXPECT_EQ(y, (std::vector<int16_t>{-4, -4, -4, 0, 3, 100, 32512, 32513, 32766, 32767}));
  // In place, 0..100.
  std::vector<int16_t> z = x;
  const std::vector<int16_t> relu100 = ClampRow(0, 100);
  fg_lut_or_bound_s16(relu100.data(), z.data(), z.data(), static_cast<int32_t>(z.size()));
  EXPECT_EQ(z, (std::vector<int16_t>{0, 0, 0, 0, 3, 100, 100, 100, 100, 100}));
  // A constant table (knot 0 equal to the last) is a table, not a clamp row.
  const std::vector<int16_t> flat(FG_LUT_SIZE, 7);
  fg_lut_or_bound_s16(flat.data(), x.data(), y.data(), static_cast<int32_t>(x.size()));
  EXPECT_EQ(y, std::vector<int16_t>(x.size(), 7));
}

TEST(FgMatmulS8, PerChannelMultipliersBiasAndAccumulator) {
  const int8_t x[] = {1, -2, 3};
  const int8_t w[] = {1, 2, 3,     // column 0
                      -4, 5, -6};  // column 1
  const int32_t bias[] = {10, -10};
  const int32_t multiplier[] = {kHalf, kHalf};
  const int32_t shift[] = {0, -1};  // 0.5 and 0.25
  int16_t y[2] = {0, 0};
  fg_matmul_s8(x, 0, 1, 3, w, bias, multiplier, shift, 1, 2, nullptr, 0, 0, y, 0);
  // Column 0: 10 + 1 - 4 + 9 = 16, * 0.5 = 8.
  EXPECT_EQ(y[0], 8);
  // Column 1: -10 - 4 - 10 - 18 = -42, * 0.25 = -10.5: SRDHM(-42, 2^30) = -21 (tie up), then
  // RDBPOT(-21, 1) = -10.5 -> -11 (tie away from zero).
  EXPECT_EQ(y[1], -11);

  // With an accumulator at factor 1.0 (2^30, 1), in place: 100 + 8 and 200 - 11.
  int16_t acc[2] = {100, 200};
  fg_matmul_s8(x, 0, 1, 3, w, bias, multiplier, shift, 1, 2, acc, kHalf, 1, acc, 0);
  EXPECT_EQ(acc[0], 108);
  EXPECT_EQ(acc[1], 189);
}

TEST(FgMatmulS8, PerTensorUsesTheFirstPairForEveryColumn) {
  const int8_t x[] = {1, -2, 3};
  const int8_t w[] = {1, 2, 3, -4, 5, -6};
  const int32_t bias[] = {10, -10};
  const int32_t multiplier[] = {kHalf, 0};  // channel step 0: only [0] is read
  const int32_t shift[] = {0, 99};
  int16_t y[2] = {0, 0};
  fg_matmul_s8(x, 0, 1, 3, w, bias, multiplier, shift, 0, 2, nullptr, 0, 0, y, 0);
  // Both columns at 0.5: 16 -> 8; -42 -> -21 exactly.
  EXPECT_EQ(y[0], 8);
  EXPECT_EQ(y[1], -21);
}

TEST(FgMatmulS8, RowsStridesAndSaturation) {
  // Two rows of x, the second all 127; one column of 127s; factor 4096 = (2^30, 13).
  const int8_t x[] = {1, 1, 127, 127};
  const int8_t w[] = {127, 127};
  const int32_t multiplier[] = {kHalf};
  const int32_t shift[] = {13};
  int16_t y[4] = {-1, -1, -1, -1};
  fg_matmul_s8(x, 2, 2, 2, w, nullptr, multiplier, shift, 1, 1, nullptr, 0, 0, y, 2);
  // Row 0: 254 * 4096 = 1040384 saturates to 32767. Row 1 likewise; y stride 2 leaves y[1], y[3].
  EXPECT_EQ(y[0], 32767);
  EXPECT_EQ(y[1], -1);
  EXPECT_EQ(y[2], 32767);
  EXPECT_EQ(y[3], -1);
}

TEST(FgBinaryS16, OperandsRescaledToTheOutput) {
  const int16_t a[] = {100, -100};
  const int16_t b[] = {-30};  // broadcast (step 0)
  int16_t y[2];
  // a * 1.0 (2^30, 1) <op> b * 0.5 (2^30, 0); b becomes -15.
  fg_binary_s16(kFgAdd, a, 1, b, 0, kHalf, 1, kHalf, 0, y, 2);
  EXPECT_EQ(y[0], 85);
  EXPECT_EQ(y[1], -115);
  fg_binary_s16(kFgSub, a, 1, b, 0, kHalf, 1, kHalf, 0, y, 2);
  EXPECT_EQ(y[0], 115);
  EXPECT_EQ(y[1], -85);
  fg_binary_s16(kFgMaximum, a, 1, b, 0, kHalf, 1, kHalf, 0, y, 2);
  EXPECT_EQ(y[0], 100);
  EXPECT_EQ(y[1], -15);
  fg_binary_s16(kFgMinimum, a, 1, b, 0, kHalf, 1, kHalf, 0, y, 2);
  EXPECT_EQ(y[0], -15);
  EXPECT_EQ(y[1], -100);
  // Not a rescaled op: zeros.
  fg_binary_s16(kFgDiv, a, 1, b, 0, kHalf, 1, kHalf, 0, y, 2);
  EXPECT_EQ(y[0], 0);
  EXPECT_EQ(y[1], 0);
}

TEST(FgBinaryS16, SumSaturates) {
  const int16_t a[] = {30000, -30000};
  int16_t y[2];
  fg_binary_s16(kFgAdd, a, 1, a, 1, kHalf, 1, kHalf, 1, y, 2);  // 60000 and -60000
  EXPECT_EQ(y[0], 32767);
  EXPECT_EQ(y[1], -32768);
}

TEST(FgMulS16, ProductRescaledOnce) {
  const int16_t a[] = {300, -300};
  const int16_t b[] = {200};
  int16_t y[2];
  // Factor 2^-8 = (2^30, -7). 60000 / 256 = 234.375: SRDHM(60000, 2^30) = 30000 exactly, then
  // RDBPOT(30000, 7) = 234.375 -> 234; the negative product mirrors it: -234.
  fg_mul_s16(a, 1, b, 0, kHalf, -7, y, 2);
  EXPECT_EQ(y[0], 234);
  EXPECT_EQ(y[1], -234);
  // In place, a factor 1.0: 300 * 300 = 90000 saturates.
  int16_t c[] = {300};
  fg_mul_s16(c, 1, c, 1, kHalf, 1, c, 1);
  EXPECT_EQ(c[0], 32767);
}

TEST(FgMulS16, RightShiftFormRoundsTwiceLikeMbqm) {
  // A multiplier that is not 2^30 with shift <= -2 takes the right-shift form (one 64-bit
  // multiply-add and one shift for both of MBQM's roundings). Factor 0.75 * 2^-2 =
  // (1610612736, -2): 60000 -> 11250 exactly; 3 -> 0.5625 -> 1 and -3 -> -1; 2 -> SRDHM 1.5
  // rounds to 2, then 2 / 4 = 0.5 rounds up to 1 (MBQM rounds twice; the exact 0.375 would give
  // 0), while -2 -> SRDHM -1.5 rounds to -2 (away from zero), then -0.5 rounds to 0.
  const int16_t a[] = {300, -300, 3, -3, 1, -1, -32768, -32768};
  const int16_t b[] = {200, 200, 1, 1, 2, 2, -32768, 32767};
  const int16_t want[] = {11250, -11250, 1, -1, 1, 0, 32767, -32768};
  int16_t y[8];
  fg_mul_s16(a, 1, b, 1, 1610612736, -2, y, 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(y[i], want[i]) << i;
  // The largest multiplier, products at +-2^30: saturated; 1 * 1 * (1 - 2^-31) / 4 -> 0.
  const int16_t c[] = {-32768, -32768, 1};
  const int16_t d[] = {-32768, 32767, 1};
  fg_mul_s16(c, 1, d, 1, INT32_MAX, -2, y, 3);
  EXPECT_EQ(y[0], 32767);
  EXPECT_EQ(y[1], -32768);
  EXPECT_EQ(y[2], 0);
}

TEST(FgRequantize, Int16ToInt8WithZeroPoint) {
  const int16_t x[] = {1000, -1000, 20000};
  int8_t y[3];
  // Factor 1/16 = (2^30, -3), zero point -5. 1000 / 16 = 62.5: SRDHM gives 500 exactly, RDBPOT
  // rounds 62.5 away from zero to 63; 63 - 5 = 58. -1000: SRDHM -500, -62.5 -> -63; -68.
  // 20000 / 16 = 1250 - 5 saturates to 127.
  fg_requantize_s16_s8(x, kHalf, -3, -5, y, 3);
  EXPECT_EQ(y[0], 58);
  EXPECT_EQ(y[1], -68);
  EXPECT_EQ(y[2], 127);
}

TEST(FgRequantize, Int8ToInt16WithZeroPoint) {
  const int8_t x[] = {-128, 0, 127};
  int16_t y[3];
  // Zero point -128, factor 256 = (2^30, 9): 0, 128 * 256 = 32768 (saturates), 255 * 256 too.
  fg_requantize_s8_s16(x, -128, kHalf, 9, y, 3);
  EXPECT_EQ(y[0], 0);
  EXPECT_EQ(y[1], 32767);
  EXPECT_EQ(y[2], 32767);
  // Factor 1/2: (0 + 128) / 2 = 64; 255 / 2 = 127.5 -> 128.
  fg_requantize_s8_s16(x, -128, kHalf, 0, y, 3);
  EXPECT_EQ(y[1], 64);
  EXPECT_EQ(y[2], 128);
}

TEST(FgRescaleS16, InPlace) {
  int16_t x[] = {7, -7, 32767};
  // Factor 0.5: 3.5 -> 4 and -3.5 -> -3 (SRDHM ties go up); 16383.5 -> 16384.
  fg_rescale_s16(x, kHalf, 0, x, 3);
  EXPECT_EQ(x[0], 4);
  EXPECT_EQ(x[1], -3);
  EXPECT_EQ(x[2], 16384);
}

TEST(FgCopyFillS16, OverlapAndCount) {
  int16_t x[] = {1, 2, 3, 4};
  fg_copy_s16(x, x + 1, 3);  // overlapping: memmove semantics
  EXPECT_EQ(x[1], 1);
  EXPECT_EQ(x[3], 3);
  fg_fill_s16(x, -9, 2);
  EXPECT_EQ(x[0], -9);
  EXPECT_EQ(x[1], -9);
  EXPECT_EQ(x[2], 2);
  fg_fill_s16(x, 5, 0);  // nothing to do
  EXPECT_EQ(x[0], -9);
}

}  // namespace
