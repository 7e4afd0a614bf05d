/* What a real Cortex-M4F board supplies to the generic port (bsp_generic.c). Implement the
 * required functions in one C file and pass it as FUSEGEN_BOARD_SOURCES; see
 * ../qemu/board_cmsdk_uart.c and firmware/README.md. */
#ifndef FIRMWARE_BSP_GENERIC_FW_BOARD_H_
#define FIRMWARE_BSP_GENERIC_FW_BOARD_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Required. */

/* Clocks, pins and the UART: 8N1 at the rate the host opens (fusegen bench --baud, 115200 by
 * default). Interrupts stay off; the firmware polls. */
void fw_board_init(void);

/* Core clock in Hz: converts byte timeouts into cycles and is reported by DESCRIBE. */
uint32_t fw_board_cpu_hz(void);

/* Transmits one byte, waiting while the transmitter is busy. */
void fw_board_uart_putc(uint8_t byte);

/* Returns a received byte, or -1 at once if none is waiting. Must not block. */
int fw_board_uart_try_getc(void);

/* Optional: bsp_generic.c has weak defaults. */

const char* fw_board_name(void);         /* default "generic-cortex-m4" */
void fw_board_debug_log(const char* s);  /* default: dropped */
void fw_board_exit(int code);            /* default: disable interrupts and wait forever */

#ifdef __cplusplus
}
#endif

#endif /* FIRMWARE_BSP_GENERIC_FW_BOARD_H_ */
