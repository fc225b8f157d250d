"""The Reproducibility page's rows: seeds and smoke per result table, verified cache entries."""
import pandas as pd

from analysis import prose, provenance, results


def _table(folder, name, seed, smoke):
    results.write(results.rows([{"metric": "m", "value": 1.0}], run=name, model="", source="none", pretrained="",
                               dataset="d", split="all", seed=seed, smoke=smoke), folder / name)


def test_seed_rows_read_the_destination_and_this_runs_tables(tmp_path, monkeypatch):
    dest, staging = tmp_path / "results", tmp_path / ".tmp-x" / "results"
    _table(dest, "datacards", 0, False)
    _table(dest, "scorers", 0, False)
    _table(staging, "scorers", 3, True)  # this run's newer table wins over the published one
    monkeypatch.setenv("STUDY_RESULTS_DEST", str(dest))
    monkeypatch.setenv("STUDY_RESULTS", str(staging))
    got = {(r["dataset"], r["metric"]): r["value"] for r in provenance.seed_rows()}
    assert got == {("datacards", "seeds"): "0", ("datacards", "smoke"): "False",
                   ("scorers", "seeds"): "3", ("scorers", "smoke"): "True"}


def test_summary_names_cache_entries_that_fail_verification():
    rows = pd.DataFrame([
        {"section": "package", "dataset": "numpy", "metric": "version", "value": "2.0"},
        {"section": "cache", "dataset": "debian/aaa", "metric": "entry_sha256", "value": "x", "verified": True},
        {"section": "cache", "dataset": "scenes/bbb", "metric": "entry_sha256", "value": "y", "verified": False},
        {"section": "code", "dataset": "study", "metric": "git_commit", "value": "abc"},
    ])
    (text,) = prose.provenance_sentences(rows)
    assert "1 cache entries verified against their manifests (1 failed verification: scenes/bbb)" in text


def test_cache_rows_verify_each_entry(tmp_cache):
    from analysis import cache

    folder = cache.entry("demo", {"n": 1}, lambda out: (out / "a.txt").write_text("hello"))
    (rows,) = provenance.cache_rows()
    assert rows["dataset"] == "demo/" + folder.name and rows["verified"] is True
    (folder / "a.txt").write_text("changed")
    assert provenance.cache_rows()[0]["verified"] is False


def test_cache_rows_name_the_debian_packages_an_entry_came_from(tmp_cache):
    """A debian.fetch entry records one package; an entry built from several (WordNet) records a dict of them;
    each .deb appears once."""
    import json

    from analysis import cache

    one = {"package": "tuxpaint-stamps-default", "version": "1", "deb_sha256": "aa"}
    many = {"packages": {"wordnet-base": {"version": "2", "deb_sha256": "bb"},
                         "tuxpaint-stamps-default": {"version": "1", "deb_sha256": "aa"}}}
    cache.entry("debian", {"n": 1}, lambda out: (out / "source.json").write_text(json.dumps(one)))
    cache.entry("wordnet", {"n": 1}, lambda out: (out / "source.json").write_text(json.dumps(many)))
    debs = sorted((r["dataset"], r["value"], r["version"]) for r in provenance.cache_rows()
                  if r["metric"] == "deb_sha256")
    assert debs == [("debian:tuxpaint-stamps-default", "aa", "1"), ("debian:wordnet-base", "bb", "2")]
