/* The few Cortex-M system registers the firmware uses (ARMv7-M Architecture Reference Manual,
 * B3.2 System Control Space). Written out instead of pulling in CMSIS to stay self-contained. */
#ifndef FIRMWARE_BSP_CORTEX_M_CORTEX_M_H_
#define FIRMWARE_BSP_CORTEX_M_CORTEX_M_H_

#include <stdint.h>

#define FW_REG32(address) (*(volatile uint32_t*)(address))

/* Coprocessor Access Control: CP10 and CP11 full access enables the FPU. */
#define FW_SCB_CPACR FW_REG32(0xE000ED88u)

/* SysTick. */
#define FW_SYST_CSR FW_REG32(0xE000E010u)
#define FW_SYST_RVR FW_REG32(0xE000E014u)
#define FW_SYST_CVR FW_REG32(0xE000E018u)
enum {
  kFwSystCsrEnable = 1u << 0,
  kFwSystCsrTickInt = 1u << 1,
  kFwSystCsrClkSourceCpu = 1u << 2,
  kFwSystMaxReload = 0x00FFFFFFu,
};

/* Data Watchpoint and Trace cycle counter. */
#define FW_DEMCR FW_REG32(0xE000EDFCu)
#define FW_DWT_CTRL FW_REG32(0xE0001000u)
#define FW_DWT_CYCCNT FW_REG32(0xE0001004u)
#define FW_DWT_LAR FW_REG32(0xE0001FB0u)
enum {
  kFwDemcrTrcEna = 1u << 24,
  kFwDwtCtrlCycCntEna = 1u << 0,
  kFwDwtLarUnlock = 0xC5ACCE55u, /* needed on Cortex-M7, ignored on M4 */
};

static inline void fw_dsb_isb(void) { __asm__ volatile("dsb\n\tisb" ::: "memory"); }

/* Called for any exception without a handler (faults included) with the exception number.
 * The default halts; a port may override it, e.g. to report the fault and exit QEMU. */
void fw_unhandled_exception(uint32_t exception_number);

#endif /* FIRMWARE_BSP_CORTEX_M_CORTEX_M_H_ */
