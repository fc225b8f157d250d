"""The judgement-correlation harness: Kendall τ between a caption metric and judgements of captions.

The protocol is the published one (``REFERENCE.md`` §3, Hessel et al. 2021's clipscore code):
``scipy.stats.kendalltau(metric, judgement, variant=...)`` over **all rating rows** (never per-pair
means), rows with a NaN judgement or a NaN metric score dropped pair-wise. Flickr8k-Expert uses τc,
Flickr8k-CrowdFlower τb. Tables report ``100 · τ``, as the literature does.

* :func:`kendall_tau`, :func:`bootstrap_tau`: pure functions over arrays.
* :data:`JUDGEMENT_SETS`: set name -> :class:`JudgementSet` (loader, judgement column, τ variant,
  description, whether the judgements are human or rule-made). A rule-made set is always labelled
  so, never "human judgements".
* :func:`metric_scores`: a :class:`~analysis.metrics.Metric` over a judgement frame, one score per row.
* :func:`correlation_table` -> tidy rows (:mod:`analysis.results`); :func:`wide_table` -> the
  literature's layout, metric × judgement set.
* :func:`noise_robustness`: Gaussian noise on the images (:func:`add_pixel_noise`) and on the image
  embeddings (:func:`add_embedding_noise`) against each metric's τ and its mean score on the best
  candidates ("caption quality").

**Judgement sets.** Three human sets (Flickr8k-Expert, Flickr8k-CrowdFlower, THumB; user-supplied files)
and two **rule-made** sets on the embedded data (:mod:`analysis.data.ladder`; not human judgements):
``scene-ladder`` (per stamp-scenes test scene: true caption > count/size/relation corruption > object
swap > another image's caption) and ``stamp-match`` (per Tux Paint test stamp: its own description vs
other stamps'). Metrics that read no references (CLIP-S, ``score:<scorer>``, ``sg-f1``) are scored on
rows without references; ``sg-f1`` runs where the frame carries a scene graph per image (the scene
ladder). aCLIP-S / RefaCLIP-S (``aclip-s:<scorer>``, ``refaclip-s:<scorer>``: CLIP-S / RefCLIP-S over the
image embedding mapped by a closed-form map fitted on the scorer's training pairs, never the evaluated ones;
:class:`~analysis.metrics.AlignedClipScoreMetric`) run like any metric; a name whose prefix is in
:data:`PLANNED` but that the ``METRICS`` registry does not hold gives a "not registered yet" row.

**Aligned against unaligned** (:func:`paired_differences`): ``τ(aCLIP-S) − τ(CLIP-S)`` and
``τ(RefaCLIP-S) − τ(RefCLIP-S)`` on the same rows, with a paired clustered bootstrap
(:func:`bootstrap_tau_diff`: images resampled once, both τ on each resample) and Holm over pairs × sets.
**Noise**: embedding noise reaches an aligned metric on the encoder's output, before its map
(:data:`EMBEDDING_STAGE`), so it and its unaligned counterpart see the same perturbed embedding.
:func:`run_metrics_page` is the book's ``realign-metrics`` page.

**Intervals.** The harness's 95% intervals are *clustered* percentile bootstraps over images
(``groups = image``): the rows of one image are not independent (Flickr8k-Expert has three ratings of
the same pair, which share one metric score, and every image has several candidate captions scored
against the same references), so resampling rows would treat them as independent evidence and give
too narrow an interval.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from analysis.data.ladder import SMOKE_IMAGES

VARIANTS = ("b", "c")
RUN = "correlation"
NOISE_RUN = "noise-robustness"
# METRICS prefixes the issue plans (aCLIP-S, RefaCLIP-S: CLIP-S / RefCLIP-S over aligned image embeddings) that
# another part of the study registers; until it has, a name with one of them gives a "not registered yet" row.
PLANNED = ("aclip-s:", "refaclip-s:")
PLACEHOLDER_REFERENCE = "(no reference: unused by a metric that reads none)"
IMAGE_SIGMAS = (0.0, 0.05, 0.1, 0.2)
EMBEDDING_SIGMAS = (0.0, 0.25, 0.5, 1.0)
CONFIDENCE = 0.95
INTERVAL = "clustered percentile bootstrap over images, 95%"

# Published τ × 100 marked [V] in REFERENCE.md §3 (CLIP ViT-B/32 era re-runs of the clipscore reference code
# on the full Flickr8k sets). Anchors for a real-data run with `clip:ViT-B-32/openai` (and the n-gram metrics) on
# the whole set (no `limit`), shown only side by side in a column labelled with this source; they say nothing
# about the embedded stand-ins or the fixtures, whose rows carry them only because the (set, metric) names match.
PUBLISHED_SOURCE = "Hessel et al. 2021 (CLIPScore), via REFERENCE.md §3 [V]"
PUBLISHED_CLIP = "clip:ViT-B-32/openai"
PUBLISHED_TAU = {
    ("flickr8k-expert", "bleu-4"): 30.8,
    ("flickr8k-expert", "rouge-l"): 32.3,
    ("flickr8k-expert", "meteor"): 41.8,
    ("flickr8k-expert", "cider-d"): 43.9,  # the clipscore code calls pycocoevalcap's Cider, i.e. CIDEr-D
    ("flickr8k-expert", "cider-d-fast"): 43.9,  # same numbers as cider-d (analysis.cider)
    ("flickr8k-expert", f"clip-s:{PUBLISHED_CLIP}"): 51.2,
    ("flickr8k-expert", f"refclip-s:{PUBLISHED_CLIP}"): 53.0,
    ("flickr8k-cf", f"clip-s:{PUBLISHED_CLIP}"): 34.4,
    ("flickr8k-cf", f"refclip-s:{PUBLISHED_CLIP}"): 36.4,
}


# ----------------------------------------------------------------------------- Kendall τ
def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"kendall_tau: a and b must have the same length, got {a.size} and {b.size}")
    return a, b


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown Kendall tau variant {variant!r}; use 'b' (Flickr8k-CrowdFlower) or "
                         f"'c' (Flickr8k-Expert)")
    return variant


def _tau(a: np.ndarray, b: np.ndarray, variant: str) -> float:
    """scipy's τ on clean arrays; NaN (without a warning) when either side is constant."""
    from scipy.stats import kendalltau

    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(a, b, variant=variant).statistic)


def kendall_tau(a, b, *, variant: str = "c") -> float:
    """Kendall's τ between paired scores ``a`` and ``b`` (e.g. a metric and a judgement), by
    ``scipy.stats.kendalltau(a, b, variant=variant)``.

    Pairs where ``a`` or ``b`` is NaN are **dropped** first (as the published protocol drops NaN ratings).
    Over the ``n`` remaining pairs, with ``P`` concordant and ``Q`` discordant pairs of rows
    (``(a_i − a_j)(b_i − b_j) > 0`` resp. ``< 0``; pairs tied in ``a`` or ``b`` count in neither):

    * τb = (P − Q) / √((n₀ − n₁)(n₀ − n₂)), with ``n₀ = n(n−1)/2``, ``n₁ = Σ_k t_k(t_k−1)/2`` over the
      groups of ``t_k`` tied values of ``a`` and ``n₂`` the same for ``b`` (Flickr8k-CrowdFlower);
    * τc = 2(P − Q) / (n² (m − 1) / m), with ``m = min(#distinct a, #distinct b)`` (Stuart's τc,
      for rectangular tables such as a continuous metric against a 1–4 scale: Flickr8k-Expert).

    Returns NaN when either side is constant after dropping (τ is undefined). Raises ``ValueError``
    for an unknown variant, unequal lengths, or fewer than 2 pairs left.

    >>> round(kendall_tau([1, 2, 3, 4], [1, 3, 2, 4], variant="b"), 6)  # P = 5, Q = 1, no ties
    0.666667
    >>> round(kendall_tau([1, 2, 3, 4, float("nan")], [1, 2, 1, 2, 0], variant="c"), 6)  # NaN row dropped; m = 2
    0.5
    """
    _check_variant(variant)
    a, b = _paired(a, b)
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 2:
        raise ValueError(f"kendall_tau needs at least 2 pairs without NaN, got {int(keep.sum())} "
                         f"(of {a.size} rows)")
    return _tau(a[keep], b[keep], variant)


def _group_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, starts, counts)``: rows sorted by group code, and each group's slice of ``order``."""
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def _draw(n: int, rng, index) -> np.ndarray:
    if index is None:
        return rng.integers(0, n, n)
    order, starts, counts = index
    g = rng.integers(0, len(counts), len(counts))
    lens = counts[g]
    offsets = np.repeat(starts[g] - (np.cumsum(lens) - lens), lens)
    return order[offsets + np.arange(lens.sum())]


def resample_rows(n: int, rng, groups=None) -> np.ndarray:
    """One bootstrap resample: ``n`` row indices drawn with replacement, or, with ``groups`` (one label
    per row), as many whole groups as there are, drawn with replacement, and all their rows concatenated
    (the clustered bootstrap: a group's rows are always drawn together). ``rng``: a NumPy ``Generator``."""
    return _draw(n, rng, None if groups is None else _group_index(np.asarray(groups)))


def bootstrap_tau(a, b, *, variant: str, seed: int, n_resamples: int = 1000, groups=None,
                  confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile-bootstrap interval ``(low, high)`` of :func:`kendall_tau`.

    NaN pairs are dropped first (with their ``groups`` labels). Each resample draws rows with replacement,
    or, when ``groups`` is given (e.g. the image of each row), whole groups with replacement (clustered
    bootstrap: rows of one image are not independent). ``low, high`` are the ``α/2`` and ``1 − α/2``
    percentiles (``α = 1 − confidence``) of the resampled τ, ignoring resamples where τ is undefined
    (a constant side); ``(nan, nan)`` if every resample is. Deterministic for a ``seed``
    (:func:`analysis.runtime.rng`).
    """
    from analysis.runtime import rng as make_rng

    _check_variant(variant)
    a, b = _paired(a, b)
    keep = ~(np.isnan(a) | np.isnan(b))
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape[0] != a.size:
            raise ValueError(f"bootstrap_tau: groups has {groups.shape[0]} labels for {a.size} rows")
        groups = groups[keep]
    a, b = a[keep], b[keep]
    if a.size < 2:
        raise ValueError(f"bootstrap_tau needs at least 2 pairs without NaN, got {a.size}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    gen = make_rng(seed)
    index = None if groups is None else _group_index(groups)
    taus = np.empty(n_resamples)
    for r in range(n_resamples):
        idx = _draw(a.size, gen, index)
        taus[r] = _tau(a[idx], b[idx], variant)
    taus = taus[np.isfinite(taus)]
    if not taus.size:
        return float("nan"), float("nan")
    alpha = 1 - confidence
    low, high = np.percentile(taus, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


class TauDiff(NamedTuple):
    """A paired difference of two Kendall τ against the same judgements (:func:`bootstrap_tau_diff`)."""

    diff: float
    low: float
    high: float
    p: float
    tau_a: float
    tau_b: float
    n_rows: int
    n_resamples: int


def bootstrap_p(d: np.ndarray) -> float:
    """Two-sided percentile-bootstrap p of "the difference is 0" from resampled differences ``d*`` (``B`` of
    them): ``p = min(1, 2 · min(1 + #{d* ≤ 0}, 1 + #{d* ≥ 0}) / (B + 1))``, about the smallest ``α`` at which
    the ``1 − α`` percentile interval excludes 0 (with the usual ``+1``: never 0); resamples at exactly 0
    count on both sides. NaN without resamples.

    >>> bootstrap_p(np.array([0.1, 0.2, 0.3])), bootstrap_p(np.zeros(4)), round(bootstrap_p(np.array([-1.0, 1.0])), 6)
    (0.5, 1.0, 1.0)
    """
    d = np.asarray(d, float)
    if not d.size:
        return float("nan")
    below, above = int((d <= 0).sum()), int((d >= 0).sum())
    return float(min(1.0, 2 * (1 + min(below, above)) / (d.size + 1)))


def bootstrap_tau_diff(a, b, judged, *, variant: str, seed: int, n_resamples: int = 1000, groups=None,
                       confidence: float = CONFIDENCE) -> TauDiff:
    """The paired difference ``Δ = τ(a, j) − τ(b, j)`` of two metrics' Kendall τ (:func:`kendall_tau`) against
    the same judgements ``j`` on the same rows, with a **paired** (and, with ``groups``, clustered) percentile
    bootstrap: each resample draws the groups (images) **once**, with replacement, and computes both τ on that
    same resample, so what the two metrics share (the images, the candidates, the judgements) cancels in
    ``Δ*``, and the interval is that of the difference, not of two independent estimates.

    Rows where ``a``, ``b`` or ``j`` is NaN are dropped first (with their group labels), so both τ are over the
    same rows. ``low, high``: the ``α/2`` and ``1 − α/2`` percentiles of ``Δ*`` (``α = 1 − confidence``) over the
    resamples where both τ are defined; ``p``: :func:`bootstrap_p` of those ``Δ*``. Returns a :class:`TauDiff`
    (``diff, low, high, p, tau_a, tau_b, n_rows, n_resamples`` = the resamples used). Deterministic for a
    ``seed``; draws the same resamples as :func:`bootstrap_tau` with that seed and groups.

    >>> j = [1, 2, 3, 4, 1, 2, 3, 4]
    >>> r = bootstrap_tau_diff([1, 2, 3, 4, 1, 2, 3, 4], [4, 3, 2, 1, 4, 3, 2, 1], j, variant="b", seed=0,
    ...                        n_resamples=50, groups=[0, 0, 0, 0, 1, 1, 1, 1])
    >>> r.diff, r.low, r.high, round(r.p, 4)  # +1 against -1 on every resample
    (2.0, 2.0, 2.0, 0.0392)
    """
    from analysis.runtime import rng as make_rng

    _check_variant(variant)
    a, b = _paired(a, b)
    a, j = _paired(a, judged)
    keep = ~(np.isnan(a) | np.isnan(b) | np.isnan(j))
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape[0] != a.size:
            raise ValueError(f"bootstrap_tau_diff: groups has {groups.shape[0]} labels for {a.size} rows")
        groups = groups[keep]
    a, b, j = a[keep], b[keep], j[keep]
    if a.size < 2:
        raise ValueError(f"bootstrap_tau_diff needs at least 2 rows where a, b and the judgement are all "
                         f"non-NaN, got {a.size}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    tau_a, tau_b = _tau(a, j, variant), _tau(b, j, variant)
    gen = make_rng(seed)
    index = None if groups is None else _group_index(groups)
    d = np.empty(n_resamples)
    for r in range(n_resamples):
        idx = _draw(a.size, gen, index)
        d[r] = _tau(a[idx], j[idx], variant) - _tau(b[idx], j[idx], variant)
    d = d[np.isfinite(d)]
    low = high = float("nan")
    if d.size:
        alpha = 1 - confidence
        low, high = (float(x) for x in np.percentile(d, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    return TauDiff(float(tau_a - tau_b), low, high, bootstrap_p(d), float(tau_a), float(tau_b), int(a.size),
                   int(d.size))


# ----------------------------------------------------------------------------- judgement sets
class JudgementSet(NamedTuple):
    """A set of caption judgements: ``loader(root, limit) -> frame`` of rating rows (the columns of
    :mod:`analysis.data.judgements`), the frame ``column`` holding the judgement, the τ ``variant``,
    a ``description``, ``kind`` (``"human"`` or ``"rule-made"``: a rule-made set is never called human),
    ``protocol`` (where the variant comes from) and ``judgement`` (a short label of what is correlated)."""

    loader: Callable[..., pd.DataFrame]
    column: str
    variant: str
    description: str
    kind: str = "human"
    protocol: str = ""
    judgement: str = ""


def _under(root, folder: str):
    return None if root is None else Path(root) / folder


def load_expert(root=None, limit=None) -> pd.DataFrame:
    """Flickr8k-Expert rating rows; ``root`` is a ``STUDY_DATA``-style folder holding ``flickr8k/``."""
    from analysis.data.judgements import load_flickr8k_expert

    return load_flickr8k_expert(_under(root, "flickr8k"), limit)


def load_cf(root=None, limit=None) -> pd.DataFrame:
    """Flickr8k-CrowdFlower rows (one per pair, score = fraction yes); ``root`` holds ``flickr8k/``."""
    from analysis.data.judgements import load_flickr8k_cf

    return load_flickr8k_cf(_under(root, "flickr8k"), limit)


def load_thumb_rows(root=None, limit=None) -> pd.DataFrame:
    """THumB 1.0 rows; ``root`` holds ``thumb/`` (and ``coco/val2014`` for the images)."""
    from analysis.data.judgements import load_thumb

    return load_thumb(_under(root, "thumb"), limit, coco_root=_under(root, "coco"))


def load_scene_ladder(root=None, limit=None) -> pd.DataFrame:
    """``scene-ladder`` rows (rule-made, :func:`analysis.data.ladder.scene_ladder`, seed 0); ``root`` is ignored."""
    from analysis.data.ladder import scene_ladder

    return scene_ladder(root, limit)


def load_stamp_match(root=None, limit=None) -> pd.DataFrame:
    """``stamp-match`` rows (rule-made, :func:`analysis.data.ladder.stamp_match`, seed 0); ``root`` is ignored."""
    from analysis.data.ladder import stamp_match

    return stamp_match(root, limit)


JUDGEMENT_SETS: dict[str, JudgementSet] = {
    "flickr8k-expert": JudgementSet(
        load_expert, "score", "c",
        "Flickr8k-Expert (Hodosh et al. 2013): three expert ratings 1-4 per image-caption pair, one row each",
        kind="human", protocol="published: τc over all rating rows (Hessel et al. 2021; REFERENCE.md §3)",
        judgement="expert rating (1-4)"),
    "flickr8k-cf": JudgementSet(
        load_cf, "score", "b",
        "Flickr8k-CrowdFlower (Hodosh et al. 2013): fraction of yes among >= 3 binary crowd judgements per pair",
        kind="human", protocol="published: τb over all pairs (Hessel et al. 2021; REFERENCE.md §3)",
        judgement="crowd fraction yes (0-1)"),
    "thumb": JudgementSet(
        load_thumb_rows, "score", "b",
        "THumB 1.0 (Kasai et al. 2022): one adjudicated rubric total per COCO image-system caption",
        kind="human",
        protocol="the study's choice: τb over the rubric total human_score (the THumB paper's own statistic is "
                 "not recorded in REFERENCE.md or the loader, so these numbers are not comparable with its tables)",
        judgement="rubric total (P + R) / 2 + penalties"),
    "scene-ladder": JudgementSet(
        load_scene_ladder, "score", "b",
        "scene-ladder (rule-made, not human judgements): per stamp-scenes test scene, 4 = a held-out true caption, "
        "3 = a count/size/relation corruption of it, 2 = an object swap, 1 = another scene's caption",
        kind="rule-made",
        protocol="the study's choice: τb, since the judgement ties by design (one level per rung on every scene)",
        judgement="ladder level (4 > 3 > 2 > 1, by rule)"),
    "stamp-match": JudgementSet(
        load_stamp_match, "score", "b",
        "stamp-match (rule-made, not human judgements): per Tux Paint test stamp, its own human-written "
        "description (1) vs 4 other test stamps' descriptions (0); reference-based metrics are not applicable "
        "(a stamp's one description is the candidate itself)",
        kind="rule-made", protocol="the study's choice: τb (a binary judgement: ties by design)",
        judgement="own description (1) vs another stamp's (0), by rule"),
}


def set_title(name: str) -> str:
    """A judgement set's name as tables show it: ``"scene-ladder (rule-made)"`` for a rule-made set, the name
    itself for a human one, so a rule-made set is never read as human judgements."""
    return f"{name} (rule-made)" if judgement_set(name).kind == "rule-made" else name


def judgement_set(name: str) -> JudgementSet:
    try:
        return JUDGEMENT_SETS[name]
    except KeyError:
        raise KeyError(f"unknown judgement set {name!r}; valid names: {', '.join(JUDGEMENT_SETS)}") from None


# ----------------------------------------------------------------------------- metric scores over a frame
def _unique_pairs(frame: pd.DataFrame) -> tuple[np.ndarray, list[tuple[str, str]], list[tuple[str, ...]]]:
    """``(row -> pair index, pairs, references)``: each distinct ``(image, caption)`` once, in first-row order,
    with the references of its first row minus the caption itself (:func:`~analysis.data.judgements.without`)."""
    from analysis.data.judgements import without

    index: dict[tuple[str, str], int] = {}
    refs: list[tuple[str, ...]] = []
    rows = np.empty(len(frame), dtype=int)
    for i, (img, cap, rr) in enumerate(zip(frame["image"], frame["caption"], frame["references"])):
        key = (img, cap)
        if key not in index:
            index[key] = len(index)
            refs.append(without(tuple(rr) if rr is not None else (), [cap]))
        rows[i] = index[key]
    return rows, list(index), refs


def uses_references(metric) -> bool:
    """Whether ``metric`` reads the references: ``False`` for CLIP-S (a
    :class:`~analysis.metrics.ClipScoreMetric` with ``ref=False``, and its subclasses such as aCLIP-S),
    ``score:<scorer>`` and ``sg-f1``; ``metric.extra["uses_references"]`` overrides; ``True`` otherwise."""
    from analysis.metrics import ClipScoreMetric, SceneGraphF1, ScorerMetric

    extra = getattr(metric, "extra", None) or {}
    if "uses_references" in extra:
        return bool(extra["uses_references"])
    if isinstance(metric, (ScorerMetric, SceneGraphF1)):
        return False
    if isinstance(metric, ClipScoreMetric):
        return bool(metric.ref)
    return True


def needs_graphs(metric) -> bool:
    """Whether ``metric`` scores against a scene graph per image (``sg-f1``, or ``extra["needs_graphs"]``)."""
    from analysis.metrics import SceneGraphF1

    return isinstance(metric, SceneGraphF1) or bool((getattr(metric, "extra", None) or {}).get("needs_graphs"))


def metric_scores(frame: pd.DataFrame, metric, *, image_transform: Callable | None = None,
                  images: dict | None = None) -> np.ndarray:
    """The score of ``metric`` (a :class:`~analysis.metrics.Metric` or a ``METRICS`` name) for each row of a
    judgement ``frame`` (``image, caption, references``, ``path`` for an image-based metric, ``graph`` for a
    scene-graph metric).

    Each distinct ``(image, candidate)`` is scored once, all in **one** ``compute_score`` call (CIDEr-D's
    document frequencies come from the references of every pair, as in the clipscore reference code), with
    ``gts`` = the row's references **minus the candidate itself** (normalised match; the loaders already
    leave it out: Flickr8k-Expert drops such pairs, CrowdFlower removes every judged caption, THumB's
    references exclude the "Human" caption) and ``res`` = the candidate. A pair left without references
    scores NaN (dropped by :func:`kendall_tau`), unless the metric reads no references
    (:func:`uses_references`: CLIP-S, ``score:<scorer>``, ``sg-f1``), which is given a placeholder reference
    it ignores. Raises :class:`~analysis.metrics.MetricUnavailable` when an image-based metric meets a frame
    loaded with ``images=False``, or a scene-graph metric a frame without a ``graph`` column.

    ``images``: already opened images by the frame's ``image`` name (reusing the same objects across calls lets
    a metric's per-object embedding cache hit); ``image_transform(image_name, pil) -> pil`` is applied to each
    image before scoring (e.g. :func:`add_pixel_noise`, in :func:`noise_robustness`).
    """
    from analysis.metrics import MetricUnavailable

    if isinstance(metric, str):
        from analysis.registry import build_metric

        metric = build_metric(metric)
    rows, pairs, refs = _unique_pairs(frame)
    free = not uses_references(metric)
    ids = [k for k, rr in enumerate(refs) if rr or free]
    per_pair = np.full(len(pairs), np.nan)
    if not ids:
        return per_pair[rows]
    gts = {k: list(refs[k]) or [PLACEHOLDER_REFERENCE] for k in ids}
    res = {k: [pairs[k][1]] for k in ids}
    kwargs = {}
    if needs_graphs(metric):
        if "graph" not in frame.columns:
            raise MetricUnavailable(f"metric {metric.name!r} needs a scene graph per image (a 'graph' column: the "
                                    "scene-ladder set has one); this frame has none, and SPICE cannot run offline")
        graph_of = dict(zip(frame["image"], frame["graph"]))
        kwargs["graphs"] = {k: graph_of[pairs[k][0]] for k in ids}
    if metric.needs_images:
        from analysis.data.base import open_rgb

        path_of = dict(zip(frame["image"], frame["path"]))
        wanted = list(dict.fromkeys(pairs[k][0] for k in ids))
        given = images or {}
        missing = sorted(img for img in wanted if img not in given and not path_of.get(img))
        if missing:
            raise MetricUnavailable(f"metric {metric.name!r} needs the images, but {len(missing)} image(s) of the "
                                    f"frame have no path (e.g. {missing[0]}); load the set with images=True")
        opened = {img: given[img] if img in given else open_rgb(path_of[img]) for img in wanted}
        if image_transform is not None:
            opened = {img: image_transform(img, im) for img, im in opened.items()}
        kwargs["images"] = {k: opened[pairs[k][0]] for k in ids}
    _, per = metric.compute_score(gts, res, **kwargs)
    per_pair[ids] = np.asarray(per, dtype=float)
    return per_pair[rows]


# ----------------------------------------------------------------------------- tables
def _provenance(metric) -> dict:
    """``model, source, pretrained`` of a metric's rows: its scorer's, or ``none`` for a library metric."""
    model = getattr(metric, "model", None)
    if getattr(metric, "scorer", "") and model is not None and hasattr(model, "info"):
        info = model.info()
        return {"model": metric.scorer, "source": info["source"], "pretrained": info["pretrained"]}
    return {"model": "none", "source": "none", "pretrained": ""}


def is_planned(name: str) -> bool:
    """``True`` for a metric name with a :data:`PLANNED` prefix (``aclip-s:clip-mini``) that the ``METRICS``
    registry does not hold yet; once registered, the name is an ordinary metric."""
    from analysis.registry import METRICS

    prefix = name.split(":", 1)[0] + ":"
    return prefix in PLANNED and name not in METRICS


def _name_provenance(name: str) -> dict:
    """``model, source, pretrained`` of a metric that could not be built, from its name and the registry:
    ``clip-s:clip:ViT-B-32/openai`` -> model ``clip:ViT-B-32/openai``, source ``published``. A planned name
    (:data:`PLANNED`) takes its scorer from the text after the prefix."""
    from analysis.registry import METRICS, SCORERS

    if is_planned(name):
        scorer = name.split(":", 1)[1]
    else:
        entry = METRICS.entry(name)
        scorer = name[len(entry.name):] if entry.prefix else ""
    if scorer and scorer in SCORERS:
        return {"model": scorer, "source": SCORERS.entry(scorer).meta.get("source", "none"), "pretrained": ""}
    return {"model": "none", "source": "none", "pretrained": ""}


def _build(name: str, smoke: bool):
    """``(metric or None, note)``; a metric that cannot be built here (no Java, no weights) or a planned one
    that is not registered yet gives a note. Any other unknown name raises ``KeyError`` (a typo is an error)."""
    from analysis.metrics import MetricUnavailable
    from analysis.registry import build_metric
    from analysis.scorers.base import WeightsUnavailable

    if is_planned(name):
        return None, (f"not registered yet: {name} is planned (issue 10: aCLIP-S / RefaCLIP-S, the CLIP-S family over "
                      "aligned image embeddings) and not in the METRICS registry of this build")
    try:
        return build_metric(name, smoke=smoke), ""
    except (MetricUnavailable, WeightsUnavailable) as e:
        return None, f"unavailable here: {e}"


def _set_note(metric, frame: pd.DataFrame, set_name: str) -> str:
    """Why ``metric`` cannot run on a loaded set, known before scoring (``""`` when it can)."""
    if needs_graphs(metric) and "graph" not in frame.columns:
        return (f"{metric.name} needs a scene graph per image (stamp scenes only: scene-ladder); {set_name} has none "
                "and SPICE cannot run offline")
    return ""


def _add(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


def _correlate(scores: np.ndarray, frame: pd.DataFrame, spec: JudgementSet, metric, *, seed: int,
               n_resamples: int) -> dict:
    """``value`` (100 · τ), ``low``/``high`` (clustered bootstrap), counts and a ``note`` for one metric's
    ``scores`` of a judgement ``frame``."""
    judged = frame[spec.column].to_numpy(float)
    ok = ~(np.isnan(scores) | np.isnan(judged))
    out = {"n_rows": int(ok.sum()), "n_pairs": int(frame.loc[ok, ["image", "caption"]].drop_duplicates().shape[0]),
           "n_images": int(frame.loc[ok, "image"].nunique()), "value": np.nan, "low": np.nan, "high": np.nan,
           "note": ""}
    no_refs = int(np.isnan(scores).sum())
    if no_refs == len(scores) and frame.attrs.get("references_note") and uses_references(metric):
        out["note"] = f"not applicable (reference-based metric): {frame.attrs['references_note']}"
        return out
    if no_refs:
        out["note"] = f"{no_refs} row(s) without references after leaving out the candidate: dropped"
    if ok.sum() < 2:
        out["note"] = _add(out["note"], "fewer than 2 rows to correlate")
        return out
    tau = kendall_tau(scores, judged, variant=spec.variant)
    low, high = bootstrap_tau(scores, judged, variant=spec.variant, seed=seed, n_resamples=n_resamples,
                              groups=frame["image"].to_numpy())
    out.update(value=100 * tau, low=100 * low, high=100 * high)
    if np.isnan(tau):
        out["note"] = _add(out["note"], "τ undefined: a constant side")
    return out


def _load_sets(sets: Sequence[str], root, limit) -> dict[str, tuple[pd.DataFrame | None, str]]:
    from analysis.data.base import DataUnavailable

    frames: dict[str, tuple[pd.DataFrame | None, str]] = {}
    for name in sets:
        try:
            frames[name] = (judgement_set(name).loader(root, limit), "")
        except DataUnavailable as e:
            frames[name] = (None, f"data unavailable: {e}")
    return frames


def _base_record(run: str, mname: str, metric, mnote: str, sname: str, spec: JudgementSet, frame, dnote: str,
                 seed: int, smoke: bool) -> dict:
    return {"run": run, **(_provenance(metric) if metric is not None else _name_provenance(mname)),
            "dataset": sname, "split": frame.attrs.get("split", "all") if frame is not None else "all",
            "seed": seed, "smoke": smoke, "metric": mname, "label": metric.label if metric is not None else mname,
            "judgement": spec.judgement, "judgement_kind": spec.kind, "variant": spec.variant, "value": np.nan,
            "low": np.nan, "high": np.nan, "n_rows": 0, "n_pairs": 0, "n_images": 0, "interval": INTERVAL,
            "note": mnote or dnote}


def _built(metrics: Sequence, smoke: bool) -> list[tuple[str, object, str]]:
    """``[(name, metric or None, note)]``: names built by the registry (a note where that cannot be done here),
    :class:`~analysis.metrics.Metric` objects taken as they are."""
    out = []
    for m in metrics:
        if isinstance(m, str):
            obj, note = _build(m, smoke)
            out.append((m, obj, note))
        elif isinstance(m, tuple) and len(m) == 3:  # already built by _built
            out.append(m)
        else:
            out.append((m.name, m, ""))
    return out


def _name_of(m) -> str:
    """The metric name of a ``METRICS`` name, a built ``(name, metric, note)`` triple or a metric object."""
    return m if isinstance(m, str) else m[0] if isinstance(m, tuple) else m.name


def open_images(frame: pd.DataFrame) -> dict:
    """The frame's images opened once, by its ``image`` name (rows without a ``path`` left out): passing the same
    objects to every metric lets a metric's per-object embedding cache hit across calls."""
    from analysis.data.base import open_rgb

    return {img: open_rgb(p) for img, p in dict(zip(frame["image"], frame["path"])).items() if p}


class Scored(NamedTuple):
    """What :func:`score_sets` computed: the tidy ``rows`` (as :func:`correlation_table` returns them), the
    per-row ``scores`` of each ``(metric, set)`` that ran, the loaded ``frames`` (``(frame or None, note)`` per
    set), the ``built`` metrics, the opened ``images`` per set and ``timings``."""

    rows: pd.DataFrame
    scores: dict
    frames: dict
    built: list
    images: dict
    timings: list


def score_sets(metrics: Sequence, sets: Sequence[str], *, root=None, limit: int | None = None, seed: int = 0,
               n_resamples: int = 1000, smoke: bool = False, progress: bool = True) -> Scored:
    """:func:`correlation_table`'s work, keeping what a paired comparison needs (the per-row scores); see
    :class:`Scored`. ``metrics`` may also hold ``(name, metric, note)`` triples already built."""
    from tqdm.auto import tqdm

    from analysis import results
    from analysis.metrics import MetricUnavailable
    from analysis.scorers.base import WeightsUnavailable

    specs = [judgement_set(s) for s in sets]
    built = _built(metrics, smoke)
    used_limit = limit or (SMOKE_IMAGES if smoke else None)
    frames = _load_sets(sets, root, used_limit)
    images: dict = {}
    records, timings, scores = [], [], {}
    for (mname, metric, mnote), (sname, spec) in tqdm([(b, s) for b in built for s in zip(sets, specs)],
                                                      desc="correlation", leave=False, disable=not progress):
        frame, dnote = frames[sname]
        rec = _base_record(RUN, mname, metric, mnote, sname, spec, frame, dnote, seed, smoke)
        rec["n_resamples"] = int(n_resamples)
        if metric is not None and frame is not None:
            rec["note"] = _set_note(metric, frame, sname)
        if metric is not None and frame is not None and not rec["note"]:
            t0 = time.perf_counter()
            try:
                if metric.needs_images and sname not in images:
                    images[sname] = open_images(frame)
                s = metric_scores(frame, metric, images=images.get(sname) if metric.needs_images else None)
            except (MetricUnavailable, WeightsUnavailable) as e:
                rec["note"] = f"unavailable here: {e}"
                s = None
            if s is not None:
                scores[(mname, sname)] = s
                rec.update(_correlate(s, frame, spec, metric, seed=seed, n_resamples=n_resamples))
            timings.append({"metric": mname, "dataset": sname, "seconds": time.perf_counter() - t0})
        # a published anchor only beside a real-data run on the whole set (its protocol), never beside a note
        anchor = (sname, mname) in PUBLISHED_TAU and not used_limit and np.isfinite(rec["value"])
        rec.update(published=PUBLISHED_TAU[(sname, mname)] if anchor else np.nan,
                   published_source=PUBLISHED_SOURCE if anchor else "")
        records.append(rec)
    return Scored(results.rows(records), scores, frames, built, images, timings)


def correlation_table(metrics: Sequence, sets: Sequence[str], *, root=None, limit: int | None = None,
                      seed: int = 0, n_resamples: int = 1000, smoke: bool = False,
                      progress: bool = True) -> pd.DataFrame:
    """Kendall τ of every metric against every judgement set, as tidy rows (:mod:`analysis.results`).

    ``metrics``: ``METRICS`` names (``"bleu-4"``, ``"clip-s:clip-mini"``, ``"aclip-s:clip-mini"``) or
    :class:`~analysis.metrics.Metric` objects; ``sets``: :data:`JUDGEMENT_SETS` names; ``root``: a
    ``STUDY_DATA``-style folder holding ``flickr8k/``, ``thumb/``, ``coco/`` (``None``: each loader's default,
    ``$STUDY_DATA/<name>``; the rule-made sets ignore it); ``limit``: the first ``limit`` images of each set
    (``smoke`` without ``limit``: :data:`~analysis.data.ladder.SMOKE_IMAGES`); ``smoke`` is passed to embedded
    stand-in scorers and recorded. Each set's images are opened once and shared by the image-based metrics.

    One row per (metric, set): ``run = "correlation"``, ``model``/``source``/``pretrained`` of the metric's
    scorer (``none`` for a library metric), ``dataset`` (the set), ``split`` (``test`` for the rule-made sets,
    ``all`` for the human ones), ``seed`` (of the bootstrap), ``metric``, ``label``, ``judgement``,
    ``judgement_kind`` (human / rule-made), ``variant``, ``value`` = **100 · τ** (the literature's unit),
    ``low``/``high`` = its clustered 95% bootstrap interval over images (× 100), ``n_rows`` (rating rows used),
    ``n_pairs``, ``n_images``, ``interval``, ``n_resamples``, ``note``, and ``published`` /
    ``published_source`` where :data:`PUBLISHED_TAU` has an anchor **and** the row is a run on the whole set
    (no ``limit``, not smoke) with a value (NaN / empty elsewhere: an anchor is never shown beside a note or a
    subset). A metric or set that cannot run here (Java or weights missing, no images, no scene graphs, no
    references, no data, a :data:`PLANNED` metric not registered yet) gives ``value`` NaN and a ``note`` saying
    why, never a crash; an unknown metric name that is not planned raises ``KeyError``.
    ``df.attrs["timings"]``: seconds per (metric, set), outside the result contract.
    """
    s = score_sets(metrics, sets, root=root, limit=limit, seed=seed, n_resamples=n_resamples, smoke=smoke,
                   progress=progress)
    df = s.rows
    df.attrs["timings"] = s.timings
    return df


def wide_table(df: pd.DataFrame, *, intervals: bool = False) -> pd.DataFrame:
    """The literature's layout of :func:`correlation_table` rows: one row per metric (its label, in the
    order met), one column per judgement set named ``"<set> (τ<variant>)"`` (``"<set> (rule-made, τ<variant>)"``
    for a rule-made set, from the rows' ``judgement_kind``) holding ``100 · τ`` (or, with ``intervals=True``,
    the text ``"51.2 [48.0, 54.3]"``, ``"n/a"`` where τ is NaN). Where a set has any published anchor beside a
    value, a column ``"<set> (τ<variant>): published (<source>)"`` follows it."""
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(df["label"])), name="metric"))
    for (dataset, variant), g in df.groupby(["dataset", "variant"], sort=False):
        rule_made = "judgement_kind" in g and (g["judgement_kind"] == "rule-made").any()
        col = f"{dataset} (rule-made, τ{variant})" if rule_made else f"{dataset} (τ{variant})"
        g = g.drop_duplicates("label", keep="last").set_index("label")
        if intervals:
            out[col] = [("n/a" if np.isnan(v) else f"{v:.1f} [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else f"{v:.1f}")
                        for v, lo, hi in (g[["value", "low", "high"]].reindex(out.index).to_numpy(float))]
        else:
            out[col] = g["value"].reindex(out.index).astype(float)
        if "published" in g:
            pub = g["published"].where(g["value"].notna()).reindex(out.index).astype(float)
            if pub.notna().any():
                out[f"{col}: published ({PUBLISHED_SOURCE})"] = pub
    return out


# ----------------------------------------------------------------------------- aligned vs unaligned, paired
DIFF_RUN = "correlation-difference"
# (aligned prefix, its unaligned baseline prefix, short label): ReCap's aCLIP-S / RefaCLIP-S against CLIP-S / RefCLIP-S
ALIGNED_PAIRS = (("aclip-s:", "clip-s:", "aCLIP-S − CLIP-S"), ("refaclip-s:", "refclip-s:", "RefaCLIP-S − RefCLIP-S"))
DIFF_FAMILY = "aligned minus unaligned τ (pairs × judgement sets)"
DIFF_INTERVAL = "paired clustered percentile bootstrap over images (both τ on each resample), 95%"


def aligned_pairs(names: Sequence[str]) -> list[tuple[str, str, str]]:
    """``[(aligned, baseline, label)]``: for every scorer ``X`` named in ``names`` with a prefix of
    :data:`ALIGNED_PAIRS` (either side), the pair ``("aclip-s:X", "clip-s:X", ...)`` and/or
    ``("refaclip-s:X", "refclip-s:X", ...)``; a pair is listed when either of its two names is in ``names`` (the
    other may be missing: the comparison then says so). Pair kinds in :data:`ALIGNED_PAIRS` order, scorers in
    the order met.

    >>> aligned_pairs(["bleu-4", "clip-s:m", "aclip-s:m", "refaclip-s:m"])
    [('aclip-s:m', 'clip-s:m', 'aCLIP-S − CLIP-S'), ('refaclip-s:m', 'refclip-s:m', 'RefaCLIP-S − RefCLIP-S')]
    """
    names = list(names)
    scorers: list[str] = []
    for n in names:
        for al, base, _ in ALIGNED_PAIRS:
            for pre in (al, base):
                if n.startswith(pre) and n[len(pre):] not in scorers:
                    scorers.append(n[len(pre):])
    return [(al + x, base + x, label) for al, base, label in ALIGNED_PAIRS for x in scorers
            if al + x in names or base + x in names]


def _side_note(name: str, table: pd.DataFrame, sname: str) -> str:
    """Why metric ``name`` has no τ on set ``sname`` (``""`` if it has one)."""
    row = table[(table["metric"] == name) & (table["dataset"] == sname)]
    if row.empty:
        return "not among this run's metrics"
    r = row.iloc[0]
    return "" if np.isfinite(r["value"]) else (r["note"] or "no value")


def _not_compared(al: str, base: str, why_al: str, why_base: str) -> str:
    """``"not compared: <name>: <why>"`` for the side(s) without a τ; one reason once when both share it."""
    if why_al and why_al == why_base:
        return f"not compared: {al} and {base}: {why_al}"
    return "not compared: " + "; ".join(f"{n}: {w}" for n, w in ((al, why_al), (base, why_base)) if w)


def paired_differences(scored: Scored, sets: Sequence[str] | None = None, *, seed: int = 0,
                       n_resamples: int = 1000, smoke: bool = False) -> pd.DataFrame:
    """ReCap's comparison, paired: for every :func:`aligned_pairs` pair of the scored metrics and every set,
    ``Δ = τ(aligned) − τ(unaligned)`` (× 100) on the **same rows** with the paired clustered bootstrap of
    :func:`bootstrap_tau_diff` (images resampled once, both τ computed on each resample; the same ``seed`` as
    the table), and Holm's correction (:func:`analysis.stats.holm`) over the **whole family** of comparisons
    that ran (pairs × sets; :data:`DIFF_FAMILY`).

    Tidy rows: ``run = "correlation-difference"``, the aligned metric's provenance, ``dataset``, ``split``,
    ``seed``, ``metric`` = ``"<aligned> - <baseline>"``, ``aligned``, ``baseline``, ``label``, ``judgement_kind``,
    ``variant``, ``value`` = 100 · Δ, ``low``/``high``, ``tau_aligned``/``tau_baseline`` (× 100, on the common
    rows), ``p`` (:func:`bootstrap_p`), ``p_holm``, ``n_family``, ``test_family``, ``correction`` (``holm``),
    ``n_rows``, ``n_images``, ``n_resamples``, ``interval``, ``note``. A pair × set that cannot be compared (a
    side missing from the metrics, not registered, not applicable, or a set without data here) is a row with
    NaN and a note saying why, and is not in the Holm family.
    """
    from analysis import results, stats

    table = scored.rows
    names = [b[0] for b in scored.built]
    by_name = {b[0]: b for b in scored.built}
    sets = list(dict.fromkeys(table["dataset"])) if sets is None else list(sets)
    records = []
    for al, base, label in aligned_pairs(names):
        for sname in sets:
            spec = judgement_set(sname)
            frame, dnote = scored.frames[sname]
            _, metric, _ = by_name.get(al, (al, None, ""))
            rec = _base_record(DIFF_RUN, al, metric, "", sname, spec, frame, dnote, seed, smoke)
            plabel = label + (f" ({metric.model.label})" if metric is not None and hasattr(metric, "model") else "")
            rec.update(metric=f"{al} - {base}", aligned=al, baseline=base, label=plabel, tau_aligned=np.nan,
                       tau_baseline=np.nan, p=np.nan, n_resamples=int(n_resamples), interval=DIFF_INTERVAL,
                       test_family=DIFF_FAMILY, correction="holm")
            if frame is None:
                rec["note"] = f"not available here: {dnote.removeprefix('data unavailable: ')}"
                records.append(rec)
                continue
            why = (_side_note(al, table, sname), _side_note(base, table, sname))
            if any(why):
                rec["note"] = _not_compared(al, base, *why)
                records.append(rec)
                continue
            judged = frame[spec.column].to_numpy(float)
            sa, sb = scored.scores[(al, sname)], scored.scores[(base, sname)]
            ok = ~(np.isnan(sa) | np.isnan(sb) | np.isnan(judged))
            r = bootstrap_tau_diff(sa, sb, judged, variant=spec.variant, seed=seed, n_resamples=n_resamples,
                                   groups=frame["image"].to_numpy())
            rec.update(value=100 * r.diff, low=100 * r.low, high=100 * r.high, p=r.p, tau_aligned=100 * r.tau_a,
                       tau_baseline=100 * r.tau_b, n_rows=r.n_rows, n_images=int(frame.loc[ok, "image"].nunique()),
                       n_pairs=int(frame.loc[ok, ["image", "caption"]].drop_duplicates().shape[0]))
            if not np.isfinite(r.diff):
                rec["note"] = "τ undefined on one side (a constant side)"
            records.append(rec)
    if not records:
        return pd.DataFrame()
    df = results.rows(records)
    df["p_holm"] = stats.holm(df["p"].to_numpy(float))
    df["n_family"] = int(df["p"].notna().sum())
    return df


# ----------------------------------------------------------------------------- noise robustness
def noise_seed(seed: int, kind: str, key) -> int:
    """A 63-bit seed for the noise of one image: ``int(sha256(f"{seed}:{kind}:{key}")[:16 hex], 16) >> 1``, so
    every image gets its own noise, the same in every call and whatever the order images come in."""
    return int(hashlib.sha256(f"{seed}:{kind}:{key}".encode()).hexdigest()[:16], 16) >> 1


def add_pixel_noise(image, sigma: float, *, seed: int):
    """Gaussian noise on an RGB image's pixels on the [0, 1] scale: ``x' = clip(x + ε, 0, 1)`` with
    ``x = pixels / 255`` and ``ε ~ N(0, σ²)`` i.i.d. per pixel and channel (:func:`analysis.runtime.rng`
    ``(seed)``), back to 8 bits by ``round(255 · x')``. ``σ = 0`` returns the image unchanged.

    >>> from PIL import Image
    >>> im = Image.new("RGB", (2, 1), (0, 128, 255))
    >>> add_pixel_noise(im, 0.0, seed=0) is im, add_pixel_noise(im, 5.0, seed=0).getpixel((0, 0)) != (0, 128, 255)
    (True, True)
    """
    from PIL import Image

    from analysis.runtime import rng

    if sigma < 0:
        raise ValueError(f"pixel noise sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return image
    x = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    noisy = np.clip(x + rng(seed).normal(0.0, sigma, size=x.shape), 0.0, 1.0)
    return Image.fromarray(np.round(noisy * 255.0).astype(np.uint8), mode="RGB")


def add_embedding_noise(v, sigma: float, *, seed: int) -> np.ndarray:
    """Gaussian noise on L2-normalised embeddings (rows), re-normalised: ``v' = (v + ε) / ‖v + ε‖`` with
    ``ε ~ N(0, σ²/d · I_d)`` (``d`` the dimension), so ``E‖ε‖² = σ²``: ``σ`` is the noise's size relative to
    the unit embedding, comparable across encoders of any width. ``σ = 0`` returns ``v`` unchanged.

    >>> v = np.eye(3)[:2]
    >>> w = add_embedding_noise(v, 0.5, seed=0)
    >>> bool(np.allclose(np.linalg.norm(w, axis=1), 1.0)), bool(np.allclose(add_embedding_noise(v, 0.0, seed=0), v))
    (True, True)
    """
    from analysis.runtime import rng

    if sigma < 0:
        raise ValueError(f"embedding noise sigma must be >= 0, got {sigma}")
    v = np.asarray(v, dtype=np.float64)
    if sigma == 0:
        return v
    w = v + rng(seed).normal(0.0, sigma / np.sqrt(v.shape[-1]), size=v.shape)
    return w / np.linalg.norm(w, axis=-1, keepdims=True)


def embedding_hook(metric) -> bool:
    """Whether noise can reach ``metric``'s image embeddings: it has the ``_image_embeddings(images)`` hook of
    :class:`~analysis.metrics.ClipScoreMetric` (CLIP-S, RefCLIP-S and their subclasses such as aCLIP-S)."""
    return callable(getattr(metric, "_image_embeddings", None))


# Where embedding noise enters an aligned metric (aCLIP-S, RefaCLIP-S: image embedding v -> normalise(map(v))).
# "encoder" (the default): on the encoder's output v, BEFORE the map: the same perturbation of the same vector as
# CLIP-S gets (same per-image seeds), so CLIP-S and aCLIP-S are compared under one encoder noise and the map may
# damp or amplify it; "metric": on what the metric's hook returns, i.e. AFTER the map. For an orthogonal
# (Procrustes) map the two give the same distribution (isotropic noise rotated is isotropic noise); they differ
# for lstsq / ridge maps. A metric without a map has one stage only: both are the same.
EMBEDDING_STAGES = ("encoder", "metric")
EMBEDDING_STAGE = "encoder"
STAGE_TEXT = {"encoder": "on the image encoder's output, before any alignment map",
              "metric": "on the image embedding the metric uses, after any alignment map"}


def _stages(metric, stage: str):
    """``(embed, finish)``: the embedding the noise is added to, and what the metric does to it next."""
    from analysis.metrics import AlignedClipScoreMetric, ClipScoreMetric, aligned_embeddings

    if stage not in EMBEDDING_STAGES:
        raise ValueError(f"unknown embedding-noise stage {stage!r}; use one of {', '.join(EMBEDDING_STAGES)}")
    if stage == "encoder" and isinstance(metric, AlignedClipScoreMetric):
        return (lambda imgs: ClipScoreMetric._image_embeddings(metric, imgs)), \
            (lambda v: aligned_embeddings(v, metric.map))
    return metric._image_embeddings, (lambda v: v)


@contextmanager
def embedding_noise(metric, sigma: float, *, seed: int, stage: str = EMBEDDING_STAGE):
    """Inside the block, ``metric``'s image embeddings carry :func:`add_embedding_noise` (each image its own
    seeded noise, :func:`noise_seed` of its pixels), by wrapping its ``_image_embeddings`` hook on the instance
    (nothing in :mod:`analysis.metrics` changes; the wrapper is removed on exit).

    ``stage`` (:data:`EMBEDDING_STAGES`): for an aligned metric (:class:`~analysis.metrics.AlignedClipScoreMetric`)
    ``"encoder"`` adds the noise to the encoder's output ``v`` **before** the map, ``v' = normalise(map(noisy(v)))``
    (the default, :data:`EMBEDDING_STAGE`: CLIP-S and aCLIP-S then see the same noisy encoder output), ``"metric"``
    after it, ``v' = noisy(normalise(map(v)))``. Other metrics: the same either way."""
    if not embedding_hook(metric):
        raise ValueError(f"metric {getattr(metric, 'name', metric)!r} has no image-embedding hook "
                         "(_image_embeddings); embedding noise cannot reach it")
    original = metric._image_embeddings
    embed, finish = _stages(metric, stage)

    def noisy(imgs):
        if not len(imgs) or sigma == 0:
            return original(imgs)
        v = np.asarray(embed(imgs), dtype=np.float64)
        rows = [add_embedding_noise(v[i:i + 1], sigma,
                                    seed=noise_seed(seed, "embedding", hashlib.sha256(im.tobytes()).hexdigest()))
                for i, im in enumerate(imgs)]
        return finish(np.concatenate(rows, axis=0))

    metric._image_embeddings = noisy
    try:
        yield metric
    finally:
        del metric._image_embeddings


def _top_means(scores: np.ndarray, judged: np.ndarray) -> tuple[float, float]:
    """Mean score of the rows at the highest judgement (the true captions) and of the other rows."""
    ok = ~(np.isnan(scores) | np.isnan(judged))
    if not ok.any():
        return float("nan"), float("nan")
    top = ok & (judged == np.nanmax(judged[ok]))
    rest = ok & ~top
    return (float(scores[top].mean()) if top.any() else float("nan"),
            float(scores[rest].mean()) if rest.any() else float("nan"))


def noise_robustness(metrics: Sequence, set_name: str, *, image_sigmas: Sequence[float] = IMAGE_SIGMAS,
                     embedding_sigmas: Sequence[float] = EMBEDDING_SIGMAS, seed: int = 0, limit: int | None = None,
                     root=None, n_resamples: int = 1000, smoke: bool = False, stage: str = EMBEDDING_STAGE,
                     progress: bool = True, scored: Scored | None = None) -> pd.DataFrame:
    """Each metric's Kendall τ against one judgement set, and its mean score on the best candidates, as
    Gaussian noise grows on the images or on the image embeddings.

    * ``noise = "image"``: :func:`add_pixel_noise` with ``σ`` in ``image_sigmas`` (on the [0, 1] pixel scale,
      clipped), each image its own seeded noise (:func:`noise_seed` of ``seed`` and the image name); an aligned
      metric encodes the noisy image and maps it.
    * ``noise = "embedding"``: :func:`add_embedding_noise` with ``σ`` in ``embedding_sigmas`` (relative to the
      unit embedding, re-normalised) on the image embeddings of metrics with the :func:`embedding_hook`
      (CLIP-S, RefCLIP-S, aCLIP-S, RefaCLIP-S); for an aligned metric at ``stage`` (:func:`embedding_noise`;
      default ``"encoder"``: before the map); others get NaN and a note for ``σ > 0``.

    A metric that reads no image (n-gram metrics, ``sg-f1``) keeps its clean scores under image noise (its row
    says so): a flat line to compare with. ``σ = 0`` is the clean run, equal to :func:`correlation_table`'s
    value for the same ``seed``, ``limit`` and ``n_resamples``. ``scored``: a :func:`score_sets` result holding
    this set (its built metrics, frame and opened images are reused, so the clean scores are not recomputed).

    Tidy rows (:mod:`analysis.results`), one per (metric, noise, σ): ``run = "noise-robustness"``, provenance,
    ``dataset`` = ``set_name``, ``split``, ``seed``, ``metric``, ``label``, ``noise``, ``sigma``,
    ``embedding_stage`` (the ``stage`` on embedding rows, ``""`` on image rows), ``value`` = 100 · τ,
    ``low``/``high`` (its clustered 95% bootstrap interval), ``top_mean`` (the mean metric score of the rows at
    the highest judgement: the true captions, level 4 of the scene ladder: "caption quality" as the metric sees
    it), ``rest_mean`` (the other rows), ``n_rows``, ``judgement_kind``, ``variant``, ``n_resamples``, ``note``.
    ``df.attrs["timings"]``: seconds per (metric, noise, σ).
    """
    from tqdm.auto import tqdm

    from analysis import results
    from analysis.metrics import MetricUnavailable
    from analysis.scorers.base import WeightsUnavailable

    spec = judgement_set(set_name)
    if stage not in EMBEDDING_STAGES:
        raise ValueError(f"unknown embedding-noise stage {stage!r}; use one of {', '.join(EMBEDDING_STAGES)}")
    for name, sig in (("image_sigmas", image_sigmas), ("embedding_sigmas", embedding_sigmas)):
        if any(s < 0 for s in sig):
            raise ValueError(f"{name} must be >= 0, got {list(sig)}")
    if scored is not None and set_name in scored.frames:
        frame, dnote = scored.frames[set_name]
        known = {b[0]: b for b in scored.built}
        built = [known[_name_of(m)] if _name_of(m) in known else _built([m], smoke)[0] for m in metrics]
        images = scored.images.get(set_name)
        clean_of = {m: s for (m, sn), s in scored.scores.items() if sn == set_name}
    else:
        frame, dnote = _load_sets([set_name], root, limit or (SMOKE_IMAGES if smoke else None))[set_name]
        built, images, clean_of = _built(metrics, smoke), None, {}
    judged = frame[spec.column].to_numpy(float) if frame is not None else None
    records, timings = [], []
    grid = [(n, float(s)) for n, sig in (("embedding", embedding_sigmas), ("image", image_sigmas)) for s in sig]
    for mname, metric, mnote in tqdm(built, desc="noise robustness", leave=False, disable=not progress):
        base = _base_record(NOISE_RUN, mname, metric, mnote, set_name, spec, frame, dnote, seed, smoke)
        base["n_resamples"] = int(n_resamples)
        if metric is not None and frame is not None:
            base["note"] = _set_note(metric, frame, set_name)
        clean = None
        if metric is not None and frame is not None and not base["note"]:
            if metric.needs_images and images is None:
                images = open_images(frame)
            try:
                clean = clean_of[mname] if mname in clean_of else metric_scores(frame, metric, images=images)
            except (MetricUnavailable, WeightsUnavailable) as e:
                base["note"] = f"unavailable here: {e}"
        for noise, sigma in grid:
            rec = {**base, "noise": noise, "sigma": sigma, "embedding_stage": stage if noise == "embedding" else "",
                   "top_mean": np.nan, "rest_mean": np.nan}
            if clean is None:
                records.append(rec)
                continue
            t0 = time.perf_counter()
            scores, note = clean, ""
            if sigma > 0 and noise == "image":
                if metric.needs_images:
                    cache = metric.__dict__.pop("_image_cache", None)  # keep the clean embeddings aside
                    scores = metric_scores(frame, metric, images=images, image_transform=lambda key, im, s=sigma:
                                           add_pixel_noise(im, s, seed=noise_seed(seed, "image", key)))
                    metric.__dict__.pop("_image_cache", None)  # the noisy images are not met again: free them
                    if cache is not None:
                        metric._image_cache = cache
                else:
                    note = "reads no image: unaffected by image noise (clean scores)"
            elif sigma > 0 and noise == "embedding":
                if embedding_hook(metric):
                    with embedding_noise(metric, sigma, seed=seed, stage=stage):
                        scores = metric_scores(frame, metric, images=images)
                else:
                    scores, note = None, "no image embedding reachable (only metrics with the _image_embeddings hook)"
            if scores is not None:
                rec.update(_correlate(scores, frame, spec, metric, seed=seed, n_resamples=n_resamples))
                rec["top_mean"], rec["rest_mean"] = _top_means(scores, judged)
            rec["note"] = _add(note, rec["note"]) if rec["note"] else note
            timings.append({"metric": mname, "noise": noise, "sigma": sigma, "seconds": time.perf_counter() - t0})
            records.append(rec)
    df = results.rows(records)
    df.attrs["timings"] = timings
    return df


# ----------------------------------------------------------------------------- the book page (realign-metrics)
PAGE = "realign-metrics"
NOISE_SET = "scene-ladder"
SMOKE_BOOT = 200  # bootstrap resamples in smoke mode (at most)


def _status(sname: str, frame, dnote: str) -> str:
    if frame is None:
        return f"not available here: {dnote.removeprefix('data unavailable: ')}"
    return f"ran here: {len(frame)} rows, {frame['image'].nunique()} images"


def sets_table(sets: Sequence[str], frames: dict) -> pd.DataFrame:
    """One row per judgement set: its judgements (human / rule-made), τ variant, protocol, and whether it ran
    here (``"not available here: <how to provide it>"`` for a human set whose files are not on this machine)."""
    out = []
    for s in sets:
        spec = judgement_set(s)
        frame, dnote = frames[s]
        out.append({"judgement set": s, "judgements": "human" if spec.kind == "human" else
                    "rule-made, not human judgements", "τ": f"τ{spec.variant}", "protocol": spec.protocol,
                    "what is judged": spec.judgement, "status": _status(s, frame, dnote)})
    return pd.DataFrame(out)


def _fmt(v, lo, hi) -> str:
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.1f} [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) and np.isfinite(hi) else f"{v:.1f}"


def differences_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """The paired differences for display: comparison, set, ``Δτ × 100 [95% CI]``, both τ, p and Holm p, images,
    note."""
    if diffs.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "comparison": diffs["label"], "judgement set": diffs["dataset"].map(set_title),
        "Δτ × 100 [95% CI]": [_fmt(v, lo, hi) for v, lo, hi in diffs[["value", "low", "high"]].to_numpy(float)],
        "τ aligned × 100": diffs["tau_aligned"].round(1), "τ unaligned × 100": diffs["tau_baseline"].round(1),
        "p (bootstrap)": diffs["p"].round(4), "p (Holm)": diffs["p_holm"].round(4), "images": diffs["n_images"],
        "note": diffs["note"]})


def noise_table(noise: pd.DataFrame) -> pd.DataFrame:
    """τ × 100 [95% CI] per metric (rows) and noise kind and σ (columns)."""
    if noise.empty:
        return pd.DataFrame()
    cells = noise.assign(cell=[_fmt(v, lo, hi) for v, lo, hi in noise[["value", "low", "high"]].to_numpy(float)],
                         column=[f"{n} σ={s:g}" for n, s in zip(noise["noise"], noise["sigma"])])
    return cells.pivot_table(index="label", columns="column", values="cell", aggfunc="first", sort=False)


def run_metrics_page(*, smoke: bool = False, seed: int = 0,
                     metrics: Sequence[str] = ("bleu-4", "meteor", "rouge-l", "cider-d", "sg-f1", "clip-s:clip-mini",
                                               "refclip-s:clip-mini", "aclip-s:clip-mini", "refaclip-s:clip-mini",
                                               "score:blind"),
                     sets: Sequence[str] = ("scene-ladder", "stamp-match", "flickr8k-expert", "flickr8k-cf", "thumb"),
                     noise_metrics: Sequence[str] = ("clip-s:clip-mini", "aclip-s:clip-mini"), n_boot: int = 1000,
                     progress: bool = True, image_sigmas: Sequence[float] = IMAGE_SIGMAS,
                     embedding_sigmas: Sequence[float] = EMBEDDING_SIGMAS):
    """The Realignment part's metrics page: does realignment make CLIP-S correlate better with judgements?

    1. :func:`score_sets`: every metric × every judgement set, 100 · τ with its clustered 95% bootstrap interval
       (``n_boot`` resamples over images; smoke: at most :data:`SMOKE_BOOT`). The human sets (Flickr8k-Expert τc,
       Flickr8k-CrowdFlower τb, THumB) run where their files are found (``$STUDY_DATA/flickr8k``,
       ``$STUDY_DATA/thumb`` + ``$STUDY_DATA/coco``, the loaders' defaults); elsewhere their rows say "data
       unavailable" with how to provide them, and no number. Published anchors (:data:`PUBLISHED_TAU`) only
       beside a real-data run on the whole set.
    2. :func:`paired_differences`: τ(aCLIP-S) − τ(CLIP-S) and τ(RefaCLIP-S) − τ(RefCLIP-S) on the same rows,
       paired clustered bootstrap, Holm over pairs × sets.
    3. :func:`noise_robustness` on :data:`NOISE_SET` (rule-made) for ``noise_metrics``: pixel noise
       (``image_sigmas``) and embedding noise (``embedding_sigmas``, on the encoder's output, before the map:
       :data:`EMBEDDING_STAGE`).

    Metrics are built once (``smoke``: the smoke-trained stand-ins) and each set's images opened once. Smoke:
    the rule-made sets keep :data:`~analysis.data.ladder.SMOKE_IMAGES` images. Returns an
    :class:`analysis.probe.Page`: ``rows`` (the three kinds of rows, ``run`` = ``correlation``,
    ``correlation-difference``, ``noise-robustness``; deterministic for a seed), ``tables`` (``sets``, ``tau``,
    ``notes``, ``differences``, ``noise``, ``alignment``), ``frames`` (``tau``, ``differences``, ``noise``),
    ``sentences`` (:func:`analysis.prose.realign_metrics_sentences`) and ``timings``.
    """
    from analysis import prose
    from analysis.probe import Page
    from analysis.runtime import seed_all

    seed_all(seed)
    n_boot = min(int(n_boot), SMOKE_BOOT) if smoke else int(n_boot)
    metrics, sets, noise_metrics = list(metrics), list(sets), list(noise_metrics)
    timings: list = []

    def timed(what: str, t0: float) -> None:
        timings.append({"run": PAGE, "what": what, "seconds": round(time.perf_counter() - t0, 2)})

    t0 = time.perf_counter()
    unique: dict = {}
    for m in metrics + noise_metrics:
        unique.setdefault(_name_of(m), m)
    built = _built(list(unique.values()), smoke)  # each metric built once, shared by the table and the sweep
    of = {b[0]: b for b in built}
    timed("build the metrics (stand-ins, alignment maps; cached after the first run)", t0)
    t0 = time.perf_counter()
    in_table = [of[_name_of(m)] for m in metrics]
    scored = score_sets(in_table, sets, seed=seed, n_resamples=n_boot, smoke=smoke, progress=progress)
    timed("metric × judgement-set table (scores and bootstrap)", t0)
    timings += [{"run": PAGE, "what": f"score + bootstrap {t['metric']} on {t['dataset']}",
                 "seconds": round(t["seconds"], 2)} for t in scored.timings]
    t0 = time.perf_counter()
    diffs = paired_differences(scored, sets, seed=seed, n_resamples=n_boot, smoke=smoke)
    timed("paired differences (aligned − unaligned)", t0)
    t0 = time.perf_counter()
    noise = pd.DataFrame()
    if noise_metrics:
        shared = scored if NOISE_SET in scored.frames else None  # else the sweep loads its set alone
        noise_built = [of[_name_of(m)] for m in noise_metrics]
        noise = noise_robustness(noise_built, NOISE_SET, image_sigmas=image_sigmas, embedding_sigmas=embedding_sigmas,
                                 seed=seed, n_resamples=n_boot, smoke=smoke, progress=progress, scored=shared)
        timed(f"noise robustness on {NOISE_SET}", t0)
    rows = pd.concat([d for d in (scored.rows, diffs, noise) if not d.empty], ignore_index=True)
    available = [s for s in sets if scored.frames[s][0] is not None]
    table = scored.rows
    tau = wide_table(table[table["dataset"].isin(available)], intervals=True) if available else pd.DataFrame()
    notes = table[table["dataset"].isin(available) & table["value"].isna()][["label", "dataset", "note"]]
    alignment_rows = [{"metric": m.label, "map": (m.extra or {}).get("alignment", {}).get("fitted_on", "")}
                      for _, m, _ in built if m is not None and getattr(m, "map", None) is not None]
    tables = {"sets": sets_table(sets, scored.frames), "tau": tau,
              "notes": notes.rename(columns={"label": "metric", "dataset": "judgement set"}).reset_index(drop=True),
              "differences": differences_table(diffs), "noise": noise_table(noise),
              "alignment": pd.DataFrame(alignment_rows, columns=["metric", "map"])}
    frames = {"tau": table, "differences": diffs, "noise": noise}
    return Page(rows, tables=tables, frames=frames, sentences=prose.realign_metrics_sentences(rows), timings=timings)
