"""The computed sentences, on constructed rows with known verdicts (including missing baselines)."""
import numpy as np
import pandas as pd
import pytest

from analysis import prose

LABELS = {"clip-mini": "clip-mini (CLIP-style stand-in)", "uniter-mini": "uniter-mini (UNITER-style stand-in)",
          "blind": "blind (text-only baseline)", "uniter-mini+neg": "uniter-mini+neg (trained on negatives)"}
FAMILY = {"clip-mini": "dual", "uniter-mini": "single-stream", "blind": "text-only", "uniter-mini+neg": "single-stream"}


def row(analysis, model, dataset="stamp-scenes", **kw):
    base = {"analysis": analysis, "model": model, "label": LABELS[model], "family": FAMILY[model],
            "dataset": dataset, "heldout": "seen stamps, new combinations", "split": "test",
            "trained_on_perturbations": "yes" if model.endswith("+neg") else "no", "ci_low": 0.0, "ci_high": 1.0,
            "p": 0.5, "p_holm": 0.5, "test_family": "vs chance"}
    return {**base, **kw}


def retrieval(model, value, p_holm, chance=0.08, n=60, dataset="stamp-scenes"):
    return row("retrieval", model, dataset, metric="i2t_R@5", value=value, chance=chance, n=n, p_holm=p_holm,
               ci_low=value - 0.1, ci_high=value + 0.1)


def pert(model, kind, value, p_holm, dataset="stamp-scenes"):
    return row("perturbation", model, dataset, metric="accuracy", perturbation=kind, value=value, p_holm=p_holm,
               n=50, ci_low=value - 0.1, ci_high=value + 0.1)


def comp(a, b, measure, value, p_holm, family="between models", dataset="stamp-scenes"):
    return row("comparison", a, dataset, other=b, other_label=LABELS[b], measure=measure, metric="difference",
               value=value, ci_low=value - 0.05, ci_high=value + 0.05, p_holm=p_holm, test_family=family)


def frame(*rs):
    return pd.DataFrame(list(rs))


def test_retrieval_verdicts_follow_the_corrected_p():
    s = prose.retrieval_sentences(frame(retrieval("clip-mini", 0.9, 0.001), retrieval("uniter-mini", 0.12, 0.3)))
    assert len(s) == 2
    assert "clip-mini (CLIP-style stand-in)" in s[0] and "0.90 [0.80, 1.00]" in s[0] and s[0].endswith("above chance.")
    assert "uniter-mini (UNITER-style stand-in)" in s[1] and "not distinguishable from chance" in s[1]
    assert "seen stamps, new combinations" in s[0]


def test_significant_but_below_chance_is_not_called_above():
    s = prose.retrieval_sentences(frame(retrieval("clip-mini", 0.01, 0.001)))
    assert "not distinguishable from chance" in s[0]


def test_missing_text_only_baseline_is_said_not_compared_with_nan():
    rows = frame(retrieval("clip-mini", 0.9, 0.001), pert("clip-mini", "replace_object", 0.9, 0.001))
    s = prose.text_only_sentences(rows)
    assert s == ["No text-only baseline was in this run, so no accuracy below can be checked against what the "
                 "caption alone gives away."]
    assert not any("nan" in x.lower() for x in prose.bullets(s, prose.perturbation_sentences(rows)).split())


def test_text_only_baseline_sentences_name_decidable_kinds():
    rows = frame(pert("blind", "shuffle_words", 0.95, 0.001), pert("blind", "swap_relation", 0.5, 1.0),
                 pert("clip-mini", "shuffle_words", 0.9, 0.001))
    s = prose.text_only_sentences(rows)
    assert "blind (text-only baseline)" in s[0] and "chance by construction" in s[0]
    assert "`shuffle_words` (0.95)" in s[1] and "swap_relation" not in s[1] and "without ever seeing" in s[1]


def test_text_only_baseline_at_chance_everywhere():
    s = prose.text_only_sentences(frame(pert("blind", "shuffle_words", 0.55, 0.4)))
    assert "not above chance on any kind" in s[1]


def test_perturbation_sentence_splits_above_below_and_rest_and_marks_ablations():
    rows = frame(pert("clip-mini", "replace_object", 0.95, 0.001), pert("clip-mini", "swap_relation", 0.2, 0.01),
                 pert("clip-mini", "replace_count", 0.55, 0.6), pert("uniter-mini+neg", "swap_relation", 0.9, 0.001))
    clip, neg = prose.perturbation_sentences(rows)
    assert "(zero-shot: never trained on a rule-made perturbation)" in clip
    assert "above chance on `replace_object` (0.95)" in clip
    assert "below chance on `swap_relation` (0.20)" in clip and "not distinguishable from chance on the other 1" in clip
    assert "not zero-shot" in neg and "uniter-mini+neg" in neg


def test_unknown_training_data_is_not_called_zero_shot():
    rows = frame(pert("clip-mini", "replace_object", 0.95, 0.001)).assign(trained_on_perturbations=None)
    (s,) = prose.perturbation_sentences(rows)
    assert "training data unknown" in s and "(zero-shot" not in s


def test_no_scene_dataset_means_no_perturbation_sentence_but_a_reason():
    assert "skipped" in prose.perturbation_sentences(frame(retrieval("clip-mini", 0.5, 0.01)))[0]


def test_comparisons_report_who_is_ahead_where():
    rows = frame(comp("clip-mini", "uniter-mini", "replace_object", 0.3, 0.001),
                 comp("clip-mini", "uniter-mini", "swap_relation", -0.2, 0.02),
                 comp("clip-mini", "uniter-mini", "replace_count", 0.05, 0.8),
                 comp("clip-mini", "uniter-mini", "i2t_R@5", 0.4, 0.001, dataset="stamp-scenes-unseen"),
                 comp("clip-mini", "blind", "replace_count", 0.05, 0.8))
    s = prose.comparison_sentences(rows)
    assert len(s) == 2
    assert s[0].startswith("`clip-mini (CLIP-style stand-in)` vs `uniter-mini (UNITER-style stand-in)`: ")
    assert "`clip-mini (CLIP-style stand-in)` is ahead on `stamp-scenes` `replace_object` (+0.30" in s[0]
    assert "; on `stamp-scenes-unseen` `i2t_R@5` (+0.40" in s[0]
    assert "`uniter-mini (UNITER-style stand-in)` is ahead on `stamp-scenes` `swap_relation` (-0.20" in s[0]
    assert "other 1 measures" in s[0]
    assert "differ on none of the 1 measures" in s[1]


def test_kind_sentences_separate_image_evidence_from_text_priors():
    rows = frame(pert("clip-mini", "replace_object", 0.95, 0.001), pert("clip-mini", "shuffle_words", 0.9, 0.001),
                 pert("clip-mini", "swap_relation", 0.5, 1.0), pert("blind", "shuffle_words", 1.0, 0.001),
                 pert("blind", "replace_object", 0.5, 1.0), pert("uniter-mini+neg", "swap_relation", 0.9, 0.001))
    none, image, both = prose.kind_sentences(rows)
    assert none == "No zero-shot image-aware scorer is above chance on `swap_relation` on any scene set."
    assert "`replace_object`" in image and "shuffle" not in image
    assert "`shuffle_words`" in both


def test_retrieval_sentences_keep_to_the_default_scorers():
    rows = frame(retrieval("clip-mini", 0.9, 0.001), {**retrieval("uniter-mini+neg", 0.9, 0.001)})
    assert len(prose.retrieval_sentences(rows)) == 1


def test_comparisons_missing():
    assert "No paired comparison (hard negatives)" in prose.comparison_sentences(frame(
        retrieval("clip-mini", 0.5, 0.01)), "hard negatives")[0]


def test_family_sentences_skip_ablations():
    rows = frame(retrieval("clip-mini", 0.9, 0.001), pert("clip-mini", "replace_object", 0.95, 0.001),
                 pert("clip-mini", "swap_relation", 0.5, 1.0), pert("uniter-mini+neg", "swap_relation", 0.9, 0.001))
    (s,) = prose.family_sentences(rows)
    assert s.startswith("**dual**") and "R@5 above chance" in s and "uniter-mini+neg" not in s and "above chance on 1 of 2 perturbation kinds" in s


def test_correction_sentence_counts_tests_per_family():
    rows = frame(retrieval("clip-mini", 0.9, 0.001), pert("clip-mini", "replace_object", 0.95, 0.001),
                 comp("clip-mini", "uniter-mini", "replace_object", 0.3, 0.001))
    (s,) = prose.correction_sentence(rows)
    assert "*vs chance* (2 tests)" in s and "*between models* (1 test)" in s


@pytest.mark.parametrize("p,text", [(0.0004, "p < 0.001"), (0.004, "p = 0.004"), (0.04, "p = 0.04"),
                                    (np.nan, "p n/a")])
def test_fmt_p(p, text):
    assert prose.fmt_p(p) == text


def test_budget_sentence_lists_stand_ins_and_is_silent_without_budgets():
    rows = frame(retrieval("clip-mini", 0.9, 0.001), retrieval("uniter-mini", 0.5, 0.001))
    assert prose.budget_sentences(rows) == []
    rows["train_budget"] = ["1500 steps × 256", ""]
    (s,) = prose.budget_sentences(rows)
    assert "`clip-mini (CLIP-style stand-in)`: 1500 steps × 256" in s and "uniter" not in s


def card(dataset, items, words, skipped=0, caption_source="human-written", **extra):
    return [{"dataset": dataset, "metric": m, "value": v, "caption_source": caption_source, **extra}
            for m, v in (("items", items), ("caption_words_mean", words), ("skipped_images", skipped))]


def test_datacards_sentences_on_constructed_cards():
    rows = pd.DataFrame(card("a", 10, 3.0) + card("b", 5, 12.5, 2)
                        + card("s", 7, 6.0, caption_source="generated from the scene graph (5 templates)"))
    text = " ".join(prose.datacards_sentences(rows))
    assert "The 3 datasets hold 22 images in all." in text
    assert "`b` has the longest references (mean 12.5 words) and `a` the shortest (mean 3.0 words)" in text
    assert "2 image(s) could not be used" in text and "Only `s` has a known scene graph" in text
    assert "replaced by" not in text


def test_datacards_sentences_name_fallbacks_and_no_scene_sets():
    rows = pd.DataFrame(card("sample-photos", 14, 8.7, stands_in_for="tuxpaint-stamps, stamp-scenes"))
    text = " ".join(prose.datacards_sentences(rows))
    assert "replaced by `sample-photos`: stamp-scenes, tuxpaint-stamps" in text and "scene graph" not in text
    assert prose.datacards_sentences(pd.DataFrame()) == ["No dataset was loaded."]


def test_provenance_sentence_without_a_commit_or_cache():
    rows = pd.DataFrame([{"section": "package", "dataset": "numpy", "metric": "version", "value": "missing"}])
    (s,) = prose.provenance_sentences(rows)
    assert s == ("Built from commit `unknown` with 1 recorded package versions (1 missing: numpy) and 0 cache "
                 "entries verified against their manifests.")


# ----------------------------------------------------------------------------- the measures chapter
def step(measure, label, cond, value, p_holm, n=90):
    return {"analysis": "ladder", "measure": measure, "label": label, "condition": cond, "metric": "ordered",
            "value": value, "ci_low": value - 0.1, "ci_high": min(1.0, value + 0.1), "p": p_holm, "p_holm": p_holm,
            "n": n}


STEPS = ["true > relation swap", "relation swap > object swap", "object swap > other image"]


def test_ladder_sentences_name_the_metrics_that_keep_every_step_and_the_failures():
    rows = frame(*[step("cider-d", "CIDEr-D", s, 0.95, 0.001) for s in STEPS],
                 step("bleu-1", "BLEU-1", STEPS[0], 0.5, 1.0), step("bleu-1", "BLEU-1", STEPS[1], 0.9, 0.001),
                 step("bleu-1", "BLEU-1", STEPS[2], 0.9, 0.001),
                 step("sg-f1", "sg-f1 (SPICE-style stand-in)", STEPS[0], 0.3, 0.001),  # significant, but below ½
                 step("sg-f1", "sg-f1 (SPICE-style stand-in)", STEPS[1], 0.9, 0.001),
                 step("sg-f1", "sg-f1 (SPICE-style stand-in)", STEPS[2], 0.9, 0.001))
    s = prose.ladder_sentences(rows)
    assert s[0].startswith("Of 3 metrics scored on 90 scenes, `cider-d` keeps every step")
    assert "Holm-corrected over the 9 tests of every metric and step" in s[0]
    assert len(s) == 2 and "*true > relation swap* is not kept by `BLEU-1` (0.50" in s[1]
    assert "`sg-f1 (SPICE-style stand-in)` (0.30" in s[1] and "CIDEr-D" not in s[1]


def test_ladder_sentences_when_no_metric_keeps_a_step_or_none_ran():
    rows = frame(*[step("bleu-1", "BLEU-1", s, 0.55, 0.2) for s in STEPS])
    s = prose.ladder_sentences(rows)
    assert "none keeps every step" in s[0] and s[1:] == [f"No metric keeps step *{x}*." for x in STEPS]
    tied = frame(step("bleu-1", "BLEU-1", STEPS[0], 0.5, 1.0) | {"ties": 90}, step("rouge-l", "ROUGE-L", STEPS[0], 0.9, 0.01))
    assert prose.ladder_sentences(tied)[1] == "Step *true > relation swap* is not kept by `BLEU-1` (all tied)."
    assert prose.ladder_sentences(pd.DataFrame()) == ["No metric was scored on the scene-graph ladder in this run."]


def fig1(measure, label, cond, metric, value, **kw):
    return {"analysis": "figure1", "measure": measure, "label": label, "condition": cond, "metric": metric,
            "value": value, "ci_low": max(0.0, value - 0.1), "ci_high": min(1.0, value + 0.1), **kw}


def test_figure1_sentences_name_fooled_metrics_and_the_linguistic_change():
    rows = frame(fig1("score:blind", "score (blind (text-only baseline))", "degenerate > fluent", "share", 0.8,
                      p_sign=0.0004),
                 fig1("score:x", "score (x)", "degenerate > fluent", "share", 0.5),  # a coin: not named
                 fig1("cider-d", "CIDEr-D", "degenerate > fluent", "share", 0.0),
                 fig1("cider-d", "CIDEr-D", "broken > fluent", "share", 0.1),
                 fig1("perplexity", "", "fluent", "median", 120.0), fig1("perplexity", "", "degenerate", "median", 900.0),
                 fig1("grammar errors", "", "fluent", "share flagged", 0.0),
                 fig1("grammar errors", "", "degenerate", "share flagged", 1.0))
    s = prose.figure1_sentences(rows)
    assert "degenerate Figure-1 caption scores above the fluent one on more than half" in s[0]
    assert "`score (blind (text-only baseline))` (0.80 [0.70, 0.90], p < 0.001)" in s[0]
    assert "CIDEr-D" not in s[0] and "score (x)" not in s[0]
    assert s[1].startswith("Every metric scores the fluent caption above the broken one") and "`CIDEr-D`, 0.10" in s[1]
    assert s[2] == ("From the fluent to the degenerate form: median perplexity 120 → 900; share flagged by the "
                    "grammar detector 0.00 → 1.00.")  # no SLOR rows: no SLOR clause
    assert prose.figure1_sentences(pd.DataFrame()) == ["No metric scored the Figure-1 forms in this run."]


def flu(dataset, measure, cond, metric, value, n=50):
    return {"analysis": "fluency", "dataset": dataset, "measure": measure, "condition": cond, "metric": metric,
            "value": value, "ci_low": value - 0.05, "ci_high": min(1.0, value + 0.05), "n": n}


def test_fluency_grammar_and_chair_sentences():
    rows = frame(flu("tuxpaint-stamps", "perplexity", "fluent", "median", 150.0),
                 flu("tuxpaint-stamps", "perplexity", "shuffled", "median", 4000.0),
                 flu("tuxpaint-stamps", "perplexity", "shuffled worse", "share", 0.96),
                 flu("tuxpaint-stamps", "slor", "shuffled worse", "share", 0.9),
                 {"analysis": "grammar", "condition": "labelled set", "metric": "precision", "value": 0.9,
                  "ci_low": 0.8, "ci_high": 0.95, "n": 40, "dataset": "grammar-captions"},
                 {"analysis": "grammar", "condition": "labelled set", "metric": "recall", "value": 0.8,
                  "ci_low": 0.7, "ci_high": 0.9, "n": 45, "dataset": "grammar-captions"},
                 {"analysis": "grammar", "condition": "human-written captions", "metric": "share flagged", "value": 0.05,
                  "ci_low": 0.02, "ci_high": 0.1, "n": 500, "dataset": "tuxpaint-stamps"},
                 {"analysis": "chair", "condition": "true", "metric": "chair-s", "value": 0.0},
                 {"analysis": "chair", "condition": "object swap", "metric": "chair-s", "value": 1.0})
    assert prose.fluency_sentences(rows) == [
        "On `tuxpaint-stamps`, shuffling a caption's words raises its perplexity for 0.96 [0.91, 1.00] of 50 "
        "captions (median 150 → 4000) and lowers its SLOR for 0.90 [0.85, 0.95]."]
    g = prose.grammar_sentences(rows)
    assert g[0] == ("On the labelled set, the grammar detector has precision 0.90 [0.80, 0.95] (n = 40 flagged) and "
                    "recall 0.80 [0.70, 0.90] (n = 45 ungrammatical), Wilson 95% intervals.")
    assert g[1].startswith("It flags 25 of 500 human-written captions (`tuxpaint-stamps`; share 0.05 [0.02, 0.10])")
    none_flagged = rows.copy()
    none_flagged.loc[(none_flagged.metric == "precision"), ["value", "n"]] = [float("nan"), 0]
    assert "no precision (it flagged nothing) and recall 0.80" in prose.grammar_sentences(none_flagged)[0]
    assert prose.chair_sentences(rows)[0].startswith("CHAIR-s is 0.00 for the true captions (0 if CHAIR finds every "
                                                     "true object) and 1.00 for the object swaps")
    empty = pd.DataFrame()
    assert prose.fluency_sentences(empty) == ["Fluency was not measured in this run."]
    assert prose.grammar_sentences(empty) == ["The grammar detector was not validated in this run."]
    assert prose.chair_sentences(empty) == ["CHAIR was not computed on the ladder in this run."]


def test_unavailable_metrics_are_named_with_their_reason():
    rows = frame({"analysis": "unavailable", "measure": "meteor", "note": "needs Java"})
    assert prose.measures_unavailable_sentences(rows) == [
        "`meteor` was unavailable in this run (needs Java); it is left out, not counted as 0."]
    assert prose.measures_unavailable_sentences(pd.DataFrame()) == []


def test_figure1_sentence_on_the_fluency_lm_preferring_the_degenerate_form():
    rows = frame(fig1("perplexity", "perplexity", "degenerate more fluent", "share", 0.6, p_sign=0.03),
                 fig1("slor", "slor", "degenerate more fluent", "share", 0.9, p_sign=0.0001),
                 fig1("cider-d", "CIDEr-D", "degenerate > fluent", "share", 0.0))
    s = prose.figure1_sentences(rows)
    assert ("The fluency LM finds the degenerate form more fluent than the fluent caption on 0.60 [0.50, 0.70] of the "
            "scenes by perplexity and 0.90 [0.80, 1.00] by SLOR (sign tests p = 0.03 and p < 0.001).") in s
    assert not any("perplexity" in x and "scores above" in x for x in s)  # LM rows are not metric rows
