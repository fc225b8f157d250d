"""Grounding of captions against the known scene graph of a stamp scene, and the controlled edits of findings
F1 and F3 (issue 9, the captioning probe).

Pure functions over captions and scene graphs (the ``{"objects": [{"name", "count", "size"}], "relations": [...]}``
of :mod:`analysis.data.scene_text`). The caption's statements are read the way ``sg-f1`` reads them
(:func:`analysis.scene_parse.caption_tuples`; the graph's by :func:`analysis.scene_parse.graph_tuples`), and object
mentions the way CHAIR counts them (:func:`analysis.linguistics.chair`).

**Definitions** (per caption; :func:`grounding_table`):

* the **vocabulary** is the lemmatised head nouns of every object name that can occur (``objects``, e.g. the
  dataset's pool, plus the names in the graphs: :func:`analysis.linguistics.name_lemmas` ``heads_only=True``);
  a **mention** is a caption noun lemma in the vocabulary. It is **true** when it is a noun lemma of one of the
  scene's object names (``name_lemmas(..., heads_only=False)``: "hibiscus" is true of a "hibiscus flower"),
  **hallucinated** otherwise (exactly CHAIR's definition).
* **object precision** ``= #distinct true mentions / #distinct mentions`` (NaN when the caption mentions none);
  **object recall** ``= #scene object kinds with a noun lemma mentioned / #scene object kinds``.
* a **count** is *stated* for a true object when a number word or an indefinite article stands before its head
  noun (``("count", head, n)`` of ``caption_tuples`` whose head is a graph head); it is *correct* when ``n`` is
  the graph's count. A **size** is stated by ``big``/``small`` before a true object's head noun, correct when it
  is the graph's size. A **relation** is stated when ``left of``/``right of``/``above``/``below`` links two
  *different true* objects; it is correct when it is the graph's relation, read in either direction the right
  way round (``a left of b`` = ``b right of a``; ``caption_tuples`` and ``graph_tuples`` put both in one
  canonical direction). Relations involving a hallucinated object are not stated relations.
* a stated item is a distinct tuple of ``caption_tuples`` ("a zebra ... a zebra" states one count);
  every **rate is over stated items** and is NaN ("not stated") when the caption states none, never 0.

**Corpus rates** (:func:`summarise_grounding`) pool the items over captions (``Σ correct / Σ stated``, so a caption
stating two counts weighs twice) with 95% Wilson intervals (:func:`analysis.stats.wilson_interval`); CHAIR-i
``= #hallucinated mentions / #mentions`` (mentions counted with repetition) and CHAIR-s ``= #captions with a
hallucination / #captions``, as :func:`analysis.linguistics.chair` defines them.

**Edits** (F1): each edit changes the caption's own words so that one of its *true* statements becomes false, and
returns ``None`` when the caption makes no true statement of that kind (an edit of a wrong statement could make
it right): :func:`object_edit` (a true object's noun -> an absent pool object that shares no noun lemma with the
scene or the caption), :func:`relation_edit` (``left``<->``right``, ``above``<->``below`` when a true relation is
stated), :func:`count_edit` (a correctly stated count -> another count 1-3, noun and ``is``/``are`` agreeing),
:func:`size_edit` (a correct ``big``<->``small``). **Insertions** (F3, :func:`insert_visual_word`) append
``" and <noun phrase>"`` to the caption: a scene object not yet mentioned, with its true count ("correct"); an
absent pool object, noun-disjoint from the scene and the caption ("hallucinated"); or a non-visual noun from
:data:`NON_VISUAL` ("non-visual", each checked to fail :func:`analysis.wordnet.is_visual`). The hallucinated and
non-visual insertions share the ``and a(n) <noun>`` form; the correct one carries the object's true count ("and
two apples"), so it can be longer and plural: report insertion length as a covariate when comparing them.
Every edit is re-checked: it is returned only when it removed a true statement and added none.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from analysis.data.scene_text import count_word, noun_phrase, plural
from analysis.linguistics import name_lemmas, noun_lemmas, parse
from analysis.scene_parse import NUMBERS, SIZES, caption_tuples, graph_tuples

#: non-visual nouns for the F3 "non-visual" insertion (``" and an idea"``): abstract nouns, every one of which
#: fails :func:`analysis.wordnet.is_visual` (checked by the tests), of the length of a short object name
NON_VISUAL = ("idea", "reason", "plan", "feeling", "question", "moment", "memory", "dream")
EDITS = ("object", "relation", "count", "size")
INSERTIONS = ("correct", "hallucinated", "non-visual")
#: the edit kinds of :func:`edit_effects`, in order
EDIT_KINDS = EDITS + tuple(f"insert {k}" for k in INSERTIONS)
_RELATION_WORDS = {"left": "right", "right": "left", "above": "below", "below": "above"}
_NOT_OBJECTS = ("picture", "image", "photo", "background", "left", "right")  # as caption_tuples skips them
COUNTS = (1, 2, 3)  # the counts a stamp scene has (analysis.data.scenes.sample_graph)
#: the columns of :func:`grounding_table`
COLUMNS = ("caption", "has_graph", "mentioned", "hallucinated", "n_mentioned", "n_true_mentioned", "n_objects",
           "n_recalled", "object_precision", "object_recall", "chair_mentions", "chair_hallucinated",
           *(f"{x}{y}" for x in ("count", "size", "relation") for y in ("s_stated", "s_correct", "_correct")))


# ----------------------------------------------------------------------------- lemmas of names
@lru_cache(maxsize=None)
def _lemmas(name: str) -> frozenset[str]:
    """Every noun lemma of one object name (``name_lemmas([name], heads_only=False)``), cached per name."""
    return frozenset(name_lemmas([name], heads_only=False))


@lru_cache(maxsize=None)
def _head(name: str) -> str:
    """The head-noun lemma of one object name (``name_lemmas([name], heads_only=True)``), cached per name."""
    return next(iter(name_lemmas([name], heads_only=True)))


def _graph_key(graph: dict) -> tuple:
    """What :func:`analysis.scene_parse.graph_tuples` reads of a graph, hashable."""
    return (tuple((o["name"], int(o["count"]), o["size"]) for o in graph["objects"]),
            tuple((r["subject"], r["relation"], r["object"]) for r in graph.get("relations", [])[:1]))


@lru_cache(maxsize=4096)
def _graph_tuples_of(key: tuple) -> frozenset:
    objs, rels = key
    return frozenset(graph_tuples({"objects": [{"name": n, "count": c, "size": s} for n, c, s in objs],
                                   "relations": [{"subject": a, "relation": r, "object": b} for a, r, b in rels]}))


def _gt(graph: dict) -> frozenset:
    """``graph_tuples(graph)``, cached by the graph's objects and relation (it parses every name)."""
    return _graph_tuples_of(_graph_key(graph))


@lru_cache(maxsize=8192)
def _ct(caption: str) -> frozenset:
    """``caption_tuples(caption)``, cached by caption (probe captions repeat)."""
    return frozenset(caption_tuples(caption))


def _names(graph: dict) -> list[str]:
    return [o["name"] for o in graph["objects"]]


def _scene_lemmas(graph: dict) -> frozenset[str]:
    return frozenset().union(*(_lemmas(n) for n in _names(graph)))


# ----------------------------------------------------------------------------- the grounding table
def _nan_rate(k: int, n: int) -> float:
    return k / n if n else math.nan


def grounding_table(captions: Sequence[str], graphs: Sequence[dict | None],
                    objects: Sequence[str] = (), *, progress: bool = False) -> "pd.DataFrame":
    """One row per caption with its grounding against its scene graph (definitions in the module docstring).

    ``objects``: every object name that can occur (pass the dataset's pool, ``ds.provenance["pool"]``); the
    graphs' own names are always added, so without it a hallucinated object is recognised only if it is in some
    other graph given. A ``None`` graph (an image with no scene graph) gives a row with ``has_graph`` False and
    NaN rates. Columns: ``caption, has_graph, mentioned`` (distinct mentions in order), ``hallucinated``,
    ``n_mentioned, n_true_mentioned, n_objects, n_recalled, object_precision, object_recall, chair_mentions,
    chair_hallucinated`` (CHAIR's counts, with repetition), and ``<x>s_stated, <x>s_correct, <x>_correct`` for
    ``x`` in count, size, relation (the rate NaN when nothing is stated).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    captions = list(captions)
    if len(captions) != len(graphs):
        raise ValueError(f"{len(captions)} captions but {len(graphs)} scene graphs")
    names = list(dict.fromkeys([*objects, *(n for g in graphs if g for n in _names(g))]))
    vocab = name_lemmas(names, heads_only=True) if names else set()
    rows = []
    for caption, doc, graph in tqdm(zip(captions, parse(captions), graphs), total=len(captions),
                                    desc="grounding", unit="caption", disable=not progress, leave=False):
        mine = [lem for lem in noun_lemmas(doc) if lem in vocab]  # CHAIR's mentions, with repetition
        mentioned = list(dict.fromkeys(mine))
        row = {"caption": caption, "has_graph": graph is not None, "mentioned": mentioned}
        if graph is None:
            rows.append({**row, "hallucinated": [], "n_mentioned": len(mentioned), "n_true_mentioned": math.nan,
                         "n_objects": 0, "n_recalled": 0, "object_precision": math.nan, "object_recall": math.nan,
                         "chair_mentions": 0, "chair_hallucinated": 0,
                         **{f"{x}s_stated": 0 for x in ("count", "size", "relation")},
                         **{f"{x}s_correct": 0 for x in ("count", "size", "relation")},
                         **{f"{x}_correct": math.nan for x in ("count", "size", "relation")}})
            continue
        present = _scene_lemmas(graph)
        true_m = [m for m in mentioned if m in present]
        recalled = [n for n in _names(graph) if _lemmas(n) & set(mentioned)]
        ct, gt = _ct(caption), _gt(graph)
        heads = {t[1] for t in gt if t[0] == "object"}
        stated = {"count": {t for t in ct if t[0] == "count" and t[1] in heads},
                  "size": {t for t in ct if t[0] == "size" and t[1] in heads},
                  "relation": {t for t in ct if t[0] == "relation" and t[1] in heads and t[3] in heads
                               and t[1] != t[3]}}
        row |= {"hallucinated": [m for m in mentioned if m not in present], "n_mentioned": len(mentioned),
                "n_true_mentioned": len(true_m), "n_objects": len(graph["objects"]), "n_recalled": len(recalled),
                "object_precision": _nan_rate(len(true_m), len(mentioned)),
                "object_recall": _nan_rate(len(recalled), len(graph["objects"])),
                "chair_mentions": len(mine), "chair_hallucinated": sum(m not in present for m in mine)}
        for x, items in stated.items():
            ok = len(items & gt)
            row |= {f"{x}s_stated": len(items), f"{x}s_correct": ok, f"{x}_correct": _nan_rate(ok, len(items))}
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summarise_grounding(table: "pd.DataFrame", *, confidence: float = 0.95) -> dict:
    """Corpus rates of a :func:`grounding_table` (rows with a graph only), each
    ``{"value", "low", "high", "successes", "n"}`` with a Wilson interval over the stated items (value and bounds
    NaN when ``n`` is 0):

    * ``object_precision`` = Σ true distinct mentions / Σ distinct mentions; ``object_recall`` = Σ recalled kinds /
      Σ scene kinds;
    * ``count_correct``, ``size_correct``, ``relation_correct`` = Σ correct / Σ stated;
    * ``chair_i`` = Σ hallucinated mentions / Σ mentions (NaN, not 0, when nothing is mentioned: unlike
      :func:`analysis.linguistics.chair`, which says 0); ``chair_s`` = #captions with a hallucination / #captions.

    Also ``captions`` (with a graph) and ``captions_without_graph``.
    """
    from analysis.stats import wilson_interval

    t = table[table["has_graph"].astype(bool)]

    def rate(k, n):
        k, n = int(k), int(n)
        lo, hi = wilson_interval(k, n, confidence=confidence)
        return {"value": k / n if n else math.nan, "low": lo, "high": hi, "successes": k, "n": n}

    out = {"captions": len(t), "captions_without_graph": int(len(table) - len(t)),
           "object_precision": rate(t["n_true_mentioned"].sum(), t["n_mentioned"].sum()),
           "object_recall": rate(t["n_recalled"].sum(), t["n_objects"].sum())}
    for x in ("count", "size", "relation"):
        out[f"{x}_correct"] = rate(t[f"{x}s_correct"].sum(), t[f"{x}s_stated"].sum())
    out["chair_i"] = rate(t["chair_hallucinated"].sum(), t["chair_mentions"].sum())
    out["chair_s"] = rate((t["chair_hallucinated"] > 0).sum(), len(t))
    return out


# ----------------------------------------------------------------------------- token-level helpers of the edits
def _doc(caption: str):
    return parse([caption])[0]


def _noun_heads(doc) -> list:
    """The object-noun tokens ``caption_tuples`` reads: a NOUN/PROPN not followed by another (the last noun of a
    compound), outside ``left of``/``right of``, not a word for the picture or a side."""
    toks, skip, out = list(doc), set(), []
    for i, t in enumerate(toks):
        if t.lower_ in ("left", "right") and i + 1 < len(toks) and toks[i + 1].lower_ == "of":
            skip |= {i, i + 1}
    for i, t in enumerate(toks):
        if i in skip or t.pos_ not in ("NOUN", "PROPN"):
            continue
        if i + 1 < len(toks) and toks[i + 1].pos_ in ("NOUN", "PROPN"):
            continue
        if t.lemma_.lower() not in _NOT_OBJECTS:
            out.append(t)
    return out


def _mods(t) -> list:
    """The tokens of a noun's phrase before it (``caption_tuples``'s modifiers)."""
    return list(t.doc[t.left_edge.i:t.i])


def _case(new: str, old: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _article(word: str) -> str:
    """``"a"`` or ``"an"`` for the word that follows (inflect, via :func:`analysis.data.scene_text.noun_phrase`)."""
    return noun_phrase({"name": word, "count": 1}, with_size=False).split()[0]


def _join(doc, texts: dict[int, str | None]) -> str:
    """The caption's tokens with ``texts`` replacing some (``None`` drops a token and the space after it)."""
    return "".join(texts.get(t.i, t.text) + t.whitespace_ for t in doc if texts.get(t.i, "") is not None)


def _graph_obj(graph: dict) -> dict[str, dict]:
    """Graph objects by head-noun lemma."""
    return {_head(o["name"]): o for o in graph["objects"]}


def _absent_names(graph: dict, pool: Sequence[str], avoid: set[str]) -> list[str]:
    """Pool names sharing no noun lemma with the scene's names nor with ``avoid`` (the caption's noun lemmas)."""
    scene = _scene_lemmas(graph) | avoid
    return [n for n in dict.fromkeys(pool) if n.strip() and not (_lemmas(n) & scene)]


# ----------------------------------------------------------------------------- F1 edits
def object_edit(caption: str, graph: dict, pool: Sequence[str], rng) -> str | None:
    """Replace a true object's noun (every occurrence of it, the whole name when the caption spells it out) with
    an absent pool object that shares no noun lemma with the scene or the caption, in the same number, with the
    article before it fixed (a/an); the object and the replacement drawn with ``rng``. ``None`` when the caption
    mentions no true object; a pool with no usable name is refused.

    >>> from analysis.runtime import rng
    >>> G = {"objects": [{"name": "apple", "count": 2, "size": "big"}], "relations": []}
    >>> object_edit("an apple and two apples", G, ["red apple", "owl"], rng(0))
    'an owl and two owls'
    """
    doc = _doc(caption)
    objs = _graph_obj(graph)
    hits = [t for t in _noun_heads(doc) if t.lemma_.lower() in objs]
    if not hits:
        return None
    kinds = list(dict.fromkeys(t.lemma_.lower() for t in hits))
    head = kinds[int(rng.integers(len(kinds)))]
    choices = _absent_names(graph, pool, set(noun_lemmas(doc)))
    if not choices:
        raise ValueError(f"no name of the pool ({len(pool)} names) shares no noun with the scene "
                         f"{_names(graph)} and the caption {caption!r}; pass a larger pool")
    new = choices[int(rng.integers(len(choices)))]
    words = objs[head]["name"].lower().split()
    texts: dict[int, str] = {}
    for t in hits:
        if t.lemma_.lower() != head:
            continue
        start = t.i - (len(words) - 1)
        if start < 0 or [x.lower_ for x in doc[start:t.i]] != words[:-1]:
            start = t.i  # only the head noun is in the caption
        text = plural(new) if t.tag_ in ("NNS", "NNPS") else new
        for k in range(start, t.i):
            texts[k] = None
        texts[t.i] = _case(text, doc[start].text)
        if start > 0 and doc[start - 1].lower_ in ("a", "an"):
            texts[start - 1] = _case(_article(text), doc[start - 1].text)
    return _join(doc, texts)


def relation_edit(caption: str, graph: dict, pool: Sequence[str] = (), rng=None) -> str | None:
    """Swap every relation word (``left``<->``right`` before ``of``, ``above``<->``below``) when the caption states
    the graph's relation between two true objects correctly; ``None`` otherwise. ``pool`` and ``rng`` are not
    used (the same signature as the other edits).

    >>> G = {"objects": [{"name": "apple", "count": 2, "size": "big"}, {"name": "zebra", "count": 1,
    ...      "size": "small"}], "relations": [{"subject": "apple", "relation": "left of", "object": "zebra"}]}
    >>> relation_edit("two apples to the left of a zebra", G)
    'two apples to the right of a zebra'
    >>> relation_edit("a zebra to the left of two apples", G) is None  # stated wrongly: nothing true to edit
    True
    """
    if not any(t[0] == "relation" for t in _ct(caption) & _gt(graph)):
        return None
    doc = _doc(caption)
    toks = list(doc)
    texts = {}
    for i, t in enumerate(toks):
        if t.lower_ in ("above", "below") or (t.lower_ in ("left", "right") and i + 1 < len(toks)
                                               and toks[i + 1].lower_ == "of"):
            texts[i] = _case(_RELATION_WORDS[t.lower_], t.text)
    return _join(doc, texts)


def _stated(doc, graph: dict, key: str) -> list[tuple]:
    """``(noun token, modifier token, stated value)`` of the correctly stated counts (``key="count"``) or sizes of
    true objects, as ``caption_tuples`` reads them (the first number word / size word of the noun's phrase)."""
    objs, out = _graph_obj(graph), []
    for t in _noun_heads(doc):
        head = t.lemma_.lower()
        if head not in objs:
            continue
        words = NUMBERS if key == "count" else SIZES
        mod = next((m for m in _mods(t) if m.lower_ in words), None)
        if mod is None:
            continue
        value = NUMBERS[mod.lower_] if key == "count" else mod.lower_
        if value == (int(objs[head]["count"]) if key == "count" else objs[head]["size"]):
            out.append((t, mod, value))
    return out


def count_edit(caption: str, graph: dict, pool: Sequence[str], rng) -> str | None:
    """Change one correctly stated count (drawn with ``rng``) to another count in 1-3 (drawn with ``rng``): the
    number word or article becomes ``count_word`` (``a``/``an`` for 1), the noun singular or plural to agree, and
    an ``is``/``are`` just before it too. ``None`` when no count of a true object is stated correctly.

    >>> from analysis.runtime import rng
    >>> G = {"objects": [{"name": "apple", "count": 2, "size": "small"}], "relations": []}
    >>> sorted({count_edit("there are two apples", G, [], rng(s)) for s in range(8)})
    ['there are three apples', 'there is an apple']
    """
    doc = _doc(caption)
    stated = _stated(doc, graph, "count")
    if not stated:
        return None
    noun, det, old = stated[int(rng.integers(len(stated)))]
    choices = [c for c in COUNTS if c != old]
    new = int(choices[int(rng.integers(len(choices)))])
    texts = {}
    if old == 1 and new > 1:
        texts[noun.i] = plural(noun.text)
    elif old > 1 and new == 1:
        texts[noun.i] = noun.lemma_
    following = texts.get(det.i + 1, doc[det.i + 1].text)
    texts[det.i] = _case(_article(following) if new == 1 else count_word(new), det.text)
    if det.i > 0 and doc[det.i - 1].lower_ in ("is", "are"):
        texts[det.i - 1] = _case("is" if new == 1 else "are", doc[det.i - 1].text)
    return _join(doc, texts)


def size_edit(caption: str, graph: dict, pool: Sequence[str], rng) -> str | None:
    """Flip one correctly stated size word (``big``<->``small``) of a true object, drawn with ``rng``; ``None`` when
    the caption states no size correctly.

    >>> from analysis.runtime import rng
    >>> G = {"objects": [{"name": "apple", "count": 2, "size": "big"}], "relations": []}
    >>> size_edit("two big apples", G, [], rng(0))
    'two small apples'
    >>> size_edit("two small apples", G, [], rng(0)) is None
    True
    """
    doc = _doc(caption)
    stated = _stated(doc, graph, "size")
    if not stated:
        return None
    _, mod, old = stated[int(rng.integers(len(stated)))]
    return _join(doc, {mod.i: _case("small" if old == "big" else "big", mod.text)})


EDIT_FUNCTIONS: dict[str, Callable] = {"object": object_edit, "relation": relation_edit, "count": count_edit,
                                       "size": size_edit}


def checked_edit(kind: str, caption: str, graph: dict, pool: Sequence[str], rng) -> str | None:
    """``EDIT_FUNCTIONS[kind]``, kept only when the edit made the caption strictly less true: its true tuples
    after the edit are a proper subset of those before (a true statement removed, none added). An edit that
    swaps every relation word of a caption with one right and one wrong relation keeps its correctness, and
    is dropped (``None``).

    >>> G = {"objects": [{"name": "apple", "count": 2, "size": "big"}, {"name": "zebra", "count": 1,
    ...      "size": "small"}], "relations": [{"subject": "apple", "relation": "left of", "object": "zebra"}]}
    >>> checked_edit("relation", "two apples to the left of a zebra", G, [], None)
    'two apples to the right of a zebra'
    """
    edited = EDIT_FUNCTIONS[kind](caption, graph, pool, rng)
    if edited is None:
        return None
    truth = _gt(graph)
    before, after = _ct(caption) & truth, _ct(edited) & truth
    return edited if after < before else None


# ----------------------------------------------------------------------------- F3 insertions
def _append(caption: str, phrase: str) -> str:
    """``caption + " and " + phrase``, before a final full stop / ! / ? if there is one."""
    body = caption.rstrip()
    end = ""
    while body and body[-1] in ".!?":
        end, body = body[-1] + end, body[:-1]
    return f"{body.rstrip()} and {phrase}{end}"


def insert_visual_word(caption: str, graph: dict, kind: str, rng, pool: Sequence[str] = ()) -> str | None:
    """Append ``" and <noun phrase>"`` (before a final full stop):

    * ``"correct"``: a scene object none of whose noun lemmas the caption has, with its true count
      (``"... and two cats"``); ``None`` when every scene object is mentioned;
    * ``"hallucinated"``: ``"a(n) <name>"`` of a ``pool`` name sharing no noun lemma with the scene or the caption;
    * ``"non-visual"``: ``"a(n) <noun>"`` of a noun of :data:`NON_VISUAL`.

    The object or noun is drawn with ``rng``.

    >>> from analysis.runtime import rng
    >>> G = {"objects": [{"name": "apple", "count": 2, "size": "big"}, {"name": "zebra", "count": 1,
    ...      "size": "small"}], "relations": [{"subject": "apple", "relation": "left of", "object": "zebra"}]}
    >>> insert_visual_word("a zebra.", G, "correct", rng(0))
    'a zebra and two apples.'
    >>> insert_visual_word("a zebra", G, "hallucinated", rng(0), pool=["zebra", "owl"])
    'a zebra and an owl'
    """
    if kind not in INSERTIONS:
        raise ValueError(f"unknown insertion {kind!r}; valid: {', '.join(INSERTIONS)}")
    if kind == "non-visual":
        noun = NON_VISUAL[int(rng.integers(len(NON_VISUAL)))]
        return _append(caption, f"{_article(noun)} {noun}")
    said = set(noun_lemmas(_doc(caption)))
    if kind == "correct":
        missing = [o for o in graph["objects"] if not (_lemmas(o["name"]) & said)]
        if not missing:
            return None
        o = missing[int(rng.integers(len(missing)))]
        return _append(caption, noun_phrase({"name": o["name"], "count": int(o["count"])}, with_size=False))
    if not pool:
        raise ValueError("a hallucinated insertion needs the pool of object names (pool=ds.provenance['pool'])")
    choices = _absent_names(graph, pool, said)
    if not choices:
        raise ValueError(f"no name of the pool ({len(pool)} names) shares no noun with the scene "
                         f"{_names(graph)} and the caption {caption!r}; pass a larger pool")
    name = choices[int(rng.integers(len(choices)))]
    return _append(caption, noun_phrase({"name": name, "count": 1}, with_size=False))


# ----------------------------------------------------------------------------- effects of the edits on a score
def edit_effects(score_fn: Callable[[np.ndarray, list[str]], np.ndarray], captions: Sequence[str],
                 graphs: Sequence[dict | None], pool: Sequence[str], seed: int,
                 images: Sequence[int] | None = None, *, progress: bool = False) -> "pd.DataFrame":
    """Per caption and edit kind (:data:`EDIT_KINDS`: the four F1 edits, then the three F3 insertions), the score
    change ``delta = score(original) − score(edited)`` (positive: the scorer prefers the original).

    ``score_fn(image_index, captions) -> np.ndarray`` scores each caption against its image, as a reward does;
    caption ``i`` belongs to image ``images[i]`` (default ``i``). Originals are scored in one call and every edited
    caption in a second. Each (caption, kind) draws from its own generator (``analysis.runtime.rng(seed)``
    spawned), so the edits do not depend on which other edits apply. Rows: ``index, image, kind, caption, edited``
    (None when the kind does not apply), ``original, score_edited, delta`` (NaN when it does not apply).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from analysis.runtime import rng as make_rng

    captions = list(captions)
    if len(captions) != len(graphs):
        raise ValueError(f"{len(captions)} captions but {len(graphs)} scene graphs")
    images = np.arange(len(captions)) if images is None else np.asarray(images)
    if len(images) != len(captions):
        raise ValueError(f"{len(captions)} captions but {len(images)} image indices")
    gens = make_rng(seed).spawn(len(captions) * len(EDIT_KINDS)) if captions else []
    rows = []
    for i, (c, g) in tqdm(enumerate(zip(captions, graphs)), total=len(captions), desc="edits", unit="caption",
                          disable=not progress, leave=False):
        for k, kind in enumerate(EDIT_KINDS):
            r = gens[i * len(EDIT_KINDS) + k]
            if g is None:
                edited = None
            elif kind in EDIT_FUNCTIONS:
                edited = checked_edit(kind, c, g, pool, r)
            else:
                edited = insert_visual_word(c, g, kind.removeprefix("insert "), r, pool=pool)
            rows.append({"index": i, "image": images[i], "kind": kind, "caption": c, "edited": edited})
    df = pd.DataFrame(rows)
    original = np.asarray(score_fn(images, captions), dtype=float) if captions else np.zeros(0)
    if original.shape != (len(captions),):
        raise ValueError(f"score_fn returned shape {original.shape} for {len(captions)} captions")
    df["original"] = original[df["index"].to_numpy()] if len(df) else []
    df["score_edited"] = math.nan
    todo = df.index[df["edited"].notna()]
    if len(todo):
        scores = np.asarray(score_fn(images[df.loc[todo, "index"].to_numpy()], list(df.loc[todo, "edited"])),
                            dtype=float)
        if scores.shape != (len(todo),):
            raise ValueError(f"score_fn returned shape {scores.shape} for {len(todo)} edited captions")
        df.loc[todo, "score_edited"] = scores
    df["delta"] = df["original"] - df["score_edited"]
    return df


def visual_word_correlation(counts, scores) -> tuple[float, float, int]:
    """Spearman's rank correlation between visual-word counts and scores over the caption pairs where both are
    finite: ``(rho, p, n)`` from :func:`scipy.stats.spearmanr` (two-sided p). Ties (many captions share a count)
    get the average of their ranks (scipy's default), i.e. rho is Pearson's r of the mid-ranks; rho and p are NaN
    when fewer than 3 pairs remain or either side is constant.

    >>> visual_word_correlation([1, 2, 3, 4], [10, 20, 30, 40])[0]
    1.0
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(counts, dtype=float), np.asarray(scores, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"counts {x.shape} and scores {y.shape} must be 1-d and the same length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(len(x))
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, n
    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue), n
