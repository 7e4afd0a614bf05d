# QEMU mps2-an500 (Cortex-M7 with FPv5): the AN386 memory map, UART and 25 MHz clock, so the
# AN386 port serves.
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/mps2_an386/bsp_mps2_an386.c)
set(FW_BOARD_DEFINITIONS FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u FW_BOARD_NAME="mps2-an500")
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/mps2_an386/mps2_an386.ld)
