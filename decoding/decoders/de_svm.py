"""Differential-entropy features + SVM, the classic EEG emotion baseline.

Duan, Zhu & Lu (2013, IEEE NER) / Zheng & Lu (2015): band-pass each channel into
theta, alpha, beta, gamma (Butterworth, order 5, zero phase), and take the differential
entropy of a Gaussian, ``DE = 1/2 log(2 pi e var)`` (TorchEEG ``BandDifferentialEntropy``
uses log2; the natural log here only rescales). Features are standardised and classified
by an RBF support-vector machine (scikit-learn ``SVC``).

:class:`DEFeatureSVM` is the classifier on feature vectors (any 2-D features, any labels;
it passes scikit-learn's estimator checks); :class:`DESVM` computes the DE features of
EEG windows and classifies them with it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from data_loaders.schema import EEGDataset
from decoding.decoders._eeg_base import check_eeg_input

DE_BANDS: tuple[tuple[float, float], ...] = ((4.0, 8.0), (8.0, 14.0), (14.0, 31.0), (31.0, 49.0))


def differential_entropy(X: np.ndarray, sfreq: float,
                         bands: Sequence[tuple[float, float]] = DE_BANDS,
                         order: int = 5) -> np.ndarray:
    """Band differential entropy of each channel.

    Parameters
    ----------
    X : ndarray, shape (n_epochs, n_channels, n_times)
    sfreq : float
        Sampling rate in Hz.
    bands : sequence of (low, high) in Hz
        Default theta 4-8, alpha 8-14, beta 14-31, gamma 31-49 (TorchEEG).
    order : int
        Butterworth order (applied forward and backward).

    Returns
    -------
    ndarray, shape (n_epochs, n_bands * n_channels)
        Band-major: all channels of the first band, then the next band.
    """
    from scipy.signal import butter, sosfiltfilt

    X = np.asarray(X, dtype=np.float64)
    feats = []
    for lo, hi in bands:
        if not 0 < lo < hi < sfreq / 2:
            raise ValueError(f"bands: expected 0 < low < high < Nyquist={sfreq / 2:g} Hz, "
                             f"got ({lo}, {hi})")
        sos = butter(order, [lo, hi], btype="bandpass", fs=sfreq, output="sos")
        var = sosfiltfilt(sos, X, axis=-1).var(axis=-1)
        feats.append(0.5 * np.log(2 * np.pi * np.e * np.maximum(var, 1e-30)))
    return np.concatenate(feats, axis=1)


def _check_svm_params(C, gamma) -> None:
    if isinstance(C, bool) or not isinstance(C, numbers.Real) or not (np.isfinite(C) and C > 0):
        raise ValueError(f"C: expected a finite number > 0, got {C!r}")
    if isinstance(gamma, str):
        if gamma not in ("scale", "auto"):
            raise ValueError(f"gamma: expected 'scale', 'auto' or a number > 0, got {gamma!r}")
    elif isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not (
        np.isfinite(gamma) and gamma > 0
    ):
        raise ValueError(f"gamma: expected 'scale', 'auto' or a finite number > 0, got {gamma!r}")


class DEFeatureSVM(ClassifierMixin, BaseEstimator):
    """Standardisation + RBF SVM on feature vectors (the classifier of :class:`DESVM`).

    Parameters
    ----------
    C, gamma : float, str | float
        SVM regularisation and RBF width (scikit-learn ``SVC``).
    probability : bool
        Platt-scaled probabilities (sigmoid calibration on 3-fold cross-validated
        decision values, one SVM on all data: what ``SVC(probability=True)`` did before its
        deprecation in scikit-learn 1.9); otherwise, or when a class has fewer than 3
        samples, ``predict_proba`` is a softmax of the one-vs-rest decision values.
    random_state : int | None
        Seed of the SVM.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
        The labels seen in ``fit`` (any hashable labels, sorted).
    pipeline_ : sklearn Pipeline
        ``StandardScaler`` then the (calibrated) ``SVC``.
    calibrated_ : bool
    n_features_in_ : int
    n_parameters_ : int
        Support-vector entries plus dual coefficients.
    """

    def __init__(self, C: float = 1.0, gamma: str | float = "scale", probability: bool = True,
                 random_state: int | None = 0):
        self.C = C
        self.gamma = gamma
        self.probability = probability
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None) -> DEFeatureSVM:
        """Fit on features ``X`` (n_samples, n_features) and labels ``y`` (n_samples,)."""
        _check_svm_params(self.C, self.gamma)
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (len(y),) or not np.isfinite(sample_weight).all() or (
                sample_weight < 0
            ).any():
                raise ValueError(
                    f"sample_weight: expected {len(y)} finite weights >= 0, got "
                    f"{sample_weight.dtype} {sample_weight.shape}"
                )
            if not (sample_weight > 0).any():
                raise ValueError("sample_weight: Sample weights must contain at least one "
                                 "non-zero number (all weights are 0)")
            keep = sample_weight > 0  # a zero weight is a sample left out
            X, y, sample_weight = X[keep], y[keep], sample_weight[keep]
        classes, counts = np.unique(y, return_counts=True)
        if classes.size < 2:
            raise ValueError(
                f"y: expected at least 2 classes, got 1 class ({classes[0]!r}); an SVM "
                "cannot train on a single class"
            )
        svc = SVC(C=self.C, gamma=self.gamma, random_state=self.random_state)
        calibrated = bool(self.probability) and counts.min() >= 3
        clf = CalibratedClassifierCV(svc, method="sigmoid", cv=3, ensemble=False) \
            if calibrated else svc
        self.pipeline_ = make_pipeline(StandardScaler(), clf)
        scaler, step = self.pipeline_.steps[0][0], self.pipeline_.steps[-1][0]
        # the weights reach the scaler too, so a weight of 2 is a duplicated sample there
        self.pipeline_.fit(X, y, **{f"{scaler}__sample_weight": sample_weight,
                                    f"{step}__sample_weight": sample_weight})
        fitted = clf.calibrated_classifiers_[0].estimator if calibrated else clf
        self.classes_ = clf.classes_
        self.calibrated_ = calibrated
        self.n_parameters_ = int(fitted.support_vectors_.size + fitted.dual_coef_.size)
        self.n_support_vectors_ = int(len(fitted.support_))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        if self.calibrated_:
            return self.pipeline_.predict_proba(X)
        d = self.pipeline_.decision_function(X)
        d = d.reshape(len(X), -1) if d.ndim > 1 else np.stack([-d, d], 1)
        p = np.exp(d - d.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """The most probable class, shape (n_samples,) (so top-1 agrees with the ranking
        that Top-2 and Seq2HR use)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class DESVM(ClassifierMixin, BaseEstimator):
    """Differential entropy in 4 bands + standardisation + RBF SVM.

    Parameters
    ----------
    n_classes : int
        Classes ``0..n_classes-1``; ``predict_proba`` has ``n_classes`` columns (classes
        missing from the training data get probability 0).
    sfreq : float
        Sampling rate of the windows (taken from the ``EEGDataset`` when one is passed).
    bands : sequence of (low, high)
        Frequency bands in Hz.
    C, gamma : float, str | float
        SVM regularisation and RBF width.
    probability : bool
        Platt-scaled probabilities (see :class:`DEFeatureSVM`). Top-1, Top-2 and Seq2HR
        rank these.
    target : str
        Label used when ``fit`` gets an ``EEGDataset`` without ``y``.
    random_state : int | None
        Seed of the SVM.
    verbose : bool
        Print the feature and support-vector counts.

    Attributes
    ----------
    svm_ : DEFeatureSVM
        The classifier on the DE features.
    """

    def __init__(self, n_classes: int = 5, sfreq: float = 128.0,
                 bands: Sequence[tuple[float, float]] = DE_BANDS, C: float = 1.0,
                 gamma: str | float = "scale", probability: bool = True,
                 target: str = "valence", random_state: int | None = 0,
                 verbose: bool = False):
        self.n_classes = n_classes
        self.sfreq = sfreq
        self.bands = bands
        self.C = C
        self.gamma = gamma
        self.probability = probability
        self.target = target
        self.random_state = random_state
        self.verbose = verbose

    def _features(self, X) -> np.ndarray:
        sfreq = X.sfreq if isinstance(X, EEGDataset) else self.sfreq
        if isinstance(sfreq, bool) or not isinstance(sfreq, numbers.Real) or not (
            np.isfinite(sfreq) and sfreq > 0
        ):
            raise ValueError(f"sfreq: expected a finite sampling rate > 0 Hz, got {sfreq!r}")
        X, _ = check_eeg_input(X, None)
        return differential_entropy(X, sfreq, self.bands)

    def _check_fitted(self) -> None:
        if not hasattr(self, "svm_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. "
                                 "Call 'fit' with appropriate arguments before using it.")

    def fit(self, X, y=None, sample_weight=None) -> DESVM:
        """Fit on windows ``X`` (EEGDataset or (n, C, T)) and labels ``y``."""
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, numbers.Integral) \
                or self.n_classes < 2:
            raise ValueError(f"n_classes: expected an int >= 2, got {self.n_classes!r}")
        Xa, y = check_eeg_input(X, y, self.target, self.n_classes)
        if y is None:
            raise ValueError("y: required when X is an array (or pass an EEGDataset)")
        _check_svm_params(self.C, self.gamma)
        F = self._features(X)
        self.classes_ = np.arange(self.n_classes)
        self.svm_ = DEFeatureSVM(C=self.C, gamma=self.gamma, probability=self.probability,
                                 random_state=self.random_state).fit(F, y, sample_weight)
        self.pipeline_ = self.svm_.pipeline_
        self.calibrated_ = self.svm_.calibrated_
        self.n_features_ = F.shape[1]
        self.n_parameters_ = self.svm_.n_parameters_
        if self.verbose:
            print(f"DESVM: {self.n_features_} DE features, "
                  f"{self.svm_.n_support_vectors_} support vectors")
        return self

    def fine_tune(self, X, y=None, X_pretrain=None, y_pretrain=None) -> DESVM:
        """Refit on pre-training + calibration windows, the calibration set weighted to
        the same total weight as the pre-training set (an SVM has no incremental update)."""
        if X_pretrain is None:
            raise ValueError("X_pretrain: DESVM.fine_tune refits and needs the pre-training data")
        Xc, yc = check_eeg_input(X, y, self.target, self.n_classes)
        Xp, yp = check_eeg_input(X_pretrain, y_pretrain, self.target, self.n_classes)
        w = np.concatenate([np.ones(len(yp)), np.full(len(yc), len(yp) / max(len(yc), 1))])
        sfreq = X.sfreq if isinstance(X, EEGDataset) else self.sfreq
        return self.set_params(sfreq=sfreq).fit(np.concatenate([Xp, Xc]),
                                                np.concatenate([yp, yc]), sample_weight=w)

    def predict_proba(self, X) -> np.ndarray:
        """Probabilities over ``0..n_classes-1``, shape (n_epochs, n_classes)."""
        self._check_fitted()
        F = self._features(X)
        out = np.zeros((len(F), self.n_classes))
        out[:, self.svm_.classes_] = self.svm_.predict_proba(F)
        return out

    def predict(self, X) -> np.ndarray:
        """Predicted class (the most probable one), shape (n_epochs,)."""
        return np.argmax(self.predict_proba(X), axis=1)
