"""The task learners' networks: a U-Net and a width-configurable ResNet-18.

Both keep the paper's architecture at their default width (U-Net 64→1024 channels, ResNet-18 64→512)
and shrink with one ``width`` knob for the CPU presets. The ResNet-18's parameter names are
torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, …, ``fc``), so torchvision's ImageNet checkpoint
loads into it unchanged when the width is 64.

Inputs are one-channel ``(N, 1, H, W)`` tensors straight from the pool; :class:`InputAdapter` repeats
the channel to three (``expand``: no copy) and applies the task's fixed input normalisation, so the
pool stays one channel on the device and ``predict``/``embed`` see exactly what training saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from albench.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision's ResNet-18 ImageNet checkpoint name in the hub cache (``IMAGENET1K_V1``).
RESNET18_CHECKPOINT = "resnet18-f37072fd.pth"


class InputAdapter(nn.Module):
    """Repeat a single channel to ``channels`` and apply a fixed per-channel affine normalisation."""

    def __init__(self, channels: int = 3, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.normalise = mean is not None
        if self.normalise:
            assert std is not None and len(mean) == channels == len(std)
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        if self.normalise:
            x = (x - self.mean) / self.std
        return x


# --------------------------------------------------------------------------------------------
# U-Net
# --------------------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """(3×3 conv → BN → ReLU) × 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """2× transposed-conv upsampling, concatenation with the skip, double conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin // 2 + cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:  # odd sizes on the way down (e.g. 240 → 15 → 7): pad back to the skip's size
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Four down- and four up-sampling stages; channels ``width·(1, 2, 4, 8, 16)`` (paper: width 64)."""

    def __init__(self, in_channels: int = 1, classes: int = 2, width: int = 64) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"task.width={width}: expected a positive integer")
        c = [width * 2**i for i in range(5)]
        self.adapter = InputAdapter(in_channels)
        self.inc = DoubleConv(in_channels, c[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), DoubleConv(c[i], c[i + 1])) for i in range(4))
        self.ups = nn.ModuleList(Up(c[i + 1], c[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(c[0], classes, kernel_size=1)
        self.feature_dim = c[4]

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.inc(self.adapter(x))]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self._encode(x)
        y = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            y = up(y, skip)
        return self.head(y)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck's global average: ``(N, 16·width)``."""
        return self._encode(x)[-1].mean(dim=(2, 3))


# --------------------------------------------------------------------------------------------
# ResNet-18
# --------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 with torchvision's parameter names.

    ``stem="imagenet"``: 7×7 stride-2 conv and a max-pool (the original; last stage at ``size/32``).
    ``stem="small"``: a 3×3 stride-1 conv and no max-pool, for inputs of a few dozen pixels (as for
    CIFAR; last stage at ``size/8``). ``stem="stride2"``: a 3×3 stride-2 conv and no max-pool
    (``size/16``), for 48–127 px inputs: fine texture survives at a quarter of ``small``'s cost.
    """

    def __init__(
        self,
        outputs: int,
        *,
        width: int = 64,
        stem: str = "imagenet",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ConfigError(f"task.width={width}: expected a positive integer")
        if stem not in STEMS:
            raise ConfigError(f"task.stem={stem!r}: expected auto, {', '.join(STEMS)}")
        self.adapter = InputAdapter(3, mean, std)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(3, width, 3, stride=1 if stem == "small" else 2, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        chans = [width, width * 2, width * 4, width * 8]
        cin = width
        for i, cout in enumerate(chans):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans[-1], outputs)
        self.feature_dim = chans[-1]
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, 8·width)`` (after global average pooling)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.adapter(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))


STEMS = ("imagenet", "small", "stride2")


def resolve_stem(stem: str, image_size: int) -> str:
    """``auto`` by the learner's input size: ``small`` below 48 px, ``stride2`` below 128, else ``imagenet``."""
    if stem == "auto":
        return "small" if image_size < 48 else "stride2" if image_size < 128 else "imagenet"
    return stem


# --------------------------------------------------------------------------------------------
# Pretrained weights (local files only: albench never downloads)
# --------------------------------------------------------------------------------------------


def hub_checkpoint() -> Path:
    """Where torchvision would have cached ResNet-18's ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_CHECKPOINT


def find_imagenet_weights(requested: str, *, width: int, stem: str) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The ImageNet state dict to start from (or ``None``) and a sentence saying where it came from.

    ``requested`` is the ``weights`` parameter: ``""`` looks in torchvision's hub cache, ``"scratch"``
    never loads, anything else is a path that must exist and fit. The classifier (``fc``) is never
    loaded (the task's outputs differ), nor ``conv1`` with the small stem (its shape differs).
    """
    if requested == "scratch":
        return None, "scratch (task.weights=scratch)"
    explicit = requested != ""
    path = Path(requested).expanduser() if explicit else hub_checkpoint()
    if not path.is_file():
        if explicit:
            raise ConfigError(f"task.weights={requested}: no such file (expected a torchvision ResNet-18 state dict)")
        return None, f"scratch (no local ImageNet weights found at {path})"
    if width != 64:
        if explicit:
            raise ConfigError(f"task.weights={requested}: ImageNet ResNet-18 weights need task.width=64 (got {width})")
        return None, f"scratch (ImageNet weights at {path} need width 64, this preset uses {width})"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file is the user's to fix
        raise ConfigError(f"task.weights={path}: cannot be read as a state dict ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "layer1.0.conv1.weight" not in state:
        raise ConfigError(f"task.weights={path}: not a torchvision ResNet-18 state dict")
    skip = ("fc.",) + (("conv1.",) if stem != "imagenet" else ())
    state = {k: v for k, v in state.items() if not k.startswith(skip)}
    probe = ResNet18(1, width=64, stem=stem)
    expected = {k: v.shape for k, v in probe.state_dict().items()}
    bad = [k for k, v in state.items() if k not in expected or tuple(expected[k]) != tuple(v.shape)]
    missing = [k for k in expected if k not in state and not k.startswith(skip) and not k.endswith("num_batches_tracked")]
    if bad or missing:
        raise ConfigError(
            f"task.weights={path}: does not fit ResNet-18 ({len(bad)} unexpected or mis-shaped, {len(missing)} missing tensors)"
        )
    note = f"conv1 and fc re-initialised ({stem} stem)" if stem != "imagenet" else "fc re-initialised"
    return state, f"imagenet: {path} ({note})"


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def imagenet_affine(norm: dict[str, float] | None, stored_max: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` that turn a data set's normalised tensor into ImageNet-normalised input.

    The pool tensor is ``z = stored·scale + offset`` (the data set's own normalisation, ``norm``);
    ImageNet normalisation is defined on intensities in [0, 1], here ``stored / stored_max`` (1 for
    float slices already scaled to [0, 1], 255 for uint8 images). Folding both into one affine:
    ``((z − offset)/(scale·stored_max) − m_c)/s_c = (z − mean'_c)/std'_c`` with
    ``mean'_c = offset + m_c·scale·stored_max`` and ``std'_c = s_c·scale·stored_max``.
    """
    scale = float(norm["scale"]) if norm else 1.0
    offset = float(norm["offset"]) if norm else 0.0
    k = scale * stored_max
    return tuple(offset + m * k for m in IMAGENET_MEAN), tuple(s * k for s in IMAGENET_STD)


def build_resnet18(
    outputs: int, params: dict[str, Any], *, stem: str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> ResNet18:
    """A ResNet-18 for the task's params (``width``) with the resolved ``stem`` and input affine."""
    return ResNet18(outputs, width=int(params["width"]), stem=stem, mean=mean, std=std)
