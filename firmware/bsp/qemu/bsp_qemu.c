/* The QEMU port for a board file (bsp/generic/fw_board.h: UART and clock, nothing else), with
 * the instruction counter every QEMU target shares. QEMU runs with -icount shift=0, so its
 * virtual clock advances exactly 1 ns per executed instruction:
 *
 *   Cortex-M: SysTick on the core clock (fw_board_cpu_hz() Hz) ticks every 1e9 / hz
 *     instructions. count = ticks * 1e9 / hz, exact when 1e9 / hz is an integer (25 MHz: 40;
 *     20 MHz: 50), otherwise to within one tick (32 MHz: 31.25, 16 MHz: 62.5, 168 MHz: 5.95);
 *     the resolution DESCRIBE reports is that tick rounded up. Writing SYST_CVR restarts the tick
 *     period, so a measurement does not depend on how long the firmware waited before it. The
 *     24-bit SysTick wraps into a 64-bit count through its interrupt.
 *   RISC-V: minstret, which QEMU derives from the same icount clock: instructions, resolution 1.
 *
 * Diagnostics and exit go through the board file (semihosting under QEMU). */
#include <stdint.h>

#include "bsp.h"
#include "fw_board.h"
#include "fw_server.h"

static BspInfo g_info;
static uint32_t g_ns_num; /* instructions per tick = g_ns_num / g_ns_den (Cortex-M) */
static uint32_t g_ns_den;

#if defined(__riscv)

static uint64_t g_instret_start;

static uint64_t instret(void) {
  uint32_t hi, lo, hi2;
  do {
    /* .option arch: CSR access (Zicsr) without a -march that picolibc's multilibs lack. */
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\t"
                     "csrr %0, minstreth\n\tcsrr %1, minstret\n\tcsrr %2, minstreth\n\t"
                     ".option pop"
                     : "=r"(hi), "=r"(lo), "=r"(hi2));
  } while (hi != hi2);
  return ((uint64_t)hi << 32) | lo;
}

static void counter_start(void) { g_instret_start = instret(); }
static uint64_t timer_ticks(void) { return instret(); } /* for byte timeouts: 1 ns each */
void bsp_counter_reset(void) { counter_start(); }
uint64_t bsp_counter_read(void) { return instret() - g_instret_start; }

#else /* Cortex-M */

#include "cortex_m.h"

static uint32_t gcd(uint32_t a, uint32_t b) {
  while (b != 0) {
    const uint32_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

#ifndef FW_SYSTICK_RELOAD
#define FW_SYSTICK_RELOAD 0x00FFFFFFu
#endif

static volatile uint32_t g_systick_wraps;

void SysTick_Handler(void) { ++g_systick_wraps; }

static uint64_t timer_ticks(void) {
  uint32_t wraps;
  uint32_t current;
  do {
    wraps = g_systick_wraps;
    current = FW_SYST_CVR;
  } while (wraps != g_systick_wraps);
  /* The counter runs 0 (just cleared) -> reload -> ... -> 1 -> 0 (wrap interrupt). */
  const uint32_t period = FW_SYSTICK_RELOAD + 1u;
  const uint32_t in_period = (period - current) % period;
  return (uint64_t)wraps * period + in_period;
}

static void counter_start(void) {
  FW_SYST_RVR = FW_SYSTICK_RELOAD;
  FW_SYST_CVR = 0;
  FW_SYST_CSR = kFwSystCsrEnable | kFwSystCsrTickInt | kFwSystCsrClkSourceCpu;
}

void bsp_counter_reset(void) {
  FW_SYST_CVR = 0;
  g_systick_wraps = 0;
}

uint64_t bsp_counter_read(void) { return timer_ticks() * g_ns_num / g_ns_den; }

void fw_unhandled_exception(uint32_t exception_number) {
  static const char kDigits[] = "0123456789";
  char text[] = "fusegen firmware: unhandled exception 000";
  const uint32_t n = sizeof(text) - 1;
  text[n - 3] = kDigits[(exception_number / 100) % 10];
  text[n - 2] = kDigits[(exception_number / 10) % 10];
  text[n - 1] = kDigits[exception_number % 10];
  fw_board_debug_log(text);
  fw_board_exit(128 + (int)(exception_number & 0x7Fu));
  for (;;) {
  }
}

#endif

void bsp_init(void) {
  fw_board_init();
  const uint32_t hz = fw_board_cpu_hz();
#if defined(__riscv)
  g_ns_num = 1;
  g_ns_den = 1;
#else
  const uint32_t g = gcd(1000000000u, hz);
  g_ns_num = 1000000000u / g;
  g_ns_den = hz / g;
#endif
  g_info.name = fw_board_name();
  g_info.counter_unit = kFwCounterInstructions;
  g_info.counter_resolution = (uint16_t)((g_ns_num + g_ns_den - 1u) / g_ns_den);
  g_info.cpu_hz = hz;
  counter_start();
}

const BspInfo* bsp_info(void) { return &g_info; }

void bsp_uart_putc(uint8_t byte) { fw_board_uart_putc(byte); }

int bsp_uart_getc(uint32_t timeout_ms) {
  /* Virtual milliseconds: 1e6 instructions each, in timer ticks. */
  const uint64_t limit = (uint64_t)timeout_ms * 1000000u * g_ns_den / g_ns_num;
  const uint64_t start = timer_ticks();
  for (;;) {
    const int byte = fw_board_uart_try_getc();
    if (byte >= 0) return byte;
    if (timer_ticks() - start >= limit) return -1;
  }
}

void bsp_debug_log(const char* message) {
  fw_board_debug_log(message);
  fw_board_debug_log("\n");
}

void bsp_exit(int code) {
  fw_board_exit(code);
  for (;;) {
  }
}
