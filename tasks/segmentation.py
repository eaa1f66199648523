"""Whole-tumour segmentation with a U-Net: ``brats-wt`` and its phantom twin ``phantom-wt``.

Target: the whole tumour, i.e. every nonzero label of the BraTS mask ({1, 2, 4}). When the learner
works at a smaller size than the prepared slices, the mask is area-resized and thresholded at one
half, and metrics are computed at the learner's size. Loss: pixel-wise cross-entropy over the two
classes plus the soft Dice loss of the tumour class's softmax (differentiable, unlike a thresholded
Dice), summed over the batch. Metrics: per-slice Dice and IoU of the arg-max prediction, averaged
over slices (an empty prediction on an empty mask scores 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from albench import tasks
from albench.prepared import PreparedDataset
from albench.tasks.metrics import segmentation_metrics, slice_overlaps
from albench.tasks.models import UNet
from albench.tasks.trainer import PoolTask

OVERLAYS = 4


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 − soft Dice`` of the foreground class's softmax against a binary ``(N, H, W)`` target."""
    p = logits.softmax(dim=1)[:, 1]
    t = target.to(p.dtype)
    inter = (p * t).sum()
    return 1 - (2 * inter + eps) / (p.sum() + t.sum() + eps)


def whole_tumour(mask: np.ndarray, size: int | None, device: torch.device, chunk: int = 256) -> torch.Tensor:
    """``(N, H, W)`` uint8 whole-tumour mask (nonzero labels) on ``device``, resized to ``size``."""
    parts = []
    for start in range(0, len(mask), chunk):
        block = torch.from_numpy(np.asarray(mask[start : start + chunk]) != 0).to(device)
        if size is not None and tuple(block.shape[-2:]) != (size, size):
            area = F.interpolate(block[:, None].float(), size=(size, size), mode="area")
            block = area[:, 0] >= 0.5
        parts.append(block.to(torch.uint8))
    return torch.cat(parts)


class SegmentationTask(PoolTask):
    kind = "segmentation"
    metrics = ("dice", "iou")

    def _check_data(self, data: PreparedDataset) -> None:
        if not data.has("mask"):
            raise self.missing("mask", "the whole-tumour target is read from the tumour mask")

    def _targets(self, split: str) -> torch.Tensor:
        size = int(self.params["image_size"]) or None
        return whole_tumour(self.data.split(split).arrays["mask"], size, self.device)

    def build_model(self) -> nn.Module:
        return UNet(in_channels=1, classes=2, width=int(self.params["width"]))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        return F.cross_entropy(logits, target) + soft_dice_loss(logits, target)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def _predict_masks(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty((len(x), *x.shape[-2:]), dtype=torch.uint8, device=self.device)
        for where, logits in self.outputs(model, x):
            out[where] = logits.argmax(dim=1).to(torch.uint8)
        return out

    def score(self, model: nn.Module, split: str) -> dict[str, float]:
        pred = self._predict_masks(model, self.x[split])
        dice, iou = slice_overlaps(pred, self.y[split])
        return segmentation_metrics(dice.cpu().numpy(), iou.cpu().numpy())

    def overlay_indices(self) -> np.ndarray:
        """The ``OVERLAYS`` test slices with the largest tumour (ties: the earlier slice), in that order."""
        area = self.y["test"].reshape(len(self.y["test"]), -1).sum(1, dtype=torch.int64).cpu().numpy()
        return np.argsort(-area, kind="stable")[:OVERLAYS]

    def fit_arrays(self, model: nn.Module) -> dict[str, np.ndarray]:
        idx = self.overlay_indices()
        sel = torch.as_tensor(idx, device=self.device)
        image = self.x["test"][sel]
        return {
            "overlay_names": np.asarray(self.data.split("test").names[idx]).astype(str),
            "overlay_image": image[:, 0].float().cpu().numpy().astype(np.float32),
            "overlay_target": self.y["test"][sel].cpu().numpy().astype(np.uint8),
            "overlay_pred": self._predict_masks(model, image).cpu().numpy().astype(np.uint8),
        }

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "weights": "scratch (the U-Net has no pretrained weights)",
            "width": int(self.params["width"]),
            "target": "whole tumour (mask labels 1, 2, 4)",
            "input_norm": "as prepared (z-scored with training-set statistics)",
        }


_SEG_PARAMS = ("epochs", "batch_size", "lr", "optimizer", "width", "image_size", "augment", "eval_batch_size")


def _seg_params(**kw: Any) -> dict[str, Any]:
    assert set(kw) == set(_SEG_PARAMS), set(kw) ^ set(_SEG_PARAMS)
    return kw


_PAPER_SEG = _seg_params(epochs=30, batch_size=32, lr=1e-5, optimizer="rmsprop", width=64, image_size=0, augment=True, eval_batch_size=64)


@tasks.register("brats-wt")
class BratsWholeTumour(SegmentationTask):
    """Whole-tumour segmentation of BraTS2018 T1ce slices with a U-Net (Dice)."""

    registry_name = "brats-wt"
    dataset = "brats"
    dataset_params: dict[str, Any] = {}
    default_preset = "paper"
    presets = {
        "paper": {"protocol": {"initial": 200, "budget": 100, "rounds": 6}, "params": dict(_PAPER_SEG)},
        "quick": {
            "protocol": {"initial": 200, "budget": 100, "rounds": 6},
            "params": _seg_params(epochs=10, batch_size=32, lr=1e-3, optimizer="adam", width=16, image_size=128, augment=True, eval_batch_size=64),
        },
        "smoke": {
            "protocol": {"initial": 8, "budget": 8, "rounds": 1},
            "params": _seg_params(epochs=2, batch_size=8, lr=1e-3, optimizer="adam", width=4, image_size=32, augment=True, eval_batch_size=64),
        },
    }


@tasks.register("phantom-wt")
class PhantomWholeTumour(SegmentationTask):
    """Whole-tumour segmentation of the brain phantom with a small U-Net (Dice)."""

    registry_name = "phantom-wt"
    dataset = "phantom"
    dataset_params = {"family": "brain"}
    default_preset = "quick"
    presets = {
        "paper": {"protocol": {"initial": 200, "budget": 100, "rounds": 6}, "params": dict(_PAPER_SEG)},
        "quick": {
            "protocol": {"initial": 20, "budget": 20, "rounds": 5},
            "params": _seg_params(epochs=10, batch_size=16, lr=5e-3, optimizer="adam", width=8, image_size=32, augment=True, eval_batch_size=256),
        },
        "smoke": {
            "protocol": {"initial": 8, "budget": 8, "rounds": 2},
            "params": _seg_params(epochs=4, batch_size=8, lr=3e-3, optimizer="adam", width=4, image_size=32, augment=True, eval_batch_size=256),
        },
    }
