/* ARM semihosting calls (ARM "Semihosting for AArch32 and AArch64", version 2): used under QEMU
 * -semihosting to print diagnostics and to exit with a status. On a board without a debugger
 * attached the BKPT instruction faults, so board ports must not call these. */
#ifndef FIRMWARE_BSP_SEMIHOSTING_H_
#define FIRMWARE_BSP_SEMIHOSTING_H_

#include <stdint.h>

enum {
  kSemihostWrite0 = 0x04,
  kSemihostExit = 0x18,
  kSemihostExitExtended = 0x20,
  kSemihostApplicationExit = 0x20026, /* ADP_Stopped_ApplicationExit */
};

static inline uint32_t semihost_call(uint32_t op, const void* arg) {
  register uint32_t r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static inline void semihost_write0(const char* text) { semihost_call(kSemihostWrite0, text); }

/* Exits the emulator with the given status. */
__attribute__((noreturn)) static inline void semihost_exit(int code) {
  const uint32_t block[2] = {kSemihostApplicationExit, (uint32_t)code};
  semihost_call(kSemihostExitExtended, block);
  /* An older host without SYS_EXIT_EXTENDED: exit without a status. */
  semihost_call(kSemihostExit, (const void*)(uintptr_t)kSemihostApplicationExit);
  for (;;) {
  }
}

#endif /* FIRMWARE_BSP_SEMIHOSTING_H_ */
