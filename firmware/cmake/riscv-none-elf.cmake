# Toolchain file for bare-metal 32-bit RISC-V with Debian's gcc-riscv64-unknown-elf (a multilib
# compiler: -march/-mabi pick the rv32 libraries) and picolibc-riscv64-unknown-elf.
#
# FUSEGEN_CPU_FLAGS: -march=rv32imac -mabi=ilp32 (the default: ESP32-C3/C6 class, no FPU, float
# emulated) or -march=rv32imafc -mabi=ilp32f (single-precision FPU).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR riscv32)

set(CMAKE_C_COMPILER riscv64-unknown-elf-gcc)
set(CMAKE_CXX_COMPILER riscv64-unknown-elf-g++)
set(CMAKE_ASM_COMPILER riscv64-unknown-elf-gcc)
find_program(FUSEGEN_SIZE riscv64-unknown-elf-size REQUIRED)

set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(FUSEGEN_CPU_FLAGS "-march=rv32imac -mabi=ilp32" CACHE STRING
    "ISA and ABI flags for compiling and linking")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES FUSEGEN_CPU_FLAGS)
# picolibc's headers and libraries (its specs file), no crt0: bsp/riscv/startup.S is the entry.
set(CMAKE_C_FLAGS_INIT "${FUSEGEN_CPU_FLAGS} --specs=picolibc.specs -mcmodel=medany")
set(CMAKE_CXX_FLAGS_INIT "${FUSEGEN_CPU_FLAGS} --specs=picolibc.specs -mcmodel=medany")
set(CMAKE_ASM_FLAGS_INIT "${FUSEGEN_CPU_FLAGS} -mcmodel=medany")
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "${FUSEGEN_CPU_FLAGS} -nostartfiles -Wl,--gc-sections") # specs: from the C/C++ flags

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

# Debian's RISC-V compiler has no libstdc++, and the firmware's C++ needs none: link with the C
# driver so g++ does not add -lstdc++.
set(CMAKE_CXX_LINK_EXECUTABLE
    "${CMAKE_C_COMPILER} <FLAGS> <CMAKE_CXX_LINK_FLAGS> <LINK_FLAGS> <OBJECTS> -o <TARGET> <LINK_LIBRARIES>")
