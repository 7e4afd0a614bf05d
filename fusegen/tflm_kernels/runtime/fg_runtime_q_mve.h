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

/* fg_multiply_by_quantized_multiplier for four values, for the kRescaleRight case of
 * fg_runtime_q.c (multiplier in [2^30, 2^31), shift <= 0, right = -shift <= 31):
 *   h = floor((x * multiplier + 2^30) / 2^31), which is exactly VQRDMULH: (2 x m + 2^31) >> 32
 *     (its saturation needs x = m = INT32_MIN; m is positive here);
 *   then RoundingDivideByPot(h, right): (h >> right) + 1 when the remainder h & mask exceeds
 *     mask / 2 (+ 1 for negative h), i.e. round half away from zero. (VRSHL would round half up:
 *     different on negative ties, so it is spelled out.) */
static inline int32x4_t FgMveRescaleRight(int32x4_t x, int32_t multiplier, int32_t right) {
  const int32x4_t h = vqrdmulhq_n_s32(x, multiplier);
  const int32_t mask = (int32_t)(((int64_t)1 << right) - 1);
  const int32x4_t shifted = vshlq_s32(h, vdupq_n_s32(-right)); /* arithmetic right shift */
  const int32x4_t remainder = vandq_s32(h, vdupq_n_s32(mask));
  /* threshold = mask / 2 + (h < 0): h >> 31 is -1 for negative h. */
  const int32x4_t threshold = vsubq_s32(vdupq_n_s32(mask >> 1), vshrq_n_s32(h, 31));
  const mve_pred16_t up = vcmpgtq_s32(remainder, threshold);
  return vaddq_m_n_s32(shifted, shifted, 1, up);
}

/* y[i] = the int16 LUT interpolation of fg_lut_lookup_s16 for x[i], four lanes at a time with
 * two gathers (the knot and the next one); the last partial vector is predicated. */
static inline void FgMveLutS16(const int16_t* lut, const int16_t* x, int16_t* y, int32_t n,
                               int32_t segment_bits) {
  const uint32x4_t offset_mask = vdupq_n_u32((1u << segment_bits) - 1u);
  for (int32_t i = 0; i < n; i += 4) {
    const mve_pred16_t p = vctp32q((uint32_t)(n - i));
    const int32x4_t biased = vaddq_n_s32(vldrhq_z_s32(x + i, p), 32768); /* in [0, 65535] */
    const uint32x4_t u = vreinterpretq_u32_s32(biased);
    const uint32x4_t index = vshlq_u32(u, vdupq_n_s32(-segment_bits));
    const int32x4_t offset = vreinterpretq_s32_u32(vandq_u32(u, offset_mask));
    const int32x4_t base = vldrhq_gather_shifted_offset_z_s32(lut, index, p);
    const int32x4_t next = vldrhq_gather_shifted_offset_z_s32(lut, vaddq_n_u32(index, 1u), p);
    const int32x4_t product = vmulq_s32(vsubq_s32(next, base), offset);
    const int32x4_t delta =
        vshlq_s32(vaddq_n_s32(product, 1 << (segment_bits - 1)), vdupq_n_s32(-segment_bits));
    vstrhq_p_s32(y + i, vaddq_s32(base, delta), p);
  }
}

#endif /* TFLM_KERNELS_RUNTIME_FG_RUNTIME_Q_MVE_H_ */
