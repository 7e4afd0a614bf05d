"""Finding recurrent layers in a Keras model, loading models and user cell files.

Layers are chosen by type (keras.layers.RNN and its subclasses LSTM, GRU, SimpleRNN), never by
name. Features fusegen does not fuse yet fail here with a message that says what to do.
"""

from __future__ import annotations

import importlib.util
import re
import inspect
import sys
from pathlib import Path
from types import ModuleType

import keras

from fusegen.frontend.errors import ModelError

__all__ = ["ModelError"]  # raised here, defined without Keras in frontend/errors.py

RECURRENT = (keras.layers.RNN, keras.layers.Bidirectional)


def recurrent_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = list(_walk(model))
    found = [layer for layer in layers if isinstance(layer, RECURRENT)]
    if not found:
        raise ModelError(f"model {model.name} has no recurrent layer (keras.layers.RNN, LSTM, "
                         "GRU, SimpleRNN); fusegen only converts recurrent models")
    for layer in found:
        check_layer(layer)
    return found


def check_io(model: keras.Model) -> None:
    """fusegen converts and runs models of one input and one output."""
    for what, tensors in (("inputs", model.inputs), ("outputs", model.outputs)):
        if len(tensors) != 1:
            raise ModelError(f"model {model.name} has {len(tensors)} {what}; fusegen converts "
                             f"models of one input and one output (split it, or convert each "
                             "path as its own model)")


def check_batch(model: keras.Model) -> None:
    """fusegen kernels run batch 1; a dynamic batch (None) is rebuilt at 1 with no user step."""
    for tensor in model.inputs:
        batch = tensor.shape[0]
        if batch not in (None, 1):
            raise ModelError(f"model {model.name} has a fixed batch of {batch}; rebuild it with "
                             "batch 1 or a dynamic batch (None) and copy the weights")


def check_layer(layer: keras.layers.Layer) -> None:
    name = f"layer {layer.name}"
    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode is None:
            raise ModelError(f"{name}: Bidirectional(merge_mode=None) has two outputs; use "
                             "'concat', 'sum', 'ave' or 'mul'")
        for inner in (layer.forward_layer, layer.backward_layer):
            _check_options(inner, name, composite=True)
    else:
        _check_options(layer, name, isinstance(layer.cell, keras.layers.StackedRNNCells))
    shape = sequence_input(layer).shape
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise ModelError(f"{name}: input shape {tuple(shape)} needs fixed timesteps and features; "
                         "give the model an Input(shape=(timesteps, features))")


def sequence_input(layer: keras.layers.Layer):
    """The layer's sequence input (a layer called with initial_state has a list of inputs)."""
    inputs = layer.input
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


def layer_mask(layer: keras.layers.Layer):
    """The Keras mask the layer is called with (a bool KerasTensor [N, T]: from Masking,
    Embedding(mask_zero=True), return_sequences, or passed explicitly), or None."""
    for node in getattr(layer, "_inbound_nodes", []):
        mask = node.arguments.kwargs.get("mask")
        if mask is not None:
            return mask
    return None


def sequence_output(layer: keras.layers.Layer):
    """The layer's sequence output (with return_state, the first of its outputs)."""
    outputs = layer.output
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _check_options(layer: keras.layers.Layer, name: str, composite: bool) -> None:
    if composite and (layer.stateful or layer.return_state):
        raise ModelError(f"{name}: stateful and return_state are fused for plain RNN layers, "
                         "not yet for Bidirectional or StackedRNNCells; use separate RNN layers")


def _walk(model: keras.layers.Layer):
    for layer in getattr(model, "layers", []):
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def import_file(path: str | Path) -> ModuleType:
    """Imports a user's Python file (cells, custom layers) by path."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"--import {path}: no such file")
    name = "fusegen_user_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(name, None)
        raise ModelError(f"{path}:{err.lineno}: syntax error: {err.msg}") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed at import
        sys.modules.pop(name, None)
        raise ModelError(f"{path}{_user_line(err, path)}: importing it raised "
                         f"{type(err).__name__}: {_first_line(err)}") from None
    return module


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"


def _user_line(err: BaseException, path: Path) -> str:
    """":LINE" of the innermost frame in the user's file, or ""."""
    import traceback

    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if Path(f.filename).resolve() == path.resolve()]
    return f":{frames[-1].lineno}" if frames else ""


def cell_classes(module: ModuleType) -> list[type]:
    """Keras cell classes defined in `module`: Layers whose call takes `states`. A file whose
    cells are tf_keras (Keras 2) layers is a one-line error saying what to change."""
    found, legacy = [], []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if obj.__module__ != module.__name__ or "states" not in _call_parameters(obj):
            continue
        if issubclass(obj, keras.layers.Layer):
            found.append(obj)
        elif _is_legacy_layer(obj):
            legacy.append(obj.__name__)
    if legacy:
        raise ModelError(f"{module.__file__ or module.__name__}: {', '.join(legacy)} "
                         f"{'is a' if len(legacy) == 1 else 'are'} tf_keras (Keras 2) layer"
                         f"{'' if len(legacy) == 1 else 's'}; fusegen traces Keras 3 cells: "
                         "subclass keras.layers.Layer with `import keras` (not tf_keras, nor "
                         "tf.keras under TF_USE_LEGACY_KERAS=1); the cell's code and saved "
                         "weights stay as they are")
    return found


def _call_parameters(cls: type) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(cls.call).parameters)
    except (AttributeError, TypeError, ValueError):
        return ()


def _is_legacy_layer(cls: type) -> bool:
    """A tf_keras (Keras 2) Layer subclass, found by its bases' modules (tf_keras may not be
    installed, and importing it would change what tf.keras is)."""
    return any(c.__name__ == "Layer" and c.__module__.split(".")[0] in ("tf_keras", "tensorflow")
               for c in inspect.getmro(cls))


# Layer arguments that tf_keras (Keras 2) writes and Keras 3 does not take; they are dropped when
# a Keras 2 file is loaded (time_major=True is refused: Keras 3 RNNs are batch-major).
_LEGACY_ONLY = ("time_major",)
_LEGACY_RNNS = ("LSTM", "GRU", "SimpleRNN", "RNN")


def _without_legacy(config):
    if isinstance(config, dict):
        if config.get("time_major"):
            raise ModelError("the model has an RNN layer with time_major=True (tf_keras); save "
                             "it with time_major=False (Keras 3 RNNs are batch-major)")
        return {k: _without_legacy(v) for k, v in config.items() if k not in _LEGACY_ONLY}
    if isinstance(config, list):
        return [_without_legacy(v) for v in config]
    return config


def _legacy_rnn(base: type) -> type:
    """`base` whose from_config drops tf_keras-only arguments (for .h5 files)."""

    class Legacy(base):
        @classmethod
        def from_config(cls, config):
            return base.from_config(_without_legacy(config))

    Legacy.__name__ = Legacy.__qualname__ = base.__name__
    return Legacy


def _legacy_keras_copy(path: Path, tmp_dir: str) -> Path | None:
    """A .keras archive written by tf_keras (metadata keras_version 2.x), copied with its
    config's tf_keras-only arguments dropped; None for a Keras 3 archive."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if "metadata.json" not in names or "config.json" not in names:
            return None
        version = str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
        if not version.startswith("2."):
            return None
        config = _without_legacy(json.loads(archive.read("config.json")))
        copy = Path(tmp_dir) / path.name
        with zipfile.ZipFile(copy, "w") as out:
            for name in names:
                out.writestr(name, json.dumps(config) if name == "config.json"
                             else archive.read(name))
    return copy


def load_model(path: str | Path, imports: list[ModuleType]) -> keras.Model:
    """A .keras or .h5 model, written by Keras 3 or by tf_keras (Keras 2: its RNN layers'
    tf_keras-only arguments are dropped)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fusegen_legacy_") as tmp:
        return _load_model(Path(path), imports, tmp)


def _load_model(path: Path, imports: list[ModuleType], tmp: str) -> keras.Model:
    custom = {name: _legacy_rnn(getattr(keras.layers, name)) for name in _LEGACY_RNNS}
    custom |= {cls.__name__: cls for m in imports
               for _, cls in inspect.getmembers(m, inspect.isclass)
               if issubclass(cls, keras.layers.Layer)}
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file" if not path.exists() else
                         f"{path}: not a file")
    if path.suffix in (".keras", ".zip"):
        import zipfile

        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path}: not a Keras model file (a .keras file is a zip archive; "
                             "this one is damaged or truncated): save the model again")
    try:
        if path.suffix in (".keras", ".zip"):
            path_to_load = _legacy_keras_copy(path, tmp) or path
        else:
            path_to_load = path
        return keras.saving.load_model(str(path_to_load), custom_objects=custom, compile=False)
    except ModelError:
        raise
    except (TypeError, ValueError) as err:
        missing = _custom_classes(str(err))
        if missing:
            raise ModelError(f"{path}: the model uses {', '.join(missing)}, which is not defined; "
                             "pass --import FILE.py with the file that defines it") from None
        raise ModelError(f"{path}: cannot load the model: {str(err).splitlines()[0]}") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model: {_first_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - a damaged archive fails deep inside Keras
        raise ModelError(f"{path}: cannot load the model ({type(err).__name__}: "
                         f"{_first_line(err)}); is it a complete .keras file?") from None


def _custom_classes(error_text: str) -> list[str]:
    """Non-Keras classes named in a deserialization error's config dump."""
    named = re.findall(r"'module': '([^']+)', 'class_name': '(\w+)'", error_text)
    found = [cls for module, cls in named if not module.startswith("keras")]
    found += [r.split(">")[-1] for r in re.findall(r"'registered_name': '([^']+)'", error_text)]
    found += re.findall(r"Could not locate class '(\w+)'", error_text)
    return sorted(set(found))
