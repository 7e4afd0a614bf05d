"""Command line of the benchmark: ``python -m fusegen.bench`` (and ``fusegen bench`` once the
main CLI mounts it with add_arguments/main).

    python -m fusegen.bench --inputs x.npy --target qemu-m4 --opt O2 --report bench.json
    python -m fusegen.bench --kernels generated/ --inputs x.npy --target qemu-m4
    python -m fusegen.bench --inputs x.npy --port /dev/ttyACM0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fusegen.bench.build import BUILD_TYPES, FirmwareConfig
from fusegen.bench.runner import BenchResult, bench_qemu, bench_serial

TARGETS = {"qemu-m4": "mps2_an386"}
MODEL_SUFFIXES = (".c", ".cc", ".cpp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", type=Path, required=True,
                        help=".npy array; its last axis (or axes) hold one inference's input")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--target", choices=sorted(TARGETS), default="qemu-m4",
                       help="build the firmware and run it in QEMU (default qemu-m4)")
    where.add_argument("--port", help="serial port or pyserial URL of a flashed board")
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--kernels", type=Path,
                        help="directory of model sources (*.c, *.cc) implementing fw_model.h")
    parser.add_argument("--model-sources", type=Path, nargs="*", default=[])
    parser.add_argument("--model-include-dirs", type=Path, nargs="*", default=[])
    parser.add_argument("--opt", choices=sorted(BUILD_TYPES), default="O2")
    parser.add_argument("--reset-each", action="store_true",
                        help="clear the recurrent state before every inference")
    parser.add_argument("--output", type=Path, help="write the outputs as .npy")
    parser.add_argument("--report", type=Path, help="write the JSON report here")  # fmt: skip


def firmware_config(args: argparse.Namespace) -> FirmwareConfig:
    sources = list(args.model_sources)
    includes = list(args.model_include_dirs)
    if args.kernels:
        sources += sorted(p for p in args.kernels.iterdir() if p.suffix in MODEL_SUFFIXES)
        includes.append(args.kernels)
    return FirmwareConfig(board=TARGETS[args.target], opt=args.opt,
                          model_sources=tuple(sources), model_include_dirs=tuple(includes))


def main(args: argparse.Namespace) -> int:
    inputs = np.load(args.inputs)
    if args.port:
        result = bench_serial(args.port, inputs, baudrate=args.baud, reset_each=args.reset_each)
    else:
        result = bench_qemu(firmware_config(args), inputs, reset_each=args.reset_each)
    if args.output:
        np.save(args.output, result.outputs)
    summary = result.summary()
    if args.report:
        args.report.write_text(json.dumps(summary, indent=2) + "\n")
    print(_describe(result))
    return 0


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
