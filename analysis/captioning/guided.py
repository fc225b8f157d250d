"""Reward-guided decoding without training: a language-model prior proposes words, a scorer re-ranks.

The ZeroCap / MAGIC view of the probe (Tewel et al. 2022; Su et al. 2022, ``magic_search``): instead of
training a captioner to maximise a scorer (SCST), decode with a frozen prior and let the scorer choose among
the prior's proposals. What the scorer picks shows what it rewards, with no training in between.

**Priors** (the proposers; both deterministic, both batch their forwards over the beam):

* :class:`XEPrior`: the XE captioner (:mod:`analysis.captioning.xe`), in-domain and image-conditioned;
  a proposal is a vocabulary word with ``log p_θ(w | image, prefix)`` from
  :meth:`~analysis.captioning.model.Captioner.step_logprobs` (full-vocabulary softmax); the end option is
  ``<eos>``. ``<unk>`` is never proposed unless ``allow_unk`` (the scorer would read the string ``<unk>``).
* :class:`LMPrior`: SmolLM2-135M-Instruct (:func:`analysis.fluency.load_lm`), open English and
  **image-blind**. The context is ``<|endoftext|>`` (as :mod:`analysis.fluency` conditions captions: "a new
  text starts here") followed by the prompt ``prefix`` (default ``"A picture of"``, so the continuation is
  a description, as ZeroCap's "Image of a"; ``prefix=""`` conditions on ``<|endoftext|>`` alone). The
  prompt is context only: the caption, and what the scorer sees, is the continuation (stripped of the
  leading space), so ``"A picture of a dog on the grass"`` is scored as ``"a dog on the grass"``, the
  form of the XE captions. Proposals are restricted to **word-like** pieces, tokens that are ASCII letters
  with or without one leading space (``re.fullmatch(r" ?[A-Za-z]+", piece)``: ``" dog"``, ``"gir"``,
  ``"affe"``); a piece without a space continues the current word, so a prefix may end mid-word. The end
  option is "the sentence or the text ends": ``log Σ_{e ∈ end_pieces} p_LM(e | context)`` over ``"."``,
  ``"\\n"`` and ``<|endoftext|>`` (not appended to the caption). Log-probabilities are those of the full
  softmax over the LM's 49,152 tokens: they are **not** renormalised over the allowed pieces.

**Search** (:func:`guided_decode`, per image, deterministic). A hypothesis ``h`` is a prefix of prior
tokens with its text ``c(h)``; it is *finished* once its end option was taken. Start: the empty prefix.
At step ``t = 0 .. max_len − 1`` every unfinished hypothesis of the beam is extended by the prior's
``top_k`` best word proposals **plus** the end option (not at ``t = 0``: a caption has at least one word),
so the scorer, not only the prior, decides where to stop. The pool of the step is those extensions plus
the beam's finished hypotheses, carried over unchanged; each distinct text is scored once per image by
``R(c) = reward(np.full(n, image), texts)`` (a dict per image caches them), and the ``beam`` best of the
pool by

``rank(h) = R(c(h)) + weight · LP(h) / n(h)^α``   (``prior_term="cumulative"``, the default)

``rank(h) = R(c(h)) + weight · log p_prior(last token of h | image, rest of h)``   (``prior_term="step"``)

form the next beam, where ``LP(h) = Σ_i log p_prior(token_i | image, tokens_<i)`` is the **cumulative**
log-probability of its tokens (the end token included once taken), ``n(h)`` its number of prior tokens (end
included) and ``α = length_norm`` (default 0: no normalisation; α = 1 is the mean log-prob per token).
``"step"`` is MAGIC's per-step term (MAGIC keeps one hypothesis, ``beam = 1``, and adds a degeneration
penalty, not implemented here); the cumulative term is what a beam search over prefixes needs for
prefixes to be comparable. Ties in ``rank`` go to the higher ``LP``, then to the earlier proposal.
The search stops when every hypothesis of the beam is finished or after ``max_len`` steps (unfinished
ones are then cut, as :meth:`~analysis.captioning.model.Captioner.beam` does). The caption returned is
the best of the **final ranking**, the pool of the last step, which is returned whole (``candidates``).

* ``weight = 0``: pure scorer re-ranking among the prior's proposals: the caption is the candidate of
  highest reward in the final pool (``tests/test_guided.py`` checks it).
* constant reward, any ``weight > 0`` with ``prior_term="cumulative"``, ``length_norm = 0`` and
  ``top_k >= beam``: the prior's own beam search; for :class:`XEPrior` with ``allow_unk=True`` that is
  :meth:`Captioner.beam(feats, beam, max_len) <analysis.captioning.model.Captioner.beam>` (the global top
  ``beam`` of all vocabulary extensions always lie among each beam's ``top_k`` words and ``<eos>``; the one
  difference: ``<eos>`` is not proposed at step 0). A large weight approaches that search.

**Cost.** A step costs one batched prior forward over the beam's unfinished hypotheses and one reward call
over the pool's new texts (text-side forwards only: :mod:`~analysis.captioning.rewards` caches the image
side). Priors cache their proposals per prefix (:class:`XEPrior`: per image and prefix; :class:`LMPrior`:
per prefix, the LM being image-blind), so a sweep over weights and scorers re-runs few forwards; the LM
keeps each hypothesis's key/value cache, so a step feeds it one new token per row. Values computed in
different batches agree to float rounding, so a run is deterministic up to ties at that level.

Measured (2 shared CPU cores, the full test split's cached features, the non-smoke XE captioner and
stand-ins, 24 images × weights 0, 0.1, 0.5, 2, one prior and scorer after the other so the caches warm
up as they would in a sweep), seconds per image-decode with ``beam=3, top_k=8, max_len=12``:

==============  ====================  ============================
scorer          XE prior              SmolLM2 prior
==============  ====================  ============================
clip-mini       0.35                  0.54
uniter-mini     0.54                  1.04
lxmert-mini     0.65                  1.08
blind           0.02                  0.02 (text-only and image-blind: every image alike)
==============  ====================  ============================

so the 768 decodes of 2 priors × 4 weights × 4 scorers × 24 images take about 7 minutes (the reward's
text side is ~70% of it); ``top_k=5`` brings that to about 4.5 minutes (0.22 / 0.29 / 0.42 / 0.01 s with
the XE prior, 0.37 / 0.72 / 0.67 / 0.01 s with SmolLM2). The probe's decoding page decodes 16 images (its
``n_images`` default) to keep the probe part within its 25-minute budget: about 3 minutes.

**Scale of the weight.** ``LP`` is about −2 to −3 nats per word, while the rewards differ between
candidates by a few hundredths (clip-mini cosines) to a few units (ITM logits): with ``length_norm = 0``
a weight of 0.1 already lets the prior decide most steps for ``clip-mini``, and favours short captions
(every token costs log-probability). ``length_norm = 1`` or weights below 0.1 keep the scorer in play.
"""
from __future__ import annotations

import inspect
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

PRIOR_TERMS = ("cumulative", "step")
WORD_PIECE = re.compile(r" ?[A-Za-z]+")  # what an LM proposal may be (a word or a piece of one)
LM_PREFIX = "A picture of"  # LMPrior's default prompt after <|endoftext|> (context only, not scored)
LM_END_PIECES = (".", "\n", "<|endoftext|>")  # LMPrior's end option: log of the summed probability of these
PROPOSAL_CACHE = 200_000  # proposal lists a prior keeps (oldest dropped first)


# --------------------------------------------------------------------------- hypotheses and proposals
@dataclass(frozen=True)
class PriorState:
    """A prefix under a prior: ``image`` (row of the data), ``ids`` (the prior's token ids so far, no
    start or end token), ``text`` (the caption so far, what the scorer reads) and ``extra`` (prior-private,
    e.g. the LM's key/value cache; not part of equality)."""

    image: int
    ids: tuple[int, ...]
    text: str
    extra: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Proposal:
    """One continuation of a prefix: ``piece`` (the word or word piece added; ``""`` for the end option),
    ``logprob`` = ``log p_prior(piece | image, prefix)``, ``end`` (True for the end option) and ``state``
    (the extended prefix; for the end option the prefix itself)."""

    piece: str
    logprob: float
    end: bool
    state: PriorState


class _LRU(OrderedDict):
    """A dict that drops its oldest entries beyond ``size``."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)
        self.hits = self.misses = 0

    def put(self, key, value) -> None:
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)

    def split(self, states: Sequence, key: Callable, hit: Callable) -> tuple[list, dict[int, list[int]]]:
        """``(out, todo)`` for a batch of prefixes: ``out[j] = hit(state, *entry)`` for each state whose
        ``key(state)`` is cached (a hit, moved to the newest end), ``None`` for the others; ``todo`` maps a prefix
        length to the positions of the uncached states of that length (one batched forward each)."""
        out: list = [None] * len(states)
        todo: dict[int, list[int]] = {}
        for j, st in enumerate(states):
            k = key(st)
            if k in self:
                self.hits += 1
                self.move_to_end(k)
                out[j] = hit(st, *self[k])
            else:
                todo.setdefault(len(st.ids), []).append(j)
        return out, todo


def _check_k(top_k: int, who: str) -> int:
    if int(top_k) != top_k or top_k < 1:
        raise ValueError(f"{who}: top_k must be an integer >= 1, got {top_k!r}")
    return int(top_k)


# --------------------------------------------------------------------------- the XE captioner as a prior
class XEPrior:
    """The XE captioner as a prior: word proposals ``log p_θ(w | image, prefix)`` from
    :meth:`Captioner.step_logprobs <analysis.captioning.model.Captioner.step_logprobs>` on the image's grid
    features (``data.grid``), in eval mode without grad, batched over the hypotheses of a step; the end
    option is ``<eos>``; ``<pad>``/``<bos>`` are never proposed, ``<unk>`` only with ``allow_unk``.

    ``data`` is the split being captioned (a :class:`~analysis.captioning.xe.CaptionData`); ``vocab``
    defaults to ``captioner.vocab``. Runs on the captioner's device.
    """

    name = "xe"
    label = "XE captioner (trained here, in-domain)"

    def __init__(self, captioner, data, vocab=None, *, allow_unk: bool = False, cache_size: int = PROPOSAL_CACHE):
        grid = getattr(data, "grid", None)
        if grid is None:
            raise ValueError("XEPrior: data has no .grid features; pass a CaptionData (caption_data(split))")
        self.captioner, self.data = captioner, data
        self.vocab = vocab if vocab is not None else captioner.vocab
        if len(self.vocab) != len(captioner.vocab):
            raise ValueError(f"XEPrior: vocab has {len(self.vocab)} words, the captioner {len(captioner.vocab)}")
        self.allow_unk = bool(allow_unk)
        self.max_len = int(captioner.config.max_len)
        self.cache = _LRU(cache_size)
        self.forwards = 0  # prefixes run through the captioner

    def info(self) -> dict:
        return {"prior": self.name, "label": self.label, "allow_unk": self.allow_unk,
                "weights_sha256": getattr(self.captioner, "weights_sha256", None), **self.captioner.info()}

    def start(self, image_index: int) -> PriorState:
        """The empty prefix of image ``image_index`` (a row of ``data``)."""
        i = int(image_index)
        if not 0 <= i < len(self.data.grid):
            raise IndexError(f"XEPrior: image {i} is outside data's {len(self.data.grid)} images")
        return PriorState(i, (), "")

    def propose(self, states: Sequence[PriorState], top_k: int) -> list[list[Proposal]]:
        """For each state: its ``top_k`` most probable words (descending), then the end option ``<eos>``
        when the prefix has at least one word."""
        import torch

        from analysis.captioning.model import BOS, EOS, PAD, UNK, _eval

        top_k = _check_k(top_k, "XEPrior.propose")
        out, todo = self.cache.split(states, lambda s: (s.image, s.ids, top_k), self._proposals)
        m = self.captioner
        for t, rows in todo.items():
            if t + 1 > self.max_len:
                raise ValueError(f"XEPrior: a prefix of {t} words needs {t + 1} positions, the captioner has "
                                 f"{self.max_len}; decode with max_len <= {self.max_len}")
            self.cache.misses += len(rows)
            feats = self.data.grid[torch.as_tensor([states[j].image for j in rows])]
            prefix = torch.tensor([list(states[j].ids) for j in rows], dtype=torch.long).reshape(len(rows), t)
            with _eval(m), torch.no_grad():
                lp = m.step_logprobs(feats, prefix).double().cpu()
            self.forwards += len(rows)
            words = lp.clone()
            words[:, [PAD, BOS, EOS]] = -math.inf
            if not self.allow_unk:
                words[:, UNK] = -math.inf
            k = min(top_k, int(torch.isfinite(words[0]).sum()))
            top = words.topk(k, dim=1)
            for r, j in enumerate(rows):
                entry = (tuple(top.indices[r].tolist()), tuple(top.values[r].tolist()), float(lp[r, EOS]))
                self.cache.put((states[j].image, states[j].ids, top_k), entry)
                out[j] = self._proposals(states[j], *entry)
        return out  # type: ignore[return-value]

    def _proposals(self, s: PriorState, ids, lps, end_lp) -> list[Proposal]:
        words = self.vocab.words
        props = [Proposal(words[i], lp, False, PriorState(s.image, s.ids + (i,), (s.text + " " + words[i]).strip()))
                 for i, lp in zip(ids, lps)]
        if s.ids:
            props.append(Proposal("", end_lp, True, s))
        return props


# --------------------------------------------------------------------------- SmolLM2 as a prior
def _make_cache(kv: list[tuple]):
    """A transformers DynamicCache holding ``kv`` = per layer ``(keys, values)`` ``(B, heads, L, d)``."""
    from transformers import DynamicCache

    try:
        return DynamicCache(ddp_cache_data=kv)
    except TypeError:  # transformers 4.x
        return DynamicCache.from_legacy_cache(tuple(kv))


def _read_cache(cache) -> list[tuple]:
    """Per layer ``(keys, values)`` of a transformers cache (``(B, heads, L, d)`` each)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return [tuple(x[:2]) for x in cache.to_legacy_cache()]


class LMPrior:
    """SmolLM2-135M-Instruct as an image-blind prior (module docstring): context ``<|endoftext|>`` +
    ``prefix``; proposals are the ``top_k`` most probable word-like pieces (:data:`WORD_PIECE`) and the end
    option ``log Σ p(end_pieces)``, full-softmax log-probabilities. Each hypothesis keeps the LM's key/value
    cache of its context, so a step feeds one new token per row, batched over the beam; proposals are
    cached per prefix (image-blind: shared by all images). Runs on ``device`` with
    :data:`analysis.fluency.THREADS` CPU threads; ``device`` defaults to the device of a ``model`` passed in, else
    :func:`analysis.runtime.device`.

    ``model``/``tokenizer`` default to :func:`analysis.fluency.load_lm` (``device``).
    """

    name = "smollm2"
    label = "SmolLM2-135M-Instruct (open English, image-blind)"

    def __init__(self, *, prefix: str = LM_PREFIX, device: str | None = None,
                 end_pieces: Sequence[str] = LM_END_PIECES, model=None, tokenizer=None,
                 cache_size: int = PROPOSAL_CACHE):
        import torch

        from analysis import fluency
        from analysis.runtime import module_device, resolve_device

        if model is None or tokenizer is None:
            device = resolve_device(device)
            model, tokenizer = fluency.load_lm(device)
        elif device is None:
            device = module_device(model)
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.prefix = str(prefix).strip()
        self.prompt = [fluency.bos_id(tokenizer)] + (
            list(tokenizer(self.prefix, add_special_tokens=False)["input_ids"]) if self.prefix else [])
        raw = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        # byte-level BPE: "Ġ" is a leading space; ASCII letters stand for themselves
        self.pieces = [("" if t is None else t).replace("Ġ", " ") for t in raw]
        allowed = torch.tensor([bool(WORD_PIECE.fullmatch(p)) for p in self.pieces])
        if not allowed.any():
            raise ValueError("LMPrior: the tokenizer has no word-like pieces")
        self.allowed = allowed
        ends = []
        for e in end_pieces:
            ids = tokenizer.convert_tokens_to_ids("Ċ" if e == "\n" else e)
            if ids is None or ids == tokenizer.unk_token_id and e != tokenizer.unk_token:
                raise ValueError(f"LMPrior: end piece {e!r} is not one token of the LM tokenizer")
            ends.append(int(ids))
        if not ends:
            raise ValueError("LMPrior: give at least one end piece (e.g. '.')")
        self.end_pieces, self.end_ids = tuple(end_pieces), ends
        self.max_len = int(getattr(model.config, "max_position_embeddings", 8192)) - len(self.prompt)
        self.cache = _LRU(cache_size)
        self.forwards = 0  # prefixes run through the LM

    def info(self) -> dict:
        from analysis import fluency

        try:
            lm = fluency.lm_info()
        except Exception:  # a model passed in by hand
            lm = {"name": fluency.LM_NAME}
        return {"prior": self.name, "label": self.label, "prompt": fluency.PREFIX_TOKEN + self.prefix,
                "prefix": self.prefix, "end_pieces": list(self.end_pieces), "word_piece": WORD_PIECE.pattern,
                "allowed_pieces": int(self.allowed.sum()), "lm": lm}

    def start(self, image_index: int) -> PriorState:
        """The empty continuation of the prompt (the image index is kept but never read)."""
        return PriorState(int(image_index), (), "", (None, 0))

    def _forward(self, states: list[PriorState]):
        """Next-token log-probabilities ``(B, V)`` after each state's context, and each row's new
        key/value cache. All states have the same context length; rows whose cache covers the same number of
        tokens run together, feeding only the uncovered tokens."""
        import torch

        from analysis.fluency import THREADS
        from analysis.runtime import torch_threads

        seqs = [self.prompt + list(s.ids) for s in states]
        groups: dict[int, list[int]] = {}
        for j, s in enumerate(states):
            kv, covered = s.extra if s.extra is not None else (None, 0)
            groups.setdefault(covered if kv is not None else 0, []).append(j)
        lp = [None] * len(states)
        kvs = [None] * len(states)
        with torch_threads(THREADS), torch.inference_mode():
            for covered, rows in groups.items():
                x = torch.tensor([seqs[j][covered:] for j in rows], dtype=torch.long, device=self.device)
                kw = {}
                if covered:
                    kw["past_key_values"] = _make_cache(
                        [(torch.stack([states[j].extra[0][li][0] for j in rows]),
                          torch.stack([states[j].extra[0][li][1] for j in rows]))
                         for li in range(len(states[rows[0]].extra[0]))])
                try:
                    out = self.model(input_ids=x, use_cache=True, logits_to_keep=1, **kw)
                except TypeError:  # older transformers
                    out = self.model(input_ids=x, use_cache=True, **kw)
                logp = torch.log_softmax(out.logits[:, -1].float(), -1).double().cpu()
                layers = _read_cache(out.past_key_values)
                for r, j in enumerate(rows):
                    lp[j] = logp[r]
                    kvs[j] = tuple((k[r], v[r]) for k, v in layers)
        self.forwards += len(states)
        return lp, kvs

    def propose(self, states: Sequence[PriorState], top_k: int) -> list[list[Proposal]]:
        """For each state: its ``top_k`` most probable word-like pieces (descending), then the end option
        when the continuation has at least one piece."""
        import torch

        top_k = _check_k(top_k, "LMPrior.propose")
        out, todo = self.cache.split(states, lambda s: (s.ids, top_k),
                                     lambda s, *entry: self._proposals(s, *entry, kv=None))
        for t, rows in todo.items():
            if t + 1 > self.max_len:
                raise ValueError(f"LMPrior: a continuation of {t} tokens exceeds the LM's context")
            self.cache.misses += len(rows)
            lp, kvs = self._forward([states[j] for j in rows])
            logp = torch.stack(lp)
            words = logp.masked_fill(~self.allowed, -math.inf).topk(top_k, dim=1)
            end = torch.logsumexp(logp[:, self.end_ids], dim=1)
            for r, j in enumerate(rows):
                entry = (tuple(words.indices[r].tolist()), tuple(words.values[r].tolist()), float(end[r]))
                self.cache.put((states[j].ids, top_k), entry)
                out[j] = self._proposals(states[j], *entry, kv=(kvs[r], len(self.prompt) + t))
        return out  # type: ignore[return-value]

    def _proposals(self, s: PriorState, ids, lps, end_lp, kv) -> list[Proposal]:
        """Children of ``s``. A child's cache is the parent's full context when this call ran the parent
        (``kv``); else whatever the parent carried (the child's forward then feeds the missing tokens)."""
        if kv is None:
            kv = s.extra if s.extra is not None else (None, 0)
        props = [Proposal(self.pieces[i], lp, False,
                          PriorState(s.image, s.ids + (i,), (s.text + self.pieces[i]).strip(), kv))
                 for i, lp in zip(ids, lps)]
        if s.ids:
            props.append(Proposal("", end_lp, True, s))
        return props


# --------------------------------------------------------------------------- the search
@dataclass
class _Hyp:
    state: PriorState
    logprob: float  # cumulative LP(h)
    last: float  # log-prob of the last token (the end token once finished)
    tokens: int  # n(h): prior tokens, the end token included
    finished: bool
    order: int  # proposal order, the last tie-breaker


def _rank(h: _Hyp, score: float, weight: float, prior_term: str, length_norm: float) -> float:
    """``R + weight · LP / n^α`` (cumulative) or ``R + weight · log p(last token)`` (step).

    >>> h = _Hyp(PriorState(0, (5, 6), "a b"), logprob=-4.0, last=-1.0, tokens=2, finished=False, order=0)
    >>> _rank(h, 1.0, 0.5, "cumulative", 0.0), _rank(h, 1.0, 0.5, "cumulative", 1.0), _rank(h, 1.0, 0.5, "step", 0.0)
    (-1.0, 0.0, 0.5)
    """
    if weight == 0:
        return score
    if prior_term == "step":
        return score + weight * h.last
    return score + weight * h.logprob / (h.tokens ** length_norm if length_norm else 1.0)


def _check_args(images, weight, beam, top_k, max_len, length_norm, prior_term, n_images, prior) -> list[int]:
    images = [int(i) for i in np.asarray(images, dtype=np.int64).reshape(-1)] if images is not None else []
    if not images:
        raise ValueError("guided_decode: images is empty; pass the row indices of data to caption")
    bad = [i for i in images if not 0 <= i < n_images]
    if bad:
        raise IndexError(f"guided_decode: image index {bad[0]} is outside data's {n_images} images")
    if not (isinstance(weight, (int, float, np.floating, np.integer)) and math.isfinite(weight) and weight >= 0):
        raise ValueError(f"guided_decode: weight (the prior's weight) must be a finite number >= 0, got {weight!r}")
    if int(beam) != beam or beam < 1:
        raise ValueError(f"guided_decode: beam must be an integer >= 1, got {beam!r}")
    _check_k(top_k, "guided_decode")
    if int(max_len) != max_len or max_len < 1:
        raise ValueError(f"guided_decode: max_len must be an integer >= 1, got {max_len!r}")
    if max_len > getattr(prior, "max_len", max_len):
        raise ValueError(f"guided_decode: max_len {max_len} exceeds the prior's {prior.max_len} positions "
                         f"({getattr(prior, 'name', prior)}); use max_len <= {prior.max_len}")
    if not (math.isfinite(length_norm) and length_norm >= 0):
        raise ValueError(f"guided_decode: length_norm (α in LP / n^α) must be >= 0, got {length_norm!r}")
    if prior_term not in PRIOR_TERMS:
        raise ValueError(f"guided_decode: prior_term must be one of {PRIOR_TERMS}, got {prior_term!r}")
    return images


def _decode_one(image: int, reward: Callable, prior, *, weight: float, beam: int, top_k: int, max_len: int,
                length_norm: float, prior_term: str) -> dict:
    t0 = time.perf_counter()
    scores: dict[str, float] = {}  # R(c) of every text met for this image
    calls = 0

    def score(texts: list[str]) -> None:
        nonlocal calls
        new = list(dict.fromkeys(c for c in texts if c not in scores))
        if new:
            v = np.asarray(reward(np.full(len(new), image, dtype=np.int64), new), dtype=np.float64).reshape(-1)
            if len(v) != len(new):
                raise ValueError(f"guided_decode: the reward returned {len(v)} values for {len(new)} captions")
            scores.update(zip(new, v.tolist()))
            calls += 1

    def key(h: _Hyp):
        return (-_rank(h, scores[h.state.text], weight, prior_term, length_norm), -h.logprob, h.order)

    beam_: list[_Hyp] = [_Hyp(prior.start(image), 0.0, 0.0, 0, False, 0)]
    pool: list[_Hyp] = []
    steps, order = 0, 0
    for t in range(max_len):
        alive = [h for h in beam_ if not h.finished]
        if not alive:
            break
        pool = [h for h in beam_ if h.finished]
        for h, props in zip(alive, prior.propose([h.state for h in alive], top_k)):
            for p in props:
                order += 1
                pool.append(_Hyp(p.state, h.logprob + p.logprob, p.logprob, h.tokens + 1, p.end, order))
        score([h.state.text for h in pool])
        pool.sort(key=key)
        beam_ = pool[:beam]
        steps = t + 1
    best = pool[0]
    return {"image": image, "caption": best.state.text, "score": scores[best.state.text],
            "prior_logprob": best.logprob, "tokens": best.tokens, "length": len(best.state.text.split()),
            "finished": best.finished, "steps": steps,
            "candidates": [h.state.text for h in pool],
            "candidate_scores": [scores[h.state.text] for h in pool],
            "candidate_logprobs": [h.logprob for h in pool],
            "candidate_finished": [h.finished for h in pool],
            "candidate_ranks": [-key(h)[0] for h in pool],
            "texts_scored": len(scores), "reward_calls": calls, "seconds": time.perf_counter() - t0}


def guided_decode(data, images: Sequence[int], reward: Callable, prior, *, weight: float, beam: int = 3,
                  top_k: int = 8, max_len: int = 12, length_norm: float = 0.0, prior_term: str = "cumulative",
                  progress: bool = True) -> list[dict]:
    """Reward-guided beam search per image (the module docstring states the search and the formulas).

    ``rank(h) = R(c(h)) + weight · LP(h) / n(h)^length_norm`` with ``LP`` the **cumulative** prior
    log-probability (``prior_term="step"``: ``R + weight · log p(last token)``, MAGIC's term).

    ``data``: the split (its rows are the image indices ``images`` and the reward's rows); ``reward``:
    ``reward(image_index, captions) -> np.ndarray`` (:func:`~analysis.captioning.rewards.make_reward`);
    ``prior``: :class:`XEPrior` or :class:`LMPrior`. ``weight >= 0`` (0 = the scorer alone chooses among the
    proposals). Returns per image a dict: ``image``, ``image_id``, ``caption``, ``score`` (its reward),
    ``prior_logprob`` (its ``LP``), ``tokens`` (``n``), ``length`` (words), ``finished``, ``steps``, the final
    ranking (``candidates`` texts, best first, with ``candidate_scores``, ``candidate_logprobs``,
    ``candidate_finished``, ``candidate_ranks``), ``texts_scored``, ``reward_calls``, ``seconds``.
    """
    from tqdm.auto import tqdm

    n_images = len(data.ids) if hasattr(data, "ids") else len(data.paths)
    images = _check_args(images, weight, beam, top_k, max_len, length_norm, prior_term, n_images, prior)
    pdata = getattr(prior, "data", None)
    if pdata is not None and pdata is not data and list(getattr(pdata, "ids", [])) != list(getattr(data, "ids", [])):
        raise ValueError("guided_decode: the prior was built over other data than `data`; build XEPrior(captioner, "
                         "data) with the split being captioned")
    out = []
    for i in tqdm(images, desc=f"guided {getattr(prior, 'name', 'prior')} w={weight:g}", unit="image",
                  disable=not progress, leave=False):
        r = _decode_one(i, reward, prior, weight=float(weight), beam=int(beam), top_k=int(top_k),
                        max_len=int(max_len), length_norm=float(length_norm), prior_term=prior_term)
        r["image_id"] = data.ids[i] if hasattr(data, "ids") else str(i)
        out.append(r)
    return out


def sweep(data, images: Sequence[int], reward: Callable, priors: Sequence, weights: Sequence[float], *,
          progress: bool = True, **kw):
    """:func:`guided_decode` for every prior and weight: a DataFrame with one row per (prior, weight, image):
    ``reward`` (its name), ``prior``, ``prior_label``, ``weight``, ``image``, ``image_id``, ``caption``,
    ``score`` (the guiding reward of the caption), ``prior_logprob``, ``tokens``, ``length`` (words),
    ``finished``, ``steps``, ``candidates`` (the final pool's size), ``seconds``, and the settings ``beam``,
    ``top_k``, ``max_len``, ``length_norm``, ``prior_term``. ``kw`` goes to :func:`guided_decode`."""
    import pandas as pd
    from tqdm.auto import tqdm

    priors, weights = list(priors), [float(w) for w in weights]
    if not priors or not weights:
        raise ValueError("sweep: give at least one prior and one weight")
    defaults = inspect.signature(guided_decode).parameters
    settings = {k: kw.get(k, defaults[k].default) for k in ("beam", "top_k", "max_len", "length_norm", "prior_term")}
    rows = []
    combos = [(p, w) for p in priors for w in weights]
    for prior, w in tqdm(combos, desc=f"sweep {getattr(reward, 'name', 'reward')}", unit="run", disable=not progress):
        for r in guided_decode(data, images, reward, prior, weight=w, progress=progress, **kw):
            rows.append({"reward": getattr(reward, "name", "reward"), "prior": prior.name, "prior_label": prior.label,
                         "weight": w, "image": r["image"], "image_id": r["image_id"], "caption": r["caption"],
                         "score": r["score"], "prior_logprob": r["prior_logprob"], "tokens": r["tokens"],
                         "length": r["length"], "finished": r["finished"], "steps": r["steps"],
                         "candidates": len(r["candidates"]), "seconds": r["seconds"], **settings})
    return pd.DataFrame(rows)
