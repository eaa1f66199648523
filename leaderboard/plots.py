"""The leaderboard's figures, in the style of the paper's: learning curves with error bars (Figs. 3,
5, 6), discriminator-score histograms (Fig. 2), the penalty-matrix heatmap (Ash et al.'s BADGE
paper) and segmentation overlays (Fig. 4's colours).

Every function returns a matplotlib ``Figure`` (or ``None`` when the runs hold nothing to draw) and
never touches the disk; :func:`render` turns a figure into PNG and SVG bytes. The Agg backend is
forced on the figures themselves (``matplotlib.figure.Figure`` without pyplot), so building a
leaderboard never opens a window or depends on the user's backend configuration.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from albench.leaderboard.load import FULL, Run
from albench.leaderboard.published import CITATION_SHORT, published_for
from albench.leaderboard.tables import TaskAnalysis

#: Stable colours, so a strategy looks the same in every figure of every task.
_FIXED_COLOURS = {"random": "#1f77b4", "vaal": "#ff7f0e", "mvaal": "#2ca02c", FULL: "#444444"}
_CYCLE = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
#: The round of the paper's Fig. 2 ("third AL round") and Fig. 4 ("second round", 400 slices).
HISTOGRAM_ROUND = 2
OVERLAY_ROUND = 2


def colour(strategy: str) -> str:
    if strategy in _FIXED_COLOURS:
        return _FIXED_COLOURS[strategy]
    return _CYCLE[sum(map(ord, strategy)) % len(_CYCLE)]


@dataclass
class Rendered:
    """A figure rendered to both formats."""

    png: bytes
    svg: bytes


def render(fig: Figure, *, dpi: int = 110) -> Rendered:
    """PNG and SVG bytes of ``fig`` (no file is written here)."""
    FigureCanvasAgg(fig)
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi)
    fig.savefig(svg, format="svg", metadata={"Date": None})
    return Rendered(png.getvalue(), svg.getvalue())


def _metric_label(metric: str) -> str:
    name = metric.removeprefix("test_")
    return {"dice": "Dice", "map": "mAP", "accuracy": "accuracy", "iou": "IoU"}.get(name, name)


def learning_curves(a: TaskAnalysis, *, published: bool = True) -> Figure | None:
    """Mean ± SD of the primary test metric per labelled size; ``full`` dashed; the paper faint."""
    if not a.strategies and not a.full_values.size:
        return None
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    x = np.asarray(a.grid, dtype=float)
    for i, strategy in enumerate(a.strategies):
        mean, sd = a.mean_sd_curve(strategy)
        # A small horizontal offset keeps overlapping error bars legible (as in the paper's figures).
        width = (x[-1] - x[0]) if len(x) > 1 else 1.0
        shift = (i - (len(a.strategies) - 1) / 2) * 0.006 * width
        ax.errorbar(
            x + shift,
            mean,
            yerr=np.nan_to_num(sd),
            marker="o",
            markersize=4,
            capsize=3,
            linewidth=1.6,
            color=colour(strategy),
            label=f"{strategy} (n={len(a.seeds)})",
        )
    if a.full_values.size:
        mean = float(np.mean(a.full_values))
        sd = float(np.std(a.full_values, ddof=1)) if a.full_values.size > 1 else 0.0
        label = f"full (upper bound) {mean:.3f}" + (f" ± {sd:.3f}" if a.full_values.size > 1 else "")
        ax.axhline(mean, color=colour(FULL), linestyle="--", linewidth=1.4, label=label)
        if sd > 0:
            ax.axhspan(mean - sd, mean + sd, color=colour(FULL), alpha=0.08, linewidth=0)
    ref = published_for(a.task, a.primary_metric) if published else None
    # Only where the paper's budgets overlap this run's (a smoke run on brats-wt has other sizes).
    keep = [i for i, n in enumerate(ref.n_labelled) if len(x) and x[0] <= n <= x[-1]] if ref else []
    drawn_published = ref is not None and len(keep) >= 2
    if ref is not None and drawn_published:
        for strategy, values in ref.means.items():
            ax.plot(
                [ref.n_labelled[i] for i in keep],
                [values[i] for i in keep],
                linestyle=":",
                linewidth=1.0,
                alpha=0.45,
                color=colour(strategy),
                label=f"{strategy}, published",
            )
        ax.axhline(ref.full, color=colour(FULL), linestyle=":", alpha=0.45, linewidth=1.0, label="full, published")
    ax.set_xlabel("labelled items" + (f"\n(dotted: published means, {CITATION_SHORT})" if drawn_published else ""))
    ax.set_ylabel(f"test {_metric_label(a.primary_metric)}")
    ax.set_title(f"{a.task}: mean ± SD over {len(a.seeds)} seed(s)")
    ax.grid(True, alpha=0.3)
    if len(x):
        ax.set_xticks(x)
    ax.legend(fontsize=8, loc="best")
    return fig


def _diagnostic_run(a: TaskAnalysis, strategy: str) -> tuple[Run, int] | None:
    """The lowest shared seed's run of ``strategy`` and the round to show (round 2 when recorded)."""
    runs = [r for r in a.runs if r.strategy == strategy and r.diagnostic_rounds()]
    runs.sort(key=lambda r: (r.seed not in a.seeds, not r.complete, r.seed))
    if not runs:
        return None
    run = runs[0]
    rounds = run.diagnostic_rounds()
    return run, HISTOGRAM_ROUND if HISTOGRAM_ROUND in rounds else rounds[-1]


def discriminator_histograms(a: TaskAnalysis) -> Figure | None:
    """Fig. 2: discriminator scores of labelled vs unlabelled items, one panel per strategy."""
    panels = []
    for strategy in a.all_strategies:
        found = _diagnostic_run(a, strategy)
        if found is None:
            continue
        run, round_ = found
        path = run.diagnostics(round_)
        try:
            with np.load(path) as data:
                unl = np.asarray(data["unlabelled_scores"], dtype=float).ravel()
                lab = np.asarray(data["labelled_scores"], dtype=float).ravel()
        except (OSError, KeyError, ValueError):
            continue
        panels.append((strategy, run, round_, unl, lab))
    if not panels:
        return None
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (strategy, run, round_, unl, lab) in zip(axes, panels):
        both = np.concatenate([unl, lab])
        lo, hi = float(np.min(both)), float(np.max(both))
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 40)
        ax.hist(unl, bins=bins, alpha=0.6, color="#d62728", label=f"unlabelled ({unl.size})", density=True)
        ax.hist(lab, bins=bins, alpha=0.6, color="#1f77b4", label=f"labelled ({lab.size})", density=True)
        budget = run.spec.get("protocol", {}).get("budget")
        if isinstance(budget, int) and 0 < budget <= unl.size:
            cut = float(np.sort(unl)[budget - 1])
            ax.axvline(cut, color="black", linestyle="--", linewidth=1, label=f"selected: lowest {budget}")
        ax.set_title(f"{strategy}, seed {run.seed}, round {round_}")
        ax.set_xlabel("discriminator score")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.suptitle(f"{a.task}: discriminator scores (labelled vs unlabelled)")
    return fig


def penalty_heatmap(a: TaskAnalysis) -> Figure | None:
    """The pairwise penalty matrix as a heatmap; row sums in the row labels."""
    matrix = a.penalty
    if matrix.empty or len(matrix) < 2:
        return None
    n = len(matrix)
    fig = Figure(figsize=(0.9 * n + 4.0, 0.6 * n + 2.2), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(matrix.to_numpy(), cmap="Reds", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            value = matrix.iat[i, j]
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.6 else "black")
    ax.set_xticks(range(n), list(matrix.columns), rotation=30, ha="right")
    ax.set_yticks(range(n), [f"{s} (Σ {matrix.loc[s].sum():.2f})" for s in matrix.index])
    ax.set_xlabel("… than this strategy")
    ax.set_ylabel("this strategy is significantly worse …")
    ax.set_title(f"{a.task}: penalty (fraction of {len(a.grid)} sizes, paired t, p<0.05)", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def compare_masks(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Fig. 4's colour coding as an RGB image: white where both, blue where the test method missed
    what the reference has, red where the test method added what the reference lacks."""
    t = np.asarray(test).astype(bool)
    r = np.asarray(reference).astype(bool)
    rgb = np.zeros(t.shape + (3,), dtype=np.float32)
    rgb[t & r] = (1.0, 1.0, 1.0)
    rgb[~t & r] = (0.0, 0.35, 1.0)
    rgb[t & ~r] = (1.0, 0.0, 0.0)
    return rgb


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


@dataclass
class OverlayChoice:
    """Which runs, round and slice the overlay shows (also printed under the figure)."""

    strategy_a: str
    strategy_b: str | None
    seed: int
    round: int
    n_labelled: int
    slice_name: str


def overlay(a: TaskAnalysis) -> tuple[Figure, OverlayChoice] | None:
    """Fig. 4: one test slice, two strategies at the same budget (same seed, same round).

    The pair is the best-ranked strategy against ``random`` (or the runner-up when the best is
    random); the slice is the one of the task's fixed overlay slices where the two predictions
    disagree most, so the figure shows a difference when there is one.
    """
    if a.task_kind != "segmentation" or not a.strategies:
        return None
    ranked = a.ranked() or a.strategies
    first = ranked[0]
    second = "random" if first != "random" and "random" in a.strategies else (ranked[1] if len(ranked) > 1 else None)
    chosen = [s for s in (first, second) if s]
    by_key = {(r.strategy, r.seed): r for r in a.runs if r.complete}
    for seed in a.seeds:
        runs = [by_key.get((s, seed)) for s in chosen]
        if any(r is None for r in runs):
            continue
        shared = set.intersection(*(set(r.artifact_rounds()) for r in runs))
        if not shared:
            continue
        round_ = OVERLAY_ROUND if OVERLAY_ROUND in shared else sorted(shared)[len(shared) // 2]
        loaded = []
        for run in runs:
            try:
                with np.load(run.artifacts(round_)) as data:
                    loaded.append(
                        {
                            k: np.asarray(data[k])
                            for k in ("overlay_names", "overlay_image", "overlay_target", "overlay_pred")
                        }
                    )
            except (OSError, KeyError, ValueError):
                loaded = []
                break
        if not loaded or any(list(d["overlay_names"]) != list(loaded[0]["overlay_names"]) for d in loaded):
            continue
        base = loaded[0]
        if base["overlay_pred"].shape[0] == 0:
            continue
        if len(loaded) == 2:
            disagreement = [
                int(np.sum(loaded[0]["overlay_pred"][k].astype(bool) ^ loaded[1]["overlay_pred"][k].astype(bool)))
                for k in range(base["overlay_pred"].shape[0])
            ]
            k = int(np.argmax(disagreement))
        else:
            k = 0
        n_lab = runs[0].rounds.loc[runs[0].rounds["round"] == round_, "n_labelled"]
        choice = OverlayChoice(
            strategy_a=chosen[0],
            strategy_b=chosen[1] if len(chosen) > 1 else None,
            seed=seed,
            round=round_,
            n_labelled=int(n_lab.iloc[0]) if len(n_lab) else -1,
            slice_name=str(base["overlay_names"][k]),
        )
        return _overlay_figure(a.task, chosen, loaded, k, choice), choice
    return None


def _overlay_figure(task: str, chosen: list[str], loaded: list[dict], k: int, choice: OverlayChoice) -> Figure:
    target = loaded[0]["overlay_target"][k]
    panels: list[tuple[str, np.ndarray, str | None]] = [("input", loaded[0]["overlay_image"][k], "gray")]
    panels.append(("ground truth", np.asarray(target, dtype=float), ListedColormap(["black", "white"])))
    for name, data in zip(chosen, loaded):
        pred = data["overlay_pred"][k]
        panels.append((f"{name} vs ground truth\nDice {_dice(pred, target):.3f}", compare_masks(pred, target), None))
    if len(loaded) == 2:
        panels.append(
            (
                f"{chosen[0]} vs {chosen[1]}",
                compare_masks(loaded[0]["overlay_pred"][k], loaded[1]["overlay_pred"][k]),
                None,
            )
        )
    fig = Figure(figsize=(2.4 * len(panels), 3.3), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (title, image, cmap) in zip(axes, panels):
        ax.imshow(image, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(
        handles=[
            Patch(facecolor="white", edgecolor="black", label="both"),
            Patch(facecolor=(0.0, 0.35, 1.0), label="missed by the first"),
            Patch(facecolor="red", label="extra in the first"),
        ],
        loc="outside lower center",
        ncol=3,
        fontsize=8,
    )
    fig.suptitle(
        f"{task}: test slice {choice.slice_name}, seed {choice.seed}, round {choice.round} "
        f"({choice.n_labelled} labelled)",
        fontsize=9,
    )
    return fig
