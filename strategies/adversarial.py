"""The adversarial sampler shared by ``vaal``, ``mvaal`` and ``vaal-original``: training and scoring.

One training iteration (paper Algorithm 1, the published code's order):

1. ``vae_steps`` (2) VAE updates, each on a fresh labelled batch and a fresh unlabelled batch:
   ``gamma2 * MSE(main) + gamma3 * MSE(aux) + beta * KL`` for both batches, plus ``gamma1 *`` the
   adversarial term (Eq. 4 for WGAN-GP; the original VAAL's BCE "everything is labelled" for BCE);
2. ``disc_steps`` (1) discriminator update on the latest batch pair, with the latent means computed
   without gradient: Eq. 5 (``E[D(mu_u)] - E[D(mu_l)] + lambda * GP``) or BCE (labelled 1, unlabelled 0).

Hot-path rules: the pool is one device tensor indexed by id; all batch ids of the round are drawn
up front as one tensor; no per-item Python work, no host synchronisation inside the loop except the
occasional progress report; the labelled and unlabelled batches go through the VAE as one batch;
channels-last and bf16 autocast for the convolutions on CUDA (the discriminator and all losses stay
fp32); scoring runs in large batches under ``torch.inference_mode``.

Batch norm sees the labelled and the unlabelled batch TOGETHER (one forward of the concatenation),
in the VAE and in the discriminator. The published code ran the discriminator on a labelled-only
batch and an unlabelled-only batch separately; in training mode its first BatchNorm1d then
normalises each batch by its own statistics, which removes any mean shift between the two sets
before the discriminator can see it, while at scoring time (eval mode, running statistics of the
mixture) the shift is visible again. One joint batch makes training and scoring see the same thing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from albench.device import autocast as autocast_ctx
from albench.errors import ConfigError
from albench.strategies.losses import (
    critic_loss,
    gradient_penalty,
    kl_divergence,
    per_item_mse,
    split_mean,
    vae_adversarial_loss,
)
from albench.strategies.vae import PAPER_DISCRIMINATOR, VAE, Discriminator, n_blocks

LOSS_KINDS = ("wgan-gp", "bce")


@dataclass
class SamplerConfig:
    """Every hyperparameter of one adversarial sampler (defaults: the M-VAAL paper)."""

    vae_epochs: int = 100
    image_size: int = 128
    latent_dim: int = 64
    batch_size: int = 16
    lr: float = 1e-4
    disc_lr: float | None = None  # None: same as lr
    gamma1: float = 1.0
    gamma2: float = 1.0
    gamma3: float = 0.0
    beta: float = 1.0
    gp_lambda: float = 1.0
    width: int = 64
    channels: int = 3
    score_batch_size: int = 256
    vae_steps: int = 2
    disc_steps: int = 1
    aux: bool = False
    loss: str = "wgan-gp"
    disc_hidden: tuple[int, ...] = field(default_factory=lambda: PAPER_DISCRIMINATOR)
    disc_batch_norm: bool = True

    def validate(self) -> "SamplerConfig":
        n_blocks(self.image_size)  # raises a ConfigError for an unusable size
        checks = {
            "vae_epochs": self.vae_epochs >= 0,
            "batch_size": self.batch_size >= 1,
            "latent_dim": self.latent_dim >= 1,
            "lr": self.lr > 0,
            "disc_lr": self.disc_lr is None or self.disc_lr > 0,
            "score_batch_size": self.score_batch_size >= 1,
            "vae_steps": self.vae_steps >= 1,
            "disc_steps": self.disc_steps >= 1,
            "beta": self.beta >= 0,
            "gp_lambda": self.gp_lambda >= 0,
            "gamma1": self.gamma1 >= 0,
            "gamma2": self.gamma2 >= 0,
            "gamma3": self.gamma3 >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r}: out of range")
        if self.loss not in LOSS_KINDS:
            raise ConfigError(f"loss={self.loss!r}: expected one of {', '.join(LOSS_KINDS)}")
        return self

    def iterations(self, pool_size: int) -> int:
        """Iterations per round: ``floor(pool size x epochs / batch size)``, at least one."""
        return max(1, (pool_size * self.vae_epochs) // self.batch_size)


def batch_stream(ids: torch.Tensor, batch: int, n_batches: int, generator: torch.Generator) -> torch.Tensor:
    """``n_batches`` batches of ``ids`` as one ``(n_batches, batch)`` tensor on ``ids.device``.

    Like a shuffled loader with ``drop_last`` cycled for as many epochs as needed: each epoch is a
    fresh permutation (drawn on the CPU from ``generator``) cut into ``len(ids) // batch`` batches,
    so no batch holds an item twice.
    """
    n = len(ids)
    per_epoch = n // batch
    if per_epoch < 1:
        raise ValueError(f"batch_stream: batch {batch} larger than the {n} ids")
    epochs = math.ceil(n_batches / per_epoch)
    order = torch.rand(epochs, n, generator=generator).argsort(dim=1)
    order = order[:, : per_epoch * batch].reshape(-1, batch)[:n_batches]
    return ids[order.to(ids.device)]


class AdversarialSampler:
    """A beta-VAE and a discriminator on its latent means, trained on one round's pool.

    ``main`` (and ``aux`` for M-VAAL) are whole-pool ``(N, 1, S, S)`` device tensors indexed by item
    id. Build it inside a seeded scope: the networks draw their initial weights from torch's global
    generator; the reparameterisation noise and the interpolation weights come from ``noise_seed``.
    """

    def __init__(
        self,
        cfg: SamplerConfig,
        main: torch.Tensor,
        aux: torch.Tensor | None = None,
        *,
        noise_seed: int = 0,
        autocast: bool = False,
    ) -> None:
        cfg.validate()
        if cfg.aux and aux is None:
            raise ConfigError("the auxiliary decoder needs an auxiliary modality")
        if tuple(main.shape[-2:]) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"main images are {tuple(main.shape[-2:])}, the sampler expects {cfg.image_size} px")
        self.cfg = cfg
        self.device = main.device
        self.main = main
        self.aux = aux if cfg.aux else None
        self.autocast = bool(autocast) and self.device.type == "cuda"
        # Build order: encoder + main decoder, discriminator, then the auxiliary decoder, so that
        # VAAL and M-VAAL from one seed start from identical shared weights.
        self.vae = VAE(cfg.image_size, cfg.latent_dim, cfg.width, cfg.channels)
        self.disc = Discriminator(cfg.latent_dim, tuple(cfg.disc_hidden), cfg.disc_batch_norm)
        if cfg.aux:
            self.vae.add_aux_decoder()
        self.vae.to(self.device)
        if self.device.type == "cuda":
            self.vae.to(memory_format=torch.channels_last)
        self.disc.to(self.device)
        # Fused Adam (one kernel for all parameters) on both CPU and CUDA: the per-parameter loop of
        # the default implementation dominated an iteration of the small CPU-preset networks.
        self.opt_vae = torch.optim.Adam(self.vae.parameters(), lr=cfg.lr, fused=True)
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr or cfg.lr, fused=True)
        self.noise = torch.Generator(device=self.device)
        self.noise.manual_seed(int(noise_seed))
        self.vae.train()
        self.disc.train()

    # -- batches ------------------------------------------------------------------------------
    def _images(self, source: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        x = source.index_select(0, ids).expand(-1, self.cfg.channels, -1, -1)
        if self.device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    # -- one update each ----------------------------------------------------------------------
    def vae_step(self, ids_l: torch.Tensor, ids_u: torch.Tensor) -> dict[str, torch.Tensor]:
        """One VAE update on a labelled and an unlabelled batch; returns its (device) loss terms."""
        cfg = self.cfg
        nl = len(ids_l)
        ids = torch.cat([ids_l, ids_u])
        x = self._images(self.main, ids)
        noise = torch.randn(len(ids), cfg.latent_dim, device=self.device, generator=self.noise)
        with autocast_ctx(self.device, self.autocast):
            recon, aux_recon, _, mu, logvar = self.vae(x, noise)
        # Targets are the single-channel images; broadcasting compares each output channel with them.
        target = self.main.index_select(0, ids)
        recon_main = split_mean(per_item_mse(recon, target), nl)
        kl = kl_divergence(mu, logvar)
        loss = cfg.gamma2 * recon_main + cfg.beta * kl
        terms = {"recon_main": recon_main, "kl": kl}
        if aux_recon is not None:
            recon_aux = split_mean(per_item_mse(aux_recon, self.aux.index_select(0, ids)), nl)
            loss = loss + cfg.gamma3 * recon_aux
            terms["recon_aux"] = recon_aux
        mu = mu.float()
        if cfg.loss == "wgan-gp":
            d = self.disc(mu)
            adv = vae_adversarial_loss(d[:nl], d[nl:])
        else:  # the original VAAL: the VAE wants D to call every latent "labelled"
            logits = self.disc.logits(mu)
            adv = F.binary_cross_entropy_with_logits(logits[:nl], torch.ones_like(logits[:nl])) + F.binary_cross_entropy_with_logits(
                logits[nl:], torch.ones_like(logits[nl:])
            )
        loss = loss + cfg.gamma1 * adv
        self.opt_vae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_vae.step()
        terms.update(adv=adv, vae_loss=loss)
        return {k: v.detach() for k, v in terms.items()}

    def latent_means(self, ids: torch.Tensor) -> torch.Tensor:
        """mu of ``ids`` without gradient, in the networks' current mode (fp32)."""
        with torch.no_grad(), autocast_ctx(self.device, self.autocast):
            mu, _ = self.vae.encode(self._images(self.main, ids))
        return mu.float()

    def disc_step(self, ids_l: torch.Tensor, ids_u: torch.Tensor) -> dict[str, torch.Tensor]:
        """One discriminator update; the latents carry no gradient, so only D is trained."""
        nl = len(ids_l)
        mu = self.latent_means(torch.cat([ids_l, ids_u]))
        return self.disc_step_on(mu[:nl], mu[nl:])

    def disc_step_on(self, mu_l: torch.Tensor, mu_u: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        mu_l, mu_u = mu_l.detach().float(), mu_u.detach().float()
        nl = len(mu_l)
        if cfg.loss == "wgan-gp":
            d = self.disc(torch.cat([mu_l, mu_u]))
            w = critic_loss(d[:nl], d[nl:])
            gp = gradient_penalty(self.disc, mu_l, mu_u, generator=self.noise) if cfg.gp_lambda > 0 else torch.zeros((), device=self.device)
            loss = w + cfg.gp_lambda * gp
            terms = {"disc_loss": loss, "wasserstein": w, "gp": gp}
        else:
            logits = self.disc.logits(torch.cat([mu_l, mu_u]))
            target = torch.cat([torch.ones(nl, device=self.device), torch.zeros(len(mu_u), device=self.device)])
            loss = F.binary_cross_entropy_with_logits(logits[:nl], target[:nl]) + F.binary_cross_entropy_with_logits(
                logits[nl:], target[nl:]
            )
            terms = {"disc_loss": loss}
        self.opt_disc.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_disc.step()
        return {k: v.detach() for k, v in terms.items()}

    # -- a round's training ---------------------------------------------------------------------
    def fit(
        self,
        labelled: torch.Tensor,
        unlabelled: torch.Tensor,
        *,
        iterations: int,
        generator: torch.Generator,
        progress: Callable[..., None] | None = None,
        report_every: int = 50,
    ) -> dict[str, float]:
        """Train for ``iterations``; returns the loss terms averaged over the last tenth of them."""
        cfg = self.cfg
        if len(labelled) < 1 or len(unlabelled) < 1:
            raise ValueError("the adversarial sampler needs at least one labelled and one unlabelled item")
        if len(labelled) + len(unlabelled) < 2 and cfg.disc_batch_norm:
            raise ValueError("batch norm needs at least two items")
        bl, bu = min(cfg.batch_size, len(labelled)), min(cfg.batch_size, len(unlabelled))
        per_iter = cfg.vae_steps + cfg.disc_steps - 1  # the first D step reuses the last VAE batch pair
        stream_l = batch_stream(labelled, bl, iterations * per_iter, generator)
        stream_u = batch_stream(unlabelled, bu, iterations * per_iter, generator)
        tail_start = iterations - max(1, iterations // 10)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}

        def keep(terms: dict[str, torch.Tensor]) -> None:
            for name, value in terms.items():
                sums[name] = sums[name] + value if name in sums else value.clone()
                counts[name] = counts.get(name, 0) + 1

        k = 0
        for it in range(iterations):
            for _ in range(cfg.vae_steps):
                vt = self.vae_step(stream_l[k], stream_u[k])
                k += 1
            k -= 1
            for _ in range(cfg.disc_steps):
                dt = self.disc_step(stream_l[k], stream_u[k])
                k += 1
            if it >= tail_start:
                keep(vt)
                keep(dt)
            if progress is not None and (it % report_every == 0 or it == iterations - 1):
                progress("sampler", it=it + 1, iters=iterations, vae_loss=float(vt["vae_loss"]), disc_loss=float(dt["disc_loss"]))
        return {key: float(value) / counts[key] for key, value in sums.items()}

    # -- scoring --------------------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, ids: torch.Tensor) -> torch.Tensor:
        """D(mu) of every id, in eval mode (running batch-norm statistics), as fp32 in ``ids`` order."""
        was = self.vae.training, self.disc.training
        self.vae.eval()
        self.disc.eval()
        try:
            out = []
            for chunk in ids.split(self.cfg.score_batch_size):
                with autocast_ctx(self.device, self.autocast):
                    mu, _ = self.vae.encode(self._images(self.main, chunk))
                out.append(self.disc(mu.float()))
            return torch.cat(out) if out else torch.empty(0, device=self.device)
        finally:
            self.vae.train(was[0])
            self.disc.train(was[1])

    @torch.inference_mode()
    def reconstruction_error(self, ids: torch.Tensor, modality: str = "main") -> torch.Tensor:
        """Per-item MSE of the decoder's output at ``z = mu`` (eval mode) against ``modality``."""
        decoder = self.vae.decoder if modality == "main" else self.vae.aux_decoder
        target = self.main if modality == "main" else self.aux
        if decoder is None or target is None:
            raise ValueError(f"no decoder for modality {modality!r}")
        was = self.vae.training
        self.vae.eval()
        try:
            out = []
            for chunk in ids.split(self.cfg.score_batch_size):
                with autocast_ctx(self.device, self.autocast):
                    mu, _ = self.vae.encode(self._images(self.main, chunk))
                    recon = decoder(mu)
                out.append(per_item_mse(recon, target.index_select(0, chunk)))
            return torch.cat(out)
        finally:
            self.vae.train(was)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(tie): the Mann-Whitney AUC (numpy only)."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    order = np.argsort(scores, kind="stable")
    _, inverse, counts = np.unique(scores[order], return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based mean rank of each tied group
    ranks = np.empty(len(scores))
    ranks[order] = average_rank[inverse]
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def select_lowest(unlabelled: torch.Tensor, scores: torch.Tensor, budget: int) -> torch.Tensor:
    """The ``budget`` ids of ``unlabelled`` with the lowest ``scores`` (ties: the lower id first).

    ``scores[i]`` belongs to ``unlabelled[i]``; the ids are sorted, so a stable sort breaks ties by id.
    """
    if budget > len(unlabelled):
        raise ConfigError(f"budget {budget} is larger than the {len(unlabelled)} unlabelled items")
    order = torch.sort(scores, stable=True).indices[:budget]
    return unlabelled[order]


def run_round(ctx: Any, budget: int, cfg: SamplerConfig) -> tuple[torch.Tensor, AdversarialSampler]:
    """Train a fresh sampler on this round's pool, score every item, pick the lowest-scored unlabelled.

    Depends only on the data, ``cfg``, and the context's seeded generator (seed, strategy, round) and
    labelled set: never on the task or its model, so the selection can be shared across tasks.
    Records ``unlabelled_ids/scores`` and ``labelled_ids/scores`` and logs the final losses.
    """
    started = time.perf_counter()
    if cfg.aux and not ctx.has_modality("aux"):
        raise ConfigError(f"strategy {ctx.strategy!r} needs an auxiliary modality; data set {ctx.dataset.name!r} has none")
    if len(ctx.labelled) == 0:
        raise ConfigError(f"strategy {ctx.strategy!r} needs a non-empty labelled set")
    main = ctx.images("main", size=cfg.image_size, crop=ctx.sampler_crop)
    aux = ctx.images("aux", size=cfg.image_size, crop=ctx.sampler_crop) if cfg.aux else None
    init_seed, noise_seed = (int(s) for s in torch.randint(2**62, (2,), generator=ctx.generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        sampler = AdversarialSampler(cfg, main, aux, noise_seed=noise_seed, autocast=ctx.autocast)
    iterations = cfg.iterations(ctx.pool_size)
    losses = sampler.fit(ctx.labelled, ctx.unlabelled, iterations=iterations, generator=ctx.generator, progress=ctx.progress)
    unl_scores = sampler.score(ctx.unlabelled)
    lab_scores = sampler.score(ctx.labelled)
    chosen = select_lowest(ctx.unlabelled, unl_scores, budget)
    ctx.record(
        unlabelled_ids=ctx.unlabelled,
        unlabelled_scores=unl_scores,
        labelled_ids=ctx.labelled,
        labelled_scores=lab_scores,
    )
    scalars = {k: v for k, v in losses.items()}
    scalars["disc_auc"] = auc(lab_scores.cpu().numpy(), unl_scores.cpu().numpy())
    scalars["sampler_iters"] = iterations
    scalars["sampler_seconds"] = time.perf_counter() - started
    ctx.log(**scalars)
    return chosen, sampler
