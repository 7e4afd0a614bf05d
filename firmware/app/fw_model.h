/* The model the benchmark firmware runs. Exactly one implementation is linked: the echo test
 * model (fw_model_test_echo.c) or the sources listed in the CMake variable
 * FUSEGEN_MODEL_SOURCES. */
#ifndef FIRMWARE_APP_FW_MODEL_H_
#define FIRMWARE_APP_FW_MODEL_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  kFwDtypeFloat32 = 0,
  kFwDtypeInt8 = 1,
};

typedef struct {
  int32_t input_bytes, output_bytes;
  int32_t input_elems, output_elems;
  uint8_t dtype; /* 0=float32 1=int8 */
  uint32_t model_bytes, arena_bytes;
  const char* name;
} FwModelInfo;

const FwModelInfo* fw_model_info(void);

/* One inference, returns 0 on success. input and output are 16-byte aligned buffers of
 * input_bytes and output_bytes. */
int fw_model_run(const void* input, void* output);

/* Clears recurrent state. */
void fw_model_reset(void);

/* Provided by the firmware (not the model): a model calls it after each op of an inference; the
 * firmware records the counter there and OP_COUNTS reports the values (per-op time). Outside
 * an inference it does nothing. */
void fw_op_mark(void);

#ifdef __cplusplus
}
#endif

#endif /* FIRMWARE_APP_FW_MODEL_H_ */
