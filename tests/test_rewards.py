"""SCST rewards (analysis.captioning.rewards): each fast path is the scorer's own function, CIDEr-D uses the
training document frequencies, ITM probability is σ(logit), mix is the convex combination, the image side is
computed once per image, and bad names or settings are refused with the valid names."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocoevalcap.cider.cider import Cider

from analysis.captioning import rewards
from analysis.captioning.model import normalise
from analysis.captioning.rewards import make_reward, scorer_reward
from analysis.data.base import open_rgb
from analysis.registry import build_scorer
from analysis.scorers.base import DualEncoder, Scorer

ROWS = [0, 1, 24, 25]  # two Tux Paint stamps, two stamp scenes of the smoke training set


@pytest.fixture(scope="module")
def data():
    """The smoke training split as the captioner sees it (cached tower features, references)."""
    from analysis.captioning.xe import caption_data

    return caption_data("train", smoke=True)


@pytest.fixture(scope="module")
def pairs(data):
    """Every probe image with its own first reference, another image's reference and a made-up caption
    (with punctuation); two pairs repeated."""
    rows, caps = [], []
    for i in ROWS:
        other = ROWS[(ROWS.index(i) + 1) % len(ROWS)]
        for c in (data.refs[i][0], data.refs[other][0], "two cats. left of a red ball!"):
            rows.append(i)
            caps.append(c)
    rows += [ROWS[0], ROWS[2]]
    caps += [caps[0], caps[7]]
    return np.array(rows), caps


@pytest.fixture(scope="module")
def exact(data):
    """One shared source of decoded images and exact (float32) tower features."""
    return rewards.ImageSource(data, "exact")


@pytest.fixture(scope="module")
def expected(scorers, data, pairs):
    """Each scorer's own ``score`` of the pairs, on the PIL images."""
    rows, caps = pairs
    ims = [open_rgb(data.paths[r]) for r in rows]
    return {n: sc.score(ims, caps) for n, sc in scorers.items()}


@pytest.fixture(scope="module")
def scorers():
    return {n: build_scorer(n, smoke=True, seed=0) for n in ("clip-mini", "uniter-mini", "lxmert-mini", "blind")}


@pytest.mark.parametrize("name", ["clip-mini", "uniter-mini", "lxmert-mini", "blind"])
def test_reward_is_the_scorers_own_score(name, scorers, data, pairs, exact, expected):
    rows, caps = pairs
    sc = scorers[name]
    rw = scorer_reward(sc, data=data, features="exact", images=exact)
    got = np.concatenate([rw(rows[:5], caps[:5]), rw(rows[5:], caps[5:])])  # two calls, any batch split
    np.testing.assert_allclose(got, expected[name], rtol=0, atol=1e-5)
    assert rw.image_forwards == (0 if sc.family == "text-only" else len(ROWS))


def test_cached_features_differ_only_by_the_float16_grid(scorers, data, pairs, expected):
    rows, caps = pairs
    for name, sc in scorers.items():
        cached = scorer_reward(sc, data=data)(rows, caps)
        tol = 1e-5 if name in ("clip-mini", "blind") else 5e-3  # pooled is float32 in the cache; grid float16
        np.testing.assert_allclose(cached, expected[name], rtol=0, atol=tol, err_msg=name)


def test_make_reward_builds_the_named_scorer(scorers, data, pairs):
    rows, caps = pairs
    rw = make_reward("clip-mini", data=data, smoke=True, seed=0)
    np.testing.assert_allclose(rw(rows, caps), scorer_reward(scorers["clip-mini"], data=data)(rows, caps), atol=1e-7)
    info = rw.info()
    assert "stand-in" in info["label"] and info["output"] == "cosine" and info["smoke"] is True
    assert info["terms"][0]["scorer"]["checkpoint_hash"] == scorers["clip-mini"].checkpoint_hash
    assert "once per image" in info["terms"][0]["fast_path"]


def test_cider_reward_uses_the_training_document_frequencies(data, pairs):
    rows, caps = pairs
    rw = make_reward("cider-d-fast", data=data)
    got = rw(rows, caps)
    # pycocoevalcap's Cider takes df from the gts of its call: give it every training image (candidates for
    # the other images are fillers), so its df is the training corpus's, as the reward's
    tok_refs = {i: [normalise(r) for r in rr] for i, rr in enumerate(data.refs)}
    for j, (r, c) in enumerate(zip(rows, caps)):
        res = {i: ["filler"] for i in tok_refs}
        res[int(r)] = [normalise(c)]
        _, per = Cider().compute_score(tok_refs, res)
        assert got[j] == pytest.approx(per[int(r)], abs=1e-6), (r, c)
    assert got[0] > 1.0 and got[1] < got[0]  # an image's own reference beats another image's
    assert make_reward("cider-d", data=data)(rows, caps) == pytest.approx(got)


def test_cider_of_a_batch_with_no_matching_ngram_is_zero(data):
    rw = make_reward("cider-d-fast", data=data)
    np.testing.assert_array_equal(rw(np.array([0, 1]), ["zzz qqq", "xylophone"]), [0.0, 0.0])


def test_itm_probability_is_the_sigmoid_of_the_logit(scorers, data, pairs):
    rows, caps = pairs
    sc = scorers["uniter-mini"]
    logit = scorer_reward(sc, data=data)(rows, caps)
    prob = scorer_reward(sc, data=data, itm_output="probability")
    np.testing.assert_allclose(prob(rows, caps), torch.sigmoid(torch.tensor(logit)).numpy(), atol=1e-12)
    assert prob.output == "itm_prob" and prob.info()["itm_output"] == "probability"
    with pytest.raises(ValueError, match="itm_logit"):
        scorer_reward(scorers["clip-mini"], data=data, itm_output="probability")
    with pytest.raises(ValueError, match="itm_logit"):
        scorer_reward(scorers["blind"], data=data, itm_output="probability")


def test_mix_is_the_convex_combination(scorers, data, pairs):
    rows, caps = pairs
    cider = make_reward("cider-d-fast", data=data)(rows, caps)
    score = scorer_reward(scorers["lxmert-mini"], data=data)(rows, caps)
    mix = make_reward("mix:lxmert-mini", data=data, lam=0.25, smoke=True)
    np.testing.assert_allclose(mix(rows, caps), 0.25 * cider + 0.75 * score, atol=1e-9)
    assert [t["weight"] for t in mix.info()["terms"]] == [0.25, 0.75]
    assert mix.info()["mix_scaling"].startswith("raw")
    stats = mix.stats()["terms"]
    assert [t["term"] for t in stats] == ["cider-d-fast", "lxmert-mini"] and stats[0]["sd"] > 0
    with pytest.raises(ValueError, match="lam"):
        make_reward("mix:clip-mini", data=data, smoke=True)
    with pytest.raises(ValueError, match="lam applies to mix"):
        make_reward("clip-mini", data=data, lam=0.5, smoke=True)


class CountingDual(DualEncoder):
    """A fake dual encoder (not a stand-in of anything) that counts the images and captions it encodes."""

    name = label = "counting-dual (test fake)"
    source, output = "embedded", "cosine"

    def __init__(self):
        super().__init__()
        self.images, self.texts = [], []

    def _encode_image_batch(self, images):
        self.images += [im.size for im in images]
        return torch.tensor([[float(im.size[0]), float(im.size[1]), 1.0] for im in images])

    def _encode_text_batch(self, captions):
        self.texts += list(captions)
        return torch.tensor([[float(len(c)), 1.0, float(c.count(" "))] for c in captions])


def test_image_side_once_per_image_and_text_side_once_per_caption(data):
    fake, reference = CountingDual(), CountingDual()
    rw = scorer_reward(fake, data=data)
    rng = np.random.default_rng(0)
    for _ in range(10):
        rows = rng.choice(ROWS, size=6)
        caps = [f"caption number {rng.integers(3)}" for _ in rows]
        expected = reference.score([open_rgb(data.paths[r]) for r in rows], caps)  # the scorer's own score
        np.testing.assert_allclose(rw(rows, caps), expected, atol=1e-12)
    assert len(fake.images) == rw.image_forwards == len(set(ROWS))
    assert sorted(fake.texts) == [f"caption number {i}" for i in range(3)] and rw.text_forwards == 3
    rw(np.array(ROWS * 3), ["a cat"] * 12)
    assert len(fake.images) == len(set(ROWS)) and fake.texts[-1] == "a cat" and len(fake.texts) == 4


def test_itm_stand_in_encodes_each_image_once(scorers, data, pairs):
    rows, caps = pairs
    sc = scorers["uniter-mini"]
    rw = scorer_reward(sc, data=data)
    seen = []
    original = sc.net.encode_image
    sc.net.encode_image = lambda grid: seen.append(len(grid)) or original(grid)
    try:
        for _ in range(3):
            rw(rows, caps)
    finally:
        del sc.net.encode_image
    assert sum(seen) == len(ROWS)


class CountingCross(Scorer):
    """A fake cross-encoder (no separable image side): the reward falls back to score()."""

    name = label = "counting-cross (test fake)"
    family, source, output = "single-stream", "embedded", "itm_logit"

    def _score_batch(self, images, captions):
        return np.array([im.size[0] / 100 - len(c) / 10 for im, c in zip(images, captions)])


def test_cross_encoder_without_fast_path_falls_back_and_says_so(data, pairs):
    rows, caps = pairs
    sc = CountingCross()
    rw = scorer_reward(sc, data=data, itm_output="probability")
    expected = sc.score([open_rgb(data.paths[r]) for r in rows], caps)
    np.testing.assert_allclose(rw(rows, caps), 1 / (1 + np.exp(-expected)), atol=1e-12)
    assert rw.info()["terms"][0]["fast_path"].startswith("none")
    assert rw.image_forwards == len(set(zip(rows.tolist(), caps)))  # the whole model once per distinct pair


def test_empty_captions_never_reach_the_scorer_and_never_win(data):
    fake = CountingDual()
    rw = scorer_reward(fake, data=data)
    got = rw(np.array([0, 0, 1, 1]), ["a dog", "", "a big red dog", "   "])
    assert "" not in fake.texts and got[1] == got[3] == min(got[0], got[2]) and rw.empty == 2
    np.testing.assert_array_equal(rw(np.array([0]), [""]), [0.0])


def test_unknown_names_list_the_valid_ones(data):
    for bad in ("clip-mimi", "bleu-4", "clip-s:nope"):
        with pytest.raises(rewards.UnknownRewardError, match="valid names: clip-mini, uniter-mini") as e:
            make_reward(bad, data=data)
        assert "cider-d-fast" in str(e.value) and "mix:<scorer>" in str(e.value)
    with pytest.raises(ValueError, match="itm_output"):
        make_reward("uniter-mini", data=data, itm_output="prob")
    with pytest.raises(ValueError, match="image indices"):
        make_reward("cider-d-fast", data=data)(np.array([0]), ["a", "b"])


def test_aclip_s_reward_is_clip_s_with_the_mapped_image_side(scorers, data, pairs):
    """``aclip-s:clip-mini`` equals ``2.5 · max(cos(normalise(v W), t), 0)`` restated in numpy from the scorer's own
    encoders and the fitted map (the metric's definition), differs from raw CLIP-S, and carries the map in its info."""
    from analysis import realignment

    rows, caps = pairs
    sc = scorers["clip-mini"]
    amap = realignment.fitted_map(sc, setting="in-domain", method="procrustes", smoke=True, seed=0, progress=False)
    v = np.asarray(sc.encode_image([open_rgb(data.paths[r]) for r in rows]), float)
    t = np.asarray(sc.encode_text([rewards.CLIP_S_PREFIX + c for c in caps]), float)
    m = amap.apply(v)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    want = 2.5 * np.maximum((m * t).sum(1), 0)
    rw = make_reward("aclip-s:clip-mini", data=data, smoke=True, seed=0, features="exact")
    np.testing.assert_allclose(rw(rows, caps), want, rtol=0, atol=1e-5)
    raw = make_reward("clip-s:clip-mini", data=data, smoke=True, seed=0, features="exact")(rows, caps)
    assert np.abs(raw - want).max() > 1e-3  # the map is not the identity: the rewards differ
    info = rw.info()["terms"][0]
    assert info["output"] == "aclip_s" and info["alignment"]["method"] == "procrustes"
    assert "never on the evaluated pairs" in info["alignment"]["fitted_on"] and info["alignment"]["map"]
    assert "mapped" in info["fast_path"]
    with pytest.raises(ValueError, match="dual-encoder"):
        make_reward("aclip-s:uniter-mini", data=data, smoke=True, seed=0)
