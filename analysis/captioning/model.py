"""The captioner of the probe: a word vocabulary and a small transformer decoder over grid features.

**Words.** A caption is compared as lower-case ASCII words, the study's convention for CIDEr-D
(``analysis.bench._bench_corpus``): :func:`tokenize` is ``re.findall(r"[a-z]+", caption.lower())``, so
punctuation, digits and apostrophes split or vanish (``"A knight's helmet."`` -> ``a knight s helmet``).
:func:`normalise` joins those words with single spaces: the form :class:`analysis.cider.CiderD` expects,
and the form :meth:`Vocab.decode` writes, so generated captions and references are compared alike.

**Vocabulary.** :class:`Vocab` holds the specials ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3,
then every training word seen at least ``min_count`` times, by descending count (ties alphabetical).

**Captioner** (:class:`Captioner`): a pre-norm transformer decoder (not an attention-LSTM).

* Memory: the 49 grid tokens of the locked EfficientNet-Lite0 (``analysis.towers``, 1280-d each) and
  their mean (the pooled feature) as a 50th token in front; each is LayerNorm-ed, projected to ``d``
  and given a learned memory position.
* Decoder: token embedding + learned position (``max_len`` positions), ``n_layers`` blocks of causal
  self-attention, cross-attention to the memory and a GELU feed-forward (each ``x + Dropout(f(LN(x)))``),
  a final LayerNorm and the output layer (tied to the token embedding when ``tie_embeddings``). The
  logits of ``<pad>`` and ``<bos>`` are fixed at −inf: the model never writes them (``<unk>`` it may).
* Sequences: the input is ``<bos> w_1 .. w_n``, the target ``w_1 .. w_n <eos>``; at most ``max_len``
  generated tokens, ``<eos>`` included.

Decoding (:meth:`Captioner.sample`, :meth:`~Captioner.greedy`, :meth:`~Captioner.beam`) runs the decoder one
token at a time with cached self-attention keys/values and cross-attention keys/values computed once per
image, so a step costs one position. :meth:`Captioner.forward` (teacher forcing) and
:meth:`Captioner.step_logprobs` run the whole prefix at once; they agree with the incremental path to
float rounding (``tests/test_captioner.py`` checks it).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
_WORD = re.compile(r"[a-z]+")


# --------------------------------------------------------------------------- words
def tokenize(caption: str) -> list[str]:
    """Lower-case ASCII words of a caption: ``re.findall(r"[a-z]+", caption.lower())``.

    >>> tokenize("Tux—the Linux mascot!")
    ['tux', 'the', 'linux', 'mascot']
    >>> tokenize("A knight's helmet, 2 of them.")
    ['a', 'knight', 's', 'helmet', 'of', 'them']
    """
    return _WORD.findall(str(caption).lower())


def normalise(caption: str) -> str:
    """The comparison form of a caption (what CIDEr-D receives): its :func:`tokenize` words joined by spaces.

    >>> normalise("Two small cakes, left of a big dog.")
    'two small cakes left of a big dog'
    """
    return " ".join(tokenize(caption))


class Vocab:
    """Word <-> id: the specials ``<pad>``=0 ``<bos>``=1 ``<eos>``=2 ``<unk>``=3, then the words.

    >>> v = Vocab.build(["A cat.", "a dog", "the cat"], min_count=2)
    >>> v.words
    ['<pad>', '<bos>', '<eos>', '<unk>', 'a', 'cat']
    >>> len(v), v.encode("A cat sat!")
    (6, [4, 5, 3])
    >>> v.decode([1, 4, 5, 2, 4, 4])
    'a cat'
    >>> v.tensor(["a cat", "cat"], max_len=4).tolist()
    [[1, 4, 5, 2], [1, 5, 2, 0]]
    """

    def __init__(self, words: Sequence[str], min_count: int = 1):
        words = list(words)
        if words[:len(SPECIALS)] == list(SPECIALS):
            words = words[len(SPECIALS):]
        bad = [w for w in words if w in SPECIALS or not _WORD.fullmatch(w)]
        if bad:
            raise ValueError(f"Vocab: {bad[:3]} are not lower-case words; build it with Vocab.build(captions)")
        if len(set(words)) != len(words):
            raise ValueError("Vocab: the word list repeats a word; build it with Vocab.build(captions)")
        self.words = list(SPECIALS) + words
        self.index = {w: i for i, w in enumerate(self.words)}
        self.min_count = int(min_count)

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> "Vocab":
        """Every :func:`tokenize` word of ``captions`` seen at least ``min_count`` times, by descending
        count, ties in alphabetical order."""
        if min_count < 1:
            raise ValueError(f"Vocab.build: min_count must be >= 1, got {min_count}")
        counts = Counter(w for c in captions for w in tokenize(c))
        return cls(sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)),
                   min_count)

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.words == other.words

    def encode(self, caption: str) -> list[int]:
        """The ids of the caption's words (``<unk>`` = 3 for a word not in the vocabulary); no ``<bos>``/``<eos>``."""
        return [self.index.get(w, UNK) for w in tokenize(caption)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` joined by spaces, stopping at the first ``<eos>``; ``<pad>`` and ``<bos>`` are
        skipped, ``<unk>`` is written as ``<unk>``."""
        out = []
        for i in (int(x) for x in ids):
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.words[i])
        return " ".join(out)

    def tensor(self, captions: Sequence[str], max_len: int) -> torch.Tensor:
        """``(n, L)`` int64 rows ``<bos> w_1 .. w_m <eos> <pad>..``, ``L = max_len`` or less (the longest
        row). A caption of more than ``max_len - 2`` words keeps its first ``max_len - 2`` and its ``<eos>``."""
        if max_len < 2:
            raise ValueError(f"Vocab.tensor: max_len must be >= 2 (<bos> and <eos>), got {max_len}")
        rows = [[BOS] + self.encode(c)[:max_len - 2] + [EOS] for c in captions]
        out = torch.full((len(rows), max((len(r) for r in rows), default=2)), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def to_dict(self) -> dict:
        return {"words": self.words[len(SPECIALS):], "min_count": self.min_count, "specials": list(SPECIALS)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        if list(d.get("specials", SPECIALS)) != list(SPECIALS):
            raise ValueError(f"Vocab.from_dict: specials {d.get('specials')} differ from {list(SPECIALS)}")
        return cls(d["words"], d.get("min_count", 1))


# --------------------------------------------------------------------------- the network
@dataclass(frozen=True)
class CaptionerConfig:
    """Shape of a :class:`Captioner`. ``max_len`` = the most generated tokens, ``<eos>`` included (also the
    number of learned input positions: ``<bos>`` + ``max_len - 1`` words)."""

    feat_dim: int = 1280
    grid_tokens: int = 49
    d_model: int = 256
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    max_len: int = 20
    tie_embeddings: bool = True


class _Block(nn.Module):
    """Pre-norm decoder block: causal self-attention, cross-attention to the memory, GELU feed-forward."""

    def __init__(self, d: int, heads: int, d_ff: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"Captioner: d_model {d} is not divisible by n_heads {heads}")
        self.heads = heads
        self.ln1, self.qkv, self.out1 = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2, self.q2, self.kv2, self.out2 = nn.LayerNorm(d), nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.ln3 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        b, h, t, dh = x.shape
        return x.transpose(1, 2).reshape(b, t, h * dh)

    def memory_kv(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv2(mem).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, mem_kv: tuple[torch.Tensor, torch.Tensor], cache: dict | None = None):
        """``x`` (B, t, d): the whole prefix (``cache`` empty or None; causal mask) or one new position
        appended to the keys/values kept in ``cache``."""
        q, k, v = (self._split(a) for a in self.qkv(self.ln1(x)).chunk(3, dim=-1))
        if cache is not None:
            if "k" in cache:
                if x.shape[1] != 1:
                    raise ValueError("Captioner: incremental decoding takes one position at a time")
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        a = F.scaled_dot_product_attention(q, k, v, is_causal=x.shape[1] > 1)
        x = x + self.drop(self.out1(self._merge(a)))
        a = F.scaled_dot_product_attention(self._split(self.q2(self.ln2(x))), *mem_kv)
        x = x + self.drop(self.out2(self._merge(a)))
        return x + self.drop(self.ff(self.ln3(x)))


class Captioner(nn.Module):
    """Transformer-decoder captioner over grid features (see the module docstring). ``feats`` arguments
    are grid tokens ``(B, 49, 1280)`` (``CaptionData.grid``); they are moved to the model's device."""

    def __init__(self, vocab: Vocab, config: CaptionerConfig = CaptionerConfig()):
        super().__init__()
        self.vocab, self.config = vocab, config
        c, V = config, len(vocab)
        self.feat_ln = nn.LayerNorm(c.feat_dim)
        self.feat_proj = nn.Linear(c.feat_dim, c.d_model)
        self.mem_pos = nn.Parameter(torch.zeros(1, c.grid_tokens + 1, c.d_model))
        self.tok_emb = nn.Embedding(V, c.d_model)
        self.pos_emb = nn.Parameter(torch.zeros(1, c.max_len, c.d_model))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(_Block(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = None if c.tie_embeddings else nn.Linear(c.d_model, V, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(V))
        never = torch.zeros(V)
        never[[PAD, BOS]] = float("-inf")  # the model never writes <pad> or <bos>
        self.register_buffer("never", never, persistent=False)
        self.apply(self._init)
        nn.init.normal_(self.mem_pos, std=0.02)
        nn.init.normal_(self.pos_emb, std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def device(self) -> torch.device:
        return self.out_bias.device

    # -- pieces -------------------------------------------------------------------------------------
    def _feats(self, feats) -> torch.Tensor:
        feats = torch.as_tensor(feats).to(device=self.device, dtype=self.out_bias.dtype)
        c = self.config
        if feats.dim() != 3 or feats.shape[1:] != (c.grid_tokens, c.feat_dim):
            raise ValueError(f"Captioner: feats must be grid tokens (B, {c.grid_tokens}, {c.feat_dim}), got "
                             f"{tuple(feats.shape)}; pass CaptionData.grid (not .pooled)")
        return feats

    def encode(self, feats) -> torch.Tensor:
        """Memory ``(B, 50, d)``: [pooled, 49 grid tokens] -> LayerNorm -> linear -> + memory position."""
        g = self._feats(feats)
        x = torch.cat([g.mean(1, keepdim=True), g], 1)
        return self.drop(self.feat_proj(self.feat_ln(x)) + self.mem_pos)

    def memory(self, feats) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cross-attention keys and values of every block for images ``feats``, each
        ``(B, n_heads, 50, d_model / n_heads)``: computed once per image, shared by all its captions
        (:meth:`decode`)."""
        mem = self.encode(feats)
        return [b.memory_kv(mem) for b in self.blocks]

    def _memory_kv(self, feats, repeat: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(k.repeat_interleave(repeat, 0), v.repeat_interleave(repeat, 0)) for k, v in self.memory(feats)]

    def _check_len(self, max_len: int | None) -> int:
        max_len = self.config.max_len if max_len is None else int(max_len)
        if not 1 <= max_len <= self.config.max_len:
            raise ValueError(f"Captioner: max_len {max_len} is outside 1..{self.config.max_len} (the model's "
                             "learned positions); train a model with a larger CaptionerConfig.max_len")
        return max_len

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.ln_f(h)
        w = self.tok_emb.weight if self.head is None else self.head.weight
        return F.linear(h, w, self.out_bias) + self.never

    def _decode(self, tokens: torch.Tensor, mem_kv, caches: list[dict] | None = None, start: int = 0):
        T = tokens.shape[1]
        if start + T > self.config.max_len:
            raise ValueError(f"Captioner: {start + T} input positions, the model has {self.config.max_len}")
        x = self.drop(self.tok_emb(tokens) + self.pos_emb[:, start:start + T])
        for i, b in enumerate(self.blocks):
            x = b(x, mem_kv[i], None if caches is None else caches[i])
        return self._logits(x)

    # -- teacher forcing ----------------------------------------------------------------------------
    def forward(self, feats, tokens: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: logits ``(N, T, V)`` of the next token at every position of ``tokens``
        ``(N, T)`` (``<bos> w_1 ..``; padding after the end does not change earlier positions).
        Row ``n`` attends to image ``image_index[n]`` of ``feats`` (default: image ``n``)."""
        return self.decode(self.memory(feats), tokens, image_index)

    def decode(self, memory: list[tuple[torch.Tensor, torch.Tensor]], tokens: torch.Tensor,
               image_index: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` from precomputed :meth:`memory` (so one image's memory serves several batches)."""
        tokens = torch.as_tensor(tokens, device=self.device)
        if image_index is not None:
            idx = torch.as_tensor(image_index, device=self.device)
            memory = [(k[idx], v[idx]) for k, v in memory]
        if memory[0][0].shape[0] != tokens.shape[0]:
            raise ValueError(f"Captioner.forward: {memory[0][0].shape[0]} images for {tokens.shape[0]} token "
                             "rows; pass image_index to say which image each row describes")
        return self._decode(tokens, memory)

    def step_logprobs(self, feats, prefix_ids: torch.Tensor) -> torch.Tensor:
        """``(B, V)`` log-probabilities of the next token after ``<bos>`` + ``prefix_ids``.

        ``feats`` (B, 49, 1280) (one image repeated B times for reward-guided decoding of one image);
        ``prefix_ids`` (B, t), ``t >= 0``, the tokens generated so far **without** ``<bos>``."""
        prefix_ids = torch.as_tensor(prefix_ids, dtype=torch.long, device=self.device)
        if prefix_ids.dim() != 2:
            raise ValueError(f"Captioner.step_logprobs: prefix_ids must be (B, t), got {tuple(prefix_ids.shape)}")
        bos = torch.full((prefix_ids.shape[0], 1), BOS, dtype=torch.long, device=self.device)
        return F.log_softmax(self.forward(feats, torch.cat([bos, prefix_ids], 1))[:, -1].float(), -1)

    def sequence_logprobs(self, feats, ids: torch.Tensor, mask: torch.Tensor, k: int = 1) -> torch.Tensor:
        """``log p_θ(ids[:, t] | image, ids[:, :t])`` of given captions by **one** teacher-forced pass (with grad),
        ``(N, T)``, 0 where ``mask`` is False; rows ``i·k .. i·k + k − 1`` describe image ``i`` of ``feats`` (the
        layout of :meth:`sample`). The input is ``<bos>`` followed by ``ids[:, :-1]``; the causal mask makes
        position ``t`` see ``ids[:, :t]`` only, so this equals :meth:`sample`'s ``logprobs`` for the same ``ids``
        (same mode) up to float rounding, while the backward pass runs over one parallel forward instead of ``T``
        sequential decoding steps (:mod:`analysis.captioning.scst` samples without grad, then calls this)."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.device)
        if ids.shape != mask.shape or ids.dim() != 2:
            raise ValueError(f"Captioner.sequence_logprobs: ids {tuple(ids.shape)} and mask {tuple(mask.shape)} "
                             "must be the same (N, T)")
        n = ids.shape[0]
        bos = torch.full((n, 1), BOS, dtype=torch.long, device=self.device)
        tokens = torch.cat([bos, ids[:, :-1]], 1)
        image = torch.arange(n, device=self.device) // int(k)
        logp = F.log_softmax(self.forward(feats, tokens, image_index=image).float(), -1)
        return logp.gather(2, ids[..., None]).squeeze(2).masked_fill(~mask, 0.0)

    # -- decoding -----------------------------------------------------------------------------------
    def sample(self, feats, k: int = 1, max_len: int | None = None, *, greedy: bool = False,
               temperature: float = 1.0, generator: torch.Generator | None = None):
        """``k`` captions per image, token by token: ``(ids, logprobs, mask)``, each ``(B·k, T)``.

        * Rows ``i·k .. i·k + k − 1`` belong to image ``i``; ``T <= max_len`` (decoding stops once every
          row has written ``<eos>``).
        * ``ids``: the tokens, ``<pad>`` after a row's ``<eos>``. ``mask``: True up to and including the
          first ``<eos>`` (a row without ``<eos>`` was cut at ``max_len``: all True).
        * ``logprobs``: ``log p_θ(ids[:, t] | image, ids[:, :t])`` under the model at temperature 1 (the
          policy's log-probability, **with grad**), 0 where ``mask`` is False.
        * ``greedy``: argmax at each step; else a draw from ``softmax(logits / temperature)`` with
          ``torch.multinomial(..., generator=generator)`` (a generator on another device than the model
          draws there: the same seed gives the same captions on CPU and GPU).

        Runs in the module's current mode (dropout is on in train mode); no ``torch.no_grad`` inside.
        """
        max_len = self._check_len(max_len)
        if k < 1:
            raise ValueError(f"Captioner.sample: k must be >= 1, got {k}")
        if not greedy and not temperature > 0:
            raise ValueError(f"Captioner.sample: temperature must be > 0, got {temperature}")
        mem_kv = self._memory_kv(feats, repeat=k)
        n = mem_kv[0][0].shape[0]
        caches: list[dict] = [{} for _ in self.blocks]
        tok = torch.full((n, 1), BOS, dtype=torch.long, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        ids, lps, masks = [], [], []
        for t in range(max_len):
            logits = self._decode(tok, mem_kv, caches, start=t)[:, -1].float()
            logp = F.log_softmax(logits, -1)
            if greedy:
                nxt = logp.argmax(-1)
            else:
                probs = F.softmax(logits.detach() / temperature, -1)
                if generator is not None and generator.device != probs.device:
                    nxt = torch.multinomial(probs.to(generator.device), 1, generator=generator).to(self.device)
                else:
                    nxt = torch.multinomial(probs, 1, generator=generator)
                nxt = nxt.squeeze(1)
            nxt = nxt.masked_fill(done, PAD)
            masks.append(~done)
            lps.append(logp.gather(1, nxt[:, None]).squeeze(1).masked_fill(done, 0.0))
            ids.append(nxt)
            done = done | (nxt == EOS)
            if bool(done.all()):
                break
            tok = nxt[:, None]
        return torch.stack(ids, 1), torch.stack(lps, 1), torch.stack(masks, 1)

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        """Captions (``Vocab.decode``) of the rows of ``ids``."""
        return [self.vocab.decode(r) for r in ids.tolist()]

    def greedy(self, feats, max_len: int | None = None, *, batch_size: int = 256) -> list[str]:
        """Greedy (argmax) caption per image, in eval mode and without grad (the mode is restored)."""
        with _eval(self), torch.no_grad():
            out = []
            for i in range(0, len(feats), batch_size):
                ids, _, _ = self.sample(feats[i:i + batch_size], 1, max_len, greedy=True)
                out += self.decode_ids(ids)
            return out

    def beam(self, feats, beam_size: int, max_len: int | None = None, *, length_penalty: float = 0.0,
             batch_size: int = 64) -> list[str]:
        """Beam search per image (eval mode, no grad): keep the ``beam_size`` prefixes of highest summed
        log-probability; a prefix that wrote ``<eos>`` stays with its score. The caption returned is the
        beam of highest ``score / length**length_penalty`` (``length`` = tokens incl. ``<eos>``; the
        default 0 ranks by the summed log-probability). ``beam_size = 1`` is greedy decoding."""
        if beam_size < 1:
            raise ValueError(f"Captioner.beam: beam_size must be >= 1, got {beam_size}")
        with _eval(self), torch.no_grad():
            out = []
            for i in range(0, len(feats), batch_size):
                out += self.decode_ids(self._beam_ids(feats[i:i + batch_size], beam_size, self._check_len(max_len),
                                                      length_penalty))
            return out

    def _beam_ids(self, feats, K: int, max_len: int, length_penalty: float) -> torch.Tensor:
        mem_kv = self._memory_kv(feats, repeat=K)
        n = mem_kv[0][0].shape[0]
        B, V, dev = n // K, len(self.vocab), self.device
        caches: list[dict] = [{} for _ in self.blocks]
        scores = torch.full((B, K), float("-inf"), device=dev)
        scores[:, 0] = 0.0  # the K beams start identical: only the first one is extended at step 0
        finished = torch.zeros(n, dtype=torch.bool, device=dev)
        seqs = torch.zeros((n, 0), dtype=torch.long, device=dev)
        stay = torch.full((V,), float("-inf"), device=dev)
        stay[PAD] = 0.0  # a finished beam continues with <pad> at no cost
        tok = torch.full((n, 1), BOS, dtype=torch.long, device=dev)
        for t in range(max_len):
            logp = F.log_softmax(self._decode(tok, mem_kv, caches, start=t)[:, -1].float(), -1)
            logp = torch.where(finished[:, None], stay, logp)
            top, idx = (scores.reshape(n, 1) + logp).reshape(B, K * V).topk(K, dim=1)
            src = (torch.arange(B, device=dev)[:, None] * K + idx // V).reshape(-1)
            nxt = (idx % V).reshape(-1)
            for c in caches:
                c["k"], c["v"] = c["k"][src], c["v"][src]
            seqs = torch.cat([seqs[src], nxt[:, None]], 1)
            finished = finished[src] | (nxt == EOS)
            scores, tok = top, nxt[:, None]
            if bool(finished.all()):
                break
        length = (seqs != PAD).sum(1).clamp_min(1).reshape(B, K).float()
        rank = scores / length ** length_penalty if length_penalty else scores
        best = torch.arange(B, device=dev) * K + rank.argmax(1)
        return seqs[best]

    def info(self) -> dict:
        return {"model": "transformer decoder over EfficientNet-Lite0 grid tokens",
                "label": "small XE captioner trained here on embedded data (stand-in for the paper's COCO captioner)",
                **asdict(self.config),
                "vocab_size": len(self.vocab), "min_count": self.vocab.min_count,
                "n_parameters": int(sum(p.numel() for p in self.parameters()))}


class _eval:
    """Context manager: the module in eval mode inside, its previous mode restored after."""

    def __init__(self, module: nn.Module):
        self.module, self.was = module, module.training

    def __enter__(self):
        self.module.eval()

    def __exit__(self, *exc):
        self.module.train(self.was)
