"""Protocols: fold structure from first principles, metrics against scikit-learn on the same
splits, and the within-trial leak made visible (trial fingerprint + labels unrelated to
the signal: the paper's time split scores high, the trial-grouped split does not)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from data_loaders.schema import EEGDataset
from decoding.evaluation.protocols import (
    evaluate_protocol,
    loso_folds,
    make_folds,
    sd_time_folds,
    sd_trial_folds,
    si_finetune_folds,
    window_position,
)


def _dataset(n_subjects=3, n_trials=6, n_win=10, n_ch=4, n_t=16, fingerprint=1.0,
             signal=0.0, seed=0):
    """Windows with a per-trial channel offset (fingerprint) and a label per trial; the
    signal adds ``signal * label`` to channel 0."""
    rng = np.random.default_rng(seed)
    X, y, subj, trial = [], [], [], []
    for s in range(n_subjects):
        labels = rng.permutation(np.arange(n_trials) % 3)
        for t in range(n_trials):
            off = fingerprint * rng.standard_normal(n_ch)
            x = rng.standard_normal((n_win, n_ch, n_t)) + off[None, :, None]
            x[:, 0] += signal * labels[t]
            X.append(x)
            y += [labels[t]] * n_win
            subj += [s] * n_win
            trial += [t] * n_win
    return EEGDataset(X=np.concatenate(X).astype(np.float32), sfreq=16.0,
                      ch_names=[f"C{i}" for i in range(n_ch)], labels={"y": np.array(y)},
                      subject=np.array(subj), trial=np.array(trial))


def _clf():
    return make_pipeline(FunctionTransformer(lambda X: X.mean(-1)), StandardScaler(),
                         LogisticRegression(max_iter=500))


def test_window_position():
    ds = _dataset(n_subjects=2, n_trials=2, n_win=3)
    np.testing.assert_array_equal(window_position(ds), np.tile([0, 1, 2], 4))


def test_sd_time_folds_are_time_blocks_of_every_trial():
    ds = _dataset(n_win=10)
    folds = list(sd_time_folds(ds, n_folds=5, subjects=[1]))
    assert len(folds) == 5
    pos = window_position(ds)
    seen = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(ds.subject == 1))
    for i, f in enumerate(folds):
        assert np.intersect1d(f.train, f.test).size == 0
        assert set(pos[f.test]) == {2 * i, 2 * i + 1}          # block i of 5 (2 windows)
        # every trial of the subject is in both train and test: the within-trial leak
        assert set(ds.trial[f.test]) == set(ds.trial[f.train]) == set(range(6))
    # gap drops the neighbours of the test block from training
    f = list(sd_time_folds(ds, n_folds=5, subjects=[1], gap=1))[2]
    assert set(pos[f.train]) == {0, 1, 2, 7, 8, 9}


def test_sd_trial_folds_never_share_a_trial():
    ds = _dataset()
    folds = list(sd_trial_folds(ds, n_folds=3))
    assert len(folds) == 9
    for f in folds:
        assert ds.subject[f.train].tolist() == [f.subject] * f.train.size
        assert not set(ds.trial[f.train]) & set(ds.trial[f.test])
        assert f.train.size + f.test.size == (ds.subject == f.subject).sum()
    with pytest.raises(ValueError, match="n_folds"):
        list(sd_trial_folds(ds, n_folds=7))


def test_cross_subject_folds():
    ds = _dataset()
    pos = window_position(ds)
    (f,) = list(si_finetune_folds(ds, n_calib=3, subjects=[2]))
    assert set(ds.subject[f.train]) == {0, 1}
    assert set(pos[f.calib]) == {0, 1, 2} and set(ds.subject[f.calib]) == {2}
    assert set(pos[f.test]) == set(range(3, 10)) and set(ds.subject[f.test]) == {2}
    folds = list(loso_folds(ds))
    assert [f.subject for f in folds] == [0, 1, 2]
    for f in folds:
        assert f.subject not in set(ds.subject[f.train])
        assert (ds.subject[f.test] == f.subject).all()
    with pytest.raises(ValueError, match="protocol"):
        make_folds("kfold", ds)
    with pytest.raises(ValueError, match=r"subjects: \[7\]"):
        list(loso_folds(ds, subjects=[7]))


def test_metrics_match_sklearn_on_the_same_splits():
    ds = _dataset(n_trials=12, signal=2.0, fingerprint=0.3)
    res = evaluate_protocol(_clf, ds, "sd_trial", "y", n_folds=3)
    y = ds.labels["y"]
    accs, f1s, top2 = [], [], []
    for f in sd_trial_folds(ds, n_folds=3):
        clf = _clf().fit(ds.X[f.train], y[f.train])
        pred = clf.predict(ds.X[f.test])
        proba = np.zeros((f.test.size, 3))
        proba[:, clf.classes_] = clf.predict_proba(ds.X[f.test])
        accs.append(accuracy_score(y[f.test], pred))
        f1s.append(f1_score(y[f.test], pred, average="weighted"))
        top2.append(top_k_accuracy_score(y[f.test], proba, k=2, labels=[0, 1, 2]))
    assert res["mean"]["accuracy"] == pytest.approx(np.mean(accs))
    assert res["mean"]["weighted_f1"] == pytest.approx(np.mean(f1s))
    assert res["mean"]["top2_accuracy"] == pytest.approx(np.mean(top2))
    assert res["confusion"].sum() == len(ds)
    assert res["mean"]["accuracy"] > 0.6                      # a real effect is found


def test_within_trial_split_leaks_trial_identity():
    """Labels carry no signal, only each trial has a fingerprint: the paper's time split
    scores far above chance by recognising trials, the trial-grouped split does not."""
    ds = _dataset(n_subjects=2, n_trials=9, fingerprint=1.5, signal=0.0, seed=1)
    leaky = evaluate_protocol(_clf, ds, "sd_time", "y", n_folds=5)["mean"]["accuracy"]
    strict = evaluate_protocol(_clf, ds, "sd_trial", "y", n_folds=3)["mean"]["accuracy"]
    assert leaky > 0.8
    assert strict < 0.5                                         # chance is 1/3
