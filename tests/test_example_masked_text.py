"""examples/masked_text.py runs: Embedding(mask_zero=True) -> GRU -> Dense trained on generated
variable-length sentences; the converted float32 and int8 files' accuracy equals Keras' and verify
passes (the mask fused into the GRU op)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import masked_text  # noqa: E402


def test_masked_text_example_accuracy_equals_keras():
    result = masked_text.main(samples=600, epochs=4)
    assert result["report"].passed
    assert result["file_accuracy"] == result["keras_accuracy"]
    assert result["report_int8"].passed
    assert result["int8_accuracy"] == result["keras_accuracy"]
    assert result["keras_accuracy"] > 0.6  # it learned something: the mask is not decoration
