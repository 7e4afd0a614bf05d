"""Where the repository's non-Python parts are (fusegen is installed editable from the repo)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "op_templates"
RUNTIME = ROOT / "tflm_kernels"
FIRMWARE = ROOT / "firmware"

if not TEMPLATES.is_dir():
    raise ImportError(f"fusegen: {TEMPLATES} is missing; install fusegen from its repository "
                      "with `pip install -e .` so the templates and kernels are found")
