"""Independently recurrent cell (Li et al., 2018): an elementwise recurrent weight per unit and a
clipped activation; its constructor takes a second argument, the clip bound, which changes the
math (so each bound gets its own kernel, named with an IR digest)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class IndRNNCell(keras.layers.Layer):
    def __init__(self, units, clip=2.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.clip = clip
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_weight = self.add_weight(shape=(self.units,), name="recurrent_weight")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs, states):
        h = states[0]
        pre = ops.matmul(inputs, self.kernel) + self.recurrent_weight * h + self.bias
        new_h = ops.clip(ops.relu(pre), 0.0, self.clip)
        return new_h, [new_h]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "clip": self.clip}
