"""The held-out check recorded in every stand-in checkpoint's meta (``meta["log"]["val"]``).

The ``val`` splits of ``tuxpaint-stamps`` and ``stamp-scenes`` are **not** used for
training, early stopping or any choice of hyper-parameters (schedules are fixed in
:mod:`analysis.scorers.configs`). After training, one metric is measured on them and
stored next to the weights, so a reader can see that a stand-in generalises beyond its
training images, and how far above chance:

* dual encoders: image->text recall@1 over the val images, the gallery being each val
  image's first caption (:func:`i2t_recall_at_1`; chance = expected hits of a random pick);
* matching (ITM) nets and the caption classifier: the fraction of val images whose first
  (canonical) caption outscores a negative drawn as in training, random for the defaults,
  a perturbation with probability ``p_hard`` for the ``+neg`` ablations (:func:`win_rate`;
  chance 0.5);
* the n-gram prior: mean log-probability per token of the val captions
  (:func:`analysis.scorers.blind.heldout_logprob`).

Each returns ``{"split": "val", "metric", "value", "chance", "n", ...}``; the net is run where its
parameters are (the device it was trained on).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from analysis.runtime import module_device
from analysis.scorers import inputs, training


def val_set(cfg, *, smoke: bool, seed: int) -> training.TrainingSet:
    """The val-split items, with the perturbations ``cfg`` trains with (none for the defaults)."""
    return training.training_set(smoke=smoke, seed=seed, hard_per_kind=cfg.hard_per_kind, split="val")


def _result(metric: str, hits: np.ndarray, chance: float, **extra) -> dict:
    return {"split": "val", "metric": metric, "value": round(float(np.mean(hits)), 4) if len(hits) else None,
            "chance": round(float(chance), 4), "n": int(len(hits)), "used_for_selection": False, **extra}


@torch.no_grad()
def i2t_recall_at_1(net, val: training.TrainingSet, cfg, *, seed: int = 0) -> dict:
    """``R@1 = mean_i [gallery[argmax_j <u_i, v_j>] is true of image i]`` over the val images, the
    gallery holding each image's first caption once (chance: ``mean_i |true_i ∩ gallery| / |gallery|``)."""
    data = inputs.train_data(val, "sentence", device=module_device(net, "cpu"))
    gallery = sorted({p[0] for p in val.positives})
    u = F.normalize(net.image(data.pooled), dim=-1)
    v = F.normalize(net.text(data.sentence[torch.tensor(gallery)]), dim=-1)
    best = (u @ v.T).argmax(1).cpu().numpy()
    hits = np.array([gallery[b] in val.positives[i] for i, b in enumerate(best)])
    chance = np.mean([len(set(p) & set(gallery)) / len(gallery) for p in val.positives])
    return _result("i2t_recall_at_1", hits, chance, gallery=len(gallery))


def _pairs(val: training.TrainingSet, cfg, seed: int) -> tuple[list[int], list[int]]:
    """Per val image its first caption and one negative drawn as in training."""
    sampler = training.PairSampler(val, seed, p_canonical=cfg.p_canonical, p_hard=cfg.p_hard)
    return [p[0] for p in val.positives], [sampler.negative(i) for i in range(len(val))]


def _negatives(cfg) -> str:
    return "random" if cfg.p_hard == 0 or cfg.hard_per_kind == 0 else f"perturbation with p={cfg.p_hard}, else random"


@torch.no_grad()
def win_rate(net, val: training.TrainingSet, cfg, *, seed: int = 0, chunk: int = 128) -> dict:
    """``mean_i [z(image_i, true_i) > z(image_i, negative_i)]`` for an ITM net (chance 0.5)."""
    data = inputs.train_data(val, net.text_source, device=module_device(net, "cpu"))
    pos, neg = _pairs(val, cfg, seed)
    z = {}
    for name, caps in (("pos", pos), ("neg", neg)):
        out = []
        for s in range(0, len(val), chunk):
            idx = list(range(s, min(s + chunk, len(val))))
            t, mask = inputs.pad([data.tokens[caps[i]] for i in idx])
            v = net.encode_image(data.grid[torch.tensor(idx)].float())
            out.append(net.fuse(net.encode_text(t, mask), mask, v))
        z[name] = torch.cat(out).cpu().numpy()
    return _result("win_rate", z["pos"] > z["neg"], 0.5, negatives=_negatives(cfg))


@torch.no_grad()
def caption_win_rate(net, val: training.TrainingSet, cfg, *, seed: int = 0) -> dict:
    """:func:`win_rate` for the caption-only classifier (blind+neg): the image is never read."""
    data = inputs.train_data(val, "sentence", images=False, device=module_device(net, "cpu"))
    pos, neg = _pairs(val, cfg, seed)
    zp, zn = net(data.sentence[torch.tensor(pos)]).cpu().numpy(), net(data.sentence[torch.tensor(neg)]).cpu().numpy()
    return _result("win_rate", zp > zn, 0.5, negatives=_negatives(cfg))
