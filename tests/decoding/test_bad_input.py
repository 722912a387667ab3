"""Bad-input catalogue of decoding (issue 14): the 2-D estimators (RidgeEncoder, BraInCoRL,
DE + SVM), devices, metrics and protocols refuse bad input with the exception type
asserted and a message that names the field; hyper-parameters must be finite. Then the
label class of the issue: metrics give the int64 answer for every integer dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score

from data_loaders.schema import EEGDataset
from decoding._device import resolve_device
from decoding.decoders.de_svm import DESVM, DEFeatureSVM
from decoding.encoders.braincorl import BraInCoRL, MetaTask
from decoding.encoders.ridge import RidgeEncoder
from decoding.evaluation import metrics
from decoding.evaluation.protocols import evaluate_protocol, make_folds
from tests.decoding.test_protocols import _clf, _dataset

NAN, INF = float("nan"), float("inf")
NO_CUDA = not torch.cuda.is_available()
RNG = np.random.default_rng(0)
X = RNG.standard_normal((12, 4))
Y = X @ RNG.standard_normal((4, 3))
XN = X.copy()
XN[1, 2] = NAN
YN = Y.copy()
YN[4, 1] = NAN
LAB = np.arange(12) % 3
EEG = RNG.standard_normal((12, 2, 128)).astype(np.float32)
TINY = dict(d_model=8, n_layers=1, n_heads=2, ffn_dim=8, n_registers=1, batch_size=4,
            n_steps=2, min_context=4, max_context=20, n_query=3, verbose=False)


def ridge(**kw):
    return RidgeEncoder(**kw).fit(X, Y)


def bc(**kw):
    return BraInCoRL(**{**TINY, **kw}).fit(X, Y)


def svm(X_=X, y=LAB, **kw):
    return DEFeatureSVM(**kw).fit(X_, y)


def desvm(**kw):
    return DESVM(**{"n_classes": 3, **kw}).fit(EEG, LAB)


def fitted_ridge():
    return RidgeEncoder().fit(X, Y)


CASES = [
    # -- RidgeEncoder: sklearn's messages (they name X / y), and its own fields
    ("ridge NaN X", lambda: RidgeEncoder().fit(XN, Y), ValueError, "Input X contains NaN"),
    ("ridge inf X", lambda: RidgeEncoder().fit(np.where(np.isnan(XN), INF, XN), Y), ValueError,
     "Input X contains infinity"),
    ("ridge NaN y", lambda: RidgeEncoder().fit(X, YN), ValueError, "Input y contains NaN"),
    ("ridge NaN in predict", lambda: fitted_ridge().predict(XN), ValueError,
     "Input X contains NaN"),
    ("ridge predict features", lambda: fitted_ridge().predict(X[:, :3]), ValueError,
     "X has 3 features"),
    ("ridge predict before fit", lambda: RidgeEncoder().predict(X), NotFittedError,
     "RidgeEncoder"),
    ("ridge 1-D X", lambda: RidgeEncoder().fit(X[:, 0], Y), ValueError, "Expected 2D array"),
    ("ridge rows differ", lambda: RidgeEncoder().fit(X, Y[:10]), ValueError,
     "inconsistent numbers of samples"),
    ("ridge string X", lambda: RidgeEncoder().fit(np.full((12, 4), "a"), Y), ValueError,
     "X: dtype='numeric'"),
    ("braincorl string Y", lambda: BraInCoRL(**TINY).fit(X, np.full((12, 3), "a")), ValueError,
     "Y: dtype='numeric'"),
    ("ridge y None", lambda: RidgeEncoder().fit(X, None), ValueError, "requires y"),
    ("ridge too few samples", lambda: RidgeEncoder().fit(X[:4], Y[:4]), ValueError,
     "n_samples=4"),
    ("ridge cv 1", lambda: ridge(cv=1), ValueError, "cv"),
    ("ridge cv bool", lambda: ridge(cv=True), ValueError, "cv"),
    ("ridge cv float", lambda: ridge(cv=2.5), ValueError, "cv"),
    ("ridge alphas negative", lambda: ridge(alphas=[-1.0]), ValueError, "alphas"),
    ("ridge alphas nan", lambda: ridge(alphas=[1.0, NAN]), ValueError, "alphas"),
    ("ridge alphas empty", lambda: ridge(alphas=[]), ValueError, "alphas"),
    ("ridge backend", lambda: ridge(backend="jax"), ValueError, "backend"),
    ("ridge n_targets_batch", lambda: ridge(n_targets_batch=0), ValueError, "n_targets_batch"),
    pytest.param("ridge torch_cuda without CUDA", lambda: ridge(backend="torch_cuda"),
                 ValueError, "backend", marks=pytest.mark.skipif(not NO_CUDA,
                                                                 reason="CUDA present")),
    # -- BraInCoRL: finite hyper-parameters, the pretrained folder, its inputs
    ("braincorl lr nan", lambda: bc(lr=NAN), ValueError, "lr"),
    ("braincorl lr inf", lambda: bc(lr=INF), ValueError, "lr"),
    ("braincorl lr negative", lambda: bc(lr=-1.0), ValueError, "lr"),
    ("braincorl lr zero", lambda: bc(lr=0.0), ValueError, "lr"),
    ("braincorl weight_decay negative", lambda: bc(weight_decay=-1.0), ValueError,
     "weight_decay"),
    ("braincorl weight_decay nan", lambda: bc(weight_decay=NAN), ValueError, "weight_decay"),
    ("braincorl dropout 1.5", lambda: bc(dropout=1.5), ValueError, "dropout"),
    ("braincorl dropout nan", lambda: bc(dropout=NAN), ValueError, "dropout"),
    ("braincorl d_model 0", lambda: bc(d_model=0), ValueError, "d_model"),
    ("braincorl n_steps float", lambda: bc(n_steps=2.5), ValueError, "n_steps"),
    ("braincorl context range", lambda: bc(min_context=30, max_context=10), ValueError,
     "max_context"),
    ("braincorl heads divide width", lambda: bc(d_model=10, n_heads=4), ValueError, "d_model"),
    ("braincorl pretrained type", lambda: bc(pretrained=3), ValueError, "pretrained"),
    ("braincorl pretrained missing", lambda: bc(pretrained="/nonexistent/model"),
     FileNotFoundError, "pretrained"),
    ("braincorl NaN voxel", lambda: BraInCoRL(**TINY).fit(X, YN), ValueError, "Y"),
    ("braincorl NaN X", lambda: BraInCoRL(**TINY).fit(XN, Y), ValueError,
     "Input X contains NaN"),
    ("braincorl one sample", lambda: BraInCoRL(**TINY).fit(X[:1], Y[:1]), ValueError,
     "n_samples=1"),
    ("braincorl predict before fit", lambda: BraInCoRL().predict(X), NotFittedError,
     "BraInCoRL"),
    ("braincorl meta_fit no tasks", lambda: BraInCoRL(**TINY).meta_fit([]), ValueError, "tasks"),
    ("metatask Y shape", lambda: MetaTask(X, Y[:5]), ValueError, "Y"),
    ("metatask NaN X", lambda: MetaTask(XN, Y), ValueError, "X"),
    # -- DE + SVM: the 2-D classifier and the EEG estimator
    ("svm C nan", lambda: svm(C=NAN), ValueError, "C"),
    ("svm C zero", lambda: svm(C=0.0), ValueError, "C"),
    ("svm C inf", lambda: svm(C=INF), ValueError, "C"),
    ("svm gamma negative", lambda: svm(gamma=-1.0), ValueError, "gamma"),
    ("svm gamma inf", lambda: svm(gamma=INF), ValueError, "gamma"),
    ("svm gamma string", lambda: svm(gamma="wide"), ValueError, "gamma"),
    ("svm one class", lambda: svm(y=np.zeros(12, int)), ValueError, "class"),
    ("svm continuous y", lambda: svm(y=np.linspace(0, 1, 12)), ValueError, "Unknown label type"),
    ("svm NaN X", lambda: svm(X_=XN), ValueError, "Input X contains NaN"),
    ("svm negative weight", lambda: DEFeatureSVM().fit(X, LAB, sample_weight=-np.ones(12)),
     ValueError, "sample_weight"),
    ("svm zero weights", lambda: DEFeatureSVM().fit(X, LAB, sample_weight=np.zeros(12)),
     ValueError, "sample_weight"),
    ("svm predict before fit", lambda: DEFeatureSVM().predict(X), NotFittedError,
     "DEFeatureSVM"),
    ("desvm predict before fit", lambda: DESVM().predict(EEG), NotFittedError, "DESVM"),
    ("desvm n_classes 1", lambda: desvm(n_classes=1), ValueError, "n_classes"),
    ("desvm sfreq nan", lambda: desvm(sfreq=NAN), ValueError, "sfreq"),
    ("desvm C inf", lambda: desvm(C=INF), ValueError, "C"),
    ("desvm band above Nyquist", lambda: desvm(sfreq=64.0), ValueError, "bands"),
    ("desvm labels out of range", lambda: DESVM(n_classes=2).fit(EEG, LAB), ValueError, "y"),
    ("desvm 2-D X", lambda: DESVM().fit(X, LAB), ValueError, "X"),
    # -- devices: one behaviour with neurosim/_device.py
    ("device unknown", lambda: resolve_device("tpu"), ValueError, "device"),
    ("device not a name", lambda: resolve_device(3), ValueError, "device"),
    ("device gpu index beyond count", lambda: resolve_device("cuda:99"), ValueError, "device"),
    pytest.param("device cuda without CUDA", lambda: resolve_device("cuda"), ValueError,
                 "device", marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA present")),
    pytest.param("braincorl on cuda without CUDA", lambda: bc(device="cuda"), ValueError,
                 "device", marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA present")),
    # -- metrics and protocols
    ("labels bool", lambda: metrics.tri_p(np.array([True, False]), np.array([1, 0])),
     ValueError, "y_true"),
    ("labels non-integer floats", lambda: metrics.accuracy([0.5, 1.0], [0, 1]), ValueError,
     "y_true"),
    ("labels NaN", lambda: metrics.seq2hr([0, NAN], np.eye(2)), ValueError, "y_true"),
    ("labels uint64 huge", lambda: metrics.tri_p(np.array([2**64 - 1], np.uint64), [0]),
     ValueError, "y_true"),
    ("labels 2-D", lambda: metrics.accuracy(np.zeros((2, 2), int), [0, 1]), ValueError,
     "y_true"),
    ("scores one column", lambda: metrics.seq2hr([0, 0], np.ones((2, 1))), ValueError,
     "scores"),
    ("top-k k too big", lambda: metrics.top_k_accuracy([0, 1], np.eye(2), k=2), ValueError, "k"),
    ("confusion n_classes small", lambda: metrics.confusion([0, 3], [1, 2], n_classes=2),
     ValueError, "n_classes"),
    ("protocol unknown", lambda: list(make_folds("kfold", _dataset())), ValueError, "protocol"),
    ("protocol n_calib nan", lambda: list(make_folds("si_finetune", _dataset(), n_calib=NAN)),
     ValueError, "n_calib"),
    ("protocol n_calib zero", lambda: list(make_folds("si_finetune", _dataset(), n_calib=0)),
     ValueError, "n_calib"),
    ("protocol gap negative", lambda: list(make_folds("sd_time", _dataset(), gap=-1)),
     ValueError, "gap"),
    ("protocol n_folds float", lambda: list(make_folds("sd_time", _dataset(), n_folds=2.5)),
     ValueError, "n_folds"),
    ("protocol n_folds above trials", lambda: list(make_folds("sd_trial", _dataset(),
                                                              n_folds=99)), ValueError, "n_folds"),
    ("protocol max_folds zero", lambda: evaluate_protocol(_clf, _dataset(), "loso", "y",
                                                          max_folds=0), ValueError, "max_folds"),
    ("protocol float labels", lambda: evaluate_protocol(
        _clf, _float_label_dataset(), "loso", "y"), ValueError, "labels['y']"),
    ("protocol target missing", lambda: evaluate_protocol(_clf, _dataset(), "loso", "arousal"),
     ValueError, "target"),
]


def _float_label_dataset():
    ds = _dataset()
    return EEGDataset(X=ds.X, sfreq=ds.sfreq, ch_names=ds.ch_names,
                      labels={"y": ds.labels["y"] + 0.5}, subject=ds.subject, trial=ds.trial)


def _id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize(("label", "call", "exc", "field"), CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_refused_naming_the_field(label, call, exc, field):
    with pytest.raises(exc) as info:
        call()
    assert field in str(info.value), f"{label}: {info.value!r} does not name {field!r}"


# --------------------------------------------------------------------------------------
# labels of any integer dtype (the uint8 class of the issue)
# --------------------------------------------------------------------------------------
INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_metrics_give_the_int64_answer_for_every_integer_dtype(dtype):
    rng = np.random.default_rng(1)
    yt = rng.integers(0, 5, 200)
    yp = np.clip(yt + rng.integers(-2, 3, 200), 0, 4)
    scores = rng.random((200, 5)) + 0.5 * np.eye(5)[yt]
    t, p = yt.astype(dtype), yp.astype(dtype)
    # independent references: sklearn, and HiSTN's definitions written out in int64
    assert metrics.tri_p(t, p) == np.mean(np.abs(yp - yt) <= 1)
    order = np.argsort(scores, axis=1, kind="stable")[:, ::-1]
    top1, top2 = order[:, 0], order[:, 1]
    want = np.mean((np.abs(top1 - top2) == 1) & ((top1 == yt) | (top2 == yt)))
    assert metrics.seq2hr(t, scores) == want
    assert metrics.accuracy(t, p) == accuracy_score(yt, yp)
    assert metrics.weighted_f1(t, p) == pytest.approx(f1_score(yt, yp, average="weighted"))
    np.testing.assert_array_equal(metrics.confusion(t, p), confusion_matrix(yt, yp))
    assert metrics.top2_accuracy(t, scores) == top_k_accuracy_score(yt, scores, k=2)
    # the cases: uint8 gave 0.667 and 0.0 where int64 gives 1.0
    assert metrics.tri_p(np.array([0, 1, 2], dtype), np.array([1, 0, 1], dtype)) == 1.0


def test_protocol_scores_equal_for_uint8_and_int64_labels():
    ds = _dataset()
    small = EEGDataset(X=ds.X, sfreq=ds.sfreq, ch_names=ds.ch_names,
                       labels={"y": ds.labels["y"].astype(np.uint8)},
                       subject=ds.subject.astype(np.uint8), trial=ds.trial.astype(np.uint8))
    ref = evaluate_protocol(_clf, ds, "sd_trial", "y", n_folds=3, max_folds=3)["mean"]
    got = evaluate_protocol(_clf, small, "sd_trial", "y", n_folds=3, max_folds=3)["mean"]
    for key in ("accuracy", "weighted_f1", "top2_accuracy", "seq2hr", "tri_p"):
        assert got[key] == ref[key]


# --------------------------------------------------------------------------------------
# the jobs' params models: finite floats only (``--set params.lr=.inf`` used to exit 0)
# --------------------------------------------------------------------------------------
def _float_fields(model):
    import types
    import typing

    for name, info in model.model_fields.items():
        a = info.annotation
        union = typing.get_origin(a) in (typing.Union, types.UnionType)
        if a is float or (union and float in typing.get_args(a)):
            yield name


def _params_models():
    from decoding.jobs.braincorl import BraInCoRLParams
    from decoding.jobs.histn import HiSTNParams
    from decoding.jobs.mindbridge import MindBridgeParams

    return [BraInCoRLParams, HiSTNParams, MindBridgeParams]


PARAM_CASES = [(m, f, v) for m in _params_models() for f in _float_fields(m)
               for v in (NAN, INF, -INF)]


@pytest.mark.parametrize(("model", "field", "value"), PARAM_CASES,
                         ids=[f"{m.__name__}.{f}={v}" for m, f, v in PARAM_CASES])
def test_job_params_refuse_non_finite_floats(model, field, value):
    from pydantic import ValidationError

    assert model.model_config.get("allow_inf_nan") is False
    with pytest.raises(ValidationError) as info:
        model(**{field: value})
    assert field in str(info.value)
