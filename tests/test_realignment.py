"""The Realignment part's experiment layer (issue 10): aCLIP-S / RefaCLIP-S against a numpy restatement and
known answers, the registry names and cards, which pairs a map is fitted on (never the evaluated ones, by
content, in both settings and every fold), the transfer folds, the cached map, the published-weights path
on the COCO fixture with a tiny open_clip model, the diagnostics' rows at smoke size and their sentences."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import alignment, cache, measures, metrics, prose, realignment, registry
from analysis.alignment import AlignmentMap, fit_alignment
from analysis.data.base import DataUnavailable, normalise_caption
from analysis.metrics import (AlignedClipScoreMetric, ClipScoreMetric, aclip_s, clip_s, ref_aclip_s,
                              ref_clip_s)
from analysis.realignment import assign_folds, content_groups, positives

FIX = Path(__file__).parent / "fixtures" / "real_formats"


def unit(a):
    a = np.asarray(a, float)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- aCLIP-S / RefaCLIP-S as functions
@pytest.fixture
def emb():
    """Constructed embeddings: 6 images and 6 candidates (unit rows, d = 5), 2-3 references each, and a known
    non-orthogonal W."""
    rng = np.random.default_rng(3)
    v, c = unit(rng.standard_normal((6, 5))), unit(rng.standard_normal((6, 5)))
    refs = [unit(rng.standard_normal((int(k), 5))) for k in rng.integers(2, 4, 6)]
    W = rng.standard_normal((5, 5)) + 2 * np.eye(5)
    return v, c, refs, W


def test_aclip_s_equals_clip_s_of_the_mapped_normalised_image(emb):
    v, c, _, W = emb
    amap = AlignmentMap(W=W, method="lstsq")
    mapped = v @ W
    expected = clip_s(mapped / np.linalg.norm(mapped, axis=1, keepdims=True), c)
    np.testing.assert_allclose(aclip_s(v, c, amap), expected, atol=1e-12)
    assert not np.allclose(expected, clip_s(v, c))  # the map matters on these rows


def test_aclip_s_known_answer_a_map_that_turns_the_image_onto_its_caption():
    # W sends e1 to 3·e2: CLIP-S of (e1, e2) is 0, aCLIP-S is 2.5 (normalised: cos = 1)
    W = np.array([[0.0, 3.0], [1.0, 0.0]])
    v, c = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    assert clip_s(v, c).tolist() == [0.0]
    assert aclip_s(v, c, AlignmentMap(W=W, method="lstsq")).tolist() == [2.5]


def test_identity_map_gives_clip_s_and_ref_clip_s(emb):
    v, c, refs, _ = emb
    ident = AlignmentMap(W=np.eye(5), method="procrustes")
    np.testing.assert_allclose(aclip_s(v, c, ident), clip_s(v, c), atol=1e-12)
    np.testing.assert_allclose(ref_aclip_s(v, c, refs, ident), ref_clip_s(v, c, refs), atol=1e-12)


def test_ref_aclip_s_is_the_harmonic_mean_with_the_unmapped_references(emb):
    v, c, refs, W = emb
    amap = AlignmentMap(W=W, method="lstsq")
    a = aclip_s(v, c, amap)
    b = np.array([max(float(r @ ci) for r in rr) for ci, rr in zip(c, refs)])
    got = ref_aclip_s(v, c, refs, amap)
    ok = a + b != 0
    np.testing.assert_allclose(got[ok], (2 * a * b / (a + b))[ok], atol=1e-12)
    # a standardized map: the z-scoring is undone before normalising (text units), as AlignmentMap.apply says
    x = np.random.default_rng(0).standard_normal((40, 5))
    zmap = fit_alignment(x, x @ W + 1.0, method="lstsq", standardize=True)
    np.testing.assert_allclose(aclip_s(v, c, zmap), clip_s(unit(zmap.apply(v)), c), atol=1e-12)


# ----------------------------------------------------------------------------- the metric classes
class FakeDual:
    """A dual encoder over constructed embeddings: image objects are ints (row of ``V``), captions keys of ``T``."""

    family, source, name, label, checkpoint_hash = "dual", "embedded", "fake-dual", "fake (stand-in)", "f" * 64

    def __init__(self, V, T):
        self.V, self.T = V, T

    def encode_image(self, images):
        return self.V[list(images)]

    def encode_text(self, captions):
        return np.stack([self.T[c] for c in captions])


@pytest.fixture
def fake(emb):
    v, c, refs, W = emb
    prefix = metrics.CLIP_S_PREFIX
    T = {prefix + f"cand {i}": c[i] for i in range(6)}
    T.update({prefix + f"ref {i}.{j}": r for i, rr in enumerate(refs) for j, r in enumerate(rr)})
    gts = {f"id{i}": [f"ref {i}.{j}" for j in range(len(refs[i]))] for i in range(6)}
    res = {f"id{i}": [f"cand {i}"] for i in range(6)}
    return FakeDual(v, T), gts, res, {f"id{i}": i for i in range(6)}, emb


@pytest.mark.parametrize("ref", [False, True])
def test_aligned_metric_shares_the_clip_s_code_path(fake, ref):
    scorer, gts, res, images, (v, c, refs, W) = fake
    amap = AlignmentMap(W=W, method="lstsq", provenance={"source": {"setting": "in-domain"}})
    m = AlignedClipScoreMetric(scorer, amap, ref=ref, fitted_on="constructed rows")
    corpus, per = m.compute_score(gts, res, images=images)
    expected = ref_aclip_s(v, c, refs, amap) if ref else aclip_s(v, c, amap)
    np.testing.assert_allclose(per, expected, atol=1e-12)
    assert corpus == pytest.approx(expected.mean())
    assert m.name == ("refaclip-s:fake-dual" if ref else "aclip-s:fake-dual")
    assert m.info()["alignment"]["fitted_on"] == "constructed rows" and m.stand_in
    assert "in-domain lstsq map" in m.label and "fake (stand-in)" in m.label
    # the identity map gives the plain metric's numbers
    ident = AlignedClipScoreMetric(scorer, AlignmentMap(W=np.eye(5), method="procrustes"), ref=ref)
    np.testing.assert_allclose(ident.compute_score(gts, res, images=images)[1],
                               ClipScoreMetric(scorer, ref=ref).compute_score(gts, res, images=images)[1], atol=1e-12)


def test_aligned_metric_refuses_a_text_only_scorer():
    class Blind:
        family, name = "text-only", "blind"

    with pytest.raises(ValueError, match="dual-encoder"):
        AlignedClipScoreMetric(Blind(), AlignmentMap(W=np.eye(2), method="procrustes"), ref=False)


def test_registry_entries_and_cards():
    for name in ("aclip-s:clip-mini", "refaclip-s:clip-mini"):
        e = registry.METRICS.entry(name)
        assert e.prefix and e.meta["images"] and "kwargs" in e.meta
    tab = measures.cards_table(["aclip-s:clip-mini", "refaclip-s:clip-mini"]).set_index("measure")
    for name in ("aclip-s:clip-mini", "refaclip-s:clip-mini"):
        row = tab.loc[name]
        assert "2307.05591" in row["formula"] and row["published (verified)"] == ""
        assert "never" in row["limits here"] and "stand-in" in row["limits here"]
    assert "the image embedding replaced by the aligned one" in tab.loc["aclip-s:clip-mini", "formula"]


def test_aclip_s_clip_mini_resolves_at_smoke_size():
    m = registry.build_metric("aclip-s:clip-mini", smoke=True, seed=0)
    info = m.info()
    assert info["alignment"]["source"]["setting"] == "in-domain" and info["alignment"]["method"] == "procrustes"
    assert "never on the evaluated pairs" in info["alignment"]["fitted_on"] and m.stand_in
    ds = registry.get_dataset("stamp-scenes", split="test", limit=3)
    gts = {it.id: it.captions[1:] for it in ds}
    res = {it.id: [it.captions[0]] for it in ds}
    images = {it.id: it.image() for it in ds}
    _, per = m.compute_score(gts, res, images=images)
    plain = registry.build_metric("clip-s:clip-mini", smoke=True, seed=0)
    v = plain.model.encode_image(list(images.values()))
    c = plain.model.encode_text([metrics.CLIP_S_PREFIX + r[0] for r in res.values()])
    np.testing.assert_allclose(per, aclip_s(v, c, m.map), atol=1e-9)
    r = registry.build_metric("refaclip-s:clip-mini", smoke=True, seed=0)
    assert r.map.provenance["fingerprint"] == m.map.provenance["fingerprint"]
    t = registry.get_metric("aclip-s:clip-mini", setting="transfer", method="lstsq", smoke=True, seed=0)
    al = t.info()["alignment"]
    assert al["source"]["setting"] == "transfer" and "every photo" in al["fitted_on"]
    assert "transfer lstsq map" in t.label


# ----------------------------------------------------------------------------- folds and content groups
def test_content_groups_join_shared_files_and_captions_transitively():
    g = content_groups(["a", "b", "c", "d", "b"], [["Fish"], ["fish."], ["tree"], ["oak"], ["oak!"]])
    # a-b by caption, b-b by file, b(2)-d by caption: one group; c alone
    assert g.tolist() == [0, 0, 1, 0, 0]


def test_assign_folds_keeps_groups_whole_and_balances():
    groups = [0] * 5 + [1, 2, 3, 4, 5, 6, 7, 8, 9]
    f = assign_folds(groups, folds=3, seed=1)
    assert len(set(f[:5])) == 1  # the big group in one fold
    assert sorted(np.bincount(f, minlength=3).tolist()) == [4, 5, 5]
    assert (assign_folds(groups, folds=3, seed=1) == f).all()
    with pytest.raises(ValueError, match="content groups"):
        assign_folds([0, 0, 1], folds=3)


def test_positives_count_duplicate_gallery_captions_as_true():
    p = realignment.Pairs(np.zeros((4, 1)), np.zeros((4, 1)), list("abcd"), ["h1", "h2", "h2", "h3"],
                          ["A fish", "a fish!", "a red fish", "tree"], ["d"] * 4, np.array([1, 1, 0, 1], bool))
    assert positives(p).tolist() == [[True, True, False], [True, True, False], [False, False, True]]


def _content(items):
    return ({cache.file_sha256(it.path) for _, it in items},
            {normalise_caption(c) for _, it in items for c in it.captions})


def test_full_size_item_sides_share_no_content():
    """Without encoding anything: the full in-domain train and test items, and every full transfer fold
    against the other folds, share no image file and no normalised caption."""
    sc = registry.build_scorer("clip-mini", smoke=False, seed=0)
    tr = realignment._items("in-domain", "train", sc, False)
    te = realignment._items("in-domain", "test", sc, False)
    (h1, c1), (h2, c2) = _content(tr), _content(te)
    assert not h1 & h2 and not c1 & c2
    photos = realignment._items("transfer", "train", sc, False)
    assert len(photos) == sum(len(registry.get_dataset(n)) for n in realignment.TRANSFER_DATASETS)
    shas = [cache.file_sha256(it.path) for _, it in photos]
    fold = assign_folds(content_groups(shas, [it.captions for _, it in photos]), folds=5, seed=0)
    assert set(fold) == set(range(5))
    for k in range(5):
        (ha, ca), (hb, cb) = _content([x for x, f in zip(photos, fold) if f == k]), \
            _content([x for x, f in zip(photos, fold) if f != k])
        assert not ha & hb and not ca & cb, k


@pytest.mark.parametrize("setting,fold", [("in-domain", None), *(("transfer", k) for k in range(5))])
def test_fit_rows_are_disjoint_from_evaluation_rows_by_content(setting, fold):
    fit = realignment.pairs("clip-mini", setting, split="train", fold=fold, smoke=True, progress=False)
    ev = realignment.pairs("clip-mini", setting, split="test", fold=fold, smoke=True, progress=False)
    assert len(fit) and len(ev)
    (hf, cf), (he, ce) = fit.content(), ev.content()
    assert not hf & he and not cf & ce
    assert not set(fit.image_ids) & set(ev.image_ids)
    amap = realignment.fitted_map("clip-mini", setting=setting, fold=fold, smoke=True, progress=False)
    assert amap.provenance["fingerprint"] == alignment.fingerprint(fit.image, fit.text)
    assert amap.provenance["n"] == len(fit) and amap.provenance["source"]["setting"] == setting


def test_val_rows_share_no_content_with_train_or_test():
    """The in-domain val split (where the speed page's gradient mappers stop) shares no image file and no
    normalised caption with the fitting pairs or the test split, at smoke size (SMOKE_TEST_ITEMS per dataset)."""
    val = realignment.pairs("clip-mini", "in-domain", split="val", smoke=True, progress=False)
    fit = realignment.pairs("clip-mini", "in-domain", split="train", smoke=True, progress=False)
    test = realignment.pairs("clip-mini", "in-domain", split="test", smoke=True, progress=False)
    assert val.n_images == 2 * realignment.SMOKE_TEST_ITEMS and len(val) >= val.n_images
    assert val.provenance["split"] == "val" and val.provenance["dropped_overlap"] == 0
    (hv, cv) = val.content()
    for other in (fit, test):
        (ho, co) = other.content()
        assert not hv & ho and not cv & co
        assert not set(val.image_ids) & set(other.image_ids)
    assert positives(val).shape == (val.n_images, val.n_images)


def test_val_drops_rows_that_overlap_train_or_test(monkeypatch):
    """Constructed: a val item reusing a test image file and one reusing a train caption are dropped by row."""
    from types import SimpleNamespace

    sc = registry.build_scorer("clip-mini", smoke=True, seed=0)
    tr = realignment._items("in-domain", "train", sc, True)
    te = realignment._items("in-domain", "test", sc, True)
    va = realignment._items("in-domain", "val", sc, True)
    (n0, a), (n1, b) = va[0], va[1]
    odd = [(n0, SimpleNamespace(id="x", path=te[0][1].path, captions=["a caption seen nowhere else"])),
           (n1, SimpleNamespace(id="y", path=b.path, captions=[tr[0][1].captions[0].upper(), "kept"]))]
    real = realignment._items
    monkeypatch.setattr(realignment, "_items",
                        lambda setting, split, scorer, smoke: odd + va[2:] if split == "val" else real(setting, split,
                                                                                                  scorer, smoke))
    # content only: nothing is encoded, so nothing new goes into the shared cache
    monkeypatch.setattr(realignment, "_embed", lambda scorer, items, prefix, progress, prov: (
        realignment.replace(realignment._content_only(items), provenance=prov), None))
    saved = realignment._MEMO.pop("pairs", None)
    try:
        p = realignment.pairs(sc, "in-domain", split="val", smoke=True, progress=False)
    finally:
        realignment._MEMO.pop("pairs", None)
        if saved is not None:
            realignment._MEMO["pairs"] = saved
    assert p.provenance["dropped_overlap"] == 2 and "kept" in p.captions
    assert "a caption seen nowhere else" not in p.captions


def test_transfer_folds_partition_the_photos():
    held = [realignment.pairs("clip-mini", "transfer", split="test", fold=k, smoke=True, progress=False)
            for k in range(realignment.FOLDS)]
    every = realignment.pairs("clip-mini", "transfer", split="train", fold=None, smoke=True, progress=False)
    ids = [set(p.image_ids) for p in held]
    assert all(ids) and sum(map(len, ids)) == len(set().union(*ids))  # disjoint, none empty
    assert set().union(*ids) == set(every.image_ids)  # together: every photo
    assert every.n_images == 2 * realignment.SMOKE_TRANSFER_ITEMS
    for k, p in enumerate(held):  # train of fold k = every photo outside fold k
        fit = realignment.pairs("clip-mini", "transfer", split="train", fold=k, smoke=True, progress=False)
        assert set(fit.image_ids) == set(every.image_ids) - ids[k]


def test_pairs_rows_and_embeddings():
    p = realignment.pairs("clip-mini", "in-domain", split="train", smoke=True, progress=False)
    from analysis.scorers import training

    assert p.n_images == 2 * training.SMOKE_ITEMS and len(p) > p.n_images  # scenes repeat their image
    assert p.image.shape == p.text.shape == (len(p), p.image.shape[1])
    np.testing.assert_allclose(np.linalg.norm(p.image, axis=1), 1, atol=1e-6)
    sc = registry.build_scorer("clip-mini", smoke=True, seed=0)
    np.testing.assert_allclose(p.text[:3], sc.encode_text([metrics.CLIP_S_PREFIX + c for c in p.captions[:3]]),
                               atol=1e-6)
    assert not p.image.flags.writeable  # a remembered Pairs is shared: read-only


@pytest.mark.parametrize("kwargs,match", [
    ({"setting": "nowhere"}, "unknown setting"), ({"fold": 1}, "transfer setting only"),
    ({"setting": "transfer", "split": "test"}, "held-out fold"), ({"split": "dev"}, "split must be"),
    ({"setting": "transfer", "split": "val"}, "no 'val' split"), ({"setting": "transfer", "fold": 7}, "fold must be")])
def test_pairs_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        realignment.pairs("clip-mini", **{"split": "train", **kwargs}, smoke=True)


def test_pairs_refuses_a_text_only_scorer():
    with pytest.raises(ValueError, match="dual-encoder"):
        realignment.pairs("blind", smoke=True)


def test_cached_map_reloads_equal():
    a = realignment.fitted_map("clip-mini", method="ridge", standardize=True, smoke=True, progress=False)
    realignment._MEMO.pop("maps", None)  # read back from the cache entry, not from memory
    b = realignment.fitted_map("clip-mini", method="ridge", standardize=True, smoke=True, progress=False)
    assert a is not b
    for f in ("W", "x_mean", "x_std", "y_mean", "y_std"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.provenance == b.provenance and a.fit_seconds == b.fit_seconds
    fit = realignment.pairs("clip-mini", split="train", smoke=True, progress=False)
    fresh = fit_alignment(fit.image, fit.text, method="ridge", standardize=True)
    np.testing.assert_allclose(b.W, fresh.W, atol=1e-12)
    c = realignment.fitted_map("clip-mini", method="ridge", standardize=True, smoke=True, progress=False, alpha=5.0)
    assert not np.allclose(c.W, b.W)


# ----------------------------------------------------------------------------- published weights (tiny open_clip)
@pytest.fixture
def tiny_clip(tmp_path, monkeypatch, isolated_data):
    import tiny_published as tp

    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))
    path = tp.clip_checkpoint(tmp_path / "weights")
    return f"clip:{tp.CLIP_ARCH}/{path}"


def test_published_in_domain_needs_coco_and_says_how_to_supply_it(tiny_clip):
    with pytest.raises(DataUnavailable, match="coco-karpathy") as e:
        realignment.pairs(tiny_clip, "in-domain", split="train", progress=False)
    assert "STUDY_DATA" in str(e.value) and "transfer" in str(e.value)


def test_published_in_domain_runs_on_the_coco_fixture(tiny_clip, monkeypatch, tmp_path):
    data = tmp_path / "study-data"
    shutil.copytree(FIX / "coco", data / "coco")
    monkeypatch.setenv("STUDY_DATA", str(data))
    fit = realignment.pairs(tiny_clip, "in-domain", split="train", progress=False)
    ev = realignment.pairs(tiny_clip, "in-domain", split="test", progress=False)
    assert fit.dataset_label() == "coco-karpathy" and (fit.n_images, ev.n_images) == (2, 1)
    assert len(fit) == 7 and len(ev) == 5
    m = registry.build_metric(f"aclip-s:{tiny_clip}")
    assert m.info()["alignment"]["source"]["datasets"] == ["coco-karpathy"]
    ds = registry.get_dataset("coco-karpathy", split="test")
    it = ds[0]
    _, per = m.compute_score({it.id: it.captions[1:]}, {it.id: it.captions[:1]}, images={it.id: it.image()})
    assert per.shape == (1,) and 0 <= per[0] <= 2.5


# ----------------------------------------------------------------------------- diagnostics
DIAG = dict(smoke=True, methods=["lstsq", "procrustes"], standardize=(False,), folds=3, n_boot=50, sweep_seeds=2,
            progress=False)


@pytest.fixture(scope="module")
def page():
    return realignment.run_diagnostics(**DIAG)


def test_diagnostics_rows_have_every_metric_before_and_after(page):
    r = page.rows
    assert set(r["setting"]) == {"in-domain", "transfer"}
    assert (r["label"][r["model"] == "clip-mini"] == "clip-mini (CLIP-style stand-in)").all()
    assert (r["source"] == "embedded").all() and r["smoke"].all() and (r["run"] == "realignment").all()
    metric_names = {"centroid_distance", "true_pair_cosine", "random_pair_cosine", "cosine_margin",
                    *(f"{d}_R@{k}" for d in ("i2t", "t2i") for k in (1, 5, 10))}
    for setting, folds in (("in-domain", [""]), ("transfer", ["0", "1", "2", "pooled"])):
        for fold in folds:
            g = r[(r.setting == setting) & (r.fold == fold)]
            for method, stage in (("none", "before"), ("procrustes", "after"), ("lstsq", "after")):
                got = set(g[(g.method == method) & (g.stage == stage)]["metric"])
                assert got == metric_names, (setting, fold, method)
    rk = r[r.metric.str.contains("R@") & r.stage.isin(["before", "after"])]
    assert rk["chance"].between(0, 1).all() and (rk["ci_low"] <= rk["value"]).all()
    assert (rk["value"] <= rk["ci_high"] + 1e-12).all()
    ind = r[(r.setting == "in-domain") & (r.metric == "i2t_R@1") & (r.stage == "before")].iloc[0]
    assert ind["chance"] == pytest.approx(1 / ind["n"])  # one true caption per image in-domain: k/n


def test_diagnostics_changes_are_paired_and_holm_corrected(page):
    ch = page.rows[page.rows.stage == "change"]
    assert set(ch["metric"]) == {"i2t_R@1", "t2i_R@1", "i2t_R@5", "t2i_R@5"}
    assert set(ch["fold"]) <= {"", "pooled"} and len(ch) == 2 * 2 * 4
    assert ch["p_holm"].notna().all() and (ch["p_holm"] >= ch["p"] - 1e-12).all()
    assert ch["test_family"].str.contains("Holm").all()
    r = page.rows
    for row in ch.itertuples():  # the change is after − before of the summary rows
        sel = (r.setting == row.setting) & (r.metric == row.metric) & (r.fold == row.fold)
        after = r[sel & (r.stage == "after") & (r.method == row.method)]["value"].iloc[0]
        before = r[sel & (r.stage == "before")]["value"].iloc[0]
        assert row.value == pytest.approx(after - before)


def test_diagnostics_blind_row_data_rows_sweep_and_tables(page):
    r = page.rows
    blind = r[r.model == "blind"]
    assert len(blind) == 2 and blind["value"].isna().all() and blind["note"].str.contains("chance").all()
    data = r[r.stage == "data"]
    assert (data[data.metric == "dropped_overlap"]["value"] == 0).all()
    assert set(page.frames["sweep"]["method"]) == {"procrustes", "lstsq"}
    sw = page.frames["sweep"]
    assert sw["seed"].nunique() == 2 and "fit_seconds" not in sw
    ev = realignment.pairs("clip-mini", "in-domain", split="test", smoke=True, progress=False)
    assert (sw["n"] == ev.n_images).all()  # every evaluation image, duplicate gallery captions counted as true
    # the sweep's full fit is the page's own map on the same queries: the same R@k as its "after" rows
    full = sw[(sw.fraction == 1.0) & (sw.method == "procrustes")].groupby("metric")["value"].agg(["min", "max"])
    after = r[(r.setting == "in-domain") & (r.stage == "after") & (r.method == "procrustes") & (r.fold == "")]
    for metric, v in zip(after.metric, after.value):
        if metric in full.index:
            assert full.loc[metric, "min"] == pytest.approx(v) and full.loc[metric, "max"] == pytest.approx(v)
    assert {"gap", "retrieval", "changes", "fit_seconds", "data"} <= set(page.tables)
    assert (page.tables["fit_seconds"]["fit_seconds"] >= 0).all()
    assert {"true pair", "random pair"} == set(page.frames["cosines"]["pair"])
    assert "fit_seconds" not in r.columns  # wall times stay out of the rows
    assert page.sentences and all(isinstance(s, str) for s in page.sentences)


def test_diagnostics_are_deterministic(page):
    again = realignment.run_diagnostics(**DIAG)
    pd.testing.assert_frame_equal(page.rows, again.rows)
    for name in ("sweep", "cosines", "retrieval"):  # the figures' data too: no times in them
        pd.testing.assert_frame_equal(page.frames[name], again.frames[name])
    assert page.sentences == again.sentences


def test_diagnostics_frames_for_the_figures(page):
    r = page.rows
    cos = page.frames["cosines"]
    assert set(cos["setting"]) == {"in-domain", "transfer"} and set(cos["stage"]) == {"before", "after"}
    assert set(cos.loc[cos.stage == "after", "map"]) == {"procrustes"}  # ReCap's map, though not listed first
    assert set(cos.loc[cos.stage == "before", "map"]) == {"unaligned"}
    assert (cos["label"] == "clip-mini (CLIP-style stand-in)").all()
    for (setting, stage), g in cos.groupby(["setting", "stage"]):
        fold = "" if setting == "in-domain" else "pooled"
        sel = (r.setting == setting) & (r.fold == fold) & (r.stage == stage) & r.method.isin(["none", "procrustes"])
        n = int(r[sel & (r.metric == "true_pair_cosine")]["n"].iloc[0])
        assert (g["pair"] == "true pair").sum() == (g["pair"] == "random pair").sum() == n  # each image once
        if setting == "in-domain":  # one fold: the figure's mean is the row's value
            for pair, metric in (("true pair", "true_pair_cosine"), ("random pair", "random_pair_cosine")):
                assert g.loc[g.pair == pair, "cosine"].mean() == pytest.approx(
                    r[sel & (r.metric == metric)]["value"].iloc[0], abs=1e-6)
    ret = page.frames["retrieval"]
    assert len(ret) == 2 * 3 * 2 * 2  # setting × (unaligned, lstsq, procrustes) × direction × k
    assert set(ret["k"]) == {1, 5} and set(ret["direction"]) == {"image→text", "text→image"}
    assert (ret.groupby("setting")["map"].first() == "unaligned").all()
    assert (ret["ci_low"] <= ret["value"] + 1e-12).all() and (ret["value"] <= ret["ci_high"] + 1e-12).all()
    assert ret["chance"].between(0, 1).all()
    for row in ret.itertuples():
        fold = "" if row.setting == "in-domain" else "pooled"
        src = r[(r.setting == row.setting) & (r.fold == fold) & (r.metric == row.metric) & (r.method == row.method)
                & r.stage.isin(["before", "after"])]
        assert src["value"].iloc[0] == row.value and src["ci_high"].iloc[0] == row.ci_high
    assert list(realignment.retrieval_frame(pd.DataFrame()).columns) == list(ret.columns)


def test_fit_times_go_to_the_timings_not_the_rows(page):
    fits = [t for t in page.timings if t["what"].startswith("fit ")]
    assert len(fits) == 2 * 2  # setting × method
    assert all(t["seconds"] >= 0 and t["run"] == "realignment" for t in fits)
    assert any("mean over folds" in t["what"] for t in fits) and any("in-domain" in t["what"] for t in fits)
    assert not any("second" in c for c in page.rows.columns) and "fit_seconds" not in page.frames["sweep"]
    tab = page.tables["fit_seconds"]
    assert set(tab["map"]) == {"procrustes", "lstsq"} and (tab["fit_seconds"] >= 0).all()


def test_run_diagnostics_takes_the_declared_parameters_and_checks_them():
    import inspect

    from analysis import parameters

    sig = inspect.signature(realignment.run_diagnostics).parameters
    declared = parameters.DECLARED["realign-method"]
    assert [p.name for p in declared if p.name not in sig] == []
    for p in declared:  # the function's defaults are the page's defaults
        default = sig[p.name].default
        assert (list(default) if isinstance(default, tuple) else default) == p.default, p.name
    for kwargs, match in (({"methods": []}, "methods is empty"), ({"methods": ["nope"]}, "unknown alignment method"),
                          ({"folds": 1}, "folds must be"), ({"n_boot": 0}, "n_boot must be")):
        with pytest.raises(ValueError, match=match):
            realignment.run_diagnostics(smoke=True, progress=False, **kwargs)


# ----------------------------------------------------------------------------- sentences on constructed rows
def _row(setting, stage, metric, value, method="none", fold="", **kw):
    return {"setting": setting, "stage": stage, "metric": metric, "value": value, "method": method,
            "standardize": False, "fold": fold, "n": 100, "dataset": "d1 + d2", "label": "m (stand-in)",
            "model": "m", "ci_low": kw.get("lo", np.nan), "ci_high": kw.get("hi", np.nan),
            "chance": kw.get("chance", np.nan), "p_holm": kw.get("p", np.nan), "note": ""}


def _constructed():
    rows = []
    for setting, fold, gain in (("in-domain", "", 0.20), ("transfer", "pooled", 0.05)):
        rows += [_row(setting, "before", "centroid_distance", 0.8, fold=fold),
                 _row(setting, "after", "centroid_distance", 0.3, "procrustes", fold),
                 _row(setting, "after", "centroid_distance", 0.1, "lstsq", fold),
                 _row(setting, "before", "true_pair_cosine", 0.2, fold=fold),
                 _row(setting, "after", "true_pair_cosine", 0.5, "procrustes", fold),
                 _row(setting, "before", "random_pair_cosine", 0.1, fold=fold),
                 _row(setting, "after", "random_pair_cosine", 0.3, "procrustes", fold)]
        for d in ("i2t", "t2i"):
            rows += [_row(setting, "before", f"{d}_R@1", 0.30, fold=fold, lo=0.2, hi=0.4, chance=0.01),
                     _row(setting, "after", f"{d}_R@1", 0.30 + gain, "procrustes", fold, lo=0.4, hi=0.6,
                          chance=0.01),
                     _row(setting, "change", f"{d}_R@1", gain, "procrustes", fold, lo=gain - 0.1, hi=gain + 0.1,
                          p=0.001 if gain > 0.1 else 0.4)]
    rows.append({**_row("in-domain", "baseline", "blind_retrieval", np.nan), "model": "blind",
                 "note": "no image embedding: chance by construction"})
    return pd.DataFrame(rows)


def test_gap_sentences_state_before_after_and_the_lowest_map():
    s = prose.realignment_gap_sentences(_constructed())
    assert len(s) == 2
    assert "0.800 unaligned and 0.300 after the `procrustes` map" in s[0]
    assert "lowest of the 2 maps: 0.100, `lstsq`" in s[0]
    assert "true-pair cosine goes from 0.20 to 0.50" in s[0] and "random-pair cosine from 0.10 to 0.30" in s[0]
    assert "pooled over the held-out folds" in s[1]


def test_sentences_say_so_when_the_unaligned_baseline_is_missing():
    rows = _constructed()
    rows = rows[~((rows.setting == "transfer") & (rows.stage == "before"))]
    gap = prose.realignment_gap_sentences(rows)
    assert "transfer rows have no unaligned baseline" in gap[1]
    ret = prose.realignment_retrieval_sentences(rows)
    assert any("transfer rows have no unaligned image→text R@1" in x for x in ret)
    no_blind = prose.realignment_retrieval_sentences(rows[rows.model != "blind"])
    assert "No text-only `blind` row" in no_blind[-1]
    assert prose.realignment_gap_sentences(pd.DataFrame()) == ["No alignment diagnostics were run."]


def test_retrieval_and_setting_sentences_carry_the_corrected_verdicts():
    rows = _constructed()
    ret = prose.realignment_retrieval_sentences(rows)
    assert "0.30 [0.20, 0.40] unaligned and 0.50 [0.40, 0.60]" in ret[0] and "a significant gain" in ret[0]
    assert "not distinguishable from no change" in ret[2]  # transfer: +0.05, corrected p 0.4
    assert ret[-1].startswith("`blind` has no value here: no image embedding")
    st = prose.realignment_setting_sentences(rows)
    assert "+0.20 [+0.10, +0.30] in-domain (corrected p = 0.001)" in st[0] and "+0.05" in st[0]
    assert "larger in-domain" in st[0] and "(corrected p = 0.40)" in st[0]
    assert "difference is not itself tested" in st[0]  # different images: no test between the settings
    only = prose.realignment_setting_sentences(rows[rows.setting == "in-domain"])
    assert "cannot be compared" in only[0]


def test_change_sentences_list_every_significant_change_gains_and_losses():
    rows = _constructed()  # in-domain gains +0.20 (corrected p 0.001) both ways; transfer +0.05, p 0.4
    s = prose.realignment_change_sentences(rows)
    assert len(s) == 1 and "Of the 4 paired tests" in s[0] and "2 are significant" in s[0]
    assert "2 gains and 0 losses" in s[0]
    assert "`procrustes` in-domain image→text R@1 +0.20 [+0.10, +0.30] (corrected p = 0.001)" in s[0]
    assert "transfer" not in s[0].split(": ", 1)[1]  # the non-significant ones are not listed
    loss = rows.copy()
    sel = (loss.stage == "change") & (loss.setting == "transfer") & (loss.metric == "t2i_R@1")
    loss.loc[sel, ["value", "ci_low", "ci_high", "p_holm"]] = [-0.13, -0.19, -0.07, 0.001]
    s = prose.realignment_change_sentences(loss)
    assert "3 are significant" in s[0] and "2 gains and 1 loss:" in s[0]
    assert s[0].index("transfer text→image R@1 -0.13") < s[0].index("in-domain")  # losses first
    none = rows.assign(p_holm=np.where(rows.stage == "change", 0.5, rows.p_holm))
    assert prose.realignment_change_sentences(none)[0].startswith("None of the 4 paired tests")
    assert prose.realignment_change_sentences(rows[rows.stage != "change"]) == [
        "No paired before/after test of retrieval is in these rows."]
    assert prose.realignment_change_sentences(pd.DataFrame()) == [
        "No paired before/after test of retrieval is in these rows."]


def test_sweep_sentences():
    sw = pd.DataFrame([{"method": "procrustes", "metric": "i2t_R@1", "fraction": f, "seed": s, "n_fit": int(f * 200),
                        "value": v} for f, v in ((0.1, 0.20), (0.5, 0.39), (1.0, 0.40)) for s in (0, 1)])
    s = prose.realignment_sweep_sentences(sw)
    assert "0.40 with all 200 fitting pairs" in s[0] and "from 50% of them (100 pairs) on" in s[0]
    assert "on 7 evaluation images" in prose.realignment_sweep_sentences(sw.assign(n=7))[0]
    assert "mean of 2 seeds" in s[0]
    flat = sw.assign(value=np.where(sw.fraction < 1, 0.1, 0.4))
    assert "no smaller fraction" in prose.realignment_sweep_sentences(flat)[0]
    assert prose.realignment_sweep_sentences(pd.DataFrame()) == ["No data-fraction sweep was run."]


def test_figures_have_titles_labelled_axes_and_the_stand_in_label(page):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis import plots

    for fig in (plots.realign_cosines(page.frames["cosines"]), plots.realign_retrieval(page.frames["retrieval"]),
                plots.realign_sweep(page.frames["sweep"])):
        assert fig._suptitle is not None and fig._suptitle.get_text()
        axes = [ax for ax in fig.axes if ax.has_data()]
        assert axes and all(ax.get_ylabel() for ax in axes)
        assert axes[-1].get_xlabel() or (fig._supxlabel is not None and fig._supxlabel.get_text())
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        legend = [t.get_text() for lg in legends for t in lg.get_texts()]
        titles = [lg.get_title().get_text() for lg in legends]
        assert any("CLIP-style stand-in" in t for t in legend + titles)
        plt.close(fig)
