# QEMU mps2-an386 (Cortex-M4F): CMSDK UART0 at 0x40004000, 25 MHz SYSCLK (40 instructions per
# SysTick tick), 4 MiB + 4 MiB SSRAM.
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/qemu/bsp_qemu.c
                     ${bsp_dir}/qemu/board_cmsdk_uart.c)
set(FW_BOARD_DEFINITIONS FW_UART_BASE=0x40004000u FW_CPU_HZ=25000000u
                         FW_BOARD_NAME="mps2-an386" FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u)
target_include_directories(fusegen_bsp PUBLIC ${bsp_dir}/generic)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/mps2_an386/mps2_an386.ld)
