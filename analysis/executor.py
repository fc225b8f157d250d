"""Executors: run the study's units here, in order (``local``), or as Ray tasks on a cluster (``ray``).

A :class:`Unit` is one piece of work the study already has: one notebook variant (a papermill run), one
training job (an SCST run, the XE captioner and the stand-ins it needs) or one embedding shard. It names a
module-level function (``"module:function"``) with its keyword arguments, the resources it asks for and
the units it waits for. A unit never knows which executor runs it: both call :func:`call` on it.

* :class:`LocalExecutor` runs the units one after another in this process, in the order given (which
  must list every unit after the units it waits for).
* :class:`RayExecutor` submits each unit as a Ray task with the unit's own request
  (``num_cpus``, ``num_gpus``, ``memory``) as soon as the units it waits for have finished; a worker
  process that dies mid-task (killed, out of memory) is retried ``max_retries`` times by Ray. Workers
  get this process's study environment (:data:`PROPAGATED`: ``$STUDY_CACHE`` resolved to an absolute
  path, the plugins and their import path, the offline switches, the device), so on a cluster the cache
  must be a path every node sees (shared storage) and the project must be installed on every node.

Both show one progress bar over all units. A failed unit is reported with its id and parameters; by
default the run stops at the first failure (Ray cancels what is still pending), with ``keep_going`` the
others run to the end (units waiting for a failed one are skipped) and :class:`RunFailed` lists every
failure. What finished stays finished: checkpoints and tables live in the content-addressed cache (atomic
renames) and the pages in place, so a rerun finds the finished training in the cache (pages run again,
quickly, from it) and redoes only what failed or never ran.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

#: environment variables a Ray worker inherits from the driver (when set there)
PROPAGATED = ("STUDY_CACHE", "STUDY_DATA", "STUDY_PLUGINS", "STUDY_DEVICE", "STUDY_LOG_NOTEBOOKS", "PYTHONPATH",
              "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "OMP_WAIT_POLICY", "PYTHONHASHSEED")
EXECUTORS = ("local", "ray")
GIB = 2 ** 30


class ExecutorError(RuntimeError):
    """An executor could not be set up (Ray missing, no cluster at the address, a bad plan)."""


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``target(**kwargs)`` where ``target`` is ``"module:function"``.

    ``id`` is unique in a run (``notebook:probe-cider-d``, ``scst:clip-mini/seed1``, ``shard:…/3``);
    ``kind`` is ``notebook``, ``training`` or ``shard``; ``params`` are the parameters shown when it fails;
    ``resources`` the request of a Ray task (``num_cpus``, ``num_gpus``, ``memory`` in bytes); ``after`` the
    ids of units that must finish first.
    """

    id: str
    kind: str
    target: str
    kwargs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()

    def describe(self) -> str:
        """``kind id (k=v, …)``: how a failure names the unit."""
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind} {self.id}" + (f" ({shown})" if shown else "")


def resources(*, cpus: float = 1, gpus: float = 0, memory_gb: float | None = None, device: str | None = None) -> dict:
    """A unit's request: ``{"num_cpus", "num_gpus"[, "memory"]}`` (memory in bytes, as Ray takes it). ``gpus`` is
    the unit's share of a GPU when it runs on CUDA: ``device`` (default :func:`analysis.runtime.device`) decides,
    and on any other device the unit asks for none."""
    from analysis.runtime import device as default_device

    on_cuda = str(device or default_device()).startswith("cuda")
    out = {"num_cpus": float(cpus), "num_gpus": float(gpus) if on_cuda else 0.0}
    if memory_gb:
        out["memory"] = int(memory_gb * GIB)
    return out


class UnitFailed(RuntimeError):
    """One unit raised or its process died; the message names the unit and its parameters."""

    def __init__(self, unit: Unit, reason: str):
        super().__init__(f"{unit.describe()} failed: {reason}")
        self.unit, self.reason = unit, reason


class RunFailed(RuntimeError):
    """Units failed (``failures``: unit id -> :class:`UnitFailed`); ``skipped`` waited for a failed unit;
    ``results`` holds what the finished units returned."""

    def __init__(self, failures: dict, skipped: list[str], results: dict, total: int, *, stopped: bool = False):
        self.failures, self.skipped, self.results, self.stopped = failures, skipped, results, stopped
        why = ("not run: the run stopped at the first failure (--keep-going runs them)" if stopped
               else "skipped because a unit they wait for failed")
        lines = [f"{len(failures)} of {total} unit(s) failed" + (f", {len(skipped)} {why}" if skipped else "")
                 + f", {len(results)} finished (kept: a rerun redoes only the rest):"]
        lines += [f"  - {e}" for e in failures.values()]
        if skipped:
            lines.append(f"  {'not run' if stopped else 'skipped'}: {', '.join(skipped)}")
        super().__init__("\n".join(lines))


def _stopped(failures: dict, results: dict, units: Sequence[Unit]) -> RunFailed:
    """The :class:`RunFailed` of a run stopped at its first failure: every unit neither finished nor failed is
    listed as not run."""
    return RunFailed(failures, [u.id for u in units if u.id not in results and u.id not in failures], results,
                     len(units), stopped=True)


def _blocked(u: Unit, failures: dict, skipped: list[str]) -> bool:
    """True when ``u`` waits for a unit that failed or was skipped (so it is skipped too)."""
    return any(a in failures or a in skipped for a in u.after)


def check_plan(units: Sequence[Unit]) -> None:
    """Every id is unique and every unit comes after the units it waits for (raises :class:`ExecutorError`)."""
    seen: set[str] = set()
    for u in units:
        if u.id in seen:
            raise ExecutorError(f"unit id {u.id!r} appears twice in the plan; every unit needs its own id")
        missing = [a for a in u.after if a not in seen]
        if missing:
            raise ExecutorError(f"unit {u.id!r} waits for {', '.join(missing)}, which the plan does not list "
                                "before it")
        seen.add(u.id)


def call(unit: Unit) -> Any:
    """Run ``unit`` where this is called (the driver or a worker): import the plugins, go offline, then
    ``target(**kwargs)``."""
    from analysis.registry import resolve
    from analysis.runtime import load_plugins, set_offline

    set_offline()
    load_plugins()
    return resolve(unit.target)(**unit.kwargs)


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _bar(total: int, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="unit", disable=not progress)


@dataclass
class LocalExecutor:
    """Runs the units one after another in this process, in the order given."""

    name: str = "local"

    def run(self, units: Sequence[Unit], *, keep_going: bool = False, progress: bool = True) -> dict[str, Any]:
        """``{unit id: what its target returned}``; raises :class:`RunFailed` when a unit failed (at once, or
        after the others with ``keep_going``)."""
        check_plan(units)
        results, failures, skipped = {}, {}, []
        with _bar(len(units), progress, "units (local)") as bar:
            for u in units:
                if _blocked(u, failures, skipped):
                    skipped.append(u.id)
                else:
                    try:
                        results[u.id] = call(u)
                    except Exception as e:
                        failures[u.id] = UnitFailed(u, _reason(e))
                        if not keep_going:
                            bar.update(1)
                            raise _stopped(failures, results, units) from e
                bar.update(1)
        if failures:
            raise RunFailed(failures, skipped, results, len(units))
        return results


def _ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray: pip install -e '.[ray]' (the project's optional extra; "
                            ".ci/setup installs it)") from None
    return ray


def worker_env() -> dict[str, str]:
    """The variables of :data:`PROPAGATED` set here, with the paths made absolute (a worker starts in another
    folder): ``STUDY_CACHE`` (the cache root every worker must share), ``STUDY_DATA``, and ``PYTHONPATH``
    (:func:`analysis.runtime.import_path`, as for notebook kernels).
    ``STUDY_DEVICE`` is always set, to the device type this process resolved (:func:`analysis.runtime.device`):
    every unit of a plan runs on one kind of device whatever node it lands on (an index such as ``cuda:1`` is
    dropped: Ray gives each GPU task its own ``CUDA_VISIBLE_DEVICES``)."""
    from analysis import cache
    from analysis.runtime import device, import_path

    env = {k: os.environ[k] for k in PROPAGATED if os.environ.get(k)}
    env["STUDY_CACHE"] = str(cache.root().resolve())
    if env.get("STUDY_DATA"):
        env["STUDY_DATA"] = str(Path(env["STUDY_DATA"]).expanduser().resolve())
    path = import_path()
    if path:
        env["PYTHONPATH"] = path
    env["STUDY_DEVICE"] = device().split(":")[0]
    return env


@dataclass
class RayExecutor:
    """Runs each unit as a Ray task with the unit's resource request.

    ``address=None`` starts a local cluster with ``num_cpus`` CPUs (all of this machine's when None) and stops
    it afterwards; an address (``auto``, ``HOST:PORT``, ``ray://HOST:10001``) joins a running cluster, which is
    left running. ``max_retries`` is how often Ray reruns a unit whose worker process died.
    """

    address: str | None = None
    num_cpus: int | None = None
    max_retries: int = 1
    name: str = "ray"

    def _init(self):
        ray = _ray()
        if ray.is_initialized():
            return ray, False
        kw = dict(include_dashboard=False, runtime_env={"env_vars": worker_env()}, logging_level="ERROR",
                  log_to_driver=os.environ.get("STUDY_LOG_NOTEBOOKS") == "1")
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:
                ray.init(num_cpus=self.num_cpus, **kw)
        except ConnectionError as e:
            raise ExecutorError(f"no Ray cluster at {self.address!r} ({e}); start one with 'ray start --head' "
                                "or leave out --address for a local cluster") from None
        return ray, True

    def run(self, units: Sequence[Unit], *, keep_going: bool = False, progress: bool = True) -> dict[str, Any]:
        """As :meth:`LocalExecutor.run`; units run as soon as what they wait for has finished."""
        check_plan(units)
        ray, started = self._init()
        try:
            self.check_fits(ray, units)
            return self._run(ray, list(units), keep_going, progress)
        finally:
            if started:
                ray.shutdown()

    def _submit(self, remote, u: Unit):
        return remote.options(name=u.id, max_retries=self.max_retries, retry_exceptions=False,
                              **{k: v for k, v in u.resources.items() if v is not None}).remote(u)

    @staticmethod
    def check_fits(ray, units: Sequence[Unit]) -> None:
        """Refuse (:class:`ExecutorError`) a unit whose request no node of the cluster can meet (it would wait
        forever), naming the unit, what it asks for and what the cluster has."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
        for u in units:
            need = {names[k]: v for k, v in u.resources.items() if k in names and v}
            if need and not any(all(node.get(r, 0) >= v for r, v in need.items()) for node in nodes):
                have = [{r: node.get(r, 0) for r in need} for node in nodes]
                raise ExecutorError(f"{u.describe()} asks for {need}, which no node of the Ray cluster has "
                                    f"(nodes: {have}); start the cluster with more (--num-cpus, GPUs) or run "
                                    "where they are")

    def _run(self, ray, units: list[Unit], keep_going: bool, progress: bool) -> dict[str, Any]:
        results, failures, skipped = {}, {}, []
        waiting = list(units)
        running: dict = {}  # ObjectRef -> Unit
        remote = ray.remote(call)
        with _bar(len(units), progress, "units (ray)") as bar:
            while waiting or running:
                for u in list(waiting):
                    if _blocked(u, failures, skipped):
                        waiting.remove(u)
                        skipped.append(u.id)
                        bar.update(1)
                    elif all(a in results for a in u.after):
                        waiting.remove(u)
                        running[self._submit(remote, u)] = u
                if not running:
                    continue
                done, _ = ray.wait(list(running), num_returns=1)
                u = running.pop(done[0])
                try:
                    results[u.id] = ray.get(done[0])
                except Exception as e:
                    failures[u.id] = UnitFailed(u, _ray_reason(e))
                    if not keep_going:
                        for ref in running:
                            ray.cancel(ref, force=True)
                        bar.update(1)
                        raise _stopped(failures, results, units) from None
                bar.update(1)
        if failures:
            raise RunFailed(failures, skipped, results, len(units))
        return {u.id: results[u.id] for u in units if u.id in results}  # in plan order


def _ray_reason(e: BaseException) -> str:
    """The unit's own exception when a task raised (Ray wraps it), else what happened to its worker."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        return _reason(cause)
    name = type(e).__name__
    if "WorkerCrashed" in name or "ActorDied" in name or "OutOfMemory" in name:
        return f"its worker process died ({name}: {str(e).splitlines()[0] if str(e) else ''})"
    return _reason(e)


def make(name: str = "local", *, address: str | None = None, num_cpus: int | None = None,
         max_retries: int = 1):
    """The executor ``name`` (``local`` or ``ray``); ``address``/``num_cpus``/``max_retries`` are Ray's."""
    if name == "local":
        if address:
            raise ExecutorError("--address is for --executor ray; the local executor runs here")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus, max_retries=max_retries)
    raise ExecutorError(f"unknown executor {name!r}; the executors are {', '.join(EXECUTORS)}")


def timed_run(executor, units: Sequence[Unit], **kw) -> tuple[dict, float]:
    """``(results, wall seconds)`` of ``executor.run(units, **kw)``."""
    t = time.perf_counter()
    out = executor.run(units, **kw)
    return out, time.perf_counter() - t


def absolute(path) -> str:
    """``path`` as an absolute string (units travel to other processes, whose working folder differs)."""
    return str(Path(path).resolve())
