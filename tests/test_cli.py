import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.__main__ import _params, main, parser
from analysis.registry import ROOT


@pytest.mark.parametrize("cmd", [[], ["list"], ["fetch"], ["run"], ["book"], ["all"], ["bench"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("clip-mini", "clip:", "tuxpaint-stamps", "coco-karpathy", "data", "reproducibility"):
        assert name in out


def test_unknown_notebook_fails_with_the_valid_names():
    proc = subprocess.run([sys.executable, "-m", "analysis", "run", "nope"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "unknown notebook 'nope'" in proc.stderr and "reproducibility" in proc.stderr


def test_params_are_parsed_as_yaml():
    args = parser().parse_args(["run", "data", "-p", "datasets", "[a, b]", "-p", "examples", "4", "--smoke"])
    assert _params(args) == {"datasets": ["a", "b"], "examples": 4, "smoke": True}


def cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "analysis", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT)


@pytest.mark.parametrize("args, words", [
    (["run", "scorers", "-p", "seed", "1.7"], ["seed=1.7", "whole number", "integer >= 0"]),
    (["run", "scorers", "-p", "seed", "abc"], ["seed='abc'", "integer >= 0"]),
    (["run", "scorers", "-p", "max_items", "-5"], ["max_items=-5", "integer >= 2", "None"]),
    (["run", "scorers", "-p", "nosuchparam", "3"], ["no parameter 'nosuchparam'", "n_boot", "max_items"]),
    (["run", "scorers", "-p", "max_item", "3"], ["no parameter 'max_item'", "Did you mean max_items"]),
    (["run", "scorers", "-p", "scorers", "clip-mni"], ["unknown scorer 'clip-mni'", "Did you mean clip-mini"]),
    (["run", "data", "-p", "datasets", "[tuxpaint-stamps, nope]"], ["unknown dataset 'nope'"]),
])
def test_bad_parameters_exit_before_any_kernel_starts(tmp_path, args, words):
    proc = cli(*args, "--root", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: notebook") and "Traceback" not in proc.stderr
    for w in words:
        assert w in proc.stderr, (w, proc.stderr)
    assert not (tmp_path / "book").exists()  # nothing ran, nothing was written
    assert "running notebook" not in proc.stdout


def test_bare_name_is_a_one_element_list():
    from analysis import parameters

    args = parser().parse_args(["run", "scorers", "-p", "scorers", "clip-mini"])
    assert parameters.check("scorers", _params(args))["scorers"] == ["clip-mini"]


def test_run_name_help_lists_that_notebooks_parameters():
    proc = cli("run", "scorers", "--help")
    assert proc.returncode == 0
    assert "parameters of notebook 'scorers'" in proc.stdout and "parameters of notebook 'data'" not in proc.stdout
    for words in ("n_boot", "int>=100", "default 1000", "max_items", "int>=2|None", "STUDY_LOG_NOTEBOOKS=1",
                  "book/generated/runs/"):
        assert words in proc.stdout, words


def test_list_notebook_shows_its_parameters(capsys):
    assert main(["list", "data"]) == 0
    out = capsys.readouterr().out
    assert "parameters of notebook 'data'" in out and "examples" in out and "list[dataset]" in out


def test_smoke_publish_into_the_repository_is_refused():
    proc = cli("run", "data", "--smoke", "--publish")
    assert proc.returncode == 2 and "smoke pages never become the repository's book pages" in proc.stderr


PLUGINS = Path(__file__).parent / "fixtures" / "plugins"


def test_plugin_registers_a_dataset_and_a_scorer_seen_by_list(tmp_path):
    proc = cli("list", env={"STUDY_PLUGINS": "study_example_plugin", "PYTHONPATH": str(PLUGINS)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "plugin-photos" in proc.stdout and "plugin-colour" in proc.stdout


def test_plugin_names_are_valid_parameters(tmp_path):
    env = {"STUDY_PLUGINS": "study_example_plugin", "PYTHONPATH": str(PLUGINS)}
    proc = cli("run", "scorers", "-p", "scorers", "plugin-colr", "--root", str(tmp_path), env=env)
    assert proc.returncode == 2 and "Did you mean plugin-colour" in proc.stderr


def test_a_plugin_that_fails_to_import_is_named(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('bad plugin on purpose')\n")
    proc = cli("list", env={"STUDY_PLUGINS": "broken_plugin", "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "STUDY_PLUGINS names module 'broken_plugin'" in proc.stderr and "bad plugin on purpose" in proc.stderr
