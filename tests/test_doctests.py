"""The formulas' doctests run as tests (every module whose docstrings carry examples)."""
import doctest
import importlib

import pytest

MODULES = ["analysis.alignment", "analysis.correlation", "analysis.metrics", "analysis.cider", "analysis.linguistics",
           "analysis.scene_parse", "analysis.registry", "analysis.parameters",
           "analysis.grammar", "analysis.fluency", "analysis.wordnet", "analysis.measures",
           "analysis.grounding", "analysis.humaneval", "analysis.captioning.model", "analysis.captioning.xe",
           "analysis.captioning.scst", "analysis.captioning.retrieval", "analysis.mappers", "analysis.probe", "analysis.findings",
           "analysis.realignment"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL)
    assert result.attempted > 0 and result.failed == 0, result
