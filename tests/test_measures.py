"""The Measures chapter's building blocks: captions of known order are what they claim to be, every condition
is scored in one metric call without changing the numbers, and the step statistics equal scipy's."""
import re

import numpy as np
import pytest
from scipy.stats import binomtest

from analysis import measures, registry
from analysis.data.scenes import plural
from analysis.linguistics import name_lemmas, noun_lemmas, parse
from analysis.metrics import Metric


@pytest.fixture(scope="module")
def scenes():
    return measures.scene_items(["stamp-scenes", "stamp-scenes-unseen"], smoke=False, max_items=None)


def _words(caption: str) -> set[str]:
    return set(re.findall(r"[a-z]+", caption.lower()))


def _names(graph: dict) -> set[str]:
    return {w for o in graph["objects"] for w in (o["name"], plural(o["name"]))}


def test_scene_items_have_two_object_kinds_and_a_pool(scenes):
    items, pool = scenes
    assert len(items) >= 80 and all(len(it.meta["graph"]["objects"]) == 2 for it in items)
    assert all(it.split == "test" for it in items) and len(pool) > 10


def test_ladder_rungs_are_what_they_claim(scenes):
    items, pool = scenes
    lad = measures.ladder_captions(items, pool, seed=0)
    assert list(lad) == list(measures.LADDER) and all(len(v) == len(items) for v in lad.values())
    for i, it in enumerate(items):
        g = it.meta["graph"]
        true, rel, obj, other = (lad[c][i] for c in measures.LADDER)
        assert true == it.captions[0]  # the canonical caption is the first reference
        assert rel != true and _words(rel) ^ _words(true) <= {"left", "right", "above", "below"}
        scene = name_lemmas([o["name"] for o in g["objects"]], heads_only=False)
        # the replaced object shares no noun with the scene's objects ("green apple" never replaces "red apple")
        named = lambda n, c: re.search(rf"\b({re.escape(n)}|{re.escape(plural(n))})\b", c)  # noqa: E731
        new = [n for n in pool if named(n, obj) and not named(n, true)]
        assert obj != true and new and not any(name_lemmas([n], heads_only=False) & scene for n in new), (true, obj)
        # another scene's caption names none of this scene's object nouns (multi-word names included)
        assert not set(noun_lemmas(parse([other])[0])) & scene, (true, other)
    assert lad == measures.ladder_captions(items, pool, seed=0)  # seeded
    assert lad["other image"] != measures.ladder_captions(items, pool, seed=1)["other image"]


def test_figure1_forms_follow_the_paper_shapes():
    g = {"objects": [{"name": "banana", "count": 3, "size": "big"}, {"name": "table", "count": 1, "size": "small"}],
         "relations": [{"subject": 0, "relation": "above", "object": 1}]}
    f = measures.figure1_captions(g)
    assert f["fluent"] == "three big bananas above a small table"
    assert f["broken"] == "three big bananas the small table"
    assert f["degenerate"] == "a closeup image that is a a big but a a bananas but a a table"


def test_shuffled_keeps_the_words_and_changes_the_order():
    r = np.random.default_rng(0)
    for c in ["a dog on a bench", "two small cats above a big red box", "ab cd"]:
        s = measures.shuffled(c, r)
        assert s != c and sorted(s.split()) == sorted(c.split())
    assert measures.shuffled("a a a", r) == "a a a"


class CountingMetric(Metric):
    """Per item: the candidate's word count plus the number of references; counts its calls."""

    calls = 0

    def compute_score(self, gts, res, images=None):
        CountingMetric.calls += 1
        per = np.array([len(res[k][0].split()) + len(gts[k]) for k in res], float)
        return float(per.mean()), per


def test_score_conditions_is_one_call_and_splits_by_condition():
    m = CountingMetric("count", "count", "test")
    conds = {"a": ["x y", "x"], "b": ["x y z", "w w w w"]}
    refs = [["r1"], ["r1", "r2"]]
    CountingMetric.calls = 0
    out = measures.score_conditions(m, conds, refs)
    assert CountingMetric.calls == 1
    assert out["a"].tolist() == [3, 3] and out["b"].tolist() == [4, 6]


REFS = [["a big dog on a mat", "a dog lies on a mat"], ["two cats near a box", "cats beside a box"],
        ["a red apple", "an apple that is red"]]
CONDS = {"one": ["a dog on a mat", "two cats", "an apple"], "two": ["a cat", "a box near cats", "red apple"]}


@pytest.mark.parametrize("name", ["cider-d-fast", "cider-d", "rouge-l", "bleu-4"])
def test_scoring_all_conditions_equals_a_call_per_condition(name):
    """CIDEr-D's document frequencies depend on the call's corpus (an n-gram in no reference gets idf log N),
    so it is called per condition; corpus-free metrics share one call. Either way the numbers are those of a
    call per condition."""
    m = registry.get_metric(name)
    together = measures.score_conditions(m, CONDS, REFS)
    for c, caps in CONDS.items():
        alone = measures.score_conditions(m, {c: caps}, REFS)[c]
        np.testing.assert_allclose(together[c], alone, atol=1e-9)


def test_corpus_statistics_are_declared_where_they_matter():
    """Pooling two conditions in one CIDEr-D call does change its numbers: the flag is needed."""
    from analysis.cider import CiderD

    pooled = {f"{c}|{i}": [cap] for c, caps in CONDS.items() for i, cap in enumerate(caps)}
    _, per = CiderD().compute_score({k: REFS[int(k.split("|")[1])] for k in pooled}, pooled)
    _, alone = CiderD().compute_score({str(i): r for i, r in enumerate(REFS)},
                                      {str(i): [c] for i, c in enumerate(CONDS["one"])})
    assert not np.allclose(per[:3], alone)
    assert registry.get_metric("cider-d").corpus_statistics and registry.get_metric("cider-d-fast").corpus_statistics
    assert not registry.get_metric("rouge-l").corpus_statistics


def test_step_rows_match_scipy():
    per = {"hi": np.array([3, 2, 5, 1, 4, 4, 9.0]), "lo": np.array([1, 2, 4, 2, 3, 1, 0.0])}
    (r,) = measures.step_rows(per, ("hi", "lo"))
    wins, losses, ties = 5, 1, 1
    assert r["value"] == pytest.approx((wins + 0.5 * ties) / 7) and r["ties"] == 1 and r["n"] == 7
    assert r["p"] == pytest.approx(binomtest(wins, wins + losses, 0.5).pvalue)
    ci = binomtest(6, 7).proportion_ci(method="wilson")  # 5.5 of 7 is not an integer: check the integer case
    (r2,) = measures.step_rows({"hi": np.array([2, 2, 2, 2, 2, 2, 0.0]), "lo": np.ones(7)}, ("hi", "lo"))
    assert (r2["ci_low"], r2["ci_high"]) == pytest.approx((ci.low, ci.high))


def test_full_order_counts_strictly_decreasing_items():
    per = {"a": np.array([3, 3, 1.0]), "b": np.array([2, 3, 2.0]), "c": np.array([1, 1, 3.0])}
    assert measures.full_order(per, ("a", "b", "c")) == pytest.approx(1 / 3)


def test_cards_cover_every_default_metric_and_prefix_forms():
    tab = measures.cards_table(measures.DEFAULT_METRICS)
    assert tab["measure"].tolist()[:len(measures.DEFAULT_METRICS)] == measures.DEFAULT_METRICS
    assert not tab["formula"].str.contains("not documented").any()
    # published values only with their source
    pub = tab[tab["published (verified)"] != ""]
    assert set(pub["measure"]) == {"bleu-4", "meteor", "rouge-l", "cider-d", "clip-s:clip-mini", "refclip-s:clip-mini"}
    assert pub["published (verified)"].str.contains("REFERENCE.md").all()
    assert tab.set_index("measure").loc["clip-s:clip-mini", "limits here"].count("stand-in") == 1


def test_unknown_metric_is_refused_before_any_work():
    with pytest.raises(registry.UnknownNameError, match="valid names"):
        measures.run_measures(["no-such-metric"], smoke=True)


def test_a_dataset_without_scene_graphs_is_refused():
    with pytest.raises(ValueError, match="no scene graphs"):
        measures.scene_items(["tuxpaint-stamps"], smoke=True, max_items=None)
