"""Where published weights come from on this machine, and what to say when they are missing.

Nothing here downloads. A published model is found, in this order, in

1. a local folder or file the user names in the spec (``vilt:/models/vilt-coco``);
2. the study's weights folder, ``$STUDY_WEIGHTS`` or ``<study cache>/weights``
   (``~/.cache/vlp-study/weights``), laid out as ``<org>/<name>/`` for hub ids and
   ``open_clip/<arch>/<tag>/`` for open_clip tags;
3. the Hugging Face hub cache, if a snapshot is already there (``local_files_only``).

Otherwise :class:`~analysis.scorers.base.WeightsUnavailable` is raised at once, with a
message naming the model, the folder to put the files in, and the local-path spec
that would load them. A file that is there but cannot be read (empty, truncated, not a
weights file) is a :class:`~analysis.scorers.base.BadWeightsFile` naming the file, what
was expected and what to do (:func:`read_state_dict`, :func:`unreadable_weights`).

Relative paths in a spec are resolved against the working directory of the process that
*names* the scorer (:func:`absolute_spec`): the command line resolves them before a
notebook kernel, which runs elsewhere, builds the scorer.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from analysis.scorers.base import BadWeightsFile, WeightsUnavailable

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


def absolute_path(text: str) -> Path:
    """``text`` as an absolute path: ``~`` expanded, relative to this process's working directory."""
    return Path(text).expanduser().resolve()


def absolute_spec(spec: str, prefix: str) -> str:
    """The argument of an HF prefix entry (``vilt:``, ``lxmert:``, ``blip-itm:``) with a local path
    made absolute (hub ids are returned unchanged)."""
    return str(absolute_path(spec)) if spec and looks_like_path(spec) else spec


# --------------------------------------------------------------------------- reading weight files
DAMAGED_FIX = "Replace it with a complete copy (download or export it again)."


def unreadable_weights(path: str | Path, err: BaseException | None, expected: str, fix: str = DAMAGED_FIX
                       ) -> BadWeightsFile:
    """The one message for a weights file that cannot be read: the file, what it should have
    been, why not (the reader's error type, never the reader's advice) and what to do."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else None
    if size == 0:
        why = "it is empty (0 bytes)"
    elif err is None:
        why = "it could not be read"
    else:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = "" if "weights_only" in str(err) else first.split(". ")[0][:120]
        why = f"it is damaged, truncated or not a weights file ({type(err).__name__}{': ' + detail if detail else ''})"
    return BadWeightsFile(f"weights file {path} ({size} bytes) cannot be read: {why}. Expected {expected}. {fix}")


def read_state_dict(path: str | Path, *, expected: str = "a PyTorch state dict (torch.save) or a .safetensors file",
                    fix: str = DAMAGED_FIX) -> dict:
    """The state dict in ``path``: safetensors for ``*.safetensors``, else ``torch.load`` with
    ``weights_only=True`` (no pickled code is ever run). An unreadable file is a
    :class:`BadWeightsFile` (one message: :func:`unreadable_weights`)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist. Expected {expected}.")
    if path.stat().st_size == 0:
        raise unreadable_weights(path, None, expected, fix)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every reader failure means the same thing to the user
        raise unreadable_weights(path, e, expected, fix) from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def check_readable(path: str | Path, err: BaseException, expected: str) -> None:
    """After a library failed to load ``path``: raise :class:`BadWeightsFile` if the file itself is
    unreadable (so the user sees one message about the file); otherwise return and let the
    caller re-raise the library's own error (e.g. weights that do not fit the architecture)."""
    try:
        read_state_dict(path, expected=expected)
    except BadWeightsFile as bad:
        raise bad from None


def resolve_hf_folder(spec: str, prefix: str, model: str) -> tuple[Path, str]:
    """A local folder holding a transformers model for ``spec``; also returns what to record as ``pretrained``.

    ``spec`` is a folder path or a hub id (``org/name``). Hub ids are looked up in
    :func:`weights_root` and then in the hub cache, never on the network.
    """
    if not spec:
        raise ValueError(f"{prefix}: give a local folder or a hub id, e.g. '{prefix}/path/to/folder'")
    if looks_like_path(spec):
        folder = absolute_path(spec)
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
    except Exception as e:  # noqa: BLE001 - any miss means "not on this machine"
        raise WeightsUnavailable(
            f"{model} weights '{spec}' are not on this machine (no downloads here). Put {HF_MODEL_FILES} "
            f"in the folder {mirror} , or anywhere and use '{prefix}/path/to/that/folder'.") from e


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


def pick_device(device=None) -> str:
    """``device`` if given, else the study default (:func:`analysis.runtime.device`: ``$STUDY_DEVICE``, else CUDA
    when visible, else CPU), checked by :func:`analysis.runtime.resolve_device` (an unusable device is a clear
    error before any model is built)."""
    from analysis.runtime import resolve_device

    return resolve_device(device)


def from_pretrained_complete(cls, folder: Path):
    """``cls.from_pretrained(folder)`` in float32, refusing checkpoints that leave any weight random.

    A checkpoint without the matching head (e.g. a ViLT MLM checkpoint loaded as a
    retrieval model) would otherwise load "successfully" with a randomly
    initialised head; here it is a ``ValueError`` naming the missing weights.
    """
    import torch

    try:
        model, info = cls.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    except Exception as e:
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (Path(folder) / name).is_file():
                check_readable(Path(folder) / name, e, f"the {cls.__name__} weights written by save_pretrained()")
        raise
    missing = sorted(info.get("missing_keys") or []) + sorted(str(k) for k in info.get("mismatched_keys") or [])
    if missing:
        raise ValueError(f"{folder} is not a complete {cls.__name__} checkpoint: these weights would be random "
                         f"initialisation, not published values: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    return model.eval()
