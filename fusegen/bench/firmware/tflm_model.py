"""Renders op_templates/fw_model_tflm.cc.j2: a whole converted .tflite as the firmware's model,
run by tflite::MicroInterpreter with the generated fused ops registered (TFLM mode).

    source = write_tflm_model_source(tflite_bytes, out_dir, "lstm",
                                     [registration(kernels_dir)])
    sources = [source, *tflm_kernel_sources(kernels_dir)]

The firmware then also needs the user's TFLM headers (as -isystem, through
FUSEGEN_MODEL_COMPILE_OPTIONS) and their libtensorflow-microlite.a built for the target
(FUSEGEN_MODEL_LINK_LIBRARIES); see firmware/README.md, "TFLM mode".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fusegen.bench.firmware.model_source import c_name
from fusegen.codegen import Registration
from fusegen.codegen.render import render, write
from fusegen.host.tflm import model_ops

DEFAULT_ARENA_BYTES = 64 * 1024
_BYTES_PER_LINE = 16


def render_tflm_model(tflite_bytes: bytes, name: str, source: str,
                      namespaces: Sequence[Registration],
                      arena_bytes: int = DEFAULT_ARENA_BYTES, arena_probe: bool = False) -> str:
    """fw_model_tflm.cc for this model: its bytes, its builtins, a static arena; the fused ops
    of each kernel directory registered (`namespaces`, codegen.registration). arena_probe: the
    firmware searches the smallest arena the model initialises in and DESCRIBE reports that
    as arena_bytes (instead of the arena used of this one)."""
    builtins, _ = model_ops(tflite_bytes)
    lines = [", ".join(f"0x{b:02x}" for b in tflite_bytes[k:k + _BYTES_PER_LINE]) + ","
             for k in range(0, len(tflite_bytes), _BYTES_PER_LINE)]
    return render("fw_model_tflm.cc.j2", source=source, name=c_name(name),
                  model_size=len(tflite_bytes), model_lines=lines, builtins=builtins,
                  arena_bytes=arena_bytes, namespaces=namespaces, arena_probe=arena_probe)


def write_tflm_model_source(tflite_bytes: bytes, out_dir: Path, name: str,
                            namespaces: Sequence[Registration], source: str = "a .tflite",
                            arena_bytes: int = DEFAULT_ARENA_BYTES,
                            arena_probe: bool = False) -> Path:
    text = render_tflm_model(tflite_bytes, name, source, namespaces, arena_bytes, arena_probe)
    return write({"fw_model_tflm.cc": text}, Path(out_dir))[0]


def tflm_kernel_sources(kernels_dirs: Path | Sequence[Path]) -> list[Path]:
    """The generated kernels' sources of one kernel directory or several: the TFLM kernels
    (.cc) and their cores of each, and the runtime (.c) once (every directory carries the
    same copy; linking two would define its symbols twice)."""
    dirs = [Path(kernels_dirs)] if isinstance(kernels_dirs, (str, Path)) else [
        Path(d) for d in kernels_dirs]
    sources = [src for d in dirs for src in sorted(d.glob("*.cc")) + sorted(d.glob("*.c"))]
    runtime: dict[Path, Path] = {}
    for d in dirs:
        for src in sorted((d / "tflm_kernels").rglob("*.c")):
            runtime.setdefault(src.relative_to(d), src)
    return sources + list(runtime.values())
