"""The shared statistics against independent references (scipy, brute force) on known answers."""
import numpy as np
import pytest
from scipy.stats import binomtest

from analysis import stats


@pytest.mark.parametrize("x,n", [(0, 10), (10, 10), (3, 17), (50, 100), (1, 1), (0, 53)])
def test_wilson_matches_scipy(x, n):
    ref = binomtest(x, n).proportion_ci(method="wilson")
    assert stats.wilson_interval(x, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_wilson_is_not_degenerate_at_zero_and_one():
    lo, hi = stats.wilson_interval(30, 30)
    assert hi == 1.0 and lo < 0.95  # a percentile bootstrap would give [1, 1]
    lo, hi = stats.wilson_interval(0, 30)
    assert lo == 0.0 and hi > 0.05
    lo, hi = stats.wilson_interval(4.5, 10)  # half-counted ties are allowed and sit between neighbours
    assert stats.wilson_interval(4, 10)[0] < lo < stats.wilson_interval(5, 10)[0]


def holm_rejects(p, alpha):
    """Holm's sequential procedure itself: walk up the sorted p-values, reject while p_(j) <= alpha / (m - j)."""
    m, rejected = len(p), set()
    for j, i in enumerate(np.argsort(p)):
        if p[i] > alpha / (m - j):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("seed", range(5))
def test_holm_adjusted_p_is_the_smallest_alpha_that_rejects(seed):
    """The adjusted p of a hypothesis is the smallest alpha at which the sequential procedure rejects it
    (searched on a fine grid); rejections at any alpha agree with `holm(p) <= alpha`."""
    p = np.random.default_rng(seed).uniform(0, 0.05, size=6)
    grid = np.linspace(0, 0.35, 7001)
    adjusted = stats.holm(p)
    for i in range(len(p)):
        first = next(a for a in grid if i in holm_rejects(p, a))
        assert adjusted[i] == pytest.approx(first, abs=grid[1])
    for alpha in (0.01, 0.05, 0.1):
        assert holm_rejects(p, alpha) == set(np.flatnonzero(adjusted <= alpha))


def test_holm_known_answer_and_nans():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])
    out = stats.holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_mcnemar_counts_discordant_items_only():
    a = np.array([1, 1, 1, 1, 0, 1, 0, 0.5, 1, 1])
    b = np.array([1, 0, 0, 0, 0, 1, 1, 0.0, 1, 1])
    n_ab, n_ba, p = stats.mcnemar_exact(a, b)
    assert (n_ab, n_ba) == (4, 1)
    assert p == pytest.approx(binomtest(4, 5, 0.5).pvalue)
    assert stats.mcnemar_exact(a, a)[2] == 1.0
    with pytest.raises(ValueError, match="same shape"):
        stats.mcnemar_exact(a, b[:3])


def test_sign_test_drops_ties():
    o = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0.5, 0.5])
    assert stats.sign_test(o) == pytest.approx(binomtest(7, 8, 0.5).pvalue)
    assert stats.sign_test(np.full(5, 0.5)) == 1.0


def numpy_paired_bootstrap(a, b, draws=20000, seed=1):
    """The percentile paired bootstrap by hand: resample item indices, keep both scorers' values together."""
    idx = np.random.default_rng(seed).integers(0, len(a), size=(draws, len(a)))
    return np.percentile((a[idx] - b[idx]).mean(axis=1), [2.5, 97.5])


def test_paired_interval_against_a_numpy_bootstrap():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=40), rng.uniform(size=40)
    mean, lo, hi = stats.paired_interval(a, b, seed=0, n_resamples=9999)
    assert mean == pytest.approx((a - b).mean()) and lo <= mean <= hi
    np.testing.assert_allclose([lo, hi], numpy_paired_bootstrap(a, b), atol=0.01)


def test_paired_interval_detects_a_shift_that_unpaired_noise_would_hide():
    rng = np.random.default_rng(1)
    base = rng.normal(size=200) * 5  # large item effects shared by both scorers
    a, b = base + 0.3 + rng.normal(size=200) * 0.1, base
    mean, lo, hi = stats.paired_interval(a, b, seed=0, n_resamples=999)
    assert 0.25 < lo < mean < hi < 0.35


def test_paired_interval_constant_differences():
    assert stats.paired_interval(np.ones(4), np.ones(4), seed=0) == (0.0, 0.0, 0.0)
    assert stats.paired_interval(np.ones(4), np.zeros(4), seed=0) == (1.0, 1.0, 1.0)


def test_binomial_above_chance_rounds_fractional_hits():
    h = np.array([1, 1, 0, 0.5, 0.5, 0, 0, 0, 0, 0])
    assert stats.binomial_above_chance(h, 0.1) == pytest.approx(binomtest(3, 10, 0.1, alternative="greater").pvalue)


def test_retrieval_hits_known_answers():
    S = np.eye(4)[::-1].copy()
    assert stats.retrieval_hits(S, 1).tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(stats.retrieval_hits(S, 2), [1 / 3] * 4)
    np.testing.assert_allclose(stats.retrieval_hits(np.zeros((5, 5)), 2), [0.4] * 5)


def monte_carlo_hits(S, P, k, draws=3000, seed=0):
    """Break ties by a random permutation each draw; a hit when any true caption is in the top k."""
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(S))
    for _ in range(draws):
        jitter = rng.permutation(S.shape[1])[None, :] * 1e-9
        order = np.argsort(-(S + jitter), axis=1, kind="stable")[:, :k]
        hits += P[np.arange(len(S))[:, None], order].any(axis=1)
    return hits / draws


@pytest.mark.parametrize("seed", range(4))
def test_retrieval_hits_with_duplicate_captions_match_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    S = np.round(rng.normal(size=(9, 9)), 0)  # coarse scores: many ties
    groups = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5])  # items 0-1 and 3-5 share their caption text
    P = groups[:, None] == groups[None, :]
    for k in (1, 2, 4):
        np.testing.assert_allclose(stats.retrieval_hits(S, k, P), monte_carlo_hits(S, P, k), atol=0.04)


def test_a_perfect_scorer_with_duplicate_captions_scores_one():
    groups = np.array([0, 0, 1, 2])
    P = groups[:, None] == groups[None, :]
    S = P.astype(float)  # every true caption scores 1, every false one 0
    assert stats.recall_at_k(S, 1) == pytest.approx(0.75)  # diagonal-only truth: the twin is a tie, 1/2 hit
    assert stats.recall_at_k(S, 1, P) == 1.0
    with pytest.raises(ValueError, match="at least one true caption"):
        stats.retrieval_hits(S, 1, np.zeros_like(P))


def test_wins_refuse_nan():
    with pytest.raises(ValueError, match="NaN"):
        stats.wins(np.array([1.0, np.nan]), np.array([0.0, 0.0]))


@pytest.mark.parametrize("n", [1, 7, 53, 120, 1000])
def test_wilson_contains_the_estimate_exactly(n):
    for x in (0, 0.5, 1, n / 2, n - 1, n):
        lo, hi = stats.wilson_interval(x, n)
        assert lo <= x / n <= hi
    assert stats.wilson_interval(0, n)[0] == 0.0 and stats.wilson_interval(n, n)[1] == 1.0
