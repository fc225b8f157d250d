"""Benchmarks, each measured as a ratio against a reference in the same run.

``python -m analysis bench scorers``: for every scorer, on one batch of
``BATCH`` (image, caption) pairs from ``sample-photos``:

* pairs per second of ``scorer.score`` (best of ``REPEATS`` runs);
* the wrapper overhead ``t(score) / t(_score_batch) − 1``, where ``_score_batch``
  is the bare model call on the same batch under ``torch.no_grad`` (target ≤ 10%);
* peak resident memory of a child process that builds the scorer and scores the
  batch, against a child that only imports torch (the reference).

Each scorer runs in its own child process so peaks do not mix.

``python -m analysis bench metrics``: captions per second of the fast CIDEr-D (:mod:`analysis.cider`)
against pycocoevalcap's CIDEr-D called per batch, at equal values (target >= 10x); see :func:`bench_metrics`.

``python -m analysis bench measures``: perplexity captions per second batched against one caption per
forward pass (equal values), the grammar detector against the bare spaCy parse, METEOR seconds per call.

``python -m analysis bench probe``: SCST steps per second of every probe reward and the share of a step spent
sampling, in the reward and in the update; each default run's projected time against the 5-minute budget, the
whole probe part's projected cold time against 25 minutes, a cached measure table (the warm rerun's unit), and
the peak memory of the child that did it all against 6 GB (:func:`bench_probe`).

``python -m analysis bench alignment``: the closed-form fits of :mod:`analysis.alignment` on 100k × 512
synthetic pairs against a bare ``XᵀY`` + SVD in the same run (Procrustes ≤ 1.5×, OLS by normal equations ≤ 2×
Procrustes at equal results to ``numpy.linalg.lstsq``), the other fitters beside them, and peak memory
(:func:`bench_alignment`).

``python -m analysis bench scale``: the smoke sweep (two probe rewards x two seeds, with their SCST runs as
training units) on a local Ray cluster of 1 and of 2 workers, each from an equally cold copy of the cache: wall
times, their ratio, and whether both gave byte-identical result tables (:func:`bench_scale`).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import resource
import sys
import time

BATCH = 32
REPEATS = 5
TARGET_OVERHEAD = 0.10


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _child(name: str, smoke: bool, out) -> None:
    import torch

    from analysis import registry

    torch.set_num_threads(2)
    if name == "__reference__":
        out.put({"peak_mb": _peak_mb()})
        return
    scorer = registry.build_scorer(name, smoke=smoke)
    ds = registry.get_dataset("sample-photos")
    items = [ds[i % len(ds)] for i in range(BATCH if not smoke else 8)]
    images = [it.image() for it in items]
    captions = [it.captions[i % len(it.captions)] for i, it in enumerate(items)]
    scorer.batch_size = len(images)
    scorer.score(images, captions)  # warm-up

    def bare():
        with torch.no_grad():
            scorer._score_batch(images, captions)

    repeats = 2 if smoke else REPEATS
    t_wrap = _best(lambda: scorer.score(images, captions), repeats)
    t_bare = _best(bare, repeats)
    out.put({"pairs_per_s": len(images) / t_wrap, "wrapper_s": t_wrap, "bare_s": t_bare,
             "overhead": t_wrap / t_bare - 1, "peak_mb": _peak_mb(), "label": scorer.label})


def measure(name: str, smoke: bool = False) -> dict:
    """Run one scorer's benchmark in a fresh child process and return its numbers."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, smoke, q))
    p.start()
    res = q.get(timeout=1800)
    p.join()
    return res


def bench_scorers(names: list[str] | None = None, *, smoke: bool = False) -> list[dict]:
    """Benchmark each scorer; memory is reported against the import-only reference child."""
    ref = measure("__reference__")["peak_mb"]
    rows = []
    from analysis import registry

    for name in names or registry.default_scorers():
        r = measure(name, smoke)
        rows.append({"scorer": name, **r, "peak_mb_over_reference": r["peak_mb"] - ref,
                     "overhead_ok": r["overhead"] <= TARGET_OVERHEAD})
    return rows


METRICS_BATCH = 50  # captions per reward call (e.g. 10 images x 5 sampled captions)
TARGET_SPEEDUP = 10.0


def _bench_corpus(n_items: int | None) -> tuple[list[list[str]], list[str]]:
    """stamp-scenes training references, lower-cased and split on non-letters; candidate i is a reference
    of image i+1 (another image's caption), so scores span 0 to high overlap."""
    import re

    from analysis import registry

    ds = registry.get_dataset("stamp-scenes", split="train")
    refs = [[" ".join(re.findall(r"[a-z]+", c.lower())) for c in ds[i].captions]
            for i in range(len(ds) if n_items is None else min(n_items, len(ds)))]
    cands = [refs[(i + 1) % len(refs)][i % len(refs[(i + 1) % len(refs)])] for i in range(len(refs))]
    return refs, cands


def bench_metrics(*, smoke: bool = False) -> list[dict]:
    """Captions per second of the fast CIDEr-D (:mod:`analysis.cider`) against pycocoevalcap's ``Cider``.

    Fast: ``CiderD(train refs)`` built once (``precompute_s``: document frequencies and reference vectors),
    then ``.score`` per batch of ``METRICS_BATCH`` captions over the whole corpus. Reference:
    ``Cider().compute_score`` called per batch (what a reward loop without precomputation does; its
    document frequencies come from the batch), and once on the whole corpus, where its values must equal
    the fast scores (``max_abs_diff`` <= 1e-6). ``speedup`` = fast captions/s over pycocoevalcap per-batch
    captions/s (target >= 10); ``speedup_one_pass`` charges the precomputation to a single pass.
    """
    import numpy as np
    from pycocoevalcap.cider.cider import Cider

    from analysis.cider import CiderD

    refs, cands = _bench_corpus(20 if smoke else None)
    batch = 5 if smoke else METRICS_BATCH
    repeats = 1 if smoke else 5
    spans = [(i, min(i + batch, len(cands))) for i in range(0, len(cands), batch)]
    t = time.perf_counter()
    fast = CiderD(refs)
    precompute = time.perf_counter() - t

    def fast_pass():
        return np.concatenate([fast.score(cands[a:b], refs[a:b]) for a, b in spans])

    def coco_batches():
        for a, b in spans:
            Cider().compute_score({i: refs[i] for i in range(a, b)}, {i: [cands[i]] for i in range(a, b)})

    t_fast = _best(fast_pass, repeats)
    t_coco = _best(coco_batches, repeats)
    t = time.perf_counter()
    coco_mean, coco_items = Cider().compute_score({i: r for i, r in enumerate(refs)},
                                                  {i: [c] for i, c in enumerate(cands)})
    t_coco_corpus = time.perf_counter() - t
    ours = fast_pass()
    diff = float(np.abs(ours - np.asarray(coco_items)).max())
    n = len(cands)
    speedup = t_coco / t_fast
    return [{"metric": "CIDEr-D", "captions": n, "batch": batch, "precompute_s": precompute,
             "fast_caps_per_s": n / t_fast, "pycoco_batch_caps_per_s": n / t_coco,
             "pycoco_corpus_caps_per_s": n / t_coco_corpus, "speedup": speedup,
             "speedup_one_pass": t_coco / (t_fast + precompute), "speedup_vs_corpus_call": t_coco_corpus / t_fast,
             "corpus_mean_fast": float(ours.mean()), "corpus_mean_pycoco": float(coco_mean),
             "max_abs_diff": diff, "speedup_ok": bool(speedup >= TARGET_SPEEDUP), "equal_ok": diff <= 1e-6}]


def bench_perplexity(*, smoke: bool = False) -> dict:
    """Captions per second of :func:`analysis.fluency.caption_logprobs` batched (``batch_size=32``) against
    the reference one caption per forward pass (``batch_size=1``), on the same captions, at equal values
    (``max_abs_diff`` of the per-caption log-probability sums <= 1e-3; padding must not change them)."""
    import numpy as np

    from analysis import fluency

    _, cands = _bench_corpus(16 if smoke else 256)
    fluency.load_lm()  # the one-time conversion/load is not what is timed
    t = time.perf_counter()
    batched = fluency.caption_logprobs(cands, batch_size=32)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = fluency.caption_logprobs(cands, batch_size=1)
    t_single = time.perf_counter() - t
    diff = max(abs(float(a.sum()) - float(b.sum())) for a, b in zip(batched, single))
    return {"metric": "perplexity (SmolLM2-135M)", "captions": len(cands), "batch": 32,
            "fast_caps_per_s": len(cands) / t_batched, "reference_caps_per_s": len(cands) / t_single,
            "speedup": t_single / t_batched, "max_abs_diff": diff, "equal_ok": bool(np.isfinite(diff) and diff <= 1e-3)}


def bench_grammar(*, smoke: bool = False) -> dict:
    """Captions per second of :func:`analysis.grammar.grammar_errors` against the bare spaCy parse it runs on
    (the reference); ``overhead`` = t(detector) / t(parse) − 1 is what the rules add."""
    from analysis import grammar, linguistics

    _, cands = _bench_corpus(40 if smoke else None)
    cands = (cands * (1 + 1000 // max(len(cands), 1)))[:40 if smoke else 1000]
    linguistics.nlp()
    repeats = 1 if smoke else 3
    t_parse = _best(lambda: linguistics.parse(cands), repeats)  # the very parse the detector runs on
    t_rules = _best(lambda: grammar.grammar_errors(cands), repeats)
    return {"metric": "grammar detector", "captions": len(cands), "fast_caps_per_s": len(cands) / t_rules,
            "reference_caps_per_s": len(cands) / t_parse, "overhead": t_rules / t_parse - 1}


def bench_meteor(*, smoke: bool = False) -> dict:
    """Seconds per METEOR call (one JVM each) for one caption and for a whole corpus: ``call_s_1`` is the fixed
    cost of a call, which is why a run is scored in one call."""
    from analysis.registry import get_metric

    refs, cands = _bench_corpus(20 if smoke else 300)
    m = get_metric("meteor")
    t = time.perf_counter()
    m.compute_score({0: refs[0]}, {0: [cands[0]]})
    one = time.perf_counter() - t
    t = time.perf_counter()
    m.compute_score(dict(enumerate(refs)), {i: [c] for i, c in enumerate(cands)})
    many = time.perf_counter() - t
    return {"metric": "METEOR", "captions": len(cands), "call_s_1": one, "call_s_corpus": many,
            "fast_caps_per_s": len(cands) / many, "reference_caps_per_s": 1 / one, "speedup": one * len(cands) / many}


def bench_measures(*, smoke: bool = False) -> list[dict]:
    """Perplexity (batched vs one at a time), the grammar detector (vs its spaCy parse), METEOR per call."""
    return [bench_perplexity(smoke=smoke), bench_grammar(smoke=smoke), bench_meteor(smoke=smoke)]


PROBE_STEPS = 20  # SCST steps timed per reward (smoke: 3)
SCST_BUDGET_S = 300.0  # one SCST run of the default settings (issue 9)
PROBE_BUDGET_S = 25 * 60.0  # the whole probe part, cold
PEAK_BUDGET_MB = 6 * 1024.0


def _probe_child(smoke: bool, steps: int, out) -> None:
    """Time ``steps`` uncached SCST steps of every probe reward (one child, so its peak memory is the probe's),
    and one measure table (uncached) of the XE captions."""
    import copy

    import torch

    from analysis import probe
    from analysis.captioning import scst
    from analysis.scorers import training

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    s = probe.setup(smoke)
    setup_s = time.perf_counter() - t0
    xe_s = float(training.read_meta(s.xe_folder).get("log", {}).get("seconds", float("nan")))
    rows = []
    for system in probe.SYSTEMS.values():
        reward = probe.reward_of(s, system)
        cfg = scst.ScstConfig(**{**scst.config_for(smoke), "steps": steps, "probe_every": 0})
        t = time.perf_counter()
        _, log = scst.run_scst(copy.deepcopy(s.captioner), s.vocab, s.scst, reward, cfg, seed=0, progress=False)
        wall = time.perf_counter() - t
        parts = {k: sum(r[f"seconds_{k}"] for r in log) for k in ("sample", "reward", "update")}
        per_step = wall / steps
        full_steps = scst.config_for(smoke)["steps"]
        rows.append({"what": f"SCST {system.name}", "steps_per_second": 1 / per_step,
                     **{f"share_{k}": v / wall for k, v in parts.items()},
                     "projected_run_s": per_step * full_steps, "runs": len(system.seeds_for(smoke)),
                     "run_ok": per_step * full_steps <= SCST_BUDGET_S})
    t = time.perf_counter()
    probe.measure_rows(s, "xe", 0, probe.system_captions(s, "xe"))
    measure_s = time.perf_counter() - t
    n_runs = len(probe.runs(probe.all_systems(smoke), smoke))
    cold = xe_s + sum(r["projected_run_s"] * r["runs"] for r in rows) + measure_s * n_runs
    rows.append({"what": "probe part, cold (projected)", "projected_run_s": cold, "xe_seconds": xe_s,
                 "measure_table_s": measure_s, "measure_tables": n_runs, "setup_s": setup_s,
                 "cold_ok": cold <= PROBE_BUDGET_S})
    t = time.perf_counter()
    probe.measure_table(s, "xe")  # builds once, then a hit
    t1 = time.perf_counter()
    probe.measure_table(s, "xe")
    rows.append({"what": "measure table from cache (warm rerun unit)", "seconds": time.perf_counter() - t1,
                 "build_or_hit_s": t1 - t})
    out.put({"rows": rows, "peak_mb": _peak_mb()})


def bench_probe(*, smoke: bool = False) -> list[dict]:
    """SCST steps per second by reward and where the step time goes (sampling, the reward, the update), the
    projected time of one default SCST run (against the 5-minute budget) and of the whole probe part cold
    (against 25 minutes), the warm cost of a cached measure table, and the peak memory of a child doing all of
    it against an import-only child (budget 6 GB)."""
    ctx = mp.get_context("spawn")
    ref = measure("__reference__")["peak_mb"]
    q = ctx.Queue()
    p = ctx.Process(target=_probe_child, args=(smoke, 3 if smoke else PROBE_STEPS, q))
    p.start()
    res = q.get(timeout=3600)
    p.join()
    rows = res["rows"]
    rows.append({"what": "peak memory of the probe child", "peak_mb": res["peak_mb"],
                 "peak_mb_over_reference": res["peak_mb"] - ref, "peak_ok": res["peak_mb"] < PEAK_BUDGET_MB})
    return rows


ALIGN_SIZE, ALIGN_SMOKE_SIZE = (100_000, 512), (5_000, 64)  # synthetic float32 pairs (rows, dims)
TARGET_PROCRUSTES_OVER_BARE = 1.5
TARGET_OLS_OVER_PROCRUSTES = 2.0
ALIGN_EQUAL_RTOL = 1e-4  # float32: max |W_ols − W_numpy| / max |W_numpy|
ALIGN_BLAS_THREADS = 1  # on 2 shared cores a parked second BLAS thread costs ~0.1 s per call: ratios drown


def _alignment_child(smoke: bool, out) -> None:
    """Time every fitter of :mod:`analysis.alignment` (best of 3; numpy's lstsq once) on ``y = x R + 0.1 ε``
    for a random rotation ``R``, against the bare ``XᵀY`` + SVD in the same process, with
    ``ALIGN_BLAS_THREADS`` BLAS threads."""
    import numpy as np
    from scipy.linalg import orthogonal_procrustes
    from threadpoolctl import threadpool_limits

    from analysis import alignment
    from analysis.runtime import rng

    threadpool_limits(ALIGN_BLAS_THREADS)

    n, d = ALIGN_SMOKE_SIZE if smoke else ALIGN_SIZE
    g = rng(0)
    x = g.standard_normal((n, d), dtype=np.float32)
    R = np.linalg.qr(g.standard_normal((d, d)))[0].astype(np.float32)
    y = x @ R
    y += np.float32(0.1) * g.standard_normal((n, d), dtype=np.float32)
    after_data = _peak_mb()
    repeats = 3
    bare = alignment.bare_svd_seconds(x, y, repeats=repeats)
    rows = [{"what": "bare XᵀY + SVD (reference)", "seconds": bare, "over_bare": 1.0}]
    fits = {}
    for label, method in (("procrustes", "procrustes"), ("lstsq (normal equations)", "lstsq"),
                          ("ridge (alpha 1)", "ridge"), ("robust-procrustes (5 rounds)", "robust-procrustes")):
        best, call = None, float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            m = alignment.fit_alignment(x, y, method=method)
            call = min(call, time.perf_counter() - t)
            best = m if best is None or m.fit_seconds < best.fit_seconds else best
        fits[method] = best
        rows.append({"what": label, "seconds": best.fit_seconds, "call_seconds": call,
                     "over_bare": best.fit_seconds / bare, "w_error": float(np.linalg.norm(best.W - R)),
                     "solver": best.provenance["solver"]})
    t = time.perf_counter()
    w_np = np.linalg.lstsq(x, y, rcond=None)[0]
    t_np = time.perf_counter() - t
    rows.append({"what": "numpy.linalg.lstsq", "seconds": t_np, "over_bare": t_np / bare,
                 "w_error": float(np.linalg.norm(w_np - R)), "solver": "gelsd"})
    t_sp = _best(lambda: orthogonal_procrustes(x, y), repeats)
    w_sp = orthogonal_procrustes(x, y)[0]
    rows.append({"what": "scipy orthogonal_procrustes", "seconds": t_sp, "over_bare": t_sp / bare})
    t_proc, t_ols = fits["procrustes"].fit_seconds, fits["lstsq"].fit_seconds
    diff_ols = float(np.abs(fits["lstsq"].W - w_np).max() / np.abs(w_np).max())
    diff_proc = float(np.abs(fits["procrustes"].W - w_sp).max() / np.abs(w_sp).max())
    rows.append({"what": f"ratios ({n} x {d} float32, {ALIGN_BLAS_THREADS} BLAS thread)",
                 "procrustes_over_bare": t_proc / bare,
                 "procrustes_ok": bool(t_proc / bare <= TARGET_PROCRUSTES_OVER_BARE),
                 "procrustes_call_over_bare": rows[1]["call_seconds"] / bare,
                 "ols_over_procrustes": t_ols / t_proc, "ols_ok": bool(t_ols / t_proc <= TARGET_OLS_OVER_PROCRUSTES),
                 "numpy_lstsq_over_ols": t_np / t_ols, "ols_vs_numpy_rel_diff": diff_ols,
                 "procrustes_vs_scipy_rel_diff": diff_proc,
                 "equal_ok": bool(diff_ols <= ALIGN_EQUAL_RTOL and diff_proc <= ALIGN_EQUAL_RTOL)})
    peak = _peak_mb()
    rows.append({"what": "peak memory of the alignment child", "peak_mb": peak,
                 "data_mb": (x.nbytes + y.nbytes) / 2**20, "peak_mb_after_data": after_data,
                 "fits_add_mb": peak - after_data})
    out.put(rows)


def bench_alignment(*, smoke: bool = False) -> list[dict]:
    """Fit seconds of each closed-form map of :mod:`analysis.alignment` on 100k × 512 synthetic float32 pairs
    (smoke: 5k × 64), in one child process, against the bare ``XᵀY`` + SVD measured in the same run: targets
    Procrustes ≤ 1.5× bare and OLS (normal equations, Cholesky) ≤ 2× Procrustes, at equal results
    (OLS vs ``numpy.linalg.lstsq``, Procrustes vs scipy, relative max difference ≤ 1e-4); reported beside
    them numpy's ``lstsq`` over OLS, ridge, robust Procrustes, the whole call (checks and data fingerprint
    included: ``call_seconds``) and the child's peak memory against the data's size."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_alignment_child, args=(smoke, q))
    p.start()
    rows = q.get(timeout=3600)
    p.join()
    return rows


SCALE_GRID = {"reward": ["cider-d", "blind"], "seed": [0, 1]}  # the smoke sweep: two probe rewards x two seeds
SCALE_SMOKE_GRID = {"reward": ["blind"], "seed": [0, 1]}
SCALE_WORKERS = (1, 2)
#: cache kinds the sweep builds (removed from each run's copy of the cache, so every run starts equally cold)
SCALE_COLD_KINDS = ("probe-measures", "probe-edits", "probe-image-embeddings", "probe-human-eval-key", "probe-guided")


SCALE_COPIED_KINDS = ("wordnet",)


def _scale_cache(base, dest):
    """A copy of cache ``base`` at ``dest`` (hard links, real copies for :data:`SCALE_COPIED_KINDS`) without what
    the sweep builds: the SCST checkpoints and :data:`SCALE_COLD_KINDS` (the XE captioner, the stand-ins and the
    data stay)."""
    import json
    import os
    import shutil
    from pathlib import Path

    def ignore(folder, names):
        folder = Path(folder)
        if folder == Path(base):
            return [n for n in names if n in SCALE_COLD_KINDS]
        if folder.name == "checkpoints":
            out = []
            for n in names:
                try:
                    meta = json.loads((folder / n / "meta.json").read_text())
                except (OSError, ValueError):
                    continue
                if str(meta.get("name", "")).startswith("scst-"):
                    out.append(n)
            return out
        return []

    def link(src, dst):  # entries are replaced by atomic renames, never written in place: a hard link is a copy
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(base, dest, ignore=ignore, symlinks=True, copy_function=link)
    for kind in SCALE_COPIED_KINDS:  # nltk refuses multiply-linked files (WordNet): real copies
        if (Path(base) / kind).is_dir():
            shutil.rmtree(Path(dest) / kind, ignore_errors=True)
            shutil.copytree(Path(base) / kind, Path(dest) / kind, symlinks=True)
    return dest


def sweep_tables(root) -> dict:
    """``{variant/table: bytes}`` of every result table the variant pages under book root ``root`` wrote (the
    ``*.timings.csv`` wall-time files left out)."""
    from pathlib import Path

    runs = Path(root) / "book" / "generated" / "runs"
    return {f"{p.parent.parent.name}/{p.name}": p.read_bytes() for p in sorted(runs.glob("*/results/*.csv"))
            if not p.name.endswith(".timings.csv")}


def bench_scale(*, smoke: bool = False) -> list[dict]:
    """Wall time of the smoke sweep (:data:`SCALE_GRID`: probe rewards x seeds, each point a variant page with the
    SCST runs it needs as training units) on a local Ray cluster with 1 and with 2 workers (each unit asks for
    one CPU, so ``k`` workers run ``k`` units at once), each from its own equally cold copy of the cache, and
    whether both gave the same result tables byte for byte. ``--smoke``: one reward."""
    import dataclasses
    import os
    import tempfile
    from pathlib import Path

    from analysis import cache, executor, jobs, probe, runner
    from analysis.scorers.training import TRAIN_THREADS

    grid = SCALE_SMOKE_GRID if smoke else SCALE_GRID
    for seed in grid["seed"]:  # every seed's XE captioner and stand-ins in the base cache: both runs copy them
        probe.setup_job(smoke=True, seed=seed, scorers=probe.CROSS_SCORERS)
    rows, tables = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        base = cache.root()
        for k in SCALE_WORKERS:
            root = runner.stage(Path(tmp) / f"book-{k}")
            store = _scale_cache(base, Path(tmp) / f"cache-{k}")
            with runner._environ({"STUDY_CACHE": str(store)}):
                units = [dataclasses.replace(u, resources={"num_cpus": 1})
                         for u in jobs.sweep("probe-cider-d", grid, {"smoke": True}, root=root)]
                ex = executor.RayExecutor(num_cpus=k, max_retries=0)
                results, wall = executor.timed_run(ex, units, progress=False)
            outcomes = {uid: o for uid, o in results.items() if isinstance(o, runner.Outcome)}
            tables[k] = sweep_tables(root)
            rows.append({"what": f"sweep on {k} Ray worker(s)", "workers": k, "units": len(units),
                         "training_units": sum(u.kind == "training" for u in units),
                         "pages": len(outcomes), "seconds": wall, "cores": os.cpu_count(),
                         "threads_per_training_unit": TRAIN_THREADS})
    one, two = rows[0]["seconds"], rows[1]["seconds"]
    same = tables[1] == tables[2] and bool(tables[1])
    rows.append({"what": "1 worker / 2 workers", "speedup": one / two, "grid": json.dumps(grid),
                 "tables": len(tables[1]), "identical_ok": same})
    return rows


BENCHMARKS = {"scorers": bench_scorers, "metrics": bench_metrics, "measures": bench_measures, "probe": bench_probe,
              "alignment": bench_alignment, "scale": bench_scale}


def main(names: list[str] | None = None, *, smoke: bool = False) -> int:
    """Run the named benchmarks (all by default), print a table and the JSON; non-zero if a target is missed."""
    import pandas as pd

    bad = [n for n in names or [] if n not in BENCHMARKS]
    if bad:
        print(f"error: unknown benchmark {bad}; valid: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    ok = True
    for name in names or list(BENCHMARKS):
        rows = BENCHMARKS[name](smoke=smoke)
        df = pd.DataFrame(rows)
        what = {"scorers": f"batch {BATCH}, best of {REPEATS}; overhead target <= {TARGET_OVERHEAD:.0%}",
                "metrics": f"speed-up target >= {TARGET_SPEEDUP:g}x at equal values",
                "measures": "each against its reference in the same run",
                "probe": f"SCST run <= {SCST_BUDGET_S:g} s, probe cold <= {PROBE_BUDGET_S:g} s, peak < "
                         f"{PEAK_BUDGET_MB:g} MB",
                "alignment": f"procrustes <= {TARGET_PROCRUSTES_OVER_BARE:g}x bare XtY + SVD, OLS <= "
                             f"{TARGET_OLS_OVER_PROCRUSTES:g}x procrustes at equal results",
                "scale": "the smoke sweep on 1 vs 2 local Ray workers, equally cold; equal result tables"}.get(name, "")
        print(f"\n== bench {name} ({what})")
        print(df.drop(columns=["label"], errors="ignore").round(3).to_string(index=False))
        print(json.dumps(rows, default=float))
        ok &= bool(df[[c for c in df.columns if c.endswith("_ok")]].all().all())  # every *_ok target column
    return 0 if ok else 1
