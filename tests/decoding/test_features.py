"""Feature registry and the suite's own stimulus-world CNN (tiny sizes, trained into tmp)."""

import numpy as np
import pytest
import torch

from data_loaders.simulate.stimuli import render_stimuli
from decoding.features import (
    StimNetExtractor,
    available_extractors,
    get_extractor,
    unit_norm,
)

TINY = dict(dim=8, n_train_images=48, n_epochs=1, width=4, verbose=False)
SMALL_N, SMALL_EP = 1500, 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("features_home")
    yield get_extractor("stimnet", data_home=home, **TINY), home
    torch.set_num_threads(old)


def test_registry():
    assert {"stimnet", "open_clip", "hf"} <= set(available_extractors())
    with pytest.raises(ValueError, match="unknown feature extractor 'clip'"):
        get_extractor("clip")
    with pytest.raises(ValueError, match="dim: expected an int >= 2"):
        StimNetExtractor(dim=1)


def test_unit_norm_against_numpy():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(unit_norm(X), [[0.6, 0.8], [0, 0], [2**-0.5, 2**-0.5]], atol=1e-7)


def test_features_are_unit_norm_and_whitened(tiny):
    fx, _ = tiny
    imgs = render_stimuli(20, image_size=64, random_state=3).images
    X = fx.transform(imgs)
    assert X.shape == (20, 8) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # before the unit norm, the PCA projection whitens the training images: identity covariance
    train = render_stimuli(48, image_size=64, random_state=0 + 7919).images
    Z = fx._features(train).astype(np.float64)
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(8), atol=1e-3)
    # another image size gives the same features as the resized image would
    small = render_stimuli(4, image_size=32, random_state=3).images
    assert fx.transform(small).shape == (4, 8)


def test_cache_reused_and_identifier(tiny):
    fx, home = tiny
    weights = fx.folder / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    again = get_extractor("stimnet", data_home=home, **TINY)
    assert weights.stat().st_mtime_ns == mtime  # loaded, not retrained
    imgs = render_stimuli(5, image_size=64, random_state=4).images
    np.testing.assert_array_equal(again.transform(imgs), fx.transform(imgs))
    assert again.identifier == fx.identifier and fx.identifier.startswith("stimnet-v3-")
    assert fx.folder.name == fx.identifier


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 16, 16, 3), np.float32),
        np.zeros((2, 3, 16, 16), np.uint8),
        np.zeros((16, 16, 3)),
    ],
)
def test_bad_images(tiny, bad):
    fx, _ = tiny
    with pytest.raises(ValueError, match=r"images: expected uint8 array of shape \(n, H, W, 3\)"):
        fx.transform(bad)


def test_hf_and_open_clip_need_local_files(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(FileNotFoundError, match="local model folder"):
        get_extractor("hf", path=tmp_path / "nope")


def _main_shape_accuracy(fx, stim) -> tuple[float, float]:
    """Held-out accuracy of the main object's class: the head, and a linear probe on features."""
    from sklearn.linear_model import LogisticRegression

    main = stim.attributes["shape"]
    head = float(np.mean(fx.predict_attributes(stim.images)["main_shape"].argmax(1) == main))
    X, half = fx.transform(stim.images), len(main) // 2
    probe = LogisticRegression(max_iter=1000).fit(X[:half], main[:half])
    return head, float(probe.score(X[half:], main[half:]))


def test_small_extractor_learns_shape_class(tmp_path):
    """Even a small, briefly trained CNN reads the main object's class (8 classes, chance
    0.125) on held-out images, from its head and linearly from its whitened features."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fx = get_extractor(
            "stimnet", data_home=tmp_path, dim=32, n_train_images=SMALL_N, n_epochs=SMALL_EP,
            width=8, verbose=False,
        )  # fmt: skip
        stim = render_stimuli(400, image_size=64, random_state=11)
        head, probe = _main_shape_accuracy(fx, stim)
    finally:
        torch.set_num_threads(old)
    assert head > 0.22 and probe > 0.22, (head, probe)  # measured 0.28, 0.31


@pytest.mark.slow
def test_default_extractor_learns_the_stimulus_world(tmp_path):
    """The default CNN reads position, the main object's class and its 3D shape properties
    far above chance on held-out images."""
    from data_loaders.simulate.stimuli import SHAPE_PROPERTIES

    fx = get_extractor("stimnet", data_home=tmp_path, verbose=False)
    stim = render_stimuli(1000, image_size=64, random_state=11)
    pred = fx.predict_attributes(stim.images)
    pos_err = np.abs(pred["position"] - stim.attributes["position"]).mean()
    chance_err = np.abs(stim.attributes["position"] - stim.attributes["position"].mean(0)).mean()
    assert pos_err < 0.5 * chance_err
    main = stim.attributes["shape"]
    head, probe = _main_shape_accuracy(fx, stim)
    assert head > 0.5 and probe > 0.5, (head, probe)  # chance 0.125
    top2 = np.argsort(pred["shapes"], axis=1)[:, -2:]  # multi-label head: shapes present
    assert np.mean([m in t for m, t in zip(main, top2, strict=True)]) > 0.6  # chance 0.25
    props = SHAPE_PROPERTIES[main]
    prop_err = np.abs(pred["properties"] - props).mean()
    assert prop_err < 0.6 * np.abs(props - props.mean(0)).mean()


def test_hf_extractor_reads_a_local_clip_folder(tmp_path):
    """A tiny random CLIP saved to disk: the extractor's features are CLIP's joint-space image
    embeddings (the vision tower's pooled output through the visual projection)."""
    transformers = pytest.importorskip("transformers")
    import torch

    cfg = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 64, "max_position_embeddings": 16},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=12,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    model.save_pretrained(tmp_path)
    proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32})
    proc.save_pretrained(tmp_path)
    fx = get_extractor("hf", path=tmp_path)
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    got = fx._features(images)
    pix = proc(images=list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        want = model.visual_projection(model.vision_model(pixel_values=pix).pooler_output)
    assert fx.dim == 12 and fx.identifier == f"hf-{tmp_path.name}"
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
