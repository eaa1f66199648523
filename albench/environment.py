"""The environment manifest written into every spec.json: enough to tell why two runs differ."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np
import torch


def environment_manifest(device: torch.device, determinism: dict[str, Any] | None = None) -> dict[str, Any]:
    from albench import __version__

    info: dict[str, Any] = {
        "albench": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "determinism": determinism or {},
    }
    return info
