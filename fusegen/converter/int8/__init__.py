"""Full-int8 conversion: a chain of layers through chain.py (builtin runs converted together,
each fused op quantized by fusegen), any other model through graph.py (a piece per layer call).
"""

from __future__ import annotations

import keras
import numpy as np

from fusegen.converter.int8.chain import _chain, build_pipeline, join
from fusegen.converter.int8.graph import convert_graph
from fusegen.converter.lowering import StateIO
from fusegen.frontend.keras_model import ModelError


def convert_int8(model: keras.Model, calibration: np.ndarray, per_channel: bool = False):
    """The model as a full-int8 .tflite, and the pieces it was made of: a chain of layers with
    no states between them goes through `build_pipeline` (builtin runs converted together),
    anything else through graph.py (a piece per layer call). per_channel: one weight scale per
    output channel of each matrix in the fused ops."""
    if not _is_chain(model):
        return convert_graph(model, calibration, per_channel)
    pipeline = build_pipeline(model, calibration, per_channel)
    return join(pipeline, tuple(model.inputs[0].shape[1:])), pipeline


def _is_chain(model: keras.Model) -> bool:
    try:
        layers = _chain(model)
    except ModelError:
        return False
    return not any(isinstance(layer, keras.layers.RNN) and
                   (StateIO.of(layer).initial or StateIO.of(layer).returns) for layer in layers)
