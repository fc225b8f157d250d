"""GCompris photos (Debian ``gcompris-qt-data``), read out of the Qt ``.rcc`` bundles.

* ``gcompris-explore``: the ``explore_*`` activities (monuments, world animals, farm
  animals, world music). Each board entry in ``resource/board/board*.qml`` has a
  ``"title": qsTr("…")``, a ``"text": qsTr("…")`` paragraph and an ``"image2"``
  photo (WebP). Captions: the title and the paragraph (human-written).
* ``gcompris-categories``: the photos of ``categorization.rcc`` under
  ``resource/images/<category>/``; the label is the folder, the caption is made
  from the file name (``"scissors2.webp"`` -> ``"scissors"``, ``"eiffelTower.webp"`` ->
  ``"eiffel tower"``) and marked as such.
"""
from __future__ import annotations

import re
from pathlib import Path

from analysis import cache
from analysis.data import debian
from analysis.data.base import Item, hash_split, make_dataset
from analysis.data.rcc import read_rcc

PACKAGE = "gcompris-qt-data"
RCC = "usr/share/gcompris-qt/rcc"
EXPLORE = ("explore_monuments", "explore_world_animals", "explore_farm_animals", "explore_world_music")
BLOCK = re.compile(r"\{[^{}]*\"image2\"[^{}]*\}", re.S)
FIELD = r'"{}"\s*:\s*(?:qsTr\()?"((?:[^"\\]|\\.)*)"'


def _keep(rel: str) -> bool:
    return rel.startswith(RCC) and Path(rel).stem in EXPLORE + ("categorization",)


def parse_board(qml: str) -> list[dict]:
    """``[{"title", "text", "image"}]`` for each board entry that has a photo (``image2``)."""
    out = []
    for block in BLOCK.findall(qml):
        get = {k: re.search(FIELD.format(k), block) for k in ("title", "text", "image2")}
        if all(get.values()):
            out.append({"title": get["title"].group(1), "text": get["text"].group(1).replace("\\'", "'"),
                        "image": get["image2"].group(1).removeprefix("qrc:")})
    return out


def caption_from_filename(stem: str) -> str:
    """Words of a file name, lower-cased: digits, ``_`` and ``-`` become spaces and camelCase is split
    (a space before each capital that follows a lower-case letter, or that starts a word after an
    acronym): ``"scissors2"`` -> ``"scissors"``, ``"red_apple"`` -> ``"red apple"``,
    ``"eiffelTower"`` -> ``"eiffel tower"``, ``"IndiaGate"`` -> ``"india gate"``."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", re.sub(r"[\d_\-]+", " ", stem))
    return re.sub(r"\s+", " ", words).strip().lower()


def _extract(kind: str, bundles: tuple[str, ...], pick) -> tuple[Path, dict]:
    """Unpack the photos ``pick`` selects from ``bundles`` into a cache entry with an index;
    return the entry and the Debian source info."""
    import json

    src = debian.fetch(PACKAGE, _keep)
    info = debian.source_info(src)

    def build(out: Path) -> None:
        index = []
        for b in bundles:
            files = read_rcc(src / RCC / f"{b}.rcc")
            for rec in pick(b, files):
                dest = out / b / Path(rec["resource"]).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(files[rec["resource"]])
                index.append({**rec, "file": str(dest.relative_to(out))})
        (out / "index.json").write_text(json.dumps(index, indent=1))

    return cache.entry("gcompris", {"kind": kind, "source": info}, build), info


def _explore_records(bundle: str, files: dict[str, bytes]) -> list[dict]:
    seen, out = set(), []
    for path in sorted(k for k in files if "/board/" in k and k.endswith(".qml")):
        for e in parse_board(files[path].decode("utf-8")):
            if e["image"] in files and e["image"] not in seen:
                seen.add(e["image"])
                out.append({"resource": e["image"], "title": e["title"], "text": e["text"], "activity": bundle})
    return out


def _category_records(bundle: str, files: dict[str, bytes]) -> list[dict]:
    out = []
    for k in sorted(files):
        m = re.search(r"/resource/images/([^/]+)/([^/]+)\.webp$", k)
        if m:
            out.append({"resource": k, "category": m.group(1), "title": caption_from_filename(m.group(2))})
    return out


def _load(kind, bundles, records, to_item, split, limit, **card):
    import json

    folder, src = _extract(kind, bundles, records)
    index = json.loads((folder / "index.json").read_text())
    return make_dataset(kind, [to_item(folder, r) for r in index], split=split, limit=limit, source="embedded",
                        licence="GPL-3.0 (app); photos mostly public domain / CC0 (README files in the bundles)",
                        origin=f"Debian {PACKAGE} {src['version']}", provenance=src, **card)


def load_explore(split: str | None = None, limit: int | None = None):
    """The ``gcompris-explore`` dataset: photos with a title and a descriptive paragraph."""
    def to_item(folder, r):
        return Item(id=r["file"], path=folder / r["file"], captions=[r["title"], r["text"]],
                    split=hash_split("gcompris:" + r["file"]), meta={"activity": r["activity"], "title": r["title"]})

    return _load("gcompris-explore", EXPLORE, _explore_records, to_item, split, limit,
                 caption_source="human-written (GCompris titles and paragraphs)",
                 description="Photos of monuments, animals and music traditions from GCompris' explore "
                             "activities, each with a title and a 1-6 sentence paragraph.")


def load_categories(split: str | None = None, limit: int | None = None):
    """The ``gcompris-categories`` dataset: photos with a category label."""
    def to_item(folder, r):
        # the caption is made from the file name here, not read from the cached index (whose titles
        # predate the camelCase split), so the cache entry and its key stay as they are
        return Item(id=r["file"], path=folder / r["file"], captions=[caption_from_filename(Path(r["resource"]).stem)],
                    split=hash_split("gcompris:" + r["file"]), meta={"category": r["category"]})

    return _load("gcompris-categories", ("categorization",), _category_records, to_item, split, limit,
                 caption_source="derived from the file name (label: the category folder)",
                 description="Photos from GCompris' categorisation activity, sorted into category folders.")
