"""The int8 matrices' byte order (abi.pack_s8_matrix, WEIGHT_LAYOUT_S8_BLOCKS): defined once in
abi.py, read by fg_matmul_s8 and by the integer twin; recorded in the op's custom options."""

from __future__ import annotations

import numpy as np
import pytest

from fusegen import abi


def test_block_order_by_hand():
    # A [5, 21] matrix holding its own row-major index: rows 0-3 are one group (4 * 21 = 84
    # bytes): the 4 x 16 block (columns 0-15 of rows 0, 1, 2, 3), the 4 x 4 block of the next
    # whole word (columns 16-19), the last column (20) of each row; row 4 (after the last group)
    # stays row-major.
    m = np.arange(5 * 21).reshape(5, 21)
    want = []
    for r in range(4):
        want += list(range(21 * r, 21 * r + 16))
    for r in range(4):
        want += list(range(21 * r + 16, 21 * r + 20))
    want += [20, 41, 62, 83]
    want += list(range(84, 105))
    assert abi.pack_s8_matrix(m).ravel().tolist() == want
    assert abi.S8_BLOCK_ROWS == 4 and abi.S8_BLOCK_DEPTH == 16


@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 13, 128])
@pytest.mark.parametrize("depth", [1, 2, 4, 7, 16, 17, 28, 35, 64, 100])
def test_pack_is_a_permutation_of_the_same_size(rows, depth):
    rng = np.random.default_rng(rows * 1000 + depth)
    m = rng.integers(-127, 128, (rows, depth)).astype(np.int8)
    stored = abi.pack_s8_matrix(m)
    assert stored.shape == m.shape and stored.dtype == np.int8 and stored.nbytes == m.nbytes
    assert np.array_equal(abi.unpack_s8_matrix(stored), m)
    assert sorted(abi.s8_block_order(rows, depth).tolist()) == list(range(rows * depth))
    # every group and every 4 x 16 block starts at a multiple of 4 bytes from the matrix
    assert (4 * depth) % 4 == 0


def test_layouts_per_dtype_are_in_the_options_and_the_header():
    from fusegen.codegen import abi_header

    options = {o.key: o for o in abi.OPTIONS}
    assert options["weight_layout"].kind == "int"
    assert options["weight_layout"].default == abi.WEIGHT_LAYOUTS["f32"] == 0
    header = abi_header()
    assert f"#define FG_WEIGHT_LAYOUT_S8 {abi.WEIGHT_LAYOUTS['s8']}" in header
    assert f"#define FG_S8_BLOCK_DEPTH {abi.S8_BLOCK_DEPTH}" in header
