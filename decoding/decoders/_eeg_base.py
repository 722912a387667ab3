"""Shared sklearn shell for the small torch EEG classifiers (HiSTN, EEGNet).

Input handling (``EEGDataset`` or ``(n_epochs, n_channels, n_times)`` arrays), input
scaling, class-balanced mini-batches of random crops, soft-label cross-entropy, a
validation checkpoint, max-norm constraints, fine-tuning and save/load live here once;
each model file holds only its network and its defaults.

Training follows the HiSTN authors' ``Dreamer_10cv.py`` (REFERENCES C 1.8) by default:

- every step draws ``batch_size`` (256) class-balanced **random crops** of ``n_times``
  samples from the continuous recordings the windows were cut from (``segments``; without
  them every window is its own recording and the crop is the window);
- an epoch is ``(crop start positions) // batch_size`` steps (the authors'
  ``(train span - 128) * 18 // 256``), 50 epochs, Adam 1e-3 dropped to half from 60 % of
  the epochs (5e-4 from epoch 30 of 50);
- the weights with the lowest validation loss (one-hot cross-entropy, class-balanced) are
  kept; the validation windows are the last ``validation_fraction`` of every recording
  (the authors validate on the 6-s block next to the test block).

``history_`` holds the learning curves (train loss, validation loss and weighted F1 per
epoch).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from torch import nn

from data_loaders.schema import EEGDataset
from decoding import _distributed as ddp
from decoding._device import resolve_device
from decoding._pretrained import PretrainedMixin
from decoding.decoders.label_smoothing import gaussian_soft_labels

SCALINGS = ("channel", "window", "none")


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


def check_segments(segments, n: int, y: np.ndarray | None = None) -> np.ndarray:
    """Recording ids as int64 ``(n,)``; a new recording also starts where ``y`` changes.

    Consecutive rows with the same id are taken as consecutive windows of one continuous
    recording (what :func:`decoding.evaluation.protocols.contiguous_segments` returns).
    """
    if segments is None:
        return np.arange(n, dtype=np.int64)
    s = np.asarray(segments)
    if s.shape != (n,) or s.dtype.kind not in "iu":
        raise ValueError(f"segments: expected int recording ids of shape ({n},), got "
                         f"{s.dtype} {s.shape}")
    new = np.ones(n, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    if y is not None:
        new[1:] |= y[1:] != y[:-1]
    return np.cumsum(new) - 1


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
        module = self._make_module(int(extra["n_chans_"]), int(extra["n_times_"]),
                                   int(self.n_classes))
        self._set_batchnorm(module)
        return module

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
    def fit(self, X, y=None, segments=None) -> TorchEEGClassifier:
        """Train from scratch.

        Parameters
        ----------
        X : EEGDataset | ndarray, shape (n_epochs, n_channels, n_times)
            Windows (baseline z-scores, or volts: the input scaling handles the unit).
        y : ndarray of int, shape (n_epochs,) | None
            Classes in ``0..n_classes-1``; ``None`` takes ``X.labels[self.target]``.
        segments : ndarray of int, shape (n_epochs,) | None
            Recording id of each window: consecutive rows with the same id are consecutive
            windows of one continuous recording, so random crops may straddle them
            (:func:`decoding.evaluation.protocols.contiguous_segments`). ``None``: every
            window stands alone (the crop is the window).
        """
        self._check_params()
        X, y = check_eeg_input(X, y, self.target, self.n_classes)
        if y is None:
            raise ValueError("y: required when X is an array (or pass an EEGDataset)")
        present = np.unique(y)
        if present.size < 2:
            raise ValueError(f"y: expected at least 2 classes to learn from, got only class "
                             f"{present.tolist()} in {y.size} windows")
        seg = check_segments(segments, len(X), y)
        self.n_chans_, self.n_times_ = X.shape[1], X.shape[2]
        self.classes_ = np.arange(self.n_classes)
        self.channel_mean_ = X.mean(axis=(0, 2)).astype(np.float32)
        self.channel_std_ = (X.std(axis=(0, 2)) + 1e-8).astype(np.float32)
        self.device_ = torch.device(resolve_device(self.device))
        seed = 0 if self.random_state is None else int(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module_ = self._make_module(self.n_chans_, self.n_times_, self.n_classes)
            self._set_batchnorm(self.module_)
            self.module_.to(self.device_)
            self.n_parameters_ = sum(p.numel() for p in self.module_.parameters()
                                     if p.requires_grad)
            if self.verbose:
                print(f"{type(self).__name__}: {self.n_parameters_} trainable parameters")
            self.history_ = self._train(X, y, seg, self.n_epochs, self.lr, seed)
        self.loss_curve_ = self.history_["train_loss"]
        self.best_epoch_ = self.history_["best_epoch"]
        return self

    def fine_tune(self, X, y=None, n_epochs: int | None = None, lr: float | None = None,
                  segments=None, steps_per_epoch: int | None = None,
                  random_crops: bool | None = None):
        """Continue training a fitted model on new data (e.g. 10 s of a new subject).

        The layers in ``_frozen_on_fine_tune`` stay fixed (HiSTN's temporal filter bank,
        as in the paper's subject-independent protocol); the input scaling of the
        pre-training data is kept. ``segments`` as in :meth:`fit`; ``n_epochs``, ``lr``,
        ``steps_per_epoch`` and ``random_crops`` override the estimator's for this call
        (the authors fine-tune 400 epochs at 1e-3 on 1-s windows with a 0.25-s stride,
        which random crops of the calibration seconds stand for).
        """
        self._check_fitted()
        X, y = check_eeg_input(X, y, self.target, self.n_classes)
        if y is None:
            raise ValueError("y: required when X is an array (or pass an EEGDataset)")
        n_epochs = self.n_epochs if n_epochs is None else n_epochs
        lr = self.lr if lr is None else lr
        if not (isinstance(n_epochs, int | np.integer) and n_epochs >= 1):
            raise ValueError(f"n_epochs: expected a positive int, got {n_epochs!r}")
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr: expected a finite learning rate > 0, got {lr!r}")
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or not (
                isinstance(steps_per_epoch, int | np.integer) and steps_per_epoch >= 1)):
            raise ValueError(f"steps_per_epoch: expected None or a positive int, got "
                             f"{steps_per_epoch!r}")
        seg = check_segments(segments, len(X), y)
        frozen = [p for n, p in self.module_.named_parameters()
                  if n.startswith(self._frozen_on_fine_tune)] if self._frozen_on_fine_tune else []
        for p in frozen:
            p.requires_grad_(False)
        seed = (0 if self.random_state is None else int(self.random_state)) + 1
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.fine_tune_history_ = self._train(
                    X, y, seg, int(n_epochs), float(lr), seed, steps_per_epoch=steps_per_epoch,
                    random_crops=random_crops)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        self.fine_tune_loss_curve_ = self.fine_tune_history_["train_loss"]
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
        def finite(name, low, high=math.inf, low_open=False, high_open=True):
            val = getattr(self, name)
            ok = isinstance(val, int | float | np.integer | np.floating) and \
                not isinstance(val, bool) and math.isfinite(val)
            if ok:
                ok = (val > low if low_open else val >= low) and \
                    (val < high if high_open else val <= high)
            if not ok:
                lo = f"{'>' if low_open else '>='} {low:g}"
                hi = "" if high == math.inf else f" and {'<' if high_open else '<='} {high:g}"
                raise ValueError(f"{name}: expected a finite number {lo}{hi}, got {val!r}")

        for name in ("n_epochs", "batch_size", "n_classes"):
            val = getattr(self, name)
            if isinstance(val, bool) or not (isinstance(val, int | np.integer) and val >= 1):
                raise ValueError(f"{name}: expected a positive int, got {val!r}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes: expected >= 2, got {self.n_classes!r}")
        finite("lr", 0, low_open=True)
        finite("weight_decay", 0)
        finite("dropout", 0, 1)
        finite("validation_fraction", 0, 0.5)
        if self.smoothing_sigma is not None:
            finite("smoothing_sigma", 0)
        spe = self.steps_per_epoch
        if spe is not None and (isinstance(spe, bool) or not (
                isinstance(spe, int | np.integer) and spe >= 1)):
            raise ValueError(f"steps_per_epoch: expected None (the authors' count) or a "
                             f"positive int, got {spe!r}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling: expected one of {SCALINGS}, got {self.scaling!r}")
        if self.batchnorm not in ("keras", "torch"):
            raise ValueError(f"batchnorm: expected 'keras' or 'torch', got {self.batchnorm!r}")

    def _set_batchnorm(self, module: nn.Module) -> None:
        """Keras BatchNormalization defaults (momentum 0.99 = torch 0.01, eps 1e-3)."""
        if getattr(self, "batchnorm", "torch") != "keras":
            return
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum, m.eps = 0.01, 1e-3

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. "
                                 "Call 'fit' with appropriate arguments before using this "
                                 "estimator.")

    def _scale(self, X: np.ndarray) -> np.ndarray:
        """Input scaling: ``channel`` = per-channel z-score with the statistics of ``fit``
        (keeps band-power differences between windows), ``window`` = each window and
        channel z-scored on itself (erases them), ``none``."""
        if self.scaling == "channel":
            return (X - self.channel_mean_[None, :, None]) / self.channel_std_[None, :, None]
        if self.scaling == "window":
            return (X - X.mean(-1, keepdims=True)) / (X.std(-1, keepdims=True) + 1e-8)
        return X

    def _standardise(self, X: np.ndarray) -> torch.Tensor:
        if X.shape[1:] != (self.n_chans_, self.n_times_):
            raise ValueError(f"X: expected epochs of shape ({self.n_chans_}, {self.n_times_}) "
                             f"as in fit, got {X.shape[1:]}")
        return torch.from_numpy(self._scale(X).astype(np.float32))

    def _logits(self, X) -> np.ndarray:
        self._check_fitted()
        X, _ = check_eeg_input(X, None)
        Z = self._standardise(X)
        return self._forward_eval(Z)

    def _forward_eval(self, Z: torch.Tensor) -> np.ndarray:
        dev = next(self.module_.parameters()).device
        self.module_.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(Z), 1024):
                out.append(self.module_(Z[i:i + 1024].to(dev)).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)

    def _recalibrate_batchnorm(self, X: np.ndarray) -> None:
        """Re-estimate every BatchNorm's running mean and variance as the plain average
        over the training windows under the current weights ("precise BN"). Running
        averages with Keras' momentum 0.99 need thousands of steps to forget their
        initial values; at a budget of a few hundred steps this is what makes them right."""
        bns = [m for m in self.module_.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None                      # cumulative average
        dev = next(self.module_.parameters()).device
        self.module_.train()
        Z = self._standardise(X)
        with torch.no_grad():
            for i in range(0, len(Z), 512):
                self.module_(Z[i:i + 512].to(dev))
        for m, mom in zip(bns, saved):
            m.momentum = mom

    def _split_validation(self, y: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """Boolean mask of validation windows: the last ``validation_fraction`` of every
        recording (recordings of a single window: a class-stratified random share)."""
        val = np.zeros(len(y), dtype=bool)
        frac = float(self.validation_fraction)
        if frac <= 0:
            return val
        lengths = np.bincount(seg)
        if np.all(lengths == 1):
            rng = np.random.default_rng(0 if self.random_state is None else self.random_state)
            for c in np.unique(y):
                idx = np.flatnonzero(y == c)
                k = int(round(frac * idx.size))
                if idx.size - k >= 1 and k:
                    val[rng.choice(idx, k, replace=False)] = True
        else:
            start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            for s0, n in zip(start, lengths):
                k = int(round(frac * n))
                if n - k >= 1 and k:
                    val[s0 + n - k:s0 + n] = True
        # every class keeps a training window
        for c in np.unique(y):
            if not np.any((y == c) & ~val):
                val[y == c] = False
        return val

    def _train(self, X: np.ndarray, y: np.ndarray, seg: np.ndarray, n_epochs: int,
               lr: float, seed: int, steps_per_epoch: int | None = None,
               random_crops: bool | None = None) -> dict:
        """Adam on soft-label cross-entropy over class-balanced random crops; the weights
        with the lowest validation loss are kept (HiSTN ``Dreamer_10cv.py``)."""
        from sklearn.metrics import f1_score

        rng = np.random.default_rng(seed)
        dev = next(self.module_.parameters()).device
        val = self._split_validation(y, seg)
        tr = ~val
        T = X.shape[2]
        # continuous training recordings: windows of one segment laid end to end
        crop = bool(self.random_crops if random_crops is None else random_crops)
        seg_tr, y_tr = seg[tr], y[tr]
        Xtr = X[tr]
        if crop:
            signal = torch.from_numpy(np.ascontiguousarray(
                np.concatenate(list(Xtr), axis=1)))                       # (C, n_tr * T)
            starts, start_y = [], []
            change = np.flatnonzero(np.diff(seg_tr)) + 1
            bounds = np.concatenate([[0], change, [len(seg_tr)]])
            for a, b in zip(bounds[:-1], bounds[1:]):
                starts.append(np.arange(a * T, b * T - T + 1))
                start_y.append(np.full((b - a - 1) * T + 1, y_tr[a]))
            starts, start_y = np.concatenate(starts), np.concatenate(start_y)
        else:
            starts, start_y = np.arange(len(Xtr)), y_tr
        targets = torch.from_numpy(gaussian_soft_labels(np.arange(self.n_classes),
                                                        self.n_classes, self.smoothing_sigma))
        if self.balanced:
            counts = np.bincount(start_y, minlength=self.n_classes).astype(float)
            p = 1.0 / counts[start_y]
            p /= p.sum()
        else:
            p = None
        if not crop:
            Ztr = self._standardise(Xtr)
        has_val = bool(val.any())
        if has_val:
            Zval = self._standardise(X[val])
            y_val = y[val]
            w_val = 1.0 / np.bincount(y_val, minlength=self.n_classes)[y_val]
            w_val = torch.from_numpy((w_val / w_val.sum()).astype(np.float32))
        params = [q for q in self.module_.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=lr, weight_decay=self.weight_decay)
        drop_at = int(0.6 * n_epochs)  # 1e-3 -> 5e-4 from epoch 30 of 50
        # the authors' epoch: (span - window) * recordings // batch crop draws
        n_crops = len(starts) - (np.unique(seg_tr).size if crop else 0)
        n_steps = steps_per_epoch or self.steps_per_epoch or max(1, n_crops // self.batch_size)
        hist = {"train_loss": [], "val_loss": [], "val_f1": [], "lr": [],
                "steps_per_epoch": int(n_steps), "n_val": int(val.sum()), "best_epoch": None}
        best, best_state = math.inf, None
        offsets = torch.arange(T)
        rank, world = ddp.world(dev)  # under torchrun / accelerate launch: data-parallel steps
        for epoch in range(n_epochs):
            if epoch == drop_at and epoch > 0:
                for g in opt.param_groups:
                    g["lr"] = lr / 2
            self.module_.train()
            total = 0.0
            for _ in range(n_steps):
                pick = rng.choice(len(starts), size=self.batch_size, replace=True, p=p)
                if world > 1:  # this rank's slice of the batch (every rank draws the same)
                    pick = pick[ddp.shard(len(pick), rank, world)]
                    before = ddp.snapshot_buffers(self.module_)
                if crop:
                    idx = torch.from_numpy(starts[pick])[:, None] + offsets
                    xb = torch.from_numpy(self._scale(
                        signal[:, idx].permute(1, 0, 2).numpy())).float()
                else:
                    xb = Ztr[pick]
                tb = targets[torch.from_numpy(start_y[pick])]
                if world == 1:
                    loss = nn.functional.cross_entropy(self.module_(xb.to(dev)), tb.to(dev))
                else:  # summed over the slice / the whole batch: the summed gradients are
                    loss = nn.functional.cross_entropy(  # the 1-process batch's gradient
                        self.module_(xb.to(dev)), tb.to(dev), reduction="sum") / self.batch_size
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:  # BatchNorm: each rank's slice statistics, running stats averaged
                    ddp.all_reduce_gradients(params, world)
                    ddp.sync_buffers(self.module_, before, world, mode="mean")
                opt.step()
                if hasattr(self.module_, "apply_constraints"):
                    self.module_.apply_constraints()
                total += ddp.all_reduce_sum(float(loss.detach()), world)
            hist["train_loss"].append(total / n_steps)
            hist["lr"].append(opt.param_groups[0]["lr"])
            if getattr(self, "bn_recalibrate", False):
                self._recalibrate_batchnorm(Xtr)
            if has_val:
                logits = torch.from_numpy(self._forward_eval(Zval))
                vl = float((nn.functional.cross_entropy(
                    logits, torch.from_numpy(y_val.astype(np.int64)), reduction="none")
                    * w_val).sum())
                hist["val_loss"].append(vl)
                hist["val_f1"].append(float(f1_score(y_val, logits.argmax(1).numpy(),
                                                     average="weighted", zero_division=0)))
                if vl < best:
                    best, hist["best_epoch"] = vl, epoch
                    best_state = copy.deepcopy(self.module_.state_dict())
        if best_state is not None:
            self.module_.load_state_dict(best_state)
        else:
            hist["best_epoch"] = n_epochs - 1
        self.module_.eval()
        return hist


def max_norm_(weight: torch.Tensor, max_value: float = 1.0, dim: int | None = 0) -> None:
    """Rescale each slice along ``dim`` to L2 norm <= ``max_value``; ``dim=None`` clips
    every element to ``|w| <= max_value``.

    Keras ``max_norm(m)`` reduces over axis 0 of the Keras kernel with the formula
    ``w * clip(norm, 0, m) / (1e-7 + norm)``, reproduced here. On a depthwise (1, 8, C, 1)
    or pointwise (1, n_in, n_out) kernel axis 0 has length 1, so Keras clips elements
    (``dim=None``); on EEGNet's spatial (C, 1, F1, D) kernel it bounds the L2 norm of each
    spatial filter (``dim=0`` of the torch weight, the output channel).
    """
    with torch.no_grad():
        if dim is None:
            norms = weight.abs()
        else:
            dims = [d for d in range(weight.dim()) if d != dim]
            norms = torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
        weight.mul_(torch.clamp(norms, max=max_value) / (1e-7 + norms))
