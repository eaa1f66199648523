"""``--executor ray [--address ADDR]``: each chain of cells one Ray task.

Each task asks for one GPU when the cluster has GPUs (and ``--device`` is not ``cpu``) and
``$ALBENCH_RAY_CPUS_PER_CELL`` CPUs (default 1; torch in the task uses that many threads). The task
runs the runner loop and sends the spec, each committed round (with its arrays), new task-agnostic
selections and progress events through a :class:`ray.util.queue.Queue` to the driver, which writes
every file: workers need no shared file system, only albench installed and the prepared data set
in their cache. Ray's own task retries are off: when a task's worker dies (node lost, preempted,
killed, out of memory) the driver resubmits the chain from the rounds it has committed.

Without ``--address`` (and without ``$RAY_ADDRESS``) a local Ray instance is started for the run and
stopped after it; with ``--address auto`` or ``ADDR:PORT`` the driver joins that cluster. If the
calling program has already called ``ray.init``, that connection is used as it is.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

from albench.errors import AlbenchError, ConfigError
from albench.executors import ChainJob, Outcome, outcome_from_result, run_chain

CPUS_ENV = "ALBENCH_RAY_CPUS_PER_CELL"


def import_ray() -> Any:
    try:
        import ray
        import ray.util.queue  # noqa: F401
    except ImportError as exc:
        raise AlbenchError(f"the ray executor needs the optional extra: pip install 'albench[ray]' ({exc})") from None
    return ray


def _ray_chain(job: ChainJob, channel: Any) -> dict[str, Any]:
    import ray

    if job.threads is None:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        job.threads = max(1, int(cpus)) if cpus else 1
    return run_chain(job, channel.put)


def _cpus_per_cell() -> float:
    text = os.environ.get(CPUS_ENV, "1")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"${CPUS_ENV}={text}: expected a positive number of CPUs")
    return value


class RayBackend:
    remote = True

    def __init__(self, *, address: str | None, jobs: int, device: str) -> None:
        ray = self.ray = import_ray()
        from ray.util.queue import Queue

        self.started = False
        if not ray.is_initialized():
            try:
                if address or os.environ.get("RAY_ADDRESS"):
                    ray.init(address=address, logging_level=logging.WARNING)
                else:
                    ray.init(include_dashboard=False, logging_level=logging.WARNING)
            except ConnectionError as exc:
                raise AlbenchError(f"--address {address}: cannot connect to a Ray cluster ({exc})") from None
            self.started = True
        self.jobs = jobs
        self.cpus = _cpus_per_cell()
        resources = ray.cluster_resources()
        self.use_gpu = device != "cpu" and resources.get("GPU", 0) > 0
        if device.startswith("cuda") and not self.use_gpu:
            raise ConfigError("--device cuda: the Ray cluster has no GPUs (use --device cpu or auto)")
        options: dict[str, Any] = {"num_cpus": 0}
        try:  # keep the queue next to the driver, which is the only reader
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=True)
        except Exception:
            pass
        self.channel = Queue(actor_options=options)
        self.task = ray.remote(_ray_chain).options(
            num_cpus=self.cpus, num_gpus=1 if self.use_gpu else 0, max_retries=0, retry_exceptions=False)
        self.refs: dict[Any, ChainJob] = {}
        self._capacity = (0.0, 1)

    def capacity(self) -> int:
        if self.jobs > 1:
            return self.jobs
        checked, value = self._capacity
        if time.monotonic() - checked > 5.0:
            resources = self.ray.cluster_resources()
            if self.use_gpu:
                value = int(resources.get("GPU", 0))
            else:
                value = int(resources.get("CPU", 0) // self.cpus)
            value = max(1, value)
            self._capacity = (time.monotonic(), value)
        return value

    def free_slots(self, inflight: int) -> int:
        return self.capacity() - inflight

    def submit(self, job: ChainJob) -> None:
        self.refs[self.task.remote(job, self.channel)] = job

    def _drain(self, dispatch: Callable[[Any], None]) -> None:
        while (size := self.channel.qsize()) > 0:
            for item in self.channel.get_nowait_batch(size):
                dispatch(item)

    def wait(self, timeout: float, dispatch: Callable[[Any], None]) -> list[Outcome]:
        ray = self.ray
        refs = list(self.refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        self._drain(dispatch)
        outcomes = []
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # raised outside the runner loop
                outcomes.append(Outcome(job, "error", error=exc))
            except ray.exceptions.RayError as exc:  # worker or node died, task lost
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                outcomes.append(Outcome(job, "crashed", reason=reason[:300]))
            else:
                outcomes.append(outcome_from_result(job, result))
        return outcomes

    def close(self, abort: bool) -> None:
        ray = self.ray
        try:
            for ref in list(self.refs):
                ray.cancel(ref, force=True)
            ray.kill(self.channel.actor)
        except Exception:
            pass
        if self.started:
            ray.shutdown()
