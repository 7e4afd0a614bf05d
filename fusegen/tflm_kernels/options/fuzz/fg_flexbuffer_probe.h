// Calls every getter of fg_flexbuffer.h on one buffer and key and checks the API's promises that
// hold for any input: a known status, outputs untouched unless Ok, bools 0 or 1, no vector write
// past `capacity`, and a key missing for all getters or for none. A broken promise aborts, so both
// the sanitizer driver and the libFuzzer harness report it as a crash.

#ifndef TFLM_KERNELS_OPTIONS_FUZZ_FG_FLEXBUFFER_PROBE_H_
#define TFLM_KERNELS_OPTIONS_FUZZ_FG_FLEXBUFFER_PROBE_H_

#include <stddef.h>
#include <stdint.h>

#include "tflm_kernels/options/fg_flexbuffer.h"

enum { kFgProbeCapacity = 8 };

typedef struct {
  FgFlexStatus int_status;
  int64_t int_value;
  FgFlexStatus bool_status;
  int bool_value;
  FgFlexStatus float_status;
  double float_value;
  FgFlexStatus int_vector_status;
  size_t int_vector_count;
  int64_t int_vector[kFgProbeCapacity];
  FgFlexStatus float_vector_status;
  size_t float_vector_count;
  double float_vector[kFgProbeCapacity];
} FgProbeResult;

void fg_flex_probe(const uint8_t* buffer, size_t length, const char* key, FgProbeResult* result);

#endif  // TFLM_KERNELS_OPTIONS_FUZZ_FG_FLEXBUFFER_PROBE_H_
