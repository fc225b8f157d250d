"""Statistics shared by the chapters: retrieval hits, proportion intervals, paired tests, Holm.

Every function is pure (arrays in, numbers out) and carries its formula. The choices follow the
study's rules: proportions get Wilson intervals (a percentile bootstrap collapses to a
zero-width interval at 0 or 1); scorers compared on the same items get *paired* tests (exact
McNemar for wins, a sign-flip permutation test and a paired bootstrap interval for recall); a
family of tests is corrected with Holm's step-down method.
"""
from __future__ import annotations

import numpy as np


def retrieval_hits(S: np.ndarray, k: int) -> np.ndarray:
    """Per-query expected hit of image→text R@k for a square score matrix whose diagonal holds the
    true pairs, ties broken at random in expectation.

    With ``G_i = #{j : S[i, j] > S[i, i]}`` and ``T_i = #{j ≠ i : S[i, j] = S[i, i]}``,
    ``h_i = clip((k − G_i) / (T_i + 1), 0, 1)`` (without ties ``1[1 + G_i <= k]``); R@k is ``mean_i h_i``.
    A scorer that ignores one side (a constant row) thus scores chance ``k / n``.
    """
    true = np.diag(S)[:, None]
    greater = (S > true).sum(axis=1)
    ties = (S == true).sum(axis=1) - 1
    return np.clip((k - greater) / (ties + 1), 0, 1).astype(float)


def recall_at_k(S: np.ndarray, k: int) -> float:
    """Image→text R@k, ``mean_i h_i`` of :func:`retrieval_hits` (use ``S.T`` for text→image)."""
    return float(retrieval_hits(S, k).mean())


def wins(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per-item outcome of a true-vs-perturbed pair: ``1[pos > neg] + ½·1[pos = neg]``."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
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
    return float(max(0.0, (centre - half) / den)), float(min(1.0, (centre + half) / den))


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


def paired_difference(a: np.ndarray, b: np.ndarray, *, seed: int, n_resamples: int = 1000,
                      confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean paired difference ``d̄ = mean_i (a_i − b_i)`` of two scorers on the same items, with a
    paired percentile-bootstrap interval (items resampled together, ``scipy.stats.bootstrap(paired=True)``)
    and a two-sided sign-flip permutation p (``scipy.stats.permutation_test``,
    ``permutation_type="samples"``: under H0 each item's pair is exchangeable).
    Returns ``(d̄, low, high, p)``. When every difference is the same value ``d`` the interval is
    ``(d, d)`` and ``p`` is the exact sign-flip value: 1 for ``d = 0``, else ``2^(1−n)``.
    """
    from scipy.stats import bootstrap, permutation_test

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    stat = lambda x, y, axis=-1: np.mean(x - y, axis=axis)  # noqa: E731
    if np.all(d == d[0]):
        return mean, mean, mean, 1.0 if d[0] == 0 else float(min(1.0, 2.0 ** (1 - len(d))))
    rng = np.random.default_rng(seed)
    ci = bootstrap((a, b), stat, paired=True, vectorized=True, n_resamples=n_resamples, method="percentile",
                   confidence_level=confidence, random_state=rng).confidence_interval
    p = permutation_test((a, b), stat, permutation_type="samples", vectorized=True, n_resamples=n_resamples,
                         alternative="two-sided", random_state=rng).pvalue
    return mean, float(ci.low), float(ci.high), float(p)


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
