"""sg-f1 (SPICE-style stand-in): tuples read from captions written for the tests, counted by hand, and the
scene-graph ladder on real stamp scenes."""
import numpy as np
import pytest

from analysis import scene_parse as sp

G = {"objects": [{"name": "apple", "count": 2, "size": "big"}, {"name": "zebra", "count": 1, "size": "small"}],
     "relations": [{"subject": "apple", "relation": "left of", "object": "zebra"},
                   {"subject": "zebra", "relation": "right of", "object": "apple"}]}
TRUTH = {("object", "apple"), ("object", "zebra"), ("count", "apple", 2), ("count", "zebra", 1),
         ("size", "apple", "big"), ("size", "zebra", "small"), ("relation", "apple", "left of", "zebra")}

# caption -> the tuples a reader counts in it by hand
HAND = {
    "two big apples to the left of a small zebra": TRUTH,
    "a small zebra to the right of two big apples": TRUTH,  # the inverse relation is the same tuple
    "two big apples and a small zebra, the first left of the second": TRUTH,
    "a zebra": {("object", "zebra"), ("count", "zebra", 1)},
    "a picture of two apples and a zebra": {("object", "apple"), ("object", "zebra"), ("count", "apple", 2),
                                            ("count", "zebra", 1)},
    "three small cats above a big car": {("object", "cat"), ("object", "car"), ("count", "cat", 3),
                                         ("count", "car", 1), ("size", "cat", "small"), ("size", "car", "big"),
                                         ("relation", "car", "below", "cat")},
    "a big zebra": {("object", "zebra"), ("count", "zebra", 1), ("size", "zebra", "big")},
}


def test_graph_tuples():
    assert sp.graph_tuples(G) == TRUTH


@pytest.mark.parametrize("caption", list(HAND))
def test_caption_tuples_match_the_hand_count(caption):
    assert sp.caption_tuples(caption) == HAND[caption]


@pytest.mark.parametrize("caption,f1", [
    ("two big apples to the left of a small zebra", 1.0),
    ("a zebra", 2 * (2 / 7) / (1 + 2 / 7)),                       # P = 2/2, R = 2/7
    ("two small apples to the right of a big zebra", 4 / 7),      # 4 of 7 on both sides: sizes and relation wrong
    ("a big zebra", 2 * (2 / 3) * (2 / 7) / (2 / 3 + 2 / 7)),       # P = 2/3, R = 2/7
    ("a picture of a cat", 0.0),
])
def test_f1_by_hand(caption, f1):
    assert sp.sg_f1([caption], [G])[0] == pytest.approx(f1)


def test_ladder_on_real_scenes():
    """On held-out stamp scenes: the true caption > a relation swap > an object replacement > another scene's
    caption, on average."""
    from analysis.data import perturbations
    from analysis.data.scenes import canonical
    from analysis.registry import get_dataset
    from analysis.runtime import rng

    ds = get_dataset("stamp-scenes", split="test")
    two = [it for it in ds if len(it.meta["graph"]["objects"]) == 2][:20]
    graphs = [it.meta["graph"] for it in two]
    pool = ds.provenance["pool"]
    true = sp.sg_f1([canonical(g) for g in graphs], graphs)
    swap = sp.sg_f1([perturbations.perturb(g, "swap_relation", rng(0), pool) for g in graphs], graphs)
    repl = sp.sg_f1([perturbations.perturb(g, "replace_object", rng(0), pool) for g in graphs], graphs)
    other = sp.sg_f1([canonical(g) for g in graphs[1:] + graphs[:1]], graphs)
    assert np.mean(true) > np.mean(swap) > np.mean(repl) > np.mean(other)
    assert min(true) == 1.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 captions but 1 scene graphs"):
        sp.sg_f1(["a", "b"], [G])
