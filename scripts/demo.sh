#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs fusegen's main job on the built-in default: compare LSTM,
# GRU, SimpleRNN and an example custom cell trained on JapaneseVowels, float32 and int8, on the
# emulated Cortex-M4 when QEMU is present (else on the host). Extra arguments go to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fusegen compare -o report "$@"
