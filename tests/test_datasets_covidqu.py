"""``albench prepare covidqu`` on synthetic data in COVID-QU-Ex's download layout (real PNGs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import albench.datasets  # noqa: F401
from albench import datasets
from albench.datasets.synthetic import COVIDQU_CLASSES, INFECTION, LUNG, infection_split_root, write_covidqu_layout
from albench.errors import DataError
from albench.prepared import SPLITS, open_prepared
from conftest import assert_prepare_refused, nothing_prepared

SPLIT_DIRS = {"train": "Train", "val": "Val", "test": "Test"}


@pytest.fixture(scope="module")
def recipe():
    return datasets.get("covidqu").obj()


@pytest.fixture(scope="module")
def params(recipe):
    return recipe.protocol("paper", {})


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    """Wrapper folder, doubled subset folder, the lung subset beside it, some RGB images."""
    return write_covidqu_layout(tmp_path_factory.mktemp("raw"), size=32, seed=2, rgb_every=5)


@pytest.fixture(scope="module")
def prepared(recipe, params, layout, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    recipe.prepare(cache=cache, params=params, root=layout)
    return recipe.load(cache=cache, params=params)


@pytest.fixture
def copy(layout, tmp_path) -> Path:
    return Path(shutil.copytree(layout, tmp_path / "raw" / layout.name))


def _files(top: Path, split: str, cls: str, kind: str = "images") -> list[Path]:
    return sorted((infection_split_root(top) / SPLIT_DIRS[split] / cls / kind).glob("*.png"))


def test_counts_labels_and_storage(prepared, layout):
    m = prepared.manifest
    assert m["classes"] == sorted(COVIDQU_CLASSES)
    for split in SPLITS:
        s = prepared.split(split)
        expected = {c: len(_files(layout, split, cls)) for c, cls in enumerate(COVIDQU_CLASSES)}
        assert m["counts"][split] == len(s) == sum(expected.values())
        labels = np.asarray(s.target("label"))
        assert labels.dtype == np.int64
        assert {c: int((labels == c).sum()) for c in expected} == expected
        assert s.main.dtype == np.uint8 and s.aux.dtype == np.uint8 and s.main.shape[1:] == (32, 32)
        assert all(" (" in name for name in s.names)  # names keep spaces and parentheses
    assert m["normalisation"]["main"] == {"scale": pytest.approx(2 / 255), "offset": -1.0}
    assert m["sampler_crop"] == 1.0 and m["image_size"] == [32, 32]
    assert INFECTION in m["source"]["root"] and LUNG not in m["source"]["root"]
    all_names = [n for s in SPLITS for n in prepared.split(s).names]
    assert len(all_names) == len(set(all_names))  # no image in two splits
    open_prepared(prepared.path, verify=True)


def test_every_item_matches_its_files(prepared, layout):
    """Image and mask by file name (RGB images converted to grey levels)."""
    for split in SPLITS:
        s = prepared.split(split)
        for i, (name, label) in enumerate(zip(s.names, s.target("label"))):
            cls = COVIDQU_CLASSES[label]
            folder = infection_split_root(layout) / SPLIT_DIRS[split] / cls
            np.testing.assert_array_equal(s.main[i], np.asarray(Image.open(folder / "images" / f"{name}.png").convert("L")))
            np.testing.assert_array_equal(s.aux[i], np.asarray(Image.open(folder / "lung masks" / f"{name}.png")))


def test_pairing_by_name_not_listing_order(recipe, params, copy, tmp_path):
    """Masks rewritten in reverse order with distinct contents still land beside their images."""
    folder = infection_split_root(copy) / "Train" / "Normal"
    masks = sorted((folder / "lung masks").glob("*.png"))
    for k, path in enumerate(reversed(masks)):
        path.unlink()
        Image.fromarray(np.full((32, 32), k + 1, np.uint8)).save(path)
    train = open_prepared(recipe.prepare(cache=tmp_path, params=params, root=copy)).train
    checked = 0
    for i, name in enumerate(train.names):
        path = folder / "lung masks" / f"{name}.png"
        if path.exists():
            assert train.aux[i][0, 0] == np.asarray(Image.open(path))[0, 0]
            checked += 1
    assert checked == len(masks) > 1


@pytest.mark.parametrize("where", ["top", "outer", "inner"])
def test_root_may_be_any_folder_down_to_the_splits(recipe, params, layout, prepared, tmp_path, where):
    root = {"top": layout, "outer": layout / INFECTION, "inner": layout / INFECTION / INFECTION}[where]
    path = recipe.prepare(cache=tmp_path, params=params, root=root)
    assert open_prepared(path).manifest["arrays"] == prepared.manifest["arrays"]


def test_single_subset_folder_without_wrapper(recipe, params, tmp_path):
    top = write_covidqu_layout(tmp_path / "raw", size=24, doubled=False, wrapper=None, lung_subset=False)
    path = recipe.prepare(cache=tmp_path / "cache", params=params, root=top)
    assert open_prepared(path).manifest["image_size"] == [24, 24]


def test_rerun_is_a_no_op(recipe, params, layout, tmp_path):
    path = recipe.prepare(cache=tmp_path, params=params, root=layout)
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert recipe.prepare(cache=tmp_path, params=params, root=layout / INFECTION) == path
    assert (path / "manifest.json").stat().st_mtime_ns == stamp


def test_not_prepared_names_the_command(recipe, params, tmp_path):
    with pytest.raises(DataError, match=r"covidqu is not prepared in .*; run: albench prepare covidqu --root DIR"):
        recipe.load(cache=tmp_path, params=params)


def _break_no_mask(top):
    path = _files(top, "val", "COVID-19", "lung masks")[0]
    path.unlink()
    return [path.name.replace("(", "").split()[0], "without a lung mask", "images"]


def _break_corrupt_png(top):
    path = _files(top, "train", "Non-COVID")[1]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 40)
    return [path.name, "not a readable PNG"]


def _break_truncated_png(top):
    path = _files(top, "test", "Normal")[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return [path.name, "not a readable PNG"]


def _break_odd_size(top):
    path = _files(top, "train", "Normal")[2]
    Image.fromarray(np.zeros((40, 32), np.uint8)).save(path)
    return [path.name, "image is 32x40"]


def _break_odd_mask_size(top):
    path = _files(top, "test", "COVID-19", "lung masks")[0]
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)
    return [path.name, "16x16"]


def _break_empty_split(top):
    for cls in COVIDQU_CLASSES:
        for kind in ("images", "lung masks", "infection masks"):
            for path in _files(top, "val", cls, kind):
                path.unlink()
    return ["val split is empty", "Val"]


def _break_missing_class(top):
    shutil.rmtree(infection_split_root(top) / "Test" / "Non-COVID")
    return ["expected class folders COVID-19, Non-COVID, Normal", "found: COVID-19, Normal"]


def _break_only_lung_subset(top):
    shutil.rmtree(top / INFECTION)
    return ["expected COVID-QU-Ex's 'Infection Segmentation Data'", f"found: {LUNG}/"]


BREAKERS = {
    "image without mask": _break_no_mask,
    "corrupt png": _break_corrupt_png,
    "truncated png": _break_truncated_png,
    "odd image size": _break_odd_size,
    "odd mask size": _break_odd_mask_size,
    "empty split": _break_empty_split,
    "missing class folder": _break_missing_class,
    "not the layout": _break_only_lung_subset,
}


@pytest.mark.parametrize("breaker", list(BREAKERS), ids=list(BREAKERS))
def test_bad_input_is_one_line_and_writes_nothing(recipe, params, copy, tmp_path, breaker):
    assert_prepare_refused(recipe, params, copy, tmp_path / "cache", BREAKERS[breaker](copy), "covidqu")


def test_the_lung_subset_is_refused(recipe, params, layout, tmp_path):
    with pytest.raises(DataError, match="Lung Segmentation Data' subset"):
        recipe.prepare(cache=tmp_path, params=params, root=layout / LUNG / LUNG)
    assert nothing_prepared(tmp_path, "covidqu")


def test_cli_prepare_with_jobs_and_a_bad_png(layout, copy, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "albench.cli", "prepare", "covidqu", "--root", str(layout),
                         "--cache", str(tmp_path / "a"), "--jobs", "2"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert str(tmp_path / "a" / "covidqu") in ok.stdout
    expected = _break_corrupt_png(copy)
    bad = subprocess.run([sys.executable, "-m", "albench.cli", "prepare", "covidqu", "--root", str(copy),
                          "--cache", str(tmp_path / "b"), "--jobs", "2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected[0] in lines[0], bad.stderr
    assert nothing_prepared(tmp_path / "b", "covidqu")
