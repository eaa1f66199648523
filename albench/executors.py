"""Where the grid's cells run: in this process, in a local process pool (``--jobs N``) or on a Ray
cluster (``--executor ray``). Every executor writes the same files (docs/scaling.md).

The driver (this process) alone writes results. It claims each cell before running it
(:mod:`albench.claims`), so several ``albench run`` processes may share one ``<out>``: a cell
claimed by a live process is left to it and waited for at the end; a stale claim is taken over.

Cells whose task-agnostic selections can be shared (same data set and protocol, strategy and its
parameters, seed) form a *chain* that runs in one worker, in grid order, so the sampler of each
round trains once for all the tasks of a data set. Chains run in parallel. Workers of the pool and
of Ray send everything back to the driver as messages (the spec, each committed round with its
arrays, new selections, progress events); the driver commits them through :class:`RunStore`, so no
shared file system is needed. A worker that dies has its chain re-run from the last committed
round (at most ``MAX_ATTEMPTS`` tries).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import os
import pickle
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from albench.claims import Claim, ClaimKeeper, describe, holder
from albench.config import CellSpec, params_hash
from albench.errors import AlbenchError, ConfigError
from albench.prepared import protocol_hash
from albench.runner import RunSink, check_resumable, preflight, run_cell
from albench.selection_cache import Selection, SelectionCache
from albench.store import RunStore

EXECUTORS = ("local", "ray")
#: Tries per chain when its worker process dies (killed, preempted, out of memory).
MAX_ATTEMPTS = 3
#: Seconds between looks at cells that another process is running.
WAIT_POLL = 1.0
#: Progress events (epochs, iterations) are forwarded from workers at most this often per cell.
PROGRESS_INTERVAL = 0.2

Emit = Callable[[dict[str, Any]], None]
#: What a worker sends to the driver: ``(chain, attempt, message)``.
Put = Callable[[Any], None]


@dataclass
class CellResult:
    spec: CellSpec
    records: list[dict[str, Any]] = field(default_factory=list)


# -- what travels to a worker ---------------------------------------------------------------------
@dataclass
class CellJob:
    index: int
    spec: CellSpec
    done: list[dict[str, Any]]


@dataclass
class ChainJob:
    """A chain of cells for one worker, with everything it needs that is not in the cell specs."""

    chain: int
    attempt: int
    cells: list[CellJob]
    cache_dir: str | None
    selections: dict[str, Selection]
    plugins: list[tuple[str, str]]
    threads: int | None = None
    driver_host: str = ""


@dataclass
class Outcome:
    """How a submitted chain ended: ``ok``, ``error`` (an exception in a cell) or ``crashed``."""

    job: ChainJob
    status: str
    index: int | None = None
    error: BaseException | None = None
    reason: str = ""


def chain_key(spec: CellSpec) -> tuple[Any, ...] | None:
    """Cells with equal keys can share task-agnostic selections; ``None``: nothing to share."""
    if not spec.task_agnostic or spec.reference:
        return None
    return (spec.dataset, protocol_hash(spec.dataset_params), spec.strategy, params_hash(spec.strategy_params),
            spec.seed, spec.device, spec.protocol["budget"])


def group_chains(cells: list[CellSpec], indices: Iterable[int] | None = None) -> list[list[int]]:
    """Chains of cell indices, in grid order of their first cell; each chain in grid order."""
    chains: dict[Any, list[int]] = {}
    for i in (range(len(cells)) if indices is None else sorted(indices)):
        key = chain_key(cells[i])
        chains.setdefault(("cell", i) if key is None else key, []).append(i)
    return list(chains.values())


def selection_key(spec: CellSpec, device_type: str, round_index: int, sha: str) -> str:
    folder = SelectionCache(Path(".")).folder(spec, device_type).as_posix()
    return f"{folder}/{round_index}/{sha}"


def plugin_payload() -> list[tuple[str, str]]:
    """The plugin files loaded here, with their source, for workers to load the same."""
    from albench.registry import loaded_plugin_files

    return [(path, Path(path).read_text()) for path in dict.fromkeys(loaded_plugin_files)]


def load_plugins(payload: list[tuple[str, str]]) -> None:
    """Load shipped plugin files: from their path when it holds the same source, else a copy."""
    from albench.registry import load_plugin_file

    for path, source in payload:
        target = Path(path)
        try:
            same = target.is_file() and target.read_text() == source
        except OSError:
            same = False
        if not same:
            digest = hashlib.sha256(source.encode()).hexdigest()[:16]
            target = Path(tempfile.gettempdir()) / "albench-plugins" / digest / Path(path).name
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                tmp.write_text(source)
                os.replace(tmp, target)
        load_plugin_file(target)


# -- the worker side (pool processes and Ray tasks) ----------------------------------------------
class ShippedSelections(SelectionCache):
    """The chain's selections in memory; new ones also go to the driver, which stores them."""

    def __init__(self, entries: Mapping[str, Selection], send: Put) -> None:
        super().__init__(Path("."))
        self.entries = dict(entries)
        self.send = send
        self.cell = -1

    def get(self, spec: CellSpec, device_type: str, round_index: int, sha: str) -> Selection | None:
        return self.entries.get(selection_key(spec, device_type, round_index, sha))

    def put(self, spec: CellSpec, device_type: str, round_index: int, sha: str, selection: Selection) -> None:
        self.entries[selection_key(spec, device_type, round_index, sha)] = selection
        self.send(("selection", self.cell, device_type, round_index, sha, selection))


class ChannelSink:
    """A :class:`~albench.runner.RecordSink` that sends the spec and each round to the driver."""

    def __init__(self, send: Put, index: int) -> None:
        self.send = send
        self.index = index

    def start(self, spec: Mapping[str, Any]) -> None:
        self.send(("start", self.index, dict(spec)))

    def commit(self, record: Mapping[str, Any], diagnostics: Mapping[str, np.ndarray],
               artifacts: Mapping[str, np.ndarray]) -> None:
        self.send(("commit", self.index, dict(record), dict(diagnostics), dict(artifacts)))


def _forwarder(send: Put, index: int) -> Emit:
    last = [0.0]

    def emit(event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL:
                return
            last[0] = now
        send(("event", index, event))

    return emit


def _portable(exc: BaseException, driver_host: str = "") -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError that says what it was.

    A user error raised on another machine says which one (e.g. a prepared data set missing there).
    """
    host = socket.gethostname()
    where = f"in a worker (pid {os.getpid()} on {host})"
    original = exc
    if isinstance(exc, AlbenchError) and driver_host and host != driver_host:
        with contextlib.suppress(Exception):
            exc = type(exc)(f"{exc} (on worker host {host})")
    try:
        copy = pickle.loads(pickle.dumps(exc))
        if type(copy) is not type(exc):
            raise TypeError
        portable = exc
    except Exception:
        portable = RuntimeError(f"{type(exc).__name__}: {exc}")
    if hasattr(portable, "add_note"):
        portable.add_note(f"raised {where}:\n{''.join(traceback.format_exception(original))}")
    return portable


def run_chain(job: ChainJob, put: Put) -> dict[str, Any]:
    """Run a chain's cells in order in this (worker) process, sending results through ``put``."""

    def send(message: Any) -> None:
        put((job.chain, job.attempt, message))

    import torch

    load_plugins(job.plugins)
    if job.threads:
        torch.set_num_threads(job.threads)
    cache = ShippedSelections(job.selections, send)
    for cell in job.cells:
        cache.cell = cell.index
        try:
            run_cell(cell.spec, sink=ChannelSink(send, cell.index), done=cell.done, cache_dir=job.cache_dir,
                     selections=cache, emit=_forwarder(send, cell.index))
        except Exception as exc:
            return {"status": "error", "index": cell.index, "error": _portable(exc, job.driver_host)}
    return {"status": "ok"}


def outcome_from_result(job: ChainJob, result: Any) -> Outcome:
    if isinstance(result, dict) and result.get("status") == "ok":
        return Outcome(job, "ok")
    if isinstance(result, dict) and result.get("status") == "error":
        return Outcome(job, "error", index=result["index"], error=result["error"])
    return Outcome(job, "error", error=RuntimeError(f"a worker returned {result!r}"))


# -- backends ---------------------------------------------------------------------------------------
class InProcessBackend:
    """Runs each cell here, writing through :class:`RunSink`; an error stops the grid at once."""

    remote = False

    def __init__(self, driver: "_Driver") -> None:
        self.driver = driver
        self.finished: list[Outcome] = []

    def free_slots(self, inflight: int) -> int:
        return 1 - inflight

    def submit(self, job: ChainJob) -> None:
        d = self.driver
        for cell in job.cells:
            store = d.stores[cell.index]
            sink = _FencedSink(RunSink(store, cell.spec.metrics), d.claims_of[cell.index], cell.spec.label)
            run_cell(cell.spec, sink=sink, done=cell.done, cache_dir=d.cache_dir, selections=d.disk, emit=d.emit)
        self.finished.append(Outcome(job, "ok"))

    def wait(self, timeout: float, dispatch: Callable[[Any], None]) -> list[Outcome]:
        finished, self.finished = self.finished, []
        return finished

    def close(self, abort: bool) -> None:
        return None


class _FencedSink:
    """Refuses to write once the cell's claim has been taken over by another process."""

    def __init__(self, inner: RunSink, claim: Claim, label: str) -> None:
        self.inner, self.claim, self.label = inner, claim, label

    def start(self, spec: Mapping[str, Any]) -> None:
        _check_held(self.claim, self.label)
        self.inner.start(spec)

    def commit(self, record: Mapping[str, Any], diagnostics: Mapping[str, np.ndarray],
               artifacts: Mapping[str, np.ndarray]) -> None:
        _check_held(self.claim, self.label)
        self.inner.commit(record, diagnostics, artifacts)


def _check_held(claim: Claim, label: str) -> None:
    if not claim.held():
        raise AlbenchError(
            f"{label}: another process took this cell over (its claim {claim.path} looked stale); "
            "raise ALBENCH_CLAIM_TIMEOUT if this machine's heartbeats can stall"
        )


# -- the driver ----------------------------------------------------------------------------------
class _Driver:
    def __init__(self, cells: list[CellSpec], *, out: Path, cache_dir: Path | None, force: bool, emit: Emit,
                 claims: ClaimKeeper) -> None:
        self.cells = cells
        self.out = Path(out)
        self.cache_dir = cache_dir
        self.force = force
        self.emit = emit
        self.claims = claims
        self.stores = [RunStore(spec.run_dir(self.out)) for spec in cells]
        # --force also ignores selections stored before this run started (a fixed strategy must not
        # be fed its old answers).
        self.disk = SelectionCache(self.out / "selections", not_before=time.time() if force else None)
        self.claims_of: dict[int, Claim] = {}
        self.forced: set[int] = set()
        self.expected: dict[int, int] = {}
        self.current: dict[int, int] = {}  # chain -> attempt whose messages count
        self.errors: list[BaseException] = []
        self.deferred: dict[int, str] = {}
        self._chain_ids = itertools.count()
        self.backend: Any = None
        self.plugins: list[tuple[str, str]] = []

    # -- messages from workers --------------------------------------------------------------------
    def dispatch(self, item: Any) -> None:
        chain, attempt, message = item
        if self.current.get(chain) != attempt:
            return  # from an attempt that was given up on
        kind, index = message[0], message[1]
        spec, store = self.cells[index], self.stores[index]
        if kind == "event":
            self.emit(message[2])
        elif kind == "start":
            _check_held(self.claims_of[index], spec.label)
            store.write_spec(message[2])
        elif kind == "commit":
            record, diagnostics, artifacts = message[2:]
            r = int(record["round"])
            if r < self.expected[index]:
                return  # already committed
            if r > self.expected[index]:
                raise AlbenchError(f"{spec.label}: a worker sent round {r} before round {self.expected[index]}")
            _check_held(self.claims_of[index], spec.label)
            store.commit(record, diagnostics=diagnostics, artifacts=artifacts, metrics=spec.metrics)
            self.expected[index] = r + 1
        elif kind == "selection":
            device_type, r, sha, selection = message[2:]
            self.disk.put(spec, device_type, r, sha, selection)

    # -- preparing chains ---------------------------------------------------------------------------
    def _complete(self, spec: CellSpec, records: list[dict[str, Any]]) -> bool:
        rounds = 0 if spec.reference else spec.protocol["rounds"]
        return len(records) >= rounds + 1

    def _claim_cells(self, chain: list[int]) -> list[CellJob]:
        jobs = []
        for index in chain:
            spec, store = self.cells[index], self.stores[index]
            claim = self.claims.acquire(spec.run_dir(self.out), spec.label)
            if claim is None:
                info = holder(spec.run_dir(self.out)) or {}
                if index not in self.deferred:
                    self.emit({"cell": spec.label, "event": "message",
                               "text": f"claimed by {describe(info)}; left to it and waited for"})
                self.deferred[index] = describe(info)
                continue
            self.deferred.pop(index, None)
            try:
                done = check_resumable(spec, store, force=self.force and index not in self.forced)
            except BaseException:
                self.claims.release(claim)
                raise
            self.forced.add(index)
            if self._complete(spec, done):
                self.claims.release(claim)
                rounds = 0 if spec.reference else spec.protocol["rounds"]
                self.emit({"cell": spec.label, "event": "skipped", "rounds": rounds + 1})
                continue
            self.claims_of[index] = claim
            self.expected[index] = len(done)
            jobs.append(CellJob(index, spec, done))
        return jobs

    def _selections_for(self, cells: list[CellJob]) -> dict[str, Selection]:
        found: dict[str, Selection] = {}
        seen = set()
        for cell in cells:
            key = chain_key(cell.spec)
            if key is None or key in seen:
                continue
            seen.add(key)
            for device_type in ("cpu", "cuda"):
                folder = self.disk.folder(cell.spec, device_type)
                for meta_path in sorted(folder.glob("round-*.json")) if folder.is_dir() else []:
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        meta = json.loads(meta_path.read_text())
                        selection = self.disk.get(cell.spec, device_type, int(meta["round"]), meta["labelled_sha256"])
                        if selection is not None:
                            found[selection_key(cell.spec, device_type, int(meta["round"]), meta["labelled_sha256"])] = selection
        return found

    def _job(self, cells: list[CellJob], chain: int | None = None, attempt: int = 0) -> ChainJob:
        chain = next(self._chain_ids) if chain is None else chain
        self.current[chain] = attempt
        remote = self.backend.remote
        return ChainJob(chain, attempt, cells, str(self.cache_dir) if self.cache_dir else None,
                        self._selections_for(cells) if remote else {}, self.plugins if remote else [],
                        driver_host=socket.gethostname())

    def _release(self, indices: Iterable[int]) -> None:
        for index in indices:
            self.claims.release(self.claims_of.pop(index, None))

    # -- outcomes -------------------------------------------------------------------------------------
    def _finish(self, outcome: Outcome, inflight: dict[int, ChainJob]) -> None:
        job = outcome.job
        inflight.pop(job.chain, None)
        if outcome.status == "ok":
            self._release(c.index for c in job.cells)
            return
        if outcome.status == "error":
            assert outcome.error is not None
            if outcome.index is not None:
                self.emit({"cell": self.cells[outcome.index].label, "event": "message",
                           "text": f"failed: {type(outcome.error).__name__}: {outcome.error}"})
            self.errors.append(outcome.error)
            self._release(c.index for c in job.cells)
            return
        # The worker died: resubmit what is unfinished, from the last committed rounds.
        again = []
        for cell in job.cells:
            records = self.stores[cell.index].records()
            if self._complete(cell.spec, records):
                self._release([cell.index])
            else:
                self.expected[cell.index] = len(records)
                again.append(CellJob(cell.index, cell.spec, records))
        if not again:
            return
        label = again[0].spec.label
        if job.attempt + 1 >= MAX_ATTEMPTS:
            self.errors.append(AlbenchError(
                f"{label}: its worker died {MAX_ATTEMPTS} times ({outcome.reason}); re-run the same command to resume"))
            self._release(c.index for c in again)
            return
        self.emit({"cell": label, "event": "message",
                   "text": f"worker lost ({outcome.reason}); re-running from round {len(again[0].done)}"})
        new = self._job(again, chain=job.chain, attempt=job.attempt + 1)
        self.backend.submit(new)
        inflight[new.chain] = new

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, backend: Any, chains: list[list[int]]) -> None:
        self.backend = backend
        if backend.remote:
            self.plugins = plugin_payload()
        pending = collections.deque(chains)
        inflight: dict[int, ChainJob] = {}
        next_look = 0.0
        while True:
            while pending and not self.errors and backend.free_slots(len(inflight)) > 0:
                cells = self._claim_cells(pending.popleft())
                if cells:
                    job = self._job(cells)
                    inflight[job.chain] = job
                    backend.submit(job)
            if self.deferred and not self.errors and time.monotonic() >= next_look:
                next_look = time.monotonic() + WAIT_POLL
                freed = [i for i in self.deferred if holder(self.cells[i].run_dir(self.out)) is None]
                pending.extend(group_chains(self.cells, freed))
                for i in freed:
                    self.deferred.pop(i)
                if freed:
                    continue
            if inflight:
                for outcome in backend.wait(0.1, self.dispatch):
                    self._finish(outcome, inflight)
                continue
            if (pending or self.deferred) and not self.errors:
                if not pending:
                    time.sleep(max(0.0, next_look - time.monotonic()))
                continue
            break
        if self.errors:
            first = self.errors[0]
            if len(self.errors) > 1 and hasattr(first, "add_note"):
                first.add_note(f"{len(self.errors) - 1} more chain(s) failed too")
            raise first


class _ReadOnlyStore(RunStore):
    """For the up-front spec check: reads, never rewrites derived files (another process may)."""

    def rebuild(self, metrics: list[str] | None = None) -> None:
        return None


def run_grid(
    cells: list[CellSpec],
    *,
    out: Path,
    cache_dir: Path | None,
    force: bool = False,
    executor: str = "local",
    jobs: int = 1,
    address: str | None = None,
    emit: Emit,
) -> list[CellResult]:
    """Run every cell (resuming recorded ones, waiting for those other processes run) and return
    their records, in grid order."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: expected one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: expected a positive integer")
    if address and executor != "ray":
        raise ConfigError("--address is for --executor ray")
    out = Path(out)
    if executor != "ray":  # Ray workers load data from their own nodes' caches, not the driver's
        preflight(cells, cache_dir)
    # Check every cell before training anything, so a mismatched spec fails fast.
    if not force:
        for spec in cells:
            check_resumable(spec, _ReadOnlyStore(spec.run_dir(out)), force=False)
    with ClaimKeeper() as claims:
        driver = _Driver(cells, out=out, cache_dir=cache_dir, force=force, emit=emit, claims=claims)
        backend: Any
        if executor == "ray":
            from albench.ray_executor import RayBackend

            backend = RayBackend(address=address, jobs=jobs, device=cells[0].device if cells else "auto")
            chains = group_chains(cells)
        elif jobs > 1:
            from albench.pool_executor import PoolBackend

            chains = group_chains(cells)
            # No more workers than chains: each costs a process start and a share of the CPUs.
            backend = PoolBackend(jobs=max(1, min(jobs, len(chains))), device=cells[0].device if cells else "auto")
        else:
            backend = InProcessBackend(driver)
            chains = [[i] for i in range(len(cells))]  # grid order; reuse goes through the disk cache
        abort = True
        try:
            driver.run(backend, chains)
            abort = False
        finally:
            backend.close(abort=abort)
    return [CellResult(spec, store.records()) for spec, store in zip(cells, driver.stores)]
