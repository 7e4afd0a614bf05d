/* Board file for an STM32F4 (here the STM32F405RG of QEMU's netduinoplus2): copy it for your STM32.
 *
 * What a board file provides is declared in bsp/generic/fw_board.h: a UART the firmware polls,
 * the core clock, a name, and (optionally) a debug log and an exit. Everything else (protocol,
 * counter, stack painting, startup) is shared.
 *
 * Under QEMU (board.cmake, FUSEGEN_BOARD=netduinoplus2) the shared QEMU port bsp/qemu/bsp_qemu.c
 * counts instructions with SysTick. On a real STM32, build the generic port with this file
 * (FUSEGEN_BOARD=generic, FUSEGEN_BOARD_SOURCES=this file, FUSEGEN_LINKER_SCRIPT=stm32f405.ld,
 * -DFW_STM32_REAL_BOARD): bsp/generic/bsp_generic.c counts core cycles with the DWT and this file
 * sets up the clock tree and pins, which QEMU does not model.
 *
 * USART1 (the netduinoplus2's first serial port, QEMU -serial) at 0x40011000, APB2. Registers
 * (RM0090 30.6): SR (RXNE bit 5, TXE bit 7), DR, BRR, CR1 (UE bit 13, TE bit 3, RE bit 2). */
#include <stdint.h>

#include "fw_board.h"
#if !defined(FW_STM32_REAL_BOARD)
#include "semihosting.h"
#endif

#define REG32(address) (*(volatile uint32_t*)(address))

/* USART1 */
#define USART1_SR REG32(0x40011000u)
#define USART1_DR REG32(0x40011004u)
#define USART1_BRR REG32(0x40011008u)
#define USART1_CR1 REG32(0x4001100Cu)
enum {
  kSrRxne = 1u << 5, /* a received byte waits in DR */
  kSrTxe = 1u << 7,  /* DR can take the next byte */
  kCr1Ue = 1u << 13,
  kCr1Te = 1u << 3,
  kCr1Re = 1u << 2,
};

/* QEMU's STM32F405 runs SYSCLK at 168 MHz. A real board must configure its PLL to get there
 * (RCC, FLASH wait states); fill in fw_stm32_clock_init for yours (CubeMX's SystemClock_Config
 * does the same). Until then a reset STM32F4 runs on the 16 MHz HSI: set kCpuHz to match. */
enum {
  kCpuHz = 168000000,
  kApb2Hz = kCpuHz / 2, /* USART1's clock with the usual APB2 prescaler of 2 */
  kBaudRate = 115200,
};

#if defined(FW_STM32_REAL_BOARD)
/* RCC and GPIOA: clocks for USART1 and PA9 (TX) / PA10 (RX) as alternate function 7. */
#define RCC_AHB1ENR REG32(0x40023830u)
#define RCC_APB2ENR REG32(0x40023844u)
#define GPIOA_MODER REG32(0x40020000u)
#define GPIOA_AFRH REG32(0x40020024u)

static void fw_stm32_clock_init(void) {
  /* Your PLL setup goes here (see above). */
}

static void fw_stm32_pins_init(void) {
  RCC_AHB1ENR |= 1u << 0;  /* GPIOA */
  RCC_APB2ENR |= 1u << 4;  /* USART1 */
  GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18); /* PA9, PA10: alternate */
  GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);   /* AF7 = USART1 */
}
#endif

void fw_board_init(void) {
#if defined(FW_STM32_REAL_BOARD)
  fw_stm32_clock_init();
  fw_stm32_pins_init();
#endif
  USART1_BRR = (kApb2Hz + kBaudRate / 2) / kBaudRate; /* 16x oversampling */
  USART1_CR1 = kCr1Ue | kCr1Te | kCr1Re;              /* 8N1, polled: no interrupts */
}

uint32_t fw_board_cpu_hz(void) { return kCpuHz; }

void fw_board_uart_putc(uint8_t byte) {
  while (!(USART1_SR & kSrTxe)) {
  }
  USART1_DR = byte;
}

int fw_board_uart_try_getc(void) {
  if (!(USART1_SR & kSrRxne)) return -1;
  return (int)(USART1_DR & 0xFFu); /* reading DR clears RXNE */
}

const char* fw_board_name(void) { return "netduinoplus2-stm32f405"; }

#if !defined(FW_STM32_REAL_BOARD)
/* Semihosting only under QEMU: on a board without a debugger BKPT faults. The generic port's
 * weak defaults (drop the log, halt) serve a real board. */
void fw_board_debug_log(const char* s) { semihost_write0(s); }

void fw_board_exit(int code) { semihost_exit(code); }
#endif
