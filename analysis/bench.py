"""Benchmarks, each measured as a ratio against a reference in the same run.

``python -m analysis bench scorers``: for every scorer, on one batch of
``BATCH`` (image, caption) pairs from ``sample-photos``:

* pairs per second of ``scorer.score`` (best of ``REPEATS`` runs);
* the wrapper overhead ``t(score) / t(_score_batch) − 1``, where ``_score_batch``
  is the bare model call on the same batch under ``torch.no_grad`` (target ≤ 10%);
* peak resident memory of a child process that builds the scorer and scores the
  batch, against a child that only imports torch (the reference).

Each scorer runs in its own child process so peaks do not mix.
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
    kwargs = {"smoke": smoke} if registry.SCORERS.entry(name).meta.get("source") == "embedded" else {}
    scorer = registry.get_scorer(name, **kwargs)
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


BENCHMARKS = {"scorers": bench_scorers}


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
        print(f"\n== bench {name} (batch {BATCH}, best of {REPEATS}; overhead target <= {TARGET_OVERHEAD:.0%})")
        print(df.drop(columns=["label"], errors="ignore").round(3).to_string(index=False))
        print(json.dumps(rows, default=float))
        ok &= bool(df["overhead_ok"].all())
    return 0 if ok else 1
