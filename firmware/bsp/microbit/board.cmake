# QEMU microbit (Cortex-M0, nRF51822): Nordic UART, SysTick instruction counter (16 MHz: 62.5
# instructions per tick), 256 KiB flash, 16 KiB RAM.
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/qemu/bsp_qemu.c
                     ${bsp_dir}/microbit/board_microbit.c)
set(FW_BOARD_DEFINITIONS FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u)
target_include_directories(fusegen_bsp PUBLIC ${bsp_dir}/generic)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/microbit/microbit.ld)
