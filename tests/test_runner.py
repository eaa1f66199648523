"""The round runner through the real CLI: paired seeds, determinism, resume, validation, overrides."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PLUGINS, TINY, albench_command, read_rounds, run_files

BAD = str(PLUGINS / "bad_strategies.py")


def _selected(out: Path, task: str, strategy: str, seed: int) -> list[dict]:
    path = out / "runs" / task / strategy / f"seed-{seed}" / "selected.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_the_contract(cli, tmp_path):
    out = tmp_path / "out"
    cli("run", "--plugin", TINY, "--strategy", "random", "--task", "tiny-cls", "--seeds", "2", "--out", str(out),
        "--no-leaderboard")
    run = out / "runs/tiny-cls/random/seed-1"
    spec = json.loads((run / "spec.json").read_text())
    assert spec["task"] == "tiny-cls" and spec["strategy"] == "random" and spec["seed"] == 1
    assert spec["protocol"] == {"initial": 20, "budget": 10, "rounds": 3}
    assert spec["primary_metric"] == "test_accuracy"
    for key in ("python", "torch", "cuda", "cudnn", "device", "device_name", "determinism"):
        assert key in spec["environment"]
    rows = read_rounds(run / "rounds.csv", drop_timing=False)
    assert [int(r["round"]) for r in rows] == [0, 1, 2, 3]
    assert [int(r["n_labelled"]) for r in rows] == [20, 30, 40, 50]
    assert {"test_accuracy", "val_accuracy", "fit_seconds", "select_seconds", "peak_memory_mb"} <= set(rows[0])
    lines = _selected(out, "tiny-cls", "random", 1)
    labelled: set[int] = set()
    import hashlib

    for r, line in enumerate(lines):
        assert line["round"] == r
        assert not labelled & set(line["added"])
        labelled |= set(line["added"])
        text = ",".join(str(i) for i in sorted(labelled))
        assert line["labelled_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert len(labelled) == 50


def test_paired_design_same_initial_set_and_round0(cli, tmp_path):
    out = tmp_path / "out"
    cli("run", "--plugin", TINY, "--plugin", BAD, "--strategy", "random,lowest-ids", "--task", "tiny-cls",
        "--seeds", "2", "--out", str(out), "--no-leaderboard")
    for seed in (0, 1):
        a, b = _selected(out, "tiny-cls", "random", seed), _selected(out, "tiny-cls", "lowest-ids", seed)
        assert a[0] == b[0]  # the initial set
        assert a[1]["added"] != b[1]["added"]  # the strategies differ afterwards
        ra = read_rounds(out / f"runs/tiny-cls/random/seed-{seed}/rounds.csv")
        rb = read_rounds(out / f"runs/tiny-cls/lowest-ids/seed-{seed}/rounds.csv")
        assert ra[0] == rb[0]  # same model initialisation and data order in round 0
    assert _selected(out, "tiny-cls", "random", 0)[0] != _selected(out, "tiny-cls", "random", 1)[0]


def test_same_command_twice_gives_identical_files(cli, tmp_path):
    args = ["run", "--plugin", TINY, "--strategy", "random,full", "--task", "tiny-cls", "--seeds", "2", "--no-leaderboard"]
    cli(*args, "--out", str(tmp_path / "a"))
    cli(*args, "--out", str(tmp_path / "b"))
    a, b = run_files(tmp_path / "a"), run_files(tmp_path / "b")
    assert a and a == b


def test_rerun_skips_finished_cells(cli, tmp_path):
    args = ["run", "--plugin", TINY, "--strategy", "random", "--task", "tiny-cls", "--seeds", "1", "--out", str(tmp_path),
            "--no-leaderboard"]
    cli(*args)
    record = tmp_path / "runs/tiny-cls/random/seed-0/records/round-000.json"
    before = record.stat().st_mtime_ns
    proc = cli(*args)
    assert "already complete, skipped" in proc.stderr
    assert record.stat().st_mtime_ns == before


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before {path} appeared: {proc.stderr.read() if proc.stderr else ''}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


@pytest.mark.parametrize("kill_after", ["spec.json", "records/round-001.json"])
def test_resume_after_sigkill_matches_uninterrupted(cli, cache_dir, tmp_path, kill_after):
    args = ["run", "--plugin", TINY, "--strategy", "random", "--task", "tiny-cls", "--seeds", "1", "--no-leaderboard",
            "--set", "task.epochs=150", "--set", "rounds=4"]
    cli(*args, "--out", str(tmp_path / "whole"))
    killed = tmp_path / "killed"
    env = {**os.environ, "ALBENCH_CACHE": str(cache_dir)}
    proc = subprocess.Popen([*albench_command(), *args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = killed / "runs/tiny-cls/random/seed-0"
    try:
        _wait_for(run / kill_after, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    recorded = sorted(p.name for p in (run / "records").glob("round-*.json")) if (run / "records").exists() else []
    assert len(recorded) < 5, "the run finished before it could be killed"
    before = {name: (run / "records" / name).read_text() for name in recorded}
    resumed = cli(*args, "--out", str(killed))
    if recorded:
        assert f"resuming at round {len(recorded)}" in resumed.stderr
    for name, text in before.items():  # nothing recorded was recomputed
        assert (run / "records" / name).read_text() == text
    assert run_files(killed) == run_files(tmp_path / "whole")
    assert not list(killed.rglob("*.tmp"))


@pytest.mark.parametrize("strategy, message", [
    ("dup-ids", "strategy 'dup-ids' (round 0) returned duplicate ids"),
    ("labelled-ids", "strategy 'labelled-ids' (round 0) returned already-labelled ids"),
    ("short-ids", "strategy 'short-ids' (round 0) returned 9 ids, expected exactly 10"),
])
def test_invalid_selections_are_refused(cli, tmp_path, strategy, message):
    proc = cli("run", "--plugin", TINY, "--plugin", BAD, "--strategy", strategy, "--task", "tiny-cls", "--seeds", "1",
               "--out", str(tmp_path), "--no-leaderboard", check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / f"runs/tiny-cls/{strategy}/seed-0/records").exists()


@pytest.mark.parametrize("override, message", [
    ("no_such_key=3", "--set no_such_key: unknown key (valid keys here: budget, "),
    ("task.epochs=many", "--set task.epochs=many: expected int"),
    ("rounds", "--set rounds: expected key=value"),
    ("budget=1000", "exceeds the training pool"),
])
def test_bad_overrides(cli, tmp_path, override, message):
    proc = cli("run", "--plugin", TINY, "--strategy", "random", "--task", "tiny-cls", "--seeds", "1", "--out",
               str(tmp_path), "--set", override, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_override_is_applied_and_recorded(cli, tmp_path):
    cli("run", "--plugin", TINY, "--strategy", "random", "--task", "tiny-cls", "--seeds", "1", "--out", str(tmp_path),
        "--set", "budget=5", "--set", "lr=0.1", "--no-leaderboard")
    spec = json.loads((tmp_path / "runs/tiny-cls/random/seed-0/spec.json").read_text())
    assert spec["protocol"]["budget"] == 5 and spec["task_params"]["lr"] == 0.1
    rows = read_rounds(tmp_path / "runs/tiny-cls/random/seed-0/rounds.csv")
    assert [int(r["n_labelled"]) for r in rows] == [20, 25, 30, 35]


def test_changed_spec_is_refused_then_forced(cli, tmp_path):
    base = ["run", "--plugin", TINY, "--strategy", "random", "--task", "tiny-cls", "--seeds", "1", "--out", str(tmp_path),
            "--no-leaderboard"]
    cli(*base)
    proc = cli(*base, "--set", "task.lr=0.01", check=False)
    assert proc.returncode == 1
    assert "recorded with a different configuration (task_params differ)" in proc.stderr
    cli(*base, "--set", "task.lr=0.01", "--force")
    spec = json.loads((tmp_path / "runs/tiny-cls/random/seed-0/spec.json").read_text())
    assert spec["task_params"]["lr"] == 0.01


def test_task_agnostic_selection_is_reused_across_tasks(cli, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "--plugin", TINY, "--strategy", "random", "--task", "tiny-cls,tiny-cls-b", "--seeds", "1",
               "--out", str(out), "--no-leaderboard")
    assert proc.stderr.count("reused the stored task-agnostic selection") == 3
    assert _selected(out, "tiny-cls", "random", 0) == _selected(out, "tiny-cls-b", "random", 0)
    assert read_rounds(out / "runs/tiny-cls/random/seed-0/rounds.csv") != read_rounds(out / "runs/tiny-cls-b/random/seed-0/rounds.csv")


def test_unprepared_real_data_set_stops_before_writing(cli, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "--strategy", "random", "--task", "brats-wt", "--seeds", "1", "--out", str(out),
               "--cache", str(tmp_path / "empty-cache"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"run: albench prepare brats --root DIR --cache {tmp_path / 'empty-cache'}")
    assert proc.stderr.count("\n") == 1
    assert not out.exists()
