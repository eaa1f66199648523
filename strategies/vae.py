"""The networks of VAAL-like samplers: a beta-VAE whose depth follows the input size, and the
discriminator on its latent means.

Paper shapes (M-VAAL, Khanal et al. 2023, after Sinha et al. 2019), at 128 px and ``width = 64``:

* encoder: five blocks ``Conv2d(k4, s2, p1, no bias) -> BatchNorm2d -> ReLU``, channels
  3 -> 64 -> 128 -> 256 -> 512 -> 1024 (128 px -> 4 px), flatten, linear heads for mu and log var;
* decoder: ``Linear(z -> 1024*4*4)``, five blocks ``ConvTranspose2d(k4, s2, p1, no bias) -> BN -> ReLU``,
  1024 -> 512 -> ... -> 32, then a 1x1 ``ConvTranspose2d`` to the output channels, linear output;
* discriminator: ``Linear(z,128) -> BN1d -> ReLU -> 256 -> 512 -> 256 -> 128 -> Linear(128,1) -> sigmoid``.

Other input sizes get ``floor(log2(size / 4))`` stride-2 blocks, so the code map is 4-7 px across
(32 px -> 3 blocks, 4 px; 48 px -> 3 blocks, 6 px); channel ``i`` is ``width * 2**i``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from albench.errors import ConfigError

#: Hidden widths of the paper's discriminator (Linear 64->128->256->512->256->128->1).
PAPER_DISCRIMINATOR = (128, 256, 512, 256, 128)


def n_blocks(image_size: int) -> int:
    """Number of stride-2 blocks for a square input of ``image_size`` pixels (4 px code map at 2**k*4)."""
    if not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"image_size={image_size!r}: expected an integer of at least 8 pixels")
    blocks = int(math.floor(math.log2(image_size / 4)))
    if image_size % (2**blocks):
        raise ConfigError(
            f"image_size={image_size}: must be divisible by 2**{blocks} = {2**blocks} "
            f"(e.g. 16, 32, 48, 64, 128)"
        )
    return blocks


def _kaiming(module: nn.Module) -> None:
    """The authors' initialisation: Kaiming-normal convs / linears in the bodies, zero biases, BN = 1/0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """``x`` (B, C, S, S) -> (mu, logvar), each (B, latent_dim)."""

    def __init__(self, image_size: int = 128, latent_dim: int = 64, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        blocks = n_blocks(image_size)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(blocks):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.code_channels = c_in
        self.code_size = image_size // 2**blocks
        features = c_in * self.code_size**2
        _kaiming(self.body)
        # The heads keep PyTorch's default initialisation, as in the published code.
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_logvar = nn.Linear(features, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    """``z`` (B, latent_dim) -> image (B, out_channels, S, S), linear output."""

    def __init__(self, image_size: int = 128, latent_dim: int = 64, width: int = 64, out_channels: int = 3) -> None:
        super().__init__()
        blocks = n_blocks(image_size)
        c = width * 2 ** (blocks - 1)
        self.code_channels = c
        self.code_size = image_size // 2**blocks
        layers: list[nn.Module] = [nn.Linear(latent_dim, c * self.code_size**2), nn.Unflatten(1, (c, self.code_size, self.code_size))]
        for _ in range(blocks):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True)]
            c //= 2
        layers.append(nn.ConvTranspose2d(c, out_channels, 1))
        self.body = nn.Sequential(*layers)
        _kaiming(self.body)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class VAE(nn.Module):
    """One encoder, a decoder for the main modality and, for M-VAAL, a second decoder for the auxiliary one.

    The auxiliary decoder is attached after construction (:meth:`add_aux_decoder`) so that a caller
    can build it last: then VAAL and M-VAAL built from one seed share their encoder, main decoder and
    discriminator initialisation exactly.
    """

    def __init__(self, image_size: int = 128, latent_dim: int = 64, width: int = 64, channels: int = 3) -> None:
        super().__init__()
        if width < 2 or width % 2:
            raise ConfigError(f"width={width!r}: expected an even integer >= 2")
        if latent_dim < 1:
            raise ConfigError(f"latent_dim={latent_dim!r}: expected a positive integer")
        self.image_size, self.latent_dim, self.width, self.channels = image_size, latent_dim, width, channels
        self.encoder = Encoder(image_size, latent_dim, width, channels)
        self.decoder = Decoder(image_size, latent_dim, width, channels)
        self.aux_decoder: Decoder | None = None

    def add_aux_decoder(self) -> None:
        self.aux_decoder = Decoder(self.image_size, self.latent_dim, self.width, self.channels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(recon, aux_recon or None, z, mu, logvar)``; ``noise`` is the reparameterisation's N(0, 1) draw."""
        mu, logvar = self.encoder(x)
        if noise is None:
            noise = torch.randn_like(mu)
        z = mu + noise.to(mu.dtype) * torch.exp(0.5 * logvar)
        recon = self.decoder(z)
        aux = self.aux_decoder(z) if self.aux_decoder is not None else None
        return recon, aux, z, mu, logvar


class Discriminator(nn.Module):
    """``mu`` (B, latent_dim) -> score in (0, 1) (B,): high = "looks labelled".

    ``hidden`` and ``batch_norm`` select the paper's network (default) or the original VAAL's
    (``hidden=(512, 512)``, ``batch_norm=False``).
    """

    def __init__(self, latent_dim: int = 64, hidden: tuple[int, ...] = PAPER_DISCRIMINATOR, batch_norm: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = latent_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            d = h
        layers.append(nn.Linear(d, 1))
        self.body = nn.Sequential(*layers)
        _kaiming(self.body)

    def logits(self, mu: torch.Tensor) -> torch.Tensor:
        return self.body(mu).squeeze(1)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(mu))


# -- FLOP counting (for the benchmark and the notes) ----------------------------------------------
def conv_flops(module: nn.Module, image_size: int, batch: int = 1) -> int:
    """Forward multiply-add FLOPs (2 per MAC) of the convolutions of an :class:`Encoder` or
    :class:`Decoder` on ``batch`` items of ``image_size`` px."""
    total = 0
    if isinstance(module, Encoder):
        size = image_size
        for m in module.body:
            if isinstance(m, nn.Conv2d):
                size //= 2
                total += 2 * m.in_channels * m.out_channels * 16 * size * size
    elif isinstance(module, Decoder):
        size = module.code_size
        for m in module.body:
            if isinstance(m, nn.ConvTranspose2d):
                k = m.kernel_size[0] * m.kernel_size[1]
                total += 2 * m.in_channels * m.out_channels * k * size * size
                size *= m.stride[0]
    else:
        raise TypeError(f"conv_flops: expected an Encoder or Decoder, got {type(module).__name__}")
    return total * batch
