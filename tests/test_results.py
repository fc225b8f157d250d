import os

import pandas as pd
import pytest

from analysis import results


def _frame(**over):
    return results.rows([{"metric": "m", "value": 1.5}], run="r", model="clip-mini", source="embedded",
                        pretrained="", dataset="d", split="test", seed=0, smoke=False, **over)


def test_rows_puts_provenance_first_and_keeps_extras():
    df = _frame(extra="x")
    assert list(df.columns[:10]) == results.COLUMNS and df["extra"].iloc[0] == "x"
    assert "smoke" in results.COLUMNS


def test_smoke_is_required_and_must_be_a_bool():
    with pytest.raises(ValueError, match="smoke"):
        results.rows([{"metric": "m", "value": 1}], run="r", model="m", source="embedded", pretrained="",
                      dataset="d", split="s", seed=0)
    with pytest.raises(ValueError, match="column 'smoke' must hold True or False"):
        _frame().assign(smoke="yes").pipe(results.validate)


def test_local_source_is_allowed():
    assert _frame().assign(source="local").pipe(results.validate)["source"].iloc[0] == "local"


def test_missing_provenance_column_is_named():
    with pytest.raises(ValueError, match="seed"):
        results.rows([{"metric": "m", "value": 1}], run="r", model="m", source="embedded", pretrained="",
                      dataset="d", split="s", smoke=False)


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown source"):
        results.validate(_frame().assign(source="made-up"))


def test_write_read_roundtrip(tmp_path):
    df = _frame()
    paths = results.write(df, tmp_path / "table")
    assert paths["csv"].exists() and paths["parquet"].exists()
    pd.testing.assert_frame_equal(results.read(tmp_path / "table"), df)
    assert pd.read_csv(paths["csv"]).shape == df.shape


def test_interrupted_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    results.atomic_write_bytes(target, b"old")

    def boom(*a, **k):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        results.atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_result_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        paths = results.write(_frame(), tmp_path / "table")
        timings = results.write_timings([{"model": "m", "seconds": 1.0}], tmp_path / "table")
    finally:
        os.umask(old)
    for p in [*paths.values(), timings]:
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_timings_go_to_their_own_file_beside_the_table(tmp_path):
    path = results.write_timings([{"model": "clip-mini", "what": "load", "seconds": 0.25}], tmp_path / "scorers")
    assert path == tmp_path / "scorers.timings.csv"
    assert pd.read_csv(path).to_dict("records") == [{"model": "clip-mini", "what": "load", "seconds": 0.25}]
    assert results.write_timings(pd.DataFrame({"s": [1]}), tmp_path / "scorers.csv") == path  # suffix dropped


def test_same_rows_give_the_same_bytes(tmp_path):
    a = results.write(_frame(extra="x"), tmp_path / "a")
    b = results.write(_frame(extra="x"), tmp_path / "b")
    assert a["csv"].read_bytes() == b["csv"].read_bytes()
    assert a["parquet"].read_bytes() == b["parquet"].read_bytes()


def test_results_outside_the_runner_go_to_a_scratch_folder_not_the_book(monkeypatch):
    from analysis import results
    from analysis.registry import ROOT

    monkeypatch.delenv("STUDY_RESULTS", raising=False)
    here = results.results_dir()
    assert here == ROOT / "book" / "generated" / "runs" / "manual" / "results"
    assert here != ROOT / "book" / "generated" / "results"
