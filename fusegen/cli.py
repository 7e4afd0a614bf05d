"""fusegen: Keras recurrent cells as fused TFLite custom ops with TFLM kernels.

Every user error is one line on stderr starting with "fusegen: error:" and a non-zero exit.
TensorFlow's log lines and the libraries' warnings are hidden unless --verbose (fusegen/quiet.py).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from fusegen import quiet
from fusegen.errors import UserError
from fusegen.fileio import read_bytes

# Float32 tolerance against Keras: the fused kernel sums matmuls in another order than TF and
# uses the C library's expf/tanhf; measured errors are ~1e-7 over 50 timesteps, and the gates'
# saturating activations keep them from growing. 1e-5 leaves two orders of magnitude.
FLOAT_TOLERANCE = 1e-5
# int8 verdict against float Keras, in output steps (one step = the output's int8 scale). The
# kernels' measured mean error is 0.23-0.62 steps on every tested cell and whole model
# (tests/test_int8_cells.py derives it: the int8 format's own error, up to ~0.55, plus the
# output rounding, 0.25, plus the kernel's int16 arithmetic, under 0.3), and the test suite
# holds it under 2. A wrong scale or broken requantization is off by tens to millions of steps.
INT8_MEAN_STEPS = 2.0
# The largest single error: errors of a recurrence add up over time on the sample where a gate
# sits near its switching point, so a correct kernel shows a few steps (1.3 on
# tests/test_user_errors.py's LSTM model); 16 steps is 1/16 of the int8 range.
INT8_MAX_STEPS = 16.0
# Accuracy drop with --labels, as a fraction: int8 aims at 1 point of float on a full data set;
# verify usually runs a few hundred samples, where one sample is 0.3-1 point, so 2 points leaves
# room for two samples of sampling noise.
INT8_MAX_ACCURACY_DROP = 0.02


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    quiet.configure(verbose=args.verbose)
    try:
        with quiet.native_stderr():
            return args.run(args) or 0
    except (UserError, FileNotFoundError) as err:
        print(f"fusegen: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fusegen: interrupted", file=sys.stderr)
        return 130


PREFIX_HELP = ("the kernel directory's C++ namespace (fusegen::NAME::RegisterOps) and CMake "
               "target names (default: the directory's name); kernels are added to what the "
               "directory holds")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fusegen", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show TensorFlow's log lines and the libraries' warnings")
    # --verbose also after the command name; SUPPRESS keeps the subparser from resetting it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also show TensorFlow's log lines and the libraries' warnings")
    sub = p.add_subparsers(title="commands", parser_class=_subparser_class(common))

    b = sub.add_parser("build", help="generate kernels for every cell class in a Python file")
    b.add_argument("cell_file", help="a .py file defining Keras cells, or lstm|gru|simple_rnn")
    b.add_argument("-o", "--out", default="generated", help="output directory")
    b.add_argument("--cell", action="append", default=[], help="only this class (repeatable)")
    b.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="constructor argument besides units (Python literal; repeatable)")
    b.add_argument("--dump-ir", metavar="DIR", help="write the IR after every pass into DIR")
    b.add_argument("--prefix", metavar="NAME",
                   help=PREFIX_HELP)
    b.set_defaults(run=_cmd_build)

    c = sub.add_parser("convert", help="Keras model -> .tflite with one custom op per RNN layer")
    c.add_argument("model", help="a .keras model file")
    c.add_argument("-o", "--out", required=True, help="the .tflite to write")
    c.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE.py",
                   help="a file defining the model's custom cells/layers (repeatable)")
    c.add_argument("--kernels", metavar="DIR", help="also write the kernels the model needs "
                   "(added to the directory's other kernels)")
    c.add_argument("--prefix", metavar="NAME",
                   help=PREFIX_HELP)
    c.add_argument("--quantize", choices=["float32", "int8"], default="float32",
                   help="int8: full-integer model (int8 input/output, every op int8)")
    c.add_argument("--calibration", metavar="X.npy",
                   help="with --quantize int8: N input samples like the deployment data")
    c.add_argument("--per-channel", action="store_true",
                   help="with --quantize int8: one weight scale per output channel of each matrix "
                        "in the fused ops (default: one per matrix)")
    c.add_argument("--length-input", action="store_true",
                   help="the model takes a scalar int32 input 'length' (after its data): every "
                        "fused op runs the first `length` steps (clamped to 0..T)")
    c.set_defaults(run=_cmd_convert)

    v = sub.add_parser("verify", help="run the fused layers' C cores against Keras")
    v.add_argument("tflite")
    v.add_argument("--keras", required=True, help="the .keras model it was converted from")
    v.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE.py")
    v.add_argument("--inputs", required=True, help=".npy of N samples shaped like the input")
    v.add_argument("--lengths", metavar="L.npy", help="a file converted with --length-input: "
                   "N integer lengths in 1..T, one per sample (default T); the reference is "
                   "Keras on each sample's first L steps")
    v.add_argument("--tolerance", type=float, default=FLOAT_TOLERANCE,
                   help="float32: max abs error against Keras")
    v.add_argument("--labels", metavar="Y.npy", help="class labels: also report accuracy "
                   "(Keras float against the file, float32 or int8)")
    v.add_argument("--mean-steps", type=float, default=INT8_MEAN_STEPS,
                   help="int8: fail when the mean error against Keras exceeds this many output "
                        "steps (default %(default)s)")
    v.add_argument("--max-steps", type=float, default=INT8_MAX_STEPS,
                   help="int8: fail when any output is further from Keras than this many output "
                        "steps (default %(default)s)")
    v.add_argument("--max-accuracy-drop", type=float, default=INT8_MAX_ACCURACY_DROP,
                   help="with --labels: fail when the file's accuracy is below Keras' by more "
                        "than this fraction (default %(default)s, i.e. 2 points)")
    v.add_argument("--tflm-include", metavar="DIRS",
                   help="also run the whole .tflite with TFLM: its include dirs, colon-separated "
                        "(TFLM root, flatbuffers/include, ...)")
    v.add_argument("--tflm-lib", metavar="LIB", help="TFLM's static library (with --tflm-include)")
    v.add_argument("--tflm-flag", action="append", default=[], metavar="FLAG",
                   help="extra compiler flag for the TFLM runner (repeatable)")
    v.set_defaults(run=_cmd_verify)

    from fusegen.bench.cli import add_arguments as add_bench_arguments
    from fusegen.bench.cli import main as bench_main
    e = sub.add_parser("bench", help="run a converted model's fused ops on a Cortex-M4 (QEMU or "
                       "a board): outputs checked, instructions, flash and RAM measured")
    add_bench_arguments(e)
    e.set_defaults(run=bench_main)

    from fusegen.compare.cli import add_compare_parser
    add_compare_parser(sub)
    return p


def _subparser_class(common: argparse.ArgumentParser) -> type:
    class Sub(argparse.ArgumentParser):
        def __init__(self, **kwargs):
            super().__init__(parents=[common], **kwargs)
    return Sub


# -- build -------------------------------------------------------------------------------------

def _cmd_build(args) -> int:
    from fusegen.commands.build import build_cells, cell_classes_from

    classes = cell_classes_from(args.cell_file, args.cell)
    kwargs = dict(_parse_arg(a) for a in args.arg)
    results, failed = build_cells(classes, kwargs, Path(args.out), args.dump_ir, args.prefix)
    for r in results:
        print(f"{r.class_name:24s} -> {r.op_name:28s} params {r.params}  states {r.states}")
    if results:
        print(f"wrote {len(results)} kernel(s) to {args.out}/ (fusegen_ops.h, CMakeLists.txt)")
    for f in failed:
        print(f"fusegen: error: {f.class_name}: {f.error}", file=sys.stderr)
    if failed and len(failed) + len(results) > 1:  # a summary only when there is a choice
        print(f"fusegen: error: {len(failed)} of {len(failed) + len(results)} cell(s) failed: "
              f"{', '.join(f.class_name for f in failed)}", file=sys.stderr)
    return 1 if failed else 0


def _parse_arg(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise UserError(f"--arg {text!r}: expected NAME=VALUE")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value  # a bare word, e.g. an activation name


# -- convert -----------------------------------------------------------------------------------
def _cmd_convert(args) -> int:
    from fusegen.commands.build import convert_model

    if args.quantize == "int8" and not args.calibration:
        raise UserError("--quantize int8 needs --calibration X.npy (input samples)")
    if args.per_channel and args.quantize != "int8":
        raise UserError("--per-channel is for --quantize int8")
    result = convert_model(Path(args.model), args.imports, Path(args.out),
                           Path(args.kernels) if args.kernels else None,
                           Path(args.calibration) if args.quantize == "int8" else None,
                           args.per_channel, args.prefix, args.length_input)
    for layer, op in result.layers:
        print(f"layer {layer:24s} -> CUSTOM {op}")
    print(f"wrote {args.out}: {result.size} bytes, {args.quantize} "
          f"({result.weight_bytes} bytes of float32 weights in the Keras model)")
    if args.kernels:
        print(f"wrote kernels for {', '.join(sorted(result.ops))} to {args.kernels}/")
    return 0


# -- verify ------------------------------------------------------------------------------------
def _has_length_input(data: bytes, source: str) -> bool:
    from fusegen.converter import validate

    return validate.length_input(validate.read_model(data, source)) is not None


def _cmd_verify(args) -> int:
    from fusegen.converter.int8.chain import is_int8
    from fusegen.commands.verify import verify_model

    data = read_bytes(args.tflite, "model")
    if is_int8(data, args.tflite):
        return _verify_int8(args)
    lengths = Path(args.lengths) if args.lengths else None
    if lengths is not None or _has_length_input(data, args.tflite):
        from fusegen.commands.verify import verify_lengths_float
        if args.tflm_include or args.tflm_lib or args.labels:
            raise UserError("--length-input files verify on the host only: drop --tflm-* and "
                            "--labels")
        report = [verify_lengths_float(Path(args.tflite), Path(args.keras), args.imports,
                                       Path(args.inputs), lengths)]
    else:
        report = verify_model(Path(args.tflite), Path(args.keras), args.imports,
                              Path(args.inputs))
    ok = True
    print(f"{'layer':20s} {'op':28s} {'samples':>7s} {'max abs err':>12s} {'max rel err':>12s}")
    for row in report:
        ok &= row.max_abs <= args.tolerance
        print(f"{row.layer:20s} {row.op_name:28s} {row.samples:7d} {row.max_abs:12.3e} "
              f"{row.max_rel:12.3e}")
    if args.labels:
        ok &= _verify_float_accuracy(args)
    if args.tflm_include or args.tflm_lib:
        ok &= _verify_tflm(args)
    verdict = "PASS" if ok else "FAIL"
    print(f"{verdict}: tolerance {args.tolerance:.1e} (absolute, float32 against Keras)")
    return 0 if ok else 1


def _verify_float_accuracy(args) -> bool:
    from fusegen.commands.verify import float_accuracy

    keras_acc, file_acc = float_accuracy(Path(args.tflite), Path(args.keras), args.imports,
                                         Path(args.inputs), Path(args.labels))
    drop = keras_acc - file_acc
    print(f"accuracy: Keras float {keras_acc:.4f}, float32 file {file_acc:.4f} (drop "
          f"{drop:+.4f}, bound {args.max_accuracy_drop})")
    return drop <= args.max_accuracy_drop


def _verify_tflm(args) -> bool:
    from fusegen.commands.verify import verify_model_tflm
    from fusegen.host.tflm import TflmError

    if not (args.tflm_include and args.tflm_lib):
        raise UserError("--tflm-include and --tflm-lib go together")
    try:
        row = verify_model_tflm(Path(args.tflite), Path(args.keras), args.imports,
                                Path(args.inputs), args.tflm_include.split(":"), args.tflm_lib,
                                args.tflm_flag)
    except TflmError as err:
        raise UserError(str(err)) from None
    print(f"{'whole model (TFLM)':20s} {'MicroInterpreter':28s} {row.samples:7d} "
          f"{row.max_abs:12.3e} {row.max_rel:12.3e}  arena_used_bytes {row.arena_used_bytes}")
    return row.max_abs <= args.tolerance


def _verify_int8(args) -> int:
    from fusegen.commands.verify import verify_int8

    labels = Path(args.labels) if args.labels else None
    r = verify_int8(Path(args.tflite), Path(args.keras), args.imports, Path(args.inputs), labels,
                    Path(args.lengths) if args.lengths else None)
    mean_steps, max_steps = r.mean_abs / r.output_step, r.max_abs / r.output_step
    print(f"int8 model against float Keras on {r.samples} samples: mean abs error {r.mean_abs:.3e}"
          f" ({mean_steps:.2f} output steps), max {r.max_abs:.3e} ({max_steps:.1f} output steps "
          f"of {r.output_step:.3e})")
    failed = []
    if not mean_steps <= args.mean_steps:
        failed.append(f"mean error {mean_steps:.2f} steps > --mean-steps {args.mean_steps}")
    if not max_steps <= args.max_steps:
        failed.append(f"max error {max_steps:.1f} steps > --max-steps {args.max_steps}")
    if r.keras_accuracy is not None:
        drop = r.keras_accuracy - r.int8_accuracy
        print(f"accuracy: Keras float {r.keras_accuracy:.4f}, int8 {r.int8_accuracy:.4f} (drop "
              f"{drop:+.4f})")
        if drop > args.max_accuracy_drop:
            failed.append(f"accuracy drop {drop:.4f} > --max-accuracy-drop "
                          f"{args.max_accuracy_drop}")
    if failed:
        print(f"FAIL: {'; '.join(failed)}")
        return 1
    print(f"PASS: mean <= {args.mean_steps} and max <= {args.max_steps} output steps"
          + (f", accuracy drop <= {args.max_accuracy_drop}" if r.keras_accuracy is not None
             else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
