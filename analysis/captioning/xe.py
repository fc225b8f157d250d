"""Caption data of a split and cross-entropy (XE) training of the captioner, cached by recipe.

**Data** (:func:`caption_data`). The images and references of the embedded training datasets,
``tuxpaint-stamps`` (one human-written description per stamp) then ``stamp-scenes`` (five references
generated from each scene's known graph), in the order :func:`analysis.scorers.training.training_set`
uses, so the cached tower features are shared with the stand-ins. ``split="train"`` is what the
captioner learns from; ``split="test"`` is the held-out evaluation set, the ``test`` split of both
datasets (the split :func:`analysis.scorer_eval.heldout` scores for them: held-out stamps whose captions
no training stamp shares, and scenes whose *set of objects* never occurs in training);
``stamp-scenes-unseen`` (scenes of unseen stamps) can be added with ``datasets=``. Smoke mode keeps the
first :data:`analysis.scorers.training.SMOKE_ITEMS` items of each dataset. Features are the locked
EfficientNet-Lite0 grid tokens of :func:`analysis.towers.image_features` (cached, stored fp16, given
here as float32).

**XE training** (:func:`train_xe`). Teacher forcing over *every* reference: each step takes
``batch_images`` distinct images (a fresh seeded permutation each epoch, the last partial batch left for
the next epoch) with all their references as rows (the image memory is computed once per image; rows run
in ``XEConfig.buckets`` groups of similar length, which only saves padding), and minimises the mean token
cross-entropy ``−(1/#tokens) Σ_rows Σ_t log p(w_t | image, w_<t)`` over the target tokens
``w_1 .. w_n <eos>`` (padding excluded; with ``label_smoothing = ε > 0`` the smoothed target
``(1 − ε)·onehot + ε/(V − 2)`` over the tokens the model can write, :func:`xe_loss`; the defaults use
ε = 0). A stamp thus weighs one row, a scene five.
References longer than ``max_len − 1`` words keep their first ``max_len − 1`` words and ``<eos>``.
AdamW with warm-up and cosine decay, gradient clipping and :data:`~analysis.scorers.training.TRAIN_THREADS`
CPU threads (:class:`analysis.scorers.training.Schedule`, :func:`~analysis.scorers.training.fit`).
The vocabulary comes from the training references (``min_count``, :class:`~analysis.captioning.model.Vocab`).

**Cache.** :func:`analysis.scorers.training.checkpoint` under a recipe of the config, seed, smoke flag,
device type, the data fingerprint (image file hashes, ids, references, feature-cache key), the image
tower hash and :data:`CODE_VERSION`. The device defaults to :func:`analysis.runtime.device` (``$STUDY_DEVICE``,
else CUDA when visible, else the CPU); its *type* is in the recipe, so a CPU checkpoint keeps its key and a GPU
one is its own entry. The folder holds ``model.safetensors``, ``vocab.json``,
``config.json`` and ``meta.json`` (the training log); :func:`load_captioner` rebuilds the model.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from analysis import cache
from analysis.captioning.model import EOS, PAD, Captioner, CaptionerConfig, Vocab, normalise
from analysis.runtime import rng as make_rng
from analysis.scorers import training

CODE_VERSION = 1  # bump when the model, the data or the training loop changes: it is part of every checkpoint key
DATASETS = training.DATASETS  # ("tuxpaint-stamps", "stamp-scenes")
NAME = "captioner-xe"
VOCAB_FILE, CONFIG_FILE = "vocab.json", "config.json"


# --------------------------------------------------------------------------- data
@dataclass
class CaptionData:
    """Images of one split with their features and references; row ``i`` of every field is image ``i``.

    ``grid`` float32 ``(n, 49, 1280)`` and ``pooled`` ``(n, 1280)`` (torch, CPU); ``refs[i]`` the
    reference captions as written; ``graphs[i]`` the scene graph of a stamp scene, None for a stamp;
    ``ids[i]`` ``"<dataset>:<item id>"``; ``features_key`` the feature-cache entry the arrays came from."""

    grid: torch.Tensor
    pooled: torch.Tensor
    refs: list[list[str]]
    paths: list[Path]
    ids: list[str]
    graphs: list[dict | None]
    dataset: list[str]
    split: str
    features_key: str
    provenance: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tokenized_refs(self) -> list[list[str]]:
        """References in comparison form (:func:`analysis.captioning.model.normalise`): what CIDEr-D takes."""
        return [[normalise(r) for r in refs] for refs in self.refs]

    def subset(self, index: Sequence[int]) -> "CaptionData":
        """The images at ``index``, in that order."""
        idx = [int(i) for i in index]
        t = torch.as_tensor(idx, dtype=torch.long)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return CaptionData(self.grid[t], self.pooled[t], pick(self.refs), pick(self.paths), pick(self.ids),
                           pick(self.graphs), pick(self.dataset), self.split, self.features_key,
                           {**self.provenance, "subset": len(idx)})

    def fingerprint(self) -> str:
        """sha256 over the image file hashes, ids, references and the feature-cache key."""
        h = hashlib.sha256()
        for p in self.paths:
            h.update(cache.file_sha256(p).encode())
        h.update(json.dumps([self.ids, self.refs, self.features_key]).encode())
        return h.hexdigest()


def scene_pool(data) -> list[str]:
    """The object names the scene datasets of ``data`` draw from (their ``provenance["pool"]``, in order, each
    once): what grounding's hallucination vocabulary and controlled edits need. Empty when ``data`` has no scene
    dataset."""
    from analysis import registry
    from analysis.scorer_eval import has_scene_graphs

    pool: list[str] = []
    for name in data.provenance.get("datasets", ()):
        ds = registry.get_dataset(name, split=data.provenance.get("split"))
        if has_scene_graphs(ds):
            pool += [n for n in ds.provenance.get("pool", []) if n not in pool]
    return pool


def caption_items(split: str = "train", *, smoke: bool = False, datasets: Sequence[str] = DATASETS):
    """``[(dataset name, Item), ...]`` of ``split`` for each dataset in order (smoke: the first
    :data:`~analysis.scorers.training.SMOKE_ITEMS` of each); no features are computed."""
    from analysis import registry

    limit = training.SMOKE_ITEMS if smoke else None
    out = []
    for name in datasets:
        ds = registry.get_dataset(name, split=split, limit=limit)
        out += [(name, it) for it in ds]
    if not out:
        raise ValueError(f"caption_data: no items in split {split!r} of {list(datasets)}")
    return out


def caption_data(split: str = "train", *, smoke: bool = False, seed: int = 0,
                 datasets: Sequence[str] = DATASETS) -> CaptionData:
    """Images, cached tower features, references, scene graphs and ids of ``split`` (see the module
    docstring). ``seed`` is recorded in the provenance only: the embedded data are deterministic."""
    from analysis import towers

    items = caption_items(split, smoke=smoke, datasets=datasets)
    paths = [Path(it.path) for _, it in items]
    feats = towers.image_features(paths)
    grid = torch.from_numpy(feats.grid.astype(np.float32))
    return CaptionData(grid=grid, pooled=torch.from_numpy(np.asarray(feats.pooled, np.float32)),
                       refs=[list(it.captions) for _, it in items], paths=paths,
                       ids=[f"{name}:{it.id}" for name, it in items],
                       graphs=[it.meta.get("graph") for _, it in items], dataset=[name for name, _ in items],
                       split=split, features_key=feats.key,
                       provenance={"datasets": list(datasets), "split": split, "smoke": bool(smoke), "seed": int(seed),
                                   "limit": training.SMOKE_ITEMS if smoke else None,
                                   "image_tower": towers.IMAGE_TOWER})


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class XEConfig:
    """Captioner shape plus XE hyper-parameters (``steps`` of ``batch_images`` images with all their
    references; AdamW ``lr``, ``weight_decay``, warm-up fraction, gradient clip; ``label_smoothing`` ε;
    ``buckets`` length groups per step).

    ``min_count = 1`` keeps every training word (874 in the default training set): ``<unk>`` is then never
    a target and the model never writes it, so the scorers are never handed a non-word. Words of held-out
    stamps that no training caption uses cannot be written either way. The default schedule (900 steps of
    32 images, about 31 epochs; lr 1e-3) was set on the ``val`` split's greedy CIDEr-D, one seed each (lr 5e-4:
    600 steps 0.88, 900 steps 1.01; lr 1e-3, 900 steps: 1.07) within a 3-minute budget on 2 cores; the test
    split was not looked at."""

    model: CaptionerConfig = CaptionerConfig()
    min_count: int = 1
    steps: int = 900
    batch_images: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    clip_grad: float = 1.0
    label_smoothing: float = 0.0
    buckets: int = 3


DEFAULT = XEConfig()
SMOKE = XEConfig(model=CaptionerConfig(d_model=64, n_layers=1, n_heads=2, d_ff=128), min_count=1, steps=40,
                 batch_images=16, lr=2e-3)


def config_for(smoke: bool) -> XEConfig:
    return SMOKE if smoke else DEFAULT


def xe_recipe(cfg: XEConfig, data: CaptionData, *, seed: int, smoke: bool, device: str | None = None) -> dict:
    """What an XE checkpoint depends on (see the module docstring); ``device`` defaults to
    :func:`analysis.runtime.device`."""
    from analysis import towers
    from analysis.runtime import resolve_device

    device = resolve_device(device)
    return {"config": asdict(cfg), "seed": int(seed), "smoke": bool(smoke), "code_version": CODE_VERSION,
            "device": torch.device(device).type, "threads": training.TRAIN_THREADS,
            "data": {"fingerprint": data.fingerprint(), "n_images": len(data), "split": data.split,
                     "n_refs": sum(len(r) for r in data.refs), **data.provenance},
            "image_tower": towers.tower_hashes()["image"], "features_version": towers.FEATURES_VERSION}


class ImageBatches:
    """``next(b)``: ``b`` distinct image indices, epoch by epoch (a fresh permutation from its own
    seeded NumPy generator each epoch; the images left over wait for the next batch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.rng, self.order = n, make_rng(seed), []

    def next(self, b: int) -> np.ndarray:
        b = min(b, self.n)
        if len(self.order) < b:
            self.order = self.order + list(self.rng.permutation(self.n))
        out, self.order = self.order[:b], self.order[b:]
        return np.asarray(out)


def xe_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over the non-``<pad>`` targets of
    ``(1 − ε)·(−log p(w_t)) + ε·mean_{v ∉ {pad, bos}}(−log p(v))``: cross-entropy, with label smoothing
    ε spread over the tokens the model can write (``<pad>`` and ``<bos>`` have probability 0).
    ``logits`` ``(N, T, V)``, ``targets`` ``(N, T)``."""
    logp = F.log_softmax(logits.float(), -1)
    keep = targets != PAD
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if label_smoothing:
        nll = (1 - label_smoothing) * nll - label_smoothing * logp[..., EOS:].mean(-1)  # ids >= 2: <eos>, <unk>, words
    return nll[keep].mean()


def length_buckets(lengths: np.ndarray, k: int) -> list[np.ndarray]:
    """Positions of ``lengths`` split into at most ``k`` groups of consecutive lengths (sorted, equal
    counts), so each group pads only to its own longest row.

    >>> [b.tolist() for b in length_buckets(np.array([3, 9, 4, 8, 2]), 2)]
    [[4, 0, 2], [3, 1]]
    """
    order = np.argsort(lengths, kind="stable")
    return [b for b in np.array_split(order, min(k, len(order))) if len(b)]


def _train(cfg: XEConfig, data: CaptionData, seed: int, device: str) -> tuple[Captioner, dict]:
    training.start(seed)
    vocab = Vocab.build((r for refs in data.refs for r in refs), cfg.min_count)
    model = Captioner(vocab, cfg.model).to(device)
    rows = vocab.tensor([r for refs in data.refs for r in refs], cfg.model.max_len + 1)
    owner = np.repeat(np.arange(len(data)), [len(r) for r in data.refs])
    rows_of = [np.flatnonzero(owner == i) for i in range(len(data))]
    batches = ImageBatches(len(data), seed)
    V = len(vocab)

    lengths = (rows != PAD).sum(1).numpy()

    def step_loss(t: int) -> torch.Tensor:
        imgs = batches.next(cfg.batch_images)
        r = np.concatenate([rows_of[i] for i in imgs])
        local = np.concatenate([np.full(len(rows_of[i]), k) for k, i in enumerate(imgs)])
        memory = model.memory(data.grid[torch.as_tensor(imgs)])
        total, n_tokens = 0.0, 0
        for part in length_buckets(lengths[r], cfg.buckets):  # rows of similar length: little padding
            tok = rows[torch.as_tensor(r[part])]
            tok = tok[:, :int(lengths[r[part]].max())].to(device)
            logits = model.decode(memory, tok[:, :-1], image_index=torch.as_tensor(local[part]))
            n = int((tok[:, 1:] != PAD).sum())
            total = total + xe_loss(logits, tok[:, 1:], cfg.label_smoothing) * n
            n_tokens += n
        return total / n_tokens

    sched = training.Schedule(steps=cfg.steps, batch_size=cfg.batch_images, lr=cfg.lr, weight_decay=cfg.weight_decay,
                              warmup=cfg.warmup, clip_grad=cfg.clip_grad)
    # deterministic mode (analysis.runtime.seed_all) also fills every new tensor with NaN to expose reads of
    # uninitialised memory; that costs time on every step and changes no result, so it is off while training
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        log = training.fit(model, step_loss, sched, desc="captioner XE", log_every=max(1, cfg.steps // 50))
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
    log.update(vocab_size=V, n_images=len(data), n_refs=int(len(rows)),
               truncated_refs=int(sum(len(vocab.encode(r)) > cfg.model.max_len - 1
                                      for refs in data.refs for r in refs)))
    return model.cpu(), log


def _save(model: Captioner, folder: Path, meta: dict) -> None:
    training.save_checkpoint(model, folder, {**meta, "captioner": model.info()})
    (Path(folder) / VOCAB_FILE).write_text(json.dumps(model.vocab.to_dict()))
    (Path(folder) / CONFIG_FILE).write_text(json.dumps(asdict(model.config), sort_keys=True))


def load_captioner(folder: str | Path, device: str | None = None) -> Captioner:
    """The captioner saved in ``folder`` (``config.json``, ``vocab.json``, ``model.safetensors``), in eval
    mode on ``device`` (default :func:`analysis.runtime.device`); ``.weights_sha256`` is the weight file's hash."""
    from analysis.runtime import resolve_device

    folder = Path(folder)
    missing = [f for f in (CONFIG_FILE, VOCAB_FILE, training.WEIGHTS) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"load_captioner: {folder} lacks {missing}; it is not a captioner checkpoint "
                                "(train one with train_xe)")
    cfg = CaptionerConfig(**json.loads((folder / CONFIG_FILE).read_text()))
    vocab = Vocab.from_dict(json.loads((folder / VOCAB_FILE).read_text()))
    model = Captioner(vocab, cfg)
    model.weights_sha256 = training.load_checkpoint(model, folder)
    return model.to(resolve_device(device)).eval()


def train_xe(data: CaptionData, *, smoke: bool = False, seed: int = 0, device: str | None = None,
             config: XEConfig | None = None) -> tuple[Captioner, Vocab, Path]:
    """The XE captioner for ``data`` (a training split): ``(captioner, vocab, folder)``, trained on a cache
    miss and loaded from ``folder`` on a hit (the same weights either way), on ``device`` (default
    :func:`analysis.runtime.device`). ``config`` defaults to :data:`SMOKE` or :data:`DEFAULT`."""
    from analysis.runtime import resolve_device

    device = resolve_device(device)
    cfg = config or config_for(smoke)
    if data.split != "train":
        raise ValueError(f"train_xe: data is the {data.split!r} split; train on caption_data('train')")
    recipe = xe_recipe(cfg, data, seed=seed, smoke=smoke, device=device)
    folder = training.checkpoint(NAME, recipe, lambda: _train(cfg, data, seed, device), save=_save)
    model = load_captioner(folder, device)
    return model, model.vocab, folder

