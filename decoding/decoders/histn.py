"""HiSTN: Hierarchical Spatial-Temporal Network for EEG emotion recognition.

Kuang, Song & Michoski (2024), "Hierarchical Spatial-Temporal Network ... with about 1,000
parameters", arXiv:2408.15255; reference code github.com/dykuang/EEG-based-affective-computing
(``Models.py::HST_model``, TensorFlow/Keras). Re-implemented in torch from that code
(REFERENCES C 1.3):

I.   Feature head. A temporal filter bank (8 filters x 64 taps = 0.5 s at 128 Hz) shared
     over channels; a per-channel weighted sum of the 8 filter outputs; BN + ELU; a
     per-channel temporal conv (5 taps, valid); BN + ELU; average pooling by 2; dropout.
     (B, 14, 128) -> (B, 14, 62).
II.  Hierarchy, bottom-up over the DREAMER channel order:
     nodes:  4 regions (AF3 F7 F3 FC5 | T7 P7 O1 | O2 P8 T8 | FC6 F4 F8 AF4), intra-region
             graphs (two mirrored frontal 4-node graphs, two posterior 3-node chains).
             Chebyshev message passing ``P = sum_k w_k T_k(L~)``, ``L~ = 2L/lambda_max - I``,
             order 2 with 3 learned scalars per graph, then a separable conv per region,
             BN + ELU (``X_agg``) and a residual connection (``X_out = X + X_agg``).
     regions: attention pooling (a softmax over the region's channels from their time
             averages) to one signal per region, computed on the input ``X`` (``X_R``) and
             on ``X_agg`` (``X_R_latter``); ``X_R`` is passed through Chebyshev message
             passing on the 4-region ring; ``X_R_out = MP(X_R) + X_R_latter``.
     global: attention pooling of the 4 region signals into one:
             ``X_G_out = collapse(X_R) + collapse'(X_R_latter)``.
III. Concatenate node (14), region (4) and global (1) signals, global average over time,
     dropout, dense softmax over the 5 ordinal classes.

Trainable parameters: 1,181 for 14 channels x 128 samples and 5 classes (the Keras count,
including BatchNorm moving statistics, is 1,265).

Where an earlier version of this file differed from the authors' code, the authors' way is
the default and the other is a switch (``HiSTNModule`` arguments, also ``HiSTN`` parameters):

=================  ======================================  ===============================
switch             authors (default)                        alternative
=================  ======================================  ===============================
``fusion_input``   ``"pre_residual"``: region fusion reads  ``"post_residual"``: X_out
                   X_agg (BN + ELU output)
``collapse_input`` ``"pre_mp"``: global collapse reads X_R  ``"post_mp"``: MP(X_R)
``max_norm``       ``"keras"``: Keras ``max_norm(1.)`` on   ``"l2"``: per-channel L2 norm
                   axis 0 of (1, 8, C, 1) / (1, n, n)       <= 1 (stricter)
                   kernels = each weight clipped to |w|<=1
``init``           ``"keras"``: glorot-uniform kernels      ``"torch"``: torch defaults,
                   with Keras fans, zero biases, MP         MP coefficients [1, 0, 0]
                   coefficients glorot U(-1, 1)             (identity filter)
BatchNorm          (``HiSTN(batchnorm="keras")``) momentum  ``"torch"``: 0.1 / 1e-5
                   0.99 (torch 0.01), eps 1e-3
=================  ======================================  ===============================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from decoding.decoders._eeg_base import TorchEEGClassifier, max_norm_

# DREAMER order: AF3 F7 F3 FC5 | T7 P7 O1 | O2 P8 T8 | FC6 F4 F8 AF4  (loc=[0,4,7,10,14]).
DREAMER_REGIONS: tuple[tuple[int, int], ...] = ((0, 4), (4, 7), (7, 10), (10, 14))
_A_FRONTAL_LEFT = np.array([[0, 0, 1, 0],     # AF3-F3
                            [0, 0, 1, 1],     # F7-F3, F7-FC5
                            [1, 1, 0, 1],     # F3-FC5
                            [0, 1, 1, 0]], dtype=float)
_A_CHAIN3 = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=float)
# R4 = mirror of R1 (A1[::-1, ::-1]); R2/R3 chains T7-P7-O1 and O2-P8-T8.
DREAMER_REGION_GRAPHS: tuple[np.ndarray, ...] = (
    _A_FRONTAL_LEFT, _A_CHAIN3, _A_CHAIN3, _A_FRONTAL_LEFT[::-1, ::-1].copy())
RING4 = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]], dtype=float)

FUSION_INPUTS = ("pre_residual", "post_residual")
COLLAPSE_INPUTS = ("pre_mp", "post_mp")
MAX_NORMS = ("keras", "l2")
INITS = ("keras", "torch")


def chebyshev_basis(adjacency: np.ndarray, order: int) -> np.ndarray:
    """``T_k(L~)`` for ``k = 0..order``, ``L~ = 2 L / lambda_max - I``, ``L = D - A``.

    Returns
    -------
    ndarray, shape (order + 1, n, n)
    """
    A = np.asarray(adjacency, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or not np.allclose(A, A.T):
        raise ValueError(f"adjacency: expected a symmetric (n, n) matrix, got {A.shape}")
    L = np.diag(A.sum(1)) - A
    lam = float(np.linalg.eigvalsh(L).max())
    n = A.shape[0]
    Lt = 2 * L / lam - np.eye(n) if lam > 0 else -np.eye(n)
    T = [np.eye(n), Lt]
    for _ in range(2, order + 1):
        T.append(2 * Lt @ T[-1] - T[-2])
    return np.stack(T[: order + 1])


def _glorot_(w: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Keras ``glorot_uniform``: U(-l, l), ``l = sqrt(6 / (fan_in + fan_out))``."""
    lim = float(np.sqrt(6.0 / (fan_in + fan_out)))
    with torch.no_grad():
        w.uniform_(-lim, lim)


class ChebMessagePassing(nn.Module):
    """``X -> P^T X`` with ``P = sum_k w_k T_k(L~)``: K+1 learned scalars per graph
    (Keras ``X @ P_filter`` on channels-last ``(B, T, n)``)."""

    def __init__(self, adjacency: np.ndarray, order: int = 2):
        super().__init__()
        self.register_buffer("basis", torch.tensor(chebyshev_basis(adjacency, order),
                                                   dtype=torch.float32))
        w = torch.zeros(order + 1)
        w[0] = 1.0  # the identity filter (init="torch"); init="keras" redraws it
        self.weight = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n, T)
        P = torch.einsum("k,kij->ij", self.weight, self.basis)
        return torch.einsum("ij,bit->bjt", P, x)


class AttentionPool(nn.Module):
    """Softmax attention over nodes from their time averages: (B, n, T) -> (B, T), (B, n).

    Keras ``Region_fusion`` (one region) / ``Region_collapse``: ``Dense(n, softmax)`` of
    the time-averaged signals gives the weights, the output is ``X @ w``.
    """

    def __init__(self, n: int):
        super().__init__()
        self.dense = nn.Linear(n, n)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.softmax(self.dense(x.mean(dim=2)), dim=1)
        return torch.einsum("bn,bnt->bt", w, x), w


class HiSTNModule(nn.Module):
    """The HiSTN network; input (batch, n_chans, n_times), output logits (batch, n_classes).

    ``fusion_input``, ``collapse_input``, ``max_norm`` and ``init`` choose between the
    authors' code (the defaults) and this file's earlier variants (module docstring).
    """

    def __init__(self, n_chans: int = 14, n_times: int = 128, n_classes: int = 5,
                 n_filters: int = 8, kernel_size: int = 64, sep_kernel: int = 5,
                 dropout: float = 0.5,
                 regions: Sequence[tuple[int, int]] = DREAMER_REGIONS,
                 region_graphs: Sequence[np.ndarray] = DREAMER_REGION_GRAPHS,
                 region_adjacency: np.ndarray = RING4, node_order: int = 2,
                 region_order: int = 2,
                 fusion_input: Literal["pre_residual", "post_residual"] = "pre_residual",
                 collapse_input: Literal["pre_mp", "post_mp"] = "pre_mp",
                 max_norm: Literal["keras", "l2"] = "keras",
                 init: Literal["keras", "torch"] = "keras"):
        super().__init__()
        if regions[0][0] != 0 or regions[-1][1] != n_chans or any(
                a[1] != b[0] for a, b in zip(regions[:-1], regions[1:])):
            raise ValueError(f"regions: expected contiguous ranges covering 0..{n_chans}, "
                             f"got {list(regions)}")
        if n_times < 6:
            raise ValueError(f"n_times: expected at least 6 samples, got {n_times}")
        for name, val, allowed in (("fusion_input", fusion_input, FUSION_INPUTS),
                                   ("collapse_input", collapse_input, COLLAPSE_INPUTS),
                                   ("max_norm", max_norm, MAX_NORMS), ("init", init, INITS)):
            if val not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {val!r}")
        self.fusion_input, self.collapse_input = fusion_input, collapse_input
        self.max_norm = max_norm
        self.regions = [tuple(r) for r in regions]
        # I. feature head
        self.temporal = nn.Conv2d(1, n_filters, (1, kernel_size), bias=False)
        self._pad = ((kernel_size - 1) // 2, kernel_size // 2)  # Keras 'same'
        self.mix = nn.Parameter(torch.empty(n_chans, n_filters).uniform_(
            -1 / np.sqrt(n_filters), 1 / np.sqrt(n_filters)))
        self.bn1 = nn.BatchNorm1d(n_chans)
        self.depth = nn.Conv1d(n_chans, n_chans, 5, groups=n_chans, bias=False)
        self.bn2 = nn.BatchNorm1d(n_chans)
        self.pool = nn.AvgPool1d(2)
        self.drop1 = nn.Dropout(dropout)
        # II. hierarchy: nodes
        self.node_mp = nn.ModuleList(ChebMessagePassing(A, node_order) for A in region_graphs)
        self.node_dw = nn.ModuleList(
            nn.Conv1d(b - a, b - a, sep_kernel, padding="same", groups=b - a, bias=False)
            for a, b in self.regions)
        self.node_pw = nn.ModuleList(nn.Conv1d(b - a, b - a, 1, bias=False)
                                     for a, b in self.regions)
        self.bn_node = nn.BatchNorm1d(n_chans)
        # regions and global
        self.fuse_in = nn.ModuleList(AttentionPool(b - a) for a, b in self.regions)
        self.fuse_out = nn.ModuleList(AttentionPool(b - a) for a, b in self.regions)
        self.region_mp = ChebMessagePassing(region_adjacency, region_order)
        n_reg = len(self.regions)
        self.collapse_in = AttentionPool(n_reg)
        self.collapse_out = AttentionPool(n_reg)
        # III. classifier
        self.drop2 = nn.Dropout(dropout)
        self.out = nn.Linear(n_chans + n_reg + 1, n_classes)
        self.elu = nn.ELU()
        if init == "keras":
            self.reset_parameters_keras()

    def reset_parameters_keras(self) -> None:
        """Keras initialisers of ``HST_model``: glorot-uniform kernels with the fans Keras
        computes from its kernel shapes, zero biases, message-passing coefficients
        glorot-uniform on a (K+1,) vector = U(-1, 1) for K = 2 (``add_weight`` default)."""
        n_f, taps = self.temporal.weight.shape[0], self.temporal.weight.shape[-1]
        n_c = self.mix.shape[0]
        _glorot_(self.temporal.weight, taps, taps * n_f)          # Conv2D (64, 1, 1, 8)
        _glorot_(self.mix, n_c * n_f, n_f)                       # Depthwise (1, 8, C, 1)
        k = self.depth.weight.shape[-1]
        _glorot_(self.depth.weight, k * n_c, k)                  # Depthwise (5, 1, C, 1)
        for mp in [*self.node_mp, self.region_mp]:
            _glorot_(mp.weight, mp.weight.numel(), mp.weight.numel())
        for dw, pw in zip(self.node_dw, self.node_pw):           # SeparableConv1D
            n, k = dw.weight.shape[0], dw.weight.shape[-1]
            _glorot_(dw.weight, k * n, k)                        # depthwise (5, n, 1)
            _glorot_(pw.weight, n, pw.weight.shape[0])           # pointwise (1, n, n)
        for lin in [*(f.dense for f in self.fuse_in), *(f.dense for f in self.fuse_out),
                    self.collapse_in.dense, self.collapse_out.dense, self.out]:
            _glorot_(lin.weight, lin.in_features, lin.out_features)
            nn.init.zeros_(lin.bias)

    def apply_constraints(self) -> None:
        """Keras ``max_norm(1.)`` on the depthwise and pointwise kernels (HiSTN code)."""
        elementwise = None if self.max_norm == "keras" else 0
        max_norm_(self.mix, 1.0, dim=elementwise)                # Keras (1, 8, C, 1)
        max_norm_(self.depth.weight, 1.0, dim=0)                 # Keras (5, 1, C, 1): taps
        for pw in self.node_pw:
            max_norm_(pw.weight, 1.0, dim=elementwise)           # Keras (1, n, n)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature head: (B, C, T) -> (B, C, (T - 4) // 2)."""
        # The shared filter bank followed by the per-channel mix of its 8 outputs is linear,
        # so it equals one depthwise filter per channel, h_c = sum_f mix[c, f] k_f: same
        # function and parameters as the paper's two layers, 8x fewer multiplications.
        # The 64-tap correlation runs as an FFT product (3x faster than a grouped conv on
        # CPU, equal to float precision; tested against the two layers in numpy).
        kernels = self.mix @ self.temporal.weight[:, 0, 0, :]   # (C, taps)
        taps, T = kernels.shape[1], x.shape[-1]
        xp = nn.functional.pad(x, self._pad)
        n = 1 << int(np.ceil(np.log2(xp.shape[-1] + taps - 1)))
        z = torch.fft.irfft(torch.fft.rfft(xp, n=n) * torch.fft.rfft(kernels.flip(-1), n=n),
                            n=n)[..., taps - 1:taps - 1 + T]    # (B, C, T)
        z = self.elu(self.bn1(z))
        z = self.elu(self.bn2(self.depth(z)))                   # (B, C, T-4)
        return self.drop1(self.pool(z))

    def levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three levels before pooling: ``node`` (B, C, T'), ``region`` (B, R, T'),
        ``global`` (B, 1, T'), and the attention weights ``channel`` (B, C) and
        ``region_weights`` (B, R)."""
        z = self.features(x)
        # node level: message passing inside each region, separable conv, BN + ELU, residual
        parts = []
        for (a, b), mp, dw, pw in zip(self.regions, self.node_mp, self.node_dw, self.node_pw):
            parts.append(pw(dw(mp(z[:, a:b]))))
        x_agg = self.elu(self.bn_node(torch.cat(parts, dim=1)))
        x_out = z + x_agg
        fused = x_agg if self.fusion_input == "pre_residual" else x_out
        # region level: attention pooling on the input (then ring MP) and on the node output
        r_in, r_late, w_late = [], [], []
        for (a, b), f_in, f_out in zip(self.regions, self.fuse_in, self.fuse_out):
            r_in.append(f_in(z[:, a:b])[0])
            sig, w = f_out(fused[:, a:b])
            r_late.append(sig)
            w_late.append(w)
        x_r = torch.stack(r_in, dim=1)                           # (B, R, T)
        x_r_agg = self.region_mp(x_r)
        x_r_late = torch.stack(r_late, dim=1)
        # global level
        g_in, _ = self.collapse_in(x_r if self.collapse_input == "pre_mp" else x_r_agg)
        g_out, w_reg = self.collapse_out(x_r_late)
        return {"node": x_out, "region": x_r_agg + x_r_late,
                "global": (g_in + g_out).unsqueeze(1),
                "channel": torch.cat(w_late, dim=1), "region_weights": w_reg}

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        lv = self.levels(x)
        h = torch.cat([lv["node"], lv["region"], lv["global"]], dim=1)
        logits = self.out(self.drop2(h.mean(dim=2)))
        if return_attention:
            return logits, {"channel": lv["channel"], "region": lv["region_weights"]}
        return logits


class HiSTN(TorchEEGClassifier):
    """HiSTN classifier with the scikit-learn API (Kuang, Song & Michoski 2024).

    Defaults follow the authors' code (``Models.py::HST_model``, ``Dreamer_10cv.py``):
    architecture, initialisation, constraints, BatchNorm constants and training (random
    1-s crops, class-balanced batches of 256, 50 epochs, Adam 1e-3 then 5e-4, the weights
    with the best validation loss). See :mod:`decoding.decoders._eeg_base` for training.

    Parameters
    ----------
    n_classes : int
        Ordinal classes ``0..n_classes-1`` (5 DREAMER rating levels).
    smoothing_sigma : float | None
        Width of the ordinal Gaussian label smoothing in class units (0.5 in the paper,
        see :func:`~decoding.decoders.label_smoothing.gaussian_soft_labels`); ``None``
        trains on one-hot labels.
    n_filters, kernel_size : int
        Temporal filter bank: 8 filters of 64 taps (0.5 s at 128 Hz).
    dropout : float
        Dropout rate in [0, 1) (0.5 subject-dependent, 0.2 subject-independent).
    n_epochs, batch_size, lr : int, int, float
        Adam; the rate is halved from 60 % of the epochs on (1e-3 -> 5e-4 at epoch 30
        of 50 in the paper).
    steps_per_epoch : int | None
        ``None``: the authors' count, (crop start positions) // ``batch_size``, which
        for one DREAMER subject is ``(6144 - 128) * 18 // 256 = 423``. A number caps the
        budget (the demo's).
    random_crops : bool
        Draw random crops of the window length from the recordings given by ``segments``
        in :meth:`fit` (the authors'); ``False`` trains on the fixed windows.
    validation_fraction : float
        Share of every recording (its last windows) held out to choose the epoch with
        the lowest validation loss; 0 keeps the last epoch.
    weight_decay : float
        L2 penalty of Adam (>= 0).
    balanced : bool
        Class-balanced sampling (draw a class uniformly, then a crop of that class).
    scaling : {"channel", "window", "none"}
        Input scaling inside the estimator: ``channel`` = per-channel z-score with the
        training statistics (one affine map for all windows; it keeps the band-power
        differences between windows), ``window`` = each window z-scored on itself
        (erases them; for the scaling experiment), ``none``. The authors divide each
        trial by its max |x| before cropping; ``decoding.jobs.histn`` does that per trial.
    fusion_input, collapse_input, max_norm, init : str
        Architecture switches, authors' way by default (:class:`HiSTNModule`).
    batchnorm : {"keras", "torch"}
        BatchNorm momentum/eps: Keras 0.99/1e-3 (torch momentum 0.01) or torch 0.1/1e-5.
    bn_recalibrate : bool
        After every epoch, re-estimate the BatchNorm statistics as plain averages over the
        training windows ("precise BN"; not in the authors' code). With momentum 0.99 the
        running averages need thousands of steps; at a budget of a few hundred steps this
        switch is what makes the evaluation-mode network match the trained one.
    target : str
        Label used when ``fit`` gets an ``EEGDataset`` without ``y``.
    random_state : int | None
        Seed of weights, batches and dropout.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
    verbose : bool
        Print the parameter count.

    Attributes
    ----------
    module_ : HiSTNModule
    n_parameters_ : int
        Trainable parameters (1,181 for 14 x 128 inputs and 5 classes).
    classes_ : ndarray
    history_ : dict
        ``train_loss``, ``val_loss``, ``val_f1``, ``lr`` per epoch, ``best_epoch``,
        ``steps_per_epoch``, ``n_val``.
    loss_curve_ : list of float
        ``history_["train_loss"]``.
    best_epoch_ : int
        Epoch whose weights were kept.
    channel_mean_, channel_std_ : ndarray, shape (n_chans,)
        Per-channel statistics learned in ``fit``.
    """

    _frozen_on_fine_tune = ("temporal.",)

    def __init__(self, n_classes: int = 5, smoothing_sigma: float | None = 0.5,
                 n_filters: int = 8, kernel_size: int = 64, dropout: float = 0.5,
                 n_epochs: int = 50, batch_size: int = 256, lr: float = 1e-3,
                 steps_per_epoch: int | None = None, random_crops: bool = True,
                 validation_fraction: float = 0.1, weight_decay: float = 0.0,
                 balanced: bool = True, scaling: str = "channel",
                 fusion_input: str = "pre_residual", collapse_input: str = "pre_mp",
                 max_norm: str = "keras", init: str = "keras", batchnorm: str = "keras",
                 bn_recalibrate: bool = False,
                 target: str = "valence", random_state: int | None = 0,
                 device: str = "auto", verbose: bool = False):
        self.n_classes = n_classes
        self.smoothing_sigma = smoothing_sigma
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.dropout = dropout
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch
        self.random_crops = random_crops
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.balanced = balanced
        self.scaling = scaling
        self.fusion_input = fusion_input
        self.collapse_input = collapse_input
        self.max_norm = max_norm
        self.init = init
        self.batchnorm = batchnorm
        self.bn_recalibrate = bn_recalibrate
        self.target = target
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _make_module(self, n_chans: int, n_times: int, n_classes: int) -> nn.Module:
        if n_chans != 14:
            raise ValueError(f"X: HiSTN's hierarchy is built on the 14 DREAMER channels "
                             f"(AF3 ... AF4), got {n_chans} channels")
        return HiSTNModule(n_chans, n_times, n_classes, n_filters=self.n_filters,
                           kernel_size=self.kernel_size, dropout=self.dropout,
                           fusion_input=self.fusion_input, collapse_input=self.collapse_input,
                           max_norm=self.max_norm, init=self.init)

    def attention(self, X) -> dict[str, np.ndarray]:
        """Mean attention weights on ``X``: ``channel`` (14,), within-region softmax of the
        node-level region pooling, and ``region`` (4,), of the global pooling."""
        from decoding.decoders._eeg_base import check_eeg_input

        self._check_fitted()
        X, _ = check_eeg_input(X, None)
        Z = self._standardise(X)
        dev = next(self.module_.parameters()).device
        self.module_.eval()
        with torch.no_grad():
            _, att = self.module_(Z.to(dev), return_attention=True)
        return {k: v.mean(0).cpu().numpy() for k, v in att.items()}
