"""The scorer-evaluation math against independent re-implementations on known answers."""
import numpy as np
import pytest

from analysis import scorer_eval
from analysis.scorers.base import DualEncoder


def brute_recall(S, k):
    hits = 0
    for i in range(len(S)):
        order = sorted(range(S.shape[1]), key=lambda j: -S[i, j])
        hits += order.index(i) < k
    return hits / len(S)


def monte_carlo_recall(S, k, draws=4000, seed=0):
    """Break ties by random jitter smaller than any gap; average the hit rate over draws."""
    rng = np.random.default_rng(seed)
    gaps = np.diff(np.unique(S))
    eps = (gaps.min() if len(gaps) else 1.0) * 1e-3
    return np.mean([brute_recall(S + rng.uniform(0, eps, S.shape), k) for _ in range(draws // len(S))])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_recall_matches_brute_force(seed, k):
    S = np.random.default_rng(seed).normal(size=(20, 20))
    assert scorer_eval.recall_at_k(S, k) == pytest.approx(brute_recall(S, k))


def test_ties_are_broken_at_random_not_in_the_truth_s_favour():
    n = 10
    assert scorer_eval.recall_at_k(np.zeros((n, n)), 1) == pytest.approx(1 / n)  # a blind scorer is at chance
    assert scorer_eval.recall_at_k(np.zeros((n, n)), 5) == pytest.approx(5 / n)
    S = np.round(np.random.default_rng(3).normal(size=(8, 8)), 0)  # many ties
    for k in (1, 2, 4):
        assert scorer_eval.recall_at_k(S, k) == pytest.approx(monte_carlo_recall(S, k), abs=0.03)


def test_recall_known_answers():
    assert scorer_eval.recall_at_k(np.eye(5), 1) == 1.0
    S = np.eye(4)[::-1].copy()  # every image prefers the wrong caption
    assert scorer_eval.recall_at_k(S, 1) == 0.0  # one caption beats the truth, two tie with it
    assert scorer_eval.recall_at_k(S, 2) == pytest.approx(1 / 3) and scorer_eval.recall_at_k(S, 4) == 1.0


def test_modality_gap_known_answer():
    U = np.tile([1.0, 0.0], (3, 1))
    V = np.tile([0.0, 1.0], (5, 1))
    assert scorer_eval.modality_gap(U, V) == pytest.approx(np.sqrt(2))
    assert scorer_eval.modality_gap(U, U) == 0.0


def test_pairwise_wins_and_ties():
    assert scorer_eval.pairwise_wins(np.array([2.0, 1.0, 1.0]), np.array([1.0, 2.0, 1.0])).tolist() == [1, 0, 0.5]


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = rng.binomial(1, 0.7, 30).astype(float)
    big = rng.binomial(1, 0.7, 3000).astype(float)
    lo, hi = scorer_eval.bootstrap_ci(small, seed=0)
    assert lo <= small.mean() <= hi
    lo2, hi2 = scorer_eval.bootstrap_ci(big, seed=0)
    assert hi2 - lo2 < hi - lo and lo2 < 0.7 < hi2
    assert scorer_eval.bootstrap_ci(np.ones(5), seed=0) == (1.0, 1.0)


class Lookup(DualEncoder):
    """A dual encoder over fixed embeddings keyed by image size and caption text."""

    name = label = "lookup"
    source = "embedded"
    checkpoint_hash = "0" * 64

    def __init__(self, img, txt):
        super().__init__()
        self.img, self.txt = img, txt

    def _encode_image_batch(self, images):
        import torch

        return torch.tensor(np.stack([self.img[im.size[0]] for im in images]))

    def _encode_text_batch(self, captions):
        import torch

        return torch.tensor(np.stack([self.txt[c] for c in captions]))


def perfect_setup(tmp_path, n=6):
    from PIL import Image

    from analysis.data.base import Item

    E = np.eye(n)
    images = [Image.new("RGB", (10 + i, 10)) for i in range(n)]
    for i, im in enumerate(images):
        im.save(tmp_path / f"{i}.png")
    sc = Lookup({10 + i: E[i] for i in range(n)}, {f"c{i}": E[i] for i in range(n)})
    ds = [Item(f"i{i}", tmp_path / f"{i}.png", [f"c{i}"], "test") for i in range(n)]
    return E, images, sc, ds


def test_scores_are_cached_by_content(tmp_cache, tmp_path):
    E, images, sc, ds = perfect_setup(tmp_path)
    calls = []
    key = scorer_eval.images_key(ds)

    def compute():
        calls.append(1)
        return sc.score_matrix(images, [it.captions[0] for it in ds])

    a, _ = scorer_eval.cached_scores(sc, "matrix", key, ["c0", "c1"], compute)
    b, _ = scorer_eval.cached_scores(sc, "matrix", key, ["c0", "c1"], compute)
    assert len(calls) == 1 and np.array_equal(a, b)
    scorer_eval.cached_scores(sc, "matrix", key, ["c0", "c2"], compute)  # other captions: recomputed
    sc.checkpoint_hash = "1" * 64
    scorer_eval.cached_scores(sc, "matrix", key, ["c0", "c1"], compute)  # other weights: recomputed
    assert len(calls) == 3


def test_retrieval_and_gap_rows_on_a_perfect_scorer(tmp_cache, tmp_path):
    n = 6
    E, images, sc, ds = perfect_setup(tmp_path, n)
    rows, S = scorer_eval.retrieval_rows(sc, ds, images, seed=0)
    vals = {r["metric"]: r["value"] for r in rows}
    assert vals["i2t_R@1"] == vals["t2i_R@1"] == 1.0 and vals["chance_R@1"] == pytest.approx(1 / n)
    np.testing.assert_allclose(S, E, atol=1e-12)
    gap = {r["metric"]: r["value"] for r in scorer_eval.gap_rows(sc, images, ds, S)}
    assert gap["modality_gap"] == pytest.approx(0.0) and gap["cosine_matched_mean"] == pytest.approx(1.0)


def test_chapter_experiment_runs_on_a_real_format_dataset_with_a_published_path(tmp_cache, tmp_path, monkeypatch):
    """The Scorers chapter's experiment, end to end, on the COCO Karpathy fixture with a tiny open_clip
    checkpoint saved in the real format: the path a user with real weights and data takes."""
    import tiny_published as tp

    from analysis.registry import ROOT

    monkeypatch.setenv("STUDY_DATA", str(ROOT / "tests" / "fixtures" / "real_formats"))
    name = f"clip:{tp.CLIP_ARCH}/{tp.clip_checkpoint(tmp_path)}"
    rows, dists = scorer_eval.run_scorer_eval([name], ["coco-karpathy"], seed=3, n_boot=50)
    assert set(rows["model"]) == {name} and set(rows["source"]) == {"published"} and set(rows["seed"]) == {3}
    r = rows[rows.analysis == "retrieval"].set_index("metric")["value"]
    assert r["chance_R@1"] == 1 / rows.loc[rows.analysis == "retrieval", "n"].iloc[0]
    assert {"modality_gap", "cosine_matched_mean"} <= set(rows["metric"])
    assert set(dists["pair"]) <= {"matched", "mismatched"}
