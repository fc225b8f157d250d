"""``--device`` / ``$STUDY_DEVICE`` reaches every trainer and scorer a page uses, CPU cache keys are what they were,
and a device this machine lacks is a clear error before anything is built.

No GPU is needed: "CUDA" is faked where a test needs it (``torch.cuda.is_available`` / ``device_count``
patched), and nothing is ever put on it: the builders are spied on (the ``device`` they receive, the recipe
they would cache under, ``nn.Module.to`` recording its target and leaving the module where it is), and each
spy stops the run before any CUDA tensor would be made.
"""
from __future__ import annotations

import doctest
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from analysis import runtime


class Stop(Exception):
    """Raised by a spy once it has seen what it was waiting for (nothing after it should run)."""


@pytest.fixture
def cpu_only(monkeypatch):
    """A machine without a GPU and no $STUDY_DEVICE: the default device is the CPU."""
    monkeypatch.delenv("STUDY_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def fake_cuda(monkeypatch):
    """One (pretend) CUDA GPU and ``$STUDY_DEVICE=cuda``, as ``--device cuda`` sets it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("STUDY_DEVICE", "cuda")


@pytest.fixture
def module_moves(monkeypatch):
    """Every ``nn.Module.to(<device>)`` target, as ``(module, device string)``. A move to another device than the
    CPU is only recorded (the module stays on the CPU); dtype conversions and CPU moves run as usual."""
    seen = []
    real_to = nn.Module.to

    def to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, (str, torch.device)):
            seen.append((self, str(target)))
            if torch.device(target).type != "cpu":
                return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", to)
    return seen


def _spy_checkpoint(monkeypatch):
    """Replace the checkpoint cache with a spy: it keeps the recipe and stops before anything is trained."""
    from analysis.scorers import training

    recipes = []

    def checkpoint(name, recipe, train, save=None):
        recipes.append((name, recipe))
        raise Stop(name)

    monkeypatch.setattr(training, "checkpoint", checkpoint)
    return recipes


def _caption_data(tmp_path):
    """A two-image training split with small random features (files exist only for the fingerprint)."""
    from analysis.captioning import xe

    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.bin"
        p.write_bytes(bytes([i]) * 16)
        paths.append(p)
    grid = torch.randn(2, 49, 1280, generator=torch.Generator().manual_seed(0))
    return xe.CaptionData(grid=grid, pooled=grid.mean(1), refs=[["a red ball"], ["a cat on the grass", "a cat"]],
                          paths=paths, ids=["s:0", "s:1"], graphs=[None, None], dataset=["synthetic"] * 2,
                          split="train", features_key="synthetic")


# ----------------------------------------------------------------------------- resolving the device
def test_the_study_device_comes_from_the_environment_then_the_machine(monkeypatch, cpu_only):
    assert runtime.resolve_device() == "cpu"
    monkeypatch.setenv("STUDY_DEVICE", "cpu")
    assert runtime.resolve_device() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("STUDY_DEVICE")
    assert runtime.resolve_device() == "cuda"  # a visible GPU is the default
    monkeypatch.setenv("STUDY_DEVICE", "cuda:1")
    assert runtime.resolve_device() == "cuda:1"  # the name is kept as given
    assert runtime.resolve_device("cpu") == "cpu"  # an explicit argument wins over $STUDY_DEVICE


def test_doctests_of_the_device_helpers():
    from analysis.scorers import training

    for module in (runtime, training):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, (module.__name__, result)


# ----------------------------------------------------------------------------- (c) unusable devices
def test_cuda_without_a_gpu_is_a_clear_error(cpu_only, monkeypatch):
    with pytest.raises(runtime.DeviceUnavailable) as e:
        runtime.resolve_device("cuda")
    assert "'cuda'" in str(e.value) and "no CUDA GPU" in str(e.value) and "--device cpu" in str(e.value)
    monkeypatch.setenv("STUDY_DEVICE", "cuda")
    with pytest.raises(runtime.DeviceUnavailable, match=r"STUDY_DEVICE"):
        runtime.resolve_device()


def test_a_gpu_index_past_the_last_gpu_names_the_ones_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(runtime.DeviceUnavailable, match=r"1 CUDA GPU\(s\): cuda:0\.\.cuda:0"):
        runtime.resolve_device("cuda:3")


def test_a_malformed_device_name_lists_the_valid_forms():
    with pytest.raises(ValueError, match="cpu, cuda, cuda:N, mps") as e:
        runtime.resolve_device("gpu")
    assert "'gpu'" in str(e.value)


def test_mps_where_there_is_none_is_a_clear_error():
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(runtime.DeviceUnavailable, match="MPS"):
        runtime.resolve_device("mps")


def test_an_unusable_study_device_stops_training_before_it_starts(tmp_path, cpu_only, monkeypatch):
    from analysis.captioning import xe

    recipes = _spy_checkpoint(monkeypatch)
    data = _caption_data(tmp_path)
    monkeypatch.setenv("STUDY_DEVICE", "cuda")
    with pytest.raises(runtime.DeviceUnavailable, match="STUDY_DEVICE"):
        xe.train_xe(data, smoke=True)
    assert recipes == []  # nothing was trained or looked up


# ----------------------------------------------------------------------------- (b) CPU cache keys
def test_xe_recipe_on_the_cpu_is_the_same_named_or_defaulted(tmp_path, cpu_only, monkeypatch):
    from analysis.captioning import xe

    data = _caption_data(tmp_path)
    cfg = xe.config_for(True)
    named = xe.xe_recipe(cfg, data, seed=0, smoke=True, device="cpu")
    assert named["device"] == "cpu"
    assert xe.xe_recipe(cfg, data, seed=0, smoke=True) == named
    monkeypatch.setenv("STUDY_DEVICE", "cpu")
    assert xe.xe_recipe(cfg, data, seed=0, smoke=True) == named
    # train_xe looks the checkpoint up under exactly that recipe
    recipes = _spy_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        xe.train_xe(data, smoke=True)
    assert recipes == [(xe.NAME, named)]


def _scst_parts(tmp_path):
    from analysis.captioning.model import Captioner, CaptionerConfig, Vocab

    data = _caption_data(tmp_path)
    vocab = Vocab.build([r for refs in data.refs for r in refs])
    torch.manual_seed(0)
    captioner = Captioner(vocab, CaptionerConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=8))
    return data, vocab, captioner


def test_scst_recipe_and_reward_on_the_cpu_are_the_same_named_or_defaulted(tmp_path, cpu_only, monkeypatch):
    from analysis.captioning import scst
    from analysis.captioning.rewards import make_reward

    data, vocab, captioner = _scst_parts(tmp_path)
    named_reward = make_reward("cider-d-fast", data=data, device="cpu")
    default_reward = make_reward("cider-d-fast", data=data)
    assert default_reward.info() == named_reward.info() and named_reward.info()["device"] == "cpu"
    cfg = scst.ScstConfig(**scst.config_for(True))
    named = scst.scst_recipe(captioner, vocab, data, named_reward, cfg, seed=0, device="cpu", smoke=True)
    assert named["device"] == "cpu"
    assert scst.scst_recipe(captioner, vocab, data, default_reward, cfg, seed=0, smoke=True) == named
    recipes = _spy_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        scst.train_scst(captioner, vocab, data, default_reward, smoke=True, progress=False, **scst.config_for(True))
    assert recipes[0][1] == named


def _stand_in_recipes(name: str, monkeypatch):
    """``(the smoke stand-in's base recipe, the recipes training.checkpoint was asked for)`` when ``name`` trains."""
    from analysis.scorers import standins, training, validation

    spec = standins.SPECS[name]
    cfg = standins.config_for(spec, True)
    ts = training.training_set(smoke=True, seed=0, hard_per_kind=cfg.hard_per_kind)
    before = training.base_recipe(cfg, ts, seed=0, smoke=True, val=validation.val_set(cfg, smoke=True, seed=0))
    recipes = _spy_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        standins.trained(spec, smoke=True, seed=0)
    return before, recipes


def test_stand_in_checkpoint_recipe_on_the_cpu_has_no_device_entry(cpu_only, monkeypatch):
    """A stand-in trained on the CPU is looked up under the recipe it always had (no device field), so the
    checkpoints already in the cache still hit."""
    before, recipes = _stand_in_recipes("clip-mini", monkeypatch)
    assert recipes == [("clip-mini", before)] and "device" not in before


def test_generation_cache_key_follows_the_models_own_device(fake_cuda):
    """A generator whose weights are on the CPU feeds its inputs there and keys its cache as a CPU run, whatever
    $STUDY_DEVICE says."""
    from analysis.captioning.retrieval import Decoding, HFGenerator, _caption_recipe

    gen = HFGenerator(nn.Linear(2, 2), None, kind="causal", name="tiny", model_hash="h")
    assert gen.device == "cpu" and _caption_recipe(gen, "prompt", Decoding())["device"] == "cpu"


# ----------------------------------------------------------------------------- (a) the device reaches the builders
def test_xe_and_scst_train_under_a_device_recipe_on_the_study_device(tmp_path, fake_cuda, monkeypatch):
    from analysis.captioning import scst, xe
    from analysis.captioning.rewards import make_reward

    data, vocab, captioner = _scst_parts(tmp_path)
    recipes = _spy_checkpoint(monkeypatch)
    with pytest.raises(Stop):
        xe.train_xe(data, smoke=True)
    reward = make_reward("cider-d-fast", data=data)
    assert reward.info()["device"] == "cuda"
    with pytest.raises(Stop):
        scst.train_scst(captioner, vocab, data, reward, smoke=True, progress=False, **scst.config_for(True))
    assert [(n, r["device"]) for n, r in recipes] == [(xe.NAME, "cuda"), ("scst-cider-d-fast", "cuda")]


def test_a_loaded_captioner_goes_to_the_study_device(tmp_path, fake_cuda, module_moves):
    from analysis.captioning import xe

    _, _, captioner = _scst_parts(tmp_path)
    xe._save(captioner, tmp_path, {"log": {}})
    model = xe.load_captioner(tmp_path)
    assert (model, "cuda") in module_moves


def test_stand_in_trains_under_a_device_recipe_on_the_study_device(fake_cuda, monkeypatch):
    before, recipes = _stand_in_recipes("uniter-mini", monkeypatch)
    assert recipes == [("uniter-mini", {**before, "device": "cuda"})]


def test_registry_stand_in_is_built_and_scores_on_the_study_device(tmp_path, fake_cuda, module_moves, monkeypatch):
    from analysis import towers
    from analysis.registry import get_scorer
    from analysis.scorers import standins

    asked = []

    def trained(spec, *, smoke, seed, device=None, **overrides):
        asked.append(device)
        (tmp_path / "model.safetensors").write_bytes(b"weights")
        return spec.make_net(standins.config_for(spec, smoke)), tmp_path, {"log": {"seconds": 1.0}}

    real_text_tower = towers.text_tower
    towers_asked = []

    def text_tower(device=None):  # records the device asked for and computes on the CPU
        towers_asked.append(device)
        return real_text_tower("cpu")

    monkeypatch.setattr(standins, "trained", trained)
    monkeypatch.setattr(towers, "text_tower", text_tower)
    scorer = get_scorer("clip-mini", smoke=True)
    assert asked == ["cuda"] and scorer.device == "cuda" and (scorer.net, "cuda") in module_moves
    emb = scorer.encode_text(["a red ball", "a cat"])
    assert isinstance(emb, np.ndarray) and emb.shape[0] == 2
    assert towers_asked and set(towers_asked) == {"cuda"}


def test_registry_passes_a_given_device_to_every_scorer_and_none_by_default(monkeypatch):
    from analysis import registry

    calls = []
    for name, source in (("spy-embedded", "embedded"), ("spy-published", "published")):
        monkeypatch.setitem(registry.SCORERS._entries, name, registry.Entry(
            name, lambda _n=name, **kw: calls.append((_n, kw)), "", {"source": source}))
    registry.build_scorer("spy-embedded", smoke=True, seed=1)
    registry.build_scorer("spy-embedded", smoke=True, seed=1, device="cuda:1")
    registry.build_scorer("spy-published", smoke=True, seed=1)
    registry.build_scorer("spy-published", smoke=True, seed=1, device="cpu")
    assert calls == [("spy-embedded", {"smoke": True, "seed": 1}),
                     ("spy-embedded", {"smoke": True, "seed": 1, "device": "cuda:1"}),
                     ("spy-published", {}), ("spy-published", {"device": "cpu"})]


def test_published_scorers_default_to_the_study_device(fake_cuda, module_moves):
    from analysis.scorers.clip import OpenClipScorer
    from analysis.scorers.single_stream import HFMatchScorer

    model = nn.Linear(2, 2)
    clip = OpenClipScorer(model, None, SimpleNamespace(context_length=77), name="clip:x", label="x", pretrained="x")
    assert clip.device == "cuda" and (model, "cuda") in module_moves

    class Match(HFMatchScorer):
        def _score_batch(self, images, captions):  # pragma: no cover - never scored here
            return np.zeros(len(captions))

    other = nn.Linear(2, 2)
    match = Match(other, None, name="vilt:x", pretrained="x", output="itm_logit", max_text_tokens=8)
    assert match.device == "cuda" and (other, "cuda") in module_moves


def test_rewards_build_their_scorers_on_the_study_device(fake_cuda, monkeypatch):
    from analysis import registry
    from analysis.captioning.rewards import make_reward

    seen = []

    def build_scorer(name, **kw):
        seen.append((name, kw.get("device")))
        raise Stop(name)

    monkeypatch.setattr(registry, "build_scorer", build_scorer)
    data = SimpleNamespace(paths=["a.png", "b.png"], ids=[0, 1], refs=[["a red ball"], ["a cat"]],
                           grid=torch.zeros(2, 1, 4), split="train")
    with pytest.raises(Stop):
        make_reward("clip-mini", data=data, smoke=True)
    with pytest.raises(Stop):
        make_reward("mix:uniter-mini", data=data, lam=0.5, smoke=True, device="cpu")
    assert seen == [("clip-mini", "cuda"), ("uniter-mini", "cpu")]


def test_probe_setup_and_its_scorers_follow_the_study_device(fake_cuda, monkeypatch):
    from analysis import probe, registry

    setups, scorers = [], []
    monkeypatch.setattr(probe, "_setup", lambda smoke, seed, device: setups.append(device) or "setup")
    assert probe.setup(True, 0) == "setup" and setups == ["cuda"]
    monkeypatch.setattr(registry, "build_scorer", lambda name, **kw: scorers.append(kw) or object())
    s = probe.Setup(None, None, None, None, None, Path("."), [], True, 0, "cuda")
    probe.scorer_of(s, "clip-mini")
    assert scorers == [{"smoke": True, "seed": 0, "device": "cuda"}]


def test_the_language_model_and_generator_load_on_the_study_device(monkeypatch):
    from analysis import fluency
    from analysis.captioning import guided, retrieval

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("STUDY_DEVICE", "cuda:0")
    loaded = []
    monkeypatch.setattr(fluency, "_load_lm", lambda device: loaded.append(device) or ("model", "tokenizer"))
    assert fluency.load_lm() == ("model", "tokenizer") and loaded == ["cuda:0"]

    asked = []

    def load_lm(device=None):
        asked.append(device)
        raise Stop("load_lm")

    monkeypatch.setattr(fluency, "load_lm", load_lm)
    for make in (lambda: fluency.caption_logprobs(["a cat"]), lambda: retrieval.load_generator(),
                 lambda: retrieval.RetrievalCaptioner(_store()).generator, lambda: guided.LMPrior()):
        with pytest.raises(Stop):
            make()
    assert asked == ["cuda:0"] * 4


def _store():
    from analysis.captioning.retrieval import Datastore

    return Datastore(("a cat",), np.ones((1, 2)) / np.sqrt(2), "spy", "key")


def test_speed_page_mappers_train_on_the_study_device(fake_cuda, monkeypatch):
    """run_speed hands the study device to the gradient mappers (run here on the CPU) and reports it."""
    from analysis import mappers

    real_fit, seen = mappers._fit, []

    def fit(*args, device, **kwargs):
        seen.append(device)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the optimiser runs for real, on the CPU
        return real_fit(*args, device="cpu", **kwargs)

    monkeypatch.setattr(mappers, "_fit", fit)
    g = np.random.default_rng(0)
    x, y, xe, ye = (g.standard_normal((n, 4)).astype(np.float32) for n in (32, 32, 8, 8))
    df = mappers.run_speed(x, y, xe, ye, methods=("procrustes",), gradient=("linear", "mlp"), max_epochs=1,
                           repeats=1, hidden=4, progress=False)
    assert seen == ["cuda", "cuda"] and set(df["device"]) == {"cuda"}


def test_speed_page_mappers_on_the_cpu_record_the_cpu(cpu_only):
    from analysis import mappers

    g = np.random.default_rng(0)
    x, y, xe, ye = (g.standard_normal((n, 4)).astype(np.float32) for n in (32, 32, 8, 8))
    _, log = mappers.train_linear_map(x, y, x_eval=xe, y_eval=ye, max_epochs=1, progress=False)
    assert log.settings["device"] == "cpu"
