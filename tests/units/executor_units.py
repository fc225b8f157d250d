"""Unit targets for tests/test_executor.py: importable by Ray workers (the test puts this folder on PYTHONPATH,
which the executor passes to its workers like a plugin's import path)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def total(values: list[int]) -> int:
    return sum(values)


def pid() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def die_once(marker: str) -> str:
    """Kill this process (SIGKILL, as the OOM killer would) the first time; return on a retry."""
    m = Path(marker)
    if not m.exists():
        m.write_text("killed once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "finished on a retry"


def die(marker: str) -> None:
    """Kill this process every time, adding a line to ``marker`` per attempt."""
    with open(marker, "a") as f:
        f.write("killed\n")
    os.kill(os.getpid(), signal.SIGKILL)


def nap(seconds: float, marker: str = "") -> str:
    """Sleep; with ``marker``, write it when done (a cancelled unit never does)."""
    time.sleep(seconds)
    if marker:
        Path(marker).write_text("finished")
    return "slept"


def wait_for(barrier: str, parties: int, timeout: float = 60.0) -> None:
    """Mark this process ready in folder ``barrier`` and wait until ``parties`` processes are."""
    folder = Path(barrier)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    end = time.monotonic() + timeout
    while len(list(folder.iterdir())) < parties:
        if time.monotonic() > end:
            raise TimeoutError(f"only {len(list(folder.iterdir()))} of {parties} builders arrived")
        time.sleep(0.02)


def build_entry(name: str, log: str, sleep: float = 0.0, barrier: str = "", parties: int = 2) -> str:
    """Build (or hit) the cache entry ``test/{name}``; each real build appends a line to ``log``. With ``barrier``,
    first wait until ``parties`` builders are ready, so that their builds overlap."""
    from analysis import cache

    if barrier:
        wait_for(barrier, parties)

    def build(folder: Path) -> None:
        with open(log, "a") as f:
            f.write(f"{name} {os.getpid()}\n")
        time.sleep(sleep)
        (folder / "value.txt").write_text(f"content of {name}\n" * 1000)

    return str(cache.entry("test", {"name": name}, build))
