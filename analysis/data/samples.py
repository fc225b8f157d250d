"""Sample photos shipped inside pip wheels: the always-available fallback dataset.

Fourteen natural and scientific photos from scikit-image, scikit-learn and
matplotlib. Their captions were **written for this study** (three per image, in
``sample_captions.csv``), not taken from any published dataset. Images are
written once into the cache as PNG files. The split is by hash of the image id.
"""
from __future__ import annotations

import csv
import importlib
from pathlib import Path

from analysis import cache
from analysis.data.base import Item, hash_split, make_dataset

CAPTIONS = Path(__file__).with_name("sample_captions.csv")


def read_captions(path: Path = CAPTIONS) -> dict[str, dict]:
    """``{id: {"loader": str, "captions": [str, ...]}}`` from the captions file, in file order."""
    out: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["id"], {"loader": row["loader"], "captions": []})["captions"].append(row["caption"])
    return out


def load_array(loader: str):
    """Call a loader spec: ``"module.func"`` or ``"module.func:argument"``; return an HxW(x3) array."""
    import numpy as np

    spec, _, arg = loader.partition(":")
    module, func = spec.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), func)
    out = fn(arg) if arg else fn()
    if isinstance(out, tuple):  # stereo_motorcycle returns (left, right, disparity)
        out = out[0]
    if hasattr(out, "read"):  # matplotlib's get_sample_data returns an open file
        from PIL import Image

        with out:
            out = np.asarray(Image.open(out).convert("RGB"))
    return np.asarray(out)


def _build(out: Path, table: dict[str, dict]) -> None:
    from PIL import Image

    for key, rec in table.items():
        arr = load_array(rec["loader"])
        Image.fromarray(arr).convert("RGB").save(out / f"{key}.png")


def load(split: str | None = None, limit: int | None = None):
    """The ``sample-photos`` dataset."""
    table = read_captions()
    versions = {}
    for mod in ("skimage", "sklearn", "matplotlib"):
        versions[mod] = importlib.import_module(mod).__version__
    folder = cache.entry("samples", {"captions": cache.file_sha256(CAPTIONS), "versions": versions},
                         lambda out: _build(out, table))
    items = [Item(id=k, path=folder / f"{k}.png", captions=rec["captions"], split=hash_split("samples:" + k),
                  meta={"loader": rec["loader"]}) for k, rec in table.items()]
    return make_dataset("sample-photos", items, split=split, limit=limit, source="embedded",
                        licence="BSD-3 / public domain (see each package's data notes)",
                        origin="scikit-image, scikit-learn and matplotlib wheels",
                        caption_source="written for this study (3 per image)",
                        description="Fourteen photos that ship inside pip wheels, the fallback when no Debian "
                                    "package can be fetched.", provenance={"versions": versions})
