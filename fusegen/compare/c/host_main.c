// The host program `fusegen compare --target host` measures: it runs fw_model_run (a model
// implementing firmware/app/fw_model.h, linked in) on every input of a raw float32 file and
// writes the outputs. Valgrind's callgrind counts the instructions inside fw_model_run; without
// valgrind, `repeats` > 0 times every inference and prints the median wall-clock time.
//
//   host_model INPUTS.f32 OUTPUTS.f32 [REPEATS]
#define _POSIX_C_SOURCE 199309L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fw_model.h"

// The firmware records per-op counts here; the host target measures whole inferences only.
void fw_op_mark(void) {}

static long ReadAll(const char* path, unsigned char** data) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) return -1;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  *data = malloc((size_t)size + 1);
  if (*data == NULL || fread(*data, 1, (size_t)size, f) != (size_t)size) size = -1;
  fclose(f);
  return size;
}

static int CompareDoubles(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double MedianNanoseconds(const unsigned char* inputs, long n, unsigned char* out,
                                int repeats) {
  const FwModelInfo* info = fw_model_info();
  long runs = n * repeats;
  double* times = malloc(sizeof(double) * (size_t)runs);
  for (long k = 0; k < runs; ++k) {
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    fw_model_run(inputs + (k % n) * info->input_bytes, out);
    clock_gettime(CLOCK_MONOTONIC, &end);
    times[k] = (double)(end.tv_sec - start.tv_sec) * 1e9 + (double)(end.tv_nsec - start.tv_nsec);
  }
  qsort(times, (size_t)runs, sizeof(double), CompareDoubles);
  double median = times[runs / 2];
  free(times);
  return median;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s INPUTS.f32 OUTPUTS.f32 [REPEATS]\n", argv[0]);
    return 2;
  }
  const FwModelInfo* info = fw_model_info();
  unsigned char* inputs = NULL;
  long size = ReadAll(argv[1], &inputs);
  if (size <= 0 || size % info->input_bytes != 0) {
    fprintf(stderr, "%s: not a whole number of %d-byte inputs\n", argv[1], (int)info->input_bytes);
    return 1;
  }
  long n = size / info->input_bytes;
  unsigned char* outputs = malloc((size_t)(n * info->output_bytes));
  fw_model_reset();
  for (long k = 0; k < n; ++k) {
    if (fw_model_run(inputs + k * info->input_bytes, outputs + k * info->output_bytes) != 0) {
      fprintf(stderr, "fw_model_run failed on input %ld\n", k);
      return 1;
    }
  }
  FILE* f = fopen(argv[2], "wb");
  if (f == NULL || fwrite(outputs, 1, (size_t)(n * info->output_bytes), f) !=
                       (size_t)(n * info->output_bytes)) {
    fprintf(stderr, "%s: cannot write\n", argv[2]);
    return 1;
  }
  fclose(f);
  int repeats = argc > 3 ? atoi(argv[3]) : 0;
  if (repeats > 0) {
    unsigned char* scratch = malloc((size_t)info->output_bytes);
    printf("median_ns %.1f\n", MedianNanoseconds(inputs, n, scratch, repeats));
    free(scratch);
  }
  free(outputs);
  free(inputs);
  return 0;
}
