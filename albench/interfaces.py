"""The contracts between the core and its plugins: data set recipes, tasks and strategies.

These are structural (``typing.Protocol``): a plugin never inherits from albench, it only has the
right attributes, in the spirit of scikit-learn's estimator API.

Task kinds are ``"segmentation"``, ``"multilabel"`` and ``"multiclass"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

from albench.prepared import PreparedDataset

if TYPE_CHECKING:  # torch is heavy to import; commands such as `albench prepare` do not need it
    import torch

TASK_KINDS = ("segmentation", "multilabel", "multiclass")
PRESETS = ("paper", "quick", "smoke")

#: ``progress(stage, **fields)``: a callback that tasks and strategies use to report epochs or
#: iterations; the runner forwards it to the terminal display (or nowhere).
Progress = Callable[..., None]


def no_progress(*_args: Any, **_kwargs: Any) -> None:
    return None


@runtime_checkable
class DatasetRecipe(Protocol):
    """Turns raw files (or a seed, for the phantom) into a prepared set in the cache.

    ``protocol(preset, fixed)`` returns the full protocol parameters (the cache key) for a preset,
    given the parameters a task fixes (e.g. the phantom's family). ``load`` opens the prepared set,
    preparing it first when that needs no user input (the phantom); a real data set that is not
    prepared raises :class:`~albench.errors.DataError` naming the ``albench prepare`` command.
    """

    requires_root: ClassVar[bool]

    def protocol(self, preset: str, fixed: Mapping[str, Any]) -> dict[str, Any]: ...

    def prepare(
        self, *, cache: Path, params: Mapping[str, Any], root: Path | None = None, jobs: int = 1, force: bool = False
    ) -> Path: ...

    def load(self, *, cache: Path, params: Mapping[str, Any]) -> PreparedDataset: ...


@dataclass
class FitResult:
    """What one round's training produced.

    ``val`` and ``test`` map metric names (without prefix) to floats for the selected epoch.
    ``model`` stays in memory for task-aware strategies (``ctx.predict``) and is never written.
    ``arrays`` are written to ``artifacts/round-<r>.npz`` (e.g. segmentation overlays).
    """

    val: dict[str, float]
    test: dict[str, float]
    model: Any = None
    best_epoch: int = -1
    epochs: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    """Binds a data set, a target, a model, a loss and metrics.

    Class attributes: ``kind`` (one of :data:`TASK_KINDS`), ``dataset`` (a dataset registry name),
    ``dataset_params`` (parameters this task fixes on the data set), ``metrics`` (names, primary
    first), ``default_preset``, and ``presets``: ``{preset: {"protocol": {"initial", "budget",
    "rounds"}, "params": {...}}}``.

    The constructor is called as ``Task(data=PreparedDataset, params=dict, views=PoolViews)``
    (``views.device`` is the device); it moves what it needs to the device once.

    ``fit`` trains a fresh model on the labelled train items, keeps the best validation epoch and
    returns its validation and test metrics. The runner seeds torch's global generator from the
    stream ``("round", r, "model")`` right before calling it, so the model must be built inside
    ``fit`` (identical initialisation for every strategy of one seed), and passes ``generator``
    (stream ``("round", r, "data")``, a CPU generator) for batch order and augmentation.
    ``describe()`` returns facts for spec.json (e.g. where pretrained weights came from).
    """

    kind: ClassVar[str]
    dataset: ClassVar[str]
    dataset_params: ClassVar[dict[str, Any]]
    metrics: ClassVar[tuple[str, ...]]
    default_preset: ClassVar[str]
    presets: ClassVar[dict[str, dict[str, Any]]]

    def fit(self, labelled: np.ndarray, *, generator: "torch.Generator", progress: Progress = no_progress) -> FitResult: ...

    def describe(self) -> dict[str, Any]: ...

    def predict(self, model: Any, ids: "torch.Tensor") -> "torch.Tensor":
        """Class probabilities (N, C) (segmentation: per-pixel, (N, C, H, W)) for train items."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """Chooses which unlabelled items to label next.

    Parameters are the constructor's keyword arguments with their defaults (as in scikit-learn);
    an optional class attribute ``presets = {preset: {param: value}}`` adjusts them per preset.
    Registry metadata: ``task_kinds`` (the kinds it supports; all when absent) and
    ``task_agnostic`` (True when the selection never depends on the task or its model, which lets
    the runner reuse one selection across tasks of the same data set). An optional classmethod
    ``params_for(task_kind, params) -> params`` resolves task-kind-dependent defaults (M-VAAL's
    gamma3) before the spec is written.
    """

    def select(self, ctx: Any, budget: int) -> Any: ...
