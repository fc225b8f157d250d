"""Hyper-parameters of the embedded stand-ins: one small frozen dataclass per model.

Every field enters the checkpoint recipe (``dataclasses.asdict``), so changing one is a
new cache entry, never a stale hit. A stand-in and its ``+neg`` ablation share the
network and the schedule and differ only in the negatives they are trained with:

* **Defaults, trained the way their published counterparts are.** ``clip-mini``:
  plain contrastive InfoNCE on true pairs (CLIP, LiT). ``uniter-mini`` / ``lxmert-mini``:
  image-text matching (ITM) on positives and *random* negatives only (UNITER, ViLT,
  LXMERT). No rule-made caption perturbation is ever seen (``hard_per_kind = 0``,
  ``p_hard = 0``), so the scorer chapter's perturbation test is zero-shot for them.
  (ALBEF / BLIP also mine hard negatives by similarity within the batch; these
  stand-ins do not.)
* **Ablations** (``+neg``): the same models trained with the scene-graph perturbations of
  :mod:`analysis.data.perturbations` as hard negatives. ``clip-mini+neg`` follows NegCLIP
  (perturbed captions of the batch's scenes appended as extra text negatives in the
  image->text direction); the ITM ablations draw a perturbation as the negative with
  probability ``p_hard``. Their perturbation accuracy is in-distribution.

Schedules were set so that all eight stand-ins train in about six minutes on two CPU
cores; they are fixed, not selected on the val split (see :mod:`analysis.scorers.validation`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from analysis.scorers.training import Schedule


@dataclass(frozen=True)
class ItmSampling:
    """How matching (ITM) rows are drawn (:class:`analysis.scorers.training.PairSampler`):
    ``hard_per_kind`` perturbations of each kind per training scene, the probability
    ``p_canonical`` of the canonical scene caption as the positive, and the probability
    ``p_hard`` that a negative is a perturbation (else a random caption of another image)."""

    hard_per_kind: int = 0
    p_canonical: float = 0.5
    p_hard: float = 0.0


PERTURBATION_NEGATIVES = {"hard_per_kind": 2, "p_hard": 0.5}  # the +neg ITM recipe


@dataclass(frozen=True)
class ClipConfig:
    """clip-mini: projection width, initial temperature, schedule; ``hard_text_negatives``
    perturbed captions per scene appended as image->text negatives (0: plain InfoNCE)."""

    dim: int = 256
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    schedule: Schedule = Schedule(steps=1500, batch_size=256, lr=1e-3, weight_decay=0.1, warmup=0.05)
    hard_per_kind: int = 0
    hard_text_negatives: int = 0


@dataclass(frozen=True)
class UniterConfig(ItmSampling):
    """uniter-mini: number of MiniLM layers used (and fine-tuned), dropout, schedule."""

    layers: int = 2
    dropout: float = 0.0
    schedule: Schedule = Schedule(steps=150, batch_size=32, lr=1e-3, lr_pretrained=1e-4, weight_decay=0.01)


@dataclass(frozen=True)
class LxmertConfig(ItmSampling):
    """lxmert-mini: language, visual and cross-modality layer counts, widths, schedule."""

    dim: int = 256
    text_layers: int = 1
    vis_layers: int = 1
    cross_layers: int = 2
    heads: int = 4
    ffn: int = 512
    dropout: float = 0.0
    schedule: Schedule = Schedule(steps=200, batch_size=32, lr=3e-4, weight_decay=0.01)


@dataclass(frozen=True)
class BlindConfig(ItmSampling):
    """blind+neg: hidden width, dropout, schedule; trained on captions only with the ITM
    sampling of the ``+neg`` ablations (it exists to show what the perturbations give away)."""

    hidden: int = 256
    dropout: float = 0.1
    schedule: Schedule = Schedule(steps=1500, batch_size=128, lr=1e-3, weight_decay=0.01)
    hard_per_kind: int = PERTURBATION_NEGATIVES["hard_per_kind"]
    p_hard: float = PERTURBATION_NEGATIVES["p_hard"]


@dataclass(frozen=True)
class NgramConfig:
    """blind: an interpolated Kneser-Ney n-gram language model of the training captions
    (``order``, absolute ``discount``); words seen fewer than ``unk_cutoff`` times become
    ``<UNK>``, and a token's probability is floored at ``floor`` so every score is finite."""

    order: int = 3
    discount: float = 0.1
    unk_cutoff: int = 2
    floor: float = 1e-12
    hard_per_kind: int = 0  # the prior never sees a perturbation


def with_perturbations(cfg):
    """The ``+neg`` ablation of a default config: the same model and schedule, trained with
    scene-graph perturbations as negatives (NegCLIP text negatives for ``ClipConfig``)."""
    if isinstance(cfg, ClipConfig):
        return replace(cfg, hard_per_kind=PERTURBATION_NEGATIVES["hard_per_kind"], hard_text_negatives=1)
    return replace(cfg, **PERTURBATION_NEGATIVES)


def uses_perturbations(cfg) -> bool:
    """True when training with ``cfg`` shows the model perturbed captions as negatives."""
    if getattr(cfg, "hard_per_kind", 0) <= 0:
        return False
    return getattr(cfg, "p_hard", 0) > 0 or getattr(cfg, "hard_text_negatives", 0) > 0
