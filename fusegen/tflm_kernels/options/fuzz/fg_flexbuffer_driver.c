// Runs fg_flex_probe over many buffers in one process, for the sanitizer build in
// tests/test_options_roundtrip.py. Usage: fg_flexbuffer_driver RECORDS_FILE KEY...
// RECORDS_FILE holds records of [uint32 little-endian length][bytes]. For each record and key it
// prints one line per getter:
//   <record> <key index> <getter> <status> [<count>] [<value>...]
// with values only when the status is 0 (ok); floats in C99 hex ("%a") so Python reads them
// exactly. Each record is copied into a buffer of exactly its length, so that AddressSanitizer
// catches a read one byte past the end.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tflm_kernels/options/fuzz/fg_flexbuffer_probe.h"

static void PrintVector(size_t record, int key, const char* getter, FgFlexStatus status,
                        size_t count, const int64_t* ints, const double* floats) {
  printf("%zu %d %s %d", record, key, getter, (int)status);
  if (status == kFgFlexOk) {
    printf(" %zu", count);
    for (size_t i = 0; i < count && i < kFgProbeCapacity; ++i) {
      if (ints != NULL) printf(" %lld", (long long)ints[i]);
      if (floats != NULL) printf(" %a", floats[i]);
    }
  }
  printf("\n");
}

static void PrintProbe(size_t record, int key, const FgProbeResult* r) {
  printf("%zu %d int %d", record, key, (int)r->int_status);
  if (r->int_status == kFgFlexOk) printf(" %lld", (long long)r->int_value);
  printf("\n%zu %d bool %d", record, key, (int)r->bool_status);
  if (r->bool_status == kFgFlexOk) printf(" %d", r->bool_value);
  printf("\n%zu %d float %d", record, key, (int)r->float_status);
  if (r->float_status == kFgFlexOk) printf(" %a", r->float_value);
  printf("\n");
  PrintVector(record, key, "int_vector", r->int_vector_status, r->int_vector_count, r->int_vector,
              NULL);
  PrintVector(record, key, "float_vector", r->float_vector_status, r->float_vector_count, NULL,
              r->float_vector);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s RECORDS_FILE KEY...\n", argv[0]);
    return 2;
  }
  FILE* file = fopen(argv[1], "rb");
  if (file == NULL) {
    perror(argv[1]);
    return 2;
  }
  unsigned char header[4];
  for (size_t record = 0; fread(header, 1, 4, file) == 4; ++record) {
    const size_t length = (size_t)header[0] | (size_t)header[1] << 8 | (size_t)header[2] << 16 |
                          (size_t)header[3] << 24;
    // malloc(0) may return NULL; allocate at least one byte but pass the true length.
    uint8_t* buffer = (uint8_t*)malloc(length > 0 ? length : 1);
    if (buffer == NULL || fread(buffer, 1, length, file) != length) {
      fprintf(stderr, "record %zu: short read\n", record);
      return 2;
    }
    for (int key = 2; key < argc; ++key) {
      FgProbeResult result;
      fg_flex_probe(buffer, length, argv[key], &result);
      PrintProbe(record, key - 2, &result);
    }
    free(buffer);
  }
  fclose(file);
  return 0;
}
