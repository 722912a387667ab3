"""Simulate a small visual cortex, write it as NSD, read it back, and fit an encoding model.

Runs as is in well under a minute on a laptop CPU:

    python examples/simulate_visual_cortex.py

Steps: (1) render the stimulus world and simulate two subjects watching it; (2) write the
simulation in the real NSD folder layout and read it back with ``load_nsd`` (the same call
reads a real NSD copy); (3) fit a voxelwise ridge on the true early-visual features and
compare its test R2 with the noise ceiling that the simulation exports.
"""

import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import RidgeCV

from data_loaders.nsd import load_nsd, write_nsd_layout
from data_loaders.simulate import SHAPE_CLASSES, gabor_energy_features, simulate_nsd

# 1. two subjects, one session of 600 trials each; 60 shared images shown 3 times
sim = simulate_nsd(
    n_subjects=2, n_sessions=1, trials_per_session=600, n_shared=60, n_subject_images=440,
    voxels=(800, 1200), random_state=0,
)
shape = sim.stimuli.attributes["shape"][0]
print(sim.stimuli, "- the first image shows a", SHAPE_CLASSES[shape])

# 2. the real NSD layout on disk, read back by the NSD reader
root = write_nsd_layout(tempfile.mkdtemp(), sim)
ds = load_nsd(root, subjects=(1, 2))
sub = ds.subjects["subj01"]
print(sub)
assert np.array_equal(sub.betas, sim.subjects[1].betas)  # exact round trip

# 3. ridge on the true features of the early ROIs vs the known noise ceiling
train, test = ds.split("shared")  # NSD's protocol: test on the images all subjects saw
test = test.average_repeats()  # 3-trial averages: one session holds all 3 repeats
tr, te = train.subjects["subj01"], test.subjects["subj01"]
early = np.isin(tr.roi, ["V1", "V2", "V3", "hV4"])
X_tr = gabor_energy_features(ds.stimuli.images[ds.stimuli.index_of(tr.stim_ids)])
X_te = gabor_energy_features(ds.stimuli.images[ds.stimuli.index_of(te.stim_ids)])
mu, sd = X_tr.mean(0), X_tr.std(0) + 1e-6
model = RidgeCV(alphas=np.logspace(0, 4, 9), alpha_per_target=True)
model.fit((X_tr - mu) / sd, tr.betas[:, early])
pred = model.predict((X_te - mu) / sd)
y = te.betas[:, early]
r2 = 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
nc = test.noise_ceiling("subj01", n_avg=3)[early] / 100
print(f"early visual: mean ridge R2 {r2.mean():.3f}, mean noise ceiling {nc.mean():.3f}")

fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(nc, r2, s=4, alpha=0.5)
ax.plot([0, 1], [0, 1], "k--", lw=0.8)
ax.set_xlabel("noise ceiling (3-trial average)")
ax.set_ylabel("ridge R2 on shared test images")
fig.savefig("simulated_ridge_vs_noise_ceiling.png", dpi=100, bbox_inches="tight")
print("saved simulated_ridge_vs_noise_ceiling.png")
