"""Command line of the study: ``python -m analysis {list,fetch,run,book,check,all,bench}``.

Examples::

    python -m analysis list                       # models, datasets, notebooks
    python -m analysis list scorers               # one notebook's parameters: types, defaults, ranges
    python -m analysis run data                   # the data chapter with its defaults: the book's page
    python -m analysis run data -p seed 3         # another parameter set: book/generated/runs/data-seed3-<hash>/
    python -m analysis run data -p seed 3 --publish   # ... and make it the book's page
    python -m analysis run --smoke                # every notebook at smoke size (never the book's pages)
    python -m analysis all                        # every notebook, then the book
    python -m analysis all --smoke                # a smoke book in _build/smoke-root (the real pages stay)
    python -m analysis check --root _build/smoke-root   # that book in headless Chromium: links, a11y, search
    python -m analysis bench scorers              # throughput and wrapper overhead
    python -m analysis run probe-cider-d probe-clip-mini --executor ray   # SCST runs in parallel, then the pages
    python -m analysis sweep probe-cider-d --grid reward '[cider-d, blind]' --grid seed '[0, 1]' --smoke --executor ray

Training progress in the notebook kernels is echoed to this terminal when stderr is a
terminal, or when STUDY_LOG_NOTEBOOKS=1 (e.g. in a log file). Modules named in
STUDY_PLUGINS=mod1,mod2 are imported here and in every notebook kernel.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from analysis.registry import DATASETS, NOTEBOOKS, ROOT, SCORERS


def _params(args) -> dict:
    """``-p KEY VALUE`` pairs (VALUE parsed as YAML) plus ``--smoke`` and ``--seed``; checked later against
    :mod:`analysis.parameters`."""
    params = _yaml_pairs(args.param, "-p")
    if args.smoke:
        params["smoke"] = True
    if args.seed is not None:
        params["seed"] = args.seed
    return params


def _yaml_pairs(pairs, flag: str) -> dict:
    """``{KEY: VALUE parsed as YAML}`` of ``flag KEY VALUE`` pairs; a value that is not YAML is a
    :class:`~analysis.parameters.ParameterError` naming the flag."""
    out = {}
    for k, v in pairs or []:
        try:
            out[k] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            from analysis.parameters import ParameterError

            raise ParameterError(f"{flag} {k} {v!r}: the value is not valid YAML ({e.problem}); quote lists as "
                                 f"'[a, b]'") from None
    return out


def _parameter_tables(names: list[str] | None) -> str:
    from analysis import parameters

    return "\n\n".join(parameters.describe(n) for n in (names or NOTEBOOKS.names()))


def cmd_list(args) -> int:
    import pandas as pd

    from analysis.registry import METRICS

    regs = {"models": SCORERS, "datasets": DATASETS, "metrics": METRICS, "notebooks": NOTEBOOKS}
    if args.what and args.what not in regs:
        if args.what in NOTEBOOKS:  # a notebook's name: its parameters
            print(_parameter_tables([args.what]))
            return 0
        NOTEBOOKS.entry(args.what)  # UnknownNameError with the close matches
    pd.set_option("display.max_colwidth", 90, "display.width", 200)
    for title, reg in (("models (scorers)", SCORERS), ("datasets", DATASETS), ("caption metrics", METRICS),
                       ("notebooks", NOTEBOOKS)):
        if args.what is None or regs[args.what] is reg:
            print(f"\n{title}:\n{reg.table().to_string(index=False)}")
    if args.what in (None, "notebooks"):
        print("\n(python -m analysis list NOTEBOOK shows a notebook's parameters)")
    return 0


def cmd_fetch(args) -> int:
    from analysis.datacards import EMBEDDED, load_with_fallback

    for name in args.datasets or EMBEDDED:
        t = time.perf_counter()
        ds, reason = load_with_fallback(name)
        print(f"{name}: {len(ds)} items ({ds.name}) in {time.perf_counter() - t:.1f} s"
              + (f" [{len(ds.skipped)} damaged or undecodable file(s) skipped: {ds.skipped[0][0]}: "
                 f"{ds.skipped[0][1]}{' ...' if len(ds.skipped) > 1 else ''}]" if ds.skipped else "")
              + (f" [fallback: {reason}]" if reason else ""))
    if not args.datasets:  # the WordNet nltk_data folder (visual words), built from Debian like the datasets
        from analysis import wordnet
        from analysis.data.base import DataUnavailable

        t = time.perf_counter()
        try:
            folder = wordnet.nltk_data_dir()
            files = [p for p in (folder / "corpora" / "wordnet").iterdir() if p.is_file()]
            print(f"wordnet: {len(files)} files, {sum(p.stat().st_size for p in files) / 2**20:.1f} MiB "
                  f"(WordNet 3.0, nltk_data folder) in {time.perf_counter() - t:.1f} s")
        except DataUnavailable as e:
            print(f"wordnet: unavailable (visual words need it; pass wordnet=False to do without): {e}")
    return 0


def _root(args) -> tuple[Path, bool]:
    """``(root, explicit)``: ``--root`` if given and not the repository, else the repository."""
    if args.root is None:
        return ROOT, False
    from analysis.runner import is_repository

    root = Path(args.root)
    return root, not is_repository(root)


def _publish(args, params: dict, staged: bool) -> bool | None:
    """Publish smoke pages only into a staged root; otherwise when asked (``--publish``), else the runner
    decides (the default parameter set is the book's page)."""
    if params.get("smoke") and staged:
        return True
    return True if getattr(args, "publish", False) else None


def _device(args) -> None:
    """``--device``: checked (:func:`analysis.runtime.resolve_device`), then set as ``$STUDY_DEVICE`` for this process,
    every kernel and every Ray worker."""
    import os

    dev = getattr(args, "device", None)
    if not dev:
        return
    from analysis.parameters import ParameterError
    from analysis.runtime import DeviceUnavailable, resolve_device

    try:
        resolve_device(dev)
    except (ValueError, DeviceUnavailable) as e:
        raise ParameterError(f"--device: {e}") from None
    os.environ["STUDY_DEVICE"] = dev


def _executor(args):
    """The executor of ``--executor`` (None: the pages run one after another here, as always); ``--keep-going``
    alone means the local executor."""
    from analysis import executor

    name = getattr(args, "executor", None) or ("local" if getattr(args, "keep_going", False) else None)
    if name is None:
        if getattr(args, "address", None):
            raise executor.ExecutorError("--address needs --executor ray")
        return None
    return executor.make(name, address=args.address, num_cpus=args.num_cpus, max_retries=args.max_retries)


def cmd_run(args, *, root: Path | None = None, staged: bool | None = None) -> int:
    from analysis.runner import run

    if root is None:
        root, staged = _root(args)
    params = _params(args)
    _device(args)
    outcomes = run(args.names, root=root, parameters=params, publish=_publish(args, params, staged),
                   executor=_executor(args), keep_going=getattr(args, "keep_going", False))
    print("notebook times (s): " + ", ".join(f"{k} {o.seconds:.1f}" for k, o in outcomes.items()))
    variants = [o for o in outcomes.values() if not o.published]
    if variants:
        print("not in the book (other parameters than the defaults): "
              + ", ".join(str(o.page.parent) for o in variants)
              + ("" if any(o.smoke for o in variants) else "; --publish makes a run the book's page"))
    return 0


def cmd_book(args, *, root: Path | None = None, allow_smoke: bool | None = None) -> int:
    from analysis.runner import build_book

    root = Path(root or args.root or ROOT)
    rc = build_book(root, allow_smoke=args.allow_smoke if allow_smoke is None else allow_smoke)
    if rc == 0:
        print(f"book built: {root / '_build' / 'html' / 'index.html'}")
    if rc == 0 and getattr(args, "pdf", False):
        rc = _book_pdf(root)
    if rc == 0 and getattr(args, "check", False):
        rc = cmd_check(args, root=root)
    return rc


def cmd_check(args, *, root: Path | None = None) -> int:
    """The built book in headless Chromium (analysis.browser.check_book): prints the report; 1 on any problem."""
    from analysis import browser

    root = Path(root or args.root or ROOT)
    try:
        report = browser.check_book(root, screenshots=not getattr(args, "no_screenshots", False))
    except (browser.BrowserUnavailable, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.format())
    return 1 if report.problems() else 0


def _book_pdf(root: Path) -> int:
    """``book --pdf``: every built page printed by headless Chromium in TOC order, merged (analysis.pdf)."""
    from analysis.pdf import PdfError, make_pdf

    try:
        made = make_pdf(root)
    except PdfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"book PDF: {made.path} ({made.pdf_pages} PDF pages from {len(made.pages)} book pages, "
          f"{made.seconds:.1f} s)")
    return 0


def cmd_all(args) -> int:
    from analysis.runner import SMOKE_ROOT, stage

    t = time.perf_counter()
    root, staged = _root(args)
    smoke = bool(args.smoke or _params(args).get("smoke"))
    if smoke and not staged:  # the repository's pages stay: a separate smoke book
        root, staged = stage(SMOKE_ROOT), True
        print(f"smoke run: staging a separate book in {root} (the repository's pages are not touched)")
    rc = cmd_run(args, root=root, staged=staged) or cmd_book(args, root=root, allow_smoke=smoke or args.allow_smoke)
    print(f"total {time.perf_counter() - t:.1f} s")
    return rc


def cmd_sweep(args) -> int:
    from analysis import jobs
    from analysis.executor import LocalExecutor
    from analysis.parameters import ParameterError
    from analysis.runner import run_units

    root, _ = _root(args)
    params = _params(args)
    grid = _yaml_pairs(args.grid, "--grid")
    if not grid:
        raise ParameterError("sweep: give at least one --grid KEY '[v1, v2]'")
    _device(args)
    units = jobs.sweep(args.name, grid, params, root=root)
    outcomes = run_units(units, _executor(args) or LocalExecutor(), keep_going=args.keep_going)
    print(f"{len(outcomes)} variant page(s); their tables: " + ", ".join(str(o.results) for o in outcomes.values()))
    return 0


def cmd_embed(args) -> int:
    """Embed a datastore in shards on an executor (analysis.captioning.retrieval.build_datastore_sharded)."""
    from analysis.captioning import retrieval
    from analysis.executor import LocalExecutor
    from analysis.metrics import CLIP_S_PREFIX
    from analysis.parameters import ParameterError

    _device(args)
    if args.captions:
        path = Path(args.captions)
        if not path.is_file():
            raise ParameterError(f"--captions {path}: no such file; give a UTF-8 text file with one caption per line")
        caps = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        caps = retrieval.training_captions(smoke=args.smoke)
    prefix = CLIP_S_PREFIX if args.prefix is None else args.prefix
    t = time.perf_counter()
    store = retrieval.build_datastore_sharded(caps, args.scorer, executor=_executor(args) or LocalExecutor(),
                                              shard_size=args.shard_size or retrieval.SHARD_SIZE, prefix=prefix,
                                              smoke=args.smoke, seed=args.seed or 0)
    print(f"datastore: {len(store)} captions x {store.dim} dims embedded by {store.name} in "
          f"{time.perf_counter() - t:.1f} s (cached in {retrieval.DATASTORE_KIND}; fingerprint {store.fingerprint[:12]})")
    return 0


def cmd_bench(args) -> int:
    from analysis import bench

    return bench.main(args.names, smoke=args.smoke)


class _HelpWithParameters(argparse.Action):
    """``run NAME --help``: the command's help, then the parameters of the named notebooks (all if none)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        names = [n for n in (getattr(namespace, "names", None) or []) if n in NOTEBOOKS]
        print("\n" + _parameter_tables(names))
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registered models, datasets, caption metrics and notebooks, or one notebook's parameters")
    s.add_argument("what", nargs="?", metavar="WHAT",
                   help=f"models, datasets, metrics or notebooks; or a notebook name ({', '.join(NOTEBOOKS.names())}) to "
                        f"show its parameters")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("fetch", help="fetch and build the embedded datasets (and the WordNet folder) into the cache")
    s.add_argument("datasets", nargs="*", help=f"dataset names (default: the embedded ones); valid: {', '.join(DATASETS.names())}")
    s.set_defaults(fn=cmd_fetch)

    def run_args(s, *, publish: bool = True):
        s.add_argument("-h", "--help", action=_HelpWithParameters,
                       help="show this help and the parameters of the named notebooks (all when none is named)")
        s.add_argument("names", nargs="*", help=f"notebooks to run (default: all, in book order, except that pages reading the others' tables run "
                            f"last: {', '.join(n for n in NOTEBOOKS.names() if NOTEBOOKS.entry(n).meta.get('runs_last'))}): "
                            f"{', '.join(NOTEBOOKS.names())}")
        page_args(s)
        if publish:
            s.add_argument("--publish", action="store_true",
                           help="make this (non-default, non-smoke) parameter set the book's page and tables")
        executor_args(s)

    def page_args(s):
        s.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                       help="set a notebook parameter; VALUE is YAML (-p scorers '[clip-mini, blind]'; a bare name is "
                            "a one-element list). Checked before any kernel starts; see 'list NOTEBOOK'")
        s.add_argument("--smoke", action="store_true",
                       help="tiny sizes (parameter smoke=True); results go to book/generated/runs/, never the book")
        s.add_argument("--seed", type=int, help="set the parameter seed")
        s.add_argument("--root", default=None,
                       help="book root holding _config.yml, _toc.yml, book/ (default: the repository). In another "
                            "root (e.g. one made by runner.stage) smoke runs are that book's pages")

    def executor_args(s):
        g = s.add_argument_group("executors (analysis.executor)")
        g.add_argument("--executor", choices=["local", "ray"], default=None,
                       help="run the plan's units (training jobs, then pages) on an executor: local (in order, "
                            "here) or ray (each unit a Ray task with its own CPU/GPU/memory request; needs "
                            "pip install -e '.[ray]'). Default for run/all: none, the pages one after another here, "
                            "each training in its kernel; for sweep/embed: local")
        g.add_argument("--address", default=None,
                       help="with --executor ray: join this running cluster (auto, HOST:PORT, ray://HOST:10001; "
                            "$STUDY_CACHE must be on storage every node sees); default: start a local one")
        g.add_argument("--num-cpus", type=int, default=None,
                       help="with --executor ray and no --address: CPUs of the local cluster (default: all)")
        g.add_argument("--max-retries", type=int, default=1,
                       help="with --executor ray: reruns of a unit whose worker process died (default 1)")
        g.add_argument("--keep-going", action="store_true",
                       help="after a failed unit, let the others finish (units waiting for it are skipped), "
                            "then exit 1 naming every failure; default: stop at the first failure")
        g.add_argument("--device", default=None,
                       help="cpu, cuda, cuda:N or mps for every trainer and scorer (sets STUDY_DEVICE for the "
                            "kernels and workers; default: CUDA when visible, else CPU)")

    epilog = ("The template's default parameters write the book's page book/generated/<name>.ipynb and its tables "
              "book/generated/results/; any other parameter set (smoke too) writes "
              "book/generated/runs/<name>-<parameters>-<hash>/. A failed or killed run leaves the last good page. "
              "Kernel output (training progress) is echoed when stderr is a terminal or STUDY_LOG_NOTEBOOKS=1.")
    s = sub.add_parser("run", help="execute notebook templates with papermill into book/generated/",
                       add_help=False, epilog=epilog)
    run_args(s)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("sweep", help="run one page over a grid of parameter values (variant pages), on an executor",
                       epilog="Example: python -m analysis sweep probe-cider-d --grid reward '[cider-d, blind]' "
                              "--grid seed '[0, 1]' --smoke --executor ray. Every point is a variant page "
                              "(book/generated/runs/<name>-<parameters>-<hash>/), never the book's page; the training "
                              "units the points need run first, each once. Without --executor the local one runs "
                              "the units in order.")
    s.add_argument("name", help=f"the page to sweep: {', '.join(NOTEBOOKS.names())}")
    s.add_argument("--grid", nargs=2, action="append", metavar=("KEY", "VALUES"),
                   help="a swept parameter and its values as a YAML list, e.g. --grid seed '[0, 1]'; several --grid "
                        "give their cross product")
    page_args(s)  # fixed for every point
    executor_args(s)
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("embed", help="embed a retrieval datastore in shards on an executor (the ReCap pages then "
                                     "find it in the cache)",
                       epilog="Default: the probe's training captions with the prefix the Realignment pages use, so "
                              "realign-captions finds the store in the cache. The shards are merged in order; the "
                              "result is byte-identical to a single pass and cached under the same key.")
    s.add_argument("--scorer", default="clip-mini", help="a dual-encoder scorer (default clip-mini, the CLIP-style "
                                                         "stand-in; e.g. clip:ViT-B-32/openai with published weights)")
    s.add_argument("--captions", default=None, help="a text file, one caption per line (default: the training captions)")
    s.add_argument("--prefix", default=None, help="text put before every caption (default: the CLIP-S prompt "
                                                  "'A photo depicts ')")
    s.add_argument("--shard-size", type=int, default=None, help="captions per unit (default 4096; rounded up to a "
                                                                "multiple of the scorer's batch size)")
    s.add_argument("--smoke", action="store_true", help="tiny sizes (the smoke stand-in and captions)")
    s.add_argument("--seed", type=int, default=None, help="the stand-in's seed (default 0)")
    executor_args(s)
    s.set_defaults(fn=cmd_embed)

    s = sub.add_parser("book", help="build the book (jupyter-book, warnings as errors, no execution)",
                       epilog="Refuses (exit 1) a page that is missing, shows an error or ran with smoke=True; "
                              "warns when the Reproducibility page is older than the chapters.")
    s.add_argument("--root", default=None, help="book root (default: the repository)")
    s.add_argument("--allow-smoke", action="store_true", help="build even if pages were executed with smoke=True")
    s.add_argument("--pdf", action="store_true",
                   help="then print every page in TOC order with headless Chromium into _build/pdf/book.pdf "
                        "(one PDF with a bookmark per page)")
    s.add_argument("--check", action="store_true", help="then check the built book in headless Chromium (see 'check')")
    s.set_defaults(fn=cmd_book)

    s = sub.add_parser("check", help="check the built book in headless Chromium: console errors, images, math, "
                                     "links, accessibility (axe-core), offline search; full-page screenshots",
                       epilog="Exit 1 when any page has a problem; serious/critical axe-core violations fail unless "
                              "book/a11y-allowlist.yml accepts them with a reason. Screenshots go to "
                              "<root>/_build/screenshots/.")
    s.add_argument("--root", default=None, help="book root holding _build/html (default: the repository)")
    s.add_argument("--no-screenshots", action="store_true", help="skip the full-page screenshots")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("all", help="run every notebook, then build the book", add_help=False,
                       epilog=epilog + " With --smoke and no --root, a separate book is staged in _build/smoke-root.")
    run_args(s)
    s.add_argument("--allow-smoke", action="store_true", help="build the book even if some pages are smoke pages")
    s.set_defaults(fn=cmd_all)

    s = sub.add_parser("bench", help="benchmarks: ratios against a reference measured in the same run")
    s.add_argument("names", nargs="*", help="benchmarks to run (default: all): scorers (throughput, wrapper overhead, memory), metrics (fast CIDEr-D vs pycocoevalcap), measures (perplexity, grammar detector, METEOR per call), probe (SCST steps per second by reward, projected run and cold-probe times, peak memory), alignment (closed-form fit times on 100k x 512 pairs against a bare XtY + SVD), scale (the smoke probe sweep on 1 vs 2 local Ray workers: wall times, ratio, equal result tables; needs the .[ray] extra)")
    s.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark itself runs")
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from analysis.parameters import ParameterError
    from analysis.registry import UnknownNameError
    from analysis.executor import ExecutorError, RunFailed
    from analysis.runner import NotebookFailed, RunRefused

    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except (UnknownNameError, ParameterError, RunRefused, ExecutorError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (NotebookFailed, RunFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
