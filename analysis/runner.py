"""Execute notebook templates with papermill and build the book with jupyter-book.

A *book root* is a folder holding ``_config.yml``, ``_toc.yml`` and ``book/``;
executed notebooks go to ``<root>/book/generated/<name>.ipynb`` and result tables
to ``<root>/book/generated/results/``. The repository is the default root; tests
stage a copy elsewhere with :func:`stage`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from analysis.registry import NOTEBOOKS, ROOT, notebook_template
from analysis.runtime import set_offline

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
KERNEL = "python3"


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message names the notebook and the cell."""


def generated(root: Path = ROOT) -> Path:
    return Path(root) / "book" / "generated"


def stage(dest: Path) -> Path:
    """Copy the book sources (config, TOC, prose pages; no generated output) to ``dest``."""
    dest = Path(dest)
    for name in BOOK_SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("generated", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _failed_cell(nb_path: Path) -> str:
    """Describe the first cell whose output is an error: its index and first source line."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {i} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "unknown cell"


def run_notebook(name: str, *, root: Path = ROOT, parameters: dict | None = None, progress: bool = True,
                 log_output: bool | None = None) -> Path:
    """Execute template ``name`` with ``parameters`` into ``<root>/book/generated/<name>.ipynb``.

    ``log_output`` streams the kernel's output (training progress bars included) to this terminal;
    by default it is on when stderr is a terminal or ``STUDY_LOG_NOTEBOOKS=1``.
    """
    import logging

    import papermill as pm

    if log_output is None:
        log_output = sys.stderr.isatty() or os.environ.get("STUDY_LOG_NOTEBOOKS") == "1"
    if log_output:
        logging.basicConfig(level=logging.INFO, format="    %(message)s")

    set_offline()
    out_dir = generated(root)
    (out_dir / "results").mkdir(parents=True, exist_ok=True)
    os.environ["STUDY_RESULTS"] = str(out_dir / "results")
    out = out_dir / f"{name}.ipynb"
    try:
        pm.execute_notebook(str(notebook_template(name)), str(out), parameters=parameters or {},
                            kernel_name=KERNEL, cwd=str(out_dir), progress_bar=progress, log_output=log_output)
    except pm.PapermillExecutionError as e:
        raise NotebookFailed(f"notebook '{name}' failed at {_failed_cell(out)} (executed copy: {out})") from e
    return out


def run(names: list[str] | None = None, *, root: Path = ROOT, parameters: dict | None = None) -> dict[str, float]:
    """Run notebooks in registry order (all when ``names`` is empty); return seconds per notebook."""
    names = names or NOTEBOOKS.names()
    for n in names:
        NOTEBOOKS.entry(n)  # unknown names fail before anything runs
    times = {}
    for n in names:
        t = time.perf_counter()
        print(f"==> running notebook '{n}'", flush=True)
        run_notebook(n, root=root, parameters=parameters)
        times[n] = time.perf_counter() - t
        print(f"    '{n}' done in {times[n]:.1f} s", flush=True)
    return times


def build_book(root: Path = ROOT) -> int:
    """``jupyter-book build <root> -W -n --keep-going``: warnings are errors; returns the exit code."""
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "-W", "-n", "--keep-going"]
    print("==> " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=root).returncode
