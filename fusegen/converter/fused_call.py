"""The hand-over from lowering to conversion: one recurrent layer as one custom op.

`fusegen.lower.lower_layer` produces a `FusedCall`; `fusegen.converter` consumes it. The
converter needs nothing else from the layer: the op name and options become the TFLite custom
op, the params become its constant inputs, and the body only exists so that TensorFlow can trace
a function with the right output shape (the converter drops it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # reading a .tflite (fusegen bench) needs no TensorFlow
    import tensorflow as tf

OptionValue = bool | int | float

# The converter uses this attribute to mark a composite as a custom op; an option of the same
# name would be swallowed and never reach the kernel.
RESERVED_OPTION = "tfl_fusable_op"


@dataclass(frozen=True)
class FusedCall:
    op_name: str  # e.g. "FUSEGEN_GRU"; the custom code the kernel registers under
    options: dict[str, OptionValue]  # scalar custom options, e.g. {"return_sequences": False}
    params: tuple[np.ndarray, ...]  # float32 weights in op input order (after x); constants
    output_shape: tuple[int, ...]  # (1, T, W) if return_sequences else (1, W)
    body: Callable[..., tf.Tensor]  # TF reference: body(x, *params, *states) -> y [, *states]
    # Recurrent state at the op boundary (shapes [1, width] each): `initial_states` inputs follow
    # the params; with `return_state` the final states follow y as outputs.
    state_shapes: tuple[tuple[int, ...], ...] = ()
    initial_states: bool = False
    return_state: bool = False
    # abi.MASK_STEPS: a bool step mask [1, T] or [1, T, K] is the op's last input (abi.mask_input).
    mask: int = 0

    def __post_init__(self) -> None:
        if not self.op_name:
            raise ValueError("FusedCall.op_name is empty")
        for key, value in self.options.items():
            _check_option(self.op_name, key, value)
        for i, p in enumerate(self.params):
            if not isinstance(p, np.ndarray) or p.dtype != np.float32:
                raise ValueError(
                    f"{self.op_name}: param {i} must be a float32 numpy array, got "
                    f"{type(p).__name__} {getattr(p, 'dtype', '')}"
                )


# How the fused calls of one Keras layer combine: wire(x, run, xp) with run(k, x) the k-th call's
# output and xp an array namespace (numpy, or tf.experimental.numpy when converting), so the
# same wiring serves the converter and the host verification.
Wire = Callable[[Any, Callable[[int, Any], Any], Any], Any]


@dataclass(frozen=True)
class FusedLayer:
    """One Keras layer as one or more fused calls: a plain RNN is one; a Bidirectional layer
    is a forward and a backward call merged; an RNN of StackedRNNCells is a chain."""

    calls: tuple[FusedCall, ...]
    wire: Wire

    @staticmethod
    def single(call: FusedCall) -> FusedLayer:
        return FusedLayer((call,), lambda x, run, xp: run(0, x))


def _check_option(op_name: str, key: str, value: object) -> None:
    if key == RESERVED_OPTION:
        raise ValueError(f"{op_name}: option name {RESERVED_OPTION!r} is reserved")
    if not isinstance(value, (bool, int, float)):
        raise TypeError(
            f"{op_name}: option {key!r} must be bool, int or float, got {type(value).__name__}"
        )
    # The converter stores ints as int64 (MLIR IntegerAttr.getInt()).
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError(f"{op_name}: option {key!r}={value} does not fit in int64")
