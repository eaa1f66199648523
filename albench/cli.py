"""The ``albench`` command line.

Every user-facing failure is an :class:`~albench.errors.AlbenchError` (or a click usage error) and
prints as one line with a non-zero exit; other exceptions are bugs and print a traceback only with
``--debug``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from albench import __version__
from albench.errors import AlbenchError

# Off a terminal (logs, CI, pipes) rich would wrap at 80 columns; keep lines whole instead.
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else 200, soft_wrap=not sys.stderr.isatty())
stdout = Console(width=None if sys.stdout.isatty() else 160)


def _split(values: tuple[str, ...] | str) -> list[str]:
    if isinstance(values, str):
        values = (values,)
    names = [n.strip() for v in values for n in v.split(",")]
    if any(not n for n in names):
        raise click.BadParameter("expected a comma-separated list of names without empty items")
    return list(dict.fromkeys(names))


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """One line for user errors, a traceback for bugs only with --debug."""

    @functools.wraps(command)
    def wrapper(*args: Any, debug: bool = False, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AlbenchError as exc:
            if debug:
                raise
            stderr.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            stderr.print("interrupted; re-run the same command to resume", highlight=False)
            sys.exit(130)
        except Exception as exc:  # a bug: say so briefly unless --debug
            if debug:
                raise
            stderr.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (re-run with --debug for the traceback)",
                         highlight=False, soft_wrap=True)
            sys.exit(2)

    return click.option("--debug", is_flag=True, help="Show tracebacks.")(wrapper)


def _load_plugins(plugins: tuple[str, ...]) -> None:
    from albench.registry import load_plugin_file

    for plugin in plugins:
        load_plugin_file(plugin)


def _cache_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--cache", "cache", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Prepared-data cache (default $ALBENCH_CACHE or ~/.cache/albench).")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="albench")
def main() -> None:
    """albench: an active-learning benchmark for medical image analysis."""


@main.command()
@click.option("--strategy", "strategy", required=True, multiple=True, help="Strategy name(s), comma-separated.")
@click.option("--task", "task", required=True, multiple=True, help="Task name(s), comma-separated.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Number of seeds (0..N-1).")
@click.option("--preset", type=click.Choice(["paper", "quick", "smoke"]), default=None,
              help="Protocol preset (default: the task's own; quick for phantom tasks, paper for real ones).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a parameter, e.g. --set task.epochs=5.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--plugin", "plugins", multiple=True, type=click.Path(dir_okay=False), help="Python file registering plugins.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Cells run in parallel locally.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", default=None, help="Ray cluster address (with --executor ray).")
@click.option("--force", is_flag=True, help="Discard recorded rounds of these cells and start again.")
@click.option("--no-leaderboard", is_flag=True, help="Do not rebuild the leaderboard at the end.")
@_cache_option
@handle_errors
def run(strategy: tuple[str, ...], task: tuple[str, ...], seeds: int, preset: str | None, overrides: tuple[str, ...],
        out: Path, device: str, plugins: tuple[str, ...], jobs: int, executor: str, address: str | None,
        force: bool, no_leaderboard: bool, cache: Path | None) -> None:
    """Run the task x strategy x seed grid, resuming whatever is already recorded."""
    from albench.config import resolve_cells
    from albench.executors import run_grid
    from albench.progress import make_reporter

    _load_plugins(plugins)
    cells = resolve_cells(tasks=_split(task), strategies=_split(strategy), seeds=range(seeds), preset=preset,
                          overrides=overrides, device=device)
    with make_reporter(stderr, len(cells)) as reporter:
        results = run_grid(cells, out=out, cache_dir=cache, force=force, executor=executor, jobs=jobs,
                           address=address, emit=reporter.emit)
    _print_run_summary(results)
    if not no_leaderboard:
        _leaderboard(out)


def _print_run_summary(results: list[Any]) -> None:
    table = Table(title="albench run", show_lines=False)
    for column in ("task", "strategy", "seed", "rounds", "n_labelled", "final metric", "fit s", "select s"):
        table.add_column(column, justify="right" if column not in ("task", "strategy") else "left")
    for result in results:
        spec, records = result.spec, result.records
        last = records[-1] if records else None
        value = last["metrics"].get(spec.primary_metric) if last else None
        table.add_row(
            spec.task, spec.strategy, str(spec.seed), str(len(records)),
            str(last["n_labelled"]) if last else "-",
            f"{spec.primary_metric}={value:.4f}" if value is not None else "-",
            f"{sum(r['fit_seconds'] for r in records):.1f}", f"{sum(r['select_seconds'] for r in records):.1f}",
        )
    stdout.print(table)


def _leaderboard(out: Path) -> None:
    from albench.leaderboard import build_leaderboard, print_summary

    summary = build_leaderboard(out, console=stderr)
    print_summary(summary, stdout)
    stdout.print(f"leaderboard: {Path(out) / 'leaderboard'} (open report.html in a browser)", highlight=False)


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results"), show_default=True)
@handle_errors
def leaderboard(out: Path) -> None:
    """Rebuild OUT/leaderboard/ (CSVs, plots, report.html) from every run under OUT/runs."""
    _leaderboard(out)


@main.command(name="list")
@click.argument("kind", required=False, type=click.Choice(["strategies", "tasks", "datasets"]))
@click.option("--plugin", "plugins", multiple=True, type=click.Path(dir_okay=False), help="Python file registering plugins.")
@handle_errors
def list_(kind: str | None, plugins: tuple[str, ...]) -> None:
    """List registered strategies, tasks and data sets, with where each came from."""
    from albench.registries import datasets, strategies, tasks

    _load_plugins(plugins)
    registries = {"strategies": strategies, "tasks": tasks, "datasets": datasets}
    for name, registry in registries.items():
        if kind and kind != name:
            continue
        table = Table(title=name, title_justify="left")
        table.add_column("name")
        table.add_column("description")
        table.add_column("details")
        table.add_column("origin")
        for entry in registry.entries():
            details = _details(name, entry)
            table.add_row(entry.name, entry.description, details, entry.origin)
        stdout.print(table)


def _details(kind: str, entry: Any) -> str:
    obj = entry.obj
    if kind == "tasks":
        return f"kind={getattr(obj, 'kind', '?')} dataset={getattr(obj, 'dataset', '?')} preset={getattr(obj, 'default_preset', '?')}"
    if kind == "strategies":
        kinds = entry.meta.get("task_kinds")
        parts = [f"kinds={','.join(sorted(kinds)) if kinds else 'all'}"]
        if entry.meta.get("task_agnostic"):
            parts.append("task-agnostic")
        if entry.meta.get("reference"):
            parts.append("reference")
        return " ".join(parts)
    return "needs --root" if getattr(obj, "requires_root", False) else "embedded"


@main.command()
@click.argument("dataset")
@click.option("--root", type=click.Path(path_type=Path), default=None, help="The raw data set's folder.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Processes decoding files.")
@click.option("--force", is_flag=True, help="Prepare again even if this protocol is already prepared.")
@click.option("--preset", type=click.Choice(["paper", "quick", "smoke"]), default="paper", show_default=True,
              help="Protocol preset (only the phantom's size depends on it).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a protocol parameter.")
@_cache_option
@handle_errors
def prepare(dataset: str, root: Path | None, jobs: int, force: bool, preset: str, overrides: tuple[str, ...],
            cache: Path | None) -> None:
    """Prepare DATASET (brats, covidqu, phantom) once into the cache."""
    from albench.registries import datasets
    from albench.config import coerce, parse_overrides
    from albench.errors import ConfigError
    from albench.prepared import default_cache_dir

    recipe = datasets.get(dataset).obj()
    if getattr(recipe, "requires_root", False) and root is None:
        raise ConfigError(f"albench prepare {dataset}: --root DIR is required (the raw data set's folder)")
    defaults = dict(recipe.protocol(preset, {}))
    fixed = {key: coerce(key, value, defaults.get(key)) for key, value in parse_overrides(overrides)}
    params = dict(recipe.protocol(preset, fixed))
    for key in fixed:
        if key not in params:
            raise ConfigError(f"--set {key}: unknown protocol parameter of {dataset} (valid: {', '.join(sorted(params))})")
    path = recipe.prepare(cache=cache or default_cache_dir(), params=params, root=root, jobs=jobs, force=force)
    stdout.print(f"prepared {dataset}: {path}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    main()
