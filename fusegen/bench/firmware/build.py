"""Builds the benchmark firmware (firmware/CMakeLists.txt) with CMake, incrementally.

Each configuration gets its own build directory, ``build/firmware-<config.name>``; running the
same configuration again re-runs CMake and the build tool, which only rebuild what changed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from fusegen import paths

REPO_ROOT = paths.ROOT
FIRMWARE_DIR = paths.FIRMWARE
DEFAULT_BUILD_ROOT = paths.CACHE

# CMAKE_BUILD_TYPE for each optimisation level the firmware supports.
BUILD_TYPES = {"O2": "Release", "Os": "MinSizeRel", "Og": "Debug"}
REQUIRED_TOOLS = ("cmake", "arm-none-eabi-gcc", "arm-none-eabi-g++")
_CONFIGURE_TIMEOUT_S = 120
_BUILD_TIMEOUT_S = 900


class FirmwareBuildError(Exception):
    """CMake failed to configure or build the firmware; the message carries its output."""


def boards() -> tuple[str, ...]:
    """The board ports: every firmware/bsp/<board>/board.cmake, and generic."""
    found = sorted(p.parent.name for p in (FIRMWARE_DIR / "bsp").glob("*/board.cmake"))
    return (*found, "generic")


@dataclass(frozen=True)
class FirmwareConfig:
    """One firmware variant. With no model_sources the echo test model is built.

    target (fusegen/bench/targets.py) gives the toolchain, core flags, stack and buffer sizes and,
    unless board says otherwise, the board port; "generic" builds the generic port for a real
    board with that target's core flags."""

    board: str = ""
    opt: str = "O2"
    model_sources: tuple[Path, ...] = ()
    model_include_dirs: tuple[Path, ...] = ()
    # Further -D definitions, e.g. {"FUSEGEN_STACK_BYTES": "32768"} or, for the generic port,
    # FUSEGEN_BOARD_SOURCES and FUSEGEN_LINKER_SCRIPT. They override the target's.
    cache: dict[str, str] = field(default_factory=dict)
    target: str = "qemu-m4"

    def __post_init__(self) -> None:
        from fusegen.bench.targets import get

        target = get(self.target)
        if not self.board:
            object.__setattr__(self, "board", target.bsp)
        if self.board not in boards():
            raise ValueError(f"unknown board {self.board!r}; choose from {boards()}")
        if self.opt not in BUILD_TYPES:
            raise ValueError(f"unknown optimisation {self.opt!r}; choose from {list(BUILD_TYPES)}")

    @property
    def name(self) -> str:
        """Build directory suffix: board, optimisation and, unless default, a digest."""
        base = f"{self.board}-{self.opt}"
        if self.target != "qemu-m4":
            base = f"{self.target}-{base}"
        if not self.model_sources and not self.model_include_dirs and not self.cache:
            return base
        return f"{base}-{self._digest()}"

    def _digest(self) -> str:
        text = repr(
            (
                sorted(map(str, self.model_sources)),
                sorted(map(str, self.model_include_dirs)),
                sorted(self.cache.items()),
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def cmake_definitions(self) -> dict[str, str]:
        from fusegen.bench.targets import get

        definitions = {
            **get(self.target).cmake_cache(),
            "CMAKE_BUILD_TYPE": BUILD_TYPES[self.opt],
            "FUSEGEN_BOARD": self.board,
            "FUSEGEN_MODEL_SOURCES": ";".join(str(Path(p).resolve()) for p in self.model_sources),
            "FUSEGEN_MODEL_INCLUDE_DIRS": ";".join(
                str(Path(p).resolve()) for p in self.model_include_dirs
            ),
        }
        definitions.update(self.cache)
        return definitions


def missing_tools(tools: tuple[str, ...] = REQUIRED_TOOLS) -> list[str]:
    """The tools of ``tools`` that are not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def build_dir(config: FirmwareConfig, build_root: Path = DEFAULT_BUILD_ROOT) -> Path:
    return Path(build_root) / f"firmware-{config.name}"


def build_firmware(config: FirmwareConfig, build_root: Path = DEFAULT_BUILD_ROOT) -> Path:
    """Configures (if needed) and builds; returns the path of fw.elf."""
    from fusegen.bench.targets import get

    missing = missing_tools(tuple(t for t in get(config.target).tools if "qemu" not in t))
    if missing:
        raise FirmwareBuildError(f"missing tools: {', '.join(missing)} (run scripts/setup.sh)")
    out = build_dir(config, build_root)
    configure = ["cmake", "-S", str(FIRMWARE_DIR), "-B", str(out)]
    if shutil.which("ninja") and not (out / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    configure += [f"-D{key}={value}" for key, value in config.cmake_definitions().items()]
    _run(configure, _CONFIGURE_TIMEOUT_S, "configure")
    _run(["cmake", "--build", str(out)], _BUILD_TIMEOUT_S, "build")
    return out / "fw.elf"


def _run(command: list[str], timeout: float, what: str) -> None:
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise FirmwareBuildError(f"firmware {what} timed out after {timeout} s") from e
    if done.returncode != 0:
        raise FirmwareBuildError(
            f"firmware {what} failed ({' '.join(command)}):\n{done.stdout}\n{done.stderr}"
        )
