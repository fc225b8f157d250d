"""The scorer contract shared by every model family.

``score(images, captions) -> np.ndarray`` gives one float per (image, caption)
pair, computed in batches of ``batch_size`` under ``torch.no_grad`` in eval mode.
Dual encoders also give ``encode_image`` / ``encode_text`` (L2-normalised rows), and
their score is the cosine ``s = <u/|u|, v/|v|>``.

Every scorer carries provenance: ``name`` (registry name), ``label`` (how the book
shows it; stand-ins say so), ``family`` (dual / single-stream / two-stream /
text-only), ``source`` (published / embedded), ``output`` (which raw number the
score is: ``cosine``, ``itm_logit``, ``itm_prob``, ``log_prob``), ``pretrained``
(tag or path) and ``checkpoint_hash`` (sha256 of the weights actually loaded).

Captions longer than ``max_text_tokens`` are truncated explicitly; the count is
kept in ``truncated`` (reset with ``reset_counts``), never silent.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

FAMILIES = ("dual", "single-stream", "two-stream", "text-only")
OUTPUTS = ("cosine", "itm_logit", "itm_prob", "log_prob")


class WeightsUnavailable(FileNotFoundError):
    """Published weights are not on this machine; the message names the tag and where to put them."""


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
    max_text_tokens: int = 77
    batch_size: int = 32

    def __init__(self) -> None:
        self.truncated = 0
        self.seen = 0

    # ---- contract -------------------------------------------------------------
    def score(self, images: Sequence, captions: Sequence[str]) -> np.ndarray:
        """One score per pair ``(images[i], captions[i])``, as float64, batched."""
        import torch

        if len(images) != len(captions):
            raise ValueError(f"{self.name}: {len(images)} images but {len(captions)} captions; pairs must align")
        out = []
        with torch.no_grad():
            for i in range(0, len(captions), self.batch_size):
                out.append(np.asarray(self._score_batch(list(images[i:i + self.batch_size]),
                                                        list(captions[i:i + self.batch_size])), dtype=np.float64))
        return np.concatenate(out) if out else np.zeros(0)

    def score_matrix(self, images: Sequence, captions: Sequence[str]) -> np.ndarray:
        """``S[i, j] = score(images[i], captions[j])`` for all pairs (cross-encoders: n*m forwards)."""
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
                "max_text_tokens": self.max_text_tokens}

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
        """L2-normalised text embeddings, one row per caption."""
        return self._batched(self._encode_text_batch, captions)

    def _score_batch(self, images, captions):
        return (self.encode_image(images) * self.encode_text(captions)).sum(axis=1)

    def score_matrix(self, images, captions) -> np.ndarray:
        """``S = U Vᵀ`` of normalised embeddings (one encoder pass per side)."""
        return self.encode_image(images) @ self.encode_text(captions).T
