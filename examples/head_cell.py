"""A GRU-like cell with a fixed-width read-out head: its state is [units] wide, its output
`output_size` wide (a tanh head on the state), whatever the units; output_size != state_size."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class HeadCell(keras.layers.Layer):
    def __init__(self, units, head=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.head = head
        self.state_size = units
        self.output_size = head

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 2 * u), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(u, 2 * u), name="recurrent_kernel")
        self.bias = self.add_weight(shape=(2 * u,), name="bias")
        self.head_kernel = self.add_weight(shape=(u, self.head), name="head_kernel")
        self.head_bias = self.add_weight(shape=(self.head,), name="head_bias")

    def call(self, inputs, states):
        h = states[0]
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
        zz, zc = ops.split(z, 2, axis=-1)
        gate = ops.sigmoid(zz)
        new_h = gate * h + (1.0 - gate) * ops.tanh(zc)
        y = ops.tanh(ops.matmul(new_h, self.head_kernel) + self.head_bias)
        return y, [new_h]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "head": self.head}
