"""Reading recorded runs from ``<out>/runs/<task>/<strategy>/seed-<k>/``.

The runner's files are the only input: ``spec.json`` says what a run was meant to do (its protocol,
its primary metric), ``rounds.csv`` what it actually finished. Reading is forgiving in one direction
only: a folder that cannot be interpreted (no ``spec.json``, unreadable JSON) is skipped *with a
warning*, and a run that finished fewer rounds than its protocol asks for is kept but marked
incomplete, so the tables can say so instead of silently averaging a shorter curve.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The upper-bound strategy: trained on the whole pool, one row, never ranked against AL strategies.
FULL = "full"

_SEED_DIR = re.compile(r"^seed-(\d+)$")


@dataclass
class Run:
    """One (task, strategy, seed) run as recorded on disk."""

    task: str
    strategy: str
    seed: int
    path: Path
    spec: dict[str, Any]
    rounds: pd.DataFrame
    expected_rows: int
    problem: str = ""  # why the run is incomplete, empty when complete

    @property
    def complete(self) -> bool:
        """True when every round the protocol asks for is recorded (and nothing is malformed)."""
        return not self.problem

    @property
    def primary_metric(self) -> str:
        return str(self.spec.get("primary_metric", ""))

    @property
    def task_kind(self) -> str:
        return str(self.spec.get("task_kind", ""))

    @property
    def n_rows(self) -> int:
        return len(self.rounds)

    @property
    def is_full(self) -> bool:
        return self.strategy == FULL

    def diagnostics(self, round_: int) -> Path | None:
        """Path of ``diagnostics/round-<r>.npz`` when the strategy recorded one."""
        path = self.path / "diagnostics" / f"round-{round_}.npz"
        return path if path.is_file() else None

    def artifacts(self, round_: int) -> Path | None:
        """Path of ``artifacts/round-<r>.npz`` (segmentation overlays) when recorded."""
        path = self.path / "artifacts" / f"round-{round_}.npz"
        return path if path.is_file() else None

    def diagnostic_rounds(self) -> list[int]:
        return _rounds_in(self.path / "diagnostics")

    def artifact_rounds(self) -> list[int]:
        return _rounds_in(self.path / "artifacts")


@dataclass
class Inventory:
    """Every run found, grouped by task, plus the warnings about folders that were skipped."""

    runs: list[Run] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def tasks(self) -> list[str]:
        return sorted({run.task for run in self.runs})

    def for_task(self, task: str) -> list[Run]:
        return [run for run in self.runs if run.task == task]


def _rounds_in(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("round-*.npz"):
        match = re.fullmatch(r"round-(\d+)\.npz", path.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def expected_rows(strategy: str, spec: dict[str, Any]) -> int | None:
    """Rows a complete ``rounds.csv`` has: ``rounds + 1`` (round 0 included), or 1 for ``full``."""
    if strategy == FULL:
        return 1
    protocol = spec.get("protocol")
    if not isinstance(protocol, dict) or "rounds" not in protocol:
        return None
    try:
        return int(protocol["rounds"]) + 1
    except (TypeError, ValueError):
        return None


def read_run(path: Path, task: str, strategy: str, seed: int) -> tuple[Run | None, str | None]:
    """Read one seed folder: ``(run, None)``, or ``(None, warning)`` when it must be skipped."""
    spec_path = path / "spec.json"
    if not spec_path.is_file():
        return None, f"skipped {path}: no spec.json (not a finished run folder)"
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"skipped {path}: spec.json is not valid JSON ({exc})"
    if not isinstance(spec, dict):
        return None, f"skipped {path}: spec.json is not a JSON object"
    primary = spec.get("primary_metric")
    if not isinstance(primary, str) or not primary:
        return None, f"skipped {path}: spec.json has no primary_metric"

    expected = expected_rows(strategy, spec)
    problem = ""
    rounds_path = path / "rounds.csv"
    rounds = pd.DataFrame(columns=["round", "n_labelled", primary])
    if not rounds_path.is_file():
        problem = "no rounds.csv (crashed before the first round finished)"
    else:
        try:
            rounds = pd.read_csv(rounds_path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            problem = f"rounds.csv unreadable ({type(exc).__name__})"
            rounds = pd.DataFrame(columns=["round", "n_labelled", primary])
    if not problem:
        missing = [col for col in ("round", "n_labelled", primary) if col not in rounds.columns]
        if missing:
            problem = f"rounds.csv lacks column(s) {', '.join(missing)}"
            rounds = pd.DataFrame(columns=["round", "n_labelled", primary])
    if not problem:
        rounds = rounds.sort_values("round").reset_index(drop=True)
        if rounds["round"].duplicated().any():
            problem = "rounds.csv repeats a round"
        elif not np.isfinite(pd.to_numeric(rounds[primary], errors="coerce")).all():
            problem = f"rounds.csv has a non-numeric or missing {primary}"
        elif expected is None:
            problem = "spec.json has no protocol.rounds, so completeness cannot be checked"
        elif len(rounds) < expected:
            problem = f"incomplete: {len(rounds)} of {expected} rounds recorded"
        elif len(rounds) > expected:
            problem = f"rounds.csv has {len(rounds)} rows, the protocol asks for {expected}"
        elif strategy != FULL and list(rounds["round"]) != list(range(expected)):
            problem = "rounds.csv does not hold rounds 0..{} in order".format(expected - 1)
    return (
        Run(
            task=task,
            strategy=strategy,
            seed=seed,
            path=path,
            spec=spec,
            rounds=rounds,
            expected_rows=expected or 0,
            problem=problem,
        ),
        None,
    )


def load_runs(out: Path) -> Inventory:
    """Walk ``<out>/runs`` and read every ``<task>/<strategy>/seed-<k>`` folder.

    Folder names are the truth for task, strategy and seed (they are what the runner keys records
    by); a disagreeing ``spec.json`` is reported as a warning, not silently trusted either way.
    """
    inventory = Inventory()
    root = Path(out) / "runs"
    if not root.is_dir():
        return inventory
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for strategy_dir in sorted(p for p in task_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for seed_dir in sorted(p for p in strategy_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                match = _SEED_DIR.match(seed_dir.name)
                if not match:
                    inventory.warnings.append(f"skipped {seed_dir}: not a seed-<k> folder")
                    continue
                seed = int(match.group(1))
                run, warning = read_run(seed_dir, task_dir.name, strategy_dir.name, seed)
                if warning:
                    inventory.warnings.append(warning)
                if run is None:
                    continue
                for key, expected in (("task", task_dir.name), ("strategy", strategy_dir.name), ("seed", seed)):
                    if key in run.spec and str(run.spec[key]) != str(expected):
                        inventory.warnings.append(
                            f"{seed_dir}: spec.json says {key}={run.spec[key]!r}, the folder says {expected!r}; "
                            "using the folder"
                        )
                inventory.runs.append(run)
    inventory.runs.sort(key=lambda r: (r.task, r.strategy, r.seed))
    return inventory
