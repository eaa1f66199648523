"""The round runner: one (task, strategy, seed) cell, from the initial set to the last round.

Per round: train the task on the labelled set, evaluate, ask the strategy for ``budget`` new ids,
check them, and commit the round (metrics + the selection) before the next starts. Everything the
runner needs to continue is in the committed records, so a re-run resumes at the first missing
round and recomputes nothing that was recorded.

Where results go is the sink's business (:class:`RunSink` writes the run folder; the Ray executor
ships records back to the driver), so the same loop serves every executor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch

from albench.registries import datasets as dataset_registry
from albench.registries import strategies as strategy_registry
from albench.registries import tasks as task_registry
from albench.config import CellSpec
from albench.context import SelectionContext
from albench.device import peak_memory_mb, reset_peak_memory, resolve_device
from albench.environment import environment_manifest
from albench.errors import AlbenchError, ConfigError, SelectionError
from albench.interfaces import FitResult
from albench.prepared import default_cache_dir, protocol_hash
from albench.seeding import enable_determinism, numpy_rng, seed_everything, torch_generator
from albench.selection_cache import Selection, SelectionCache
from albench.store import RunStore, labelled_sha256
from albench.views import PoolViews

#: ``emit(event)``: progress events, dicts with at least ``cell`` and ``event`` keys.
Emit = Callable[[dict[str, Any]], None]


def _quiet(_event: dict[str, Any]) -> None:
    return None


class RecordSink(Protocol):
    """Where a cell's spec and round records go."""

    def start(self, spec: Mapping[str, Any]) -> None: ...

    def commit(self, record: Mapping[str, Any], diagnostics: Mapping[str, np.ndarray],
               artifacts: Mapping[str, np.ndarray]) -> None: ...


class RunSink:
    """Writes straight into the run folder (in-process and process-pool executors)."""

    def __init__(self, store: RunStore, metrics: list[str]) -> None:
        self.store = store
        self.metrics = metrics

    def start(self, spec: Mapping[str, Any]) -> None:
        self.store.sweep_temporaries()
        self.store.write_spec(spec)

    def commit(self, record: Mapping[str, Any], diagnostics: Mapping[str, np.ndarray],
               artifacts: Mapping[str, np.ndarray]) -> None:
        self.store.commit(record, diagnostics=diagnostics, artifacts=artifacts, metrics=self.metrics)


def check_resumable(spec: CellSpec, store: RunStore, *, force: bool) -> list[dict[str, Any]]:
    """The records a run may continue from; refuses to mix a different spec into a run folder."""
    if force:
        store.clear()
        return []
    recorded = store.load_spec()
    if recorded is None:
        return store.records()
    new = spec.comparable()
    old = {k: recorded.get(k) for k in new}
    if old != new:
        changed = sorted(k for k in new if old.get(k) != new[k])
        raise AlbenchError(
            f"{store.dir}: recorded with a different configuration ({', '.join(changed)} differ); "
            "use --force to restart it or --out to write elsewhere"
        )
    records = store.records()
    store.rebuild(spec.metrics) if records else None
    return records


def check_fits(spec: CellSpec, pool_size: int) -> None:
    """The initial set plus every round's budget must fit in the training pool."""
    rounds = 0 if spec.reference else spec.protocol["rounds"]
    needed = spec.protocol["initial"] + spec.protocol["budget"] * rounds
    if not spec.reference and needed > pool_size:
        raise ConfigError(
            f"task {spec.task}: initial {spec.protocol['initial']} + {rounds} rounds x budget "
            f"{spec.protocol['budget']} = {needed} exceeds the training pool of {pool_size} items"
        )


def preflight(cells: list[CellSpec], cache_dir: Path | None) -> None:
    """Open every data set of the grid and check that each cell fits, before anything is written.

    A missing prepared set or an oversized budget then fails with nothing created under ``--out``.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    pool_sizes: dict[tuple[str, str], int] = {}
    for spec in cells:
        key = (spec.dataset, protocol_hash(spec.dataset_params))
        if key not in pool_sizes:
            data = dataset_registry.get(spec.dataset).obj().load(cache=cache_dir, params=spec.dataset_params)
            pool_sizes[key] = len(data.train)
        check_fits(spec, pool_sizes[key])


def initial_labelled(spec: CellSpec, pool_size: int) -> np.ndarray:
    """The seed's initial labelled set: the same for every strategy and every task of the data set."""
    if spec.reference:
        return np.arange(pool_size, dtype=np.int64)
    rng = numpy_rng(spec.seed, "initial", spec.dataset, protocol_hash(spec.dataset_params), spec.protocol["initial"])
    return np.sort(rng.choice(pool_size, size=spec.protocol["initial"], replace=False)).astype(np.int64)


def validate_selection(spec: CellSpec, round_index: int, ids: Any, labelled: np.ndarray, pool_size: int, budget: int) -> np.ndarray:
    """The strategy's answer as sorted int64 ids, or a SelectionError that names the strategy."""
    where = f"strategy {spec.strategy!r} (round {round_index})"
    try:
        array = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    except Exception as exc:  # e.g. a list of non-numbers
        raise SelectionError(f"{where} returned {type(ids).__name__}, expected integer ids") from exc
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise SelectionError(f"{where} returned an array of shape {array.shape} and dtype {array.dtype}, expected 1-D integer ids")
    array = array.astype(np.int64)
    if len(array) != budget:
        raise SelectionError(f"{where} returned {len(array)} ids, expected exactly {budget}")
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise SelectionError(f"{where} returned duplicate ids, e.g. {int(unique[counts > 1][0])}")
    if array.min(initial=0) < 0 or array.max(initial=0) >= pool_size:
        raise SelectionError(f"{where} returned ids outside the pool [0, {pool_size})")
    already = np.intersect1d(array, labelled)
    if len(already):
        raise SelectionError(f"{where} returned already-labelled ids, e.g. {int(already[0])}")
    return np.sort(array)


def run_cell(
    spec: CellSpec,
    *,
    sink: RecordSink,
    done: list[dict[str, Any]],
    cache_dir: Path | None = None,
    selections: SelectionCache | None = None,
    emit: Emit = _quiet,
) -> list[dict[str, Any]]:
    """Run (or finish) one cell. ``done`` are its committed records; returns all records."""
    records = list(done)
    rounds = 0 if spec.reference else spec.protocol["rounds"]
    if len(records) >= rounds + 1:
        emit({"cell": spec.label, "event": "skipped", "rounds": rounds + 1})
        return records

    determinism = enable_determinism()
    device = resolve_device(spec.device)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    data = dataset_registry.get(spec.dataset).obj().load(cache=cache_dir, params=spec.dataset_params)
    pool_size = len(data.train)
    check_fits(spec, pool_size)
    views = PoolViews(data, device)
    task = task_registry.get(spec.task).obj(data=data, params=dict(spec.task_params), views=views)
    strategy = strategy_registry.get(spec.strategy).obj(**spec.strategy_params)
    describe = getattr(task, "describe", None)
    sink.start({
        **spec.to_dict(),
        "environment": environment_manifest(device, determinism),
        "task_info": describe() if describe else {},
        "pool_size": pool_size,
    })

    labelled = initial_labelled(spec, pool_size)
    added = labelled.copy()
    for rec in records:  # replay what was recorded
        if rec["labelled_sha256"] != labelled_sha256(labelled):
            raise AlbenchError(f"{spec.label}: recorded round {rec['round']} does not match this run's labelled set; use --force")
        next_added = np.asarray(rec.get("next_added") or [], dtype=np.int64)
        added = next_added
        labelled = np.union1d(labelled, next_added)

    emit({"cell": spec.label, "event": "start", "first_round": len(records), "rounds": rounds + 1})
    for r in range(len(records), rounds + 1):
        record, diagnostics, artifacts = _one_round(spec, task, strategy, views, r, rounds, labelled, added, pool_size, selections, emit)
        sink.commit(record, diagnostics, artifacts)
        records.append(record)
        emit({"cell": spec.label, "event": "round", "round": r, "rounds": rounds + 1, "record": record})
        added = np.asarray(record["next_added"], dtype=np.int64)
        labelled = np.union1d(labelled, added)
    views.release()
    emit({"cell": spec.label, "event": "done", "rounds": rounds + 1})
    return records


def _one_round(spec: CellSpec, task: Any, strategy: Any, views: PoolViews, r: int, rounds: int,
               labelled: np.ndarray, added: np.ndarray, pool_size: int, selections: SelectionCache | None,
               emit: Emit) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    device = views.device

    def progress(stage: str, **fields: Any) -> None:
        emit({"cell": spec.label, "event": "progress", "round": r, "stage": stage, **fields})

    reset_peak_memory(device)
    seed_everything(spec.seed, "round", r, "model")
    generator = torch_generator(spec.seed, "round", r, "data")
    started = time.perf_counter()
    fit: FitResult = task.fit(labelled, generator=generator, progress=progress)
    fit_seconds = time.perf_counter() - started
    metrics = {f"test_{k}": float(v) for k, v in fit.test.items()}
    metrics.update({f"val_{k}": float(v) for k, v in fit.val.items()})

    selection = Selection(added=[])
    reused = False
    select_seconds = 0.0
    if r < rounds:
        sha = labelled_sha256(labelled)
        cached = selections.get(spec, device.type, r, sha) if (selections and spec.task_agnostic) else None
        if cached is not None:
            selection, reused = cached, True
            emit({"cell": spec.label, "event": "reused", "round": r})
        else:
            started = time.perf_counter()
            selection = _select(spec, strategy, task, fit, views, r, labelled, pool_size, progress)
            select_seconds = time.perf_counter() - started
            selection.seconds = select_seconds
            if selections and spec.task_agnostic:
                selections.put(spec, device.type, r, sha, selection)

    record = {
        "round": r,
        "n_labelled": int(len(labelled)),
        "metrics": metrics,
        "fit_seconds": round(fit_seconds, 4),
        "select_seconds": round(select_seconds, 4),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "scalars": selection.scalars,
        "added": [int(i) for i in added],
        "labelled_sha256": labelled_sha256(labelled),
        "next_added": [int(i) for i in selection.added],
        "selection_reused": reused,
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "fit_info": fit.info,
    }
    return record, selection.diagnostics, dict(fit.arrays)


def _select(spec: CellSpec, strategy: Any, task: Any, fit: FitResult, views: PoolViews, r: int,
            labelled: np.ndarray, pool_size: int, progress: Callable[..., None]) -> Selection:
    budget = spec.protocol["budget"]
    agnostic = spec.task_agnostic
    model = fit.model
    embed = getattr(task, "embed", None)
    ctx = SelectionContext(
        strategy=spec.strategy,
        round_index=r,
        labelled=labelled,
        pool_size=pool_size,
        views=views,
        task_kind=spec.task_kind,
        generator=torch_generator(spec.seed, "strategy", spec.strategy, r),
        rng=numpy_rng(spec.seed, "strategy", spec.strategy, r, "numpy"),
        predict=None if agnostic else (lambda ids: task.predict(model, ids)),
        embed=None if (agnostic or embed is None) else (lambda ids: embed(model, ids)),
        progress=progress,
        autocast=views.device.type == "cuda",
    )
    chosen = validate_selection(spec, r, strategy.select(ctx, budget), labelled, pool_size, budget)
    return Selection(added=[int(i) for i in chosen], scalars=dict(ctx.scalars), diagnostics=dict(ctx.diagnostics))
