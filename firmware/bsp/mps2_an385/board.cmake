# QEMU mps2-an385 (Cortex-M3, no FPU, no DSP): the AN386 memory map, UART and 25 MHz clock
# (QEMU's hw/arm/mps2.c builds both from one description), so the AN386 port serves.
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/mps2_an386/bsp_mps2_an386.c)
set(FW_BOARD_DEFINITIONS FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u FW_BOARD_NAME="mps2-an385")
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/mps2_an386/mps2_an386.ld)
