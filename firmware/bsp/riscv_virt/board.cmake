# QEMU virt with an rv32 hart (toolchain cmake/riscv-none-elf.cmake): NS16550A UART, minstret
# instruction counter (resolution 1), SiFive test device to exit.
set(FW_BOARD_SOURCES ${bsp_dir}/riscv/startup.S ${bsp_dir}/qemu/bsp_qemu.c
                     ${bsp_dir}/riscv_virt/board_riscv_virt.c)
target_include_directories(fusegen_bsp PUBLIC ${bsp_dir}/generic)
set(FW_BOARD_LINKER_SCRIPT ${bsp_dir}/riscv_virt/riscv_virt.ld)
