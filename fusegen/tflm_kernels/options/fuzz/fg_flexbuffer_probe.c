#include "tflm_kernels/options/fuzz/fg_flexbuffer_probe.h"

#include <stdlib.h>
#include <string.h>

// Sentinels that a getter must leave in place unless it returns kFgFlexOk.
static const int64_t kIntSentinel = 0x5a5a5a5a5a5a5a5aLL;
static const int kBoolSentinel = 42;
static const double kFloatSentinel = -12345.25;
static const size_t kCountSentinel = 987654321u;

static void Require(int condition) {
  if (!condition) abort();
}

static int IsStatus(FgFlexStatus s) {
  return s == kFgFlexOk || s == kFgFlexMalformed || s == kFgFlexMissing || s == kFgFlexWrongType;
}

// Whether a key is present is decided by the map alone, so every getter agrees on kFgFlexMissing.
// Other outcomes may differ: a bad indirect offset is malformed for fg_flex_get_int but the wrong
// type for fg_flex_get_int_vector, which rejects the value's type before following its offset.
static int MapVerdict(FgFlexStatus s) { return s == kFgFlexMissing ? 1 : 0; }

static void ProbeIntVector(const uint8_t* buffer, size_t length, const char* key,
                           FgProbeResult* r) {
  int64_t values[kFgProbeCapacity + 1];
  for (size_t i = 0; i <= kFgProbeCapacity; ++i) values[i] = kIntSentinel;
  r->int_vector_count = kCountSentinel;
  r->int_vector_status = fg_flex_get_int_vector(buffer, length, key, values, kFgProbeCapacity,
                                                &r->int_vector_count);
  Require(IsStatus(r->int_vector_status));
  Require(values[kFgProbeCapacity] == kIntSentinel);
  if (r->int_vector_status != kFgFlexOk) {
    Require(r->int_vector_count == kCountSentinel);
    for (size_t i = 0; i < kFgProbeCapacity; ++i) Require(values[i] == kIntSentinel);
    r->int_vector_count = 0;
  }
  memcpy(r->int_vector, values, sizeof(r->int_vector));
}

static void ProbeFloatVector(const uint8_t* buffer, size_t length, const char* key,
                             FgProbeResult* r) {
  double values[kFgProbeCapacity + 1];
  for (size_t i = 0; i <= kFgProbeCapacity; ++i) values[i] = kFloatSentinel;
  r->float_vector_count = kCountSentinel;
  r->float_vector_status = fg_flex_get_float_vector(buffer, length, key, values, kFgProbeCapacity,
                                                    &r->float_vector_count);
  Require(IsStatus(r->float_vector_status));
  // Compared bitwise: a NaN decoded from the buffer must not be mistaken for a broken sentinel.
  Require(memcmp(&values[kFgProbeCapacity], &kFloatSentinel, sizeof(double)) == 0);
  if (r->float_vector_status != kFgFlexOk) {
    Require(r->float_vector_count == kCountSentinel);
    for (size_t i = 0; i < kFgProbeCapacity; ++i) {
      Require(memcmp(&values[i], &kFloatSentinel, sizeof(double)) == 0);
    }
    r->float_vector_count = 0;
  }
  memcpy(r->float_vector, values, sizeof(r->float_vector));
}

void fg_flex_probe(const uint8_t* buffer, size_t length, const char* key, FgProbeResult* r) {
  r->int_value = kIntSentinel;
  r->int_status = fg_flex_get_int(buffer, length, key, &r->int_value);
  Require(IsStatus(r->int_status));
  Require(r->int_status == kFgFlexOk || r->int_value == kIntSentinel);

  r->bool_value = kBoolSentinel;
  r->bool_status = fg_flex_get_bool(buffer, length, key, &r->bool_value);
  Require(IsStatus(r->bool_status));
  Require(r->bool_status == kFgFlexOk ? (r->bool_value == 0 || r->bool_value == 1)
                                      : r->bool_value == kBoolSentinel);

  r->float_value = kFloatSentinel;
  r->float_status = fg_flex_get_float(buffer, length, key, &r->float_value);
  Require(IsStatus(r->float_status));
  Require(r->float_status == kFgFlexOk ||
          memcmp(&r->float_value, &kFloatSentinel, sizeof(double)) == 0);

  ProbeIntVector(buffer, length, key, r);
  ProbeFloatVector(buffer, length, key, r);

  const int missing = MapVerdict(r->int_status);
  Require(MapVerdict(r->bool_status) == missing && MapVerdict(r->float_status) == missing &&
          MapVerdict(r->int_vector_status) == missing &&
          MapVerdict(r->float_vector_status) == missing);
}
