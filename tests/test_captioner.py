"""The captioner (analysis.captioning.model) and its XE training (analysis.captioning.xe).

Tiny models on random features, except the split checks, which read the embedded data."""
from __future__ import annotations

import dataclasses
import doctest
import json

import pytest
import torch

from analysis import cache
from analysis.captioning import model as cm
from analysis.captioning import xe
from analysis.captioning.model import BOS, EOS, PAD, UNK, Captioner, CaptionerConfig, Vocab

TINY = CaptionerConfig(feat_dim=16, grid_tokens=4, d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.1, max_len=8)
CAPTIONS = ["a red ball", "a small dog left of a big cat", "two cakes", "there is a dog", "a cat above a ball"]


@pytest.mark.parametrize("module", [cm, xe])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, result


# ----------------------------------------------------------------------------- vocabulary
def test_vocab_round_trip_and_unknown_words():
    v = Vocab.build(CAPTIONS + ["A red BALL!"], min_count=1)
    assert v.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert v.words[4] == "a"  # the most frequent word comes first
    assert (v.index["<pad>"], v.index["<bos>"], v.index["<eos>"], v.index["<unk>"]) == (0, 1, 2, 3)
    for c in CAPTIONS:
        assert v.decode(v.encode(c)) == c
    assert v.decode([BOS] + v.encode("The red ball, twice.") + [EOS, 5]) == "<unk> red ball <unk>"
    assert v.encode("zebra") == [UNK]
    assert Vocab.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    # min_count drops rare words
    assert "cakes" not in Vocab.build(CAPTIONS, min_count=2).index
    with pytest.raises(ValueError, match="min_count"):
        Vocab.build(CAPTIONS, min_count=0)


# ----------------------------------------------------------------------------- the network
@pytest.fixture
def tiny():
    torch.manual_seed(0)
    vocab = Vocab.build(CAPTIONS)
    model = Captioner(vocab, TINY).eval()
    with torch.no_grad():
        model.out_bias[EOS] += 2.0  # an untrained model then ends some captions early and some late
    feats = torch.randn(3, TINY.grid_tokens, TINY.feat_dim)
    return model, vocab, feats


def test_forward_shapes_and_image_index(tiny):
    model, vocab, feats = tiny
    tokens = vocab.tensor(CAPTIONS[:3], TINY.max_len)
    logits = model(feats, tokens)
    assert logits.shape == (3, tokens.shape[1], len(vocab))
    assert torch.isinf(logits[..., [PAD, BOS]]).all()  # never written
    # image_index: rows pick their image; the same as repeating the features
    idx = torch.tensor([2, 0, 0, 1])
    rows = tokens[[0, 1, 2, 0]]
    torch.testing.assert_close(model(feats, rows, image_index=idx), model(feats[idx], rows))
    with pytest.raises(ValueError, match="image_index"):
        model(feats, rows)
    with pytest.raises(ValueError, match="grid tokens"):
        model(feats[:, 0], tokens)


def test_sample_shapes_mask_and_logprobs_match_teacher_forcing(tiny):
    model, vocab, feats = tiny
    k = 4
    ids, lp, mask = model.sample(feats, k, TINY.max_len, generator=torch.Generator().manual_seed(1))
    B = feats.shape[0] * k
    assert ids.shape == lp.shape == mask.shape and ids.shape[0] == B and ids.shape[1] <= TINY.max_len
    assert lp.requires_grad
    # mask: True up to and including the first <eos>, <pad> and log-prob 0 after it
    ends = []
    for r in range(B):
        row = ids[r].tolist()
        end = row.index(EOS) if EOS in row else len(row) - 1
        ends.append(end)
        assert mask[r].tolist() == [t <= end for t in range(len(row))]
        assert all(x == PAD for x in row[end + 1:]) and all(x not in (PAD, BOS) for x in row[:end + 1])
        assert (lp[r, end + 1:] == 0).all()
    assert len(set(ends)) > 1  # rows of different lengths: the mask semantics are exercised
    # the log-probs equal an independent teacher-forced pass over the sampled tokens
    tokens = torch.cat([torch.full((B, 1), BOS), ids[:, :-1]], 1)
    ref = torch.log_softmax(model(feats.repeat_interleave(k, 0), tokens), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(lp[mask], ref[mask], atol=1e-5, rtol=1e-5)
    (-(lp * mask).sum()).backward()
    assert model.feat_proj.weight.grad is not None and model.feat_proj.weight.grad.abs().sum() > 0


def test_sequence_logprobs_equal_the_samplers_and_their_gradients(tiny):
    """SCST draws without a graph and recomputes log-probabilities by one teacher-forced pass: the values (masked
    positions 0) and the gradient of an advantage-weighted loss equal those of the sampler's own log-probabilities."""
    model, _, feats = tiny
    k = 3
    ids, lp, mask = model.sample(feats, k, TINY.max_len, generator=torch.Generator().manual_seed(2))
    tf = model.sequence_logprobs(feats, ids, mask, k)
    torch.testing.assert_close(tf, lp, atol=1e-5, rtol=1e-5)
    assert (tf[~mask] == 0).all() and tf.requires_grad
    adv = torch.linspace(-1, 1, ids.shape[0])
    grads = []
    for v in (lp, tf):
        model.zero_grad()
        (-(adv * (v * mask).sum(1)).mean()).backward(retain_graph=True)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="same"):
        model.sequence_logprobs(feats, ids, mask[:, :-1], k)


def test_sample_rows_are_contiguous_per_image(tiny):
    model, _, feats = tiny
    ids, lp, mask = model.sample(feats, 3, greedy=True)
    solo, _, _ = model.sample(feats[1:2], 1, greedy=True)
    for r in (3, 4, 5):  # image 1's rows
        assert ids[r, :solo.shape[1]].tolist() == solo[0].tolist()


def test_sample_is_seeded_by_the_generator(tiny):
    model, _, feats = tiny
    a = model.sample(feats, 5, generator=torch.Generator().manual_seed(7))[0]
    b = model.sample(feats, 5, generator=torch.Generator().manual_seed(7))[0]
    c = model.sample(feats, 5, generator=torch.Generator().manual_seed(8))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_greedy_beam_and_step_logprobs_agree(tiny):
    model, vocab, feats = tiny
    greedy = model.greedy(feats)
    ids, lp, mask = model.sample(feats, 1, greedy=True)
    assert greedy == [vocab.decode(r) for r in ids.tolist()]
    assert model.beam(feats, 1) == greedy
    # step_logprobs (whole prefix at once) agrees with the incremental path at every step
    with torch.no_grad():
        for t in range(ids.shape[1]):
            step = model.step_logprobs(feats, ids[:, :t])
            assert step.shape == (3, len(vocab))
            got = step.gather(1, ids[:, t:t + 1]).squeeze(1)
            torch.testing.assert_close(got[mask[:, t]], lp[mask[:, t], t], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        model.sample(feats, 1, TINY.max_len + 1)


def test_wide_beam_finds_the_most_probable_caption():
    """With more beams than prefixes, beam search is exhaustive: compare with brute-force enumeration
    of every caption of at most 3 tokens, scored with step_logprobs."""
    import itertools

    torch.manual_seed(3)
    vocab = Vocab.build(["a cat", "a dog"])  # 3 words: 6 writable tokens (eos, unk, a, cat, dog; not pad/bos)
    model = Captioner(vocab, CaptionerConfig(feat_dim=8, grid_tokens=2, d_model=16, n_layers=1, n_heads=2,
                                             d_ff=16, max_len=3)).eval()
    with torch.no_grad():
        model.out_bias[EOS] += 1.0
    feats = torch.randn(2, 2, 8)
    writable = [i for i in range(len(vocab)) if i not in (PAD, BOS)]
    for i in range(2):
        best, best_seq = -float("inf"), None
        for n in (1, 2, 3):
            for seq in itertools.product(writable, repeat=n):
                if EOS in seq[:-1] or (n < 3 and seq[-1] != EOS):
                    continue
                with torch.no_grad():
                    s = sum(float(model.step_logprobs(feats[i:i + 1], torch.tensor([seq[:t]]))[0, seq[t]])
                            for t in range(n))
                if s > best:
                    best, best_seq = s, seq
        assert model.beam(feats[i:i + 1], beam_size=len(vocab) ** 2, max_len=3) == [vocab.decode(best_seq)]


# ----------------------------------------------------------------------------- XE training
def _synthetic(tmp_path, refs):
    """CaptionData of random grid features (the files exist only for the fingerprint)."""
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(len(refs)):
        p = tmp_path / f"img{i}.bin"
        p.write_bytes(bytes([i]) * 16)
        paths.append(p)
    grid = torch.randn(len(refs), TINY.grid_tokens, TINY.feat_dim, generator=g)
    return xe.CaptionData(grid=grid, pooled=grid.mean(1), refs=refs, paths=paths,
                          ids=[f"s:{i}" for i in range(len(refs))],
                          graphs=[None] * len(refs), dataset=["synthetic"] * len(refs), split="train",
                          features_key="synthetic-randn-seed0")


def test_xe_overfits_four_images_and_the_cache_returns_the_same_weights(tmp_cache, tmp_path, monkeypatch):
    refs = [["a red ball"], ["a small dog left of a big cat", "a dog and a cat"], ["two cakes"],
            ["there is a cat above a ball"]]
    data = _synthetic(tmp_path, refs)
    cfg = xe.XEConfig(model=TINY, min_count=1, steps=150, batch_images=4, lr=3e-3, warmup=0.05)
    model, vocab, folder = xe.train_xe(data, seed=0, config=cfg)
    log = json.loads((folder / "meta.json").read_text())["log"]
    assert log["loss_last"] < 0.2 * log["loss_first"]
    caps = model.greedy(data.grid)
    assert sum(c in r for c, r in zip(caps, data.tokenized_refs)) >= 3, caps
    assert vocab == model.vocab and (folder / "vocab.json").is_file()

    def no_training(*a, **k):
        raise AssertionError("train_xe trained again on a cache hit")

    monkeypatch.setattr(xe, "_train", no_training)
    again, _, folder2 = xe.train_xe(data, seed=0, config=cfg)
    assert folder2 == folder and again.weights_sha256 == model.weights_sha256
    assert again.weights_sha256 == cache.file_sha256(folder / "model.safetensors")
    assert again.greedy(data.grid) == caps
    with pytest.raises(ValueError, match="split"):
        xe.train_xe(dataclasses.replace(data, split="test"), config=cfg)


def test_xe_loss_label_smoothing_by_hand():
    logits = torch.tensor([[[0.0, 0.0, 1.0, 0.0, 2.0]]])  # V = 5: pad, bos, eos, unk, one word
    logits[..., [PAD, BOS]] = float("-inf")
    target = torch.tensor([[4]])
    z = torch.log(torch.exp(torch.tensor([1.0, 0.0, 2.0])).sum())  # log-partition over eos, unk, word
    assert xe.xe_loss(logits, target).item() == pytest.approx(float(z - 2.0))
    smooth = 0.9 * (z - 2.0) + 0.1 * ((z - 1.0) + (z - 0.0) + (z - 2.0)) / 3
    assert xe.xe_loss(logits, target, 0.1).item() == pytest.approx(float(smooth))
    assert xe.xe_loss(logits.repeat(1, 2, 1), torch.tensor([[4, PAD]])).item() == pytest.approx(float(z - 2.0))


# ----------------------------------------------------------------------------- data
def test_caption_splits_are_disjoint_by_image_file():
    train = xe.caption_items("train")
    test = xe.caption_items("test")
    train_files = {cache.file_sha256(it.path) for _, it in train}
    assert not train_files & {cache.file_sha256(it.path) for _, it in test}
    assert {n for n, _ in test} == set(xe.DATASETS)


def test_caption_data_smoke_fields():
    d = xe.caption_data("test", smoke=True)
    n = len(d)
    assert d.grid.shape == (n, 49, 1280) and d.grid.dtype == torch.float32 and d.pooled.shape == (n, 1280)
    assert len(d.refs) == len(d.paths) == len(d.graphs) == len(d.dataset) == n and len(set(d.ids)) == n
    for ds, g, refs in zip(d.dataset, d.graphs, d.refs):
        assert (g is None) == (ds == "tuxpaint-stamps")
        assert len(refs) == (5 if ds == "stamp-scenes" else 1)
    torch.testing.assert_close(d.pooled, d.grid.mean(1), atol=1e-2, rtol=1e-2)  # grid stored fp16
    sub = d.subset([2, 0])
    assert sub.ids == [d.ids[2], d.ids[0]] and torch.equal(sub.grid[1], d.grid[0])


def test_no_test_reference_is_a_training_reference_in_the_captioner_word_form():
    """Leakage by content: after the captioner's normalisation (lower-case letters only), no reference of a test
    image equals a reference of a training image, so XE cannot have memorised a test caption."""
    from analysis.captioning.model import normalise
    from analysis.captioning.xe import caption_items

    train = {normalise(c) for _, it in caption_items("train") for c in it.captions}
    test = {normalise(c) for _, it in caption_items("test") for c in it.captions}
    assert train and test and not train & test, sorted(train & test)[:5]


def test_scene_pool_is_the_scene_datasets_pool():
    from analysis import registry
    from analysis.captioning.xe import scene_pool

    class Data:  # only the provenance is read
        provenance = {"datasets": ["tuxpaint-stamps", "stamp-scenes"], "split": "test"}

    pool = scene_pool(Data())
    assert pool == list(dict.fromkeys(registry.get_dataset("stamp-scenes", split="test").provenance["pool"]))
    Data.provenance = {"datasets": ["tuxpaint-stamps"], "split": "test"}
    assert scene_pool(Data()) == []
