"""The user's TFLM build, from the environment: fusegen ships none, so the tests that need one
are skipped unless these are set.

    FUSEGEN_TFLM_INCLUDE  colon-separated include dirs (TFLM root, flatbuffers/include, ...)
    FUSEGEN_TFLM_LIB      libtensorflow-microlite.a for the host (.../gen/<target>/lib/...)
    FUSEGEN_TFLM_M4_LIB   the same built for Cortex-M4F (TARGET=cortex_m_generic
                          TARGET_ARCH=cortex-m4+fp), for the firmware's TFLM mode on QEMU
    FUSEGEN_TFLM_FLAGS    optional extra compiler flags, space-separated
    FUSEGEN_TFLM_RELEASE_LIB  optional: the host library built with BUILD_TYPE=release
                          (tests/test_tflm_release.py links it with -DTF_LITE_STRIP_ERROR_STRINGS)
"""

from __future__ import annotations

import os

import pytest

TFLM_INCLUDE = [d for d in os.environ.get("FUSEGEN_TFLM_INCLUDE", "").split(":") if d]
TFLM_LIB = os.environ.get("FUSEGEN_TFLM_LIB", "")
TFLM_M4_LIB = os.environ.get("FUSEGEN_TFLM_M4_LIB", "")
TFLM_FLAGS = os.environ.get("FUSEGEN_TFLM_FLAGS", "").split()
# Like FUSEGEN_TFLM_M4_LIB, a set FUSEGEN_TFLM_RELEASE_LIB that names no file yet (a release build
# still running) counts as not given: the release tests skip, the others link FUSEGEN_TFLM_LIB.
_RELEASE = os.environ.get("FUSEGEN_TFLM_RELEASE_LIB", "")
TFLM_RELEASE_LIB = _RELEASE if os.path.isfile(_RELEASE) else ""

needs_tflm = pytest.mark.skipif(
    not (TFLM_INCLUDE and TFLM_LIB),
    reason="needs a TFLM build: set FUSEGEN_TFLM_INCLUDE (colon-separated include dirs) and "
           "FUSEGEN_TFLM_LIB (libtensorflow-microlite.a)")
needs_tflm_headers = pytest.mark.skipif(
    not TFLM_INCLUDE, reason="needs TFLM headers: set FUSEGEN_TFLM_INCLUDE")
# A set FUSEGEN_TFLM_M4_LIB that names no file yet (a cross build still running) skips too.
needs_tflm_m4 = pytest.mark.skipif(
    not (TFLM_INCLUDE and TFLM_M4_LIB and os.path.isfile(TFLM_M4_LIB)),
    reason="needs a TFLM built for cortex-m4+fp: set FUSEGEN_TFLM_INCLUDE and FUSEGEN_TFLM_M4_LIB "
           f"(to an existing libtensorflow-microlite.a; now {TFLM_M4_LIB!r})")
