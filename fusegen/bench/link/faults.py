"""A port wrapper that damages chosen writes and reads, to check that SerialLink and the
firmware recover (tests use it against the host device and QEMU; it works on a board too)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fusegen.bench.link.serial_link import Port


@dataclass
class FaultyPort:
    """Wraps a port. Writes are counted from 0; for each index in corrupt_writes one bit of
    that write is flipped, for each in truncate_writes only the first half is sent. For each
    index in corrupt_reads one bit of that read is flipped."""

    inner: Port
    corrupt_writes: set[int] = field(default_factory=set)
    truncate_writes: set[int] = field(default_factory=set)
    corrupt_reads: set[int] = field(default_factory=set)
    writes: int = 0
    reads: int = 0

    @property
    def timeout(self) -> float | None:
        return self.inner.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.inner.timeout = value

    def write(self, data: bytes) -> int | None:
        index, self.writes = self.writes, self.writes + 1
        if index in self.truncate_writes:
            data = data[: len(data) // 2]
        if index in self.corrupt_writes:
            data = flip_bit(data, len(data) - 3)
        return self.inner.write(data)

    def read(self, size: int = 1) -> bytes:
        data = self.inner.read(size)
        if data:
            index, self.reads = self.reads, self.reads + 1
            if index in self.corrupt_reads:
                data = flip_bit(data, len(data) - 1)
        return data

    def reset_input_buffer(self) -> None:
        self.inner.reset_input_buffer()

    def close(self) -> None:
        self.inner.close()


def flip_bit(data: bytes, position: int) -> bytes:
    """data with the lowest bit of byte position flipped (a damaged payload or CRC byte)."""
    damaged = bytearray(data)
    damaged[position] ^= 0x01
    return bytes(damaged)
