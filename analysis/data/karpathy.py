"""COCO, Flickr8k and Flickr30k with the Karpathy split, read from the published files.

The data is user-supplied (it cannot be downloaded here); these loaders read it in
the layout it is distributed in, so a real copy works with no conversion.

Annotation file (Karpathy & Fei-Fei 2015, ``caption_datasets.zip``)
-------------------------------------------------------------------
``dataset_coco.json`` / ``dataset_flickr8k.json`` / ``dataset_flickr30k.json``::

    {"dataset": "coco",
     "images": [{"filepath": "val2014",                  # COCO only
                 "filename": "COCO_val2014_000000391895.jpg",
                 "imgid": 0, "cocoid": 391895,           # cocoid: COCO only
                 "split": "test",                        # train | val | test | restval
                 "sentids": [770337, ...],
                 "sentences": [{"raw": "A man ...", "tokens": ["a", "man", ...],
                                "imgid": 0, "sentid": 770337}, ...]},
                ...]}

``restval`` (the 30,504 COCO val2014 images outside the 5k val / 5k test sets)
is mapped to ``train``, the usual "Karpathy train" of 113,287 images; the
original value is kept in ``item.meta["karpathy_split"]``.

Image folders under the dataset root
------------------------------------
* COCO: ``<root>/<filepath>/<filename>``, i.e. ``train2014/`` and ``val2014/``.
* Flickr8k: ``<root>/Flicker8k_Dataset/<filename>`` (the official zip's misspelling);
  ``Flickr8k_Dataset/`` and ``Images/`` (a common re-packaging) are accepted too.
* Flickr30k: ``<root>/flickr30k-images/<filename>``.

The annotation JSON may sit in the root or in ``<root>/caption_datasets/``.
The root is the ``root=`` argument, else ``$STUDY_DATA/<name>`` (``coco``,
``flickr8k``, ``flickr30k``), else ``~/.cache/vlp-study-data/<name>``.

Items: ``id`` is the image file name, ``captions`` the ``raw`` sentences (stripped),
``meta`` holds ``karpathy_split``, ``imgid``, ``sentids``, ``tokens`` and ``cocoid``
where present. Images that are missing or do not decode are skipped and listed in
``dataset.skipped`` with the reason.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

from analysis.data.base import SPLITS, DataUnavailable, Item, image_ok, make_dataset

KARPATHY_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
JSON_SUBDIRS = ("", "caption_datasets")
SPLIT_MAP = {"train": "train", "restval": "train", "val": "val", "test": "test"}


# --------------------------------------------------------------------------- locations
def data_root(name: str, root: str | Path | None = None) -> Path:
    """The folder of dataset ``name``: ``root`` if given, else ``$STUDY_DATA/<name>``,
    else ``~/.cache/vlp-study-data/<name>``."""
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("STUDY_DATA")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "vlp-study-data") / name


def how_to_supply(dataset: str, name: str) -> str:
    """The sentence every :class:`DataUnavailable` ends with."""
    env = os.environ.get("STUDY_DATA")
    where = f"$STUDY_DATA/{name} (STUDY_DATA is now {env!r})" if env else f"$STUDY_DATA/{name} (STUDY_DATA is unset)"
    return (f"Pass the folder with get_dataset({dataset!r}, root='/path/to/{name}'), "
            f"or put the files under {where}.")


def find_file(root: Path, filename: str, *, dataset: str, name: str, subdirs: Iterable[str] = ("",),
              get_it: str = "") -> Path:
    """``root/<subdir>/filename`` for the first subdir where it exists, else :class:`DataUnavailable`
    naming the file, every folder looked in, and how to supply it."""
    looked = [root / s if s else root for s in subdirs]
    for folder in looked:
        if (folder / filename).is_file():
            return folder / filename
    folders = ", ".join(str(f) for f in looked)
    raise DataUnavailable(
        f"{dataset}: expected the file {filename!r} in {folders}, but it is not there. "
        f"{how_to_supply(dataset, name)}{' ' + get_it if get_it else ''}")


def find_folder(root: Path, names: Iterable[str], *, dataset: str, name: str, what: str) -> Path:
    """The first existing ``root/<name>`` folder, else :class:`DataUnavailable`."""
    names = list(names)
    for n in names:
        if (root / n).is_dir():
            return root / n
    shown = " or ".join(repr(n + "/") for n in names)
    raise DataUnavailable(
        f"{dataset}: expected the image folder {shown} ({what}) in {root}, but it is not there. "
        f"{how_to_supply(dataset, name)}")


# --------------------------------------------------------------------------- the JSON
def read_karpathy(path: str | Path) -> list[dict]:
    """The ``images`` list of a Karpathy split file; ``ValueError`` if it is not one."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path} is not a Karpathy split file: no top-level 'images' list")
    return data["images"]


def karpathy_split(value: str) -> str:
    """Study split of a Karpathy split value: ``restval`` -> ``train``; others unchanged."""
    try:
        return SPLIT_MAP[value]
    except KeyError:
        raise ValueError(f"unknown Karpathy split {value!r}; expected one of {', '.join(SPLIT_MAP)}") from None


def to_item(entry: dict, path: Path) -> Item:
    """One :class:`Item` from one ``images`` entry whose image file is ``path``."""
    sentences = entry.get("sentences", [])
    meta = {"karpathy_split": entry["split"], "imgid": entry.get("imgid"), "sentids": entry.get("sentids", []),
            "tokens": [s.get("tokens", []) for s in sentences]}
    if "cocoid" in entry:
        meta["cocoid"] = entry["cocoid"]
    return Item(id=entry["filename"], path=path, captions=[s["raw"].strip() for s in sentences],
                split=karpathy_split(entry["split"]), meta=meta)


def check_split(split: str | None) -> None:
    if split not in (None, "all") and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: all, {', '.join(SPLITS)} (restval is part of train)")


def first_decodable(items: list[Item], limit: int | None) -> tuple[list[Item], list[tuple[str, str]]]:
    """With a ``limit``, open images in order until ``limit`` decode (the others are returned as
    ``(id, reason)``), so a small ``limit`` never opens the whole dataset. Without one, all items."""
    if not limit:
        return items, []
    kept, skipped = [], []
    for it in items:
        if len(kept) == limit:
            break
        reason = image_ok(it.path)
        if reason is None:
            kept.append(it)
        else:
            skipped.append((it.id, reason))
    return kept, skipped


# --------------------------------------------------------------------------- one loader, three sets
def load_karpathy(dataset: str, name: str, json_name: str, image_path: Callable[[Path, list[dict]], Callable],
                  *, split: str | None, limit: int | None, root: str | Path | None, **card):
    """Read ``json_name`` under the root of ``name``, build items with ``image_path``, make the dataset."""
    from analysis.cache import file_sha256

    check_split(split)
    base = data_root(name, root)
    path = find_file(base, json_name, dataset=dataset, name=name, subdirs=JSON_SUBDIRS,
                     get_it=f"The file is in Karpathy's caption_datasets.zip ({KARPATHY_URL}).")
    entries = [e for e in read_karpathy(path) if split in (None, "all") or karpathy_split(e["split"]) == split]
    locate = image_path(base, entries)
    items, skipped = first_decodable([to_item(e, locate(e)) for e in entries], limit)
    provenance = {"root": str(base), "annotation_file": str(path), "annotation_sha256": file_sha256(path),
                  "images_listed": len(entries)}
    return make_dataset(dataset, items, split=split, limit=limit, skipped=skipped, source="real",
                        origin=f"user-supplied: {path.name} (Karpathy split) + images in {base}",
                        provenance=provenance, **card)


def _coco_images(base: Path, entries: list[dict]):
    needed = sorted({e.get("filepath", "") for e in entries})
    for folder in needed:
        find_folder(base, [folder], dataset="coco-karpathy", name="coco",
                    what=f"COCO 2014 images named by the 'filepath' field; from cocodataset.org {folder}.zip")
    return lambda e: base / e.get("filepath", "") / e["filename"]


def _folder_images(dataset: str, name: str, folders: tuple[str, ...], what: str):
    def locate(base: Path, entries: list[dict]):
        folder = find_folder(base, folders, dataset=dataset, name=name, what=what)
        return lambda e: folder / e["filename"]
    return locate


def load_coco(split: str | None = None, limit: int | None = None, root: str | Path | None = None):
    """``coco-karpathy``: MS-COCO 2014 images with the Karpathy split (113,287 / 5,000 / 5,000 images
    after ``restval`` -> ``train``), about 5 human-written captions each.

    Files: ``<root>/dataset_coco.json`` and ``<root>/train2014/``, ``<root>/val2014/``
    (the JSON's ``filepath`` field names the folder). See the module docstring.
    """
    return load_karpathy(
        "coco-karpathy", "coco", "dataset_coco.json", _coco_images, split=split, limit=limit, root=root,
        licence="annotations CC-BY 4.0 (COCO Consortium); images under their Flickr licences (COCO terms of use)",
        caption_source="human-written (MS-COCO crowd-sourced captions, about 5 per image)",
        description="MS-COCO 2014 photographs of everyday scenes with the Karpathy train/val/test split; "
                    "restval images are counted as train.")


def load_flickr8k(split: str | None = None, limit: int | None = None, root: str | Path | None = None):
    """``flickr8k-karpathy``: Flickr8k (6,000 / 1,000 / 1,000 images), 5 human-written captions each.

    Files: ``<root>/dataset_flickr8k.json`` and ``<root>/Flicker8k_Dataset/`` (the official,
    misspelt name; ``Flickr8k_Dataset/`` and ``Images/`` are accepted too).
    """
    return load_karpathy(
        "flickr8k-karpathy", "flickr8k", "dataset_flickr8k.json",
        _folder_images("flickr8k-karpathy", "flickr8k", ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images"),
                       "from Flickr8k_Dataset.zip (Hodosh et al. 2013)"),
        split=split, limit=limit, root=root,
        licence="research use only (Flickr8k terms, Hodosh et al. 2013); images under their Flickr licences",
        caption_source="human-written (Flickr8k crowd-sourced captions, 5 per image)",
        description="Flickr photographs of people and animals in action, with the Karpathy split.")


def load_flickr30k(split: str | None = None, limit: int | None = None, root: str | Path | None = None):
    """``flickr30k-karpathy``: Flickr30k (29,000 / 1,014 / 1,000 images), 5 human-written captions each.

    Files: ``<root>/dataset_flickr30k.json`` and ``<root>/flickr30k-images/``.
    """
    return load_karpathy(
        "flickr30k-karpathy", "flickr30k", "dataset_flickr30k.json",
        _folder_images("flickr30k-karpathy", "flickr30k", ("flickr30k-images",),
                       "from flickr30k-images.tar.gz (Young et al. 2014)"),
        split=split, limit=limit, root=root,
        licence="non-commercial research use (Flickr30k terms, Young et al. 2014); images under their Flickr licences",
        caption_source="human-written (Flickr30k crowd-sourced captions, 5 per image)",
        description="Flickr photographs of everyday activities and events, with the Karpathy split.")
