"""compare's report without training: ten cells' rows (one failed, two variants of one class)
rendered by the real plotting and markdown code, and the pictures' layout checked."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from fusegen.compare import report
from fusegen.compare.datasets import Dataset
from fusegen.compare.run import CellResult, Row

CELLS = ["LSTM", "GRU", "SimpleRNN", "MinimalGatedCell", "PeepholeLSTMCell", "IndRNNCell",
         "GRU(reset_after=False)", "GRU/v2", "A_rather_long_user_cell_name_Cell", "BrokenCell"]


def _rows() -> list[Row]:
    rows = []
    for k, cell in enumerate(CELLS):
        for dtype in ("float32", "int8"):
            if cell == "BrokenCell":
                rows.append(Row(cell, dtype, target="qemu-m4",
                                error="train: ValueError: the cell's call failed"))
                continue
            # Close times and equal accuracies: the worst case for labels that collide.
            t = 300_000 + 20_000 * k - (50_000 if dtype == "int8" else 0)
            rows.append(Row(cell, dtype, params=1000 + k, keras_acc=0.9, fused_acc=0.9 + 0.01 * (k % 2),
                            fused_bytes=9_000 + 300 * k, fused_time=t, time_min=0.98 * t,
                            time_max=1.02 * t, time_unit="instructions", fused_flash=12_000,
                            fused_ram=2_000, op_time=0.9 * t,
                            layers=f"FUSEGEN_X={0.9 * t:.0f};FULLY_CONNECTED={0.1 * t:.0f}",
                            unroll_bytes=60_000 + 900 * k, unroll_acc=0.9, target="qemu-m4"))
    return rows


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("plot", ["tradeoff", "size"])
def test_ten_cells_render_legible_pictures(plot, tmp_path):
    rows = _rows()
    failed = report.failed_cells(rows)
    assert failed == ["BrokenCell"]
    path = tmp_path / f"{plot}.png"
    draw = report.plot_tradeoff if plot == "tradeoff" else report.plot_size
    layout = draw(rows, path, f"GunPoint: accuracy vs {plot}", failed, 0.5)
    with Image.open(path) as image:  # a real PNG, not blank
        assert image.size[0] > 600 and image.size[1] > 300
        assert len(np.unique(np.asarray(image.convert("L")))) > 20
    texts = dict(layout.texts)
    # The data set's name in the title, the failed cell on the figure, every cell in the legend
    # by colour and the model kinds by marker, the chance line.
    assert any(name.startswith("GunPoint:") for name in texts)
    assert any("failed" in name and "BrokenCell" in name for name in texts)
    labels = layout.legend_labels
    assert [c for c in CELLS[:-1]] + ["BrokenCell (failed)"] == list(labels[:len(CELLS)])
    assert "fusegen float32" in labels and "fusegen int8" in labels
    assert any(label.startswith("chance 0.50") for label in labels)
    if plot == "size":  # the stock unroll=True files are points there
        assert "unroll=True float32 (hollow)" in labels
    # No two texts overlap, and none overlaps a plot area except its own axis labels' room.
    for (a, box_a), (b, box_b) in itertools.combinations(layout.texts, 2):
        assert not _overlap(box_a, box_b), (a, b)
    for name, box in layout.texts:
        for axes in layout.axes:
            assert not _overlap(box, axes) or name.startswith("GunPoint"), name


def test_markdown_names_data_training_failed_cells_and_layers(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5, 2)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 1, 1])
    data = Dataset("gunpoint", x, y, x, y, x, y, ("1", "2"), "GunPoint (aeon wheel): test note",
                   "GunPoint")
    rows = _rows()
    results = [CellResult(c, [r for r in rows if r.cell == c], training=f"{c} kept epoch 3")
               for c in CELLS]
    path = tmp_path / "summary.md"
    report.write_markdown(results, data, "Input(5, 2) -> ... Training: Adam", "qemu-m4", path)
    text = path.read_text()
    assert text.startswith("# fusegen compare: GunPoint")
    assert "GunPoint (aeon wheel): test note" in text and "chance 0.667" in text
    assert "**Failed cells.** BrokenCell" in text
    assert "- LSTM: LSTM kept epoch 3" in text and "Training: Adam" in text
    assert "## Time per layer" in text
    assert "- LSTM float32 on qemu-m4: FUSEGEN_X 270 k (90%), FULLY_CONNECTED 30 k (10%)" in text
    assert "no TFLM build given" in text
    header = next(line for line in text.splitlines() if line.startswith("| cell"))
    assert "min-max" in header and "fused op" in header
    lstm = next(line for line in text.splitlines() if line.startswith("| LSTM | float32"))
    assert "294 k-306 k" in lstm and "270 k (90%)" in lstm
