"""Reward-guided decoding (analysis.captioning.guided): at prior weight 0 the scorer's best candidate among
those proposed wins; with a constant reward the search is the prior's own beam search (Captioner.beam for the
XE prior; an exhaustive enumeration by full LM forwards for SmolLM2); on an exhaustively searched tree a
larger weight never lowers the prior log-prob nor raises the reward; LM proposals are word-like; bad
arguments are refused by name.

The XE prior is the smoke XE captioner on the smoke test split (trained once, cached); the LM prior is the
real SmolLM2-135M-Instruct from the cache entry of analysis.fluency (converted once per machine), used for
two images and two or three steps.
"""
from __future__ import annotations

import doctest
import math
import re

import numpy as np
import pytest
import torch

from analysis.captioning import guided as G

IMAGES = [0, 1, 2, 24, 25, 26]  # three stamps, three stamp scenes of the smoke test split


def letters_reward(rows, captions):
    """A reward known by hand: the number of distinct letters in the caption, minus 0.1 per word."""
    return np.array([len(set(c.replace(" ", ""))) - 0.1 * len(c.split()) for c in captions], dtype=float)


def constant_reward(rows, captions):
    return np.zeros(len(captions))


class Recorder:
    """Wraps a reward and records every (image, caption) it is asked to score."""

    def __init__(self, fn):
        self.fn, self.seen = fn, []

    def __call__(self, rows, captions):
        self.seen += list(zip(np.asarray(rows).tolist(), captions))
        return self.fn(rows, captions)


@pytest.fixture(scope="module")
def smoke():
    from analysis.captioning.xe import caption_data, train_xe

    data = caption_data("test", smoke=True)
    captioner, _, _ = train_xe(caption_data("train", smoke=True), smoke=True)
    return data, captioner


@pytest.fixture(scope="module")
def lm_prior():
    return G.LMPrior()


def test_doctests():
    result = doctest.testmod(G, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 1 and result.failed == 0, result


# ----------------------------------------------------------------------------- weight 0: the scorer's best
def _check_weight_zero(results, reward):
    for r in results:
        cands = r["candidates"]
        assert len(cands) > 1 and len(set(cands)) > 1
        values = reward(np.full(len(cands), r["image"]), cands)  # the reward recomputed, independently
        np.testing.assert_allclose(r["candidate_scores"], values)
        assert len(set(values)) > 1  # the choice is not a tie of everything
        assert r["score"] == pytest.approx(values.max())
        assert reward(np.array([r["image"]]), [r["caption"]])[0] == pytest.approx(values.max())
        assert r["caption"] in cands


def test_weight_zero_returns_the_scorers_best_candidate_xe(smoke):
    data, captioner = smoke
    rec = Recorder(letters_reward)
    results = G.guided_decode(data, IMAGES, rec, G.XEPrior(captioner, data), weight=0.0, beam=3, top_k=4,
                              max_len=6, progress=False)
    _check_weight_zero(results, letters_reward)
    assert len(rec.seen) == len(set(rec.seen))  # no (image, caption) is scored twice
    assert [r["image_id"] for r in results] == [data.ids[i] for i in IMAGES]


def test_weight_zero_returns_the_scorers_best_candidate_lm(smoke, lm_prior):
    data, _ = smoke
    results = G.guided_decode(data, [0, 24], letters_reward, lm_prior, weight=0.0, beam=2, top_k=3, max_len=3,
                              progress=False)
    _check_weight_zero(results, letters_reward)


# ----------------------------------------------------------------------------- constant reward: the prior's beam
def test_constant_reward_is_the_captioners_own_beam_search(smoke):
    data, captioner = smoke
    prior = G.XEPrior(captioner, data, allow_unk=True)
    for beam, top_k in [(3, 3), (2, 5)]:
        got = G.guided_decode(data, IMAGES, constant_reward, prior, weight=1.0, beam=beam, top_k=top_k,
                              max_len=10, progress=False)
        want = captioner.beam(data.grid[torch.as_tensor(IMAGES)], beam, 10)
        assert [r["caption"] for r in got] == want
    # the log-probability reported is the captioner's own (teacher forcing of the caption and <eos>)
    r = got[0]
    ids = captioner.vocab.tensor([r["caption"]], 12)
    logp = torch.log_softmax(captioner(data.grid[[IMAGES[0]]], ids[:, :-1]).double(), -1)
    n = int((ids[0, 1:] != 0).sum()) if r["finished"] else len(r["caption"].split())
    ref = sum(logp[0, t, ids[0, t + 1]].item() for t in range(n))
    assert r["prior_logprob"] == pytest.approx(ref, abs=1e-4)


def test_constant_reward_is_the_lms_best_path_of_the_proposal_tree(smoke, lm_prior):
    """beam = top_k and two steps keep the whole tree, so the result is the most probable of: a first piece
    and the end, or two pieces; enumerated here with full (uncached) LM forwards and the tokenizer's own
    decoding of each piece."""
    from analysis.fluency import load_lm

    data, _ = smoke
    model, tok = load_lm("cpu")
    decoded = [tok.decode([i]) for i in range(len(tok))]
    ok = torch.tensor([bool(re.fullmatch(r" ?[A-Za-z]+", d)) for d in decoded])
    ends = [tok.convert_tokens_to_ids(t) for t in (".", "Ċ", "<|endoftext|>")]
    root = [0] + tok("A picture of", add_special_tokens=False)["input_ids"]

    def logp(ids):
        with torch.no_grad():
            return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)

    best = (-math.inf, None)
    l0 = logp(root)
    for a in l0.masked_fill(~ok, -math.inf).topk(3).indices.tolist():
        l1 = logp(root + [a])
        best = max(best, (l0[a].item() + torch.logsumexp(l1[ends], 0).item(), decoded[a]))
        for b in l1.masked_fill(~ok, -math.inf).topk(3).indices.tolist():
            best = max(best, (l0[a].item() + l1[b].item(), decoded[a] + decoded[b]))
    got = G.guided_decode(data, [0, 24], constant_reward, lm_prior, weight=1.0, beam=3, top_k=3, max_len=2,
                          progress=False)
    for r in got:  # image-blind: the same caption for both images
        assert r["caption"] == best[1].strip()
        assert r["prior_logprob"] == pytest.approx(best[0], abs=1e-3)


# ----------------------------------------------------------------------------- the weight trades reward for prior
def test_larger_weight_raises_prior_logprob_and_lowers_reward(smoke):
    """top_k 2, three steps and beam 16 keep every hypothesis (pools of 2, 6 and 14), so each weight ranks the
    same final candidates: the argmax of R + w·LP over a fixed set has LP non-decreasing and R
    non-increasing in w."""
    data, captioner = smoke
    prior = G.XEPrior(captioner, data)
    weights = [0.0, 0.05, 0.2, 1.0, 5.0, 100.0]
    runs = [G.guided_decode(data, IMAGES, letters_reward, prior, weight=w, beam=16, top_k=2, max_len=3,
                            progress=False) for w in weights]
    moved = 0
    for k in range(len(IMAGES)):
        per = [run[k] for run in runs]
        assert all(sorted(p["candidates"]) == sorted(per[0]["candidates"]) for p in per)  # a fixed set
        lp = [p["prior_logprob"] for p in per]
        rw = [p["score"] for p in per]
        assert all(b >= a - 1e-9 for a, b in zip(lp, lp[1:])), lp
        assert all(b <= a + 1e-9 for a, b in zip(rw, rw[1:])), rw
        assert rw[0] == pytest.approx(max(per[0]["candidate_scores"]))
        assert lp[-1] == pytest.approx(max(per[0]["candidate_logprobs"]))
        moved += rw[0] > rw[-1] and lp[-1] > lp[0]
    assert moved >= 1  # the constructed case is not trivial: the two ends differ


# ----------------------------------------------------------------------------- proposals
def test_lm_proposals_are_word_like_with_an_end_option(lm_prior):
    start = lm_prior.start(0)
    first = lm_prior.propose([start], 8)[0]
    assert len(first) == 8 and not any(p.end for p in first)  # no empty caption
    assert all(re.fullmatch(r" ?[A-Za-z]+", p.piece) for p in first)
    child = first[0].state
    assert child.text == first[0].piece.strip() and child.ids == (child.ids[0],)
    second = lm_prior.propose([child, first[1].state], 5)
    for props in second:
        words, end = props[:-1], props[-1]
        assert len(words) == 5 and all(re.fullmatch(r" ?[A-Za-z]+", p.piece) and not p.end for p in words)
        assert end.end and end.piece == "" and end.logprob < 0
        lps = [p.logprob for p in words]
        assert lps == sorted(lps, reverse=True) and lps[0] <= 0
    assert lm_prior.label == "SmolLM2-135M-Instruct (open English, image-blind)"


def test_xe_proposals_never_offer_specials(smoke):
    data, captioner = smoke
    prior = G.XEPrior(captioner, data)
    props = prior.propose([prior.start(0)], len(captioner.vocab))
    pieces = [p.piece for p in props[0]]
    assert not {"<pad>", "<bos>", "<eos>", "<unk>"} & set(pieces) and len(pieces) == len(captioner.vocab) - 4
    assert prior.label == "XE captioner (trained here, in-domain)"


# ----------------------------------------------------------------------------- sweep and errors
def test_sweep_rows(smoke):
    data, captioner = smoke
    df = G.sweep(data, [0, 24], constant_reward, [G.XEPrior(captioner, data)], [0.0, 2.0], beam=2, top_k=3,
                 max_len=4, progress=False)
    assert len(df) == 4 and list(df["weight"]) == [0.0, 0.0, 2.0, 2.0]
    for col in ("prior", "weight", "image", "image_id", "caption", "score", "prior_logprob", "length", "seconds"):
        assert col in df.columns
    assert (df["length"] == df["caption"].str.split().str.len()).all()


@pytest.mark.parametrize("kw, match", [({"beam": 0}, "beam"), ({"weight": -1.0}, "weight"),
                                       ({"weight": float("nan")}, "weight"), ({"top_k": 0}, "top_k"),
                                       ({"max_len": 0}, "max_len"), ({"max_len": 99}, "max_len"),
                                       ({"prior_term": "sum"}, "prior_term"), ({"length_norm": -1}, "length_norm")])
def test_bad_arguments_are_named(smoke, kw, match):
    data, captioner = smoke
    args = {"weight": 0.0, **kw}
    with pytest.raises(ValueError, match=match):
        G.guided_decode(data, [0], constant_reward, G.XEPrior(captioner, data), progress=False, **args)


def test_bad_images_are_named(smoke):
    data, captioner = smoke
    prior = G.XEPrior(captioner, data)
    with pytest.raises(ValueError, match="images is empty"):
        G.guided_decode(data, [], constant_reward, prior, weight=0.0)
    with pytest.raises(IndexError, match="outside"):
        G.guided_decode(data, [len(data)], constant_reward, prior, weight=0.0)


def test_lm_proposals_equal_full_forwards_whatever_was_cached(lm_prior):
    """Proposals of states reached through fresh forwards, cache hits (a child whose parent came from the cache
    carries an older key/value cache and feeds two tokens) and mixed batches equal full uncached forwards."""
    from analysis.fluency import load_lm

    model, tok = load_lm("cpu")
    prior = G.LMPrior(model=model, tokenizer=tok)

    def check(state, props):
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([prior.prompt + list(state.ids)])).logits[0, -1]
                                   .double(), -1)
        words = [p for p in props if not p.end]
        np.testing.assert_allclose([p.logprob for p in words], lp[[p.state.ids[-1] for p in words]].numpy(),
                                   atol=1e-4)
        if state.ids:
            assert props[-1].logprob == pytest.approx(torch.logsumexp(lp[prior.end_ids], 0).item(), abs=1e-4)

    start = prior.start(0)
    first = prior.propose([start], 3)[0]
    check(start, first)
    a, b = first[0].state, first[1].state
    check(a, prior.propose([a], 3)[0])  # one new token on the start's cache
    pa, pb = prior.propose([a, b], 3)  # a from the cache, b computed: a mixed batch
    check(a, pa)
    check(b, pb)
    assert prior.cache.hits == 1
    grand = pa[0].state  # its parent came from the cache: its key/value cache covers the prompt only
    assert grand.extra[1] == len(prior.prompt)
    check(grand, prior.propose([grand, pb[1].state], 3)[0])


def test_a_warm_cache_gives_the_same_result(smoke):
    data, captioner = smoke
    prior = G.XEPrior(captioner, data)
    first = G.guided_decode(data, IMAGES, letters_reward, prior, weight=0.3, progress=False)
    assert prior.cache.misses > 0
    misses = prior.cache.misses
    again = G.guided_decode(data, IMAGES, letters_reward, prior, weight=0.3, progress=False)
    assert prior.cache.misses == misses  # every proposal came from the cache the second time
    assert [(r["caption"], r["prior_logprob"], r["score"]) for r in again] == \
        [(r["caption"], r["prior_logprob"], r["score"]) for r in first]
