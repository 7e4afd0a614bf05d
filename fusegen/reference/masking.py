"""Keras' masked recurrence, shared by the float and integer twins.

A step of x (its row t, whatever the processing order) runs if `valid[t]`; a masked step keeps
the states and outputs zeros (`zero_output`, Keras' `zero_output_for_mask`) or the previous
step's output (zeros before the first valid step), as keras.src.backend.tensorflow.rnn does. The
generated core skips the masked steps before the first valid one and after the last without
running them; the result is the same (core.c.j2, fg_step_range).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Step = Callable[[int, list[Any]], tuple[Any, list[Any]]]  # (t, states) -> (y, new states)


def run_steps(timesteps: int, go_backwards: bool, step: Step, states: list[Any], zero_y: Any,
              valid: np.ndarray | None = None, zero_output: bool = False
              ) -> tuple[list[Any], list[Any]]:
    """The outputs of every step in processing order, and the final states."""
    order = range(timesteps - 1, -1, -1) if go_backwards else range(timesteps)
    outputs, previous = [], zero_y
    for t in order:
        if valid is None or valid[t]:
            previous, states = step(t, states)
            outputs.append(previous)
        else:
            outputs.append(zero_y if zero_output else previous)
    return outputs, states
