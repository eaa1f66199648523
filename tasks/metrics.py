"""Evaluation metrics of the three task kinds.

Segmentation: Dice and IoU per slice, averaged over slices; a slice whose mask and prediction are
both empty scores 1 (the prediction is perfect), one with only one of them empty scores 0.
Multi-label: macro average precision (the primary ``map``), per-class AP and macro AUROC (scikit-learn);
a class that has no positive (or no negative) in the evaluated set has no AP (AUROC) and is left out
of the macro average, which is then over the classes that have one.
Multi-class: accuracy, balanced accuracy and macro F1 (scikit-learn).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    roc_auc_score,
)


# -- segmentation --------------------------------------------------------------------------------
def slice_overlaps(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice Dice and IoU of binary masks ``(N, H, W)`` (any dtype; nonzero = foreground)."""
    p = pred.reshape(len(pred), -1) != 0
    t = target.reshape(len(target), -1) != 0
    inter = (p & t).sum(1).double()
    ps, ts = p.sum(1).double(), t.sum(1).double()
    union = ps + ts - inter
    empty = (ps + ts) == 0
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (ps + ts).clamp_min(1))
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    return dice, iou


def segmentation_metrics(dice: np.ndarray, iou: np.ndarray) -> dict[str, float]:
    """The slice averages, from per-slice values."""
    return {"dice": float(np.mean(dice)), "iou": float(np.mean(iou))}


# -- multi-label ------------------------------------------------------------------------------------
def multilabel_metrics(y_true: np.ndarray, scores: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """``map`` (macro AP), ``ap_<name>`` per class, and ``auroc`` (macro) for ``(N, C)`` arrays."""
    y_true = np.asarray(y_true).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    aps, aucs = [], []
    out: dict[str, float] = {}
    for c, name in enumerate(names):
        y, s = y_true[:, c], scores[:, c]
        has_pos, has_neg = bool(y.any()), bool((y == 0).any())
        ap = float(average_precision_score(y, s)) if has_pos else float("nan")
        auc = float(roc_auc_score(y, s)) if has_pos and has_neg else float("nan")
        out[f"ap_{name}"] = ap
        if has_pos:
            aps.append(ap)
        if has_pos and has_neg:
            aucs.append(auc)
    out = {"map": float(np.mean(aps)) if aps else float("nan"), **out}
    out["auroc"] = float(np.mean(aucs)) if aucs else float("nan")
    return out


# -- multi-class ------------------------------------------------------------------------------------
def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``accuracy``, ``balanced_accuracy`` and ``macro_f1`` of the arg-max prediction (macro F1 over
    the classes present in the truth or the prediction, as scikit-learn does)."""
    y_true = np.asarray(y_true).astype(np.int64)
    pred = np.asarray(probs).argmax(axis=1)
    with warnings.catch_warnings():  # a class absent from y_true (tiny smoke sets) is not an error here
        warnings.simplefilter("ignore")
        balanced = balanced_accuracy_score(y_true, pred)
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "balanced_accuracy": float(balanced),
        "macro_f1": float(f1_score(y_true, pred, average="macro", zero_division=0)),
    }
