"""Caption metrics: one contract for every registered metric, pycocoevalcap numbers equal to pycocoevalcap
called directly, CLIP-S / RefCLIP-S equal to a restatement of the clipscore reference code."""
import numpy as np
import pytest

from analysis import metrics, registry

GTS = {"1": ["A zebra stands on the grass.", "a zebra in a field", "one zebra grazing"],
       "2": ["Two red apples on a table.", "apples on a wooden table"],
       "3": ["A small boat on the water.", "a boat sailing", "a little boat on a lake", "boat"]}
RES = {"1": ["a zebra standing in the grass"], "2": ["two apples on the table"], "3": ["a dog on a sofa"]}
NGRAM = ["bleu-1", "bleu-2", "bleu-3", "bleu-4", "meteor", "rouge-l", "cider-d", "cider-d-fast"]


@pytest.fixture(scope="module")
def ngram_scores():
    """Every n-gram metric on the fixture (METEOR and the tokenizer start the JVM: score once per module)."""
    return {name: registry.get_metric(name).compute_score(GTS, RES) for name in NGRAM}


def direct(name):
    """pycocoevalcap called directly, the way its own COCOEvalCap does (tokenizer, then the scorer)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    g = tok.tokenize({k: [{"caption": c} for c in v] for k, v in GTS.items()})
    r = tok.tokenize({k: [{"caption": c} for c in v] for k, v in RES.items()})
    if name.startswith("bleu"):
        corpus, per = Bleu(4).compute_score(g, r)
        n = int(name[-1])
        return corpus[n - 1], per[n - 1]
    scorer = {"meteor": Meteor, "rouge-l": Rouge, "cider-d": Cider, "cider-d-fast": Cider}[name]()
    return scorer.compute_score(g, r)


@pytest.mark.parametrize("name", NGRAM)
def test_ngram_metrics_equal_pycocoevalcap_called_directly(name, ngram_scores):
    corpus, per = ngram_scores[name]
    ref_corpus, ref_per = direct(name)
    assert corpus == pytest.approx(ref_corpus, abs=1e-9)
    np.testing.assert_allclose(per, np.asarray(ref_per, float), atol=1e-9)
    assert per.shape == (len(GTS),)
    assert per[2] < per[0]  # the wrong caption (a dog on a sofa) scores below the right one
    if registry.get_metric(name).corpus_is_mean:
        assert corpus == pytest.approx(per.mean())


def test_one_meteor_jvm_per_process_gives_fresh_jvm_numbers(ngram_scores):
    """The METEOR JVM is kept for the process: a second, different call through it equals a fresh JVM, and a JVM
    that has exited is replaced."""
    if not metrics.java_available():
        pytest.skip("METEOR needs Java")
    first = metrics.meteor_process()
    other = {"1": ["a dog on the grass"], "2": ["an apple"], "3": ["two boats on a lake"]}
    reused = registry.get_metric("meteor").compute_score(GTS, other)
    assert metrics.meteor_process() is first
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    g = tok.tokenize({k: [{"caption": c} for c in v] for k, v in GTS.items()})
    r = tok.tokenize({k: [{"caption": c} for c in v] for k, v in other.items()})
    fresh = Meteor().compute_score(g, r)
    assert reused[0] == pytest.approx(fresh[0], abs=1e-12)
    np.testing.assert_allclose(reused[1], fresh[1], atol=1e-12)
    first.meteor_p.kill()
    first.meteor_p.wait()
    assert metrics.meteor_process() is not first
    second = metrics.meteor_process()
    second.lock.acquire()  # a failed exchange leaves pycocoevalcap's lock held: dropping must not hang
    metrics.drop_meteor_process()
    assert second.meteor_p.poll() is not None and second.lock.acquire(blocking=False)
    second.lock.release()  # the dropped object's __del__ takes this lock when it is collected
    assert registry.get_metric("meteor").compute_score(GTS, other)[0] == pytest.approx(fresh[0], abs=1e-12)


@pytest.mark.parametrize("bad,match", [
    ({**RES, "2": [""]}, r"id '2'.*empty"),
    ({**RES, "2": ["   "]}, r"id '2'.*empty"),
    ({k: v for k, v in RES.items() if k != "3"}, r"id '3' has references but no candidate"),
    ({**RES, "9": ["x"]}, r"\['9'\] have no references"),
    ({**RES, "1": ["a", "b"]}, r"id '1'.*exactly one"),
    ({**RES, "1": [None]}, r"id '1'.*not a string"),
])
def test_bad_inputs_are_refused_naming_the_id(bad, match):
    with pytest.raises(ValueError, match=match):
        metrics.check_inputs(GTS, bad)


def test_without_java_ngram_metrics_are_unavailable_not_zero(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda _: None)
    with pytest.raises(metrics.MetricUnavailable, match="needs Java"):
        registry.get_metric("cider-d").compute_score(GTS, RES)


def test_unknown_metric_lists_the_valid_names():
    with pytest.raises(registry.UnknownNameError, match="valid names: bleu-1.*clip-s:<dual-encoder scorer name>"):
        registry.get_metric("bleu5")


# ----------------------------------------------------------------------------- CLIP-S family
def unit(x):
    x = np.asarray(x, float)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def restated_clipscore(img, cand, refs, w=2.5):
    """The clipscore reference code restated: per = w * clip(sum(img * cand), 0); refonly = max over the
    reference cosines per candidate; ref = 2 * per * refonly / (per + refonly)."""
    per = w * np.clip(np.sum(img * cand, axis=1), 0, None)
    refonly = np.array([np.max(np.dot(r, c)) for c, r in zip(cand, refs)])
    return per, 2 * per * refonly / (per + refonly)


def test_clip_s_and_ref_clip_s_equal_the_restated_reference():
    rng = np.random.default_rng(0)
    img, cand = unit(rng.normal(size=(20, 16))), unit(rng.normal(size=(20, 16)))
    cand[:10] = unit(img[:10] + 0.5 * cand[:10])  # half of them well aligned, so a + b is never 0 here
    refs = [unit(rng.normal(size=(int(rng.integers(1, 6)), 16))) for _ in range(20)]
    per, ref = restated_clipscore(img, cand, refs)
    np.testing.assert_allclose(metrics.clip_s(img, cand), per, atol=1e-12)
    np.testing.assert_allclose(metrics.ref_clip_s(img, cand, refs), ref, atol=1e-12)
    assert (metrics.clip_s(img, cand) >= 0).all()  # clamped per item, before the mean


def test_clip_s_hand_computed_cases():
    img = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    txt = np.array([[0.6, 0.8], [-1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(metrics.clip_s(img, txt), [1.5, 0.0, 2.5])
    np.testing.assert_allclose(metrics.clip_s(img, txt, w=1.0), [0.6, 0.0, 1.0])
    # b = max(0.6, 1.0) = 1 -> 2 * 1.5 * 1 / 2.5; b is not clamped: a negative best reference gives a negative mean
    refs = [np.array([[0.6, 0.8], [1.0, 0.0]]), np.array([[-1.0, 0.0]]), np.array([[0.0, -1.0]])]
    np.testing.assert_allclose(metrics.ref_clip_s(img, txt, refs), [1.2, 0.0, 2 * 2.5 * -1 / 1.5])


class Toy:
    """A dual encoder over 2-d embeddings: images by width; texts by keyword, recording what it was given."""

    family, source, name, label, output = "dual", "embedded", "toy", "toy (test stand-in)", "cosine"

    def __init__(self):
        self.seen = []

    def encode_image(self, images):
        return unit([[1.0, 0.0] if im.size[0] == 10 else [0.0, 1.0] for im in images])

    def encode_text(self, captions):
        self.seen += captions
        return unit([[1.0, 0.2] if "zebra" in c else [0.2, 1.0] for c in captions])


def test_clip_s_metric_embeds_the_prefix_and_matches_the_functions():
    from PIL import Image

    toy = Toy()
    gts = {"a": ["a zebra"], "b": ["an apple", "a zebra"]}
    res = {"a": ["zebra on grass"], "b": ["zebra again"]}
    images = {"a": Image.new("RGB", (10, 4)), "b": Image.new("RGB", (12, 4))}
    m = metrics.ClipScoreMetric(toy, ref=False)
    corpus, per = m.compute_score(gts, res, images)
    assert toy.seen == ["A photo depicts zebra on grass", "A photo depicts zebra again"]
    v, c = toy.encode_image(list(images.values())), unit([[1.0, 0.2], [1.0, 0.2]])
    np.testing.assert_allclose(per, metrics.clip_s(v, c))
    assert corpus == pytest.approx(per.mean())
    corpus_r, per_r = metrics.ClipScoreMetric(toy, ref=True).compute_score(gts, res, images)
    refs = [toy.encode_text(["A photo depicts " + r for r in gts[k]]) for k in gts]
    np.testing.assert_allclose(per_r, metrics.ref_clip_s(v, c, refs))
    assert m.info()["stand_in"] is True and "toy (test stand-in)" in m.label
    with pytest.raises(ValueError, match="no image for id"):
        m.compute_score(gts, res, {"a": images["a"]})


def test_clip_s_needs_a_dual_encoder():
    class Itm:
        family, name = "single-stream", "itm"

    with pytest.raises(ValueError, match="needs a dual-encoder scorer"):
        metrics.ClipScoreMetric(Itm(), ref=False)


def test_registry_metrics_over_an_embedded_stand_in():
    """`clip-s:clip-mini` and `score:blind` through the registry on real held-out items: labelled stand-ins,
    CLIP-S within [0, 2.5], the true caption above another item's caption on average."""
    ds = registry.get_dataset("tuxpaint-stamps", split="test", limit=6)
    ids = [it.id for it in ds]
    images = {it.id: it.image() for it in ds}
    gts = {it.id: it.captions for it in ds}
    true = {it.id: [it.captions[0]] for it in ds}
    wrong = {k: [gts[ids[(i + 1) % len(ids)]][0]] for i, k in enumerate(ids)}
    m = registry.get_metric("clip-s:clip-mini", smoke=True)
    assert m.info()["stand_in"] is True and "CLIP-style stand-in" in m.label
    c_true, per = m.compute_score(gts, true, images)
    c_wrong, _ = m.compute_score(gts, wrong, images)
    assert per.shape == (6,) and ((per >= 0) & (per <= 2.5)).all() and c_true > c_wrong
    s = registry.get_metric("score:blind", smoke=True)
    corpus, per = s.compute_score(gts, true, images)
    assert per.shape == (6,) and corpus == pytest.approx(per.mean()) and "text-only baseline" in s.label


def test_sg_f1_metric_needs_graphs_and_scores_the_true_caption_highest():
    g = {"objects": [{"name": "apple", "count": 2, "size": "big"}], "relations": []}
    gts = {"x": ["two big apples"], "y": ["two big apples"]}
    res = {"x": ["two big apples"], "y": ["a small cat"]}
    m = registry.get_metric("sg-f1")
    assert m.info()["stand_in"] is True and "SPICE-style stand-in" in m.label
    corpus, per = m.compute_score(gts, res, graphs={"x": g, "y": g})
    assert per.tolist() == [1.0, 0.0] and corpus == 0.5
    with pytest.raises(ValueError, match="pass graphs"):
        m.compute_score(gts, res)
