/* float32 half of the portable runtime; see fg_runtime.h for the contract of each function.
 *
 * Reference semantics are Keras 3 on the TensorFlow backend, float32. TensorFlow's own sigmoid,
 * tanh and exp are Eigen polynomial approximations, so bit equality with Keras is not possible;
 * these functions aim at the exact real result (libm accuracy, a few ulp), which keeps every op
 * within ~3e-7 of TensorFlow.
 *
 * Built as strict ISO C99 (-std=c99): GCC then defaults to -ffp-contract=off, so a*b+c is never
 * fused into an FMA and host and Cortex-M4 builds round identically apart from libm. Do not build
 * with -ffast-math: the NaN handling below relies on IEEE comparisons.
 */
#include "tflm_kernels/runtime/fg_runtime.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* ---- exp, sigmoid, tanh without libm -------------------------------------------------------
 * newlib's expf/tanhf take 83 and 110 instructions per value on a Cortex-M4 (and glibc's differ
 * from them in the last bit); these take about a third of that and are the same IEEE single
 * operations on every target, so the host build and the device agree bit for bit. Error bounds,
 * checked against libm in double over every 2^13-th float bit pattern (524,288 values across
 * all binades and both signs; tests/cpp/fg_runtime_f32_test.cc): exp within 1 ulp of the result
 * (FLT_TRUE_MIN for subnormal results), sigmoid and tanh within 3e-7 absolute. DISABLED_Exhaustive
 * runs the same check over every float (hours; not yet run to completion). */

static inline float BitsToFloat(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

static inline uint32_t FloatToBits(float f) {
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
static inline float ExpF(float x) {
  if (!(x < 88.72283935546875f)) return x + INFINITY; /* NaN stays NaN, the rest +inf */
  if (x < -103.97208404541015625f) return 0.0f;
  const float shifter = 12582912.0f; /* 1.5 * 2^23 */
  const float t = x * 1.44269502162933349609375f + shifter;
  const float n = t - shifter;
  const int32_t ni = (int32_t)(FloatToBits(t) - FloatToBits(shifter)); /* n, as an integer */
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
  if (ni >= -126 && ni <= 127) return p * BitsToFloat((uint32_t)(ni + 127) << 23);
  /* 2^n itself is not a normal float: scale in two steps. For n < -126 the first product is
   * exact, so the result is rounded once, into the subnormals. */
  if (ni > 127) return (p * 2.0f) * BitsToFloat((uint32_t)(ni - 1 + 127) << 23);
  return (p * BitsToFloat((uint32_t)(ni + 100 + 127) << 23)) * BitsToFloat((uint32_t)(27) << 23);
}

static inline float Sigmoid(float x) {
  /* Split at 0 so exp only ever sees a non-positive argument: it cannot overflow, and for large
   * negative x the result e/(1+e) keeps full relative precision down to the subnormals. NaN takes
   * the second branch and propagates. */
  if (x >= 0.0f) return 1.0f / (1.0f + ExpF(-x));
  const float e = ExpF(x);
  return e / (1.0f + e);
}

/* tanh: Cephes' odd minimax polynomial below 0.625 (relative accuracy, so tiny x and -0 come back
 * unchanged), 1 - 2 / (e^2|x| + 1) up to 9.01 (|error| < 1.2e-7), and +-1 beyond, where
 * 1 - tanh(x) < 2^-25 rounds to 1. NaN goes through ExpF and comes back NaN. */
static inline float Tanh(float x) {
  const float ax = fabsf(x);
  if (ax < 0.625f) {
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    return p * z * x + x;
  }
  float t;
  if (ax > 9.01f) {
    t = 1.0f;
  } else {
    t = 1.0f - 2.0f / (ExpF(ax + ax) + 1.0f);
  }
  return x < 0.0f ? -t : (x > 0.0f ? t : t + x);
}

static float HardSigmoid(float x) {
  /* Keras 3 writes relu6(x + 3) / 6 and eager TensorFlow divides. A true division, not a
   * multiplication by a rounded 1/6: the two differ by one ulp on about 15% of inputs
   * (e.g. x = 2). tf.function graphs constant-fold the division into that multiplication, which is
   * within the same ulp. */
  float t = x + 3.0f;
  t = t < 0.0f ? 0.0f : t;
  t = t > 6.0f ? 6.0f : t;
  return t / 6.0f;
}

/* Written as "x < 0 ? 0 : x" rather than fmaxf so NaN propagates and -0 stays -0, as tf.nn.relu. */
static float Relu(float x) { return x < 0.0f ? 0.0f : x; }

static float Relu6(float x) {
  const float t = x < 0.0f ? 0.0f : x;
  return t > 6.0f ? 6.0f : t;
}

static float Softsign(float x) { return x / (1.0f + fabsf(x)); }

/* tf.maximum / tf.minimum return NaN if either operand is NaN; fmaxf / fminf would drop it.
 * A NaN b already falls through to b, so only a needs the explicit test. */
static float Maximum(float a, float b) { return (a > b || isnan(a)) ? a : b; }
static float Minimum(float a, float b) { return (a < b || isnan(a)) ? a : b; }

/* Rounding order ((prior + dot) + bias) mirrors Keras' LSTMCell, which computes
 * z = x @ W; z += h @ U; z += b, when the bias is passed with the last call. */
static inline void StoreOutput(float dot, const float* bias, int32_t n, int accumulate,
                               float* y_row) {
  float out = accumulate ? y_row[n] + dot : dot;
  if (bias != NULL) out += bias[n];
  y_row[n] = out;
}

/* ---- Cortex-M FPU inner loops --------------------------------------------------------------
 * With a single-precision FPU (__ARM_FP bit 2: Cortex-M4F, M7, M33...) the dot products of four
 * w rows run in inline assembly: multi-register VLDM loads (1 + N cycles for N words, against 2
 * per VLDR), the accumulators stay in registers and nothing spills. Each accumulator still sums in
 * k order with one rounding per multiply and per add, so the results are bit-identical to the
 * portable C loops (which run on the host, M0/M3 and RISC-V).
 *
 * FG_F32_VMLA selects the multiply-accumulate: 0 (default) VMUL + VADD, 2 cycles per MAC on a
 * Cortex-M4; 1 VMLA.F32 (not fused: it rounds the product, so it is bit-identical), one instruction
 * but 3 cycles per MAC (Cortex-M4 TRM, table 7-1). Optimised for cycles by default; the
 * benchmark's instruction counts fall by about one per MAC with FG_F32_VMLA=1. */
#ifndef FG_F32_VMLA
#define FG_F32_VMLA 0
#endif
#if defined(__arm__) && defined(__ARM_FP) && (__ARM_FP & 4) && defined(__GNUC__)
#define FG_F32_ASM 1
#if FG_F32_VMLA
#define FG_MAC(acc, x, w, tmp) "vmla.f32 %[" #acc "], " #x ", " #w "\n\t"
#else
#define FG_MAC(acc, x, w, tmp) \
  "vmul.f32 " #tmp ", " #x ", " #w "\n\t" "vadd.f32 %[" #acc "], %[" #acc "], " #tmp "\n\t"
#endif

/* d[j] += sum_{k < 4 * blocks} x[k] * w_j[k] for the four rows w_j = w + j * depth; returns
 * nothing, leaves the k order intact. blocks >= 1. */
static inline void Dot1x4Asm(const float* x, const float* w, int32_t depth, int32_t blocks,
                             float d[4]) {
  const float* w0 = w;
  const float* w1 = w0 + depth;
  const float* w2 = w1 + depth;
  const float* w3 = w2 + depth;
  float a0 = d[0], a1 = d[1], a2 = d[2], a3 = d[3];
  __asm__ volatile(
      "1:\n\t"
      "vldmia %[x]!, {s8-s11}\n\t"
      "vldmia %[w0]!, {s12-s15}\n\t"
      "vldmia %[w1]!, {s16-s19}\n\t"
      "vldmia %[w2]!, {s20-s23}\n\t"
      "vldmia %[w3]!, {s24-s27}\n\t"
      FG_MAC(a0, s8, s12, s12) FG_MAC(a1, s8, s16, s16)
      FG_MAC(a2, s8, s20, s20) FG_MAC(a3, s8, s24, s24)
      FG_MAC(a0, s9, s13, s13) FG_MAC(a1, s9, s17, s17)
      FG_MAC(a2, s9, s21, s21) FG_MAC(a3, s9, s25, s25)
      FG_MAC(a0, s10, s14, s14) FG_MAC(a1, s10, s18, s18)
      FG_MAC(a2, s10, s22, s22) FG_MAC(a3, s10, s26, s26)
      FG_MAC(a0, s11, s15, s15) FG_MAC(a1, s11, s19, s19)
      FG_MAC(a2, s11, s23, s23) FG_MAC(a3, s11, s27, s27)
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3),
        [n] "+r"(blocks), [a0] "+t"(a0), [a1] "+t"(a1), [a2] "+t"(a2), [a3] "+t"(a3)
      :
      : "cc", "memory", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17",
        "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27");
  d[0] = a0;
  d[1] = a1;
  d[2] = a2;
  d[3] = a3;
}

/* The same for two x rows (a batched projection) sharing every w load: da[j] and db[j] over
 * k < 2 * blocks. */
static inline void Dot2x4Asm(const float* xa, const float* xb, const float* w, int32_t depth,
                             int32_t blocks, float da[4], float db[4]) {
  const float* w0 = w;
  const float* w1 = w0 + depth;
  const float* w2 = w1 + depth;
  const float* w3 = w2 + depth;
  float a0 = da[0], a1 = da[1], a2 = da[2], a3 = da[3];
  float b0 = db[0], b1 = db[1], b2 = db[2], b3 = db[3];
  __asm__ volatile(
      "1:\n\t"
      "vldmia %[xa]!, {s8-s9}\n\t"
      "vldmia %[xb]!, {s10-s11}\n\t"
      "vldmia %[w0]!, {s12-s13}\n\t"
      "vldmia %[w1]!, {s14-s15}\n\t"
      "vldmia %[w2]!, {s16-s17}\n\t"
      "vldmia %[w3]!, {s18-s19}\n\t"
      FG_MAC(a0, s8, s12, s20) FG_MAC(a1, s8, s14, s21)
      FG_MAC(a2, s8, s16, s22) FG_MAC(a3, s8, s18, s23)
      FG_MAC(b0, s10, s12, s20) FG_MAC(b1, s10, s14, s21)
      FG_MAC(b2, s10, s16, s22) FG_MAC(b3, s10, s18, s23)
      FG_MAC(a0, s9, s13, s20) FG_MAC(a1, s9, s15, s21)
      FG_MAC(a2, s9, s17, s22) FG_MAC(a3, s9, s19, s23)
      FG_MAC(b0, s11, s13, s20) FG_MAC(b1, s11, s15, s21)
      FG_MAC(b2, s11, s17, s22) FG_MAC(b3, s11, s19, s23)
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      : [xa] "+r"(xa), [xb] "+r"(xb), [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2),
        [w3] "+r"(w3), [n] "+r"(blocks), [a0] "+t"(a0), [a1] "+t"(a1), [a2] "+t"(a2),
        [a3] "+t"(a3), [b0] "+t"(b0), [b1] "+t"(b1), [b2] "+t"(b2), [b3] "+t"(b3)
      :
      : "cc", "memory", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17",
        "s18", "s19", "s20", "s21", "s22", "s23");
  da[0] = a0;
  da[1] = a1;
  da[2] = a2;
  da[3] = a3;
  db[0] = b0;
  db[1] = b1;
  db[2] = b2;
  db[3] = b3;
}
#endif /* FG_F32_ASM */

/* One output row. Four outputs at a time, so each x[k] is loaded once for four w rows. */
static void MatmulRow(const float* x_row, int32_t depth, const float* w, const float* bias,
                      int32_t cols, float* y_row, int accumulate) {
  int32_t n = 0;
  for (; n + 4 <= cols; n += 4) {
    const float* w0 = w + n * depth;
    const float* w1 = w0 + depth;
    const float* w2 = w1 + depth;
    const float* w3 = w2 + depth;
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int32_t k = 0;
#ifdef FG_F32_ASM
    if (depth >= 4) {
      Dot1x4Asm(x_row, w0, depth, depth >> 2, d);
      k = depth & ~3;
    }
#endif
    for (; k < depth; ++k) {
      const float xk = x_row[k];
      d[0] += xk * w0[k];
      d[1] += xk * w1[k];
      d[2] += xk * w2[k];
      d[3] += xk * w3[k];
    }
    StoreOutput(d[0], bias, n, accumulate, y_row);
    StoreOutput(d[1], bias, n + 1, accumulate, y_row);
    StoreOutput(d[2], bias, n + 2, accumulate, y_row);
    StoreOutput(d[3], bias, n + 3, accumulate, y_row);
  }
  for (; n < cols; ++n) {
    const float* w_row = w + n * depth;
    float dot = 0.0f;
    for (int32_t k = 0; k < depth; ++k) dot += x_row[k] * w_row[k];
    StoreOutput(dot, bias, n, accumulate, y_row);
  }
}

/* Two output rows (a batched projection): each w[k] is also loaded once for both rows. */
static void MatmulTwoRows(const float* xa, const float* xb, int32_t depth, const float* w,
                          const float* bias, int32_t cols, float* ya, float* yb,
                          int accumulate) {
  int32_t n = 0;
  for (; n + 4 <= cols; n += 4) {
    const float* w0 = w + n * depth;
    const float* w1 = w0 + depth;
    const float* w2 = w1 + depth;
    const float* w3 = w2 + depth;
    float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float b[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int32_t k = 0;
#ifdef FG_F32_ASM
    if (depth >= 2) {
      Dot2x4Asm(xa, xb, w0, depth, depth >> 1, a, b);
      k = depth & ~1;
    }
#endif
    for (; k < depth; ++k) {
      const float xak = xa[k];
      const float xbk = xb[k];
      const float v0 = w0[k], v1 = w1[k], v2 = w2[k], v3 = w3[k];
      a[0] += xak * v0;
      a[1] += xak * v1;
      a[2] += xak * v2;
      a[3] += xak * v3;
      b[0] += xbk * v0;
      b[1] += xbk * v1;
      b[2] += xbk * v2;
      b[3] += xbk * v3;
    }
    for (int32_t j = 0; j < 4; ++j) {
      StoreOutput(a[j], bias, n + j, accumulate, ya);
      StoreOutput(b[j], bias, n + j, accumulate, yb);
    }
  }
  for (; n < cols; ++n) {
    const float* w_row = w + n * depth;
    float dot_a = 0.0f, dot_b = 0.0f;
    for (int32_t k = 0; k < depth; ++k) {
      dot_a += xa[k] * w_row[k];
      dot_b += xb[k] * w_row[k];
    }
    StoreOutput(dot_a, bias, n, accumulate, ya);
    StoreOutput(dot_b, bias, n, accumulate, yb);
  }
}

void fg_matmul_f32(const float* x, int32_t x_stride, int32_t rows, int32_t depth, const float* w,
                   const float* bias, int32_t cols, float* y, int32_t y_stride, int accumulate) {
  /* w is stored [cols][depth], so every inner loop streams contiguous x and w rows. The blocking
   * over rows and outputs only shares loads: each output still has one float accumulator summed
   * in k order, so the results are bit-identical to the plain triple loop. */
  int32_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const float* xa = x + r * x_stride;
    float* ya = y + r * y_stride;
    MatmulTwoRows(xa, xa + x_stride, depth, w, bias, cols, ya, ya + y_stride, accumulate);
  }
  if (r < rows) MatmulRow(x + r * x_stride, depth, w, bias, cols, y + r * y_stride, accumulate);
}

/* Defined in the "elementary math" section at the end of this file. */
static int UnaryMath(FgUnaryOp op, const float* x, float* y, int32_t n);

void fg_unary_f32(FgUnaryOp op, const float* x, float* y, int32_t n) {
  /* One loop per op so the switch runs once per call, not once per element. Each loop reads
   * x[i] before writing y[i], which is what makes x == y safe. */
  switch (op) {
    case kFgNeg:
      for (int32_t i = 0; i < n; ++i) y[i] = -x[i];
      return;
    case kFgSigmoid:
      for (int32_t i = 0; i < n; ++i) y[i] = Sigmoid(x[i]);
      return;
    case kFgHardSigmoid:
      for (int32_t i = 0; i < n; ++i) y[i] = HardSigmoid(x[i]);
      return;
    case kFgTanh:
      for (int32_t i = 0; i < n; ++i) y[i] = Tanh(x[i]);
      return;
    case kFgRelu:
      for (int32_t i = 0; i < n; ++i) y[i] = Relu(x[i]);
      return;
    case kFgRelu6:
      for (int32_t i = 0; i < n; ++i) y[i] = Relu6(x[i]);
      return;
    case kFgSoftsign:
      for (int32_t i = 0; i < n; ++i) y[i] = Softsign(x[i]);
      return;
    case kFgSilu:
      for (int32_t i = 0; i < n; ++i) y[i] = x[i] * Sigmoid(x[i]);
      return;
    case kFgExp:
      for (int32_t i = 0; i < n; ++i) y[i] = ExpF(x[i]);
      return;
    default:
      break; /* the elementary math section, or not an op */
  }
  if (UnaryMath(op, x, y, n)) return;
  fg_fill_f32(y, NAN, n); /* Not an FgUnaryOp: a caller bug, made visible. */
}

void fg_binary_f32(FgBinaryOp op, const float* a, int32_t a_step, const float* b, int32_t b_step,
                   float* y, int32_t n) {
  /* Same structure as fg_unary_f32. The steps are plain strides, so a step of 0 broadcasts
   * without a separate loop per broadcast case. */
  switch (op) {
    case kFgAdd:
      for (int32_t i = 0; i < n; ++i) y[i] = a[i * a_step] + b[i * b_step];
      return;
    case kFgSub:
      for (int32_t i = 0; i < n; ++i) y[i] = a[i * a_step] - b[i * b_step];
      return;
    case kFgMul:
      for (int32_t i = 0; i < n; ++i) y[i] = a[i * a_step] * b[i * b_step];
      return;
    case kFgDiv:
      for (int32_t i = 0; i < n; ++i) y[i] = a[i * a_step] / b[i * b_step];
      return;
    case kFgMaximum:
      for (int32_t i = 0; i < n; ++i) y[i] = Maximum(a[i * a_step], b[i * b_step]);
      return;
    case kFgMinimum:
      for (int32_t i = 0; i < n; ++i) y[i] = Minimum(a[i * a_step], b[i * b_step]);
      return;
  }
  fg_fill_f32(y, NAN, n); /* Not an FgBinaryOp: a caller bug, made visible. */
}

void fg_clip_f32(const float* x, float lo, float hi, float* y, int32_t n) {
  /* max first, then min, exactly as min(max(x, lo), hi): with lo > hi every output is hi. */
  for (int32_t i = 0; i < n; ++i) {
    const float t = x[i] < lo ? lo : x[i];
    y[i] = t > hi ? hi : t;
  }
}

void fg_copy_f32(const float* x, float* y, int32_t n) {
  /* memmove, not memcpy: shifting a state window in place is a legitimate use. */
  if (n > 0) memmove(y, x, (size_t)n * sizeof(float));
}

void fg_fill_f32(float* y, float value, int32_t n) {
  for (int32_t i = 0; i < n; ++i) y[i] = value;
}

/* ---- elementary math: abs, square, sqrt, rsqrt, log, pow ------------------------------------ */

/* The unary ops after kFgExp; returns 0 for an op it does not know. Like fg_unary_f32, one loop
 * per op, each reading x[i] before writing y[i] (in place is safe). */
static int UnaryMath(FgUnaryOp op, const float* x, float* y, int32_t n) {
  switch (op) {
    case kFgAbs:
      for (int32_t i = 0; i < n; ++i) y[i] = fabsf(x[i]);
      return 1;
    case kFgSquare:
      for (int32_t i = 0; i < n; ++i) y[i] = x[i] * x[i];
      return 1;
    case kFgSqrt:
      for (int32_t i = 0; i < n; ++i) y[i] = sqrtf(x[i]);
      return 1;
    case kFgRsqrt:
      for (int32_t i = 0; i < n; ++i) y[i] = 1.0f / sqrtf(x[i]);
      return 1;
    case kFgLog:
      for (int32_t i = 0; i < n; ++i) y[i] = logf(x[i]);
      return 1;
    default:
      return 0;
  }
}

void fg_pow_f32(const float* x, float exponent, float* y, int32_t n) {
  for (int32_t i = 0; i < n; ++i) y[i] = powf(x[i], exponent);
}

static int Compare(FgCompareOp cmp, float a, float b) {
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

void fg_where_f32(FgCompareOp cmp, const float* a, int32_t a_step, const float* b, int32_t b_step,
                  const float* x, int32_t x_step, const float* t, int32_t t_step, float* y,
                  int32_t n) {
  if (Compare(cmp, 0.0f, 0.0f) < 0) {
    fg_fill_f32(y, NAN, n);
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    /* Every operand is read before y[i] is written, so y may alias any of them. */
    const int c = Compare(cmp, a[i * a_step], b[i * b_step]);
    const float xv = x[i * x_step];
    const float tv = t[i * t_step];
    y[i] = c ? xv : tv;
  }
}

/* ---- reductions over the feature axis ------------------------------------------------------ */

void fg_reduce_f32(FgReduceOp op, const float* x, float* y, int32_t n) {
  if (op == kFgReduceMax) {
    float best = x[0];
    for (int32_t i = 1; i < n; ++i) {
      const float v = x[i];
      if (v > best || v != v) best = v;
      if (best != best) break;
    }
    y[0] = best;
    return;
  }
  if (op != kFgReduceSum && op != kFgReduceMean) {
    y[0] = NAN;
    return;
  }
  float total = 0.0f;
  for (int32_t i = 0; i < n; ++i) total += x[i];
  y[0] = op == kFgReduceMean ? total / (float)n : total;
}
