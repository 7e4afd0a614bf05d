/* What every on-target test program shares (the .c files of tests/target, run on QEMU by
 * tests/test_cross_compile.py): the semihosting exit that carries the verdict out of QEMU, and a
 * seeded linear congruential generator (seed g_state before the first Random()). */
#ifndef FUSEGEN_TESTS_TARGET_FG_TARGET_H_
#define FUSEGEN_TESTS_TARGET_FG_TARGET_H_

#include <stdint.h>

void fg_target_main(void);

static void Exit(int code) {
  static uint32_t block[2];
  block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
  block[1] = (uint32_t)code;
  register uint32_t r0 __asm__("r0") = 0x20u; /* SYS_EXIT_EXTENDED */
  register uint32_t r1 __asm__("r1") = (uint32_t)block;
  __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  for (;;) {
  }
}

/* The initial stack pointer of the vector table: the top of the first 64 KiB of RAM (mps2-an386
 * by default; the build passes mps3-an547's for the Cortex-M55). */
#ifndef FG_TARGET_STACK_TOP
#define FG_TARGET_STACK_TOP 0x20010000u
#endif

/* A reset handler for programs that may run vector or FPU code before anything else: CP10/CP11
 * access on (SCB->CPACR; Helium's instructions need it on the Cortex-M55 as the FPU's do), then
 * fg_target_main. Naked: no compiled code runs before the enable. */
__attribute__((naked, noreturn, used)) static void FgTargetReset(void) {
  __asm__ volatile(
      "movw r0, #0xED88\n\t" /* SCB->CPACR, without a literal pool */
      "movt r0, #0xE000\n\t"
      "ldr r1, [r0]\n\t"
      "orr r1, r1, #(0xF << 20)\n\t"
      "str r1, [r0]\n\t"
      "dsb\n\t"
      "isb\n\t"
      "b fg_target_main\n\t");
}

static uint32_t g_state;
static uint32_t Random(void) {
  g_state = g_state * 1664525u + 1013904223u;
  return g_state;
}

#endif  /* FUSEGEN_TESTS_TARGET_FG_TARGET_H_ */
