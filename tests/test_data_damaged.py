"""A damaged file never deletes data (issue 7, fault 3), and a fallback never carries another dataset's name.

A damaged cache entry is rebuilt beside itself and swapped in only once the rebuild
verifies (one line reports the repair). When it cannot be rebuilt (offline: the builder
raises ``DataUnavailable``), the entry is kept and its damaged files are skipped and
counted by the datasets that use them, with one line saying so.
"""
import json
import os
import shutil

import pytest

from analysis import cache, datacards, prose
from analysis.data import debian, scenes, tuxpaint
from analysis.data.base import DataUnavailable

REAL_ROOT = cache.root()  # the filled cache (.ci/setup), read before tmp_cache points STUDY_CACHE elsewhere


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    """Entries kept damaged are remembered per process; each test starts with none."""
    monkeypatch.setattr(cache, "_KEPT", {})


def _offline(monkeypatch):
    def no_network(name, version, into):
        raise DataUnavailable(f"could not download Debian package {name}={version}: network unreachable (simulated)")

    monkeypatch.setattr(debian, "_download", no_network)


def _cache_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[cache]")]


# ----------------------------------------------------------------- the cache itself
def _two_files(d):
    (d / "a.txt").write_text("alpha")
    (d / "b.txt").write_text("bravo")


def test_damaged_entry_is_rebuilt_beside_itself_and_reported(tmp_cache, capsys):
    folder = cache.entry("k", {"v": 1}, _two_files)
    (folder / "a.txt").write_text("ALP")  # truncated and changed
    seen = []

    def rebuild(d):
        seen.append((folder / "b.txt").read_text())  # the damaged entry is still there while rebuilding
        _two_files(d)

    again = cache.entry("k", {"v": 1}, rebuild)
    assert again == folder and seen == ["bravo"] and cache.verify(folder)
    assert (folder / "a.txt").read_text() == "alpha"
    lines = _cache_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "repaired" in lines[0] and "a.txt" in lines[0]
    assert not [p for p in (tmp_cache / "k").iterdir() if p.name.startswith(".")]  # no .tmp-* / .old-* left


def test_entry_that_cannot_be_rebuilt_is_kept_and_its_damage_named(tmp_cache, capsys):
    folder = cache.entry("k", {"v": 1}, _two_files)
    (folder / "a.txt").write_text("ALPHA!")
    calls = []

    def offline(d):
        calls.append(1)
        (d / "a.txt").write_text("half")
        raise DataUnavailable("no network here")

    assert cache.entry("k", {"v": 1}, offline) == folder
    assert (folder / "b.txt").read_text() == "bravo" and (folder / "a.txt").read_text() == "ALPHA!"
    assert "damaged in the cache" in cache.damage(folder / "a.txt") and cache.damage(folder / "b.txt") is None
    lines = _cache_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "could not rebuild" in lines[0] and "no network here" in lines[0]
    assert "1 damaged file(s) (a.txt)" in lines[0]
    # the same damage is not retried nor re-reported in this process
    assert cache.entry("k", {"v": 1}, offline) == folder and calls == [1] and not capsys.readouterr().err
    # once the file is sound again, the entry is trusted again
    (folder / "a.txt").write_text("alpha")
    assert cache.entry("k", {"v": 1}, offline) == folder and cache.damage(folder / "a.txt") is None
    assert not [p for p in (tmp_cache / "k").iterdir() if p.name.startswith(".tmp-")]


def test_entry_without_manifest_is_kept_when_it_cannot_be_rebuilt(tmp_cache, capsys):
    folder = cache.entry("k", {"v": 1}, _two_files)
    (folder / cache.MANIFEST).unlink()

    def offline(d):
        raise DataUnavailable("no network here")

    with pytest.raises(DataUnavailable, match="no network"):
        cache.entry("k", {"v": 1}, offline)
    assert (folder / "a.txt").read_text() == "alpha"
    assert "manifest is missing" in capsys.readouterr().err


def test_swap_killed_between_its_renames_is_undone(tmp_cache):
    folder = cache.entry("k", {"v": 1}, _two_files)
    os.replace(folder, folder.parent / f".old-{folder.name}")  # the state a kill mid-swap leaves

    def must_not_build(d):
        raise AssertionError("the old entry should have been put back, not rebuilt")

    assert cache.entry("k", {"v": 1}, must_not_build) == folder and cache.verify(folder)


# ----------------------------------------------------------------- a damaged stamp in the Debian extract
@pytest.fixture
def damaged_extract(tmp_cache):
    """A copy of the real tuxpaint extract in a tmp cache, with one training stamp's PNG truncated
    and another stamp's description emptied; returns ``(folder, damaged png item, damaged txt item)``."""
    key = cache.recipe_key({"package": tuxpaint.PACKAGE, "version": debian.PACKAGES[tuxpaint.PACKAGE],
                            "tag": "files"})
    real = REAL_ROOT / "debian" / key
    if not cache.verify(real):
        pytest.skip(f"the embedded data is not in the cache ({real}); run .ci/setup")
    folder = tmp_cache / "debian" / key
    shutil.copytree(real, folder)
    stamps = tuxpaint.items(folder)
    png_item = next(it for it in stamps if it.id == scenes.object_pool([s for s in stamps if s.split == "train"])[0]["id"])
    txt_item = next(it for it in stamps if it.split == "test")
    data = png_item.path.read_bytes()
    png_item.path.write_bytes(data[: len(data) // 2])
    txt_item.path.with_suffix(".txt").write_bytes(b"")
    return folder, png_item, txt_item


def test_offline_damaged_stamp_is_skipped_and_counted_not_deleted(damaged_extract, monkeypatch, capsys):
    folder, png_item, txt_item = damaged_extract
    _offline(monkeypatch)
    n_files = len(json.loads((folder / cache.MANIFEST).read_text())["files"])

    ds = tuxpaint.load()
    assert ds.name == "tuxpaint-stamps" and len(ds) == 536
    skipped = dict(ds.skipped)
    assert set(skipped) == {png_item.id, txt_item.id}
    assert "damaged in the cache" in skipped[png_item.id] and ".txt" in skipped[txt_item.id]
    assert sum(1 for p in folder.rglob("*") if p.is_file() and p.name != cache.MANIFEST) == n_files  # nothing deleted
    lines = _cache_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "2 damaged file(s)" in lines[0] and "could not rebuild" in lines[0]

    # the chapter loaders keep the dataset's own name: no fallback for a damaged file
    again, reason = datacards.load_with_fallback("tuxpaint-stamps")
    assert again.name == "tuxpaint-stamps" and reason is None and len(again.skipped) == 2
    assert not capsys.readouterr().err  # reported once per process

    # scenes are drawn only from sound stamps
    sc = scenes.load(n_scenes=4)
    assert png_item.meta["object"] not in sc.provenance["pool"] and len(sc) == 4 and not sc.skipped


def test_damaged_stamp_is_repaired_when_the_source_can_be_had(damaged_extract, monkeypatch, capsys):
    folder, png_item, _ = damaged_extract
    real = REAL_ROOT / "debian" / folder.name

    def rebuild_from_a_sound_copy(name, keep, *, tag="files"):  # stands in for a working mirror
        return cache.entry("debian", {"package": name, "version": debian.PACKAGES[name], "tag": tag},
                           lambda out: shutil.copytree(real, out, dirs_exist_ok=True,
                                                       ignore=shutil.ignore_patterns(cache.MANIFEST)))

    monkeypatch.setattr(debian, "fetch", rebuild_from_a_sound_copy)
    ds = tuxpaint.load()
    assert len(ds) == 538 and not ds.skipped and cache.verify(folder)
    lines = _cache_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("[cache] repaired debian/") and "2 damaged file(s)" in lines[0]


# ----------------------------------------------------------------- fallbacks keep their own name
def test_fallback_dataset_keeps_its_own_name_and_is_carded_once(monkeypatch):
    def offline():
        raise DataUnavailable("network unreachable (simulated)")

    monkeypatch.setattr(tuxpaint, "source", offline)
    rows, loaded = datacards.run_datacards(["tuxpaint-stamps", "stamp-scenes", "sample-photos"], smoke=True)
    assert list(loaded) == ["sample-photos"] and all(ds.name == k for k, ds in loaded.items())
    assert set(rows.dataset) == {"sample-photos"} and not rows.duplicated(["dataset", "metric"]).any()
    assert set(rows.stands_in_for) == {"tuxpaint-stamps, stamp-scenes"}
    card = datacards.card_markdown(loaded["sample-photos"], rows)
    assert "stands in for tuxpaint-stamps, stamp-scenes" in card and "network unreachable" in card
    assert "replaced by `sample-photos`: stamp-scenes, tuxpaint-stamps" in " ".join(prose.datacards_sentences(rows))
    assert int(datacards.summary_table(rows).loc["sample-photos", "items"]) == 14
