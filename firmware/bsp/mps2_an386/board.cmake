# QEMU mps2-an386 (Cortex-M4F): CMSDK UART0, SysTick instruction counter, 4 MiB + 4 MiB SSRAM.
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/mps2_an386/bsp_mps2_an386.c)
set(FW_BOARD_DEFINITIONS FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/mps2_an386/mps2_an386.ld)
