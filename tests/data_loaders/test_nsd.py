"""NSD layout: write a simulated dataset, read it back, and check it against the published
conventions with independent readers (scipy.io.loadmat, nibabel, h5py, skimage)."""

from __future__ import annotations

import shutil
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat, savemat

from data_loaders.nsd import load_nsd, nsd_paths, read_expdesign, write_nsd_layout
from data_loaders.schema import Stimuli

ROIS = np.array(["V1", "V2", "V3", "hV4", "higher", "MTL"])


@dataclass
class _Subject:  # the SimulatedSubject interface of data_loaders.simulate.fmri
    subject: int
    n_sessions: int
    betas: np.ndarray
    mask_img: nib.Nifti1Image
    roi: np.ndarray
    ncsnr: np.ndarray
    brain_mask_img: nib.Nifti1Image


@dataclass
class _Sim:  # the SimulatedNSD interface
    stimuli: Stimuli
    subjectim: np.ndarray
    masterordering: np.ndarray
    sharedix: np.ndarray
    trials_per_session: int
    subjects: dict


def make_sim(
    grid=(12, 14, 10),
    sessions=(3, 2, 2),
    tps=20,
    n_images=60,
    n_shared=10,
    n_subject_images=25,
    image_hw=16,
    voxel_frac=(0.25, 0.35, 0.3),
    seed=0,
) -> _Sim:
    """A tiny hand-made SimulatedNSD: random quantised betas on a small grid."""
    rng = np.random.default_rng(seed)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-20, -80, -10]
    ii, jj, kk = np.meshgrid(*[np.linspace(-1, 1, n) for n in grid], indexing="ij")
    brain = (ii**2 + jj**2 + kk**2) < 0.9
    # smooth images (gradients + noise) so resizing can be compared with block means
    yy, xx = np.mgrid[0:image_hw, 0:image_hw] / image_hw
    base = np.stack([xx, yy, 1 - xx], -1)
    images = (255 * (0.8 * base[None] + 0.2 * rng.random((n_images, 1, 1, 3)))).astype(np.uint8)
    shared = rng.choice(n_images, n_shared, replace=False)
    rest = np.setdiff1d(np.arange(n_images), shared)
    subjectim = np.stack(
        [
            np.concatenate([shared, rng.choice(rest, n_subject_images - n_shared, replace=False)])
            for _ in sessions
        ]
    )
    n_total = max(sessions) * tps
    # each subject image shown up to 3 times, in random order
    masterordering = rng.permutation(np.tile(np.arange(n_subject_images), 3))[:n_total]
    subjects = {}
    for i, (n_sess, frac) in enumerate(zip(sessions, voxel_frac)):
        inside = np.argwhere(brain)
        pick = inside[rng.random(len(inside)) < frac]
        mask = np.zeros(grid, np.uint8)
        mask[tuple(pick.T)] = 1
        n_vox = int(mask.sum())
        betas = (rng.integers(-900, 900, (n_sess * tps, n_vox)) / 300).astype(np.float32)
        subjects[i + 1] = _Subject(
            subject=i + 1,
            n_sessions=n_sess,
            betas=betas,
            mask_img=nib.Nifti1Image(mask, affine),
            roi=ROIS[rng.integers(0, len(ROIS), n_vox)],
            ncsnr=rng.random(n_vox).astype(np.float32),
            brain_mask_img=nib.Nifti1Image(brain.astype(np.uint8), affine),
        )
    return _Sim(
        stimuli=Stimuli(images=images, ids=np.arange(n_images)),
        subjectim=subjectim,
        masterordering=masterordering,
        sharedix=np.sort(shared),
        trials_per_session=tps,
        subjects=subjects,
    )


@pytest.fixture(scope="module")
def sim():
    return make_sim()


@pytest.fixture(scope="module")
def roots(sim, tmp_path_factory):
    base = tmp_path_factory.mktemp("nsd")
    return {
        fmt: write_nsd_layout(base / fmt.replace(".", "_"), sim, betas_format=fmt)
        for fmt in ("nii.gz", "hdf5")
    }


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


# --------------------------------------------------------------------------------------
# the files follow the published conventions (read with independent tools)
# --------------------------------------------------------------------------------------
def test_expdesign_is_one_based_and_shaped_like_nsd(sim, roots):
    mat = loadmat(nsd_paths(roots["nii.gz"])["expdesign"])
    assert mat["masterordering"].shape == (1, sim.masterordering.size)
    assert mat["subjectim"].shape == sim.subjectim.shape
    assert mat["sharedix"].shape == (1, sim.sharedix.size)
    np.testing.assert_array_equal(mat["masterordering"][0] - 1, sim.masterordering)
    np.testing.assert_array_equal(mat["subjectim"] - 1, sim.subjectim)
    np.testing.assert_array_equal(mat["sharedix"][0] - 1, sim.sharedix)
    # the manual's formula, applied to the raw 1-based fields
    s, t = 2, 7
    mo, si = mat["masterordering"][0], mat["subjectim"]
    assert si[s - 1, mo[t] - 1] - 1 == sim.subjectim[s - 1, sim.masterordering[t]]


def test_betas_files_are_int16_psc_times_300(sim, roots):
    sub = sim.subjects[1]
    tps = sim.trials_per_session
    mask = np.asarray(sub.mask_img.dataobj) != 0
    xyz = np.nonzero(mask)
    expected = np.rint(sub.betas[tps : 2 * tps] * 300).astype(np.int16)  # session 2

    nii = nib.load(nsd_paths(roots["nii.gz"], 1, 2)["betas_nii"])
    assert nii.get_data_dtype() == np.int16 and nii.shape == (*mask.shape, tps)
    vol = np.asanyarray(nii.dataobj)
    np.testing.assert_array_equal(vol[xyz].T, expected)
    assert not vol[~mask].any()  # zero outside the voxels

    with h5py.File(nsd_paths(roots["hdf5"], 1, 2)["betas_hdf5"], "r") as f:
        dset = f["betas"]
        x, y, z = mask.shape
        assert dset.dtype == np.int16 and dset.shape == (tps, z, y, x)
        assert dset.chunks == (tps, 1, 1, 1)  # NSD's [1 1 1 750] in MATLAB order
        np.testing.assert_array_equal(dset[()][:, xyz[2], xyz[1], xyz[0]], expected)


def test_roi_files_use_nsd_codes(sim, roots):
    sub = sim.subjects[2]
    p = nsd_paths(roots["nii.gz"], 2)
    brain = np.asarray(nib.load(p["brainmask"]).dataobj) != 0
    np.testing.assert_array_equal(brain, np.asarray(sub.brain_mask_img.dataobj) != 0)
    mask = np.asarray(sub.mask_img.dataobj) != 0
    gen = np.asarray(nib.load(p["roi_dir"] / "nsdgeneral.nii.gz").dataobj)
    assert set(np.unique(gen)) == {-1, 0, 1}
    np.testing.assert_array_equal(gen == -1, ~brain)
    np.testing.assert_array_equal(gen == 1, mask)
    prf = np.asarray(nib.load(p["roi_dir"] / "prf-visualrois.nii.gz").dataobj)[mask]
    streams = np.asarray(nib.load(p["roi_dir"] / "streams.nii.gz").dataobj)[mask]
    mtl = np.asarray(nib.load(p["roi_dir"] / "MTL.nii.gz").dataobj)[mask]
    # prf-visualrois.mgz.ctab: 1 V1v 2 V1d 3 V2v 4 V2d 5 V3v 6 V3d 7 hV4
    for lab, codes in {"V1": {1, 2}, "V2": {3, 4}, "V3": {5, 6}, "hV4": {7}}.items():
        assert set(np.unique(prf[sub.roi == lab])) == codes
    assert set(np.unique(streams[sub.roi == "higher"])) == {5, 6}  # ventral, lateral
    assert (mtl[sub.roi == "MTL"] > 0).all() and (mtl[sub.roi != "MTL"] == 0).all()
    nc = np.asarray(nib.load(p["ncsnr"]).dataobj)
    np.testing.assert_array_equal(nc[mask], sub.ncsnr)


# --------------------------------------------------------------------------------------
# round trip
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["nii.gz", "hdf5"])
def test_round_trip(sim, roots, fmt):
    ds = load_nsd(roots[fmt], subjects=[1, 2, 3])
    assert ds.subject_names == ["subj01", "subj02", "subj03"]
    for s, ref in sim.subjects.items():
        sub = ds.subjects[f"subj{s:02d}"]
        np.testing.assert_array_equal(sub.betas, ref.betas)
        n = ref.n_sessions * sim.trials_per_session
        np.testing.assert_array_equal(
            sub.stim_ids, sim.subjectim[s - 1, sim.masterordering[:n]]
        )
        np.testing.assert_array_equal(sub.roi, ref.roi)
        np.testing.assert_array_equal(sub.ncsnr, ref.ncsnr)
        np.testing.assert_array_equal(
            np.asarray(sub.mask_img.dataobj) != 0, np.asarray(ref.mask_img.dataobj) != 0
        )
        np.testing.assert_allclose(sub.mask_img.affine, ref.mask_img.affine)
    used = np.unique(np.concatenate([s.stim_ids for s in ds.subjects.values()]))
    np.testing.assert_array_equal(ds.stimuli.ids, used)
    np.testing.assert_array_equal(ds.stimuli.images, sim.stimuli.images[used])
    np.testing.assert_array_equal(ds.stimuli.attributes["shared"], np.isin(used, sim.sharedix))


def test_sessions_select_rows_of_masterordering(sim, roots):
    tps = sim.trials_per_session
    ref = sim.subjects[1]
    ds = load_nsd(roots["hdf5"], subjects=1, sessions=[3, 1], images=False)
    sub = ds.subjects["subj01"]
    rows = np.r_[2 * tps : 3 * tps, 0:tps]
    np.testing.assert_array_equal(sub.betas, ref.betas[rows])
    np.testing.assert_array_equal(sub.stim_ids, sim.subjectim[0, sim.masterordering[rows]])
    assert ds.stimuli.images.shape == (len(ds.stimuli), 0, 0, 3)
    # sessions=None: every session file present (3 for subject 1, 2 for subject 2)
    assert load_nsd(roots["nii.gz"], subjects=2, images=False).subjects["subj02"].n_trials == (
        2 * tps
    )


def test_roi_union_keeps_c_order(sim, roots):
    ref = sim.subjects[1]
    ds = load_nsd(roots["nii.gz"], subjects=1, roi=["prf-visualrois", "MTL"], images=False)
    sub = ds.subjects["subj01"]
    keep = np.isin(ref.roi, ["V1", "V2", "V3", "hV4", "MTL"])
    np.testing.assert_array_equal(sub.betas, ref.betas[:, keep])
    np.testing.assert_array_equal(sub.roi, ref.roi[keep])
    # the columns are the mask's non-zero voxels in C order (np.argwhere)
    mask = np.asarray(ref.mask_img.dataobj) != 0
    np.testing.assert_array_equal(
        np.argwhere(np.asarray(sub.mask_img.dataobj)), np.argwhere(mask)[keep]
    )


def test_average_repeats_matches_loop(sim, roots):
    ds = load_nsd(roots["nii.gz"], subjects=2, average_repeats=True, images=False)
    sub = ds.subjects["subj02"]
    ref = sim.subjects[2]
    ids = sim.subjectim[1, sim.masterordering[: ref.betas.shape[0]]]
    uniq = np.unique(ids)
    np.testing.assert_array_equal(sub.stim_ids, uniq)
    for k, i in enumerate(uniq):
        np.testing.assert_allclose(
            sub.betas[k], ref.betas[ids == i].astype(np.float64).mean(0), rtol=1e-6, atol=1e-7
        )


def test_image_resize_matches_block_mean(sim, roots):
    ds = load_nsd(roots["nii.gz"], subjects=3, image_size=8)
    assert ds.stimuli.images.shape[1:] == (8, 8, 3) and ds.stimuli.images.dtype == np.uint8
    full = sim.stimuli.images[ds.stimuli.ids].astype(float)
    block = full.reshape(len(full), 8, 2, 8, 2, 3).mean((2, 4))
    # smooth images: an anti-aliased 2x downsampling is close to the 2x2 block mean
    assert np.abs(ds.stimuli.images - block)[:, 1:-1, 1:-1].mean() < 3.0


def test_read_expdesign_zero_based(sim, roots):
    d = read_expdesign(roots["hdf5"])
    np.testing.assert_array_equal(d.masterordering, sim.masterordering)
    expected = sim.subjectim[2, sim.masterordering[:5]]
    np.testing.assert_array_equal(d.stim_ids(3, np.arange(5)), expected)


# --------------------------------------------------------------------------------------
# bad input: each error names the file (or argument) and the field
# --------------------------------------------------------------------------------------
def test_missing_session_names_expected_path(roots):
    with pytest.raises(FileNotFoundError, match=r"betas_session05\.nii\.gz"):
        load_nsd(roots["nii.gz"], subjects=1, sessions=[1, 5], images=False)


def test_wrong_subject(roots):
    with pytest.raises(ValueError, match=r"subjects: NSD has subjects 1\.\.8, got \[9\]"):
        load_nsd(roots["nii.gz"], subjects=[1, 9])
    with pytest.raises(FileNotFoundError, match=r"subj04"):
        load_nsd(roots["nii.gz"], subjects=4)
    with pytest.raises(ValueError, match="subjects"):
        load_nsd(roots["nii.gz"], subjects="1")


def test_roi_of_another_shape(roots, tmp_path):
    root = _copy(roots["nii.gz"], tmp_path)
    roi_dir = nsd_paths(root)["roi_dir"]
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.int16), np.eye(4)), roi_dir / "small.nii.gz")
    with pytest.raises(ValueError, match=r"small\.nii\.gz: ROI shape \(5, 5, 5\) does not match"):
        load_nsd(root, subjects=1, roi="small", images=False)
    with pytest.raises(FileNotFoundError, match=r"nope\.nii\.gz.*nsdgeneral\.nii\.gz"):
        load_nsd(root, subjects=1, roi="nope", images=False)


def test_nan_betas_in_hdf5(sim, roots, tmp_path):
    root = _copy(roots["hdf5"], tmp_path)
    path = nsd_paths(root, 1, 2)["betas_hdf5"]
    with h5py.File(path, "r") as f:
        data = f["betas"][()].astype(np.float32)
    x, y, z = np.argwhere(np.asarray(sim.subjects[1].mask_img.dataobj))[3]
    data[4, z, y, x] = np.nan
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=data)
    where = rf"session02\.hdf5: field 'betas' holds NaN.*trial 4, voxel \({x}, {y}, {z}\)"
    with pytest.raises(ValueError, match=where):
        load_nsd(root, subjects=1, images=False)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
    with pytest.raises(ValueError, match=r"betas_session02\.hdf5: dataset '/betas' missing"):
        load_nsd(root, subjects=1, images=False)


def test_hdf5_without_imgbrick(roots, tmp_path):
    root = _copy(roots["nii.gz"], tmp_path)
    with h5py.File(nsd_paths(root)["stimuli"], "w") as f:
        f.create_dataset("images", data=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"nsd_stimuli\.hdf5: dataset 'imgBrick' missing"):
        load_nsd(root, subjects=1)
    load_nsd(root, subjects=1, images=False)  # the images are not needed then


@pytest.mark.parametrize("field", ["masterordering", "subjectim", "sharedix"])
def test_expdesign_missing_field(roots, tmp_path, field):
    root = _copy(roots["nii.gz"], tmp_path)
    path = nsd_paths(root)["expdesign"]
    mat = {k: v for k, v in loadmat(path).items() if not k.startswith("__") and k != field}
    savemat(path, mat)
    with pytest.raises(ValueError, match=rf"nsd_expdesign\.mat: field '{field}' missing"):
        load_nsd(root, subjects=1, images=False)


def test_missing_files_and_bad_arguments(sim, roots, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nsd_expdesign\.mat"):
        load_nsd(tmp_path, subjects=1)
    with pytest.raises(ValueError, match="betas_format"):
        write_nsd_layout(tmp_path / "x", sim, betas_format="mgh")
    with pytest.raises(ValueError, match="image_size"):
        load_nsd(roots["nii.gz"], subjects=1, image_size=(0, 4))
    with pytest.raises(ValueError, match="sessions"):
        load_nsd(roots["nii.gz"], subjects=1, sessions=[0])
    with pytest.raises(ValueError, match="space: 'fsaverage' is a surface space"):
        load_nsd(roots["nii.gz"], subjects=1, space="fsaverage")


def test_rewrite_replaces_old_sessions(sim, roots, tmp_path):
    root = _copy(roots["nii.gz"], tmp_path)
    fewer = make_sim(sessions=(1, 2, 2))  # same seed: subject 1 now has one session
    write_nsd_layout(root, fewer, betas_format="hdf5")
    names = sorted(p.name for p in nsd_paths(root, 1)["betas_hdf5"].parent.iterdir())
    assert names == ["betas_session01.hdf5", "ncsnr.nii.gz"]
    sub = load_nsd(root, subjects=1, images=False).subjects["subj01"]
    np.testing.assert_array_equal(sub.betas, fewer.subjects[1].betas)


# --------------------------------------------------------------------------------------
# memory: sessions are read one at a time, a block at a time; images only where used
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["nii.gz", "hdf5"])
def test_memory_bounded_by_sessions_and_blocks(tmp_path, monkeypatch, fmt):
    import data_loaders.nsd as nsd

    grid, tps = (32, 32, 32), 80
    big = make_sim(
        grid=grid, sessions=(2,), tps=tps, n_images=1000, n_shared=20, n_subject_images=60,
        image_hw=48, voxel_frac=(0.05,), seed=1,
    )  # fmt: skip
    root = write_nsd_layout(tmp_path / "big", big, betas_format=fmt, compress=False)
    session_bytes = int(np.prod(grid)) * tps * 2  # one session as int16: 5.2 MB
    brick_bytes = big.stimuli.images.nbytes  # all the images: 6.9 MB

    def peak_of_load() -> int:
        tracemalloc.start()
        try:
            ds = load_nsd(root, subjects=1, sessions=[1, 2])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(ds.subjects["subj01"].betas, big.subjects[1].betas)
        return peak

    # the bound: never more than the two sessions requested
    assert peak_of_load() < 2 * session_bytes
    # reads go a block at a time: with 256 kB blocks the whole load (betas kept: 0.8 MB,
    # images used: 0.4 MB) stays under half a session and half the image file
    monkeypatch.setattr(nsd, "_READ_BLOCK_BYTES", 2**18)
    peak = peak_of_load()
    assert peak < session_bytes / 2, (peak, session_bytes)
    assert peak < brick_bytes / 2, (peak, brick_bytes)


# --------------------------------------------------------------------------------------
# the simulator's own output round-trips through the layout
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated():
    from data_loaders.simulate.fmri import simulate_nsd

    return simulate_nsd(
        n_subjects=2, n_sessions=[2, 1], trials_per_session=30, n_shared=5,
        n_subject_images=30, image_size=16, voxels=(60, 90), random_state=3,
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["nii.gz", "hdf5"])
def test_round_trip_on_simulate_nsd(simulated, tmp_path, fmt):
    sim = simulated
    root = write_nsd_layout(tmp_path / "sim", sim, betas_format=fmt)
    loaded = load_nsd(root, subjects=[1, 2], average_repeats=True)
    expected = sim.to_dataset(average_repeats=True)
    assert loaded.subject_names == expected.subject_names == ["subj01", "subj02"]
    for name in expected.subject_names:
        got, ref = loaded.subjects[name], expected.subjects[name]
        np.testing.assert_array_equal(got.stim_ids, ref.stim_ids)
        np.testing.assert_allclose(got.betas, ref.betas, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got.roi, ref.roi)
        np.testing.assert_array_equal(got.ncsnr, ref.ncsnr)
        np.testing.assert_array_equal(got.voxel_coords_mni(), ref.voxel_coords_mni())
    np.testing.assert_array_equal(
        loaded.stimuli.images, expected.stimuli.subset(loaded.stimuli.ids).images
    )
