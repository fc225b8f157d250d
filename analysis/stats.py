"""Statistics shared by the chapters: retrieval hits, proportion intervals, paired tests, Holm.

Every function is pure (arrays in, numbers out) and carries its formula. The choices follow the
study's rules: proportions get Wilson intervals (a percentile bootstrap collapses to a
zero-width interval at 0 or 1); scorers compared on the same items get *paired* tests (exact
McNemar for wins, a sign-flip permutation test and a paired bootstrap interval for recall); a
family of tests is corrected with Holm's step-down method.
"""
from __future__ import annotations

import numpy as np


def retrieval_hits(S: np.ndarray, k: int, positives: np.ndarray | None = None) -> np.ndarray:
    """Per-query expected hit of image→text R@k, ties broken at random in expectation.

    ``positives[i, j]`` marks the captions true of image ``i`` (default: the diagonal, one true caption
    per image; pass a mask when a caption text occurs for several images, so that a correct duplicate is
    not a miss). With ``s*_i = max_{j ∈ P_i} S[i, j]`` (the best true caption), ``G_i`` the false
    captions scoring above ``s*_i``, ``T_i`` the false ones tied with it and ``p_i`` the true ones tied
    with it, the query is a hit when the first true caption of the tied block lands in the first
    ``m_i = k − G_i`` places of a random order of the block:
    ``h_i = 1 − C(T_i, m_i) / C(T_i + p_i, m_i)`` for ``0 <= m_i <= T_i``, 0 for ``m_i <= 0`` and 1
    for ``m_i > T_i``. With one true caption this is ``clip((k − G_i) / (T_i + 1), 0, 1)``; without ties
    ``1[1 + G_i <= k]``. R@k is ``mean_i h_i``; a scorer that ignores one side scores chance.
    """
    from scipy.special import comb

    S = np.asarray(S, float)
    P = np.eye(*S.shape, dtype=bool) if positives is None else np.asarray(positives, bool)
    if P.shape != S.shape or not P.any(axis=1).all():
        raise ValueError(f"positives must be a {S.shape} mask with at least one true caption per query")
    best = np.where(P, S, -np.inf).max(axis=1, keepdims=True)
    greater = ((S > best) & ~P).sum(axis=1)
    t_false = ((S == best) & ~P).sum(axis=1)
    t_true = ((S == best) & P).sum(axis=1)
    m = k - greater
    mm = np.clip(m, 0, t_false)  # only 0 <= m <= T uses the ratio; elsewhere it is replaced below
    miss_all = comb(t_false, mm) / comb(t_false + t_true, mm)
    return np.where(m <= 0, 0.0, np.where(m > t_false, 1.0, 1.0 - miss_all)).astype(float)


def recall_at_k(S: np.ndarray, k: int, positives: np.ndarray | None = None) -> float:
    """Image→text R@k, ``mean_i h_i`` of :func:`retrieval_hits` (use ``S.T`` and ``positives.T`` for
    text→image)."""
    return float(retrieval_hits(S, k, positives).mean())


def wins(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per-item outcome of a true-vs-perturbed pair: ``1[pos > neg] + ½·1[pos = neg]``; NaN scores are refused."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ValueError("a scorer returned NaN for a true or perturbed caption; refusing to count it as a loss")
    return (pos > neg).astype(float) + 0.5 * (pos == neg)


def wilson_interval(successes: float, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p̂ = x / n``:
    ``(p̂ + z²/2n ± z √(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`` with ``z = Φ⁻¹(1 − α/2)``.
    Equals ``scipy.stats.binomtest(x, n).proportion_ci(method="wilson")`` for integer ``x``; a
    fractional ``x`` (half-counted ties) is allowed. Stays inside [0, 1] and has non-zero width at 0 and 1.
    """
    from scipy.stats import norm

    if n <= 0:
        return float("nan"), float("nan")
    z = norm.ppf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    den = 1 + z * z / n
    lo, hi = max(0.0, (centre - half) / den), min(1.0, (centre + half) / den)
    # exact at the ends (rounding would otherwise put the bound a hair inside p̂ = 0 or 1)
    return float(min(lo, p) if successes > 0 else 0.0), float(max(hi, p) if successes < n else 1.0)


def sign_test(outcomes: np.ndarray, *, alternative: str = "two-sided") -> float:
    """Exact sign test of win/loss outcomes against chance ½: ties (½) are dropped and
    ``p = binomtest(#wins, #wins + #losses, ½)``; 1.0 when every pair tied."""
    from scipy.stats import binomtest

    o = np.asarray(outcomes, float)
    w, n = int((o == 1).sum()), int(((o == 1) | (o == 0)).sum())
    return float(binomtest(w, n, 0.5, alternative=alternative).pvalue) if n else 1.0


def binomial_above_chance(hits: np.ndarray, chance: float) -> float:
    """One-sided exact binomial p of ``round(Σ h_i)`` hits in ``n`` queries against rate ``chance``
    (``scipy.stats.binomtest(..., alternative="greater")``)."""
    from scipy.stats import binomtest

    h = np.asarray(hits, float)
    if not len(h):
        return float("nan")
    return float(binomtest(int(round(h.sum())), len(h), min(chance, 1.0), alternative="greater").pvalue)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test of two scorers' per-item outcomes on the same items.

    Discordant items: ``n_ab = #{a_i > b_i}`` (``a`` right where ``b`` is not; a tie, ½, counts as
    better than a loss and worse than a win) and ``n_ba = #{b_i > a_i}``;
    ``p = binomtest(n_ab, n_ab + n_ba, ½)`` (two-sided), 1.0 without discordant items.
    Returns ``(n_ab, n_ba, p)``.
    """
    from scipy.stats import binomtest

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes must have the same shape, got {a.shape} and {b.shape}")
    n_ab, n_ba = int((a > b).sum()), int((b > a).sum())
    p = float(binomtest(n_ab, n_ab + n_ba, 0.5).pvalue) if n_ab + n_ba else 1.0
    return n_ab, n_ba, p


def paired_interval(a: np.ndarray, b: np.ndarray, *, seed: int, n_resamples: int = 1000,
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean paired difference ``d̄ = mean_i (a_i − b_i)`` of two scorers on the same items, with a
    paired percentile-bootstrap interval (items resampled together, ``scipy.stats.bootstrap(paired=True)``).
    Returns ``(d̄, low, high)``; when every difference is the same value ``d`` the interval is ``(d, d)``.
    (The test that goes with it is :func:`mcnemar_exact`.)
    """
    from scipy.stats import bootstrap

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    if np.all(d == d[0]):
        return mean, mean, mean
    stat = lambda x, y, axis=-1: np.mean(x - y, axis=axis)  # noqa: E731
    ci = bootstrap((a, b), stat, paired=True, vectorized=True, n_resamples=n_resamples, method="percentile",
                   confidence_level=confidence, random_state=np.random.default_rng(seed)).confidence_interval
    return mean, float(ci.low), float(ci.high)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values for one family of ``m`` tests: sort ``p_(1) <= ... <= p_(m)``,
    ``p̃_(i) = max_{j <= i} min(1, (m − j + 1) p_(j))``; NaN entries are left out of the family and stay NaN.
    Reject ``H_(i)`` at level α exactly when ``p̃_(i) <= α``."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out
