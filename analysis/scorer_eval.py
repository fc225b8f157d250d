"""How good are the scorers? Retrieval, perturbation accuracy, paired comparisons, the modality gap.

:func:`run_scorer_eval` backs the *Scorers* chapter. For every scorer and dataset, on the items the
dataset declares for evaluation (registry meta ``eval_split``: its ``test`` split, or ``all`` for a
set never used in training):

* **Retrieval**, one caption per image (the first reference): image→text and text→image R@k with
  ties broken at random in expectation and duplicate captions counted as true
  (:func:`analysis.stats.retrieval_hits`, :func:`true_pairs`), a Wilson 95% interval, and for
  ``k =`` :data:`VERDICT_K` a one-sided exact binomial test against chance. Text-only scorers are left
  out: their score matrix repeats one row, so their retrieval is chance *by construction* and
  says nothing.
* **Perturbation accuracy** (SugarCrepe-style) on every dataset whose items carry a scene graph
  (``item.meta["graph"]``): per perturbation kind, the share of scenes where the true canonical
  caption outscores its perturbed twin (``1[pos > neg] + ½·1[=]``), a Wilson 95% interval and an
  exact two-sided sign test against ½.
* **Paired comparisons** on the same items: between every two scorers that are not
  perturbation-trained ablations, and each ablation ``X+neg`` against ``X``: exact McNemar p and a
  paired bootstrap interval of the difference, for perturbation wins and per-query R@5 hits.
* **Holm** correction within each of three stated families of tests: ``vs chance``,
  ``between models``, ``hard negatives``.
* **Modality gap** for dual encoders: ``‖mean_i u_i − mean_j v_j‖₂`` over the L2-normalised image
  (u) and text (v) embeddings, and the mean cosine of matched vs mismatched pairs.

Rows record ``smoke``, the split actually scored and, for every model, whether it was trained on
the perturbation kinds it is tested on (``trained_on_perturbations``). Wall times are returned
separately (``timings``), never in the rows. The chapter's sentences are written by
:mod:`analysis.prose` from these rows.
"""
from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis import cache, parameters, registry, results, stats
from analysis.data import perturbations
from analysis.data.base import normalise_caption
from analysis.runtime import rng, seed_all

KS = (1, 5, 10)
VERDICT_K = 5  # the R@k the comparisons and sentences use
SMOKE_ITEMS = 8
FAMILIES = ("vs chance", "between models", "hard negatives")


@dataclass
class ScorerEval:
    """What :func:`run_scorer_eval` returns: tidy ``rows``, long score distributions ``dists`` (for
    plots) and wall ``timings`` (kept out of the rows so one seed gives identical result files)."""

    rows: pd.DataFrame
    dists: pd.DataFrame
    timings: pd.DataFrame


# ----------------------------------------------------------------------------- which items, which scorers
def eval_split(name: str) -> str:
    """The split a dataset declares for evaluation (registry meta ``eval_split``; default ``test``)."""
    return registry.DATASETS.entry(name).meta.get("eval_split", "test")


def heldout(name: str, smoke: bool, max_items: int | None = None):
    """The evaluation items of dataset ``name`` (see :func:`eval_split`), at most ``max_items`` of them."""
    split = eval_split(name)
    if split == "none":
        raise ValueError(f"dataset {name!r} is training data only (registry eval_split 'none'): evaluate the scorers "
                         "on a held-out set such as stamp-scenes or stamp-scenes-unseen")
    return registry.get_dataset(name, split=None if split == "all" else split,
                                limit=SMOKE_ITEMS if smoke else max_items)


def scorer_meta(name: str) -> dict:
    """Registry meta of a scorer name (empty for a scorer object that is not registered)."""
    return registry.SCORERS.entry(name).meta if name in registry.SCORERS else {}


def is_ablation(name: str) -> bool:
    """True for a scorer trained on the perturbation kinds it is tested on (registry meta)."""
    return bool(scorer_meta(name).get("trained_on_perturbations", False))


def ablation_base(name: str, scored: list[str]) -> str | None:
    """The default a ``X+neg`` ablation is compared with: ``X``, when it was scored too."""
    base = name.split("+", 1)[0]
    return base if is_ablation(name) and base != name and base in scored else None


def comparison_pairs(scored: list[str]) -> list[tuple[str, str, str]]:
    """``(family, a, b)``: every two non-ablation scorers (``between models``) and each ablation with
    its default (``hard negatives``)."""
    plain = [m for m in scored if not is_ablation(m)]
    pairs = [("between models", a, b) for a, b in itertools.combinations(plain, 2)]
    return pairs + [("hard negatives", m, ablation_base(m, scored)) for m in scored if ablation_base(m, scored)]


def default_scorer_names() -> list[str]:
    """The chapter's scorers when none are named: the registry's defaults (meta ``default``) and the
    embedded ``+neg`` ablations (meta ``trained_on_perturbations``), in registry order."""
    return [n for n in registry.embedded_scorers()
            if scorer_meta(n).get("default") or scorer_meta(n).get("trained_on_perturbations")]


def perturbation_training(name: str, info: dict) -> str:
    """``"yes"`` / ``"no"`` / ``"unknown"``: was the scorer trained on the perturbation kinds it is tested on?
    The scorer's own provenance decides (``None`` there, e.g. for published weights, is unknown: trained
    elsewhere on data this study cannot inspect); registry meta fills in for scorers that do not say."""
    said = info.get("trained_on_perturbations", scorer_meta(name).get("trained_on_perturbations"))
    return "unknown" if said is None else "yes" if said else "no"


def train_budget(scorer) -> str:
    """``"<steps> steps × <batch>"`` of a stand-in trained here (from its checkpoint recipe), else ``""``:
    the families' stand-ins are trained under different budgets, which the chapter must show."""
    sched = getattr(scorer, "meta", {}).get("recipe", {}).get("config", {}).get("schedule")
    return f"{sched['steps']} steps × {sched['batch_size']}" if sched else ""


# ----------------------------------------------------------------------------- cached scores
def images_key(ds) -> str:
    """sha256 over the image files' own sha256s, in item order."""
    return hashlib.sha256("".join(cache.file_sha256(it.path) for it in ds).encode()).hexdigest()


def cached_scores(scorer, what: str, img_key: str, captions: list[str], compute) -> tuple[np.ndarray, int]:
    """``(scores, truncated)`` from ``compute()``, cached by content: the scorer's name, output and
    weights hash, the image files' hashes and the caption texts. Scores of unchanged inputs are never
    recomputed, and any change to weights, images or captions is a new entry."""
    recipe = {"what": what, "scorer": scorer.name, "output": scorer.output, "weights": scorer.checkpoint_hash,
              "images": img_key, "captions": hashlib.sha256("\n".join(captions).encode()).hexdigest()}

    def run():
        scorer.reset_counts()
        return {"scores": np.asarray(compute(), dtype=np.float64), "truncated": np.array([scorer.truncated])}

    out = cache.cached_arrays("scores", recipe, run)
    return out["scores"], int(out["truncated"][0])


# ----------------------------------------------------------------------------- one scorer on one dataset
def true_pairs(ds) -> np.ndarray:
    """``P[i, j]``: the gallery caption of item ``j`` (its first reference) is true of image ``i``, i.e.
    equals one of item ``i``'s references once normalised (:func:`analysis.data.base.normalise_caption`).
    The diagonal is always true; off-diagonal truths are duplicate captions, which must not count as misses."""
    refs = [{normalise_caption(c) for c in it.captions} for it in ds]
    gallery = [normalise_caption(it.captions[0]) for it in ds]
    return np.array([[g in r for g in gallery] for r in refs], dtype=bool)


def retrieval(scorer, ds, images, img_key: str | None = None) -> tuple[list[dict], dict, np.ndarray]:
    """R@k both ways with Wilson intervals and a binomial test against chance; a query is a hit when any
    caption (image) true of it ranks in the top k (:func:`true_pairs`). Chance is the expected R@k of a
    random order, the mean of the hits of an all-tied matrix. Returns ``(rows, {metric: per-query hits},
    score matrix)``."""
    captions = [it.captions[0] for it in ds]
    S, truncated = cached_scores(scorer, "matrix", img_key or images_key(ds), captions,
                                 lambda: scorer.score_matrix(images, captions))
    P = true_pairs(ds)
    n = len(captions)
    out, hits = [], {}
    for k in KS:
        for direction, M, T in (("i2t", S, P), ("t2i", S.T, P.T)):
            chance = stats.recall_at_k(np.zeros_like(M), k, T)
            h = stats.retrieval_hits(M, k, T)
            hits[f"{direction}_R@{k}"] = h
            lo, hi = stats.wilson_interval(h.sum(), n)
            row = {"metric": f"{direction}_R@{k}", "value": float(h.mean()), "ci_low": lo, "ci_high": hi,
                   "chance": chance}
            if k == VERDICT_K:  # one tested R@k keeps the family small; the others are shown with intervals only
                row.update(p=stats.binomial_above_chance(h, chance), test="binomial vs chance", test_family="vs chance")
            out.append(row)
        out.append({"metric": f"chance_R@{k}", "value": stats.recall_at_k(np.zeros_like(S), k, P)})
    out.append({"metric": "duplicate_captions", "value": float(P.sum() - n)})
    out.append({"metric": "truncated_captions", "value": float(truncated)})
    return [{**r, "analysis": "retrieval", "n": n} for r in out], hits, S


def perturbation(scorer, ds, images, seed: int, img_key: str | None = None) -> tuple[list[dict], dict]:
    """Per perturbation kind: accuracy with a Wilson interval and a sign test against ½; returns
    ``(rows, {kind: per-scene outcomes})``. The negatives depend only on the dataset and ``seed``,
    so every scorer meets the same pairs."""
    img_key = img_key or images_key(ds)
    out, outcomes = [], {}
    for kind, (idx, true_caps, neg_caps) in perturbation_pairs(ds, seed).items():
        ims = [images[i] for i in idx]
        key = hashlib.sha256(f"{img_key}:{idx}".encode()).hexdigest()
        pos, _ = cached_scores(scorer, "pairs", key, true_caps, lambda: scorer.score(ims, true_caps))
        neg, _ = cached_scores(scorer, "pairs", key, neg_caps, lambda: scorer.score(ims, neg_caps))
        w = stats.wins(pos, neg)
        outcomes[kind] = w
        lo, hi = stats.wilson_interval(w.sum(), len(w))
        out.append({"analysis": "perturbation", "perturbation": kind, "metric": "accuracy", "value": float(w.mean()),
                    "ci_low": lo, "ci_high": hi, "chance": 0.5, "p": stats.sign_test(w), "test": "sign test vs ½",
                    "test_family": "vs chance", "n": len(w), "ties": int((w == 0.5).sum())})
    return out, outcomes


def perturbation_pairs(ds, seed: int) -> dict[str, tuple[list[int], list[str], list[str]]]:
    """``{kind: (item indices, true captions, perturbed captions)}`` for the items a kind applies to."""
    from analysis.data.scenes import canonical

    pool = ds.provenance["pool"]
    out = {}
    for kind in perturbations.PERTURBATIONS:
        r = rng(seed)
        trip = [(i, canonical(it.meta["graph"]), perturbations.perturb(it.meta["graph"], kind, r, pool))
                for i, it in enumerate(ds)]
        trip = [t for t in trip if t[2] is not None]
        if trip:
            out[kind] = ([t[0] for t in trip], [t[1] for t in trip], [t[2] for t in trip])
    return out


def has_scene_graphs(ds) -> bool:
    """True when every item carries a scene graph and the dataset a replacement pool (perturbations apply)."""
    return len(ds) > 0 and "pool" in ds.provenance and all("graph" in it.meta for it in ds)


def gap_rows(scorer, images, ds, S: np.ndarray, img_key: str | None = None) -> list[dict]:
    """Modality gap and matched / mismatched cosine for a dual encoder."""
    captions = [it.captions[0] for it in ds]
    key = img_key or images_key(ds)
    U, _ = cached_scores(scorer, "image_embeddings", key, [], lambda: scorer.encode_image(images))
    V, _ = cached_scores(scorer, "text_embeddings", "", captions, lambda: scorer.encode_text(captions))
    off = S[~np.eye(len(S), dtype=bool)]
    mismatched = float(off.mean()) if off.size else float("nan")  # one item: no mismatched pair
    return [{"analysis": "gap", "metric": "modality_gap", "value": modality_gap(U, V)},
            {"analysis": "gap", "metric": "cosine_matched_mean", "value": float(np.diag(S).mean())},
            {"analysis": "gap", "metric": "cosine_mismatched_mean", "value": mismatched}]


def modality_gap(U: np.ndarray, V: np.ndarray) -> float:
    """``‖mean(U) − mean(V)‖₂`` for row-wise L2-normalised embeddings U (images) and V (texts)."""
    return float(np.linalg.norm(U.mean(axis=0) - V.mean(axis=0)))


def score_distribution(model: str, label: str, dataset: str, S: np.ndarray) -> pd.DataFrame:
    """Long frame of matched (diagonal) and mismatched (off-diagonal) scores, for plots."""
    mask = np.eye(len(S), dtype=bool)
    return pd.concat([pd.DataFrame({"model": model, "label": label, "dataset": dataset, "pair": "matched",
                                    "score": S[mask]}),
                      pd.DataFrame({"model": model, "label": label, "dataset": dataset, "pair": "mismatched",
                                    "score": S[~mask]})])


# ----------------------------------------------------------------------------- paired comparisons
def comparison_rows(per_item: dict, scored: list[str], *, seed: int, n_boot: int) -> list[dict]:
    """Paired tests of two scorers on the same items.

    ``per_item[(dataset, model, measure)]`` holds per-item outcomes (perturbation wins under the kind's
    name, per-query hits under ``i2t_R@k``). The difference of the means gets a paired bootstrap 95%
    interval (:func:`analysis.stats.paired_interval`) and the exact McNemar p
    (:func:`analysis.stats.mcnemar_exact`: a sign test on the items where the two differ). An exact
    test, not a resampled one, so its p can be small enough to survive Holm over a large family.
    """
    out = []
    keys = sorted({(d, meas) for d, _, meas in per_item}, key=str)
    for family, a, b in comparison_pairs(scored):
        for dataset, measure in keys:
            if (dataset, a, measure) not in per_item or (dataset, b, measure) not in per_item:
                continue
            xa, xb = per_item[(dataset, a, measure)], per_item[(dataset, b, measure)]
            diff, lo, hi = stats.paired_interval(xa, xb, seed=seed, n_resamples=n_boot)
            n_ab, n_ba, p = stats.mcnemar_exact(xa, xb)
            out.append({"analysis": "comparison", "dataset": dataset, "model": a, "other": b, "measure": measure,
                        "metric": "difference", "value": diff, "ci_low": lo, "ci_high": hi, "n": len(xa),
                        "test_family": family, "p": p, "test": "exact McNemar", "n_a_only": n_ab,
                        "n_b_only": n_ba})
    return out


def add_holm(rows: pd.DataFrame) -> pd.DataFrame:
    """Add ``p_holm``: Holm-adjusted within each ``test_family`` (see :data:`FAMILIES`)."""
    rows = rows.copy()
    rows["p_holm"] = np.nan
    if "test_family" not in rows:
        return rows
    for fam, idx in rows.groupby("test_family").groups.items():
        rows.loc[idx, "p_holm"] = stats.holm(rows.loc[idx, "p"].to_numpy(float))
    return rows


# ----------------------------------------------------------------------------- the chapter's experiment
def run_scorer_eval(scorers: list[str] | None = None, datasets: list[str] | None = None, *,
                    smoke: bool = False, seed: int = 0, n_boot: int = 1000,
                    max_items: int | None = None) -> ScorerEval:
    """Evaluate every scorer on every dataset (at most ``max_items`` evaluation items each, e.g. 1000 of
    the COCO Karpathy test split). ``scorers=None``: every embedded stand-in (defaults and ablations)."""
    seed_all(seed)
    scorers = list(scorers) if scorers else default_scorer_names()
    datasets = list(datasets) if datasets else list(parameters.defaults("scorers")["datasets"])
    for name in scorers:  # unknown names fail before any data is loaded or model trained
        registry.SCORERS.entry(name)
    for name in datasets:
        registry.DATASETS.entry(name)
    loaded = {name: heldout(name, smoke, max_items) for name in datasets}
    images = {name: [it.image() for it in ds] for name, ds in loaded.items()}
    keys = {name: images_key(ds) for name, ds in loaded.items()}
    frames, dists, timings, per_item = [], [], [], {}
    for sname in tqdm(scorers, desc="scorers"):
        t = time.perf_counter()
        scorer = registry.build_scorer(sname, smoke=smoke, seed=seed)
        timings.append({"run": "scorers", "model": sname, "what": "build or load", "seconds": time.perf_counter() - t})
        info = scorer.info()
        common = dict(run="scorers", model=sname, source=info["source"], pretrained=info["pretrained"], seed=seed,
                      smoke=bool(smoke), label=info["label"], family=info["family"], output=info["output"],
                      checkpoint_hash=info["checkpoint_hash"][:16], train_budget=train_budget(scorer),
                      trained_on_perturbations=perturbation_training(sname, info))
        for dname, ds in loaded.items():
            t = time.perf_counter()
            recs = []
            if info["family"] != "text-only":
                recs, hits, S = retrieval(scorer, ds, images[dname], keys[dname])
                per_item[(dname, sname, f"i2t_R@{VERDICT_K}")] = hits[f"i2t_R@{VERDICT_K}"]
                dists.append(score_distribution(sname, info["label"], dname, S))
                if info["family"] == "dual":
                    recs += gap_rows(scorer, images[dname], ds, S, keys[dname])
            if has_scene_graphs(ds):
                prow, outcomes = perturbation(scorer, ds, images[dname], seed, keys[dname])
                recs += prow
                per_item.update({(dname, sname, kind): w for kind, w in outcomes.items()})
            if recs:
                frames.append(results.rows(recs, dataset=dname, split=eval_split(dname),
                                           heldout=registry.DATASETS.entry(dname).meta.get("heldout", ""), **common))
            timings.append({"run": "scorers", "model": sname, "what": f"score {dname}",
                            "seconds": time.perf_counter() - t})
    if not frames:
        raise ValueError(f"nothing to evaluate: scorers {scorers} on datasets {datasets} give no analysis (a "
                         "text-only scorer has no retrieval and needs a dataset with scene graphs, e.g. "
                         "stamp-scenes, for the perturbation test); add an image-aware scorer or a scene dataset")
    rows = pd.concat(frames, ignore_index=True)
    comp = comparison_rows(per_item, scorers, seed=seed, n_boot=n_boot)
    if comp:
        info = rows.drop_duplicates("model").set_index("model")
        comp_df = pd.DataFrame(comp)
        for col in ("source", "pretrained", "label", "family", "output", "checkpoint_hash", "train_budget",
                    "trained_on_perturbations"):
            comp_df[col] = comp_df["model"].map(info[col])
        comp_df["other_label"] = comp_df["other"].map(info["label"])
        comp_df["split"] = comp_df["dataset"].map(eval_split)
        comp_df["heldout"] = comp_df["dataset"].map(lambda d: registry.DATASETS.entry(d).meta.get("heldout", ""))
        rows = pd.concat([rows, results.rows(comp_df.to_dict("records"), run="scorers", seed=seed,
                                             smoke=bool(smoke))], ignore_index=True)
    rows = results.validate(add_holm(rows))
    dist = pd.concat(dists, ignore_index=True) if dists else pd.DataFrame(
        columns=["model", "label", "dataset", "pair", "score"])
    return ScorerEval(rows, dist, pd.DataFrame(timings))


# ----------------------------------------------------------------------------- tables for the page
def scorer_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scorer: label, family, source, output, trained on the perturbations?, weights hash."""
    cols = ["label", "family", "source", "output", "trained_on_perturbations", "train_budget", "checkpoint_hash"]
    r = rows[rows.analysis != "comparison"].drop_duplicates("model")
    return r.set_index("label")[cols[1:]].rename(columns={"trained_on_perturbations": "trained on perturbations",
                                                          "train_budget": "training (steps × batch)"})


def retrieval_table(rows: pd.DataFrame, k: int = VERDICT_K) -> pd.DataFrame:
    """Per dataset and scorer (by label): i2t and t2i R@k with Wilson 95% intervals, chance and n."""
    r = rows[(rows.analysis == "retrieval") & rows.metric.isin([f"i2t_R@{k}", f"t2i_R@{k}"])]
    if r.empty:
        return pd.DataFrame()
    r = r.assign(cell=[f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in zip(r.value, r.ci_low, r.ci_high)])
    tab = r.pivot_table(index=["dataset", "label"], columns="metric", values="cell", aggfunc="first", sort=False)
    extra = r.groupby(["dataset", "label"], sort=False)[["chance", "n"]].first()
    return tab.join(extra).rename(columns={"chance": f"chance R@{k}"})


def perturbation_table(rows: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Accuracy [Wilson 95%] per perturbation kind (rows) and scorer label (columns) on one dataset."""
    p = rows[(rows.analysis == "perturbation") & (rows.dataset == dataset)]
    if p.empty:
        return pd.DataFrame()
    p = p.assign(cell=[f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in zip(p.value, p.ci_low, p.ci_high)])
    return p.pivot_table(index="perturbation", columns="label", values="cell", aggfunc="first", sort=False)


def comparison_table(rows: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """The paired comparisons that survive Holm at ``alpha``, largest effects first."""
    c = rows[(rows.analysis == "comparison") & (rows.p_holm <= alpha)]
    if c.empty:
        return pd.DataFrame()
    c = c.assign(size=c.value.abs()).sort_values(["test_family", "dataset", "size"], ascending=[True, True, False])
    out = c[["test_family", "dataset", "measure", "label", "other_label", "value", "ci_low", "ci_high", "test",
             "p_holm"]]
    return out.rename(columns={"label": "A", "other_label": "B", "value": "A − B"}).round(3).reset_index(drop=True)
