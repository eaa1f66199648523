"""From runs to tables: the per-task analysis behind ``<task>.csv``, the curves, the penalty matrix
and ``summary.csv``.

The rules a reader must be able to rely on (docs/leaderboard.md says the same):

* **One seed set and one grid per task.** Every number of a task's table is computed on the seeds
  for which *every* compared strategy has a complete run, and on the labelled sizes that all those
  runs recorded. Means are therefore comparable across rows, ``delta_aulc`` equals the difference
  of the two ``aulc_mean`` values, and whatever was left out is named in the ``note`` column.
* **Incomplete runs are reported, not averaged.** A crashed run (fewer rounds than its protocol)
  is listed with ``status`` and ``note``; it contributes to no mean. A strategy with no complete run
  gets a row with no numbers.
* **``full`` is the upper bound**, not a competitor: its own mean ± SD, no AULC, no rank, no tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from albench.leaderboard.load import FULL, Run
from albench.leaderboard.stats import (
    ALPHA,
    Paired,
    aulc,
    holm,
    mean_sd,
    paired_compare,
    penalty_matrix,
)

#: Reference strategies every other strategy is compared against, in column order. The first one's
#: columns carry no suffix (the contract's ``delta_aulc``, ``p_ttest`` ...), the others ``_vs_<name>``.
REFERENCES = ("random", "vaal")
#: Marker for a Holm-adjusted p below :data:`~albench.leaderboard.stats.ALPHA`.
MARKER = "*"

_COMPARISON_FIELDS = (
    "delta_aulc",
    "delta_ci_low",
    "delta_ci_high",
    "p_ttest",
    "p_holm",
    "sig",
    "d_z",
    "wins",
    "p_wilcoxon",
    "p_signflip",
)


def comparison_columns(reference: str) -> list[str]:
    """Column names of the comparison against ``reference`` (unsuffixed for ``random``)."""
    suffix = "" if reference == REFERENCES[0] else f"_vs_{reference}"
    return [f"{name}{suffix}" for name in _COMPARISON_FIELDS]


TASK_COLUMNS = [
    "strategy",
    "role",
    "status",
    "n_seeds",
    "seeds",
    "aulc_mean",
    "aulc_sd",
    "final_mean",
    "final_sd",
    *comparison_columns("random"),
    *comparison_columns("vaal"),
    "n_labelled",
    "primary_metric",
    "note",
]

SUMMARY_COLUMNS = [
    "task",
    "strategy",
    "role",
    "status",
    "primary_metric",
    "n_seeds",
    "aulc_mean",
    "aulc_sd",
    "final_mean",
    "final_sd",
    "delta_aulc",
    "p_holm",
    "sig",
    "rank",
]


def strategy_order(names: Iterable[str]) -> list[str]:
    """References first (random, vaal), then the rest alphabetically, ``full`` last."""
    names = set(names)
    head = [name for name in REFERENCES if name in names]
    tail = [FULL] if FULL in names else []
    return head + sorted(names - set(head) - set(tail)) + tail


@dataclass
class TaskAnalysis:
    """Everything the tables, plots and report need to know about one task."""

    task: str
    primary_metric: str
    task_kind: str
    runs: list[Run]
    strategies: list[str]  # AL strategies with at least one complete run on the shared seeds
    all_strategies: list[str]  # every strategy folder of the task, full included
    seeds: list[int]
    grid: list[int]
    curves: dict[str, np.ndarray]  # strategy -> (n_seeds, n_sizes) primary metric
    aulcs: dict[str, np.ndarray]
    finals: dict[str, np.ndarray]
    comparisons: dict[tuple[str, str], Paired]  # (strategy, reference) -> paired comparison
    p_holm: dict[tuple[str, str], float]
    full_values: np.ndarray  # the upper bound's final metric per complete seed
    full_n_labelled: list[int]
    notes: list[str] = field(default_factory=list)  # task-level notes
    row_notes: dict[str, list[str]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    penalty: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves_long: pd.DataFrame = field(default_factory=pd.DataFrame)

    def mean_sd_curve(self, strategy: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sample SD of the primary metric at each grid size (SD NaN with one seed)."""
        values = self.curves[strategy]
        mean = values.mean(axis=0)
        sd = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.full(values.shape[1], np.nan)
        return mean, sd

    def ranked(self) -> list[str]:
        """AL strategies by AULC mean, best first (ties keep the table order)."""
        scored = [(s, float(np.mean(self.aulcs[s]))) for s in self.strategies if self.aulcs[s].size]
        scored = [(s, v) for s, v in scored if np.isfinite(v)]
        return [s for s, _ in sorted(scored, key=lambda item: -item[1])]


def _fmt_list(values: Iterable[int]) -> str:
    return " ".join(str(v) for v in values)


def _metric_value(run: Run, n_labelled: int, metric: str) -> float:
    rows = run.rounds[run.rounds["n_labelled"] == n_labelled]
    return float(rows[metric].iloc[-1])


def analyse_task(task: str, runs: list[Run]) -> TaskAnalysis:
    """Apply the intersection rule and compute every per-task statistic."""
    notes: list[str] = []
    row_notes: dict[str, list[str]] = {}
    status: dict[str, str] = {}
    primaries = sorted({run.primary_metric for run in runs})
    primary = primaries[0]
    if len(primaries) > 1:
        notes.append(f"runs disagree on the primary metric ({', '.join(primaries)}); only {primary} runs are used")
        runs_used = [run for run in runs if run.primary_metric == primary]
    else:
        runs_used = list(runs)
    kinds = sorted({run.task_kind for run in runs_used if run.task_kind})
    all_strategies = strategy_order({run.strategy for run in runs})

    by_strategy: dict[str, list[Run]] = {}
    for run in runs_used:
        by_strategy.setdefault(run.strategy, []).append(run)

    # Incomplete runs: reported per strategy, never averaged.
    for strategy in all_strategies:
        bad = [run for run in by_strategy.get(strategy, []) if not run.complete]
        for run in bad:
            row_notes.setdefault(strategy, []).append(f"seed {run.seed} not used: {run.problem}")

    complete = {s: {run.seed: run for run in rs if run.complete} for s, rs in by_strategy.items() if s != FULL}
    candidates = [s for s in strategy_order(complete) if complete[s]]
    for strategy in strategy_order(complete):
        if not complete[strategy]:
            status[strategy] = "incomplete"
    seeds: list[int] = sorted(set.intersection(*(set(complete[s]) for s in candidates))) if candidates else []
    if candidates and not seeds:
        notes.append("no seed has a complete run for every strategy: nothing can be compared")
    for strategy in candidates:
        extra = sorted(set(complete[strategy]) - set(seeds))
        if extra:
            row_notes.setdefault(strategy, []).append(
                f"seed(s) {_fmt_list(extra)} left out: not complete for every strategy of the task"
            )
    strategies = candidates if seeds else []
    for strategy in candidates:
        if strategy not in strategies:
            status[strategy] = "not comparable"

    # The shared labelled-size grid.
    grid: list[int] = []
    if strategies:
        sizes = [set(int(v) for v in complete[s][seed].rounds["n_labelled"]) for s in strategies for seed in seeds]
        union = set.union(*sizes)
        grid = sorted(set.intersection(*sizes))
        dropped = sorted(union - set(grid))
        if dropped:
            notes.append(
                f"labelled sizes {_fmt_list(dropped)} left out: not recorded by every strategy and seed; "
                f"compared on {_fmt_list(grid)} only"
            )
        if len(grid) < 2:
            notes.append("fewer than two shared labelled sizes: AULC is undefined")

    curves: dict[str, np.ndarray] = {}
    aulcs: dict[str, np.ndarray] = {}
    finals: dict[str, np.ndarray] = {}
    for strategy in strategies:
        values = np.array(
            [[_metric_value(complete[strategy][seed], n, primary) for n in grid] for seed in seeds], dtype=float
        ).reshape(len(seeds), len(grid))
        curves[strategy] = values
        aulcs[strategy] = np.array([aulc(grid, row) for row in values]) if grid else np.array([])
        finals[strategy] = values[:, -1] if grid else np.array([])
        incomplete_seen = any(not run.complete for run in by_strategy.get(strategy, []))
        status[strategy] = "partial" if incomplete_seen else "complete"

    # Paired comparisons against each reference present, Holm over the distinct pairs of the task.
    comparisons: dict[tuple[str, str], Paired] = {}
    for reference in REFERENCES:
        if reference not in strategies:
            if any(s != reference for s in strategies):
                notes.append(f"no complete '{reference}' run on the shared seeds: no comparison against it")
            continue
        for strategy in strategies:
            if strategy != reference:
                comparisons[(strategy, reference)] = paired_compare(aulcs[strategy], aulcs[reference])
    pair_keys = sorted({frozenset(key) for key in comparisons}, key=lambda k: sorted(k))
    pair_p = [next(comparisons[key].p_ttest for key in comparisons if frozenset(key) == pair) for pair in pair_keys]
    adjusted = dict(zip(pair_keys, holm(pair_p)))
    p_holm = {key: float(adjusted[frozenset(key)]) for key in comparisons}

    # The upper bound.
    full_runs = [run for run in by_strategy.get(FULL, []) if run.complete]
    full_values = np.array([float(run.rounds[primary].iloc[-1]) for run in full_runs], dtype=float)
    full_n = sorted({int(run.rounds["n_labelled"].iloc[-1]) for run in full_runs})
    if FULL in by_strategy:
        status[FULL] = "upper bound" if full_runs else "incomplete"

    analysis = TaskAnalysis(
        task=task,
        primary_metric=primary,
        task_kind=kinds[0] if kinds else "",
        runs=runs_used,
        strategies=strategies,
        all_strategies=all_strategies,
        seeds=seeds,
        grid=grid,
        curves=curves,
        aulcs=aulcs,
        finals=finals,
        comparisons=comparisons,
        p_holm=p_holm,
        full_values=full_values,
        full_n_labelled=full_n,
        notes=notes,
        row_notes=row_notes,
        status=status,
    )
    analysis.table = _task_table(analysis, complete)
    analysis.penalty = penalty_matrix({s: curves[s] for s in strategies})
    analysis.curves_long = curves_long(runs_used)
    return analysis


def _task_table(a: TaskAnalysis, complete: dict[str, dict[int, Run]]) -> pd.DataFrame:
    rows = []
    for strategy in a.all_strategies:
        row: dict[str, object] = {col: np.nan for col in TASK_COLUMNS}
        row.update(strategy=strategy, primary_metric=a.primary_metric, status=a.status.get(strategy, ""))
        notes = list(a.row_notes.get(strategy, []))
        if strategy == FULL:
            row["role"] = "upper bound"
            mean, sd = mean_sd(a.full_values)
            seeds = sorted(run.seed for run in a.runs if run.is_full and run.complete)
            row.update(n_seeds=len(seeds), seeds=_fmt_list(seeds), final_mean=mean, final_sd=sd)
            row["n_labelled"] = _fmt_list(a.full_n_labelled)
            notes.append("upper bound (whole training pool): not ranked, not tested")
        else:
            row["role"] = "baseline" if strategy in REFERENCES else "strategy"
            if strategy in a.strategies:
                row.update(n_seeds=len(a.seeds), seeds=_fmt_list(a.seeds), n_labelled=_fmt_list(a.grid))
                row["aulc_mean"], row["aulc_sd"] = mean_sd(a.aulcs[strategy])
                row["final_mean"], row["final_sd"] = mean_sd(a.finals[strategy])
            else:
                row["n_seeds"] = 0
                row["seeds"] = ""
            for reference in REFERENCES:
                cols = dict(zip(_COMPARISON_FIELDS, comparison_columns(reference)))
                comp = a.comparisons.get((strategy, reference))
                if comp is None:
                    continue
                p_adj = a.p_holm[(strategy, reference)]
                row[cols["delta_aulc"]] = comp.delta
                row[cols["delta_ci_low"]] = comp.ci_low
                row[cols["delta_ci_high"]] = comp.ci_high
                row[cols["p_ttest"]] = comp.p_ttest
                row[cols["p_holm"]] = p_adj
                row[cols["sig"]] = MARKER if np.isfinite(p_adj) and p_adj < ALPHA else ""
                row[cols["d_z"]] = comp.d_z
                row[cols["wins"]] = comp.wins_text
                row[cols["p_wilcoxon"]] = comp.p_wilcoxon
                row[cols["p_signflip"]] = comp.p_signflip
        notes = notes + ([f"task: {n}" for n in a.notes] if strategy == a.all_strategies[0] else [])
        row["note"] = "; ".join(notes)
        rows.append(row)
    table = pd.DataFrame(rows, columns=TASK_COLUMNS)
    for col in ("sig", "sig_vs_vaal"):
        table[col] = table[col].astype(object).where(table[col].notna(), "")
    return table


def curves_long(runs: list[Run]) -> pd.DataFrame:
    """Every recorded value of every run (incomplete ones and ``full`` included), long format.

    Columns: strategy, seed, n_labelled, metric, value, then round and complete, so that nobody has
    to guess which points came from a crashed run.
    """
    frames = []
    for run in runs:
        if run.rounds.empty:
            continue
        metrics = [c for c in run.rounds.columns if c.startswith(("test_", "val_"))]
        long = run.rounds.melt(id_vars=["round", "n_labelled"], value_vars=metrics, var_name="metric")
        long.insert(0, "seed", run.seed)
        long.insert(0, "strategy", run.strategy)
        long["complete"] = run.complete
        frames.append(long)
    columns = ["strategy", "seed", "n_labelled", "metric", "value", "round", "complete"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    return out.sort_values(["strategy", "seed", "metric", "n_labelled"], kind="stable").reset_index(drop=True)


def summary_table(analyses: list[TaskAnalysis]) -> pd.DataFrame:
    """One row per (task, strategy): the headline numbers and the AULC rank within the task."""
    rows = []
    for a in analyses:
        ranks = pd.Series({s: float(np.mean(a.aulcs[s])) for s in a.strategies if a.aulcs[s].size}, dtype=float)
        ranks = ranks[np.isfinite(ranks)].rank(ascending=False, method="min")
        for record in a.table.to_dict("records"):
            strategy = record["strategy"]
            rows.append(
                {
                    "task": a.task,
                    "strategy": strategy,
                    "role": record["role"],
                    "status": record["status"],
                    "primary_metric": a.primary_metric,
                    "n_seeds": record["n_seeds"],
                    "aulc_mean": record["aulc_mean"],
                    "aulc_sd": record["aulc_sd"],
                    "final_mean": record["final_mean"],
                    "final_sd": record["final_sd"],
                    "delta_aulc": record["delta_aulc"],
                    "p_holm": record["p_holm"],
                    "sig": record["sig"],
                    "rank": int(ranks[strategy]) if strategy in ranks.index else pd.NA,
                }
            )
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["rank"] = summary["rank"].astype("Int64")
    return summary
