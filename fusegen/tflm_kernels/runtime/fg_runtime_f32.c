/* float32 half of the portable runtime; see fg_runtime.h for the contract of each function.
 *
 * Reference semantics are Keras 3 on the TensorFlow backend, float32. TensorFlow's own sigmoid,
 * tanh and exp are Eigen polynomial approximations, so bit equality with Keras is not possible;
 * these functions aim at the exact real result: libm accuracy (a few ulp) for exp and the rest,
 * an absolute error of at most 1.2e-7 (sigmoid) and 2.1e-7 (tanh) for the two activations
 * (fg_elementwise.h), which keeps every op within ~3e-7 of TensorFlow.
 *
 * Built as strict ISO C99 (-std=c99): GCC then defaults to -ffp-contract=off, so a*b+c is never
 * fused into an FMA and host and Cortex-M4 builds round identically apart from libm. Do not build
 * with -ffast-math: the NaN handling below relies on IEEE comparisons.
 */
#include "tflm_kernels/runtime/fg_runtime.h"
#include "tflm_kernels/runtime/fg_elementwise.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* exp, sigmoid, tanh and the other per-value functions are fg_elementwise.h's (the fused loops of
 * generated cores call the same ones). */

/* ---- matmul ---------------------------------------------------------------------------------
 * Every output is one float accumulator summed in k order from 0, one rounding per multiply and
 * per add, then (prior + dot) + bias. The blocking below (several outputs, several x rows at a
 * time) only shares loads, so every variant is bit-identical to the plain triple loop.
 *
 * With a single-precision FPU (__ARM_FP bit 2: Cortex-M4F, M7, M33...) the blocks run in inline
 * assembly: multi-register VLDM loads (1 + N cycles for N words, against 2 per VLDR), every
 * accumulator in a register, nothing spilled. Elsewhere (host, M0/M3, RISC-V) the portable C
 * loops run, with the same results.
 *
 * FG_F32_VMLA selects the multiply-accumulate: 0 (default) VMUL + VADD, 2 cycles per MAC on a
 * Cortex-M4; 1 VMLA.F32 (not fused: it rounds the product, so it is bit-identical; VFMA would
 * not be), one instruction but 3 cycles per MAC (Cortex-M4 TRM, table 7-1). Optimised for cycles
 * by default: with FG_F32_VMLA=1 the instruction counts fall by about one per MAC and the
 * estimated cycles rise by one per MAC (benchmarks/results/perf_f32.md has both). */
#ifndef FG_F32_VMLA
#define FG_F32_VMLA 0
#endif
#if defined(__arm__) && defined(__ARM_FP) && (__ARM_FP & 4) && defined(__GNUC__)
#define FG_F32_ASM 1
/* acc += x * w; tmp may be w itself when w is not read again. */
#if FG_F32_VMLA
#define FG_MAC(acc, x, w, tmp) "vmla.f32 %[" #acc "], " #x ", " #w "\n\t"
#else
#define FG_MAC(acc, x, w, tmp) \
  "vmul.f32 " #tmp ", " #x ", " #w "\n\t" "vadd.f32 %[" #acc "], %[" #acc "], " #tmp "\n\t"
#endif

/* One w row of Dot1x4x8: 8 words of row `wp` into s16-s23, multiplied by x[k..k+7] in s8-s15. */
#define FG_ROW_1X8(acc, wp)                                                                 \
  "vldmia %[" #wp "]!, {s16-s23}\n\t"                                                      \
  FG_MAC(acc, s8, s16, s16) FG_MAC(acc, s9, s17, s17) FG_MAC(acc, s10, s18, s18)           \
  FG_MAC(acc, s11, s19, s19) FG_MAC(acc, s12, s20, s20) FG_MAC(acc, s13, s21, s21)         \
  FG_MAC(acc, s14, s22, s22) FG_MAC(acc, s15, s23, s23)

/* d[j] += sum_{k < 8 * blocks} x[k] * w_j[k] for the four rows w_j = w + j * depth, in k order.
 * Per 32 MACs: 5 VLDM, 64 VMUL/VADD and the loop's 2 instructions. blocks >= 1. */
FG_INLINE void Dot1x4x8(const float* x, const float* w, int32_t depth, int32_t blocks,
                        float* d0, float* d1, float* d2, float* d3) {
  const float* w0 = w;
  const float* w1 = w0 + depth;
  const float* w2 = w1 + depth;
  const float* w3 = w2 + depth;
  float a0 = *d0, a1 = *d1, a2 = *d2, a3 = *d3;
  __asm__ volatile(
      "1:\n\t"
      "vldmia %[x]!, {s8-s15}\n\t"
      FG_ROW_1X8(a0, w0) FG_ROW_1X8(a1, w1) FG_ROW_1X8(a2, w2) FG_ROW_1X8(a3, w3)
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      : [x] "+r"(x), [w0] "+r"(w0), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3),
        [n] "+r"(blocks), [a0] "+t"(a0), [a1] "+t"(a1), [a2] "+t"(a2), [a3] "+t"(a3)
      :
      : "cc", "memory", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17",
        "s18", "s19", "s20", "s21", "s22", "s23");
  *d0 = a0;
  *d1 = a1;
  *d2 = a2;
  *d3 = a3;
}

/* Element k of one w row (in s24 + k) times element k of the four x rows (s8 + k, s12 + k,
 * s16 + k, s20 + k) into the row's four accumulators. */
#define FG_COL_4X1(a, b, c, d, xa, xb, xc, xd, w)                                           \
  FG_MAC(a, xa, w, s28) FG_MAC(b, xb, w, s28) FG_MAC(c, xc, w, s28) FG_MAC(d, xd, w, s28)
#define FG_ROW_4X4(a, b, c, d, wp)                                                          \
  "vldmia %[" #wp "]!, {s24-s27}\n\t"                                                      \
  FG_COL_4X1(a, b, c, d, s8, s12, s16, s20, s24) FG_COL_4X1(a, b, c, d, s9, s13, s17, s21, s25) \
  FG_COL_4X1(a, b, c, d, s10, s14, s18, s22, s26)                                          \
  FG_COL_4X1(a, b, c, d, s11, s15, s19, s23, s27)

/* For four x rows (a batched projection: rows of x_stride) and two w rows, sharing every load:
 * (a, b, c, d)[j] += sum_{k < 4 * blocks} x_r[k] * w_j[k] for the rows r = 0..3, in k order.
 * Per 32 MACs: 6 VLDM, 64 VMUL/VADD and 2 loop instructions; 0.75 loaded words per MAC.
 * blocks >= 1. */
FG_INLINE void Dot4x2x4(const float* x, int32_t x_stride, const float* w, int32_t depth,
                        int32_t blocks, float* pa0, float* pa1, float* pb0, float* pb1,
                        float* pc0, float* pc1, float* pd0, float* pd1) {
  const float* xa = x;
  const float* xb = xa + x_stride;
  const float* xc = xb + x_stride;
  const float* xd = xc + x_stride;
  const float* w0 = w;
  const float* w1 = w0 + depth;
  float a0 = *pa0, a1 = *pa1, b0 = *pb0, b1 = *pb1;
  float c0 = *pc0, c1 = *pc1, d0 = *pd0, d1 = *pd1;
  __asm__ volatile(
      "1:\n\t"
      "vldmia %[xa]!, {s8-s11}\n\t"
      "vldmia %[xb]!, {s12-s15}\n\t"
      "vldmia %[xc]!, {s16-s19}\n\t"
      "vldmia %[xd]!, {s20-s23}\n\t"
      FG_ROW_4X4(a0, b0, c0, d0, w0) FG_ROW_4X4(a1, b1, c1, d1, w1)
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n\t"
      : [xa] "+r"(xa), [xb] "+r"(xb), [xc] "+r"(xc), [xd] "+r"(xd), [w0] "+r"(w0),
        [w1] "+r"(w1), [n] "+r"(blocks), [a0] "+t"(a0), [a1] "+t"(a1), [b0] "+t"(b0),
        [b1] "+t"(b1), [c0] "+t"(c0), [c1] "+t"(c1), [d0] "+t"(d0), [d1] "+t"(d1)
      :
      : "cc", "memory", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17",
        "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28");
  *pa0 = a0;
  *pa1 = a1;
  *pb0 = b0;
  *pb1 = b1;
  *pc0 = c0;
  *pc1 = c1;
  *pd0 = d0;
  *pd1 = d1;
}
#endif /* FG_F32_ASM */

/* Rounding order ((prior + dot) + bias) mirrors Keras' LSTMCell, which computes
 * z = x @ W; z += h @ U; z += b, when the bias is passed with the last call. acc_row is NULL (no
 * prior) or read at n before y_row[n] is written (so it may be y_row). */
FG_INLINE void StoreOutput(float dot, const float* bias, int32_t n, const float* acc_row,
                               float* y_row) {
  float out = acc_row != NULL ? acc_row[n] + dot : dot;
  if (bias != NULL) out += bias[n];
  y_row[n] = out;
}

/* One x row: four outputs at a time, so each x[k] is loaded once for four w rows. */
static void MatmulRow(const float* x_row, int32_t depth, const float* w, const float* bias,
                      int32_t cols, const float* acc_row, float* y_row) {
  int32_t n = 0;
  for (; n + 4 <= cols; n += 4) {
    const float* w0 = w + n * depth;
    const float* w1 = w0 + depth;
    const float* w2 = w1 + depth;
    const float* w3 = w2 + depth;
    float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
    int32_t k = 0;
#ifdef FG_F32_ASM
    if (depth >= 8) {
      Dot1x4x8(x_row, w0, depth, depth >> 3, &d0, &d1, &d2, &d3);
      k = depth & ~7;
    }
#endif
    for (; k < depth; ++k) {
      const float xk = x_row[k];
      d0 += xk * w0[k];
      d1 += xk * w1[k];
      d2 += xk * w2[k];
      d3 += xk * w3[k];
    }
    StoreOutput(d0, bias, n, acc_row, y_row);
    StoreOutput(d1, bias, n + 1, acc_row, y_row);
    StoreOutput(d2, bias, n + 2, acc_row, y_row);
    StoreOutput(d3, bias, n + 3, acc_row, y_row);
  }
  for (; n < cols; ++n) {
    const float* w_row = w + n * depth;
    float dot = 0.0f;
    for (int32_t k = 0; k < depth; ++k) dot += x_row[k] * w_row[k];
    StoreOutput(dot, bias, n, acc_row, y_row);
  }
}

/* Four x rows (a batched projection), two outputs at a time: each w[k] is loaded once for the
 * four rows and each x[k] once for two outputs. Scalar accumulators (an array would be zeroed by
 * a memset call and live in memory). */
static void MatmulFourRows(const float* x, int32_t x_stride, int32_t depth, const float* w,
                           const float* bias, int32_t cols, float* y, int32_t y_stride,
                           int accumulate) {
  const float* const x1 = x + x_stride;
  const float* const x2 = x1 + x_stride;
  const float* const x3 = x2 + x_stride;
  float* const y1 = y + y_stride;
  float* const y2 = y1 + y_stride;
  float* const y3 = y2 + y_stride;
  int32_t n = 0;
  for (; n + 2 <= cols; n += 2) {
    const float* w0 = w + n * depth;
    const float* w1 = w0 + depth;
    float a0 = 0.0f, a1 = 0.0f, b0 = 0.0f, b1 = 0.0f, c0 = 0.0f, c1 = 0.0f, d0 = 0.0f, d1 = 0.0f;
    int32_t k = 0;
#ifdef FG_F32_ASM
    if (depth >= 4) {
      Dot4x2x4(x, x_stride, w0, depth, depth >> 2, &a0, &a1, &b0, &b1, &c0, &c1, &d0, &d1);
      k = depth & ~3;
    }
#endif
    for (; k < depth; ++k) {
      const float v0 = w0[k], v1 = w1[k];
      a0 += x[k] * v0;
      a1 += x[k] * v1;
      b0 += x1[k] * v0;
      b1 += x1[k] * v1;
      c0 += x2[k] * v0;
      c1 += x2[k] * v1;
      d0 += x3[k] * v0;
      d1 += x3[k] * v1;
    }
    StoreOutput(a0, bias, n, accumulate ? y : NULL, y);
    StoreOutput(a1, bias, n + 1, accumulate ? y : NULL, y);
    StoreOutput(b0, bias, n, accumulate ? y1 : NULL, y1);
    StoreOutput(b1, bias, n + 1, accumulate ? y1 : NULL, y1);
    StoreOutput(c0, bias, n, accumulate ? y2 : NULL, y2);
    StoreOutput(c1, bias, n + 1, accumulate ? y2 : NULL, y2);
    StoreOutput(d0, bias, n, accumulate ? y3 : NULL, y3);
    StoreOutput(d1, bias, n + 1, accumulate ? y3 : NULL, y3);
  }
  if (n < cols) {
    for (int32_t r = 0; r < 4; ++r) {
      float* y_row = y + r * y_stride;
      MatmulRow(x + r * x_stride, depth, w + n * depth, bias == NULL ? NULL : bias + n,
                cols - n, accumulate ? y_row + n : NULL, y_row + n);
    }
  }
}

void fg_matmul_f32(const float* x, int32_t x_stride, int32_t rows, int32_t depth, const float* w,
                   const float* bias, int32_t cols, float* y, int32_t y_stride, int accumulate) {
  /* w is stored [cols][depth], so every inner loop streams contiguous x and w rows. */
  int32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    MatmulFourRows(x + r * x_stride, x_stride, depth, w, bias, cols, y + r * y_stride, y_stride,
                   accumulate);
  }
  for (; r < rows; ++r) {
    float* y_row = y + r * y_stride;
    MatmulRow(x + r * x_stride, depth, w, bias, cols, accumulate ? y_row : NULL, y_row);
  }
}

void fg_matmul_acc_f32(const float* x, int32_t depth, const float* w, const float* bias,
                       int32_t cols, const float* acc, float* y) {
  MatmulRow(x, depth, w, bias, cols, acc, y);
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
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_sigmoid(x[i]);
      return;
    case kFgHardSigmoid:
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_hard_sigmoid(x[i]);
      return;
    case kFgTanh:
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_tanh(x[i]);
      return;
    case kFgRelu:
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_relu(x[i]);
      return;
    case kFgRelu6:
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_relu6(x[i]);
      return;
    case kFgSoftsign:
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_softsign(x[i]);
      return;
    case kFgSilu:
      for (int32_t i = 0; i < n; ++i) y[i] = x[i] * fg_f32_sigmoid(x[i]);
      return;
    case kFgExp:
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_exp(x[i]);
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
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_maximum(a[i * a_step], b[i * b_step]);
      return;
    case kFgMinimum:
      for (int32_t i = 0; i < n; ++i) y[i] = fg_f32_minimum(a[i * a_step], b[i * b_step]);
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


void fg_where_f32(FgCompareOp cmp, const float* a, int32_t a_step, const float* b, int32_t b_step,
                  const float* x, int32_t x_step, const float* t, int32_t t_step, float* y,
                  int32_t n) {
  if (fg_f32_compare(cmp, 0.0f, 0.0f) < 0) {
    fg_fill_f32(y, NAN, n);
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    /* Every operand is read before y[i] is written, so y may alias any of them. */
    const int c = fg_f32_compare(cmp, a[i * a_step], b[i * b_step]);
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
