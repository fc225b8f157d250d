"""The smoke sweep of two probe rewards x two seeds through the CLI, under the local executor and on a local Ray
cluster (its own module: no other test's Ray cluster shares the two cores meanwhile)."""
from __future__ import annotations

import subprocess
import sys

#: the README's sweep example (tests/test_readme.py leaves it to this test, which runs it under both executors)
SWEEP = ["sweep", "probe-cider-d", "--grid", "reward", "[cider-d, blind]", "--grid", "seed", "[0, 1]", "--smoke"]


def test_the_smoke_sweep_gives_the_same_rows_locally_and_on_ray(tmp_path):
    """Two probe rewards x two seeds, each point a variant page with its SCST runs as training units: through the
    CLI with --executor local and with --executor ray (a local cluster of 2 CPUs), each from its own equally cold
    copy of the cache (no SCST run or measure table in it), into its own staged book. The result tables are
    byte-identical."""
    import os

    from analysis import bench, cache, probe, runner
    from analysis.registry import ROOT

    probe.setup_job(smoke=True, seed=1, scorers=probe.CROSS_SCORERS)  # seed 1's XE and stand-ins, once, not twice
    got = {}
    for name in ("local", "ray"):
        root = runner.stage(tmp_path / f"book-{name}")
        store = bench._scale_cache(cache.root(), tmp_path / f"cache-{name}")
        extra = ["--num-cpus", "2"] if name == "ray" else []
        proc = subprocess.run([sys.executable, "-m", "analysis", *SWEEP, "--root", str(root), "--executor", name,
                               *extra], capture_output=True, text=True, cwd=ROOT, timeout=900,
                              env={**os.environ, "STUDY_CACHE": str(store)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"on the {name} executor" in proc.stdout and "4 variant page(s)" in proc.stdout
        got[name] = bench.sweep_tables(root)
    assert len(got["local"]) == 4 and all(len(v) > 1000 for v in got["local"].values())
    assert got["local"].keys() == got["ray"].keys()
    differing = [k for k in got["local"] if got["local"][k] != got["ray"][k]]
    assert not differing, f"tables differ between the executors: {differing}"


