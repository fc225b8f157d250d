"""Sentence-pattern measures on captions with known answers (templates, entropy, distinct-n, rep-n)."""
import math

import numpy as np
import pytest

from analysis import linguistics as lx

FIGURE_1 = ["a bunch of bananas on a table", "a bunch of the bananas table",
            "a closeup image that is a a bunch but a a bananas but a a table"]


def test_pos_templates_of_simple_captions():
    docs = lx.parse(["A zebra on the grass.", "Two red apples."])
    assert lx.pos_template(docs[0]) == "DET NOUN ADP DET NOUN"
    assert lx.pos_template(docs[1]) == "NUM ADJ NOUN"
    assert lx.words(docs[0]) == ["a", "zebra", "on", "the", "grass"]


def test_entropy_known_answers():
    assert lx.entropy(["x"] * 8) == 0.0
    assert lx.entropy(list("abcd")) == pytest.approx(2.0)
    p = np.array([0.5, 0.25, 0.25])
    assert lx.entropy(["a", "a", "b", "c"]) == pytest.approx(-(p * np.log2(p)).sum())
    assert lx.entropy([]) == 0.0


def test_distinct_and_rep_n_by_counting():
    toks = "a a bunch but a a bananas but a a table".split()
    bigrams = list(zip(toks, toks[1:]))
    assert lx.rep_n(toks, 2) == pytest.approx(1 - len(set(bigrams)) / len(bigrams))
    assert lx.rep_n(toks, 1) == pytest.approx(1 - 5 / 11)
    assert lx.rep_n("a bunch of bananas".split(), 1) == 0.0 and lx.rep_n(["one"], 2) == 0.0
    assert lx.distinct_n([["a", "b"], ["a", "b"]], 2) == 0.5 and math.isnan(lx.distinct_n([["a"]], 2))


def test_the_degenerate_figure_1_caption_repeats_itself_most():
    df = lx.per_caption(FIGURE_1)
    assert df["rep_2"].idxmax() == 2 and df.loc[0, "rep_2"] == 0.0
    assert df.loc[2, "rep_1"] > df.loc[0, "rep_1"]


def test_a_fixed_pattern_set_has_lower_entropy_and_fewer_distinct_bigrams():
    fixed = [f"a photo of a {w} on a table" for w in ("cat", "dog", "cup", "car", "hat", "pen")]
    varied = ["a cat sleeps on the sofa", "two dogs run across a beach", "the red cup is empty",
              "cars parked along a street at night", "someone wears a straw hat", "pens lie scattered"]
    f, v = lx.pattern_summary(fixed), lx.pattern_summary(varied)
    assert f["template_entropy"] == 0.0 and f["top_template_share"] == 1.0 and f["top_prefix_share"] == 1.0
    assert v["template_entropy"] == pytest.approx(math.log2(6)) == v["max_entropy"]
    assert f["distinct_2"] < v["distinct_2"] and f["vocabulary"] < v["vocabulary"]
    assert f["top_templates"][0] == ("DET NOUN ADP DET NOUN ADP DET NOUN", 6)


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="caption 1 is NoneType"):
        lx.parse(["fine", None])
    with pytest.raises(ValueError, match="no captions"):
        lx.pattern_summary([])


def test_visual_words_counted_by_lemma_against_a_vocabulary():
    vocab = lx.visual_vocabulary(["apple", "pink flamingo", "teddy bear"], ["A table in a kitchen."])
    assert {"apple", "flamingo", "bear", "table", "kitchen"} <= vocab
    df = lx.visual_word_counts(["two apples next to a flamingo", "it is very nice"], vocab)
    assert df.loc[0, "visual_words"] == ["apple", "flamingo"] and df.loc[0, "count"] == 2
    assert df.loc[0, "ratio"] == pytest.approx(2 / 6) and df.loc[1, "count"] == 0


def test_chair_counts_hallucinated_objects_by_hand():
    objects = ["apple", "zebra", "boat", "teddy bear"]
    caps = ["two apples and a zebra", "a boat next to a zebra", "a teddy bear", "a picture"]
    truths = [["apple", "zebra"], ["boat"], ["apple"], ["boat"]]
    out = lx.chair(caps, truths, objects)
    # mentions: apple, zebra | boat, zebra | bear  -> 5; hallucinated: zebra (2nd), bear (3rd) -> 2
    assert out == {"chair_i": 2 / 5, "chair_s": 2 / 4, "mentions": 5, "hallucinated": 2}
    with pytest.raises(ValueError, match="2 captions but 1 sets"):
        lx.chair(caps[:2], truths[:1], objects)


def test_cached_visual_vocabulary_equals_the_computed_one_and_skips_wordnet_on_a_hit(tmp_path, monkeypatch):
    """The cached vocabulary is the computed one; a hit neither loads WordNet nor tests a word; other captions are
    another entry."""
    from analysis import cache, wordnet

    names, caps = ["red ball", "teddy bear"], ["a dog next to a table", "an idea in the background", "two cats"]
    fresh = lx.visual_vocabulary(names, caps)
    assert {"dog", "table", "cat", "ball", "bear"} <= fresh and not {"idea", "background"} & fresh
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    import shutil

    shutil.copytree(wordnet.nltk_data_dir(), tmp_path / "wn")  # the WordNet entry, in the fresh cache
    monkeypatch.setattr(wordnet, "nltk_data_dir", lambda: tmp_path / "wn")
    assert lx.visual_vocabulary_cached(names, caps) == fresh
    monkeypatch.setattr(wordnet, "is_visual", lambda w: (_ for _ in ()).throw(AssertionError("WordNet used")))
    assert lx.visual_vocabulary_cached(names, caps) == fresh  # a hit
    assert len(list((cache.root() / lx.VOCABULARY_KIND).iterdir())) == 1
    with pytest.raises(AssertionError, match="WordNet used"):
        lx.visual_vocabulary_cached(names, caps + ["a cow"])
