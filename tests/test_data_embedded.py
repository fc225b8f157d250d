"""Embedded datasets: real Debian data (fetched by .ci/setup), the scene generator, fallbacks."""
import collections

import numpy as np
import pytest
from PIL import Image

from analysis import registry
from analysis.data import base, debian, scenes, tuxpaint
from analysis.data.base import DataUnavailable, Item, make_dataset
from analysis.datacards import load_with_fallback
from analysis.runtime import rng


def test_tuxpaint_counts_and_captions():
    ds = registry.get_dataset("tuxpaint-stamps")
    assert len(ds) == 538 and not ds.skipped
    assert len({it.meta["category"] for it in ds}) == 15
    assert all(len(it.captions) == 1 and it.captions[0].strip() for it in ds)
    assert sum(ds.split_counts().values()) == 538 and min(ds.split_counts().values()) > 20
    assert ds.provenance["version"] == debian.PACKAGES["tuxpaint-stamps-default"]
    im = ds[0].image()
    assert im.mode == "RGB" and min(im.size) > 16


def test_gcompris_counts():
    ex = registry.get_dataset("gcompris-explore")
    cat = registry.get_dataset("gcompris-categories")
    assert len(ex) == 82 and len(cat) == 142
    assert all(len(it.captions) == 2 and len(it.captions[1].split()) > 5 for it in ex)
    assert collections.Counter(it.meta["activity"] for it in ex)["explore_monuments"] > 20
    assert {it.meta["category"] for it in cat} >= {"tools", "fishes", "monuments"}


def test_samples_have_study_written_captions():
    ds = registry.get_dataset("sample-photos")
    assert len(ds) == 14 and all(len(it.captions) == 3 for it in ds)
    assert "written for this study" in ds.caption_source


def test_split_selection_and_errors():
    ds = registry.get_dataset("sample-photos", split="train")
    assert {it.split for it in ds} == {"train"}
    with pytest.raises(ValueError, match="unknown split"):
        registry.get_dataset("sample-photos", split="dev")


def test_hash_split_is_deterministic_and_roughly_proportional():
    keys = [f"k{i}" for i in range(4000)]
    a = [base.hash_split(k) for k in keys]
    assert a == [base.hash_split(k) for k in keys]
    share = collections.Counter(a)["train"] / len(a)
    assert 0.77 < share < 0.83


def test_corrupt_image_is_skipped_and_counted(tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.new("RGB", (8, 8), "red").save(good)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    ds = make_dataset("t", [Item("g", good, ["a"], "train"), Item("b", bad, ["b"], "train")], source="embedded",
                      licence="-", origin="-", caption_source="-")
    assert [it.id for it in ds] == ["g"] and ds.skipped[0][0] == "b"


def test_rgba_is_composited_on_white(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(p)
    assert base.open_rgb(p).getpixel((0, 0)) == (255, 255, 255)


def test_missing_debian_tools_give_a_clear_error_and_fallback(tmp_cache, monkeypatch):
    monkeypatch.delenv("STUDY_DEBS", raising=False)
    monkeypatch.setattr(debian.shutil, "which", lambda tool: None)
    with pytest.raises(DataUnavailable, match="apt-get.*STUDY_DEBS"):
        tuxpaint.load()
    ds, reason = load_with_fallback("tuxpaint-stamps")
    assert ds.name == "sample-photos" and "apt-get" in reason


# ----------------------------------------------------------------- stamp scenes
def test_plural_and_noun_phrase():
    assert [scenes.plural(w) for w in ["box", "cherry", "mouse", "red apple", "day"]] == \
        ["boxes", "cherries", "mice", "red apples", "days"]
    assert scenes.noun_phrase({"name": "apple", "count": 1, "size": "big"}) == "a big apple"
    assert scenes.noun_phrase({"name": "apple", "count": 1, "size": "big"}, with_size=False) == "an apple"
    assert scenes.noun_phrase({"name": "fox", "count": 3, "size": "small"}) == "three small foxes"


GRAPH2 = {"objects": [{"name": "zebra", "count": 1, "size": "big"}, {"name": "apple", "count": 2, "size": "small"}],
          "relations": [{"subject": "zebra", "relation": "left of", "object": "apple"},
                        {"subject": "apple", "relation": "right of", "object": "zebra"}], "background": 0}
GRAPH1 = {"objects": [{"name": "zebra", "count": 2, "size": "big"}], "relations": [], "background": 0}


def test_canonical_and_references_are_true_of_the_graph():
    assert scenes.canonical(GRAPH2) == "a big zebra to the left of two small apples"
    refs = scenes.references(GRAPH2)
    assert len(refs) == 5 and len(set(refs)) == 5
    assert "two small apples to the right of a big zebra" in refs
    assert scenes.canonical(GRAPH1) == "two big zebras"


@pytest.mark.parametrize("kind,expected", [
    ("replace_attribute", "a small zebra to the left of two small apples"),
    ("swap_relation", "a big zebra to the right of two small apples"),
    ("swap_objects", "two small apples to the left of a big zebra"),
])
def test_perturbations_exact(kind, expected):
    assert scenes.perturb(GRAPH2, kind, rng(0), ["cat", "dog"]) == expected


def test_perturbations_differ_from_truth_and_respect_applicability():
    pool = ["cat", "dog", "zebra", "apple"]
    for g in (GRAPH1, GRAPH2):
        truth = scenes.canonical(g)
        for kind in scenes.PERTURBATIONS:
            neg = scenes.perturb(g, kind, rng(1), pool)
            if kind in ("swap_relation", "swap_objects") and len(g["objects"]) == 1:
                assert neg is None
            else:
                assert neg and neg != truth, kind
    neg = scenes.perturb(GRAPH2, "replace_object", rng(2), pool)
    assert neg.split()[2] in {"cat", "dog"}
    shuffled = scenes.perturb(GRAPH2, "shuffle_words", rng(3), pool)
    assert sorted(shuffled.split()) == sorted(scenes.canonical(GRAPH2).split())
    assert scenes.perturb(GRAPH2, "add_visual_word", rng(4), pool).startswith(scenes.canonical(GRAPH2) + " and a")
    with pytest.raises(ValueError, match="unknown perturbation"):
        scenes.perturb(GRAPH2, "nope", rng(0), pool)


def test_scene_geometry_matches_the_relation():
    ds = registry.get_dataset("stamp-scenes")
    assert len(ds) == 600
    checked = 0
    for it in ds:
        g = it.meta["graph"]
        if len(g["objects"]) != 2:
            continue
        a, b = (np.array(o["boxes"], dtype=float) for o in g["objects"])
        ca, cb = a[:, [0, 2]].mean(), b[:, [0, 2]].mean()
        ra, rb = a[:, [1, 3]].mean(), b[:, [1, 3]].mean()
        rel = g["relations"][0]["relation"]
        ok = {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[rel]
        assert ok, (it.id, rel)
        assert len(a) == g["objects"][0]["count"] and len(b) == g["objects"][1]["count"]
        checked += 1
    assert checked > 100


def test_scene_generation_is_deterministic():
    pool = scenes.object_pool(registry.get_dataset("tuxpaint-stamps"))
    paths = {p["id"]: p["path"] for p in pool}
    imgs = []
    for _ in range(2):
        r = rng(7)
        g = scenes.sample_graph(pool, r)
        imgs.append(np.asarray(scenes.render(g, paths, r)))
    assert np.array_equal(imgs[0], imgs[1])


def test_object_pool_keeps_only_countable_singular_names():
    class Stamp:
        def __init__(self, name, category="food"):
            self.meta, self.path, self.id = {"object": name, "category": category}, f"{name}.png", name

    names = ["apple", "cherries", "scissors", "bus", "iris", "glass", "red apple", "Eiffel tower", "apple"]
    pool = scenes.object_pool([Stamp(n) for n in names] + [Stamp("zebra", "symbols")])
    assert [p["name"] for p in pool] == ["apple", "bus", "iris", "glass", "red apple"]


def test_scenes_use_only_training_stamps():
    split = {it.id: it.split for it in registry.get_dataset("tuxpaint-stamps")}
    used = {o["stamp"] for it in registry.get_dataset("stamp-scenes") for o in it.meta["graph"]["objects"]}
    assert used and {split[s] for s in used} == {"train"}
