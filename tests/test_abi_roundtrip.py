"""STYLE.md item 9: what crosses into C is defined once (fusegen/abi.py) and seen the same from C.

- The Plan struct: its layout compiled from the generated header (offsetof, sizeof) equals the
  ctypes mirror the host runners build from abi.PLAN_FIELDS.
- The op's input order per dtype, the default chunk size and the option types: the generated
  kernel header declares the indices and types abi.OpInputs / abi.OPTIONS give.
(Option bytes written by Python and decoded in C: tests/test_opdef_roundtrip.py.)
"""

from __future__ import annotations

import ctypes
import re
import subprocess

import keras
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


def test_option_kind_picks_the_c_reader_and_type(lowered, monkeypatch):
    """An int option is read as an int (fg_flex_get_int into int64_t), a bool as a bool."""
    import fusegen.codegen as codegen

    extra = abi.OptionDef("window", "int", 3, "an integer option")
    monkeypatch.setattr(codegen, "OPTIONS", (*abi.OPTIONS, extra))
    files = kernel_files(lowered.graph, lowered.op_name)
    stem = lowered.op_name.lower()
    kernel, header = files[f"{stem}.cc"], files[f"{stem}.h"]
    assert 'fg_flex_get_int(data->options, data->options_length, "window", &value)' in kernel
    assert "int64_t value = 3;" in kernel and "  int64_t window;\n" in header
    for option in abi.OPTIONS:
        assert option.kind == "bool"
        assert f'fg_flex_get_bool(data->options, data->options_length, "{option.key}"' in kernel
        assert f"  int {option.key};\n" in header
