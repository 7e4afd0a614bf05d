"""Runs a batch of inputs through a connected device and collects outputs and counts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fusegen.bench.firmware.build import FirmwareConfig, build_firmware
from fusegen.bench.link.protocol import PROTOCOL_VERSION, CounterUnit, DeviceInfo, Dtype
from fusegen.bench.link.qemu import QemuMachine
from fusegen.bench.link.serial_link import DEFAULT_RUN_TIMEOUT_S, SerialLink

# --timeout's default. The first inference may take DEFAULT_RUN_TIMEOUT_S; every later one
# RUN_TIMEOUT_SAFETY times what the first one's count takes at the slowest rate we allow for:
# EMULATOR_FLOOR_IPS instructions a second on an emulator (QEMU -icount runs tens of millions),
# or the board's own clock, and at least RUN_TIMEOUT_SAFETY times what the first RUN took on the
# wall clock (QEMU on a loaded machine is slower than any floor rate: the bound follows it).
# Never less than MIN_RUN_TIMEOUT_S, so a hung device reports within seconds, not minutes.
EMULATOR_FLOOR_IPS = 2e6
RUN_TIMEOUT_SAFETY = 4.0
MIN_RUN_TIMEOUT_S = 5.0


class BenchError(Exception):
    """The inputs do not fit the model, or the model reported a failure."""


@dataclass
class BenchResult:
    device: DeviceInfo
    outputs: np.ndarray  # (steps, output_elems), or the input's leading shape + (output_elems,)
    counts: list[int]  # per inference, in device.counter_unit
    stack_used: int  # deepest stack use seen, bytes
    # per inference, the count of each op the model marked (fw_op_mark); empty when it marks none
    op_counts: list[list[int]] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return "instructions" if self.device.counter_unit == CounterUnit.INSTRUCTIONS else "cycles"

    def summary(self) -> dict[str, object]:
        """JSON-ready report: device description, count statistics and memory."""
        counts = np.asarray(self.counts, dtype=np.int64)
        device = {
            k: (v.name if isinstance(v, Dtype | CounterUnit) else v)
            for k, v in asdict(self.device).items()
        }
        return {
            "device": device,
            "unit": self.unit,
            "resolution": self.device.counter_resolution,
            "inferences": len(self.counts),
            "count_min": int(counts.min()) if counts.size else None,
            "count_max": int(counts.max()) if counts.size else None,
            "count_mean": float(counts.mean()) if counts.size else None,
            "counts": [int(c) for c in counts],
            "stack_used": self.stack_used,
            "op_counts": self.op_counts,
        }

    def layers(self, names: list[str] | tuple[str, ...]) -> list[dict[str, object]]:
        """Per op (fw_op_mark): name, min / mean / max count over the inferences and share of
        the mean inference; empty when the device timed no ops or `names` does not fit."""
        if not self.op_counts or any(len(c) != len(names) for c in self.op_counts):
            return []
        per_op = np.asarray(self.op_counts, dtype=np.int64)
        total = float(np.mean(self.counts)) or 1.0
        return [{"op": name, "count_min": int(per_op[:, k].min()),
                 "count_mean": float(per_op[:, k].mean()), "count_max": int(per_op[:, k].max()),
                 "share": float(per_op[:, k].mean()) / total}
                for k, name in enumerate(names)]


class ModelInitError(BenchError):
    """The firmware's model did not initialise (DESCRIBE reports no input). A TFLM-mode
    firmware whose arena is too small reports the bytes it needs in arena_bytes (else 0)."""

    def __init__(self, arena_needed: int) -> None:
        self.arena_needed = arena_needed
        need = (f"; its arena is too small: it needs at least {arena_needed} bytes"
                if arena_needed else "")
        super().__init__(f"the firmware's model did not initialise (it reports no input "
                         f"tensor){need}")


def as_steps(inputs: np.ndarray, info: DeviceInfo) -> np.ndarray:
    """Reshapes inputs to (steps, input_elems) in the model's dtype; the last axes must hold
    exactly input_elems values per inference."""
    if info.input_elems <= 0 or info.output_elems <= 0:
        raise ModelInitError(info.arena_bytes)
    dtype = np.dtype(info.dtype.numpy_name)
    array = np.asarray(inputs)
    if array.size % info.input_elems:
        raise BenchError(
            f"inputs of shape {array.shape} do not split into steps of {info.input_elems} elements"
        )
    if info.dtype == Dtype.INT8 and array.dtype != np.int8 and not _fits_int8(array):
        raise BenchError("int8 model: inputs must be integers in [-128, 127]")
    return array.reshape(-1, info.input_elems).astype(dtype)


def _fits_int8(array: np.ndarray) -> bool:
    if array.size == 0:
        return True
    in_range = array.min() >= -128 and array.max() <= 127
    return bool(in_range and np.array_equal(array, np.round(array)))


def run_timeout_for(info: DeviceInfo, count: int, wall: float = 0.0) -> float:
    """Seconds an inference that counted count (in info.counter_unit) may take on the device
    (wall: seconds the inference that counted it took from RUN to its answer, if known)."""
    if info.counter_unit == CounterUnit.INSTRUCTIONS:
        seconds = count / EMULATOR_FLOOR_IPS
    else:
        seconds = count / max(info.cpu_hz, 1_000_000)
    return max(MIN_RUN_TIMEOUT_S, RUN_TIMEOUT_SAFETY * max(seconds, wall))


def run_steps(
    link: SerialLink,
    inputs: np.ndarray,
    *,
    reset_each: bool = False,
    timeout: float | None = None,
    expected_count: int | None = None,
) -> BenchResult:
    """Resets the state, then for each step loads the input, runs and reads the output.

    reset_each also clears the recurrent state before every step (independent inferences).
    timeout bounds each inference in seconds (default: derived from the first one's count,
    and wall time, see run_timeout_for; the first one's from expected_count, an upper estimate
    of its count, if given, and never under DEFAULT_RUN_TIMEOUT_S)."""
    info = link.describe()
    if info.protocol_version != PROTOCOL_VERSION:
        raise BenchError(f"the device's firmware speaks protocol version {info.protocol_version}, "
                         f"this fusegen version {PROTOCOL_VERSION}: rebuild and flash the firmware")
    link.run_timeout = timeout if timeout is not None else DEFAULT_RUN_TIMEOUT_S
    if timeout is None and expected_count:
        link.run_timeout = max(DEFAULT_RUN_TIMEOUT_S, run_timeout_for(info, expected_count))
    steps = as_steps(inputs, info)
    out_dtype = np.dtype(info.dtype.numpy_name)
    outputs = np.zeros((len(steps), info.output_elems), dtype=out_dtype)
    counts: list[int] = []
    op_counts: list[list[int]] = []
    marks_known = True
    stack = 0
    link.reset_state()
    for i, step in enumerate(steps):
        if reset_each and i:
            link.reset_state()
        link.load_input(step.tobytes())
        started = link.clock()
        result = link.run()
        wall = link.clock() - started
        if result.status != 0:
            raise BenchError(f"step {i}: fw_model_run returned {result.status}")
        counts.append(result.count)
        if timeout is None and i == 0:
            link.run_timeout = run_timeout_for(info, result.count, wall)
        stack = max(stack, result.stack_used)
        if marks_known:
            marks = link.op_counts()
            marks_known = marks is not None and marks.made == len(marks.marks) > 0
            if marks_known:
                op_counts.append(marks.per_op())
        outputs[i] = np.frombuffer(link.read_output(info.output_bytes), dtype=out_dtype)
    leading = np.asarray(inputs).shape[:-1] if np.asarray(inputs).ndim > 1 else (len(steps),)
    if int(np.prod(leading)) == len(steps):
        outputs = outputs.reshape(*leading, info.output_elems)
    if len(op_counts) != len(counts):
        op_counts = []  # a model that marked some inferences only: no per-op view
    return BenchResult(info, outputs, counts, stack, op_counts)


def bench_qemu(
    config: FirmwareConfig,
    inputs: np.ndarray,
    *,
    reset_each: bool = False,
    build_root: Path | None = None,
    timeout: float | None = None,
) -> BenchResult:
    """Builds the firmware for QEMU, boots it and runs the inputs (timeout: see run_steps)."""
    elf = build_firmware(config, build_root) if build_root else build_firmware(config)
    with QemuMachine(elf, target=config.target) as qemu:
        return run_steps(qemu.link, inputs, reset_each=reset_each, timeout=timeout)


def bench_serial(
    url: str,
    inputs: np.ndarray,
    *,
    baudrate: int = 115200,
    reset_each: bool = False,
    timeout: float | None = None,
) -> BenchResult:
    """Runs the inputs on a board already flashed with the firmware (timeout: see run_steps)."""
    with SerialLink.open(url, baudrate=baudrate) as link:
        link.ping()
        return run_steps(link, inputs, reset_each=reset_each, timeout=timeout)
