"""The bridge (analysis.bridge): paired differences aligned − raw with Holm, identical-caption shares with Wilson
intervals, the verdict and its sentences, on constructed tables with known answers (no model is trained here;
the page itself runs in the notebook smoke tests)."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import bridge, prose
from analysis.stats import holm

A, B = "aclip-s:clip-mini", "clip-s:clip-mini"


def table(rng, *, n_images=40, seeds=(0, 1), shift=1.0):
    """Systems ``A`` and ``B`` on the same images: ``length`` of ``A`` is ``B``'s plus ``shift`` exactly;
    ``slor`` is the same noise for both (difference 0); ``cider_d`` independent noise around the same mean."""
    base_len = rng.integers(5, 12, n_images).astype(float)
    slor = rng.normal(0, 1, n_images)
    parts = []
    for name, add in ((A, shift), (B, 0.0)):
        for sd in seeds:
            parts.append(pd.DataFrame({"system": name, "seed": sd, "image": [f"i{i:02d}" for i in range(n_images)],
                                       "caption": [f"cap {i} {name if i % 4 == 0 else ''}" for i in range(n_images)],
                                       "length": base_len + add, "slor": slor,
                                       "cider_d": rng.normal(1.0, 0.3, n_images)}))
    return pd.concat(parts, ignore_index=True)


MEASURES = (("length", "mean", "words per caption"), ("slor", "mean", "SLOR"), ("cider_d", "mean", "CIDEr-D"),
            ("sg_f1", "mean", "sg-f1"))


def test_difference_rows_find_the_known_shift_and_correct_with_holm():
    t = table(np.random.default_rng(0))
    d = bridge.difference_rows(t, A, B, seed=0, n_boot=400, measures=MEASURES).set_index("measure")
    assert d.loc["length", "value"] == pytest.approx(1.0) and d.loc["length", "low"] == pytest.approx(1.0)
    assert d.loc["length", "high"] == pytest.approx(1.0) and d.loc["length", "significant"]
    assert d.loc["slor", "value"] == pytest.approx(0.0) and not d.loc["slor", "significant"]
    assert d.loc["sg_f1", "status"] == "missing column" and np.isnan(d.loc["sg_f1", "p_holm"])
    ok = d[d.status == "ok"]
    np.testing.assert_allclose(ok["p_holm"], holm(ok["p"].to_numpy()))  # Holm over the measures that ran only
    assert (d["test_family"] == f"bridge: {A} − {B}").all()
    assert d.loc["length", "seeds"] == 2 and d.loc["length", "n_images"] == 40


def test_difference_rows_name_a_missing_system():
    t = table(np.random.default_rng(1))
    d = bridge.difference_rows(t[t.system == A], A, B, seed=0, n_boot=200, measures=MEASURES[:1])
    assert d["status"].tolist() == ["missing system"]
    assert bridge.bridge_verdict(d)["verdict"] == "not testable here"


def test_identical_rows_count_matches_with_wilson_intervals():
    t = table(np.random.default_rng(2), n_images=40)
    same = bridge.identical_rows(t, A, B).set_index("seed")
    # captions differ on every 4th image (0, 4, ...): 30 of 40 equal per seed, 60 of 80 pooled
    assert same.loc[0, "value"] == pytest.approx(0.75) and same.loc[-1, "n"] == 80
    ci = stats.binomtest(60, 80).proportion_ci(method="wilson")
    assert same.loc[-1, "low"] == pytest.approx(ci.low) and same.loc[-1, "high"] == pytest.approx(ci.high)


def test_verdict_changed_unchanged_and_not_raised():
    t = table(np.random.default_rng(3))
    d = bridge.difference_rows(t, A, B, seed=0, n_boot=400, measures=MEASURES)
    v = bridge.bridge_verdict(d)
    assert v["verdict"] == "realignment changes what the captioner learns" and v["changed"] == ["length"]
    assert "words per caption +1 [+1, +1]" in v["reason"] and v["tested"] == 3
    d0 = bridge.difference_rows(table(np.random.default_rng(3), shift=0.0), A, B, seed=0, n_boot=400,
                                measures=MEASURES[:2])
    assert bridge.bridge_verdict(d0)["verdict"] == "no detectable change"
    checks = pd.DataFrame([{"system": A, "measure": f"score:{A}", "value": -0.01, "low": -0.03, "high": 0.01,
                            "raised": False}, {"system": B, "measure": f"score:{B}", "value": 0.05, "low": 0.02,
                                               "high": 0.08, "raised": True}])
    v = bridge.bridge_verdict(d, checks)
    assert v["verdict"] == "not testable here" and f"`{A}`" in v["reason"] and f"`{B}`" not in v["reason"]
    assert "would say realignment changes what the captioner learns" in v["reason"] and v["changed"] == ["length"]


def test_guided_summary_shares_and_means():
    sw = pd.DataFrame({"reward": [A, A, B, B] * 2, "weight": [0.0] * 4 + [0.2] * 4, "image": [0, 1] * 4,
                       "caption": ["a cat", "a dog", "a cat", "a bird", "x", "y", "x", "y"],
                       "length": [2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]})
    g = bridge.guided_summary(sw, B, A)
    same = g[g.measure == "identical captions"].set_index("weight")["value"]
    assert same.to_dict() == {0.0: 0.5, 0.2: 1.0}
    assert set(g.loc[g.measure == "length", "value"]) == {2.0, 1.0}


def _rows(with_verdict=True, both=True):
    t = table(np.random.default_rng(4))
    d = bridge.difference_rows(t, A, B, seed=0, n_boot=200, measures=MEASURES[:2])
    rows = [d, bridge.identical_rows(t, A, B)]
    if with_verdict:
        v = bridge.bridge_verdict(d)
        rows.append(pd.DataFrame([{"analysis": "verdict", "system": A, "baseline": B, "verdict": v["verdict"],
                                   "reason": v["reason"], "seed": 0}]))
    f = []
    for sy in ([A, B] if both else [A]):
        f.append({"analysis": "finding", "finding": "F2", "test": "SLOR lower", "component": "fluency",
                  "measure": "slor", "statistic": "mean", "system": sy, "family": "dual encoder", "scorer": sy,
                  "baseline": "xe", "value": -0.5, "low": -0.8, "high": -0.2, "null": 0.0, "p": 0.001,
                  "p_holm": 0.001, "test_family": f"F2 {sy}", "n": 40, "n_images": 40, "seeds": 2,
                  "seeds_baseline": 1, "direction_expected": "<", "supports": True, "status": "ok", "note": "",
                  "interval": "bootstrap", "confidence": 0.95, "seed": 0})
    rows.append(pd.DataFrame(f))
    return pd.concat(rows, ignore_index=True)


def test_sentences_state_the_verdict_and_the_shares():
    s = prose.bridge_sentences(_rows())
    assert s[0].startswith("Does realigning") and "**realignment changes what the captioner learns**" in s[0]
    assert any("same caption for 75%" in x and "160" not in x for x in s)
    assert not any("not tested" in x for x in s)


def test_sentences_name_what_is_missing():
    s = prose.bridge_sentences(_rows(with_verdict=False, both=False))
    assert s[0] == "No bridge verdict was computed in this run."
    assert any(x.startswith("F2: only one system was tested") for x in s)
    empty = prose.bridge_sentences(pd.DataFrame({"analysis": ["summary"], "seed": [0]}))
    assert "The findings F1–F3 were not tested in this run." in empty
