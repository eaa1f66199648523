"""Uniform random sampling: the baseline every other strategy is compared against."""

from __future__ import annotations

import torch

from albench import strategies


@strategies.register("random", task_agnostic=True)
class RandomSampling:
    """Uniformly random unlabelled items (the baseline)."""

    def select(self, ctx, budget: int) -> torch.Tensor:
        order = torch.randperm(len(ctx.unlabelled), generator=ctx.generator)[:budget]
        return ctx.unlabelled.cpu()[order]
