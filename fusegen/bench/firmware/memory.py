"""Flash and RAM of a firmware build, split by owner, from the linker map (fw.map beside fw.elf).

Every input section the linker placed is attributed to one of:
- model weights: the constant inputs of the generated fw_model.c (`.rodata.kModelOp<k>...`);
- model code: everything else from the model sources (fw_model.c, the compute cores, the
  runtime) plus libm, which only the kernels' activations (expf, tanhf, ...) pull in;
- model RAM: the model sources' .bss/.data (plans, states, scratch, activations);
- firmware: the server, protocol, board support, libc and libgcc.

Flash is .text (code and read-only data) + .ARM.exidx + the .data image; RAM is .data + .bss;
the stack is reported apart (its size and the measured use).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

FLASH_SECTIONS = (".text", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array",
                  ".fini_array", ".data")
RAM_SECTIONS = (".data", ".bss")
MODEL_OBJECTS = "fusegen_model.dir"  # the CMake object directory of FUSEGEN_MODEL_SOURCES
WEIGHT_SECTION = re.compile(r"\.rodata\.kModelOp\d+(?!Params$)\w+$")  # not the pointer arrays
_INPUT = re.compile(r"^ (\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)(?:\s+(\S.*))?$")
_OUTPUT = re.compile(r"^(\.\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)")


@dataclass(frozen=True)
class MemoryReport:
    flash_bytes: int  # everything in flash
    model_weight_bytes: int
    model_code_bytes: int  # fw_model.c glue, compute cores, runtime, libm
    firmware_code_bytes: int  # flash_bytes - weights - model code
    ram_static_bytes: int  # .data + .bss
    model_ram_bytes: int  # plans, states, scratch, activations
    stack_bytes: int  # the stack reserved by the linker script

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def map_sections(text: str) -> list[tuple[str, str, int, str]]:
    """(output section, input section, size, object) of every input section in the map.

    A size is what the section occupies in its output section: at most the distance to the
    next entry (or the output section's end). The map lists merged string sections
    (`.rodata.str1.4`, SHF_MERGE) at their size before merging, which overlaps what follows."""
    lines = text.split("\n")
    start = next((k for k, line in enumerate(lines) if line.startswith("Linker script and memory")),
                 0)
    placed: list[tuple[str, str, int, int, str]] = []  # output, name, address, size, object
    ends: dict[str, int] = {}  # output section -> end address
    output = ""
    for line in _join_wrapped([line.rstrip() for line in lines[start:]]):
        if match := _OUTPUT.match(line):
            output = match.group(1)
            ends[output] = int(match.group(2), 16) + int(match.group(3), 16)
        elif output and (match := _INPUT.match(line)):
            name, address, size, obj = match.groups()
            placed.append((output, name, int(address, 16), int(size, 16), (obj or "").strip()))
    entries = []
    for k, (output, name, address, size, obj) in enumerate(placed):
        nxt = placed[k + 1] if k + 1 < len(placed) else None
        limit = nxt[2] if nxt is not None and nxt[0] == output else ends[output]
        entries.append((output, name, max(0, min(size, limit - address)), obj))
    return entries


def _join_wrapped(lines: list[str]) -> list[str]:
    """The map wraps a long section name onto its own line; put it back with its numbers."""
    joined: list[str] = []
    for line in lines:
        if joined and re.match(r"^\s+0x", line) and re.match(r"^ ?\.?\S+$", joined[-1]):
            joined[-1] = joined[-1] + line
        else:
            joined.append(line)
    return joined


def memory_report(map_path: Path, stack_bytes: int) -> MemoryReport:
    sums: dict[str, int] = defaultdict(int)
    for output, name, size, obj in map_sections(Path(map_path).read_text()):
        owner = _owner(name, obj)
        if output in FLASH_SECTIONS:
            sums[f"flash_{owner}"] += size
            sums["flash"] += size
        if output in RAM_SECTIONS:
            sums[f"ram_{owner}"] += size
            sums["ram"] += size
    weights, code = sums["flash_weights"], sums["flash_model"]
    return MemoryReport(
        flash_bytes=sums["flash"], model_weight_bytes=weights, model_code_bytes=code,
        firmware_code_bytes=sums["flash"] - weights - code, ram_static_bytes=sums["ram"],
        model_ram_bytes=sums["ram_model"] + sums["ram_weights"], stack_bytes=stack_bytes)


def _owner(section: str, obj: str) -> str:
    if MODEL_OBJECTS in obj:
        return "weights" if WEIGHT_SECTION.match(section) else "model"
    if re.search(r"libm(_nano)?\.a\(", obj):
        return "model"
    return "firmware"
