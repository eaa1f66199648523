"""Whole-pool tensors on the device, made once per run and indexed by item id.

Strategies and tasks never touch items one by one: they ask for a modality of a split as one
normalised float tensor ``(N, 1, H, W)`` on the device, optionally centre-cropped and resized, and
take batches by indexing it. Repeating a single channel to three is left to the consumer (``expand``
costs no memory).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from albench.prepared import PreparedDataset


def normalised_tensor(array: np.ndarray, norm: dict[str, Any] | None, device: torch.device) -> torch.Tensor:
    """``array`` (N, H, W) as float32 ``(N, 1, H, W)`` on ``device``, with ``stored*scale+offset`` applied.

    The conversion runs in chunks so a memory-mapped pool never needs a float64 or full float copy
    on the host.
    """
    n = len(array)
    out = torch.empty((n, 1, *array.shape[1:]), dtype=torch.float32, device=device)
    scale = float(norm["scale"]) if norm else 1.0
    offset = float(norm["offset"]) if norm else 0.0
    chunk = max(1, (64 << 20) // max(1, int(np.prod(array.shape[1:])) * 4))
    for start in range(0, n, chunk):
        # The source may be a read-only memory map: copy into ``out`` first, then scale in place there.
        target = out[start : start + chunk, 0]
        target.copy_(torch.from_numpy(np.array(array[start : start + chunk], dtype=np.float32, copy=True)))
        target.mul_(scale).add_(offset)
    return out


def crop_resize(images: torch.Tensor, *, crop: float = 1.0, size: int | None = None) -> torch.Tensor:
    """Centre-crop a fraction ``crop`` of each side, then resize to ``size`` (bilinear, antialiased)."""
    if crop < 1.0:
        h, w = images.shape[-2:]
        ch, cw = round(h * crop), round(w * crop)
        top, left = (h - ch) // 2, (w - cw) // 2
        images = images[..., top : top + ch, left : left + cw]
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        out = []
        for start in range(0, len(images), 1024):
            out.append(F.interpolate(images[start : start + 1024], size=(size, size), mode="bilinear", antialias=True, align_corners=False))
        images = torch.cat(out)
    return images.contiguous()


class PoolViews:
    """Caches normalised device tensors of a prepared data set's splits."""

    def __init__(self, data: PreparedDataset, device: torch.device) -> None:
        self.data = data
        self.device = device
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def images(self, modality: str = "main", *, split: str = "train", size: int | None = None, crop: float = 1.0) -> torch.Tensor:
        key = (split, modality, size, crop)
        if key not in self._cache:
            array = self.data.split(split).arrays.get(modality)
            if array is None:
                from albench.errors import DataError

                raise DataError(f"data set {self.data.name!r} has no {modality!r} modality")
            norm = self.data.manifest.get("normalisation", {}).get(modality)
            base_key = (split, modality, None, 1.0)
            if base_key not in self._cache:
                self._cache[base_key] = normalised_tensor(array, norm, self.device)
            if key != base_key:
                self._cache[key] = crop_resize(self._cache[base_key], crop=crop, size=size)
        return self._cache[key]

    def release(self) -> None:
        self._cache.clear()
