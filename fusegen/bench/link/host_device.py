"""The device side of the protocol compiled for the host and loaded with ctypes.

firmware/host/fw_host_device.c wraps the firmware's own parser and command server (with the
echo test model) around an in-memory UART. ``HostDevicePort`` makes it look like a serial port,
so SerialLink, the runner and the tests can talk to the real device code without a board or
an emulator.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

from fusegen.bench.firmware.build import FIRMWARE_DIR

HOST_SOURCES = (
    "protocol/fw_protocol.c",
    "app/fw_server.c",
    "app/fw_model_test_echo.c",
    "host/fw_host_device.c",
)
INCLUDE_DIRS = ("protocol", "app", "host")
CFLAGS = (
    "-std=c11",
    "-O1",
    "-g",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wdouble-promotion",
    "-Wfloat-conversion",
    "-fPIC",
    "-shared",
)


def host_compiler() -> str | None:
    return next((cc for cc in ("cc", "gcc", "clang") if shutil.which(cc)), None)


def build_host_device(out_dir: Path, extra_flags: tuple[str, ...] = ()) -> Path:
    """Compiles libfw_host_device.so into out_dir; returns its path."""
    cc = host_compiler()
    if cc is None:
        raise RuntimeError("no host C compiler (cc, gcc or clang) on PATH")
    out_dir.mkdir(parents=True, exist_ok=True)
    library = out_dir / "libfw_host_device.so"
    command = [cc, *CFLAGS, *extra_flags]
    command += [f"-I{FIRMWARE_DIR / d}" for d in INCLUDE_DIRS]
    command += [str(FIRMWARE_DIR / s) for s in HOST_SOURCES] + ["-o", str(library)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    return library


class HostDevice:
    """ctypes view of one loaded libfw_host_device.so (module-global state: one per library)."""

    def __init__(self, library: Path) -> None:
        self.lib = ctypes.CDLL(str(library))
        self._buffer = ctypes.create_string_buffer(1 << 16)
        self.lib.fw_host_init.argtypes = [ctypes.c_uint32, ctypes.c_uint32]
        self.lib.fw_host_feed.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self.lib.fw_host_feed.restype = ctypes.c_size_t
        self.lib.fw_host_take_output.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self.lib.fw_host_take_output.restype = ctypes.c_size_t
        self.lib.fw_host_run_count.restype = ctypes.c_uint32
        self.lib.fw_crc16.argtypes = [ctypes.c_uint16, ctypes.c_char_p, ctypes.c_size_t]
        self.lib.fw_crc16.restype = ctypes.c_uint16
        self.lib.fw_frame_encode.argtypes = [
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        self.lib.fw_frame_encode.restype = ctypes.c_size_t

    def reset(self, input_capacity: int = 16384, output_capacity: int = 16384) -> None:
        self.lib.fw_host_init(input_capacity, output_capacity)

    def feed(self, data: bytes) -> None:
        self.lib.fw_host_feed(data, len(data))

    def timeout(self) -> None:
        """The device's idle-line timeout expires."""
        self.lib.fw_host_timeout()

    def take_output(self) -> bytes:
        n = self.lib.fw_host_take_output(self._buffer, len(self._buffer))
        return ctypes.string_at(self._buffer, n)

    def in_frame(self) -> bool:
        return bool(self.lib.fw_host_in_frame())

    def run_count(self) -> int:
        """Inferences the C server has run since reset()."""
        return self.lib.fw_host_run_count()

    def exit_requested(self) -> bool:
        return bool(self.lib.fw_host_exit_requested())

    def crc16(self, data: bytes) -> int:
        return self.lib.fw_crc16(0xFFFF, data, len(data))

    def encode(self, type_: int, seq: int, payload: bytes) -> bytes:
        out = ctypes.create_string_buffer(len(payload) + 16)
        n = self.lib.fw_frame_encode(type_, seq, payload, len(payload), out, len(out))
        return out.raw[:n]


class HostDevicePort:
    """A pyserial-like port whose far end is a HostDevice. Reads never block: whatever the
    device has answered is returned at once, and an idle read fires the device's timeout (the
    host waited, so the device's idle timer ran out too)."""

    def __init__(self, device: HostDevice) -> None:
        self.device = device
        self.timeout: float | None = None
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self.device.feed(data)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._pending += self.device.take_output()
        if not self._pending:
            self.device.timeout()
            self._pending += self.device.take_output()
        out = bytes(self._pending[:size])
        del self._pending[:size]
        return out

    def reset_input_buffer(self) -> None:
        self._pending.clear()
        self.device.take_output()

    def close(self) -> None:
        pass
