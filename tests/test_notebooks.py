"""Template lint, the TOC/registry agreement, and a smoke run of the whole book.

The smoke run stages the book sources in a temporary folder, executes every
registered notebook there with papermill (``smoke=True``; in a staged root smoke pages
are that book's pages), then builds the book with warnings as errors (smoke allowed)
and checks that every TOC page was rendered. A second smoke run in another staged root
must write byte-identical result tables (wall times live in ``*.timings.csv``).
"""
import ast
import inspect
import re
import subprocess
import sys

import nbformat
import pytest
import yaml

from analysis import parameters, results, runner
from analysis.registry import NOTEBOOKS, ROOT, notebook_template, notebooks_by_template

NAMES = NOTEBOOKS.names()  # the book's pages, variant pages included
TEMPLATES = notebooks_by_template()  # each template once, with the pages it makes
VARIANTS = [n for n in NAMES if NOTEBOOKS.entry(n).meta.get("parameters")]


def parameters_of(name):
    nb = nbformat.read(notebook_template(name), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return nb, cells


def first_page(template):
    """The first page a template makes: template checks run once per template, through it."""
    return TEMPLATES[template][0]


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_template_lint(template):
    nb, cells = parameters_of(first_page(template))
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    nbformat.validate(nb)


@pytest.mark.parametrize("template", list(TEMPLATES))
def test_parameters_match_the_declaration(template):
    """The parameters cell assigns plain literals: exactly the declared names, in order, with the declared
    defaults (analysis/parameters.py; the template's own, not a variant page's fixed values); smoke and seed are
    there; the experiment of every page made from it accepts them."""
    name = first_page(template)
    _, (cell,) = parameters_of(name)
    tree = ast.parse(cell.source)
    params = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"parameters cell may only assign literals: {ast.unparse(node)}"
        params[node.targets[0].id] = ast.literal_eval(node.value)
    declared = parameters.template_spec(name)
    assert params == {k: p.default for k, p in declared.items()}
    assert list(params) == list(declared)
    assert params["smoke"] is False and isinstance(params["seed"], int)
    for page in TEMPLATES[template]:
        sig = inspect.signature(NOTEBOOKS.entry(page).load()).parameters
        assert "smoke" in sig and "seed" in sig, page


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_pages_fixed_parameters_pass_the_check(name):
    """A variant page's fixed values are allowed values of its template's declared parameters, and they are that
    page's defaults: running it with no -p publishes book/generated/<name>.ipynb."""
    fixed = parameters.fixed(name)  # raises ParameterError naming the page when a value is not allowed
    assert set(fixed) == set(NOTEBOOKS.entry(name).meta["parameters"])
    params = parameters.check(name, {})
    assert {k: params[k] for k in fixed} == fixed
    assert parameters.is_default(name, params)
    assert runner.destination(name, params, publish=True)[0] == runner.generated() / f"{name}.ipynb"


def test_variant_pages_of_one_template_differ():
    """Two pages of one template that fix the same values would be the same page twice."""
    for template, pages in TEMPLATES.items():
        sets = [repr(sorted(NOTEBOOKS.entry(p).meta.get("parameters", {}).items())) for p in pages]
        assert len(set(sets)) == len(sets), f"{template}: pages {pages} repeat a parameter set"


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [ch["file"] for part in toc["parts"] for ch in part["chapters"]], toc["root"]


def test_toc_and_notebook_registry_agree():
    """Every registered page (variant pages included) is in the TOC and vice versa, in registry order, each under the
    part its entry names; the run order is the registry order with the ``runs_last`` pages (the findings landing
    page, first in the book) moved to the end."""
    files, root = toc_files()
    generated = [f.removeprefix("book/generated/") for f in files if f.startswith("book/generated/")]
    assert generated == NAMES
    assert runner.toc_pages(ROOT) == NAMES
    assert (ROOT / f"{root}.md").is_file()
    assert runner.run_order(NAMES) == [n for n in NAMES if n != "findings"] + ["findings"]
    assert runner.run_order(["findings", "data"]) == ["data", "findings"]
    for f in files:
        assert f.startswith("book/generated/") or (ROOT / f"{f}.md").is_file(), f
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    part_of = {ch["file"].removeprefix("book/generated/"): part["caption"] for part in toc["parts"]
               for ch in part["chapters"]}
    assert {n: NOTEBOOKS.entry(n).meta["part"] for n in NAMES} == {n: part_of[n] for n in NAMES}


# the smoke book (`python -m analysis all --smoke --root <staged>`) is the session fixture `smoke_book` of
# tests/conftest.py: the README's `all --smoke` example is checked against the same run (tests/test_readme.py)


def test_smoke_all_builds_the_book_with_warnings_as_errors(smoke_book):
    root, proc = smoke_book
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files, index = toc_files()
    for f in files + [index]:
        assert (root / "_build" / "html" / f"{f}.html").is_file(), f
    assert "without encryption" not in proc.stderr


def test_smoke_pages_are_refused_by_a_plain_book_build(smoke_book):
    root, _ = smoke_book
    errors, _ = runner.check_pages(root)
    assert len(errors) == 1 and "executed with smoke=True" in errors[0]


@pytest.mark.parametrize("name", NAMES)
def test_each_notebook_ran_in_smoke_mode_without_errors(smoke_book, name):
    root, _ = smoke_book
    nb = nbformat.read(root / "book" / "generated" / f"{name}.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "smoke = True" in injected[0].source
    assert nb.metadata["study"]["smoke"] is True and nb.metadata["study"]["published"] is True
    for k, v in parameters.fixed(name).items():  # a variant page's own values reached its kernel
        assert nb.metadata["papermill"]["parameters"][k] == v, (name, k)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]


def test_every_result_row_says_smoke(smoke_book):
    root, _ = smoke_book
    tables = sorted((root / "book" / "generated" / "results").glob("*.parquet"))
    assert tables
    for t in tables:
        assert results.read(t)["smoke"].tolist() == [True] * len(results.read(t)), t.name


def test_same_seed_gives_byte_identical_result_files(smoke_book, tmp_path_factory):
    """A second smoke run, in another staged root and with the stand-ins and every captioner retrained and every
    score recomputed, writes the same bytes to every result table (CSV and Parquet); only the *.timings.csv
    files may differ. It runs every notebook except the probe's reward, cross-scoring and decoding pages (CI time):
    the probe's findings page, which it does run, retrains every SCST captioner and tabulates every system's
    captions and measures, so a captioner that trained differently would change its table."""
    import os

    from analysis import cache

    first, _ = smoke_book
    second = runner.stage(tmp_path_factory.mktemp("again"))
    # retrain and rescore from scratch: a fresh cache shares only the data and tower features with the first run
    fresh = tmp_path_factory.mktemp("fresh-cache")
    for kind in cache.root().iterdir():
        if kind.is_dir() and kind.name not in ("checkpoints", "scores"):
            (fresh / kind.name).symlink_to(kind, target_is_directory=True)
    again = [n for n in NAMES if not n.startswith("probe-") or n in ("probe-method", "probe-findings")]
    proc = subprocess.run([sys.executable, "-m", "analysis", "run", *again, "--smoke", "--root", str(second)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "STUDY_CACHE": str(fresh)})
    assert list((fresh / "checkpoints").iterdir()), "the second run did not retrain"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def tables(root):
        folder = root / "book" / "generated" / "results"
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and not p.name.endswith(results.TIMINGS_SUFFIX)}

    a, b = tables(first), tables(second)
    assert set(b) <= set(a) and "probe-findings.parquet" in b and "measures.parquet" in b
    # the Reproducibility table lists the cache it ran against, so its cache section differs by design here
    assert [n for n in b if a[n] != b[n] and not n.startswith("provenance.")] == []
    pa, pb = (results.read(r / "book" / "generated" / "results" / "provenance") for r in (first, second))
    ran = set(pb.loc[pb.section == "seeds", "dataset"])  # the seeds section lists the tables each run wrote
    keep = lambda df: df[(df.section != "cache") & ((df.section != "seeds") | df.dataset.isin(ran))].reset_index(  # noqa: E731
        drop=True)
    assert keep(pa).equals(keep(pb))


def page_text(root, name, kinds=("text", "text/plain", "text/markdown", "text/html")):
    """Every output of an executed page of the given MIME kinds, joined."""
    nb = nbformat.read(root / "book" / "generated" / f"{name}.ipynb", as_version=4)
    return "\n".join(str(v) for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     for k, v in {**o.get("data", {}), "text": o.get("text", "")}.items() if k in kinds)


def test_scorers_page_shows_labelled_tables_and_computed_text(smoke_book):
    """Not only 'no error': the scorers page has its tables, every stand-in's label, and the computed sentences."""
    from analysis import registry, scorer_eval

    root, _ = smoke_book
    text = page_text(root, "scorers")
    assert text.count("<table") >= 3
    for name in scorer_eval.default_scorer_names():
        label = registry.get_scorer(name, smoke=True).label
        assert "stand-in" in label or "baseline" in label, label
        assert label in text, f"{label} missing from the scorers page"
    for sentence in ("Holm-corrected within each family", "image→text R@5", "(zero-shot: never trained",
                     "never sees the image", "seen stamps, new combinations", "unseen stamps"):
        assert sentence in text, sentence
    computed = page_text(root, "scorers", ("text/markdown",))
    assert "nan" not in re.findall(r"\b\w+\b", computed.lower()), "a NaN reached the computed text"


def test_data_and_reproducibility_pages_show_their_cards_and_computed_text(smoke_book):
    root, _ = smoke_book
    data = page_text(root, "data", ("text/markdown",))
    for name in parameters.defaults("data")["datasets"]:
        assert f"### `{name}`" in data, name
    assert re.search(r"The \d+ datasets hold \d+ images in all", data)
    repro = page_text(root, "reproducibility")
    assert "Built from commit" in repro and "verified" in repro and "torch" in repro


def test_realign_findings_read_every_page_of_the_smoke_book(smoke_book):
    """The findings page of the Realignment part found the other pages' smoke tables (none is 'not run'), and its
    rows carry no wall-time verdict (the speed verdicts are in its timings file)."""
    root, _ = smoke_book
    folder = root / "book" / "generated" / "results"
    v = results.read(folder / "realign-findings")
    assert len(v) and not v["reason"].str.contains("has not been run").any(), v[["claim", "reason"]]
    assert {"realign-method", "realign-captions", "realign-metrics", "realign-bridge"} <= set(v["page"])
    assert "realign-speed" not in set(v["page"])
    timings = (folder / ("realign-findings" + results.TIMINGS_SUFFIX)).read_text()
    assert "speed verdict" in timings and "has not been run" not in timings


def test_findings_landing_page_matches_the_findings_tables(smoke_book):
    """The landing page of the smoke book read the two findings pages' tables (neither is missing) and its rows carry
    their verdicts and numbers unchanged; the page shows every verdict."""
    import numpy as np

    from analysis import landing

    root, _ = smoke_book
    folder = root / "book" / "generated" / "results"
    land = results.read(folder / "findings")
    probe, realign = results.read(folder / "probe-findings"), results.read(folder / "realign-findings")
    want = landing.landing_table(probe, realign)
    assert len(land) == len(want) > 0 and set(land["page"]) >= {"probe-findings", "realign-method"}
    assert land["verdict"].tolist() == want["verdict"].tolist()
    np.testing.assert_allclose(land["value"].to_numpy(float), want["value"].to_numpy(float), equal_nan=True)
    rf = land[land["page"] != "probe-findings"]
    assert rf["verdict"].tolist() == realign["verdict"].tolist() and rf["claim"].tolist() == realign["claim"].tolist()
    text = page_text(root, "findings")
    assert "Not run in this build" not in text
    for v in set(land["verdict"]):
        assert v in text, v
