"""STYLE.md item 9: the op's option keys are defined once (fusegen/opdef.py); the bytes the
converter path writes decode to the same values in C, looked up by the keys the generated
kernel renders."""

from __future__ import annotations

import ctypes
import itertools

import pytest
from cbuild import REPO, build_shared_library

from fusegen.codegen import kernel_files
from fusegen.converter.tflite_file import encode_options
from fusegen.lower import lower_cell
from fusegen.abi import OPTIONS, option_values


@pytest.fixture(scope="module")
def flex():
    lib = ctypes.CDLL(str(build_shared_library([REPO / "fusegen/tflm_kernels/options/fg_flexbuffer.c"],
                                               with_runtime=False)))
    lib.fg_flex_get_bool.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                     ctypes.POINTER(ctypes.c_int)]
    return lib


# The bool options the converter writes for every op (weight_layout, an int, is the int8 writer's:
# tests/test_abi_roundtrip.py reads it back through the shell).
BOOLS = [o for o in OPTIONS if o.kind == "bool"]


@pytest.mark.parametrize("values", list(itertools.product([False, True], repeat=len(BOOLS))))
def test_options_written_in_python_read_in_c(flex, values):
    written = option_values(*values)
    data = encode_options(written)
    for option in BOOLS:
        out = ctypes.c_int(-7)
        status = flex.fg_flex_get_bool(data, len(data), option.key.encode(), ctypes.byref(out))
        assert status == 0 and bool(out.value) == written[option.key]


def test_generated_kernel_runs_the_shell_that_reads_every_option_by_key():
    """The kernel hands its options to the shell (fg_shell_prepare), whose table has every key."""
    import keras

    from fusegen.codegen import abi_header

    lowered = lower_cell(lambda u: keras.layers.SimpleRNNCell(u))
    kernel = kernel_files(lowered.graph, lowered.op_name)["fusegen_simple_rnn.cc"]
    assert "shell::Prepare<OpData>(context, node, kConfig, FUSEGEN_MAX_CHUNK)" in kernel
    for option in OPTIONS:
        assert f'{{"{option.key}", kFgOptionKind' in abi_header()
