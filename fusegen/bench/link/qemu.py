"""Runs the firmware in QEMU (mps2-an386) with its UART on a local TCP socket.

``QemuMachine`` is a context manager: it starts ``qemu-system-arm`` with ``-icount shift=0``
(deterministic instruction counting, see firmware/README.md) and semihosting (so the firmware
can exit QEMU), connects a SerialLink to the UART, and on exit always stops QEMU: first by
asking the firmware to exit, then terminate, then kill. Every wait has a timeout, and a
watchdog kills QEMU after ``max_runtime`` seconds whatever happens.

    with QemuMachine(build_firmware(FirmwareConfig())) as qemu:
        print(qemu.link.describe())
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

from fusegen.bench.link.serial_link import DEFAULT_RETRIES, LinkError, SerialLink

QEMU_BINARY = "qemu-system-arm"
MACHINE = "mps2-an386"
log = logging.getLogger(__name__)

_PORT_ATTEMPTS = 3
_STOP_TIMEOUT_S = 5.0
_EXIT_GRACE_S = 2.0


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn of QEMU: the kernel sends it SIGKILL when the Python process that started it
    dies, however it dies (SIGKILL included), so no QEMU is left running under PID 1."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class QemuError(Exception):
    """QEMU could not be started, or it stopped unexpectedly; carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (QEMU binds it next; start() retries
    on the rare collision)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_command(elf: Path, port: int, machine: str = MACHINE) -> list[str]:
    options = (
        ("-M", machine),
        ("-display", "none"),
        ("-monitor", "none"),
        ("-icount", "shift=0"),
        ("-semihosting-config", "enable=on,target=native"),
        ("-kernel", str(elf)),
        # nodelay: the firmware sends byte by byte; without it Nagle's algorithm and delayed
        # ACKs add 40 ms to every response.
        ("-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"),
    )
    return [QEMU_BINARY] + [word for option in options for word in option]


class QemuMachine:
    """One QEMU process running one firmware ELF, with ``link`` connected to its UART0."""

    def __init__(
        self,
        elf: Path,
        *,
        boot_timeout: float = 10.0,
        link_timeout: float = 5.0,
        retries: int = DEFAULT_RETRIES,
        max_runtime: float = 600.0,
        log_path: Path | None = None,
    ) -> None:
        self.elf = Path(elf)
        self.boot_timeout = boot_timeout
        self.link_timeout = link_timeout
        self.retries = retries
        self.max_runtime = max_runtime
        # A log we created is deleted after a clean exit and kept (and named in errors) otherwise.
        self._owns_log = log_path is None
        self.log_path = Path(log_path) if log_path else _temp_log_path()
        self.process: subprocess.Popen[bytes] | None = None
        self.link: SerialLink | None = None
        self.port: int | None = None
        self._watchdog: threading.Timer | None = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        crashed = isinstance(exc, LinkError) and self._exits_soon()
        # Interrupted (KeyboardInterrupt, a signal turned into an exception): stop at once.
        self.stop(graceful=exc is None or isinstance(exc, Exception))
        if crashed:
            # The link broke because QEMU is gone: say why (a fault report, its exit status).
            raise QemuError(
                f"QEMU exited with status {self.process.returncode} during the session:\n"
                f"{self.log_tail()}"
            ) from exc

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def start(self) -> SerialLink:
        """Starts QEMU and connects; returns the link (also kept as ``self.link``)."""
        if shutil.which(QEMU_BINARY) is None:
            raise QemuError(f"{QEMU_BINARY} not found (run scripts/setup.sh)")
        if not self.elf.is_file():
            raise QemuError(f"no firmware at {self.elf}")
        for _ in range(_PORT_ATTEMPTS):
            self.port = free_port()
            self._spawn()
            try:
                self.link = self._connect()
                return self.link
            except QemuError:
                if "Address already in use" not in self.log_tail():
                    raise
                self._kill()
        raise QemuError(f"no free port after {_PORT_ATTEMPTS} attempts")

    def _spawn(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen(
                qemu_command(self.elf, self.port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: a terminal's Ctrl-C reaches only fusegen, which then
                # stops QEMU itself; and it dies with fusegen whatever kills fusegen.
                process_group=0,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl call
            )
        finally:
            log.close()
        self._watchdog = threading.Timer(self.max_runtime, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _connect(self) -> SerialLink:
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise QemuError(f"QEMU exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                return SerialLink.open(self.url, timeout=self.link_timeout, retries=self.retries)
            except LinkError:
                time.sleep(0.05)
        raise QemuError(
            f"could not connect to QEMU at {self.url} within {self.boot_timeout} s:"
            f"\n{self.log_tail()}"
        )

    def wait(self, timeout: float) -> int:
        """Waits for QEMU to exit; returns its exit status (the firmware's bsp_exit code)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as e:
            raise QemuError(f"QEMU still running after {timeout} s") from e

    def stop(self, graceful: bool = True) -> int | None:
        """Stops the firmware and QEMU; returns QEMU's exit status. Safe to call twice."""
        if self.link is not None:
            if graceful and self.running:
                # A firmware that does not answer quickly is killed below instead.
                self.link.timeout, self.link.retries = 1.0, 0
                try:
                    self.link.exit()
                except Exception as e:  # noqa: BLE001 - stopping anyway
                    log.info("EXIT not answered (%s); stopping QEMU", e)
            self.link.close()
            self.link = None
        if self.process is not None and self.running:
            try:
                self.process.wait(_STOP_TIMEOUT_S if graceful else 0.1)
            except subprocess.TimeoutExpired:
                self._kill()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._owns_log and self.process is not None and self.process.returncode == 0:
            self.log_path.unlink(missing_ok=True)
        return None if self.process is None else self.process.returncode

    def _exits_soon(self) -> bool:
        """True if QEMU has exited or does within a moment (its socket closes first)."""
        if self.process is None:
            return False
        try:
            self.process.wait(_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _kill(self) -> None:
        if not self.running:
            return
        self.process.terminate()
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(_STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 20) -> str:
        """The end of QEMU's stdout and stderr, which includes the firmware's semihosting log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join([f"(log: {self.log_path})", *text.splitlines()[-lines:]])


def _temp_log_path() -> Path:
    handle, name = tempfile.mkstemp(prefix="fusegen-qemu-", suffix=".log")
    os.close(handle)
    return Path(name)
