"""The benchmark harness runs and reports ratios against a reference from the same run."""
from analysis import bench


def test_bench_scorers_smoke_reports_ratios_and_memory():
    (row,) = bench.bench_scorers(["blind"], smoke=True)
    assert row["scorer"] == "blind" and row["pairs_per_s"] > 0
    assert row["overhead"] == row["wrapper_s"] / row["bare_s"] - 1
    assert row["peak_mb"] > 0 and "peak_mb_over_reference" in row and isinstance(row["overhead_ok"], bool)


def test_unknown_benchmark_is_refused(capsys):
    assert bench.main(["nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
