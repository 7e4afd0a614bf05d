"""A cell written with the elementary math users reach for: abs, square, sqrt, rsqrt, log and a
power with a constant exponent (a magnitude-normalised, log-compressed update)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class ElementaryCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units]
        self.output_size = units

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 2 * u), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(u, 2 * u), name="recurrent_kernel")
        self.bias = self.add_weight(shape=(2 * u,), name="bias")

    def call(self, inputs, states):
        h = states[0]
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
        a, b = ops.split(z, 2, axis=-1)
        size = ops.log(1.0 + ops.square(a))  # log-compressed energy, >= 0
        norm = ops.rsqrt(1.0 + ops.abs(b))  # in (0, 1]
        gate = ops.power(ops.sigmoid(b), 1.5)
        cand = ops.tanh(a) * ops.sqrt(size + 0.25) * norm
        new_h = gate * h + (1.0 - gate) * cand
        return new_h, [new_h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
