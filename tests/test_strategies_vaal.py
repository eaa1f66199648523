"""VAAL / M-VAAL / VAAL-original as strategies: selection by score, ids, determinism, reuse, errors.

Every test builds a :class:`SelectionContext` over a small in-memory pool with the smoke-sized
networks (16 px, width 8), so the whole file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from albench.context import SelectionContext
from albench.errors import ConfigError
from albench.prepared import PreparedDataset, Split
from albench.registries import strategies as registry
from albench.strategies.adversarial import SamplerConfig, auc, run_round, select_lowest
from albench.strategies.vaal import MVAAL, VAAL, VAALOriginal
from albench.strategies.vae import VAE, Discriminator, Encoder, conv_flops
from albench.views import PoolViews

torch.set_num_threads(1)  # small nets; 2 OpenMP threads crawl on a shared, busy CPU

SMALL = {"vae_epochs": 1, "image_size": 16, "width": 8, "lr": 1e-3, "score_batch_size": 7}


def make_data(n: int = 203, size: int = 24, *, aux: bool = True, seed: int = 0) -> PreparedDataset:
    """A pool of blobs whose storage order is shuffled (item ids are positions in that order)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    radius = np.linspace(0.1, 0.4, n)  # a natural order (by blob size) ...
    rng.shuffle(radius)  # ... that storage does not follow
    cx, cy = rng.uniform(0.35, 0.65, n), rng.uniform(0.35, 0.65, n)
    blob = ((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) < radius[:, None, None] ** 2
    main = (blob * 200 + rng.normal(20, 10, (n, size, size))).clip(0, 255).astype(np.uint8)
    arrays = {
        "main": main,
        "mask": blob.astype(np.uint8),
        "label": (radius > 0.25).astype(np.int64),
        "names": np.array([f"item-{i}" for i in range(n)]),
        "cases": np.array([f"case-{i // 3}" for i in range(n)]),
    }
    if aux:
        arrays["aux"] = (blob * 255).astype(np.uint8)
    norm = {"scale": 1 / 64, "offset": -1.0}
    manifest = {"dataset": "blobs", "normalisation": {"main": norm, "aux": norm}, "sampler_crop": 1.0}
    small = {k: v[:4] for k, v in arrays.items()}
    return PreparedDataset(Path("."), manifest, {"train": Split(arrays), "val": Split(small), "test": Split(small)})


def make_ctx(data: PreparedDataset, labelled: np.ndarray, *, strategy: str = "mvaal", task_kind: str = "segmentation",
             seed: int = 0, round_index: int = 1, views: PoolViews | None = None) -> SelectionContext:
    return SelectionContext(
        strategy=strategy,
        round_index=round_index,
        labelled=labelled,
        pool_size=len(data.train),
        views=views or PoolViews(data, torch.device("cpu")),
        task_kind=task_kind,
        generator=torch.Generator().manual_seed(seed),
        rng=np.random.default_rng(seed),
    )


@pytest.fixture(scope="module")
def data() -> PreparedDataset:
    return make_data()


@pytest.fixture(scope="module")
def labelled() -> np.ndarray:
    return np.random.default_rng(1).permutation(203)[:37]  # unsorted on purpose


# -- registration and parameters ----------------------------------------------------------------------
def test_registered_task_agnostic():
    for name in ("vaal", "mvaal", "vaal-original"):
        assert registry.get(name).meta.get("task_agnostic") is True


def test_gamma3_resolved_by_task_kind():
    assert MVAAL.params_for("segmentation", {"gamma3": None})["gamma3"] == 0.2
    assert MVAAL.params_for("multilabel", {"gamma3": None})["gamma3"] == 1.0
    assert MVAAL.params_for("multiclass", {"gamma3": None})["gamma3"] == 1.0
    assert MVAAL.params_for("segmentation", {"gamma3": 0.8})["gamma3"] == 0.8


def test_presets_name_real_parameters():
    for cls in (MVAAL, VAAL, VAALOriginal):
        for preset, params in cls.presets.items():
            cls(**params)  # every key is a constructor parameter
    paper = MVAAL()._config()
    assert (paper.vae_epochs, paper.image_size, paper.latent_dim, paper.batch_size, paper.lr) == (100, 128, 64, 16, 1e-4)
    assert (paper.gamma1, paper.gamma2, paper.beta, paper.gp_lambda, paper.width) == (1.0, 1.0, 1.0, 1.0, 64)
    assert (paper.vae_steps, paper.disc_steps, paper.loss, paper.aux) == (2, 1, "wgan-gp", True)


def test_iterations_follow_pool_size():
    cfg = SamplerConfig()
    assert cfg.iterations(3673) == 3673 * 100 // 16


# -- architecture --------------------------------------------------------------------------------------
def test_paper_architecture_at_128px():
    vae = VAE(128, 64, 64)
    convs = [m for m in vae.encoder.body if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1024)]
    assert vae.encoder.fc_mu.in_features == 1024 * 4 * 4
    deconvs = [m for m in vae.decoder.body if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in deconvs] == [(1024, 512), (512, 256), (256, 128), (128, 64), (64, 32), (32, 3)]
    disc = Discriminator(64)
    linears = [m for m in disc.body if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 128), (128, 256), (256, 512), (512, 256), (256, 128), (128, 1)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in disc.body) == 5
    # 5 blocks of 4x4 convs: 2 * Cin * Cout * 16 * H_out * W_out FLOPs per item
    expected = sum(2 * a * b * 16 * s * s for (a, b), s in zip([(3, 64), (64, 128), (128, 256), (256, 512), (512, 1024)], [64, 32, 16, 8, 4]))
    assert conv_flops(vae.encoder, 128) == expected


@pytest.mark.parametrize("size", [16, 32, 48, 64])
def test_architecture_adapts_to_input_size(size):
    vae = VAE(size, 16, 8)
    vae.add_aux_decoder()
    x = torch.randn(4, 3, size, size)
    recon, aux, z, mu, logvar = vae(x)
    assert recon.shape == aux.shape == x.shape
    assert mu.shape == logvar.shape == z.shape == (4, 16)
    assert Discriminator(16)(mu).shape == (4,)


def test_bad_image_size_is_a_config_error():
    with pytest.raises(ConfigError, match="image_size"):
        Encoder(100, 8, 8)


# -- selection -----------------------------------------------------------------------------------------
def test_added_ids_are_exactly_the_lowest_scored_unlabelled(data, labelled):
    # 203 items (not a multiple of the batch of 16 nor of the scoring batch of 7), shuffled storage,
    # an unsorted labelled set given to the context.
    ctx = make_ctx(data, labelled)
    budget = 25
    chosen, sampler = run_round(ctx, budget, MVAAL(gamma3=0.2, **SMALL)._config())
    d = ctx.diagnostics
    unl_ids, unl_scores = d["unlabelled_ids"], d["unlabelled_scores"]
    # every unlabelled item is scored, once, and nothing else
    assert sorted(unl_ids.tolist()) == sorted(set(range(203)) - set(labelled.tolist()))
    assert sorted(d["labelled_ids"].tolist()) == sorted(labelled.tolist())
    assert len(d["unlabelled_scores"]) == 203 - 37 and len(d["labelled_scores"]) == 37
    # the added ids are the budget lowest scores
    lowest = unl_ids[np.argsort(unl_scores, kind="stable")[:budget]]
    assert sorted(chosen.tolist()) == sorted(lowest.tolist())
    assert len(set(chosen.tolist())) == budget
    assert np.max(unl_scores[np.isin(unl_ids, chosen.numpy())]) <= np.min(unl_scores[~np.isin(unl_ids, chosen.numpy())])
    # the scores belong to the ids they are recorded with: re-score each item on its own and in a
    # shuffled order (eval mode: an item's score does not depend on its batch companions)
    perm = torch.randperm(len(ctx.unlabelled), generator=torch.Generator().manual_seed(5))
    shuffled = sampler.score(ctx.unlabelled[perm])
    unshuffled = torch.empty_like(shuffled)
    unshuffled[perm] = shuffled
    np.testing.assert_allclose(unshuffled.numpy(), unl_scores, rtol=1e-5, atol=1e-6)
    singles = torch.cat([sampler.score(ctx.unlabelled[i : i + 1]) for i in range(0, len(ctx.unlabelled), 17)])
    np.testing.assert_allclose(singles.numpy(), unl_scores[::17], rtol=1e-4, atol=1e-5)


def test_select_lowest_breaks_ties_by_id():
    ids = torch.tensor([2, 5, 7, 9])
    scores = torch.tensor([0.5, 0.1, 0.5, 0.1])
    assert select_lowest(ids, scores, 3).tolist() == [5, 9, 2]
    with pytest.raises(ConfigError):
        select_lowest(ids, scores, 5)


def test_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 40).astype(float)  # many ties
    pairwise = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    assert auc(pos, neg) == pytest.approx(pairwise)
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0


def test_select_returns_budget_distinct_unlabelled(data, labelled):
    for cls in (VAAL, MVAAL, VAALOriginal):
        params = dict(SMALL) if cls is not VAALOriginal else {"vae_epochs": 1, "image_size": 16, "width": 8, "batch_size": 16}
        ctx = make_ctx(data, labelled, strategy=cls.__name__)
        chosen = cls(**params).select(ctx, 11)
        assert len(chosen) == 11 and len(set(chosen.tolist())) == 11
        assert not set(chosen.tolist()) & set(labelled.tolist())
        assert {"unlabelled_ids", "unlabelled_scores", "labelled_ids", "labelled_scores"} <= set(ctx.diagnostics)
        assert {"vae_loss", "disc_loss", "recon_main", "kl", "disc_auc"} <= set(ctx.scalars)
        assert ("recon_aux" in ctx.scalars) == (cls is MVAAL)


def test_mvaal_with_gamma3_zero_is_vaal(data, labelled):
    views = PoolViews(data, torch.device("cpu"))
    ctx_v = make_ctx(data, labelled, views=views, seed=3)
    ctx_m = make_ctx(data, labelled, views=views, seed=3)
    chosen_v = VAAL(**SMALL).select(ctx_v, 20)
    chosen_m = MVAAL(gamma3=0.0, **SMALL).select(ctx_m, 20)
    assert chosen_v.tolist() == chosen_m.tolist()
    for key in ("vae_loss", "disc_loss", "recon_main", "kl", "adv", "gp"):
        assert ctx_v.scalars[key] == ctx_m.scalars[key], key
    np.testing.assert_array_equal(ctx_v.diagnostics["unlabelled_scores"], ctx_m.diagnostics["unlabelled_scores"])
    # ... and gamma3 > 0 changes the training (the auxiliary loss reaches the shared encoder)
    ctx_m2 = make_ctx(data, labelled, views=views, seed=3)
    MVAAL(gamma3=1.0, **SMALL).select(ctx_m2, 20)
    assert ctx_m2.scalars["vae_loss"] != ctx_v.scalars["vae_loss"]


def test_cpu_determinism(data, labelled):
    runs = []
    for _ in range(2):
        ctx = make_ctx(data, labelled, seed=7)
        chosen = MVAAL(gamma3=0.2, **SMALL).select(ctx, 15)
        runs.append((chosen.tolist(), ctx.diagnostics["unlabelled_scores"].copy(), dict(ctx.scalars)))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert {k: v for k, v in runs[0][2].items() if k != "sampler_seconds"} == {
        k: v for k, v in runs[1][2].items() if k != "sampler_seconds"
    }
    # a different round of the same seed draws a different stream and so trains differently
    ctx = make_ctx(data, labelled, seed=8)
    MVAAL(gamma3=0.2, **SMALL).select(ctx, 15)
    assert not np.array_equal(ctx.diagnostics["unlabelled_scores"], runs[0][1])


def test_global_rng_is_left_alone(data, labelled):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    VAAL(**SMALL).select(make_ctx(data, labelled), 5)
    assert torch.equal(torch.rand(3), expected)


def test_selection_is_the_same_for_every_task_kind(data, labelled):
    # Task-agnostic: with the same parameters, the task kind changes nothing.
    chosen = {}
    for kind in ("segmentation", "multilabel", "multiclass"):
        ctx = make_ctx(data, labelled, task_kind=kind, seed=4)
        params = MVAAL.params_for(kind, {**SMALL, "gamma3": 0.5})
        chosen[kind] = MVAAL(**params).select(ctx, 9).tolist()
    assert chosen["segmentation"] == chosen["multilabel"] == chosen["multiclass"]


def test_mvaal_needs_an_auxiliary_modality(labelled):
    data = make_data(aux=False)
    with pytest.raises(ConfigError, match="auxiliary"):
        MVAAL(gamma3=0.2, **SMALL).select(make_ctx(data, labelled), 5)
    VAAL(**SMALL).select(make_ctx(data, labelled), 5)  # VAAL does not


def test_tiny_sets_smaller_than_a_batch(data):
    # 5 labelled and, at the end, fewer unlabelled items than a batch: both batches shrink.
    ctx = make_ctx(data, np.arange(5))
    assert len(MVAAL(gamma3=0.2, **SMALL).select(ctx, 3)) == 3
    ctx = make_ctx(data, np.arange(195))
    assert sorted(MVAAL(gamma3=0.2, **SMALL).select(ctx, 8).tolist()) == list(range(195, 203))
