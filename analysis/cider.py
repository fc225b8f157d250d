"""Fast CIDEr-D for rewards: document frequencies computed once, per-caption scores without a JVM.

Same definition as ``pycocoevalcap.cider`` (pycocoevalcap 1.2, ``cider_scorer.py``; Vedantam et al. 2015),
re-implemented in plain Python so that SCST can call it thousands of times:

* A caption is a string of **already tokenised** words, split on whitespace (exactly what pycocoevalcap's
  scorer receives after its ``PTBTokenizer``). This module does not tokenise: the caller does, once, for
  candidates and references alike (``analysis.metrics`` runs pycocoevalcap's ``PTBTokenizer``).
* For each n = 1..N (N = 4), a caption is a tf-idf vector over its n-grams::

      g_n(s)[w] = tf(w, s) · (log |D| − log max(1, df(w)))

  where ``df(w)`` is the number of *images* of the reference corpus D whose reference set contains w, and
  |D| the number of images in D.
* CIDEr-D of candidate c against references S = {s_1..s_m}::

      CIDEr-D(c, S) = 10/m · Σ_j 1/N · Σ_n  exp(−δ_j² / (2σ²))
                      · Σ_w min(g_n(c)[w], g_n(s_j)[w]) · g_n(s_j)[w] / (‖g_n(c)‖ · ‖g_n(s_j)‖)

  with σ = 6 and δ_j = ℓ(c) − ℓ(s_j). As in pycocoevalcap, ℓ counts the *bigram* occurrences of a caption
  (``len(words) − 1`` for a non-empty caption, so δ is the word-length difference), and ℓ = 0 for every
  caption when N < 2 (no length penalty then). A zero norm leaves the n-gram term unnormalised (it is 0
  then). The clip ``min(·,·)`` and the Gaussian penalty are what make it "-D".

**Which corpus gives the document frequencies.** pycocoevalcap computes ``df`` and |D| on the ``gts`` of
each ``compute_score`` call. ``CiderD(refs_corpus)`` computes them once on ``refs_corpus`` (the training
references, as SCST implementations do) and uses them for every later call; the scores then equal
pycocoevalcap's only when ``refs_corpus`` is the same reference sets as the ``gts`` scored. With
``CiderD()`` (no corpus), ``compute_score`` follows pycocoevalcap and computes them on each call's ``gts``.

**Speed.** Construction also vectorises every corpus reference once (one sparse row store); ``score`` then
counts only the candidates' n-grams in Python and does the clipped dot products of a whole batch in numpy
(``searchsorted`` over pair-keyed n-gram ids); a reference string not in the corpus is vectorised on first
use and kept. ``python -m analysis bench metrics`` measures it. pycocoevalcap's ``Cider`` only runs with
n = 4 (its reference cooking ignores ``n``); other ``n`` here follow the same formula, unchecked against it.
"""
from __future__ import annotations

import math
from collections import Counter
from itertools import chain, repeat
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np

SOURCE = "pycocoevalcap 1.2 cider_scorer.py (re-implemented, same definition)"
#: bump when a score can change, even in its last bit (part of every CIDEr-D reward's recipe, hence of SCST
#: checkpoints): 2 sums a reference's norm in its own n-gram order, no longer in vocabulary-id order
CODE_VERSION = 2


def ngram_counts(caption: str, n: int = 4) -> Counter:
    """Counts of every k-gram, k = 1..n, of a whitespace-tokenised caption; keys are word tuples.

    >>> sorted(ngram_counts("a cat a cat", 2).items())
    [(('a',), 2), (('a', 'cat'), 2), (('cat',), 2), (('cat', 'a'), 1)]
    """
    words = caption.split()
    counts: Counter = Counter()
    for k in range(1, n + 1):
        counts.update(zip(*(words[i:] for i in range(k))))
    return counts


def document_frequencies(ref_sets: Iterable[Sequence[str]], n: int = 4) -> tuple[dict, int]:
    """``df(w)`` = number of reference *sets* (images) containing n-gram w, and the number of sets |D|.

    >>> df, n_docs = document_frequencies([["a cat", "the cat"], ["a dog"]], n=1)
    >>> n_docs, df[("a",)], df[("cat",)], df[("dog",)]
    (2, 2, 1, 1)
    """
    df: Counter = Counter()
    n_docs = 0
    for refs in ref_sets:
        seen: set = set()
        for ref in refs:
            seen.update(ngram_counts(ref, n))
        df.update(sorted(seen))  # sorted: the key order (the vocabulary ids, hence the order of every float sum)
        n_docs += 1              # must not follow the set's string-hash order, which changes per process
    return dict(df), n_docs


def _items(corpus: Mapping[Hashable, Sequence[str]] | Sequence[Sequence[str]]):
    return list(corpus.items()) if isinstance(corpus, Mapping) else list(enumerate(corpus))


class CiderD:
    """CIDEr-D with document frequencies fixed at construction (see the module docstring for the formula).

    ``CiderD(refs_corpus)``: ``refs_corpus`` is ``{image_id: [ref, ...]}`` or ``[[ref, ...], ...]``, one
    reference set per image, already tokenised. Construction computes ``df`` and log |D| once and the
    tf-idf vectors of every corpus reference (kept as one sparse row store). ``score(candidates,
    references)`` then scores a batch with vectorised numpy: only the candidates' n-grams are counted per
    call; a reference string not seen before is vectorised once and kept. ``compute_score(gts, res)`` has
    pycocoevalcap's signature and returns ``(corpus_mean, per_item_array)`` in ``gts`` order.
    ``CiderD()`` without a corpus only offers ``compute_score``, with ``df`` taken from each call's ``gts``
    (pycocoevalcap's behaviour).
    """

    name = "CIDEr-D"

    def __init__(self, refs_corpus=None, *, n: int = 4, sigma: float = 6.0):
        if n < 1:
            raise ValueError(f"CiderD: n must be >= 1 (n-gram orders 1..n), got {n}")
        self.n, self.sigma = n, float(sigma)
        self.df: dict | None = None
        self.n_docs = 0
        self.log_n_docs = 0.0
        if refs_corpus is None:
            return
        items = _items(refs_corpus)
        if not items:
            raise ValueError("CiderD: the reference corpus is empty; give one reference list per image")
        for key, refs in items:
            _check_refs(key, refs)
        self.df, self.n_docs = document_frequencies((refs for _, refs in items), n)
        self.log_n_docs = math.log(float(self.n_docs))
        # n-gram vocabulary: id -> idf; grams first met in a later reference get idf = log |D| (df = 0)
        self._vocab: dict[tuple, int] = {g: i for i, g in enumerate(self.df)}
        self._idf_corpus = np.array([self.log_n_docs - math.log(max(1.0, d)) for d in self.df.values()])
        # sparse row store of reference vectors (CSR: gram ids sorted within a row, weights)
        self._row_of: dict[str, int] = {}
        self._ids = np.empty(0, np.int64)
        self._w = np.empty(0, np.float64)
        self._indptr = np.zeros(1, np.int64)
        self._rnorm = np.empty((0, n), np.float64)
        self._rlen = np.empty(0, np.float64)
        self._add_refs(list(dict.fromkeys(r for _, refs in items for r in refs)))

    def info(self) -> dict:
        return {"name": self.name, "source": SOURCE, "n": self.n, "sigma": self.sigma,
                "df_corpus_images": self.n_docs, "df_ngrams": len(self.df or ()),
                "cached_references": len(getattr(self, "_row_of", ()))}

    # -- vectors -------------------------------------------------------------------------------------
    def _grams(self, caption: str) -> list[Counter]:
        w = caption.split()
        return [Counter(zip(*(w[i:] for i in range(k)))) for k in range(1, self.n + 1)]

    def _counts(self, caption: str) -> Counter:
        """All k-gram counts, k = 1..n, in one Counter (keys are word tuples; the order is the tuple length)."""
        w = caption.split()
        return Counter(chain.from_iterable(zip(*(w[i:] for i in range(k))) for k in range(1, self.n + 1)))

    def _length(self, caption: str) -> int:
        """pycocoevalcap's length: the number of bigram occurrences (0 for every caption when n < 2)."""
        return max(len(caption.split()) - 1, 0) if self.n >= 2 else 0

    def _idf(self, ids: np.ndarray) -> np.ndarray:
        known = (ids >= 0) & (ids < len(self._idf_corpus))
        return np.where(known, self._idf_corpus[np.where(known, ids, 0)], self.log_n_docs)

    def _add_refs(self, refs: list[str]) -> None:
        """Vectorise references not yet in the row store and append them (one concatenation per call)."""
        ids, tfs, ptr, lens = [], [], [len(self._ids)], []
        text_ids, text_tfs, text_bins = [], [], []  # the same entries in the reference's own n-gram order
        vocab = self._vocab
        for i, ref in enumerate(refs):
            row: dict[int, int] = {}
            for k, grams in enumerate(self._grams(ref)):
                for g, tf in grams.items():
                    gid = vocab.get(g)
                    if gid is None:
                        gid = vocab[g] = len(vocab)
                    row[gid] = tf
                    text_ids.append(gid)
                    text_tfs.append(tf)
                    text_bins.append(i * self.n + k)
            for gid in sorted(row):
                ids.append(gid)
                tfs.append(row[gid])
            ptr.append(ptr[-1] + len(row))
            lens.append(self._length(ref))
            self._row_of[ref] = len(self._row_of)
        ids_a = np.asarray(ids, np.int64)
        w = np.asarray(tfs, np.float64) * self._idf(ids_a)
        new_ptr = np.asarray(ptr, np.int64)
        # ‖g_n(r)‖²: summed in the reference's own n-gram order, not in vocabulary-id order (ids depend on which
        # texts this scorer saw before, so an id-ordered float sum could differ in its last bit between runs)
        tw = np.asarray(text_tfs, np.float64) * self._idf(np.asarray(text_ids, np.int64))
        sq = np.bincount(np.asarray(text_bins, np.int64), tw * tw,
                         minlength=len(refs) * self.n).reshape(len(refs), self.n)
        self._ids = np.concatenate([self._ids, ids_a])
        self._w = np.concatenate([self._w, w])
        self._indptr = np.concatenate([self._indptr, new_ptr[1:]])
        self._rnorm = np.concatenate([self._rnorm, np.sqrt(sq)])
        self._rlen = np.concatenate([self._rlen, np.asarray(lens, np.float64)])

    # -- public API -----------------------------------------------------------------------------------
    def score(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        """Per-caption CIDEr-D of ``candidates[i]`` against ``references[i]``, vectorised over the batch;
        document frequencies are the ones fixed at construction (never recomputed). Inputs are already
        tokenised strings."""
        if self.df is None:
            raise ValueError("CiderD.score needs document frequencies: build it as CiderD(refs_corpus) "
                             "with the training references (CiderD() only offers compute_score)")
        if len(candidates) != len(references):
            raise ValueError(f"CiderD.score: {len(candidates)} candidates but {len(references)} reference "
                             "lists; give one reference list per candidate")
        for i, (cand, refs) in enumerate(zip(candidates, references)):
            _check_candidate(i, cand)
            _check_refs(i, refs)
        n, B = self.n, len(candidates)
        if B == 0:
            return np.empty(0, np.float64)
        new = [r for r in dict.fromkeys(r for refs in references for r in refs) if r not in self._row_of]
        if new:
            self._add_refs(new)

        # candidates: flat (item, order, id, tf) entries; ids of grams absent from the vocabulary are -1
        keys, c_tf, c_len, c_start = [], [], [], [0]
        for cand in candidates:
            grams = self._counts(cand)
            keys.extend(grams)
            c_tf.extend(grams.values())
            c_start.append(len(keys))
            c_len.append(self._length(cand))
        get = self._vocab.get
        c_id_a = np.fromiter(map(get, keys, repeat(-1)), np.int64, len(keys))
        c_ord_a = np.fromiter(map(len, keys), np.int64, len(keys)) - 1
        c_start_a = np.asarray(c_start, np.int64)
        c_item_a = np.repeat(np.arange(B), np.diff(c_start_a))
        c_w = np.asarray(c_tf, np.float64) * self._idf(c_id_a)
        hnorm = np.sqrt(np.bincount(c_item_a * n + c_ord_a, c_w * c_w, minlength=B * n)).reshape(B, n)

        # pairs (candidate i, reference row r)
        m = np.fromiter((len(refs) for refs in references), np.int64, B)
        p_item = np.repeat(np.arange(B), m)
        p_row = np.fromiter((self._row_of[r] for refs in references for r in refs), np.int64, int(m.sum()))
        P, V = len(p_row), len(self._vocab) + 1

        # reference entries of every pair, keyed pair * V + id (sorted: pairs ascending, ids sorted per row)
        r_idx, r_pair = _gather(self._indptr, p_row)
        r_key = r_pair * V + self._ids[r_idx]
        # candidate entries (known grams only) repeated for each pair of their item
        c_idx, c_pair = _gather(c_start_a, p_item)
        keep = c_id_a[c_idx] >= 0
        c_idx, c_pair = c_idx[keep], c_pair[keep]
        c_key = c_pair * V + c_id_a[c_idx]
        pos = np.minimum(np.searchsorted(r_key, c_key), max(len(r_key) - 1, 0))
        hit = (r_key[pos] == c_key) if len(r_key) else np.zeros(len(c_key), bool)
        hw, rw = c_w[c_idx[hit]], self._w[r_idx[pos[hit]]]
        val = np.bincount(c_pair[hit] * n + c_ord_a[c_idx[hit]], np.minimum(hw, rw) * rw,
                          minlength=P * n).reshape(P, n).astype(np.float64)  # int64 when nothing matches
        denom = hnorm[p_item] * self._rnorm[p_row]
        val = np.divide(val, denom, out=val, where=denom != 0)
        delta = np.asarray(c_len, np.float64)[p_item] - self._rlen[p_row]
        pair = val.sum(axis=1) * np.exp(-(delta ** 2) / (2 * self.sigma ** 2))
        return 10.0 * np.bincount(p_item, pair, minlength=B) / (n * m)

    def compute_score(self, gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]]):
        """pycocoevalcap's contract: ``gts`` and ``res`` map the same ids to reference lists and to a
        one-caption list. Returns ``(mean, per_item)`` with ``per_item`` in ``gts`` order."""
        if not gts:
            raise ValueError("CiderD.compute_score: gts is empty; give at least one id with references")
        missing = [k for k in gts if k not in res]
        if missing:
            raise ValueError(f"CiderD.compute_score: no candidate for id {missing[0]!r} "
                             f"({len(missing)} ids of gts missing from res)")
        extra = [k for k in res if k not in gts]
        if extra:
            raise ValueError(f"CiderD.compute_score: id {extra[0]!r} of res has no references in gts")
        cands = []
        for key in gts:
            hyp = res[key]
            if isinstance(hyp, str) or len(hyp) != 1:
                raise ValueError(f"CiderD.compute_score: res[{key!r}] must be a list of exactly one caption, "
                                 f"got {hyp!r}")
            _check_candidate(key, hyp[0])
            _check_refs(key, gts[key])
            cands.append(hyp[0])
        scorer = self if self.df is not None else CiderD(gts, n=self.n, sigma=self.sigma)
        per_item = scorer.score(cands, [gts[k] for k in gts])
        return float(per_item.mean()), per_item

    def method(self) -> str:
        return "CIDEr"


def _gather(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the entries of ``rows`` in a CSR-like store, and for each the position in ``rows``.

    >>> _gather(np.array([0, 2, 5]), np.array([1, 0]))
    (array([2, 3, 4, 0, 1]), array([0, 0, 0, 1, 1]))
    """
    starts, lens = indptr[rows], indptr[rows + 1] - indptr[rows]
    owner = np.repeat(np.arange(len(rows)), lens)
    offsets = np.cumsum(lens) - lens
    return np.arange(int(lens.sum()), dtype=np.int64) - offsets[owner] + starts[owner], owner


def _check_candidate(key, cand) -> None:
    if not isinstance(cand, str) or not cand.split():
        raise ValueError(f"CIDEr-D: the candidate caption for id {key!r} is empty or missing ({cand!r}); "
                         "every item needs a non-empty, tokenised caption")


def _check_refs(key, refs) -> None:
    if isinstance(refs, str) or len(refs) == 0:
        raise ValueError(f"CIDEr-D: the references for id {key!r} must be a non-empty list of captions, "
                         f"got {refs!r}")
