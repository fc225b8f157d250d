"""SCST (analysis.captioning.scst): the mean-of-others baseline, the loss, that SCST raises the reward it
optimises while a shuffled-reward control does not, determinism and the cached checkpoint.

The policy here is a stand-in defined in this file ("table policy"): per image a categorical over a few
fixed token sequences, ``p(c | image i) = softmax(W e_i)_c`` with ``e_i`` the one-hot feature of image
``i``; it implements the captioner's ``sample(feats, k, max_len, *, greedy, temperature, generator)``
contract, and its expected reward ``Σ_c p(c | i) r(i, c)`` and its optimum ``max_c r(i, c)`` are known
exactly, so the tests need no sampling noise to judge a run.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from analysis.captioning import scst
from analysis.captioning.rewards import make_reward

WORDS = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "the", "red", "blue", "green", "ball", "cat", "tree", "on", "grass"]
CANDIDATES = ["a red ball", "a blue cat", "a green tree", "the cat on the grass", "a ball", "ball ball ball"]
REFS = [["a red ball", "the red ball on the grass"], ["a blue cat", "the blue cat"],
        ["a green tree", "the green tree on the grass"], ["the cat on the grass", "a cat on grass"],
        ["a red ball", "a ball on the grass"], ["a blue cat on the grass", "the blue cat on grass"]]


class TinyVocab:
    """Word-level vocabulary with the captioner's specials (<pad>=0 <bos>=1 <eos>=2 <unk>=3)."""

    itos = WORDS

    def __len__(self):
        return len(WORDS)

    def encode(self, caption):
        return [WORDS.index(w) for w in caption.split()] + [2]

    def decode(self, ids):
        out = []
        for i in ids:
            if i == 2:
                break
            if i > 3:
                out.append(WORDS[i])
        return " ".join(out)


class TablePolicy(nn.Module):
    """Stand-in policy: a per-image categorical over ``CANDIDATES`` (module docstring)."""

    def __init__(self, n_images: int, vocab: TinyVocab):
        super().__init__()
        self.table = nn.Linear(n_images, len(CANDIDATES), bias=False)
        nn.init.zeros_(self.table.weight)  # uniform start
        seqs = [vocab.encode(c) for c in CANDIDATES]
        T = max(map(len, seqs))
        self.register_buffer("ids", torch.tensor([s + [0] * (T - len(s)) for s in seqs]))
        self.register_buffer("mask", torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs]).bool())

    def probs(self, feats):
        return torch.softmax(self.table(feats[:, 0]), -1)

    def sample(self, feats, k, max_len, *, greedy=False, temperature=1.0, generator=None):
        logp = torch.log_softmax(self.table(feats[:, 0]) / temperature, -1)
        if greedy:
            choice = logp.argmax(-1, keepdim=True).expand(-1, k)
        else:
            choice = torch.multinomial(logp.exp(), k, replacement=True, generator=generator)
        rows = torch.arange(len(feats)).repeat_interleave(k)
        choice = choice.reshape(-1)
        lp = logp[rows, choice]  # the whole sequence's log-probability, put on its first token
        ids, mask = self.ids[choice, :max_len], self.mask[choice, :max_len]
        tok_lp = torch.cat([lp[:, None], torch.zeros(len(lp), ids.shape[1] - 1)], 1)
        return ids, tok_lp, mask

    def sequence_logprobs(self, feats, ids, mask, k):
        """The log-probability of given rows (as :meth:`sample` puts it: on the first token), temperature 1."""
        logp = torch.log_softmax(self.table(feats[:, 0]), -1)
        rows = torch.arange(len(feats)).repeat_interleave(k)
        choice = torch.stack([(self.ids[:, :ids.shape[1]] == r).all(1).nonzero()[0, 0] for r in ids])
        lp = logp[rows, choice]
        return torch.cat([lp[:, None], torch.zeros(len(lp), ids.shape[1] - 1)], 1)


@pytest.fixture(scope="module")
def setup():
    n = len(REFS)
    data = SimpleNamespace(paths=[f"image-{i}.png" for i in range(n)], ids=list(range(n)), refs=REFS,
                           grid=torch.eye(n)[:, None, :], split="train")
    reward = make_reward("cider-d-fast", data=data)
    table = np.array([[reward(np.array([i]), [c])[0] for c in CANDIDATES] for i in range(n)])
    return data, TinyVocab(), reward, table


def expected_reward(policy, data, table) -> float:
    """``1/n Σ_i Σ_c p(c | i) r(i, c)`` exactly."""
    with torch.no_grad():
        return float((policy.probs(data.grid).numpy() * table).sum(1).mean())


FAST = dict(steps=30, k=4, lr=0.1, max_len=8, batch_size=6, probe_images=6, probe_every=10)


def run(setup, seed=0, **kw):
    data, vocab, reward, _ = setup
    cfg = scst.ScstConfig(**{**FAST, **kw})
    return scst.run_scst(TablePolicy(len(REFS), vocab), vocab, data, reward, cfg, seed=seed, progress=False)


def test_leave_one_out_baseline_by_hand():
    # image 1: rewards 0, 4, 8 -> baselines (4+8)/2, (0+8)/2, (0+4)/2; image 2: 1, 1, 7 -> 4, 4, 1
    b = scst.leave_one_out_baseline([0.0, 4.0, 8.0, 1.0, 1.0, 7.0], 3)
    np.testing.assert_allclose(b, [6.0, 4.0, 2.0, 4.0, 4.0, 1.0])
    with pytest.raises(ValueError, match="k >= 2"):
        scst.leave_one_out_baseline([1.0, 2.0], 1)
    with pytest.raises(ValueError, match="groups of k=3"):
        scst.leave_one_out_baseline([1.0, 2.0], 3)


def test_loss_is_advantage_weighted_sequence_logprob_mean_over_samples():
    # sample 1: log p = -1 - 2 = -3, advantage 2; sample 2: log p = -0.5 (second token masked), advantage -1
    # L = -(2·(-3) + (-1)·(-0.5)) / 2 = 2.75
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -100.0]], requires_grad=True)
    loss = scst.scst_loss(logp, torch.tensor([[1, 1], [1, 0]]), torch.tensor([2.0, -1.0]))
    assert loss.item() == pytest.approx(2.75)
    loss.backward()  # dL/dlogp = -a·m/N
    np.testing.assert_allclose(logp.grad.numpy(), [[-1.0, -1.0], [0.5, 0.0]])


def test_scst_raises_the_reward_it_optimises(setup):
    data, vocab, _, table = setup
    start = expected_reward(TablePolicy(len(REFS), vocab), data, table)
    best = float(table.max(1).mean())
    policy, rows = run(setup)
    after = expected_reward(policy, data, table)
    assert after - start > 0.7 * (best - start), (start, after, best)
    # the log agrees: the sampled and the greedy reward rise
    assert np.mean([r["reward_mean"] for r in rows[-5:-1]]) > np.mean([r["reward_mean"] for r in rows[:4]]) + 1.0
    probes = [r for r in rows if r.get("greedy_reward") is not None]
    assert probes[-1]["step"] == FAST["steps"] and probes[-1]["greedy_reward"] > probes[0]["greedy_reward"] + 1.0


def test_shuffled_reward_control_does_not_raise_it(setup):
    data, vocab, _, table = setup
    start = expected_reward(TablePolicy(len(REFS), vocab), data, table)
    best = float(table.max(1).mean())
    gains = [expected_reward(run(setup, seed=s, shuffle_rewards=True)[0], data, table) - start for s in (0, 1)]
    assert max(abs(g) for g in gains) < 0.25 * (best - start), (gains, best - start)


def test_same_seed_same_run_other_seed_other_run(setup):
    p1, r1 = run(setup, seed=3, steps=8)
    p2, r2 = run(setup, seed=3, steps=8)
    p3, r3 = run(setup, seed=4, steps=8)
    timing = ("seconds_sample", "seconds_reward", "seconds_update")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(r1) == strip(r2)
    assert torch.equal(p1.table.weight, p2.table.weight)
    assert not torch.equal(p1.table.weight, p3.table.weight)


def test_train_scst_is_cached_by_recipe(setup, tmp_cache):
    data, vocab, reward, _ = setup
    policy = TablePolicy(len(REFS), vocab)
    kw = dict(steps=5, k=3, lr=0.1, max_len=8, batch_size=6, probe_every=0, seed=0, progress=False)
    m1, log1 = scst.train_scst(policy, vocab, data, reward, **kw)
    assert torch.count_nonzero(policy.table.weight) == 0  # the starting model is left untouched
    calls = []
    policy.sample = lambda *a, **k: calls.append(1)  # a cache hit never samples
    m2, log2 = scst.train_scst(policy, vocab, data, reward, **kw)
    assert not calls and log2.folder == log1.folder and list(log2) == list(log1)
    assert torch.equal(m1.table.weight, m2.table.weight) and torch.count_nonzero(m1.table.weight) > 0
    assert log1.meta["recipe"]["reward"]["reward"] == "cider-d-fast" and log1.meta["recipe"]["config"]["k"] == 3
    del policy.sample
    _, log3 = scst.train_scst(policy, vocab, data, reward, **{**kw, "seed": 1})
    assert log3.folder != log1.folder


def test_bad_settings_are_refused(setup):
    with pytest.raises(ValueError, match="k >= 2"):
        run(setup, k=1)


@pytest.fixture(scope="module")
def real_data():
    """Six images of the smoke training split (built from the normal cache, before tmp_cache applies)."""
    from analysis.captioning.xe import caption_data

    return caption_data("train", smoke=True).subset([0, 1, 2, 24, 25, 26])


def test_with_the_real_captioner(real_data, tmp_cache):
    """The real Captioner (tiny, untrained) through train_scst: rows, cache, and the starting model kept."""
    from analysis.captioning.model import Captioner, CaptionerConfig, Vocab

    data = real_data
    vocab = Vocab.build(r for refs in data.refs for r in refs)
    torch.manual_seed(0)
    model = Captioner(vocab, CaptionerConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=8)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reward = make_reward("cider-d-fast", data=data)
    kw = dict(steps=3, k=2, lr=1e-3, max_len=8, batch_size=3, probe_images=6, probe_every=2, seed=0, progress=False)
    trained, log = scst.train_scst(model, vocab, data, reward, **kw)
    assert [r["step"] for r in log] == [0, 1, 2, 3] and log[0]["greedy_cider_d"] is not None
    assert all(np.isfinite(r["loss"]) and r["length"] <= 8 for r in log[:3])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in trained.state_dict().items())
    again, log2 = scst.train_scst(model, vocab, data, reward, **kw)
    assert log2.folder == log.folder and all(torch.equal(v, again.state_dict()[k])
                                             for k, v in trained.state_dict().items())


def test_doctests():
    import doctest

    result = doctest.testmod(scst, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0, result


def test_presets_are_valid_configs_and_smoke_is_smaller():
    from analysis.captioning import scst

    for smoke in (True, False):
        kw = scst.config_for(smoke)
        scst.ScstConfig(**kw).check()  # every preset passes the same checks a run makes
    small, full = scst.config_for(True), scst.config_for(False)
    assert small["steps"] < full["steps"] and small["batch_size"] <= full["batch_size"]
    assert full["k"] >= 2 and scst.config_for(True) is not scst.SMOKE  # a copy: callers may change it
