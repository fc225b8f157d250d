"""The trained parts of the embedded stand-ins: attention layers and the four networks.

Only what is trained lives here; the frozen towers (EfficientNet-Lite0, MiniLM) are in
:mod:`analysis.towers` and are never part of a checkpoint. Each net reads tower
features (:mod:`analysis.scorers.inputs`) and is described by a small config
(:mod:`analysis.scorers.configs`):

* :class:`ClipMiniNet` (clip-mini, clip-mini+neg): LiT-style linear projections of the
  pooled image feature and the MiniLM sentence embedding, learned temperature.
* :class:`UniterMiniNet` (uniter-mini, +neg): one transformer, initialised from MiniLM's
  first layers, over ``[CLS] text [SEP] ; 49 visual tokens``; ``[CLS]`` -> ITM logit.
* :class:`LxmertMiniNet` (lxmert-mini, +neg): language and visual streams joined by
  LXMERT cross-modality layers; language ``[CLS]`` -> ITM logit.
* :class:`BlindNet` (blind+neg): an MLP over the caption's sentence embedding only.

The ITM nets share one interface: ``encode_image(grid)``, ``encode_text(inputs, mask)``,
``fuse(t, t_mask, v) -> logit``, plus ``text_source`` (which frozen text input they read)
and ``pretrained_prefixes`` (parameters that start from MiniLM and get the lower learning
rate). Padding is masked, so a pair's score does not depend on the batch it is in.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from analysis import towers

if TYPE_CHECKING:
    from analysis.scorers import configs

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


def init_new(module: nn.Module) -> None:
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


# --------------------------------------------------------------------------- the networks (trained parts only)
class ClipMiniNet(nn.Module):
    """``u = W_i f_img``, ``v = W_t e_txt`` (no bias), score ``cos(u, v)``, temperature ``exp(s)``."""

    def __init__(self, cfg: "configs.ClipConfig"):
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
        init_new(self)
        self.pos = nn.Parameter(torch.randn(towers.GRID_TOKENS, d) * 0.02)
        self.modality = nn.Parameter(type_init.clone() if type_init is not None else torch.zeros(d))

    def forward(self, grid):
        return self.ln_out(self.ln_in(self.proj(grid)) + self.pos + self.modality)


class ItmHead(nn.Module):
    """``z = w · tanh(W h_[CLS] + b) + c``: the BERT pooler then one logit."""

    def __init__(self, d: int, pooler=None):
        super().__init__()
        self.pooler, self.out = nn.Linear(d, d), nn.Linear(d, 1)
        init_new(self)
        if pooler is not None:
            self.pooler.load_state_dict(pooler.state_dict())

    def forward(self, h):
        return self.out(torch.tanh(self.pooler(h[:, 0]))).squeeze(-1)


class UniterMiniNet(nn.Module):
    """Single stream over ``[text embeddings ; visual tokens]``; layers start as MiniLM's first layers."""

    text_source = "embeddings"
    pretrained_prefixes = ("layers.", "head.pooler.")

    def __init__(self, cfg: "configs.UniterConfig", text: towers.TextTower):
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
        m = torch.cat([t_mask.bool(), torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)], 1)
        for i, layer in enumerate(self.layers):
            x = layer(x, m, first_only=i == len(self.layers) - 1)
        return self.head(x)


class LxmertMiniNet(nn.Module):
    """Two streams joined by cross layers, width ``dim``: language = frozen MiniLM states -> linear + LN
    -> ``text_layers`` new layers; vision = visual tokens -> ``vis_layers`` new layers."""

    text_source = "states"
    pretrained_prefixes = ()

    def __init__(self, cfg: "configs.LxmertConfig", text: towers.TextTower | None = None):
        super().__init__()
        d, h, f, p = cfg.dim, cfg.heads, cfg.ffn, cfg.dropout
        self.text_in = nn.Sequential(nn.Linear(D_TEXT, d), nn.LayerNorm(d, eps=1e-12))
        self.visual = VisualTokens(d)
        self.text_layers = nn.ModuleList(BertLayer(d, h, f, p) for _ in range(cfg.text_layers))
        self.vis_layers = nn.ModuleList(BertLayer(d, h, f, p) for _ in range(cfg.vis_layers))
        self.cross = nn.ModuleList(CrossLayer(d, h, f, p) for _ in range(cfg.cross_layers))
        self.head = ItmHead(d)
        for m in (self.text_in, self.text_layers, self.vis_layers, self.cross):
            init_new(m)

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


class BlindNet(nn.Module):
    """``z = w₂ · GELU(W₁ e + b₁) + b₂`` on the caption's sentence embedding ``e`` (384-d); no image."""

    def __init__(self, cfg: "configs.BlindConfig"):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(towers.TEXT_DIM, cfg.hidden), nn.Linear(cfg.hidden, 1)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, e):
        return self.fc2(self.drop(F.gelu(self.fc1(e)))).squeeze(-1)
