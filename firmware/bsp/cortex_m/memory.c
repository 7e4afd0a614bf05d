/* bsp_memory() and bsp_stack_used() from linker-script symbols. The symbols are weak, so a
 * board linker script that lacks them links and reports 0 (an undefined weak symbol has
 * address 0). The sizes are absolute symbols whose address is the byte count, because a region
 * may legitimately start at address 0 (mps2-an386 code memory does). */
#include <stdint.h>

#include "bsp.h"

extern const uint8_t __fw_flash_used[] __attribute__((weak));
extern const uint8_t __fw_flash_size[] __attribute__((weak));
extern const uint8_t __fw_ram_used[] __attribute__((weak));
extern const uint8_t __fw_ram_size[] __attribute__((weak));
extern uint32_t __fw_stack_bottom[] __attribute__((weak));
extern uint32_t __fw_stack_top[] __attribute__((weak));

static uint32_t value(const void* symbol) { return (uint32_t)(uintptr_t)symbol; }

static uint32_t span(const void* begin, const void* end) {
  if (begin == 0 || end == 0 || (uintptr_t)end < (uintptr_t)begin) return 0;
  return (uint32_t)((uintptr_t)end - (uintptr_t)begin);
}

void bsp_memory(BspMemory* memory) {
  memory->flash_used = value(__fw_flash_used);
  memory->flash_size = value(__fw_flash_size);
  memory->ram_used = value(__fw_ram_used);
  memory->ram_size = value(__fw_ram_size);
  memory->stack_size = span(__fw_stack_bottom, __fw_stack_top);
}

uint32_t bsp_stack_used(void) {
  if (span(__fw_stack_bottom, __fw_stack_top) == 0) return 0;
  const volatile uint32_t* p = __fw_stack_bottom;
  while (p < __fw_stack_top && *p == kFwStackPaint) ++p;
  return span((const void*)p, __fw_stack_top);
}
