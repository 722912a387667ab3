"""HiSTN: Hierarchical Spatial-Temporal Network for EEG emotion recognition.

Kuang, Song & Michoski (2024), "Hierarchical Spatial-Temporal Network ... with about 1,000
parameters", arXiv:2408.15255; reference code github.com/dykuang/EEG-based-affective-computing
(``Models.py::HST_model``, TensorFlow). Re-implemented in torch from that code
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
             BN + ELU and a residual connection.
     regions: attention pooling (a softmax over the region's channels from their time
             averages) to one signal per region, computed on the input and on the node
             output; the input's is passed through Chebyshev message passing on the
             4-region ring; the two are summed.
     global: attention pooling of the 4 region signals into one, summed over both paths.
III. Concatenate node (14), region (4) and global (1) signals, global average over time,
     dropout, dense softmax over the 5 ordinal classes.

Trainable parameters: 1,181 for 14 channels x 128 samples and 5 classes (the Keras count,
including BatchNorm moving statistics, is 1,265).
"""

from __future__ import annotations

from collections.abc import Sequence

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


class ChebMessagePassing(nn.Module):
    """``X -> P^T X`` with ``P = sum_k w_k T_k(L~)``: K+1 learned scalars per graph."""

    def __init__(self, adjacency: np.ndarray, order: int = 2):
        super().__init__()
        self.register_buffer("basis", torch.tensor(chebyshev_basis(adjacency, order),
                                                   dtype=torch.float32))
        w = torch.zeros(order + 1)
        w[0] = 1.0  # start as the identity filter
        self.weight = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n, T)
        P = torch.einsum("k,kij->ij", self.weight, self.basis)
        return torch.einsum("ij,bit->bjt", P, x)


class AttentionPool(nn.Module):
    """Softmax attention over nodes from their time averages: (B, n, T) -> (B, T), (B, n)."""

    def __init__(self, n: int):
        super().__init__()
        self.dense = nn.Linear(n, n)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.softmax(self.dense(x.mean(dim=2)), dim=1)
        return torch.einsum("bn,bnt->bt", w, x), w


class HiSTNModule(nn.Module):
    """The HiSTN network; input (batch, n_chans, n_times), output logits (batch, n_classes)."""

    def __init__(self, n_chans: int = 14, n_times: int = 128, n_classes: int = 5,
                 n_filters: int = 8, kernel_size: int = 64, sep_kernel: int = 5,
                 dropout: float = 0.5,
                 regions: Sequence[tuple[int, int]] = DREAMER_REGIONS,
                 region_graphs: Sequence[np.ndarray] = DREAMER_REGION_GRAPHS,
                 region_adjacency: np.ndarray = RING4, node_order: int = 2,
                 region_order: int = 2):
        super().__init__()
        if regions[0][0] != 0 or regions[-1][1] != n_chans or any(
                a[1] != b[0] for a, b in zip(regions[:-1], regions[1:])):
            raise ValueError(f"regions: expected contiguous ranges covering 0..{n_chans}, "
                             f"got {list(regions)}")
        if n_times // 1 - 4 < 2:
            raise ValueError(f"n_times: expected at least 6 samples, got {n_times}")
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

    def apply_constraints(self) -> None:
        """Keras ``max_norm(1)`` on the depthwise and pointwise kernels (HiSTN code)."""
        max_norm_(self.mix, 1.0, dim=0)
        max_norm_(self.depth.weight, 1.0, dim=0)
        for pw in self.node_pw:
            max_norm_(pw.weight, 1.0, dim=0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature head: (B, C, T) -> (B, C, (T - 4) // 2)."""
        # The shared filter bank followed by the per-channel mix of its 8 outputs is linear,
        # so it equals one depthwise filter per channel, h_c = sum_f mix[c, f] k_f: same
        # function and parameters as the paper's two layers, 8x fewer multiplications.
        kernels = self.mix @ self.temporal.weight[:, 0, 0, :]   # (C, taps)
        z = nn.functional.conv1d(nn.functional.pad(x, self._pad), kernels.unsqueeze(1),
                                 groups=x.shape[1])             # (B, C, T)
        z = self.elu(self.bn1(z))
        z = self.elu(self.bn2(self.depth(z)))                   # (B, C, T-4)
        return self.drop1(self.pool(z))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        z = self.features(x)
        # node level: message passing inside each region, separable conv, residual
        parts = []
        for (a, b), mp, dw, pw in zip(self.regions, self.node_mp, self.node_dw, self.node_pw):
            parts.append(pw(dw(mp(z[:, a:b]))))
        z_node = self.elu(self.bn_node(torch.cat(parts, dim=1))) + z
        # region level: attention pooling on the input (then ring MP) and on the node output
        r_in, r_out, w_out = [], [], []
        for (a, b), f_in, f_out in zip(self.regions, self.fuse_in, self.fuse_out):
            r_in.append(f_in(z[:, a:b])[0])
            sig, w = f_out(z_node[:, a:b])
            r_out.append(sig)
            w_out.append(w)
        reg_agg = self.region_mp(torch.stack(r_in, dim=1))      # (B, R, T)
        reg_late = torch.stack(r_out, dim=1)
        # global level
        g_in, _ = self.collapse_in(reg_agg)
        g_out, w_reg = self.collapse_out(reg_late)
        h = torch.cat([z_node, reg_agg + reg_late, (g_in + g_out).unsqueeze(1)], dim=1)
        logits = self.out(self.drop2(h.mean(dim=2)))
        if return_attention:
            return logits, {"channel": torch.cat(w_out, dim=1), "region": w_reg}
        return logits


class HiSTN(TorchEEGClassifier):
    """HiSTN classifier with the scikit-learn API (Kuang, Song & Michoski 2024).

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
        Dropout rate (0.5 subject-dependent, 0.2 subject-independent in the paper).
    n_epochs, batch_size, lr : int, int, float
        Adam; the rate is halved for the last 40 % of epochs. One epoch is
        ``ceil(n_epochs_data / batch_size)`` class-balanced batches. The paper trains 50
        epochs of batch 256 on random crops; the defaults here (40 x 64) keep one
        subject-dependent fold under two minutes on a laptop CPU.
    weight_decay : float
        L2 penalty of Adam.
    balanced : bool
        Draw batches with probability inversely proportional to class frequency.
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
    loss_curve_ : list of float
    channel_mean_, channel_std_ : ndarray, shape (n_chans,)
        Per-channel standardisation learned in ``fit``.
    """

    _frozen_on_fine_tune = ("temporal.",)

    def __init__(self, n_classes: int = 5, smoothing_sigma: float | None = 0.5,
                 n_filters: int = 8, kernel_size: int = 64, dropout: float = 0.5,
                 n_epochs: int = 40, batch_size: int = 64, lr: float = 1e-3,
                 weight_decay: float = 0.0, balanced: bool = True, target: str = "valence",
                 random_state: int | None = 0, device: str = "auto", verbose: bool = False):
        self.n_classes = n_classes
        self.smoothing_sigma = smoothing_sigma
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.dropout = dropout
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.balanced = balanced
        self.target = target
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _make_module(self, n_chans: int, n_times: int, n_classes: int) -> nn.Module:
        if n_chans != 14:
            raise ValueError(f"X: HiSTN's hierarchy is built on the 14 DREAMER channels "
                             f"(AF3 ... AF4), got {n_chans} channels")
        return HiSTNModule(n_chans, n_times, n_classes, n_filters=self.n_filters,
                           kernel_size=self.kernel_size, dropout=self.dropout)

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
