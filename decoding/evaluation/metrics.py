"""Evaluation metrics shared by every encoder, decoder and benchmark of the suite.

Plain functions over numpy arrays (torch CPU tensors work too, through ``np.asarray``).
Every function validates its input: mismatched shapes, NaN or inf raise a ``ValueError``
that names the argument. No function returns NaN silently.

Correlations with a constant vector (a constant voxel, a uniform image, a constant feature
row) are undefined; everywhere in this module they are taken as 0 and a
:class:`ConstantInputWarning` says how many there were.

Sections: encoding (per voxel), image reconstruction, classification (including the HiSTN
ordinal metrics), 3D shapes.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from data_loaders.schema import nsd_noise_ceiling

__all__ = [
    "ConstantInputWarning",
    # encoding
    "pearson_r",
    "explained_variance",
    "r2",
    "noise_ceiling",
    "normalize_by_noise_ceiling",
    # reconstruction
    "pixcorr",
    "ssim",
    "two_way_identification",
    "retrieval_top1",
    "correlation_distance",
    # classification
    "accuracy",
    "weighted_f1",
    "top_k_accuracy",
    "top2_accuracy",
    "seq2hr",
    "tri_p",
    "confusion",
    # 3D
    "chamfer_distance",
    "voxel_iou",
]


class ConstantInputWarning(RuntimeWarning):
    """A correlation involved a constant vector; it was taken as 0."""


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _describe(arr: np.ndarray) -> str:
    return f"{arr.dtype} {arr.shape}"


def _numeric(name: str, x: Any, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``x`` as a finite float64 array of the given ndim; ValueError naming ``name``."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a numeric array, got {_describe(arr)}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if dims is not None and arr.ndim not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name}: expected a {want} array, got {_describe(arr)}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got {_describe(arr)}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN/inf")
    return arr


def _same_shape(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{b_name}: expected the shape of {a_name} {a.shape}, got {b.shape}")


def _pair(
    a_name: str, a: Any, b_name: str, b: Any, ndim: int | tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    a_arr = _numeric(a_name, a, ndim)
    b_arr = _numeric(b_name, b, ndim)
    _same_shape(a_name, a_arr, b_name, b_arr)
    return a_arr, b_arr


def _warn_constant(n: int, what: str) -> None:
    if n:
        warnings.warn(
            f"{n} {what} constant; their correlation is undefined and was taken as 0",
            ConstantInputWarning,
            stacklevel=3,
        )


def _columns(a_name: str, a: Any, b_name: str, b: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate (n_samples,) or (n_samples, n_targets) pairs; return 2-D views and 1-D flag."""
    y, yhat = _pair(a_name, a, b_name, b, ndim=(1, 2))
    if y.shape[0] < 2:
        raise ValueError(f"{a_name}: expected at least 2 samples, got shape {y.shape}")
    one_d = y.ndim == 1
    if one_d:
        y, yhat = y[:, None], yhat[:, None]
    return y, yhat, one_d


def _standardize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows centred and scaled to unit norm; constant rows become 0 (returned as a mask)."""
    constant = np.ptp(x, axis=1) == 0  # exact test on the raw data: no rounding artefacts
    z = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.divide(z, norm, out=np.zeros_like(z), where=~constant[:, None])
    return z, constant


def _flat_rows(name: str, x: Any) -> np.ndarray:
    arr = _numeric(name, x)
    if arr.ndim < 2:
        raise ValueError(f"{name}: expected an array of shape (n, d) or (n, ...), got {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def _feature_pair(pred_feats: Any, true_feats: Any, min_n: int = 2) -> tuple[np.ndarray, ...]:
    p = _flat_rows("pred_feats", pred_feats)
    t = _flat_rows("true_feats", true_feats)
    _same_shape("pred_feats", p, "true_feats", t)
    if p.shape[0] < min_n:
        raise ValueError(f"pred_feats: expected at least {min_n} rows, got {p.shape[0]}")
    return p, t


# --------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------
def pearson_r(y_true: Any, y_pred: Any) -> np.ndarray | float:
    """Pearson correlation between measured and predicted responses, per voxel.

    ``r_v = sum_t (y_tv - mean_v(y)) (yhat_tv - mean_v(yhat)) / (n s_y s_yhat)``, the usual
    encoding-model score (e.g. Naselaris et al. 2011, NeuroImage 56:400).

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n_samples, n_voxels) or (n_samples,)
        Measured and predicted responses (at least 2 samples).

    Returns
    -------
    r : ndarray of float64, shape (n_voxels,), or float for 1-D input
        In [-1, 1]. A voxel where either column is constant gets r = 0 and a
        :class:`ConstantInputWarning`.
    """
    y, yhat, one_d = _columns("y_true", y_true, "y_pred", y_pred)
    zy, cy = _standardize_rows(y.T)
    zp, cp = _standardize_rows(yhat.T)
    r = np.clip(np.einsum("vt,vt->v", zy, zp), -1.0, 1.0)
    _warn_constant(int((cy | cp).sum()), "voxel(s) had a constant y_true or y_pred column:")
    return float(r[0]) if one_d else r


def _variance_score(
    num: np.ndarray, den: np.ndarray, constant_true: np.ndarray, name: str
) -> np.ndarray:
    """``1 - num/den``; where y_true is constant: 1 if num == 0 else 0 (as sklearn)."""
    score = np.empty_like(num)
    ok = ~constant_true
    score[ok] = 1.0 - num[ok] / den[ok]
    score[~ok] = np.where(num[~ok] == 0, 1.0, 0.0)
    if (~ok).any():
        warnings.warn(
            f"{int((~ok).sum())} column(s) of y_true are constant; {name} is set to 1 where the "
            "prediction is exact and 0 elsewhere (scikit-learn's force_finite convention)",
            ConstantInputWarning,
            stacklevel=3,
        )
    return score


def explained_variance(y_true: Any, y_pred: Any) -> np.ndarray | float:
    """Explained variance per voxel: ``EV = 1 - Var(y - yhat) / Var(y)``.

    The raw voxelwise score of BraInCoRL (Yu et al., NeurIPS 2025, ``manual_expl_var``);
    unlike :func:`r2` it ignores a constant offset of the prediction. Equal to
    ``sklearn.metrics.explained_variance_score(..., multioutput="raw_values")``.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n_samples, n_voxels) or (n_samples,)

    Returns
    -------
    ev : ndarray of float64, shape (n_voxels,), or float for 1-D input
        At most 1. Where ``y_true`` is constant: 1 if the residual is constant, else 0,
        with a :class:`ConstantInputWarning`.
    """
    y, yhat, one_d = _columns("y_true", y_true, "y_pred", y_pred)
    ev = _variance_score(
        np.var(y - yhat, axis=0), np.var(y, axis=0), np.ptp(y, axis=0) == 0, "explained variance"
    )
    return float(ev[0]) if one_d else ev


def r2(y_true: Any, y_pred: Any) -> np.ndarray | float:
    """Coefficient of determination per voxel: ``R2 = 1 - SS_res / SS_tot``.

    ``SS_res = sum_t (y_t - yhat_t)^2``, ``SS_tot = sum_t (y_t - mean(y))^2``. Equal to
    ``sklearn.metrics.r2_score(..., multioutput="raw_values")``.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n_samples, n_voxels) or (n_samples,)

    Returns
    -------
    r2 : ndarray of float64, shape (n_voxels,), or float for 1-D input
        At most 1, unbounded below. Where ``y_true`` is constant: 1 if the prediction is
        exact, else 0, with a :class:`ConstantInputWarning`.
    """
    y, yhat, one_d = _columns("y_true", y_true, "y_pred", y_pred)
    ss_res = ((y - yhat) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    score = _variance_score(ss_res, ss_tot, np.ptp(y, axis=0) == 0, "R2")
    return float(score[0]) if one_d else score


def noise_ceiling(ncsnr: Any, n_avg: float = 1, as_fraction: bool = False) -> np.ndarray:
    """Noise ceiling from the noise-ceiling SNR, NSD convention.

    ``NC = 100 * ncsnr^2 / (ncsnr^2 + 1/n_avg)`` (Allen et al. 2022, Nat. Neurosci. 25:116,
    and the NSD data manual): the percentage of the variance of an ``n_avg``-trial average
    response that the stimulus can explain.

    Parameters
    ----------
    ncsnr : array-like of float, shape (n_voxels,) or scalar
        Noise-ceiling SNR per voxel, >= 0 (NSD's ``ncsnr.nii.gz``).
    n_avg : float
        Trials averaged per image: 1 for single trials, 3 for NSD's 3-repeat average.
    as_fraction : bool
        Return a fraction in [0, 1) instead of percent.

    Returns
    -------
    nc : ndarray of float64, same shape as ``ncsnr``
        In percent of variance ([0, 100)), or a fraction with ``as_fraction=True``.
    """
    snr = _numeric("ncsnr", np.atleast_1d(ncsnr))
    if (snr < 0).any():
        raise ValueError(f"ncsnr: expected values >= 0, got minimum {snr.min()}")
    return nsd_noise_ceiling(snr, n_avg, as_fraction).reshape(np.shape(ncsnr))


def normalize_by_noise_ceiling(score: Any, nc: Any, percent: bool = True) -> np.ndarray:
    """Express a variance-explained score as a fraction of the noise ceiling.

    ``score / NC``, with ``NC`` as a fraction of variance. Use it with a score that is a
    fraction of variance (R2, explained variance, or squared r), computed on responses
    averaged the same way as ``nc`` (same ``n_avg``).

    Parameters
    ----------
    score : array-like, shape (n_voxels,)
        Per-voxel fraction of variance explained.
    nc : array-like, shape (n_voxels,)
        Noise ceiling per voxel, > 0 (voxels with no explainable variance must be removed
        first, e.g. keep ``nc > 10`` percent).
    percent : bool
        ``nc`` is in percent (the default, as :func:`noise_ceiling` returns it); False if it
        is a fraction.

    Returns
    -------
    ndarray of float64, shape (n_voxels,)
        1 means the model explains all the explainable variance.
    """
    s, c = _pair("score", np.atleast_1d(score), "nc", np.atleast_1d(nc))
    if (c <= 0).any():
        raise ValueError(
            f"nc: expected a noise ceiling > 0 for every voxel, got {int((c <= 0).sum())} "
            "value(s) <= 0; select voxels with a positive noise ceiling first"
        )
    if percent and c.max() <= 1.0:
        warnings.warn(
            "nc: every value is <= 1 but percent=True; if nc is a fraction pass percent=False",
            RuntimeWarning,
            stacklevel=2,
        )
    return s / (c / 100.0 if percent else c)


# --------------------------------------------------------------------------------------
# reconstruction
# --------------------------------------------------------------------------------------
def _images(name: str, x: Any) -> np.ndarray:
    """(n, H, W, 3) uint8 -> /255, or float in [0, 1]; returned as float64."""
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype.kind not in "uf":
        raise ValueError(
            f"{name}: expected images of shape (n, H, W, 3), uint8 or float in [0, 1], "
            f"got {_describe(arr)}"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype.kind != "f":
        raise ValueError(f"{name}: expected uint8 or float images, got {_describe(arr)}")
    out = _numeric(name, arr)
    if out.min() < 0 or out.max() > 1:
        raise ValueError(
            f"{name}: expected float images in [0, 1], got range [{out.min():.3g}, {out.max():.3g}]"
        )
    return out


def _image_pair(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _images("pred", pred)
    t = _images("true", true)
    _same_shape("pred", p, "true", t)
    return p, t


def pixcorr(pred: Any, true: Any) -> float:
    """Pixel correlation: Pearson r between each reconstruction and its image, averaged.

    As MindEye (Scotti et al., NeurIPS 2023; ICML 2024) and MindBridge evaluate it: each
    image is flattened (H*W*3 values) and correlated with its reconstruction. MindEye
    resizes both to 425 px first; pass images at the size you want to compare at.

    Parameters
    ----------
    pred, true : ndarray, shape (n, H, W, 3)
        Reconstructions and ground-truth images, uint8 or float in [0, 1].

    Returns
    -------
    float
        Mean r over the n images. A uniform image counts as r = 0
        (:class:`ConstantInputWarning`).
    """
    p, t = _image_pair(pred, true)
    zp, cp = _standardize_rows(p.reshape(len(p), -1))
    zt, ct = _standardize_rows(t.reshape(len(t), -1))
    _warn_constant(int((cp | ct).sum()), "image pair(s) had a uniform image:")
    return float(np.einsum("nd,nd->n", zp, zt).mean())


def ssim(pred: Any, true: Any) -> float:
    """Structural similarity on grayscale images, averaged over images.

    MindEye's evaluation recipe (Scotti et al. 2023/2024; MindBridge ``src/eval.py``):
    ``skimage.color.rgb2gray`` on both, then ``skimage.metrics.structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1``
    (Wang et al. 2004, IEEE TIP 13:600). MindEye compares at 425 px.

    Parameters
    ----------
    pred, true : ndarray, shape (n, H, W, 3)
        Reconstructions and images, uint8 or float in [0, 1]; H, W >= 11 (the Gaussian
        window is 11 px wide).

    Returns
    -------
    float
        Mean SSIM over the n images, in [-1, 1].
    """
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    p, t = _image_pair(pred, true)
    if min(p.shape[1:3]) < 11:
        raise ValueError(f"pred: expected images of at least 11x11 pixels for SSIM, got {p.shape}")
    gp, gt = rgb2gray(p), rgb2gray(t)
    scores = [
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        for a, b in zip(gp, gt)
    ]
    return float(np.mean(scores))


def two_way_identification(pred_feats: Any, true_feats: Any) -> float:
    """Two-way identification accuracy (chance 0.5).

    For each reconstruction i, the fraction of other images j != i for which
    ``corr(pred_i, true_j) < corr(pred_i, true_i)``, averaged over i. This is the
    orientation of the MindEye / MindBridge code (``r = corrcoef(reals, preds)[:N, N:];
    success = r < diag(r)``, then ``mean(success.sum(0)) / (N - 1)``); the papers' prose
    compares one image with other reconstructions, which is the same in expectation
    (Scotti et al., ICML 2024, Appendix A.9).

    Parameters
    ----------
    pred_feats, true_feats : ndarray, shape (n, d) or (n, ...)
        Features of the reconstructions and of the true images (e.g. AlexNet, CLIP),
        flattened per row; n >= 2.

    Returns
    -------
    float
        In [0, 1]; ties count as failures. Constant rows correlate 0 with everything
        (:class:`ConstantInputWarning`).
    """
    p, t = _feature_pair(pred_feats, true_feats)
    zp, cp = _standardize_rows(p)
    zt, ct = _standardize_rows(t)
    _warn_constant(int(cp.sum() + ct.sum()), "feature row(s) were")
    r = zp @ zt.T  # r[i, j] = corr(pred_i, true_j)
    wins = (r < np.diag(r)[:, None]).sum(axis=1)  # the diagonal never beats itself
    return float(np.mean(wins / (len(p) - 1)))


def retrieval_top1(
    pred_feats: Any,
    true_feats: Any,
    n_candidates: int = 300,
    n_draws: int = 30,
    random_state: int | None = 0,
) -> float:
    """Top-1 retrieval accuracy among random candidate sets (chance 1 / n_candidates).

    MindEye's protocol (Scotti et al. 2023/2024): draw ``n_candidates`` test samples without
    replacement; for each drawn sample i, retrieval is correct when ``true_i`` has the
    highest cosine similarity to ``pred_i`` among the drawn ``true`` rows; average over the
    samples and over ``n_draws`` draws. With ``pred`` = brain-derived embeddings this is
    "image retrieval"; swap the arguments for "brain retrieval".

    Parameters
    ----------
    pred_feats, true_feats : ndarray, shape (n, d) or (n, ...)
        Paired embeddings, flattened per row; n >= n_candidates.
    n_candidates : int
        Candidate-set size (300 in MindEye, chance 1/300).
    n_draws : int
        Number of random candidate sets.
    random_state : int or None
        Seed of ``numpy.random.default_rng`` for the draws.

    Returns
    -------
    float
        In [0, 1]. Correct means strictly the highest similarity (a tie is a failure). A
        zero row has cosine 0 with everything (:class:`ConstantInputWarning`).
    """
    p, t = _feature_pair(pred_feats, true_feats)
    n = len(p)
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, int | np.integer):
        raise ValueError(f"n_candidates: expected an int, got {n_candidates!r}")
    if not 2 <= n_candidates <= n:
        raise ValueError(
            f"n_candidates: expected 2 <= n_candidates <= n samples ({n}), got {n_candidates}"
        )
    if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 1:
        raise ValueError(f"n_draws: expected an int >= 1, got {n_draws!r}")
    pn, tn = np.linalg.norm(p, axis=1), np.linalg.norm(t, axis=1)
    _warn_constant(int((pn == 0).sum() + (tn == 0).sum()), "feature row(s) were zero (i.e.")
    p = np.divide(p, pn[:, None], out=np.zeros_like(p), where=pn[:, None] > 0)
    t = np.divide(t, tn[:, None], out=np.zeros_like(t), where=tn[:, None] > 0)
    rng = np.random.default_rng(random_state)
    scores = []
    for _ in range(n_draws):
        idx = rng.choice(n, size=n_candidates, replace=False)
        sim = p[idx] @ t[idx].T
        own = np.diag(sim).copy()  # np.diag may return a view of sim
        np.fill_diagonal(sim, -np.inf)
        scores.append(np.mean(own > sim.max(axis=1)))
    return float(np.mean(scores))


def correlation_distance(pred_feats: Any, true_feats: Any) -> float:
    """Mean correlation distance ``1 - r(pred_i, true_i)`` over paired rows (lower is better).

    MindEye's EffNet-B1 and SwAV scores: ``scipy.spatial.distance.correlation`` between the
    features of each reconstruction and of its image, averaged (Scotti et al. 2023/2024).

    Parameters
    ----------
    pred_feats, true_feats : ndarray, shape (n, d) or (n, ...)

    Returns
    -------
    float
        In [0, 2]. A constant row counts as r = 0, distance 1 (:class:`ConstantInputWarning`).
    """
    p, t = _feature_pair(pred_feats, true_feats, min_n=1)
    zp, cp = _standardize_rows(p)
    zt, ct = _standardize_rows(t)
    _warn_constant(int((cp | ct).sum()), "row pair(s) had a constant row:")
    return float(np.mean(1.0 - np.einsum("nd,nd->n", zp, zt)))


# --------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------
def _labels(name: str, y: Any) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array of labels, got {_describe(arr)}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: expected finite labels, got NaN/inf")
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name}: expected integer class labels, got non-integer floats")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer class labels, got {_describe(arr)}")
    elif arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: expected labels below 2**63, got {int(arr.max())}")
    # one signed dtype for every caller: differences such as |y_pred - y_true| wrap
    # around in unsigned (uint8) arithmetic, and products overflow in narrow ints
    return arr.astype(np.int64, copy=False)


def _label_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    yt, yp = _labels("y_true", y_true), _labels("y_pred", y_pred)
    _same_shape("y_true", yt, "y_pred", yp)
    return yt, yp


def _scores(y_true: Any, scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate (n,) labels, (n, n_classes) scores and the class of each score column."""
    yt = _labels("y_true", y_true)
    s = _numeric("scores", scores, ndim=2)
    if s.shape[0] != yt.shape[0] or s.shape[1] < 2:
        raise ValueError(
            f"scores: expected shape (n_samples, n_classes) = ({yt.shape[0]}, >= 2), got {s.shape}"
        )
    cls = np.arange(s.shape[1]) if labels is None else _labels("labels", labels)
    if cls.shape != (s.shape[1],) or np.unique(cls).size != cls.size:
        raise ValueError(
            f"labels: expected {s.shape[1]} unique class labels (one per score column), "
            f"got {cls.tolist()}"
        )
    unknown = np.setdiff1d(yt, cls)
    if unknown.size:
        raise ValueError(
            f"y_true: labels {unknown.tolist()[:5]} have no score column; expected values of "
            f"labels {cls.tolist()}"
        )
    return yt, s, cls


def _ranked(s: np.ndarray) -> np.ndarray:
    """Column indices by decreasing score; ties broken towards the higher column index,
    as ``sklearn.metrics.top_k_accuracy_score`` (stable argsort, reversed)."""
    return np.argsort(s, axis=1, kind="stable")[:, ::-1]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions, ``mean(y_pred == y_true)``.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)

    Returns
    -------
    float
        In [0, 1].
    """
    yt, yp = _label_pair(y_true, y_pred)
    return float(np.mean(yt == yp))


def confusion(y_true: Any, y_pred: Any, n_classes: int | None = None) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of samples of true class i predicted as j.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        Labels in ``0 .. n_classes - 1``.
    n_classes : int or None
        Number of classes; default ``max(y_true, y_pred) + 1``.

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
        Rows: true class, columns: predicted class (as ``sklearn.metrics.confusion_matrix``).
    """
    yt, yp = _label_pair(y_true, y_pred)
    if min(yt.min(), yp.min()) < 0:
        raise ValueError("y_true: expected labels >= 0 (0 .. n_classes - 1), got negative labels")
    top = int(max(yt.max(), yp.max())) + 1
    if n_classes is None:
        n_classes = top
    elif isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
        raise ValueError(f"n_classes: expected an int, got {n_classes!r}")
    elif n_classes < top:
        raise ValueError(f"n_classes: expected at least max label + 1 = {top}, got {n_classes}")
    flat = np.bincount(yt * n_classes + yp, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def weighted_f1(y_true: Any, y_pred: Any) -> float:
    """F1 score per class, averaged with weights = class support in ``y_true``.

    ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`` (0 when the class is never true nor
    predicted), over the classes of ``y_true`` and ``y_pred``; the weighted mean equals
    ``sklearn.metrics.f1_score(average="weighted")``. HiSTN's headline metric (its
    ``Metrics.py``).

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)

    Returns
    -------
    float
        In [0, 1].
    """
    yt, yp = _label_pair(y_true, y_pred)
    classes, inv = np.unique(np.concatenate([yt, yp]), return_inverse=True)
    cm = confusion(inv[: len(yt)], inv[len(yt) :], n_classes=classes.size)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (support - tp)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(np.sum(f1 * support) / support.sum())


def top_k_accuracy(y_true: Any, scores: Any, k: int = 2, labels: Any = None) -> float:
    """Fraction of samples whose true class is among the k highest scores.

    Equal to ``sklearn.metrics.top_k_accuracy_score(y_true, scores, k=k, labels=labels)``,
    ties included. HiSTN restricts the score columns to the classes present in the test
    set before calling it; pass ``scores[:, present]`` and ``labels=present`` to do the same.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    scores : ndarray, shape (n, n_classes)
        Class scores (probabilities or logits).
    k : int
        Number of top classes, 1 <= k < n_classes.
    labels : array-like of int, shape (n_classes,), optional
        The class of each score column; default ``0 .. n_classes - 1``.

    Returns
    -------
    float
        In [0, 1].
    """
    yt, s, cls = _scores(y_true, scores, labels)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k < s.shape[1]:
        raise ValueError(f"k: expected an int in [1, n_classes - 1 = {s.shape[1] - 1}], got {k!r}")
    top = cls[_ranked(s)[:, :k]]
    return float(np.mean((top == yt[:, None]).any(axis=1)))


def top2_accuracy(y_true: Any, scores: Any, labels: Any = None) -> float:
    """Top-2 accuracy, HiSTN's ``Top2Acc`` (see :func:`top_k_accuracy` with ``k=2``)."""
    return top_k_accuracy(y_true, scores, k=2, labels=labels)


def seq2hr(y_true: Any, scores: Any, labels: Any = None) -> float:
    """Seq2HR: the two best guesses are adjacent ordinal classes and one of them is right.

    HiSTN (``adj_score`` in its ``Metrics.py``): with ``top1``, ``top2`` the classes of the
    two highest scores, ``match = |top1 - top2| == 1`` and
    ``Seq2HR = mean(match & ((top1 == y) | (top2 == y)))``; the last entry of HiSTN's
    ``closeness`` vector.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
        Ordinal labels (e.g. 5-point ratings).
    scores : ndarray, shape (n, n_classes)
    labels : array-like of int, shape (n_classes,), optional
        Ordinal value of each score column; default ``0 .. n_classes - 1``. Adjacency is
        measured on these values.

    Returns
    -------
    float
        In [0, 1]; never above :func:`top2_accuracy`.
    """
    yt, s, cls = _scores(y_true, scores, labels)
    order = _ranked(s)
    top1, top2 = cls[order[:, 0]], cls[order[:, 1]]
    match = np.abs(top1 - top2) == 1
    return float(np.mean(match & ((top1 == yt) | (top2 == yt))))


def tri_p(y_true: Any, y_pred: Any) -> float:
    """Tri-P: fraction of predictions within one ordinal class of the truth.

    ``mean(|y_pred - y_true| <= 1)``. HiSTN reports it in percent as ``100 - off/N*100``
    with ``off`` the confusion-matrix mass more than one class off the diagonal
    (``count_off_neibor``); this returns the same quantity as a fraction.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)

    Returns
    -------
    float
        In [0, 1].
    """
    yt, yp = _label_pair(y_true, y_pred)
    return float(np.mean(np.abs(yp - yt) <= 1))


# --------------------------------------------------------------------------------------
# 3D
# --------------------------------------------------------------------------------------
def chamfer_distance(a: Any, b: Any, squared: bool = False) -> float:
    """Symmetric Chamfer distance between two point clouds.

    ``CD = 1/2 [ mean_{x in a} min_{y in b} d(x, y) + mean_{y in b} min_{x in a} d(x, y) ]``
    with ``d`` the Euclidean distance, or its square with ``squared=True``. Conventions
    differ between papers: PyTorch3D's ``chamfer_distance`` sums the two directions of
    squared distances, i.e. ``2 * chamfer_distance(a, b, squared=True)`` (Fan et al. 2017,
    CVPR, for the point-set distance).

    Parameters
    ----------
    a : ndarray, shape (n, 3)
    b : ndarray, shape (m, 3)
        Point clouds in the same units (the result has those units, squared if asked).
    squared : bool
        Average squared distances instead of distances.

    Returns
    -------
    float
        >= 0; 0 only if every point of each cloud lies on a point of the other.
    """
    from scipy.spatial import cKDTree

    pa = _numeric("a", a, ndim=2)
    pb = _numeric("b", b, ndim=2)
    if pa.shape[1] != 3:
        raise ValueError(f"a: expected points of shape (n, 3), got {pa.shape}")
    if pb.shape[1] != 3:
        raise ValueError(f"b: expected points of shape (m, 3), got {pb.shape}")
    d_ab = cKDTree(pb).query(pa, k=1)[0]
    d_ba = cKDTree(pa).query(pb, k=1)[0]
    if squared:
        d_ab, d_ba = d_ab**2, d_ba**2
    return float(0.5 * (d_ab.mean() + d_ba.mean()))


def _occupancy(name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iuf" and arr.size and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise ValueError(
        f"{name}: expected a boolean occupancy grid (or 0/1 values), got {_describe(arr)}"
    )


def voxel_iou(a: Any, b: Any) -> float:
    """Intersection over union of two occupancy grids, ``|a & b| / |a | b|``.

    Parameters
    ----------
    a, b : ndarray of bool, same shape (e.g. (32, 32, 32))
        Occupied voxels (0/1 numbers are accepted).

    Returns
    -------
    float
        In [0, 1]. Two empty grids are identical: IoU = 1.
    """
    ga, gb = _occupancy("a", a), _occupancy("b", b)
    _same_shape("a", ga, "b", gb)
    union = np.logical_or(ga, gb).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(ga, gb).sum() / union)
