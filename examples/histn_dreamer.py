"""HiSTN on the simulated DREAMER: load, train on 15 clips of one subject, test on 3 others.

Runs as is in about a minute on a laptop CPU. For the real data, replace the path with
your DREAMER.mat (Zenodo 546113) and use ``last_s=60``.
"""

import tempfile

import numpy as np

from data_loaders.dreamer import load_dreamer
from data_loaders.simulate.eeg import default_dreamer
from decoding.decoders.de_svm import DESVM
from decoding.decoders.histn import HiSTN
from decoding.evaluation import seq2hr, weighted_f1

# 2 simulated subjects x 18 clips, 1-s windows z-scored on the baseline (HiSTN's recipe)
path = default_dreamer(n_subjects=2, stim_seconds=30, baseline_seconds=12)
ds = load_dreamer(path, window_s=1.0, baseline="zscore_mid10s", last_s=30)
subject = ds.select(subject=0)
test_clips = [2, 7, 12]                   # whole clips held out: no within-trial leak
test = np.isin(subject.trial, test_clips)
train_ds, test_ds = subject.select(mask=~test), subject.select(mask=test)

histn = HiSTN(n_epochs=30, smoothing_sigma=0.5, target="valence", verbose=True)
for model in (histn, DESVM(target="valence")):
    model.fit(train_ds)                   # labels from train_ds.labels["valence"] (score - 1)
    y = test_ds.labels["valence"]
    proba = model.predict_proba(test_ds)
    print(f"{type(model).__name__:6s} weighted F1 {weighted_f1(y, model.predict(test_ds)):.3f}"
          f"  Seq2HR {seq2hr(y, proba):.3f}")

out = histn.save_pretrained(tempfile.mkdtemp())   # config.json + model.safetensors
print("saved to", out, "- reload with HiSTN.from_pretrained(out)")
print("attention per region:", histn.attention(test_ds)["region"].round(2))
