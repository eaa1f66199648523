"""Speed and memory of ``prepare`` (1 vs 2 jobs) and of loading a prepared set.

Run with ``pytest benchmarks/test_bench_datasets.py --benchmark-only``; peak memory is measured in
a fresh subprocess (``ru_maxrss`` of the parent and, separately, of its worker processes) and
stored in each benchmark's ``extra_info``. The synthetic set has 12 HGG cases of 160x160x80
voxels in .nii.gz, big enough for decoding to dominate process start-up.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import albench.datasets  # noqa: F401
from albench import datasets
from albench.datasets.synthetic import write_brats_layout

SHAPE = (160, 160, 80)
N_CASES = 12


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Path:
    return write_brats_layout(tmp_path_factory.mktemp("raw"), N_CASES, 1, shape=SHAPE, seed=5)


@pytest.fixture(scope="module")
def recipe():
    return datasets.get("brats").obj()


_MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path

def hwm():  # peak RSS of this address space; ru_maxrss would carry over the parent's across exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import albench.datasets
from albench import datasets
r = datasets.get("brats").obj()
baseline = hwm()
r.prepare(cache=Path(sys.argv[1]), params=r.protocol("paper", {}), root=Path(sys.argv[2]), jobs=int(sys.argv[3]))
print(json.dumps({"baseline_mib": baseline, "peak_mib": hwm(),
                  "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _peak_memory(layout: Path, cache: Path, jobs: int) -> dict[str, float]:
    """Peak resident memory of a prepare in a fresh process: after imports, at the end, and the
    largest worker (workers start as forks of the ~baseline-sized parent)."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(cache), str(layout), str(jobs)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("jobs", [1, 2])
def test_prepare_brats(benchmark, recipe, layout, tmp_path, jobs):
    params = recipe.protocol("paper", {})
    counter = itertools.count()

    def run() -> Path:
        return recipe.prepare(cache=tmp_path / f"cache-{next(counter)}", params=params, root=layout, jobs=jobs)

    path = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    manifest = json.loads((path / "manifest.json").read_text())
    volume_mib = np.prod(SHAPE) * 2 / 2**20
    output_mib = sum(np.prod(info["shape"]) * np.dtype(info["dtype"]).itemsize for info in manifest["arrays"].values() if not info["dtype"].startswith("<U")) / 2**20
    benchmark.extra_info.update(
        jobs=jobs, cases=N_CASES, shape=list(SHAPE), slices=sum(manifest["counts"].values()),
        one_volume_mib=round(float(volume_mib), 1), output_mib=round(float(output_mib), 1),
        **{k: round(v, 1) for k, v in _peak_memory(layout, tmp_path / "mem", jobs).items()},
    )


def test_load_prepared_brats(benchmark, recipe, layout, tmp_path):
    params = recipe.protocol("paper", {})
    recipe.prepare(cache=tmp_path, params=params, root=layout, jobs=2)

    def load() -> float:
        ds = recipe.load(cache=tmp_path, params=params)
        return float(ds.train.main[len(ds.train) // 2].mean())  # touch one slice

    benchmark(load)


@pytest.mark.parametrize("family", ["brain", "chest"])
def test_generate_phantom_quick(benchmark, tmp_path, family):
    recipe = datasets.get("phantom").obj()
    params = recipe.protocol("quick", {"family": family})
    counter = itertools.count()
    benchmark.pedantic(lambda: recipe.prepare(cache=tmp_path / f"c{next(counter)}", params=params), rounds=2, iterations=1)
