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

``--protocol sd_time`` instead takes the first ``sd_time`` fold (5 blocks of 6 s) of subject
0 of the demo's data (3 simulated subjects, 30-s clips, seed 0), the fold of the demo's
report; with ``--lr``, ``--batchnorm``, ``--fixed-windows``, ``--scaling``,
``--bn-recalibrate`` and ``--trial-scaling max_abs`` it reproduces the README's budget and
scaling experiments, e.g.::

    .venv/bin/python benchmarks/bench_histn.py --protocol sd_time --lr 1e-2 \
        --batchnorm torch --models HiSTN
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


def _data(args):
    """(dataset, train indices, test indices) of the chosen fold."""
    from data_loaders.simulate.eeg import default_dreamer
    from decoding.evaluation.protocols import sd_time_folds
    from decoding.jobs.histn import scale_trials_max_abs

    if args.protocol == "sd_time":
        path = default_dreamer(n_subjects=3, stim_seconds=30, baseline_seconds=12,
                               random_state=0)
        ds = load_dreamer(path, last_s=30, targets=("valence",))
    else:
        seconds = 60 if args.real_length else 30
        path = write_dreamer_mat(tempfile.mkdtemp() + "/DREAMER.mat", n_subjects=1,
                                 stim_seconds=seconds, baseline_seconds=12)
        ds = load_dreamer(path, last_s=seconds)
    if args.trial_scaling == "max_abs":
        ds = scale_trials_max_abs(ds)
    fold = next(sd_time_folds(ds, n_folds=5, subjects=[0]) if args.protocol == "sd_time"
                else sd_trial_folds(ds, n_folds=6, subjects=[0]))
    return ds, fold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10, help="steps per epoch; 0 = the authors'")
    ap.add_argument("--real-length", action="store_true")
    ap.add_argument("--protocol", choices=["sd_trial", "sd_time"], default="sd_trial")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batchnorm", choices=["keras", "torch"], default="keras")
    ap.add_argument("--bn-recalibrate", action="store_true")
    ap.add_argument("--fixed-windows", action="store_true")
    ap.add_argument("--scaling", choices=["channel", "window", "none"], default="channel")
    ap.add_argument("--trial-scaling", choices=["none", "max_abs"], default="none")
    ap.add_argument("--models", nargs="+", default=["HiSTN", "HiSTN one-hot", "EEGNet",
                                                    "DE + SVM"])
    args = ap.parse_args()
    ds, fold = _data(args)
    seg = contiguous_segments(ds.subject[fold.train], ds.trial[fold.train],
                              window_position(ds)[fold.train])
    y = ds.labels["valence"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{fold.train.size} train / {fold.test.size} test windows ({args.protocol})")
    budget = dict(n_epochs=args.epochs, steps_per_epoch=args.steps or None, lr=args.lr,
                  batch_size=args.batch_size, batchnorm=args.batchnorm,
                  bn_recalibrate=args.bn_recalibrate, random_crops=not args.fixed_windows,
                  scaling=args.scaling, device="cpu")
    makers = {"HiSTN": lambda: HiSTN(**budget),
              "HiSTN one-hot": lambda: HiSTN(smoothing_sigma=None, **budget),
              "EEGNet": lambda: EEGNet(**budget),
              "DE + SVM": lambda: DESVM()}
    times = {}
    for name in args.models:
        model = makers[name]()
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
    if "HiSTN" in times and "EEGNet" in times:
        print(f"HiSTN / EEGNet training time: {times['HiSTN'] / times['EEGNet']:.2f}x; "
              f"HiSTN under 2 min: {times['HiSTN'] < 120}")
    assert np.isfinite(list(times.values())).all()


if __name__ == "__main__":
    main()
