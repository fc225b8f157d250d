"""Self-critical sequence training (SCST) of a captioner with any reward of :mod:`analysis.captioning.rewards`.

Rennie et al. (2017) fine-tune an XE captioner with REINFORCE, using the reward of the model's own greedy
caption as the baseline. Here, as in the "new self-critical" variant (Luo 2020, ``new_self_critical`` in
ruotianluo/self-critical.pytorch), each image gets ``k`` sampled captions and each sample's baseline is the
**mean reward of the other k − 1 samples of the same image**:

``b_ij = (Σ_{j'} r_ij' − r_ij) / (k − 1)``  (:func:`leave_one_out_baseline`)

which is independent of sample ``j`` itself (so the gradient stays unbiased) and needs no greedy decode.
The loss of a step over ``N = B·k`` samples, ``log p_ijt`` the log-probability of the sampled token ``t``
and ``m_ijt`` the mask (tokens up to and including ``<eos>``):

``L = −1/N · Σ_ij (r_ij − b_ij) · Σ_t m_ijt · log p_ijt``  (:func:`scst_loss`)

i.e. the sequence log-probability summed over its tokens and averaged over samples: the plain REINFORCE
estimate of ``−∇ E[r]``. (ruotianluo's ``RewardCriterion`` divides the same sum by the batch's token count
instead of ``N``: the same direction scaled by one over the mean length, so the step size would depend on
caption length; dividing each caption's sum by its own length is no longer the gradient of ``E[r]``, as it
weighs short and long samples differently.)

Each step: ``B`` distinct images (epochs of a seeded permutation,
:class:`~analysis.captioning.xe.ImageBatches`), ``k`` samples each from ``captioner.sample(feats, k,
max_len, temperature=..., generator=g)`` with a seeded ``torch.Generator``, decoded with
``vocab.decode``, scored by the reward; the samples are drawn without a graph and their log-probabilities
recomputed with grad by one teacher-forced pass (:meth:`~analysis.captioning.model.Captioner.sequence_logprobs`:
the same values as the sampler's, about twice as fast to differentiate), then one Adam step (constant ``lr``, gradient norm clipped to
``clip_grad``). Samples are drawn with the model in eval mode (dropout off), so the gradient is that of
the policy that is evaluated. Training runs on :data:`~analysis.scorers.training.TRAIN_THREADS` CPU threads
after :func:`analysis.runtime.seed_all`. ``shuffle_rewards=True`` permutes the rewards across the step's
samples before the baseline: the control run, whose expected update is zero, so it should not raise
the reward.

**Log rows** (one per step): ``step``, ``reward_mean`` / ``reward_sd`` (of the samples, before any
shuffling), ``baseline_mean``, ``advantage_abs``, ``loss``, ``grad_norm``, ``length`` (mean words per
sample), ``empty`` (empty samples), seconds spent sampling / in the reward / in the update, and every
``probe_every`` steps (and after the last step, in a row with ``step = steps``) the greedy captions of a
fixed probe batch of TRAINING images: ``greedy_reward`` (the reward being optimised), ``greedy_cider_d`` (CIDEr-D with the
training document frequencies) and ``greedy_length``; ``None`` in other rows.

:func:`train_scst` caches the result as a checkpoint (:func:`analysis.scorers.training.checkpoint`) under
a recipe of the starting weights' hash, the vocabulary, the data fingerprint, the reward's provenance,
every hyper-parameter, the seed, the device type and the smoke flag; :func:`run_scst` is the uncached loop.
The device defaults to :func:`analysis.runtime.device` (``$STUDY_DEVICE``, else CUDA when visible, else the CPU);
a CPU run's recipe is the same whether the CPU was named or defaulted to.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily
    import torch

SCST_VERSION = 2  # 2: sampled without grad, log-probabilities by one teacher-forced pass. Bump when the loop, the loss or the logging changes: part of every checkpoint recipe


# --------------------------------------------------------------------------- the pieces
def leave_one_out_baseline(rewards, k: int) -> np.ndarray:
    """``b_ij = (Σ_j' r_ij' − r_ij) / (k − 1)`` for rewards laid out image by image (rows ``i·k .. i·k+k−1``).

    >>> leave_one_out_baseline([1.0, 2.0, 3.0, 10.0, 20.0, 30.0], 3)
    array([ 2.5,  2. ,  1.5, 25. , 20. , 15. ])
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    if k < 2:
        raise ValueError(f"the mean-of-others baseline needs k >= 2 samples per image, got k={k}")
    if r.size % k:
        raise ValueError(f"{r.size} rewards do not split into groups of k={k} samples per image")
    g = r.reshape(-1, k)
    return ((g.sum(1, keepdims=True) - g) / (k - 1)).reshape(-1)


def scst_loss(logprobs: "torch.Tensor", mask: "torch.Tensor", advantage: "torch.Tensor") -> "torch.Tensor":
    """``L = −1/N Σ_s a_s Σ_t m_st log p_st`` over ``N`` samples: ``logprobs`` and ``mask`` ``(N, T)``,
    ``advantage`` ``(N,)`` (``r − b``, no gradient).

    >>> import torch
    >>> float(scst_loss(torch.tensor([[-1.0, -2.0], [-0.5, -9.0]]), torch.tensor([[1, 1], [1, 0]]),
    ...                 torch.tensor([1.0, -2.0])))
    1.0
    """
    seq = (logprobs * mask.to(logprobs.dtype)).sum(1)
    return -(advantage.detach().to(seq.dtype) * seq).mean()


@dataclass(frozen=True)
class ScstConfig:
    """Hyper-parameters of one SCST run (all part of the checkpoint recipe)."""

    steps: int
    k: int = 5
    lr: float = 5e-5
    max_len: int = 20
    batch_size: int = 16  # images per step (B); B·k samples
    clip_grad: float = 1.0
    temperature: float = 1.0
    probe_images: int = 32
    probe_every: int = 10
    shuffle_rewards: bool = False

    def check(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.max_len < 1:
            raise ValueError(f"SCST needs steps >= 0, batch_size >= 1 and max_len >= 1: {self}")
        if self.k < 2:
            raise ValueError(f"SCST's mean-of-others baseline needs k >= 2 samples per image, got k={self.k}")
        if self.temperature != 1.0 or self.lr <= 0:
            raise ValueError(f"SCST samples from the policy itself, so temperature must be 1 (the log-probs of the "
                             f"gradient are the model's at temperature 1) and lr positive: {self}")


#: default and smoke hyper-parameters (keyword arguments of :func:`train_scst`). DEFAULT: 200 steps of B 16 images
#: × k 5 samples (3,200 image visits, about 4.3 epochs of the probe's 742 SCST images, ``stamp-scenes-scst``),
#: about 0.4–0.7 s per step on 2 CPU cores, so a run takes 1.5–2.5 minutes (the issue's budget is 5). The learning
#: rate was chosen on the **val** split (103 images) by a rule fixed before its results were seen: the lr whose
#: run raises the held-out score of a VLP reward (clip-mini) most, among those whose CIDEr-D-reward run does not
#: lower held-out CIDEr-D. 200-step runs from the default XE captioner (XE val CIDEr-D 1.066, clip-mini score
#: 0.3557) on the SCST images:
#:
#: ======  =============================  =====================================
#: lr      CIDEr-D reward: val CIDEr-D    clip-mini reward: val score (CIDEr-D)
#: ======  =============================  =====================================
#: 5e-5    1.234                          0.3770 (1.104)
#: 2e-4    1.060                          0.3632 (0.804)
#: 5e-4    1.027                          0.3103 (0.728)
#: ======  =============================  =====================================
#:
#: so lr 5e-5, the same as when SCST ran on the XE training images themselves (CIDEr-D 1.175 / 1.149 / 1.147;
#: clip-mini 0.3562 / 0.3521 / 0.3534: on those images the clip-mini reward did not carry over to new images,
#: which is why the probe moved SCST to fresh images). Earlier exploratory runs had been scored on the test
#: split; they are not used for this choice. The same settings serve every reward, so the systems differ only
#: in what they optimise.
DEFAULT = {"steps": 200, "k": 5, "lr": 5e-5, "batch_size": 16, "max_len": 20, "probe_every": 25, "probe_images": 32}
SMOKE = {"steps": 12, "k": 4, "lr": 1e-4, "batch_size": 8, "max_len": 16, "probe_every": 6, "probe_images": 8}


def config_for(smoke: bool) -> dict:
    """The keyword arguments of :func:`train_scst` for a full (:data:`DEFAULT`) or smoke (:data:`SMOKE`) run.

    >>> config_for(True)["steps"] < config_for(False)["steps"]
    True
    """
    return dict(SMOKE if smoke else DEFAULT)


def stats_delta(before: dict, after: dict) -> dict:
    """The reward's usage counters of one run: ``after − before`` for the counts and seconds (a reward object
    can serve several runs), captions per second recomputed; per-term statistics as ``after`` has them.

    >>> stats_delta({"calls": 2, "captions": 10, "seconds": 1.0}, {"calls": 5, "captions": 40, "seconds": 2.0})
    {'calls': 3, 'captions': 30, 'seconds': 1.0, 'captions_per_second': 30.0}
    """
    out = {k: round(after[k] - before.get(k, 0), 3) if isinstance(after[k], float) else after[k] - before.get(k, 0)
           for k in after if isinstance(after[k], (int, float)) and not isinstance(after[k], bool)
           and k != "captions_per_second"}
    out["captions_per_second"] = round(out["captions"] / out["seconds"], 1) if out.get("seconds") else None
    if "terms" in after:
        out["terms"] = after["terms"]
    return out


def features_of(data) -> "torch.Tensor":
    """The captioner's input features of ``data``: ``data.grid`` (``(n, 49, 1280)``), else ``data.pooled``."""
    import torch

    feats = getattr(data, "grid", None)
    if feats is None:
        feats = getattr(data, "pooled", None)
    if feats is None:
        raise ValueError("data has neither .grid nor .pooled features: build it with caption_data(...)")
    return torch.as_tensor(feats).float()


def data_fingerprint(data) -> str:
    """``data.fingerprint()`` when it has one (:class:`~analysis.captioning.xe.CaptionData`: image file hashes,
    ids, references, feature-cache key), else sha256 over the paths, ids, references and the features' shape
    and sum."""
    if callable(getattr(data, "fingerprint", None)):
        return data.fingerprint()
    h = hashlib.sha256()
    f = features_of(data)
    h.update(json.dumps([[str(p) for p in data.paths], [str(i) for i in getattr(data, "ids", []) or []],
                         [list(r) for r in data.refs], list(f.shape), float(f.double().sum())]).encode())
    return h.hexdigest()


def vocab_fingerprint(vocab) -> str:
    """sha256 of the vocabulary's token list (``words``, or ``itos``, else ``decode([i])`` for each id)."""
    tokens = getattr(vocab, "words", None) or getattr(vocab, "itos", None)
    if tokens is None:
        tokens = [vocab.decode([i]) for i in range(len(vocab))]
    return hashlib.sha256(json.dumps([len(vocab), list(tokens)]).encode()).hexdigest()


# --------------------------------------------------------------------------- the loop
def _decode(vocab, ids: "torch.Tensor") -> list[str]:
    return [vocab.decode(row) for row in ids.tolist()]


def _probe(captioner, vocab, feats, rows, reward, cider, max_len: int) -> dict:
    """Greedy captions of the probe images: the optimised reward, CIDEr-D and length (means)."""
    import torch

    with torch.no_grad():
        ids, _, _ = captioner.sample(feats, 1, max_len, greedy=True, temperature=1.0, generator=None)
    caps = _decode(vocab, ids)
    return {"greedy_reward": float(np.mean(reward(rows, caps))), "greedy_cider_d": float(np.mean(cider(rows, caps))),
            "greedy_length": float(np.mean([len(c.split()) for c in caps]))}


def run_scst(captioner, vocab, data, reward, cfg: ScstConfig, *, seed: int = 0, device: str | None = None,
             progress: bool = True) -> tuple[object, list[dict]]:
    """SCST on ``captioner`` **in place** on ``device`` (uncached; module docstring; default
    :func:`analysis.runtime.device`); returns ``(captioner, rows)``."""
    import torch
    from tqdm.auto import tqdm

    from analysis.captioning.rewards import CiderTerm, Reward
    from analysis.captioning.xe import ImageBatches
    from analysis.runtime import resolve_device, seed_all
    from analysis.runtime import rng as make_rng
    from analysis.scorers.training import TRAIN_THREADS

    device = resolve_device(device)
    cfg.check()
    feats_all = features_of(data)
    n = len(feats_all)
    if len(data.refs) != n:
        raise ValueError(f"data has {n} feature rows but {len(data.refs)} reference lists")
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    # seed_all's deterministic mode also fills new tensors with NaN (to expose reads of uninitialised
    # memory); that only costs time here and changes no result, so it is off during the run (as in XE)
    fill = torch.utils.deterministic.fill_uninitialized_memory
    try:
        fp = (getattr(reward, "extra", None) or {}).get("data_fingerprint")
        if fp is not None and fp != data_fingerprint(data):
            raise ValueError("the reward was built over other data than the SCST data (a subset or another order "
                             "scores captions against the wrong references): build it with make_reward(name, data=data)")
        seed_all(seed)
        torch.utils.deterministic.fill_uninitialized_memory = False
        gen = torch.Generator(device=torch.device(device)).manual_seed(int(seed))
        order, shuffle_rng = ImageBatches(n, seed), make_rng(seed + 1)
        probe_rows = np.sort(make_rng(seed + 2).permutation(n)[:min(cfg.probe_images, n)])
        cider = Reward("cider-d-fast", [(1.0, CiderTerm(data))], label="CIDEr-D", output="cider_d", extra={})
        probe_feats = feats_all[probe_rows].to(device)
        captioner.to(device).eval()
        params = [p for p in captioner.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        rows: list[dict] = []
        blank = {"greedy_reward": None, "greedy_cider_d": None, "greedy_length": None}
        for t in tqdm(range(cfg.steps), desc=f"SCST {getattr(reward, 'name', 'reward')}", unit="step",
                      leave=False, disable=not progress):
            probe = (_probe(captioner, vocab, probe_feats, probe_rows, reward, cider, cfg.max_len)
                     if cfg.probe_every and t % cfg.probe_every == 0 else blank)
            t0 = time.perf_counter()
            idx = order.next(cfg.batch_size)
            feats = feats_all[idx].to(device)
            with torch.no_grad():  # draw without a graph; the log-probabilities come from one parallel pass below
                ids, _, mask = captioner.sample(feats, cfg.k, cfg.max_len, greedy=False,
                                                temperature=cfg.temperature, generator=gen)
            caps = _decode(vocab, ids)
            t1 = time.perf_counter()
            r = np.asarray(reward(np.repeat(idx, cfg.k), caps), dtype=np.float64)
            t2 = time.perf_counter()
            r_used = r[shuffle_rng.permutation(len(r))] if cfg.shuffle_rewards else r
            b = leave_one_out_baseline(r_used, cfg.k)
            logp = captioner.sequence_logprobs(feats, ids, mask, cfg.k)
            adv = torch.as_tensor(r_used - b, dtype=logp.dtype, device=logp.device)
            loss = scst_loss(logp, mask.to(logp.device), adv)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"SCST loss is {loss.item()} at step {t}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad) if params else torch.tensor(0.0)
            opt.step()
            t3 = time.perf_counter()
            rows.append({"step": t, "reward_mean": float(r.mean()), "reward_sd": float(r.std()),
                         "baseline_mean": float(b.mean()), "advantage_abs": float(np.abs(r_used - b).mean()),
                         "loss": float(loss.item()), "grad_norm": float(gn),
                         "length": float(np.mean([len(c.split()) for c in caps])),
                         "empty": int(sum(not c.split() for c in caps)), **probe,
                         "seconds_sample": round(t1 - t0, 4), "seconds_reward": round(t2 - t1, 4),
                         "seconds_update": round(t3 - t2, 4)})
        if cfg.probe_every:
            rows.append({"step": cfg.steps, **_probe(captioner, vocab, probe_feats, probe_rows, reward, cider,
                                                     cfg.max_len)})
    finally:
        captioner.eval()
        torch.set_num_threads(threads)
        torch.utils.deterministic.fill_uninitialized_memory = fill
    return captioner, rows


# --------------------------------------------------------------------------- cached runs
class ScstLog(list):
    """The per-step log rows (a list of dicts) with the checkpoint ``folder`` and its ``meta``."""

    def __init__(self, rows, folder: Path, meta: dict):
        super().__init__(rows)
        self.folder, self.meta = Path(folder), meta

    def frame(self):
        """The rows as a pandas DataFrame (``None`` -> NaN)."""
        import pandas as pd

        return pd.DataFrame(list(self)).astype(float, errors="ignore")


def scst_recipe(captioner, vocab, data, reward, cfg: ScstConfig, *, seed: int, device: str | None = None,
                smoke: bool) -> dict:
    """Everything an SCST checkpoint depends on (module docstring); ``device`` defaults to
    :func:`analysis.runtime.device`."""
    import torch

    from analysis.runtime import resolve_device
    from analysis.scorers.base import state_hash
    from analysis.scorers.training import TRAIN_THREADS

    device = resolve_device(device)
    return {"what": "scst", "version": SCST_VERSION, "init_weights": state_hash(captioner.state_dict()),
            "captioner": type(captioner).__name__, "vocab": vocab_fingerprint(vocab),
            "data": {"fingerprint": data_fingerprint(data), "n_images": len(data.refs),
                     "split": getattr(data, "split", None)},
            "reward": reward.info(), "config": asdict(cfg), "seed": int(seed), "smoke": bool(smoke),
            "device": torch.device(device).type, "threads": TRAIN_THREADS}


def train_scst(captioner, vocab, data, reward, *, steps: int, k: int = 5, lr: float = 5e-5, max_len: int = 20,
               seed: int = 0, device: str | None = None, batch_size: int = 16, clip_grad: float = 1.0,
               temperature: float = 1.0, probe_images: int = 32, probe_every: int = 10,
               shuffle_rewards: bool = False, smoke: bool = False, progress: bool = True) -> tuple[object, ScstLog]:
    """SCST from ``captioner`` (left untouched: a copy is trained) with ``reward``, cached by recipe.

    Returns ``(trained copy, log)``; ``log`` is a :class:`ScstLog` of per-step rows with ``.folder`` (the
    checkpoint) and ``.meta``. A second call with the same recipe loads the checkpoint and the log. Trains and
    returns the copy on ``device`` (default :func:`analysis.runtime.device`).
    """
    from analysis.runtime import resolve_device
    from analysis.scorers import training

    device = resolve_device(device)
    cfg = ScstConfig(steps=steps, k=k, lr=lr, max_len=max_len, batch_size=batch_size, clip_grad=clip_grad,
                     temperature=temperature, probe_images=probe_images, probe_every=probe_every,
                     shuffle_rewards=shuffle_rewards)
    cfg.check()
    recipe = scst_recipe(captioner, vocab, data, reward, cfg, seed=seed, device=device, smoke=smoke)

    def train():
        t0 = time.perf_counter()
        before = reward.stats() if hasattr(reward, "stats") else None
        model, rows = run_scst(copy.deepcopy(captioner), vocab, data, reward, cfg, seed=seed, device=device,
                               progress=progress)
        return model, {"rows": rows, "seconds": round(time.perf_counter() - t0, 2), "steps": cfg.steps,
                       "reward_stats": stats_delta(before, reward.stats()) if before is not None else None}

    folder = training.checkpoint(f"scst-{getattr(reward, 'name', 'reward')}", recipe, train)
    out = copy.deepcopy(captioner)
    training.load_checkpoint(out, folder)
    meta = training.read_meta(folder)
    return out.to(device).eval(), ScstLog(meta["log"]["rows"], folder, meta)
