"""Streaming with a per-frame mask (issue 15, item 3): a stateful layer fed one frame per invoke
behind Keras `Masking` keeps its states across masked frames, as Keras does.

A masked frame (every feature equal to the mask value) carries the states unchanged; the layer's
output for it is Keras' (no valid step in the call: zeros). So the outputs at the real frames of a
stream equal, exactly, the outputs of the same stream with its masked frames taken out; the
converted file is run frame by frame on the host (HostFile.invoke, its variable tensors kept
between invocations, as TFLM keeps them) and compared with Keras' stateful model called frame by
frame: float32 within the float tolerance, int8 within test_int8_cells' output-step bound and
equal to the int8 twin streaming the same frames.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, randomize

from fusegen.cli import FLOAT_TOLERANCE
from fusegen.converter.int8 import convert_int8
from fusegen.converter.lowering import ModelLowering
from fusegen.converter.model import convert
from fusegen.host.file import HostFile

FRAMES = 16
MASK = -2.0  # outside the data's range [-1, 1]: no real frame equals it
MASKED = (3, 4, 5, 9, 14)  # a run of masked frames, a single one, and one near the end
MAX_STEPS = 2.0  # mean |int8 - Keras| in output steps (test_int8_cells.py)


def _model(cell: str) -> keras.Model:
    model = keras.Sequential([keras.Input((1, 3), batch_size=1), keras.layers.Masking(MASK),
                              keras.layers.RNN(CELLS[cell](5), stateful=True),
                              keras.layers.Dense(2)])
    randomize(model, seed=61 + sorted(CELLS).index(cell))
    return model


def _frames(seed: int) -> np.ndarray:
    frames = np.random.default_rng(seed).uniform(-1, 1, (FRAMES, 1, 3)).astype(np.float32)
    frames[list(MASKED)] = MASK
    return frames


def _keras_stream(model: keras.Model, frames: np.ndarray) -> np.ndarray:
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_states()
    return np.stack([np.asarray(model(f[None]))[0] for f in frames])


def _stream(file: HostFile, frames: np.ndarray) -> np.ndarray:
    file.reset()
    return np.stack([file.invoke(f) for f in frames])


REAL = [k for k in range(FRAMES) if k not in MASKED]


@pytest.mark.parametrize("cell", ["lstm", "gru", "minimal_gated"])
def test_float32_stateful_stream_keeps_states_across_masked_frames(cell):
    model = _model(cell)
    lowering = ModelLowering()
    file = HostFile(convert(model, lowering.lower_layer), lowering.ops)
    frames = _frames(62)
    streamed = _stream(file, frames)
    expected = _keras_stream(model, frames)
    np.testing.assert_allclose(streamed, expected, rtol=0, atol=FLOAT_TOLERANCE)
    # The masked frames changed nothing: the real frames alone give the same outputs.
    np.testing.assert_allclose(streamed[REAL], _stream(file, frames[REAL]), rtol=0, atol=1e-6)
    # and a masked frame is not a zero frame (that would move the states)
    zeroed = frames.copy()
    zeroed[list(MASKED)] = 0.0
    assert np.abs(_stream(file, zeroed)[REAL] - streamed[REAL]).max() > 1e-3


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_int8_stateful_stream_keeps_states_across_masked_frames(cell):
    model = _model(cell)
    # One calibration stream holding masked frames too: the mask value is in the input's range.
    calibration = np.concatenate([_frames(seed) for seed in range(63, 67)])
    data, pipeline = convert_int8(model, calibration)
    file = HostFile(data, pipeline.ops)
    frames = pipeline.quantize_input(_frames(70))
    mask_q = pipeline.quantize_input(np.full((1, 1, 3), MASK, np.float32))
    assert np.all(frames[list(MASKED)] == mask_q)
    assert not np.any(np.all(frames[REAL] == mask_q, axis=-1))  # no real frame collides
    streamed = _stream(file, frames)
    # Bit for bit: the masked frames carried the int16 states unchanged.
    assert np.array_equal(streamed[REAL], _stream(file, frames[REAL]))
    assert np.array_equal(streamed, pipeline.run_int8(frames))  # the twin streams the same
    scale, zero_point = pipeline.output_qparams
    in_scale, in_zero = pipeline.input_qparams
    keras_frames = (frames.astype(np.float32) - in_zero) * in_scale
    keras_frames[list(MASKED)] = MASK  # what the int8 mask stands for: Keras' own padding
    expected = _keras_stream(model, keras_frames)
    got = (streamed.astype(np.float32) - zero_point) * scale
    assert np.mean(np.abs(got - expected)) / scale <= MAX_STEPS


def test_masked_frames_keep_the_states_on_the_device(tmp_path):
    """The same stream through core mode's firmware on QEMU (read_chain takes the Masking value
    from the file's NOT_EQUAL): a masked frame carries the states there too."""
    import shutil

    from fusegen.bench.core_bench import core_firmware
    from fusegen.bench.firmware.build import build_firmware, missing_tools
    from fusegen.bench.firmware.core_model import HostChain, read_chain
    from fusegen.bench.link.qemu import QEMU_BINARY, QemuMachine
    from fusegen.bench.runner import run_steps
    from fusegen.commands.build import convert_model

    if missing_tools() or not shutil.which(QEMU_BINARY):
        pytest.skip("needs the Arm toolchain and QEMU (scripts/setup.sh)")
    model = keras.Sequential([keras.Input((1, 3), batch_size=1), keras.layers.Masking(MASK),
                              keras.layers.GRU(5, stateful=True)])
    randomize(model, seed=65)
    model.save(tmp_path / "m.keras")
    convert_model(tmp_path / "m.keras", [], tmp_path / "m.tflite", tmp_path / "kernels")
    chain = read_chain((tmp_path / "m.tflite").read_bytes(), tmp_path / "kernels")
    assert chain.mask_value == MASK and chain.ops[0].stateful
    frames = _frames(66)
    config = core_firmware(chain, HostChain(chain).plans(), tmp_path / "kernels", "m",
                           build_root=tmp_path / "build")
    with QemuMachine(build_firmware(config, tmp_path / "build")) as machine:
        streamed = run_steps(machine.link, frames).outputs.reshape(FRAMES, -1)
        real_only = run_steps(machine.link, frames[REAL]).outputs.reshape(len(REAL), -1)
    np.testing.assert_allclose(streamed, _keras_stream(model, frames), rtol=0,
                               atol=FLOAT_TOLERANCE)
    np.testing.assert_allclose(streamed[REAL], real_only, rtol=0, atol=1e-6)
