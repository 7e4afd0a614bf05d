"""`fusegen bench` in core mode, end to end in QEMU, and its one-line errors.

One converted model chains LSTM -> GRU (go_backwards) -> SimpleRNN -> MinimalGated ->
PeepholeLSTM -> Dense, so one firmware runs the three built-in cells and two example cells;
every op is checked, through the chain's output, against the host-compiled cores; converted to
int8, the device must equal them exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from cells_catalog import EXAMPLES, randomize
from minimal_gated import MinimalGatedCell
from peephole_lstm import PeepholeLSTMCell

from fusegen import cli
from fusegen.bench.firmware.build import FirmwareConfig, build_firmware, missing_tools
from fusegen.bench.core_bench import core_firmware, load_inputs
from fusegen.bench.firmware.core_model import HostChain, read_chain
from fusegen.bench.link.qemu import QEMU_BINARY, QemuMachine
from fusegen.bench.link.serial_link import SerialLink
from fusegen.commands.build import convert_model

EXAMPLE_FILES = [str(EXAMPLES / "minimal_gated.py"), str(EXAMPLES / "peephole_lstm.py")]
T, FEATURES = 6, 4
CHAIN = ["FUSEGEN_LSTM", "FUSEGEN_GRU", "FUSEGEN_SIMPLE_RNN", "FUSEGEN_MINIMAL_GATED",
         "FUSEGEN_PEEPHOLE_LSTM"]
_MISSING = missing_tools() + ([] if shutil.which(QEMU_BINARY) else [QEMU_BINARY])
needs_device = pytest.mark.skipif(bool(_MISSING),
                                  reason=f"needs {', '.join(_MISSING)} (run scripts/setup.sh)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """m.keras, m.tflite, kernels/ and x.npy (3 samples) of the five-cell chain."""
    out = tmp_path_factory.mktemp("bench_core")
    layers = [keras.layers.LSTM(5, return_sequences=True),
              keras.layers.GRU(6, return_sequences=True, go_backwards=True),
              keras.layers.SimpleRNN(5, return_sequences=True),
              keras.layers.RNN(MinimalGatedCell(4), return_sequences=True),
              keras.layers.RNN(PeepholeLSTMCell(5)), keras.layers.Dense(3)]
    model = keras.Sequential([keras.Input((T, FEATURES)), *layers])
    randomize(model, seed=11)
    model.save(out / "m.keras")
    convert_model(out / "m.keras", EXAMPLE_FILES, out / "m.tflite", out / "kernels")
    x = np.random.default_rng(5).uniform(-1, 1, (3, T, FEATURES)).astype(np.float32)
    np.save(out / "x.npy", x)
    return out


def _bench(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["bench", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _qemu_children() -> list[int]:
    """Our child processes that are QEMU (a leftover would be one)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and name.startswith("qemu-system"):
            found.append(int(stat.parent.name))
    return found


def test_chain_reads_every_fused_op_and_skips_the_dense(converted):
    chain = read_chain((converted / "m.tflite").read_bytes(), converted / "kernels")
    assert [op.op_name for op in chain.ops] == CHAIN
    assert chain.skipped == ("FULLY_CONNECTED",)
    assert [op.go_backwards for op in chain.ops] == [False, True, False, False, False]
    # LSTM: 4 gates x units 5 x (input 4 + recurrent 5) per step, 6 steps.
    assert chain.ops[0].macs == 4 * 5 * (4 + 5) * T


def test_host_chain_matches_keras(converted):
    """The reference the device is checked against is the Keras model up to its last RNN."""
    model = keras.saving.load_model(converted / "m.keras")
    x = np.load(converted / "x.npy")
    recurrent = keras.Model(model.inputs, model.layers[-2].output)
    chain = read_chain((converted / "m.tflite").read_bytes(), converted / "kernels")
    np.testing.assert_allclose(HostChain(chain).run(x), np.asarray(recurrent([x])), atol=1e-5)


@needs_device
def test_bench_on_qemu_checks_outputs_and_repeats_counts(converted, tmp_path, capsys):
    reports = []
    for run in range(2):
        report = tmp_path / f"r{run}.json"
        code, out, err = _bench(capsys, converted / "m.tflite", "--kernels",
                                converted / "kernels", "--inputs", converted / "x.npy",
                                "--target", "qemu-m4", "--json", report,
                                "--build-root", converted / "build",
                                "--output", tmp_path / f"y{run}.npy")
        assert (code, err) == (0, ""), err
        assert not _qemu_children(), "QEMU still running after the bench"
        for row in ("flash bytes", "RAM bytes (static)", "stack bytes used",
                    "instructions / inference", "instructions / timestep", "MACs / inference",
                    "instructions / MAC", "outputs vs host core"):
            assert row in out, f"table row {row!r} missing:\n{out}"
        assert "not run: FULLY_CONNECTED" in out
        reports.append(json.loads(report.read_text()))
    first, second = reports
    assert first["check"]["passed"] and first["check"]["max_abs_diff"] <= 1e-5
    assert first["counts"] == second["counts"], "instruction counts differ between runs"
    assert all(c > 0 for c in first["counts"]) and first["inferences"] == 3
    assert [op["op"] for op in first["ops"]] == CHAIN
    assert first["macs"] == sum(op["macs"] for op in first["ops"])
    # Per op: the firmware's counter at each fw_op_mark; the ops' counts add up to the
    # inference's less the marks' own few instructions, and each op did work.
    layers = first["layers"]
    assert [layer["op"] for layer in layers] == CHAIN
    assert all(0 < layer["count_min"] <= layer["count_mean"] <= layer["count_max"]
               for layer in layers)
    for k, total in enumerate(first["counts"]):
        ops = [counts[k] for counts in zip(*first["op_counts"])]
        assert len(ops) == len(CHAIN) and 0 <= total - sum(ops) < 200, (total, ops)
    assert first["count_min"] <= first["count_mean"] <= first["count_max"]
    memory = first["memory"]
    assert memory["model_weight_bytes"] == _weight_bytes(converted)
    assert memory["flash_bytes"] == first["device"]["flash_used"]
    assert 0 < first["stack_used_bytes"] < memory["stack_bytes"]
    y = np.load(tmp_path / "y0.npy")
    chain = read_chain((converted / "m.tflite").read_bytes(), converted / "kernels")
    np.testing.assert_allclose(y, HostChain(chain).run(np.load(converted / "x.npy")), atol=1e-5)
    np.testing.assert_array_equal(y, np.load(tmp_path / "y1.npy"))


def _weight_bytes(converted: Path) -> int:
    chain = read_chain((converted / "m.tflite").read_bytes(), converted / "kernels")
    return chain.weight_bytes


def _assert_one_line_error(code: int, err: str, text: str) -> None:
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("fusegen: error: "), err
    assert text in err, err


def test_tflite_without_fused_ops_is_one_line_error(tmp_path, capsys):
    model = keras.Sequential([keras.Input((T, FEATURES)), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    (tmp_path / "plain.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(model).convert())
    np.save(tmp_path / "x.npy", np.zeros((T, FEATURES), np.float32))
    (tmp_path / "kernels").mkdir()
    code, _, err = _bench(capsys, tmp_path / "plain.tflite", "--kernels", tmp_path / "kernels",
                          "--inputs", tmp_path / "x.npy", "--port", "socket://127.0.0.1:1")
    _assert_one_line_error(code, err, "has no FUSEGEN_* ops")


def test_missing_kernels_dir_is_one_line_error(converted, tmp_path, capsys):
    args = (converted / "m.tflite", "--inputs", converted / "x.npy")
    code, _, err = _bench(capsys, *args, "--kernels", tmp_path / "nowhere")
    _assert_one_line_error(code, err, "not a directory")
    code, _, err = _bench(capsys, *args)
    _assert_one_line_error(code, err, "core mode needs --kernels")
    (tmp_path / "empty").mkdir()
    code, _, err = _bench(capsys, *args, "--kernels", tmp_path / "empty")
    _assert_one_line_error(code, err, "fusegen_lstm.ir.txt not found")


def test_kernels_of_another_fusegen_are_one_line_error(converted, tmp_path, capsys):
    shutil.copytree(converted / "kernels", tmp_path / "kernels")
    core = tmp_path / "kernels" / "fusegen_gru_core.c"
    core.write_text(core.read_text().replace("plan->chunk = ", "plan->chunk = 1 + 0 * "))
    code, _, err = _bench(capsys, converted / "m.tflite", "--kernels", tmp_path / "kernels",
                          "--inputs", converted / "x.npy", "--port", "socket://127.0.0.1:1")
    _assert_one_line_error(code, err, "fusegen_gru_core.c is not what this fusegen generates")


def test_no_qemu_is_one_line_error(converted, tmp_path, capsys, monkeypatch):
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    code, _, err = _bench(capsys, converted / "m.tflite", "--kernels", converted / "kernels",
                          "--inputs", converted / "x.npy", "--target", "qemu-m4")
    _assert_one_line_error(code, err, "qemu-system-arm not found")


def test_inputs_of_the_wrong_shape_are_one_line_error(converted, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, T + 1, FEATURES), np.float32))
    code, _, err = _bench(capsys, converted / "m.tflite", "--kernels", converted / "kernels",
                          "--inputs", tmp_path / "x.npy", "--port", "socket://127.0.0.1:1")
    _assert_one_line_error(code, err, f"not N samples of the chain's input ({T}, {FEATURES})")


@needs_device
def test_cycles_over_a_port_is_one_line_error(converted, tmp_path, capsys):
    code, _, err = _bench(capsys, converted / "m.tflite", "--kernels", converted / "kernels",
                          "--inputs", converted / "x.npy", "--port", "loop://", "--cycles")
    _assert_one_line_error(code, err, "--cycles traces QEMU")


def test_int8_tflite_on_qemu_equals_the_host_core(converted, tmp_path, capsys):
    """The same model converted to full int8: float --inputs are quantized with the first op's
    input qparams, and the device must equal the host cores exactly. Widths 4 to 6 leave a tail
    after every block of 4 in the int8 matmul."""
    calibration = np.random.default_rng(6).uniform(-1, 1, (8, T, FEATURES)).astype(np.float32)
    np.save(tmp_path / "calibration.npy", calibration)
    convert_model(converted / "m.keras", EXAMPLE_FILES, tmp_path / "m8.tflite",
                  tmp_path / "kernels8", tmp_path / "calibration.npy")
    code, out, err = _bench(capsys, tmp_path / "m8.tflite", "--kernels", tmp_path / "kernels8",
                            "--inputs", converted / "x.npy", "--json", tmp_path / "r.json",
                            "--output", tmp_path / "y.npy", "--build-root", tmp_path / "build",
                            "--cycles")
    assert (code, err) == (0, ""), err
    assert "must be equal" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["check"] == {"max_abs_diff": 0.0, "tolerance": 0.0, "passed": True}
    # The traced session's histogram covers the same inference as the first count (SysTick's
    # resolution is 40 instructions) plus the runner's own bookkeeping around it, which SysTick
    # does not see: fw_model_run, its counter reads, op marks and a 64-bit division (119
    # instructions for the one-op anchor firmwares of benchmarks/device_bench.py, more per op),
    # a fixed cost: a bound proportional to the count alone failed once this int8 model took
    # 66,400 (184 apart). Every instruction costs at least one cycle.
    first_count = report["counts"][0]
    assert abs(report["traced_instructions"] - first_count) <= 40 + 256 + first_count // 500
    assert report["estimated_m4_cycles"] > report["traced_instructions"]
    assert sum(report["instruction_classes"].values()) == report["traced_instructions"]
    assert report["instruction_classes"]["mul"] > 0  # SMLAD
    assert "estimated M4 cycles (first input)" in out
    assert [op["op"] for op in report["ops"]] == [f"{name}_S8" for name in CHAIN]  # int8 ops
    chain = read_chain((tmp_path / "m8.tflite").read_bytes(), tmp_path / "kernels8")
    assert chain.dtype == "s8"
    x = load_inputs(np.load(converted / "x.npy"), chain)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), HostChain(chain).run(x))


@needs_device
def test_bench_over_port_on_a_flashed_device(converted, tmp_path, capsys):
    """--port without --flash-command: the board already runs this model's firmware (here QEMU
    on a socket); memory comes from DESCRIBE. A device running another model is refused."""
    chain = read_chain((converted / "m.tflite").read_bytes(), converted / "kernels")
    config = core_firmware(chain, HostChain(chain).plans(), converted / "kernels", "m",
                           build_root=converted / "build")
    elf = build_firmware(config, converted / "build")
    args = (converted / "m.tflite", "--kernels", converted / "kernels", "--inputs",
            converted / "x.npy", "--json", tmp_path / "r.json")
    with QemuMachine(elf) as machine:
        machine.link.close()  # the command connects next
        code, out, err = _bench(capsys, *args, "--port", machine.url)
        machine.link = SerialLink.open(machine.url)
    assert (code, err) == (0, ""), err
    assert "from DESCRIBE" in out
    assert json.loads((tmp_path / "r.json").read_text())["check"]["passed"]
    with QemuMachine(build_firmware(FirmwareConfig(), tmp_path / "echo")) as machine:
        machine.link.close()
        code, _, err = _bench(capsys, *args, "--port", machine.url)
        machine.link = SerialLink.open(machine.url)
    _assert_one_line_error(code, err, "the device runs model 'test_echo'")
