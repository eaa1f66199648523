"""``report.html``: one self-contained page a person opens from disk.

No server, no network, no external file: styles are inline, images are PNG data URIs. The page
shows, per task, what a reader of the paper wants: the learning curves, the headline table with the
paired statistics and their significance marker, the penalty matrix, the discriminator histograms
and the segmentation overlay, plus every note about left-out seeds, grids or crashed runs.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

import albench
from albench.leaderboard.published import CITATION
from albench.leaderboard.stats import ALPHA, MIN_N_NONPARAMETRIC, NA_SMALL_N
from albench.leaderboard.tables import MARKER, REFERENCES, TaskAnalysis


@dataclass
class Figures:
    """PNG bytes of one task's figures (absent ones are ``None``) and their captions."""

    curves: bytes | None = None
    penalty: bytes | None = None
    histogram: bytes | None = None
    overlay: bytes | None = None
    captions: dict[str, str] = field(default_factory=dict)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for people: fixed decimals, '–' for missing, strings passed through."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}f}"


def fmt_p(value: Any) -> str:
    """p-values: three significant digits, '<0.001' below that."""
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def _pm(mean: Any, sd: Any) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return "–"
    return fmt(mean) if isinstance(sd, float) and math.isnan(sd) else f"{fmt(mean)} ± {fmt(sd)}"


def _img(png: bytes | None, alt: str, caption: str = "") -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _headline_rows(a: TaskAnalysis) -> tuple[list[str], list[list[str]]]:
    ranks = {s: i + 1 for i, s in enumerate(a.ranked())}
    header = ["strategy", "status", "n seeds", "AULC mean ± SD", "final mean ± SD", "rank"]
    rows = [
        [
            rec["strategy"],
            rec["status"],
            fmt(rec["n_seeds"]),
            _pm(rec["aulc_mean"], rec["aulc_sd"]),
            _pm(rec["final_mean"], rec["final_sd"]),
            str(ranks.get(rec["strategy"], "–")),
        ]
        for rec in a.table.to_dict("records")
    ]
    return header, rows


def _comparison_rows(a: TaskAnalysis, ref: str) -> tuple[list[str], list[list[str]]]:
    sfx = "" if ref == REFERENCES[0] else f"_vs_{ref}"
    header = ["strategy", f"Δ AULC vs {ref}", "95% CI", "p (paired t)", "p Holm", "", "d_z", "wins"]
    header += ["Wilcoxon p", "sign-flip p"]
    rows = []
    for rec in a.table.to_dict("records"):
        delta = rec[f"delta_aulc{sfx}"]
        if isinstance(delta, float) and math.isnan(delta):
            continue
        rows.append(
            [
                rec["strategy"],
                f"{float(delta):+.4f}",
                f"[{fmt(rec[f'delta_ci_low{sfx}'], 4)}, {fmt(rec[f'delta_ci_high{sfx}'], 4)}]",
                fmt_p(rec[f"p_ttest{sfx}"]),
                fmt_p(rec[f"p_holm{sfx}"]),
                rec[f"sig{sfx}"],
                fmt(rec[f"d_z{sfx}"], 2),
                str(rec[f"wins{sfx}"]),
                fmt_p(rec[f"p_wilcoxon{sfx}"]),
                fmt_p(rec[f"p_signflip{sfx}"]),
            ]
        )
    return header, rows


def _task_section(a: TaskAnalysis, figures: Figures) -> str:
    parts = [f'<section id="task-{html.escape(a.task)}"><h2>{html.escape(a.task)}</h2>']
    parts.append(
        f"<p class='meta'>primary metric <b>{html.escape(a.primary_metric)}</b>"
        f"{' (' + html.escape(a.task_kind) + ')' if a.task_kind else ''}; seeds used: "
        f"{html.escape(' '.join(map(str, a.seeds)) or 'none')}; labelled sizes: "
        f"{html.escape(' '.join(map(str, a.grid)) or 'none')}</p>"
    )
    if a.notes:
        parts.append("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in a.notes) + "</ul>")
    parts.append(_img(figures.curves, f"{a.task} learning curves", figures.captions.get("curves", "")))
    header, rows = _headline_rows(a)
    parts.append(_table(header, rows, "results"))
    row_notes = [(s, n) for s in a.all_strategies for n in a.row_notes.get(s, [])]
    if row_notes:
        parts.append(
            "<ul class='notes'>"
            + "".join(f"<li><b>{html.escape(s)}</b>: {html.escape(n)}</li>" for s, n in row_notes)
            + "</ul>"
        )
    for ref in REFERENCES:
        header, rows = _comparison_rows(a, ref)
        if rows:
            parts.append(f"<h3>Against {html.escape(ref)} (AULC, paired by seed)</h3>")
            parts.append(_table(header, rows, "results"))
    if not a.penalty.empty and len(a.penalty) > 1:
        parts.append("<h3>Pairwise penalty matrix</h3>")
        parts.append(
            "<p>Entry (row, column): the fraction of the labelled sizes at which the row strategy is "
            f"significantly worse than the column one (paired t-test over seeds, p&lt;{ALPHA}).</p>"
        )
        pen_rows = [[s] + [f"{v:.2f}" for v in a.penalty.loc[s]] for s in a.penalty.index]
        parts.append(_table(["worse ↓ than →"] + list(a.penalty.columns), pen_rows, "penalty"))
        parts.append(_img(figures.penalty, f"{a.task} penalty matrix"))
    if figures.histogram:
        parts.append("<h3>Discriminator scores</h3>")
        parts.append(
            _img(figures.histogram, f"{a.task} discriminator histogram", figures.captions.get("histogram", ""))
        )
    if figures.overlay:
        parts.append("<h3>Segmentation overlay</h3>")
        parts.append(_img(figures.overlay, f"{a.task} segmentation overlay", figures.captions.get("overlay", "")))
    parts.append("</section>")
    return "\n".join(parts)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.85em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555} .meta{color:#555} .notes li{color:#8a4b00}
.method{font-size:.9em;color:#333;background:#fafafa;border:1px solid #eee;padding:.5em 1.2em}
"""

# Counts the images the browser actually decoded; lets a headless check tell a broken page apart.
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-decoded', String(ok));
});
"""


def _methods() -> str:
    return f"""
<section class="method"><h2>How to read this</h2><ul>
<li><b>AULC</b>: trapezoidal area under each seed's learning curve of the primary test metric over
the number of labelled items, divided by the labelled range (so it is on the metric's scale). The
headline and the ranking.</li>
<li>All numbers of a task use the same seeds (those with a complete run for every strategy) and the same
labelled sizes; anything left out is listed in the notes. Incomplete runs are never averaged.</li>
<li><b>Δ AULC</b>: mean of the seed-paired differences (strategy − reference) with a 95&nbsp;% t-interval;
<b>p (t)</b>: paired t-test over seeds (scipy <code>ttest_rel</code>); <b>p Holm</b>: Holm-adjusted over the
distinct comparisons of the task; <b>{MARKER}</b> marks p Holm &lt; {ALPHA}. <b>d_z</b>: mean / SD of the
differences. <b>wins</b>: seeds with a strictly greater AULC.</li>
<li>Wilcoxon and exact sign-flip p are shown only from {MIN_N_NONPARAMETRIC} seeds on ("{NA_SMALL_N}"):
with 3 seeds their smallest possible two-sided p is 0.25.</li>
<li><b>full</b> is the upper bound trained on the whole pool: dashed in the plots, never ranked or tested.</li>
<li>Dotted curves on the real tasks: the paper's published means ({html.escape(CITATION)}), whose
VAAL/M-VAAL selections were affected by a score-to-item mapping defect; a reference for scale only.</li>
</ul></section>"""


def render_report(
    analyses: list[TaskAnalysis],
    figures: dict[str, Figures],
    summary: pd.DataFrame,
    warnings: list[str],
    *,
    title: str = "albench leaderboard",
) -> str:
    """The whole page as one string."""
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    summary_rows = [
        [
            r["task"],
            r["strategy"],
            r["status"],
            fmt(r["n_seeds"]),
            _pm(r["aulc_mean"], r["aulc_sd"]),
            _pm(r["final_mean"], r["final_sd"]),
            "" if isinstance(r["delta_aulc"], float) and math.isnan(r["delta_aulc"]) else f"{r['delta_aulc']:+.3f}",
            fmt_p(r["p_holm"]),
            r["sig"],
            "–" if r["rank"] is None or r["rank"] is pd.NA else str(r["rank"]),
        ]
        for r in summary.to_dict("records")
    ]
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>albench {html.escape(albench.__version__)} · generated {html.escape(when)} · "
        f"tasks: {html.escape(', '.join(a.task for a in analyses))}</p>",
        "<h2>Summary</h2>",
        _table(
            [
                "task",
                "strategy",
                "status",
                "n",
                "AULC mean ± SD",
                "final mean ± SD",
                "Δ AULC vs random",
                "p Holm",
                "",
                "rank",
            ],
            summary_rows,
            "summary",
        ),
    ]
    if warnings:
        body.append("<h3>Skipped run folders</h3><ul class='notes'>")
        body += [f"<li>{html.escape(w)}</li>" for w in warnings]
        body.append("</ul>")
    body += [_task_section(a, figures.get(a.task, Figures())) for a in analyses]
    body.append(_methods())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
