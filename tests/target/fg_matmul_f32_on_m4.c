/* fg_runtime_f32.c's matmul on the Cortex-M4 itself (tests/test_cross_compile.py builds this with
 * the runtime and runs it on QEMU mps2-an386), where the assembly blocks (fg_f32_row_blocks4,
 * fg_f32_rows4_blocks2, Dot1x4x8, Dot4x2x4) replace the portable C the host tests see:
 * fg_matmul_f32 and fg_matmul_acc_f32 on random x, w, bias and prior (a zero of either sign in
 * one value of eight) for every combination of rows 1..9, depths 1..40 (multiples of 8, of 4, and
 * neither), cols 1..13, with and without bias and prior, a negative x stride, a prior that is the
 * output itself and an x of -0.0 (every product a zero of either sign), against the plain triple
 * loop: one accumulator from +0.0 per output, the products in k order, then (prior + dot) + bias.
 * Every output must be equal bit for bit, and the
 * words around each output row untouched. The result is the semihosting exit code: 0 when every
 * value is equal. */
#include <stdint.h>
#include <string.h>

#include "tflm_kernels/runtime/fg_runtime.h"

#include "fg_target.h"

static float RandomValue(void) {
  const uint32_t r = Random();
  if (((r >> 4) & 7u) == 0) return (r & 0x100u) ? -0.0f : 0.0f;
  return (float)((int32_t)((r >> 9) & 0xffffu) - 32768) * (1.0f / 8192.0f);
}

static uint32_t Bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

enum { kMaxRows = 9, kMaxDepth = 40, kMaxCols = 13, kPad = 2 };
enum { kYStride = kMaxCols + 2 * kPad };
#define kGuard (-7.5f)

static float g_x[kMaxRows * kMaxDepth];
static float g_w[kMaxCols * kMaxDepth];
static float g_bias[kMaxCols];
static float g_y[kMaxRows * kYStride];
static float g_prior[kMaxRows * kYStride];
static float g_want[kMaxRows * kYStride];

static void Fill(float* v, int32_t n) {
  for (int32_t i = 0; i < n; ++i) v[i] = RandomValue();
}

/* The plain loop for rows x cols outputs; the rows of x at x + r * x_stride. */
static void Reference(const float* x, int32_t x_stride, int32_t rows, int32_t depth,
                      const float* bias, int32_t cols, const float* prior, float* y) {
  for (int32_t r = 0; r < rows; ++r) {
    for (int32_t n = 0; n < cols; ++n) {
      float dot = 0.0f;
      for (int32_t k = 0; k < depth; ++k) dot += x[r * x_stride + k] * g_w[n * depth + k];
      float out = prior != NULL ? prior[r * kYStride + kPad + n] + dot : dot;
      if (bias != NULL) out += bias[n];
      y[r * kYStride + kPad + n] = out;
    }
  }
}

static int32_t Differs(int32_t rows) {
  int32_t bad = 0;
  for (int32_t i = 0; i < rows * kYStride; ++i) bad += Bits(g_y[i]) != Bits(g_want[i]);
  return bad;
}

/* zero_x: every x is -0.0, so every product is a zero of either sign and each sum must be the
 * +0.0 that a first addition to +0.0 gives. */
static int32_t CheckShape(int32_t rows, int32_t depth, int32_t cols, int zero_x) {
  int32_t bad = 0;
  Fill(g_x, rows * depth);
  if (zero_x) {
    for (int32_t i = 0; i < rows * depth; ++i) g_x[i] = -0.0f;
  }
  Fill(g_w, cols * depth);
  Fill(g_bias, cols);
  Fill(g_prior, rows * kYStride);
  for (int32_t variant = 0; variant < 8; ++variant) {
    const float* const bias = (variant & 1) ? g_bias : NULL;
    const int accumulate = (variant & 2) != 0;
    const int backwards = (variant & 4) != 0;
    /* Backwards: the first row is the last one in memory and the stride is negative. */
    const float* const x = backwards ? g_x + (rows - 1) * depth : g_x;
    const int32_t x_stride = backwards ? -depth : depth;
    for (int32_t i = 0; i < rows * kYStride; ++i) {
      g_y[i] = accumulate ? g_prior[i] : kGuard;
      g_want[i] = g_y[i];
    }
    Reference(x, x_stride, rows, depth, bias, cols, accumulate ? g_prior : NULL, g_want);
    fg_matmul_f32(x, x_stride, rows, depth, g_w, bias, cols, g_y + kPad, kYStride, accumulate);
    bad += Differs(rows);
  }
  /* fg_matmul_acc_f32: one row, the prior a separate row or the output itself. */
  for (int32_t variant = 0; variant < 4; ++variant) {
    const float* const bias = (variant & 1) ? g_bias : NULL;
    const int in_place = (variant & 2) != 0;
    for (int32_t i = 0; i < kYStride; ++i) {
      g_y[i] = in_place ? g_prior[i] : kGuard;
      g_want[i] = g_y[i];
    }
    Reference(g_x, depth, 1, depth, bias, cols, g_prior, g_want);
    fg_matmul_acc_f32(g_x, depth, g_w, bias, cols, in_place ? g_y + kPad : g_prior + kPad,
                      g_y + kPad);
    bad += Differs(1);
  }
  return bad;
}

static const int32_t kDepths[] = {1, 3, 4, 5, 7, 8, 9, 12, 16, 20, 24, 28, 32, 36, 40};

__attribute__((noinline)) static int32_t CheckAll(void) {
  int32_t bad = 0;
  for (int32_t rows = 1; rows <= kMaxRows; ++rows) {
    for (uint32_t d = 0; d < sizeof kDepths / sizeof kDepths[0]; ++d) {
      for (int32_t cols = 1; cols <= kMaxCols; ++cols) {
        bad += CheckShape(rows, kDepths[d], cols, 0);
        bad += CheckShape(rows, kDepths[d], cols, cols == 5);
      }
    }
  }
  return bad;
}

void fg_target_main(void) {
  /* The FPU is off at reset: grant CP10/CP11 full access before any float instruction. */
  *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  g_state = 12345u;
  Exit(CheckAll() == 0 ? 0 : 1);
}

__attribute__((section(".vectors"), used)) static const uint32_t kVectors[2] = {
    0x20010000u, (uint32_t)&fg_target_main};
