"""Where fusegen's non-Python parts are, in a checkout (editable install) and in an installed
package alike: templates and runtime are package data; the firmware is top-level firmware/ in a
checkout and fusegen/_firmware in an installed package (setup.py)."""

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent  # the repository root in a checkout; site-packages when installed
TEMPLATES = PACKAGE / "templates"
RUNTIME = PACKAGE / "tflm_kernels"
# The include root of the runtime: its headers are included as "tflm_kernels/runtime/...".
RUNTIME_INCLUDE = PACKAGE
CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "firmware").is_dir()
FIRMWARE = ROOT / "firmware" if CHECKOUT else PACKAGE / "_firmware"
# Build outputs and compiled host cores: build/ of a checkout, else the user's cache directory;
# FUSEGEN_CACHE overrides both.
CACHE = Path(os.environ.get("FUSEGEN_CACHE") or (
    ROOT / "build" if CHECKOUT else
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fusegen"))

if not TEMPLATES.is_dir():
    raise ImportError(f"fusegen: {TEMPLATES} is missing; reinstall fusegen")
