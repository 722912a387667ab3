"""The shared containers and metrics on a small synthetic NSD-like experiment.

Two subjects see 3 repeats of each image; 60 images are shared by both (NSD's "shared1000"
design). We fit a ridge encoding model on the unique images, test it on the shared ones
(3-repeat averages), and compare its accuracy with the noise ceiling. Then the same for a
tiny EEG set. Runs in a few seconds on a laptop; nothing is downloaded.
"""

import nibabel as nib
import numpy as np
from sklearn.linear_model import RidgeCV

from data_loaders.schema import EEGDataset, FMRIDataset, FMRISubject, Stimuli
from decoding.evaluation import (
    noise_ceiling,
    normalize_by_noise_ceiling,
    pearson_r,
    r2,
    seq2hr,
    top2_accuracy,
    two_way_identification,
    weighted_f1,
)

rng = np.random.default_rng(0)

# ---- stimuli: 260 random 16x16 images with NSD-like (non-contiguous) ids -----------------
n_img = 260
images = rng.integers(0, 256, (n_img, 16, 16, 3), dtype=np.uint8)
stim = Stimuli(images=images, ids=np.arange(n_img) * 7 + 3)


def features(s: Stimuli) -> np.ndarray:
    """4x4 average-pooled colour: 48 features per image."""
    x = s.images.reshape(len(s), 4, 4, 4, 4, 3).mean(axis=(2, 4)) / 255.0
    return x.reshape(len(s), -1)


# ---- two subjects on a 10x12x10 grid, 300 voxels each, 3 ROIs ----------------------------
def simulate_subject(name: str, own_ids: np.ndarray, seed: int) -> FMRISubject:
    r = np.random.default_rng(seed)
    mask = np.zeros((10, 12, 10), np.uint8)
    mask.flat[r.choice(mask.size, 300, replace=False)] = 1
    weights = r.standard_normal((48, 300))
    signal = (features(stim.subset(own_ids)) - 0.5) @ weights
    signal /= signal.std(axis=0)  # unit signal s.d. per voxel
    noise_sd = r.uniform(0.5, 3.0, 300)  # true ncsnr = 1 / noise_sd
    trials = np.tile(np.arange(len(own_ids)), 3)  # 3 repeats of each image
    betas = signal[trials] + noise_sd * r.standard_normal((trials.size, 300))
    roi = np.array(["V1", "V4", "LO"])[r.integers(0, 3, 300)]
    return FMRISubject(
        betas=betas.astype(np.float32),
        stim_ids=own_ids[trials],
        roi=roi,
        mask_img=nib.Nifti1Image(mask, np.diag([1.8, 1.8, 1.8, 1.0])),
        ncsnr=1.0 / noise_sd,
        subject=name,
    )


shared, rest = stim.ids[:60], stim.ids[60:]
ds = FMRIDataset(
    stim,
    {
        "subj01": simulate_subject("subj01", np.concatenate([shared, rest[:100]]), 1),
        "subj02": simulate_subject("subj02", np.concatenate([shared, rest[100:]]), 2),
    },
)
train, test = ds.split("shared")  # test = images every subject saw
train, test = train.average_repeats(), test.average_repeats()
print(ds, "\n train:", train, "\n test: ", test)

for name in ds.subject_names:
    tr, te = train.subjects[name], test.subjects[name]
    model = RidgeCV(alphas=np.logspace(-2, 4, 13))
    model.fit(features(train.stimuli.subset(tr.stim_ids)), tr.betas)
    pred = model.predict(features(test.stimuli.subset(te.stim_ids)))
    r = pearson_r(te.betas, pred)
    nc = test.noise_ceiling(name, n_avg=3)  # percent of variance, 3-trial averages
    keep = nc > 10
    frac = normalize_by_noise_ceiling(r2(te.betas, pred)[keep], nc[keep])
    print(
        f"{name}: median r = {np.median(r):.3f}, median R2 = {np.median(r2(te.betas, pred)):.3f},"
        f" median NC = {np.median(nc):.1f}%, median R2/NC = {np.median(frac):.2f},"
        f" 2-way identification of test images from voxels = "
        f"{two_way_identification(pred, te.betas):.3f} (chance 0.5)"
    )
    v1 = te.select_roi("V1")
    print(f"   V1: {v1.n_voxels} voxels; first voxel at {v1.voxel_coords_mni()[0]} mm")
    r_img = test.mni_img(name, r)  # 3D NIfTI for nilearn.plotting.plot_stat_map
    print(f"   r map: {r_img.shape}, max {r_img.get_fdata().max():.3f}")

# ---- EEG: 40 epochs of 4 channels, 5-point ratings, a chance-level 'classifier' -----------
eeg = EEGDataset(
    X=(rng.standard_normal((40, 4, 128)) * 10e-6).astype(np.float32),  # volts
    sfreq=128.0,
    ch_names=["AF3", "F7", "O1", "O2"],
    labels={"valence": rng.integers(0, 5, 40)},
    subject=np.repeat(np.arange(4), 10),
    trial=np.tile(np.arange(10), 4),
)
epochs = eeg.to_epochs(verbose=False)  # mne.EpochsArray with 10-20 positions
print(eeg, "->", epochs)
y = eeg.labels["valence"]
scores = rng.random((40, 5))
print(
    f"chance-level classifier: F1 {weighted_f1(y, scores.argmax(1)):.2f}, top-2 "
    f"{top2_accuracy(y, scores):.2f}, Seq2HR {seq2hr(y, scores):.2f}; "
    f"NC of ncsnr=1 single trials: {noise_ceiling(1.0):.0f}%"
)
