"""The real tasks (brats-wt, brats-ml, covidqu) on prepared synthetic BraTS2018 and COVID-QU-Ex sets."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from albench import datasets, tasks
from albench.datasets.synthetic import write_brats_layout, write_covidqu_layout
from albench.seeding import seed_everything, torch_generator
from albench.views import PoolViews

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("cpu_determinism")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Tiny BraTS and COVID-QU-Ex downloads, written in their real layouts and prepared once."""
    root = tmp_path_factory.mktemp("raw")
    cache = tmp_path_factory.mktemp("cache")
    out = {}
    brats = datasets.get("brats").obj()
    params = brats.protocol("paper", {})
    brats.prepare(cache=cache, params=params, root=write_brats_layout(root / "brats", n_hgg=10, n_lgg=1, seed=0))
    out["brats"] = brats.load(cache=cache, params=params)
    covid = datasets.get("covidqu").obj()
    params = covid.protocol("paper", {})
    covid.prepare(cache=cache, params=params, root=write_covidqu_layout(root / "covid", seed=0))
    out["covidqu"] = covid.load(cache=cache, params=params)
    return out


def _fit(task, ids: np.ndarray):
    seed_everything(0, "round", 0, "model")
    return task.fit(ids, generator=torch_generator(0, "round", 0, "data"))


@pytest.mark.parametrize("name", ["brats-wt", "brats-ml", "covidqu"])
def test_real_task_runs_on_prepared_synthetic_data(prepared: dict, name: str) -> None:
    cls = tasks.get(name).obj
    data = prepared[cls.dataset]
    task = cls(data=data, params=dict(cls.presets["smoke"]["params"]), views=PoolViews(data, CPU))
    n = len(data.train)
    ids = np.arange(0, n, 2)
    result = _fit(task, ids)
    assert list(result.test) == list(cls.metrics)
    primary = result.test[cls.metrics[0]]
    assert 0.0 <= primary <= 1.0
    again = _fit(task, ids)
    assert again.test == result.test  # deterministic on the CPU
    probs = task.predict(result.model, torch.arange(3))
    if cls.kind == "segmentation":
        assert probs.shape[:2] == (3, 2)
        assert set(result.arrays) == {"overlay_names", "overlay_image", "overlay_target", "overlay_pred"}
        assert all(name.startswith("Brats18_") for name in result.arrays["overlay_names"])
    else:
        assert probs.shape == (3, 3)
    info = task.describe()
    assert "weights" in info and info["params"] > 0


def test_brats_ml_reads_presence_in_et_ed_ncr_order(prepared: dict) -> None:
    cls = tasks.get("brats-ml").obj
    data = prepared["brats"]
    task = cls(data=data, params=dict(cls.presets["smoke"]["params"]), views=PoolViews(data, CPU))
    mask = np.asarray(data.split("test").arrays["mask"])
    want = np.stack([(mask == code).any(axis=(1, 2)) for code in (4, 2, 1)], axis=1).astype(np.float32)
    np.testing.assert_array_equal(task.y["test"].numpy(), want)


def test_brats_ml_input_is_imagenet_normalised(prepared: dict) -> None:
    """METHOD.md: the multi-label learner sees ImageNet-normalised [0, 1] intensities."""
    cls = tasks.get("brats-ml").obj
    data = prepared["brats"]
    task = cls(data=data, params=dict(cls.presets["smoke"]["params"]), views=PoolViews(data, CPU))
    seed_everything(0, "round", 0, "model")
    model = task.make_model()
    x = task.x["train"][:4]
    stored = torch.nn.functional.interpolate(
        torch.from_numpy(np.array(data.train.main[:4], dtype=np.float32))[:, None], size=x.shape[-2:], mode="bilinear", antialias=True
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(model.adapter(x), (stored - mean) / std, atol=1e-3)


def test_brats_wt_targets_are_the_whole_tumour(prepared: dict) -> None:
    cls = tasks.get("brats-wt").obj
    data = prepared["brats"]
    params = {**cls.presets["smoke"]["params"], "image_size": 0}
    task = cls(data=data, params=params, views=PoolViews(data, CPU))
    np.testing.assert_array_equal(task.y["val"].numpy(), (np.asarray(data.split("val").arrays["mask"]) > 0).astype(np.uint8))
