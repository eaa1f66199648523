"""Small synthetic data sets in the exact on-disk layouts of BraTS2018 and COVID-QU-Ex.

Tests, benchmarks and the tasks' own tests use these to exercise ``albench prepare`` on real file
formats (NIfTI through nibabel, PNG through Pillow) without the real data. The layouts follow the
downloads closely, including their awkward parts:

BraTS2018::

    MICCAI_BraTS_2018_Data_Training/
        HGG/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz   (or .nii)
        LGG/<case>/...                                     (ignored by prepare)
        survival_data.csv

with int16 images, uint8 labels in {0, 1, 2, 4} and BraTS' affine (LPS-flipped 1 mm voxels).

COVID-QU-Ex::

    <wrapper>/Infection Segmentation Data/Infection Segmentation Data/{Train,Val,Test}/
        {COVID-19,Non-COVID,Normal}/{images,lung masks,infection masks}/<name>.png
    <wrapper>/Lung Segmentation Data/Lung Segmentation Data/...   (a different subset, ignored)

with file names such as ``covid_1 (12).png``, ``non_COVID (3).png`` and ``Normal (7).png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair", "seg")
COVIDQU_CLASSES = ("COVID-19", "Non-COVID", "Normal")
COVIDQU_SPLITS = ("Train", "Val", "Test")
INFECTION = "Infection Segmentation Data"
LUNG = "Lung Segmentation Data"

_INSTITUTIONS = ("CBICA", "TCIA01", "TCIA02", "TCIA08", "2013")


def brats_affine(shape: Sequence[int]) -> np.ndarray:
    """BraTS' affine: 1 mm voxels, x and y flipped (RAS from LPS), origin at the far y edge."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1
    return affine


def brats_case_names(n: int, grade: str = "HGG", start: int = 0) -> list[str]:
    """Case ids shaped like BraTS 2018's (``Brats18_CBICA_AAB_1``), unique per grade."""
    names = []
    for i in range(start, start + n):
        inst = _INSTITUTIONS[i % len(_INSTITUTIONS)]
        a, b, c = (i // 676) % 26, (i // 26) % 26, i % 26
        tag = f"{chr(65 + a)}{chr(65 + b)}{chr(65 + c)}" if inst == "CBICA" else str(100 + i)
        names.append(f"Brats18_{inst}_{tag}_{1 if grade == 'HGG' else 2}")
    return names


def _brats_volumes(rng: np.random.Generator, shape: tuple[int, int, int], radius: float) -> dict[str, np.ndarray]:
    """One case: four co-registered int16 modalities and a uint8 BraTS-coded label volume."""
    x, y, z = np.meshgrid(*(np.arange(s, dtype=np.float32) - (s - 1) / 2 for s in shape), indexing="ij")
    head = (x / (shape[0] * 0.45)) ** 2 + (y / (shape[1] * 0.47)) ** 2 + (z / (shape[2] * 0.55)) ** 2 < 1
    centre = rng.uniform(-0.08, 0.08, 3) * np.array(shape)
    rz = max(shape[2] * rng.uniform(0.2, 0.3), 2.0)
    d = ((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / radius**2 + ((z - centre[2]) / rz) ** 2
    seg = np.zeros(shape, np.uint8)
    seg[(d < 1) & head] = 2
    seg[(d < 0.45) & head] = 4
    seg[(d < 0.15) & head] = 1
    contrast = {  # background, tissue, oedema, enhancing, necrosis (roughly like the sequences)
        "t1": (0, 400, 350, 420, 250), "t1ce": (0, 450, 430, 1100, 200),
        "t2": (0, 500, 900, 800, 1000), "flair": (0, 380, 950, 700, 500),
    }
    out: dict[str, np.ndarray] = {}
    for mod, (bg, tis, ed, et, ncr) in contrast.items():
        vol = np.where(head, tis, bg).astype(np.float32)
        for code, value in ((2, ed), (4, et), (1, ncr)):
            vol[seg == code] = value
        vol += rng.normal(0, 25, shape).astype(np.float32) * head
        out[mod] = np.clip(vol, 0, 32767).astype(np.int16)
    out["seg"] = seg
    return out


def write_brats_layout(
    root: str | Path,
    n_hgg: int = 10,
    n_lgg: int = 2,
    *,
    shape: tuple[int, int, int] = (64, 64, 24),
    gz: bool | str = True,
    seed: int = 0,
    radius: float | None = None,
    small_every: int = 0,
) -> Path:
    """Write a BraTS2018-layout training folder; return ``root/MICCAI_BraTS_2018_Data_Training``.

    ``gz``: True for ``.nii.gz``, False for ``.nii``, ``"mixed"`` to alternate per case. The
    tumour's in-plane radius defaults to 40 % of the side, enough for slices near its centre to pass
    the 1000-pixel rule at 64 x 64; every ``small_every``-th case (0: none) gets a tumour too small
    to pass, as real cases near the rule's edge do.
    """
    import nibabel as nib

    top = Path(root) / "MICCAI_BraTS_2018_Data_Training"
    rng = np.random.default_rng(seed)
    affine = brats_affine(shape)
    base = radius if radius is not None else 0.4 * min(shape[:2])
    for grade, n in (("HGG", n_hgg), ("LGG", n_lgg)):
        for i, case in enumerate(brats_case_names(n, grade)):
            folder = top / grade / case
            folder.mkdir(parents=True, exist_ok=True)
            small = small_every and (i + 1) % small_every == 0
            r = base * (0.3 if small else rng.uniform(0.95, 1.15))
            vols = _brats_volumes(rng, shape, r)
            ext = ".nii.gz" if (gz is True or (gz == "mixed" and i % 2 == 0)) else ".nii"
            for mod in BRATS_MODALITIES:
                img = nib.Nifti1Image(vols[mod], affine)
                img.header.set_data_dtype(vols[mod].dtype)
                img.header.set_xyzt_units("mm", "sec")
                nib.save(img, folder / f"{case}_{mod}{ext}")
    (top / "survival_data.csv").write_text("BraTS18ID,Age,Survival,ResectionStatus\n")
    return top


def count_qualifying_slices(top: str | Path, min_pixels: int = 1000) -> dict[str, int]:
    """An independent count, per HGG case, of axial slices with more than ``min_pixels`` tumour
    pixels, read straight from the seg files (for tests)."""
    import nibabel as nib

    counts = {}
    for folder in sorted((Path(top) / "HGG").iterdir()):
        seg_files = list(folder.glob("*_seg.nii*"))
        seg = np.asarray(nib.load(seg_files[0]).dataobj)
        counts[folder.name] = int(((seg > 0).sum(axis=(0, 1)) > min_pixels).sum())
    return counts


def covidqu_name(cls: str, index: int) -> str:
    """A file stem in COVID-QU-Ex's style for class ``cls`` (spaces and parentheses included)."""
    if cls == "COVID-19":
        return f"covid_{1 + index // 50} ({1 + index % 50})"
    if cls == "Non-COVID":
        return f"non_COVID ({1 + index})"
    return f"Normal ({1 + index})"


def write_covidqu_layout(
    root: str | Path,
    counts: Mapping[str, Mapping[str, int]] | None = None,
    *,
    size: int = 32,
    seed: int = 0,
    doubled: bool = True,
    wrapper: str | None = "COVID-QU-Ex dataset",
    lung_subset: bool = True,
    rgb_every: int = 0,
) -> Path:
    """Write COVID-QU-Ex's infection subset in its download layout; return the top folder.

    ``counts[split][class]`` images per split and class (default: 6/2/3 per class). Images come from
    the phantom's chest family (so they look like chest X-rays); lung masks are 0/255, infection
    masks a blob inside the lungs for COVID-19 and empty otherwise. With ``lung_subset`` the
    "Lung Segmentation Data" subset is written beside it, at a different size, so that a prepare
    that wrongly reads it fails the one-size check. ``rgb_every`` saves every n-th image as RGB.
    """
    from PIL import Image

    from albench.datasets.phantom import _chest_items

    if counts is None:
        counts = {split: {cls: n for cls in COVIDQU_CLASSES} for split, n in zip(COVIDQU_SPLITS, (6, 2, 3))}
    top = Path(root) / wrapper if wrapper else Path(root)
    rng = np.random.default_rng(seed)
    subsets = [(INFECTION, size, True)] + ([(LUNG, size * 2, False)] if lung_subset else [])
    for subset, side, infection in subsets:
        base = top / subset / subset if doubled else top / subset
        offset = 0
        for split in COVIDQU_SPLITS:
            for label, cls in enumerate(COVIDQU_CLASSES):
                n = int(counts.get(split, {}).get(cls, 0))
                folders = ["images", "lung masks"] + (["infection masks"] if infection else [])
                for f in folders:
                    (base / split / cls / f).mkdir(parents=True, exist_ok=True)
                if n == 0:
                    continue
                images, lungs = _chest_items(rng, np.full(n, label), side)
                for i in range(n):
                    stem = covidqu_name(cls, offset + i)
                    img = Image.fromarray(images[i])
                    if rgb_every and (offset + i) % rgb_every == 0:
                        img = img.convert("RGB")
                    img.save(base / split / cls / "images" / f"{stem}.png")
                    Image.fromarray(lungs[i]).save(base / split / cls / "lung masks" / f"{stem}.png")
                    if infection:
                        inf = np.zeros_like(lungs[i])
                        if cls == "COVID-19":
                            inf[side // 3 : side // 2, side // 5 : side // 3] = 255
                            inf &= lungs[i]
                        Image.fromarray(inf).save(base / split / cls / "infection masks" / f"{stem}.png")
                offset += n
    return top


def infection_split_root(top: str | Path, doubled: bool = True) -> Path:
    """The folder holding Train/Val/Test inside a layout written by :func:`write_covidqu_layout`."""
    base = Path(top) / INFECTION
    return base / INFECTION if doubled else base
