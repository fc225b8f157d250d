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


BENCHMARKS = {"scorers": bench_scorers, "metrics": bench_metrics}


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
        what = (f"batch {BATCH}, best of {REPEATS}; overhead target <= {TARGET_OVERHEAD:.0%}" if name == "scorers"
                else f"speed-up target >= {TARGET_SPEEDUP:g}x at equal values")
        print(f"\n== bench {name} ({what})")
        print(df.drop(columns=["label"], errors="ignore").round(3).to_string(index=False))
        print(json.dumps(rows, default=float))
        ok &= bool(df[[c for c in df.columns if c.endswith("_ok")]].all().all())  # every *_ok target column
    return 0 if ok else 1
