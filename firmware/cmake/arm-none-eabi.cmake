# Toolchain file for bare-metal Cortex-M with Debian's gcc-arm-none-eabi and newlib.
#
# FUSEGEN_CPU_FLAGS selects the core and its float ABI (a cache variable, so -D sets it):
#   Cortex-M0   -mcpu=cortex-m0 -mthumb -mfloat-abi=soft
#   Cortex-M4F  -mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard   (the default)
#   Cortex-M55  -mcpu=cortex-m55 -mthumb -mfloat-abi=hard                     (MVE-F, FPv5)
# fusegen/bench/targets.py holds the flags of every target fusegen runs.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
find_program(FUSEGEN_SIZE arm-none-eabi-size REQUIRED)

# Compiler checks cannot link a bare-metal executable without our startup and linker script.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(FUSEGEN_CPU_FLAGS "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard" CACHE STRING
    "Core, instruction set and float ABI flags for compiling and linking")
# The compiler checks (try_compile) see the same flags.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES FUSEGEN_CPU_FLAGS)
set(CMAKE_C_FLAGS_INIT "${FUSEGEN_CPU_FLAGS}")
set(CMAKE_CXX_FLAGS_INIT "${FUSEGEN_CPU_FLAGS}")
set(CMAKE_ASM_FLAGS_INIT "${FUSEGEN_CPU_FLAGS}")
# No crt0 (startup.c is the entry), newlib-nano, and unused sections dropped.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "${FUSEGEN_CPU_FLAGS} -nostartfiles --specs=nano.specs -Wl,--gc-sections")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
