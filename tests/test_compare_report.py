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
    assert "**Failed cells.** BrokenCell (the error column says which" in text
    assert "- LSTM: LSTM kept epoch 3" in text and "Training: Adam" in text
    assert "## Time per layer" in text
    assert "- LSTM float32 on qemu-m4: FUSEGEN_X 270 k (90%), FULLY_CONNECTED 30 k (10%)" in text
    assert "no TFLM build given" in text
    header = next(line for line in text.splitlines() if line.startswith("| cell"))
    assert "min-max" in header and "fused op" in header
    lstm = next(line for line in text.splitlines() if line.startswith("| LSTM | float32"))
    assert "294 k-306 k" in lstm and "270 k (90%)" in lstm


def _baseline_rows() -> list[Row]:
    """An LSTM's fusegen rows and the TFLM baselines `compare --tflm-*` adds beside them."""
    rows = []
    for dtype, t in (("float32", 800_000), ("int8", 680_000)):
        rows.append(Row("LSTM", dtype, params=6057, keras_acc=0.97, fused_acc=0.97,
                        fused_bytes=25_000, fused_time=t, time_min=t - 5_000, time_max=t + 9_000,
                        time_unit="instructions", tflm_time=t + 30_000, tflm_arena=3_000,
                        unroll_bytes=92_000, unroll_acc=0.96, target="qemu-m4"))
        rows.append(Row("LSTM", dtype, "unroll=True", params=6057, keras_acc=0.97, fused_acc=0.96,
                        fused_bytes=92_000, fused_time=2.5 * t, time_min=2.5 * t,
                        time_max=2.5 * t, time_unit="instructions", tflm_time=2.5 * t,
                        tflm_arena=9_000, target="qemu-m4"))
        rows.append(Row("LSTM", dtype, "TFLM LSTM", params=6057, keras_acc=0.97, fused_acc=0.965,
                        fused_bytes=28_000, fused_time=1.5 * t, time_min=1.5 * t,
                        time_max=1.5 * t, time_unit="instructions", tflm_time=1.5 * t,
                        tflm_arena=4_000, target="qemu-m4"))
    rows.append(Row("GRU", "int8", "TFLM LSTM", target="qemu-m4",
                    error="TFLM LSTM int8 through TFLM: arena too small"))
    return rows


def test_tflm_baseline_rows_are_points_and_rows(tmp_path):
    rows = _baseline_rows()
    # A baseline that failed is in its row's error; it does not make the cell a failed one.
    assert report.failed_cells(rows) == []
    time_kinds = {(p.kind, p.dtype): p.x for p in report.time_points(rows)}
    assert time_kinds == {("fused", "float32"): 800_000, ("unroll", "float32"): 2_000_000,
                          ("tflm", "float32"): 1_200_000, ("fused", "int8"): 680_000,
                          ("unroll", "int8"): 1_700_000, ("tflm", "int8"): 1_020_000}
    # Bytes: each file once (the unroll=True files from the fusegen rows' unroll columns).
    sizes = sorted((p.kind, p.dtype, p.x) for p in report.size_points(rows))
    assert sizes == sorted([("fused", d, 25_000) for d in ("float32", "int8")]
                           + [("unroll", d, 92_000) for d in ("float32", "int8")]
                           + [("tflm", d, 28_000) for d in ("float32", "int8")])
    for plot, draw in (("tradeoff", report.plot_tradeoff), ("size", report.plot_size)):
        layout = draw(rows, tmp_path / f"{plot}.png", f"JapaneseVowels: {plot}", [], 0.24)
        for name in ("unroll=True float32 (hollow)", "TFLM builtin LSTM int8 (hollow)"):
            assert name in layout.legend_labels, (plot, layout.legend_labels)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    y = np.array([0, 1, 0, 1])
    data = Dataset("jv", x, y, x, y, x, y, ("a", "b"), "note", "JapaneseVowels")
    path = tmp_path / "summary.md"
    report.write_markdown([CellResult("LSTM", rows)], data, "setup", "qemu-m4", path,
                          tflm=report.TFLM_NOTE.format(
                              lib="libtensorflow-microlite.a", flags="none"))
    text = path.read_text()
    assert "no TFLM build given" not in text and "UNIDIRECTIONAL_SEQUENCE_LSTM" in text
    lines = text.splitlines()
    assert any(ln.startswith("| LSTM | int8 | TFLM LSTM | qemu-m4 |") and "1.02 M" in ln
               for ln in lines)
    assert any(ln.startswith("| LSTM | float32 | unroll=True |") and "9,000" in ln
               for ln in lines)


def test_without_tflm_the_report_says_so_in_words(tmp_path):
    """No --tflm-*: no baseline rows and no empty TFLM columns, a sentence instead."""
    rows = [r for r in _rows() if r.cell == "LSTM"]
    x = np.zeros((2, 3, 1), np.float32)
    y = np.array([0, 1])
    data = Dataset("d", x, y, x, y, x, y, ("a", "b"), "note", "D")
    path = tmp_path / "summary.md"
    report.write_markdown([CellResult("LSTM", rows)], data, "setup", "qemu-m4", path)
    text = path.read_text()
    assert "**TFLM.** no TFLM build given (--tflm-include/--tflm-lib)" in text
    assert "no rows for the unroll=True models or TF's builtin LSTM" in text
    header = next(line for line in text.splitlines() if line.startswith("| cell"))
    assert "TFLM" not in header and "unroll time" not in header


def test_saturation_warning_only_when_values_saturate(capsys, monkeypatch):
    """verify's int8 input-range warning (printed by every int8 verify compare runs): silent for
    a couple of outliers unless --verbose, and it counts what saturates."""
    from fusegen import quiet
    from fusegen.commands.verify import SATURATION_WARNING, _warn_outside_calibration

    q = (1 / 64, 0)  # the int8 input covers [-2, 1.984]
    x = np.zeros(10_000, np.float32)
    _warn_outside_calibration(x, q, "x.npy")
    assert capsys.readouterr().err == ""
    x[:3] = 5.0  # 0.03%: the outliers calibration on a sample leaves out
    assert 3 / x.size < SATURATION_WARNING
    _warn_outside_calibration(x, q, "x.npy")
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(quiet._state, "verbose", True)
    _warn_outside_calibration(x, q, "x.npy")
    assert "3 of the 10,000 values in x.npy (0.03%)" in capsys.readouterr().err
    monkeypatch.setitem(quiet._state, "verbose", False)
    x[:50] = -3.0  # 0.5%
    _warn_outside_calibration(x, q, "x.npy")
    err = capsys.readouterr().err
    assert err.startswith("fusegen: warning: 50 of the 10,000 values") and "(0.5%)" in err
