"""One place where names map to builders: datasets, scorers and notebooks.

Each entry points at its builder by import path (``"module:function"``), so
listing names never imports torch and adding a model or dataset is one entry
here plus one loader function. Names ending in ``:`` are *prefix* entries that
take an argument after the colon, e.g. ``clip:ViT-B-32/openai``; their ``form`` meta
shows how such a name is written.

From outside the package, :meth:`Registry.register` adds an entry (a ``"module:function"``
string or a callable); put the calls in a module named in ``$STUDY_PLUGINS`` so that the
command line and every notebook kernel import it (see
``tests/fixtures/plugins/study_example_plugin.py``).

How the later parts plug in: the probe's rewards are ``SCORERS``
names (any scorer, published or stand-in, is a reward); ReCap's alignment maps act
on the ``encode_image``/``encode_text`` outputs of dual-encoder scorers; caption
metrics (BLEU…CIDEr via pycocoevalcap, CLIP-S, aCLIP-S) will get a ``METRICS``
registry of ``compute_score(gts, res) -> (corpus, per_item)`` builders, and each new
chapter a ``NOTEBOOKS`` entry whose experiment returns :mod:`analysis.results` rows.

Parameter variants are pages (DESIGN.md §7): one template, several parameter sets. A
``NOTEBOOKS`` entry is one page of the book (``book/generated/<name>``); its ``meta["template"]``
may be shared with other entries, and its ``meta["parameters"]`` fixes some of the template's
parameters for this page (:func:`notebook_variants` makes such a set, one entry per variant,
in order). :mod:`analysis.parameters` overlays the fixed values on the template's declared
defaults, so the page's defaults publish ``book/generated/<name>.ipynb`` and any override is a
run under ``book/generated/runs/``.

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


class DuplicateNameError(ValueError):
    """A name registered twice without ``replace=True``."""


@dataclass(frozen=True)
class Entry:
    """A registry entry: ``target`` is ``"module:function"`` (or the callable itself, for entries
    registered at run time); ``meta`` is shown by ``list``. A prefix entry's ``meta["form"]`` shows
    how its names are written, e.g. ``"clip:<arch>/<tag or path>"``."""

    name: str
    target: Any
    summary: str
    meta: dict = field(default_factory=dict)

    @property
    def prefix(self) -> bool:
        return self.name.endswith(":")

    @property
    def form(self) -> str:
        """How a name of this entry is written: the name, or a prefix entry's ``form``."""
        return self.meta.get("form") or (self.name + "<argument>" if self.prefix else self.name)

    def load(self):
        return self.target if callable(self.target) else resolve(self.target)


def resolve(target: str):
    """The object a ``"module:function"`` string names (imported on first use)."""
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


class Registry:
    """Names in, objects out, for one kind of thing."""

    def __init__(self, kind: str, entries: list[Entry]):
        self.kind = kind
        self._entries = {}
        for e in entries:
            self._add(e, replace=False)

    def _add(self, e: Entry, *, replace: bool) -> Entry:
        if e.name in self._entries and not replace:
            old = self._entries[e.name].target
            raise DuplicateNameError(
                f"{self.kind} {e.name!r} is already registered (-> {getattr(old, '__qualname__', old)}); "
                f"pass replace=True to replace it, or choose another name")
        self._entries[e.name] = e
        return e

    def add(self, *entries: Entry, replace: bool = False) -> list[Entry]:
        """Add ready-made entries in order (e.g. ``NOTEBOOKS.add(*notebook_variants(...))`` in a plugin);
        a name that exists raises :class:`DuplicateNameError` unless ``replace=True``."""
        return [self._add(e, replace=replace) for e in entries]

    def register(self, name: str, target, summary: str = "", *, replace: bool = False, **meta) -> Entry:
        """Add ``name`` -> ``target`` (a ``"module:function"`` string or a callable) from any module.

        ``meta`` is shown by ``python -m analysis list`` (e.g. ``family="dual", source="local"``; prefix
        names end in ``:`` and take ``form="myclip:<folder>"``). A name that exists raises
        :class:`DuplicateNameError` unless ``replace=True``. Put the calls in a module named in
        ``$STUDY_PLUGINS`` so that the command line and every notebook kernel see them.
        """
        if not isinstance(name, str) or not name.strip(":") or name != name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string without surrounding spaces, not {name!r}")
        if isinstance(target, str):
            if target.count(":") != 1 or not all(target.split(":")):
                raise ValueError(f"{self.kind} {name!r}: target {target!r} must be 'module:function' or a callable")
        elif not callable(target):
            raise TypeError(f"{self.kind} {name!r}: target must be 'module:function' or a callable, "
                            f"not {type(target).__name__}")
        return self._add(Entry(name, target, summary or getattr(target, "__doc__", None) or "", dict(meta)),
                         replace=replace)

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
        if not isinstance(name, str):
            raise UnknownNameError(f"{self.kind} names are strings, not {type(name).__name__} {name!r}; "
                                   f"valid names: {', '.join(e.form for e in self._entries.values())}.")
        if name in self._entries and not name.endswith(":"):
            return self._entries[name]
        for e in self._entries.values():
            if e.prefix and name.startswith(e.name) and len(name) > len(e.name):
                return e
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        shown = ", ".join(e.form for e in self._entries.values())
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {shown}.{hint}")

    def get(self, name: str, **kwargs) -> Any:
        """Build the object ``name`` names (prefix entries get the text after the prefix)."""
        e = self.entry(name)
        fn = e.load()
        return fn(name[len(e.name):], **kwargs) if e.prefix else fn(**kwargs)

    def table(self):
        import pandas as pd

        df = pd.DataFrame([{"name": e.name, "summary": e.summary, **{k: _shown(v) for k, v in e.meta.items()}}
                           for e in self._entries.values()])
        return df.astype(object).where(df.notna(), "")


def _shown(value):
    """A meta value as ``list`` shows it: a dict (a variant's fixed parameters) as ``key=value, ...``.

    >>> _shown({"reward": "mix:clip-mini", "lam": 0.5})
    'reward=mix:clip-mini, lam=0.5'
    """
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return value


def notebook_variants(base: str, template: str, target: str, part: str, variants: dict[str, dict],
                      summary: str, **meta) -> list[Entry]:
    """One notebook entry (one page of the book) per parameter set of one template, in the order given.

    Variant ``suffix -> params`` becomes the entry ``f"{base}-{suffix}"`` with meta ``{"template": template,
    "part": part, "parameters": params, "variant_of": base}`` and the summary ``summary.format(**params)``.
    Further ``meta`` (e.g. ``jobs``) goes into every variant's meta.
    The template's parameters are declared once, under ``base`` (:func:`analysis.parameters.declare`);
    a variant's fixed values are checked against that declaration when the page is first used.

    >>> [e.name for e in notebook_variants("probe", "t.ipynb", "m:f", "P", {"a": {"reward": "x"},
    ...                                    "b": {"reward": "y"}}, "reward {reward}")]
    ['probe-a', 'probe-b']
    >>> notebook_variants("probe", "t.ipynb", "m:f", "P", {"a": {"reward": "x"}}, "reward {reward}")[0].meta
    {'template': 't.ipynb', 'part': 'P', 'parameters': {'reward': 'x'}, 'variant_of': 'probe'}
    """
    if not variants:
        raise ValueError(f"notebook variants of {base!r}: give at least one suffix -> parameters")
    entries = []
    for suffix, params in variants.items():
        name = f"{base}-{suffix}"
        if not isinstance(suffix, str) or not suffix or not all(c.isalnum() or c in "-_." for c in suffix):
            raise ValueError(f"notebook variant {name!r}: the suffix {suffix!r} must be a non-empty word of letters, "
                             f"digits, '-', '_' or '.' (it is the page's file name)")
        if not isinstance(params, dict) or not params or not all(isinstance(k, str) for k in params):
            raise ValueError(f"notebook variant {name!r}: parameters must be a non-empty dict of parameter name -> "
                             f"value, not {params!r}")
        try:
            text = summary.format(**params)
        except (KeyError, IndexError) as e:
            raise ValueError(f"notebook variant {name!r}: the summary {summary!r} names {e}, which is not one of "
                             f"its parameters ({', '.join(params)})") from None
        entries.append(Entry(name, target, text, {"template": template, "part": part, "parameters": dict(params),
                                                  "variant_of": base, **meta}))
    return entries


# --------------------------------------------------------------------------- datasets
DATASETS = Registry("dataset", [
    # meta: eval_split = the items a chapter scores ("test" split or "all" items); heldout = what those items are
    Entry("tuxpaint-stamps", "analysis.data.tuxpaint:load",
          "Tux Paint stamps: 538 real cut-out images with one human-written English description each",
          {"source": "embedded", "licence": "GPL-2.0", "origin": "Debian tuxpaint-stamps-default",
           "eval_split": "test", "heldout": "held-out stamps, no caption shared with training"}),
    Entry("gcompris-explore", "analysis.data.gcompris:load_explore",
          "GCompris 'explore' photos (monuments, animals, music) with a title and a descriptive paragraph",
          {"source": "embedded", "licence": "GPL-3.0 app; photos mostly PD/CC0", "origin": "Debian gcompris-qt-data",
           "eval_split": "all", "heldout": "never used in training"}),
    Entry("gcompris-categories", "analysis.data.gcompris:load_categories",
          "GCompris categorisation photos with a category label (caption derived from the file name)",
          {"source": "embedded", "licence": "GPL-3.0 app; photos mostly PD/CC0", "origin": "Debian gcompris-qt-data",
           "eval_split": "all", "heldout": "never used in training"}),
    Entry("stamp-scenes", "analysis.data.scenes:load",
          "Composited scenes of 1-4 Tux Paint cut-outs (train-split stamps) with a known scene graph and generated "
          "references; split by object set",
          {"source": "embedded", "licence": "GPL-2.0 (derived from the stamps)", "origin": "made here from tuxpaint-stamps",
           "eval_split": "test", "heldout": "seen stamps, new combinations"}),
    Entry("stamp-scenes-unseen", "analysis.data.scenes:load_unseen",
          "Composited scenes like stamp-scenes, made only from held-out (test-split) Tux Paint stamps; all items test",
          {"source": "embedded", "licence": "GPL-2.0 (derived from the stamps)", "origin": "made here from tuxpaint-stamps",
           "eval_split": "test", "heldout": "unseen stamps"}),
    Entry("stamp-scenes-scst", "analysis.data.scenes:load_scst",
          "Fresh composited scenes of train-split stamps (another render seed), object sets on the train side of "
          "stamp-scenes only; no scorer or captioner trained on them; the probe's SCST images",
          {"source": "embedded", "licence": "GPL-2.0 (derived from the stamps)", "origin": "made here from tuxpaint-stamps",
           "eval_split": "none", "heldout": "training images only (all train)"}),
    Entry("sample-photos", "analysis.data.samples:load",
          "14 photos shipped in scikit-image / scikit-learn / matplotlib wheels; captions written for this study",
          {"source": "embedded", "licence": "see each image (BSD/PD)", "origin": "pip wheels",
           "eval_split": "all", "heldout": "never used in training"}),
    Entry("coco-karpathy", "analysis.data.karpathy:load_coco",
          "MS-COCO with the Karpathy split (dataset_coco.json + train2014/val2014 images)",
          {"source": "real", "licence": "CC-BY 4.0 annotations", "origin": "user-supplied",
           "eval_split": "test", "heldout": "Karpathy test split"}),
    Entry("flickr8k-karpathy", "analysis.data.karpathy:load_flickr8k",
          "Flickr8k with the Karpathy split (dataset_flickr8k.json + Flicker8k_Dataset/)",
          {"source": "real", "licence": "research only", "origin": "user-supplied",
           "eval_split": "test", "heldout": "Karpathy test split"}),
    Entry("flickr30k-karpathy", "analysis.data.karpathy:load_flickr30k",
          "Flickr30k with the Karpathy split (dataset_flickr30k.json + flickr30k-images/)",
          {"source": "real", "licence": "research only", "origin": "user-supplied",
           "eval_split": "test", "heldout": "Karpathy test split"}),
    Entry("flickr8k-expert", "analysis.data.judgements:load_flickr8k_expert",
          "Flickr8k-Expert: expert 1-4 ratings of image-caption pairs (ExpertAnnotations.txt)",
          {"source": "real", "licence": "research only", "origin": "user-supplied",
           "eval_split": "all", "heldout": "never used in training"}),
    Entry("flickr8k-cf", "analysis.data.judgements:load_flickr8k_cf",
          "Flickr8k-CrowdFlower: binary crowd judgements (CrowdFlowerAnnotations.txt)",
          {"source": "real", "licence": "research only", "origin": "user-supplied",
           "eval_split": "all", "heldout": "never used in training"}),
    Entry("thumb", "analysis.data.judgements:load_thumb",
          "THumB 1.0: rubric scores for COCO captions (mscoco_THumB-1.0.jsonl)",
          {"source": "real", "licence": "see THumB release", "origin": "user-supplied",
           "eval_split": "all", "heldout": "never used in training"}),
])

# --------------------------------------------------------------------------- scorers
SCORERS = Registry("scorer", [
    # the embedded stand-ins: "default" ones are trained like their published counterparts (zero-shot to
    # the caption perturbations); "+neg" ablations are trained on those perturbations (analysis.scorers.configs)
    Entry("clip-mini", "analysis.scorers.standins:clip_mini",
          "clip-mini (CLIP-style stand-in): locked EfficientNet-Lite0 + locked MiniLM, LiT projections, InfoNCE",
          {"family": "dual", "source": "embedded", "default": True, "trained_on_perturbations": False}),
    Entry("uniter-mini", "analysis.scorers.standins:uniter_mini",
          "uniter-mini (UNITER-style stand-in): one transformer over text + visual grid tokens, ITM on random "
          "negatives", {"family": "single-stream", "source": "embedded", "default": True,
                        "trained_on_perturbations": False}),
    Entry("lxmert-mini", "analysis.scorers.standins:lxmert_mini",
          "lxmert-mini (LXMERT-style stand-in): text and visual streams joined by cross-attention, ITM on random "
          "negatives", {"family": "two-stream", "source": "embedded", "default": True,
                        "trained_on_perturbations": False}),
    Entry("blind", "analysis.scorers.blind:blind",
          "blind (text-only baseline: caption n-gram prior): never sees the image nor a perturbation",
          {"family": "text-only", "source": "embedded", "default": True, "trained_on_perturbations": False}),
    Entry("clip-mini+neg", "analysis.scorers.standins:clip_mini_neg",
          "clip-mini+neg (NegCLIP-style stand-in, trained on perturbation negatives): ablation of clip-mini",
          {"family": "dual", "source": "embedded", "default": False, "trained_on_perturbations": True}),
    Entry("uniter-mini+neg", "analysis.scorers.standins:uniter_mini_neg",
          "uniter-mini+neg (UNITER-style stand-in, trained on perturbation negatives): ablation of uniter-mini",
          {"family": "single-stream", "source": "embedded", "default": False, "trained_on_perturbations": True}),
    Entry("lxmert-mini+neg", "analysis.scorers.standins:lxmert_mini_neg",
          "lxmert-mini+neg (LXMERT-style stand-in, trained on perturbation negatives): ablation of lxmert-mini",
          {"family": "two-stream", "source": "embedded", "default": False, "trained_on_perturbations": True}),
    Entry("blind+neg", "analysis.scorers.standins:blind_neg",
          "blind+neg (text-only baseline: caption classifier, trained on perturbation negatives)",
          {"family": "text-only", "source": "embedded", "default": False, "trained_on_perturbations": True}),
    Entry("clip:", "analysis.scorers.clip:load",
          "open_clip model: clip:<arch>/<pretrained tag or local checkpoint path>",
          {"family": "dual", "source": "published", "form": "clip:<arch>/<tag or path>"}),
    Entry("vilt:", "analysis.scorers.single_stream:load",
          "ViLT image-text retrieval head (UNITER-style single stream): vilt:<local folder or hub id>",
          {"family": "single-stream", "source": "published", "form": "vilt:<folder>"}),
    Entry("lxmert:", "analysis.scorers.two_stream:load_lxmert",
          "LXMERT pre-training matching head over grid features: lxmert:<local folder or hub id>",
          {"family": "two-stream", "source": "published", "form": "lxmert:<folder>"}),
    Entry("blip-itm:", "analysis.scorers.two_stream:load_blip",
          "BLIP image-text matching head (fusion encoder): blip-itm:<local folder or hub id>",
          {"family": "two-stream", "source": "published", "form": "blip-itm:<folder>"}),
])

# --------------------------------------------------------------------------- caption metrics
METRICS = Registry("metric", [
    Entry("bleu-1", "analysis.metrics:bleu_1", "BLEU-1 (pycocoevalcap, PTB tokenizer; needs Java)",
          {"source": "pycocoevalcap", "images": False}),
    Entry("bleu-2", "analysis.metrics:bleu_2", "BLEU-2 (pycocoevalcap, PTB tokenizer; needs Java)",
          {"source": "pycocoevalcap", "images": False}),
    Entry("bleu-3", "analysis.metrics:bleu_3", "BLEU-3 (pycocoevalcap, PTB tokenizer; needs Java)",
          {"source": "pycocoevalcap", "images": False}),
    Entry("bleu-4", "analysis.metrics:bleu_4", "BLEU-4 (pycocoevalcap, PTB tokenizer; needs Java)",
          {"source": "pycocoevalcap", "images": False}),
    Entry("meteor", "analysis.metrics:meteor", "METEOR 1.5 (pycocoevalcap jar; one JVM per call; needs Java)",
          {"source": "pycocoevalcap", "images": False}),
    Entry("rouge-l", "analysis.metrics:rouge_l", "ROUGE-L (pycocoevalcap, PTB tokenizer; needs Java)",
          {"source": "pycocoevalcap", "images": False}),
    Entry("cider-d", "analysis.metrics:cider_d", "CIDEr-D (pycocoevalcap Cider, PTB tokenizer; needs Java)",
          {"source": "pycocoevalcap", "images": False}),
    Entry("cider-d-fast", "analysis.metrics:cider_d_fast",
          "CIDEr-D in numpy (analysis.cider; same numbers as cider-d; document frequencies precomputable for rewards)",
          {"source": "analysis.cider", "images": False}),
    Entry("sg-f1", "analysis.metrics:sg_f1",
          "sg-f1 (SPICE-style stand-in): tuple F1 against the known scene graph of a stamp scene (SPICE needs a download)",
          {"source": "analysis.scene_parse", "images": False, "graphs": True}),
    Entry("clip-s:", "analysis.metrics:clip_score",
          "CLIP-S as in the clipscore code (w = 2.5, prefix 'A photo depicts ') over a dual-encoder scorer",
          {"source": "clipscore definition", "images": True, "form": "clip-s:<dual-encoder scorer name>"}),
    Entry("refclip-s:", "analysis.metrics:ref_clip_score",
          "RefCLIP-S: harmonic mean of CLIP-S and the best reference cosine, over a dual-encoder scorer",
          {"source": "clipscore definition", "images": True, "form": "refclip-s:<dual-encoder scorer name>"}),
    Entry("aclip-s:", "analysis.metrics:aligned_clip_score",
          "aCLIP-S (ReCap, the study's reading): CLIP-S with the image embedding replaced by the aligned one; "
          "map fitted on the scorer's training pairs (setting='in-domain', COCO for published weights) or the "
          "GCompris photos (setting='transfer'), never on the evaluated pairs",
          {"source": "ReCap aligned CLIP-S (this study's reading)", "images": True,
           "form": "aclip-s:<dual-encoder scorer name>", "kwargs": "setting, method, standardize"}),
    Entry("refaclip-s:", "analysis.metrics:ref_aligned_clip_score",
          "RefaCLIP-S: RefCLIP-S with aCLIP-S in place of CLIP-S (map as aclip-s:)",
          {"source": "ReCap aligned CLIP-S (this study's reading)", "images": True,
           "form": "refaclip-s:<dual-encoder scorer name>", "kwargs": "setting, method, standardize"}),
    Entry("score:", "analysis.metrics:scorer_score", "any scorer as a metric: the mean of its per-pair scores",
          {"source": "the scorer", "images": True, "form": "score:<scorer name>"}),
])

# --------------------------------------------------------------------------- notebooks
NOTEBOOKS = Registry("notebook", [
    # The landing page comes first in the book but runs last (meta "runs_last": it reads the findings pages' tables)
    Entry("findings", "analysis.landing:run_landing",
          "Findings: each finding of both papers with its computed verdict, effect size, interval and page",
          {"template": "book/notebooks/findings.ipynb", "part": "Findings", "runs_last": True}),
    Entry("data", "analysis.datacards:run_datacards",
          "Data and models: a card per embedded dataset (source, licence, counts, lengths, examples)",
          {"template": "book/notebooks/data.ipynb", "part": "Data and models"}),
    Entry("scorers", "analysis.scorer_eval:run_scorer_eval",
          "Scorers: retrieval R@k vs chance and the text-only baseline, perturbation accuracy, modality gap",
          {"template": "book/notebooks/scorers.ipynb", "part": "Data and models"}),
    Entry("measures", "analysis.measures:run_measures",
          "Measures: a card per caption metric and linguistic measure, each checked on captions of known quality",
          {"template": "book/notebooks/measures.ipynb", "part": "Data and models"}),
    # The probe (Ma et al. 2022): one page per reward, all made from book/notebooks/probe.ipynb
    Entry("probe-method", "analysis.probe:run_method",
          "The probe, method: the XE captioner, SCST, the rewards and systems, what is a stand-in",
          {"template": "book/notebooks/probe_method.ipynb", "part": "The probe"}),
    *notebook_variants(
        "probe", "book/notebooks/probe.ipynb", "analysis.probe:run_reward_page", "The probe",
        {"cider-d": {"reward": "cider-d"}, "clip-mini": {"reward": "clip-mini"},
         "uniter-mini": {"reward": "uniter-mini"}, "lxmert-mini": {"reward": "lxmert-mini"},
         "blind": {"reward": "blind"}, "mix-clip-mini": {"reward": "mix:clip-mini"}},
        "The probe, reward {reward}: SCST from the XE captioner, caption quality, grounding and fluency",
        jobs="analysis.probe:reward_page_jobs"),
    Entry("probe-cross", "analysis.probe:run_cross",
          "The probe across rewards: every captioner scored by every scorer, examples, the human-evaluation sheet",
          {"template": "book/notebooks/probe_cross.ipynb", "part": "The probe", "jobs": "analysis.probe:all_systems_jobs"}),
    Entry("probe-decoding", "analysis.probe:run_decoding",
          "The probe without training: reward-guided decoding with an XE or SmolLM2 prior, prior weight swept",
          {"template": "book/notebooks/probe_decoding.ipynb", "part": "The probe"}),
    Entry("probe-findings", "analysis.probe:run_findings",
          "The probe, findings: F1-F3 as tests per scorer family with blind beside each, computed verdicts",
          {"template": "book/notebooks/probe_findings.ipynb", "part": "The probe",
           "jobs": "analysis.probe:all_systems_jobs"}),
    # Realignment (ReCap, Paischer et al.): the closed-form map, its speed, the captions and the aligned metrics
    Entry("realign-method", "analysis.realignment:run_diagnostics",
          "Realignment, method: closed-form maps of clip-mini's image side, modality gap and retrieval before/after, "
          "in-domain and transfer, the data-fraction sweep",
          {"template": "book/notebooks/realign_method.ipynb", "part": "Realignment"}),
    Entry("realign-speed", "analysis.mappers:run_speed_page",
          "Realignment, speed: the closed-form fit against gradient-trained linear and MLP mappers and the XE "
          "captioner, on the same pairs",
          {"template": "book/notebooks/realign_speed.ipynb", "part": "Realignment"}),
    Entry("realign-captions", "analysis.captioning.retrieval:run_captions",
          "Realignment, captions: retrieval-augmented captioning with the aligned map, against nearest-neighbour "
          "captions, unaligned retrieval and the probe's XE captioner",
          {"template": "book/notebooks/realign_captions.ipynb", "part": "Realignment"}),
    Entry("realign-metrics", "analysis.correlation:run_metrics_page",
          "Realignment, metrics: aCLIP-S and RefaCLIP-S against the other metrics on rule-made judgement sets "
          "(and the human sets for a user with the data), noise robustness",
          {"template": "book/notebooks/realign_metrics.ipynb", "part": "Realignment"}),
    Entry("realign-bridge", "analysis.bridge:run_bridge",
          "Realignment, bridge to the probe: SCST and reward-guided decoding with aCLIP-S against CLIP-S as the "
          "reward; does realignment change what the captioner learns to say?",
          {"template": "book/notebooks/realign_bridge.ipynb", "part": "Realignment"}),
    Entry("realign-findings", "analysis.realignment:run_findings",
          "Realignment, findings: a computed verdict for each ReCap claim tested here",
          {"template": "book/notebooks/realign_findings.ipynb", "part": "Realignment",
           "reads": ["realign-method", "realign-speed", "realign-captions", "realign-metrics", "realign-bridge"]}),
    Entry("reproducibility", "analysis.provenance:run_provenance",
          "Reproducibility: package versions, data package versions and hashes, seeds, cache entries",
          {"template": "book/notebooks/reproducibility.ipynb", "part": "Reproducibility", "reads": "all"}),
])


def get_dataset(name: str, **kwargs):
    """``get_dataset("stamp-scenes", split="test")`` -> :class:`analysis.data.base.Dataset`."""
    return DATASETS.get(name, **kwargs)


def get_metric(name: str, **kwargs):
    """``get_metric("cider-d")`` or ``get_metric("clip-s:clip-mini")`` -> :class:`analysis.metrics.Metric`."""
    return METRICS.get(name, **kwargs)


def build_scorer(name: str, *, device: str | None = None, **training):
    """A scorer by name, with ``training`` settings (``smoke``, ``seed``) passed only to embedded stand-ins,
    which train on first use; published and local weights take none. ``device`` (when given) goes to every
    scorer's builder; without it each builder uses :func:`analysis.runtime.device` (``$STUDY_DEVICE``, else
    CUDA when visible, else the CPU)."""
    kwargs = dict(training) if SCORERS.entry(name).meta.get("source") == "embedded" else {}
    if device is not None and _takes(SCORERS.entry(name).load(), "device"):
        kwargs["device"] = device  # a plugin's builder without a device argument is called as before
    return get_scorer(name, **kwargs)


def _takes(fn, arg: str) -> bool:
    """True when callable ``fn`` accepts keyword ``arg`` (by name or through ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == arg or p.kind is p.VAR_KEYWORD for p in params)


def build_metric(name: str, **training):
    """A metric by name, with ``training`` settings (``smoke``, ``seed``) passed on only when an embedded
    stand-in scorer backs it (``clip-s:clip-mini``, ``score:uniter-mini``); library metrics take none."""
    entry = METRICS.entry(name)
    if entry.prefix and SCORERS.entry(name[len(entry.name):]).meta.get("source") == "embedded":
        return get_metric(name, **training)
    return get_metric(name)


def get_scorer(name: str, **kwargs):
    """``get_scorer("clip-mini")`` or ``get_scorer("clip:ViT-B-32/openai")`` -> a scorer."""
    return SCORERS.get(name, **kwargs)


def default_scorers() -> list[str]:
    """The default scorers, in registry order: the stand-ins trained like their published
    counterparts and the zero-shot text-only baseline (meta ``default`` True)."""
    return [n for n in SCORERS.names() if not n.endswith(":") and SCORERS.entry(n).meta.get("default") is True]


def embedded_scorers() -> list[str]:
    """Every embedded (trained here) non-prefix scorer: the defaults and the ``+neg`` ablations."""
    return [n for n in SCORERS.names() if not n.endswith(":") and SCORERS.entry(n).meta.get("source") == "embedded"]


def notebook_template(name: str) -> Path:
    """Path of the template of notebook ``name`` (several variant pages may share one)."""
    return ROOT / NOTEBOOKS.entry(name).meta["template"]


def notebook_fixed(name: str) -> dict:
    """The parameter values page ``name`` fixes (``meta["parameters"]``; ``{}`` for a page that fixes none).

    Unchecked: :func:`analysis.parameters.fixed` checks them against the template's declaration."""
    return dict(NOTEBOOKS.entry(name).meta.get("parameters") or {})


def notebooks_by_template() -> dict[str, list[str]]:
    """``{template path: [page names]}`` in registry order: the pages each template makes."""
    out: dict[str, list[str]] = {}
    for name in NOTEBOOKS.names():
        out.setdefault(NOTEBOOKS.entry(name).meta["template"], []).append(name)
    return out
