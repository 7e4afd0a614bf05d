"""Small sequence-classification data sets that work offline, as fixed-shape float32 arrays.

fusegen kernels run fixed-length sequences, so every data set here is [N, T, F] float32 with
integer labels, split into train / validation / test with a seed:

- `japanese_vowels()`: UCI Japanese Vowels (9 speakers, 12 LPC cepstrum coefficients per frame,
  7 to 29 frames), read from the copy shipped inside the `aeon` wheel (no download).
- `digits()`: scikit-learn's 8x8 digits, each image read as 8 timesteps of 8 pixels; a tiny
  fallback that ships inside the scikit-learn wheel.
- `aeon_dataset(name)`: the other classification sets shipped inside the `aeon` wheel
  (GunPoint: univariate, T=150; BasicMotions: 6 channels, T=100; ItalyPowerDemand; ArrowHead),
  each channel standardised on the training samples.
- `from_npz(train, test)`: the user's own arrays `x` [N, T, F] and `y` [N], standardised per
  channel on the training samples unless `standardize=False` (`--no-standardize`).

Validation is a stratified `val_fraction` of the training split (`--val-fraction`, default 0.2).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fusegen.errors import CompareError

# Japanese Vowels series are 7 to 29 frames long (29 is the longest in either split), so
# padding to 29 keeps every frame of every utterance.
JAPANESE_VOWELS_TIMESTEPS = 29
VAL_FRACTION = 0.2


class DataError(CompareError):
    """Data that cannot be used; the message is one line saying what is wrong."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # [N, T, F] float32
    y_train: np.ndarray  # [N] int64 in [0, len(classes))
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    note: str  # how the arrays were made, for the report
    title: str = ""  # the data set's name for figure titles (JapaneseVowels, GunPoint, ...)
    # Variable-length data: each split's real steps per sample (the rest is mask_value padding)
    lengths_train: np.ndarray | None = None
    lengths_val: np.ndarray | None = None
    lengths_test: np.ndarray | None = None
    mask_value: float | None = None

    @property
    def variable(self) -> bool:
        """Sequences of different lengths, padded with mask_value."""
        return self.mask_value is not None

    @property
    def mean_length(self) -> int:
        """The test sequences' mean length, rounded (T for fixed-length data)."""
        if self.lengths_test is None:
            return self.timesteps
        return max(1, int(np.rint(np.mean(self.lengths_test))))

    def test_sequences(self):
        """The test split as fusegen.sequences.Sequences (lengths T for fixed-length data)."""
        from fusegen.sequences import Sequences

        lengths = (self.lengths_test if self.lengths_test is not None
                   else np.full(len(self.x_test), self.timesteps, np.int64))
        return Sequences(self.x_test, lengths)

    @property
    def timesteps(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def features(self) -> int:
        return int(self.x_train.shape[2])

    def digest(self) -> str:
        """Content hash of every array and the class names (the cache key of trained models)."""
        h = hashlib.sha256(repr(self.classes).encode())
        if self.variable:
            h.update(repr(("mask", self.mask_value)).encode())
        for a in (self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test,
                  *((self.lengths_train, self.lengths_val, self.lengths_test)
                    if self.variable else ())):
            h.update(repr((a.shape, a.dtype.str)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def repadded(self, value: float, what: str) -> Dataset:
        """The same variable-length data padded with `value` (a given model's own Masking
        value) instead of mask_value; a DataError when a real step equals it in every feature
        (Keras would skip that step as padding). `what` names the model for the message."""
        splits = {}
        for split in ("train", "val", "test"):
            x, lengths = getattr(self, f"x_{split}"), getattr(self, f"lengths_{split}")
            real = np.arange(x.shape[1])[None, :] < lengths[:, None]
            if np.any(np.all(x == np.float32(value), axis=-1) & real):
                raise DataError(f"{what} masks steps equal to {value:g}, and a real step of the "
                                f"{split} data is all {value:g}: Keras would skip it; give a "
                                "model whose Masking value no real step takes")
            splits[f"x_{split}"] = np.where(real[..., None], x, np.float32(value)).astype(
                x.dtype)
        note = self.note.replace(f"with {self.mask_value:g} (below every real value), masked "
                                 f"by Keras Masking({self.mask_value:g})",
                                 f"with {value:g}, the given model's Masking value")
        return replace(self, **splits, mask_value=float(value), note=note)

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """At most n training, n validation and n test samples, chosen with `seed`."""
        rng = np.random.default_rng(seed)

        def pick(x: np.ndarray, y: np.ndarray, lengths: np.ndarray | None):
            keep = np.sort(rng.permutation(len(x))[:n])
            return x[keep], y[keep], None if lengths is None else lengths[keep]

        (xt, yt, lt), (xv, yv, lv), (xs, ys, ls) = (
            pick(self.x_train, self.y_train, self.lengths_train),
            pick(self.x_val, self.y_val, self.lengths_val),
            pick(self.x_test, self.y_test, self.lengths_test))
        return replace(self, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys,
                       lengths_train=lt, lengths_val=lv, lengths_test=ls,
                       note=f"{self.note}; subset of at most {n} samples per split (seed {seed})")


def japanese_vowels(timesteps: int = JAPANESE_VOWELS_TIMESTEPS, seed: int = 0,
                    val_fraction: float = VAL_FRACTION) -> Dataset:
    """The official train (270) / test (370) split; validation is a stratified VAL_FRACTION of
    train. Channels are standardized with the training frames' mean and standard deviation, then
    each series is zero-padded at the *front* (zero is the channel mean after standardizing) or,
    if longer than `timesteps`, cut to its last `timesteps` frames. Front padding puts the real
    frames last, next to the state the classifier reads; the model needs no mask."""
    from aeon.datasets import load_japanese_vowels

    x_train, y_train = load_japanese_vowels(split="train")
    x_test, y_test = load_japanese_vowels(split="test")
    frames = np.concatenate([x.T for x in x_train])  # [frames, 12]
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    train = np.stack([_front_pad((x.T - mean) / std, timesteps) for x in x_train])
    test = np.stack([_front_pad((x.T - mean) / std, timesteps) for x in x_test])
    classes = tuple(sorted(set(y_train) | set(y_test), key=str))
    index = {c: k for k, c in enumerate(classes)}
    ytr = np.array([index[c] for c in y_train], np.int64)
    yte = np.array([index[c] for c in y_test], np.int64)
    note = (f"JapaneseVowels (aeon wheel): official train/test split, {val_fraction:.0%} of train "
            f"held out for validation (stratified, seed {seed}); channels standardized on the "
            f"training frames; series zero-padded at the front (or cut to their last frames) "
            f"to T={timesteps}")
    return _with_val("japanese_vowels", train, ytr, test, yte,
                     tuple(f"speaker {c}" for c in classes), note, seed, val_fraction,
                     "JapaneseVowels")


def digits(seed: int = 0, val_fraction: float = VAL_FRACTION) -> Dataset:
    """sklearn's 1,797 8x8 digit images as 8 timesteps (rows) of 8 features (pixels / 16);
    a stratified 25 % test split, then VAL_FRACTION of the rest for validation."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed,
                                                        stratify=y)
    note = (f"sklearn digits: each 8x8 image read row by row as T=8 steps of F=8 pixels/16; "
            f"stratified 25% test split, {val_fraction:.0%} of the rest for validation "
            f"(seed {seed})")
    return _with_val("digits", x_train, y_train, x_test, y_test,
                     tuple(str(c) for c in range(10)), note, seed, val_fraction, "sklearn digits")


# The classification sets of the aeon wheel besides JapaneseVowels: --dataset name -> (aeon's
# loader, the set's name).
AEON = {"gunpoint": ("load_gunpoint", "GunPoint"),
        "basic_motions": ("load_basic_motions", "BasicMotions"),
        "italy_power_demand": ("load_italy_power_demand", "ItalyPowerDemand"),
        "arrow_head": ("load_arrow_head", "ArrowHead")}


def aeon_dataset(name: str, seed: int = 0, val_fraction: float = VAL_FRACTION) -> Dataset:
    """An equal-length set shipped in the aeon wheel: its official train/test split, [N, C, T]
    read as T timesteps of C features, each channel standardised on the training samples."""
    import aeon.datasets

    loader, title = AEON[name]
    load_split = getattr(aeon.datasets, loader)
    x_train, y_train = load_split(split="train")
    x_test, y_test = load_split(split="test")
    x_train = np.transpose(np.asarray(x_train, np.float32), (0, 2, 1))
    x_test = np.transpose(np.asarray(x_test, np.float32), (0, 2, 1))
    x_train, x_test, how = standardize(x_train, x_test)
    classes = tuple(sorted(set(y_train.tolist()) | set(y_test.tolist()), key=str))
    index = {c: k for k, c in enumerate(classes)}
    ytr = np.array([index[c] for c in y_train.tolist()], np.int64)
    yte = np.array([index[c] for c in y_test.tolist()], np.int64)
    note = (f"{title} (aeon wheel): official train/test split, {val_fraction:.0%} of train held "
            f"out for validation (stratified, seed {seed}); {how}")
    return _with_val(name, x_train, ytr, x_test, yte, tuple(str(c) for c in classes), note,
                     seed, val_fraction, title)


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Each channel (last axis) to zero mean and unit variance with the training samples' mean
    and standard deviation over samples and timesteps (a constant channel is only centred)."""
    mean = x_train.mean(axis=(0, 1), dtype=np.float64)
    std = x_train.std(axis=(0, 1), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    scale = (lambda x: ((x - mean) / std).astype(np.float32))
    return scale(x_train), scale(x_test), ("each channel standardised with the training "
                                           "samples' mean and standard deviation")


def from_npz(train: Path, test: Path, seed: int = 0, val_fraction: float = VAL_FRACTION,
             standardized: bool = True) -> Dataset:
    """The user's arrays: each .npz holds `x` and `y` [N] (labels of any kind; they are
    numbered in sorted order). `x` is [N, T, F] numbers, or sequences of different lengths: an
    object array of N [L, F] arrays, or [N, T, F] padded after each sequence's real steps with
    `lengths` [N] beside it (fusegen/sequences.py). Validation is `val_fraction` of train. With
    `standardized`, each channel is standardised on the training samples' real steps (the test
    samples with the training mean and deviation). Variable-length sequences are padded after
    their real steps to the longest of both files with `padding_value` (Dataset.mask_value)."""
    train_seq, y_train = _read_npz(train)
    test_seq, y_test = _read_npz(test)
    variable = train_seq.ragged or test_seq.ragged
    if train_seq.x.shape[2] != test_seq.x.shape[2] or (
            not variable and test_seq.x.shape[1:] != train_seq.x.shape[1:]):
        raise DataError(f"{test}: x is {test_seq.x.shape[1:]} per sample but {train} has "
                        f"{train_seq.x.shape[1:]}; both must be [N, T, F] with the same T and F "
                        "(or sequences of different lengths with the same F)")
    classes = sorted(set(y_train.tolist()) | set(y_test.tolist()), key=str)
    index = {c: k for k, c in enumerate(classes)}
    ytr = np.array([index[c] for c in y_train.tolist()], np.int64)
    yte = np.array([index[c] for c in y_test.tolist()], np.int64)
    if standardized and not variable:
        x_train, x_test, how = standardize(train_seq.x, test_seq.x)
        train_seq, test_seq = replace(train_seq, x=x_train), replace(test_seq, x=x_test)
    elif standardized:
        train_seq, test_seq, how = _standardize_steps(train_seq, test_seq)
    else:
        how = "not standardised (--no-standardize): the arrays as given"
    note = (f"{train.name} / {test.name}: {val_fraction:.0%} of train held out for validation "
            f"(seed {seed}); {how}")
    if not variable:
        return _with_val(train.stem, train_seq.x, ytr, test_seq.x, yte,
                         tuple(str(c) for c in classes), note, seed, val_fraction, train.stem)
    timesteps = int(max(train_seq.lengths.max(), test_seq.lengths.max()))
    mask = padding_value(np.concatenate([train_seq.frames(), test_seq.frames()]))
    note += (f"; sequences of {min(train_seq.lengths.min(), test_seq.lengths.min())} to "
             f"{timesteps} steps padded after their real steps to T={timesteps} with {mask:g} "
             f"(below every real value), masked by Keras Masking({mask:g})")
    data = _with_val(train.stem, train_seq.padded(timesteps, mask, DataError, str(train)), ytr,
                     test_seq.padded(timesteps, mask, DataError, str(test)), yte,
                     tuple(str(c) for c in classes), note, seed, val_fraction, train.stem,
                     train_seq.lengths)
    return replace(data, lengths_test=test_seq.lengths, mask_value=mask)


def padding_value(frames: np.ndarray) -> float:
    """A Masking value no real step can equal, in float32 or once quantized to int8: an integer
    at least max(1, range/16) below the smallest real value (the int8 input's range then spans
    it too, at a cost of at most 1/17 of its resolution, and keeps it at least 255/17 = 15
    quantization steps away from any real value)."""
    low, high = float(frames.min()), float(frames.max())
    return float(np.floor(low - max(1.0, (high - low) / 16)))


def _standardize_steps(train, test):
    """standardize() on the real steps of variable-length sequences (padding left out)."""
    frames = train.frames()[None]
    mean = frames.mean(axis=(0, 1), dtype=np.float64)
    std = frames.std(axis=(0, 1), dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    scale = (lambda x: ((x - mean) / std).astype(np.float32))
    return (train.map_frames(scale), test.map_frames(scale),
            "each channel standardised with the training samples' mean and standard deviation")


def _read_npz(path: Path):
    from fusegen.sequences import from_arrays, npz_members, read_array

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    names = npz_members(path, str(path))
    if not names:
        raise DataError(f"{path}: not a readable .npz")
    missing = {"x", "y"} - set(names)
    if missing:
        raise DataError(f"{path}: has arrays {sorted(names)}; expected x and y (and lengths "
                        "with a padded x of sequences of different lengths)")
    x = read_array(path, "", DataError, "x")
    y = read_array(path, "", DataError, "y")
    lengths = read_array(path, "", DataError, "lengths") if "lengths" in names else None
    seqs = from_arrays(x, lengths, f"{path}: x", DataError)
    if y.ndim != 1 or len(y) != len(seqs.x) or y.dtype == object:
        raise DataError(f"{path}: y has shape {y.shape} but x has {len(seqs.x)} samples; "
                        f"expected y [{len(seqs.x)}]")
    return seqs, y


def _front_pad(series: np.ndarray, timesteps: int) -> np.ndarray:
    """[t, F] -> [timesteps, F]: zeros before the series, or its last `timesteps` frames."""
    series = series[-timesteps:]
    out = np.zeros((timesteps, series.shape[1]), np.float32)
    out[timesteps - len(series):] = series
    return out


def _with_val(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              classes: tuple[str, ...], note: str, seed: int,
              val_fraction: float = VAL_FRACTION, title: str = "",
              lengths: np.ndarray | None = None) -> Dataset:
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction {val_fraction}: must be between 0 and 1")
    n_val = int(np.ceil(val_fraction * len(x)))
    if n_val < 1 or len(x) - n_val < 1:
        raise DataError(f"--val-fraction {val_fraction} leaves no training or no validation "
                        f"sample of {len(x)}")
    counts = np.bincount(y)
    present = counts[counts > 0]
    stratify = y if present.min() >= 2 and n_val >= len(present) else None
    split = train_test_split(x, y, *([] if lengths is None else [lengths]),
                             test_size=val_fraction, random_state=seed, stratify=stratify)
    x_train, x_val, y_train, y_val = split[:4]
    lt, lv = split[4:] or (None, None)
    return Dataset(name, x_train.astype(np.float32), y_train, x_val.astype(np.float32), y_val,
                   x_test.astype(np.float32), y_test, classes, note, title or name, lt, lv)


LOADERS = {"japanese_vowels": japanese_vowels, "digits": digits,
           **{name: functools.partial(aeon_dataset, name) for name in AEON}}


def load(name: str, seed: int = 0, val_fraction: float = VAL_FRACTION) -> Dataset:
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(LOADERS)} or give "
                        "--train/--test .npz files")
    return LOADERS[name](seed=seed, val_fraction=val_fraction)
