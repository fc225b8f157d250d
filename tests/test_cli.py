import subprocess
import sys

import pytest

from analysis.__main__ import main, parser


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
    from analysis.__main__ import _params

    args = parser().parse_args(["run", "data", "-p", "datasets", "[a, b]", "-p", "examples", "4", "--smoke"])
    assert _params(args) == {"datasets": ["a", "b"], "examples": 4, "smoke": True}
