# QEMU mps2-an505 (Cortex-M33 with FPU and DSP, IoT Kit). The core boots Secure with its vector
# table at 0x10000000 (INITSVTOR), the Secure alias of the 4 MiB SSRAM at 0; data goes to the
# Secure alias of SSRAM 1 and 2 (0x38000000, 4 MiB). UART0 is a CMSDK UART at 0x40200000
# (Non-secure alias), 0x50200000 (Secure); SYSCLK is 20 MHz (hw/arm/mps2-tz.c).
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/qemu/bsp_qemu.c
                     ${bsp_dir}/qemu/board_cmsdk_uart.c)
set(FW_BOARD_DEFINITIONS FW_UART_BASE=0x50200000u FW_CPU_HZ=20000000u
                         FW_BOARD_NAME="mps2-an505" FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u)
target_include_directories(fusegen_bsp PUBLIC ${bsp_dir}/generic)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/mps2_an505/mps2_an505.ld)
