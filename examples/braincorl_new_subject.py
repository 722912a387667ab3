"""Encoding models for a new subject from 100 images, with no training: BraInCoRL vs ridge.

BraInCoRL (Yu et al. 2025, NeurIPS) is meta-trained once on other subjects; for a new
subject it reads (image, response) pairs and writes every voxel's linear encoding model in
one batched forward pass. Here: a small simulated NSD (3 subjects), subject 3 held out.
Runs in about a minute on a laptop CPU (the stimulus-world CNN is trained on first use
and cached).
"""

import tempfile

import numpy as np

from data_loaders.simulate.fmri import simulate_nsd
from decoding.encoders.braincorl import BraInCoRL, MetaTask
from decoding.encoders.ridge import RidgeEncoder
from decoding.evaluation import explained_variance
from decoding.features import get_extractor

# 1. data: 3 simulated subjects, repeats averaged; the shared images are the test set
sim = simulate_nsd(n_subjects=3, n_sessions=1, trials_per_session=600, n_shared=50,
                   n_subject_images=400, voxels=(300, 500), random_state=0, verbose=False)
ds = sim.to_dataset(average_repeats=True)
train, test = ds.split("shared")

# 2. image features: the suite's CNN trained on the stimulus world (unit-norm, 128-d)
fx = get_extractor("stimnet", n_train_images=1500, n_epochs=3, verbose=False)
F = fx.transform(ds.stimuli.images)


def features(d, subject):
    return F[ds.stimuli.index_of(d.subjects[subject].stim_ids)]


# 3. meta-train on subjects 1 and 2 (every voxel is a task)
tasks = [MetaTask(features(train, s), train.subjects[s].betas, s) for s in ("subj01", "subj02")]
model = BraInCoRL(n_steps=300, max_context=200, batch_size=16, lr=2e-3,
                  feature_extractor=fx.identifier, verbose=False).meta_fit(tasks)

# 4. the new subject: 100 context images, then score on the shared test images
rng = np.random.default_rng(0)
Xc, Yc = features(train, "subj03"), train.subjects["subj03"].betas
idx = rng.permutation(len(Xc))[:100]
Xq, Yq = features(test, "subj03"), test.subjects["subj03"].betas
ev_icl = explained_variance(Yq, model.fit(Xc[idx], Yc[idx]).predict(Xq))
ev_ridge = explained_variance(Yq, RidgeEncoder().fit(Xc[idx], Yc[idx]).predict(Xq))
print(f"mean EV on {len(Yq)} test images, 100 context images: "
      f"BraInCoRL {ev_icl.mean():.3f}, ridge {ev_ridge.mean():.3f}")
print("per-voxel weights:", model.coef_.shape)  # (n_features, n_voxels)

# 5. a trained model is a folder; it refuses features from another extractor
with tempfile.TemporaryDirectory() as tmp:
    model.save_pretrained(tmp)
    again = BraInCoRL.from_pretrained(tmp, feature_extractor=fx)
    assert np.array_equal(again.fit(Xc[idx], Yc[idx]).predict(Xq), model.predict(Xq))
