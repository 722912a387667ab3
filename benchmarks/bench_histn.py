"""Training time of one subject-dependent fold for every EEG model (HiSTN target: < 2 min).

One trial-grouped fold of subject 0 of the simulated DREAMER (15 clips x 30 one-second
windows = 450 training windows, 3 clips tested). HiSTN and EEGNet train as their authors
do (random 1-s crops of the clips, class-balanced batches of 256, best-validation
checkpoint) for ``--epochs`` x ``--steps`` steps (default the demo's 15 x 10; ``--steps 0``
takes the authors' count, (span - 1 s) * clips // 256 per epoch); DE + SVM is one fit.
Prints seconds, milliseconds per step, parameters, and the ratio to EEGNet (the usual
compact-CNN peer) measured in the same run.

    .venv/bin/python benchmarks/bench_histn.py [--epochs 15] [--steps 10] [--real-length]

``--real-length`` uses 60-s clips (the HiSTN protocol's last 60 s: 900 training windows).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from data_loaders.dreamer import load_dreamer
from data_loaders.simulate.eeg import write_dreamer_mat
from decoding.decoders.de_svm import DESVM
from decoding.decoders.eegnet import EEGNet
from decoding.decoders.histn import HiSTN
from decoding.evaluation.protocols import (
    classification_metrics,
    contiguous_segments,
    sd_trial_folds,
    window_position,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10, help="steps per epoch; 0 = the authors'")
    ap.add_argument("--real-length", action="store_true")
    args = ap.parse_args()
    seconds = 60 if args.real_length else 30
    path = write_dreamer_mat(tempfile.mkdtemp() + "/DREAMER.mat", n_subjects=1,
                             stim_seconds=seconds, baseline_seconds=12)
    ds = load_dreamer(path, last_s=seconds)
    fold = next(sd_trial_folds(ds, n_folds=6, subjects=[0]))
    seg = contiguous_segments(ds.subject[fold.train], ds.trial[fold.train],
                              window_position(ds)[fold.train])
    y = ds.labels["valence"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{fold.train.size} train / {fold.test.size} test windows")
    budget = dict(n_epochs=args.epochs, steps_per_epoch=args.steps or None, device="cpu")
    models = {"HiSTN": HiSTN(**budget),
              "HiSTN one-hot": HiSTN(smoothing_sigma=None, **budget),
              "EEGNet": EEGNet(**budget),
              "DE + SVM": DESVM()}
    times = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        kw = {} if isinstance(model, DESVM) else {"segments": seg}
        model.fit(ds.X[fold.train], y[fold.train], **kw)
        times[name] = time.perf_counter() - t0
        m = classification_metrics(y[fold.test], model.predict_proba(ds.X[fold.test]),
                                   model.predict(ds.X[fold.test]))
        steps = ""
        if hasattr(model, "history_"):
            n = model.history_["steps_per_epoch"] * args.epochs
            steps = f"  {n} steps, {1000 * times[name] / n:5.1f} ms/step"
        print(f"{name:14s} {times[name]:7.1f} s  params {getattr(model, 'n_parameters_', '-'):>6}"
              f"  F1 {m['weighted_f1']:.3f}  Seq2HR {m['seq2hr']:.3f}{steps}")
    print(f"HiSTN / EEGNet training time: {times['HiSTN'] / times['EEGNet']:.2f}x; "
          f"HiSTN under 2 min: {times['HiSTN'] < 120}")
    assert np.isfinite(list(times.values())).all()


if __name__ == "__main__":
    main()
