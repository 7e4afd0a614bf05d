/* Board file (bsp/generic/fw_board.h) for QEMU's RISC-V virt machine with a 32-bit hart: the
 * NS16550A UART at 0x10000000, the SiFive test device at 0x100000 (writing it ends QEMU with a
 * status), RAM at 0x80000000 where QEMU -bios none jumps at reset. The instruction counter is
 * minstret (bsp/qemu/bsp_qemu.c), which is core-generic. */
#include <stdint.h>

#include "fw_board.h"

#define REG8(address) (*(volatile uint8_t*)(address))
#define UART_RBR REG8(0x10000000u) /* receive buffer (read) / transmit holding (write) */
#define UART_THR REG8(0x10000000u)
#define UART_LCR REG8(0x10000003u)
#define UART_LSR REG8(0x10000005u)
#define TEST_FINISHER (*(volatile uint32_t*)0x00100000u)

enum {
  kCpuHz = 1000000000, /* nominal: under -icount shift=0 one instruction is 1 ns */
  kLsrDataReady = 1u << 0,
  kLsrThrEmpty = 1u << 5,
  kFinisherPass = 0x5555,
  kFinisherFail = 0x3333, /* | code << 16 */
};

void fw_board_init(void) {
  UART_LCR = 0x03; /* 8N1. The FIFO stays off: enabling it flushes bytes that already arrived */
}

uint32_t fw_board_cpu_hz(void) { return kCpuHz; }

void fw_board_uart_putc(uint8_t byte) {
  while (!(UART_LSR & kLsrThrEmpty)) {
  }
  UART_THR = byte;
}

int fw_board_uart_try_getc(void) {
  if (!(UART_LSR & kLsrDataReady)) return -1;
  return (int)UART_RBR;
}

const char* fw_board_name(void) { return "riscv-virt-rv32"; }

/* RISC-V semihosting (SYS_WRITE0): the magic slli/ebreak/srai sequence, uncompressed and on one
 * page, which QEMU -semihosting-config enable=on recognises. */
__attribute__((noinline, aligned(16))) static void semihost_write0(const char* text) {
  register uintptr_t a0 __asm__("a0") = 0x04; /* SYS_WRITE0 */
  register const char* a1 __asm__("a1") = text;
  __asm__ volatile(
      ".option push\n\t.option norvc\n\t"
      "slli x0, x0, 0x1f\n\tebreak\n\tsrai x0, x0, 7\n\t"
      ".option pop"
      : "+r"(a0)
      : "r"(a1)
      : "memory");
}

void fw_board_debug_log(const char* s) { semihost_write0(s); }

void fw_board_exit(int code) {
  TEST_FINISHER = code == 0 ? kFinisherPass : (((uint32_t)code & 0xFFFFu) << 16) | kFinisherFail;
  for (;;) {
  }
}

void fw_trap_c(uint32_t mcause);
void fw_trap_c(uint32_t mcause) {
  static const char kDigits[] = "0123456789";
  char text[] = "fusegen firmware: trap, mcause 00";
  const uint32_t n = sizeof(text) - 1;
  const uint32_t cause = mcause & 0x7Fu;
  text[n - 2] = kDigits[(cause / 10) % 10];
  text[n - 1] = kDigits[cause % 10];
  fw_board_debug_log(text);
  fw_board_debug_log("\n");
  fw_board_exit(128 + (int)cause);
}
