"""Vectorised training augmentation on the device: flips, small rotations and crops in one warp.

Each item of a batch gets its own random horizontal flip, rotation (± ``max_degrees``) and crop (a
zoom of up to ``max_zoom`` with a random offset that keeps the crop inside the image), composed into
one affine matrix; a single ``affine_grid`` + ``grid_sample`` applies them to the whole batch, and the
same grid warps the segmentation target (nearest neighbour), so image and mask stay aligned. The
random numbers are drawn on the CPU from the round's generator and then moved to the device, so a
run is reproducible whatever the device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    n: int,
    generator: torch.Generator,
    device: torch.device,
    *,
    flip: float = 0.5,
    max_degrees: float = 10.0,
    max_zoom: float = 0.1,
) -> torch.Tensor:
    """``(n, 2, 3)`` matrices mapping output to input coordinates (``affine_grid``'s convention)."""
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    sign = torch.where(u[:, 0] < flip, -1.0, 1.0).to(torch.float64)
    angle = (2 * u[:, 1] - 1) * math.radians(max_degrees)
    scale = 1.0 / (1.0 + max_zoom * u[:, 2])  # < 1: the sampled window is a crop of the image
    room = 1.0 - scale  # how far the crop may move and stay inside the image
    tx, ty = (2 * u[:, 3] - 1) * room, (2 * u[:, 4] - 1) * room
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, tx], dim=1), torch.stack([sin * sign, cos, ty], dim=1)], dim=1
    )
    return theta.to(device=device, dtype=torch.float32)


def augment_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    target: torch.Tensor | None = None,
    max_degrees: float = 10.0,
    max_zoom: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp ``images`` ``(B, C, H, W)`` (and a ``(B, H, W)`` integer ``target``) by random affines."""
    theta = random_affine(len(images), generator, images.device, max_degrees=max_degrees, max_zoom=max_zoom)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # "border" repeats the edge (the background of a normalised slice) instead of inventing zeros.
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    warped = None
    if target is not None:
        t = target.unsqueeze(1).to(images.dtype)
        warped = F.grid_sample(t, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        warped = warped.squeeze(1).round().to(target.dtype)
    return out, warped
