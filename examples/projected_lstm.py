"""An LSTM with a projection (LSTMP, as in speech models): the hidden state is projected to
`proj_units` before it is output and fed back, so the states have widths [proj, units] and the
output width does not grow with units. The op carries its units in its custom options."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class LSTMPCell(keras.layers.Layer):
    def __init__(self, units, proj_units=6, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.proj_units = proj_units
        self.state_size = [proj_units, units]
        self.output_size = proj_units

    def build(self, input_shape):
        u, p = self.units, self.proj_units
        self.kernel = self.add_weight(shape=(input_shape[-1], 4 * u), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(p, 4 * u), name="recurrent_kernel")
        self.bias = self.add_weight(shape=(4 * u,), initializer="zeros", name="bias")
        self.projection = self.add_weight(shape=(u, p), name="projection")

    def call(self, inputs, states):
        r, c = states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(r, self.recurrent_kernel) + self.bias
        zi, zf, zc, zo = ops.split(z, 4, axis=-1)
        new_c = ops.sigmoid(zf) * c + ops.sigmoid(zi) * ops.tanh(zc)
        h = ops.sigmoid(zo) * ops.tanh(new_c)
        new_r = ops.matmul(h, self.projection)
        return new_r, [new_r, new_c]

    def get_config(self):
        return {**super().get_config(), "units": self.units, "proj_units": self.proj_units}
