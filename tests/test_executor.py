"""Executors (analysis.executor) and plans (analysis.jobs): the local executor, the plan's order, and a real local
Ray cluster (ray.init(num_cpus=2)): same results as local, a killed worker retried or reported, concurrent cache
builders."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analysis import executor as ex
from analysis import jobs
from analysis.executor import LocalExecutor, RunFailed, Unit

UNITS = Path(__file__).parent / "units"
M = "executor_units"


@pytest.fixture
def units_path(monkeypatch):
    """tests/units on the import path here and (through $PYTHONPATH, which the executor propagates) in workers."""
    monkeypatch.syspath_prepend(str(UNITS))
    monkeypatch.setenv("PYTHONPATH", str(UNITS))
    return UNITS


def unique() -> str:
    """A name no earlier run used (the Ray tests build entries in this session's cache)."""
    import uuid

    return uuid.uuid4().hex[:12]


def u(uid, fn, after=(), **kwargs):
    return Unit(uid, "test", f"{M}:{fn}", kwargs, {"x": kwargs.get("x")} if "x" in kwargs else {}, {"num_cpus": 1},
                tuple(after))


# ----------------------------------------------------------------------------- plan checks and the local executor
def test_check_plan_refuses_duplicates_and_forward_waits():
    with pytest.raises(ex.ExecutorError, match="appears twice"):
        ex.check_plan([u("a", "square", x=1), u("a", "square", x=2)])
    with pytest.raises(ex.ExecutorError, match="waits for b"):
        ex.check_plan([u("a", "square", after=["b"], x=1), u("b", "square", x=2)])


def test_local_executor_runs_in_order_and_returns_results(units_path):
    units = [u(f"sq{i}", "square", x=i) for i in range(4)] + [u("pid", "pid", after=["sq0"])]
    out = LocalExecutor().run(units, progress=False)
    assert list(out) == ["sq0", "sq1", "sq2", "sq3", "pid"]
    assert [out[f"sq{i}"] for i in range(4)] == [0, 1, 4, 9]
    import os

    assert out["pid"] == os.getpid()  # local: in this process


def test_local_failure_names_unit_and_parameters_and_stops(units_path):
    units = [u("ok", "square", x=2), u("bad", "fail", message="no such file: weights.safetensors"),
             u("later", "square", x=3)]
    with pytest.raises(RunFailed) as e:
        LocalExecutor().run(units, progress=False)
    msg = str(e.value)
    assert "test bad" in msg and "ValueError: no such file: weights.safetensors" in msg
    assert e.value.results == {"ok": 4} and e.value.skipped == ["later"] and e.value.stopped  # stopped at once
    assert "not run: the run stopped at the first failure" in msg


def test_local_keep_going_runs_the_rest_and_skips_dependents(units_path):
    units = [u("bad", "fail", message="boom"), u("child", "square", after=["bad"], x=1), u("other", "square", x=3)]
    with pytest.raises(RunFailed) as e:
        LocalExecutor().run(units, keep_going=True, progress=False)
    assert e.value.results == {"other": 9}
    assert list(e.value.failures) == ["bad"] and e.value.skipped == ["child"]
    assert "1 of 3 unit(s) failed, 1 skipped" in str(e.value)


def test_make_refuses_unknown_executor_and_local_address():
    with pytest.raises(ex.ExecutorError, match="unknown executor"):
        ex.make("dask")
    with pytest.raises(ex.ExecutorError, match="--address is for --executor ray"):
        ex.make("local", address="auto")
    assert isinstance(ex.make("ray", address="auto"), ex.RayExecutor)


def test_worker_env_propagates_absolute_paths_plugins_and_one_device(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDY_CACHE", "relative-cache")
    monkeypatch.setenv("STUDY_DATA", "data")
    monkeypatch.setenv("PYTHONPATH", "plugins")
    monkeypatch.setenv("STUDY_PLUGINS", "my_plugin")
    monkeypatch.setenv("STUDY_DEVICE", "cuda:1")
    env = ex.worker_env()
    assert env["STUDY_CACHE"] == str((tmp_path / "relative-cache").resolve())
    assert env["STUDY_DATA"] == str((tmp_path / "data").resolve())
    assert env["PYTHONPATH"] == str((tmp_path / "plugins").resolve())  # a worker starts in another folder
    assert env["STUDY_PLUGINS"] == "my_plugin"
    assert env["STUDY_DEVICE"] == "cuda"  # one device type for every unit; Ray picks the GPU index
    monkeypatch.delenv("STUDY_DEVICE")
    import torch

    assert ex.worker_env()["STUDY_DEVICE"] == ("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- plans
def ids(units, kind=None):
    return [x.id for x in units if kind is None or x.kind == kind]


def test_plan_of_a_reward_page_trains_first_and_the_page_waits():
    units = jobs.plan(["probe-clip-mini"], {"smoke": True})
    train = [x for x in units if x.kind == "training"]
    nb = [x for x in units if x.kind == "notebook"]
    assert units[:len(train)] == train  # training first
    assert train[0].id == "probe-setup:smoke/seed0"
    assert train[0].kwargs["scorers"] == ["clip-mini", "uniter-mini", "lxmert-mini", "blind"]  # reward, then cross
    scst = [x.kwargs for x in train[1:]]
    # smoke: the clip-mini reward with one seed, the CIDEr-D baseline with two (probe.System.seeds_for)
    assert sorted((k["system"], k["scst_seed"]) for k in scst) == [("cider-d", 0), ("cider-d", 1), ("clip-mini", 0)]
    assert all(x.after == (train[0].id,) for x in train[1:])
    assert len(nb) == 1 and set(nb[0].after) == set(ids(train[1:])) | {train[0].id}
    assert nb[0].kwargs["name"] == "probe-clip-mini" and nb[0].kwargs["parameters"]["smoke"] is True
    assert all(x.resources["num_cpus"] >= 1 for x in units)


def test_plan_trains_a_shared_run_once():
    units = jobs.plan(["probe-cider-d", "probe-blind"], {"smoke": True})
    t = ids(units, "training")
    assert len(t) == len(set(t)) and t.count("scst:cider-d/smoke/seed0/scst-seed0") == 1
    nb = [x for x in units if x.kind == "notebook"]
    assert "scst:cider-d/smoke/seed0/scst-seed0" in nb[0].after and "scst:cider-d/smoke/seed0/scst-seed0" in nb[1].after


def test_plan_orders_pages_that_read_other_pages():
    units = jobs.plan(["findings", "realign-method", "realign-findings", "data", "reproducibility"], {"smoke": True})
    nb = {x.kwargs["name"]: x for x in units if x.kind == "notebook"}
    assert [x.kwargs["name"] for x in units if x.kind == "notebook"][-1] == "findings"  # runs_last
    assert set(nb["findings"].after) == {nb[n].id for n in ("realign-method", "realign-findings", "data",
                                                             "reproducibility")}
    assert nb["realign-findings"].after == (nb["realign-method"].id,)  # only the pages it reads, if planned
    assert set(nb["reproducibility"].after) == {nb[n].id for n in ("realign-method", "realign-findings", "data")}
    assert nb["data"].after == ()
    ex.check_plan(units)


def test_sweep_points_are_variants_and_clashes_are_refused():
    units = jobs.sweep("probe-cider-d", {"reward": ["cider-d", "blind"], "seed": [0, 1]}, {"smoke": True})
    nb = [x for x in units if x.kind == "notebook"]
    assert [(x.kwargs["parameters"]["reward"], x.kwargs["parameters"]["seed"]) for x in nb] == [
        ("cider-d", 0), ("cider-d", 1), ("blind", 0), ("blind", 1)]
    assert all(x.kwargs["publish"] is False for x in nb) and len(set(ids(nb))) == 4
    assert "probe-setup:smoke/seed1" in ids(units)
    from analysis.parameters import ParameterError

    with pytest.raises(ParameterError, match="both swept"):
        jobs.sweep("probe-cider-d", {"seed": [0, 1]}, {"seed": 2})
    with pytest.raises(ParameterError, match="non-empty list"):
        jobs.sweep("probe-cider-d", {"seed": 3}, {})


def test_cli_sweep_and_executor_errors_are_clear(capsys):
    from analysis.__main__ import main

    assert main(["sweep", "probe-cider-d", "--smoke"]) == 2
    assert "at least one --grid" in capsys.readouterr().err
    assert main(["run", "data", "--address", "auto"]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err
    assert main(["run", "data", "--device", "tpu"]) == 2
    assert "use one of cpu, cuda, cuda:N, mps" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the cache under concurrency
def test_two_concurrent_processes_build_one_cache_entry(tmp_cache, tmp_path, units_path):
    """Two processes build the same entry at once (each builder sleeps so they overlap): both get the same sound
    entry, no temporary folder is left, and the entry is the only one."""
    log = tmp_path / "builds.log"
    code = (f"import sys; sys.path.insert(0, {str(UNITS)!r}); import {M}; "
            f"print({M}.build_entry('x', {str(log)!r}, 1.0, barrier={str(tmp_path / 'barrier')!r}))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    assert len(log.read_text().splitlines()) == 2  # both built (overlapping), one won the rename
    from analysis import cache

    assert cache.verify(Path(outs[0]))
    assert [p.name for p in (tmp_cache / "test").iterdir()] == [Path(outs[0]).name]  # no .tmp-* left


# ----------------------------------------------------------------------------- a real local Ray cluster
@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for this module, workers seeing tests/units and this session's cache (the
    stand-ins are there; the tests' own entries have names no earlier run used). Yields the cache root."""
    import os

    from analysis import cache

    try:
        import ray
    except ImportError:  # not a skip: .ci/setup installs the extra, so CI must exercise the cluster path
        pytest.fail("Ray is missing: install the optional extra with pip install -e '.[ray]' (.ci/setup does)")
    cache_root = cache.root()
    old = {k: os.environ.get(k) for k in ("PYTHONPATH",)}
    os.environ["PYTHONPATH"] = str(UNITS)
    sys.path.insert(0, str(UNITS))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": ex.worker_env()})
    yield cache_root
    ray.shutdown()
    sys.path.remove(str(UNITS))
    for k, v in old.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def test_ray_gives_the_local_results_in_other_processes(ray_cluster):
    import os

    units = [u(f"sq{i}", "square", x=i) for i in range(5)] + [u("pid", "pid", after=["sq4"])]
    local = LocalExecutor().run(units[:-1], progress=False)
    out = ex.RayExecutor().run(units, progress=False)
    assert list(out) == ids(units)  # in plan order whatever the finishing order
    assert {k: out[k] for k in local} == local
    assert out["pid"] != os.getpid()  # ran in a worker


def test_ray_failure_names_the_unit_and_keep_going_finishes_the_rest(ray_cluster):
    units = [u("bad", "fail", message="boom in a worker"), u("child", "square", after=["bad"], x=2),
             u("other", "square", x=3)]
    with pytest.raises(RunFailed) as e:
        ex.RayExecutor().run(units, keep_going=True, progress=False)
    assert "test bad failed: ValueError: boom in a worker" in str(e.value)
    assert e.value.results == {"other": 9} and e.value.skipped == ["child"]


def test_ray_retries_a_killed_worker(ray_cluster, tmp_path):
    out = ex.RayExecutor(max_retries=1).run([u("die", "die_once", marker=str(tmp_path / "m"))], progress=False)
    assert out == {"die": "finished on a retry"} and (tmp_path / "m").read_text() == "killed once"
    with pytest.raises(RunFailed, match="worker process died"):  # retries are ours, not Ray's default of 3
        ex.RayExecutor(max_retries=2).run([u("always", "die", marker=str(tmp_path / "n"))], progress=False)
    assert (tmp_path / "n").read_text().splitlines() == ["killed"] * 3  # the first try and two retries


def test_ray_fail_fast_cancels_what_is_running(ray_cluster, tmp_path):
    import time

    units = [u("slow", "nap", seconds=30, marker=str(tmp_path / "slow")), u("bad", "fail", message="early")]
    t = time.perf_counter()
    with pytest.raises(RunFailed) as e:
        ex.RayExecutor().run(units, progress=False)
    assert time.perf_counter() - t < 20 and e.value.stopped and list(e.value.failures) == ["bad"]
    time.sleep(1)
    assert not (tmp_path / "slow").exists()  # cancelled, never finished


def test_ray_refuses_a_request_no_node_can_meet(ray_cluster):
    big = Unit("big", "test", f"{M}:square", {"x": 2}, {}, {"num_cpus": 64.0})
    with pytest.raises(ex.ExecutorError, match="asks for .'CPU': 64.0., which no node"):
        ex.RayExecutor().run([big], progress=False)


def test_a_killed_unit_loses_only_itself_and_a_rerun_resumes(ray_cluster, tmp_path):
    """Without retries a killed worker is reported by unit; the other units' cache entries are kept, and a rerun
    builds only what the killed unit would have built."""
    log = tmp_path / "builds.log"
    tag = unique()
    units = [u("a", "build_entry", name=f"a-{tag}", log=str(log)), u("killed", "die", marker=str(tmp_path / "k")),
             u("c", "build_entry", name=f"c-{tag}", log=str(log))]
    with pytest.raises(RunFailed) as e:
        ex.RayExecutor(max_retries=0).run(units, keep_going=True, progress=False)
    assert list(e.value.failures) == ["killed"] and "worker process died" in str(e.value)
    assert sorted(e.value.results) == ["a", "c"] and (tmp_path / "k").read_text() == "killed\n"
    rerun = [units[0], u("killed", "build_entry", name=f"b-{tag}", log=str(log)), units[2]]
    out = ex.RayExecutor().run(rerun, progress=False)
    built = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(built) == [f"a-{tag}", f"b-{tag}", f"c-{tag}"]  # a and c were not rebuilt
    assert Path(out["a"]) == Path(e.value.results["a"])


def test_two_ray_tasks_build_one_cache_entry(ray_cluster, tmp_path):
    log = tmp_path / "builds.log"
    name = f"shared-{unique()}"
    before = {p.name for p in (ray_cluster / "test").glob(".tmp-*")}
    units = [u(f"b{i}", "build_entry", name=name, log=str(log), sleep=1.0, barrier=str(tmp_path / "barrier"))
             for i in range(2)]
    out = ex.RayExecutor().run(units, progress=False)
    assert out["b0"] == out["b1"] and len(log.read_text().splitlines()) == 2  # both built at once, one won
    from analysis import cache

    assert cache.verify(Path(out["b0"]))
    assert {p.name for p in (ray_cluster / "test").glob(".tmp-*")} <= before  # no temporary folder of ours left


def test_sharded_embedding_on_ray_is_byte_identical_to_one_pass(ray_cluster, tmp_path, monkeypatch):
    """The datastore of the probe's training captions embedded by clip-mini (smoke stand-in) in shards on Ray
    workers, merged in order, equals the single-process embedding byte for byte, and both land on one cache key."""
    import numpy as np

    from analysis.captioning import retrieval
    from analysis.registry import build_scorer

    caps = retrieval.training_captions(smoke=True)
    sc = build_scorer("clip-mini", smoke=True, seed=0)
    one = retrieval.build_datastore(caps, sc.encode_text, name=sc.name, model_hash=sc.checkpoint_hash,
                                    prefix="A photo depicts ", cache=False)
    units = retrieval.shard_units(one.captions, "clip-mini", batch_size=sc.batch_size, shard_size=40,
                                  prefix="A photo depicts ", smoke=True)
    assert len(units) >= 3 and all(len(u.kwargs["captions"]) % sc.batch_size == 0 for u in units[:-1])
    sharded = retrieval.build_datastore_sharded(caps, "clip-mini", executor=ex.RayExecutor(), shard_size=40,
                                                prefix="A photo depicts ", smoke=True, cache=False, progress=False)
    assert sharded.captions == one.captions
    assert sharded.embeddings.tobytes() == one.embeddings.tobytes()
    assert sharded.fingerprint == one.fingerprint
    assert not np.array_equal(one.embeddings[0], one.embeddings[1])
