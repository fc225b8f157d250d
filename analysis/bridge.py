"""The bridge between the study's two papers: does realigning the reward's image side change what a captioner
learns to say?

The probe (Ma et al. 2022) reads a scorer's notion of alignment off the captions SCST writes when the scorer is the
reward. ReCap (Paischer et al.) realigns a dual encoder's image embeddings with a closed-form map. The bridge runs
the probe with two rewards that differ **only** in that map:

* ``clip-s:<scorer>``: CLIP-S, ``w · max(cos(v, t), 0)`` with ``t`` the text embedding of
  ``"A photo depicts " + caption`` (:data:`analysis.captioning.rewards.CLIP_S_PREFIX`);
* ``aclip-s:<scorer>``: aCLIP-S, the same with ``v`` replaced by ``normalise(map.apply(v))``, the in-domain
  Procrustes map of :func:`analysis.realignment.fitted_map` (fitted on the scorer's training pairs, never on the
  SCST or test images).

Both start from the same XE captioner and train on the same SCST images with the same schedule and the same SCST
seed (:data:`BRIDGE_SEEDS`): training is deterministic, so both runs draw the same random numbers and differ only
through the reward (common random numbers). A significant difference between their captions is therefore the map's
doing in that run; whether its size holds across SCST seeds is not measured with one seed (a second seed would add two
SCST runs, about 4 minutes on 2 cores, past the Realignment part's 12-minute budget), and the page says so. The page
reports:

* the probe's measures of both captioners' test captions beside XE and CIDEr-D SCST (:func:`analysis.probe.summary_rows`);
* **paired differences** aligned − raw for each measure of :data:`DIFF_MEASURES` (images paired, seeds drawn per
  system; :func:`analysis.findings.bootstrap_diff`), Holm-corrected over the family;
* how often the two captioners write the same caption for an image (seed by seed, Wilson interval);
* the probe's findings F1–F3 for both (each system scored by its own reward and by ``blind`` as a control);
* reward-guided decoding (no training) with each reward over the XE prior, prior weight swept.

The verdict (:func:`bridge_verdict`): "realignment changes what the captioner learns" when at least one paired
difference is significant after Holm (``p_holm <= alpha``), "no detectable change" otherwise, with the numbers.
Everything is a stand-in here: ``clip-mini`` is a CLIP-style dual encoder trained on the embedded data.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from analysis.prose import ALPHA, significant

RUN = "bridge"
PAGE = "realign-bridge"
#: SCST seeds of each bridge system in a full run (smoke runs use the first); both arms share them (module docstring)
BRIDGE_SEEDS = (0,)
#: the measures compared aligned − raw: (column, statistic of analysis.findings, label)
DIFF_MEASURES = (("cider_d", "mean", "CIDEr-D"), ("sg_f1", "mean", "sg-f1 (SPICE-style stand-in)"),
                 ("length", "mean", "words per caption"), ("visual_words", "mean", "visual words per caption"),
                 ("slor", "mean", "SLOR"), ("grammar_error", "mean", "share flagged by the grammar detector"),
                 ("template", "template_entropy", "template entropy (bits)"),
                 ("object_precision", "pooled", "object precision"), ("object_recall", "pooled", "object recall"),
                 ("count_correct", "pooled", "count correctness"),
                 ("relation_correct", "pooled", "relation correctness"), ("chair_i", "pooled", "CHAIR-i"))


def rewards_of(scorer: str = "clip-mini") -> tuple[str, str]:
    """``(raw, aligned)`` reward names of the bridge for a dual-encoder ``scorer``.

    >>> rewards_of("clip-mini")
    ('clip-s:clip-mini', 'aclip-s:clip-mini')
    """
    return f"clip-s:{scorer}", f"aclip-s:{scorer}"


def bridge_systems(scorer: str = "clip-mini", seeds: Sequence[int] = BRIDGE_SEEDS) -> tuple:
    """The two bridge systems (:class:`analysis.probe.System`), registered with the probe's tables
    (:func:`analysis.probe.register_system`) but not among the probe's own runs."""
    from analysis import probe

    raw, aligned = rewards_of(scorer)
    return (probe.register_system(probe.System(raw, raw, "dual encoder", PAGE, seeds=tuple(seeds))),
            probe.register_system(probe.System(aligned, aligned, "dual encoder, realigned", PAGE,
                                               seeds=tuple(seeds))))


def own_score_columns(s, table: pd.DataFrame, rewards: Sequence[str]) -> pd.DataFrame:
    """``table`` with a ``score:<reward>`` column per reward: the reward over the test image of each row's caption
    (NaN for an empty caption); each reward's text cache is cleared first, so the values do not depend on what was
    scored before."""
    from analysis import probe

    out = table.copy()
    index = {img: i for i, img in enumerate(s.test.ids)}
    rows = np.array([index[i] for i in out["image"]], dtype=np.int64)
    caps = out["caption"].fillna("").astype(str).tolist()
    keep = np.array([bool(c.split()) for c in caps])
    for name in rewards:
        r = probe.test_reward(s, name).clear_text_cache()
        vals = np.full(len(caps), np.nan)
        if keep.any():
            vals[keep] = r(rows[keep], [c for c, k in zip(caps, keep) if k])
        out[f"score:{name}"] = vals
    return out


def difference_rows(table: pd.DataFrame, a: str, b: str, *, seed: int, n_boot: int,
                    measures=DIFF_MEASURES, alpha: float = ALPHA) -> pd.DataFrame:
    """Per measure: statistic of system ``a`` minus that of ``b`` on the same test images (two-level bootstrap:
    images paired, seeds drawn per system; :func:`analysis.findings.bootstrap_diff` / ``bootstrap_stat``), with
    the two-sided bootstrap p and Holm's correction over the measures that ran (``p_holm``); ``significant`` is
    ``p_holm <= alpha``. A measure missing from the table is a row with ``status`` "missing column"."""
    from analysis import findings
    from analysis.stats import holm

    rows = []
    for i, (col, stat, label) in enumerate(measures):
        row = {"run": RUN, "analysis": "difference", "system": a, "baseline": b, "measure": col, "label": label,
               "statistic": stat}
        need = list(findings.RATIOS[col]) if stat == "pooled" else [col]
        if any(c not in table for c in need) or not {a, b} <= set(table["system"]):
            rows.append({**row, "status": "missing column" if any(c not in table for c in need) else "missing system"})
            continue
        kw = dict(seed=int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), n_resamples=n_boot)
        r = (findings.bootstrap_stat(table, a, b, stat, **kw) if stat in findings.CORPUS_STATS
             else findings.bootstrap_diff(table, col, a, b, stat=stat, **kw))
        rows.append({**row, "value": r["value"], "low": r["low"], "high": r["high"], "p": r["p"],
                     "value_a": r.get("value_a"), "value_b": r.get("value_b"), "n_images": r.get("n_images"),
                     "seeds": r.get("seeds_a"), "seeds_baseline": r.get("seeds_b"), "status": "ok"})
    out = pd.DataFrame(rows)
    ok = out["status"] == "ok" if len(out) else pd.Series(dtype=bool)
    out["p_holm"] = np.nan
    if ok.any():  # holm leaves a NaN p out of the family
        out.loc[ok, "p_holm"] = holm(out.loc[ok, "p"].to_numpy(float))
    out["test_family"] = f"bridge: {a} − {b}"
    out["significant"] = [bool(significant({"p_holm": q}, alpha)) for q in out["p_holm"]]
    return out


def identical_rows(table: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The share of test images for which ``a`` and ``b`` wrote the same caption, per SCST seed both have and over
    all of them, with the Wilson 95% interval (a share near 0 or 1)."""
    from analysis.stats import wilson_interval

    rows = []
    ta, tb = table[table.system == a], table[table.system == b]
    seeds = sorted(set(ta["seed"]) & set(tb["seed"]))
    hits = n = 0
    for sd in seeds:
        m = ta[ta.seed == sd][["image", "caption"]].merge(tb[tb.seed == sd][["image", "caption"]], on="image")
        k = int((m["caption_x"] == m["caption_y"]).sum())
        hits, n = hits + k, n + len(m)
        lo, hi = wilson_interval(k, len(m)) if len(m) else (np.nan, np.nan)
        rows.append({"run": RUN, "analysis": "identical captions", "system": a, "baseline": b, "seed": int(sd),
                     "measure": "identical captions", "value": k / len(m) if len(m) else np.nan, "low": lo,
                     "high": hi, "n": len(m)})
    lo, hi = wilson_interval(hits, n) if n else (np.nan, np.nan)
    rows.append({"run": RUN, "analysis": "identical captions", "system": a, "baseline": b, "seed": -1,
                 "measure": "identical captions", "value": hits / n if n else np.nan, "low": lo, "high": hi, "n": n})
    return pd.DataFrame(rows)


def bridge_verdict(diff: pd.DataFrame, checks: pd.DataFrame | None = None) -> dict:
    """The bridge's verdict from :func:`difference_rows` (and, when given, the reward checks of
    :func:`analysis.findings.reward_check_rows`): ``{"verdict", "reason", "changed", "tested"}``.

    * "not testable here" when no difference ran, or when either SCST run did not raise its own reward on the test
      images (its captions then do not show what that reward prefers);
    * "realignment changes what the captioner learns" when at least one difference has ``p_holm <= alpha``
      (``changed`` lists them with value and interval);
    * "no detectable change" otherwise.
    """
    ok = diff[diff.get("status", pd.Series(dtype=str)) == "ok"] if len(diff) else diff
    if ok.empty:
        return {"verdict": "not testable here", "reason": "no paired difference could be computed "
                "(a system or every measure is missing)", "changed": [], "tested": 0}
    sig = ok[ok["significant"].astype(bool)]
    cells = [f"{r.label} {r.value:+.3g} [{r.low:+.3g}, {r.high:+.3g}], Holm p {r.p_holm:.2g}" for r in sig.itertuples()]
    if len(sig):
        out = {"verdict": "realignment changes what the captioner learns",
               "reason": f"{len(sig)} of {len(ok)} paired differences (aligned − raw) are significant after Holm: "
                         + "; ".join(cells), "changed": list(sig["measure"]), "tested": int(len(ok))}
    else:
        out = {"verdict": "no detectable change",
               "reason": f"none of {len(ok)} paired differences (aligned − raw) is significant after Holm "
                         f"(smallest Holm p {ok['p_holm'].min():.2g})", "changed": [], "tested": int(len(ok))}
    if checks is not None and len(checks):
        flat = checks[checks["raised"].map(lambda r: r is False)]
        if len(flat):  # a run that learned nothing its reward prefers cannot show what the map changes
            what = "; ".join(f"`{r.system}` ({r.measure} minus XE {r.value:.3g} [{r.low:.3g}, {r.high:.3g}])"
                             for r in flat.itertuples())
            return {"verdict": "not testable here", "reason": f"SCST did not raise its own reward on the test "
                    f"images for {what}; the differences alone would say {out['verdict']} ({out['reason']})",
                    "changed": out["changed"], "tested": out["tested"]}
    return out


def guided_rows(s, rewards: Sequence[str], *, seed: int, weights: Sequence[float], n_images: int, beam: int,
                top_k: int, max_len: int, timings: list) -> pd.DataFrame:
    """Reward-guided decoding (:func:`analysis.captioning.guided.sweep`) with each reward over the XE prior on the
    probe's decoding images, the captions' light measures added; cached by the rewards, the XE weights, the images,
    the weights and the code (``bridge-guided`` entries)."""
    from analysis import cache, probe
    from analysis.captioning import guided

    images = probe.example_images(s.test, min(n_images, len(s.test)), seed + 2)
    settings = {"beam": beam, "top_k": top_k, "max_len": max_len, "length_norm": 1.0}
    recipe = {"what": "bridge guided decoding", "version": probe.PROBE_VERSION,
              "rewards": {r: probe.test_reward(s, r).info() for r in rewards}, "xe": s.captioner.weights_sha256,
              "images": [s.test.ids[i] for i in images], "prior_weights": [float(w) for w in weights],
              "settings": settings, "measures": probe.measure_inputs(s),
              "code": [cache.source_hash(guided), cache.source_hash(sys.modules[__name__])]}

    def build(folder: Path) -> None:
        prior = guided.XEPrior(s.captioner, s.test)
        parts = [guided.sweep(s.test, images, probe.test_reward(s, r).clear_text_cache(), [prior], list(weights),
                              **settings) for r in rewards]
        sw = pd.concat(parts, ignore_index=True)
        extra = probe._light_measures(s, sw["caption"].tolist(), s.test.subset(sw["image"].tolist()))
        sw = pd.concat([sw.reset_index(drop=True), extra], axis=1).drop(columns=["seconds"], errors="ignore")
        sw.to_parquet(folder / "sweep.parquet", index=False)

    with probe._timed(timings, "reward-guided decoding (cached by recipe)"):
        folder = cache.entry("bridge-guided", recipe, build)
    return pd.read_parquet(folder / "sweep.parquet")


GUIDED_MEASURES = ("length", "visual_words", "object_precision", "object_recall", "relation_correct", "slor",
                   "grammar_error")


def guided_summary(sw: pd.DataFrame, raw: str, aligned: str) -> pd.DataFrame:
    """Per reward and prior weight: the mean of each :data:`GUIDED_MEASURES` over the decoded images, and the share
    of images whose aligned-guided caption equals the raw-guided one (with its Wilson interval)."""
    from analysis.stats import wilson_interval

    rows = []
    for (rw, w), g in sw.groupby(["reward", "weight"], sort=True):
        for m in GUIDED_MEASURES:
            if m in g:
                rows.append({"run": RUN, "analysis": "guided", "system": f"guided:{rw}", "weight": float(w),
                             "measure": m, "value": float(g[m].mean()), "n": int(g[m].notna().sum())})
    for w, g in sw.groupby("weight", sort=True):
        m = g[g.reward == aligned][["image", "caption"]].merge(g[g.reward == raw][["image", "caption"]], on="image")
        if len(m):
            k = int((m["caption_x"] == m["caption_y"]).sum())
            lo, hi = wilson_interval(k, len(m))
            rows.append({"run": RUN, "analysis": "guided", "system": f"guided:{aligned}", "baseline": f"guided:{raw}",
                         "weight": float(w), "measure": "identical captions", "value": k / len(m), "low": lo,
                         "high": hi, "n": len(m)})
    return pd.DataFrame(rows)


def run_bridge(*, smoke: bool = False, seed: int = 0, scorer: str = "clip-mini", n_boot: int = 1000,
               weights: Sequence[float] = (0.0, 0.2), n_images: int = 16, n_examples: int = 8):
    """The bridge page (module docstring): SCST with CLIP-S and aCLIP-S rewards of ``scorer``, the probe's measures,
    paired differences, identical captions, F1–F3 for both, reward-guided decoding, and the verdict."""
    from analysis import findings, probe, prose

    weights = [weights] if isinstance(weights, (int, float)) else list(weights)
    if not weights or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights):
        raise ValueError(f"weights must be a list of numbers >= 0 (prior weights), got {weights!r}")
    beam, top_k, max_len = 3, 5, 12
    if smoke:
        n_images, weights, max_len, top_k = 2, weights[:1], 5, 4
    timings: list = []
    s = probe.setup(smoke, seed)
    raw_sys, al_sys = bridge_systems(scorer)
    raw, aligned = raw_sys.name, al_sys.name
    with probe._timed(timings, "SCST (CLIP-S and aCLIP-S rewards, every seed; cached by recipe)"):
        probe._train_all(s, [raw, aligned, "cider-d"])
    shown = [probe.REFERENCES, "xe", "cider-d", raw, aligned]
    with probe._timed(timings, "measures of the test captions (cached by content)"):
        table = own_score_columns(s, probe.captions_table(s, shown), [raw, aligned])
    with probe._timed(timings, "bootstrap summaries and paired differences"):
        summ = probe.summary_rows(table, shown, seed=seed, n_boot=n_boot)
        diff = difference_rows(table, aligned, raw, seed=seed, n_boot=n_boot)
        same = identical_rows(table, aligned, raw)
    own = {raw: raw, aligned: aligned}
    with probe._timed(timings, "controlled edits and F1-F3"):
        edits = probe.edits_table(s, table, seed=seed, scorers=[raw, aligned, "blind"])
        kw = dict(systems=[raw, aligned], seed=seed, n_resamples=n_boot)
        frows = pd.concat([findings.f1_rows(table, edits, scorer_of=own, **kw), findings.f2_rows(table, **kw),
                           findings.f3_rows(table, edits, scorer_of=own, **kw)], ignore_index=True)
        checks = findings.reward_check_rows(table, systems=[raw, aligned], seed=seed, n_resamples=n_boot,
                                            scorer_of=own)
        verdicts = findings.with_reward_check(findings.verdicts(frows), checks)
    sw = guided_rows(s, [raw, aligned], seed=seed, weights=weights, n_images=n_images, beam=beam, top_k=top_k,
                     max_len=max_len, timings=timings)
    gsum = guided_summary(sw, raw, aligned)
    verdict = bridge_verdict(diff, checks)
    vrow = pd.DataFrame([{"run": RUN, "analysis": "verdict", "system": aligned, "baseline": raw,
                          "measure": "bridge verdict", "verdict": verdict["verdict"], "reason": verdict["reason"],
                          "value": float(len(verdict["changed"])), "n": verdict["tested"]}])
    # the training curves stay with the page (frames), not in the result rows: the probe's reward pages report
    # curves, and one curve value once differed in its last bit between two fresh smoke runs (not yet explained)
    curves = probe.training_curves(s, [raw, aligned])
    rows = pd.concat([summ, diff, same,
                      frows.assign(run=RUN, analysis="finding"), checks.assign(run=RUN), gsum, vrow],
                     ignore_index=True)
    rows = probe.finalise(rows, smoke=smoke, seed=seed).assign(run=RUN)
    ex_ids = [s.test.ids[i] for i in probe.example_images(s.test, n_examples, seed)]
    labels = {n: probe.label_of(n) for n in shown}
    return probe.Page(rows, tables={"summary": probe.summary_wide(summ), "differences": difference_table(diff),
                                    "identical": same, "verdicts": verdicts, "checks": checks,
                                    "guided": guided_table(gsum),
                                    "examples": probe.examples_frame(table, ex_ids, shown),
                                    "systems": pd.DataFrame([{"system": n, "label": lb} for n, lb in labels.items()])},
                      frames={"curves": curves, "table": table, "sweep": sw, "verdict": verdict,
                              "example_paths": {i: p for i, p in zip(s.test.ids, s.test.paths) if i in ex_ids}},
                      sentences=prose.bridge_sentences(rows), timings=timings)


def difference_table(diff: pd.DataFrame) -> pd.DataFrame:
    """The paired differences as the page shows them: measure, raw, aligned, difference [interval], Holm p."""
    if diff.empty:
        return pd.DataFrame()
    ok = diff[diff["status"] == "ok"]
    return pd.DataFrame({"measure": ok["label"], "raw CLIP-S reward": ok["value_b"].map(lambda v: f"{v:.3g}"),
                         "aCLIP-S reward": ok["value_a"].map(lambda v: f"{v:.3g}"),
                         "aligned − raw [95% CI]": [f"{v:+.3g} [{lo:+.3g}, {hi:+.3g}]"
                                                    for v, lo, hi in zip(ok["value"], ok["low"], ok["high"])],
                         "Holm p": ok["p_holm"].map(lambda p: f"{p:.2g}"),
                         "significant": ok["significant"].map({True: "yes", False: "no"})}).reset_index(drop=True)


def guided_table(gsum: pd.DataFrame) -> pd.DataFrame:
    """Reward-guided decoding: one row per reward and prior weight, a column per measure (means)."""
    if gsum.empty:
        return pd.DataFrame()
    g = gsum[gsum["measure"] != "identical captions"]
    return g.pivot_table(index=["system", "weight"], columns="measure", values="value").reset_index()
