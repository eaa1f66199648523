"""Two real ``albench run`` processes on overlapping grids, writing into one ``--out`` at once: no
record lost, no cell run twice, and the same files a single process writes."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from conftest import TINY, albench_command, run_files

# tiny-cls whose fits wait for a gate file: the first process blocks in its first cell until the
# test has seen the second process find that cell claimed, so the two really run at the same time.
GATED = '''
import os
import time
from pathlib import Path

from albench import tasks
from albench.registries import tasks as registry


@tasks.register("gated-cls")
class Gated(registry.get("tiny-cls").obj):
    """tiny-cls whose fits wait until $ALBENCH_TEST_GATE exists (when it is set)."""

    def fit(self, labelled, **kwargs):
        gate = os.environ.get("ALBENCH_TEST_GATE")
        deadline = time.monotonic() + 240
        while gate and not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().fit(labelled, **kwargs)
'''

GRID_A = ["--task", "gated-cls,tiny-cls-b", "--seeds", "2"]
GRID_B = ["--task", "tiny-cls-b,gated-cls", "--seeds", "3", "--jobs", "2"]  # overlaps A on 8 cells, adds 4


def _started(log: str) -> list[str]:
    """Cells a process trained (a start line: fresh or resumed)."""
    return re.findall(r"\[\d+/\d+\] (\S+): \d+ rounds", log)


def _wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_processes_share_one_out_without_losing_or_repeating_a_cell(tmp_path, cache_dir):
    from albench.config import resolve_cells
    from albench.executors import run_grid
    from albench.registry import load_plugin_file

    plugin = tmp_path / "gated.py"
    plugin.write_text(GATED)
    gate = tmp_path / "gate"
    out = tmp_path / "shared"
    common = ["run", "--plugin", TINY, "--plugin", str(plugin), "--strategy", "random,full", "--no-leaderboard",
              "--out", str(out)]
    env = {**os.environ, "ALBENCH_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "ALBENCH_TEST_GATE": str(gate)}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with open(logs[0], "w") as log_a, open(logs[1], "w") as log_b:
        a = subprocess.Popen([*albench_command(), *common, *GRID_A], stdout=subprocess.DEVNULL, stderr=log_a, env=env)
        try:
            _wait_for(lambda: list(out.glob("runs/*/*/.*.claim")) or a.poll() is not None, "a claim by the first process")
            b = subprocess.Popen([*albench_command(), *common, *GRID_B], stdout=subprocess.DEVNULL, stderr=log_b, env=env)
            try:
                _wait_for(lambda: "claimed by" in logs[1].read_text() or b.poll() is not None,
                          "the second process to meet the first one's claim")
                gate.write_text("open")
                assert b.wait(timeout=300) == 0, logs[1].read_text()
            finally:
                b.kill()
            assert a.wait(timeout=300) == 0, logs[0].read_text()
        finally:
            gate.write_text("open")
            a.kill()
    text_a, text_b = (p.read_text() for p in logs)
    assert f"claimed by pid {a.pid}" in text_b

    cells = [f"{t}/{s}/seed-{k}" for t in ("gated-cls", "tiny-cls-b") for s in ("random", "full") for k in range(3)]
    # Every cell was trained by exactly one of the two processes (no duplicated work) ...
    started = _started(text_a) + _started(text_b)
    assert sorted(started) == sorted(cells), (text_a, text_b)
    # ... every cell is complete, its records contiguous, and nothing is left claimed.
    for cell in cells:
        records = sorted(p.name for p in (out / "runs" / cell / "records").iterdir())
        assert records == [f"round-{r:03d}.json" for r in range(1 if "/full/" in cell else 4)], cell
    assert not list(out.glob("runs/*/*/.*.claim"))

    # The same files as one process running the union grid.
    load_plugin_file(TINY)
    load_plugin_file(plugin)
    single = tmp_path / "single"
    union = resolve_cells(tasks=["gated-cls", "tiny-cls-b"], strategies=["random", "full"], seeds=range(3))
    run_grid(union, out=single, cache_dir=cache_dir, emit=lambda e: None)
    assert len(run_files(out)) == 2 * len(cells)
    assert run_files(out) == run_files(single)
