"""Shared test fixtures.

Tests that need the embedded data use the normal cache (``$STUDY_CACHE`` or
``~/.cache/vlp-study``) that ``.ci/setup`` fills; tests of the cache itself use
a temporary root.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """A fresh, empty cache root for this test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("STUDY_CACHE", str(root))
    return root


REAL_FORMATS = __import__("pathlib").Path(__file__).parent / "fixtures" / "real_formats"


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """No real data folder of this machine leaks into a test: STUDY_DATA and HOME point at empty folders."""
    monkeypatch.setenv("STUDY_DATA", str(tmp_path / "study-data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def copy_set(tmp_path):
    """``copy_set(name)``: a writable copy of fixture set ``tests/fixtures/real_formats/<name>``."""
    import shutil

    def copy(name: str, dest=None):
        dest = dest or tmp_path / name
        shutil.copytree(REAL_FORMATS / name, dest)
        return dest

    return copy


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """``(root, completed process)`` of ``python -m analysis all --smoke --root <a staged book>``: every notebook
    at smoke size, then the book built with warnings as errors. Shared by the notebook tests and the README's
    ``all --smoke`` example, so the whole smoke book runs once per session."""
    import subprocess
    import sys

    from analysis import runner
    from analysis.registry import ROOT

    root = runner.stage(tmp_path_factory.mktemp("book"))
    proc = subprocess.run([sys.executable, "-m", "analysis", "all", "--smoke", "--root", str(root)],
                          capture_output=True, text=True, cwd=ROOT)
    return root, proc
