"""Karpathy-split loaders (COCO, Flickr8k, Flickr30k) on fixtures in the published formats.

Everything is loaded through the registry, the path a real user takes; the
fixtures are described in tests/fixtures/real_formats/README.md.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analysis.cache import file_sha256
from analysis.data import karpathy
from analysis.data.base import DataUnavailable
from analysis.registry import DATASETS, get_dataset

FIX = Path(__file__).parent / "fixtures" / "real_formats"


pytestmark = pytest.mark.usefixtures("isolated_data")



def by_id(ds) -> dict:
    return {it.id: it for it in ds}


# --------------------------------------------------------------------------- COCO
def test_coco_counts_splits_and_restval_maps_to_train():
    ds = get_dataset("coco-karpathy", root=FIX / "coco")
    assert len(ds) == 4 and ds.skipped == []
    assert ds.split_counts() == {"train": 2, "val": 1, "test": 1}
    items = by_id(ds)
    restval = items["COCO_val2014_000000000074.jpg"]
    assert restval.split == "train" and restval.meta["karpathy_split"] == "restval"
    assert items["COCO_train2014_000000000009.jpg"].meta["karpathy_split"] == "train"
    assert [it.meta["cocoid"] for it in ds] == [42, 73, 9, 74]


def test_coco_captions_paths_and_card():
    ds = get_dataset("coco-karpathy", root=FIX / "coco")
    it = by_id(ds)["COCO_val2014_000000000042.jpg"]
    assert len(it.captions) == 5
    assert it.captions[0] == "a cat sitting on a red couch next to a remote"  # raw, trailing space stripped
    assert it.meta["tokens"][0][:3] == ["a", "cat", "sitting"]
    assert it.meta["sentids"] == [1000, 1001, 1002, 1003, 1004]
    assert it.path == FIX / "coco" / "val2014" / "COCO_val2014_000000000042.jpg"
    assert by_id(ds)["COCO_train2014_000000000009.jpg"].path.parent.name == "train2014"
    assert [len(i.captions) for i in ds] == [5, 4, 5, 2]
    assert it.image().size == (16, 16) and it.image().mode == "RGB"
    assert ds.source == "real" and ds.caption_source.startswith("human-written")
    assert ds.provenance["annotation_sha256"] == file_sha256(FIX / "coco" / "dataset_coco.json")


@pytest.mark.parametrize("split, ids", [
    ("train", ["COCO_train2014_000000000009.jpg", "COCO_val2014_000000000074.jpg"]),
    ("val", ["COCO_val2014_000000000073.jpg"]),
    ("test", ["COCO_val2014_000000000042.jpg"]),
])
def test_coco_split_selection(split, ids):
    ds = get_dataset("coco-karpathy", root=FIX / "coco", split=split)
    assert [it.id for it in ds] == ids and all(it.split == split for it in ds)


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="restval is part of train"):
        get_dataset("coco-karpathy", root=FIX / "coco", split="restval")


def test_limit_keeps_file_order():
    ds = get_dataset("coco-karpathy", root=FIX / "coco", limit=2)
    assert [it.id for it in ds] == ["COCO_val2014_000000000042.jpg", "COCO_val2014_000000000073.jpg"]


def test_coco_needs_only_the_folders_of_the_split(tmp_path, copy_set):
    root = copy_set("coco")
    shutil.rmtree(root / "train2014")
    assert len(get_dataset("coco-karpathy", root=root, split="test")) == 1  # test images are all in val2014
    with pytest.raises(DataUnavailable, match=r"'train2014/'"):
        get_dataset("coco-karpathy", root=root)


# --------------------------------------------------------------------------- Flickr8k / Flickr30k
def test_flickr8k_matches_token_file():
    ds = get_dataset("flickr8k-karpathy", root=FIX / "flickr8k")
    assert len(ds) == 3 and ds.split_counts() == {"train": 1, "val": 1, "test": 1}
    tokens = [line.split("\t", 1)[1] for line in (FIX / "flickr8k" / "Flickr8k.token.txt").read_text().splitlines()]
    assert [c for it in ds for c in it.captions] == tokens
    assert all(it.path.parent.name == "Flicker8k_Dataset" and it.path.is_file() for it in ds)
    assert "cocoid" not in ds[0].meta


@pytest.mark.parametrize("folder", ["Flickr8k_Dataset", "Images"])
def test_flickr8k_accepts_other_folder_names(tmp_path, folder, copy_set):
    root = copy_set("flickr8k")
    (root / "Flicker8k_Dataset").rename(root / folder)
    ds = get_dataset("flickr8k-karpathy", root=root)
    assert len(ds) == 3 and all(it.path.parent.name == folder for it in ds)


def test_json_in_caption_datasets_subfolder(tmp_path, copy_set):
    root = copy_set("flickr8k")
    (root / "caption_datasets").mkdir()
    (root / "dataset_flickr8k.json").rename(root / "caption_datasets" / "dataset_flickr8k.json")
    assert len(get_dataset("flickr8k-karpathy", root=root)) == 3


def test_flickr30k_corrupt_image_is_skipped_and_counted():
    ds = get_dataset("flickr30k-karpathy", root=FIX / "flickr30k")
    assert [it.id for it in ds] == ["1000000001.jpg", "1000000002.jpg"]
    assert len(ds.skipped) == 1
    skipped_id, reason = ds.skipped[0]
    assert skipped_id == "1000000003.jpg" and reason  # the reason says why it failed to decode
    assert ds.provenance["images_listed"] == 3


def test_limit_walks_past_corrupt_images():
    ds = get_dataset("flickr30k-karpathy", root=FIX / "flickr30k", limit=3)
    assert len(ds) == 2 and [s[0] for s in ds.skipped] == ["1000000003.jpg"]
    val = get_dataset("flickr30k-karpathy", root=FIX / "flickr30k", split="val")
    assert len(val) == 0 and len(val.skipped) == 1


# --------------------------------------------------------------------------- missing data
@pytest.mark.parametrize("name, filename", [
    ("coco-karpathy", "dataset_coco.json"),
    ("flickr8k-karpathy", "dataset_flickr8k.json"),
    ("flickr30k-karpathy", "dataset_flickr30k.json"),
])
def test_empty_folder_says_which_file_where_and_how(tmp_path, name, filename):
    with pytest.raises(DataUnavailable) as err:
        get_dataset(name, root=tmp_path)
    msg = str(err.value)
    assert repr(filename) in msg and str(tmp_path) in msg
    assert "root=" in msg and "STUDY_DATA" in msg and "caption_datasets.zip" in msg


def test_missing_image_folder_is_named(tmp_path):
    shutil.copy(FIX / "flickr30k" / "dataset_flickr30k.json", tmp_path)
    with pytest.raises(DataUnavailable, match=r"'flickr30k-images/'.*" + str(tmp_path).replace("/", ".")):
        get_dataset("flickr30k-karpathy", root=tmp_path)


def test_default_root_is_study_data(monkeypatch):
    monkeypatch.setenv("STUDY_DATA", str(FIX))
    assert len(get_dataset("flickr8k-karpathy")) == 3
    assert karpathy.data_root("coco") == FIX / "coco"


def test_fallback_root_is_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("STUDY_DATA")
    expected = tmp_path / "home" / ".cache" / "vlp-study-data" / "coco"
    assert karpathy.data_root("coco") == expected
    with pytest.raises(DataUnavailable, match="STUDY_DATA is unset") as err:
        get_dataset("coco-karpathy")
    assert str(expected) in str(err.value)


# --------------------------------------------------------------------------- pieces
def test_karpathy_split_mapping():
    mapped = [karpathy.karpathy_split(s) for s in ("train", "restval", "val", "test")]
    assert mapped == ["train", "train", "val", "test"]
    with pytest.raises(ValueError):
        karpathy.karpathy_split("dev")


def test_not_a_karpathy_file(tmp_path):
    (tmp_path / "dataset_coco.json").write_text(json.dumps([{"filename": "x.jpg"}]))
    with pytest.raises(ValueError, match="no top-level 'images' list"):
        get_dataset("coco-karpathy", root=tmp_path)


def test_registry_points_at_these_loaders():
    assert DATASETS.entry("coco-karpathy").load() is karpathy.load_coco
    assert DATASETS.entry("flickr8k-karpathy").load() is karpathy.load_flickr8k
    assert DATASETS.entry("flickr30k-karpathy").load() is karpathy.load_flickr30k
