/* Board file (bsp/generic/fw_board.h) for QEMU's microbit: a Nordic nRF51822 (Cortex-M0, ARMv6-M,
 * no FPU, 16 MHz, 256 KiB flash, 16 KiB RAM). The UART is Nordic's own (nRF51 Reference Manual,
 * chapter 29), not a 16550: tasks start it, events say when a byte arrived or left. */
#include <stdint.h>

#include "fw_board.h"
#include "semihosting.h"

#define UART_REG(offset) (*(volatile uint32_t*)(0x40002000u + (offset)))
#define UART_STARTRX UART_REG(0x000u)
#define UART_STARTTX UART_REG(0x008u)
#define UART_EVENTS_RXDRDY UART_REG(0x108u)
#define UART_EVENTS_TXDRDY UART_REG(0x11Cu)
#define UART_ENABLE UART_REG(0x500u)
#define UART_RXD UART_REG(0x518u)
#define UART_TXD UART_REG(0x51Cu)
#define UART_BAUDRATE UART_REG(0x524u)

enum {
  kCpuHz = 16000000,           /* HCLK; SysTick counts it */
  kUartEnable = 4,             /* ENABLE value that switches the UART on */
  kBaud115200 = 0x01D7E000,    /* BAUDRATE register value for 115200 */
};

void fw_board_init(void) {
  UART_ENABLE = kUartEnable;
  UART_BAUDRATE = kBaud115200;
  UART_EVENTS_RXDRDY = 0;
  UART_EVENTS_TXDRDY = 0;
  UART_STARTTX = 1;
  UART_STARTRX = 1;
}

uint32_t fw_board_cpu_hz(void) { return kCpuHz; }

void fw_board_uart_putc(uint8_t byte) {
  UART_EVENTS_TXDRDY = 0;
  UART_TXD = byte;
  while (!UART_EVENTS_TXDRDY) {
  }
}

int fw_board_uart_try_getc(void) {
  if (!UART_EVENTS_RXDRDY) return -1;
  /* Clear the event before reading RXD: reading it raises the event again if more bytes wait. */
  UART_EVENTS_RXDRDY = 0;
  return (int)(UART_RXD & 0xFFu);
}

const char* fw_board_name(void) { return "microbit"; }

void fw_board_debug_log(const char* s) { semihost_write0(s); }

void fw_board_exit(int code) { semihost_exit(code); }
