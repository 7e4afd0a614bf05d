// libFuzzer harness for fg_flexbuffer.c: the input is the options buffer itself. Build with
//   clang -fsanitize=fuzzer,address,undefined -I<repo> fg_flexbuffer_fuzz.c fg_flexbuffer_probe.c
//       ../fg_flexbuffer.c
// and seed it with Python-written buffers using the keys below (tests/test_options_roundtrip.py
// does both). Crashes are out-of-bounds reads, undefined behaviour, or a broken API promise
// (fg_flex_probe aborts).

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tflm_kernels/options/fuzz/fg_flexbuffer_probe.h"

// Keys the seed corpus uses, plus a prefix, an extension and the empty key.
static const char* const kKeys[] = {"alpha", "units",  "return_sequences", "scales", "zero_points",
                                    "unit",  "unitsx", "",                 "a",      "b",
                                    "~"};

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A copy of exactly `size` bytes, so reading past the end is caught even when libFuzzer's own
  // buffer happens to be larger.
  uint8_t* buffer = (uint8_t*)malloc(size > 0 ? size : 1);
  if (buffer == NULL) return 0;
  if (size > 0) memcpy(buffer, data, size);
  for (size_t i = 0; i < sizeof(kKeys) / sizeof(kKeys[0]); ++i) {
    FgProbeResult result;
    fg_flex_probe(buffer, size, kKeys[i], &result);
  }
  (void)fg_flex_status_string((FgFlexStatus)(size % 5));
  free(buffer);
  return 0;
}
