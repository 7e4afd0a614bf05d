"""`fusegen compare`: the subcommand's options and what it runs, in order.

    fusegen compare --cells lstm,gru,simple_rnn,examples/minimal_gated.py:MinimalGatedCell \\
        --units 32 --dataset japanese_vowels --quantize float32,int8 --target host -o report/
    fusegen compare --train train.npz --test test.npz --cells gru
    fusegen compare --models a.keras b.keras --import my_cells.py --dataset digits

Everything given is checked before the first cell trains; a bad name, file, shape or target is
one line on stderr. Failures while a cell runs go to that cell's rows instead.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import time
from pathlib import Path

from fusegen.compare.datasets import LOADERS, DataError, Dataset

DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 15
DEFAULT_BATCH = 16
DESCRIPTION = """Train a small classifier per cell, deploy each with fusegen (convert, verify against
Keras, run the whole model's C on a target, float32 and int8) and compare accuracy, size and
speed with the stock converter's unroll=True model; with your TFLM build (--tflm-*) the
unroll=True models and, for LSTM, TF's builtin LSTM are timed too. Writes OUT/summary.md,
summary.csv, tradeoff.png, size.png and training.png; finished cells are cached in OUT/.cache."""
EXAMPLES = """examples:
  fusegen compare -o report/
  fusegen compare --cells lstm,gru,examples/minimal_gated.py:MinimalGatedCell --units 32 \\
      --dataset japanese_vowels --quantize float32,int8 --target host -o report/
  fusegen compare --train train.npz --test test.npz --cells gru
      (x [N,T,F]; or sequences of different lengths: x an object array of [L,F] arrays, or
      x padded after each sequence's real steps plus lengths [N]: compare pads to the longest
      with a value below every real one, trains with Masking, and times inference at T and
      at the test set's mean length)
  fusegen compare --models a.keras b.keras --import my_cells.py --dataset digits"""
DEFAULT_CELLS = "lstm,gru,simple_rnn,examples/minimal_gated.py:MinimalGatedCell"


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="train small classifiers per cell, deploy them with "
                       "fusegen and compare accuracy, size and speed with unroll=True",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--cells", default=DEFAULT_CELLS,
                      help="comma-separated: lstm, gru, simple_rnn, FILE.py:Class or FILE.py "
                      f"(default: {DEFAULT_CELLS}; examples/ is the repository's)")
    what.add_argument("--models", nargs="+", metavar="MODEL.keras",
                      help="trained Input -> RNN -> Dense models instead of training cells")
    p.add_argument("--arg", dest="cell_args", action="extend", nargs="+", default=[],
                   metavar="[CELL:]NAME=VALUE",
                   help="a cell constructor argument (repeatable); CELL is a cell's name in "
                   "--cells (its class, or LABEL of SPEC@LABEL), none: every cell")
    p.add_argument("--tag", default="", help="appended to every cell's name (NAME/TAG): this "
                   "run's rows sit beside earlier runs' rows of the same cells in the report")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE.py",
                   help="file defining the custom cells of --models (repeatable)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=sorted(LOADERS), default="japanese_vowels",
                      help="built-in offline data set (default japanese_vowels)")
    data.add_argument("--train", type=Path, metavar="TRAIN.npz",
                      help="arrays x [N,T,F], y [N]; sequences of different lengths: x an "
                      "object array of N [L,F] arrays, or x padded after the real steps plus "
                      "lengths [N] (padded with a value below every real one, Masking added)")
    p.add_argument("--test", type=Path, metavar="TEST.npz", help="with --train")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                   help="fraction of the training split held out for validation (default 0.2)")
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="--train/--test data as given (default: each channel standardised with "
                   "the training samples' mean and standard deviation)")
    p.add_argument("--subset", type=int, metavar="N",
                   help="use at most N samples of each split (quick runs)")
    p.add_argument("--units", type=int, default=32, help="units of every cell (default 32)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"most training epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE,
                   help="stop after this many epochs without a lower validation loss and keep "
                   "the best epoch's weights; the learning rate halves after half as many "
                   f"(default {DEFAULT_PATIENCE}; 0: all epochs, last weights)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"(default {DEFAULT_BATCH})")
    p.add_argument("--learning-rate", type=float, default=0.005, help="Adam (default 0.005)")
    p.add_argument("--seed", type=int, default=0,
                   help="data split, weights and shuffling (default 0)")
    p.add_argument("--quantize", default="float32,int8",
                   help="dtypes, comma-separated (default float32,int8)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--target", default="auto", help="auto (qemu-m4 where it can run, "
                       "else host), host, or one or more QEMU targets, comma-separated "
                       "(qemu-m0,qemu-m4,qemu-m55: the cells train once and are measured on "
                       "each; see firmware/README.md for the targets)")
    where.add_argument("--port", help="serial port of a board flashed with the bench firmware")
    p.add_argument("--tflm-include", help="your TFLM's include dirs (colon-separated): also run "
                   "the fused files, the unroll=True files and (LSTM) TF's builtin LSTM through "
                   "TFLM's MicroInterpreter on the qemu-* target (time and arena; see `fusegen "
                   "bench --tflm-*`)")
    p.add_argument("--tflm-lib", type=Path, help="libtensorflow-microlite.a built for the target")
    p.add_argument("--tflm-flag", action="append", default=[], metavar="FLAG",
                   help="compiler flag TFLM was built with, e.g. --tflm-flag=-DTF_LITE_STRIP_"
                   "ERROR_STRINGS for a release build (repeatable; the only way flags reach "
                   "the TFLM compiles: no environment variable adds any)")
    p.add_argument("-o", "--out", type=Path, default=Path("report"),
                   help="report directory (default report/)")
    p.add_argument("--no-cache", action="store_true", help="recompute cells found in the cache")
    p.add_argument("--cache-dir", type=Path, help="default: OUT/.cache")
    from fusegen.verdict import add_bound_arguments
    add_bound_arguments(p.add_argument_group(
        "verify bounds (as `fusegen verify`; int8 rows: the accuracy drop and the C equal to "
        "the integer twin, fusegen/verdict.py)"), tolerance=False, steps=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fusegen.compare.cells import SpecError
    from fusegen.compare.stock import stop_children
    from fusegen.errors import UserError
    from fusegen.fileio import check_writable, locked_dir

    try:
        plan = _plan(args)
    except (SpecError, DataError) as err:
        raise UserError(str(err)) from None
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"-o {args.out} is a file; give a directory")
    check_writable(args.out / "summary.md", "-o")
    # One run per output directory: two would delete each other's cell directories.
    with locked_dir(args.out, "compare output directory"), _terminate_on_signals():
        try:
            return _execute(*plan, args)
        finally:
            stop_children()


@contextlib.contextmanager
def _terminate_on_signals():
    """SIGTERM and SIGINT end the run through the normal unwinding (KeyboardInterrupt), so the
    `finally` above stops the stock-converter child before the process exits."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _plan(args: argparse.Namespace):
    """Everything the run needs, checked: specs, data, dtypes, target."""
    from fusegen.compare import cells, targets
    from fusegen.compare.cells import SpecError
    from fusegen.compare.run import DTYPES

    dtypes = tuple(d.strip() for d in args.quantize.split(",") if d.strip())
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        raise SpecError(f"--quantize {args.quantize!r}: choose from {', '.join(DTYPES)}")
    for name in ("units", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise SpecError(f"--{name.replace('_', '-')} must be at least 1")
    if args.patience < 0:
        raise SpecError("--patience must be 0 (off) or more")
    if args.models:
        if args.cell_args:
            raise SpecError("--arg is for --cells; --models are built already")
        specs = cells.parse_models(args.models, args.imports, args.tag)
    else:  # the default names the repository's examples/, wherever fusegen runs from
        specs = cells.parse_cells(",".join(cells.DEFAULT_CELLS) if args.cells == DEFAULT_CELLS
                                  else args.cells, args.cell_args, args.tag)
        for spec in specs:
            spec.make(args.units)  # arguments the class does not take: one line, now
    data = _data(args)
    specs = [_check_model_input(spec, data) if isinstance(spec, cells.ModelSpec) else spec
             for spec in specs]
    try:
        chosen = targets.select_all(args.target, args.port)
    except targets.TargetError as err:
        raise SpecError(str(err)) from None
    if bool(args.tflm_include) != bool(args.tflm_lib):
        raise SpecError("--tflm-include and --tflm-lib go together")
    if args.tflm_lib and not args.tflm_lib.is_file():
        raise SpecError(f"--tflm-lib {args.tflm_lib}: no such file")
    if args.tflm_lib and not any(t.name.startswith("qemu-") for t in chosen):
        raise SpecError("--tflm-* runs the models on a qemu-* target; give --target qemu-m4")
    return specs, data, dtypes, chosen


def _data(args: argparse.Namespace) -> Dataset:
    from fusegen.compare import datasets

    if args.test and not args.train:
        raise DataError("--test needs --train")
    if args.train:
        if not args.test:
            raise DataError("--train needs --test")
        data = datasets.from_npz(args.train, args.test, args.seed, args.val_fraction,
                                 args.standardize)
    else:
        data = datasets.load(args.dataset, args.seed, args.val_fraction)
    if args.subset is not None:
        if args.subset < 2:
            raise DataError("--subset must be at least 2")
        data = data.subset(args.subset, args.seed)
    return data


def _check_model_input(spec, data: Dataset):
    """The model checked against the data; on variable-length data the spec with the model's
    Masking value (the data is padded with it for that model: Dataset.repadded)."""
    from dataclasses import replace

    from fusegen.commands.verify import input_padding
    from fusegen.compare.cells import SpecError
    from fusegen.compare.deploy import classifier_layers
    from fusegen.frontend.keras_model import ModelError, import_file, load_model

    try:
        model = load_model(spec.path, [import_file(p) for p in spec.imports])
        classifier_layers(model)
    except ModelError as err:
        raise SpecError(f"{spec.path}: {err}") from None
    shape = tuple(model.inputs[0].shape[1:])
    classes = model.outputs[0].shape[-1]
    if shape != (data.timesteps, data.features):
        raise DataError(f"{spec.path} takes inputs {shape} but the data has samples "
                        f"({data.timesteps}, {data.features})")
    if classes != len(data.classes):
        raise DataError(f"{spec.path} has {classes} outputs but the data has "
                        f"{len(data.classes)} classes")
    if not data.variable:
        return spec
    pad = input_padding(model)
    if pad is None:
        raise DataError(f"{spec.path}: the data has sequences of different lengths but the model "
                        "has no Masking layer at its input; give a model that starts with "
                        "Masking(mask_value) (compare pads each sequence after its real steps "
                        "with that value), or pad the data to one T yourself")
    data.repadded(pad, str(spec.path))  # a real step equal to the value: one line, now
    return replace(spec, mask_value=pad)


def _execute(specs, data: Dataset, dtypes, chosen, args: argparse.Namespace) -> int:
    from fusegen.compare import report
    from fusegen.compare.cache import Cache
    from fusegen.compare.run import RunOptions, earlier_results, run_cell
    from fusegen.compare.train import TrainOptions
    from fusegen.verdict import float_bounds, int8_bounds

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    training = TrainOptions(args.units, args.epochs, args.batch_size, args.learning_rate,
                            args.seed, args.patience)
    names = ", ".join(t.name for t in chosen)
    tflm = tflm_options(args)
    print(f"fusegen compare: {len(specs)} cell(s) x {', '.join(dtypes)} on {data.name} "
          f"(T={data.timesteps}, F={data.features}, {len(data.classes)} classes), target "
          f"{names}, report in {out}/", flush=True)
    start, results = time.monotonic(), []
    for n, target in enumerate(chosen):
        # Every target after the first reads the cache even with --no-cache: its entries are this
        # run's (the key covers data, cell, options and code), so each cell trains once.
        cache = Cache(args.cache_dir or out / ".cache", read=not args.no_cache or n > 0)
        options = RunOptions(dtypes, training, out, cache, target, float_bounds(args),
                             int8_bounds(args), keep_cell_dir=n > 0, tflm=tflm)
        for k, spec in enumerate(specs, 1):
            where = f" on {target.name}" if len(chosen) > 1 else ""
            print(f"[{k}/{len(specs)}] {spec.label}{where}", flush=True)
            mask = getattr(spec, "mask_value", None)  # a given masked model's own value
            cell_data = data if mask is None else data.repadded(mask, str(spec.path))
            results.append(run_cell(spec, cell_data, options, _log))
    ran = {(res.label, r.target) for res in results for r in res.rows}
    earlier, other_data = earlier_results(out, data.digest(), ran)
    if other_data:
        print(f"note: {out}/cells holds results on other data, left out of the report: "
              f"{', '.join(other_data)}")
    report_results = earlier + results
    rows = [r for res in report_results for r in res.rows]
    setup = _setup(specs, data, training)
    failed = report.failed_cells(rows)
    report.write_csv(rows, out / "summary.csv")
    report.write_markdown(report_results, data, setup, names, out / "summary.md",
                          earlier=len(earlier),
                          tflm=report.TFLM_NOTE.format(
                              lib=args.tflm_lib, flags=" ".join(tflm[2]) or "none")
                          if tflm else "")
    chance = report.chance_level(data)
    report.plot_tradeoff(rows, out / "tradeoff.png",
                         f"{data.title}: deployed accuracy vs time per inference", failed, chance)
    report.plot_size(rows, out / "size.png",
                     f"{data.title}: deployed accuracy vs model bytes", failed, chance)
    report.plot_training([res for res in report_results if res.rows[0].target == chosen[0].name],
                         out / "training.png")
    print()
    print(report.text_table(rows))
    failed_now = report.failed_cells([r for res in results for r in res.rows])
    print(f"\nwrote {out}/summary.md, summary.csv, tradeoff.png, size.png, training.png in "
          f"{time.monotonic() - start:.0f} s"
          + (f"; failed: {', '.join(failed_now)}" if failed_now else ""))
    return 1 if failed_now else 0


def tflm_options(args: argparse.Namespace) -> tuple[str, str, tuple[str, ...]] | None:
    """(--tflm-include, --tflm-lib resolved, --tflm-flag's flags) or None without a TFLM build.
    The flags are the command line's only: no environment variable adds any (a test rig's
    FUSEGEN_TFLM_FLAGS is the tests' to pass as --tflm-flag)."""
    if not args.tflm_lib:
        return None
    return (args.tflm_include, str(args.tflm_lib.resolve()), tuple(args.tflm_flag))


def _setup(specs, data: Dataset, training) -> str:
    from fusegen.compare.cells import ModelSpec

    if specs and isinstance(specs[0], ModelSpec):
        return f"given models: {', '.join(str(s.path) for s in specs)}."
    masking = f"Masking({data.mask_value:g}) -> " if data.variable else ""
    return (f"Input({data.timesteps}, {data.features}) -> {masking}RNN(cell, "
            f"{training.units} units) -> "
            f"Dense({len(data.classes)}, softmax). Training: {training.describe(len(data.x_val))}.")


def _log(line: str) -> None:
    print(f"    {line}", flush=True)


