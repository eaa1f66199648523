"""The one training loop every task uses, and the base class that binds a task to its pool tensors.

A task's three splits live on the device as whole tensors (made once, by :class:`~albench.views.PoolViews`);
a batch is an index into them, never a per-item copy. Each epoch shuffles the labelled ids with the
round's CPU generator, splits them into near-equal batches (so no batch of one ever reaches batch
norm), augments each batch on the device, and steps the optimiser; then the whole validation split is
scored in large batches under inference mode. The best validation epoch's weights are kept in memory
(a ``state_dict`` clone) and are the ones tested and returned.

The three task kinds differ only in what :class:`PoolTask`'s subclasses supply: the model, the
targets, the loss, how outputs become metrics, and how logits become probabilities.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from albench.device import autocast, channels_last
from albench.errors import ConfigError, DataError
from albench.interfaces import FitResult, Progress, no_progress
from albench.prepared import SPLITS, PreparedDataset
from albench.views import PoolViews
from albench.tasks.augment import augment_batch
from albench.tasks.models import parameter_count


def batches(ids: torch.Tensor, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Shuffle ``ids`` (when a generator is given) and cut them into ``ceil(n / batch_size)`` near-equal parts."""
    n = len(ids)
    if n == 0:
        return []
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    parts = math.ceil(n / batch_size)
    return list(ids[order.to(ids.device)].tensor_split(parts))


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ConfigError(f"task.optimizer={name!r}: expected adam, rmsprop or sgd")


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class TrainOutcome:
    best_epoch: int
    best_val: dict[str, float]
    epochs: int
    losses: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0


def train_model(
    model: nn.Module,
    *,
    x: torch.Tensor,
    y: torch.Tensor,
    ids: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    validate: Callable[[nn.Module], dict[str, float]],
    primary: str,
    epochs: int,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    augment: bool,
    dense_target: bool,
    progress: Progress = no_progress,
) -> TrainOutcome:
    """Train ``model`` on ``x[ids]``/``y[ids]`` for ``epochs`` and leave the best validation epoch loaded.

    ``dense_target``: the target is a ``(N, H, W)`` mask that augmentation must warp with the image.
    """
    device = x.device
    cl = device.type == "cuda"
    best_score, best_epoch, best_state, best_val = -math.inf, -1, None, {}
    outcome = TrainOutcome(best_epoch=-1, best_val={}, epochs=epochs)
    for epoch in range(epochs):
        t0 = time.perf_counter()
        model.train()
        total = torch.zeros((), device=device)
        count = 0
        for idx in batches(ids, batch_size, generator):
            xb, yb = x[idx], y[idx]
            if augment:
                xb, warped = augment_batch(xb, generator, target=yb if dense_target else None)
                if dense_target:
                    yb = warped
            if cl:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                out = model(xb)
            loss = loss_fn(out.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
            count += len(idx)
        mean_loss = float(total.item()) / max(count, 1)
        t1 = time.perf_counter()
        val = validate(model)
        outcome.eval_seconds += time.perf_counter() - t1
        outcome.train_seconds += t1 - t0
        score = val.get(primary, math.nan)
        score = -math.inf if math.isnan(score) else score
        if best_state is None or score > best_score:
            best_score, best_epoch, best_state, best_val = score, epoch, clone_state(model), val
        outcome.losses.append(mean_loss)
        outcome.val_history.append(float(val.get(primary, math.nan)))
        progress("epoch", epoch=epoch + 1, epochs=epochs, loss=mean_loss)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    outcome.best_epoch, outcome.best_val = best_epoch, best_val
    return outcome


class PoolTask:
    """Shared machinery of the built-in tasks: params, device tensors, fit, predict, embed.

    Subclasses set the registry class attributes and implement ``_targets(split)``,
    ``build_model()``, ``loss(logits, target)``, ``probabilities(logits)`` and
    ``score(split, outputs, targets)``; segmentation also adds overlay arrays.
    """

    kind: ClassVar[str]
    dataset: ClassVar[str]
    dataset_params: ClassVar[dict[str, Any]]
    metrics: ClassVar[tuple[str, ...]]
    default_preset: ClassVar[str]
    presets: ClassVar[dict[str, dict[str, Any]]]

    def __init__(self, data: PreparedDataset, params: Mapping[str, Any], views: PoolViews) -> None:
        defaults = self.presets[self.default_preset]["params"]
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise ConfigError(f"{self.name}: unknown task parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(defaults))})")
        self.params = {**defaults, **params}
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if int(self.params[key]) < 1:
                raise ConfigError(f"task.{key}={self.params[key]}: expected a positive integer")
        self.data = data
        self.views = views
        self.device = views.device
        self._check_data(data)
        size = int(self.params["image_size"]) or None
        self.x = {s: views.images("main", split=s, size=size) for s in SPLITS}
        self.y = {s: self._targets(s) for s in SPLITS}
        self.pool_size = len(self.x["train"])

    # -- subclass hooks ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return getattr(self, "registry_name", type(self).__name__)

    def missing(self, array: str, why: str) -> DataError:
        """The one-line error for a data set that lacks this task's target."""
        return DataError(f"task {self.name!r} needs a {array!r} array ({why}), but data set {self.data.name!r} has none")

    def _check_data(self, data: PreparedDataset) -> None:
        raise NotImplementedError

    def _targets(self, split: str) -> torch.Tensor:
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, model: nn.Module, split: str) -> dict[str, float]:
        raise NotImplementedError

    def fit_arrays(self, model: nn.Module) -> dict[str, np.ndarray]:
        return {}

    # -- running the model over a split in large batches ------------------------------------------
    def outputs(self, model: nn.Module, x: torch.Tensor, *, fn: str = "forward") -> torch.Iterator:
        """Yield ``(slice, output)`` for consecutive large batches of ``x`` under inference mode."""
        model.eval()
        step = int(self.params["eval_batch_size"])
        call = model if fn == "forward" else getattr(model, fn)
        cl = self.device.type == "cuda"
        with torch.inference_mode(), autocast(self.device):
            for start in range(0, len(x), step):
                xb = x[start : start + step]
                if cl:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yield slice(start, start + len(xb)), call(xb).float()

    # -- the Task protocol ---------------------------------------------------------------------
    def make_model(self) -> nn.Module:
        """Build the model on the device (torch's global generator gives the initialisation)."""
        return channels_last(self.build_model(), self.device)

    def fit(self, labelled: np.ndarray, *, generator: torch.Generator, progress: Progress = no_progress) -> FitResult:
        model = self.make_model()
        ids = np.asarray(labelled, dtype=np.int64)
        if len(ids) == 0:
            raise ConfigError(f"{self.name}: cannot train on an empty labelled set")
        if ids.min() < 0 or ids.max() >= self.pool_size:
            raise ConfigError(f"{self.name}: labelled ids must lie in [0, {self.pool_size})")
        p = self.params
        optimizer = make_optimizer(str(p["optimizer"]), model.parameters(), float(p["lr"]))
        start = time.perf_counter()
        outcome = train_model(
            model,
            x=self.x["train"],
            y=self.y["train"],
            ids=torch.as_tensor(ids, device=self.device),
            loss_fn=self.loss,
            validate=lambda m: self.score(m, "val"),
            primary=self.metrics[0],
            epochs=int(p["epochs"]),
            batch_size=int(p["batch_size"]),
            optimizer=optimizer,
            generator=generator,
            augment=bool(p["augment"]),
            dense_target=self.kind == "segmentation",
            progress=progress,
        )
        t_test = time.perf_counter()
        test = self.score(model, "test")
        arrays = self.fit_arrays(model)
        info = {
            "n_labelled": int(len(ids)),
            "train_seconds": round(outcome.train_seconds, 4),
            "val_seconds": round(outcome.eval_seconds, 4),
            "test_seconds": round(time.perf_counter() - t_test, 4),
            "fit_seconds": round(time.perf_counter() - start, 4),
            "losses": [round(v, 6) for v in outcome.losses],
            f"val_{self.metrics[0]}_per_epoch": [round(v, 6) for v in outcome.val_history],
        }
        return FitResult(
            val=outcome.best_val,
            test=test,
            model=model,
            best_epoch=outcome.best_epoch,
            epochs=outcome.epochs,
            info=info,
            arrays=arrays,
        )

    def _train_items(self, ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids, dtype=torch.long).to(self.device)
        return self.x["train"][ids]

    def predict(self, model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Probabilities for train items ``ids``: ``(N, C)``, or ``(N, 2, H, W)`` for segmentation."""
        x = self._train_items(ids)
        parts = [self.probabilities(out) for _, out in self.outputs(model, x)]
        return torch.cat(parts) if parts else torch.empty(0, device=self.device)

    def embed(self, model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, D)`` for train items ``ids``."""
        x = self._train_items(ids)
        parts = [out for _, out in self.outputs(model, x, fn="embed")]
        return torch.cat(parts) if parts else torch.empty(0, model.feature_dim, device=self.device)

    def describe(self) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):  # building a probe model must not move the global RNG
            model = self.build_model()
        return {
            "model": type(model).__name__.lower(),
            "params": parameter_count(model),
            "input_size": list(self.x["train"].shape[-2:]),
            "pool": {s: int(len(self.x[s])) for s in SPLITS},
            **self._describe_extra(),
        }

    def _describe_extra(self) -> dict[str, Any]:
        return {}
