"""The scorer contract (analysis.scorers.base), checked on every scorer the registry builds.

``FACTORIES`` is the one list of scorers under test: the published-checkpoint paths
(tiny random models saved in the real formats, see ``tiny_published``) and every
embedded stand-in of the registry (defaults and ``+neg`` ablations, smoke-trained).
Each factory takes a temporary folder and returns a scorer. ``DUAL`` is the sub-list of
dual encoders, decided from the registry before anything runs (no run-time skips).
"""
from __future__ import annotations

import numpy as np
import pytest

import tiny_published as tp
from analysis import registry
from analysis.registry import get_scorer
from analysis.scorers import base

TOL = 1e-5  # absolute tolerance for batch composition (padding, matmul blocking) effects


def embedded(name: str):
    """A factory for an embedded stand-in at smoke size (trained once, then cached)."""
    return pytest.param(lambda tmp: get_scorer(name, smoke=True), id=name)


def is_dual(name: str) -> bool:
    return registry.SCORERS.entry(name).meta["family"] == "dual"


def _clip(tmp):
    return get_scorer(f"clip:{tp.CLIP_ARCH}/{tp.clip_checkpoint(tmp)}")


def _vilt(tmp):
    return get_scorer(f"vilt:{tp.vilt_folder(tmp)}")


def _lxmert(tmp):
    return get_scorer(f"lxmert:{tp.lxmert_folder(tmp / 'lxmert')}", features="resnet18",
                      feature_weights=tp.resnet18_weights(tmp), grid=2, image_size=64)


def _blip(tmp):
    return get_scorer(f"blip-itm:{tp.blip_folder(tmp)}")


FACTORIES = [
    pytest.param(_clip, id="clip:tiny-open_clip"),
    pytest.param(_vilt, id="vilt:tiny"),
    pytest.param(_lxmert, id="lxmert:tiny"),
    pytest.param(_blip, id="blip-itm:tiny"),
    *(embedded(name) for name in registry.embedded_scorers()),
]
DUAL = [pytest.param(_clip, id="clip:tiny-open_clip"),
        *(embedded(name) for name in registry.embedded_scorers() if is_dual(name))]

# five 32x32 images and one 64x32 one (aspect-preserving processors must pad it)
IMAGES = tp.images(5) + tp.images(1, seed=1, size=(64, 32))
CAPTIONS = tp.CAPTIONS
LONG_CAPTION = "a photo of " + "a dog and " * 300 + "a cat"


@pytest.fixture(scope="module", params=FACTORIES)
def scorer(request, tmp_path_factory):
    s = request.param(tmp_path_factory.mktemp("scorer"))
    s.reset_counts()
    return s


@pytest.fixture(scope="module", params=DUAL)
def dual(request, tmp_path_factory):
    return request.param(tmp_path_factory.mktemp("dual"))


@pytest.fixture(scope="module")
def together(scorer):
    """``score(IMAGES, CAPTIONS)``: all pairs in one batch (computed once per scorer)."""
    return scorer.score(IMAGES, CAPTIONS)


def test_score_is_one_finite_float_per_pair(together):
    assert isinstance(together, np.ndarray) and together.dtype.kind == "f" and together.shape == (len(CAPTIONS),)
    assert np.isfinite(together).all()


def test_score_is_deterministic(scorer, together):
    np.testing.assert_array_equal(scorer.score(IMAGES, CAPTIONS), together)


def test_score_does_not_depend_on_the_batch(scorer, together):
    alone = np.concatenate([scorer.score([im], [c]) for im, c in zip(IMAGES, CAPTIONS)])
    np.testing.assert_allclose(alone, together, rtol=0, atol=TOL)


def test_score_is_not_constant(together):
    assert np.ptp(together) > 100 * TOL, "scores barely differ between pairs: batch tests would prove nothing"


def test_matrix_diagonal_is_the_aligned_score(scorer, together):
    m = scorer.score_matrix(IMAGES[:3], CAPTIONS[:3])
    assert m.shape == (3, 3)
    np.testing.assert_allclose(np.diag(m), together[:3], rtol=0, atol=TOL)


def test_mismatched_pairs_are_refused(scorer):
    with pytest.raises(ValueError):
        scorer.score(IMAGES[:2], CAPTIONS[:3])


def test_long_captions_are_counted_as_truncated(scorer):
    scorer.reset_counts()
    assert np.isfinite(scorer.score(IMAGES[:2], [LONG_CAPTION, "a cat"])).all()
    assert (scorer.truncated, scorer.seen) == (1, 2)
    scorer.reset_counts()


@pytest.mark.parametrize("bad, error", [(None, TypeError), (3, TypeError), (2.5, TypeError), ("", ValueError),
                                        ("  \t ", ValueError)])
def test_bad_captions_are_refused_naming_their_index(scorer, bad, error):
    captions = CAPTIONS[:2] + [bad]
    for call in (lambda: scorer.score(IMAGES[:3], captions), lambda: scorer.score_matrix(IMAGES[:2], captions)):
        with pytest.raises(error, match="caption 2"):
            call()


def test_dual_encoder_embeddings_are_unit_rows_and_score_is_their_dot(dual):
    assert isinstance(dual, base.DualEncoder) and dual.output == "cosine" and dual.family == "dual"
    u, v = dual.encode_image(IMAGES), dual.encode_text(CAPTIONS)
    assert u.shape[0] == v.shape[0] == len(CAPTIONS) and u.shape[1] == v.shape[1]
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(dual.score(IMAGES, CAPTIONS), (u * v).sum(axis=1), rtol=0, atol=TOL)
    with pytest.raises(TypeError, match="caption 1"):
        dual.encode_text(["a cat", None])


def test_provenance_is_complete(scorer):
    assert scorer.family in base.FAMILIES
    assert scorer.output in base.OUTPUTS
    assert scorer.source in base.SOURCES
    assert isinstance(scorer.checkpoint_hash, str) and len(scorer.checkpoint_hash) >= 16
    assert scorer.name not in ("", "?") and scorer.label not in ("", "?")
    assert isinstance(scorer.max_text_tokens, int) and scorer.max_text_tokens > 0
    assert set(scorer.info()) >= {"model", "label", "family", "source", "output", "pretrained", "checkpoint_hash",
                                  "trained_on_perturbations"}
    if scorer.source == "embedded":
        assert any(w in scorer.label.lower() for w in ("stand-in", "baseline", "trained here")), "stand-ins must say so"
        assert scorer.trained_on_perturbations is registry.SCORERS.entry(scorer.name).meta["trained_on_perturbations"]
    else:
        assert scorer.trained_on_perturbations is None  # unknown for weights trained elsewhere
