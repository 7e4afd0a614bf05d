"""Firmware build rules: flags, no heap, no constructors, the model plug-in variables, and the
generic (DWT) port."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fusegen.bench.link import protocol as P
from fusegen.bench.firmware.build import (
    FIRMWARE_DIR,
    FirmwareBuildError,
    FirmwareConfig,
    build_dir,
    build_firmware,
    missing_tools,
)
from fusegen.bench.link.qemu import QemuMachine
from fusegen.bench.runner import run_steps

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"firmware toolchain missing: {', '.join(missing_tools())}"
)
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed"
)

# An int8 model through FUSEGEN_MODEL_SOURCES: output = saturate(-input), 3 elements.
NEGATE_MODEL = """
#include "fw_model.h"
static const FwModelInfo kInfo = {3, 3, 3, 3, kFwDtypeInt8, 0, 0, "negate_int8"};
const FwModelInfo* fw_model_info(void) { return &kInfo; }
int fw_model_run(const void* input, void* output) {
  const int8_t* in = (const int8_t*)input;
  int8_t* out = (int8_t*)output;
  for (int i = 0; i < 3; ++i) out[i] = (int8_t)(in[i] == -128 ? 127 : -in[i]);
  return 0;
}
void fw_model_reset(void) {}
"""


def nm(elf: Path) -> set[str]:
    out = subprocess.run(
        ["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[-1] for line in out.splitlines()}


CPU_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]


@pytest.mark.parametrize("opt", ["O2", "Os"])
def test_compile_flags(opt: str) -> None:
    config = FirmwareConfig(opt=opt)
    build_firmware(config)
    commands = json.loads((build_dir(config) / "compile_commands.json").read_text())
    assert len(commands) >= 8
    for entry in commands:
        flags = entry["command"].split()
        assert set(CPU_FLAGS + ["-Wall", "-Wextra", "-Werror", f"-{opt}"]) <= set(flags), entry
        if entry["file"].endswith(".cc"):
            assert {"-fno-exceptions", "-fno-rtti"} <= set(flags)


def test_elf_symbols_and_float_abi() -> None:
    elf = build_firmware(FirmwareConfig(opt="O2"))
    symbols = nm(elf)
    assert not symbols & {"malloc", "free", "_sbrk", "__cxa_throw", "__libc_init_array"}
    assert {"Reset_Handler", "kFwVectorTable", "__fw_stack_top"} <= symbols
    attributes = subprocess.run(
        ["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    assert "Tag_CPU_arch: v7E-M" in attributes
    assert "Tag_FP_arch: VFPv4-D16" in attributes
    assert "Tag_ABI_VFP_args: VFP registers" in attributes


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# Without _sbrk the link fails; with one (a board support package may bring it) the ELF check
# still finds the allocator.
@pytest.mark.parametrize("with_sbrk", [False, True], ids=["no-sbrk", "own-sbrk"])
def test_model_that_allocates_is_rejected(tmp_path: Path, with_sbrk: bool) -> None:
    source = write(
        tmp_path / "bad.c",
        NEGATE_MODEL.replace(
            "void fw_model_reset(void) {}",
            "#include <stdlib.h>\nvoid* g_p;\nvoid fw_model_reset(void) { g_p = malloc(4); }",
        ),
    )
    sbrk = write(
        tmp_path / "sbrk.c",
        "#include <stddef.h>\nvoid* _sbrk(ptrdiff_t n) { (void)n; return (void*)-1; }\n",
    )
    config = FirmwareConfig(model_sources=(source, sbrk) if with_sbrk else (source,))
    expected = "links malloc" if with_sbrk else "undefined reference to `_sbrk'"
    with pytest.raises(FirmwareBuildError, match=expected):
        build_firmware(config, tmp_path / "build")


def test_global_constructor_is_rejected(tmp_path: Path) -> None:
    model = write(tmp_path / "model.c", NEGATE_MODEL)
    ctor = write(tmp_path / "ctor.cc", "struct S { S(); int v; }; S::S() : v(1) {} S g_s;\n")
    config = FirmwareConfig(model_sources=(model, ctor))
    with pytest.raises(FirmwareBuildError, match="global constructors"):
        build_firmware(config, tmp_path / "build")


@needs_qemu
def test_plugged_int8_model_runs(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    source = write(model_dir / "negate.c", NEGATE_MODEL)
    elf = build_firmware(FirmwareConfig(model_sources=(source,)), tmp_path / "build")
    with QemuMachine(elf, max_runtime=60) as qemu:
        x = np.array([[1, -2, 3], [-128, 127, 0]], dtype=np.int8)
        result = run_steps(qemu.link, x)
    assert result.device.model_name == "negate_int8" and result.device.dtype == P.Dtype.INT8
    np.testing.assert_array_equal(result.outputs, [[-1, 2, -3], [127, -127, 0]])


@needs_qemu
def test_generic_port_with_example_board(tmp_path: Path) -> None:
    """The generic port, given the example board file and the mps2 linker script, boots in
    QEMU. Its counter is DWT CYCCNT, which QEMU does not model, so counts read 0 there."""
    config = FirmwareConfig(
        board="generic",
        cache={
            "FUSEGEN_BOARD_SOURCES": str(FIRMWARE_DIR / "bsp/qemu/board_cmsdk_uart.c"),
            "FUSEGEN_LINKER_SCRIPT": str(FIRMWARE_DIR / "bsp/mps2_an386/mps2_an386.ld"),
        },
    )
    elf = build_firmware(config, tmp_path / "build")
    with QemuMachine(elf, max_runtime=60) as qemu:
        x = np.arange(64, dtype=np.float32)
        result = run_steps(qemu.link, x)
    assert result.device.board_name == "mps2-cmsdk"
    assert result.device.counter_unit == P.CounterUnit.CYCLES
    assert result.device.counter_resolution == 1
    np.testing.assert_array_equal(result.outputs[0, :64], 2 * x)


def test_generic_port_requires_board_files(tmp_path: Path) -> None:
    with pytest.raises(FirmwareBuildError, match="FUSEGEN_BOARD_SOURCES"):
        build_firmware(FirmwareConfig(board="generic"), tmp_path / "build")
