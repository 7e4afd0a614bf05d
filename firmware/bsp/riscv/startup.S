/* Reset code for bare-metal RV32 (machine mode, one hart): stack and global pointer, .data copied
 * from its load address, .bss zeroed, the stack painted for bsp_stack_used(), traps to
 * fw_trap_c, then main() and bsp_exit(). The same linker symbols as bsp/cortex_m/startup.c
 * (bsp/common/fw_sections.ld). No constructors run: the firmware has none. */
  /* CSR instructions (Zicsr) without -march=..._zicsr, which would miss picolibc's multilib. */
  .option arch, +zicsr
  .section .vectors, "ax"
  .globl Reset_Handler
  .option norvc
Reset_Handler:
  .option push
  .option norelax
  la gp, __global_pointer$
  .option pop
  la sp, __fw_stack_top
  la t0, fw_trap_entry
  csrw mtvec, t0
  /* .data */
  la t0, __fw_data_load
  la t1, __fw_data_start
  la t2, __fw_data_end
1:
  bgeu t1, t2, 2f
  lw t3, 0(t0)
  sw t3, 0(t1)
  addi t0, t0, 4
  addi t1, t1, 4
  j 1b
2:
  /* .bss */
  la t1, __fw_bss_start
  la t2, __fw_bss_end
3:
  bgeu t1, t2, 4f
  sw zero, 0(t1)
  addi t1, t1, 4
  j 3b
4:
  /* paint the stack below a 128-byte margin under the top */
  la t1, __fw_stack_bottom
  addi t2, sp, -128
  li t3, 0x5AFE5AFE
5:
  bgeu t1, t2, 6f
  sw t3, 0(t1)
  addi t1, t1, 4
  j 5b
6:
  call main
  call bsp_exit
7:
  j 7b

  /* Any trap (the firmware enables no interrupts, so a fault): report mcause and exit. */
  .balign 4
fw_trap_entry:
  csrr a0, mcause
  la sp, __fw_stack_top
  call fw_trap_c
8:
  j 8b
