"""SCST rewards: any scorer or CIDEr-D as a per-caption reward, with the image side prepared once per image.

``make_reward(name, *, data, ...)`` returns a :class:`Reward`; ``reward(image_index, captions)`` gives one
float per caption, ``captions[j]`` read as a caption of image ``data[image_index[j]]``. ``data`` is the
split SCST trains on (a :class:`~analysis.captioning.xe.CaptionData`, or anything with ``paths``, ``refs``
and optionally ``grid`` / ``pooled``). Names (:func:`reward_names`):

* any :data:`~analysis.registry.SCORERS` name (``clip-mini``, ``uniter-mini``, ``lxmert-mini``, ``blind``,
  the ``+neg`` ablations, ``clip:<arch>/<tag or path>``, ``vilt:<folder>``, ...) or ``score:<scorer>``:
  the scorer's own score of (image, caption);
* ``cider-d-fast`` (or ``cider-d``, the same definition): CIDEr-D of the caption against its image's
  references in ``data.refs``, by :class:`analysis.cider.CiderD` built **once** on all of ``data.refs``, so
  the document frequencies are those of the training corpus (as SCST implementations do), never of a
  step's batch. Captions and references are compared in the captioner's word form
  (:func:`analysis.captioning.model.normalise`: lower-case ``[a-z]+`` words, the form ``Vocab.decode``
  writes), not after pycocoevalcap's PTB tokenizer (a JVM per call), so these values can differ slightly
  from the ``cider-d`` metric on captions with punctuation, digits or apostrophes;
* ``clip-s:<dual-encoder scorer>``: CLIP-S, ``2.5 · max(cos(image, "A photo depicts " + caption), 0)``;
* ``aclip-s:<dual-encoder scorer>``: aCLIP-S (:func:`analysis.metrics.aclip_s`), CLIP-S with the image embedding
  ``v`` replaced by ``normalise(map.apply(v))``, the map the in-domain Procrustes map of
  :func:`analysis.realignment.fitted_map` (fitted on the scorer's training pairs, cached; never on the SCST or
  test images). The map's fingerprint is part of :meth:`Reward.info`, so a refitted map is a new SCST recipe;
* ``mix:<scorer>`` with ``lam``: ``r = lam · CIDEr-D + (1 − lam) · score``.

**Fast paths.** The image side is computed the first time an image is met and kept in memory, and the
text side once per distinct caption (up to :data:`TEXT_CACHE` captions, oldest dropped first), so a step
costs text-side forwards of its new captions only (plus, for a cross-encoder, one fusion per pair).
:attr:`Reward.image_forwards` and :attr:`Reward.text_forwards` count them:

==========================  ==================================================================  ============
scorer                      reward (image side once per image | text side once per caption)     fast path
==========================  ==================================================================  ============
clip-mini (+neg)            ``cos(W_i pooled, W_t MiniLM(c))``: ``net.image`` | ``net.text``    yes
                            (``aclip-s:``: the image side mapped once per image)
uniter-/lxmert-mini (+neg)  ``net.fuse(t, mask, v)``: ``v = net.encode_image(grid)`` |           yes (fusion
                            ``t = net.encode_text(c)``                                          per pair)
blind, blind+neg            the caption's text-only score (no image is ever read)               yes
any other dual encoder      ``scorer.encode_image`` | ``scorer.encode_text``                    yes
(``clip:...``)
other cross-encoders        ``scorer.score(images, captions)``; only the decoded PIL images     no (info
(``vilt:``, ``lxmert:``…)   are cached                                                          says so)
==========================  ==================================================================  ============

The stand-in fast paths call the scorer's own net and tokenizer on the same features as
``scorer.score``; ``tests/test_rewards.py`` checks they equal ``scorer.score`` to 1e-5.

**Which image features.** ``features="cached"`` (default) reads the tower features the captioner was
trained on: ``data.grid`` / ``data.pooled`` when ``data`` has them, else :func:`analysis.towers.image_features`
of ``data.paths`` (the content-addressed feature cache). The cached grid is stored in float16, so the ITM
stand-ins' rewards differ from ``scorer.score`` on the PIL image by that rounding (the pooled feature is
float32; clip-mini is exact). ``features="exact"`` runs the image tower on each file once (about 0.1 s per
image on two cores) and then equals ``scorer.score(open_rgb(path), caption)``.

**ITM output.** ``itm_output="logit"`` (default) is the raw matching logit ``z`` the ITM scorers output;
``"probability"`` is ``σ(z) = 1 / (1 + e^{−z})``. For the stand-ins (one logit trained with binary
cross-entropy) ``σ(z)`` is their P(match); for published two-way heads the scorers already report
``z = l₁ − l₀``, and ``σ(l₁ − l₀) = softmax(l)₁``. Only scorers whose output is ``itm_logit`` accept
``"probability"``; for a cosine or a log-probability it is a ``ValueError``.

**Mix scaling.** ``mix:<scorer>`` adds the raw values, with no normalisation: CIDEr-D (0 to about 10,
training means near 1) and a cosine (about 0.1–0.5) or an ITM logit (about −10 to 10) are on different
scales, so ``lam`` is a weight on raw numbers, not a share of influence. :meth:`Reward.stats` reports each
term's running mean and standard deviation over the captions scored so far, so the effective balance can
be stated (z-normalising with fixed statistics would need a caption distribution to fix them on, and the
XE model's samples, the natural one, are not known when the reward is built).

**Empty captions** (a sample that stops at once) are never passed to a scorer (they would refuse them):
each gets the lowest reward among the call's non-empty captions (0 when there are none), so it never beats
a real caption; they are counted in :attr:`Reward.empty`. Identical (image, caption) pairs in one call are
scored once, and a call's captions are batched by length (little padding). Inside a call torch's
deterministic mode does not NaN-fill new tensors (that doubles the text tower's time and changes no value).

**Device.** ``device`` (default :func:`analysis.runtime.device`: ``$STUDY_DEVICE``, else CUDA when visible, else
the CPU) is where :func:`make_reward` builds the scorers it names; a scorer passed in (``scorers=``,
:func:`scorer_reward`) runs where it was built. The image features are read on the CPU and moved to the
scorer's device; rewards come back as NumPy arrays. ``device`` is kept in :meth:`Reward.info` (``"cpu"`` on a CPU
run, named or defaulted to, so a CPU recipe keeps its key).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from analysis.registry import UnknownNameError

if TYPE_CHECKING:  # torch is imported lazily
    import torch

ITM_OUTPUTS = ("logit", "probability")
FEATURES = ("cached", "exact")
CIDER_NAMES = ("cider-d-fast", "cider-d")
CLIP_S_WEIGHT, CLIP_S_PREFIX = 2.5, "A photo depicts "
TEXT_BATCH = 64  # captions per text-side forward
TEXT_CACHE = 50_000  # distinct captions whose text-side features a scorer term keeps (oldest dropped first)


class UnknownRewardError(UnknownNameError, ValueError):
    """A reward name that is neither a scorer nor a supported metric; the message lists valid names
    (an :class:`analysis.registry.UnknownNameError`, like the registries' own)."""


# --------------------------------------------------------------------------- image side, once per image
class ImageCache:
    """Per-image features computed on first use and kept: ``get(rows)`` returns ``compute(missing rows)``
    results for every row, computing only rows never seen before. ``computed`` counts images computed."""

    def __init__(self, n: int, compute: Callable[[np.ndarray], "torch.Tensor"]):
        self.n, self.compute = int(n), compute
        self.store: "torch.Tensor | None" = None
        self.ready = np.zeros(self.n, dtype=bool)
        self.computed = 0

    def get(self, rows: np.ndarray) -> "torch.Tensor":
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n):
            raise IndexError(f"image index out of range: data has {self.n} images, got {rows.min()}..{rows.max()}")
        missing = np.unique(rows[~self.ready[rows]])
        if missing.size:
            with torch.no_grad():
                feats = self.compute(missing)
            if self.store is None:
                self.store = torch.zeros((self.n, *feats.shape[1:]), dtype=feats.dtype, device=feats.device)
            self.store[torch.from_numpy(missing)] = feats
            self.ready[missing] = True
            self.computed += int(missing.size)
        return self.store[torch.from_numpy(rows)]


class ImageSource:
    """Image inputs of ``data`` by row: tower features (``cached`` or ``exact``, module docstring) or PIL
    images, each read once."""

    def __init__(self, data, features: str = "cached"):
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        self.data, self.features = data, features
        self.paths = list(data.paths)
        self._tower: dict[str, "torch.Tensor"] = {}
        self._exact = ImageCache(len(self.paths), self._run_tower)
        self._pil: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _cached(self, kind: str) -> "torch.Tensor":
        import torch

        if kind not in self._tower:
            have = getattr(self.data, kind, None)
            if have is None:
                from analysis import towers

                feats = towers.image_features(self.paths)
                have = feats.pooled if kind == "pooled" else feats.grid
            t = torch.as_tensor(np.asarray(have) if not isinstance(have, torch.Tensor) else have).float()
            if len(t) != len(self.paths):
                raise ValueError(f"data.{kind} has {len(t)} rows but data.paths {len(self.paths)}")
            self._tower[kind] = t
        return self._tower[kind]

    def _run_tower(self, rows: np.ndarray) -> "torch.Tensor":
        """Pooled and grid features from the image tower, fp32, packed as ``(n, 50, 1280)`` (row 0 pooled)."""
        import torch

        from analysis import towers

        out = []
        for s in range(0, len(rows), 32):
            p, g = towers.image_tower().encode(self.pil(rows[s:s + 32]))
            out.append(torch.cat([p[:, None], g], 1))
        return torch.cat(out)

    def pooled(self, rows: np.ndarray) -> "torch.Tensor":
        if self.features == "exact":
            return self._exact.get(rows)[:, 0]
        return self._cached("pooled")[np.asarray(rows)]

    def grid(self, rows: np.ndarray) -> "torch.Tensor":
        if self.features == "exact":
            return self._exact.get(rows)[:, 1:]
        return self._cached("grid")[np.asarray(rows)]

    def pil(self, rows: Sequence[int]) -> list:
        from analysis.data.base import open_rgb

        for r in rows:
            if int(r) not in self._pil:
                self._pil[int(r)] = open_rgb(self.paths[int(r)])
        return [self._pil[int(r)] for r in rows]


# --------------------------------------------------------------------------- terms of a reward
class Term:
    """One reward term: ``term(rows, captions) -> float64 array``, captions non-empty, rows index ``data``."""

    name = label = output = fast_path = "?"
    image_forwards = text_forwards = 0

    def __call__(self, rows: np.ndarray, captions: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def info(self) -> dict:
        return {"term": self.name, "label": self.label, "output": self.output, "fast_path": self.fast_path}


class CiderTerm(Term):
    """CIDEr-D of a caption against its image's references, document frequencies from all of ``data.refs``."""

    output = "cider_d"
    fast_path = "n-gram tf-idf of the caption only; reference vectors and document frequencies built once"

    def __init__(self, data, name: str = "cider-d-fast"):
        from analysis.captioning.model import normalise
        from analysis.cider import CiderD

        self.normalise = normalise
        refs = [[normalise(r) for r in rr] for rr in data.refs]
        empty = [i for i, rr in enumerate(refs) if not rr or not all(rr)]
        if empty:
            raise ValueError(f"{name} reward: image(s) {empty[:5]} of data have no (or an empty) reference "
                             "caption; CIDEr-D needs at least one non-empty reference per image")
        self.name, self.refs = name, refs
        self.cider = CiderD(refs)
        self.label = f"CIDEr-D (document frequencies of the {len(refs)} images' references of data)"

    def __call__(self, rows, captions):
        """CIDEr-D per caption; a caption with no word left after ``normalise`` (punctuation only) is 0."""
        toks = [self.normalise(c) for c in captions]
        out = np.zeros(len(toks))
        ok = [j for j, t in enumerate(toks) if t]
        if ok:
            out[ok] = self.cider.score([toks[j] for j in ok], [self.refs[rows[j]] for j in ok])
        return out

    def info(self) -> dict:
        from analysis.cider import CODE_VERSION

        return {**super().info(), "df_images": self.cider.n_docs, "tokenizer": "analysis.captioning.model.normalise",
                "cider_version": CODE_VERSION}


class ScorerTerm(Term):
    """A scorer's score as a term, through the fastest path its kind allows (module docstring).

    ``transform``: ``None``, ``"sigmoid"`` (ITM probability) or ``"clip-s"`` (``w · max(cos, 0)`` of the
    prefixed caption). ``amap`` (dual encoders only): an :class:`analysis.alignment.AlignmentMap` from the image
    side to the text side; the cached image embedding ``v`` becomes ``normalise(amap.apply(v))`` (aCLIP-S with
    ``transform="clip-s"``)."""

    def __init__(self, scorer, images: ImageSource, *, transform: str | None = None, name: str | None = None,
                 amap=None):
        from analysis.scorers.base import DualEncoder, TextOnly
        from analysis.scorers.standins import ClipMini, ItmStandIn

        self.scorer, self.images, self.transform, self.amap = scorer, images, transform, amap
        self.name = name or scorer.name
        self.prefix = CLIP_S_PREFIX if transform == "clip-s" else ""
        what = "aCLIP-S" if amap is not None else "CLIP-S"
        if (transform == "clip-s" or amap is not None) and not isinstance(scorer, DualEncoder):
            raise ValueError(f"{self.name}: {what} needs a dual-encoder scorer; {scorer.name} is "
                             f"{scorer.family}. Use {scorer.name} itself as the reward instead")
        out = {None: scorer.output, "sigmoid": "itm_prob", "clip-s": "aclip_s" if amap is not None else "clip_s"}[
            transform]
        self.output = out
        self.label = scorer.label + ("" if transform is None else f", {out}") + (
            f", image side mapped ({amap.method} map)" if amap is not None and transform is None else "")
        if isinstance(scorer, TextOnly):
            self.path, self.cache = "text-only", None
            self.fast_path = "text only: the scorer never reads the image"
        elif isinstance(scorer, ClipMini):
            self.path = "clip-mini"
            self.cache = ImageCache(len(images), lambda r: self._aligned(
                self._unit(scorer.net.image(images.pooled(r).to(scorer.device)))))
            self.fast_path = "net.image(pooled) once per image; net.text(MiniLM sentence) once per caption"
        elif isinstance(scorer, ItmStandIn):
            self.path = "itm-stand-in"
            self.cache = ImageCache(len(images), lambda r: scorer.net.encode_image(images.grid(r).to(scorer.device)))
            self.fast_path = ("net.encode_image(grid) once per image; net.encode_text once per caption; "
                              "net.fuse per (image, caption) pair")
        elif isinstance(scorer, DualEncoder):
            self.path = "dual"
            self.cache = ImageCache(len(images),
                                    lambda r: self._aligned(self._as_tensor(scorer.encode_image(images.pil(r)))))
            self.fast_path = "scorer.encode_image once per image; scorer.encode_text once per caption"
        else:
            self.path, self.cache = "fallback", None
            self.fast_path = ("none: scorer.score(images, captions) per pair (a cross-encoder without a "
                              "separable image side); only the decoded images are cached")
        if amap is not None:
            self.fast_path += "; the image side mapped by normalise(map.apply(v)) once per image"
        self.fallback_pairs = 0
        self.text_cache: dict = {}
        self.text_cache_size = TEXT_CACHE
        self.text_forwards = 0

    @staticmethod
    def _unit(z):
        import torch

        return torch.nn.functional.normalize(z.float(), dim=-1)

    @staticmethod
    def _as_tensor(a):
        import torch

        return torch.as_tensor(np.asarray(a))

    def _aligned(self, v):
        """``v`` unchanged without a map; else ``normalise(map.apply(v))`` row by row
        (:func:`analysis.metrics.aligned_embeddings`, float64, computed in NumPy, back on ``v``'s device)."""
        if self.amap is None:
            return v
        from analysis.metrics import aligned_embeddings

        return self._as_tensor(aligned_embeddings(v.detach().cpu().double().numpy(), self.amap)).to(v.device)

    @property
    def image_forwards(self) -> int:
        """Image-side computations: once per image on a fast path; once per pair on the fallback path."""
        return self.cache.computed if self.cache is not None else self.fallback_pairs

    def _text_features(self, captions: list[str]) -> list:
        """Text-side features of each caption (computed once per distinct caption, kept in :attr:`text_cache`):
        unit text embeddings (dual encoders), unpadded text-encoder rows ``(L, d)`` (ITM stand-ins) or the
        score itself (text-only scorers)."""
        sc, cache = self.scorer, self.text_cache
        missing = sorted((c for c in dict.fromkeys(captions) if c not in cache), key=len)
        for s in range(0, len(missing), TEXT_BATCH):
            batch = missing[s:s + TEXT_BATCH]
            if self.path == "text-only":
                feats = list(np.asarray(sc.score([None] * len(batch), batch), dtype=np.float64))
            elif self.path == "clip-mini":
                feats = list(self._unit(sc.net.text(_sentence(sc, batch))).double())
            elif self.path == "dual":  # the scorer's normalised float64 embeddings, as DualEncoder._score_batch
                feats = list(self._as_tensor(sc.encode_text(batch)))
            else:  # itm-stand-in
                t, mask = sc._text(batch)
                feats = [t[r, :int(mask[r].sum())].clone() for r in range(len(batch))]
            cache.update(zip(batch, feats))
            self.text_forwards += len(batch)
        out = [cache[c] for c in captions]
        while len(cache) > self.text_cache_size:  # oldest first (dicts keep insertion order)
            del cache[next(iter(cache))]
        return out

    def raw(self, rows: np.ndarray, captions: list[str]) -> np.ndarray:
        """The scorer's own number for each (image, caption), before ``transform``."""
        import torch

        from analysis.scorers import inputs

        sc = self.scorer
        captions = [self.prefix + c for c in captions]
        if self.path == "fallback":
            self.fallback_pairs += len(rows)
            return np.asarray(sc.score(self.images.pil(rows), captions), dtype=np.float64)
        out = np.zeros(len(captions))
        order = np.argsort([len(c) for c in captions], kind="stable")  # similar lengths batch with little padding
        with torch.no_grad():
            for s in range(0, len(order), TEXT_BATCH):
                j = order[s:s + TEXT_BATCH]
                feats = self._text_features([captions[i] for i in j])
                if self.path == "text-only":
                    out[j] = np.asarray(feats, dtype=np.float64)
                    continue
                v = self.cache.get(rows[j])
                if self.path == "itm-stand-in":
                    t, mask = inputs.pad(feats)
                    z = sc.net.fuse(t, mask, v).double()
                else:
                    z = (v.double() * torch.stack(feats)).sum(1)
                out[j] = z.cpu().numpy()
        return out

    def __call__(self, rows, captions):
        z = self.raw(rows, captions)
        if self.transform == "sigmoid":
            return 1.0 / (1.0 + np.exp(-z))
        if self.transform == "clip-s":
            return CLIP_S_WEIGHT * np.clip(z, 0, None)
        return z

    def info(self) -> dict:
        keep = ("model", "label", "family", "source", "output", "pretrained", "checkpoint_hash")
        out = {**super().info(), "scorer": {k: v for k, v in self.scorer.info().items() if k in keep},
               "features": self.images.features}
        if self.amap is not None:
            from analysis.alignment import fingerprint
            from analysis.realignment import fitted_on

            m = self.amap
            arrays = [a for a in (m.W, m.x_mean, m.x_std, m.y_mean, m.y_std) if a is not None]
            out["alignment"] = {"method": m.method, "standardize": bool(m.standardize),
                                "fitting_pairs": m.provenance.get("fingerprint", ""), "map": fingerprint(*arrays),
                                "fitted_on": fitted_on(m)}
        return out


def _sentence(scorer, captions):
    """clip-mini's text input: MiniLM sentence embeddings of the scorer's own tokenisation (truncation counted), on
    the scorer's device."""
    from analysis.scorers import inputs

    return inputs.sentence(scorer._tokens(captions), scorer.device)


# --------------------------------------------------------------------------- the reward
class _no_nan_fill:
    """Inside: torch's deterministic mode does not fill new tensors with NaN (``seed_all`` turns deterministic
    mode on, and the fill, meant to expose reads of uninitialised memory, doubles the text tower's time while
    changing no result); the previous setting is restored after."""

    def __enter__(self):
        import torch

        self.was = torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = False

    def __exit__(self, *exc):
        import torch

        torch.utils.deterministic.fill_uninitialized_memory = self.was


class Reward:
    """``reward(image_index, captions) -> np.ndarray``: ``Σ_k w_k · term_k(image, caption)`` per caption.

    Counters: ``calls``, ``captions`` (scored), ``empty`` (empty captions, module docstring), ``seconds``
    and :attr:`image_forwards` (images whose image side was computed; each at most once).
    """

    def __init__(self, name: str, terms: list[tuple[float, Term]], *, label: str, output: str, extra: dict):
        self.name, self.terms, self.label, self.output, self.extra = name, terms, label, output, extra
        self.calls = self.captions = self.empty = 0
        self.seconds = 0.0
        self._sum = np.zeros((len(terms), 2))  # running Σx, Σx² per term

    @property
    def image_forwards(self) -> int:
        return sum(t.image_forwards for _, t in self.terms)

    @property
    def text_forwards(self) -> int:
        return sum(t.text_forwards for _, t in self.terms)

    def __call__(self, image_index, captions: Sequence[str]) -> np.ndarray:
        t0 = time.perf_counter()
        rows = np.asarray(image_index, dtype=np.int64).reshape(-1)
        captions = list(captions)
        if len(rows) != len(captions):
            raise ValueError(f"reward {self.name}: {len(rows)} image indices but {len(captions)} captions; "
                             "give one image index per caption")
        for i, c in enumerate(captions):
            if not isinstance(c, str):
                raise TypeError(f"reward {self.name}: caption {i} is {type(c).__name__}, not a string")
        out = np.zeros(len(captions))
        keep = np.array([bool(c.split()) for c in captions], dtype=bool)
        if keep.any():
            pairs = list(dict.fromkeys((int(r), c) for r, c, k in zip(rows, captions, keep) if k))
            where = {p: j for j, p in enumerate(pairs)}
            u_rows = np.array([p[0] for p in pairs], dtype=np.int64)
            u_caps = [p[1] for p in pairs]
            total = np.zeros(len(pairs))
            with _no_nan_fill():
                for k, (w, term) in enumerate(self.terms):
                    v = np.asarray(term(u_rows, u_caps), dtype=np.float64)
                    self._sum[k] += (v.sum(), (v * v).sum())
                    total += w * v
            idx = [where[(int(r), c)] for r, c, k in zip(rows, captions, keep) if k]
            out[keep] = total[idx]
            self.captions += len(pairs)
        out[~keep] = out[keep].min() if keep.any() else 0.0
        self.empty += int((~keep).sum())
        self.calls += 1
        self.seconds += time.perf_counter() - t0
        return out

    def clear_text_cache(self) -> "Reward":
        """Forget every term's cached text-side features, so the next call computes its captions' features in
        batches made of that call's captions only. A caption's features can differ in the last float bits with
        the batch it was first computed in (padding lengths, matrix shapes), so a table that must not depend on
        what was scored before in the process clears the cache first. Returns the reward."""
        for _, term in self.terms:
            cache = getattr(term, "text_cache", None)
            if cache is not None:
                cache.clear()
        return self

    def term_stats(self) -> list[dict]:
        """Running mean and standard deviation of each term's values over the captions scored so far."""
        n = max(self.captions, 1)
        mean = self._sum[:, 0] / n
        sd = np.sqrt(np.maximum(self._sum[:, 1] / n - mean ** 2, 0.0))
        return [{"term": t.name, "weight": w, "mean": float(m), "sd": float(s)}
                for (w, t), m, s in zip(self.terms, mean, sd)]

    def info(self) -> dict:
        """Provenance (deterministic: no counters, so it can be part of a checkpoint recipe)."""
        return {"reward": self.name, "label": self.label, "output": self.output,
                "terms": [{"weight": w, **t.info()} for w, t in self.terms], **self.extra}

    def stats(self) -> dict:
        """Usage counters and per-term statistics (not part of :meth:`info`)."""
        return {"calls": self.calls, "captions": self.captions, "empty": self.empty,
                "image_forwards": self.image_forwards, "text_forwards": self.text_forwards,
                "seconds": round(self.seconds, 3),
                "captions_per_second": round(self.captions / self.seconds, 1) if self.seconds else None,
                "terms": self.term_stats()}

    def __repr__(self) -> str:
        return f"<Reward {self.label} [{self.output}]>"


# --------------------------------------------------------------------------- names
def reward_names() -> list[str]:
    """Every reward name form: the scorers' names and forms, the CIDEr-D names, ``score:``, ``clip-s:``, ``mix:``."""
    from analysis.registry import SCORERS

    return ([e.form for e in SCORERS._entries.values()] + list(CIDER_NAMES)
            + ["score:<scorer>", "clip-s:<dual-encoder scorer>", "aclip-s:<dual-encoder scorer>",
               "mix:<scorer> (with lam)"])


def _unknown(name: str, why: str = "") -> UnknownRewardError:
    return UnknownRewardError(f"unknown reward {name!r}{': ' + why if why else ''}; valid names: "
                              f"{', '.join(reward_names())}")


def _scorer_term(name: str, images: ImageSource, *, itm_output: str, smoke: bool, seed: int,
                 scorers: dict | None = None, device: str | None = None) -> ScorerTerm:
    from analysis.registry import METRICS, SCORERS, build_scorer

    transform, aligned = None, False
    base = name
    if name.startswith("score:"):
        base = name[len("score:"):]
    elif name.startswith("clip-s:"):
        base, transform = name[len("clip-s:"):], "clip-s"
    elif name.startswith("aclip-s:"):
        base, transform, aligned = name[len("aclip-s:"):], "clip-s", True
    try:
        SCORERS.entry(base)
    except UnknownNameError:
        why = f"{base!r} is not a scorer" if base != name else ""
        if base == name:
            try:
                METRICS.entry(name)
                why = "this metric is not available as a reward (it needs a JVM, or scene graphs, per call)"
            except UnknownNameError:
                pass
        raise _unknown(name, why) from None
    scorer = (scorers or {}).get(base) or build_scorer(base, smoke=smoke, seed=seed, device=device)
    if itm_output == "probability":
        if transform is not None or scorer.output != "itm_logit":
            raise ValueError(f"itm_output='probability' applies to ITM scorers (output itm_logit); {name} gives "
                             f"{scorer.output if transform is None else transform}. Use itm_output='logit'")
        transform = "sigmoid"
    amap = None
    if aligned:
        from analysis.scorers.base import DualEncoder

        if not isinstance(scorer, DualEncoder):
            raise ValueError(f"{name}: aCLIP-S needs a dual-encoder scorer; {base} is {scorer.family}. Use a "
                             f"dual encoder (clip-mini, clip:<arch>/<tag>)")
        from analysis.realignment import fitted_map

        amap = fitted_map(scorer, setting="in-domain", method="procrustes", smoke=smoke, seed=seed,
                          prefix=CLIP_S_PREFIX, progress=False)
    return ScorerTerm(scorer, images, transform=transform, name=name, amap=amap)


def scorer_reward(scorer, *, data, itm_output: str = "logit", features: str = "cached", device: str | None = None,
                  name: str | None = None, images: ImageSource | None = None) -> Reward:
    """A :class:`Reward` from an already built scorer (any :class:`~analysis.scorers.base.Scorer`), which runs where
    it was built; ``device`` (recorded in :meth:`Reward.info`) defaults to the scorer's own ``device``, else
    :func:`analysis.runtime.device`. ``images`` shares one :class:`ImageSource` (decoded images, ``exact`` tower
    features) between rewards over the same ``data``; the per-scorer image side is still computed once per reward."""
    from analysis.runtime import resolve_device

    device = resolve_device(device or getattr(scorer, "device", None))
    if itm_output not in ITM_OUTPUTS:
        raise ValueError(f"itm_output must be one of {ITM_OUTPUTS}, got {itm_output!r}")
    transform = None
    if itm_output == "probability":
        if scorer.output != "itm_logit":
            raise ValueError(f"itm_output='probability' applies to ITM scorers (output itm_logit); "
                             f"{scorer.name} gives {scorer.output}. Use itm_output='logit'")
        transform = "sigmoid"
    if images is not None and (images.data is not data or images.features != features):
        raise ValueError("images must be an ImageSource over the same data with the same features setting")
    term = ScorerTerm(scorer, images or ImageSource(data, features), transform=transform, name=name)
    return Reward(term.name, [(1.0, term)], label=f"{term.label} reward", output=term.output,
                  extra={"itm_output": itm_output, "features": features, "device": str(device)})


def make_reward(name: str, *, data, lam: float | None = None, itm_output: str = "logit", smoke: bool = False,
                seed: int = 0, device: str | None = None, features: str = "cached", scorers: dict | None = None
                ) -> Reward:
    """The reward ``name`` over ``data`` (the training split; see the module docstring for names, fast paths,
    ``itm_output``, ``features`` and mix scaling). ``smoke`` and ``seed`` pick the embedded stand-in
    checkpoints (trained on first use, then cached). ``scorers`` maps scorer names to scorers already built with
    the same ``smoke`` and ``seed`` (reused instead of building them again; the reward is the same). Scorers it
    builds itself go on ``device`` (default :func:`analysis.runtime.device`; module docstring)."""
    from analysis.runtime import resolve_device

    if not isinstance(name, str) or not name:
        raise _unknown(str(name))
    device = resolve_device(device)
    if itm_output not in ITM_OUTPUTS:
        raise ValueError(f"itm_output must be one of {ITM_OUTPUTS}, got {itm_output!r}")
    if len(data.refs) != len(data.paths):
        raise ValueError(f"data has {len(data.paths)} images but {len(data.refs)} reference lists")
    from analysis.captioning.scst import data_fingerprint

    extra = {"itm_output": itm_output, "features": features, "device": str(device), "smoke": bool(smoke),
             "seed": int(seed), "n_images": len(data.paths), "split": getattr(data, "split", None),
             "data_fingerprint": data_fingerprint(data)}  # train_scst refuses a reward built over other data
    if name.startswith("mix:"):
        if lam is None or not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"reward {name}: give lam in [0, 1] (r = lam · CIDEr-D + (1 − lam) · score), "
                             f"got {lam!r}")
        term = _scorer_term(name[len("mix:"):], ImageSource(data, features), itm_output=itm_output,
                            smoke=smoke, seed=seed, scorers=scorers, device=device)
        lam = float(lam)
        return Reward(name, [(lam, CiderTerm(data)), (1.0 - lam, term)],
                      label=f"{lam:g}·CIDEr-D + {1 - lam:g}·{term.label} (raw scales, no normalisation)",
                      output="mix", extra={**extra, "lam": lam, "mix_scaling": "raw values, no normalisation"})
    if lam is not None:
        raise ValueError(f"lam applies to mix:<scorer> rewards only, not {name!r}")
    if name in CIDER_NAMES:
        if itm_output != "logit":
            raise ValueError(f"itm_output={itm_output!r} applies to ITM scorers, not {name}")
        term = CiderTerm(data, name)
        return Reward(name, [(1.0, term)], label=term.label, output=term.output, extra=extra)
    term = _scorer_term(name, ImageSource(data, features), itm_output=itm_output, smoke=smoke, seed=seed,
                        scorers=scorers, device=device)
    return Reward(name, [(1.0, term)], label=f"{term.label} reward", output=term.output, extra=extra)
