"""Code generation: a lowered cell -> portable C core + TFLM kernel; a set of ops -> a package.

Every generated directory is self-contained: the kernels, the runtime sources they call (copied
from tflm_kernels/), one registration header and a CMake file for the user's TFLM build.
"""

from __future__ import annotations

from pathlib import Path

from fusegen.codegen.core import CoreContext, add_f32, base_context
from fusegen.codegen.render import guard, render, write
from fusegen.codegen.s8 import add_s8
from fusegen.fileio import Staged
from fusegen.ir import Graph
from fusegen.abi import MAX_CHUNK, OPTIONS, S8_INPUTS
from fusegen.paths import RUNTIME

# Runtime sources a generated kernel directory carries, relative to tflm_kernels/.
RUNTIME_SOURCES = ("runtime/fg_runtime.h", "runtime/fg_runtime_f32.c",
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


def abi_header() -> str:
    """tflm_kernels/shell/fg_abi.h: the options and int8 inputs of abi.py, for the shell."""
    return render("fg_abi.h.j2", options=OPTIONS, s8_inputs=S8_INPUTS)


def runtime_sources(dtypes: tuple[str, ...] = DTYPES) -> tuple[str, ...]:
    return RUNTIME_SOURCES + (RUNTIME_SOURCES_S8 if "s8" in dtypes else ())


def package_files(ops: dict[str, Graph], dtypes: tuple[str, ...] = DTYPES) -> dict[str, str]:
    """Files shared by every op of a generated directory."""
    contexts = [core_context(g, name) for name, g in sorted(ops.items())]
    return {
        "fusegen_ops.h": render("fusegen_ops.h.j2", ops=contexts, guard=guard("fusegen_ops.h")),
        "CMakeLists.txt": render("CMakeLists.txt.j2", ops=contexts,
                                 runtime=runtime_sources(dtypes)),
    }


def write_package(ops: dict[str, Graph], out_dir: Path,
                  dtypes: tuple[str, ...] = DTYPES) -> list[Path]:
    """Writes every op's kernel, the shared files and the runtime into `out_dir`, each file
    atomically, and only once all of them are generated."""
    staged = Staged()
    for path, data in package_contents(ops, out_dir, dtypes).items():
        staged.add(path, data)
    staged.commit()
    return list(staged.files)


def package_contents(ops: dict[str, Graph], out_dir: Path,
                     dtypes: tuple[str, ...] = DTYPES) -> dict[Path, bytes]:
    """What write_package writes: path -> bytes, computed without writing anything."""
    files: dict[str, str] = {}
    for name, graph in ops.items():
        files.update(kernel_files(graph, name, dtypes))
    files.update(package_files(ops, dtypes))
    contents = {out_dir / name: text.encode() for name, text in files.items()}
    for rel in runtime_sources(dtypes):
        contents[out_dir / "tflm_kernels" / rel] = (RUNTIME / rel).read_bytes()
    return contents
