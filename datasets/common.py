"""Preprocessing and bookkeeping shared by the data set recipes.

The phantom's brain family goes through exactly the same slice preprocessing and normalisation as
BraTS, so that a pipeline that works on the phantom works on the real data for the same reasons.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np

from albench.errors import DataError
from albench.prepared import default_cache_dir

T = TypeVar("T")
R = TypeVar("R")

#: BraTS label coding: 0 background, 1 necrotic / non-enhancing core, 2 oedema, 4 enhancing tumour.
BRATS_LABELS = (0, 1, 2, 4)
#: Order of the multi-label presence targets (``presence`` arrays and the ``*-ml`` tasks).
PRESENCE_ORDER = ("ET", "ED", "NCR")
_PRESENCE_CODES = (4, 2, 1)


def clip_and_scale(slices: np.ndarray, percentiles: Sequence[float] = (1.0, 99.0)) -> np.ndarray:
    """Per slice: clip to the given percentiles, then divide by the (clipped) maximum.

    ``slices`` is (N, H, W); the result is float32 in [0, 1] for non-negative MRI intensities. A
    slice whose maximum is 0 (all background) stays 0 instead of dividing by zero. Percentiles are
    numpy's default (linear interpolation) over every pixel of the slice, background included, as
    in the authors' pipeline.
    """
    x = np.asarray(slices, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected (N, H, W) slices, got shape {x.shape}")
    if len(x) == 0:
        return x.copy()
    lo, hi = np.percentile(x, list(percentiles), axis=(1, 2))
    out = np.clip(x, lo[:, None, None].astype(np.float32), hi[:, None, None].astype(np.float32))
    peak = out.max(axis=(1, 2))
    safe = np.where(peak > 0, peak, 1.0).astype(np.float32)
    out /= safe[:, None, None]
    out[peak <= 0] = 0.0
    return out


def presence(masks: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 presence of ET, ED, NCR (any pixel) in each BraTS-coded mask (N, H, W)."""
    masks = np.asarray(masks)
    return np.stack([(masks == code).any(axis=(1, 2)) for code in _PRESENCE_CODES], axis=1).astype(np.uint8)


class Moments:
    """Running count, sum and sum of squares in float64, for training-set z-score statistics."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.squares = 0.0

    def add(self, x: np.ndarray) -> None:
        flat = np.asarray(x, dtype=np.float32).reshape(-1)
        self.count += flat.size
        self.total += float(np.sum(flat, dtype=np.float64))
        self.squares += float(np.dot(flat.astype(np.float64), flat.astype(np.float64)))

    def add_stats(self, count: int, total: float, squares: float) -> None:
        self.count += int(count)
        self.total += float(total)
        self.squares += float(squares)

    def result(self) -> dict[str, float]:
        if self.count == 0:
            raise DataError("no training pixels to compute normalisation statistics from")
        mean = self.total / self.count
        var = max(self.squares / self.count - mean * mean, 0.0)
        std = float(np.sqrt(var)) or 1.0
        return {"mean": mean, "std": std}


def slice_stats(x: np.ndarray) -> tuple[int, float, float]:
    """(count, sum, sum of squares) of an array in float64, for :class:`Moments.add_stats`."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    as64 = flat.astype(np.float64)
    return flat.size, float(as64.sum()), float(np.dot(as64, as64))


def zscore_normalisation(stats: Mapping[str, float]) -> dict[str, float]:
    """``stored * scale + offset`` equals the z-score ``(stored - mean) / std``."""
    return {"scale": 1.0 / stats["std"], "offset": -stats["mean"] / stats["std"]}


def split_counts(n: int, test_fraction: float = 0.2, val_fraction: float = 0.2) -> tuple[int, int, int]:
    """(train, val, test) case counts: ``floor(n * test)`` test, then ``floor(rest * val)`` validation.

    For BraTS' 210 HGG cases this is 135 / 33 / 42, the paper's split. Each split gets at least one
    case; fewer than three cases cannot fill three splits and is an error.
    """
    if n < 3:
        raise DataError(f"need at least 3 cases to fill the train/val/test splits, found {n}")
    n_test = max(1, int(np.floor(n * test_fraction + 1e-9)))
    rest = n - n_test
    n_val = max(1, int(np.floor(rest * val_fraction + 1e-9)))
    n_train = rest - n_val
    if n_train < 1:
        raise DataError(f"{n} cases leave the train split empty")
    return n_train, n_val, n_test


def split_cases(cases: Sequence[str], seed: int, test_fraction: float = 0.2, val_fraction: float = 0.2) -> dict[str, list[str]]:
    """Split case ids with a fixed seed; the result does not depend on listing order.

    The ids are sorted first, then permuted by ``numpy.random.default_rng(seed)``: the same case
    list always gives the same split, whatever order the file system lists folders in.
    """
    ordered = sorted(cases)
    if len(set(ordered)) != len(ordered):
        raise DataError("duplicate case ids")
    n_train, n_val, n_test = split_counts(len(ordered), test_fraction, val_fraction)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in perm]
    return {
        "test": sorted(shuffled[:n_test]),
        "val": sorted(shuffled[n_test : n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val :]),
    }


def fingerprint(entries: Iterable[tuple[str, int]]) -> str:
    """sha256 of (relative path, size) pairs: identifies a source tree without reading its files."""
    digest = hashlib.sha256()
    for rel, size in sorted(entries):
        digest.update(f"{rel}\0{size}\n".encode())
    return digest.hexdigest()


def not_prepared_error(name: str, cache: Path) -> DataError:
    """The one-line error a run gets when a real data set has not been prepared yet."""
    cache_opt = "" if Path(cache).expanduser().resolve() == default_cache_dir().resolve() else f" --cache {cache}"
    return DataError(f"{name} is not prepared in {cache}; run: albench prepare {name} --root DIR{cache_opt}")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> Iterator[R]:
    """``map(fn, items)`` in order, in a process pool when ``jobs > 1``.

    Results come back in input order, so the output never depends on scheduling. At most about
    ``2 * jobs`` items are in flight, which bounds memory to a few decoded cases per worker. On the
    first error the pending work is cancelled and the error propagates (a :class:`DataError` from a
    worker keeps its message).
    """
    jobs = max(1, int(jobs))
    if jobs == 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    jobs = min(jobs, len(items), os.cpu_count() or jobs)
    window = 2 * jobs
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        pending = []
        index = 0
        try:
            while index < len(items) and len(pending) < window:
                pending.append(pool.submit(fn, items[index]))
                index += 1
            while pending:
                result = pending.pop(0).result()
                if index < len(items):
                    pending.append(pool.submit(fn, items[index]))
                    index += 1
                yield result
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def describe_found(folder: Path, limit: int = 8) -> str:
    """A short listing of a folder's entries, for 'expected X, found Y' errors."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if not names:
        return "nothing"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


#: uint8 images in [0, 255] to [-1, 1]: (x / 255 - 0.5) / 0.5 (METHOD.md, COVID-QU-Ex), as the
#: manifest's ``stored * scale + offset``.
UINT8_TO_UNIT = {"scale": 2 / 255, "offset": -1.0}


def fixed_protocol(dataset: str, protocol: Mapping[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """A real data set's protocol (the same for every preset) with the caller's fixed values."""
    result = dict(protocol)
    for key, value in fixed.items():
        if key not in result:
            from albench.errors import ConfigError

            raise ConfigError(f"{dataset} has no parameter {key!r} (it has: {', '.join(sorted(result))})")
        result[key] = value
    return result


def check_params(params: Mapping[str, Any], required: Iterable[str], dataset: str) -> None:
    """Fail early, with the key's name, when a protocol dict lacks a parameter the recipe needs."""
    missing = [key for key in required if key not in params]
    if missing:
        raise DataError(f"{dataset}: protocol parameters lack {', '.join(missing)}")
