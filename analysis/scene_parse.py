"""Scene-graph tuples from captions, and ``sg-f1 (SPICE-style stand-in)``.

SPICE cannot run offline (it downloads Stanford CoreNLP), so it is not faked. On stamp scenes the true
scene graph is known, and this module scores a caption the way SPICE does, by the F1 of its tuples
against the graph's, with the caption's tuples read from spaCy's parse instead of SPICE's:

* ``("object", o)`` for every object kind (the lemma of its head noun);
* ``("count", o, n)`` from a number word or an indefinite article (``a``/``an`` = 1) before the noun;
* ``("size", o, s)`` from the adjective ``big`` or ``small`` before the noun;
* ``("relation", a, r, b)`` from ``left of``, ``right of``, ``above``, ``below`` between two object
  mentions (``"… , the first above the second"`` refers back to the first two mentions); a relation and
  its inverse are one tuple (``a left of b`` = ``b right of a``).

``sg-f1 = 2PR / (P + R)`` with ``P = |C ∩ G| / |C|`` and ``R = |C ∩ G| / |G|`` over the caption's tuples ``C``
and the graph's ``G`` (0 when either is empty). It knows only this study's vocabulary of sizes, counts and
relations; it is a stand-in for SPICE on stamp scenes, not SPICE.
"""
from __future__ import annotations

from typing import Sequence

from analysis.linguistics import parse

NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
SIZES = ("big", "small")
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _head(name: str) -> str:
    docs = parse([name])
    nouns = [t.lemma_.lower() for t in docs[0] if t.pos_ in ("NOUN", "PROPN")]
    return nouns[-1] if nouns else name.lower().split()[-1]


def relation_tuple(a: str, rel: str, b: str) -> tuple:
    """``("relation", a, rel, b)`` in a canonical direction (the subject sorts first), so that a relation and
    its inverse give one tuple."""
    return ("relation", a, rel, b) if a <= b else ("relation", b, INVERSE[rel], a)


def graph_tuples(graph: dict) -> set[tuple]:
    """The tuples of a stamp-scene graph (``objects`` with ``name``, ``count``, ``size``; ``relations``)."""
    out, heads = set(), {}
    for o in graph["objects"]:
        h = heads.setdefault(o["name"], _head(o["name"]))
        out |= {("object", h), ("count", h, int(o["count"])), ("size", h, o["size"])}
    for r in graph.get("relations", [])[:1]:  # the second is the inverse of the first
        out.add(relation_tuple(heads.get(r["subject"]) or _head(r["subject"]), r["relation"],
                               heads.get(r["object"]) or _head(r["object"])))
    return out


def caption_tuples(caption: str) -> set[tuple]:
    """The tuples read from a caption's parse (see the module docstring)."""
    doc = parse([caption])[0]
    out, mentions, events = set(), [], []  # events: ("obj", head) / ("rel", relation) / ("ref", index)
    toks = list(doc)
    i = 0
    while i < len(toks):
        t = toks[i]
        low = t.lower_
        two = " ".join(x.lower_ for x in toks[i:i + 2])
        if two in ("left of", "right of"):
            events.append(("rel", two))
            i += 2
            continue
        if low in ("above", "below"):
            events.append(("rel", low))
        elif low in ("first", "second") and i > 0 and toks[i - 1].lower_ == "the":
            events.append(("ref", 0 if low == "first" else 1))
        elif t.pos_ in ("NOUN", "PROPN") and (i + 1 == len(toks) or toks[i + 1].pos_ not in ("NOUN", "PROPN")):
            head = t.lemma_.lower()
            if head not in ("picture", "image", "photo", "background", "left", "right"):
                mods = [x.lower_ for x in doc[t.left_edge.i:t.i]]  # the words of its phrase before it
                out.add(("object", head))
                count = next((NUMBERS[m] for m in mods if m in NUMBERS), None)
                if count is not None:
                    out.add(("count", head, count))
                size = next((m for m in mods if m in SIZES), None)
                if size:
                    out.add(("size", head, size))
                mentions.append(head)
                events.append(("obj", head))
        i += 1
    # a relation links the nearest object (or back-reference) before it with the nearest one after it
    def resolve(ev):
        if ev[0] == "obj":
            return ev[1]
        return mentions[ev[1]] if ev[0] == "ref" and ev[1] < len(mentions) else None

    for k, ev in enumerate(events):
        if ev[0] != "rel":
            continue
        before = next((resolve(e) for e in reversed(events[:k]) if e[0] in ("obj", "ref")), None)
        after = next((resolve(e) for e in events[k + 1:] if e[0] in ("obj", "ref")), None)
        if before and after and before != after:
            out.add(relation_tuple(before, ev[1], after))
    return out


def tuple_f1(candidate: set, truth: set) -> float:
    """``2PR / (P + R)`` with ``P = |C ∩ G| / |C|``, ``R = |C ∩ G| / |G|``; 0 when either set is empty.

    >>> tuple_f1({("object", "zebra"), ("object", "cat")}, {("object", "zebra")})
    0.6666666666666666
    """
    hit = len(candidate & truth)
    if not candidate or not truth or not hit:
        return 0.0
    p, r = hit / len(candidate), hit / len(truth)
    return 2 * p * r / (p + r)


def sg_f1(captions: Sequence[str], graphs: Sequence[dict]) -> list[float]:
    """Per-caption sg-f1 against each caption's scene graph."""
    if len(captions) != len(graphs):
        raise ValueError(f"{len(captions)} captions but {len(graphs)} scene graphs")
    return [tuple_f1(caption_tuples(c), graph_tuples(g)) for c, g in zip(captions, graphs)]
