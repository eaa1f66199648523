"""COVID-QU-Ex's "Infection Segmentation Data", prepared once: ``albench prepare covidqu --root DIR``.

``DIR`` may be the download's top folder or any folder inside it down to the one holding the
splits. The layout (METHOD.md)::

    .../Infection Segmentation Data/Infection Segmentation Data/{Train,Val,Test}/
        {COVID-19,Non-COVID,Normal}/{images,lung masks,infection masks}/<name>.png

The subset folder's name appears twice in real downloads, a wrapping folder may exist, and the
"Lung Segmentation Data" subset (a different, larger set with the same split and class folders)
sits beside it and is never read. Choices:

* the official splits; the class mapping is fixed and sorted: COVID-19 -> 0, Non-COVID -> 1,
  Normal -> 2 (never a directory-listing order); every split must have exactly these class folders;
* an image and its lung mask are paired by file name (names contain spaces and parentheses); an
  image without a mask, or a mask without an image, is an error naming the file;
* one image size throughout (masks included), else an error naming the first odd file;
* images are stored as uint8 grey levels (RGB files are converted with Pillow's ``L`` mode), lung
  masks as uint8 as stored (0/255). The model's input is ``stored * 2/255 - 1``, i.e.
  ``(x/255 - 0.5)/0.5`` (``normalisation`` in the manifest);
* ``names`` and ``cases`` are the file stems (the set has no patient ids; the official splits are
  taken as given).

Decoding runs in a process pool (``jobs``) over chunks of files. The same source policy as BraTS:
re-running on the same source is a no-op; a different source is an error unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from albench import datasets
from albench.errors import ConfigError, DataError
from albench.prepared import SPLITS, PreparedDataset, building, find_prepared, open_prepared, write_prepared
from albench.datasets.common import UINT8_TO_UNIT, fixed_protocol, check_params, describe_found, fingerprint, not_prepared_error, parallel_map

NAME = "covidqu"
SUBSET = "Infection Segmentation Data"
OTHER_SUBSET = "Lung Segmentation Data"
CLASSES = ("COVID-19", "Non-COVID", "Normal")  # sorted; the index is the class id
SPLIT_FOLDERS = {"train": "Train", "val": "Val", "test": "Test"}
IMAGES, MASKS = "images", "lung masks"
PROTOCOL: dict[str, Any] = {"version": 1, "subset": SUBSET, "classes": list(CLASSES), "main": "image", "aux": "lung mask"}
_SEARCH_DEPTH = 4
_CHUNK = 64


def _has_splits(folder: Path) -> bool:
    return all((folder / name).is_dir() for name in SPLIT_FOLDERS.values())


def find_split_root(root: Path) -> Path:
    """The folder holding Train/Val/Test of the infection subset, searching down from ``root``.

    Candidates are folders with all three split folders, not inside the Lung Segmentation Data
    subset. ``root`` itself wins if it qualifies; otherwise the single candidate found below it.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected COVID-QU-Ex's '{SUBSET}' folder or one above it)")
    if OTHER_SUBSET in root.resolve().parts:
        raise DataError(f"{root}: this is the '{OTHER_SUBSET}' subset; expected the '{SUBSET}' subset beside it")
    if _has_splits(root):
        return root
    candidates: list[Path] = []
    frontier = [root]
    for _ in range(_SEARCH_DEPTH):
        next_frontier = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                if child.name == OTHER_SUBSET:
                    continue
                if _has_splits(child):
                    candidates.append(child)
                else:
                    next_frontier.append(child)
        frontier = next_frontier
        if candidates:
            break
    if not candidates:
        raise DataError(
            f"{root}: expected COVID-QU-Ex's '{SUBSET}' with Train/, Val/ and Test/ folders at or below it, "
            f"found: {describe_found(root)}"
        )
    if len(candidates) > 1:
        named = [c for c in candidates if SUBSET in c.parts]
        if len(named) == 1:
            return named[0]
        raise DataError(f"{root}: several folders hold Train/Val/Test ({', '.join(str(c) for c in candidates[:3])}); pass the '{SUBSET}' one")
    return candidates[0]


def discover(split_root: Path) -> tuple[dict[str, list[tuple[Path, Path, int]]], str]:
    """Per split: sorted (image, lung mask, class id) triples, and the source fingerprint."""
    out: dict[str, list[tuple[Path, Path, int]]] = {}
    entries: list[tuple[str, int]] = []
    for split, folder_name in SPLIT_FOLDERS.items():
        split_dir = split_root / folder_name
        found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if found != sorted(CLASSES):
            raise DataError(f"{split_dir}: expected class folders {', '.join(CLASSES)}, found: {', '.join(found) or 'nothing'}")
        items: list[tuple[Path, Path, int]] = []
        for label, cls in enumerate(CLASSES):
            image_dir, mask_dir = split_dir / cls / IMAGES, split_dir / cls / MASKS
            for folder in (image_dir, mask_dir):
                if not folder.is_dir():
                    raise DataError(f"{split_dir / cls}: expected '{IMAGES}' and '{MASKS}' folders, found: {describe_found(split_dir / cls)}")
            images = {p.name: p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
            masks = {p.name: p for p in mask_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png"}
            for name in sorted(set(images) - set(masks)):
                raise DataError(f"{images[name]}: image without a lung mask (expected {mask_dir / name})")
            for name in sorted(set(masks) - set(images)):
                raise DataError(f"{masks[name]}: lung mask without an image (expected {image_dir / name})")
            for name in sorted(images):
                items.append((images[name], masks[name], label))
                for path in (images[name], masks[name]):
                    entries.append((str(path.relative_to(split_root)), path.stat().st_size))
        if not items:
            raise DataError(f"{split_dir}: the {split} split is empty (no PNG images under {', '.join(CLASSES)})")
        out[split] = items
    return out, fingerprint(entries)


def _decode(path: Path, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert(mode) if img.mode != mode else img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable PNG ({type(exc).__name__}: {_first_line(exc)})") from None


def check_sizes(triples: list[tuple[Path, Path, int]]) -> tuple[int, int]:
    """One size throughout: read every PNG header (cheap, no decoding) and name the odd file.

    The reference is the most common size, so the error names the odd file even when it happens
    to be the first one listed. Returns (height, width).
    """
    from PIL import Image, UnidentifiedImageError

    sizes: list[tuple[Path, tuple[int, int]]] = []
    for image, mask, _ in triples:
        for path in (image, mask):
            try:
                with Image.open(path) as img:
                    sizes.append((path, img.size))
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise DataError(f"{path}: not a readable PNG ({type(exc).__name__}: {_first_line(exc)})") from None
    values, counts = np.unique(np.array([s for _, s in sizes]), axis=0, return_counts=True)
    width, height = (int(v) for v in values[np.argmax(counts)])
    for path, (w, h) in sizes:
        if (w, h) != (width, height):
            kind = "lung mask" if path.parent.name == MASKS else "image"
            raise DataError(f"{path}: {kind} is {w}x{h} but the data set's images are {width}x{height}")
    return height, width


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else ""


def decode_chunk(task: tuple[list[tuple[str, str]], tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Decode (image, mask) pairs (a worker's share) into (k, H, W) uint8 arrays."""
    chunk, size = task
    images = np.empty((len(chunk), *size), np.uint8)
    masks = np.empty_like(images)
    for k, (image_path, mask_path) in enumerate(chunk):
        for out, path in ((images, image_path), (masks, mask_path)):
            array = _decode(Path(path), "L")
            if array.shape != tuple(size):  # the header promised otherwise: a broken file
                raise DataError(f"{path}: decoded to {array.shape[1]}x{array.shape[0]}, expected {size[1]}x{size[0]}")
            out[k] = array
    return images, masks


@datasets.register(NAME)
class CovidQU:
    """COVID-QU-Ex infection subset: chest X-rays (main), lung masks (auxiliary), 3 classes."""

    requires_root: ClassVar[bool] = True

    def protocol(self, preset: str, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The paper's protocol, for every preset."""
        return fixed_protocol(NAME, PROTOCOL, fixed)

    def prepare(self, *, cache: Path, params: Mapping[str, Any], root: Path | None = None, jobs: int = 1, force: bool = False) -> Path:
        """Find the splits under ``root``, decode every pair and write the prepared set."""
        if root is None:
            raise not_prepared_error(NAME, cache)
        check_params(params, tuple(PROTOCOL), NAME)
        if list(params["classes"]) != list(CLASSES):
            raise ConfigError(f"covidqu: classes must be {', '.join(CLASSES)}")
        params = dict(params)
        root = Path(root).expanduser().resolve()
        split_root = find_split_root(root)
        items, source_fp = discover(split_root)
        existing = find_prepared(cache, NAME, params)
        if existing and not force:
            return _reuse(existing, split_root, source_fp)
        size = check_sizes([t for split in SPLITS for t in items[split]])
        with building(cache, NAME, params, force=force) as tmp:
            arrays: dict[str, dict[str, np.ndarray]] = {}
            for split in SPLITS:
                triples = items[split]
                chunks = [([(str(i), str(m)) for i, m, _ in triples[k : k + _CHUNK]], size) for k in range(0, len(triples), _CHUNK)]
                main = np.empty((len(triples), *size), np.uint8)
                aux = np.empty_like(main)
                at = 0
                for images, masks in parallel_map(decode_chunk, chunks, jobs):
                    main[at : at + len(images)] = images
                    aux[at : at + len(images)] = masks
                    at += len(images)
                stems = np.array([p.stem for p, _, _ in triples])
                arrays[split] = {
                    "main": main, "aux": aux, "label": np.array([c for _, _, c in triples], np.int64),
                    "names": stems, "cases": stems,
                }
            extra = {
                "modalities": {"main": "chest X-ray", "aux": "lung mask"},
                "classes": list(CLASSES),
                "normalisation": {"main": dict(UINT8_TO_UNIT), "aux": dict(UINT8_TO_UNIT)},
                "sampler_crop": 1.0,
                "image_size": list(size),
                "class_counts": {s: np.bincount(arrays[s]["label"], minlength=len(CLASSES)).tolist() for s in SPLITS},
                "source": {"root": str(split_root), "fingerprint": source_fp, "images": sum(len(v) for v in items.values())},
            }
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


def _reuse(existing: Path, split_root: Path, source_fp: str) -> Path:
    """Same source: a no-op. Another source: an error unless --force."""
    source = open_prepared(existing).manifest.get("source", {})
    if source.get("fingerprint") == source_fp:
        return existing
    raise DataError(
        f"covidqu is already prepared in {existing} from {source.get('root', 'another source')} "
        f"({source.get('images', '?')} images), which differs from {split_root}; pass --force to replace it"
    )
