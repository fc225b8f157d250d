"""The embedded stand-ins (analysis.scorers.standins, .blind) at smoke size: losses, sampling,
default vs +neg recipes, the copied MiniLM layers, training, caching, provenance, the
held-out check, and what the trained models do on items they never saw.
(The scorer contract itself is checked for every scorer in test_scorer_contract.py.)"""
from __future__ import annotations

import json
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from analysis import cache, registry, towers
from analysis.registry import get_dataset, get_scorer
from analysis.scorers import base, blind, configs, networks, objectives, standins, training
from analysis.scorers.base import BadWeightsFile

NEURAL = list(standins.SPECS)  # the seven trained nets
NAMES = registry.embedded_scorers()
DEFAULTS = ["clip-mini", "uniter-mini", "lxmert-mini", "blind"]
FAMILY = {"clip-mini": "dual", "uniter-mini": "single-stream", "lxmert-mini": "two-stream", "blind": "text-only"}
NEGATIVE_FIELDS = {"hard_per_kind", "p_hard", "hard_text_negatives"}  # what a +neg ablation may change


@pytest.fixture(scope="module")
def scorers():
    return {n: get_scorer(n, smoke=True) for n in NAMES}


@pytest.fixture(scope="module")
def smoke_set():
    return training.training_set(smoke=True, seed=0, hard_per_kind=2)


@pytest.fixture(scope="module")
def heldout():
    """16 Tux Paint stamps of the *test* split (never trained on) with their one caption each."""
    items = list(get_dataset("tuxpaint-stamps", split="test"))[:16]
    return [it.image() for it in items], [it.captions[0] for it in items]


@pytest.fixture(scope="module")
def heldout_scenes():
    """40 scenes of the *test* split (no training scene has their object set) with their canonical caption."""
    items = list(get_dataset("stamp-scenes", split="test"))[:40]
    return [it.image() for it in items], [it.captions[0] for it in items]


def _wins(S: np.ndarray) -> float:
    """Fraction of (i, j != i) with S[i, i] > S[i, j]: the true caption above another image's."""
    off = ~np.eye(len(S), dtype=bool)
    return float((np.diag(S)[:, None] > S)[off].mean())


def _random_init(name: str, like):
    """The scorer ``name`` with a freshly initialised (untrained) net, same provenance otherwise."""
    spec = standins.SPECS[name]
    training.start(1)
    net = spec.make_net(standins.config_for(spec, smoke=True))
    return spec.scorer(spec, net, like.checkpoint_dir, like.meta, seed=0, smoke=True)


# --------------------------------------------------------------------------- losses
def _ce(rows: np.ndarray) -> float:
    """Mean over rows i of -log softmax(rows[i])[i] (an independent numpy reference)."""
    return float(np.mean([np.log(np.exp(r).sum()) - r[i] for i, r in enumerate(rows)]))


def _unit(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_clip_loss_is_symmetric_infonce():
    u, v, s = _unit(5), _unit(5, seed=1), torch.tensor(np.log(10.0))
    L = 10.0 * (u @ v.T).numpy()
    assert float(objectives.clip_loss(u, v, s)) == pytest.approx(0.5 * (_ce(L) + _ce(L.T)), rel=1e-5)


def test_negclip_adds_text_negatives_to_the_image_side_only():
    u, v, w, s = _unit(4), _unit(4, seed=1), _unit(3, seed=2), torch.tensor(np.log(20.0))
    assert float(objectives.negclip_loss(u, v, s)) == pytest.approx(float(objectives.clip_loss(u, v, s)), rel=1e-6)
    i2t = 20.0 * (u @ torch.cat([v, w]).T).numpy()  # 4 x 7: each image picks among 4 captions + 3 negatives
    t2i = 20.0 * (v @ u.T).numpy()
    assert float(objectives.negclip_loss(u, v, s, w)) == pytest.approx(0.5 * (_ce(i2t) + _ce(t2i)), rel=1e-5)
    assert float(objectives.negclip_loss(u, v, s, w)) > float(objectives.clip_loss(u, v, s))


def test_balanced_bce_weighs_both_classes_equally():
    z = torch.tensor([2.0, -1.0, 0.5, 0.0])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0])
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
    expect = 0.5 * sp(-2.0) + 0.5 * np.mean([sp(-1.0), sp(0.5), sp(0.0)])
    assert float(objectives.balanced_bce(z, y)) == pytest.approx(expect, rel=1e-6)


def test_schedule_warms_up_then_decays_to_zero():
    sched = training.Schedule(steps=20, batch_size=1, lr=1.0, warmup=0.2)
    opt, lr_schedule = training.optimizer(torch.nn.Linear(2, 1), sched)
    lrs = []
    for _ in range(sched.steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        lr_schedule.step()
    assert lrs[0] == 0.0 and lrs[sched.warmup_steps] == pytest.approx(1.0)
    assert lrs[:sched.warmup_steps + 1] == sorted(lrs[:sched.warmup_steps + 1])
    assert lrs[sched.warmup_steps:] == sorted(lrs[sched.warmup_steps:], reverse=True) and lrs[-1] < 0.01


# --------------------------------------------------------------------------- default vs +neg recipes
def test_defaults_never_see_a_perturbation_and_ablations_differ_only_in_negatives():
    for name, spec in standins.SPECS.items():
        cfg = spec.config
        if name.endswith("+neg"):
            base_cfg = standins.SPECS[name[:-len("+neg")]].config if name != "blind+neg" else None
            assert configs.uses_perturbations(cfg) and spec.trained_on_perturbations and not spec.default
            if base_cfg is not None:
                changed = {f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(base_cfg, f.name)}
                assert changed and changed <= NEGATIVE_FIELDS, (name, changed)
        else:
            assert cfg.hard_per_kind == 0 and getattr(cfg, "p_hard", 0) == 0 and not spec.trained_on_perturbations
    assert configs.NgramConfig().hard_per_kind == 0


def test_registry_meta_matches_the_recipes():
    assert registry.default_scorers() == DEFAULTS
    assert set(NAMES) == set(DEFAULTS) | {f"{n}+neg" for n in DEFAULTS}
    for name in NAMES:
        meta = registry.SCORERS.entry(name).meta
        spec = standins.SPECS.get(name, blind.BlindSpec)
        assert meta["source"] == "embedded" and meta["family"] == spec.family
        assert meta["default"] is spec.default and meta["trained_on_perturbations"] is spec.trained_on_perturbations


def test_default_training_set_holds_no_perturbed_caption():
    plain = training.training_set(smoke=True, seed=0)
    assert not any(plain.hard) and not plain.hard_kind
    true = {c for pos in plain.positives for c in pos}
    assert true == set(range(len(plain.captions)))  # every caption is some image's true caption
    sampler = training.PairSampler(plain, seed=0, p_hard=standins.SPECS["uniter-mini"].config.p_hard)
    for _ in range(20):
        imgs, k, c, y = sampler.itm_batch(8)
        for kk, cc, yy in zip(k, c, y):
            assert (cc in plain.positives[imgs[kk]]) == (yy == 1.0)


def test_hard_negatives_are_perturbations_that_are_false(smoke_set):
    scenes = [i for i, d in enumerate(smoke_set.dataset) if d == "stamp-scenes"]
    assert scenes and all(smoke_set.hard[i] for i in scenes)
    kinds = {smoke_set.hard_kind[c] for i in scenes for c in smoke_set.hard[i]}
    assert {"replace_object", "replace_attribute", "shuffle_words", "add_visual_word"} <= kinds
    for i in scenes:
        assert not set(smoke_set.hard[i]) & set(smoke_set.positives[i])
    assert not any(smoke_set.hard[i] for i, d in enumerate(smoke_set.dataset) if d == "tuxpaint-stamps")


def test_contrastive_batches_never_repeat_a_caption_text(smoke_set):
    ts = replace(smoke_set, positives=[list(p) for p in smoke_set.positives])
    ts.positives[1] = ts.positives[2] = ts.positives[0][:1]  # three stamps now share one caption text
    sampler = training.PairSampler(ts, seed=0)
    for _ in range(30):
        imgs, caps = sampler.contrastive_batch(len(ts))
        assert len(set(caps.tolist())) == len(caps) == len(imgs) and len({0, 1, 2} & set(imgs.tolist())) == 1
        assert all(c in ts.positives[i] for i, c in zip(imgs, caps))
        left_out = set(range(len(ts))) - set(imgs.tolist())  # only images whose every caption is taken
        assert all(set(ts.positives[i]) <= set(caps.tolist()) for i in left_out)


def test_negclip_text_negatives_are_false_for_every_image_of_the_batch(smoke_set):
    sampler = training.PairSampler(smoke_set, seed=0)
    imgs, _ = sampler.contrastive_batch(16)
    hard = sampler.text_negatives(imgs, 1)
    true = {c for i in imgs for c in smoke_set.positives[i]}
    banks = {c for i in imgs for c in smoke_set.hard[i]}
    assert len(hard) and set(hard.tolist()) <= banks and not set(hard.tolist()) & true
    assert len(set(hard.tolist())) == len(hard)


def test_itm_rows_pair_each_image_with_a_true_and_a_false_caption(smoke_set):
    sampler = training.PairSampler(smoke_set, seed=0, p_hard=0.5)
    for _ in range(10):
        imgs, k, c, y = sampler.itm_batch(8)
        assert len(set(imgs.tolist())) == len(imgs) == 8 and len(c) == 16
        for kk, cc, yy in zip(k, c, y):
            assert (cc in smoke_set.positives[imgs[kk]]) == (yy == 1.0)


# --------------------------------------------------------------------------- the copied MiniLM layers
def test_copied_layers_reproduce_minilm_and_first_only_is_the_first_row():
    tower = towers.text_tower()
    tok = tower.tokenize(["a zebra", "two small apples to the left of a big banana"])
    x = tower.embeddings(tok)
    layers = [networks.BertLayer.from_hf(layer, heads=12).eval() for layer in tower.model.encoder.layer]
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
@pytest.mark.parametrize("name", NEURAL)
def test_smoke_training_lowered_the_loss(name, scorers):
    log = scorers[name].meta["log"]
    assert log["loss_last"] < log["loss_first"] and log["steps"] == standins.SPECS[name].smoke.steps


@pytest.mark.parametrize("name", ["clip-mini", "clip-mini+neg", "uniter-mini", "lxmert-mini", "blind+neg"])
def test_training_is_deterministic(name):
    spec = standins.SPECS[name]
    cfg = standins.config_for(spec, smoke=True)
    short = replace(cfg, schedule=replace(cfg.schedule, steps=6))
    ts = training.training_set(smoke=True, seed=0, hard_per_kind=cfg.hard_per_kind)
    a, _ = standins.train_net(spec, short, ts, seed=0)
    b, _ = standins.train_net(spec, short, ts, seed=0)
    assert not a.training and base.state_hash(a.state_dict()) == base.state_hash(b.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_second_build_is_a_cache_hit_with_identical_scores(name, scorers, heldout, monkeypatch):
    first = scorers[name]
    fail = lambda *a, **k: pytest.fail("a cache hit must not train")  # noqa: E731
    monkeypatch.setattr(standins, "train_net", fail)
    monkeypatch.setattr(blind, "train_lm", fail)
    second = get_scorer(name, smoke=True)
    images, caps = heldout
    np.testing.assert_array_equal(first.score(images[:6], caps[:6]), second.score(images[:6], caps[:6]))
    weights = blind.MODEL_FILE if name == "blind" else training.WEIGHTS
    assert first.checkpoint_hash == second.checkpoint_hash == cache.file_sha256(first.checkpoint_dir / weights)


@pytest.mark.parametrize("name", NAMES)
def test_provenance_says_stand_in_and_where_the_weights_are(name, scorers):
    s, stem = scorers[name], name.removesuffix("+neg")
    assert s.name == name and s.family == FAMILY[stem] and s.source == "embedded"
    assert s.output == {"clip-mini": "cosine", "clip-mini+neg": "cosine", "blind": "lm_logprob"}.get(name, "itm_logit")
    assert s.label.startswith(f"{name} (") and ("stand-in" in s.label or "baseline" in s.label)
    assert ("trained on perturbation negatives" in s.label) == name.endswith("+neg")
    info = s.info()
    assert info["trained_on_perturbations"] is name.endswith("+neg") and info["default"] is (name in DEFAULTS)
    recipe = s.meta["recipe"]
    assert recipe["seed"] == 0 and recipe["smoke"] is True and recipe["code_version"] == training.CODE_VERSION
    assert recipe["data"]["fingerprint"] and recipe["val_data"]["split"] == "val"
    assert recipe["config"]["hard_per_kind"] == (2 if name.endswith("+neg") else 0)
    if name != "blind":
        assert recipe["towers"] == towers.tower_hashes()
    assert s.checkpoint_dir.name in s.pretrained and cache.verify(s.checkpoint_dir)


@pytest.mark.parametrize("name", NAMES)
def test_the_val_split_metric_is_recorded_and_not_used_for_selection(name, scorers):
    val = scorers[name].info()["val"]
    assert val["split"] == "val" and val["used_for_selection"] is False and val["n"] > 10
    assert np.isfinite(val["value"]) and np.isfinite(val["chance"])
    assert val["metric"] == {"clip-mini": "i2t_recall_at_1", "clip-mini+neg": "i2t_recall_at_1",
                             "blind": "mean_logprob"}.get(name, "win_rate")


def test_a_different_seed_is_a_different_checkpoint(scorers):
    other = get_scorer("clip-mini", smoke=True, seed=1)
    assert other.checkpoint_dir != scorers["clip-mini"].checkpoint_dir
    assert other.checkpoint_hash != scorers["clip-mini"].checkpoint_hash


def test_loading_weights_into_the_wrong_net_is_refused(scorers):
    with pytest.raises(RuntimeError, match="does not fit"):
        training.load_checkpoint(networks.LxmertMiniNet(configs.LxmertConfig()), scorers["clip-mini"].checkpoint_dir)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all"])
def test_a_damaged_checkpoint_is_one_message_naming_the_file_and_the_fix(tmp_path, content):
    (tmp_path / training.WEIGHTS).write_bytes(content)
    with pytest.raises(BadWeightsFile) as err:
        training.load_checkpoint(networks.ClipMiniNet(configs.ClipConfig()), tmp_path)
    msg = str(err.value)
    assert str(tmp_path / training.WEIGHTS) in msg and "delete the cache folder" in msg
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)


def test_unknown_settings_are_refused_with_the_valid_ones():
    with pytest.raises(TypeError, match="valid: smoke, seed, dim"):
        get_scorer("clip-mini", smoke=True, dimension=128)
    with pytest.raises(TypeError, match="valid: smoke, seed, order"):
        get_scorer("blind", smoke=True, n=4)


# --------------------------------------------------------------------------- what the models do on held-out items
@pytest.mark.parametrize("name, threshold", [("clip-mini", 0.6), ("uniter-mini", 0.55), ("lxmert-mini", 0.55)])
def test_trained_stand_ins_rank_held_out_pairs_where_an_untrained_net_cannot(name, threshold, scorers, heldout_scenes):
    """On test-split scenes: the true caption outscores other scenes' captions more often than a
    threshold that the same scorer with a random-init net does not reach (smoke training: 48 images)."""
    images, caps = heldout_scenes
    trained = _wins(scorers[name].score_matrix(images, caps))
    untrained = _wins(_random_init(name, scorers[name]).score_matrix(images, caps))
    assert untrained < threshold < trained, (untrained, trained)


def test_clip_mini_val_recall_is_far_above_chance(scorers):
    val = scorers["clip-mini"].info()["val"]
    assert val["value"] > 3 * val["chance"]


@pytest.mark.parametrize("name", ["uniter-mini", "lxmert-mini", "uniter-mini+neg", "lxmert-mini+neg", "blind+neg"])
def test_cross_encoder_matrix_equals_pairwise_scores(name, scorers, heldout):
    images, caps = heldout
    s = scorers[name]
    M = s.score_matrix(images[:3], caps[:4])
    pairs = s.score([im for im in images[:3] for _ in range(4)], caps[:4] * 3).reshape(3, 4)
    np.testing.assert_allclose(M, pairs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["blind", "blind+neg"])
def test_text_only_scorers_ignore_the_image(name, scorers, heldout):
    images, caps = heldout
    s = scorers[name]
    assert isinstance(s, base.TextOnly) and s.family == "text-only"
    np.testing.assert_array_equal(s.score(images[:3], caps[:3]), s.score(images[3:6], caps[:3]))
    assert np.ptp(s.score(images[:3], [caps[0]] * 3)) < 1e-6
    M = s.score_matrix(images[:3], caps[:5])
    assert (M == M[0]).all() and np.ptp(M[0]) > 0  # one row, repeated: retrieval is at chance by construction
    with pytest.raises(ValueError):
        s.score(images[:2], caps[:1])


# --------------------------------------------------------------------------- blind: the n-gram prior
@pytest.fixture(scope="module")
def heldout_captions():
    """Captions of test-split scenes and stamps (never counted by the prior)."""
    caps = [c for ds in ("tuxpaint-stamps", "stamp-scenes")
            for it in get_dataset(ds, split="test") for c in it.captions]
    return [c for c in caps if len(blind.tokenize(c)) >= 4][:120]


def test_blind_prefers_real_captions_to_shuffled_ones_on_held_out_captions(scorers, heldout_captions):
    rng = np.random.default_rng(0)
    shuffled = []
    for c in heldout_captions:
        words = c.split()
        while True:
            order = rng.permutation(len(words))
            if (order != np.arange(len(words))).any():
                break
        shuffled.append(" ".join(words[i] for i in order))
    s = scorers["blind"]
    real, broken = s.score([None] * len(shuffled), heldout_captions), s.score([None] * len(shuffled), shuffled)
    assert np.mean(real) > np.mean(broken) + 0.3 and np.mean(real > broken) > 0.8


def test_blind_gives_finite_scores_to_unseen_words(scorers):
    s = scorers["blind"]
    out = s.score([None] * 4, ["zyzzyva qwertyuiop", "a grumpfel", "!!!", "the the the the the the the the the"])
    assert np.isfinite(out).all() and (out < 0).all()


def test_blind_is_stored_as_json_counts_and_reloads_to_the_same_scores(scorers, heldout_captions):
    s = scorers["blind"]
    files = {p.name for p in s.checkpoint_dir.iterdir()}
    assert blind.MODEL_FILE in files and not any(f.endswith((".pkl", ".pickle", ".pt", ".bin")) for f in files)
    doc = json.loads((s.checkpoint_dir / blind.MODEL_FILE).read_text())
    again = blind.lm_from_json(doc)
    caps = heldout_captions[:20]
    mine = [blind.mean_logprob(again, blind.tokenize(c), s.floor) for c in caps]
    np.testing.assert_allclose(mine, s.score([None] * len(caps), caps), rtol=0, atol=1e-12)


def test_indexed_kneser_ney_equals_nltk_kneser_ney():
    from nltk.lm import KneserNeyInterpolated, Vocabulary
    from nltk.lm.preprocessing import padded_everygram_pipeline

    sents = [blind.tokenize(c) for c in ["A big red ball.", "A small red ball.", "Two cats left of a dog.",
                                         "A dog above a big cat.", "A red ball and a dog."]]
    cfg = configs.NgramConfig(unk_cutoff=1)
    ours = blind.fit_lm(sents, cfg)
    ref = KneserNeyInterpolated(cfg.order, discount=cfg.discount, vocabulary=Vocabulary(unk_cutoff=1))
    ref.fit(*padded_everygram_pipeline(cfg.order, sents))
    for ctx, w in [(("a", "big"), "red"), (("a",), "dog"), (("red", "ball"), "."), (("<s>", "<s>"), "two"),
                   (("of", "a"), "cat")]:
        assert ours.score(w, ctx) == pytest.approx(ref.score(w, ctx), rel=1e-12)
