"""Estimated Cortex-M4 cycles of one inference, from an exact instruction trace.

QEMU counts instructions exactly (-icount) but models no pipeline. With ``-d
in_asm,exec,nochain`` it logs the disassembly of every translation block (TB) once and every
execution of one (chaining off, so none is skipped); ``cpu_io_recompile`` lines say where a TB
stopped early. Multiplying each executed instruction by its class's cost in the table below gives
an instruction-class histogram of the inference and an estimated cycle count. The window is
``fw_model_run``: from the first TB at its entry to the first TB at its return address in the
server.

The cost table is the Cortex-M4 Technical Reference Manual's (ARM DDI 0439, "Processor instruction
timings" and the FPU's "instruction set" table), zero-wait-state memory:

    data processing, shifts, extends, SXTB16, SSAT, QADD, bit fields, IT    1
    MUL, SMULL/UMULL, SMLAL/UMLAL, SMLAD/SMLA<x><y>, SMMUL/SMMLA, MLA/MLS   1
    SDIV/UDIV                                                              2-12, counted 7
    LDR/LDRB/LDRH/LDRSB/LDRSH                                              2
    STR/STRB/STRH                                                          1 (see below)
    LDRD/STRD, LDM/STM/PUSH/POP                                            1 + N registers
    branch taken (B, BL, BX, CBZ, POP/LDR to pc...)                        1 + P, P = 2
    branch not taken                                                       1
    VADD/VSUB/VMUL/VNMUL/VNEG/VABS/VCMP/VCVT/VMOV/VMRS                     1
    VMLA/VMLS/VNMLA/VNMLS/VFMA/VFMS/VFNMA/VFNMS                            3
    VDIV/VSQRT                                                             14
    VLDR/VSTR (single)                                                     2
    VLDM/VSTM/VPUSH/VPOP                                                   1 + N

Stores: the TRM's summary table lists STR as 2 cycles, and notes that a load or store
following another is pipelined and that the write buffer lets a store retire while the next
instruction runs; this estimate counts 1, which is right for the kernels' isolated stores and low
for runs of stores.

Limits (why this is an estimate): the 1-cycle pipelining of back-to-back loads and stores, the
extra cycle of a load whose address depends on the previous instruction, IT folding, flash wait
states, bus contention and the variable DIV latency are not modelled; so real boards differ by
some percent, usually more cycles with flash wait states. It is exact as a histogram: its
instruction total equals QEMU's count for the same inference (checked by the caller).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

P = 2  # pipeline refill of a taken branch
CONDITIONS = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt",
              "gt", "le", "al")
# class name -> cycles; classes with a register count use "+N" below
CYCLES = {"alu": 1, "mul": 1, "div": 7, "load": 2, "store": 1, "load_multiple": 1,
          "store_multiple": 1, "branch_taken": 1 + P, "branch_not_taken": 1, "fp": 1,
          "fp_mac": 3, "fp_div": 14, "fp_load": 2, "fp_store": 2, "fp_load_multiple": 1,
          "fp_store_multiple": 1}
PER_REGISTER = {"load_multiple", "store_multiple", "fp_load_multiple", "fp_store_multiple"}

_IN_ASM = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{4} ?)+)\s+(\S+)\s*(.*)$")
_TRACE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/[0-9a-f]+/([0-9a-f]+)\]")
_REWOUND = re.compile(r"rewound execution of TB to ([0-9a-f]+)")


class CycleError(Exception):
    pass


@dataclass(frozen=True)
class Insn:
    address: int
    size: int
    mnemonic: str
    operands: str
    function: str = ""


@dataclass
class CycleEstimate:
    instructions: int = 0
    cycles: int = 0
    histogram: Counter = field(default_factory=Counter)  # class -> instructions
    class_cycles: Counter = field(default_factory=Counter)  # class -> cycles
    functions: Counter = field(default_factory=Counter)  # function -> instructions
    function_cycles: Counter = field(default_factory=Counter)  # function -> cycles


def _registers(operands: str) -> int:
    """Registers in a {...} list, ranges (s8-s11) expanded."""
    inside = operands[operands.find("{") + 1:operands.rfind("}")]
    count = 0
    for part in inside.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-")
            count += int(hi.strip()[1:]) - int(lo.strip()[1:]) + 1
        elif part:
            count += 1
    return count


def _base(mnemonic: str) -> str:
    return mnemonic.split(".")[0]


def _strip_condition(name: str) -> str:
    for c in CONDITIONS:
        if len(name) > len(c) + 1 and name.endswith(c):
            return name[:-len(c)]
    return name


def is_branch(insn: Insn) -> bool:
    """Can this instruction change the pc (so end a TB with a jump)?"""
    name = _base(insn.mnemonic)
    if name in ("b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh"):
        return True
    if name.startswith("b") and name[1:] in CONDITIONS:
        return True
    first = insn.operands.split(",")[0].strip()
    if name.startswith(("ldr", "mov", "add")) and first == "pc":
        return True
    if name.startswith(("pop", "ldm")) and "pc" in insn.operands:
        return True
    return False


def classify(insn: Insn) -> tuple[str, int]:
    """(class, register count) of an instruction that is not a taken/not-taken branch."""
    name = _base(insn.mnemonic)
    if name.startswith("v"):
        if name in ("vldm", "vldmia", "vldmdb", "vpop"):
            return "fp_load_multiple", _registers(insn.operands)
        if name in ("vstm", "vstmia", "vstmdb", "vpush"):
            return "fp_store_multiple", _registers(insn.operands)
        if name == "vldr":
            return "fp_load", 0
        if name == "vstr":
            return "fp_store", 0
        core = _strip_condition(name)
        if core in ("vmla", "vmls", "vnmla", "vnmls", "vfma", "vfms", "vfnma", "vfnms"):
            return "fp_mac", 0
        if core in ("vdiv", "vsqrt"):
            return "fp_div", 0
        return "fp", 0
    core = name if name in ("bls", "bics", "teq", "smlal") else _strip_condition(name)
    if core in ("push", "stm", "stmia", "stmdb", "stmea", "stmfd"):
        return "store_multiple", _registers(insn.operands)
    if core in ("pop", "ldm", "ldmia", "ldmdb", "ldmfd"):
        return "load_multiple", _registers(insn.operands)
    if core in ("ldrd",):
        return "load_multiple", 2
    if core in ("strd",):
        return "store_multiple", 2
    if core.startswith("ldr"):
        return "load", 0
    if core.startswith("str"):
        return "store", 0
    if core in ("sdiv", "udiv"):
        return "div", 0
    if core.startswith(("mul", "mla", "mls", "smul", "umul", "smla", "umla", "smmul", "smmla",
                        "smmls", "smlsd", "smuad", "smusd", "umaal")):
        return "mul", 0
    return "alu", 0


def parse_trace(text: str) -> list[tuple[list[Insn], int]]:
    """Executed TBs in order: (instructions of the TB, end address it ran up to, exclusive)."""
    blocks: dict[tuple[int, str], list[Insn]] = {}
    pending: list[Insn] = []
    executed: list[tuple[list[Insn], int]] = []
    function = ""
    for line in text.splitlines():
        m = _IN_ASM.match(line)
        if m:
            size = len(m.group(2).split()) * 2
            pending.append(Insn(int(m.group(1), 16), size, m.group(3), m.group(4), function))
            continue
        m = _TRACE.match(line)
        if m:
            pc, cflags = int(m.group(1), 16), m.group(2)
            if pending and pending[0].address == pc:
                blocks[pc, cflags] = pending
                pending = []
            block = blocks.get((pc, cflags))
            if block is None:
                raise CycleError(f"executed TB at {pc:#x} was never disassembled")
            executed.append((block, block[-1].address + block[-1].size))
            continue
        if line.startswith("IN:") or line.startswith("----"):
            if line.startswith("IN:"):
                pending = []
                function = line[3:].strip()
            continue
        m = _REWOUND.search(line)
        if m and executed:
            block, _ = executed[-1]
            executed[-1] = (block, int(m.group(1), 16))
    return executed


def _insn_cost(insn: Insn, taken: bool | None) -> tuple[str, int, int]:
    """(class, cycles, extra taken-branch cycles) of one instruction; taken is None unless it
    ends its TB with a jump."""
    if taken is not None and is_branch(insn):
        if _base(insn.mnemonic).startswith(("pop", "ldm")):  # a load to pc: 1 + N + P
            n = _registers(insn.operands)
            return "load_multiple", CYCLES["load_multiple"] + n, P if taken else 0
        cls = "branch_taken" if taken else "branch_not_taken"
        return cls, CYCLES[cls], 0
    cls, n = classify(insn)
    return cls, CYCLES[cls] + (n if cls in PER_REGISTER else 0), 0


def estimate(executed: list[tuple[list[Insn], int]], entry: int, ret: int,
             occurrence: int = 0) -> CycleEstimate:
    """The histogram of the occurrence-th window [TB at entry, first TB at ret)."""
    starts = [i for i, (block, _) in enumerate(executed) if block[0].address == entry]
    if len(starts) <= occurrence:
        raise CycleError(f"the trace enters {entry:#x} {len(starts)} times")
    # Count executions per (block, end, taken) first, then cost each distinct one once.
    runs: Counter = Counter()
    blocks: dict[int, list[Insn]] = {}
    i = starts[occurrence]
    while True:
        if i >= len(executed):
            raise CycleError(f"the trace never returns to {ret:#x}")
        block, end = executed[i]
        if block[0].address == ret:
            break
        last = block[-1]
        taken = None
        if end == last.address + last.size:
            next_pc = executed[i + 1][0][0].address if i + 1 < len(executed) else None
            taken = next_pc is not None and next_pc != end
        blocks[id(block)] = block
        runs[id(block), end, taken] += 1
        i += 1
    est = CycleEstimate()
    for (key, end, taken), count in runs.items():
        block = blocks[key]
        for insn in block:
            if insn.address >= end:
                break
            cls, cost, extra = _insn_cost(insn, taken if insn is block[-1] else None)
            est.instructions += count
            est.cycles += count * (cost + extra)
            est.histogram[cls] += count
            est.class_cycles[cls] += count * cost
            if extra:
                est.class_cycles["branch_taken"] += count * extra
            est.functions[insn.function] += count
            est.function_cycles[insn.function] += count * (cost + extra)
    return est


def model_run_window(elf: Path) -> tuple[int, int]:
    """(entry of fw_model_run, return address of the server's call to it), from the ELF."""
    dump = subprocess.run(["arm-none-eabi-objdump", "-d", "--no-show-raw-insn", str(elf)],
                          check=True, capture_output=True, text=True).stdout
    entry = None
    lines = dump.splitlines()
    for line in lines:
        m = re.match(r"^([0-9a-f]+) <fw_model_run>:", line)
        if m:
            entry = int(m.group(1), 16)
    if entry is None:
        raise CycleError(f"{elf} has no fw_model_run")
    call = re.compile(r"^\s*([0-9a-f]+):\s+bl(?:\.w)?\s+[0-9a-f]+ <fw_model_run>")
    for i, line in enumerate(lines):
        if call.match(line):
            for follow in lines[i + 1:]:
                m = re.match(r"^\s*([0-9a-f]+):", follow)
                if m:
                    return entry, int(m.group(1), 16)
    raise CycleError(f"{elf} never calls fw_model_run")


def estimate_from_log(log: Path, elf: Path, occurrence: int = 0) -> CycleEstimate:
    entry, ret = model_run_window(elf)
    return estimate(parse_trace(log.read_text(errors="replace")), entry, ret, occurrence)


def histogram_table(est: CycleEstimate) -> list[str]:
    lines = ["| class | instructions | estimated cycles |", "|---|---:|---:|"]
    for cls, n in est.histogram.most_common():
        lines.append(f"| {cls} | {n:,} | {est.class_cycles[cls]:,} |")
    return lines
