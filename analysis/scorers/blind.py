"""``blind``: the text-only baseline, a caption prior that never sees the image nor a perturbation.

An interpolated Kneser-Ney n-gram language model (``nltk.lm``, order 3 by default) of the
training captions' positives (``tuxpaint-stamps`` + ``stamp-scenes`` train splits, lower-cased,
``nltk.wordpunct_tokenize``). A caption's score is its mean per-token log-probability,
end token included:

``s(c) = 1/(n+1) Σ_{k=1}^{n+1} ln max(P_KN(w_k | w_{k-2}, w_{k-1}), floor)``

with ``w_1..w_n`` the caption's tokens, ``w_{n+1} = </s>`` and ``<s>`` padding on the left.
Words seen fewer than ``unk_cutoff`` times in training are ``<UNK>`` (so an unseen word gets
the probability the model learned for rare words), and the floor keeps every score finite.
Captions longer than ``max_text_tokens`` words are scored on their first words (counted).

Whatever ``blind`` gets right, the caption alone gave away (a fluent, typical sentence
beats a broken one: ``shuffle_words``); since it was never shown a perturbation, its
perturbation accuracy is zero-shot like the default stand-ins'. Text-only scorers ignore
the image, so their retrieval is at chance by construction
(:class:`~analysis.scorers.base.TextOnly`). The in-distribution counterpart, a classifier
trained on the perturbations, is ``blind+neg`` (:mod:`analysis.scorers.standins`).

The model is cached like the other stand-ins (recipe: config, training data fingerprint,
seed, smoke flag, code version), stored as its n-gram counts in ``ngram.json``, never
pickled.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
from nltk.lm import Vocabulary
from nltk.lm.models import InterpolatedLanguageModel
from nltk.lm.preprocessing import padded_everygram_pipeline
from nltk.lm.smoothing import KneserNey
from nltk.tokenize import wordpunct_tokenize

from analysis.scorers import training, validation
from analysis.scorers.base import Scorer, TextOnly
from analysis.scorers.configs import NgramConfig
from analysis.scorers.standins import StandIn

MODEL_FILE = "ngram.json"
BOS, EOS = "<s>", "</s>"
LABEL = "blind (text-only baseline: caption n-gram prior)"


def tokenize(caption: str) -> list[str]:
    """Lower-cased ``nltk.wordpunct_tokenize`` words: ``"A red ball."`` -> ``["a", "red", "ball", "."]``."""
    return wordpunct_tokenize(caption.lower())


# --------------------------------------------------------------------------- the language model
class IndexedKneserNey(KneserNey):
    """nltk's Kneser-Ney estimator with its continuation counts read from a table built once.

    ``KneserNey._continuation_counts(word, context)`` scans every higher-order n-gram for each
    call; this override returns the same two numbers (how many distinct ``(x, *context)``
    prefixes are followed by ``word``; how many distinct ``(x, *context, w)`` there are) from a
    dictionary, so scoring a caption costs a few lookups per token.
    """

    _table: dict | None = None

    def _continuation_counts(self, word, context=tuple()):
        if self._table is None:
            with_word: dict[tuple, Counter] = defaultdict(Counter)
            for n in range(2, self._order + 1):
                for prefix, counts in self.counts[n].items():
                    for w, c in counts.items():
                        if c > 0:
                            with_word[tuple(prefix[1:])][w] += 1
            self._table = {ctx: (words, sum(words.values())) for ctx, words in with_word.items()}
        words, total = self._table.get(tuple(context), (Counter(), 0))
        return words[word], total


class CaptionLM(InterpolatedLanguageModel):
    """Interpolated Kneser-Ney (``nltk.lm.KneserNeyInterpolated``) with :class:`IndexedKneserNey`."""

    def __init__(self, order: int, discount: float = 0.1, **kwargs):
        super().__init__(IndexedKneserNey, order, params={"discount": discount, "order": order}, **kwargs)


def fit_lm(sentences: Sequence[Sequence[str]], cfg: NgramConfig) -> CaptionLM:
    """The n-gram model of tokenised ``sentences`` (``nltk.lm``'s padded everygram pipeline)."""
    lm = CaptionLM(cfg.order, cfg.discount, vocabulary=Vocabulary(unk_cutoff=cfg.unk_cutoff))
    train, vocab = padded_everygram_pipeline(cfg.order, [list(s) for s in sentences])
    lm.fit(train, vocab)
    return lm


def lm_to_json(lm: CaptionLM, cfg: NgramConfig) -> dict:
    """The model as plain JSON: config, vocabulary counts and every n-gram count."""
    ngrams = [[list(ctx), w, int(c)] for n in range(2, lm.order + 1)
              for ctx, counts in sorted(lm.counts[n].items()) for w, c in sorted(counts.items()) if c > 0]
    return {"config": asdict(cfg), "vocab": dict(sorted(lm.vocab.counts.items())),
            "unigrams": dict(sorted((w, int(c)) for w, c in lm.counts.unigrams.items())), "ngrams": ngrams}


def lm_from_json(doc: dict) -> CaptionLM:
    """The model :func:`lm_to_json` wrote (same counts, so the same scores)."""
    cfg = NgramConfig(**doc["config"])
    lm = CaptionLM(cfg.order, cfg.discount, vocabulary=Vocabulary(Counter(doc["vocab"]), unk_cutoff=cfg.unk_cutoff))
    for w, c in doc["unigrams"].items():
        lm.counts.unigrams[w] += c
    for ctx, w, c in doc["ngrams"]:
        lm.counts[len(ctx) + 1][tuple(ctx)][w] += c
    return lm


def mean_logprob(lm: CaptionLM, tokens: Sequence[str], floor: float) -> float:
    """``1/(n+1) Σ_k ln max(P(w_k | context), floor)`` over the tokens and ``</s>`` (module docstring)."""
    seq = [BOS] * (lm.order - 1) + list(tokens) + [EOS]
    k = lm.order - 1
    return float(np.mean([math.log(max(lm.score(seq[i], seq[i - k:i]), floor)) for i in range(k, len(seq))]))


# --------------------------------------------------------------------------- training and caching
def training_sentences(ts: training.TrainingSet) -> list[list[str]]:
    """Every true caption of every training image (repeats kept: they are the caption frequencies)."""
    return [tokenize(ts.captions[c]) for pos in ts.positives for c in pos]


def heldout_logprob(lm: CaptionLM, val: training.TrainingSet, cfg: NgramConfig) -> dict:
    """Mean per-token log-probability of the val captions, against a uniform pick over the vocabulary
    (``chance = -ln |V|``); recorded in the meta, not used for any choice."""
    vals = [mean_logprob(lm, tokenize(val.captions[c]), cfg.floor) for pos in val.positives for c in pos]
    return {"split": "val", "metric": "mean_logprob", "value": round(float(np.mean(vals)), 4),
            "chance": round(-math.log(len(lm.vocab)), 4), "n": len(vals), "used_for_selection": False}


def save_lm(model: tuple[CaptionLM, NgramConfig], folder: Path, meta: dict) -> None:
    lm, cfg = model
    (Path(folder) / MODEL_FILE).write_text(json.dumps(lm_to_json(lm, cfg)))
    (Path(folder) / training.META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))


def train_lm(cfg: NgramConfig, ts: training.TrainingSet, val: training.TrainingSet | None = None
             ) -> tuple[tuple[CaptionLM, NgramConfig], dict]:
    """Count the n-grams of the training captions; the log holds sizes, time and the val metric."""
    t0 = time.perf_counter()
    sentences = training_sentences(ts)
    lm = fit_lm(sentences, cfg)
    log = {"steps": 0, "seconds": round(time.perf_counter() - t0, 2), "n_sentences": len(sentences),
           "n_tokens": int(sum(len(s) for s in sentences)), "vocab_size": len(lm.vocab)}
    if val is not None:
        log["val"] = heldout_logprob(lm, val, cfg)
    return (lm, cfg), log


def trained_lm(*, smoke: bool, seed: int, **overrides) -> tuple[CaptionLM, Path, dict]:
    """The cached n-gram model for this config (counted on a miss); returns ``(lm, folder, meta)``."""
    from dataclasses import fields, replace

    unknown = set(overrides) - {f.name for f in fields(NgramConfig)}
    if unknown:
        raise TypeError(f"blind: unknown setting(s) {', '.join(sorted(unknown))}; "
                        f"valid: smoke, seed, {', '.join(f.name for f in fields(NgramConfig))}")
    cfg = replace(NgramConfig(), **overrides)
    if cfg.hard_per_kind:
        raise ValueError("blind is the zero-shot caption prior: it never sees a perturbation (hard_per_kind=0)")
    ts = training.training_set(smoke=smoke, seed=seed, hard_per_kind=0)
    val = validation.val_set(cfg, smoke=smoke, seed=seed)
    recipe = training.base_recipe(cfg, ts, seed=seed, smoke=smoke, val=val, uses_towers=False)
    folder = training.checkpoint("blind", recipe, lambda: train_lm(cfg, ts, val), save=save_lm)
    return lm_from_json(json.loads((folder / MODEL_FILE).read_text())), folder, training.read_meta(folder)


# --------------------------------------------------------------------------- the scorer
class BlindSpec:
    """Provenance of ``blind`` in the shape :class:`~analysis.scorers.standins.StandIn` reads."""

    name, label, family, output = "blind", LABEL, "text-only", "lm_logprob"
    default, trained_on_perturbations = True, False


class NgramPrior(StandIn, TextOnly):
    """blind: mean per-token log-probability of the caption under the n-gram prior (images ignored).
    ``max_text_tokens`` counts words here (:func:`tokenize`)."""

    def __init__(self, lm: CaptionLM, folder: Path, meta: dict, *, seed: int, smoke: bool):
        Scorer.__init__(self)
        self.lm, self.floor = lm, float(meta["recipe"]["config"]["floor"])
        self._provenance(BlindSpec, folder, meta, seed=seed, smoke=smoke, weights=MODEL_FILE)

    def _text_scores(self, captions) -> np.ndarray:
        words = [tokenize(c) for c in captions]
        self.count_truncation([len(w) for w in words])
        return np.array([mean_logprob(self.lm, w[:self.max_text_tokens], self.floor) for w in words])


def blind(*, smoke: bool = False, seed: int = 0, device: str | None = None, **overrides) -> NgramPrior:
    """``get_scorer("blind")``: the caption n-gram prior (counted on first use, then cached). ``device`` is
    accepted like every scorer's and not used: n-gram counts run in plain Python, the same on any machine."""
    lm, folder, meta = trained_lm(smoke=smoke, seed=seed, **overrides)
    return NgramPrior(lm, folder, meta, seed=seed, smoke=smoke)
