"""Minimal gated unit (Zhou et al., 2016): one gate computed from concat(input, state)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class MinimalGatedCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        features = input_shape[-1]
        self.gate_kernel = self.add_weight(shape=(features + self.units, self.units), name="gate_kernel")
        self.gate_bias = self.add_weight(shape=(self.units,), initializer="zeros", name="gate_bias")
        self.kernel = self.add_weight(shape=(features, self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, self.units), name="recurrent_kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs, states):
        h = states[0]
        both = ops.concatenate([inputs, h], axis=-1)
        f = ops.sigmoid(ops.matmul(both, self.gate_kernel) + self.gate_bias)
        candidate = ops.tanh(ops.matmul(inputs, self.kernel)
                             + ops.matmul(f * h, self.recurrent_kernel) + self.bias)
        new_h = (1.0 - f) * h + f * candidate
        return new_h, [new_h]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
