"""Model-based test of exactly-once RUN: the firmware's real C server (firmware/app/fw_server.c,
compiled for the host with the echo model, driven in-process through ctypes) and the real
SerialLink, joined by a simulated line on virtual time that loses, corrupts, truncates,
duplicates, reorders and stalls frames in both directions, adds line noise, drops the
connection, and replays a dead connection's frames into the device.

A host driver runs a few inferences per schedule (some after RESET_STATE), reconnecting after
every LinkError the way a careful host would (open_session(previous=...) and collect a RUN
whose response was lost). After each schedule: the device ran exactly as many inferences as
the host completed, every output is the echo of its input with the right step counter (a RUN
run twice, or an inference on the wrong input, shows there), and nothing hung (virtual time
and the number of attempts are bounded).
"""

from __future__ import annotations

import logging
import os
import random
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest

from fusegen.bench.link import protocol as P
from fusegen.bench.link.host_device import HostDevice, build_host_device, host_compiler
from fusegen.bench.link.serial_link import LinkError, SerialLink

SCHEDULES = int(os.environ.get("FUSEGEN_SERIAL_SCHEDULES", "10000"))
ELEMS = 4  # FW_ECHO_ELEMS of the library built here: small frames keep 10,000 schedules fast
LINK_TIMEOUT = 0.25  # virtual seconds
RUN_TIMEOUT = 6.0
MAX_VIRTUAL_S = 600.0  # per schedule: a hang shows up as running past this
MAX_ATTEMPTS = 60  # LinkErrors (reconnects) per inference before the schedule counts as hung

FAULTS = ("drop", "corrupt", "truncate", "duplicate", "delay", "stall", "noise", "disconnect")


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> HostDevice:
    if host_compiler() is None:
        pytest.skip("no host C compiler (cc, gcc or clang) to build the protocol library")
    library = build_host_device(
        tmp_path_factory.mktemp("host_device_small"), (f"-DFW_ECHO_ELEMS={ELEMS}",)
    )
    return HostDevice(library)


class Disconnected(OSError):
    """The simulated connection dropped."""


def split_frames(data: bytes) -> list[bytes]:
    """The device only ever writes whole valid frames (its fuzz target checks that)."""
    frames = []
    while data:
        (length,) = struct.unpack_from("<H", data, 4)
        end = P.HEADER_BYTES + length + P.CRC_BYTES
        frames.append(data[:end])
        data = data[end:]
    return frames


@dataclass
class Line:
    """Both directions of the serial line and the device's clock, on virtual time."""

    device: HostDevice
    rng: random.Random
    fault_rate: float
    budget: int  # faults left in this schedule: the line heals, so every schedule can finish
    now: float = 0.0
    connection: int = 0
    to_host: bytearray = field(default_factory=bytearray)
    held: list[tuple[float, str, bytes]] = field(default_factory=list)  # (release, dir, bytes)
    sent: list[bytes] = field(default_factory=list)  # frames of the current connection
    dead: list[bytes] = field(default_factory=list)  # frames of dropped connections
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))
    replayed: int = 0

    def clock(self) -> float:
        return self.now

    def _fault(self) -> str | None:
        if self.budget <= 0 or self.rng.random() >= self.fault_rate:
            return None
        self.budget -= 1
        fault = self.rng.choice(FAULTS)
        self.faults[fault] += 1
        return fault

    # -- delivery -----------------------------------------------------------------------------

    def _damage(self, data: bytes, fault: str | None) -> list[tuple[float, bytes]]:
        """What the fault makes of one frame: (delay, bytes) pieces to deliver."""
        if fault is None:
            return [(0.0, data)]
        if fault == "drop":
            return []
        if fault == "corrupt":
            damaged = bytearray(data)
            damaged[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
            return [(0.0, bytes(damaged))]
        if fault == "truncate":
            return [(0.0, data[: self.rng.randrange(1, len(data))])]
        if fault == "duplicate":
            return [(0.0, data), (self.rng.uniform(0, 1.0), data)]
        if fault == "delay":  # reordered behind what follows
            return [(self.rng.uniform(0.01, 0.6), data)]
        if fault == "stall":  # a slow or busy far end
            return [(self.rng.uniform(0.3, 2.5), data)]
        if fault == "noise":
            noise = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 12)))
            if self.rng.random() < 0.3:
                noise += P.SYNC  # a bogus frame start
            return [(0.0, noise + data)]
        raise Disconnected("the line dropped")

    def _to_device(self, data: bytes) -> None:
        self.device.feed(data)
        self._from_device()

    def _from_device(self) -> None:
        for frame in split_frames(self.device.take_output()):
            for delay, piece in self._damage(frame, self._fault_no_disconnect()):
                self._hold_or_deliver(delay, "host", piece)

    def _fault_no_disconnect(self) -> str | None:
        fault = self._fault()
        return None if fault == "disconnect" else fault

    def _hold_or_deliver(self, delay: float, direction: str, data: bytes) -> None:
        if delay > 0:
            self.held.append((self.now + delay, direction, data))
        elif direction == "host":
            self.to_host += data
        else:
            self._to_device(data)

    def _release(self) -> None:
        """Delivers every held piece whose time has come, in order of release."""
        while True:
            due = [h for h in self.held if h[0] <= self.now and h[1] != "replay"]
            if not due:
                return
            first = min(due, key=lambda h: h[0])
            self.held.remove(first)
            if first[1] == "host":
                self.to_host += first[2]
            else:
                self._to_device(first[2])

    def _advance(self, seconds: float) -> None:
        self.now += seconds
        if self.now > MAX_VIRTUAL_S:
            raise AssertionError(f"schedule still running after {MAX_VIRTUAL_S} virtual s (hang)")
        self._release()
        if self.device.in_frame():  # the device's idle-line timer ran out too
            self.device.timeout()
            self._from_device()

    # -- the host's side (SimPort calls these) --------------------------------------------------

    def host_write(self, connection: int, data: bytes) -> None:
        if connection != self.connection:
            raise Disconnected("write on a dropped connection")
        self.sent.append(data)
        pieces = self._damage(data, self._fault())
        for delay, piece in pieces:
            self._hold_or_deliver(delay, "device", piece)

    def host_read(self, connection: int, size: int, timeout: float) -> bytes:
        if connection != self.connection:
            raise Disconnected("read on a dropped connection")
        self._release()
        if not self.to_host:
            # Wait: either until the next held piece arrives or the timeout runs out.
            pending = [h[0] for h in self.held if h[0] > self.now]
            step = min([timeout, *(t - self.now for t in pending)])
            self._advance(max(step, 1e-3) if step < timeout else timeout)
        out = bytes(self.to_host[:size])
        del self.to_host[:size]
        return out

    def reconnect(self) -> int:
        """A new connection. What the old one had on its way to the device arrives first (it
        is ahead in the device's receive FIFO); answers to the old connection are lost with
        it. Later, at random times, some older frames of dead connections (never HELLO, which
        only a live host sends) reach the device once more: a stale, replayed write."""
        self.connection += 1
        self.to_host.clear()
        for _, direction, data in sorted(self.held, key=lambda h: h[0]):
            if direction == "device":
                self._feed_dead(data)
        self.held = [h for h in self.held if h[1] == "replay"]
        self.dead += self.sent
        self.sent = []
        for frame in self.rng.sample(self.dead, min(len(self.dead), self.rng.randrange(4))):
            if frame[2:3] == bytes([P.Command.HELLO]):
                continue
            self.held.append((self.now + self.rng.uniform(0, 1.0), "replay", frame))
        return self.connection

    def _feed_dead(self, data: bytes) -> None:
        """Feeds bytes of a dead connection; the device's answers to them go nowhere."""
        keep = self.device.take_output()  # answers to the live connection stay
        self.device.feed(data)
        self.device.take_output()
        self.to_host += keep

    def replay_due(self) -> None:
        for h in [h for h in self.held if h[1] == "replay" and h[0] <= self.now]:
            self.held.remove(h)
            self.replayed += 1
            self._feed_dead(h[2])


class SimPort:
    """What SerialLink sees: one connection of the simulated line."""

    def __init__(self, line: Line) -> None:
        self.line = line
        self.connection = line.connection
        self.timeout: float | None = None

    def write(self, data: bytes) -> int:
        self.line.replay_due()
        self.line.host_write(self.connection, data)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self.line.replay_due()
        return self.line.host_read(self.connection, size, self.timeout or 0.0)

    def reset_input_buffer(self) -> None:
        if self.connection == self.line.connection:
            self.line.to_host.clear()

    def close(self) -> None:
        pass


@dataclass
class Outcome:
    completed: int = 0
    reconnects: int = 0
    polls: int = 0


def run_schedule(device: HostDevice, seed: int) -> tuple[Line, Outcome]:
    rng = random.Random(seed)
    device.reset()
    line = Line(device, rng, fault_rate=rng.choice((0.05, 0.15, 0.3)), budget=rng.randrange(16))
    nonces = iter(range(seed * 1000 + 1, seed * 1000 + 1000))

    def new_link() -> SerialLink:
        link = SerialLink(SimPort(line), timeout=LINK_TIMEOUT, retries=3, clock=line.clock,
                          nonce=lambda: next(nonces))  # fmt: skip
        link.run_timeout = RUN_TIMEOUT
        return link

    def reconnect(previous: SerialLink) -> SerialLink:
        for _ in range(MAX_ATTEMPTS):
            outcome.reconnects += 1
            line.reconnect()
            link = new_link()
            try:
                link.open_session(previous)
                return link
            except LinkError:
                continue
        raise AssertionError(f"seed {seed}: no session after {MAX_ATTEMPTS} reconnects")

    outcome = Outcome()
    link = new_link()
    steps = 0
    for k in range(rng.randrange(1, 5)):
        x = np.array([rng.randrange(-999, 1000) for _ in range(ELEMS)], np.float32)
        stage = "reset" if k == 0 or rng.random() < 0.25 else "load"
        for _ in range(MAX_ATTEMPTS):
            try:
                if stage == "reset":
                    link.reset_state()
                    steps, stage = 0, "load"
                if stage == "load":
                    link.load_input(x.tobytes())
                    stage = "run"
                if stage == "run":
                    result = link.run()
                    assert result.status == 0 and result.run == link.last_run
                    outcome.completed += 1
                    steps, stage = steps + 1, "read"
                y = np.frombuffer(link.read_output(4 * (ELEMS + 1)), np.float32)
                break
            except LinkError:
                outcome.polls += link.stats.polls
                link = reconnect(link)
                if stage in ("load", "run") and link.pending_run is None:
                    # It did not run: the host may as well send another input now, so a
                    # replayed chunk of the old one would show in the output.
                    x = np.array([rng.randrange(-999, 1000) for _ in range(ELEMS)], np.float32)
                    stage = "load"
        else:
            raise AssertionError(f"seed {seed}: inference {k} made no progress")
        assert (y[:ELEMS] == 2 * x).all(), f"seed {seed}: inference {k} output {y}, input {x}"
        assert y[ELEMS] == steps, f"seed {seed}: inference {k} saw step {y[ELEMS]}, not {steps}"
    outcome.polls += link.stats.polls
    assert device.run_count() == outcome.completed, f"seed {seed}"
    return line, outcome


def test_model_based_exactly_once_under_faults(device: HostDevice) -> None:
    logging.getLogger("fusegen.bench.link.serial_link").setLevel(logging.ERROR)
    faults = dict.fromkeys(FAULTS, 0)
    totals = Outcome()
    replayed = 0
    for seed in range(SCHEDULES):
        line, outcome = run_schedule(device, seed)
        for name, n in line.faults.items():
            faults[name] += n
        totals.completed += outcome.completed
        totals.reconnects += outcome.reconnects
        totals.polls += outcome.polls
        replayed += line.replayed
    print(f"{SCHEDULES} schedules: {totals.completed} inferences, {totals.reconnects} "
          f"reconnects, {totals.polls} STATUS polls, {replayed} dead-connection frames replayed, "
          f"faults {faults}")  # fmt: skip
    # The schedules exercise what they claim to (fails if the fault injection breaks).
    if SCHEDULES >= 1000:
        assert min(faults.values()) > 100 and totals.reconnects > 100 and totals.polls > 100
        assert replayed > 100
