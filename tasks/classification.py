"""Slice classification with a ResNet-18: multi-label (``brats-ml``, ``phantom-ml``) and
multi-class (``covidqu``, ``phantom-cls``).

Multi-label targets are the presence of ET (label 4), ED (label 2) and NCR/NET (label 1) anywhere in
the slice's tumour mask; the loss is BCE-with-logits over the three outputs and the primary metric
is macro average precision. Multi-class targets are the prepared ``label`` array (a fixed, sorted
class mapping); the loss is cross-entropy and the primary metric accuracy.

The single-channel input is repeated to three channels inside the model. ``input_norm="imagenet"``
then applies ImageNet's per-channel mean and standard deviation (METHOD.md, multi-label), ``"dataset"``
keeps the data set's own normalisation (COVID-QU-Ex: ``(x/255 − 0.5)/0.5``). ImageNet weights come
from ``task.weights`` or torchvision's hub cache, never from the network.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from albench import tasks
from albench.errors import ConfigError, DataError
from albench.prepared import PreparedDataset
from albench.tasks.metrics import multiclass_metrics, multilabel_metrics
from albench.tasks.models import build_resnet18, find_imagenet_weights, imagenet_affine, resolve_stem
from albench.tasks.trainer import PoolTask
from albench.views import PoolViews

#: Multi-label outputs, in order, and the BraTS label each one detects.
MULTILABEL_CLASSES = (("et", 4), ("ed", 2), ("ncr", 1))
INPUT_NORMS = ("imagenet", "dataset")


class ResNetTask(PoolTask):
    """What the two classification kinds share: a ResNet-18, ImageNet weights when available."""

    outputs_count: int = 3

    def __init__(self, data: PreparedDataset, params: Mapping[str, Any], views: PoolViews) -> None:
        super().__init__(data, params, views)
        if self.params["input_norm"] not in INPUT_NORMS:
            raise ConfigError(f"task.input_norm={self.params['input_norm']!r}: expected one of {', '.join(INPUT_NORMS)}")
        self.stem = resolve_stem(str(self.params["stem"]), int(self.x["train"].shape[-1]))
        self._affine: tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None] = (None, None)
        if self.params["input_norm"] == "imagenet":
            main = data.split("train").arrays["main"]
            stored_max = 255.0 if main.dtype == np.uint8 else 1.0
            self._affine = imagenet_affine(data.manifest.get("normalisation", {}).get("main"), stored_max)
        self._weights, self._weights_note = find_imagenet_weights(
            str(self.params["weights"]), width=int(self.params["width"]), stem=self.stem
        )

    def build_model(self) -> nn.Module:
        mean, std = self._affine
        model = build_resnet18(self.outputs_count, self.params, stem=self.stem, mean=mean, std=std)
        if self._weights is not None:
            model.load_state_dict(self._weights, strict=False)
        return model

    def score(self, model: nn.Module, split: str) -> dict[str, float]:
        probs = torch.cat([self.probabilities(out) for _, out in self.outputs(model, self.x[split])])
        return self._metrics(self.y[split].cpu().numpy(), probs.cpu().numpy())

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "weights": self._weights_note,
            "width": int(self.params["width"]),
            "stem": self.stem,
            "input_norm": str(self.params["input_norm"]),
        }


class MultiLabelTask(ResNetTask):
    kind = "multilabel"
    metrics = ("map",) + tuple(f"ap_{name}" for name, _ in MULTILABEL_CLASSES) + ("auroc",)

    def _check_data(self, data: PreparedDataset) -> None:
        if not (data.has("presence") or data.has("mask")):
            raise self.missing("mask", "the ET/ED/NCR presence labels are read from the tumour mask")
        if data.has("presence") and tuple(data.split("train").arrays["presence"].shape[1:]) != (len(MULTILABEL_CLASSES),):
            raise DataError(f"data set {data.name!r}: train/presence should be (N, 3) (ET, ED, NCR)")

    def _targets(self, split: str) -> torch.Tensor:
        arrays = self.data.split(split).arrays
        if "presence" in arrays:  # prepared as (N, 3) ET, ED, NCR (any pixel of labels 4, 2, 1)
            return torch.as_tensor(np.asarray(arrays["presence"], dtype=np.float32), device=self.device)
        mask = arrays["mask"]
        out = np.zeros((len(mask), len(MULTILABEL_CLASSES)), dtype=np.float32)
        for start in range(0, len(mask), 256):
            block = np.asarray(mask[start : start + 256])
            for c, (_, label) in enumerate(MULTILABEL_CLASSES):
                out[start : start + 256, c] = (block == label).any(axis=(1, 2))
        return torch.from_numpy(out).to(self.device)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()

    def _metrics(self, y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        return multilabel_metrics(y, probs, tuple(name for name, _ in MULTILABEL_CLASSES))

    def _describe_extra(self) -> dict[str, Any]:
        return {**super()._describe_extra(), "target": "presence of ET (4), ED (2), NCR/NET (1) in the slice"}


class MultiClassTask(ResNetTask):
    kind = "multiclass"
    metrics = ("accuracy", "balanced_accuracy", "macro_f1")

    def _check_data(self, data: PreparedDataset) -> None:
        if not data.has("label"):
            raise self.missing("label", "the class of each image")
        classes = data.manifest.get("classes")
        self.outputs_count = len(classes) if classes else 3
        for split in ("train", "val", "test"):
            label = np.asarray(data.split(split).arrays["label"])
            if len(label) and (label.min() < 0 or label.max() >= self.outputs_count):
                raise DataError(
                    f"data set {data.name!r}: {split}/label has values outside 0..{self.outputs_count - 1}"
                )

    def _targets(self, split: str) -> torch.Tensor:
        return torch.as_tensor(np.array(self.data.split(split).arrays["label"]), dtype=torch.long, device=self.device)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def _metrics(self, y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        return multiclass_metrics(y, probs)

    def _describe_extra(self) -> dict[str, Any]:
        classes = self.data.manifest.get("classes")
        return {**super()._describe_extra(), "classes": list(classes) if classes else self.outputs_count}


_CLS_PARAMS = (
    "epochs", "batch_size", "lr", "optimizer", "width", "stem", "image_size", "augment",
    "eval_batch_size", "weights", "input_norm",
)


def _cls_params(**kw: Any) -> dict[str, Any]:
    assert set(kw) == set(_CLS_PARAMS), set(kw) ^ set(_CLS_PARAMS)
    return kw


def _paper_cls(norm: str) -> dict[str, Any]:
    return _cls_params(
        epochs=50, batch_size=32, lr=1e-5, optimizer="adam", width=64, stem="imagenet", image_size=0,
        augment=True, eval_batch_size=256, weights="", input_norm=norm,
    )


def _cpu_cls(norm: str, *, epochs: int, width: int, size: int, batch: int = 32, lr: float = 1e-3) -> dict[str, Any]:
    return _cls_params(
        epochs=epochs, batch_size=batch, lr=lr, optimizer="adam", width=width, stem="auto", image_size=size,
        augment=True, eval_batch_size=256, weights="", input_norm=norm,
    )


@tasks.register("brats-ml")
class BratsMultiLabel(MultiLabelTask):
    """ET/ED/NCR presence in BraTS2018 T1ce slices with a ResNet-18 (mAP)."""

    registry_name = "brats-ml"
    dataset = "brats"
    dataset_params: dict[str, Any] = {}
    default_preset = "paper"
    presets = {
        "paper": {"protocol": {"initial": 200, "budget": 100, "rounds": 7}, "params": _paper_cls("imagenet")},
        "quick": {"protocol": {"initial": 200, "budget": 100, "rounds": 7}, "params": _cpu_cls("imagenet", epochs=8, width=16, size=64)},
        "smoke": {"protocol": {"initial": 8, "budget": 8, "rounds": 1}, "params": _cpu_cls("imagenet", epochs=2, width=4, size=32, batch=8)},
    }


@tasks.register("covidqu")
class CovidQuClassification(MultiClassTask):
    """COVID-19 / non-COVID / normal chest X-rays (COVID-QU-Ex) with a ResNet-18 (accuracy)."""

    registry_name = "covidqu"
    dataset = "covidqu"
    dataset_params: dict[str, Any] = {}
    default_preset = "paper"
    presets = {
        "paper": {"protocol": {"initial": 100, "budget": 100, "rounds": 7}, "params": _paper_cls("dataset")},
        "quick": {"protocol": {"initial": 100, "budget": 100, "rounds": 7}, "params": _cpu_cls("dataset", epochs=8, width=16, size=64)},
        "smoke": {"protocol": {"initial": 8, "budget": 8, "rounds": 1}, "params": _cpu_cls("dataset", epochs=2, width=4, size=32, batch=8)},
    }


@tasks.register("phantom-ml")
class PhantomMultiLabel(MultiLabelTask):
    """ET/ED/NCR presence in brain-phantom slices with a small ResNet-18 (mAP)."""

    registry_name = "phantom-ml"
    dataset = "phantom"
    dataset_params = {"family": "brain"}
    default_preset = "quick"
    presets = {
        "paper": {"protocol": {"initial": 200, "budget": 100, "rounds": 7}, "params": _paper_cls("imagenet")},
        "quick": {"protocol": {"initial": 20, "budget": 20, "rounds": 5}, "params": _cpu_cls("imagenet", epochs=12, width=8, size=32, batch=8)},
        "smoke": {"protocol": {"initial": 8, "budget": 8, "rounds": 2}, "params": _cpu_cls("imagenet", epochs=4, width=4, size=32, batch=8)},
    }


@tasks.register("phantom-cls")
class PhantomClassification(MultiClassTask):
    """Three-class chest-phantom classification with a small ResNet-18 (accuracy)."""

    registry_name = "phantom-cls"
    dataset = "phantom"
    dataset_params = {"family": "chest"}
    default_preset = "quick"
    presets = {
        "paper": {"protocol": {"initial": 100, "budget": 100, "rounds": 7}, "params": _paper_cls("dataset")},
        "quick": {"protocol": {"initial": 20, "budget": 20, "rounds": 5}, "params": _cpu_cls("dataset", epochs=10, width=16, size=0, batch=16)},
        "smoke": {"protocol": {"initial": 8, "budget": 8, "rounds": 2}, "params": _cpu_cls("dataset", epochs=12, width=8, size=32, batch=16)},
    }
