"""The blind human-evaluation sheet: export (shuffled, systems hidden, ratings empty) and reading of sheets filled
in here by hand with known means and agreement. No rating is ever invented by the code."""
import doctest
import math

import pandas as pd
import pytest

from analysis import humaneval as he

SYSTEMS = {"xe": ["a cat on a mat", "two dogs", "a red car"],
           "clip-mini": ["cat cat cat", "dog dog", "red car car"]}
IMAGES = ["img0.png", "img1.png", "img2.png"]


@pytest.fixture
def exported(tmp_path):
    return he.export_sheet(SYSTEMS, IMAGES, tmp_path / "raters" / "sheet.csv", tmp_path / "private" / "key.csv",
                           seed=0)


def test_export_is_blind_shuffled_and_empty(exported):
    sheet_path, key_path = exported
    sheet, key = pd.read_csv(sheet_path, dtype={"item": str}), pd.read_csv(key_path, dtype={"item": str})
    assert list(sheet.columns) == ["item", "image", "caption", "relevance", "fluency", "comment"]
    assert len(sheet) == 6 and sheet["item"].is_unique
    assert sheet[["relevance", "fluency"]].isna().all().all()  # no rating is filled in
    cells = set(sheet.astype(str).to_numpy().ravel())
    assert not cells & set(SYSTEMS) and "clip" not in sheet_path.read_text()  # system names hidden
    assert sorted(zip(key["system"], key["image_index"])) == sorted((s, i) for s in SYSTEMS for i in range(3))
    # every sheet row is its system's caption of its image, through the key
    merged = sheet.merge(key, on="item")
    assert all(SYSTEMS[s][i] == c for s, i, c in zip(merged["system"], merged["image_index"], merged["caption"]))
    assert (sheet_path.parent / "sheet.instructions.txt").exists()


def test_export_is_seeded(tmp_path, exported):
    again = he.export_sheet(SYSTEMS, IMAGES, tmp_path / "a" / "s.csv", tmp_path / "b" / "k.csv", seed=0)
    assert again[0].read_text() == exported[0].read_text()
    other = he.export_sheet(SYSTEMS, IMAGES, tmp_path / "c" / "s.csv", tmp_path / "d" / "k.csv", seed=1)
    assert pd.read_csv(other[0])["caption"].tolist() != pd.read_csv(exported[0])["caption"].tolist()


def test_export_refusals(tmp_path):
    with pytest.raises(ValueError, match="another folder"):
        he.export_sheet(SYSTEMS, IMAGES, tmp_path / "s.csv", tmp_path / "k.csv", seed=0)
    with pytest.raises(ValueError, match="has 1 captions for 3 images"):
        he.export_sheet({"xe": ["a"]}, IMAGES, tmp_path / "a" / "s.csv", tmp_path / "b" / "k.csv", seed=0)


def test_an_unfilled_sheet_is_refused(exported):
    with pytest.raises(ValueError, match="no ratings yet.*never invented"):
        he.read_ratings(exported[0], exported[1])


def fill(exported, folder, name, relevance, fluency):
    """A rater's copy with ratings given per (system, image index): rows are matched through the key."""
    sheet, key = pd.read_csv(exported[0], dtype={"item": str}), pd.read_csv(exported[1], dtype={"item": str})
    where = dict(zip(key["item"], zip(key["system"], key["image_index"])))
    sheet["relevance"] = [relevance[where[i]] for i in sheet["item"]]
    sheet["fluency"] = [fluency[where[i]] for i in sheet["item"]]
    path = folder / f"{name}.csv"
    sheet.to_csv(path, index=False)
    return path


REL = {("xe", 0): 4, ("xe", 1): 5, ("xe", 2): 3, ("clip-mini", 0): 2, ("clip-mini", 1): 1, ("clip-mini", 2): 3}
FLU = {("xe", 0): 5, ("xe", 1): 5, ("xe", 2): 4, ("clip-mini", 0): 1, ("clip-mini", 1): 2, ("clip-mini", 2): 1}


def test_perfect_agreement_and_hand_means(tmp_path, exported):
    a = fill(exported, tmp_path, "ann", REL, FLU)
    b = fill(exported, tmp_path, "bob", REL, FLU)
    out = he.read_ratings([a, b], exported[1], method="kappa")
    agree = out["agreement"].set_index("scale")
    assert agree.loc["relevance", "value"] == pytest.approx(1.0) and agree.loc["fluency", "value"] == pytest.approx(1)
    assert agree.loc["relevance", "raters"] == 2 and agree.loc["relevance", "items"] == 6
    means = out["means"].set_index(["system", "scale"])["mean"]
    # by hand: xe relevance (4+5+3)/3 = 4, fluency 14/3; clip-mini relevance 6/3 = 2, fluency 4/3
    assert means[("xe", "relevance")] == pytest.approx(4.0) and means[("xe", "fluency")] == pytest.approx(14 / 3)
    assert means[("clip-mini", "relevance")] == pytest.approx(2.0)
    assert means[("clip-mini", "fluency")] == pytest.approx(4 / 3)


def test_known_weighted_kappa():
    # rater A 1,2,3,4 and rater B 1,2,3,5: observed mean squared disagreement 1/4; expected over all 16 pairs
    # (a, b): (0+1+4+16) + (1+0+1+9) + (4+1+0+4) + (9+4+1+1) = 56, so 56/16; kappa = 1 − (1/4)/(56/16) = 13/14
    sheet_a = pd.DataFrame({"item": list("pqrs"), "relevance": [1, 2, 3, 4], "fluency": [5, 5, 4, 4]})
    sheet_b = pd.DataFrame({"item": list("pqrs"), "relevance": [1, 2, 3, 5], "fluency": [5, 5, 4, 4]})
    key = pd.DataFrame({"item": list("pqrs"), "system": ["x", "x", "y", "y"]})
    out = he.read_ratings([sheet_a, sheet_b], key, method="kappa")
    agree = out["agreement"].set_index("scale")["value"]
    assert agree["relevance"] == pytest.approx(13 / 14) and agree["fluency"] == pytest.approx(1.0)
    # item means by hand: x relevance (1+1)/2 = 1 and (2+2)/2 = 2 -> 1.5; y (3+3)/2 = 3 and (4+5)/2 = 4.5 -> 3.75
    means = out["means"].set_index(["system", "scale"])["mean"]
    assert means[("x", "relevance")] == pytest.approx(1.5) and means[("y", "relevance")] == pytest.approx(3.75)


def test_three_raters_mean_pairwise_kappa_and_one_rater():
    # A = B exactly (kappa 1); C differs from both as B differs from A above (13/14 each): mean (1 + 2·13/14)/3
    items = list("pqrs")
    sheets = [pd.DataFrame({"item": items, "rater": r, "relevance": v, "fluency": v})
              for r, v in [("A", [1, 2, 3, 4]), ("B", [1, 2, 3, 4]), ("C", [1, 2, 3, 5])]]
    key = pd.DataFrame({"item": items, "system": "x"})
    agree = he.read_ratings(sheets, key, method="kappa")["agreement"].set_index("scale")
    assert agree.loc["relevance", "value"] == pytest.approx((1 + 2 * 13 / 14) / 3)
    assert "mean of 3 rater pairs" in agree.loc["relevance", "method"]
    alone = he.read_ratings(sheets[:1], key, method="kappa")["agreement"]
    assert alone["value"].isna().all() and (alone["method"] == "one rater: no agreement").all()


def test_krippendorff_when_installed():
    pytest.importorskip("krippendorff")
    m = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]
    assert he.agreement(m, "krippendorff")[0] == pytest.approx(1.0)


def test_bad_ratings_and_unknown_items_are_refused():
    key = pd.DataFrame({"item": ["p", "q"], "system": ["x", "y"]})
    bad = pd.DataFrame({"item": ["p", "q"], "relevance": [3, 7], "fluency": [None, None]})
    with pytest.raises(ValueError, match="item q, relevance: 7 is not a whole number 1-5"):
        he.read_ratings(bad, key)
    stray = pd.DataFrame({"item": ["p", "z"], "relevance": [3, 4], "fluency": [None, None]})
    with pytest.raises(ValueError, match="not in the key"):
        he.read_ratings(stray, key)


def test_partial_sheet_counts_only_filled_cells():
    key = pd.DataFrame({"item": ["p", "q", "r"], "system": ["x", "x", "y"]})
    sheet = pd.DataFrame({"item": ["p", "q", "r"], "relevance": [4, None, 2], "fluency": [None, None, None]})
    means = he.read_ratings(sheet, key)["means"].set_index(["system", "scale"])
    assert means.loc[("x", "relevance"), "mean"] == 4 and means.loc[("x", "relevance"), "items"] == 1
    assert ("x", "fluency") not in means.index  # nothing rated: no mean, not a 0


def test_doctests():
    result = doctest.testmod(he, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
