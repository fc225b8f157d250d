"""Command line of the study: ``python -m analysis {list,fetch,run,book,all,bench}``.

Examples::

    python -m analysis list                       # models, datasets, notebooks
    python -m analysis run data -p seed 3         # one notebook with another seed
    python -m analysis run --smoke                # every notebook at smoke size
    python -m analysis all                        # every notebook, then the book
    python -m analysis bench scorers              # throughput and wrapper overhead
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from analysis.registry import DATASETS, NOTEBOOKS, ROOT, SCORERS


def _params(args) -> dict:
    params = {k: yaml.safe_load(v) for k, v in (args.param or [])}
    if args.smoke:
        params["smoke"] = True
    if args.seed is not None:
        params["seed"] = args.seed
    return params


def cmd_list(args) -> int:
    import pandas as pd

    pd.set_option("display.max_colwidth", 90, "display.width", 200)
    for title, reg in (("models (scorers)", SCORERS), ("datasets", DATASETS), ("notebooks", NOTEBOOKS)):
        if args.what in (None, title.split()[0]):
            print(f"\n{title}:\n{reg.table().to_string(index=False)}")
    return 0


def cmd_fetch(args) -> int:
    from analysis.datacards import EMBEDDED, load_with_fallback

    for name in args.datasets or EMBEDDED:
        t = time.perf_counter()
        ds, reason = load_with_fallback(name)
        print(f"{name}: {len(ds)} items ({ds.name}) in {time.perf_counter() - t:.1f} s"
              + (f" [fallback: {reason}]" if reason else ""))
    return 0


def cmd_run(args) -> int:
    from analysis.runner import NotebookFailed, run

    try:
        times = run(args.names, root=Path(args.root), parameters=_params(args))
    except NotebookFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("notebook times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    return 0


def cmd_book(args) -> int:
    from analysis.runner import build_book

    rc = build_book(Path(args.root))
    if rc == 0:
        print(f"book built: {Path(args.root) / '_build' / 'html' / 'index.html'}")
    return rc


def cmd_all(args) -> int:
    t = time.perf_counter()
    rc = cmd_run(args) or cmd_book(args)
    print(f"total {time.perf_counter() - t:.1f} s")
    return rc


def cmd_bench(args) -> int:
    from analysis import bench

    return bench.main(args.names, smoke=args.smoke)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list registered models, datasets and notebooks")
    s.add_argument("what", nargs="?", choices=["models", "datasets", "notebooks"], help="only this registry")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("fetch", help="fetch and build the embedded datasets into the cache")
    s.add_argument("datasets", nargs="*", help=f"dataset names (default: the embedded ones); valid: {', '.join(DATASETS.names())}")
    s.set_defaults(fn=cmd_fetch)

    def run_args(s):
        s.add_argument("names", nargs="*", help=f"notebooks to run (default: all, in order): {', '.join(NOTEBOOKS.names())}")
        s.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"),
                       help="set a notebook parameter; VALUE is parsed as YAML (e.g. -p scorers '[clip-mini, blind]')")
        s.add_argument("--smoke", action="store_true", help="tiny sizes (sets the parameter smoke=True)")
        s.add_argument("--seed", type=int, help="set the parameter seed")
        s.add_argument("--root", default=str(ROOT), help="book root holding _config.yml, _toc.yml, book/ (default: the repository)")

    s = sub.add_parser("run", help="execute notebook templates with papermill into book/generated/")
    run_args(s)
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("book", help="build the book (jupyter-book, warnings as errors, no execution)")
    s.add_argument("--root", default=str(ROOT), help="book root (default: the repository)")
    s.set_defaults(fn=cmd_book)

    s = sub.add_parser("all", help="run every notebook, then build the book")
    run_args(s)
    s.set_defaults(fn=cmd_all)

    s = sub.add_parser("bench", help="benchmarks: ratios against a reference measured in the same run")
    s.add_argument("names", nargs="*", help="benchmarks to run (default: all): scorers")
    s.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmark itself runs")
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    from analysis.registry import UnknownNameError

    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except UnknownNameError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
