"""The leaderboard: every recorded run of ``<out>/runs`` turned into CSVs, plots and one HTML report.

Public API (the CLI imports these lazily)::

    build_leaderboard(out, console=None) -> summary DataFrame   # writes <out>/leaderboard/
    print_summary(summary, console)                               # the terminal table

Output (docs/leaderboard.md describes every column and rule):

``<task>.csv``          one row per strategy: AULC / final mean ± SD, seed-paired tests vs random and vaal
``<task>-curves.csv``   every recorded value, long format
``<task>-penalty.csv``  BADGE-style pairwise penalty matrix
``summary.csv``         task × strategy headline and rank
``<task>-curves.{png,svg}``, ``<task>-penalty.*``, ``<task>-discriminator.*``, ``<task>-overlay.*``
``report.html``         self-contained (images inlined)

Every file is written through a temporary file and ``os.replace``, so a reader (or a second
``albench leaderboard`` running at the same time) never sees half a file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
from rich.console import Console
from rich.table import Table

from albench.errors import AlbenchError
from albench.prepared import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["build_leaderboard", "print_summary"]


def _write_csv(path: Path, frame: pd.DataFrame, *, index: bool = False) -> None:
    atomic_write_text(path, frame.to_csv(index=index, float_format="%.10g"))


def build_leaderboard(out: Path, *, console: Console | None = None) -> pd.DataFrame:
    """Read ``out/runs``, write ``out/leaderboard/`` and return the summary table.

    Raises :class:`~albench.errors.AlbenchError` when there is no run to read, because an empty
    leaderboard would look like a result.
    """
    # Imported here so that ``import albench.leaderboard`` stays cheap for the CLI.
    from albench.leaderboard.load import load_runs
    from albench.leaderboard.plots import (
        discriminator_histograms,
        learning_curves,
        overlay,
        penalty_heatmap,
        render,
    )
    from albench.leaderboard.report import Figures, render_report
    from albench.leaderboard.tables import analyse_task, summary_table

    out = Path(out)
    inventory = load_runs(out)
    for warning in inventory.warnings:
        if console is not None:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False, markup=True)
    if not inventory.runs:
        raise AlbenchError(
            f"no runs under {out / 'runs'}: run `albench run --strategy ... --task ... --out {out}` first"
        )
    dest = out / "leaderboard"
    dest.mkdir(parents=True, exist_ok=True)

    analyses = [analyse_task(task, inventory.for_task(task)) for task in inventory.tasks()]
    all_figures: dict[str, Figures] = {}
    for a in analyses:
        _write_csv(dest / f"{a.task}.csv", a.table)
        _write_csv(dest / f"{a.task}-curves.csv", a.curves_long)
        _write_csv(dest / f"{a.task}-penalty.csv", a.penalty, index=True)

        figures = Figures()
        made: dict[str, Figure | None] = {
            "curves": learning_curves(a),
            "penalty": penalty_heatmap(a),
            "discriminator": discriminator_histograms(a),
        }
        chosen = overlay(a)
        made["overlay"] = chosen[0] if chosen else None
        for name, fig in made.items():
            if fig is None:
                continue
            rendered = render(fig)
            atomic_write_bytes(dest / f"{a.task}-{name}.png", rendered.png)
            atomic_write_bytes(dest / f"{a.task}-{name}.svg", rendered.svg)
            setattr(figures, "histogram" if name == "discriminator" else name, rendered.png)
        figures.captions["curves"] = (
            f"Mean ± SD (sample SD) of {a.primary_metric} over seeds {' '.join(map(str, a.seeds))}."
            + (" Dashed: full-data upper bound." if a.full_values.size else "")
        )
        figures.captions["histogram"] = (
            "Densities; dashed line: the score of the last item selected (lowest scores are selected)."
        )
        if chosen:
            c = chosen[1]
            pair = f"{c.strategy_a} vs {c.strategy_b}" if c.strategy_b else c.strategy_a
            figures.captions["overlay"] = (
                f"{pair}, seed {c.seed}, round {c.round} ({c.n_labelled} labelled), slice {c.slice_name}: "
                "white = both, blue = missed by the first, red = extra in the first."
            )
        all_figures[a.task] = figures

    summary = summary_table(analyses)
    _write_csv(dest / "summary.csv", summary)
    atomic_write_text(dest / "report.html", render_report(analyses, all_figures, summary, inventory.warnings))
    return summary


def _cell(value: object, digits: int = 3) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_summary(summary: pd.DataFrame, console: Console) -> None:
    """``summary.csv`` as a rich table: one block of rows per task, best rank first."""
    table = Table(title="albench leaderboard (AULC of the primary test metric)", show_lines=False)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("task", "left"),
        ("strategy", "left"),
        ("rank", "right"),
        ("n", "right"),
        ("AULC", "right"),
        ("final", "right"),
        ("Δ vs random", "right"),
        ("p Holm", "right"),
        ("status", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    if summary.empty:
        console.print(table)
        return
    ordered = summary.assign(_r=summary["rank"].astype("Float64").fillna(math.inf)).sort_values(
        ["task", "_r", "strategy"], kind="stable"
    )
    previous = None
    for rec in ordered.to_dict("records"):
        if previous is not None and rec["task"] != previous:
            table.add_section()
        previous = rec["task"]
        aulc = _cell(rec["aulc_mean"]) + ("" if _cell(rec["aulc_sd"]) == "–" else f" ± {_cell(rec['aulc_sd'])}")
        final = _cell(rec["final_mean"]) + ("" if _cell(rec["final_sd"]) == "–" else f" ± {_cell(rec['final_sd'])}")
        delta = rec["delta_aulc"]
        delta_text = "–" if isinstance(delta, float) and math.isnan(delta) else f"{delta:+.3f}"
        p = rec["p_holm"]
        p_text = "–" if isinstance(p, float) and math.isnan(p) else f"{p:.3g}{' ' + rec['sig'] if rec['sig'] else ''}"
        table.add_row(
            str(rec["task"]),
            str(rec["strategy"]),
            _cell(rec["rank"]),
            _cell(rec["n_seeds"]),
            aulc,
            final,
            delta_text,
            p_text,
            str(rec["status"]),
        )
    console.print(table)
