/* Helium (M-profile Vector Extension, Cortex-M55/M85) inner loops of fg_matmul_s8, included by
 * fg_runtime_q.c when the compiler targets MVE (__ARM_FEATURE_MVE, e.g. -mcpu=cortex-m55).
 *
 * One VMLADAVA.S8 multiplies 16 int8 pairs and adds all 16 products to a 32-bit scalar; the
 * last partial vector is predicated (VCTP: lanes past depth are neither loaded nor added, so
 * nothing is read beyond the rows). The int32 sums are exact (|x * w| <= 2^14, depth < 2^14),
 * so the order of the additions does not matter: the result equals the portable loop, and so
 * the numpy twin, bit for bit. Kept apart from the DSP (SMLAD) loops of fg_runtime_q.c so the
 * two can evolve independently. */
#ifndef TFLM_KERNELS_RUNTIME_FG_RUNTIME_Q_MVE_H_
#define TFLM_KERNELS_RUNTIME_FG_RUNTIME_Q_MVE_H_

#include <arm_mve.h>
#include <stddef.h>
#include <stdint.h>

/* acc[c] = (bias ? bias[c] : 0) + sum_k x[k] * w[c * depth + k] for four rows of w: x is loaded
 * once per 16 elements for the four rows. */
static inline void FgMveDotS8Rows4(const int8_t* x, const int8_t* w, int32_t depth,
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
  for (; k + 16 <= depth; k += 16) {
    const int8x16_t xv = vld1q_s8(x + k);
    a0 = vmladavaq_s8(a0, xv, vld1q_s8(w0 + k));
    a1 = vmladavaq_s8(a1, xv, vld1q_s8(w1 + k));
    a2 = vmladavaq_s8(a2, xv, vld1q_s8(w2 + k));
    a3 = vmladavaq_s8(a3, xv, vld1q_s8(w3 + k));
  }
  if (k < depth) {
    const mve_pred16_t p = vctp8q((uint32_t)(depth - k));
    const int8x16_t xv = vld1q_z_s8(x + k, p);
    a0 = vmladavaq_p_s8(a0, xv, vld1q_z_s8(w0 + k, p), p);
    a1 = vmladavaq_p_s8(a1, xv, vld1q_z_s8(w1 + k, p), p);
    a2 = vmladavaq_p_s8(a2, xv, vld1q_z_s8(w2 + k, p), p);
    a3 = vmladavaq_p_s8(a3, xv, vld1q_z_s8(w3 + k, p), p);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* (bias ? *bias : 0) + sum_k x[k] * w_row[k]: one row (the columns left over after the groups
 * of four). */
static inline int32_t FgMveDotS8Row(const int8_t* x, const int8_t* w_row, int32_t depth,
                                    const int32_t* bias) {
  int32_t a = bias != NULL ? *bias : 0;
  int32_t k = 0;
  for (; k + 16 <= depth; k += 16) a = vmladavaq_s8(a, vld1q_s8(x + k), vld1q_s8(w_row + k));
  if (k < depth) {
    const mve_pred16_t p = vctp8q((uint32_t)(depth - k));
    a = vmladavaq_p_s8(a, vld1q_z_s8(x + k, p), vld1q_z_s8(w_row + k, p), p);
  }
  return a;
}

#endif /* TFLM_KERNELS_RUNTIME_FG_RUNTIME_Q_MVE_H_ */
