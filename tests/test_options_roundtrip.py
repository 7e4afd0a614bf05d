"""Custom options round trip: flexbuffer maps written in Python (flatbuffers.flexbuffers, fusegen's
own writer and the TFLite converter) decode to the same values with the C reader
tflm_kernels/options/fg_flexbuffer.c, and no corrupted buffer makes it misbehave.

The reader is compiled with strict warnings into a shared library for ctypes (tests/cbuild.py),
and here into a driver executable under AddressSanitizer and UndefinedBehaviorSanitizer for the
corrupted buffers, so that a bad read aborts a child process instead of this one. A bounded
libFuzzer run follows when clang is installed. tests/cpp/fg_flexbuffer_test.cc covers the same
reader from C++ without Python.
"""

from __future__ import annotations

import array
import ctypes
import enum
import math
import os
import random
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cbuild import build_shared_library
from flatbuffers import flexbuffers

REPO = Path(__file__).resolve().parents[1]
OPTIONS = REPO / "fusegen" / "tflm_kernels" / "options"
READER_SOURCES = [OPTIONS / "fg_flexbuffer.c"]
PROBE_SOURCES = [OPTIONS / "fuzz" / "fg_flexbuffer_probe.c"]
C_FLAGS = [
    "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wshadow",
    "-Wdouble-promotion", "-Wfloat-conversion", "-Wstrict-prototypes", "-Wmissing-prototypes",
    f"-I{REPO / 'fusegen'}",
]  # fmt: skip
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}
CAPACITY = 8  # kFgProbeCapacity in fg_flexbuffer_probe.h, and the ctypes vectors' capacity.
INT64_MAX = 2**63 - 1


class Status(enum.IntEnum):
    """FgFlexStatus; test_status_strings checks it against the C enum."""

    OK = 0
    MALFORMED = 1
    MISSING = 2
    WRONG_TYPE = 3


# --- Building the C reader ---------------------------------------------------------------------


def compile_c(out: Path, sources: list[Path], *flags: str, compiler: str = "gcc") -> Path:
    cmd = [compiler, *C_FLAGS, *flags, *map(str, sources), "-o", str(out)]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}\n{result.stderr}")
    return out


class Reader:
    """ctypes view of fg_flexbuffer.h: each getter returns (status, value or None)."""

    def __init__(self, library: Path) -> None:
        self._lib = ctypes.CDLL(str(library))
        scalars = {"int": ctypes.c_int64, "bool": ctypes.c_int, "float": ctypes.c_double}
        for name, c_type in scalars.items():
            fn = getattr(self._lib, f"fg_flex_get_{name}")
            fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                           ctypes.POINTER(c_type)]  # fmt: skip
            fn.restype = ctypes.c_int
        for name, c_type in {"int": ctypes.c_int64, "float": ctypes.c_double}.items():
            fn = getattr(self._lib, f"fg_flex_get_{name}_vector")
            fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                           ctypes.POINTER(c_type), ctypes.c_size_t,
                           ctypes.POINTER(ctypes.c_size_t)]  # fmt: skip
            fn.restype = ctypes.c_int
        self._lib.fg_flex_status_string.argtypes = [ctypes.c_int]
        self._lib.fg_flex_status_string.restype = ctypes.c_char_p
        self._scalars = scalars

    def get(self, getter: str, buffer: bytes | None, key: str) -> tuple[Status, object]:
        out = self._scalars[getter]()
        fn = getattr(self._lib, f"fg_flex_get_{getter}")
        status = Status(fn(buffer, len(buffer or b""), key.encode(), ctypes.byref(out)))
        value = out.value if status is Status.OK else None
        return status, (bool(value) if getter == "bool" and value is not None else value)

    def get_vector(
        self, getter: str, buffer: bytes, key: str, capacity: int = CAPACITY
    ) -> tuple[Status, int | None, list]:
        c_type = ctypes.c_int64 if getter == "int" else ctypes.c_double
        values = (c_type * max(capacity, 1))()
        count = ctypes.c_size_t(0)
        fn = getattr(self._lib, f"fg_flex_get_{getter}_vector")
        status = Status(
            fn(buffer, len(buffer), key.encode(), values, capacity, ctypes.byref(count))
        )
        if status is not Status.OK:
            return status, None, []
        return status, count.value, list(values[: min(count.value, capacity)])

    def status_string(self, status: int) -> str:
        return self._lib.fg_flex_status_string(status).decode()


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fg_flexbuffer")


@pytest.fixture(scope="session")
def reader() -> Reader:
    # cbuild adds -std=c99 -O2 -Wall -Wextra -Werror -Wdouble-promotion -Wfloat-conversion.
    extra = ["-pedantic", "-Wconversion", "-Wshadow", "-Wstrict-prototypes", "-Wmissing-prototypes"]
    return Reader(build_shared_library(READER_SOURCES, extra_flags=extra, with_runtime=False))


@pytest.fixture(scope="session")
def sanitized_driver(build_dir: Path) -> Path:
    sources = READER_SOURCES + PROBE_SOURCES + [OPTIONS / "fuzz" / "fg_flexbuffer_driver.c"]
    return compile_c(build_dir / "fg_flexbuffer_driver", sources, "-O1", "-g", *SANITIZE)


# --- Writing test buffers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One option as written with flexbuffers.Builder: kind, byte width (0: smallest), indirect."""

    key: str
    kind: str  # "int", "uint", "bool" or "float"
    value: int | float | bool
    width: int = 0
    indirect: bool = False


def write_map(entries: list[Entry], min_width: flexbuffers.BitWidth) -> bytes:
    fbb = flexbuffers.Builder(force_min_bit_width=min_width)
    with fbb.Map():
        for e in entries:
            if e.kind == "bool":
                fbb.Bool(e.key, e.value)
                continue
            method = {"int": "Int", "uint": "UInt", "float": "Float"}[e.kind]
            getattr(fbb, ("Indirect" if e.indirect else "") + method)(e.key, e.value, e.width)
    return bytes(fbb.Finish())


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def expected(e: Entry, getter: str) -> tuple[Status, object]:
    """What fg_flexbuffer.h promises for a stored entry and a getter."""
    v = e.value
    if e.kind == "float":
        stored = f32(v) if e.width == 4 else v
        return (Status.OK, stored) if getter == "float" else (Status.WRONG_TYPE, None)
    if e.kind == "bool":
        ok = {"int": int(v), "bool": bool(v)}
        return (Status.OK, ok[getter]) if getter in ok else (Status.WRONG_TYPE, None)
    if getter == "int":
        return (Status.OK, v) if v <= INT64_MAX else (Status.WRONG_TYPE, None)
    if getter == "float":
        return Status.OK, float(v)
    bool_ints = (0, 1, -1) if e.kind == "int" else (0, 1)
    return (Status.OK, bool(v)) if v in bool_ints else (Status.WRONG_TYPE, None)


# Every kind at every byte width, inline and indirect, at the edges of each width's range.
WIDE_ENTRIES = [
    Entry("alpha", "float", 0.5),
    Entry("b_false", "bool", False),
    Entry("b_true", "bool", True),
    Entry("f32", "float", -1.25, 4),
    Entry("f32_indirect", "float", 0.1, 4, indirect=True),
    Entry("f64", "float", 0.1, 8),
    Entry("f64_indirect", "float", -1e300, 8, indirect=True),
    Entry("i16_min", "int", -(2**15), 2),
    Entry("i32_max", "int", 2**31 - 1, 4),
    Entry("i32_min_indirect", "int", -(2**31), 4, indirect=True),
    Entry("i64_big", "int", 5_000_000_000),
    Entry("i64_max", "int", INT64_MAX, 8),
    Entry("i64_min_indirect", "int", -(2**63), 8, indirect=True),
    Entry("i8_min", "int", -128, 1),
    Entry("i8_minus_one", "int", -1, 1),
    Entry("i8_one_indirect", "int", 1, 1, indirect=True),
    Entry("u16_max", "uint", 2**16 - 1, 2),
    Entry("u32_big_indirect", "uint", 2**32 - 1, 4, indirect=True),
    Entry("u64_max", "uint", 2**64 - 1, 8),
    Entry("u64_over_int64_indirect", "uint", 2**63, 8, indirect=True),
    Entry("u8_one", "uint", 1, 1),
    Entry("units", "int", 7),
    Entry("zero", "int", 0),
]
# Keys sharing prefixes, including one that is a prefix of all others.
PREFIX_ENTRIES = [Entry(k, "int", i) for i, k in enumerate(
    ["u", "un", "unit", "units", "units_2", "unitsx", "unitt", "v", "units_1", "units_10"])]  # fmt: skip
# More than 255 keys, so the map's size field (and every slot) needs 2 bytes.
MANY_ENTRIES = [Entry(f"option_{i:03d}", "int", i * 1_000_003 - 150_000_000) for i in range(300)]

BIT_WIDTHS = list(flexbuffers.BitWidth)
ENTRY_SETS = {"wide": WIDE_ENTRIES, "prefix": PREFIX_ENTRIES, "many": MANY_ENTRIES}


def entry_cases() -> Iterator:
    for set_name, entries in ENTRY_SETS.items():
        for width in BIT_WIDTHS:
            yield pytest.param(entries, width, id=f"{set_name}-min{8 << width}bit")


# --- Round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize(("entries", "min_width"), list(entry_cases()))
def test_builder_roundtrip(reader: Reader, entries: list[Entry], min_width: int) -> None:
    buffer = write_map(entries, min_width)
    reference = flexbuffers.Loads(buffer)  # Python's own reader agrees with what was written.
    for e in entries:
        assert reference[e.key] == (f32(e.value) if e.kind == "float" and e.width == 4 else e.value)
        for getter in ("int", "bool", "float"):
            assert reader.get(getter, buffer, e.key) == expected(e, getter), (e, getter)


def test_dumps_roundtrip(reader: Reader) -> None:
    options = {"units": 7, "alpha": 0.5, "return_sequences": True, "go_backwards": False,
               "neg": -3, "big": 5_000_000_000, "third": 0.1, "beta": -2.75}  # fmt: skip
    buffer = bytes(flexbuffers.Dumps(options))
    for key, value in options.items():
        getter = {bool: "bool", int: "int", float: "float"}[type(value)]
        assert reader.get(getter, buffer, key) == (Status.OK, value), key


def test_fusegen_writer_roundtrip(reader: Reader) -> None:
    """fusegen.converter.tflite_file.encode_options writes what the converter would."""
    from fusegen.converter.tflite_file import encode_options

    options = {"return_sequences": True, "stateful": False, "units": 7, "alpha": 0.5,
               "clip": 2.5, "big": -(2**40)}  # fmt: skip
    buffer = encode_options(options)
    for key, value in options.items():
        if isinstance(value, bool):
            assert reader.get("bool", buffer, key) == (Status.OK, value), key
        elif isinstance(value, int):
            assert reader.get("int", buffer, key) == (Status.OK, value), key
        else:
            assert reader.get("float", buffer, key) == (Status.OK, value), key


def write_vectors() -> bytes:
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.VectorFromElements("untyped_ints", [1, -2, 300, 5_000_000_000])
        fbb.VectorFromElements("untyped_mixed", [1, 2.5, True])
        fbb.VectorFromElements("untyped_empty", [])
        fbb.TypedVectorFromElements("typed_f32", array.array("f", [0.5, -1.25, 3.0]))
        fbb.TypedVectorFromElements("typed_f64", array.array("d", [0.1, 1e300]))
        fbb.TypedVectorFromElements("typed_i16", array.array("h", [-32768, 0, 32767]))
        fbb.TypedVectorFromElements("typed_u8", array.array("B", [0, 255]))
        fbb.TypedVectorFromElements("typed_bool", [True, False, True])
        fbb.TypedVectorFromElements("long", array.array("b", range(-10, 10)))
        fbb.FixedTypedVectorFromElements("fixed_i2", [-1, 2])
        fbb.FixedTypedVectorFromElements("fixed_f3", [0.25, 0.5, 0.75])
        fbb.FixedTypedVectorFromElements(
            "fixed_u4", [1, 2, 3, 2**40], element_type=flexbuffers.Type.UINT
        )
        fbb.String("name", "not a number")
        fbb.Int("scalar", 3)
        with fbb.Map("nested"):
            fbb.Int("inner", 1)
    return bytes(fbb.Finish())


VECTOR_CASES = {
    # key: (int vector result, float vector result); None means WRONG_TYPE.
    "untyped_ints": ([1, -2, 300, 5_000_000_000], [1.0, -2.0, 300.0, 5e9]),
    "untyped_mixed": (None, None),  # The float 2.5 is not an int, the bool True not a float.
    "untyped_empty": ([], []),
    "typed_f32": (None, [0.5, -1.25, 3.0]),
    "typed_f64": (None, [0.1, 1e300]),
    "typed_i16": ([-32768, 0, 32767], [-32768.0, 0.0, 32767.0]),
    "typed_u8": ([0, 255], [0.0, 255.0]),
    "typed_bool": ([1, 0, 1], None),
    "long": (list(range(-10, 10)), [float(i) for i in range(-10, 10)]),
    "fixed_i2": ([-1, 2], [-1.0, 2.0]),
    "fixed_f3": (None, [0.25, 0.5, 0.75]),
    "fixed_u4": ([1, 2, 3, 2**40], [1.0, 2.0, 3.0, 2.0**40]),
    "name": (None, None),
    "scalar": (None, None),
    "nested": (None, None),
}


@pytest.mark.parametrize("key", list(VECTOR_CASES))
def test_vector_roundtrip(reader: Reader, key: str) -> None:
    buffer = write_vectors()
    for getter, want in zip(("int", "float"), VECTOR_CASES[key]):
        status, count, values = reader.get_vector(getter, buffer, key)
        if want is None:
            assert (status, count) == (Status.WRONG_TYPE, None), getter
        else:
            assert (status, count) == (Status.OK, len(want)), getter
            assert values == want[:CAPACITY], getter


def test_vector_capacity_bounds_the_copy(reader: Reader) -> None:
    buffer = write_vectors()
    assert reader.get_vector("int", buffer, "long", capacity=3) == (Status.OK, 20, [-10, -9, -8])
    assert reader.get_vector("int", buffer, "long", capacity=0) == (Status.OK, 20, [])
    assert reader.get_vector("int", buffer, "missing")[0] is Status.MISSING


def test_missing_and_wrong_type(reader: Reader) -> None:
    buffer = write_vectors()
    for getter in ("int", "bool", "float"):
        assert reader.get(getter, buffer, "absent") == (Status.MISSING, None)
        assert reader.get(getter, buffer, "scala") == (Status.MISSING, None)  # A prefix.
        assert reader.get(getter, buffer, "scalarx") == (Status.MISSING, None)  # An extension.
        assert reader.get(getter, buffer, "") == (Status.MISSING, None)
        for key in ("name", "nested", "typed_i16", "fixed_i2"):
            assert reader.get(getter, buffer, key) == (Status.WRONG_TYPE, None), (getter, key)
    assert reader.get("bool", buffer, "scalar") == (Status.WRONG_TYPE, None)  # 3 is not 0/1.


def test_status_strings(reader: Reader) -> None:
    names = {Status.OK: "ok", Status.MALFORMED: "malformed", Status.MISSING: "missing",
             Status.WRONG_TYPE: "wrong type"}  # fmt: skip
    assert {s: reader.status_string(s) for s in Status} == names
    assert reader.status_string(17) == "unknown status"


# --- Malformed buffers, made by hand -----------------------------------------------------------


@dataclass(frozen=True)
class MapLayout:
    """Offsets of a root map's parts, decoded independently of the C reader."""

    data: int  # first value slot
    width: int
    keys: int  # first key offset slot
    keys_width: int

    @classmethod
    def of(cls, buf: bytes) -> MapLayout:
        root_width = buf[-1]
        root = len(buf) - 2 - root_width
        data = root - int.from_bytes(buf[root : root + root_width], "little")
        width = 1 << (buf[-2] & 3)
        field = data - 3 * width
        keys = field - int.from_bytes(buf[field : field + width], "little")
        keys_width = int.from_bytes(buf[data - 2 * width : data - width], "little")
        return cls(data, width, keys, keys_width)

    def key_slot(self, i: int) -> int:
        return self.keys + i * self.keys_width


def patched(buf: bytes, pos: int, value: int, width: int = 1) -> bytes:
    return buf[:pos] + value.to_bytes(width, "little") + buf[pos + width :]


AB = bytes(flexbuffers.Dumps({"a": 1, "b": 2}))
AB_LAYOUT = MapLayout.of(AB)


def swapped_keys() -> bytes:
    first, second = AB_LAYOUT.key_slot(0), AB_LAYOUT.key_slot(1)
    a = first - AB[first]  # Absolute key positions; offsets are relative to their slot.
    b = second - AB[second]
    return patched(patched(AB, first, first - b), second, second - a)


def duplicate_keys() -> bytes:
    first, second = AB_LAYOUT.key_slot(0), AB_LAYOUT.key_slot(1)
    return patched(AB, second, second - (first - AB[first]))


MALFORMED: dict[str, Callable[[], bytes | None]] = {
    "null": lambda: None,
    "empty": lambda: b"",
    "two_bytes": lambda: b"\x24\x01",
    "root_not_a_map_int": lambda: bytes(flexbuffers.Dumps(5)),
    "root_not_a_map_vector": lambda: bytes(flexbuffers.Dumps([1, 2])),
    "root_width_3": lambda: AB[:-1] + b"\x03",
    "root_width_past_start": lambda: b"\x00\x24\x08",
    "root_offset_past_start": lambda: patched(AB, len(AB) - 3, 0xFF),
    "map_size_huge": lambda: patched(AB, AB_LAYOUT.data - 1, 0xFF),
    "keys_width_3": lambda: patched(AB, AB_LAYOUT.data - 2, 3),
    "keys_offset_past_start": lambda: patched(AB, AB_LAYOUT.data - 3, 0xFF),
    "keys_size_mismatch": lambda: patched(AB, AB_LAYOUT.keys - 1, 1),
    "key_offset_past_start": lambda: patched(AB, AB_LAYOUT.key_slot(1), 0xFF),
    "key_unterminated": lambda: patched(AB, AB.index(b"b\x00") + 1, ord("c")),
    "key_too_long": lambda: bytes(flexbuffers.Dumps({"k" * 256: 1})),
    "keys_unsorted": swapped_keys,
    "keys_duplicated": duplicate_keys,
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed(reader: Reader, make: Callable[[], bytes | None]) -> None:
    buffer = make()
    for getter in ("int", "bool", "float"):
        for key in ("a", "b", "k" * 256, "zz"):
            assert reader.get(getter, buffer, key) == (Status.MALFORMED, None), (getter, key)
    if buffer is not None:
        assert reader.get_vector("int", buffer, "a")[0] is Status.MALFORMED


def test_malformed_under_sanitizers(sanitized_driver: Path, tmp_path: Path) -> None:
    """The same buffers in exactly-sized heap blocks: ctypes cannot see a read one byte past the
    end, since a Python bytes object always carries a hidden trailing NUL."""
    buffers = [b for make in MALFORMED.values() if (b := make()) is not None]
    results = run_driver(sanitized_driver, buffers, ["a", "b", "zz"], tmp_path)
    assert {status for status, _ in results.values()} == {Status.MALFORMED}


def test_longest_key_is_accepted(reader: Reader) -> None:
    buffer = bytes(flexbuffers.Dumps({"k" * 255: 9, "a": 1}))
    assert reader.get("int", buffer, "k" * 255) == (Status.OK, 9)
    assert reader.get("int", buffer, "k" * 256) == (Status.MISSING, None)


def test_malformed_value_spoils_only_its_key(reader: Reader) -> None:
    fbb = flexbuffers.Builder()
    with fbb.Map():
        fbb.IndirectInt("a", 5, 1)
        fbb.Int("b", 6)
    buffer = bytes(fbb.Finish())
    layout = MapLayout.of(buffer)
    broken = patched(buffer, layout.data, 0xFF)  # a's offset now points before the buffer.
    assert reader.get("int", broken, "a") == (Status.MALFORMED, None)
    assert reader.get("int", broken, "b") == (Status.OK, 6)
    # A float type on a 1-byte slot: flexbuffers has no 1-byte floats.
    types = layout.data + 2 * layout.width
    as_float = patched(buffer, types + 1, flexbuffers.Type.Pack(flexbuffers.Type.FLOAT, 0))
    assert reader.get("float", as_float, "b") == (Status.MALFORMED, None)


# --- Corrupted buffers under the sanitizers ----------------------------------------------------

PROBE_KEYS = ["units", "alpha", "return_sequences", "b_true", "i64_min_indirect", "u64_max",
              "f64_indirect", "typed_f32", "untyped_ints", "fixed_u4", "option_150", "units_2"]  # fmt: skip
GETTERS = ("int", "bool", "float", "int_vector", "float_vector")

# Custom options of the CUSTOM op that TF 2.21's converter makes from the composite of
# test_converter_options (units=7, alpha=0.5, return_sequences=b:true), recorded so that the
# corruption tests do not need TensorFlow.
CONVERTER_OPTIONS = bytes.fromhex(
    "616c7068610072657475726e5f73657175656e63657300756e69747300031e19090000000600000001000000"
    "030000000000003fffffffff070000000e06060f2601"
)


def base_buffers() -> list[bytes]:
    return [
        CONVERTER_OPTIONS,
        write_map(WIDE_ENTRIES, flexbuffers.BitWidth.W8),
        write_map(PREFIX_ENTRIES, flexbuffers.BitWidth.W16),
        write_map(MANY_ENTRIES[:40], flexbuffers.BitWidth.W8),
        write_vectors(),
        bytes(flexbuffers.Dumps({"units": 7, "alpha": 0.5, "return_sequences": True})),
    ]


def corrupted(bases: list[bytes], flips: int, seed: int) -> list[bytes]:
    """Every prefix and suffix truncation of each base, then `flips` seeded random edits."""
    out = [b[:n] for b in bases for n in range(len(b))]
    out += [b[n:] for b in bases for n in range(1, len(b))]
    rng = random.Random(seed)
    for _ in range(flips):
        b = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(b))
            b[pos] = rng.randrange(256) if rng.random() < 0.5 else b[pos] ^ (1 << rng.randrange(8))
        out.append(bytes(b))
    return out


def run_driver(driver: Path, buffers: list[bytes], keys: list[str], tmp: Path) -> dict:
    """{(record, key index, getter): (Status, values)} from the sanitized driver."""
    records = tmp / "records.bin"
    records.write_bytes(b"".join(struct.pack("<I", len(b)) + b for b in buffers))
    env = {**os.environ, **SANITIZER_ENV}
    result = subprocess.run(
        [driver, records, *keys], check=False, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = {}
    for line in result.stdout.splitlines():
        record, key, getter, status, *values = line.split()
        parse = float.fromhex if getter.startswith("float") else int
        if getter.endswith("vector") and values:
            values = [int(values[0]), *map(parse, values[1:])]
        else:
            values = [parse(v) for v in values]
        out[int(record), int(key), getter] = (Status(int(status)), values)
    assert len(out) == len(buffers) * len(keys) * len(GETTERS)
    return out


def python_reference(buffer: bytes, key: str, getter: str) -> object:
    """Python's flexbuffers reader's value, or the exception it raises."""
    try:
        ref = flexbuffers.GetRoot(buffer).AsMap[key]
        if getter == "int":
            return ref.AsInt
        if getter == "float":
            return ref.AsFloat
        return ref.AsBool
    except Exception as e:  # noqa: BLE001 - any failure of the Python reader is informative.
        return e


def same_value(a: float, b: float) -> bool:
    """Equality, with NaN equal to NaN (the driver's "%a" output does not keep the payload)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_corrupted_buffers_under_sanitizers(sanitized_driver: Path, tmp_path: Path) -> None:
    bases = base_buffers()
    buffers = bases + corrupted(bases, flips=4000, seed=20240607)
    results = run_driver(sanitized_driver, buffers, PROBE_KEYS, tmp_path)

    # The uncorrupted bases decode as the ctypes build of the same reader promises.
    wide = {e.key: e for e in WIDE_ENTRIES}
    for k, key in enumerate(PROBE_KEYS):
        if key in wide:
            for getter in ("int", "bool", "float"):
                status, value = expected(wide[key], getter)
                assert results[1, k, getter] == (status, [] if value is None else [value])
    assert results[0, 0, "int"] == (Status.OK, [7])
    assert results[0, 2, "bool"] == (Status.OK, [1])

    # Wherever the C reader answers, Python's reader (which trusts the buffer) agrees with it:
    # same value when C says Ok, a KeyError when C says Missing.
    agreed = 0
    for (r, k, getter), (status, values) in results.items():
        if getter.endswith("vector") or status not in (Status.OK, Status.MISSING):
            continue
        theirs = python_reference(buffers[r], PROBE_KEYS[k], getter)
        if status is Status.MISSING:
            assert isinstance(theirs, KeyError), (r, k, getter, theirs)
        elif not isinstance(theirs, Exception):
            assert same_value(values[0], theirs), (r, k, getter, values, theirs)
            agreed += 1
    assert agreed > 1000
    statuses = {s for s, _ in results.values()}
    assert statuses == set(Status)  # The corpus reaches every outcome.


# --- Options written by the TFLite converter ---------------------------------------------------

IMPLEMENTS = (
    'name: "FUSEGEN_TEST" attr { key: "tfl_fusable_op" value { b: true } } '
    'attr { key: "return_sequences" value { b: true } } attr { key: "units" value { i: 7 } } '
    'attr { key: "alpha" value { f: 0.5 } }'
)


def converted_custom_options(implements: str) -> tuple[str, bytes]:
    """(custom op name, custom options) of the one CUSTOM op in a converted composite."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = pytest.importorskip("tensorflow")
    from tensorflow.lite.python import schema_py_generated as schema

    @tf.function(experimental_implements=implements)
    def fused(x, w):
        return x * w

    class Model(tf.Module):
        def __init__(self) -> None:
            # A variable, not a constant: constant arguments let the converter fold the call.
            self.w = tf.Variable([1.0, 2.0, 3.0, 4.0])

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, x):
            return fused(x, self.w)

    model = Model()
    # The trackable object selects the SavedModel import path, which keeps the composite.
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [model.__call__.get_concrete_function()], model
    )
    flat = schema.ModelT.InitFromPackedBuf(converter.convert(), 0)
    custom = [
        (flat.operatorCodes[op.opcodeIndex].customCode.decode(), bytes(op.customOptions))
        for graph in flat.subgraphs
        for op in graph.operators
        if flat.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CUSTOM
    ]
    assert len(custom) == 1, custom
    return custom[0]


def stored_types(buffer: bytes) -> dict[str, tuple[str, int]]:
    """{key: (flexbuffer type name, stored byte width)} of a root map's values."""
    layout = MapLayout.of(buffer)
    root = flexbuffers.GetRoot(buffer).AsMap
    types = layout.data + len(root) * layout.width
    names = [k.AsKey for k in root.Keys]
    return {
        name: (flexbuffers.Type(buffer[types + i] >> 2).name, layout.width)
        for i, name in enumerate(names)
    }


def test_converter_options(reader: Reader) -> None:
    name, options = converted_custom_options(IMPLEMENTS)
    assert name == "FUSEGEN_TEST"
    # How TF 2.21 encodes the attrs (CreateTflFusableOpCustomOptions): `b:` as an INT of -1/0
    # (an MLIR BoolAttr is an i1 IntegerAttr, sign-extended by getInt()), `i:` as the smallest
    # INT, `f:` as a 32-bit FLOAT; the map's slots take the widest value's width.
    assert stored_types(options) == {
        "alpha": ("FLOAT", 4), "return_sequences": ("INT", 4), "units": ("INT", 4)}  # fmt: skip
    assert flexbuffers.Loads(options)["return_sequences"] == -1
    assert reader.get("int", options, "units") == (Status.OK, 7)
    assert reader.get("float", options, "alpha") == (Status.OK, 0.5)
    assert reader.get("bool", options, "return_sequences") == (Status.OK, True)
    assert reader.get("int", options, "return_sequences") == (Status.OK, -1)
    assert reader.get("int", options, "tfl_fusable_op") == (Status.MISSING, None)
    assert options == CONVERTER_OPTIONS  # The recording the corruption tests start from.


def test_converter_options_widths(reader: Reader) -> None:
    implements = (
        'name: "FUSEGEN_TEST" attr { key: "tfl_fusable_op" value { b: true } } '
        'attr { key: "big" value { i: 5000000000 } } attr { key: "neg" value { i: -3 } } '
        'attr { key: "off" value { b: false } } attr { key: "third" value { f: 0.1 } }'
    )
    _, options = converted_custom_options(implements)
    # One 8-byte value widens every slot: the float32 0.1 is then stored as a double.
    assert set(stored_types(options).values()) == {("INT", 8), ("FLOAT", 8)}
    assert reader.get("int", options, "big") == (Status.OK, 5_000_000_000)
    assert reader.get("int", options, "neg") == (Status.OK, -3)
    assert reader.get("bool", options, "off") == (Status.OK, False)
    assert reader.get("float", options, "third") == (Status.OK, f32(0.1))


# --- Cross-compilation and libFuzzer -----------------------------------------------------------


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
def test_compiles_for_cortex_m4(build_dir: Path) -> None:
    flags = ["-c", "-O2", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
    out = build_dir / "fg_flexbuffer_m4.o"
    compile_c(out, READER_SOURCES, *flags, compiler="arm-none-eabi-gcc")
    # No allocator or stdio: the only undefined symbols are memcpy/memcmp (and soft-double helpers).
    nm = subprocess.run(["arm-none-eabi-nm", "-u", out], capture_output=True, text=True, check=True)
    undefined = {line.split()[-1] for line in nm.stdout.splitlines()}
    assert undefined <= {"memcpy", "memcmp"} | {s for s in undefined if s.startswith("__aeabi_")}


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang not installed (scripts/setup.sh)")
def test_libfuzzer(build_dir: Path, tmp_path: Path) -> None:
    sources = READER_SOURCES + PROBE_SOURCES + [OPTIONS / "fuzz" / "fg_flexbuffer_fuzz.c"]
    fuzzer = compile_c(build_dir / "fg_flexbuffer_fuzz", sources, "-O1", "-g",
                       "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
                       compiler="clang")  # fmt: skip
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(base_buffers()):
        (corpus / f"seed_{i}").write_bytes(seed)
    cmd = [fuzzer, "-runs=200000", "-max_total_time=15", "-max_len=2048", "-seed=1", corpus]
    env = {**os.environ, **SANITIZER_ENV}
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Done" in result.stderr
