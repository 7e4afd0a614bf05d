"""Core mode: a converted model's chain of fused ops on the device, checked and measured.

    chain = read_chain(tflite_bytes, kernels)
    config = core_firmware(chain, kernels, "m", opt="O2")        # writes fw_model.c
    report = CoreBench.run_qemu(chain, config, x)                 # build, boot, run, check
    print(report.table())

The outputs are checked against the same chain run by the host-compiled cores (HostChain): int8
for equality; float32 within a tolerance that covers one difference only, newlib's expf/tanhf
(device) against glibc's (host), a few float32 ulp per activation: the matmuls and elementwise
ops round identically on both (-ffp-contract=off, the same summation order).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusegen.bench.firmware.build import (
    DEFAULT_BUILD_ROOT,
    FirmwareConfig,
    build_dir,
    build_firmware,
)
from fusegen.bench.firmware.core_model import CoreChain, HostChain
from fusegen.bench.firmware.memory import MemoryReport, memory_report
from fusegen.bench.firmware.model_source import write_model_sources
from fusegen.bench.link.protocol import Dtype
from fusegen.bench.link.qemu import QemuMachine
from fusegen.bench.link.serial_link import SerialLink
from fusegen.bench.runner import BenchError, BenchResult, run_steps
from fusegen.bench.targets import get as get_target
from fusegen.quantize.scales import quantize_int8
from fusegen import verdict

# Device against host core, float32, absolute. The difference is newlib's expf/tanhf against
# glibc's: measured up to 3.6e-6 (ExoticCell, whose exp-damped state carries ulp differences
# over 49 steps), 2e-7 for the other cells (benchmarks/results/device_bench.md). 1e-5 is also
# fusegen's plain float tolerance (fusegen/verdict.py).
FLOAT_TOLERANCE = verdict.FLOAT_TOLERANCE
_IO_ALIGN = 16


def load_inputs(x: np.ndarray, chain: CoreChain, what: str = "inputs") -> np.ndarray:
    """[T, I] or [N, T, I] -> [N, T, I] in the chain's dtype, or a BenchError saying what was
    expected. An int8 chain takes int8 arrays as they are and quantizes float ones with its
    input's scale and zero point (rounding half away from zero, as fusegen.quantize does)."""
    shape = chain.input_shape
    if x.shape == shape:
        x = x[None]
    if x.ndim != 3 or tuple(x.shape[1:]) != shape:
        raise BenchError(f"{what} of shape {x.shape} are not N samples of the chain's input "
                         f"{shape} (timesteps, features)")
    if not np.all(np.isfinite(x)):
        raise BenchError(f"{what} contain NaN or inf")
    if chain.dtype == "s8" and x.dtype != np.int8:
        if chain.input_qparams is None:
            raise BenchError(f"{what}: the chain is int8 and its input has no quantization in "
                             "the .tflite: give int8 inputs")
        return quantize_int8(x, chain.input_qparams)
    return x.astype(np.int8 if chain.dtype == "s8" else np.float32)


def default_tolerance(chain: CoreChain) -> float:
    """int8 is integer arithmetic on both sides: equal. float32: FLOAT_TOLERANCE."""
    return 0.0 if chain.dtype == "s8" else FLOAT_TOLERANCE


def core_firmware(chain: CoreChain, plans: list, kernels: Path, name: str, *, opt: str = "O2",
                  board: str = "", cache: dict[str, str] | None = None,
                  build_root: Path = DEFAULT_BUILD_ROOT, source: str = "",
                  target: str = "qemu-m4") -> FirmwareConfig:
    """Writes fw_model.c for `chain` under build_root and returns the firmware configuration.

    The model directory is named after the kernels and the model, so running the same model
    again rebuilds incrementally; the I/O buffers are sized to the model's tensors."""
    key = hashlib.sha256(f"{Path(kernels).resolve()}\0{name}".encode()).hexdigest()[:10]
    out_dir = Path(build_root) / "bench-models" / f"{name}-{key}"
    sources, includes = write_model_sources(chain, plans, kernels, out_dir, name, source)
    io_bytes = 1 if chain.dtype == "s8" else 4
    in_bytes = io_bytes * int(np.prod(chain.input_shape))
    out_bytes = io_bytes * int(np.prod(chain.output_shape))
    capacities = {"FUSEGEN_INPUT_CAPACITY": str(_round_up(in_bytes)),
                  "FUSEGEN_OUTPUT_CAPACITY": str(_round_up(out_bytes))}
    return FirmwareConfig(board=board, opt=opt, model_sources=tuple(sources),
                          model_include_dirs=tuple(includes), cache={**capacities, **(cache or {})},
                          target=target)


def _round_up(n: int) -> int:
    return max(_IO_ALIGN, -(-n // _IO_ALIGN) * _IO_ALIGN)


# An upper bound of instructions per multiply-accumulate of the generated cores (they measure
# 3 to 13 in benchmarks/results/device_bench.md), for the first inference's timeout.
INSTRUCTIONS_PER_MAC_BOUND = 100


@dataclass
class CoreBench:
    """One core-mode run: device outputs and counts, the host reference, the firmware's memory."""

    chain: CoreChain
    result: BenchResult
    reference: np.ndarray  # host core outputs, [N, *output_shape]
    memory: MemoryReport | None  # None when no ELF was built (a board flashed beforehand)
    tolerance: float = FLOAT_TOLERANCE

    @classmethod
    def run(cls, chain: CoreChain, link: SerialLink, x: np.ndarray, host: HostChain,
            memory: MemoryReport | None, progress=print,
            timeout: float | None = None) -> CoreBench:
        info = link.describe()
        elems = (int(np.prod(chain.input_shape)), int(np.prod(chain.output_shape)))
        dtype = Dtype.INT8 if chain.dtype == "s8" else Dtype.FLOAT32
        if (info.input_elems, info.output_elems, info.dtype) != (*elems, dtype):
            raise BenchError(f"the device runs model {info.model_name!r} with "
                             f"{info.input_elems} {info.dtype.name} inputs and "
                             f"{info.output_elems} outputs, not this chain's {elems[0]} "
                             f"{dtype.name} and {elems[1]}: flash the firmware built for this "
                             "model (--flash-command)")
        progress(f"running {len(x)} inference(s) on {info.board_name}")
        # The first inference's bound, before any count is known: a generous instructions-per-MAC.
        result = run_steps(link, x.reshape(len(x), -1), timeout=timeout,
                           expected_count=chain.macs * INSTRUCTIONS_PER_MAC_BOUND)
        result.outputs = result.outputs.reshape(len(x), *chain.output_shape)
        progress("checking the outputs against the host core")
        return cls(chain, result, host.run(x), memory, default_tolerance(chain))

    @classmethod
    def run_qemu(cls, chain: CoreChain, config: FirmwareConfig, x: np.ndarray,
                 host: HostChain | None = None, build_root: Path = DEFAULT_BUILD_ROOT,
                 progress=print, timeout: float | None = None,
                 trace_path: Path | None = None) -> CoreBench:
        """With trace_path, QEMU also logs every executed block there (fusegen.bench.cycles)."""
        host = host or HostChain(chain)
        progress(f"building the firmware ({config.opt}) in {build_dir(config, build_root)}")
        elf = build_firmware(config, build_root)
        memory = memory_report(elf.with_name("fw.map"), _stack_bytes(config))
        target = get_target(config.target)
        progress(f"starting QEMU ({target.machine}, {target.core}, -icount shift=0; "
                 f"{target.float_note})")
        with QemuMachine(elf, target=config.target, trace_path=trace_path) as qemu:
            return cls.run(chain, qemu.link, x, host, memory, progress, timeout)

    @property
    def max_abs_diff(self) -> float:
        diff = np.abs(self.result.outputs.astype(np.float64) - self.reference)
        return float(diff.max()) if diff.size else 0.0

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    @property
    def counts(self) -> np.ndarray:
        return np.asarray(self.result.counts, dtype=np.int64)

    def summary(self) -> dict[str, object]:
        """The JSON report: the table's numbers and everything they come from."""
        counts, chain, device = self.counts, self.chain, self.result.device
        mean = float(counts.mean())
        return {
            "mode": "core",
            "ops": [{"op": op.op_name, "input_size": op.input_size, "units": op.units,
                     "timesteps": op.timesteps, "return_sequences": op.return_sequences,
                     "go_backwards": op.go_backwards, "macs": op.macs} for op in chain.ops],
            "not_run": list(chain.skipped),
            "board": device.board_name,
            "unit": self.result.unit,
            "resolution": device.counter_resolution,
            "inferences": len(counts),
            "counts": [int(c) for c in counts],
            "count_min": int(counts.min()),
            "count_max": int(counts.max()),
            "count_mean": mean,
            "count_per_timestep": mean / chain.timesteps,
            "macs": chain.macs,
            "count_per_mac": mean / chain.macs if chain.macs else None,
            "flash_bytes": self.memory.flash_bytes if self.memory else device.flash_used,
            "ram_static_bytes": (self.memory.ram_static_bytes if self.memory
                                 else device.ram_used - device.stack_size),
            "stack_used_bytes": self.result.stack_used,
            "layers": self.result.layers([op.op_name for op in chain.ops]),
            "op_counts": self.result.op_counts,
            "memory": self.memory.as_dict() if self.memory else None,
            "device": {"flash_used": device.flash_used, "ram_used": device.ram_used,
                       "stack_size": device.stack_size, "model_name": device.model_name,
                       "firmware_version": device.firmware_version},
            "check": {"max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                      "passed": self.passed},
        }

    def table(self) -> str:
        s = self.summary()
        unit = "instructions" if s["unit"] == "instructions" else "cycles"
        rows = [("flash bytes", f"{s['flash_bytes']:,}", self._flash_note()),
                ("RAM bytes (static)", f"{s['ram_static_bytes']:,}", self._ram_note()),
                ("stack bytes used", f"{s['stack_used_bytes']:,}",
                 f"deepest since boot, of {self.result.device.stack_size:,} reserved"),
                (f"{unit} / inference", f"{round(s['count_mean']):,}", self._count_note()),
                (f"{unit} / timestep", f"{s['count_per_timestep']:,.0f}",
                 f"{self.chain.timesteps} timesteps"),
                ("MACs / inference", f"{s['macs']:,}", "from the IR: MATMUL depth x cols x T"),
                (f"{unit} / MAC", f"{s['count_per_mac']:.2f}" if s["count_per_mac"] else "-", ""),
                ("outputs vs host core", "PASS" if self.passed else "FAIL",
                 f"max |diff| {self.max_abs_diff:.2e}, {self._tolerance_text()}")]
        rows[4:4] = [(f"  {layer['op']}", f"{round(layer['count_mean']):,}",
                      f"{layer['share']:.0%}; min {layer['count_min']:,}, max "
                      f"{layer['count_max']:,}") for layer in s["layers"]]
        width = max(len(r[0]) for r in rows)
        lines = [f"  {name:<{width}}  {value:>11}  {note}".rstrip() for name, value, note in rows]
        return "\n".join([self.chain.scope_note(), *lines])

    def _tolerance_text(self) -> str:
        return "must be equal" if self.tolerance == 0 else f"tolerance {self.tolerance:.0e}"

    def _flash_note(self) -> str:
        m = self.memory
        if m is None:
            return "from DESCRIBE (no ELF to split it)"
        return (f"model weights {m.model_weight_bytes:,} + model code {m.model_code_bytes:,} "
                f"+ firmware {m.firmware_code_bytes:,}")

    def _ram_note(self) -> str:
        m = self.memory
        if m is None:
            return "from DESCRIBE"
        return (f"model buffers {m.model_ram_bytes:,} (plans, states, scratch) + firmware "
                f"{m.ram_static_bytes - m.model_ram_bytes:,} (I/O buffers, server)")

    def _count_note(self) -> str:
        c = self.counts
        spread = "all equal" if c.min() == c.max() else f"min {c.min():,}, max {c.max():,}"
        return (f"mean of {len(c)}, {spread}; resolution "
                f"{self.result.device.counter_resolution}")


def _stack_bytes(config: FirmwareConfig) -> int:
    return int(config.cmake_definitions()["FUSEGEN_STACK_BYTES"])
