"""Rule-made judgement sets on the embedded data: caption judgements **made by a rule, not by people**.

They let the judgement-correlation harness (:mod:`analysis.correlation`) run on data shipped with the
study. A rule says which caption of an image is better; no person rated anything, so these are never
"human judgements", and every frame, row and registry entry says ``rule-made``. Both sets use the
**held-out test split only**, so no candidate is a training caption of a stand-in scorer.

``scene-ladder`` (the ``stamp-scenes`` test scenes, whose scene graph is known)
    Per scene, four candidates on an ordinal ladder, the judgement being the level:

    * **4**: a held-out true caption, the canonical caption of the scene graph (the first reference). It is
      removed from the references of **every** row of that scene, so no candidate is among its own
      references and all four rungs are scored against the same four remaining references.
    * **3**: a count, size or relation corruption of that true caption (a seeded choice among
      ``replace_count``, ``replace_attribute`` and, with two object kinds, ``swap_relation`` of
      :func:`analysis.data.perturbations.perturb`): one fact wrong.
    * **2**: an object swap: the first object replaced by a pool name that shares no noun with the scene's
      objects (the *Measures* chapter's rung, :func:`analysis.measures.ladder_captions`), redrawn among the
      other such names where it is verbatim a ``stamp-scenes`` training caption (5 of 66 scenes at seed 0,
      one-kind scenes whose swap lands on a training graph).
    * **1**: another image's caption: the true caption of another test scene whose object names share no
      noun with this scene's (a seeded draw, also :func:`analysis.measures.ladder_captions`).

    Levels 4, 3 and 2 derive from the scene's own (test) graph; level 1 from another test scene's.
    The four rows of a scene share their references and many scenes share each level, so the judgement has
    ties by design: the harness uses Kendall τb.

``stamp-match`` (the ``tuxpaint-stamps`` test stamps)
    Per stamp, its own human-written description (judgement 1) and ``k`` descriptions of other test stamps
    (judgement 0) whose nouns differ from its own (a seeded draw). The descriptions are human-written, the
    judgement (own vs another's) is the rule's. A stamp has **one** description, the positive candidate, so
    once the candidate is left out no reference remains: ``references`` is empty on every row and the
    reference-based metrics (BLEU, METEOR, ROUGE-L, CIDEr-D, RefCLIP-S, RefaCLIP-S) are not applicable here
    (the harness reports them as n/a with ``attrs["references_note"]``); image-based metrics (CLIP-S,
    aCLIP-S, ``score:<scorer>``) are. τb (binary judgement).

Both loaders follow the frame layout of :mod:`analysis.data.judgements` (``dataset, image, caption_id,
caption, rater, score, path, references`` then extras) so the harness treats them like the human sets;
``score`` holds the rule's judgement. Both are deterministic for a ``seed`` (:func:`analysis.runtime.rng`);
``limit`` keeps the first ``limit`` images (the candidates of an image do not depend on ``limit``: they are
drawn over the whole test split), ``smoke=True`` keeps :data:`SMOKE_IMAGES`.
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd

from analysis.data.judgements import BASE_COLUMNS

SCENE_LADDER = "scene-ladder"
STAMP_MATCH = "stamp-match"
SPLIT = "test"
SMOKE_IMAGES = 8
STAMP_NEGATIVES = 4
LEVELS = {4: "true caption (held out)", 3: "count/size/relation corruption", 2: "object swap",
          1: "another image's caption"}
CORRUPTIONS = ("replace_count", "replace_attribute", "swap_relation")
RATER = "rule (rule-made, not a human judgement)"
NO_REFERENCES = ("a stamp has one human-written description, and it is the positive candidate: with the candidate "
                 "left out no reference remains, so reference-based metrics are not applicable on stamp-match "
                 "(image-based metrics are)")


def _limit(limit: int | None, smoke: bool) -> int | None:
    return limit if limit else (SMOKE_IMAGES if smoke else None)


def _card(df: pd.DataFrame, **card) -> pd.DataFrame:
    df["score"] = df["score"].astype("float64")
    df.attrs.update({"source": "embedded", "kind": "rule-made", "split": SPLIT, "skipped": [], "dropped": [],
                     **card})
    return df


# ----------------------------------------------------------------------------- scene-ladder
def corruption(graph: dict, r, pool: list[str]) -> tuple[str, str]:
    """``(kind, caption)``: a seeded count, size or relation corruption of the graph's canonical caption
    (``swap_relation`` only where the graph has two object kinds), by
    :func:`analysis.data.perturbations.perturb`; ``r`` is a NumPy generator."""
    from analysis.data import perturbations

    kinds = [k for k in CORRUPTIONS if k != "swap_relation" or len(graph["objects"]) == 2]
    kind = str(r.choice(kinds))
    return kind, perturbations.perturb(graph, kind, r, pool)


@lru_cache(maxsize=4)
def _scene_ladder(seed: int) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The whole scene ladder over every test scene (cached: the rungs cost a spaCy parse and inflect calls)."""
    from analysis import registry
    from analysis.data.scenes import canonical
    from analysis.measures import ladder_captions
    from analysis.runtime import rng

    ds = registry.get_dataset("stamp-scenes", split=SPLIT)
    items = list(ds)
    if len(items) < 3:
        raise ValueError(f"stamp-scenes has {len(items)} test scenes; the scene ladder needs 3 or more")
    pool = list(ds.provenance["pool"])
    graphs = [it.meta["graph"] for it in items]
    for it, g in zip(items, graphs):
        if it.captions[0] != canonical(g):
            raise ValueError(f"stamp-scenes item {it.id}: its first reference is not the canonical caption of its "
                             "graph; the scene ladder holds the canonical caption out (rebuild the scenes)")
    ladder = ladder_captions(items, pool, seed)  # object swap (2) and another image's caption (1)
    redrawn = _avoid_training_captions(ladder["object swap"], graphs, pool, seed)
    r = rng(seed + 1)  # level 3's draws, independent of ladder_captions' stream
    level3 = [corruption(g, r, pool) for g in graphs]
    by_canonical: dict[str, str] = {}
    for it in items:
        by_canonical.setdefault(it.captions[0], it.id)
    rows = []
    for i, (it, g) in enumerate(zip(items, graphs)):
        refs = tuple(it.captions[1:])  # the held-out true caption is nobody's reference in this scene
        cands = {4: (it.captions[0], "", it.id), 3: (level3[i][1], level3[i][0], it.id),
                 2: (ladder["object swap"][i], "replace_object", it.id),
                 1: (ladder["other image"][i], "", by_canonical[ladder["other image"][i]])}
        for level, (cap, kind, src) in cands.items():
            rows.append({"dataset": SCENE_LADDER, "image": it.id, "caption_id": f"{it.id}#level{level}",
                         "caption": cap, "rater": RATER, "score": level, "path": str(it.path), "references": refs,
                         "level": level, "rung": LEVELS[level], "perturbation": kind, "source_image": src,
                         "graph": g, "split": SPLIT})
    extra = ["level", "rung", "perturbation", "source_image", "graph", "split"]
    df = pd.DataFrame(rows, columns=BASE_COLUMNS + extra)
    df.attrs["object_swaps_redrawn"] = [items[i].id for i in redrawn]  # scenes whose first swap was a train caption
    return df, tuple(it.id for it in items)


def _avoid_training_captions(swaps: list[str], graphs: list[dict], pool: list[str], seed: int) -> list[int]:
    """Redraw, in place, each object swap that is verbatim a ``stamp-scenes`` *training* caption (a one-kind
    scene whose swap lands on a training scene's graph): among the pool names sharing no noun with the scene's
    objects, only those whose swap is no training caption (:func:`analysis.data.perturbations.perturb`, seeded
    with ``seed + 2``). Returns the indices redrawn. A candidate is then never a caption a stand-in trained on."""
    from analysis import registry
    from analysis.data import perturbations
    from analysis.data.base import normalise_caption
    from analysis.linguistics import name_lemmas
    from analysis.runtime import rng

    train = {normalise_caption(c) for it in registry.get_dataset("stamp-scenes", split="train") for c in it.captions}
    bad = [i for i, c in enumerate(swaps) if normalise_caption(c) in train]
    if not bad:
        return []
    lemmas = {n: name_lemmas([n], heads_only=False) for n in pool}
    r = rng(seed + 2)
    for i in bad:
        g = graphs[i]
        mine = name_lemmas([o["name"] for o in g["objects"]], heads_only=False)
        ok = [n for n in pool if not lemmas[n] & mine
              and normalise_caption(perturbations.perturb(g, "replace_object", r, [n])) not in train]
        if not ok:
            raise ValueError(f"scene {i}: every object swap of its graph is a training caption; use another seed")
        swaps[i] = perturbations.perturb(g, "replace_object", r, ok)
    return bad


def scene_ladder(root=None, limit: int | None = None, *, seed: int = 0, smoke: bool = False) -> pd.DataFrame:
    """``scene-ladder (rule-made)``: four rows per ``stamp-scenes`` test scene, ``score`` = the ladder level
    (4 true caption held out > 3 count/size/relation corruption > 2 object swap > 1 another image's caption;
    see the module docstring). Columns: those of :mod:`analysis.data.judgements` (``references`` = the scene's
    references without the held-out true caption, the same on its four rows) plus ``level``, ``rung``,
    ``perturbation`` (the corruption kind of levels 3 and 2), ``source_image`` (the scene the candidate was
    made from), ``graph`` (the scene graph of ``image``, for ``sg-f1``) and ``split`` (``test``).

    ``root`` is accepted for the harness's loader signature and ignored (the data are embedded). ``limit``:
    the first ``limit`` test scenes (``smoke``: :data:`SMOKE_IMAGES`); a scene's candidates do not depend on it.
    """
    full, ids = _scene_ladder(int(seed))
    n = _limit(limit, smoke)
    df = full[full["image"].isin(set(ids[:n]) if n else set(ids))].reset_index(drop=True).copy()
    return _card(df, name=SCENE_LADDER, licence="GPL-2.0 (derived from the Tux Paint stamps)",
                 origin=f"made here by rule from the stamp-scenes test split (seed {seed})",
                 rating_unit="one rule-made level per (scene, candidate): 4 > 3 > 2 > 1; rule-made, not human "
                             "judgements", seed=int(seed))


# ----------------------------------------------------------------------------- stamp-match
@lru_cache(maxsize=4)
def _stamp_match(seed: int, k: int) -> tuple[pd.DataFrame, tuple[str, ...]]:
    from analysis import registry
    from analysis.data.base import normalise_caption
    from analysis.linguistics import name_lemmas
    from analysis.runtime import rng

    stamps = [it for it in registry.get_dataset("tuxpaint-stamps", split=SPLIT) if it.captions]
    if len(stamps) < 2:
        raise ValueError(f"tuxpaint-stamps has {len(stamps)} test stamps with a description; stamp-match needs 2+")
    desc = [it.captions[0] for it in stamps]
    keys = [normalise_caption(d) for d in desc]
    nouns = [name_lemmas([d], heads_only=False) for d in desc]
    r = rng(seed)
    rows = []
    for i, it in enumerate(stamps):
        others = [j for j in range(len(stamps)) if keys[j] != keys[i]]
        apart = [j for j in others if not nouns[j] & nouns[i]]  # another stamp's description naming other things
        choices = apart if len(apart) >= k else others
        if not choices:
            raise ValueError(f"stamp {it.id}: every other test stamp has the same description; no negative exists")
        picks = [int(j) for j in r.choice(choices, size=min(k, len(choices)), replace=False)]
        for j, judgement in [(i, 1)] + [(j, 0) for j in picks]:
            rows.append({"dataset": STAMP_MATCH, "image": it.id, "caption_id": f"{it.id}#{stamps[j].id}",
                         "caption": desc[j], "rater": RATER, "score": judgement, "path": str(it.path),
                         "references": (), "source_image": stamps[j].id, "split": SPLIT})
    return (pd.DataFrame(rows, columns=BASE_COLUMNS + ["source_image", "split"]),
            tuple(it.id for it in stamps))


def stamp_match(root=None, limit: int | None = None, *, seed: int = 0, k: int = STAMP_NEGATIVES,
                smoke: bool = False) -> pd.DataFrame:
    """``stamp-match (rule-made)``: per ``tuxpaint-stamps`` test stamp, its own human-written description
    (``score`` 1) and ``k`` other test stamps' descriptions (``score`` 0), drawn (seeded) among those sharing no
    noun with its own, or, if fewer than ``k`` do, among all with another description. ``references`` is empty
    on every row (see the module docstring; ``attrs["references_note"]`` says why). Extra columns:
    ``source_image`` (the stamp whose description the candidate is) and ``split``.

    ``root`` is accepted for the harness's loader signature and ignored. ``limit``/``smoke`` as
    :func:`scene_ladder`.
    """
    if k < 1:
        raise ValueError(f"stamp-match needs k >= 1 other stamps' descriptions per stamp, got k={k}")
    full, ids = _stamp_match(int(seed), int(k))
    n = _limit(limit, smoke)
    df = full[full["image"].isin(set(ids[:n]) if n else set(ids))].reset_index(drop=True).copy()
    return _card(df, name=STAMP_MATCH, licence="GPL-2.0 (Tux Paint stamps and their descriptions)",
                 origin=f"made here by rule from the tuxpaint-stamps test split (seed {seed}, k = {k})",
                 rating_unit="1 for a stamp's own human-written description, 0 for another stamp's; the "
                             "judgement is rule-made, not a human judgement", seed=int(seed),
                 references_note=NO_REFERENCES)
