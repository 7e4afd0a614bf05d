"""End to end: the firmware with the echo test model, booted in QEMU mps2-an386 and driven over
its emulated UART by SerialLink."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fusegen.bench.cli import run as bench_cli
from fusegen.bench.firmware.build import FIRMWARE_DIR, FirmwareConfig, build_firmware, missing_tools
from fusegen.bench.link import protocol as P
from fusegen.bench.link.faults import FaultyPort
from fusegen.bench.link.qemu import QemuError, QemuMachine
from fusegen.bench.link.serial_link import SerialLink

pytestmark = [
    pytest.mark.skipif(
        bool(missing_tools()), reason=f"firmware toolchain missing: {', '.join(missing_tools())}"
    ),
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed"
    ),
]

ECHO_ELEMS = 64
EXAMPLE_BOARD = FIRMWARE_DIR / "bsp/qemu/board_cmsdk_uart.c"
MPS2_LINKER_SCRIPT = FIRMWARE_DIR / "bsp/mps2_an386/mps2_an386.ld"
# Bounds every QEMU in this file, whatever goes wrong.
MAX_RUNTIME_S = 120


@pytest.fixture(scope="module")
def elf() -> Path:
    return build_firmware(FirmwareConfig(opt="O2"))


@pytest.fixture(scope="module")
def qemu(elf: Path) -> Iterator[QemuMachine]:
    with QemuMachine(elf, max_runtime=MAX_RUNTIME_S) as machine:
        yield machine
    assert not machine.running


@pytest.fixture
def link(qemu: QemuMachine) -> SerialLink:
    assert qemu.link is not None and qemu.running
    return qemu.link


def echo_input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(ECHO_ELEMS).astype(np.float32)


def infer(link: SerialLink, x: np.ndarray) -> tuple[np.ndarray, P.RunResult]:
    link.load_input(x.tobytes())
    result = link.run()
    y = np.frombuffer(link.read_output(4 * (ECHO_ELEMS + 1)), np.float32)
    return y, result


def read_frame(link: SerialLink, timeout: float) -> P.Frame | P.FrameError:
    decoder = P.FrameDecoder()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link.port.timeout = max(0.01, deadline - time.monotonic())
        for event in decoder.feed(link.port.read(decoder.bytes_wanted())):
            return event
    raise AssertionError(f"no frame from the device within {timeout} s")


def test_ping(link: SerialLink) -> None:
    assert link.ping() == b""
    payload = bytes(range(256)) * 4
    assert link.ping(payload) == payload


def test_describe(link: SerialLink) -> None:
    info = link.describe()
    assert info.model_name == "test_echo" and info.board_name == "mps2-an386"
    assert (info.input_elems, info.output_elems, info.dtype) == (64, 65, P.Dtype.FLOAT32)
    assert info.counter_unit == P.CounterUnit.INSTRUCTIONS and info.counter_resolution == 40
    assert info.cpu_hz == 25_000_000
    assert 0 < info.flash_used < info.flash_size == 4 << 20
    assert 0 < info.ram_used < info.ram_size == 4 << 20
    assert info.stack_size == 64 << 10 and info.firmware_version == "0.1.0"


def test_inference_output_and_deterministic_count(link: SerialLink) -> None:
    x = echo_input(0)
    link.reset_state()
    y1, first = infer(link, x)
    link.ping(b"something in between, so the wait before the next RUN differs")
    link.reset_state()
    y2, second = infer(link, x)
    np.testing.assert_array_equal(y1[:ECHO_ELEMS], 2 * x)
    np.testing.assert_array_equal(y1, y2)
    assert first.status == second.status == 0
    assert first.count == second.count
    # 64 elements x 16 taps: about 86 instructions per element, counted in steps of 40.
    assert 64 * 80 <= first.count <= 64 * 100 and first.count % 40 == 0
    assert 0 < first.stack_used < 64 << 10


def test_reset_state(link: SerialLink) -> None:
    link.reset_state()
    for step in (1.0, 2.0, 3.0):
        y, _ = infer(link, echo_input(1))
        assert y[-1] == step
    link.reset_state()
    y, _ = infer(link, echo_input(1))
    assert y[-1] == 1.0


def test_corrupted_frame_gets_error_response(link: SerialLink) -> None:
    bad = bytearray(P.Frame(P.Command.PING, 200, b"payload").encode())
    bad[8] ^= 0x10
    link.port.write(bytes(bad))
    event = read_frame(link, timeout=5)
    assert isinstance(event, P.Frame) and event.type == P.TYPE_ERROR
    assert P.ErrorReply.decode(event.payload).code == P.ErrorCode.BAD_CRC
    assert link.ping(b"after") == b"after"


def test_corrupted_request_is_retried(link: SerialLink) -> None:
    faulty = SerialLink(FaultyPort(link.port, corrupt_writes={0}), timeout=5, retries=2)
    x = echo_input(2)
    faulty.reset_state()
    y, result = infer(faulty, x)
    np.testing.assert_array_equal(y[:ECHO_ELEMS], 2 * x)
    assert result.status == 0
    assert faulty.stats.retries == 1 and faulty.stats.transport_errors == 1


def test_truncated_frame_times_out_on_device(link: SerialLink) -> None:
    frame = P.Frame(P.Command.PING, 201, b"0123456789").encode()
    link.port.write(frame[:8])
    event = read_frame(link, timeout=10)
    assert isinstance(event, P.Frame)
    assert P.ErrorReply.decode(event.payload).code == P.ErrorCode.TIMEOUT
    assert link.ping(b"after") == b"after"


def test_garbage_and_unknown_command(link: SerialLink) -> None:
    link.port.write(b"\x00\xff\xa5 line noise \x5a")
    assert link.ping(b"x") == b"x"
    link.port.write(P.Frame(0x42, 202).encode())
    event = read_frame(link, timeout=5)
    assert P.ErrorReply.decode(event.payload).code == P.ErrorCode.UNKNOWN_COMMAND


def test_run_executes_once_when_response_and_resend_are_damaged(link: SerialLink) -> None:
    """The reported defect, on QEMU: the RUN response and its resend both damaged."""
    faulty = SerialLink(FaultyPort(link.port), timeout=5, retries=3)
    faulty.open_session()
    faulty.reset_state()
    x = echo_input(9)
    faulty.load_input(x.tobytes())
    # Reads of a response: A5, 5A, header, payload+CRC. Damage the first RUN response's payload
    # and the resent RUN request.
    faulty.port.corrupt_reads = {faulty.port.reads + 3}
    faulty.port.corrupt_writes = {faulty.port.writes + 1}
    faulty.run()
    assert faulty.stats.retries >= 2
    y = np.frombuffer(faulty.read_output(4 * (ECHO_ELEMS + 1)), np.float32)
    np.testing.assert_array_equal(y, np.append(2 * x, 1.0))  # one step, not two or three
    assert faulty.status().run_count == faulty.last_run
    link.open_session()  # the module's link goes on in a session of its own


def test_new_connection_runs_its_first_run(link: SerialLink) -> None:
    """A new link whose first state-changing request is RUN is never answered from the previous
    connection's stored response: it runs."""
    before = link.status().run_count
    link.run()
    fresh = SerialLink(link.port, timeout=5)
    result = fresh.run()
    assert result.run == before + 2 and fresh.status().run_count == before + 2
    link.open_session()


def test_hung_model_is_reported_within_the_timeout(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "hang.c"
    source.write_text(
        '#include "fw_model.h"\n'
        'static const FwModelInfo kInfo = {4, 4, 1, 1, kFwDtypeFloat32, 0, 0, "hang"};\n'
        "const FwModelInfo* fw_model_info(void) { return &kInfo; }\n"
        "int fw_model_run(const void* in, void* out) {\n"
        "  (void)in; (void)out;\n"
        "  for (volatile int spin = 1; spin;) {}\n"
        "  return 0;\n"
        "}\n"
        "void fw_model_reset(void) {}\n"
    )
    np.save(tmp_path / "x.npy", np.zeros((2, 1), np.float32))
    argv = ["--inputs", str(tmp_path / "x.npy"), "--model-sources", str(source), "--timeout", "2",
            "--build-root", str(tmp_path / "build"), "--output", str(tmp_path / "y.npy")]
    started = time.monotonic()
    assert bench_cli(argv) == 1
    # Bounded, not a performance measure: 2 s of RUN, QEMU's stop, and the firmware build.
    assert time.monotonic() - started < 120
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RUN: no response within 2.0 s" in err[0], err
    assert not (tmp_path / "y.npy").exists()


def test_exit_stops_qemu(elf: Path) -> None:
    with QemuMachine(elf, max_runtime=MAX_RUNTIME_S) as machine:
        machine.link.exit()
        assert machine.wait(timeout=10) == 0
        assert "fusegen firmware 0.1.0 ready" in machine.log_tail()
    assert not machine.running


def test_os_build_runs_and_is_smaller(elf: Path) -> None:
    small = build_firmware(FirmwareConfig(opt="Os"))
    assert small.stat().st_size > 0
    with QemuMachine(small, max_runtime=MAX_RUNTIME_S) as machine:
        x = echo_input(3)
        y, _ = infer(machine.link, x)
        np.testing.assert_array_equal(y[:ECHO_ELEMS], 2 * x)
        assert machine.link.describe().flash_used <= _flash_used(elf)


def _flash_used(elf: Path) -> int:
    with QemuMachine(elf, max_runtime=MAX_RUNTIME_S) as machine:
        return machine.link.describe().flash_used


def test_bench_cli(tmp_path: Path) -> None:
    x = np.stack([echo_input(i) for i in range(3)])
    np.save(tmp_path / "x.npy", x)
    argv = [
        "--inputs",
        str(tmp_path / "x.npy"),
        "--target",
        "qemu-m4",
        "--output",
        str(tmp_path / "y.npy"),
        "--report",
        str(tmp_path / "r.json"),
    ]
    assert bench_cli(argv) == 0
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y[:, :ECHO_ELEMS], 2 * x)
    np.testing.assert_array_equal(y[:, ECHO_ELEMS], [1, 2, 3])
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["unit"] == "instructions" and report["inferences"] == 3
    assert report["count_min"] == report["count_max"] > 0


def test_counter_extends_past_systick_wraps(tmp_path: Path) -> None:
    """With a 1024-tick SysTick period a 2048-element echo (about 176,000 instructions) wraps
    the 24-bit counter several times; the wrap interrupt must extend it so the count agrees
    with the build that never wraps (up to the handler's few instructions per wrap)."""
    counts = {}
    for reload in ("0xFFFFFF", "0x3FF"):
        cache = {"FUSEGEN_ECHO_ELEMS": "2048", "FUSEGEN_SYSTICK_RELOAD": reload}
        elf = build_firmware(FirmwareConfig(cache=cache), tmp_path / "build")
        with QemuMachine(elf, max_runtime=MAX_RUNTIME_S) as machine:
            machine.link.load_input(np.ones(2048, np.float32).tobytes())
            counts[reload] = machine.link.run().count
    assert counts["0xFFFFFF"] > 4 * 1024 * 40
    assert 0 <= counts["0x3FF"] - counts["0xFFFFFF"] <= 3 * 40


def test_fault_in_model_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "trap.c"
    source.write_text(
        '#include "fw_model.h"\n'
        'static const FwModelInfo kInfo = {4, 4, 1, 1, kFwDtypeFloat32, 0, 0, "trap"};\n'
        "const FwModelInfo* fw_model_info(void) { return &kInfo; }\n"
        "int fw_model_run(const void* in, void* out) { (void)in; (void)out; __builtin_trap(); }\n"
        "void fw_model_reset(void) {}\n"
    )
    elf = build_firmware(FirmwareConfig(model_sources=(source,)), tmp_path / "build")
    with pytest.raises(QemuError, match="unhandled exception 003") as error:
        log = tmp_path / "qemu.log"
        with QemuMachine(elf, max_runtime=MAX_RUNTIME_S, log_path=log) as machine:
            machine.link.run()
    assert "status 131" in str(error.value)  # 128 + HardFault's exception number


def test_bench_cli_port_with_flash_command(elf: Path, tmp_path: Path) -> None:
    """The board flow: build the generic port, run the flash command, bench over --port. The
    "board" is QEMU's socket; the flash command only records the ELF it was given."""
    np.save(tmp_path / "x.npy", echo_input(4))
    flashed = tmp_path / "flashed.elf"
    with QemuMachine(elf, max_runtime=MAX_RUNTIME_S) as machine:
        machine.link.close()  # QEMU accepts the CLI's connection next
        argv = ["--inputs", str(tmp_path / "x.npy"), "--port", machine.url,
                "--board-sources", str(EXAMPLE_BOARD), "--linker-script", str(MPS2_LINKER_SCRIPT),
                "--flash-command", f"cp {{elf}} {flashed}",
                "--output", str(tmp_path / "y.npy")]  # fmt: skip
        assert bench_cli(argv) == 0
        machine.link = SerialLink.open(machine.url)
    assert flashed.read_bytes()[:4] == b"\x7fELF"
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy")[0, :ECHO_ELEMS], 2 * echo_input(4))


def test_bench_cli_reports_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    np.save(tmp_path / "x.npy", np.zeros(63, np.float32))  # not a multiple of 64 elements
    assert bench_cli(["--inputs", str(tmp_path / "x.npy")]) == 1
    assert capsys.readouterr().err.startswith("fusegen: error: inputs of shape (63,)")
