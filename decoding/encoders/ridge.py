"""Per-voxel ridge regression encoder: the baseline every voxelwise encoding model is beaten on.

``RidgeEncoder`` is a thin scikit-learn shell over himalaya's ``RidgeCV`` (Dupré la Tour et
al. 2022, "Feature-space selection with banded ridge regression", NeuroImage 264:119728):
for every voxel ``v`` it solves

.. math::

    \\hat w_v = \\arg\\min_w \\lVert X w - y_v \\rVert^2 + \\alpha_v \\lVert w \\rVert^2

(with an unpenalised intercept: ``X`` and ``y_v`` are centred), choosing ``alpha_v`` from a
log grid by K-fold cross-validation (mean over folds of the negative mean squared error),
then refits on all samples. This is the few-shot baseline of BraInCoRL (Yu et al. 2025,
NeurIPS; their ``ridge_fast_brainwise``: 5 folds, per-voxel lambda in 1e-3..1e5).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["RidgeEncoder", "DEFAULT_ALPHAS"]

#: BraInCoRL's ridge grid (1e-3 .. 1e5), at two values per decade.
DEFAULT_ALPHAS: np.ndarray = np.logspace(-3, 5, 17)


@contextlib.contextmanager
def _himalaya_backend(name: str) -> Iterator:
    """Switch himalaya's global backend for the duration of a fit/predict, then restore it."""
    from himalaya.backend import get_backend, set_backend

    old = get_backend()
    backend = set_backend(name, on_error="raise")
    try:
        yield backend
    finally:
        set_backend(old.name)


def _refuse_text(name: str, a) -> None:
    """Name the field for string arrays (numpy's conversion error names none)."""
    kind = getattr(np.asarray(a) if not hasattr(a, "toarray") else a, "dtype", None)
    if kind is not None and kind.kind in "USV":
        raise ValueError(
            f"{name}: dtype='numeric' is not compatible with arrays of bytes/strings, got "
            f"{kind}; convert your data to numeric values explicitly"
        )


class RidgeEncoder(RegressorMixin, BaseEstimator):
    """Voxelwise ridge encoding model with a cross-validated alpha per voxel.

    Parameters
    ----------
    alphas : array-like of float, optional
        Grid of ridge penalties (default :data:`DEFAULT_ALPHAS`, 1e-3 .. 1e5).
    cv : int
        Number of (unshuffled, sklearn ``KFold``) folds to choose alpha; needs at least
        ``cv`` samples.
    fit_intercept : bool
        Fit an unpenalised intercept per voxel.
    backend : {"numpy", "torch", "torch_cuda"}
        himalaya backend (torch runs the same solver in torch, on CPU or GPU).
    n_targets_batch : int or None
        Voxels solved at once (bounds memory on 100k voxels); None: all.
    verbose : bool | None
        Unused beyond warnings; kept for the suite's API.

    Attributes
    ----------
    coef_ : ndarray of float32, shape (n_features, n_voxels)
        Ridge weights.
    intercept_ : ndarray of float32, shape (n_voxels,)
    best_alphas_ : ndarray of float64, shape (n_voxels,)
        Chosen penalty of each voxel.
    cv_scores_ : ndarray of float64, shape (n_voxels,)
        Mean cross-validated negative MSE at the chosen alpha.
    n_features_in_ : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5)); Y = X @ rng.standard_normal((5, 3))
    >>> RidgeEncoder().fit(X, Y).predict(X).shape
    (60, 3)
    """

    def __init__(
        self,
        alphas=None,
        cv: int = 5,
        fit_intercept: bool = True,
        backend: str = "numpy",
        n_targets_batch: int | None = None,
        verbose: bool | None = None,
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.backend = backend
        self.n_targets_batch = n_targets_batch
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one voxel per output column
        return tags

    def _alphas(self) -> np.ndarray:
        alphas = DEFAULT_ALPHAS if self.alphas is None else np.atleast_1d(
            np.asarray(self.alphas, dtype=np.float64)
        )
        if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)) or (
            alphas <= 0
        ).any():
            raise ValueError(
                f"alphas: expected a non-empty list of finite values > 0, got {alphas}"
            )
        return alphas

    def fit(self, X, Y) -> RidgeEncoder:
        """Fit one ridge model per voxel.

        Parameters
        ----------
        X : array-like of float, shape (n_samples, n_features)
            Image features. Dense and finite (scikit-learn's messages otherwise).
        Y : array-like of float, shape (n_samples, n_voxels) or (n_samples,)
            Responses. Must be finite. A 1-D ``Y`` (one voxel) makes :meth:`predict`
            return 1-D predictions, as scikit-learn regressors do.

        Returns
        -------
        self
        """
        from himalaya.ridge import RidgeCV

        if isinstance(self.cv, bool) or not isinstance(self.cv, int | np.integer) or self.cv < 2:
            raise ValueError(f"cv: expected an int >= 2 folds, got {self.cv!r}")
        if self.backend not in ("numpy", "torch", "torch_cuda"):
            raise ValueError(
                f"backend: expected 'numpy', 'torch' or 'torch_cuda', got {self.backend!r}"
            )
        if self.backend == "torch_cuda":
            import torch

            if not torch.cuda.is_available():
                # the message of decoding._device.resolve_device, naming this field
                raise ValueError(
                    "backend: 'torch_cuda' requested but torch sees no CUDA device "
                    "(use 'numpy' or 'torch')"
                )
        if self.n_targets_batch is not None and (
            isinstance(self.n_targets_batch, bool)
            or not isinstance(self.n_targets_batch, int | np.integer)
            or self.n_targets_batch < 1
        ):
            raise ValueError(
                f"n_targets_batch: expected None or an int >= 1, got {self.n_targets_batch!r}"
            )
        alphas = self._alphas()
        _refuse_text("X", X)
        _refuse_text("Y", Y)
        X, Y = validate_data(
            self, X, Y, multi_output=True, y_numeric=True, dtype=(np.float64, np.float32)
        )
        self._single_output = Y.ndim == 1
        Y = Y.reshape(len(Y), -1)
        if X.shape[0] < self.cv:
            raise ValueError(
                f"X: {self.cv}-fold cross-validation (cv={self.cv}) needs at least {self.cv} "
                f"samples, got n_samples={X.shape[0]}"
            )
        with _himalaya_backend(self.backend) as bk, warnings.catch_warnings():
            # himalaya suggests kernel ridge when n_samples < n_features; same answer
            warnings.filterwarnings("ignore", message="Solving ridge is slower")
            model = RidgeCV(
                alphas=alphas,
                fit_intercept=self.fit_intercept,
                cv=int(self.cv),
                solver_params=dict(
                    n_targets_batch=self.n_targets_batch, warn=False, local_alpha=True
                ),
            )
            model.fit(X.astype(np.float64), Y.astype(np.float64))
            self.coef_ = np.asarray(bk.to_numpy(model.coef_), dtype=np.float32)
            if self.coef_.ndim == 1:
                self.coef_ = self.coef_[:, None]
            icpt = bk.to_numpy(model.intercept_) if self.fit_intercept else 0.0
            self.intercept_ = np.broadcast_to(
                np.asarray(icpt, dtype=np.float32), (Y.shape[1],)
            ).copy()
            self.best_alphas_ = np.asarray(bk.to_numpy(model.best_alphas_), dtype=np.float64)
            self.cv_scores_ = np.asarray(bk.to_numpy(model.cv_scores_), dtype=np.float64).ravel()
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted responses.

        Parameters
        ----------
        X : array-like of float, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_voxels), or (n_samples,) after a 1-D ``Y``
            float32 for float32 ``X``, else float64.
        """
        check_is_fitted(self)
        _refuse_text("X", X)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        out_dtype = np.float32 if X.dtype == np.float32 else np.float64
        pred = X.astype(np.float64) @ self.coef_.astype(np.float64) + self.intercept_
        pred = pred.astype(out_dtype)
        return pred[:, 0] if getattr(self, "_single_output", False) else pred
