"""The simulated visual cortex means what it says: NSD's estimators recover its ncsnr, a
ridge on its true features reaches its noise ceiling, and it round-trips through the NSD
layout."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from data_loaders.simulate import fmri
from data_loaders.simulate.stimuli import SHAPE_CLASSES

EARLY = ["V1", "V2", "V3", "hV4"]


@pytest.fixture(scope="module")
def sim() -> fmri.SimulatedNSD:
    # subject 1: 3 sessions (the full design), subject 2: 2 sessions (a prefix, as in NSD)
    return fmri.simulate_nsd(
        n_subjects=2, n_sessions=[3, 2], trials_per_session=750, n_shared=200,
        n_subject_images=1500, voxels=(500, 700), random_state=1, verbose=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny() -> fmri.SimulatedNSD:
    return fmri.simulate_nsd(
        n_subjects=2, n_sessions=1, trials_per_session=120, n_shared=10,
        n_subject_images=60, image_size=32, voxels=(200, 260), random_state=5, verbose=False,
    )  # fmt: skip


def _three_rep_images(ids: np.ndarray) -> np.ndarray:
    """(n_images, 3) trial rows of the images shown exactly 3 times."""
    uniq, counts = np.unique(ids, return_counts=True)
    order = np.argsort(ids, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.stack([order[s : s + 3] for s, c in zip(starts, counts) if c == 3])


def test_nsd_design(sim):
    n_sub, n_img = sim.subjectim.shape
    assert (n_sub, n_img) == (2, 1500)
    # the shared images are the first columns of every row, and sharedix
    np.testing.assert_array_equal(sim.subjectim[:, :200], np.tile(sim.sharedix, (2, 1)))
    assert np.all(np.diff(sim.sharedix) > 0)
    # each subject's own images are disjoint from the other's
    assert np.intersect1d(sim.subjectim[0, 200:], sim.subjectim[1, 200:]).size == 0
    # masterordering: every image 1 to 3 times, shared images 3 times, in 3 x 750 trials
    counts = np.bincount(sim.masterordering, minlength=n_img)
    assert sim.masterordering.size == 3 * 750
    assert counts.min() >= 1 and counts.max() <= 3 and (counts[:200] == 3).all()
    # the stimulus id of trial t: subjectim[s, masterordering[t]] (0-based NSD convention)
    ds = sim.to_dataset()
    t = np.arange(0, 1500, 97)
    np.testing.assert_array_equal(
        ds.subjects["subj02"].stim_ids[t], sim.subjectim[1, sim.masterordering[t]]
    )
    assert ds.subjects["subj01"].n_trials == 2250 and ds.subjects["subj02"].n_trials == 1500
    # the dataset's shared split is NSD's shared images
    _, test = ds.split("shared")
    assert set(test.stimuli.ids) <= set(sim.sharedix)


def test_betas_quantised_like_nsd(sim):
    b = sim.subjects[1].betas
    assert b.dtype == np.float32
    k = np.rint(b.astype(np.float64) * 300)
    np.testing.assert_array_equal((k / 300).astype(np.float32), b)
    assert np.abs(k).max() < np.iinfo(np.int16).max


def test_signal_and_noise_sd_define_ncsnr(sim):
    sub = sim.subjects[1]
    tr = sub.truth
    ids = sim.stim_ids(1)
    # signal sd over the distinct images seen is the amplitude, exactly
    np.testing.assert_allclose(tr["signal"].std(axis=0), tr["amplitude"], rtol=1e-5)
    np.testing.assert_array_equal(tr["signal_ids"], np.unique(ids))
    np.testing.assert_allclose(tr["amplitude"] / tr["noise_sd"], sub.ncsnr, rtol=1e-6)
    # residual sd around the true signal matches the noise sd (2250 trials per voxel)
    resid = sub.betas - tr["signal"][np.searchsorted(tr["signal_ids"], ids)]
    ratio = resid.std(axis=0) / tr["noise_sd"]
    assert abs(np.median(ratio) - 1) < 0.02 and ratio.min() > 0.85 and ratio.max() < 1.15


def test_nsd_ncsnr_estimator_recovers_truth(sim):
    """NSD's own estimator (z-score, noise sd from repeats; Allen et al. 2022) on the betas."""
    sub = sim.subjects[1]
    ids = sim.stim_ids(1)
    z = stats.zscore(sub.betas.astype(np.float64), axis=0)
    reps = _three_rep_images(ids)
    assert len(reps) >= 200
    noise_sd = np.sqrt(z[reps].var(axis=1, ddof=1).mean(axis=0))
    signal_sd = np.sqrt(np.clip(1 - noise_sd**2, 0, None))
    est = signal_sd / noise_sd
    for roi in fmri.ROI_NAMES:
        sel = sub.roi == roi
        ratio = np.median(est[sel] / sub.ncsnr[sel])
        tol = 0.3 if roi == "MTL" else 0.1  # MTL's ncsnr is small: a noisier estimate
        assert abs(ratio - 1) < tol, (roi, ratio)
    assert stats.pearsonr(est, sub.ncsnr)[0] > 0.8


def test_ridge_on_true_features_reaches_noise_ceiling(sim):
    """The issue's criterion: a voxelwise ridge on the TRUE features of the early ROIs,
    trained on single trials, explains the known NC of the 3-trial test averages."""
    from sklearn.linear_model import RidgeCV

    sub = sim.subjects[1]
    ids = sim.stim_ids(1)
    early = np.flatnonzero(np.isin(sub.roi, EARLY))
    feats = fmri.gabor_energy_features(sim.stimuli.images[np.unique(ids)])
    X = feats[np.searchsorted(np.unique(ids), ids)]
    test = np.isin(ids, sim.sharedix)
    reps = _three_rep_images(np.where(test, ids, -1 - np.arange(ids.size)))
    mu, sd = X[~test].mean(0), X[~test].std(0) + 1e-6
    model = RidgeCV(alphas=np.logspace(0, 4, 9), alpha_per_target=True)
    model.fit((X[~test] - mu) / sd, sub.betas[~test][:, early])
    y_test = sub.betas[reps][:, :, early].mean(axis=1)
    pred = model.predict((X[reps[:, 0]] - mu) / sd)
    r2 = 1 - ((y_test - pred) ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)
    nc = sub.noise_ceiling(n_avg=3)[early] / 100
    for roi in EARLY:
        sel = sub.roi[early] == roi
        ratio = r2[sel].mean() / nc[sel].mean()
        assert 0.8 < ratio < 1.05, (roi, ratio)
    # per voxel, R2 tracks the noise ceiling
    assert stats.pearsonr(r2, nc)[0] > 0.7


def test_higher_visual_is_shape_selective(sim):
    """Object-selective voxels carry shape-class information that early voxels lack, and the
    class preference measured from the betas matches the drawn tuning."""
    sub = sim.subjects[1]
    tr = sub.truth
    cls = sim.stimuli.attributes["shape"][tr["signal_ids"]]
    one = sim.stimuli.attributes["n_objects"][tr["signal_ids"]] == 1
    groups = [tr["signal"][one & (cls == k)] for k in range(len(SHAPE_CLASSES))]
    f_stat = stats.f_oneway(*groups, axis=0).statistic
    higher, early = sub.roi == "higher", np.isin(sub.roi, EARLY)
    assert np.median(f_stat[higher]) > 3 * np.median(f_stat[early])
    # measured class means (from noisy betas) correlate with the drawn class tuning
    ids = sim.stim_ids(1)
    tcls = sim.stimuli.attributes["shape"][ids]
    t_one = sim.stimuli.attributes["n_objects"][ids] == 1
    means = np.stack([sub.betas[t_one & (tcls == k)].mean(0) for k in range(8)], axis=1)
    r = [stats.pearsonr(means[v], tr["class_tuning"][v])[0] for v in np.flatnonzero(higher)]
    assert np.median(r) > 0.5


def test_voxels_in_mni_space(sim):
    for s, sub in sim.subjects.items():
        ds_sub = sim.to_dataset(s).subjects[sub.name]
        # the schema's own affine arithmetic puts the columns where the simulation did
        np.testing.assert_allclose(ds_sub.voxel_coords_mni(), sub.truth["coords_mni"])
        brain = np.asarray(sub.brain_mask_img.dataobj) > 0
        mask = np.asarray(sub.mask_img.dataobj) > 0
        assert not (mask & ~brain).any()
        assert 500 <= mask.sum() <= 700
        np.testing.assert_array_equal(sub.brain_mask_img.affine, sub.mask_img.affine)
        xyz = sub.truth["coords_mni"]
        mean = {r: xyz[sub.roi == r].mean(0) for r in fmri.ROI_NAMES}
        assert mean["V1"][1] < -80 and np.abs(xyz[sub.roi == "V1", 0]).mean() < 20
        assert mean["MTL"][1] > -45 and mean["MTL"][2] < 0  # medial temporal
        assert np.abs(xyz[sub.roi == "higher", 0]).mean() > 30  # lateral / ventral
    # subjects differ in voxel count and layout
    a, b = (np.asarray(sim.subjects[s].mask_img.dataobj) for s in (1, 2))
    assert a.sum() != b.sum()


def test_retinotopy_and_prf_sizes(sim):
    sub = sim.subjects[1]
    tr = sub.truth
    x = tr["coords_mni"][:, 0]
    early = np.isin(sub.roi, EARLY)
    # contralateral: the left hemisphere sees the right visual field
    assert (tr["prf_x"][early & (x < 0)] > 0.5).all()
    assert (tr["prf_x"][early & (x > 0)] < 0.5).all()
    size = [np.median(tr["prf_size"][sub.roi == r]) for r in EARLY]
    assert np.all(np.diff(size) > 0), size  # V1 < V2 < V3 < hV4


def test_deterministic_from_seed(tiny):
    again = fmri.simulate_nsd(
        n_subjects=2, n_sessions=1, trials_per_session=120, n_shared=10,
        n_subject_images=60, image_size=32, voxels=(200, 260), random_state=5, verbose=False,
    )  # fmt: skip
    other = fmri.simulate_nsd(
        n_subjects=2, n_sessions=1, trials_per_session=120, n_shared=10,
        n_subject_images=60, image_size=32, voxels=(200, 260), random_state=6, verbose=False,
    )  # fmt: skip
    for s in (1, 2):
        np.testing.assert_array_equal(again.subjects[s].betas, tiny.subjects[s].betas)
        np.testing.assert_array_equal(again.subjects[s].ncsnr, tiny.subjects[s].ncsnr)
    np.testing.assert_array_equal(again.masterordering, tiny.masterordering)
    np.testing.assert_array_equal(again.stimuli.images, tiny.stimuli.images)
    assert not np.array_equal(other.masterordering, tiny.masterordering)


@pytest.mark.parametrize("betas_format", ["nii.gz", "hdf5"])
def test_round_trip_through_nsd_layout(tiny, tmp_path, betas_format):
    from data_loaders.nsd import load_nsd, write_nsd_layout

    root = write_nsd_layout(tmp_path, tiny, betas_format=betas_format, verbose=False)
    got = load_nsd(root, subjects=(1, 2), verbose=False)
    want = tiny.to_dataset()
    np.testing.assert_array_equal(got.stimuli.images[np.argsort(got.stimuli.ids)],
                                  want.stimuli.images[np.unique(got.stimuli.ids)])  # fmt: skip
    for name, w in want.subjects.items():
        g = got.subjects[name]
        np.testing.assert_array_equal(g.betas, w.betas)
        np.testing.assert_array_equal(g.stim_ids, w.stim_ids)
        np.testing.assert_array_equal(g.roi, w.roi)
        np.testing.assert_array_equal(g.ncsnr, w.ncsnr)
        np.testing.assert_array_equal(np.asarray(g.mask_img.dataobj) > 0,
                                      np.asarray(w.mask_img.dataobj) > 0)  # fmt: skip


def test_default_nsd_made_once_then_reused(tmp_path, monkeypatch):
    from data_loaders.nsd import load_nsd

    small = dict(
        n_subjects=2, n_sessions=1, trials_per_session=120, n_shared=10,
        n_subject_images=60, image_size=32, voxels=(200, 260), random_state=5,
    )  # fmt: skip
    monkeypatch.setattr(fmri, "DEFAULT_PARAMS", small)
    monkeypatch.setenv("NEUROSUITE_DATA", str(tmp_path))
    root = fmri.default_nsd(verbose=False)
    assert root == tmp_path / fmri.DEFAULT_NAME and (root / "SIMULATION.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    stamp = (root / "SIMULATION.json").stat().st_mtime_ns
    assert fmri.default_nsd(verbose=False) == root
    assert (root / "SIMULATION.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    ds = load_nsd(root, subjects=(2,), verbose=False)
    np.testing.assert_array_equal(
        ds.subjects["subj02"].betas, fmri.simulate_nsd(**small, verbose=False).subjects[2].betas
    )
    truth = fmri.load_truth(root)
    np.testing.assert_array_equal(truth["attributes"]["shape"].shape, (2 * 50 + 10,))
    t2 = truth["subj02"]
    np.testing.assert_allclose(t2["amplitude"] / t2["noise_sd"], ds.subjects["subj02"].ncsnr,
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(t2["roi"], ds.subjects["subj02"].roi)


@pytest.mark.slow
def test_default_nsd_full_size(tmp_path):
    """The real embedded default: 4 subjects x 2 sessions, written fast and small."""
    import time

    from data_loaders.nsd import load_nsd

    t0 = time.perf_counter()
    root = fmri.default_nsd(data_home=tmp_path, verbose=False)
    elapsed = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 200, size_mb
    ds = load_nsd(root, subjects=(1, 2, 3, 4), verbose=False)
    counts = [s.n_voxels for s in ds.subjects.values()]
    assert all(1500 <= c <= 4000 for c in counts) and len(set(counts)) == 4
    assert elapsed < 180  # well under a minute on an idle 2-core machine


def test_bad_input():
    kw = dict(n_subjects=1, n_sessions=1, trials_per_session=120, n_shared=10,
              n_subject_images=60, image_size=32, voxels=(200, 260), verbose=False)  # fmt: skip
    with pytest.raises(ValueError, match="n_sessions: expected one value per subject"):
        fmri.simulate_nsd(**{**kw, "n_sessions": [1, 2]})
    with pytest.raises(ValueError, match="n_sessions \\* trials_per_session"):
        fmri.simulate_nsd(**{**kw, "trials_per_session": 30})
    with pytest.raises(ValueError, match="voxels: 90000 voxels requested"):
        fmri.simulate_nsd(**{**kw, "voxels": (90000, 90000)})
    with pytest.raises(ValueError, match="snr: unknown ROI"):
        fmri.simulate_nsd(**{**kw, "snr": {"V7": 1.0}})
    with pytest.raises(ValueError, match="image_size: expected a multiple of 8"):
        fmri.simulate_nsd(**{**kw, "image_size": 36})
    with pytest.raises(ValueError, match="noise_correlation"):
        fmri.simulate_nsd(**{**kw, "noise_correlation": 1.0})
    with pytest.raises(ValueError, match="images: expected uint8"):
        fmri.gabor_energy_features(np.zeros((2, 16, 16, 3)))
    with pytest.raises(ValueError, match="subjects: unknown subject 3"):
        fmri.simulate_nsd(**kw).to_dataset(subjects=[3])


def test_job_writes_then_reuses_the_cache(tmp_path):
    """The ``simulate_nsd`` job: a fresh write round-trips exactly, a second run reuses it."""
    from data_loaders.jobs.simulate_nsd import SimulateNSDParams
    from data_loaders.jobs.simulate_nsd import simulate_nsd as job
    from neurosuite.runs import Run

    params = SimulateNSDParams(
        n_subjects=2, n_sessions=1, trials_per_session=120, n_shared=10,
        n_subject_images=60, image_size=32, voxels=(200, 260), output="cache",
        ridge_check=False,
    )  # fmt: skip
    first = job(params, Run(tmp_path / "a", seed=5, verbose=False, data_dir=tmp_path / "d"))
    second = job(params, Run(tmp_path / "b", seed=5, verbose=False, data_dir=tmp_path / "d"))
    assert first["round_trip_exact"] and not first["reused_cache"]
    assert second["reused_cache"] and second["dataset_path"] == first["dataset_path"]
    assert second["voxel_counts"] == first["voxel_counts"]
    assert first["voxel_counts"]["subj01"]["total"] == sum(
        v for k, v in first["voxel_counts"]["subj01"].items() if k != "total"
    )
    figures = {p.stem for p in (tmp_path / "a" / "figures").glob("*.png")}
    assert {"stimuli", "roi_map", "noise_ceiling_map", "prf_tuning"} <= figures
    # a folder made with other parameters is not silently reused
    other = params.model_copy(update={"output": first["dataset_path"]})
    with pytest.raises(ValueError, match="output: .* holds a simulation made with other"):
        job(other, Run(tmp_path / "c", seed=6, verbose=False, data_dir=tmp_path / "d"))
