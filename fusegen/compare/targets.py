"""Where `fusegen compare` measures inference: the `Target` interface and its implementations.

A target receives `ModelArtifacts` (C sources implementing firmware/app/fw_model.h, the fused
.tflite, sample inputs and the outputs the deployed model gives for them) and returns a
`Measurement`: time per inference in instructions, cycles or nanoseconds, and flash and RAM of
the model code. Targets that cannot run here say why in `unavailable()`.

    host      the model built with gcc -O2 for this machine; instructions counted by valgrind's
              callgrind inside fw_model_run (repeatable), else the median wall-clock time
    qemu-*    the benchmark firmware (firmware/, fusegen.bench) built with the model for that
              target (fusegen/bench/targets.py: qemu-m0 ... qemu-m55, qemu-stm32f405, qemu-rv32)
              and run in QEMU with -icount: instructions inside fw_model_run
    port      a board flashed with the benchmark firmware (fusegen.bench.bench_serial)

Flash and RAM are the model objects' text + data and data + bss (binutils' size): the weights,
code and static buffers of the model, not the firmware or the host program around it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from fusegen.paths import FIRMWARE

HOST_MAIN = Path(__file__).resolve().parent / "c" / "host_main.c"
FW_MODEL_H = FIRMWARE / "app" / "fw_model.h"
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion",
               "-Wfloat-conversion", "-Wshadow")
# Outputs of the measured C model against the deployed model (C core + numpy Dense head): the
# same core, so only the head's summation order differs; 1e-5 is far above float32 rounding of
# a few dozen products and far below a changed prediction.
OUTPUT_TOLERANCE = 1e-5
WALL_CLOCK_REPEATS = 200


class TargetError(RuntimeError):
    """The target cannot measure (missing tool, build or run failure); one line."""


@dataclass(frozen=True)
class ModelArtifacts:
    name: str
    sources: tuple[Path, ...]  # C sources of the whole model (fw_model.h implementation)
    include_dirs: tuple[Path, ...]
    tflite: Path  # the fused .tflite (for targets that run TFLM)
    inputs: np.ndarray  # [N, T, F] float32 samples to time
    expected: np.ndarray  # [N, classes] the deployed model's logits for `inputs`
    work_dir: Path  # where the target may build
    op_names: tuple[str, ...] = ()  # the model's ops in the order fw_model.c runs them


@dataclass(frozen=True)
class Measurement:
    unit: str  # "instructions", "cycles" or "ns"
    per_inference: float
    flash: int | None  # bytes of model code and constants
    ram: int | None  # bytes of static model buffers (state, scratch, activations)
    method: str  # how it was measured, for the report
    notes: tuple[str, ...] = field(default=())
    fewest: float | None = None  # min and max over the samples (None: only a mean is known)
    most: float | None = None
    layers: tuple[tuple[str, float], ...] = ()  # per op: (name, mean count) when the firmware
    #                                             timed each op


class Target(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """Why this target cannot run on this machine, or None."""

    def measure(self, artifacts: ModelArtifacts) -> Measurement:
        """Time one inference of the model (mean over artifacts.inputs), flash and RAM."""


# -- host ---------------------------------------------------------------------------------------

class HostTarget:
    name = "host"

    def __init__(self, use_valgrind: bool | None = None):
        self.valgrind = shutil.which("valgrind") if use_valgrind in (None, True) else None
        if use_valgrind and not self.valgrind:
            raise TargetError("valgrind is not installed (apt-get install valgrind)")

    def unavailable(self) -> str | None:
        if not (shutil.which("gcc") and shutil.which("size")):
            return "the host target needs gcc and binutils' size"
        if not FW_MODEL_H.is_file():
            return f"{FW_MODEL_H} (the model interface the targets build against) is missing"
        return None

    def measure(self, artifacts: ModelArtifacts) -> Measurement:
        work = artifacts.work_dir / "host"
        work.mkdir(parents=True, exist_ok=True)
        objects = [_compile(src, artifacts.include_dirs, work) for src in artifacts.sources]
        exe = _link(objects, artifacts.include_dirs, work)
        flash, ram = _sizes(objects)
        inputs = work / "inputs.f32"
        inputs.write_bytes(np.ascontiguousarray(artifacts.inputs, np.float32).tobytes())
        n = len(artifacts.inputs)
        if self.valgrind:
            count, outputs = _callgrind(exe, inputs, work, n)
            unit, method = "instructions", "valgrind callgrind, x86-64 gcc -O2, in fw_model_run"
        else:
            count, outputs = _wall_clock(exe, inputs, work, n)
            unit, method = "ns", (f"wall-clock median of {WALL_CLOCK_REPEATS} runs per input, "
                                  "x86-64 gcc -O2 (valgrind not installed: not repeatable)")
        _check_outputs(outputs.reshape(artifacts.expected.shape), artifacts.expected)
        return Measurement(unit, count, flash, ram, method)


def _compile(source: Path, include_dirs: tuple[Path, ...], work: Path) -> Path:
    obj = work / (source.stem + ".o")
    _run(["gcc", *HOST_CFLAGS, *(f"-I{d}" for d in include_dirs), "-c", str(source), "-o",
          str(obj)], f"compiling {source.name}")
    return obj


def _link(objects: list[Path], include_dirs: tuple[Path, ...], work: Path) -> Path:
    main = _compile(HOST_MAIN, include_dirs, work)
    exe = work / "host_model"
    _run(["gcc", str(main), *map(str, objects), "-lm", "-o", str(exe)], "linking the host model")
    return exe


def _sizes(objects: list[Path]) -> tuple[int, int]:
    """(text + data, data + bss) of the model's objects (Berkeley format of binutils' size)."""
    out = _run(["size", "-B", *map(str, objects)], "size").splitlines()[1:]
    text, data, bss = (sum(int(line.split()[k]) for line in out) for k in range(3))
    return text + data, data + bss


def _callgrind(exe: Path, inputs: Path, work: Path, n: int) -> tuple[float, np.ndarray]:
    profile, outputs = work / "callgrind.out", work / "outputs.f32"
    _run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}",
          "--toggle-collect=fw_model_run", str(exe), str(inputs), str(outputs)], "callgrind")
    return _callgrind_total(profile) / n, np.fromfile(outputs, np.float32)


def _callgrind_total(profile: Path) -> int:
    for line in profile.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise TargetError(f"{profile}: no instruction total")


def _wall_clock(exe: Path, inputs: Path, work: Path, n: int) -> tuple[float, np.ndarray]:
    outputs = work / "outputs.f32"
    out = _run([str(exe), str(inputs), str(outputs), str(WALL_CLOCK_REPEATS)], "timing")
    median = next(float(line.split()[1]) for line in out.splitlines()
                  if line.startswith("median_ns"))
    return median, np.fromfile(outputs, np.float32)


def _check_outputs(got: np.ndarray, expected: np.ndarray) -> None:
    diff = got.astype(np.float64) - expected.astype(np.float64)  # int8 outputs must not wrap
    err = float(np.max(np.abs(diff))) if got.size else 0.0
    if not err <= OUTPUT_TOLERANCE:
        raise TargetError(f"the measured C model's outputs differ from the deployed model's by "
                          f"{err:.2e} (> {OUTPUT_TOLERANCE:.0e})")


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        detail = next((line for line in lines if "error" in line.lower()), lines[-1])
        raise TargetError(f"{what} failed (exit {done.returncode}): {detail.strip()[:200]}")
    return done.stdout


# -- qemu-m4 and a serial port --------------------------------------------------------------------

class QemuTarget:
    """The benchmark firmware (firmware/, fusegen.bench) with the model linked in, built for one
    target of fusegen/bench/targets.py and run in its QEMU machine with -icount: instructions
    per inference, exactly repeatable."""

    def __init__(self, name: str = "qemu-m4"):
        from fusegen.bench.targets import get

        self.spec = get(name)
        self.name = name

    @property
    def TOOLS(self) -> tuple[str, ...]:  # the tools this target needs
        return (*self.spec.tools, self.spec.tools[1].replace("gcc", "size"))

    def unavailable(self) -> str | None:
        missing = [tool for tool in self.TOOLS if shutil.which(tool) is None]
        if missing:
            return f"{self.name} needs {', '.join(missing)} (run scripts/setup.sh)"
        try:
            import fusegen.bench.runner  # noqa: F401
        except ImportError as err:
            return f"{self.name} needs the benchmark firmware's host side (fusegen.bench): {err}"
        return None

    def measure(self, artifacts: ModelArtifacts) -> Measurement:
        from fusegen.bench.firmware.build import FirmwareConfig, build_dir
        from fusegen.bench.runner import bench_qemu

        config = FirmwareConfig(target=self.name, opt="O2", model_sources=artifacts.sources,
                                model_include_dirs=artifacts.include_dirs)
        root = artifacts.work_dir / "qemu"
        result = bench_qemu(config, artifacts.inputs, reset_each=True, build_root=root)
        _check_outputs(result.outputs.reshape(artifacts.expected.shape), artifacts.expected)
        size = self.spec.tools[1].replace("gcc", "size")
        flash, ram = _arm_sizes(build_dir(config, root), artifacts.sources, size)
        parts = _arm_flash_parts(build_dir(config, root), artifacts.sources, size)
        spec = self.spec
        method = (f"{spec.qemu_binary} {spec.machine} ({spec.core}) -icount, -O2, in "
                  f"fw_model_run; {spec.float_note}")
        stack = (f"deepest stack during an inference on {self.name}: {result.stack_used} B "
                 "(not in RAM B)")
        split = (f"{artifacts.name} on {self.name}: flash B = " + " + ".join(
            f"{part} {n:,}" for part, n in parts.items()))
        return Measurement(result.unit, float(np.mean(result.counts)), flash, ram, method,
                           (stack, split), float(np.min(result.counts)),
                           float(np.max(result.counts)), _layers(result, artifacts.op_names))


class QemuM4Target(QemuTarget):
    """qemu-m4: QEMU mps2-an386, Cortex-M4F."""

    def __init__(self) -> None:
        super().__init__("qemu-m4")


def _arm_sizes(build: Path, sources: tuple[Path, ...],
               size: str = "arm-none-eabi-size") -> tuple[int, int]:
    """(text + data, data + bss) of the model's objects in the firmware build tree (CMake
    target fusegen_model of firmware/CMakeLists.txt)."""
    model_dir = build / "CMakeFiles" / "fusegen_model.dir"
    objects = [obj for src in sources for obj in model_dir.rglob(f"{src.name}.obj")]
    if len(objects) != len(sources):
        raise TargetError(f"found {len(objects)} objects for {len(sources)} model sources in "
                          f"{build}")
    out = _run([size, "-B", *map(str, objects)], "size").splitlines()[1:]
    text, data, bss = (sum(int(line.split()[k]) for line in out) for k in range(3))
    return text + data, data + bss


def _arm_flash_parts(build: Path, sources: tuple[Path, ...], size: str) -> dict[str, int]:
    """Flash (text + data) of the model's objects by kind: fw_model.c (weights, the head and the
    calls), the generated cores, the runtime they call."""
    model_dir = build / "CMakeFiles" / "fusegen_model.dir"
    parts: dict[str, int] = {}
    for src in sources:
        kind = ("model and weights" if src.name.startswith("fw_model") else
                "runtime" if src.name.startswith("fg_runtime") else "generated cores")
        for obj in model_dir.rglob(f"{src.name}.obj"):
            line = _run([size, "-B", str(obj)], "size").splitlines()[1].split()
            parts[kind] = parts.get(kind, 0) + int(line[0]) + int(line[1])
    return parts


class SerialTarget:
    """A board already flashed with the benchmark firmware built from the model's sources."""

    name = "port"

    def __init__(self, port: str, baudrate: int = 115200):
        self.port, self.baudrate = port, baudrate

    def unavailable(self) -> str | None:
        if "://" not in self.port and not Path(self.port).exists():
            return f"--port {self.port}: no such device"
        return None

    def measure(self, artifacts: ModelArtifacts) -> Measurement:
        from fusegen.bench.runner import bench_serial

        result = bench_serial(self.port, artifacts.inputs, baudrate=self.baudrate,
                              reset_each=True)
        if result.device.model_name != artifacts.name:
            raise TargetError(f"the board runs model {result.device.model_name!r}, not "
                              f"{artifacts.name!r}: flash firmware built from "
                              f"{', '.join(str(s) for s in artifacts.sources)}")
        _check_outputs(result.outputs.reshape(artifacts.expected.shape), artifacts.expected)
        return Measurement(result.unit, float(np.mean(result.counts)), None,
                           result.stack_used or None, f"board on {self.port}",
                           ("ram is the deepest stack use the firmware saw",),
                           float(np.min(result.counts)), float(np.max(result.counts)),
                           _layers(result, artifacts.op_names))


def _layers(result, names: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    """Mean count of each op the firmware timed (BenchResult.op_counts), named by `names`."""
    per_op = getattr(result, "op_counts", None)
    if not per_op or not names or any(len(c) != len(names) for c in per_op):
        return ()
    means = np.mean(np.asarray(per_op, np.float64), axis=0)
    return tuple((name, float(m)) for name, m in zip(names, means))


def _qemu_names() -> tuple[str, ...]:
    from fusegen.bench.targets import TARGETS as QEMU_TARGETS

    return tuple(QEMU_TARGETS)


TARGETS = ("auto", "host", *_qemu_names())


def select(name: str, port: str | None = None) -> Target:
    """The target for --target NAME / --port; 'auto' is qemu-m4 where it can run, else host."""
    if port:
        target: Target = SerialTarget(port)
    elif name == "auto":
        qemu = QemuM4Target()
        target = qemu if qemu.unavailable() is None else HostTarget()
    elif name == "host":
        target = HostTarget()
    elif name == "qemu-m4":
        target = QemuM4Target()
    elif name in TARGETS:
        target = QemuTarget(name)
    else:
        raise TargetError(f"unknown target {name!r}; choose from {', '.join(TARGETS)}")
    reason = target.unavailable()
    if reason:
        raise TargetError(f"target {target.name} is not available: {reason}")
    return target


def select_all(names: str, port: str | None = None) -> list[Target]:
    """--target a,b,c (or --port): every target, checked, in order, without duplicates."""
    if port:
        return [select("", port)]
    wanted = list(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    if not wanted:
        raise TargetError(f"--target {names!r}: no target named; choose from {', '.join(TARGETS)}")
    return [select(n) for n in wanted]
