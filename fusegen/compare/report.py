"""The report: summary.csv (every number), summary.md and the terminal table (the same table,
formatted), tradeoff.png (accuracy against time per inference) and training.png (curves)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from fusegen.compare.run import CellResult, Row
from fusegen.compare.datasets import Dataset

# What each summary.csv column holds (written into summary.md under the table).
COLUMN_DOCS = {
    "cell": "cell class (or model file) name",
    "dtype": "float32 or int8",
    "params": "parameters of the Keras model",
    "keras_acc": "test accuracy of the trained Keras model (float32)",
    "fused_acc": "test accuracy of the fusegen-deployed model (C core of the fused layer + Dense)",
    "max_abs_err": "largest |fused layer - Keras layer| over the test set (fusegen verify)",
    "fused_bytes": "size of the fusegen .tflite",
    "fused_time": "time per inference on the target, in time_unit (mean over a few test samples)",
    "time_unit": "instructions, cycles or ns",
    "fused_flash": "bytes of model code + weights on the target",
    "fused_ram": "bytes of the model's static buffers (state, scratch, activations)",
    "unroll_acc": "test accuracy of the stock converter's unroll=True .tflite (TFLite interpreter)",
    "unroll_bytes": "size of the stock unroll=True .tflite",
    "unroll_time": "time per inference of the unroll=True model (targets running stock TFLite)",
    "unroll_error": "why the unroll=True conversion has no numbers",
    "target": "where fused_time was measured",
    "error": "why the fused columns are empty (pending: a path not written yet)",
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
    ("target", lambda r: r.target),
    ("params", lambda r: _bytes(r.params)),
    ("Keras acc", lambda r: _acc(r.keras_acc)),
    ("fused acc", lambda r: _acc(r.fused_acc)),
    ("max err", lambda r: "" if r.max_abs_err is None else f"{r.max_abs_err:.1e}"),
    ("fused B", lambda r: _bytes(r.fused_bytes)),
    ("unroll B", lambda r: _bytes(r.unroll_bytes)),
    ("unroll/fused", _saved),
    ("unroll acc", lambda r: _acc(r.unroll_acc)),
    ("time/inf", lambda r: _time(r.fused_time, r.time_unit)),
    ("flash B", lambda r: _bytes(r.fused_flash)),
    ("RAM B", lambda r: _bytes(r.fused_ram)),
    ("error", _remark),
]


def text_table(rows: list[Row]) -> str:
    cells = [[fmt(r) for _, fmt in TABLE] for r in rows]
    widths = [max([len(h)] + [len(c[k]) for c in cells]) for k, (h, _) in enumerate(TABLE)]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(TABLE, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip() for c in cells]
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(h for h, _ in TABLE) + " |", "|" + "---|" * len(TABLE)]
    lines += ["| " + " | ".join(fmt(r).replace("|", "/") for _, fmt in TABLE) + " |"
              for r in rows]
    return "\n".join(lines)


def write_markdown(results: list[CellResult], data: Dataset, setup: str, target: str,
                   path: Path) -> None:
    rows = [r for res in results for r in res.rows]
    methods = sorted({res.measure_method for res in results if res.measure_method})
    notes = list(dict.fromkeys(n for res in results for n in res.notes))
    unit = next((r.time_unit for r in rows if r.time_unit), "")
    text = [
        "# fusegen compare", "",
        (f"**Data.** {data.note}. T={data.timesteps}, F={data.features}, "
         f"{len(data.classes)} classes; {len(data.x_train)} train / {len(data.x_val)} "
         f"validation / {len(data.x_test)} test samples."), "",
        f"**Models.** {setup}", "",
        (f"**Target.** {target}: {'; '.join(methods) or 'nothing measured'}. "
         f"time/inf is in {unit or 'the target unit'} (M = millions, k = thousands)."), "",
        markdown_table(rows), "",
        ("unroll B / unroll acc: the stock TFLite converter on the same trained weights with "
         "`unroll=True`. The host target runs no stock TFLite model, so unroll time is "
         "measured only by targets that do (summary.csv `unroll_time`)."), "",
        *(f"- {n}" for n in notes), *([""] if notes else []),
        "![accuracy against time per inference](tradeoff.png)", "",
        "![training curves](training.png)", "",
        "## summary.csv columns", "",
        *(f"- `{k}`: {v}" for k, v in COLUMN_DOCS.items()), "",
    ]
    path.write_text("\n".join(text))


# -- plots ----------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(rows: list[Row], path: Path, title: str) -> None:
    """Deployed accuracy against time per inference, one panel per target; marker area follows
    the model's bytes."""
    plt = _pyplot()
    targets = list(dict.fromkeys(r.target for r in rows)) or [""]
    fig, axes = plt.subplots(len(targets), 1, figsize=(8.5, 5.8 * len(targets)), dpi=120,
                             squeeze=False)
    cells = list(dict.fromkeys(r.cell for r in rows))
    colors = {c: plt.cm.tab10(k % 10) for k, c in enumerate(cells)}
    for ax, target in zip(axes[:, 0], targets):
        panel = f"{title} ({target})" if target else title
        _tradeoff_panel(ax, [r for r in rows if r.target == target], colors, panel)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _tradeoff_panel(ax, rows: list[Row], colors: dict, title: str) -> None:
    points = [r for r in rows if r.fused_time is not None and r.fused_acc is not None]
    biggest = max([r.fused_bytes or 1 for r in points] or [1])
    if points:
        _pad_limits(ax, [r.fused_time for r in points], [r.fused_acc for r in points])
    placed: list[tuple[float, float]] = []  # label anchors, in axes fractions
    for r in sorted(points, key=lambda r: r.fused_time):
        size = 80 + 900 * (r.fused_bytes or 0) / biggest
        ax.scatter(r.fused_time, r.fused_acc, s=size, color=colors[r.cell], alpha=0.75,
                   marker="o" if r.dtype == "float32" else "s", edgecolors="black", linewidths=0.8,
                   zorder=3)
        offset, va = _label_place(ax, r.fused_time, r.fused_acc, placed)
        ax.annotate(f"{r.cell} {r.dtype}\n{_kib(r.fused_bytes)}",
                    (r.fused_time, r.fused_acc), textcoords="offset points", xytext=offset,
                    ha="center", va=va, fontsize=8.5, linespacing=1.15, zorder=4,
                    arrowprops=(dict(arrowstyle="-", color="0.55", lw=0.7, shrinkB=8)
                                if abs(offset[1]) > 20 else None))
    unit = next((r.time_unit for r in points), "")
    ax.set_xlabel(f"time per inference ({unit})" if unit else "time per inference")
    ax.xaxis.set_major_formatter(lambda v, _: _time(v, unit) if v > 0 else "0")
    ax.set_ylabel("test accuracy (deployed)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    if points:
        ax.text(0.01, 0.01, "marker area ~ fused .tflite bytes (under each label; stock unroll=True "
                "sizes in summary.md); circle float32, square int8",
                transform=ax.transAxes, fontsize=8, color="0.35")
    else:
        ax.text(0.5, 0.5, "no measured rows (see summary.md)", ha="center",
                transform=ax.transAxes)


def _label_place(ax, x: float, y: float, placed: list[tuple[float, float]]):
    """Above the marker, or below it, or further up, whichever keeps clear of labels already
    placed (a label is about 0.2 x 0.12 of the axes)."""
    fx, fy = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))
    for offset, va, dx, dy in (((0, 14), "bottom", 0, 0.07), ((0, -16), "top", 0, -0.07),
                               ((0, 40), "bottom", 0, 0.14), ((0, -42), "top", 0, -0.14),
                               ((0, 66), "bottom", 0, 0.21), ((0, -68), "top", 0, -0.21)):
        anchor = (fx + dx, fy + dy)
        if all(abs(anchor[0] - px) > 0.2 or abs(anchor[1] - py) > 0.075 for px, py in placed):
            placed.append(anchor)
            return offset, va
    placed.append((fx, fy + 0.07))
    return (0, 14), "bottom"


def _kib(n: int | None) -> str:
    return "" if n is None else f"{n / 1024:.1f} KiB"


def _unroll_note(r: Row) -> str:
    return f"\nunroll=True {_kib(r.unroll_bytes)}" if r.unroll_bytes else ""


def _pad_limits(ax, xs: list[float], ys: list[float]) -> None:
    x0, x1 = min(xs), max(xs)
    span = max(x1 - x0, 0.1 * x1)
    ax.set_xlim(max(0.0, x0 - 0.25 * span), x1 + 0.25 * span)
    y0, y1 = min(ys), max(ys)
    ax.set_ylim(max(0.0, y0 - max(0.04, 0.3 * (y1 - y0))), min(1.0, y1 + 0.08) + 0.03)
    ax.set_yticks([t for t in ax.get_yticks() if t <= 1.0])  # room for labels, no 102 %


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
