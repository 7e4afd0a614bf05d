"""An LSTM with peephole connections (two states; elementwise weights on the cell state) and a
hard-sigmoid recurrent activation, as on many microcontroller deployments."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class PeepholeLSTMCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 4 * u), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(u, 4 * u), name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * u,), initializer="zeros", name="bias")
        self.peephole_i = self.add_weight(shape=(u,), name="peephole_i")
        self.peephole_f = self.add_weight(shape=(u,), name="peephole_f")
        self.peephole_o = self.add_weight(shape=(u,), name="peephole_o")

    def call(self, inputs, states):
        h, c = states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        i = ops.hard_sigmoid(zi + self.peephole_i * c)
        f = ops.hard_sigmoid(zf + self.peephole_f * c)
        new_c = f * c + i * ops.tanh(zc)
        o = ops.hard_sigmoid(zo + self.peephole_o * new_c)
        new_h = o * ops.tanh(new_c)
        return new_h, [new_h, new_c]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
