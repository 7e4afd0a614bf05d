/* Board file (bsp/generic/fw_board.h) for the Arm MPS2/MPS3 FPGA images (real or under QEMU)
 * whose UART0 is a CMSDK APB UART (ARM DDI 0479C, 4.3). It serves both ports: the QEMU port
 * (bsp/qemu/bsp_qemu.c, where each board.cmake sets the three macros below) and the generic port
 * (bsp/generic, the complete example of a board file for it: a real board replaces the register
 * accesses with its vendor's UART driver, the shape stays the same). The defaults are the MPS2
 * AN385/AN386/AN500 images:
 *   FW_UART_BASE  UART0 base address (secure alias on the TrustZone images)
 *   FW_CPU_HZ     SYSCLK, which clocks the core and so SysTick
 *   FW_BOARD_NAME the name DESCRIBE reports */
#include <stdint.h>

#include "fw_board.h"
#include "semihosting.h"

#ifndef FW_UART_BASE
#define FW_UART_BASE 0x40004000u
#endif
#ifndef FW_CPU_HZ
#define FW_CPU_HZ 25000000u /* SYSCLK_FRQ in QEMU's hw/arm/mps2.c */
#endif
#ifndef FW_BOARD_NAME
#define FW_BOARD_NAME "mps2-cmsdk"
#endif

#define UART_REG(offset) (*(volatile uint32_t*)(FW_UART_BASE + (offset)))
#define UART_DATA UART_REG(0x00u)
#define UART_STATE UART_REG(0x04u)
#define UART_CTRL UART_REG(0x08u)
#define UART_BAUDDIV UART_REG(0x10u)

enum {
  kTxFull = 1u << 0,
  kRxFull = 1u << 1,
  kTxEnable = 1u << 0,
  kRxEnable = 1u << 1,
};

void fw_board_init(void) {
  UART_BAUDDIV = 16u; /* QEMU ignores the rate but needs a divisor >= 16 */
  UART_CTRL = kTxEnable | kRxEnable;
}

uint32_t fw_board_cpu_hz(void) { return FW_CPU_HZ; }

void fw_board_uart_putc(uint8_t byte) {
  while (UART_STATE & kTxFull) {
  }
  UART_DATA = byte;
}

int fw_board_uart_try_getc(void) {
  if (!(UART_STATE & kRxFull)) return -1;
  return (int)(UART_DATA & 0xFFu);
}

const char* fw_board_name(void) { return FW_BOARD_NAME; }

void fw_board_debug_log(const char* s) { semihost_write0(s); }

void fw_board_exit(int code) {
  while (UART_STATE & kTxFull) {
  }
  semihost_exit(code);
}
