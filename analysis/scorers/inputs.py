"""What the trained nets read: frozen tower features, for training and for scoring.

* Text: a caption's MiniLM sentence embedding (clip-mini, blind+neg), MiniLM's
  embedding-layer output (uniter-mini, whose layers start as MiniLM's) or MiniLM's
  last-layer token states (lxmert-mini), as unpadded ``(L_i, 384)`` rows that
  :func:`pad` batches with a mask.
* Images: the pooled 1280-d EfficientNet-Lite0 feature (clip-mini) or its 49 grid tokens
  (the ITM nets).

:func:`train_data` gathers them for a whole :class:`~analysis.scorers.training.TrainingSet`
(image features come from the feature cache of :mod:`analysis.towers`, text features from the CPU
text tower, so training inputs never depend on the device), moved to the device the net trains
on. At score time the scorers run the same towers, on their own device, on the PIL images they
are given, so cached and fresh features agree (``tests/test_towers.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from analysis import towers
from analysis.scorers import training

TEXT_SOURCES = ("sentence", "embeddings", "states")


def text_inputs(source: str, tokens: towers.Tokens, device: str | None = None) -> torch.Tensor:
    """The frozen text input of an ITM net: MiniLM's embedding-layer output (``"embeddings"``)
    or its last-layer token states (``"states"``), ``(n, T, 384)``, from the text tower on ``device``
    (default the CPU)."""
    tower = towers.text_tower(device)
    if source == "embeddings":
        return tower.embeddings(tokens)
    if source == "states":
        return tower.states(tokens)
    raise ValueError(f"unknown text source {source!r}; valid: embeddings, states")


def pad(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length ``(L_i, d)`` rows -> zero-padded ``(n, max L, d)`` and a ``(n, max L)`` mask, both on
    the rows' device."""
    x = nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
    lengths = torch.tensor([len(r) for r in rows], device=x.device)
    return x, (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).long()


def per_caption(source: str, captions: Sequence[str], *, batch_size: int = 128, desc: str = "") -> list[torch.Tensor]:
    """Frozen text inputs of many captions as unpadded ``(L_i, 384)`` rows (batched by length)."""
    from tqdm.auto import tqdm

    order = np.argsort([len(c) for c in captions], kind="stable")
    out: list[torch.Tensor | None] = [None] * len(captions)
    for s in tqdm(range(0, len(order), batch_size), desc=desc or f"MiniLM {source}", leave=False,
                  disable=len(order) < 4 * batch_size):
        idx = order[s:s + batch_size]
        tok = towers.text_tower().tokenize([captions[i] for i in idx])
        x = text_inputs(source, tok)
        for r, i in enumerate(idx):
            out[i] = x[r, :int(tok.mask[r].sum())].clone()
    return out


@dataclass
class TrainData:
    """The training set with its features in memory: pooled and grid image features and the text
    features a net needs (sentence embeddings, or per-caption token rows)."""

    ts: training.TrainingSet
    pooled: torch.Tensor
    grid: torch.Tensor
    sentence: torch.Tensor | None = None
    tokens: list[torch.Tensor] = field(default_factory=list)


def train_data(ts: training.TrainingSet, text: str, *, images: bool = True, device: str | None = None) -> TrainData:
    """Cached tower features of the training images (unless ``images=False``) plus the text
    features ``text`` names (one of :data:`TEXT_SOURCES`), computed on the CPU and put on ``device``
    (default: left on the CPU)."""
    if text not in TEXT_SOURCES:
        raise ValueError(f"unknown text features {text!r}; valid: {', '.join(TEXT_SOURCES)}")
    dev = torch.device(device or "cpu")
    if images:
        feats = towers.image_features(ts.paths)
        data = TrainData(ts, torch.from_numpy(feats.pooled).to(dev), torch.from_numpy(feats.grid).to(dev))
    else:
        data = TrainData(ts, torch.zeros(0), torch.zeros(0))
    if text == "sentence":
        data.sentence = torch.from_numpy(towers.sentence_features(ts.captions)).to(dev)
    else:
        data.tokens = [t.to(dev) for t in per_caption(text, ts.captions)]
    return data


def sentence(tokens: towers.Tokens, device: str | None = None) -> torch.Tensor:
    """Unit-length MiniLM sentence embeddings ``(n, 384)`` of tokenised captions (what
    :func:`analysis.towers.sentence_features` caches for the training captions), by the text tower on
    ``device`` (default the CPU)."""
    tower = towers.text_tower(device)
    return tower.mean_pool(tower.states(tokens), tokens.mask)
