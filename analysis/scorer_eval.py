"""How good are the scorers? Retrieval, perturbation accuracy and the modality gap.

:func:`run_scorer_eval` backs the *Scorers* chapter. For every scorer and dataset:

* **Retrieval** on held-out items, one caption per image (the first reference).
  With the score matrix ``S[i, j] = s(image_i, caption_j)``, ``G_i = #{j : S[i, j] > S[i, i]}``
  and ``T_i = #{j ≠ i : S[i, j] = S[i, i]}``, image→text
  ``R@k = mean_i clip((k − G_i) / (T_i + 1), 0, 1)``: the expected hit rate when ties
  are broken at random (without ties, ``1[1 + G_i <= k]``). A scorer that ignores
  one side — the text-only baseline in text→image — thus scores chance, ``k / n``,
  rather than a perfect tie-favoured 1. Text→image uses ``Sᵀ``.
* **Perturbation accuracy** (SugarCrepe-style) on ``stamp-scenes``: for each
  test scene and perturbation kind, ``1[s(img, true) > s(img, neg)] + ½·1[=]``,
  averaged over scenes, with a percentile bootstrap 95% CI
  (``scipy.stats.bootstrap``). Chance is ½; the text-only ``blind`` scorer shows how
  much the caption alone gives away.
* **Modality gap** for dual encoders: ``‖mean_i u_i − mean_j v_j‖₂`` over the
  L2-normalised image (u) and text (v) embeddings, and the mean cosine of matched
  vs mismatched pairs.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis import cache, registry, results
from analysis.data import scenes as scene_data
from analysis.runtime import rng, seed_all

SCORERS = ["clip-mini", "uniter-mini", "lxmert-mini", "blind"]
DATASETS = ["tuxpaint-stamps", "stamp-scenes", "gcompris-explore"]
KS = (1, 5, 10)
SMOKE_ITEMS = 8
HELD_OUT = "test"


def recall_at_k(S: np.ndarray, k: int) -> float:
    """Image→text R@k of a square score matrix whose diagonal holds the true pairs, ties broken at
    random in expectation: ``mean_i clip((k − G_i) / (T_i + 1), 0, 1)``."""
    true = np.diag(S)[:, None]
    greater = (S > true).sum(axis=1)
    ties = (S == true).sum(axis=1) - 1
    return float(np.clip((k - greater) / (ties + 1), 0, 1).mean())


def modality_gap(U: np.ndarray, V: np.ndarray) -> float:
    """``‖mean(U) − mean(V)‖₂`` for row-wise L2-normalised embeddings U (images) and V (texts)."""
    return float(np.linalg.norm(U.mean(axis=0) - V.mean(axis=0)))


def pairwise_wins(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``1`` where the true caption scores higher, ``½`` on a tie, ``0`` otherwise."""
    return (pos > neg).astype(float) + 0.5 * (pos == neg)


def bootstrap_ci(x: np.ndarray, *, seed: int, n_resamples: int = 1000) -> tuple[float, float]:
    """Percentile bootstrap 95% CI of the mean of ``x`` (``scipy.stats.bootstrap``)."""
    from scipy.stats import bootstrap

    if len(x) < 2 or np.all(x == x[0]):
        return float(np.mean(x)), float(np.mean(x))
    res = bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=0.95, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


UNSPLIT = ("gcompris-explore", "gcompris-categories", "sample-photos")  # never trained on: use every item


def heldout(name: str, smoke: bool, max_items: int | None = None):
    """The test split of a dataset (every item for :data:`UNSPLIT` sets), at most ``max_items`` of it."""
    limit = SMOKE_ITEMS if smoke else max_items
    return registry.get_dataset(name, split=None if name in UNSPLIT else HELD_OUT, limit=limit)


def images_key(ds) -> str:
    """sha256 over the image files' own sha256s, in item order."""
    import hashlib

    return hashlib.sha256("".join(cache.file_sha256(it.path) for it in ds).encode()).hexdigest()


def cached_scores(scorer, what: str, img_key: str, captions: list[str], compute) -> tuple[np.ndarray, int]:
    """``(scores, truncated)`` from ``compute()``, cached by content: the scorer's name, output and
    weights hash, the image files' hashes and the caption texts. Scores of unchanged inputs are never
    recomputed, and any change to weights, images or captions is a new entry."""
    import hashlib

    recipe = {"what": what, "scorer": scorer.name, "output": scorer.output, "weights": scorer.checkpoint_hash,
              "images": img_key, "captions": hashlib.sha256("\n".join(captions).encode()).hexdigest()}

    def run():
        scorer.reset_counts()
        return {"scores": np.asarray(compute(), dtype=np.float64), "truncated": np.array([scorer.truncated])}

    out = cache.cached_arrays("scores", recipe, run)
    return out["scores"], int(out["truncated"][0])


def retrieval_rows(scorer, ds, images, seed: int, img_key: str | None = None) -> tuple[list[dict], np.ndarray]:
    """R@k both ways plus chance for one scorer on one dataset; returns rows and the score matrix."""
    captions = [it.captions[0] for it in ds]
    S, truncated = cached_scores(scorer, "matrix", img_key or images_key(ds), captions,
                                 lambda: scorer.score_matrix(images, captions))
    n = len(captions)
    out = []
    for k in KS:
        out += [{"metric": f"i2t_R@{k}", "value": recall_at_k(S, k)},
                {"metric": f"t2i_R@{k}", "value": recall_at_k(S.T, k)},
                {"metric": f"chance_R@{k}", "value": min(k / n, 1.0)}]
    out.append({"metric": "truncated_captions", "value": float(truncated)})
    return [{**r, "analysis": "retrieval", "n": n} for r in out], S


def perturbation_rows(scorer, ds, images, seed: int, n_boot: int, img_key: str | None = None) -> list[dict]:
    """Accuracy of true-vs-perturbed caption per perturbation kind, with bootstrap CIs."""
    import hashlib

    pool = ds.provenance["pool"]
    img_key = img_key or images_key(ds)
    out = []
    for kind in scene_data.PERTURBATIONS:
        r = rng(seed)
        trip = [(i, scene_data.canonical(it.meta["graph"]), scene_data.perturb(it.meta["graph"], kind, r, pool))
                for i, it in enumerate(ds)]
        trip = [t for t in trip if t[2] is not None]
        if not trip:
            continue
        idx = [t[0] for t in trip]
        ims = [images[i] for i in idx]
        key = hashlib.sha256(f"{img_key}:{idx}".encode()).hexdigest()
        true_caps, neg_caps = [t[1] for t in trip], [t[2] for t in trip]
        pos, _ = cached_scores(scorer, "pairs", key, true_caps, lambda: scorer.score(ims, true_caps))
        neg, _ = cached_scores(scorer, "pairs", key, neg_caps, lambda: scorer.score(ims, neg_caps))
        wins = pairwise_wins(pos, neg)
        lo, hi = bootstrap_ci(wins, seed=seed, n_resamples=n_boot)
        out.append({"analysis": "perturbation", "perturbation": kind, "metric": "accuracy",
                    "value": float(wins.mean()), "ci_low": lo, "ci_high": hi, "n": len(trip)})
    return out


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


def score_distribution(model: str, dataset: str, S: np.ndarray) -> pd.DataFrame:
    """Long frame of matched (diagonal) and mismatched (off-diagonal) scores, for plots."""
    mask = np.eye(len(S), dtype=bool)
    return pd.concat([pd.DataFrame({"model": model, "dataset": dataset, "pair": "matched", "score": S[mask]}),
                      pd.DataFrame({"model": model, "dataset": dataset, "pair": "mismatched", "score": S[~mask]})])


def run_scorer_eval(scorers: list[str] | None = None, datasets: list[str] | None = None, *,
                    smoke: bool = False, seed: int = 0, n_boot: int = 1000, max_items: int | None = None):
    """Evaluate every scorer on every dataset (at most ``max_items`` held-out items each, e.g. 1000 of
    the COCO Karpathy test split); return ``(rows, score_distributions)``."""
    seed_all(seed)
    frames, dists = [], []
    loaded = {name: heldout(name, smoke, max_items) for name in datasets or DATASETS}
    images = {name: [it.image() for it in ds] for name, ds in loaded.items()}
    keys = {name: images_key(ds) for name, ds in loaded.items()}
    for sname in tqdm(scorers or SCORERS, desc="scorers"):
        t = time.perf_counter()
        embedded = registry.SCORERS.entry(sname).meta.get("source") == "embedded"
        scorer = registry.get_scorer(sname, smoke=smoke, seed=seed) if embedded else registry.get_scorer(sname)
        build_s = time.perf_counter() - t
        info = scorer.info()
        common = dict(run="scorers", model=sname, source=info["source"], pretrained=info["pretrained"],
                      split=HELD_OUT, seed=seed, label=info["label"], family=info["family"], output=info["output"],
                      checkpoint_hash=info["checkpoint_hash"][:16])
        for dname, ds in loaded.items():
            recs, S = retrieval_rows(scorer, ds, images[dname], seed, keys[dname])
            dists.append(score_distribution(sname, dname, S))
            if dname == "stamp-scenes":
                recs += perturbation_rows(scorer, ds, images[dname], seed, n_boot, keys[dname])
            if info["family"] == "dual":
                recs += gap_rows(scorer, images[dname], ds, S, keys[dname])
            frames.append(results.rows(recs, dataset=dname, **common))
        frames.append(results.rows([{"analysis": "cost", "metric": "load_seconds", "value": build_s}],
                                   dataset="", **common))
    return pd.concat(frames, ignore_index=True), pd.concat(dists, ignore_index=True)


# ---------------------------------------------------------------- computed text
def retrieval_summary(rows: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """Per model and dataset: i2t R@k, t2i R@k and chance."""
    r = rows[rows.analysis == "retrieval"]
    return r.pivot_table(index=["dataset", "model"], columns="metric", values="value", sort=False)[
        [f"i2t_R@{k}", f"t2i_R@{k}", f"chance_R@{k}"]]


def summary_text(rows: pd.DataFrame, k: int = 5) -> str:
    """What the numbers show: who beats chance and the text-only baseline, and where."""
    from scipy.stats import binomtest

    tab = retrieval_summary(rows, k).reset_index()
    sizes = rows[rows.analysis == "retrieval"].groupby("dataset")["n"].first()
    lines = []
    for dname, g in tab.groupby("dataset", sort=False):
        g = g.set_index("model")
        blind = g.loc["blind", f"i2t_R@{k}"] if "blind" in g.index else float("nan")
        chance = g[f"chance_R@{k}"].iloc[0]
        for m, row in g.drop(index="blind", errors="ignore").iterrows():
            v = row[f"i2t_R@{k}"]
            n = int(sizes[dname])
            p = binomtest(int(round(v * n)), n, chance, alternative="greater").pvalue
            verdict = ("not distinguishable from chance" if p >= 0.05 else
                       "above chance and above the text-only baseline" if v > blind else
                       "above chance but not above the text-only baseline")
            lines.append(f"`{m}` on `{dname}`: image→text R@{k} = {v:.2f} (chance {chance:.2f}, "
                         f"text-only {blind:.2f}, n = {n}; one-sided binomial p = {p:.2g}) — {verdict}.")
    pert = rows[rows.analysis == "perturbation"]
    if len(pert):
        acc = pert.pivot_table(index="perturbation", columns="model", values="value")
        blind_acc = acc["blind"] if "blind" in acc else None
        for m in [c for c in acc.columns if c != "blind"]:
            worst = acc[m].idxmin()
            lines.append(f"`{m}` separates true from perturbed scene captions best on "
                         f"`{acc[m].idxmax()}` ({acc[m].max():.2f}) and worst on `{worst}` ({acc[m].min():.2f}, "
                         f"chance 0.50" + (f"; text-only {blind_acc[worst]:.2f}" if blind_acc is not None else "")
                         + ").")
        if blind_acc is not None:
            lines.append(f"The text-only baseline reaches {blind_acc.max():.2f} on `{blind_acc.idxmax()}`: "
                         "that much is decidable from the caption alone, without the image.")
    if "stamp-scenes" in set(rows["dataset"]):
        lines.append("Caveat: test scenes are new compositions of training-split stamps, so `stamp-scenes` "
                     "retrieval tests composition, not unseen objects. The `tuxpaint-stamps` test stamps appear in no "
                     "training scene, and `gcompris-explore` (photos, not cut-outs) was never seen in training at all.")
    return "\n".join(f"* {line}" for line in lines)
