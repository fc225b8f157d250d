"""Gradient-trained image→text mappers and ReCap's speed claim measured side by side (issue 10).

ReCap says its closed-form alignment is "trained up to 1000 times faster than existing lightweight methods"
(``REFERENCE.md`` §2 [V]). :func:`run_speed` puts numbers on it in one run, on the same fitting pairs
``(X, Y)`` (``n`` image embeddings and the embeddings of their captions), the same **stopping** pairs (where
the gradient methods stop; the book page uses the val split) and the same **evaluation** pairs (where every
approach's quality is reported; the book page uses the test split):

* the closed form: :func:`analysis.alignment.fit_alignment` (``procrustes``: ``W = U Vᵀ`` from
  ``svd(XᵀY)``; ``lstsq``: ``XᵀX W = XᵀY``), timed by its own ``fit_seconds``;
* (a) a linear map of the same form, ``x ↦ x W`` with no bias, trained by Adam on the same objective
  ``L(W) = (1/B) Σ_{i∈batch} ‖x_i W − y_i‖²`` (``orthogonal=True``: ``W`` kept orthogonal by
  ``torch.nn.utils.parametrizations.orthogonal``, the Procrustes constraint) — :func:`train_linear_map`;
* (b) a small two-layer MLP ``x ↦ tanh(x W₁ + b₁) W₂ + b₂`` (the ClipCap / DeCap-style lightweight mapper)
  trained by Adam on the same loss — :func:`train_mlp_mapper`;
* (c) the probe's XE captioner (:mod:`analysis.captioning.xe`, a ClipCap-style lightweight captioner), whose
  training seconds are passed in (:func:`checkpoint_train_seconds` reads them from a checkpoint).

**The stopping rule** of the gradient methods: Adam runs until the image→text R@1 **on the stopping set**
(cosine retrieval of ``mapper(x_stop)`` among ``y_stop``, :func:`evaluate_map`, checked every ``eval_every``
steps and once before the first step) reaches ``target_r1`` (in :func:`run_speed`: the closed-form map's own
R@1 on the same stopping set), or until ``max_seconds`` of training or ``max_epochs`` epochs, whichever comes
first. The reported quality is the R@1 **on the evaluation set** at that check, so no choice is made on the set
the quality is reported on (the stopping set defaults to the evaluation set, the old behaviour, which the
``stopping_split`` column then says). The reported time is the training clock at the check that stopped it, so
it may overshoot the true crossing by up to ``eval_every`` steps.

**What is timed, for every approach alike:** the optimisation only. The training clock covers batch
indexing, forward, loss, backward and the Adam step (synchronised on a GPU); it excludes the held-out
evaluations (timed separately and reported as ``eval_seconds``), the conversion of the arrays to tensors,
model construction and one untimed warm-up step on a throw-away copy (thread-pool and allocator start-up).
The closed form's ``fit_seconds`` likewise excludes input checks and evaluation, and follows one untimed
warm-up fit. Every approach runs with the
same number of CPU threads (``threads``: torch's intra-op threads and the BLAS pools via ``threadpoolctl``),
by default :data:`SPEED_THREADS` = 1 (on the study's 2 shared cores a second, parked thread adds more noise
than speed: see :data:`analysis.bench.ALIGN_BLAS_THREADS`).

**Several targets from one run.** The stopping rule only decides where a seeded run stops, so a mapper
trained to the highest of several targets answers each lower one exactly (:func:`crossing`); ``run_speed``'s
``variants`` uses this for the reference and own-form targets and their tolerance variants.

**The book page** (:func:`run_speed_page`, *Realignment, speed*): result rows hold only what the seed
determines (:func:`speed_rows`); every time, ratio and outcome of a gradient run (which a time budget may
decide) is in the measurement table ``realign-speed.timings.csv`` (the :func:`run_speed` frame), from which
:func:`speed_verdict` decides the claim and :func:`changed_conclusions` says what a tolerance changes.
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SPEED_THREADS = 1
EVAL_EVERY = 20
GRADIENT = ("linear", "orthogonal", "mlp")  # the gradient-trained approaches run_speed knows
APPROACH = {"linear": "adam-linear", "orthogonal": "adam-orthogonal", "mlp": "adam-mlp"}
OWN_FORM = {"linear": "lstsq", "orthogonal": "procrustes", "mlp": None}  # the closed form of each one's form
CAPTIONER = "xe-captioner"
CURVE_COLUMNS = ["step", "epoch", "seconds", "loss", "r1", "t2i_r1", "eval_r1", "eval_t2i_r1", "eval_seconds"]


# ----------------------------------------------------------------------------- evaluation
def evaluate_map(pred, y_eval, positives=None) -> tuple[float, float]:
    """Held-out ``(i2t R@1, t2i R@1)`` of mapped image rows ``pred`` against their captions ``y_eval`` on the
    cosine similarity ``S = p̂ ŷᵀ`` of L2-normalised rows (:func:`analysis.alignment.recall_from_similarity`,
    ties counted in expectation). ``positives[i, j]`` marks caption ``j`` as true of image ``i`` (default: the
    diagonal, row ``i`` paired with row ``i``; pass :func:`analysis.realignment.positives` when a caption
    text occurs for several images).

    >>> evaluate_map(np.eye(3), np.eye(3))
    (1.0, 1.0)
    >>> evaluate_map(np.eye(2), np.ones((2, 2)), positives=np.ones((2, 2), bool))  # duplicates are hits
    (1.0, 1.0)
    """
    from analysis.alignment import _pair, l2_normalise, recall_from_similarity

    pred, y_eval = _pair(pred, y_eval, ("pred", "y_eval"))
    if pred.shape[1] != y_eval.shape[1]:
        raise ValueError(f"pred has {pred.shape[1]} dimensions and y_eval {y_eval.shape[1]}: the mapper must "
                         f"output the text side's dimension")
    S = l2_normalise(pred) @ l2_normalise(y_eval).T
    if positives is not None and np.shape(positives) != S.shape:
        raise ValueError(f"positives must be a {S.shape} boolean mask (x_eval rows × y_eval rows), got shape "
                         f"{np.shape(positives)}")
    r = recall_from_similarity(S, ks=(1,), positives=positives)
    return float(r["i2t_R@1"]), float(r["t2i_R@1"])


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class TrainLog:
    """What a gradient-trained mapper did: ``rows`` (one per held-out check: ``step``, ``epoch``, ``seconds``
    on the training clock, ``loss`` of the last batch (NaN before the first step), ``r1`` = i2t R@1 and
    ``t2i_r1`` **on the stopping set** (what the stopping rule reads), ``eval_r1`` / ``eval_t2i_r1`` on the
    evaluation set (the same numbers when the stopping set is the evaluation set), ``eval_seconds`` of that
    check, both sets); ``train_seconds`` (the training clock when it stopped, evaluation excluded),
    ``eval_seconds`` (all checks), ``wall_seconds`` (both, plus bookkeeping); ``stopped_by`` is ``"target"``,
    ``"max_seconds"`` or ``"max_epochs"``; ``r1``/``t2i_r1`` (stopping set) and ``eval_r1``/``eval_t2i_r1``
    (evaluation set) are the values of the returned mapper; ``separate_stop`` says whether the two sets
    differ."""

    rows: tuple
    train_seconds: float
    eval_seconds: float
    wall_seconds: float
    steps: int
    epochs: float
    stopped_by: str
    target_r1: float | None
    reached_target: bool
    r1: float
    t2i_r1: float
    settings: dict = field(default_factory=dict)
    eval_r1: float = float("nan")
    eval_t2i_r1: float = float("nan")
    separate_stop: bool = False

    def frame(self):
        """``rows`` as a ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame(list(self.rows), columns=CURVE_COLUMNS)


@dataclass(frozen=True)
class MLPMapper:
    """A trained two-layer mapper ``f(x) = tanh(x W₁ + b₁) W₂ + b₂`` as NumPy arrays (``W₁``: d_x × hidden,
    ``W₂``: hidden × d_y).

    >>> m = MLPMapper(np.eye(2), np.zeros(2), np.eye(2), np.ones(2)); m.apply(np.zeros((1, 2))).tolist()
    [[1.0, 1.0]]
    """

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray

    def apply(self, x) -> np.ndarray:
        """``tanh(x W₁ + b₁) W₂ + b₂`` for the rows of ``x``."""
        x = np.asarray(x, dtype=self.W1.dtype)
        if x.ndim != 2 or x.shape[1] != self.W1.shape[0]:
            raise ValueError(f"x must be 2-D with {self.W1.shape[0]} columns (the image side this mapper was "
                             f"trained on), got shape {x.shape}")
        return np.tanh(x @ self.W1 + self.b1) @ self.W2 + self.b2


# ----------------------------------------------------------------------------- shared machinery
def _check(x, y, x_eval, y_eval, names=("x_eval", "y_eval")) -> tuple[np.ndarray, ...]:
    """The four arrays as float32 matrices: checked like :func:`analysis.alignment.fit_alignment`'s inputs
    (2-D, finite, paired row counts), with the held-out sides (called ``names`` in errors) in the fitting
    sides' dimensions."""
    from analysis.alignment import _pair

    x, y = _pair(x, y, ("x", "y"))
    x_eval, y_eval = _pair(x_eval, y_eval, tuple(names))
    if x_eval.shape[1] != x.shape[1] or y_eval.shape[1] != y.shape[1]:
        raise ValueError(f"{names[0]}/{names[1]} must have the dimensions of x/y ({x.shape[1]} and {y.shape[1]}), "
                         f"got {x_eval.shape[1]} and {y_eval.shape[1]}; pass held-out pairs from the same encoders")
    return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in (x, y, x_eval, y_eval))


def _check_stop(x, y, x_stop, y_stop, stop_positives) -> tuple[np.ndarray, np.ndarray] | None:
    """The stopping set as float32 matrices in the fitting sides' dimensions, or None (stop on the evaluation
    set) when neither ``x_stop`` nor ``y_stop`` is given; half a pair, or ``stop_positives`` without a stopping
    set, is an error."""
    if x_stop is None and y_stop is None:
        if stop_positives is not None:
            raise ValueError("stop_positives was given without a stopping set: pass x_stop and y_stop too (or "
                             "leave all three out to stop on the evaluation set)")
        return None
    if x_stop is None or y_stop is None:
        raise ValueError("pass both x_stop and y_stop (the stopping pairs), or neither (stop on the evaluation set)")
    return _check(x, y, x_stop, y_stop, ("x_stop", "y_stop"))[2:]


def _check_settings(target_r1, max_seconds, max_epochs, lr, batch_size, eval_every) -> None:
    if target_r1 is not None and not 0 < target_r1 <= 1:
        raise ValueError(f"target_r1 must lie in (0, 1] (an R@1) or be None (train to the budget), got {target_r1!r}")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds!r}")
    if int(max_epochs) != max_epochs or max_epochs < 1:
        raise ValueError(f"max_epochs must be an integer >= 1, got {max_epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if int(eval_every) != eval_every or eval_every < 1:
        raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")


@contextlib.contextmanager
def thread_limit(threads: int):
    """Run the block with ``threads`` torch intra-op threads and ``threads`` BLAS/OpenMP threads
    (``threadpoolctl``), restoring both afterwards: the one thread setting every timed approach shares."""
    import torch
    from threadpoolctl import threadpool_limits

    if int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with threadpool_limits(int(threads)):
            yield
    finally:
        torch.set_num_threads(before)


def _mse(module, xb, yb):
    """``(1/B) Σ_i ‖f(x_i) − y_i‖²``: the closed form's objective ``‖XW − Y‖²_F`` per row of the batch."""
    return (module(xb) - yb).pow(2).sum(1).mean()


def _fit(module, x, y, x_eval, y_eval, eval_positives, *, stop, stop_positives, target_r1, max_seconds,
         max_epochs, lr, batch_size, eval_every, seed, device, progress, desc, settings: dict) -> TrainLog:
    """Train ``module`` with Adam on :func:`_mse` under the stopping rule of the module docstring; the caller
    has seeded and built ``module``. ``stop``: the stopping pairs ``(x_stop, y_stop)`` (checked arrays), or
    None to stop on the evaluation pairs. Returns its :class:`TrainLog`; ``module`` is left trained, in eval
    mode."""
    import torch
    from tqdm.auto import tqdm

    from analysis.runtime import resolve_device, rng

    dev = torch.device(resolve_device(device))
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    xe = torch.from_numpy(x_eval).to(dev)
    xs = None if stop is None else torch.from_numpy(stop[0]).to(dev)
    module.to(dev)
    n = len(xt)
    batch_size = min(int(batch_size), n)
    per_epoch = -(-n // batch_size)  # every row once per epoch; the last batch may be smaller
    order = rng(seed)

    # one untimed step on a throw-away copy: thread pools and the allocator start outside the clock
    spare = copy.deepcopy(module)
    _mse(spare, xt[:batch_size], yt[:batch_size]).backward()
    del spare
    sync()

    opt = torch.optim.Adam(module.parameters(), lr=lr)
    rows, clock, eval_total, step, last_loss = [], 0.0, 0.0, 0, None
    wall0 = time.perf_counter()

    def check() -> bool:
        nonlocal eval_total
        t = time.perf_counter()
        module.eval()
        with torch.no_grad():
            pred = module(xe).float().cpu().numpy()
            pred_stop = None if xs is None else module(xs).float().cpu().numpy()
        module.train()
        e_i2t, e_t2i = evaluate_map(pred, y_eval, eval_positives)
        i2t, t2i = (e_i2t, e_t2i) if stop is None else evaluate_map(pred_stop, stop[1], stop_positives)
        spent = time.perf_counter() - t
        eval_total += spent
        rows.append({"step": step, "epoch": step / per_epoch, "seconds": clock,
                     "loss": float("nan") if last_loss is None else float(last_loss), "r1": i2t, "t2i_r1": t2i,
                     "eval_r1": e_i2t, "eval_t2i_r1": e_t2i, "eval_seconds": spent})
        return target_r1 is not None and i2t >= target_r1

    fill = torch.utils.deterministic.fill_uninitialized_memory  # NaN-filling new tensors (seed_all's
    torch.utils.deterministic.fill_uninitialized_memory = False  # deterministic mode) costs time, changes nothing
    module.train()
    stopped_by = "max_epochs"
    try:
        with tqdm(total=int(max_epochs) * per_epoch, desc=desc, unit="step", leave=False, disable=not progress) as bar:
            if check():
                stopped_by = "target"
            for _ in range(int(max_epochs) if stopped_by != "target" else 0):
                perm = torch.from_numpy(order.permutation(n)).to(dev)
                for b in range(per_epoch):
                    t0 = time.perf_counter()
                    idx = perm[b * batch_size:(b + 1) * batch_size]
                    loss = _mse(module, xt[idx], yt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sync()
                    clock += time.perf_counter() - t0
                    step += 1
                    last_loss = loss.detach()
                    bar.update(1)
                    if step % eval_every == 0 and check():
                        stopped_by = "target"
                        break
                    if clock >= max_seconds:
                        stopped_by = "max_seconds"
                        break
                if stopped_by != "max_epochs":
                    break
            if rows[-1]["step"] != step:  # the returned mapper is always the one last evaluated
                if check() and stopped_by != "target":
                    stopped_by = "target"
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = fill
        module.eval()
    last = rows[-1]
    return TrainLog(rows=tuple(rows), train_seconds=clock, eval_seconds=eval_total,
                    wall_seconds=time.perf_counter() - wall0, steps=step, epochs=step / per_epoch,
                    stopped_by=stopped_by, target_r1=target_r1, reached_target=stopped_by == "target",
                    r1=last["r1"], t2i_r1=last["t2i_r1"], eval_r1=last["eval_r1"], eval_t2i_r1=last["eval_t2i_r1"],
                    separate_stop=stop is not None,
                    settings={"lr": lr, "batch_size": batch_size, "eval_every": int(eval_every),
                              "max_seconds": max_seconds, "max_epochs": int(max_epochs), "seed": int(seed),
                              "device": dev.type, "n": n, "n_eval": len(x_eval),
                              "n_stop": len(x_eval) if stop is None else len(stop[0]), "optimizer": "Adam", **settings})


# ----------------------------------------------------------------------------- the two gradient mappers
def train_linear_map(x, y, *, x_eval, y_eval, target_r1: float | None = None, max_seconds: float = 60.0,
                     max_epochs: int = 200, lr: float = 1e-2, batch_size: int = 256, orthogonal: bool = False,
                     eval_every: int = EVAL_EVERY, eval_positives=None, x_stop=None, y_stop=None,
                     stop_positives=None, seed: int = 0, device: str | None = None, threads: int = SPEED_THREADS,
                     progress: bool = True) -> tuple[np.ndarray, TrainLog]:
    """A ``d_x × d_y`` linear map ``x ↦ x W`` (no bias: the closed form's shape) trained by Adam (``lr``,
    mini-batches of ``batch_size`` rows, a seeded permutation per epoch) on the closed form's objective
    ``L(W) = (1/B) Σ_{i∈batch} ‖x_i W − y_i‖²``, from PyTorch's default random initialisation of
    ``nn.Linear``. ``orthogonal=True`` constrains ``WᵀW = I`` (``WWᵀ = I`` when ``d_x > d_y``) through
    ``torch.nn.utils.parametrizations.orthogonal``: the Procrustes problem solved by gradient descent.

    Stops when the i2t R@1 on the stopping pairs (:func:`evaluate_map` on ``x_stop W`` vs ``y_stop``,
    ``stop_positives`` as there; checked before the first step and every ``eval_every`` steps) reaches
    ``target_r1``, or after ``max_seconds`` of training or ``max_epochs`` epochs; without ``x_stop``/``y_stop``
    the stopping pairs are the evaluation pairs ``(x_eval, y_eval)`` (``eval_positives``). Every check also
    records the R@1 on the evaluation pairs (``log.rows``' ``eval_r1``). Evaluation time is excluded from the
    training clock (see the module docstring); ``threads`` CPU threads; runs on ``device`` (default
    :func:`analysis.runtime.device`: ``$STUDY_DEVICE``, else CUDA when visible, else the CPU). Seeded by
    :func:`analysis.runtime.seed_all` (identical results for a seed when the run is stopped by target or
    epochs; a time budget stops at a machine-dependent step).

    Returns ``(W, log)``: ``W`` as float32 NumPy ``d_x × d_y`` (the map last evaluated) and its
    :class:`TrainLog`.
    """
    import torch

    from analysis.runtime import seed_all

    x, y, x_eval, y_eval = _check(x, y, x_eval, y_eval)
    stop = _check_stop(x, y, x_stop, y_stop, stop_positives)
    _check_settings(target_r1, max_seconds, max_epochs, lr, batch_size, eval_every)
    with thread_limit(threads):
        seed_all(seed)
        lin = torch.nn.Linear(x.shape[1], y.shape[1], bias=False)
        if orthogonal:
            lin = torch.nn.utils.parametrizations.orthogonal(lin)
        log = _fit(lin, x, y, x_eval, y_eval, eval_positives, stop=stop, stop_positives=stop_positives,
                   target_r1=target_r1, max_seconds=max_seconds,
                   max_epochs=max_epochs, lr=lr, batch_size=batch_size, eval_every=eval_every, seed=seed,
                   device=device, progress=progress,
                   desc="Adam " + ("orthogonal" if orthogonal else "linear") + " map",
                   settings={"model": "orthogonal" if orthogonal else "linear"})
        with torch.no_grad():
            W = lin.weight.detach().T.float().cpu().numpy().copy()  # nn.Linear computes x weightᵀ
    return W, log


def train_mlp_mapper(x, y, *, x_eval, y_eval, hidden: int = 512, target_r1: float | None = None,
                     max_seconds: float = 60.0, max_epochs: int = 200, lr: float = 1e-3, batch_size: int = 256,
                     eval_every: int = EVAL_EVERY, eval_positives=None, x_stop=None, y_stop=None,
                     stop_positives=None, seed: int = 0, device: str | None = None, threads: int = SPEED_THREADS,
                     progress: bool = True) -> tuple[MLPMapper, TrainLog]:
    """A two-layer MLP mapper ``f(x) = tanh(x W₁ + b₁) W₂ + b₂`` (``hidden`` units; ClipCap's MLP mapping
    network has this form, DeCap-style projectors likewise) trained by Adam on
    ``L = (1/B) Σ_{i∈batch} ‖f(x_i) − y_i‖²``, with the same data, stopping rule (on ``x_stop``/``y_stop``,
    default the evaluation pairs), thread count, device and timing rules as :func:`train_linear_map` (PyTorch's
    default initialisation, seeded by :func:`analysis.runtime.seed_all`).

    Returns ``(mapper, log)``: an :class:`MLPMapper` (NumPy weights, the mapper last evaluated) and its
    :class:`TrainLog`.
    """
    import torch

    from analysis.runtime import seed_all

    x, y, x_eval, y_eval = _check(x, y, x_eval, y_eval)
    stop = _check_stop(x, y, x_stop, y_stop, stop_positives)
    _check_settings(target_r1, max_seconds, max_epochs, lr, batch_size, eval_every)
    if int(hidden) != hidden or hidden < 1:
        raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
    with thread_limit(threads):
        seed_all(seed)
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], int(hidden)), torch.nn.Tanh(),
                                  torch.nn.Linear(int(hidden), y.shape[1]))
        log = _fit(net, x, y, x_eval, y_eval, eval_positives, stop=stop, stop_positives=stop_positives,
                   target_r1=target_r1, max_seconds=max_seconds,
                   max_epochs=max_epochs, lr=lr, batch_size=batch_size, eval_every=eval_every, seed=seed,
                   device=device, progress=progress,
                   desc=f"Adam MLP mapper ({hidden} hidden)", settings={"model": "mlp", "hidden": int(hidden)})
        a, b = net[0], net[2]
        arrays = [t.detach().float().cpu().numpy().copy() for t in (a.weight.T, a.bias, b.weight.T, b.bias)]
    return MLPMapper(*arrays), log


# ----------------------------------------------------------------------------- the captioner's time
def checkpoint_train_seconds(folder: str | Path) -> float:
    """The training seconds a cached checkpoint's ``meta.json`` recorded (``log.seconds``, written by
    :func:`analysis.scorers.training.fit`: the optimisation loop's wall clock on
    :data:`~analysis.scorers.training.TRAIN_THREADS` threads), e.g. of the XE captioner's folder from
    :func:`analysis.captioning.xe.train_xe`."""
    from analysis.scorers.training import META, read_meta

    path = Path(folder) / META
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {META}; pass the folder of a trained checkpoint "
                                "(train_xe(...)[2] for the XE captioner)")
    seconds = read_meta(folder).get("log", {}).get("seconds")
    if seconds is None:
        raise KeyError(f"{path} records no log.seconds; it was not written by analysis.scorers.training.fit")
    return float(seconds)


def checkpoint_record(folder: str | Path) -> dict:
    """What the speed page reports of a trained checkpoint: ``seconds`` (:func:`checkpoint_train_seconds`, a
    wall time) and the facts its ``meta.json`` fixes for a recipe: ``steps``, ``n_images``, ``n_refs`` (training
    captions), ``n_trainable`` (parameters), ``threads`` (CPU threads it trained on); a missing fact is None."""
    from analysis.scorers.training import read_meta

    seconds = checkpoint_train_seconds(folder)
    meta = read_meta(folder)
    log = meta.get("log", {})
    return {"seconds": seconds, **{k: log.get(k) for k in ("steps", "n_images", "n_refs", "n_trainable")},
            "threads": meta.get("threads"), "folder": str(folder)}


def xe_captioner_folder(*, smoke: bool = False, seed: int = 0) -> Path:
    """The checkpoint folder of the probe's XE captioner (:func:`analysis.captioning.xe.train_xe` on
    ``caption_data("train")``: the train splits of tuxpaint-stamps and stamp-scenes, the pairs clip-mini was
    trained on, as EfficientNet-Lite0 grid features); trains it first on a cache miss (minutes)."""
    from analysis.captioning.xe import caption_data, train_xe

    return Path(train_xe(caption_data("train", smoke=smoke, seed=seed), smoke=smoke, seed=seed)[2])


def xe_captioner_seconds(*, smoke: bool = False, seed: int = 0) -> float:
    """Training seconds of the probe's XE captioner (:func:`xe_captioner_folder`), read from its checkpoint;
    trains it first on a cache miss (minutes)."""
    return checkpoint_train_seconds(xe_captioner_folder(smoke=smoke, seed=seed))


# ----------------------------------------------------------------------------- reading a run at another target
def crossing(log: TrainLog, target_r1: float) -> dict:
    """What a run with target ``target_r1`` would have reported, read off ``log``: the stopping rule only
    decides *where* a seeded run stops (the trajectory, and the training clock up to any check, are the same),
    so a run trained to a higher target also answers every lower one. ``target_r1`` is on the **stopping set**
    (the log's ``r1``). Returns the first check with ``r1 ≥ target_r1``: ``reached`` True, its ``seconds``
    (training clock), ``step``, ``epoch``, ``r1``, ``t2i_r1`` (stopping set), ``eval_r1``, ``eval_t2i_r1``
    (evaluation set, at the same check; the stopping set's values for a log without them), ``eval_seconds``
    (the checks up to it) and ``stopped_by = "target"``; when no check reaches it, the end of the log with
    ``reached`` False and the log's ``stopped_by`` (the budget). A log that stopped at
    its own lower target cannot tell whether a higher one is reached later: ``ValueError``.

    >>> rows = ({"step": 0, "epoch": 0.0, "seconds": 0.0, "r1": 0.1, "t2i_r1": 0.1, "eval_seconds": 0.01},
    ...         {"step": 20, "epoch": 2.0, "seconds": 0.5, "r1": 0.4, "t2i_r1": 0.3, "eval_seconds": 0.01},
    ...         {"step": 40, "epoch": 4.0, "seconds": 1.0, "r1": 0.6, "t2i_r1": 0.5, "eval_seconds": 0.01})
    >>> log = TrainLog(rows, 1.0, 0.03, 1.1, 40, 4.0, "target", 0.6, True, 0.6, 0.5)
    >>> c = crossing(log, 0.35); (c["reached"], c["step"], c["seconds"], c["stopped_by"])
    (True, 20, 0.5, 'target')
    """
    if not 0 < target_r1 <= 1:
        raise ValueError(f"target_r1 must lie in (0, 1] (an R@1), got {target_r1!r}")
    if not log.rows:
        raise ValueError("the log has no held-out checks")

    def on_eval(r) -> dict:
        return {"r1": r["r1"], "t2i_r1": r["t2i_r1"], "eval_r1": r.get("eval_r1", r["r1"]),
                "eval_t2i_r1": r.get("eval_t2i_r1", r["t2i_r1"])}

    spent = 0.0
    for r in log.rows:
        spent += r["eval_seconds"]
        if r["r1"] >= target_r1:
            return {"reached": True, "seconds": r["seconds"], "step": r["step"], "epoch": r["epoch"], **on_eval(r),
                    "eval_seconds": spent, "stopped_by": "target"}
    if log.stopped_by == "target":
        raise ValueError(f"the run stopped at its own target {log.target_r1!r}, below {target_r1!r}: it cannot say "
                         "when the higher target is reached; train to the highest target you need")
    return {"reached": False, "seconds": log.train_seconds, "step": log.steps, "epoch": log.epochs,
            **on_eval(log.rows[-1]), "eval_seconds": spent, "stopped_by": log.stopped_by}


# ----------------------------------------------------------------------------- the experiment
RUN = "recap-speed"
TARGETS = ("reference", "own-form")
PAGE_VARIANTS = (("reference", 0.0), ("own-form", 0.0), ("reference", 0.01), ("own-form", 0.01))


def _variants(variants, targets, tolerance) -> tuple[tuple[str, float], ...]:
    out = tuple((str(t), float(tol)) for t, tol in (variants if variants is not None else ((targets, tolerance),)))
    if not out:
        raise ValueError("variants must name at least one (targets, tolerance) pair, e.g. (('reference', 0.0),)")
    for t, tol in out:
        if t not in TARGETS:
            raise ValueError(f"targets must be 'reference' or 'own-form', got {t!r}")
        if not 0 <= tol < 1:
            raise ValueError(f"tolerance must lie in [0, 1), got {tol!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"variants repeat a (targets, tolerance) pair: {out}")
    return out


def run_speed(x_fit, y_fit, x_eval, y_eval, *, captioner_seconds: float | Callable[[], float] | None = None,
              captioner_note: str = "", methods=("procrustes", "lstsq"), gradient=("linear", "mlp"),
              seed: int = 0, max_seconds: float = 60.0, max_epochs: int = 200, repeats: int = 5,
              lr: float = 1e-2, mlp_lr: float = 1e-3, hidden: int = 512, batch_size: int = 256,
              eval_every: int = EVAL_EVERY, eval_positives=None, x_stop=None, y_stop=None, stop_positives=None,
              stop_split: str = "val", tolerance: float = 0.0, targets: str = "reference", variants=None,
              threads: int = SPEED_THREADS, device: str | None = None, model: str = "", source: str = "",
              pretrained: bool | str = False, dataset: str = "", split: str = "", logs: dict | None = None,
              progress: bool = True):
    """ReCap's speed claim on one set of pairs: training seconds and held-out quality of each approach,
    side by side in one process, one row per approach and target variant (see the module docstring for what
    each approach is).

    **Two held-out sets.** The *stopping set* ``(x_stop, y_stop)`` (``stop_positives``; named ``stop_split``,
    e.g. the val split) decides where each gradient method stops and sets the targets; the *evaluation set*
    ``(x_eval, y_eval)`` (``eval_positives``; named ``split``, e.g. the test split) is where every approach's
    reported ``i2t_R@1`` / ``t2i_R@1`` is measured, so nothing is selected on it. The stopping set's R@1 is in
    ``stop_i2t_R@1`` / ``stop_t2i_R@1``. Without ``x_stop``/``y_stop`` the stopping set **is** the evaluation
    set (the behaviour before the two were separated; ``stopping_split`` then repeats ``split``, or says
    ``"eval"``, and the ``stop_*`` columns equal the reported ones).

    * Closed form, for each of ``methods``: :func:`analysis.alignment.fit_alignment` on ``(x_fit, y_fit)``,
      fitted ``repeats`` times; ``train_seconds`` is the median ``fit_seconds`` (the spread is in ``notes``).
      The first method (``procrustes``, ReCap's map) is the **reference**: its i2t R@1 **on the stopping set**
      minus ``tolerance`` is the target ``R*`` of the gradient methods and its time the denominator of every
      ratio.
    * Gradient methods, for each of ``gradient`` (``"linear"``: :func:`train_linear_map`; ``"orthogonal"``:
      the same with ``WᵀW = I``; ``"mlp"``: :func:`train_mlp_mapper` with ``mlp_lr``): Adam until the stopping
      set's i2t R@1 ≥ ``R*`` or ``max_seconds`` / ``max_epochs``; the reported R@1 is the evaluation set's at
      that check. When the budget ends first, ``reached_target`` is
      False and the ratio is a lower bound on the time to reach ``R*``. ``targets="own-form"`` instead
      sets each gradient method's target from the closed form of its own form, where it is among
      ``methods``: ``linear`` → ``lstsq`` (the unconstrained minimiser of the same loss), ``orthogonal`` →
      ``procrustes``; ``mlp`` keeps the reference's (column ``target_from`` says which). The ratio stays
      against the reference's time.
    * ``variants``: several ``(targets, tolerance)`` pairs in one run (default: the one pair
      ``(targets, tolerance)``). Each gradient method is trained **once**, to the highest of its targets over
      the variants, and each variant's row is read off that run's log by :func:`crossing` (the first check
      whose stopping-set R@1 is at or above the variant's target: what a run with that target would have
      reported).
    * The captioner row (only when ``captioner_seconds`` is given: seconds, or a callable returning them,
      e.g. :func:`xe_captioner_seconds`): the XE captioner **makes captions, not a map**, so its ratio
      compares training cost only; its quality here is n/a (its captions are scored in the probe chapter).
      Its seconds come from wherever they were measured (a cached checkpoint: not this run, and on
      ``TRAIN_THREADS`` threads); ``captioner_note`` is appended to the row's notes.

    ``eval_positives`` / ``stop_positives``: the captions true of each held-out image (:func:`evaluate_map`;
    default the diagonal). All arrays are cast to float32 first (the gradient methods' precision), for the
    closed form too. Fair comparison: the same fitting, stopping and evaluation pairs (and positives), the same
    ``threads`` for every timed approach, and evaluation time excluded from every clock.
    ``ratio = train_seconds / reference train_seconds``. ``logs``: a dict to fill with each gradient approach's
    :class:`TrainLog` (keyed by approach name, e.g. ``"adam-linear"``), for training curves. The gradient methods
    run on ``device`` (default :func:`analysis.runtime.device`; the closed forms are NumPy on the CPU), recorded in
    the ``device`` column.

    Returns a ``pandas.DataFrame`` with columns ``run, model, source, pretrained, dataset, split,
    stopping_split, seed, targets, tolerance, reference, approach, kind`` (closed-form / gradient / captioner),
    ``train_seconds, i2t_R@1, t2i_R@1`` (evaluation set), ``stop_i2t_R@1, stop_t2i_R@1`` (stopping set),
    ``target_r1`` (on the stopping set), ``target_from, reached_target, lower_bound, ratio, steps, epochs,
    eval_seconds, stopped_by, n_fit, n_eval, n_stop, dim_x, dim_y, threads, device, notes``, rows grouped by
    variant in the order of ``variants``; :func:`as_tidy` turns it into the study's metric/value rows.
    """
    import pandas as pd

    from analysis.alignment import fit_alignment
    from analysis.runtime import resolve_device

    device = resolve_device(device)
    x_fit, y_fit, x_eval, y_eval = _check(x_fit, y_fit, x_eval, y_eval)
    stop = _check_stop(x_fit, y_fit, x_stop, y_stop, stop_positives)
    stopping_split = (split or "eval") if stop is None else str(stop_split)
    methods, gradient = tuple(methods), tuple(gradient)
    if not methods:
        raise ValueError("methods must name at least one closed-form fitter (the reference), e.g. ('procrustes',)")
    unknown = [g for g in gradient if g not in GRADIENT]
    if unknown:
        raise ValueError(f"unknown gradient approach(es) {unknown}; choose from {list(GRADIENT)}")
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    variants = _variants(variants, targets, tolerance)
    base = {"run": RUN, "model": model, "source": source, "pretrained": pretrained,
            "dataset": dataset, "split": split, "stopping_split": stopping_split, "seed": int(seed)}
    shape = {"n_fit": int(len(x_fit)), "n_eval": int(len(x_eval)),
             "n_stop": int(len(x_eval) if stop is None else len(stop[0])), "dim_x": int(x_fit.shape[1]),
             "dim_y": int(y_fit.shape[1]), "threads": int(threads), "device": str(device)}
    closed = []
    with thread_limit(threads):
        for method in methods:
            fit_alignment(x_fit, y_fit, method=method)  # untimed warm-up (LAPACK workspaces, thread pools)
            fits = [fit_alignment(x_fit, y_fit, method=method) for _ in range(int(repeats))]
            secs = np.array([f.fit_seconds for f in fits])
            i2t, t2i = evaluate_map(fits[0].apply(x_eval), y_eval, eval_positives)
            s_i2t, s_t2i = (i2t, t2i) if stop is None else evaluate_map(fits[0].apply(stop[0]), stop[1],
                                                                         stop_positives)
            closed.append({"approach": method, "kind": "closed-form", "train_seconds": float(np.median(secs)),
                           "i2t_R@1": i2t, "t2i_R@1": t2i, "stop_i2t_R@1": s_i2t, "stop_t2i_R@1": s_t2i,
                           "steps": 1, "epochs": float("nan"),
                           "eval_seconds": float("nan"), "stopped_by": "closed form",
                           "notes": f"fit_alignment(method={method!r}) [{fits[0].provenance.get('solver', '')}]; "
                                    f"median of {int(repeats)} fits (min {secs.min():.3g} s, max {secs.max():.3g} s)"})
    ref = closed[0]
    by_name = {r["approach"]: r for r in closed}

    def target_of(approach: str | None, tol: float) -> tuple[float, str]:
        src = by_name[approach] if approach in by_name else ref
        return max(src["stop_i2t_R@1"] - tol, 1e-12), src["approach"]

    def target_for(g: str | None, variant) -> tuple[float, str]:
        t, tol = variant
        return target_of(OWN_FORM[g] if (g is not None and t == "own-form") else None, tol)

    trained = {}
    stop_kw = {} if stop is None else {"x_stop": stop[0], "y_stop": stop[1], "stop_positives": stop_positives}
    common = dict(x_eval=x_eval, y_eval=y_eval, eval_positives=eval_positives, **stop_kw, max_seconds=max_seconds,
                  max_epochs=max_epochs, batch_size=batch_size, eval_every=eval_every, seed=seed, device=device,
                  threads=threads, progress=progress)
    for g in gradient:
        common["target_r1"] = max(target_for(g, v)[0] for v in variants)
        if g == "mlp":
            _, log = train_mlp_mapper(x_fit, y_fit, hidden=hidden, lr=mlp_lr, **common)
            what = f"2-layer tanh MLP, {hidden} hidden, Adam lr {mlp_lr:g}"
        else:
            _, log = train_linear_map(x_fit, y_fit, lr=lr, orthogonal=g == "orthogonal", **common)
            what = f"{'orthogonal ' if g == 'orthogonal' else ''}linear map x W, Adam lr {lr:g}"
        trained[g] = (log, what)
        if logs is not None:
            logs[APPROACH[g]] = log

    cap = None
    if captioner_seconds is not None:
        cap = float(captioner_seconds() if callable(captioner_seconds) else captioner_seconds)
        if not cap >= 0:
            raise ValueError(f"captioner_seconds must be a number of seconds >= 0, got {cap!r}")

    where = (f"stopped on {stopping_split} R@1, {split or 'eval'} R@1 reported" if stop is not None else
             f"stopped on the R@1 of the reported set ({stopping_split}): no separate stopping set")
    rows = []
    for variant in variants:
        t, tol = variant
        for c in closed:
            target, target_from = target_for(None, variant)
            rows.append({**c, "target_r1": target, "target_from": target_from,
                         "reached_target": bool(c["stop_i2t_R@1"] >= target), "lower_bound": False})
        for g in gradient:
            log, what = trained[g]
            target, target_from = target_for(g, variant)
            c = crossing(log, target)
            bound = "" if c["reached"] else "; target not reached within the budget: the ratio is a lower bound"
            read = ("" if target == log.target_r1 else
                    f"; read off the run trained to {log.target_r1:.4f} at its first check at or above {target:.4f}")
            rows.append({"approach": APPROACH[g], "kind": "gradient", "train_seconds": c["seconds"],
                         "i2t_R@1": c["eval_r1"], "t2i_R@1": c["eval_t2i_r1"], "stop_i2t_R@1": c["r1"],
                         "stop_t2i_R@1": c["t2i_r1"], "target_r1": target, "target_from": target_from,
                         "reached_target": c["reached"], "lower_bound": not c["reached"], "steps": c["step"],
                         "epochs": c["epoch"], "eval_seconds": c["eval_seconds"], "stopped_by": c["stopped_by"],
                         "notes": f"{what}, batch {min(batch_size, len(x_fit))}, checked every {eval_every} steps, "
                                  f"stopped by {c['stopped_by']}{bound}{read}; {where}"})
        if cap is not None:
            note = ("makes captions, not a map: the ratio compares training cost only; held-out R@1 is n/a here "
                    "(its captions are scored in the probe chapter)")
            rows.append({"approach": CAPTIONER, "kind": "captioner", "train_seconds": cap, "i2t_R@1": float("nan"),
                         "t2i_R@1": float("nan"), "stop_i2t_R@1": float("nan"), "stop_t2i_R@1": float("nan"),
                         "target_r1": float("nan"), "target_from": "", "reached_target": None,
                         "lower_bound": False, "steps": float("nan"), "epochs": float("nan"),
                         "eval_seconds": float("nan"), "stopped_by": "its own schedule",
                         "notes": note + (f"; {captioner_note}" if captioner_note else "")})
        for r in rows[-(len(closed) + len(gradient) + (cap is not None)):]:
            r.update(targets=t, tolerance=tol, reference=ref["approach"])
    for r in rows:
        r["ratio"] = r["train_seconds"] / ref["train_seconds"] if ref["train_seconds"] > 0 else float("inf")
    cols = ["targets", "tolerance", "reference", "approach", "kind", "train_seconds", "i2t_R@1", "t2i_R@1",
            "stop_i2t_R@1", "stop_t2i_R@1", "target_r1", "target_from", "reached_target", "lower_bound", "ratio",
            "steps", "epochs", "eval_seconds", "stopped_by"]
    return pd.DataFrame([{**base, **{c: r[c] for c in cols}, **shape, "notes": r["notes"]} for r in rows])


def as_tidy(frame):
    """:func:`run_speed`'s frame as the study's tidy rows: ``run, model, source, pretrained, dataset, split,
    stopping_split, seed, targets, tolerance, approach, kind, reached_target, metric, value`` with ``metric``
    one of ``train_seconds``, ``i2t_R@1``, ``t2i_R@1`` (``split``: the evaluation set), ``stop_i2t_R@1``,
    ``stop_t2i_R@1`` (their ``split`` is the stopping set's, ``stopping_split``; only when it differs from the
    evaluation set, else they would repeat ``i2t_R@1`` / ``t2i_R@1``), ``ratio`` (timings included: not for
    result files)."""
    keep = [c for c in ["run", "model", "source", "pretrained", "dataset", "split", "stopping_split", "seed",
                        "targets", "tolerance", "approach", "kind", "reached_target"] if c in frame]
    separate = "stopping_split" in frame and "stop_i2t_R@1" in frame and _splits(frame)[0] != _splits(frame)[1]
    values = ["train_seconds", "i2t_R@1", "t2i_R@1", *(("stop_i2t_R@1", "stop_t2i_R@1") if separate else ()),
              "ratio"]
    out = frame.melt(id_vars=keep, value_vars=values, var_name="metric", value_name="value")
    if "stopping_split" in out:
        on_stop = out["metric"].str.startswith("stop_")
        out.loc[on_stop, "split"] = out.loc[on_stop, "stopping_split"]
    return out


# ----------------------------------------------------------------------------- verdicts from the measurements
CLAIM = 1000.0  # ReCap: "trained up to 1000 times faster than existing lightweight methods" (REFERENCE.md §2 [V])
LIGHTWEIGHT = ("gradient", "captioner")  # the kinds that stand for "existing lightweight methods"
VERDICTS = {"holds": "holds here", "direction": "holds in direction, not in size, here",
            "direction, size open": "holds in direction here, and whether by the claimed factor is open (a "
                                    "mapper stopped by its budget gives only a lower bound, short of it)",
            "does not hold": "does not hold here", "not testable": "not testable here"}


def variant_of(table, *, targets: str = "reference", tolerance: float = 0.0):
    """The rows of one ``(targets, tolerance)`` variant of a :func:`run_speed` frame (or the page's
    ``realign-speed.timings.csv``); a frame without those columns is taken as one variant."""
    if "targets" not in table:
        return table
    tol = table["tolerance"].astype(float) if "tolerance" in table else 0.0
    return table[(table["targets"] == targets) & (abs(tol - tolerance) < 1e-12)]


def _flag(v) -> bool | None:
    """A ``reached_target`` cell as True/False/None (CSV gives strings, a missing value NaN)."""
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, str):
        return {"true": True, "false": False}.get(v.strip().lower())
    return bool(v)


def speed_verdict(table, *, claim: float = CLAIM, targets: str = "reference", tolerance: float = 0.0,
                  kinds=LIGHTWEIGHT) -> dict:
    """ReCap's "trained up to ``claim`` times faster than existing lightweight methods", decided on one variant
    of the measurements. The lightweight approaches are the rows of the ``kinds`` (default :data:`LIGHTWEIGHT`:
    the gradient mappers and the captioner; ``kinds=("gradient",)`` decides on the mappers alone); each one's
    ``ratio = seconds / reference seconds``. A gradient mapper that did not reach its target has a **lower
    bound** (its time to reach it is longer); the captioner's ratio compares full training runs (it has no R@1
    target). With ``m`` the largest ratio:

    * ``holds``: some approach that finished (not a lower bound) has a ratio ``≥ claim``: a mapper whose budget
      ran out below its target cannot prove the claim, since a larger budget alone would raise its bound;
    * ``direction``: ``1 < m < claim`` and no ratio is a lower bound (faster, by less than the claimed factor);
    * ``direction, size open``: ``1 < m < claim`` with some ratio a lower bound (faster; whether by the
      claimed factor is not decided by these runs);
    * ``does not hold``: ``m ≤ 1`` and no ratio is a lower bound (no approach is slower than the closed form);
    * ``not testable``: no lightweight row, no reference time, or only lower bounds ``≤ 1``.

    Returns ``verdict`` (a key of :data:`VERDICTS`), ``phrase``, ``claim``, ``max_ratio``, ``max_approach``,
    ``max_is_bound``, ``reference``, ``reference_seconds``, ``gradient`` (approach → ratio), ``bounds``
    (approaches whose ratio is a lower bound), ``captioner_ratio`` (None without a captioner row).

    >>> import pandas as pd
    >>> t = pd.DataFrame({"approach": ["procrustes", "adam-linear", "xe-captioner"],
    ...                   "kind": ["closed-form", "gradient", "captioner"], "train_seconds": [0.01, 1.0, 20.0],
    ...                   "ratio": [1.0, 100.0, 2000.0], "reached_target": [True, True, None]})
    >>> v = speed_verdict(t); v["verdict"], v["max_approach"], v["max_ratio"]
    ('holds', 'xe-captioner', 2000.0)
    """
    t = variant_of(table, targets=targets, tolerance=tolerance)
    ref = t[t["kind"] == "closed-form"]
    if "reference" in t and len(t):
        named = t[t["approach"] == t["reference"].iloc[0]]
        ref = named if len(named) else ref
    out = {"verdict": "not testable", "claim": float(claim), "max_ratio": float("nan"), "max_approach": None,
           "max_is_bound": False, "reference": None, "reference_seconds": float("nan"), "gradient": {}, "bounds": [],
           "captioner_ratio": None}
    if len(ref):
        out["reference"] = str(ref["approach"].iloc[0])
        out["reference_seconds"] = float(ref["train_seconds"].iloc[0])
    light = t[t["kind"].isin(tuple(kinds))]
    ok = out["reference_seconds"] > 0 and len(light)
    if ok:
        ratios = {str(r.approach): float(r.ratio) for r in light.itertuples()}
        bound = {str(r.approach): r.kind == "gradient" and _flag(r.reached_target) is not True
                 for r in light.itertuples()}
        out["gradient"] = {a: v for a, v, k in zip(light["approach"], light["ratio"], light["kind"]) if k == "gradient"}
        out["bounds"] = [a for a, b in bound.items() if b]
        caps = light[light["kind"] == "captioner"]
        out["captioner_ratio"] = float(caps["ratio"].iloc[0]) if len(caps) else None
        exact = {a: v for a, v in ratios.items() if not bound[a]}
        top = max(ratios, key=ratios.get)
        if exact and max(exact.values()) >= claim:  # a bound (budget ran out below the target) never proves it
            top = max(exact, key=exact.get)
        m = ratios[top]
        out.update(max_ratio=m, max_approach=top, max_is_bound=bound[top])
        if m >= claim and not bound[top]:
            out["verdict"] = "holds"
        elif m > 1:
            out["verdict"] = "direction, size open" if any(bound.values()) else "direction"
        elif not any(bound.values()):
            out["verdict"] = "does not hold"
    out["phrase"] = VERDICTS[out["verdict"]]
    return out


def conclusions(table, *, targets: str = "reference", tolerance: float = 0.0, claim: float = CLAIM) -> dict:
    """The conclusions the page draws from one variant: each gradient approach's ``reached_target`` and the
    :func:`speed_verdict`; compare two with :func:`changed_conclusions`."""
    t = variant_of(table, targets=targets, tolerance=tolerance)
    g = t[t["kind"] == "gradient"]
    return {"reached": {str(a): _flag(v) for a, v in zip(g["approach"], g["reached_target"])},
            "verdict": speed_verdict(table, claim=claim, targets=targets, tolerance=tolerance)["verdict"]}


def changed_conclusions(table, *, tolerance: float = 0.01, claim: float = CLAIM) -> list[str]:
    """What a ``tolerance`` on the targets changes, per target mode present in ``table`` at both tolerance 0
    and ``tolerance``: one phrase per gradient approach whose ``reached_target`` flips (``"adam-linear now
    reaches the reference target"``) and one if the verdict changes; an empty list when nothing changes."""
    out = []
    modes = dict.fromkeys(table["targets"]) if "targets" in table else []
    for mode in modes:
        a, b = (variant_of(table, targets=mode, tolerance=x) for x in (0.0, tolerance))
        if not (len(a) and len(b)):
            continue
        ca = conclusions(table, targets=mode, tolerance=0.0, claim=claim)
        cb = conclusions(table, targets=mode, tolerance=tolerance, claim=claim)
        for appr, was in ca["reached"].items():
            now = cb["reached"].get(appr)
            if now is not None and was is not None and now != was:
                out.append(f"`{appr}` {'now reaches' if now else 'no longer reaches'} the {mode} target")
        if ca["verdict"] != cb["verdict"]:
            out.append(f"the verdict on the {mode} targets turns from '{VERDICTS[ca['verdict']]}' to "
                       f"'{VERDICTS[cb['verdict']]}'")
    return out


# ----------------------------------------------------------------------------- the book page
SMOKE_MAX_SECONDS = 2.0  # smoke budgets of each gradient mapper (the page's max_seconds / max_epochs are capped)
SMOKE_MAX_EPOCHS = 5
REPEATS, SMOKE_REPEATS = 9, 3  # closed-form fits per method (median time)
PAGE_GRADIENT = ("linear", "orthogonal", "mlp")
ROW_EXTRAS = ["label", "approach", "kind", "targets", "tolerance", "target_from", "note"]


def speed_rows(frame, *, data: dict, budgets: dict, captioner: dict | None, info: dict, smoke: bool):
    """The page's **deterministic** result rows (tidy, :func:`analysis.results.validate`) from a
    :func:`run_speed` frame, each on the split its ``split`` column names: each closed-form map's
    ``i2t_R@1`` / ``t2i_R@1`` on the evaluation split (test) and, when the frame has a separate stopping split,
    its ``stop_i2t_R@1`` / ``stop_t2i_R@1`` there (val); each gradient approach's ``target_r1`` per variant
    (``targets``, ``tolerance``, ``target_from``; on the stopping split); the data (``kind = "data"``:
    ``n_fit``, ``n_fit_images``, ``n_eval``, ``one_hit_r1`` = 1/n_eval, ``duplicate_gallery_captions``, and
    with a separate stopping split ``n_stop``, ``stop_one_hit_r1`` = 1/n_stop, ``stop_duplicate_gallery_captions``;
    ``dim_x``, ``dim_y``); the budgets and settings of every approach (``max_seconds``, ``max_epochs``, ``lr``,
    ``batch_size``, ``eval_every``, ``hidden``, ``repeats``, ``threads``); the captioner's recorded facts
    (``available``, and when available ``steps``, ``n_images``, ``n_refs``, ``n_trainable``, ``threads``).
    No time, ratio or anything a time budget decides (what a gradient mapper reached) is here: those are in
    the measurement table (:func:`run_speed_page`'s ``timings``)."""
    import pandas as pd

    from analysis import results

    common = {"run": RUN, "model": info["model"], "label": info["label"], "source": info["source"],
              "pretrained": info.get("pretrained", ""), "dataset": data["dataset"], "seed": int(frame["seed"].iloc[0]),
              "smoke": bool(smoke), "targets": "", "tolerance": float("nan"), "target_from": "", "note": ""}
    recs = []
    test, stop = _splits(frame)
    separate = stop != test
    first = frame[(frame["targets"] == frame["targets"].iloc[0]) & (frame["tolerance"] == frame["tolerance"].iloc[0])]
    for _, r in first[first["kind"] == "closed-form"].iterrows():
        for m, sp in (("i2t_R@1", test), ("t2i_R@1", test),
                      *((("stop_i2t_R@1", stop), ("stop_t2i_R@1", stop)) if separate else ())):
            recs.append({"approach": r["approach"], "kind": "closed-form", "split": sp, "metric": m,
                         "value": float(r[m]), "note": str(r["notes"]).split("; median")[0]})
    for r in frame[frame["kind"] == "gradient"].itertuples():
        recs.append({"approach": r.approach, "kind": "gradient", "split": stop, "metric": "target_r1",
                     "value": float(r.target_r1), "targets": r.targets, "tolerance": float(r.tolerance),
                     "target_from": r.target_from,
                     "note": f"the target is {r.target_from}'s {stop} R@1" + (f" less {r.tolerance:g}" if r.tolerance
                                                                              else "")})
    shown = ["n_fit", "n_fit_images", "n_eval", "one_hit_r1", "duplicate_gallery_captions", "dim_x", "dim_y"]
    if separate:
        shown[5:5] = ["n_stop", "stop_one_hit_r1", "stop_duplicate_gallery_captions"]
    for m in shown:
        sp = "train" if m.startswith("n_fit") else stop if m.startswith(("n_stop", "stop_")) else test
        recs.append({"approach": "", "kind": "data", "split": sp, "metric": m, "value": float(data[m])})
    for appr, b in budgets.items():
        kind = "closed-form" if appr == "closed-form" else "gradient"
        for m, v in b.items():
            recs.append({"approach": appr, "kind": kind, "split": "train", "metric": m, "value": float(v)})
    recs.append({"approach": CAPTIONER, "kind": "captioner", "split": "train", "metric": "available",
                 "value": float(captioner is not None),
                 "note": "" if captioner is not None else "no XE captioner checkpoint was read"})
    if captioner is not None:
        for m in ("steps", "n_images", "n_refs", "n_trainable", "threads"):
            if captioner.get(m) is not None:
                recs.append({"approach": CAPTIONER, "kind": "captioner", "split": "train", "metric": m,
                             "value": float(captioner[m])})
    df = pd.DataFrame([{**common, **r} for r in recs])
    return results.validate(df[results.COLUMNS + ROW_EXTRAS])


def _splits(frame) -> tuple[str, str]:
    """``(evaluation split, stopping split)`` of a :func:`run_speed` frame (the page: ``("test", "val")``); a
    frame from before the two were separated stopped on its evaluation split."""
    def first(col: str, default: str) -> str:
        v = frame[col].iloc[0] if col in frame and len(frame) else None
        return str(v) if isinstance(v, str) and v else default

    test = first("split", "eval")
    return test, first("stopping_split", test)


def _display(t):
    """A measurement variant as the page shows it: every R@1 column names its split (``test i2t R@1``; with a
    separate stopping split also ``val i2t R@1``, and the target as ``target (val R@1)``)."""
    test, stop = _splits(t)
    cols = {"approach": "approach", "kind": "kind", "train_seconds": "train seconds", "ratio": "× procrustes",
            "i2t_R@1": f"{test} i2t R@1", "t2i_R@1": f"{test} t2i R@1", "stop_i2t_R@1": f"{stop} i2t R@1",
            "target_r1": f"target ({stop} R@1)", "target_from": "target from", "reached_target": "reached",
            "stopped_by": "stopped by", "steps": "steps", "epochs": "epochs"}
    if stop == test or "stop_i2t_R@1" not in t:
        cols.pop("stop_i2t_R@1")
    out = t[list(cols)].rename(columns=cols).reset_index(drop=True)
    out["train seconds"] = out["train seconds"].map(lambda s: f"{s:.3g}")
    out["× procrustes"] = [("≥ " if b else "") + f"{r:,.3g}" for r, b in zip(t["ratio"], t["lower_bound"])]
    for c in out.columns:
        if "R@1" in c:
            out[c] = out[c].round(3)
    out["epochs"] = out["epochs"].round(1)
    return out


def speed_page(fit, evaluated, positives, *, stop=None, stop_positives=None, info: dict,
               captioner: dict | None = None, smoke: bool = False, seed: int = 0, max_seconds: float = 60.0,
               max_epochs: int = 200, variants=PAGE_VARIANTS, methods=None, gradient=PAGE_GRADIENT,
               repeats: int | None = None, hidden: int = 512, progress: bool = True):
    """The speed page from its inputs: ``fit``, ``evaluated`` and ``stop`` are
    :class:`analysis.realignment.Pairs`-like (``image``, ``text``, ``n_images``, ``dataset_label()``;
    ``evaluated`` and ``stop`` one pair per image), ``positives`` / ``stop_positives`` their truth masks:
    the gradient mappers **stop on** ``stop`` (the val split; its closed-form R@1 are the targets) and every
    R@1 reported is on ``evaluated`` (the test split); without ``stop`` they stop on ``evaluated`` (the old
    behaviour, said in the ``stopping_split`` column). ``info`` is the scorer's ``info()``, ``captioner`` a
    :func:`checkpoint_record` (or None: no captioner row). Runs :func:`run_speed` on every closed form of
    :data:`analysis.alignment.FITTERS` (``methods``), the ``gradient`` mappers and ``variants``, and returns an
    :class:`analysis.probe.Page`: ``rows`` (:func:`speed_rows`: deterministic), ``timings`` = the measurement
    table (the :func:`run_speed` frame plus ``label`` and ``smoke``: every time, ratio and what each mapper
    reached), ``tables`` (``reference``, ``own_form``, ``tolerance`` for display, ``measurements``, ``data``,
    ``tolerance_changes``), ``frames`` (``curves``: every gradient run's held-out checks) and ``sentences``
    (:func:`analysis.prose.realign_speed_sentences`)."""
    import pandas as pd

    from analysis import alignment, prose
    from analysis.probe import Page

    methods = tuple(methods or alignment.FITTERS)
    if methods[0] != "procrustes" and "procrustes" in methods:
        methods = ("procrustes", *[m for m in methods if m != "procrustes"])
    repeats = repeats or (SMOKE_REPEATS if smoke else REPEATS)
    batch_size, lr, mlp_lr = 256, 1e-2, 1e-3
    logs: dict = {}
    cap_note = None
    if captioner is not None:
        cap_note = (f"read from its checkpoint ({captioner.get('steps')} steps on {captioner.get('n_images')} images, "
                    f"{captioner.get('n_refs')} captions, as EfficientNet-Lite0 image features, "
                    f"{captioner.get('threads')} threads): not timed in this run")
    stop_kw = ({} if stop is None else
               {"x_stop": stop.image, "y_stop": stop.text, "stop_positives": stop_positives, "stop_split": "val"})
    frame = run_speed(fit.image, fit.text, evaluated.image, evaluated.text, eval_positives=positives, **stop_kw,
                      captioner_seconds=None if captioner is None else captioner["seconds"],
                      captioner_note=cap_note or "", methods=methods, gradient=gradient, seed=seed,
                      max_seconds=max_seconds, max_epochs=max_epochs, repeats=repeats, lr=lr, mlp_lr=mlp_lr,
                      hidden=hidden, batch_size=batch_size, variants=variants, model=info["model"],
                      source=info["source"], pretrained=info.get("pretrained", ""), dataset=fit.dataset_label(),
                      split="test", logs=logs, progress=progress)
    frame.insert(frame.columns.get_loc("source"), "label", info["label"])
    frame.insert(frame.columns.get_loc("seed") + 1, "smoke", bool(smoke))
    def duplicates(mask, n) -> int:
        return 0 if mask is None else int(np.asarray(mask).sum() - n)

    n_eval = len(evaluated.image)
    data = {"dataset": fit.dataset_label(), "n_fit": len(fit.image), "n_fit_images": fit.n_images, "n_eval": n_eval,
            "one_hit_r1": 1.0 / n_eval, "duplicate_gallery_captions": duplicates(positives, n_eval),
            "dim_x": fit.image.shape[1], "dim_y": fit.text.shape[1]}
    if stop is not None:
        n_stop = len(stop.image)
        data.update(n_stop=n_stop, stop_one_hit_r1=1.0 / n_stop,
                    stop_duplicate_gallery_captions=duplicates(stop_positives, n_stop))
    grad = {"max_seconds": max_seconds, "max_epochs": max_epochs, "batch_size": batch_size,
            "eval_every": EVAL_EVERY, "threads": SPEED_THREADS}
    budgets = {"closed-form": {"repeats": repeats, "threads": SPEED_THREADS}}
    for g in gradient:
        budgets[APPROACH[g]] = {**grad, "lr": mlp_lr if g == "mlp" else lr,
                                **({"hidden": hidden} if g == "mlp" else {})}
    rows = speed_rows(frame, data=data, budgets=budgets, captioner=captioner, info=info, smoke=smoke)
    curves = pd.concat([lg.frame().assign(approach=a) for a, lg in logs.items()], ignore_index=True) if logs \
        else pd.DataFrame(columns=[*CURVE_COLUMNS, "approach"])
    changes = changed_conclusions(frame)
    tol = sorted({t for t in frame["tolerance"] if t > 0})
    tables = {"reference": _display(variant_of(frame, targets="reference")),
              "own_form": _display(variant_of(frame, targets="own-form").query("kind == 'gradient'")),
              "tolerance": (pd.concat([_display(variant_of(frame, targets=m, tolerance=x).query("kind == 'gradient'"))
                                       .assign(targets=m) for m in TARGETS for x in tol], ignore_index=True)
                            if changes else pd.DataFrame()),
              "tolerance_changes": changes, "measurements": frame, "data": pd.DataFrame([data])}
    sentences = prose.realign_speed_sentences(frame, rows)
    return Page(rows, tables=tables, frames={"curves": curves}, sentences=sentences, timings=frame)


def run_speed_page(*, smoke: bool = False, seed: int = 0, scorer: str = "clip-mini", max_seconds: float = 60.0,
                   max_epochs: int = 200, progress: bool = True, captioner: bool = True):
    """The *Realignment, speed* page: ReCap's "trained up to 1000 times faster than existing lightweight
    methods", measured on ``scorer``'s in-domain pairs (:func:`analysis.realignment.pairs`: fitted on the
    ``train`` pairs; the gradient mappers **stop on the ``val`` split** (its closed-form R@1 are their targets),
    and every R@1 reported is on the **``test`` split**, so nothing is selected on test; one pair per image
    with :func:`analysis.realignment.positives` as the truth on both) by :func:`speed_page`: every closed form of
    :data:`analysis.alignment.FITTERS`, Adam linear (plain and orthogonal), Adam MLP (``max_seconds`` and
    ``max_epochs`` each; smoke mode caps them at :data:`SMOKE_MAX_SECONDS` / :data:`SMOKE_MAX_EPOCHS` on the
    smoke pairs) and, with ``captioner``, the probe's XE captioner's training seconds read from its
    checkpoint (:func:`xe_captioner_folder`: trained on a cache miss). Returns an
    :class:`analysis.probe.Page` whose ``timings`` is the measurement table (``realign-speed.timings.csv``)."""
    from analysis import realignment

    if smoke:
        max_seconds, max_epochs = min(max_seconds, SMOKE_MAX_SECONDS), min(int(max_epochs), SMOKE_MAX_EPOCHS)
    sc = realignment._scorer(scorer, smoke, seed)
    info = sc.info()
    fit = realignment.pairs(sc, "in-domain", split="train", smoke=smoke, seed=seed, progress=progress)
    val = realignment.pairs(sc, "in-domain", split="val", smoke=smoke, seed=seed, progress=progress)
    test = realignment.pairs(sc, "in-domain", split="test", smoke=smoke, seed=seed, progress=progress)
    record = checkpoint_record(xe_captioner_folder(smoke=smoke, seed=seed)) if captioner else None
    return speed_page(fit, test.one_per_image(), realignment.positives(test), stop=val.one_per_image(),
                      stop_positives=realignment.positives(val), info=info, captioner=record, smoke=smoke,
                      seed=seed, max_seconds=max_seconds, max_epochs=max_epochs, progress=progress)
