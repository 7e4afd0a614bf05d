"""The report: summary.csv (every number), summary.md and the terminal table (the same table,
formatted), tradeoff.png (accuracy against time per inference) and training.png (curves)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fusegen.compare.run import CellResult, Row
from fusegen.compare.datasets import Dataset

# What each summary.csv column holds (written into summary.md under the table).
COLUMN_DOCS = {
    "cell": "cell class (or model file) name",
    "dtype": "float32 or int8",
    "model": "fusegen (the fused model); the baselines, timed through your TFLM (--tflm-*): "
             "unroll=True (the stock converter's unrolled file) and TFLM LSTM (TF's builtin "
             "UNIDIRECTIONAL_SEQUENCE_LSTM, from a tf_keras LSTM with the same weights); a "
             "baseline row's acc, bytes and time columns are its file's",
    "params": "parameters of the Keras model",
    "keras_acc": "test accuracy of the trained Keras model (float32)",
    "fused_acc": "test accuracy of the fusegen-deployed model (C core of the fused layer + Dense)",
    "max_abs_err": "largest |fused layer - Keras layer| over the test set (fusegen verify)",
    "mean_steps": "int8: mean |int8 model - Keras float| over the test set, in output steps "
                  "(reported; the int8 verdict is the accuracy and the twin equality)",
    "max_steps": "int8: the largest of those errors, in output steps",
    "fused_bytes": "size of the fusegen .tflite",
    "fused_time": "time per inference of the whole model (fused ops + Dense/FULLY_CONNECTED "
                  "head, softmax left out) on the target, in time_unit (mean over the samples)",
    "time_min": "fewest of the measured samples (instructions vary with the data)",
    "time_max": "most of the measured samples",
    "time_unit": "instructions, cycles or ns",
    "fused_flash": "bytes of the whole model's code + weights on the target",
    "fused_ram": "bytes of the whole model's static buffers (state, scratch, activations)",
    "unroll_acc": "test accuracy of the stock converter's unroll=True .tflite (TFLite interpreter)",
    "unroll_bytes": "size of the stock unroll=True .tflite",
    "unroll_error": "why the unroll=True conversion has no numbers, or why its numbers are no "
                    "baseline (its float32 file does not compute the Keras model: past "
                    "verify's float rule on the test set, e.g. the mask dropped)",
    "unroll_err": "largest |unroll=True float32 file - Keras| over the test set (outputs)",
    "tflm_time": "time per inference of the row's file through your TFLM's MicroInterpreter "
                 "(--tflm-*) on the target, softmax left out",
    "tflm_arena": "arena bytes TFLM used for the row's whole model (measured on the target)",
    "op_time": "the fused op(s)' share of fused_time (the firmware times each op)",
    "layers": "mean time of each op of an inference, OP=count;... (the firmware's per-op marks)",
    "target": "where fused_time was measured",
    "error": "why the fused columns are empty (pending: a path not written yet)",
    "mean_length": "variable-length data: the test sequences' mean length (fused_time is at T)",
    "time_at_mean": "variable-length data: time per inference measured on samples of "
                    "mean_length real steps padded to T (the fused op skips the padding)",
}


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=Row.columns())
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})


# -- the table ----------------------------------------------------------------------------------

def _acc(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def _bytes(v: int | None) -> str:
    return "" if v is None else f"{v:,}"


def _time(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if unit == "ns":
        return f"{v / 1000:.1f} us"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def _spread(r: Row) -> str:
    if r.time_min is None or r.time_max is None:
        return ""
    if r.time_min == r.time_max:
        return "all equal"
    return f"{_time(r.time_min, r.time_unit)}-{_time(r.time_max, r.time_unit)}"


def _share(r: Row) -> str:
    if r.op_time is None or not r.fused_time:
        return ""
    return f"{_time(r.op_time, r.time_unit)} ({r.op_time / r.fused_time:.0%})"


def layer_counts(r: Row) -> list[tuple[str, float]]:
    """summary.csv's `layers` back as (op, mean count)."""
    out = []
    for item in filter(None, r.layers.split(";")):
        name, _, value = item.rpartition("=")
        out.append((name, float(value)))
    return out


def _saved(r: Row) -> str:
    if r.fused_bytes is None or r.unroll_bytes is None:
        return ""
    return f"{r.unroll_bytes / r.fused_bytes:.1f}x"


def _remark(r: Row) -> str:
    parts = [r.error] if r.error else []
    if r.unroll_error:
        parts.append(f"unroll: {r.unroll_error}")
    return "; ".join(parts)


Column = tuple[str, Callable[[Row], str]]
TABLE: list[Column] = [
    ("cell", lambda r: r.cell),
    ("dtype", lambda r: r.dtype),
    ("model", lambda r: r.model),
    ("target", lambda r: r.target),
    ("params", lambda r: _bytes(r.params)),
    ("Keras acc", lambda r: _acc(r.keras_acc)),
    ("acc", lambda r: _acc(r.fused_acc)),
    ("max err", lambda r: "" if r.max_abs_err is None else f"{r.max_abs_err:.1e}"),
    ("int8 steps", lambda r: "" if r.mean_steps is None or r.max_steps is None
     else f"{r.mean_steps:.2f} / {r.max_steps:.1f}"),
    ("file B", lambda r: _bytes(r.fused_bytes)),
    ("unroll B", lambda r: _bytes(r.unroll_bytes)),
    ("unroll/fused", _saved),
    ("unroll acc", lambda r: _acc(r.unroll_acc)),
    ("time/inf", lambda r: _time(r.fused_time, r.time_unit)),
    ("at mean L", lambda r: "" if r.time_at_mean is None
     else f"{_time(r.time_at_mean, r.time_unit)} (L={r.mean_length})"),
    ("min-max", _spread),
    ("fused op", _share),
    ("flash B", lambda r: _bytes(r.fused_flash)),
    ("RAM B", lambda r: _bytes(r.fused_ram)),
    ("TFLM time", lambda r: _time(r.tflm_time, r.time_unit)),
    ("TFLM arena", lambda r: _bytes(r.tflm_arena)),
    ("error", _remark),
]


TFLM_COLUMNS = ("TFLM time", "TFLM arena")


def table_columns(rows: list[Row]) -> list[Column]:
    """TABLE, without the TFLM columns when no row went through TFLM (no --tflm-*: the report
    says so in words instead of showing empty columns)."""
    if any(r.tflm_time is not None or r.tflm_arena is not None for r in rows):
        return TABLE
    return [c for c in TABLE if c[0] not in TFLM_COLUMNS]


def text_table(rows: list[Row]) -> str:
    table = table_columns(rows)
    cells = [[fmt(r) for _, fmt in table] for r in rows]
    widths = [max([len(h)] + [len(c[k]) for c in cells]) for k, (h, _) in enumerate(table)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(table, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() for c in cells]
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    table = table_columns(rows)
    lines = ["| " + " | ".join(h for h, _ in table) + " |", "|" + "---|" * len(table)]
    lines += ["| " + " | ".join(fmt(r).replace("|", "/") for _, fmt in table) + " |"
              for r in rows]
    return "\n".join(lines)


FAILED_HINT = (" (the error column says which step or check failed; a row that ran keeps its "
               "numbers. int8 rows are held to their test accuracy, within "
               "--max-accuracy-drop of Keras float, and to their C equalling the integer twin)")
INT8_RULE = ("int8 rows pass when their test accuracy is within --max-accuracy-drop of Keras "
             "float accuracy and every fused op's C equals its integer twin bit for bit on "
             "the first test samples (verdict.INT8_TWIN_SAMPLES; fusegen/verdict.py); `int8 steps` is their mean / max error "
             "against Keras float in output steps, reported, not judged (`fusegen verify` "
             "judges them, without labels)")


def failed_cells(rows: list[Row]) -> list[str]:
    """Cells with a row that failed (not merely pending), in order."""
    return list(dict.fromkeys(r.cell for r in rows if r.model == "fusegen" and r.error
                              and not r.error.startswith("pending")))


def layers_table(rows: list[Row]) -> list[str]:
    """Markdown lines: each measured row's ops with their mean time and share."""
    lines = []
    for r in rows:
        layers = layer_counts(r)
        if not layers:
            continue
        parts = ", ".join(f"{name} {_time(count, r.time_unit)} ({count / r.fused_time:.0%})"
                          for name, count in layers)
        lines.append(f"- {r.cell} {r.dtype}" + (f" on {r.target}" if r.target else "")
                     + f": {parts}")
    return lines


def write_markdown(results: list[CellResult], data: Dataset, setup: str, target: str,
                   path: Path, earlier: int = 0, tflm: str = "") -> None:
    from fusegen.fileio import write_text

    rows = [r for res in results for r in res.rows]
    methods = sorted({res.measure_method for res in results if res.measure_method})
    notes = list(dict.fromkeys(n for res in results for n in res.notes))
    unit = next((r.time_unit for r in rows if r.time_unit), "")
    failed = failed_cells(rows)
    layers = layers_table(rows)
    trained = [f"- {res.label}: {res.training}" for res in results if res.training]
    text = [
        f"# fusegen compare: {data.title}", "",
        (f"**Data.** {data.note}. T={data.timesteps}, F={data.features}, "
         f"{len(data.classes)} classes (chance {chance_level(data):.3f}); {len(data.x_train)} "
         f"train / {len(data.x_val)} validation / {len(data.x_test)} test samples."), "",
        f"**Models.** {setup}", "",
        *(["**Training.**", *trained, ""] if trained else []),
        (f"**Target.** {target}: {'; '.join(methods) or 'nothing measured'}. "
         f"time/inf is in {unit or 'the target unit'} (M = millions, k = thousands)."
         + (f" Variable-length data: time/inf is at T={data.timesteps} (every step real), "
            f"`at mean L` on samples of the test set's mean length {data.mean_length} padded to "
            "T, measured on the target (the fused op skips padded steps), not scaled."
            if data.variable else "")), "",
        ("**Scope.** Every row is the whole model as deployed: the fused recurrent op and the "
         "Dense head after it (float32: fg_matmul_f32; int8: the file's int8 FULLY_CONNECTED), "
         "softmax left out (it does not change the class). time/inf is the mean over the "
         "measured samples, min-max their range, `fused op` the recurrent op's share. flash B "
         "is the model's weights and all the code it links: the generated core and the runtime "
         "it calls (int8 links the quantized runtime too, a fixed cost that can make a small "
         "int8 model's flash exceed its float32 one's; the split is in the notes below). "
         "Rows whose model is not fusegen are baselines run through TFLM (see TFLM below), "
         "softmax left out too."), "",
        f"**Failed cells.** {', '.join(failed) if failed else 'none'}"
        + (FAILED_HINT if failed else ""), "",
        markdown_table(rows), "",
        ("unroll B / unroll acc: the stock TFLite converter on the same trained weights with "
         "`unroll=True`."), "",
        *([f"**int8 verdict.** {INT8_RULE}.", ""] if any(r.dtype == "int8" for r in rows)
          else []),
        f"**TFLM.** {tflm or NO_TFLM}", "",
        *(["## Time per layer", "", *layers, ""] if layers else []),
        *(f"- {n}" for n in notes), *([""] if notes else []),
        *([f"{earlier} cell result(s) come from earlier runs into this directory (same data)."
           , ""] if earlier else []),
        "![accuracy against time per inference](tradeoff.png)", "",
        "![accuracy against model bytes](size.png)", "",
        "![training curves](training.png)", "",
        "## summary.csv columns", "",
        *(f"- `{k}`: {v}" for k, v in COLUMN_DOCS.items()), "",
    ]
    write_text(path, "\n".join(text))


NO_TFLM = ("no TFLM build given (--tflm-include/--tflm-lib), so this report has no rows for "
           "the unroll=True models or TF's builtin LSTM timed on the target, and no TFLM "
           "arena: every row above is fusegen's core mode (the generated C, no TFLM). Give "
           "your TFLM build for those baselines.")
TFLM_NOTE = ("{lib} (compiled against with --tflm-flag: {flags}): TFLM time / TFLM arena are "
             "each file through your TFLM's MicroInterpreter "
             "on the target, softmax left out as in every row; the `unroll=True` rows are the "
             "stock converter's unrolled files and the `TFLM LSTM` rows TF's builtin "
             "UNIDIRECTIONAL_SEQUENCE_LSTM (a tf_keras LSTM with the same weights; LSTMCell "
             "only), each sample from zero states. Their acc and file bytes are those files' "
             "(TFLite interpreter); flash and RAM are not split out of the TFLM firmware.")


def chance_level(data: Dataset) -> float:
    """Accuracy of always answering the test set's most frequent class."""
    import numpy as np

    counts = np.bincount(data.y_test, minlength=len(data.classes))
    return float(counts.max() / max(1, counts.sum()))


# -- plots ----------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Marker per model kind and dtype; colour per cell. Baselines are hollow.
MARKERS = {("fused", "float32"): "o", ("fused", "int8"): "s",
           ("unroll", "float32"): "^", ("unroll", "int8"): "v",
           ("tflm", "float32"): "D", ("tflm", "int8"): "P"}
MARKER_NAMES = {("fused", "float32"): "fusegen float32", ("fused", "int8"): "fusegen int8",
                ("unroll", "float32"): "unroll=True float32", ("unroll", "int8"): "unroll=True int8",
                ("tflm", "float32"): "TFLM builtin LSTM float32",
                ("tflm", "int8"): "TFLM builtin LSTM int8"}
# The point kind of a row's model column (baseline rows: see run.py's UNROLL, TFLM_LSTM).
KINDS = {"fusegen": "fused", "unroll=True": "unroll", "TFLM LSTM": "tflm"}


@dataclass(frozen=True)
class Point:
    cell: str
    kind: str  # fused, unroll or tflm (the keys of MARKERS)
    dtype: str
    x: float
    y: float
    low: float | None = None  # the x range (min-max time) as a whisker
    high: float | None = None


def time_points(rows: list[Row]) -> list[Point]:
    """Every timed row: fusegen's and the TFLM baselines' (unroll=True, TFLM LSTM)."""
    points = []
    for r in rows:
        if r.model != "fusegen" and r.error:
            continue  # a baseline that failed, or does not compute the Keras model
        if r.fused_time is not None and r.fused_acc is not None:
            points.append(Point(r.cell, KINDS.get(r.model, "fused"), r.dtype, r.fused_time,
                                r.fused_acc, r.time_min, r.time_max))
    return points


def size_points(rows: list[Row]) -> list[Point]:
    """fusegen's files, the unroll=True files (from the fusegen rows' unroll columns, with or
    without TFLM) and TF's builtin LSTM files."""
    points = []
    for r in rows:
        if r.model == "unroll=True" or r.fused_acc is None or r.fused_bytes is None:
            pass
        else:
            points.append(Point(r.cell, KINDS.get(r.model, "fused"), r.dtype, r.fused_bytes,
                                r.fused_acc))
        if (r.model == "fusegen" and r.unroll_bytes is not None and r.unroll_acc is not None
                and not r.unroll_error):
            points.append(Point(r.cell, "unroll", r.dtype, r.unroll_bytes, r.unroll_acc))
    return points


@dataclass(frozen=True)
class Layout:
    """Where a figure's texts and axes landed (display pixels, x0, y0, x1, y1), for tests."""

    texts: tuple[tuple[str, tuple[float, float, float, float]], ...]
    axes: tuple[tuple[float, float, float, float], ...]
    legend_labels: tuple[str, ...]


def plot_tradeoff(rows: list[Row], path: Path, title: str, failed: list[str] | None = None,
                  chance: float | None = None) -> Layout:
    """Deployed accuracy against time per inference (whiskers: min-max over the samples), one
    panel per target; colour per cell, marker per model and dtype."""
    unit = next((r.time_unit for r in rows if r.time_unit), "")
    return _scatter_figure(rows, path, title, failed or [], chance, time_points,
                    f"time per inference ({unit})" if unit else "time per inference",
                    lambda v: _time(v, unit), by_target=True)


def plot_size(rows: list[Row], path: Path, title: str, failed: list[str] | None = None,
              chance: float | None = None) -> Layout:
    """Deployed accuracy against the .tflite's bytes; the stock unroll=True files as hollow
    points. Sizes do not depend on the target: one panel."""
    first = next((r.target for r in rows), "")
    return _scatter_figure([r for r in rows if r.target == first], path, title, failed or [], chance,
                    size_points, "model file bytes (.tflite; kB = 1,000 B)", _kib_tick,
                    by_target=False)


def _kib_tick(v: float) -> str:
    return f"{v / 1000:g} kB" if v >= 1000 else f"{v:.0f} B"


def _scatter_figure(rows: list[Row], path: Path, title: str, failed: list[str],
                    chance: float | None, points_of, xlabel: str, xfmt,
                    by_target: bool) -> Layout:
    import textwrap

    plt = _pyplot()
    targets = (list(dict.fromkeys(r.target for r in rows)) or [""]) if by_target else [""]
    cells = list(dict.fromkeys(r.cell for r in rows))
    palette = plt.cm.tab10 if len(cells) <= 10 else plt.cm.tab20
    colors = {c: palette(k % palette.N) for k, c in enumerate(cells)}
    fig, axes = plt.subplots(len(targets), 1, figsize=(9.5, 5.2 * len(targets)), dpi=110,
                             squeeze=False)
    shown = []
    for ax, target in zip(axes[:, 0], targets):
        chosen = [r for r in rows if r.target == target] if by_target else rows
        panel = f"{title} ({target})" if target else title
        shown.append(_scatter_panel(ax, points_of(chosen), colors, panel, chance, xlabel, xfmt))
    legend = _legends(fig, [f"{c} (failed)" if c in failed else c for c in cells], colors,
                      points_of(rows), chance, all(shown))
    if failed:
        text = "failed (see summary.md; a row that did not run has no point): " + ", ".join(failed)
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(text, 110)), fontsize=8.5,
                 color="firebrick", va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.04 + 0.02 * (len(", ".join(failed)) // 110) if failed else 0,
                           0.74, 1))
    fig.savefig(path, bbox_inches="tight", pad_inches=0.15)  # the legend's long names stay in
    layout = _layout(fig, legend)
    plt.close(fig)
    return layout


def _layout(fig, legend) -> Layout:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()

    def box(artist) -> tuple[float, float, float, float]:
        b = artist.get_window_extent(renderer)
        return (b.x0, b.y0, b.x1, b.y1)

    texts = [(t.get_text(), box(t)) for t in fig.texts if t.get_text()]
    for ax in fig.axes:
        texts += [(t.get_text(), box(t)) for t in (ax.title, ax.xaxis.label, ax.yaxis.label)
                  if t.get_text()]
    texts.append(("legend", box(legend)))
    return Layout(tuple(texts), tuple(box(ax) for ax in fig.axes),
                  tuple(t.get_text() for t in legend.get_texts()))


def _scatter_panel(ax, points: list[Point], colors: dict, title: str, chance: float | None,
                   xlabel: str, xfmt) -> bool:
    """Draws the points; True when the chance line is inside the y range (drawn)."""
    for p in points:
        marker = MARKERS.get((p.kind, p.dtype), "o")
        hollow = p.kind != "fused"
        if p.low is not None and p.high is not None and p.high > p.low:
            ax.errorbar(p.x, p.y, xerr=[[p.x - p.low], [p.high - p.x]], fmt="none",
                        ecolor=colors[p.cell], elinewidth=1.2, capsize=3, zorder=2)
        ax.scatter(p.x, p.y, s=70, marker=marker, zorder=3, linewidths=1.3,
                   facecolors="none" if hollow else colors[p.cell],
                   edgecolors=colors[p.cell] if hollow else "black")
    if points:
        xs = [p.x for p in points] + [p.high for p in points if p.high] + \
            [p.low for p in points if p.low]
        x0, x1 = min(xs), max(xs)
        if x1 > 20 * x0 > 0:
            from matplotlib.ticker import LogLocator

            ax.set_xscale("log")
            ax.set_xlim(x0 / 1.4, x1 * 1.4)
            # 1-2-5 steps: a decade or two has labelled ticks, not one "1.00 M" alone.
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        else:
            span = max(x1 - x0, 0.1 * x1)
            ax.set_xlim(max(0.0, x0 - 0.12 * span), x1 + 0.12 * span)
        ys = [p.y for p in points]
        # The chance line joins the y range when near the points; far below them it would
        # squeeze every point into a sliver at the top, and the legend gives its value instead.
        near = chance is not None and chance >= min(ys) - max(0.25, 1.5 * (max(ys) - min(ys)))
        ys += [chance] if near else []
        y0, y1 = min(ys), max(ys)
        pad = max(0.02, 0.08 * (y1 - y0))
        ax.set_ylim(max(0.0, y0 - pad), min(1.0, y1 + pad) + 0.01)
    else:
        near = chance is not None
        ax.text(0.5, 0.5, "no measured rows (see summary.md)", ha="center", va="center",
                transform=ax.transAxes)
    if near:
        ax.axhline(chance, color="0.45", ls=":", lw=1.2, zorder=1)
    ax.xaxis.set_major_formatter(lambda v, _: xfmt(v) if v > 0 else "0")
    ax.xaxis.set_minor_formatter(lambda v, _: "")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (deployed)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    return near


def _legends(fig, cells: list[str], colors: dict, points: list[Point],
             chance: float | None, chance_drawn: bool):
    """Two legends right of the axes: cells by colour, models by marker (and the chance line)."""
    from matplotlib.lines import Line2D

    cell_handles = [Line2D([], [], ls="", marker="o", markersize=8,
                           markerfacecolor=colors[c.removesuffix(" (failed)")],
                           markeredgecolor="black", label=c) for c in cells]
    kinds = [k for k in MARKERS if any((p.kind, p.dtype) == k for p in points)]
    kind_handles = [Line2D([], [], ls="", marker=MARKERS[k], markersize=8, color="black",
                           markerfacecolor="none" if k[0] != "fused" else "white",
                           label=MARKER_NAMES[k] + (" (hollow)" if k[0] != "fused" else ""))
                    for k in kinds]
    if any(p.low is not None and p.high is not None and p.high > p.low for p in points):
        kind_handles.append(Line2D([], [], color="0.3", marker="|", markersize=8,
                                   label="min-max over samples"))
    if chance is not None:
        where = "" if chance_drawn else " (below the axes)"
        kind_handles.append(Line2D([], [], color="0.45", ls=":",
                                   label=f"chance {chance:.2f}{where}"))
    # One legend (two would overlap with many cells): the cells, a gap, the models.
    header = Line2D([], [], ls="", marker="", label="model (marker)")
    return fig.legend(handles=[*cell_handles, Line2D([], [], ls="", label=" "), header, *kind_handles],
               title="cell (colour)", loc="upper left", bbox_to_anchor=(0.745, 0.985),
               fontsize=8.5, title_fontsize=9, frameon=False, alignment="left")


def plot_training(results: list[CellResult], path: Path) -> None:
    """Per cell: accuracy (top) and loss (bottom), training solid and validation dashed."""
    plt = _pyplot()
    trained = [r for r in results if r.history]
    n = max(len(trained), 1)
    cols = min(n, 4)
    blocks = math.ceil(n / cols)
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(3.6 * cols, 5.2 * blocks), dpi=110,
                             squeeze=False, sharex="col")
    for k in range(blocks * cols):
        acc_ax, loss_ax = axes[2 * (k // cols)][k % cols], axes[2 * (k // cols) + 1][k % cols]
        if k >= len(trained):
            acc_ax.axis("off")
            loss_ax.axis("off")
            continue
        _curves(trained[k], acc_ax, loss_ax)
    if trained:
        axes[0][0].legend(["train", "validation"], fontsize=8, loc="lower right")
    else:
        axes[0][0].text(0.5, 0.5, "no model was trained in this run", ha="center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _curves(result: CellResult, acc_ax, loss_ax) -> None:
    from matplotlib.ticker import MaxNLocator

    h = result.history
    epochs = range(1, len(h["loss"]) + 1)
    acc_ax.plot(epochs, h["accuracy"], color="tab:blue")
    acc_ax.plot(epochs, h.get("val_accuracy", []), color="tab:orange", ls="--")
    test = result.rows[0].keras_acc
    title = result.label + (f"  (test {test:.3f})" if test is not None else "")
    acc_ax.set_title(title, fontsize=10)
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(0, 1.02)
    acc_ax.grid(True, alpha=0.3)
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.plot(epochs, h["loss"], color="tab:blue")
    loss_ax.plot(epochs, h.get("val_loss", []), color="tab:orange", ls="--")
    loss_ax.set_ylabel("loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.grid(True, alpha=0.3)
