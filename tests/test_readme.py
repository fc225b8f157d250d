"""Every command the README shows runs as shown (run/all/book in a staged book root, at smoke size, so the
repository's pages are never touched); the real-data example fails with a message that says what is missing."""
import os
import re
import shlex
import subprocess
import sys

import pytest

from analysis import runner
from analysis.registry import ROOT

README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """``python -m analysis ...`` commands from the README's code blocks (continuation lines joined, comments
    dropped) and inline code spans; the set-up line (`bash .ci/setup && ...`) is what CI itself runs."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if re.search(r"(^|\s)\.venv/bin/python -m analysis\b", line) and not line.startswith("bash "):
                out.append(line)
    out += [m for m in re.findall(r"`(python -m analysis run [^`]+)`", README)]
    return out


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands_this_test_runs():
    assert len(COMMANDS) >= 10
    assert any("STUDY_PLUGINS" in c for c in COMMANDS) and any(c.endswith("book") for c in COMMANDS)


@pytest.fixture(scope="module")
def book_root(tmp_path_factory, smoke_book):
    """A copy of the session's smoke book (its sources and executed pages, not its HTML): the README's commands
    run into it, so `book` finds every page without the whole smoke book running a second time."""
    import shutil

    root, _ = smoke_book
    dest = tmp_path_factory.mktemp("readme-book") / "book"
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns("_build"))
    return runner.stage(dest)


def prepare(command: str, root) -> tuple[list[str], dict]:
    """argv and environment for one README command, with run/all/book pointed at ``root`` at smoke size."""
    words = shlex.split(command)
    env = dict(os.environ)
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = os.pathsep.join([value, env.get(key, "")]) if key == "PYTHONPATH" else value
    i = words.index("analysis")
    argv = [sys.executable, "-m", "analysis"] + words[i + 1:]
    sub = argv[3]
    if sub in ("run", "all", "book") and "--help" not in argv:
        argv += ["--root", str(root)]
        if sub in ("run", "all") and "--smoke" not in argv:
            argv.append("--smoke")
        if sub == "book":
            argv.append("--allow-smoke")
    return argv, env


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(command, book_root, request):
    argv, env = prepare(command, book_root)
    if argv[3] == "sweep":
        # the sweep example runs under both executors in tests/test_sweep.py (into staged books, from cold copies
        # of the cache), which compares their tables: it must be exactly that command
        from test_sweep import SWEEP

        assert argv[3:] == [*SWEEP, "--executor", "ray"], "keep the README's sweep example and test_sweep.SWEEP equal"
        return
    if "--device" in argv and argv[argv.index("--device") + 1].startswith("cuda"):
        import torch

        if not torch.cuda.is_available():  # the GPU examples: a clear refusal here, before anything runs
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
            assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr, proc.stderr[-2000:]
            return
    if argv[3:] == ["all", "--smoke", "--root", str(book_root)] and env == dict(os.environ):
        # the whole smoke book: exactly the command the session fixture `smoke_book` runs (tests/conftest.py)
        root, proc = request.getfixturevalue("smoke_book")
        assert proc.args[3:] == ["all", "--smoke", "--root", str(root)]
    else:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    if "clip:ViT-B-32/openai" in command:  # needs published weights and COCO, which this machine lacks
        assert proc.returncode != 0
        assert re.search(r"ViT-B-32|coco", proc.stderr, flags=re.I), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr.splitlines()[-1]
        return
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip()
