"""EEGNet (Lawhern et al. 2018, J. Neural Eng. 15:056013), the compact CNN baseline.

EEGNet-4,2 as in the authors' ``EEGModels.py`` and the HiSTN code's baseline
(REFERENCES C 1.8): temporal conv (F1 filters, ``kern_length`` taps), depthwise spatial
conv over all channels (D per filter, max-norm 1), BN + ELU, average pool 4, dropout;
separable conv (16 taps) to F2 maps, BN + ELU, average pool 8, dropout; dense softmax
(max-norm 0.25).
"""

from __future__ import annotations

import torch
from torch import nn

from decoding.decoders._eeg_base import TorchEEGClassifier, max_norm_


class EEGNetModule(nn.Module):
    """Input (batch, n_chans, n_times) -> logits (batch, n_classes)."""

    def __init__(self, n_chans: int, n_times: int, n_classes: int, F1: int = 8, D: int = 2,
                 F2: int = 16, kern_length: int = 64, dropout: float = 0.5):
        super().__init__()
        if n_times < 32:
            raise ValueError(f"n_times: EEGNet pools by 32; expected >= 32 samples, got {n_times}")
        self._pad1 = ((kern_length - 1) // 2, kern_length // 2)
        self.conv1 = nn.Conv2d(1, F1, (1, kern_length), bias=False)
        self.bn1 = nn.BatchNorm2d(F1)
        self.spatial = nn.Conv2d(F1, F1 * D, (n_chans, 1), groups=F1, bias=False)
        self.bn2 = nn.BatchNorm2d(F1 * D)
        self.pool1 = nn.AvgPool2d((1, 4))
        self.sep_dw = nn.Conv2d(F1 * D, F1 * D, (1, 16), padding=(0, 8), groups=F1 * D,
                                bias=False)
        self.sep_pw = nn.Conv2d(F1 * D, F2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(F2)
        self.pool2 = nn.AvgPool2d((1, 8))
        self.drop = nn.Dropout(dropout)
        self.elu = nn.ELU()
        with torch.no_grad():
            n_out = self._body(torch.zeros(1, n_chans, n_times)).shape[1]
        self.dense = nn.Linear(n_out, n_classes)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn1(self.conv1(nn.functional.pad(x.unsqueeze(1), self._pad1)))
        z = self.drop(self.pool1(self.elu(self.bn2(self.spatial(z)))))
        z = self.elu(self.bn3(self.sep_pw(self.sep_dw(z))))
        return self.drop(self.pool2(z)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self._body(x))

    def apply_constraints(self) -> None:
        max_norm_(self.spatial.weight, 1.0, dim=0)
        max_norm_(self.dense.weight, 0.25, dim=0)


class EEGNet(TorchEEGClassifier):
    """EEGNet classifier with the scikit-learn API (same training shell as HiSTN).

    Parameters
    ----------
    n_classes : int
        Classes ``0..n_classes-1``.
    F1, D, F2, kern_length, dropout : int, int, int, int, float
        EEGNet-8,2 with 64-tap temporal kernels (0.5 s at 128 Hz) and dropout 0.5 (the HiSTN
        code uses kernel 5 / dropout 0.75 for its subject-dependent runs).
    smoothing_sigma : float | None
        Ordinal Gaussian label smoothing width; ``None`` = one-hot (EEGNet's own loss).
    n_epochs, batch_size, lr, steps_per_epoch, random_crops, validation_fraction
        The HiSTN authors' training loop, which they also used for EEGNet (see
        :class:`~decoding.decoders.histn.HiSTN`).
    weight_decay, balanced, scaling, batchnorm, bn_recalibrate
        As in :class:`~decoding.decoders.histn.HiSTN` (EEGNet is a Keras model too:
        ``batchnorm="keras"`` by default).
    target, random_state, device, verbose
        As in :class:`~decoding.decoders.histn.HiSTN`.
    """

    def __init__(self, n_classes: int = 5, F1: int = 8, D: int = 2, F2: int = 16,
                 kern_length: int = 64, dropout: float = 0.5,
                 smoothing_sigma: float | None = None, n_epochs: int = 50,
                 batch_size: int = 256, lr: float = 1e-3, steps_per_epoch: int | None = None,
                 random_crops: bool = True, validation_fraction: float = 0.1,
                 weight_decay: float = 0.0, balanced: bool = True, scaling: str = "channel",
                 batchnorm: str = "keras",
                 bn_recalibrate: bool = False, target: str = "valence",
                 random_state: int | None = 0, device: str = "auto", verbose: bool = False):
        self.n_classes = n_classes
        self.F1 = F1
        self.D = D
        self.F2 = F2
        self.kern_length = kern_length
        self.dropout = dropout
        self.smoothing_sigma = smoothing_sigma
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.steps_per_epoch = steps_per_epoch
        self.random_crops = random_crops
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.balanced = balanced
        self.scaling = scaling
        self.batchnorm = batchnorm
        self.bn_recalibrate = bn_recalibrate
        self.target = target
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _make_module(self, n_chans: int, n_times: int, n_classes: int) -> nn.Module:
        return EEGNetModule(n_chans, n_times, n_classes, self.F1, self.D, self.F2,
                            self.kern_length, self.dropout)
