"""The three registries. Plugins reach them as ``albench.strategies`` / ``albench.tasks`` /
``albench.datasets``: those packages (which also hold the built-ins) re-export ``register``, ``get``
and friends from here, so the decorator a plugin uses is the one the core looks names up in.
"""

from __future__ import annotations

from albench.registry import Registry

strategies: Registry = Registry("strategy", "albench.strategies")
tasks: Registry = Registry("task", "albench.tasks")
datasets: Registry = Registry("dataset", "albench.datasets")


def all_registries() -> list[Registry]:
    return [datasets, tasks, strategies]
