"""Where the grid's cells run. The driver alone writes results; executors only differ in where the
runner loop executes.

``local`` runs the cells in this process, task-major, so that a task-agnostic strategy's
selections computed for the first task of a data set are reused by the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from albench.config import CellSpec
from albench.errors import ConfigError
from albench.runner import RunSink, check_resumable, run_cell
from albench.selection_cache import SelectionCache
from albench.store import RunStore

EXECUTORS = ("local", "ray")


@dataclass
class CellResult:
    spec: CellSpec
    records: list[dict[str, Any]] = field(default_factory=list)


def run_grid(
    cells: list[CellSpec],
    *,
    out: Path,
    cache_dir: Path | None,
    force: bool = False,
    executor: str = "local",
    jobs: int = 1,
    address: str | None = None,
    emit: Callable[[dict[str, Any]], None],
) -> list[CellResult]:
    """Run every cell (resuming recorded ones) and return their records."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected a positive integer")
    if executor == "ray" or jobs > 1:
        raise ConfigError("--jobs > 1 and --executor ray are not available yet; run with the defaults")
    # Check every cell before training anything, so a mismatched spec fails fast.
    prepared = [(spec, RunStore(spec.run_dir(out))) for spec in cells]
    done = [check_resumable(spec, store, force=force) for spec, store in prepared]
    selections = SelectionCache(Path(out) / "selections")
    results = []
    for (spec, store), records in zip(prepared, done):
        sink = RunSink(store, spec.metrics)
        final = run_cell(spec, sink=sink, done=records, cache_dir=cache_dir, selections=selections, emit=emit)
        results.append(CellResult(spec, final))
    return results
