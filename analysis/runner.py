"""Execute notebook templates with papermill and build the book with jupyter-book.

A *book root* is a folder holding ``_config.yml``, ``_toc.yml`` and ``book/``. The
repository is the default root; tests and smoke books stage a copy elsewhere with
:func:`stage`.

Where a run goes (:func:`destination`):

* the template's default parameters (or ``publish=True``): the book's page
  ``<root>/book/generated/<name>.ipynb`` and its tables in ``<root>/book/generated/results/``;
* any other parameter set, smoke included: a variant folder
  ``<root>/book/generated/runs/<name>-<changed parameters>-<hash>/`` holding ``<name>.ipynb``
  and ``results/``, which the book never shows.

Smoke pages are never published into the repository's book (:class:`RunRefused`).
Every run executes into a ``.tmp-<name>-<pid>-<token>/`` folder beside its destination
(the notebook and its result tables); only when every cell succeeded do the tables and
then the page move into place, so a failed or killed run leaves the last good page and
tables as they were. Leftover ``.tmp-*`` folders of dead processes are removed by the
next run.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from analysis import parameters as params_mod
from analysis.registry import NOTEBOOKS, ROOT, notebook_template
from analysis.runtime import import_path, set_offline

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
KERNEL = "python3"
# ipykernel warns "Kernel is running over TCP without encryption" at WARNING level on every start:
# the kernel's own log (not the notebook's output) is shown from ERROR up. Without ipywidgets,
# tqdm.auto warns "IProgress not found" and falls back to the text bar, which is what we want.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR",
               "--IPKernelApp.exec_lines=import warnings; warnings.filterwarnings('ignore', 'IProgress not found')"]
TMP_PREFIX = ".tmp-"
RUNS = "runs"
APPENDIX = "reproducibility"  # the page that describes every other page's provenance
SMOKE_ROOT = ROOT / "_build" / "smoke-root"
LOG_ENV = "STUDY_LOG_NOTEBOOKS"


class NotebookFailed(RuntimeError):
    """A notebook cell raised or its kernel died; the message names the notebook, the cell and what to do."""


class RunRefused(ValueError):
    """A run that would put a smoke page into the repository's book."""


@dataclass
class Outcome:
    """What one notebook run produced and where it went."""

    name: str
    page: Path
    results: Path
    published: bool
    parameters: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def smoke(self) -> bool:
        return bool(self.parameters.get("smoke"))


# ----------------------------------------------------------------------------- places
def generated(root: Path = ROOT) -> Path:
    return Path(root) / "book" / "generated"


def is_repository(root: Path) -> bool:
    """True when ``root`` is this repository (whose book must never show smoke pages)."""
    return Path(root).resolve() == ROOT.resolve()


def stage(dest: Path) -> Path:
    """Copy the book sources (config, TOC, prose pages; no generated output) to ``dest``.

    An existing ``dest`` is refreshed: sources are overwritten, its ``book/generated`` is kept.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("generated", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def destination(name: str, params: dict, *, root: Path = ROOT, publish: bool) -> tuple[Path, Path]:
    """``(page, results folder)`` of a run: the book's page when ``publish``, else the variant folder
    ``book/generated/runs/<parameters.variant_name(name, params)>/``."""
    gen = generated(root)
    if publish:
        return gen / f"{name}.ipynb", gen / "results"
    folder = gen / RUNS / params_mod.variant_name(name, params)
    return folder / f"{name}.ipynb", folder / "results"


def command(names: list[str], *, root: Path = ROOT, extra: str = "") -> str:
    """The command line that (re)makes ``names`` in ``root``."""
    where = "" if is_repository(root) else f" --root {root}"
    return f"python -m analysis run {' '.join(names)}{extra}{where}".replace("  ", " ")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


OTHER_HOST_STALE_S = 24 * 3600  # a run folder of another machine (shared storage) is stale only after this long


def host_tag() -> str:
    """8 hex digits naming this machine (sha256 of its host name): part of a run's temporary folder name, so that
    on storage several machines share, a run never judges another machine's run by a process id of its own."""
    import hashlib
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def sweep_stale(folder: Path) -> list[Path]:
    """Remove ``.tmp-*`` entries in ``folder`` left by runs whose process no longer exists: on this machine, a
    process id that is gone; of another machine (a Ray worker on shared storage), one untouched for
    :data:`OTHER_HOST_STALE_S`."""
    removed, here = [], host_tag()
    for p in sorted(Path(folder).glob(TMP_PREFIX + "*")):
        m = re.match(rf"{re.escape(TMP_PREFIX)}.*-(\d+)(?:\.([0-9a-f]{{8}}))?-[0-9a-f]+$", p.name)
        if m and m.group(2) not in (None, here):
            if time.time() - p.stat().st_mtime < OTHER_HOST_STALE_S:
                continue  # another machine's run: its process ids mean nothing here
        elif m and _alive(int(m.group(1))) and int(m.group(1)) != os.getpid():
            continue  # another run in progress
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed


# ----------------------------------------------------------------------------- echo of kernel output
class _Echo:
    """File-like sink for the kernel's stdout/stderr streams (papermill's ``stdout_file``): shows training
    progress bars on this terminal, one updating line per bar (every 10 s a new line when not a terminal)."""

    def __init__(self, name: str, stream=None, every: float = 10.0):
        self.name, self.stream, self.every = name, stream or sys.stderr, every
        self.tty = self.stream.isatty()
        self.last, self.bar = float("-inf"), None

    def write(self, text: str) -> None:
        *lines, partial = text.split("\n")
        for line in lines:
            self._show(line.rsplit("\r", 1)[-1].rstrip(), final=True)
        self._show(partial.rsplit("\r", 1)[-1].rstrip(), final=False)

    def _show(self, line: str, *, final: bool) -> None:
        if not line:
            return
        text = f"    [{self.name}] {line}"
        bar = line.split(":")[0]  # a progress bar's description
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        elif bar != self.bar or time.monotonic() - self.last >= self.every:  # a new bar, or every `every` s
            self.stream.write(text + "\n")
            self.last, self.bar = time.monotonic(), bar
        self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()


def echo_enabled(log_output: bool | None = None) -> bool:
    """Echo kernel output when asked, else when stderr is a terminal or ``$STUDY_LOG_NOTEBOOKS=1``."""
    if log_output is not None:
        return log_output
    return sys.stderr.isatty() or os.environ.get(LOG_ENV) == "1"


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ----------------------------------------------------------------------------- failure messages
def _first_line(source: str) -> str:
    lines = [ln for ln in (source or "").strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return (lines[0][:70] + ("…" if len(lines[0]) > 70 else "")) if lines else ""


def _dead_cell(nb_path: Path) -> tuple[int | None, str]:
    """Index and first line of the cell that was running when the kernel died (the last one started)."""
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:  # the partial copy may itself be unreadable
        return None, ""
    started = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"
               and c.metadata.get("papermill", {}).get("start_time")]
    return (started[-1][0], _first_line(started[-1][1].source)) if started else (None, "")


def _keep_failed(out: Path, page: Path) -> Path | None:
    """Keep a failed run's executed copy as ``<name>.failed.ipynb`` beside the page (never a book page)."""
    if not out.is_file():
        return None
    failed = page.with_name(page.stem + ".failed.ipynb")
    os.replace(out, failed)
    return failed


# ----------------------------------------------------------------------------- running
def _move_into_place(tmp: Path, out: Path, page: Path, results: Path) -> None:
    staged = tmp / "results"
    if staged.is_dir():
        for f in sorted(p for p in staged.rglob("*") if p.is_file()):
            target = results / f.relative_to(staged)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
    os.replace(out, page)
    page.with_name(page.stem + ".failed.ipynb").unlink(missing_ok=True)


def run_notebook(name: str, *, root: Path = ROOT, parameters: dict | None = None, publish: bool | None = None,
                 progress: bool = True, log_output: bool | None = None) -> Outcome:
    """Execute page ``name``'s template with ``parameters`` (checked by :mod:`analysis.parameters`; a variant
    page's fixed values are its defaults, and every parameter is injected, so they reach the kernel).

    ``publish=None`` publishes exactly when the parameters are the defaults; see :func:`destination`.
    ``log_output`` echoes the kernel's output (training progress bars) to stderr; by default it is on
    when stderr is a terminal or ``$STUDY_LOG_NOTEBOOKS=1``.
    """
    import nbformat
    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    params = params_mod.check(name, parameters or {})
    smoke = bool(params.get("smoke"))
    if publish is None:
        publish = params_mod.is_default(name, params)
    if publish and smoke and is_repository(root):
        raise RunRefused(f"notebook {name!r}: smoke pages never become the repository's book pages; "
                         f"drop --publish (the run goes to book/generated/{RUNS}/), or stage a book with --root DIR")
    set_offline()
    page, results = destination(name, params, root=root, publish=publish)
    page.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(page.parent)
    tmp = page.parent / f"{TMP_PREFIX}{name}-{os.getpid()}.{host_tag()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    out = tmp / f"{name}.ipynb"
    nb = nbformat.read(notebook_template(name), as_version=4)
    nb.metadata["study"] = {"notebook": name, "template": NOTEBOOKS.entry(name).meta["template"],
                            "fixed": params_mod.fixed(name),  # what a variant page fixes (DESIGN.md §7)
                            "parameters": params, "smoke": smoke, "published": publish,
                            "variant": None if publish else page.parent.name,
                            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    env = {"STUDY_RESULTS": str(tmp / "results"), "STUDY_RESULTS_DEST": str(results.resolve()),
           # figures are drawn into the page whatever this process uses (MPLBACKEND=Agg in the tests or a headless
           # shell would leave "<Figure size ... with 0 Axes>" text and no image in the kernel's output)
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    path = import_path()
    if path:  # the kernel runs in another folder: it must find the plugins where this process found them
        env["PYTHONPATH"] = path
    echo = [_Echo(name)] * 2 if echo_enabled(log_output) else [None, None]
    t = time.perf_counter()
    try:
        with _environ(env):
            pm.execute_notebook(nb, str(out), parameters=params, kernel_name=KERNEL, cwd=str(page.parent),
                                progress_bar=progress and echo[0] is None, stdout_file=echo[0],
                                stderr_file=echo[1], extra_arguments=KERNEL_ARGS)
        _move_into_place(tmp, out, page, results)
    except pm.PapermillExecutionError as e:
        failed = _keep_failed(out, page)
        raise NotebookFailed(
            f"notebook {name!r} failed at cell {e.cell_index} (In [{e.exec_count}]: {_first_line(e.source)!r}): "
            f"{e.ename}: {e.evalue}\n  The last good page is unchanged{_state(page)}. The failed run's executed "
            f"copy, with the traceback, is {failed}.\n  Fix the cause, then rerun: "
            f"{command([name], root=root, extra=_flags(name, params))}") from None
    except DeadKernelError as e:
        failed = _keep_failed(out, page)
        idx, line = _dead_cell(failed) if failed else (None, "")
        where = f" while running cell {idx} ({line!r})" if idx is not None else ""
        raise NotebookFailed(
            f"notebook {name!r}: the kernel died{where} ({e}). This is usually the system running out of "
            f"memory, or the kernel being killed from outside.\n  The last good page is unchanged{_state(page)}. "
            f"Free memory or use smaller sizes (--smoke, or fewer items), then rerun: "
            f"{command([name], root=root, extra=_flags(name, params))}") from None
    finally:  # after success the folder is empty; after a failure or Ctrl-C it holds a partial run
        shutil.rmtree(tmp, ignore_errors=True)
    return Outcome(name, page, results, publish, params, time.perf_counter() - t)


def _state(page: Path) -> str:
    return f" ({page})" if page.is_file() else f" (there was none: {page} does not exist)"


def _flags(name: str, params: dict) -> str:
    diff = params_mod.changed(name, params)
    out = " --smoke" if diff.pop("smoke", False) else ""
    for k, v in diff.items():
        out += f" -p {k} '{v}'" if isinstance(v, list) else f" -p {k} {v}"
    return out


def run_order(names: list[str]) -> list[str]:
    """``names`` in the order given, except that pages whose entry says ``runs_last`` (they read the other pages'
    tables, e.g. the findings landing page, first in the book) run after the rest, in the order given."""
    last = [n for n in names if NOTEBOOKS.entry(n).meta.get("runs_last")]
    return [n for n in names if n not in last] + last


def run(names: list[str] | None = None, *, root: Path = ROOT, parameters: dict | None = None,
        publish: bool | None = None, log_output: bool | None = None, executor=None,
        keep_going: bool = False) -> dict[str, Outcome]:
    """Run notebooks in run order (:func:`run_order`; all when ``names`` is empty); return ``{name: Outcome}``.

    Every name and parameter is checked (:func:`analysis.parameters.check_many`) before any kernel starts;
    each notebook gets the parameters it declares. ``publish`` as in :func:`run_notebook`.

    Without ``executor`` the pages run one after another here, each training what it needs in its kernel.
    With one (:mod:`analysis.executor`), the plan of :func:`analysis.jobs.plan` runs on it: the training
    units first (in parallel on Ray), then the pages, each after what it waits for; ``keep_going`` lets the
    other units finish after a failure (:class:`analysis.executor.RunFailed` lists the failures).
    """
    names = names or NOTEBOOKS.names()
    for n in names:
        NOTEBOOKS.entry(n)  # unknown names fail before anything runs
    names = run_order(names)
    checked = params_mod.check_many(names, parameters or {})
    if publish and is_repository(root) and any(p.get("smoke") for p in checked.values()):
        raise RunRefused("smoke pages never become the repository's book pages; drop --publish (smoke runs go to "
                         f"book/generated/{RUNS}/), or run into a staged book with --root DIR")
    if executor is not None:
        from analysis import jobs

        units = jobs.plan(names, parameters, root=root, publish=publish)
        return {o.name: o for o in run_units(units, executor, keep_going=keep_going).values()}
    outcomes = {}
    for n in names:
        print(f"==> running notebook '{n}'" + (f" ({_flags(n, checked[n]).strip()})" if _flags(n, checked[n]) else ""),
              flush=True)
        outcomes[n] = run_notebook(n, root=root, parameters=checked[n], publish=publish, log_output=log_output)
        _report(outcomes[n])
    return outcomes


def _report(o: Outcome) -> None:
    """One line: where a finished page went and how long it took."""
    where = "book page" if o.published else "variant, not in the book"
    print(f"    '{o.name}' done in {o.seconds:.1f} s -> {o.page} ({where}; tables in {o.results})", flush=True)


def run_units(units, executor, *, keep_going: bool = False) -> dict[str, Outcome]:
    """Run ``units`` (:mod:`analysis.jobs`) on ``executor``; return ``{unit id: Outcome}`` of the notebook units,
    printing where each page went. Raises :class:`analysis.executor.RunFailed` when a unit failed."""
    from collections import Counter

    kinds = Counter(u.kind for u in units)
    print(f"==> {len(units)} units on the {executor.name} executor: "
          + ", ".join(f"{n} {k}" for k, n in kinds.items()), flush=True)
    results = executor.run(units, keep_going=keep_going)
    outcomes = {uid: o for uid, o in results.items() if isinstance(o, Outcome)}
    for o in outcomes.values():
        _report(o)
    return outcomes


# ----------------------------------------------------------------------------- the book
def toc_pages(root: Path = ROOT) -> list[str]:
    """Names of the generated pages the TOC of ``root`` lists (``book/generated/<name>``), in order."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    files = [ch["file"] for part in toc.get("parts", []) for ch in part.get("chapters", [])]
    files += [ch["file"] for ch in toc.get("chapters", [])]
    return [f.removeprefix("book/generated/").removesuffix(".ipynb") for f in files if f.startswith("book/generated/")]


def _executed_at(page: Path) -> dt.datetime:
    """When ``page`` finished executing: papermill's ``end_time``, else the file's modification time."""
    import nbformat

    try:
        end = nbformat.read(page, as_version=4).metadata.get("papermill", {}).get("end_time")
        if end:
            t = dt.datetime.fromisoformat(end)
            return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
    except Exception:
        pass
    return dt.datetime.fromtimestamp(page.stat().st_mtime, dt.timezone.utc)


def page_smoke(nb) -> bool:
    """True when an executed notebook ran with ``smoke=True`` (the runner's record, else papermill's)."""
    study = nb.metadata.get("study", {})
    if "smoke" in study:
        return bool(study["smoke"])
    return bool(nb.metadata.get("papermill", {}).get("parameters", {}).get("smoke"))


def check_pages(root: Path = ROOT, *, allow_smoke: bool = False) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` about the generated pages the TOC of ``root`` lists.

    Errors: missing pages (with the command that makes them), pages with an error output (notebook and
    cell named), smoke pages unless ``allow_smoke``. Warning: the Reproducibility page is older than the
    chapters it describes.
    """
    import nbformat

    root = Path(root)
    names = toc_pages(root)
    gen = generated(root)
    errors, warnings = [], []
    missing = [n for n in names if not (gen / f"{n}.ipynb").is_file()]
    if missing:
        errors.append(f"no executed page for {', '.join(missing)} in {gen}; make them with: "
                      f"{command(missing, root=root)}")
    smoke = []
    for n in names:
        path = gen / f"{n}.ipynb"
        if n in missing:
            continue
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            err = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
            if err:
                errors.append(f"page {path} shows an error in cell {i} (In [{cell.get('execution_count')}]: "
                              f"{_first_line(cell.source)!r}): {err.get('ename')}: {err.get('evalue')}; "
                              f"rerun it: {command([n], root=root)}")
                break
        if page_smoke(nb):
            smoke.append(n)
    if smoke and not allow_smoke:
        errors.append(f"page(s) {', '.join(smoke)} were executed with smoke=True (tiny sizes, not the study's "
                      f"numbers); rerun without --smoke ({command(smoke, root=root)}), or build a smoke book with "
                      f"--allow-smoke")
    present = [n for n in names if n not in missing]
    if APPENDIX in present:
        appendix = _executed_at(gen / f"{APPENDIX}.ipynb")
        newer = [n for n in present if n != APPENDIX and _executed_at(gen / f"{n}.ipynb") > appendix]
        if newer:
            warnings.append(f"the Reproducibility page ({APPENDIX}, executed {appendix:%Y-%m-%d %H:%M}) is older "
                            f"than {', '.join(newer)}, which it describes; rerun it: {command([APPENDIX], root=root)}")
    return errors, warnings


def remove_stale_html(root: Path = ROOT) -> list[Path]:
    """Delete built pages of notebooks that are no longer registered (``_build/html/book/generated/<x>.html``
    and their ``_sources`` copies), so the built site shows no page the book no longer has."""
    keep = set(NOTEBOOKS.names())
    html = Path(root) / "_build" / "html"
    removed = []
    for p in sorted((html / "book" / "generated").glob("*.html")):
        if p.stem not in keep:
            p.unlink()
            removed.append(p)
    for p in sorted((html / "_sources" / "book" / "generated").glob("*")):
        if p.is_file() and p.name.split(".")[0] not in keep:
            p.unlink()
            removed.append(p)
    return removed


def build_book(root: Path = ROOT, *, allow_smoke: bool = False) -> int:
    """Check the pages (:func:`check_pages`), then ``jupyter-book build <root> -W -n --keep-going``
    (warnings are errors). Returns the exit code: 1 when a page is refused, jupyter-book's otherwise."""
    root = Path(root)
    errors, warnings = check_pages(root, allow_smoke=allow_smoke)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print("error: book not built", file=sys.stderr)
        return 1
    for p in remove_stale_html(root):
        print(f"removed stale page {p}", flush=True)
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "-W", "-n", "--keep-going"]
    print("==> " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=root).returncode
