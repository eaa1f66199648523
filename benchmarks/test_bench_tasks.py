"""Speed of the task learners: one task training epoch against a bare loop over the same tensors.

The bare loop is the least a training epoch can cost: the same model, the same device tensors and
batch size, slices in order, forward, loss, backward, step, nothing else. The task epoch adds what a
task needs (shuffling with the round's generator, batch indexing, device augmentation, the task's
full loss such as CE + soft Dice, loss bookkeeping). The ratio should stay under 1.10; validation is
reported separately (it is the price of best-epoch selection, not overhead).

Run: ``pytest benchmarks/test_bench_tasks.py --benchmark-disable -s`` (prints the ratios), or with
pytest-benchmark enabled for the timing tables. ``ALBENCH_BENCH_THREADS`` sets torch's threads
(default 2).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F

from albench import datasets, tasks
from albench.tasks.trainer import make_optimizer, train_model
from albench.views import PoolViews

THREADS = int(os.environ.get("ALBENCH_BENCH_THREADS", "2"))
N_LABELLED = 120
EPOCHS = 3
REPEATS = 3


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


def _task(name: str, cache: Path):
    cls = tasks.get(name).obj
    recipe = datasets.get(cls.dataset).obj()
    data = recipe.load(cache=cache, params=recipe.protocol("quick", cls.dataset_params))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return cls(data=data, params=dict(cls.presets["quick"]["params"]), views=PoolViews(data, device))


def _bare_epochs(task) -> float:
    torch.manual_seed(0)
    model = task.make_model().train()
    opt = make_optimizer(task.params["optimizer"], model.parameters(), task.params["lr"])
    x, y = task.x["train"][:N_LABELLED], task.y["train"][:N_LABELLED]
    bs = int(task.params["batch_size"])
    if task.kind == "multilabel":
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.binary_cross_entropy_with_logits
    else:
        loss_fn = lambda out, t: F.cross_entropy(out, t.long())  # noqa: E731
    _sync(task)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        for s in range(0, N_LABELLED, bs):
            loss = loss_fn(model(x[s : s + bs]), y[s : s + bs])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _sync(task)
    return (time.perf_counter() - start) / EPOCHS


def _task_epochs(task, validate: bool) -> float:
    torch.manual_seed(0)
    model = task.make_model()
    opt = make_optimizer(task.params["optimizer"], model.parameters(), task.params["lr"])
    primary = task.metrics[0]
    _sync(task)
    start = time.perf_counter()
    train_model(
        model,
        x=task.x["train"],
        y=task.y["train"],
        ids=torch.arange(N_LABELLED, device=task.device),
        loss_fn=task.loss,
        validate=(lambda m: task.score(m, "val")) if validate else (lambda m: {primary: 0.0}),
        primary=primary,
        epochs=EPOCHS,
        batch_size=int(task.params["batch_size"]),
        optimizer=opt,
        generator=torch.Generator().manual_seed(0),
        augment=bool(task.params["augment"]),
        dense_target=task.kind == "segmentation",
    )
    _sync(task)
    return (time.perf_counter() - start) / EPOCHS


def _sync(task) -> None:
    if task.device.type == "cuda":
        torch.cuda.synchronize(task.device)


def _best(fn: Callable[[], float]) -> float:
    """The fastest of a few repeats: the least disturbed by other processes on a shared machine."""
    return min(fn() for _ in range(REPEATS))


@pytest.mark.parametrize("name", ["phantom-wt", "phantom-ml", "phantom-cls"])
def test_task_epoch_overhead_over_a_bare_loop(name: str, tmp_path_factory: Any, benchmark: Any) -> None:
    task = _task(name, tmp_path_factory.getbasetemp() / "cache")
    _bare_epochs(task)  # warm up
    bare = _best(lambda: _bare_epochs(task))
    epoch = _best(lambda: _task_epochs(task, validate=False))
    with_val = _best(lambda: _task_epochs(task, validate=True))
    ratio = epoch / bare
    print(
        f"\n{name}: {N_LABELLED} labelled, {THREADS} threads: bare {bare * 1e3:.1f} ms/epoch, task epoch "
        f"{epoch * 1e3:.1f} ms (ratio {ratio:.3f}), with validation {with_val * 1e3:.1f} ms (ratio {with_val / bare:.3f})"
    )
    benchmark.extra_info.update(bare_s=bare, task_s=epoch, task_with_val_s=with_val, ratio=ratio)
    benchmark.pedantic(lambda: _task_epochs(task, validate=False), rounds=1, iterations=1)
    assert ratio < 1.10
