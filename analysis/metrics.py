"""Caption metrics behind one contract: ``compute_score(gts, res) -> (corpus_score, per_item_scores)``.

``gts`` maps an item id to its reference captions, ``res`` maps the same ids to a one-caption list (the
candidate), as in pycocoevalcap. ``per_item_scores`` is a NumPy array in the order of ``gts``' keys.
Image-based metrics (CLIP-S, RefCLIP-S, ``score:<scorer>``) also take ``images``: a dict from the same
ids to PIL images. Every metric carries its provenance (:meth:`Metric.info`): name, label, the library
and version it comes from, the scorer it uses, and "stand-in" where the scorer is one.

* **n-gram metrics** (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) are pycocoevalcap's own scorers after its PTB
  tokenizer, called once for references and candidates together (METEOR starts one JVM per call: score a
  whole run in one call). Both need Java; without it they raise :class:`MetricUnavailable` ("needs
  Java"), never a 0.
* **CLIP-S / RefCLIP-S** exactly as the published clipscore code (Hessel et al. 2021):
  :func:`clip_s` and :func:`ref_clip_s` over L2-normalised embeddings, backed by any dual-encoder scorer.
* **aCLIP-S / RefaCLIP-S** (ReCap, as this study reads it): the same code with the image embedding replaced
  by the aligned one, ``normalise(map.apply(v))`` (:func:`aclip_s`, :class:`AlignedClipScoreMetric`); the map
  comes from :func:`analysis.realignment.fitted_map`, never fitted on the evaluated pairs.
* **score:<name>**: any scorer in the registry as a metric (the mean of its per-pair scores), so a
  cross-scoring matrix is one loop over ``METRICS``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from importlib import metadata
from typing import Mapping, Sequence

import numpy as np

CLIP_S_WEIGHT = 2.5
CLIP_S_PREFIX = "A photo depicts "


class MetricUnavailable(RuntimeError):
    """A metric cannot run on this machine; the message says what it needs."""


# ----------------------------------------------------------------------------- the contract
def check_inputs(gts: Mapping, res: Mapping) -> list:
    """The ids to score (``gts``' key order), after checking that every id has references and exactly one
    non-empty candidate string; a bad input raises ``ValueError`` naming the id and what is wrong."""
    if not gts:
        raise ValueError("no items to score: gts is empty")
    extra = [k for k in res if k not in gts]
    if extra:
        raise ValueError(f"candidate id(s) {extra[:5]} have no references in gts")
    for k, refs in gts.items():
        if k not in res:
            raise ValueError(f"id {k!r} has references but no candidate in res")
        cand = res[k]
        if not isinstance(cand, (list, tuple)) or len(cand) != 1:
            raise ValueError(f"id {k!r}: res must hold a list of exactly one candidate caption, got {cand!r}")
        if not isinstance(cand[0], str) or not cand[0].strip():
            raise ValueError(f"id {k!r}: the candidate caption is empty or not a string ({cand[0]!r})")
        if not isinstance(refs, (list, tuple)) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
            raise ValueError(f"id {k!r}: gts must hold a non-empty list of non-empty reference strings")
    return list(gts)


@dataclass
class Metric:
    """A caption metric: ``compute_score(gts, res, images=None) -> (corpus, per_item)``."""

    name: str
    label: str
    source: str  # the library (and version) the numbers come from
    scorer: str = ""  # the scorer behind an image-based metric
    stand_in: bool = False
    needs_images: bool = False
    corpus_is_mean: bool = True  # False for BLEU and METEOR, whose corpus score is not the mean of items
    corpus_statistics: bool = False  # True when an item's score depends on the other items of the call (CIDEr-D's
    # document frequencies): such a metric must be called once per set of candidates that belong together
    extra: dict = field(default_factory=dict)

    def info(self) -> dict:
        return {"metric": self.name, "label": self.label, "source": self.source, "scorer": self.scorer,
                "stand_in": self.stand_in, "corpus_is_mean": self.corpus_is_mean,
                "corpus_statistics": self.corpus_statistics}

    def compute_score(self, gts, res, images=None) -> tuple[float, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


# ----------------------------------------------------------------------------- pycocoevalcap
def java_available() -> bool:
    return shutil.which("java") is not None


def require_java(name: str) -> None:
    if not java_available():
        raise MetricUnavailable(f"metric {name!r} is unavailable: needs Java (pycocoevalcap's PTB tokenizer"
                                f"{' and METEOR' if name == 'meteor' else ''} run on the JVM). Install a JRE "
                                "(`.ci/setup` installs default-jre-headless) and put `java` on PATH.")


def ptb_tokenize(gts: Mapping, res: Mapping) -> tuple[dict, dict]:
    """pycocoevalcap's PTB tokenizer (lower-case, punctuation removed), one JVM call for both sides."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    both = {("g", k): [{"caption": c} for c in v] for k, v in gts.items()}
    both.update({("r", k): [{"caption": c} for c in v] for k, v in res.items()})
    tok = PTBTokenizer().tokenize(both)
    return {k: tok[("g", k)] for k in gts}, {k: tok[("r", k)] for k in res}


PYCOCO = f"pycocoevalcap {metadata.version('pycocoevalcap')}"


class CocoMetric(Metric):
    """A pycocoevalcap scorer after the PTB tokenizer; BLEU-n picks the n-th of ``Bleu(4)``'s scores."""

    def compute_score(self, gts, res, images=None):
        ids = check_inputs(gts, res)
        require_java(self.name)
        g, r = ptb_tokenize(gts, res)
        scorer = self.extra["make"]()
        try:
            corpus, per_item = scorer.compute_score({k: g[k] for k in ids}, {k: r[k] for k in ids})
        except BaseException:
            if "reset" in self.extra:  # a long-lived scorer process left mid-exchange is not reused
                self.extra["reset"]()
            raise
        n = self.extra.get("bleu_n")
        if n is not None:
            corpus, per_item = corpus[n - 1], per_item[n - 1]
        return float(corpus), np.asarray(per_item, dtype=float)


def _bleu(n: int):
    def make():
        from pycocoevalcap.bleu.bleu import Bleu

        return Bleu(4)

    return CocoMetric(f"bleu-{n}", f"BLEU-{n}", PYCOCO, corpus_is_mean=False, extra={"make": make, "bleu_n": n})


def bleu_1() -> Metric:
    """BLEU-1 (pycocoevalcap; corpus score is corpus-level BLEU, not the mean of items)."""
    return _bleu(1)


def bleu_2() -> Metric:
    """BLEU-2 (pycocoevalcap)."""
    return _bleu(2)


def bleu_3() -> Metric:
    """BLEU-3 (pycocoevalcap)."""
    return _bleu(3)


def bleu_4() -> Metric:
    """BLEU-4 (pycocoevalcap)."""
    return _bleu(4)


_METEOR: dict = {}


def meteor_process():
    """One pycocoevalcap ``Meteor`` (a METEOR 1.5 JVM in ``-stdio`` mode) per Python process, started on first
    use and replaced when it has exited. Starting it loads the paraphrase tables (about 5 s), and each ``EVAL``
    line scores its segments independently, so reusing it gives the same numbers as a fresh JVM per call
    (tested)."""
    m = _METEOR.get("jvm")
    if m is None or m.meteor_p.poll() is not None:
        from pycocoevalcap.meteor.meteor import Meteor

        m = _METEOR["jvm"] = Meteor()
    return m


def drop_meteor_process() -> None:
    """Stop and forget the process-wide METEOR JVM (after a failed exchange). pycocoevalcap's ``compute_score``
    takes its lock without ``finally``, so the lock may still be held: it is replaced before the object is dropped,
    or its ``__del__`` would wait on it for ever."""
    import threading

    m = _METEOR.pop("jvm", None)
    if m is not None:
        m.meteor_p.kill()
        m.meteor_p.wait()
        m.lock = threading.Lock()


def meteor() -> Metric:
    """METEOR 1.5 (pycocoevalcap's jar; one JVM per process, :func:`meteor_process`)."""
    return CocoMetric("meteor", "METEOR", PYCOCO, corpus_is_mean=False,
                      extra={"make": meteor_process, "reset": drop_meteor_process})


def rouge_l() -> Metric:
    """ROUGE-L (pycocoevalcap, β = 1.2)."""
    def make():
        from pycocoevalcap.rouge.rouge import Rouge

        return Rouge()

    return CocoMetric("rouge-l", "ROUGE-L", PYCOCO, extra={"make": make})


def cider_d() -> Metric:
    """CIDEr-D (pycocoevalcap's ``Cider``: σ = 6, clipped tf-idf, ×10; document frequencies from ``gts``)."""
    def make():
        from pycocoevalcap.cider.cider import Cider

        return Cider()

    return CocoMetric("cider-d", "CIDEr-D", PYCOCO, corpus_statistics=True, extra={"make": make})


class FastCider(Metric):
    """CIDEr-D by :class:`analysis.cider.CiderD` (pure numpy) after the same PTB tokenizer: equal to
    pycocoevalcap's to 1e-6 when, as here, the document frequencies come from ``gts``. For SCST rewards
    build ``CiderD(training references)`` once and call ``.score`` (no JVM per step)."""

    def compute_score(self, gts, res, images=None):
        from analysis.cider import CiderD

        ids = check_inputs(gts, res)
        require_java(self.name)
        g, r = ptb_tokenize(gts, res)
        return CiderD().compute_score({k: g[k] for k in ids}, {k: r[k] for k in ids})


def cider_d_fast() -> Metric:
    """CIDEr-D re-implemented in numpy (:mod:`analysis.cider`), for rewards; same numbers as ``cider-d``."""
    return FastCider("cider-d-fast", "CIDEr-D (fast)", "analysis.cider (CIDEr-D as pycocoevalcap 1.2 defines it)",
                     corpus_statistics=True)


class SceneGraphF1(Metric):
    """``sg-f1 (SPICE-style stand-in)``: F1 of the candidate's tuples against its scene graph
    (:mod:`analysis.scene_parse`); needs ``graphs={id: scene graph}``, so it applies to stamp scenes only."""

    def compute_score(self, gts, res, images=None, graphs=None):
        from analysis.scene_parse import sg_f1

        ids = check_inputs(gts, res)
        if graphs is None or any(k not in graphs for k in ids):
            raise ValueError(f"{self.name}: pass graphs={{id: scene graph}} for every id (stamp scenes carry "
                             "them in item.meta['graph']); SPICE itself cannot run offline")
        per = np.asarray(sg_f1([res[k][0] for k in ids], [graphs[k] for k in ids]), dtype=float)
        return float(per.mean()), per


def sg_f1() -> Metric:
    """sg-f1 (SPICE-style stand-in): scene-graph tuple F1 from a spaCy parse, for stamp scenes."""
    return SceneGraphF1("sg-f1", "sg-f1 (SPICE-style stand-in)", "analysis.scene_parse (spaCy parse; not SPICE)",
                        stand_in=True)


# ----------------------------------------------------------------------------- CLIP-S family
def clip_s(image: np.ndarray, text: np.ndarray, *, w: float = CLIP_S_WEIGHT) -> np.ndarray:
    """Per-item CLIP-S (Hessel et al. 2021): ``w · max(cos(v, c), 0)`` for row-wise L2-normalised image
    embeddings ``v`` and candidate embeddings ``c`` (of ``"A photo depicts " + caption``); the corpus
    score is the mean of the clamped items.

    >>> clip_s(np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]]))
    array([1.5])
    """
    cos = np.sum(np.asarray(image, float) * np.asarray(text, float), axis=1)
    return w * np.clip(cos, 0, None)


def ref_clip_s(image: np.ndarray, text: np.ndarray, refs: Sequence[np.ndarray], *,
               w: float = CLIP_S_WEIGHT) -> np.ndarray:
    """Per-item RefCLIP-S: the harmonic mean ``2ab / (a + b)`` of ``a`` = CLIP-S (:func:`clip_s`) and
    ``b = max_r cos(c, r)`` over the item's reference embeddings (prefixed like the candidate). As in the
    published code, ``b`` is neither scaled by ``w`` nor clamped. Where ``a + b = 0`` the published code
    divides by zero; here that item is 0.

    >>> ref_clip_s(np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]]), [np.array([[0.6, 0.8], [1.0, 0.0]])])
    array([1.2])
    """
    a = clip_s(image, text, w=w)
    b = np.array([float(np.max(np.asarray(r, float) @ np.asarray(c, float))) for c, r in zip(text, refs)])
    den = a + b
    return np.divide(2 * a * b, den, out=np.zeros_like(den), where=den != 0)


def encode_unique(encode, objs: Sequence, key=lambda o: o) -> np.ndarray:
    """``encode(objs)`` with each distinct ``key(obj)`` encoded once (rows in input order): the same image or
    caption met under several ids costs one forward pass.

    >>> calls = []
    >>> encode_unique(lambda xs: calls.append(list(xs)) or np.array([[len(x)] for x in xs]), ["ab", "c", "ab"]).ravel()
    array([2, 1, 2])
    >>> calls
    [['ab', 'c']]
    """
    first: dict = {}
    for o in objs:
        first.setdefault(key(o), o)
    keys = list(first)
    emb = np.asarray(encode([first[k] for k in keys]))
    row = {k: i for i, k in enumerate(keys)}
    return emb[[row[key(o)] for o in objs]]


class ClipScoreMetric(Metric):
    """CLIP-S (``ref=False``) or RefCLIP-S (``ref=True``) backed by a dual-encoder scorer."""

    def __init__(self, scorer, *, ref: bool, w: float = CLIP_S_WEIGHT, prefix: str = CLIP_S_PREFIX):
        if getattr(scorer, "family", None) != "dual" or not hasattr(scorer, "encode_text"):
            raise ValueError(f"{'RefCLIP-S' if ref else 'CLIP-S'} needs a dual-encoder scorer; "
                             f"{getattr(scorer, 'name', scorer)!r} is {getattr(scorer, 'family', '?')}")
        base = "RefCLIP-S" if ref else "CLIP-S"
        stand_in = getattr(scorer, "source", "") == "embedded"
        super().__init__(f"{'refclip-s' if ref else 'clip-s'}:{scorer.name}", f"{base} ({scorer.label})",
                         f"clipscore definition (Hessel et al. 2021), w = {w}, prefix {prefix!r}",
                         scorer=scorer.name, stand_in=stand_in, needs_images=True)
        self.model, self.ref, self.w, self.prefix = scorer, ref, w, prefix

    def compute_score(self, gts, res, images=None):
        ids = check_inputs(gts, res)
        if images is None or any(k not in images for k in ids):
            missing = [k for k in ids if images is None or k not in images][:5]
            raise ValueError(f"{self.name}: no image for id(s) {missing}; pass images={{id: PIL image}}")
        v = self._image_embeddings([images[k] for k in ids])
        c = encode_unique(self.model.encode_text, [self.prefix + res[k][0] for k in ids])
        if not self.ref:
            per = clip_s(v, c, w=self.w)
        else:
            refs = [[self.prefix + r for r in gts[k]] for k in ids]
            flat = encode_unique(self.model.encode_text, [r for rr in refs for r in rr])
            ends = np.cumsum([0] + [len(rr) for rr in refs])
            per = ref_clip_s(v, c, [flat[a:b] for a, b in zip(ends[:-1], ends[1:])], w=self.w)
        return float(per.mean()), per


    def _image_embeddings(self, imgs: Sequence) -> np.ndarray:
        """``encode_image`` of each distinct image object once per metric object, across calls (a probe scores
        many caption sets on the same images). The cache keeps a reference to each image beside its embedding,
        so an ``id`` cannot be reused by another image while it is cached."""
        cache = self.__dict__.setdefault("_image_cache", {})
        new = [im for im in {id(im): im for im in imgs}.values() if id(im) not in cache]
        if new:
            for im, e in zip(new, np.asarray(self.model.encode_image(new))):
                cache[id(im)] = (im, e)
        return np.stack([cache[id(im)][1] for im in imgs]) if imgs else np.zeros((0, 0))


class ScorerMetric(Metric):
    """Any registered scorer as a metric: per item its score of (image, candidate); corpus = mean."""

    def __init__(self, scorer):
        super().__init__(f"score:{scorer.name}", f"score ({scorer.label})", f"{scorer.source} scorer, output "
                         f"{scorer.output}", scorer=scorer.name, stand_in=getattr(scorer, "source", "") == "embedded",
                         needs_images=True)
        self.model = scorer

    def compute_score(self, gts, res, images=None):
        ids = check_inputs(gts, res)
        if images is None or any(k not in images for k in ids):
            raise ValueError(f"{self.name}: pass images={{id: PIL image}} for every id")
        per = np.asarray(self.model.score([images[k] for k in ids], [res[k][0] for k in ids]), dtype=float)
        return float(per.mean()), per


def _scorer(name: str, **kwargs):
    from analysis import registry

    return registry.build_scorer(name, **kwargs)


def clip_score(scorer_name: str, *, w: float = CLIP_S_WEIGHT, prefix: str = CLIP_S_PREFIX, **kwargs) -> Metric:
    """``clip-s:<dual-encoder scorer>``, e.g. ``clip-s:clip-mini`` or ``clip-s:clip:ViT-B-32/openai``."""
    return ClipScoreMetric(_scorer(scorer_name, **kwargs), ref=False, w=w, prefix=prefix)


def ref_clip_score(scorer_name: str, *, w: float = CLIP_S_WEIGHT, prefix: str = CLIP_S_PREFIX, **kwargs) -> Metric:
    """``refclip-s:<dual-encoder scorer>``."""
    return ClipScoreMetric(_scorer(scorer_name, **kwargs), ref=True, w=w, prefix=prefix)


def scorer_score(scorer_name: str, **kwargs) -> Metric:
    """``score:<any scorer>``: the mean of the scorer's per-pair scores."""
    return ScorerMetric(_scorer(scorer_name, **kwargs))


# ----------------------------------------------------------------------------- aligned CLIP-S (ReCap)
def aligned_embeddings(image: np.ndarray, amap) -> np.ndarray:
    """The aligned image embeddings of aCLIP-S: ``v' = normalise(map.apply(v))`` row by row, ``map`` an
    :class:`analysis.alignment.AlignmentMap` from the image side to the text side of the same encoder.

    >>> from analysis.alignment import AlignmentMap
    >>> aligned_embeddings(np.array([[1.0, 0.0]]), AlignmentMap(W=np.array([[0.0, 2.0], [1.0, 0.0]]),
    ...                                                         method="lstsq")).tolist()
    [[0.0, 1.0]]
    """
    from analysis.alignment import l2_normalise

    return l2_normalise(amap.apply(np.asarray(image, float)))


def aclip_s(image: np.ndarray, text: np.ndarray, amap, *, w: float = CLIP_S_WEIGHT) -> np.ndarray:
    """Per-item aCLIP-S, the study's reading of ReCap's aligned CLIP-S (Paischer et al., arXiv 2307.05591):
    CLIP-S with the image embedding replaced by the aligned one, ``w · max(cos(v', c), 0)`` with
    ``v' = normalise(map.apply(v))`` (:func:`aligned_embeddings`) and ``c`` as in :func:`clip_s`.

    >>> from analysis.alignment import AlignmentMap
    >>> aclip_s(np.array([[1.0, 0.0]]), np.array([[0.6, 0.8]]), AlignmentMap(W=np.eye(2), method="procrustes"))
    array([1.5])
    """
    return clip_s(aligned_embeddings(image, amap), text, w=w)


def ref_aclip_s(image: np.ndarray, text: np.ndarray, refs: Sequence[np.ndarray], amap, *,
                w: float = CLIP_S_WEIGHT) -> np.ndarray:
    """Per-item RefaCLIP-S: :func:`ref_clip_s` with ``a`` = aCLIP-S (:func:`aclip_s`), i.e. the harmonic mean
    ``2ab / (a + b)`` with ``b = max_r cos(c, r)`` exactly as RefCLIP-S (the references are text: not mapped)."""
    return ref_clip_s(aligned_embeddings(image, amap), text, refs, w=w)


class AlignedClipScoreMetric(ClipScoreMetric):
    """aCLIP-S (``ref=False``) or RefaCLIP-S (``ref=True``): :class:`ClipScoreMetric` with every image
    embedding ``v`` replaced by ``normalise(map.apply(v))`` before the same CLIP-S / RefCLIP-S code runs.
    ``info()["alignment"]`` says which pairs the map was fitted on (never the evaluated pairs)."""

    def __init__(self, scorer, amap, *, ref: bool, w: float = CLIP_S_WEIGHT, prefix: str = CLIP_S_PREFIX,
                 fitted_on: str = ""):
        super().__init__(scorer, ref=ref, w=w, prefix=prefix)
        src = amap.provenance.get("source") or {}
        self.name = f"{'refaclip-s' if ref else 'aclip-s'}:{scorer.name}"
        self.label = (f"{'RefaCLIP-S' if ref else 'aCLIP-S'} ({scorer.label}; {src.get('setting', 'given')} "
                      f"{amap.method}{' z-scored' if amap.standardize else ''} map)")
        self.source = (f"ReCap's aligned CLIP-S as this study reads it (Paischer et al., arXiv 2307.05591): image "
                       f"embedding v replaced by normalise(map.apply(v)); {self.source}")
        self.map = amap
        self.extra = {"alignment": {"method": amap.method, "standardize": bool(amap.standardize),
                                    "fitted_on": fitted_on, "source": src,
                                    "fingerprint": amap.provenance.get("fingerprint", "")}}

    def info(self) -> dict:
        return {**super().info(), "alignment": self.extra["alignment"]}

    def _image_embeddings(self, imgs: Sequence) -> np.ndarray:
        return aligned_embeddings(super()._image_embeddings(imgs), self.map)


def _aligned_metric(scorer_name: str, ref: bool, setting: str, method: str, standardize: bool, w: float,
                    prefix: str, smoke: bool, seed: int) -> Metric:
    from analysis import realignment

    scorer = _scorer(scorer_name, smoke=smoke, seed=seed)
    amap = realignment.fitted_map(scorer, setting=setting, method=method, standardize=standardize, smoke=smoke,
                                  seed=seed, prefix=prefix)
    return AlignedClipScoreMetric(scorer, amap, ref=ref, w=w, prefix=prefix, fitted_on=realignment.fitted_on(amap))


def aligned_clip_score(scorer_name: str, *, setting: str = "in-domain", method: str = "procrustes",
                       standardize: bool = False, w: float = CLIP_S_WEIGHT, prefix: str = CLIP_S_PREFIX,
                       smoke: bool = False, seed: int = 0) -> Metric:
    """``aclip-s:<dual-encoder scorer>``: aCLIP-S with the map of :func:`analysis.realignment.fitted_map`
    (``setting`` in-domain: the scorer's training pairs, COCO for published weights; transfer: the GCompris
    photos), fitted and cached on first use."""
    return _aligned_metric(scorer_name, False, setting, method, standardize, w, prefix, smoke, seed)


def ref_aligned_clip_score(scorer_name: str, *, setting: str = "in-domain", method: str = "procrustes",
                           standardize: bool = False, w: float = CLIP_S_WEIGHT, prefix: str = CLIP_S_PREFIX,
                           smoke: bool = False, seed: int = 0) -> Metric:
    """``refaclip-s:<dual-encoder scorer>``: RefaCLIP-S, the map as in :func:`aligned_clip_score`."""
    return _aligned_metric(scorer_name, True, setting, method, standardize, w, prefix, smoke, seed)
