"""Parameters are declared once (analysis/parameters.py) and every bad key or value is refused clearly."""
import pytest

from analysis import parameters
from analysis.parameters import Param, ParameterError
from analysis.registry import NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS.names())
def test_every_registered_notebook_is_declared(name):
    sp = parameters.spec(name)
    assert name in parameters.DECLARED
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
