# QEMU mps3-an547 (Cortex-M55 with Helium MVE-I/MVE-F and FPv5, SSE-300). Boots Secure with its
# vectors at 0 (the 512 KiB ITCM); data in the 4 MiB SRAM at 0x21000000. There is no UART at
# 0x40004000: UART0 is a CMSDK UART at 0x49303000 (Non-secure alias) / 0x59303000 (Secure). SYSCLK
# is 32 MHz, so one SysTick tick is 31.25 instructions (hw/arm/mps2-tz.c).
set(FW_BOARD_SOURCES ${bsp_dir}/cortex_m/startup.c ${bsp_dir}/qemu/bsp_qemu.c
                     ${bsp_dir}/qemu/board_cmsdk_uart.c)
set(FW_BOARD_DEFINITIONS FW_UART_BASE=0x59303000u FW_CPU_HZ=32000000u
                         FW_BOARD_NAME="mps3-an547" FW_SYSTICK_RELOAD=${FUSEGEN_SYSTICK_RELOAD}u)
target_include_directories(fusegen_bsp PUBLIC ${bsp_dir}/generic)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/mps3_an547/mps3_an547.ld)
