"""The probe's orchestration (analysis.probe) on constructed tables, and its computed sentences (analysis.prose),
including the cases where a baseline or a system is missing. The pages themselves run in the smoke book
(tests/test_notebooks.py)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import probe, prose


def table(rows):
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- systems and runs
def test_every_probe_system_names_a_buildable_reward_and_a_reward_page():
    from analysis.captioning.rewards import CIDER_NAMES
    from analysis.registry import SCORERS

    for s in probe.SYSTEMS.values():
        base = s.mix or s.reward
        assert base in CIDER_NAMES or SCORERS.entry(base)
        assert s in probe.systems_of_page(s.page)
    assert {s.name for s in probe.SYSTEMS.values() if len(s.seeds) >= 3} >= {"cider-d", "clip-mini"}
    with pytest.raises(ValueError, match="reward pages are"):
        probe.systems_of_page("no-such-reward")


def test_the_registry_has_one_reward_page_per_probe_page():
    from analysis.registry import NOTEBOOKS

    fixed = {e.meta["parameters"]["reward"] for e in NOTEBOOKS._entries.values()
             if e.meta.get("variant_of") == "probe"}
    assert fixed == set(probe.PAGES)


def test_runs_give_references_and_xe_one_seed_and_smoke_fewer_seeds():
    full = probe.runs(["references", "xe", "cider-d", "clip-mini", "blind"], smoke=False)
    assert full == [("references", 0), ("xe", 0), ("cider-d", 0), ("cider-d", 1), ("cider-d", 2),
                    ("clip-mini", 0), ("clip-mini", 1), ("clip-mini", 2), ("blind", 0)]
    smoke = probe.runs(["cider-d", "clip-mini"], smoke=True)
    assert smoke == [("cider-d", 0), ("cider-d", 1), ("clip-mini", 0)]


def test_a_reward_outside_the_systems_gets_its_family_from_the_scorer_registry():
    s = probe.system_for("lxmert-mini+neg")
    assert (s.family, s.seeds, s.reward) == ("two-stream", (0,), "lxmert-mini+neg")
    m = probe.system_for("mix:uniter-mini")
    assert (m.family, m.mix) == ("mix", "uniter-mini")
    assert probe.system_for("clip-mini") is probe.SYSTEMS["clip-mini"]
    assert probe.system_for("uniter-mini", "probability") is probe.SYSTEMS["uniter-mini/probability"]


def test_labels_say_stand_in_and_never_name_the_published_model_alone():
    assert "CLIP-style stand-in" in probe.label_of("clip-mini")
    assert "σ(ITM logit)" in probe.label_of("uniter-mini/probability")
    assert "UNITER-style stand-in" in probe.label_of("uniter-mini/probability")
    assert "text-only" in probe.label_of("blind")


def test_balanced_lam_equalises_the_spread_of_the_two_terms():
    r = np.random.default_rng(0)
    cider, score = r.normal(0, 2.0, 500), r.normal(0, 0.1, 500)
    lam = probe.balanced_lam(cider, score)
    assert math.isclose(lam * np.std(cider), (1 - lam) * np.std(score), rel_tol=1e-12)
    with pytest.raises(ValueError, match="constant"):
        probe.balanced_lam(np.ones(3), np.ones(3))


def test_eval_refs_hold_out_the_first_reference_only_where_there_are_several():
    class T:
        refs = [["r1", "r2", "r3"], ["only"]]
    assert probe.eval_refs(T) == [["r2", "r3"], ["only"]]


def test_example_images_are_half_scenes_and_the_same_for_a_seed():
    class T:
        graphs = [None] * 10 + [{"objects": []}] * 10
    a, b = probe.example_images(T, 6, 0), probe.example_images(T, 6, 0)
    assert a == b and len(a) == 6 and sum(i >= 10 for i in a) == 3 and a == sorted(a)


# ----------------------------------------------------------------------------- tables
def captions(rows_per_system: dict[str, list[float]], measure="m", seeds=None):
    out = []
    for sy, vals in rows_per_system.items():
        for sd in (seeds or {}).get(sy, [0]):
            for i, v in enumerate(vals):
                out.append({"system": sy, "seed": sd, "image": f"i{i}", "caption": f"{sy} {i}",
                            measure: v + sd})
    return table(out)


def test_seed_rows_give_each_seed_mean_and_the_across_seed_sd():
    t = captions({"a": [1.0, 3.0], "b": [5.0, 5.0]}, seeds={"a": [0, 1, 2]})
    r = probe.seed_rows(t, ["m"])
    per = r[(r.system == "a") & (r.seed >= 0)].set_index("seed")["value"]
    assert per.to_dict() == {0: 2.0, 1: 3.0, 2: 4.0}
    summary = r[(r.system == "a") & (r.seed == -1)].iloc[0]
    assert summary["value"] == 3.0 and summary["sd"] == 1.0 and summary["n"] == 3
    assert "b" not in set(r.system)  # one seed: no variance to show


def test_cross_matrix_and_standardised_columns():
    t = table([{"system": s, "score:x": v, "score:y": w} for s, v, w in
               (("xe", 1.0, 10.0), ("xe", 3.0, 10.0), ("a", 4.0, 30.0), ("b", 0.0, 20.0))])
    m = probe.cross_matrix(t, ["x", "y"])
    assert m.loc["xe", "x"] == 2.0 and m.loc["a", "y"] == 30.0
    z = probe.standardise_columns(m)
    sd_x = np.std([2.0, 4.0, 0.0])
    assert z.loc["xe"].tolist() == [0.0, 0.0] and math.isclose(z.loc["a", "x"], 2.0 / sd_x)


def test_grounding_rows_pool_over_stated_items_with_wilson_intervals():
    from analysis.stats import wilson_interval

    base = {"system": "a", "seed": 0, "object_recall": 1.0, "n_true_mentioned": 1, "n_mentioned": 1, "n_recalled": 1,
            "n_objects": 2, "counts_correct": 0, "counts_stated": 0, "sizes_correct": 0, "sizes_stated": 0,
            "chair_hallucinated": 0, "chair_mentions": 1}
    t = table([{**base, "relations_correct": 1, "relations_stated": 1},
               {**base, "relations_correct": 0, "relations_stated": 3, "chair_hallucinated": 1, "chair_mentions": 2},
               {**base, "object_recall": np.nan, "relations_correct": 9, "relations_stated": 9}])  # no graph: skipped
    g = probe.grounding_rows(t, ["a"]).set_index("measure")
    assert g.loc["relation correct", "value"] == 0.25 and g.loc["relation correct", "n"] == 4
    assert (g.loc["relation correct", "low"], g.loc["relation correct", "high"]) == wilson_interval(1, 4)
    assert g.loc["CHAIR-i", "value"] == 1 / 3 and g.loc["CHAIR-s", "value"] == 0.5
    assert math.isnan(g.loc["count correct", "value"])  # nothing stated: NaN, never 0


def test_summary_rows_match_the_plain_mean_and_are_wide_as_text():
    t = captions({"xe": [1.0, 2.0, 3.0, 6.0]})
    r = probe.summary_rows(t, ["xe", "missing"], seed=0, n_boot=200, measures=(("m", "M", "mean"),))
    assert list(r.system) == ["xe"] and r["value"].iloc[0] == 3.0
    assert r["low"].iloc[0] <= 3.0 <= r["high"].iloc[0]
    w = probe.summary_wide(r)
    assert w.loc["M", "xe"].startswith("3.00 [") and w.loc["M", "xe"].endswith("(n = 4)")


def test_a_share_of_zero_gets_the_wilson_interval_not_a_degenerate_one():
    from analysis.stats import wilson_interval

    t = captions({"refs": [0.0] * 30}, measure="grammar_error")
    r = probe.summary_rows(t, ["refs"], seed=0, n_boot=200, measures=(("grammar_error", "flagged", "mean"),)).iloc[0]
    assert r["value"] == 0.0 and (r["low"], r["high"]) == (0.0, wilson_interval(0, 30)[1]) and r["high"] > 0.05
    assert r["interval"] == "bootstrap ∪ Wilson"


def test_output_comparison_counts_identical_captions_on_the_same_images():
    t = table([{"system": "a", "seed": 0, "image": "i1", "caption": "a dog"},
               {"system": "a", "seed": 0, "image": "i2", "caption": "a cat"},
               {"system": "b", "seed": 0, "image": "i2", "caption": "a cat"},
               {"system": "b", "seed": 0, "image": "i1", "caption": "two dogs"}])
    assert probe.output_comparison(t, "a", "b")["identical_share"] == 0.5


def test_finalise_adds_the_provenance_contract():
    r = probe.finalise(table([{"system": "clip-mini", "measure": "cider_d", "value": 1.0, "analysis": "summary"},
                              {"system": "references", "measure": "cider_d", "value": 2.0, "analysis": "summary"},
                              {"system": "clip-mini", "measure": "reward_mean", "value": 0.1,
                               "analysis": "training curve", "seed": 2}]), smoke=True, seed=0)
    assert list(r.model) == ["captioner:clip-mini", "references", "captioner:clip-mini"]
    assert list(r.source) == ["embedded", "none", "embedded"]
    assert list(r.split) == ["test", "test", "train"] and list(r.seed) == [0, 0, 2] and r.smoke.all()


# ----------------------------------------------------------------------------- sentences
def summary(system, measure, value, low=None, high=None):
    return {"analysis": "summary", "system": system, "measure": measure, "value": value,
            "low": value - 0.1 if low is None else low, "high": value + 0.1 if high is None else high}


def test_method_sentences_with_and_without_the_xe_rows():
    rows = table([{"analysis": "captioner", "system": "xe", "measure": "n_parameters", "value": 2_680_000},
                  {"analysis": "captioner", "system": "xe", "measure": "vocab_size", "value": 874},
                  {"analysis": "data", "system": "", "measure": "train images", "value": 916},
                  {"analysis": "data", "system": "", "measure": "test images", "value": 119},
                  {"analysis": "data", "system": "", "measure": "test scenes", "value": 66},
                  summary("xe", "cider_d", 1.0), summary("xe (stamp scenes)", "cider_d", 1.5),
                  summary("references (stamp scenes)", "cider_d", 3.5)])
    text = " ".join(prose.probe_method_sentences(rows))
    assert "2.68 M parameters" in text and "874 words" in text and "119 held-out test images, 66 of them" in text
    assert "CIDEr-D 1.00 [0.90, 1.10]" in text and "it reaches 1.50" in text and "other four the same way reaches 3.50" in text
    assert "No like-for-like" in " ".join(prose.probe_method_sentences(rows[rows.system != "references (stamp scenes)"]))
    assert "SCST runs on" not in text  # no SCST-images row: no sentence about them
    scst_rows = pd.concat([rows, table([{"analysis": "data", "system": "", "measure": "SCST images", "value": 742}])])
    assert "SCST runs on 742 other images" in " ".join(prose.probe_method_sentences(scst_rows))
    missing = " ".join(prose.probe_method_sentences(rows[rows.system != "xe"]))
    assert "No XE summary" in missing
    few = rows.assign(n=[np.nan] * 5 + [1, 40, 40])
    assert "CIDEr-D 1.00 [0.90, 1.10] (from only 1 caption)" in " ".join(prose.probe_method_sentences(few))


def test_reward_sentences_compare_with_both_baselines_and_name_a_missing_one():
    rows = table([summary("clip-mini", "cider_d", 0.8), summary("xe", "cider_d", 1.0),
                  summary("cider-d", "cider_d", 1.2), summary("clip-mini", "slor", -1.0),
                  {"analysis": "patterns", "system": "clip-mini", "measure": "template_entropy", "value": 2.0},
                  {"analysis": "patterns", "system": "clip-mini", "measure": "distinct_captions", "value": 0.5}]
                 + [{"analysis": "training curve", "system": "clip-mini", "measure": "reward_mean", "seed": 0,
                     "step": s, "value": v} for s, v in enumerate([0.1] * 4 + [0.3] * 4)])
    text = " ".join(prose.probe_reward_sentences(rows, ["clip-mini"]))
    assert "CIDEr-D 0.80 [0.70, 0.90] (xe 1.00 [0.90, 1.10]; cider-d 1.20 [1.10, 1.30])" in text
    assert "2.00 bits" in text and "50%" in text and "from 0.10 (first 2 steps) to 0.30 (last 2)" in text
    no_xe = " ".join(prose.probe_reward_sentences(rows[rows.system != "xe"], ["clip-mini"]))
    assert "baseline xe is missing" in no_xe and "(cider-d 1.20" in no_xe
    assert "No summary of `other`" in " ".join(prose.probe_reward_sentences(rows, ["other"]))


def test_reward_sentences_report_whether_itm_outputs_changed_the_captions():
    rows = table([{"analysis": "itm output", "system": "u/probability", "measure": "identical captions",
                   "value": 0.25, "n": 8}])
    assert "same caption for 25% of the 8 test images" in prose.probe_reward_sentences(rows, [])[0]
    assert "changed the captions" in prose.probe_reward_sentences(rows, [])[0]


def test_cross_sentences_name_the_favourite_and_the_own_rank():
    rows = table([{"analysis": "cross", "scorer": "x", "system": s, "value": v, "low": v - 1, "high": v + 1}
                  for s, v in (("xe", 1.0), ("a", 3.0), ("references", 9.0))]
                 + [{"analysis": "own reward", "scorer": "x", "system": "a", "value": 2.0, "n": 5}])
    text = " ".join(prose.probe_cross_sentences(rows))
    assert "`x` rates the captions of `a` highest" in text and "ranks the one trained on it 2nd" in text
    assert prose.probe_cross_sentences(rows.iloc[:0]) == ["No cross-scoring was computed in this run."]


def test_decoding_sentences_compare_the_smallest_and_largest_weight():
    sw = table([{"scorer": "x", "prior": "xe", "weight": w, "score": s, "prior_logprob": lp, "tokens": 2,
                 "visual_words": vw} for w, s, lp, vw in ((0.0, 0.9, -8.0, 3), (2.0, 0.5, -2.0, 1))])
    text = prose.probe_decoding_sentences(sw)[0]
    assert "from 0 to 2" in text and "from 0.90 to 0.50" in text and "from -4.00 to -1.00" in text
    assert prose.probe_decoding_sentences(sw.iloc[:0]) == ["No reward-guided decoding was run."]


def test_the_human_evaluation_sheet_hides_systems_keeps_the_key_apart_and_skips_the_examples(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("STUDY_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))
    ids = [f"img{i}" for i in range(10)]
    s = SimpleNamespace(test=SimpleNamespace(ids=ids))
    t = table([{"system": sy, "seed": 0, "image": i, "caption": f"{word} {i}"} for sy, word in (("xe", "a dog"),
               ("clip-mini", "two cats")) for i in ids])
    sheet, key = probe.human_eval_sheet(s, t, ["xe", "clip-mini"], 4, seed=0, exclude=["img0", "img1"])
    assert len(sheet) == 8 and not set(sheet["image"]) & {"img0", "img1"}
    text = (tmp_path / "results" / "probe-human-eval" / "sheet.csv").read_text()
    assert "clip-mini" not in text and "xe" not in text  # no system names, only codes
    assert key.is_file() and tmp_path / "cache" in key.parents and tmp_path / "results" not in key.parents
    k = pd.read_csv(key)
    assert set(k["system"]) == {"xe", "clip-mini"}


def test_measure_rows_on_the_smoke_split_score_references_like_systems_where_they_can():
    """Integration on the smoke split: the references line has no reference-based metric on a stamp (its one
    description is its only reference) but has every reference-free measure; the cross-scoring column equals the
    scorer's own score() on the same images (fp16 feature cache: within 5e-3)."""
    from analysis.registry import build_scorer

    s = probe.setup(smoke=True)
    refs = probe.measure_rows(s, "references", 0, probe.system_captions(s, "references"),
                              metrics=["cider-d-fast", "clip-s:clip-mini"])
    stamp = refs["dataset"] == "tuxpaint-stamps"
    assert stamp.any() and (~stamp).any()
    assert refs.loc[stamp, "cider_d"].isna().all() and refs.loc[~stamp, "cider_d"].notna().all()
    assert refs["clip_s"].notna().all() and refs["score:clip-mini"].notna().all()
    assert refs.loc[stamp, "object_recall"].isna().all() and (refs.loc[~stamp, "object_precision"] == 1.0).all()
    xe = probe.measure_rows(s, "xe", 0, probe.system_captions(s, "xe"), metrics=["cider-d-fast"])
    assert xe["cider_d"].notna().all()  # a system is scored on every image
    scorer = build_scorer("uniter-mini", smoke=True)
    images = [probe._image(p) for p in s.test.paths[:6]]
    direct = scorer.score(images, list(xe["caption"][:6]))
    assert np.allclose(xe["score:uniter-mini"][:6], direct, atol=5e-3)


def test_other_pages_systems_are_known_to_the_tables_but_not_probe_runs():
    """A page for another reward (or the Realignment bridge) registers its systems with register_system: the tables
    can name them, the probe's own runs (SYSTEMS, all_systems) stay as they are, and a clash is refused."""
    from analysis import bridge

    before = list(probe.all_systems(False))
    (sy,) = probe.page_systems("lxmert-mini+neg")
    raw, aligned = bridge.bridge_systems("clip-mini")
    assert probe.known_system("lxmert-mini+neg") is sy and probe.known_system(aligned.name) is aligned
    assert sy.name not in probe.SYSTEMS and aligned.name not in probe.SYSTEMS
    assert probe.all_systems(False) == before
    assert probe.runs([raw.name, aligned.name], True) == [(raw.name, 0), (aligned.name, 0)]
    assert "aCLIP-S" in probe.label_of(aligned.name) and "stand-in" in probe.label_of(aligned.name)
    assert probe.register_system(raw) is raw  # the same system again is fine
    with pytest.raises(ValueError, match="already registered"):
        probe.register_system(probe.System(raw.name, "clip-mini", "dual encoder", "x"))
    with pytest.raises(KeyError, match="register_system"):
        probe.runs(["no-such-system"], True)
