"""Human-judgement loaders (Flickr8k-Expert, Flickr8k-CrowdFlower, THumB 1.0) on fixtures
in the published formats, loaded through the registry."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from analysis.data import judgements
from analysis.data.base import DataUnavailable
from analysis.registry import DATASETS, get_dataset

FIX = Path(__file__).parent / "fixtures" / "real_formats"
F8K = FIX / "flickr8k"
A, B, C = "1000000001_0a1b2c3d4e.jpg", "1000000002_1b2c3d4e5f.jpg", "1000000003_2c3d4e5f6a.jpg"
TIDY = ["dataset", "image", "caption_id", "caption", "rater", "score", "path", "references"]


pytestmark = pytest.mark.usefixtures("isolated_data")



def token_captions(image: str) -> list[str]:
    lines = (F8K / "Flickr8k.token.txt").read_text().splitlines()
    return [line.split("\t")[1] for line in lines if line.startswith(image + "#")]


# --------------------------------------------------------------------------- Flickr8k-Expert
def test_expert_one_row_per_rating_not_per_pair():
    df = get_dataset("flickr8k-expert", root=F8K)
    assert list(df.columns[:8]) == TIDY
    # 6 pairs in the file, 2 of them rate the image's own reference caption (dropped by protocol)
    assert len(df) == 4 * 3 and set(df.groupby(["image", "caption_id"]).size()) == {3}
    assert sorted(df["rater"].unique()) == ["expert_1", "expert_2", "expert_3"]
    pair = df[(df.image == A) & (df.caption_id == B + "#2")]
    assert pair["score"].tolist() == [1.0, 1.0, 2.0]  # the three scores as written, not their mean
    assert pair["caption"].iloc[0] == "Kids digging in the sand near the water ."
    assert pair["caption_image"].iloc[0] == B
    assert df.attrs["name"] == "flickr8k-expert" and df.attrs["source"] == "real"


def test_expert_references_and_protocol_drop():
    df = get_dataset("flickr8k-expert", root=F8K)
    assert df.loc[df.image == A, "references"].iloc[0] == tuple(token_captions(A))
    assert not df["candidate_in_refs"].any()
    assert [(img, cid) for img, cid, _ in df.attrs["dropped"]] == [(A, A + "#0"), (B, B + "#4")]
    full = get_dataset("flickr8k-expert", root=F8K, drop_reference_candidates=False)
    assert len(full) == 6 * 3 and full["candidate_in_refs"].sum() == 2 * 3
    assert full.loc[full.caption_id == A + "#0", "score"].tolist() == [4.0, 4.0, 4.0]


def test_expert_paths_are_the_karpathy_image_folder():
    df = get_dataset("flickr8k-expert", root=F8K)
    assert set(df["path"]) == {str(F8K / "Flicker8k_Dataset" / img) for img in (A, B, C)}
    assert df.attrs["skipped"] == []


def test_expert_keeps_nan_ratings(tmp_path, copy_set):
    root = copy_set("flickr8k")
    path = root / "ExpertAnnotations.txt"
    lines = path.read_text().splitlines()
    lines[0] = "\t".join(lines[0].split("\t")[:3] + ["", "NA"])  # expert 2 and 3 missing
    path.write_text("\n".join(lines) + "\n")
    df = get_dataset("flickr8k-expert", root=root)
    assert len(df) == 12 and df["score"].isna().sum() == 2
    assert df.loc[(df.image == A) & (df.caption_id == B + "#2"), "score"].iloc[0] == 1.0


def test_expert_limit_counts_images_and_keeps_their_rows():
    df = get_dataset("flickr8k-expert", root=F8K, limit=1)
    assert set(df["image"]) == {A} and len(df) == 2 * 3


def test_expert_malformed_line_is_located(tmp_path, copy_set):
    root = copy_set("flickr8k")
    with open(root / "ExpertAnnotations.txt", "a") as f:
        f.write(f"{A}\t{C}#0\t1\t2\n")
    with pytest.raises(ValueError, match=r"ExpertAnnotations.txt:7: expected 5 tab-separated fields, found 4"):
        get_dataset("flickr8k-expert", root=root)


def test_unknown_caption_id_is_an_error(tmp_path, copy_set):
    root = copy_set("flickr8k")
    with open(root / "ExpertAnnotations.txt", "a") as f:
        f.write(f"{A}\t9999_x.jpg#0\t1\t1\t1\n")
    with pytest.raises(ValueError, match=r"'9999_x.jpg#0'.*not in Flickr8k.token.txt"):
        get_dataset("flickr8k-expert", root=root)


def test_text_files_in_flickr8k_text_subfolder(tmp_path, copy_set):
    root = copy_set("flickr8k")
    (root / "Flickr8k_text").mkdir()
    for name in ("Flickr8k.token.txt", "ExpertAnnotations.txt", "CrowdFlowerAnnotations.txt"):
        (root / name).rename(root / "Flickr8k_text" / name)
    assert len(get_dataset("flickr8k-expert", root=root)) == 12
    assert len(get_dataset("flickr8k-cf", root=root)) == 6


def test_corrupt_image_rows_are_removed_and_counted(tmp_path, copy_set):
    root = copy_set("flickr8k")
    (root / "Flicker8k_Dataset" / C).write_bytes(b"not a jpeg")
    df = get_dataset("flickr8k-expert", root=root)
    assert C not in set(df["image"]) and len(df) == 3 * 3
    assert [img for img, _ in df.attrs["skipped"]] == [C]


def test_images_false_needs_no_image_folder(tmp_path, copy_set):
    root = copy_set("flickr8k")
    shutil.rmtree(root / "Flicker8k_Dataset")
    with pytest.raises(DataUnavailable, match=r"'Flicker8k_Dataset/'.*images=False"):
        get_dataset("flickr8k-expert", root=root)
    df = get_dataset("flickr8k-expert", root=root, images=False)
    assert len(df) == 12 and df["path"].isna().all()


# --------------------------------------------------------------------------- Flickr8k-CrowdFlower
def test_crowdflower_pairs_with_fraction_yes():
    df = get_dataset("flickr8k-cf", root=F8K)
    assert list(df.columns[:8]) == TIDY
    assert len(df) == 6 and (df["rater"] == "crowd").all()
    assert df["score"].round(6).tolist() == [1.0, 0.0, 0.333333, 0.75, 0.0, 0.666667]
    assert (df["score"] == df["n_yes"] / (df["n_yes"] + df["n_no"])).all()
    refs_a = df.loc[df.image == A, "references"].iloc[0]
    assert "A dog is running on the grass ." not in refs_a and len(refs_a) == 4  # judged caption left out
    assert df.loc[df.image == A, "references"].nunique() == 1


def test_crowdflower_per_judgement_rows():
    df = get_dataset("flickr8k-cf", root=F8K, per_judgement=True)
    assert len(df) == 3 + 3 + 3 + 4 + 4 + 3 and set(df["score"]) == {0.0, 1.0}
    assert df["score"].sum() == 3 + 0 + 1 + 3 + 0 + 2  # the n_yes column of the file
    means = df.groupby(["image", "caption_id"], sort=False)["score"].mean()
    assert means.round(6).tolist() == [1.0, 0.0, 0.333333, 0.75, 0.0, 0.666667]


def test_crowdflower_inconsistent_fraction_is_refused(tmp_path, copy_set):
    root = copy_set("flickr8k")
    with open(root / "CrowdFlowerAnnotations.txt", "a") as f:
        f.write(f"{B}\t{C}#0\t0.9\t1\t2\n")
    with pytest.raises(ValueError, match=r"fraction yes 0.9 != 1/\(1\+2\)"):
        get_dataset("flickr8k-cf", root=root)


@pytest.mark.parametrize("name, first_file", [("flickr8k-expert", "Flickr8k.token.txt"),
                                              ("flickr8k-cf", "Flickr8k.token.txt")])
def test_flickr8k_empty_folder_message(tmp_path, name, first_file):
    with pytest.raises(DataUnavailable) as err:
        get_dataset(name, root=tmp_path)
    msg = str(err.value)
    assert repr(first_file) in msg and str(tmp_path) in msg and str(tmp_path / "Flickr8k_text") in msg
    assert "root=" in msg and "STUDY_DATA" in msg


@pytest.mark.parametrize("name, missing", [("flickr8k-expert", "ExpertAnnotations.txt"),
                                           ("flickr8k-cf", "CrowdFlowerAnnotations.txt")])
def test_flickr8k_missing_judgement_file_is_named(tmp_path, name, missing):
    shutil.copy(F8K / "Flickr8k.token.txt", tmp_path)
    with pytest.raises(DataUnavailable, match=repr(missing)):
        get_dataset(name, root=tmp_path)


# --------------------------------------------------------------------------- THumB
def test_thumb_rows_fields_and_references():
    df = get_dataset("thumb", root=FIX / "thumb", coco_root=FIX / "coco")
    assert list(df.columns[:8]) == TIDY
    assert len(df) == 2 * 5 and set(df.groupby("image")["system"].nunique()) == {5}
    assert set(df["system"]) == {"Up-Down", "Unified-VLP", "VinVL-base", "VinVL-large", "Human"}
    total = (df.precision + df.recall) / 2 + df.fluency + df.conciseness + df.inclusive
    assert (df["score"] - total).abs().max() < 1e-9
    row = df[df.caption_id == "42#VinVL-large"].iloc[0]
    assert (row.precision, row.recall, row.fluency, row.score) == (3.0, 3.0, -0.5, 2.5)
    assert row.caption == "A cat is a cat on a couch couch." and row.set_id == 3
    refs42 = df.loc[df.seg_id == "42", "references"].iloc[0]
    assert len(refs42) == 4 and "A grey cat lies on a sofa." in refs42
    assert df.attrs["references"] == "mscoco_references.json"
    assert set(df["path"]) == {str(FIX / "coco" / "val2014" / f"COCO_val2014_0000000000{i}.jpg") for i in (42, 73)}


def test_thumb_references_from_karpathy_minus_the_human_caption(tmp_path):
    shutil.copy(FIX / "thumb" / "mscoco_THumB-1.0.jsonl", tmp_path)
    df = get_dataset("thumb", root=tmp_path, coco_root=FIX / "coco")
    refs42 = df.loc[df.seg_id == "42", "references"].iloc[0]
    # COCO's "a cat sitting on a red couch next to a remote " is the Human candidate, cleaned and truecased
    assert len(refs42) == 4 and not any(r.startswith("a cat sitting") for r in refs42)
    assert len(df.loc[df.seg_id == "73", "references"].iloc[0]) == 3
    assert "dataset_coco.json minus the Human caption" in df.attrs["references"]


def test_thumb_without_reference_source(tmp_path):
    shutil.copy(FIX / "thumb" / "mscoco_THumB-1.0.jsonl", tmp_path)
    with pytest.raises(DataUnavailable, match=r"'mscoco_references.json'.*references=False"):
        get_dataset("thumb", root=tmp_path, coco_root=tmp_path / "nothing")
    df = get_dataset("thumb", root=tmp_path, references=False, images=False)
    assert len(df) == 10 and (df["references"].map(len) == 0).all() and df["path"].isna().all()


def test_thumb_images_not_found(tmp_path):
    with pytest.raises(DataUnavailable, match=r"COCO_val2014_000000000042.jpg.*image_dir="):
        get_dataset("thumb", root=FIX / "thumb", coco_root=tmp_path)
    df = get_dataset("thumb", root=FIX / "thumb", image_dir=FIX / "coco" / "val2014", coco_root=tmp_path)
    assert df["path"].notna().all()


def test_thumb_readme_spelling_flu_is_read(tmp_path):
    rows = [json.loads(x) for x in (FIX / "thumb" / "mscoco_THumB-1.0.jsonl").read_text().splitlines()]
    for r in rows:
        r["Flu"] = r.pop("Fl")
    (tmp_path / "mscoco_THumB-1.0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    df = get_dataset("thumb", root=tmp_path, references=False, images=False)
    assert df.loc[df.caption_id == "42#VinVL-large", "fluency"].iloc[0] == -0.5


def test_thumb_limit_and_missing_file(tmp_path):
    df = get_dataset("thumb", root=FIX / "thumb", coco_root=FIX / "coco", limit=1)
    assert set(df["seg_id"]) == {"42"} and len(df) == 5
    with pytest.raises(DataUnavailable) as err:
        get_dataset("thumb", root=tmp_path)
    msg = str(err.value)
    assert "'mscoco_THumB-1.0.jsonl'" in msg and str(tmp_path) in msg and "root=" in msg and "STUDY_DATA" in msg


def test_default_roots_from_study_data(monkeypatch):
    monkeypatch.setenv("STUDY_DATA", str(FIX))  # thumb finds its images in $STUDY_DATA/coco/val2014
    assert len(get_dataset("thumb")) == 10
    assert len(get_dataset("flickr8k-expert")) == 12


# --------------------------------------------------------------------------- pieces
def test_parsers():
    assert judgements.image_of(A + "#3") == A
    assert math.isnan(judgements.number(" ")) and judgements.number("3") == 3.0
    with pytest.raises(ValueError):
        judgements.number("three")
    assert judgements.normalise("A Cat, sitting. ") == "a cat sitting"
    assert judgements.without(["A cat.", "a dog"], ["a CAT"]) == ("a dog",)
    recs = [{"image": i} for i in "aabcab"]
    assert judgements.first_images(recs, 2) == [{"image": i} for i in "aabab"]


def test_registry_points_at_these_loaders():
    assert DATASETS.entry("flickr8k-expert").load() is judgements.load_flickr8k_expert
    assert DATASETS.entry("flickr8k-cf").load() is judgements.load_flickr8k_cf
    assert DATASETS.entry("thumb").load() is judgements.load_thumb
