"""HiSTN, EEGNet, DE+SVM and the label smoothing against independent references: the
parameter budget computed from the paper's code, Chebyshev polynomials from scipy, the
two-layer temporal head written with numpy, the published soft-label table, the
differential entropy of a Gaussian in closed form, EEGNet's parameter formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import eval_chebyt
from sklearn.base import clone

from data_loaders.schema import EEGDataset
from decoding.decoders.de_svm import DESVM, differential_entropy
from decoding.decoders.eegnet import EEGNet, EEGNetModule
from decoding.decoders.histn import (
    DREAMER_REGION_GRAPHS,
    RING4,
    HiSTN,
    HiSTNModule,
    chebyshev_basis,
)
from decoding.decoders.label_smoothing import gaussian_soft_labels


def test_parameter_budget_matches_the_paper_code():
    m = HiSTNModule()
    trainable = sum(p.numel() for p in m.parameters())
    bn_stats = sum(b.numel() for n, b in m.named_buffers() if "running" in n)
    # REFERENCES C 1.4 (from Models.py): 1181 trainable, 1265 with BN moving statistics
    assert trainable == 1181
    assert trainable + bn_stats == 1265
    assert 1000 <= trainable <= 1500


def test_region_graphs_follow_the_paper():
    af3_f3 = DREAMER_REGION_GRAPHS[0][0, 2]
    af4_f4 = DREAMER_REGION_GRAPHS[3][3, 1]                     # R4 = FC6 F4 F8 AF4
    assert af3_f3 == af4_f4 == 1
    np.testing.assert_array_equal(DREAMER_REGION_GRAPHS[3], DREAMER_REGION_GRAPHS[0][::-1, ::-1])
    assert [g.sum() / 2 for g in DREAMER_REGION_GRAPHS] == [4, 2, 2, 4]


@pytest.mark.parametrize("A", [RING4, DREAMER_REGION_GRAPHS[0], DREAMER_REGION_GRAPHS[1]])
def test_chebyshev_basis_against_scipy(A):
    L = np.diag(A.sum(1)) - A
    lam, V = np.linalg.eigh(L)
    lt = 2 * lam / lam.max() - 1
    T = chebyshev_basis(A, 3)
    for k in range(4):
        want = V @ np.diag(eval_chebyt(k, lt)) @ V.T
        np.testing.assert_allclose(T[k], want, atol=1e-12)


def test_temporal_head_equals_filter_bank_then_channel_mix():
    """The fused depthwise filter equals the paper's two layers: 8 shared 64-tap filters
    ('same' padding, Keras: 31 left, 32 right) then a per-channel weighted sum."""
    torch.manual_seed(0)
    m = HiSTNModule().eval()
    x = torch.randn(2, 14, 128)
    k = m.temporal.weight[:, 0, 0, :].detach().numpy()      # (8, 64)
    mix = m.mix.detach().numpy()                            # (14, 8)
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (31, 32)))
    bank = np.stack([[[np.correlate(xp[b, c], k[f], "valid") for c in range(14)]
                      for f in range(8)] for b in range(2)])  # (2, 8, 14, 128)
    want = np.einsum("bfct,cf->bct", bank, mix)
    kernels = m.mix @ m.temporal.weight[:, 0, 0, :]
    got = torch.nn.functional.conv1d(torch.nn.functional.pad(x, m._pad),
                                     kernels.unsqueeze(1), groups=14)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-4, atol=1e-5)
    assert m.features(x).shape == (2, 14, 62)


def test_soft_labels_match_the_published_table():
    q = gaussian_soft_labels(np.array([0, 1, 2, 4]), 5, 0.5)
    np.testing.assert_allclose(q[0, :3], [0.8805, 0.1192, 0.0003], atol=1e-4)
    np.testing.assert_allclose(q[1, :4], [0.1065, 0.7868, 0.1065, 0.0003], atol=1e-4)
    np.testing.assert_allclose(q[2], [0.0003, 0.1065, 0.7866, 0.1065, 0.0003], atol=1e-4)
    np.testing.assert_allclose(q[3], q[0][::-1], atol=1e-7)
    np.testing.assert_array_equal(gaussian_soft_labels(np.array([3]), 5, None), [[0, 0, 0, 1, 0]])
    with pytest.raises(ValueError, match="y: expected classes in 0..4"):
        gaussian_soft_labels(np.array([5]), 5)


def _alpha_task(n=240, seed=0):
    """Class c (0..2) scales 10-Hz power on the left frontal channels: learnable."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = np.arange(128) / 128
    X = rng.standard_normal((n, 14, 128))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    X[:, :4] += (1.5 * y)[:, None, None] * np.sin(2 * np.pi * 10 * t + phase)
    return X.astype(np.float32), y


def test_histn_learns_and_round_trips(tmp_path):
    X, y = _alpha_task()
    clf = HiSTN(n_classes=3, n_epochs=8, batch_size=60, lr=1e-2, device="cpu", random_state=0)
    assert clone(clf).get_params() == clf.get_params()
    clf.fit(X[:180], y[:180])
    assert clf.n_parameters_ == sum(p.numel() for p in clf.module_.parameters())
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X[180:], y[180:]) > 0.55                 # chance 1/3
    proba = clf.predict_proba(X[180:])
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    att = clf.attention(X[180:])
    np.testing.assert_allclose(att["region"].sum(), 1, rtol=1e-5)
    clf.save_pretrained(tmp_path / "m")
    back = HiSTN.from_pretrained(tmp_path / "m")
    np.testing.assert_allclose(back.predict_proba(X[180:]), proba, rtol=1e-5, atol=1e-6)
    # fine-tuning keeps the temporal filter bank frozen
    w0 = clf.module_.temporal.weight.detach().clone()
    clf.fine_tune(X[:30], y[:30], n_epochs=1)
    torch.testing.assert_close(clf.module_.temporal.weight, w0)


def test_estimators_take_an_eegdataset_and_refuse_bad_input():
    X, y = _alpha_task(n=60)
    ds = EEGDataset(X=X, sfreq=128.0, ch_names=[f"E{i}" for i in range(14)],
                    labels={"valence": y}, subject=np.zeros(60, int), trial=np.arange(60))
    clf = HiSTN(n_classes=3, n_epochs=1, device="cpu").fit(ds)
    assert clf.predict(ds).shape == (60,)
    with pytest.raises(ValueError, match="y: expected classes in 0..2"):
        HiSTN(n_classes=3, n_epochs=1).fit(X, y + 1)
    with pytest.raises(ValueError, match="14 DREAMER channels"):
        HiSTN(n_epochs=1).fit(X[:, :13], y)
    with pytest.raises(ValueError, match="n_epochs"):
        HiSTN(n_epochs=0).fit(X, y)
    with pytest.raises(ValueError, match="target: 'arousal'"):
        HiSTN(target="arousal").fit(ds)
    with pytest.raises(ValueError, match="X: expected shape"):
        HiSTN().fit(X[0], y)
    with pytest.raises(RuntimeError, match="not fitted"):
        HiSTN().predict(X)


def test_eegnet_parameter_formula_and_learning():
    # Lawhern et al. (2018) EEGNet-8,2: conv 8*64, BN 2*8, depthwise 16*C, BN 2*16,
    # separable 16*16 + 16*16, BN 2*16, dense (16 * T//32 + 1) * n_classes (here 'same'
    # padding of the 16-tap kernel gives T/4 + 1 = 33 samples -> 4 after pooling by 8)
    m = EEGNetModule(14, 128, 5)
    want = 8 * 64 + 16 + 16 * 14 + 32 + 256 + 256 + 32 + (16 * 4 + 1) * 5
    assert sum(p.numel() for p in m.parameters()) == want
    X, y = _alpha_task()
    clf = EEGNet(n_classes=3, n_epochs=8, batch_size=60, lr=1e-2, device="cpu")
    assert clf.fit(X[:180], y[:180]).score(X[180:], y[180:]) > 0.55


def test_differential_entropy_of_white_noise_closed_form():
    """White noise of variance s^2 through the zero-phase Butterworth band-pass keeps
    s^2 * mean(|H(f)|^4) over [0, fs/2] (|H|^2 forward and backward), so
    DE = 1/2 log(2 pi e s^2 mean|H|^4), with H from scipy.signal.sosfreqz."""
    from scipy.signal import butter, sosfreqz

    rng = np.random.default_rng(0)
    fs, s = 128.0, 3.0
    X = s * rng.standard_normal((4, 2, 128 * 60))
    bands = ((8, 14), (14, 31))
    de = differential_entropy(X, fs, bands=bands)
    for j, band in enumerate(bands):
        _, h = sosfreqz(butter(5, band, btype="bandpass", fs=fs, output="sos"), worN=8192)
        want = 0.5 * np.log(2 * np.pi * np.e * s**2 * np.mean(np.abs(h) ** 4))
        # 8 estimates of ~720 degrees of freedom each: their mean is within ~0.01
        assert de[:, 2 * j:2 * j + 2].mean() == pytest.approx(want, abs=0.03)
    with pytest.raises(ValueError, match="Nyquist"):
        differential_entropy(X, fs, bands=((30, 70),))


def test_desvm_learns_and_pads_missing_classes():
    X, y = _alpha_task()
    clf = DESVM(n_classes=5, sfreq=128.0).fit(X[:180], y[:180])
    assert clf.score(X[180:], y[180:]) > 0.6
    proba = clf.predict_proba(X[180:])
    assert proba.shape == (60, 5) and np.all(proba[:, 3:] == 0)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    ft = clone(clf).fine_tune(X[180:200], y[180:200], X_pretrain=X[:180], y_pretrain=y[:180])
    assert ft.predict(X[200:]).shape == (40,)
