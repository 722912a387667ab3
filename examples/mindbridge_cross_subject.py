"""One fMRI decoder for several brains, then a new subject from 200 images: MindBridge.

MindBridge (Wang et al., CVPR 2024) pools each subject's voxels to one size (adaptive
max-pooling), embeds them with a small per-subject network, and decodes image and caption
embeddings with one shared translator; per-subject builders map back to fMRI for a
reconstruction and a cycle loss. A new subject gets a fresh embedder and builder, the
translator stays frozen ("reset-tuning"). Here: a small simulated NSD (4 subjects; subject 4
is the new one). About a minute on a laptop CPU (the shipped stimnet / stimtext encoders
give the targets); then reconstructions through the path to pixels.
"""

import tempfile

import numpy as np

from data_loaders.schema import FMRIDataset, FMRISubject, Stimuli
from data_loaders.simulate.fmri import simulate_nsd
from decoding.decoders.mindbridge import EmbeddingTargets, MindBridge
from decoding.evaluation import retrieval_top1, two_way_identification

# 1. data: 4 simulated subjects with different voxel counts; shared images = the test set
sim = simulate_nsd(n_subjects=4, n_sessions=1, trials_per_session=700, n_shared=100,
                   n_subject_images=500, voxels=(600, 900), random_state=0, verbose=False)
raw = sim.to_dataset()
attrs = {k: v[raw.stimuli.ids] for k, v in sim.stimuli.attributes.items()}  # for captions
stim = Stimuli(raw.stimuli.images, raw.stimuli.ids, attrs)
raw = FMRIDataset(stim, raw.subjects)
train, test = raw.split("shared")
test = test.average_repeats()

# 2. targets from the registries: stimnet image embedding, stimtext caption embedding
targets = EmbeddingTargets.from_registries(raw.stimuli, "stimnet", text="stimtext")

# 3. one model for subjects 1-3 (an equal batch of each per step; cycles a -> b != a)
old = ["subj01", "subj02", "subj03"]
model = MindBridge(pool_size=512, hidden_dim=128, n_epochs=25, verbose=False)
model.fit(train.select(old), targets)


def scores(m, s):
    pred = m.predict_embeddings(s, test.subjects[s].betas)
    rows = targets.rows(test.subjects[s].stim_ids)
    return (two_way_identification(pred["image"], targets.image[rows]),
            retrieval_top1(pred["image"], targets.image[rows], n_candidates=100, n_draws=1))


for s in old:
    two_way, top1 = scores(model, s)
    print(f"{s}: image 2-way {two_way:.3f}, top-1 retrieval among 100: {top1:.3f}")

# 4. a new subject from 200 images: reset-tuning (translator frozen) vs training from scratch
new = train.select("subj04")
tuned = model.copy().reset_tune(new, targets, n_samples=200, source=train.select(old))
ids = np.unique(new.subjects["subj04"].stim_ids)
scratch = MindBridge(pool_size=512, hidden_dim=128, n_epochs=60, verbose=False)
rng = np.random.default_rng(1)  # reset_tune drew its own 200; scratch gets 200 as well
keep = np.isin(new.subjects["subj04"].stim_ids, rng.choice(ids, 200, replace=False))
sub = new.subjects["subj04"]
few = FMRISubject(betas=sub.betas[keep], stim_ids=sub.stim_ids[keep], roi=sub.roi,
                  subject="subj04")
scratch.fit(FMRIDataset(raw.stimuli, {"subj04": few}), targets)
for name, m in (("reset-tuned", tuned), ("from scratch", scratch)):
    two_way, top1 = scores(m, "subj04")
    print(f"new subject, {name}: image 2-way {two_way:.3f}, retrieval {top1:.3f}")

# 5. fMRI synthesis: subject 1's test betas in subject 2's (aggregated) space
syn = model.synthesize("subj01", test.subjects["subj01"].betas, "subj02")
real = model.aggregated("subj02", test.subjects["subj02"].betas)
r = np.mean([np.corrcoef(syn[:, j], real[:, j])[0, 1] for j in range(syn.shape[1])])
print(f"synthesized vs real, mean correlation per bin: {r:.3f}")

# 6. the path to pixels (MindEye2's pieces): a prior that carries decoded embeddings back to
#    true ones, a read-out of the colour the embeddings lose, and a low-level image from
#    early visual cortex that seeds the shipped generator; read by the referee
from decoding.evaluation.image_eval import reconstruction_metrics  # noqa: E402

model.fit_prior(train.select(old), targets, labels="colour")   # k-NN over training images
model.fit_label_readout(train.select(old), "colour")           # per subject, from the betas
model.fit_low_level(train.select(old))                          # ridge: V1-hV4 -> latents
s, n = "subj01", 60
pos = raw.stimuli.index_of(test.subjects[s].stim_ids[:n])
truth = {k: raw.stimuli.attributes[k][pos] for k in ("shape", "colour")}
for name, kw in (("decoded embeddings as they are", dict(prior=False, low_level=False)),
                 ("prior + read-out + low-level", {})):
    images = model.reconstruct(s, test.subjects[s].betas[:n], num_inference_steps=10, **kw)
    m = reconstruction_metrics(images, raw.stimuli.images[pos], truth)
    print(f"{s}, {name}: shape {m['shape_accuracy']:.2f}, colour {m['colour_accuracy']:.2f}, "
          f"with an object {m['object_rate']:.2f} (chance 1/8)")

# 7. a trained model is a folder that remembers its embeddings and refuses others
#    (its prior, read-outs and low-level ridges ride along)
with tempfile.TemporaryDirectory() as tmp:
    tuned.save_pretrained(tmp)
    again = MindBridge.from_pretrained(tmp, image_embedding=targets.image_id)
    x = test.subjects["subj04"].betas
    assert np.array_equal(again.predict_embeddings("subj04", x)["image"],
                          tuned.predict_embeddings("subj04", x)["image"])
