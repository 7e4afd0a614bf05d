#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite: Python tests and the GoogleTest
# binaries, which pytest collects through pytest-cpp after tests/conftest.py builds them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
