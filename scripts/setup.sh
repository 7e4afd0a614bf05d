#!/usr/bin/env bash
# Installs what fusegen needs on a fresh Debian machine: system packages (host compiler, CMake,
# GoogleTest, the arm-none-eabi toolchain and QEMU for the emulated Cortex-M cores, the RISC-V
# toolchain, picolibc and QEMU for the emulated RV32 target, clang for the libFuzzer harnesses) and a virtual environment in .venv with fusegen installed in editable mode.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(build-essential cmake googletest libgtest-dev gcc-arm-none-eabi
              libnewlib-arm-none-eabi qemu-system-arm clang valgrind
              gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install with sudo: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test,compare]"
# tf_keras (Keras 2), for the tests: files it wrote (.h5, legacy .keras) and the TFLM baselines
# (only a tf_keras LSTM converts to TF's builtin UNIDIRECTIONAL_SEQUENCE_LSTM; Keras 3 gives a
# WHILE loop). --no-deps: it requires the `tensorflow` package, which drags in CUDA; fusegen has
# the same version as tensorflow-cpu.
.venv/bin/python -m pip install -q --no-deps "tf-keras==2.21.0"
echo "setup: ready (.venv)"
