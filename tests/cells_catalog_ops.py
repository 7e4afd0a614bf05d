"""Custom cells written the way users write them, with the ops of issue 14: layer normalisation
(a keras.layers.LayerNormalization sublayer, and by hand), RMS norm, Dense / Sequential /
Dropout sublayers, softmax over the units, reductions, where of a comparison, abs/square/log,
maximum/minimum of two tensors, elementwise ops with a learned vector and a constant vector.

Every cell here converts in float32 and int8; tests/test_cells_ops.py runs them, and other tests
may import OPS_CELLS and random_ops_layer.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


class LayerNormLSTMCell(keras.layers.Layer):
    """LSTM with layer normalisation of the gate pre-activations and of the cell state (Ba et
    al. 2016), with LayerNormalization sublayers (gamma and beta learned)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units
        self.ln_gates = keras.layers.LayerNormalization(epsilon=1e-3)
        self.ln_cell = keras.layers.LayerNormalization(epsilon=1e-3)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 4 * self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, 4 * self.units),
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * self.units,), name="bias", initializer="zeros")
        self.ln_gates.build((None, 4 * self.units))
        self.ln_cell.build((None, self.units))

    def call(self, inputs, states, training=None):
        h, c = states
        z = self.ln_gates(ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel))
        i, f, g, o = ops.split(z + self.bias, 4, axis=-1)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(self.ln_cell(c))
        return h, [h, c]


class LayerNormGRUCell(keras.layers.Layer):
    """GRU whose input and recurrent projections are each layer-normalised."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.ln_x = keras.layers.LayerNormalization()
        self.ln_h = keras.layers.LayerNormalization()

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3 * self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, 3 * self.units),
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=(3 * self.units,), name="bias", initializer="zeros")
        self.ln_x.build((None, 3 * self.units))
        self.ln_h.build((None, 3 * self.units))

    def call(self, inputs, states, training=None):
        h = states[0]
        xz, xr, xn = ops.split(self.ln_x(ops.matmul(inputs, self.kernel)) + self.bias, 3, axis=-1)
        hz, hr, hn = ops.split(self.ln_h(ops.matmul(h, self.recurrent_kernel)), 3, axis=-1)
        z = ops.sigmoid(xz + hz)
        r = ops.sigmoid(xr + hr)
        n = ops.tanh(xn + r * hn)
        h = z * h + (1.0 - z) * n
        return h, [h]


class RMSNormCell(keras.layers.Layer):
    """A simple RNN with RMS norm written by hand (mean of squares, rsqrt), a learned gain
    vector, and a constant per-unit decay vector made with ops.arange."""

    def __init__(self, units, eps=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.eps = eps
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                name="recurrent_kernel")
        self.gain = self.add_weight(shape=(self.units,), name="gain", initializer="ones")

    def call(self, inputs, states):
        h = states[0]
        pre = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel)
        rms = ops.rsqrt(ops.mean(ops.square(pre), axis=-1, keepdims=True) + self.eps)
        decay = 0.5 + 0.4 * ops.arange(self.units, dtype="float32") / self.units
        new = decay * h + (1.0 - decay) * ops.tanh(pre * rms * self.gain)
        return new, [new]


class DenseBackboneCell(keras.layers.Layer):
    """Dense sublayers with activations and a Sequential backbone (Dense, LayerNormalization,
    Dropout) inside a cell; dropout is the identity at inference."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.backbone = keras.Sequential([
            keras.layers.Dense(2 * units, activation="relu"),
            keras.layers.LayerNormalization(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(units, activation="tanh"),
        ])
        self.gate = keras.layers.Dense(units, activation="sigmoid")
        self.drop = keras.layers.Dropout(0.1)

    def build(self, input_shape):
        self.backbone.build((None, input_shape[-1] + self.units))
        self.gate.build((None, input_shape[-1] + self.units))

    def call(self, inputs, states, training=None):
        h = states[0]
        xh = ops.concatenate([inputs, h], axis=-1)
        candidate = self.drop(self.backbone(xh, training=training), training=training)
        g = self.gate(xh)
        new = g * h + (1.0 - g) * candidate
        return new, [new]


class SoftmaxAttentionCell(keras.layers.Layer):
    """Attention over the units: a softmax of the scores weights a value vector; the state is
    bounded by maximum/minimum of two tensors."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        d = input_shape[-1]
        self.w_score = self.add_weight(shape=(d, self.units), name="w_score")
        self.u_score = self.add_weight(shape=(self.units, self.units), name="u_score")
        self.w_value = self.add_weight(shape=(d, self.units), name="w_value")
        self.temperature = self.add_weight(shape=(self.units,), name="temperature",
                                           initializer="ones")

    def call(self, inputs, states):
        h = states[0]
        scores = (ops.matmul(inputs, self.w_score) + ops.matmul(h, self.u_score)) * self.temperature
        attn = ops.softmax(scores, axis=-1)
        value = ops.tanh(ops.matmul(inputs, self.w_value))
        context = attn * ops.sum(value, axis=-1, keepdims=True) + (1.0 - attn) * value
        peak = ops.max(scores, axis=-1, keepdims=True)
        new = ops.minimum(ops.maximum(0.5 * h + context, -peak), peak + 1.0)
        return new, [new]


class ElementaryOpsCell(keras.layers.Layer):
    """abs, square, log, where of a comparison and maximum in one cell."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units),
                                                name="recurrent_kernel")
        self.threshold = self.add_weight(shape=(self.units,), name="threshold",
                                         initializer="zeros")

    def call(self, inputs, states):
        h = states[0]
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel)
        mag = ops.log(1.0 + ops.square(z)) - 0.5 * ops.abs(h)
        gated = ops.where(ops.greater(z, self.threshold), ops.tanh(mag), -0.5 * ops.tanh(mag))
        new = 0.6 * h + 0.4 * ops.maximum(gated, ops.tanh(z))
        return new, [new]


OPS_CELLS = {
    "layernorm_lstm": LayerNormLSTMCell,
    "layernorm_gru": LayerNormGRUCell,
    "rms_norm": RMSNormCell,
    "dense_backbone": DenseBackboneCell,
    "softmax_attention": SoftmaxAttentionCell,
    "elementary_ops": ElementaryOpsCell,
}
# (input_size, units, timesteps): units not multiples of 4.
OPS_SIZES = [(3, 5, 7), (6, 13, 11)]


def randomize_ops(layer: keras.layers.Layer, seed: int) -> None:
    """Non-zero random weights: matrices scaled by 1/sqrt(fan-in) as trained ones are, vectors
    (biases, gamma, beta, gains) around their trained values (gains near 1, the rest near 0)."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if len(w.shape) == 2:
            scale = 1.2 / np.sqrt(w.shape[0])
            value = rng.uniform(-scale, scale, w.shape)
        elif any(k in w.path for k in ("gamma", "gain", "temperature")):
            value = rng.uniform(0.6, 1.4, w.shape)
        else:
            value = rng.uniform(-0.5, 0.5, w.shape)
        w.assign(value.astype(np.float32))


def random_ops_layer(cell: str, input_size: int, units: int, timesteps: int,
                     return_sequences: bool = True, seed: int = 0, batch: int = 2):
    """An RNN layer around a fresh catalog cell, built, with random weights; and an input."""
    layer = keras.layers.RNN(OPS_CELLS[cell](units), return_sequences=return_sequences)
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(-1.5, 1.5, (batch, timesteps, input_size)).astype(np.float32)
    layer(x)
    randomize_ops(layer, seed)
    return layer, x
