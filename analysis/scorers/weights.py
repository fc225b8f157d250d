"""Where published weights come from on this machine, and what to say when they are missing.

Nothing here downloads. A published model is found, in this order, in

1. a local folder or file the user names in the spec (``vilt:/models/vilt-coco``);
2. the study's weights folder, ``$STUDY_WEIGHTS`` or ``<study cache>/weights``
   (``~/.cache/vlp-study/weights``), laid out as ``<org>/<name>/`` for hub ids and
   ``open_clip/<arch>/<tag>/`` for open_clip tags;
3. the Hugging Face hub cache, if a snapshot is already there (``local_files_only``).

Otherwise :class:`~analysis.scorers.base.WeightsUnavailable` is raised at once, with a
message naming the model, the folder to put the files in, and the local-path spec
that would load them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from analysis.scorers.base import WeightsUnavailable

HF_MODEL_FILES = "config.json, model.safetensors (or pytorch_model.bin), and the tokenizer/processor files"


def weights_root() -> Path:
    """The study's folder for user-supplied published weights (not created by this call)."""
    env = os.environ.get("STUDY_WEIGHTS")
    if env:
        return Path(env).expanduser()
    from analysis import cache

    return cache.root() / "weights"


def looks_like_path(text: str) -> bool:
    """True when ``text`` names a file system location rather than a hub id or a tag."""
    return text.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(text))


def resolve_hf_folder(spec: str, prefix: str, model: str) -> tuple[Path, str]:
    """A local folder holding a transformers model for ``spec``; also returns what to record as ``pretrained``.

    ``spec`` is a folder path or a hub id (``org/name``). Hub ids are looked up in
    :func:`weights_root` and then in the hub cache, never on the network.
    """
    if not spec:
        raise ValueError(f"{prefix}: give a local folder or a hub id, e.g. '{prefix}/path/to/folder'")
    if looks_like_path(spec):
        folder = Path(spec).expanduser()
        if not (folder / "config.json").is_file():
            raise WeightsUnavailable(
                f"{model} weights: no config.json in folder {folder}. The folder must hold {HF_MODEL_FILES} "
                f"as written by save_pretrained().")
        return folder, str(folder)
    mirror = weights_root() / spec
    if (mirror / "config.json").is_file():
        return mirror, spec
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, local_files_only=True)), spec
    except Exception:  # noqa: BLE001 - any miss means "not on this machine"
        pass
    raise WeightsUnavailable(
        f"{model} weights '{spec}' are not on this machine (no downloads here). Put {HF_MODEL_FILES} "
        f"in the folder {mirror} , or anywhere and use '{prefix}/path/to/that/folder'.")


def as_rgb(images: Sequence) -> list:
    """Each image as an RGB ``PIL.Image`` (accepts PIL images, file paths and HxWx3 uint8 arrays)."""
    from PIL import Image

    out = []
    for im in images:
        if isinstance(im, (str, Path)):
            with Image.open(im) as f:
                im = f.convert("RGB")
        elif not isinstance(im, Image.Image):
            im = Image.fromarray(__import__("numpy").asarray(im))
        out.append(im if im.mode == "RGB" else im.convert("RGB"))
    return out


def pick_device(device):
    """``device`` if given, else the study default (:func:`analysis.runtime.device`)."""
    from analysis.runtime import device as default_device

    return device or default_device()


def from_pretrained_complete(cls, folder: Path):
    """``cls.from_pretrained(folder)`` in float32, refusing checkpoints that leave any weight random.

    A checkpoint without the matching head (e.g. a ViLT MLM checkpoint loaded as a
    retrieval model) would otherwise load "successfully" with a randomly
    initialised head; here it is a ``ValueError`` naming the missing weights.
    """
    import torch

    model, info = cls.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or []) + sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing:
        raise ValueError(f"{folder} is not a complete {cls.__name__} checkpoint: these weights would be random "
                         f"initialisation, not published values: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    return model.eval()
