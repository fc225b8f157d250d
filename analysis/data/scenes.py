"""Stamp scenes: composited multi-object images with a known scene graph.

Each scene pastes 1-4 Tux Paint cut-outs (1 or 2 object kinds, 1-3 copies each,
a size ``big`` or ``small`` per kind) on a plain tinted background. The cut-outs
come only from the stamps of the ``tuxpaint-stamps`` *train* split, so no held-out
stamp is ever seen in training, inside a scene or alone. Two kinds are
placed in opposite halves, which fixes one spatial relation (``left of``,
``right of``, ``above``, ``below``). The scene graph is stored with the item
(``item.meta["graph"]``), and five reference captions are generated from it in
varied sentence forms. Everything is deterministic given ``seed``.

:func:`perturb` makes SugarCrepe-style hard negatives from the graph: replace an
object, flip an attribute, swap a relation, swap the objects, change a count,
shuffle the words, add a visual word that is not in the image.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from analysis import cache
from analysis.data import tuxpaint
from analysis.data.base import Item, hash_split, make_dataset
from analysis.runtime import rng as make_rng

SIZE = 224
RELATIONS = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
NUMBERS = {1: "a", 2: "two", 3: "three", 4: "four"}
PERTURBATIONS = ("replace_object", "replace_attribute", "swap_relation", "swap_objects", "replace_count",
                 "shuffle_words", "add_visual_word")
CATEGORIES = ("animals", "food", "vehicles", "household", "plants", "clothes", "sports", "hobbies")
IRREGULAR = {"mouse": "mice", "sheep": "sheep", "fish": "fish", "deer": "deer", "goose": "geese",
             "person": "people", "child": "children", "tooth": "teeth", "foot": "feet", "moose": "moose"}
BACKGROUNDS = [(255, 255, 255), (235, 242, 250), (245, 240, 225), (228, 240, 228)]
GENERATOR_VERSION = 3  # bump when the generator changes: it is part of the cache key


def plural(noun: str) -> str:
    """English plural of a noun phrase's last word: box -> boxes, cherry -> cherries, mouse -> mice."""
    head, _, last = noun.rpartition(" ")
    if last in IRREGULAR:
        p = IRREGULAR[last]
    elif re.search(r"(s|x|z|ch|sh)$", last):
        p = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return f"{head} {p}".strip()


def noun_phrase(obj: dict, *, with_size: bool = True) -> str:
    """``{"name": "apple", "count": 2, "size": "small"}`` -> ``"two small apples"``."""
    name = obj["name"] if obj["count"] == 1 else plural(obj["name"])
    words = [NUMBERS[obj["count"]]] + ([obj["size"]] if with_size else []) + [name]
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def canonical(graph: dict) -> str:
    """The canonical caption: ``"<A> <relation> <B>"`` or ``"<A>"`` for one kind."""
    objs = graph["objects"]
    if len(objs) == 1:
        return noun_phrase(objs[0])
    rel = graph["relations"][0]["relation"]
    joiner = {"left of": "to the left of", "right of": "to the right of"}.get(rel, rel)
    return f"{noun_phrase(objs[0])} {joiner} {noun_phrase(objs[1])}"


def references(graph: dict) -> list[str]:
    """Five reference captions in varied sentence forms, all true of the graph."""
    objs = graph["objects"]
    a = objs[0]
    if len(objs) == 1:
        be = "is" if a["count"] == 1 else "are"
        return [canonical(graph), f"there {be} {noun_phrase(a)} in the picture",
                f"a picture of {noun_phrase(a, with_size=False)}", f"{noun_phrase(a)} on a plain background",
                f"this image shows {noun_phrase(a)}"]
    b = objs[1]
    rel = graph["relations"][0]["relation"]
    inv = RELATIONS[rel]
    inv_j = {"left of": "to the left of", "right of": "to the right of"}.get(inv, inv)
    be = "is" if a["count"] == 1 else "are"
    return [canonical(graph), f"{noun_phrase(b)} {inv_j} {noun_phrase(a)}",
            f"there {be} {noun_phrase(a)} {rel} {noun_phrase(b)}",
            f"a picture of {noun_phrase(a, with_size=False)} and {noun_phrase(b, with_size=False)}",
            f"{noun_phrase(a)} and {noun_phrase(b)}, the first {rel} the second"]


def visual_words(graph: dict) -> set[str]:
    """The object names in the graph (singular and plural word forms)."""
    out = set()
    for o in graph["objects"]:
        out |= set(o["name"].split()) | set(plural(o["name"]).split())
    return out


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


def perturb(graph: dict, kind: str, rng, pool_names: list[str]) -> str | None:
    """A hard-negative caption of the given ``kind`` (see :data:`PERTURBATIONS`), or ``None``
    when the kind does not apply (relations and swaps need two object kinds)."""
    g = json.loads(json.dumps(graph))
    objs = g["objects"]
    two = len(objs) == 2
    if kind == "replace_object":
        present = {o["name"] for o in objs}
        objs[0]["name"] = str(rng.choice([n for n in pool_names if n not in present]))
    elif kind == "replace_attribute":
        objs[0]["size"] = "small" if objs[0]["size"] == "big" else "big"
    elif kind == "replace_count":
        objs[0]["count"] = int(rng.choice([c for c in (1, 2, 3) if c != objs[0]["count"]]))
    elif kind == "swap_relation":
        if not two:
            return None
        g["relations"][0]["relation"] = RELATIONS[g["relations"][0]["relation"]]
    elif kind == "swap_objects":
        if not two or objs[0]["name"] == objs[1]["name"]:
            return None
        objs[0], objs[1] = objs[1], objs[0]
    elif kind == "shuffle_words":
        words = canonical(graph).split()
        for _ in range(10):
            order = rng.permutation(len(words))
            if list(order) != list(range(len(words))):
                return " ".join(words[i] for i in order)
        return None
    elif kind == "add_visual_word":
        present = {o["name"] for o in objs}
        extra = str(rng.choice([n for n in pool_names if n not in present]))
        return f"{canonical(graph)} and {noun_phrase({'name': extra, 'count': 1, 'size': 'small'}, with_size=False)}"
    else:
        raise ValueError(f"unknown perturbation {kind!r}; valid: {', '.join(PERTURBATIONS)}")
    return canonical(g)


def build_scenes(out: Path, n_scenes: int, seed: int) -> None:
    """Render ``n_scenes`` scenes into ``out`` with an ``index.json`` of graphs and captions."""
    stamps = tuxpaint.load(split="train")  # test/val stamps never appear in any scene: no leak into their retrieval
    pool = object_pool(stamps)
    paths = {p["id"]: p["path"] for p in pool}
    rng = make_rng(seed)
    index = []
    for i in range(n_scenes):
        graph = sample_graph(pool, rng)
        img = render(graph, paths, rng)
        name = f"scene_{i:05d}.png"
        img.save(out / name, optimize=False)
        index.append({"file": name, "graph": graph, "captions": references(graph)})
    (out / "index.json").write_text(json.dumps({"pool": [p["name"] for p in pool], "scenes": index}, indent=0))


def load(split: str | None = None, limit: int | None = None, n_scenes: int = 600, seed: int = 0):
    """The ``stamp-scenes`` dataset (rendered into the cache on first use)."""
    _, src = tuxpaint.source()  # provenance only: no need to decode every stamp here
    recipe = {"n_scenes": n_scenes, "seed": seed, "version": GENERATOR_VERSION, "stamps": src}
    folder = cache.entry("scenes", recipe, lambda out: build_scenes(out, n_scenes, seed))
    index = json.loads((folder / "index.json").read_text())
    items = [Item(id=s["file"], path=folder / s["file"], captions=s["captions"],
                  split=hash_split(f"scenes:{seed}:{s['file']}"),
                  meta={"graph": s["graph"], "n_objects": sum(o["count"] for o in s["graph"]["objects"])})
             for s in index["scenes"]]
    return make_dataset(
        "stamp-scenes", items, split=split, limit=limit, source="embedded",
        licence="GPL-2.0 (derived from the Tux Paint stamps)",
        origin=f"rendered here from Debian tuxpaint-stamps-default {src['version']} (seed {seed})",
        caption_source="generated from the scene graph (5 templates)",
        description="1-4 cut-outs of 1-2 object kinds composited with a known scene graph: objects, counts, "
                    "sizes and one spatial relation; references generated from the graph.",
        provenance={**src, "seed": seed, "n_scenes": n_scenes, "pool": index["pool"]})
