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
