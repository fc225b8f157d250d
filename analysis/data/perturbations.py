"""SugarCrepe-style hard negatives made from a scene graph (Hsieh et al. 2023).

Each kind edits one thing in the graph and writes the canonical caption of the edited
graph, so the negative differs from the truth in exactly that thing:

* ``replace_object``: the first object kind becomes another name from the pool;
* ``replace_attribute``: the first kind's size flips (big <-> small);
* ``swap_relation``: the relation becomes its inverse (left of <-> right of, above <-> below);
* ``swap_objects``: the two kinds trade places in the sentence;
* ``replace_count``: the first kind's count changes (1-3);
* ``shuffle_words``: the words of the canonical caption in another order;
* ``add_visual_word``: the canonical caption plus ``"and a <name>"`` of an object not in the image.

Relations and swaps need two object kinds; :func:`perturb` returns ``None`` where a kind
does not apply. Used by the scorer chapter (zero-shot test) and the ``+neg`` ablations.
"""
from __future__ import annotations

import json

from analysis.data.scene_text import RELATIONS, canonical, noun_phrase

PERTURBATIONS = ("replace_object", "replace_attribute", "swap_relation", "swap_objects", "replace_count",
                 "shuffle_words", "add_visual_word")


def _absent(graph: dict, pool_names: list[str], rng) -> str:
    """A pool name that is not an object of ``graph``, drawn with ``rng``."""
    present = {o["name"] for o in graph["objects"]}
    choices = [n for n in pool_names if n not in present]
    if not choices:
        raise ValueError(f"every name of the replacement pool ({len(pool_names)} names) is in the scene; "
                         "pass a pool with names that are not in it")
    return str(rng.choice(choices))


def perturb(graph: dict, kind: str, rng, pool_names: list[str]) -> str | None:
    """A hard-negative caption of the given ``kind`` (see :data:`PERTURBATIONS`), or ``None``
    when the kind does not apply (relations and swaps need two object kinds). ``pool_names``
    are the names ``replace_object`` and ``add_visual_word`` draw from; ``rng`` is a NumPy generator."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; valid: {', '.join(PERTURBATIONS)}")
    g = json.loads(json.dumps(graph))
    objs = g["objects"]
    two = len(objs) == 2
    if kind == "replace_object":
        objs[0]["name"] = _absent(graph, pool_names, rng)
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
        extra = _absent(graph, pool_names, rng)
        return f"{canonical(graph)} and {noun_phrase({'name': extra, 'count': 1, 'size': 'small'}, with_size=False)}"
    return canonical(g)
