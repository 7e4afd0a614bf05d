"""The classifier compare trains for every cell: Input(T, F) -> RNN(cell) -> Dense(softmax),
with Masking(mask_value) after the input on variable-length data (Dataset.mask_value).

Training is seeded and deterministic (keras.utils.set_random_seed, TF op determinism), so the
same cell, data and options give the same weights, which is what makes the cache honest.
Adam (gradients clipped to norm 1: long series otherwise blow up the recurrent weights now and
then) with the learning rate halved after `patience // 2` epochs without a better validation
loss; early stopping after `patience` such epochs, and the weights of the epoch with the lowest
validation loss restored at the end (whether or not training stopped early). A validation set
of fewer than MIN_VALIDATION samples (GunPoint's is 10) is too small to choose an epoch by: its
loss jumps with one sample, so the training loss is watched instead. patience=0: a fixed
number of epochs, the last epoch's weights.
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
from tensorflow.python.framework import config as tf_config  # (dis)able_op_determinism

from fusegen.compare.datasets import Dataset

Log = Callable[[str], None]
MIN_VALIDATION = 30
CLIP_NORM = 1.0


@dataclass(frozen=True)
class TrainOptions:
    units: int = 32
    epochs: int = 100
    batch_size: int = 16
    learning_rate: float = 0.005
    seed: int = 0
    patience: int = 15  # epochs without a better validation loss before stopping; 0: never

    def describe(self, validation: int | None = None) -> str:
        """The settings as the report states them (validation: the validation set's size)."""
        text = (f"Adam (gradient norm clipped to {CLIP_NORM:g}), learning rate "
                f"{self.learning_rate}, batch {self.batch_size}, at most {self.epochs} epochs, "
                f"seed {self.seed}")
        watched = ("validation loss" if validation is None or validation >= MIN_VALIDATION
                   else f"training loss (the validation set, {validation} samples, is under "
                   f"{MIN_VALIDATION})")
        if self.patience:
            text += (f"; learning rate halved after {max(1, self.patience // 2)} epochs without a "
                     f"lower {watched}, early stopping after {self.patience}, the weights of the "
                     f"epoch with the lowest {watched.split(' (')[0]} restored")
        else:
            text += "; no early stopping (--patience 0): the last epoch's weights"
        return text


History = dict[str, list[float]]  # loss, accuracy, val_loss, val_accuracy per epoch


def classifier(cell: keras.layers.Layer, timesteps: int, features: int, classes: int,
               unroll: bool = False, name: str = "classifier",
               mask_value: float | None = None) -> keras.Model:
    masking = ([] if mask_value is None
               else [keras.layers.Masking(mask_value=mask_value, name="mask")])
    return keras.Sequential([keras.Input((timesteps, features)), *masking,
                             keras.layers.RNN(cell, unroll=unroll, name="rnn"),
                             keras.layers.Dense(classes, activation="softmax", name="head")],
                            name=name)


def train(make_cell: Callable[[int], keras.layers.Layer], data: Dataset, options: TrainOptions,
          log: Log, name: str = "classifier") -> tuple[keras.Model, History]:
    keras.utils.set_random_seed(options.seed)
    was_deterministic = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        return _fit(make_cell, data, options, log, name)
    finally:  # a notebook calling fusegen.compare keeps its own setting
        if not was_deterministic:
            tf_config.disable_op_determinism()


def _fit(make_cell: Callable[[int], keras.layers.Layer], data: Dataset, options: TrainOptions,
         log: Log, name: str) -> tuple[keras.Model, History]:
    model = classifier(make_cell(options.units), data.timesteps, data.features,
                       len(data.classes), name=_model_name(name), mask_value=data.mask_value)
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate, clipnorm=CLIP_NORM),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks: list[keras.callbacks.Callback] = [_Progress(options.epochs, log)]
    watch = monitor(len(data.x_val))
    if options.patience:
        callbacks += [keras.callbacks.ReduceLROnPlateau(watch, factor=0.5,
                                                        patience=max(1, options.patience // 2)),
                      keras.callbacks.EarlyStopping(watch, patience=options.patience,
                                                    restore_best_weights=True)]
    fit = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                    epochs=options.epochs, batch_size=options.batch_size, shuffle=True, verbose=0,
                    callbacks=callbacks)
    history = {k: [float(v) for v in vs] for k, vs in fit.history.items() if k != "learning_rate"}
    if options.patience and history.get(watch):
        best = int(np.argmin(history[watch])) + 1
        log(f"best epoch {best} of {len(history[watch])} (lowest "
            f"{'validation' if watch == 'val_loss' else 'training'} loss): its weights kept")
    return model, history


def monitor(validation_samples: int) -> str:
    """The loss that picks the epoch: the validation loss, or the training loss when the
    validation set is too small to rank epochs by."""
    return "val_loss" if validation_samples >= MIN_VALIDATION else "loss"


def best_epoch(history: History | None, patience: int,
               validation_samples: int | None = None) -> int | None:
    """The epoch whose weights the trained model holds (1-based), or None without a history."""
    if not history or not history.get("loss"):
        return None
    watch = "val_loss" if validation_samples is None else monitor(validation_samples)
    if patience and history.get(watch):
        return int(np.argmin(history[watch])) + 1
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
