"""The prepared-data cache: plain ``.npy`` arrays plus a manifest, built atomically.

Layout: ``<cache>/<dataset>/<protocol-hash>/`` with ``manifest.json`` and, per split,
``<split>/<array>.npy``. Arrays open memory-mapped, so loading a prepared set costs no decoding and
no copy until a task moves what it needs to the device.

Per split the arrays are:

``main``    (N, H, W) the task's input modality, one channel (float32 or uint8)
``aux``     (N, H, W) the auxiliary modality (optional)
``mask``    (N, H, W) uint8 label mask (segmentation data sets; BraTS coding {0,1,2,4})
``label``   (N,) int64 class index (classification data sets)
``names``   (N,) unicode, a stable human-readable name per item (``case:slice`` or file stem)
``cases``   (N,) unicode, the patient / case id each item belongs to

Item ids used everywhere else are integer positions in the ``train`` split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

from albench.claims import pid_alive
from albench.errors import DataError

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """``$ALBENCH_CACHE`` or ``~/.cache/albench``."""
    env = os.environ.get("ALBENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "albench"


def protocol_hash(protocol: Mapping[str, Any]) -> str:
    """A short stable hash of the protocol parameters: the cache key of a prepared set."""
    blob = json.dumps(protocol, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary handle on a temporary file beside ``path``, renamed onto ``path`` only on success.

    Readers never see half a file: they see the old one or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass
class Split:
    """One split's arrays (memory-mapped where they came from disk)."""

    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays["main"])

    @property
    def main(self) -> np.ndarray:
        return self.arrays["main"]

    @property
    def aux(self) -> np.ndarray | None:
        return self.arrays.get("aux")

    @property
    def names(self) -> np.ndarray:
        return self.arrays["names"]

    @property
    def cases(self) -> np.ndarray:
        return self.arrays["cases"]

    def target(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise DataError(f"data set has no target {name!r} (it has: {', '.join(sorted(self.arrays))})")
        return self.arrays[name]


@dataclass
class PreparedDataset:
    """A prepared data set opened from the cache."""

    path: Path
    manifest: dict[str, Any]
    splits: dict[str, Split]

    @property
    def name(self) -> str:
        return self.manifest["dataset"]

    @property
    def train(self) -> Split:
        return self.splits["train"]

    def split(self, name: str) -> Split:
        return self.splits[name]

    def has(self, array: str) -> bool:
        return array in self.splits["train"].arrays


def open_prepared(path: str | Path, *, verify: bool = False) -> PreparedDataset:
    """Open a prepared set memory-mapped; ``verify`` re-checks every array's sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"{path}: not a prepared data set (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{manifest_path}: corrupt manifest ({exc})") from exc
    splits: dict[str, Split] = {}
    for split in SPLITS:
        arrays: dict[str, np.ndarray] = {}
        for rel, info in sorted(manifest.get("arrays", {}).items()):
            split_name, _, array_name = rel.partition("/")
            if split_name != split:
                continue
            file = path / f"{rel}.npy"
            if verify and sha256_file(file) != info["sha256"]:
                raise DataError(f"{file}: checksum mismatch; re-run prepare with --force")
            arrays[array_name] = np.load(file, mmap_mode="r", allow_pickle=False)
        splits[split] = Split(arrays)
    return PreparedDataset(path, manifest, splits)


def find_prepared(cache: Path, dataset: str, protocol: Mapping[str, Any]) -> Path | None:
    """The finished prepared folder for this protocol, or ``None``."""
    path = Path(cache) / dataset / protocol_hash(protocol)
    return path if (path / MANIFEST).is_file() else None


_OWNER = ".owner"


def _remove_abandoned(final: Path) -> None:
    """Delete temporary build folders of ``final`` whose builder process (on this host) is dead.

    A build killed with SIGKILL cannot clean up after itself; its ``.tmp-*`` folder is never read,
    but it would waste disk. Folders of live builders, of other hosts (shared file systems) or
    without an owner record are left alone.
    """
    host = socket.gethostname()
    for tmp in final.parent.glob(f".tmp-{final.name}-*"):
        try:
            owner_host, pid = (tmp / _OWNER).read_text().split()
        except (OSError, ValueError):
            continue
        if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def building(cache: Path, dataset: str, protocol: Mapping[str, Any], *, force: bool = False) -> Iterator[Path]:
    """Yield a private temporary folder to build into; publish it only if the block succeeds.

    The folder is renamed to ``<cache>/<dataset>/<protocol-hash>`` at the end, so a crash, a kill
    or an exception leaves at most a ``.tmp-*`` folder that nothing ever reads.
    """
    final = Path(cache) / dataset / protocol_hash(protocol)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        (tmp / _OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        yield tmp
        if not (tmp / MANIFEST).is_file():
            raise RuntimeError("building(): write_prepared() was not called")
        (tmp / _OWNER).unlink(missing_ok=True)
        if final.exists():
            if not force:
                shutil.rmtree(tmp)
                return  # someone else finished the same protocol meanwhile: theirs is as good
            trash = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _is_file_backed(array: Any, file: Path) -> bool:
    """True when ``array`` is a memory map of exactly ``file`` (written in place by NpyAppender)."""
    filename = getattr(array, "filename", None)
    return isinstance(array, np.memmap) and filename is not None and Path(filename).resolve() == Path(file).resolve()


class NpyAppender:
    """Write a ``.npy`` file block by block when the number of items is not known in advance.

    The header is written with a fixed width and rewritten with the final length at
    :meth:`close`, so a large prepared array goes to disk as cases are decoded instead of being
    gathered in memory and copied once more by a concatenation. ``close`` returns the file opened
    memory-mapped; :func:`write_prepared` recognises it and does not write it again.
    """

    _HEADER_BYTES = 256  # a multiple of 64, as numpy aligns it; room for any realistic shape

    def __init__(self, path: Path, item_shape: tuple[int, ...], dtype: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.item_shape = tuple(int(d) for d in item_shape)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._handle = open(self.path, "wb")
        self._write_header()

    def _write_header(self) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (self.count, *self.item_shape)}
        text = repr(header).encode("latin1")
        room = self._HEADER_BYTES - 10 - 1
        if len(text) > room:
            raise ValueError(f"{self.path}: header too long for shape {header['shape']}")
        self._handle.seek(0)
        self._handle.write(b"\x93NUMPY\x01\x00" + (room + 1).to_bytes(2, "little") + text.ljust(room) + b"\n")

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.item_shape:
            raise ValueError(f"{self.path}: block of shape {block.shape} does not fit items of {self.item_shape}")
        self._handle.seek(0, os.SEEK_END)
        self._handle.write(block.tobytes())
        self.count += len(block)

    def close(self) -> np.ndarray:
        self._write_header()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        if self.count == 0:  # an empty file cannot be memory-mapped
            return np.load(self.path, allow_pickle=False)
        return np.load(self.path, mmap_mode="r", allow_pickle=False)

    def discard(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def write_prepared(
    folder: Path,
    *,
    dataset: str,
    protocol: Mapping[str, Any],
    splits: Mapping[str, Mapping[str, np.ndarray]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write every split's arrays and the manifest (with counts, cases, checksums) into ``folder``."""
    from albench import __version__

    arrays_info: dict[str, Any] = {}
    counts: dict[str, int] = {}
    cases: dict[str, list[str]] = {}
    for split in SPLITS:
        if split not in splits:
            raise DataError(f"{dataset}: split {split!r} is missing")
        data = splits[split]
        n = len(data["main"])
        if n == 0:
            raise DataError(f"{dataset}: split {split!r} is empty")
        for name, array in data.items():
            file = folder / split / f"{name}.npy"
            in_place = _is_file_backed(array, file)
            if not in_place:
                array = np.asarray(array)
            if len(array) != n:
                raise DataError(f"{dataset}: {split}/{name} has {len(array)} items, main has {n}")
            (folder / split).mkdir(parents=True, exist_ok=True)
            if not in_place:
                np.save(file, np.ascontiguousarray(array), allow_pickle=False)
            arrays_info[f"{split}/{name}"] = {
                "sha256": sha256_file(file),
                "shape": list(array.shape),
                "dtype": str(array.dtype),
            }
        counts[split] = n
        cases[split] = sorted({str(c) for c in np.asarray(data["cases"])})
    manifest = {
        "dataset": dataset,
        "albench_version": __version__,
        "protocol": dict(protocol),
        "protocol_hash": protocol_hash(protocol),
        "counts": counts,
        "cases": cases,
        "arrays": arrays_info,
        **(dict(extra) if extra else {}),
    }
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest
