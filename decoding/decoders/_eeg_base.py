"""Shared sklearn shell for the small torch EEG classifiers (HiSTN, EEGNet).

Input handling (``EEGDataset`` or ``(n_epochs, n_channels, n_times)`` arrays), per-channel
standardisation, class-balanced mini-batches, soft-label cross-entropy, max-norm
constraints, fine-tuning and save/load live here once; each model file holds only its
network and its defaults.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from data_loaders.schema import EEGDataset
from decoding._device import resolve_device
from decoding._pretrained import PretrainedMixin
from decoding.decoders.label_smoothing import gaussian_soft_labels


def check_eeg_input(X, y=None, target: str | None = None, n_classes: int | None = None,
                    name: str = "X") -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(X float32 (n, C, T), y int | None)`` from an EEGDataset or arrays."""
    if isinstance(X, EEGDataset):
        if y is None and target is not None:
            if target not in X.labels:
                raise ValueError(f"target: {target!r} is not a label of the dataset "
                                 f"(labels: {sorted(X.labels)})")
            y = X.labels[target]
        X = X.X
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(f"{name}: expected shape (n_epochs, n_channels, n_times), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name}: contains NaN or inf; expected finite samples")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (X.shape[0],) or y.dtype.kind not in "iu":
            raise ValueError(f"y: expected int labels of shape ({X.shape[0]},), got "
                             f"{y.dtype} {y.shape}")
        if n_classes is not None and y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"y: expected classes in 0..{n_classes - 1} (n_classes="
                             f"{n_classes}), got range {y.min()}..{y.max()}")
    return X, y


class TorchEEGClassifier(PretrainedMixin, ClassifierMixin, BaseEstimator):
    """Base class: subclasses define ``__init__`` (storing hyper-parameters) and
    ``_make_module(n_chans, n_times, n_classes) -> nn.Module``.

    Labels are ordinal classes ``0..n_classes-1`` (``classes_`` is the full grid, so
    ``predict_proba`` always has ``n_classes`` columns, as Seq2HR needs).
    """

    _frozen_on_fine_tune: tuple[str, ...] = ()

    # ---- hooks -----------------------------------------------------------------------------
    def _make_module(self, n_chans: int, n_times: int, n_classes: int) -> nn.Module:
        raise NotImplementedError

    def _build_module(self, extra: dict[str, Any]) -> nn.Module:
        return self._make_module(int(extra["n_chans_"]), int(extra["n_times_"]),
                                 int(self.n_classes))

    def _extra_config(self) -> dict[str, Any]:
        return {"n_chans_": self.n_chans_, "n_times_": self.n_times_,
                "channel_mean_": self.channel_mean_.tolist(),
                "channel_std_": self.channel_std_.tolist()}

    def _restore_extra(self, extra: dict[str, Any]) -> None:
        self.n_chans_, self.n_times_ = int(extra["n_chans_"]), int(extra["n_times_"])
        self.channel_mean_ = np.asarray(extra["channel_mean_"], dtype=np.float32)
        self.channel_std_ = np.asarray(extra["channel_std_"], dtype=np.float32)
        self.classes_ = np.arange(self.n_classes)

    # ---- sklearn API -----------------------------------------------------------------------
    def fit(self, X, y=None) -> TorchEEGClassifier:
        """Train from scratch.

        Parameters
        ----------
        X : EEGDataset | ndarray, shape (n_epochs, n_channels, n_times)
            Windows (volts or baseline z-scores; standardised per channel here).
        y : ndarray of int, shape (n_epochs,) | None
            Classes in ``0..n_classes-1``; ``None`` takes ``X.labels[self.target]``.
        """
        self._check_params()
        X, y = check_eeg_input(X, y, self.target, self.n_classes)
        if y is None:
            raise ValueError("y: required when X is an array (or pass an EEGDataset)")
        self.n_chans_, self.n_times_ = X.shape[1], X.shape[2]
        self.classes_ = np.arange(self.n_classes)
        self.channel_mean_ = X.mean(axis=(0, 2)).astype(np.float32)
        self.channel_std_ = (X.std(axis=(0, 2)) + 1e-8).astype(np.float32)
        self.device_ = torch.device(resolve_device(self.device))
        seed = 0 if self.random_state is None else int(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module_ = self._make_module(self.n_chans_, self.n_times_, self.n_classes)
            self.module_.to(self.device_)
            self.n_parameters_ = sum(p.numel() for p in self.module_.parameters()
                                     if p.requires_grad)
            if self.verbose:
                print(f"{type(self).__name__}: {self.n_parameters_} trainable parameters")
            self.loss_curve_ = self._train(X, y, self.n_epochs, self.lr, seed)
        return self

    def fine_tune(self, X, y=None, n_epochs: int | None = None, lr: float | None = None):
        """Continue training a fitted model on new data (e.g. 10 s of a new subject).

        The layers in ``_frozen_on_fine_tune`` stay fixed (HiSTN's temporal filter bank,
        as in the paper's subject-independent protocol); the channel standardisation of
        the pre-training data is kept.
        """
        self._check_fitted()
        X, y = check_eeg_input(X, y, self.target, self.n_classes)
        if y is None:
            raise ValueError("y: required when X is an array (or pass an EEGDataset)")
        frozen = [p for n, p in self.module_.named_parameters()
                  if n.startswith(self._frozen_on_fine_tune)] if self._frozen_on_fine_tune else []
        for p in frozen:
            p.requires_grad_(False)
        seed = (0 if self.random_state is None else int(self.random_state)) + 1
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.fine_tune_loss_curve_ = self._train(
                    X, y, n_epochs or self.n_epochs, lr or self.lr, seed)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_epochs, n_classes)."""
        return torch.softmax(torch.from_numpy(self._logits(X)), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """Most probable class, shape (n_epochs,)."""
        logits = self._logits(X)
        return self.classes_[logits.argmax(axis=1)]

    def score(self, X, y=None, sample_weight=None) -> float:
        """Accuracy (``y=None`` takes ``X.labels[self.target]``)."""
        from sklearn.metrics import accuracy_score

        X, y = check_eeg_input(X, y, self.target)
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    # ---- internals -------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("n_epochs", "batch_size", "n_classes"):
            val = getattr(self, name)
            if not (isinstance(val, int | np.integer) and val >= 1):
                raise ValueError(f"{name}: expected a positive int, got {val!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected a learning rate > 0, got {self.lr!r}")
        if self.smoothing_sigma is not None and self.smoothing_sigma < 0:
            raise ValueError(f"smoothing_sigma: expected None or >= 0, got "
                             f"{self.smoothing_sigma!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(f"{type(self).__name__}: not fitted; call fit(...) first")

    def _standardise(self, X: np.ndarray) -> torch.Tensor:
        if X.shape[1:] != (self.n_chans_, self.n_times_):
            raise ValueError(f"X: expected epochs of shape ({self.n_chans_}, {self.n_times_}) "
                             f"as in fit, got {X.shape[1:]}")
        Z = (X - self.channel_mean_[None, :, None]) / self.channel_std_[None, :, None]
        return torch.from_numpy(Z.astype(np.float32))

    def _logits(self, X) -> np.ndarray:
        self._check_fitted()
        X, _ = check_eeg_input(X, None)
        Z = self._standardise(X)
        dev = next(self.module_.parameters()).device
        self.module_.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(Z), 1024):
                out.append(self.module_(Z[i:i + 1024].to(dev)).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)

    def _train(self, X: np.ndarray, y: np.ndarray, n_epochs: int, lr: float,
               seed: int) -> list[float]:
        """Adam on soft-label cross-entropy; class-balanced batches (HiSTN ``Dreamer_10cv``)."""
        rng = np.random.default_rng(seed)
        dev = next(self.module_.parameters()).device
        Z = self._standardise(X)
        targets = torch.from_numpy(gaussian_soft_labels(y.astype(np.int64), self.n_classes,
                                                        self.smoothing_sigma))
        if self.balanced:
            counts = np.bincount(y, minlength=self.n_classes).astype(float)
            p = 1.0 / counts[y]
            p /= p.sum()
        else:
            p = None
        params = [q for q in self.module_.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        # lr halved for the last 40 % of epochs (HiSTN: 1e-3 -> 5e-4 from epoch 30 of 50)
        drop_at = int(0.6 * n_epochs)
        n_steps = max(1, int(np.ceil(len(Z) / self.batch_size)))
        curve = []
        self.module_.train()
        for epoch in range(n_epochs):
            if epoch == drop_at and epoch > 0:
                for g in opt.param_groups:
                    g["lr"] = lr / 2
            total = 0.0
            for _ in range(n_steps):
                idx = rng.choice(len(Z), size=min(self.batch_size, len(Z)), replace=True, p=p)
                xb, tb = Z[idx].to(dev), targets[idx].to(dev)
                loss = nn.functional.cross_entropy(self.module_(xb), tb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if hasattr(self.module_, "apply_constraints"):
                    self.module_.apply_constraints()
                total += float(loss.detach())
            curve.append(total / n_steps)
        self.module_.eval()
        return curve


def max_norm_(weight: torch.Tensor, max_value: float = 1.0, dim: int = 0) -> None:
    """Keras ``max_norm``: rescale each slice along ``dim`` to L2 norm <= ``max_value``."""
    with torch.no_grad():
        dims = [d for d in range(weight.dim()) if d != dim]
        norms = torch.linalg.vector_norm(weight, dim=dims, keepdim=True).clamp(min=1e-12)
        weight.mul_(torch.clamp(max_value / norms, max=1.0))
