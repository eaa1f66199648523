"""Unit tests of the core's small pieces: seeding, views, overrides, the stores, selection checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from albench.config import CellSpec, coerce
from albench.errors import ConfigError, SelectionError
from albench.runner import validate_selection
from albench.seeding import int_seed, numpy_rng, torch_generator
from albench.selection_cache import Selection, SelectionCache
from albench.store import RunStore, labelled_sha256
from albench.views import crop_resize, normalised_tensor


def test_streams_are_reproducible_and_independent():
    a = numpy_rng(3, "initial", "phantom").random(5)
    assert np.array_equal(a, numpy_rng(3, "initial", "phantom").random(5))
    assert not np.array_equal(a, numpy_rng(3, "initial", "brats").random(5))
    assert not np.array_equal(a, numpy_rng(4, "initial", "phantom").random(5))
    assert int_seed(0, "round", 1, "model") != int_seed(0, "round", 2, "model")
    g1, g2 = torch_generator(1, "x"), torch_generator(1, "x")
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_normalised_tensor_leaves_a_read_only_memory_map_intact(tmp_path):
    values = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    np.save(tmp_path / "a.npy", values)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    out = normalised_tensor(mapped, {"scale": 2.0, "offset": -1.0}, torch.device("cpu"))
    assert out.shape == (2, 1, 4, 4)
    assert torch.equal(out[:, 0], torch.from_numpy(values * 2 - 1))
    assert np.array_equal(np.load(tmp_path / "a.npy"), values)


def test_crop_resize_takes_the_centre():
    images = torch.zeros(1, 1, 8, 8)
    images[..., 2:6, 2:6] = 1.0
    assert torch.equal(crop_resize(images, crop=0.5), torch.ones(1, 1, 4, 4))
    assert crop_resize(images, size=4).shape == (1, 1, 4, 4)


@pytest.mark.parametrize("text, default, expected", [
    ("3", 1, 3), ("0.5", 1.0, 0.5), ("yes", False, True), ("off", True, False), ("abc", "x", "abc"),
    ("0.2", None, 0.2), ("[1, 2]", [0], [1, 2]),
])
def test_coerce_parses_as_the_default_type(text, default, expected):
    assert coerce("k", text, default) == expected


@pytest.mark.parametrize("text, default", [("1.5", 1), ("maybe", True), ("x", 0.1)])
def test_coerce_refuses_mismatches(text, default):
    with pytest.raises(ConfigError, match=f"--set k={text}: expected"):
        coerce("k", text, default)


def _spec(**kw) -> CellSpec:
    base = dict(task="t", strategy="s", seed=0, preset="smoke", task_kind="multiclass", metrics=["accuracy"],
                protocol={"initial": 2, "budget": 2, "rounds": 1}, dataset="d", dataset_params={"a": 1},
                task_params={}, strategy_params={"p": 1}, strategy_meta={"task_agnostic": True})
    base.update(kw)
    return CellSpec(**base)


def test_validate_selection():
    spec = _spec()
    labelled = np.array([0, 1])
    assert validate_selection(spec, 0, torch.tensor([5, 3]), labelled, 10, 2).tolist() == [3, 5]
    for bad, message in [([3, 3], "duplicate"), ([1, 3], "already-labelled"), ([3], "returned 1 ids"),
                         ([3, 10], "outside the pool"), ([[3, 4]], "1-D integer"), ([3.0, 4.0], "1-D integer")]:
        with pytest.raises(SelectionError, match=message):
            validate_selection(spec, 0, bad, labelled, 10, 2)


def test_labelled_sha256_is_order_free():
    assert labelled_sha256([3, 1, 2]) == hashlib.sha256(b"1,2,3").hexdigest()


def test_selection_cache_roundtrip_and_keys(tmp_path):
    cache = SelectionCache(tmp_path)
    spec = _spec()
    sel = Selection([4, 7], {"loss": 0.5}, {"unlabelled_scores": np.array([0.1, 0.2], np.float32)}, 1.5)
    cache.put(spec, "cpu", 0, "ab" * 32, sel)
    got = cache.get(_spec(task="other-task"), "cpu", 0, "ab" * 32)  # another task of the same data set
    assert got is not None and got.added == [4, 7] and got.scalars == {"loss": 0.5}
    assert np.array_equal(got.diagnostics["unlabelled_scores"], sel.diagnostics["unlabelled_scores"])
    assert cache.get(spec, "cpu", 0, "cd" * 32) is None  # another labelled set
    assert cache.get(_spec(strategy_params={"p": 2}), "cpu", 0, "ab" * 32) is None
    assert cache.get(spec, "cuda", 0, "ab" * 32) is None
    assert cache.get(_spec(protocol={"initial": 2, "budget": 3, "rounds": 1}), "cpu", 0, "ab" * 32) is None
    import time

    assert SelectionCache(tmp_path, not_before=time.time() + 10).get(spec, "cpu", 0, "ab" * 32) is None


def test_run_store_commit_and_rebuild(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_spec({"metrics": ["accuracy"]})
    for r in range(2):
        store.commit({"round": r, "n_labelled": 2 + 2 * r, "metrics": {"test_accuracy": 0.5 + r / 10, "val_accuracy": 0.4},
                      "fit_seconds": 1.0, "select_seconds": 0.0, "peak_memory_mb": 10.0, "scalars": {"loss": 1.0},
                      "added": [r], "labelled_sha256": "x", "next_added": []},
                     diagnostics={"labelled_ids": np.array([0])} if r == 0 else None)
    lines = (tmp_path / "run/rounds.csv").read_text().splitlines()
    assert lines[0] == "round,n_labelled,test_accuracy,val_accuracy,fit_seconds,select_seconds,peak_memory_mb,loss"
    assert lines[2].startswith("1,4,0.6,0.4,")
    assert [json.loads(x)["added"] for x in (tmp_path / "run/selected.jsonl").read_text().splitlines()] == [[0], [1]]
    assert (tmp_path / "run/diagnostics/round-0.npz").is_file()
    (tmp_path / "run/records/round-000.json").unlink()  # a gap: later records are not trusted
    assert store.records() == []


def test_bare_override_shared_by_two_namespaces_must_be_qualified():
    from albench.config import resolve_cells

    with pytest.raises(ConfigError, match=r"--set lr: ambiguous .* write task.lr or strategy.lr"):
        resolve_cells(tasks=["phantom-cls"], strategies=["vaal"], seeds=[0], overrides=["lr=0.1"])
    cells = resolve_cells(tasks=["phantom-cls"], strategies=["vaal"], seeds=[0], overrides=["strategy.lr=0.5", "vae.epochs=3"])
    assert cells[0].strategy_params["lr"] == 0.5 and cells[0].strategy_params["vae_epochs"] == 3
    assert cells[0].task_params["lr"] != 0.5
