"""Published CLIP-family checkpoints through open_clip (``clip:<spec>`` in the registry).

The score is the cosine of the L2-normalised image and text embeddings,
``s = <u/|u|, v/|v|>`` in [-1, 1] (output ``"cosine"``; CLIP-S is ``2.5 * max(s, 0)``
on top of it, computed in :mod:`analysis.metrics`, not here).

Spec syntax (the text after ``clip:``)::

    ViT-B-32/openai                      <arch>/<pretrained tag>  (tags: open_clip.list_pretrained())
    ViT-B-32//data/ckpt/open_clip.bin    <arch>/<checkpoint file>: everything after the FIRST "/" is
    ViT-B-32/./ckpt/epoch_32.pt          the file, so an absolute path gives a double slash
    ViT-B-32/~/ckpt/model.safetensors    (a tag never contains "/" and never ends in .bin/.pt/...)
    local-dir:/data/clip-folder          open_clip folder: open_clip_config.json + weights file
    hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K   an open_clip hub repo, from the local hub cache only

A relative path (``./ckpt/epoch_32.pt``, ``local-dir:models/clip``) is resolved against the
working directory of the process that names the scorer: :func:`absolute_spec` (called by
the command line before a notebook kernel starts) makes it absolute, and :func:`load`
resolves whatever is still relative against its own working directory; error messages show
the resolved path. A model from a local file or folder has ``source = "local"`` and
``pretrained`` = the resolved path; only a released tag (or an ``hf-hub:`` repo) is
``"published"``.

Arch names are open_clip's (``open_clip.list_models()``), written with dashes.
Checkpoint files are read with ``torch.load(weights_only=True)`` (or safetensors);
TorchScript archives (OpenAI's original files) are converted once to a plain state
dict in the study cache (:func:`plain_checkpoint`).
A tag's weights are looked up, without any download, in
``<study weights>/open_clip/<arch>/<tag>/`` (see :mod:`analysis.scorers.weights`),
then in open_clip's own caches (the hub cache, ``~/.cache/clip``); if absent,
:class:`~analysis.scorers.base.WeightsUnavailable` is raised at once. The tag's
preprocessing (mean/std/interpolation) and QuickGELU setting are applied
explicitly, so ``ViT-B-32/openai`` runs the OpenAI model with QuickGELU as trained.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from analysis.scorers.base import DualEncoder, WeightsUnavailable, state_hash
from analysis.scorers.weights import absolute_path, as_rgb, check_readable, pick_device, weights_root

CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".npz")
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


# --------------------------------------------------------------------------- spec
def parse_spec(spec: str) -> tuple[str, str, str]:
    """``(kind, arch, pretrained)`` with kind one of ``tag``, ``path``, ``local-dir``, ``hf-hub``."""
    for schema in ("local-dir:", "hf-hub:"):
        if spec.startswith(schema):
            return schema[:-1], spec, spec[len(schema):]
    arch, _, rest = spec.partition("/")
    if not arch or not rest:
        raise ValueError(f"clip:{spec}: expected clip:<arch>/<pretrained tag> or clip:<arch>/<checkpoint path>, "
                         f"e.g. clip:ViT-B-32/openai or clip:ViT-B-32//abs/path/open_clip_pytorch_model.bin")
    is_path = "/" in rest or "\\" in rest or rest.startswith("~") or rest.endswith(CHECKPOINT_SUFFIXES)
    return ("path" if is_path else "tag"), arch, rest


def absolute_spec(spec: str) -> str:
    """``spec`` with a checkpoint path or a ``local-dir:`` folder made absolute in this process
    (``ViT-B-32/./ckpt.pt`` -> ``ViT-B-32//home/me/ckpt.pt``); tags and hub ids are unchanged."""
    kind, arch, pretrained = parse_spec(spec)
    if kind == "path":
        return f"{arch}/{absolute_path(pretrained)}"
    if kind == "local-dir":
        return f"local-dir:{absolute_path(pretrained)}"
    return spec


def source_of(kind: str) -> str:
    """``"local"`` for a file or folder given by path, ``"published"`` for a released tag or hub repo."""
    return "local" if kind in ("path", "local-dir") else "published"


def _check_arch(arch: str) -> None:
    import open_clip

    if open_clip.get_model_config(arch) is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=5)
        raise ValueError(f"clip: unknown open_clip architecture {arch!r}; close names: {close} "
                         f"(all: open_clip.list_models())")


def tag_folder(arch: str, tag: str) -> Path:
    """The study folder where the weights file of ``<arch>/<tag>`` can be put by hand."""
    return weights_root() / "open_clip" / arch / tag


def _first_checkpoint(folder: Path) -> str | None:
    files = sorted(p for p in folder.glob("*") if p.suffix in CHECKPOINT_SUFFIXES) if folder.is_dir() else []
    return str(files[0]) if files else None


def _hub_cached(model_id: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(model_id, filename)
    return hit if isinstance(hit, str) and os.path.isfile(hit) else None


def cached_tag_file(arch: str, tag: str, cfg: dict) -> str | None:
    """The local weights file for a pretrained tag, or ``None``; never downloads."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    found = _first_checkpoint(tag_folder(arch, tag))
    if found:
        return found
    if cfg.get("file") and os.path.isfile(cfg["file"]):
        return cfg["file"]
    if cfg.get("hf_hub"):
        model_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" -> default file names
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        for name in names:
            hit = _hub_cached(model_id, name)
            if hit:
                return hit
    if cfg.get("url"):
        local = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if local.is_file():
            return str(local)
    return None


def _missing_tag(arch: str, tag: str, cfg: dict) -> WeightsUnavailable:
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if cfg.get("hf_hub"):
        model_id, filename = os.path.split(cfg["hf_hub"])
        where = f"the hub repo {model_id} (file {filename or HF_SAFE_WEIGHTS_NAME + ' or ' + HF_WEIGHTS_NAME})"
    else:
        where = cfg.get("url") or "its publisher"
    return WeightsUnavailable(
        f"CLIP weights for clip:{arch}/{tag} are not on this machine (no downloads here). Get the file "
        f"from {where} and put it in the folder {tag_folder(arch, tag)} , or load it from anywhere with "
        f"clip:{arch}//path/to/the/file (an absolute path after the arch and one slash).")


# --------------------------------------------------------------------------- TorchScript files
JIT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")  # not weights


def is_torchscript(path: str | Path) -> bool:
    """True for a TorchScript archive (OpenAI's original ``ViT-B-32.pt`` files are)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") for n in z.namelist())


def plain_checkpoint(path: str | Path) -> str:
    """``path``, or for a TorchScript archive a plain state-dict copy in the study cache.

    ``torch.load(weights_only=True)`` refuses TorchScript archives, so OpenAI's
    original files are converted once: ``torch.jit.load`` (TorchScript, no pickled
    Python objects) -> ``state_dict()`` -> ``torch.save``, keyed by the file's sha256.
    """
    if not is_torchscript(path):
        return str(path)
    import warnings

    import torch
    from analysis import cache

    def build(folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, still supported
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        torch.save({k: v for k, v in state.items() if k not in JIT_EXTRA_KEYS}, folder / "state_dict.pt")

    recipe = {"kind": "open_clip state dict from a TorchScript archive", "sha256": cache.file_sha256(path)}
    return str(cache.entry("clip-jit", recipe, build) / "state_dict.pt")


# --------------------------------------------------------------------------- building
def _build(kind: str, arch: str, pretrained: str, device: str):
    """``(model, preprocess, tokenizer)`` for a parsed spec; raises ``WeightsUnavailable`` when absent."""
    import open_clip

    if kind == "tag":
        _check_arch(arch)
        cfg = open_clip.get_pretrained_cfg(arch, pretrained)
        if not cfg:
            raise ValueError(f"clip: unknown pretrained tag {pretrained!r} for {arch}; known tags: "
                             f"{open_clip.list_pretrained_tags_by_model(arch)}")
        path = cached_tag_file(arch, pretrained, cfg)
        if path is None:
            raise _missing_tag(arch, pretrained, cfg)
        pp = {f"image_{k}": cfg[k] for k in PREPROCESS_KEYS if k in cfg}  # image_mean=..., image_std=...
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=plain_checkpoint(path), device=device, precision="fp32", weights_only=True,
            force_quick_gelu=bool(cfg.get("quick_gelu", False)), **pp)
        return model, preprocess, open_clip.get_tokenizer(arch)
    if kind == "path":
        _check_arch(arch)
        path = absolute_path(pretrained)
        if not path.is_file():
            raise WeightsUnavailable(f"CLIP checkpoint file {path} (from clip:{arch}/{pretrained}) does not exist. "
                                     f"Put the file there, or give its absolute path: clip:{arch}//abs/path/file.bin")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=plain_checkpoint(path), device=device, precision="fp32", weights_only=True)
        except Exception as e:
            check_readable(path, e, f"an open_clip checkpoint of {arch} (torch.save state dict or .safetensors)")
            raise
        return model, preprocess, open_clip.get_tokenizer(arch)
    folder = _local_folder(kind, pretrained)
    name = f"local-dir:{folder}"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device, precision="fp32",
                                                                     weights_only=True)
    except Exception as e:
        check_readable(_first_checkpoint(folder), e, "the open_clip weights file of the folder's model")
        raise
    return model, preprocess, open_clip.get_tokenizer(name)


def _local_folder(kind: str, ident: str) -> Path:
    """The folder for ``local-dir:`` / ``hf-hub:`` specs, checked to hold a config and weights."""
    folder = absolute_path(ident)  # local-dir: a path, resolved in this process
    if kind == "hf-hub":
        folder = weights_root() / ident
        if not (folder / "open_clip_config.json").is_file():
            try:
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(ident, local_files_only=True))
            except Exception as e:  # noqa: BLE001 - not cached
                raise WeightsUnavailable(
                    f"open_clip hub repo {ident!r} (clip:hf-hub:{ident}) is not on this machine (no downloads here). "
                    f"Put open_clip_config.json and the weights file in the folder {weights_root() / ident} , "
                    f"or anywhere and use clip:local-dir:/path/to/that/folder") from e
    if not (folder / "open_clip_config.json").is_file() or _first_checkpoint(folder) is None:
        raise WeightsUnavailable(f"open_clip folder {folder} must hold open_clip_config.json and a weights file "
                                 f"({', '.join(CHECKPOINT_SUFFIXES)}); it does not.")
    return folder


# --------------------------------------------------------------------------- scorer
def token_lengths(tokenizer, captions: list[str]) -> list[int]:
    """Number of tokens of each caption before truncation, start/end tokens included."""
    if hasattr(tokenizer, "sot_token_id") and hasattr(tokenizer, "encode"):  # open_clip SimpleTokenizer
        return [len(tokenizer.encode(c)) + 2 for c in captions]
    hf = getattr(tokenizer, "tokenizer", None)
    if hf is not None:  # HFTokenizer / SigLipTokenizer wrap a transformers tokenizer
        return [len(ids) for ids in hf(list(captions), add_special_tokens=True)["input_ids"]]
    raise TypeError(f"cannot count tokens with {type(tokenizer).__name__}")


class OpenClipScorer(DualEncoder):
    """An open_clip model; ``score`` is the cosine of the normalised image and text embeddings."""

    def __init__(self, model, preprocess, tokenizer, *, name: str, label: str, pretrained: str,
                 source: str = "published", batch_size: int = 32, device: str | None = None):
        super().__init__()
        self.source = source
        device = pick_device(device)
        self.model = model.float().eval().to(device)
        self.preprocess, self.tokenizer, self.device = preprocess, tokenizer, device
        self.name, self.label, self.pretrained, self.batch_size = name, label, pretrained, int(batch_size)
        self.max_text_tokens = int(getattr(tokenizer, "context_length", None) or 77)
        self.checkpoint_hash = state_hash(self.model.state_dict())

    def _encode_image_batch(self, images):
        import torch

        x = torch.stack([self.preprocess(im) for im in as_rgb(images)]).to(self.device)
        return self.model.encode_image(x)

    def _encode_text_batch(self, captions):
        self.count_truncation(token_lengths(self.tokenizer, captions))
        return self.model.encode_text(self.tokenizer(list(captions)).to(self.device))


def _label(kind: str, arch: str, pretrained: str) -> str:
    if kind == "tag":
        return f"CLIP {arch} / {pretrained} (published)"
    if kind == "path":
        return f"CLIP {arch} / local file {Path(pretrained).name} (local weights)"
    if kind == "local-dir":
        return f"CLIP local folder {Path(pretrained).name} (local weights)"
    return f"CLIP {kind}:{pretrained} (published)"


def load(spec: str, batch_size: int = 32, device: str | None = None) -> OpenClipScorer:
    """Build the scorer for ``clip:<spec>`` (syntax in the module docstring).

    Raises ``WeightsUnavailable`` (fast, before any model is built) when the weights
    are not on disk, ``ValueError`` for an unknown arch or tag.
    """
    device = pick_device(device)
    kind, arch, pretrained = parse_spec(absolute_spec(spec))
    model, preprocess, tokenizer = _build(kind, arch, pretrained, device)
    return OpenClipScorer(model, preprocess, tokenizer, name=f"clip:{spec}", label=_label(kind, arch, pretrained),
                          pretrained=pretrained, source=source_of(kind), batch_size=batch_size, device=device)
