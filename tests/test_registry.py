import sys

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
    assert callable(entry.load())


def test_notebook_templates_exist():
    for name in NOTEBOOKS.names():
        assert registry.notebook_template(name).is_file()


def test_get_dataset_builds_through_the_registry():
    ds = registry.get_dataset("sample-photos", limit=3)
    assert len(ds) == 3 and ds.name == "sample-photos"


def test_prefix_entries_show_their_own_form():
    with pytest.raises(UnknownNameError) as e:
        SCORERS.entry("nope")
    msg = str(e.value)
    for form in ("clip:<arch>/<tag or path>", "vilt:<folder>", "lxmert:<folder>", "blip-itm:<folder>"):
        assert form in msg
    assert "vilt:<arch>" not in msg and "blip-itm:<arch>" not in msg


@pytest.fixture
def reg():
    return registry.Registry("thing", [registry.Entry("a", "analysis.runtime:rng", "seeded generator")])


def test_register_a_callable_and_a_target_string(reg):
    reg.register("b", lambda **kw: ("built", kw), "a callable", family="x")
    reg.register("c", "analysis.runtime:seed_all", "by import path")
    assert reg.get("b", n=1) == ("built", {"n": 1}) and reg.get("c", seed=3) == 3
    assert reg.table().set_index("name").loc["b", "family"] == "x"


def test_register_refuses_a_duplicate_unless_replace(reg):
    with pytest.raises(registry.DuplicateNameError, match=r"thing 'a' is already registered.*replace=True"):
        reg.register("a", "analysis.runtime:seed_all")
    reg.register("a", "analysis.runtime:seed_all", replace=True)
    assert reg.get("a", seed=2) == 2


def test_register_checks_name_and_target(reg):
    with pytest.raises(ValueError, match="module:function"):
        reg.register("d", "analysis.runtime.seed_all")
    with pytest.raises(TypeError, match="callable"):
        reg.register("d", 42)
    with pytest.raises(ValueError, match="non-empty"):
        reg.register(" d", "analysis.runtime:seed_all")


def test_registered_prefix_entry_uses_its_form(reg):
    reg.register("my:", lambda arg: arg.upper(), "a prefix", form="my:<folder>")
    assert reg.get("my:abc") == "ABC"
    with pytest.raises(UnknownNameError, match="my:<folder>"):
        reg.entry("my:")


def test_plugins_are_loaded_from_the_environment(tmp_path, monkeypatch):
    from analysis import runtime

    (tmp_path / "tmp_study_plugin.py").write_text(
        "from analysis.registry import DATASETS\n"
        "DATASETS.register('tmp-plugin-set', 'analysis.data.samples:load', 'from a plugin', source='embedded')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STUDY_PLUGINS", " tmp_study_plugin , ")
    try:
        assert runtime.load_plugins() == ["tmp_study_plugin"]
        assert "tmp-plugin-set" in DATASETS
        assert runtime.plugin_paths() == [str(tmp_path.resolve())]
    finally:
        DATASETS._entries.pop("tmp-plugin-set", None)
        sys.modules.pop("tmp_study_plugin", None)
    monkeypatch.setenv("STUDY_PLUGINS", "no_such_plugin_module")
    with pytest.raises(runtime.PluginError, match="STUDY_PLUGINS names module 'no_such_plugin_module'"):
        runtime.load_plugins()


def test_notebook_variants_make_one_page_per_parameter_set_in_order():
    entries = registry.notebook_variants("probe", "book/notebooks/probe.ipynb", "m:f", "The probe",
                                         {"b": {"reward": "blind"}, "a": {"reward": "mix:clip-mini", "lam": 0.5}},
                                         "reward {reward}")
    assert [e.name for e in entries] == ["probe-b", "probe-a"]  # the order given, not sorted
    assert [e.summary for e in entries] == ["reward blind", "reward mix:clip-mini"]
    assert entries[1].meta == {"template": "book/notebooks/probe.ipynb", "part": "The probe",
                               "parameters": {"reward": "mix:clip-mini", "lam": 0.5}, "variant_of": "probe"}
    assert {e.target for e in entries} == {"m:f"}


@pytest.mark.parametrize("variants, summary, words", [
    ({}, "", "at least one"),
    ({"a b": {"reward": "x"}}, "", "suffix 'a b'"),
    ({"a/b": {"reward": "x"}}, "", "suffix 'a/b'"),
    ({"a": {}}, "", "non-empty dict"),
    ({"a": "clip-mini"}, "", "non-empty dict"),
    ({"a": {"reward": "x"}}, "lam {lam}", "names 'lam', which is not one of its parameters (reward)"),
])
def test_notebook_variants_refuse_bad_sets(variants, summary, words):
    with pytest.raises(ValueError, match="notebook variant") as e:
        registry.notebook_variants("probe", "t.ipynb", "m:f", "P", variants, summary)
    assert words in str(e.value)


def test_add_keeps_order_and_refuses_duplicates(reg):
    reg.add(*registry.notebook_variants("v", "t.ipynb", "analysis.runtime:rng", "P",
                                        {"x": {"seed": 1}, "y": {"seed": 2}}, "seed {seed}"))
    assert reg.names() == ["a", "v-x", "v-y"]
    with pytest.raises(registry.DuplicateNameError, match="'v-x' is already registered"):
        reg.add(registry.Entry("v-x", "analysis.runtime:rng", ""))
    table = reg.table().set_index("name")
    assert table.loc["v-y", "parameters"] == "seed=2" and table.loc["v-y", "variant_of"] == "v"
    assert table.loc["a", "parameters"] == ""


def test_every_variant_page_shares_its_template_and_target():
    """The probe's reward pages are one template run once per reward (DESIGN.md §7), never copied notebooks."""
    pages = {n: NOTEBOOKS.entry(n) for n in NOTEBOOKS.names() if NOTEBOOKS.entry(n).meta.get("variant_of")}
    assert {n for n in pages if n.startswith("probe-")} == {
        "probe-cider-d", "probe-clip-mini", "probe-uniter-mini", "probe-lxmert-mini", "probe-blind",
        "probe-mix-clip-mini"}
    for base in {e.meta["variant_of"] for e in pages.values()}:
        mine = [e for e in pages.values() if e.meta["variant_of"] == base]
        assert len({e.meta["template"] for e in mine}) == 1 and len({e.target for e in mine}) == 1, base
        assert all(e.name.startswith(base + "-") for e in mine)
    assert registry.notebooks_by_template()["book/notebooks/probe.ipynb"] == list(pages)
    assert registry.notebook_fixed("probe-mix-clip-mini") == {"reward": "mix:clip-mini"}
    assert registry.notebook_fixed("data") == {}
