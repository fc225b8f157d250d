"""The scorer evaluation: recall against brute force, cached scores, perturbation and paired-comparison rows on
scorers with known answers, and the chapter experiment end to end on a real-format dataset."""
import numpy as np
import pytest

from analysis import scorer_eval, stats
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
    assert stats.recall_at_k(S, k) == pytest.approx(brute_recall(S, k))


def test_ties_are_broken_at_random_not_in_the_truth_s_favour():
    n = 10
    assert stats.recall_at_k(np.zeros((n, n)), 1) == pytest.approx(1 / n)  # a blind scorer is at chance
    assert stats.recall_at_k(np.zeros((n, n)), 5) == pytest.approx(5 / n)
    S = np.round(np.random.default_rng(3).normal(size=(8, 8)), 0)  # many ties
    for k in (1, 2, 4):
        assert stats.recall_at_k(S, k) == pytest.approx(monte_carlo_recall(S, k), abs=0.03)


def test_recall_known_answers():
    assert stats.recall_at_k(np.eye(5), 1) == 1.0
    S = np.eye(4)[::-1].copy()  # every image prefers the wrong caption
    assert stats.recall_at_k(S, 1) == 0.0  # one caption beats the truth, two tie with it
    assert stats.recall_at_k(S, 2) == pytest.approx(1 / 3) and stats.recall_at_k(S, 4) == 1.0


def test_modality_gap_known_answer():
    U = np.tile([1.0, 0.0], (3, 1))
    V = np.tile([0.0, 1.0], (5, 1))
    assert scorer_eval.modality_gap(U, V) == pytest.approx(np.sqrt(2))
    assert scorer_eval.modality_gap(U, U) == 0.0


def test_wins_and_ties():
    assert stats.wins(np.array([2.0, 1.0, 1.0]), np.array([1.0, 2.0, 1.0])).tolist() == [1, 0, 0.5]


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
    rows, hits, S = scorer_eval.retrieval(sc, ds, images)
    vals = {r["metric"]: r["value"] for r in rows}
    r1 = next(r for r in rows if r["metric"] == "i2t_R@1")
    assert r1["ci_high"] == 1.0 and r1["ci_low"] < 1.0 and "p" not in r1  # only R@5 is tested
    r5 = next(r for r in rows if r["metric"] == "i2t_R@5")
    assert r5["p"] == pytest.approx((5 / n) ** n) and r5["test_family"] == "vs chance"
    assert vals["i2t_R@1"] == vals["t2i_R@1"] == 1.0 and vals["chance_R@1"] == pytest.approx(1 / n)
    np.testing.assert_allclose(S, E, atol=1e-12)
    gap = {r["metric"]: r["value"] for r in scorer_eval.gap_rows(sc, images, ds, S)}
    assert gap["modality_gap"] == pytest.approx(0.0) and gap["cosine_matched_mean"] == pytest.approx(1.0)


def test_chapter_experiment_runs_on_a_real_format_dataset_with_a_published_path(tmp_cache, tmp_path, monkeypatch):
    """The Scorers chapter's experiment, end to end, on the COCO Karpathy fixture with a tiny open_clip
    checkpoint saved in the real format: the path a user with real weights and data takes. The R@k in the
    rows equal a brute-force ranking of open_clip's own cosine matrix."""
    import open_clip
    import torch
    import tiny_published as tp

    from analysis import registry
    from analysis.registry import ROOT

    monkeypatch.setenv("STUDY_DATA", str(ROOT / "tests" / "fixtures" / "real_formats"))
    path = tp.clip_checkpoint(tmp_path)
    name = f"clip:{tp.CLIP_ARCH}/{path}"
    ev = scorer_eval.run_scorer_eval([name], ["coco-karpathy"], seed=3, n_boot=50)
    rows = ev.rows
    assert set(rows["model"]) == {name} and set(rows["seed"]) == {3} and set(rows["smoke"]) == {False}
    assert set(rows["source"]) <= {"published", "local"} and set(rows["split"]) == {"test"}
    r = rows[rows.analysis == "retrieval"].set_index("metric")
    n = int(r["n"].iloc[0])
    assert r.loc["chance_R@1", "value"] == 1 / n

    ds = registry.get_dataset("coco-karpathy", split="test")
    model, _, pre = open_clip.create_model_and_transforms(tp.CLIP_ARCH, pretrained=str(path))
    model.eval()
    tok = open_clip.get_tokenizer(tp.CLIP_ARCH)
    with torch.no_grad():
        u = model.encode_image(torch.stack([pre(it.image()) for it in ds]))
        v = model.encode_text(tok([it.captions[0] for it in ds]))
    S = (torch.nn.functional.normalize(u, dim=-1) @ torch.nn.functional.normalize(v, dim=-1).T).numpy()
    for k in (1, 5):
        assert r.loc[f"i2t_R@{k}", "value"] == pytest.approx(brute_recall(S, k))
        assert r.loc[f"t2i_R@{k}", "value"] == pytest.approx(brute_recall(S.T, k))
    assert {"modality_gap", "cosine_matched_mean"} <= set(rows["metric"])
    assert set(ev.dists["pair"]) <= {"matched", "mismatched"}
    assert "seconds" in ev.timings and "seconds" not in rows


class Oracle:
    """A scorer that knows each scene (by its colour): 1 for its canonical caption, 0 for anything else."""

    def __init__(self, truth):
        self.truth = truth
        self.name = self.label = "oracle"
        self.output, self.checkpoint_hash, self.truncated = "x", "o" * 64, 0

    def reset_counts(self):
        pass

    def score(self, images, captions):
        return np.array([float(self.truth[im.getpixel((0, 0))[0]] == c) for im, c in zip(images, captions)])


class Constant(Oracle):
    def __init__(self, truth):
        super().__init__(truth)
        self.name, self.checkpoint_hash = "constant", "c" * 64  # its own cache entries

    def score(self, images, captions):
        return np.zeros(len(captions))


def scene_dataset(tmp_path, n=24):
    from PIL import Image

    from analysis.data.base import Dataset, Item
    from analysis.data.scenes import canonical

    pool = ["apple", "zebra", "car", "lamp", "boot", "kite"]
    r = np.random.default_rng(0)
    items = []
    for i in range(n):
        a, b = r.choice(pool, 2, replace=False)
        graph = {"objects": [{"name": str(a), "count": 1 + i % 2, "size": "big"},
                             {"name": str(b), "count": 1, "size": "small"}],
                 "relations": [{"subject": str(a), "relation": "left of", "object": str(b)},
                               {"subject": str(b), "relation": "right of", "object": str(a)}]}
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / f"{i}.png")
        items.append(Item(f"s{i}", tmp_path / f"{i}.png", [canonical(graph)], "test", {"graph": graph}))
    return Dataset("toy-scenes", items, "embedded", "", "", "", provenance={"pool": pool})


def test_perturbation_and_paired_comparison_rows_have_known_answers(tmp_cache, tmp_path):
    ds = scene_dataset(tmp_path)
    assert scorer_eval.has_scene_graphs(ds)
    images = [it.image() for it in ds]
    truth = {i: it.captions[0] for i, it in enumerate(ds)}
    rows_o, out_o = scorer_eval.perturbation(Oracle(truth), ds, images, seed=0)
    rows_c, out_c = scorer_eval.perturbation(Constant(truth), ds, images, seed=0)
    assert {r["perturbation"] for r in rows_o} == set(scorer_eval.perturbations.PERTURBATIONS)
    for r in rows_o:  # the oracle wins every pair: accuracy 1, Wilson interval still has width
        assert r["value"] == 1.0 and r["ci_low"] < 1.0 and r["p"] == pytest.approx(2 * 0.5 ** r["n"])
    for r in rows_c:  # a constant scorer ties every pair: ½, and the sign test has nothing to count
        assert r["value"] == 0.5 and r["ties"] == r["n"] and r["p"] == 1.0
    per_item = {("toy", "oracle", k): w for k, w in out_o.items()} | {("toy", "constant", k): w for k, w in out_c.items()}
    comp = scorer_eval.comparison_rows(per_item, ["oracle", "constant"], seed=0, n_boot=200)
    assert len(comp) == len(out_o)
    for r in comp:
        assert r["model"] == "oracle" and r["other"] == "constant" and r["test"] == "exact McNemar"
        assert r["value"] == 0.5 and r["n_a_only"] == r["n"] and r["n_b_only"] == 0
        assert r["p"] == pytest.approx(2 * 0.5 ** r["n"])


def test_holm_is_applied_within_each_family():
    import pandas as pd

    rows = pd.DataFrame({"p": [0.01, 0.02, 0.01, np.nan], "test_family": ["vs chance", "vs chance", "between models",
                                                                           "vs chance"]})
    out = scorer_eval.add_holm(rows)
    assert out["p_holm"].tolist()[:3] == pytest.approx([0.02, 0.02, 0.01]) and np.isnan(out["p_holm"].iloc[3])


def test_comparison_pairs_put_ablations_against_their_defaults_only():
    pairs = scorer_eval.comparison_pairs(["clip-mini", "uniter-mini", "blind", "uniter-mini+neg"])
    assert ("hard negatives", "uniter-mini+neg", "uniter-mini") in pairs
    assert not [p for p in pairs if p[0] == "between models" and "uniter-mini+neg" in p[1:]]
    assert len([p for p in pairs if p[0] == "between models"]) == 3


def test_chapter_runs_on_a_plugin_dataset_and_scorer_from_outside_the_package(tmp_path):
    """A newcomer's path: a module outside `analysis/` registers a dataset and a scorer (STUDY_PLUGINS); the
    scorers chapter runs on them through the command line and the notebook kernel, skips what does not apply
    (no scene graphs, no text-only baseline) and says so on the page."""
    import os
    import subprocess
    import sys

    import nbformat

    from analysis import results, runner
    from analysis.registry import ROOT

    root = runner.stage(tmp_path / "book")
    plugins = ROOT / "tests" / "fixtures" / "plugins"
    env = {**os.environ, "STUDY_PLUGINS": "study_example_plugin",
           "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "analysis", "run", "scorers", "--smoke", "-p", "scorers",
                           "plugin-colour", "-p", "datasets", "plugin-photos", "--root", str(root)],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = root / "book" / "generated"  # with an explicit --root, the run is that root's page
    (table,) = out.rglob("scorers.parquet")
    rows = results.read(table)
    assert set(rows["model"]) == {"plugin-colour"} and set(rows["dataset"]) == {"plugin-photos"}
    assert set(rows["split"]) == {"all"} and rows["smoke"].all()
    assert "perturbation" not in set(rows["analysis"])
    (page,) = out.rglob("scorers.ipynb")
    text = "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("data", {}).get("text/html", ""))
                     for c in nbformat.read(page, as_version=4).cells if c.cell_type == "code" for o in c.outputs)
    assert "plugin-colour (colour-word stand-in)" in text
    assert "the perturbation test was skipped" in text and "No text-only baseline was in this run" in text


def test_retrieval_counts_a_duplicate_caption_as_a_hit(tmp_cache, tmp_path):
    """Two images with the same caption text: a perfect scorer retrieves either copy, so R@1 is 1, not ½ for
    them; chance accounts for the extra true pair."""
    from PIL import Image

    from analysis.data.base import Item

    E = np.eye(4)[[0, 0, 1, 2]]  # images 0 and 1 are the same kind
    images = [Image.new("RGB", (10 + i, 10)) for i in range(4)]
    for i, im in enumerate(images):
        im.save(tmp_path / f"{i}.png")
    caps = ["A zebra.", "a zebra", "a cup", "a car"]  # the first two differ only in case and punctuation
    sc = Lookup({10 + i: E[i] for i in range(4)}, {c: E[i] for i, c in enumerate(caps)})
    ds = [Item(f"i{i}", tmp_path / f"{i}.png", [caps[i]], "test") for i in range(4)]
    assert scorer_eval.true_pairs(ds).sum() == 6
    rows, hits, S = scorer_eval.retrieval(sc, ds, images)
    vals = {r["metric"]: r for r in rows}
    assert vals["i2t_R@1"]["value"] == 1.0 and vals["t2i_R@1"]["value"] == 1.0
    assert vals["i2t_R@1"]["chance"] == pytest.approx((2 / 4 + 2 / 4 + 1 / 4 + 1 / 4) / 4)
    assert vals["duplicate_captions"]["value"] == 2
