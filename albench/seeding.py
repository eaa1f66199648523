"""Named, independent random streams derived from one run seed.

Every random choice in a run draws from a stream named after its purpose, e.g.
``("initial", dataset)``, ``("round", 3, "model")`` or ``("strategy", "mvaal", 3)``. Streams with
different names are statistically independent (numpy ``SeedSequence`` with the name hashed into its
entropy), and a stream's name never mentions the strategy unless the stream belongs to it. That is
what makes comparisons paired: for one seed every strategy starts from the same initial set and
trains each round's model from the same initialisation, in the same data order.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

import numpy as np
import torch


def _name_words(parts: tuple[Any, ...]) -> list[int]:
    text = "/".join(str(p) for p in parts).encode()
    digest = hashlib.sha256(text).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def seed_sequence(seed: int, *name: Any) -> np.random.SeedSequence:
    """The stream ``name`` of run seed ``seed``."""
    return np.random.SeedSequence([int(seed), *_name_words(name)])


def numpy_rng(seed: int, *name: Any) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, *name))


def int_seed(seed: int, *name: Any) -> int:
    """A 63-bit integer for APIs that take a plain seed (``torch.manual_seed``)."""
    return int(seed_sequence(seed, *name).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def torch_generator(seed: int, *name: Any, device: str | torch.device = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int_seed(seed, *name))
    return generator


def seed_everything(seed: int, *name: Any) -> None:
    """Seed the global generators (torch CPU/CUDA, numpy, random) from stream ``name``.

    Module constructors draw their initial weights from torch's global generator, so each round's
    model is built right after this call.
    """
    value = int_seed(seed, *name)
    torch.manual_seed(value)
    random.seed(value)
    np.random.seed(value % (2**32))


def enable_determinism() -> dict[str, Any]:
    """Turn on deterministic algorithms (CPU bit-for-bit; CUDA as far as torch allows).

    Returns the flags for the environment manifest.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return {
        "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
