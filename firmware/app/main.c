/* Benchmark firmware: answers the serial protocol (fw_server.h) on the board's UART until the
 * host sends EXIT. Everything is statically allocated. */
#include <stddef.h>
#include <stdint.h>

#include "bsp.h"
#include "fw_model.h"
#include "fw_server.h"

#ifndef FW_INPUT_CAPACITY
#define FW_INPUT_CAPACITY 16384
#endif
#ifndef FW_OUTPUT_CAPACITY
#define FW_OUTPUT_CAPACITY 16384
#endif
#ifndef FW_FRAME_TIMEOUT_MS
#define FW_FRAME_TIMEOUT_MS 20
#endif
#ifndef FW_VERSION
#define FW_VERSION "unknown"
#endif

/* A gap this long inside a frame abandons it (the host resends). Under QEMU these are virtual
 * milliseconds, 25,000 SysTick ticks each, which take QEMU roughly 50 ms of real time. */
enum { kFrameTimeoutMs = FW_FRAME_TIMEOUT_MS };

static _Alignas(16) uint8_t g_input[FW_INPUT_CAPACITY];
static _Alignas(16) uint8_t g_output[FW_OUTPUT_CAPACITY];
static FwServer g_server;
static FwServerPort g_port;

static void uart_write(void* ctx, const uint8_t* data, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; ++i) bsp_uart_putc(data[i]);
}

static void init_port(void) {
  const BspInfo* board = bsp_info();
  BspMemory memory;
  bsp_memory(&memory);
  g_port.write = uart_write;
  g_port.write_ctx = NULL;
  g_port.counter_reset = bsp_counter_reset;
  g_port.counter_read = bsp_counter_read;
  g_port.stack_used = bsp_stack_used;
  g_port.device.firmware_version = FW_VERSION;
  g_port.device.board_name = board->name;
  g_port.device.counter_unit = board->counter_unit;
  g_port.device.counter_resolution = board->counter_resolution;
  g_port.device.cpu_hz = board->cpu_hz;
  g_port.device.flash_used = memory.flash_used;
  g_port.device.flash_size = memory.flash_size;
  g_port.device.ram_used = memory.ram_used;
  g_port.device.ram_size = memory.ram_size;
  g_port.device.stack_size = memory.stack_size;
}

int main(void) {
  bsp_init();
  init_port();
  fw_model_reset();
  fw_server_init(&g_server, &g_port, g_input, sizeof(g_input), g_output, sizeof(g_output));
  bsp_debug_log("fusegen firmware " FW_VERSION " ready");
  while (!fw_server_exit_requested(&g_server)) {
    const int byte = bsp_uart_getc(kFrameTimeoutMs);
    if (byte < 0) {
      fw_server_timeout(&g_server);
    } else {
      fw_server_feed(&g_server, (uint8_t)byte);
    }
  }
  bsp_debug_log("fusegen firmware: exit requested");
  return 0;
}
