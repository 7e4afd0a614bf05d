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

/* Thumb-2 only (a core built in ARM state keeps the C loops and the inline blocks above). */
#if defined(__thumb2__)
#define FG_F32_ROW_ASM 1
/* Whole-row blocks in assembly (Cortex-M4F and other single-precision FPUs): the two matmul shapes
 * of a recurrent cell, with every per-block step in registers and one call per x row (or per four
 * x rows), where the C loops above pay about 50 instructions per block of outputs for pointer
 * set-up, accumulators through memory and a branch per StoreOutput. Same arithmetic as the C:
 * per output one accumulator from +0.0 (the first product is added to a register holding +0.0,
 * so a -0.0 product gives +0.0 as in C), the products in k order, then (prior + dot) + bias, the
 * operands in the C order (so even a NaN payload is the same).
 *
 * fg_f32_row_blocks4(x, w, depth, blocks, acc, bias, y): for n < 4 * blocks,
 *   y[n] = ((acc ? acc[n] : .) + sum_k x[k] * w[n * depth + k]) (+ bias[n] if bias).
 * depth >= 16 and a multiple of 4, blocks >= 1; acc may be y. Blocks of 16 in k (x in s8-s23,
 * one VLDM, each w row in two VLDMs of 8), then one of 8 and one of 4 as depth needs. Per 4
 * outputs (VMUL + VADD): 137 instructions per 16 of depth (the loop adds 2), 18 to set up, add
 * the prior and store (5 more with a bias).
 *
 * fg_f32_rows4_blocks2(x, x_stride, depth, w, bias, pairs, y, y_stride, accumulate): the same for
 * four x rows (row r at x + r * x_stride, output row at y + r * y_stride, its own prior when
 * accumulate), two outputs at a time, each w[k] loaded once for the four rows (Dot4x2x4's loop).
 * depth >= 4 and a multiple of 4, pairs >= 1. Per 2 x 4 outputs (VMUL + VADD): 70 instructions
 * per 4 of depth (the loop adds 2), 29 to set up, add the bias and store (15 more with a prior). */
#if FG_F32_VMLA
#define FG_MAC_R(acc, x, w, tmp) "vmla.f32 " #acc ", " #x ", " #w "\n\t"
#else
#define FG_MAC_R(acc, x, w, tmp) \
  "vmul.f32 " #tmp ", " #x ", " #w "\n\t" "vadd.f32 " #acc ", " #acc ", " #tmp "\n\t"
#endif
/* The first product of an accumulator: acc = +0.0 (in `zero`) + x * w. */
#define FG_MAC_0(acc, x, w, tmp, zero) \
  "vmul.f32 " #tmp ", " #x ", " #w "\n\t" "vadd.f32 " #acc ", " #zero ", " #tmp "\n\t"

/* Eight w words (s24-s31) times eight x words from s8 (lo) or s16 (hi), into acc. */
#define FG_R8_LO(acc)                                                                       \
  FG_MAC_R(acc, s8, s24, s24) FG_MAC_R(acc, s9, s25, s25) FG_MAC_R(acc, s10, s26, s26)      \
  FG_MAC_R(acc, s11, s27, s27) FG_MAC_R(acc, s12, s28, s28) FG_MAC_R(acc, s13, s29, s29)    \
  FG_MAC_R(acc, s14, s30, s30) FG_MAC_R(acc, s15, s31, s31)
#define FG_R8_HI(acc)                                                                       \
  FG_MAC_R(acc, s16, s24, s24) FG_MAC_R(acc, s17, s25, s25) FG_MAC_R(acc, s18, s26, s26)    \
  FG_MAC_R(acc, s19, s27, s27) FG_MAC_R(acc, s20, s28, s28) FG_MAC_R(acc, s21, s29, s29)    \
  FG_MAC_R(acc, s22, s30, s30) FG_MAC_R(acc, s23, s31, s31)
#define FG_R8_FIRST(acc)                                                                    \
  FG_MAC_0(acc, s8, s24, s24, s4) FG_MAC_R(acc, s9, s25, s25) FG_MAC_R(acc, s10, s26, s26)  \
  FG_MAC_R(acc, s11, s27, s27) FG_MAC_R(acc, s12, s28, s28) FG_MAC_R(acc, s13, s29, s29)    \
  FG_MAC_R(acc, s14, s30, s30) FG_MAC_R(acc, s15, s31, s31)
#define FG_LD8(wp) "vldmia " #wp "!, {s24-s31}\n\t"
/* Sixteen words of row wp into acc (x in s8-s23); _FIRST starts the accumulator. */
#define FG_ROW16(acc, wp) FG_LD8(wp) FG_R8_LO(acc) FG_LD8(wp) FG_R8_HI(acc)
#define FG_ROW16_FIRST(acc, wp) FG_LD8(wp) FG_R8_FIRST(acc) FG_LD8(wp) FG_R8_HI(acc)
#define FG_ROW8(acc, wp) FG_LD8(wp) FG_R8_LO(acc)
#define FG_ROW4(acc, wp)                                                                    \
  "vldmia " #wp "!, {s24-s27}\n\t"                                                          \
  FG_MAC_R(acc, s8, s24, s24) FG_MAC_R(acc, s9, s25, s25) FG_MAC_R(acc, s10, s26, s26)      \
  FG_MAC_R(acc, s11, s27, s27)

/* Element k of a w row (w) times element k of the four x rows into the rows' accumulators. */
#define FG_COLR(a, b, c, d, xa, xb, xc, xd, w)                                              \
  FG_MAC_R(a, xa, w, s28) FG_MAC_R(b, xb, w, s28) FG_MAC_R(c, xc, w, s28) FG_MAC_R(d, xd, w, s28)
#define FG_COLR_FIRST(a, b, c, d, xa, xb, xc, xd, w)                                        \
  FG_MAC_0(a, xa, w, s28, s29) FG_MAC_0(b, xb, w, s28, s29) FG_MAC_0(c, xc, w, s28, s29)    \
  FG_MAC_0(d, xd, w, s28, s29)
#define FG_COLS_2_4(a, b, c, d)                                                             \
  FG_COLR(a, b, c, d, s9, s13, s17, s21, s25) FG_COLR(a, b, c, d, s10, s14, s18, s22, s26)  \
  FG_COLR(a, b, c, d, s11, s15, s19, s23, s27)
#define FG_ROW4X4(a, b, c, d, wp)                                                           \
  "vldmia " #wp "!, {s24-s27}\n\t" FG_COLR(a, b, c, d, s8, s12, s16, s20, s24)             \
  FG_COLS_2_4(a, b, c, d)
#define FG_ROW4X4_FIRST(a, b, c, d, wp)                                                     \
  "vldmia " #wp "!, {s24-s27}\n\t" FG_COLR_FIRST(a, b, c, d, s8, s12, s16, s20, s24)       \
  FG_COLS_2_4(a, b, c, d)
#define FG_LOAD_X4                                                                          \
  "vldmia r0!, {s8-s11}\n\t" "vldmia r1!, {s12-s15}\n\t" "vldmia r2!, {s16-s19}\n\t"        \
  "vldmia r3!, {s20-s23}\n\t"

void fg_f32_row_blocks4(const float* x, const float* w, int32_t depth, int32_t blocks,
                        const float* acc, const float* bias, float* y);
void fg_f32_rows4_blocks2(const float* x, int32_t x_stride, int32_t depth, const float* w,
                          const float* bias, int32_t pairs, float* y, int32_t y_stride,
                          int accumulate);

/* Registers: r11 x (rewound by r7 = depth * 4 after each block), r1 r8 r9 r10 the four w rows
 * (the last one's end is the next block's first row), r2 blocks of 16 after the first, r12 their
 * counter, r0 depth & 12 (the blocks of 8 and 4 after them), r3 blocks left, r4 acc, r5 bias,
 * r6 y; s0-s3 the accumulators, s4 +0.0, s8-s23 x, s24-s31 w. Stack arguments at sp + 100. */
__asm__(
    "\t.pushsection .text.fg_f32_row_blocks4,\"ax\",%progbits\n"
    "\t.syntax unified\n"
    "\t.thumb\n"
    "\t.p2align 2\n"
    "\t.global fg_f32_row_blocks4\n"
    "\t.type fg_f32_row_blocks4, %function\n"
    "\t.thumb_func\n"
    "fg_f32_row_blocks4:\n\t"
    "push {r4-r11, lr}\n\t"
    "vpush {s16-s31}\n\t"
    "ldr r4, [sp, #100]\n\t"
    "ldr r5, [sp, #104]\n\t"
    "ldr r6, [sp, #108]\n\t"
    "mov r11, r0\n\t"
    "and r0, r2, #12\n\t"
    "lsls r7, r2, #2\n\t"
    "lsrs r2, r2, #4\n\t"
    "subs r2, r2, #1\n\t"
    "movs r12, #0\n\t"
    "vmov s4, r12\n"
    "2:\n\t"
    "add r8, r1, r7\n\t"
    "add r9, r8, r7\n\t"
    "add r10, r9, r7\n\t"
    "vldmia r11!, {s8-s23}\n\t"
    FG_ROW16_FIRST(s0, r1) FG_ROW16_FIRST(s1, r8) FG_ROW16_FIRST(s2, r9)
    FG_ROW16_FIRST(s3, r10)
    "movs r12, r2\n\t"
    "beq 8f\n"
    "1:\n\t"
    "vldmia r11!, {s8-s23}\n\t"
    FG_ROW16(s0, r1) FG_ROW16(s1, r8) FG_ROW16(s2, r9) FG_ROW16(s3, r10)
    "subs r12, r12, #1\n\t"
    "bne 1b\n"
    "8:\n\t"
    "cbnz r0, 6f\n"
    "3:\n\t"
    "cbz r4, 4f\n\t"
    "vldmia r4!, {s8-s11}\n\t"
    "vadd.f32 s0, s8, s0\n\t"
    "vadd.f32 s1, s9, s1\n\t"
    "vadd.f32 s2, s10, s2\n\t"
    "vadd.f32 s3, s11, s3\n"
    "4:\n\t"
    "cbz r5, 5f\n\t"
    "vldmia r5!, {s8-s11}\n\t"
    "vadd.f32 s0, s0, s8\n\t"
    "vadd.f32 s1, s1, s9\n\t"
    "vadd.f32 s2, s2, s10\n\t"
    "vadd.f32 s3, s3, s11\n"
    "5:\n\t"
    "vstmia r6!, {s0-s3}\n\t"
    "sub r11, r11, r7\n\t"
    "mov r1, r10\n\t"
    "subs r3, r3, #1\n\t"
    "bne 2b\n\t"
    "vpop {s16-s31}\n\t"
    "pop {r4-r11, pc}\n"
    "6:\n\t"
    "tst r0, #8\n\t"
    "beq 7f\n\t"
    "vldmia r11!, {s8-s15}\n\t"
    FG_ROW8(s0, r1) FG_ROW8(s1, r8) FG_ROW8(s2, r9) FG_ROW8(s3, r10)
    "7:\n\t"
    "tst r0, #4\n\t"
    "beq 3b\n\t"
    "vldmia r11!, {s8-s11}\n\t"
    FG_ROW4(s0, r1) FG_ROW4(s1, r8) FG_ROW4(s2, r9) FG_ROW4(s3, r10)
    "b 3b\n\t"
    ".size fg_f32_row_blocks4, .-fg_f32_row_blocks4\n\t"
    ".popsection\n");

/* Registers: r0-r3 the four x rows (rewound by r11 = depth * 4 after each block), r4 r5 the two
 * w rows (the second one's end is the next pair's first row), r6 the counter of the blocks of 4
 * after the first, lr its start, r7 bias, r8 pairs left, r9 y's first row, r10 y_stride * 4,
 * r12 the other y rows; s0-s7 the accumulators, row-major (a0 a1 b0 b1 c0 c1 d0 d1), so one
 * VLDM/VSTM takes a row's pair, s8-s23 x, s24-s27 w, s28 the product, s29 +0.0. Stack arguments
 * at sp + 92. */
__asm__(
    "\t.pushsection .text.fg_f32_rows4_blocks2,\"ax\",%progbits\n"
    "\t.syntax unified\n"
    "\t.thumb\n"
    "\t.p2align 2\n"
    "\t.global fg_f32_rows4_blocks2\n"
    "\t.type fg_f32_rows4_blocks2, %function\n"
    "\t.thumb_func\n"
    "fg_f32_rows4_blocks2:\n\t"
    "push {r4-r11, lr}\n\t"
    "vpush {s16-s29}\n\t"
    "lsls r12, r1, #2\n\t"
    "add r1, r0, r12\n\t"
    "lsls r11, r2, #2\n\t"
    "lsrs r2, r2, #2\n\t"
    "sub lr, r2, #1\n\t"
    "add r2, r1, r12\n\t"
    "mov r4, r3\n\t"
    "add r3, r2, r12\n\t"
    "ldr r7, [sp, #92]\n\t"
    "ldr r8, [sp, #96]\n\t"
    "ldr r9, [sp, #100]\n\t"
    "ldr r10, [sp, #104]\n\t"
    "lsls r10, r10, #2\n\t"
    "movs r12, #0\n\t"
    "vmov s29, r12\n"
    "2:\n\t"
    "add r5, r4, r11\n\t"
    FG_LOAD_X4
    FG_ROW4X4_FIRST(s0, s2, s4, s6, r4) FG_ROW4X4_FIRST(s1, s3, s5, s7, r5)
    "movs r6, lr\n\t"
    "beq 8f\n"
    "1:\n\t"
    FG_LOAD_X4
    FG_ROW4X4(s0, s2, s4, s6, r4) FG_ROW4X4(s1, s3, s5, s7, r5)
    "subs r6, r6, #1\n\t"
    "bne 1b\n"
    "8:\n\t"
    "sub r0, r0, r11\n\t"
    "sub r1, r1, r11\n\t"
    "sub r2, r2, r11\n\t"
    "sub r3, r3, r11\n\t"
    "mov r4, r5\n\t"
    "ldr r6, [sp, #108]\n\t"
    "cbnz r6, 6f\n"
    "3:\n\t"
    "cbz r7, 4f\n\t"
    "vldmia r7!, {s8-s9}\n\t"
    "vadd.f32 s0, s0, s8\n\t"
    "vadd.f32 s1, s1, s9\n\t"
    "vadd.f32 s2, s2, s8\n\t"
    "vadd.f32 s3, s3, s9\n\t"
    "vadd.f32 s4, s4, s8\n\t"
    "vadd.f32 s5, s5, s9\n\t"
    "vadd.f32 s6, s6, s8\n\t"
    "vadd.f32 s7, s7, s9\n"
    "4:\n\t"
    "add r12, r9, r10\n\t"
    "vstmia r12, {s2-s3}\n\t"
    "add r12, r12, r10\n\t"
    "vstmia r12, {s4-s5}\n\t"
    "add r12, r12, r10\n\t"
    "vstmia r12, {s6-s7}\n\t"
    "vstmia r9!, {s0-s1}\n\t"
    "subs r8, r8, #1\n\t"
    "bne 2b\n\t"
    "vpop {s16-s29}\n\t"
    "pop {r4-r11, pc}\n"
    "6:\n\t"
    "vldmia r9, {s8-s9}\n\t"
    "vadd.f32 s0, s8, s0\n\t"
    "vadd.f32 s1, s9, s1\n\t"
    "add r12, r9, r10\n\t"
    "vldmia r12, {s8-s9}\n\t"
    "vadd.f32 s2, s8, s2\n\t"
    "vadd.f32 s3, s9, s3\n\t"
    "add r12, r12, r10\n\t"
    "vldmia r12, {s8-s9}\n\t"
    "vadd.f32 s4, s8, s4\n\t"
    "vadd.f32 s5, s9, s5\n\t"
    "add r12, r12, r10\n\t"
    "vldmia r12, {s8-s9}\n\t"
    "vadd.f32 s6, s8, s6\n\t"
    "vadd.f32 s7, s9, s7\n\t"
    "b 3b\n\t"
    ".size fg_f32_rows4_blocks2, .-fg_f32_rows4_blocks2\n\t"
    ".popsection\n");
#endif /* __thumb2__ */
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

/* The C loops below are not inlined where the assembly blocks run, so the frames under those
 * stay small (the blocks save s16-s31 themselves). */
#if defined(__GNUC__) && defined(FG_F32_ROW_ASM)
#define FG_NOINLINE __attribute__((noinline))
#else
#define FG_NOINLINE
#endif

/* One x row, outputs n..: four at a time, so each x[k] is loaded once for four w rows. */
static FG_NOINLINE void MatmulRowFrom(const float* x_row, int32_t depth, const float* w,
                                      const float* bias, int32_t cols, const float* acc_row,
                                      float* y_row, int32_t n) {
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

/* One x row: the assembly blocks of four outputs where they apply, the C loops for the rest. */
static void MatmulRow(const float* x_row, int32_t depth, const float* w, const float* bias,
                      int32_t cols, const float* acc_row, float* y_row) {
  int32_t n = 0;
#ifdef FG_F32_ROW_ASM
  if (depth >= 16 && (depth & 3) == 0 && cols >= 4) {
    fg_f32_row_blocks4(x_row, w, depth, cols >> 2, acc_row, bias, y_row);
    n = cols & ~3;
  }
#endif
  if (n < cols) MatmulRowFrom(x_row, depth, w, bias, cols, acc_row, y_row, n);
}

/* Four x rows (a batched projection), outputs n.. two at a time: each w[k] is loaded once for the
 * four rows and each x[k] once for two outputs. Scalar accumulators (an array would be zeroed by
 * a memset call and live in memory). */
static FG_NOINLINE void MatmulFourRows(const float* x, int32_t x_stride, int32_t depth,
                                       const float* w, const float* bias, int32_t cols, float* y,
                                       int32_t y_stride, int accumulate, int32_t n) {
  const float* const x1 = x + x_stride;
  const float* const x2 = x1 + x_stride;
  const float* const x3 = x2 + x_stride;
  float* const y1 = y + y_stride;
  float* const y2 = y1 + y_stride;
  float* const y3 = y2 + y_stride;
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
    const float* const x_rows = x + r * x_stride;
    float* const y_rows = y + r * y_stride;
    int32_t n = 0;
#ifdef FG_F32_ROW_ASM
    if (depth >= 4 && (depth & 3) == 0 && cols >= 2) {
      fg_f32_rows4_blocks2(x_rows, x_stride, depth, w, bias, cols >> 1, y_rows, y_stride,
                           accumulate);
      n = cols & ~1;
    }
#endif
    if (n < cols) {
      MatmulFourRows(x_rows, x_stride, depth, w, bias, cols, y_rows, y_stride, accumulate, n);
    }
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
