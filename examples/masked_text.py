"""A text-style model with a mask: Embedding(mask_zero=True) -> GRU -> Dense, trained on a small
generated data set of variable-length token sequences, converted by fusegen with the mask fused
into the GRU op, float32 and int8, and checked: each converted file's accuracy equals Keras'.

    python examples/masked_text.py [OUT_DIR]

The data: sentences of 3 to 16 tokens from a 24-word vocabulary (id 0 is padding), padded to 16
as `keras.utils.pad_sequences` does, half at the end and half at the front. Words 1-11 are
"positive", 12-23 "negative"; the label says which kind the sentence has more of. The .tflite's
GRU op reads the mask NOT_EQUAL(ids, 0) as its last input and skips the padded steps, so its
numbers are the trained model's (dropping the mask would run the padding as words).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# TensorFlow's start-up log lines off, as `import fusegen` before keras would (README, "Python API").
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import fusegen

VOCAB, T = 24, 16


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n padded sentences [n, T] (float ids, 0 = padding) and their labels [n]."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, T), np.float32)
    y = np.zeros(n, np.int64)
    for k in range(n):
        length = int(rng.integers(3, T + 1))
        words = rng.integers(1, VOCAB, length)
        positive = int(np.sum(words < 12))
        if positive * 2 == length:  # no ties
            words[0] = 1 if words[0] >= 12 else 12
            positive = int(np.sum(words < 12))
        y[k] = int(positive * 2 > length)
        if k % 2:
            x[k, :length] = words  # padding="post"
        else:
            x[k, T - length:] = words  # padding="pre" (pad_sequences' default)
    return x, y


def make_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((T,)),
        keras.layers.Embedding(VOCAB, 8, mask_zero=True),
        keras.layers.GRU(13),
        keras.layers.Dense(2),
    ])


def main(out: Path | None = None, samples: int = 1200, epochs: int = 6) -> dict:
    x, y = make_data(samples, seed=0)
    x_test, y_test = make_data(300, seed=1)
    model = make_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    tflite = fusegen.convert(model)
    report = fusegen.verify(tflite, model, inputs=x_test)
    from fusegen.commands.verify import accuracies, run_float_file

    keras_acc, file_acc = accuracies(y_test, np.asarray(model(x_test)),
                                     run_float_file(tflite, model, x_test))
    # int8: the ids stay int32 (GATHER on the int8 table), the mask is NOT_EQUAL(ids, 0).
    tflite_int8 = fusegen.convert(model, quantize="int8", calibration=x)
    report_int8 = fusegen.verify(tflite_int8, model, inputs=x_test, labels=y_test)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "masked_text.tflite").write_bytes(tflite)
        (out / "masked_text_int8.tflite").write_bytes(tflite_int8)
        model.save(out / "masked_text.keras")
        np.save(out / "masked_text_x.npy", x_test)
        np.save(out / "masked_text_y.npy", y_test)
    print(report)
    print(report_int8)
    print(f"accuracy on {len(y_test)} test sentences: Keras {keras_acc:.3f}, the .tflite "
          f"{file_acc:.3f}, int8 {report_int8.int8.int8_accuracy:.3f}")
    return {"report": report, "keras_accuracy": keras_acc, "file_accuracy": file_acc,
            "tflite": tflite, "report_int8": report_int8,
            "int8_accuracy": report_int8.int8.int8_accuracy, "tflite_int8": tflite_int8}


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
