"""Device choice and the mixed-precision switch, shared by tasks and strategies."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from albench.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str) -> torch.device:
    """``auto`` means CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available (use --device cpu or auto)")
        return torch.device(requested)
    raise ConfigError(f"--device {requested}: expected one of {', '.join(DEVICE_CHOICES)}")


def autocast(device: torch.device, enabled: bool = True) -> ContextManager:
    """bf16 autocast on CUDA; a no-op on the CPU, where fp32 keeps runs bit-for-bit reproducible."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a conv net to ``device`` in channels-last layout on CUDA (faster cuDNN kernels)."""
    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def peak_memory_mb(device: torch.device) -> float:
    """Peak device memory since the last reset (CUDA), else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
