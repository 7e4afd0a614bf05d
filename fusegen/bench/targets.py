"""Every target `fusegen bench` and `fusegen compare` run on: one row per target, in one place.

A row says how to build the firmware (toolchain file, core flags, board directory under
firmware/bsp with its board.cmake, linker script and board file), how to run it (QEMU binary,
machine, extra options) and what it measures. Instruction counts come from QEMU's
`-icount shift=0` (1 ns of virtual time per executed instruction): SysTick on the core clock on
Cortex-M (count = ticks x 1e9 / hz, so the resolution is one tick), minstret on RISC-V (exact).

Adding a QEMU board: a directory firmware/bsp/<board>/ with board.cmake, a board file
implementing bsp/generic/fw_board.h and a linker script (bsp/netduinoplus2/ is the commented
example), then a row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusegen import paths

ARM_TOOLS = ("qemu-system-arm", "arm-none-eabi-gcc", "arm-none-eabi-g++", "cmake")
RISCV_TOOLS = ("qemu-system-riscv32", "riscv64-unknown-elf-gcc", "cmake")


@dataclass(frozen=True)
class Target:
    name: str  # what --target takes
    core: str
    qemu_binary: str
    machine: str  # QEMU -M
    cpu_flags: str  # FUSEGEN_CPU_FLAGS: core, ISA extensions, float ABI
    toolchain: str  # firmware/cmake/<file>
    bsp: str  # firmware/bsp/<bsp>/board.cmake
    linker_script: str  # relative to firmware/bsp (the board.cmake's)
    flash_bytes: int  # the linker script's regions (code, data)
    ram_bytes: int
    cpu_hz: int  # the clock SysTick counts (nominal on RISC-V)
    counter: str  # what the count is
    resolution: int  # the count's granularity, instructions
    has_fpu: bool  # single-precision hardware float; else float32 is emulated in software
    has_dsp: bool  # Armv7E-M DSP extension (SMLAD...): the runtime's DSP int8 loops
    has_mve: bool  # Helium (M-profile Vector Extension): the runtime's MVE int8 loops
    stack_bytes: int = 65536  # FUSEGEN_STACK_BYTES
    io_capacity: int = 16384  # default FUSEGEN_INPUT/OUTPUT_CAPACITY (core mode sizes to the model)
    cycle_table: str | None = None  # per-core cycle-estimate table, where one exists
    qemu_args: tuple[str, ...] = ()

    @property
    def tools(self) -> tuple[str, ...]:
        return RISCV_TOOLS if self.toolchain.startswith("riscv") else ARM_TOOLS

    @property
    def float_note(self) -> str:
        return "hardware FPU" if self.has_fpu else "float32 emulated in software (no FPU)"

    @property
    def kernels(self) -> str:
        return "Helium MVE" if self.has_mve else ("DSP (SMLAD)" if self.has_dsp else "portable C")

    def cmake_cache(self) -> dict[str, str]:
        return {"CMAKE_TOOLCHAIN_FILE": str(paths.FIRMWARE / "cmake" / self.toolchain),
                "FUSEGEN_CPU_FLAGS": self.cpu_flags,
                "FUSEGEN_STACK_BYTES": str(self.stack_bytes),
                "FUSEGEN_INPUT_CAPACITY": str(self.io_capacity),
                "FUSEGEN_OUTPUT_CAPACITY": str(self.io_capacity)}


_SYSTICK = "instructions: SysTick ticks x 1e9 / {hz} (QEMU -icount shift=0)"
_M4F = "-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16 -mfloat-abi=hard"

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("qemu-m0", "Cortex-M0 (ARMv6-M)", "qemu-system-arm", "microbit",
           "-mcpu=cortex-m0 -mthumb -mfloat-abi=soft", "arm-none-eabi.cmake", "microbit",
           "microbit/microbit.ld", 256 << 10, 16 << 10, 16_000_000,
           _SYSTICK.format(hz="16 MHz"), 63, has_fpu=False, has_dsp=False, has_mve=False,
           stack_bytes=3072, io_capacity=1024, cycle_table="cortex-m0"),
    Target("qemu-m3", "Cortex-M3 (ARMv7-M)", "qemu-system-arm", "mps2-an385",
           "-mcpu=cortex-m3 -mthumb -mfloat-abi=soft", "arm-none-eabi.cmake", "mps2_an385",
           "mps2_an386/mps2_an386.ld", 4 << 20, 4 << 20, 25_000_000,
           _SYSTICK.format(hz="25 MHz"), 40, has_fpu=False, has_dsp=False, has_mve=False,
           cycle_table="cortex-m3"),
    Target("qemu-m4", "Cortex-M4F (ARMv7E-M)", "qemu-system-arm", "mps2-an386", _M4F,
           "arm-none-eabi.cmake", "mps2_an386", "mps2_an386/mps2_an386.ld", 4 << 20, 4 << 20,
           25_000_000, _SYSTICK.format(hz="25 MHz"), 40, has_fpu=True, has_dsp=True,
           has_mve=False, cycle_table="cortex-m4"),
    Target("qemu-m7", "Cortex-M7 (ARMv7E-M)", "qemu-system-arm", "mps2-an500",
           "-mcpu=cortex-m7 -mthumb -mfpu=fpv5-d16 -mfloat-abi=hard", "arm-none-eabi.cmake",
           "mps2_an500", "mps2_an386/mps2_an386.ld", 4 << 20, 4 << 20, 25_000_000,
           _SYSTICK.format(hz="25 MHz"), 40, has_fpu=True, has_dsp=True, has_mve=False,
           cycle_table="cortex-m7"),
    Target("qemu-m33", "Cortex-M33 (ARMv8-M Mainline)", "qemu-system-arm", "mps2-an505",
           "-mcpu=cortex-m33 -mthumb -mfpu=fpv5-sp-d16 -mfloat-abi=hard", "arm-none-eabi.cmake",
           "mps2_an505", "mps2_an505/mps2_an505.ld", 4 << 20, 4 << 20, 20_000_000,
           _SYSTICK.format(hz="20 MHz"), 50, has_fpu=True, has_dsp=True, has_mve=False),
    Target("qemu-m55", "Cortex-M55 (ARMv8.1-M, Helium)", "qemu-system-arm", "mps3-an547",
           "-mcpu=cortex-m55 -mthumb -mfloat-abi=hard", "arm-none-eabi.cmake", "mps3_an547",
           "mps3_an547/mps3_an547.ld", 512 << 10, 4 << 20, 32_000_000,
           _SYSTICK.format(hz="32 MHz"), 32, has_fpu=True, has_dsp=True, has_mve=True),
    Target("qemu-stm32f405", "Cortex-M4F (STM32F405)", "qemu-system-arm", "netduinoplus2",
           _M4F, "arm-none-eabi.cmake", "netduinoplus2", "netduinoplus2/stm32f405.ld",
           1 << 20, 128 << 10, 168_000_000, _SYSTICK.format(hz="168 MHz"), 6, has_fpu=True,
           has_dsp=True, has_mve=False, stack_bytes=16384, cycle_table="cortex-m4"),
    Target("qemu-rv32", "RV32IMAC", "qemu-system-riscv32", "virt", "-march=rv32imac -mabi=ilp32",
           "riscv-none-elf.cmake", "riscv_virt", "riscv_virt/riscv_virt.ld", 4 << 20, 4 << 20,
           1_000_000_000, "instructions: minstret (QEMU -icount shift=0), exact", 1,
           has_fpu=False, has_dsp=False, has_mve=False, qemu_args=("-bios", "none")),
)}
DEFAULT_TARGET = "qemu-m4"


class UnknownTarget(ValueError):
    pass


def get(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UnknownTarget(f"unknown target {name!r}; choose from {', '.join(TARGETS)}") from None


def parse_list(text: str) -> list[Target]:
    """--target a,b,c -> the targets, in order, without duplicates."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UnknownTarget("--target: no target named")
    return [get(n) for n in dict.fromkeys(names)]


def markdown_table() -> str:
    """The README's table of targets."""
    rows = ["| target | core | QEMU machine | float | int8 kernels | counts |",
            "| --- | --- | --- | --- | --- | --- |"]
    for t in TARGETS.values():
        rows.append(f"| `{t.name}` | {t.core} | `{t.qemu_binary} -M {t.machine}` | "
                    f"{'hardware' if t.has_fpu else 'emulated'} | {t.kernels} | "
                    f"{t.counter}, resolution {t.resolution} |")
    return "\n".join(rows)
