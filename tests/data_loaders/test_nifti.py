"""load_nifti_betas / find_bids_betas on small synthetic NIfTI images made on the fly,
compared with direct nibabel indexing."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from data_loaders.nifti import find_bids_betas, load_nifti_betas

GRID = (6, 7, 5)


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-6, -7, -5]
    # NSD-style ROI values: -1 outside the brain, 0 outside the ROI, >= 1 inside
    atlas = rng.integers(-1, 4, GRID).astype(np.int16)
    betas = rng.normal(size=(*GRID, 12)).astype(np.float32)
    return {
        "affine": affine,
        "atlas": atlas,
        "mask": atlas > 0,
        "betas": betas,
        "img4d": nib.Nifti1Image(betas, affine),
        "mask_img": nib.Nifti1Image(atlas, affine),
    }


def test_4d_image_matches_nibabel_indexing(data):
    sub = load_nifti_betas(data["img4d"], data["mask_img"], subject="sub-07")
    # direct indexing: boolean mask over (X, Y, Z) takes the voxels in C order
    expected = data["betas"][data["mask"]].T
    np.testing.assert_array_equal(sub.betas, expected)
    assert sub.betas.dtype == np.float32 and sub.subject == "sub-07"
    np.testing.assert_array_equal(sub.stim_ids, np.arange(12))
    np.testing.assert_array_equal(np.asarray(sub.mask_img.dataobj) != 0, data["mask"])
    assert set(sub.roi) == {"other"}


def test_paths_mixing_3d_and_4d_keep_list_order(data, tmp_path):
    b, aff = data["betas"], data["affine"]
    paths = []
    for k in range(3):  # three 3D volumes, then a 4D run of 4, then two 3D volumes
        paths.append(tmp_path / f"b{k}.nii.gz")
        nib.save(nib.Nifti1Image(b[..., k], aff), paths[-1])
    paths.append(tmp_path / "run.nii.gz")
    nib.save(nib.Nifti1Image(b[..., 3:7], aff), paths[-1])
    for k in (7, 8):
        paths.append(tmp_path / f"b{k}.nii")
        nib.save(nib.Nifti1Image(b[..., k], aff), paths[-1])
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(data["mask_img"], mask_path)
    sub = load_nifti_betas([str(p) for p in paths], mask_path)
    np.testing.assert_array_equal(sub.betas, b[..., :9][data["mask"]].T)


def test_events_roi_and_ncsnr(data, tmp_path):
    stim = np.array([5, 3, 5, 9, 3, 5, 1, 1, 9, 2, 2, 7])
    events = pd.DataFrame(
        {"onset": np.arange(12) * 4.0, "duration": 3.0, "trial_type": "image", "nsd_id": stim}
    )
    tsv = tmp_path / "sub-01_task-x_events.tsv"
    events.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    nc = np.abs(np.random.default_rng(1).normal(size=GRID)).astype(np.float32)
    sub = load_nifti_betas(
        data["img4d"],
        data["mask_img"],
        events=tsv,
        stim_column="nsd_id",
        roi_img=data["mask_img"],
        roi_labels={1: "V1", 2: "V2"},
        ncsnr_img=nib.Nifti1Image(nc, data["affine"]),
    )
    np.testing.assert_array_equal(sub.stim_ids, stim)
    codes = data["atlas"][data["mask"]]
    np.testing.assert_array_equal(sub.roi, np.array(["V1", "V2", "3"])[codes - 1])
    np.testing.assert_array_equal(sub.ncsnr, nc[data["mask"]])
    # the same table given as a DataFrame
    sub2 = load_nifti_betas(data["img4d"], data["mask_img"], events=events, stim_column="nsd_id")
    np.testing.assert_array_equal(sub2.stim_ids, stim)


def test_memory_cache_is_used(data, tmp_path):
    cache, path = tmp_path / "cache", tmp_path / "betas.nii.gz"
    nib.save(data["img4d"], path)
    first = load_nifti_betas(path, data["mask_img"], memory=str(cache))
    stored = list(cache.rglob("filter_and_mask/*/output.pkl"))
    assert len(stored) == 1  # joblib stored nilearn's masked array
    second = load_nifti_betas(path, data["mask_img"], memory=str(cache))
    assert list(cache.rglob("filter_and_mask/*/output.pkl")) == stored  # reused
    np.testing.assert_array_equal(first.betas, second.betas)


def test_bad_input(data, tmp_path):
    aff, b = data["affine"], data["betas"]
    other = nib.Nifti1Image(b[:5], aff)
    with pytest.raises(ValueError, match=r"beta_imgs\[0\]: grid \(5, 7, 5\).*mask_img"):
        load_nifti_betas(other, data["mask_img"])
    shifted = aff.copy()
    shifted[:3, 3] += 1
    with pytest.raises(ValueError, match="differs from mask_img"):
        load_nifti_betas(nib.Nifti1Image(b, shifted), data["mask_img"])
    nan = b.copy()
    x, y, z = np.argwhere(data["mask"])[0]
    nan[x, y, z, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf inside the mask \(volume 3"):
        load_nifti_betas(nib.Nifti1Image(nan, aff), data["mask_img"])
    with pytest.raises(ValueError, match="empty mask"):
        load_nifti_betas(data["img4d"], nib.Nifti1Image(np.zeros(GRID, np.int16), aff))
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        load_nifti_betas(tmp_path / "missing.nii.gz", data["mask_img"])
    ev = pd.DataFrame({"stim_id": np.arange(11)})
    with pytest.raises(ValueError, match=r"one row per beta volume \(12\), got 11"):
        load_nifti_betas(data["img4d"], data["mask_img"], events=ev)
    with pytest.raises(ValueError, match=r"column 'nsd_id' \(stim_column\) missing"):
        load_nifti_betas(data["img4d"], data["mask_img"], events=ev, stim_column="nsd_id")
    tsv = tmp_path / "events.tsv"
    tsv.write_text("onset\tstim_id\n" + "".join(f"{i}\t{i}\n" for i in range(11)) + "11\tn/a\n")
    with pytest.raises(ValueError, match=r"events\.tsv: column 'stim_id' expected integer.*row 11"):
        load_nifti_betas(data["img4d"], data["mask_img"], events=tsv)


def _touch_nifti(path: Path, value: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full((*GRID, 2), value, np.float32), np.eye(4)), path)


def test_find_bids_betas_filters_and_orders(tmp_path):
    func = tmp_path / "derivatives" / "glmsingle" / "sub-01" / "ses-1" / "func"
    names = {
        "sub-01_ses-1_task-nsd_run-10_desc-LSS_beta.nii.gz": 10,
        "sub-01_ses-1_task-nsd_run-2_desc-LSS_beta.nii.gz": 2,
        "sub-01_ses-1_task-nsd_run-1_desc-LSS_beta.nii.gz": 1,
        "sub-01_ses-1_task-nsd_run-1_desc-LSA_beta.nii.gz": -1,  # other desc
        "sub-01_ses-1_task-rest_run-1_desc-LSS_beta.nii.gz": -2,  # other task
        "sub-01_ses-1_task-nsd_run-1_desc-LSS_mask.nii.gz": -3,  # other suffix
    }
    for name, value in names.items():
        _touch_nifti(func / name, value)
    _touch_nifti(tmp_path / "derivatives" / "glmsingle" / "sub-011" / "func" /
                 "sub-011_task-nsd_run-1_desc-LSS_beta.nii.gz", -4)  # fmt: skip
    found = find_bids_betas(tmp_path, "sub-01", task="nsd", desc="LSS")
    assert [p.name for p in found] == [
        "sub-01_ses-1_task-nsd_run-1_desc-LSS_beta.nii.gz",
        "sub-01_ses-1_task-nsd_run-2_desc-LSS_beta.nii.gz",
        "sub-01_ses-1_task-nsd_run-10_desc-LSS_beta.nii.gz",
    ]
    assert [p.name for p in find_bids_betas(tmp_path, "01", run=2, desc="LSS")] == [
        "sub-01_ses-1_task-nsd_run-2_desc-LSS_beta.nii.gz"
    ]
    sub = load_nifti_betas(found, nib.Nifti1Image(np.ones(GRID, np.uint8), np.eye(4)))
    np.testing.assert_array_equal(sub.betas[:, 0], [1, 1, 2, 2, 10, 10])
    with pytest.raises(FileNotFoundError, match="task-movie"):
        find_bids_betas(tmp_path, "01", task="movie")
    with pytest.raises(FileNotFoundError, match="derivatives folder not found"):
        find_bids_betas(tmp_path / "nope", "01")
