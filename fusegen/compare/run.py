"""One cell (or given model) end to end: train, convert, verify, run, measure, baseline.

Every failure stays in the cell's rows (the `error` column); the next cell still runs.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from fusegen.compare import cache as cache_mod
from fusegen.compare import deploy, stock
from fusegen.compare.cache import Cache
from fusegen.compare.cells import CellSpec, ModelSpec
from fusegen.compare.targets import ModelArtifacts, Target
from fusegen.compare.train import History, TrainOptions, accuracy, best_epoch, train
from fusegen.compare.datasets import Dataset
from fusegen.paths import FIRMWARE
from fusegen.verdict import INT8_TWIN_SAMPLES, FloatBounds, Int8Bounds

Log = Callable[[str], None]
DTYPES = ("float32", "int8")
# Samples the target times (the mean over them is reported): instruction counts vary a little
# with the data (float32 sigmoid/tanh return early where they saturate), eight smooth that out.
MEASURE_SAMPLES = 8
# Calibration samples for int8 conversion, taken from the training set.
INT8_CALIBRATION_SAMPLES = 128
INT8_TIME_PENDING = "pending: int8 time is measured on the qemu-* targets only"


@dataclass
class Row:
    """One line of summary.csv: a cell at one dtype. Empty (None) where not measured."""

    cell: str
    dtype: str
    model: str = "fusegen"  # fusegen, or a baseline run through TFLM: unroll=True, TFLM LSTM
    params: int | None = None  # trainable and non-trainable parameters of the Keras model
    keras_acc: float | None = None  # test accuracy of the Keras model (float32)
    fused_acc: float | None = None  # test accuracy of the fusegen-deployed model
    max_abs_err: float | None = None  # fused layer against Keras on the test set (verify)
    mean_steps: float | None = None  # int8: mean and max error against Keras in output steps
    max_steps: float | None = None
    fused_bytes: int | None = None  # the fusegen .tflite
    fused_time: float | None = None  # per inference, in time_unit (mean over a few samples)
    time_min: float | None = None  # fewest and most over the measured samples
    time_max: float | None = None
    time_unit: str = ""  # instructions, cycles or ns
    fused_flash: int | None = None  # model code + constants on the target
    fused_ram: int | None = None  # static buffers of the model on the target
    unroll_acc: float | None = None  # stock converter, unroll=True, tf.lite.Interpreter
    unroll_bytes: int | None = None
    unroll_error: str = ""
    unroll_err: float | None = None  # largest |unroll=True float32 file - Keras|, test set
    tflm_time: float | None = None  # the row's file through TFLM's MicroInterpreter (--tflm-*)
    tflm_arena: int | None = None  # arena bytes TFLM used for the row's whole model
    op_time: float | None = None  # the fused op(s)' share of fused_time (the firmware's marks)
    layers: str = ""  # per-op mean time, "OP=count;..." in time_unit (the firmware's marks)
    target: str = ""
    error: str = ""  # why the fused columns are empty; "pending: ..." for paths not written yet
    # Variable-length data: fused_time is at T (every step real); this is measured on samples
    # of the test set's mean length padded to T (the fused op skips the padding)
    mean_length: int | None = None
    time_at_mean: float | None = None

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class CellResult:
    label: str
    rows: list[Row]
    history: History | None = None
    measure_method: str = ""
    notes: list[str] = field(default_factory=list)
    training: str = ""  # the training settings and the epoch whose weights were kept
    data: str = ""  # the data set's digest: a report mixes only results of one data set

    def to_json(self) -> dict:
        return {**asdict(self), "rows": [asdict(r) for r in self.rows]}

    @classmethod
    def from_json(cls, value: dict) -> CellResult:
        known = {f.name for f in fields(Row)}
        rows = [Row(**{k: v for k, v in r.items() if k in known}) for r in value["rows"]]
        mine = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in value.items() if k in mine}, "rows": rows})


@dataclass(frozen=True)
class RunOptions:
    dtypes: tuple[str, ...]
    training: TrainOptions
    out: Path
    cache: Cache
    target: Target
    float_bounds: FloatBounds = field(default_factory=FloatBounds)  # verify's (verdict.py)
    int8_bounds: Int8Bounds = field(default_factory=Int8Bounds)
    keep_cell_dir: bool = False  # a later target of the same run: the first one's files stay
    tflm: tuple[str, str, tuple[str, ...]] | None = None  # --tflm-include, --tflm-lib, flags

    @property
    def runs_tflm(self) -> bool:
        return self.tflm is not None and self.target.name.startswith("qemu-")


def run_cell(spec: CellSpec | ModelSpec, data: Dataset, options: RunOptions,
             log: Log) -> CellResult:
    train_key = cache_mod.key("train", spec.identity(), data.digest(), asdict(options.training),
                              (Path(__file__).parent / "train.py").read_text())
    result_key = cache_mod.key("result", train_key, options.dtypes, options.target.name,
                               cache_mod.code_digest(), asdict(options.float_bounds),
                               asdict(options.int8_bounds), _tflm_identity(options.tflm))
    cell_dir = options.out / "cells" / spec.directory
    cached = options.cache.result(result_key)
    if cached is not None:
        log(f"cached: results {result_key} (no training, conversion or measurement)")
        result = CellResult.from_json(cached)
        result.label = spec.label  # the same cell under another name (--tag, @LABEL)
        for row in result.rows:
            row.cell = spec.label
        _keep(result, cell_dir, options.target.name)
        return result
    result = CellResult(spec.label, [Row(spec.label, d, target=options.target.name)
                                     for d in options.dtypes], data=data.digest())
    if not options.keep_cell_dir:
        shutil.rmtree(cell_dir, ignore_errors=True)  # no artifact of an earlier run survives
    cell_dir.mkdir(parents=True, exist_ok=True)
    try:
        model_path = _model(spec, data, options, train_key, cell_dir, result, log)
    except Exception as err:  # noqa: BLE001 - the row says what failed
        _fail(result.rows, "load" if isinstance(spec, ModelSpec) else "train", err, cell_dir, log)
        _keep(result, cell_dir, options.target.name)
        return result
    _deploy_rows(spec, data, options, model_path, cell_dir, result, log)
    if not any(r.error and not r.error.startswith("pending") for r in result.rows):
        options.cache.store_result(result_key, result.to_json())
    _keep(result, cell_dir, options.target.name)
    return result


def _tflm_identity(tflm) -> list | None:
    """--tflm-* in the result's cache key: the library's path, size and time, and the flags."""
    if tflm is None:
        return None
    include, lib, flags = tflm
    stat = Path(lib).stat()
    return [include, lib, stat.st_size, stat.st_mtime_ns, list(flags)]


def _keep(result: CellResult, cell_dir: Path, target: str) -> None:
    """OUT/cells/<cell>/result-<target>.json: what a later run's report reads back for the cells
    it does not run itself (summary.md keeps every cell measured into OUT)."""
    from fusegen.fileio import write_text

    cell_dir.mkdir(parents=True, exist_ok=True)
    write_text(cell_dir / f"result-{target}.json", json.dumps(result.to_json(), indent=1))


def earlier_results(out: Path, data_digest: str, exclude: set[tuple[str, str]]
                    ) -> tuple[list[CellResult], list[str]]:
    """Results an earlier run kept in OUT/cells on the same data, except (label, target) pairs
    this run measures; and the labels of kept results on other data (left out of the report)."""
    found, other = [], []
    for path in sorted(out.glob("cells/*/result-*.json")):
        try:
            result = CellResult.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # a damaged file: that cell is measured again when it is run again
        targets = {r.target for r in result.rows}
        if any((result.label, t) in exclude for t in targets):
            continue
        (found if result.data == data_digest else other).append(result)
    return found, sorted({r.label for r in other})


def _model(spec, data: Dataset, options: RunOptions, train_key: str, cell_dir: Path,
           result: CellResult, log: Log) -> Path:
    """The trained .keras in cell_dir (trained now, from the cache, or the user's)."""
    from fusegen.frontend.keras_model import import_file, load_model

    path = cell_dir / "model.keras"
    if isinstance(spec, ModelSpec):
        shutil.copyfile(spec.path, path)
    elif (hit := options.cache.trained(train_key)) is not None:
        log(f"cached: trained model {train_key} (training skipped)")
        shutil.copyfile(hit / "model.keras", path)
        result.history = json.loads((hit / "history.json").read_text())
    else:
        start = time.monotonic()
        log(f"train: {options.training.units} units, {options.training.epochs} epochs on "
            f"{len(data.x_train)} samples")
        model, result.history = train(spec.make, data, options.training,
                                      lambda line: log(f"  {line}"), spec.label)
        model.save(path)
        options.cache.store_trained(train_key, path, result.history)
        log(f"train: done in {time.monotonic() - start:.0f} s")
    if isinstance(spec, ModelSpec):
        result.training = "given model: not trained by compare"
    else:
        kept = best_epoch(result.history, options.training.patience, len(data.x_val))
        ran = len(result.history["loss"]) if result.history else 0
        result.training = (f"{ran} of at most {options.training.epochs} epochs, the weights of "
                           f"epoch {kept} kept")
    model = load_model(path, [import_file(p) for p in spec.imports])
    deploy.classifier_layers(model)
    keras_acc = accuracy(model, data.x_test, data.y_test)
    for row in result.rows:
        row.params, row.keras_acc = int(model.count_params()), keras_acc
    log(f"keras: test accuracy {keras_acc:.3f} on {len(data.x_test)} samples, "
        f"{model.count_params():,} parameters")
    return path


def _deploy_rows(spec, data: Dataset, options: RunOptions, model_path: Path, cell_dir: Path,
                 result: CellResult, log: Log) -> None:
    baseline = _start_baseline(spec, data, model_path, cell_dir, result, options.runs_tflm)
    try:
        for row in result.rows:
            steps = ["deploy"]  # the step running, for the error message
            try:
                if row.dtype == "float32":
                    _fused_float32(spec, data, options, model_path, cell_dir, row, result, steps,
                                   log)
                else:
                    _fused_int8(spec, data, options, model_path, cell_dir, row, result, steps,
                                log)
            except Exception as err:  # noqa: BLE001 - the row says what failed
                _fail([row], steps[-1], err, cell_dir, log)
    except BaseException:  # Ctrl-C: do not leave the converter running
        baseline.process.kill()
        raise
    lstm = _finish_baseline(baseline, result, log)
    _check_baselines(spec, data, options, model_path, cell_dir, result, lstm, log)
    if options.runs_tflm:
        _tflm_rows(spec, data, options, cell_dir, result, lstm, log)


TFLM_ARENA_LIMIT = 1 << 20
# Baseline rows (model column) and the files they time, per dtype.
UNROLL, TFLM_LSTM = "unroll=True", "TFLM LSTM"


def _tflm_rows(spec, data: Dataset, options: RunOptions, cell_dir: Path, result: CellResult,
               lstm: dict | None, log: Log) -> None:
    """Every model through the user's TFLM on the target (`fusegen bench --tflm-*`, the file
    without its softmax, as the other rows): the fused file into its row's tflm_time and
    tflm_arena; the stock unroll=True file and, for an LSTMCell, TF's builtin LSTM as rows of
    their own (model column) with the accuracy and bytes of their files. A failure goes into the
    row's error, never stops the cell."""
    fused_rows = list(result.rows)
    for row in fused_rows:
        int8 = row.dtype == "int8"
        fused = cell_dir / ("fused_int8.tflite" if int8 else "fused.tflite")
        if fused.is_file():
            _tflm_time(row, fused, cell_dir / ("kernels_int8" if int8 else "kernels"), data,
                       options, cell_dir / f"tflm_fused_{row.dtype}", log, "fused")
    for model, files in ((UNROLL, "unroll"), (TFLM_LSTM, "tflm_lstm")):
        for row in fused_rows:
            if model == UNROLL:
                if row.unroll_bytes is None:
                    continue  # the conversion failed: the fusegen row's unroll_error says why
                found = {"bytes": row.unroll_bytes, "accuracy": row.unroll_acc,
                         "invalid": row.unroll_error}
            elif lstm is None:
                continue  # not an LSTMCell
            else:
                found = lstm.get(row.dtype) or {"error": "not converted"}
            # A file that does not compute the Keras model is still timed; its row says why
            # its accuracy is no baseline.
            base = Row(row.cell, row.dtype, model, params=row.params, keras_acc=row.keras_acc,
                       fused_acc=found.get("accuracy"), fused_bytes=found.get("bytes"),
                       target=row.target, error=found.get("error") or (
                           f"{model} {found['invalid']}" if found.get("invalid") else ""))
            result.rows.append(base)
            path = cell_dir / f"{files}_{row.dtype}.tflite"
            if "error" not in found:
                _tflm_time(base, path, None, data, options,
                           cell_dir / f"tflm_{files}_{row.dtype}", log, model)


def _tflm_time(row: Row, path: Path, kernels: Path | None, data: Dataset, options: RunOptions,
               work: Path, log: Log, what: str) -> None:
    """One file through TFLM on the target into the row (baseline rows: time/inf, min-max and
    the TFLM columns; fusegen rows: the TFLM columns)."""
    try:
        work.mkdir(parents=True, exist_ok=True)
        headless = work / "model.tflite"
        headless.write_bytes(deploy.without_softmax(path.read_bytes()))
        report = _bench_tflm(headless, kernels, data, options, work)
    except Exception as err:  # noqa: BLE001 - the row says what failed
        message = f"{what} {row.dtype} through TFLM: {_one_line(err)}"
        log(message)
        row.error = "; ".join(filter(None, [row.error, message]))
        return
    row.tflm_time, row.tflm_arena = report["count_mean"], report["device"].get("arena_bytes")
    if row.model != "fusegen":
        row.fused_time, row.time_unit = report["count_mean"], report["unit"]
        row.time_min, row.time_max = report["count_min"], report["count_max"]
    log(f"{what} {row.dtype} through TFLM: {row.tflm_time:,.0f} {report['unit']}/inference, "
        f"arena {row.tflm_arena:,} B")


def _bench_tflm(path: Path, kernels: Path | None, data: Dataset, options: RunOptions,
                work: Path) -> dict:
    """`fusegen bench PATH --tflm-* --reset-each --json` (every sample from zero states: a
    CMSIS-NN TFLM's int8 LSTM resets its states at each Invoke), its JSON report. A model that
    needs more than bench's default arena (unroll=True files of long series) runs again with
    the arena bench says it needs."""
    from fusegen.bench.targets import TARGETS

    # The arena reported is what TFLM used, whatever it was given: give it half the target's
    # RAM (at most 1 MiB), so that unrolled long series fit the first time.
    arena = min(TFLM_ARENA_LIMIT, TARGETS[options.target.name].ram_bytes // 2)
    try:
        return _bench_tflm_once(path, kernels, data, options, work, ["--tflm-arena", str(arena)])
    except RuntimeError as err:
        more = arena_to_retry(str(err))
        if more is None:
            raise
        return _bench_tflm_once(path, kernels, data, options, work, ["--tflm-arena", str(more)])


def arena_to_retry(message: str) -> int | None:
    """The --tflm-arena to run again with, from bench's too-small line: the size it measured on
    the target ("needs N bytes") or TFLM's lower bound ("needs at least N bytes"), with headroom
    for alignment; None for any other failure."""
    needed = re.search(r"TFLM arena too small: the model needs (?:at least )?(\d+) bytes", message)
    if needed is None:
        return None
    return (int(needed.group(1)) * 5 // 4 + 1023) // 1024 * 1024


def _bench_tflm_once(path: Path, kernels: Path | None, data: Dataset, options: RunOptions,
                     work: Path, extra: list[str]) -> dict:
    import argparse
    import contextlib
    import io

    from fusegen.bench.cli import add_arguments, main

    include, lib, flags = options.tflm
    work.mkdir(parents=True, exist_ok=True)
    inputs, report = work / "inputs.npy", work / "bench.json"
    np.save(inputs, data.x_test[:MEASURE_SAMPLES].astype(np.float32))
    report.unlink(missing_ok=True)
    argv = [str(path), "--inputs", str(inputs), "--target", options.target.name,
            f"--tflm-include={include}", f"--tflm-lib={lib}", *(f"--tflm-flag={f}" for f in flags),
            "--reset-each", "--json", str(report), "--build-root", str(work / "build"), *extra,
            *(["--kernels", str(kernels)] if kernels is not None else [])]
    parser = argparse.ArgumentParser(prog="fusegen bench", exit_on_error=False)
    add_arguments(parser)
    errors, output = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(output):
        status = main(parser.parse_args(argv))
    (work / "bench.log").write_text(output.getvalue() + errors.getvalue())
    if "error: interrupted by SIG" in errors.getvalue():
        # bench turned compare's SIGINT/SIGTERM into its own one-line error: the run ends.
        raise KeyboardInterrupt(errors.getvalue().strip().splitlines()[-1])
    if status != 0 or not report.is_file():
        lines = [ln for ln in errors.getvalue().splitlines() if ln.strip()]
        raise RuntimeError(lines[-1].removeprefix("fusegen: error: ") if lines
                           else f"fusegen bench exited with {status}")
    return json.loads(report.read_text())


def _fused_float32(spec, data: Dataset, options: RunOptions, model_path: Path, cell_dir: Path,
                   row: Row, result: CellResult, steps: list[str], log: Log) -> None:
    steps.append("convert")
    converted = deploy.convert(model_path, spec.imports, cell_dir)
    row.fused_bytes = converted.size
    log(f"convert: fused.tflite {converted.size:,} B ({', '.join(sorted(converted.ops))})")
    steps.append("verify")
    check = deploy.verify(cell_dir / "fused.tflite", model_path, spec.imports, data.x_test,
                          cell_dir)
    (cell_dir / "verify_inputs.npy").unlink(missing_ok=True)
    row.max_abs_err = check.max_abs
    bound = check.bound(options.float_bounds)
    verdict = "PASS" if check.passed(options.float_bounds) else "FAIL"
    log(f"verify: max abs err {check.max_abs:.2e} over {check.samples} test samples; against "
        f"float64 {check.err64:.2e} (Keras {check.keras_err64:.2e}, bound {bound:.2e}): "
        f"{verdict}")
    steps.append("deploy")
    deployed = deploy.Deployed.load(spec.label, cell_dir / "fused.tflite", model_path,
                                    spec.imports)
    row.fused_acc = deployed.accuracy(data.x_test, data.y_test)
    log(f"deploy: C core + Dense head, test accuracy {row.fused_acc:.3f}")
    if verdict == "FAIL":
        row.error = f"verify: error against float64 {check.err64:.2e} > {bound:.2e}"
    steps.append(f"measure on {options.target.name}")
    full, mean = measure_inputs(data)
    measurement = options.target.measure(_artifacts(deployed, full, cell_dir))
    _measured(row, measurement)
    result.measure_method = measurement.method
    result.notes.extend(f"{spec.label}: {note}" for note in measurement.notes)
    log(f"measure: {options.target.name}: {measurement.per_inference:,.0f} "
        f"{measurement.unit}/inference, flash {_kib(measurement.flash)}, ram "
        f"{_kib(measurement.ram)} ({measurement.method})")
    if mean is not None:
        steps.append(f"measure at the mean length on {options.target.name}")
        _at_mean(row, options.target.measure(_artifacts(deployed, mean, cell_dir)), data, log)


def measure_inputs(data: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples a target times: MEASURE_SAMPLES test samples with every one of the T steps
    real; and, on variable-length data, the same samples at the test set's mean length, padded
    to T with the mask value (None otherwise). A sample shorter than the length it is timed at
    repeats its real steps (real values at exactly that length; each step's cost depends on
    the values only through the activations' saturation branches)."""
    if not data.variable:
        return data.x_test[:MEASURE_SAMPLES].astype(np.float32), None
    seqs = data.test_sequences().take(np.arange(min(MEASURE_SAMPLES, len(data.x_test))))
    full = seqs.cycled(data.timesteps)
    at_mean = np.full_like(full, data.mask_value)
    at_mean[:, :data.mean_length] = seqs.cycled(data.mean_length)
    return full, at_mean


def _at_mean(row: Row, m, data: Dataset, log: Log) -> None:
    row.mean_length, row.time_at_mean = data.mean_length, m.per_inference
    log(f"measure: at the mean length {data.mean_length} of T={data.timesteps}: "
        f"{m.per_inference:,.0f} {m.unit}/inference ({m.per_inference / row.fused_time:.2f} x "
        "the full length)")


def _measured(row: Row, m) -> None:
    """A Measurement's numbers into the row: the whole model's time (mean, min, max), flash and
    RAM, and each op's mean time."""
    row.fused_time, row.time_unit = m.per_inference, m.unit
    row.time_min, row.time_max = m.fewest, m.most
    row.fused_flash, row.fused_ram = m.flash, m.ram
    row.layers = ";".join(f"{name}={count:.0f}" for name, count in m.layers)
    fused = [count for name, count in m.layers if name.startswith("FUSEGEN_")]
    row.op_time = sum(fused) if fused else None


def _artifacts(deployed: deploy.Deployed, x: np.ndarray, cell_dir: Path) -> ModelArtifacts:
    from fusegen.bench.firmware.model_source import op_names

    sources, includes = deployed.c_model(cell_dir / "model", cell_dir / "kernels")
    return ModelArtifacts(deployed.label, tuple(sources), tuple(includes),
                          cell_dir / "fused.tflite", x, deployed.logits(x), cell_dir,
                          op_names(deployed.chain(), head=True))


def _fused_int8(spec, data: Dataset, options: RunOptions, model_path: Path, cell_dir: Path,
                row: Row, result: CellResult, steps: list[str], log: Log) -> None:
    """The full-int8 model (`fusegen convert --quantize int8`, calibrated on training samples),
    run from its file on the host for accuracy (segments through TFLite, fused ops through their
    int8 C cores), and timed on a qemu-* target in fusegen bench's core mode (the fused op)."""
    from fusegen.commands.build import convert_model
    from fusegen.commands.verify import verify_int8

    steps.append("convert int8")
    calibration = cell_dir / "calibration.npy"
    np.save(calibration, calibration_samples(data))
    converted = convert_model(model_path, spec.imports, cell_dir / "fused_int8.tflite",
                              cell_dir / "kernels_int8", calibration)
    row.fused_bytes = converted.size
    log(f"convert int8: fused_int8.tflite {converted.size:,} B")
    steps.append("verify int8")
    inputs, labels = cell_dir / "int8_inputs.npy", cell_dir / "int8_labels.npy"
    np.save(inputs, data.x_test.astype(np.float32))
    np.save(labels, data.y_test)
    check = verify_int8(cell_dir / "fused_int8.tflite", model_path, spec.imports, inputs, labels,
                        twin=INT8_TWIN_SAMPLES)
    row.fused_acc, row.max_abs_err = check.int8_accuracy, check.max_abs
    row.mean_steps, row.max_steps = check.mean_steps, check.max_steps
    # On labelled data the verdict is the accuracy and the twin equality (verdict.py).
    failed = options.int8_bounds.compare_failures(check.keras_accuracy - check.int8_accuracy,
                                                  check.twin_mismatches, check.twin_samples)
    log(f"verify int8: test accuracy {check.int8_accuracy:.3f} (Keras float "
        f"{check.keras_accuracy:.3f}), C {'=' if not check.twin_mismatches else '!='} integer "
        f"twin on {check.twin_samples} samples; error against Keras {check.mean_steps:.2f} steps "
        f"mean, {check.max_steps:.1f} max: {'FAIL: ' + '; '.join(failed) if failed else 'PASS'}")
    if failed:
        row.error = f"verify int8: {'; '.join(failed)}"
    if not options.target.name.startswith("qemu-"):  # a failed verdict stays first
        row.error = "; ".join(filter(None, [row.error, INT8_TIME_PENDING]))
        return
    steps.append(f"measure int8 on {options.target.name}")
    full, mean = measure_inputs(data)
    measurement = options.target.measure(_int8_artifacts(spec, full, cell_dir))
    _measured(row, measurement)
    log(f"measure int8: {options.target.name}: {measurement.per_inference:,.0f} "
        f"{measurement.unit}/inference (fused op + FULLY_CONNECTED)")
    if mean is not None:
        steps.append(f"measure int8 at the mean length on {options.target.name}")
        _at_mean(row, options.target.measure(_int8_artifacts(spec, mean, cell_dir)), data, log)


def calibration_samples(data: Dataset) -> np.ndarray:
    """INT8_CALIBRATION_SAMPLES training samples; on variable-length data one more, the first
    sample's first step then padding, so the int8 input's range holds the mask value (else it
    would clamp to -128, where the smallest real values also land)."""
    x = data.x_train[:INT8_CALIBRATION_SAMPLES].astype(np.float32)
    if not data.variable:
        return x
    padded = np.full_like(x[:1], data.mask_value)
    padded[0, 0] = x[0, 0]
    return np.concatenate([x, padded])


def _int8_artifacts(spec, x: np.ndarray, cell_dir: Path) -> ModelArtifacts:
    """The int8 file's fused op and its FULLY_CONNECTED head as a core-mode firmware model (the
    same scope as the float32 row: everything but the softmax), with its expected outputs: the
    host-compiled int8 core, then the head's numpy twin."""
    from fusegen.bench.core_bench import load_inputs
    from fusegen.bench.firmware.core_model import HostChain, read_chain
    from fusegen.bench.firmware.model_source import op_names, write_model_sources

    kernels = cell_dir / "kernels_int8"
    data_bytes = (cell_dir / "fused_int8.tflite").read_bytes()
    chain = read_chain(data_bytes, kernels)
    head = deploy.int8_head(data_bytes)
    host = HostChain(chain)
    sources, includes = write_model_sources(chain, host.plans(), kernels, cell_dir / "model_int8",
                                            "model_int8", head=head, command="compare")
    x = load_inputs(x, chain)
    hidden = host.run(x).reshape(len(x), -1)
    work = cell_dir / "int8"
    work.mkdir(exist_ok=True)
    return ModelArtifacts(f"{spec.label} int8", tuple(sources),
                          (*includes, FIRMWARE / "app"), cell_dir / "fused_int8.tflite", x,
                          head.run(hidden), work, op_names(chain, head))


def _start_baseline(spec, data: Dataset, model_path: Path, cell_dir: Path,
                    result: CellResult, builtin_lstm: bool) -> stock.StockRun:
    """The stock converter with unroll=True for every dtype (and TF's builtin LSTM when TFLM
    will time it), in a child process."""
    npz = cell_dir / "stock_data.npz"
    np.savez(npz, x_cal=data.x_train, x_test=data.x_test, y_test=data.y_test)
    return stock.start(model_path, spec.imports, npz, cell_dir, tuple(r.dtype for r in result.rows),
                       builtin_lstm)


def _finish_baseline(baseline: stock.StockRun, result: CellResult, log: Log) -> dict | None:
    """The unroll=True numbers into the rows; TF's builtin LSTM's ({dtype: ...} or None)."""
    found = stock.collect(baseline)
    (baseline.out_dir / "stock_data.npz").unlink(missing_ok=True)
    for row in result.rows:
        entry = found[row.dtype]
        row.unroll_bytes, row.unroll_acc = entry.get("bytes"), entry.get("accuracy")
        row.unroll_error = entry.get("error", "")
        described = (row.unroll_error if row.unroll_error else
                     f"{row.unroll_bytes:,} B, test accuracy {row.unroll_acc:.3f}")
        log(f"unroll=True {row.dtype}: {described}")
    lstm = found.get(stock.LSTM_KEY)
    for dtype, entry in (lstm or {}).items():
        log(f"TF builtin LSTM {dtype}: " + (entry["error"] if "error" in entry else
                                             f"{entry['bytes']:,} B, test accuracy "
                                             f"{entry['accuracy']:.3f}"))
    return lstm


def _check_baselines(spec, data: Dataset, options: RunOptions, model_path: Path,
                     cell_dir: Path, result: CellResult, lstm: dict | None, log: Log) -> None:
    """Each baseline's float32 file against Keras on the test set, held to verify's float rule
    (verdict.FloatBounds: its error against the classifier in float64 at most FLOAT_FACTOR
    times Keras' own, or FLOAT_REL of the output). A file past it does not compute the
    Keras model (the stock converter drops a Masking layer's mask when unrolling; TF's builtin
    LSTM has no Masking): the reason goes into the rows (unroll_error; a baseline row's error)
    and the notes, with the numbers, and the plots leave the file out."""
    from fusegen.frontend.keras_model import import_file, load_model

    found = {kind: np.load(path) for kind in ("unroll", stock.LSTM_KEY)
             if (path := cell_dir / stock.OUTPUTS.format(kind=kind)).is_file()}
    if not found:
        return
    model = load_model(model_path, [import_file(p) for p in spec.imports])
    try:
        keras_out, exact = deploy.reference_outputs(model, data.x_test)
    except Exception as err:  # noqa: BLE001 - a cell fusegen cannot lower has no float64 twin
        keras_out, exact = np.asarray(model(data.x_test)), None
        log(f"baselines against Keras: no float64 twin, no verdict ({_one_line(err)})")
    masked = deploy.input_padding(model) is not None
    for kind, outputs in found.items():
        differ = float(np.abs(outputs - keras_out).max())
        if kind == "unroll":
            for row in result.rows:
                row.unroll_err = differ
        name = "unroll=True" if kind == "unroll" else "TF's builtin LSTM"
        if exact is None:
            log(f"{name} float32 file against Keras: max abs {differ:.2e}")
            continue
        bound = options.float_bounds.bound(float(np.abs(keras_out - exact).max()),
                                           float(np.abs(exact).max()))
        valid = float(np.abs(outputs - exact).max()) <= bound
        log(f"{name} float32 file against Keras: max abs {differ:.2e} "
            f"({'within' if valid else 'past'} verify's float bound {bound:.1e})")
        if not valid:
            _invalid_baseline(kind, name, f"{'ignores the mask: ' if masked else ''}outputs "
                              f"differ from Keras by {differ:.2g} (float32 file, "
                              f"{len(data.x_test)} test samples; verify's float bound "
                              f"{bound:.1e}): not a valid baseline", spec, result, lstm)


def _invalid_baseline(kind: str, name: str, note: str, spec, result: CellResult,
                      lstm: dict | None) -> None:
    result.notes.append(f"{spec.label}: {name} {note}")
    if kind == "unroll":
        for row in result.rows:
            if not row.unroll_error:
                row.unroll_error = note
    else:
        for entry in (lstm or {}).values():
            entry.setdefault("invalid", note)


def _fail(rows: list[Row], step: str, err: Exception, cell_dir: Path, log: Log) -> None:
    message = f"{step}: {type(err).__name__}: {_one_line(err)}"
    for row in rows:
        row.error = message
    trace = cell_dir / "error.log"
    trace.write_text(traceback.format_exc())
    log(f"FAILED {message} (traceback in {trace})")


def _one_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:200] if lines else "(no message)"


def _kib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f} KiB"
