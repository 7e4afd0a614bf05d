"""Reading a user's files with one-line errors, and writing files atomically.

Every file fusegen writes for a user (a converted .tflite, each kernel file, compare's cache
entries) goes through `write_bytes`/`write_text`: the data goes to a temporary file in the same
directory, is flushed and fsynced, then `os.replace`d over the target. A reader, a crash or a
kill at any moment sees the old file or the new one, never a part. `Staged` collects several
files and writes them only once every step that makes them has succeeded.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fusegen.errors import UserError

# Called with each temporary file's path after its data is written and before it replaces the
# target: tests set it to kill the process mid-write.
_before_replace = None


def read_bytes(path: Path | str, what: str = "") -> bytes:
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{label} not found") from None
    except IsADirectoryError:
        raise UserError(f"{label} is a directory, not a file") from None
    except OSError as err:
        raise UserError(f"cannot read {label}: {err.strerror or err}") from None


def check_writable(path: Path | str, what: str = "output") -> Path:
    """The target of a write, checked before any work: not a directory, and its directory (or
    the nearest existing one above it, where the missing ones will be made) a writable
    directory."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: directory {parent} is not writable")
    return path


def write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file in the same directory, fsync,
    os.replace)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if _before_replace is not None:
            _before_replace(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise UserError(f"cannot write {path}: {err.strerror or err}") from None
        raise
    _fsync_dir(path.parent)


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode())


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Staged:
    """Files to write together once everything is computed: `add` collects, `commit` writes
    each atomically (an unchanged file is left alone, so builds that include it stay
    incremental). Nothing is written if the caller fails before `commit`."""

    def __init__(self) -> None:
        self.files: dict[Path, bytes] = {}

    def add(self, path: Path | str, data: bytes | str) -> None:
        self.files[Path(path)] = data.encode() if isinstance(data, str) else data

    def commit(self) -> None:
        for path in self.files:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise UserError(f"cannot make directory {path.parent}: "
                                f"{err.strerror or err}") from None
        for path, data in self.files.items():
            if not (path.is_file() and path.read_bytes() == data):
                write_bytes(path, data)


@contextlib.contextmanager
def locked_dir(directory: Path | str, what: str = "directory") -> Iterator[None]:
    """An exclusive fcntl lock on `directory` (its `.lock` file) for the block; a second process
    wanting the same directory fails at once with a one-line error instead of both deleting
    each other's files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{what} {directory} is in use by another fusegen run; wait for it "
                            "or choose another directory") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def load_npy(path: Path | str, what: str = "") -> np.ndarray:
    """A non-empty numeric .npy array (no pickles); any failure one line."""
    label = f"{what} {path}" if what else str(path)
    read_bytes(path, what)  # missing, a directory, unreadable: one line
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - np.load raises many types on bad files
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{label}: not a readable .npy array ({first})") from None
    if not isinstance(x, np.ndarray):
        if hasattr(x, "close"):
            x.close()
        raise UserError(f"{label}: an .npz archive, not a .npy array")
    if x.dtype.kind not in "biuf":
        raise UserError(f"{label}: a {x.dtype} array; expected numbers")
    if x.size == 0:
        raise UserError(f"{label}: the array is empty (shape {list(x.shape)})")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise UserError(f"{label}: contains NaN or inf")
    return x
