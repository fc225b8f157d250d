"""The rule-made judgement sets (analysis.data.ladder) and the harness on them: the scene ladder's rungs
checked word by word against each scene's graph, no candidate from a training item, stamp-match pairs, and
oracle metrics giving τ = ±100 through analysis.correlation."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import correlation as corr
from analysis import registry
from analysis.data import ladder
from analysis.data.base import normalise_caption
from analysis.data.scene_text import object_set, visual_words
from analysis.metrics import Metric, check_inputs

LIMIT = 6
SIZES = {"big", "small"}
RELATION_WORDS = {"to", "the", "left", "right", "of", "above", "below"}


@pytest.fixture(scope="module")
def scenes():
    """The stamp-scenes test scenes by id, and the first LIMIT scenes' ladder."""
    ds = registry.get_dataset("stamp-scenes", split="test")
    return {it.id: it for it in ds}, ladder.scene_ladder(limit=LIMIT)


@pytest.fixture(scope="module")
def full_ladder():
    return ladder.scene_ladder()


@pytest.fixture(scope="module")
def stamps():
    return ladder.stamp_match(limit=LIMIT)


def rung(df: pd.DataFrame, image: str, level: int) -> pd.Series:
    row = df[(df.image == image) & (df.level == level)]
    assert len(row) == 1
    return row.iloc[0]


def diff(a: str, b: str) -> list[tuple[str, str]]:
    return [(x, y) for x, y in zip(a.split(), b.split()) if x != y]


# --------------------------------------------------------------------------- scene-ladder
def test_scene_ladder_layout_and_rule_made_card(scenes):
    items, df = scenes
    assert df["image"].nunique() == LIMIT and len(df) == 4 * LIMIT
    pd.testing.assert_frame_equal(corr.judgement_set("scene-ladder").loader(None, LIMIT), df)  # the registered loader
    assert list(df.columns[:8]) == ["dataset", "image", "caption_id", "caption", "rater", "score", "path",
                                    "references"]
    assert (df.groupby("image")["level"].apply(sorted) == pd.Series([[1, 2, 3, 4]] * LIMIT,
                                                                    index=sorted(df.image.unique()))).all()
    assert (df["score"] == df["level"]).all() and df["score"].dtype == np.float64
    assert (df.groupby("image")["caption"].nunique() == 4).all()
    assert (df["split"] == "test").all() and all(items[i].split == "test" for i in df.image)
    assert df.attrs["kind"] == "rule-made" and "not human judgements" in df.attrs["rating_unit"]
    assert df["rater"].str.contains("rule-made, not a human judgement").all()


def test_scene_ladder_level_4_is_held_out_from_every_rows_references(scenes):
    items, df = scenes
    for image, g in df.groupby("image"):
        true = rung(df, image, 4)
        assert true.caption == items[image].captions[0]  # the scene's first (canonical) reference
        refs = set(g["references"])
        assert len(refs) == 1  # the four rungs share one reference set
        (shared,) = refs
        assert list(shared) == items[image].captions[1:]
        assert normalise_caption(true.caption) not in {normalise_caption(r) for r in shared}


def test_scene_ladder_rungs_word_by_word(scenes):
    """Level 3 changes exactly one fact of the true caption; level 2 names an object the scene lacks."""
    items, df = scenes
    kinds = set()
    for image in df.image.unique():
        graph = items[image].meta["graph"]
        true, wrong, swap = (rung(df, image, lv) for lv in (4, 3, 2))
        d = diff(true.caption, wrong.caption)
        kinds.add(wrong.perturbation)
        if wrong.perturbation == "replace_attribute":
            assert len(true.caption.split()) == len(wrong.caption.split()) and len(d) == 1
            assert set(d[0]) == SIZES
        elif wrong.perturbation == "replace_count":
            assert true.caption.split()[0] != wrong.caption.split()[0]  # the first object's count word
            assert [w for w in true.caption.split() if w in SIZES] == [w for w in wrong.caption.split() if w in SIZES]
        else:
            assert wrong.perturbation == "swap_relation" and len(graph["objects"]) == 2
            assert d and all(set(p) <= RELATION_WORDS for p in d)
        first, *rest = graph["objects"]
        words = set(swap.caption.split())
        assert not words & visual_words({"objects": [first]})  # the first object is gone ...
        for o in rest:
            assert set(o["name"].split()[-1:]) & words or visual_words({"objects": [o]}) & words  # ... the second stays
        assert swap.perturbation == "replace_object" and swap.caption != true.caption
    assert kinds <= set(ladder.CORRUPTIONS)


def test_scene_ladder_level_1_is_another_scene_with_another_object_set(scenes):
    items, df = scenes
    for image in df.image.unique():
        other = rung(df, image, 1)
        assert other.source_image != image and other.source_image in items  # another *test* scene
        assert other.caption == items[other.source_image].captions[0]
        mine, theirs = (set(object_set(items[i].meta["graph"])) for i in (image, other.source_image))
        assert not mine & theirs
        for lv in (4, 3, 2):
            assert rung(df, image, lv).source_image == image


def test_no_ladder_candidate_is_a_training_caption(full_ladder):
    train = {normalise_caption(c) for it in registry.get_dataset("stamp-scenes", split="train") for c in it.captions}
    test_refs = {it.id: it.captions for it in registry.get_dataset("stamp-scenes", split="test")}
    cands = full_ladder["caption"].map(normalise_caption)
    assert not cands.isin(train).any()
    # levels 4, 3, 2 derive from the scene's own test references (its canonical caption), level 1 from another's
    for r in full_ladder.itertuples():
        assert r.source_image in test_refs
    assert full_ladder.attrs["object_swaps_redrawn"]  # at seed 0 some first draws were training captions: redrawn
    assert set(full_ladder.attrs["object_swaps_redrawn"]) <= set(test_refs)


def test_scene_ladder_is_deterministic_and_limit_is_a_prefix(scenes, full_ladder):
    _, df = scenes
    pd.testing.assert_frame_equal(df, full_ladder.iloc[:len(df)].reset_index(drop=True))
    pd.testing.assert_frame_equal(ladder.scene_ladder(limit=LIMIT), df)
    assert len(ladder.scene_ladder(smoke=True)) == 4 * ladder.SMOKE_IMAGES
    other = ladder.scene_ladder(limit=LIMIT, seed=1)
    assert (other["caption"] != df["caption"]).any()
    assert (other.loc[other.level == 4, "caption"].to_numpy() == df.loc[df.level == 4, "caption"].to_numpy()).all()


# --------------------------------------------------------------------------- stamp-match
def test_stamp_match_pairs(stamps):
    test = {it.id: it for it in registry.get_dataset("tuxpaint-stamps", split="test")}
    train = {normalise_caption(c) for it in registry.get_dataset("tuxpaint-stamps", split="train") for c in it.captions}
    assert stamps["image"].nunique() == LIMIT and len(stamps) == LIMIT * (1 + ladder.STAMP_NEGATIVES)
    for image, g in stamps.groupby("image"):
        own = g[g.score == 1]
        assert len(own) == 1 and own.iloc[0].caption == test[image].captions[0]  # its human-written description
        neg = g[g.score == 0]
        assert len(neg) == ladder.STAMP_NEGATIVES and neg["source_image"].nunique() == ladder.STAMP_NEGATIVES
        for r in neg.itertuples():
            assert r.source_image != image and r.caption == test[r.source_image].captions[0]  # another test stamp's
            assert normalise_caption(r.caption) != normalise_caption(own.iloc[0].caption)
    assert (stamps["references"] == ()).all() and "no reference remains" in stamps.attrs["references_note"]
    assert not stamps["caption"].map(normalise_caption).isin(train).any()
    assert set(stamps["score"]) == {0.0, 1.0} and stamps.attrs["kind"] == "rule-made"
    pd.testing.assert_frame_equal(ladder.stamp_match(limit=LIMIT), stamps)
    assert len(ladder.stamp_match(limit=2, k=2)) == 2 * 3
    with pytest.raises(ValueError, match="k >= 1"):
        ladder.stamp_match(limit=2, k=0)


# --------------------------------------------------------------------------- the harness on them
class Oracle(Metric):
    """Scores a candidate by its ladder level (looked up by candidate and references, which identify the scene),
    or minus it: a perfect (reversed) metric."""

    def __init__(self, frame, sign=1):
        super().__init__(f"oracle{'' if sign > 0 else '-reversed'}", "oracle (test metric)", "tests")
        self.level = {(c, tuple(r)): lv for c, r, lv in zip(frame.caption, frame.references, frame.level)}
        self.sign = sign

    def compute_score(self, gts, res, images=None):
        ids = check_inputs(gts, res)
        per = np.array([self.sign * self.level[(res[k][0], tuple(gts[k]))] for k in ids], dtype=float)
        return float(per.mean()), per


class RefFree(Metric):
    """A metric reading no references and no image: the candidate's length (test metric)."""

    def __init__(self):
        super().__init__("length", "length (test metric)", "tests", extra={"uses_references": False})

    def compute_score(self, gts, res, images=None):
        ids = check_inputs(gts, res)
        per = np.array([len(res[k][0]) for k in ids], dtype=float)
        return float(per.mean()), per


def test_oracle_gives_plus_and_minus_100_on_the_ladder(scenes):
    _, df = scenes
    out = corr.correlation_table([Oracle(df), Oracle(df, -1)], ["scene-ladder"], limit=LIMIT, n_resamples=20)
    assert out["value"].tolist() == pytest.approx([100.0, -100.0])
    assert (out["variant"] == "b").all() and (out["judgement_kind"] == "rule-made").all()
    assert (out["split"] == "test").all() and (out["n_rows"] == 4 * LIMIT).all()
    assert corr.set_title("scene-ladder") == "scene-ladder (rule-made)" and corr.set_title("thumb") == "thumb"
    assert list(corr.wide_table(out).columns) == ["scene-ladder (rule-made, τb)"]


def test_stamp_match_reference_metrics_not_applicable_reference_free_scored(stamps):
    out = corr.correlation_table([Oracle(stamps.assign(level=stamps.score)), RefFree(), "sg-f1"], ["stamp-match"],
                                 limit=LIMIT, n_resamples=20).set_index("metric")
    assert math.isnan(out.loc["oracle", "value"]) and out.loc["oracle", "n_rows"] == 0
    assert out.loc["oracle", "note"].startswith("not applicable (reference-based metric)")
    assert np.isfinite(out.loc["length", "value"]) and out.loc["length", "n_rows"] == len(stamps)
    assert "scene graph" in out.loc["sg-f1", "note"] and math.isnan(out.loc["sg-f1", "value"])


def test_sg_f1_runs_on_the_scene_ladder_with_its_graphs(scenes):
    _, df = scenes
    per = corr.metric_scores(df, "sg-f1")
    assert not np.isnan(per).any()
    assert (per[df.level.to_numpy() == 4] == pytest.approx(1.0))  # the true caption states every tuple of the graph
    assert (per[df.level.to_numpy() == 1] < 1).all()


# --------------------------------------------------------------------------- the aligned metrics on the ladder
def test_aligned_metrics_run_on_the_ladder_and_their_map_never_saw_it(scenes):
    """aCLIP-S (registered, smoke stand-in) goes through the table and the noise sweep on the scene ladder; the map behind them was fitted on training pairs that share no image file and no caption with the
    ladder (the evaluated pairs)."""
    from analysis import cache, realignment

    _, df = scenes
    aclip = registry.build_metric("aclip-s:clip-mini", smoke=True)  # RefaCLIP-S: the same hook, tested synthetically
    out = corr.correlation_table([aclip], ["scene-ladder"], smoke=True, limit=LIMIT, n_resamples=20, progress=False)
    assert out["value"].notna().all() and (out["note"] == "").all() and (out["model"] == "clip-mini").all()
    assert out["metric"].tolist() == ["aclip-s:clip-mini"] and "in-domain procrustes map" in out.loc[0, "label"]
    fit = realignment.pairs("clip-mini", "in-domain", split="train", smoke=True, progress=False)
    ladder_shas = {cache.file_sha256(p) for p in df["path"].unique()}
    assert not ladder_shas & set(fit.image_sha256)
    assert not set(df["caption"].map(normalise_caption)) & {normalise_caption(c) for c in fit.captions}
    nr = corr.noise_robustness([aclip], "scene-ladder", smoke=True, limit=4, image_sigmas=(0, 0.1),
                               embedding_sigmas=(0, 0.5), n_resamples=20, progress=False)
    assert nr["value"].notna().all() and set(nr["embedding_stage"]) == {"encoder", ""}


def test_the_full_ladder_shares_no_caption_with_any_training_caption():
    """Full size (every test scene): no ladder candidate, of any level, is a caption of the training splits the
    stand-ins and the in-domain alignment map were fitted on (Tux Paint descriptions and scene references)."""
    from analysis.data import ladder

    full = ladder.scene_ladder()
    train = {normalise_caption(c) for name in ("tuxpaint-stamps", "stamp-scenes")
             for it in registry.get_dataset(name, split="train") for c in it.captions}
    assert len(full) == 4 * 66 and not set(full["caption"].map(normalise_caption)) & train
