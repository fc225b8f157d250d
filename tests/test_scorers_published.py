"""Published-checkpoint scorer paths (clip:, vilt:, lxmert:, blip-itm:) on tiny random models.

Each model is saved in the real on-disk format (``tiny_published``) and loaded
through ``analysis.registry.get_scorer`` exactly as a real user would; the tests
check that the saved weights are the ones used, that scores are the documented
numbers, that truncation is counted, that a model loaded from a path is ``local`` (only
a released tag is ``published``) and relative paths are resolved where they are typed,
that missing weights fail fast with a message that says where to put them, and that a
damaged weights file is one message naming the file, what was expected and what to do.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import tiny_published as tp
from analysis.registry import get_scorer
from analysis.scorers import absolute_name
from analysis.scorers import clip as clip_mod
from analysis.scorers.base import BadWeightsFile, WeightsUnavailable, state_hash

IMAGES = tp.images(4)
CAPTIONS = tp.CAPTIONS[:4]


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """Empty study weights folder, hub cache and home: nothing published can be found."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("STUDY_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "weights"


# --------------------------------------------------------------------------- spec syntax
@pytest.mark.parametrize("spec, expected", [
    ("ViT-B-32/openai", ("tag", "ViT-B-32", "openai")),
    ("ViT-B-32//data/ckpt/model.bin", ("path", "ViT-B-32", "/data/ckpt/model.bin")),
    ("ViT-B-32/./ckpt/epoch_32.pt", ("path", "ViT-B-32", "./ckpt/epoch_32.pt")),
    ("ViT-B-32/model.safetensors", ("path", "ViT-B-32", "model.safetensors")),
    ("local-dir:/data/clip", ("local-dir", "local-dir:/data/clip", "/data/clip")),
    ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
     ("hf-hub", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K")),
])
def test_clip_spec_separates_arch_from_tag_or_path(spec, expected):
    assert clip_mod.parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["clip:ViT-B-32", "clip:ViT-B-32/", "clip:No-Such-Arch/openai",
                                  "clip:ViT-B-32/no_such_tag"])
def test_clip_bad_spec_is_a_value_error(spec):
    with pytest.raises(ValueError):
        get_scorer(spec)


# --------------------------------------------------------------------------- clip:
def _direct_cosine(model, preprocess, tokenizer, images, captions):
    """Cosine computed straight from an open_clip model, independent of the scorer."""
    with torch.no_grad():
        u = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        v = model.encode_text(tokenizer(captions), normalize=True)
    return (u * v).sum(-1).numpy()


def test_clip_checkpoint_file_loads_the_saved_weights(tmp_path):
    import open_clip

    path = tp.clip_checkpoint(tmp_path)
    scorer = get_scorer(f"clip:{tp.CLIP_ARCH}/{path}")  # absolute path: "<arch>//tmp/..."
    saved = torch.load(path, weights_only=True)
    assert scorer.checkpoint_hash == state_hash(saved)
    assert (scorer.family, scorer.source, scorer.output, scorer.pretrained) == ("dual", "local", "cosine",
                                                                                   str(path))
    assert "local" in scorer.label and "published" not in scorer.label
    model, _, preprocess = open_clip.create_model_and_transforms(tp.CLIP_ARCH, pretrained=str(path))
    expected = _direct_cosine(model.eval(), preprocess, open_clip.get_tokenizer(tp.CLIP_ARCH), IMAGES, CAPTIONS)
    np.testing.assert_allclose(scorer.score(IMAGES, CAPTIONS), expected, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")  # OpenAI's format is TorchScript
def test_clip_torchscript_archive_is_converted_not_unpickled(tmp_path, monkeypatch):
    import open_clip

    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))
    path = tp.clip_checkpoint(tmp_path)
    model = open_clip.create_model(tp.CLIP_ARCH, pretrained=str(path)).eval()
    torch.jit.save(torch.jit.script(model), tmp_path / "ViT-tiny.pt")  # the format of OpenAI's original files
    assert clip_mod.is_torchscript(tmp_path / "ViT-tiny.pt") and not clip_mod.is_torchscript(path)
    scorer = get_scorer(f"clip:{tp.CLIP_ARCH}/{tmp_path / 'ViT-tiny.pt'}")
    assert scorer.checkpoint_hash == state_hash(torch.load(path, weights_only=True))


def test_clip_tag_is_found_in_the_study_weights_folder(tmp_path, monkeypatch, no_weights_anywhere):
    import open_clip
    from open_clip.transformer import QuickGELU

    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, tp.CLIP_ARCH,
                        {"tinytag": {"hf_hub": "nobody/tiny/", "mean": (0.5,) * 3, "std": (0.5,) * 3,
                                     "quick_gelu": True}})
    tp.register_clip_arch(tmp_path)
    folder = clip_mod.tag_folder(tp.CLIP_ARCH, "tinytag")
    assert folder.is_relative_to(no_weights_anywhere)
    path = tp.clip_checkpoint(folder)
    scorer = get_scorer(f"clip:{tp.CLIP_ARCH}/tinytag")
    assert scorer.source == "published"
    assert scorer.pretrained == "tinytag" and scorer.checkpoint_hash == state_hash(torch.load(path, weights_only=True))
    assert any(isinstance(m, QuickGELU) for m in scorer.model.modules()), "the tag's QuickGELU must be applied"
    assert tuple(scorer.model.visual.preprocess_cfg["mean"]) == (0.5, 0.5, 0.5)


def test_clip_local_dir_folder_loads(tmp_path):
    folder = tp.clip_local_dir(tmp_path / "oc")
    scorer = get_scorer(f"clip:local-dir:{folder}")
    assert (scorer.source, scorer.pretrained) == ("local", str(folder))
    assert scorer.checkpoint_hash == state_hash(torch.load(folder / "open_clip_pytorch_model.bin",
                                                           weights_only=True))
    assert np.isfinite(scorer.score(IMAGES, CAPTIONS)).all()


@pytest.mark.parametrize("spec", ["clip:ViT-B-32/openai", "clip:ViT-B-32/laion2b_s34b_b79k"])
def test_clip_missing_tag_fails_fast_and_says_where(spec, no_weights_anywhere):
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as err:
        get_scorer(spec)
    assert time.perf_counter() - t0 < 5
    msg, tag = str(err.value), spec.split("/")[-1]
    assert spec in msg and str(no_weights_anywhere / "open_clip" / "ViT-B-32" / tag) in msg
    assert "clip:ViT-B-32//" in msg


@pytest.mark.parametrize("spec", ["clip:ViT-B-32//no/such/file.bin", "clip:local-dir:/no/such/folder",
                                  "clip:hf-hub:nobody/no-such-repo"])
def test_clip_missing_path_fails_fast(spec, no_weights_anywhere):
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable):
        get_scorer(spec)
    assert time.perf_counter() - t0 < 5


def test_clip_truncation_is_counted_at_77_tokens(tmp_path):
    scorer = get_scorer(f"clip:{tp.CLIP_ARCH}/{tp.clip_checkpoint(tmp_path)}")
    assert scorer.max_text_tokens == 77
    fits, over = "a " * 75, "a " * 76  # 75 + start + end = 77 tokens; 78 tokens
    scorer.reset_counts()
    s = scorer.score(tp.images(3), [fits, over, "a cat"])
    assert np.isfinite(s).all() and (scorer.truncated, scorer.seen) == (1, 3)


# --------------------------------------------------------------------------- vilt:
def test_vilt_folder_loads_and_counts_truncation_at_40(tmp_path):
    from transformers import ViltForImageAndTextRetrieval

    folder = tp.vilt_folder(tmp_path)
    scorer = get_scorer(f"vilt:{folder}")
    assert scorer.checkpoint_hash == state_hash(ViltForImageAndTextRetrieval.from_pretrained(folder).state_dict())
    assert (scorer.family, scorer.output, scorer.max_text_tokens) == ("single-stream", "itm_logit", 40)
    scorer.reset_counts()
    scorer.score(tp.images(2), ["a " * 38, "a " * 39])  # 40 tokens fit; 41 do not
    assert (scorer.truncated, scorer.seen) == (1, 2)


def test_vilt_checkpoint_without_the_matching_head_is_refused(tmp_path):
    from transformers import ViltModel

    ViltModel.from_pretrained(tp.vilt_folder(tmp_path / "full")).save_pretrained(tmp_path / "headless")
    tp.bert_tokenizer().save_pretrained(tmp_path / "headless")
    with pytest.raises(ValueError, match="rank_output"):
        get_scorer(f"vilt:{tmp_path / 'headless'}")


def test_vilt_prob_is_sigmoid_of_logit(tmp_path):
    folder = tp.vilt_folder(tmp_path)
    logit = get_scorer(f"vilt:{folder}").score(IMAGES, CAPTIONS)
    prob = get_scorer(f"vilt:{folder}", output="itm_prob").score(IMAGES, CAPTIONS)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-logit)), atol=1e-6)


# --------------------------------------------------------------------------- lxmert:
def _lxmert(tmp_path, **kw):
    folder = tp.lxmert_folder(tmp_path / "lx")
    weights = tp.resnet18_weights(tmp_path)
    return get_scorer(f"lxmert:{folder}", features="resnet18", feature_weights=weights, grid=2, image_size=64, **kw)


def test_lxmert_scores_with_grid_features_and_says_so(tmp_path):
    scorer = _lxmert(tmp_path)
    assert (scorer.family, scorer.source, scorer.output) == ("two-stream", "local", "itm_logit")
    assert "grid features" in scorer.label and "not its training features" in scorer.label
    feats, boxes = scorer.features(IMAGES[:1])
    assert feats.shape == (1, 4, 512) and boxes.shape == (1, 4, 4)
    np.testing.assert_allclose(boxes[0, 3].numpy(), [0.5, 0.5, 1.0, 1.0])  # bottom-right cell, (x1, y1, x2, y2)
    prob = _lxmert(tmp_path, output="itm_prob").score(IMAGES, CAPTIONS)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-scorer.score(IMAGES, CAPTIONS))), atol=1e-6)


def test_lxmert_refuses_features_of_the_wrong_width(tmp_path):
    import torchvision

    path = tmp_path / "resnet50.pth"  # 2048-d features; the tiny LXMERT expects 512
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="visual_feat_dim"):
        get_scorer(f"lxmert:{tp.lxmert_folder(tmp_path / 'lx')}", features="resnet50", feature_weights=path,
                   grid=2, image_size=64)


def test_lxmert_missing_feature_weights_fail_fast(tmp_path, no_weights_anywhere, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="resnet101"):
        get_scorer(f"lxmert:{tp.lxmert_folder(tmp_path / 'lx')}")
    assert time.perf_counter() - t0 < 5


# --------------------------------------------------------------------------- blip-itm:
def test_blip_itm_prob_is_softmax_of_the_itm_head(tmp_path):
    from transformers import BlipForImageTextRetrieval, BlipProcessor

    folder = tp.blip_folder(tmp_path)
    scorer = get_scorer(f"blip-itm:{folder}")
    assert (scorer.family, scorer.output) == ("two-stream", "itm_prob")
    model, proc = BlipForImageTextRetrieval.from_pretrained(folder).eval(), BlipProcessor.from_pretrained(folder)
    with torch.no_grad():
        inputs = proc(images=IMAGES, text=CAPTIONS, padding=True, truncation=True, return_tensors="pt")
        head = model(**inputs, use_itm_head=True).itm_score
    np.testing.assert_allclose(scorer.score(IMAGES, CAPTIONS), head.softmax(-1)[:, 1].numpy(), atol=1e-6)
    logit = get_scorer(f"blip-itm:{folder}", output="itm_logit").score(IMAGES, CAPTIONS)
    np.testing.assert_allclose(logit, (head[:, 1] - head[:, 0]).numpy(), atol=1e-5)


# --------------------------------------------------------------------------- missing hub ids
@pytest.mark.parametrize("spec, folder", [("vilt:dandelin/vilt-b32-finetuned-coco", "dandelin/vilt-b32-finetuned-coco"),
                                          ("lxmert:unc-nlp/lxmert-base-uncased", "unc-nlp/lxmert-base-uncased"),
                                          ("blip-itm:Salesforce/blip-itm-base-coco", "Salesforce/blip-itm-base-coco")])
def test_missing_hub_model_fails_fast_and_says_where(spec, folder, no_weights_anywhere):
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as err:
        get_scorer(spec)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert folder in msg and str(no_weights_anywhere / folder) in msg and "/path/to/that/folder" in msg


def test_missing_local_folder_is_weights_unavailable(tmp_path):
    with pytest.raises(WeightsUnavailable, match="config.json"):
        get_scorer(f"vilt:{tmp_path}/empty")


# --------------------------------------------------------------------------- relative paths
def test_relative_clip_path_is_resolved_where_it_is_typed(tmp_path, monkeypatch):
    path = tp.clip_checkpoint(tmp_path / "ckpt")
    monkeypatch.chdir(tmp_path)
    typed = f"clip:{tp.CLIP_ARCH}/./ckpt/{path.name}"
    resolved = absolute_name(typed)
    assert resolved == f"clip:{tp.CLIP_ARCH}/{path}"
    here = get_scorer(typed)
    assert (here.source, here.pretrained) == ("local", str(path))
    monkeypatch.chdir(tmp_path / "ckpt")  # e.g. a notebook kernel running in another folder
    elsewhere = get_scorer(resolved)
    assert elsewhere.pretrained == str(path) and elsewhere.checkpoint_hash == here.checkpoint_hash
    with pytest.raises(WeightsUnavailable) as err:
        get_scorer(typed)  # now relative to the other folder: the message shows where it looked
    assert str(tmp_path / "ckpt" / "ckpt" / path.name) in str(err.value)


def test_absolute_name_leaves_registry_names_tags_and_hub_ids_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "vilt").mkdir(parents=True)
    for name in ("clip-mini", "blind+neg", "clip:ViT-B-32/openai", "vilt:dandelin/vilt-b32-finetuned-coco",
                 "clip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "clip:ViT-B-32"):
        assert absolute_name(name) == name
    assert absolute_name("vilt:models/vilt") == f"vilt:{tmp_path / 'models' / 'vilt'}"
    assert absolute_name("clip:local-dir:models/vilt") == f"clip:local-dir:{tmp_path / 'models' / 'vilt'}"


# --------------------------------------------------------------------------- damaged weight files
GARBAGE = {"garbage.bin": b"\x80\x02not a pickle at all" * 20, "empty.bin": b"",
           "garbage.safetensors": b"garbage garbage garbage garbage", "garbage.pt": b"PK\x03\x04junk"}


def _one_clear_message(err, path):
    msg = str(err.value)
    assert str(path) in msg and "Expected" in msg and "Replace it" in msg
    assert "weights_only" not in msg and err.value.__cause__ is None  # never torch's unsafe advice
    assert err.value.__context__ is None or err.value.__suppress_context__


@pytest.mark.parametrize("name", list(GARBAGE))
def test_damaged_clip_checkpoint_is_one_message(tmp_path, name):
    tp.register_clip_arch(tmp_path)
    path = tmp_path / name
    path.write_bytes(GARBAGE[name])
    with pytest.raises(BadWeightsFile) as err:
        get_scorer(f"clip:{tp.CLIP_ARCH}/{path}")
    _one_clear_message(err, path)
    assert ("empty (0 bytes)" in str(err.value)) == (name == "empty.bin")


def test_damaged_weights_in_a_transformers_folder_is_one_message(tmp_path):
    folder = tp.vilt_folder(tmp_path / "vilt")
    (folder / "model.safetensors").write_bytes(b"garbage garbage garbage garbage")
    with pytest.raises(BadWeightsFile) as err:
        get_scorer(f"vilt:{folder}")
    _one_clear_message(err, folder / "model.safetensors")


def test_damaged_grid_feature_weights_are_one_message(tmp_path):
    bad = tmp_path / "resnet18.pth"
    bad.write_bytes(b"")
    with pytest.raises(BadWeightsFile) as err:
        get_scorer(f"lxmert:{tp.lxmert_folder(tmp_path / 'lx')}", features="resnet18", feature_weights=bad,
                   grid=2, image_size=64)
    _one_clear_message(err, bad)
    assert "resnet18" in str(err.value)


def test_a_hub_miss_keeps_its_cause(no_weights_anywhere):
    with pytest.raises(WeightsUnavailable) as err:
        get_scorer("vilt:dandelin/vilt-b32-finetuned-coco")
    assert err.value.__cause__ is not None  # why the hub cache lookup failed is kept, not swallowed
