"""Wall time of the smoke grid (12 cells) through the real CLI, from a fresh ``--out`` and a warm
prepared-data cache, with one worker (in-process; torch's default threads, and one thread) and with
two local workers (``--jobs 2``, one thread each):

    python -m pytest benchmarks/test_bench_grid.py --benchmark-only -s

The 2-worker speed-ups are printed and stored in the benchmark's extra_info; docs/scaling.md
records a measurement.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

GRID = ["--task", "phantom-wt,phantom-cls", "--strategy", "random,vaal,mvaal", "--preset", "smoke", "--seeds", "2",
        "--no-leaderboard"]
_times: dict[str, float] = {}


def _albench() -> list[str]:
    exe = shutil.which("albench")
    return [exe] if exe else [sys.executable, "-m", "albench.cli"]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "ALBENCH_CACHE": str(cache)}
    env.pop("OMP_NUM_THREADS", None)
    # Prepare the phantom sets once, outside the timings.
    warm = tmp_path_factory.mktemp("warm")
    subprocess.run([*_albench(), "run", *GRID[:2], "--strategy", "random", "--preset", "smoke", "--seeds", "1",
                    "--set", "rounds=0", "--no-leaderboard", "--out", str(warm)], check=True, env=env, capture_output=True)
    return env


# name -> (--jobs, OMP_NUM_THREADS for the driver): one worker with torch's default threads (every
# core), one worker with one thread (what each of the two workers gets), two workers.
VARIANTS = {"1-worker": (1, None), "1-worker-1-thread": (1, "1"), "2-workers": (2, None)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_smoke_grid_wall_time(benchmark, env, tmp_path, variant):
    jobs, threads = VARIANTS[variant]
    run_env = {**env, **({"OMP_NUM_THREADS": threads} if threads else {})}
    outs = iter(range(1000))

    def run() -> None:
        out = tmp_path / f"out-{next(outs)}"
        started = time.perf_counter()
        subprocess.run([*_albench(), "run", *GRID, "--jobs", str(jobs), "--out", str(out)], check=True, env=run_env,
                       capture_output=True)
        _times[variant] = time.perf_counter() - started

    benchmark.pedantic(run, rounds=1, iterations=1)
    cpus = len(os.sched_getaffinity(0))
    benchmark.extra_info.update(jobs=jobs, omp_num_threads=threads, cpus=cpus)
    if variant == "2-workers" and "1-worker" in _times:
        ratios = {name: round(_times[name] / _times["2-workers"], 3) for name in _times if name != "2-workers"}
        benchmark.extra_info["speedup_of_2_workers_vs"] = ratios
        print(f"\nsmoke grid on {cpus} CPUs: " + ", ".join(f"{k} {v:.1f} s" for k, v in _times.items())
              + "; 2-worker speed-up: " + ", ".join(f"{r:.2f}x vs {k}" for k, r in ratios.items()))
