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
  /* Exactly-once RUN (firmware/README.md, "Sessions and exactly-once RUN"). HELLO opens a
   * session named by the host's nonce, on behalf of an owner (a host that may reconnect).
   * RUN, LOAD_INPUT and RESET_STATE carry the session and the index of the inference they
   * belong to, so a resent, duplicated or delayed frame, or one from an earlier connection, can
   * never run the model a second time: inference n runs only when run_count is n - 1, and a RUN
   * for n == run_count gets the stored response if its session, or a session of the same
   * owner, ran it. Nothing else (no rejected frame, no other command) discards it. */
  uint32_t session;       /* nonce of the last HELLO; 0 before the first */
  uint32_t session_owner; /* owner named by that HELLO; 0: none */
  uint32_t run_count;     /* inferences run since fw_server_init */
  uint32_t run_session;   /* session that ran (or last collected) inference run_count */
  uint32_t run_owner;     /* owner of the session that ran it */
  uint8_t run_reply[20];
  /* The counter at each fw_op_mark of inference run_count (the first kFwMaxOpMarks), and how
   * many marks it made in all. */
  uint64_t op_marks[kFwMaxOpMarks];
  uint32_t op_mark_count;
  uint8_t response[kFwMaxPayload];
} FwServer;

/* input and output must be 16-byte aligned and stay valid for the server's lifetime. */
void fw_server_init(FwServer* server, const FwServerPort* port, void* input,
                    uint32_t input_capacity, void* output, uint32_t output_capacity);

/* Consumes one received byte; answers a complete or rejected frame at once. */
void fw_server_feed(FwServer* server, uint8_t byte);

/* Call when no byte arrived for the frame timeout: abandons and reports a partial frame. */
void fw_server_timeout(FwServer* server);

/* Inferences run since fw_server_init (what STATUS reports). */
uint32_t fw_server_run_count(const FwServer* server);

/* Nonzero once an EXIT command was answered. */
int fw_server_exit_requested(const FwServer* server);

#ifdef __cplusplus
}
#endif

#endif /* FIRMWARE_APP_FW_SERVER_H_ */
