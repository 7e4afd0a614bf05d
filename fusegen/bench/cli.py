"""`fusegen bench` (also ``python -m fusegen.bench``): run a model on a microcontroller core in QEMU
(--target, fusegen/bench/targets.py: Cortex-M0 to M55, an STM32F405, RV32) or on a board (--port)
and measure it.

Core mode, for a converted model: the fused ops' generated compute cores run directly, with the
weights compiled in, no TFLM; the outputs are checked against the host-compiled cores.

    fusegen bench model.tflite --kernels generated/ --inputs x.npy --target qemu-m4 --json r.json
    fusegen bench model.tflite --kernels generated/ --inputs x.npy --port /dev/ttyACM0 \
        --board-sources board.c --linker-script board.ld \
        --flash-command "openocd -f board.cfg -c 'program {elf} reset exit'"

TFLM mode, the whole .tflite (fused ops and builtins) through your TFLM's MicroInterpreter,
built for the target (fusegen ships no TFLM; firmware/README.md, "TFLM mode"); the outputs are
checked against the same file run op by op on the host (converter/host_file.py):

    fusegen bench model.tflite --kernels generated/ --inputs x.npy --target qemu-m4 \
        --tflm-include TFLM:TFLM/.../flatbuffers/include:... --tflm-lib libtensorflow-microlite.a

Custom firmware models (sources implementing firmware/app/fw_model.h; none: the echo model):

    fusegen bench --model-sources my_model.c --inputs x.npy --target qemu-m4

Errors are one line on stderr starting with "fusegen: error:" and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from fusegen.codegen import registration
from fusegen.bench.firmware.build import (
    BUILD_TYPES,
    DEFAULT_BUILD_ROOT,
    FirmwareBuildError,
    FirmwareConfig,
    build_firmware,
)
from fusegen.bench.cycles import CycleError
from fusegen.bench.link.qemu import QemuError
from fusegen.bench.link.serial_link import DeviceError, LinkError, SerialLink
from fusegen.bench.runner import (BenchError, BenchResult, ModelInitError, bench_qemu,
                                   bench_serial)
from fusegen.bench.targets import TARGETS

_FLASH_TIMEOUT_S = 300
# What building a firmware and running it can fail with (the benchmarks' scripts catch these
# too: one line, exit 1).
DEVICE_ERRORS = (BenchError, CycleError, DeviceError, FirmwareBuildError, LinkError, QemuError,
                 OSError)
# ValueError covers ModelError and IRError; RuntimeError the host core's CompileError.
_ERRORS = (*DEVICE_ERRORS, ValueError, RuntimeError)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", type=Path,
                        help="a .tflite converted by `fusegen convert` (core mode)")
    parser.add_argument("--kernels", type=Path,
                        help="with a model: the kernel directory `fusegen convert --kernels` wrote "
                             "(TFLM mode: not needed for a model without fused ops)")
    parser.add_argument("--inputs", type=Path, required=True,
                        help=".npy of N samples [N, T, I] (or one [T, I]); without a model, its "
                             "last axis (or axes) hold one inference's input")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--target", choices=sorted(TARGETS), default="qemu-m4",
                       help="build the firmware for this core and run it in QEMU (default "
                            "qemu-m4; see the targets table in firmware/README.md)")
    where.add_argument("--port", help="serial port or pyserial URL of a flashed board")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--flash-command",
                        help="with --port: build the generic port and run this command to flash "
                             "it; {elf} is replaced by the ELF path")
    parser.add_argument("--board-sources", type=Path, nargs="*", default=[])
    parser.add_argument("--linker-script", type=Path)
    parser.add_argument("--model-sources", type=Path, nargs="*", default=[],
                        help="without a model: sources implementing firmware/app/fw_model.h")
    parser.add_argument("--model-include-dirs", type=Path, nargs="*", default=[])
    parser.add_argument("--tflm-include", help="TFLM mode: colon-separated TFLM include dirs "
                        "(TFLM root, flatbuffers/include, gemmlowp, ruy)")
    parser.add_argument("--tflm-lib", type=Path, help="TFLM mode: libtensorflow-microlite.a "
                        "built for the target (Cortex-M4F: hard float)")
    parser.add_argument("--tflm-arena", type=int, default=64 * 1024,
                        help="TFLM mode: tensor arena bytes (default 64 KiB)")
    parser.add_argument("--tflm-flag", action="append", default=[], metavar="FLAG",
                        help="TFLM mode: extra compiler flag for the model, the kernels and "
                             "TFLM's headers, as TFLM was built (repeatable; a release TFLM "
                             "build needs -DTF_LITE_STRIP_ERROR_STRINGS)")
    parser.add_argument("--timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                        help="longest one inference may take before the device is reported "
                             "hung (default: for the first 30 s, or in core mode more if the "
                             "model's MACs need it; then 4x its count at 2 million "
                             "instructions/s on QEMU or at the board's clock, at least 5 s)")
    parser.add_argument("--opt", choices=sorted(BUILD_TYPES), default="O2")
    parser.add_argument("--cycles", action="store_true",
                        help="core mode on QEMU: also estimate Cortex-M4 cycles of the first "
                             "inference from a traced QEMU session (fusegen/bench/cycles.py)")
    parser.add_argument("--reset-each", action="store_true",
                        help="custom models: clear the recurrent state before every inference")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="core mode: largest absolute difference from the host core "
                             "(default 1e-5 for float32, 0 for int8)")
    parser.add_argument("--output", type=Path, help="write the device's outputs as .npy")
    parser.add_argument("--json", "--report", dest="json", type=Path,
                        help="write the numbers as JSON")
    parser.add_argument("--build-root", type=Path, default=DEFAULT_BUILD_ROOT,
                        help="where firmware builds go (default build/)")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like KeyboardInterrupt, so every `with` stops its
    child (QemuMachine kills QEMU) and no output file is half written."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    # Once: a second signal must not interrupt the clean-up the first one started.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def main(args: argparse.Namespace) -> int:
    """Runs the command; every expected failure is one line on stderr and status 1."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        if in_main_thread:
            for sig in previous:
                signal.signal(sig, _on_signal)
        return _main(args)
    except _ERRORS as e:
        print(f"fusegen: error: {one_line(e, Path(args.build_root))}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"fusegen: error: interrupted by {e}; QEMU and the build were stopped and no "
              "output was written", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def one_line(error: BaseException, build_root: Path) -> str:
    """The first line of an error. The rest (a compiler's or QEMU's output) goes to a log file
    whose path the line ends with; QEMU errors already name their log."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [
        type(error).__name__]
    first = lines[0].rstrip(":")
    if len(lines) == 1:
        return first
    log = next((line for line in lines[1:] if line.startswith("(log:")), "")
    if not log:
        path = build_root / "fusegen-bench-error.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(str(error) + "\n")
            log = f"(log: {path})"
        except OSError:
            return first
    return f"{first} {log}"


def _main(args: argparse.Namespace) -> int:
    if args.tflm_include or args.tflm_lib:
        return _tflm_mode(args)
    if args.model is not None:
        return _core_mode(args)
    if args.kernels is not None:
        raise BenchError("--kernels needs a model.tflite (core mode); custom firmware models take "
                         "--model-sources")
    return _custom_mode(args)


# --- core mode -------------------------------------------------------------------------------

def _core_mode(args: argparse.Namespace) -> int:
    from fusegen.fileio import read_bytes
    from fusegen.bench.core_bench import CoreBench, core_firmware, load_inputs
    from fusegen.bench.firmware.core_model import HostChain, read_chain
    from fusegen.bench.firmware.model_source import runtime_notes

    _check_core_args(args)
    print(f"reading {args.model} and the kernels in {args.kernels}", flush=True)
    chain = read_chain(read_bytes(args.model, "model"), args.kernels)
    for note in runtime_notes(args.kernels, chain.dtype):
        print(note, flush=True)
    x = load_inputs(load_npy(args.inputs), chain, str(args.inputs))
    host = HostChain(chain)
    board, cache = _board(args)
    config = core_firmware(chain, host.plans(), args.kernels, args.model.stem, opt=args.opt,
                           board=board, cache=cache, build_root=args.build_root,
                           source=args.model.name, target=args.target)
    progress = _progress
    if args.port:
        memory = _flash_core(args, config) if args.flash_command else None
        with SerialLink.open(args.port, baudrate=args.baud) as link:
            link.ping()
            bench = CoreBench.run(chain, link, x, host, memory, progress, args.timeout)
    else:
        bench = CoreBench.run_qemu(chain, config, x, host, args.build_root, progress,
                                   args.timeout)
    if args.tolerance is not None:
        bench.tolerance = args.tolerance
    target = TARGETS[args.target]
    extra = _estimate_cycles(args, chain, config, x, host) if args.cycles else {}
    _write_outputs(args, bench.result.outputs, {**bench.summary(), "model": str(args.model),
                                                "target": args.port or args.target,
                                                "core": None if args.port else target.core,
                                                "float": None if args.port else target.float_note,
                                                "counter": None if args.port else target.counter,
                                                "opt": args.opt, **extra})
    if not args.port:
        print(f"{args.target}: {target.core}, int8 kernels {target.kernels}, "
              f"{target.float_note}; {target.counter}")
    print(bench.table())
    if extra:
        print(f"estimated M4 cycles (first input): {extra['estimated_m4_cycles']:,} for "
              f"{extra['traced_instructions']:,} traced instructions (Cortex-M4 TRM timings, "
              "zero wait states: an estimate; see fusegen/bench/cycles.py)")
    if not bench.passed:
        raise BenchError(f"the device's outputs differ from the host core by up to "
                         f"{bench.max_abs_diff:.3e} (tolerance {bench.tolerance:.0e}); were the "
                         f"kernels in {args.kernels} generated for this model?")
    return 0


def _estimate_cycles(args: argparse.Namespace, chain, config: FirmwareConfig, x: np.ndarray,
                     host) -> dict:
    """Re-runs the first input in a traced QEMU session; the histogram's cycles and count."""
    import tempfile

    from fusegen.bench.core_bench import CoreBench
    from fusegen.bench.cycles import estimate_from_log

    with tempfile.TemporaryDirectory() as work:
        trace = Path(work) / "trace.log"
        _progress("estimating cycles: the first input again, traced")
        CoreBench.run_qemu(chain, config, x[:1], host, args.build_root, lambda _m: None,
                           trace_path=trace)
        est = estimate_from_log(trace, build_firmware(config, args.build_root))
    return {"estimated_m4_cycles": est.cycles, "traced_instructions": est.instructions,
            "instruction_classes": dict(est.histogram)}


def _check_core_args(args: argparse.Namespace) -> None:
    if args.cycles and args.port:
        raise BenchError("--cycles traces QEMU's execution: use it with --target, not --port")
    if args.cycles and TARGETS[args.target].cycle_table != "cortex-m4":
        raise BenchError(f"--cycles estimates Cortex-M4 cycles; {args.target} is a "
                         f"{TARGETS[args.target].core}: use --target qemu-m4 or qemu-stm32f405")
    if not args.model.is_file():
        raise BenchError(f"{args.model}: no such file")
    if args.kernels is None:
        raise BenchError("core mode needs --kernels DIR, the kernel directory `fusegen convert "
                         "--kernels DIR` wrote for this model")
    if not args.kernels.is_dir():
        raise BenchError(f"--kernels {args.kernels}: not a directory (write it with `fusegen "
                         "convert model.keras -o model.tflite --kernels DIR`)")
    if args.model_sources:
        raise BenchError("--model-sources is for custom firmware models; core mode generates the "
                         "model source from the .tflite")
    if not args.inputs.is_file():
        raise BenchError(f"--inputs {args.inputs}: no such file")
    _check_qemu(args)


def _flash_core(args: argparse.Namespace, config: FirmwareConfig):
    from fusegen.bench.firmware.memory import memory_report

    elf = _flash(args, config)
    return memory_report(elf.with_name("fw.map"),
                         int(config.cmake_definitions()["FUSEGEN_STACK_BYTES"]))


def load_npy(path: Path) -> np.ndarray:
    """A non-empty numeric array (fileio.load_npy), errors as BenchError."""
    from fusegen.errors import UserError
    from fusegen.fileio import load_npy as load

    try:
        return load(path)
    except UserError as e:
        raise BenchError(str(e)) from None


def _progress(message: str) -> None:
    print(message, flush=True)


# --- TFLM mode -------------------------------------------------------------------------------

def _tflm_mode(args: argparse.Namespace) -> int:
    from fusegen.bench.firmware.core_model import kernel_graphs
    from fusegen.converter.int8.chain import io_qparams
    from fusegen.host.file import HostFile
    from fusegen.host.tflm import RELEASE_HINT, io_tensors, lacks_micro_printf, model_ops
    from fusegen.quantize.scales import quantize_int8

    _check_tflm_args(args)
    data = args.model.read_bytes()
    model_in, model_out = io_tensors(data)
    in_shape, in_type, out_type = model_in.shape, model_in.dtype, model_out.dtype
    x = load_npy(args.inputs)
    if x.shape == in_shape[1:]:
        x = x[None]
    if tuple(x.shape[1:]) != tuple(in_shape[1:]):
        raise BenchError(f"--inputs of shape {x.shape} are not N samples of the model input "
                         f"{list(in_shape[1:])}")
    if in_type == np.int8 and x.dtype != np.int8:  # float inputs: the model input's qparams
        x = quantize_int8(x, io_qparams(data)[0])
    x = x.astype(in_type)
    config = _tflm_firmware(args, data, args.tflm_arena)
    _progress(f"TFLM mode: {args.model.name} through MicroInterpreter, {len(x)} inferences")
    if args.port:
        if args.flash_command:
            _flash(args, config)
    try:
        if args.port:
            result = bench_serial(args.port, x, baudrate=args.baud, reset_each=args.reset_each,
                                  timeout=args.timeout)
        else:
            result = bench_qemu(config, x, reset_each=args.reset_each,
                                build_root=args.build_root, timeout=args.timeout)
    except FirmwareBuildError as err:
        if lacks_micro_printf(str(err)):
            raise BenchError(f"linking the TFLM-mode firmware failed: {args.tflm_lib} "
                             f"{RELEASE_HINT}") from None
        raise
    except ModelInitError as err:
        measured = None if args.port else _measure_arena(args, data)
        raise BenchError(_init_failure(err, args.tflm_arena, measured)) from None
    host = HostFile(data, kernel_graphs(data, args.kernels) if args.kernels is not None else {})
    if args.reset_each:
        expected = host.run(x)
    else:  # the device streams its variables from one inference to the next
        expected = np.stack([host.invoke(sample) for sample in x])
    got = result.outputs.reshape(expected.shape)
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    tolerance = args.tolerance if args.tolerance is not None else (
        0.0 if out_type == np.int8 else 1e-5)
    summary = {**result.summary(), "model": str(args.model), "mode": "tflm",
               "target": args.port or args.target, "max_abs_diff": diff,
               "tolerance": tolerance, "arena_used_bytes": result.device.arena_bytes,
               "arena_bytes": args.tflm_arena}
    _write_outputs(args, got, summary)
    print(_describe(result))
    print(f"TFLM arena: {result.device.arena_bytes} of {args.tflm_arena} bytes used "
          "(MicroInterpreter::arena_used_bytes after AllocateTensors)")
    print(f"outputs against the host run of the same file: max abs diff {diff:.3e} "
          f"(tolerance {tolerance:.0e})")
    if diff > tolerance:
        hint = ""
        if (not args.reset_each and out_type == np.int8
                and "UNIDIRECTIONAL_SEQUENCE_LSTM" in {b.name for b in model_ops(data)[0]}):
            hint = ("; a CMSIS-NN TFLM's int8 UNIDIRECTIONAL_SEQUENCE_LSTM starts every Invoke "
                    "from zero states where TFLM's reference kernel carries them: pass "
                    "--reset-each to bench independent sequences")
        raise BenchError(f"the device's outputs differ from the host run by {diff:.3e}{hint}")
    return 0


def _tflm_firmware(args: argparse.Namespace, data: bytes, arena: int,
                   probe: bool = False) -> FirmwareConfig:
    """The TFLM-mode firmware of args.model with a static arena of `arena` bytes (its model
    source under build_root/tflm-models/<stem>, the arena probe's under <stem>/arena-probe)."""
    from fusegen.bench.firmware.tflm_model import tflm_kernel_sources, write_tflm_model_source

    out_dir = args.build_root / "tflm-models" / args.model.stem / ("arena-probe" if probe else "")
    kernels = [args.kernels] if args.kernels is not None else []
    source = write_tflm_model_source(data, out_dir, args.model.stem,
                                     [registration(k) for k in kernels], args.model.name, arena,
                                     probe)
    options = ["-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON",
               *(f"-isystem{Path(d).resolve()}" for d in args.tflm_include.split(":") if d),
               *args.tflm_flag]
    board, cache = _board(args)
    return FirmwareConfig(board=board, opt=args.opt, target=args.target,
                          model_sources=(source, *tflm_kernel_sources(kernels)),
                          model_include_dirs=tuple(k.resolve() for k in kernels),
                          cache={**cache, "FUSEGEN_MODEL_COMPILE_OPTIONS": ";".join(options),
                                 "FUSEGEN_MODEL_LINK_LIBRARIES": str(args.tflm_lib.resolve())})


# RAM a TFLM-mode firmware needs besides the arena and the stack: TFLM's and the firmware's
# static data and the I/O buffers' slack (the probe below leaves the rest of RAM to the arena).
_PROBE_RAM_RESERVE = 128 * 1024


def _measure_arena(args: argparse.Namespace, data: bytes) -> int | None:
    """The arena the model needs on the emulated target, measured when it did not initialise
    with --tflm-arena: the same firmware with the rest of the target's RAM as its arena
    searches, by bisection in 16-byte steps, the smallest arena AllocateTensors succeeds in,
    and DESCRIBE reports it. (TFLM reports a failed allocation's shortfall only for the first
    allocation that fails, and a release TFLM not at all; arena_used_bytes() misses the
    planner's temporary peak.) None when the probe arena is no larger, or the model does not
    initialise in it either (then it was not the arena)."""
    from fusegen.bench.link.qemu import QemuMachine

    target = TARGETS[args.target]
    probe_bytes = (target.ram_bytes - target.stack_bytes - 2 * target.io_capacity
                   - _PROBE_RAM_RESERVE) // 1024 * 1024
    if probe_bytes <= args.tflm_arena:
        return None
    _progress(f"the model did not initialise with a {args.tflm_arena}-byte arena: measuring the "
              f"arena it needs with {probe_bytes} bytes")
    try:
        elf = build_firmware(_tflm_firmware(args, data, probe_bytes, probe=True), args.build_root)
        with QemuMachine(elf, target=args.target) as qemu:
            info = qemu.link.describe()
    except (FirmwareBuildError, QemuError, LinkError, DeviceError, OSError):
        return None
    return info.arena_bytes if info.input_elems > 0 and info.arena_bytes > 0 else None


def _init_failure(err: ModelInitError, arena: int, measured: int | None = None) -> str:
    """One line: why TFLM's AllocateTensors failed on the device, and what to pass. measured:
    the smallest arena the model initialises in (_measure_arena), when known."""
    if measured is not None and measured > arena:
        return (f"TFLM arena too small: the model needs {measured} bytes (the smallest arena "
                f"it initialises in on the target), --tflm-arena is {arena}; pass --tflm-arena "
                f"{measured} (or more)")
    if err.arena_needed > arena:
        suggest = (err.arena_needed + 1023) // 1024 * 1024
        return (f"TFLM arena too small: the model needs at least {err.arena_needed} bytes, "
                f"--tflm-arena is {arena}; pass --tflm-arena {suggest} (or more)")
    return (f"TFLM could not set up the model on the device (AllocateTensors or an op's "
            f"Prepare failed, arena {arena} bytes); run `fusegen verify --tflm-*` on the host "
            "for the kernel's message")


def _check_tflm_args(args: argparse.Namespace) -> None:
    from fusegen.abi import OP_PREFIX
    from fusegen.converter import tflite_file, validate

    if args.cycles:
        raise BenchError("--cycles is for core mode (a fusegen .tflite without --tflm-lib)")
    if args.model is None or not args.model.is_file():
        raise BenchError("TFLM mode needs a model.tflite (any .tflite: fusegen's own, or a "
                         "builtin-only model such as TF's UNIDIRECTIONAL_SEQUENCE_LSTM)")
    if not (args.tflm_include and args.tflm_lib):
        raise BenchError("TFLM mode needs both --tflm-include and --tflm-lib")
    if not args.tflm_lib.is_file():
        raise BenchError(f"--tflm-lib {args.tflm_lib}: no such file")
    missing = [d for d in args.tflm_include.split(":") if d and not Path(d).is_dir()]
    if missing:
        raise BenchError(f"--tflm-include: not a directory: {', '.join(missing)}")
    model = validate.read_model(args.model.read_bytes())
    fused = [name for name in (tflite_file.op_name(model, op) for op in
                               model.subgraphs[0].operators) if name.startswith(OP_PREFIX)]
    if args.kernels is not None and not args.kernels.is_dir():
        raise BenchError(f"--kernels {args.kernels}: not a directory (write it with `fusegen "
                         "convert model.keras -o model.tflite --kernels DIR`)")
    if fused and args.kernels is None:
        raise BenchError(f"the model has fused ops ({', '.join(sorted(set(fused)))}): TFLM mode "
                         "needs --kernels DIR, the kernel directory `fusegen convert --kernels "
                         "DIR` wrote for this model")
    if not args.inputs.is_file():
        raise BenchError(f"--inputs {args.inputs}: no such file")
    _check_qemu(args)


def _check_qemu(args: argparse.Namespace) -> None:
    binary = TARGETS[args.target].qemu_binary
    if not args.port and shutil.which(binary) is None:
        raise QemuError(f"{binary} not found on PATH: --target {args.target} needs QEMU "
                        "(run scripts/setup.sh) or use --port with a flashed board")


# --- custom firmware models ------------------------------------------------------------------

def _custom_mode(args: argparse.Namespace) -> int:
    if args.cycles:
        raise BenchError("--cycles is for core mode (a fusegen .tflite with --kernels)")
    inputs = load_npy(args.inputs)
    if args.port:
        if args.flash_command:
            _flash(args, firmware_config(args))
        result = bench_serial(args.port, inputs, baudrate=args.baud, reset_each=args.reset_each,
                              timeout=args.timeout)
    else:
        result = bench_qemu(firmware_config(args), inputs, reset_each=args.reset_each,
                            build_root=args.build_root, timeout=args.timeout)
    _write_outputs(args, result.outputs, result.summary())
    print(_describe(result))
    return 0


def firmware_config(args: argparse.Namespace) -> FirmwareConfig:
    board, cache = _board(args)
    return FirmwareConfig(board=board, opt=args.opt, model_sources=tuple(args.model_sources),
                          model_include_dirs=tuple(args.model_include_dirs), cache=cache,
                          target=args.target)


def _board(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The board port and its CMake cache entries: QEMU's, or the generic port for --port."""
    if not args.port:
        return TARGETS[args.target].bsp, {}
    if args.flash_command and (not args.board_sources or not args.linker_script):
        raise BenchError("--flash-command needs --board-sources and --linker-script")
    if not args.flash_command:
        return "generic", {}
    return "generic", {
        "FUSEGEN_BOARD_SOURCES": ";".join(str(p.resolve()) for p in args.board_sources),
        "FUSEGEN_LINKER_SCRIPT": str(args.linker_script.resolve()),
    }


def _flash(args: argparse.Namespace, config: FirmwareConfig) -> Path:
    """Builds the generic port for the board and runs the user's flash command on it."""
    _progress(f"building the firmware for the board ({config.opt})")
    elf = build_firmware(config, args.build_root)
    command = shlex.split(args.flash_command.replace("{elf}", shlex.quote(str(elf))))
    _progress(f"flashing: {' '.join(command)}")
    done = subprocess.run(command, check=False, timeout=_FLASH_TIMEOUT_S)
    if done.returncode != 0:
        raise OSError(f"flash command failed with status {done.returncode}: {command}")
    return elf


def _write_outputs(args: argparse.Namespace, outputs: np.ndarray, summary: dict) -> None:
    if args.output:
        path = args.output  # np.save's naming: .npy is appended when missing
        path = path if path.suffix == ".npy" else path.with_name(path.name + ".npy")
        _write_atomically(path, lambda f: np.save(f, outputs))
    if args.json:
        _write_atomically(args.json, lambda f: f.write((json.dumps(summary, indent=2) + "\n")
                                                        .encode()))


def _write_atomically(path: Path, write) -> None:
    """Writes through a temporary file in path's directory, then renames it over path: an
    interrupted or failed write leaves the previous file (or none), never half a file."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _describe(result: BenchResult) -> str:
    s = result.summary()
    return (f"{s['device']['model_name']} on {s['device']['board_name']}: {s['inferences']} "
            f"inferences, {s['unit']} min {s['count_min']} mean {s['count_mean']:.1f} "
            f"max {s['count_max']} (resolution {s['resolution']}), stack {s['stack_used']} B")


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fusegen bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run())
