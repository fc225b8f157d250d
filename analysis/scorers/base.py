"""The scorer contract shared by every model family.

``score(images, captions) -> np.ndarray`` gives one float per (image, caption)
pair, computed in batches of ``batch_size`` under ``torch.no_grad`` in eval mode.
Dual encoders also give ``encode_image`` / ``encode_text`` (L2-normalised rows), and
their score is the cosine ``s = <u/|u|, v/|v|>``.

Every scorer carries provenance: ``name`` (registry name), ``label`` (how the book
shows it; stand-ins say so), ``family`` (dual / single-stream / two-stream /
text-only), ``source`` (``published``: a released tag; ``local``: a weights file or
folder given by path; ``embedded``: trained here), ``output`` (which raw number the
score is: ``cosine``, ``itm_logit``, ``itm_prob``, ``lm_logprob``, ...), ``pretrained``
(tag or resolved path), ``checkpoint_hash`` (sha256 of the weights actually loaded) and
``trained_on_perturbations`` (True for the ablations trained on the rule-made caption
perturbations the scorer chapter tests; ``None`` when unknown, as for published weights).

Captions are checked before anything is scored: a non-string (``None``, a number) is a
``TypeError`` and an empty or whitespace-only caption a ``ValueError``, both naming the
caption's index. Captions longer than ``max_text_tokens`` are truncated explicitly; the
count is kept in ``truncated`` (reset with ``reset_counts``), never silent.

Text-only scorers (family ``text-only``) ignore the image: their ``score_matrix`` repeats
one row, so image-to-text retrieval with them is at chance *by construction*; they are
informative only where the captions of one image are compared (perturbations, rewards).
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

FAMILIES = ("dual", "single-stream", "two-stream", "text-only")
OUTPUTS = ("cosine", "itm_logit", "itm_prob", "log_prob", "lm_logprob")
SOURCES = ("published", "local", "embedded")


class WeightsUnavailable(FileNotFoundError):
    """Published weights are not on this machine; the message names the tag and where to put them."""


class BadWeightsFile(ValueError):
    """A weights file exists but cannot be read as what it should be; the message names the file,
    what was expected and what to do."""


def check_captions(captions: Sequence, who: str = "scorer") -> list[str]:
    """``captions`` as a list, after checking each is a non-blank string.

    Raises ``TypeError`` for a non-string (``None`` would otherwise be scored as the text
    "None") and ``ValueError`` for an empty or whitespace-only caption, naming the index.
    """
    out = list(captions)
    for i, c in enumerate(out):
        if not isinstance(c, str):
            raise TypeError(f"{who}: caption {i} is {type(c).__name__} {c!r}, not a string; "
                            f"pass caption text (str) for every pair")
        if not c.strip():
            raise ValueError(f"{who}: caption {i} is empty or whitespace only ({c!r}); "
                             f"remove that pair (and count it) before scoring")
    return out


def state_hash(state_dict) -> str:
    """sha256 over a state dict's names, shapes, dtypes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.view(-1).view(__import__("torch").uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class Scorer(ABC):
    """Base class: subclasses implement ``_score_batch`` (and dual encoders the encoders)."""

    name: str = "?"
    label: str = "?"
    family: str = "?"
    source: str = "?"
    output: str = "?"
    pretrained: str = ""
    checkpoint_hash: str = ""
    trained_on_perturbations: bool | None = None
    max_text_tokens: int = 77
    batch_size: int = 32

    def __init__(self) -> None:
        self.truncated = 0
        self.seen = 0

    # ---- contract -------------------------------------------------------------
    def score(self, images: Sequence, captions: Sequence[str]) -> np.ndarray:
        """One score per pair ``(images[i], captions[i])``, as float64, batched."""
        import torch

        captions = check_captions(captions, self.name)
        if len(images) != len(captions):
            raise ValueError(f"{self.name}: {len(images)} images but {len(captions)} captions; pairs must align")
        out = []
        with torch.no_grad():
            for i in range(0, len(captions), self.batch_size):
                out.append(np.asarray(self._score_batch(list(images[i:i + self.batch_size]),
                                                        list(captions[i:i + self.batch_size])), dtype=np.float64))
        return np.concatenate(out) if out else np.zeros(0)

    def score_matrix(self, images: Sequence, captions: Sequence[str]) -> np.ndarray:
        """``S[i, j] = score(images[i], captions[j])`` for all pairs, shape ``(len(images), len(captions))``.

        Captions are checked first (:func:`check_captions`); subclasses override
        :meth:`_score_matrix`, not this method.
        """
        return self._score_matrix(list(images), check_captions(captions, self.name))

    def _score_matrix(self, images: list, captions: list[str]) -> np.ndarray:
        """Every pair through :meth:`score` (cross-encoders: ``n * m`` forwards)."""
        pairs_i = [im for im in images for _ in captions]
        pairs_t = [c for _ in images for c in captions]
        return self.score(pairs_i, pairs_t).reshape(len(images), len(captions))

    @abstractmethod
    def _score_batch(self, images: list, captions: list[str]) -> np.ndarray: ...

    def count_truncation(self, lengths: Sequence[int]) -> None:
        """Record how many of these captions had more than ``max_text_tokens`` tokens."""
        self.seen += len(lengths)
        self.truncated += int(sum(n > self.max_text_tokens for n in lengths))

    def reset_counts(self) -> None:
        self.truncated = 0
        self.seen = 0

    def info(self) -> dict:
        """Provenance fields for result rows."""
        return {"model": self.name, "label": self.label, "family": self.family, "source": self.source,
                "output": self.output, "pretrained": self.pretrained, "checkpoint_hash": self.checkpoint_hash,
                "max_text_tokens": self.max_text_tokens, "trained_on_perturbations": self.trained_on_perturbations}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} [{self.family}, {self.source}, {self.output}]>"


class DualEncoder(Scorer):
    """A scorer with separate image and text towers; the score is the cosine."""

    output = "cosine"
    family = "dual"

    @abstractmethod
    def _encode_image_batch(self, images: list): ...

    @abstractmethod
    def _encode_text_batch(self, captions: list[str]): ...

    def _batched(self, fn, xs) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(xs), self.batch_size):
                z = fn(list(xs[i:i + self.batch_size])).float()
                out.append(torch.nn.functional.normalize(z, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))

    def encode_image(self, images: Sequence) -> np.ndarray:
        """L2-normalised image embeddings, one row per image."""
        return self._batched(self._encode_image_batch, images)

    def encode_text(self, captions: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings, one row per caption (captions checked as in :meth:`score`)."""
        return self._batched(self._encode_text_batch, check_captions(captions, self.name))

    def _score_batch(self, images, captions):
        return (self.encode_image(images) * self.encode_text(captions)).sum(axis=1)

    def _score_matrix(self, images, captions) -> np.ndarray:
        """``S = U Vᵀ`` of normalised embeddings (one encoder pass per side)."""
        return self.encode_image(images) @ self.encode_text(captions).T


class TextOnly(Scorer):
    """A scorer that reads only the caption: subclasses implement ``_text_scores(captions)``.

    ``score`` checks that images and captions pair up, then ignores the images;
    ``score_matrix`` scores each caption once and repeats that row for every image, so
    image->text retrieval with a text-only scorer is at chance **by construction** (every
    image ranks the captions the same way). What such a scorer can show is what the
    caption alone gives away, e.g. which of an image's captions is the true one.
    """

    family = "text-only"

    @abstractmethod
    def _text_scores(self, captions: list[str]) -> np.ndarray: ...

    def _score_batch(self, images, captions):
        return self._text_scores(captions)

    def _score_matrix(self, images, captions) -> np.ndarray:
        """``S[i, j] = s(captions[j])`` for every image ``i`` (one row, repeated)."""
        rows = [np.asarray(self._text_scores(captions[j:j + self.batch_size]), dtype=np.float64)
                for j in range(0, len(captions), self.batch_size)]
        s = np.concatenate(rows) if rows else np.zeros(0)
        return np.tile(s, (len(images), 1))
