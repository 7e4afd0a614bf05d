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

# verify's bounds and why: fusegen/verdict.py (one module for the CLI, the API and compare).
from fusegen.verdict import FLOAT_TOLERANCE  # noqa: F401 - the tests' bound, re-exported
from fusegen.verdict import FloatBounds, Int8Bounds, add_bound_arguments


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
    v.add_argument("--inputs", required=True, help=".npy of N samples shaped like the input; "
                   "or sequences of different lengths: an object array of N [L, F] arrays, or "
                   "a padded array with --lengths (real steps first)")
    v.add_argument("--lengths", metavar="L.npy", help="N integer lengths in 1..T, one per "
                   "sample: a file converted with --length-input runs them (default T; the "
                   "reference is Keras on each sample's first L steps); a model starting with "
                   "Masking or Embedding(mask_zero=True) gets its padding value after them")
    v.add_argument("--labels", metavar="Y.npy", help="class labels: also report accuracy "
                   "(Keras float against the file, float32 or int8)")
    add_bound_arguments(v)
    v.add_argument("--profile", action="store_true",
                   help="int8: the error per timestep and the op whose quantization "
                        "contributes most, per recurrent layer")
    v.add_argument("--tflm-include", metavar="DIRS",
                   help="also run the whole .tflite with TFLM: its include dirs, colon-separated "
                        "(TFLM root, flatbuffers/include, ...)")
    v.add_argument("--tflm-lib", metavar="LIB", help="TFLM's static library (with --tflm-include)")
    v.add_argument("--tflm-flag", action="append", default=[], metavar="FLAG",
                   help="extra compiler flag for the TFLM runner (repeatable)")
    v.set_defaults(run=_cmd_verify)

    from fusegen.bench.cli import add_arguments as add_bench_arguments
    from fusegen.bench.cli import main as bench_main
    e = sub.add_parser("bench", help="run a model on a microcontroller core (QEMU or a board), "
                       "its fused ops in C or the whole file through your TFLM: outputs "
                       "checked, time, flash, RAM and TFLM arena measured")
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
        from fusegen.bench.firmware.arena import estimate

        print(estimate(Path(args.out).read_bytes(), Path(args.kernels)).line())
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
        if args.tflm_include or args.tflm_lib:  # else an int8 verify passed without TFLM
            raise UserError(f"{args.tflite} is an int8 model: verify --tflm-* runs float32 files "
                            "through TFLM; check an int8 file under TFLM with `fusegen bench "
                            "FILE --kernels DIR --tflm-include ... --tflm-lib ...` (TFLM's "
                            "outputs against the host run, tolerance 0)")
        return _verify_int8(args)
    from fusegen.commands.verify import float_rule, float_table

    lengths = Path(args.lengths) if args.lengths else None
    if _has_length_input(data, args.tflite):
        from fusegen.commands.verify import verify_lengths_float
        if args.tflm_include or args.tflm_lib or args.labels:
            raise UserError("--length-input files verify on the host only: drop --tflm-* and "
                            "--labels")
        report = [verify_lengths_float(Path(args.tflite), Path(args.keras), args.imports,
                                       Path(args.inputs), lengths)]
    else:
        report = verify_model(Path(args.tflite), Path(args.keras), args.imports,
                              Path(args.inputs), lengths)
    print(float_table(report, args.tolerance, FloatBounds(args.factor, args.rel_tolerance)))
    ok = all(float_passed(row, args) for row in report)
    if args.labels:
        ok &= _verify_float_accuracy(args)
    if args.tflm_include or args.tflm_lib:
        bound = args.tolerance if args.tolerance is not None else max(
            [row.bound(FloatBounds(args.factor, args.rel_tolerance)) for row in report] or [0])
        ok &= _verify_tflm(args, bound)
    print(f"{'PASS' if ok else 'FAIL'}: {float_rule(args.tolerance, args.factor, args.rel_tolerance)}")
    return 0 if ok else 1


def float_passed(row, args) -> bool:
    if args.tolerance is not None:
        return row.max_abs <= args.tolerance
    return row.passed(FloatBounds(args.factor, args.rel_tolerance))


def _verify_float_accuracy(args) -> bool:
    from fusegen.commands.verify import float_accuracy

    keras_acc, file_acc = float_accuracy(Path(args.tflite), Path(args.keras), args.imports,
                                         Path(args.inputs), Path(args.labels),
                                         Path(args.lengths) if args.lengths else None)
    drop = keras_acc - file_acc
    print(f"accuracy: Keras float {keras_acc:.4f}, float32 file {file_acc:.4f} (drop "
          f"{drop:+.4f}, bound {args.max_accuracy_drop})")
    return drop <= args.max_accuracy_drop


def _verify_tflm(args, bound: float) -> bool:
    from fusegen.commands.verify import verify_model_tflm
    from fusegen.host.tflm import TflmError

    if not (args.tflm_include and args.tflm_lib):
        raise UserError("--tflm-include and --tflm-lib go together")
    try:
        row = verify_model_tflm(Path(args.tflite), Path(args.keras), args.imports,
                                Path(args.inputs), args.tflm_include.split(":"), args.tflm_lib,
                                args.tflm_flag, Path(args.lengths) if args.lengths else None)
    except TflmError as err:
        raise UserError(str(err)) from None
    print(f"{'whole model (TFLM)':20s} {'MicroInterpreter':28s} {row.samples:7d} "
          f"{row.max_abs:12.3e} {row.max_rel:12.3e}  arena_used_bytes {row.arena_used_bytes}")
    return row.max_abs <= bound


def _verify_int8(args) -> int:
    from fusegen.commands.verify import verify_int8

    labels = Path(args.labels) if args.labels else None
    r = verify_int8(Path(args.tflite), Path(args.keras), args.imports, Path(args.inputs), labels,
                    Path(args.lengths) if args.lengths else None)
    mean_steps, max_steps = r.mean_abs / r.output_step, r.max_abs / r.output_step
    print(f"int8 model against float Keras on {r.samples} samples: mean abs error {r.mean_abs:.3e}"
          f" ({mean_steps:.2f} output steps), max {r.max_abs:.3e} ({max_steps:.1f} output steps "
          f"of {r.output_step:.3e})")
    drop = None
    if r.keras_accuracy is not None:
        drop = r.keras_accuracy - r.int8_accuracy
        print(f"accuracy: Keras float {r.keras_accuracy:.4f}, int8 {r.int8_accuracy:.4f} (drop "
              f"{drop:+.4f})")
    if args.profile:
        from fusegen.commands.profile import profile_model
        from fusegen.commands.verify import load_inputs
        from fusegen.frontend.keras_model import import_file, load_model

        model = load_model(Path(args.keras), [import_file(p) for p in args.imports])
        for p in profile_model(model, load_inputs(Path(args.inputs), model)):
            print(p.text())
    bounds = Int8Bounds(args.mean_steps, args.max_steps, args.max_accuracy_drop)
    failed = bounds.failures(mean_steps, max_steps, drop)
    if failed:
        print(f"FAIL: {'; '.join(failed)}")
        return 1
    print(f"PASS: mean <= {args.mean_steps} and max <= {args.max_steps} output steps"
          + (f", accuracy drop <= {args.max_accuracy_drop}" if r.keras_accuracy is not None
             else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
