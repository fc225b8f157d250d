"""The judgement-correlation harness (analysis.correlation): Kendall τb/τc against a brute-force
textbook implementation and scipy, the clustered bootstrap, metric scores over judgement frames, the
table end to end on the real-format fixtures (tests/fixtures/real_formats), planned metrics, and noise
robustness (pixel and embedding noise against known moments; τ and score falling under noise with a
constructed dual encoder whose image embedding is the image's pixels). The rule-made sets themselves are
tested in tests/test_ladder.py."""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from analysis import correlation as corr
from analysis.data.judgements import load_flickr8k_cf, load_flickr8k_expert, load_thumb, normalise
from analysis.metrics import Metric, MetricUnavailable, check_inputs, java_available

FIX = Path(__file__).parent / "fixtures" / "real_formats"
SETS = ["flickr8k-expert", "flickr8k-cf", "thumb"]


# --------------------------------------------------------------------------- independent references
def brute_tau(a, b, variant):
    """Kendall τ from the textbook definitions, O(n²) over all pairs of rows (Kendall 1945; Stuart 1953)."""
    n = len(a)
    P = Q = tied_a = tied_b = 0
    for i, j in itertools.combinations(range(n), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        tied_a += da == 0
        tied_b += db == 0
        if da * db > 0:
            P += 1
        elif da * db < 0:
            Q += 1
    n0 = n * (n - 1) / 2
    if variant == "b":  # pairs tied in a (in b) are the n1 (n2) of the formula
        return (P - Q) / math.sqrt((n0 - tied_a) * (n0 - tied_b))
    m = min(len(set(a)), len(set(b)))
    return 2 * (P - Q) / (n * n * (m - 1) / m)


class Overlap(Metric):
    """A cheap test metric (no Java, no weights): share of the candidate's words found in its references.
    Records every call so tests can see what it was given."""

    def __init__(self, name="overlap"):
        super().__init__(name, "word overlap (test metric)", "tests")
        self.calls = []

    def compute_score(self, gts, res, images=None):
        ids = check_inputs(gts, res)
        self.calls.append((dict(gts), dict(res)))
        per = []
        for k in ids:
            words = normalise(res[k][0]).split()
            ref = set(" ".join(normalise(r) for r in gts[k]).split())
            per.append(sum(w in ref for w in words) / len(words))
        return float(np.mean(per)), np.array(per)


class Broken(Metric):
    def compute_score(self, gts, res, images=None):
        raise MetricUnavailable(f"metric {self.name!r} is unavailable: needs a thing this machine lacks")


@pytest.fixture
def frames(isolated_data):
    return {"flickr8k-expert": load_flickr8k_expert(FIX / "flickr8k"),
            "flickr8k-cf": load_flickr8k_cf(FIX / "flickr8k"),
            "thumb": load_thumb(FIX / "thumb", coco_root=FIX / "coco")}


# --------------------------------------------------------------------------- kendall_tau
TIES_A = [1, 2, 2, 3, 3, 3, 4, 1, 2, 4]  # a 1-4 rating scale with many ties
TIES_B = [0.1, 0.3, 0.3, 0.2, 0.9, 0.5, 0.5, 0.1, 0.7, 0.4]  # metric scores with ties


@pytest.mark.parametrize("variant", ["b", "c"])
def test_kendall_tau_equals_brute_force_with_ties(variant):
    expected = brute_tau(TIES_B, TIES_A, variant)
    assert corr.kendall_tau(TIES_B, TIES_A, variant=variant) == pytest.approx(expected, abs=1e-12)
    # the two variants differ once there are ties and a rectangular table
    assert brute_tau(TIES_B, TIES_A, "b") != pytest.approx(brute_tau(TIES_B, TIES_A, "c"))


def test_kendall_tau_hand_computed_case():
    # a = 1..4, b = 1,2,1,2: P = 3, Q = 1, 2 pairs tied in b; m = 2
    assert corr.kendall_tau([1, 2, 3, 4], [1, 2, 1, 2], variant="c") == pytest.approx(2 * 2 / (16 * 0.5))
    assert corr.kendall_tau([1, 2, 3, 4], [1, 2, 1, 2], variant="b") == pytest.approx(2 / math.sqrt(6 * 4))


@pytest.mark.parametrize("variant", ["b", "c"])
def test_kendall_tau_equals_scipy_on_random_data(variant):
    gen = np.random.default_rng(7)
    a = gen.normal(size=300)
    b = np.round(a + gen.normal(size=300), 0)  # integer-rounded: ties on one side
    assert corr.kendall_tau(a, b, variant=variant) == pytest.approx(kendalltau(a, b, variant=variant).statistic,
                                                                     abs=1e-12)


def test_kendall_tau_drops_nan_pairs():
    a = np.array(TIES_B + [np.nan, 0.5, 0.2])
    b = np.array(TIES_A + [2, np.nan, 4], dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    for v in "bc":
        assert corr.kendall_tau(a, b, variant=v) == pytest.approx(brute_tau(list(a[keep]), list(b[keep]), v))


def test_kendall_tau_errors_and_constant_side():
    with pytest.raises(ValueError, match=r"unknown Kendall tau variant 'a'.*'b'.*'c'"):
        corr.kendall_tau([1, 2], [1, 2], variant="a")
    with pytest.raises(ValueError, match=r"at least 2 pairs without NaN, got 1"):
        corr.kendall_tau([1, np.nan, 3], [1, 2, np.nan])
    with pytest.raises(ValueError, match=r"same length"):
        corr.kendall_tau([1, 2, 3], [1, 2])
    assert math.isnan(corr.kendall_tau([1, 1, 1], [1, 2, 3]))


# --------------------------------------------------------------------------- bootstrap
def test_grouped_resample_draws_whole_groups():
    groups = np.array(["x"] * 3 + ["y"] * 1 + ["z"] * 5 + ["w"] * 2)
    gen = np.random.default_rng(0)
    sizes = set()
    for _ in range(50):
        idx = corr.resample_rows(len(groups), gen, groups)
        counts = np.bincount(idx, minlength=len(groups))
        drawn = 0
        for g in np.unique(groups):
            c = counts[groups == g]
            assert len(set(c)) == 1  # every row of a group drawn equally often: the group is drawn whole
            drawn += c[0]
        assert drawn == 4  # as many groups as there are
        sizes.add(len(idx))
    assert len(sizes) > 1  # total rows vary with which groups were drawn
    assert len(corr.resample_rows(7, gen)) == 7


def test_clustered_bootstrap_of_duplicated_rows_equals_row_bootstrap_of_originals():
    # Every row repeated 3 times, grouped by its original: τ is unchanged by the duplication, and drawing whole
    # groups is drawing original rows, so the clustered interval is the row interval of the originals
    # (same seed, same draws); the naive row bootstrap of the copies is too narrow.
    gen = np.random.default_rng(1)
    a = gen.normal(size=40)
    b = np.round(a + gen.normal(size=40))
    a3, b3, g3 = np.repeat(a, 3), np.repeat(b, 3), np.repeat(np.arange(40), 3)
    assert corr.kendall_tau(a3, b3, variant="b") == pytest.approx(corr.kendall_tau(a, b, variant="b"))
    clustered = corr.bootstrap_tau(a3, b3, variant="b", seed=3, n_resamples=300, groups=g3)
    rows = corr.bootstrap_tau(a, b, variant="b", seed=3, n_resamples=300)
    assert clustered == pytest.approx(rows, abs=1e-12)
    naive = corr.bootstrap_tau(a3, b3, variant="b", seed=3, n_resamples=300)
    assert naive[1] - naive[0] < 0.8 * (clustered[1] - clustered[0])


def test_bootstrap_interval_contains_estimate_and_is_deterministic():
    gen = np.random.default_rng(2)
    a = gen.normal(size=150)
    b = np.clip(np.round(a + gen.normal(size=150) + 2.5), 1, 4)
    groups = np.arange(150) // 3
    tau = corr.kendall_tau(a, b, variant="c")
    lo, hi = corr.bootstrap_tau(a, b, variant="c", seed=0, n_resamples=400, groups=groups)
    assert lo < tau < hi and 0 < lo
    assert corr.bootstrap_tau(a, b, variant="c", seed=0, n_resamples=400, groups=groups) == (lo, hi)
    assert corr.bootstrap_tau(a, b, variant="c", seed=1, n_resamples=400, groups=groups) != (lo, hi)


def test_bootstrap_drops_nan_with_their_groups():
    a = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0])
    b = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 6.0])
    g = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="groups has 5 labels for 6 rows"):
        corr.bootstrap_tau(a, b, variant="b", seed=0, groups=g[:5])
    lo, hi = corr.bootstrap_tau(a, b, variant="b", seed=0, n_resamples=50, groups=g)
    assert -1 <= lo <= hi <= 1


# --------------------------------------------------------------------------- judgement sets and metric scores
def test_judgement_sets_protocols():
    assert corr.JUDGEMENT_SETS["flickr8k-expert"].variant == "c"
    assert corr.JUDGEMENT_SETS["flickr8k-cf"].variant == "b"
    assert corr.JUDGEMENT_SETS["thumb"].variant == "b" and "study's choice" in corr.JUDGEMENT_SETS["thumb"].protocol
    for name, s in corr.JUDGEMENT_SETS.items():
        assert s.kind in {"human", "rule-made"}
        if s.kind == "rule-made":
            assert "rule-made" in s.description and "human judgement" not in s.description.replace("not human", "")
    with pytest.raises(KeyError, match="unknown judgement set 'pascal-50s'; valid names: flickr8k-expert"):
        corr.judgement_set("pascal-50s")


def test_metric_scores_one_call_unique_pairs_candidate_left_out():
    frame = pd.DataFrame({
        "image": ["x", "x", "x", "y", "y"],
        "caption": ["A dog runs .", "A dog runs .", "A cat sits .", "a dog runs", "A red bus ."],
        "references": [("A dog runs .", "A dog plays ."), ("A dog runs .", "A dog plays ."),
                       ("A dog runs .", "A dog plays ."), ("A bus .", "A red bus drives ."),
                       ("A bus .", "A red bus drives .")],
        "score": [4, 3, 1, 2, 4]})
    m = Overlap()
    per = corr.metric_scores(frame, m)
    assert len(m.calls) == 1
    gts, res = m.calls[0]
    assert len(res) == 4  # 5 rows, 4 distinct (image, caption) pairs, each scored once
    assert [res[k] for k in gts] == [["A dog runs ."], ["A cat sits ."], ["a dog runs"], ["A red bus ."]]
    assert gts[0] == ["A dog plays ."]  # the candidate is not its own reference
    # hand-computed overlap with the references left after removing the candidate
    assert per.tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3, 3 / 3])


def test_metric_scores_without_references_is_nan():
    frame = pd.DataFrame({"image": ["x", "y"], "caption": ["A dog .", "A cat ."],
                          "references": [("A dog .",), ("A cat lies .",)], "score": [1.0, 2.0]})
    per = corr.metric_scores(frame, Overlap())
    assert math.isnan(per[0]) and per[1] == pytest.approx(1.0)


def test_metric_scores_image_metric_needs_paths(frames):
    m = Overlap()
    m.needs_images = True
    no_paths = frames["flickr8k-cf"].assign(path=None)
    with pytest.raises(MetricUnavailable, match=r"needs the images.*images=True"):
        corr.metric_scores(no_paths, m)


def test_metric_scores_on_the_loaders_rows_match_refs(frames):
    df = frames["flickr8k-expert"]
    per = corr.metric_scores(df, Overlap())
    assert per.shape == (len(df),) and not np.isnan(per).any()
    # the three rating rows of a pair share one score
    assert (pd.Series(per).groupby([df["image"], df["caption"]]).nunique() == 1).all()


# --------------------------------------------------------------------------- the table end to end
def test_correlation_table_end_to_end_on_fixtures(frames):
    df = corr.correlation_table([Overlap(), Broken("broken", "broken (test)", "tests"), "sg-f1"], SETS,
                                root=FIX, n_resamples=50, seed=5)
    assert len(df) == 3 * 3
    assert {"run", "model", "source", "pretrained", "dataset", "split", "seed", "metric", "judgement", "variant",
            "value", "low", "high", "n_rows", "note"} <= set(df.columns)
    ok = df[df.metric == "overlap"].set_index("dataset")
    for name in SETS:
        f = frames[name]
        expected = kendalltau(corr.metric_scores(f, Overlap()), f["score"], variant=corr.JUDGEMENT_SETS[name].variant)
        assert ok.loc[name, "value"] == pytest.approx(100 * expected.statistic)  # τ × 100
        assert ok.loc[name, "n_rows"] == len(f) and ok.loc[name, "n_images"] == f["image"].nunique()
        assert ok.loc[name, "variant"] == corr.JUDGEMENT_SETS[name].variant
    assert ok.loc["flickr8k-expert", "n_rows"] == 12 and ok.loc["thumb", "n_rows"] == 10
    assert (ok["run"] == "correlation").all() and (ok["seed"] == 5).all() and (ok["model"] == "none").all()
    assert (ok["judgement_kind"] == "human").all()
    bad = df[df.metric != "overlap"]
    assert bad["value"].isna().all() and bad["low"].isna().all()
    assert bad[bad.metric == "broken"]["note"].str.contains("unavailable here: .*needs a thing").all()
    assert bad[bad.metric == "sg-f1"]["note"].str.contains("scene graph").all()
    again = corr.correlation_table([Overlap()], SETS, root=FIX, n_resamples=50, seed=5)
    pd.testing.assert_frame_equal(again, df[df.metric == "overlap"].reset_index(drop=True))


def test_correlation_table_missing_data_and_weights_give_notes(tmp_path, isolated_data):
    df = corr.correlation_table([Overlap(), "clip-s:clip:ViT-B-32/openai"], ["thumb"], root=tmp_path,
                                n_resamples=10)
    assert df["value"].isna().all()
    assert df.loc[0, "note"].startswith("data unavailable: ") and "mscoco_THumB-1.0.jsonl" in df.loc[0, "note"]
    assert df.loc[1, "model"] == "clip:ViT-B-32/openai" and df.loc[1, "source"] == "published"
    assert df.loc[1, "note"].startswith("unavailable here: ") and "weights" in df.loc[1, "note"].lower()


def test_correlation_table_unknown_metric_is_an_error(isolated_data):
    with pytest.raises(KeyError, match="unknown metric 'bleu-5'"):
        corr.correlation_table(["bleu-5"], ["thumb"], root=FIX)


def test_correlation_table_with_a_registry_metric():
    # score:blind: an embedded text-only scorer (no Java, no CLIP weights); provenance comes from the scorer.
    # Not isolated_data: that moves HOME and with it the cache holding the scorer (root= is given anyway)
    df = corr.correlation_table(["score:blind"], ["flickr8k-cf"], root=FIX, n_resamples=20)
    row = df.iloc[0]
    assert row["model"] == "blind" and row["source"] == "embedded" and row["note"] == ""
    assert -100 <= row["value"] <= 100 and row["n_rows"] == 6


@pytest.mark.skipif(not java_available(), reason="bleu-4 needs Java")
def test_correlation_table_bleu_4(isolated_data):
    df = corr.correlation_table(["bleu-4"], ["flickr8k-expert"], root=FIX, n_resamples=20)
    assert np.isfinite(df.loc[0, "value"]) and df.loc[0, "published"] == 30.8
    assert df.loc[0, "published_source"] == corr.PUBLISHED_SOURCE


# --------------------------------------------------------------------------- wide layout
def test_wide_table_layout():
    rows = pd.DataFrame([
        {"label": "BLEU-4", "metric": "bleu-4", "dataset": "flickr8k-expert", "variant": "c", "value": 30.0,
         "low": 28.0, "high": 32.0, "published": 30.8},
        {"label": "BLEU-4", "metric": "bleu-4", "dataset": "thumb", "variant": "b", "value": 10.0,
         "low": 5.0, "high": 15.0, "published": np.nan},
        {"label": "CLIP-S (x)", "metric": "clip-s:x", "dataset": "flickr8k-expert", "variant": "c", "value": np.nan,
         "low": np.nan, "high": np.nan, "published": np.nan},
        {"label": "CLIP-S (x)", "metric": "clip-s:x", "dataset": "thumb", "variant": "b", "value": -2.5,
         "low": -9.0, "high": 4.0, "published": np.nan},
    ])
    w = corr.wide_table(rows)
    pub = f"flickr8k-expert (τc): published ({corr.PUBLISHED_SOURCE})"
    assert list(w.index) == ["BLEU-4", "CLIP-S (x)"] and w.index.name == "metric"
    assert list(w.columns) == ["flickr8k-expert (τc)", pub, "thumb (τb)"]
    assert w.loc["BLEU-4", "flickr8k-expert (τc)"] == 30.0 and w.loc["CLIP-S (x)", "thumb (τb)"] == -2.5
    assert w.loc["BLEU-4", pub] == 30.8 and math.isnan(w.loc["CLIP-S (x)", pub])
    s = corr.wide_table(rows, intervals=True)
    assert s.loc["BLEU-4", "thumb (τb)"] == "10.0 [5.0, 15.0]"
    assert s.loc["CLIP-S (x)", "flickr8k-expert (τc)"] == "n/a"


# --------------------------------------------------------------------------- rule-made sets in the registry
def test_rule_made_sets_registered_and_titled():
    for name in ("scene-ladder", "stamp-match"):
        s = corr.JUDGEMENT_SETS[name]
        assert s.kind == "rule-made" and s.variant == "b" and "ties by design" in s.protocol
        assert "rule-made, not human judgements" in s.description
        assert corr.set_title(name) == f"{name} (rule-made)"
    assert corr.set_title("flickr8k-expert") == "flickr8k-expert"


def test_uses_references_and_placeholder():
    from analysis.metrics import ClipScoreMetric, ScorerMetric, SceneGraphF1

    assert corr.uses_references(Overlap())
    assert not corr.uses_references(SceneGraphF1("sg-f1", "sg", "x"))
    assert not corr.uses_references(ClipScoreMetric(FakeDual({}), ref=False))
    assert corr.uses_references(ClipScoreMetric(FakeDual({}), ref=True))
    assert not corr.uses_references(ScorerMetric.__new__(ScorerMetric))
    # a reference-free metric is scored on a row without references; a reference-based one is not
    frame = pd.DataFrame({"image": ["x", "y"], "caption": ["A dog .", "A cat ."], "references": [(), ("A cat .",)],
                          "score": [1.0, 2.0]})
    free = Overlap("free")
    free.extra = {"uses_references": False}
    per = corr.metric_scores(frame, free)
    assert free.calls[0][0][0] == [corr.PLACEHOLDER_REFERENCE] and np.isfinite(per).all()
    assert np.isnan(corr.metric_scores(frame, Overlap())).all()


# --------------------------------------------------------------------------- noise: the pure functions
def test_add_pixel_noise_moments_clipping_and_seed():
    from PIL import Image

    gray = Image.new("RGB", (64, 64), (128, 128, 128))
    x = np.asarray(gray, float) / 255
    noisy = np.asarray(corr.add_pixel_noise(gray, 0.05, seed=1), float) / 255
    d = noisy - x
    assert abs(d.mean()) < 0.005 and d.std() == pytest.approx(0.05, rel=0.05)  # N(0, σ²) on the [0, 1] scale
    big = np.asarray(corr.add_pixel_noise(gray, 3.0, seed=1))
    assert big.min() == 0 and big.max() == 255  # clipped to [0, 1]
    again = np.asarray(corr.add_pixel_noise(gray, 0.05, seed=1))
    assert (again == np.asarray(corr.add_pixel_noise(gray, 0.05, seed=1))).all()
    assert (np.asarray(corr.add_pixel_noise(gray, 0.05, seed=2)) != (noisy * 255).round()).any()
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        corr.add_pixel_noise(gray, -0.1, seed=0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_add_embedding_noise_known_cosine(sigma):
    # ε ~ N(0, σ²/d I): for large d, ‖v + ε‖² ≈ 1 + σ² and v·(v + ε) ≈ 1, so cos(v, v') ≈ 1/√(1 + σ²)
    d = 4000
    v = np.zeros((20, d))
    v[np.arange(20), np.arange(20)] = 1.0
    w = corr.add_embedding_noise(v, sigma, seed=3)
    assert np.allclose(np.linalg.norm(w, axis=1), 1.0)
    assert np.sum(v * w, axis=1).mean() == pytest.approx(1 / math.sqrt(1 + sigma ** 2), abs=0.02)


# --------------------------------------------------------------------------- noise robustness end to end
class FakeDual:
    """A constructed dual encoder whose image embedding is the image's own pixels: the centred 4 × 4 RGB
    pixels, L2-normalised (so pixel noise reaches it); ``texts`` maps a caption to its embedding."""

    family, name, label, source = "dual", "fake-dual", "fake dual encoder (test)", "embedded"

    def __init__(self, texts):
        self.texts = texts

    @staticmethod
    def pixels(im):
        x = np.asarray(im.convert("RGB"), float).ravel() / 255 - 0.5
        return x / np.linalg.norm(x)

    def encode_image(self, images):
        return np.stack([self.pixels(im) for im in images])

    def encode_text(self, captions):
        return np.stack([self.texts[c[len("A photo depicts "):]] for c in captions])


TILT = 0.002


@pytest.fixture
def synthetic_set(tmp_path, monkeypatch):
    """A rule-made ladder over 16 random-pixel images: 'true i' is close to the image itself (w = 1 − t·i),
    'near i' w = 0.8 − t·i, 'far i' w = 0.5 − t·i (t = TILT: no two images' captions score exactly alike, so no
    tie hangs on the last bit of a float), and another image's true caption; text embedding =
    w · e_i + √(1 − w²) · (orthogonal); the reference 'ref i' has w = 0.9."""
    from PIL import Image

    gen = np.random.default_rng(0)
    n, rows, texts = 16, [], {}
    embs = []
    for i in range(n):
        im = Image.fromarray((gen.random((4, 4, 3)) * 255).astype(np.uint8), mode="RGB")
        im.save(tmp_path / f"im{i}.png")
        embs.append(FakeDual.pixels(Image.open(tmp_path / f"im{i}.png")))
    for i, e in enumerate(embs):
        for w, cap in ((1.0 - TILT * i, f"true {i}"), (0.8 - TILT * i, f"near {i}"), (0.5 - TILT * i, f"far {i}"),
                       (0.9, f"ref {i}")):
            u = gen.normal(size=e.size)
            u -= (u @ e) * e
            texts[cap] = w * e + math.sqrt(1 - w * w) * u / np.linalg.norm(u)
        for level, cap in ((4, f"true {i}"), (3, f"near {i}"), (2, f"far {i}"), (1, f"true {(i + 5) % n}")):
            rows.append({"image": f"im{i}", "caption": cap, "references": (f"ref {i}",), "score": float(level),
                         "path": str(tmp_path / f"im{i}.png")})
    frame = pd.DataFrame(rows)
    frame.attrs["split"] = "test"
    monkeypatch.setitem(corr.JUDGEMENT_SETS, "synthetic", corr.JudgementSet(
        lambda root, limit: frame.copy(), "score", "b", "synthetic (rule-made, not human judgements)",
        kind="rule-made", judgement="level"))
    return frame, texts


def test_noise_robustness_clean_equals_table_and_noise_lowers_tau_and_quality(synthetic_set):
    from analysis.metrics import ClipScoreMetric

    frame, texts = synthetic_set
    clip = ClipScoreMetric(FakeDual(texts), ref=False)
    table = corr.correlation_table([clip, Overlap()], ["synthetic"], n_resamples=200, seed=4).set_index("metric")
    df = corr.noise_robustness([clip, Overlap()], "synthetic", image_sigmas=(0, 2.0), embedding_sigmas=(0, 3.0),
                               n_resamples=200, seed=4)
    assert len(df) == 2 * 4 and (df["run"] == "noise-robustness").all()
    for m in ("clip-s:fake-dual", "overlap"):
        clean = df[(df.metric == m) & (df.sigma == 0)]
        assert len(clean) == 2
        for col in ("value", "low", "high"):
            assert clean[col].tolist() == pytest.approx([table.loc[m, col]] * 2)  # σ = 0 is correlation_table's run
    c = df[df.metric == "clip-s:fake-dual"].set_index(["noise", "sigma"])
    # the constructed metric orders the ladder: τb near its ceiling √((n₀ − n₁)/n₀) ≈ 87 for untied scores against
    # 4 judgement levels of 16 rows each (n₀ = 2016 pairs, n₁ = 480 tied in the judgement)
    assert c.loc[("image", 0.0), "value"] > 80
    for noise, sigma in (("image", 2.0), ("embedding", 3.0)):
        assert c.loc[(noise, sigma), "value"] < c.loc[(noise, 0.0), "value"] - 20  # correlation falls with noise
        assert c.loc[(noise, sigma), "top_mean"] < c.loc[(noise, 0.0), "top_mean"] - 0.5  # and so does the score
    # CLIP-S of the true caption i: 2.5 · cos = 2.5 · (1 − TILT · i)
    assert c.loc[("image", 0.0), "top_mean"] == pytest.approx(2.5 * np.mean(1 - TILT * np.arange(16)))
    o = df[df.metric == "overlap"].set_index(["noise", "sigma"])
    assert o.loc[("image", 2.0), "value"] == o.loc[("image", 0.0), "value"]
    assert "reads no image" in o.loc[("image", 2.0), "note"]
    assert math.isnan(o.loc[("embedding", 3.0), "value"]) and "no image embedding" in o.loc[("embedding", 3.0), "note"]
    assert "_image_embeddings" not in clip.__dict__  # the noise wrapper is removed after each run
    again = corr.noise_robustness([clip], "synthetic", image_sigmas=(2.0,), embedding_sigmas=(3.0,),
                                  n_resamples=200, seed=4)
    assert again["value"].tolist() == c.loc[[("embedding", 3.0), ("image", 2.0)], "value"].tolist()  # seeded


def test_planned_metrics_give_note_rows_unknown_names_raise(synthetic_set, monkeypatch):
    from analysis.registry import METRICS

    assert {"aclip-s:", "refaclip-s:"} <= set(corr.PLANNED)
    monkeypatch.setattr(corr, "PLANNED", corr.PLANNED + ("future-s:",))
    df = corr.correlation_table(["future-s:clip-mini", Overlap()], ["synthetic"], n_resamples=20)
    row = df.iloc[0]
    assert math.isnan(row["value"]) and row["note"].startswith("not registered yet: future-s:clip-mini is planned")
    assert row["model"] == "clip-mini" and row["source"] == "embedded"
    assert np.isfinite(df.iloc[1]["value"])
    for name in ("aclip-s:clip-mini", "refaclip-s:clip-mini"):
        if name not in METRICS:  # until another part of the study registers them
            assert corr.correlation_table([name], ["synthetic"], n_resamples=5).loc[0, "note"].startswith(
                "not registered yet")
    nr = corr.noise_robustness(["future-s:clip-mini"], "synthetic", image_sigmas=(0, 0.1), embedding_sigmas=(0,),
                               n_resamples=5)
    assert nr["value"].isna().all() and nr["note"].str.startswith("not registered yet").all()
    with pytest.raises(KeyError, match="unknown metric 'bogus-s:clip-mini'"):
        corr.correlation_table(["bogus-s:clip-mini"], ["synthetic"])


# --------------------------------------------------------------------------- paired differences: the pure function
def exact_diff_distribution(a, b, j, groups, variant):
    """The exact clustered-bootstrap distribution of τ(a, j) − τ(b, j): every ordered draw of G groups out of G
    (G^G draws, equally likely), each resample the concatenation of the drawn groups, τ by scipy."""
    labels = list(dict.fromkeys(groups))
    rows = {g: np.flatnonzero(np.asarray(groups) == g) for g in labels}
    out = []
    for draw in itertools.product(labels, repeat=len(labels)):
        idx = np.concatenate([rows[g] for g in draw])
        ta = kendalltau(a[idx], j[idx], variant=variant).statistic
        tb = kendalltau(b[idx], j[idx], variant=variant).statistic
        out.append(ta - tb)
    return np.array(out)


@pytest.fixture
def four_images():
    """4 images × 3 candidates: judgements 1-3 within every image (never a constant side), a metric a that
    orders them well and b that orders them less well."""
    j = np.array([3, 2, 1] * 4, dtype=float)
    a = np.array([0.9, 0.5, 0.2, 0.8, 0.6, 0.3, 0.4, 0.7, 0.1, 0.95, 0.5, 0.45])
    b = np.array([0.3, 0.6, 0.2, 0.5, 0.7, 0.1, 0.9, 0.2, 0.4, 0.6, 0.61, 0.3])
    return a, b, j, np.repeat(["p", "q", "r", "s"], 3)


@pytest.mark.parametrize("variant", ["b", "c"])
def test_bootstrap_tau_diff_matches_the_exact_bootstrap_distribution(four_images, variant):
    a, b, j, g = four_images
    exact = exact_diff_distribution(a, b, j, g, variant)  # 256 equally likely resamples
    r = corr.bootstrap_tau_diff(a, b, j, variant=variant, seed=11, n_resamples=6000, groups=g)
    assert r.diff == pytest.approx(kendalltau(a, j, variant=variant).statistic
                                   - kendalltau(b, j, variant=variant).statistic, abs=1e-12)
    assert r.n_rows == 12 and r.n_resamples == 6000
    # the Monte Carlo percentiles are the exact distribution's 2.5% / 97.5% quantiles (up to Monte Carlo error)
    for q, bound in ((0.025, r.low), (0.975, r.high)):
        assert (exact < bound - 1e-12).mean() <= q + 0.01 and (exact <= bound + 1e-12).mean() >= q - 0.01
    # and p is twice the smaller tail of the exact distribution at 0
    exact_p = min(1.0, 2 * min((exact <= 0).mean(), (exact >= 0).mean()))
    assert r.p == pytest.approx(exact_p, abs=0.02)


def test_bootstrap_tau_diff_known_cases(four_images):
    a, b, j, g = four_images
    same = corr.bootstrap_tau_diff(a, a, j, variant="b", seed=0, n_resamples=200, groups=g)
    assert (same.diff, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)  # a metric against itself
    # a perfect metric against a reversed one: +1 − (−1) = 2 on every resample; p = 2 / (B + 1)
    perfect = corr.bootstrap_tau_diff(j, -j, j, variant="b", seed=0, n_resamples=99, groups=g)
    assert (perfect.diff, perfect.low, perfect.high) == (2.0, 2.0, 2.0) and perfect.p == pytest.approx(2 / 100)
    # against b = −j (τ = −1 on every resample) the difference is τ(a*) + 1 on the same resamples as bootstrap_tau
    lo, hi = corr.bootstrap_tau(a, j, variant="b", seed=5, n_resamples=300, groups=g)
    shifted = corr.bootstrap_tau_diff(a, -j, j, variant="b", seed=5, n_resamples=300, groups=g)
    assert (shifted.low, shifted.high) == pytest.approx((lo + 1, hi + 1), abs=1e-12)
    assert shifted.tau_b == pytest.approx(-1.0)


def test_bootstrap_tau_diff_clustered_duplicates_equal_row_bootstrap_of_originals():
    gen = np.random.default_rng(4)
    a = gen.normal(size=30)
    b = a + gen.normal(scale=0.7, size=30)
    j = np.round(a + gen.normal(size=30))
    rows = corr.bootstrap_tau_diff(a, b, j, variant="c", seed=2, n_resamples=200)
    rep = corr.bootstrap_tau_diff(np.repeat(a, 3), np.repeat(b, 3), np.repeat(j, 3), variant="c", seed=2,
                                  n_resamples=200, groups=np.repeat(np.arange(30), 3))
    assert (rep.low, rep.high, rep.p) == pytest.approx((rows.low, rows.high, rows.p), abs=1e-12)


def test_bootstrap_tau_diff_is_paired_narrower_than_two_separate_intervals():
    # b is a close copy of a: their τ move together across resamples, so the paired interval of the difference
    # is much narrower than either τ's own interval
    gen = np.random.default_rng(8)
    a = gen.normal(size=120)
    b = a + gen.normal(scale=0.05, size=120)
    j = np.clip(np.round(a + gen.normal(size=120) + 2.5), 1, 4)
    g = np.arange(120) // 4
    d = corr.bootstrap_tau_diff(a, b, j, variant="c", seed=1, n_resamples=300, groups=g)
    wa = np.subtract(*corr.bootstrap_tau(a, j, variant="c", seed=1, n_resamples=300, groups=g)[::-1])
    wb = np.subtract(*corr.bootstrap_tau(b, j, variant="c", seed=1, n_resamples=300, groups=g)[::-1])
    assert d.high - d.low < 0.25 * min(wa, wb)
    assert d.low <= d.diff <= d.high


def test_bootstrap_tau_diff_drops_nan_rows_on_both_sides_and_errors():
    a = np.array([1.0, 2.0, 3.0, np.nan, 5.0, 6.0])
    b = np.array([2.0, 1.0, 3.0, 4.0, np.nan, 6.0])
    j = np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan])
    r = corr.bootstrap_tau_diff(a, b, j, variant="b", seed=0, n_resamples=20)
    assert r.n_rows == 3
    assert r.diff == pytest.approx(kendalltau([1, 2, 3], [1, 2, 3]).statistic - kendalltau([2, 1, 3], [1, 2, 3]).statistic)
    with pytest.raises(ValueError, match="groups has 2 labels for 6 rows"):
        corr.bootstrap_tau_diff(a, b, j, variant="b", seed=0, groups=[0, 1])
    with pytest.raises(ValueError, match="at least 2 rows where a, b and the judgement"):
        corr.bootstrap_tau_diff([1.0, np.nan], [1.0, 2.0], [1.0, 2.0], variant="b", seed=0)
    with pytest.raises(ValueError, match="unknown Kendall tau variant"):
        corr.bootstrap_tau_diff(a, b, j, variant="x", seed=0)


def test_bootstrap_p_hand_computed():
    # B = 9: 2 resamples <= 0, 7 >= 0 -> 2 · (1 + 2) / 10
    assert corr.bootstrap_p(np.array([-0.2, -0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])) == pytest.approx(0.6)
    assert corr.bootstrap_p(np.array([0.1] * 19)) == pytest.approx(0.1)
    assert corr.bootstrap_p(np.array([0.0, 0.0])) == 1.0 and math.isnan(corr.bootstrap_p(np.array([])))


def test_aligned_pairs():
    assert corr.aligned_pairs(["bleu-4", "clip-s:x"]) == [("aclip-s:x", "clip-s:x", "aCLIP-S − CLIP-S")]
    assert corr.aligned_pairs(["refaclip-s:x", "aclip-s:y"]) == [
        ("aclip-s:y", "clip-s:y", "aCLIP-S − CLIP-S"), ("refaclip-s:x", "refclip-s:x", "RefaCLIP-S − RefCLIP-S")]
    assert corr.aligned_pairs(["bleu-4", "score:blind"]) == []


# --------------------------------------------------------------------------- paired differences through the harness
def aligned_metric(texts, W, *, ref=False):
    from analysis.alignment import AlignmentMap
    from analysis.metrics import AlignedClipScoreMetric

    return AlignedClipScoreMetric(FakeDual(texts), AlignmentMap(W=np.asarray(W, float), method="lstsq"), ref=ref)


def rotation(d, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_paired_differences_identity_map_zero_and_missing_sides(synthetic_set, monkeypatch, tmp_path):
    from analysis import stats
    from analysis.metrics import ClipScoreMetric

    frame, texts = synthetic_set
    monkeypatch.setenv("STUDY_DATA", str(tmp_path / "none"))
    clip = ClipScoreMetric(FakeDual(texts), ref=False)
    same = aligned_metric(texts, np.eye(48))  # the identity map: aCLIP-S = CLIP-S on every row
    ref_clip = ClipScoreMetric(FakeDual(texts), ref=True)
    scored = corr.score_sets([clip, same, ref_clip], ["synthetic", "thumb"], n_resamples=50, seed=3)
    d = corr.paired_differences(scored, seed=3, n_resamples=50).set_index(["metric", "dataset"])
    row = d.loc[("aclip-s:fake-dual - clip-s:fake-dual", "synthetic")]
    assert (row["value"], row["low"], row["high"], row["p"]) == (0.0, 0.0, 0.0, 1.0)
    assert row["run"] == "correlation-difference" and row["judgement_kind"] == "rule-made"
    assert row["tau_aligned"] == pytest.approx(scored.rows.set_index(["metric", "dataset"]).loc[
        ("clip-s:fake-dual", "synthetic"), "value"])
    assert row["n_images"] == 16 and row["n_rows"] == 64
    # a missing aligned side (refaclip-s not among the metrics), and a human set without data here
    miss = d.loc[("refaclip-s:fake-dual - refclip-s:fake-dual", "synthetic")]
    assert math.isnan(miss["value"]) and miss["note"] == ("not compared: refaclip-s:fake-dual: not among this "
                                                          "run's metrics")
    away = d.loc[("aclip-s:fake-dual - clip-s:fake-dual", "thumb")]
    assert math.isnan(away["value"]) and away["note"].startswith("not available here: thumb: expected the file")
    assert math.isnan(away["p_holm"]) and away["judgement_kind"] == "human"
    # Holm over the family of the comparisons that ran (here one)
    assert (d["n_family"] == 1).all() and d["p_holm"].tolist() == pytest.approx(
        stats.holm(d["p"].to_numpy(float)).tolist(), nan_ok=True)


def test_paired_differences_rotated_map_matches_the_table_and_holm_family(synthetic_set):
    from analysis import stats
    from analysis.metrics import ClipScoreMetric

    frame, texts = synthetic_set
    metrics = [ClipScoreMetric(FakeDual(texts), ref=False), aligned_metric(texts, rotation(48, 1)),
               ClipScoreMetric(FakeDual(texts), ref=True), aligned_metric(texts, rotation(48, 2), ref=True)]
    scored = corr.score_sets(metrics, ["synthetic"], n_resamples=100, seed=0)
    t = scored.rows.set_index("metric")["value"]
    d = corr.paired_differences(scored, seed=0, n_resamples=100).set_index("aligned")
    assert list(d.index) == ["aclip-s:fake-dual", "refaclip-s:fake-dual"]
    for al, base in (("aclip-s:fake-dual", "clip-s:fake-dual"), ("refaclip-s:fake-dual", "refclip-s:fake-dual")):
        r = d.loc[al]
        assert r["baseline"] == base
        assert r["value"] == pytest.approx(t[al] - t[base]) and r["value"] < -10  # a random rotation hurts
        assert r["low"] <= r["value"] <= r["high"]
    assert d["p_holm"].tolist() == pytest.approx(stats.holm(d["p"].to_numpy(float)).tolist())
    assert (d["test_family"] == corr.DIFF_FAMILY).all() and (d["correction"] == "holm").all()


# --------------------------------------------------------------------------- where embedding noise enters aCLIP-S
def test_embedding_noise_before_the_map_by_default_and_after_on_request(synthetic_set):
    from PIL import Image
    import hashlib

    from analysis.alignment import l2_normalise

    frame, texts = synthetic_set
    W = np.diag(np.linspace(0.2, 5.0, 48))  # not orthogonal: the two stages differ
    m = aligned_metric(texts, W)
    im = Image.open(frame["path"][0]).convert("RGB")
    raw = FakeDual.pixels(im)[None]
    s = corr.noise_seed(7, "embedding", hashlib.sha256(im.tobytes()).hexdigest())
    before = l2_normalise(corr.add_embedding_noise(raw, 0.8, seed=s) @ W)  # noise on the encoder output, then map
    after = corr.add_embedding_noise(l2_normalise(raw @ W), 0.8, seed=s)  # map, then noise
    with corr.embedding_noise(m, 0.8, seed=7) as noisy:
        got = noisy._image_embeddings([im])
    np.testing.assert_allclose(got, before, atol=1e-12)
    with corr.embedding_noise(m, 0.8, seed=7, stage="metric") as noisy:
        np.testing.assert_allclose(noisy._image_embeddings([im]), after, atol=1e-12)
    assert not np.allclose(before, after)
    assert "_image_embeddings" not in m.__dict__
    np.testing.assert_allclose(m._image_embeddings([im]), l2_normalise(raw @ W), atol=1e-12)  # clean again
    with pytest.raises(ValueError, match="unknown embedding-noise stage 'middle'"):
        with corr.embedding_noise(m, 0.8, seed=7, stage="middle"):
            pass


def test_noise_robustness_aligned_identity_map_sees_the_same_noise_as_clip_s(synthetic_set):
    from analysis.metrics import ClipScoreMetric

    frame, texts = synthetic_set
    clip, same = ClipScoreMetric(FakeDual(texts), ref=False), aligned_metric(texts, np.eye(48))
    df = corr.noise_robustness([clip, same], "synthetic", image_sigmas=(0, 0.3), embedding_sigmas=(0, 1.5),
                               n_resamples=50, seed=2)
    a = df[df.metric == "clip-s:fake-dual"].reset_index(drop=True)
    b = df[df.metric == "aclip-s:fake-dual"].reset_index(drop=True)
    for col in ("value", "low", "high", "top_mean", "rest_mean"):
        assert b[col].tolist() == pytest.approx(a[col].tolist())  # the same per-image noise, before the (identity) map
    assert a.loc[a.sigma == 1.5, "value"].iloc[0] < a.loc[a.sigma == 0, "value"].iloc[0]
    assert set(df.loc[df.noise == "embedding", "embedding_stage"]) == {"encoder"}
    assert set(df.loc[df.noise == "image", "embedding_stage"]) == {""}


def test_noise_robustness_reuses_a_scored_set(synthetic_set):
    from analysis.metrics import ClipScoreMetric

    frame, texts = synthetic_set
    clip = ClipScoreMetric(FakeDual(texts), ref=False)
    scored = corr.score_sets([clip], ["synthetic"], n_resamples=60, seed=1)
    calls = []
    encode = clip.model.encode_image
    clip.model.encode_image = lambda imgs: calls.append(len(imgs)) or encode(imgs)
    shared = corr.noise_robustness([clip], "synthetic", image_sigmas=(0, 0.5), embedding_sigmas=(0, 1.0),
                                   n_resamples=60, seed=1, scored=scored)
    assert calls == [16]  # only the noisy images were encoded: the clean embeddings came from the table's run
    fresh = corr.noise_robustness([ClipScoreMetric(FakeDual(texts), ref=False)], "synthetic", image_sigmas=(0, 0.5),
                                  embedding_sigmas=(0, 1.0), n_resamples=60, seed=1)
    pd.testing.assert_frame_equal(shared, fresh)


# --------------------------------------------------------------------------- published anchors
def test_published_anchor_only_beside_a_whole_set_value(frames, monkeypatch):
    monkeypatch.setitem(corr.PUBLISHED_TAU, ("flickr8k-cf", "overlap"), 12.5)
    whole = corr.correlation_table([Overlap()], ["flickr8k-cf", "thumb"], root=FIX, n_resamples=10)
    assert whole.loc[0, "published"] == 12.5 and whole.loc[0, "published_source"] == corr.PUBLISHED_SOURCE
    subset = corr.correlation_table([Overlap()], ["flickr8k-cf"], root=FIX, limit=1, n_resamples=10)
    assert math.isnan(subset.loc[0, "published"]) and subset.loc[0, "published_source"] == ""
    monkeypatch.setitem(corr.PUBLISHED_TAU, ("thumb", "overlap"), 20.0)
    away = corr.correlation_table([Overlap()], ["thumb"], root=FIX / "nowhere", n_resamples=10)
    assert math.isnan(away.loc[0, "value"]) and math.isnan(away.loc[0, "published"])
    w = corr.wide_table(pd.concat([whole, away]))
    assert f"flickr8k-cf (τb): published ({corr.PUBLISHED_SOURCE})" in w.columns
    assert not any(c.startswith("thumb (τb): published") for c in w.columns)


# --------------------------------------------------------------------------- the page on a synthetic set
def test_run_metrics_page_on_a_synthetic_set(synthetic_set, monkeypatch, tmp_path):
    from analysis.metrics import ClipScoreMetric

    frame, texts = synthetic_set
    monkeypatch.setenv("STUDY_DATA", str(tmp_path / "none"))
    monkeypatch.setattr(corr, "NOISE_SET", "synthetic")

    def page():
        metrics = [ClipScoreMetric(FakeDual(texts), ref=False), aligned_metric(texts, rotation(48, 1)), Overlap()]
        return corr.run_metrics_page(smoke=False, seed=1, metrics=metrics, sets=["synthetic", "flickr8k-expert"],
                                     noise_metrics=metrics[:2], n_boot=100, progress=False,
                                     image_sigmas=(0, 0.5), embedding_sigmas=(0, 1.0))

    p = page()
    assert set(p.rows["run"]) == {"correlation", "correlation-difference", "noise-robustness"}
    assert len(p.rows[p.rows.run == "correlation"]) == 3 * 2 and len(p.rows[p.rows.run == "noise-robustness"]) == 8
    d = p.rows[p.rows.run == "correlation-difference"].set_index("dataset")
    assert np.isfinite(d.loc["synthetic", "value"]) and d.loc["flickr8k-expert", "note"].startswith("not available")
    sets = p.tables["sets"].set_index("judgement set")
    assert sets.loc["flickr8k-expert", "status"].startswith("not available here: flickr8k-expert: expected the file")
    assert sets.loc["synthetic", "judgements"] == "rule-made, not human judgements"
    assert list(p.tables["tau"].columns) == ["synthetic (rule-made, τb)"]  # no column of numbers for a set away
    assert any("not testable here" in s for s in p.sentences)
    assert all("timing" not in c and "seconds" not in c for c in p.rows.columns)
    pd.testing.assert_frame_equal(page().rows, p.rows)  # deterministic for a seed


# --------------------------------------------------------------------------- sentences from constructed rows
def diff_row(dataset, kind, value, p_holm, *, note="", aligned="aclip-s:x", baseline="clip-s:x",
             label="aCLIP-S − CLIP-S (x stand-in)"):
    return {"run": "correlation-difference", "dataset": dataset, "judgement_kind": kind, "variant": "b",
            "metric": f"{aligned} - {baseline}", "aligned": aligned, "baseline": baseline, "label": label,
            "value": value, "low": value - 3 if value == value else np.nan,
            "high": value + 3 if value == value else np.nan, "tau_aligned": 50.0 + (value if value == value else 0),
            "tau_baseline": 50.0, "p": p_holm / 2 if p_holm == p_holm else np.nan, "p_holm": p_holm,
            "n_rows": 40, "n_images": 10, "note": note}


def tau_row(dataset, kind, metric, label, value, *, note="", model="x", published=np.nan):
    return {"run": "correlation", "dataset": dataset, "judgement_kind": kind, "variant": "c", "metric": metric,
            "label": label, "model": model, "value": value, "low": value - 4, "high": value + 4, "n_rows": 30,
            "n_images": 10, "note": note, "published": published,
            "published_source": corr.PUBLISHED_SOURCE if published == published else ""}


AWAY = "data unavailable: flickr8k-expert: expected the file 'ExpertAnnotations.txt' in /d. Put it under $STUDY_DATA."


def test_sentences_missing_aligned_metric_and_a_human_set_without_data():
    from analysis import prose

    rows = pd.DataFrame([
        tau_row("ladder", "rule-made", "clip-s:x", "CLIP-S (x stand-in)", 40.0),
        tau_row("ladder", "rule-made", "score:blind", "blind", 2.0, model="blind"),
        tau_row("flickr8k-expert", "human", "clip-s:x", "CLIP-S (x stand-in)", np.nan, note=AWAY),
        diff_row("ladder", "rule-made", np.nan, np.nan,
                 note="not compared: aclip-s:x: not registered yet: aclip-s:x is planned"),
        diff_row("flickr8k-expert", "human", np.nan, np.nan, note="not available here: " + AWAY[18:]),
    ])
    s = prose.realign_metrics_sentences(rows)
    text = "\n".join(s)
    assert "`flickr8k-expert` (human judgements) is not available here, so no number is shown" in text
    assert "Put it under $STUDY_DATA." in text
    assert ("aCLIP-S − CLIP-S (x stand-in) on `ladder` (rule-made, not human judgements): not compared: "
            "aclip-s:x: not registered yet") in text
    assert "On `flickr8k-expert` the paired comparisons are not made" in text
    assert any(x.startswith("ReCap's claim") and "not testable here" in x for x in s)
    assert "rule-made sets" not in text  # no rule-made comparison ran, so nothing is said about them
    assert "No noise-robustness sweep was run." in s
    assert "nan" not in text.lower().replace("financ", "")


def test_sentences_verdicts_family_and_published_anchor():
    from analysis import prose

    rows = pd.DataFrame([
        tau_row("flickr8k-expert", "human", "bleu-4", "BLEU-4", 31.0, published=30.8),
        tau_row("flickr8k-expert", "human", "clip-s:x", "CLIP-S (x stand-in)", 45.0),
        diff_row("flickr8k-expert", "human", 4.0, 0.01),
        diff_row("thumb", "human", -1.0, 0.6),
        diff_row("ladder", "rule-made", -6.0, 0.02),
    ])
    s = prose.realign_metrics_sentences(rows)
    text = "\n".join(s)
    assert f"Published anchors on `flickr8k-expert` ({corr.PUBLISHED_SOURCE})" in text and "30.8 published" in text
    assert "on `flickr8k-expert` (human judgements): Δτ × 100 = +4.0 [+1.0, +7.0]" in text
    assert "the aligned metric correlates higher" in text and "the aligned metric correlates lower" in text
    assert "no difference detected at α = 0.05 after Holm" in text
    assert "Holm-corrected over the family of 3 comparisons" in text
    claim = next(x for x in s if x.startswith("ReCap's claim"))
    assert "holds on some human sets only" in claim and "1 of 2 comparisons significantly higher" in claim
    rule = next(x for x in s if x.startswith("On the rule-made sets"))
    assert "0 of 1 comparison significantly higher" in rule and "1 significantly lower" in rule
    # every human comparison significantly higher -> holds; none -> does not hold
    held = prose.realign_claim_sentences(pd.DataFrame([diff_row("a", "human", 4.0, 0.01)]))
    assert "correlate better with human judgement holds here" in held[0]
    not_held = prose.realign_claim_sentences(pd.DataFrame([diff_row("a", "human", 1.0, 0.4)]))
    assert "does not hold here" in not_held[0]
    assert prose.realign_difference_sentences(pd.DataFrame([tau_row("a", "human", "m", "M", 1.0)]))[0].startswith(
        "No aligned metric was paired")


def test_noise_sentences_from_rows():
    from analysis import prose

    base = {"run": "noise-robustness", "dataset": "ladder", "judgement_kind": "rule-made", "variant": "b",
            "metric": "clip-s:x", "label": "CLIP-S (x stand-in)", "note": "", "rest_mean": 0.1}
    rows = pd.DataFrame([{**base, "noise": n, "sigma": s, "value": v, "low": v - 5, "high": v + 5, "top_mean": t,
                          "embedding_stage": "encoder" if n == "embedding" else ""}
                         for n, s, v, t in (("embedding", 0.0, 60.0, 0.8), ("embedding", 1.0, 20.0, 0.4),
                                            ("image", 0.0, 60.0, 0.8), ("image", 0.2, 50.0, 0.7))])
    s = prose.realign_noise_sentences(rows)
    assert s[0] == ("`CLIP-S (x stand-in)` on `ladder` (rule-made, not human judgements): under embedding noise "
                    "τ × 100 goes from 60.0 [55.0, 65.0] at σ = 0 to 20.0 [15.0, 25.0] at σ = 1 (true captions' mean "
                    "score 0.80 → 0.40); under image noise τ × 100 goes from 60.0 [55.0, 65.0] at σ = 0 to 50.0 "
                    "[45.0, 55.0] at σ = 0.2 (true captions' mean score 0.80 → 0.70).")
    assert "before any alignment map" in s[1] and "same perturbed encoder output" in s[1]


# --------------------------------------------------------------------------- figures
def test_figures_build_from_rows_and_label_rule_made_sets(synthetic_set):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis import plots

    tau = pd.DataFrame([tau_row("ladder", "rule-made", "clip-s:x", "CLIP-S (x stand-in)", 40.0),
                        tau_row("ladder", "rule-made", "aclip-s:x", "aCLIP-S (x stand-in)", 45.0),
                        tau_row("flickr8k-expert", "human", "clip-s:x", "CLIP-S (x stand-in)", np.nan, note=AWAY)])
    fig = plots.tau_intervals(tau)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 1 and "rule-made, not human judgements" in titles[0].replace("\n", " ")
    assert fig.axes[0].get_xlabel().startswith("Kendall τ × 100")
    plt.close(fig)
    diffs = pd.DataFrame([diff_row("ladder", "rule-made", 5.0, 0.2), diff_row("thumb", "human", np.nan, np.nan)])
    fig = plots.tau_differences(diffs)
    assert fig.axes[0].get_xlabel().startswith("Δτ × 100") and len(fig.axes[0].get_yticklabels()) == 1
    plt.close(fig)
    plt.close(plots.tau_differences(diffs.iloc[1:]))
    noise = pd.DataFrame([{"run": "noise-robustness", "dataset": "ladder", "judgement_kind": "rule-made",
                           "variant": "b", "label": "CLIP-S (x stand-in)", "noise": n, "sigma": s, "value": 50 - 10 * s,
                           "low": 40.0, "high": 60.0, "top_mean": 0.8, "embedding_stage": "encoder" if n == "embedding"
                           else ""} for n in ("image", "embedding") for s in (0.0, 0.5, 1.0)])
    fig = plots.noise_curves(noise)
    assert "rule-made, not human judgements" in fig._suptitle.get_text()
    assert "before the map" in fig.axes[1].get_title() and all(ax.get_xlabel() for ax in fig.axes)
    plt.close(fig)


def test_page_defaults_are_the_declared_ones():
    import inspect

    from analysis.parameters import DECLARED

    sig = inspect.signature(corr.run_metrics_page).parameters
    for p in DECLARED["realign-metrics"]:
        d = sig[p.name].default
        assert (list(d) if isinstance(d, tuple) else d) == p.default, p.name
    assert sig["progress"].default is True
