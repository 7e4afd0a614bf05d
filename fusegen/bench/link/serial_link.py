"""Talks to the benchmark firmware over a serial link: a board's /dev/tty* or QEMU's socket.

Every request carries a fresh sequence number. A damaged exchange (the device reports a bad
CRC, an oversize length or a mid-frame timeout, or the response itself arrives damaged, or
nothing arrives in time) is retried with the same sequence number, at most ``retries`` times.
The device remembers the last RUN by its sequence number, so a retried RUN returns the stored
result instead of advancing the recurrent state twice.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from typing import Protocol, Self

import serial

from fusegen.bench.link.protocol import (
    MAX_CHUNK,
    MAX_PAYLOAD,
    RESPONSE_FLAG,
    TYPE_ERROR,
    Command,
    DeviceInfo,
    ErrorReply,
    Frame,
    FrameDecoder,
    FrameError,
    RunResult,
    load_input_payload,
    read_output_payload,
)

log = logging.getLogger(__name__)

DEFAULT_BAUDRATE = 115200
DEFAULT_TIMEOUT_S = 2.0
DEFAULT_RETRIES = 3
# RUN waits for the inference itself: generous, since QEMU's -icount mode runs only some tens
# of millions of instructions a second.
DEFAULT_RUN_TIMEOUT_S = 120.0
# After a damaged exchange the line must be quiet this long before the request is resent, so
# the tail of a damaged frame or a late error report is not taken for the new response.
_QUIET_S = 0.05


class LinkError(Exception):
    """No valid response after all retries, or the link itself failed."""


class DeviceError(Exception):
    """The device answered a well-formed request with an error; resending will not help."""

    def __init__(self, command: Command | int, reply: ErrorReply) -> None:
        super().__init__(f"{_name(command)} failed on the device: {reply.code.name}")
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
    damaged_responses: int = 0
    timeouts: int = 0
    stale_frames: int = 0  # responses to an earlier sequence number, ignored


def _name(command: Command | int) -> str:
    return command.name if isinstance(command, Command) else f"command 0x{command:02x}"


class _Retry(Exception):
    """Internal: this attempt failed in a way that resending may cure."""


class SerialLink:
    """One device on one serial port. Use ``SerialLink.open(url)`` or wrap an open port."""

    def __init__(
        self, port: Port, *, timeout: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.run_timeout = DEFAULT_RUN_TIMEOUT_S
        self.stats = LinkStats()
        self._decoder = FrameDecoder()
        self._seq = 0

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
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"cannot open {url}: {e}") from e
        return cls(port, timeout=timeout, retries=retries)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands --------------------------------------------------------------------------

    def ping(self, payload: bytes = b"") -> bytes:
        """Round-trips payload (at most MAX_PAYLOAD bytes); returns what came back."""
        return self.request(Command.PING, payload)

    def describe(self) -> DeviceInfo:
        return DeviceInfo.decode(self.request(Command.DESCRIBE))

    def load_input(self, data: bytes) -> None:
        """Writes the model input, in chunks of at most MAX_CHUNK bytes."""
        for offset in range(0, max(len(data), 1), MAX_CHUNK):
            chunk = data[offset : offset + MAX_CHUNK]
            self.request(Command.LOAD_INPUT, load_input_payload(offset, chunk))

    def run(self) -> RunResult:
        """Runs one inference on the loaded input."""
        return RunResult.decode(self.request(Command.RUN, timeout=self.run_timeout))

    def read_output(self, size: int) -> bytes:
        """Reads the first size bytes of the model output, in chunks."""
        out = bytearray()
        while len(out) < size:
            n = min(MAX_CHUNK, size - len(out))
            payload = self.request(Command.READ_OUTPUT, read_output_payload(len(out), n))
            out += payload[4:]
        return bytes(out)

    def reset_state(self) -> None:
        self.request(Command.RESET_STATE)

    def exit(self) -> None:
        """Asks the firmware to stop (QEMU then exits through semihosting)."""
        self.request(Command.EXIT)

    # --- transport -------------------------------------------------------------------------

    def request(
        self, command: Command | int, payload: bytes = b"", *, timeout: float | None = None
    ) -> bytes:
        """Sends one request and returns the response payload, retrying damaged exchanges.

        timeout bounds each attempt (default: self.timeout)."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        self._seq = (self._seq + 1) & 0xFF
        frame = Frame(int(command), self._seq, payload).encode()
        self.stats.requests += 1
        last: _Retry | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                self._drain()
            self._write(frame)
            try:
                return self._await_response(command, self._seq, timeout or self.timeout)
            except _Retry as e:
                log.warning("%s seq %d attempt %d: %s", _name(command), self._seq, attempt + 1, e)
                last = e
        raise LinkError(
            f"{_name(command)}: no valid response after {self.retries + 1} attempts (last: {last})"
        )

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"write failed: {e}") from e

    def _read(self, size: int, timeout: float) -> bytes:
        self.port.timeout = timeout
        try:
            return self.port.read(size)
        except (serial.SerialException, OSError) as e:
            raise LinkError(f"read failed: {e}") from e

    def _await_response(self, command: Command | int, seq: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            data = self._read(self._decoder.bytes_wanted(), remaining)
            for event in self._decoder.feed(data):
                payload = self._accept(event, command, seq)
                if payload is not None:
                    return payload
        self.stats.timeouts += 1
        raise _Retry(f"no response within {timeout:.2f} s")

    def _accept(self, event: Frame | FrameError, command: Command | int, seq: int) -> bytes | None:
        """Returns the payload of the awaited response, None to keep waiting, or raises."""
        if isinstance(event, FrameError):
            self.stats.damaged_responses += 1
            raise _Retry(f"damaged response ({event.reason.name})")
        if event.type == TYPE_ERROR:
            return self._accept_error(event, command, seq)
        if event.seq != seq or event.type != command | RESPONSE_FLAG:
            self.stats.stale_frames += 1
            return None
        return event.payload

    def _accept_error(self, event: Frame, command: Command | int, seq: int) -> None:
        try:
            reply = ErrorReply.decode(event.payload)
        except (ValueError, struct.error) as e:
            self.stats.damaged_responses += 1
            raise _Retry(f"unreadable error report {event.payload.hex()}") from e
        if reply.code.is_transport:
            # The damaged frame's sequence number may itself be damaged: any transport error
            # while a request is outstanding means "resend".
            self.stats.transport_errors += 1
            raise _Retry(f"device reported {reply.code.name}")
        if event.seq != seq:
            self.stats.stale_frames += 1  # an answer to an earlier request: keep waiting
            return
        raise DeviceError(command, reply)

    def _drain(self) -> None:
        """Waits until the line has been quiet for _QUIET_S (at most self.timeout) and drops
        everything received, so a retry starts from a clean line."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and self._read(4096, _QUIET_S):
            pass
        self.port.reset_input_buffer()
        self._decoder.reset()
