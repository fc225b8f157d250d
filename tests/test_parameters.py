"""Parameters are declared once (analysis/parameters.py) and every bad key or value is refused clearly."""
import pytest

from analysis import parameters
from analysis.parameters import Param, ParameterError
from analysis.registry import NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS.names())
def test_every_registered_notebook_is_declared(name):
    """Every page's template is declared (a variant page through its base name); smoke and seed default off."""
    assert parameters.declaration_key(name) in parameters.DECLARED
    sp = parameters.template_spec(name)
    assert sp["smoke"].default is False and sp["seed"].default == 0


@pytest.mark.parametrize("key, value, words", [
    ("seed", 1.7, ["seed=1.7", "not a whole number", "integer >= 0"]),
    ("seed", "abc", ["seed='abc'", "integer >= 0"]),
    ("seed", -1, ["seed=-1", "out of range"]),
    ("max_items", -5, ["max_items=-5", "integer >= 2", "None"]),
    ("max_items", 1, ["max_items=1", "out of range"]),
    ("n_boot", 10, ["n_boot=10", ">= 100"]),
    ("smoke", "yes please", ["smoke='yes please'", "true or false"]),
    ("smoke", 1, ["smoke=1", "true or false"]),
    ("datasets", [], ["datasets=[]", "list of dataset names"]),
    ("datasets", [3], ["datasets=[3]", "list of dataset names"]),
])
def test_bad_values_name_parameter_value_and_what_is_allowed(key, value, words):
    with pytest.raises(ParameterError) as e:
        parameters.check("scorers", {key: value})
    msg = str(e.value)
    assert "notebook 'scorers'" in msg
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_key_names_close_matches():
    with pytest.raises(ParameterError, match=r"no parameter 'max_item'.*Did you mean max_items"):
        parameters.check("scorers", {"max_item": 3})
    with pytest.raises(ParameterError, match=r"no parameter 'nosuchparam'.*smoke, seed"):
        parameters.check("data", {"nosuchparam": 3})


def test_names_are_checked_against_the_registries():
    with pytest.raises(ParameterError, match=r"parameter scorers: unknown scorer 'clip-mni'.*Did you mean clip-mini"):
        parameters.check("scorers", {"scorers": ["clip-mni"]})
    with pytest.raises(ParameterError, match=r"parameter datasets: unknown dataset 'tuxpaint'"):
        parameters.check("data", {"datasets": "tuxpaint"})


def test_bare_string_becomes_a_one_element_list_and_defaults_are_filled():
    p = parameters.check("scorers", {"scorers": "clip-mini", "max_items": "None", "seed": 4.0})
    assert p["scorers"] == ["clip-mini"] and p["max_items"] is None and p["seed"] == 4 and type(p["seed"]) is int
    assert p["datasets"] == parameters.defaults("scorers")["datasets"]


def test_check_many_gives_each_notebook_its_own_keys_and_refuses_keys_no_one_has():
    out = parameters.check_many(["data", "reproducibility"], {"examples": 4, "seed": 2})
    assert out["data"]["examples"] == 4 and out["data"]["seed"] == 2
    assert "examples" not in out["reproducibility"] and out["reproducibility"]["seed"] == 2
    with pytest.raises(ParameterError, match="no parameter 'n_boot'"):
        parameters.check_many(["data", "reproducibility"], {"n_boot": 200})


def test_variant_names_are_stable_and_differ_by_parameters():
    a = parameters.variant_name("data", parameters.check("data", {"smoke": True, "seed": 3}))
    assert a == parameters.variant_name("data", parameters.check("data", {"seed": 3, "smoke": True}))
    assert a.startswith("data-smoke-seed=3-")
    assert a != parameters.variant_name("data", parameters.check("data", {"smoke": True, "seed": 4}))
    assert parameters.changed("data", parameters.check("data", {"seed": 0})) == {}


def test_describe_lists_types_and_defaults():
    text = parameters.describe("scorers")
    assert "max_items" in text and "int>=2|None" in text and "default 1000" in text
    assert "default_scorer_names()" in text


def test_undeclared_notebook_reads_its_template(tmp_path, request):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("smoke = False\nseed = 0\nrate = 0.5\nnames = ['a']",
                                          metadata={"tags": ["parameters"]})]
    nbformat.write(nb, tmp_path / "t.ipynb")
    NOTEBOOKS.register("undeclared-test", "analysis.provenance:run_provenance", template=str(tmp_path / "t.ipynb"))
    request.addfinalizer(lambda: NOTEBOOKS._entries.pop("undeclared-test", None))
    sp = parameters.spec("undeclared-test")
    assert sp["rate"].type == "float" and sp["names"].type == "list"
    assert parameters.check("undeclared-test", {"rate": 2, "names": "b"}) == {
        "smoke": False, "seed": 0, "rate": 2.0, "names": ["b"]}
    with pytest.raises(ParameterError, match="rate"):
        parameters.check("undeclared-test", {"rate": "fast"})


def test_param_type_is_checked_at_declaration():
    with pytest.raises(ValueError, match="type 'integer'"):
        Param("x", "integer", 0, "")


def test_a_name_listed_twice_is_refused():
    from analysis.parameters import ParameterError, check

    with pytest.raises(ParameterError, match="clip-mini more than once"):
        check("scorers", {"scorers": ["clip-mini", "clip-mini"]})


# ----------------------------------------------------------------------------- variant pages (DESIGN.md §7)
VBASE = "vtest"


@pytest.fixture
def variants(tmp_path, request):
    """Three variant pages of one small template, declared once under their base name: vtest-clip fixes reward,
    vtest-mix fixes reward and lam, vtest-seeded fixes seed. Removed again after the test."""
    import nbformat

    from analysis.registry import notebook_variants

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("smoke = False\nseed = 0\nreward = 'cider-d'\nlam = 0.5",
                                          metadata={"tags": ["parameters"]})]
    nbformat.write(nb, tmp_path / "v.ipynb")
    parameters.declare(VBASE, [parameters.SMOKE, parameters.SEED,
                               Param("reward", "str", "cider-d", "the reward", names="reward"),
                               Param("lam", "float", 0.5, "mix weight", minimum=0.0, maximum=1.0)])
    entries = notebook_variants(VBASE, str(tmp_path / "v.ipynb"), "analysis.provenance:run_provenance", "Tests",
                                {"clip": {"reward": "clip-mini"}, "mix": {"reward": "mix:clip-mini", "lam": 0.25},
                                 "seeded": {"seed": 7}}, "a test variant")
    NOTEBOOKS.add(*entries)

    def clean():
        for e in entries:
            NOTEBOOKS._entries.pop(e.name, None)
        parameters.DECLARED.pop(VBASE, None)

    request.addfinalizer(clean)
    return [e.name for e in entries]


def test_variant_defaults_are_the_template_defaults_overlaid_with_the_fixed_values(variants):
    assert variants == ["vtest-clip", "vtest-mix", "vtest-seeded"]
    assert NOTEBOOKS.names()[-3:] == variants  # registry order is run order
    assert parameters.declaration_key("vtest-mix") == VBASE and VBASE not in NOTEBOOKS
    assert parameters.defaults("vtest-clip") == {"smoke": False, "seed": 0, "reward": "clip-mini", "lam": 0.5}
    assert parameters.defaults("vtest-mix") == {"smoke": False, "seed": 0, "reward": "mix:clip-mini", "lam": 0.25}
    assert parameters.defaults("vtest-seeded") == {"smoke": False, "seed": 7, "reward": "cider-d", "lam": 0.5}
    assert parameters.template_spec("vtest-clip")["reward"].default == "cider-d"  # the template's cell
    assert parameters.fixed("vtest-mix") == {"reward": "mix:clip-mini", "lam": 0.25}
    assert parameters.fixed("data") == {}


def test_fixed_values_are_the_pages_defaults_and_any_override_is_a_run(variants):
    page = parameters.check("vtest-clip", {})
    assert page["reward"] == "clip-mini" and parameters.is_default("vtest-clip", page)
    assert parameters.changed("vtest-clip", page) == {}
    # the template's own default is an override of this page's fixed value, so not this page's defaults
    back = parameters.check("vtest-clip", {"reward": "cider-d"})
    assert not parameters.is_default("vtest-clip", back)
    assert parameters.changed("vtest-clip", back) == {"reward": "cider-d"}
    assert parameters.variant_name("vtest-clip", back).startswith("vtest-clip-reward=cider-d-")
    seed = parameters.check("vtest-mix", {"seed": 3})
    assert seed["reward"] == "mix:clip-mini" and seed["lam"] == 0.25  # the fixed values stay
    assert parameters.variant_name("vtest-mix", seed).startswith("vtest-mix-seed=3-")
    # the same parameter set on two pages gives two different run folders
    assert parameters.variant_name("vtest-clip", parameters.check("vtest-clip", {"seed": 3})) != \
        parameters.variant_name("vtest-mix", seed)


def test_check_many_gives_each_variant_page_its_own_fixed_values(variants):
    out = parameters.check_many(variants, {"seed": 2})
    assert [out[n]["reward"] for n in variants] == ["clip-mini", "mix:clip-mini", "cider-d"]
    assert {out[n]["seed"] for n in variants} == {2}


def test_describe_shows_the_template_and_the_fixed_values(variants):
    text = parameters.describe("vtest-mix")
    assert "is the template" in text and "v.ipynb with reward='mix:clip-mini', lam=0.25" in text
    assert "default 'mix:clip-mini' (fixed by this page; the template's default is 'cider-d')" in text
    assert "default 0 " in text or "default 0\n" in text  # seed is not fixed: no note
    assert "reward" in text and "  str" not in text.split("reward", 1)[1].split("\n")[0]  # shown as a reward name


def test_list_shows_variant_pages_with_their_fixed_values(variants, capsys):
    from analysis.__main__ import main

    assert main(["list", "notebooks"]) == 0
    out = capsys.readouterr().out
    for words in ("vtest-clip", "reward=clip-mini", "reward=mix:clip-mini, lam=0.25", "seed=7"):
        assert words in out, words
    assert main(["list", "vtest-seeded"]) == 0
    assert "fixed by this page; the template's default is 0" in capsys.readouterr().out


@pytest.mark.parametrize("fixed, words", [
    ({"reward": "clip-mni"}, ["notebook 'vtest-bad'", "unknown reward 'clip-mni'", "Did you mean clip-mini",
                              "meta['parameters'] of the NOTEBOOKS entry 'vtest-bad'"]),
    ({"lam": 2.0}, ["notebook 'vtest-bad'", "lam=2.0", "out of range", "NOTEBOOKS entry 'vtest-bad'"]),
    ({"rewrad": "blind"}, ["notebook 'vtest-bad'", "no parameter 'rewrad'", "Did you mean reward",
                           "meta['parameters']"]),
])
def test_a_bad_fixed_value_fails_early_naming_the_entry(variants, fixed, words):
    from analysis.registry import notebook_variants

    NOTEBOOKS.add(*notebook_variants(VBASE, NOTEBOOKS.entry("vtest-clip").meta["template"],
                                     "analysis.provenance:run_provenance", "Tests", {"bad": fixed}, "bad"))
    try:
        for use in (parameters.fixed, parameters.spec, parameters.defaults, lambda n: parameters.check(n, {})):
            with pytest.raises(ParameterError) as e:
                use("vtest-bad")
            for w in words:
                assert w in str(e.value), (w, str(e.value))
    finally:
        NOTEBOOKS._entries.pop("vtest-bad", None)


@pytest.mark.parametrize("value, ok", [
    ("cider-d", True), ("cider-d-fast", True), ("blind", True), ("clip-mini+neg", True), ("score:uniter-mini", True),
    ("clip-s:clip-mini", True), ("mix:clip-mini", True), ("mix:score:blind", True), ("clip:ViT-B-32/openai", True),
    ("cider", False), ("mix:cider-d", False), ("score:nope", False), ("clip:", False), ("mix:", False),
])
def test_reward_names_are_checked_without_building_anything(variants, value, ok):
    if ok:
        assert parameters.check("vtest-clip", {"reward": value})["reward"] == value
    else:
        with pytest.raises(ParameterError, match=r"parameter reward: unknown reward"):
            parameters.check("vtest-clip", {"reward": value})


def test_names_apply_to_str_and_list_parameters_only():
    with pytest.raises(ValueError, match="names= applies to str and list"):
        Param("x", "int", 0, "", names="scorer")
    with pytest.raises(ValueError, match="names='model'"):
        Param("x", "str", "a", "", names="model")
    assert Param("x", "str", "clip-mini", "", names="scorer").check("blind") == "blind"
    with pytest.raises(ParameterError, match="unknown scorer 'clip-mni'"):
        Param("x", "str", "clip-mini", "", names="scorer").check("clip-mni")


def test_a_missing_template_is_named(tmp_path, request):
    NOTEBOOKS.register("no-template-test", "analysis.provenance:run_provenance", template=str(tmp_path / "nope.ipynb"))
    request.addfinalizer(lambda: NOTEBOOKS._entries.pop("no-template-test", None))
    with pytest.raises(ParameterError, match=r"notebook 'no-template-test': its template .*nope.ipynb does not exist"):
        parameters.spec("no-template-test")


def test_run_help_describes_a_named_variant_page(variants, capsys):
    from analysis.__main__ import parser

    with pytest.raises(SystemExit):
        parser().parse_args(["run", "vtest-mix", "--help"])
    out = capsys.readouterr().out
    assert "parameters of notebook 'vtest-mix'" in out and "fixed by this page" in out
    assert "parameters of notebook 'data'" not in out
