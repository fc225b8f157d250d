"""Gradient-trained mappers and ReCap's speed comparison (issue 10), on small synthetic pairs
``y = x R + noise`` for a known random rotation ``R``: the Adam-trained linear map reaches the closed form's
held-out R@1 and stops there, an unreachable target runs to the budget, the objective is the closed form's
(the full-batch Adam map converges to numpy's least-squares answer), the MLP is deterministic for a seed,
the evaluation is kept off the training clock, and run_speed's rows."""

import json
import time

import numpy as np
import pytest

from analysis import mappers
from analysis.alignment import fit_alignment
from analysis.mappers import (MLPMapper, as_tidy, checkpoint_train_seconds, evaluate_map, run_speed,
                              train_linear_map, train_mlp_mapper)


def make_pairs(n, d, noise, *, seed=0, n_eval=500):
    """Fitting and held-out pairs ``y = x R + noise · ε`` with one random rotation ``R`` (float32)."""
    g = np.random.default_rng(seed)
    R = np.linalg.qr(g.standard_normal((d, d)))[0]

    def draw(m):
        x = g.standard_normal((m, d))
        return x.astype(np.float32), (x @ R + noise * g.standard_normal((m, d))).astype(np.float32)

    return (*draw(n), *draw(n_eval))


@pytest.fixture(scope="module")
def easy():
    """2000 × 32 fitting pairs, 500 held-out: the closed form's held-out R@1 is about 0.95."""
    return make_pairs(2000, 32, 1.0)


@pytest.fixture(scope="module")
def hard():
    """Much noisier pairs: the closed form's held-out R@1 is about 0.3, so R@1 = 1 is out of reach."""
    return make_pairs(1000, 16, 2.0, seed=1, n_eval=300)


def closed_form_r1(x, y, xe, ye, method="procrustes"):
    return evaluate_map(fit_alignment(x, y, method=method).apply(xe), ye)[0]


def test_evaluate_map_known_answers():
    assert evaluate_map(np.eye(4), np.eye(4)) == (1.0, 1.0)
    # every mapped row points at the next caption: no hit either way
    assert evaluate_map(np.eye(4), np.roll(np.eye(4), 1, axis=0)) == (0.0, 0.0)


def test_adam_linear_reaches_closed_form_r1_and_stops_early(easy):
    x, y, xe, ye = easy
    target = closed_form_r1(x, y, xe, ye)
    assert target > 0.9
    W, log = train_linear_map(x, y, x_eval=xe, y_eval=ye, target_r1=target, max_seconds=30, max_epochs=100,
                              progress=False)
    assert log.reached_target and log.stopped_by == "target"
    assert log.r1 >= target and evaluate_map(xe @ W, ye)[0] == log.r1  # the returned W is the one evaluated
    budget_steps = 100 * int(np.ceil(len(x) / 256))
    assert 0 < log.steps < budget_steps  # stopped before the epoch budget
    assert log.steps % mappers.EVAL_EVERY == 0 and W.shape == (32, 32) and W.dtype == np.float32
    frame = log.frame()
    assert list(frame.columns[:5]) == ["step", "epoch", "seconds", "loss", "r1"]
    assert frame.step.iloc[0] == 0 and np.isnan(frame.loss.iloc[0])  # checked once before the first step
    assert (np.diff(frame.seconds) >= 0).all() and frame.seconds.iloc[-1] == log.train_seconds


def test_orthogonal_adam_map_stays_orthogonal(easy):
    x, y, xe, ye = easy
    W, log = train_linear_map(x, y, x_eval=xe, y_eval=ye, target_r1=closed_form_r1(x, y, xe, ye), orthogonal=True,
                              max_seconds=30, max_epochs=100, progress=False)
    assert log.reached_target
    np.testing.assert_allclose(W.T @ W, np.eye(32), atol=1e-4)


def test_adam_objective_is_the_least_squares_one():
    """Full-batch Adam on (1/n)‖XW − Y‖² ends at numpy's least-squares W (an independent reference)."""
    x, y, xe, ye = make_pairs(400, 6, 0.5, seed=3, n_eval=50)
    W, log = train_linear_map(x, y, x_eval=xe, y_eval=ye, lr=1e-2, batch_size=400, max_epochs=1500,
                              eval_every=500, max_seconds=60, progress=False)
    assert log.stopped_by == "max_epochs" and log.steps == 1500
    W_ref = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(W, W_ref, atol=2e-3)


def test_impossible_target_runs_to_the_budget(hard):
    x, y, xe, ye = hard
    assert closed_form_r1(x, y, xe, ye) < 0.6
    _, log = train_linear_map(x, y, x_eval=xe, y_eval=ye, target_r1=1.0, max_epochs=3, batch_size=100,
                              max_seconds=60, progress=False)
    assert not log.reached_target and log.stopped_by == "max_epochs"
    assert log.steps == 30 and log.epochs == 3 and log.rows[-1]["step"] == 30  # the end is always evaluated
    _, log = train_linear_map(x, y, x_eval=xe, y_eval=ye, target_r1=1.0, max_epochs=10**6, max_seconds=0.05,
                              progress=False)
    assert not log.reached_target and log.stopped_by == "max_seconds"
    assert 0.05 <= log.train_seconds < 1.0


def test_mlp_runs_and_is_deterministic_for_a_seed(hard):
    x, y, xe, ye = hard
    kw = dict(x_eval=xe, y_eval=ye, hidden=24, lr=1e-2, max_epochs=5, max_seconds=60, progress=False)
    m1, log1 = train_mlp_mapper(x, y, seed=0, **kw)
    m2, log2 = train_mlp_mapper(x, y, seed=0, **kw)
    m3, _ = train_mlp_mapper(x, y, seed=1, **kw)
    assert isinstance(m1, MLPMapper) and m1.W1.shape == (16, 24) and m1.W2.shape == (24, 16)
    for a, b in zip((m1.W1, m1.b1, m1.W2, m1.b2), (m2.W1, m2.b1, m2.W2, m2.b2)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(m1.W1, m3.W1)
    assert [r["loss"] for r in log1.rows[1:]] == [r["loss"] for r in log2.rows[1:]]
    assert log1.r1 == evaluate_map(m1.apply(xe), ye)[0] and log1.r1 > 0.05  # learned something (chance 1/300)


def test_evaluation_time_is_off_the_training_clock(hard, monkeypatch):
    x, y, xe, ye = hard
    real, pause = mappers.evaluate_map, 0.05

    def slow(pred, y_eval, positives=None):
        time.sleep(pause)
        return real(pred, y_eval, positives)

    monkeypatch.setattr(mappers, "evaluate_map", slow)
    t = time.perf_counter()
    _, log = train_linear_map(x, y, x_eval=xe, y_eval=ye, max_epochs=2, batch_size=100, eval_every=1,
                              max_seconds=60, progress=False)
    wall = time.perf_counter() - t
    checks = len(log.rows)
    assert checks == 21  # before the first step, then after each of the 20 steps
    assert log.eval_seconds >= checks * pause
    assert log.train_seconds + log.eval_seconds <= log.wall_seconds <= wall
    assert log.train_seconds < checks * pause / 2  # 20 tiny steps: far below the 1 s of sleeping
    assert all(r["eval_seconds"] >= pause for r in log.rows)


def test_run_speed_rows_and_ratios(easy):
    x, y, xe, ye = easy
    df = run_speed(x, y, xe, ye, captioner_seconds=lambda: 170.0, captioner_note="from a cached checkpoint",
                   gradient=("linear", "mlp"), tolerance=0.02, max_epochs=30, max_seconds=20, hidden=32, repeats=3,
                   model="synthetic", dataset="rotation+noise", split="held-out", progress=False)
    assert df.approach.tolist() == ["procrustes", "lstsq", "adam-linear", "adam-mlp", "xe-captioner"]
    assert df.kind.tolist() == ["closed-form"] * 2 + ["gradient"] * 2 + ["captioner"]
    ref = df.iloc[0]
    assert ref.ratio == 1.0 and ref.target_r1 == pytest.approx(ref["i2t_R@1"] - 0.02) and ref.reached_target
    assert ref["i2t_R@1"] == closed_form_r1(x, y, xe, ye)
    grad = df[df.kind == "gradient"]
    assert (grad.ratio >= 1).all() and (grad.train_seconds > 0).all()
    np.testing.assert_allclose(df.ratio, df.train_seconds / ref.train_seconds)
    lin = df.set_index("approach").loc["adam-linear"]
    assert lin.reached_target and lin["i2t_R@1"] >= ref.target_r1 and lin.stopped_by == "target"
    assert all("lower bound" in r.notes for r in grad.itertuples() if not r.reached_target)
    cap = df.set_index("approach").loc["xe-captioner"]
    assert cap.train_seconds == 170.0 and np.isnan(cap["i2t_R@1"]) and cap.reached_target is None
    assert "not a map" in cap.notes and "cached checkpoint" in cap.notes
    assert {"run", "model", "source", "pretrained", "dataset", "split", "seed"} <= set(df.columns)
    assert (df.n_fit == 2000).all() and (df.threads == mappers.SPEED_THREADS).all()
    tidy = as_tidy(df)
    assert len(tidy) == 4 * len(df) and set(tidy.metric) == {"train_seconds", "i2t_R@1", "t2i_R@1", "ratio"}


def test_run_speed_without_captioner_and_bad_inputs(hard):
    x, y, xe, ye = hard
    df = run_speed(x, y, xe, ye, methods=("procrustes",), gradient=(), progress=False)
    assert df.approach.tolist() == ["procrustes"]
    with pytest.raises(ValueError, match="unknown gradient"):
        run_speed(x, y, xe, ye, gradient=("sgd",), progress=False)
    with pytest.raises(ValueError, match="dimensions of x/y"):
        train_linear_map(x, y, x_eval=xe[:, :8], y_eval=ye, progress=False)
    with pytest.raises(ValueError, match="target_r1"):
        train_linear_map(x, y, x_eval=xe, y_eval=ye, target_r1=1.5, progress=False)
    with pytest.raises(ValueError, match="same number of rows"):
        train_mlp_mapper(x, y[:-1], x_eval=xe, y_eval=ye, progress=False)


def test_checkpoint_train_seconds(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"log": {"seconds": 12.5, "steps": 40}}))
    assert checkpoint_train_seconds(tmp_path) == 12.5
    with pytest.raises(FileNotFoundError, match="train_xe"):
        checkpoint_train_seconds(tmp_path / "missing")
    (tmp_path / "meta.json").write_text(json.dumps({"log": {}}))
    with pytest.raises(KeyError, match="log.seconds"):
        checkpoint_train_seconds(tmp_path)

def test_both_held_out_sets_are_off_the_training_clock(with_stop, monkeypatch):
    x, y, xe, ye, xs, ys = with_stop
    real, pause, calls = mappers.evaluate_map, 0.05, []

    def slow(pred, y_eval, positives=None):
        calls.append(len(pred))
        time.sleep(pause)
        return real(pred, y_eval, positives)

    monkeypatch.setattr(mappers, "evaluate_map", slow)
    _, log = train_linear_map(x[:500], y[:500], x_eval=xe, y_eval=ye, x_stop=xs, y_stop=ys, max_epochs=2,
                              batch_size=100, eval_every=5, max_seconds=60, progress=False)
    assert len(log.rows) == 3 and sorted(set(calls)) == [200, 500] and len(calls) == 6  # both sets, each check
    assert log.eval_seconds >= 6 * pause and log.train_seconds < 3 * pause


def test_eval_positives_count_duplicate_captions():
    """Two held-out images share one caption text: with the mask, either caption is a hit (hand-computed)."""
    pred = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0]])  # image 1's own caption ranks below image 0's
    # i2t: image 0 misses; t2i: images 0 and 1 tie for captions 0 and 1 (half a hit each in expectation)
    assert evaluate_map(pred, y) == pytest.approx((2 / 3, 2 / 3))
    P = np.eye(3, dtype=bool)
    P[0, 1] = P[1, 0] = True
    assert evaluate_map(pred, y, positives=P) == (1.0, 1.0)
    with pytest.raises(ValueError, match="positives must be a"):
        evaluate_map(pred, y, positives=np.eye(2, dtype=bool))


def test_run_speed_own_form_targets(hard):
    x, y, xe, ye = hard
    df = run_speed(x, y, xe, ye, gradient=("linear", "mlp"), targets="own-form", max_epochs=2, hidden=8,
                   progress=False).set_index("approach")
    assert df.loc["adam-linear", "target_from"] == "lstsq"
    assert df.loc["adam-linear", "target_r1"] == df.loc["lstsq", "i2t_R@1"]
    assert df.loc["adam-mlp", "target_from"] == "procrustes"  # no closed form of an MLP's form
    assert df.loc["adam-mlp", "target_r1"] == df.loc["procrustes", "i2t_R@1"]
    with pytest.raises(ValueError, match="own-form"):
        run_speed(x, y, xe, ye, targets="own", progress=False)


# ----------------------------------------------------------------------------- a separate stopping set
def numpy_r1(pred, y):
    """i2t R@1 with numpy alone (cosine, row i's caption is row i; continuous data: no ties)."""
    p = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    t = y / np.linalg.norm(y, axis=1, keepdims=True)
    S = p.astype(np.float64) @ t.astype(np.float64).T
    return float((S.argmax(1) == np.arange(len(S))).mean())


@pytest.fixture(scope="module")
def with_stop(easy):
    """``easy`` plus a stopping set that differs from the evaluation set: 200 of its images with much noisier
    captions, so every map scores lower there (Procrustes about 0.5 against about 0.95)."""
    x, y, xe, ye = easy
    g = np.random.default_rng(5)
    return x, y, xe, ye, xe[:200].copy(), (ye[:200] + 1.5 * g.standard_normal((200, 32))).astype(np.float32)


def test_gradient_mapper_stops_on_the_stopping_set_and_reports_the_eval_set(with_stop):
    x, y, xe, ye, xs, ys = with_stop
    U, _, Vt = np.linalg.svd(x.astype(np.float64).T @ y.astype(np.float64))  # Procrustes with numpy alone
    target = numpy_r1(xs @ (U @ Vt), ys)
    assert target < numpy_r1(xe @ (U @ Vt), ye) - 0.2  # the two sets really differ
    W, log = train_linear_map(x, y, x_eval=xe, y_eval=ye, x_stop=xs, y_stop=ys, target_r1=target, eval_every=2,
                              max_epochs=30, max_seconds=30, progress=False)
    assert log.reached_target and log.separate_stop and log.settings["n_stop"] == 200
    f = log.frame()
    # it stopped at the first check whose STOPPING-set R@1 reached the target ...
    assert f.r1.iloc[-1] >= target and (f.r1.iloc[:-1] < target).all()
    # ... although the eval-set R@1 had passed it much earlier: it did not stop on the eval set
    assert (f.eval_r1.iloc[:-1] >= target).any()
    assert log.r1 == pytest.approx(numpy_r1(xs @ W, ys), abs=1.5 / 200)
    assert log.eval_r1 == pytest.approx(numpy_r1(xe @ W, ye), abs=1.5 / 500)
    with pytest.raises(ValueError, match="both x_stop and y_stop"):
        train_linear_map(x, y, x_eval=xe, y_eval=ye, x_stop=xs, progress=False)
    with pytest.raises(ValueError, match="stop_positives was given"):
        train_linear_map(x, y, x_eval=xe, y_eval=ye, stop_positives=np.eye(200, dtype=bool), progress=False)
    with pytest.raises(ValueError, match="x_stop/y_stop must have the dimensions"):
        train_linear_map(x, y, x_eval=xe, y_eval=ye, x_stop=xs[:, :8], y_stop=ys, progress=False)


def test_run_speed_targets_and_stops_on_the_stopping_set(with_stop):
    x, y, xe, ye, xs, ys = with_stop
    logs = {}
    df = run_speed(x, y, xe, ye, x_stop=xs, y_stop=ys, methods=("procrustes", "lstsq"), gradient=("linear",),
                   eval_every=2, max_epochs=30, max_seconds=30, split="test", stop_split="val", logs=logs,
                   progress=False).set_index("approach")
    U, _, Vt = np.linalg.svd(x.astype(np.float64).T @ y.astype(np.float64))
    ref = df.loc["procrustes"]
    assert ref["stop_i2t_R@1"] == pytest.approx(numpy_r1(xs @ (U @ Vt), ys), abs=1.5 / 200)
    assert ref["i2t_R@1"] == pytest.approx(numpy_r1(xe @ (U @ Vt), ye), abs=1.5 / 500)
    lin = df.loc["adam-linear"]
    assert lin.target_r1 == ref["stop_i2t_R@1"]  # R* = the closed form's R@1 on the STOPPING set
    assert lin.reached_target and lin["stop_i2t_R@1"] >= lin.target_r1
    f = logs["adam-linear"].frame()
    stop_row = f[f.step == lin.steps].iloc[0]
    assert (f[f.step < lin.steps].r1 < lin.target_r1).all()  # the first stopping-set crossing
    assert (lin["i2t_R@1"], lin["stop_i2t_R@1"]) == (stop_row.eval_r1, stop_row.r1)  # reported: the eval set's
    assert lin["i2t_R@1"] > lin["stop_i2t_R@1"] + 0.2
    assert set(df.stopping_split) == {"val"} and set(df.split) == {"test"} and (df.n_stop == 200).all()
    assert "stopped on val R@1, test R@1 reported" in lin.notes
    tidy = as_tidy(df.reset_index())
    assert set(tidy[tidy.metric.str.startswith("stop_")].split) == {"val"}
    assert set(tidy[tidy.metric.isin(["i2t_R@1", "t2i_R@1"])].split) == {"test"}


def test_run_speed_without_a_stopping_set_stops_on_the_eval_set_and_says_so(hard):
    x, y, xe, ye = hard
    df = run_speed(x, y, xe, ye, gradient=("linear",), max_epochs=2, split="test", progress=False)
    assert set(df.stopping_split) == {"test"} and (df.n_stop == df.n_eval).all()
    g = df[df.kind != "captioner"]
    assert (g["stop_i2t_R@1"] == g["i2t_R@1"]).all() and (g["stop_t2i_R@1"] == g["t2i_R@1"]).all()
    assert df.target_r1.iloc[0] == df["i2t_R@1"].iloc[0]
    assert "no separate stopping set" in df.notes.iloc[-1]
    assert set(run_speed(x, y, xe, ye, gradient=(), progress=False).stopping_split) == {"eval"}


# ----------------------------------------------------------------------------- reading a run at another target
def test_crossing_matches_a_run_trained_to_the_lower_target(easy):
    """A run trained to a high target answers a lower one exactly as a separate run with the lower target does
    (same seed, same trajectory): the independent reference is that second run."""
    x, y, xe, ye = easy
    high = closed_form_r1(x, y, xe, ye)
    low = high - 0.1
    _, long = train_linear_map(x, y, x_eval=xe, y_eval=ye, target_r1=high, max_seconds=30, max_epochs=100,
                               progress=False)
    _, short = train_linear_map(x, y, x_eval=xe, y_eval=ye, target_r1=low, max_seconds=30, max_epochs=100,
                                progress=False)
    c = mappers.crossing(long, low)
    assert short.reached_target and c["reached"] and c["stopped_by"] == "target"
    assert (c["step"], c["r1"], c["t2i_r1"]) == (short.steps, short.r1, short.t2i_r1)
    assert c["step"] < long.steps and 0 < c["seconds"] < long.train_seconds


def _log(r1s, *, stopped_by, target=None):
    rows = tuple({"step": 10 * i, "epoch": float(i), "seconds": 0.1 * i, "loss": float("nan"), "r1": r,
                  "t2i_r1": r / 2, "eval_seconds": 0.01} for i, r in enumerate(r1s))
    last = rows[-1]
    return mappers.TrainLog(rows, last["seconds"], 0.01 * len(rows), 1.0, last["step"], last["epoch"], stopped_by,
                            target, stopped_by == "target", last["r1"], last["t2i_r1"])


def test_crossing_on_constructed_logs():
    log = _log([0.1, 0.3, 0.2, 0.5], stopped_by="max_epochs", target=0.9)
    c = mappers.crossing(log, 0.25)  # the first check at or above, even though R@1 dips afterwards
    assert (c["reached"], c["step"], c["seconds"], c["r1"]) == (True, 10, 0.1, 0.3)
    assert c["eval_seconds"] == pytest.approx(0.02)
    c = mappers.crossing(log, 0.6)
    assert (c["reached"], c["stopped_by"], c["step"], c["r1"]) == (False, "max_epochs", 30, 0.5)
    stopped = _log([0.1, 0.4], stopped_by="target", target=0.4)
    with pytest.raises(ValueError, match="train to the highest target"):
        mappers.crossing(stopped, 0.45)
    with pytest.raises(ValueError, match="target_r1"):
        mappers.crossing(log, 0.0)


def test_run_speed_variants_train_each_mapper_once(hard, monkeypatch):
    x, y, xe, ye = hard
    calls = []
    real = mappers.train_linear_map

    def counting(*a, **kw):
        calls.append(kw["target_r1"])
        return real(*a, **kw)

    monkeypatch.setattr(mappers, "train_linear_map", counting)
    logs = {}
    df = run_speed(x, y, xe, ye, gradient=("linear",), variants=mappers.PAGE_VARIANTS, max_epochs=3, logs=logs,
                   captioner_seconds=5.0, progress=False)
    assert len(calls) == 1 and list(logs) == ["adam-linear"]
    cf = df[(df.targets == "reference") & (df.tolerance == 0)].set_index("approach")
    # trained once, to the highest target of the four variants: the reference one (procrustes > lstsq here)
    assert calls[0] == pytest.approx(max(cf.loc["procrustes", "i2t_R@1"], cf.loc["lstsq", "i2t_R@1"]))
    assert len(df) == 4 * 4 and df.groupby(["targets", "tolerance"]).size().eq(4).all()
    lin = df[df.approach == "adam-linear"].set_index(["targets", "tolerance"])
    assert lin.loc[("own-form", 0.0), "target_r1"] == cf.loc["lstsq", "i2t_R@1"]
    assert lin.loc[("reference", 0.01), "target_r1"] == pytest.approx(cf.loc["procrustes", "i2t_R@1"] - 0.01)
    assert (lin.lower_bound == ~lin.reached_target.astype(bool)).all()
    assert set(df.reference) == {"procrustes"}
    with pytest.raises(ValueError, match="repeat"):
        run_speed(x, y, xe, ye, gradient=(), variants=[("reference", 0.0)] * 2, progress=False)
    with pytest.raises(ValueError, match="tolerance"):
        run_speed(x, y, xe, ye, gradient=(), variants=[("reference", 1.5)], progress=False)


# ----------------------------------------------------------------------------- verdicts on constructed tables
def speed_table(gradient: dict, captioner: float | None = 5000.0, *, ref_seconds=0.01, tol_reached=None):
    """A measurement table like the page's: procrustes (reference) and lstsq, the gradient mappers
    ``{approach: (ratio, reached)}`` and the captioner (None: missing), for the reference and own-form targets
    and a 0.01 tolerance (``tol_reached`` overrides the reached flags there)."""
    import pandas as pd

    recs = []
    for targets in ("reference", "own-form"):
        for tol in (0.0, 0.01):
            base = {"targets": targets, "tolerance": tol, "reference": "procrustes", "label": "stand-in (test)",
                    "model": "m", "n_fit": 2812, "n_eval": 119, "dim_x": 256, "dim_y": 256, "threads": 1}
            recs.append({**base, "approach": "procrustes", "kind": "closed-form", "ratio": 1.0,
                         "train_seconds": ref_seconds, "i2t_R@1": 0.56, "t2i_R@1": 0.5, "target_r1": 0.56 - tol,
                         "target_from": "procrustes", "reached_target": True, "lower_bound": False, "steps": 1,
                         "epochs": float("nan"), "stopped_by": "closed form"})
            recs.append({**base, "approach": "lstsq", "kind": "closed-form", "ratio": 0.5,
                         "train_seconds": ref_seconds / 2, "i2t_R@1": 0.5, "t2i_R@1": 0.44, "target_r1": 0.56 - tol,
                         "target_from": "procrustes", "reached_target": False, "lower_bound": False, "steps": 1,
                         "epochs": float("nan"), "stopped_by": "closed form"})
            for a, (ratio, reached) in gradient.items():
                if tol and tol_reached is not None:
                    reached = tol_reached.get(a, reached)
                own = targets == "own-form" and a == "adam-linear"
                recs.append({**base, "approach": a, "kind": "gradient", "ratio": ratio,
                             "train_seconds": ratio * ref_seconds, "i2t_R@1": 0.56 if reached else 0.5,
                             "t2i_R@1": 0.4, "target_r1": (0.5 if own else 0.56) - tol,
                             "target_from": "lstsq" if own else "procrustes", "reached_target": reached,
                             "lower_bound": not reached, "steps": 80 if reached else 2200,
                             "epochs": 7.3 if reached else 200.0, "stopped_by": "target" if reached else "max_epochs"})
            if captioner is not None:
                recs.append({**base, "approach": "xe-captioner", "kind": "captioner", "ratio": captioner,
                             "train_seconds": captioner * ref_seconds, "i2t_R@1": float("nan"),
                             "t2i_R@1": float("nan"), "target_r1": float("nan"), "target_from": "",
                             "reached_target": None, "lower_bound": False, "steps": float("nan"),
                             "epochs": float("nan"), "stopped_by": "its own schedule"})
    return pd.DataFrame(recs)


def test_speed_verdict_on_constructed_tables():
    v = mappers.speed_verdict(speed_table({"adam-linear": (200.0, True), "adam-mlp": (900.0, False)}))
    assert (v["verdict"], v["max_approach"], v["max_ratio"], v["captioner_ratio"]) == ("holds", "xe-captioner",
                                                                                       5000.0, 5000.0)
    assert v["bounds"] == ["adam-mlp"] and v["gradient"] == {"adam-linear": 200.0, "adam-mlp": 900.0}
    # the mappers alone: faster, short of the factor
    alone = mappers.speed_verdict(speed_table({"adam-linear": (200.0, True)}), kinds=("gradient",))
    assert alone["verdict"] == "direction" and alone["captioner_ratio"] is None
    # a lower bound short of the claim leaves the size open
    open_ = mappers.speed_verdict(speed_table({"adam-linear": (200.0, True), "adam-mlp": (900.0, False)}),
                                  kinds=("gradient",))
    assert (open_["verdict"], open_["max_is_bound"]) == ("direction, size open", True)
    # a missing captioner row: decided on the mappers; a lower bound above the claim does NOT prove it (a larger
    # budget alone would raise the bound), a finished run above the claim does
    v = mappers.speed_verdict(speed_table({"adam-linear": (20.0, True), "adam-mlp": (1500.0, False)}, None))
    assert (v["verdict"], v["max_approach"], v["max_is_bound"], v["captioner_ratio"]) == (
        "direction, size open", "adam-mlp", True, None)
    v = mappers.speed_verdict(speed_table({"adam-linear": (1200.0, True), "adam-mlp": (1500.0, False)}, None))
    assert (v["verdict"], v["max_approach"], v["max_is_bound"]) == ("holds", "adam-linear", False)
    v = mappers.speed_verdict(speed_table({"adam-linear": (0.8, True)}, None))
    assert v["verdict"] == "does not hold"
    v = mappers.speed_verdict(speed_table({"adam-linear": (0.8, False)}, None))  # only a lower bound <= 1
    assert v["verdict"] == "not testable"
    v = mappers.speed_verdict(speed_table({}, None))
    assert v["verdict"] == "not testable" and v["max_approach"] is None
    # the CSV round trip (reached_target as strings) gives the same verdict
    import io

    import pandas as pd

    t = speed_table({"adam-linear": (200.0, True), "adam-mlp": (900.0, False)}, None)
    back = pd.read_csv(io.StringIO(t.to_csv(index=False)))
    assert mappers.speed_verdict(back) == mappers.speed_verdict(t)


def test_changed_conclusions():
    same = speed_table({"adam-linear": (200.0, False)})
    assert mappers.changed_conclusions(same) == []
    flip = speed_table({"adam-linear": (200.0, False)}, None, tol_reached={"adam-linear": True})
    ch = mappers.changed_conclusions(flip)
    assert ch[0] == "`adam-linear` now reaches the reference target" and len(ch) == 4
    # reached, its 200× is no longer a lower bound: the size of the speed-up is decided (short of 1000×)
    assert ch[1] == ("the verdict on the reference targets turns from 'holds in direction here, and whether by the "
                     "claimed factor is open (a mapper stopped by its budget gives only a lower bound, short of it)' "
                     "to 'holds in direction, not in size, here'")


def test_speed_sentences_on_constructed_rows():
    from analysis import prose

    s = prose.realign_speed_sentences(speed_table({"adam-linear": (224.0, False), "adam-orthogonal": (210.0, True),
                                                   "adam-mlp": (974.0, False)}))
    text = " ".join(s)
    assert "210× to 974×" in text and "≥ 224×" in text and "≥ 974×" in text
    assert "`adam-orthogonal` reached it after 80 steps" in text
    assert "`lstsq`, which minimises the same loss in closed form, scores 0.500" in text
    assert "5,000×" in text and "not a map" in text
    assert s[-3].startswith("“Trained up to 1,000 times faster") and "holds here" in s[-3]
    assert "it holds in direction here, and whether by the claimed factor is open" in s[-3]  # the mappers alone
    assert "For `adam-orthogonal` and `adam-mlp` the own-form target is `procrustes`'s" in text
    assert "one hit moves R@1 by 0.008" in text and "nothing concluded above changes" in text
    # a missing captioner row: said so, and the verdict rests on the mappers
    s = prose.realign_speed_sentences(speed_table({"adam-linear": (224.0, True)}, None))
    text = " ".join(s)
    assert "No XE captioner training time was available" in text
    assert "holds in direction, not in size, here" in text and "the XE captioner is missing" in text
    # a tolerance that flips a conclusion is named
    s = prose.realign_speed_sentences(speed_table({"adam-linear": (224.0, False)}, tol_reached={"adam-linear": True}))
    assert any("`adam-linear` now reaches the reference target" in x for x in s)
    assert prose.realign_speed_sentences(speed_table({}, None).iloc[0:0]) == ["No speed measurement was run."]
    only_ref = speed_table({}, None)
    v = " ".join(prose.realign_speed_sentences(only_ref))
    assert "No gradient-trained mapper was run" in v and "not testable here" in v


# ----------------------------------------------------------------------------- the page on synthetic pairs
class FakePairs:
    """What speed_page reads of analysis.realignment.Pairs."""

    def __init__(self, image, text):
        self.image, self.text = image, text
        self.n_images = len(image)

    def dataset_label(self):
        return "synthetic"


def test_speed_page_rows_are_deterministic_and_timing_free(hard, tmp_path):
    import pandas as pd

    from analysis import results

    x, y, xe, ye = hard
    info = {"model": "synthetic", "label": "synthetic (test)", "source": "none", "pretrained": ""}
    cap = {"seconds": 12.0, "steps": 40, "n_images": 100, "n_refs": 1000, "n_trainable": 5, "threads": 2}
    kw = dict(info=info, captioner=cap, smoke=True, max_epochs=2, max_seconds=30, hidden=8, repeats=2,
              progress=False)
    page = mappers.speed_page(FakePairs(x, y), FakePairs(xe, ye), np.eye(len(xe), dtype=bool), **kw)
    again = mappers.speed_page(FakePairs(x, y), FakePairs(xe, ye), np.eye(len(xe), dtype=bool), **kw)
    a, b = (results.write(p.rows, tmp_path / n)["csv"].read_bytes() for p, n in ((page, "a"), (again, "b")))
    assert a == b
    rows = page.rows
    assert not {"train_seconds", "ratio", "seconds", "eval_seconds", "reached_target", "stopped_by"} & set(rows.columns)
    assert not rows.metric.isin(["train_seconds", "ratio", "seconds", "r1"]).any()
    assert rows.smoke.all() and set(rows.approach[rows.kind == "closed-form"]) >= {"procrustes", "lstsq", "ridge",
                                                                                     "robust-procrustes"}
    data = rows[rows.kind == "data"].set_index("metric").value
    assert data["n_fit"] == len(x) and data["n_eval"] == len(xe) and data["one_hit_r1"] == 1 / len(xe)
    assert rows[(rows.approach == "xe-captioner") & (rows.metric == "n_refs")].value.item() == 1000
    t = page.timings
    assert isinstance(t, pd.DataFrame) and len(t) == 4 * 8  # 4 variants × (4 closed forms, 3 mappers, captioner)
    assert {"train_seconds", "ratio", "reached_target", "lower_bound", "stopped_by", "label", "smoke"} <= set(t.columns)
    assert set(t.stopping_split) == {"test"} and "stop_i2t_R@1" not in set(rows.metric)  # no stopping set given
    assert t.loc[t.approach == "xe-captioner", "train_seconds"].eq(12.0).all()
    assert set(page.frames["curves"].approach) == {"adam-linear", "adam-orthogonal", "adam-mlp"}
    assert page.sentences and page.tables["reference"].shape[0] == 8
    path = results.write_timings(page.timings, tmp_path / "realign-speed")
    assert path.name == "realign-speed.timings.csv"
    none = mappers.speed_page(FakePairs(x, y), FakePairs(xe, ye), None, **{**kw, "captioner": None},
                              gradient=("linear",))
    assert "xe-captioner" not in set(none.timings.approach)
    assert none.rows[(none.rows.approach == "xe-captioner")].metric.tolist() == ["available"]


def test_speed_page_stops_on_val_and_reports_test(with_stop):
    x, y, xe, ye, xs, ys = with_stop
    info = {"model": "synthetic", "label": "synthetic (test)", "source": "none", "pretrained": ""}
    page = mappers.speed_page(FakePairs(x, y), FakePairs(xe, ye), np.eye(len(xe), dtype=bool),
                              stop=FakePairs(xs, ys), stop_positives=np.eye(len(xs), dtype=bool), info=info,
                              smoke=True, max_epochs=2, max_seconds=30, hidden=8, repeats=2, gradient=("linear",),
                              methods=("procrustes",), progress=False)
    rows = page.rows.set_index(["kind", "metric"])
    assert rows.loc[("closed-form", "i2t_R@1"), "split"] == "test"
    assert rows.loc[("closed-form", "stop_i2t_R@1"), "split"] == "val"
    assert set(page.rows[page.rows.metric == "target_r1"].split) == {"val"}
    assert rows.loc[("data", "n_stop"), "value"] == len(xs) and rows.loc[("data", "n_stop"), "split"] == "val"
    assert rows.loc[("data", "n_eval"), "split"] == "test"
    assert {"test i2t R@1", "val i2t R@1", "target (val R@1)"} <= set(page.tables["reference"].columns)
    assert {"eval_r1", "r1"} <= set(page.frames["curves"].columns)
    text = " ".join(page.sentences)
    assert "stopped on val R@1; test R@1 reported" in text and f"on the {len(xs)} val images" in text
    assert f"With {len(xs)} val images one hit moves R@1" in text
    import matplotlib.pyplot as plt

    from analysis import plots

    fig = plots.speed_comparison(page.timings, page.frames["curves"])
    assert fig.axes[1].get_ylabel().startswith("test image→text R@1") and "stopped on val" in fig.axes[1].get_ylabel()
    plt.close(fig)


def test_checkpoint_record(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"threads": 2, "log": {"seconds": 3.5, "steps": 40, "n_images": 9,
                                                                          "n_refs": 27}}))
    r = mappers.checkpoint_record(tmp_path)
    assert (r["seconds"], r["steps"], r["n_images"], r["n_refs"], r["n_trainable"], r["threads"]) == (3.5, 40, 9, 27,
                                                                                                      None, 2)


def test_speed_figure_on_a_constructed_table():
    import matplotlib.pyplot as plt
    import pandas as pd

    from analysis import plots

    t = speed_table({"adam-linear": (224.0, False), "adam-orthogonal": (210.0, True)})
    curves = pd.DataFrame({"approach": ["adam-linear"] * 3, "seconds": [0.0, 0.5, 1.0], "r1": [0.1, 0.4, 0.5]})
    fig = plots.speed_comparison(t, curves)
    left, right = fig.axes[:2]
    assert left.get_xscale() == "log" and right.get_xscale() == "log"
    assert "seconds" in left.get_xlabel() and "R@1" in right.get_ylabel() and "stand-in" in right.get_ylabel()
    assert [x.get_text() for x in left.get_yticklabels()] == ["procrustes", "lstsq", "adam-linear", "adam-orthogonal",
                                                              "xe-captioner"]
    assert any(x.get_text() == "≥ 224×" for x in left.texts) and left.get_title() and right.get_title()
    plt.close(fig)
