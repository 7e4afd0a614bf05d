/* Command handling of the benchmark protocol: turns frames from FwParser into calls of the model
 * interface (fw_model.h) and writes the responses. Portable C: the board is reached only through
 * FwServerPort, so the server also runs on the host (firmware/host/) and under the fuzzer. */
#ifndef FIRMWARE_APP_FW_SERVER_H_
#define FIRMWARE_APP_FW_SERVER_H_

#include <stdint.h>

#include "fw_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
  kFwCounterCycles = 0,       /* core clock cycles (DWT CYCCNT) */
  kFwCounterInstructions = 1, /* executed instructions (QEMU -icount) */
};

/* What DESCRIBE reports about the device besides the model. */
typedef struct {
  const char* firmware_version;
  const char* board_name;
  uint8_t counter_unit;        /* kFwCounterCycles or kFwCounterInstructions */
  uint16_t counter_resolution; /* counts per timer tick: 40 under QEMU, 1 with DWT */
  uint32_t cpu_hz;
  uint32_t flash_used, flash_size; /* 0 when the linker script does not say */
  uint32_t ram_used, ram_size;
  uint32_t stack_size;
} FwDeviceInfo;

typedef struct {
  FwWriteFn write; /* sends bytes to the host; blocking */
  void* write_ctx;
  void (*counter_reset)(void);    /* zeroes the counter RUN reads */
  uint64_t (*counter_read)(void); /* counts since counter_reset, in counter_unit */
  uint32_t (*stack_used)(void);   /* deepest stack use so far in bytes, or NULL */
  FwDeviceInfo device;
} FwServerPort;

typedef struct {
  FwParser parser;
  const FwServerPort* port;
  uint8_t* input;
  uint32_t input_capacity;
  uint8_t* output;
  uint32_t output_capacity;
  int exit_requested;
  /* RUN advances recurrent state, so it must not run twice when the host resends it after a lost
   * response: a repeated RUN with the sequence number of the frame just handled gets the stored
   * response instead. Any other frame clears it. */
  int run_reply_valid;
  uint8_t run_reply_seq;
  uint8_t run_reply[16];
  uint8_t response[kFwMaxPayload];
} FwServer;

/* input and output must be 16-byte aligned and stay valid for the server's lifetime. */
void fw_server_init(FwServer* server, const FwServerPort* port, void* input,
                    uint32_t input_capacity, void* output, uint32_t output_capacity);

/* Consumes one received byte; answers a complete or rejected frame at once. */
void fw_server_feed(FwServer* server, uint8_t byte);

/* Call when no byte arrived for the frame timeout: abandons and reports a partial frame. */
void fw_server_timeout(FwServer* server);

/* Nonzero once an EXIT command was answered. */
int fw_server_exit_requested(const FwServer* server);

#ifdef __cplusplus
}
#endif

#endif /* FIRMWARE_APP_FW_SERVER_H_ */
