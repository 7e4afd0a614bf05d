"""The runtime builds for the firmware's Cortex-M4 with strict warnings, and stays portable.

Each .c file under tflm_kernels/runtime/ is compiled with arm-none-eabi-gcc for a Cortex-M4 with
its single-precision FPU, then its object file is inspected: what it needs from the C library is
an explicit allowlist, and it has no writable globals.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cbuild import REPO, RUNTIME_SOURCES, run_checked

ARM_GCC = shutil.which("arm-none-eabi-gcc")
CORTEX_M4 = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard")
# The host CMake build's C warnings (CMakeLists.txt); -Os as a size-constrained firmware would.
FLAGS = (
    "-std=c99",
    "-Os",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wpedantic",
    "-Wshadow",
    "-Wdouble-promotion",
    "-Wfloat-conversion",
    "-Wconversion",
    "-Wvla",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
)
# Everything the runtime may take from libc/libm. No allocator, no stdio, no double-precision
# libm; a new entry here is a deliberate decision about what a TFLM target must provide.
# logf, powf, sqrtf: the cell ops log, pow and sqrt/rsqrt in float32 (C99 single-precision libm,
# in newlib and picolibc alike; int8 cells reach them only through convert-time tables).
ALLOWED_UNDEFINED = frozenset({"expf", "tanhf", "logf", "powf", "sqrtf", "memmove", "memcpy",
                               "memset"})

pytestmark = pytest.mark.skipif(ARM_GCC is None, reason="arm-none-eabi-gcc is not on PATH")


def compile_for_m4(source: Path, out_dir: Path) -> Path:
    assert ARM_GCC is not None
    obj = out_dir / f"{source.stem}.o"
    run_checked(
        [ARM_GCC, *CORTEX_M4, *FLAGS, f"-I{REPO / 'fusegen'}", "-c", source, "-o", obj],
        f"arm-none-eabi-gcc {source.name}",
    )
    return obj


def arm_tool(name: str) -> str:
    """The binutils program `name` (nm, size) of the toolchain ARM_GCC belongs to."""
    assert ARM_GCC is not None
    return ARM_GCC.removesuffix("gcc") + name


def undefined_symbols(obj: Path) -> set[str]:
    out = run_checked([arm_tool("nm"), "-u", obj], f"nm {obj.name}")
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def section_sizes(obj: Path) -> dict[str, int]:
    out = run_checked([arm_tool("size"), "-A", obj], f"size {obj.name}")
    sizes = {}
    for line in out.splitlines():
        if m := re.match(r"^(\.\S+)\s+(\d+)\s", line):
            sizes[m.group(1)] = int(m.group(2))
    return sizes


@pytest.mark.parametrize("level", ["-O0", "-Og", "-O1", "-O2", "-O3"])
def test_runtime_cross_compiles_at_every_optimisation_level(level: str, tmp_path: Path) -> None:
    """A debug (-O0) or speed (-O3) firmware build compiles the runtime too, with its warnings:
    the DSP assembly that needs 13 registers is left out at -O0, where GCC cannot allocate it
    (the portable code runs there, with the same results)."""
    assert ARM_GCC is not None
    flags = [f for f in FLAGS if f != "-Os"]
    for source in RUNTIME_SOURCES:
        run_checked([ARM_GCC, *CORTEX_M4, *flags, level, f"-I{REPO / 'fusegen'}", "-c", source,
                     "-o", tmp_path / f"{source.stem}.o"], f"arm-none-eabi-gcc {level} {source.name}")


@pytest.mark.parametrize("source", RUNTIME_SOURCES, ids=lambda p: p.name)
def test_runtime_cross_compiles_for_cortex_m4(source: Path, tmp_path: Path) -> None:
    obj = compile_for_m4(source, tmp_path)
    # On this FPU any double arithmetic becomes an __aeabi_d* / __aeabi_f2d call, so the allowlist
    # also proves the float code never silently promotes to double.
    assert undefined_symbols(obj) <= ALLOWED_UNDEFINED, (
        f"{source.name} needs {sorted(undefined_symbols(obj) - ALLOWED_UNDEFINED)} "
        "beyond the allowed libc/libm symbols"
    )
    sizes = section_sizes(obj)
    # No mutable state: the same code may serve several interpreters at once.
    assert sizes.get(".data", 0) == 0 and sizes.get(".bss", 0) == 0, sizes


@pytest.mark.parametrize("cell", ["lstm", "gru_reset_before", "minimal_gated", "exotic"])
def test_generated_core_cross_compiles_for_cortex_m4(cell: str, tmp_path: Path) -> None:
    """A generated core: same warnings, only runtime symbols, no mutable globals."""
    from cells_catalog import CELLS

    from fusegen.codegen import kernel_files
    from fusegen.lower import lower_cell

    lowered = lower_cell(CELLS[cell])
    stem = lowered.op_name.lower()
    for name, text in kernel_files(lowered.graph, lowered.op_name).items():
        (tmp_path / name).write_text(text)
    obj = compile_for_m4(tmp_path / f"{stem}_core.c", tmp_path)
    runtime_calls = {s for s in undefined_symbols(obj) if s.startswith("fg_")}
    assert runtime_calls and undefined_symbols(obj) - runtime_calls <= ALLOWED_UNDEFINED
    sizes = section_sizes(obj)
    assert sizes.get(".data", 0) == 0 and sizes.get(".bss", 0) == 0, sizes


QEMU_SYSTEM_ARM = shutil.which("qemu-system-arm")


# The cores the int8 on-target checks run on: (cpu flags, linker script, extra flags, machine).
# The Cortex-M4 runs fg_matmul_s8's DSP (SMLAD) assembly, the Cortex-M55 its Helium (MVE) dots;
# both run the scalar DSP forms (SSAT/QADD, the lookup's SMLAD).
INT8_CORES = {
    "m4": (CORTEX_M4, "m4.ld", (), "mps2-an386"),
    "m55": (("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"), "m55.ld",
            ("-DFG_TARGET_STACK_TOP=0x21010000u",), "mps3-an547"),
}


@pytest.mark.skipif(QEMU_SYSTEM_ARM is None, reason="qemu-system-arm is not on PATH")
@pytest.mark.parametrize("core", sorted(INT8_CORES))
def test_int8_forms_equal_their_reference_on_the_core(core: str, tmp_path: Path) -> None:
    """fg_elementwise.h's DSP forms (the lookup's SMLAD on an unaligned knot pair, the
    right-shift and power-of-two rescales with SSAT/QADD) and fg_matmul_s8's DSP or Helium
    bodies, which the host tests never compile, run on the emulated Cortex-M4 and Cortex-M55:
    every int16 input of 12 tables and random operands with the extremes, for every shift, the
    matmul over depths 1..40 (tests/target/fg_elementwise_on_m4.c; exit code 0 = all equal)."""
    cpu, script, extra, machine = INT8_CORES[core]
    target = REPO / "tests" / "target"
    elf = tmp_path / f"fg_elementwise_on_{core}.elf"
    run_checked([ARM_GCC, *cpu, *FLAGS, *extra, "-O2", "-ffreestanding", "-nostdlib",
                 f"-I{REPO / 'fusegen'}", "-T", target / script,
                 target / "fg_elementwise_on_m4.c",
                 REPO / "fusegen" / "tflm_kernels" / "runtime" / "fg_runtime_q.c",
                 "-o", elf, "-lc", "-lgcc"], "arm-none-eabi-gcc fg_elementwise_on_m4.c")
    done = subprocess.run([QEMU_SYSTEM_ARM, "-M", machine, "-nographic", "-semihosting",
                           "-icount", "shift=0", "-kernel", str(elf)],
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, f"an int8 form differs from its reference on the {core}"


@pytest.mark.skipif(QEMU_SYSTEM_ARM is None, reason="qemu-system-arm is not on PATH")
@pytest.mark.parametrize("variant", [("-O2",), ("-Os",), ("-O2", "-DFG_F32_VMLA=1")],
                         ids=["O2", "Os", "O2-vmla"])
def test_f32_matmul_equals_the_plain_loop_on_the_cortex_m4(variant: tuple[str, ...],
                                                           tmp_path: Path) -> None:
    """fg_runtime_f32.c's assembly blocks (whole rows of 4 outputs, 4 rows x 2 outputs, both
    VMUL + VADD and VMLA), which the host tests never compile, run on the emulated Cortex-M4 for
    rows 1..9, depths 1..40, cols 1..13, with and without bias and prior, a negative x stride and
    a prior that is the output: every output equal to the plain triple loop's, bit for bit
    (tests/target/fg_matmul_f32_on_m4.c; exit code 0 = all equal)."""
    target = REPO / "tests" / "target"
    elf = tmp_path / "fg_matmul_f32_on_m4.elf"
    run_checked([ARM_GCC, *CORTEX_M4, *FLAGS, *variant, "-ffreestanding", "-nostdlib",
                 f"-I{REPO / 'fusegen'}", "-T", target / "m4.ld",
                 target / "fg_matmul_f32_on_m4.c",
                 REPO / "fusegen" / "tflm_kernels" / "runtime" / "fg_runtime_f32.c",
                 "-o", elf, "-lm", "-lc", "-lgcc"], "arm-none-eabi-gcc fg_matmul_f32_on_m4.c")
    done = subprocess.run([QEMU_SYSTEM_ARM, "-M", "mps2-an386", "-nographic", "-semihosting",
                           "-icount", "shift=0", "-kernel", str(elf)],
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, "an f32 matmul output differs from the plain loop on the Cortex-M4"
