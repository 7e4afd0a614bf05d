"""One cell (or given model) end to end: train, convert, verify, run, measure, baseline.

Every failure stays in the cell's rows (the `error` column); the next cell still runs.
"""

from __future__ import annotations

import json
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
from fusegen.verdict import FloatBounds, Int8Bounds

Log = Callable[[str], None]
DTYPES = ("float32", "int8")
# Samples the target times (the mean over them is reported): instruction counts vary a little
# with the data (expf/tanhf take different paths), eight smooth that out.
MEASURE_SAMPLES = 8
# Calibration samples for int8 conversion, taken from the training set.
INT8_CALIBRATION_SAMPLES = 128
INT8_TIME_PENDING = "pending: int8 time is measured on the qemu-* targets only"


@dataclass
class Row:
    """One line of summary.csv: a cell at one dtype. Empty (None) where not measured."""

    cell: str
    dtype: str
    params: int | None = None  # trainable and non-trainable parameters of the Keras model
    keras_acc: float | None = None  # test accuracy of the Keras model (float32)
    fused_acc: float | None = None  # test accuracy of the fusegen-deployed model
    max_abs_err: float | None = None  # fused layer against Keras on the test set (verify)
    fused_bytes: int | None = None  # the fusegen .tflite
    fused_time: float | None = None  # per inference, in time_unit (mean over a few samples)
    time_min: float | None = None  # fewest and most over the measured samples
    time_max: float | None = None
    time_unit: str = ""  # instructions, cycles or ns
    fused_flash: int | None = None  # model code + constants on the target
    fused_ram: int | None = None  # static buffers of the model on the target
    unroll_acc: float | None = None  # stock converter, unroll=True, tf.lite.Interpreter
    unroll_bytes: int | None = None
    unroll_time: float | None = None  # the unroll=True file through TFLM on the target (--tflm-*)
    unroll_error: str = ""
    tflm_time: float | None = None  # the fused file through TFLM's MicroInterpreter (--tflm-*)
    tflm_arena: int | None = None  # arena bytes TFLM used for the whole fused model
    unroll_arena: int | None = None
    op_time: float | None = None  # the fused op(s)' share of fused_time (the firmware's marks)
    layers: str = ""  # per-op mean time, "OP=count;..." in time_unit (the firmware's marks)
    target: str = ""
    error: str = ""  # why the fused columns are empty; "pending: ..." for paths not written yet

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


def run_cell(spec: CellSpec | ModelSpec, data: Dataset, options: RunOptions,
             log: Log) -> CellResult:
    train_key = cache_mod.key("train", spec.identity(), data.digest(), asdict(options.training),
                              (Path(__file__).parent / "train.py").read_text())
    result_key = cache_mod.key("result", train_key, options.dtypes, options.target.name,
                               cache_mod.code_digest(), asdict(options.float_bounds),
                               asdict(options.int8_bounds))
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
        kept = best_epoch(result.history, options.training.patience)
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
    baseline = _start_baseline(spec, data, model_path, cell_dir, result)
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
    _finish_baseline(baseline, result, log)
    if options.tflm and options.target.name.startswith("qemu-"):
        for row in result.rows:
            _tflm_rows(spec, data, options, cell_dir, row, log)


def _tflm_rows(spec, data: Dataset, options: RunOptions, cell_dir: Path, row: Row,
               log: Log) -> None:
    """The fused file and the stock unroll=True file through the user's TFLM on the target
    (`fusegen bench --tflm-*`): time per inference and the arena TFLM used. A failure goes into
    the row's error (fused) or unroll_error, never stops the cell."""
    fused = cell_dir / ("fused.tflite" if row.dtype == "float32" else "fused_int8.tflite")
    kernels = cell_dir / ("kernels" if row.dtype == "float32" else "kernels_int8")
    unroll = cell_dir / f"unroll_{row.dtype}.tflite"
    for what, path, kernel_dir in (("fused", fused, kernels), ("unroll", unroll, None)):
        if not path.is_file():
            continue
        try:
            report = _bench_tflm(path, kernel_dir, data, options, cell_dir / f"tflm_{what}")
        except Exception as err:  # noqa: BLE001 - the row says what failed
            message = f"TFLM {what} {row.dtype}: {_one_line(err)}"
            log(message)
            if what == "fused":
                row.error = "; ".join(filter(None, [row.error, message]))
            else:
                row.unroll_error = "; ".join(filter(None, [row.unroll_error, message]))
            continue
        time_, arena = report["count_mean"], report["device"].get("arena_bytes")
        if what == "fused" and report.get("max_abs_diff", 0) > report.get("tolerance", 0):
            raise RuntimeError(f"TFLM {what}: outputs differ from the host run")
        if what == "fused":
            row.tflm_time, row.tflm_arena = time_, arena
        else:
            row.unroll_time, row.unroll_arena = time_, arena
        log(f"TFLM {what} {row.dtype}: {time_:,.0f} {report['unit']}/inference, arena "
            f"{arena:,} B")


def _bench_tflm(path: Path, kernels: Path | None, data: Dataset, options: RunOptions,
                work: Path) -> dict:
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
            "--reset-each", "--json", str(report), "--build-root", str(work / "build"),
            *(["--kernels", str(kernels)] if kernels is not None else [])]
    parser = argparse.ArgumentParser(prog="fusegen bench", exit_on_error=False)
    add_arguments(parser)
    errors, output = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(output):
        status = main(parser.parse_args(argv))
    (work / "bench.log").write_text(output.getvalue() + errors.getvalue())
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
    measurement = options.target.measure(_artifacts(deployed, data, cell_dir))
    _measured(row, measurement)
    result.measure_method = measurement.method
    result.notes.extend(f"{spec.label}: {note}" for note in measurement.notes)
    log(f"measure: {options.target.name}: {measurement.per_inference:,.0f} "
        f"{measurement.unit}/inference, flash {_kib(measurement.flash)}, ram "
        f"{_kib(measurement.ram)} ({measurement.method})")


def _measured(row: Row, m) -> None:
    """A Measurement's numbers into the row: the whole model's time (mean, min, max), flash and
    RAM, and each op's mean time."""
    row.fused_time, row.time_unit = m.per_inference, m.unit
    row.time_min, row.time_max = m.fewest, m.most
    row.fused_flash, row.fused_ram = m.flash, m.ram
    row.layers = ";".join(f"{name}={count:.0f}" for name, count in m.layers)
    fused = [count for name, count in m.layers if name.startswith("FUSEGEN_")]
    row.op_time = sum(fused) if fused else None


def _artifacts(deployed: deploy.Deployed, data: Dataset, cell_dir: Path) -> ModelArtifacts:
    from fusegen.bench.firmware.model_source import op_names

    sources, includes = deployed.c_model(cell_dir / "model", cell_dir / "kernels")
    x = data.x_test[:MEASURE_SAMPLES]
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
    np.save(calibration, data.x_train[:INT8_CALIBRATION_SAMPLES].astype(np.float32))
    converted = convert_model(model_path, spec.imports, cell_dir / "fused_int8.tflite",
                              cell_dir / "kernels_int8", calibration)
    row.fused_bytes = converted.size
    log(f"convert int8: fused_int8.tflite {converted.size:,} B")
    steps.append("verify int8")
    inputs, labels = cell_dir / "int8_inputs.npy", cell_dir / "int8_labels.npy"
    np.save(inputs, data.x_test.astype(np.float32))
    np.save(labels, data.y_test)
    check = verify_int8(cell_dir / "fused_int8.tflite", model_path, spec.imports, inputs, labels)
    row.fused_acc, row.max_abs_err = check.int8_accuracy, check.max_abs
    failed = options.int8_bounds.failures(check.mean_abs / check.output_step,
                                          check.max_abs / check.output_step,
                                          check.keras_accuracy - check.int8_accuracy)
    log(f"verify int8: test accuracy {check.int8_accuracy:.3f} (Keras float "
        f"{check.keras_accuracy:.3f}), output mean abs error {check.mean_abs:.2e} "
        f"({check.mean_abs / check.output_step:.2f} steps): "
        f"{'FAIL: ' + '; '.join(failed) if failed else 'PASS'}")
    if failed:
        row.error = f"verify int8: {'; '.join(failed)}"
    if not options.target.name.startswith("qemu-"):
        row.error = INT8_TIME_PENDING
        return
    steps.append(f"measure int8 on {options.target.name}")
    measurement = options.target.measure(_int8_artifacts(spec, data, cell_dir))
    _measured(row, measurement)
    log(f"measure int8: {options.target.name}: {measurement.per_inference:,.0f} "
        f"{measurement.unit}/inference (fused op + FULLY_CONNECTED)")


def _int8_artifacts(spec, data: Dataset, cell_dir: Path) -> ModelArtifacts:
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
    x = load_inputs(data.x_test[:MEASURE_SAMPLES].astype(np.float32), chain)
    hidden = host.run(x).reshape(len(x), -1)
    work = cell_dir / "int8"
    work.mkdir(exist_ok=True)
    return ModelArtifacts(f"{spec.label} int8", tuple(sources),
                          (*includes, FIRMWARE / "app"), cell_dir / "fused_int8.tflite", x,
                          head.run(hidden), work, op_names(chain, head))


def _start_baseline(spec, data: Dataset, model_path: Path, cell_dir: Path,
                    result: CellResult) -> stock.StockRun:
    """The stock converter with unroll=True for every dtype, in a child process."""
    npz = cell_dir / "stock_data.npz"
    np.savez(npz, x_cal=data.x_train, x_test=data.x_test, y_test=data.y_test)
    return stock.start(model_path, spec.imports, npz, cell_dir, tuple(r.dtype for r in result.rows))


def _finish_baseline(baseline: stock.StockRun, result: CellResult, log: Log) -> None:
    found = stock.collect(baseline)
    (baseline.out_dir / "stock_data.npz").unlink(missing_ok=True)
    for row in result.rows:
        entry = found[row.dtype]
        row.unroll_bytes, row.unroll_acc = entry.get("bytes"), entry.get("accuracy")
        row.unroll_error = entry.get("error", "")
        described = (row.unroll_error if row.unroll_error else
                     f"{row.unroll_bytes:,} B, test accuracy {row.unroll_acc:.3f}")
        log(f"unroll=True {row.dtype}: {described}")


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
