"""A cell that exists to exercise fusegen's op set: split, silu, softsign, exp, negation, relu6,
minimum/maximum, subtraction, division by a constant, and tf.* functions beside keras.ops."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class ExoticCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units]
        self.output_size = units

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 3 * u), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(u, 3 * u), name="recurrent_kernel")
        self.bias = self.add_weight(shape=(3 * u,), name="bias")

    def call(self, inputs, states):
        h = states[0]
        a, b, c = ops.split(ops.matmul(inputs, self.kernel) + self.bias, 3, axis=-1)
        ra, rb, rc = ops.split(ops.matmul(h, self.recurrent_kernel), 3, axis=-1)
        gate = ops.silu(a + ra) / 4.0
        damp = tf.exp(-ops.relu6(b + rb))
        cand = ops.softsign(c + rc) - ops.negative(gate)
        new_h = ops.maximum(ops.minimum(damp * h + cand, 1.5), -1.5)
        return new_h, [new_h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
