"""Stamp scenes: composited multi-object images with a known scene graph.

Each scene pastes 1-4 Tux Paint cut-outs (1 or 2 object kinds, 1-3 copies each,
a size ``big`` or ``small`` per kind) on a plain tinted background. Two kinds are
placed in opposite halves, which fixes one spatial relation (``left of``,
``right of``, ``above``, ``below``). The scene graph is stored with the item
(``item.meta["graph"]``), and five reference captions are generated from it in
varied sentence forms (:mod:`analysis.data.scene_text`, re-exported here).
Everything is deterministic given ``seed``.

Two datasets are rendered this way:

* ``stamp-scenes``: cut-outs only from the stamps of the ``tuxpaint-stamps`` *train*
  split (no held-out stamp is seen in training, inside a scene or alone). The split
  is by **object set**: ``hash_split`` of the seed and the scene's sorted object kind
  names, so a set of kinds lies on one side only and no test or val scene's set of
  objects occurs in training (held out: seen stamps, new combinations).
* ``stamp-scenes-unseen``: cut-outs only from the *test*-split stamps whose names are
  not in the training pool; every item is ``test`` (held out: unseen stamps).
* ``stamp-scenes-scst``: fresh scenes of the same training pool rendered with another seed
  (:data:`SCST_SEED`), keeping only those whose object set lies on the **train** side of
  ``stamp-scenes``' split (seed 0): images that no stand-in scorer and no captioner was trained on, with no
  val or test object set. Every item is ``train``. The probe's SCST runs on them, so a reward is optimised
  on images its scorer has not memorised (on the scorers' own training images the XE captioner already
  writes near-copies of the references and the clip-mini reward had nothing left to teach).

The provenance ``pool`` of each is the object names its scenes are drawn from (the
replacement names of :func:`analysis.data.perturbations.perturb`; the hard negatives
live there, not here).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from analysis import cache
from analysis.data import tuxpaint
from analysis.data.base import Item, hash_split, make_dataset
from analysis.data.scene_text import (RELATIONS, canonical, noun_phrase, object_set, plural,  # noqa: F401
                                      references, visual_words)  # caption text, importable from here
from analysis.runtime import rng as make_rng

SIZE = 224
CATEGORIES = ("animals", "food", "vehicles", "household", "plants", "clothes", "sports", "hobbies")
BACKGROUNDS = [(255, 255, 255), (235, 242, 250), (245, 240, 225), (228, 240, 228)]
GENERATOR_VERSION = 4  # bump when the generator changes: it is part of the cache key


def object_pool(stamps) -> list[dict]:
    """Stamps usable in scenes: photo-like categories, short lower-case singular names (a name whose
    last word already looks plural, like "cherries" or "scissors", cannot be counted), one stamp per name."""
    seen, pool = set(), []
    for it in stamps:
        name = it.meta["object"]
        if (it.meta["category"] in CATEGORIES and re.fullmatch(r"[a-z]+( [a-z]+)?", name)
                and not re.search(r"[^sui]s$", name) and name not in seen):
            seen.add(name)
            pool.append({"name": name, "path": str(it.path), "id": it.id})
    return pool


def sample_graph(pool: list[dict], rng) -> dict:
    """Draw a scene graph: 1-2 kinds, counts 1-3 (total <= 4), sizes, one relation between kinds."""
    k = int(rng.integers(1, 3))
    picks = rng.choice(len(pool), size=k, replace=False)
    objs = []
    for i in picks:
        count = int(rng.integers(1, 4 if k == 1 else 3))
        objs.append({"name": pool[i]["name"], "stamp": pool[i]["id"], "count": count,
                     "size": "big" if rng.random() < 0.5 else "small"})
    rels = []
    if k == 2:
        rel = str(rng.choice(list(RELATIONS)))
        rels = [{"subject": objs[0]["name"], "relation": rel, "object": objs[1]["name"]},
                {"subject": objs[1]["name"], "relation": RELATIONS[rel], "object": objs[0]["name"]}]
    return {"objects": objs, "relations": rels, "background": int(rng.integers(len(BACKGROUNDS)))}


def _region(graph: dict, index: int) -> tuple[float, float, float, float]:
    """Region (x0, y0, x1, y1) of object kind ``index`` in unit coordinates."""
    if len(graph["objects"]) == 1:
        return (0.0, 0.0, 1.0, 1.0)
    rel = graph["relations"][0]["relation"]
    first = {"left of": (0, 0, .5, 1), "right of": (.5, 0, 1, 1), "above": (0, 0, 1, .5), "below": (0, .5, 1, 1)}[rel]
    second = {"left of": (.5, 0, 1, 1), "right of": (0, 0, .5, 1), "above": (0, .5, 1, 1), "below": (0, 0, 1, .5)}[rel]
    return first if index == 0 else second


def render(graph: dict, stamps: dict[str, str], rng):
    """Composite the scene: copies of each kind tiled inside its region; boxes go into the graph."""
    from PIL import Image

    canvas = Image.new("RGBA", (SIZE, SIZE), BACKGROUNDS[graph["background"]] + (255,))
    for i, obj in enumerate(graph["objects"]):
        x0, y0, x1, y1 = _region(graph, i)
        n = obj["count"]
        horizontal = (x1 - x0) >= (y1 - y0)
        cell = ((x1 - x0) / n, y1 - y0) if horizontal else (x1 - x0, (y1 - y0) / n)
        scale = 0.95 if obj["size"] == "big" else 0.5
        with Image.open(stamps[obj["stamp"]]) as im:
            stamp = im.convert("RGBA")
        side = int(min(cell) * SIZE * scale)
        stamp.thumbnail((side, side))
        obj["boxes"] = []
        for c in range(n):
            cx0 = x0 + (c * cell[0] if horizontal else 0)
            cy0 = y0 + (0 if horizontal else c * cell[1])
            free_x = max(int(cell[0] * SIZE) - stamp.width, 0)
            free_y = max(int(cell[1] * SIZE) - stamp.height, 0)
            px = int(cx0 * SIZE) + int(rng.integers(0, free_x + 1))
            py = int(cy0 * SIZE) + int(rng.integers(0, free_y + 1))
            canvas.alpha_composite(stamp, (px, py))
            obj["boxes"].append([px, py, px + stamp.width, py + stamp.height])
    return canvas.convert("RGB")


def _stamps(split: str) -> list[Item]:
    """The ``tuxpaint-stamps`` items of ``split``, read without decoding the images; stamps whose
    files are damaged in the cache (see :func:`analysis.cache.damage`) are left out."""
    folder, _ = tuxpaint.source()
    return [it for it in tuxpaint.items(folder)
            if it.split == split and not (it.meta.get("damaged") or cache.damage(it.path))]


def training_pool() -> list[dict]:
    """The object pool of ``stamp-scenes``: :func:`object_pool` of the tuxpaint *train* stamps."""
    return object_pool(_stamps("train"))


def unseen_pool() -> list[dict]:
    """The object pool of ``stamp-scenes-unseen``: :func:`object_pool` of the tuxpaint *test* stamps,
    without any name that is the object name of a tuxpaint *train* or *val* stamp (whether or not it made
    it into :func:`training_pool`): the stand-ins train on every train stamp's caption."""
    seen = {it.meta["object"].lower() for split in ("train", "val") for it in _stamps(split)}
    return [p for p in object_pool(_stamps("test")) if p["name"].lower() not in seen]


def scene_split(graph: dict, seed: int) -> str:
    """The split of a ``stamp-scenes`` item: ``hash_split(f"scenes:{seed}:" + "|".join(object_set(graph)))``,
    so every scene with the same set of object kinds is on the same side."""
    return hash_split(f"scenes:{seed}:" + "|".join(object_set(graph)))


def build_scenes(out: Path, pool: list[dict], n_scenes: int, seed: int, prefix: str = "scene") -> None:
    """Render ``n_scenes`` scenes from ``pool`` into ``out`` (``<prefix>_00000.png``, ...) with an
    ``index.json`` of the pool names, graphs and captions."""
    paths = {p["id"]: p["path"] for p in pool}
    rng = make_rng(seed)
    index = []
    for i in range(n_scenes):
        graph = sample_graph(pool, rng)
        img = render(graph, paths, rng)
        name = f"{prefix}_{i:05d}.png"
        img.save(out / name, optimize=False)
        index.append({"file": name, "graph": graph, "captions": references(graph)})
    (out / "index.json").write_text(json.dumps({"pool": [p["name"] for p in pool], "scenes": index}, indent=0))


def _render_set(name: str, pool: list[dict], n_scenes: int, seed: int, prefix: str) -> tuple[Path, dict, dict]:
    """``(folder, index, stamps source info)`` of the cache entry holding the rendered scenes of ``pool``."""
    if len(pool) < 2:
        raise ValueError(f"{name}: the object pool has {len(pool)} name(s); scenes need at least 2")
    _, src = tuxpaint.source()  # provenance only: no need to decode every stamp here
    recipe = {"set": name, "n_scenes": n_scenes, "seed": seed, "version": GENERATOR_VERSION, "stamps": src,
              "pool": [p["id"] for p in pool]}
    folder = cache.entry("scenes", recipe, lambda out: build_scenes(out, pool, n_scenes, seed, prefix))
    return folder, json.loads((folder / "index.json").read_text()), src


def _dataset(name, folder, index, src, split_of, split, limit, seed, n_scenes, origin_stamps):
    from analysis import registry

    heldout = registry.DATASETS.entry(name).meta["heldout"]  # the label lives in the registry only
    items = [Item(id=s["file"], path=folder / s["file"], captions=s["captions"], split=split_of(s["graph"]),
                  meta={"graph": s["graph"], "n_objects": sum(o["count"] for o in s["graph"]["objects"])})
             for s in index["scenes"]]
    return make_dataset(
        name, items, split=split, limit=limit, source="embedded",
        licence="GPL-2.0 (derived from the Tux Paint stamps)",
        origin=f"rendered here from the {origin_stamps} of Debian tuxpaint-stamps-default {src['version']} "
               f"(seed {seed})",
        caption_source="generated from the scene graph (5 templates)",
        description="1-4 cut-outs of 1-2 object kinds composited with a known scene graph: objects, counts, "
                    f"sizes and one spatial relation; references generated from the graph. Held out: {heldout}.",
        provenance={**src, "seed": seed, "n_scenes": n_scenes, "pool": index["pool"], "heldout": heldout})


def load(split: str | None = None, limit: int | None = None, n_scenes: int = 600, seed: int = 0):
    """The ``stamp-scenes`` dataset (rendered into the cache on first use), split by object set."""
    folder, index, src = _render_set("stamp-scenes", training_pool(), n_scenes, seed, "scene")
    return _dataset("stamp-scenes", folder, index, src, lambda g: scene_split(g, seed), split, limit, seed,
                    n_scenes, "train-split stamps")


SCST_SEED = 7  # the render seed of ``stamp-scenes-scst`` (any seed other than stamp-scenes' 0)


def load_scst(split: str | None = None, limit: int | None = None, n_scenes: int = 900, seed: int = SCST_SEED,
              split_seed: int = 0):
    """The ``stamp-scenes-scst`` dataset: :func:`build_scenes` of :func:`training_pool` with render seed
    ``seed``, keeping the scenes with ``scene_split(graph, split_seed) == "train"``; every item is ``train``."""
    if seed == split_seed:
        raise ValueError(f"stamp-scenes-scst: render seed {seed} equals stamp-scenes' seed {split_seed}, so its "
                         "images would be stamp-scenes' own; pick another seed")
    folder, index, src = _render_set("stamp-scenes-scst", training_pool(), n_scenes, seed, "scst")
    index = {**index, "scenes": [s for s in index["scenes"] if scene_split(s["graph"], split_seed) == "train"]}
    return _dataset("stamp-scenes-scst", folder, index, src, lambda g: "train", split, limit, seed, n_scenes,
                    "train-split stamps, object sets on the train side of stamp-scenes")


def load_unseen(split: str | None = None, limit: int | None = None, n_scenes: int = 120, seed: int = 0):
    """The ``stamp-scenes-unseen`` dataset: scenes of held-out (test-split) stamps only; every item is ``test``."""
    folder, index, src = _render_set("stamp-scenes-unseen", unseen_pool(), n_scenes, seed, "unseen")
    return _dataset("stamp-scenes-unseen", folder, index, src, lambda g: "test", split, limit, seed, n_scenes,
                    "test-split stamps whose object no train or val stamp names")
