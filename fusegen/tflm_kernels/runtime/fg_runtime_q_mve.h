/* Helium (M-profile Vector Extension, Cortex-M55/M85) helpers of fg_matmul_s8 and fg_lut_s16,
 * included by fg_runtime_q.c when the compiler targets MVE (__ARM_FEATURE_MVE, e.g.
 * -mcpu=cortex-m55), where they take precedence over the DSP (SMLAD) assembly (the order is
 * written above fg_runtime_q.c's includes).
 *
 * One VMLADAVA.S8 multiplies 16 int8 pairs and adds all 16 products to a 32-bit scalar. A group
 * of four weight rows' tail columns (fusegen/abi.py's 4 x 4 blocks and last bytes) is gathered
 * in x's order (FgMveTailOffsets); a row-major row's last partial vector is predicated (VCTP:
 * lanes past depth are neither loaded nor added, so nothing is read beyond the rows). The int32
 * sums are exact (|x * w| <= 2^14, depth < 2^14), so the order of the additions does not
 * matter: the result equals the portable loop, and so the numpy twin, bit for bit. */
#ifndef TFLM_KERNELS_RUNTIME_FG_RUNTIME_Q_MVE_H_
#define TFLM_KERNELS_RUNTIME_FG_RUNTIME_Q_MVE_H_

#include <arm_mve.h>
#include <stddef.h>
#include <stdint.h>

/* The columns of a group of four weight rows after its 4 x 16 blocks (fusegen/abi.py's block
 * layout), "the tail": tail = depth % 16 < 16 columns, stored as words 4 x 4 blocks then a
 * 4 x bytes block (words = tail / 4, bytes = tail % 4). Row r's tail column i is at
 *   16 * (i / 4) + 4r + i % 4          for i < 4 * words,
 *   16 * words + r * bytes + i % 4     otherwise,
 * from the start of the tail (all < 4 * tail <= 60). offsets[16r + i] is that offset for i < tail
 * and 0 (a byte of the tail, multiplied by a zero lane of x) for the lanes after, so that one
 * VLDRB gather per row loads the row's tail in x's order and one VMLADAVA adds it. */
static inline void FgMveTailOffsets(int32_t depth, uint8_t offsets[64]) {
  const int32_t tail = depth & 15, words = tail >> 2, bytes = tail & 3;
  for (int32_t r = 0; r < 4; ++r) {
    for (int32_t i = 0; i < 16; ++i) {
      int32_t offset = 0;
      if (i < 4 * words) {
        offset = 16 * (i >> 2) + 4 * r + (i & 3);
      } else if (i < tail) {
        offset = 16 * words + r * bytes + (i & 3);
      }
      offsets[16 * r + i] = (uint8_t)offset;
    }
  }
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
