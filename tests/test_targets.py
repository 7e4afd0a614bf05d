"""Every target of fusegen/bench/targets.py builds and runs a small model in its QEMU machine.

One GRU (20 inputs, 7 units, 3 timesteps: the int8 matmuls have depth 20 and 7, so Helium's
16-wide loop runs a full vector and a predicated tail, and 21 columns leave one over a group of
four) is converted to int8 and run on every target: the outputs must equal the host-compiled core
bit for bit, whichever inner loop (portable C, DSP, MVE) the target compiled. float32 runs on the
soft-float cores (M0, RV32) and the FPU/Helium ones that share no build with other tests (M33,
M55), within the 1e-5 of core mode. Each firmware is built with -Wall -Wextra -Werror (the
firmware's CMakeLists; checked in the compile commands). One firmware per target and dtype.
"""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from fusegen.bench.core_bench import CoreBench, core_firmware
from fusegen.bench.firmware.build import (
    FirmwareBuildError,
    FirmwareConfig,
    build_dir,
    build_firmware,
)
from fusegen.bench.firmware.core_model import CoreChain, CoreOp, HostChain, single_op_chain
from fusegen.bench.targets import TARGETS, get, markdown_table, parse_list
from fusegen.codegen import write_package
from fusegen.lower import class_factory, lower_cell
from fusegen.quantize import quantize_cell
from fusegen.quantize.scales import asymmetric_int8

INPUTS, UNITS, STEPS = 20, 7, 3
FLOAT_TARGETS = ("qemu-m0", "qemu-m33", "qemu-m55", "qemu-rv32")


def _missing(name: str) -> list[str]:
    return [tool for tool in get(name).tools if shutil.which(tool) is None]


def _needs(name: str):
    missing = _missing(name)
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} "
                              "(run scripts/setup.sh)")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The lowered GRU, its int8 op, kernel directories for both dtypes and sample inputs."""
    out = tmp_path_factory.mktemp("targets")
    cell = keras.layers.GRUCell(UNITS)
    keras.layers.RNN(cell)(np.zeros((1, 1, INPUTS), np.float32))
    rng = np.random.default_rng(12)
    for w in cell.weights:  # random non-zero weights and biases
        w.assign(rng.uniform(-0.5, 0.5, w.shape).astype(np.float32))
    low = lower_cell(class_factory(keras.layers.GRUCell, {}), cell, INPUTS)
    calibration = rng.uniform(-1, 1, (16, STEPS, INPUTS)).astype(np.float32)
    qcell = quantize_cell(low.bound, calibration, asymmetric_int8(-1.0, 1.0))
    write_package({low.op_name: low.graph}, out / "kernels")
    write_package({low.op_name: low.graph}, out / "kernels-int8", ("f32", "s8"))
    x = rng.uniform(-1, 1, (2, STEPS, INPUTS)).astype(np.float32)
    x = np.concatenate([x, x[:1]])  # the first sample again: the same count
    s8 = CoreChain((CoreOp(low.op_name, low.graph, tuple(qcell.op_inputs()), INPUTS, UNITS, STEPS,
                           False, False, "s8"),), ())
    return {"dir": out, "f32": (single_op_chain(low.op_name, low.bound, STEPS), x),
            "s8": (s8, qcell.quantize_input(x))}


def _run(model, name: str, dtype: str) -> CoreBench:
    chain, x = model[dtype]
    host = HostChain(chain)
    kernels = model["dir"] / ("kernels-int8" if dtype == "s8" else "kernels")
    root = model["dir"] / "build"
    config = core_firmware(chain, host.plans(), kernels, f"gru-{dtype}", build_root=root,
                           target=name)
    bench = CoreBench.run_qemu(chain, config, x, host, root, progress=lambda _m: None)
    commands = json.loads((build_dir(config, root) / "compile_commands.json").read_text())
    for entry in commands:
        flags = entry["command"]
        assert "-Wall" in flags and "-Wextra" in flags and "-Werror" in flags
        assert get(name).cpu_flags in flags
    return bench


@pytest.mark.parametrize("name", [pytest.param(n, marks=_needs(n)) for n in TARGETS])
def test_int8_gru_equals_host_on_every_target(model, name: str) -> None:
    bench = _run(model, name, "s8")
    assert bench.max_abs_diff == 0 and bench.passed
    info = bench.result.device
    target = get(name)
    assert info.counter_resolution == target.resolution and info.cpu_hz == target.cpu_hz
    counts = bench.counts
    assert counts[0] == counts[2] > 0  # same inference, same count
    assert bench.memory.ram_static_bytes + target.stack_bytes <= target.ram_bytes


@pytest.mark.parametrize("name", [pytest.param(n, marks=_needs(n)) for n in FLOAT_TARGETS])
def test_float_gru_matches_host(model, name: str) -> None:
    bench = _run(model, name, "f32")
    assert bench.passed and bench.tolerance == 1e-5
    assert np.all(np.isfinite(bench.result.outputs)) and np.any(bench.result.outputs != 0)


def test_table_is_consistent() -> None:
    """Every row names a board directory, linker script and toolchain that exist, and the
    linker script's RAM matches the row (what the memory checks above rely on)."""
    from fusegen.bench.firmware.build import FIRMWARE_DIR, boards

    for target in TARGETS.values():
        assert target.bsp in boards()
        assert (FIRMWARE_DIR / "cmake" / target.toolchain).is_file()
        script = (FIRMWARE_DIR / "bsp" / target.linker_script).read_text()
        ram = next(line for line in script.splitlines() if line.strip().startswith("RAM"))
        length = ram.split("LENGTH =")[1].strip()
        number = int(length.rstrip("KM")) << {"K": 10, "M": 20}[length[-1]]
        assert number == target.ram_bytes, target.name
        assert target.has_fpu == ("soft" not in target.cpu_flags and "rv32imac" not in
                                  target.cpu_flags)
    readme = (FIRMWARE_DIR / "README.md").read_text()
    assert markdown_table() in readme, "regenerate firmware/README.md's targets table"
    assert [t.name for t in parse_list("qemu-m0, qemu-m4,qemu-m0")] == ["qemu-m0", "qemu-m4"]
    with pytest.raises(ValueError, match="unknown target 'qemu-z80'"):
        parse_list("qemu-m4,qemu-z80")


def test_unknown_board_is_one_line(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown board 'nope'"):
        FirmwareConfig(board="nope")
    with pytest.raises(FirmwareBuildError, match="Unknown FUSEGEN_BOARD"):
        build_firmware(FirmwareConfig(cache={"FUSEGEN_BOARD": "nope"}), tmp_path)
