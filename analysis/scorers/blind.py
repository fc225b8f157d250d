"""``blind``: the text-only baseline. It never sees the image.

A small MLP on the unit-length MiniLM sentence embedding ``e`` of the caption,
``z = w₂ · GELU(W₁ e + b₁) + b₂``, trained with the same positives, random negatives
and scene-graph hard negatives, the same sampler and the same class-balanced BCE as
the ITM stand-ins (:mod:`analysis.scorers.training`). Whatever it gets right, the
caption alone gave away (word order broken by ``shuffle_words``, the extra phrase of
``add_visual_word``, ...): every probe result is read against it.
``score(images, captions)`` checks that the two lists pair up, then ignores the images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from analysis import towers
from analysis.scorers import embedded, training
from analysis.scorers.base import Scorer
from analysis.scorers.training import ItmSampling, Schedule


@dataclass(frozen=True)
class BlindConfig(ItmSampling):
    """blind: hidden width, dropout, schedule, and the ITM models' sampling settings."""

    hidden: int = 256
    dropout: float = 0.1
    schedule: Schedule = Schedule(steps=1500, batch_size=128, lr=1e-3, weight_decay=0.01)


class BlindNet(nn.Module):
    """``z = w₂ · GELU(W₁ e + b₁) + b₂`` on the sentence embedding ``e`` (384-d)."""

    def __init__(self, cfg: BlindConfig):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(towers.TEXT_DIM, cfg.hidden), nn.Linear(cfg.hidden, 1)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, e):
        return self.fc2(self.drop(F.gelu(self.fc1(e)))).squeeze(-1)


def blind_loss(net: BlindNet, data: embedded.TrainData, sampler: training.PairSampler, batch_size: int):
    """One step: the ITM rows of :meth:`PairSampler.itm_batch`, captions only, balanced BCE."""
    _, _, caps, y = sampler.itm_batch(batch_size)
    return training.balanced_bce(net(data.sentence[torch.from_numpy(caps)]), torch.from_numpy(y))


SPEC = embedded.Spec(
    name="blind", label="blind (text-only baseline)", family="text-only", output="itm_logit",
    config=BlindConfig(), smoke=Schedule(steps=40, batch_size=16, lr=3e-3, warmup=0.1),
    text="sentence", images=False, make_net=BlindNet, step_loss=blind_loss)


class BlindScorer(embedded.StandIn, Scorer):
    """The text-only baseline behind the scorer contract (images are checked, then ignored)."""

    def __init__(self, net: BlindNet, folder, meta: dict, *, seed: int, smoke: bool):
        Scorer.__init__(self)
        self.net = net.eval()
        self._provenance(SPEC, folder, meta, seed=seed, smoke=smoke)

    def _text_scores(self, captions) -> np.ndarray:
        tok = self._tokens(captions)
        tower = towers.text_tower()
        with torch.no_grad():
            return self.net(tower.mean_pool(tower.states(tok), tok.mask)).numpy()

    def _score_batch(self, images, captions):
        return self._text_scores(captions)

    def score_matrix(self, images, captions) -> np.ndarray:
        """``S[i, j] = s(captions[j])`` for every image ``i``: each caption is scored once."""
        s = np.concatenate([self._text_scores(list(captions[j:j + self.batch_size]))
                            for j in range(0, len(captions), self.batch_size)]) if len(captions) else np.zeros(0)
        return np.tile(s.astype(np.float64), (len(images), 1))


def blind(*, smoke: bool = False, seed: int = 0, **overrides) -> BlindScorer:
    """``get_scorer("blind")``: the text-only baseline (trained on first use, then cached)."""
    net, folder, meta = embedded.trained(SPEC, smoke=smoke, seed=seed, **overrides)
    return BlindScorer(net, folder, meta, seed=seed, smoke=smoke)
