/* Board support: the only code that touches hardware. One port is linked:
 *   bsp/<board>/     a QEMU board (board.cmake lists its files): UART, instruction counter,
 *                    memory (linker script); fusegen/bench/targets.py names them per target.
 *   bsp/generic/     any Cortex-M board: DWT cycle counter; the board supplies its UART
 *                    through bsp/generic/fw_board.h. */
#ifndef FIRMWARE_BSP_BSP_H_
#define FIRMWARE_BSP_BSP_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fill pattern of the unused stack, for bsp_stack_used(). */
enum { kFwStackPaint = 0x5AFE5AFEu };

typedef struct {
  const char* name;
  uint8_t counter_unit;        /* kFwCounterCycles or kFwCounterInstructions (fw_server.h) */
  uint16_t counter_resolution; /* counts per hardware tick */
  uint32_t cpu_hz;
} BspInfo;

/* Clocks, UART (115200 8N1 where the baud rate matters) and the counter. Call first. */
void bsp_init(void);

const BspInfo* bsp_info(void);

/* Blocking transmit of one byte. */
void bsp_uart_putc(uint8_t byte);

/* Returns the next received byte, or -1 if none arrived within timeout_ms. */
int bsp_uart_getc(uint32_t timeout_ms);

/* Zeroes the counter read by bsp_counter_read. */
void bsp_counter_reset(void);

/* Counts since bsp_counter_reset, in bsp_info()->counter_unit: executed instructions under
 * QEMU (SysTick ticks * 40, so a multiple of 40), core cycles with DWT. */
uint64_t bsp_counter_read(void);

typedef struct {
  uint32_t flash_used, flash_size; /* code and initialised data */
  uint32_t ram_used, ram_size;     /* data, bss and stack */
  uint32_t stack_size;
} BspMemory;

/* Memory use from the linker script's __fw_* symbols; fields are 0 when a symbol is missing. */
void bsp_memory(BspMemory* memory);

/* Deepest stack use since reset in bytes (startup paints the stack), or 0 if unknown. */
uint32_t bsp_stack_used(void);

/* A line of diagnostics outside the protocol (QEMU: semihosting stdout; boards: dropped). */
void bsp_debug_log(const char* message);

/* Stops the program: QEMU exits with code through semihosting; a board halts. */
void bsp_exit(int code) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* FIRMWARE_BSP_BSP_H_ */
