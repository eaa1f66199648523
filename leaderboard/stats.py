"""The leaderboard's statistics: AULC, seed-paired comparisons, Holm, the BADGE penalty matrix.

Every distribution comes from scipy / statsmodels; this module only decides *what* is compared:

* The unit of replication is the seed. For one seed every strategy starts from the same labelled set
  and the same model initialisations (DESIGN.md, "Seeds and the paired design"), so the natural test
  is paired: differences per seed, a one-sample t on those differences (``scipy.stats.ttest_rel``),
  a 95 % t-interval (``scipy.stats.t.interval``) and the paired effect size d_z = mean / SD of the
  differences.
* With three seeds the rank tests cannot reach 0.05 (the smallest two-sided exact p is 2/2^3 = 0.25),
  so Wilcoxon and the exact sign-flip test are only reported from :data:`MIN_N_NONPARAMETRIC` seeds on.
* Holm's step-down adjustment (``statsmodels.stats.multitest.multipletests``) controls the
  family-wise error over the comparisons of one task.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

#: Rank / permutation tests are only reported from this many paired seeds on.
MIN_N_NONPARAMETRIC = 6
#: What the CSV says instead of a rank-test p below :data:`MIN_N_NONPARAMETRIC` seeds.
NA_SMALL_N = f"n/a (n<{MIN_N_NONPARAMETRIC})"
#: Significance level of the marker, the penalty matrix and the intervals (95 %).
ALPHA = 0.05
#: Above this many pairs the sign-flip null has > 2^20 points: switch to a seeded Monte Carlo.
_EXACT_SIGNFLIP_MAX_N = 20


def aulc(n_labelled: Sequence[float], values: Sequence[float]) -> float:
    """Normalised area under the learning curve: trapezoid over n_labelled divided by its range.

    The result is on the metric's own scale (a curve constant at 0.7 has AULC 0.7), so it reads like
    "the average metric over the budget range". Needs at least two labelled sizes; NaN otherwise.
    """
    x = np.asarray(n_labelled, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("n_labelled and values must be 1-D and of equal length")
    if len(x) < 2:
        return float("nan")
    order = np.argsort(x)
    x, y = x[order], y[order]
    width = x[-1] - x[0]
    if width <= 0:
        return float("nan")
    return float(np.trapezoid(y, x) / width)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and *sample* SD (ddof=1); SD is NaN for fewer than two values, both NaN for none."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    mean = float(np.mean(arr))
    sd = float(np.std(arr, ddof=1)) if arr.size > 1 else float("nan")
    return mean, sd


@dataclass(frozen=True)
class Paired:
    """One seed-paired comparison ``a - b`` (a is the row strategy, b the reference)."""

    n: int
    delta: float  # mean of the per-seed differences
    ci_low: float
    ci_high: float
    p_ttest: float
    d_z: float
    wins: int  # seeds where a is strictly greater than b
    p_wilcoxon: float | str
    p_signflip: float | str

    @property
    def wins_text(self) -> str:
        return f"{self.wins}/{self.n}"


def paired_compare(a: Sequence[float], b: Sequence[float], *, confidence: float = 1 - ALPHA) -> Paired:
    """Compare two seed-aligned samples (same order, same seeds) by their differences ``a - b``."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("paired samples must be 1-D and of equal length")
    d = x - y
    n = int(d.size)
    nan = float("nan")
    if n == 0:
        return Paired(0, nan, nan, nan, nan, nan, 0, NA_SMALL_N, NA_SMALL_N)
    delta = float(np.mean(d))
    wins = int(np.sum(x > y))
    if n < 2:
        return Paired(n, delta, nan, nan, nan, nan, wins, NA_SMALL_N, NA_SMALL_N)
    sd = float(np.std(d, ddof=1))
    with warnings.catch_warnings():
        # scipy warns about precision when all differences are (nearly) equal; its answer stands.
        warnings.simplefilter("ignore", RuntimeWarning)
        p_ttest = float(stats.ttest_rel(x, y).pvalue)
    if sd > 0:
        ci_low, ci_high = stats.t.interval(confidence, df=n - 1, loc=delta, scale=sd / np.sqrt(n))
        d_z = delta / sd
    else:  # every seed moved by exactly the same amount: a degenerate, zero-width interval
        ci_low = ci_high = delta
        d_z = nan if delta == 0 else float(np.sign(delta) * np.inf)
    if n >= MIN_N_NONPARAMETRIC:
        p_wilcoxon: float | str = _wilcoxon(d)
        p_signflip: float | str = signflip_p(d)
    else:
        p_wilcoxon = p_signflip = NA_SMALL_N
    return Paired(n, delta, float(ci_low), float(ci_high), p_ttest, float(d_z), wins, p_wilcoxon, p_signflip)


def _wilcoxon(d: np.ndarray) -> float:
    if not np.any(d != 0):
        return float("nan")  # no non-zero difference: the signed-rank test is undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(stats.wilcoxon(d).pvalue)


def signflip_p(d: Sequence[float]) -> float:
    """Two-sided sign-flip (paired permutation) p for mean(d) = 0, exact up to 20 pairs.

    Under the null of no strategy effect the sign of each seed's difference is exchangeable; scipy's
    one-sample ``permutation_test`` with ``permutation_type='samples'`` enumerates those sign flips.
    """
    arr = np.asarray(d, dtype=float)
    exact = arr.size <= _EXACT_SIGNFLIP_MAX_N
    result = stats.permutation_test(
        (arr,),
        lambda sample, axis: np.mean(sample, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf if exact else 200_000,
        alternative="two-sided",
        rng=None if exact else np.random.default_rng(0),
    )
    return float(result.pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries (comparisons that could not be tested) stay NaN and do
    not count towards the family size."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out


def penalty_matrix(curves: Mapping[str, np.ndarray], *, alpha: float = ALPHA) -> pd.DataFrame:
    """BADGE-style pairwise penalty matrix (Ash et al., ICLR 2020, Sec. 5).

    ``curves[s]`` is an array (n_seeds, n_sizes) of the primary metric, rows aligned by seed and
    columns by labelled size. Entry [i, j] adds 1/n_sizes for every labelled size at which strategy i
    is significantly *worse* than j: two-sided paired t-test p < alpha and a negative mean difference.
    A row sum near 0 means "rarely beaten"; the largest possible entry is 1.
    """
    names = list(curves)
    matrix = pd.DataFrame(0.0, index=pd.Index(names, name="strategy"), columns=names)
    if not names:
        return matrix
    n_sizes = next(iter(curves.values())).shape[1]
    for i in names:
        for j in names:
            if i == j:
                continue
            a, b = np.asarray(curves[i], float), np.asarray(curves[j], float)
            if a.shape != b.shape:
                raise ValueError("penalty_matrix needs curves of equal shape")
            if a.shape[0] < 2:
                continue  # a paired t-test needs two seeds
            for k in range(n_sizes):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = stats.ttest_rel(a[:, k], b[:, k]).pvalue
                if np.isfinite(p) and p < alpha and np.mean(a[:, k] - b[:, k]) < 0:
                    matrix.loc[i, j] += 1.0 / n_sizes
    return matrix
