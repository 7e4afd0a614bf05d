"""Variable-length sequences from users' files, as `verify` and `compare` read them.

Two forms a user has at hand, both accepted wherever a data array is read:

- ragged: an object array of N per-sequence arrays, each [L_i, F] (or [L_i] for one feature),
  as `np.save("x.npy", np.array(seqs, dtype=object))` or `np.savez(..., x=...)` writes it.
  Object arrays are pickles; they are read with an unpickler that rebuilds numpy arrays and
  nothing else (no code in the file runs).
- padded: a numeric [N, T, F] array plus N lengths (a separate `L.npy`, or `lengths` in the
  .npz), each sequence's real steps first (`pad_sequences(..., padding="post")`); the steps after
  a sequence's length are ignored, whatever they hold.

`Sequences` holds them as one padded array and the lengths; every problem is one line (a
`UserError` subclass the caller picks).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusegen.errors import UserError
from fusegen.fileio import read_bytes

# What an object array's pickle may name: numpy's array and dtype rebuilders, nothing else.
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"the file names {module}.{name}, not a numpy array")
        return super().find_class(module, name)


@dataclass(frozen=True)
class Sequences:
    """N sequences: x [N, T, F] float32 (steps after each length are padding) and lengths [N]."""

    x: np.ndarray
    lengths: np.ndarray  # int64, in 1..T

    @property
    def ragged(self) -> bool:
        """Not every sequence is T steps long."""
        return bool(np.any(self.lengths < self.x.shape[1]))

    def frames(self) -> np.ndarray:
        """Every real step of every sequence, [sum(lengths), F]."""
        return np.concatenate([s[:n] for s, n in zip(self.x, self.lengths)])

    def padded(self, timesteps: int, value: float, error: type[UserError] = UserError,
               what: str = "the data") -> np.ndarray:
        """[N, timesteps, F] float32: each sequence's real steps first, then `value`."""
        if int(self.lengths.max()) > timesteps:
            raise error(f"{what}: a sequence has {int(self.lengths.max())} steps, more than "
                        f"T={timesteps}; cut it or convert the model with a longer input")
        out = np.full((len(self.x), timesteps, self.x.shape[2]), value, np.float32)
        for k, (s, n) in enumerate(zip(self.x, self.lengths)):
            out[k, :n] = s[:n]
        return out

    def map_frames(self, f) -> Sequences:
        """The same lengths, f applied to the real steps (padding stays zero)."""
        x = np.zeros_like(self.x)
        for k, (s, n) in enumerate(zip(self.x, self.lengths)):
            x[k, :n] = f(s[:n])
        return Sequences(x, self.lengths)

    def take(self, index: np.ndarray) -> Sequences:
        return Sequences(self.x[index], self.lengths[index])

    def cycled(self, length: int) -> np.ndarray:
        """[N, length, F]: each sequence's real steps repeated until `length` steps (real data
        at exactly that length, for timing)."""
        return np.stack([np.resize(s[:n], (length, s.shape[1])) for s, n in
                         zip(self.x, self.lengths)]).astype(np.float32)


def read_array(path: Path, what: str, error: type[UserError] = UserError,
               member: str | None = None) -> np.ndarray:
    """A .npy array, or `member` of a .npz; object arrays through the arrays-only unpickler."""
    data = read_bytes(path, what)
    label = f"{what} {path}".strip()
    try:
        if member is None:
            return _npy(io.BytesIO(data))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist()]
            if member not in names:
                raise error(f"{label}: has arrays {sorted(names)}; expected {member}")
            with archive.open(f"{member}.npy") as f:
                return _npy(io.BytesIO(f.read()))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - bad files raise many types
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise error(f"{label}: not a readable {'.npz' if member else '.npy'} ({first})") from None


def npz_members(path: Path, what: str) -> list[str]:
    """The array names of a .npz."""
    try:
        with zipfile.ZipFile(io.BytesIO(read_bytes(path, what))) as archive:
            return [n.removesuffix(".npy") for n in archive.namelist()]
    except zipfile.BadZipFile:
        return []


def is_object_npy(path: Path) -> bool:
    """A readable .npy whose header declares an object array (False for anything else: the
    numeric reader then says what is wrong)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            return read_header(f)[2] == np.dtype(object)
    except Exception:  # noqa: BLE001 - not an .npy: load_npy reports it
        return False


def _npy(f: io.BytesIO) -> np.ndarray:
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(f)
    if dtype != np.dtype(object):
        f.seek(0)
        return np.load(f, allow_pickle=False)
    array = _ArraysOnly(f).load()
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise ValueError("the object array's pickle does not hold the array its header states")
    return array


def from_arrays(x: np.ndarray, lengths: np.ndarray | None, label: str,
                error: type[UserError] = UserError) -> Sequences:
    """Sequences from a ragged object array, or a numeric [N, T, F] array with optional
    lengths (without: every sequence T steps)."""
    if x.dtype == object:
        if lengths is not None:
            raise error(f"{label}: the sequences are an object array, which carries its own "
                        "lengths; give no lengths with it")
        return _from_ragged(x, label, error)
    if x.dtype.kind not in "biuf" or x.ndim != 3 or 0 in x.shape:
        raise error(f"{label}: {x.dtype} {list(x.shape)}; expected numbers [N, T, F], or an "
                    "object array of N sequences [L, F]")
    if lengths is None:
        lengths = np.full(len(x), x.shape[1], np.int64)
    lengths = np.asarray(lengths)
    if lengths.shape != (len(x),) or lengths.dtype.kind not in "iu":
        raise error(f"{label}: {lengths.dtype} {list(lengths.shape)} lengths; expected {len(x)} "
                    "integers, one per sequence")
    if lengths.min() < 1 or lengths.max() > x.shape[1]:
        raise error(f"{label}: lengths must be in 1..{x.shape[1]} (the padded T); found "
                    f"{lengths.min()}..{lengths.max()}")
    lengths = lengths.astype(np.int64)
    if not all(np.all(np.isfinite(s[:n])) for s, n in zip(x, lengths)):
        raise error(f"{label}: contains NaN or inf")
    return Sequences(x.astype(np.float32), lengths)


def _from_ragged(x: np.ndarray, label: str, error: type[UserError]) -> Sequences:
    if x.ndim != 1 or len(x) == 0:
        raise error(f"{label}: an object array of shape {list(x.shape)}; expected N sequences")
    seqs = []
    for k, s in enumerate(x):
        s = np.asarray(s) if isinstance(s, (np.ndarray, list)) else None
        if s is not None and s.ndim == 1:
            s = s[:, None]
        if s is None or s.ndim != 2 or s.dtype.kind not in "biuf" or len(s) == 0:
            raise error(f"{label}: sequence {k} is not a non-empty numeric [L, F] array")
        if not np.all(np.isfinite(s)):
            raise error(f"{label}: sequence {k} contains NaN or inf")
        seqs.append(s.astype(np.float32))
    features = {s.shape[1] for s in seqs}
    if len(features) != 1:
        raise error(f"{label}: the sequences have {sorted(features)} features; all need the "
                    "same F")
    lengths = np.array([len(s) for s in seqs], np.int64)
    out = np.zeros((len(seqs), int(lengths.max()), features.pop()), np.float32)
    for k, s in enumerate(seqs):
        out[k, :len(s)] = s
    return Sequences(out, lengths)
