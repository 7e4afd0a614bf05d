"""Talks to the benchmark firmware over a serial link: a board's /dev/tty* or QEMU's socket.

Every request carries a fresh sequence number and every response is checked against its
request (type, sequence number, and the run index, offset and length it echoes). A damaged
exchange (the device reports a bad CRC, an oversize length or a mid-frame timeout, the response
arrives damaged or malformed, or nothing arrives in time) is resent, at most ``retries`` times,
each attempt waiting twice as long as the one before: a line that is slow rather than broken
(QEMU on a loaded machine can take seconds to move a 1 KiB LOAD_INPUT chunk) gets its answer,
and a dead device is still reported after a bounded wait.

Exactly-once RUN: the first state-changing request opens a session (HELLO with a random
nonce). RUN, LOAD_INPUT and RESET_STATE name the session and the index of the inference they
belong to, so the device runs inference n once whatever is resent, duplicated or delayed, and
never answers this connection from another one's stored response. While a RUN is under way the
link polls the device with STATUS (which a busy device answers once it is done) instead of
resending RUN, for at most ``run_timeout`` seconds.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self

import serial

from fusegen.bench.link.protocol import (
    MAX_CHUNK,
    MAX_PAYLOAD,
    RESPONSE_FLAG,
    TYPE_ERROR,
    Command,
    DeviceInfo,
    ErrorCode,
    ErrorReply,
    Frame,
    FrameDecoder,
    FrameError,
    LoadAck,
    MalformedResponse,
    OpCounts,
    OutputChunk,
    RunResult,
    Status,
    hello_payload,
    load_input_payload,
    op_counts_payload,
    read_output_payload,
    reset_state_payload,
    run_payload,
)

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 115200
DEFAULT_TIMEOUT_S = 2.0
DEFAULT_RETRIES = 3
# Attempt k of a request waits timeout * BACKOFF**k: with the default 3 retries a request is
# given up after 1 + 2 + 4 + 8 = 15 timeouts (QEMU: 75 s), not 4. Resending is safe for every
# request but RUN (which has its own path, _run_request): the device acknowledges a repeated
# LOAD_INPUT, RESET_STATE or READ_OUTPUT of the same inference without doing anything twice,
# and a late answer to an earlier attempt is accepted (it carries the same sequence number).
BACKOFF = 2.0
# How long RUN may take before the device is reported hung, until the caller sets run_timeout
# from what it knows of the model (fusegen bench: --timeout, or derived from the first
# inference's count, see runner.run_timeout_for).
DEFAULT_RUN_TIMEOUT_S = 30.0
# After a damaged exchange the line must be quiet this long before the request is resent, so
# the tail of a damaged frame or a late error report is not taken for the new response.
_QUIET_S = 0.05


class LinkError(Exception):
    """No valid response after all retries, or the link itself failed."""


class DeviceError(Exception):
    """The device answered a well-formed request with an error; resending will not help."""

    def __init__(self, command: Command | int, reply: ErrorReply) -> None:
        why = {
            ErrorCode.SESSION: " (another connection opened a session on the device since)",
            ErrorCode.SEQUENCE: " (the device ran inferences this link did not ask for)",
        }.get(reply.code, "")
        super().__init__(f"{_name(command)} failed on the device: {reply.code.name}{why}")
        self.command = command
        self.reply = reply


class Port(Protocol):
    """The part of pyserial's Serial that SerialLink uses (tests wrap it to inject faults)."""

    timeout: float | None

    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...
    def reset_input_buffer(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    transport_errors: int = 0  # error reports from the device about a damaged request
    damaged_responses: int = 0  # bad CRC, oversize, or a valid frame with a malformed payload
    timeouts: int = 0
    stale_frames: int = 0  # responses to an earlier sequence number, ignored
    polls: int = 0  # STATUS requests sent while waiting for a RUN


def _name(command: Command | int) -> str:
    return command.name if isinstance(command, Command) else f"command 0x{command:02x}"


class _Retry(Exception):
    """Internal: this attempt failed in a way that resending may cure."""


class _Silence(_Retry):
    """Internal: nothing (valid or damaged) arrived in time."""


def _random_nonce() -> int:
    return random.SystemRandom().randrange(1, 1 << 32)


Parse = Callable[[bytes], Any]


class SerialLink:
    """One device on one serial port. Use ``SerialLink.open(url)`` or wrap an open port.

    clock and nonce are for tests (a simulated line runs on virtual time). Each link is its own
    owner on the device unless open_session(previous=...) continues an earlier link's work
    after a reconnect."""

    def __init__(
        self,
        port: Port,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        clock: Callable[[], float] = time.monotonic,
        nonce: Callable[[], int] = _random_nonce,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.run_timeout = DEFAULT_RUN_TIMEOUT_S
        self.stats = LinkStats()
        self.clock = clock  # the time the link's waits are measured in (run_steps times RUN)
        self._nonce = nonce
        self._decoder = FrameDecoder()
        self._seq = 0
        self.owner = nonce()  # names this host to the device across its connections
        self.session = 0  # nonce of the open session, 0 before open_session
        self.next_run = 0  # index the next RUN will carry
        self.last_run: int | None = None  # index of the last inference this link saw complete
        self.pending_run: int | None = None  # a RUN sent whose response has not arrived

    @classmethod
    def open(
        cls,
        url: str,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ) -> SerialLink:
        """Opens ``/dev/ttyACM0``, ``socket://127.0.0.1:PORT`` or any pyserial URL."""
        try:
            port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open {url}: {e}") from e
        return cls(port, timeout=timeout, retries=retries)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands --------------------------------------------------------------------------

    def open_session(self, previous: SerialLink | None = None) -> Status:
        """Opens a fresh session (HELLO with a new nonce). previous is an earlier link to the
        same device whose connection broke: this link takes over its owner, so if a RUN it sent
        ran but the response was lost, the device hands the stored response over and the next
        run() collects it instead of running again (``pending_run`` says which inference; its
        input and output stay on the device)."""
        nonce = self._nonce()
        if previous is not None:
            self.owner = previous.owner

        def parse(payload: bytes) -> Status:
            status = Status.decode(payload)
            if status.session != nonce:
                raise MalformedResponse(f"HELLO answered for session {status.session:#x}")
            return status

        status = self.request(Command.HELLO, hello_payload(nonce, self.owner), parse=parse)
        self.session = nonce
        self.next_run = status.run_count + 1
        self.last_run = status.run_count
        self.pending_run = None
        lost = previous.pending_run if previous is not None else None
        if lost is not None and lost == status.run_count and status.run_owner == self.owner:
            self.next_run = self.pending_run = lost  # it ran: run() collects the response
        return status

    def status(self) -> Status:
        return self.request(Command.STATUS, parse=Status.decode)

    def ping(self, payload: bytes = b"") -> bytes:
        """Round-trips payload (at most MAX_PAYLOAD bytes); returns what came back."""

        def parse(reply: bytes) -> bytes:
            if reply != payload:
                raise MalformedResponse(f"PING echoed {len(reply)} other bytes")
            return reply

        return self.request(Command.PING, payload, parse=parse)

    def describe(self) -> DeviceInfo:
        return self.request(Command.DESCRIBE, parse=DeviceInfo.decode)

    def load_input(self, data: bytes) -> None:
        """Writes the input of the next inference, in chunks of at most MAX_CHUNK bytes."""
        self._ensure_session()
        run = self.next_run
        for offset in range(0, max(len(data), 1), MAX_CHUNK):
            chunk = data[offset : offset + MAX_CHUNK]
            expected = LoadAck(run, offset, len(chunk))

            def parse(reply: bytes, expected: LoadAck = expected) -> LoadAck:
                ack = LoadAck.decode(reply)
                if ack != expected:
                    raise MalformedResponse(f"LOAD_INPUT acknowledged {ack}, sent {expected}")
                return ack

            self.request(
                Command.LOAD_INPUT,
                load_input_payload(self.session, run, offset, chunk),
                parse=parse,
            )

    def run(self) -> RunResult:
        """Runs one inference on the loaded input (exactly once, however the line behaves)."""
        self._ensure_session()
        run = self.next_run
        self.pending_run = run

        def parse(reply: bytes) -> RunResult:
            result = RunResult.decode(reply)
            if result.run != run:
                raise MalformedResponse(f"RUN answered for inference {result.run}, not {run}")
            return result

        result = self._run_request(run_payload(self.session, run), parse)
        self.pending_run = None
        self.last_run = run
        self.next_run = run + 1
        return result

    def read_output(self, size: int) -> bytes:
        """Reads the first size bytes of the last inference's output, in chunks."""
        if self.last_run is None:
            raise LinkError("READ_OUTPUT before any inference on this link")
        run = self.last_run
        out = bytearray()
        while len(out) < size:
            offset, n = len(out), min(MAX_CHUNK, size - len(out))

            def parse(reply: bytes, offset: int = offset, n: int = n) -> bytes:
                chunk = OutputChunk.decode(reply)
                if (chunk.run, chunk.offset, len(chunk.data)) != (run, offset, n):
                    raise MalformedResponse(
                        f"READ_OUTPUT answered inference {chunk.run} offset {chunk.offset} with "
                        f"{len(chunk.data)} bytes, asked for {run}, {offset}, {n}"
                    )
                return chunk.data

            out += self.request(Command.READ_OUTPUT, read_output_payload(run, offset, n),
                                parse=parse)
        return bytes(out)

    def op_counts(self) -> OpCounts | None:
        """The counter at each fw_op_mark of the last inference; None from a firmware that
        does not know OP_COUNTS (an older protocol)."""
        if self.last_run is None:
            raise LinkError("OP_COUNTS before any inference on this link")
        run = self.last_run

        def parse(reply: bytes) -> OpCounts:
            counts = OpCounts.decode(reply)
            if counts.run != run:
                raise MalformedResponse(f"OP_COUNTS answered inference {counts.run}, not {run}")
            return counts

        try:
            return self.request(Command.OP_COUNTS, op_counts_payload(run), parse=parse)
        except DeviceError as err:
            if err.reply.code == ErrorCode.UNKNOWN_COMMAND:
                return None
            raise

    def reset_state(self) -> None:
        """Clears the recurrent state before the next inference."""
        self._ensure_session()
        run = self.next_run - 1

        def parse(reply: bytes) -> None:
            if reply != struct.pack("<I", run):
                raise MalformedResponse(f"RESET_STATE answered {reply.hex()}")

        self.request(Command.RESET_STATE, reset_state_payload(self.session, run), parse=parse)

    def exit(self) -> None:
        """Asks the firmware to stop (QEMU then exits through semihosting)."""
        self.request(Command.EXIT, parse=_expect_empty)

    def _ensure_session(self) -> None:
        if not self.session:
            self.open_session()

    # --- transport -------------------------------------------------------------------------

    def request(
        self,
        command: Command | int,
        payload: bytes = b"",
        *,
        parse: Parse | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Sends one request and returns its response, parse(payload) if given (parse raises
        MalformedResponse for a response that does not answer the request: resent like a
        damaged one). Retries damaged exchanges; attempt k waits at most timeout (default
        self.timeout) * BACKOFF**k."""
        seq, frame = self._send_new(command, payload)
        last: _Retry | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                self._drain()
                self._write(frame)
            try:
                deadline = self.clock() + (timeout or self.timeout) * BACKOFF**attempt
                return self._await_response({seq: (command, parse)}, deadline)[1]
            except _Retry as e:
                log.warning("%s seq %d attempt %d: %s", _name(command), seq, attempt + 1, e)
                last = e
        raise LinkError(
            f"{_name(command)}: no valid response after {self.retries + 1} attempts (last: {last})"
        )

    def _send_new(self, command: Command | int, payload: bytes) -> tuple[int, bytes]:
        """Sends a request under a fresh sequence number; returns the number and the frame."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        self._seq = (self._seq + 1) & 0xFF
        frame = Frame(int(command), self._seq, payload).encode()
        self.stats.requests += 1
        self._write(frame)
        return self._seq, frame

    def _run_request(self, payload: bytes, parse: Parse) -> RunResult:
        """RUN with polling: silence may mean the device is still running, so the link asks
        STATUS (answered once the device is free) and resends RUN only after the device
        answered, which the device's run index makes harmless anyway. Damaged exchanges count
        against retries; the whole wait is bounded by run_timeout."""
        seq, frame = self._send_new(Command.RUN, payload)
        deadline = self.clock() + self.run_timeout
        failures = 0
        expect: dict[int, tuple[Command | int, Parse | None]] = {seq: (Command.RUN, parse)}
        while True:
            now = self.clock()
            if now >= deadline:
                self.stats.timeouts += 1
                raise LinkError(
                    f"RUN: no response within {self.run_timeout:.1f} s: the device hangs, or the "
                    "inference takes longer (fusegen bench --timeout SECONDS)"
                )
            try:
                got, result = self._await_response(expect, min(deadline, now + self.timeout))
            except _Silence:
                self.stats.polls += 1
                poll, _ = self._send_new(Command.STATUS, b"")
                expect = {seq: (Command.RUN, parse), poll: (Command.STATUS, Status.decode)}
                continue
            except _Retry as e:
                failures += 1
                log.warning("RUN seq %d failure %d: %s", seq, failures, e)
                if failures > self.retries:
                    raise LinkError(
                        f"RUN: no valid response after {failures} damaged exchanges (last: {e})"
                    ) from None
                self.stats.retries += 1
                self._drain()
                self._write(frame)
                continue
            if got == seq:
                return result
            # STATUS answered: the device is free, so the RUN or its response was lost.
            self.stats.retries += 1
            self._write(frame)
            expect = {seq: (Command.RUN, parse)}

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"write failed: {e}") from e

    def _read(self, size: int, timeout: float) -> bytes:
        self.port.timeout = max(timeout, 0.0)
        try:
            return self.port.read(size)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"read failed: {e}") from e

    def _await_response(
        self, expect: dict[int, tuple[Command | int, Parse | None]], deadline: float
    ) -> tuple[int, Any]:
        """Waits until deadline for the response to one of the requests in expect (by sequence
        number); returns (seq, parsed response)."""
        while (remaining := deadline - self.clock()) > 0:
            data = self._read(self._decoder.bytes_wanted(), remaining)
            for event in self._decoder.feed(data):
                got = self._accept(event, expect)
                if got is not None:
                    return got
        self.stats.timeouts += 1
        raise _Silence("no response in time")

    def _accept(
        self, event: Frame | FrameError, expect: dict[int, tuple[Command | int, Parse | None]]
    ) -> tuple[int, Any] | None:
        """Returns (seq, parsed payload) of an awaited response, None to keep waiting, or
        raises _Retry or DeviceError."""
        if isinstance(event, FrameError):
            self.stats.damaged_responses += 1
            raise _Retry(f"damaged response ({event.reason.name})")
        if event.type == TYPE_ERROR:
            return self._accept_error(event, expect)
        wanted = expect.get(event.seq)
        if wanted is None or event.type != wanted[0] | RESPONSE_FLAG:
            self.stats.stale_frames += 1
            return None
        parse = wanted[1]
        if parse is None:
            return event.seq, event.payload
        try:
            return event.seq, parse(event.payload)
        except MalformedResponse as e:
            self.stats.damaged_responses += 1
            raise _Retry(f"malformed response: {e}") from None

    def _accept_error(
        self, event: Frame, expect: dict[int, tuple[Command | int, Parse | None]]
    ) -> None:
        try:
            reply = ErrorReply.decode(event.payload)
        except MalformedResponse as e:
            self.stats.damaged_responses += 1
            raise _Retry(f"unreadable error report {event.payload.hex()} ({e})") from None
        if reply.code.is_transport:
            # The damaged frame's sequence number may itself be damaged: any transport error
            # while a request is outstanding means "resend".
            self.stats.transport_errors += 1
            raise _Retry(f"device reported {reply.code.name}")
        wanted = expect.get(event.seq)
        if wanted is None or reply.request_type != int(wanted[0]):
            self.stats.stale_frames += 1  # an answer to an earlier request: keep waiting
            return
        raise DeviceError(wanted[0], reply)

    def _drain(self) -> None:
        """Waits until the line has been quiet for _QUIET_S (at most self.timeout) and drops
        everything received, so a retry starts from a clean line."""
        deadline = self.clock() + self.timeout
        while self.clock() < deadline and self._read(4096, _QUIET_S):
            pass
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"reset of the input buffer failed: {e}") from e
        self._decoder.reset()


def _expect_empty(payload: bytes) -> None:
    if payload:
        raise MalformedResponse(f"expected an empty response, got {len(payload)} bytes")
