"""Bounded libFuzzer run of the device's parser and command server (firmware/fuzz/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fusegen.bench.link import protocol as P
from fusegen.bench.firmware.build import FIRMWARE_DIR
from fusegen.bench.link.host_device import HOST_SOURCES, INCLUDE_DIRS

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
    session = [
        P.Frame(P.Command.PING, 1, b"hi"),
        P.Frame(P.Command.DESCRIBE, 2),
        P.Frame(P.Command.LOAD_INPUT, 3, P.load_input_payload(0, x)),
        P.Frame(P.Command.RUN, 4),
        P.Frame(P.Command.RUN, 4),
        P.Frame(P.Command.READ_OUTPUT, 5, P.read_output_payload(0, 260)),
        P.Frame(P.Command.RESET_STATE, 6),
        P.Frame(P.Command.EXIT, 7),
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
