"""Recurrent state in the firmware (core mode, QEMU): a stateful model streamed one frame per
inference gives what the host gives, and the protocol's RESET_STATE restores the zero state."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
from cells_catalog import CELLS, randomize

from fusegen.bench.firmware.build import build_firmware, missing_tools
from fusegen.bench.core_bench import core_firmware
from fusegen.bench.firmware.core_model import HostChain, read_chain
from fusegen.bench.link.qemu import QEMU_BINARY, QemuMachine
from fusegen.bench.runner import run_steps
from fusegen.commands.build import convert_model
from fusegen.cli import FLOAT_TOLERANCE
from fusegen.host.core import HostCore

FRAMES = 40
_MISSING = missing_tools() + ([] if shutil.which(QEMU_BINARY) else [QEMU_BINARY])


@pytest.mark.skipif(bool(_MISSING), reason=f"needs {', '.join(_MISSING)} (scripts/setup.sh)")
@pytest.mark.parametrize("cell", ["lstm", "minimal_gated"])
def test_streamed_frames_and_reset_on_the_device(tmp_path, cell):
    from cells_catalog import EXAMPLES

    model = keras.Sequential([keras.Input((1, 3), batch_size=1),
                              keras.layers.RNN(CELLS[cell](6), stateful=True)])
    randomize(model, seed=23)
    model.save(tmp_path / "m.keras")
    convert_model(tmp_path / "m.keras", [str(EXAMPLES / "minimal_gated.py")],
                  tmp_path / "m.tflite", tmp_path / "kernels")
    chain = read_chain((tmp_path / "m.tflite").read_bytes(), tmp_path / "kernels")
    assert chain.ops[0].stateful
    frames = np.random.default_rng(24).uniform(-1, 1, (FRAMES, 1, 3)).astype(np.float32)
    op = chain.ops[0]
    core, state, expected = HostCore(op.bound, op.op_name, params=op.params), None, []
    for frame in frames:  # the host: states carried from frame to frame
        y, state = core.run(frame, states=state)
        expected.append(y)
    config = core_firmware(chain, HostChain(chain).plans(), tmp_path / "kernels", "m",
                           build_root=tmp_path / "build")
    with QemuMachine(build_firmware(config, tmp_path / "build")) as machine:
        streamed = run_steps(machine.link, frames).outputs.reshape(FRAMES, -1)
        again = run_steps(machine.link, frames[:2]).outputs.reshape(2, -1)  # RESET_STATE first
    np.testing.assert_allclose(streamed, np.stack(expected), rtol=0, atol=FLOAT_TOLERANCE)
    np.testing.assert_array_equal(again, streamed[:2])  # the reset restored the zero state
    assert not np.allclose(streamed[2], streamed[0])  # and the state really was carried


@pytest.mark.skipif(bool(_MISSING), reason=f"needs {', '.join(_MISSING)} (scripts/setup.sh)")
@pytest.mark.parametrize("cell", ["gru", "peephole_lstm"])
def test_int8_streamed_frames_and_reset_on_the_device(tmp_path, cell):
    """The int8 model's int16 state variables on the device: streamed frames equal the host's
    int8 run of the same file bit for bit, and RESET_STATE restores the zero state."""
    from cells_catalog import EXAMPLES

    from fusegen.host.file import HostFile
    from fusegen.quantize.scales import quantize_int8

    model = keras.Sequential([keras.Input((1, 3), batch_size=1),
                              keras.layers.RNN(CELLS[cell](6), stateful=True)])
    randomize(model, seed=25)
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(26)
    np.save(tmp_path / "calib.npy", rng.uniform(-1, 1, (64, 1, 3)).astype(np.float32))
    converted = convert_model(tmp_path / "m.keras", [str(EXAMPLES / "peephole_lstm.py")],
                              tmp_path / "m.tflite", tmp_path / "kernels",
                              calibration=tmp_path / "calib.npy")
    data = (tmp_path / "m.tflite").read_bytes()
    chain = read_chain(data, tmp_path / "kernels")
    assert chain.dtype == "s8" and chain.ops[0].stateful
    frames = quantize_int8(rng.uniform(-1, 1, (FRAMES, 1, 3)), chain.input_qparams)
    host = HostFile(data, converted.ops)
    expected = np.stack([host.invoke(frame) for frame in frames])
    config = core_firmware(chain, HostChain(chain).plans(), tmp_path / "kernels", "m",
                           build_root=tmp_path / "build")
    with QemuMachine(build_firmware(config, tmp_path / "build")) as machine:
        streamed = run_steps(machine.link, frames).outputs.reshape(FRAMES, -1)
        again = run_steps(machine.link, frames[:2]).outputs.reshape(2, -1)  # RESET_STATE first
    np.testing.assert_array_equal(streamed, expected)
    np.testing.assert_array_equal(again, streamed[:2])
    assert not np.array_equal(streamed[2], streamed[0])
