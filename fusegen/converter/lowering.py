"""A model's recurrent layers lowered to fused calls (the converter's input).

`ModelLowering.lower_layer` is what `fusegen convert` runs for every recurrent layer: each cell
goes through fusegen.lower.lower_cell, and the layer becomes one `FusedCall` (or a chain of them
for StackedRNNCells, two merged for Bidirectional) with its options, weights and a TF body.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import keras

from fusegen.abi import MASK_NONE, MASK_STEPS, carries_units, dtype_op_name, option_values
from fusegen.converter.fused_call import FusedCall, FusedLayer
from fusegen.frontend.keras_model import check_layer, layer_mask, sequence_input
from fusegen.ir import Graph
from fusegen.abi import fused_params
from fusegen.lower import LoweredCell, cell_factory, lower_cell
from fusegen.reference.float_interp import tf_sequence


@dataclass(frozen=True)
class StateIO:
    """How a layer's recurrent state crosses the op boundary."""

    initial: bool = False  # called with initial_state: the states are op inputs
    returns: bool = False  # return_state: the final states are op outputs
    stateful: bool = False  # kept between invocations in variable tensors

    @staticmethod
    def of(layer: keras.layers.RNN) -> StateIO:
        nodes = getattr(layer, "_inbound_nodes", [])
        initial = any(n.arguments.kwargs.get("initial_state") is not None
                      or len(n.arguments.args) > 1 for n in nodes)
        return StateIO(initial, bool(layer.return_state), bool(layer.stateful))


def receives_mask(layer: keras.layers.Layer) -> bool:
    """Whether Keras calls the layer with a mask (Masking, Embedding(mask_zero=True), a mask
    passed explicitly, or one carried through return_sequences and mask-preserving layers)."""
    return layer_mask(layer) is not None


class ModelLowering:
    """Lowers each recurrent layer of a model once and remembers the ops it made.

    A plain RNN layer is one fused call; an RNN of StackedRNNCells a chain of calls (the first
    reads the sequence, backwards if asked; the others read the previous call's outputs in
    processing order, as Keras steps the stack); a Bidirectional layer a forward and a backward
    lowering merged as Keras merges them.
    """

    def __init__(self, dtype: str = "f32") -> None:
        """`dtype`: the op names carry its suffix (abi.dtype_op_name), "s8" for int8 models."""
        self.dtype = dtype
        self.ops: dict[str, Graph] = {}
        self.layers: dict[str, list[LoweredCell]] = {}

    def lower_layer(self, layer: keras.layers.Layer) -> FusedLayer | None:
        if isinstance(layer, keras.layers.Bidirectional):
            check_layer(layer)
            _, timesteps, input_size = sequence_input(layer).shape
            return self._bidirectional(layer, timesteps, input_size)
        if isinstance(layer, keras.layers.RNN):
            check_layer(layer)
            _, timesteps, input_size = sequence_input(layer).shape
            return self._rnn(layer, layer.name, timesteps, input_size)
        return None

    def _rnn(self, layer, name: str, timesteps: int, input_size: int,
             masked: bool | None = None) -> FusedLayer:
        cell = layer.cell
        mask = _mask_mode(layer, receives_mask(layer) if masked is None else masked)
        if not isinstance(cell, keras.layers.StackedRNNCells):
            call = self._call(cell, name, timesteps, input_size, bool(layer.return_sequences),
                              bool(layer.go_backwards), StateIO.of(layer), mask)
            return FusedLayer.single(call)
        cells = cell.cells
        calls = []
        for k, cell in enumerate(cells):
            last = k == len(cells) - 1
            rs = bool(layer.return_sequences) or not last
            # Keras masks the stack's step as a whole: each cell's step runs where the mask says.
            call = self._call(cell, name, timesteps, input_size, rs, k == 0 and layer.go_backwards,
                              None, mask)
            calls.append(call)
            input_size = call.output_shape[-1]

        def chain(x, run, xp):
            for k in range(len(calls)):
                x = run(k, x)
            return x

        return FusedLayer(tuple(calls), chain)

    def _call(self, cell, name: str, timesteps: int, input_size: int, rs: bool, gb: bool,
              state: StateIO | None = None, mask: tuple[int, bool] = (MASK_NONE, False)
              ) -> FusedCall:
        lowered = lower_cell(cell_factory(cell), cell, input_size)
        lowered = replace(lowered, op_name=dtype_op_name(lowered.op_name, self.dtype))
        self.ops[lowered.op_name] = lowered.graph
        self.layers.setdefault(name, []).append(lowered)
        bound, width = lowered.bound, lowered.bound.width(lowered.graph.outputs[0])
        sizes = (bound.units, bound.input_size)
        state = state or StateIO()
        state_shapes = tuple((1, bound.width(j)) for j in lowered.graph.outputs[1:])
        n_params = len(lowered.graph.params)

        masked = mask[0] != MASK_NONE

        def body(x, *inputs):
            # The body only gives the op its output shapes (the converter drops it); the mask,
            # when there is one, is the last input and does not change them.
            inputs = inputs[:-1] if masked else inputs
            params, init = list(inputs[:n_params]), list(inputs[n_params:]) or None
            return tf_sequence(lowered.graph, sizes, x, params, rs, gb, init, state.returns)

        return FusedCall(
            op_name=lowered.op_name,
            options=option_values(rs, gb, state.returns, state.stateful, *mask,
                                  units=bound.units if carries_units(lowered.graph) else 0),
            mask=mask[0],
            params=fused_params(bound),
            output_shape=(1, timesteps, width) if rs else (1, width),
            body=body,
            state_shapes=state_shapes,
            initial_states=state.initial,
            return_state=state.returns,
        )

    def _bidirectional(self, layer, timesteps: int, input_size: int) -> FusedLayer:
        masked = receives_mask(layer)
        forward = self._rnn(layer.forward_layer, layer.name, timesteps, input_size, masked)
        backward = self._rnn(layer.backward_layer, layer.name, timesteps, input_size, masked)
        n = len(forward.calls)
        mode, rs = layer.merge_mode, bool(layer.return_sequences)

        def merged(x, run, xp):
            y = forward.wire(x, run, xp)
            y_rev = backward.wire(x, lambda k, v: run(n + k, v), xp)
            if rs:
                y_rev = xp.flip(y_rev, axis=1)
            return _MERGE[mode](xp, y, y_rev)

        return FusedLayer(forward.calls + backward.calls, merged)


def _mask_mode(layer: keras.layers.RNN, masked: bool) -> tuple[int, bool]:
    """The op's `mask` and `zero_output_for_mask` options for a layer (Bidirectional has set
    its inner layers' zero_output_for_mask to return_sequences, as Keras runs them)."""
    if not masked:
        return MASK_NONE, False
    return MASK_STEPS, bool(getattr(layer, "zero_output_for_mask", False))


_MERGE = {
    "concat": lambda xp, a, b: xp.concatenate([a, b], axis=-1),
    "sum": lambda xp, a, b: a + b,
    "ave": lambda xp, a, b: (a + b) / 2,
    "mul": lambda xp, a, b: a * b,
}
