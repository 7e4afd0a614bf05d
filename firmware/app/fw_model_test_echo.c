/* Echo test model: output[i] = 2 * input[i] for i < N, output[N] = inferences since reset.
 *
 * It stands in for a generated model while the firmware and the link are tested. Each element
 * goes through a 16-tap multiply-accumulate so RUN has measurable, data-independent work. The
 * taps are +1,-1,...,+1,+1: every partial sum is 0, x or 2x, so the float result is exactly 2x
 * (no rounding) and the host can compare with equality. The trailing counter is recurrent state,
 * so RESET_STATE has something observable to clear. */
#include "fw_model.h"

#ifndef FW_ECHO_ELEMS
#define FW_ECHO_ELEMS 64
#endif

enum { kEchoElems = FW_ECHO_ELEMS, kEchoTaps = 16 };

static const float kTaps[kEchoTaps] = {1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f,
                                       1.0f, -1.0f, 1.0f, -1.0f, 1.0f, -1.0f, 1.0f, 1.0f};

static uint32_t g_steps;

static const FwModelInfo kInfo = {
    .input_bytes = kEchoElems * (int32_t)sizeof(float),
    .output_bytes = (kEchoElems + 1) * (int32_t)sizeof(float),
    .input_elems = kEchoElems,
    .output_elems = kEchoElems + 1,
    .dtype = kFwDtypeFloat32,
    .model_bytes = sizeof(kTaps),
    .arena_bytes = sizeof(g_steps),
    .name = "test_echo",
};

const FwModelInfo* fw_model_info(void) { return &kInfo; }

int fw_model_run(const void* input, void* output) {
  const float* in = (const float*)input;
  float* out = (float*)output;
  for (int i = 0; i < kEchoElems; ++i) {
    float acc = 0.0f;
    for (int k = 0; k < kEchoTaps; ++k) acc += kTaps[k] * in[i];
    out[i] = acc;
  }
  ++g_steps;
  out[kEchoElems] = (float)g_steps;
  return 0;
}

void fw_model_reset(void) { g_steps = 0; }
