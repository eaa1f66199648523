"""The sampler really learns, on the brain phantom (fixed seeds, smoke-sized pool and networks).

1. After training, the discriminator separates the labelled from the unlabelled items of the
   training pool better than chance (AUC of D(mu) in eval mode, labelled vs unlabelled).
2. M-VAAL's auxiliary decoder reconstructs the auxiliary modality (FLAIR-like) from the shared
   latent better than the best constant image (the pool's per-pixel mean).

Both use the shipped training loop; (2) uses a small beta: with the paper's beta = 1 (KL summed
over the batch and the latent, MSE averaged over pixels) the posterior collapses and the best a
decoder can do is the mean image (docs/strategies.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albench.context import SelectionContext
from albench.datasets.phantom import Phantom
from albench.strategies.adversarial import SamplerConfig, run_round
from albench.views import PoolViews

torch.set_num_threads(1)  # small nets; 2 OpenMP threads crawl on a shared, busy CPU


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> PoolViews:
    recipe = Phantom()
    data = recipe.load(cache=tmp_path_factory.mktemp("cache"), params=recipe.protocol("smoke", {"family": "brain"}))
    for split in data.splits.values():  # in-memory, writable copies of the memory-mapped arrays
        split.arrays = {k: np.array(v) for k, v in split.arrays.items()}
    return PoolViews(data, torch.device("cpu"))


def _ctx(views: PoolViews, labelled: np.ndarray, seed: int) -> SelectionContext:
    return SelectionContext(
        strategy="mvaal", round_index=0, labelled=labelled, pool_size=len(views.data.train), views=views,
        task_kind="segmentation", generator=torch.Generator().manual_seed(seed), rng=np.random.default_rng(seed),
    )


def test_discriminator_separates_labelled_from_unlabelled(views):
    n = len(views.data.train)
    labelled = np.random.default_rng(0).choice(n, n // 5, replace=False)
    cfg = SamplerConfig(vae_epochs=10, image_size=16, width=8, lr=1e-4, disc_lr=1e-3, aux=True, gamma3=0.2)
    ctx = _ctx(views, labelled, seed=1)
    run_round(ctx, 10, cfg)
    assert ctx.scalars["disc_auc"] > 0.7
    d = ctx.diagnostics
    assert np.median(d["labelled_scores"]) > np.median(d["unlabelled_scores"])


def test_mvaal_reconstructs_the_auxiliary_modality(views):
    n = len(views.data.train)
    labelled = np.random.default_rng(0).choice(n, n // 5, replace=False)
    cfg = SamplerConfig(vae_epochs=12, image_size=16, width=8, lr=3e-3, beta=1e-4, aux=True, gamma3=1.0)
    ctx = _ctx(views, labelled, seed=2)
    _, sampler = run_round(ctx, 10, cfg)
    ids = torch.arange(n)
    recon = sampler.reconstruction_error(ids, "aux").mean().item()
    aux = sampler.aux
    baseline = (aux - aux.mean(dim=0, keepdim=True)).pow(2).mean().item()
    assert recon < 0.85 * baseline
