"""scikit-learn conformance: the common estimator checks on every 2-D estimator of decoding.

``parametrize_with_checks`` runs scikit-learn's own checks (clone, pickling, not-fitted
errors, NaN and sparse input, dtypes, 1-D and 2-D targets, refit determinism, subset and
order invariance, messages). The checks a configuration does not pass are listed in
``EXPECTED_FAILED`` with the reason; each one is run in another way below.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils.estimator_checks import check_regressors_train, parametrize_with_checks

from decoding.decoders.de_svm import DEFeatureSVM
from decoding.encoders.braincorl import BraInCoRL, MetaTask
from decoding.encoders.ridge import RidgeEncoder

# a tiny in-context model that meta-trains on the context inside fit (pretrained=None):
# the checks use features of 1 to 10 dimensions, so no one pre-trained model fits them all
TINY = dict(d_model=8, n_layers=1, n_heads=2, ffn_dim=8, n_registers=1, batch_size=4,
            min_context=4, max_context=100, n_query=10, verbose=False)
FAST_BRAINCORL = BraInCoRL(**TINY, n_steps=10)

EXPECTED_FAILED = {
    "BraInCoRL": {
        # R^2 > 0.5 on sklearn's 200-sample regression set needs about 100 meta-training
        # steps (0.70 measured); 0 and 20 steps of this fast configuration measured 0.11 and 0.38.
        # test_braincorl_regressors_train runs the same check with 100 steps.
        "check_regressors_train": "10 meta-training steps are too few for R^2 > 0.5; "
                                  "run with 100 steps in test_braincorl_regressors_train",
    },
    "DEFeatureSVM": {
        # scikit-learn marks SVC itself with this reason: libsvm's sample_weight scales C
        # per sample, and gamma="scale" and the 3-fold Platt calibration see the samples,
        # not the weights, so weight 2 is not a repeated sample
        "check_sample_weight_equivalence_on_dense_data":
            "sample_weight is not equivalent to removing/repeating samples (as SVC)",
    },
}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _expected_failed(est):
    return EXPECTED_FAILED.get(type(est).__name__, {})


@parametrize_with_checks(
    [RidgeEncoder(), FAST_BRAINCORL, DEFeatureSVM()], expected_failed_checks=_expected_failed
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_braincorl_regressors_train():
    """The check expected to fail above, with enough meta-training steps to pass."""
    check_regressors_train("BraInCoRL", BraInCoRL(**TINY, n_steps=100))


# -- RidgeEncoder specifics -----------------------------------------------------------------
def _data(n=30, p=4, v=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    return X, X @ rng.standard_normal((p, v)) + 0.1 * rng.standard_normal((n, v))


def test_ridge_nan_in_predict_raises():
    X, Y = _data()
    enc = RidgeEncoder().fit(X, Y)
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        enc.predict(Xn)


def test_ridge_1d_y_predicts_1d_like_sklearn_ridge():
    from sklearn.linear_model import Ridge

    X, Y = _data()
    enc = RidgeEncoder(alphas=[3.0]).fit(X, Y[:, 0])
    pred = enc.predict(X)
    assert pred.shape == (30,)
    np.testing.assert_allclose(pred, Ridge(alpha=3.0).fit(X, Y[:, 0]).predict(X), rtol=1e-5)
    assert RidgeEncoder().fit(X, Y[:, :1]).predict(X).shape == (30, 1)


def test_ridge_sparse_refused_with_sklearn_message():
    X, Y = _data()
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data"):
        RidgeEncoder().fit(sp.csr_matrix(X), Y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_ridge_torch_cuda_without_cuda_is_a_named_error():
    X, Y = _data()
    with pytest.raises(ValueError, match="backend: 'torch_cuda' requested but torch sees no"):
        RidgeEncoder(backend="torch_cuda").fit(X, Y)


# -- BraInCoRL with a pre-trained folder: clone, cross_val_score, GridSearchCV -----------------
@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two tiny meta-trained models on 6 features: 40 and 0 meta-training steps."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 6))
    Y = X @ rng.standard_normal((6, 40)) + 0.3 * rng.standard_normal((80, 40))
    out = {}
    for steps in (40, 0):
        m = BraInCoRL(**TINY, n_steps=steps, feature_extractor="toy-6").meta_fit(MetaTask(X, Y))
        out[steps] = str(m.save_pretrained(tmp_path_factory.mktemp(f"bc{steps}")))
    return out


def _subject(seed=1, n=40, v=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    return X, X @ rng.standard_normal((6, v)) + 0.3 * rng.standard_normal((n, v))


def test_braincorl_pretrained_survives_clone(folders):
    X, Y = _subject()
    loaded = BraInCoRL.from_pretrained(folders[40])
    ref = loaded.fit(X, Y).predict(X)
    assert loaded.get_params()["pretrained"] == folders[40]
    for est in (clone(loaded), BraInCoRL(pretrained=folders[40]), clone(clone(loaded))):
        np.testing.assert_array_equal(est.fit(X, Y).predict(X), ref)


def test_braincorl_cross_val_score_and_grid_search(folders):
    X, Y = _subject()
    cv = KFold(4, shuffle=True, random_state=0)
    scores = cross_val_score(BraInCoRL(pretrained=folders[40]), X, Y, cv=cv)
    assert scores.shape == (4,) and np.all(np.isfinite(scores))
    # GridSearchCV chooses between meta-trained models: the trained one beats the untrained
    grid = GridSearchCV(BraInCoRL(), {"pretrained": [folders[0], folders[40]]}, cv=cv).fit(X, Y)
    assert grid.best_params_ == {"pretrained": folders[40]}
    assert grid.cv_results_["mean_test_score"][1] > grid.cv_results_["mean_test_score"][0]
    assert grid.predict(X).shape == Y.shape


def test_braincorl_pretrained_errors_name_the_field(folders, tmp_path):
    X, Y = _subject()
    with pytest.raises(FileNotFoundError, match="pretrained: .* is not a folder"):
        BraInCoRL(pretrained=str(tmp_path / "none")).fit(X, Y)
    with pytest.raises(ValueError, match="X has 4 features, but BraInCoRL is expecting 6"):
        BraInCoRL(pretrained=folders[40]).fit(X[:, :4], Y)
    with pytest.raises(ValueError, match="pretrained: .*meta-trained on features 'toy-6'"):
        BraInCoRL(pretrained=folders[40], feature_extractor="other").fit(X, Y)


def test_braincorl_meta_fit_still_serves_fit():
    """The job's path: meta_fit once, then fit many contexts (no meta-training in fit)."""
    X, Y = _subject(n=60, v=20)
    m = BraInCoRL(**TINY, n_steps=5).meta_fit(MetaTask(X, Y))
    weights = [p.detach().clone() for p in m.module_.parameters()]
    m.fit(X[:20], Y[:20, :3])
    for a, b in zip(weights, m.module_.parameters(), strict=True):
        assert torch.equal(a, b)
    assert m.predict(X).shape == (60, 3)


# -- DESVM: the 3-D variant of the relevant checks (EEG windows in, DE + SVM inside) ------------
def _windows(n=36, seed=0):
    """Three classes told apart by alpha (10 Hz) power on channel 0."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = np.arange(128) / 128.0
    X = rng.standard_normal((n, 2, 128))
    X[:, 0] += (1.0 + y)[:, None] * np.sin(2 * np.pi * 10 * t)[None]
    return X.astype(np.float32), y


def test_desvm_clone_pickle_refit_and_not_fitted():
    import pickle

    from sklearn.exceptions import NotFittedError

    from decoding.decoders.de_svm import DESVM

    X, y = _windows()
    est = DESVM(n_classes=3)
    with pytest.raises(NotFittedError):
        est.predict_proba(X)
    proba = est.fit(X, y).predict_proba(X)
    assert est.score(X, y) > 0.9
    np.testing.assert_array_equal(clone(est).fit(X, y).predict_proba(X), proba)  # refit
    np.testing.assert_array_equal(est.fit(X, y).predict_proba(X), proba)  # idempotent
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), proba)
    assert clone(est).get_params() == est.get_params()


def test_desvm_refuses_single_class_and_nan():
    from decoding.decoders.de_svm import DESVM

    X, y = _windows()
    with pytest.raises(ValueError, match="class"):
        DESVM(n_classes=3).fit(X, np.zeros_like(y))
    Xn = X.copy()
    Xn[3, 1, 5] = np.nan
    with pytest.raises(ValueError, match=r"X\b.*NaN"):
        DESVM(n_classes=3).fit(Xn, y)
    est = DESVM(n_classes=3).fit(X, y)
    with pytest.raises(ValueError, match=r"X\b.*NaN"):
        est.predict(Xn)


# -- the shipped default model (pretrained="default") ------------------------------------------
def test_default_pretrained_ships_and_clones():
    from decoding.encoders.braincorl import DEFAULT_PRETRAINED

    loaded = BraInCoRL.from_pretrained("default")
    assert loaded.feature_extractor in DEFAULT_PRETRAINED  # the stimnet identifier
    assert loaded.feature_dim_ == 128 and loaded.get_params()["pretrained"] == "default"
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((60, 128)), rng.standard_normal((60, 4))
    ref = BraInCoRL(pretrained="default").fit(X[:40], Y[:40]).predict(X[40:])
    np.testing.assert_array_equal(clone(loaded).fit(X[:40], Y[:40]).predict(X[40:]), ref)
    with pytest.raises(ValueError, match="X has 16 features, but BraInCoRL is expecting 128"):
        BraInCoRL(pretrained="default").fit(X[:, :16], Y)


@pytest.mark.slow
def test_default_pretrained_beats_ridge_on_the_held_out_subject():
    """subj04 of the embedded simulated NSD, never seen by the shipped model: at 100 context
    images it explains more test variance than ridge on the same images."""
    from data_loaders.nsd import load_nsd
    from data_loaders.simulate.fmri import default_nsd
    from decoding.evaluation import explained_variance
    from decoding.features import get_extractor

    ds = load_nsd(default_nsd(verbose=False), subjects=[1, 2, 3, 4], image_size=64,
                  verbose=False).average_repeats()
    fx = get_extractor("stimnet", random_state=0, verbose=False)
    F = fx.transform(ds.stimuli.images)
    train, test = ds.split("shared")
    sub_tr, sub_te = train.subjects["subj04"], test.subjects["subj04"]
    Xc, Yc = F[ds.stimuli.index_of(sub_tr.stim_ids)], sub_tr.betas
    Xq, Yq = F[ds.stimuli.index_of(sub_te.stim_ids)], sub_te.betas
    idx = np.random.default_rng(0).permutation(len(Xc))[:100]
    model = BraInCoRL(pretrained="default", feature_extractor=fx.identifier)
    ev_bc = explained_variance(Yq, model.fit(Xc[idx], Yc[idx]).predict(Xq)).mean()
    ev_rr = explained_variance(Yq, RidgeEncoder().fit(Xc[idx], Yc[idx]).predict(Xq)).mean()
    assert ev_bc > ev_rr + 0.05
