"""BraTS2018 (HGG only), prepared once into the cache: ``albench prepare brats --root DIR``.

``DIR`` is the ``MICCAI_BraTS_2018_Data_Training`` folder. The paper's protocol (METHOD.md):

* cases are the folders under ``HGG/`` (``LGG/`` is ignored); each has
  ``<case>_{t1,t1ce,t2,flair,seg}.nii`` or ``.nii.gz``, paired by case id, never by listing order;
  all five must exist, share one shape (3-D) and one affine, and the labels must lie in {0,1,2,4};
* split by case with a fixed seed: the sorted case ids are permuted by
  ``numpy.random.default_rng(split_seed)``; ``floor(20 %)`` go to test, then ``floor(20 %)`` of the
  rest to validation (135 / 33 / 42 for 210 cases);
* axial slices (the volume's last axis) whose tumour labels cover more than 1000 pixels are kept;
* per slice, T1ce and FLAIR are clipped to their 1st-99th percentiles and divided by the maximum
  (stored as float32 in [0, 1]); the z-score with training-set statistics is recorded in the
  manifest (``zscore``, ``normalisation``), not baked into the arrays.

Stored per split: ``main`` (T1ce), ``aux`` (FLAIR), ``mask`` (uint8, BraTS coding),
``presence`` (ET, ED, NCR), ``slice``, ``names`` (``case:slice``), ``cases``. A stored slice is
``volume[:, :, slice]`` exactly as nibabel returns the array (no reorientation).

Volumes are decoded in a process pool (``jobs``); each worker reads one case at a time with
nibabel, keeps the raw integer data (no float64 copy: scaling, if any, is applied in float32 to the
kept slices only) and returns the kept slices, which the parent appends straight to the ``.npy``
files. Peak memory is about ``jobs`` decoded cases plus a few cases' kept slices in flight.

Source policy: the protocol (cache key) never contains the root path, so that a run, which only
knows the protocol, finds the prepared set. The manifest records the root and a fingerprint of the
source files (relative paths and sizes). Re-running prepare on the same source is a no-op; on a
source with a different fingerprint it is an error unless ``--force`` (which rebuilds and replaces
the prepared set), so that runs recorded against one set of data never silently read another.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from albench import datasets
from albench.errors import ConfigError, DataError
from albench.prepared import (
    SPLITS,
    NpyAppender,
    PreparedDataset,
    building,
    find_prepared,
    open_prepared,
    write_prepared,
)
from albench.datasets.common import (
    fixed_protocol,
    BRATS_LABELS,
    PRESENCE_ORDER,
    Moments,
    check_params,
    clip_and_scale,
    describe_found,
    fingerprint,
    not_prepared_error,
    parallel_map,
    presence,
    split_cases,
    zscore_normalisation,
)

NAME = "brats"
MODALITIES = ("t1", "t1ce", "t2", "flair", "seg")
PROTOCOL: dict[str, Any] = {
    "version": 1,
    "grade": "HGG",
    "main": "t1ce",
    "aux": "flair",
    "split_seed": 2018,
    "test_fraction": 0.2,
    "val_fraction": 0.2,
    "min_tumour_pixels": 1000,
    "percentiles": [1.0, 99.0],
}
_REQUIRED = tuple(PROTOCOL)


def _modality_file(folder: Path, case: str, modality: str) -> Path:
    """The one ``<case>_<modality>.nii[.gz]`` in ``folder``; a one-line error if none or both."""
    found = [folder / f"{case}_{modality}{ext}" for ext in (".nii.gz", ".nii") if (folder / f"{case}_{modality}{ext}").is_file()]
    if not found:
        raise DataError(f"case {case}: missing {case}_{modality}.nii.gz (or .nii) in {folder}")
    if len(found) > 1:
        raise DataError(f"case {case}: both {found[0].name} and {found[1].name} exist in {folder}; keep one")
    return found[0]


def discover(root: Path, grade: str = "HGG") -> tuple[dict[str, dict[str, Path]], str]:
    """Case id -> modality -> file for every case under ``root/<grade>``, and the source fingerprint.

    Only the listing is checked here (layout, missing or duplicate files), so that these errors
    come before anything is decoded or written.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected the MICCAI_BraTS_2018_Data_Training folder)")
    hgg = root / grade
    if not hgg.is_dir():
        hint = "; this looks like a grade folder, pass its parent" if root.name in ("HGG", "LGG") else ""
        raise DataError(f"{root}: expected an {grade}/ folder of case folders (MICCAI_BraTS_2018_Data_Training layout), found: {describe_found(root)}{hint}")
    case_dirs = sorted(p for p in hgg.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not case_dirs:
        raise DataError(f"{hgg}: expected case folders (e.g. Brats18_CBICA_AAB_1/), found: {describe_found(hgg)}")
    cases: dict[str, dict[str, Path]] = {}
    entries: list[tuple[str, int]] = []
    for folder in case_dirs:
        case = folder.name
        files = {mod: _modality_file(folder, case, mod) for mod in MODALITIES}
        cases[case] = files
        entries += [(f"{grade}/{case}/{path.name}", path.stat().st_size) for path in files.values()]
    return cases, fingerprint(entries)


# ------------------------------------------------------------------------------ one case (worker)
def _open(path: Path) -> Any:
    import nibabel as nib

    try:
        img = nib.load(str(path), mmap=False)
        _ = img.shape, img.affine
    except Exception as exc:  # nibabel raises many types for a broken header
        raise DataError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {_short(exc, path)})") from None
    return img


def _short(exc: BaseException, path: Path | None = None) -> str:
    """The first line of an exception's message, without repeating the file's full path."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if path is not None:
        text = text.replace(str(path), path.name)
    return text[:200]


def _read(path: Path, img: Any) -> np.ndarray:
    """The stored (unscaled) array, decoded in its on-disk dtype: no float64 copy."""
    try:
        data = np.asarray(img.dataobj.get_unscaled())
    except Exception as exc:  # zlib.error, EOFError, OSError, ValueError for truncated files
        raise DataError(f"{path}: corrupt or truncated image data ({type(exc).__name__}: {_short(exc, path)})") from None
    return data


def _check_complete(path: Path, img: Any) -> None:
    """Check that an image we do not decode (t1, t2) is complete, cheaply.

    For ``.nii`` the file must hold the header offset plus the data; for ``.nii.gz`` gzip's footer
    records the uncompressed size. If the footer disagrees (a truncated file, or a writer that
    appended something) the file is decompressed once to find out for sure.
    """
    header = img.header
    expected = int(header.get_data_offset()) + int(np.prod(img.shape)) * header.get_data_dtype().itemsize
    if path.suffix != ".gz":
        if path.stat().st_size < expected:
            raise DataError(f"{path}: truncated ({path.stat().st_size} bytes, the header needs {expected})")
        return
    with open(path, "rb") as handle:
        handle.seek(-4, 2)
        isize = int.from_bytes(handle.read(4), "little")
    if isize == expected % 2**32:
        return
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while block := stream.read(1 << 22):
                total += len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({_short(exc, path)})") from None
    if total < expected:
        raise DataError(f"{path}: truncated ({total} bytes decompressed, the header needs {expected})")


def _slices(path: Path, img: Any, raw: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Kept axial slices as (k, H, W) float32, applying the NIfTI scaling (if any) in float32."""
    block = np.moveaxis(raw[:, :, keep], 2, 0).astype(np.float32)
    slope, inter = img.dataobj.slope, img.dataobj.inter
    if slope is not None and np.isfinite(slope) and slope not in (0, 1):
        block *= np.float32(slope)
    if inter is not None and np.isfinite(inter) and inter != 0:
        block += np.float32(inter)
    if not np.isfinite(block).all():
        raise DataError(f"{path}: image contains NaN or infinite values")
    return block


def load_case(task: tuple[str, dict[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Decode and preprocess one case (runs in a worker process). Returns its kept slices."""
    case, files_str, params = task
    files = {mod: Path(p) for mod, p in files_str.items()}
    images = {mod: _open(files[mod]) for mod in MODALITIES}
    seg_path, seg_img = files["seg"], images["seg"]
    shape = tuple(seg_img.shape)
    if len(shape) != 3:
        raise DataError(f"{seg_path}: expected a 3-D volume, found shape {shape}")
    for mod in MODALITIES[:-1]:
        other = images[mod]
        if tuple(other.shape) != shape:
            raise DataError(f"case {case}: {files[mod].name} has shape {tuple(other.shape)} but {seg_path.name} has {shape}")
        if not np.allclose(other.affine, seg_img.affine, rtol=0, atol=1e-3):
            raise DataError(f"case {case}: the affine of {files[mod].name} differs from that of {seg_path.name}")
    for mod in MODALITIES:
        if mod not in (params["main"], params["aux"], "seg"):
            _check_complete(files[mod], images[mod])

    seg_raw = _read(seg_path, seg_img)
    seg = _check_labels(seg_path, seg_img, seg_raw)
    del seg_raw
    tumour = (seg > 0).sum(axis=(0, 1))
    keep = np.flatnonzero(tumour > int(params["min_tumour_pixels"]))
    out: dict[str, Any] = {"case": case, "slice": keep.astype(np.int32), "mask": np.ascontiguousarray(np.moveaxis(seg[:, :, keep], 2, 0))}
    for role in ("main", "aux"):
        mod = params[role]
        raw = _read(files[mod], images[mod])  # decode even with no kept slice: a corrupt file is an error
        block = clip_and_scale(_slices(files[mod], images[mod], raw, keep), params["percentiles"]) if len(keep) else np.zeros((0, *shape[:2]), np.float32)
        del raw
        out[role] = block
        flat = block.reshape(-1).astype(np.float64)
        out[f"{role}_stats"] = (flat.size, float(flat.sum()), float(flat @ flat))
    return out


def _check_labels(path: Path, img: Any, raw: np.ndarray) -> np.ndarray:
    """The label volume as uint8, or a one-line error naming the unexpected values."""
    slope, inter = img.dataobj.slope, img.dataobj.inter
    scaled = (slope is not None and np.isfinite(slope) and slope not in (0, 1)) or (inter is not None and np.isfinite(inter) and inter != 0)
    values = raw
    if scaled:
        values = raw.astype(np.float32) * np.float32(slope if slope and np.isfinite(slope) else 1) + np.float32(inter if inter and np.isfinite(inter) else 0)
    if values.dtype.kind in "ui" and values.size and values.min() >= 0 and values.max() < 256:
        counts = np.bincount(values.reshape(-1).astype(np.intp, copy=False) if values.dtype.itemsize > 1 else values.reshape(-1), minlength=5)
        present = np.flatnonzero(counts)
    else:
        present = np.unique(values)
    bad = [v for v in present.tolist() if v not in BRATS_LABELS]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:6])
        raise DataError(f"{path}: unexpected label values {shown} (expected only 0, 1, 2, 4)")
    return values.astype(np.uint8, copy=False)


# ------------------------------------------------------------------------------------ the recipe
@datasets.register(NAME)
class BraTS:
    """BraTS2018 HGG slices: T1ce (main), FLAIR (auxiliary), BraTS-coded tumour masks."""

    requires_root: ClassVar[bool] = True

    def protocol(self, preset: str, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The paper's protocol, for every preset (smaller presets train less, not on other data)."""
        return fixed_protocol(NAME, PROTOCOL, fixed)

    def prepare(self, *, cache: Path, params: Mapping[str, Any], root: Path | None = None, jobs: int = 1, force: bool = False) -> Path:
        """Validate ``root``, decode every HGG case and write the prepared set (see the module doc)."""
        if root is None:
            raise not_prepared_error(NAME, cache)
        check_params(params, _REQUIRED, NAME)
        params = dict(params)
        if params["main"] not in MODALITIES[:-1] or params["aux"] not in MODALITIES[:-1]:
            raise ConfigError(f"brats: main and aux must be among {', '.join(MODALITIES[:-1])}")
        root = Path(root).expanduser().resolve()
        cases, source_fp = discover(root, str(params["grade"]))
        existing = find_prepared(cache, NAME, params)
        if existing and not force:
            return _reuse(existing, root, source_fp)
        try:
            splits = split_cases(list(cases), int(params["split_seed"]), float(params["test_fraction"]), float(params["val_fraction"]))
        except DataError as exc:
            raise DataError(f"{root / str(params['grade'])}: {exc}") from None
        split_of = {case: split for split, members in splits.items() for case in members}
        order = [case for split in SPLITS for case in splits[split]]
        tasks = [(case, {m: str(p) for m, p in cases[case].items()}, params) for case in order]

        with building(cache, NAME, params, force=force) as tmp:
            arrays = _collect(tmp, parallel_map(load_case, tasks, jobs), split_of, splits, params)
            extra = _extra(arrays.pop("_stats"), root, source_fp, len(cases), splits, params)
            write_prepared(tmp, dataset=NAME, protocol=params, splits=arrays, extra=extra)
        path = find_prepared(cache, NAME, params)
        assert path is not None
        return path

    def load(self, *, cache: Path, params: Mapping[str, Any]) -> PreparedDataset:
        """Open the prepared set; if it is not prepared, say which command prepares it."""
        path = find_prepared(cache, NAME, params)
        if path is None:
            raise not_prepared_error(NAME, cache)
        return open_prepared(path)


def _reuse(existing: Path, root: Path, source_fp: str) -> Path:
    """Same source: a no-op. Another source: an error unless --force (see the module doc)."""
    manifest = open_prepared(existing).manifest
    source = manifest.get("source", {})
    if source.get("fingerprint") == source_fp:
        return existing
    raise DataError(
        f"{existing.parent.name} is already prepared in {existing} from {source.get('root', 'another source')} "
        f"({source.get('cases', '?')} cases), which differs from {root}; pass --force to replace it"
    )


def _collect(tmp: Path, results: Any, split_of: Mapping[str, str], splits: Mapping[str, list[str]], params: Mapping[str, Any]) -> dict[str, Any]:
    """Append each case's kept slices to the split's files as results arrive (in case order)."""
    writers: dict[str, dict[str, NpyAppender]] = {}
    small: dict[str, dict[str, list[Any]]] = {s: {"slice": [], "names": [], "cases": []} for s in SPLITS}
    per_case: dict[str, int] = {}
    stats = {"main": Moments(), "aux": Moments()}
    try:
        for result in results:
            case, split = result["case"], split_of[result["case"]]
            k = len(result["slice"])
            per_case[case] = k
            if split not in writers:
                hw = result["main"].shape[1:]
                writers[split] = {
                    "main": NpyAppender(tmp / split / "main.npy", hw, np.float32),
                    "aux": NpyAppender(tmp / split / "aux.npy", hw, np.float32),
                    "mask": NpyAppender(tmp / split / "mask.npy", hw, np.uint8),
                    "presence": NpyAppender(tmp / split / "presence.npy", (3,), np.uint8),
                }
            w = writers[split]
            if k and result["main"].shape[1:] != w["main"].item_shape:
                raise DataError(f"case {case}: slices of {result['main'].shape[1:]} pixels, but other cases have {w['main'].item_shape}")
            w["main"].append(result["main"])
            w["aux"].append(result["aux"])
            w["mask"].append(result["mask"])
            w["presence"].append(presence(result["mask"]))
            small[split]["slice"].append(result["slice"])
            small[split]["names"] += [f"{case}:{i}" for i in result["slice"]]
            small[split]["cases"] += [case] * k
            if split == "train":
                for role in stats:
                    stats[role].add_stats(*result[f"{role}_stats"])
        arrays: dict[str, Any] = {}
        for split in SPLITS:
            n = sum(per_case.get(c, 0) for c in splits[split])
            if n == 0:
                raise DataError(
                    f"brats: the {split} split ({len(splits[split])} case(s)) has no slice with more than "
                    f"{params['min_tumour_pixels']} tumour pixels"
                )
            arrays[split] = {name: writer.close() for name, writer in writers[split].items()}
            arrays[split]["slice"] = np.concatenate(small[split]["slice"]).astype(np.int32)
            arrays[split]["names"] = np.array(small[split]["names"])
            arrays[split]["cases"] = np.array(small[split]["cases"])
        arrays["_stats"] = {"moments": {role: m.result() for role, m in stats.items()}, "per_case": per_case}
        return arrays
    finally:
        for split_writers in writers.values():
            for writer in split_writers.values():
                writer.discard()


def _extra(stats: Mapping[str, Any], root: Path, source_fp: str, n_cases: int, splits: Mapping[str, list[str]], params: Mapping[str, Any]) -> dict[str, Any]:
    zscore = stats["moments"]
    return {
        "modalities": {"main": params["main"], "aux": params["aux"]},
        "zscore": zscore,
        "normalisation": {role: zscore_normalisation(st) for role, st in zscore.items()},
        "sampler_crop": 210 / 240,
        "targets": {"mask": "BraTS coding {0,1,2,4}; whole tumour = mask > 0", "presence": list(PRESENCE_ORDER)},
        "preprocessing": "axial slices volume[:, :, k] with > min_tumour_pixels tumour pixels; per-slice percentile clip, divide by maximum; z-score with training statistics (normalisation)",
        "slices_per_case": stats["per_case"],
        "case_counts": {split: len(members) for split, members in splits.items()},
        "split_cases": {split: list(members) for split, members in splits.items()},  # incl. cases without kept slices
        "source": {"root": str(root), "fingerprint": source_fp, "cases": n_cases, "grade": params["grade"]},
    }
