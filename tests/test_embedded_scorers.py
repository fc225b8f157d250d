"""The embedded stand-in scorers (clip-mini, uniter-mini, lxmert-mini, blind) in smoke mode:
losses, sampling, the copied MiniLM layers, training, caching, provenance and what a few
smoke steps already learn. (The scorer contract itself is checked in test_scorer_contract.py.)"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from analysis import cache, towers
from analysis.data.base import open_rgb
from analysis.registry import get_scorer
from analysis.scorers import base, blind, embedded, training

NAMES = ["clip-mini", "uniter-mini", "lxmert-mini", "blind"]
SPECS = {**embedded.SPECS, "blind": blind.SPEC}
FAMILY = {"clip-mini": "dual", "uniter-mini": "single-stream", "lxmert-mini": "two-stream", "blind": "text-only"}


@pytest.fixture(scope="module")
def scorers():
    return {n: get_scorer(n, smoke=True) for n in NAMES}


@pytest.fixture(scope="module")
def smoke_set():
    return training.training_set(smoke=True, seed=0, hard_per_kind=2)


@pytest.fixture(scope="module")
def tux_items(smoke_set):
    """The smoke training set's Tux Paint images with their one caption each."""
    idx = [i for i, d in enumerate(smoke_set.dataset) if d == "tuxpaint-stamps"]
    caps = [smoke_set.captions[smoke_set.positives[i][0]] for i in idx]
    return [open_rgb(smoke_set.paths[i]) for i in idx], caps


# --------------------------------------------------------------------------- losses and sampling
def test_info_nce_matches_its_formula_and_masks_duplicate_captions():
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    s = torch.tensor(np.log(10.0))
    L = 10.0 * (u @ v.T).numpy()

    def ce(rows):
        return np.mean([np.log(np.exp(r).sum()) - r[i] for i, r in enumerate(rows)])

    expect = 0.5 * (ce(L) + ce(L.T))
    assert float(training.info_nce(u, v, s)) == pytest.approx(expect, rel=1e-5)
    same = torch.zeros(5, 5, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True  # captions 0 and 1 are the same text
    Lm = L.copy()
    Lm[0, 1] = Lm[1, 0] = -np.inf
    assert float(training.info_nce(u, v, s, same)) == pytest.approx(0.5 * (ce(Lm) + ce(Lm.T)), rel=1e-5)


def test_balanced_bce_weighs_both_classes_equally():
    z = torch.tensor([2.0, -1.0, 0.5, 0.0])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0])
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
    expect = 0.5 * sp(-2.0) + 0.5 * np.mean([sp(-1.0), sp(0.5), sp(0.0)])
    assert float(training.balanced_bce(z, y)) == pytest.approx(expect, rel=1e-6)


def test_hard_negatives_are_perturbations_that_are_false(smoke_set):
    scenes = [i for i, d in enumerate(smoke_set.dataset) if d == "stamp-scenes"]
    assert scenes and all(smoke_set.hard[i] for i in scenes)
    kinds = {smoke_set.hard_kind[c] for i in scenes for c in smoke_set.hard[i]}
    assert {"replace_object", "replace_attribute", "shuffle_words", "add_visual_word"} <= kinds
    for i in scenes:
        assert not set(smoke_set.hard[i]) & set(smoke_set.positives[i])
    assert not any(smoke_set.hard[i] for i, d in enumerate(smoke_set.dataset) if d == "tuxpaint-stamps")


def test_sampler_rows_pair_each_image_with_a_true_and_a_false_caption(smoke_set):
    sampler = training.PairSampler(smoke_set, seed=0)
    for _ in range(10):
        imgs, k, c, y = sampler.itm_batch(8)
        assert len(set(imgs.tolist())) == len(imgs) == 8 and len(c) == 16
        for kk, cc, yy in zip(k, c, y):
            true = cc in smoke_set.positives[imgs[kk]]
            assert true == (yy == 1.0)
        imgs, caps = sampler.contrastive_batch(16)
        assert len(set(imgs.tolist())) == 16
        assert all(cc in smoke_set.positives[i] for i, cc in zip(imgs, caps))


# --------------------------------------------------------------------------- the copied MiniLM layers
def test_copied_layers_reproduce_minilm_and_first_only_is_the_first_row():
    tower = towers.text_tower()
    tok = tower.tokenize(["a zebra", "two small apples to the left of a big banana"])
    x = tower.embeddings(tok)
    layers = [embedded.BertLayer.from_hf(layer, heads=12).eval() for layer in tower.model.encoder.layer]
    with torch.no_grad():
        h = x
        for layer in layers:
            h = layer(h, tok.mask)
        first = layers[-1](h, tok.mask, first_only=True)
        full = layers[-1](h, tok.mask)
    ref = tower.states(tok)
    valid = tok.mask.bool()
    torch.testing.assert_close(h[valid], ref[valid], atol=1e-4, rtol=0)
    torch.testing.assert_close(first[:, 0], full[:, 0], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- training, caching, provenance
@pytest.mark.parametrize("name", NAMES)
def test_smoke_training_lowers_the_loss_and_is_deterministic(name, smoke_set):
    spec = SPECS[name]
    cfg = embedded.config_for(spec, smoke=True)
    ts = smoke_set if cfg.hard_per_kind == 2 else training.training_set(smoke=True, seed=0, hard_per_kind=0)
    net, log = embedded.train_net(spec, cfg, ts, seed=0)
    assert log["loss_last"] < log["loss_first"]
    assert not net.training
    short = replace(cfg, schedule=replace(cfg.schedule, steps=8))  # determinism: two short runs agree bit for bit
    a, _ = embedded.train_net(spec, short, ts, seed=0)
    b, _ = embedded.train_net(spec, short, ts, seed=0)
    assert base.state_hash(a.state_dict()) == base.state_hash(b.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_second_build_is_a_cache_hit_with_identical_scores(name, scorers, tux_items, monkeypatch):
    first = scorers[name]
    monkeypatch.setattr(embedded, "train_net", lambda *a, **k: pytest.fail("a cache hit must not train"))
    second = get_scorer(name, smoke=True)
    images, caps = tux_items
    np.testing.assert_array_equal(first.score(images[:6], caps[:6]), second.score(images[:6], caps[:6]))
    assert first.checkpoint_hash == second.checkpoint_hash
    assert first.checkpoint_hash == cache.file_sha256(first.checkpoint_dir / training.WEIGHTS)


@pytest.mark.parametrize("name", NAMES)
def test_provenance_says_stand_in_and_where_the_weights_are(name, scorers):
    s = scorers[name]
    assert s.name == name and s.family == FAMILY[name] and s.source == "embedded"
    assert s.output == ("cosine" if name == "clip-mini" else "itm_logit")
    assert ("stand-in" in s.label) if name != "blind" else (s.label == "blind (text-only baseline)")
    assert s.max_text_tokens == towers.MAX_TEXT_TOKENS
    recipe = s.meta["recipe"]
    assert recipe["seed"] == 0 and recipe["smoke"] is True and recipe["code_version"] == training.CODE_VERSION
    assert recipe["towers"] == towers.tower_hashes() and recipe["data"]["fingerprint"]
    assert s.checkpoint_dir.name in s.pretrained and s.meta["log"]["steps"] == recipe["config"]["schedule"]["steps"]
    assert cache.verify(s.checkpoint_dir)


def test_a_different_seed_is_a_different_checkpoint(scorers):
    other = get_scorer("clip-mini", smoke=True, seed=1)
    assert other.checkpoint_dir != scorers["clip-mini"].checkpoint_dir
    assert other.checkpoint_hash != scorers["clip-mini"].checkpoint_hash


def test_loading_weights_into_the_wrong_net_is_refused(scorers):
    with pytest.raises(RuntimeError, match="does not fit"):
        training.load_checkpoint(embedded.LxmertMiniNet(embedded.LxmertConfig()), scorers["clip-mini"].checkpoint_dir)


# --------------------------------------------------------------------------- what the smoke models learned
def _wins(S: np.ndarray) -> float:
    """Fraction of (i, j != i) with S[i, i] > S[i, j]: true caption above another image's caption."""
    n = len(S)
    off = ~np.eye(n, dtype=bool)
    return float((np.diag(S)[:, None] > S)[off].mean())


def test_clip_mini_ranks_its_training_pairs_far_above_chance(scorers, tux_items):
    images, caps = tux_items
    S = scorers["clip-mini"].score_matrix(images, caps)
    r1 = float((S.argmax(1) == np.arange(len(S))).mean())
    assert r1 > 5 / len(S) and _wins(S) > 0.8


@pytest.mark.parametrize("name", ["uniter-mini", "lxmert-mini"])
def test_itm_stand_ins_prefer_true_captions_on_their_training_items(name, scorers, tux_items):
    images, caps = tux_items
    assert _wins(scorers[name].score_matrix(images[:12], caps[:12])) > 0.7


@pytest.mark.parametrize("name", ["uniter-mini", "lxmert-mini", "blind"])
def test_cross_encoder_matrix_equals_pairwise_scores(name, scorers, tux_items):
    images, caps = tux_items
    s = scorers[name]
    M = s.score_matrix(images[:3], caps[:4])
    pairs = s.score([im for im in images[:3] for _ in range(4)], caps[:4] * 3).reshape(3, 4)
    np.testing.assert_allclose(M, pairs, rtol=0, atol=1e-5)


def test_blind_ignores_the_image(scorers, tux_items):
    images, caps = tux_items
    s = scorers["blind"]
    a = s.score(images[:3], [caps[0]] * 3)
    assert np.ptp(a) == 0
    M = s.score_matrix(images[:3], caps[:5])
    assert (M == M[0]).all()
    with pytest.raises(ValueError):
        s.score(images[:2], caps[:1])


def test_unknown_settings_are_refused_with_the_valid_ones():
    with pytest.raises(TypeError, match="valid: smoke, seed, dim"):
        get_scorer("clip-mini", smoke=True, dimension=128)
