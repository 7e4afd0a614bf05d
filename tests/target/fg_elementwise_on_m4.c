/* fg_elementwise.h's int16 per-value forms on the Cortex-M4 itself (tests/test_cross_compile.py
 * builds this with the runtime and runs it on QEMU mps2-an386), where the DSP forms (SMLAD for the
 * lookup, SSAT/QADD) replace the portable C the host tests see; and the same checks on the
 * Cortex-M55 (QEMU mps3-an547), where fg_matmul_s8 runs its Helium (MVE) dot products and the
 * scalar forms keep the DSP ones:
 *   - fg_s16_lut on every int16 input of 12 tables (random knots, the extreme slopes +-65535, flat
 *     at both ends; half of them at an odd address, so the knot pairs are unaligned words),
 *     against TFLM's form base + ((slope * offset + 2^(b-1)) >> b);
 *   - fg_s16_mul_right, fg_s16_mul_p2 and fg_s16_binary_p2 (for the pairs with sum_ok) against
 *     fg_multiply_by_quantized_multiplier (MBQM) and saturation, for the pairs each body takes
 *     (every shift, random multipliers), on random int16 operands and the extremes;
 *   - fg_requantize_s16_s8 against MBQM, the zero point and int8 saturation;
 *   - fg_binary_s16 for every shift of a power-of-two pair (its two bodies);
 *   - fg_matmul_s8's bodies for a dot rescale of shift -1 and -9 against gemmlowp's MBQM, and
 *     over depths 1..40 (every remainder), 1..5 rows, 1..9 outputs, per tensor (shifts -9, -1,
 *     0, 1, 2) and per channel, without and with an int16 accumulator of each rescale kind (in
 *     place too).
 * The result is the semihosting exit code: 0 when every value is equal. */
#include <stdint.h>

#include "tflm_kernels/runtime/fg_elementwise.h"

#include "fg_target.h"

static int16_t RandomS16(void) {
  const uint32_t r = Random();
  switch ((r >> 4) & 7u) { /* one value in four at an extreme */
    case 0: return INT16_MIN;
    case 1: return INT16_MAX;
    default: return (int16_t)((int32_t)((r >> 12) & 0xffffu) - 32768);
  }
}

static int32_t LutReference(const int16_t* t, int32_t x) {
  const int32_t biased = x + 32768;
  const int32_t index = biased >> FG_LUT_SEGMENT_BITS;
  const int32_t offset = biased & ((1 << FG_LUT_SEGMENT_BITS) - 1);
  const int32_t base = t[index];
  const int32_t slope = (int32_t)t[index + 1] - base;
  return base + ((slope * offset + (1 << (FG_LUT_SEGMENT_BITS - 1))) >> FG_LUT_SEGMENT_BITS);
}

static int16_t g_lut[FG_LUT_SIZE + 1];

static int32_t CheckLuts(void) {
  int32_t bad = 0;
  for (int32_t table = 0; table < 12; ++table) {
    int16_t* const t = g_lut + (table & 1);
    for (int32_t k = 0; k < FG_LUT_SIZE; ++k) {
      int32_t v = (int32_t)((Random() >> 8) & 0xffffu) - 32768;
      if (table < 2) v = ((k + table) & 1) ? INT16_MAX : INT16_MIN;
      if (table == 2 || table == 3) v = table == 2 ? INT16_MAX : INT16_MIN;
      t[k] = (int16_t)v;
    }
    for (int32_t x = INT16_MIN; x <= INT16_MAX; ++x) bad += fg_s16_lut(t, x) != LutReference(t, x);
  }
  return bad;
}

static int32_t Sat16(int32_t v) { return v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v); }

static int32_t CheckRescales(void) {
  int32_t bad = 0;
  for (int32_t shift = -31; shift <= 15; ++shift) {
    for (int32_t trial = 0; trial < 8; ++trial) {
      /* 2^30 (the power-of-two body) or a random multiplier >= 2^30 (the right-shift form) */
      const int32_t m = trial == 0 ? (1 << 30) : (int32_t)((Random() >> 1) | 0x40000000u);
      const FgRescale r30 = fg_s16_rescale(m, shift, 30);
      const FgRescale r15 = fg_s16_rescale(m, shift, 15);
      const FgRescale id = fg_s16_rescale(1 << 30, 1, 15);
      for (int32_t i = 0; i < 400; ++i) {
        const int32_t a = RandomS16();
        const int32_t b = RandomS16();
        const int32_t product = Sat16(fg_multiply_by_quantized_multiplier(a * b, m, shift));
        if (r30.right_ok) bad += fg_s16_mul_right(a, b, &r30) != product;
        if (r30.p2) bad += fg_s16_mul_p2(a, b, &r30) != product;
        if (r15.sum_ok) {
          const int32_t sum = Sat16(fg_multiply_by_quantized_multiplier(a, m, shift) + b);
          bad += fg_s16_binary_p2(kFgAdd, a, b, &r15, &id) != sum;
        }
      }
    }
  }
  return bad;
}

/* fg_requantize_s16_s8 (its SSAT #8 and the zero point inside the rounding, two values per
 * pass) against MBQM + zero point, saturated to int8: every shift of the right-shift form, both
 * sides of its sh <= 22 limit, random multipliers and zero points, an odd count. */
static int16_t g_x[257];
static int8_t g_y[257];

static int32_t CheckRequantize(void) {
  int32_t bad = 0;
  for (int32_t shift = -31; shift <= -2; ++shift) {
    for (int32_t trial = 0; trial < 8; ++trial) {
      const int32_t m = (int32_t)((Random() >> 1) | 0x40000000u);
      const int32_t zp = trial == 0 ? -128 : (trial == 1 ? 127 : (int32_t)(Random() >> 24) - 128);
      for (int32_t i = 0; i < 257; ++i) g_x[i] = RandomS16();
      fg_requantize_s16_s8(g_x, m, shift, zp, g_y, 257);
      for (int32_t i = 0; i < 257; ++i) {
        int32_t v = fg_multiply_by_quantized_multiplier(g_x[i], m, shift) + zp;
        v = v < INT8_MIN ? INT8_MIN : (v > INT8_MAX ? INT8_MAX : v);
        bad += g_y[i] != v;
      }
    }
  }
  return bad;
}

/* gemmlowp's MultiplyByQuantizedMultiplier as written (int64, no fast forms): the reference of
 * fg_matmul_s8's rescales below. */
static int32_t ReferenceMbqm(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  int64_t v = (int64_t)x * ((int64_t)1 << left);
  v = v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : v);
  const int64_t ab = v * multiplier;
  const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30);
  const int64_t sum = ab + nudge;
  const int32_t high = (int32_t)(sum >= 0 ? sum / ((int64_t)1 << 31) : -(-sum / ((int64_t)1 << 31)));
  const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
  const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> right) + ((high & mask) > threshold ? 1 : 0);
}

/* fg_matmul_s8 with a per-tensor dot rescale of shift -1 (its own DSP body, kRescaleRight1) and
 * -9 (kRescaleRight), no accumulator, against int32 dots and ReferenceMbqm: 3 rows of 12 int8
 * (three 4 x 4 blocks of fusegen/abi.py's layout: w[16j + 4r + k] = row r, column 4j + k) by 4
 * outputs, random and extreme values. */
static int8_t g_mx[3 * 12];
static int8_t g_mw[4 * 12];
static int32_t g_mbias[4];
static int16_t g_my[3 * 4];

static int32_t CheckMatmul(void) {
  int32_t bad = 0;
  for (int32_t trial = 0; trial < 64; ++trial) {
    const int32_t shift = (trial & 1) ? -1 : -9;
    const int32_t m = (int32_t)((Random() >> 1) | 0x40000000u);
    int8_t w[4][12];
    for (int32_t r = 0; r < 4; ++r) {
      for (int32_t k = 0; k < 12; ++k) w[r][k] = trial < 2 ? -127 : (int8_t)(Random() >> 24);
    }
    for (int32_t j = 0; j < 3; ++j) {
      for (int32_t r = 0; r < 4; ++r) {
        for (int32_t k = 0; k < 4; ++k) g_mw[16 * j + 4 * r + k] = w[r][4 * j + k];
      }
    }
    for (int32_t i = 0; i < 3 * 12; ++i) g_mx[i] = trial < 2 ? -128 : (int8_t)(Random() >> 24);
    for (int32_t r = 0; r < 4; ++r) g_mbias[r] = (int32_t)(Random() >> 8) - (1 << 23);
    fg_matmul_s8(g_mx, 12, 3, 12, g_mw, g_mbias, &m, &shift, 0, 4, NULL, 0, 0, g_my, 4);
    for (int32_t t = 0; t < 3; ++t) {
      for (int32_t r = 0; r < 4; ++r) {
        int32_t dot = g_mbias[r];
        for (int32_t k = 0; k < 12; ++k) dot += (int32_t)g_mx[12 * t + k] * w[r][k];
        bad += g_my[4 * t + r] != Sat16(ReferenceMbqm(dot, m, shift));
      }
    }
  }
  return bad;
}

/* fg_matmul_s8 over depths 1..40 (0..2 blocks of 16 columns, every remainder of 0..3 whole
 * words and 0..3 bytes), rows 1..5 (the DSP pairs of timesteps and an odd last row), 1..9
 * outputs (groups of four and the row-major rest), a per-tensor rescale of shift -9 (the
 * specialised bodies, pairs included), -1, a per-channel one, and shift 0 and 1..2 (the
 * kRescaleLeft body with its pairs while the bias bounds the dots below 2^(30 - shift); every
 * fifth depth a bias up to +-2^29, which leaves that bound and, at shift 2, saturates x << shift
 * in MBQM: the generic body), against int32 dots and ReferenceMbqm. The weights are packed here
 * in fusegen/abi.py's block order (s8_block_order), written out independently of the runtime. */
#define FG_DEPTH_MAX 40
#define FG_ROWS_MAX 5
#define FG_COLS_MAX 9
static int8_t g_dx[FG_ROWS_MAX * FG_DEPTH_MAX];
static int8_t g_dw[FG_COLS_MAX][FG_DEPTH_MAX];
static int8_t g_dpacked[FG_COLS_MAX * FG_DEPTH_MAX];
static int32_t g_dbias[FG_COLS_MAX];
static int32_t g_dmult[FG_COLS_MAX];
static int32_t g_dshift[FG_COLS_MAX];
static int16_t g_dy[FG_ROWS_MAX * FG_COLS_MAX];

static void PackS8(int32_t cols, int32_t depth) {
  int32_t i = 0;
  const int32_t groups = cols / 4, full = depth / 16 * 16, words = depth / 4 * 4;
  for (int32_t g = 0; g < groups; ++g) {
    for (int32_t k = 0; k < full; k += 16) {
      for (int32_t r = 0; r < 4; ++r) {
        for (int32_t c = 0; c < 16; ++c) g_dpacked[i++] = g_dw[4 * g + r][k + c];
      }
    }
    for (int32_t k = full; k < words; k += 4) {
      for (int32_t r = 0; r < 4; ++r) {
        for (int32_t c = 0; c < 4; ++c) g_dpacked[i++] = g_dw[4 * g + r][k + c];
      }
    }
    for (int32_t r = 0; r < 4; ++r) {
      for (int32_t c = words; c < depth; ++c) g_dpacked[i++] = g_dw[4 * g + r][c];
    }
  }
  for (int32_t n = groups * 4; n < cols; ++n) {
    for (int32_t c = 0; c < depth; ++c) g_dpacked[i++] = g_dw[n][c];
  }
}

static int32_t CheckMatmulDepths(void) {
  int32_t bad = 0;
  for (int32_t depth = 1; depth <= FG_DEPTH_MAX; ++depth) {
    for (int32_t kind = 0; kind < 5; ++kind) { /* shift -9, -1, per channel, 0, 1..2 */
      const int32_t rows = 1 + (depth + kind) % FG_ROWS_MAX;
      const int32_t cols = 1 + (3 * depth + kind) % FG_COLS_MAX;
      const int32_t extreme = depth % 13 == 0;
      for (int32_t n = 0; n < cols; ++n) {
        for (int32_t k = 0; k < depth; ++k) {
          g_dw[n][k] = extreme ? -127 : (int8_t)(Random() >> 24);
        }
        g_dbias[n] = kind >= 3 && depth % 5 == 0 ? (int32_t)(Random() >> 2) - (1 << 29)
                                                 : (int32_t)(Random() >> 8) - (1 << 23);
        g_dmult[n] = (int32_t)((Random() >> 1) | 0x40000000u);
        g_dshift[n] = kind == 1 ? -1 : (kind == 0 ? -9 : -(int32_t)(Random() % 12u));
        if (kind == 3) g_dshift[n] = 0;
        if (kind == 4) g_dshift[n] = 1 + (int32_t)(depth & 1);
      }
      for (int32_t i = 0; i < rows * depth; ++i) {
        g_dx[i] = extreme ? -128 : (int8_t)(Random() >> 24);
      }
      PackS8(cols, depth);
      fg_matmul_s8(g_dx, depth, rows, depth, g_dpacked, g_dbias, g_dmult, g_dshift,
                   kind == 2 ? 1 : 0, cols, NULL, 0, 0, g_dy, cols);
      for (int32_t t = 0; t < rows; ++t) {
        for (int32_t n = 0; n < cols; ++n) {
          int32_t dot = g_dbias[n];
          for (int32_t k = 0; k < depth; ++k) dot += (int32_t)g_dx[depth * t + k] * g_dw[n][k];
          const int32_t c = kind == 2 ? n : 0;
          bad += g_dy[cols * t + n] != Sat16(ReferenceMbqm(dot, g_dmult[c], g_dshift[c]));
        }
      }
    }
  }
  return bad;
}

/* fg_matmul_s8 with an int16 accumulator (y = sat16(MBQM(dot) + MBQM(acc)), saturating add)
 * for each accumulator kind a body specialises (a power-of-two scale above, at or below the
 * output's, another scale, shift 0) and one it does not (a left shift with another multiplier:
 * the generic body), a dot rescale of shift -9 and per channel, depths 1..40, 1..5 rows, 1..9
 * outputs, random accumulators with the extremes, half of them in place (acc == y), against
 * int32 dots and ReferenceMbqm. */
static int16_t g_dacc[FG_ROWS_MAX * FG_COLS_MAX];

static int32_t CheckMatmulAccumulator(void) {
  int32_t bad = 0;
  for (int32_t depth = 1; depth <= FG_DEPTH_MAX; ++depth) {
    for (int32_t kind = 0; kind < 12; ++kind) {
      const int32_t rows = 1 + (depth + kind) % FG_ROWS_MAX;
      const int32_t cols = 1 + (5 * depth + kind) % FG_COLS_MAX;
      const int32_t channel = kind >= 10;
      int32_t acc_multiplier = 1 << 30, acc_shift = 0;
      switch (kind % 5) {
        case 0: acc_shift = 1 + (int32_t)(Random() % 15u); break;   /* scale above: x << s */
        case 1: acc_shift = -(int32_t)(Random() % 30u); break;      /* at or below: halve */
        case 2:                                                     /* another scale */
          acc_multiplier = (int32_t)((Random() >> 1) | 0x40000000u);
          acc_shift = -2 - (int32_t)(Random() % 20u);
          break;
        case 3: acc_multiplier = (int32_t)((Random() >> 1) | 0x40000000u); break; /* shift 0 */
        default:                                                    /* left, not 2^30: generic */
          acc_multiplier = (int32_t)((Random() >> 1) | 0x40000000u);
          acc_shift = 1 + (int32_t)(Random() % 3u);
          break;
      }
      for (int32_t n = 0; n < cols; ++n) {
        for (int32_t k = 0; k < depth; ++k) g_dw[n][k] = (int8_t)(Random() >> 24);
        g_dbias[n] = (int32_t)(Random() >> 8) - (1 << 23);
        g_dmult[n] = (int32_t)((Random() >> 1) | 0x40000000u);
        g_dshift[n] = channel ? -(int32_t)(Random() % 12u) : -9;
      }
      for (int32_t i = 0; i < rows * depth; ++i) g_dx[i] = (int8_t)(Random() >> 24);
      for (int32_t i = 0; i < rows * cols; ++i) g_dacc[i] = g_dy[i] = RandomS16();
      PackS8(cols, depth);
      const int32_t in_place = kind & 1;
      fg_matmul_s8(g_dx, depth, rows, depth, g_dpacked, g_dbias, g_dmult, g_dshift, channel,
                   cols, in_place ? g_dy : g_dacc, acc_multiplier, acc_shift, g_dy, cols);
      for (int32_t t = 0; t < rows; ++t) {
        for (int32_t n = 0; n < cols; ++n) {
          int32_t dot = g_dbias[n];
          for (int32_t k = 0; k < depth; ++k) dot += (int32_t)g_dx[depth * t + k] * g_dw[n][k];
          const int32_t c = channel ? n : 0;
          const int64_t sum = (int64_t)ReferenceMbqm(dot, g_dmult[c], g_dshift[c]) +
                              ReferenceMbqm(g_dacc[cols * t + n], acc_multiplier, acc_shift);
          const int64_t sat = sum < INT32_MIN ? INT32_MIN : (sum > INT32_MAX ? INT32_MAX : sum);
          bad += g_dy[cols * t + n] != Sat16((int32_t)sat);
        }
      }
    }
  }
  return bad;
}

/* fg_binary_s16 (the array form, which takes the power-of-two body only for pairs with
 * sum_ok and the general one otherwise) for every shift of a power-of-two pair on either
 * operand, against MBQM and saturation. */
static int16_t g_a[255];
static int16_t g_b[255];
static int16_t g_s[255];

static int32_t CheckBinaryArrays(void) {
  int32_t bad = 0;
  for (int32_t shift = -31; shift <= 15; ++shift) {
    for (int32_t side = 0; side < 2; ++side) {
      const int32_t sa = side == 0 ? shift : 1;
      const int32_t sb = side == 0 ? 0 : shift;
      for (int32_t i = 0; i < 255; ++i) {
        g_a[i] = RandomS16();
        g_b[i] = RandomS16();
      }
      fg_binary_s16(kFgAdd, g_a, 1, g_b, 1, 1 << 30, sa, 1 << 30, sb, g_s, 255);
      for (int32_t i = 0; i < 255; ++i) {
        const int32_t sum = Sat16(fg_multiply_by_quantized_multiplier(g_a[i], 1 << 30, sa) +
                                  fg_multiply_by_quantized_multiplier(g_b[i], 1 << 30, sb));
        bad += g_s[i] != sum;
      }
    }
  }
  return bad;
}

void fg_target_main(void) {
  g_state = 12345u;
  const int32_t bad = CheckLuts() + CheckRescales() + CheckRequantize() + CheckMatmul() +
                      CheckMatmulDepths() + CheckMatmulAccumulator() + CheckBinaryArrays();
  Exit(bad == 0 ? 0 : 1);
}

__attribute__((section(".vectors"), used)) static const uint32_t kVectors[2] = {
    FG_TARGET_STACK_TOP, (uint32_t)&FgTargetReset};
