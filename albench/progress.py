"""Showing a grid's progress: a rich live display on a terminal, plain log lines otherwise.

The runner emits events (dicts); a reporter turns them into output. Events from other processes
or Ray workers arrive through the same ``emit`` call, so every executor shows the same thing.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def _metric_text(record: dict[str, Any]) -> str:
    tests = {k: v for k, v in record.get("metrics", {}).items() if k.startswith("test_")}
    first = next(iter(tests.items()), None)
    text = f"n={record['n_labelled']}"
    if first:
        text += f" {first[0]}={first[1]:.4f}"
    text += f" fit={record['fit_seconds']:.1f}s"
    if record.get("selection_reused"):
        text += " select=reused"
    elif record.get("next_added"):
        text += f" select={record['select_seconds']:.1f}s"
    return text


class PlainReporter:
    """One line per cell start, finished round, reuse and cell end (logs, CI, pipes)."""

    def __init__(self, console: Console, total_cells: int) -> None:
        self.console = console
        self.total = total_cells
        self.started = 0
        self.finished = 0

    def __enter__(self) -> "PlainReporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def emit(self, event: dict[str, Any]) -> None:
        kind, cell = event["event"], event["cell"]
        stamp = time.strftime("%H:%M:%S")
        if kind == "start":
            self.started += 1
            note = f" (resuming at round {event['first_round']})" if event["first_round"] else ""
            self.console.print(f"{stamp} [{self.started}/{self.total}] {cell}: {event['rounds']} rounds{note}", highlight=False, markup=False)
        elif kind == "round":
            self.console.print(f"{stamp} {cell} round {event['round']}: {_metric_text(event['record'])}", highlight=False, markup=False)
        elif kind == "reused":
            self.console.print(f"{stamp} {cell} round {event['round']}: reused the stored task-agnostic selection", highlight=False, markup=False)
        elif kind in ("done", "skipped"):
            self.finished += 1
            if kind == "skipped":
                self.started += 1
                self.console.print(f"{stamp} [{self.started}/{self.total}] {cell}: already complete, skipped", highlight=False, markup=False)
        elif kind == "message":
            self.console.print(f"{stamp} {cell}: {event['text']}", highlight=False, markup=False)


class RichReporter(PlainReporter):
    """Live bars for the grid, the current cell's rounds, and the current epoch or iteration."""

    def __init__(self, console: Console, total_cells: int) -> None:
        super().__init__(console, total_cells)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console, transient=False,
        )
        self.grid = self.progress.add_task("grid", total=total_cells, info="")
        self.rounds = self.progress.add_task("rounds", total=1, info="")
        self.stage = self.progress.add_task("stage", total=1, info="")

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def emit(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "progress":
            total = event.get("epochs") or event.get("iters") or 1
            done = event.get("epoch", event.get("it", 0))
            loss = event.get("loss")
            info = f"loss={loss:.4f}" if isinstance(loss, float) else ""
            self.progress.update(self.stage, description=f"  {event['stage']}", total=total, completed=done, info=info)
            return
        if kind == "start":
            self.progress.update(self.rounds, description=f" {event['cell']}", total=event["rounds"], completed=event["first_round"])
        elif kind == "round":
            self.progress.update(self.rounds, completed=event["round"] + 1, info=_metric_text(event["record"]))
        super().emit(event)
        self.progress.update(self.grid, completed=self.finished)


def make_reporter(console: Console, total_cells: int) -> PlainReporter:
    """Rich bars when the console is an interactive terminal, plain lines otherwise."""
    return RichReporter(console, total_cells) if console.is_terminal and sys.stderr.isatty() else PlainReporter(console, total_cells)
