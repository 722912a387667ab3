"""RidgeEncoder against sklearn (Ridge + KFold grid search per voxel) and closed-form ridge."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from decoding.encoders.ridge import DEFAULT_ALPHAS, RidgeEncoder


def _data(n=40, p=6, v=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    W = rng.standard_normal((p, v)) * np.array([0.05, 0.5, 3.0, 0.2, 1.0])[:v]
    Y = X @ W + 2.0 * rng.standard_normal((n, v)) + 3.0
    return X, Y


def _sklearn_reference(X, Y, alphas, n_splits=5):
    """Per voxel: the alpha of best mean fold -MSE (sklearn Ridge, KFold), refit on all."""
    best, coefs, icpts = [], [], []
    for v in range(Y.shape[1]):
        scores = []
        for a in alphas:
            fold = []
            for tr, te in KFold(n_splits).split(X):
                m = Ridge(alpha=a).fit(X[tr], Y[tr, v])
                fold.append(-np.mean((m.predict(X[te]) - Y[te, v]) ** 2))
            scores.append(np.mean(fold))
        a = alphas[int(np.argmax(scores))]
        m = Ridge(alpha=a).fit(X, Y[:, v])
        best.append(a)
        coefs.append(m.coef_)
        icpts.append(m.intercept_)
    return np.array(best), np.stack(coefs, 1), np.array(icpts)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_per_voxel_alpha_and_weights_match_sklearn(backend):
    X, Y = _data()
    alphas = np.logspace(-2, 4, 7)
    enc = RidgeEncoder(alphas=alphas, backend=backend).fit(X, Y)
    best, coef, icpt = _sklearn_reference(X, Y, alphas)
    np.testing.assert_allclose(enc.best_alphas_, best)
    assert len(np.unique(enc.best_alphas_)) > 1  # the voxels really chose different alphas
    np.testing.assert_allclose(enc.coef_, coef, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(enc.intercept_, icpt, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(enc.predict(X), X @ coef + icpt, rtol=1e-4, atol=1e-4)


def test_single_alpha_is_closed_form_ridge():
    X, Y = _data(n=30, p=4, v=3, seed=1)
    alpha = 7.0
    enc = RidgeEncoder(alphas=[alpha]).fit(X, Y)
    xm, ym = X.mean(0), Y.mean(0)
    Xc = X - xm
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (Y - ym))
    np.testing.assert_allclose(enc.coef_, W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(enc.intercept_, ym - xm @ W, rtol=1e-5, atol=1e-5)
    assert enc.score(X, Y) > 0


def test_defaults_and_sklearn_api():
    X, Y = _data()
    enc = RidgeEncoder()
    assert clone(enc).get_params()["cv"] == 5
    out = enc.fit(X, Y[:, 0])  # 1-D Y: one voxel
    assert out is enc and enc.coef_.shape == (6, 1)
    assert np.isclose(enc.best_alphas_[:, None], DEFAULT_ALPHAS[None], rtol=1e-6).any(1).all()


@pytest.mark.parametrize(
    ("kwargs", "X", "Y", "match"),
    [
        ({}, np.ones((10, 3)), np.ones((9, 2)), "inconsistent numbers of samples"),
        ({}, np.full((10, 3), np.nan), np.ones((10, 2)), "Input X contains NaN"),
        ({}, np.ones((4, 3)), np.ones((4, 2)), "cv=5.*n_samples=4"),
        ({"backend": "jax"}, np.ones((10, 3)), np.ones((10, 2)), "backend"),
        ({"alphas": [-1.0]}, np.ones((10, 3)), np.ones((10, 2)), "alphas"),
        ({"cv": 1}, np.ones((10, 3)), np.ones((10, 2)), "cv"),
    ],
)
def test_bad_input(kwargs, X, Y, match):
    with pytest.raises(ValueError, match=match):
        RidgeEncoder(**kwargs).fit(X, Y)


def test_predict_wrong_feature_count():
    X, Y = _data()
    enc = RidgeEncoder().fit(X, Y)
    with pytest.raises(ValueError, match="X has 5 features, but RidgeEncoder is expecting 6"):
        enc.predict(X[:, :5])
