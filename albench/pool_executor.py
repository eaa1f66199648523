"""``--jobs N``: chains of cells in a local pool of N worker processes.

Workers are started with ``spawn`` (no forked CUDA or thread state). Each gets ``cpus // N`` torch
threads, so N workers never oversubscribe the machine, and, when several GPUs are visible, its own
GPU through ``CUDA_VISIBLE_DEVICES`` (set before torch touches CUDA; with more workers than GPUs
they take turns). Workers send their results and progress through a manager queue that the driver
drains; the driver writes every file. A pool broken by a dead worker is replaced and its chains
re-run from their last committed round.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue as queue_module
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

from albench.executors import ChainJob, Outcome, outcome_from_result, run_chain


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def visible_gpus(device: str) -> list[str]:
    """The GPU ids workers may be pinned to (empty: leave CUDA_VISIBLE_DEVICES alone)."""
    if device == "cpu":
        return []
    import torch

    count = torch.cuda.device_count()
    if count < 2:
        return []
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def _init_worker(threads: int, gpu_queue: Any) -> None:
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_queue.get()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _ready() -> int:
    return os.getpid()


def _pool_chain(job: ChainJob, channel: Any) -> dict[str, Any]:
    return run_chain(job, channel.put)


class PoolBackend:
    remote = True

    def __init__(self, *, jobs: int, device: str) -> None:
        self.jobs = jobs
        self.threads = max(1, available_cpus() // jobs)
        self.gpus = visible_gpus(device)
        self.context = multiprocessing.get_context("spawn")
        self.manager = self.context.Manager()
        self.channel = self.manager.Queue()
        self.generation = 0
        self.futures: dict[cf.Future, tuple[ChainJob, int]] = {}
        self.pool = self._new_pool()
        # Start every worker (spawn, import torch) before the driver claims any cell, so that cells
        # are never held by this process while nothing runs them.
        for future in [self.pool.submit(_ready) for _ in range(jobs)]:
            future.result()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        gpu_queue = None
        if self.gpus:
            gpu_queue = self.manager.Queue()
            for i in range(self.jobs):
                gpu_queue.put(self.gpus[i % len(self.gpus)])
        return cf.ProcessPoolExecutor(max_workers=self.jobs, mp_context=self.context, initializer=_init_worker,
                                      initargs=(self.threads, gpu_queue))

    def free_slots(self, inflight: int) -> int:
        return self.jobs - inflight

    def submit(self, job: ChainJob) -> None:
        job.threads = self.threads
        self.futures[self.pool.submit(_pool_chain, job, self.channel)] = (job, self.generation)

    def _drain(self, dispatch: Callable[[Any], None]) -> None:
        while True:
            try:
                item = self.channel.get_nowait()
            except queue_module.Empty:
                return
            dispatch(item)

    def wait(self, timeout: float, dispatch: Callable[[Any], None]) -> list[Outcome]:
        done, _ = cf.wait(list(self.futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        self._drain(dispatch)
        outcomes = []
        broken = False
        for future in done:
            job, generation = self.futures.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                outcomes.append(Outcome(job, "crashed", reason="a worker process died"))
                broken = broken or generation == self.generation
            except Exception as exc:  # the pool could not run the chain at all (e.g. pickling)
                outcomes.append(Outcome(job, "error", error=exc))
            else:
                outcomes.append(outcome_from_result(job, result))
        if broken:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.generation += 1
            self.pool = self._new_pool()
        return outcomes

    def close(self, abort: bool) -> None:
        if abort:
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
            self.pool.shutdown(wait=False, cancel_futures=True)
        else:
            self.pool.shutdown(wait=True)
        self.manager.shutdown()
