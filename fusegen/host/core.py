"""Compile a generated C core on the host and run it through ctypes (verify, tests, bench).

The shared library is built with the same strict warnings as the device build and cached by
content hash, so a test session compiles each distinct kernel once.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from fusegen.abi import MAX_CHUNK, PLAN_FIELDS
from fusegen.codegen import RUNTIME_SOURCES, kernel_files
from fusegen.codegen import core_context
from fusegen.codegen.core import CoreContext
from fusegen.ir.bound import BoundGraph
from fusegen.abi import fused_params
from fusegen import paths
from fusegen.paths import RUNTIME, RUNTIME_INCLUDE

C_FLAGS = ("-std=c99", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
           "-Wdouble-promotion", "-Wfloat-conversion", "-Wshadow")
CACHE = paths.CACHE / "host-cores"
# FUSEGEN_HOST_SANITIZE=address (or address,undefined) builds every host core with those
# sanitizers, for a process started with the sanitizer runtime preloaded (the mutation test,
# tests/test_validate_mutation.py): out-of-bounds reads by a core fed a bad file are reported.
SANITIZE = os.environ.get("FUSEGEN_HOST_SANITIZE", "")


def sanitizer_flags() -> tuple[str, ...]:
    if not SANITIZE:
        return ()
    return (f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all",
            "-g")


class CompileError(RuntimeError):
    pass


def compile_core(files: dict[str, str], stem: str, extra_flags: tuple[str, ...] = (),
                 runtime_sources: tuple[str, ...] = RUNTIME_SOURCES) -> Path:
    """Builds `<stem>_core.c` plus the runtime into a shared library; returns its path."""
    extra_flags = (*extra_flags, *sanitizer_flags())
    sources = [files[f"{stem}_core.h"], files[f"{stem}_core.c"]]
    runtime = [(RUNTIME / rel).read_text() for rel in runtime_sources if "runtime/" in rel]
    key = hashlib.sha256("\0".join(sources + runtime + list(extra_flags)).encode()).hexdigest()
    lib = CACHE / f"{stem}_{key[:16]}.so"
    if lib.exists():
        return lib
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        for name in (f"{stem}_core.h", f"{stem}_core.c"):
            Path(tmp, name).write_text(files[name])
        c_files = [str(Path(tmp, f"{stem}_core.c"))]
        c_files += [str(RUNTIME / rel) for rel in runtime_sources
                    if rel.endswith(".c") and "runtime/" in rel]
        out = Path(tmp, "core.so")
        cmd = ["gcc", *C_FLAGS, *extra_flags, f"-I{tmp}", f"-I{RUNTIME_INCLUDE}", *c_files, "-lm",
               "-o", str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(f"compiling {stem}_core.c failed:\n{result.stderr}")
        os.replace(out, lib)
    return lib


def _plan_struct(ctx: CoreContext) -> type[ctypes.Structure]:
    """`<Prefix>Plan` of the generated core.h, from the same tables (abi.PLAN_FIELDS, then the
    dtypes' fields)."""
    i32 = ctypes.c_int32
    lengths = ctx.plan_lengths()
    fields = []
    for f in PLAN_FIELDS:
        t = (i32 * 2) if f.pairs else i32
        fields.append((f.name, t * lengths[f.count] if f.count else t))
    fields += [(f.name, i32 * f.count if f.count else i32) for f in ctx.plan_fields]
    return type(f"{ctx.prefix}Plan", (ctypes.Structure,), {"_fields_": fields})


class HostCore:
    """One generated op, compiled for the host."""

    def __init__(self, bound: BoundGraph, op_name: str,
                 params: tuple[np.ndarray, ...] | None = None, extra_flags: tuple[str, ...] = ()):
        self.ctx = core_context(bound.graph, op_name)
        self.files = kernel_files(bound.graph, op_name)
        self.lib = ctypes.CDLL(str(compile_core(self.files, self.ctx.stem, extra_flags)))
        self.bound = bound
        # The op's weight inputs as stored in the .tflite ([N, K] matrices); default: the bound's.
        self.params = fused_params(bound) if params is None else tuple(
            np.ascontiguousarray(p, dtype=np.float32) for p in params)
        self._plan_type = _plan_struct(self.ctx)

    def plan(self, timesteps: int, max_chunk: int = MAX_CHUNK) -> ctypes.Structure:
        plan = self._plan_type()
        fn = getattr(self.lib, f"{self.ctx.stem}_plan")
        fn.restype = ctypes.c_char_p
        b = self.bound
        error = fn(b.input_size, b.units, timesteps, max_chunk, ctypes.byref(plan))
        if error is not None:
            raise ValueError(error.decode())
        return plan

    def run(self, x: np.ndarray, return_sequences: bool = False, go_backwards: bool = False,
            states: np.ndarray | None = None, max_chunk: int = MAX_CHUNK,
            mask: StepMask | None = None) -> tuple[np.ndarray, np.ndarray]:
        """x [T, I] float32 -> (y, final states [state_total]); `mask` marks padded steps."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        plan = self.plan(x.shape[0], max_chunk)
        state = np.zeros(plan.state_total, np.float32) if states is None else \
            np.array(states, np.float32).copy()
        y = np.zeros((x.shape[0], plan.output_width) if return_sequences else plan.output_width,
                     np.float32)
        scratch = np.zeros(plan.scratch_elems, np.float32)
        pointers = (ctypes.c_void_p * max(len(self.params), 1))(*[p.ctypes.data for p in self.params])
        fn = getattr(self.lib, f"{self.ctx.stem}_eval_f32")
        fn(ctypes.byref(plan), int(return_sequences), int(go_backwards), _ptr(x), pointers,
           _ptr(state), _ptr(y), _ptr(scratch), steps_arg(mask, x.shape[0]))
        return y, state


@dataclass(frozen=True)
class StepMask:
    """Which timesteps of x an op runs (FgSteps in fg_runtime.h): `valid` [T] or [T, K] (a step
    is valid if any of its K values is true) and/or `length` (steps from it on are padding);
    a masked step outputs zeros with `zero_output`, else the previous step's output."""

    valid: np.ndarray | None = None
    length: int | None = None
    zero_output: bool = False

    def step_valid(self, timesteps: int) -> np.ndarray:
        """bool [T]: the steps that run."""
        ok = np.ones(timesteps, bool)
        if self.valid is not None:
            v = np.asarray(self.valid).reshape(timesteps, -1)
            ok &= v.any(axis=1)
        if self.length is not None:
            ok[max(int(self.length), 0):] = False
        return ok


class _FgSteps(ctypes.Structure):
    _fields_ = [("valid", ctypes.c_void_p), ("inner", ctypes.c_int32),
                ("length", ctypes.c_int32), ("zero_output", ctypes.c_int)]


def steps_arg(mask: StepMask | None, timesteps: int):
    """The eval's `const FgSteps* steps` argument (None: NULL); keeps its buffer alive."""
    if mask is None:
        return None
    valid = None
    inner = 1
    if mask.valid is not None:
        valid = np.ascontiguousarray(np.asarray(mask.valid).reshape(timesteps, -1), np.uint8)
        inner = valid.shape[1]
    length = timesteps if mask.length is None else int(mask.length)
    steps = _FgSteps(None if valid is None else valid.ctypes.data, inner, length,
                     int(mask.zero_output))
    steps._keep = valid  # the buffer lives as long as the struct
    return ctypes.byref(steps)


def _ptr(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)
