#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite: Python tests and the GoogleTest
# binaries, which pytest collects through pytest-cpp after tests/conftest.py builds them.
# Tests run in pytest-xdist workers, one per core (at most 4: each imports TensorFlow),
# FUSEGEN_TEST_JOBS overrides; a test file stays in one worker (--dist loadfile), so its module
# fixtures (converted models, built firmware) are made once. `-n 0` after it runs in-process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=${FUSEGEN_TEST_JOBS:-$(nproc)}
[ "$jobs" -le 4 ] || jobs=4
exec .venv/bin/python -m pytest -n "$jobs" --dist loadfile "$@"
