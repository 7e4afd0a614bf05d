/* Reset handler and vector table for any Cortex-M (ARMv6-M to ARMv8.1-M), used by every Cortex-M
 * port (the generic port can opt
 * out with FUSEGEN_GENERIC_STARTUP=OFF and use its vendor's startup instead).
 *
 * The linker script must define __fw_stack_top, __fw_stack_bottom, __fw_data_load,
 * __fw_data_start, __fw_data_end, __fw_bss_start and __fw_bss_end, and KEEP the .vectors
 * section at the start of code memory (bsp/mps2_an386/mps2_an386.ld shows how).
 *
 * Global constructors are never run: the firmware has none, and the linker script and the ELF
 * check in cmake/check_elf.cmake make sure of it. */
#include <stdint.h>

#include "bsp.h"
#include "cortex_m.h"

#ifndef FW_NUM_IRQS
#define FW_NUM_IRQS 32 /* what QEMU gives mps2-an386; never enabled, so fewer is harmless */
#endif

extern uint32_t __fw_stack_top[];
extern uint32_t __fw_stack_bottom[];
extern uint32_t __fw_data_load[];
extern uint32_t __fw_data_start[];
extern uint32_t __fw_data_end[];
extern uint32_t __fw_bss_start[];
extern uint32_t __fw_bss_end[];

int main(void);
void Reset_Handler(void);
void fw_reset_c(void);

__attribute__((weak)) void fw_unhandled_exception(uint32_t exception_number) {
  (void)exception_number;
  for (;;) {
  }
}

static void default_handler(void) {
  uint32_t ipsr;
  __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
  fw_unhandled_exception(ipsr & 0x1FFu);
}

#define FW_WEAK_HANDLER(name) void name(void) __attribute__((weak, alias("default_handler")))
FW_WEAK_HANDLER(NMI_Handler);
FW_WEAK_HANDLER(HardFault_Handler);
FW_WEAK_HANDLER(MemManage_Handler);
FW_WEAK_HANDLER(BusFault_Handler);
FW_WEAK_HANDLER(UsageFault_Handler);
FW_WEAK_HANDLER(SVC_Handler);
FW_WEAK_HANDLER(DebugMon_Handler);
FW_WEAK_HANDLER(PendSV_Handler);
FW_WEAK_HANDLER(SysTick_Handler);

typedef void (*FwVector)(void);

__attribute__((section(".vectors"), used)) const FwVector kFwVectorTable[16 + FW_NUM_IRQS] = {
    [0] = (FwVector)__fw_stack_top,
    [1] = Reset_Handler,
    [2] = NMI_Handler,
    [3] = HardFault_Handler,
    [4] = MemManage_Handler,
    [5] = BusFault_Handler,
    [6] = UsageFault_Handler,
    [11] = SVC_Handler,
    [12] = DebugMon_Handler,
    [14] = PendSV_Handler,
    [15] = SysTick_Handler,
    /* Interrupts are never enabled; any that fires anyway lands in the default handler. */
    [16 ... 16 + FW_NUM_IRQS - 1] = default_handler,
};

#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
/* A core with an FPU (or Helium, which uses the same coprocessors). Naked so no
 * compiler-generated code runs before the FPU is on: with -mfloat-abi=hard any C function may use
 * the FPU registers, and doing so with CP10/CP11 disabled is a UsageFault. */
__attribute__((naked, noreturn)) void Reset_Handler(void) {
  __asm__ volatile(
      "ldr r0, =0xE000ED88\n\t" /* SCB->CPACR */
      "ldr r1, [r0]\n\t"
      "orr r1, r1, #(0xF << 20)\n\t" /* CP10, CP11 full access */
      "str r1, [r0]\n\t"
      "dsb\n\t"
      "isb\n\t"
      "b fw_reset_c\n\t");
}
#else
/* No FPU (Cortex-M0/M0+/M3, soft float): nothing to enable, and the ARMv6-M cores could not run
 * the Thumb-2 ORR above anyway. The core has loaded the stack pointer from the vector table. */
__attribute__((noreturn)) void Reset_Handler(void) { fw_reset_c(); }
#endif

static void paint_stack(void) {
  /* Everything below the current frame, with a margin for this function's own use. */
  uint32_t* limit = (uint32_t*)__builtin_frame_address(0) - 32;
  for (volatile uint32_t* p = __fw_stack_bottom; p < limit; ++p) *p = kFwStackPaint;
}

__attribute__((noreturn)) void fw_reset_c(void) {
  /* volatile keeps these loops from becoming memcpy/memset calls, which could in principle
   * touch .bss state before it exists. */
  volatile uint32_t* dst = __fw_data_start;
  for (const uint32_t* src = __fw_data_load; dst < __fw_data_end;) *dst++ = *src++;
  for (dst = __fw_bss_start; dst < __fw_bss_end;) *dst++ = 0;
  paint_stack();
  bsp_exit(main());
}
