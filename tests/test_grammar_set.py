"""The form of the labelled grammar validation set ``analysis/data/grammar_captions.csv``.

The set was written by hand, independently of the grammar detector (analysis/grammar.py), so that the detector's
precision and recall on it are honest; these tests check only its form, never its labels against a detector.
"""
import csv
import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATH = ROOT / "analysis" / "data" / "grammar_captions.csv"


@pytest.fixture(scope="module")
def rows():
    with open(PATH, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["caption", "ungrammatical", "shape"]
        return list(reader)


def test_enough_rows_with_a_caption_a_label_and_a_shape(rows):
    assert len(rows) >= 80
    assert not [r for r in rows if not r["caption"].strip()], "empty caption"
    assert not [r for r in rows if not r["shape"].strip()], "empty shape note"
    assert {r["ungrammatical"] for r in rows} == {"0", "1"}


def test_classes_are_balanced(rows):
    share = sum(r["ungrammatical"] == "1" for r in rows) / len(rows)
    assert 0.4 <= share <= 0.6, f"{share:.0%} of the captions are labelled ungrammatical"


def test_no_duplicate_captions(rows):
    norm = [re.sub(r"\s+", " ", r["caption"]).strip().lower() for r in rows]
    dups = sorted({c for c in norm if norm.count(c) > 1})
    assert not dups, f"duplicate captions: {dups}"


def test_the_set_ships_with_the_package():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["analysis"]
    assert any(fnmatch.fnmatch("data/grammar_captions.csv", p) for p in patterns)
