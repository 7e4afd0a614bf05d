// A small, defensive reader for the root map of a FlexBuffers buffer: the custom options of a fused
// op. A kernel's Prepare reads each option by key, never by position, and never trusts the buffer:
// every offset, width and size is checked against [buffer, buffer + length) before it is used.
//
// Portable C99: no allocation, no recursion, every loop bounded by the buffer length, no TFLM or
// flatbuffers include, so it builds for the host, for Cortex-M and under ctypes alike.
//
// Besides bounds, a map is rejected as malformed unless every key is NUL-terminated within
// kFgFlexMaxKeyLength bytes and the keys are strictly ascending in strcmp order (as the FlexBuffers
// builders write them). The ascending check makes this reader agree with the flatbuffers C++
// reader, which binary-searches the keys: an unsorted or duplicated key would be found by one and
// missed by the other. All keys are validated on every call, so whether a lookup reports
// kFgFlexMalformed does not depend on which key is asked for.
//
// Outputs are written only when the call returns kFgFlexOk, so a caller can preset a default and
// accept kFgFlexMissing for an optional key.

#ifndef TFLM_KERNELS_OPTIONS_FG_FLEXBUFFER_H_
#define TFLM_KERNELS_OPTIONS_FG_FLEXBUFFER_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  kFgFlexOk = 0,
  kFgFlexMalformed,  // Not a FlexBuffers root map, or some offset/width/size is out of range.
  kFgFlexMissing,    // A well-formed map without that key.
  kFgFlexWrongType,  // The key exists but its value cannot be read as the requested type.
} FgFlexStatus;

// Keys longer than this (excluding the NUL) make a map malformed. It keeps the cost of a lookup
// linear in the buffer length; option keys are short identifiers.
enum { kFgFlexMaxKeyLength = 255 };

// Accepts int, uint (up to INT64_MAX) and bool (0 or 1), inline or indirect.
FgFlexStatus fg_flex_get_int(const uint8_t* buffer, size_t length, const char* key,
                             int64_t* value);

// Accepts bool (any non-zero stored value is 1), uint 0 or 1, and int 0, 1 or -1. The TFLite
// converter writes a composite function's `b: true` attribute as the int -1 (see the .c file).
FgFlexStatus fg_flex_get_bool(const uint8_t* buffer, size_t length, const char* key, int* value);

// Accepts float (32 or 64 bits), int and uint, inline or indirect. Not bool.
FgFlexStatus fg_flex_get_float(const uint8_t* buffer, size_t length, const char* key,
                               double* value);

// Vectors: typed (VECTOR_INT/UINT/BOOL/FLOAT), fixed-length typed (2, 3 or 4 elements) and untyped
// vectors whose elements are all acceptable scalars (as for the single-value getters above).
// `*count` receives the number of elements in the stored vector, which may exceed `capacity`;
// only the first min(*count, capacity) elements are written to `values`, but every element is
// validated, so the status does not depend on `capacity`. `values` may be NULL if capacity is 0.
FgFlexStatus fg_flex_get_int_vector(const uint8_t* buffer, size_t length, const char* key,
                                    int64_t* values, size_t capacity, size_t* count);
FgFlexStatus fg_flex_get_float_vector(const uint8_t* buffer, size_t length, const char* key,
                                      double* values, size_t capacity, size_t* count);

// A static string naming the status, for error messages ("ok", "malformed", ...).
const char* fg_flex_status_string(FgFlexStatus status);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TFLM_KERNELS_OPTIONS_FG_FLEXBUFFER_H_
