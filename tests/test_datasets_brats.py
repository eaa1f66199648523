"""``albench prepare brats`` on synthetic data in the exact BraTS2018 layout (real NIfTI files)."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import albench.datasets  # noqa: F401
from albench import datasets
from albench.datasets.common import split_counts
from albench.datasets.synthetic import count_qualifying_slices, write_brats_layout
from albench.errors import DataError
from albench.prepared import SPLITS, open_prepared
from conftest import assert_prepare_refused, nothing_prepared

N_HGG = 8


@pytest.fixture(scope="module")
def recipe():
    return datasets.get("brats").obj()


@pytest.fixture(scope="module")
def params(recipe):
    return recipe.protocol("paper", {})


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """A pristine layout: 8 HGG cases (mixed .nii / .nii.gz; the 5th, in train, too small to keep), 2 LGG."""
    return write_brats_layout(tmp_path_factory.mktemp("raw"), N_HGG, 2, shape=(64, 64, 20), gz="mixed", seed=1, small_every=5)


@pytest.fixture(scope="module")
def prepared(recipe, params, layout, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    recipe.prepare(cache=cache, params=params, root=layout)
    return recipe.load(cache=cache, params=params)


@pytest.fixture
def copy(layout, tmp_path) -> Path:
    """A private copy of the layout to break."""
    return Path(shutil.copytree(layout, tmp_path / "raw" / layout.name))


def _case_file(top: Path, case: str, modality: str) -> Path:
    return next((top / "HGG" / case).glob(f"{case}_{modality}.nii*"))


def test_counts_match_an_independent_count(prepared, layout):
    per_case = count_qualifying_slices(layout)
    split_cases = prepared.manifest["split_cases"]
    for split in SPLITS:
        expected = sum(per_case[c] for c in split_cases[split])
        assert prepared.manifest["counts"][split] == len(prepared.split(split)) == expected > 0
    assert sum(prepared.manifest["counts"].values()) == sum(per_case.values())
    assert 0 in per_case.values()  # a case without a kept slice still belongs to its split
    # split by case with the paper's fractions
    assert tuple(len(split_cases[s]) for s in SPLITS) == split_counts(N_HGG) == (6, 1, 1)
    assert split_counts(210) == (135, 33, 42)


def test_splits_by_case_and_ignores_lgg(prepared, layout):
    split_cases = {s: set(prepared.manifest["split_cases"][s]) for s in SPLITS}
    assert sum(len(v) for v in split_cases.values()) == len(set().union(*split_cases.values())) == N_HGG
    assert set().union(*split_cases.values()) == {p.name for p in (layout / "HGG").iterdir() if p.is_dir()}
    for split in SPLITS:
        assert set(prepared.split(split).cases) <= split_cases[split]
        assert set(prepared.manifest["cases"][split]) == set(prepared.split(split).cases)
    lgg = {p.name for p in (layout / "LGG").iterdir()}
    everything = {c for s in SPLITS for c in prepared.split(s).cases}
    assert not lgg & everything
    assert prepared.manifest["source"]["cases"] == N_HGG


def test_split_is_fixed_by_the_seed_not_the_listing(recipe, params, layout):
    from albench.datasets.common import split_cases

    names = sorted(p.name for p in (layout / "HGG").iterdir())
    assert split_cases(names, params["split_seed"]) == split_cases(list(reversed(names)), params["split_seed"])


def test_every_item_is_its_own_case_slice_preprocessed(prepared, layout):
    """Pairing by case id, the stored orientation and the preprocessing, checked for every item."""
    for split in SPLITS:
        s = prepared.split(split)
        assert s.main.dtype == np.float32 and s.target("mask").dtype == np.uint8
        volumes: dict[tuple[str, str], np.ndarray] = {}
        for i, (name, case, k) in enumerate(zip(s.names, s.cases, s.target("slice"))):
            assert name == f"{case}:{k}"
            for role, modality in (("main", "t1ce"), ("aux", "flair"), ("mask", "seg")):
                key = (case, modality)
                if key not in volumes:
                    volumes[key] = np.asarray(nib.load(_case_file(layout, case, modality)).dataobj)
                raw = volumes[key][:, :, k]
                if role == "mask":
                    np.testing.assert_array_equal(s.target("mask")[i], raw)
                    assert (raw > 0).sum() > 1000
                    continue
                x = raw.astype(np.float64)
                lo, hi = np.percentile(x, 1), np.percentile(x, 99)
                expected = np.clip(x, lo, hi) / np.clip(x, lo, hi).max()
                np.testing.assert_allclose(s.arrays[role][i], expected, rtol=1e-5, atol=1e-6)
        pres = np.asarray(s.target("presence"))
        np.testing.assert_array_equal(pres[:, 0], (np.asarray(s.target("mask")) == 4).any(axis=(1, 2)))


def test_manifest_normalisation_and_memory_mapping(prepared):
    m = prepared.manifest
    assert isinstance(prepared.train.main, np.memmap)
    train = np.asarray(prepared.train.main, dtype=np.float64)
    assert m["zscore"]["main"]["mean"] == pytest.approx(train.mean(), rel=1e-6)
    assert m["zscore"]["main"]["std"] == pytest.approx(train.std(), rel=1e-6)
    z = train * m["normalisation"]["main"]["scale"] + m["normalisation"]["main"]["offset"]
    assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1, rel=1e-6)
    assert m["modalities"] == {"main": "t1ce", "aux": "flair"}
    assert m["sampler_crop"] == pytest.approx(210 / 240)
    assert "root" not in m["protocol"] and str(m["source"]["root"]).endswith("MICCAI_BraTS_2018_Data_Training")
    for rel, info in m["arrays"].items():
        split, name = rel.split("/")
        assert list(prepared.split(split).arrays[name].shape) == info["shape"]
    open_prepared(prepared.path, verify=True)  # every sha256 matches


def test_jobs_do_not_change_the_result(recipe, params, prepared, layout, tmp_path):
    path = recipe.prepare(cache=tmp_path, params=params, root=layout, jobs=2)
    manifest = open_prepared(path).manifest
    assert manifest["arrays"] == prepared.manifest["arrays"]


def test_rerun_is_a_no_op_other_source_needs_force(recipe, params, layout, copy, tmp_path):
    path = recipe.prepare(cache=tmp_path, params=params, root=layout)
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert recipe.prepare(cache=tmp_path, params=params, root=layout) == path
    assert (path / "manifest.json").stat().st_mtime_ns == stamp
    assert recipe.prepare(cache=tmp_path, params=params, root=copy) == path  # a copy of the same files
    shutil.rmtree(copy / "HGG" / sorted(os.listdir(copy / "HGG"))[0])
    with pytest.raises(DataError, match="already prepared.*--force"):
        recipe.prepare(cache=tmp_path, params=params, root=copy)
    assert recipe.prepare(cache=tmp_path, params=params, root=copy, force=True) == path
    assert open_prepared(path).manifest["source"]["cases"] == N_HGG - 1


def test_not_prepared_names_the_command(recipe, params, tmp_path):
    with pytest.raises(DataError) as info:
        recipe.load(cache=tmp_path, params=params)
    message = str(info.value)
    assert "albench prepare brats --root DIR" in message and f"--cache {tmp_path}" in message
    assert "\n" not in message


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(3000))


def _resave(path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> None:
    img = nib.load(path)
    array = np.asarray(img.dataobj) if data is None else data
    new = nib.Nifti1Image(array, img.affine if affine is None else affine)
    new.header.set_data_dtype(array.dtype)
    path.unlink()
    nib.save(new, path)


def _first(top: Path) -> str:
    return sorted(p.name for p in (top / "HGG").iterdir())[0]


def _break_missing(top):
    case = _first(top)
    _case_file(top, case, "flair").unlink()
    return [case, f"{case}_flair.nii"]


def _break_missing_unused(top):
    case = _first(top)
    _case_file(top, case, "t2").unlink()
    return [case, f"{case}_t2.nii"]


def _break_truncated_gz(top):
    case = _first(top)
    path = next(p for c in sorted(os.listdir(top / "HGG")) for p in [_case_file(top, c, "t1ce")] if p.name.endswith(".gz"))
    _truncate(path)
    return [path.name]


def _break_truncated_unused_gz(top):
    path = next(p for c in sorted(os.listdir(top / "HGG")) for p in [_case_file(top, c, "t1")] if p.name.endswith(".gz"))
    _truncate(path)
    return [path.name]


def _break_truncated_nii(top):
    path = next(p for c in sorted(os.listdir(top / "HGG")) for p in [_case_file(top, c, "flair")] if p.name.endswith(".nii"))
    _truncate(path)
    return [path.name]


def _break_corrupt(top):
    path = _case_file(top, _first(top), "seg")
    _garbage(path)
    return [path.name]


def _break_shape(top):
    case = _first(top)
    path = _case_file(top, case, "flair")
    _resave(path, np.zeros((64, 60, 20), np.int16))
    return [case, path.name, "shape"]


def _break_affine(top):
    case = _first(top)
    path = _case_file(top, case, "t1")
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += 5
    _resave(path, affine=affine)
    return [case, path.name, "affine"]


def _break_labels(top):
    path = _case_file(top, _first(top), "seg")
    seg = np.asarray(nib.load(path).dataobj).copy()
    seg[seg == 1] = 3
    _resave(path, seg)
    return [path.name, "unexpected label values 3"]


def _break_no_hgg(top):
    shutil.rmtree(top / "HGG")
    return ["expected an HGG/", "found: LGG/, survival_data.csv"]


def _break_empty_split(top):
    # keep three cases whose tumours are too small: every split is empty
    for case in sorted(os.listdir(top / "HGG"))[3:]:
        shutil.rmtree(top / "HGG" / case)
    for case in os.listdir(top / "HGG"):
        path = _case_file(top, case, "seg")
        _resave(path, np.zeros(nib.load(path).shape, np.uint8))
    return ["split", "no slice with more than 1000 tumour pixels"]


def _break_too_few_cases(top):
    for case in sorted(os.listdir(top / "HGG"))[2:]:
        shutil.rmtree(top / "HGG" / case)
    return ["at least 3 cases"]


def _break_empty_hgg(top):
    for case in os.listdir(top / "HGG"):
        shutil.rmtree(top / "HGG" / case)
    return ["expected case folders", "found: nothing"]


BREAKERS = {
    "missing modality": _break_missing,
    "missing unused modality": _break_missing_unused,
    "truncated nii.gz": _break_truncated_gz,
    "truncated unused nii.gz": _break_truncated_unused_gz,
    "truncated nii": _break_truncated_nii,
    "corrupt file": _break_corrupt,
    "shape mismatch": _break_shape,
    "affine mismatch": _break_affine,
    "unexpected labels": _break_labels,
    "no HGG folder": _break_no_hgg,
    "empty split": _break_empty_split,
    "too few cases": _break_too_few_cases,
    "no cases": _break_empty_hgg,
}


@pytest.mark.parametrize("breaker", list(BREAKERS), ids=list(BREAKERS))
def test_bad_input_is_one_line_and_writes_nothing(recipe, params, copy, tmp_path, breaker):
    assert_prepare_refused(recipe, params, copy, tmp_path / "cache", BREAKERS[breaker](copy), "brats")


def test_bad_input_in_a_worker_process(recipe, params, copy, tmp_path):
    expected = _break_labels(copy)
    with pytest.raises(DataError, match=expected[1]):
        recipe.prepare(cache=tmp_path, params=params, root=copy, jobs=2)
    assert nothing_prepared(tmp_path, "brats")


def test_root_that_is_the_hgg_folder(recipe, params, layout, tmp_path):
    with pytest.raises(DataError, match="expected an HGG/ folder.*pass its parent"):
        recipe.prepare(cache=tmp_path, params=params, root=layout / "HGG")
    with pytest.raises(DataError, match="not a folder"):
        recipe.prepare(cache=tmp_path, params=params, root=tmp_path / "nowhere")


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "albench.cli", *args], capture_output=True, text=True, timeout=120, **kwargs)


def test_cli_prepare_and_bad_input(layout, copy, tmp_path):
    ok = _cli("prepare", "brats", "--root", str(layout), "--cache", str(tmp_path / "a"), "--jobs", "2")
    assert ok.returncode == 0, ok.stderr
    assert str(tmp_path / "a" / "brats") in ok.stdout
    _break_missing(copy)
    bad = _cli("prepare", "brats", "--root", str(copy), "--cache", str(tmp_path / "b"))
    assert bad.returncode == 1
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "_flair.nii" in lines[0] and "Traceback" not in bad.stderr
    assert nothing_prepared(tmp_path / "b", "brats")


def test_killed_prepare_leaves_nothing_trusted(recipe, params, tmp_path):
    top = write_brats_layout(tmp_path / "raw", 16, 0, shape=(64, 64, 40), seed=3)
    cache = tmp_path / "cache"
    code = (
        "import sys, albench.datasets; from pathlib import Path; from albench import datasets; "
        "r = datasets.get('brats').obj(); "
        "r.prepare(cache=Path(sys.argv[1]), params=r.protocol('paper', {}), root=Path(sys.argv[2]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(cache), str(top)])
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            tmp_dirs = list((cache / "brats").glob(".tmp-*/train/main.npy")) if (cache / "brats").exists() else []
            if tmp_dirs and tmp_dirs[0].stat().st_size > 256:  # some slices are on disk
                break
            assert proc.poll() is None, "prepare finished before it could be killed"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert recipe.load.__doc__  # the recipe is importable in this process too
    with pytest.raises(DataError, match="not prepared"):
        recipe.load(cache=cache, params=params)
    leftovers = list((cache / "brats").iterdir())
    assert leftovers and all(p.name.startswith(".tmp-") for p in leftovers)
    # a normal prepare then succeeds, and clears the dead build's folder
    path = recipe.prepare(cache=cache, params=params, root=top)
    assert sorted(p.name for p in (cache / "brats").iterdir()) == [path.name]
    counts = count_qualifying_slices(top)
    assert sum(recipe.load(cache=cache, params=params).manifest["counts"].values()) == sum(counts.values())


def test_gzip_footer_check_falls_back_to_decompressing(recipe, params, copy, tmp_path):
    """A complete .nii.gz whose footer disagrees (extra bytes after the data) is still accepted."""
    case = _first(copy)
    path = next(p for c in sorted(os.listdir(copy / "HGG")) for p in [_case_file(copy, c, "t2")] if p.name.endswith(".gz"))
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(data + b"\0" * 16)
    assert case
    recipe.prepare(cache=tmp_path, params=params, root=copy)
