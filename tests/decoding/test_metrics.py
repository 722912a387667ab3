"""Metrics against independent references: scipy, scikit-learn, scikit-image, loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import correlation as scipy_correlation
from scipy.stats import pearsonr
from sklearn import metrics as skm

from decoding.evaluation import (
    ConstantInputWarning,
    accuracy,
    chamfer_distance,
    confusion,
    correlation_distance,
    explained_variance,
    noise_ceiling,
    normalize_by_noise_ceiling,
    pearson_r,
    pixcorr,
    r2,
    retrieval_top1,
    seq2hr,
    ssim,
    top2_accuracy,
    top_k_accuracy,
    tri_p,
    two_way_identification,
    voxel_iou,
    weighted_f1,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _regression_pair(rng, n=40, v=7):
    y = rng.standard_normal((n, v))
    yhat = 0.6 * y + 0.8 * rng.standard_normal((n, v)) + rng.normal(size=v)  # offset too
    return y, yhat


# --------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------
def test_pearson_r_matches_scipy(rng):
    y, yhat = _regression_pair(rng)
    ref = [pearsonr(y[:, k], yhat[:, k])[0] for k in range(y.shape[1])]
    np.testing.assert_allclose(pearson_r(y, yhat), ref, rtol=1e-12, atol=1e-12)
    r1 = pearson_r(y[:, 0], yhat[:, 0])
    assert isinstance(r1, float)
    assert r1 == pytest.approx(ref[0], abs=1e-12)
    # float32 input gives the same numbers (computed in float64)
    np.testing.assert_allclose(
        pearson_r(y.astype(np.float32), yhat.astype(np.float32)), ref, atol=1e-6
    )


def test_pearson_r_constant_column_is_zero_with_warning(rng):
    y, yhat = _regression_pair(rng, v=3)
    y[:, 1] = 0.1  # constant, and 0.1 is not exact in binary: no rounding artefact allowed
    with pytest.warns(ConstantInputWarning, match="1 voxel"):
        r = pearson_r(y, yhat)
    assert r[1] == 0.0
    assert np.isfinite(r).all()
    assert r[0] == pytest.approx(pearsonr(y[:, 0], yhat[:, 0])[0])


def test_explained_variance_and_r2_match_sklearn(rng):
    y, yhat = _regression_pair(rng)
    np.testing.assert_allclose(
        explained_variance(y, yhat),
        skm.explained_variance_score(y, yhat, multioutput="raw_values"),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        r2(y, yhat), skm.r2_score(y, yhat, multioutput="raw_values"), rtol=1e-12
    )
    # the offset makes R2 lower than EV, which ignores it
    assert np.all(r2(y, yhat) < explained_variance(y, yhat))
    assert r2(y[:, 2], yhat[:, 2]) == pytest.approx(skm.r2_score(y[:, 2], yhat[:, 2]))


def test_constant_targets_follow_sklearn_force_finite(rng):
    y, yhat = _regression_pair(rng, v=3)
    y[:, 0] = 2.0
    yhat[:, 0] = 2.0  # exact prediction of a constant -> 1
    y[:, 1] = 5.0  # wrong prediction of a constant -> 0
    for ours, theirs in ((explained_variance, skm.explained_variance_score), (r2, skm.r2_score)):
        with pytest.warns(ConstantInputWarning):
            got = ours(y, yhat)
        np.testing.assert_allclose(got, theirs(y, yhat, multioutput="raw_values"))
        np.testing.assert_array_equal(got[:2], [1.0, 0.0])


@pytest.mark.parametrize("fn", [pearson_r, explained_variance, r2])
def test_encoding_bad_input(fn, rng):
    y, yhat = _regression_pair(rng)
    with pytest.raises(ValueError, match="^y_pred: expected the shape"):
        fn(y, yhat[:, :3])
    bad = y.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="^y_true: expected finite"):
        fn(bad, yhat)
    with pytest.raises(ValueError, match="^y_pred: expected finite"):
        fn(y, np.where(bad > 0, np.inf, yhat))
    with pytest.raises(ValueError, match="^y_true: expected at least 2 samples"):
        fn(y[:1], yhat[:1])
    with pytest.raises(ValueError, match="^y_true"):
        fn(y[None], yhat[None])
    with pytest.raises(ValueError, match="^y_true: expected a numeric"):
        fn(np.array(["a", "b"]), np.zeros(2))


def test_noise_ceiling_hand_computed():
    snr = np.array([0.0, 1.0, 2.0, 0.5])
    # 100 s^2 / (s^2 + 1/n): n=1 -> 0, 50, 80, 20; n=3 -> 0, 75, 1200/13, 300/7
    np.testing.assert_allclose(noise_ceiling(snr), [0, 50, 80, 20])
    np.testing.assert_allclose(noise_ceiling(snr, n_avg=3), [0, 75, 1200 / 13, 300 / 7])
    np.testing.assert_allclose(noise_ceiling(snr, 3, as_fraction=True), [0, 0.75, 12 / 13, 3 / 7])
    assert noise_ceiling(1.0).shape == ()
    with pytest.raises(ValueError, match="^ncsnr: expected values >= 0"):
        noise_ceiling([-0.1, 1.0])
    with pytest.raises(ValueError, match="^ncsnr: expected finite"):
        noise_ceiling([np.nan])
    for bad in (0, -1, np.inf, "3", True):
        with pytest.raises(ValueError, match="^n_avg"):
            noise_ceiling(snr, n_avg=bad)


def test_normalize_by_noise_ceiling():
    score = np.array([0.1, 0.2, 0.4])
    nc = noise_ceiling(np.array([1.0, 2.0, 1.0]), n_avg=1)  # 50, 80, 50 percent
    np.testing.assert_allclose(normalize_by_noise_ceiling(score, nc), [0.2, 0.25, 0.8])
    np.testing.assert_allclose(
        normalize_by_noise_ceiling(score, nc / 100, percent=False), [0.2, 0.25, 0.8]
    )
    with pytest.raises(ValueError, match=r"^nc: expected a noise ceiling > 0.*1 value"):
        normalize_by_noise_ceiling(score, [50.0, 0.0, 20.0])
    with pytest.raises(ValueError, match="^nc: expected the shape"):
        normalize_by_noise_ceiling(score, [50.0, 20.0])
    with pytest.raises(ValueError, match="^score: expected finite"):
        normalize_by_noise_ceiling([np.nan, 0.1, 0.1], nc)
    with pytest.warns(RuntimeWarning, match="percent=False"):
        normalize_by_noise_ceiling(score, nc / 100)


# --------------------------------------------------------------------------------------
# reconstruction
# --------------------------------------------------------------------------------------
def _images(rng, n=5, size=16):
    true = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    noise = rng.integers(-60, 61, true.shape)
    pred = np.clip(true.astype(int) + noise, 0, 255).astype(np.uint8)
    return pred, true


def test_pixcorr_matches_scipy_loop(rng):
    pred, true = _images(rng)
    ref = np.mean([pearsonr(p.ravel() / 255, t.ravel() / 255)[0] for p, t in zip(pred, true)])
    assert pixcorr(pred, true) == pytest.approx(ref, abs=1e-12)
    assert pixcorr(pred / 255.0, true.astype(np.float32) / 255) == pytest.approx(ref, abs=1e-6)
    assert pixcorr(true, true) == pytest.approx(1.0)


def test_pixcorr_uniform_image_counts_zero(rng):
    pred, true = _images(rng, n=2)
    pred[0] = 128
    with pytest.warns(ConstantInputWarning):
        got = pixcorr(pred, true)
    assert got == pytest.approx(pearsonr(pred[1].ravel(), true[1].ravel())[0] / 2)


def test_ssim_matches_skimage(rng):
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    pred, true = _images(rng, n=3, size=24)
    ref = np.mean(
        [
            structural_similarity(
                rgb2gray(p),  # skimage converts uint8 to float in [0, 1] itself
                rgb2gray(t),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            for p, t in zip(pred, true)
        ]
    )
    assert ssim(pred, true) == pytest.approx(ref, abs=1e-10)
    assert ssim(true, true) == pytest.approx(1.0)
    assert 0 < ref < 0.99


@pytest.mark.parametrize("fn", [pixcorr, ssim])
def test_image_bad_input(fn, rng):
    pred, true = _images(rng)
    with pytest.raises(ValueError, match="^true: expected the shape"):
        fn(pred, true[:, :8])
    with pytest.raises(ValueError, match=r"^pred: expected float images in \[0, 1\]"):
        fn(pred.astype(float), true)  # 0..255 floats
    with pytest.raises(ValueError, match="^true: expected images of shape"):
        fn(pred, true[..., 0])
    with pytest.raises(ValueError, match="^pred: expected images of shape"):
        fn(pred.astype(np.int16), true)
    nan = pred / 255.0
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="^pred: expected finite"):
        fn(nan, true)


def test_ssim_refuses_tiny_images(rng):
    pred, true = _images(rng, size=8)
    with pytest.raises(ValueError, match="^pred: expected images of at least 11x11"):
        ssim(pred, true)


def _features(rng, n=30, d=20, noise=1.5):
    true = rng.standard_normal((n, d))
    return true + noise * rng.standard_normal((n, d)), true


def test_two_way_identification_matches_loop_and_mindeye_code(rng):
    pred, true = _features(rng)
    n = len(pred)
    brute = np.mean(
        [
            np.mean(
                [
                    pearsonr(pred[i], true[j])[0] < pearsonr(pred[i], true[i])[0]
                    for j in range(n)
                    if j != i
                ]
            )
            for i in range(n)
        ]
    )
    got = two_way_identification(pred, true)
    assert got == pytest.approx(brute, abs=1e-12)
    # MindEye / MindBridge code (src/eval.py): r[i, j] = corr(gt_i, recon_j)
    r = np.corrcoef(true, pred)[:n, n:]
    mindeye = np.mean((r < np.diag(r)).sum(0)) / (n - 1)
    assert got == pytest.approx(mindeye, abs=1e-12)
    assert 0.6 < got < 1.0
    assert two_way_identification(true, true) == 1.0
    # (n, ...) feature maps are flattened per row
    assert two_way_identification(pred.reshape(n, 4, 5), true.reshape(n, 4, 5)) == got


def test_two_way_identification_chance_level(rng):
    scores = [two_way_identification(*_features(rng, n=40, noise=1e6)) for _ in range(20)]
    assert abs(np.mean(scores) - 0.5) < 0.03


def test_retrieval_top1_matches_loop(rng):
    pred, true = _features(rng, n=50, d=10, noise=1.0)
    got = retrieval_top1(pred, true, n_candidates=20, n_draws=7, random_state=3)
    draws = np.random.default_rng(3)
    per_draw = []
    for _ in range(7):
        idx = draws.choice(50, size=20, replace=False)
        hits = 0
        for i in idx:
            cos = [
                pred[i] @ true[j] / (np.linalg.norm(pred[i]) * np.linalg.norm(true[j])) for j in idx
            ]
            best = idx[int(np.argmax(cos))]
            hits += best == i
        per_draw.append(hits / 20)
    assert got == pytest.approx(np.mean(per_draw), abs=1e-12)
    assert 1 / 20 < got < 1.0
    assert retrieval_top1(true, true, n_candidates=50, n_draws=1) == 1.0
    assert retrieval_top1(pred, true, 20, 7, random_state=3) == got  # deterministic


def test_ties_count_as_failures(rng):
    true = rng.standard_normal((10, 6))
    true[1] = true[0]  # images 0 and 1 indistinguishable
    # retrieval: rows 0 and 1 tie with each other -> 8 of 10 correct
    assert retrieval_top1(true, true, n_candidates=10, n_draws=1) == pytest.approx(0.8)
    # 2-way: rows 0 and 1 lose the one comparison with each other -> (8 * 9 + 2 * 8) / 90
    assert two_way_identification(true, true) == pytest.approx((8 * 9 + 2 * 8) / 90)


def test_correlation_distance_matches_scipy(rng):
    pred, true = _features(rng, n=8)
    ref = np.mean([scipy_correlation(p, t) for p, t in zip(pred, true)])
    assert correlation_distance(pred, true) == pytest.approx(ref, abs=1e-12)
    assert correlation_distance(true, true) == pytest.approx(0.0, abs=1e-12)
    assert correlation_distance(true, -true) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "fn",
    [
        two_way_identification,
        lambda p, t: retrieval_top1(p, t, n_candidates=5),
        correlation_distance,
    ],
)
def test_feature_bad_input(fn, rng):
    pred, true = _features(rng, n=10)
    with pytest.raises(ValueError, match="^true_feats: expected the shape"):
        fn(pred, true[:9])
    with pytest.raises(ValueError, match="^pred_feats: expected finite"):
        fn(np.where(pred > 2, np.nan, pred), true)
    with pytest.raises(ValueError, match="^pred_feats: expected an array of shape"):
        fn(pred[0], true[0])


def test_retrieval_bad_parameters(rng):
    pred, true = _features(rng, n=10)
    with pytest.raises(ValueError, match="^n_candidates"):
        retrieval_top1(pred, true)  # 300 > 10 samples
    with pytest.raises(ValueError, match="^n_candidates"):
        retrieval_top1(pred, true, n_candidates=1)
    with pytest.raises(ValueError, match="^n_draws"):
        retrieval_top1(pred, true, n_candidates=5, n_draws=0)


def test_constant_feature_rows_warn_not_nan(rng):
    pred, true = _features(rng, n=10)
    pred[2] = 1.0
    with pytest.warns(ConstantInputWarning):
        assert np.isfinite(two_way_identification(pred, true))
    with pytest.warns(ConstantInputWarning):
        assert correlation_distance(pred[2:3], true[2:3]) == 1.0
    pred[2] = 0.0
    with pytest.warns(ConstantInputWarning):
        assert np.isfinite(retrieval_top1(pred, true, n_candidates=10, n_draws=2))


# --------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------
def _classes(rng, n=200, k=5):
    y = rng.integers(0, k, n)
    scores = rng.standard_normal((n, k))
    scores[np.arange(n), y] += 1.0
    return y, scores


def test_accuracy_f1_confusion_match_sklearn(rng):
    y, scores = _classes(rng)
    pred = scores.argmax(1)
    assert accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert weighted_f1(y, pred) == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    np.testing.assert_array_equal(confusion(y, pred), skm.confusion_matrix(y, pred))
    np.testing.assert_array_equal(
        confusion(y, pred, n_classes=7), skm.confusion_matrix(y, pred, labels=range(7))
    )


def test_weighted_f1_with_classes_missing_on_one_side():
    y = np.array([1, 1, 2, 2, 2, 4, 4, 4, 4])
    pred = np.array([1, 3, 2, 2, 3, 4, 4, 0, 4])  # 0 and 3 never true; nothing says 4 wrong
    ref = skm.f1_score(y, pred, average="weighted", zero_division=0)
    assert weighted_f1(y, pred) == pytest.approx(ref)
    # by hand: F1(1)=2/3, F1(2)=4/5, F1(4)=6/7; weights 2, 3, 4 out of 9
    assert weighted_f1(y, pred) == pytest.approx((2 * 2 / 3 + 3 * 4 / 5 + 4 * 6 / 7) / 9)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_matches_sklearn(rng, k):
    y, scores = _classes(rng)
    ref = skm.top_k_accuracy_score(y, scores, k=k, labels=range(5))
    assert top_k_accuracy(y, scores, k=k) == pytest.approx(ref)
    # columns labelled 1..5 (DREAMER ratings) instead of 0..4
    assert top_k_accuracy(y + 1, scores, k=k, labels=np.arange(1, 6)) == pytest.approx(ref)


def test_top2_matches_sklearn_with_ties(rng):
    y = rng.integers(0, 4, 300)
    scores = rng.integers(0, 3, (300, 4)).astype(float)  # many ties
    ref = skm.top_k_accuracy_score(y, scores, k=2, labels=range(4))
    assert top2_accuracy(y, scores) == pytest.approx(ref)


def test_seq2hr_matches_loop_and_hand_cases(rng):
    y, scores = _classes(rng)
    hits = []
    for yi, s in zip(y, scores):
        first, second = sorted(range(5), key=lambda c: -s[c])[:2]
        hits.append(abs(first - second) == 1 and yi in (first, second))
    assert seq2hr(y, scores) == pytest.approx(np.mean(hits))
    assert seq2hr(y, scores) <= top2_accuracy(y, scores)
    hand = np.array(
        [
            [0.1, 0.6, 0.3, 0.0, 0.0],  # top 1, 2: adjacent, truth 2 inside -> hit
            [0.6, 0.0, 0.3, 0.1, 0.0],  # top 0, 2: not adjacent -> miss
            [0.0, 0.0, 0.1, 0.5, 0.4],  # top 3, 4: adjacent, truth 1 outside -> miss
            [0.0, 0.0, 0.0, 0.3, 0.7],  # top 4, 3: adjacent, truth 3 inside -> hit
        ]
    )
    assert seq2hr([2, 2, 1, 3], hand) == 0.5
    # adjacency uses the label values, not the column positions
    assert seq2hr([4, 4, 2, 6], hand, labels=[0, 2, 4, 6, 8]) == 0.0


def test_tri_p_matches_histn_confusion_count(rng):
    y, scores = _classes(rng, k=5)
    pred = rng.integers(0, 5, len(y))
    cm = skm.confusion_matrix(y, pred, labels=range(5))
    i, j = np.indices(cm.shape)
    off = cm[np.abs(i - j) > 1].sum()  # HiSTN count_off_neibor
    assert tri_p(y, pred) == pytest.approx(1 - off / len(y))
    assert tri_p([0, 4, 2], [1, 2, 2]) == pytest.approx(2 / 3)


@pytest.mark.parametrize("fn", [accuracy, weighted_f1, tri_p, confusion])
def test_label_bad_input(fn):
    with pytest.raises(ValueError, match="^y_pred: expected the shape"):
        fn([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="^y_true: expected finite"):
        fn([0, np.nan, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="^y_pred: expected integer"):
        fn([0, 1, 2], [0, 1.5, 2])
    with pytest.raises(ValueError, match="^y_true: expected a non-empty 1-D"):
        fn([[0, 1]], [[0, 1]])


def test_confusion_bad_n_classes():
    with pytest.raises(ValueError, match="^n_classes: expected at least"):
        confusion([0, 3], [0, 1], n_classes=3)
    with pytest.raises(ValueError, match="^y_true: expected labels >= 0"):
        confusion([-1, 0], [0, 0])


@pytest.mark.parametrize("fn", [top2_accuracy, seq2hr, lambda y, s: top_k_accuracy(y, s, k=1)])
def test_score_bad_input(fn, rng):
    y, scores = _classes(rng, n=10)
    with pytest.raises(ValueError, match="^scores: expected shape"):
        fn(y, scores[:9])
    with pytest.raises(ValueError, match="^scores: expected finite"):
        fn(y, np.where(scores > 1, np.nan, scores))
    with pytest.raises(ValueError, match="^y_true: labels"):
        fn(np.where(y == 0, 9, y), scores)


def test_top_k_bad_k_and_labels(rng):
    y, scores = _classes(rng, n=10)
    with pytest.raises(ValueError, match="^k"):
        top_k_accuracy(y, scores, k=5)
    with pytest.raises(ValueError, match="^labels"):
        top_k_accuracy(y, scores, labels=[0, 1, 2, 3, 3])


# --------------------------------------------------------------------------------------
# 3D
# --------------------------------------------------------------------------------------
def test_chamfer_matches_brute_force_and_hand_case(rng):
    a = rng.standard_normal((60, 3))
    b = rng.standard_normal((45, 3)) + 0.3

    def brute(squared):
        dists = np.array([[np.sqrt(np.sum((p - q) ** 2)) for q in b] for p in a])
        if squared:
            dists = dists**2
        return 0.5 * (dists.min(1).mean() + dists.min(0).mean())

    assert chamfer_distance(a, b) == pytest.approx(brute(False), rel=1e-12)
    assert chamfer_distance(a, b, squared=True) == pytest.approx(brute(True), rel=1e-12)
    assert chamfer_distance(a, b) == pytest.approx(chamfer_distance(b, a))
    assert chamfer_distance(a, a) == 0.0
    # one point at the origin vs two points at x=1 and x=3: a->b 1; b->a (1 + 3)/2 = 2
    assert chamfer_distance([[0, 0, 0]], [[1, 0, 0], [3, 0, 0]]) == pytest.approx(1.5)
    assert chamfer_distance([[0, 0, 0]], [[1, 0, 0], [3, 0, 0]], squared=True) == pytest.approx(
        0.5 * (1 + (1 + 9) / 2)
    )


def test_chamfer_bad_input(rng):
    with pytest.raises(ValueError, match=r"^a: expected points of shape \(n, 3\)"):
        chamfer_distance(rng.standard_normal((5, 2)), rng.standard_normal((5, 3)))
    with pytest.raises(ValueError, match="^b: expected finite"):
        chamfer_distance(rng.standard_normal((5, 3)), [[0, np.nan, 0]])
    with pytest.raises(ValueError, match="^b: expected a non-empty"):
        chamfer_distance(rng.standard_normal((5, 3)), np.zeros((0, 3)))


def test_voxel_iou_matches_sklearn_jaccard(rng):
    a = rng.random((8, 8, 8)) > 0.6
    b = rng.random((8, 8, 8)) > 0.5
    ref = skm.jaccard_score(a.ravel(), b.ravel())
    assert voxel_iou(a, b) == pytest.approx(ref)
    assert voxel_iou(a.astype(np.uint8), b.astype(float)) == pytest.approx(ref)
    assert voxel_iou(a, a) == 1.0
    assert voxel_iou(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool)) == 1.0
    with pytest.raises(ValueError, match="^b: expected the shape"):
        voxel_iou(a, b[:4])
    with pytest.raises(ValueError, match="^a: expected a boolean occupancy"):
        voxel_iou(a * 0.5, b)


def test_no_warning_on_clean_input(rng):
    y, yhat = _regression_pair(rng)
    pred, true = _features(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pearson_r(y, yhat)
        r2(y, yhat)
        two_way_identification(pred, true)
        retrieval_top1(pred, true, n_candidates=10, n_draws=2)
