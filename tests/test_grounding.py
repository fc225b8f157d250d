"""Grounding against known scene graphs and the F1/F3 edits: hand-written graphs and captions, every expected
value counted by hand (comments say how), never computed by the code under test."""
import doctest
import math

import numpy as np
import pytest

from analysis import grounding as gr
from analysis.runtime import rng

# two big apples to the left of one small zebra
G = {"objects": [{"name": "apple", "count": 2, "size": "big"}, {"name": "zebra", "count": 1, "size": "small"}],
     "relations": [{"subject": "apple", "relation": "left of", "object": "zebra"},
                   {"subject": "zebra", "relation": "right of", "object": "apple"}]}
# one small teddy bear
T = {"objects": [{"name": "teddy bear", "count": 1, "size": "small"}], "relations": []}
OBJECTS = ["apple", "zebra", "cat", "car", "teddy bear"]  # the names that can occur ("dog" cannot)

CAPTIONS = ["two big apples to the left of a small zebra",  # all true
            "a zebra to the left of three cats",            # cat hallucinated; its relation and count not stated
            "a small zebra to the left of two apples",      # the relation the wrong way round
            "a picture of one apple",                        # count wrong, zebra not recalled
            "a big car and a dog",                           # car hallucinated, dog outside the vocabulary
            "a small teddy bear"]                            # head "bear"
GRAPHS = [G, G, G, G, G, T]
NAN = math.nan
# caption -> (mentioned, hallucinated, precision, recall, (count stated, correct), (size ...), (relation ...))
HAND = [(["apple", "zebra"], [], 1.0, 1.0, (2, 2), (2, 2), (1, 1)),
        (["zebra", "cat"], ["cat"], 0.5, 0.5, (1, 1), (0, 0), (0, 0)),
        (["zebra", "apple"], [], 1.0, 1.0, (2, 2), (1, 1), (1, 0)),
        (["apple"], [], 1.0, 0.5, (1, 0), (0, 0), (0, 0)),
        (["car"], ["car"], 0.0, 0.0, (0, 0), (0, 0), (0, 0)),
        (["bear"], [], 1.0, 1.0, (1, 1), (1, 1), (0, 0))]


@pytest.fixture(scope="module")
def table():
    return gr.grounding_table(CAPTIONS, GRAPHS, OBJECTS)


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) if isinstance(b, float) and math.isnan(b) else a == pytest.approx(b)


@pytest.mark.parametrize("i", range(len(CAPTIONS)))
def test_table_matches_the_hand_count(table, i):
    row = table.iloc[i]
    mentioned, halluc, p, r, counts, sizes, rels = HAND[i]
    assert list(row["mentioned"]) == mentioned and list(row["hallucinated"]) == halluc
    assert row["object_precision"] == pytest.approx(p) and row["object_recall"] == pytest.approx(r)
    for x, (stated, correct) in zip(("count", "size", "relation"), (counts, sizes, rels)):
        assert (row[f"{x}s_stated"], row[f"{x}s_correct"]) == (stated, correct), x
        # not stated is NaN, never 0
        assert same(row[f"{x}_correct"], correct / stated if stated else NAN), x


def test_nothing_mentioned_is_nan_precision():
    row = gr.grounding_table(["some grass"], [G], OBJECTS).iloc[0]
    assert math.isnan(row["object_precision"]) and row["object_recall"] == 0.0 and row["n_mentioned"] == 0


def test_summary_pools_stated_items(table):
    s = gr.summarise_grounding(table)
    # by hand from HAND: true distinct mentions 2+1+2+1+0+1 = 7 of 2+2+2+1+1+1 = 9; recalled kinds 7 of 2*5+1 = 11;
    # counts 2+1+2+0+0+1 = 6 of 7; sizes 4 of 4; relations 1 of 2; hallucinated mentions 2 of 9; captions 2 of 6
    expected = {"object_precision": (7, 9), "object_recall": (7, 11), "count_correct": (6, 7),
                "size_correct": (4, 4), "relation_correct": (1, 2), "chair_i": (2, 9), "chair_s": (2, 6)}
    from scipy.stats import binomtest

    for key, (k, n) in expected.items():
        assert (s[key]["successes"], s[key]["n"]) == (k, n), key
        assert s[key]["value"] == pytest.approx(k / n)
        ci = binomtest(k, n).proportion_ci(method="wilson")  # an independent Wilson interval
        assert (s[key]["low"], s[key]["high"]) == pytest.approx((ci.low, ci.high), abs=1e-9), key
    assert s["captions"] == 6


def test_chair_agrees_with_linguistics_chair(table):
    from analysis.linguistics import chair

    s = gr.summarise_grounding(table)
    ref = chair(CAPTIONS, [[o["name"] for o in g["objects"]] for g in GRAPHS], OBJECTS)
    assert s["chair_i"]["value"] == pytest.approx(ref["chair_i"]) and s["chair_s"]["value"] == pytest.approx(
        ref["chair_s"])
    assert (s["chair_i"]["n"], s["chair_i"]["successes"]) == (ref["mentions"], ref["hallucinated"])


def test_nothing_stated_gives_nan_not_zero_and_no_graph_is_left_out():
    t = gr.grounding_table(["a dog", "an apple"], [G, None], OBJECTS)
    s = gr.summarise_grounding(t)
    assert s["captions"] == 1 and s["captions_without_graph"] == 1
    assert s["relation_correct"]["n"] == 0 and math.isnan(s["relation_correct"]["value"])
    assert math.isnan(s["object_precision"]["value"]) and math.isnan(s["chair_i"]["value"])
    assert s["object_recall"]["value"] == 0.0  # 0 of 2 scene kinds named: a real 0


def test_an_empty_corpus_states_nothing():
    s = gr.summarise_grounding(gr.grounding_table([], []))
    assert s["captions"] == 0 and s["count_correct"]["n"] == 0 and math.isnan(s["count_correct"]["value"])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 captions but 1 scene graphs"):
        gr.grounding_table(["a", "b"], [G])


# ----------------------------------------------------------------------------- F1 edits
C0 = CAPTIONS[0]
POOL = ["apple", "red apple", "cat"]  # "red apple" shares "apple" with the scene: only "cat" may replace


def outcomes(fn, caption, graph, pool=POOL, seeds=range(16)):
    return {fn(caption, graph, pool, rng(s)) for s in seeds}


def test_object_edit_replaces_a_true_object_with_a_noun_disjoint_absent_one():
    assert outcomes(gr.object_edit, C0, G) == {"two big cats to the left of a small zebra",
                                               "two big apples to the left of a small cat"}
    assert outcomes(gr.object_edit, "an apple", G) == {"a cat"}                 # the article follows the noun
    assert outcomes(gr.object_edit, "A small teddy bear.", T, ["owl"]) == {"A small owl."}  # the whole name
    assert outcomes(gr.object_edit, "a big car and a dog", G) == {None}         # no true object
    with pytest.raises(ValueError, match="pass a larger pool"):
        gr.object_edit(C0, G, ["apple", "red apple"], rng(0))


def test_relation_edit_swaps_a_true_relation_only():
    assert outcomes(gr.relation_edit, C0, G) == {"two big apples to the right of a small zebra"}
    below = {**G, "relations": [{"subject": "zebra", "relation": "below", "object": "apple"}]}
    assert gr.relation_edit("a zebra below two apples", below, [], rng(0)) == "a zebra above two apples"
    assert gr.relation_edit("two apples above a zebra", below, [], rng(0)) == "two apples below a zebra"
    assert gr.relation_edit(CAPTIONS[2], G, [], rng(0)) is None  # stated the wrong way round
    assert gr.relation_edit(CAPTIONS[1], G, [], rng(0)) is None  # relation to a hallucinated cat


def test_count_edit_changes_a_correct_count_with_agreement():
    assert outcomes(gr.count_edit, C0, G) == {"a big apple to the left of a small zebra",
                                              "three big apples to the left of a small zebra",
                                              "two big apples to the left of two small zebras",
                                              "two big apples to the left of three small zebras"}
    A = {"objects": [{"name": "apple", "count": 2, "size": "small"}], "relations": []}
    assert outcomes(gr.count_edit, "there are two apples", A) == {"there is an apple", "there are three apples"}
    assert gr.count_edit(CAPTIONS[3], G, POOL, rng(0)) is None  # "one apple": the count is already wrong


def test_size_edit_flips_a_correct_size():
    assert outcomes(gr.size_edit, C0, G) == {"two small apples to the left of a small zebra",
                                             "two big apples to the left of a big zebra"}
    assert gr.size_edit("two small apples", G, POOL, rng(0)) is None
    assert gr.size_edit("a big car", G, POOL, rng(0)) is None


def test_edits_make_the_statement_false():
    """Each edit of the all-true caption lowers exactly its own kind of correctness (read back by the table)."""
    for name, col in [("relation", "relations_correct"), ("count", "counts_correct"), ("size", "sizes_correct")]:
        edited = gr.EDIT_FUNCTIONS[name](C0, G, POOL, rng(3))
        row = gr.grounding_table([edited], [G], OBJECTS).iloc[0]
        assert row[col] < gr.grounding_table([C0], [G], OBJECTS).iloc[0][col], (name, edited)
    row = gr.grounding_table([gr.object_edit(C0, G, POOL, rng(3))], [G], OBJECTS).iloc[0]
    assert row["hallucinated"] == ["cat"]


def test_edits_are_deterministic_given_the_generator():
    for fn in gr.EDIT_FUNCTIONS.values():
        assert fn(C0, G, POOL, rng(7)) == fn(C0, G, POOL, rng(7))


# ----------------------------------------------------------------------------- F3 insertions
def test_insertions():
    assert gr.insert_visual_word("a picture of one apple", G, "correct", rng(0)) == \
        "a picture of one apple and a zebra"
    assert gr.insert_visual_word("a zebra.", G, "correct", rng(0)) == "a zebra and two apples."  # true count
    assert gr.insert_visual_word(C0, G, "correct", rng(0)) is None  # everything already named
    assert {gr.insert_visual_word("a zebra", G, "hallucinated", rng(s), pool=["zebra", "red apple", "owl", "cat"])
            for s in range(16)} == {"a zebra and an owl", "a zebra and a cat"}
    nonvis = {gr.insert_visual_word("a zebra", G, "non-visual", rng(s)) for s in range(64)}
    assert nonvis == {"a zebra and an idea", "a zebra and a reason", "a zebra and a plan", "a zebra and a feeling",
                      "a zebra and a question", "a zebra and a moment", "a zebra and a memory", "a zebra and a dream"}
    with pytest.raises(ValueError, match="pool"):
        gr.insert_visual_word("a zebra", G, "hallucinated", rng(0))
    with pytest.raises(ValueError, match="unknown insertion"):
        gr.insert_visual_word("a zebra", G, "weird", rng(0))


def test_non_visual_words_are_not_visual_and_object_names_are():
    from analysis.wordnet import is_visual

    assert not any(is_visual(w) for w in gr.NON_VISUAL)
    assert is_visual("zebra") and is_visual("cat")


# ----------------------------------------------------------------------------- edit effects with fake scores
VISUAL = {"apple", "apples", "zebra", "zebras", "cat", "cats"}  # a hand list of visual words


def count_visual(images, captions):
    return np.array([sum(w.strip(".") in VISUAL for w in c.split()) for c in captions], float)


def test_edit_effects_with_a_visual_word_counter():
    caps = [C0, "a picture of one apple"]
    df = gr.edit_effects(count_visual, caps, [G, G], ["cat"], seed=0).set_index(["index", "kind"])["delta"]
    # by hand: replacing, swapping, recounting or resizing keeps the number of visual words (delta 0); appending
    # "and a cat"/"and a zebra" adds one (delta -1); "and an idea" adds none; NaN where an edit does not apply
    expected = {(0, "object"): 0, (0, "relation"): 0, (0, "count"): 0, (0, "size"): 0, (0, "insert correct"): NAN,
                (0, "insert hallucinated"): -1, (0, "insert non-visual"): 0,
                (1, "object"): 0, (1, "relation"): NAN, (1, "count"): NAN, (1, "size"): NAN,
                (1, "insert correct"): -1, (1, "insert hallucinated"): -1, (1, "insert non-visual"): 0}
    for key, value in expected.items():
        assert same(df[key], float(value)), key


def test_edit_effects_pairs_each_edit_with_its_image():
    seen = []

    def score(images, captions):
        seen.extend(zip(np.asarray(images).tolist(), captions))
        return np.array([1.0 if "left" in c else 0.0 for c in captions])

    df = gr.edit_effects(score, [C0, "a picture of one apple"], [G, G], ["cat"], seed=0, images=[5, 9])
    rel = df.set_index(["index", "kind"])["delta"]
    assert rel[(0, "relation")] == 1.0 and rel[(0, "size")] == 0.0  # only the swap removes "left"
    assert all(img == 9 for img, c in seen if "one" in c) and all(img == 5 for img, c in seen if "two" in c)
    again = gr.edit_effects(score, [C0, "a picture of one apple"], [G, G], ["cat"], seed=0, images=[5, 9])
    assert list(again["edited"]) == list(df["edited"])  # the same seed, the same edits


def test_edit_effects_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match="score_fn returned shape"):
        gr.edit_effects(lambda i, c: np.zeros(1), [C0, C0], [G, G], ["cat"], seed=0)


# ----------------------------------------------------------------------------- correlation
def test_visual_word_correlation_with_ties_by_hand():
    # counts' mid-ranks [1, 2.5, 2.5, 4], scores' ranks [1, 2, 3, 4]: centred (-1.5, 0, 0, 1.5) and
    # (-1.5, -.5, .5, 1.5): rho = 4.5 / sqrt(4.5 * 5) = 0.948683...; the NaN pair is dropped
    rho, p, n = gr.visual_word_correlation([1, 2, 2, 3, np.nan], [1, 2, 3, 4, 5])
    assert rho == pytest.approx(4.5 / math.sqrt(22.5)) and n == 4 and 0 < p < 1
    assert gr.visual_word_correlation([3, 2, 1], [1, 2, 3])[0] == pytest.approx(-1.0)
    rho, p, n = gr.visual_word_correlation([1, 1, 1, 1], [1, 2, 3, 4])  # constant counts: undefined
    assert math.isnan(rho) and math.isnan(p) and n == 4


def test_doctests():
    result = doctest.testmod(gr, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_an_edit_that_leaves_the_caption_as_true_is_dropped():
    """Two relations, one stated right and one wrong: swapping every relation word keeps one right relation, so
    the caption is no less true and the checked edit gives None (the raw edit does not know)."""
    from analysis import grounding as gr

    g = {"objects": [{"name": "apple", "count": 1, "size": "big"}, {"name": "zebra", "count": 1, "size": "small"}],
         "relations": [{"subject": "apple", "relation": "left of", "object": "zebra"}]}
    cap = "an apple to the left of a zebra and a zebra to the left of an apple"
    assert gr.relation_edit(cap, g) is not None
    assert gr.checked_edit("relation", cap, g, [], None) is None
    assert gr.checked_edit("relation", "an apple to the left of a zebra", g, [], None) == "an apple to the right of a zebra"
