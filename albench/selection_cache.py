"""Reuse of task-agnostic selections across tasks that share a data set.

A task-agnostic strategy (random, VAAL, M-VAAL) never sees the task model, so its selection in a
round is a function of (data set, strategy parameters, seed, round, budget, labelled set, device type).
``brats-wt`` and ``brats-ml`` share the pool and, per seed, the initial set, so the sampler of each
round needs training only once: the first task to reach a round stores its selection here and the
others load it. The key includes the sha256 of the labelled set, so a mismatch can never be reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from albench.config import CellSpec, params_hash
from albench.prepared import atomic_write_json, protocol_hash
from albench.store import atomic_save_npz


@dataclass
class Selection:
    """A strategy's answer for one round, with what it recorded on the way."""

    added: list[int]
    scalars: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


class SelectionCache:
    """Selections on disk under ``<out>/selections/``."""

    def __init__(self, root: Path, *, not_before: float | None = None) -> None:
        """``not_before`` (a ``time.time()``): ignore selections stored earlier (``--force`` runs)."""
        self.root = Path(root)
        self.not_before = not_before

    def folder(self, spec: CellSpec, device_type: str) -> Path:
        return (
            self.root
            / f"{spec.dataset}-{protocol_hash(spec.dataset_params)}"
            / f"{spec.strategy}-{params_hash(spec.strategy_params)}-{device_type}-budget{spec.protocol['budget']}"
            / f"seed-{spec.seed}"
        )

    def _paths(self, spec: CellSpec, device_type: str, round_index: int, sha: str) -> tuple[Path, Path]:
        stem = f"round-{round_index:03d}-{sha[:16]}"
        folder = self.folder(spec, device_type)
        return folder / f"{stem}.json", folder / f"{stem}.npz"

    def get(self, spec: CellSpec, device_type: str, round_index: int, sha: str) -> Selection | None:
        meta_path, arrays_path = self._paths(spec, device_type, round_index, sha)
        if not meta_path.is_file():
            return None
        if self.not_before is not None and meta_path.stat().st_mtime < self.not_before:
            return None
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("labelled_sha256") != sha:
            return None
        diagnostics: dict[str, np.ndarray] = {}
        if meta.get("has_diagnostics"):
            if not arrays_path.is_file():
                return None
            with np.load(arrays_path, allow_pickle=False) as npz:
                diagnostics = {k: npz[k] for k in npz.files}
        return Selection(list(meta["added"]), dict(meta.get("scalars", {})), diagnostics, float(meta.get("seconds", 0.0)))

    def put(self, spec: CellSpec, device_type: str, round_index: int, sha: str, selection: Selection) -> None:
        meta_path, arrays_path = self._paths(spec, device_type, round_index, sha)
        if selection.diagnostics:
            atomic_save_npz(arrays_path, selection.diagnostics)
        atomic_write_json(meta_path, {
            "strategy": spec.strategy,
            "strategy_params": spec.strategy_params,
            "dataset": spec.dataset,
            "seed": spec.seed,
            "round": round_index,
            "labelled_sha256": sha,
            "added": [int(i) for i in selection.added],
            "scalars": selection.scalars,
            "seconds": selection.seconds,
            "has_diagnostics": bool(selection.diagnostics),
        })
