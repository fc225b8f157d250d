"""Statistics and computed verdicts of the probe's findings F1–F3 (issue 9; REFERENCE.md §1, Ma et al. 2022).

Pure functions over two tables that the probe produces (nothing here trains or scores anything):

* ``captions``: one row per ``(system, seed, image)`` with ``system, family, seed, image, caption`` and float
  measure columns (NaN where undefined): ``object_precision, object_recall, count_correct, relation_correct,
  size_correct, chair_hallucinated, chair_mentions, perplexity, slor, grammar_error, visual_words, template`` and
  ``score:<scorer>`` (every caption scored by every scorer). Optional count columns of
  :func:`analysis.grounding.grounding_table` (``n_true_mentioned, n_mentioned, n_recalled, n_objects,
  <x>s_stated, <x>s_correct``) switch the grounding rates to pooled ratios (:data:`RATIOS`).
* ``edits``: the rows of :func:`analysis.grounding.edit_effects` (``image, kind, delta`` with
  ``delta = score(original) − score(edited)``) plus ``system, seed, scorer``.

**The two-level bootstrap** (:func:`bootstrap_diff`). A statistic of system ``a`` minus the same statistic of
system ``b``. Each of ``B`` resamples draws the ``I`` image ids shared by both systems with replacement (one draw
for both: the comparison is *paired over images*) and, independently for each system, its ``S`` seeds with
replacement (one draw shared by both when ``paired_seeds``: two kinds of edits of the same captions). With
``c_bi`` the times image ``i`` is drawn and ``d_bs`` the times seed ``s`` is drawn, the cell ``(s, i)`` carries
the weight ``w_b(s, i) = d_bs · c_bi`` (it occurs that often in the resample), and

* ``stat="mean"``: ``m_b = Σ w_b(s,i) x_si / Σ w_b(s,i)`` over cells with a finite ``x`` (NaN cells are left
  out, never counted as 0);
* ``stat="median"``: the median of the resample (each cell repeated ``w_b`` times);
* ``stat="pooled"``: ``Σ w_b k_si / Σ w_b n_si`` for a ratio measure with count columns ``(k, n)``
  (:data:`RATIOS`: Σ correct / Σ stated, so a caption stating two counts weighs twice).

The point value is the same statistic with every weight 1; the interval is the percentile interval of the ``B``
resampled differences ``δ_b`` (resamples where either side is undefined are dropped and counted in
``valid_resamples``). The **bootstrap p** of ``H0: δ = null`` is two-sided:
``p = min(1, 2 (min(#{δ_b <= null}, #{δ_b >= null}) + 1) / (B_valid + 1))`` (twice the smaller tail, +1 so that
it is never 0; ``p <= 1 − confidence`` essentially when the percentile interval excludes ``null``).

**Corpus statistics** (:func:`bootstrap_stat`: template entropy, distinct-n, any ``fn(frame) -> float``) are
computed *per seed* over that seed's drawn images and averaged over the drawn seeds
(``T_b = Σ_s d_bs T_bs / Σ_s d_bs``): plug-in entropy and distinct-n depend on how many captions they see, so a
system with three seeds is not compared on three times the captions of a one-seed baseline. What they estimate is
the statistic *of a corpus of one caption per image* (``E[Ĥ_I]``, not the entropy of an infinite corpus, which
``I`` captions cannot identify when most templates occur once). Drawing with replacement duplicates captions and
so lowers entropy and distinct-n in every resample (a bias as large as the spread when templates are diverse);
their interval is therefore the **bias-centred percentile** interval, the percentiles of
``δ_b − mean_b δ_b + δ̂`` (the p uses the same centred draws). In simulations with 3 to 1,000 equiprobable
templates and 120 captions it covered the expected difference of plug-in entropies in at least 95% of data sets,
where the plain percentile interval covered it in 3–98%.

**Tests and verdicts.** :func:`f1_rows`, :func:`f2_rows`, :func:`f3_rows` give long rows, one per test, each with
a ``null`` value and the expected direction (``direction_expected`` ``">"``: the difference is expected above
``null``; ``"<"``: below; ``None``: a descriptive row, no test). A row ``supports`` the finding when its
Holm-adjusted p (:func:`analysis.stats.holm`) is at most :data:`analysis.prose.ALPHA` and ``value − null`` has the
expected sign. Holm's families (``test_family``): the tests one verdict rests on, i.e. one family per finding and
system (``"F1 clip-mini"``), one per finding and system for the text-only-scorer controls, and one for the F3
correlations of all scorers. Per system, not per finding across systems: a verdict must not change when another
system is added to the run, and the bootstrap p cannot go below ``2/(B+1)``, so a family of ``m`` tests needs
``B >= 2m/α − 1`` resamples before any test in it can hold (``_finish`` warns otherwise). ``supports`` is ``None``
when the row could not be tested (``status`` says why). :func:`verdicts` combines the rows of each finding and
system into "reproduced" / "not reproduced" / "inconclusive" / "mixed" / "not testable here" with a reason; the
rules are in its
docstring.

Image ids are the unit of resampling, and the ``dataset`` column is not read: pass one dataset's rows per call
(``captions[captions.dataset == d]``) when a run has several.
"""
from __future__ import annotations

import math
import re
import zlib
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from analysis.prose import ALPHA

FINDINGS = {"F1": "objects over global semantics", "F2": "fixed patterns, fluency and grammar ignored",
            "F3": "more visual words = better aligned"}
BASELINES = ("xe", "cider-d")
#: rows of these systems are never probe captions (the human references)
NOT_PROBED = ("references",)
BLIND = "blind"
#: non-inferiority margin of F1's "objects kept": the difference's interval must lie above ``−MARGIN``
MARGIN = 0.05
#: fewer finite captions (or edits) than this on either side and a test is "too few", not run
MIN_N = 10
#: ratio measures pooled over items when the count columns are present: measure -> (numerator, denominator)
RATIOS = {"object_precision": ("n_true_mentioned", "n_mentioned"), "object_recall": ("n_recalled", "n_objects"),
          "count_correct": ("counts_correct", "counts_stated"),
          "relation_correct": ("relations_correct", "relations_stated"),
          "size_correct": ("sizes_correct", "sizes_stated"), "chair_i": ("chair_hallucinated", "chair_mentions")}
CORPUS_STATS = ("template_entropy", "distinct_1", "distinct_2", "distinct_3")
STATUSES = ("ok", "too few", "missing system", "missing baseline", "missing edits", "missing scorer",
            "missing column")
COLUMNS = ("finding", "test", "component", "measure", "statistic", "system", "family", "scorer", "baseline",
           "value", "low", "high", "null", "p", "p_holm", "test_family", "n", "n_images", "seeds",
           "seeds_baseline", "direction_expected", "supports", "status", "note", "interval", "confidence")


# ----------------------------------------------------------------------------- weighted statistics
def _counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """``(B, n)`` float array: how often each of ``n`` items is drawn in each of ``B`` draws of ``n`` with
    replacement (multinomial counts; every row sums to ``n``)."""
    if n == 0:
        return np.zeros((n_resamples, 0))
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = (idx + n * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(float)


def _wmean(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``Σ_r w_br v_r / Σ_r w_br`` over finite ``v`` (NaN when no finite value has weight).

    >>> _wmean(np.array([1.0, 3.0, np.nan]), np.array([[1, 1, 5], [0, 2, 1]])).tolist()
    [2.0, 3.0]
    """
    f = np.isfinite(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.where(f, v, 0.0)) / (w @ f.astype(float))


def _wratio(k: np.ndarray, n: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``Σ_r w_br k_r / Σ_r w_br n_r`` over rows where both counts are finite (NaN when the denominator is 0)."""
    f = np.isfinite(k) & np.isfinite(n)
    den = w @ np.where(f, n, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (w @ np.where(f, k, 0.0)) / np.where(den > 0, den, 1.0), np.nan)


def _wmedian(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Median of each resample, row ``r`` repeated ``w_br`` times (integer weights): with the finite values
    sorted and ``W`` the cumulative weights, the mean of the first value whose ``W >= N/2`` and the first whose
    ``W > N/2`` (``N = Σ w``): ``np.median`` of the repeated sample.

    >>> _wmedian(np.array([1.0, 2.0, 10.0]), np.array([[1, 1, 1], [1, 1, 0], [0, 0, 2]])).tolist()
    [2.0, 1.5, 10.0]
    """
    f = np.isfinite(v)
    v, w = v[f], w[:, f]
    if not len(v):
        return np.full(len(w), np.nan)
    o = np.argsort(v, kind="stable")
    vs, cum = v[o], np.cumsum(w[:, o], axis=1)
    half = cum[:, -1:] / 2
    out = (vs[(cum >= half).argmax(axis=1)] + vs[(cum > half).argmax(axis=1)]) / 2
    out[cum[:, -1] == 0] = np.nan
    return out


def _wentropy(items: Sequence, w: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits ``−Σ_t p_t log₂ p_t`` of each resample's item frequencies (row ``r`` counted
    ``w_br`` times; missing items left out): :func:`analysis.linguistics.entropy` of the repeated sample."""
    codes, _ = pd.factorize(pd.Series(list(items), dtype=object))
    keep = codes >= 0
    codes, w = codes[keep], w[:, keep]
    if not len(codes):
        return np.full(len(w), np.nan)
    onehot = np.zeros((len(codes), codes.max() + 1))
    onehot[np.arange(len(codes)), codes] = 1.0
    counts = w @ onehot
    tot = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / tot
        h = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    h[tot[:, 0] == 0] = np.nan
    return h


def tokens(caption) -> list[str]:
    """Lower-cased word tokens for distinct-n: runs of letters, digits and apostrophes (a regular expression,
    not spaCy, so that a bootstrap needs no parse; it differs from :func:`analysis.linguistics.words` only on
    punctuation attached to words).

    >>> tokens("A cat, a DOG's ball.")
    ['a', 'cat', 'a', "dog's", 'ball']
    """
    return re.findall(r"[\w']+", str(caption).lower()) if isinstance(caption, str) else []


def _wdistinct(token_lists: Sequence[Sequence[str]], n: int, w: np.ndarray) -> np.ndarray:
    """distinct-n ``#distinct n-grams / #n-grams`` of each resample (caption ``r`` counted ``w_br`` times):
    :func:`analysis.linguistics.distinct_n` of the repeated captions (NaN when no caption has ``n`` words)."""
    vocab: dict[tuple, int] = {}
    cells = []
    for r, toks in enumerate(token_lists):
        for j in range(len(toks) - n + 1):
            cells.append((r, vocab.setdefault(tuple(toks[j:j + n]), len(vocab))))
    if not cells:
        return np.full(len(w), np.nan)
    m = np.zeros((len(token_lists), len(vocab)))
    np.add.at(m, tuple(np.array(cells).T), 1.0)
    total = w @ m.sum(axis=1)
    distinct = ((w @ (m > 0).astype(float)) > 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, distinct / np.where(total > 0, total, 1.0), np.nan)


def _midranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(B, R)`` mid-ranks of each row's value in each resample (row ``r`` repeated ``w_br`` times): for the
    tie group of ``x_r`` with weight ``g`` ending at cumulative weight ``E``, ``E − (g − 1)/2``."""
    o = np.argsort(x, kind="stable")
    xs = x[o]
    new = np.r_[True, xs[1:] != xs[:-1]]
    gw = np.add.reduceat(w[:, o], np.flatnonzero(new), axis=1)
    mid = np.cumsum(gw, axis=1) - (gw - 1) / 2
    ranks = np.empty_like(w, dtype=float)
    ranks[:, o] = mid[:, np.cumsum(new) - 1]
    return ranks


def _wspearman(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spearman's rho of each resample (row ``r`` repeated ``w_br`` times): Pearson's r of the mid-ranks
    (:func:`scipy.stats.spearmanr` of the repeated sample), weighted by ``w``; NaN when a side is constant."""
    rx, ry = _midranks(x, w), _midranks(y, w)
    tot = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w * rx).sum(1, keepdims=True) / tot, (w * ry).sum(1, keepdims=True) / tot
        dx, dy = rx - mx, ry - my
        vx, vy = (w * dx * dx).sum(1), (w * dy * dy).sum(1)
        rho = (w * dx * dy).sum(1) / np.sqrt(vx * vy)
    scale = np.maximum(vx, vy)
    rho[(vx <= 1e-12 * scale) | (vy <= 1e-12 * scale) | (tot[:, 0] == 0)] = np.nan
    return np.clip(rho, -1.0, 1.0)


# ----------------------------------------------------------------------------- the engine
class _Group(NamedTuple):
    frame: pd.DataFrame
    img: np.ndarray  # image index of each row (into the shared image list)
    seed: np.ndarray  # seed index of each row (into seeds)
    seeds: list


def _need(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(f"{what} needs the column(s) {missing}, which the table lacks (it has {list(table.columns)});"
                         " add them (see the analysis.findings module docstring for the table contract)")


def _sorted(values) -> list:
    return sorted(set(values), key=lambda v: (str(type(v)), v))


def _groups(table: pd.DataFrame, by: str, names: Sequence, *, paired_seeds: bool) -> tuple[pd.Index, list[_Group]]:
    """The shared image list (images present in every group) and each group's rows on those images."""
    _need(table, [by, "image"], "a bootstrap")
    subs = []
    for name in names:
        sub = table[table[by] == name]
        if sub.empty:
            raise ValueError(f"no rows with {by} == {name!r}; present: {_sorted(table[by].dropna().unique())}")
        subs.append(sub)
    images = set(subs[0]["image"])
    for sub in subs[1:]:
        images &= set(sub["image"])
    if not images:
        raise ValueError(f"{' and '.join(map(repr, names))} share no image id: the comparison is paired over "
                         "images, so both need captions of the same images")
    images = pd.Index(_sorted(images))
    seed_of = [sub["seed"] if "seed" in sub else pd.Series(0, index=sub.index) for sub in subs]
    if paired_seeds:
        shared = set(seed_of[0])
        for s in seed_of[1:]:
            shared &= set(s)
        seed_lists = [_sorted(shared)] * len(subs)
    else:
        seed_lists = [_sorted(s) for s in seed_of]
    groups = []
    for sub, s, seeds in zip(subs, seed_of, seed_lists):
        keep = sub["image"].isin(images) & s.isin(seeds)
        sub, s = sub[keep], s[keep]
        groups.append(_Group(sub, images.get_indexer(sub["image"]), pd.Index(seeds).get_indexer(s), list(seeds)))
    return images, groups


def _summary(point: float, draws: np.ndarray, confidence: float, null: float, *, centre: bool = False) -> dict:
    """Percentile interval and bootstrap p of the draws (``centre``: of ``draws − mean(draws) + point``)."""
    ok = draws[np.isfinite(draws)]
    out = {"value": float(point), "low": math.nan, "high": math.nan, "p": math.nan, "valid_resamples": int(len(ok)),
           "null": float(null), "interval": "bias-centred percentile" if centre else "percentile"}
    if np.isfinite(point) and len(ok) >= 2:
        if centre:
            ok = ok - ok.mean() + point
        lo, hi = np.quantile(ok, [(1 - confidence) / 2, (1 + confidence) / 2])
        tail = min(int((ok <= null).sum()), int((ok >= null).sum()))
        out |= {"low": float(lo), "high": float(hi), "p": float(min(1.0, 2 * (tail + 1) / (len(ok) + 1)))}
    return out


def _evaluate(g: _Group, fn: Callable, per_seed: bool, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The statistic of one group under image counts ``c`` (k, I) and seed counts ``d`` (k, S): pooled over cells
    weighted ``d_s c_i``, or (``per_seed``) per seed over its images, averaged with weights ``d_s``."""
    if not per_seed:
        return fn(g.frame, c[:, g.img] * d[:, g.seed])
    vals = np.full(d.shape, np.nan)
    for s in range(len(g.seeds)):
        m = g.seed == s
        if m.any():
            vals[:, s] = fn(g.frame[m], c[:, g.img[m]])
    ok = np.isfinite(vals)
    den = (d * ok).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (d * np.where(ok, vals, 0.0)).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def _bootstrap(table: pd.DataFrame, by: str, a, b, fn: Callable, *, seed: int, n_resamples: int,
               confidence: float, null: float, paired_seeds: bool, per_seed: bool) -> tuple[dict, list[_Group]]:
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    images, groups = _groups(table, by, [a] if b is None else [a, b], paired_seeds=paired_seeds)
    rng = np.random.default_rng(int(seed))
    c = _counts(rng, len(images), n_resamples)
    if paired_seeds:
        d = _counts(rng, len(groups[0].seeds), n_resamples)
        ds = [d] * len(groups)
    else:
        ds = [_counts(rng, len(g.seeds), n_resamples) for g in groups]
    ones = np.ones((1, len(images)))
    points = [float(_evaluate(g, fn, per_seed, ones, np.ones((1, len(g.seeds))))[0]) for g in groups]
    draws = [_evaluate(g, fn, per_seed, c, dd) for g, dd in zip(groups, ds)]
    point = points[0] - (points[1] if b is not None else 0.0)
    diff = draws[0] - (draws[1] if b is not None else 0.0)
    out = _summary(point, diff, confidence, null, centre=per_seed) | {"n_images": len(images), "confidence": confidence}
    for key, val in zip(("value_a", "value_b"), points):
        out[key] = val
    return out, groups


def _caption_fn(measure, stat: str, table: pd.DataFrame) -> tuple[Callable, Callable[[pd.DataFrame], int], str]:
    """(statistic of weights, finite-item count of a frame, label) of a caption-level measure."""
    if stat == "pooled":
        if isinstance(measure, str) and measure not in RATIOS:
            raise ValueError(f"stat='pooled' needs a ratio measure of RATIOS {sorted(RATIOS)} or a (numerator, "
                             f"denominator) pair of columns, got {measure!r}")
        k, n = RATIOS[measure] if isinstance(measure, str) else measure
        _need(table, [k, n], f"the pooled ratio {measure!r}")
        fn = lambda f, w: _wratio(f[k].to_numpy(float), f[n].to_numpy(float), w)  # noqa: E731
        count = lambda f: int((f[n].to_numpy(float) > 0).sum())  # noqa: E731
        return fn, count, f"pooled Σ{k} / Σ{n}"
    if stat not in ("mean", "median"):
        raise ValueError(f"unknown stat {stat!r}; valid: 'mean', 'median', 'pooled'")
    _need(table, [measure], f"the {stat} of {measure!r}")
    agg = _wmean if stat == "mean" else _wmedian
    fn = lambda f, w: agg(f[measure].to_numpy(float), w)  # noqa: E731
    count = lambda f: int(np.isfinite(f[measure].to_numpy(float)).sum())  # noqa: E731
    return fn, count, f"caption {stat}"


def bootstrap_diff(table: pd.DataFrame, measure, a, b, *, seed: int, n_resamples: int = 2000,
                   confidence: float = 0.95, stat: str = "mean", null: float = 0.0, by: str = "system",
                   paired_seeds: bool = False) -> dict:
    """Statistic of ``a`` minus statistic of ``b`` (rows ``table[by] == a`` / ``== b``) with the two-level
    bootstrap of the module docstring: images drawn once for both (paired), seeds drawn per group (or once for
    both when ``paired_seeds``). ``stat``: ``"mean"`` or ``"median"`` of the caption values of ``measure``, or
    ``"pooled"`` (``measure`` a key of :data:`RATIOS` or a ``(numerator, denominator)`` pair of columns).

    Returns ``value`` (a − b on all data), ``low``, ``high`` (percentile interval), ``p`` (two-sided bootstrap p of
    ``δ = null``), ``confidence``, ``interval``, ``n_images`` (images both have), ``seeds_a``, ``seeds_b``,
    ``n_a``, ``n_b`` (rows with a finite value; pooled: rows with a positive denominator), ``value_a``,
    ``value_b``, ``valid_resamples``, ``null``, ``statistic``.

    **Coverage** (simulated: 200 data sets of 60 images, normal image effects shared by both systems, caption noise
    sd 0.5, 10% NaN cells, 500 resamples): 0.96 with 3 vs 1 seeds and no seed effect; 1.00 with 3 vs 3 seeds
    (conservative: resampling seeds on top of images counts the caption noise twice); with a seed effect of sd 0.3
    it falls to 0.86 (3 vs 3 seeds) and 0.59 (3 vs 1): three seeds estimate the seed variance poorly and one seed
    not at all, so a one-seed interval is conditional on that training run.

    >>> t = pd.DataFrame({"system": ["a"] * 4 + ["b"] * 4, "seed": 0, "image": list("wxyz") * 2,
    ...                   "m": [2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 3.0, 4.0]})
    >>> r = bootstrap_diff(t, "m", "a", "b", seed=0, n_resamples=200)
    >>> r["value"], r["low"], r["high"], r["p"] < 0.05
    (1.0, 1.0, 1.0, True)
    """
    fn, count, label = _caption_fn(measure, stat, table)
    out, (ga, gb) = _bootstrap(table, by, a, b, fn, seed=seed, n_resamples=n_resamples, confidence=confidence,
                               null=null, paired_seeds=paired_seeds, per_seed=False)
    return out | {"seeds_a": len(ga.seeds), "seeds_b": len(gb.seeds), "n_a": count(ga.frame), "n_b": count(gb.frame),
                  "statistic": label}


def bootstrap_mean(table: pd.DataFrame, measure, system, *, seed: int, n_resamples: int = 2000,
                   confidence: float = 0.95, stat: str = "mean", by: str = "system") -> dict:
    """One system's statistic (``stat`` as in :func:`bootstrap_diff`) with the two-level bootstrap over its images
    and seeds: ``value, low, high, n_images, seeds, n, valid_resamples, statistic`` (``p`` tests ``value = 0``).

    >>> t = pd.DataFrame({"system": "a", "seed": [0, 0, 1, 1], "image": list("xyxy"), "m": [1.0, 2.0, 3.0, np.nan]})
    >>> bootstrap_mean(t, "m", "a", seed=0, n_resamples=50)["value"]
    2.0
    """
    fn, count, label = _caption_fn(measure, stat, table)
    out, (g,) = _bootstrap(table, by, system, None, fn, seed=seed, n_resamples=n_resamples, confidence=confidence,
                           null=0.0, paired_seeds=False, per_seed=False)
    out.pop("value_a", None)
    return out | {"seeds": len(g.seeds), "n": count(g.frame), "statistic": label}


def _corpus_fn(fn, table: pd.DataFrame) -> tuple[Callable, bool, str]:
    """(statistic of weights, per seed?, label) of a corpus statistic named in :data:`CORPUS_STATS`, a pooled ratio
    (``"chair_i"`` or another :data:`RATIOS` key, ``"pooled:<k>/<n>"``) or a callable ``fn(frame) -> float``."""
    if callable(fn):
        def loop(f: pd.DataFrame, w: np.ndarray) -> np.ndarray:
            out = np.full(len(w), np.nan)
            for i, rep in enumerate(np.rint(w).astype(int)):
                if rep.sum():
                    out[i] = float(fn(f.iloc[np.repeat(np.arange(len(f)), rep)]))
            return out
        return loop, True, getattr(fn, "__name__", "statistic") + " per seed"
    if fn == "template_entropy":
        _need(table, ["template"], "template entropy")
        return (lambda f, w: _wentropy(f["template"].tolist(), w)), True, "template entropy (bits) per seed"
    if fn in CORPUS_STATS:
        n = int(fn.rsplit("_", 1)[1])
        _need(table, ["caption"], fn)
        return (lambda f, w: _wdistinct([tokens(c) for c in f["caption"]], n, w)), True, f"distinct-{n} per seed"
    if isinstance(fn, str) and (fn in RATIOS or fn.startswith("pooled:")):
        pair = RATIOS[fn] if fn in RATIOS else tuple(fn.removeprefix("pooled:").split("/"))
        f_, _, label = _caption_fn(pair, "pooled", table)
        return f_, False, label
    raise ValueError(f"unknown corpus statistic {fn!r}; valid: {', '.join(CORPUS_STATS)}, a key of RATIOS "
                     f"({', '.join(RATIOS)}), 'pooled:<numerator>/<denominator>', or a callable fn(frame) -> float")


def bootstrap_stat(table: pd.DataFrame, a, b, fn, *, seed: int, n_resamples: int = 2000, confidence: float = 0.95,
                   null: float = 0.0, by: str = "system", paired_seeds: bool = False) -> dict:
    """A corpus-level statistic of ``a`` minus that of ``b`` (``b=None``: of ``a`` alone), two-level bootstrap.

    ``fn``: ``"template_entropy"`` (:func:`analysis.linguistics.entropy` of the ``template`` column, bits),
    ``"distinct_<n>"`` (``#distinct n-grams / #n-grams`` of the captions' :func:`tokens`), or a callable
    ``fn(frame) -> float`` of the resample's rows (each drawn row repeated; a Python loop, slower) — all computed
    per seed over its drawn images and averaged over the drawn seeds (module docstring). Ratios pooled over items
    and cells instead: ``"chair_i"`` (CHAIR-i ``Σ chair_hallucinated / Σ chair_mentions``), any key of
    :data:`RATIOS`, ``"pooled:<k>/<n>"``. Returns the keys of :func:`bootstrap_diff` (``seeds_a``, ``seeds_b``,
    ``n_a``, ``n_b`` = rows).

    >>> t = pd.DataFrame({"system": ["a"] * 4 + ["b"] * 4, "image": list("wxyz") * 2,
    ...                   "template": ["N", "V", "N V", "D N", "N", "N", "N", "N"]})
    >>> bootstrap_stat(t, "a", "b", "template_entropy", seed=0, n_resamples=100)["value"]
    2.0
    """
    f, per_seed, label = _corpus_fn(fn, table)
    out, groups = _bootstrap(table, by, a, b, f, seed=seed, n_resamples=n_resamples, confidence=confidence,
                             null=null, paired_seeds=paired_seeds, per_seed=per_seed)
    out |= {"seeds_a": len(groups[0].seeds), "n_a": len(groups[0].frame), "statistic": label}
    if b is not None:
        out |= {"seeds_b": len(groups[1].seeds), "n_b": len(groups[1].frame)}
    return out


def bootstrap_spearman(table: pd.DataFrame, x: str, y: str, *, seed: int, n_resamples: int = 2000,
                       confidence: float = 0.95, null: float = 0.0) -> dict:
    """Spearman's rho between columns ``x`` and ``y`` over every row where both are finite, with a bootstrap over
    images (each drawn image brings all its rows, of every system and seed; seeds are not resampled). The point
    value and ``p_spearman`` (scipy's two-sided p, which treats rows as independent) are
    :func:`analysis.grounding.visual_word_correlation`; ``p`` is the bootstrap p of ``rho = null``; the draws are
    the mid-rank Pearson correlation of each resample (rows repeated as drawn). Returns ``value, low, high, p,
    p_spearman, n, n_images, valid_resamples, null``."""
    from analysis.grounding import visual_word_correlation

    _need(table, [x, y, "image"], "a rank correlation")
    xs, ys = table[x].to_numpy(float), table[y].to_numpy(float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys, im = xs[keep], ys[keep], table["image"].to_numpy()[keep]
    rho, p_sp, n = visual_word_correlation(xs, ys)
    images = pd.Index(_sorted(im))
    if n < 3:
        return {"value": rho, "low": math.nan, "high": math.nan, "p": math.nan, "p_spearman": p_sp, "n": n,
                "n_images": len(images), "valid_resamples": 0, "null": float(null)}
    c = _counts(np.random.default_rng(int(seed)), len(images), n_resamples)
    draws = _wspearman(xs, ys, c[:, images.get_indexer(im)])
    return _summary(rho, draws, confidence, null) | {"p_spearman": p_sp, "n": n, "n_images": len(images),
                                                     "confidence": confidence}


# ----------------------------------------------------------------------------- rows of the findings
def own_scorer(system: str, scorers: Sequence[str] = ()) -> str:
    """The scorer a system was rewarded by: its own name when ``scorers`` has it, else the base name (after the
    last ``:`` and before a ``/``): ``mix:clip-mini`` -> ``clip-mini``, ``uniter-mini/probability`` ->
    ``uniter-mini`` (a logit and a probability reward are one scorer; Spearman's rho is the same for both).

    >>> own_scorer("mix:clip-mini"), own_scorer("uniter-mini/probability", ["uniter-mini/probability"])
    ('clip-mini', 'uniter-mini/probability')
    """
    return system if system in set(scorers) else str(system).split(":")[-1].split("/")[0]


def _sub_seed(seed: int, *key) -> int:
    """A seed per test, from ``seed`` and the test's key (stable across runs and orders of systems)."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32("|".join(map(str, key)).encode())]).generate_state(1)[0])


def _family_of(captions: pd.DataFrame, system) -> str:
    if "family" not in captions:
        return ""
    f = captions.loc[captions["system"] == system, "family"].dropna()
    return str(f.iloc[0]) if len(f) else ""


def _seeds_of(table: pd.DataFrame, system) -> int:
    sub = table[table["system"] == system]
    return int(sub["seed"].nunique()) if "seed" in sub else int(len(sub) > 0)


def _row(finding, test, component, measure, system, family, scorer, baseline, direction, null, test_family,
         res: dict | None = None, status="ok", note="", statistic="", n_min=MIN_N) -> dict:
    res = res or {}
    n = int(min(res["n_a"], res.get("n_b", res["n_a"])) if "n_a" in res else res.get("n", 0))
    if status == "ok" and n < n_min:
        status = "too few"
        note = note or f"n = {n} < {n_min}"
    keep_p = status == "ok"
    return {"finding": finding, "test": test, "component": component, "measure": measure,
            "statistic": res.get("statistic", statistic), "system": system, "family": family, "scorer": scorer,
            "baseline": baseline, "value": res.get("value", math.nan),
            "low": res.get("low", math.nan) if keep_p else math.nan,
            "high": res.get("high", math.nan) if keep_p else math.nan, "null": null,
            "p": res.get("p", math.nan) if keep_p and direction is not None else math.nan, "p_holm": math.nan,
            "test_family": test_family, "n": n, "n_images": res.get("n_images", 0),
            "seeds": res.get("seeds_a", 0), "seeds_baseline": res.get("seeds_b", math.nan),
            "direction_expected": direction, "supports": None, "status": status, "note": note,
            "interval": res.get("interval", ""), "confidence": res.get("confidence", math.nan)}


def _finish(rows: list[dict], n_resamples: int) -> pd.DataFrame:
    """Holm within each ``test_family`` (tests with a p only), then ``supports`` for the tests that ran. Warns when
    the bootstrap p's floor ``2/(B+1)`` times a family's size exceeds :data:`ALPHA` (no test there could hold)."""
    import warnings

    from analysis.stats import holm

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if df.empty:
        return df
    df["supports"] = df["supports"].astype(object)
    for family, idx in df.groupby("test_family", sort=False).groups.items():
        p = df.loc[idx, "p"].to_numpy(float)
        m = int(np.isfinite(p).sum())
        if m and 2 * m / (n_resamples + 1) > ALPHA:
            warnings.warn(f"with n_resamples={n_resamples} the smallest bootstrap p is 2/(B+1), so Holm over the {m} "
                          f"tests of {family!r} can never reach α = {ALPHA}; use n_resamples >= {math.ceil(2 * m / ALPHA)}",
                          stacklevel=3)
        df.loc[idx, "p_holm"] = holm(p)
    for i, r in df.iterrows():
        if r["status"] == "ok" and r["direction_expected"] in (">", "<") and np.isfinite(r["p_holm"]):
            side = (r["value"] - r["null"]) > 0 if r["direction_expected"] == ">" else (r["value"] - r["null"]) < 0
            df.at[i, "supports"] = bool(r["p_holm"] <= ALPHA and side)
    return df


def _probe_systems(captions: pd.DataFrame, systems, baselines) -> list:
    if systems is not None:
        return list(systems)
    present = list(dict.fromkeys(captions["system"])) if "system" in captions else []
    return [s for s in present if s not in baselines and s not in NOT_PROBED]


def _caption_tests(finding, tests, captions, systems, baselines, *, seed, n_resamples, confidence, min_n,
                   blind) -> list[dict]:
    """Rows of caption-level tests ``(test, component, measure, stat, direction, null)`` of each system vs each
    baseline; ``stat`` ``"rate"`` means pooled when :data:`RATIOS` columns are present, else caption mean."""
    rows = []
    present = set(captions["system"]) if "system" in captions else set()
    for s in systems:
        fam = _family_of(captions, s)
        for base in baselines:
            for test, comp, measure, stat, direction, null in tests:
                args = (finding, test, comp, measure, s, fam, own_scorer(s), base, direction, null, f"{finding} {s}")
                if s not in present:
                    rows.append(_row(*args, status="missing system", note=f"no captions of `{s}`"))
                    continue
                if base not in present:
                    rows.append(_row(*args, status="missing baseline", note=f"no captions of baseline `{base}`"))
                    continue
                if stat == "rate":
                    stat = "pooled" if measure in RATIOS and set(RATIOS[measure]) <= set(captions) else "mean"
                cols = list(RATIOS[measure]) if stat == "pooled" else [measure]
                if any(c not in captions for c in cols):
                    rows.append(_row(*args, status="missing column",
                                     note=f"the caption table has no {', '.join(c for c in cols if c not in captions)}"))
                    continue
                sd = _sub_seed(seed, finding, test, s, base)
                kw = dict(seed=sd, n_resamples=n_resamples, confidence=confidence, null=null)
                res = (bootstrap_stat(captions, s, base, stat, **kw) if stat in CORPUS_STATS
                       else bootstrap_diff(captions, measure, s, base, stat=stat, **kw))
                rows.append(_row(*args, res=res, n_min=min_n))
    return rows


def _edit_tests(finding, tests, captions, edits, systems, *, seed, n_resamples, confidence, min_n, blind,
                scorer_of) -> list[dict]:
    """Rows of edit tests ``(test, component, a, b)``: mean delta of kind ``a`` minus kind ``b`` within one
    system's captions scored by its own scorer (and by ``blind``, as a control), paired over images and seeds."""
    rows = []
    have = edits is not None and len(edits) > 0
    if have:
        _need(edits, ["system", "scorer", "kind", "delta", "image"], "the edit tests")
    present = set(captions["system"]) if "system" in captions else set()
    for s in systems:
        fam = _family_of(captions, s)
        if s not in present:
            for test, comp, _, _ in tests:
                rows.append(_row(finding, test, comp, "delta", s, fam, own_scorer(s), "", ">", 0.0, f"{finding} {s}",
                                 status="missing system", note=f"no captions of `{s}`"))
            continue
        mine = edits[edits["system"] == s] if have else None
        scorers = list(dict.fromkeys(mine["scorer"])) if have else []
        own = (scorer_of or {}).get(s) or own_scorer(s, scorers)
        for scorer, role in ((own, "own"), (blind, "control")):
            if role == "control" and (own == blind or s == blind):
                continue
            tf = f"{finding} {s}" if role == "own" else f"{finding} {s} blind-scorer control"
            for test, comp, a, b in tests:
                comp_ = comp if role == "own" else f"{comp} (blind control)"
                args = (finding, test, comp_, "delta", s, fam, scorer, "", ">", 0.0, tf)
                e = mine[mine["scorer"] == scorer] if have else None
                if e is None or e.empty or not (e["kind"] == a).any() or not (e["kind"] == b).any():
                    if role == "own":
                        rows.append(_row(*args, status="missing edits",
                                         note=f"no `{a}`/`{b}` edits of `{s}`'s captions scored by `{scorer}`"))
                    continue
                res = bootstrap_diff(e, "delta", a, b, by="kind", paired_seeds=True,
                                     seed=_sub_seed(seed, finding, test, s, scorer), n_resamples=n_resamples,
                                     confidence=confidence)
                res["statistic"] = f"mean delta({a}) − mean delta({b})"
                res["seeds_a"] = res["seeds_b"] = _seeds_of(e, s)
                rows.append(_row(*args, res=res, n_min=min_n))
    return rows


def f1_rows(captions: pd.DataFrame, edits: pd.DataFrame | None, *, systems: Sequence[str] | None = None,
            baselines: Sequence[str] = BASELINES, seed: int, n_resamples: int = 2000, confidence: float = 0.95,
            margin: float = MARGIN, min_n: int = MIN_N, blind: str = BLIND,
            scorer_of: dict | None = None) -> pd.DataFrame:
    """F1 (objects over global semantics), per probed system (default: every system but the baselines and the
    references) and baseline:

    * *objects kept* (non-inferiority): ``object_precision`` and ``object_recall`` of the system minus the
      baseline's, the interval above ``−margin`` (``null = −margin``, expected ``">"``);
    * *global falls*: ``relation_correct`` and ``count_correct`` minus the baseline's, below 0; and, when the count
      columns are there, the relations / counts **stated** per stamp-scene caption minus the baseline's, below 0
      (a captioner that stops stating relations neglects them, and has few ``relation_correct`` values at all);
    * *edit*: within the system's captions scored by its own scorer (:func:`own_scorer`, or ``scorer_of``),
      ``mean delta(object edit) − mean delta(relation | count | size edit)`` above 0 (delta = score(original) −
      score(edited); positive: the scorer loses more when a true object is replaced than when a relation, count
      or size is made false); the same with the ``blind`` scorer is a control (its own Holm family);
    * descriptive row (no test): CHAIR-i.

    Rates are pooled ``Σ correct / Σ stated`` when the :data:`RATIOS` count columns are present, otherwise the
    caption mean of the rate (``statistic`` says which). Holm within each system's tests of the finding (module docstring).
    """
    systems = _probe_systems(captions, systems, baselines)
    tests = [("object precision kept", "objects kept", "object_precision", "rate", ">", -margin),
             ("object recall kept", "objects kept", "object_recall", "rate", ">", -margin),
             ("relation correctness falls", "global falls", "relation_correct", "rate", "<", 0.0),
             ("count correctness falls", "global falls", "count_correct", "rate", "<", 0.0)]
    kw = dict(seed=seed, n_resamples=n_resamples, confidence=confidence, min_n=min_n, blind=blind)
    context = ([("CHAIR-i", "context", "chair_i", "pooled", None, 0.0)]
               if set(RATIOS["chair_i"]) <= set(captions) else [])
    caps = captions
    for x in ("relation", "count"):  # neglect: the captions state fewer relations / counts at all
        if f"{x}s_stated" in captions:
            has_graph = (captions["has_graph"].astype(bool) if "has_graph" in captions
                         else captions["object_recall"].notna() if "object_recall" in captions else True)
            caps = caps.assign(**{f"{x}s_stated_per_caption": captions[f"{x}s_stated"].where(has_graph)})
            tests.append((f"fewer {x}s stated", "global falls", f"{x}s_stated_per_caption", "mean", "<", 0.0))
    rows = _caption_tests("F1", tests, caps, systems, baselines, **kw)
    if context:
        rows += [r for r in _caption_tests("F1", context, caps, systems, baselines, **kw)
                 if r["status"] in ("ok", "too few")]
    edit_tests = [(f"object edit minus {g} edit", "edit", "object", g) for g in ("relation", "count", "size")]
    rows += _edit_tests("F1", edit_tests, captions, edits, systems, scorer_of=scorer_of, **kw)
    return _finish(rows, n_resamples)


def f2_rows(captions: pd.DataFrame, *, systems: Sequence[str] | None = None, baselines: Sequence[str] = BASELINES,
            seed: int, n_resamples: int = 2000, confidence: float = 0.95, min_n: int = MIN_N,
            blind: str = BLIND) -> pd.DataFrame:
    """F2 (fixed patterns, fluency and grammar ignored), per probed system and baseline, each a difference
    system − baseline:

    * *patterns*: template entropy (bits, per seed) below 0; distinct-2 is a descriptive row;
    * *fluency*: mean SLOR below 0; **median** perplexity above 0 (perplexity is heavy-tailed);
    * *grammar*: the share of captions flagged (``grammar_error``, 0/1) above 0 (a difference of proportions,
      bootstrapped like the rest; both at 0 gives ``[0, 0]`` and p = 1).

    Holm within each system's tests of the finding (module docstring).
    """
    systems = _probe_systems(captions, systems, baselines)
    tests = [("template entropy lower", "patterns", "template", "template_entropy", "<", 0.0),
             ("SLOR lower", "fluency", "slor", "mean", "<", 0.0),
             ("perplexity higher", "fluency", "perplexity", "median", ">", 0.0),
             ("grammar errors more frequent", "grammar", "grammar_error", "mean", ">", 0.0),
             ("distinct-2", "context", "caption", "distinct_2", None, 0.0)]
    return _finish(_caption_tests("F2", tests, captions, systems, baselines, seed=seed, n_resamples=n_resamples,
                                  confidence=confidence, min_n=min_n, blind=blind), n_resamples)


def f3_rows(captions: pd.DataFrame, edits: pd.DataFrame | None, *, systems: Sequence[str] | None = None,
            baselines: Sequence[str] = BASELINES, seed: int, n_resamples: int = 2000, confidence: float = 0.95,
            min_n: int = MIN_N, blind: str = BLIND, scorer_of: dict | None = None,
            exclude: Sequence[str] = NOT_PROBED) -> pd.DataFrame:
    """F3 (more visual words = better aligned):

    * *correlation*, per scorer (each probed system's own scorer and ``blind``): Spearman's rho between
      ``visual_words`` and ``score:<scorer>`` over the captions of every system pooled (``exclude``: the
      references), above 0; bootstrap over images (:func:`bootstrap_spearman`); ``system`` is ``"(pooled)"``;
    * *insertion*, per system with its own scorer: the score **gain** ``−delta`` from appending a hallucinated
      visual word minus the gain from appending a non-visual word, above 0 (computed as
      ``mean delta(insert non-visual) − mean delta(insert hallucinated)``: delta = original − edited, so a raised
      score is a negative delta); the same for a correct visual word; gain(correct) − gain(hallucinated) is a
      descriptive row (does the scorer tell a right visual word from a wrong one?). The ``blind`` scorer on the
      same captions is a control. The correct insertion carries the object's true count ("and two apples"), so it
      can be longer than the others (:mod:`analysis.grounding`).

    Holm within each system's tests of the finding (module docstring).
    """
    systems = _probe_systems(captions, systems, baselines)
    rows = []
    present = set(captions["system"])
    have = edits is not None and len(edits) > 0
    scorers = list(dict.fromkeys(
        [(scorer_of or {}).get(s) or own_scorer(s, edits.loc[edits["system"] == s, "scorer"] if have else ())
         for s in systems if s in present] + [blind]))
    pool = captions[~captions["system"].isin(exclude)]
    for sc in scorers:
        col = f"score:{sc}"
        args = ("F3", "visual words vs score", "correlation", f"spearman(visual_words, {col})", "(pooled)", "",
                sc, "", ">", 0.0, "F3 correlations")
        if col not in captions or "visual_words" not in captions:
            missing = col if col not in captions else "visual_words"
            rows.append(_row(*args, status="missing scorer" if missing == col else "missing column",
                             note=f"the caption table has no `{missing}` column"))
            continue
        res = bootstrap_spearman(pool, "visual_words", col, seed=_sub_seed(seed, "F3", "rho", sc),
                                 n_resamples=n_resamples, confidence=confidence)
        res["statistic"] = "Spearman rho, captions of all systems pooled"
        res["seeds_a"] = int(pool["seed"].nunique()) if "seed" in pool else 1
        rows.append(_row(*args, res=res, n_min=min_n))
    tests = [("hallucinated word raises the score more than a non-visual word", "insertion", "insert non-visual",
              "insert hallucinated"),
             ("correct word raises the score more than a non-visual word", "insertion", "insert non-visual",
              "insert correct")]
    kw = dict(seed=seed, n_resamples=n_resamples, confidence=confidence, min_n=min_n, blind=blind,
              scorer_of=scorer_of)
    rows += _edit_tests("F3", tests, captions, edits, systems, **kw)
    ctx = _edit_tests("F3", [("correct word raises the score more than a hallucinated one", "context",
                              "insert hallucinated", "insert correct")], captions, edits, systems, **kw)
    for r in ctx:
        if r["component"] == "context" and r["status"] in ("ok", "too few"):
            rows.append(r | {"direction_expected": None, "p": math.nan})
    return _finish(rows, n_resamples)


# ----------------------------------------------------------------------------- verdicts
#: the components of each finding, their rule ("all": every testable row supports; "any measure": some measure
#: supports against every baseline it was tested on), and whether a support there counts as evidence for it
RULES = {"F1": (("objects kept", "all", False), ("global falls", "any measure", True), ("edit", "all", True)),
         "F2": (("patterns", "all", True), ("fluency", "any measure", True), ("grammar", "all", True)),
         "F3": (("correlation", "all", True), ("insertion", "all", True))}
NEEDS_BASELINES = {"F1": True, "F2": True, "F3": False}


def _state(g: pd.DataFrame, rule: str) -> str:
    t = g[g["supports"].notna()]
    if t.empty:
        return "untestable"
    if rule == "all":
        return "supports" if t["supports"].astype(bool).all() else "against"
    ok = t.groupby("measure")["supports"].apply(lambda s: bool(s.astype(bool).all()))
    return "supports" if ok.any() else "against"


def _why(g: pd.DataFrame) -> str:
    notes = list(dict.fromkeys(g.loc[g["status"] != "ok", "status"] + ": " + g.loc[g["status"] != "ok", "note"]))
    return "; ".join(notes) if notes else "no test"


def _contradicted(rows: pd.DataFrame) -> bool:
    """True when some tested row shows the opposite of the expected effect: its interval lies wholly on the other
    side of its null (``high < null`` when ``>`` was expected, ``low > null`` when ``<`` was)."""
    ok = rows[(rows["status"] == "ok") & rows["direction_expected"].isin([">", "<"])]
    hi = pd.to_numeric(ok["high"], errors="coerce")
    lo = pd.to_numeric(ok["low"], errors="coerce")
    null = pd.to_numeric(ok["null"], errors="coerce").fillna(0.0)
    return bool((((ok["direction_expected"] == ">") & (hi < null)) | ((ok["direction_expected"] == "<") & (lo > null))).any())


def verdicts(rows: pd.DataFrame) -> pd.DataFrame:
    """One verdict per finding and probed system (its ``family`` and own ``scorer`` alongside), from the rows of
    :func:`f1_rows`, :func:`f2_rows`, :func:`f3_rows` (concatenated).

    Each finding has components (:data:`RULES`); a component *supports* when its testable rows do by its rule
    (``all``: every testable row supports; ``any measure``: at least one measure supports against every baseline
    it was tested on), is *against* when testable and not supporting, and *untestable* when no row ran.

    * F1: objects kept (all) · global falls (relation or count correctness falls, or fewer relations or counts
      stated; any measure) · edit (the object-edit effect exceeds every testable global-edit effect, all).
    * F2: patterns (template entropy lower) · fluency (SLOR lower or perplexity higher) · grammar (errors more
      frequent).
    * F3: correlation (rho of visual words and the own scorer's score above 0, from the ``(pooled)`` row of that
      scorer) · insertion (both a hallucinated and a correct visual word raise the score more than a non-visual
      word).

    The verdict: **not testable here** when the system has no captions, a baseline F1/F2 need is missing, or no
    component that is evidence for the finding could be tested (for F1 "objects kept" alone is not evidence);
    **reproduced** when every component supports; when no evidence component supports, **not reproduced** if some
    evidence test shows the opposite effect (its interval wholly on the other side of its null, :func:`_contradicted`)
    and **inconclusive** if none does (every interval covers its null: too little data to decide); **mixed**
    otherwise (also when a component could not be tested and the others support). The ``blind`` (text-only) system gets the same
    verdict; every other system shows it as ``blind_verdict`` with ``blind_flag`` True when blind reproduces the
    finding too (then the finding is not evidence about image–text alignment, and the reason says so), and
    ``blind_control`` the state of the blind-scorer control on this system's own captions (F1, F3).
    """
    out = []
    if rows.empty:
        return pd.DataFrame(columns=["finding", "finding_name", "system", "family", "scorer", "seeds", "verdict", "reason",
                                     "components", "blind_verdict", "blind_flag", "blind_control"])
    for finding in [f for f in FINDINGS if (rows["finding"] == f).any()]:
        fr = rows[rows["finding"] == finding]
        pooled = fr[fr["system"] == "(pooled)"]
        for system in [s for s in dict.fromkeys(fr["system"]) if s != "(pooled)"]:
            sr = fr[(fr["system"] == system) & ~fr["component"].str.endswith("(blind control)")]
            sc = sr.loc[sr["component"].isin(["edit", "insertion"]), "scorer"]
            scorer = str(sc.iloc[0]) if len(sc) else str(sr["scorer"].iloc[0]) if len(sr) else own_scorer(system)
            seeds = int(pd.to_numeric(sr["seeds"], errors="coerce").fillna(0).max()) if len(sr) else 0
            if finding == "F3":
                sr = pd.concat([sr, pooled[pooled["scorer"] == scorer]])
            missing_sys = (sr["status"] == "missing system").any()
            missing_base = sorted(set(sr.loc[sr["status"] == "missing baseline", "baseline"]))
            states, parts = {}, []
            for comp, rule, _ in RULES[finding]:
                g = sr[sr["component"] == comp]
                states[comp] = _state(g, rule)
                if states[comp] == "untestable":
                    parts.append(f"{comp}: not testable ({_why(g) if len(g) else 'no rows'})")
                else:
                    ok = g["supports"].notna() & g["supports"].astype(bool)
                    named = [f"{t} vs `{b}`" if isinstance(b, str) and b else str(t)
                             for t, b in zip(g["test"], g.get("baseline", pd.Series("", index=g.index)))]
                    held = [n for n, k in zip(named, ok) if k]
                    failed = [n for n, k in zip(named, ok) if not k]
                    tests = ", ".join(dict.fromkeys(held)) if held else "none of its tests"
                    note = f"; not shown: {', '.join(dict.fromkeys(failed))}" if held and failed else ""
                    parts.append(f"{comp}: {'yes' if states[comp] == 'supports' else 'no'} (holds: {tests}{note})")
            evidence = [states[c] for c, _, ev in RULES[finding] if ev]
            if missing_sys:
                verdict, reason = "not testable here", f"no captions of `{system}` in this run"
            elif NEEDS_BASELINES[finding] and missing_base:
                verdict = "not testable here"
                reason = (f"baseline{'s' if len(missing_base) > 1 else ''} "
                          f"{', '.join(f'`{b}`' for b in missing_base)} missing (no captions in this run)")
            elif all(s == "untestable" for s in states.values()):
                verdict, reason = "not testable here", "; ".join(parts)
            elif all(s == "untestable" for s in evidence):
                verdict = "not testable here"
                reason = "; ".join(parts) + ". Every component that is evidence for the finding was untestable"
            elif all(s == "supports" for s in states.values()):
                verdict, reason = "reproduced", "; ".join(parts)
            elif "supports" not in evidence:
                ev_rows = sr[sr["component"].isin([c for c, _, ev in RULES[finding] if ev])]
                if _contradicted(ev_rows):
                    verdict, reason = "not reproduced", "; ".join(parts)
                else:
                    verdict = "inconclusive"
                    reason = ("; ".join(parts) + ". No evidence test holds, and none shows the opposite effect either "
                              "(every interval covers its null): too little data to decide")
            else:
                verdict, reason = "mixed", "; ".join(parts)
            ctrl = fr[(fr["system"] == system) & fr["component"].str.endswith("(blind control)")]
            ctrl_state = _state(ctrl, "all") if len(ctrl) else "untestable"
            out.append({"finding": finding, "finding_name": FINDINGS[finding], "system": system,
                        "family": str(sr["family"].iloc[0]) if len(sr) else "",
                        "scorer": scorer, "seeds": seeds, "verdict": verdict, "reason": reason,
                        "components": states, "blind_control": ctrl_state})
    v = pd.DataFrame(out)
    blind_of = {r.finding: r.verdict for r in v.itertuples() if r.system == BLIND or r.family == "text-only"}
    bv, flags, reasons = [], [], []
    for r in v.itertuples():
        is_blind = r.system == BLIND or r.family == "text-only"
        b = "(this is the text-only system)" if is_blind else blind_of.get(r.finding, "not in this run")
        flag = (not is_blind) and b == "reproduced"
        reason = r.reason
        if is_blind and r.verdict in ("reproduced", "mixed"):
            reason += ". The text-only system never sees the image, so what it shows here is a property of the text"
        if flag and r.verdict in ("reproduced", "mixed"):
            reason += (f". `{BLIND}` (text-only) reproduces {r.finding} too, so here it is not evidence about "
                       "image–text alignment")
        if not is_blind and r.blind_control == "supports" and r.verdict in ("reproduced", "mixed"):
            reason += (f". The text-only scorer `{BLIND}` shows the same effect on these captions, so that effect is "
                       "carried by the text")
        bv.append(b)
        flags.append(flag)
        reasons.append(reason)
    return v.assign(blind_verdict=bv, blind_flag=flags, reason=reasons)[
        ["finding", "finding_name", "system", "family", "scorer", "seeds", "verdict", "reason", "components",
         "blind_verdict",
         "blind_flag", "blind_control"]]


# ----------------------------------------------------------------------------- did SCST raise its own reward?
def reward_check_rows(captions: pd.DataFrame, *, systems: Sequence[str] | None = None, baseline: str = "xe",
                      seed: int, n_resamples: int = 2000, confidence: float = 0.95,
                      scorer_of: dict | None = None) -> pd.DataFrame:
    """Per SCST system: its own reward's score on the **test** captions minus the XE captioner's (the two-level
    bootstrap of :func:`bootstrap_diff`): ``cider_d`` for a CIDEr-D reward, ``score:<own scorer>`` otherwise (a mix
    reward by its scorer term; a probability reward by the logit, a monotone transform). ``raised`` is True when
    the interval lies above 0: only then do the system's captions show what its reward prefers beyond the
    training images. Rows: ``system, measure, value, low, high, p, n_images, seeds, raised`` (None when the
    column or the baseline is missing). ``scorer_of`` maps a system to the name of its own score column's scorer
    (``score:<name>``) when :func:`own_scorer` would not find it (e.g. ``aclip-s:clip-mini``)."""
    systems = [s for s in (systems or dict.fromkeys(captions["system"])) if s not in (*NOT_PROBED, baseline)]
    have = set(captions["system"])
    out = []
    for s in systems:
        sc = (scorer_of or {}).get(s) or own_scorer(s)
        col = "cider_d" if sc in ("cider-d", "cider-d-fast") else f"score:{sc}"
        row = {"analysis": "reward raised", "system": s, "measure": col, "baseline": baseline}
        if col not in captions or baseline not in have or s not in have:
            out.append({**row, "value": np.nan, "raised": None, "status": "missing"})
            continue
        r = bootstrap_diff(captions, col, s, baseline, seed=_sub_seed(seed, "reward", s), n_resamples=n_resamples,
                           confidence=confidence)
        out.append({**row, "value": r["value"], "low": r["low"], "high": r["high"], "p": r["p"],
                    "n_images": r["n_images"], "seeds": r["seeds_a"], "raised": bool(r["low"] > 0), "status": "ok"})
    return pd.DataFrame(out)


def table_verdicts(finding_rows: pd.DataFrame, checks: pd.DataFrame | None = None) -> pd.DataFrame:
    """The verdicts a findings table's rows give, as its page gives them: :func:`verdicts` of the rows' test columns
    (:data:`COLUMNS`), then :func:`with_reward_check` when ``checks`` has the "reward raised" rows."""
    ver = verdicts(finding_rows[[c for c in COLUMNS if c in finding_rows]])
    if checks is not None and len(checks) and "raised" in checks:
        ver = with_reward_check(ver, checks)
    return ver


def with_reward_check(verdicts_: pd.DataFrame, checks: pd.DataFrame) -> pd.DataFrame:
    """The verdicts with ``reward_raised`` added; a system whose SCST did not raise its own reward on the test
    images (:func:`reward_check_rows`) gets **not testable here** in place of any other verdict, with the reason:
    its captions do not show what the reward prefers."""
    if verdicts_.empty:
        return verdicts_.assign(reward_raised=pd.Series(dtype=object))
    raised = {s: (None if r is None or r != r else bool(r)) for s, r in zip(checks["system"], checks["raised"])} \
        if len(checks) else {}
    cell = {r.system: r for r in checks.itertuples()} if len(checks) else {}
    v = verdicts_.copy()
    v["reward_raised"] = [raised.get(s) for s in v["system"]]
    for i, r in v.iterrows():
        if raised.get(r["system"]) is False:
            c = cell[r["system"]]
            v.at[i, "reason"] = (f"SCST did not raise the system's own reward on the test images ({c.measure} minus "
                                 f"XE: {c.value:.3g} [{c.low:.3g}, {c.high:.3g}]), so its captions do not show what the "
                                 f"reward prefers; the tests would have said {r['verdict']} ({r['reason']})")
            v.at[i, "verdict"] = "not testable here"
    return v
