"""A converted .tflite, run whole by tflite::MicroInterpreter from the user's own TFLM build.

fusegen ships no TFLM: the caller names TFLM's include directories (the TFLM root,
flatbuffers/include, gemmlowp, ...) and its static library (e.g. libtensorflow-microlite.a from
`make -f tensorflow/lite/micro/tools/make/Makefile microlite`). This module renders
op_templates/tflm_runner.cc.j2 with the builtin ops the model uses, compiles it with the generated
kernels of `kernels_dir` (as `write_package` wrote them) and runs it on samples of the model's
single input, float32 or int8 as the model's input tensor is:

    outputs = run_tflm(tflite_bytes, kernels_dir, inputs, ["/tflm", "/tflm/.../flatbuffers/include"],
                       "/tflm/gen/linux_x86_64_default_gcc/lib/libtensorflow-microlite.a")

The samples go through one MicroInterpreter, one Invoke each and no Reset in between: a stateful
model's variable tensors carry over, so its N samples are N steps of one stream.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fusegen.converter.tflite_file import schema

from fusegen.codegen import KernelDirError, Registration, registration
from fusegen.codegen.render import render
from fusegen.converter import tflite_file
from fusegen.abi import OP_PREFIX

BuiltinOperator = schema.BuiltinOperator

# Host arena for the runner. Generous: the report is what the model used (arena_used_bytes).
DEFAULT_ARENA_BYTES = 1 << 20
CXX = os.environ.get("CXX", "g++")
CC = os.environ.get("CC", "gcc")
# TF_LITE_STATIC_MEMORY changes TfLiteTensor's layout: it must match the library's build (TFLM's
# Makefile and Bazel builds both define it). Generated code is held to the house warnings; TFLM's
# own headers come in through -isystem so their warnings are not ours.
CXX_FLAGS = ("-std=c++17", "-O2", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics",
             "-DTF_LITE_STATIC_MEMORY", "-Wall", "-Wextra", "-Werror")
C_FLAGS = ("-std=c99", "-O2", "-DTF_LITE_STATIC_MEMORY", "-Wall", "-Wextra", "-Werror",
           "-Wdouble-promotion", "-Wfloat-conversion")
# The tensor types the runner moves (as raw bytes) and the numpy types of their samples.
RUNNER_DTYPES = {schema.TensorType.FLOAT32: np.dtype(np.float32),
                 schema.TensorType.INT8: np.dtype(np.int8),
                 schema.TensorType.INT32: np.dtype(np.int32)}  # token ids (an int8 Embedding)
# A header every usable TFLM include path list provides, and what it is for.
REQUIRED_HEADERS = {
    "tensorflow/lite/micro/micro_interpreter.h": "the TFLM source root",
    "flatbuffers/flatbuffers.h": "flatbuffers/include (TFLM's downloads/flatbuffers/include)",
}
RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
# BuiltinOperator names whose MicroMutableOpResolver method is not the CamelCase of the name.
_METHOD_EXCEPTIONS = {
    "BATCH_MATMUL": "BatchMatMul",
    "CUMSUM": "CumSum",
    "PADV2": "PadV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM",
}


@dataclass(frozen=True)
class ModelCheck:
    """A whole .tflite under TFLM against the whole Keras model."""

    samples: int
    max_abs: float
    max_rel: float
    arena_used_bytes: int


class TflmError(RuntimeError):
    """TFLM is missing or unusable, the runner did not compile, or it failed at run time."""


@dataclass(frozen=True)
class Builtin:
    name: str  # BuiltinOperator name, e.g. "FULLY_CONNECTED"
    method: str  # MicroMutableOpResolver::Add<method>, e.g. "FullyConnected"


@dataclass(frozen=True)
class IoTensor:
    """The model's input or output as the runner moves it."""

    shape: tuple[int, ...]  # batch included
    dtype: np.dtype  # float32 or int8


@dataclass(frozen=True)
class TflmRun:
    outputs: np.ndarray  # [N, *output shape without the batch], the output tensor's dtype
    arena_used_bytes: int
    log: str  # the runner's stderr (MicroPrintf output)


def resolver_method(builtin: str) -> str:
    """FULLY_CONNECTED -> FullyConnected, CONV_2D -> Conv2D (MicroMutableOpResolver's names)."""
    if builtin in _METHOD_EXCEPTIONS:
        return _METHOD_EXCEPTIONS[builtin]
    return "".join(p if p == "2D" else p.capitalize() for p in builtin.split("_"))


def model_ops(tflite_bytes: bytes) -> tuple[list[Builtin], list[str]]:
    """(builtin ops, custom op names) of the model, each sorted and once."""
    model = tflite_file.read_model(tflite_bytes)
    # Names only, not the ops' custom options: a model whose options are garbage must still get
    # a runner, so that the kernel's Prepare can be seen to reject it.
    builtins, custom = set(), set()
    for op in (op for graph in model.subgraphs for op in graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        is_custom = max(code.builtinCode, code.deprecatedBuiltinCode) == BuiltinOperator.CUSTOM
        (custom if is_custom else builtins).add(tflite_file.op_name(model, op))
    return [Builtin(b, resolver_method(b)) for b in sorted(builtins)], sorted(custom)


def runner_source(tflite_bytes: bytes, namespaces: Sequence[Registration],
                  arena_bytes: int = DEFAULT_ARENA_BYTES) -> str:
    """The C++ runner for this model: its builtins registered, then each kernel directory's
    fusegen::<namespace>::RegisterOps."""
    builtins, custom = model_ops(tflite_bytes)
    foreign = [name for name in custom if not name.startswith(OP_PREFIX)]
    if foreign:
        raise TflmError(f"the model has custom ops fusegen did not generate: {foreign}")
    return render("tflm_runner.cc.j2", builtins=builtins, arena_bytes=arena_bytes,
                  namespaces=namespaces)


def run_tflm(tflite_bytes: bytes, kernels_dir: str | Path, inputs: np.ndarray,
             include_dirs: Sequence[str], library: str, extra_flags: Sequence[str] = (),
             arena_bytes: int = DEFAULT_ARENA_BYTES) -> np.ndarray:
    """The model's outputs for each of the N samples of `inputs` ([N, *input shape w/o batch]).

    `inputs` are float32 for a float model, already quantized int8 for an int8 model; the outputs
    have the model's output type. The samples stream through one interpreter (see the module)."""
    return run_tflm_detailed(tflite_bytes, kernels_dir, inputs, include_dirs, library,
                             extra_flags, arena_bytes).outputs


def run_tflm_detailed(tflite_bytes: bytes, kernels_dir: str | Path, inputs: np.ndarray,
                      include_dirs: Sequence[str], library: str, extra_flags: Sequence[str] = (),
                      arena_bytes: int = DEFAULT_ARENA_BYTES) -> TflmRun:
    """As run_tflm, with the arena the model used and the runner's log."""
    with tempfile.TemporaryDirectory(prefix="fusegen_tflm_") as tmp:
        work = Path(tmp)
        exe = build_runner(tflite_bytes, Path(kernels_dir), include_dirs, library, work,
                           extra_flags)
        return run_runner(exe, tflite_bytes, inputs, work, arena_bytes)


# -- build ---------------------------------------------------------------------------------------

def check_tflm(include_dirs: Sequence[str], library: str) -> None:
    """Raises TflmError naming what is missing from the given TFLM build."""
    if not include_dirs:
        raise TflmError("no TFLM include directories given")
    missing_dirs = [d for d in include_dirs if not Path(d).is_dir()]
    if missing_dirs:
        raise TflmError(f"TFLM include directories do not exist: {missing_dirs}")
    for header, what in REQUIRED_HEADERS.items():
        if not any((Path(d) / header).is_file() for d in include_dirs):
            raise TflmError(f"no include directory has {header}; add {what} to {list(include_dirs)}")
    if not Path(library).is_file():
        raise TflmError(f"TFLM library {library} does not exist (build it with TFLM's "
                        "`make -f tensorflow/lite/micro/tools/make/Makefile microlite`)")


def check_kernels(tflite_bytes: bytes, kernels_dirs: Path | Sequence[Path]) -> None:
    """Every fused op of the model has its generated kernel in one of the directories."""
    dirs = _dirs(kernels_dirs)
    for kernels_dir in dirs:
        if not (kernels_dir / "fusegen_ops.h").is_file():
            raise TflmError(f"{kernels_dir} has no fusegen_ops.h: not a generated kernel "
                            "directory")
    _, custom = model_ops(tflite_bytes)
    missing = [name for name in custom
               if not any((d / f"{name.lower()}.cc").is_file() for d in dirs)]
    if missing:
        where = ", ".join(str(d) for d in dirs)
        raise TflmError(f"{where} has no kernel for {missing}; generate the kernels from "
                        "the same conversion (`fusegen convert --kernels DIR`)")


def _dirs(kernels_dirs: Path | str | Sequence[Path]) -> list[Path]:
    if isinstance(kernels_dirs, (str, Path)):
        return [Path(kernels_dirs)]
    return [Path(d) for d in kernels_dirs]


def check_builtins(builtins: list[Builtin], include_dirs: Sequence[str]) -> None:
    """Every builtin the model uses has a registration method in this TFLM."""
    header = next((Path(d) / RESOLVER_HEADER for d in include_dirs
                   if (Path(d) / RESOLVER_HEADER).is_file()), None)
    if header is None:
        return  # an unusual layout: let the compiler speak
    known = resolver_methods(header.read_text())
    absent = [b.name for b in builtins if b.method not in known]
    if absent:
        raise TflmError(f"this TFLM has no kernel for the builtin op(s) {absent} "
                        f"(no MicroMutableOpResolver::Add<name> in {header})")


def resolver_methods(header_text: str) -> set[str]:
    """The <name>s of `TfLiteStatus Add<name>(` in micro_mutable_op_resolver.h."""
    return set(re.findall(r"TfLiteStatus\s+Add(\w+)\s*\(", header_text))


def build_runner(tflite_bytes: bytes, kernels_dir: Path | Sequence[Path],
                 include_dirs: Sequence[str], library: str, work: Path,
                 extra_flags: Sequence[str] = ()) -> Path:
    """Compiles the runner, the kernels, cores and runtime into work/tflm_runner. Several
    kernel directories compose: each registers its ops, the runtime is compiled once."""
    dirs = [d.resolve() for d in _dirs(kernels_dir)]
    check_tflm(include_dirs, library)
    check_kernels(tflite_bytes, dirs)
    check_builtins(model_ops(tflite_bytes)[0], include_dirs)
    runner = work / "tflm_runner.cc"
    regs = [_registration(d) for d in dirs]
    if len(dirs) > 1:  # each directory's own fusegen_ops.h, by its path
        regs = [Registration(r.name, str(d / "fusegen_ops.h")) for r, d in zip(regs, dirs)]
    if len({r.name for r in regs}) != len(regs):
        raise TflmError(f"kernel directories {', '.join(map(str, dirs))} share a namespace; "
                        "write them with distinct --prefix")
    runner.write_text(runner_source(tflite_bytes, regs))
    includes = [f"-I{d}" for d in dirs] + [f for d in include_dirs for f in ("-isystem", d)]
    cc_sources = [runner, *(src for d in dirs for src in sorted(d.glob("*.cc")))]
    jobs = [(src, [CXX, *CXX_FLAGS, f"-I{src.parent}"]) for src in cc_sources]
    jobs += [(src, [CC, *C_FLAGS, f"-I{src.parent}"]) for src in _c_sources(dirs)]
    names = [src.name for src, _ in jobs]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise TflmError(f"kernel directories {', '.join(map(str, dirs))} both hold {clash}; "
                        "an op belongs in one directory")
    with ThreadPoolExecutor(max_workers=2) as pool:
        objects = list(pool.map(
            lambda job: _compile(job[0], [*job[1], *includes, *extra_flags], work), jobs))
    exe = work / "tflm_runner"
    try:
        _checked([CXX, *objects, library, "-lm", "-o", exe, *extra_flags],
                 "linking the TFLM runner")
    except TflmError as err:
        if lacks_micro_printf(str(err)):
            raise TflmError(f"linking the TFLM runner failed: {library} {RELEASE_HINT}") from None
        raise
    return exe


# A BUILD_TYPE=release TFLM is compiled with TF_LITE_STRIP_ERROR_STRINGS and has no MicroPrintf:
# whatever includes its headers without that define references it and does not link.
RELEASE_HINT = ("has no MicroPrintf (a BUILD_TYPE=release TFLM, built with "
                "TF_LITE_STRIP_ERROR_STRINGS): pass --tflm-flag=-DTF_LITE_STRIP_ERROR_STRINGS")


def lacks_micro_printf(linker_output: str) -> bool:
    """Whether a failed link's output says MicroPrintf is undefined (see RELEASE_HINT)."""
    return re.search(r"undefined reference to [`']V?MicroPrintf\b", linker_output) is not None


def _registration(kernels_dir: Path) -> Registration:
    try:
        return registration(kernels_dir)
    except KernelDirError as err:
        raise TflmError(str(err)) from None


def _c_sources(dirs: list[Path]) -> list[Path]:
    """Every directory's cores; the runtime once (the same files in every directory)."""
    cores = [src for d in dirs for src in sorted(d.glob("*.c"))]
    runtime: dict[Path, Path] = {}
    for d in dirs:
        for src in sorted((d / "tflm_kernels").rglob("*.c")):
            runtime.setdefault(src.relative_to(d), src)
    return cores + list(runtime.values())


def _compile(source: Path, command: list[str], work: Path) -> Path:
    obj = work / "obj" / (source.name + ".o")
    obj.parent.mkdir(exist_ok=True)
    _checked([*command, "-c", source, "-o", obj], f"compiling {source.name}")
    return obj


def _checked(command: Sequence[str | Path], what: str) -> str:
    argv = [str(c) for c in command]
    proc = subprocess.run(argv, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if proc.returncode != 0:
        raise TflmError(f"{what} failed (exit {proc.returncode}):\n$ {' '.join(argv)}\n"
                        f"{proc.stdout}")
    return proc.stdout


# -- run -----------------------------------------------------------------------------------------

def io_tensors(tflite_bytes: bytes) -> tuple[IoTensor, IoTensor]:
    """The model's single input and output: shapes (batch included) and sample types."""
    model = tflite_file.read_model(tflite_bytes)
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise TflmError(f"the runner takes models of 1 input and 1 output, this one has "
                        f"{len(graph.inputs)} and {len(graph.outputs)}")
    return tuple(_io_tensor(graph.tensors[i], what)
                 for i, what in ((graph.inputs[0], "input"), (graph.outputs[0], "output")))


def _io_tensor(tensor: schema.TensorT, what: str) -> IoTensor:
    if tensor.type not in RUNNER_DTYPES:
        names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        raise TflmError(f"the model's {what} is {names.get(tensor.type, tensor.type)}; the runner "
                        "takes float32, int8 or int32")
    return IoTensor(tuple(int(d) for d in tensor.shape), RUNNER_DTYPES[tensor.type])


def runner_inputs(inputs: np.ndarray, spec: IoTensor) -> np.ndarray:
    """`inputs` as the runner's input file holds them; a clear error if they cannot be."""
    inputs = np.asarray(inputs)
    if spec.dtype == np.int8 and inputs.dtype != np.int8:
        raise TflmError(f"the model's input is int8 and the inputs are {inputs.dtype}: quantize "
                        "them with the input's scale and zero point first")
    if spec.dtype == np.float32 and inputs.dtype == np.int8:
        raise TflmError("the model's input is float32 and the inputs are int8")
    if spec.dtype == np.int32 and not (np.issubdtype(inputs.dtype, np.integer) or
                                       np.array_equal(inputs, np.round(inputs))):
        raise TflmError("the model's input is int32 (token ids) and the inputs are not integers")
    if inputs.ndim != len(spec.shape) or inputs.shape[1:] != spec.shape[1:]:
        raise TflmError(f"inputs of shape {inputs.shape} are not N samples of the model input "
                        f"{spec.shape}")
    return np.ascontiguousarray(inputs, dtype=spec.dtype)


def run_runner(exe: Path, tflite_bytes: bytes, inputs: np.ndarray, work: Path,
               arena_bytes: int = DEFAULT_ARENA_BYTES) -> TflmRun:
    """Runs a built runner on the N samples of `inputs`, streamed through one interpreter."""
    in_spec, out_spec = io_tensors(tflite_bytes)
    inputs = runner_inputs(inputs, in_spec)
    model, x, y = work / "model.tflite", work / "inputs.bin", work / "outputs.bin"
    model.write_bytes(tflite_bytes)
    x.write_bytes(inputs.tobytes())
    proc = subprocess.run([str(exe), str(model), str(x), str(y), str(arena_bytes)],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        raise TflmError(f"the TFLM runner failed ({how}):\n{proc.stderr}{proc.stdout}")
    used = re.search(r"^arena_used_bytes (\d+)$", proc.stdout, re.MULTILINE)
    if used is None:
        raise TflmError(f"the TFLM runner did not report its arena:\n{proc.stdout}")
    outputs = np.fromfile(y, dtype=out_spec.dtype).reshape(len(inputs), *out_spec.shape[1:])
    return TflmRun(outputs, int(used.group(1)), proc.stderr)
