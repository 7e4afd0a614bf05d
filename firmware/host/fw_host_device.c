/* The device side of the protocol built for the host: FwServer with an in-memory "UART" and a
 * fake counter. Loaded through ctypes by tests/test_serial_protocol.py and linked into the
 * fuzz target, so parser and command handling are tested without a board or an emulator. */
#include "fw_host_device.h"

#include "fw_model.h"
#include "fw_server.h"

enum { kOutputCapacity = 1 << 16, kBufferBytes = 1 << 16 };

static uint8_t g_output[kOutputCapacity];
static size_t g_output_bytes;
static uint64_t g_counter;
/* 16-byte alignment as fw_model_run() is promised. */
static _Alignas(16) uint8_t g_model_input[kBufferBytes];
static _Alignas(16) uint8_t g_model_output[kBufferBytes];
static FwServer g_server;

static void host_write(void* ctx, const uint8_t* data, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n && g_output_bytes < kOutputCapacity; ++i) {
    g_output[g_output_bytes++] = data[i];
  }
}

/* Each inference "costs" 1000 counts, so tests can tell a replayed RUN from a new one. */
static void host_counter_reset(void) { g_counter = 0; }
static uint64_t host_counter_read(void) { return g_counter += 1000; }
static uint32_t host_stack_used(void) { return 256; }

static const FwServerPort kPort = {
    .write = host_write,
    .write_ctx = 0,
    .counter_reset = host_counter_reset,
    .counter_read = host_counter_read,
    .stack_used = host_stack_used,
    .device =
        {
            .firmware_version = "host",
            .board_name = "host",
            .counter_unit = 0,
            .counter_resolution = 1,
            .cpu_hz = 0,
            .flash_used = 0,
            .flash_size = 0,
            .ram_used = 0,
            .ram_size = 0,
            .stack_size = 0,
        },
};

void fw_host_init(uint32_t input_capacity, uint32_t output_capacity) {
  if (input_capacity > kBufferBytes) input_capacity = kBufferBytes;
  if (output_capacity > kBufferBytes) output_capacity = kBufferBytes;
  g_output_bytes = 0;
  fw_model_reset();
  fw_server_init(&g_server, &kPort, g_model_input, input_capacity, g_model_output,
                 output_capacity);
}

size_t fw_host_feed(const uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) fw_server_feed(&g_server, data[i]);
  return g_output_bytes;
}

void fw_host_timeout(void) { fw_server_timeout(&g_server); }

size_t fw_host_take_output(uint8_t* out, size_t capacity) {
  const size_t n = g_output_bytes < capacity ? g_output_bytes : capacity;
  for (size_t i = 0; i < n; ++i) out[i] = g_output[i];
  for (size_t i = n; i < g_output_bytes; ++i) g_output[i - n] = g_output[i];
  g_output_bytes -= n;
  return n;
}

int fw_host_exit_requested(void) { return fw_server_exit_requested(&g_server); }

uint32_t fw_host_run_count(void) { return fw_server_run_count(&g_server); }

int fw_host_in_frame(void) { return fw_parser_in_frame(&g_server.parser); }
