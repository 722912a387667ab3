"""Load NSD single-trial betas, trial ids, ROIs and images with one call.

Point it at your copy of the Natural Scenes Dataset (the ``natural-scenes-dataset`` bucket,
laid out as published), or run it with no argument to use the simulated default, written in
the same layout on first use and cached (``$NEUROSUITE_DATA``)::

    python examples/load_nsd.py                                # simulated visual cortex
    python examples/load_nsd.py /data/natural-scenes-dataset   # the real NSD
"""

import sys

import numpy as np

from data_loaders.nsd import load_nsd, read_expdesign

if len(sys.argv) > 1:
    root = sys.argv[1]
    sessions = [1, 2]  # 750 trials each; None reads every session file present (up to 40)
else:
    from data_loaders.simulate import default_nsd

    root = default_nsd()  # 4 subjects x 2 sessions, made once (about a minute), then reused
    sessions = None

# nsdgeneral voxels, betas in percent signal change, images resized from 425 px
ds = load_nsd(root, subjects=[1, 2], sessions=sessions, roi="nsdgeneral", image_size=64)
print(ds)
for name, sub in ds.subjects.items():
    nc = ds.noise_ceiling(name, n_avg=3)  # % variance explainable by a 3-trial average
    counts = ", ".join(
        f"{r} {np.sum(sub.roi == r)} vox (NC {nc[sub.roi == r].mean():.0f}%)" for r in sub.roi_names
    )
    print(f"{name}: {sub.n_trials} trials; {counts}")

# NSD's usual protocol: average the 3 repeats, test on the images every subject saw
train, test = ds.average_repeats().split(test="shared")
print(f"train {len(train.stimuli)} images, test (shared) {len(test.stimuli)} images")

# the design, 0-based: the 73k id of trial t is subjectim[s-1, masterordering[t]-1] - 1
design = read_expdesign(root)
print("subj01, first trials show 73k ids", design.stim_ids(1, np.arange(5)))

# early visual cortex only, one session, no images: the cheapest read
early = load_nsd(root, subjects=1, sessions=[1], roi="prf-visualrois", images=False)
print("prf-visualrois:", early.subjects["subj01"].betas.shape, early.subjects["subj01"].roi_names)
