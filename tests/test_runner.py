"""The runner: where pages and tables go, what a failed, killed or smoke run leaves, what `book` refuses.

These tests run a cheap notebook (a few cells, one result table) registered at test time, so a
kernel starts in about a second; the real chapters are run in tests/test_notebooks.py.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from analysis import parameters, results, runner
from analysis.registry import NOTEBOOKS, ROOT

CHEAP = "cheap-test"

# The page writes its table, then (when asked through the environment) records its pid, sleeps, dies or fails.
CHEAP_CELLS = [
    ("markdown", "# A cheap page\n\nUsed by the runner tests."),
    ("parameters", "smoke = False\nseed = 0\nfail = False\ndie = False"),
    ("code", "import os, time, pathlib\nfrom analysis import results\n"
             "rows = results.rows([{'metric': 'x', 'value': seed + (0.5 if smoke else 0.0)}], run='cheap', model='',\n"
             "                    source='none', pretrained='', dataset='d', split='all', seed=seed, smoke=smoke)\n"
             "_ = results.write(rows, results.results_dir() / 'cheap')"),
    ("code", "if os.environ.get('CHEAP_MARKER'):\n"
             "    pathlib.Path(os.environ['CHEAP_MARKER']).write_text(str(os.getpid()))\n"
             "time.sleep(float(os.environ.get('CHEAP_SLEEP', '0')))\n"
             "print('progress line from the kernel')"),
    ("code", "if die:\n    os.kill(os.getpid(), 9)\nif fail:\n    raise ValueError('broken on purpose')"),
    ("code", "from analysis.registry import DATASETS, SCORERS\n"
             "print('registered here:', *[n for n in DATASETS.names() + SCORERS.names() if n.startswith('plugin-')])"),
]


def cheap_template(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, src in CHEAP_CELLS:
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(src))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(src, metadata={"tags": ["parameters"]} if kind == "parameters"
                                                      else {}))
    path = folder / "cheap.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def cheap(tmp_path, request):
    """A registered cheap notebook and an empty book root ``tmp_path / 'root'``."""
    NOTEBOOKS.register(CHEAP, "analysis.provenance:run_provenance", "cheap test page",
                       template=str(cheap_template(tmp_path)))
    request.addfinalizer(lambda: NOTEBOOKS._entries.pop(CHEAP, None))
    root = tmp_path / "root"
    root.mkdir()
    return root


def table(root: Path, *parts) -> bytes:
    return runner.generated(root).joinpath(*parts).read_bytes()


def no_tmp_left(root: Path) -> list[Path]:
    return sorted(runner.generated(root).rglob(".tmp-*"))


def test_defaults_are_the_book_page_and_other_parameters_a_variant(cheap):
    out = runner.run([CHEAP], root=cheap, log_output=False)[CHEAP]
    assert out.published and out.page == runner.generated(cheap) / f"{CHEAP}.ipynb"
    assert (runner.generated(cheap) / "results" / "cheap.csv").is_file()
    page = out.page.read_bytes()
    seed3 = runner.run([CHEAP], root=cheap, parameters={"seed": 3}, log_output=False)[CHEAP]
    assert not seed3.published
    assert seed3.page.parent.parent == runner.generated(cheap) / "runs"
    assert seed3.page.parent.name == parameters.variant_name(CHEAP, seed3.parameters)
    assert results.read(seed3.results / "cheap")["seed"].tolist() == [3]
    assert out.page.read_bytes() == page  # the book's page is untouched
    assert results.read(runner.generated(cheap) / "results" / "cheap")["seed"].tolist() == [0]
    pub = runner.run([CHEAP], root=cheap, parameters={"seed": 3}, publish=True, log_output=False)[CHEAP]
    assert pub.published and results.read(runner.generated(cheap) / "results" / "cheap")["seed"].tolist() == [3]
    meta = nbformat.read(pub.page, as_version=4).metadata["study"]
    assert meta["parameters"]["seed"] == 3 and meta["smoke"] is False
    assert not no_tmp_left(cheap)


def test_a_variant_page_runs_its_template_with_its_fixed_values(cheap, request):
    """Parameter variants are pages (DESIGN.md §7): two pages of the cheap template fix seed 7 and 8. With no -p a
    page is the book's page and its fixed value reaches the kernel; any override (even back to the template's own
    default) is a run under runs/. The TOC lists the variant pages, and the book checks name them."""
    from analysis.registry import notebook_variants

    entries = notebook_variants(CHEAP, NOTEBOOKS.entry(CHEAP).meta["template"], "analysis.provenance:run_provenance",
                                "Tests", {"s7": {"seed": 7}, "s8": {"seed": 8}}, "cheap page with seed {seed}")
    NOTEBOOKS.add(*entries)
    request.addfinalizer(lambda: [NOTEBOOKS._entries.pop(e.name, None) for e in entries])
    s7, s8 = (e.name for e in entries)
    gen = runner.generated(cheap)

    out = runner.run([s7], root=cheap, log_output=False)[s7]
    assert out.published and out.page == gen / f"{s7}.ipynb" and out.parameters["seed"] == 7
    assert results.read(gen / "results" / "cheap")["seed"].tolist() == [7]  # written by the kernel
    nb = nbformat.read(out.page, as_version=4)
    (injected,) = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "seed = 7" in injected.source
    assert nb.metadata["study"]["fixed"] == {"seed": 7}
    assert nb.metadata["study"]["template"] == NOTEBOOKS.entry(CHEAP).meta["template"]

    back = runner.run([s7], root=cheap, parameters={"seed": 0}, log_output=False)[s7]
    assert not back.published and back.page.parent.parent == gen / "runs"
    assert back.page.parent.name.startswith(f"{s7}-seed=0-") and back.page.name == f"{s7}.ipynb"
    assert results.read(back.results / "cheap")["seed"].tolist() == [0]
    assert results.read(gen / "results" / "cheap")["seed"].tolist() == [7]  # the book's table is untouched

    (cheap / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: Tests\n    chapters:\n"
                                    f"      - file: book/generated/{s7}\n      - file: book/generated/{s8}\n")
    assert runner.toc_pages(cheap) == [s7, s8]
    errors, _ = runner.check_pages(cheap)
    assert errors == [f"no executed page for {s8} in {gen}; make them with: "
                      f"python -m analysis run {s8} --root {cheap}"]
    site = cheap / "_build" / "html" / "book" / "generated"
    site.mkdir(parents=True)
    for n in (s7, s8, f"{CHEAP}-s9"):
        (site / f"{n}.html").write_text("x")
    assert [p.name for p in runner.remove_stale_html(cheap)] == [f"{CHEAP}-s9.html"]
    assert not no_tmp_left(cheap)


def test_failed_run_keeps_the_last_good_page_and_tables(cheap):
    good = runner.run([CHEAP], root=cheap, log_output=False)[CHEAP]
    page, csv = good.page.read_bytes(), table(cheap, "results", "cheap.csv")
    with pytest.raises(runner.NotebookFailed) as e:
        runner.run([CHEAP], root=cheap, parameters={"fail": True, "seed": 5}, publish=True, log_output=False)
    msg = str(e.value)
    assert f"notebook '{CHEAP}' failed at cell 5 (In [" in msg  # cell 5: after papermill's injected cell
    assert "ValueError: broken on purpose" in msg and "last good page is unchanged" in msg
    assert f"python -m analysis run {CHEAP} -p seed 5 -p fail True --root {cheap}" in msg
    assert good.page.read_bytes() == page
    assert table(cheap, "results", "cheap.csv") == csv  # the failed run's table (seed 5) never landed
    assert (runner.generated(cheap) / f"{CHEAP}.failed.ipynb").is_file()
    assert not no_tmp_left(cheap)


def test_dead_kernel_is_one_message_naming_the_cell(cheap):
    with pytest.raises(runner.NotebookFailed) as e:
        runner.run([CHEAP], root=cheap, parameters={"die": True}, publish=True, log_output=False)
    msg = str(e.value)
    assert f"notebook '{CHEAP}': the kernel died while running cell 5" in msg
    assert "out of memory" in msg and "rerun" in msg and "there was none" in msg
    assert not (runner.generated(cheap) / f"{CHEAP}.ipynb").exists()
    assert not no_tmp_left(cheap)


def test_smoke_pages_never_go_into_the_repository_book():
    with pytest.raises(runner.RunRefused, match="smoke pages never become the repository's book pages"):
        runner.run(["data"], root=ROOT, parameters={"smoke": True}, publish=True)


def test_kernel_output_is_echoed_without_the_tcp_warning(cheap, capfd):
    runner.run([CHEAP], root=cheap, log_output=True)
    err = capfd.readouterr().err
    assert f"[{CHEAP}] progress line from the kernel" in err
    assert "without encryption" not in err


def test_echo_shows_the_last_state_of_a_progress_bar():
    import io

    sink = io.StringIO()
    echo = runner._Echo("nb", stream=sink, every=3600)
    echo.write("\rtrain:  10%|#   |\rtrain:  20%|##  |")
    echo.write("\rtrain:  30%|### |")  # within `every` seconds: not repeated on a non-terminal
    echo.write("epoch 1 done\n")
    assert sink.getvalue().splitlines() == ["    [nb] train:  20%|##  |", "    [nb] epoch 1 done"]


def test_stale_tmp_of_a_dead_process_is_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".tmp-x-{dead}-abcd1234"
    live = tmp_path / f".tmp-x-{os.getppid()}-abcd1234"
    stale.mkdir()
    live.mkdir()
    assert runner.sweep_stale(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def test_a_run_folder_of_another_machine_is_judged_by_age_not_by_pid(tmp_path):
    """On storage that several machines share (Ray workers), a dead-looking pid of another host is not stale: only
    an old folder is; this host's folders are judged by pid as before."""
    import time

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    other = "0" * 8 if runner.host_tag() != "0" * 8 else "1" * 8
    young = tmp_path / f".tmp-x-{dead}.{other}-abcd1234"
    old = tmp_path / f".tmp-y-{dead}.{other}-abcd1234"
    mine = tmp_path / f".tmp-z-{dead}.{runner.host_tag()}-abcd1234"
    for p in (young, old, mine):
        p.mkdir()
    past = time.time() - runner.OTHER_HOST_STALE_S - 60
    os.utime(old, (past, past))
    assert runner.sweep_stale(tmp_path) == [old, mine]
    assert young.exists()


def test_sigkill_mid_run_then_rerun(cheap, tmp_path):
    """SIGKILL of `python -m analysis run` while the kernel works: the last good page and tables stay, the
    kernel goes too, and a rerun sweeps the leftovers and writes the same tables as an uninterrupted run."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "cheap_plugin.py").write_text(
        "from analysis.registry import NOTEBOOKS\n"
        f"NOTEBOOKS.register({CHEAP!r}, 'analysis.provenance:run_provenance', 'cheap', "
        f"template={str(tmp_path / 'cheap.ipynb')!r})\n")
    env = {**os.environ, "STUDY_PLUGINS": "cheap_plugin", "PYTHONPATH": str(plugin), "STUDY_LOG_NOTEBOOKS": "0"}
    cmd = [sys.executable, "-m", "analysis", "run", CHEAP, "--root", str(cheap)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    page, csv = table(cheap, f"{CHEAP}.ipynb"), table(cheap, "results", "cheap.csv")

    marker = tmp_path / "kernel.pid"
    proc = subprocess.Popen(cmd, env={**env, "CHEAP_MARKER": str(marker), "CHEAP_SLEEP": "120"}, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), "the kernel never reached the sleeping cell"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kernel = int(marker.read_text())
    assert no_tmp_left(cheap), "the killed run should have been working in a .tmp-* folder"
    assert table(cheap, f"{CHEAP}.ipynb") == page and table(cheap, "results", "cheap.csv") == csv
    for _ in range(100):  # the orphaned kernel notices its parent is gone and exits
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(kernel, signal.SIGKILL)
        pytest.fail("the kernel outlived the killed run")

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not no_tmp_left(cheap)
    assert table(cheap, "results", "cheap.csv") == csv


def test_plugins_are_imported_in_the_kernel_too(tmp_path):
    """A plugin found only through the command's working folder is also imported by the notebook kernel, which
    runs in another folder."""
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(Path(__file__).parent / "fixtures" / "plugins" / "study_example_plugin.py", work)
    (work / "cheap_plugin.py").write_text(
        "from analysis.registry import NOTEBOOKS\n"
        f"NOTEBOOKS.register({CHEAP!r}, 'analysis.provenance:run_provenance', 'cheap', "
        f"template={str(cheap_template(tmp_path))!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["STUDY_PLUGINS"] = "cheap_plugin,study_example_plugin"
    proc = subprocess.run([sys.executable, "-m", "analysis", "run", CHEAP, "--root", str(tmp_path / "root")],
                          env=env, capture_output=True, text=True, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(tmp_path / "root" / "book" / "generated" / f"{CHEAP}.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "registered here: plugin-photos plugin-colour" in text


# ----------------------------------------------------------------------------- book checks
def fake_root(tmp_path: Path, pages: dict[str, dict]) -> Path:
    """A book root whose TOC lists ``pages`` and whose generated notebooks are made from ``pages``:
    ``{"name": {"smoke": bool, "error": bool, "end": iso time}}`` (a missing key: no page)."""
    root = tmp_path / "book-root"
    gen = root / "book" / "generated"
    gen.mkdir(parents=True)
    chapters = "".join(f"      - file: book/generated/{n}\n" for n in pages)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nparts:\n  - caption: All\n    chapters:\n"
                                   f"{chapters}")
    for n, spec in pages.items():
        if spec is None:
            continue
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("1 / 0" if spec.get("error") else "1", execution_count=1)
        if spec.get("error"):
            cell.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                   traceback=[])]
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {n}"), cell]
        nb.metadata["study"] = {"smoke": spec.get("smoke", False)}
        nb.metadata["papermill"] = {"end_time": spec.get("end", "2026-01-01T00:00:00"),
                                    "parameters": {"smoke": spec.get("smoke", False)}}
        nbformat.write(nb, gen / f"{n}.ipynb")
    return root


def test_book_names_missing_pages_and_the_command(tmp_path, capsys):
    root = runner.stage(tmp_path / "staged")
    assert runner.build_book(root) == 1
    err = capsys.readouterr().err
    names = NOTEBOOKS.names()  # every registered chapter, in TOC order
    assert f"no executed page for {', '.join(names)}" in err
    assert f"python -m analysis run {' '.join(names)} --root {root}" in err
    assert "nonexisting document" not in err


def test_book_refuses_a_page_with_an_error_output(tmp_path):
    root = fake_root(tmp_path, {"data": {}, "scorers": {"error": True}})
    errors, _ = runner.check_pages(root)
    assert len(errors) == 1
    assert "scorers.ipynb shows an error in cell 1 (In [1]: '1 / 0'): ZeroDivisionError: division by zero" in errors[0]


def test_book_refuses_smoke_pages_unless_allowed(tmp_path):
    root = fake_root(tmp_path, {"data": {"smoke": True}, "scorers": {}})
    errors, _ = runner.check_pages(root)
    assert len(errors) == 1 and "data were executed with smoke=True" in errors[0] and "--allow-smoke" in errors[0]
    assert runner.check_pages(root, allow_smoke=True) == ([], [])


def test_book_warns_when_the_reproducibility_page_is_older_than_the_chapters(tmp_path):
    root = fake_root(tmp_path, {"data": {"end": "2026-05-02T10:00:00"}, "scorers": {"end": "2026-05-01T10:00:00"},
                                "reproducibility": {"end": "2026-05-01T12:00:00"}})
    errors, warnings = runner.check_pages(root)
    assert not errors and len(warnings) == 1
    assert "older than data, which it describes" in warnings[0] and "run reproducibility" in warnings[0]


def test_stale_pages_of_removed_notebooks_are_deleted_from_the_site(tmp_path):
    site = tmp_path / "_build" / "html" / "book" / "generated"
    site.mkdir(parents=True)
    sources = tmp_path / "_build" / "html" / "_sources" / "book" / "generated"
    sources.mkdir(parents=True)
    for n in ("data", "old-chapter"):
        (site / f"{n}.html").write_text("x")
        (sources / f"{n}.ipynb").write_text("x")
    removed = runner.remove_stale_html(tmp_path)
    assert sorted(p.name for p in removed) == ["old-chapter.html", "old-chapter.ipynb"]
    assert (site / "data.html").exists() and (sources / "data.ipynb").exists()


def test_smoke_all_in_the_repository_builds_a_separate_smoke_book(cheap, tmp_path, monkeypatch):
    """`all --smoke` without --root never writes the repository's pages: it stages runner.SMOKE_ROOT, publishes the
    smoke pages there and builds that book with smoke allowed."""
    from analysis.__main__ import main

    smoke_root = tmp_path / "smoke-root"
    built = []
    monkeypatch.setattr(runner, "SMOKE_ROOT", smoke_root)
    monkeypatch.setattr(runner, "build_book", lambda root, allow_smoke=False: built.append((root, allow_smoke)) or 0)
    assert main(["all", "--smoke", CHEAP]) == 0
    assert built == [(smoke_root, True)]
    assert nbformat.read(runner.generated(smoke_root) / f"{CHEAP}.ipynb", as_version=4).metadata["study"]["smoke"]
    assert (smoke_root / "_toc.yml").is_file()
    assert not (runner.generated(ROOT) / f"{CHEAP}.ipynb").exists()
    assert not list(runner.generated(ROOT).glob(f"runs/{CHEAP}-*"))


def test_smoke_run_in_the_repository_is_a_variant(cheap, monkeypatch):
    """`run --smoke` in the repository (here: a root standing in for it) writes book/generated/runs/, never the
    page; `--publish` with smoke is refused."""
    from analysis.__main__ import main

    monkeypatch.setattr(runner, "ROOT", cheap)
    monkeypatch.setattr("analysis.__main__.ROOT", cheap)
    assert main(["run", "--smoke", CHEAP]) == 0
    assert not (runner.generated(cheap) / f"{CHEAP}.ipynb").exists()
    (variant,) = (runner.generated(cheap) / "runs").iterdir()
    assert variant.name.startswith(f"{CHEAP}-smoke-") and (variant / "results" / "cheap.csv").is_file()
    assert results.read(variant / "results" / "cheap")["smoke"].tolist() == [True]
    assert main(["run", "--smoke", "--publish", CHEAP]) == 2
