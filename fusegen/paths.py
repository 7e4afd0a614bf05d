"""Where fusegen's non-Python parts are: templates and runtime inside the package (package data),
the firmware next to the package in a repository checkout."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
TEMPLATES = PACKAGE / "templates"
RUNTIME = PACKAGE / "tflm_kernels"
# The include root of the runtime: its headers are included as "tflm_kernels/runtime/...".
RUNTIME_INCLUDE = PACKAGE
FIRMWARE = ROOT / "firmware"

if not TEMPLATES.is_dir():
    raise ImportError(f"fusegen: {TEMPLATES} is missing; reinstall fusegen")
