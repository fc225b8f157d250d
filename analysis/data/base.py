"""The dataset contract: a sequence of items, each a lazy image with reference captions.

A :class:`Dataset` knows where it came from (``source``: ``embedded`` data fetched
and built here, or ``real`` data the user supplies), its licence, how its captions
were made (``caption_source``), and which images it had to skip because they could
not be decoded (``skipped``, with reasons — never silent).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

SPLITS = ("train", "val", "test")


class DataUnavailable(RuntimeError):
    """The data for a dataset cannot be had here; the message says how to supply it."""


@dataclass
class Item:
    """One image with its reference captions. ``image()`` opens it lazily as RGB."""

    id: str
    path: Path
    captions: list[str]
    split: str
    meta: dict = field(default_factory=dict)

    def image(self, background=(255, 255, 255)):
        """The image as an RGB ``PIL.Image``; transparency is composited on ``background``."""
        return open_rgb(self.path, background)


def open_rgb(path: str | Path, background=(255, 255, 255)):
    """Open ``path`` and return RGB, compositing any alpha channel on ``background``."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            canvas = Image.new("RGBA", im.size, background + (255,))
            canvas.alpha_composite(im)
            return canvas.convert("RGB")
        return im.convert("RGB")


def image_ok(path: str | Path) -> str | None:
    """``None`` if ``path`` decodes as an image, else the reason it does not. The answer is remembered per
    process for the file's ``(path, size, modification time)``, so a changed file is decoded again."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    return _decodes(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=65536)
def _decodes(path: str, size: int, mtime_ns: int) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return None
    except Exception as e:  # noqa: BLE001 - any decoder failure means "corrupt"
        return f"{type(e).__name__}: {e}"


def hash_split(key: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic split from a key: ``u = int(sha256(key)[:8], 16) / 16**8``;
    ``train`` if ``u < f_train``, ``val`` if ``u < f_train + f_val``, else ``test``."""
    u = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16**8
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


def normalise_caption(caption: str) -> str:
    """A caption's comparison key: lower-cased, every whitespace and punctuation character removed
    (``re.sub(r"[\\W_]+", "", caption.lower())``): ``"A Butterfly. "`` -> ``"abutterfly"``."""
    return re.sub(r"[\W_]+", "", caption.lower())


@dataclass
class Dataset:
    """A named, provenance-carrying sequence of :class:`Item`."""

    name: str
    items: list[Item]
    source: str  # "embedded" | "real"
    licence: str
    origin: str
    caption_source: str  # e.g. "human-written", "written for this study", "generated from a scene graph"
    description: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]

    def select(self, split: str | None = None, limit: int | None = None) -> "Dataset":
        """A copy restricted to ``split`` (``None`` or ``"all"`` keeps all) and the first ``limit`` items."""
        if split not in (None, "all") and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: all, {', '.join(SPLITS)}")
        items = [it for it in self.items if split in (None, "all") or it.split == split]
        return Dataset(**{**self.__dict__, "items": items[:limit] if limit else items})

    def split_counts(self) -> dict[str, int]:
        return {s: sum(it.split == s for it in self.items) for s in SPLITS}

    def drop_corrupt(self) -> "Dataset":
        """Open every image once; move the undecodable ones to ``skipped`` with the reason. An item
        whose files are known to be damaged (``item.meta["damaged"]``, or an image file that
        :func:`analysis.cache.damage` reports) is skipped with that reason without being opened."""
        from analysis import cache

        keep = []
        for it in self.items:
            reason = it.meta.get("damaged") or cache.damage(it.path) or image_ok(it.path)
            if reason is None:
                keep.append(it)
            else:
                self.skipped.append((it.id, reason))
        self.items = keep
        return self


def make_dataset(name: str, items: Sequence[Item], *, split: str | None = None, limit: int | None = None,
                 **card) -> Dataset:
    """Build a dataset from items, drop corrupt images (counted), then select ``split``/``limit``."""
    return Dataset(name=name, items=list(items), **card).drop_corrupt().select(split, limit)
