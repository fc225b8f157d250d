"""Retrieval-augmented captioning (ReCap, Paischer et al., arXiv 2307.05591): retrieve training captions
similar to an image, put them in a prompt, let an instruction language model write a new caption.

ReCap states the pipeline [V] (``../shared/REFERENCE.md`` §2): a closed-form linear map takes an image
embedding into the text side of the dual encoder, captions similar to it are retrieved from a datastore,
and those captions plus a prompt go to FLAN-T5. The number of retrieved captions ``k``, the prompt wording,
the model size, the decoding and any re-ranking are not stated [U]; what this module uses are **the
study's choices**, stated here and in :data:`PROMPT`, :data:`SYSTEM` and :class:`Decoding`.

**Datastore** (:class:`Datastore`, :func:`build_datastore`). The captions, deduplicated by
:func:`caption_key`, and their L2-normalised text embeddings ``t_j = f_T(c_j) / ‖f_T(c_j)‖``, embedded once
and cached by content (sha256 of the caption list, the text tower's checkpoint hash, the text prefix).
:func:`training_datastore` builds it from the probe's **training** references only
(:func:`analysis.captioning.xe.caption_items` with ``split="train"``); test captions never enter it.

**Retrieval** (:func:`retrieve`). For an image embedding ``v`` and an optional alignment map ``A`` (any
object with ``apply(np.ndarray) -> np.ndarray``, e.g. :func:`analysis.alignment.fit_alignment`'s map, fitted
on training pairs), the query is ``q = A(v) / ‖A(v)‖`` (``v / ‖v‖`` without a map) and the score of caption
``j`` is the cosine ``s_j = ⟨q, t_j⟩``; the top ``k`` by descending ``s_j``, ties broken by the lower
index ``j``.

**Prompt** (:func:`build_prompt`), ``k = 5`` by default. The study's prompt. Its form was found by reading
SmolLM2-135M-Instruct's greedy outputs for eight retrievals of **test-split** images while prototyping
(stated because they were test images; no score was computed on them) (a one-shot example leaked its
own content into the answers; a user turn without a system turn made the model narrate "The new image is
..."); the wording was then picked among four variants on 24 images of the ``val`` split (word F1 against
the references and the share of narrating answers; this one tied for best), never on the test split.
The retrieved captions, most similar first, one per line after ``"- "``, go inside :data:`PROMPT`; an
instruct causal LM gets it as the user turn after the system turn :data:`SYSTEM` through its tokenizer's
chat template (``add_generation_prompt=True``); a seq2seq model (FLAN-T5) gets the plain prompt string.

**Generation** (:class:`RetrievalCaptioner`, :func:`load_generator`). ``lm="smollm2-135m-instruct"``: the
embedded SmolLM2-135M-Instruct of :func:`analysis.fluency.load_lm` (one load per process, shared with the
fluency measure); ``lm="flan-t5:<folder>"``: ``AutoModelForSeq2SeqLM`` + ``AutoTokenizer`` from a folder
written by ``save_pretrained`` (``local_files_only=True``, never ``trust_remote_code``), for a user with
FLAN-T5 weights. Decoding (:class:`Decoding`): greedy by default, beam search with ``num_beams > 1``, at most
``max_new_tokens = 20`` new tokens, generation stops at the first ``.``/``!``/``?``/newline; each output is
cut to one sentence (:func:`one_sentence`). Prompts are batched (left padding for the causal LM) and each
prompt's outputs are cached by content (sha256 of the exact model input, the model's hash, the decoding
parameters, the transformers version), so a rerun is instant. An output that is empty after post-processing
is replaced by the top retrieved caption and flagged ``fallback=True``. Measured with SmolLM2 on 2 CPU
cores, batches of 8, ``k = 5``: about 0.6 s per caption greedy, 1.5 s with 3 beams, 2.8 s for 4 sampled
candidates re-ranked by aCLIP-S; batched greedy outputs equalled one-prompt-at-a-time ones on 16 prompts.

**Candidates and re-ranking** (option). ``n_candidates = m > 1`` samples ``m`` outputs per prompt
(temperature and nucleus sampling, seeded per prompt from ``seed`` and the prompt's digest, so results do
not depend on batch composition) and keeps the one a scoring function ranks first, e.g. :func:`aclip_rerank`:
``w · max(⟨q, u_c⟩, 0)`` with ``u_c`` the normalised text embedding of ``"A photo depicts " + candidate``
and ``q`` the (aligned) query above, i.e. aCLIP-S as the study defines it (CLIP-S with the aligned image
embedding).

**Baseline** (:func:`nearest_neighbour_caption`): the top-1 retrieved caption, no language model.

**Datastore augmentation** (:func:`augment_datastore`, option): synthetic captions whose score (e.g.
RefaCLIP-S) is above a threshold are added to a new datastore, never duplicating a caption.

**The book page** (:func:`run_captions`, *Realignment: captions*): on the probe's held-out test images, the
nearest-neighbour caption with unaligned and aligned retrieval, unaligned retrieval + LM, aligned retrieval + LM
(``recap``) and the probe's XE captioner, scored by BLEU-4, METEOR, ROUGE-L, CIDEr-D, ``sg-f1``, CLIP-S,
RefCLIP-S, aCLIP-S and RefaCLIP-S under the scorer, with paired bootstrap differences (Holm within each
contrast). The datastore is embedded with the CLIP-S prefix ``"A photo depicts "``, the text side the map was
fitted toward (:func:`analysis.realignment.fitted_map`).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from analysis.runtime import torch_threads

CODE_VERSION = 1  # part of every cache key here: bump when prompts, post-processing or generation change
DATASTORE_KIND = "recap-datastore"
CAPTIONS_KIND = "recap-captions"
SMOLLM2 = "smollm2-135m-instruct"
FLAN_T5_PREFIX = "flan-t5:"
THREADS = 2  # CPU threads for generation (results are fixed for a thread count; as analysis.fluency)

SYSTEM = "You write short, factual image captions."
PROMPT = "Captions of similar images:\n{captions}\nWrite one caption for this image."
ITEM = "- {caption}"  # how each retrieved caption is listed in the prompt
STOP_STRINGS = (".", "!", "?", "\n")


# --------------------------------------------------------------------------- datastore
def caption_key(caption: str) -> str:
    """The form in which two captions count as the same (deduplication): lower-case ASCII letters and digits,
    runs of anything else collapsed to one space.

    >>> caption_key("  A big bear. ") == caption_key("a big  bear")
    True
    >>> caption_key("Two dogs!"), caption_key("2 dogs")
    ('two dogs', '2 dogs')
    """
    return " ".join(re.findall(r"[a-z0-9]+", str(caption).lower()))


def _normalise_rows(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a 2-d array (rows = items), got shape {x.shape}")
    n = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(n == 0) or not np.all(np.isfinite(x)):
        bad = np.flatnonzero((n[:, 0] == 0) | ~np.all(np.isfinite(x), axis=1))[:5].tolist()
        raise ValueError(f"{what}: row(s) {bad} are zero or not finite and cannot be L2-normalised")
    return x / n


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class Datastore:
    """Captions and their L2-normalised text embeddings (row ``j`` embeds ``captions[j]``).

    ``name`` is the text encoder (scorer) the rows come from, ``fingerprint`` a sha256 of the content
    (caption list, encoder checkpoint hash, prefix, and for an augmented store its parent's fingerprint plus
    what was added), ``prefix`` the text put before each caption when it was embedded, ``n_synthetic`` how
    many of the last rows were added by :func:`augment_datastore`. The embedding array is read-only."""

    captions: tuple[str, ...]
    embeddings: np.ndarray
    name: str
    fingerprint: str
    prefix: str = ""
    n_synthetic: int = 0

    def __post_init__(self):
        emb = np.array(self.embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != len(self.captions):
            raise ValueError(f"Datastore: {len(self.captions)} captions but embeddings of shape {emb.shape}; "
                             f"one row per caption is needed")
        if len(self.captions) and not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6):
            raise ValueError("Datastore: embedding rows must be L2-normalised (build it with build_datastore)")
        emb.setflags(write=False)
        object.__setattr__(self, "captions", tuple(self.captions))
        object.__setattr__(self, "embeddings", emb)

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __repr__(self) -> str:
        return (f"Datastore({len(self)} captions, d={self.dim}, encoder={self.name!r}, "
                f"synthetic={self.n_synthetic}, fingerprint={self.fingerprint[:12]})")


def dedupe(captions: Sequence[str]) -> list[str]:
    """``captions`` with each :func:`caption_key` kept once (its first occurrence, text as written, stripped).

    >>> dedupe(["A bear.", "a bear", "A cat", " a bear! "])
    ['A bear.', 'A cat']
    """
    seen, out = set(), []
    for c in captions:
        key = caption_key(c)
        if key and key not in seen:
            seen.add(key)
            out.append(c.strip())
    return out


def _encoder_hash(encode_text, model_hash: str | None) -> str | None:
    if model_hash:
        return str(model_hash)
    owner = getattr(encode_text, "__self__", None)
    h = getattr(owner, "checkpoint_hash", None)
    return str(h) if h else None


def build_datastore(captions: Sequence[str], encode_text: Callable[[list[str]], np.ndarray], *, name: str,
                    model_hash: str | None = None, prefix: str = "", deduplicate: bool = True,
                    cache: bool = True) -> Datastore:
    """Embed ``captions`` once with ``encode_text`` and return the :class:`Datastore`.

    ``t_j = f_T(prefix + c_j) / ‖f_T(prefix + c_j)‖`` for each caption ``c_j`` (after :func:`dedupe` when
    ``deduplicate``). The embeddings are cached (:func:`analysis.cache.cached_arrays`, kind
    ``recap-datastore``) under the sha256 of the caption list, the encoder ``name``, its checkpoint hash
    (``model_hash``, else ``encode_text.__self__.checkpoint_hash`` for a scorer's bound method), ``prefix``
    and :data:`CODE_VERSION`; without any checkpoint hash nothing is cached (a key without the weights'
    identity could return another model's embeddings).
    """
    from analysis.scorers.base import check_captions

    caps = check_captions(captions, "build_datastore")
    caps = dedupe(caps) if deduplicate else [c.strip() for c in caps]
    if not caps:
        raise ValueError("build_datastore: no captions given; a datastore needs at least one caption")
    h = _encoder_hash(encode_text, model_hash)
    recipe = {"captions_sha256": _sha256_json(caps), "n": len(caps), "encoder": name, "checkpoint_hash": h,
              "prefix": prefix, "code_version": CODE_VERSION}

    def compute() -> dict:
        emb = _normalise_rows(encode_text([prefix + c for c in caps]), f"build_datastore ({name})")
        if emb.shape[0] != len(caps):
            raise ValueError(f"build_datastore: encode_text gave {emb.shape[0]} rows for {len(caps)} captions")
        return {"embeddings": emb}

    if cache and h:
        from analysis import cache as C

        emb = C.cached_arrays(DATASTORE_KIND, recipe, compute)["embeddings"]
    else:
        emb = compute()["embeddings"]
    return Datastore(tuple(caps), emb, name, _sha256_json(recipe), prefix=prefix)


def training_captions(*, smoke: bool = False, datasets: Sequence[str] | None = None) -> list[str]:
    """Every reference of the probe's **training** split (:func:`analysis.captioning.xe.caption_items`,
    ``split="train"``), deduplicated (:func:`dedupe`): the default datastore's captions."""
    from analysis.captioning import xe

    items = xe.caption_items("train", smoke=smoke, datasets=tuple(datasets or xe.DATASETS))
    return dedupe([c for _, it in items for c in it.captions])


def training_datastore(scorer, *, smoke: bool = False, datasets: Sequence[str] | None = None,
                       prefix: str = "") -> Datastore:
    """The default datastore: :func:`training_captions` embedded by ``scorer.encode_text`` (a dual encoder,
    e.g. ``get_scorer("clip-mini")``, the CLIP-style stand-in), cached by content."""
    if not hasattr(scorer, "encode_text"):
        raise ValueError(f"training_datastore needs a dual-encoder scorer with encode_text; "
                         f"{getattr(scorer, 'name', scorer)!r} has none")
    return build_datastore(training_captions(smoke=smoke, datasets=datasets), scorer.encode_text,
                           name=scorer.name, model_hash=getattr(scorer, "checkpoint_hash", None), prefix=prefix)


# --------------------------------------------------------------------------- sharded embedding (analysis.executor)
SHARD_KIND = "recap-datastore-shard"
SHARD_SIZE = 4096  # captions per embedding unit (rounded up to a multiple of the scorer's batch size)
SHARD_VERSION = 1  # part of every shard's cache key: bump when embed_shard's output changes


def shard_bounds(n: int, shard_size: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), …]`` covering rows ``0..n`` in shards of ``shard_size`` rounded up to a multiple of
    ``batch_size``, so every shard is made of exactly the batches a single pass over all ``n`` rows makes
    (a text batch is padded to its longest caption: other batches could change the last float bits).

    >>> shard_bounds(100, 40, 32)
    [(0, 64), (64, 100)]
    >>> shard_bounds(0, 40, 32)
    []
    """
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_bounds: shard_size ({shard_size}) and batch_size ({batch_size}) must be >= 1")
    step = -(-int(shard_size) // int(batch_size)) * int(batch_size)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def _embedding_scorer(scorer: str, smoke: bool, seed: int, device: str | None = None):
    from analysis.registry import build_scorer

    sc = build_scorer(scorer, smoke=smoke, seed=seed, device=device)
    if not hasattr(sc, "encode_text"):
        raise ValueError(f"embedding needs a dual-encoder scorer with encode_text; {scorer!r} has none")
    return sc


def embed_shard(*, scorer: str, captions: list[str], prefix: str = "", smoke: bool = False, seed: int = 0,
                device: str | None = None, cache: bool = True) -> dict:
    """Embedding unit: ``f_T(prefix + c_j)`` (as ``encode_text`` gives it) for one shard of captions, with the
    registry's scorer ``scorer`` built in this process on ``device`` (an embedded stand-in loads from the cache).
    Returns ``{"embeddings", "checkpoint_hash"}`` (the encoder's identity, checked by the merge). Cached by content
    unless ``cache`` is False (kind ``recap-datastore-shard``: the captions' sha256, the encoder and its checkpoint
    hash, the prefix, the batch size, :data:`CODE_VERSION` and :data:`SHARD_VERSION`)."""
    from analysis import cache as C

    sc = _embedding_scorer(scorer, smoke, seed, device)
    caps = [str(c) for c in captions]
    h = _encoder_hash(sc.encode_text, getattr(sc, "checkpoint_hash", None))
    recipe = {"captions_sha256": _sha256_json(caps), "n": len(caps), "encoder": sc.name, "checkpoint_hash": h,
              "prefix": prefix, "batch_size": int(sc.batch_size), "code_version": CODE_VERSION,
              "shard_version": SHARD_VERSION}

    def compute() -> dict:  # as the encoder gives them: build_datastore normalises the merged rows once
        return {"embeddings": np.asarray(sc.encode_text([prefix + c for c in caps]))}

    emb = (C.cached_arrays(SHARD_KIND, recipe, compute) if h and cache else compute())["embeddings"]
    return {"embeddings": emb, "checkpoint_hash": h}


def shard_units(captions: Sequence[str], scorer: str, *, batch_size: int, shard_size: int = SHARD_SIZE,
                prefix: str = "", smoke: bool = False, seed: int = 0, device: str | None = None,
                cache: bool = True) -> list:
    """One :class:`analysis.executor.Unit` per shard of :func:`shard_bounds` (:func:`embed_shard`), in order; a
    shard asks for one CPU and 2 GiB, or a quarter of a GPU on a CUDA device."""
    from analysis.executor import Unit, resources
    from analysis.runtime import device as default_device

    device = device or default_device()
    bounds = shard_bounds(len(captions), shard_size, batch_size)
    return [Unit(f"shard:{scorer}/{i:05d}", "shard", "analysis.captioning.retrieval:embed_shard",
                 {"scorer": scorer, "captions": list(captions[a:b]), "prefix": prefix, "smoke": smoke, "seed": seed,
                  "device": device, "cache": cache},
                 {"scorer": scorer, "rows": f"{a}..{b - 1}", "of": len(captions)},
                 resources(cpus=1, gpus=0.25, memory_gb=2, device=device))
            for i, (a, b) in enumerate(bounds)]


def build_datastore_sharded(captions: Sequence[str], scorer: str, *, executor=None, shard_size: int = SHARD_SIZE,
                            prefix: str = "", smoke: bool = False, seed: int = 0, deduplicate: bool = True,
                            cache: bool = True, progress: bool = True, device: str | None = None) -> Datastore:
    """:func:`build_datastore` with the embeddings computed in shards (:func:`shard_units`) on ``executor`` (the
    local one when None) and merged in order: the same captions, the same embeddings byte for byte, the same
    cache entry (the whole store's recipe is :func:`build_datastore`'s, so either path hits the other's entry).
    Every shard must come from the encoder this process built (same checkpoint hash), else nothing is merged."""
    from analysis.executor import ExecutorError, LocalExecutor

    sc = _embedding_scorer(scorer, smoke, seed, device)
    want = _encoder_hash(sc.encode_text, getattr(sc, "checkpoint_hash", None))

    def encode(texts: list[str]) -> np.ndarray:  # texts are prefix + caption, in order
        raw = [t[len(prefix):] for t in texts]
        units = shard_units(raw, scorer, batch_size=sc.batch_size, shard_size=shard_size, prefix=prefix,
                            smoke=smoke, seed=seed, device=device, cache=cache)
        out = (executor or LocalExecutor()).run(units, progress=progress)
        other = [u.id for u in units if out[u.id]["checkpoint_hash"] != want]
        if other:
            raise ExecutorError(f"shard(s) {', '.join(other[:3])} were embedded by another {scorer} checkpoint than "
                                f"this process's ({want}); every worker must load the same weights (same cache, "
                                "same device type, same --smoke/--seed)")
        return np.concatenate([out[u.id]["embeddings"] for u in units]) if units else np.zeros((0, 0))

    return build_datastore(captions, encode, name=sc.name, model_hash=getattr(sc, "checkpoint_hash", None),
                           prefix=prefix, deduplicate=deduplicate, cache=cache)


# --------------------------------------------------------------------------- retrieval
def query_embeddings(image_emb: np.ndarray, *, alignment=None) -> np.ndarray:
    """``q = A(v) / ‖A(v)‖`` per row (``v / ‖v‖`` when ``alignment`` is None); a 1-d ``v`` is one row.

    >>> query_embeddings(np.array([3.0, 4.0]))
    array([[0.6, 0.8]])
    """
    v = np.asarray(image_emb, dtype=np.float64)
    v = v[None, :] if v.ndim == 1 else v
    if alignment is not None:
        if not hasattr(alignment, "apply"):
            raise TypeError(f"alignment must have .apply(np.ndarray) -> np.ndarray (e.g. the map of "
                            f"analysis.alignment.fit_alignment); got {type(alignment).__name__}")
        v = np.asarray(alignment.apply(v), dtype=np.float64)
        v = v[None, :] if v.ndim == 1 else v
    return _normalise_rows(v, "retrieve: image embeddings" + (" after the alignment map" if alignment else ""))


def top_k(sims: np.ndarray, k: int, *, decimals: int = 12) -> np.ndarray:
    """Indices of the ``k`` largest entries of each row of ``sims``, largest first; entries equal after
    rounding to ``decimals`` places count as tied and keep ascending index order (a stable sort), so the
    result does not depend on floating-point noise in the last bits.

    >>> top_k(np.array([[0.2, 0.9, 0.5, 0.9]]), 3).tolist()
    [[1, 3, 2]]
    """
    key = -np.round(np.asarray(sims, dtype=np.float64), decimals)
    return np.argsort(key, axis=1, kind="stable")[:, :k]


def retrieve(image_emb: np.ndarray, store: Datastore, *, k: int = 5, alignment=None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` captions of ``store`` for each image embedding: ``(indices, sims)``, each ``(n, k)``.

    With ``q = A(v) / ‖A(v)‖`` (``A`` = ``alignment.apply``; ``q = v / ‖v‖`` without a map) and the
    datastore's normalised rows ``t_j``, the score of caption ``j`` is the cosine ``s_j = ⟨q, t_j⟩``;
    the ``k`` largest, in descending order, ties (equal to 12 decimals) broken by the lower index ``j``.
    A 1-d ``image_emb`` is one image (results still ``(1, k)``); ``k`` larger than the store gives all of it.

    >>> store = Datastore(("a", "b", "c"), np.eye(3), "toy", "0")
    >>> idx, sims = retrieve(np.array([0.0, 2.0, 1.0]), store, k=2)
    >>> idx.tolist(), np.round(sims, 3).tolist()
    ([[1, 2]], [[0.894, 0.447]])
    """
    if int(k) < 1:
        raise ValueError(f"retrieve: k must be at least 1, got {k}")
    q = query_embeddings(image_emb, alignment=alignment)
    if q.shape[1] != store.dim:
        raise ValueError(f"retrieve: the query embeddings have dimension {q.shape[1]} but the datastore "
                         f"({store.name}) has {store.dim}; pass an alignment map into the text space of "
                         f"{store.name!r} or embed the images with the same dual encoder")
    sims = q @ store.embeddings.T
    idx = top_k(sims, min(int(k), len(store)))
    return idx, np.take_along_axis(sims, idx, axis=1)


def nearest_neighbour_caption(image_emb: np.ndarray, store: Datastore, *, alignment=None):
    """The baseline without a language model: the top-1 retrieved caption (:func:`retrieve` with ``k=1``).
    A string for a 1-d ``image_emb``, a list of strings for a 2-d one.

    >>> nearest_neighbour_caption(np.array([0.1, 1.0]), Datastore(("a cat", "a dog"), np.eye(2), "toy", "0"))
    'a dog'
    """
    idx, _ = retrieve(image_emb, store, k=1, alignment=alignment)
    out = [store.captions[int(i)] for i in idx[:, 0]]
    return out[0] if np.asarray(image_emb).ndim == 1 else out


# --------------------------------------------------------------------------- prompt and post-processing
def build_prompt(retrieved: Sequence[str], *, template: str = PROMPT, item: str = ITEM) -> str:
    """The plain prompt: each retrieved caption (whitespace collapsed to single spaces), most similar
    first, formatted with ``item`` and joined by newlines, in place of ``{captions}`` in ``template``.
    An instruct causal LM gets it through :func:`chat_prompt`; a seq2seq model gets it as it is.

    >>> print(build_prompt(["A zebra.", "a big  horse"]))
    Captions of similar images:
    - A zebra.
    - a big horse
    Write one caption for this image.
    """
    if "{captions}" not in template:
        raise ValueError(f"build_prompt: the template must contain '{{captions}}'; got {template!r}")
    caps = [" ".join(str(c).split()) for c in retrieved]
    if not caps or not all(caps):
        raise ValueError("build_prompt: give at least one non-empty retrieved caption")
    return template.replace("{captions}", "\n".join(item.format(caption=c) for c in caps))


def chat_prompt(prompt: str, tokenizer, *, system: str | None = SYSTEM) -> str:
    """The text an instruct causal LM receives: ``[system turn (when given), user turn = prompt]`` through
    ``tokenizer.apply_chat_template(..., tokenize=False, add_generation_prompt=True)``."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"chat_prompt: tokenizer {type(tokenizer).__name__} has no chat template; "
                         f"use an instruct model's tokenizer, or pass the plain prompt")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


_LABEL = re.compile(r"^(?:caption|answer|description)\s*:\s*", re.IGNORECASE)
_SENTENCE = re.compile(r"^(.+?[.!?])[\"'”’]*(?:\s|$)")
_QUOTES = "\"'“”‘’`"


def one_sentence(text: str) -> str:
    """Post-processing of a generated caption: strip; the first non-empty line; drop a leading list marker
    (``-``, ``*``, ``•``), a ``Caption:``/``Answer:``/``Description:`` label and surrounding quotes; keep up
    to the end of the first sentence (the first ``.``, ``!`` or ``?`` followed, after any closing quote, by a
    space or the end).
    ``""`` when nothing is left.

    >>> one_sentence("  A sock.\\n\\nThis image is a classic example.")
    'A sock.'
    >>> one_sentence('- Caption: "A big bear on a rock. It sleeps."')
    'A big bear on a rock.'
    >>> one_sentence("a dog running on 2.5 km of beach")
    'a dog running on 2.5 km of beach'
    >>> one_sentence("\\n  \\n")
    ''
    """
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    s = lines[0].lstrip("-*• ").strip()
    s = _LABEL.sub("", s).strip().strip(_QUOTES).strip()
    m = _SENTENCE.match(s)
    s = (m.group(1) if m else s).strip().strip(_QUOTES).strip()
    return s if re.search(r"[A-Za-z0-9]", s) else ""


# --------------------------------------------------------------------------- decoding and generators
@dataclass(frozen=True)
class Decoding:
    """The study's decoding parameters (ReCap's are not stated [U]).

    Greedy when ``num_beams == 1`` and ``n_candidates == 1``; beam search with ``num_beams > 1``; with
    ``n_candidates > 1``, ``n_candidates`` samples per prompt (``temperature``, nucleus ``top_p``), seeded
    per prompt from ``seed`` and the prompt's sha256. At most ``max_new_tokens`` new tokens; with
    ``stop_at_sentence_end`` generation stops at the first of :data:`STOP_STRINGS`."""

    max_new_tokens: int = 20
    num_beams: int = 1
    n_candidates: int = 1
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    stop_at_sentence_end: bool = True

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.n_candidates < 1:
            raise ValueError(f"Decoding: max_new_tokens, num_beams and n_candidates must be >= 1; got {self}")
        if self.n_candidates > 1 and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(f"Decoding: sampling needs temperature > 0 and 0 < top_p <= 1; got {self}")

    @property
    def sampling(self) -> bool:
        return self.n_candidates > 1

    def generate_kwargs(self) -> dict:
        """The keyword arguments for ``transformers``' ``generate`` (besides inputs, padding and stops)."""
        kw = {"max_new_tokens": self.max_new_tokens}
        if self.sampling:
            return {**kw, "do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                    "num_return_sequences": self.n_candidates, "num_beams": 1}
        return {**kw, "do_sample": False, "num_beams": self.num_beams}


def prompt_seed(seed: int, model_input: str) -> int:
    """The sampling seed of one prompt: the first 8 hex digits of ``sha256(f"{seed}:{model_input}")``.

    >>> prompt_seed(0, "x") == prompt_seed(0, "x") != prompt_seed(1, "x")
    True
    """
    return int(hashlib.sha256(f"{int(seed)}:{model_input}".encode()).hexdigest()[:8], 16)


class HFGenerator:
    """A ``transformers`` model and tokenizer behind one interface: :meth:`model_input` (the exact text the
    model reads for a plain prompt) and :meth:`generate` (raw decoded continuations, ``n_candidates`` per
    input). ``kind`` is ``"causal"`` (left padding, the prompt's tokens cut from the output, chat template
    when the tokenizer has one) or ``"seq2seq"`` (the plain prompt to the encoder). ``model_hash``
    identifies the weights in cache keys. ``device`` is where the model's inputs go: by default the device of the
    model's weights (a model without parameters: :func:`analysis.runtime.device`)."""

    def __init__(self, model, tokenizer, *, kind: str, name: str, model_hash: str, device: str | None = None,
                 system: str | None = SYSTEM, label: str | None = None):
        if kind not in ("causal", "seq2seq"):
            raise ValueError(f"HFGenerator: kind must be 'causal' or 'seq2seq', got {kind!r}")
        if device is None:
            from analysis.runtime import module_device

            device = module_device(model)
        self.model, self.tokenizer, self.kind, self.name = model, tokenizer, kind, name
        self.model_hash, self.device, self.system, self.label = model_hash, device, system, label or name

    def model_input(self, prompt: str) -> str:
        if self.kind == "causal" and getattr(self.tokenizer, "chat_template", None):
            return chat_prompt(prompt, self.tokenizer, system=self.system)
        return prompt

    def _pad_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise ValueError(f"{self.name}: the tokenizer has neither a pad nor an end-of-sequence token")
        return int(pad)

    def generate(self, inputs: Sequence[str], decoding: Decoding) -> list[list[str]]:
        """Decode each input (one batch) and return ``n_candidates`` raw strings per input."""
        import torch

        kw = {"padding": True, "return_tensors": "pt"}
        if self.kind == "causal":
            kw.update(padding_side="left", add_special_tokens=False)  # the chat template holds the specials
        x = self.tokenizer(list(inputs), **kw).to(self.device)
        extra = {}
        if decoding.stop_at_sentence_end:
            extra = {"stop_strings": list(STOP_STRINGS), "tokenizer": self.tokenizer}
        with torch_threads(THREADS), torch.inference_mode():
            out = self.model.generate(**x, pad_token_id=self._pad_id(), **decoding.generate_kwargs(), **extra)
        if self.kind == "causal":
            out = out[:, x["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        m = decoding.n_candidates if decoding.sampling else 1
        return [texts[i * m:(i + 1) * m] for i in range(len(inputs))]

    def __repr__(self) -> str:
        return f"<HFGenerator {self.label} [{self.kind}, {self.model_hash[:12]}]>"


@lru_cache(maxsize=8)
def _folder_hash(folder: str, stamp: tuple) -> str:
    from analysis.cache import file_sha256

    h = hashlib.sha256()
    for p in sorted(Path(folder).iterdir()):
        if p.is_file():
            h.update(p.name.encode() + file_sha256(p).encode())
    return h.hexdigest()


def folder_hash(folder: str | Path) -> str:
    """sha256 over the names and sha256 of the files directly in ``folder`` (memoised per file sizes and
    modification times): the identity of a ``save_pretrained`` folder."""
    folder = Path(folder)
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file())
    return _folder_hash(str(folder.resolve()), stamp)


def smollm2_hash() -> str:
    """Identity of the embedded SmolLM2 weights: sha256 of the GGUF file's sha256, the transformers version
    that dequantised it (the recipe of :func:`analysis.fluency.lm_folder`) and the model name."""
    import transformers

    from analysis import fluency

    return _sha256_json({"model": fluency.LM_NAME, "gguf_sha256": fluency.gguf_sha256(),
                         "transformers": transformers.__version__})


def load_flan_t5(folder: str | Path, *, device: str | None = None) -> HFGenerator:
    """A seq2seq generator from a FLAN-T5 (or any ``AutoModelForSeq2SeqLM``) folder written by
    ``save_pretrained``: local files only, ``trust_remote_code=False``, safetensors when the folder has them
    (else transformers reads ``pytorch_model.bin`` with ``torch.load(weights_only=True)``, its default), on
    ``device`` (default :func:`analysis.runtime.device`)."""
    from analysis.runtime import resolve_device, set_offline
    from analysis.scorers.base import WeightsUnavailable

    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise WeightsUnavailable(
            f"flan-t5: no model folder at {folder} (no config.json). Download FLAN-T5 elsewhere, e.g. "
            f"`huggingface-cli download google/flan-t5-base --local-dir <folder>`, copy the folder here and "
            f"pass lm='flan-t5:<folder>'")
    device = resolve_device(device)
    set_offline()
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    safetensors = any(folder.glob("*.safetensors"))
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    model = AutoModelForSeq2SeqLM.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False,
                                                  use_safetensors=True if safetensors else None)
    model.to(device).eval()
    return HFGenerator(model, tok, kind="seq2seq", name=f"{FLAN_T5_PREFIX}{folder}", model_hash=folder_hash(folder),
                       device=device, label=f"FLAN-T5 ({folder.name})")


def load_generator(lm="smollm2-135m-instruct", *, device: str | None = None) -> HFGenerator:
    """The generator named by ``lm``: ``"smollm2-135m-instruct"`` (embedded; :func:`analysis.fluency.load_lm`,
    loaded once per process and device and shared with the fluency measure), ``"flan-t5:<folder>"``
    (:func:`load_flan_t5`), or an object with ``generate``/``model_input``/``model_hash``, returned as is. Named
    models are loaded on ``device`` (default :func:`analysis.runtime.device`)."""
    if not isinstance(lm, str):
        if all(hasattr(lm, a) for a in ("generate", "model_input", "model_hash", "name")):
            return lm
        raise TypeError(f"lm must be a name or a generator object; got {type(lm).__name__}")
    if lm == SMOLLM2:
        from analysis.runtime import resolve_device

        device = resolve_device(device)
        from analysis import fluency

        model, tok = fluency.load_lm(device)
        return HFGenerator(model, tok, kind="causal", name=SMOLLM2, model_hash=smollm2_hash(), device=device,
                           label=f"{fluency.LM_NAME} (dequantised Q4_1)")
    if lm.startswith(FLAN_T5_PREFIX) and len(lm) > len(FLAN_T5_PREFIX):
        return load_flan_t5(lm[len(FLAN_T5_PREFIX):], device=device)
    raise ValueError(f"unknown lm {lm!r}; valid: {SMOLLM2!r} (embedded) or 'flan-t5:<folder saved by "
                     f"save_pretrained>'")


# --------------------------------------------------------------------------- cached generation
def _caption_recipe(generator, model_input: str, decoding: Decoding) -> dict:
    import transformers

    return {"model": generator.name, "model_hash": generator.model_hash,
            "input_sha256": hashlib.sha256(model_input.encode()).hexdigest(), "decoding": asdict(decoding),
            "transformers": transformers.__version__, "threads": THREADS,
            "device": str(getattr(generator, "device", "cpu")).split(":")[0], "code_version": CODE_VERSION}


def _cached(recipe: dict) -> list[str] | None:
    from analysis import cache as C

    folder = C.root() / CAPTIONS_KIND / C.recipe_key(recipe)
    if folder.is_dir() and C.verify(folder):
        return json.loads((folder / "outputs.json").read_text())["outputs"]
    return None


def _store(recipe: dict, model_input: str, outputs: list[str]) -> None:
    from analysis import cache as C

    def write(d: Path) -> None:
        (d / "outputs.json").write_text(json.dumps({"input": model_input, "outputs": outputs}, ensure_ascii=False))

    C.entry(CAPTIONS_KIND, recipe, write)


def generate_cached(generator, model_inputs: Sequence[str], decoding: Decoding = Decoding(), *,
                    batch_size: int = 8, cache: bool = True, progress: bool = True) -> list[list[str]]:
    """Raw outputs (``n_candidates`` strings) for each model input, each distinct input generated once.

    Cached per input (kind ``recap-captions``) under the sha256 of the exact input text, the generator's
    name and ``model_hash``, the decoding parameters, the transformers version, thread count and device
    type. Inputs not in the cache are generated in batches of ``batch_size`` sorted by length (less
    padding) under greedy or beam decoding, and one input at a time when sampling (each seeded by
    :func:`prompt_seed`, so an input's samples do not depend on what else is generated).
    """
    import torch
    from tqdm.auto import tqdm

    inputs = list(model_inputs)
    distinct = list(dict.fromkeys(inputs))
    recipes = {s: _caption_recipe(generator, s, decoding) for s in distinct}
    done: dict[str, list[str]] = {}
    if cache:
        for s in distinct:
            hit = _cached(recipes[s])
            if hit is not None:
                done[s] = hit
    todo = sorted((s for s in distinct if s not in done), key=len)
    step = 1 if decoding.sampling else max(1, int(batch_size))
    batches = [todo[a:a + step] for a in range(0, len(todo), step)]
    for batch in tqdm(batches, desc=f"captions ({getattr(generator, 'label', generator.name)})", unit="batch",
                      disable=not progress or not batches, leave=False):
        if decoding.sampling:
            dev = torch.device(getattr(generator, "device", "cpu"))
            with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
                torch.manual_seed(prompt_seed(decoding.seed, batch[0]))
                outs = generator.generate(batch, decoding)
        else:
            outs = generator.generate(batch, decoding)
        for s, o in zip(batch, outs):
            done[s] = [str(t) for t in o]
            if cache:
                _store(recipes[s], s, done[s])
    return [done[s] for s in inputs]


# --------------------------------------------------------------------------- re-ranking
def aclip_rerank(encode_text: Callable[[list[str]], np.ndarray], *, prefix: str | None = None,
                 w: float | None = None) -> Callable[[np.ndarray, list[str]], np.ndarray]:
    """A re-ranking function ``(q, candidates) -> scores``: aCLIP-S as the study defines it, CLIP-S
    (:func:`analysis.metrics.clip_s`, ``w · max(cos, 0)``, prefix ``"A photo depicts "``) with the image
    embedding replaced by the (aligned, normalised) query ``q`` that :class:`RetrievalCaptioner` passes."""
    from analysis import metrics

    prefix = metrics.CLIP_S_PREFIX if prefix is None else prefix
    w = metrics.CLIP_S_WEIGHT if w is None else w

    def score(q: np.ndarray, candidates: list[str]) -> np.ndarray:
        u = _normalise_rows(encode_text([prefix + c for c in candidates]), "aclip_rerank")
        return metrics.clip_s(np.repeat(np.asarray(q, float)[None, :], len(candidates), 0), u, w=w)

    return score


def choose(candidates: Sequence[str], scores: np.ndarray | None) -> int:
    """Index of the chosen candidate: the highest score (first on ties); the first non-empty one without
    scores; ``-1`` when all are empty.

    >>> choose(["", "a dog", "a cat"], np.array([9.0, 0.3, 0.3]))
    1
    """
    ok = [i for i, c in enumerate(candidates) if c]
    if not ok:
        return -1
    if scores is None:
        return ok[0]
    s = np.asarray(scores, dtype=float)
    return max(ok, key=lambda i: (s[i], -i))


# --------------------------------------------------------------------------- the captioner
class RetrievalCaptioner:
    """Retrieve ``k`` captions per image from ``store`` (aligned by ``alignment`` when given), build the
    prompt, generate with ``lm`` and post-process (see the module docstring).

    ``lm``: ``"smollm2-135m-instruct"`` (default), ``"flan-t5:<folder>"`` or a generator object (loaded on
    first use). ``encode_image`` (e.g. ``scorer.encode_image``) is needed only when :meth:`caption` is
    given images rather than embeddings. ``rerank`` is a function ``(q, candidates) -> scores``
    (e.g. :func:`aclip_rerank`) used when ``decoding.n_candidates > 1``. A named ``lm`` is loaded on ``device``
    (default :func:`analysis.runtime.device`).
    """

    def __init__(self, store: Datastore, *, lm=SMOLLM2, alignment=None, encode_image=None, k: int = 5,
                 template: str = PROMPT, decoding: Decoding = Decoding(), rerank=None, device: str | None = None,
                 batch_size: int = 8, cache: bool = True, progress: bool = True):
        if int(k) < 1:
            raise ValueError(f"RetrievalCaptioner: k must be at least 1, got {k}")
        build_prompt(["x"], template=template)  # checks the template now, not after retrieval
        self.store, self.lm, self.alignment, self.encode_image = store, lm, alignment, encode_image
        self.k, self.template, self.decoding, self.rerank = int(k), template, decoding, rerank
        self.device, self.batch_size, self.cache, self.progress = device, batch_size, cache, progress
        self._generator = None

    @property
    def generator(self):
        if self._generator is None:
            self._generator = load_generator(self.lm, device=self.device)
        return self._generator

    def embeddings(self, images_or_embs) -> np.ndarray:
        """Image embeddings: a numeric 2-d array (or one 1-d row) passes through; anything else is a
        sequence of images for ``encode_image``."""
        if isinstance(images_or_embs, np.ndarray) and images_or_embs.dtype.kind in "fiu":
            return images_or_embs[None, :] if images_or_embs.ndim == 1 else images_or_embs
        if self.encode_image is None:
            raise ValueError("RetrievalCaptioner.caption was given images but no encode_image; pass "
                             "encode_image=scorer.encode_image, or pass image embeddings (np.ndarray)")
        return np.asarray(self.encode_image(list(images_or_embs)), dtype=np.float64)

    def caption(self, images_or_embs, *, k: int | None = None, decoding: Decoding | None = None) -> list[dict]:
        """One row per image: ``caption`` (post-processed), ``retrieved`` (the ``k`` captions, most similar
        first), ``sims`` (their cosines), ``prompt`` (the plain prompt; the model reads it through
        :meth:`HFGenerator.model_input`), ``raw`` (the chosen output before post-processing), ``candidates``
        (all post-processed outputs), ``scores`` (their re-ranking scores, or None), ``fallback`` (True
        when every output was empty and the top retrieved caption stands in), ``lm``, ``k``, ``aligned``."""
        decoding = decoding or self.decoding
        k = int(k or self.k)
        q = query_embeddings(self.embeddings(images_or_embs), alignment=self.alignment)
        idx, sims = retrieve(q, self.store, k=k)
        retrieved = [[self.store.captions[int(j)] for j in row] for row in idx]
        prompts = [build_prompt(r, template=self.template) for r in retrieved]
        gen = self.generator
        inputs = [gen.model_input(p) for p in prompts]
        raw = generate_cached(gen, inputs, decoding, batch_size=self.batch_size, cache=self.cache,
                              progress=self.progress)
        rows = []
        for i, (r, p, outs) in enumerate(zip(retrieved, prompts, raw)):
            cands = [one_sentence(o) for o in outs]
            scores = None
            if self.rerank is not None and len(cands) > 1:
                uniq = [c for c in dict.fromkeys(cands) if c]
                s = dict(zip(uniq, np.asarray(self.rerank(q[i], uniq), float))) if uniq else {}
                scores = [float(s[c]) if c else float("-inf") for c in cands]
            j = choose(cands, scores)
            rows.append({"caption": cands[j] if j >= 0 else r[0], "retrieved": r,
                         "sims": [float(x) for x in sims[i]], "prompt": p, "raw": outs[j] if j >= 0 else outs[0],
                         "candidates": cands, "scores": scores, "fallback": j < 0, "lm": gen.name, "k": k,
                         "aligned": self.alignment is not None})
        return rows


# --------------------------------------------------------------------------- datastore augmentation
def augment_datastore(store: Datastore, candidates: Sequence[str], scores: Sequence[float], *, threshold: float,
                      embeddings: np.ndarray) -> Datastore:
    """A new datastore: ``store`` plus each candidate caption whose score is strictly above ``threshold``
    (e.g. RefaCLIP-S of synthetic captions), its row of ``embeddings`` (same encoder and prefix as the
    store; re-normalised). Never duplicates: a candidate whose :func:`caption_key` is already in the store is
    skipped, and of several candidates with one key only the highest-scoring (first on ties) is added.
    Added captions keep the candidates' order. ``store`` is not changed; with nothing added it is
    returned as it is. The new fingerprint hashes the parent's, the added captions, their embeddings and
    the threshold.
    """
    cands = list(candidates)
    s = np.asarray(scores, dtype=np.float64)
    emb = np.asarray(embeddings, dtype=np.float64)
    if len(cands) != len(s) or (len(cands) and emb.shape[0] != len(cands)):
        raise ValueError(f"augment_datastore: {len(cands)} candidates, {len(s)} scores and "
                         f"{emb.shape[0] if emb.ndim else 0} embedding rows must match")
    have = {caption_key(c) for c in store.captions}
    best: dict[str, int] = {}
    for i, c in enumerate(cands):
        key = caption_key(c) if isinstance(c, str) else ""
        if not key or key in have or not s[i] > threshold:
            continue
        if key not in best or s[i] > s[best[key]]:
            best[key] = i
    keep = sorted(best.values())
    if not keep:
        return store
    if emb.shape[1] != store.dim:
        raise ValueError(f"augment_datastore: candidate embeddings have dimension {emb.shape[1]}, the store "
                         f"{store.dim}; embed them with {store.name!r} (prefix {store.prefix!r})")
    add = _normalise_rows(emb[keep], "augment_datastore: candidate embeddings")
    added = [cands[i].strip() for i in keep]
    fp = _sha256_json({"parent": store.fingerprint, "added": added, "threshold": float(threshold),
                       "embeddings_sha256": hashlib.sha256(np.ascontiguousarray(add).tobytes()).hexdigest()})
    return Datastore(store.captions + tuple(added), np.vstack([store.embeddings, add]), store.name, fp,
                     prefix=store.prefix, n_synthetic=store.n_synthetic + len(added))


# =========================================================================== the book page (realign-captions)
#: the page's systems, in the book's order (``recap-aug`` only with ``augment=True``)
PAGE_RUN = "recap-captions"
PAGE_SYSTEMS = ("nn", "nn-aligned", "lm", "recap", "xe")
AUGMENTED = "recap-aug"
LM_SYSTEMS = ("lm", "recap", AUGMENTED)
SYSTEM_LABELS = {
    "nn": "nearest-neighbour caption, unaligned retrieval (no LM)",
    "nn-aligned": "nearest-neighbour caption, aligned retrieval (no LM)",
    "lm": "unaligned retrieval + LM",
    "recap": "aligned retrieval + LM (ReCap as this study reads it)",
    "xe": "XE captioner (cross-entropy only; trained here)",
    AUGMENTED: "aligned retrieval + LM, datastore augmented with filtered synthetic captions",
}
#: the paired differences ``a − b`` the page tests, each with its question (one Holm family per question)
CONTRASTS = (("recap", "lm", "does alignment help the LM?"),
             ("recap", "nn-aligned", "does the LM help?"),
             ("recap", "xe", "retrieval + LM against the trained captioner"))
AUGMENT_CONTRAST = (AUGMENTED, "recap", "does datastore augmentation help?")
N_EXAMPLES = 8  # example images: the probe pages' own (analysis.probe.example_images with the page's seed)
SMOKE_IMAGES, SMOKE_K, SMOKE_BOOT = 4, 3, 200
AUGMENT_IMAGES, SMOKE_AUGMENT_IMAGES = 64, 4
SCORE_DECIMALS = 10  # per-caption scores are rounded to this many decimals before any summary: a metric's
# summation order (e.g. CIDEr-D's hash-ordered n-gram dictionaries) changes the last bits from run to run, and the
# result files must be byte-identical for a seed
EMPTY = "empty"  # stands in for an empty caption while a metric runs; its values are then set to NaN


def page_metrics(scorer: str = "clip-mini", *, smoke: bool = False) -> list[str]:
    """The metrics (registry names) every caption gets: BLEU-4, METEOR, ROUGE-L, CIDEr-D (pycocoevalcap; in
    smoke runs only the study's own CIDEr-D, ``cider-d-fast``, which needs no JVM), ``sg-f1``, and CLIP-S,
    RefCLIP-S, aCLIP-S, RefaCLIP-S under ``scorer``.

    >>> page_metrics("clip-mini", smoke=True)[:2]
    ['cider-d-fast', 'sg-f1']
    """
    ngram = ["cider-d-fast"] if smoke else ["bleu-4", "meteor", "rouge-l", "cider-d"]
    return [*ngram, "sg-f1", f"clip-s:{scorer}", f"refclip-s:{scorer}", f"aclip-s:{scorer}", f"refaclip-s:{scorer}"]


def row_metric(name: str) -> str:
    """The metric's name in the rows: ``cider-d-fast`` (tested equal to pycocoevalcap's CIDEr-D) is ``cider-d``,
    so smoke and full rows share names.

    >>> row_metric("cider-d-fast"), row_metric("aclip-s:clip-mini")
    ('cider-d', 'aclip-s:clip-mini')
    """
    return "cider-d" if name == "cider-d-fast" else name


def page_images(test, n_images: int | None, seed: int, *, n_examples: int = N_EXAMPLES) -> tuple[list[int], list[int]]:
    """``(captioned, examples)``: indices into the probe's test split. The examples are the probe pages' own
    (:func:`analysis.probe.example_images` with ``seed``); ``captioned`` is every image (``n_images`` None or
    at least the split), else the examples first (stamp scenes and stamps alternating) and then a seeded
    permutation of the rest, cut to ``n_images`` and sorted; the examples shown are those captioned."""
    from analysis.probe import example_images
    from analysis.runtime import rng

    n = len(test)
    ex = example_images(test, min(n_examples, n), seed)
    if n_images is None or int(n_images) >= n:
        return list(range(n)), ex
    scenes = [i for i in ex if test.graphs[i] is not None]
    stamps = [i for i in ex if test.graphs[i] is None]
    first = [i for pair in zip(scenes, stamps) for i in pair] + scenes[len(stamps):] + stamps[len(scenes):]
    rest = [i for i in rng(seed).permutation(n).tolist() if i not in set(first)]
    pick = sorted((first + rest)[:max(1, int(n_images))])
    return pick, [i for i in ex if i in set(pick)]


def copy_share(captions: Sequence[str], retrieved: Sequence[Sequence[str]]) -> tuple[int, int]:
    """``(copies, n)``: how many captions equal (:func:`caption_key`) one of their own retrieved captions.

    >>> copy_share(["A dog.", "a cat on a mat"], [["a dog", "a bird"], ["a cat"]])
    (1, 2)
    """
    if len(captions) != len(retrieved):
        raise ValueError(f"copy_share: {len(captions)} captions but {len(retrieved)} retrieval lists")
    hits = sum(caption_key(c) in {caption_key(r) for r in rs} for c, rs in zip(captions, retrieved))
    return int(hits), len(captions)


def retrieval_agreement(idx_a: np.ndarray, idx_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query, whether two retrievals (``(n, k)`` index arrays, e.g. aligned and unaligned :func:`retrieve`)
    return the same top-1 caption, and the share ``|A_i ∩ B_i| / k`` of their top-``k`` sets they share.

    >>> same, shared = retrieval_agreement(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[1, 3, 9], [5, 4, 6]]))
    >>> same.tolist(), np.round(shared, 3).tolist()
    ([True, False], [0.667, 1.0])
    """
    a, b = np.asarray(idx_a), np.asarray(idx_b)
    if a.shape != b.shape or a.ndim != 2 or not a.shape[1]:
        raise ValueError(f"retrieval_agreement: two (n, k) index arrays of one shape are needed, got {a.shape} "
                         f"and {b.shape}")
    shared = np.array([len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b)], float) / a.shape[1]
    return a[:, 0] == b[:, 0], shared


def leaked(captions: Sequence[str], references: Sequence[Sequence[str]]) -> int:
    """How many of ``captions`` equal a reference of ``references`` once normalised
    (:func:`analysis.data.base.normalise_caption`): a datastore of training captions must give 0.

    >>> leaked(["A dog.", "a cat"], [["a bird", "a  DOG"]])
    1
    """
    from analysis.data.base import normalise_caption

    refs = {normalise_caption(r) for rs in references for r in rs}
    return sum(normalise_caption(c) in refs for c in captions)


def score_captions(captions: dict, refs: Sequence[Sequence[str]], metrics: dict, *, images=None,
                   graphs=None) -> dict:
    """``{metric name: {system: per-image values}}`` for every system's captions (one per image, the same
    images) against the same ``refs``, each metric run once for all systems where it can be
    (:func:`analysis.measures.score_conditions`). A metric that takes scene graphs (``sg-f1``) is scored on the
    images with a graph only (NaN elsewhere); an empty caption gets NaN; a metric that cannot run here
    (:class:`analysis.metrics.MetricUnavailable`, e.g. no Java) gets NaN everywhere."""
    import inspect

    from analysis.measures import score_conditions
    from analysis.metrics import MetricUnavailable

    n = len(refs)
    for sy, caps in captions.items():
        if len(caps) != n:
            raise ValueError(f"score_captions: {len(caps)} captions of {sy!r} for {n} images")
    out = {}
    for name, metric in metrics.items():
        takes_graphs = "graphs" in inspect.signature(metric.compute_score).parameters
        idx = [i for i in range(n) if not takes_graphs or (graphs is not None and graphs[i] is not None)]
        vals = {sy: np.full(n, np.nan) for sy in captions}
        if idx:
            conds = {sy: [caps[i] if str(caps[i]).split() else EMPTY for i in idx] for sy, caps in captions.items()}
            try:
                per = score_conditions(metric, conds, [list(refs[i]) for i in idx],
                                       images=[images[i] for i in idx] if images is not None else None,
                                       graphs=[graphs[i] for i in idx] if graphs is not None else None)
            except MetricUnavailable:
                per = {}
            for sy, caps in captions.items():
                if sy in per:
                    vals[sy][idx] = per[sy]
                    vals[sy][[i for i in idx if not str(caps[i]).split()]] = np.nan
        out[name] = vals
    return out


def _page_metric_objects(names: Sequence[str], scorer: str, method: str, smoke: bool, seed: int) -> dict:
    """Metric objects by name; aCLIP-S / RefaCLIP-S with the page's ``method`` (the map retrieval uses)."""
    from analysis import metrics, registry

    out = {}
    for name in names:
        if name.startswith(("aclip-s:", "refaclip-s:")):
            make = metrics.ref_aligned_clip_score if name.startswith("ref") else metrics.aligned_clip_score
            out[name] = make(name.split(":", 1)[1], method=method, smoke=smoke, seed=seed)
        else:
            out[name] = registry.build_metric(name, smoke=smoke, seed=seed)
    return out


def _lm_provenance(generator) -> tuple[str, str]:
    """``(source, pretrained)`` of the rows of captions an LM wrote."""
    if generator is None:
        return "none", ""
    if generator.name == SMOLLM2:
        from analysis import fluency

        return "published", f"{fluency.LM_NAME} (PyPI {fluency.LM_DISTRIBUTION}=={fluency.LM_PIN}, Q4_1)"
    if str(generator.name).startswith(FLAN_T5_PREFIX):
        return "local", str(generator.name)[len(FLAN_T5_PREFIX):]
    return "local", str(generator.name)


def _holm_by_family(frame: pd.DataFrame) -> pd.DataFrame:
    from analysis.stats import holm

    frame = frame.copy()
    frame["p_holm"] = np.nan
    for _, idx in frame.groupby("test_family", sort=False).groups.items():
        frame.loc[idx, "p_holm"] = holm(frame.loc[idx, "p"].to_numpy(float))
    return frame


def run_captions(*, smoke: bool = False, seed: int = 0, scorer: str = "clip-mini", lm=SMOLLM2, k: int = 5,
                 method: str = "procrustes", n_candidates: int = 1, n_images: int | None = None, n_boot: int = 1000,
                 progress: bool = True, augment: bool = False, augment_images: int | None = None,
                 augment_threshold: float | None = None, device: str | None = None):
    """The *Realignment: captions* page: retrieval-augmented captioning on the probe's held-out test images.

    **Systems** (:data:`SYSTEM_LABELS`): ``nn`` / ``nn-aligned``: the top-1 retrieved caption
    (:func:`nearest_neighbour_caption`) with the image embedding as it is / through the map; ``lm`` / ``recap``:
    the ``k`` retrieved captions, unaligned / aligned, in the prompt of ``lm`` (:class:`RetrievalCaptioner`;
    with ``n_candidates > 1`` sampled candidates re-ranked by :func:`aclip_rerank` with each system's own query:
    aCLIP-S for ``recap``, CLIP-S for ``lm``); ``xe``: the probe's XE captioner
    (:func:`analysis.probe.system_captions`).

    **Data.** The datastore is :func:`training_datastore` of ``scorer``: the probe's *training* references,
    embedded with the CLIP-S prefix ``"A photo depicts "`` because the map
    (:func:`analysis.realignment.fitted_map`, in-domain, ``method``) was fitted on the scorer's training pairs
    with text embedded with that prefix. The test images are the probe's test split (``n_images`` of them, the
    example images first; :func:`page_images`); neither the datastore (checked: :func:`leaked` must be 0, else
    this raises) nor the map's fitting images (counted in the ``data`` rows) contain them.

    **Scores** (:func:`score_captions`, :func:`page_metrics`) against the references the probe uses
    (:func:`analysis.probe.eval_refs`); aCLIP-S / RefaCLIP-S use the same map as retrieval. Per system and
    metric the mean with a bootstrap 95% interval over images (:func:`analysis.findings.bootstrap_mean`; one
    seed); per contrast of :data:`CONTRASTS` and metric the paired difference with a paired bootstrap interval
    over images and a two-sided bootstrap p (:func:`analysis.findings.bootstrap_diff`), Holm-corrected within
    each contrast's family of metrics (one question each). Smoke: :data:`SMOKE_IMAGES` images, ``k`` at most
    :data:`SMOKE_K`, at most :data:`SMOKE_BOOT` resamples, no JVM metrics.

    **Augmentation** (``augment=True``, an option): ``recap`` captions the first ``augment_images`` (default
    :data:`AUGMENT_IMAGES`) images of the probe's SCST split (fresh scenes, not test), scores them by RefaCLIP-S
    against their references, adds those above ``augment_threshold`` (default: their median) to the datastore
    (:func:`augment_datastore`) and captions the test images again: system ``recap-aug``, contrast
    :data:`AUGMENT_CONTRAST`.

    Returns an :class:`analysis.probe.Page`: ``rows`` (``analysis`` = ``summary``, ``difference``, ``copying``,
    ``data``), ``tables``, ``frames`` (``table``: one row per system and image with every caption and score;
    ``example_paths``), ``sentences`` (:func:`analysis.prose.recap_caption_sentences`) and ``timings``.
    """
    import time

    import pandas as pd

    from analysis import fluency, findings, probe, prose, realignment, results
    from analysis.cache import file_sha256
    from analysis.captioning.xe import DATASETS
    from analysis.metrics import CLIP_S_PREFIX
    from analysis.runtime import seed_all
    from analysis.scorers.base import WeightsUnavailable
    from analysis.stats import wilson_interval

    seed_all(seed)
    if smoke:
        n_images = min(n_images or SMOKE_IMAGES, SMOKE_IMAGES)
        k, n_boot = min(int(k), SMOKE_K), min(int(n_boot), SMOKE_BOOT)
    if int(k) < 1 or int(n_candidates) < 1:
        raise ValueError(f"run_captions: k and n_candidates must be >= 1, got k={k}, n_candidates={n_candidates}")
    timings: list = []

    def timed(what, t0):
        timings.append({"run": PAGE_RUN, "what": what, "seconds": round(time.perf_counter() - t0, 2)})

    t0 = time.perf_counter()
    s = probe.setup(smoke, seed, device)
    sc = probe.scorer_of(s, scorer)
    timed("probe setup (XE captioner) and scorer: build or load", t0)

    idx, ex = page_images(s.test, n_images, seed)
    test = s.test.subset(idx)
    refs = probe.eval_refs(test)
    shas = [file_sha256(p) for p in test.paths]

    t0 = time.perf_counter()
    store = training_datastore(sc, smoke=smoke, prefix=CLIP_S_PREFIX)
    leak = leaked(store.captions, s.test.refs)
    if leak:
        raise ValueError(f"run_captions: {leak} datastore caption(s) equal a test reference: the datastore must hold "
                         "training captions only (analysis.captioning.retrieval.training_captions)")
    amap = realignment.fitted_map(sc, setting="in-domain", method=method, smoke=smoke, seed=seed,
                                  prefix=CLIP_S_PREFIX, progress=progress)
    fit = realignment.pairs(sc, "in-domain", split="train", smoke=smoke, seed=seed, prefix=CLIP_S_PREFIX,
                            progress=progress)
    fit_overlap = len(set(fit.image_sha256) & set(shas))
    emb = realignment.image_embeddings(sc, list(test.paths), shas, progress=progress)
    timed("datastore, map and image embeddings (cached)", t0)

    same_top1, shared = retrieval_agreement(retrieve(emb, store, k=k, alignment=amap)[0], retrieve(emb, store, k=k)[0])
    captions = {"nn": nearest_neighbour_caption(emb, store),
                "nn-aligned": nearest_neighbour_caption(emb, store, alignment=amap)}
    lm_rows: dict = {}
    generator, lm_note = None, ""
    t0 = time.perf_counter()
    try:
        generator = load_generator(lm, device=device)
    except (WeightsUnavailable, fluency.LMUnavailable, FileNotFoundError) as e:
        lm_note = f"no language model here ({e}); the LM systems are left out"
    decoding = Decoding(n_candidates=int(n_candidates), seed=int(seed))
    if generator is not None:
        def captioner(st, alignment):
            return RetrievalCaptioner(st, lm=generator, alignment=alignment, k=k, decoding=decoding,
                                      rerank=aclip_rerank(sc.encode_text) if n_candidates > 1 else None,
                                      device=device, progress=progress)

        lm_rows["lm"] = captioner(store, None).caption(emb)
        lm_rows["recap"] = captioner(store, amap).caption(emb)
    timed(f"LM captions ({len(lm_rows)} systems x {len(idx)} images; cached by content)", t0)
    captions.update({sy: [r["caption"] for r in rows] for sy, rows in lm_rows.items()})
    captions["xe"] = [probe.system_captions(s, "xe")[i] for i in idx]

    t0 = time.perf_counter()
    names = page_metrics(scorer, smoke=smoke)
    mobj = _page_metric_objects(names, scorer, method, smoke, seed)
    images_all = [probe._image(p) for p in s.test.paths]
    memo: dict = {}
    for m in mobj.values():
        if hasattr(m, "_image_embeddings"):
            probe._seed_image_embeddings(m, images_all, memo)  # the test images' embeddings, cached by pixels
    images = [images_all[i] for i in idx]
    aug_info: dict = {}
    if augment and generator is not None:
        ta = time.perf_counter()
        n_aug = min(len(s.scst), augment_images or (SMOKE_AUGMENT_IMAGES if smoke else AUGMENT_IMAGES))
        data = s.scst.subset(range(n_aug))
        a_emb = realignment.image_embeddings(sc, list(data.paths), [file_sha256(p) for p in data.paths],
                                             progress=progress)
        cands = [r["caption"] for r in captioner(store, amap).caption(a_emb)]
        ref_metric = mobj[f"refaclip-s:{scorer}"]
        a_scores = score_captions({"c": cands}, data.refs, {"r": ref_metric},
                                  images=[probe._image(p) for p in data.paths])["r"]["c"]
        thr = float(np.nanmedian(a_scores)) if augment_threshold is None else float(augment_threshold)
        a_emb_text = sc.encode_text([CLIP_S_PREFIX + c for c in cands])
        aug = augment_datastore(store, cands, a_scores, threshold=thr, embeddings=a_emb_text)
        lm_rows[AUGMENTED] = captioner(aug, amap).caption(emb)
        captions[AUGMENTED] = [r["caption"] for r in lm_rows[AUGMENTED]]
        n_leak = leaked(aug.captions[len(store):], s.test.refs)
        if n_leak:
            raise RuntimeError(f"datastore augmentation: {n_leak} added caption(s) equal a test reference; the "
                               "augmented datastore would leak the test split (use other augmentation images)")
        aug_info = {"augmentation: SCST images captioned": n_aug, "augmentation: RefaCLIP-S threshold": thr,
                    "augmentation: captions added": aug.n_synthetic,
                    "augmentation: added captions equal to a test reference": n_leak}
        timed(f"datastore augmentation ({n_aug} SCST images)", ta)
        t0 = time.perf_counter()
    scores = score_captions(captions, refs, mobj, images=images, graphs=test.graphs)
    timed("scoring every caption", t0)

    systems = [sy for sy in (*PAGE_SYSTEMS, AUGMENTED) if sy in captions]
    table = pd.concat([pd.DataFrame({
        "system": sy, "label": SYSTEM_LABELS[sy], "seed": int(seed), "image": test.ids, "dataset": test.dataset,
        "caption": captions[sy], **{row_metric(n): np.round(scores[n][sy], SCORE_DECIMALS) for n in names}})
        for sy in systems],
        ignore_index=True)

    t0 = time.perf_counter()
    lm_source, lm_pretrained = _lm_provenance(generator)
    prov = {sy: ((lm_source, lm_pretrained) if sy in LM_SYSTEMS else ("embedded", "")) for sy in systems}
    metric_names = [row_metric(n) for n in names]
    impl = {row_metric(n): n for n in names}
    recs = []
    for sy in systems:
        for m in metric_names:
            if not np.isfinite(table.loc[table.system == sy, m].to_numpy(float)).any():
                continue
            r = findings.bootstrap_mean(table, m, sy, seed=seed, n_resamples=n_boot)
            recs.append({"analysis": "summary", "system": sy, "metric": m, "value": r["value"], "low": r["low"],
                         "high": r["high"], "n": r["n"], "interval": "percentile bootstrap over images (one seed)"})
    contrasts = list(CONTRASTS) + ([AUGMENT_CONTRAST] if AUGMENTED in captions else [])
    diffs = []
    for a, b, question in contrasts:
        if a not in captions or b not in captions:
            continue
        for m in metric_names:
            ta, tb = (table.loc[table.system == x, m].to_numpy(float) for x in (a, b))
            if not (np.isfinite(ta) & np.isfinite(tb)).any():
                continue
            r = findings.bootstrap_diff(table, m, a, b, seed=seed, n_resamples=n_boot)
            diffs.append({"analysis": "difference", "system": a, "baseline": b, "contrast": f"{a} − {b}",
                          "question": question, "metric": m, "value": r["value"], "low": r["low"], "high": r["high"],
                          "p": r["p"], "n": r["n_images"], "value_a": r["value_a"], "value_b": r["value_b"],
                          "interval": "paired percentile bootstrap over images (one seed)",
                          "test_family": f"{a} − {b}: {question}"})
    if diffs:
        d = _holm_by_family(pd.DataFrame(diffs))
        sizes = d.groupby("test_family")["p"].transform(lambda p: int(np.isfinite(p.to_numpy(float)).sum()))
        d["test"] = [f"two-sided bootstrap p ({n_boot} resamples), Holm over the {int(m)} metrics of this contrast"
                     for m in sizes]
        recs += d.to_dict("records")
    for sy, rows in lm_rows.items():
        for what, hits in (("copies a retrieved caption", copy_share([r["caption"] for r in rows],
                                                                   [r["retrieved"] for r in rows])[0]),
                           ("equals the top retrieved caption",
                            sum(caption_key(r["caption"]) == caption_key(r["retrieved"][0]) for r in rows)),
                           ("fallback to the top caption (empty output)", sum(bool(r["fallback"]) for r in rows))):
            lo, hi = wilson_interval(hits, len(rows))
            recs.append({"analysis": "copying", "system": sy, "metric": what, "value": hits / len(rows), "low": lo,
                         "high": hi, "n": len(rows), "interval": "Wilson 95%"})
    lo, hi = wilson_interval(int(same_top1.sum()), len(same_top1))
    recs.append({"analysis": "retrieval", "system": "nn-aligned", "baseline": "nn",
                 "metric": "same top-1 caption as unaligned retrieval", "value": float(same_top1.mean()), "low": lo,
                 "high": hi, "n": len(same_top1), "interval": "Wilson 95%"})
    r = findings.bootstrap_mean(pd.DataFrame({"system": "x", "seed": 0, "image": test.ids, "v": shared}), "v", "x",
                                seed=seed, n_resamples=n_boot)
    recs.append({"analysis": "retrieval", "system": "nn-aligned", "baseline": "nn",
                 "metric": "share of the top-k shared with unaligned retrieval", "value": r["value"], "low": r["low"],
                 "high": r["high"], "n": len(shared), "interval": "percentile bootstrap over images (one seed)"})
    data_rows = {"test images": len(idx), "test stamp scenes": sum(g is not None for g in test.graphs),
                 "datastore captions": len(store), "retrieved per image (k)": int(k),
                 "candidates per image": int(n_candidates),
                 "datastore captions equal to a test reference": leak,
                 "test images among the map's fitting images": fit_overlap,
                 "map fitting pairs": len(fit), "map fitting images": fit.n_images,
                 "bootstrap resamples": int(n_boot), **aug_info}
    recs += [{"analysis": "data", "system": "", "metric": key, "value": float(v)} for key, v in data_rows.items()]
    rows = pd.DataFrame(recs)
    for col in ("system", "baseline", "contrast", "question", "test_family", "test", "interval", "note"):
        if col not in rows:
            rows[col] = ""
        rows[col] = rows[col].fillna("")
    rows["metric_impl"] = [impl.get(m, "") for m in rows["metric"]]
    rows["model"] = [f"{PAGE_RUN}:{x}" if x else "" for x in rows["system"]]
    src = [prov.get(x, ("embedded", "")) for x in rows["system"]]
    base_src = [prov.get(x, ("embedded", "")) for x in rows["baseline"]]
    rows["source"] = [a[0] if a[0] != "embedded" else b[0] for a, b in zip(src, base_src)]
    rows["pretrained"] = [a[1] or b[1] for a, b in zip(src, base_src)]
    rows.loc[rows["analysis"] == "data", ["source", "pretrained"]] = ["embedded", ""]
    rows["scorer"] = sc.name
    rows["map"] = realignment.fitted_on(amap)
    rows["lm"] = getattr(generator, "label", "") if generator is not None else ""
    rows["dataset"] = " + ".join(DATASETS)
    rows["split"] = "test"
    rows["seed"] = int(seed)
    rows["smoke"] = bool(smoke)
    rows["run"] = PAGE_RUN
    if lm_note:
        rows.loc[rows["analysis"] == "data", "note"] = lm_note
    rows = results.validate(rows)
    timed("bootstrap intervals", t0)

    ex_ids = [s.test.ids[i] for i in ex]
    tables = {
        "systems": pd.DataFrame([{"system": sy, "what it is": SYSTEM_LABELS[sy]} for sy in systems]),
        "summary": summary_table(rows), "differences": difference_table(rows),
        "copying": rows[rows["analysis"].isin(["retrieval", "copying"])][["system", "metric", "value", "low", "high",
                                                                             "n"]].round(3).reset_index(drop=True),
        "data": pd.DataFrame([{"what": key, "value": v} for key, v in data_rows.items()]),
        "examples": probe.examples_frame(table.assign(seed=0), ex_ids, systems),
        "prompt": _prompt_example(lm_rows, [s.test.ids[i] for i in idx], ex_ids),
    }
    labels = {"scorer": sc.label, "lm": getattr(generator, "label", "") if generator is not None else ""}
    page = probe.Page(rows, tables=tables, frames={"table": table, "labels": labels, "example_paths": {
        i: p for i, p in zip(s.test.ids, s.test.paths) if i in set(ex_ids)}},
        sentences=prose.recap_caption_sentences(rows), timings=timings)
    return page


def _prompt_example(lm_rows: dict, ids: list[str], ex_ids: list[str]):
    """The first example image's retrieved captions (unaligned and aligned) and what each LM system wrote."""
    import pandas as pd

    if not lm_rows or not ex_ids:
        return pd.DataFrame()
    i = ids.index(ex_ids[0])
    out = []
    for sy, rows in lm_rows.items():
        r = rows[i]
        out += [{"system": sy, "image": ex_ids[0], "rank": j + 1, "retrieved caption": c, "cosine": round(s_, 3)}
                for j, (c, s_) in enumerate(zip(r["retrieved"], r["sims"]))]
        out.append({"system": sy, "image": ex_ids[0], "rank": "written", "retrieved caption": r["caption"],
                    "cosine": float("nan")})
    return pd.DataFrame(out)


def summary_table(rows):
    """Metric × system: ``mean [low, high]`` of the ``summary`` rows."""
    from analysis.prose import fmt_interval

    r = rows[rows["analysis"] == "summary"]
    if r.empty:
        return r
    r = r.assign(cell=[fmt_interval(v, lo, hi) for v, lo, hi in zip(r["value"], r["low"], r["high"])])
    return r.pivot_table(index="metric", columns="system", values="cell", aggfunc="first", sort=False).reindex(
        columns=list(dict.fromkeys(r["system"])))


def difference_table(rows):
    """Metric × contrast: ``a − b [low, high]`` with the Holm-corrected p of each paired difference."""
    from analysis.prose import fmt_interval, fmt_p

    r = rows[rows["analysis"] == "difference"]
    if r.empty:
        return r
    r = r.assign(cell=[f"{fmt_interval(v, lo, hi)}, {fmt_p(p)}" for v, lo, hi, p in
                       zip(r["value"], r["low"], r["high"], r["p_holm"])])
    return r.pivot_table(index="metric", columns="contrast", values="cell", aggfunc="first", sort=False).reindex(
        columns=list(dict.fromkeys(r["contrast"])))
