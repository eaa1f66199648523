"""What a strategy sees when it selects: ids, data views, the round's model (if task-aware), seeds.

A strategy returns item ids (integers: positions in the training pool). Ids travel with the data:
``ctx.unlabelled`` is the tensor of candidate ids, and a strategy that scores
``ctx.images()[ctx.unlabelled]`` can map score ``i`` straight back to ``ctx.unlabelled[i]``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from albench.errors import SelectionError
from albench.interfaces import Progress, no_progress
from albench.prepared import PreparedDataset
from albench.views import PoolViews


class SelectionContext:
    """Everything a strategy may use for one round's selection."""

    def __init__(
        self,
        *,
        strategy: str,
        round_index: int,
        labelled: np.ndarray,
        pool_size: int,
        views: PoolViews,
        task_kind: str,
        generator: torch.Generator,
        rng: np.random.Generator,
        predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
        embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
        progress: Progress = no_progress,
        autocast: bool = False,
    ) -> None:
        self.strategy = strategy
        self.round = round_index
        self.device = views.device
        mask = np.ones(pool_size, dtype=bool)
        mask[labelled] = False
        self.labelled = torch.as_tensor(np.sort(labelled), dtype=torch.long, device=self.device)
        self.unlabelled = torch.as_tensor(np.flatnonzero(mask), dtype=torch.long, device=self.device)
        self.pool_size = pool_size
        self.task_kind = task_kind
        self.generator = generator
        self.rng = rng
        self.autocast = autocast
        self._views = views
        self._predict = predict
        self._embed = embed
        self._progress = progress
        self.diagnostics: dict[str, np.ndarray] = {}
        self.scalars: dict[str, float] = {}

    # -- data ---------------------------------------------------------------------------------
    @property
    def dataset(self) -> PreparedDataset:
        return self._views.data

    @property
    def sampler_crop(self) -> float:
        """The fraction of each side that the data set asks image samplers to centre-crop."""
        return float(self.dataset.manifest.get("sampler_crop", 1.0))

    def has_modality(self, modality: str) -> bool:
        return self.dataset.has(modality)

    def images(self, modality: str = "main", *, size: int | None = None, crop: float = 1.0) -> torch.Tensor:
        """The whole training pool's ``modality`` as one normalised ``(N, 1, H, W)`` device tensor."""
        return self._views.images(modality, split="train", size=size, crop=crop)

    # -- the round's task model (task-aware strategies only) ------------------------------------
    def predict(self, ids: torch.Tensor) -> torch.Tensor:
        """The round's task model's probabilities for ``ids``, batched on the device."""
        if self._predict is None:
            raise SelectionError(f"strategy {self.strategy!r}: ctx.predict is not available to task-agnostic strategies")
        return self._predict(torch.as_tensor(ids, device=self.device))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The round's task model's penultimate features for ``ids``, where the task offers them."""
        if self._embed is None:
            raise SelectionError(f"strategy {self.strategy!r}: this task offers no embeddings to this strategy")
        return self._embed(torch.as_tensor(ids, device=self.device))

    # -- records ------------------------------------------------------------------------------
    def record(self, **arrays: Any) -> None:
        """Keep per-item diagnostics for this round (written to ``diagnostics/round-<r>.npz``)."""
        for name, value in arrays.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().float().cpu().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
            self.diagnostics[name] = np.asarray(value)

    def log(self, **scalars: float) -> None:
        """Add scalar columns (e.g. final losses) to this round's row of rounds.csv."""
        for name, value in scalars.items():
            self.scalars[name] = float(value)

    def progress(self, stage: str, **fields: Any) -> None:
        self._progress(stage, **fields)
