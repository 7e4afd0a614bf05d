"""Host side of the benchmark serial protocol: frames, payloads and a streaming decoder.

The C twin is firmware/protocol/fw_protocol.h (framing) and firmware/app/fw_server.c
(payloads); tests/test_serial_protocol.py checks the constants against the header and runs
this decoder on bytes the C encoder wrote. firmware/README.md documents the same layout.

Frame: ``A5 5A | type u8 | seq u8 | length u16 LE | payload | crc u16 LE``, with
CRC-16/CCITT-FALSE over type, seq, length and payload.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

PROTOCOL_VERSION = 2
SYNC = b"\xa5\x5a"
HEADER_BYTES = 6
CRC_BYTES = 2
MAX_PAYLOAD = 1024
MAX_OP_MARKS = 64  # kFwMaxOpMarks: fw_op_mark values a device keeps per inference
RESPONSE_FLAG = 0x80
TYPE_ERROR = 0xFF
# LOAD_INPUT carries u32 session, u32 run, u32 offset in front of its data, a READ_OUTPUT
# response u32 run, u32 offset: one chunk size fits both.
LOAD_HEADER_BYTES = 12
READ_HEADER_BYTES = 8
MAX_CHUNK = MAX_PAYLOAD - LOAD_HEADER_BYTES


class Command(enum.IntEnum):
    PING = 0x01
    DESCRIBE = 0x02
    LOAD_INPUT = 0x03
    RUN = 0x04
    READ_OUTPUT = 0x05
    RESET_STATE = 0x06
    EXIT = 0x07
    HELLO = 0x08
    STATUS = 0x09
    OP_COUNTS = 0x0A


class ErrorCode(enum.IntEnum):
    BAD_CRC = 1
    OVERSIZE = 2
    TIMEOUT = 3
    UNKNOWN_COMMAND = 4
    BAD_PAYLOAD = 5
    OUT_OF_RANGE = 6
    MODEL_TOO_LARGE = 7
    SESSION = 8
    SEQUENCE = 9

    @property
    def is_transport(self) -> bool:
        """True for errors about a damaged frame, which resending the request can cure."""
        return self in (ErrorCode.BAD_CRC, ErrorCode.OVERSIZE, ErrorCode.TIMEOUT)


class Dtype(enum.IntEnum):
    FLOAT32 = 0
    INT8 = 1

    @property
    def numpy_name(self) -> str:
        return {Dtype.FLOAT32: "<f4", Dtype.INT8: "i1"}[self]


class CounterUnit(enum.IntEnum):
    CYCLES = 0
    INSTRUCTIONS = 1


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE, the frame checksum (check value 0x29B1 for b"123456789")."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b""

    def encode(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        body = struct.pack("<BBH", self.type, self.seq, len(self.payload)) + self.payload
        return SYNC + body + struct.pack("<H", crc16(body))


@dataclass(frozen=True)
class FrameError:
    """A frame the decoder rejected; reason is an ErrorCode (BAD_CRC or OVERSIZE)."""

    reason: ErrorCode
    type: int
    seq: int


class FrameDecoder:
    """Incremental decoder: feed() bytes, get complete frames and rejected frames back.

    Like the C parser it skips bytes until a sync pair, and after a bad CRC or an oversize
    length it resumes the search right after the rejected frame's header.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.discarded = 0

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self._buffer += data
        events: list[Frame | FrameError] = []
        while (event := self._next()) is not None:
            events.append(event)
        return events

    @property
    def in_frame(self) -> bool:
        """True while a started frame waits for more bytes."""
        return self._buffer.startswith(SYNC)

    def bytes_wanted(self) -> int:
        """How many more bytes complete the frame under way (at least 1), so a reader can ask
        the port for exactly that many."""
        if not self.in_frame:
            return 1
        if len(self._buffer) < HEADER_BYTES:
            return HEADER_BYTES - len(self._buffer)
        (length,) = struct.unpack_from("<H", self._buffer, 4)
        end = HEADER_BYTES + min(length, MAX_PAYLOAD) + CRC_BYTES
        return max(1, end - len(self._buffer))

    def _next(self) -> Frame | FrameError | None:
        if not self._skip_to_sync() or len(self._buffer) < HEADER_BYTES:
            return None
        type_, seq, length = struct.unpack_from("<BBH", self._buffer, 2)
        if length > MAX_PAYLOAD:
            del self._buffer[:HEADER_BYTES]
            return FrameError(ErrorCode.OVERSIZE, type_, seq)
        end = HEADER_BYTES + length + CRC_BYTES
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[2 : HEADER_BYTES + length])
        (crc,) = struct.unpack_from("<H", self._buffer, HEADER_BYTES + length)
        del self._buffer[:end]
        if crc != crc16(body):
            return FrameError(ErrorCode.BAD_CRC, type_, seq)
        return Frame(type_, seq, body[HEADER_BYTES - 2 :])

    def _skip_to_sync(self) -> bool:
        start = self._buffer.find(SYNC)
        if start < 0:
            # Keep a trailing A5: it may be the first half of a sync pair.
            keep = 1 if self._buffer.endswith(SYNC[:1]) else 0
            self.discarded += len(self._buffer) - keep
            del self._buffer[: len(self._buffer) - keep]
            return False
        self.discarded += start
        del self._buffer[:start]
        return True

    def reset(self) -> None:
        self._buffer.clear()


# --- payloads --------------------------------------------------------------------------------


class MalformedResponse(ValueError):
    """A response with a valid CRC whose payload does not fit its type (wrong length, unknown
    enum value, cut short) or does not answer the request (other run, offset or length)."""


def _unpack(layout: struct.Struct, payload: bytes, what: str) -> tuple:
    if len(payload) != layout.size:
        raise MalformedResponse(f"{what} response of {len(payload)} bytes, expected {layout.size}")
    return layout.unpack(payload)


def _enum(kind: type[enum.IntEnum], value: int, what: str):
    try:
        return kind(value)
    except ValueError:
        raise MalformedResponse(f"{what}: unknown {kind.__name__} {value}") from None


_DESCRIBE_FIXED = struct.Struct("<HHBBHiiiiIIIIIIIIII")


@dataclass(frozen=True)
class DeviceInfo:
    """The DESCRIBE response: model tensors, firmware buffers, memory and timer."""

    protocol_version: int
    max_payload: int
    dtype: Dtype
    counter_unit: CounterUnit
    counter_resolution: int
    input_bytes: int
    output_bytes: int
    input_elems: int
    output_elems: int
    model_bytes: int
    arena_bytes: int
    input_capacity: int
    output_capacity: int
    flash_used: int
    flash_size: int
    ram_used: int
    ram_size: int
    stack_size: int
    cpu_hz: int
    firmware_version: str
    model_name: str
    board_name: str

    @classmethod
    def decode(cls, payload: bytes) -> DeviceInfo:
        """Raises MalformedResponse for a payload cut short, with trailing bytes, unknown
        dtype or counter unit, or negative tensor sizes."""
        if len(payload) < _DESCRIBE_FIXED.size + 3:
            raise MalformedResponse(f"DESCRIBE response of {len(payload)} bytes is cut short")
        fixed = list(_DESCRIBE_FIXED.unpack_from(payload))
        fixed[2] = _enum(Dtype, fixed[2], "DESCRIBE")
        fixed[3] = _enum(CounterUnit, fixed[3], "DESCRIBE")
        if min(fixed[5:9]) < 0:
            raise MalformedResponse(f"DESCRIBE: negative tensor size in {fixed[5:9]}")
        offset = _DESCRIBE_FIXED.size
        strings = []
        for _ in range(3):
            if offset >= len(payload) or offset + 1 + payload[offset] > len(payload):
                raise MalformedResponse("DESCRIBE response is cut short inside its strings")
            n = payload[offset]
            strings.append(payload[offset + 1 : offset + 1 + n].decode("ascii", "replace"))
            offset += 1 + n
        if offset != len(payload):
            raise MalformedResponse(f"DESCRIBE response has {len(payload) - offset} extra bytes")
        return cls(*fixed, *strings)


_STATUS = struct.Struct("<III")


@dataclass(frozen=True)
class Status:
    """The HELLO and STATUS response: the open session, the inferences run since the firmware
    started, and the owner of the session that ran the last one (0: none)."""

    session: int
    run_count: int
    run_owner: int

    @classmethod
    def decode(cls, payload: bytes) -> Status:
        return cls(*_unpack(_STATUS, payload, "STATUS"))


_RUN = struct.Struct("<IiQI")


@dataclass(frozen=True)
class RunResult:
    """The RUN response. count is in the unit DESCRIBE reports (instructions under QEMU); run
    is the inference's index since the firmware started."""

    run: int
    status: int
    count: int
    stack_used: int

    @classmethod
    def decode(cls, payload: bytes) -> RunResult:
        return cls(*_unpack(_RUN, payload, "RUN"))


_LOAD_ACK = struct.Struct("<III")


@dataclass(frozen=True)
class LoadAck:
    """The LOAD_INPUT response: which inference's input, where and how many bytes were written."""

    run: int
    offset: int
    length: int

    @classmethod
    def decode(cls, payload: bytes) -> LoadAck:
        return cls(*_unpack(_LOAD_ACK, payload, "LOAD_INPUT"))


@dataclass(frozen=True)
class OutputChunk:
    """The READ_OUTPUT response: a slice of inference run's output starting at offset."""

    run: int
    offset: int
    data: bytes

    @classmethod
    def decode(cls, payload: bytes) -> OutputChunk:
        if len(payload) < READ_HEADER_BYTES:
            raise MalformedResponse(f"READ_OUTPUT response of {len(payload)} bytes is cut short")
        run, offset = struct.unpack_from("<II", payload)
        return cls(run, offset, bytes(payload[READ_HEADER_BYTES:]))


_OP_COUNTS = struct.Struct("<III")


@dataclass(frozen=True)
class OpCounts:
    """The OP_COUNTS response: the counter at each fw_op_mark the model made during inference
    `run` (cumulative since RUN reset it; at most MAX_OP_MARKS of `made` are sent)."""

    run: int
    made: int
    marks: tuple[int, ...]

    @classmethod
    def decode(cls, payload: bytes) -> OpCounts:
        if len(payload) < _OP_COUNTS.size:
            raise MalformedResponse(f"OP_COUNTS response of {len(payload)} bytes is cut short")
        run, made, sent = _OP_COUNTS.unpack_from(payload)
        if sent > MAX_OP_MARKS or sent > made or len(payload) != _OP_COUNTS.size + 8 * sent:
            raise MalformedResponse(f"OP_COUNTS response of {len(payload)} bytes does not hold "
                                    f"{sent} of {made} marks")
        return cls(run, made, struct.unpack_from(f"<{sent}Q", payload, _OP_COUNTS.size))

    def per_op(self) -> list[int]:
        """Counts between consecutive marks (the first from the start of the inference)."""
        return [b - a for a, b in zip((0, *self.marks), self.marks)]


_ERROR = struct.Struct("<BBH")


@dataclass(frozen=True)
class ErrorReply:
    """The payload of a TYPE_ERROR frame."""

    code: ErrorCode
    request_type: int
    detail: int

    @classmethod
    def decode(cls, payload: bytes) -> ErrorReply:
        code, request_type, detail = _unpack(_ERROR, payload, "ERROR")
        return cls(_enum(ErrorCode, code, "ERROR"), request_type, detail)


def hello_payload(nonce: int, owner: int = 0) -> bytes:
    return struct.pack("<II", nonce, owner)


def load_input_payload(session: int, run: int, offset: int, data: bytes) -> bytes:
    return struct.pack("<III", session, run, offset) + data


def run_payload(session: int, run: int) -> bytes:
    return struct.pack("<II", session, run)


def read_output_payload(run: int, offset: int, length: int) -> bytes:
    return struct.pack("<IIH", run, offset, length)


def op_counts_payload(run: int) -> bytes:
    return struct.pack("<I", run)


def reset_state_payload(session: int, run: int) -> bytes:
    return struct.pack("<II", session, run)
