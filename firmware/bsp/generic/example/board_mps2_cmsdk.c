/* Example board file for the generic port: the CMSDK UART0 of an MPS2 board (and of QEMU's
 * mps2-an386, so the test suite can boot the generic port). A real board replaces the register
 * accesses with its vendor's UART driver; the shape stays the same. */
#include <stdint.h>

#include "fw_board.h"
#include "semihosting.h"

#define REG32(address) (*(volatile uint32_t*)(address))
#define UART0_DATA REG32(0x40004000u)
#define UART0_STATE REG32(0x40004004u)
#define UART0_CTRL REG32(0x40004008u)
#define UART0_BAUDDIV REG32(0x40004010u)

enum {
  kCpuHz = 25000000,
  kBaudRate = 115200,
  kTxFull = 1u << 0,
  kRxFull = 1u << 1,
  kTxEnable = 1u << 0,
  kRxEnable = 1u << 1,
};

void fw_board_init(void) {
  UART0_BAUDDIV = kCpuHz / kBaudRate;
  UART0_CTRL = kTxEnable | kRxEnable;
}

uint32_t fw_board_cpu_hz(void) { return kCpuHz; }

void fw_board_uart_putc(uint8_t byte) {
  while (UART0_STATE & kTxFull) {
  }
  UART0_DATA = byte;
}

int fw_board_uart_try_getc(void) {
  if (!(UART0_STATE & kRxFull)) return -1;
  return (int)(UART0_DATA & 0xFFu);
}

const char* fw_board_name(void) { return "generic-example-mps2"; }

/* Only because this example runs under QEMU: a real board keeps the default (halt). */
void fw_board_exit(int code) { semihost_exit(code); }
