"""The leaderboard end to end: run folders with known per-seed numbers in, CSVs, plots and the report
out, every column checked against an independent scipy / numpy computation.

The fixtures are written exactly in the runner's on-disk form (DESIGN.md, "The contract"): spec.json,
rounds.csv, diagnostics/round-<r>.npz and artifacts/round-<r>.npz.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from scipy import stats

from albench.errors import AlbenchError
from albench.leaderboard import build_leaderboard, print_summary
from albench.leaderboard.plots import compare_masks

TASK = "phantom-wt"
GRID = [20, 30, 40, 50]
# The strategies' mean offset over random at every round after the first (known effects).
EFFECTS = {"random": 0.0, "vaal": 0.001, "mvaal": 0.05}


def write_run(
    out: Path,
    task: str,
    strategy: str,
    seed: int,
    values: list[float],
    n_labelled: list[int],
    *,
    rounds: int | None = None,
    kind: str = "segmentation",
    metrics: tuple[str, ...] = ("dice", "iou"),
    diagnostics: bool = False,
    artifacts: bool = False,
    spec: bool = True,
) -> Path:
    """One run folder in the runner's format; ``rounds`` (protocol) may exceed the rows (a crash)."""
    folder = out / "runs" / task / strategy / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    primary = f"test_{metrics[0]}"
    protocol_rounds = len(n_labelled) - 1 if rounds is None else rounds
    if spec:
        (folder / "spec.json").write_text(
            json.dumps(
                {
                    "task": task,
                    "strategy": strategy,
                    "seed": seed,
                    "preset": "smoke",
                    "task_kind": kind,
                    "dataset": "phantom",
                    "primary_metric": primary,
                    "metrics": list(metrics),
                    "protocol": {"initial": n_labelled[0], "budget": 10, "rounds": protocol_rounds},
                    "environment": {"python": sys.version.split()[0]},
                }
            )
        )
    rows = []
    for r, (n, v) in enumerate(zip(n_labelled, values)):
        row: dict[str, float | int] = {"round": r, "n_labelled": n}
        row.update({f"test_{m}": (v if i == 0 else v * 0.8) for i, m in enumerate(metrics)})
        row.update({f"val_{m}": v + 0.01 for m in metrics})
        row.update(fit_seconds=1.5, select_seconds=0.2, peak_memory_mb=120.0)
        if strategy in ("vaal", "mvaal"):
            row.update(vae_loss=0.3, disc_loss=0.7)
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "rounds.csv", index=False)
    (folder / "selected.jsonl").write_text(
        "".join(
            json.dumps({"round": r, "added": [r], "labelled_sha256": "0" * 64}) + "\n" for r in range(len(rows) - 1)
        )
    )
    rng = np.random.default_rng(seed)
    if diagnostics:
        (folder / "diagnostics").mkdir(exist_ok=True)
        for r in range(len(rows) - 1):
            np.savez(
                folder / "diagnostics" / f"round-{r}.npz",
                unlabelled_ids=np.arange(80),
                unlabelled_scores=rng.normal(0.3, 0.1, 80),
                labelled_ids=np.arange(80, 100),
                labelled_scores=rng.normal(0.7, 0.1, 20),
            )
    if artifacts:
        (folder / "artifacts").mkdir(exist_ok=True)
        yy, xx = np.mgrid[:32, :32]
        shift = 1 + (len(strategy) + seed) % 3
        for r in range(len(rows)):
            np.savez(
                folder / "artifacts" / f"round-{r}.npz",
                overlay_names=np.array([f"case{k}:{40 + k}" for k in range(2)]),
                overlay_image=np.stack([np.sin(xx / 4 + k) + yy / 32 for k in range(2)]).astype(np.float32),
                overlay_target=np.stack([(xx - 16) ** 2 + (yy - 16) ** 2 < (7 + k) ** 2 for k in range(2)]).astype(
                    np.uint8
                ),
                overlay_pred=np.stack(
                    [(xx - 16 - shift) ** 2 + (yy - 16) ** 2 < (6 + k + r) ** 2 for k in range(2)]
                ).astype(np.uint8),
            )
    return folder


def curve(rng: np.random.Generator, effect: float, noise: float = 0.004) -> list[float]:
    """Round 0 is shared by every strategy of a seed (same initial set); later rounds differ."""
    return [0.5] + [0.5 + 0.05 * k + effect + float(rng.normal(0, noise)) for k in range(1, len(GRID))]


def write_standard(
    out: Path, seeds: int = 3, *, task: str = TASK, full: bool = True
) -> dict[tuple[str, int], list[float]]:
    rng = np.random.default_rng(42)
    known = {}
    for seed in range(seeds):
        base = curve(rng, 0.0)
        for strategy, effect in EFFECTS.items():
            values = (
                base
                if strategy == "random"
                else [base[0]] + [v + effect + float(rng.normal(0, 0.006)) for v in base[1:]]
            )
            write_run(out, task, strategy, seed, values, GRID, diagnostics=strategy != "random", artifacts=True)
            known[(strategy, seed)] = values
        if full:
            write_run(out, task, "full", seed, [0.8 + 0.01 * seed], [400], rounds=len(GRID) - 1)
    return known


# --------------------------------------------------------------------------------------------------
# Independent expectations, from the rounds.csv files themselves.


def rounds_of(out: Path, task: str, strategy: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(out / "runs" / task / strategy / f"seed-{seed}" / "rounds.csv")


def independent_aulc(frame: pd.DataFrame, grid: list[int], metric: str = "test_dice") -> float:
    sub = frame.set_index("n_labelled").loc[grid, metric].to_numpy()
    return float(np.trapezoid(sub, grid) / (grid[-1] - grid[0]))


def textbook_holm(p: list[float]) -> list[float]:
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return list(adjusted)


def check_task_table(out: Path, task: str, strategies: list[str], seeds: list[int], grid: list[int]) -> pd.DataFrame:
    """Recompute every statistics column of <task>.csv and compare."""
    table = pd.read_csv(out / "leaderboard" / f"{task}.csv", keep_default_na=True).set_index("strategy")
    aulcs = {s: np.array([independent_aulc(rounds_of(out, task, s, k), grid) for k in seeds]) for s in strategies}
    finals = {
        s: np.array([rounds_of(out, task, s, k).set_index("n_labelled").loc[grid[-1], "test_dice"] for k in seeds])
        for s in strategies
    }
    for s in strategies:
        row = table.loc[s]
        assert row["n_seeds"] == len(seeds)
        assert str(row["seeds"]).split() == [str(k) for k in seeds]
        assert row["aulc_mean"] == pytest.approx(aulcs[s].mean(), abs=1e-9)
        assert row["aulc_sd"] == pytest.approx(np.std(aulcs[s], ddof=1), abs=1e-9)
        assert row["final_mean"] == pytest.approx(finals[s].mean(), abs=1e-9)
        assert row["final_sd"] == pytest.approx(np.std(finals[s], ddof=1), abs=1e-9)
        assert str(row["n_labelled"]).split() == [str(n) for n in grid]

    # The Holm family: every distinct (strategy, reference) pair of the task.
    pairs = {}
    for ref in ("random", "vaal"):
        if ref in strategies:
            for s in strategies:
                if s != ref:
                    pairs.setdefault(frozenset((s, ref)), stats.ttest_rel(aulcs[s], aulcs[ref]).pvalue)
    keys = list(pairs)
    adjusted = dict(zip(keys, textbook_holm([pairs[k] for k in keys])))

    for ref in ("random", "vaal"):
        sfx = "" if ref == "random" else "_vs_vaal"
        for s in strategies:
            row = table.loc[s]
            if ref not in strategies or s == ref:
                assert np.isnan(row[f"delta_aulc{sfx}"])
                continue
            d = aulcs[s] - aulcs[ref]
            assert row[f"delta_aulc{sfx}"] == pytest.approx(d.mean(), abs=1e-9)
            assert row[f"delta_aulc{sfx}"] == pytest.approx(row["aulc_mean"] - table.loc[ref, "aulc_mean"], abs=1e-9)
            lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=np.std(d, ddof=1) / np.sqrt(len(d)))
            assert row[f"delta_ci_low{sfx}"] == pytest.approx(lo, abs=1e-9)
            assert row[f"delta_ci_high{sfx}"] == pytest.approx(hi, abs=1e-9)
            p = stats.ttest_rel(aulcs[s], aulcs[ref]).pvalue
            assert row[f"p_ttest{sfx}"] == pytest.approx(p, rel=1e-6)
            p_adj = adjusted[frozenset((s, ref))]
            assert row[f"p_holm{sfx}"] == pytest.approx(p_adj, rel=1e-6)
            marker = row[f"sig{sfx}"]
            assert (marker == "*") == (p_adj < 0.05), (s, ref, marker, p_adj)
            if p_adj >= 0.05:
                assert pd.isna(marker) or marker == ""
            assert row[f"d_z{sfx}"] == pytest.approx(d.mean() / np.std(d, ddof=1), rel=1e-6)
            assert row[f"wins{sfx}"] == f"{int(np.sum(aulcs[s] > aulcs[ref]))}/{len(d)}"
            if len(d) < 6:
                assert row[f"p_wilcoxon{sfx}"] == "n/a (n<6)"
                assert row[f"p_signflip{sfx}"] == "n/a (n<6)"
            else:
                assert float(row[f"p_wilcoxon{sfx}"]) == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-6)
    return table


# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, dict]:
    out = tmp_path_factory.mktemp("lb") / "results"
    known = write_standard(out)
    summary = build_leaderboard(out)
    return out, summary, known


def test_task_csv_columns_match_scipy(standard) -> None:
    out, _, _ = standard
    table = check_task_table(out, TASK, ["random", "vaal", "mvaal"], [0, 1, 2], GRID)
    # The known strong effect is significant after Holm and marked; the tiny one is not.
    assert table.loc["mvaal", "sig"] == "*"
    assert pd.isna(table.loc["vaal", "sig"]) or table.loc["vaal", "sig"] == ""
    assert list(table.index) == ["random", "vaal", "mvaal", "full"]
    assert set(table.loc[["random", "vaal", "mvaal"], "status"]) == {"complete"}


def test_full_is_the_upper_bound_not_a_competitor(standard) -> None:
    out, summary, _ = standard
    table = pd.read_csv(out / "leaderboard" / f"{TASK}.csv").set_index("strategy")
    full = table.loc["full"]
    assert full["role"] == "upper bound" and full["status"] == "upper bound"
    assert full["final_mean"] == pytest.approx(np.mean([0.80, 0.81, 0.82]))
    assert full["final_sd"] == pytest.approx(np.std([0.80, 0.81, 0.82], ddof=1))
    assert np.isnan(full["aulc_mean"]) and np.isnan(full["delta_aulc"]) and np.isnan(full["p_holm"])
    penalty = pd.read_csv(out / "leaderboard" / f"{TASK}-penalty.csv", index_col=0)
    assert "full" not in penalty.index and "full" not in penalty.columns
    assert pd.isna(summary.set_index("strategy").loc["full", "rank"])


def test_summary_ranks_by_aulc(standard) -> None:
    out, summary, _ = standard
    on_disk = pd.read_csv(out / "leaderboard" / "summary.csv")
    assert list(on_disk.columns) == list(summary.columns)
    ranked = on_disk[on_disk["rank"].notna()].sort_values("rank")
    assert list(ranked["strategy"]) == ["mvaal", "vaal", "random"]
    assert list(ranked["rank"].astype(int)) == [1, 2, 3]
    table = pd.read_csv(out / "leaderboard" / f"{TASK}.csv").set_index("strategy")
    for rec in on_disk.to_dict("records"):
        assert rec["task"] == TASK and rec["primary_metric"] == "test_dice"
        if rec["strategy"] != "full":
            assert rec["aulc_mean"] == pytest.approx(table.loc[rec["strategy"], "aulc_mean"])


def test_curves_csv_is_every_recorded_value(standard) -> None:
    out, _, _ = standard
    curves = pd.read_csv(out / "leaderboard" / f"{TASK}-curves.csv")
    assert list(curves.columns[:5]) == ["strategy", "seed", "n_labelled", "metric", "value"]
    for strategy in ("random", "vaal", "mvaal", "full"):
        for seed in range(3):
            frame = rounds_of(out, TASK, strategy, seed)
            for metric in ("test_dice", "test_iou", "val_dice", "val_iou"):
                got = curves[(curves.strategy == strategy) & (curves.seed == seed) & (curves.metric == metric)]
                got = got.sort_values("n_labelled")
                assert list(got["n_labelled"]) == list(frame["n_labelled"])
                assert np.allclose(got["value"], frame[metric])
    assert set(curves["metric"]) == {"test_dice", "test_iou", "val_dice", "val_iou"}


def test_penalty_csv_against_scipy(standard) -> None:
    out, _, _ = standard
    penalty = pd.read_csv(out / "leaderboard" / f"{TASK}-penalty.csv", index_col=0)
    names = ["random", "vaal", "mvaal"]
    assert list(penalty.index) == names and list(penalty.columns) == names
    values = {s: np.array([rounds_of(out, TASK, s, k)["test_dice"] for k in range(3)]) for s in names}
    for i in names:
        for j in names:
            expected = 0.0
            for k in range(len(GRID)):
                if i == j:
                    continue
                a, b = values[i][:, k], values[j][:, k]
                with np.errstate(all="ignore"):
                    p = stats.ttest_rel(a, b).pvalue
                if np.isfinite(p) and p < 0.05 and (a - b).mean() < 0:
                    expected += 1 / len(GRID)
            assert penalty.loc[i, j] == pytest.approx(expected), (i, j)
    # random is clearly beaten by mvaal at the three rounds after the shared initial one.
    assert penalty.loc["random", "mvaal"] == pytest.approx(3 / 4)


def _png_is_not_blank(data: bytes) -> None:
    image = mpimg.imread(io.BytesIO(data), format="png")
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert float(np.std(image[..., :3])) > 0.02


def test_plots_exist_in_both_formats_and_are_not_blank(standard) -> None:
    out, _, _ = standard
    dest = out / "leaderboard"
    for name in ("curves", "penalty", "discriminator", "overlay"):
        png = dest / f"{TASK}-{name}.png"
        svg = dest / f"{TASK}-{name}.svg"
        assert png.is_file() and svg.is_file(), name
        _png_is_not_blank(png.read_bytes())
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert not list(dest.glob(".*.tmp")), "a temporary file was left behind"


def test_overlay_colours_follow_figure_4() -> None:
    test = np.array([[1, 1, 0, 0]], dtype=np.uint8)
    ref = np.array([[1, 0, 1, 0]], dtype=np.uint8)
    rgb = compare_masks(test, ref)
    assert tuple(rgb[0, 0]) == (1.0, 1.0, 1.0)  # both: white
    assert rgb[0, 1, 0] == 1.0 and rgb[0, 1, 2] == 0.0  # extra in the test method: red
    assert rgb[0, 2, 2] == 1.0 and rgb[0, 2, 0] == 0.0  # missed by the test method: blue
    assert tuple(rgb[0, 3]) == (0.0, 0.0, 0.0)


def test_report_is_self_contained_with_names_numbers_and_images(standard) -> None:
    out, _, _ = standard
    text = (out / "leaderboard" / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text), "report must not load anything external"
    table = pd.read_csv(out / "leaderboard" / f"{TASK}.csv").set_index("strategy")
    for strategy in ("random", "vaal", "mvaal", "full"):
        assert f">{strategy}<" in text
    for strategy in ("random", "vaal", "mvaal"):
        assert f"{table.loc[strategy, 'aulc_mean']:.3f} ± {table.loc[strategy, 'aulc_sd']:.3f}" in text
    assert f"{table.loc['mvaal', 'delta_aulc']:+.4f}" in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 4
    for data in images:
        _png_is_not_blank(base64.b64decode(data))


def test_print_summary_is_a_rich_table(standard) -> None:
    _, summary, _ = standard
    console = Console(record=True, width=160)
    print_summary(summary, console)
    text = console.export_text()
    for strategy in ("random", "vaal", "mvaal", "full"):
        assert strategy in text
    mvaal = summary.set_index("strategy").loc["mvaal"]
    assert f"{mvaal['aulc_mean']:.3f}" in text


def test_no_runs_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(AlbenchError, match="no runs under") as excinfo:
        build_leaderboard(tmp_path / "empty")
    assert "\n" not in str(excinfo.value)
    assert not (tmp_path / "empty" / "leaderboard").exists()
    (tmp_path / "nospec" / "runs" / TASK / "random" / "seed-0").mkdir(parents=True)
    with pytest.raises(AlbenchError):
        build_leaderboard(tmp_path / "nospec")


def test_unequal_seed_sets_and_grids_use_the_intersection(tmp_path: Path) -> None:
    out = tmp_path / "results"
    rng = np.random.default_rng(7)
    long_grid = GRID + [60]
    # random: seeds 0-3 and one more labelled size; mvaal: seeds 0-2, the standard grid.
    for seed in range(4):
        write_run(out, TASK, "random", seed, curve(rng, 0.0) + [0.71], long_grid)
    for seed in range(3):
        write_run(out, TASK, "mvaal", seed, curve(rng, 0.03), GRID)
    build_leaderboard(out)
    table = check_task_table(out, TASK, ["random", "mvaal"], [0, 1, 2], GRID)
    assert "seed(s) 3 left out" in table.loc["random", "note"]
    assert "labelled sizes 60 left out" in table.loc["random", "note"]  # the task-level note, first row
    curves = pd.read_csv(out / "leaderboard" / f"{TASK}-curves.csv")
    assert 60 in set(curves.n_labelled) and 3 in set(curves.seed)  # raw data are kept, not the averages


def test_a_crashed_run_is_reported_not_averaged(tmp_path: Path) -> None:
    out = tmp_path / "results"
    write_standard(out, full=False)
    # mvaal seed 3 crashed after two rounds; random and vaal have a complete seed 3.
    rng = np.random.default_rng(9)
    for strategy in ("random", "vaal"):
        write_run(out, TASK, strategy, 3, curve(rng, 0.0), GRID)
    write_run(out, TASK, "mvaal", 3, curve(rng, 0.05)[:2], GRID[:2], rounds=len(GRID) - 1)
    # A strategy whose only run crashed, and a folder without spec.json.
    write_run(out, TASK, "entropy", 0, [0.5], GRID[:1], rounds=len(GRID) - 1)
    (out / "runs" / TASK / "vaal" / "seed-7").mkdir()
    console = Console(record=True, width=200)
    summary = build_leaderboard(out, console=console)
    assert "seed-7: no spec.json" in console.export_text()
    table = check_task_table(out, TASK, ["random", "vaal", "mvaal"], [0, 1, 2], GRID)
    assert table.loc["mvaal", "status"] == "partial"
    assert "seed 3 not used: incomplete: 2 of 4 rounds recorded" in table.loc["mvaal", "note"]
    assert "seed(s) 3 left out" in table.loc["random", "note"]
    entropy = table.loc["entropy"]
    assert entropy["status"] == "incomplete" and entropy["n_seeds"] == 0 and np.isnan(entropy["aulc_mean"])
    assert pd.isna(summary.set_index("strategy").loc["entropy", "rank"])
    curves = pd.read_csv(out / "leaderboard" / f"{TASK}-curves.csv")
    crashed = curves[(curves.strategy == "mvaal") & (curves.seed == 3)]
    assert len(crashed) and not crashed["complete"].any()
    report = (out / "leaderboard" / "report.html").read_text(encoding="utf-8")
    assert "incomplete: 2 of 4 rounds recorded" in report and "no spec.json" in report


def test_a_task_with_one_strategy(tmp_path: Path) -> None:
    out = tmp_path / "results"
    rng = np.random.default_rng(1)
    for seed in range(3):
        write_run(out, "phantom-cls", "random", seed, curve(rng, 0.0), GRID, kind="multiclass", metrics=("accuracy",))
    summary = build_leaderboard(out)
    table = pd.read_csv(out / "leaderboard" / "phantom-cls.csv").set_index("strategy")
    assert list(table.index) == ["random"]
    aulcs = [
        np.trapezoid(rounds_of(out, "phantom-cls", "random", k)["test_accuracy"], GRID) / (GRID[-1] - GRID[0])
        for k in range(3)
    ]
    assert table.loc["random", "aulc_mean"] == pytest.approx(np.mean(aulcs))
    assert np.isnan(table.loc["random", "delta_aulc"])
    assert summary.loc[0, "rank"] == 1
    penalty = pd.read_csv(out / "leaderboard" / "phantom-cls-penalty.csv", index_col=0)
    assert penalty.shape == (1, 1) and penalty.iloc[0, 0] == 0
    dest = out / "leaderboard"
    assert (dest / "phantom-cls-curves.png").is_file()
    assert not (dest / "phantom-cls-overlay.png").exists()  # not a segmentation task
    assert not (dest / "phantom-cls-discriminator.png").exists()  # random records no diagnostics


def test_a_task_with_only_the_upper_bound(tmp_path: Path) -> None:
    out = tmp_path / "results"
    for seed in range(2):
        write_run(
            out, "phantom-ml", "full", seed, [0.9 + 0.02 * seed], [300], kind="multilabel", metrics=("map",), rounds=3
        )
    summary = build_leaderboard(out)
    row = summary.set_index("strategy").loc["full"]
    assert row["status"] == "upper bound" and pd.isna(row["rank"])
    assert row["final_mean"] == pytest.approx(0.91) and row["final_sd"] == pytest.approx(np.std([0.9, 0.92], ddof=1))
    assert (out / "leaderboard" / "phantom-ml-curves.png").is_file()


def test_six_seeds_report_rank_tests(tmp_path: Path) -> None:
    out = tmp_path / "results"
    write_standard(out, seeds=6, full=False)
    build_leaderboard(out)
    table = check_task_table(out, TASK, ["random", "vaal", "mvaal"], list(range(6)), GRID)
    aulcs = {
        s: np.array([independent_aulc(rounds_of(out, TASK, s, k), GRID) for k in range(6)]) for s in ("mvaal", "random")
    }
    d = aulcs["mvaal"] - aulcs["random"]
    # All six differences are positive: the exact two-sided sign-flip p is 2 / 2^6.
    assert (d > 0).all()
    assert float(table.loc["mvaal", "p_signflip"]) == pytest.approx(2 / 64)


def _cli_available() -> bool:
    try:
        import albench.cli  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _cli_available(), reason="albench.cli not present")
def test_cli_leaderboard_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "results"
    write_standard(out, full=False)
    exe = shutil.which("albench")
    command = [exe] if exe else [sys.executable, "-m", "albench.cli"]
    proc = subprocess.run([*command, "leaderboard", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for strategy in ("random", "vaal", "mvaal"):
        assert strategy in proc.stdout
    assert (out / "leaderboard" / "report.html").is_file()


# --------------------------------------------------------------------------------------------------
# The report in a real browser (Debian's ``chromium``); skipped where none is installed.

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    for name in _BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium installed (apt-get install chromium)")
def test_report_in_headless_chromium(standard, tmp_path: Path) -> None:
    out, _, _ = standard
    browser = _browser()
    assert browser is not None
    report = (out / "leaderboard" / "report.html").resolve()
    dom = _chromium(browser, tmp_path / "profile-dom", "--virtual-time-budget=5000", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # The page loaded and its script ran: every inline image was decoded by the browser.
    match = re.search(r'data-images="(\d+)"[^>]*data-images-decoded="(\d+)"', html)
    assert match, "the report's load handler did not run"
    assert int(match.group(1)) == 4 and match.group(2) == match.group(1)
    text = re.sub(r"<[^>]+>", " ", html)
    table = pd.read_csv(out / "leaderboard" / f"{TASK}.csv").set_index("strategy")
    for strategy in ("random", "vaal", "mvaal", "full"):
        assert re.search(rf"\b{strategy}\b", text)
    assert f"{table.loc['mvaal', 'aulc_mean']:.3f} ± {table.loc['mvaal', 'aulc_sd']:.3f}" in text
    assert "n/a (n&lt;6)" in html or "n/a (n<6)" in text

    shot = tmp_path / "report.png"
    result = _chromium(
        browser, tmp_path / "profile-shot", "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = mpimg.imread(str(shot))
    assert image.shape[0] >= 2000 and image.shape[1] >= 1200
    rgb = image[..., :3]
    assert float(np.std(rgb)) > 0.05, "the screenshot is blank"
    # The plots are in colour: a fair number of strongly coloured pixels (text alone is grey).
    saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
    assert float(np.mean(saturation > 0.3)) > 0.005


# --------------------------------------------------------------------------------------------------
# The paper's published curves.


def _method_md() -> Path | None:
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "METHOD.md", here / "docs" / "METHOD.md", here.parent / "shared" / "METHOD.md"):
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.skipif(_method_md() is None, reason="METHOD.md not found next to the checkout")
def test_published_numbers_are_those_of_method_md() -> None:
    from albench.leaderboard.published import PUBLISHED

    text = _method_md().read_text(encoding="utf-8")  # type: ignore[union-attr]
    names = {"mvaal": "M-VAAL", "vaal": "VAAL", "random": "Random"}
    for task, ref in PUBLISHED.items():
        for strategy, values in ref.means.items():
            printed = " ".join(f"{v:.3f}".lstrip("0") for v in values)
            assert re.search(rf"(^|· ){names[strategy]} {re.escape(printed)}", text, re.M), (task, strategy)


def test_published_curves_are_drawn_faintly_on_real_tasks_only(tmp_path: Path) -> None:
    from albench.leaderboard.load import load_runs
    from albench.leaderboard.plots import learning_curves
    from albench.leaderboard.tables import analyse_task

    grid = [200, 300, 400, 500]
    rng = np.random.default_rng(5)
    for task in ("brats-wt", "phantom-wt"):
        for seed in range(2):
            for strategy in ("random", "mvaal"):
                write_run(tmp_path, task, strategy, seed, curve(rng, 0.0), grid)
    inventory = load_runs(tmp_path)
    for task, expect in (("brats-wt", True), ("phantom-wt", False)):
        fig = learning_curves(analyse_task(task, inventory.for_task(task)))
        assert fig is not None
        labels = [line.get_label() for line in fig.axes[0].get_lines()]
        assert any("published" in label for label in labels) == expect, (task, labels)
