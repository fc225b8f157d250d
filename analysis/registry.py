"""One place where names map to builders: datasets, scorers and notebooks.

Each entry points at its builder by import path (``"module:function"``), so
listing names never imports torch and adding a model or dataset is one entry
here plus one loader function. Names ending in ``:`` are *prefix* entries that
take an argument after the colon, e.g. ``clip:ViT-B-32/openai``.

How the later parts plug in (DESIGN.md §1): the probe's rewards are ``SCORERS``
names (any scorer, published or stand-in, is a reward); ReCap's alignment maps act
on the ``encode_image``/``encode_text`` outputs of dual-encoder scorers; caption
metrics (BLEU…CIDEr via pycocoevalcap, CLIP-S, aCLIP-S) will get a ``METRICS``
registry of ``compute_score(gts, res) -> (corpus, per_item)`` builders, and each new
chapter a ``NOTEBOOKS`` entry whose experiment returns :mod:`analysis.results` rows.

>>> get_dataset("no-such-set")  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
UnknownNameError: unknown dataset 'no-such-set'; valid names: ...
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class UnknownNameError(KeyError):
    """A registry name that does not exist; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    """A registry entry: ``target`` is ``"module:function"``; ``meta`` is shown by ``list``."""

    name: str
    target: str
    summary: str
    meta: dict = field(default_factory=dict)

    @property
    def prefix(self) -> bool:
        return self.name.endswith(":")

    def load(self):
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


class Registry:
    """Names in, objects out, for one kind of thing."""

    def __init__(self, kind: str, entries: list[Entry]):
        self.kind = kind
        self._entries = {e.name: e for e in entries}

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        try:
            self.entry(name)
            return True
        except UnknownNameError:
            return False

    def entry(self, name: str) -> Entry:
        """The entry for ``name``; prefix entries match ``"<prefix><argument>"``."""
        if name in self._entries and not name.endswith(":"):
            return self._entries[name]
        for e in self._entries.values():
            if e.prefix and name.startswith(e.name) and len(name) > len(e.name):
                return e
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        shown = ", ".join(n + ("<arch>/<tag or path>" if n.endswith(":") else "") for n in self.names())
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {shown}.{hint}")

    def get(self, name: str, **kwargs) -> Any:
        """Build the object ``name`` names (prefix entries get the text after the prefix)."""
        e = self.entry(name)
        fn = e.load()
        return fn(name[len(e.name):], **kwargs) if e.prefix else fn(**kwargs)

    def table(self):
        import pandas as pd

        return pd.DataFrame([{"name": e.name, "summary": e.summary, **e.meta} for e in self._entries.values()])


# --------------------------------------------------------------------------- datasets
DATASETS = Registry("dataset", [
    Entry("tuxpaint-stamps", "analysis.data.tuxpaint:load",
          "Tux Paint stamps: 538 real cut-out images with one human-written English description each",
          {"source": "embedded", "licence": "GPL-2.0", "origin": "Debian tuxpaint-stamps-default"}),
    Entry("gcompris-explore", "analysis.data.gcompris:load_explore",
          "GCompris 'explore' photos (monuments, animals, music) with a title and a descriptive paragraph",
          {"source": "embedded", "licence": "GPL-3.0 app; photos mostly PD/CC0", "origin": "Debian gcompris-qt-data"}),
    Entry("gcompris-categories", "analysis.data.gcompris:load_categories",
          "GCompris categorisation photos with a category label (caption derived from the file name)",
          {"source": "embedded", "licence": "GPL-3.0 app; photos mostly PD/CC0", "origin": "Debian gcompris-qt-data"}),
    Entry("stamp-scenes", "analysis.data.scenes:load",
          "Composited scenes of 1-4 Tux Paint cut-outs with a known scene graph and generated references",
          {"source": "embedded", "licence": "GPL-2.0 (derived from the stamps)", "origin": "made here from tuxpaint-stamps"}),
    Entry("sample-photos", "analysis.data.samples:load",
          "14 photos shipped in scikit-image / scikit-learn / matplotlib wheels; captions written for this study",
          {"source": "embedded", "licence": "see each image (BSD/PD)", "origin": "pip wheels"}),
    Entry("coco-karpathy", "analysis.data.karpathy:load_coco",
          "MS-COCO with the Karpathy split (dataset_coco.json + train2014/val2014 images)",
          {"source": "real", "licence": "CC-BY 4.0 annotations", "origin": "user-supplied"}),
    Entry("flickr8k-karpathy", "analysis.data.karpathy:load_flickr8k",
          "Flickr8k with the Karpathy split (dataset_flickr8k.json + Flicker8k_Dataset/)",
          {"source": "real", "licence": "research only", "origin": "user-supplied"}),
    Entry("flickr30k-karpathy", "analysis.data.karpathy:load_flickr30k",
          "Flickr30k with the Karpathy split (dataset_flickr30k.json + flickr30k-images/)",
          {"source": "real", "licence": "research only", "origin": "user-supplied"}),
    Entry("flickr8k-expert", "analysis.data.judgements:load_flickr8k_expert",
          "Flickr8k-Expert: expert 1-4 ratings of image-caption pairs (ExpertAnnotations.txt)",
          {"source": "real", "licence": "research only", "origin": "user-supplied"}),
    Entry("flickr8k-cf", "analysis.data.judgements:load_flickr8k_cf",
          "Flickr8k-CrowdFlower: binary crowd judgements (CrowdFlowerAnnotations.txt)",
          {"source": "real", "licence": "research only", "origin": "user-supplied"}),
    Entry("thumb", "analysis.data.judgements:load_thumb",
          "THumB 1.0: rubric scores for COCO captions (mscoco_THumB-1.0.jsonl)",
          {"source": "real", "licence": "see THumB release", "origin": "user-supplied"}),
])

# --------------------------------------------------------------------------- scorers
SCORERS = Registry("scorer", [
    Entry("clip-mini", "analysis.scorers.embedded:clip_mini",
          "clip-mini (CLIP-style stand-in): locked EfficientNet-Lite0 + locked MiniLM, LiT projections",
          {"family": "dual", "source": "embedded"}),
    Entry("uniter-mini", "analysis.scorers.embedded:uniter_mini",
          "uniter-mini (UNITER-style stand-in): one transformer over text tokens + visual grid tokens, ITM head",
          {"family": "single-stream", "source": "embedded"}),
    Entry("lxmert-mini", "analysis.scorers.embedded:lxmert_mini",
          "lxmert-mini (LXMERT-style stand-in): text and visual encoders joined by cross-attention, ITM head",
          {"family": "two-stream", "source": "embedded"}),
    Entry("blind", "analysis.scorers.blind:blind",
          "blind (text-only baseline): a classifier over caption embeddings trained on the same negatives",
          {"family": "text-only", "source": "embedded"}),
    Entry("clip:", "analysis.scorers.clip:load",
          "open_clip model: clip:<arch>/<pretrained tag or local checkpoint path>",
          {"family": "dual", "source": "published"}),
    Entry("vilt:", "analysis.scorers.single_stream:load",
          "ViLT image-text retrieval head (UNITER-style single stream): vilt:<local folder or hub id>",
          {"family": "single-stream", "source": "published"}),
    Entry("lxmert:", "analysis.scorers.two_stream:load_lxmert",
          "LXMERT pre-training matching head over grid features: lxmert:<local folder or hub id>",
          {"family": "two-stream", "source": "published"}),
    Entry("blip-itm:", "analysis.scorers.two_stream:load_blip",
          "BLIP image-text matching head (fusion encoder): blip-itm:<local folder or hub id>",
          {"family": "two-stream", "source": "published"}),
])

# --------------------------------------------------------------------------- notebooks
NOTEBOOKS = Registry("notebook", [
    Entry("data", "analysis.datacards:run_datacards",
          "Data and models: a card per embedded dataset (source, licence, counts, lengths, examples)",
          {"template": "book/notebooks/data.ipynb", "part": "Data and models"}),
    Entry("scorers", "analysis.scorer_eval:run_scorer_eval",
          "Scorers: retrieval R@k vs chance and the text-only baseline, perturbation accuracy, modality gap",
          {"template": "book/notebooks/scorers.ipynb", "part": "Data and models"}),
    Entry("reproducibility", "analysis.provenance:run_provenance",
          "Reproducibility: package versions, data package versions and hashes, seeds, cache entries",
          {"template": "book/notebooks/reproducibility.ipynb", "part": "Reproducibility"}),
])


def get_dataset(name: str, **kwargs):
    """``get_dataset("stamp-scenes", split="test")`` -> :class:`analysis.data.base.Dataset`."""
    return DATASETS.get(name, **kwargs)


def get_scorer(name: str, **kwargs):
    """``get_scorer("clip-mini")`` or ``get_scorer("clip:ViT-B-32/openai")`` -> a scorer."""
    return SCORERS.get(name, **kwargs)


def notebook_template(name: str) -> Path:
    """Path of the template of notebook ``name``."""
    return ROOT / NOTEBOOKS.entry(name).meta["template"]
