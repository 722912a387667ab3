"""HiSTN on the simulated DREAMER: load, train on 15 clips of one subject, test on 3 others.

Runs as is in about half a minute on a laptop CPU (the demo's budget: 150 steps of 256
random 1-s crops; the authors train ~10,000 steps, ``HiSTN()`` with its defaults). For the
real data, replace the path with your DREAMER.mat (Zenodo 546113) and use ``last_s=60``.
"""

import tempfile

import numpy as np

from data_loaders.dreamer import load_dreamer
from data_loaders.simulate.eeg import default_dreamer
from decoding.decoders.de_svm import DESVM
from decoding.decoders.histn import HiSTN
from decoding.evaluation import seq2hr, weighted_f1
from decoding.evaluation.protocols import contiguous_segments, window_position

# 2 simulated subjects x 18 clips, 1-s windows z-scored on the baseline (HiSTN's recipe)
path = default_dreamer(n_subjects=2, stim_seconds=30, baseline_seconds=12)
ds = load_dreamer(path, window_s=1.0, baseline="zscore_mid10s", last_s=30)
subject = ds.select(subject=0)
test_clips = [2, 7, 12]                   # whole clips held out: no within-trial leak
test = np.isin(subject.trial, test_clips)
train_ds, test_ds = subject.select(mask=~test), subject.select(mask=test)
# which windows run on in time: random crops may straddle them
segments = contiguous_segments(train_ds.subject, train_ds.trial, window_position(train_ds))

# the demo's budget; at this budget torch's BatchNorm momentum and a higher rate learn
# (the authors' Keras momentum 0.99 needs their ~10,000 steps)
histn = HiSTN(n_epochs=15, steps_per_epoch=10, lr=3e-2, batchnorm="torch",
              smoothing_sigma=0.5, target="valence", verbose=True)
histn.fit(train_ds, segments=segments)    # labels from train_ds.labels["valence"] (score - 1)
for model in (histn, DESVM(target="valence").fit(train_ds)):
    y = test_ds.labels["valence"]
    proba = model.predict_proba(test_ds)
    print(f"{type(model).__name__:6s} weighted F1 {weighted_f1(y, model.predict(test_ds)):.3f}"
          f"  Seq2HR {seq2hr(y, proba):.3f}")
print("best epoch", histn.best_epoch_, "of", len(histn.history_["val_loss"]),
      "(lowest validation loss)")

out = histn.save_pretrained(tempfile.mkdtemp())   # config.json + model.safetensors
print("saved to", out, "- reload with HiSTN.from_pretrained(out)")
print("attention per region:", histn.attention(test_ds)["region"].round(2))
