"""Cell claims: exclusive creation, stale claims taken over race-free, and a run that waits for a
cell another (real) process holds, then takes it over when that process dies."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import TINY

from albench import claims
from albench.claims import ClaimKeeper, claim_path, holder, read_claim, stale_reason, try_claim


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_claim(run_dir: Path, **info) -> Path:
    path = claim_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = claims._identity()
    path.write_text(json.dumps({**me, "token": "someone-else", "started": time.time(), **info}))
    return path


def test_claim_is_exclusive_and_released(tmp_path):
    run_dir = tmp_path / "runs" / "t" / "s" / "seed-0"
    first = try_claim(run_dir, label="t/s/seed-0")
    assert first is not None and first.held()
    assert claim_path(run_dir).name == ".seed-0.claim" and claim_path(run_dir).parent == run_dir.parent
    assert try_claim(run_dir) is None  # our own live claim is not stale
    assert holder(run_dir)["pid"] == os.getpid()
    first.release()
    assert not claim_path(run_dir).exists()
    second = try_claim(run_dir)
    assert second is not None
    second.release()


def test_stale_rules(tmp_path):
    run_dir = tmp_path / "runs" / "t" / "s" / "seed-0"
    now = time.time()
    # Same machine, dead pid: stale at once.
    path = _write_claim(run_dir, pid=_dead_pid())
    assert "is gone" in stale_reason(*read_claim(path))
    # Same machine, live pid (our parent) that started at another time: a reused pid.
    path = _write_claim(run_dir, pid=os.getppid(), pid_start="1")
    assert "another process" in stale_reason(*read_claim(path))
    # Same machine, the live parent itself: held.
    path = _write_claim(run_dir, pid=os.getppid(), pid_start=claims._pid_start(os.getppid()))
    assert stale_reason(*read_claim(path)) is None
    # Another host: only the heartbeat tells.
    path = _write_claim(run_dir, host="elsewhere-" + socket.gethostname(), pid=1)
    assert stale_reason(*read_claim(path), timeout=60) is None
    os.utime(path, (now - 120, now - 120))
    assert "no heartbeat" in stale_reason(*read_claim(path), timeout=60)
    # A claim still being written is live for a grace period, then abandoned.
    path.write_text("")
    assert stale_reason(*read_claim(path)) is None
    os.utime(path, (now - 3600, now - 3600))
    assert "unreadable" in stale_reason(*read_claim(path))


def test_heartbeat_keeps_a_claim_fresh(tmp_path):
    run_dir = tmp_path / "runs" / "t" / "s" / "seed-0"
    with ClaimKeeper(interval=0.05) as keeper:
        claim = keeper.acquire(run_dir)
        past = time.time() - 1000
        os.utime(claim.path, (past, past))
        time.sleep(0.3)
        assert os.stat(claim.path).st_mtime > past + 900
    assert not claim.path.exists()  # released on exit


_RACER = r"""
import sys, time
from pathlib import Path
from albench.claims import try_claim
start, release = float(sys.argv[2]), Path(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # all try at about the same moment
claim = try_claim(Path(sys.argv[1]))
print("won" if claim else "lost", flush=True)
deadline = time.time() + 120
while not release.exists() and time.time() < deadline:  # hold it until every racer has tried
    time.sleep(0.02)
"""


def _race(run_dir: Path, n: int = 8) -> list[str]:
    release = run_dir.parent / f"release-{run_dir.name}"
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(run_dir), str(start), str(release)],
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        results = [p.stdout.readline().strip() for p in procs]
    finally:
        release.parent.mkdir(parents=True, exist_ok=True)
        release.write_text("")
        for p in procs:
            p.communicate(timeout=60)
    return results


def test_processes_racing_for_a_fresh_or_a_stale_claim_get_exactly_one_winner(tmp_path):
    fresh = tmp_path / "runs" / "t" / "s" / "seed-0"
    assert sorted(_race(fresh)).count("won") == 1
    stale = tmp_path / "runs" / "t" / "s" / "seed-1"
    _write_claim(stale, pid=_dead_pid())
    results = _race(stale)
    assert results.count("won") == 1, results
    assert not list(stale.parent.glob("*.stale-*"))  # the stale claim was removed, not left behind


def test_run_waits_for_a_cell_held_by_a_live_process_and_takes_it_over_when_it_dies(tmp_path, cache_dir):
    from albench.config import resolve_cells
    from albench.executors import run_grid
    from albench.registry import load_plugin_file

    load_plugin_file(TINY)
    cells = resolve_cells(tasks=["tiny-cls"], strategies=["random", "full"], seeds=range(1))
    out = tmp_path / "out"
    held = next(c for c in cells if c.strategy == "random")
    # A real other process "holds" the random cell until we let it die (without releasing it).
    release = tmp_path / "release"
    other = subprocess.Popen([sys.executable, "-c", "import os, sys, time\n"
                              "while not os.path.exists(sys.argv[1]): time.sleep(0.02)", str(release)])
    threading.Thread(target=other.wait, daemon=True).start()  # reap it, so it does not linger as a zombie
    _write_claim(held.run_dir(out), pid=other.pid, pid_start=claims._pid_start(other.pid), token="other")

    events: list[dict] = []

    def emit(event: dict) -> None:
        events.append(event)
        if event["event"] == "done":  # the free cell is finished: now let the holder die
            release.write_text("")

    try:
        results = run_grid(cells, out=out, cache_dir=cache_dir, emit=emit)
    finally:
        release.write_text("")
    assert [len(r.records) for r in results] == [4, 1]
    waited = [e for e in events if e["event"] == "message" and e["cell"] == held.label]
    assert waited and f"claimed by pid {other.pid}" in waited[0]["text"]
    # The free cell ran first; the held one only after its holder had died.
    assert [e["cell"] for e in events if e["event"] == "start"] == [c.label for c in reversed(cells)]
    assert not list(out.glob("runs/*/*/.*.claim"))
    records = sorted(p.name for p in (held.run_dir(out) / "records").iterdir())
    assert records == [f"round-{r:03d}.json" for r in range(4)]
