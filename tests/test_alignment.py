"""Closed-form alignment (issue 10): each fitter against an independent reference (scipy's
orthogonal_procrustes, numpy's lstsq, scikit-learn's Ridge) or a known answer on synthetic data; the
map's z-scoring, inverse and file round trip; the diagnostics on constructed cases with hand-computed
values; the data-fraction sweep's rows and determinism."""

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

from analysis import alignment
from analysis.alignment import (FITTERS, AlignmentMap, chance_recall, fit_alignment, fraction_sweep, modality_gap,
                                pair_cosines, recall_from_similarity, retrieval_recall)


def rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.fixture
def pairs():
    """x (300 × 8) and y = x R + 0.01 noise for a known random rotation R."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8))
    R = rotation(8, 1)
    return x, x @ R + 0.01 * rng.standard_normal((300, 8)), R


def test_procrustes_equals_scipy(pairs):
    x, y, _ = pairs
    y = y + np.random.default_rng(5).standard_normal(y.shape)  # a poor fit, so W is not just R
    W_ref, _ = orthogonal_procrustes(x, y)
    m = fit_alignment(x, y, method="procrustes")
    np.testing.assert_allclose(m.W, W_ref, atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(x @ m.W - y), np.linalg.norm(x @ W_ref - y), rtol=1e-12)
    np.testing.assert_allclose(m.W.T @ m.W, np.eye(8), atol=1e-12)


@pytest.mark.parametrize("method", ["procrustes", "robust-procrustes"])
def test_known_rotation_is_recovered(pairs, method):
    x, y, R = pairs
    m = fit_alignment(x, y, method=method)
    assert np.linalg.norm(m.W - R) < 0.01
    assert np.linalg.norm(fit_alignment(x, x @ R, method=method).W - R) < 1e-10  # no noise: exact


def test_robust_procrustes_resists_gross_outliers(pairs):
    x, y, R = pairs
    rng = np.random.default_rng(2)
    bad = rng.choice(len(x), len(x) // 10, replace=False)
    y = y.copy()
    y[bad] = 10 * rng.standard_normal((len(bad), y.shape[1]))  # 10% of rows paired with junk
    plain = np.linalg.norm(fit_alignment(x, y, method="procrustes").W - R)
    robust = np.linalg.norm(fit_alignment(x, y, method="robust-procrustes").W - R)
    assert plain > 0.3 and robust < 0.02 and robust < plain / 10
    assert fit_alignment(x, y, method="robust-procrustes", rounds=0).W.tobytes() == \
        fit_alignment(x, y, method="procrustes").W.tobytes()  # zero rounds is plain Procrustes


def test_robust_weights_match_sitta_reweighting(pairs):
    """One round equals the SITTA form: Procrustes on sqrt(w)-scaled rows of both sides, w = max-normalised
    1/(‖residual‖ + eps)."""
    x, y, _ = pairs
    W0, _ = orthogonal_procrustes(x, y)
    w = 1 / (np.linalg.norm(y - x @ W0, axis=1) + 1e-3)
    s = np.sqrt(w / w.max())[:, None]
    W1, _ = orthogonal_procrustes(s * x, s * y)
    np.testing.assert_allclose(fit_alignment(x, y, method="robust-procrustes", rounds=1).W, W1, atol=1e-10)


def test_lstsq_equals_numpy(pairs):
    x, _, _ = pairs
    rng = np.random.default_rng(3)
    y = rng.standard_normal((300, 5))  # a general linear target of another dimension
    m = fit_alignment(x, y, method="lstsq")
    np.testing.assert_allclose(m.W, np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-10)
    assert m.W.shape == (8, 5) and m.provenance["solver"] == "cholesky(XᵀX)"
    assert m.provenance["rank_deficient"] is False


def test_lstsq_falls_back_when_gram_is_singular():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 10))  # fewer rows than dimensions
    y = rng.standard_normal((6, 3))
    m = fit_alignment(x, y, method="lstsq")
    np.testing.assert_allclose(m.W, np.linalg.lstsq(x, y, rcond=None)[0], atol=1e-10)  # minimum norm
    assert m.provenance["rank_deficient"] is True
    x2 = np.hstack([x[:, :3], x[:, :3]])  # collinear columns, enough rows
    x2 = np.vstack([x2, x2 + 0.5])
    m2 = fit_alignment(x2, np.vstack([y, y]), method="lstsq")
    assert m2.provenance["rank_deficient"] is True
    np.testing.assert_allclose(m2.W, np.linalg.lstsq(x2, np.vstack([y, y]), rcond=None)[0], atol=1e-8)


def test_ridge_equals_sklearn(pairs):
    sklearn = pytest.importorskip("sklearn.linear_model", reason="scikit-learn not installed in .venv")
    x, y, _ = pairs
    for alpha in (1.0, 30.0):
        ref = sklearn.Ridge(alpha=alpha, fit_intercept=False).fit(x, y).coef_.T
        np.testing.assert_allclose(fit_alignment(x, y, method="ridge", alpha=alpha).W, ref, atol=1e-10)
    with pytest.raises(ValueError, match="alpha > 0"):
        fit_alignment(x, y, method="ridge", alpha=0.0)


def test_standardize_uses_training_stats_only(pairs):
    x, y, _ = pairs
    x = 3 * x + 5
    y = 0.5 * y - 2
    m = fit_alignment(x, y, method="procrustes", standardize=True)
    np.testing.assert_allclose(m.x_mean, x.mean(0))
    np.testing.assert_allclose(m.x_std, x.std(0))
    np.testing.assert_allclose(m.y_mean, y.mean(0))
    # a new batch with its own, very different mean: mapped with the stored stats, not its own
    new = x[:20] + 100.0
    expected = ((new - x.mean(0)) / x.std(0)) @ m.W * y.std(0) + y.mean(0)
    np.testing.assert_allclose(m.apply(new), expected, rtol=1e-12)
    np.testing.assert_allclose(m.apply(new, standardized=True), ((new - x.mean(0)) / x.std(0)) @ m.W, rtol=1e-12)
    own_stats = ((new - new.mean(0)) / new.std(0)) @ m.W * y.std(0) + y.mean(0)  # what re-fitting would give
    assert np.abs(m.apply(new) - own_stats).max() > 10
    W_ref, _ = orthogonal_procrustes((x - x.mean(0)) / x.std(0), (y - y.mean(0)) / y.std(0))
    np.testing.assert_allclose(m.W, W_ref, atol=1e-10)


def test_standardize_handles_a_constant_dimension(pairs):
    x, y, _ = pairs
    x = x.copy()
    x[:, 2] = 7.0
    m = fit_alignment(x, y, method="lstsq", standardize=True)
    assert np.isfinite(m.W).all() and m.x_std[2] == 1.0 and m.provenance["constant_dims"] == {"x": 1, "y": 0}
    assert np.isfinite(m.apply(x)).all()


@pytest.mark.parametrize("method", ["procrustes", "robust-procrustes"])
@pytest.mark.parametrize("standardize", [False, True])
def test_inverse_undoes_apply_for_orthogonal_maps(pairs, method, standardize):
    x, y, _ = pairs
    m = fit_alignment(x, y, method=method, standardize=standardize)
    np.testing.assert_allclose(m.inverse(m.apply(x)), x, atol=1e-10)
    np.testing.assert_allclose(m.inverse(m.apply(x[0])), x[0], atol=1e-10)  # one vector in, one out


def test_inverse_of_a_regression_map_is_the_pseudo_inverse(pairs):
    x, y, _ = pairs
    m = fit_alignment(x, y[:, :5], method="lstsq")  # 8 -> 5: not invertible
    z = y[:4, :5]
    np.testing.assert_allclose(m.inverse(z), z @ np.linalg.pinv(m.W), atol=1e-12)
    np.testing.assert_allclose(m.apply(m.inverse(z)), z, atol=1e-10)  # W has full column rank: a right inverse


@pytest.mark.parametrize("standardize", [False, True])
def test_save_load_round_trip(tmp_path, pairs, standardize):
    x, y, _ = pairs
    m = fit_alignment(x.astype(np.float32), y.astype(np.float32), method="ridge", alpha=2.0,
                      standardize=standardize, source={"dataset": "synthetic", "split": "train"})
    path = m.save(tmp_path / "map")
    assert path.suffix == ".npz"
    back = AlignmentMap.load(path)
    assert back.W.dtype == np.float32 and np.array_equal(back.W, m.W)
    for k in ("x_mean", "x_std", "y_mean", "y_std"):
        a, b = getattr(m, k), getattr(back, k)
        assert (a is None and b is None) or np.array_equal(a, b)
    assert back.method == "ridge" and back.standardize == standardize and back.fit_seconds == m.fit_seconds
    assert back.provenance == m.provenance and back.provenance["source"]["dataset"] == "synthetic"
    np.testing.assert_array_equal(back.apply(x[:3]), m.apply(x[:3]))
    with np.load(path, allow_pickle=False) as z:  # no object arrays inside
        assert all(z[k].dtype != object for k in z.files)


def test_map_is_frozen(pairs):
    x, y, _ = pairs
    m = fit_alignment(x, y)
    with pytest.raises(Exception):
        m.method = "lstsq"
    with pytest.raises(ValueError):
        m.W[0, 0] = 1.0


def test_provenance_and_fit_time(pairs):
    x, y, _ = pairs
    m = fit_alignment(x, y, method="robust-procrustes", rounds=3, source="unit-test")
    p = m.provenance
    assert (p["method"], p["n"], p["dim_x"], p["dim_y"], p["rounds"], p["source"]) == \
        ("robust-procrustes", 300, 8, 8, 3, "unit-test")
    assert "alpha" not in p and p["standardize"] is False and len(p["fingerprint"]) == 16
    assert p["fingerprint"] == fit_alignment(x.copy(), y.copy()).provenance["fingerprint"]
    assert p["fingerprint"] != fit_alignment(x, y + 1e-9).provenance["fingerprint"]
    assert 0 < m.fit_seconds < 5


def test_float32_stays_float32(pairs):
    x, y, R = pairs
    for method in FITTERS:
        m = fit_alignment(x.astype(np.float32), y.astype(np.float32), method=method)
        assert m.W.dtype == np.float32 and m.apply(x.astype(np.float32)).dtype == np.float32
        if method != "ridge":
            assert np.linalg.norm(m.W - R) < 0.02


def test_bad_inputs_name_the_argument_and_the_fix(pairs):
    x, y, _ = pairs
    valid = "valid: procrustes, robust-procrustes, lstsq, ridge"
    with pytest.raises(ValueError, match=rf"unknown alignment method 'svd'; {valid}"):
        fit_alignment(x, y, method="svd")
    xn = x.copy()
    xn[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"^x has 1 NaN/inf .*row 7.*drop or impute"):
        fit_alignment(xn, y)
    yi = y.copy()
    yi[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"^y has 1 NaN/inf"):
        fit_alignment(x, yi)
    with pytest.raises(ValueError, match=r"same number of rows.*x \(300, 8\) and y \(299, 8\)"):
        fit_alignment(x, y[:-1])
    with pytest.raises(ValueError, match=r"^y must be 2-D.*y\[None, :\]"):
        fit_alignment(x, y[:, 0])
    with pytest.raises(TypeError, match=r"^x must be an array of real floats.*np.asarray\(x"):
        fit_alignment(np.array([["a"]]), y[:1])
    with pytest.raises(ValueError, match="rounds"):
        fit_alignment(x, y, method="robust-procrustes", rounds=-1)
    with pytest.raises(TypeError, match="source must be JSON"):
        fit_alignment(x, y, source=object())
    m = fit_alignment(x, y[:, :5], method="lstsq")
    with pytest.raises(ValueError, match=r"x has 5 dimensions but this lstsq map expects 8"):
        m.apply(y[:, :5])
    with pytest.raises(ValueError, match=r"^img and txt must have the same number of rows"):
        modality_gap(x, y[:10])
    with pytest.raises(ValueError, match=r"^y_test has 1 NaN/inf"):
        fraction_sweep(x, y, x, yi, fractions=(1.0,), seeds=(0,))


def test_an_overflowing_sum_is_not_mistaken_for_nan():
    x = np.full((4, 2), 3e38, np.float32)  # finite, but the sum overflows float32
    assert alignment._as_matrix(x, "x") is x


def test_modality_gap_on_constructed_clouds():
    """Images near +e0 and captions near +e1 on the unit circle: the centroids are e0 and e1 (up to the
    small spread), distance √2; true and random pairs are both orthogonal."""
    n = 40
    a = np.linspace(-0.1, 0.1, n)
    img = np.c_[np.cos(a), np.sin(a)] * 3.0  # norms do not matter: rows are normalised
    txt = np.c_[-np.sin(a), np.cos(a)] * 0.2  # img rotated by 90°
    g = modality_gap(img, txt, seed=0)
    c = np.mean(np.cos(a))  # the centroids are (c, 0) and (0, c): a is symmetric about 0
    assert g["centroid_distance"] == pytest.approx(np.sqrt(2) * c, abs=1e-12)
    assert g["true_pair_cosine"] == pytest.approx(0.0, abs=1e-12)
    assert g["n"] == n and g["seed"] == 0
    # captions equal to the images: no gap, true pairs cos 1, random pairs cos(a_i − a_π(i)) < 1
    g0 = modality_gap(img, img, seed=3)
    assert g0["centroid_distance"] == pytest.approx(0.0, abs=1e-12) and g0["true_pair_cosine"] == pytest.approx(1.0)
    assert g0["random_pair_cosine"] < 1.0 and g0["cosine_margin"] > 0


def test_pair_cosines_random_pairs_are_never_true_pairs_and_are_seeded():
    img = np.eye(6)  # cosine 1 with its own caption only
    true, rand = pair_cosines(img, img, seed=1)
    assert true.tolist() == [1.0] * 6 and rand.tolist() == [0.0] * 6  # a derangement: no fixed point
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    assert np.array_equal(pair_cosines(a, b, seed=7)[1], pair_cosines(a, b, seed=7)[1])
    assert not np.array_equal(pair_cosines(a, b, seed=7)[1], pair_cosines(a, b, seed=8)[1])


def test_retrieval_recall_identity_and_a_constructed_permutation():
    n = 5
    assert set(retrieval_recall(np.eye(n), np.eye(n)).values()) == {1.0}
    # caption j is the one-hot e_perm[j]: perm fixes 0 and 1, moves 2 -> 3 -> 4 -> 2
    perm = np.array([0, 1, 3, 4, 2])
    r = retrieval_recall(np.eye(n), np.eye(n)[perm], ks=(1, 2, 5))
    # image i, true caption i: a hit at rank 1 when perm[i] == i; otherwise S[i, i] = 0 ties with the
    # other n - 2 zero captions behind one caption scoring 1, so the expected hit is (k - 1) / (n - 1)
    assert r["i2t_R@1"] == pytest.approx(2 / 5)
    assert r["i2t_R@2"] == pytest.approx((2 + 3 * (1 / 4)) / 5)
    assert r["i2t_R@5"] == pytest.approx(1.0)
    assert r["t2i_R@1"] == pytest.approx(2 / 5)  # the similarity is a permutation matrix both ways


def test_recall_from_similarity_without_ties():
    S = np.array([[0.9, 0.1, 0.5],
                  [0.8, 0.7, 0.0],
                  [0.3, 0.2, 0.1]])
    r = recall_from_similarity(S, ks=(1, 2))
    # i2t ranks of the diagonal: row0 1st, row1 2nd, row2 3rd; t2i (columns): col0 1st, col1 1st, col2 2nd
    assert r == {"i2t_R@1": pytest.approx(1 / 3), "t2i_R@1": pytest.approx(2 / 3),
                 "i2t_R@2": pytest.approx(2 / 3), "t2i_R@2": pytest.approx(1.0)}


def test_chance_recall():
    assert chance_recall(1000, 1) == 0.001 and chance_recall(10, 5) == 0.5 and chance_recall(3, 10) == 1.0
    with pytest.raises(ValueError):
        chance_recall(0, 1)


def test_fraction_sweep_rows_and_determinism():
    rng = np.random.default_rng(0)
    R = rotation(6, 2)
    x = rng.standard_normal((200, 6))
    y = x @ R + 0.3 * rng.standard_normal((200, 6))
    xt = rng.standard_normal((40, 6))
    yt = xt @ R + 0.3 * rng.standard_normal((40, 6))
    kw = dict(fractions=(0.02, 0.5, 1.0), seeds=(0, 1), ks=(1, 5))
    df = fraction_sweep(x, y, xt, yt, **kw)
    assert len(df) == 3 * 2 * 4
    assert set(df.columns) >= {"fraction", "seed", "n_fit", "metric", "value", "fit_seconds"}
    assert sorted(df["metric"].unique()) == ["i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5"]
    assert df.groupby("fraction")["n_fit"].first().to_dict() == {0.02: 4, 0.5: 100, 1.0: 200}
    again = fraction_sweep(x, y, xt, yt, **kw)
    cols = ["fraction", "seed", "n_fit", "metric", "value"]
    assert again[cols].equals(df[cols])  # deterministic for the seeds (fit_seconds aside)
    full = df[df.fraction == 1.0]
    assert full.groupby("metric")["value"].nunique().eq(1).all()  # all rows: the seed draws the same set
    expected = retrieval_recall(fit_alignment(x, y).apply(xt), yt, ks=(1, 5))
    assert dict(zip(full[full.seed == 0].metric, full[full.seed == 0].value)) == pytest.approx(expected)
    assert df[df.fraction == 0.02].groupby("seed")["fit_seconds"].first().size == 2
    ols = fraction_sweep(x, y, xt, yt, fractions=(0.02, 1.0), seeds=(0,), method="lstsq", ks=(1,))
    assert ols.groupby("fraction")["rank_deficient"].first().to_dict() == {0.02: True, 1.0: False}


def test_fraction_sweep_counts_duplicate_test_captions_as_true_with_positives():
    """Test captions 0 and 1 are one text (one embedding): without ``positives`` image 0 and 1 tie between their
    own and the other's copy (½ hit each at k = 1) and caption 1 retrieves image 0 (a miss); with the mask every
    query is a hit. Hand-computed: R@1 2/3 both ways against 1."""
    x = np.random.default_rng(0).standard_normal((20, 3))  # y = x: the Procrustes map is the identity
    xt = np.array([[1.0, 0.0, 0.0], [1.0, 0.01, 0.0], [0.0, 0.0, 1.0]])
    yt = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    P = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], bool)
    kw = dict(fractions=(1.0,), seeds=(0,), ks=(1,))
    plain = fraction_sweep(x, x, xt, yt, **kw).set_index("metric")["value"]
    masked = fraction_sweep(x, x, xt, yt, positives=P, **kw).set_index("metric")["value"]
    assert plain.to_dict() == pytest.approx({"i2t_R@1": 2 / 3, "t2i_R@1": 2 / 3})
    assert masked.to_dict() == pytest.approx({"i2t_R@1": 1.0, "t2i_R@1": 1.0})
    eye = fraction_sweep(x, x, xt, yt, positives=np.eye(3, dtype=bool), **kw)
    assert eye["value"].tolist() == pytest.approx(fraction_sweep(x, x, xt, yt, **kw)["value"].tolist())
    with pytest.raises(ValueError, match="positives must be a 3 × 3 mask"):
        fraction_sweep(x, x, xt, yt, positives=P[:2], **kw)


def test_orthogonal_factor_falls_back_to_gesvd_when_gesdd_does_not_converge(monkeypatch):
    """numpy's gesdd failed on a rank-deficient XᵀY of the full transfer run (robust-procrustes, z-scored, fold 4):
    the factor then comes from scipy's gesvd and still solves the Procrustes problem."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((30, 6))

    def fails(*a, **k):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", fails)
    W = alignment._svd_orthogonal(x.T @ y)
    np.testing.assert_allclose(W, orthogonal_procrustes(x, y)[0], atol=1e-10)
