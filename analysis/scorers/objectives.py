"""What the stand-ins are trained to minimise: the losses, and one training step per recipe.

Losses (pure functions of tensors):

* :func:`clip_loss`: symmetric InfoNCE, ``open_clip.loss.ClipLoss``. The contrastive
  sampler puts every caption text at most once in a batch
  (:meth:`~analysis.scorers.training.PairSampler.contrastive_batch`), so the off-diagonal
  pairs ClipLoss treats as negatives are never the positive's own text.
* :func:`negclip_loss`: NegCLIP (Yuksekgonul et al. 2023): InfoNCE whose image->text
  direction also sees extra text negatives (perturbed captions of the batch's scenes).
* :func:`balanced_bce`: class-balanced binary cross-entropy on matching logits.

Steps ``step(net, data, sampler, cfg) -> loss`` draw one batch and return its loss:
:func:`contrastive_step` (clip-mini and, with ``hard_text_negatives > 0``, clip-mini+neg),
:func:`itm_step` (uniter-mini, lxmert-mini and their +neg ablations) and
:func:`caption_itm_step` (blind+neg, captions only).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from analysis.scorers.inputs import TrainData, pad
from analysis.scorers.training import PairSampler


# --------------------------------------------------------------------------- losses
def clip_loss(u: torch.Tensor, v: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) over ``n`` matched pairs, by ``open_clip.loss.ClipLoss``.

    With unit rows ``u_i`` (images), ``v_j`` (texts) and ``t = exp(logit_scale)``,
    ``L_ij = t <u_i, v_j>`` and
    ``loss = ½ [ -1/n Σ_i log softmax_j(L)_ii  -  1/n Σ_j log softmax_i(Lᵀ)_jj ]``.
    Every off-diagonal pair counts as a negative: batches must not repeat a caption text.
    """
    from open_clip.loss import ClipLoss

    return ClipLoss()(u, v, logit_scale.exp())


def negclip_loss(u: torch.Tensor, v: torch.Tensor, logit_scale: torch.Tensor,
                 extra: torch.Tensor | None = None) -> torch.Tensor:
    """NegCLIP: InfoNCE with ``h`` extra text negatives ``w`` (unit rows) in the image->text direction.

    ``loss = ½ [ CE(t U [V; W]ᵀ, diag) + CE(t V Uᵀ, diag) ]``: each image chooses among the
    ``n`` batch captions and the ``h`` perturbed ones; each caption still chooses among the
    ``n`` images. With no extra negatives it is :func:`clip_loss`.
    """
    t = logit_scale.exp()
    texts = v if extra is None or len(extra) == 0 else torch.cat([v, extra])
    target = torch.arange(len(u), device=u.device)
    return 0.5 * (F.cross_entropy(t * u @ texts.T, target) + F.cross_entropy(t * v @ u.T, target))


def balanced_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy on matching logits ``z`` with labels ``y``:
    ``loss = ½ mean_{y=1} softplus(-z) + ½ mean_{y=0} softplus(z)`` (positives and negatives
    weigh the same however many of each the batch holds), as a weighted
    ``binary_cross_entropy_with_logits`` with weight ``1 / (2 n_y)`` per row of class ``y``."""
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    classes = (n_pos > 0) + (n_neg > 0)
    weight = torch.where(pos, 1.0 / max(n_pos, 1), 1.0 / max(n_neg, 1)) / classes
    return F.binary_cross_entropy_with_logits(logits, labels.float(), weight=weight, reduction="sum")


# --------------------------------------------------------------------------- one step per recipe
def contrastive_step(net, data: TrainData, sampler: PairSampler, cfg) -> torch.Tensor:
    """One clip-mini step: ``b`` images with one true caption each; plain InfoNCE
    (:func:`clip_loss`), or NegCLIP (:func:`negclip_loss`) with up to ``cfg.hard_text_negatives``
    perturbed captions per scene of the batch when that is positive."""
    imgs, caps = sampler.contrastive_batch(cfg.schedule.batch_size)
    u = F.normalize(net.image(data.pooled[torch.from_numpy(imgs)]), dim=-1)
    v = F.normalize(net.text(data.sentence[torch.from_numpy(caps)]), dim=-1)
    if cfg.hard_text_negatives <= 0:
        return clip_loss(u, v, net.scale())
    hard = sampler.text_negatives(imgs, cfg.hard_text_negatives)
    w = F.normalize(net.text(data.sentence[torch.from_numpy(hard)]), dim=-1) if len(hard) else None
    return negclip_loss(u, v, net.scale(), w)


def itm_step(net, data: TrainData, sampler: PairSampler, cfg) -> torch.Tensor:
    """One ITM step: per image one positive and one negative row (random, or a perturbation with
    probability ``p_hard``); images encoded once; :func:`balanced_bce` on the fused logits."""
    imgs, k, c, y = sampler.itm_batch(cfg.schedule.batch_size)
    v = net.encode_image(data.grid[torch.from_numpy(imgs)].float())
    t, mask = pad([data.tokens[j] for j in c])
    z = net.fuse(net.encode_text(t, mask), mask, v[torch.from_numpy(k)])
    return balanced_bce(z, torch.from_numpy(y).to(z.device))


def caption_itm_step(net, data: TrainData, sampler: PairSampler, cfg) -> torch.Tensor:
    """One blind+neg step: the rows of :func:`itm_step`, captions only (the image is never read)."""
    _, _, caps, y = sampler.itm_batch(cfg.schedule.batch_size)
    z = net(data.sentence[torch.from_numpy(caps)])
    return balanced_bce(z, torch.from_numpy(y).to(z.device))
