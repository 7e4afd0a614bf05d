"""Host builds of fusegen's C for the test suite.

Two things live here: `build_cmake_tree`, which configures and builds the CMake project (the
runtime library and the GoogleTest executables that pytest-cpp runs; called by conftest.py), and
`build_shared_library`, which compiles a few C files into a shared library for ctypes:

    from cbuild import build_shared_library
    lib = ctypes.CDLL(str(build_shared_library([tmp_path / "core.c"])))

Libraries are cached under build/cbuild/ by a hash of the preprocessed sources and the flags, so a
test that regenerates identical C into a fresh tmp_path reuses the previous library. Compiler
errors raise `BuildError` with the command and the full compiler output.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO / "build"
RUNTIME_INCLUDE = REPO / "fusegen"
RUNTIME_DIR = RUNTIME_INCLUDE / "tflm_kernels" / "runtime"
# The runtime's .c files: linked into every library unless with_runtime=False.
RUNTIME_SOURCES: tuple[Path, ...] = tuple(sorted(RUNTIME_DIR.glob("*.c")))

CC = os.environ.get("CC", "gcc")
# The house warnings for C (STYLE.md, item 11). -std=c99 matches the runtime's CMake target, and
# also keeps GCC from contracting a*b+c into FMAs (ISO mode implies -ffp-contract=off).
C_FLAGS: tuple[str, ...] = (
    "-std=c99",
    "-O2",
    "-fPIC",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wdouble-promotion",
    "-Wfloat-conversion",
)


class BuildError(RuntimeError):
    """A compiler or CMake invocation failed; the message carries its full output."""


def run_checked(cmd: Sequence[str | Path], what: str) -> str:
    """Runs cmd, returns its combined output, raises BuildError with that output on failure."""
    argv = [str(c) for c in cmd]
    proc = subprocess.run(
        argv, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        raise BuildError(
            f"{what} failed (exit {proc.returncode}):\n$ {' '.join(argv)}\n{proc.stdout}"
        )
    return proc.stdout


# ---- CMake trees -------------------------------------------------------------------------------


def gtest_dir(tree: str) -> Path:
    """Where the CMake tree build/<tree> puts its GoogleTest executables and gtests.txt."""
    return BUILD_DIR / "tests-bin" / tree


def build_cmake_tree(name: str, options: dict[str, str], jobs: int = 2) -> Path:
    """Configures and builds build/<name> with its tests; returns gtest_dir(name).

    Both steps are incremental: re-configuring an unchanged tree and building an up-to-date one
    take well under a second each.
    """
    tree = BUILD_DIR / name
    bin_dir = gtest_dir(name)
    defines = {
        "CMAKE_BUILD_TYPE": "RelWithDebInfo",
        "FUSEGEN_BUILD_TESTS": "ON",
        "FUSEGEN_TEST_BIN_DIR": str(bin_dir),
        **options,
    }
    BUILD_DIR.mkdir(exist_ok=True)
    # Several pytest sessions may share one checkout; two makes in one tree corrupt each other.
    with open(BUILD_DIR / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run_checked(
            ["cmake", "-S", REPO, "-B", tree, *(f"-D{k}={v}" for k, v in defines.items())],
            f"cmake configure of {tree}",
        )
        run_checked(["cmake", "--build", tree, f"-j{jobs}"], f"cmake build of {tree}")
    return bin_dir


def built_gtests(bin_dir: Path) -> list[Path]:
    """The executables the last build of bin_dir's tree produced, from its gtests.txt manifest."""
    names = (bin_dir / "gtests.txt").read_text().split()
    return [bin_dir / n for n in names]


# ---- Shared libraries for ctypes ---------------------------------------------------------------


@functools.cache
def compiler_identity() -> str:
    return run_checked([CC, "--version"], f"{CC} --version")


def _preprocessed(source: Path, cpp_flags: Sequence[str]) -> str:
    # -P drops line markers, so the text (and the cache key) does not depend on where the file
    # lives: identical code generated into two tmp_paths hashes the same.
    return run_checked([CC, *C_FLAGS, *cpp_flags, "-E", "-P", source], f"preprocessing {source}")


def build_shared_library(
    sources: Iterable[str | Path],
    *,
    include_dirs: Iterable[str | Path] = (),
    defines: Iterable[str] = (),
    extra_flags: Iterable[str] = (),
    with_runtime: bool = True,
) -> Path:
    """Compiles C sources (plus the runtime) into build/cbuild/<hash>/lib<first stem>.so.

    The repository root is always on the include path, so sources can
    #include "tflm_kernels/runtime/fg_runtime.h". `defines` are NAME or NAME=VALUE. Only .c files
    are accepted: C++ would need other flags.
    """
    user_srcs = [Path(s).resolve() for s in sources]
    srcs = user_srcs
    if with_runtime:
        srcs = [*RUNTIME_SOURCES, *(s for s in user_srcs if s not in RUNTIME_SOURCES)]
    if not srcs:
        raise ValueError("build_shared_library: no sources")
    if bad := [s for s in srcs if s.suffix != ".c"]:
        raise ValueError(f"build_shared_library compiles C only, got {bad}")
    cpp_flags = [
        f"-I{RUNTIME_INCLUDE}",
        *(f"-I{Path(d).resolve()}" for d in include_dirs),
        *(f"-D{d}" for d in defines),
    ]
    flags = [*cpp_flags, *extra_flags]

    key = hashlib.sha256()
    for part in (compiler_identity(), *C_FLAGS, *flags):
        key.update(part.encode() + b"\0")
    for src in srcs:
        key.update(_preprocessed(src, [*cpp_flags, *extra_flags]).encode() + b"\0")
    out_dir = BUILD_DIR / "cbuild" / key.hexdigest()[:16]
    lib = out_dir / f"lib{(user_srcs or srcs)[0].stem}.so"
    if lib.exists():
        return lib

    out_dir.mkdir(parents=True, exist_ok=True)
    # Link to a temporary name and rename: concurrent test processes (xdist) may race to build
    # the same library, and a reader must never dlopen a half-written file.
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".so.tmp")
    os.close(fd)
    try:
        run_checked(
            [CC, *C_FLAGS, *flags, "-shared", "-o", tmp, *srcs, "-lm"], f"compiling {lib.name}"
        )
        os.replace(tmp, lib)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return lib
