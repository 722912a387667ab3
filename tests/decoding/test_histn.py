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
from sklearn.exceptions import NotFittedError

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


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _cheb_filter(A, w):
    """P = sum_k w_k T_k(L~) from the eigen-decomposition of L = D - A (scipy's T_k)."""
    L = np.diag(A.sum(1)) - A
    lam, V = np.linalg.eigh(L)
    lt = 2 * lam / lam.max() - 1
    return V @ np.diag(sum(wk * eval_chebyt(k, lt) for k, wk in enumerate(w))) @ V.T


def _keras_hst_forward(m: HiSTNModule, x: np.ndarray) -> np.ndarray:
    """The authors' HST_model (Models.py, mergeMode='dense', inference) in numpy,
    channels-last (T, C) as in Keras, on the weights of ``m``: one window -> logits."""
    g = {k: v.detach().double().numpy() for k, v in m.state_dict().items()}

    def bn(z, name):  # Keras BatchNormalization(axis=-1) at inference
        return (z - g[f"{name}.running_mean"]) / np.sqrt(g[f"{name}.running_var"]
                                                         + m.bn1.eps) \
            * g[f"{name}.weight"] + g[f"{name}.bias"]

    X = x.T.astype(float)                                          # (128, 14)
    T, C = X.shape
    k = g["temporal.weight"][:, 0, 0, :]                           # Conv2D (64, 1) x 8
    Xp = np.pad(X, ((31, 32), (0, 0)))                             # 'same', even kernel
    bank = np.array([[np.correlate(Xp[:, c], k[f], "valid") for f in range(8)]
                     for c in range(C)])                           # (C, 8, T)
    z = np.einsum("cft,cf->tc", bank, g["mix"])                    # DepthwiseConv2D (1, 8)
    z = _elu(bn(z, "bn1"))
    dw = g["depth.weight"][:, 0, :]                                # DepthwiseConv2D (5, 1)
    z = np.stack([np.correlate(z[:, c], dw[c], "valid") for c in range(C)], axis=1)
    z = _elu(bn(z, "bn2"))
    z = 0.5 * (z[0:-1:2] + z[1::2])[: z.shape[0] // 2]             # AveragePooling (2, 1)
    loc = [0, 4, 7, 10, 14]
    # node level
    agg = []
    for r in range(4):
        xr = z[:, loc[r]:loc[r + 1]] @ _cheb_filter(DREAMER_REGION_GRAPHS[r],
                                                    g[f"node_mp.{r}.weight"])
        n = xr.shape[1]
        d = g[f"node_dw.{r}.weight"][:, 0, :]
        xpad = np.pad(xr, ((2, 2), (0, 0)))
        xr = np.stack([np.correlate(xpad[:, c], d[c], "valid") for c in range(n)], axis=1)
        agg.append(xr @ g[f"node_pw.{r}.weight"][:, :, 0].T)       # pointwise (1, n, n)
    X_agg = _elu(bn(np.concatenate(agg, axis=1), "bn_node"))
    X_out = z + X_agg

    def fusion(Xin, name):                                         # Region_fusion
        out = []
        for r in range(4):
            xr = Xin[:, loc[r]:loc[r + 1]]
            w = _softmax(g[f"{name}.{r}.dense.weight"] @ xr.mean(0)
                         + g[f"{name}.{r}.dense.bias"])
            out.append(xr @ w)
        return np.stack(out, axis=1)

    def collapse(Xin, name):                                       # Region_collapse
        w = _softmax(g[f"{name}.dense.weight"] @ Xin.mean(0) + g[f"{name}.dense.bias"])
        return Xin @ w

    X_R = fusion(z, "fuse_in")
    X_R_agg = X_R @ _cheb_filter(RING4, g["region_mp.weight"])
    X_R_latter = fusion(X_agg, "fuse_out")
    X_G = collapse(X_R, "collapse_in") + collapse(X_R_latter, "collapse_out")
    fused = np.concatenate([X_out, X_R_agg + X_R_latter, X_G[:, None]], axis=1)  # (62, 19)
    return g["out.weight"] @ fused.mean(0) + g["out.bias"]


def _randomised_module(**kw) -> HiSTNModule:
    torch.manual_seed(3)
    m = HiSTNModule(**kw)
    with torch.no_grad():
        for name, buf in m.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for name, p in m.named_parameters():
            if name.startswith("bn") and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            elif name.startswith("bn") and name.endswith("bias"):
                p.normal_(0, 0.3)
            elif name.endswith("dense.bias") or name == "out.bias":
                p.normal_(0, 0.3)
    return m.eval()


def test_forward_equals_the_authors_keras_graph_in_numpy():
    """Every level (node, region, global), fusion before the residual add, collapse
    before the region message passing: the module's logits equal a numpy re-statement of
    HST_model on the same weights. Zeroing the region or global level, or reading them
    from other tensors, breaks the equality."""
    m = _randomised_module()
    x = torch.randn(3, 14, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = m(x).double().numpy()
        lv = m.levels(x)
    want = np.stack([_keras_hst_forward(m, xi) for xi in x.numpy()])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the region and global levels carry weight in the logits (they are not ~0)
    contrib = np.abs(m.out.weight[:, 14:].detach().numpy() @ torch.cat(
        [lv["region"], lv["global"]], 1).mean(2).numpy().T)
    assert contrib.max() > 0.05
    # the earlier variants are different functions
    for kw in ({"fusion_input": "post_residual"}, {"collapse_input": "post_mp"}):
        other = _randomised_module(**kw)
        other.load_state_dict(m.state_dict())
        with torch.no_grad():
            assert np.abs(other(x).double().numpy() - want).max() > 1e-3


def test_temporal_head_equals_filter_bank_then_channel_mix():
    """The fused FFT filter equals the paper's two layers: 8 shared 64-tap filters
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
    bn1, m.bn1 = m.bn1, torch.nn.Identity()
    elu, m.elu = m.elu, torch.nn.Identity()
    # with BN, ELU, depth conv and pooling set aside, features() returns the filter output
    m.depth, m.bn2, m.pool = torch.nn.Identity(), torch.nn.Identity(), torch.nn.Identity()
    got = m.features(x).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    m.bn1, m.elu = bn1, elu
    assert HiSTNModule().eval().features(x).shape == (2, 14, 62)


def test_keras_max_norm_hand_computed():
    """Keras max_norm(1.) reduces over axis 0 of the Keras kernel: the (1, 8, C, 1) mix
    and (1, n, n) pointwise kernels are clipped element-wise, the (5, 1, C, 1) depthwise
    kernel per channel in L2; formula w * clip(norm, 0, 1) / (1e-7 + norm)."""
    m = HiSTNModule()
    with torch.no_grad():
        m.mix.zero_()
        m.mix[0, :3] = torch.tensor([2.0, -3.0, 0.5])
        m.depth.weight.zero_()
        m.depth.weight[0, 0, :2] = torch.tensor([3.0, 4.0])
        m.node_pw[0].weight.zero_()
        m.node_pw[0].weight[0, :2, 0] = torch.tensor([0.6, 0.8])   # L2 = 1, each <= 1
        m.node_pw[1].weight.zero_()
        m.node_pw[1].weight[0, :2, 0] = torch.tensor([1.5, 0.2])
    m.apply_constraints()
    eps = 1e-7
    np.testing.assert_allclose(m.mix[0, :3].detach().numpy(),
                               [2 / (2 + eps), -3 / (3 + eps), 0.5 * 0.5 / (0.5 + eps)],
                               rtol=1e-6)
    np.testing.assert_allclose(m.depth.weight[0, 0, :2].detach().numpy(), [0.6, 0.8],
                               rtol=1e-6)
    np.testing.assert_allclose(m.node_pw[0].weight[0, :2, 0].detach().numpy(), [0.6, 0.8],
                               rtol=1e-6)
    np.testing.assert_allclose(m.node_pw[1].weight[0, :2, 0].detach().numpy(), [1.0, 0.2],
                               rtol=1e-6)
    # the stricter per-channel L2 variant rescales the mix row to norm 1
    m2 = HiSTNModule(max_norm="l2")
    with torch.no_grad():
        m2.mix.zero_()
        m2.mix[0, :2] = torch.tensor([3.0, 4.0])
    m2.apply_constraints()
    np.testing.assert_allclose(m2.mix[0, :2].detach().numpy(), [0.6, 0.8], rtol=1e-6)


def test_keras_initialisation():
    """glorot-uniform limits from the Keras kernel shapes; zero biases; MP coefficients
    U(-1, 1) (glorot on a (3,) vector) rather than the identity filter [1, 0, 0]."""
    torch.manual_seed(0)
    m = HiSTNModule()
    lim = {"temporal.weight": np.sqrt(6 / (64 + 512)), "mix": np.sqrt(6 / (112 + 8)),
           "depth.weight": np.sqrt(6 / (70 + 5)), "out.weight": np.sqrt(6 / (19 + 5)),
           "node_pw.0.weight": np.sqrt(6 / 8), "node_dw.1.weight": np.sqrt(6 / (15 + 5))}
    params = dict(m.named_parameters())
    for name, bound in lim.items():
        w = params[name].detach().abs()
        assert w.max() <= bound + 1e-7 and w.max() > 0.5 * bound, name
    assert all(float(p.detach().abs().max()) == 0 for n, p in params.items()
               if n.endswith("bias")
               and not n.startswith("bn"))
    mp = torch.stack([mm.weight for mm in m.node_mp]).detach()
    assert mp.abs().max() <= 1 and not torch.allclose(mp[:, 0], torch.ones(4))
    t = HiSTNModule(init="torch")
    torch.testing.assert_close(t.node_mp[0].weight.detach(), torch.tensor([1.0, 0, 0]))


def test_soft_labels_match_the_published_table():
    q = gaussian_soft_labels(np.array([0, 1, 2, 4]), 5, 0.5)
    np.testing.assert_allclose(q[0, :3], [0.8805, 0.1192, 0.0003], atol=1e-4)
    np.testing.assert_allclose(q[1, :4], [0.1065, 0.7868, 0.1065, 0.0003], atol=1e-4)
    np.testing.assert_allclose(q[2], [0.0003, 0.1065, 0.7866, 0.1065, 0.0003], atol=1e-4)
    np.testing.assert_allclose(q[3], q[0][::-1], atol=1e-7)
    np.testing.assert_array_equal(gaussian_soft_labels(np.array([3]), 5, None), [[0, 0, 0, 1, 0]])
    with pytest.raises(ValueError, match="y: expected classes in 0..4"):
        gaussian_soft_labels(np.array([5]), 5)


def test_default_smoothing_is_the_papers_sigma():
    """sigma = 0.5 (``spread = 0.5`` in Dreamer_10cv.py) in the function, the estimator
    and the job; the default targets equal the published rows (sigma 1.5 would give
    0.2969 / 0.2523 for class 2)."""
    from decoding.jobs.histn import HiSTNParams

    q = gaussian_soft_labels(np.array([2]), 5)
    np.testing.assert_allclose(q[0], [0.0003, 0.1065, 0.7866, 0.1065, 0.0003], atol=1e-4)
    assert HiSTN().smoothing_sigma == 0.5
    assert HiSTNParams().smoothing_sigma == 0.5
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[2]
    cfg = yaml.safe_load((root / "configs" / "decode" / "histn.yaml").read_text())
    assert cfg["params"]["smoothing_sigma"] == 0.5
    assert EEGNet().smoothing_sigma is None                   # EEGNet's own one-hot loss


class _Linear(torch.nn.Module):
    """logits = W mean_t(x) + b: with one indicator channel per class it can output any
    distribution per class, so training converges to the cross-entropy minimiser."""

    def __init__(self, n_chans, n_classes):
        super().__init__()
        self.lin = torch.nn.Linear(n_chans, n_classes)

    def forward(self, x):
        return self.lin(x.mean(2))


class _LinearEEG(HiSTN):
    def _make_module(self, n_chans, n_times, n_classes):
        return _Linear(n_chans, n_classes)


@pytest.mark.parametrize("sigma", [0.5, None])
def test_training_uses_the_soft_labels(sigma):
    """The minimiser of the cross-entropy against targets q is p = q. A model free to
    output any distribution per class, trained by the shared loop, must predict the
    authors' soft-label rows (sigma 0.5) or near one-hot labels (sigma None)."""
    y = np.arange(100) % 5
    X = np.zeros((100, 5, 8), np.float32)
    X[np.arange(100), y] = 1.0
    clf = _LinearEEG(smoothing_sigma=sigma, n_epochs=10, steps_per_epoch=20, batch_size=50,
                     lr=0.2, scaling="none", validation_fraction=0.0, device="cpu")
    proba = clf.fit(X, y).predict_proba(X[:5])
    if sigma is None:
        assert proba[np.arange(5), np.arange(5)].min() > 0.97
    else:
        np.testing.assert_allclose(proba, gaussian_soft_labels(np.arange(5), 5, 0.5),
                                   atol=0.01)


def test_random_crops_run_across_windows_of_one_recording():
    """Crops are ``n_times`` consecutive samples of the recording the windows were cut
    from (a ramp here), start anywhere, and never cross from one recording to the next."""
    T = 16
    seg = np.repeat([0, 1], 6)
    ramp = np.concatenate([np.arange(6 * T), 1024 + np.arange(6 * T)]).astype(np.float32)
    X = np.broadcast_to(ramp.reshape(12, 1, T), (12, 2, T)).copy()
    y = np.repeat([0, 1], 6)
    seen = []

    class Recorder(_Linear):
        def forward(self, x):
            if self.training:
                seen.append(x.detach().numpy().copy())
            return super().forward(x)

    class RecEEG(HiSTN):
        def _make_module(self, n_chans, n_times, n_classes):
            return Recorder(n_chans, n_classes)

    clf = RecEEG(n_classes=2, n_epochs=2, batch_size=64, scaling="none",
                 validation_fraction=0.0, device="cpu").fit(X, y, segments=seg)
    crops = np.concatenate(seen)[:, 0]                        # (n, T)
    np.testing.assert_array_equal(np.diff(crops, axis=1), 1)  # consecutive samples
    starts = crops[:, 0] % 1024
    assert np.any(starts % T != 0)                            # not only the fixed windows
    assert starts.max() <= 5 * T                              # inside one recording
    # authors' steps per epoch: (span - window) * recordings // batch
    assert clf.history_["steps_per_epoch"] == max(1, (6 * T - T) * 2 // 64)
    # fixed windows when the crops are off
    seen.clear()
    RecEEG(n_classes=2, n_epochs=1, batch_size=64, scaling="none", random_crops=False,
           validation_fraction=0.0, device="cpu").fit(X, y, segments=seg)
    assert np.all(np.concatenate(seen)[:, 0, 0] % T == 0)


def test_validation_is_the_tail_of_each_recording_and_keeps_the_best_epoch():
    clf = HiSTN(validation_fraction=0.1)
    seg = np.repeat([0, 1], [10, 20])
    y = np.repeat([0, 1], [10, 20])
    np.testing.assert_array_equal(np.flatnonzero(clf._split_validation(y, seg)), [9, 28, 29])
    X, yy = _alpha_task(n=120)
    trial = np.repeat(np.arange(12), 10)
    clf = HiSTN(n_classes=3, n_epochs=6, steps_per_epoch=3, batch_size=32, lr=1e-2,
                batchnorm="torch", device="cpu")
    # 12 recordings of 10 windows (labels per window vary: the recordings split on them)
    clf.fit(X, yy, segments=trial)
    h = clf.history_
    assert len(h["train_loss"]) == len(h["val_loss"]) == len(h["val_f1"]) == 6
    assert clf.best_epoch_ == int(np.argmin(h["val_loss"]))
    assert h["lr"][:3] == [1e-2] * 3 and h["lr"][-1] == 5e-3   # halved from 60 %


def test_keras_batchnorm_constants():
    X, y = _alpha_task(n=30)
    clf = HiSTN(n_classes=3, n_epochs=1, steps_per_epoch=1, device="cpu").fit(X, y)
    bns = [m for m in clf.module_.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 3 and all(m.momentum == 0.01 and m.eps == 1e-3 for m in bns)
    clf = HiSTN(n_classes=3, n_epochs=1, steps_per_epoch=1, batchnorm="torch",
                device="cpu").fit(X, y)
    assert all(m.momentum == 0.1 and m.eps == 1e-5 for m in clf.module_.modules()
               if isinstance(m, torch.nn.BatchNorm1d))


def test_bn_recalibration_is_the_plain_average_over_training_windows():
    """bn_recalibrate: the first BatchNorm's running mean/variance equal the mean and
    (unbiased) variance over all training windows of the temporal filter's output,
    computed here with numpy from the final weights."""
    X, y = _alpha_task(n=60)
    clf = HiSTN(n_classes=3, n_epochs=2, steps_per_epoch=2, batch_size=32,
                validation_fraction=0.0, bn_recalibrate=True, device="cpu").fit(X, y)
    m = clf.module_
    Z = (X - clf.channel_mean_[None, :, None]) / clf.channel_std_[None, :, None]
    k = (m.mix @ m.temporal.weight[:, 0, 0, :]).detach().numpy()       # (14, 64)
    Zp = np.pad(Z, ((0, 0), (0, 0), (31, 32)))
    pre = np.array([[np.correlate(Zp[b, c], k[c], "valid") for c in range(14)]
                    for b in range(len(Z))])                           # (60, 14, 128)
    np.testing.assert_allclose(m.bn1.running_mean.numpy(), pre.mean(axis=(0, 2)),
                               rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(m.bn1.running_var.numpy(),
                               pre.transpose(1, 0, 2).reshape(14, -1).var(axis=1, ddof=1),
                               rtol=1e-3)
    assert m.bn1.momentum == 0.01                                      # restored


def test_window_scaling_erases_band_power_differences():
    """Per-window z-scoring makes a window and its 3x-scaled copy identical (what DE
    reads is gone); the per-channel scaling keeps the factor."""
    X, y = _alpha_task(n=30)
    X2 = np.concatenate([X, 3 * X])
    yy = np.concatenate([y, y])
    kw = dict(n_classes=3, n_epochs=1, steps_per_epoch=1, device="cpu")
    w = HiSTN(scaling="window", **kw).fit(X2, yy)
    np.testing.assert_allclose(w.predict_proba(X), w.predict_proba(3 * X), atol=1e-5)
    c = HiSTN(scaling="channel", **kw).fit(X2, yy)
    assert np.abs(c.predict_proba(X) - c.predict_proba(3 * X)).max() > 1e-3


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
    clf = HiSTN(n_classes=3, n_epochs=8, steps_per_epoch=6, batch_size=60, lr=1e-2,
                batchnorm="torch", device="cpu", random_state=0)
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
    with pytest.raises(NotFittedError, match="not fitted"):
        HiSTN().predict(X)


def test_eegnet_parameter_formula_and_learning():
    # Lawhern et al. (2018) EEGNet-8,2: conv 8*64, BN 2*8, depthwise 16*C, BN 2*16,
    # separable 16*16 + 16*16, BN 2*16, dense (16 * T//32 + 1) * n_classes (here 'same'
    # padding of the 16-tap kernel gives T/4 + 1 = 33 samples -> 4 after pooling by 8)
    m = EEGNetModule(14, 128, 5)
    want = 8 * 64 + 16 + 16 * 14 + 32 + 256 + 256 + 32 + (16 * 4 + 1) * 5
    assert sum(p.numel() for p in m.parameters()) == want
    X, y = _alpha_task()
    clf = EEGNet(n_classes=3, n_epochs=6, steps_per_epoch=5, batch_size=48, lr=1e-2,
                 batchnorm="torch", device="cpu")
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


def test_job_trial_scaling_and_trial_permutation_p():
    """The authors' X / max|X| per trial and channel; the permutation p shuffles labels
    between trials (not windows) and is (1 + #{null >= observed}) / (1 + n)."""
    from decoding.jobs.histn import scale_trials_max_abs, trial_permutation_p

    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 14, 16)).astype(np.float32)
    X[4:] *= 5
    ds = EEGDataset(X=X, sfreq=128.0, ch_names=[f"E{i}" for i in range(14)],
                    labels={"valence": np.repeat([0, 1], 4)}, subject=np.zeros(8, int),
                    trial=np.repeat([0, 1], 4))
    out = scale_trials_max_abs(ds).X
    for t in (0, 1):
        m = ds.trial == t
        np.testing.assert_allclose(np.abs(out[m]).max(axis=(0, 2)), 1, rtol=1e-6)
        np.testing.assert_allclose(out[m], X[m] / np.abs(X[m]).max(axis=(0, 2))[None, :, None],
                                   rtol=1e-6)
    groups = np.repeat(np.arange(6), 5)
    y = np.repeat(np.arange(6), 5)
    subj = np.zeros(30, int)
    p, null = trial_permutation_p(y, y, groups, subj, 999, seed=0)
    assert p < 0.01 and null < 0.5                  # 1 of 720 orders matches
    p_const, _ = trial_permutation_p(y, np.zeros(30, int), groups, subj, 99, seed=0)
    assert p_const == 1.0                           # every permutation scores the same
