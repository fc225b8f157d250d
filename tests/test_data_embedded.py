"""Embedded datasets: real Debian data (fetched by .ci/setup), the scene generator, fallbacks."""
import collections
import copy

import numpy as np
import pytest
from PIL import Image

from analysis import cache, registry
from analysis.data import base, debian, gcompris, perturbations, scenes, tuxpaint
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


def test_gcompris_category_captions_split_camel_case():
    assert [gcompris.caption_from_filename(s) for s in ("eiffelTower", "measuringTape2", "IndiaGate",
                                                        "leaningTowerOfPisa", "red_apple", "scissors2")] == \
        ["eiffel tower", "measuring tape", "india gate", "leaning tower of pisa", "red apple", "scissors"]
    captions = {it.captions[0] for it in registry.get_dataset("gcompris-categories")}
    assert {"eiffel tower", "measuring tape", "statue of liberty"} <= captions
    assert not [c for c in captions if c != c.lower()]


# ----------------------------------------------------------------- stamp scenes
def test_plural_and_noun_phrase():
    assert [scenes.plural(w) for w in ["box", "cherry", "mouse", "red apple", "day", "leaf", "goose", "sheep"]] == \
        ["boxes", "cherries", "mice", "red apples", "days", "leaves", "geese", "sheep"]
    assert scenes.noun_phrase({"name": "unicorn", "count": 1, "size": "big"}, with_size=False) == "a unicorn"
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
    assert perturbations.perturb(GRAPH2, kind, rng(0), ["cat", "dog"]) == expected


def test_perturbations_differ_from_truth_and_respect_applicability():
    pool = ["cat", "dog", "zebra", "apple"]
    for g in (GRAPH1, GRAPH2):
        truth = scenes.canonical(g)
        for kind in perturbations.PERTURBATIONS:
            neg = perturbations.perturb(g, kind, rng(1), pool)
            if kind in ("swap_relation", "swap_objects") and len(g["objects"]) == 1:
                assert neg is None
            else:
                assert neg and neg != truth, kind
    neg = perturbations.perturb(GRAPH2, "replace_object", rng(2), pool)
    assert neg.split()[2] in {"cat", "dog"}
    shuffled = perturbations.perturb(GRAPH2, "shuffle_words", rng(3), pool)
    assert sorted(shuffled.split()) == sorted(scenes.canonical(GRAPH2).split())
    assert perturbations.perturb(GRAPH2, "add_visual_word", rng(4), pool).startswith(scenes.canonical(GRAPH2) + " and a")
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturbations.perturb(GRAPH2, "nope", rng(0), pool)
    with pytest.raises(ValueError, match="replacement pool"):
        perturbations.perturb(GRAPH2, "replace_object", rng(0), ["zebra", "apple"])


def test_scenes_module_keeps_caption_text_and_perturbations_importable():
    from analysis.data.scenes import canonical, noun_phrase, plural, references, visual_words  # noqa: F401

    assert scenes.visual_words(GRAPH2) >= {"zebra", "zebras", "apple", "apples"}


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


# ----------------------------------------------------------------- leak-free splits (real embedded data)
def _norm(captions):
    return {base.normalise_caption(c) for c in captions}


@pytest.fixture(scope="module")
def sets():
    return {n: registry.get_dataset(n) for n in ("tuxpaint-stamps", "stamp-scenes", "stamp-scenes-unseen")}


def test_split_counts_of_the_held_out_sets(sets):
    """The counts the chapters report (caption-grouped stamps, object-set scenes, unseen-stamp scenes)."""
    assert sets["tuxpaint-stamps"].split_counts() == {"train": 442, "val": 43, "test": 53}
    assert sets["stamp-scenes"].split_counts() == {"train": 474, "val": 60, "test": 66}
    unseen = sets["stamp-scenes-unseen"]
    assert unseen.split_counts() == {"train": 0, "val": 0, "test": 120} and len(unseen.provenance["pool"]) == 23
    assert len({scenes.object_set(it.meta["graph"]) for it in unseen}) > 50  # many distinct object sets


def test_registry_labels_what_is_held_out():
    meta = {e: registry.DATASETS.entry(e).meta for e in ("tuxpaint-stamps", "stamp-scenes", "stamp-scenes-unseen")}
    assert meta["stamp-scenes"]["heldout"] == "seen stamps, new combinations"
    assert meta["stamp-scenes-unseen"]["heldout"] == "unseen stamps"
    assert meta["tuxpaint-stamps"]["heldout"] == "held-out stamps, no caption shared with training"
    assert all(m["eval_split"] == "test" for m in meta.values())
    assert {registry.DATASETS.entry(n).meta["eval_split"] for n in registry.DATASETS.names()} <= {"test", "all", "none"}
    assert [n for n in registry.DATASETS.names() if registry.DATASETS.entry(n).meta["eval_split"] == "none"] == [
        "stamp-scenes-scst"]


def test_no_held_out_scene_shares_its_object_set_with_training(sets):
    by_split = collections.defaultdict(set)
    for it in sets["stamp-scenes"]:
        by_split[it.split].add(scenes.object_set(it.meta["graph"]))
    assert by_split["test"] and by_split["val"]
    assert not by_split["test"] & by_split["train"] and not by_split["val"] & by_split["train"]


def test_the_scst_scenes_are_new_images_of_training_object_sets_only(sets):
    """The probe's SCST images: no val/test object set, no test caption, no image of stamp-scenes (by content)."""
    fresh = registry.get_dataset("stamp-scenes-scst")
    assert fresh.split_counts() == {"train": 742, "val": 0, "test": 0}
    held = collections.defaultdict(set)
    for it in sets["stamp-scenes"]:
        held[it.split].add(scenes.object_set(it.meta["graph"]))
    fresh_sets = {scenes.object_set(it.meta["graph"]) for it in fresh}
    assert not fresh_sets & (held["val"] | held["test"]) and fresh_sets & held["train"]
    test_caps = _norm(c for n in sets for it in sets[n] if it.split == "test" for c in it.captions)
    assert not _norm(c for it in fresh for c in it.captions) & test_caps
    digests = {cache.file_sha256(it.path) for it in sets["stamp-scenes"]}
    assert not {cache.file_sha256(it.path) for it in fresh} & digests
    with pytest.raises(ValueError, match="equals stamp-scenes' seed"):
        scenes.load_scst(seed=0)


def test_scene_split_depends_only_on_the_object_set():
    g = copy.deepcopy(GRAPH2)
    swapped = {**g, "objects": g["objects"][::-1]}
    swapped["objects"][0] = {**swapped["objects"][0], "count": 3, "size": "big"}
    assert scenes.scene_split(g, 0) == scenes.scene_split(swapped, 0)
    assert {scenes.scene_split({"objects": [{"name": f"n{i}"}]}, 0) for i in range(60)} == set(base.SPLITS)


def test_no_test_caption_occurs_among_training_captions(sets):
    tux, sc, unseen = sets["tuxpaint-stamps"], sets["stamp-scenes"], sets["stamp-scenes-unseen"]
    train = _norm(c for ds in (tux, sc) for it in ds.select("train") for c in it.captions)
    for ds in (tux, sc, unseen):
        test = _norm(c for it in ds.select("test") for c in it.captions)
        assert test and not test & train, ds.name


def test_tuxpaint_split_is_grouped_by_caption(sets):
    tux = sets["tuxpaint-stamps"]
    sides = collections.defaultdict(set)
    for it in tux:
        sides[base.normalise_caption(it.captions[0])].add(it.split)
    assert all(len(s) == 1 for s in sides.values())
    assert sum(n > 1 for n in collections.Counter(base.normalise_caption(it.captions[0]) for it in tux).values()) > 10
    assert not _norm(it.captions[0] for it in tux.select("test")) & _norm(it.captions[0] for it in tux.select("train"))
    objects = lambda split: {it.meta["object"].lower() for it in tux.select(split)}  # noqa: E731
    assert not objects("test") & objects("train"), "a held-out stamp names an object a training stamp names"


def test_unseen_scenes_use_only_held_out_stamps(sets):
    from analysis import cache

    tux, unseen = sets["tuxpaint-stamps"], sets["stamp-scenes-unseen"]
    split = {it.id: it.split for it in tux}
    objs = [o for it in unseen for o in it.meta["graph"]["objects"]]
    assert {split[o["stamp"]] for o in objs} == {"test"}
    seen_files = {cache.file_sha256(it.path) for it in tux if it.split != "test"}  # byte-identical copies too
    used = {it.id: it.path for it in tux if it.id in {o["stamp"] for o in objs}}
    assert not {cache.file_sha256(p) for p in used.values()} & seen_files
    names = {o["name"] for o in objs}
    assert names <= set(unseen.provenance["pool"]) and not names & set(sets["stamp-scenes"].provenance["pool"])
    assert {it.split for it in unseen} == {"test"}
    trained_on = {it.meta["object"].lower() for it in tux if it.split != "test"}  # every train/val object name
    assert not {n.lower() for n in names} & trained_on
