"""Evaluation protocols for trial-labelled EEG (DREAMER), named for what they test.

Every emotion rating in DREAMER belongs to a whole film clip (a *trial*), and every
trial yields many windows. Where the train/test line is drawn decides what a score
means (REFERENCES C 1.8, 3; EEG-Conformer #52, ECLGCNN #5, braindecode #1144):

``sd_time``  Subject-dependent, k contiguous time blocks inside every trial (HiSTN's
             ``Dreamer_10cv.py``, k = 10). Test block i of *every* trial, train on the other
             blocks of the same trials. **Leaks**: train and test windows come from the same
             clip recording, seconds apart, with the same label, so a model can score by
             recognising the trial (its electrode gains, its slow rhythms) rather than the
             emotion. It measures within-recording interpolation, not emotion recognition.
``sd_trial`` Subject-dependent, grouped by trial: the clips are split into k folds and
             no clip is in both train and test (TorchEEG ``KFoldPerSubjectGroupbyTrial``).
``si_finetune`` HiSTN's subject-independent protocol: pre-train on all other subjects,
             fine-tune on the first ``n_calib`` windows (10 s) of every trial of the test
             subject, test on the rest of those same trials. Not zero-shot: the calibration
             windows share trials (and labels) with the test windows, the within-trial
             leak above in a milder form.
``loso``     Strict leave-one-subject-out: train on the other subjects, test on all windows
             of the held-out subject, no calibration.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from data_loaders.schema import EEGDataset
from decoding._checks import check_int
from decoding.evaluation.metrics import (
    accuracy,
    confusion,
    seq2hr,
    top2_accuracy,
    tri_p,
    weighted_f1,
)

PROTOCOLS: dict[str, str] = {
    "sd_time": "subject-dependent, time blocks inside each trial (HiSTN's 10-fold; leaks "
               "within-trial information: same clip and label in train and test)",
    "sd_trial": "subject-dependent, grouped by trial (no clip in both train and test)",
    "si_finetune": "subject-independent pre-training + fine-tuning on the first 10 s of each "
                   "test trial (HiSTN's; calibration shares trials with the test windows)",
    "loso": "strict leave-one-subject-out (no calibration)",
}


@dataclass(frozen=True)
class Fold:
    """One train/test split (indices into the dataset).

    ``calib`` holds the fine-tuning windows of ``si_finetune`` (else ``None``).
    """

    protocol: str
    subject: int
    fold: int
    train: np.ndarray
    test: np.ndarray
    calib: np.ndarray | None = field(default=None)


def window_position(ds: EEGDataset) -> np.ndarray:
    """Index of each window within its (subject, trial), in dataset order.

    Assumes windows are stored in time order inside each trial, as
    :func:`data_loaders.dreamer.load_dreamer` and :func:`data_loaders.eeg.load_eeg` do.
    """
    pos = np.zeros(len(ds), dtype=np.int64)
    trial = np.asarray(ds.trial).astype(np.int64)  # any integer dtype (uint8 wraps)
    keys = np.asarray(ds.subject).astype(np.int64) * (int(trial.max()) + 1) + trial
    for k in np.unique(keys):
        idx = np.flatnonzero(keys == k)
        pos[idx] = np.arange(idx.size)
    return pos


def contiguous_segments(subject: np.ndarray, trial: np.ndarray, position: np.ndarray
                        ) -> np.ndarray:
    """Recording id per selected window: a new id starts where the subject or trial
    changes or the window position does not advance by one (a held-out block between).

    Consecutive rows with one id are consecutive windows of one continuous recording, so
    an estimator may draw random crops across them (HiSTN's training, ``segments=``).
    """
    subject, trial, position = (np.asarray(a) for a in (subject, trial, position))
    new = np.ones(position.shape[0], dtype=bool)
    new[1:] = (subject[1:] != subject[:-1]) | (trial[1:] != trial[:-1]) | (
        position[1:] != position[:-1] + 1)
    return np.cumsum(new) - 1


def _subjects(ds: EEGDataset, subjects: Sequence[int] | None) -> list[int]:
    present = np.unique(ds.subject).tolist()
    if subjects is None:
        return present
    missing = [s for s in subjects if s not in present]
    if missing:
        raise ValueError(f"subjects: {missing} not in the dataset (subjects {present})")
    return list(subjects)


def sd_time_folds(ds: EEGDataset, n_folds: int = 10, subjects: Sequence[int] | None = None,
                  gap: int = 0) -> Iterator[Fold]:
    """HiSTN's subject-dependent split: fold i tests the i-th time block of every trial.

    Parameters
    ----------
    n_folds : int
        Contiguous time blocks per trial (10 in the paper: 6-s blocks of the last 60 s).
    gap : int
        Windows dropped from training on each side of the test block (0 as in the paper,
        whose non-overlapping crops only avoid shared samples).
    """
    n_folds = check_int("n_folds", n_folds, 2)
    gap = check_int("gap", gap, 0)
    pos = window_position(ds)
    for s in _subjects(ds, subjects):
        in_s = ds.subject == s
        length = np.zeros(len(ds), dtype=np.int64)
        for t in np.unique(ds.trial[in_s]):
            m = in_s & (ds.trial == t)
            length[m] = m.sum()
        block = np.where(in_s, (pos * n_folds) // np.maximum(length, 1), -1)
        for i in range(n_folds):
            test = np.flatnonzero(in_s & (block == i))
            lo = np.where(in_s, (i * length + n_folds - 1) // n_folds, 0)  # first test pos
            hi = np.where(in_s, ((i + 1) * length + n_folds - 1) // n_folds, 0)
            near = (pos >= lo - gap) & (pos < hi + gap)
            train = np.flatnonzero(in_s & (block != i) & ~near)
            if test.size and train.size:
                yield Fold("sd_time", s, i, train, test)


def sd_trial_folds(ds: EEGDataset, n_folds: int = 6, subjects: Sequence[int] | None = None,
                   random_state: int | None = 0) -> Iterator[Fold]:
    """Subject-dependent, grouped by trial: each trial's windows are all train or all test.

    Trials are shuffled (``random_state``) and dealt into ``n_folds`` folds (18 clips ->
    3 per fold for 6 folds).
    """
    rng = np.random.default_rng(random_state)
    for s in _subjects(ds, subjects):
        in_s = ds.subject == s
        trials = np.unique(ds.trial[in_s])
        if not (isinstance(n_folds, int | np.integer) and not isinstance(n_folds, bool)
                and 2 <= n_folds <= trials.size):
            raise ValueError(f"n_folds: expected an int in [2, {trials.size}] (trials of "
                             f"subject {s}), got {n_folds!r}")
        perm = rng.permutation(trials)
        for i in range(n_folds):
            held = perm[i::n_folds]
            test_mask = in_s & np.isin(ds.trial, held)
            yield Fold("sd_trial", s, i, np.flatnonzero(in_s & ~test_mask),
                       np.flatnonzero(test_mask))


def si_finetune_folds(ds: EEGDataset, n_calib: int = 10,
                      subjects: Sequence[int] | None = None) -> Iterator[Fold]:
    """HiSTN's subject-independent protocol: other subjects train, the first ``n_calib``
    windows of every trial of the test subject fine-tune, the rest test.

    ``n_calib = 10`` is the paper's 10 s for non-overlapping 1-s windows (the paper crops
    its 10 s with a 0.25-s stride; pass the loader's overlap and a larger ``n_calib``).
    """
    n_calib = check_int("n_calib", n_calib, 1)
    pos = window_position(ds)
    for s in _subjects(ds, subjects):
        in_s = ds.subject == s
        calib = np.flatnonzero(in_s & (pos < n_calib))
        test = np.flatnonzero(in_s & (pos >= n_calib))
        if not test.size:
            raise ValueError(f"n_calib: {n_calib} windows leave no test window in the trials "
                             f"of subject {s}")
        yield Fold("si_finetune", s, 0, np.flatnonzero(~in_s), test, calib)


def loso_folds(ds: EEGDataset, subjects: Sequence[int] | None = None) -> Iterator[Fold]:
    """Leave-one-subject-out: train on the others, test on every window of the subject."""
    for s in _subjects(ds, subjects):
        in_s = ds.subject == s
        yield Fold("loso", s, 0, np.flatnonzero(~in_s), np.flatnonzero(in_s))


def make_folds(protocol: str, ds: EEGDataset, **kwargs) -> Iterator[Fold]:
    """Folds of a protocol by name (see :data:`PROTOCOLS`)."""
    makers = {"sd_time": sd_time_folds, "sd_trial": sd_trial_folds,
              "si_finetune": si_finetune_folds, "loso": loso_folds}
    if protocol not in makers:
        raise ValueError(f"protocol: expected one of {list(makers)}, got {protocol!r}")
    return makers[protocol](ds, **kwargs)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, y_pred: np.ndarray | None = None
                           ) -> dict[str, float]:
    """Accuracy, weighted F1, Top-2 accuracy, Seq2HR and Tri-P (HiSTN ``Metrics.py``).

    Top-2 and Seq2HR rank all ``n_classes`` score columns (HiSTN restricts them to the
    classes present in the test set, which differs when a class is absent).
    """
    y_pred = proba.argmax(axis=1) if y_pred is None else y_pred
    return {"accuracy": accuracy(y_true, y_pred), "weighted_f1": weighted_f1(y_true, y_pred),
            "top2_accuracy": top2_accuracy(y_true, proba), "seq2hr": seq2hr(y_true, proba),
            "tri_p": tri_p(y_true, y_pred)}


def _full_proba(est, proba: np.ndarray, n_classes: int) -> np.ndarray:
    """Scores over all classes ``0..n_classes-1``: an estimator that saw only some classes
    in a fold (``classes_`` a subset) gets score 0 for the others."""
    cls = np.asarray(getattr(est, "classes_", np.arange(proba.shape[1])))
    if proba.shape[1] == cls.size and (cls.size < n_classes or cls.max() >= proba.shape[1]):
        full = np.zeros((proba.shape[0], max(n_classes, int(cls.max()) + 1)))
        full[:, cls] = proba
        return full
    return proba


def evaluate_protocol(make_estimator: Callable[[], object], ds: EEGDataset, protocol: str,
                      target: str, max_folds: int | None = None, progress=None,
                      fine_tune_kwargs: dict | None = None, **fold_kwargs) -> dict:
    """Fit a fresh estimator per fold and score it.

    Parameters
    ----------
    make_estimator : callable
        Returns an unfitted estimator with ``fit(X, y)`` and ``predict_proba(X)`` (and
        ``fine_tune`` for ``si_finetune``).
    ds : EEGDataset
    protocol : str
        A key of :data:`PROTOCOLS`.
    target : str
        Label to predict (``ds.labels[target]``).
    max_folds : int | None
        Stop after this many folds (over all subjects), for quick runs.
    progress : callable | None
        Wraps the fold iterator (e.g. ``run.progress``).
    fine_tune_kwargs : dict | None
        Passed to ``fine_tune`` (e.g. ``n_epochs``).
    **fold_kwargs
        Passed to the fold maker (``n_folds``, ``subjects``, ``gap``, ``n_calib``).

    Returns
    -------
    dict
        ``folds``: one dict per fold (subject, fold, sizes, metrics, ``train_time_s``);
        ``mean``: metrics averaged over folds; ``y_true``, ``y_pred``, ``proba``: pooled
        test predictions; ``confusion``: pooled confusion matrix.
    """
    if target not in ds.labels:
        raise ValueError(f"target: {target!r} is not a label of the dataset "
                         f"(labels: {sorted(ds.labels)})")
    y = np.asarray(ds.labels[target])
    if y.dtype.kind not in "iu" or y.size == 0 or y.min() < 0:
        raise ValueError(f"target: labels {target!r} must be non-empty integer classes >= 0, "
                         f"got {y.dtype} {y.shape}")
    y = y.astype(np.int64)  # signed: metrics and fold arithmetic on uint8 would wrap
    n_classes = int(y.max()) + 1
    if max_folds is not None:
        max_folds = check_int("max_folds", max_folds, 1)
    folds = list(make_folds(protocol, ds, **fold_kwargs))
    if max_folds is not None:
        folds = folds[:max_folds]
    rows, yt_all, yp_all, pr_all = [], [], [], []
    it = progress(folds) if progress is not None else folds
    pos = window_position(ds)

    def segments(est_method, idx) -> dict:
        # estimators that crop across windows (HiSTN, EEGNet) learn where recordings run on
        if "segments" not in inspect.signature(est_method).parameters:
            return {}
        return {"segments": contiguous_segments(ds.subject[idx], ds.trial[idx], pos[idx])}

    for f in it:
        est = make_estimator()
        t0 = time.perf_counter()
        est.fit(ds.X[f.train], y[f.train], **segments(est.fit, f.train))
        if f.calib is not None:
            kw = dict(fine_tune_kwargs or {})
            if "X_pretrain" in inspect.signature(est.fine_tune).parameters:
                kw.update(X_pretrain=ds.X[f.train], y_pretrain=y[f.train])
            kw.update(segments(est.fine_tune, f.calib))
            est.fine_tune(ds.X[f.calib], y[f.calib], **kw)
        train_time = time.perf_counter() - t0
        proba = _full_proba(est, est.predict_proba(ds.X[f.test]), n_classes)
        pred = est.predict(ds.X[f.test])
        m = classification_metrics(y[f.test], proba, pred)
        rows.append({"subject": f.subject, "fold": f.fold, "n_train": int(f.train.size),
                     "n_test": int(f.test.size), "train_time_s": train_time, **m})
        yt_all.append(y[f.test])
        yp_all.append(pred)
        pr_all.append(proba)
    if not rows:
        raise ValueError(f"protocol: {protocol!r} produced no fold on this dataset")
    keys = ["accuracy", "weighted_f1", "top2_accuracy", "seq2hr", "tri_p", "train_time_s"]
    yt, yp = np.concatenate(yt_all), np.concatenate(yp_all)
    n_classes = pr_all[0].shape[1]
    return {"protocol": protocol, "target": target, "folds": rows,
            "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
            "y_true": yt, "y_pred": yp, "proba": np.concatenate(pr_all),
            "confusion": confusion(yt, yp, n_classes=max(n_classes, int(yt.max()) + 1))}
