"""The benchmark harness measures what it claims: a known wrapper overhead injected by a plugin scorer is
found and flagged, a scorer without one passes, and memory is reported against the reference child."""
import os

import pytest

from analysis import bench
from analysis.registry import ROOT


@pytest.fixture
def bench_plugin(monkeypatch):
    plugins = ROOT / "tests" / "fixtures" / "plugins"
    monkeypatch.setenv("STUDY_PLUGINS", "study_bench_plugin")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(plugins))
    import sys

    from analysis.registry import SCORERS
    from analysis.runtime import load_plugins

    load_plugins()
    yield
    for name in ("sleepy", "sleepy-wrapped"):  # leave the registry as other tests expect it
        SCORERS._entries.pop(name, None)
    sys.modules.pop("study_bench_plugin", None)


def test_bench_finds_an_injected_wrapper_overhead(bench_plugin):
    fast, slow = bench.bench_scorers(["sleepy", "sleepy-wrapped"], smoke=True)
    assert fast["scorer"] == "sleepy" and slow["scorer"] == "sleepy-wrapped"
    assert fast["overhead"] < bench.TARGET_OVERHEAD and fast["overhead_ok"] is True
    assert 0.6 < slow["overhead"] < 1.6 and slow["overhead_ok"] is False  # 20 ms extra on a 20 ms call
    assert fast["pairs_per_s"] > slow["pairs_per_s"]
    assert fast["peak_mb"] > 0 and fast["peak_mb_over_reference"] < fast["peak_mb"]


def test_bench_main_fails_when_a_target_is_missed(bench_plugin, capsys, monkeypatch):
    orig = bench.bench_scorers
    monkeypatch.setitem(bench.BENCHMARKS, "scorers", lambda smoke=False: orig(["sleepy-wrapped"], smoke=True))
    assert bench.main(["scorers"], smoke=True) == 1
    assert "sleepy-wrapped" in capsys.readouterr().out


def test_unknown_benchmark_is_refused(capsys):
    assert bench.main(["nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_bench_measures_compares_each_measure_with_its_reference():
    """Batched perplexity equals one caption per pass (padding changes nothing); the grammar detector is timed
    against its own spaCy parse; METEOR's one-caption call is the fixed cost a corpus call amortises."""
    ppl, gram, met = bench.bench_measures(smoke=True)
    assert ppl["equal_ok"] is True and ppl["max_abs_diff"] <= 1e-3 and ppl["captions"] == 16
    assert gram["metric"] == "grammar detector" and gram["reference_caps_per_s"] > 0
    assert met["call_s_1"] > 0 and met["call_s_corpus"] > 0 and met["captions"] == 20


def test_bench_alignment_reports_fit_ratios_at_equal_results():
    """Smoke size: every fitter is timed against the bare XᵀY + SVD of the same run, OLS equals numpy's lstsq
    and Procrustes equals scipy's (float32, relative 1e-4), and the ratios and the child's peak memory are
    reported (the time targets themselves are not asserted: 5k x 64 fits take about a millisecond)."""
    rows = bench.bench_alignment(smoke=True)
    by = {r["what"]: r for r in rows}
    assert {"bare XᵀY + SVD (reference)", "procrustes", "lstsq (normal equations)", "numpy.linalg.lstsq",
            "ridge (alpha 1)", "robust-procrustes (5 rounds)"} <= set(by)
    ratios = next(r for r in rows if r["what"].startswith("ratios (5000 x 64"))
    assert ratios["equal_ok"] is True and ratios["ols_vs_numpy_rel_diff"] <= bench.ALIGN_EQUAL_RTOL
    assert ratios["procrustes_over_bare"] > 0 and ratios["ols_over_procrustes"] > 0
    assert isinstance(ratios["procrustes_ok"], bool) and isinstance(ratios["ols_ok"], bool)
    assert by["procrustes"]["w_error"] < 0.2  # the synthetic rotation is recovered
    assert by["peak memory of the alignment child"]["peak_mb"] > by["peak memory of the alignment child"]["data_mb"]
