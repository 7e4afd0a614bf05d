"""The classifier compare trains for every cell: Input(T, F) -> RNN(cell) -> Dense(softmax).

Training is seeded and deterministic (keras.utils.set_random_seed, TF op determinism), so the
same cell, data and options give the same weights, which is what makes the cache honest.
Adam with the learning rate halved after `patience // 2` epochs without a better validation
loss; early stopping after `patience` such epochs, and the weights of the epoch with the lowest
validation loss restored at the end (whether or not training stopped early). patience=0: a
fixed number of epochs, the last epoch's weights.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import keras
import numpy as np
import tensorflow as tf

from fusegen.compare.datasets import Dataset

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    units: int = 32
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 0.005
    seed: int = 0
    patience: int = 10  # epochs without a better validation loss before stopping; 0: never

    def describe(self) -> str:
        """The settings as the report states them."""
        text = (f"Adam, learning rate {self.learning_rate}, batch {self.batch_size}, at most "
                f"{self.epochs} epochs, seed {self.seed}")
        if self.patience:
            text += (f"; learning rate halved after {max(1, self.patience // 2)} epochs without a "
                     f"lower validation loss, early stopping after {self.patience}, the weights "
                     "of the epoch with the lowest validation loss restored")
        else:
            text += "; no early stopping (--patience 0): the last epoch's weights"
        return text


History = dict[str, list[float]]  # loss, accuracy, val_loss, val_accuracy per epoch


def classifier(cell: keras.layers.Layer, timesteps: int, features: int, classes: int,
               unroll: bool = False, name: str = "classifier") -> keras.Model:
    return keras.Sequential([keras.Input((timesteps, features)),
                             keras.layers.RNN(cell, unroll=unroll, name="rnn"),
                             keras.layers.Dense(classes, activation="softmax", name="head")],
                            name=name)


def train(make_cell: Callable[[int], keras.layers.Layer], data: Dataset, options: TrainOptions,
          log: Log, name: str = "classifier") -> tuple[keras.Model, History]:
    keras.utils.set_random_seed(options.seed)
    tf.config.experimental.enable_op_determinism()
    model = classifier(make_cell(options.units), data.timesteps, data.features,
                       len(data.classes), name=_model_name(name))
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks: list[keras.callbacks.Callback] = [_Progress(options.epochs, log)]
    if options.patience:
        callbacks += [keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5,
                                                        patience=max(1, options.patience // 2)),
                      keras.callbacks.EarlyStopping("val_loss", patience=options.patience,
                                                    restore_best_weights=True)]
    fit = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                    epochs=options.epochs, batch_size=options.batch_size, shuffle=True, verbose=0,
                    callbacks=callbacks)
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items() if k != "learning_rate"}
    if options.patience and history.get("val_loss"):
        best = int(np.argmin(history["val_loss"])) + 1
        log(f"best epoch {best} of {len(history['val_loss'])} (lowest validation loss): its "
            "weights kept")
    return model, history


def best_epoch(history: History | None, patience: int) -> int | None:
    """The epoch whose weights the trained model holds (1-based), or None without a history."""
    if not history or not history.get("loss"):
        return None
    if patience and history.get("val_loss"):
        return int(np.argmin(history["val_loss"])) + 1
    return len(history["loss"])


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    # A plain call, not model.predict: predict traces a tf.function per loaded model.
    probabilities = np.asarray(model(x, training=False))
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def _model_name(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower())


class _Progress(keras.callbacks.Callback):
    """One line every few epochs (about six per run) and at the last."""

    def __init__(self, epochs: int, log: Log):
        super().__init__()
        self.epochs, self.log = epochs, log
        self.every = max(1, epochs // 6)
        self.start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        if done % self.every and done != self.epochs:
            return
        logs = logs or {}
        self.log(f"epoch {done:3d}/{self.epochs}  loss {logs.get('loss', float('nan')):.3f}  "
                 f"acc {logs.get('accuracy', float('nan')):.3f}  "
                 f"val_acc {logs.get('val_accuracy', float('nan')):.3f}  "
                 f"({time.monotonic() - self.start:.0f} s)")
