"""The captioning probe (Ma et al. 2022): captioners trained to maximise each scorer, and what they write.

**Method.** One XE captioner (:mod:`analysis.captioning.xe`: a small transformer decoder over the locked
EfficientNet-Lite0 grid, trained here on the embedded training split) is fine-tuned by self-critical sequence
training (:mod:`analysis.captioning.scst`) once per **system** of :data:`SYSTEMS`: the reward is CIDEr-D (the
standard baseline), a scorer stand-in (``clip-mini``, ``uniter-mini`` with its ITM logit and, as a second
system, its probability σ(logit), ``lxmert-mini``), the text-only ``blind`` n-gram prior, or a mix
``λ·CIDEr-D + (1−λ)·clip-mini``. λ is not a free knob here: :func:`balanced_lam` sets it so both terms have
the same spread over the XE captioner's own samples on the SCST images. Every system starts from the same
XE weights; its SCST seeds (:attr:`System.seeds`) vary the sampling and batch order only. The XE captioner
itself (seed 0) and the held-out first reference of each image (``references``) are analysed beside them.

**SCST images.** SCST runs on ``stamp-scenes-scst`` (:func:`analysis.data.scenes.load_scst`): fresh scenes of
the training stamps whose object sets lie on the train side of the split, which neither the XE captioner nor
any stand-in scorer was trained on. On the XE training images themselves the captioner writes near-copies of
their references (training CIDEr-D about 6 against 1.0 held out) and the ``clip-mini`` reward did not rise on
held-out images; on fresh images it does (see the method page's data rows and the reward check).

**Test split.** The captions are the greedy decodes of the held-out test images (:func:`analysis.captioning.xe.
caption_data` ``"test"``: stamp scenes whose object sets never occur in training, and Tux Paint stamps whose
captions no training stamp shares). n-gram metrics score every system against the **same** references: a
stamp scene's references 2–5 (its first reference is the ``references`` system's caption, so the human line is
scored like a system) and a stamp's single human caption (no ``references`` n-gram line there).

**Per-caption measures** (:func:`measure_table`; one row per system, seed and image, the ``captions`` table of
:mod:`analysis.findings`): BLEU-4, METEOR, ROUGE-L, CIDEr-D (pycocoevalcap), ``sg-f1``, CLIP-S and RefCLIP-S
under ``clip-mini`` (CLIP-style stand-in); perplexity and SLOR under SmolLM2-135M (:mod:`analysis.fluency`);
whether the rule-based grammar detector flags the caption (:mod:`analysis.grammar`); visual words (count and
ratio, :func:`analysis.linguistics.visual_word_counts`); the POS template; grounding against the scene graph
(:func:`analysis.grounding.grounding_table`); and the cross-scoring columns ``score:<scorer>``: every caption
scored by every default scorer (``clip-mini``, ``uniter-mini``, ``lxmert-mini``: ITM logits; ``blind``).
Each measure table is cached by the content of its captions (:func:`analysis.cache.entry`).

**Findings** (:func:`run_findings`, :mod:`analysis.findings`): every test pools the two test datasets (the stamp
scenes carry the grounding tests; the stamps add captions to the fluency, grammar and pattern tests); F3's rank
correlation pools the captions of every system, so differences between systems contribute to it; the controlled
edits of the ``uniter-mini/probability`` system are scored with the ITM logit (σ is monotone, so the sign of an
edit's effect is the same, not its size). Before any verdict, :func:`analysis.findings.reward_check_rows` checks
that SCST raised each system's own score on the test captions: a system that did not is *not testable here*.

Everything here runs on **embedded stand-ins**: the captioner, ``clip-mini``, ``uniter-mini`` and
``lxmert-mini`` are trained here on the embedded data and are not CLIP, UNITER or LXMERT; ``blind`` is a
text-only n-gram prior; ``sg-f1`` is a SPICE-style stand-in; the grammar detector is rule-based.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

PROBE_VERSION = 2  # bump when a measure or the table layout changes: part of every cached measure table
RUN = "probe"
#: the images SCST trains on: fresh scenes no scorer or captioner saw (see the module docstring)
SCST_DATASETS = ("stamp-scenes-scst",)
#: the default scorers whose scores every caption gets (the cross-scoring matrix)
CROSS_SCORERS = ("clip-mini", "uniter-mini", "lxmert-mini", "blind")
#: the n-gram and image metrics of every caption (``METRICS`` names) and their column names
METRIC_COLUMNS = {"bleu-4": "bleu_4", "meteor": "meteor", "rouge-l": "rouge_l", "cider-d": "cider_d",
                  "sg-f1": "sg_f1", "clip-s:clip-mini": "clip_s", "refclip-s:clip-mini": "ref_clip_s"}
#: the metric columns that compare a caption with references (the ``references`` system has them for the stamp
#: scenes only: a stamp's single description is both its caption and its only reference)
REFERENCE_BASED = ("bleu_4", "meteor", "rouge_l", "cider_d", "ref_clip_s")
#: the smoke runs' metrics: no JVM (pycocoevalcap's PTB tokenizer and METEOR start one per call), CIDEr-D from the
#: study's own implementation (tested equal to pycocoevalcap's), so a smoke page runs in seconds
SMOKE_METRIC_COLUMNS = {"cider-d-fast": "cider_d", "sg-f1": "sg_f1", "clip-s:clip-mini": "clip_s",
                        "refclip-s:clip-mini": "ref_clip_s"}
BASELINES = ("xe", "cider-d")
PROPORTIONS = ("grammar_error",)  # 0/1 per caption: its mean is a share, shown with a Wilson interval too
SCENES_ONLY = " (stamp scenes)"  # suffix of a system's rows restricted to the stamp scenes

REFERENCES = "references"
MAX_LEN = 20  # greedy decoding length of the test captions (the SCST max_len)


def metric_columns(smoke: bool) -> dict[str, str]:
    """``{metric name: column}`` of the per-caption table: :data:`METRIC_COLUMNS`, or
    :data:`SMOKE_METRIC_COLUMNS` in smoke runs."""
    return dict(SMOKE_METRIC_COLUMNS if smoke else METRIC_COLUMNS)


@dataclass(frozen=True)
class System:
    """One SCST captioner of the probe: its ``reward`` (a :func:`analysis.captioning.rewards.make_reward` name),
    the ITM output used (``logit`` or ``probability``), the SCST ``seeds`` of a full run, its ``family`` and the
    probe page (``page``: the reward page that shows it)."""

    name: str
    reward: str
    family: str
    page: str
    itm_output: str = "logit"
    seeds: tuple[int, ...] = (0,)
    mix: str | None = None  # the scorer of a mix reward

    def seeds_for(self, smoke: bool) -> tuple[int, ...]:
        """The seeds of a run: all of :attr:`seeds`; in smoke runs the first two of the CIDEr-D baseline (so the
        seed-variance path runs) and the first of every other system."""
        return self.seeds[:2 if self.name == "cider-d" else 1] if smoke else self.seeds


#: the probe's systems, in the order of the book; ``page`` is the reward page of :data:`analysis.registry.NOTEBOOKS`
SYSTEMS = {s.name: s for s in (
    System("cider-d", "cider-d-fast", "baseline", "cider-d", seeds=(0, 1, 2)),
    System("clip-mini", "clip-mini", "dual encoder", "clip-mini", seeds=(0, 1, 2)),
    System("uniter-mini", "uniter-mini", "single-stream", "uniter-mini"),
    System("uniter-mini/probability", "uniter-mini", "single-stream", "uniter-mini", itm_output="probability"),
    System("lxmert-mini", "lxmert-mini", "two-stream", "lxmert-mini"),
    System("blind", "blind", "text-only", "blind"),
    System("mix:clip-mini", "mix:clip-mini", "mix", "mix:clip-mini", mix="clip-mini"),
)}
#: the reward pages (the ``reward`` parameter of the probe template) and the systems each shows
PAGES = {page: [s for s in SYSTEMS.values() if s.page == page] for page in dict.fromkeys(
    s.page for s in SYSTEMS.values())}
FAMILY_OF = {"xe": "baseline", REFERENCES: "references", **{s.name: s.family for s in SYSTEMS.values()}}


#: systems of other pages (the Realignment bridge, a published scorer's page) that the tables can name; they are
#: not part of the probe's own runs (:func:`all_systems`). :func:`register_system` adds one.
OTHER_SYSTEMS: dict[str, System] = {}


def register_system(system: System) -> System:
    """Make ``system`` known to the probe's tables (:func:`known_system`) without adding it to the probe's own
    runs; a name already used by a different system is an error."""
    have = SYSTEMS.get(system.name) or OTHER_SYSTEMS.get(system.name)
    if have is not None and have != system:
        raise ValueError(f"system {system.name!r} is already registered as {have}; choose another name")
    OTHER_SYSTEMS.setdefault(system.name, system)
    FAMILY_OF.setdefault(system.name, system.family)
    return have or system


def known_system(name: str) -> System | None:
    """The :data:`SYSTEMS` or :data:`OTHER_SYSTEMS` entry ``name`` (``None`` for ``xe`` / ``references``)."""
    return SYSTEMS.get(name) or OTHER_SYSTEMS.get(name)


def _system(name: str) -> System:
    s = known_system(name)
    if s is None:
        raise KeyError(f"unknown probe system {name!r}: the systems are {', '.join([*SYSTEMS, *OTHER_SYSTEMS])} "
                       "(analysis.probe.register_system adds one)")
    return s


def systems_of_page(reward: str) -> list[System]:
    """The systems shown on the reward page ``reward`` (``uniter-mini`` shows the logit and the probability
    reward); an unknown page names the valid ones."""
    if reward not in PAGES:
        raise ValueError(f"no probe page for reward {reward!r}; the probe's reward pages are {', '.join(PAGES)} "
                         f"(add a System to analysis.probe.SYSTEMS for another reward)")
    return PAGES[reward]


def label_of(system: str) -> str:
    """The system's name as the book writes it, with its stand-in wording."""
    from analysis.registry import SCORERS

    if system == REFERENCES:
        return "references (held-out first reference, human or template-written)"
    if system == "xe":
        return "XE captioner (cross-entropy only; trained here)"
    if system == "cider-d":
        return "SCST with CIDEr-D reward"
    s = known_system(system)
    base = (s.mix or s.reward) if s else system
    kind = {"clip-s": "CLIP-S", "aclip-s": "aCLIP-S"}.get(base.split(":", 1)[0]) if ":" in base else None
    try:
        words = SCORERS.entry(_scorer_base(base)).summary.split(":")[0]
    except Exception:
        words = base
    if kind:
        mapped = ", image side realigned by the in-domain Procrustes map" if kind == "aCLIP-S" else ""
        return f"SCST with {kind} reward ({words}{mapped})"
    if s and s.mix:
        return f"SCST with λ·CIDEr-D + (1−λ)·{words}"
    if s and s.itm_output == "probability":
        return f"SCST with {words} reward, σ(ITM logit)"
    return f"SCST with {words} reward"


def balanced_lam(cider: np.ndarray, score: np.ndarray) -> float:
    """λ of ``r = λ·CIDEr-D + (1−λ)·score`` that gives the two terms the same spread:
    ``λ·sd(CIDEr-D) = (1−λ)·sd(score)``, i.e. ``λ = sd(score) / (sd(score) + sd(CIDEr-D))``.

    >>> balanced_lam(np.array([0.0, 2.0]), np.array([0.0, 0.2]))  # sd 1 and 0.1
    0.0909...
    """
    a, b = float(np.std(cider)), float(np.std(score))
    if a + b == 0:
        raise ValueError("both reward terms are constant over the samples: no λ balances them")
    return b / (a + b)


# ----------------------------------------------------------------------------- the captioners
@dataclass
class Setup:
    """The probe's data and XE captioner: ``train`` / ``test`` / ``scst`` (the SCST images, :data:`SCST_DATASETS`)
    :class:`~analysis.captioning.xe.CaptionData`,
    the XE ``captioner`` with its ``vocab`` and checkpoint ``xe_folder``, the scene-object ``pool``."""

    train: object
    test: object
    scst: object
    captioner: object
    vocab: object
    xe_folder: Path
    pool: list[str]
    smoke: bool
    seed: int
    device: str = "cpu"
    memo: dict = field(default_factory=dict)


def setup(smoke: bool = False, seed: int = 0, device: str | None = None) -> Setup:
    """Load (or train, on a cache miss) everything the probe needs; the XE captioner's seed is ``seed``. ``device``
    defaults to :func:`analysis.runtime.device` (``$STUDY_DEVICE``, else CUDA when visible, else CPU)."""
    from analysis.runtime import device as default_device

    return _setup(bool(smoke), int(seed), device or default_device())


@lru_cache(maxsize=4)
def _setup(smoke: bool, seed: int, device: str) -> Setup:
    from analysis.captioning import xe

    train = xe.caption_data("train", smoke=smoke, seed=seed)
    test = xe.caption_data("test", smoke=smoke, seed=seed)
    fresh = xe.caption_data("train", smoke=smoke, seed=seed, datasets=SCST_DATASETS)
    model, vocab, folder = xe.train_xe(train, smoke=smoke, seed=seed, device=device)
    return Setup(train, test, fresh, model, vocab, Path(folder), xe.scene_pool(test), smoke, seed, device)


def mix_lam(s: Setup, scorer: str, *, n_images: int = 64, k: int = 5) -> float:
    """:func:`balanced_lam` over ``k`` samples of the XE captioner on the first ``n_images`` SCST images
    (seeded by the setup's seed), CIDEr-D against their references."""
    import torch

    from analysis.captioning import rewards
    from analysis.captioning.scst import features_of

    key = ("lam", scorer)
    if key not in s.memo:
        n = min(n_images, len(s.scst))
        idx = np.arange(n)
        g = torch.Generator().manual_seed(s.seed)
        with torch.no_grad():
            ids, _, _ = s.captioner.sample(features_of(s.scst)[:n], k, MAX_LEN, generator=g)
        caps = [s.vocab.decode(r) for r in ids.tolist()]
        rows = np.repeat(idx, k)
        cider = rewards.make_reward("cider-d-fast", data=s.scst)(rows, caps)
        score = rewards.make_reward(scorer, data=s.scst, smoke=s.smoke, seed=s.seed, device=s.device,
                                    scorers=_built(s, scorer))(rows, caps)
        s.memo[key] = round(balanced_lam(cider, score), 4)
    return s.memo[key]


def reward_of(s: Setup, system: System):
    """The training reward of ``system`` over the SCST images."""
    from analysis.captioning import rewards

    lam = mix_lam(s, system.mix) if system.mix else None
    return rewards.make_reward(system.reward, data=s.scst, lam=lam, itm_output=system.itm_output,
                               smoke=s.smoke, seed=s.seed, device=s.device,
                               scorers=_built(s, system.mix or system.reward))


def _scorer_base(reward: str) -> str:
    """The scorer behind a reward name: ``score:<x>``, ``clip-s:<x>`` and ``aclip-s:<x>`` -> ``x``; any other name
    as it is.

    >>> _scorer_base("clip-s:clip-mini"), _scorer_base("aclip-s:clip-mini"), _scorer_base("uniter-mini")
    ('clip-mini', 'clip-mini', 'uniter-mini')
    """
    return reward.split(":", 1)[1] if reward.startswith(("score:", "clip-s:", "aclip-s:")) else reward


def _built(s: Setup, name: str) -> dict:
    """``{name: scorer}`` when ``name`` is a scorer (built once per setup, :func:`scorer_of`), else ``{}``."""
    from analysis.registry import SCORERS

    base = _scorer_base(name)
    try:
        SCORERS.entry(base)
    except Exception:
        return {}
    return {base: scorer_of(s, base)}


def train_system(s: Setup, system: System, seed: int, *, progress: bool = True):
    """SCST of the XE captioner with ``system``'s reward and SCST seed ``seed`` (cached by recipe):
    ``(captioner, log)`` (:func:`analysis.captioning.scst.train_scst`)."""
    from analysis.captioning import scst

    key = ("scst", system.name, seed)
    if key not in s.memo:
        s.memo[key] = scst.train_scst(s.captioner, s.vocab, s.scst, reward_of(s, system), seed=seed,
                                      device=s.device, smoke=s.smoke, progress=progress,
                                      **scst.config_for(s.smoke))
    return s.memo[key]


def greedy_captions(captioner, data) -> list[str]:
    """Greedy captions of every image of ``data`` (at most :data:`MAX_LEN` words)."""
    from analysis.captioning.scst import features_of

    return list(captioner.greedy(features_of(data), MAX_LEN))


def system_captions(s: Setup, system: str, seed: int = 0) -> list[str]:
    """The test captions of ``system`` (``"xe"``, ``"references"`` or a :data:`SYSTEMS` name) and SCST seed."""
    key = ("captions", system, seed)
    if key not in s.memo:
        if system == REFERENCES:
            caps = [r[0] for r in s.test.refs]
        elif system == "xe":
            caps = greedy_captions(s.captioner, s.test)
        else:
            caps = greedy_captions(train_system(s, _system(system), seed)[0], s.test)
        s.memo[key] = caps
    return s.memo[key]


def eval_refs(test) -> list[list[str]]:
    """The references every system is scored against: references 2.. of an image with several (the first is
    the ``references`` system's caption), the single reference otherwise."""
    return [list(r[1:]) if len(r) > 1 else list(r) for r in test.refs]


def runs(systems: Sequence[str], smoke: bool) -> list[tuple[str, int]]:
    """``[(system, seed), ...]``: ``references`` and ``xe`` with seed 0, every SCST system with its seeds."""
    out = []
    for name in systems:
        out += [(name, 0)] if name in (REFERENCES, "xe") else [(name, sd) for sd in _system(name).seeds_for(smoke)]
    return out


# ----------------------------------------------------------------------------- measures
@lru_cache(maxsize=1)
def _training_references() -> tuple[str, ...]:
    """:func:`analysis.measures.training_references`, read once per process (the SLOR corpus, the visual
    vocabulary's captions and part of every measure table's key)."""
    from analysis.measures import training_references

    return tuple(training_references())


@lru_cache(maxsize=1)
def _unigram():
    from analysis import fluency

    return fluency.unigram_logprobs(list(_training_references()))


@lru_cache(maxsize=2)
def _visual_vocabulary(pool: tuple[str, ...]):
    from analysis import linguistics

    return linguistics.visual_vocabulary_cached(list(pool), list(_training_references()))


def _metric_values(name: str, captions: list[str], refs: list[list[str]], images, graphs, keep: np.ndarray,
                   *, smoke: bool, seed: int, memo: dict) -> np.ndarray:
    """Per-caption values of metric ``name`` (NaN for empty captions, or all NaN when it is unavailable)."""
    from analysis import registry
    from analysis.measures import score_conditions
    from analysis.metrics import MetricUnavailable

    out = np.full(len(captions), np.nan)
    if name == "sg-f1":  # scene-graph F1 needs the graph: NaN for a stamp (no graph)
        keep = keep & np.array([g is not None for g in graphs])
    idx = np.flatnonzero(keep)
    if not len(idx):
        return out
    try:
        metric = memo[("metric", name)] if ("metric", name) in memo else registry.build_metric(name, smoke=smoke,
                                                                                                  seed=seed)
        memo[("metric", name)] = metric
        if images is not None and hasattr(metric, "_image_embeddings"):
            _seed_image_embeddings(metric, images, memo)
        per = score_conditions(metric, {"c": [captions[i] for i in idx]}, [refs[i] for i in idx],
                               images=[images[i] for i in idx] if images is not None else None,
                               graphs=[graphs[i] for i in idx])["c"]
    except MetricUnavailable:
        return out
    out[idx] = per
    return out


def _seed_image_embeddings(metric, images: list, memo: dict) -> None:
    """Give a CLIP-S / RefCLIP-S metric the image embeddings of all ``images`` (the test images) from the cache,
    keyed by its scorer's weights and the images' pixels, so a new kernel does not re-encode them (about 15 s
    per page on 2 cores). The metric object keeps them for later calls."""
    from analysis import cache

    key = ("image-embeddings", metric.name)
    if key in memo:
        return
    model = metric.model
    pixels = hashlib.sha256()
    for im in images:
        pixels.update(f"{im.mode}{im.size}".encode())
        pixels.update(im.tobytes())
    info = model.info()
    emb = cache.cached_array("probe-image-embeddings", {
        "scorer": model.name, "weights": info.get("checkpoint_hash") or info.get("pretrained"),
        "images": pixels.hexdigest(), "n": len(images)}, lambda: np.asarray(model.encode_image(images)))
    store = metric.__dict__.setdefault("_image_cache", {})
    for im, e in zip(images, emb):
        store.setdefault(id(im), (im, e))
    memo[key] = True


def measure_rows(s: Setup, system: str, seed: int, captions: Sequence[str], *, metrics: Sequence[str] | None = None,
                 progress: bool = False) -> pd.DataFrame:
    """The per-caption measures (module docstring) of ``captions`` (one per test image), uncached."""
    from analysis import linguistics

    captions = list(captions)
    test = s.test
    if len(captions) != len(test):
        raise ValueError(f"{len(captions)} captions for {len(test)} test images")
    keep = np.array([bool(c.split()) for c in captions])
    refs = eval_refs(test)
    df = pd.DataFrame({"run": RUN, "system": system, "family": FAMILY_OF.get(system, "other"), "seed": int(seed),
                       "smoke": bool(s.smoke), "image": test.ids, "dataset": test.dataset, "caption": captions})
    images = [_image(p) for p in test.paths]
    columns = metric_columns(s.smoke)
    for name in (metrics if metrics is not None else columns):
        col = columns.get(name, METRIC_COLUMNS.get(name, name))
        vals = _metric_values(name, captions, refs, images, test.graphs, keep, smoke=s.smoke, seed=s.seed,
                              memo=s.memo)
        if system == REFERENCES and col in REFERENCE_BASED:  # a stamp's one reference is the caption itself
            vals = np.where([len(r) > 1 for r in test.refs], vals, np.nan)
        df[col] = vals
    text, g = _text_measures(s, captions, test.graphs, progress=progress)
    for col in ("perplexity", "slor", "grammar_error"):
        df[col] = text[col].to_numpy()
    df["template"] = ""
    idx = np.flatnonzero(keep)
    if len(idx):
        df.loc[idx, "template"] = linguistics.per_caption([captions[i] for i in idx])["template"].to_numpy()
    df["visual_words"] = text["visual_words"].to_numpy()
    df["visual_ratio"] = text["visual_ratio"].to_numpy()
    df["length"] = [float(len(c.split())) for c in captions]
    for col in ("object_precision", "object_recall", "count_correct", "relation_correct", "size_correct",
                "chair_hallucinated", "chair_mentions", "counts_stated", "counts_correct", "relations_stated",
                "relations_correct", "sizes_stated", "sizes_correct", "n_mentioned", "n_true_mentioned",
                "n_objects", "n_recalled"):
        df[col] = g[col].astype(float).to_numpy()
    df.loc[~g["has_graph"].to_numpy(bool), ["chair_hallucinated", "chair_mentions"]] = np.nan
    for scorer in CROSS_SCORERS:
        r = test_reward(s, scorer).clear_text_cache()  # the table must not depend on what was scored before
        df[f"score:{scorer}"] = np.where(keep, r(np.arange(len(captions)), captions), np.nan)
    return df


@lru_cache(maxsize=512)
def _image(path):
    from analysis.data.base import open_rgb

    return open_rgb(path)  # as Item.image(): transparency on white, as every scorer and metric sees it


def measure_table(s: Setup, system: str, seed: int = 0, *, progress: bool = False) -> pd.DataFrame:
    """:func:`measure_rows` of ``system``'s test captions, cached under a key of the captions, the test data,
    the scorers' and XE checkpoints and :data:`PROBE_VERSION` (a Parquet file in the cache entry)."""
    from analysis import cache

    caps = system_captions(s, system, seed)
    recipe = {"what": "probe measures", "version": PROBE_VERSION, "system": system, "seed": int(seed),
              "smoke": bool(s.smoke), "setup_seed": s.seed, "captions": hashlib.sha256(
                  json.dumps(caps).encode()).hexdigest(), "test": s.test.features_key, "ids": s.test.ids,
              "refs": hashlib.sha256(json.dumps(s.test.refs).encode()).hexdigest(),
              "scorers": _scorer_hashes(s), "metrics": list(metric_columns(s.smoke)), "measures": measure_inputs(s)}

    def build(folder: Path) -> None:
        measure_rows(s, system, seed, caps, progress=progress).to_parquet(folder / "measures.parquet", index=False)

    folder = cache.entry("probe-measures", recipe, build)
    return pd.read_parquet(folder / "measures.parquet")


def scorer_of(s: Setup, name: str):
    """The scorer ``name`` (embedded stand-ins with the setup's smoke flag and seed) on the setup's device, built once
    per setup."""
    from analysis.registry import build_scorer

    key = ("scorer", name)
    if key not in s.memo:
        s.memo[key] = build_scorer(name, smoke=s.smoke, seed=s.seed, device=s.device)
    return s.memo[key]


def test_reward(s: Setup, name: str, itm_output: str = "logit"):
    """The scorer ``name`` (or any scorer-based reward name, e.g. ``aclip-s:clip-mini``) as a reward over the test
    images (image side computed once per setup)."""
    from analysis.captioning import rewards
    from analysis.registry import SCORERS, UnknownNameError

    key = ("test-reward", name, itm_output)
    if key not in s.memo:
        try:
            SCORERS.entry(name)
            is_scorer = True
        except UnknownNameError:
            is_scorer = False
        s.memo[key] = (rewards.scorer_reward(scorer_of(s, name), data=s.test, itm_output=itm_output,
                                             device=s.device, name=name) if is_scorer
                       else rewards.make_reward(name, data=s.test, itm_output=itm_output, smoke=s.smoke, seed=s.seed,
                                                device=s.device, scorers=_built(s, name)))
    return s.memo[key]


#: the modules whose code decides a measure table's values (their source hashes are part of its cache key)
MEASURE_MODULES = ("analysis.fluency", "analysis.grammar", "analysis.linguistics",
                   "analysis.grounding", "analysis.scene_parse", "analysis.wordnet", "analysis.metrics",
                   "analysis.cider", "analysis.captioning.rewards")


def measure_inputs(s: Setup) -> dict:
    """Everything besides the captions, data and scorers that a measure table depends on: the source hashes of
    :data:`MEASURE_MODULES` and of this module's measure functions, the fluency LM's provenance, the spaCy and NLTK versions, and hashes of the SLOR
    unigram corpus / visual-vocabulary captions (the training references) and of the object pool."""
    import importlib
    import importlib.metadata as md
    import inspect

    from analysis import cache, fluency

    key = ("measure-inputs",)
    if key not in s.memo:
        code = {m: cache.source_hash(importlib.import_module(m)) for m in MEASURE_MODULES}
        code["analysis.probe (measure functions)"] = hashlib.sha256("".join(inspect.getsource(f) for f in (
            measure_rows, _text_measures, _metric_values, _seed_image_embeddings, eval_refs, metric_columns,
            _image)).encode()).hexdigest()
        code["columns"] = [METRIC_COLUMNS, SMOKE_METRIC_COLUMNS, REFERENCE_BASED]
        versions = {}
        for d in ("spacy", "nltk", "en_core_web_sm", "pycocoevalcap"):
            try:
                versions[d] = md.version(d)
            except md.PackageNotFoundError:
                pass
        s.memo[key] = {"code": code, "lm": fluency.lm_info(), "versions": versions,
                       "training_references": hashlib.sha256(json.dumps(list(_training_references())).encode()
                                                             ).hexdigest(),
                       "pool": hashlib.sha256(json.dumps(list(s.pool)).encode()).hexdigest()}
    return s.memo[key]


def _scorer_hashes(s: Setup) -> dict:
    """The weights behind every scorer the measures use (a retrained stand-in is a new cache key)."""
    infos = {n: scorer_of(s, n).info() for n in CROSS_SCORERS}
    return {n: info.get("checkpoint_hash") or info.get("pretrained") for n, info in infos.items()}


def captions_table(s: Setup, systems: Sequence[str], *, progress: bool = True) -> pd.DataFrame:
    """The measure tables of every run of ``systems`` (:func:`runs`), concatenated."""
    from tqdm.auto import tqdm

    todo = runs(systems, s.smoke)
    parts = [measure_table(s, name, sd) for name, sd in tqdm(todo, desc="probe systems", unit="run",
                                                             disable=not progress)]
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- edits (F1, F3)
def edits_table(s: Setup, table: pd.DataFrame, *, seed: int = 0, scorers: Sequence[str] | None = None) -> pd.DataFrame:
    """Controlled edits (:func:`analysis.grounding.edit_effects`) of every SCST system's and the XE captioner's
    test captions, each scored by every scorer of ``scorers`` (default :data:`CROSS_SCORERS`): rows with
    ``system``, ``seed``, ``scorer`` added. The edits of a caption set are made once (seed ``seed + SCST seed``)
    and every scorer scores the same originals and edits. Cached by the captions, the scorers' weights, the seed
    and the code (``probe-edits`` entries)."""
    from analysis import cache, grounding

    scorers = list(scorers or CROSS_SCORERS)
    caps = table.loc[table.system != REFERENCES, ["system", "seed", "image", "caption"]]
    recipe = {"what": "probe edits", "version": PROBE_VERSION, "seed": int(seed), "scorers": scorers,
              "weights": {k: v for k, v in _scorer_hashes(s).items() if k in scorers},
              "captions": hashlib.sha256(caps.to_json(orient="values").encode()).hexdigest(),
              "test": s.test.ids, "measures": measure_inputs(s)}
    other = {sc: test_reward(s, sc).info() for sc in scorers if sc not in CROSS_SCORERS}
    if other:  # a reward that is not one of the cross scorers (aclip-s:..., clip-s:...): its weights and map
        recipe["rewards"] = other

    def build(folder: Path) -> None:
        fns = {sc: test_reward(s, sc).clear_text_cache() for sc in scorers}
        parts = []
        for (system, sd), g in caps.groupby(["system", "seed"], sort=False):
            first = grounding.edit_effects(fns[scorers[0]], list(g["caption"]), s.test.graphs, s.pool,
                                           seed + int(sd))
            images = first["image"].to_numpy()
            done = first["edited"].notna().to_numpy()
            for sc, fn in fns.items():
                e = first.copy()
                if sc != scorers[0]:
                    index = np.arange(len(g))
                    e["original"] = np.asarray(fn(index, list(g["caption"])), dtype=float)[e["index"].to_numpy()]
                    e["score_edited"] = np.nan
                    if done.any():
                        e.loc[done, "score_edited"] = np.asarray(fn(images[done], list(e.loc[done, "edited"])),
                                                                 dtype=float)
                    e["delta"] = e["original"] - e["score_edited"]
                e.insert(0, "scorer", sc)
                e.insert(0, "seed", int(sd))
                e.insert(0, "system", system)
                e["image"] = [s.test.ids[i] for i in e["index"]]
                parts.append(e)
        out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        out.to_parquet(folder / "edits.parquet", index=False)

    return pd.read_parquet(cache.entry("probe-edits", recipe, build) / "edits.parquet")


# ----------------------------------------------------------------------------- summaries
def means_table(table: pd.DataFrame, columns: Sequence[str], systems: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean of each measure per system (over its seeds and images; NaN skipped), systems in ``systems`` order."""
    order = list(systems) if systems is not None else list(dict.fromkeys(table["system"]))
    cols = [c for c in columns if c in table]
    m = table.groupby("system", sort=False)[cols].mean().reindex(order)
    m.index = [f"{x}" for x in m.index]
    return m


def training_curves(s: Setup, systems: Sequence[str]) -> pd.DataFrame:
    """The SCST log rows of every seed of ``systems`` with ``system`` and ``seed`` columns."""
    parts = []
    for name in systems:
        for sd in _system(name).seeds_for(s.smoke):
            log = train_system(s, _system(name), sd)[1]
            f = log.frame()
            f.insert(0, "seed", sd)
            f.insert(0, "system", name)
            parts.append(f)
    return pd.concat(parts, ignore_index=True)


def example_images(test, n: int, seed: int) -> list[int]:
    """``n`` test images for the example grid, the same for every page: half stamp scenes, half stamps
    (seeded), in test order."""
    from analysis.runtime import rng as make_rng

    r = make_rng(seed)
    scenes = [i for i, g in enumerate(test.graphs) if g is not None]
    stamps = [i for i, g in enumerate(test.graphs) if g is None]
    k = min(len(scenes), (n + 1) // 2)
    pick = list(r.choice(scenes, k, replace=False)) if k else []
    pick += list(r.choice(stamps, min(len(stamps), n - k), replace=False)) if stamps else []
    return sorted(int(i) for i in pick)


def examples_frame(table: pd.DataFrame, images: Sequence[str], systems: Sequence[str]) -> pd.DataFrame:
    """Captions of ``systems`` (seed 0) for the image ids ``images``: one row per image, one column per system."""
    t = table[(table.seed == 0) & table.image.isin(images) & table.system.isin(systems)]
    wide = t.pivot_table(index="image", columns="system", values="caption", aggfunc="first")
    return wide.reindex(index=list(images), columns=[x for x in systems if x in wide.columns])


def identical_share(a: Sequence[str], b: Sequence[str]) -> tuple[float, int]:
    """Share of images whose two captions are the same string, and the number of images.

    >>> identical_share(["a dog", "a cat"], ["a dog", "two cats"])
    (0.5, 2)
    """
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} captions: compare captions of the same images")
    n = len(a)
    return (sum(x == y for x, y in zip(a, b)) / n if n else float("nan")), n


# ----------------------------------------------------------------------------- systems not in SYSTEMS
def system_for(reward: str, itm_output: str = "logit") -> System:
    """The :data:`SYSTEMS` entry named ``reward`` or, for any other reward name (a published scorer, an
    ablation, ``score:<x>``), a one-seed system built from the scorer registry's family."""
    name = reward if itm_output == "logit" else f"{reward}/{itm_output}"
    if known_system(name):
        return known_system(name)
    from analysis.registry import SCORERS

    if reward.startswith("mix:"):
        return System(name, reward, "mix", reward, itm_output=itm_output, mix=reward[4:])
    family = SCORERS.entry(_scorer_base(reward)).meta.get("family")
    fam = {"dual": "dual encoder"}.get(family, family)
    return System(name, reward, fam or "other", reward, itm_output=itm_output)


def page_systems(reward: str) -> list[System]:
    """The systems of the reward page ``reward`` (:data:`PAGES`), or the one :func:`system_for` builds (registered
    with :func:`register_system` so the tables can name it; the probe's own runs stay :data:`SYSTEMS`)."""
    return PAGES.get(reward) or [register_system(system_for(reward))]


# ----------------------------------------------------------------------------- page summaries
#: the measures of a reward page's summary table: (column, label, statistic of analysis.findings)
SUMMARY = (("cider_d", "CIDEr-D", "mean"), ("bleu_4", "BLEU-4", "mean"), ("meteor", "METEOR", "mean"),
           ("sg_f1", "sg-f1 (SPICE-style stand-in)", "mean"), ("clip_s", "CLIP-S (clip-mini)", "mean"),
           ("ref_clip_s", "RefCLIP-S (clip-mini)", "mean"), ("perplexity", "perplexity (median)", "median"),
           ("slor", "SLOR", "mean"), ("grammar_error", "flagged by the rule-based grammar detector (share)", "mean"),
           ("visual_words", "visual words per caption", "mean"), ("visual_ratio", "visual-word ratio", "mean"),
           ("length", "words per caption", "mean"), ("object_precision", "object precision", "pooled"),
           ("object_recall", "object recall", "pooled"), ("count_correct", "count correctness", "pooled"),
           ("relation_correct", "relation correctness", "pooled"), ("size_correct", "size correctness", "pooled"),
           ("chair_i", "CHAIR-i", "pooled"))


def summary_rows(table: pd.DataFrame, systems: Sequence[str], *, seed: int, n_boot: int,
                 measures: Sequence[tuple[str, str, str]] = SUMMARY) -> pd.DataFrame:
    """Per system and measure: the statistic with its two-level bootstrap 95% interval over images and seeds
    (:func:`analysis.findings.bootstrap_mean`); ``pooled`` rates are Σ correct / Σ stated over captions.

    A proportion (a pooled rate, or the share of captions with a 0/1 measure such as ``grammar_error``) near 0 or
    1 gets a degenerate percentile interval (every resample 0); for those the interval is widened to cover the
    Wilson 95% interval of ``Σ k / Σ n`` over all captions and seeds as well (``interval`` says
    ``bootstrap ∪ Wilson``)."""
    from analysis import findings
    from analysis.stats import wilson_interval

    rows = []
    for sy in systems:
        if sy not in set(table["system"]):
            continue
        for col, label, stat in measures:
            if stat != "pooled" and (col not in table or table.loc[table.system == sy, col].notna().sum() == 0):
                continue
            r = findings.bootstrap_mean(table, col, sy, seed=seed, n_resamples=n_boot, stat=stat)
            lo, hi, how = r["low"], r["high"], "bootstrap"
            t = table[table.system == sy]
            if stat == "pooled":
                k, n = (t[c].sum() for c in findings.RATIOS[col])
            elif stat == "mean" and col in PROPORTIONS:
                k, n = t[col].sum(), t[col].notna().sum()
            else:
                k = n = 0
            if n:
                wl, wh = wilson_interval(float(k), int(n))
                lo, hi, how = np.nanmin([lo, wl]), np.nanmax([hi, wh]), "bootstrap ∪ Wilson"
            rows.append({"run": RUN, "analysis": "summary", "system": sy, "family": FAMILY_OF.get(sy, "other"),
                         "measure": col, "label": label, "statistic": stat, "value": r["value"], "low": lo,
                         "high": hi, "interval": how, "n": r["n"], "seeds": r["seeds"], "seed": seed})
    return pd.DataFrame(rows)


#: below this many captions with a value (for a pooled rate: captions stating the item) a cell says its n
FEW = 10


def summary_wide(rows: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary_rows` as a measure × system table of ``value [low, high]`` strings, with ``(n = k)`` added
    where fewer than :data:`FEW` captions carry the value (a rate over one stated relation is not a finding)."""
    from analysis.prose import fmt_interval

    few = rows["n"].fillna(np.inf) < FEW if "n" in rows else pd.Series(False, index=rows.index)
    cell = rows.assign(text=[fmt_interval(v, lo, hi) + (f" (n = {int(n)})" if f else "")
                             for v, lo, hi, n, f in zip(rows.value, rows.low, rows.high, rows.get("n", rows.value), few)])
    wide = cell.pivot_table(index="label", columns="system", values="text", aggfunc="first", sort=False)
    order = list(dict.fromkeys(rows["label"]))
    return wide.reindex(index=order, columns=list(dict.fromkeys(rows["system"])))


def pattern_rows(table: pd.DataFrame, systems: Sequence[str], *, top: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sentence patterns of each system's seed-0 captions (:func:`analysis.linguistics.pattern_summary`):
    ``(measures, top templates)``."""
    from analysis import linguistics

    rows, tops = [], []
    for sy in systems:
        caps = [c for c in table.loc[(table.system == sy) & (table.seed == 0), "caption"] if c.split()]
        if not caps:
            continue
        s = linguistics.pattern_summary(caps, top=top)
        rows.append({"system": sy, **{k: s[k] for k in ("template_entropy", "max_entropy", "top_template_share",
                                                          "top_prefix_share", "distinct_1", "distinct_2", "rep_1",
                                                          "rep_2", "mean_words", "vocabulary")},
                     "distinct_captions": len(set(caps)) / len(caps)})
        for rank, (tmpl, n) in enumerate(s["top_templates"], 1):
            ex = next(c for c, t in zip(table.loc[(table.system == sy) & (table.seed == 0), "caption"],
                                        table.loc[(table.system == sy) & (table.seed == 0), "template"]) if t == tmpl)
            tops.append({"system": sy, "rank": rank, "template": tmpl, "share": n / len(caps), "example": ex})
    return pd.DataFrame(rows), pd.DataFrame(tops)


#: the corpus rates of :func:`analysis.grounding.summarise_grounding` and their names in the page's tables
GROUNDING_RATES = {"object_precision": "object precision", "object_recall": "object recall",
                   "count_correct": "count correct", "relation_correct": "relation correct",
                   "size_correct": "size correct", "chair_i": "CHAIR-i", "chair_s": "CHAIR-s"}


def grounding_rows(table: pd.DataFrame, systems: Sequence[str]) -> pd.DataFrame:
    """Corpus grounding rates of each system's seed-0 captions on the stamp scenes with Wilson intervals
    (:func:`analysis.grounding.summarise_grounding` over the grounding columns of the captions table; a caption
    has a scene graph where its object recall is defined)."""
    from analysis import grounding

    rows = []
    for sy in systems:
        t = table[(table.system == sy) & (table.seed == 0)]
        t = t.assign(has_graph=t.object_recall.notna())
        if not t.has_graph.any():
            continue
        rates = grounding.summarise_grounding(t)
        rows += [{"system": sy, "measure": name, **{k: rates[key][k] for k in ("value", "low", "high", "successes",
                                                                              "n")}}
                 for key, name in GROUNDING_RATES.items()]
    return pd.DataFrame(rows)


def output_comparison(table: pd.DataFrame, a: str, b: str) -> dict:
    """Whether two systems (the ITM logit and probability rewards) wrote different captions: the share of
    identical seed-0 captions and the mean of each measure for both."""
    ca = table.loc[(table.system == a) & (table.seed == 0)].set_index("image")["caption"]
    cb = table.loc[(table.system == b) & (table.seed == 0)].set_index("image")["caption"].reindex(ca.index)
    share, n = identical_share(list(ca), list(cb))
    return {"a": a, "b": b, "identical_share": share, "n": n}


# ----------------------------------------------------------------------------- pages
def finalise(rows: pd.DataFrame, *, smoke: bool, seed: int) -> pd.DataFrame:
    """The provenance columns of :mod:`analysis.results` on a page's rows: ``model`` the captioner
    (``captioner:<system>``: the XE captioner or its SCST fine-tune, trained here), ``source`` embedded,
    ``dataset`` the test datasets, ``split`` (``train`` for training curves, else ``test``), ``metric`` the
    measure; ``seed`` is the SCST seed of a per-seed row and the page's seed otherwise."""
    from analysis import results
    from analysis.captioning.xe import DATASETS

    r = rows.copy()
    if "system" not in r:
        r["system"] = ""
    r["model"] = [x if x in ("", REFERENCES) else f"captioner:{x}" for x in r["system"].fillna("").astype(str)]
    r["source"] = np.where(r["system"] == REFERENCES, "none", "embedded")
    r["pretrained"] = ""
    r["dataset"] = " + ".join(DATASETS)
    analysis = r.get("analysis", pd.Series("", index=r.index))
    r["split"] = np.select([analysis.isin(["training curve", "captioner", "mix"]), analysis == "data"],
                           ["train", "all"], "test")
    if "prior" in r:  # reward-guided decoding: an embedded scorer re-ranks a prior's proposals
        from analysis import fluency

        r["model"] = "guided:" + r["scorer"].astype(str) + "+" + r["prior"].astype(str)
        r["pretrained"] = np.where(r["prior"] == "smollm2", f"prior {fluency.LM_NAME} ({fluency.LM_PIN})",
                                   "prior: the XE captioner (embedded)")
    if "metric" not in r:
        r["metric"] = r["measure"] if "measure" in r else ""
    r["seed"] = r["seed"].fillna(seed).astype(int) if "seed" in r else seed
    r["smoke"] = bool(smoke)
    r["run"] = RUN
    return results.validate(r)


@dataclass
class Page:
    """What a probe page shows: result ``rows`` (written to the results folder), named ``tables`` and
    ``frames`` for figures, ``sentences`` computed from the rows, ``timings``."""

    rows: pd.DataFrame
    tables: dict = field(default_factory=dict)
    frames: dict = field(default_factory=dict)
    sentences: list = field(default_factory=list)
    timings: list = field(default_factory=list)


def _timed(timings: list, what: str):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            timings.append({"run": RUN, "what": what, "seconds": round(time.perf_counter() - self.t, 2)})
    return _T()


def run_method(*, smoke: bool = False, seed: int = 0) -> Page:
    """The method page: the XE captioner (shape, training curve, held-out quality), the SCST settings and the
    systems with their rewards."""
    from analysis.captioning import scst
    from analysis.scorers import training

    timings: list = []
    with _timed(timings, "XE captioner (train or load)"):
        s = setup(smoke, seed)
    info = s.captioner.info()
    meta = training.read_meta(s.xe_folder)
    log = meta.get("log", {})
    lc = log.get("loss_curve", [])  # means of consecutive blocks of k steps (analysis.scorers.training.fit)
    k = max(1, min(10, int(log.get("steps", 0) or 0)))
    curve = pd.DataFrame({"step": [i * k for i in range(len(lc))], "loss": lc})
    systems = pd.DataFrame([{"system": sy.name, "label": label_of(sy.name), "reward": sy.reward,
                             "family": sy.family, "ITM output": sy.itm_output if sy.family in (
                                 "single-stream", "two-stream") else "",
                             "SCST seeds": ", ".join(map(str, sy.seeds_for(smoke)))} for sy in SYSTEMS.values()])
    lam = mix_lam(s, "clip-mini")
    cfg = pd.DataFrame([{"setting": k, "value": v} for k, v in scst.config_for(smoke).items()])
    with _timed(timings, "XE and reference measures"):
        table = captions_table(s, [REFERENCES, "xe"], progress=False)
    summ = summary_rows(table, [REFERENCES, "xe"], seed=seed, n_boot=200 if smoke else 1000)
    scenes = table[table["dataset"] == "stamp-scenes"].assign(system=table["system"] + SCENES_ONLY)
    summ = pd.concat([summ, summary_rows(scenes, [REFERENCES + SCENES_ONLY, "xe" + SCENES_ONLY], seed=seed,
                                         n_boot=200 if smoke else 1000, measures=[m for m in SUMMARY if m[0] in (
                                             "cider_d", "clip_s", "sg_f1")])], ignore_index=True)
    rows = pd.concat([summ, pd.DataFrame([
        {"run": RUN, "analysis": "captioner", "system": "xe", "measure": k, "value": float(v), "seed": seed}
        for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)] + [
        {"run": RUN, "analysis": "mix", "system": "mix:clip-mini", "measure": "lambda", "value": lam, "seed": seed},
        {"run": RUN, "analysis": "data", "system": "", "measure": "train images", "value": len(s.train), "seed": seed},
        {"run": RUN, "analysis": "data", "system": "", "measure": "SCST images", "value": len(s.scst), "seed": seed},
        {"run": RUN, "analysis": "data", "system": "", "measure": "test images", "value": len(s.test), "seed": seed},
        {"run": RUN, "analysis": "data", "system": "", "measure": "test scenes",
         "value": sum(g is not None for g in s.test.graphs), "seed": seed}])], ignore_index=True)
    rows = finalise(rows, smoke=smoke, seed=seed)
    from analysis import prose

    return Page(rows, tables={"captioner": pd.DataFrame([{"setting": k, "value": str(v)} for k, v in info.items()]),
                              "systems": systems, "scst": cfg, "summary": summary_wide(summ),
                              "examples": examples_frame(table, [s.test.ids[i] for i in example_images(s.test, 6, seed)],
                                                         [REFERENCES, "xe"])},
                frames={"xe_curve": curve}, sentences=prose.probe_method_sentences(rows), timings=timings)


def run_reward_page(reward: str = "cider-d", *, smoke: bool = False, seed: int = 0, n_boot: int = 1000,
                    n_examples: int = 8) -> Page:
    """One reward's page: SCST training curves, the test captions' measures beside XE, CIDEr-D SCST and the
    references, grounding, sentence patterns and examples (and, for an ITM reward with two outputs, whether
    the logit and probability rewards wrote different captions)."""
    from analysis import prose

    timings: list = []
    s = setup(smoke, seed)
    systems = page_systems(reward)
    names = [sy.name for sy in systems]
    with _timed(timings, f"SCST ({reward}, every seed; cached by recipe)"):
        _train_all(s, list(dict.fromkeys([*names, "cider-d"])))
    shown = list(dict.fromkeys([REFERENCES, "xe", "cider-d", *names]))
    with _timed(timings, "measures of the test captions (cached by content)"):
        table = captions_table(s, shown)
    with _timed(timings, "bootstrap summaries"):
        summ = summary_rows(table, shown, seed=seed, n_boot=n_boot)
    curves = training_curves(s, names)
    pat, tops = pattern_rows(table, shown)
    ground = grounding_rows(table, shown)
    extra = []
    if len(names) == 2:
        cmp = output_comparison(table, names[0], names[1])
        from analysis.stats import wilson_interval

        lo, hi = wilson_interval(cmp["identical_share"] * cmp["n"], cmp["n"])
        extra.append({"run": RUN, "analysis": "itm output", "system": names[1], "measure": "identical captions",
                      "value": cmp["identical_share"], "low": lo, "high": hi, "n": cmp["n"], "seed": seed})
    curve_rows = curves.melt(id_vars=["system", "seed", "step"], value_vars=[
        c for c in ("reward_mean", "greedy_reward", "greedy_cider_d", "greedy_length", "length") if c in curves],
        var_name="measure", value_name="value").dropna(subset=["value"]).assign(run=RUN, analysis="training curve")
    rows = pd.concat([summ, curve_rows, pd.DataFrame(extra),
                      pat.melt(id_vars="system", var_name="measure", value_name="value").assign(
                          run=RUN, analysis="patterns", seed=0),
                      ground.assign(run=RUN, analysis="grounding", seed=0)], ignore_index=True)
    rows["reward_page"] = reward
    rows = finalise(rows, smoke=smoke, seed=seed)
    ex_ids = [s.test.ids[i] for i in example_images(s.test, n_examples, seed)]
    return Page(rows, tables={"summary": summary_wide(summ), "patterns": pat, "templates": tops,
                              "grounding": ground, "examples": examples_frame(table, ex_ids, shown),
                              "systems": pd.DataFrame([{"system": n, "label": label_of(n)} for n in shown])},
                frames={"curves": curves, "table": table, "example_paths": {i: p for i, p in zip(
                    s.test.ids, s.test.paths) if i in ex_ids}},
                sentences=prose.probe_reward_sentences(rows, names), timings=timings)


def all_systems(smoke: bool) -> list[str]:
    """Every system of the probe in book order, with ``references`` and ``xe`` first."""
    return [REFERENCES, "xe", *SYSTEMS]


def _train_all(s: Setup, names: Sequence[str]) -> None:
    from tqdm.auto import tqdm

    todo = [(n, sd) for n in names if known_system(n) for sd in _system(n).seeds_for(s.smoke)]
    for n, sd in tqdm(todo, desc="SCST runs (cached by recipe)", unit="run"):
        train_system(s, _system(n), sd)


def every_system(smoke: bool, seed: int, timings: list) -> tuple[Setup, list[str], pd.DataFrame]:
    """``(setup, system names, captions table)`` of every system (:func:`all_systems`), each SCST run trained or
    loaded and each measure table built or loaded, timed into ``timings``."""
    s = setup(smoke, seed)
    names = all_systems(smoke)
    with _timed(timings, "SCST runs (cached by recipe)"):
        _train_all(s, names)
    with _timed(timings, "measures (cached by content)"):
        table = captions_table(s, names)
    return s, names, table


def cross_matrix(table: pd.DataFrame, scorers: Sequence[str] = CROSS_SCORERS) -> pd.DataFrame:
    """Mean score of each system's captions (rows, every seed) under every scorer (columns ``score:<scorer>``)."""
    cols = [f"score:{sc}" for sc in scorers if f"score:{sc}" in table]
    m = table.groupby("system", sort=False)[cols].mean()
    m.columns = [c.removeprefix("score:") for c in m.columns]
    return m


def standardise_columns(m: pd.DataFrame, reference: str = "xe") -> pd.DataFrame:
    """Each column in units of the spread of the systems' means, centred on ``reference``'s row:
    ``(m − m[reference]) / sd(column over systems)``, so scorers with different scales share one colour bar."""
    sd = m.std(axis=0, ddof=0).replace(0, np.nan)
    return (m - m.loc[reference]) / sd if reference in m.index else (m - m.mean()) / sd


def run_cross(*, smoke: bool = False, seed: int = 0, n_boot: int = 1000, sheet_images: int = 20) -> Page:
    """The cross-scoring page: every captioner's test captions under every scorer and metric, whether each
    scorer rates its own captioner highest, the same example images for every reward, and the blind
    human-evaluation sheet (exported, never filled in here)."""
    from analysis import findings, prose

    timings: list = []
    s, names, table = every_system(smoke, seed, timings)
    m = cross_matrix(table)
    rows = []
    for sy in m.index:
        for sc in m.columns:
            r = findings.bootstrap_mean(table, f"score:{sc}", sy, seed=seed, n_resamples=n_boot)
            rows.append({"run": RUN, "analysis": "cross", "system": sy, "family": FAMILY_OF.get(sy, "other"),
                         "scorer": sc, "measure": f"score:{sc}", "value": r["value"], "low": r["low"],
                         "high": r["high"], "n": r["n"], "seeds": r["seeds"], "seed": seed})
    # does the captioner trained on scorer X get X's highest score among the SCST systems? (own-reward check)
    for sc in m.columns:
        own = [sy for sy in SYSTEMS if sy in m.index and SYSTEMS[sy].reward == sc and SYSTEMS[sy].itm_output == "logit"]
        if own:
            scst_rows = m.loc[[sy for sy in m.index if sy in SYSTEMS], sc]
            rows.append({"run": RUN, "analysis": "own reward", "system": own[0], "scorer": sc,
                         "measure": "rank of own captioner", "value": float((scst_rows > scst_rows[own[0]]).sum() + 1),
                         "n": len(scst_rows), "seed": seed})
    metrics = means_table(table, [c for c in metric_columns(smoke).values()] + ["slor", "grammar_error",
                                                                                "visual_words"], names)
    ex = [s.test.ids[i] for i in example_images(s.test, 8, seed)]
    sheet, key_path = human_eval_sheet(s, table, names, sheet_images, seed, exclude=ex)
    rows = finalise(pd.DataFrame(rows), smoke=smoke, seed=seed)
    return Page(rows, tables={"matrix": m, "standardised": standardise_columns(m), "metrics": metrics,
                              "examples": examples_frame(table, ex, names), "sheet": sheet,
                              "cells": cross_cells(rows), "key": pd.DataFrame({"key": [str(key_path)]})},
                frames={"table": table, "example_paths": {i: p for i, p in zip(s.test.ids, s.test.paths) if i in ex}},
                sentences=prose.probe_cross_sentences(rows), timings=timings)


def human_eval_sheet(s: Setup, table: pd.DataFrame, names: Sequence[str], n_images: int, seed: int, *,
                     exclude: Sequence[str] = ()) -> tuple[pd.DataFrame, Path]:
    """Export the blind human-evaluation sheet (:func:`analysis.humaneval.export_sheet`): the seed-0 captions of
    every system in ``names`` on ``n_images`` test images not shown as examples (``exclude``), shuffled, system
    names replaced by opaque codes. The sheet goes to the results folder (``probe-human-eval/``, published with
    the book); the key that maps codes to systems goes to the study cache (``probe-human-eval-key/<hash>/``),
    never beside the sheet. Returns ``(sheet, key path)``."""
    from analysis import cache, humaneval
    from analysis.results import results_dir
    from analysis.runtime import rng

    pool = [i for i in range(len(s.test.ids)) if s.test.ids[i] not in set(exclude)]
    pick = [s.test.ids[i] for i in sorted(np.asarray(pool)[rng(seed + 1).permutation(len(pool))[:n_images]])]
    sys_caps = {sy: list(table[(table.system == sy) & (table.seed == 0)].set_index("image").loc[pick, "caption"])
                for sy in names}
    digest = hashlib.sha256(json.dumps([pick, sys_caps, seed]).encode()).hexdigest()[:20]
    key_dir = cache.root() / "probe-human-eval-key" / digest
    sheet_path, key_path = humaneval.export_sheet(sys_caps, pick, results_dir() / "probe-human-eval" / "sheet.csv",
                                                  key_dir / "key.csv", seed=seed)
    return pd.read_csv(sheet_path), key_path


def cross_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """The cross-scoring rows as a captioner × scorer table of ``mean [low, high]`` strings."""
    from analysis.prose import fmt_interval

    c = rows[rows["analysis"] == "cross"]
    text = [fmt_interval(v, lo, hi) for v, lo, hi in zip(c["value"], c["low"], c["high"])]
    return c.assign(text=text).pivot_table(index="system", columns="scorer", values="text", aggfunc="first",
                                           sort=False)


def run_decoding(*, smoke: bool = False, seed: int = 0, scorers: Sequence[str] = CROSS_SCORERS,
                 priors: Sequence[str] = ("xe", "smollm2"), weights: Sequence[float] = (0.0, 0.05, 0.2, 1.0),
                 n_images: int = 16, beam: int = 3, top_k: int = 5, max_len: int = 12, length_norm: float = 1.0) -> Page:
    """Reward-guided decoding without training (:mod:`analysis.captioning.guided`): each scorer re-ranks the
    prefixes a prior proposes, ``rank = score + w · LP / n^length_norm`` (LP the cumulative prior log-probability of
    the n prior tokens; ``length_norm = 1`` makes it the mean per token, about −2 to −3 nats, so a weight near 0.1
    already weighs as much as a typical score difference), for every prior weight ``w``; the captions get grounding,
    visual words, SLOR and grammar as the SCST captions do."""
    from analysis import cache, fluency, prose
    from analysis.captioning import guided

    weights = [weights] if isinstance(weights, (int, float)) else list(weights)
    if not weights or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights):
        raise ValueError(f"weights must be a list of numbers >= 0 (prior weights), got {weights!r}")
    if smoke:  # a page that runs in seconds: two images, two scorers, short captions
        n_images, max_len, top_k, scorers, weights = 2, min(max_len, 5), min(top_k, 4), list(scorers)[:2], weights[:2]
    timings: list = []
    s = setup(smoke, seed)
    images = example_images(s.test, min(n_images, len(s.test)), seed + 2)
    made = {"xe": lambda: guided.XEPrior(s.captioner, s.test), "smollm2": lambda: guided.LMPrior(device=s.device)}
    unknown = [p for p in priors if p not in made]
    if unknown:
        raise ValueError(f"unknown prior(s) {unknown}; the priors are {', '.join(made)}")
    settings = {"beam": beam, "top_k": top_k, "max_len": max_len, "length_norm": float(length_norm)}
    recipe = {"what": "probe guided decoding", "version": PROBE_VERSION, "scorers": list(scorers),
              "weights_of_scorers": {k: v for k, v in _scorer_hashes(s).items() if k in scorers},
              "priors": list(priors), "xe": s.captioner.weights_sha256,
              "lm": fluency.lm_info() if "smollm2" in priors else None, "images": [s.test.ids[i] for i in images],
              "prior_weights": [float(w) for w in weights], "settings": settings, "measures": measure_inputs(s),
              "code": cache.source_hash(guided)}

    def build(folder: Path) -> None:
        pri = [made[p]() for p in priors]
        parts = []
        for sc in scorers:
            with _timed(timings, f"guided decoding with {sc}"):
                parts.append(guided.sweep(s.test, images, test_reward(s, sc).clear_text_cache(), pri, list(weights), **settings)
                             .assign(scorer=sc))
        sw = pd.concat(parts, ignore_index=True)
        with _timed(timings, "measures of the guided captions"):
            extra = _light_measures(s, sw["caption"].tolist(), s.test.subset(sw["image"].tolist()))
        sw = pd.concat([sw.reset_index(drop=True), extra], axis=1).drop(columns=["seconds"], errors="ignore")
        sw.to_parquet(folder / "sweep.parquet", index=False)
        pd.DataFrame([p.info() for p in pri]).astype(str).to_parquet(folder / "priors.parquet", index=False)

    with _timed(timings, "reward-guided decoding (cached by recipe)"):
        folder = cache.entry("probe-guided", recipe, build)
    sw = pd.read_parquet(folder / "sweep.parquet")
    info = pd.read_parquet(folder / "priors.parquet")
    sw = finalise(sw.assign(system="guided:" + sw["scorer"] + "/" + sw["prior"], measure="guided score",
                            value=sw["score"]),
                  smoke=smoke, seed=seed)
    return Page(sw, tables={"settings": info}, sentences=prose.probe_decoding_sentences(sw), timings=timings)


def _text_measures(s: Setup, captions: list[str], graphs, *, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(text, grounding)`` of captions of the images with scene ``graphs``: ``text`` has perplexity and SLOR
    under the fluency LM, the grammar flag (NaN for an empty caption) and visual words (count, ratio);
    ``grounding`` is :func:`analysis.grounding.grounding_table`."""
    from analysis import fluency, grammar, grounding, linguistics

    out = pd.DataFrame({"perplexity": np.nan, "slor": np.nan, "grammar_error": np.nan}, index=range(len(captions)))
    idx = np.flatnonzero([bool(c.split()) for c in captions])
    if len(idx):
        kept = [captions[i] for i in idx]
        flu = fluency.fluency(kept, unigram_corpus=_unigram(), device=s.device, progress=progress)
        out.loc[idx, "perplexity"] = flu["perplexity"].to_numpy()
        out.loc[idx, "slor"] = flu["slor"].to_numpy()
        out.loc[idx, "grammar_error"] = (grammar.grammar_errors(kept)["errors"] > 0).astype(float).to_numpy()
    vis = linguistics.visual_word_counts(captions, _visual_vocabulary(tuple(s.pool)))
    out["visual_words"] = vis["count"].astype(float).to_numpy()
    out["visual_ratio"] = vis["ratio"].astype(float).to_numpy()
    return out, grounding.grounding_table(captions, graphs, s.pool)


def _light_measures(s: Setup, captions: list[str], data) -> pd.DataFrame:
    """Visual words, grounding, grammar and fluency of captions of ``data``'s images (no n-gram metrics)."""
    text, g = _text_measures(s, captions, data.graphs)
    out = pd.DataFrame({"visual_words": text["visual_words"]})
    for col in ("object_precision", "object_recall", "count_correct", "relation_correct"):
        out[col] = g[col].astype(float).to_numpy()
    out["slor"] = text["slor"].to_numpy()
    out["grammar_error"] = text["grammar_error"].to_numpy()
    return out


def run_findings(*, smoke: bool = False, seed: int = 0, n_boot: int = 1000) -> Page:
    """The findings page: F1–F3 as tests for every probed system with ``blind`` beside each, their computed
    verdicts, and the seed variance of the CIDEr-D and clip-mini rewards."""
    from analysis import findings, prose

    timings: list = []
    s, names, table = every_system(smoke, seed, timings)
    with _timed(timings, "controlled edits"):
        edits = edits_table(s, table, seed=seed)
    with _timed(timings, "F1-F3 tests"):
        kw = dict(seed=seed, n_resamples=n_boot)
        rows = pd.concat([findings.f1_rows(table, edits, **kw), findings.f2_rows(table, **kw),
                          findings.f3_rows(table, edits, **kw)], ignore_index=True)
        checks = findings.reward_check_rows(table, seed=seed, n_resamples=n_boot)
        verdicts = findings.with_reward_check(findings.verdicts(rows), checks)
    seeds = seed_rows(table)
    rows = pd.concat([rows.assign(analysis="finding"), checks, seeds], ignore_index=True)
    rows = finalise(rows, smoke=smoke, seed=seed)
    return Page(rows, tables={"verdicts": verdicts, "seeds": seeds, "checks": checks}, frames={"table": table, "edits": edits},
                sentences=[*prose.probe_finding_sentences(verdicts, rows), *prose.probe_missing_sentences(rows),
                           *prose.probe_correction_sentences(rows)], timings=timings)


#: the measures of the seed-variance table
SEED_MEASURES = ("cider_d", "clip_s", "score:clip-mini", "slor", "grammar_error", "visual_words", "length",
                 "object_recall", "relation_correct", "count_correct")


def seed_rows(table: pd.DataFrame, measures: Sequence[str] = SEED_MEASURES) -> pd.DataFrame:
    """Per system with more than one SCST seed: each seed's mean of every measure, and the across-seed mean and
    standard deviation (ddof 1)."""
    rows = []
    for sy, g in table.groupby("system", sort=False):
        if g["seed"].nunique() < 2:
            continue
        for m in measures:
            if m not in g:
                continue
            per = g.groupby("seed")[m].mean()
            for sd, v in per.items():
                rows.append({"analysis": "seed", "system": sy, "measure": m, "seed": int(sd), "value": float(v)})
            rows.append({"analysis": "seed", "system": sy, "measure": m, "seed": -1, "value": float(per.mean()),
                         "sd": float(per.std(ddof=1)), "n": int(len(per))})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- units for an executor
def _job_system(name: str, reward: str, itm_output: str) -> System:
    """The system a training unit names: a known one, else the one :func:`system_for` builds (in a worker
    process, a page's extra system is not registered yet)."""
    return known_system(name) or register_system(system_for(reward, itm_output))


def setup_job(*, smoke: bool, seed: int, scorers: Sequence[str] = (), device: str | None = None) -> dict:
    """Training unit: the XE captioner of page seed ``seed`` and the stand-in ``scorers`` the rewards use
    (trained or loaded; cached by recipe). Returns what was built: ``{"xe": checkpoint folder, "scorers": […]}``."""
    s = setup(smoke, seed, device)
    for name in scorers:
        scorer_of(s, name)
    return {"xe": str(s.xe_folder), "scorers": list(scorers)}


def scst_job(*, system: str, reward: str, itm_output: str = "logit", scst_seed: int, smoke: bool, seed: int,
             device: str | None = None) -> dict:
    """Training unit: one SCST run of ``system`` with SCST seed ``scst_seed`` from the XE captioner of page seed
    ``seed`` (cached by recipe, :func:`train_system`). Returns ``{"system", "scst_seed", "checkpoint",
    "entry"}`` (the checkpoint folder and the sha256 of its manifest)."""
    from analysis import cache

    s = setup(smoke, seed, device)
    _, log = train_system(s, _job_system(system, reward, itm_output), scst_seed, progress=False)
    return {"system": system, "scst_seed": int(scst_seed), "checkpoint": str(log.folder),
            "entry": cache.entry_hash(log.folder)}


def training_units(systems: Sequence[str], *, smoke: bool, seed: int, device: str | None = None) -> list:
    """The :class:`analysis.executor.Unit` list that trains ``systems`` (names or reward names) for a page of seed
    ``seed``: one setup unit (the XE captioner, the stand-ins of their rewards and the :data:`CROSS_SCORERS` every
    caption is scored by), then one unit per SCST run
    (every seed of :meth:`System.seeds_for`), each after the setup unit. Resources: :data:`TRAIN_THREADS` CPUs
    (what training uses), one GPU when ``device`` is CUDA."""
    from analysis.executor import Unit, resources
    from analysis.registry import SCORERS
    from analysis.runtime import device as default_device
    from analysis.scorers.training import TRAIN_THREADS

    device = device or default_device()
    syst = [known_system(n) or system_for(n) for n in dict.fromkeys(systems)]
    bases = [b for b in dict.fromkeys([*(_scorer_base(sy.mix or sy.reward) for sy in syst), *CROSS_SCORERS])
             if b in SCORERS]
    tag = f"{'smoke' if smoke else 'full'}/seed{seed}"
    setup_id = f"probe-setup:{tag}"
    req = resources(cpus=TRAIN_THREADS, gpus=1, memory_gb=1 if smoke else 3, device=device)
    units = [Unit(setup_id, "training", "analysis.probe:setup_job",
                  {"smoke": smoke, "seed": seed, "scorers": bases, "device": device},
                  {"what": "XE captioner and stand-ins", "smoke": smoke, "seed": seed, "scorers": ",".join(bases)}, req)]
    for sy in syst:
        for sd in sy.seeds_for(smoke):
            units.append(Unit(f"scst:{sy.name}/{tag}/scst-seed{sd}", "training", "analysis.probe:scst_job",
                              {"system": sy.name, "reward": sy.reward, "itm_output": sy.itm_output, "scst_seed": sd,
                               "smoke": smoke, "seed": seed, "device": device},
                              {"reward": sy.reward, "itm_output": sy.itm_output, "scst_seed": sd, "smoke": smoke,
                               "seed": seed}, req, after=(setup_id,)))
    return units


def reward_page_jobs(params: dict, device: str | None = None) -> list:
    """Training units of a reward page with parameters ``params``: its systems and the CIDEr-D baseline."""
    names = [sy.name for sy in page_systems(params["reward"])]
    return training_units([*names, "cider-d"], smoke=bool(params.get("smoke")), seed=int(params.get("seed", 0)),
                          device=device)


def all_systems_jobs(params: dict, device: str | None = None) -> list:
    """Training units of a page that shows every system (cross-scoring, findings)."""
    return training_units(list(SYSTEMS), smoke=bool(params.get("smoke")), seed=int(params.get("seed", 0)),
                          device=device)
