"""A tiny task plugin for the runner's tests: logistic regression on 8x8-pooled phantom chests.

It is a real task (trains, selects the best validation epoch, reports test metrics) that fits in
milliseconds, so the runner's tests can run many cells.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from albench import tasks
from albench.interfaces import FitResult


_PARAMS = {"epochs": 6, "lr": 0.05, "batch_size": 16}
_PROTOCOL = {"initial": 20, "budget": 10, "rounds": 3}


@tasks.register("tiny-cls")
class TinyClassification:
    """Logistic regression on pooled phantom chest images (for tests)."""

    kind = "multiclass"
    dataset = "phantom"
    dataset_params = {"family": "chest"}
    metrics = ("accuracy",)
    default_preset = "smoke"
    presets = {p: {"protocol": dict(_PROTOCOL), "params": dict(_PARAMS)} for p in ("smoke", "quick", "paper")}

    def __init__(self, data, params, views):
        self.params = params
        self.device = views.device
        self.x = {s: F.adaptive_avg_pool2d(views.images("main", split=s), 8).flatten(1) for s in ("train", "val", "test")}
        self.y = {s: torch.tensor(np.asarray(data.split(s).target("label")), device=self.device) for s in self.x}

    def describe(self):
        return {"model": "logistic regression on 8x8 pooled images"}

    def _accuracy(self, model, split):
        with torch.inference_mode():
            return float((model(self.x[split]).argmax(1) == self.y[split]).float().mean())

    def fit(self, labelled, *, generator, progress=lambda *a, **k: None):
        model = torch.nn.Linear(64, 3).to(self.device)
        opt = torch.optim.SGD(model.parameters(), lr=self.params["lr"])
        ids = torch.as_tensor(labelled, device=self.device)
        best = (-1.0, 0, None)
        for epoch in range(self.params["epochs"]):
            order = ids[torch.randperm(len(ids), generator=generator).to(self.device)]
            for start in range(0, len(order), self.params["batch_size"]):
                batch = order[start : start + self.params["batch_size"]]
                loss = F.cross_entropy(model(self.x["train"][batch]), self.y["train"][batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
            progress("epoch", epoch=epoch + 1, epochs=self.params["epochs"], loss=float(loss.detach()))
            val = self._accuracy(model, "val")
            if val > best[0]:
                best = (val, epoch, copy.deepcopy(model.state_dict()))
        model.load_state_dict(best[2])
        return FitResult(val={"accuracy": best[0]}, test={"accuracy": self._accuracy(model, "test")}, model=model,
                         best_epoch=best[1], epochs=self.params["epochs"])

    def predict(self, model, ids):
        with torch.inference_mode():
            return model(self.x["train"][ids]).softmax(1)


@tasks.register("tiny-cls-b")
class TinyClassificationB(TinyClassification):
    """The same pool as tiny-cls with another learning rate: a second task sharing one data set."""

    presets = {p: {"protocol": dict(_PROTOCOL), "params": {**_PARAMS, "lr": 0.2}} for p in ("smoke", "quick", "paper")}
