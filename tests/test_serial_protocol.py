"""The serial protocol on the host: the Python codec against the firmware's C parser and command
server (compiled for the host, loaded with ctypes), and SerialLink's retries against it."""

from __future__ import annotations

import dataclasses
import re
import struct

import numpy as np
import pytest

from fusegen.bench.firmware.build import FIRMWARE_DIR
from fusegen.bench.link import protocol as P
from fusegen.bench.link.faults import FaultyPort
from fusegen.bench.link.host_device import (
    HostDevice,
    HostDevicePort,
    build_host_device,
    host_compiler,
)
from fusegen.bench.link.serial_link import DeviceError, LinkError, SerialLink
from fusegen.bench.runner import (
    EMULATOR_FLOOR_IPS,
    MIN_RUN_TIMEOUT_S,
    RUN_TIMEOUT_SAFETY,
    BenchError,
    run_steps,
    run_timeout_for,
)

ECHO_ELEMS = 64  # FW_ECHO_ELEMS default in fw_model_test_echo.c


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> HostDevice:
    if host_compiler() is None:
        pytest.skip("no host C compiler (cc, gcc or clang) to build the protocol library")
    return HostDevice(build_host_device(tmp_path_factory.mktemp("host_device")))


@pytest.fixture
def dev(device: HostDevice) -> HostDevice:
    device.reset()
    return device


def exchange(dev: HostDevice, data: bytes) -> list[P.Frame | P.FrameError]:
    dev.feed(data)
    return P.FrameDecoder().feed(dev.take_output())


def error_of(event: P.Frame | P.FrameError) -> P.ErrorCode:
    assert isinstance(event, P.Frame) and event.type == P.TYPE_ERROR, event
    return P.ErrorReply.decode(event.payload).code


# --- one source of truth for the constants --------------------------------------------------


def header_constants() -> dict[str, int]:
    text = (FIRMWARE_DIR / "protocol" / "fw_protocol.h").read_text()
    return {
        name: int(value, 0) for name, value in re.findall(r"(kFw\w+) = (0x[0-9A-F]+|\d+)", text)
    }


def test_constants_match_c_header() -> None:
    c = header_constants()
    assert c["kFwProtocolVersion"] == P.PROTOCOL_VERSION
    assert bytes([c["kFwSync0"], c["kFwSync1"]]) == P.SYNC
    assert c["kFwHeaderBytes"] == P.HEADER_BYTES and c["kFwCrcBytes"] == P.CRC_BYTES
    assert c["kFwMaxPayload"] == P.MAX_PAYLOAD
    assert c["kFwResponseFlag"] == P.RESPONSE_FLAG and c["kFwTypeError"] == P.TYPE_ERROR
    for command in P.Command:
        assert c["kFwCmd" + command.name.title().replace("_", "")] == command
    for code in P.ErrorCode:
        assert c["kFwErr" + code.name.title().replace("_", "")] == code


def test_crc16_check_value_both_sides(dev: HostDevice) -> None:
    # The catalogued check value of CRC-16/CCITT-FALSE.
    assert P.crc16(b"123456789") == dev.crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize("size", [0, 1, 255, P.MAX_PAYLOAD])
def test_c_and_python_encoders_agree(dev: HostDevice, size: int) -> None:
    payload = bytes((i * 7 + 3) & 0xFF for i in range(size))
    assert dev.encode(0x85, 0xC3, payload) == P.Frame(0x85, 0xC3, payload).encode()


def test_c_encoder_refuses_oversize(dev: HostDevice) -> None:
    assert dev.encode(1, 1, bytes(P.MAX_PAYLOAD + 1)) == b""


# --- Python decoder ---------------------------------------------------------------------------


def test_decoder_byte_by_byte_with_garbage() -> None:
    frames = [P.Frame(0x81, i, bytes([i]) * i) for i in range(5)]
    stream = b"\x00\xa5\x11" + b"garbage\xa5".join(f.encode() for f in frames) + b"\xa5"
    decoder = P.FrameDecoder()
    events = [e for b in stream for e in decoder.feed(bytes([b]))]
    assert events == frames
    assert decoder.discarded == 3 + 8 * 4


def test_decoder_rejects_bad_crc_and_resyncs() -> None:
    good = P.Frame(0x82, 7, b"abc").encode()
    bad = bytearray(good)
    bad[7] ^= 0x40
    events = P.FrameDecoder().feed(bytes(bad) + good)
    assert events == [P.FrameError(P.ErrorCode.BAD_CRC, 0x82, 7), P.Frame(0x82, 7, b"abc")]


def test_decoder_rejects_oversize_length_at_once() -> None:
    oversize = P.SYNC + struct.pack("<BBH", 1, 2, P.MAX_PAYLOAD + 1)
    good = P.Frame(0x81, 3).encode()
    events = P.FrameDecoder().feed(oversize + good)
    assert events == [P.FrameError(P.ErrorCode.OVERSIZE, 1, 2), P.Frame(0x81, 3)]


def test_decoder_bytes_wanted_reads_a_frame_exactly() -> None:
    frame = P.Frame(0x85, 1, bytes(100)).encode()
    decoder = P.FrameDecoder()
    reads: list[int] = []
    events: list[P.Frame | P.FrameError] = []
    while not events:
        start = sum(reads)
        reads.append(decoder.bytes_wanted())
        events = decoder.feed(frame[start : start + reads[-1]])
    assert events == [P.Frame(0x85, 1, bytes(100))]
    assert reads == [1, 1, 4, 102] and sum(reads) == len(frame)


# --- C parser and server, driven frame by frame ---------------------------------------------


def test_ping_echoes_payload(dev: HostDevice) -> None:
    events = exchange(dev, P.Frame(P.Command.PING, 9, b"hello").encode())
    assert events == [P.Frame(P.Command.PING | P.RESPONSE_FLAG, 9, b"hello")]


def test_describe_reports_echo_model(dev: HostDevice) -> None:
    [frame] = exchange(dev, P.Frame(P.Command.DESCRIBE, 1).encode())
    info = P.DeviceInfo.decode(frame.payload)
    assert (info.input_elems, info.output_elems) == (ECHO_ELEMS, ECHO_ELEMS + 1)
    assert (info.input_bytes, info.output_bytes) == (4 * ECHO_ELEMS, 4 * (ECHO_ELEMS + 1))
    assert info.dtype == P.Dtype.FLOAT32 and info.model_name == "test_echo"
    assert info.protocol_version == P.PROTOCOL_VERSION and info.max_payload == P.MAX_PAYLOAD


def test_corrupt_crc_gets_error_and_next_frame_works(dev: HostDevice) -> None:
    bad = bytearray(P.Frame(P.Command.PING, 4, b"xyz").encode())
    bad[-1] ^= 0xFF
    events = exchange(dev, bytes(bad) + P.Frame(P.Command.PING, 5, b"ok").encode())
    assert error_of(events[0]) == P.ErrorCode.BAD_CRC
    assert events[1] == P.Frame(P.Command.PING | P.RESPONSE_FLAG, 5, b"ok")


def test_truncated_frame_times_out_and_parser_recovers(dev: HostDevice) -> None:
    frame = P.Frame(P.Command.PING, 6, b"0123456789").encode()
    assert exchange(dev, frame[:9]) == []
    assert dev.in_frame()
    dev.timeout()
    [event] = P.FrameDecoder().feed(dev.take_output())
    assert error_of(event) == P.ErrorCode.TIMEOUT
    assert not dev.in_frame()
    assert exchange(dev, frame) == [P.Frame(P.Command.PING | P.RESPONSE_FLAG, 6, b"0123456789")]


def test_timeout_between_frames_is_silent(dev: HostDevice) -> None:
    dev.timeout()
    assert dev.take_output() == b""


def test_oversize_length_rejected_before_payload(dev: HostDevice) -> None:
    header = P.SYNC + struct.pack("<BBH", P.Command.PING, 8, P.MAX_PAYLOAD + 1)
    events = exchange(dev, header + P.Frame(P.Command.PING, 9).encode())
    assert error_of(events[0]) == P.ErrorCode.OVERSIZE
    assert P.ErrorReply.decode(events[0].payload).detail == P.MAX_PAYLOAD + 1
    assert events[1] == P.Frame(P.Command.PING | P.RESPONSE_FLAG, 9)


def test_garbage_between_frames_is_skipped(dev: HostDevice) -> None:
    a = P.Frame(P.Command.PING, 1, b"a").encode()
    b = P.Frame(P.Command.PING, 2, b"b").encode()
    events = exchange(dev, b"\x00\xff\xa5\xa5" + a + b"\x5a\xa5junk" + b)
    assert [e.seq for e in events] == [1, 2]


def test_unknown_command(dev: HostDevice) -> None:
    [event] = exchange(dev, P.Frame(0x42, 3).encode())
    assert error_of(event) == P.ErrorCode.UNKNOWN_COMMAND
    assert event.seq == 3 and P.ErrorReply.decode(event.payload).request_type == 0x42


@pytest.mark.parametrize(
    "command,payload",
    [
        (P.Command.DESCRIBE, b"x"),
        (P.Command.RUN, b"x"),
        (P.Command.RUN, b""),
        (P.Command.LOAD_INPUT, b"\x00" * 11),
        (P.Command.READ_OUTPUT, b"\x00" * 9),
        (P.Command.RESET_STATE, b""),
        (P.Command.HELLO, b"\x01\x00\x00\x00"),
        (P.Command.HELLO, P.hello_payload(0, 5)),  # nonce 0 names no session
        (P.Command.STATUS, b"x"),
    ],
    ids=lambda v: v.name if isinstance(v, P.Command) else repr(v),
)
def test_wrong_payload_length(dev: HostDevice, command: P.Command, payload: bytes) -> None:
    [event] = exchange(dev, P.Frame(command, 1, payload).encode())
    assert error_of(event) == P.ErrorCode.BAD_PAYLOAD


SESSION = 0x5E551011


def hello(dev: HostDevice, nonce: int = SESSION, owner: int = 0) -> P.Status:
    [event] = exchange(dev, P.Frame(P.Command.HELLO, 200, P.hello_payload(nonce, owner)).encode())
    assert isinstance(event, P.Frame) and event.type == P.Command.HELLO | P.RESPONSE_FLAG, event
    return P.Status.decode(event.payload)


@pytest.mark.parametrize(
    "command,payload",
    [
        (P.Command.LOAD_INPUT, P.load_input_payload(SESSION, 1, 4 * ECHO_ELEMS - 3, b"abcd")),
        (P.Command.LOAD_INPUT, P.load_input_payload(SESSION, 1, 0xFFFFFFFF, b"a")),
        (P.Command.READ_OUTPUT, P.read_output_payload(0, 4 * ECHO_ELEMS + 4, 1)),
        (P.Command.READ_OUTPUT, P.read_output_payload(0, 0, P.MAX_PAYLOAD - 7)),
    ],
    ids=["load-past-end", "load-offset-wraps", "read-past-end", "read-too-long"],
)
def test_out_of_range(dev: HostDevice, command: P.Command, payload: bytes) -> None:
    hello(dev)
    [event] = exchange(dev, P.Frame(command, 1, payload).encode())
    assert error_of(event) == P.ErrorCode.OUT_OF_RANGE


def test_model_larger_than_buffers(device: HostDevice) -> None:
    device.reset(input_capacity=16, output_capacity=16)
    [event] = exchange(device, P.Frame(P.Command.RUN, 1).encode())
    assert error_of(event) == P.ErrorCode.MODEL_TOO_LARGE


def run_frame(seq: int, run: int, session: int = SESSION) -> bytes:
    return P.Frame(P.Command.RUN, seq, P.run_payload(session, run)).encode()


def read_steps(dev: HostDevice, run: int) -> float:
    """The echo model's step counter (its last output) after inference run."""
    read = P.Frame(P.Command.READ_OUTPUT, 99, P.read_output_payload(run, 4 * ECHO_ELEMS, 4))
    [output] = exchange(dev, read.encode())
    chunk = P.OutputChunk.decode(output.payload)
    assert (chunk.run, chunk.offset) == (run, 4 * ECHO_ELEMS)
    return struct.unpack("<f", chunk.data)[0]


def test_resent_run_replays_result_whatever_came_between(dev: HostDevice) -> None:
    hello(dev)
    [first] = exchange(dev, run_frame(77, 1))
    assert P.RunResult.decode(first.payload).run == 1
    # Neither line noise, a rejected frame, nor other commands discard the stored response:
    # the defect was a damaged resend clearing it, so the third attempt ran the model again.
    bad = bytearray(run_frame(78, 1))
    bad[-1] ^= 0xFF
    assert error_of(exchange(dev, bytes(bad))[0]) == P.ErrorCode.BAD_CRC
    exchange(dev, P.SYNC + b"\x04\x4e")  # a bogus frame start
    dev.timeout()
    dev.take_output()
    assert exchange(dev, P.Frame(P.Command.PING, 5, b"p").encode())
    assert read_steps(dev, 1) == 1.0
    [again] = exchange(dev, run_frame(79, 1))
    assert P.RunResult.decode(again.payload) == P.RunResult.decode(first.payload)
    assert read_steps(dev, 1) == 1.0 and dev.run_count() == 1
    [second] = exchange(dev, run_frame(80, 2))
    assert P.RunResult.decode(second.payload).run == 2
    assert read_steps(dev, 2) == 2.0 and dev.run_count() == 2


def test_new_connection_is_never_answered_from_the_previous_one(dev: HostDevice) -> None:
    hello(dev, nonce=1, owner=11)
    exchange(dev, run_frame(1, 1, session=1))
    # A second host (its own owner) opens a session and sends RUN with the same seq: it runs.
    status = hello(dev, nonce=2, owner=22)
    assert (status.session, status.run_count, status.run_owner) == (2, 1, 11)
    assert error_of(exchange(dev, run_frame(1, 1, session=2))[0]) == P.ErrorCode.SEQUENCE
    [reply] = exchange(dev, run_frame(1, 2, session=2))
    assert P.RunResult.decode(reply.payload).run == 2 and dev.run_count() == 2
    # The first connection's frames are refused and change nothing.
    for stale in (
        run_frame(2, 3, session=1),
        P.Frame(P.Command.LOAD_INPUT, 3, P.load_input_payload(1, 3, 0, b"x")).encode(),
        P.Frame(P.Command.RESET_STATE, 4, P.reset_state_payload(1, 2)).encode(),
    ):
        assert error_of(exchange(dev, stale)[0]) == P.ErrorCode.SESSION
    assert read_steps(dev, 2) == 2.0 and dev.run_count() == 2


def test_reconnect_of_the_same_owner_collects_the_lost_response(dev: HostDevice) -> None:
    hello(dev, nonce=1, owner=11)
    [lost] = exchange(dev, run_frame(1, 1, session=1))
    assert hello(dev, nonce=3, owner=11).run_owner == 11
    [collected] = exchange(dev, run_frame(1, 1, session=3))
    assert collected.payload == lost.payload and dev.run_count() == 1


def test_delayed_writes_of_an_earlier_inference_are_refused(dev: HostDevice) -> None:
    hello(dev)
    load = P.Frame(P.Command.LOAD_INPUT, 1, P.load_input_payload(SESSION, 1, 0, b"abcd")).encode()
    reset = P.Frame(P.Command.RESET_STATE, 2, P.reset_state_payload(SESSION, 0)).encode()
    assert P.LoadAck.decode(exchange(dev, load)[0].payload) == P.LoadAck(1, 0, 4)
    assert exchange(dev, reset)[0].type == P.Command.RESET_STATE | P.RESPONSE_FLAG
    exchange(dev, run_frame(3, 1))
    assert error_of(exchange(dev, load)[0]) == P.ErrorCode.SEQUENCE
    assert error_of(exchange(dev, reset)[0]) == P.ErrorCode.SEQUENCE
    assert error_of(exchange(dev, run_frame(4, 3))[0]) == P.ErrorCode.SEQUENCE  # skips one
    assert read_steps(dev, 1) == 1.0


def test_stateful_commands_need_a_session(dev: HostDevice) -> None:
    assert error_of(exchange(dev, run_frame(1, 1, session=0))[0]) == P.ErrorCode.SESSION
    assert dev.run_count() == 0


def test_exit_command(dev: HostDevice) -> None:
    [event] = exchange(dev, P.Frame(P.Command.EXIT, 1).encode())
    assert event == P.Frame(P.Command.EXIT | P.RESPONSE_FLAG, 1)
    assert dev.exit_requested()


# --- SerialLink over the host device ------------------------------------------------------------


def link_to(dev: HostDevice, **faults: set[int]) -> SerialLink:
    port = FaultyPort(HostDevicePort(dev), **faults)
    return SerialLink(port, timeout=0.2, retries=2)


def test_link_full_inference(dev: HostDevice) -> None:
    link = link_to(dev)
    info = link.describe()
    x = np.linspace(-3, 3, info.input_elems, dtype=np.float32)
    link.load_input(x.tobytes())
    assert link.run().count == 1000
    y = np.frombuffer(link.read_output(info.output_bytes), np.float32)
    np.testing.assert_array_equal(y, np.append(2 * x, 1.0))
    link.reset_state()
    link.run()
    y = np.frombuffer(link.read_output(info.output_bytes), np.float32)
    assert y[-1] == 1.0


def test_link_chunks_large_transfers(device: HostDevice) -> None:
    device.reset()
    link = link_to(device)
    assert link.ping(bytes(range(256)) * 4) == bytes(range(256)) * 4
    with pytest.raises(DeviceError) as error:
        link.load_input(bytes(P.MAX_CHUNK + 10))  # second chunk runs past the 256-byte input
    assert error.value.reply.code == P.ErrorCode.OUT_OF_RANGE


def test_link_retries_corrupted_request(dev: HostDevice) -> None:
    link = link_to(dev, corrupt_writes={0})
    assert link.ping(b"abc") == b"abc"
    assert link.stats.retries == 1 and link.stats.transport_errors == 1


def test_link_retries_truncated_request(dev: HostDevice) -> None:
    link = link_to(dev, truncate_writes={0})
    assert link.ping(b"abcdef") == b"abcdef"
    assert link.stats.retries == 1


def test_link_retries_damaged_run_response_without_running_twice(dev: HostDevice) -> None:
    link = link_to(dev)
    info = link.describe()
    link.open_session()
    link.port.corrupt_reads = {link.port.reads + 3}  # the payload+CRC read of the RUN response
    assert link.run().count == 1000
    assert link.stats.damaged_responses == 1 and link.stats.retries == 1
    y = np.frombuffer(link.read_output(info.output_bytes), np.float32)
    assert y[-1] == 1.0  # one step, although RUN was sent twice


def test_link_run_response_and_resend_both_damaged_runs_once(dev: HostDevice) -> None:
    """The reported defect: the response and the resend both damaged, then a third attempt."""
    link = link_to(dev)
    info = link.describe()
    link.open_session()
    link.port.corrupt_reads = {link.port.reads + 3}
    link.port.corrupt_writes = {link.port.writes + 1}  # the resent RUN
    link.run()
    assert link.stats.retries == 2 and dev.run_count() == 1
    assert np.frombuffer(link.read_output(info.output_bytes), np.float32)[-1] == 1.0


class ScriptedPort:
    """A port whose device answers every request with the frame answer(request) returns."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.timeout: float | None = None
        self.pending = bytearray()
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        [request] = P.FrameDecoder().feed(data)
        self.pending += self.answer(request).encode()
        return len(data)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self.pending[:size])
        del self.pending[:size]
        return out

    def reset_input_buffer(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        pass


def reply_to(request: P.Frame, payload: bytes) -> P.Frame:
    return P.Frame(request.type | P.RESPONSE_FLAG, request.seq, payload)


def scripted_link(answer) -> SerialLink:
    return SerialLink(ScriptedPort(answer), timeout=0.01, retries=2)


def test_read_output_without_data_is_a_link_error_not_a_loop() -> None:
    link = scripted_link(lambda r: reply_to(r, r.payload[:8]))  # run, offset, no data
    link.last_run = 0
    with pytest.raises(LinkError, match="READ_OUTPUT.*3 attempts.*0 bytes"):
        link.read_output(100)
    assert link.port.writes == 3


def session_then(payload: bytes):
    """A scripted device that opens any session, then answers everything with payload."""

    def answer(request: P.Frame) -> P.Frame:
        if request.type == P.Command.HELLO:
            nonce = struct.unpack_from("<I", request.payload)[0]
            return reply_to(request, struct.pack("<III", nonce, 0, 0))
        return reply_to(request, payload)

    return answer


def test_load_input_ack_must_match_the_request() -> None:
    link = scripted_link(session_then(struct.pack("<III", 1, 8, 4)))  # another offset
    with pytest.raises(LinkError, match="LOAD_INPUT acknowledged"):
        link.load_input(b"abcd")


@pytest.mark.parametrize(
    "command,payload,match",
    [
        (P.Command.RUN, bytes(16), "RUN response of 16 bytes"),
        (P.Command.DESCRIBE, bytes(10), "cut short"),
        (P.Command.DESCRIBE, struct.pack("<HHBB", 2, 1024, 7, 1) + bytes(60) + b"\0\0\0",
         "unknown Dtype 7"),
        (P.Command.DESCRIBE, struct.pack("<HHBB", 2, 1024, 0, 1) + bytes(60) + b"\5ab",
         "inside its strings"),
        (P.Command.STATUS, bytes(11), "STATUS response of 11 bytes"),
    ],
    ids=["run-short", "describe-short", "describe-dtype", "describe-strings", "status-short"],
)
def test_malformed_responses_are_link_errors(
    command: P.Command, payload: bytes, match: str
) -> None:
    link = scripted_link(session_then(payload))
    call = {P.Command.RUN: link.run, P.Command.DESCRIBE: link.describe,
            P.Command.STATUS: link.status}[command]  # fmt: skip
    with pytest.raises(LinkError, match=match):
        call()


def test_malformed_error_report_is_retried_then_a_link_error() -> None:
    link = scripted_link(lambda r: P.Frame(P.TYPE_ERROR, r.seq, b"\x63\x01\x00\x00"))
    with pytest.raises(LinkError, match="unknown ErrorCode 99"):
        link.ping()


def test_link_gives_up_after_bounded_retries(dev: HostDevice) -> None:
    link = link_to(dev, corrupt_writes={0, 1, 2, 3})
    with pytest.raises(LinkError, match="3 attempts"):
        link.ping()


def test_link_raises_device_error_without_retry(dev: HostDevice) -> None:
    link = link_to(dev)
    with pytest.raises(DeviceError) as error:
        link.request(0x42)  # type: ignore[arg-type]
    assert error.value.reply.code == P.ErrorCode.UNKNOWN_COMMAND
    assert link.stats.retries == 0


def test_run_steps_bounds_each_inference(dev: HostDevice) -> None:
    """--timeout is kept; without it the first inference's count sets the bound (at least
    MIN_RUN_TIMEOUT_S), and an emulator's instruction count is allowed a slow floor rate."""
    x = np.ones((2, ECHO_ELEMS), np.float32)
    link = link_to(dev)
    run_steps(link, x, timeout=3.0)
    assert link.run_timeout == 3.0
    run_steps(link, x)
    assert link.run_timeout == MIN_RUN_TIMEOUT_S  # 1000 "cycles" of the host device
    info = link.describe()
    emulator = dataclasses.replace(info, counter_unit=P.CounterUnit.INSTRUCTIONS)
    assert run_timeout_for(emulator, 100_000_000) == pytest.approx(
        RUN_TIMEOUT_SAFETY * 100_000_000 / EMULATOR_FLOOR_IPS)
    board = dataclasses.replace(info, cpu_hz=100_000_000)
    assert run_timeout_for(board, 10**9) == pytest.approx(RUN_TIMEOUT_SAFETY * 10.0)


class SlowLinePort:
    """The host device behind a line on virtual time that delivers every answer delay seconds
    after the request was written, and nothing is lost: QEMU on a loaded machine, where moving
    a 1 KiB LOAD_INPUT chunk byte by byte through the emulated UART takes seconds. clock is
    the link's clock."""

    def __init__(self, device: HostDevice, delay: float) -> None:
        self.device, self.delay = device, delay
        self.now = 0.0
        self.timeout: float | None = None
        self.held: list[tuple[float, bytes]] = []  # (due, answer bytes), in order of writing
        self.ready = bytearray()

    def clock(self) -> float:
        return self.now

    def write(self, data: bytes) -> int:
        self.device.feed(data)
        self.held.append((self.now + self.delay, self.device.take_output()))
        return len(data)

    def _release(self) -> None:
        while self.held and self.held[0][0] <= self.now:
            self.ready += self.held.pop(0)[1]

    def read(self, size: int = 1) -> bytes:
        self._release()
        if not self.ready:  # wait for the next answer, at most the read's timeout
            wait = min([self.timeout or 0.0, *(due - self.now for due, _ in self.held[:1])])
            self.now += wait
            self._release()
        out = bytes(self.ready[:size])
        del self.ready[:size]
        return out

    def reset_input_buffer(self) -> None:
        self.ready.clear()

    def close(self) -> None:
        pass


def test_link_waits_out_a_slow_line_and_runs_once(dev: HostDevice) -> None:
    """Answers 6 timeouts late: attempt k waits timeout * 2**k, so the third attempt (1 + 2 + 4
    timeouts, plus the drains) collects the first attempt's answer; with a fixed timeout the
    fourth gave up after 4. The resent requests are harmless: one inference, on the input."""
    port = SlowLinePort(dev, delay=0.6)
    link = SerialLink(port, timeout=0.1, retries=3, clock=port.clock)
    info = link.describe()
    x = np.arange(info.input_elems, dtype=np.float32) - 7.5
    link.load_input(x.tobytes())
    assert link.run().count == 1000
    y = np.frombuffer(link.read_output(info.output_bytes), np.float32)
    np.testing.assert_array_equal(y, np.append(2 * x, 1.0))
    assert dev.run_count() == 1
    assert link.stats.retries >= 6  # two resends of each of DESCRIBE, LOAD_INPUT, READ_OUTPUT


def test_link_gives_up_on_a_dead_line_after_bounded_time(dev: HostDevice) -> None:
    port = SlowLinePort(dev, delay=float("inf"))
    link = SerialLink(port, timeout=0.1, retries=3, clock=port.clock)
    with pytest.raises(LinkError, match="PING: no valid response after 4 attempts"):
        link.ping(b"x")
    # 0.1 * (1 + 2 + 4 + 8) of waiting and three drains of at most 0.1 each
    assert 1.5 <= port.now <= 1.5 + 3 * 0.1 + 1e-9


def test_run_steps_bound_follows_a_slow_first_inference(dev: HostDevice) -> None:
    """A RUN answered 6 s late (QEMU starved by other processes): the later inferences may take
    RUN_TIMEOUT_SAFETY times that, not the count's 5 s floor (which reported the second one
    as hung)."""
    port = SlowLinePort(dev, delay=6.0)
    link = SerialLink(port, timeout=7.0, retries=3, clock=port.clock)  # every answer in time
    x = np.ones((2, ECHO_ELEMS), np.float32)
    result = run_steps(link, x)
    assert link.run_timeout == pytest.approx(RUN_TIMEOUT_SAFETY * 6.0)
    assert result.counts == [1000, 1000] and dev.run_count() == 2


def test_run_steps_refuses_another_protocol_version() -> None:
    describe = struct.pack("<HHBBHiiiiIIIIIIIIII", 1, 1024, 0, 1, 40, 4, 4, 1, 1,
                           *range(10)) + b"\0\0\0"  # fmt: skip
    link = scripted_link(lambda r: reply_to(r, describe))
    with pytest.raises(BenchError, match="protocol version 1, this fusegen version 2"):
        run_steps(link, np.ones((1, 1), np.float32))
