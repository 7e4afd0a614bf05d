"""A cell with comparisons and selects, written as users write them: a thresholded (spiking-like)
update with ops.where, greater/less, maximum/minimum of two tensors and a 0/1 mask from a cast."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fusegen_examples")
class ThresholdCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        u = self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], 2 * u), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(u, 2 * u), name="recurrent_kernel")
        self.threshold = self.add_weight(shape=(u,), name="threshold")

    def call(self, inputs, states):
        h, v = states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel)
        a, b = ops.split(z, 2, axis=-1)
        v = 0.8 * v + ops.tanh(a)
        fired = ops.cast(ops.greater(v, self.threshold), "float32")  # a 0/1 mask
        v = ops.where(ops.greater(v, self.threshold), v - 1.0, v)  # reset by subtraction
        low = ops.where(ops.less(b, 0.0), 0.5 * b, b)  # a leaky branch
        new_h = ops.minimum(ops.maximum(low, h), ops.abs(v) + 0.5) + 0.1 * fired
        new_h = ops.where(ops.equal(new_h, 0.0), 1e-3, new_h)
        return new_h, [new_h, v]

    def get_config(self):
        return {**super().get_config(), "units": self.units}
