"""The phantom tasks train for real: they learn, are deterministic, and keep the Task contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from albench import datasets, tasks
from albench.errors import ConfigError, DataError
from albench.interfaces import FitResult, Task
from albench.seeding import numpy_rng, seed_everything, torch_generator
from albench.tasks.models import ResNet18
from albench.views import PoolViews

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("cpu_determinism")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("albench-cache")


def phantom(cache: Path, family: str, preset: str = "smoke"):
    recipe = datasets.get("phantom").obj()
    return recipe.load(cache=cache, params=recipe.protocol(preset, {"family": family}))


def make_task(name: str, cache: Path, preset: str = "smoke", **overrides: Any):
    cls = tasks.get(name).obj
    data = phantom(cache, cls.dataset_params["family"], preset)
    params = {**cls.presets[preset]["params"], **overrides}
    return cls(data=data, params=params, views=PoolViews(data, CPU))


def fit(task, labelled: np.ndarray, seed: int = 0, round_index: int = 0) -> FitResult:
    """A fit seeded exactly as the runner seeds it."""
    seed_everything(seed, "round", round_index, "model")
    return task.fit(labelled, generator=torch_generator(seed, "round", round_index, "data"))


def first_ids(task, n: int, seed: int = 0) -> np.ndarray:
    return np.sort(numpy_rng(seed, "initial").permutation(task.pool_size)[:n])


# -- learning ---------------------------------------------------------------------------------------
def _chance(task) -> float:
    """What a model that ignores the image scores on the test split, in the primary metric."""
    y = task.y["test"].cpu().numpy()
    if task.kind == "segmentation":  # everything foreground (an empty prediction scores 0 here)
        area = y.reshape(len(y), -1).mean(1)
        return float(np.mean(np.where(area > 0, 2 * area / (1 + area), 0.0)))
    if task.kind == "multilabel":  # constant scores: AP = prevalence of each class with positives
        prevalence = y.mean(0)
        return float(prevalence[prevalence > 0].mean())
    return float(np.bincount(y).max() / len(y))  # the majority class


# (task, params overriding the smoke preset, labelled sizes, margin over chance and over round 0)
LEARNING = [
    ("phantom-wt", {}, (8, 216), 0.15),
    ("phantom-ml", {}, (8, 216), 0.05),
    ("phantom-cls", {}, (8, 240), 0.08),
]


@pytest.mark.parametrize("name,overrides,sizes,margin", LEARNING, ids=[t[0] for t in LEARNING])
def test_phantom_task_learns_as_the_labelled_set_grows(cache: Path, name: str, overrides: dict, sizes: tuple, margin: float) -> None:
    task = make_task(name, cache, **overrides)
    primary = task.metrics[0]
    small, large = sizes
    first = fit(task, first_ids(task, small))
    grown = fit(task, first_ids(task, large))
    chance = _chance(task)
    print(f"{name}: chance {chance:.3f}, n={small}: {first.test[primary]:.3f}, n={large}: {grown.test[primary]:.3f}")
    assert grown.test[primary] > chance + margin, (grown.test, chance)
    assert grown.test[primary] > first.test[primary] + margin, (first.test, grown.test)


# -- determinism ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["phantom-wt", "phantom-ml", "phantom-cls"])
def test_same_inputs_give_identical_numbers(cache: Path, name: str) -> None:
    task = make_task(name, cache, epochs=2)
    ids = first_ids(task, 24)
    a, b = fit(task, ids), fit(task, ids)
    assert a.test == b.test and a.val == b.val and a.best_epoch == b.best_epoch
    assert a.info["losses"] == b.info["losses"]
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    # A fresh task object (as in a second process) gives the same numbers too.
    again = fit(make_task(name, cache, epochs=2), ids)
    assert again.test == a.test


def test_model_initialisation_comes_from_the_global_seed(cache: Path) -> None:
    """Two strategies of one seed train from the same initial weights: the runner seeds, fit builds."""
    task = make_task("phantom-cls", cache, epochs=1)
    seed_everything(3, "round", 1, "model")
    a = task.make_model()
    seed_everything(3, "round", 1, "model")
    task.describe()  # must not consume the global generator
    b = task.make_model()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -- the Task contract ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["phantom-wt", "phantom-ml", "phantom-cls", "brats-wt", "brats-ml", "covidqu"])
def test_registered_tasks_declare_the_contract(name: str) -> None:
    cls = tasks.get(name).obj
    assert cls.kind in ("segmentation", "multilabel", "multiclass")
    assert cls.default_preset in cls.presets
    keys = {p: set(v["params"]) for p, v in cls.presets.items()}
    assert set(cls.presets) == {"paper", "quick", "smoke"}
    assert len({frozenset(k) for k in keys.values()}) == 1, "every preset lists the same params"
    for preset in cls.presets.values():
        assert set(preset["protocol"]) == {"initial", "budget", "rounds"}
    primary = {"segmentation": "dice", "multilabel": "map", "multiclass": "accuracy"}[cls.kind]
    assert cls.metrics[0] == primary


def test_paper_presets_follow_the_paper() -> None:
    wt, ml, cq = (tasks.get(n).obj.presets["paper"] for n in ("brats-wt", "brats-ml", "covidqu"))
    assert wt["protocol"] == {"initial": 200, "budget": 100, "rounds": 6}
    assert ml["protocol"] == {"initial": 200, "budget": 100, "rounds": 7}
    assert cq["protocol"] == {"initial": 100, "budget": 100, "rounds": 7}
    assert (wt["params"]["optimizer"], wt["params"]["lr"], wt["params"]["batch_size"], wt["params"]["epochs"]) == ("rmsprop", 1e-5, 32, 30)
    assert wt["params"]["width"] == 64
    for p in (ml["params"], cq["params"]):
        assert (p["optimizer"], p["lr"], p["batch_size"], p["epochs"], p["width"]) == ("adam", 1e-5, 32, 50, 64)
    assert ml["params"]["input_norm"] == "imagenet" and cq["params"]["input_norm"] == "dataset"


def test_segmentation_fit_result_predict_embed_and_overlays(cache: Path) -> None:
    task = make_task("phantom-wt", cache, epochs=2)
    assert isinstance(task, Task)
    result = fit(task, first_ids(task, 16))
    assert set(result.test) == set(task.metrics) == set(result.val)
    assert 0 <= result.best_epoch < result.epochs == 2
    ids = torch.tensor([0, 5, 7])
    probs = task.predict(result.model, ids)
    assert probs.shape == (3, 2, 32, 32)
    assert torch.allclose(probs.sum(1), torch.ones(3, 32, 32), atol=1e-5)
    assert task.embed(result.model, ids).shape == (3, 64)
    arrays = result.arrays
    assert arrays["overlay_image"].shape == (4, 32, 32) and arrays["overlay_image"].dtype == np.float32
    assert arrays["overlay_target"].dtype == np.uint8 and arrays["overlay_pred"].dtype == np.uint8
    assert arrays["overlay_names"].dtype.kind == "U" and len(arrays["overlay_names"]) == 4
    areas = task.y["test"].reshape(len(task.y["test"]), -1).sum(1)
    assert sorted(arrays["overlay_target"].reshape(4, -1).sum(1).tolist(), reverse=True) == sorted(areas.tolist(), reverse=True)[:4]
    info = task.describe()
    assert info["model"] == "unet" and "scratch" in info["weights"] and info["params"] > 0


@pytest.mark.parametrize("name,outputs", [("phantom-ml", 3), ("phantom-cls", 3)])
def test_classification_predict_and_embed(cache: Path, name: str, outputs: int) -> None:
    task = make_task(name, cache, epochs=1)
    result = fit(task, first_ids(task, 16))
    ids = torch.arange(10)
    probs = task.predict(result.model, ids)
    assert probs.shape == (10, outputs)
    if task.kind == "multiclass":
        assert torch.allclose(probs.sum(1), torch.ones(10), atol=1e-5)
    else:
        assert ((probs >= 0) & (probs <= 1)).all()
    assert task.embed(result.model, ids).shape == (10, 8 * task.params["width"])
    assert not result.model.training
    assert "scratch" in task.describe()["weights"]


def test_full_training_pool_trains_and_records_one_fit(cache: Path) -> None:
    """The ``full`` reference labels the whole pool in one round."""
    task = make_task("phantom-ml", cache, epochs=1)
    result = fit(task, np.arange(task.pool_size))
    assert result.info["n_labelled"] == task.pool_size
    assert np.isfinite(result.test["map"])


# -- errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,family,missing", [
    ("phantom-wt", "chest", "mask"), ("phantom-ml", "chest", "mask"), ("phantom-cls", "brain", "label"),
])
def test_a_data_set_without_the_target_is_a_clear_error(cache: Path, name: str, family: str, missing: str) -> None:
    cls = tasks.get(name).obj
    data = phantom(cache, family)
    with pytest.raises(DataError) as err:
        cls(data=data, params=cls.presets["smoke"]["params"], views=PoolViews(data, CPU))
    message = str(err.value)
    assert "\n" not in message and repr(missing) in message and "phantom" in message and name in message


def test_bad_params_are_config_errors(cache: Path) -> None:
    with pytest.raises(ConfigError, match="unknown task parameter"):
        make_task("phantom-cls", cache, depth=3)
    with pytest.raises(ConfigError, match="optimizer"):
        fit(make_task("phantom-cls", cache, optimizer="lbfgs"), np.arange(8))
    with pytest.raises(ConfigError, match="no such file"):
        make_task("phantom-cls", cache, weights="/nonexistent/resnet18.pth")
    with pytest.raises(ConfigError, match="width=64"):
        make_task("phantom-cls", cache, weights=__file__)


# -- pretrained weights ------------------------------------------------------------------------------------
def test_local_imagenet_weights_are_loaded_and_described(cache: Path, tmp_path: Path) -> None:
    reference = ResNet18(1000, width=64, stem="imagenet")
    state = reference.state_dict()
    state.pop("fc.weight")  # a torchvision checkpoint has them; extra outputs must not matter
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(reference.state_dict(), path)
    task = make_task("phantom-cls", cache, width=64, weights=str(path), stem="imagenet", epochs=1)
    info = task.describe()
    assert info["weights"].startswith("imagenet: ") and str(path) in info["weights"]
    seed_everything(0, "round", 0, "model")
    model = task.make_model()
    assert torch.equal(model.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert model.fc.out_features == 3
    # With the small stem, conv1 is new and the rest is still ImageNet's.
    small = make_task("phantom-cls", cache, width=64, weights=str(path), stem="small", epochs=1)
    m2 = small.make_model()
    assert m2.conv1.weight.shape[-1] == 3 and torch.equal(m2.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert "conv1" in small.describe()["weights"]
