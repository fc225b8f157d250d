import importlib

import pytest

from analysis import registry
from analysis.registry import DATASETS, NOTEBOOKS, SCORERS, UnknownNameError


@pytest.mark.parametrize("reg", [DATASETS, SCORERS, NOTEBOOKS], ids=lambda r: r.kind)
def test_unknown_name_lists_valid_names(reg):
    with pytest.raises(UnknownNameError) as e:
        reg.entry("definitely-not-registered")
    msg = str(e.value)
    assert f"unknown {reg.kind}" in msg
    for name in reg.names():
        assert name in msg


def test_close_match_is_suggested():
    with pytest.raises(UnknownNameError, match="Did you mean clip-mini"):
        registry.get_scorer("clip-mni")


def test_prefix_entries_take_an_argument():
    assert SCORERS.entry("clip:ViT-B-32/openai").name == "clip:"
    assert SCORERS.entry("vilt:/some/folder").name == "vilt:"
    with pytest.raises(UnknownNameError):
        SCORERS.entry("clip:")  # a prefix alone names nothing


@pytest.mark.parametrize("entry", [e for r in (DATASETS, SCORERS, NOTEBOOKS) for e in r._entries.values()],
                         ids=lambda e: e.name)
def test_every_entry_points_at_a_callable(entry):
    module, func = entry.target.split(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_notebook_templates_exist():
    for name in NOTEBOOKS.names():
        assert registry.notebook_template(name).is_file()


def test_get_dataset_builds_through_the_registry():
    ds = registry.get_dataset("sample-photos", limit=3)
    assert len(ds) == 3 and ds.name == "sample-photos"
