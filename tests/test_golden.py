"""Generated code is golden output (STYLE.md item 12): a refactor leaves these files
byte-identical or updates them on purpose with FUSEGEN_UPDATE_GOLDEN=1."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import pytest

from fusegen.codegen import kernel_files
from fusegen.lower import class_factory, lower_cell

GOLDEN = Path(__file__).resolve().parent / "golden"
# name -> (cell class, constructor arguments, dtypes the kernel is generated for)
KERNELS = {
    "simple_rnn": (keras.layers.SimpleRNNCell, {}, ("f32",)),
    "gru": (keras.layers.GRUCell, {}, ("f32",)),
    "lstm_int8": (keras.layers.LSTMCell, {}, ("f32", "s8")),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_generated_kernel_matches_golden(name):
    cls, kwargs, dtypes = KERNELS[name]
    lowered = lower_cell(class_factory(cls, kwargs))
    files = kernel_files(lowered.graph, lowered.op_name, dtypes)
    folder = GOLDEN / name
    if os.environ.get("FUSEGEN_UPDATE_GOLDEN") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
    stored = {p.name: p.read_text() for p in folder.iterdir()}
    assert sorted(stored) == sorted(files), "generated file set changed"
    for file_name, text in files.items():
        assert text == stored[file_name], f"{name}/{file_name} differs from its golden copy"
