"""Plans: the units (:class:`analysis.executor.Unit`) that make a set of pages, for an executor.

:func:`plan` turns ``run`` (pages and parameters) into units, in an order the local executor can follow:

1. the **training units** the pages need (a notebook entry's meta ``jobs`` names a function
   ``jobs(params, device) -> [Unit]``, e.g. :func:`analysis.probe.reward_page_jobs`: the XE captioner and
   stand-ins, then one unit per SCST run), each unit once however many pages need it;
2. one **notebook unit** per page (:func:`analysis.runner.run_notebook`), after its own training units and
   after the pages whose tables it reads: the meta ``reads`` (a list of pages, or ``"all"``: every page before
   it), and for ``runs_last`` pages every other page of the plan.

:func:`sweep` is the same for the cross product of parameter values of one page (every point a variant
page, :func:`analysis.runner.destination`). The pages' own code is unchanged: a page run after its training
units finds every checkpoint in the cache.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Sequence

from analysis import parameters as params_mod
from analysis.executor import Unit, absolute, resources
from analysis.registry import NOTEBOOKS, ROOT, resolve

NOTEBOOK_MEMORY_GB = 4  # a page's request unless its entry's meta says ``memory_gb``
NOTEBOOK_GPU = 0.25  # a page's share of a GPU when the device is CUDA, unless its meta says ``gpus``


def notebook_unit(name: str, params: dict, *, root: Path = ROOT, publish: bool | None = None,
                  after: Sequence[str] = (), device: str | None = None) -> Unit:
    """The unit that runs page ``name`` with ``params`` (checked) into ``root``: id ``notebook:<page or variant>``.
    Its request: the entry's meta ``cpus`` (1), ``memory_gb`` (:data:`NOTEBOOK_MEMORY_GB`) and, when the device is
    CUDA, ``gpus`` (:data:`NOTEBOOK_GPU`: a page scores and measures; its training ran as training units)."""
    from analysis.runner import destination

    publish_ = params_mod.is_default(name, params) if publish is None else publish
    page, _ = destination(name, params, root=Path(root), publish=publish_)
    ident = name if publish_ else page.parent.name
    meta = NOTEBOOKS.entry(name).meta
    return Unit(f"notebook:{ident}", "notebook", "analysis.runner:run_notebook",
                {"name": name, "root": absolute(root), "parameters": params, "publish": publish,
                 "progress": False},
                {"page": name, **params_mod.changed(name, params)},
                resources(cpus=meta.get("cpus", 1), memory_gb=meta.get("memory_gb", NOTEBOOK_MEMORY_GB),
                          gpus=meta.get("gpus", NOTEBOOK_GPU), device=device),
                tuple(dict.fromkeys(after)))


def page_jobs(name: str, params: dict, device: str | None = None) -> list[Unit]:
    """The training units page ``name`` needs with ``params`` (its entry's meta ``jobs``; none without)."""
    target = NOTEBOOKS.entry(name).meta.get("jobs")
    return list(resolve(target)(params, device)) if target else []


def _reads(name: str, before: Sequence[str], plan_pages: Sequence[str]) -> list[str]:
    """The pages of this plan that page ``name`` waits for (module docstring)."""
    meta = NOTEBOOKS.entry(name).meta
    if meta.get("runs_last"):
        return [p for p in plan_pages if p != name and not NOTEBOOKS.entry(p).meta.get("runs_last")]
    reads = meta.get("reads") or []
    if reads == "all":
        return list(before)
    return [p for p in reads if p in plan_pages]


def _assemble(points: list[tuple[str, dict]], *, root: Path, publish: bool | None, device: str | None) -> list[Unit]:
    training: dict[str, Unit] = {}
    pages: list[tuple[str, dict, list[str]]] = []
    for name, params in points:
        jobs = page_jobs(name, params, device)
        for u in jobs:
            training.setdefault(u.id, u)
        pages.append((name, params, [u.id for u in jobs]))
    names = [n for n, _, _ in pages]
    units: list[Unit] = list(training.values())
    ids: dict[str, list[str]] = {}  # page name -> its notebook unit ids so far
    for i, (name, params, jobs) in enumerate(pages):
        waits = [uid for p in _reads(name, names[:i], names) for uid in ids.get(p, [])]
        u = notebook_unit(name, params, root=root, publish=publish, after=[*jobs, *waits], device=device)
        units.append(u)
        ids.setdefault(name, []).append(u.id)
    return units


def plan(names: Sequence[str] | None = None, parameters: dict | None = None, *, root: Path = ROOT,
         publish: bool | None = None, device: str | None = None) -> list[Unit]:
    """The units that run pages ``names`` (all when empty) with ``parameters``, in the runner's order
    (:func:`analysis.runner.run_order`), training units first (module docstring)."""
    from analysis.runner import run_order

    names = run_order(list(names or NOTEBOOKS.names()))
    checked = params_mod.check_many(names, parameters or {})
    return _assemble([(n, checked[n]) for n in names], root=root, publish=publish, device=device)


def grid_points(grid: dict[str, Sequence[Any]]) -> list[dict]:
    """The cross product of ``grid`` (``{key: [values]}``), the first key varying slowest.

    >>> grid_points({"reward": ["cider-d", "blind"], "seed": [0, 1]})
    [{'reward': 'cider-d', 'seed': 0}, {'reward': 'cider-d', 'seed': 1}, {'reward': 'blind', 'seed': 0}, {'reward': 'blind', 'seed': 1}]
    """
    for k, v in grid.items():
        if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not len(v):
            raise params_mod.ParameterError(f"sweep: --grid {k} needs a non-empty list of values (e.g. '[0, 1]'), "
                                            f"not {v!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def sweep(name: str, grid: dict[str, Sequence[Any]], parameters: dict | None = None, *, root: Path = ROOT,
          device: str | None = None) -> list[Unit]:
    """The units of page ``name`` at every point of ``grid`` (:func:`grid_points`) on top of ``parameters``: each
    point is a variant page (never the book's page, even at the defaults), with the training units it needs."""
    NOTEBOOKS.entry(name)
    points = []
    for point in grid_points(grid):
        clash = set(point) & set(parameters or {})
        if clash:
            raise params_mod.ParameterError(f"sweep: {', '.join(sorted(clash))} is both swept (--grid) and fixed "
                                            "(-p/--seed/--smoke); give it once")
        points.append((name, params_mod.check(name, {**(parameters or {}), **point})))
    return _assemble(points, root=root, publish=False, device=device)
