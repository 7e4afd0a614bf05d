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

static float Sigmoid(float x) {
  /* Split at 0 so expf only ever sees a non-positive argument: it cannot overflow, and for large
   * negative x the result e/(1+e) keeps full relative precision down to the subnormals. NaN takes
   * the second branch and propagates. */
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
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

/* One output row. Four outputs at a time, so each x[k] is loaded once for four w rows: on a
 * Cortex-M4 that is 3.75 instructions per multiply-accumulate instead of 6. */
static void MatmulRow(const float* x_row, int32_t depth, const float* w, const float* bias,
                      int32_t cols, float* y_row, int accumulate) {
  int32_t n = 0;
  for (; n + 4 <= cols; n += 4) {
    const float* w0 = w + n * depth;
    const float* w1 = w0 + depth;
    const float* w2 = w1 + depth;
    const float* w3 = w2 + depth;
    float dot0 = 0.0f, dot1 = 0.0f, dot2 = 0.0f, dot3 = 0.0f;
    for (int32_t k = 0; k < depth; ++k) {
      const float xk = x_row[k];
      dot0 += xk * w0[k];
      dot1 += xk * w1[k];
      dot2 += xk * w2[k];
      dot3 += xk * w3[k];
    }
    StoreOutput(dot0, bias, n, accumulate, y_row);
    StoreOutput(dot1, bias, n + 1, accumulate, y_row);
    StoreOutput(dot2, bias, n + 2, accumulate, y_row);
    StoreOutput(dot3, bias, n + 3, accumulate, y_row);
  }
  for (; n < cols; ++n) {
    const float* w_row = w + n * depth;
    float dot = 0.0f;
    for (int32_t k = 0; k < depth; ++k) dot += x_row[k] * w_row[k];
    StoreOutput(dot, bias, n, accumulate, y_row);
  }
}

/* Two output rows (a batched projection): each w[k] is also loaded once for both rows, 3
 * instructions per multiply-accumulate on a Cortex-M4. */
static void MatmulTwoRows(const float* xa, const float* xb, int32_t depth, const float* w,
                          const float* bias, int32_t cols, float* ya, float* yb,
                          int accumulate) {
  int32_t n = 0;
  for (; n + 4 <= cols; n += 4) {
    const float* w0 = w + n * depth;
    const float* w1 = w0 + depth;
    const float* w2 = w1 + depth;
    const float* w3 = w2 + depth;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    float b0 = 0.0f, b1 = 0.0f, b2 = 0.0f, b3 = 0.0f;
    for (int32_t k = 0; k < depth; ++k) {
      const float xak = xa[k];
      const float xbk = xb[k];
      const float v0 = w0[k], v1 = w1[k], v2 = w2[k], v3 = w3[k];
      a0 += xak * v0;
      a1 += xak * v1;
      a2 += xak * v2;
      a3 += xak * v3;
      b0 += xbk * v0;
      b1 += xbk * v1;
      b2 += xbk * v2;
      b3 += xbk * v3;
    }
    StoreOutput(a0, bias, n, accumulate, ya);
    StoreOutput(a1, bias, n + 1, accumulate, ya);
    StoreOutput(a2, bias, n + 2, accumulate, ya);
    StoreOutput(a3, bias, n + 3, accumulate, ya);
    StoreOutput(b0, bias, n, accumulate, yb);
    StoreOutput(b1, bias, n + 1, accumulate, yb);
    StoreOutput(b2, bias, n + 2, accumulate, yb);
    StoreOutput(b3, bias, n + 3, accumulate, yb);
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
      for (int32_t i = 0; i < n; ++i) y[i] = tanhf(x[i]);
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
      for (int32_t i = 0; i < n; ++i) y[i] = expf(x[i]);
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
