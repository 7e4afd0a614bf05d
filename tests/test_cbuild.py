"""tests/cbuild.py's shared-library helper, as other tests use it to load generated C."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from cbuild import BuildError, build_shared_library

CORE = """
#include "tflm_kernels/runtime/fg_runtime.h"

float half_sigmoid_of(float x);
float half_sigmoid_of(float x) {
  float y;
  fg_unary_f32(kFgSigmoid, &x, &y, 1);
  return 0.5f * y;
}
"""


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.half_sigmoid_of.restype = ctypes.c_float
    lib.half_sigmoid_of.argtypes = [ctypes.c_float]
    return lib


def test_links_the_runtime_and_loads_with_ctypes(tmp_path: Path) -> None:
    src = tmp_path / "core.c"
    src.write_text(CORE)
    assert load(build_shared_library([src])).half_sigmoid_of(0.0) == 0.25  # 0.5 * 1/(1+1)


def test_cache_is_keyed_by_content_not_location(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "core.c", tmp_path / "b" / "core.c"
    for src in (a, b):
        src.parent.mkdir()
        src.write_text(CORE)
    assert build_shared_library([a]) == build_shared_library([b])
    b.write_text(CORE.replace("0.5f", "0.25f"))
    assert build_shared_library([a]) != build_shared_library([b])


def test_warnings_are_errors_and_reported(tmp_path: Path) -> None:
    src = tmp_path / "bad.c"
    src.write_text("double twice(float x);\ndouble twice(float x) { return x * 2.0; }\n")
    with pytest.raises(BuildError, match="double-promotion"):
        build_shared_library([src], with_runtime=False)
