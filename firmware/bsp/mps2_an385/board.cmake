# QEMU mps2-an385 (Cortex-M3, no FPU, no DSP): the AN386 memory map, UART and 25 MHz clock
# (QEMU's hw/arm/mps2.c builds both from one description), so the AN386 files serve.
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/qemu/bsp_qemu.c
                     ${bsp_dir}/qemu/board_cmsdk_uart.c)
set(FW_BOARD_DEFINITIONS FW_UART_BASE=0x40004000u FW_CPU_HZ=25000000u
                         FW_BOARD_NAME="mps2-an385" FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u)
target_include_directories(fusegen_bsp PUBLIC ${bsp_dir}/generic)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/mps2_an386/mps2_an386.ld)
