"""The Realignment findings: each verdict rule on constructed rows (every outcome, and a page that was not run)."""
import numpy as np
import pandas as pd
import pytest

from analysis import prose, realignment as R


def method_rows(change=0.10, p=0.01, setting_rows=("in-domain", "transfer")):
    rows = []
    for setting in setting_rows:
        fold = "" if setting == "in-domain" else "pooled"
        base = {"setting": setting, "fold": fold}
        rows += [{**base, "stage": "before", "method": "none", "standardize": False, "metric": "centroid_distance",
                  "value": 0.4},
                 {**base, "stage": "after", "method": "procrustes", "standardize": False,
                  "metric": "centroid_distance", "value": 0.3},
                 {**base, "stage": "change", "method": "procrustes", "standardize": False, "metric": "i2t_R@1",
                  "value": change, "ci_low": change - 0.05, "ci_high": change + 0.05, "p_holm": p},
                 {**base, "stage": "change", "method": "procrustes", "standardize": True, "metric": "i2t_R@1",
                  "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "p_holm": 0.001}]  # a z-scored map: not decisive
    return pd.DataFrame(rows)


@pytest.mark.parametrize("change,p,verdict,why", [(0.10, 0.01, "holds", "rises"),
                                                  (-0.10, 0.01, "does not hold here", "falls"),
                                                  (0.10, 0.20, "does not hold here", "no detectable change")])
def test_alignment_verdicts(change, p, verdict, why):
    v = pd.DataFrame(R.alignment_verdicts(method_rows(change, p)))
    assert list(v["setting"]) == ["in-domain", "transfer"] and set(v["verdict"]) == {verdict}
    assert why in v["reason"].iloc[0] and "centroid distance 0.400 → 0.300" in v["reason"].iloc[0]
    assert v["value"].iloc[0] == pytest.approx(change)


def test_a_page_that_was_not_run_is_not_testable_and_named():
    v = R.findings_rows()
    assert set(v["verdict"]) == {"not testable offline"}
    assert {"realign-method", "realign-speed", "realign-captions", "realign-metrics"} <= set(v["page"])
    text = " ".join(prose.realign_findings_sentences(v))
    assert ("Not run in this build: realign-bridge, realign-captions, realign-method, realign-metrics, realign-speed"
            in text)
    only_transfer = pd.DataFrame(R.alignment_verdicts(method_rows(setting_rows=("transfer",))))
    assert list(only_transfer["verdict"]) == ["not testable offline", "holds"]


def speed_table(ratios, reached, own=None):
    """Speed-page measurements in the timings file's layout: the reference-target variant, and the own-form
    variant (``own``: per-approach (ratio, reached), default the same as the reference variant)."""
    rows = []
    for targets, table in (("reference", list(zip(ratios, reached))), ("own-form", own or list(zip(ratios, reached)))):
        rows.append({"approach": "procrustes", "kind": "closed-form", "train_seconds": 0.01, "ratio": 1.0,
                     "reached_target": True, "reference": "procrustes", "targets": targets, "tolerance": 0.0})
        for (name, kind), (r, ok) in zip([("adam-linear", "gradient"), ("adam-mlp", "gradient"),
                                          ("xe-captioner", "captioner")], table):
            rows.append({"approach": name, "kind": kind, "train_seconds": 0.01 * r, "ratio": r, "reached_target": ok,
                         "reference": "procrustes", "targets": targets, "tolerance": 0.0})
    return pd.DataFrame(rows)


def test_speed_verdicts_map_the_speed_pages_outcomes():
    v = pd.DataFrame(R.speed_verdicts(speed_table([50, 200, 5000], [True, True, None])))
    assert list(v["verdict"]) == ["holds", "does not hold here"]  # the captioner makes it; the mappers do not
    assert "xe-captioner" in v["reason"].iloc[0] and "5,000×" in v["reason"].iloc[0]
    assert "quality is not matched" in v["reason"].iloc[0]
    # a mapper whose budget ran out below its target gives a lower bound: never "holds", at most inconclusive
    bound = pd.DataFrame(R.speed_verdicts(speed_table([50, 2000, 5000], [True, False, None])))
    assert list(bound["verdict"]) == ["holds", "inconclusive"] and "adam-mlp" in bound["reason"].iloc[1]
    assert bound["reason"].iloc[0].count("xe-captioner") == 1  # decided by the finished captioner, not the bound
    # the mappers are judged on the own-form variant (the plain linear map against least squares' R@1)
    own = pd.DataFrame(R.speed_verdicts(speed_table([50, 2000, 5000], [False, False, None],
                                                    own=[(3, True), (1500, True), (5000, None)])))
    assert own["verdict"].iloc[1] == "holds" and "adam-mlp" in own["reason"].iloc[1]
    assert set(pd.DataFrame(R.speed_verdicts(None))["verdict"]) == {"not testable offline"}


def caption_rows(lm=0.05, p_lm=0.01, xe=-0.5, p_xe=0.001):
    d = [{"analysis": "difference", "contrast": "recap − lm", "metric": "cider-d", "value": lm, "low": lm - .02,
          "high": lm + .02, "p_holm": p_lm},
         {"analysis": "difference", "contrast": "recap − lm", "metric": "bleu-4", "value": 0.01, "low": 0, "high": .02,
          "p_holm": 0.3},
         {"analysis": "difference", "contrast": "recap − xe", "metric": "cider-d", "value": xe, "low": xe - .1,
          "high": xe + .1, "p_holm": p_xe}]
    return pd.DataFrame(d)


def test_caption_verdicts():
    v = pd.DataFrame(R.caption_verdicts(caption_rows()))
    by = dict(zip(v["claim"], v["verdict"]))
    assert by["aligned retrieval makes better captions than unaligned retrieval"] == "holds"
    assert by["retrieval-augmented captioning matches a lightweight captioner"] == "does not hold here"
    assert "bleu-4 +0.010" in v["reason"].iloc[0]
    assert (v["verdict"] == "not testable offline").sum() == len(R.OFFLINE_CLAIMS)
    same = pd.DataFrame(R.caption_verdicts(caption_rows(lm=0.01, p_lm=0.4, xe=-0.02, p_xe=0.6)))
    assert list(same["verdict"][:2]) == ["does not hold here", "inconclusive"]  # no difference is not a match
    assert "absence of evidence" in same["reason"].iloc[1]
    no_xe = pd.DataFrame(R.caption_verdicts(caption_rows()[lambda d: d.contrast != "recap − xe"]))
    assert no_xe["verdict"].iloc[1] == "not testable offline" and "realign-captions" in no_xe["reason"].iloc[1]


def test_metric_verdicts_label_rule_made_sets_and_missing_human_data():
    pair = "aclip-s:clip-mini - clip-s:clip-mini"
    d = pd.DataFrame([
        {"run": "correlation-difference", "metric": pair, "dataset": "scene-ladder", "judgement_kind": "rule-made",
         "value": 5.0, "low": 2.0, "high": 8.0, "p_holm": 0.01},
        {"run": "correlation-difference", "metric": pair, "dataset": "stamp-match", "judgement_kind": "rule-made",
         "value": -4.0, "low": -7.0, "high": -1.0, "p_holm": 0.02},
        {"run": "correlation-difference", "metric": pair, "dataset": "flickr8k-expert", "judgement_kind": "human",
         "value": np.nan, "low": np.nan, "high": np.nan, "p_holm": np.nan,
         "note": "not available here: put Flickr8k under $STUDY_DATA/flickr8k"},
        {"run": "correlation-difference", "metric": pair, "dataset": "stamp-match", "judgement_kind": "rule-made",
         "value": np.nan, "low": np.nan, "high": np.nan, "p_holm": np.nan, "note": "not compared: not applicable"},
        {"run": "correlation", "metric": "clip-s:clip-mini", "dataset": "scene-ladder", "value": 60.0}])
    v = pd.DataFrame(R.metric_verdicts(d))
    assert list(v["verdict"]) == ["holds", "does not hold here", "not testable offline"]
    assert v["setting"].iloc[0] == ("aCLIP-S − CLIP-S (clip-mini, CLIP-style stand-in) on scene-ladder "
                                    "(rule-made judgements, not human)")
    assert v["setting"].iloc[2] == "aCLIP-S − CLIP-S (clip-mini, CLIP-style stand-in) on flickr8k-expert"
    undefined = d.iloc[:1].assign(value=np.nan, note="")
    assert R.metric_verdicts(undefined)[0]["verdict"] == "inconclusive"  # computed here, just undefined
    assert "significantly worse" in v["reason"].iloc[1] and "$STUDY_DATA" in v["reason"].iloc[2]


def test_an_unknown_verdict_is_refused():
    with pytest.raises(ValueError, match="unknown verdict"):
        R._verdict_row("c", "s", "reproduced", "r", page="p")


@pytest.mark.parametrize("bridge, verdict", [("realignment changes what the captioner learns", "holds"),
                                             ("no detectable change", "does not hold here"),
                                             ("not testable here", "inconclusive")])
def test_bridge_verdicts_map_the_bridge_pages_verdict(bridge, verdict):
    rows = pd.DataFrame([{"analysis": "summary", "system": "xe", "value": 1.0},
                         {"analysis": "verdict", "system": "aclip-s:clip-mini", "baseline": "clip-s:clip-mini",
                          "verdict": bridge, "reason": "because", "value": 2.0}])
    (row,) = R.bridge_verdicts(rows)
    assert row["verdict"] == verdict and row["reason"] == f"{bridge}: because" and row["page"] == "realign-bridge"
    assert row["setting"] == "aclip-s:clip-mini vs clip-s:clip-mini" and row["value"] == 2.0
    assert "not a ReCap claim" not in row["claim"] and "bridge" in row["source_of_claim"]


def test_a_missing_bridge_page_is_named():
    for rows in (None, pd.DataFrame({"analysis": ["summary"], "value": [1.0]})):
        (row,) = R.bridge_verdicts(rows)
        assert row["verdict"] == "not testable offline" and "realign-bridge" in row["reason"]
