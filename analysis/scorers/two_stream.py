"""Published two-stream / fusion-encoder matching models: LXMERT and BLIP ITM.

Both heads give two logits ``(l_no, l_match)`` per pair. The score (``output``) is

* ``"itm_logit"``: ``l_match - l_no``, the log-odds of "match" (unbounded);
* ``"itm_prob"``: ``softmax(l)[match] = sigmoid(l_match - l_no)`` in (0, 1).

The two give the same ranking; which one a reward should use is an open choice
(the Ma et al. probe does not say), so both are offered.

**LXMERT** (``lxmert:<spec>``, default ``itm_logit``): ``LxmertForPreTraining``'s
cross-modality matching head (``cross_relationship_score``; index 1 = "the sentence
matches the image") over a language stream and a visual stream joined by
cross-attention layers. LXMERT was pre-trained on Faster R-CNN *region* features
(2048-d object-detector features with their boxes). No detector can be run here, so
this scorer feeds it **grid features instead**: an ImageNet ResNet's last feature
map, average-pooled to ``grid x grid`` cells, each cell a "region" with its
normalised box ``(x1, y1, x2, y2)``. These are NOT the features LXMERT was trained
on; its scores measure LXMERT's heads on out-of-distribution visual input and are
labelled so. The ResNet weights are a file the user supplies (``feature_weights``,
default: torchvision's cached ImageNet file, looked up on disk only).

**BLIP** (``blip-itm:<spec>``, default ``itm_prob``): ``BlipForImageTextRetrieval``
with ``use_itm_head=True``: the ViT image tokens enter the BERT text encoder through
cross-attention and the ITM head reads the first text token. Inputs are prepared
by the checkpoint's own ``BlipProcessor``.

``spec`` is a ``save_pretrained`` folder or a hub id already on disk
(:mod:`analysis.scorers.weights`; nothing is downloaded).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from analysis.scorers.base import WeightsUnavailable, state_hash
from analysis.scorers.single_stream import HFMatchScorer, check_output, load_hf_scorer, source_of
from analysis.scorers.weights import (as_rgb, from_pretrained_complete, pick_device, read_state_dict,
                                      resolve_hf_folder, weights_root)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def match_score(logits, output: str):
    """``l[:, 1] - l[:, 0]`` (``itm_logit``) or its sigmoid, ``softmax(l)[:, 1]`` (``itm_prob``)."""
    z = (logits[:, 1] - logits[:, 0]).float()
    return (z.sigmoid() if output == "itm_prob" else z).cpu().numpy()


# --------------------------------------------------------------------------- grid features
def default_feature_weights(arch: str) -> Path:
    """Where ResNet weights for ``arch`` are looked for: the study folder, then torchvision's cache."""
    import torch
    import torchvision

    url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
    mine = weights_root() / "torchvision" / os.path.basename(url)
    if mine.is_file():
        return mine
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if cached.is_file():
        return cached
    raise WeightsUnavailable(
        f"ImageNet {arch} weights for LXMERT's grid features are not on this machine (no downloads here). "
        f"Get {url} and put it in the folder {mine.parent} (or {cached.parent}), or pass feature_weights=<path>.")


def load_state(path: str | Path, arch: str = "ResNet") -> dict:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file (``weights_only=True``);
    an unreadable file is one :class:`~analysis.scorers.base.BadWeightsFile` message."""
    return read_state_dict(path, expected=f"torchvision {arch} ImageNet weights (a state dict)")


class GridFeatures:
    """ResNet last feature map pooled to ``grid x grid`` cells: features ``(B, g*g, C)``, boxes ``(B, g*g, 4)``.

    The image is resized (whole, no crop) to ``image_size`` squared and normalised
    with ImageNet mean/std; cell ``(i, j)`` has box ``(j/g, i/g, (j+1)/g, (i+1)/g)``.
    """

    def __init__(self, arch: str = "resnet101", weights: str | Path | None = None, *, grid: int = 6,
                 image_size: int = 448, device: str | None = None):
        import torch
        import torchvision

        device = pick_device(device)
        if arch not in RESNETS:
            raise ValueError(f"grid features: arch must be one of {RESNETS}, not {arch!r}")
        self.arch, self.grid, self.image_size, self.device = arch, int(grid), int(image_size), device
        self.weights = Path(weights).expanduser() if weights else default_feature_weights(arch)
        if not self.weights.is_file():
            raise WeightsUnavailable(f"grid features: ResNet weights file {self.weights} does not exist")
        net = getattr(torchvision.models, arch)(weights=None)
        net.load_state_dict(load_state(self.weights, arch))
        self.hash = state_hash(net.state_dict())
        self.body = torch.nn.Sequential(*list(net.children())[:-2]).float().eval().to(device)
        self.dim = net.fc.in_features

    def _pixels(self, images):
        import torch
        from PIL import Image
        from torchvision.transforms import functional as F

        def one(im):
            x = F.to_tensor(im.resize((self.image_size, self.image_size), resample=Image.Resampling.BICUBIC))
            return F.normalize(x, IMAGENET_MEAN, IMAGENET_STD)

        return torch.stack([one(im) for im in as_rgb(images)]).to(self.device)

    def boxes(self, n: int):
        """Normalised ``(x1, y1, x2, y2)`` of the grid cells, row-major, repeated for ``n`` images."""
        import torch

        g = self.grid
        i, j = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        b = torch.stack([j, i, j + 1, i + 1], dim=-1).reshape(g * g, 4).float() / g
        return b.unsqueeze(0).expand(n, -1, -1).to(self.device)

    def __call__(self, images):
        import torch

        fmap = self.body(self._pixels(images))
        cells = torch.nn.functional.adaptive_avg_pool2d(fmap, self.grid)
        return cells.flatten(2).transpose(1, 2).contiguous(), self.boxes(len(images))


# --------------------------------------------------------------------------- LXMERT
class LxmertScorer(HFMatchScorer):
    """LXMERT's cross-modality matching head over ResNet grid features (not its training features)."""

    family = "two-stream"

    def __init__(self, model, tokenizer, features: GridFeatures, *, output: str = "itm_logit",
                 max_text_tokens: int | None = None, **kw):
        if not model.config.task_matched:
            raise ValueError("LXMERT config has task_matched=False, so it has no matching head")
        if features.dim != model.config.visual_feat_dim:
            raise ValueError(f"{features.arch} gives {features.dim}-d features but LXMERT expects "
                             f"visual_feat_dim={model.config.visual_feat_dim}")
        super().__init__(model, tokenizer, output=output,
                         max_text_tokens=max_text_tokens or model.config.max_position_embeddings, **kw)
        self.features = features
        self.label = (f"LXMERT {self.pretrained} on {features.arch} {features.grid}x{features.grid} grid features "
                      f"({self.output}; {self.source} weights, not its training features)")
        self.checkpoint_hash = hashlib.sha256(f"{self.checkpoint_hash}+{features.hash}".encode()).hexdigest()

    def _score_batch(self, images, captions):
        """``l_match - l_no`` of ``cross_relationship_score`` (or its sigmoid for ``itm_prob``)."""
        text = self._tokens(captions)
        feats, boxes = self.features(images)
        out = self.model(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                         token_type_ids=text.get("token_type_ids"), visual_feats=feats, visual_pos=boxes)
        return match_score(out.cross_relationship_score, self.output)


def load_lxmert(spec: str, batch_size: int = 32, device: str | None = None, output: str = "itm_logit",
                features: str = "resnet101", feature_weights: str | Path | None = None, grid: int = 6,
                image_size: int = 448, max_text_tokens: int | None = None) -> LxmertScorer:
    """Build the scorer for ``lxmert:<spec>``; ``features``/``feature_weights``/``grid`` set the grid features."""
    from transformers import AutoTokenizer, LxmertForPreTraining

    check_output(output)
    folder, pretrained = resolve_hf_folder(spec, "lxmert:", "LXMERT")
    device = pick_device(device)
    grid_features = GridFeatures(features, feature_weights, grid=grid, image_size=image_size, device=device)
    model = from_pretrained_complete(LxmertForPreTraining, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return LxmertScorer(model, tokenizer, grid_features, name=f"lxmert:{spec}", pretrained=pretrained,
                        output=output, source=source_of(spec), batch_size=batch_size, device=device,
                        max_text_tokens=max_text_tokens)


# --------------------------------------------------------------------------- BLIP
class BlipItmScorer(HFMatchScorer):
    """BLIP's image-text matching head (text encoder cross-attending to ViT tokens)."""

    family = "two-stream"

    def __init__(self, model, processor, *, output: str = "itm_prob", max_text_tokens: int | None = None, **kw):
        super().__init__(model, processor.tokenizer, output=output,
                         max_text_tokens=max_text_tokens or model.config.text_config.max_position_embeddings, **kw)
        self.image_processor = processor.image_processor
        self.label = f"BLIP ITM {self.pretrained} ({self.output}; {self.source})"

    def _score_batch(self, images, captions):
        """``softmax(itm_score)[match]`` (``itm_prob``) or ``l_match - l_no`` (``itm_logit``)."""
        text = self._tokens(captions)
        pixels = self.image_processor(as_rgb(images), return_tensors="pt")["pixel_values"].to(self.device)
        out = self.model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels,
                         use_itm_head=True)
        return match_score(out.itm_score, self.output)


def load_blip(spec: str, batch_size: int = 32, device: str | None = None, output: str = "itm_prob",
              max_text_tokens: int | None = None) -> BlipItmScorer:
    """Build the scorer for ``blip-itm:<spec>`` (a local folder, or a hub id already on disk)."""
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    return load_hf_scorer(spec, "blip-itm:", "BLIP ITM", BlipForImageTextRetrieval, BlipProcessor, BlipItmScorer,
                          output=output, batch_size=batch_size, device=device, max_text_tokens=max_text_tokens)
