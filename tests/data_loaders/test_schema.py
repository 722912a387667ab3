"""Tests of the shared containers against independent references (nilearn, mne, loops)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from data_loaders.schema import EEGDataset, FMRIDataset, FMRISubject, Stimuli

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------
def make_stimuli(n: int = 6, ids=None, **kw) -> Stimuli:
    images = RNG.integers(0, 256, size=(n, 4, 5, 3), dtype=np.uint8)
    ids = np.arange(100, 100 + n) if ids is None else np.asarray(ids)
    return Stimuli(images=images, ids=ids, **kw)


def make_mask(shape=(4, 5, 6), n_vox: int = 12, seed: int = 1) -> nib.Nifti1Image:
    rng = np.random.default_rng(seed)
    data = np.zeros(shape, dtype=np.int16)
    flat = rng.choice(np.prod(shape), size=n_vox, replace=False)
    data.flat[flat] = rng.integers(1, 4, size=n_vox)  # labels, any non-zero counts
    affine = np.array(
        [[2.0, 0, 0, -10], [0, 2.0, 0.3, -20], [0, 0, 2.5, 5], [0, 0, 0, 1]]
    )  # non-diagonal, so a wrong axis order shows
    return nib.Nifti1Image(data, affine)


def make_subject(stim_ids, n_vox: int = 12, name: str = "s1", mask=True, ncsnr=True):
    stim_ids = np.asarray(stim_ids)
    roi = np.array(["V1", "V2", "FFA"])[np.arange(n_vox) % 3]
    return FMRISubject(
        betas=RNG.standard_normal((stim_ids.size, n_vox)).astype(np.float32),
        stim_ids=stim_ids,
        roi=roi,
        mask_img=make_mask(n_vox=n_vox) if mask else None,
        ncsnr=RNG.uniform(0, 2, n_vox) if ncsnr else None,
        subject=name,
    )


def make_eeg(n_epochs: int = 8, ch_names=("AF3", "F7", "O1", "O2")) -> EEGDataset:
    return EEGDataset(
        X=(RNG.standard_normal((n_epochs, len(ch_names), 32)) * 1e-5).astype(np.float32),
        sfreq=128.0,
        ch_names=list(ch_names),
        labels={"valence": np.arange(n_epochs) % 5 + 1, "arousal": np.arange(n_epochs) % 3},
        subject=np.repeat(np.arange(n_epochs // 2), 2),
        trial=np.tile(np.arange(2), n_epochs // 2),
    )


# --------------------------------------------------------------------------------------
# Stimuli
# --------------------------------------------------------------------------------------
def test_stimuli_valid_and_len():
    s = make_stimuli(5, attributes={"colour": np.arange(5.0)})
    assert len(s) == 5
    assert s.ids.dtype.kind == "i"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"images": np.zeros((3, 4, 4, 3), np.float32)}, "images"),
        ({"images": np.zeros((3, 4, 4), np.uint8)}, "images"),
        ({"images": np.zeros((3, 3, 4, 4), np.uint8)}, "images"),  # channels first
        ({"ids": np.array([1.0, 2.0, 3.0])}, "ids"),
        ({"ids": np.array([1, 2])}, "ids"),
        ({"ids": np.array([1, 2, 2])}, "ids"),
        ({"ids": np.array([True, False, True])}, "ids"),
        ({"attributes": {"colour": np.arange(2)}}, "attributes"),
        ({"attributes": {"size": np.array([1.0, np.nan, 2.0])}}, "attributes"),
        ({"attributes": [1, 2, 3]}, "attributes"),
        ({"objects_3d": [{"r": 1}, {"r": 2}]}, "objects_3d"),
        ({"objects_3d": [{"r": 1}, {"r": 2}, 3]}, "objects_3d"),
        ({"objects_3d": {"radius": np.ones(4)}}, "objects_3d"),
        ({"objects_3d": "sphere"}, "objects_3d"),
    ],
)
def test_stimuli_bad_input(kwargs, field):
    base = {"images": np.zeros((3, 4, 4, 3), np.uint8), "ids": np.array([1, 2, 3])}
    base.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{field}"):
        Stimuli(**base)


def test_stimuli_channels_first_hint():
    with pytest.raises(ValueError, match="channels first"):
        Stimuli(images=np.zeros((2, 3, 8, 8), np.uint8), ids=np.array([0, 1]))


def test_stimuli_subset_keeps_given_order_lists_and_dicts():
    objs = [{"radius": float(i)} for i in range(6)]
    s = make_stimuli(6, attributes={"cls": np.arange(6) * 10}, objects_3d=objs)
    want = [104, 100, 103]
    sub = s.subset(want)
    np.testing.assert_array_equal(sub.ids, want)
    np.testing.assert_array_equal(sub.images, s.images[[4, 0, 3]])
    np.testing.assert_array_equal(sub.attributes["cls"], [40, 0, 30])
    assert [o["radius"] for o in sub.objects_3d] == [4.0, 0.0, 3.0]
    s2 = make_stimuli(6, objects_3d={"radius": np.arange(6.0), "pos": np.ones((6, 3))})
    sub2 = s2.subset(want)
    np.testing.assert_array_equal(sub2.objects_3d["radius"], [4.0, 0.0, 3.0])
    assert sub2.objects_3d["pos"].shape == (3, 3)


def test_stimuli_index_of_matches_loop_and_rejects_unknown():
    ids = RNG.permutation(np.arange(0, 400, 7))
    s = make_stimuli(ids.size, ids=ids)
    query = ids[[5, 0, 17, 5]]
    expected = [list(ids).index(q) for q in query]
    np.testing.assert_array_equal(s.index_of(query), expected)
    assert s.index_of(int(ids[3]))[0] == 3
    with pytest.raises(ValueError, match=r"^ids: unknown stimulus ids \[1, 2"):
        s.index_of([ids[0], 1, 2])
    with pytest.raises(ValueError, match="^ids"):
        s.subset([ids[0], ids[0]])


# --------------------------------------------------------------------------------------
# FMRISubject
# --------------------------------------------------------------------------------------
def _subject_kwargs(n_trials=4, n_vox=12):
    return dict(
        betas=np.zeros((n_trials, n_vox), np.float32),
        stim_ids=np.arange(n_trials),
        roi=np.array(["V1"] * n_vox),
        mask_img=make_mask(n_vox=n_vox),
        ncsnr=np.ones(n_vox),
        subject="s1",
    )


@pytest.mark.parametrize(
    "change, field",
    [
        ({"betas": np.zeros((4, 12))}, "betas"),  # float64
        ({"betas": np.zeros(12, np.float32)}, "betas"),
        ({"betas": np.full((4, 12), np.nan, np.float32)}, "betas"),
        ({"betas": np.full((4, 12), np.inf, np.float32)}, "betas"),
        ({"stim_ids": np.arange(3)}, "stim_ids"),
        ({"stim_ids": np.zeros(4)}, "stim_ids"),
        ({"roi": np.array(["V1"] * 11)}, "roi"),
        ({"roi": np.zeros(12, int)}, "roi"),
        ({"mask_img": make_mask(n_vox=11)}, "mask_img"),
        ({"mask_img": nib.Nifti1Image(np.ones((2, 2, 3, 1)), np.eye(4))}, "mask_img"),
        ({"mask_img": np.ones((2, 2, 3))}, "mask_img"),
        ({"ncsnr": -np.ones(12)}, "ncsnr"),
        ({"ncsnr": np.ones(11)}, "ncsnr"),
        ({"ncsnr": np.full(12, np.nan)}, "ncsnr"),
        ({"subject": ""}, "subject"),
        ({"subject": 3}, "subject"),
    ],
)
def test_fmri_subject_bad_input(change, field):
    kw = _subject_kwargs()
    kw.update(change)
    with pytest.raises(ValueError, match=rf"^{field}"):
        FMRISubject(**kw)


def test_fmri_subject_nan_position_reported():
    kw = _subject_kwargs()
    kw["betas"] = kw["betas"].copy()
    kw["betas"][2, 7] = np.nan
    with pytest.raises(ValueError, match="row 2, column 7"):
        FMRISubject(**kw)


def _volume_and_subject(n_vol=5, n_vox=20):
    """A 4D volume, its mask, and a subject whose betas nilearn extracted from them."""
    from nilearn.masking import apply_mask

    mask = make_mask(n_vox=n_vox)
    vol = RNG.standard_normal(mask.shape + (n_vol,)).astype(np.float32)
    vol_img = nib.Nifti1Image(vol, mask.affine)
    binary = nib.Nifti1Image((mask.get_fdata() != 0).astype(np.uint8), mask.affine)
    betas = apply_mask(vol_img, binary).astype(np.float32)  # nilearn: (n_vol, n_vox)
    roi = np.array(["V1", "V2", "FFA", "V1"])[np.arange(n_vox) % 4]
    sub = FMRISubject(betas, np.arange(n_vol), roi, mask, np.linspace(0, 1, n_vox), "s1")
    return vol, binary, sub


def test_to_img_inverts_nilearn_masking():
    from nilearn.masking import unmask

    vol, binary, sub = _volume_and_subject()
    img = sub.to_img(sub.betas[2])
    assert img.shape == binary.shape
    np.testing.assert_allclose(img.get_fdata(), unmask(sub.betas[2], binary).get_fdata())
    np.testing.assert_allclose(img.get_fdata(), vol[..., 2] * binary.get_fdata())
    np.testing.assert_array_equal(img.affine, binary.affine)
    img4 = sub.to_img(sub.betas[:3])
    assert img4.shape == binary.shape + (3,)
    np.testing.assert_allclose(img4.get_fdata()[..., 1], vol[..., 1] * binary.get_fdata())
    with pytest.raises(ValueError, match="^values"):
        sub.to_img(np.ones(sub.n_voxels + 1))
    with pytest.raises(ValueError, match="^values"):
        sub.to_img(np.full(sub.n_voxels, np.nan))


def test_select_roi_matches_nilearn_on_new_mask():
    from nilearn.masking import apply_mask

    vol, _, sub = _volume_and_subject()
    assert sub.roi_names == ["FFA", "V1", "V2"]
    part = sub.select_roi(["V2", "FFA"])
    cols = np.flatnonzero(np.isin(sub.roi, ["V2", "FFA"]))
    np.testing.assert_array_equal(part.betas, sub.betas[:, cols])
    np.testing.assert_array_equal(part.ncsnr, sub.ncsnr[cols])
    assert part.roi_names == ["FFA", "V2"]
    # the updated mask must still give the columns in C order
    ref = apply_mask(nib.Nifti1Image(vol, part.mask_img.affine), part.mask_img)
    np.testing.assert_allclose(part.betas, ref)
    np.testing.assert_array_equal(sub.select_roi("V1").roi, ["V1"] * sub.select_roi("V1").n_voxels)
    with pytest.raises(ValueError, match="^name: unknown ROI"):
        sub.select_roi("MT")


def test_voxel_coords_match_nilearn_coord_transform():
    from nilearn.image import coord_transform

    _, binary, sub = _volume_and_subject()
    ijk = np.argwhere(binary.get_fdata() != 0)
    x, y, z = coord_transform(ijk[:, 0], ijk[:, 1], ijk[:, 2], binary.affine)
    np.testing.assert_allclose(sub.voxel_coords_mni(), np.column_stack([x, y, z]))
    no_mask = make_subject(np.arange(3), mask=False)
    with pytest.raises(ValueError, match="^mask_img"):
        no_mask.voxel_coords_mni()
    with pytest.raises(ValueError, match="^mask_img"):
        no_mask.to_img(np.zeros(no_mask.n_voxels))


# --------------------------------------------------------------------------------------
# FMRIDataset
# --------------------------------------------------------------------------------------
def make_dataset():
    stim = make_stimuli(10, ids=np.arange(10) * 3)  # ids 0, 3, ..., 27
    ids = stim.ids
    shared = ids[:4]
    s1 = np.concatenate([shared, shared, ids[4:7], ids[[4, 5]], shared[[0]]])
    s2 = np.concatenate([shared, ids[7:9], shared[[1, 2]], ids[[8]]])
    s1 = RNG.permutation(s1)
    return FMRIDataset(stim, {"s1": make_subject(s1, name="s1"), "s2": make_subject(s2, name="s2")})


def test_dataset_validation():
    ds = make_dataset()
    assert ds.subject_names == ["s1", "s2"]
    with pytest.raises(ValueError, match=r"^subjects\['s1'\]\.stim_ids.*\[1000, 1001\]"):
        FMRIDataset(ds.stimuli, {"s1": make_subject([0, 3, 1000, 1001, 1000], name="s1")})
    with pytest.raises(ValueError, match=r"^subjects\['x'\]"):
        FMRIDataset(ds.stimuli, {"x": ds.subjects["s1"]})
    with pytest.raises(ValueError, match="^subjects"):
        FMRIDataset(ds.stimuli, {})
    with pytest.raises(ValueError, match="^subjects"):
        FMRIDataset(ds.stimuli, {"s1": "not a subject"})
    with pytest.raises(ValueError, match="^stimuli"):
        FMRIDataset(np.zeros(3), ds.subjects)


def test_average_repeats_matches_loop():
    ds = make_dataset()
    avg = ds.average_repeats()
    for name, sub in ds.subjects.items():
        a = avg.subjects[name]
        uniq = sorted(set(sub.stim_ids.tolist()))
        np.testing.assert_array_equal(a.stim_ids, uniq)
        assert a.betas.dtype == np.float32
        for row, sid in enumerate(uniq):
            rows = [t for t in range(sub.n_trials) if sub.stim_ids[t] == sid]
            expected = sum(sub.betas[t].astype(np.float64) for t in rows) / len(rows)
            np.testing.assert_allclose(a.betas[row], expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(a.ncsnr, sub.ncsnr)
    assert avg.stimuli is ds.stimuli


def test_split_shared_is_the_images_all_subjects_saw():
    ds = make_dataset()
    train, test = ds.split("shared")
    seen = [set(s.stim_ids.tolist()) for s in ds.subjects.values()]
    shared = set.intersection(*seen)
    assert set(test.stimuli.ids.tolist()) == shared == {0, 3, 6, 9}
    assert not set(train.stimuli.ids.tolist()) & shared
    assert len(train.stimuli) + len(test.stimuli) == len(ds.stimuli)
    for name, sub in ds.subjects.items():
        tr, te = train.subjects[name], test.subjects[name]
        assert set(te.stim_ids.tolist()) == shared  # every subject saw every test image
        assert not set(tr.stim_ids.tolist()) & shared
        assert tr.n_trials + te.n_trials == sub.n_trials
        # the rows moved with their stimulus ids
        in_test = np.isin(sub.stim_ids, list(shared))
        np.testing.assert_array_equal(te.betas, sub.betas[in_test])
        np.testing.assert_array_equal(tr.stim_ids, sub.stim_ids[~in_test])


def test_split_fraction_reproducible_and_disjoint():
    ds = make_dataset()
    tr1, te1 = ds.split(0.3, random_state=4)
    tr2, te2 = ds.split(0.3, random_state=4)
    np.testing.assert_array_equal(te1.stimuli.ids, te2.stimuli.ids)
    assert len(te1.stimuli) == 3  # round(0.3 * 10 seen images)
    assert not set(tr1.stimuli.ids.tolist()) & set(te1.stimuli.ids.tolist())
    draws = {tuple(ds.split(0.3, random_state=k)[1].stimuli.ids) for k in range(6)}
    assert len(draws) > 1


@pytest.mark.parametrize("test", ["random", 0.0, 1.0, 1.5, True, 0.001])
def test_split_bad_input(test):
    with pytest.raises(ValueError, match="^test"):
        make_dataset().split(test)


def test_split_shared_needs_overlap():
    stim = make_stimuli(6, ids=np.arange(6))
    ds = FMRIDataset(
        stim, {"a": make_subject([0, 1, 2], name="a"), "b": make_subject([3, 4], name="b")}
    )
    with pytest.raises(ValueError, match="^test: 'shared' found no image"):
        ds.split()
    with pytest.raises(ValueError, match="^test: 'shared' would put every image"):
        ds.select("a").split()


def test_noise_ceiling_hand_computed():
    stim = make_stimuli(4, ids=np.arange(4))
    sub = make_subject(np.arange(4), n_vox=4, name="a")
    sub = FMRISubject(sub.betas, sub.stim_ids, sub.roi, None, np.array([0.0, 1.0, 2.0, 0.5]), "a")
    ds = FMRIDataset(stim, {"a": sub})
    # 100 * s^2 / (s^2 + 1/n): s=1,n=1 -> 50; s=2 -> 80; s=.5 -> 20
    np.testing.assert_allclose(ds.noise_ceiling("a"), [0, 50, 80, 20])
    # n=3: s=1 -> 75; s=2 -> 4/(4+1/3) = 92.307..; s=.5 -> .25/(.25+1/3) = 42.857..
    np.testing.assert_allclose(ds.noise_ceiling("a", n_avg=3), [0, 75, 1200 / 13, 300 / 7])
    for bad in (0, -3, "3", np.nan, True):
        with pytest.raises(ValueError, match="^n_avg"):
            ds.noise_ceiling("a", n_avg=bad)
    with pytest.raises(ValueError, match="^subject"):
        ds.noise_ceiling("zz")
    no_nc = FMRIDataset(stim, {"a": make_subject(np.arange(4), name="a", ncsnr=False)})
    with pytest.raises(ValueError, match="^ncsnr"):
        no_nc.noise_ceiling("a")


def test_select_and_mni_img():
    ds = make_dataset()
    one = ds.select("s2")
    assert one.subject_names == ["s2"]
    assert ds.select(["s2", "s1"]).subject_names == ["s2", "s1"]
    with pytest.raises(ValueError, match="^subject: unknown subject 'nope'"):
        ds.select(["s1", "nope"])
    values = np.arange(ds.subjects["s1"].n_voxels, dtype=float)
    img = ds.mni_img("s1", values)
    mask = ds.subjects["s1"].mask_img.get_fdata() != 0
    np.testing.assert_array_equal(img.get_fdata()[mask], values)
    assert np.all(img.get_fdata()[~mask] == 0)


# --------------------------------------------------------------------------------------
# EEGDataset
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, field",
    [
        ({"X": np.zeros((8, 4, 32))}, "X"),  # float64
        ({"X": np.zeros((8, 4), np.float32)}, "X"),
        ({"X": np.full((8, 4, 32), np.nan, np.float32)}, "X"),
        ({"sfreq": 0.0}, "sfreq"),
        ({"sfreq": -128.0}, "sfreq"),
        ({"sfreq": float("nan")}, "sfreq"),
        ({"sfreq": "128"}, "sfreq"),
        ({"ch_names": ["AF3", "F7", "O1", "O1"]}, "ch_names"),
        ({"ch_names": ["AF3", "F7", "O1"]}, "ch_names"),
        ({"ch_names": "AF3F7O1O2"}, "ch_names"),
        ({"labels": {"valence": np.arange(7)}}, "labels"),
        ({"labels": {"valence": np.linspace(0, 1, 8)}}, "labels"),
        ({"labels": [1, 2]}, "labels"),
        ({"subject": np.zeros(7, int)}, "subject"),
        ({"trial": np.zeros(8)}, "trial"),
    ],
)
def test_eeg_bad_input(change, field):
    ds = make_eeg()
    kw = dict(
        X=ds.X,
        sfreq=ds.sfreq,
        ch_names=ds.ch_names,
        labels=ds.labels,
        subject=ds.subject,
        trial=ds.trial,
    )
    kw.update(change)
    with pytest.raises(ValueError, match=rf"^{field}"):
        EEGDataset(**kw)


def test_eeg_len_shape_helpers():
    ds = make_eeg()
    assert (len(ds), ds.n_channels, ds.n_times) == (8, 4, 32)


def test_eeg_to_epochs_data_and_montage():
    import mne

    ds = make_eeg()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation noise reaches the user
        ep = ds.to_epochs(verbose=False)
    assert isinstance(ep, mne.EpochsArray)
    np.testing.assert_array_equal(ep.get_data(), ds.X.astype(np.float64))
    assert ep.info["sfreq"] == ds.sfreq and ep.ch_names == ds.ch_names
    assert set(ep.get_channel_types()) == {"eeg"}
    # positions equal those MNE itself gives these channels from its 10-20 montage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = mne.create_info(ds.ch_names, ds.sfreq, "eeg")
        ref.set_montage(mne.channels.make_standard_montage("standard_1020"))
    pos = ep.get_montage().get_positions()["ch_pos"]
    for k, ch in enumerate(ds.ch_names):
        assert np.all(np.isfinite(pos[ch])) and np.linalg.norm(pos[ch]) > 0.05  # on the scalp
        np.testing.assert_allclose(ep.info["chs"][k]["loc"][:3], ref["chs"][k]["loc"][:3])
    np.testing.assert_array_equal(ep.metadata["valence"].to_numpy(), ds.labels["valence"])
    np.testing.assert_array_equal(ep.metadata["subject"].to_numpy(), ds.subject)
    assert ds.to_epochs(montage=None, verbose=False).get_montage() is None


def test_eeg_to_epochs_unknown_channel():
    ds = make_eeg(ch_names=("AF3", "F7", "O1", "EXG1"))
    with pytest.raises(ValueError, match=r"^ch_names: channels \['EXG1'\]"):
        ds.to_epochs(verbose=False)


def test_eeg_select_matches_boolean_indexing():
    ds = make_eeg(12)
    sel = ds.select(subject=[1, 3, 4], trial=1)
    keep = np.isin(ds.subject, [1, 3, 4]) & (ds.trial == 1)
    np.testing.assert_array_equal(sel.X, ds.X[keep])
    np.testing.assert_array_equal(sel.subject, ds.subject[keep])
    np.testing.assert_array_equal(sel.labels["arousal"], ds.labels["arousal"][keep])
    mask = ds.labels["valence"] > 2
    np.testing.assert_array_equal(ds.select(mask=mask).trial, ds.trial[mask])
    assert len(ds.select(subject=0, mask=mask)) == int((mask & (ds.subject == 0)).sum())
    with pytest.raises(ValueError, match="^mask"):
        ds.select(mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="^subject"):
        ds.select(subject=[0.5])
