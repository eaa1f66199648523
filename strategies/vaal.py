"""VAAL and M-VAAL as in Khanal et al. (MIUA 2023), and the original VAAL of Sinha et al. (ICCV 2019).

All three train a fresh beta-VAE and a discriminator on the latent means each round, score every
unlabelled item with D(mu) and add the ``budget`` lowest-scored ("most unlabelled-like") ones. They
never see the task or its model (``task_agnostic=True``): a selection depends only on the data, the
parameters, the seed, the round and the labelled set. The shared machinery is in
:mod:`albench.strategies.adversarial`; see ``docs/strategies.md`` for every choice.

Parameters are the constructor keywords (defaults = the paper); ``presets`` shrink them for the
CPU presets (smaller input, narrower network, fewer epochs).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch

from albench import strategies
from albench.strategies.adversarial import SamplerConfig, run_round

#: gamma3 by task kind (paper Sec. 5: 0.2 for whole-tumour segmentation, 1.0 for classification).
GAMMA3_BY_KIND = {"segmentation": 0.2, "multilabel": 1.0, "multiclass": 1.0}

_CPU_PRESETS: dict[str, dict[str, Any]] = {
    # ~1-3 s per round on two CPU cores for a pool of a few hundred items.
    # The discriminator learns 10x faster than the VAE here: with equal rates and so few iterations
    # the VAE wins the game and the discriminator ends below chance (docs/strategies.md).
    "quick": {"vae_epochs": 2, "image_size": 16, "width": 8, "disc_lr": 1e-3, "score_batch_size": 1024},
    # Well under a second per round.
    "smoke": {"vae_epochs": 1, "image_size": 16, "width": 8, "disc_lr": 1e-3, "score_batch_size": 1024},
}


class _Adversarial:
    """Common ``select`` of the adversarial samplers."""

    def _config(self) -> SamplerConfig:
        raise NotImplementedError

    def select(self, ctx: Any, budget: int) -> torch.Tensor:
        chosen, _ = run_round(ctx, budget, self._config())
        return chosen

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


@strategies.register("vaal", task_agnostic=True)
@dataclass
class VAAL(_Adversarial):
    """The paper's VAAL baseline: M-VAAL without the auxiliary decoder (same VAE, discriminator, WGAN-GP)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = _CPU_PRESETS

    vae_epochs: int = 100
    image_size: int = 128
    latent_dim: int = 64
    batch_size: int = 16
    lr: float = 1e-4
    disc_lr: float | None = None
    gamma1: float = 1.0
    gamma2: float = 1.0
    beta: float = 1.0
    gp_lambda: float = 1.0
    width: int = 64
    score_batch_size: int = 256
    vae_steps: int = 2
    disc_steps: int = 1

    def _config(self) -> SamplerConfig:
        shared = {f.name: getattr(self, f.name) for f in fields(VAAL)}
        return SamplerConfig(**shared, gamma3=0.0, aux=False)


@strategies.register("mvaal", task_agnostic=True)
@dataclass
class MVAAL(VAAL):
    """Multimodal VAAL: beta-VAE with a second decoder for the auxiliary modality, WGAN-GP discriminator."""

    gamma3: float | None = None

    @classmethod
    def params_for(cls, task_kind: str, params: dict[str, Any]) -> dict[str, Any]:
        """Resolve ``gamma3=None`` to the paper's value for the task kind."""
        params = dict(params)
        if params.get("gamma3") is None:
            params["gamma3"] = GAMMA3_BY_KIND.get(task_kind, 1.0)
        return params

    def _config(self) -> SamplerConfig:
        gamma3 = self.gamma3 if self.gamma3 is not None else 1.0
        return replace(super()._config(), gamma3=float(gamma3), aux=True)


@strategies.register("vaal-original", task_agnostic=True)
class VAALOriginal(_Adversarial):
    """Sinha et al.'s VAAL: BCE adversarial game, discriminator 4x512 without batch norm, Adam 5e-4, latent 32, 32 px."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"vae_epochs": 8, "width": 16, "batch_size": 32, "score_batch_size": 1024},
        "smoke": {"vae_epochs": 1, "image_size": 16, "width": 8, "batch_size": 16, "score_batch_size": 1024},
    }

    def __init__(
        self,
        vae_epochs: int = 100,
        image_size: int = 32,
        latent_dim: int = 32,
        batch_size: int = 128,
        lr: float = 5e-4,
        adversary_param: float = 1.0,
        beta: float = 1.0,
        width: int = 128,
        disc_width: int = 512,
        disc_layers: int = 4,
        score_batch_size: int = 256,
    ) -> None:
        self.vae_epochs = vae_epochs
        self.image_size = image_size
        self.latent_dim = latent_dim
        self.batch_size = batch_size
        self.lr = lr
        self.adversary_param = adversary_param
        self.beta = beta
        self.width = width
        self.disc_width = disc_width
        self.disc_layers = disc_layers
        self.score_batch_size = score_batch_size

    def _config(self) -> SamplerConfig:
        return SamplerConfig(
            vae_epochs=int(self.vae_epochs),
            image_size=int(self.image_size),
            latent_dim=int(self.latent_dim),
            batch_size=int(self.batch_size),
            lr=float(self.lr),
            gamma1=float(self.adversary_param),
            gamma2=1.0,
            gamma3=0.0,
            beta=float(self.beta),
            gp_lambda=0.0,
            width=int(self.width),
            score_batch_size=int(self.score_batch_size),
            aux=False,
            loss="bce",
            disc_hidden=(int(self.disc_width),) * int(self.disc_layers),
            disc_batch_norm=False,
        )
