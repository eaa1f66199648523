"""Every executor writes the same files: one small grid in-process, with ``--jobs 2``, and on a real
local Ray cluster (2 CPUs), compared file by file; workers that die are re-run from the last
recorded round; task-agnostic selections are still computed once per data set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, run_files

GRID = ["--plugin", TINY, "--task", "tiny-cls,tiny-cls-b", "--strategy", "random,full", "--seeds", "2",
        "--no-leaderboard"]

CRASHY = '''
"""Random sampling whose worker process dies once, at round 2, when kill_marker names a missing file."""
import os
import signal
from pathlib import Path

import torch

from albench import strategies


@strategies.register("crashy")
class Crashy:
    """Random, but SIGKILLs its own process once (for executor tests)."""

    def __init__(self, kill_marker: str = ""):
        self.kill_marker = kill_marker

    def select(self, ctx, budget):
        if self.kill_marker and ctx.round == 2 and not Path(self.kill_marker).exists():
            Path(self.kill_marker).write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
        order = torch.randperm(len(ctx.unlabelled), generator=ctx.generator)[:budget]
        return ctx.unlabelled.cpu()[order]
'''


def specs(out: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(Path(out).glob("runs/*/*/seed-*/spec.json")):
        spec = json.loads(path.read_text())
        spec.pop("environment")
        found[str(path.relative_to(out))] = spec
    return found


def reused_rounds(out: Path) -> dict[str, list[bool]]:
    return {str(d.relative_to(out)): [json.loads(p.read_text())["selection_reused"] for p in sorted((d / "records").iterdir())]
            for d in sorted(Path(out).glob("runs/*/random/seed-*"))}


def assert_same_results(a: Path, b: Path) -> None:
    assert run_files(a) == run_files(b)
    assert specs(a) == specs(b)
    assert sorted(p.relative_to(a) for p in a.glob("selections/**/*.json")) == \
        sorted(p.relative_to(b) for p in b.glob("selections/**/*.json"))
    assert not list(b.glob("runs/*/*/.*.claim"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir):
    """The grid run in-process (in this pytest process, torch with 2 threads)."""
    from albench.config import resolve_cells
    from albench.executors import run_grid
    from albench.registry import load_plugin_file

    load_plugin_file(TINY)
    out = tmp_path_factory.mktemp("inprocess")
    cells = resolve_cells(tasks=["tiny-cls", "tiny-cls-b"], strategies=["random", "full"], seeds=range(2))
    run_grid(cells, out=out, cache_dir=cache_dir, emit=lambda e: None)
    assert len(run_files(out)) == 16
    # The second task of the data set reused the first one's random selections (rounds 0-2).
    assert reused_rounds(out) == {f"runs/{t}/random/seed-{s}": [t == "tiny-cls-b"] * 3 + [False]
                                  for t in ("tiny-cls", "tiny-cls-b") for s in (0, 1)}
    return out


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "crashy.py"
    path.write_text(CRASHY)
    return path


@pytest.fixture(scope="module")
def crash_reference(tmp_path_factory, cache_dir, plugin_file):
    """The crashy grid in-process, never killing itself (no marker)."""
    from albench.config import resolve_cells
    from albench.executors import run_grid
    from albench.registry import load_plugin_file

    load_plugin_file(TINY)
    load_plugin_file(plugin_file)
    out = tmp_path_factory.mktemp("crash-reference")
    cells = resolve_cells(tasks=["tiny-cls"], strategies=["crashy", "random"], seeds=range(1))
    run_grid(cells, out=out, cache_dir=cache_dir, emit=lambda e: None)
    return out


def test_jobs_2_writes_what_in_process_writes(reference, tmp_path, cli):
    out = tmp_path / "jobs2"
    proc = cli("run", *GRID, "--out", str(out), "--jobs", "2")
    assert_same_results(reference, out)
    assert reused_rounds(out) == reused_rounds(reference)
    # Both workers ran at once, and their progress reached the driver's display.
    assert proc.stderr.count("reused the stored task-agnostic selection") == 6
    assert json.loads((out / "runs/tiny-cls/random/seed-0/spec.json").read_text())["environment"]["torch_threads"] == \
        max(1, len(os.sched_getaffinity(0)) // 2)


def test_a_pool_worker_that_dies_is_rerun_from_the_last_recorded_round(crash_reference, plugin_file, tmp_path, cli):
    out = tmp_path / "pool-crash"
    marker = tmp_path / "killed"
    proc = cli("run", "--plugin", TINY, "--plugin", str(plugin_file), "--task", "tiny-cls", "--strategy",
               "crashy,random", "--seeds", "1", "--no-leaderboard", "--out", str(out), "--jobs", "2",
               "--set", f"crashy.kill_marker={marker}")
    assert marker.exists()
    assert "worker lost" in proc.stderr and "re-running from round 2" in proc.stderr
    assert run_files(out) == run_files(crash_reference)


def test_missing_ray_is_a_clear_error(tmp_path, cache_dir, monkeypatch):
    from albench.errors import AlbenchError
    from albench.ray_executor import import_ray

    code = "import sys; sys.modules['ray'] = None; from albench.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "run", *GRID, "--out", str(tmp_path / "o"), "--executor", "ray"],
                          capture_output=True, text=True, env={**os.environ, "ALBENCH_CACHE": str(cache_dir)})
    assert proc.returncode == 1
    assert "error: the ray executor needs the optional extra: pip install 'albench" in proc.stderr
    assert not (tmp_path / "o" / "runs").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(AlbenchError, match=r"needs the optional extra: pip install 'albench\[ray\]'"):
        import_ray()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    saved = os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, logging_level="warning")
    yield ray
    ray.shutdown()
    if saved is not None:
        os.environ["RAY_ADDRESS"] = saved


def _ray_grid(out: Path, cache_dir: Path, tasks: list[str], strategies: list[str], seeds: int, overrides=()) -> list[dict]:
    from albench.config import resolve_cells
    from albench.executors import run_grid
    from albench.registry import load_plugin_file

    load_plugin_file(TINY)
    cells = resolve_cells(tasks=tasks, strategies=strategies, seeds=range(seeds), overrides=overrides)
    events: list[dict] = []
    results = run_grid(cells, out=out, cache_dir=cache_dir, executor="ray", emit=events.append)
    assert [len(r.records) for r in results] == [1 if c.reference else 4 for c in cells]
    return events


def test_ray_writes_what_in_process_writes(ray_cluster, reference, tmp_path, cache_dir):
    out = tmp_path / "ray"
    events = _ray_grid(out, cache_dir, ["tiny-cls", "tiny-cls-b"], ["random", "full"], 2)
    assert_same_results(reference, out)
    assert reused_rounds(out) == reused_rounds(reference)
    # Progress came back from the workers: every round of every cell, and the reuse notes.
    assert sum(e["event"] == "round" for e in events) == 2 * 2 * 4 + 2 * 2
    assert sum(e["event"] == "reused" for e in events) == 6
    # A second run finds everything recorded and trains nothing.
    again = _ray_grid(out, cache_dir, ["tiny-cls", "tiny-cls-b"], ["random", "full"], 2)
    assert {e["event"] for e in again} == {"skipped"}


def test_a_ray_worker_that_dies_is_rerun_from_the_last_recorded_round(ray_cluster, crash_reference, plugin_file,
                                                                     tmp_path, cache_dir):
    from albench.registry import load_plugin_file

    load_plugin_file(plugin_file)
    marker = tmp_path / "killed"
    out = tmp_path / "ray-crash"
    events = _ray_grid(out, cache_dir, ["tiny-cls"], ["crashy", "random"], 1, [f"crashy.kill_marker={marker}"])
    assert marker.exists()
    lost = [e for e in events if e["event"] == "message" and "worker lost" in e["text"]]
    assert len(lost) == 1 and "re-running from round 2" in lost[0]["text"]
    starts = [e["first_round"] for e in events if e["event"] == "start" and e["cell"] == "tiny-cls/crashy/seed-0"]
    assert starts == [0, 2]
    assert run_files(out) == run_files(crash_reference)
