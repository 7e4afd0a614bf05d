"""Suite-wide pytest setup.

C++ part: at startup the CMake project is configured and built twice, build/host and build/asan
(FUSEGEN_SANITIZE=ON: AddressSanitizer + UndefinedBehaviorSanitizer). Collecting tests/cpp then
yields, through pytest-cpp, the GoogleTest executables of both trees, with ids such as
    build/tests-bin/asan/fg_runtime_f32_test::FgUnary.SigmoidMatchesDefinition
so `pytest tests/`, `pytest tests/cpp` and `pytest -k asan` all work. A compiler error stops the
run before any test, with the compiler's output. Only runs that load this file rebuild: passing a
build/tests-bin/... node id alone runs the existing executable as is.

Under pytest-xdist (scripts/test.sh runs `-n <cores, at most 4> --dist loadfile`) only the
controller builds, in pytest_configure, before the workers start; the workers collect the
executables it built. Each worker gets its own fusegen cache (FUSEGEN_CACHE=build/xdist/<worker>:
firmware build trees are configured and built in place, so two processes must never build into one)
sharing the host-core cache (build/host-cores, written atomically), and single-threaded
TensorFlow/BLAS pools so the workers do not fight over the cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is on sys.path through `pythonpath` in pyproject.toml.
from cbuild import BUILD_DIR, BuildError, build_cmake_tree, built_gtests, gtest_dir


def _isolate_xdist_worker() -> None:
    """Runs at import, in a worker, before any test module imports fusegen (fusegen.paths reads
    FUSEGEN_CACHE once). Child processes (CLI runs, the mutation worker) inherit all of it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    shared = Path(os.environ.get("FUSEGEN_CACHE") or BUILD_DIR)
    own = shared / "xdist" / worker
    own.mkdir(parents=True, exist_ok=True)
    (shared / "host-cores").mkdir(parents=True, exist_ok=True)
    cores = own / "host-cores"
    if not cores.is_symlink():
        cores.symlink_to(shared / "host-cores", target_is_directory=True)
    os.environ["FUSEGEN_CACHE"] = str(own)
    for var in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


_isolate_xdist_worker()

CPP_TESTS_DIR = Path(__file__).resolve().parent / "cpp"
# Tree name -> extra CMake cache options.
CMAKE_TREES: dict[str, dict[str, str]] = {
    "host": {},
    "asan": {"FUSEGEN_SANITIZE": "ON"},
}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # a pytest-xdist worker: the controller process has built already
    if config.option.help:
        return
    try:
        for name, options in CMAKE_TREES.items():
            build_cmake_tree(name, options)
    except BuildError as e:
        pytest.exit(
            f"C/C++ build failed, no tests run.\n{e}", returncode=pytest.ExitCode.INTERRUPTED
        )


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if path == CPP_TESTS_DIR:
        return CppTestsDir.from_parent(parent, path=path)
    return None


class CppTestsDir(pytest.Dir):
    """tests/cpp holds the C++ test sources; the executables built from them live under build/."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        yield from super().collect()
        for name in CMAKE_TREES:
            yield GtestTree.from_parent(self, path=gtest_dir(name))


class GtestTree(pytest.Directory):
    """The GoogleTest executables of one CMake tree, exactly those its manifest lists."""

    def collect(self) -> Iterator[pytest.Collector]:
        for exe in built_gtests(self.path):
            yield from self.ihook.pytest_collect_file(file_path=exe, parent=self)
