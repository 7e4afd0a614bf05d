/* Generic Cortex-M4F port: cycle counts from the DWT cycle counter, UART from fw_board.h.
 *
 * CYCCNT is 32 bits, so one inference may take at most 2^32 cycles (26 s at 168 MHz). Byte
 * timeouts also use CYCCNT; each poll counts as at least one cycle, so a core whose counter
 * does not run (QEMU reads CYCCNT as 0) still times out, only later. */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"
#include "fw_board.h"
#include "fw_server.h"

static BspInfo g_info;

__attribute__((weak)) const char* fw_board_name(void) { return "generic-cortex-m4"; }

__attribute__((weak)) void fw_board_debug_log(const char* s) { (void)s; }

__attribute__((weak)) void fw_board_exit(int code) {
  (void)code;
  __asm__ volatile("cpsid i");
  for (;;) {
    __asm__ volatile("wfi");
  }
}

void bsp_init(void) {
  fw_board_init();
  FW_DEMCR |= kFwDemcrTrcEna;
  FW_DWT_LAR = kFwDwtLarUnlock;
  FW_DWT_CYCCNT = 0;
  FW_DWT_CTRL |= kFwDwtCtrlCycCntEna;
  g_info.name = fw_board_name();
  g_info.counter_unit = kFwCounterCycles;
  g_info.counter_resolution = 1;
  g_info.cpu_hz = fw_board_cpu_hz();
}

const BspInfo* bsp_info(void) { return &g_info; }

void bsp_uart_putc(uint8_t byte) { fw_board_uart_putc(byte); }

int bsp_uart_getc(uint32_t timeout_ms) {
  const uint64_t limit = (uint64_t)timeout_ms * (g_info.cpu_hz / 1000u);
  uint64_t elapsed = 0;
  uint32_t last = FW_DWT_CYCCNT;
  for (;;) {
    const int byte = fw_board_uart_try_getc();
    if (byte >= 0) return byte;
    const uint32_t now = FW_DWT_CYCCNT;
    const uint32_t delta = now - last; /* modulo 2^32, so wrap-around is harmless */
    elapsed += delta > 0 ? delta : 1;
    last = now;
    if (elapsed >= limit) return -1;
  }
}

void bsp_counter_reset(void) { FW_DWT_CYCCNT = 0; }

uint64_t bsp_counter_read(void) { return FW_DWT_CYCCNT; }

void bsp_debug_log(const char* message) { fw_board_debug_log(message); }

void bsp_exit(int code) {
  fw_board_exit(code);
  for (;;) {
  }
}
