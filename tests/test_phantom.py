"""The embedded phantom: both families, determinism, and the auxiliary modality's extra information."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import albench.datasets  # noqa: F401  (registers the recipes)
from albench import datasets
from albench.errors import ConfigError
from albench.interfaces import DatasetRecipe
from albench.prepared import SPLITS, open_prepared


@pytest.fixture(scope="module")
def recipe():
    return datasets.get("phantom").obj()


@pytest.fixture(scope="module")
def brain(recipe, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return recipe.load(cache=cache, params=recipe.protocol("smoke", {"family": "brain"}))


@pytest.fixture(scope="module")
def chest(recipe, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return recipe.load(cache=cache, params=recipe.protocol("smoke", {"family": "chest"}))


def test_recipe_follows_the_protocol(recipe):
    assert isinstance(recipe, DatasetRecipe)
    assert recipe.requires_root is False


def test_brain_arrays_and_manifest(brain):
    m = brain.manifest
    assert m["protocol"]["family"] == "brain"
    for split in SPLITS:
        s = brain.split(split)
        n = len(s)
        assert n == m["counts"][split] > 0
        assert s.main.dtype == np.float32 and s.aux.dtype == np.float32
        assert s.main.shape == s.aux.shape == (n, 32, 32)
        mask = np.asarray(s.target("mask"))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2, 4}
        # every kept slice has a tumour above the BraTS share (1000 of 240 x 240 pixels)
        assert ((mask > 0).sum(axis=(1, 2)) > 1000 / 240**2 * 32 * 32).all()
        pres = np.asarray(s.target("presence"))
        assert pres.shape == (n, 3)
        np.testing.assert_array_equal(pres, np.stack([(mask == c).any(axis=(1, 2)) for c in (4, 2, 1)], 1))
        # preprocessed to [0, 1] with each slice's maximum at 1
        assert float(np.min(s.main)) >= 0 and np.allclose(np.max(s.main, axis=(1, 2)), 1)
        assert all(name.startswith(case + ":") for name, case in zip(s.names, s.cases))
    assert m["modalities"] == {"main": "T1ce-like", "aux": "FLAIR-like"}
    for key in ("main", "aux"):
        st, norm = m["zscore"][key], m["normalisation"][key]
        assert norm["scale"] == pytest.approx(1 / st["std"]) and norm["offset"] == pytest.approx(-st["mean"] / st["std"])
        z = np.asarray(brain.train.arrays[key]) * norm["scale"] + norm["offset"]
        assert abs(z.mean()) < 1e-3 and z.std() == pytest.approx(1, abs=1e-3)
    assert m["sampler_crop"] == 1.0


def test_brain_splits_by_patient_and_has_variety(brain):
    cases = {split: set(brain.split(split).cases) for split in SPLITS}
    assert not cases["train"] & cases["val"] and not cases["train"] & cases["test"] and not cases["val"] & cases["test"]
    assert cases["train"] == set(brain.manifest["cases"]["train"])
    train = brain.train
    # several slices per patient
    _, per_patient = np.unique(train.cases, return_counts=True)
    assert per_patient.max() >= 4
    # sub-regions vary: each is present in some slices and absent in others
    pres = np.asarray(train.target("presence"))
    assert (0.1 < pres.mean(axis=0)).all() and (pres.mean(axis=0) < 1).all()
    # tumour size varies a lot
    area = (np.asarray(train.target("mask")) > 0).sum(axis=(1, 2))
    assert area.max() > 4 * area.min()


def test_oedema_contrast_is_much_higher_in_the_auxiliary_modality(brain):
    """Oedema against the healthy tissue around the tumour, in units of that tissue's spread."""
    contrast: dict[str, list[float]] = {"main": [], "aux": []}
    train = brain.train
    for i in range(len(train)):
        mask = np.asarray(train.target("mask")[i])
        oedema = mask == 2
        if oedema.sum() < 5:
            continue
        ring = ndimage.binary_dilation(mask > 0, iterations=3) & (mask == 0)
        for key in contrast:
            x = np.asarray(train.arrays[key][i])
            contrast[key].append(abs(x[oedema].mean() - x[ring].mean()) / x[ring].std())
    assert len(contrast["main"]) > 50
    main, aux = np.median(contrast["main"]), np.median(contrast["aux"])
    assert aux > 3 * main, (main, aux)
    assert aux > 2


def test_determinism_per_seed(recipe, tmp_path):
    for family in ("brain", "chest"):
        params = recipe.protocol("smoke", {"family": family, "size": 24})
        a = recipe.load(cache=tmp_path / "a", params=params)
        b = recipe.load(cache=tmp_path / "b", params=params)
        other = recipe.load(cache=tmp_path / "c", params={**params, "seed": params["seed"] + 1})
        assert a.manifest["arrays"] == b.manifest["arrays"]  # same sha256 for every array
        for split in SPLITS:
            for name in a.split(split).arrays:
                np.testing.assert_array_equal(a.split(split).arrays[name], b.split(split).arrays[name])
        assert not np.array_equal(np.asarray(a.train.main[:10]), np.asarray(other.train.main[:10]))


def test_chest_family(chest):
    m = chest.manifest
    assert m["classes"] == sorted(m["classes"]) == ["COVID-19", "Non-COVID", "Normal"]
    assert m["normalisation"]["main"] == {"scale": pytest.approx(2 / 255), "offset": -1.0}
    for split in SPLITS:
        s = chest.split(split)
        assert s.main.dtype == np.uint8 and s.aux.dtype == np.uint8
        labels = np.asarray(s.target("label"))
        assert labels.dtype == np.int64 and set(np.unique(labels)) == {0, 1, 2}
        assert set(np.unique(s.aux)) == {0, 255}
    # lungs are darker than the body around them, in every image
    train = chest.train
    lungs = np.asarray(train.aux) > 0
    img = np.asarray(train.main).astype(np.float32)
    body = ndimage.binary_dilation(lungs, iterations=2, structure=np.ones((1, 3, 3))) & ~lungs
    assert ((img * lungs).sum((1, 2)) / lungs.sum((1, 2)) < (img * body).sum((1, 2)) / body.sum((1, 2))).all()


def test_chest_classes_are_subtle_but_learnable(chest):
    """A texture statistic inside the lungs separates the classes on average, but not perfectly."""
    train = chest.train
    img = np.asarray(train.main).astype(np.float32)
    lungs = np.asarray(train.aux) > 0
    lap = np.abs(img - ndimage.uniform_filter(img, size=(1, 3, 3)))  # local high-frequency energy
    lungs_in = ndimage.binary_erosion(lungs, iterations=1, structure=np.ones((1, 3, 3)))
    texture = (lap * lungs_in).sum((1, 2)) / np.maximum(lungs_in.sum((1, 2)), 1)
    labels = np.asarray(train.target("label"))
    means = [texture[labels == c].mean() for c in range(3)]
    normal = means[2]
    assert means[0] > normal and means[1] > normal
    # ... yet the classes overlap: a single threshold cannot split Normal from the rest
    best = max(((texture > t) == (labels != 2)).mean() for t in np.unique(texture))
    assert best < 0.98


def test_prepare_is_a_no_op_when_cached(recipe, tmp_path):
    params = recipe.protocol("smoke", {"family": "chest", "items": [30, 10, 10]})
    path = recipe.prepare(cache=tmp_path, params=params)
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert recipe.prepare(cache=tmp_path, params=params) == path
    assert (path / "manifest.json").stat().st_mtime_ns == stamp
    again = recipe.prepare(cache=tmp_path, params=params, force=True)
    assert again == path and open_prepared(path, verify=True).manifest["counts"]["train"] == 30
    assert [p.name for p in (tmp_path / "phantom").iterdir()] == [path.name]


def test_presets_scale_and_protocol_errors(recipe):
    smoke = recipe.protocol("smoke", {"family": "brain"})
    quick = recipe.protocol("quick", {"family": "brain"})
    paper = recipe.protocol("paper", {"family": "brain"})
    assert (smoke["size"], quick["size"], paper["size"]) == (32, 64, 128)
    assert recipe.protocol("quick", {"family": "chest"})["size"] == 64
    assert paper["patients"] == [135, 33, 42]
    assert recipe.protocol("smoke", {"family": "brain"}) == smoke  # stable cache key
    with pytest.raises(ConfigError, match="family 'liver'"):
        recipe.protocol("smoke", {"family": "liver"})
    with pytest.raises(ConfigError, match="no parameter 'colour'"):
        recipe.protocol("smoke", {"family": "chest", "colour": 1})


def test_wt_and_ml_share_one_prepared_pool(recipe, tmp_path):
    """``phantom-wt`` and ``phantom-ml`` fix the same parameters, so they open the same folder."""
    a = recipe.prepare(cache=tmp_path, params=recipe.protocol("smoke", {"family": "brain", "patients": [6, 3, 3]}))
    b = recipe.prepare(cache=tmp_path, params=recipe.protocol("smoke", {"family": "brain", "patients": (6, 3, 3)}))
    assert a == b
    assert isinstance(Path(a), Path)
