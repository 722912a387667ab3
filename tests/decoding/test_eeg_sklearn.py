"""scikit-learn conformance of the 3-D EEG estimators (HiSTN, EEGNet), issue 14.

scikit-learn's ``check_estimator`` feeds 2-D tables; these estimators take
``(n_epochs, n_channels, n_times)`` windows. The data-free checks run as scikit-learn
wrote them; the data checks (pickle, not fitted, refit determinism, single class, NaN,
unchanged parameters and ``__dict__``) are re-stated here on 3-D input with the same
assertions as their scikit-learn namesakes.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as ec
from sklearn.utils.validation import check_is_fitted

from decoding.decoders.eegnet import EEGNet
from decoding.decoders.histn import HiSTN

TINY = dict(n_classes=3, n_epochs=2, steps_per_epoch=2, batch_size=16, device="cpu")
ESTIMATORS = {"HiSTN": lambda **kw: HiSTN(**{**TINY, **kw}),
              "EEGNet": lambda **kw: EEGNet(**{**TINY, **kw})}


def _data(n=36, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 14, 128)).astype(np.float32)
    y = np.arange(n) % 3
    X[:, :4] *= (1 + y)[:, None, None]
    return X, y


@pytest.fixture(params=list(ESTIMATORS))
def make(request):
    return ESTIMATORS[request.param]


@pytest.mark.parametrize("check", [
    ec.check_estimator_cloneable, ec.check_get_params_invariance, ec.check_set_params,
    ec.check_no_attributes_set_in_init, ec.check_parameters_default_constructible,
    ec.check_do_not_raise_errors_in_init_or_set_params])
def test_sklearn_data_free_checks(make, check):
    est = make()
    check(type(est).__name__, est)


def test_clone_is_unfitted_with_equal_params(make):
    X, y = _data()
    est = make().fit(X, y)
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert not hasattr(c, "module_")
    with pytest.raises(NotFittedError):
        check_is_fitted(c)
    check_is_fitted(est)


def test_not_fitted_raises_notfittederror(make):
    X, _ = _data(6)
    est = make()
    for method in (est.predict, est.predict_proba):
        with pytest.raises(NotFittedError, match="not fitted"):
            method(X)
    with pytest.raises(NotFittedError):
        est.fine_tune(X, np.arange(6) % 3)
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    if isinstance(est, HiSTN):
        with pytest.raises(NotFittedError):
            est.attention(X)


def test_pickle_round_trip_predicts_the_same(make):
    X, y = _data()
    est = make().fit(X, y)
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    assert back.get_params() == est.get_params()


def test_refit_is_deterministic_and_idempotent(make):
    """check_fit_idempotent on 3-D input: fitting twice (same estimator or a clone, same
    seed) gives the same predictions; a different seed gives different weights."""
    X, y = _data()
    est = make()
    p1 = est.fit(X, y).predict_proba(X)
    p2 = est.fit(X, y).predict_proba(X)
    p3 = clone(est).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(p1, p2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p1, p3, rtol=1e-6, atol=1e-7)
    p4 = make(random_state=1).fit(X, y).predict_proba(X)
    assert np.abs(p4 - p1).max() > 1e-4


def test_fit_does_not_change_params_or_dict_on_predict(make):
    """check_estimators_overwrite_params and check_dict_unchanged on 3-D input."""
    X, y = _data()
    est = make()
    before = {k: pickle.dumps(v) for k, v in est.get_params().items()}
    est.fit(X, y)
    assert {k: pickle.dumps(v) for k, v in est.get_params().items()} == before
    keys = set(est.__dict__)
    est.predict(X)
    est.predict_proba(X)
    assert set(est.__dict__) == keys


def test_single_class_is_refused(make):
    X, _ = _data(12)
    with pytest.raises(ValueError, match="y: expected at least 2 classes.*only class \\[1\\]"):
        make().fit(X, np.ones(12, int))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_input_is_refused(make, bad):
    """check_estimators_nan_inf on 3-D input: fit and predict both refuse."""
    X, y = _data()
    Xb = X.copy()
    Xb[3, 2, 7] = bad
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        make().fit(Xb, y)
    est = make().fit(X, y)
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        est.predict(Xb)
    with pytest.raises(ValueError, match="X: contains NaN or inf"):
        est.predict_proba(Xb)


@pytest.mark.parametrize("name,value", [
    ("smoothing_sigma", np.nan), ("smoothing_sigma", -0.5), ("smoothing_sigma", np.inf),
    ("lr", np.inf), ("lr", -1.0), ("lr", 0.0), ("lr", np.nan),
    ("dropout", 1.5), ("dropout", -0.1), ("dropout", 1.0),
    ("weight_decay", -1.0), ("weight_decay", np.nan),
    ("validation_fraction", 0.7), ("n_epochs", 0), ("batch_size", 0), ("n_classes", 1),
    ("steps_per_epoch", 0), ("scaling", "bogus"), ("batchnorm", "tf"), ("n_epochs", True),
])
def test_bad_hyper_parameters_are_named(make, name, value):
    X, y = _data(12)
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        make(**{name: value}).fit(X, y)


def test_histn_architecture_switches_are_checked():
    X, y = _data(12)
    for name in ("fusion_input", "collapse_input", "max_norm", "init"):
        with pytest.raises(ValueError, match=f"^{name}: expected one of"):
            HiSTN(**{**TINY, name: "bogus"}).fit(X, y)


def test_fine_tune_refuses_bad_budget():
    X, y = _data()
    est = HiSTN(**TINY).fit(X, y)
    with pytest.raises(ValueError, match="^lr: expected"):
        est.fine_tune(X, y, lr=float("inf"))
    with pytest.raises(ValueError, match="^n_epochs: expected"):
        est.fine_tune(X, y, n_epochs=0)


def test_segments_are_checked():
    X, y = _data(12)
    with pytest.raises(ValueError, match=r"^segments: expected int recording ids of shape \(12,\)"):
        HiSTN(**TINY).fit(X, y, segments=np.zeros(5, int))
