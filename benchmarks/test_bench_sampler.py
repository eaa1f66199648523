"""One M-VAAL sampler iteration at the paper's shape, and the machine's fp32 matmul rate, in one run.

Shape: a labelled batch of 16 and an unlabelled batch of 16, 3 x 128 x 128 inputs, latent 64,
width 64 (encoder 3 -> 64 -> ... -> 1024, two decoders 1024 -> ... -> 32 -> 3). One iteration = two
VAE updates + one discriminator update (with its gradient penalty), exactly the shipped loop.

The achieved rate counts the convolutions' FLOPs only (2 per multiply-add):
per VAE update, forward + backward ~ 3 x forward of encoder + both decoders on 32 items (minus the
input gradient of the first convolution, which is never needed); the discriminator update adds one
encoder forward on 32 items. The dense layers (the encoder heads, the decoders' first linear and the
discriminator) are left out, so the figure is a slight undercount.

Run: ``pytest benchmarks/test_bench_sampler.py -s`` (pytest-benchmark), or
``python benchmarks/test_bench_sampler.py [cpu|cuda]`` for a JSON line.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from albench.strategies.adversarial import AdversarialSampler, SamplerConfig
from albench.strategies.vae import conv_flops

PAPER = dict(image_size=128, width=64, latent_dim=64, batch_size=16, aux=True, gamma3=1.0)


def iteration_conv_flops(sampler: AdversarialSampler, batch: int = 32) -> int:
    cfg = sampler.cfg
    enc = conv_flops(sampler.vae.encoder, cfg.image_size, batch)
    dec = conv_flops(sampler.vae.decoder, cfg.image_size, batch)
    aux = conv_flops(sampler.vae.aux_decoder, cfg.image_size, batch) if sampler.vae.aux_decoder is not None else 0
    first = sampler.vae.encoder.body[0]
    first_input_grad = 2 * first.in_channels * first.out_channels * 16 * (cfg.image_size // 2) ** 2 * batch
    per_vae_step = 3 * (enc + dec + aux) - first_input_grad
    return cfg.vae_steps * per_vae_step + cfg.disc_steps * enc


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a large square matmul (TF32 off for fp32: the honest fp32 rate)."""
    n = 8192 if device.type == "cuda" else 1024
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        _sync(device)
        reps = 20 if device.type == "cuda" else 10
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        return 2 * n**3 * reps / (time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def build(device: torch.device, pool: int = 64) -> AdversarialSampler:
    g = torch.Generator().manual_seed(0)
    main = torch.randn(pool, 1, 128, 128, generator=g).to(device)
    aux = torch.randn(pool, 1, 128, 128, generator=g).to(device)
    torch.manual_seed(0)
    return AdversarialSampler(SamplerConfig(**PAPER), main, aux, noise_seed=1, autocast=device.type == "cuda")


def measure(device: torch.device, iterations: int | None = None) -> dict[str, float]:
    sampler = build(device)
    ids = torch.arange(64, device=device)
    g = torch.Generator().manual_seed(0)
    warm = 5 if device.type == "cuda" else 1
    iterations = iterations or (50 if device.type == "cuda" else 2)
    sampler.fit(ids[:16], ids[16:], iterations=warm, generator=g)
    _sync(device)
    start = time.perf_counter()
    sampler.fit(ids[:16], ids[16:], iterations=iterations, generator=g)
    _sync(device)
    seconds = (time.perf_counter() - start) / iterations
    flops = iteration_conv_flops(sampler)
    # scoring: the whole (synthetic) pool under inference mode, large batches
    pool_ids = torch.arange(64, device=device).repeat(16)  # 1024 items
    sampler.score(pool_ids)
    _sync(device)
    start = time.perf_counter()
    sampler.score(pool_ids)
    _sync(device)
    score_seconds = time.perf_counter() - start
    fp32 = matmul_rate(device)
    out = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "iteration_seconds": seconds,
        "iteration_conv_gflop": flops / 1e9,
        "achieved_conv_gflops": flops / seconds / 1e9,
        "fp32_matmul_gflops": fp32 / 1e9,
        "ratio_to_fp32_matmul": flops / seconds / fp32,
        "score_items_per_second": len(pool_ids) / score_seconds,
        "autocast_bf16": device.type == "cuda",
    }
    if device.type == "cuda":
        bf16 = matmul_rate(device, torch.bfloat16)
        out["bf16_matmul_gflops"] = bf16 / 1e9
        out["ratio_to_bf16_matmul"] = flops / seconds / bf16
    return out


def test_sampler_iteration_paper_shape(benchmark):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    sampler = build(device)
    ids = torch.arange(64, device=device)
    g = torch.Generator().manual_seed(0)

    def one_iteration():
        sampler.fit(ids[:16], ids[16:], iterations=1, generator=g)
        _sync(device)

    benchmark.pedantic(one_iteration, rounds=3 if device.type == "cpu" else 30, warmup_rounds=1)
    seconds = benchmark.stats.stats.mean
    flops = iteration_conv_flops(sampler)
    fp32 = matmul_rate(device)
    benchmark.extra_info.update(
        iteration_conv_gflop=flops / 1e9,
        achieved_conv_gflops=flops / seconds / 1e9,
        fp32_matmul_gflops=fp32 / 1e9,
        ratio_to_fp32_matmul=flops / seconds / fp32,
    )
    print(json.dumps(benchmark.extra_info))
    assert flops > 0


if __name__ == "__main__":
    dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cpu":
        torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    print(json.dumps(measure(dev)))
