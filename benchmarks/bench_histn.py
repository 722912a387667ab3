"""Training time of one subject-dependent fold for every EEG model (HiSTN target: < 2 min).

One trial-grouped fold of subject 0 of the simulated DREAMER (15 clips x 30 one-second
windows = 450 training windows, 3 clips tested), each model with its default budget:
HiSTN and EEGNet 40 epochs of 64-window class-balanced batches (8 steps per epoch, 320
Adam steps), DE + SVM one fit. Prints seconds, parameters, and the ratio to EEGNet (the
usual compact-CNN peer) measured in the same run.

    .venv/bin/python benchmarks/bench_histn.py [--epochs 40] [--real-length]

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
from decoding.evaluation.protocols import classification_metrics, sd_trial_folds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--real-length", action="store_true")
    args = ap.parse_args()
    seconds = 60 if args.real_length else 30
    path = write_dreamer_mat(tempfile.mkdtemp() + "/DREAMER.mat", n_subjects=1,
                             stim_seconds=seconds, baseline_seconds=12)
    ds = load_dreamer(path, last_s=seconds)
    fold = next(sd_trial_folds(ds, n_folds=6, subjects=[0]))
    y = ds.labels["valence"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{fold.train.size} train / {fold.test.size} test windows")
    models = {"HiSTN": HiSTN(n_epochs=args.epochs, device="cpu"),
              "HiSTN one-hot": HiSTN(n_epochs=args.epochs, smoothing_sigma=None, device="cpu"),
              "EEGNet": EEGNet(n_epochs=args.epochs, device="cpu"),
              "DE + SVM": DESVM()}
    times = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(ds.X[fold.train], y[fold.train])
        times[name] = time.perf_counter() - t0
        m = classification_metrics(y[fold.test], model.predict_proba(ds.X[fold.test]),
                                   model.predict(ds.X[fold.test]))
        print(f"{name:14s} {times[name]:7.1f} s  params {getattr(model, 'n_parameters_', '-'):>6}"
              f"  F1 {m['weighted_f1']:.3f}  Seq2HR {m['seq2hr']:.3f}")
    print(f"HiSTN / EEGNet training time: {times['HiSTN'] / times['EEGNet']:.2f}x; "
          f"HiSTN under 2 min: {times['HiSTN'] < 120}")
    assert np.isfinite(list(times.values())).all()


if __name__ == "__main__":
    main()
