# QEMU netduinoplus2: an STM32F405RG (Cortex-M4F, 168 MHz). A board directory needs this file, a
# board file implementing bsp/generic/fw_board.h and a linker script; FUSEGEN_BOARD=<directory>
# builds it. This one is the example to copy for an STM32 (see board_stm32f4.c).
#   FW_BOARD_SOURCES      startup (vector table, FPU, .data/.bss) + the QEMU port + the board file
#   FW_BOARD_DEFINITIONS  compile definitions for those sources
#   FW_BOARD_LINKER_SCRIPT  MEMORY for the chip, then INCLUDE fw_sections.ld
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/qemu/bsp_qemu.c
                     ${bsp_dir}/netduinoplus2/board_stm32f4.c)
set(FW_BOARD_DEFINITIONS FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u)
target_include_directories(fusegen_bsp PUBLIC ${bsp_dir}/generic)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/netduinoplus2/stm32f405.ld)
