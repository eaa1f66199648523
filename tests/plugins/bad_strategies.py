"""Strategies that break the selection contract on purpose, and one that is valid but not random."""

from __future__ import annotations

import torch

from albench import strategies


@strategies.register("dup-ids")
class DuplicateIds:
    """Returns the first unlabelled id twice."""

    def select(self, ctx, budget):
        ids = ctx.unlabelled[:budget].clone()
        ids[-1] = ids[0]
        return ids


@strategies.register("labelled-ids")
class LabelledIds:
    """Returns an already-labelled id."""

    def select(self, ctx, budget):
        return torch.cat([ctx.labelled[:1], ctx.unlabelled[: budget - 1]])


@strategies.register("short-ids")
class TooFewIds:
    """Returns one id fewer than the budget."""

    def select(self, ctx, budget):
        return ctx.unlabelled[: budget - 1]


@strategies.register("lowest-ids", task_agnostic=True)
class LowestIds:
    """The lowest unlabelled ids: deterministic and valid, but not random."""

    def select(self, ctx, budget):
        return ctx.unlabelled[:budget]


@strategies.register("seg-only", task_kinds={"segmentation"})
class SegmentationOnly:
    """Declares that it supports segmentation tasks only."""

    def select(self, ctx, budget):
        return ctx.unlabelled[:budget]
