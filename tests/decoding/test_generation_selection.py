import numpy as np
import pytest

from data_loaders.simulate.stimuli import render_stimuli
from decoding.features import get_extractor
from decoding.generation import select_samples


@pytest.fixture(scope="module")
def setup():
    fx = get_extractor("stimnet")  # the shipped weights: no training
    n, k = 6, 3
    samples = render_stimuli(n * k, image_size=64, random_state=8).images.reshape(n, k, 64, 64, 3)
    want = np.array([0, 2, 1, 1, 0, 2])
    rng = np.random.default_rng(0)
    pred = fx.transform(samples[np.arange(n), want]) + 0.02 * rng.normal(size=(n, fx.dim))
    return fx, samples, want, pred.astype(np.float32)


def test_choice_follows_the_predicted_embedding(setup):
    fx, samples, want, pred = setup
    res = select_samples(samples, pred, extractor=fx)
    np.testing.assert_array_equal(res.index, want)
    np.testing.assert_array_equal(res.images, samples[np.arange(6), want])
    assert res.scores.shape == (6, 3) and res.oracle_index is None
    flat = select_samples(samples.reshape(18, 64, 64, 3), pred, extractor=fx)  # grouped layout
    np.testing.assert_array_equal(flat.index, want)
    np.testing.assert_array_equal(flat.scores, res.scores)


def test_poisoned_ground_truth_does_not_change_the_choice(setup):
    """The true image is poisoned to equal another sample: an oracle would follow it, the
    brain-derived choice must not."""
    fx, samples, want, pred = setup
    poison_idx = (want + 1) % 3
    poisoned = samples[np.arange(6), poison_idx]
    res = select_samples(samples, pred, extractor=fx, true_images=poisoned)
    np.testing.assert_array_equal(res.index, want)  # unchanged
    np.testing.assert_array_equal(res.oracle_index, poison_idx)  # the oracle followed it
    noise = np.random.default_rng(1).integers(0, 256, poisoned.shape, dtype=np.uint8)
    again = select_samples(samples, pred, extractor=fx, true_images=noise)
    np.testing.assert_array_equal(again.index, want)
    np.testing.assert_array_equal(again.scores, res.scores)


def test_selection_errors(setup):
    fx, samples, _, pred = setup
    with pytest.raises(ValueError, match="n \\* k images"):
        select_samples(samples.reshape(18, 64, 64, 3)[:17], pred, extractor=fx)
    with pytest.raises(ValueError, match="image_embeds: expected width 128"):
        select_samples(samples, pred[:, :10], extractor=fx)
    with pytest.raises(ValueError, match="finite"):
        select_samples(samples, np.full_like(pred, np.nan), extractor=fx)
    with pytest.raises(ValueError, match="true_images: expected 6"):
        select_samples(samples, pred, extractor=fx, true_images=samples[:2, 0])
