/* Port for QEMU's mps2-an386 (Cortex-M4F at a nominal 25 MHz), and for its siblings with the same
 * memory map, UART and clock: mps2-an385 (Cortex-M3) and mps2-an500 (Cortex-M7), whose
 * board.cmake set FW_BOARD_NAME.
 *
 * Timing: QEMU does not model DWT CYCCNT (it reads 0), so the counter is SysTick on the
 * processor clock. Under `-icount shift=0` QEMU's virtual clock advances 1 ns per executed
 * instruction and SysTick ticks every 1e9 / 25e6 = 40 ns, i.e. exactly once per 40 executed
 * instructions. bsp_counter_read() therefore returns instructions = ticks * 40: an instruction
 * count with a resolution of 40, not a cycle count. Writing SYST_CVR restarts the tick period
 * at that instruction, so a measurement started by bsp_counter_reset() does not depend on how
 * long the firmware waited for the host beforehand and repeats exactly. SysTick is 24 bits; its
 * interrupt counts wraps to extend it to 64 (the handler's few instructions per wrap are
 * counted too). */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"
#include "fw_server.h"
#include "semihosting.h"

#ifndef FW_SYSTICK_RELOAD
#define FW_SYSTICK_RELOAD 0x00FFFFFFu /* the largest: one wrap per 671M instructions */
#endif

enum {
  kCpuHz = 25000000,           /* SYSCLK_FRQ in QEMU's hw/arm/mps2.c */
  kInstructionsPerTick = 40,   /* 1e9 ns/s / kCpuHz at 1 ns per instruction */
  kTicksPerMs = kCpuHz / 1000, /* virtual milliseconds */
  kBaudRate = 115200,
};

/* CMSDK APB UART0 (ARM DDI 0479C, 4.3). */
#define UART0_DATA FW_REG32(0x40004000u)
#define UART0_STATE FW_REG32(0x40004004u)
#define UART0_CTRL FW_REG32(0x40004008u)
#define UART0_BAUDDIV FW_REG32(0x40004010u)
enum {
  kUartStateTxFull = 1u << 0,
  kUartStateRxFull = 1u << 1,
  kUartCtrlTxEnable = 1u << 0,
  kUartCtrlRxEnable = 1u << 1,
};

#ifndef FW_BOARD_NAME
#define FW_BOARD_NAME "mps2-an386"
#endif

static const BspInfo kInfo = {
    .name = FW_BOARD_NAME,
    .counter_unit = kFwCounterInstructions,
    .counter_resolution = kInstructionsPerTick,
    .cpu_hz = kCpuHz,
};

static volatile uint32_t g_systick_wraps;

void SysTick_Handler(void) { ++g_systick_wraps; }

/* SysTick ticks since the last reset of the counter. */
static uint64_t systick_ticks(void) {
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

void bsp_init(void) {
  UART0_BAUDDIV = kCpuHz / kBaudRate; /* QEMU ignores the rate but needs a divisor >= 16 */
  UART0_CTRL = kUartCtrlTxEnable | kUartCtrlRxEnable;
  FW_SYST_RVR = FW_SYSTICK_RELOAD;
  FW_SYST_CVR = 0;
  FW_SYST_CSR = kFwSystCsrEnable | kFwSystCsrTickInt | kFwSystCsrClkSourceCpu;
}

const BspInfo* bsp_info(void) { return &kInfo; }

void bsp_uart_putc(uint8_t byte) {
  while (UART0_STATE & kUartStateTxFull) {
  }
  UART0_DATA = byte;
}

int bsp_uart_getc(uint32_t timeout_ms) {
  const uint64_t start = systick_ticks();
  const uint64_t limit = (uint64_t)timeout_ms * kTicksPerMs;
  while (!(UART0_STATE & kUartStateRxFull)) {
    if (systick_ticks() - start >= limit) return -1;
  }
  return (int)(UART0_DATA & 0xFFu);
}

void bsp_counter_reset(void) {
  FW_SYST_CVR = 0;
  g_systick_wraps = 0;
}

uint64_t bsp_counter_read(void) { return systick_ticks() * kInstructionsPerTick; }

void bsp_debug_log(const char* message) {
  semihost_write0(message);
  semihost_write0("\n");
}

void bsp_exit(int code) {
  /* UART bytes are handed to QEMU's character backend when written, so none are lost. */
  while (UART0_STATE & kUartStateTxFull) {
  }
  semihost_exit(code);
}

void fw_unhandled_exception(uint32_t exception_number) {
  static const char kDigits[] = "0123456789";
  char text[] = "fusegen firmware: unhandled exception 000";
  const uint32_t n = sizeof(text) - 1;
  text[n - 3] = kDigits[(exception_number / 100) % 10];
  text[n - 2] = kDigits[(exception_number / 10) % 10];
  text[n - 1] = kDigits[exception_number % 10];
  bsp_debug_log(text);
  semihost_exit(128 + (int)(exception_number & 0x7Fu));
}
