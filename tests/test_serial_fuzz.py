"""Bounded libFuzzer run of the device's parser and command server (firmware/fuzz/), and a
seeded mutation fuzz of the host's response decoder and SerialLink's response checks."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from functools import partial
from pathlib import Path

import pytest

from fusegen.bench.firmware.build import FIRMWARE_DIR
from fusegen.bench.link import protocol as P
from fusegen.bench.link.host_device import HOST_SOURCES, INCLUDE_DIRS
from fusegen.bench.link.serial_link import DeviceError, LinkError, SerialLink

FUZZ_SECONDS = 15


def fuzz_input(capacities: int, stream: bytes, timeout_after: bool = False) -> bytes:
    """Encodes a byte stream in the target's input format (see fw_server_fuzz.c)."""
    out = bytearray([capacities])
    for start in range(0, len(stream), 63):
        chunk = stream[start : start + 63]
        out += bytes([len(chunk) | (0x80 if timeout_after else 0)]) + chunk
    return bytes(out)


def seed_corpus(directory: Path) -> None:
    """Valid sessions, so the fuzzer starts from frames that reach every command."""
    x = bytes(range(256))
    s = 0x12345678
    session = [
        P.Frame(P.Command.PING, 1, b"hi"),
        P.Frame(P.Command.DESCRIBE, 2),
        P.Frame(P.Command.HELLO, 3, P.hello_payload(s, 7)),
        P.Frame(P.Command.RESET_STATE, 4, P.reset_state_payload(s, 0)),
        P.Frame(P.Command.LOAD_INPUT, 5, P.load_input_payload(s, 1, 0, x)),
        P.Frame(P.Command.RUN, 6, P.run_payload(s, 1)),
        P.Frame(P.Command.RUN, 6, P.run_payload(s, 1)),
        P.Frame(P.Command.STATUS, 7),
        P.Frame(P.Command.READ_OUTPUT, 8, P.read_output_payload(1, 0, 260)),
        P.Frame(P.Command.HELLO, 9, P.hello_payload(s + 1, 7)),
        P.Frame(P.Command.RUN, 10, P.run_payload(s + 1, 1)),
        P.Frame(P.Command.RUN, 11, P.run_payload(s, 2)),
        P.Frame(P.Command.EXIT, 12),
    ]
    stream = b"".join(f.encode() for f in session)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "session").write_bytes(fuzz_input(0xF, stream))
    (directory / "small-buffers").write_bytes(fuzz_input(0x5, stream))
    (directory / "truncated").write_bytes(fuzz_input(0xF, stream[:40], timeout_after=True))


def build_fuzzer(out: Path) -> Path:
    binary = out / "fw_server_fuzz"
    command = [
        "clang",
        "-g",
        "-O1",
        "-std=c11",
        "-fsanitize=fuzzer,address,undefined",
        "-fno-sanitize-recover=undefined",
        "-Wall",
        "-Wextra",
        "-Werror",
    ]
    command += [f"-I{FIRMWARE_DIR / d}" for d in INCLUDE_DIRS]
    command += [str(FIRMWARE_DIR / s) for s in HOST_SOURCES]
    command += [str(FIRMWARE_DIR / "fuzz" / "fw_server_fuzz.c"), "-o", str(binary)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=180)
    if done.returncode != 0 and "fuzzer" in done.stderr and "cannot find" in done.stderr:
        pytest.skip(f"clang has no libFuzzer runtime: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return binary


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang (libFuzzer) not installed")
def test_fuzz_parser_and_server(tmp_path: Path) -> None:
    binary = build_fuzzer(tmp_path)
    corpus = tmp_path / "corpus"
    seed_corpus(corpus)
    done = subprocess.run(
        [
            str(binary),
            str(corpus),
            f"-max_total_time={FUZZ_SECONDS}",
            "-timeout=5",
            "-rss_limit_mb=2048",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 60,
    )
    tail = "\n".join(done.stderr.splitlines()[-25:])
    assert done.returncode == 0, f"fuzzer found a failure:\n{tail}"
    assert "Done" in done.stderr, tail


# --- the host side: a seeded mutation fuzz of the response decoder -----------------------------

MUTATIONS = 20_000

_DECODERS = (P.DeviceInfo.decode, P.Status.decode, P.RunResult.decode, P.LoadAck.decode,
             P.OutputChunk.decode, P.ErrorReply.decode)  # fmt: skip


def response_corpus() -> list[P.Frame]:
    """One valid response of every type, in the layouts firmware/app/fw_server.c writes."""
    describe = struct.pack("<HHBBHiiiiIIIIIIIIII", 2, 1024, 0, 1, 40, *([256, 260, 64, 65]),
                           *range(11, 21)) + b"\x04host\x09test_echo\x04host"  # fmt: skip
    payloads = {
        P.Command.PING: b"hello",
        P.Command.DESCRIBE: describe,
        P.Command.HELLO: struct.pack("<III", 0x1234, 3, 0x99),
        P.Command.STATUS: struct.pack("<III", 0x1234, 3, 0x99),
        P.Command.LOAD_INPUT: struct.pack("<III", 4, 0, 256),
        P.Command.RUN: struct.pack("<IiQI", 4, 0, 5120, 256),
        P.Command.READ_OUTPUT: struct.pack("<II", 4, 0) + bytes(range(200)),
        P.Command.RESET_STATE: struct.pack("<I", 3),
        P.Command.EXIT: b"",
    }
    frames = [P.Frame(c | P.RESPONSE_FLAG, 1 + i, p) for i, (c, p) in enumerate(payloads.items())]
    frames.append(P.Frame(P.TYPE_ERROR, 7, struct.pack("<BBH", 9, P.Command.RUN, 3)))
    return frames


def mutate(rng: random.Random, frame: P.Frame) -> bytes:
    """A damaged frame: mostly with the CRC recomputed, so the damage reaches the payload
    decoders (a bad CRC alone never gets past the framing)."""
    payload = bytearray(frame.payload)
    type_, seq = frame.type, frame.seq
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        if op == 0 and payload:
            payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
        elif op == 1:
            del payload[rng.randrange(len(payload) + 1) :]
        elif op == 2:
            payload[rng.randrange(len(payload) + 1) : 0] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3 and payload:
            payload[rng.randrange(len(payload))] = rng.choice((0, 0x7F, 0x80, 0xFF))
        elif op == 4:
            type_ = rng.choice((type_, rng.randrange(256), P.TYPE_ERROR))
        else:
            seq = rng.randrange(256)
    encoded = P.Frame(type_, seq, bytes(payload[: P.MAX_PAYLOAD])).encode()
    if rng.random() < 0.2:  # framing damage as well: length, CRC, truncation, noise
        damaged = bytearray(encoded)
        damaged[rng.randrange(2, len(damaged))] ^= 1 << rng.randrange(8)
        encoded = bytes(damaged[: rng.randrange(1, len(damaged) + 1)])
    return encoded


def test_response_decoder_mutation_fuzz() -> None:
    """Every mutated response either decodes or raises MalformedResponse (never struct.error,
    IndexError, ...); streamed in random pieces, the decoder finds the same frames."""
    rng = random.Random(20261207)
    corpus = response_corpus()
    for frame in corpus:  # the corpus itself is valid
        assert P.FrameDecoder().feed(frame.encode()) == [frame]
    outcomes = {"decoded": 0, "malformed": 0, "rejected": 0}
    for _ in range(MUTATIONS):
        stream = mutate(rng, rng.choice(corpus))
        whole = P.FrameDecoder().feed(stream)
        decoder, pieces, start = P.FrameDecoder(), [], 0
        while start < len(stream):
            n = rng.randrange(1, 16)
            pieces += decoder.feed(stream[start : start + n])
            start += n
        assert pieces == whole, stream.hex()
        for event in whole:
            if isinstance(event, P.FrameError):
                outcomes["rejected"] += 1
                continue
            for decode in _DECODERS:
                try:
                    decode(event.payload)
                    outcomes["decoded"] += 1
                except P.MalformedResponse:
                    outcomes["malformed"] += 1
    # Each kind of outcome is common (fails if the mutations stop reaching the decoders).
    assert outcomes["decoded"] > 1000 and outcomes["malformed"] > 1000, outcomes
    assert outcomes["rejected"] > 100, outcomes


class _OneShotPort:
    """Answers each request with a mutated response (or nothing), for SerialLink's checks."""

    def __init__(self, rng: random.Random, corpus: list[P.Frame]) -> None:
        self.rng, self.corpus = rng, corpus
        self.timeout: float | None = None
        self.pending = bytearray()
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        [request] = P.FrameDecoder().feed(data)
        template = self.rng.choice(self.corpus)
        if self.rng.random() < 0.5:  # aimed at this request, so it gets past the seq check
            template = P.Frame(request.type | P.RESPONSE_FLAG, request.seq, template.payload)
        self.pending += mutate(self.rng, template) if self.rng.random() < 0.9 else b""
        return len(data)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self.pending[:size])
        del self.pending[:size]
        return out

    def reset_input_buffer(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        pass


def test_serial_link_survives_mutated_responses() -> None:
    """Whatever comes back, every SerialLink command ends in a result, LinkError or DeviceError
    after a bounded number of requests: no other exception, no endless loop."""
    rng = random.Random(7)
    corpus = response_corpus()
    now = [0.0]

    def clock() -> float:
        now[0] += 0.01
        return now[0]

    for i in range(3000):
        port = _OneShotPort(rng, corpus)
        link = SerialLink(port, timeout=0.05, retries=2, clock=clock)
        link.last_run = 0
        link.run_timeout = 0.5
        commands = [link.ping, link.describe, link.status, link.run, link.reset_state,
                    partial(link.load_input, bytes(300)), partial(link.read_output, 300)]
        try:
            commands[i % 7]()
        except (LinkError, DeviceError):
            pass
        assert port.writes <= 40
