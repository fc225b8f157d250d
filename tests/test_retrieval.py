"""Retrieval-augmented captioning (analysis.captioning.retrieval): retrieval on constructed embeddings
(known top-k, ties by index, an alignment map that fixes a known rotation), the prompt, the FLAN-T5 path
on a tiny random T5 saved with ``save_pretrained``, the SmolLM2 path, the nearest-neighbour baseline,
datastore caching and augmentation, the caption cache, and a datastore of training captions only.

The tiny T5 uses a real ``T5Tokenizer`` (a SentencePiece-style Unigram model) built offline from a word
and character vocabulary and saved as ``tokenizer.json``: only the plumbing is tested, weights are random.
"""
import re
import string

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import special_ortho_group

from analysis.captioning import retrieval as R


def store_of(captions, emb, name="toy"):
    emb = np.asarray(emb, float)
    return R.Datastore(tuple(captions), emb / np.linalg.norm(emb, axis=1, keepdims=True), name, "fp-" + name)


def unit(angle_deg):
    a = np.deg2rad(angle_deg)
    return np.array([np.cos(a), np.sin(a)])


class Procrustes:
    """A tiny alignment map: ``x ↦ x W`` with ``W`` from ``scipy.linalg.orthogonal_procrustes(X, Y)``."""

    def __init__(self, x, y):
        self.w, _ = orthogonal_procrustes(x, y)

    def apply(self, x):
        return np.asarray(x) @ self.w


class Rotate90:
    def apply(self, x):  # (a, b) -> (b, -a): a clockwise quarter turn
        x = np.asarray(x, float)
        return np.stack([x[:, 1], -x[:, 0]], axis=1)


# --------------------------------------------------------------------------- retrieval
def test_retrieve_known_top_k_in_order():
    # captions at 0°, 30°, 60°, 90°, 180°; a query at 50° is 10° from 60°, 20° from 30°, 40° from 90°,
    # 50° from 0° (and 130° from 180°)
    store = store_of(list("abcde"), [unit(0), unit(30), unit(60), unit(90), unit(180)])
    idx, sims = R.retrieve(unit(50), store, k=4)
    assert idx.tolist() == [[2, 1, 3, 0]]
    np.testing.assert_allclose(sims[0], np.cos(np.deg2rad([10, 20, 40, 50])), atol=1e-12)
    # the query's length does not matter (cosine); k larger than the store gives all of it
    idx2, _ = R.retrieve(7.5 * unit(50), store, k=50)
    assert idx2.tolist() == [[2, 1, 3, 0, 4]]


def test_retrieve_breaks_ties_by_index_and_is_deterministic():
    # rows 1, 3 and 4 are the same direction (4 written with a different length): an exact three-way tie
    emb = [unit(90), unit(20), unit(0), unit(20), 3 * unit(20)]
    store = store_of(["n", "t1", "x", "t2", "t3"], emb)
    q = np.stack([unit(20), unit(20.0)])
    first = R.retrieve(q, store, k=4)
    assert first[0].tolist() == [[1, 3, 4, 2], [1, 3, 4, 2]]
    for _ in range(3):
        again = R.retrieve(q, store, k=4)
        assert np.array_equal(again[0], first[0]) and np.array_equal(again[1], first[1])
    # a store with the tied rows in another order still puts the lower index first
    rev = store_of(["t3", "t2", "x", "t1"], [3 * unit(20), unit(20), unit(0), unit(20)])
    assert R.retrieve(unit(20), rev, k=3)[0].tolist() == [[0, 1, 3]]


def test_retrieve_refuses_bad_input():
    store = store_of("ab", np.eye(2))
    with pytest.raises(ValueError, match="k must be at least 1"):
        R.retrieve(np.ones(2), store, k=0)
    with pytest.raises(ValueError, match="dimension 3 but the datastore"):
        R.retrieve(np.ones(3), store)
    with pytest.raises(ValueError, match="zero or not finite"):
        R.retrieve(np.zeros(2), store)
    with pytest.raises(TypeError, match=r"\.apply"):
        R.retrieve(np.ones(2), store, alignment=np.eye(2))


def test_alignment_fixes_a_quarter_turn():
    """Images live in a space turned a quarter counter-clockwise from the texts': unaligned retrieval picks
    the wrong caption, the inverse turn picks the right one."""
    store = store_of(["east", "north"], [unit(0), unit(90)])
    image_of_east = unit(90)  # the image of "east" sits at 90° in image space
    assert R.nearest_neighbour_caption(image_of_east, store) == "north"
    assert R.nearest_neighbour_caption(image_of_east, store, alignment=Rotate90()) == "east"


def test_procrustes_alignment_recovers_a_random_rotation():
    """Image embeddings = text embeddings under a known random rotation (d = 16) plus a little noise: a
    Procrustes map fitted on 200 training pairs (scipy) makes top-1 retrieval of 50 held-out images right;
    without it retrieval is near chance."""
    rng = np.random.default_rng(0)
    d, n_fit, n_test = 16, 200, 50
    rot = special_ortho_group.rvs(d, random_state=1)
    texts = rng.normal(size=(n_fit + n_test, d))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    images = texts @ rot + 0.01 * rng.normal(size=texts.shape)
    align = Procrustes(images[:n_fit], texts[:n_fit])
    store = store_of([f"caption {i}" for i in range(n_test)], texts[n_fit:])
    truth = np.arange(n_test)
    aligned, _ = R.retrieve(images[n_fit:], store, k=1, alignment=align)
    unaligned, _ = R.retrieve(images[n_fit:], store, k=1)
    assert np.array_equal(aligned[:, 0], truth)
    assert np.mean(unaligned[:, 0] == truth) < 0.2
    assert R.nearest_neighbour_caption(images[n_fit:n_fit + 3], store, alignment=align) == \
        ["caption 0", "caption 1", "caption 2"]


# --------------------------------------------------------------------------- prompt and post-processing
def test_prompt_holds_every_retrieved_caption_and_the_template():
    retrieved = ["A zebra.", "a big horse on a plain background", "Two  ponies\nin a field"]
    p = R.build_prompt(retrieved)
    for c in ["A zebra.", "a big horse on a plain background", "Two ponies in a field"]:
        assert f"- {c}\n" in p
    head, tail = R.PROMPT.split("{captions}")
    assert p.startswith(head) and p.endswith(tail)
    assert p.index("A zebra.") < p.index("a big horse") < p.index("Two ponies")  # most similar first
    custom = R.build_prompt(["x y"], template="Similar: {captions}. Caption:")
    assert custom == "Similar: - x y. Caption:"
    with pytest.raises(ValueError, match=r"\{captions\}"):
        R.build_prompt(["a"], template="no placeholder")
    with pytest.raises(ValueError, match="at least one"):
        R.build_prompt([])


def test_one_sentence_cases():
    assert R.one_sentence("A koala.") == "A koala."
    assert R.one_sentence('"A brown hen sitting in straw." Another sentence.') == "A brown hen sitting in straw."
    assert R.one_sentence("Answer: a big bear\nmore text") == "a big bear"
    assert R.one_sentence("a cat wearing a hat") == "a cat wearing a hat"
    assert R.one_sentence("...") == "" and R.one_sentence("") == ""


# --------------------------------------------------------------------------- datastore
class CountingEncoder:
    """A text encoder with a checkpoint hash that counts its calls (embeds by hashing characters)."""

    def __init__(self, checkpoint_hash="h0", d=8):
        self.checkpoint_hash, self.d, self.calls = checkpoint_hash, d, 0

    def encode_text(self, captions):
        self.calls += 1
        out = np.zeros((len(captions), self.d))
        for i, c in enumerate(captions):
            for j, ch in enumerate(c):
                out[i, (ord(ch) + j) % self.d] += 1.0
        return out


def test_build_datastore_is_cached_by_content_and_deduplicated(tmp_cache):
    enc = CountingEncoder()
    caps = ["A dog runs.", "a dog runs", "A cat sleeps.", "Two birds."]
    s1 = R.build_datastore(caps, enc.encode_text, name="toy")
    assert s1.captions == ("A dog runs.", "A cat sleeps.", "Two birds.") and enc.calls == 1
    np.testing.assert_allclose(np.linalg.norm(s1.embeddings, axis=1), 1.0)
    ref = enc.encode_text(list(s1.captions))
    np.testing.assert_allclose(s1.embeddings, ref / np.linalg.norm(ref, axis=1, keepdims=True))
    enc.calls = 0
    s2 = R.build_datastore(caps, enc.encode_text, name="toy")
    assert enc.calls == 0 and s2.fingerprint == s1.fingerprint and np.array_equal(s2.embeddings, s1.embeddings)
    other = CountingEncoder("h1")
    s3 = R.build_datastore(caps, other.encode_text, name="toy")
    assert other.calls == 1 and s3.fingerprint != s1.fingerprint  # another checkpoint: a new entry
    with pytest.raises(ValueError, match="read-only"):
        s1.embeddings[0, 0] = 0.0
    # without any checkpoint hash the embeddings are computed, never cached
    calls = []
    R.build_datastore(caps, lambda xs: calls.append(1) or np.ones((len(xs), 2)) + np.eye(len(xs), 2), name="anon")
    R.build_datastore(caps, lambda xs: calls.append(1) or np.ones((len(xs), 2)) + np.eye(len(xs), 2), name="anon")
    assert len(calls) == 2


def test_augment_datastore_keeps_only_above_threshold_and_never_duplicates():
    store = store_of(["a dog", "a cat"], [[1, 0, 0], [0, 1, 0]])
    cands = ["A dog.", "a bird", "a fish", "A bird!", "a horse", "a snake", ""]
    scores = [0.9, 0.8, 0.1, 0.95, 0.5, 0.4, 0.99]
    emb = np.array([[1, 0, 0], [0, 0, 2], [1, 1, 1], [0, 0, 3], [1, 0, 1], [0, 1, 1], [1, 1, 0]], float)
    new = R.augment_datastore(store, cands, scores, threshold=0.4, embeddings=emb)
    # "A dog." duplicates the store, "a fish" is below and "a snake" at the threshold (strictly above is
    # needed), the blank one is skipped; of the two birds only the higher-scoring "A bird!" is added
    assert new.captions == ("a dog", "a cat", "A bird!", "a horse")
    assert new.n_synthetic == 2 and len(new) == 4
    np.testing.assert_allclose(new.embeddings[2:], [[0, 0, 1], [2 ** -0.5, 0, 2 ** -0.5]])
    assert len({R.caption_key(c) for c in new.captions}) == len(new)
    assert store.captions == ("a dog", "a cat") and len(store.embeddings) == 2  # the input is unchanged
    assert new.fingerprint != store.fingerprint
    # adding again the same candidates changes nothing; nothing above the threshold returns the store
    again = R.augment_datastore(new, cands, scores, threshold=0.4, embeddings=emb)
    assert again is new
    assert R.augment_datastore(store, cands, scores, threshold=1.0, embeddings=emb) is store


def test_training_datastore_captions_share_nothing_with_the_test_split():
    """The default datastore's captions come from the training split only: no caption of the test split,
    compared in the probe's normalised form (lower-case words, as CIDEr-D sees them), is among them."""
    from analysis.captioning.model import normalise
    from analysis.captioning.xe import caption_items

    train = R.training_captions()
    test = {normalise(c) for _, it in caption_items("test") for c in it.captions}
    assert len(train) > 500 and len(test) > 100
    assert not ({normalise(c) for c in train} & test)
    train_items = {normalise(c) for _, it in caption_items("train") for c in it.captions}
    assert {normalise(c) for c in train} == train_items  # every training reference is kept (deduplicated)


# --------------------------------------------------------------------------- generators
T5_WORDS = ("a an the of on in with and to for this is one write caption captions similar images image "
            "dog cat bird horse zebra bear big small red two picture").split()


def tiny_t5_folder(folder, seed=0):
    """A random tiny T5ForConditionalGeneration (d_model 16, one layer each side) and a real T5Tokenizer
    (Unigram: specials, words, then single characters so any text tokenises) via ``save_pretrained``.
    The output rows of ``<pad>`` and ``</s>`` are zeroed so that greedy decoding writes something."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = ([("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
             + [("▁" + w, -2.0) for w in T5_WORDS] + [(c, -5.0) for c in chars])
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    cfg = T5Config(vocab_size=len(tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                   num_heads=2, initializer_factor=1.0, tie_word_embeddings=False,
                   decoder_start_token_id=tok.pad_token_id,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(cfg)
    with torch.no_grad():  # output rows of <pad> and </s> zeroed (logit 0): greedy decoding writes words first
        model.lm_head.weight[[tok.pad_token_id, tok.eos_token_id]] = 0.0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    return tiny_t5_folder(tmp_path_factory.mktemp("tiny-t5"))


class BlankGenerator:
    """A generator object (the interface :func:`R.load_generator` accepts) whose every output is blank."""

    name = model_hash = label = "blank"

    def model_input(self, prompt):
        return prompt

    def generate(self, inputs, decoding):
        return [[" ... "] * decoding.n_candidates for _ in inputs]


class CountingModel:
    """Wraps a model's ``generate`` and counts the calls."""

    def __init__(self, gen):
        self.gen, self.calls, self.orig = gen, 0, gen.model.generate

        def counted(*a, **kw):
            self.calls += 1
            return self.orig(*a, **kw)

        gen.model.generate = counted


def test_flan_t5_path_loads_a_saved_folder_and_generates(t5_folder, tmp_cache):
    gen = R.load_generator(f"flan-t5:{t5_folder}")
    assert gen.kind == "seq2seq" and type(gen.model).__name__ == "T5ForConditionalGeneration"
    assert type(gen.tokenizer).__name__.startswith("T5Tokenizer")
    assert gen.model_input("plain prompt") == "plain prompt"  # seq2seq: no chat template
    assert len(gen.model_hash) == 64 and gen.model_hash == R.folder_hash(t5_folder)
    out = gen.generate([R.build_prompt(["a big dog", "a dog"]), R.build_prompt(["a red bird"])],
                       R.Decoding(max_new_tokens=6))
    assert len(out) == 2 and all(len(o) == 1 and isinstance(o[0], str) and o[0].strip() for o in out)
    # through the captioner: every row has the fields, and a caption that is never empty
    store = store_of(["a big dog", "a dog", "a red bird"], np.eye(3))
    rows = R.RetrievalCaptioner(store, lm=f"flan-t5:{t5_folder}", k=2, progress=False).caption(np.eye(3)[[0, 2]])
    assert [r["retrieved"] for r in rows] == [["a big dog", "a dog"], ["a red bird", "a big dog"]]
    for r in rows:
        assert r["caption"] and r["prompt"] == R.build_prompt(r["retrieved"]) and r["lm"].startswith("flan-t5:")
        assert not r["fallback"] and r["caption"] == R.one_sentence(r["raw"]) and r["candidates"] == [r["caption"]]
    # an output that is empty after post-processing: the top retrieved caption stands in, flagged
    blank = R.RetrievalCaptioner(store, lm=BlankGenerator(), k=2, progress=False, cache=False).caption(np.eye(3)[[1]])
    assert blank[0]["fallback"] and blank[0]["caption"] == "a dog" and blank[0]["raw"] == " ... "
    with pytest.raises(FileNotFoundError, match="huggingface-cli download google/flan-t5-base"):
        R.load_generator(f"flan-t5:{t5_folder}/missing")
    with pytest.raises(ValueError, match="unknown lm"):
        R.load_generator("gpt-2")


def test_caption_cache_answers_a_rerun_without_the_model(t5_folder, tmp_cache):
    gen = R.load_generator(f"flan-t5:{t5_folder}")
    counter = CountingModel(gen)
    store = store_of(["a big dog", "a dog", "a red bird", "two cats"], np.eye(4))
    cap = R.RetrievalCaptioner(store, lm=gen, k=2, batch_size=2, progress=False)
    embs = np.eye(4)[[0, 1, 2, 3, 0]]  # five images, four distinct prompts (the last repeats the first)
    first = cap.caption(embs)
    assert counter.calls == 2  # four distinct prompts in batches of two
    second = cap.caption(embs)
    assert counter.calls == 2 and second == first
    # another decoding is another cache entry; cache=False always generates
    cap.caption(embs, decoding=R.Decoding(max_new_tokens=3))
    assert counter.calls == 4
    R.RetrievalCaptioner(store, lm=gen, k=2, batch_size=8, cache=False, progress=False).caption(embs[:1])
    assert counter.calls == 5


def test_candidates_are_seeded_and_reranked(t5_folder, tmp_cache):
    """n_candidates > 1 samples per prompt reproducibly (same seed, same samples, whatever else is in the
    call) and keeps the candidate the re-ranking function scores highest."""
    gen = R.load_generator(f"flan-t5:{t5_folder}")
    store = store_of(["a big dog", "a dog", "a red bird"], np.eye(3))
    dec = R.Decoding(n_candidates=4, max_new_tokens=6, temperature=1.5, top_p=1.0, seed=3,
                     stop_at_sentence_end=False)
    seen = []

    def longest(q, cands):
        seen.append((np.asarray(q).copy(), list(cands)))
        return np.array([len(c) for c in cands], float)

    kw = dict(lm=gen, k=2, decoding=dec, progress=False, cache=False)
    rows = R.RetrievalCaptioner(store, rerank=longest, **kw).caption(np.eye(3))
    alone = R.RetrievalCaptioner(store, rerank=longest, **kw).caption(np.eye(3)[[2]])
    assert alone[0]["candidates"] == rows[2]["candidates"]
    for r in rows:
        assert len(r["candidates"]) == 4 and r["scores"] is not None
        ok = [c for c in r["candidates"] if c]
        if ok:
            assert r["caption"] == max(ok, key=len) and not r["fallback"]
    np.testing.assert_allclose(seen[0][0], [1.0, 0.0, 0.0])  # the re-ranker gets the (normalised) query
    # aclip_rerank: CLIP-S of the query against "A photo depicts " + candidate
    enc = CountingEncoder(d=3)
    score = R.aclip_rerank(enc.encode_text)
    got = score(np.array([1.0, 0.0, 0.0]), ["ab", "cd"])
    u = enc.encode_text(["A photo depicts ab", "A photo depicts cd"])
    np.testing.assert_allclose(got, 2.5 * np.clip(u[:, 0] / np.linalg.norm(u, axis=1), 0, None))


def test_captioner_with_images_needs_an_image_encoder(t5_folder):
    store = store_of(["a dog"], np.eye(1, 2))
    with pytest.raises(ValueError, match="encode_image"):
        R.RetrievalCaptioner(store, lm=f"flan-t5:{t5_folder}").caption(["not an embedding"])
    with pytest.raises(ValueError, match=r"\{captions\}"):
        R.RetrievalCaptioner(store, template="bad")


@pytest.fixture(scope="module")
def smollm2():
    from analysis import fluency

    try:
        return R.load_generator(R.SMOLLM2)
    except fluency.LMUnavailable as e:
        pytest.skip(f"SmolLM2-135M-Instruct is not installed here: {e}")


def test_smollm2_writes_one_sentence(smollm2):
    """The embedded instruct LM (greedy, at most 20 new tokens) writes a non-empty one-sentence caption
    for one prompt; the model reads the prompt through its chat template (system turn, then user turn)."""
    prompt = R.build_prompt(["A colorful rooster.", "A chicken.", "a big hen on a plain background"])
    text = smollm2.model_input(prompt)
    assert R.SYSTEM in text and prompt in text and text.rstrip().endswith("assistant")
    raw = R.generate_cached(smollm2, [text], R.Decoding(), cache=False, progress=False)[0]
    assert len(raw) == 1
    caption = R.one_sentence(raw[0])
    assert caption and "\n" not in caption
    assert re.search(r"[.!?]\s+\S", caption) is None  # no second sentence


# --------------------------------------------------------------------------- the page (realign-captions)
def test_aligned_nearest_neighbour_is_the_datastore_caption_with_the_highest_aclip_s():
    """Aligned top-1 retrieval maximises aCLIP-S over the datastore (the by-construction advantage the page
    states), and unaligned top-1 maximises CLIP-S: checked against analysis.metrics' own aclip_s / clip_s."""
    from analysis import alignment, metrics

    rng = np.random.default_rng(3)
    d, n_fit, n_caps, n_img = 12, 80, 40, 15
    rot = special_ortho_group.rvs(d, random_state=4)
    t_fit = rng.normal(size=(n_fit, d))
    amap = alignment.fit_alignment(t_fit @ rot + 0.3 * rng.normal(size=t_fit.shape), t_fit, method="procrustes")
    store = store_of([f"c{i}" for i in range(n_caps)], rng.normal(size=(n_caps, d)))
    images = rng.normal(size=(n_img, d))
    aligned = R.nearest_neighbour_caption(images, store, alignment=amap)
    plain = R.nearest_neighbour_caption(images, store)
    for i in range(n_img):
        v = np.repeat(images[i:i + 1], n_caps, axis=0)
        a = metrics.aclip_s(v, store.embeddings, amap)
        c = metrics.clip_s(v / np.linalg.norm(v, axis=1, keepdims=True), store.embeddings)
        assert a[store.captions.index(aligned[i])] == pytest.approx(a.max())
        assert c[store.captions.index(plain[i])] == pytest.approx(c.max())
    assert aligned != plain  # the map changes what is retrieved


class FakeTest:
    """What page_images reads of a CaptionData: its length and scene graphs (None for a stamp)."""

    def __init__(self, n_scenes, n_stamps):
        self.graphs = [None] * n_stamps + [{"objects": []}] * n_scenes

    def __len__(self):
        return len(self.graphs)


def test_page_images_keeps_the_probe_examples_and_mixes_scenes_and_stamps():
    from analysis.probe import example_images

    test = FakeTest(n_scenes=30, n_stamps=20)
    every, ex = R.page_images(test, None, seed=0)
    assert every == list(range(50)) and ex == example_images(test, 8, 0)
    assert R.page_images(test, 500, seed=0)[0] == every
    pick, ex4 = R.page_images(test, 4, seed=0)
    assert len(pick) == 4 and pick == sorted(pick) and ex4 == [i for i in ex if i in pick]
    kinds = [test.graphs[i] is None for i in pick]
    assert kinds.count(True) == 2 and kinds.count(False) == 2  # two stamps, two scenes
    pick12, ex12 = R.page_images(test, 12, seed=0)
    assert set(ex) <= set(pick12) and ex12 == ex and len(set(pick12)) == 12
    assert R.page_images(test, 12, seed=0) == (pick12, ex12)  # seeded: the same twice
    assert R.page_images(test, 12, seed=1)[0] != pick12


def test_retrieval_agreement_on_hand_made_retrievals():
    same, shared = R.retrieval_agreement(np.array([[0, 1], [2, 3], [4, 5]]), np.array([[0, 7], [3, 2], [8, 9]]))
    assert same.tolist() == [True, False, False] and shared.tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="one shape"):
        R.retrieval_agreement(np.zeros((2, 3), int), np.zeros((2, 2), int))


def test_copy_share_and_leak_count_on_hand_made_cases():
    assert R.copy_share(["A dog.", "two dogs", "a cat!"], [["a dog"], ["a dog", "Two  dogs"], ["a bird"]]) == (2, 3)
    with pytest.raises(ValueError, match="retrieval lists"):
        R.copy_share(["a"], [])
    assert R.leaked(["A dog.", "a cat", "a bird"], [["a dog", "x"], ["A CAT!"]]) == 2
    assert R.leaked(["a dog"], [["two dogs"]]) == 0


class WordCount:
    """A metric (the Metric contract) whose per-item score is the caption's word count; it needs no images."""

    name, needs_images, corpus_statistics = "words", False, False

    def compute_score(self, gts, res):
        per = np.array([len(res[k][0].split()) for k in gts], float)
        return float(per.mean()), per


class GraphCount(WordCount):
    """Takes scene graphs: the number of objects in the graph."""

    name = "objects"

    def compute_score(self, gts, res, graphs=None):
        per = np.array([len(graphs[k]["objects"]) for k in gts], float)
        return float(per.mean()), per


class Unavailable(WordCount):
    def compute_score(self, gts, res):
        from analysis.metrics import MetricUnavailable

        raise MetricUnavailable("no Java here")


def test_score_captions_per_system_with_graph_only_metrics_empty_captions_and_missing_metrics():
    caps = {"a": ["a dog runs", "", "two cats"], "b": ["a dog", "a big bird flies", "one"]}
    refs = [["r"], ["r"], ["r"]]
    graphs = [{"objects": [1, 2]}, None, {"objects": [1]}]
    out = R.score_captions(caps, refs, {"words": WordCount(), "objects": GraphCount(), "off": Unavailable()},
                           graphs=graphs)
    np.testing.assert_array_equal(out["words"]["a"], [3, np.nan, 2])  # the empty caption is NaN
    np.testing.assert_array_equal(out["words"]["b"], [2, 4, 1])
    np.testing.assert_array_equal(out["objects"]["b"], [2, np.nan, 1])  # no graph: NaN
    assert np.isnan(out["off"]["a"]).all() and np.isnan(out["off"]["b"]).all()
    with pytest.raises(ValueError, match="2 captions"):
        R.score_captions({"a": ["x", "y"]}, refs, {"words": WordCount()})


def test_smoke_metrics_need_no_jvm_and_keep_the_full_runs_names():
    smoke = R.page_metrics("clip-mini", smoke=True)
    full = R.page_metrics("clip-mini")
    assert "cider-d-fast" in smoke and not {"bleu-4", "meteor", "rouge-l"} & set(smoke)
    assert {R.row_metric(m) for m in smoke} <= set(full)
    assert {"aclip-s:clip-mini", "refaclip-s:clip-mini", "sg-f1"} <= set(full)


# --------------------------------------------------------------------------- the page's sentences
def page_rows(*, with_lm=True, significant=True, boot=1000):
    """Constructed rows in the layout of run_captions."""
    import pandas as pd

    rows = [{"analysis": "data", "system": "", "metric": k, "value": v} for k, v in {
        "test images": 10, "test stamp scenes": 6, "datastore captions": 500, "retrieved per image (k)": 5,
        "candidates per image": 1, "datastore captions equal to a test reference": 0,
        "test images among the map's fitting images": 0, "bootstrap resamples": boot}.items()]
    systems = ["nn", "nn-aligned", "xe"] + (["lm", "recap"] if with_lm else [])
    means = {("nn", "aclip-s:clip-mini"): 1.5, ("nn-aligned", "aclip-s:clip-mini"): 1.7,
             ("nn", "clip-s:clip-mini"): 0.9, ("nn-aligned", "clip-s:clip-mini"): 0.8}
    for sy in systems:
        for m in ("cider-d", "clip-s:clip-mini", "aclip-s:clip-mini"):
            v = means.get((sy, m), 0.5)
            rows.append({"analysis": "summary", "system": sy, "metric": m, "value": v, "low": v - 0.1,
                         "high": v + 0.1, "n": 10})
    from analysis.captioning.retrieval import CONTRASTS

    for a, b, q in CONTRASTS:
        if a not in systems or b not in systems:
            continue
        for m, val, p in (("cider-d", 0.3, 0.01 if significant else 0.5), ("clip-s:clip-mini", -0.2, 0.01),
                          ("aclip-s:clip-mini", 0.01, 0.9)):
            rows.append({"analysis": "difference", "system": a, "baseline": b, "contrast": f"{a} − {b}",
                         "question": q, "metric": m, "value": val, "low": val - 0.1, "high": val + 0.1, "p": p,
                         "p_holm": min(1.0, 3 * p), "n": 10, "value_a": 0.6, "value_b": 0.3,
                         "test_family": f"{a} − {b}: {q}"})
    rows += [{"analysis": "retrieval", "system": "nn-aligned", "baseline": "nn",
              "metric": "same top-1 caption as unaligned retrieval", "value": 0.9, "low": 0.8, "high": 0.95, "n": 10},
             {"analysis": "retrieval", "system": "nn-aligned", "baseline": "nn",
              "metric": "share of the top-k shared with unaligned retrieval", "value": 0.7, "low": 0.6, "high": 0.8,
              "n": 10}]
    if with_lm:
        for sy, v in (("lm", 0.2), ("recap", 0.6)):
            rows.append({"analysis": "copying", "system": sy, "metric": "copies a retrieved caption", "value": v,
                         "low": v - 0.2, "high": v + 0.2, "n": 10})
    return pd.DataFrame(rows).assign(note="")


def test_page_sentences_name_the_verdicts_computed_from_the_rows():
    from analysis import prose

    s = prose.recap_caption_sentences(page_rows())
    text = " ".join(s)
    assert s[0].startswith("10 held-out test images") and "500 training captions" in s[0]
    assert "0 datastore captions equal a test reference" in s[0]
    recap_lm = next(x for x in s if x.startswith("`recap − lm`"))
    assert "does alignment help the LM?" in recap_lm and "CIDEr-D 0.600 against 0.300" in recap_lm
    assert "`recap` is higher on CIDEr-D +0.300" in recap_lm and "lower on CLIP-S (clip-mini) -0.200" in recap_lm
    assert "not distinguishable from `lm` on the other 1 of 3 metrics" in recap_lm
    assert "1.700 against 1.500 for `nn`" in text and "by construction" in text  # the aligned metrics' bias
    assert "`recap` writes one of its retrieved captions verbatim for 60%" in text
    assert "Holm-corrected within each contrast's family" in text and "(3 tests)" in text
    assert "same top-1 caption for 90% [80%, 95%] of 10 images, and the two share 70% [60%, 80%] of their top-5" in text


def test_page_sentences_state_the_augmentation_when_it_ran():
    import pandas as pd

    from analysis import prose

    rows = page_rows()
    assert not any(x.startswith("Augmentation") for x in prose.recap_setup_sentences(rows))
    aug = pd.DataFrame([{"analysis": "data", "system": "", "metric": k, "value": v, "note": ""} for k, v in {
        "augmentation: SCST images captioned": 64, "augmentation: RefaCLIP-S threshold": 0.61234,
        "augmentation: captions added": 30}.items()])
    s = prose.recap_setup_sentences(pd.concat([rows, aug], ignore_index=True))
    assert s[1] == ("Augmentation: `recap` captioned 64 SCST images (not test images); 30 of those captions scored "
                    "above the RefaCLIP-S threshold 0.612 and were added to the datastore for `recap-aug`.")


def test_page_sentences_without_the_lm_or_a_significant_difference():
    from analysis import prose

    s = prose.recap_caption_sentences(page_rows(with_lm=False, significant=False, boot=100))
    text = " ".join(s)
    assert "No `recap − lm` comparison (does alignment help the LM?): `recap` and `lm` have no captions" in text
    assert "No `recap − xe` comparison" in text and "`recap` has no captions" in text
    assert "No language-model system ran" in text
    assert "No paired difference was tested." in text
    floor = " ".join(prose.recap_correction_sentences(page_rows(boot=100)))
    assert "cannot reach α here" in floor  # 100 resamples cannot carry a family of 3 tests past Holm
    assert "cannot reach" not in " ".join(prose.recap_correction_sentences(page_rows(boot=1000)))
    assert prose.recap_caption_sentences(page_rows().iloc[0:0])[0].startswith("The rows hold no data")
    one = prose.recap_difference_sentences(page_rows(significant=False).query("metric != 'clip-s:clip-mini'"))
    assert any("no difference holds after Holm on any of the 2 metrics" in x for x in one)
    both = prose.recap_difference_sentences(page_rows().query("metric != 'aclip-s:clip-mini'"))
    assert any("(holding after Holm), i.e. on all 2 metrics" in x for x in both)
