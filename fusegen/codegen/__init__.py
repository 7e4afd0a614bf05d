"""Code generation: a lowered cell -> portable C core + TFLM kernel; a set of ops -> a package.

Every generated directory is self-contained: the kernels, the runtime sources they call (copied
from tflm_kernels/), one registration header and a CMake file for the user's TFLM build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fusegen import abi
from fusegen.codegen.core import CoreContext, add_f32, base_context
from fusegen.codegen.render import guard, render
from fusegen.codegen.s8 import add_s8
from fusegen.errors import UserError
from fusegen.fileio import Staged
from fusegen.ir import Graph, IRError
from fusegen.ir.text import parse_graph
from fusegen.abi import (MASK_LENGTH, MASK_NONE, MASK_STEPS, MAX_CHUNK, OPTIONS, S8_BLOCK_DEPTH,
                         S8_BLOCK_ROWS, S8_INPUTS, TFLITE_BOOL, TFLITE_INT32, WEIGHT_LAYOUTS)
from fusegen.paths import RUNTIME

# Runtime sources a generated kernel directory carries, relative to tflm_kernels/.
RUNTIME_SOURCES = ("runtime/fg_runtime.h", "runtime/fg_elementwise.h",
                   "runtime/fg_runtime_f32.c",
                   "options/fg_flexbuffer.h", "options/fg_flexbuffer.c",
                   "shell/fg_abi.h", "shell/fg_shell.h", "shell/fg_shell.c",
                   "shell/fg_tflm_shell.h")
# The shell's header rendered from abi.py (committed in tflm_kernels/shell/, checked by a test).
ABI_HEADER = "shell/fg_abi.h"
DTYPES = ("f32",)
# What a directory with int8 ("s8") kernels carries in addition.
RUNTIME_SOURCES_S8 = ("runtime/fg_runtime_q.c", "runtime/fg_runtime_q_mve.h")


# The C emission of each dtype: adds its eval function (and Plan fields, scratch layout, TFLM
# shell) to the context. The keys are abi.DTYPES'; an unknown dtype raises.
EMITTERS = {"f32": add_f32, "s8": add_s8}


def core_context(graph: Graph, op_name: str, dtypes: tuple[str, ...] = DTYPES) -> CoreContext:
    """The template context; `dtypes` picks the core's eval functions ("f32", "s8"). The TFLM
    shell runs the int8 op when "s8" is among them (a quantized model), else the float op."""
    ctx = base_context(graph, op_name)
    for dtype in dtypes:
        try:
            emit = EMITTERS[dtype]
        except KeyError:
            raise ValueError(f"no eval for dtype {dtype!r} (known: {', '.join(EMITTERS)})") from None
        ctx = emit(ctx, graph)
    return ctx


def kernel_files(graph: Graph, op_name: str, dtypes: tuple[str, ...] = DTYPES) -> dict[str, str]:
    """The generated files of one op, by file name; dtypes ("f32", "s8") picks the evals."""
    ctx = core_context(graph, op_name, dtypes)
    stem = ctx.stem
    return {
        f"{stem}_core.h": render("core.h.j2", ctx=ctx, guard=guard(f"{stem}_core.h")),
        f"{stem}_core.c": render("core.c.j2", ctx=ctx),
        f"{stem}.h": render("kernel.h.j2", ctx=ctx, kernel=ctx.kernel, guard=guard(f"{stem}.h"),
                            max_chunk=MAX_CHUNK),
        f"{stem}.cc": render("kernel.cc.j2", ctx=ctx, kernel=ctx.kernel),
        f"{stem}.ir.txt": graph.text() + "\n",
    }


class KernelNameClash(UserError):
    """Two different ops would write the same kernel file."""


def _check_existing(ops: dict[str, Graph], out_dir: Path) -> None:
    """Refuses to overwrite a kernel of another math that has the same op name."""
    for name, graph in ops.items():
        stem = core_context(graph, name).stem
        old = out_dir / f"{stem}.ir.txt"
        if not old.is_file():
            continue
        if old.read_text(errors="replace").strip() != graph.text().strip():  # text() is digested
            raise KernelNameClash(f"{out_dir}/{stem}.* holds another op with the name {name} "
                                  "(different math); build into another --out directory or "
                                  "delete the old kernel")


def abi_header() -> str:
    """tflm_kernels/shell/fg_abi.h: the options and int8 inputs of abi.py, for the shell."""
    clamps = (abi.CLAMP_LO_KNOT, abi.CLAMP_HI_KNOT)
    masks = (MASK_NONE, MASK_STEPS, MASK_LENGTH, TFLITE_BOOL, TFLITE_INT32)
    f32 = {"EXP2_SHIFTER": abi.F32_EXP2_SHIFTER, "MINUS_LOG2E": abi.F32_MINUS_LOG2E,
           "TWO_LOG2E": abi.F32_TWO_LOG2E, "SIGMOID_LIMIT": abi.F32_SIGMOID_LIMIT,
           "TANH_LIMIT": abi.F32_TANH_LIMIT, "EXP2_A2": abi.F32_EXP2_A2,
           "EXP2_B1": abi.F32_EXP2_B1, "EXP2_B3": abi.F32_EXP2_B3}
    return render("fg_abi.h.j2", options=OPTIONS, s8_inputs=S8_INPUTS, layouts=WEIGHT_LAYOUTS,
                  block_rows=S8_BLOCK_ROWS, block_depth=S8_BLOCK_DEPTH, masks=masks,
                  lut_segment_bits=abi.SEGMENT_BITS, clamps=clamps, lut_size=abi.LUT_SIZE,
                  f32_constants=[(name, abi.c_float(v), repr(v)) for name, v in f32.items()])


def runtime_sources(dtypes: tuple[str, ...] = DTYPES) -> tuple[str, ...]:
    return RUNTIME_SOURCES + (RUNTIME_SOURCES_S8 if "s8" in dtypes else ())


class KernelDirError(UserError, ValueError):
    """A --kernels directory fusegen cannot add to."""


MANIFEST = "fusegen_kernels.json"
# Words a directory name may not become as a C++ namespace.
_CXX_KEYWORDS = frozenset(
    "alignas alignof and asm auto bool break case catch char class const constexpr continue "
    "default delete do double else enum explicit export extern false float for friend goto if "
    "inline int long mutable namespace new noexcept not nullptr operator or private protected "
    "public register return short signed sizeof static struct switch template this throw true "
    "try typedef typename union unsigned using virtual void volatile while xor std tflite "
    "fusegen".split())


def directory_namespace(name: str) -> str:
    """A C identifier from a directory name or --prefix: `kernels-a` -> `kernels_a`. The
    directory's registration lives in `fusegen::<it>` (its include guard, CMake targets too)."""
    ident = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_") or "ops"
    if ident[0].isdigit() or ident in _CXX_KEYWORDS:
        ident = "d_" + ident
    return ident


@dataclass(frozen=True)
class KernelDir:
    """What a generated directory holds: its namespace and every op with its dtypes."""

    namespace: str
    ops: dict[str, tuple[Graph, tuple[str, ...]]]

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(sorted({d for _, dtypes in self.ops.values() for d in dtypes}))


def read_kernel_dir(out_dir: Path) -> KernelDir | None:
    """The directory's manifest (fusegen_kernels.json) and IR, or None if it has none."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        ops = {name: (parse_graph((out_dir / f"{name.lower()}.ir.txt").read_text()),
                      tuple(dtypes)) for name, dtypes in manifest["ops"].items()}
        return KernelDir(str(manifest["namespace"]), ops)
    except (OSError, ValueError, KeyError, TypeError, IRError) as err:
        raise KernelDirError(f"{out_dir}: not a readable fusegen kernel directory ({err}); write the "
                      "kernels into a new directory") from None


@dataclass(frozen=True)
class Registration:
    """How a runner registers one directory's ops: `#include "<header>"`, then
    `fusegen::<name>::RegisterOps(resolver)`."""

    name: str
    header: str = "fusegen_ops.h"


def registration(kernels_dir: Path, header: str = "fusegen_ops.h") -> Registration:
    kdir = read_kernel_dir(Path(kernels_dir))
    if kdir is None:
        raise KernelDirError(f"{kernels_dir} has no {MANIFEST}: not a kernel directory of this "
                             "fusegen; generate it again (fusegen build / convert --kernels)")
    return Registration(kdir.namespace, header)


def package_files(kdir: KernelDir) -> dict[str, str]:
    """Files shared by every op of a generated directory."""
    contexts = [core_context(g, name, dtypes) for name, (g, dtypes) in sorted(kdir.ops.items())]
    ns = kdir.namespace
    manifest = {"namespace": ns,
                "ops": {name: list(dtypes) for name, (_, dtypes) in sorted(kdir.ops.items())}}
    return {
        "fusegen_ops.h": render("fusegen_ops.h.j2", ops=contexts, namespace=ns,
                                guard=guard(f"fusegen_{ns}_ops.h")),
        "CMakeLists.txt": render("CMakeLists.txt.j2", ops=contexts, namespace=ns,
                                 runtime=runtime_sources(("f32",)),
                                 runtime_q=RUNTIME_SOURCES_S8 if "s8" in kdir.dtypes else ()),
        MANIFEST: json.dumps(manifest, indent=1) + "\n",
    }


def write_package(ops: dict[str, Graph], out_dir: Path, dtypes: tuple[str, ...] = DTYPES,
                  prefix: str | None = None) -> list[Path]:
    """Adds every op's kernel to `out_dir` (the ops already there stay), then writes the shared
    files (registration header, CMake file, manifest) for all of them and the runtime, each
    file atomically, and only once all of them are generated."""
    staged = Staged()
    for path, data in package_contents(ops, out_dir, dtypes, prefix).items():
        staged.add(path, data)
    staged.commit()
    return list(staged.files)


def package_contents(ops: dict[str, Graph], out_dir: Path, dtypes: tuple[str, ...] = DTYPES,
                     prefix: str | None = None) -> dict[Path, bytes]:
    """What write_package writes: path -> bytes, computed without writing anything.

    `prefix` names the directory's C++ namespace and CMake targets (default: the namespace it
    already has, else its name). Two different ops never share a file name in one directory: a
    name taken by another op's math (in this call, or by a kernel already in `out_dir`, known by
    its .ir.txt) is refused."""
    out_dir = Path(out_dir)
    existing = read_kernel_dir(out_dir)
    merged = dict(existing.ops) if existing is not None else {}
    merged.update({name: (graph, tuple(dtypes)) for name, graph in ops.items()})
    if prefix is not None:
        namespace = directory_namespace(prefix)
    elif existing is not None:
        namespace = existing.namespace
    else:
        namespace = directory_namespace(out_dir.resolve().name)
    kdir = KernelDir(namespace, merged)
    files: dict[str, str] = {}
    owner: dict[str, tuple[str, str]] = {}  # file name -> (op name, digest)
    for name, graph in ops.items():
        for rel, text in kernel_files(graph, name, dtypes).items():
            other = owner.get(rel)
            if other is not None and other[1] != graph.digest():
                raise KernelNameClash(f"ops {other[0]} and {name} would both write {rel}; "
                                      "rename one of the cell classes")
            owner[rel] = (name, graph.digest())
            files[rel] = text
    _check_existing(ops, out_dir)
    files.update(package_files(kdir))
    contents = {out_dir / name: text.encode() for name, text in files.items()}
    for rel in runtime_sources(kdir.dtypes):
        contents[out_dir / "tflm_kernels" / rel] = (RUNTIME / rel).read_bytes()
    return contents
