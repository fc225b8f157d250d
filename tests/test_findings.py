"""The probe's findings F1–F3 (analysis.findings) and their sentences (analysis.prose probe_*), on constructed tables.

The bootstrap is checked against independent references: numpy/scipy on explicitly repeated samples for every
weighted statistic, a loop-based two-level bootstrap, scipy's paired bootstrap, and the coverage of the interval on
simulated data with a known difference. No model is trained or run.
"""
import doctest
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import findings as F
from analysis import prose
from analysis.grounding import visual_word_correlation
from analysis.linguistics import distinct_n, entropy
from analysis.stats import holm


# ----------------------------------------------------------------------------- constructed tables
def diff_table(rng, *, n_images=60, seeds=(3, 1), mu=(0.3, 0.0), tau=0.0, sigma=0.5, nan_share=0.1):
    """Systems ``a`` and ``b`` sharing image effects ``u_i``: ``x = mu + u_i + v_seed + e``; the true difference of
    means is ``mu_a − mu_b``."""
    u = rng.normal(0, 1, n_images)
    parts = []
    for name, n_seeds, m in zip("ab", seeds, mu):
        for s in range(n_seeds):
            x = m + u + rng.normal(0, tau) + rng.normal(0, sigma, n_images)
            x[rng.random(n_images) < nan_share] = np.nan
            parts.append(pd.DataFrame({"system": name, "seed": s, "image": [f"i{i:03d}" for i in range(n_images)],
                                       "m": x}))
    return pd.concat(parts, ignore_index=True)


FAMILY = {"references": "references", "xe": "baseline", "cider-d": "baseline", "clip-mini": "dual encoder",
          "uniter-mini": "single-stream", "blind": "text-only"}
SCORERS = ("clip-mini", "uniter-mini", "blind")
KINDS = ("object", "relation", "count", "size", "insert correct", "insert hallucinated", "insert non-visual")


def probe_tables(*, n_images=40, probed=("clip-mini", "uniter-mini", "blind"), blind_like_vlp=False,
                 drop=(), seeds=None, seed=0):
    """A captions table where probed systems keep objects, lose relation/count correctness, write few templates,
    are less fluent and less grammatical (the blind system only when ``blind_like_vlp``), and an edits table where
    each own scorer loses more on object edits and gains from visual-word insertions (the blind scorer: no effect)."""
    rng = np.random.default_rng(seed)
    seeds = seeds or {"cider-d": 3, "clip-mini": 3}
    rows = []
    systems = [s for s in ("references", "xe", "cider-d", *probed) if s not in drop]
    for s in systems:
        vlp = s in probed and (s != "blind" or blind_like_vlp)
        for sd in range(seeds.get(s, 1)):
            for i in range(n_images):
                vw = int(rng.integers(1, 6))
                words = list(rng.choice(["a", "cat", "dog", "on", "the", "left", "of", "two", "big"], 6))
                rows.append({"system": s, "family": FAMILY[s], "seed": sd, "image": f"img{i:03d}",
                             "dataset": "stamp-scenes", "caption": " ".join(words),
                             "template": f"T{rng.integers(2 if vlp else 40)}",
                             "object_precision": rng.uniform(0.85, 0.95), "object_recall": rng.uniform(0.7, 0.8),
                             "relation_correct": float(rng.random() < (0.2 if vlp else 0.8)),
                             "count_correct": float(rng.random() < (0.2 if vlp else 0.8)), "size_correct": np.nan,
                             "chair_hallucinated": int(rng.integers(0, 2)), "chair_mentions": int(rng.integers(1, 4)),
                             "perplexity": float(np.exp(rng.normal(4.5 if vlp else 3.0, 0.3))),
                             "slor": rng.normal(-1.5 if vlp else 0.0, 0.5),
                             "grammar_error": float(rng.random() < (0.6 if vlp else 0.05)), "visual_words": vw,
                             **{f"score:{sc}": (vw * 0.3 if sc != "blind" else 0.0) + rng.normal(0, 0.3)
                                for sc in SCORERS}})
    caps = pd.DataFrame(rows)
    mean = {"object": 1.0, "relation": 0.0, "count": 0.0, "size": 0.0, "insert correct": -0.6,
            "insert hallucinated": -0.5, "insert non-visual": 0.0}
    erows = []
    for s in systems:
        if s == "references":
            continue
        own = s if s in SCORERS else "clip-mini"
        for scorer in dict.fromkeys([own, "blind"]):
            for r in caps[caps.system == s].itertuples():
                for kind in KINDS:
                    d = (mean[kind] if scorer != "blind" else 0.0) + rng.normal(0, 0.2)
                    erows.append({"image": r.image, "kind": kind, "delta": d, "system": s, "seed": r.seed,
                                  "scorer": scorer})
    return caps, pd.DataFrame(erows)


def all_rows(caps, edits, **kw):
    kw = {"seed": 0, "n_resamples": 500} | kw
    return pd.concat([F.f1_rows(caps, edits, **kw), F.f2_rows(caps, **kw), F.f3_rows(caps, edits, **kw)],
                     ignore_index=True)


# ----------------------------------------------------------------------------- weighted statistics = numpy on repeats
def test_weighted_statistics_equal_numpy_and_scipy_on_the_repeated_sample():
    rng = np.random.default_rng(1)
    v = rng.normal(size=15).round(1)  # rounding makes ties
    v[[2, 7]] = np.nan
    y = rng.normal(size=15).round(1)
    k, n = rng.integers(0, 3, 15).astype(float), rng.integers(0, 4, 15).astype(float)
    items = list(rng.choice(["A", "B", "C", "D"], 15))
    toks = [list(rng.choice(["a", "b", "c"], rng.integers(1, 5))) for _ in range(15)]
    w = rng.integers(0, 3, size=(40, 15)).astype(float)
    w[0] = 1
    mean, med = F._wmean(v, w), F._wmedian(v, w)
    ratio, ent = F._wratio(k, n, w), F._wentropy(items, w)
    dist = F._wdistinct(toks, 2, w)
    finite = np.isfinite(v)
    rho = F._wspearman(np.nan_to_num(v), y, w)
    for b in range(len(w)):
        rep = w[b].astype(int)
        vv = np.repeat(v, rep)
        vv = vv[np.isfinite(vv)]
        assert mean[b] == pytest.approx(vv.mean() if len(vv) else np.nan, nan_ok=True)
        assert med[b] == pytest.approx(np.median(vv) if len(vv) else np.nan, nan_ok=True)
        kk, nn = np.repeat(k, rep), np.repeat(n, rep)
        assert ratio[b] == pytest.approx(kk.sum() / nn.sum() if nn.sum() else np.nan, nan_ok=True)
        assert ent[b] == pytest.approx(entropy(list(np.repeat(items, rep))))
        assert dist[b] == pytest.approx(distinct_n([t for t, r in zip(toks, rep) for _ in range(r)], 2), nan_ok=True)
        expected = stats.spearmanr(np.repeat(np.nan_to_num(v), rep), np.repeat(y, rep)).statistic
        assert rho[b] == pytest.approx(expected, abs=1e-9, nan_ok=True)
    assert finite.sum() == 13


def test_counts_are_draws_with_replacement():
    c = F._counts(np.random.default_rng(0), 7, 500)
    assert c.shape == (500, 7) and (c.sum(axis=1) == 7).all()
    assert c.mean() == pytest.approx(1.0) and c.var() == pytest.approx(6 / 7, rel=0.1)  # multinomial: (1 − 1/n)


# ----------------------------------------------------------------------------- the two-level bootstrap
def loop_bootstrap(t, a, b, measure, *, seed, n_resamples):
    """An independent, slow two-level bootstrap: draw images (shared), then each system's seeds, concatenate."""
    rng = np.random.default_rng(seed)
    images = sorted(set(t.loc[t.system == a, "image"]) & set(t.loc[t.system == b, "image"]))
    cells = {name: {(s, i): g[measure].to_numpy() for (s, i), g in t[t.system == name].groupby(["seed", "image"])}
             for name in (a, b)}
    seeds = {name: sorted(t.loc[t.system == name, "seed"].unique()) for name in (a, b)}
    out = []
    for _ in range(n_resamples):
        drawn = rng.choice(images, len(images))
        means = []
        for name in (a, b):
            ss = rng.choice(seeds[name], len(seeds[name]))
            vals = np.concatenate([cells[name].get((s, i), np.array([])) for s in ss for i in drawn])
            means.append(np.nanmean(vals))
        out.append(means[0] - means[1])
    return np.quantile(out, [0.025, 0.975])


def test_bootstrap_diff_matches_an_independent_loop_implementation():
    t = diff_table(np.random.default_rng(2), n_images=40, tau=0.2)
    r = F.bootstrap_diff(t, "m", "a", "b", seed=0, n_resamples=3000)
    a, b = t[t.system == "a"]["m"], t[t.system == "b"]["m"]
    assert r["value"] == pytest.approx(a.mean() - b.mean())  # pandas skips NaN
    lo, hi = loop_bootstrap(t, "a", "b", "m", seed=1, n_resamples=1500)
    width = hi - lo
    assert r["low"] == pytest.approx(lo, abs=0.08 * width) and r["high"] == pytest.approx(hi, abs=0.08 * width)
    assert (r["seeds_a"], r["seeds_b"], r["n_images"]) == (3, 1, 40)
    assert r["n_a"] == a.notna().sum() and r["n_b"] == b.notna().sum()


def test_bootstrap_diff_with_one_seed_is_scipys_paired_bootstrap():
    t = diff_table(np.random.default_rng(3), n_images=50, seeds=(1, 1), nan_share=0.0)
    a, b = t[t.system == "a"]["m"].to_numpy(), t[t.system == "b"]["m"].to_numpy()
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, vectorized=True,
                          n_resamples=4000, method="percentile", random_state=np.random.default_rng(0))
    r = F.bootstrap_diff(t, "m", "a", "b", seed=5, n_resamples=4000)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert r["low"] == pytest.approx(ref.confidence_interval.low, abs=0.06 * width)
    assert r["high"] == pytest.approx(ref.confidence_interval.high, abs=0.06 * width)


def test_the_interval_covers_the_true_difference_in_about_95_percent_of_data_sets():
    hits = 0
    for i in range(200):
        t = diff_table(np.random.default_rng(100 + i))
        r = F.bootstrap_diff(t, "m", "a", "b", seed=i, n_resamples=400)
        hits += r["low"] <= 0.3 <= r["high"]
    assert 0.90 <= hits / 200 <= 0.99


def test_seeds_are_resampled_so_seed_spread_widens_the_interval():
    t = diff_table(np.random.default_rng(4), tau=0.0)
    shifted = t.copy()
    shifted.loc[shifted.system == "a", "m"] += shifted.loc[shifted.system == "a", "seed"].map({0: -1.0, 1: 0.0, 2: 1.0})
    r0 = F.bootstrap_diff(t, "m", "a", "b", seed=0, n_resamples=1000)
    r1 = F.bootstrap_diff(shifted, "m", "a", "b", seed=0, n_resamples=1000)
    assert r1["value"] == pytest.approx(r0["value"], abs=0.05)  # the shifts nearly average out (NaN cells differ)
    assert (r1["high"] - r1["low"]) > 3 * (r0["high"] - r0["low"])


def test_p_values_constant_difference_and_no_difference():
    t = pd.DataFrame({"system": ["a"] * 5 + ["b"] * 5, "image": list("vwxyz") * 2, "m": [1.0, 2, 3, 4, 5] * 2})
    same = F.bootstrap_diff(t, "m", "a", "b", seed=0, n_resamples=999)
    assert (same["value"], same["low"], same["high"], same["p"]) == (0.0, 0.0, 0.0, 1.0)
    t.loc[t.system == "a", "m"] += 2
    shift = F.bootstrap_diff(t, "m", "a", "b", seed=0, n_resamples=999)
    assert shift["value"] == 2.0 and shift["p"] == pytest.approx(2 / 1000)  # the floor 2/(B+1)
    assert F.bootstrap_diff(t, "m", "a", "b", seed=0, n_resamples=999, null=2.0)["p"] == 1.0


def test_bootstrap_is_deterministic_given_the_seed():
    t = diff_table(np.random.default_rng(5))
    r1, r2 = (F.bootstrap_diff(t, "m", "a", "b", seed=7, n_resamples=300) for _ in range(2))
    assert r1 == r2
    assert F.bootstrap_diff(t, "m", "a", "b", seed=8, n_resamples=300)["low"] != r1["low"]


def test_median_pooled_and_mean_statistics():
    t = pd.DataFrame({"system": ["a"] * 3 + ["b"] * 3, "image": list("xyz") * 2, "m": [1.0, 2.0, 30.0, 1.0, 1.0, 1.0],
                      "counts_correct": [1, 0, 2, 0, 0, 1], "counts_stated": [1, 0, 3, 1, 2, 1],
                      "count_correct": [1.0, np.nan, 2 / 3, 0.0, 0.0, 1.0]})
    assert F.bootstrap_diff(t, "m", "a", "b", seed=0, n_resamples=50, stat="median")["value"] == 1.0
    pooled = F.bootstrap_diff(t, "count_correct", "a", "b", seed=0, n_resamples=50, stat="pooled")
    assert pooled["value"] == pytest.approx(3 / 4 - 1 / 4) and pooled["statistic"].startswith("pooled")
    mean = F.bootstrap_diff(t, "count_correct", "a", "b", seed=0, n_resamples=50)
    assert mean["value"] == pytest.approx((1 + 2 / 3) / 2 - 1 / 3)
    m = F.bootstrap_mean(t, "m", "a", seed=0, n_resamples=200)
    assert m["value"] == pytest.approx(11.0) and m["low"] >= 1.0 and m["high"] <= 30.0 and m["seeds"] == 1


def test_clear_errors_name_the_column_and_the_systems():
    t = diff_table(np.random.default_rng(6), n_images=5)
    with pytest.raises(ValueError, match="'perplexity'"):
        F.bootstrap_diff(t, "perplexity", "a", "b", seed=0)
    with pytest.raises(ValueError, match="present: \\['a', 'b'\\]"):
        F.bootstrap_diff(t, "m", "a", "xe", seed=0)
    with pytest.raises(ValueError, match="pooled"):
        F.bootstrap_diff(t, "m", "a", "b", seed=0, stat="pooled")
    with pytest.raises(ValueError, match="unknown corpus statistic"):
        F.bootstrap_stat(t, "a", "b", "entropy", seed=0)


# ----------------------------------------------------------------------------- corpus statistics
def test_corpus_statistics_per_seed_equal_the_explicit_callable():
    rng = np.random.default_rng(7)
    t = pd.DataFrame({"system": np.repeat(["a", "b"], 60), "seed": np.r_[np.repeat([0, 1, 2], 20), np.zeros(60)],
                      "image": [f"i{i}" for i in range(20)] * 3 + [f"i{i}" for i in range(60)],
                      "template": rng.choice(list("ABCDEFGH"), 120),
                      "caption": [" ".join(rng.choice(["a", "cat", "dog", "sat"], 4)) for _ in range(120)]})
    named = F.bootstrap_stat(t, "a", "b", "template_entropy", seed=3, n_resamples=150)
    loop = F.bootstrap_stat(t, "a", "b", lambda f: entropy(list(f["template"])), seed=3, n_resamples=150)
    assert (named["low"], named["high"], named["p"]) == pytest.approx((loop["low"], loop["high"], loop["p"]))
    # the point: entropy per seed, averaged over a's seeds; b over its images shared with a (i0..i19)
    a = np.mean([entropy(list(g["template"])) for _, g in t[t.system == "a"].groupby("seed")])
    b = entropy(list(t[(t.system == "b") & t.image.isin([f"i{i}" for i in range(20)])]["template"]))
    assert named["value"] == pytest.approx(a - b)
    assert named["interval"] == "bias-centred percentile" and named["seeds_a"] == 3
    d2 = F.bootstrap_stat(t, "a", None, "distinct_2", seed=3, n_resamples=50)
    per_seed = [distinct_n([c.split() for c in g["caption"]], 2) for _, g in t[t.system == "a"].groupby("seed")]
    assert d2["value"] == pytest.approx(np.mean(per_seed))


def test_entropy_interval_covers_the_expected_difference_where_the_percentile_one_does_not():
    """Drawing with replacement lowers entropy; the bias-centred interval corrects for it (module docstring)."""
    hits = 0
    r0 = np.random.default_rng(99)
    expected = np.mean([entropy(list(r0.integers(30, size=60))) - entropy(list(r0.integers(90, size=60)))
                        for _ in range(2000)])
    for i in range(60):
        r = np.random.default_rng(i)
        t = pd.DataFrame({"system": np.repeat(["a", "b"], 60), "image": list(range(60)) * 2,
                          "template": np.r_[r.integers(30, size=60), r.integers(90, size=60)].astype(str)})
        res = F.bootstrap_stat(t, "a", "b", "template_entropy", seed=i, n_resamples=300)
        hits += res["low"] <= expected <= res["high"]
    assert hits / 60 >= 0.88


def test_chair_i_is_pooled_over_mentions():
    t = pd.DataFrame({"system": ["a", "a", "b", "b"], "image": ["x", "y", "x", "y"],
                      "chair_hallucinated": [1, 0, 0, 0], "chair_mentions": [1, 3, 2, 2]})
    assert F.bootstrap_stat(t, "a", "b", "chair_i", seed=0, n_resamples=50)["value"] == pytest.approx(0.25)


def test_spearman_point_is_visual_word_correlation_and_the_interval_a_bootstrap_over_images():
    rng = np.random.default_rng(8)
    n = 60
    x = rng.integers(0, 5, 3 * n)  # many ties
    t = pd.DataFrame({"image": np.tile(np.arange(n), 3), "vw": x, "s": x + rng.normal(0, 2, 3 * n)})
    r = F.bootstrap_spearman(t, "vw", "s", seed=0, n_resamples=2000)
    rho, p, m = visual_word_correlation(t.vw, t.s)
    assert (r["value"], r["p_spearman"], r["n"], r["n_images"]) == (rho, p, m, n)
    draws, g = [], np.random.default_rng(1)
    for _ in range(800):
        rows = np.concatenate([np.flatnonzero(t.image.to_numpy() == i) for i in g.integers(0, n, n)])
        draws.append(stats.spearmanr(t.vw.to_numpy()[rows], t.s.to_numpy()[rows]).statistic)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    assert r["low"] == pytest.approx(lo, abs=0.08 * (hi - lo)) and r["high"] == pytest.approx(hi, abs=0.08 * (hi - lo))


# ----------------------------------------------------------------------------- rows of F1–F3
def test_rows_have_the_contract_columns_and_per_system_holm_families():
    caps, edits = probe_tables(probed=("clip-mini", "blind"))
    rows = all_rows(caps, edits)
    assert {"finding", "test", "measure", "system", "family", "baseline", "value", "low", "high", "p", "p_holm", "n",
            "direction_expected", "supports"} <= set(rows.columns)
    assert set(rows.finding) == {"F1", "F2", "F3"}
    fam = rows[rows.test_family == "F1 clip-mini"]
    assert np.allclose(fam.p_holm.to_numpy(float), holm(fam.p.to_numpy(float)), equal_nan=True)
    assert rows[rows.direction_expected.isna()]["supports"].isna().all()  # descriptive rows are no tests
    kept = rows[(rows.test == "object precision kept")]
    assert (kept["null"] == -F.MARGIN).all() and (kept.direction_expected == ">").all()


def test_constructed_effects_give_reproduced_and_the_blind_beside_them():
    caps, edits = probe_tables()
    rows = all_rows(caps, edits)
    v = F.verdicts(rows).set_index(["finding", "system"])
    for f in ("F1", "F2", "F3"):
        assert v.loc[(f, "clip-mini"), "verdict"] == "reproduced", v.loc[(f, "clip-mini"), "reason"]
        assert v.loc[(f, "clip-mini"), "blind_flag"] == False  # noqa: E712  (numpy bool)
    assert v.loc[("F2", "blind"), "verdict"] == "inconclusive"  # blind writes like the baselines: no effect either way
    assert v.loc[("F1", "clip-mini"), "blind_control"] == "against"  # the blind scorer sees no edit effect
    assert v.loc[("F1", "clip-mini"), "seeds"] == 3 and v.loc[("F1", "uniter-mini"), "seeds"] == 1


def test_f3_sign_a_raised_score_is_a_negative_delta():
    """A scorer that counts visual words: appending any visual word raises the score by 1 (delta = −1), a
    non-visual word leaves it (delta = 0), so the hallucinated-vs-non-visual gain difference is +1 and supports F3."""
    visual = {"cat", "owl", "apple", "dog"}
    score = lambda c: sum(w in visual for w in c.replace(".", "").split())  # noqa: E731
    rows = []
    for i in range(12):
        c = "a cat on the left of a dog" if i % 2 else "a cat"
        for kind, edited in (("insert hallucinated", c + " and an owl"), ("insert non-visual", c + " and an idea"),
                             ("insert correct", c + " and an apple")):
            rows.append({"image": f"i{i}", "kind": kind, "delta": score(c) - score(edited), "system": "clip-mini",
                         "seed": 0, "scorer": "clip-mini"})
    edits = pd.DataFrame(rows)
    assert (edits.loc[edits.kind == "insert hallucinated", "delta"] == -1).all()
    caps = pd.DataFrame({"system": "clip-mini", "family": "dual encoder", "seed": 0, "image": [f"i{i}" for i in range(12)],
                         "visual_words": np.arange(12) % 3, "score:clip-mini": np.arange(12) % 3 + 0.1 * np.arange(12)})
    r = F.f3_rows(caps, edits, systems=["clip-mini"], seed=0, n_resamples=200, min_n=5)
    h = r[(r.test == "hallucinated word raises the score more than a non-visual word") & (r.scorer == "clip-mini")]
    assert h["value"].item() == 1.0 and h["supports"].item() is True


def test_f3_with_edit_effects_of_the_grounding_module():
    """End to end through analysis.grounding.edit_effects with a visual-word-counting scorer."""
    from analysis.grounding import edit_effects

    graph = {"objects": [{"name": "apple", "count": 2, "size": "big"}, {"name": "zebra", "count": 1, "size": "small"}],
             "relations": [{"subject": "apple", "relation": "left of", "object": "zebra"}]}
    caps = ["two apples to the left of a zebra", "a zebra", "two big apples"] * 4
    visual = {"apple", "apples", "zebra", "owl", "cat", "bear"}
    fn = lambda idx, cs: np.array([sum(w.strip(".") in visual for w in c.split()) for c in cs], float)  # noqa: E731
    e = edit_effects(fn, caps, [graph] * len(caps), ["owl", "cat", "bear"], seed=0)
    e = e.assign(system="clip-mini", seed=0, scorer="clip-mini", image=[f"i{i}" for i in e["index"]])
    ins = e.groupby("kind")["delta"].mean()
    assert ins["insert hallucinated"] == -1 and ins["insert non-visual"] == 0
    table = pd.DataFrame({"system": "clip-mini", "family": "dual encoder", "seed": 0,
                          "image": [f"i{i}" for i in range(len(caps))], "visual_words": 1.0, "score:clip-mini": 1.0})
    r = F.f3_rows(table, e, systems=["clip-mini"], seed=0, n_resamples=200, min_n=3)
    assert r.loc[r.test.str.startswith("hallucinated") & (r.scorer == "clip-mini"), "value"].item() == 1.0


def test_f1_edit_contrast_and_missing_edits():
    caps, edits = probe_tables(probed=("clip-mini",))
    r = F.f1_rows(caps, edits, seed=0, n_resamples=500)
    e = r[(r.component == "edit") & (r.test == "object edit minus relation edit")]
    own = edits[(edits.system == "clip-mini") & (edits.scorer == "clip-mini")]
    expect = own[own.kind == "object"].delta.mean() - own[own.kind == "relation"].delta.mean()
    assert e["value"].item() == pytest.approx(expect) and e["supports"].item() is True
    r2 = F.f1_rows(caps, edits[edits.system != "clip-mini"], seed=0, n_resamples=500)
    assert (r2.loc[r2.component == "edit", "status"] == "missing edits").all()
    v = F.verdicts(r2).set_index("system").loc["clip-mini"]
    assert v["verdict"] == "mixed" and "edit: not testable" in v["reason"]
    s = prose.probe_missing_sentences(r2)
    assert any("No edits of `clip-mini`'s captions were scored by its own scorer `clip-mini`" in x for x in s)


def test_too_few_captions_are_not_tested():
    caps, edits = probe_tables(probed=("clip-mini",))
    caps.loc[(caps.system == "clip-mini") & (caps.image > "img001"), "relation_correct"] = np.nan  # 2 images × 3 seeds
    r = F.f1_rows(caps, edits, seed=0, n_resamples=500)
    few = r[(r.test == "relation correctness falls")]
    assert (few.status == "too few").all() and few.supports.isna().all() and few.p.isna().all()
    s = prose.probe_missing_sentences(r)
    assert any(x.startswith("Too few captions or edits to test, for `clip-mini`: relation correctness falls vs `xe` "
                            "(n = 6)") for x in s)


def test_f_rows_are_deterministic_and_independent_of_system_order():
    caps, edits = probe_tables(probed=("clip-mini", "uniter-mini"), n_images=20)
    a = F.f2_rows(caps, systems=["clip-mini", "uniter-mini"], seed=3, n_resamples=400)
    b = F.f2_rows(caps, systems=["uniter-mini", "clip-mini"], seed=3, n_resamples=400)
    key = ["system", "baseline", "test"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))


def test_too_few_resamples_for_holm_warns():
    caps, _ = probe_tables(probed=("clip-mini",), n_images=12)
    with pytest.warns(UserWarning, match="can never reach"):
        F.f2_rows(caps, seed=0, n_resamples=100)


def test_own_scorer():
    assert F.own_scorer("clip-mini") == "clip-mini"
    assert F.own_scorer("mix:clip-mini") == "clip-mini"
    assert F.own_scorer("uniter-mini/probability") == "uniter-mini"
    assert F.own_scorer("uniter-mini/probability", ["uniter-mini/probability", "blind"]) == "uniter-mini/probability"


def test_doctests():
    result = doctest.testmod(F, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0


# ----------------------------------------------------------------------------- verdict rules on constructed rows
def trow(finding, system, component, test, supports, *, baseline="xe", family=None, seeds=1, status="ok",
         measure=None, scorer=None, value=-0.2, null=0.0):
    return {"finding": finding, "test": test, "component": component, "measure": measure or test, "system": system,
            "family": family or FAMILY.get(system, ""), "scorer": scorer or system, "baseline": baseline,
            "value": value, "low": value - 0.1, "high": value + 0.1, "null": null,
            "p": 0.001 if supports else 0.4, "p_holm": 0.002 if supports else 0.8, "test_family": f"{finding} {system}",
            "n": 40, "seeds": seeds, "direction_expected": "<", "supports": supports if status == "ok" else None,
            "status": status, "note": "", "interval": "percentile", "confidence": 0.95}


def f1(system, kept=True, rel=True, count=True, edit=True, value=-0.2, **kw):
    return [trow("F1", system, "objects kept", "object precision kept", kept, value=0.0, null=-0.05, **kw),
            trow("F1", system, "global falls", "relation correctness falls", rel, value=value, **kw),
            trow("F1", system, "global falls", "count correctness falls", count, value=value, **kw),
            trow("F1", system, "edit", "object edit minus relation edit", edit, value=value, **{**kw, "baseline": ""})]


def test_verdict_rules():
    rows = pd.DataFrame(f1("clip-mini") + f1("uniter-mini", rel=False, count=False, edit=False, value=0.2)
                        + f1("lxmert-mini", count=False, edit=False, family="two-stream")
                        + f1("mix:clip-mini", rel=False, count=False, edit=False, value=0.0))
    v = F.verdicts(rows).set_index("system")["verdict"]
    assert v["clip-mini"] == "reproduced"
    # objects kept alone is not evidence for F1; the global tests show the opposite effect (interval [0.1, 0.3] > 0)
    assert v["uniter-mini"] == "not reproduced"
    assert v["lxmert-mini"] == "mixed"
    # no evidence test holds and every interval covers its null ([-0.1, 0.1]): too little data, not a contradiction
    assert v["mix:clip-mini"] == "inconclusive"


def test_a_finding_whose_evidence_was_never_tested_is_not_testable_even_if_objects_are_kept():
    rows = pd.DataFrame([trow("F1", "clip-mini", "objects kept", "object precision kept", True, value=0.0, null=-0.05),
                         trow("F1", "clip-mini", "global falls", "relation correctness falls", None, status="too few"),
                         trow("F1", "clip-mini", "edit", "object edit minus relation edit", None, status="too few",
                              baseline="")])
    v = F.verdicts(rows)
    assert v["verdict"].item() == "not testable here" and "untestable" in v["reason"].item()


def test_missing_baseline_is_not_testable_and_named():
    rows = pd.DataFrame(f1("clip-mini", seeds=3) + f1("clip-mini", seeds=3, baseline="cider-d")
                        + [trow("F1", "clip-mini", "global falls", "relation correctness falls", None, baseline="xe",
                                status="missing baseline", seeds=3) | {"note": "no captions of baseline `xe`"}])
    rows = rows[~((rows.baseline == "xe") & (rows.status == "ok"))]
    v = F.verdicts(rows)
    assert v["verdict"].item() == "not testable here" and "`xe`" in v["reason"].item()
    (s,) = prose.probe_finding_sentences(v, rows)
    assert "**not testable here**" in s and "baseline `xe` missing" in s
    missing = prose.probe_missing_sentences(rows)
    assert missing[0] == ("The baseline `xe` has no captions in this run, so F1 is not testable here (each is a "
                          "comparison with every baseline).")
    assert "No text-only `blind` system" in missing[-1]
    assert not any("nan" in x.lower().split() for x in missing + [s])


def test_missing_baseline_end_to_end():
    caps, edits = probe_tables(probed=("clip-mini", "blind"), drop=("xe",), n_images=20)
    rows = all_rows(caps, edits)
    v = F.verdicts(rows).set_index(["finding", "system"])["verdict"]
    assert v[("F1", "clip-mini")] == v[("F2", "clip-mini")] == "not testable here"
    assert v[("F3", "clip-mini")] == "reproduced"  # F3 needs no baseline
    assert any("`xe`" in x and "F1 and F2" in x for x in prose.probe_missing_sentences(rows))


def test_blind_reproducing_a_finding_flags_every_family():
    rows = pd.DataFrame(f1("clip-mini", seeds=3) + f1("blind"))
    v = F.verdicts(rows).set_index("system")
    assert v.loc["blind", "verdict"] == "reproduced" and v.loc["clip-mini", "blind_verdict"] == "reproduced"
    assert bool(v.loc["clip-mini", "blind_flag"]) and "not evidence about image–text alignment" in v.loc["clip-mini",
                                                                                                         "reason"]
    clip, blind = prose.probe_finding_sentences(v.reset_index(), rows)
    assert "The text-only `blind` system reproduces F1 too, so here it is not evidence about image–text alignment" in clip
    assert "3 seeds" in clip and "never sees the image" in blind


def test_one_seed_sentence_mentions_the_seed_count():
    rows = pd.DataFrame(f1("uniter-mini", seeds=1))
    (s,) = prose.probe_finding_sentences(F.verdicts(rows), rows)
    assert s.startswith("**F1** (objects over global semantics), `uniter-mini` (single-stream, 1 seed): **reproduced**")
    assert "relation correctness falls vs `xe` -0.20 [-0.30, -0.10] (holds, corrected p = 0.002)" in s
    assert "object precision kept vs `xe` 0.00 [-0.10, 0.10] (margin -0.05; holds" in s
    assert "1 seed the verdict may be one training run's accident" in s


def test_prose_without_rows():
    empty = pd.DataFrame()
    assert prose.probe_finding_sentences(F.verdicts(pd.DataFrame(columns=list(F.COLUMNS))), empty) == [
        "No finding of the probe was tested in this run."]
    assert prose.probe_missing_sentences(empty) == ["No finding of the probe was tested in this run."]
    assert prose.probe_correction_sentences(empty) == ["No test of the probe's findings was run."]


def test_correction_sentence_counts_each_holm_family():
    rows = pd.DataFrame(f1("clip-mini") + f1("blind"))
    (s,) = prose.probe_correction_sentences(rows)
    assert "95% two-level bootstrap intervals (percentile;" in s
    assert "*F1 clip-mini* (4 tests), *F1 blind* (4 tests)" in s and f"α = {prose.ALPHA}" in s


def test_findings_alpha_is_the_books():
    assert F.ALPHA is prose.ALPHA


def test_a_system_that_did_not_raise_its_own_reward_is_not_testable():
    rows = []
    for i in range(30):
        rows += [{"system": "xe", "seed": 0, "image": f"i{i}", "score:clip-mini": 0.5, "cider_d": 1.0},
                 {"system": "clip-mini", "seed": 0, "image": f"i{i}", "score:clip-mini": 0.8, "cider_d": 0.5},
                 {"system": "uniter-mini", "seed": 0, "image": f"i{i}", "score:uniter-mini": -1.0, "cider_d": 1.0},
                 {"system": "cider-d", "seed": 0, "image": f"i{i}", "score:clip-mini": 0.5, "cider_d": 1.0 + (i % 3)}]
    caps = pd.DataFrame(rows)
    caps.loc[caps.system == "xe", "score:uniter-mini"] = -0.5  # uniter-mini's captions score lower than XE's
    checks = F.reward_check_rows(caps, seed=0, n_resamples=300).set_index("system")
    assert checks.loc["clip-mini", "raised"] == True and checks.loc["clip-mini", "value"] == pytest.approx(0.3)  # noqa: E712
    assert checks.loc["uniter-mini", "raised"] == False and checks.loc["uniter-mini", "measure"] == "score:uniter-mini"  # noqa: E712
    assert checks.loc["cider-d", "measure"] == "cider_d" and checks.loc["cider-d", "raised"] == True  # noqa: E712
    v = pd.DataFrame([{"finding": "F2", "system": s, "verdict": "reproduced", "reason": "r"} for s in
                      ("clip-mini", "uniter-mini")])
    out = F.with_reward_check(v, checks.reset_index()).set_index("system")
    assert out.loc["clip-mini", "verdict"] == "reproduced" and out.loc["clip-mini", "reward_raised"] == True  # noqa: E712
    assert out.loc["uniter-mini", "verdict"] == "not testable here"
    assert "did not raise" in out.loc["uniter-mini", "reason"] and "would have said reproduced" in out.loc["uniter-mini", "reason"]


def test_stating_fewer_relations_counts_as_neglecting_them():
    rows = []
    for i in range(40):
        for sy, stated in (("xe", 1 + i % 2), ("clip-mini", 0)):
            rows.append({"system": sy, "family": "baseline" if sy == "xe" else "dual encoder", "seed": 0,
                         "image": f"i{i}", "object_recall": 1.0, "relations_stated": float(stated),
                         "counts_stated": 1.0})
    caps = pd.DataFrame(rows)
    r = F.f1_rows(caps, None, systems=["clip-mini"], baselines=("xe",), seed=0, n_resamples=400)
    fewer = r[r.test == "fewer relations stated"].iloc[0]
    assert fewer["component"] == "global falls" and fewer["value"] == pytest.approx(-1.5)
    assert bool(fewer["supports"]) and fewer["high"] < 0
    same = r[r.test == "fewer counts stated"].iloc[0]
    assert same["value"] == 0 and not bool(same["supports"])
