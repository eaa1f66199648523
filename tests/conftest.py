"""Shared helpers: run the real CLI in a subprocess with a private cache, read run folders."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import torch

torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "plugins"
TINY = str(PLUGINS / "tiny_task.py")
TIMING_COLUMNS = {"fit_seconds", "select_seconds", "peak_memory_mb"}


def albench_command() -> list[str]:
    exe = shutil.which("albench")
    return [exe] if exe else [sys.executable, "-m", "albench.cli"]


@pytest.fixture(scope="module")
def cpu_determinism():
    """One thread (the test machine has two cores) and deterministic algorithms, as the runner sets them."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared-data cache for the whole session (phantom preparation is deterministic)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cli(cache_dir: Path):
    """``cli(*args, check=True, env=None)`` runs ``albench`` and returns the CompletedProcess."""

    def run(*args: str, check: bool = True, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "ALBENCH_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.run([*albench_command(), *args], capture_output=True, text=True, env=full_env,
                              cwd=cwd, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"albench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def read_rounds(path: Path, *, drop_timing: bool = True) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if drop_timing:
        rows = [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]
    return rows


def run_files(out: Path) -> dict[str, object]:
    """Every run's comparable content: rounds.csv without timings, selected.jsonl verbatim."""
    found: dict[str, object] = {}
    for rounds in sorted(Path(out).glob("runs/*/*/seed-*/rounds.csv")):
        rel = rounds.parent.relative_to(out)
        found[f"{rel}/rounds.csv"] = read_rounds(rounds)
        found[f"{rel}/selected.jsonl"] = (rounds.parent / "selected.jsonl").read_text()
    return found


def nothing_prepared(cache: Path, dataset: str) -> bool:
    """True when a failed prepare left nothing under ``<cache>/<dataset>``."""
    folder = Path(cache) / dataset
    return not folder.exists() or not any(folder.iterdir())


def assert_prepare_refused(recipe, params, root: Path, cache: Path, fragments: list[str], dataset: str) -> None:
    """A bad raw data set gives one DataError line containing ``fragments`` and writes nothing."""
    from albench.errors import DataError

    with pytest.raises(DataError) as info:
        recipe.prepare(cache=cache, params=params, root=root, jobs=1)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert nothing_prepared(cache, dataset)
