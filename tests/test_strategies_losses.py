"""The sampler's losses against hand computations, and the signs of the adversarial game (Eq. 4, 5)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from albench.strategies import losses
from albench.strategies.adversarial import AdversarialSampler, SamplerConfig
from albench.strategies.losses import (
    critic_loss,
    gradient_penalty,
    kl_divergence,
    per_item_mse,
    split_mean,
    vae_adversarial_loss,
)

torch.set_num_threads(1)  # small nets; 2 OpenMP threads crawl on a shared, busy CPU


def test_kl_divergence_is_summed_closed_form():
    mu = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    # KL(N(m, s2) || N(0, 1)) = 0.5 (s2 + m^2 - 1 - log s2), summed over everything.
    expected = 0.5 * ((1 + 0 - 1 - 0) + (4 + 1 - 1 - math.log(4)) + (1 + 4 - 1) + (1 + 1 - 1))
    assert kl_divergence(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_mse_is_averaged_per_batch_then_added():
    recon = torch.zeros(3, 3, 2, 2)
    target = torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1, 1).expand(3, 1, 2, 2)
    per_item = per_item_mse(recon, target)  # the 1-channel target broadcasts over 3 channels
    assert per_item.tolist() == pytest.approx([1.0, 4.0, 9.0])
    # labelled batch = item 0, unlabelled batch = items 1, 2
    assert split_mean(per_item, 1).item() == pytest.approx(1.0 + (4.0 + 9.0) / 2)


def test_gradient_penalty_linear_critic_by_hand():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5: every gradient is w, the penalty (5 - 1)^2 = 16

    def critic(x):
        return x @ w

    a, b = torch.randn(5, 2), torch.randn(5, 2)
    assert gradient_penalty(critic, a, b).item() == pytest.approx(16.0, rel=1e-6)


def test_gradient_penalty_quadratic_critic_by_hand():
    # D(x) = ||x||^2 has gradient 2 x at the interpolate x = e a + (1 - e) b.
    a = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    eps = torch.tensor([0.25, 0.5])

    def critic(x):
        return (x**2).sum(dim=1)

    x0 = (0.25, 0.75)  # 0.25 * (1, 0) + 0.75 * (0, 1)
    x1 = (1.0, 1.0)  # 0.5 * (2, 2)
    n0 = 2 * math.hypot(*x0)
    n1 = 2 * math.hypot(*x1)
    expected = ((n0 - 1) ** 2 + (n1 - 1) ** 2) / 2
    assert gradient_penalty(critic, a, b, eps=eps).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_penalty_reaches_critic_parameters_only():
    critic = torch.nn.Linear(3, 1)
    a = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(4, 3, requires_grad=True)
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), a, b, generator=torch.Generator().manual_seed(0))
    gp.backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0
    assert a.grad is None and b.grad is None  # the latents are detached


def test_losses_name_no_device():
    source = inspect.getsource(losses)
    assert ".cuda" not in source and "'cuda'" not in source and '"cuda"' not in source


def test_adversarial_terms_are_opposite():
    d_l, d_u = torch.tensor([0.9, 0.7]), torch.tensor([0.2, 0.4, 0.3])
    assert critic_loss(d_l, d_u).item() == pytest.approx(0.3 - 0.8)
    assert vae_adversarial_loss(d_l, d_u).item() == pytest.approx(0.8 - 0.3)


# -- the game on a real sampler --------------------------------------------------------------------
def _sampler(**kw) -> AdversarialSampler:
    cfg = SamplerConfig(image_size=16, width=8, latent_dim=8, **kw)
    main = torch.randn(40, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    aux = torch.randn(40, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AdversarialSampler(cfg, main, aux if cfg.aux else None, noise_seed=1)


def _d_means(sampler: AdversarialSampler, mu_l: torch.Tensor, mu_u: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        d = sampler.disc(torch.cat([mu_l, mu_u]))
    return d[: len(mu_l)].mean().item(), d[len(mu_l) :].mean().item()


def test_discriminator_step_raises_labelled_and_lowers_unlabelled():
    sampler = _sampler(lr=1e-3)
    g = torch.Generator().manual_seed(2)
    mu_l = torch.randn(16, 8, generator=g) + 0.5
    mu_u = torch.randn(16, 8, generator=g) - 0.5
    before_l, before_u = _d_means(sampler, mu_l, mu_u)
    for _ in range(5):
        sampler.disc_step_on(mu_l, mu_u)
    after_l, after_u = _d_means(sampler, mu_l, mu_u)
    assert after_l > before_l
    assert after_u < before_u


def test_discriminator_step_trains_only_the_discriminator():
    sampler = _sampler(aux=True, gamma3=1.0)
    vae_before = {k: v.clone() for k, v in sampler.vae.state_dict().items() if "running" not in k and "num_batches" not in k}
    disc_before = [p.clone() for p in sampler.disc.parameters()]
    terms = sampler.disc_step(torch.arange(0, 16), torch.arange(16, 32))
    assert terms["gp"].item() > 0
    for name, value in sampler.vae.state_dict().items():
        if name in vae_before:
            assert torch.equal(value, vae_before[name]), name
    assert all(p.grad is None for p in sampler.vae.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(sampler.disc.parameters(), disc_before))


def test_vae_step_moves_latents_against_the_discriminator():
    # With only the adversarial term (gamma2 = beta = 0), VAE steps lower D(labelled) - D(unlabelled).
    sampler = _sampler(lr=1e-3, gamma2=0.0, beta=0.0)
    ids_l, ids_u = torch.arange(0, 16), torch.arange(16, 32)
    disc_before = [p.clone() for p in sampler.disc.parameters()]

    def gap() -> float:
        mu = sampler.latent_means(torch.cat([ids_l, ids_u]))
        d_l, d_u = _d_means(sampler, mu[:16], mu[16:])
        return d_l - d_u

    sampler.disc.eval()  # a fixed discriminator (running statistics) to measure against
    start = gap()
    sampler.disc.train()
    for _ in range(5):
        sampler.vae_step(ids_l, ids_u)
    sampler.disc.eval()
    assert gap() < start
    # The VAE optimiser never touches the discriminator's weights.
    assert all(torch.equal(p, q) for p, q in zip(sampler.disc.parameters(), disc_before))
