"""The embedded stand-in scorers: the table of stand-ins, how each is trained and cached, the
scorer wrappers and the registry builders.

None of these is CLIP, UNITER or LXMERT: they are small models of the same *shape* (how
image and text meet, what the score is), built on the frozen towers of :mod:`analysis.towers`
(EfficientNet-Lite0 grid, all-MiniLM-L6-v2 text) and trained in minutes on the ``train``
splits of ``tuxpaint-stamps`` + ``stamp-scenes``; every label says "stand-in" (or
"baseline"). :data:`SPECS` is the one table:

=================  =============  ==========  =============================================
name               family         output      trained with
=================  =============  ==========  =============================================
clip-mini          dual           cosine      InfoNCE on true pairs (CLIP / LiT)
clip-mini+neg      dual           cosine      NegCLIP: + perturbed captions as text negatives
uniter-mini        single-stream  itm_logit   ITM, positives + random negatives (UNITER)
uniter-mini+neg    single-stream  itm_logit   ITM, + perturbation hard negatives
lxmert-mini        two-stream     itm_logit   ITM, positives + random negatives (LXMERT)
lxmert-mini+neg    two-stream     itm_logit   ITM, + perturbation hard negatives
blind+neg          text-only      itm_logit   caption-only ITM classifier, + perturbations
=================  =============  ==========  =============================================

(``blind``, the n-gram caption prior, is in :mod:`analysis.scorers.blind`.) The networks
are in :mod:`~analysis.scorers.networks`, the hyper-parameters in
:mod:`~analysis.scorers.configs`, the losses in :mod:`~analysis.scorers.objectives`. Tower
features of the training images are computed once and cached; at score time the scorers
run the towers on the PIL images they are given, so they work on any image. All modules
are in eval mode (no dropout) when scoring; padding is masked so a pair's score does not
depend on the batch it is in.

**Device.** :func:`build` trains and scores on ``device`` (default :func:`analysis.runtime.device`:
``$STUDY_DEVICE``, else CUDA when visible, else the CPU). The training inputs are the same CPU-computed
tower features on every device (moved to it); at score time the towers run on the scorer's device. A
checkpoint trained on the CPU has the recipe it always had; one trained on another device type records
that type in its recipe, so it is a separate cache entry and never stands in for the CPU one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from analysis import cache, towers
from analysis.scorers import configs, inputs, networks, objectives, training, validation
from analysis.scorers.base import DualEncoder, Scorer, TextOnly
from analysis.scorers.training import Schedule
from analysis.scorers.weights import pick_device

NEG_NOTE = "trained on perturbation negatives"


@dataclass(frozen=True)
class Spec:
    """Everything that differs between the stand-ins: provenance, default config, smoke schedule,
    which features training reads, the net factory ``make_net(cfg)``, the training step
    ``step(net, data, sampler, cfg)``, the held-out check ``validate(net, val, cfg)`` and
    the scorer class."""

    name: str
    label: str
    family: str
    output: str
    config: object
    smoke: Schedule
    text: str  # which text features training reads: sentence / embeddings / states
    images: bool
    make_net: Callable[[object], nn.Module]
    step: Callable[..., torch.Tensor]
    validate: Callable[..., dict]
    scorer: type

    @property
    def default(self) -> bool:
        """True for the stand-ins trained the way their published counterparts are (not ``+neg``)."""
        return not configs.uses_perturbations(self.config)

    @property
    def trained_on_perturbations(self) -> bool:
        return configs.uses_perturbations(self.config)


# --------------------------------------------------------------------------- training and caching
def config_for(spec: Spec, smoke: bool, **overrides):
    """The spec's default config, with the smoke schedule in smoke mode and any field overridden."""
    cfg = spec.config
    if smoke:
        cfg = replace(cfg, schedule=spec.smoke)
    unknown = set(overrides) - {f.name for f in fields(cfg)}
    if unknown:
        raise TypeError(f"{spec.name}: unknown setting(s) {', '.join(sorted(unknown))}; "
                        f"valid: smoke, seed, {', '.join(f.name for f in fields(cfg))}")
    return replace(cfg, **overrides) if overrides else cfg


def train_net(spec: Spec, cfg, ts: training.TrainingSet, seed: int, val: training.TrainingSet | None = None,
              device: str | None = None) -> tuple[nn.Module, dict]:
    """Seed, build ``spec``'s net and train it on ``ts`` on ``device`` (no cache; default
    :func:`analysis.runtime.device`); returns ``(net, log)``, the net on ``device``. With ``val``, the log
    also holds the held-out metric of :mod:`analysis.scorers.validation`."""
    device = pick_device(device)
    t0 = time.perf_counter()
    training.start(seed)
    net = spec.make_net(cfg).to(device)
    data = inputs.train_data(ts, spec.text, images=spec.images, device=device)
    sampler = training.PairSampler(ts, seed, p_canonical=getattr(cfg, "p_canonical", 0.5),
                                   p_hard=getattr(cfg, "p_hard", 0.0))
    prep = time.perf_counter() - t0  # tower features (cached after the first build) and text inputs
    log = training.fit(net, lambda t: spec.step(net, data, sampler, cfg), cfg.schedule, desc=f"train {spec.name}")
    log["prep_seconds"] = round(prep, 2)
    if val is not None:
        t1 = time.perf_counter()
        log["val"] = {**spec.validate(net, val, cfg, seed=seed), "seconds": round(time.perf_counter() - t1, 2)}
    return net, log


def trained(spec: Spec, *, smoke: bool, seed: int, device: str | None = None, **overrides
            ) -> tuple[nn.Module, Path, dict]:
    """Build ``spec``'s net and load (or train on ``device`` and cache) its weights; returns ``(net, folder,
    meta)``, the net on ``device`` (default :func:`analysis.runtime.device`)."""
    device = pick_device(device)
    cfg = config_for(spec, smoke, **overrides)
    ts = training.training_set(smoke=smoke, seed=seed, hard_per_kind=cfg.hard_per_kind)
    val = validation.val_set(cfg, smoke=smoke, seed=seed)
    recipe = training.with_device(training.base_recipe(cfg, ts, seed=seed, smoke=smoke, val=val), device)
    folder = training.checkpoint(spec.name, recipe, lambda: train_net(spec, cfg, ts, seed, val, device))
    training.start(seed)  # the net's random init is overwritten by the checkpoint; seeding keeps it tidy
    net = spec.make_net(cfg)
    training.load_checkpoint(net, folder)
    return net.to(device), folder, training.read_meta(folder)


# --------------------------------------------------------------------------- scorers
class StandIn:
    """Provenance shared by the embedded stand-ins (mixed into a :class:`Scorer`)."""

    source = "embedded"
    max_text_tokens = towers.MAX_TEXT_TOKENS
    device = "cpu"  # where the net and the towers it reads run (set by :meth:`_place`)

    def _provenance(self, spec, folder: Path, meta: dict, *, seed: int, smoke: bool,
                    weights: str = training.WEIGHTS) -> None:
        self.spec = spec
        self.name, self.label, self.family, self.output = spec.name, spec.label, spec.family, spec.output
        self.default, self.trained_on_perturbations = spec.default, spec.trained_on_perturbations
        self.checkpoint_dir = Path(folder)
        self.checkpoint_hash = cache.file_sha256(self.checkpoint_dir / weights)
        self.pretrained = f"embedded:{spec.name}/{self.checkpoint_dir.name}"
        self.seed, self.smoke, self.meta = int(seed), bool(smoke), meta
        self.train_seconds = float(meta["log"]["seconds"])
        self.val = meta["log"].get("val")
        self.towers = {"image": towers.IMAGE_TOWER, "text": towers.TEXT_TOWER, **towers.tower_hashes()}

    def info(self) -> dict:
        """The contract's provenance plus: ``default``, ``seed``, ``smoke``, ``train_seconds`` and
        ``val`` (the held-out metric recorded at training time; not used for selection)."""
        return {**Scorer.info(self), "default": self.default, "seed": self.seed, "smoke": self.smoke,
                "train_seconds": self.train_seconds, "val": self.val}

    def _tokens(self, captions: Sequence[str]) -> towers.Tokens:
        tok = towers.text_tower(self.device).tokenize(captions, self.max_text_tokens)
        self.count_truncation(tok.lengths)
        return tok

    def _place(self, net: nn.Module, device: str | None) -> nn.Module:
        """``net`` in eval mode on ``device`` (default :func:`analysis.runtime.device`), kept as ``self.device``."""
        self.device = pick_device(device)
        return net.eval().to(self.device)


class ClipMini(StandIn, DualEncoder):
    """clip-mini / clip-mini+neg: cosine of the projected pooled image feature and MiniLM sentence embedding."""

    def __init__(self, spec: Spec, net: networks.ClipMiniNet, folder: Path, meta: dict, *, seed: int, smoke: bool,
                 device: str | None = None):
        Scorer.__init__(self)
        self.net = self._place(net, device)
        self._provenance(spec, folder, meta, seed=seed, smoke=smoke)

    def _encode_image_batch(self, images):
        pooled, _ = towers.image_tower(self.device).encode(images)
        return self.net.image(pooled)

    def _encode_text_batch(self, captions):
        return self.net.text(inputs.sentence(self._tokens(captions), self.device))

    def logit_scale(self) -> float:
        """The learned temperature ``exp(s)``."""
        return float(self.net.scale().exp())


class ItmStandIn(StandIn, Scorer):
    """uniter-mini / lxmert-mini (and +neg): the ITM logit of a fusion net over tower features."""

    pair_chunk = 256

    def __init__(self, spec: Spec, net: nn.Module, folder: Path, meta: dict, *, seed: int, smoke: bool,
                 device: str | None = None):
        Scorer.__init__(self)
        self.net = self._place(net, device)
        self._provenance(spec, folder, meta, seed=seed, smoke=smoke)

    def _text(self, captions):
        """Text-encoder rows ``(n, T, d)`` and their mask ``(n, T)``, both on the scorer's device."""
        tok = self._tokens(captions)
        mask = tok.mask.to(self.device)
        return self.net.encode_text(inputs.text_inputs(self.net.text_source, tok, self.device), mask), mask

    def _score_batch(self, images, captions):
        _, grid = towers.image_tower(self.device).encode(images)
        t, mask = self._text(captions)
        return self.net.fuse(t, mask, self.net.encode_image(grid)).cpu().numpy()

    def _score_matrix(self, images, captions) -> np.ndarray:
        """``S[i, j] = score(images[i], captions[j])``, with each image and caption encoded once and
        only the fusion run per pair (in chunks of :attr:`pair_chunk`)."""
        from tqdm.auto import tqdm

        n, m = len(images), len(captions)
        if n == 0 or m == 0:
            return np.zeros((n, m))
        with torch.no_grad():
            tower = towers.image_tower(self.device)
            vis = torch.cat([self.net.encode_image(tower.encode(list(images[i:i + self.batch_size]))[1])
                             for i in range(0, n, self.batch_size)])
            rows = []
            for j in range(0, m, self.batch_size):
                t, mask = self._text(list(captions[j:j + self.batch_size]))
                rows += [t[r, :int(mask[r].sum())] for r in range(len(t))]
            out = np.zeros(n * m)
            for s in tqdm(range(0, n * m, self.pair_chunk), desc=f"{self.name} pairs", leave=False,
                          disable=n * m < 8 * self.pair_chunk):
                idx = np.arange(s, min(s + self.pair_chunk, n * m))
                t, mask = inputs.pad([rows[j] for j in idx % m])
                out[idx] = self.net.fuse(t, mask, vis[torch.from_numpy(idx // m)]).cpu().numpy()
        return out.reshape(n, m)


class CaptionClassifier(StandIn, TextOnly):
    """blind+neg: the MLP's matching logit for the caption alone (images checked, then ignored)."""

    def __init__(self, spec: Spec, net: networks.BlindNet, folder: Path, meta: dict, *, seed: int, smoke: bool,
                 device: str | None = None):
        Scorer.__init__(self)
        self.net = self._place(net, device)
        self._provenance(spec, folder, meta, seed=seed, smoke=smoke)

    def _text_scores(self, captions) -> np.ndarray:
        with torch.no_grad():
            return self.net(inputs.sentence(self._tokens(captions), self.device)).cpu().numpy()


# --------------------------------------------------------------------------- the table
# smoke schedules: seconds each, yet the ITM nets already rank held-out scenes above an untrained net
SMOKE = {"clip": Schedule(steps=60, batch_size=16, lr=3e-3, weight_decay=0.0, warmup=0.1),
         "uniter": Schedule(steps=60, batch_size=16, lr=1e-3, lr_pretrained=1e-4, warmup=0.1),
         "lxmert": Schedule(steps=60, batch_size=16, lr=3e-4, warmup=0.1),
         "blind": Schedule(steps=40, batch_size=16, lr=3e-3, warmup=0.1)}


def _uniter(cfg) -> networks.UniterMiniNet:
    return networks.UniterMiniNet(cfg, towers.text_tower())


def _pair(name: str, style: str, family: str, output: str, cfg, smoke: Schedule, text: str, make_net, step,
          validate, scorer) -> dict[str, Spec]:
    """A default stand-in and its ``+neg`` ablation (same net and schedule, perturbation negatives)."""
    neg_style = "NegCLIP-style" if style == "CLIP-style" else style
    return {name: Spec(name, f"{name} ({style} stand-in)", family, output, cfg, smoke, text, True, make_net,
                       step, validate, scorer),
            f"{name}+neg": Spec(f"{name}+neg", f"{name}+neg ({neg_style} stand-in, {NEG_NOTE})", family, output,
                                configs.with_perturbations(cfg), smoke, text, True, make_net, step, validate, scorer)}


SPECS: dict[str, Spec] = {
    **_pair("clip-mini", "CLIP-style", "dual", "cosine", configs.ClipConfig(), SMOKE["clip"], "sentence",
            networks.ClipMiniNet, objectives.contrastive_step, validation.i2t_recall_at_1, ClipMini),
    **_pair("uniter-mini", "UNITER-style", "single-stream", "itm_logit", configs.UniterConfig(), SMOKE["uniter"],
            "embeddings", _uniter, objectives.itm_step, validation.win_rate, ItmStandIn),
    **_pair("lxmert-mini", "LXMERT-style", "two-stream", "itm_logit", configs.LxmertConfig(), SMOKE["lxmert"],
            "states", networks.LxmertMiniNet, objectives.itm_step, validation.win_rate, ItmStandIn),
    "blind+neg": Spec("blind+neg", f"blind+neg (text-only baseline: caption classifier, {NEG_NOTE})", "text-only",
                      "itm_logit", configs.BlindConfig(), SMOKE["blind"], "sentence", False, networks.BlindNet,
                      objectives.caption_itm_step, validation.caption_win_rate, CaptionClassifier),
}


# --------------------------------------------------------------------------- registry builders
def build(name: str, *, smoke: bool = False, seed: int = 0, device: str | None = None, **overrides) -> Scorer:
    """The stand-in ``name`` of :data:`SPECS`, trained on first use (then cached) and wrapped as a scorer, on
    ``device`` (default :func:`analysis.runtime.device`; module docstring)."""
    spec = SPECS[name]
    device = pick_device(device)
    net, folder, meta = trained(spec, smoke=smoke, seed=seed, device=device, **overrides)
    return spec.scorer(spec, net, folder, meta, seed=seed, smoke=smoke, device=device)


def clip_mini(**kw) -> ClipMini:
    """``get_scorer("clip-mini")``: the CLIP-style stand-in, InfoNCE on true pairs."""
    return build("clip-mini", **kw)


def clip_mini_neg(**kw) -> ClipMini:
    """``get_scorer("clip-mini+neg")``: clip-mini trained NegCLIP-style with perturbed captions as negatives."""
    return build("clip-mini+neg", **kw)


def uniter_mini(**kw) -> ItmStandIn:
    """``get_scorer("uniter-mini")``: the UNITER-style single-stream stand-in, ITM with random negatives."""
    return build("uniter-mini", **kw)


def uniter_mini_neg(**kw) -> ItmStandIn:
    """``get_scorer("uniter-mini+neg")``: uniter-mini trained with perturbation hard negatives."""
    return build("uniter-mini+neg", **kw)


def lxmert_mini(**kw) -> ItmStandIn:
    """``get_scorer("lxmert-mini")``: the LXMERT-style two-stream stand-in, ITM with random negatives."""
    return build("lxmert-mini", **kw)


def lxmert_mini_neg(**kw) -> ItmStandIn:
    """``get_scorer("lxmert-mini+neg")``: lxmert-mini trained with perturbation hard negatives."""
    return build("lxmert-mini+neg", **kw)


def blind_neg(**kw) -> CaptionClassifier:
    """``get_scorer("blind+neg")``: a caption-only classifier trained with perturbation hard negatives."""
    return build("blind+neg", **kw)
