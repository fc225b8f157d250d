"""Tux Paint stamps (Debian ``tuxpaint-stamps-default``): real cut-out images, one
human-written English description each.

Each ``stamps/<category>/.../X.png`` has ``X.txt`` whose first line is the English
description ("A zebra."). ``symbols/`` and ``*_mirror.png`` (mirrored duplicates
without their own text) are left out, giving 538 pairs in 15 categories.

The split is grouped by caption: :func:`analysis.data.base.hash_split` of the
normalised description (:func:`analysis.data.base.normalise_caption`), so stamps with
the same description ("A butterfly.", "A flower.") are always on the same side and no
test caption occurs in training. A stamp whose files are damaged in the cache and
could not be rebuilt is skipped with the reason (``dataset.skipped``).
"""
from __future__ import annotations

import re
from pathlib import Path

from analysis import cache
from analysis.data import debian
from analysis.data.base import Item, hash_split, make_dataset, normalise_caption

PACKAGE = "tuxpaint-stamps-default"
STAMPS = "usr/share/tuxpaint/stamps"


def _keep(rel: str) -> bool:
    return rel.startswith(STAMPS) and rel.endswith((".png", ".txt")) and "/symbols/" not in rel


def description(txt: Path) -> str:
    """The English description: the first line of the stamp's ``.txt`` file, stripped."""
    first = txt.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
    return re.sub(r"\s+", " ", first)


def object_name(desc: str) -> str:
    """A short noun phrase from a description: ``"A pink flamingo."`` -> ``"pink flamingo"``."""
    s = desc.strip().rstrip(".!").strip()
    s = re.sub(r"^(an?|the|some)\s+", "", s, flags=re.I)
    return s[:1].lower() + s[1:] if s[:2] != s[:2].upper() else s


def split_of(desc: str) -> str:
    """The split of a stamp: ``hash_split("tuxpaint-caption:" + normalise_caption(desc))``."""
    return hash_split("tuxpaint-caption:" + normalise_caption(desc))


def items(folder: Path) -> list[Item]:
    """All stamp items under an unpacked package ``folder``. A stamp whose ``.txt`` is damaged
    (:func:`analysis.cache.damage`) gets ``meta["damaged"]`` instead of a caption read from it."""
    base = Path(folder) / STAMPS
    out = []
    for png in sorted(base.rglob("*.png")):
        txt = png.with_suffix(".txt")
        if png.stem.endswith("_mirror") or not txt.exists():
            continue
        rel = str(png.relative_to(base))
        damaged = cache.damage(txt)
        if damaged:
            out.append(Item(id=rel, path=png, captions=[], split="train",
                            meta={"category": rel.split("/")[0], "object": "", "damaged": f"{txt.name}: {damaged}"}))
            continue
        desc = description(txt)
        out.append(Item(id=rel, path=png, captions=[desc], split=split_of(desc),
                        meta={"category": rel.split("/")[0], "object": object_name(desc)}))
    return out


def source() -> tuple[Path, dict]:
    """``(folder, source info)`` of the unpacked package (fetched into the cache on first use)."""
    folder = debian.fetch(PACKAGE, _keep)
    return folder, debian.source_info(folder)


def load(split: str | None = None, limit: int | None = None):
    """The ``tuxpaint-stamps`` dataset (fetched into the cache on first use)."""
    folder, src = source()
    return make_dataset(
        "tuxpaint-stamps", items(folder), split=split, limit=limit, source="embedded", licence="GPL-2.0",
        origin=f"Debian {PACKAGE} {src['version']}", caption_source="human-written (Tux Paint stamp descriptions)",
        description="Real photographs and drawings cut out on a transparent background, each with a one-line "
                    "English description written by the Tux Paint contributors.",
        provenance=src)
