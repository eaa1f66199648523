"""Losses of VAAL-like samplers: the beta-VAE terms, the adversarial terms (Eq. 4, Eq. 5) and the
WGAN-GP gradient penalty. Device-agnostic: nothing here names a device.

Sign conventions (paper Eq. 4 and 5): the discriminator D scores a latent mean; training pushes D up
on labelled latents and down on unlabelled ones, and selection takes the LOWEST-scored unlabelled
items. The VAE tries to fool D, so its adversarial term is the opposite of D's Wasserstein term.
"""

from __future__ import annotations

from typing import Callable

import torch


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), summed over the batch and the latent dimensions."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def per_item_mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each item (B,), averaged over channels and pixels, in fp32."""
    diff = recon.float() - target.float()
    return diff.pow(2).flatten(1).mean(dim=1)


def split_mean(values: torch.Tensor, n_first: int) -> torch.Tensor:
    """``mean(values[:n]) + mean(values[n:])``: a loss averaged within each of two batches, then added
    (the labelled and the unlabelled batch each contribute one averaged term, as in Eq. 1 and 2)."""
    return values[:n_first].mean() + values[n_first:].mean()


def vae_adversarial_loss(d_labelled: torch.Tensor, d_unlabelled: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``E[D(mu_l)] - E[D(mu_u)]``; minimising it makes labelled and unlabelled latents look alike to D."""
    return d_labelled.float().mean() - d_unlabelled.float().mean()


def critic_loss(d_labelled: torch.Tensor, d_unlabelled: torch.Tensor) -> torch.Tensor:
    """The Wasserstein part of Eq. 5: ``-E[D(mu_l)] + E[D(mu_u)]``; minimising it raises D on labelled
    latents and lowers it on unlabelled ones."""
    return d_unlabelled.float().mean() - d_labelled.float().mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``mean_i (||grad D(x_i)||_2 - 1)**2`` at ``x_i = e_i a_i + (1 - e_i) b_i``.

    ``a`` and ``b`` are detached (the penalty trains only the critic); when their batch sizes
    differ, the first ``min`` rows are paired. ``eps`` (one weight per pair, uniform in [0, 1]) is
    drawn from ``generator`` when not given. The graph is kept (``create_graph``) so that the
    penalty's own gradient reaches the critic's parameters.
    """
    n = min(len(a), len(b))
    a, b = a[:n].detach().float(), b[:n].detach().float()
    if eps is None:
        eps = torch.rand(n, 1, device=a.device, generator=generator)
    eps = eps.reshape(n, *([1] * (a.dim() - 1))).to(a)
    x = (eps * a + (1 - eps) * b).requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    # The square root gets a tiny epsilon so that its derivative stays finite at a zero gradient.
    norm = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return (norm - 1).pow(2).mean()
