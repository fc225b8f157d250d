"""Embedded stand-in scorers of three VLP families, trained here on the locked wheel towers.

None of these is CLIP, UNITER or LXMERT: they are small models of the same *shape*
(how image and text meet, what the score is), built on the frozen towers of
:mod:`analysis.towers` (EfficientNet-Lite0 grid, all-MiniLM-L6-v2 text) and trained
in minutes on ``tuxpaint-stamps`` + ``stamp-scenes`` (``train`` splits); the labels
say "stand-in" everywhere.

* ``clip-mini`` — dual encoder, LiT recipe: locked towers, learned linear
  projections of the pooled image feature (1280-d) and the MiniLM sentence
  embedding (384-d) to ``dim``, learned temperature, symmetric InfoNCE
  (:func:`analysis.scorers.training.info_nce`). Score: cosine.
* ``uniter-mini`` — single stream: one transformer whose layers start as MiniLM's
  first ``layers`` layers, over ``[CLS] text [SEP] ; 49 visual tokens``; a visual
  token is ``LN(LN(W g) + p_pos + e_type)`` (``e_type`` starts as MiniLM's type-1
  embedding). ``[CLS]`` -> pooler (MiniLM's) -> ITM logit.
* ``lxmert-mini`` — two streams: frozen MiniLM token states + ``text_layers`` new
  layers (language), ``vis_layers`` new layers over the 49 visual tokens (object
  relationships), at width ``dim``, then ``cross_layers`` LXMERT cross-modality layers (text attends to
  vision and vision to text, then self-attention and FFN per stream); language
  ``[CLS]`` -> pooler -> ITM logit.

The ITM models train with the class-balanced BCE
(:func:`analysis.scorers.training.balanced_bce`) on positives, random negatives and
scene-graph hard negatives (:class:`analysis.scorers.training.PairSampler`). Tower
features of the training images are computed once and cached; at score time the
scorers run the towers on the PIL images they are given, so they work on any image.
All modules are used in eval mode (no dropout) when scoring; padding is masked so a
pair's score does not depend on the batch it is in.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from analysis import cache, towers
from analysis.scorers import training
from analysis.scorers.base import DualEncoder, Scorer
from analysis.scorers.training import ItmSampling, Schedule

D_TEXT = towers.TEXT_DIM


# --------------------------------------------------------------------------- building blocks
class Attention(nn.Module):
    """Multi-head attention ``softmax(Q Kᵀ / √d_h + M) V`` with ``Q = x W_q``, ``K = c W_k``,
    ``V = c W_v`` per head and output ``W_o``; ``M = -inf`` on padded context positions."""

    def __init__(self, d: int, heads: int, dropout: float = 0.1):
        super().__init__()
        if d % heads:
            raise ValueError(f"width {d} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, ctx, ctx_mask=None):
        n, tq, d = x.shape
        split = lambda z: z.view(n, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        mask = None if ctx_mask is None else ctx_mask.bool()[:, None, None, :]
        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(ctx)), split(self.v(ctx)),
                                             attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.o(out.transpose(1, 2).reshape(n, tq, d))


class BertLayer(nn.Module):
    """A post-LayerNorm BERT block: ``h = LN(x + Attn(x, x))``, ``y = LN(h + W_2 GELU(W_1 h))``.

    ``first_only=True`` computes the output of the first position only (queries from
    ``x[:, :1]``, keys and values from all of ``x``): exactly the first row of the full
    output, at a fraction of the cost, for a last layer whose ``[CLS]`` alone is read.
    """

    def __init__(self, d: int = D_TEXT, heads: int = 12, ffn: int = 4 * D_TEXT, dropout: float = 0.1,
                 eps: float = 1e-12):
        super().__init__()
        self.attn = Attention(d, heads, dropout)
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask=None, *, first_only: bool = False):
        q = x[:, :1] if first_only else x
        h = self.ln1(q + self.drop(self.attn(q, x, mask)))
        return self.ln2(h + self.drop(self.fc2(F.gelu(self.fc1(h)))))

    @classmethod
    def from_hf(cls, layer, *, heads: int, dropout: float = 0.1) -> "BertLayer":
        """A copy of a ``transformers`` ``BertLayer`` (same weights, same function in eval mode)."""
        a, d = layer.attention, layer.attention.self.query.in_features
        new = cls(d, heads, layer.intermediate.dense.out_features, dropout, layer.output.LayerNorm.eps)
        pairs = [(new.attn.q, a.self.query), (new.attn.k, a.self.key), (new.attn.v, a.self.value),
                 (new.attn.o, a.output.dense), (new.ln1, a.output.LayerNorm), (new.fc1, layer.intermediate.dense),
                 (new.fc2, layer.output.dense), (new.ln2, layer.output.LayerNorm)]
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())
        return new


class CrossLayer(nn.Module):
    """An LXMERT cross-modality layer over a text stream ``t`` and a visual stream ``v``:
    ``t' = LN(t + Attn(t, v))``, ``v' = LN(v + Attn(v, t))`` (both read the inputs of the layer),
    then a self-attention + FFN block per stream. (LXMERT shares the cross-attention weights of
    the two directions; here each direction has its own.) With ``last=True`` only what the
    matching head reads is computed: the text stream's first (``[CLS]``) position; the visual
    stream is returned as ``None``."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float = 0.1):
        super().__init__()
        self.t_cross, self.v_cross = Attention(d, heads, dropout), Attention(d, heads, dropout)
        self.t_ln, self.v_ln = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.t_self, self.v_self = BertLayer(d, heads, ffn, dropout), BertLayer(d, heads, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, t, t_mask, v, *, last: bool = False):
        t2 = self.t_ln(t + self.drop(self.t_cross(t, v)))
        if last:
            return self.t_self(t2, t_mask, first_only=True), None
        v2 = self.v_ln(v + self.drop(self.v_cross(v, t, t_mask)))
        return self.t_self(t2, t_mask), self.v_self(v2)


def _init_new(module: nn.Module) -> None:
    """Initialise new weights: BERT's ``N(0, 0.02)`` linears, zero biases, unit LayerNorms, except
    attention projections, which get Xavier-uniform weights ``U(±√(6 / (d_in + d_out)))``: with
    ``N(0, 0.02)`` a new cross-attention passes almost nothing from the other modality at first and
    matching training sits on a plateau at ``log 2`` for ~100 steps."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, Attention):
            for lin in (m.q, m.k, m.v, m.o):
                nn.init.xavier_uniform_(lin.weight)


# --------------------------------------------------------------------------- configurations
@dataclass(frozen=True)
class ClipConfig:
    """clip-mini: projection width, initial temperature, training schedule."""

    dim: int = 256
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    schedule: Schedule = Schedule(steps=1500, batch_size=256, lr=1e-3, weight_decay=0.1, warmup=0.05)
    hard_per_kind: int = 0  # contrastive training uses no hard negatives


@dataclass(frozen=True)
class UniterConfig(ItmSampling):
    """uniter-mini: number of MiniLM layers used (and fine-tuned), training schedule."""

    layers: int = 2
    dropout: float = 0.0
    schedule: Schedule = Schedule(steps=200, batch_size=32, lr=1e-3, lr_pretrained=1e-4, weight_decay=0.01)


@dataclass(frozen=True)
class LxmertConfig(ItmSampling):
    """lxmert-mini: language, visual and cross-modality layer counts, widths, training schedule."""

    dim: int = 256
    text_layers: int = 1
    vis_layers: int = 1
    cross_layers: int = 2
    heads: int = 4
    ffn: int = 512
    dropout: float = 0.0
    schedule: Schedule = Schedule(steps=260, batch_size=32, lr=3e-4, weight_decay=0.01)


# --------------------------------------------------------------------------- the networks (trained parts only)
class ClipMiniNet(nn.Module):
    """``u = W_i f_img``, ``v = W_t e_txt`` (no bias), score ``cos(u, v)``, temperature ``exp(s)``."""

    def __init__(self, cfg: ClipConfig):
        super().__init__()
        self.cfg = cfg
        self.image_proj = nn.Linear(towers.IMAGE_DIM, cfg.dim, bias=False)
        self.text_proj = nn.Linear(D_TEXT, cfg.dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))

    def image(self, pooled):
        return self.image_proj(pooled)

    def text(self, sentence):
        return self.text_proj(sentence)

    def scale(self):
        """The log-temperature, clamped so that ``exp(s) <= max_logit_scale`` (as CLIP does)."""
        return self.logit_scale.clamp(max=math.log(self.cfg.max_logit_scale))


class VisualTokens(nn.Module):
    """Grid tokens ``g`` (49 x 1280) -> ``LN(LN(W g) + p + e)``: projection, learned 7x7 position
    embeddings ``p`` and a modality embedding ``e``."""

    def __init__(self, d: int, type_init=None):
        super().__init__()
        self.proj = nn.Linear(towers.IMAGE_DIM, d)
        self.ln_in, self.ln_out = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        _init_new(self)
        self.pos = nn.Parameter(torch.randn(towers.GRID_TOKENS, d) * 0.02)
        self.modality = nn.Parameter(type_init.clone() if type_init is not None else torch.zeros(d))

    def forward(self, grid):
        return self.ln_out(self.ln_in(self.proj(grid)) + self.pos + self.modality)


class ItmHead(nn.Module):
    """``z = w · tanh(W h_[CLS] + b) + c``: the BERT pooler then one logit."""

    def __init__(self, d: int, pooler=None):
        super().__init__()
        self.pooler, self.out = nn.Linear(d, d), nn.Linear(d, 1)
        _init_new(self)
        if pooler is not None:
            self.pooler.load_state_dict(pooler.state_dict())

    def forward(self, h):
        return self.out(torch.tanh(self.pooler(h[:, 0]))).squeeze(-1)


class UniterMiniNet(nn.Module):
    """Single stream over ``[text embeddings ; visual tokens]``; layers start as MiniLM's first layers."""

    text_source = "embeddings"
    pretrained_prefixes = ("layers.", "head.pooler.")

    def __init__(self, cfg: UniterConfig, text: towers.TextTower):
        super().__init__()
        bert = text.model
        heads = bert.config.num_attention_heads
        if not 1 <= cfg.layers <= bert.config.num_hidden_layers:
            raise ValueError(f"uniter-mini layers must be 1..{bert.config.num_hidden_layers}, got {cfg.layers}")
        self.visual = VisualTokens(D_TEXT, bert.embeddings.token_type_embeddings.weight[1].detach())
        self.layers = nn.ModuleList(BertLayer.from_hf(bert.encoder.layer[i], heads=heads, dropout=cfg.dropout)
                                    for i in range(cfg.layers))
        self.head = ItmHead(D_TEXT, bert.pooler.dense)

    def encode_image(self, grid):
        return self.visual(grid)

    def encode_text(self, txt, mask):
        return txt

    def fuse(self, t, t_mask, v):
        x = torch.cat([t, v], 1)
        m = torch.cat([t_mask.bool(), torch.ones(v.shape[:2], dtype=torch.bool)], 1)
        for i, layer in enumerate(self.layers):
            x = layer(x, m, first_only=i == len(self.layers) - 1)
        return self.head(x)


class LxmertMiniNet(nn.Module):
    """Two streams joined by cross layers, width ``dim``: language = frozen MiniLM states -> linear + LN
    -> ``text_layers`` new layers; vision = visual tokens -> ``vis_layers`` new layers."""

    text_source = "states"
    pretrained_prefixes = ()

    def __init__(self, cfg: LxmertConfig, text: towers.TextTower | None = None):
        super().__init__()
        d, h, f, p = cfg.dim, cfg.heads, cfg.ffn, cfg.dropout
        self.text_in = nn.Sequential(nn.Linear(D_TEXT, d), nn.LayerNorm(d, eps=1e-12))
        self.visual = VisualTokens(d)
        self.text_layers = nn.ModuleList(BertLayer(d, h, f, p) for _ in range(cfg.text_layers))
        self.vis_layers = nn.ModuleList(BertLayer(d, h, f, p) for _ in range(cfg.vis_layers))
        self.cross = nn.ModuleList(CrossLayer(d, h, f, p) for _ in range(cfg.cross_layers))
        self.head = ItmHead(d)
        for m in (self.text_in, self.text_layers, self.vis_layers, self.cross):
            _init_new(m)

    def encode_image(self, grid):
        v = self.visual(grid)
        for layer in self.vis_layers:
            v = layer(v)
        return v

    def encode_text(self, txt, mask):
        txt = self.text_in(txt)
        for layer in self.text_layers:
            txt = layer(txt, mask)
        return txt

    def fuse(self, t, t_mask, v):
        for i, layer in enumerate(self.cross):
            t, v = layer(t, t_mask, v, last=i == len(self.cross) - 1)
        return self.head(t)


# --------------------------------------------------------------------------- text inputs of the ITM nets
def text_inputs(source: str, tokens: towers.Tokens) -> torch.Tensor:
    """The frozen text input of an ITM net: MiniLM's embedding-layer output (``"embeddings"``)
    or its last-layer token states (``"states"``), ``(n, T, 384)``."""
    tower = towers.text_tower()
    if source == "embeddings":
        return tower.embeddings(tokens)
    if source == "states":
        return tower.states(tokens)
    raise ValueError(f"unknown text source {source!r}; valid: embeddings, states")


def pad(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length ``(L_i, d)`` rows -> zero-padded ``(n, max L, d)`` and a ``(n, max L)`` mask."""
    lengths = torch.tensor([len(r) for r in rows])
    x = nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
    return x, (torch.arange(x.shape[1])[None, :] < lengths[:, None]).long()


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


# --------------------------------------------------------------------------- training (one place for all three)
@dataclass
class TrainData:
    """The training set with its features in memory: pooled and grid image features and the text
    features a net needs (sentence embeddings, or per-caption token rows)."""

    ts: training.TrainingSet
    pooled: torch.Tensor
    grid: torch.Tensor
    sentence: torch.Tensor | None = None
    tokens: list[torch.Tensor] = field(default_factory=list)


def train_data(ts: training.TrainingSet, text: str, *, images: bool = True) -> TrainData:
    """Cached tower features of the training images (unless ``images=False``) plus the text
    features ``text`` names (``"sentence"``, ``"embeddings"`` or ``"states"``)."""
    if images:
        feats = towers.image_features(ts.paths)
        data = TrainData(ts, torch.from_numpy(feats.pooled), torch.from_numpy(feats.grid))
    else:
        data = TrainData(ts, torch.zeros(0), torch.zeros(0))
    if text == "sentence":
        data.sentence = torch.from_numpy(towers.sentence_features(ts.captions))
    else:
        data.tokens = per_caption(text, ts.captions)
    return data


def itm_loss(net, data: TrainData, sampler: training.PairSampler, batch_size: int) -> torch.Tensor:
    """One ITM step: encode the batch's images once, pair them with their rows, balanced BCE."""
    imgs, k, c, y = sampler.itm_batch(batch_size)
    v = net.encode_image(data.grid[torch.from_numpy(imgs)].float())
    t, mask = pad([data.tokens[j] for j in c])
    z = net.fuse(net.encode_text(t, mask), mask, v[torch.from_numpy(k)])
    return training.balanced_bce(z, torch.from_numpy(y))


def contrastive_loss(net: ClipMiniNet, data: TrainData, sampler: training.PairSampler, batch_size: int):
    """One clip-mini step: symmetric InfoNCE over ``b`` images and one true caption each."""
    imgs, caps = sampler.contrastive_batch(batch_size)
    u = F.normalize(net.image(data.pooled[torch.from_numpy(imgs)]), dim=-1)
    v = F.normalize(net.text(data.sentence[torch.from_numpy(caps)]), dim=-1)
    same = torch.from_numpy(caps[:, None] == caps[None, :])
    return training.info_nce(u, v, net.scale(), same)


@dataclass(frozen=True)
class Spec:
    """Everything that differs between the stand-ins: provenance, default config, smoke schedule,
    which features training needs, the net factory ``make_net(cfg)`` and the step loss
    ``step_loss(net, data, sampler, batch_size)``."""

    name: str
    label: str
    family: str
    output: str
    config: object
    smoke: Schedule
    text: str  # which text features training needs: sentence / embeddings / states
    images: bool
    make_net: Callable[[object], nn.Module]
    step_loss: Callable[..., torch.Tensor]


SPECS = {
    "clip-mini": Spec("clip-mini", "clip-mini (CLIP-style stand-in)", "dual", "cosine", ClipConfig(),
                      Schedule(steps=60, batch_size=16, lr=3e-3, weight_decay=0.0, warmup=0.1),
                      "sentence", True, ClipMiniNet, contrastive_loss),
    "uniter-mini": Spec("uniter-mini", "uniter-mini (UNITER-style stand-in)", "single-stream", "itm_logit",
                        UniterConfig(), Schedule(steps=30, batch_size=8, lr=1e-3, lr_pretrained=1e-4, warmup=0.1),
                        "embeddings", True, lambda cfg: UniterMiniNet(cfg, towers.text_tower()), itm_loss),
    "lxmert-mini": Spec("lxmert-mini", "lxmert-mini (LXMERT-style stand-in)", "two-stream", "itm_logit",
                        LxmertConfig(), Schedule(steps=60, batch_size=8, lr=3e-4, warmup=0.1),
                        "states", True, LxmertMiniNet, itm_loss),
}


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


def train_net(spec: Spec, cfg, ts: training.TrainingSet, seed: int) -> tuple[nn.Module, dict]:
    """Seed, build ``spec``'s net and train it on ``ts`` (no cache); returns ``(net, log)``."""
    t0 = time.perf_counter()
    training.start(seed)
    net = spec.make_net(cfg)
    data = train_data(ts, spec.text, images=spec.images)
    sampler = training.PairSampler(ts, seed, p_canonical=getattr(cfg, "p_canonical", 0.5),
                                   p_hard=getattr(cfg, "p_hard", 0.5))
    prep = time.perf_counter() - t0  # tower features (cached after the first build) and text inputs
    b = cfg.schedule.batch_size
    log = training.fit(net, lambda t: spec.step_loss(net, data, sampler, b), cfg.schedule, desc=f"train {spec.name}")
    return net, {**log, "prep_seconds": round(prep, 2)}


def trained(spec: Spec, *, smoke: bool, seed: int, **overrides) -> tuple[nn.Module, Path, dict]:
    """Build ``spec``'s net and load (or train and cache) its weights; returns ``(net, folder, meta)``."""
    cfg = config_for(spec, smoke, **overrides)
    ts = training.training_set(smoke=smoke, seed=seed, hard_per_kind=cfg.hard_per_kind)
    recipe = training.base_recipe(cfg, ts, seed=seed, smoke=smoke)
    folder = training.checkpoint(spec.name, recipe, lambda: train_net(spec, cfg, ts, seed))
    training.start(seed)  # the net's random init is overwritten by the checkpoint; seeding keeps it tidy
    net = spec.make_net(cfg)
    training.load_checkpoint(net, folder)
    return net, folder, training.read_meta(folder)


# --------------------------------------------------------------------------- scorers
class StandIn:
    """Provenance shared by the embedded stand-ins (mixed into a :class:`Scorer`)."""

    source = "embedded"
    max_text_tokens = towers.MAX_TEXT_TOKENS

    def _provenance(self, spec: Spec, folder: Path, meta: dict, *, seed: int, smoke: bool) -> None:
        self.name, self.label, self.family, self.output = spec.name, spec.label, spec.family, spec.output
        self.checkpoint_dir = Path(folder)
        self.checkpoint_hash = cache.file_sha256(self.checkpoint_dir / training.WEIGHTS)
        self.pretrained = f"embedded:{spec.name}/{self.checkpoint_dir.name}"
        self.seed, self.smoke, self.meta = int(seed), bool(smoke), meta
        self.train_seconds = float(meta["log"]["seconds"])
        self.towers = {"image": towers.IMAGE_TOWER, "text": towers.TEXT_TOWER, **towers.tower_hashes()}

    def _tokens(self, captions: Sequence[str]) -> towers.Tokens:
        tok = towers.text_tower().tokenize(captions, self.max_text_tokens)
        self.count_truncation(tok.lengths)
        return tok


class ClipMini(StandIn, DualEncoder):
    """clip-mini: cosine of the projected pooled image feature and MiniLM sentence embedding."""

    def __init__(self, net: ClipMiniNet, folder: Path, meta: dict, *, seed: int, smoke: bool):
        Scorer.__init__(self)
        self.net = net.eval()
        self._provenance(SPECS["clip-mini"], folder, meta, seed=seed, smoke=smoke)

    def _encode_image_batch(self, images):
        pooled, _ = towers.image_tower().encode(images)
        return self.net.image(pooled)

    def _encode_text_batch(self, captions):
        tok = self._tokens(captions)
        tower = towers.text_tower()
        return self.net.text(tower.mean_pool(tower.states(tok), tok.mask))

    def logit_scale(self) -> float:
        """The learned temperature ``exp(s)``."""
        return float(self.net.scale().exp())


class ItmStandIn(StandIn, Scorer):
    """uniter-mini / lxmert-mini: the ITM logit of a fusion net over tower features."""

    pair_chunk = 256

    def __init__(self, spec: Spec, net: nn.Module, folder: Path, meta: dict, *, seed: int, smoke: bool):
        Scorer.__init__(self)
        self.net = net.eval()
        self._provenance(spec, folder, meta, seed=seed, smoke=smoke)

    def _text(self, captions):
        tok = self._tokens(captions)
        return self.net.encode_text(text_inputs(self.net.text_source, tok), tok.mask), tok.mask

    def _score_batch(self, images, captions):
        _, grid = towers.image_tower().encode(images)
        t, mask = self._text(captions)
        return self.net.fuse(t, mask, self.net.encode_image(grid)).numpy()

    def score_matrix(self, images, captions) -> np.ndarray:
        """``S[i, j] = score(images[i], captions[j])``, with each image and caption encoded once and
        only the fusion run per pair (in chunks of :attr:`pair_chunk`)."""
        from tqdm.auto import tqdm

        n, m = len(images), len(captions)
        if n == 0 or m == 0:
            return np.zeros((n, m))
        with torch.no_grad():
            vis = torch.cat([self.net.encode_image(towers.image_tower().encode(list(images[i:i + self.batch_size]))[1])
                             for i in range(0, n, self.batch_size)])
            rows = []
            for j in range(0, m, self.batch_size):
                t, mask = self._text(list(captions[j:j + self.batch_size]))
                rows += [t[r, :int(mask[r].sum())] for r in range(len(t))]
            out = np.zeros(n * m)
            for s in tqdm(range(0, n * m, self.pair_chunk), desc=f"{self.name} pairs", leave=False,
                          disable=n * m < 8 * self.pair_chunk):
                idx = np.arange(s, min(s + self.pair_chunk, n * m))
                t, mask = pad([rows[j] for j in idx % m])
                out[idx] = self.net.fuse(t, mask, vis[torch.from_numpy(idx // m)]).numpy()
        return out.reshape(n, m)


# --------------------------------------------------------------------------- registry builders
def clip_mini(*, smoke: bool = False, seed: int = 0, **overrides) -> ClipMini:
    """``get_scorer("clip-mini")``: the CLIP-style stand-in (trained on first use, then cached)."""
    net, folder, meta = trained(SPECS["clip-mini"], smoke=smoke, seed=seed, **overrides)
    return ClipMini(net, folder, meta, seed=seed, smoke=smoke)


def uniter_mini(*, smoke: bool = False, seed: int = 0, **overrides) -> ItmStandIn:
    """``get_scorer("uniter-mini")``: the UNITER-style single-stream stand-in."""
    net, folder, meta = trained(SPECS["uniter-mini"], smoke=smoke, seed=seed, **overrides)
    return ItmStandIn(SPECS["uniter-mini"], net, folder, meta, seed=seed, smoke=smoke)


def lxmert_mini(*, smoke: bool = False, seed: int = 0, **overrides) -> ItmStandIn:
    """``get_scorer("lxmert-mini")``: the LXMERT-style two-stream stand-in."""
    net, folder, meta = trained(SPECS["lxmert-mini"], smoke=smoke, seed=seed, **overrides)
    return ItmStandIn(SPECS["lxmert-mini"], net, folder, meta, seed=seed, smoke=smoke)
