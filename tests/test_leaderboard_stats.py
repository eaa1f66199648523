"""The leaderboard's statistics against independent computations (numpy, scipy, a textbook Holm)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from albench.leaderboard.stats import (
    NA_SMALL_N,
    aulc,
    holm,
    mean_sd,
    paired_compare,
    penalty_matrix,
    signflip_p,
)


def test_aulc_is_trapezoid_over_the_labelled_range() -> None:
    x = [200, 300, 400, 600]
    y = [0.61, 0.72, 0.75, 0.76]
    assert aulc(x, y) == pytest.approx(np.trapezoid(y, x) / (600 - 200))
    # A constant curve has the constant as AULC, whatever the spacing.
    assert aulc([10, 11, 50], [0.7, 0.7, 0.7]) == pytest.approx(0.7)
    # Order of the points does not matter.
    assert aulc(x[::-1], y[::-1]) == pytest.approx(aulc(x, y))
    assert np.isnan(aulc([200], [0.6]))


def test_mean_sd_uses_the_sample_sd() -> None:
    mean, sd = mean_sd([0.1, 0.2, 0.6])
    assert mean == pytest.approx(0.3)
    assert sd == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert np.isnan(mean_sd([0.5])[1])


def test_paired_compare_matches_scipy() -> None:
    a = np.array([0.71, 0.69, 0.74])
    b = np.array([0.70, 0.69, 0.71])
    got = paired_compare(a, b)
    d = a - b
    assert got.n == 3
    assert got.delta == pytest.approx(d.mean())
    lo, hi = stats.t.interval(0.95, df=2, loc=d.mean(), scale=stats.sem(d))
    assert (got.ci_low, got.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert got.p_ttest == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert got.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    # wins counts strictly greater: the tie at seed 1 is not a win.
    assert got.wins == 2 and got.wins_text == "2/3"
    assert got.p_wilcoxon == NA_SMALL_N and got.p_signflip == NA_SMALL_N


def test_rank_tests_from_six_pairs_match_scipy_and_full_enumeration() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(0.7, 0.02, 7)
    b = a - rng.normal(0.01, 0.01, 7)
    got = paired_compare(a, b)
    d = a - b
    assert got.p_wilcoxon == pytest.approx(stats.wilcoxon(a, b).pvalue)
    # Exact sign-flip p by enumerating all 2^7 sign patterns, independently of scipy.
    observed = abs(d.mean())
    null = [abs((np.array(signs) * d).mean()) for signs in itertools.product([-1, 1], repeat=d.size)]
    expected = np.mean([v >= observed - 1e-12 for v in null])
    assert got.p_signflip == pytest.approx(expected)


def test_three_seeds_cannot_reach_significance_with_a_sign_flip() -> None:
    # Why the table says "n/a (n<6)": the smallest two-sided exact p at n = 3 is 2/8.
    assert signflip_p([0.1, 0.2, 0.3]) == pytest.approx(0.25)


def test_degenerate_pairs() -> None:
    same = paired_compare([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.delta == 0 and np.isnan(same.p_ttest) and same.wins == 0
    shifted = paired_compare([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert shifted.ci_low == pytest.approx(0.1) and shifted.ci_high == pytest.approx(0.1)
    one = paired_compare([0.6], [0.5])
    assert one.n == 1 and np.isnan(one.p_ttest) and np.isnan(one.ci_low)


def test_holm_textbook_example() -> None:
    # Holm (1979)'s step-down on four hypotheses, worked by hand:
    # sorted p 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    # 0.02, 0.03, 0.06, 0.06, returned in the input order.
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Untestable comparisons (NaN) stay NaN and do not enlarge the family.
    got = holm([0.01, np.nan, 0.04])
    assert got[0] == pytest.approx(0.02) and np.isnan(got[1]) and got[2] == pytest.approx(0.04)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_penalty_matrix_counts_significant_losses_per_size() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0.7, 0.01, (4, 5))
    worse = base.copy()
    worse[:, 1] -= np.array([0.05, 0.06, 0.055, 0.052])  # clearly worse at two of five sizes
    worse[:, 3] -= np.array([0.05, 0.049, 0.051, 0.06])
    curves = {"a": worse, "b": base}
    matrix = penalty_matrix(curves)
    assert matrix.loc["a", "b"] == pytest.approx(2 / 5)
    assert matrix.loc["b", "a"] == 0.0
    assert matrix.loc["a", "a"] == 0.0
    # Independently: the same count with scipy directly.
    count = sum(
        1
        for k in range(5)
        if stats.ttest_rel(worse[:, k], base[:, k]).pvalue < 0.05 and (worse[:, k] - base[:, k]).mean() < 0
    )
    assert matrix.loc["a", "b"] == pytest.approx(count / 5)
