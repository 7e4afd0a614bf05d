"""STYLE.md item 9: what crosses into C is defined once (fusegen/abi.py) and seen the same from C.

- The Plan struct: its layout compiled from the generated header (offsetof, sizeof) equals the
  ctypes mirror the host runners build from abi.PLAN_FIELDS.
- The op's input order per dtype and the default chunk size: the generated kernel header
  declares the indices abi.OpInputs gives.
- The options: fg_abi.h (the shell's table) is rendered from abi.OPTIONS, and bytes the
  converter writes are read back by the hand-written shell by kind (an int option as an int).
"""

from __future__ import annotations

import ctypes
import re
import subprocess

import keras
import numpy as np
import pytest
from cbuild import RUNTIME_INCLUDE

from fusegen import abi
from fusegen.codegen import kernel_files
from fusegen.codegen import core_context
from fusegen.host.core import _plan_struct
from fusegen.lower import lower_cell

CELLS = {"lstm": lambda u: keras.layers.LSTMCell(u), "gru": lambda u: keras.layers.GRUCell(u)}


@pytest.fixture(scope="module", params=sorted(CELLS))
def lowered(request):
    return lower_cell(CELLS[request.param])


@pytest.mark.parametrize("dtypes", [("f32",), ("f32", "s8")], ids=["f32", "f32+s8"])
def test_plan_layout_seen_from_c_equals_the_ctypes_mirror(lowered, dtypes, tmp_path):
    ctx = core_context(lowered.graph, lowered.op_name, dtypes)
    files = kernel_files(lowered.graph, lowered.op_name, dtypes)
    (tmp_path / f"{ctx.stem}_core.h").write_text(files[f"{ctx.stem}_core.h"])
    mirror = _plan_struct(ctx)
    names = [name for name, _ in mirror._fields_]
    probe = tmp_path / "probe.c"
    probe.write_text(
        f'#include <stddef.h>\n#include "{ctx.stem}_core.h"\n'
        f"const size_t kOffsets[] = {{{', '.join(f'offsetof({ctx.prefix}Plan, {n})' for n in names)}}};\n"
        f"const size_t kSize = sizeof({ctx.prefix}Plan);\n")
    lib_path = tmp_path / "probe.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{tmp_path}",
                    f"-I{RUNTIME_INCLUDE}", str(probe), "-o", str(lib_path)], check=True)
    lib = ctypes.CDLL(str(lib_path))
    offsets = (ctypes.c_size_t * len(names)).in_dll(lib, "kOffsets")
    assert list(offsets) == [getattr(mirror, n).offset for n in names]
    assert ctypes.c_size_t.in_dll(lib, "kSize").value == ctypes.sizeof(mirror)
    # Every abi field is in the struct, in abi's order, before the dtypes' own fields.
    assert names[:len(abi.PLAN_FIELDS)] == [f.name for f in abi.PLAN_FIELDS]


def _constants(header: str, prefix: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(rf"constexpr int k{prefix}(\w+) = (\d+);", header)}


@pytest.mark.parametrize("dtype", sorted(abi.DTYPES))
def test_kernel_header_input_indices_follow_abi(lowered, dtype):
    dtypes = ("f32",) if dtype == "f32" else ("f32", dtype)
    ctx = core_context(lowered.graph, lowered.op_name, dtypes)
    header = kernel_files(lowered.graph, lowered.op_name, dtypes)[f"{ctx.stem}.h"]
    found = _constants(header, ctx.prefix)
    order = abi.OpInputs(dtype, len(lowered.graph.params))
    expected = {"InputTensor": 0, "OutputTensor": 0, "NumInputs": order.first_state}
    expected |= {f"Param{k}Tensor": i for k, i in enumerate(order.params)}
    expected |= {f"{d.name.capitalize()}Tensor": order.extra(d.name) for d in order.extras}
    assert found == expected
    assert f"#define FUSEGEN_MAX_CHUNK {abi.MAX_CHUNK}\n" in header
    assert f"Register_{ctx.op_name}()" in header and ctx.op_name.startswith(abi.OP_PREFIX)


class _OptionDef(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("kind", ctypes.c_int), ("default", ctypes.c_int64)]


@pytest.fixture(scope="module")
def shell():
    from cbuild import build_shared_library

    from fusegen.paths import RUNTIME
    return ctypes.CDLL(str(build_shared_library(
        [RUNTIME / "shell" / "fg_shell.c", RUNTIME / "options" / "fg_flexbuffer.c"],
        with_runtime=False)))


def _read(shell, options: tuple[abi.OptionDef, ...], data: bytes) -> list[int]:
    kinds = {"bool": 0, "int": 1}  # FgOptionKind, fg_shell.h
    defs = (_OptionDef * len(options))(*[(o.key.encode(), kinds[o.kind], o.default)
                                         for o in options])
    values = (ctypes.c_int64 * len(options))()
    message = ctypes.create_string_buffer(160)
    status = shell.fg_shell_read_options(defs, len(options), data, ctypes.c_size_t(len(data)),
                                         b"OP", values, message, ctypes.c_size_t(160))
    assert status == 0, message.value
    return list(values)


def test_option_bytes_written_in_python_read_by_the_shell_by_kind(shell):
    """encode_options (the converter's writer) -> fg_shell_read_options (the kernel's reader),
    with abi.OPTIONS and with an int option added: an int is read as an int."""
    from fusegen.converter.tflite_file import encode_options

    written = abi.option_values(True, False, True, False)  # float32: no weight_layout, 0
    # an unmasked op does not write mask / zero_output_for_mask (nor units): the defaults
    assert _read(shell, abi.OPTIONS, encode_options(written)) == [1, 0, 1, 0, 0, 0, 0, 0]
    int8 = {**written, "weight_layout": abi.WEIGHT_LAYOUTS["s8"]}  # what the int8 writer adds
    assert _read(shell, abi.OPTIONS, encode_options(int8)) == [1, 0, 1, 0, 1, 0, 0, 0]
    carried = abi.option_values(False, True, False, True, units=70000)  # an LSTMP's units
    assert _read(shell, abi.OPTIONS, encode_options(carried)) == [0, 1, 0, 1, 0, 0, 0, 70000]
    assert _read(shell, abi.OPTIONS, b"") == [o.default for o in abi.OPTIONS]
    masked = abi.option_values(False, True, False, True, abi.MASK_STEPS, True)
    assert _read(shell, abi.OPTIONS, encode_options(masked)) == [0, 1, 0, 1, 0, abi.MASK_STEPS, 1,
                                                                  0]
    options = (*abi.OPTIONS, abi.OptionDef("window", "int", 3, "an integer option"))
    got = _read(shell, options, encode_options({**written, "window": 1234567}))
    assert got == [1, 0, 1, 0, 0, 0, 0, 0, 1234567]
    assert _read(shell, options, encode_options(written))[-1] == 3  # missing: the default


def test_the_shells_abi_header_is_rendered_from_abi_py():
    """tflm_kernels/shell/fg_abi.h (compiled into the shell and its tests) is abi.py's."""
    from fusegen.codegen import ABI_HEADER, abi_header
    from fusegen.paths import RUNTIME

    assert (RUNTIME / ABI_HEADER).read_text() == abi_header()
    text = abi_header()
    assert f"#define FG_NUM_OPTIONS {len(abi.OPTIONS)}\n" in text
    assert f"#define FG_NUM_S8_INPUTS {len(abi.S8_INPUTS)}\n" in text
    for k, option in enumerate(abi.OPTIONS):
        assert f"  {option.c_enum} = {k}," in text
        assert f'{{"{option.key}", {option.c_kind}, {option.default}}}' in text


def test_float32_activation_constants_seen_from_c_equal_abi_py(tmp_path):
    """fg_abi.h's FG_F32_* hexadecimal literals, compiled, are abi.py's F32_* values rounded to
    float32 bit for bit (the numpy twin rounds the same numbers: reference/float_activations.py)."""
    names = {"EXP2_SHIFTER": abi.F32_EXP2_SHIFTER, "MINUS_LOG2E": abi.F32_MINUS_LOG2E,
             "TWO_LOG2E": abi.F32_TWO_LOG2E, "SIGMOID_LIMIT": abi.F32_SIGMOID_LIMIT,
             "TANH_LIMIT": abi.F32_TANH_LIMIT, "EXP2_A2": abi.F32_EXP2_A2,
             "EXP2_B1": abi.F32_EXP2_B1, "EXP2_B3": abi.F32_EXP2_B3}
    lines = "".join(f'  f = FG_F32_{n}; memcpy(&u, &f, 4); printf("{n} %08x\\n", u);\n'
                    for n in names)
    src = tmp_path / "consts.c"
    src.write_text('#include <stdio.h>\n#include <string.h>\n#include <stdint.h>\n'
                   '#include "tflm_kernels/shell/fg_abi.h"\n'
                   f"int main(void) {{\n  float f; uint32_t u;\n{lines}  return 0;\n}}\n")
    exe = tmp_path / "consts"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME_INCLUDE}", str(src),
                    "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    got = dict(zip(out[::2], out[1::2]))
    for name, value in names.items():
        assert int(got[name], 16) == int(np.float32(value).view(np.uint32)), name
