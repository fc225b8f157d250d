import json

import numpy as np
import pytest

from analysis import cache


def test_recipe_key_is_order_independent_and_content_sensitive():
    assert cache.recipe_key({"a": 1, "b": [1, 2]}) == cache.recipe_key({"b": [1, 2], "a": 1})
    assert cache.recipe_key({"a": 1}) != cache.recipe_key({"a": 2})
    assert len(cache.recipe_key({})) == 20


def test_entry_builds_once_then_hits(tmp_cache):
    calls = []

    def build(d):
        calls.append(1)
        (d / "x.txt").write_text("hello")

    a = cache.entry("k", {"v": 1}, build)
    b = cache.entry("k", {"v": 1}, build)
    assert a == b and len(calls) == 1
    assert (a / "x.txt").read_text() == "hello"
    manifest = json.loads((a / cache.MANIFEST).read_text())
    assert manifest["recipe"] == {"v": 1}
    assert manifest["files"]["x.txt"]["sha256"] == cache.file_sha256(a / "x.txt")
    assert a.parent.parent == tmp_cache


def test_corrupt_entry_is_detected_and_rebuilt(tmp_cache):
    calls = []

    def build(d):
        calls.append(1)
        (d / "x.txt").write_text("hello")

    a = cache.entry("k", {"v": 1}, build)
    (a / "x.txt").write_text("HELLO")  # same size, other bytes
    assert not cache.verify(a)
    b = cache.entry("k", {"v": 1}, build)
    assert len(calls) == 2 and (b / "x.txt").read_text() == "hello" and cache.verify(b)


def test_interrupted_build_leaves_no_entry_and_no_temp(tmp_cache):
    def build(d):
        (d / "half.txt").write_text("partial")
        raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        cache.entry("k", {"v": 2}, build)
    kind = tmp_cache / "k"
    assert list(kind.iterdir()) == []  # neither the entry nor a .tmp-* folder


def test_entry_missing_manifest_is_not_trusted(tmp_cache):
    a = cache.entry("k", {"v": 3}, lambda d: (d / "f").write_bytes(b"1"))
    (a / cache.MANIFEST).unlink()
    assert not cache.verify(a)


def test_cached_array_roundtrip(tmp_cache):
    x = np.arange(12.0).reshape(3, 4)
    calls = []
    y = cache.cached_array("arr", {"n": 12}, lambda: calls.append(1) or x)
    z = cache.cached_array("arr", {"n": 12}, lambda: calls.append(1) or x)
    assert np.array_equal(y, x) and np.array_equal(z, x) and len(calls) == 1


def test_entry_hash_stable_across_roots(tmp_path, monkeypatch):
    hashes = []
    for sub in ("a", "b"):
        monkeypatch.setenv("STUDY_CACHE", str(tmp_path / sub))
        hashes.append(cache.entry_hash(cache.entry("k", {"v": 1}, lambda d: (d / "f").write_text("same"))))
    assert hashes[0] == hashes[1]


def test_stale_temporary_folders_of_killed_builds_are_pruned(tmp_cache):
    import os

    base = tmp_cache / "k"
    stale, fresh = base / ".tmp-stale", base / ".tmp-fresh"
    stale.mkdir(parents=True)
    fresh.mkdir()
    os.utime(stale, (0, 0))
    cache.entry("k", {"v": 9}, lambda d: (d / "f").write_text("x"))
    assert not stale.exists() and fresh.exists()
