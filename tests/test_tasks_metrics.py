"""The tasks' metrics, losses and augmentation on fixed arrays (no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    roc_auc_score,
)

from albench.tasks.augment import augment_batch, random_affine
from albench.tasks.metrics import multiclass_metrics, multilabel_metrics, slice_overlaps
from albench.tasks.models import IMAGENET_MEAN, IMAGENET_STD, InputAdapter, ResNet18, UNet, imagenet_affine
from albench.tasks.segmentation import soft_dice_loss, whole_tumour
from albench.tasks.trainer import batches


# -- Dice / IoU ------------------------------------------------------------------------------------
def test_dice_and_iou_hand_worked_example() -> None:
    """Four 2x3 slices worked out by hand, including both empty cases."""
    target = torch.tensor(
        [
            [[1, 1, 0], [0, 0, 0]],  # slice 0: |T| = 2
            [[0, 0, 0], [0, 0, 0]],  # slice 1: empty mask
            [[0, 0, 0], [0, 0, 0]],  # slice 2: empty mask
            [[1, 1, 1], [1, 0, 0]],  # slice 3: |T| = 4
        ],
        dtype=torch.uint8,
    )
    pred = torch.tensor(
        [
            [[1, 0, 0], [1, 0, 0]],  # |P| = 2, |P∩T| = 1 -> Dice 2/4 = .5, IoU 1/3
            [[0, 0, 0], [0, 0, 0]],  # empty on empty -> Dice 1, IoU 1
            [[0, 1, 0], [0, 0, 0]],  # a false positive on an empty mask -> 0, 0
            [[1, 1, 1], [1, 0, 0]],  # perfect -> 1, 1
        ],
        dtype=torch.uint8,
    )
    dice, iou = slice_overlaps(pred, target)
    assert dice.tolist() == pytest.approx([0.5, 1.0, 0.0, 1.0])
    assert iou.tolist() == pytest.approx([1 / 3, 1.0, 0.0, 1.0])
    assert float(dice.mean()) == pytest.approx(2.5 / 4)
    assert float(iou.mean()) == pytest.approx((1 / 3 + 2) / 4)
    # An empty prediction on a non-empty mask is 0, not undefined.
    d, i = slice_overlaps(torch.zeros(1, 2, 3), target[:1])
    assert d.tolist() == [0.0] and i.tolist() == [0.0]


def test_dice_and_iou_agree_with_sklearn_per_slice() -> None:
    rng = np.random.default_rng(0)
    target = rng.random((12, 8, 8)) < 0.3
    pred = rng.random((12, 8, 8)) < 0.4
    target[3] = False
    pred[3] = False  # empty/empty
    target[5] = False  # false positives only
    dice, iou = slice_overlaps(torch.from_numpy(pred), torch.from_numpy(target))
    for k in range(len(target)):
        t, p = target[k].ravel(), pred[k].ravel()
        assert dice[k].item() == pytest.approx(f1_score(t, p, zero_division=1.0))
        assert iou[k].item() == pytest.approx(jaccard_score(t, p, zero_division=1.0))


# -- multi-label -----------------------------------------------------------------------------------
def test_multilabel_metrics_agree_with_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random((40, 3)) < [0.6, 0.9, 0.3]).astype(int)
    scores = np.clip(y * 0.3 + rng.random((40, 3)), 0, 1)
    out = multilabel_metrics(y, scores, ("et", "ed", "ncr"))
    assert out["map"] == pytest.approx(average_precision_score(y, scores, average="macro"))
    for c, name in enumerate(("et", "ed", "ncr")):
        assert out[f"ap_{name}"] == pytest.approx(average_precision_score(y[:, c], scores[:, c]))
    assert out["auroc"] == pytest.approx(roc_auc_score(y, scores, average="macro"))
    assert list(out) == ["map", "ap_et", "ap_ed", "ap_ncr", "auroc"]


def test_multilabel_class_without_negatives_or_positives() -> None:
    """ED present everywhere: AP is 1 (defined), AUROC undefined and left out of the macro mean;
    NCR absent everywhere: AP undefined (nan) and left out of mAP."""
    rng = np.random.default_rng(2)
    y = np.stack([rng.random(30) < 0.5, np.ones(30, bool), np.zeros(30, bool)], axis=1).astype(int)
    scores = rng.random((30, 3))
    out = multilabel_metrics(y, scores, ("et", "ed", "ncr"))
    assert out["ap_ed"] == pytest.approx(1.0)
    assert math.isnan(out["ap_ncr"])
    assert out["map"] == pytest.approx((average_precision_score(y[:, 0], scores[:, 0]) + 1.0) / 2)
    assert out["auroc"] == pytest.approx(roc_auc_score(y[:, 0], scores[:, 0]))


# -- multi-class -----------------------------------------------------------------------------------
def test_multiclass_metrics_agree_with_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 50)
    probs = rng.dirichlet([1, 1, 1], 50)
    probs[np.arange(50) % 2 == 0, :] = np.eye(3)[y[np.arange(50) % 2 == 0]]  # half right for sure
    pred = probs.argmax(1)
    out = multiclass_metrics(y, probs)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert list(out) == ["accuracy", "balanced_accuracy", "macro_f1"]


# -- losses, targets, batches --------------------------------------------------------------------------
def test_soft_dice_loss_is_differentiable_and_exact_at_the_extremes() -> None:
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[:, 1:3, 1:3] = 1
    logits = torch.zeros(2, 2, 4, 4, requires_grad=True)
    loss = soft_dice_loss(logits, target)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # unlike a thresholded Dice
    perfect = torch.stack([-(target.float() * 40 - 20), target.float() * 40 - 20], dim=1)
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # Soft Dice with p = 1/2 everywhere: 1 - (2·½·8 + 1) / (½·32 + 8 + 1) = 1 - 9/25
    assert loss.item() == pytest.approx(1 - 9 / 25)


def test_whole_tumour_target_and_area_resize() -> None:
    mask = np.zeros((2, 8, 8), np.uint8)
    mask[0, :4, :4] = 2  # oedema
    mask[0, 1:3, 1:3] = 4  # enhancing inside it
    mask[1, 0, 0] = 1  # one necrotic pixel: under half of its 4x4 block
    full = whole_tumour(mask, None, torch.device("cpu"))
    assert full.dtype == torch.uint8 and full.sum().item() == 17
    small = whole_tumour(mask, 2, torch.device("cpu"))
    assert small.tolist() == [[[1, 0], [0, 0]], [[0, 0], [0, 0]]]


def test_batches_cover_the_ids_once_and_are_near_equal() -> None:
    ids = torch.arange(100, 133)
    g = torch.Generator().manual_seed(0)
    parts = batches(ids, 16, g)
    assert [len(p) for p in parts] == [11, 11, 11]  # never a batch of one for batch norm
    assert sorted(torch.cat(parts).tolist()) == ids.tolist()


# -- augmentation ------------------------------------------------------------------------------------
def test_augmentation_warps_image_and_mask_alike() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.zeros(16, 1, 32, 32)
    img[:, :, 8:20, 4:14] = 1.0
    mask = (img[:, 0] > 0.5).to(torch.uint8)
    out, warped = augment_batch(img, g, target=mask)
    assert out.shape == img.shape and warped.shape == mask.shape and warped.dtype == torch.uint8
    agree = ((out[:, 0] > 0.5).to(torch.uint8) == warped).float().mean().item()
    assert agree > 0.97
    assert not torch.equal(out, img)  # something happened
    # Same generator state, same warp (reproducible); flips happen for about half the items.
    theta_a = random_affine(400, torch.Generator().manual_seed(5), torch.device("cpu"))
    theta_b = random_affine(400, torch.Generator().manual_seed(5), torch.device("cpu"))
    assert torch.equal(theta_a, theta_b)
    det = torch.linalg.det(theta_a[:, :, :2])
    assert 0.35 < (det < 0).float().mean().item() < 0.65
    assert det.abs().max().item() <= 1.0 + 1e-6  # crops zoom in, never out


# -- models ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 40, 48])
def test_unet_shapes_for_sizes_not_divisible_by_16(size: int) -> None:
    model = UNet(1, 2, width=2).eval()
    x = torch.randn(2, 1, size, size)
    assert model(x).shape == (2, 2, size, size)
    assert model.embed(x).shape == (2, 32)


@pytest.mark.parametrize("stem", ["imagenet", "small", "stride2"])
def test_resnet18_has_torchvision_names_and_shapes(stem: str) -> None:
    from torchvision.models import resnet18

    ours = ResNet18(3, width=64, stem=stem)
    theirs = resnet18(num_classes=3)
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    if stem != "imagenet":
        mine.pop("conv1.weight")
        ref.pop("conv1.weight")
    assert mine == ref
    x = torch.randn(2, 1, 64, 64)
    assert ours.eval()(x).shape == (2, 3)
    assert ResNet18(3, width=8, stem=stem).embed(x).shape == (2, 64)


def test_imagenet_affine_equals_imagenet_normalisation_of_unit_intensities() -> None:
    stored = torch.rand(4, 1, 8, 8)  # [0, 1] intensities as prepared (BraTS: clip-and-scale)
    norm = {"scale": 1 / 0.21, "offset": -0.33 / 0.21}  # the data set's z-score
    z = stored * norm["scale"] + norm["offset"]
    mean, std = imagenet_affine(norm, 1.0)
    got = InputAdapter(3, mean, std)(z)
    want = (stored.expand(-1, 3, -1, -1) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(got, want, atol=1e-5)
