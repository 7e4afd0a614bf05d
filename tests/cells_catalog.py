"""The cells every parametrized test runs: Keras built-ins and the examples/ custom cells."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

from elementary import ElementaryCell  # noqa: E402
from exotic import ExoticCell  # noqa: E402
from where_cell import ThresholdCell  # noqa: E402
from indrnn import IndRNNCell  # noqa: E402
from minimal_gated import MinimalGatedCell  # noqa: E402
from peephole_lstm import PeepholeLSTMCell  # noqa: E402
from projected_lstm import LSTMPCell  # noqa: E402
from head_cell import HeadCell  # noqa: E402

CELLS = {
    "lstm": lambda u: keras.layers.LSTMCell(u),
    "gru": lambda u: keras.layers.GRUCell(u),
    "gru_reset_before": lambda u: keras.layers.GRUCell(u, reset_after=False),
    "simple_rnn": lambda u: keras.layers.SimpleRNNCell(u),
    "minimal_gated": lambda u: MinimalGatedCell(u),
    "peephole_lstm": lambda u: PeepholeLSTMCell(u),
    "indrnn": lambda u: IndRNNCell(u),
    "exotic": lambda u: ExoticCell(u),
    "elementary": lambda u: ElementaryCell(u),
    # Output widths that do not grow with units: the op carries its units (abi.carries_units).
    "lstmp": lambda u: LSTMPCell(u, proj_units=4),
    "head": lambda u: HeadCell(u, head=3),
}
# Cells with ops that have a float32 kernel but no int8 lowering yet (comparisons and where).
FLOAT_ONLY_CELLS = {
    "threshold": lambda u: ThresholdCell(u),
}
# (input_size, units, timesteps): units 5 and 33 are not multiples of 4.
SIZES = [(3, 5, 7), (8, 16, 12), (12, 33, 29)]


def randomize(layer: keras.layers.Layer, seed: int) -> None:
    """Non-zero uniform weights and biases (zero biases hide bugs, as hls4ml's GRU showed).

    Matrices are scaled by 1/sqrt(fan-in), as trained ones are: with unscaled weights a
    33-unit non-saturating cell is chaotic, and float32 rounding differences grow without bound.
    """
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        scale = 1.2 / np.sqrt(w.shape[0]) if len(w.shape) == 2 else 0.6
        w.assign(rng.uniform(-scale, scale, w.shape).astype(np.float32))


def random_layer(cell: str, input_size: int, units: int, timesteps: int,
                 return_sequences: bool = False, go_backwards: bool = False, seed: int = 0):
    """An RNN layer around a fresh cell, built, with random weights; and a random input batch."""
    layer = keras.layers.RNN({**CELLS, **FLOAT_ONLY_CELLS}[cell](units), return_sequences=return_sequences,
                             go_backwards=go_backwards)
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(-1.5, 1.5, (2, timesteps, input_size)).astype(np.float32)
    layer(x)
    randomize(layer, seed)
    return layer, x
