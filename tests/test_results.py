import os

import pandas as pd
import pytest

from analysis import results


def _frame(**over):
    return results.rows([{"metric": "m", "value": 1.5}], run="r", model="clip-mini", source="embedded",
                        pretrained="", dataset="d", split="test", seed=0, **over)


def test_rows_puts_provenance_first_and_keeps_extras():
    df = _frame(extra="x")
    assert list(df.columns[:9]) == results.COLUMNS and df["extra"].iloc[0] == "x"


def test_missing_provenance_column_is_named():
    with pytest.raises(ValueError, match="seed"):
        results.rows([{"metric": "m", "value": 1}], run="r", model="m", source="embedded", pretrained="",
                      dataset="d", split="s")


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
