"""Caption text from a scene graph: plurals, noun phrases, the canonical caption, references.

A graph is ``{"objects": [{"name", "count", "size", ...}], "relations": [{"subject",
"relation", "object"}, ...], ...}`` with 1 or 2 object kinds and, for two kinds, the
relation of the first to the second plus its inverse. English morphology (plurals,
"a"/"an", number words) comes from :mod:`inflect`; the sentence templates are ours.
These functions are re-exported by :mod:`analysis.data.scenes`.
"""
from __future__ import annotations

import functools

RELATIONS = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
JOINERS = {"left of": "to the left of", "right of": "to the right of"}  # relation -> words in a caption


@functools.cache
def _engine():
    import inflect

    return inflect.engine()


def plural(noun: str) -> str:
    """English plural of a noun phrase (``inflect``'s ``plural_noun``, which inflects the head
    noun): box -> boxes, cherry -> cherries, mouse -> mice, red apple -> red apples."""
    return _engine().plural_noun(noun)


def count_word(count: int) -> str:
    """``1`` -> ``"a"``; otherwise the number in words (``inflect``): ``2`` -> ``"two"``."""
    return "a" if count == 1 else _engine().number_to_words(count)


def noun_phrase(obj: dict, *, with_size: bool = True) -> str:
    """``{"name": "apple", "count": 2, "size": "small"}`` -> ``"two small apples"``;
    the indefinite article follows the next word (``inflect``'s ``a``): "an apple", "a big apple"."""
    name = obj["name"] if obj["count"] == 1 else plural(obj["name"])
    rest = " ".join(([obj["size"]] if with_size else []) + [name])
    return _engine().a(rest) if obj["count"] == 1 else f"{count_word(obj['count'])} {rest}"


def canonical(graph: dict) -> str:
    """The canonical caption: ``"<A> <relation> <B>"`` or ``"<A>"`` for one kind."""
    objs = graph["objects"]
    if len(objs) == 1:
        return noun_phrase(objs[0])
    rel = graph["relations"][0]["relation"]
    return f"{noun_phrase(objs[0])} {JOINERS.get(rel, rel)} {noun_phrase(objs[1])}"


def references(graph: dict) -> list[str]:
    """Five reference captions in varied sentence forms, all true of the graph."""
    objs = graph["objects"]
    a = objs[0]
    be = "is" if a["count"] == 1 else "are"
    if len(objs) == 1:
        return [canonical(graph), f"there {be} {noun_phrase(a)} in the picture",
                f"a picture of {noun_phrase(a, with_size=False)}", f"{noun_phrase(a)} on a plain background",
                f"this image shows {noun_phrase(a)}"]
    b = objs[1]
    rel = graph["relations"][0]["relation"]
    inv = RELATIONS[rel]
    return [canonical(graph), f"{noun_phrase(b)} {JOINERS.get(inv, inv)} {noun_phrase(a)}",
            f"there {be} {noun_phrase(a)} {rel} {noun_phrase(b)}",
            f"a picture of {noun_phrase(a, with_size=False)} and {noun_phrase(b, with_size=False)}",
            f"{noun_phrase(a)} and {noun_phrase(b)}, the first {rel} the second"]


def visual_words(graph: dict) -> set[str]:
    """The object names in the graph (singular and plural word forms)."""
    out = set()
    for o in graph["objects"]:
        out |= set(o["name"].split()) | set(plural(o["name"]).split())
    return out


def object_set(graph: dict) -> tuple[str, ...]:
    """The sorted object kind names of a graph: ``("apple", "zebra")``; scenes are split by it."""
    return tuple(sorted({o["name"] for o in graph["objects"]}))
