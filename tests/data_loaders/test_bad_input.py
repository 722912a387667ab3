"""Bad-input catalogue of the readers (issue 14): every damaged file, inconsistent geometry,
untrusted header field and bad argument is refused with the exception type asserted and a
message that names the file or the field. Files are written small on the fly (the NSD
layout, DREAMER.mat, NIfTI, FIF/BrainVision/EDF) and then damaged by hand."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mne
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io

from data_loaders._io import (
    CorruptFileError,
    atomic_dir,
    atomic_path,
    atomic_write_text,
    default_file_mode,
    load_npz,
)
from data_loaders.dreamer import load_dreamer
from data_loaders.eeg import load_eeg, normalise_description
from data_loaders.nifti import load_nifti_betas
from data_loaders.nsd import load_nsd, nsd_paths, read_expdesign, write_nsd_layout
from data_loaders.schema import EEGDataset
from data_loaders.simulate.eeg import simulate_dreamer, write_dreamer_mat
from data_loaders.simulate.fmri import load_truth
from tests.data_loaders.test_nsd import make_sim

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------
# ways to damage a file
# --------------------------------------------------------------------------------------
def truncate(path: Path, frac: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * frac)])


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not the file you are looking for\n" * 20)


def empty(path: Path) -> None:
    path.write_bytes(b"")


def reaffine(path: Path, change) -> None:
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    nib.save(nib.Nifti1Image(data, change(img.affine.copy()), img.header), path)


def shift(aff):
    aff[:3, 3] += [2.0, -3.0, 1.0]
    return aff


def flip(aff):
    aff[0, :] *= -1
    return aff


def double(aff):
    aff[:3, :3] *= 2
    return aff


def regrid(path: Path) -> None:
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)[:-1]
    nib.save(nib.Nifti1Image(data, img.affine), path)


# --------------------------------------------------------------------------------------
# NSD layout
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nsd_roots(tmp_path_factory):
    sim = make_sim(grid=(8, 9, 7), sessions=(2,), tps=12, n_images=30, n_shared=6,
                   n_subject_images=12, image_hw=8, voxel_frac=(0.4,))
    base = tmp_path_factory.mktemp("nsd_bad")
    return {fmt: write_nsd_layout(base / fmt.replace(".", "_"), sim, betas_format=fmt,
                                  compress=False)
            for fmt in ("nii.gz", "hdf5")}


def _file(root: Path, which: str) -> Path:
    p = nsd_paths(root, subject=1, session=1)
    roi_dir = p["roi_dir"]
    return {
        "betas_nii": p["betas_nii"], "betas_hdf5": p["betas_hdf5"],
        "betas_nii_2": nsd_paths(root, 1, 2)["betas_nii"],
        "stimuli": p["stimuli"], "expdesign": p["expdesign"], "ncsnr": p["ncsnr"],
        "nsdgeneral": roi_dir / "nsdgeneral.nii.gz",
        "prf": roi_dir / "prf-visualrois.nii.gz", "streams": roi_dir / "streams.nii.gz",
    }[which]


# (id, betas format, file, damage, exception, words the message must hold besides the path)
NSD_CASES = [
    ("betas_hdf5_truncated", "hdf5", "betas_hdf5", truncate, CorruptFileError, ["HDF5"]),
    ("betas_hdf5_garbage", "hdf5", "betas_hdf5", garbage, CorruptFileError, ["/betas"]),
    ("betas_hdf5_empty", "hdf5", "betas_hdf5", empty, CorruptFileError, ["truncated"]),
    ("betas_hdf5_data_cut", "hdf5", "betas_hdf5", lambda p: truncate(p, 0.8),
     CorruptFileError, ["betas"]),
    ("betas_nii_truncated_header", "nii.gz", "betas_nii", lambda p: truncate(p, 0.01),
     CorruptFileError, ["NIfTI"]),
    ("betas_nii_truncated_data", "nii.gz", "betas_nii", lambda p: truncate(p, 0.6),
     CorruptFileError, ["NIfTI"]),
    ("betas_nii_garbage", "nii.gz", "betas_nii", garbage, CorruptFileError, ["NIfTI"]),
    ("betas_nii_empty", "nii.gz", "betas_nii", empty, CorruptFileError, ["NIfTI"]),
    ("stimuli_truncated", "nii.gz", "stimuli", truncate, CorruptFileError, ["imgBrick"]),
    ("stimuli_garbage", "nii.gz", "stimuli", garbage, CorruptFileError, ["imgBrick"]),
    ("expdesign_truncated", "nii.gz", "expdesign", truncate, CorruptFileError,
     ["masterordering"]),
    ("expdesign_garbage", "nii.gz", "expdesign", garbage, CorruptFileError, ["MATLAB"]),
    ("expdesign_empty", "nii.gz", "expdesign", empty, CorruptFileError, ["MATLAB"]),
    ("roi_truncated", "nii.gz", "nsdgeneral", truncate, CorruptFileError, ["ROI"]),
    ("roi_garbage", "hdf5", "nsdgeneral", garbage, CorruptFileError, ["ROI"]),
    ("label_roi_truncated", "hdf5", "prf", truncate, CorruptFileError, ["ROI"]),
    ("ncsnr_truncated", "nii.gz", "ncsnr", lambda p: truncate(p, 0.5), CorruptFileError,
     ["ncsnr"]),
    ("ncsnr_garbage", "hdf5", "ncsnr", garbage, CorruptFileError, ["ncsnr"]),
    # geometry: shape and affine of every file against the first one
    ("roi_shifted", "nii.gz", "nsdgeneral", lambda p: reaffine(p, shift), ValueError,
     ["affine", "mm"]),
    ("roi_flipped", "nii.gz", "nsdgeneral", lambda p: reaffine(p, flip), ValueError,
     ["affine"]),
    ("roi_shifted_hdf5_betas", "hdf5", "prf", lambda p: reaffine(p, shift), ValueError,
     ["affine", "nsdgeneral"]),
    ("betas_2x_affine", "nii.gz", "betas_nii_2", lambda p: reaffine(p, double), ValueError,
     ["affine", "betas_session01"]),
    ("ncsnr_shifted", "hdf5", "ncsnr", lambda p: reaffine(p, shift), ValueError, ["affine"]),
    ("ncsnr_flipped", "nii.gz", "ncsnr", lambda p: reaffine(p, flip), ValueError, ["affine"]),
    ("streams_flipped", "nii.gz", "streams", lambda p: reaffine(p, flip), ValueError,
     ["affine"]),
    ("ncsnr_other_grid", "nii.gz", "ncsnr", regrid, ValueError, ["ncsnr shape"]),
    ("label_roi_other_grid", "nii.gz", "prf", regrid, ValueError, ["ROI shape"]),
]


@pytest.mark.parametrize("case, fmt, which, damage, exc, words", NSD_CASES,
                         ids=[c[0] for c in NSD_CASES])
def test_nsd_bad_files_are_named(nsd_roots, tmp_path, case, fmt, which, damage, exc, words):
    root = Path(shutil.copytree(nsd_roots[fmt], tmp_path / "root"))
    path = _file(root, which)
    damage(path)
    with pytest.raises(exc) as err:
        load_nsd(root, subjects=1, sessions=[1, 2], roi="nsdgeneral")
    msg = str(err.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, (w, msg)


NSD_ARG_CASES = [
    ("subject_9", {"subjects": 9}, ValueError, "subjects"),
    ("subject_twice", {"subjects": [1, 1]}, ValueError, "subjects"),
    ("subject_text", {"subjects": "one"}, ValueError, "subjects"),
    ("subject_absent", {"subjects": 2}, FileNotFoundError, "subjects"),
    ("session_0", {"sessions": 0}, ValueError, "sessions"),
    ("session_absent", {"sessions": [3]}, FileNotFoundError, "session 3"),
    ("roi_absent", {"roi": "FFA-1"}, FileNotFoundError, "roi"),
    ("roi_empty", {"roi": []}, ValueError, "roi"),
    ("surface_space", {"space": "fsaverage"}, ValueError, "space"),
    ("image_size_0", {"image_size": 0}, ValueError, "image_size"),
    ("image_size_triple", {"image_size": (8, 8, 3)}, ValueError, "image_size"),
    ("verbose_word", {"verbose": "LOUD"}, ValueError, "verbose"),
]


@pytest.mark.parametrize("case, kwargs, exc, needle", NSD_ARG_CASES,
                         ids=[c[0] for c in NSD_ARG_CASES])
def test_nsd_bad_arguments_are_named(nsd_roots, case, kwargs, exc, needle):
    with pytest.raises(exc) as err:
        load_nsd(nsd_roots["hdf5"], **kwargs)
    assert needle in str(err.value), str(err.value)


def test_nsd_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="root: NSD root folder not found"):
        load_nsd(tmp_path / "nowhere")


def test_nsd_undamaged_copy_loads(nsd_roots, tmp_path):
    """The positive control of the catalogue: the same copy, undamaged, loads."""
    for fmt, src in nsd_roots.items():
        root = Path(shutil.copytree(src, tmp_path / fmt.replace(".", "_")))
        ds = load_nsd(root, subjects=1, sessions=[1, 2])
        assert ds.subjects["subj01"].n_trials == 24


def test_read_expdesign_names_the_damaged_file(nsd_roots, tmp_path):
    root = Path(shutil.copytree(nsd_roots["nii.gz"], tmp_path / "root"))
    truncate(_file(root, "expdesign"), 0.3)
    with pytest.raises(CorruptFileError, match="nsd_expdesign.mat: cannot be read") as err:
        read_expdesign(root)
    assert err.value.path == _file(root, "expdesign")


# --------------------------------------------------------------------------------------
# DREAMER.mat
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dreamer(tmp_path_factory):
    rec = simulate_dreamer(n_subjects=1, n_clips=2, stim_seconds=12, baseline_seconds=11,
                           random_state=0)
    base = tmp_path_factory.mktemp("dreamer_bad")
    return rec, write_dreamer_mat(base / "DREAMER.mat", rec)


def _variant(path: Path, src: Path, drop=(), **changes) -> Path:
    """``src`` with top-level DREAMER fields changed or dropped (written with scipy)."""
    D = scipy.io.loadmat(src)["DREAMER"][0, 0]
    fields = {k: D[k] for k in D.dtype.names if k not in drop}
    fields.update(changes)
    scipy.io.savemat(path, {"DREAMER": fields})
    return path


DREAMER_FILE_CASES = [
    ("mat_truncated", truncate, CorruptFileError, "DREAMER.mat"),
    ("mat_garbage", garbage, CorruptFileError, "MATLAB"),
    ("mat_empty", empty, CorruptFileError, "DREAMER"),
]


@pytest.mark.parametrize("case, damage, exc, word", DREAMER_FILE_CASES,
                         ids=[c[0] for c in DREAMER_FILE_CASES])
def test_dreamer_damaged_file_is_named(dreamer, tmp_path, case, damage, exc, word):
    path = Path(shutil.copy(dreamer[1], tmp_path / "DREAMER.mat"))
    damage(path)
    with pytest.raises(exc) as err:
        load_dreamer(path, last_s=None)
    assert str(path) in str(err.value) and word in str(err.value)


DREAMER_RATE_CASES = [("rate_256_on_128", 256.0), ("rate_64_on_128", 64.0),
                      ("rate_zero", 0.0), ("rate_nan", np.nan), ("rate_negative", -128.0),
                      ("rate_inf", np.inf)]


@pytest.mark.parametrize("case, rate", DREAMER_RATE_CASES,
                         ids=[c[0] for c in DREAMER_RATE_CASES])
def test_dreamer_sampling_rate_field_is_checked(dreamer, tmp_path, case, rate):
    path = _variant(tmp_path / "d.mat", dreamer[1], EEG_SamplingRate=rate)
    with pytest.raises(ValueError) as err:
        load_dreamer(path, baseline=None, last_s=None)
    msg = str(err.value)
    assert str(path) in msg and "DREAMER.EEG_SamplingRate" in msg, msg


COUNT_CASES = [("subjects_stated_5", {"noOfSubjects": 5.0}, "DREAMER.noOfSubjects = 5"),
               ("clips_stated_7", {"noOfVideoSequences": 7.0},
                "DREAMER.noOfVideoSequences = 7"),
               ("subjects_stated_text", {"noOfSubjects": "many"}, "DREAMER.noOfSubjects")]


@pytest.mark.parametrize("case, change, needle", COUNT_CASES, ids=[c[0] for c in COUNT_CASES])
def test_dreamer_stated_counts_are_checked(dreamer, tmp_path, case, change, needle):
    path = _variant(tmp_path / "d.mat", dreamer[1], **change)
    with pytest.raises(ValueError) as err:
        load_dreamer(path, last_s=None)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_dreamer_sampling_rate_field_not_a_number(dreamer, tmp_path):
    path = _variant(tmp_path / "d.mat", dreamer[1], EEG_SamplingRate=np.array([128.0, 128.0]))
    with pytest.raises(ValueError, match=r"field DREAMER.EEG_SamplingRate expected one number"):
        load_dreamer(path, last_s=None)


def test_dreamer_real_layout_rate_checked_against_61_s(tmp_path):
    """A file without the simulation's EEG_BaselineSeconds is held to DREAMER's documented
    61-s baselines (7808 samples at 128 Hz): 128 Hz loads, 256 Hz is refused."""
    rec = simulate_dreamer(n_subjects=1, n_clips=2, stim_seconds=2, baseline_seconds=61,
                           random_state=0)
    sim_path = write_dreamer_mat(tmp_path / "sim.mat", rec)
    real = _variant(tmp_path / "real.mat", sim_path, drop=("EEG_BaselineSeconds",),
                    Version="1.0.2")
    assert load_dreamer(real, last_s=None, baseline=None).X.shape == (4, 14, 128)
    bad = _variant(tmp_path / "bad.mat", real, EEG_SamplingRate=256.0)
    with pytest.raises(ValueError, match=r"EEG_SamplingRate = 256 Hz .*7808 samples\) last "
                                         r"30.5 s.*expected EEG_SamplingRate = 128 Hz"):
        load_dreamer(bad, last_s=None, baseline=None)


DREAMER_ARG_CASES = [
    ("last_s_negative", {"last_s": -5}, "last_s"),
    ("last_s_zero", {"last_s": 0}, "last_s"),
    ("last_s_nan", {"last_s": float("nan")}, "last_s"),
    ("last_s_inf", {"last_s": float("inf")}, "last_s"),
    ("binary_threshold_10", {"binary_threshold": 10}, "binary_threshold"),
    ("binary_threshold_1", {"binary_threshold": 1}, "binary_threshold"),
    ("binary_threshold_nan", {"binary_threshold": float("nan")}, "binary_threshold"),
    ("binary_threshold_text", {"binary_threshold": "3"}, "binary_threshold"),
    ("window_s_inf", {"window_s": float("inf")}, "window_s"),
    ("window_s_negative", {"window_s": -1.0}, "window_s"),
    ("sfreq_nan", {"sfreq": float("nan")}, "sfreq"),
    ("sfreq_zero", {"sfreq": 0}, "sfreq"),
    ("overlap_one", {"overlap": 1.0}, "overlap"),
    ("subject_out_of_range", {"subjects": [5]}, "subjects"),
    ("subject_text", {"subjects": ["a"]}, "subjects"),
    ("subject_nan", {"subjects": [float("nan")]}, "subjects"),
    ("subject_half", {"subjects": [0.5]}, "subjects"),
]


@pytest.mark.parametrize("case, kwargs, field", DREAMER_ARG_CASES,
                         ids=[c[0] for c in DREAMER_ARG_CASES])
def test_dreamer_bad_arguments_name_the_argument(dreamer, case, kwargs, field):
    kwargs = {"last_s": None, **kwargs}
    with pytest.raises(ValueError, match=rf"^{field}: "):
        load_dreamer(dreamer[1], **kwargs)


# --------------------------------------------------------------------------------------
# NIfTI betas
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nifti_files(tmp_path_factory):
    base = tmp_path_factory.mktemp("nifti_bad")
    rng = np.random.default_rng(0)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = np.zeros((6, 7, 5), np.uint8)
    mask[1:5, 2:6, 1:4] = 1
    files = {
        "betas": nib.Nifti1Image(rng.standard_normal((6, 7, 5, 8)).astype(np.float32), aff),
        "betas_int": nib.Nifti1Image(rng.integers(-5, 5, (6, 7, 5, 8)).astype(np.int16), aff),
        "mask": nib.Nifti1Image(mask, aff),
        "roi": nib.Nifti1Image((mask * 2).astype(np.int16), aff),
        "ncsnr": nib.Nifti1Image(rng.random((6, 7, 5)).astype(np.float32), aff),
    }
    out = {}
    for name, img in files.items():
        out[name] = base / f"{name}.nii.gz"
        nib.save(img, out[name])
    return out


NIFTI_CASES = [
    ("beta_truncated", "betas", truncate),
    ("beta_garbage", "betas", garbage),
    ("beta_int_truncated_data", "betas_int", lambda p: truncate(p, 0.7)),
    ("mask_truncated", "mask", truncate),
    ("mask_empty", "mask", empty),
    ("roi_garbage", "roi", garbage),
    ("ncsnr_truncated", "ncsnr", truncate),
]


@pytest.mark.parametrize("case, which, damage", NIFTI_CASES, ids=[c[0] for c in NIFTI_CASES])
def test_nifti_damaged_file_is_named(nifti_files, tmp_path, case, which, damage):
    files = {k: Path(shutil.copy(v, tmp_path / v.name)) for k, v in nifti_files.items()}
    damage(files[which])
    beta = files["betas_int"] if which == "betas_int" else files["betas"]
    with pytest.raises(CorruptFileError) as err:
        load_nifti_betas(beta, files["mask"], roi_img=files["roi"], ncsnr_img=files["ncsnr"])
    assert str(files[which]) in str(err.value) and "NIfTI" in str(err.value)


def _other_grid(files, tmp_path):
    img = nib.load(files["betas"])
    path = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), shift(img.affine.copy())), path)
    return {"beta_imgs": path}


NIFTI_ARG_CASES = [
    ("no_images", lambda f, t: {"beta_imgs": []}, "beta_imgs"),
    ("beta_other_grid", _other_grid, "shifted.nii.gz"),
    ("beta_other_grid_says_mm", _other_grid, "differ by up to 3 mm"),
    ("beta_not_an_image", lambda f, t: {"beta_imgs": [3]}, "beta_imgs[0]"),
    ("mask_4d", lambda f, t: {"mask_img": f["betas"]}, "mask_img"),
    ("events_wrong_rows", lambda f, t: {"events": pd.DataFrame(
        {"stim_id": [1, 2]})}, "events"),
    ("events_no_column", lambda f, t: {"events": pd.DataFrame(
        {"x": range(8)})}, "stim_id"),
    ("events_not_ints", lambda f, t: {"events": pd.DataFrame(
        {"stim_id": [0.5] * 8})}, "stim_id"),
    ("roi_labels_alone", lambda f, t: {"roi_labels": {1: "V1"}}, "roi_labels"),
    ("missing_path", lambda f, t: {"ncsnr_img": t / "nope.nii.gz"}, "ncsnr_img"),
]


@pytest.mark.parametrize("case, change, needle", NIFTI_ARG_CASES,
                         ids=[c[0] for c in NIFTI_ARG_CASES])
def test_nifti_bad_arguments_are_named(nifti_files, tmp_path, case, change, needle):
    kwargs = {"beta_imgs": nifti_files["betas"], "mask_img": nifti_files["mask"],
              **change(nifti_files, tmp_path)}
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        load_nifti_betas(**kwargs)
    assert needle in str(err.value), str(err.value)


# --------------------------------------------------------------------------------------
# EEG files through MNE
# --------------------------------------------------------------------------------------
SFREQ, CH = 100.0, ["Fz", "Cz", "Pz"]


def _signal(n=1400):
    return np.random.default_rng(0).standard_normal((len(CH), n)) * 20e-6


# rest [1, 4) s, BAD segment [4.5, 7.5), task [8, 11), and a zero-length "blink" marker
ANNOT = ([1.0, 4.5, 8.0, 12.0], [3.0, 3.0, 3.0, 0.0], ["rest", "BAD_seg", "task", "blink"])


def _fif(path: Path) -> Path:
    raw = mne.io.RawArray(_signal(), mne.create_info(CH, SFREQ, "eeg"), verbose=False)
    raw.set_annotations(mne.Annotations(*ANNOT))
    raw.save(path, verbose=False)
    return path


def _brainvision(folder: Path) -> Path:
    """A BrainVision recording written by hand (Brain Products' text header + marker file,
    float32 multiplexed data), with the same markers as comments."""
    data = _signal()
    res_uv = 0.1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rec.eeg").write_bytes((data.T * 1e6 / res_uv).astype("<f4").tobytes())
    chans = "\n".join(f"Ch{i + 1}={c},,{res_uv},µV" for i, c in enumerate(CH))
    (folder / "rec.vhdr").write_text(textwrap.dedent(f"""\
        Brain Vision Data Exchange Header File Version 1.0

        [Common Infos]
        Codepage=UTF-8
        DataFile=rec.eeg
        MarkerFile=rec.vmrk
        DataFormat=BINARY
        DataOrientation=MULTIPLEXED
        NumberOfChannels={len(CH)}
        SamplingInterval={int(1e6 / SFREQ)}

        [Binary Infos]
        BinaryFormat=IEEE_FLOAT_32

        [Channel Infos]
        """) + chans + "\n", encoding="utf-8")
    marks = ["Mk1=New Segment,,1,1,0"]
    for i, (on, dur, desc) in enumerate(zip(*ANNOT)):
        marks.append(f"Mk{i + 2}=Comment,{desc},{int(on * SFREQ) + 1},{int(dur * SFREQ)},0")
    (folder / "rec.vmrk").write_text(textwrap.dedent("""\
        Brain Vision Data Exchange Marker File, Version 1.0

        [Common Infos]
        Codepage=UTF-8
        DataFile=rec.eeg

        [Marker Infos]
        """) + "\n".join(marks) + "\n", encoding="utf-8")
    return folder / "rec.vhdr"


def test_brainvision_comment_markers_give_the_fif_classes(tmp_path):
    fif = _fif(tmp_path / "rec_raw.fif")
    vhdr = _brainvision(tmp_path / "bv")
    raw = mne.io.read_raw_brainvision(vhdr, verbose=False)
    assert "Comment/BAD_seg" in set(raw.annotations.description)  # what MNE gives
    a, ca = load_eeg(fif, return_event_id=True)
    b, cb = load_eeg(vhdr, return_event_id=True)
    # rest and task give 3 windows each; BAD_seg and the zero-length blink take no class
    assert ca == cb == {"rest": 0, "task": 1}
    assert len(a) == len(b) == 6
    np.testing.assert_array_equal(a.labels["event"], b.labels["event"])
    np.testing.assert_allclose(a.X, b.X, rtol=1e-5, atol=1e-9)


def test_zero_length_annotation_is_an_event_in_event_mode(tmp_path):
    fif = _fif(tmp_path / "rec_raw.fif")
    ds, classes = load_eeg(fif, tmin=0.0, tmax=0.5, return_event_id=True)
    assert classes == {"blink": 0, "rest": 1, "task": 2}
    assert len(ds) == 3


def test_normalise_description():
    assert normalise_description(" Comment/rest ") == "rest"
    assert normalise_description("Stimulus/S  1") == "Stimulus/S  1"


def _eeg_case_files(tmp_path: Path) -> dict[str, Path]:
    fif = _fif(tmp_path / "rec_raw.fif")
    bad_fif = Path(shutil.copy(fif, tmp_path / "cut_raw.fif"))
    truncate(bad_fif, 0.3)
    edf = tmp_path / "junk.edf"
    garbage(edf)
    dream = tmp_path / "DREAMER.mat"
    scipy.io.savemat(dream, {"DREAMER": {"x": 1}})
    other = tmp_path / "data.mat"
    scipy.io.savemat(other, {"x": 1})
    return {"fif": fif, "cut": bad_fif, "edf": edf, "dreamer": dream, "mat": other}


EEG_CASES = [
    ("fif_truncated", "cut", {}, CorruptFileError, "cut_raw.fif"),
    ("edf_garbage", "edf", {}, CorruptFileError, "junk.edf"),
    ("dreamer_mat", "dreamer", {}, ValueError, "load_dreamer"),
    ("other_mat", "mat", {}, ValueError, "MATLAB .mat"),
    ("window_inf", "fif", {"window_s": float("inf")}, ValueError, "window_s"),
    ("sfreq_nan", "fif", {"sfreq": float("nan")}, ValueError, "sfreq"),
    ("l_freq_negative", "fif", {"l_freq": -1.0}, ValueError, "l_freq"),
    ("h_freq_below_l_freq", "fif", {"l_freq": 10.0, "h_freq": 5.0}, ValueError, "h_freq"),
    ("h_freq_text", "fif", {"h_freq": "40"}, ValueError, "h_freq"),
    ("overlap_nan", "fif", {"overlap": float("nan")}, ValueError, "overlap"),
    ("event_id_only_zero_length", "fif", {"event_id": {"blink": 1}}, ValueError,
     "zero-length"),
    ("event_id_bad_segment", "fif", {"event_id": {"BAD_seg": 1}}, ValueError, "BAD"),
    ("event_id_unknown", "fif", {"event_id": {"angry": 1}}, ValueError, "angry"),
    ("tmin_without_tmax", "fif", {"tmin": 0.0}, ValueError, "tmin, tmax"),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # MNE warns before it fails
@pytest.mark.parametrize("case, which, kwargs, exc, needle", EEG_CASES,
                         ids=[c[0] for c in EEG_CASES])
def test_eeg_bad_input_is_named(tmp_path, case, which, kwargs, exc, needle):
    files = _eeg_case_files(tmp_path)
    with pytest.raises(exc) as err:
        load_eeg(files[which], **kwargs)
    assert needle in str(err.value), str(err.value)
    if exc is CorruptFileError:
        assert str(files[which]) in str(err.value)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_damaged_recording_in_a_bids_folder_is_named(tmp_path):
    mne_bids = pytest.importorskip("mne_bids")
    from tests.data_loaders.test_eeg import write_edf

    write_edf(tmp_path / "rec.edf", _signal(n=1000) * 1e6, SFREQ, CH)
    raw = mne.io.read_raw_edf(tmp_path / "rec.edf", verbose=False)
    raw.set_annotations(mne.Annotations([1.0], [2.0], ["rest"]))
    bp = mne_bids.BIDSPath(subject="01", task="x", root=tmp_path / "bids", datatype="eeg")
    mne_bids.write_raw_bids(raw, bp, verbose=False)
    edf = next((tmp_path / "bids").rglob("*_eeg.edf"))
    truncate(edf, 0.2)
    with pytest.raises(CorruptFileError) as err:
        load_eeg(tmp_path / "bids")
    assert str(edf) in str(err.value), str(err.value)


# --------------------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------------------
def _eeg_ds() -> EEGDataset:
    rng = np.random.default_rng(0)
    return EEGDataset(X=rng.standard_normal((6, 2, 16)).astype(np.float32), sfreq=16.0,
                      ch_names=["Fz", "Cz"], labels={"y": np.array([0, 1, 0, 1, 0, 1])},
                      subject=np.array([0, 0, 1, 1, 2, 2]), trial=np.array([0, 1, 0, 1, 0, 1]))


SELECT_CASES = [
    ("subject_99", {"subject": 99}, "subject"),
    ("subject_list_one_missing", {"subject": [0, 7]}, "subject"),
    ("subject_empty_list", {"subject": []}, "subject"),
    ("trial_99", {"trial": 99}, "trial"),
    ("subject_float", {"subject": 0.5}, "subject"),
]


def test_eeg_negative_labels_are_refused():
    ds = _eeg_ds()
    with pytest.raises(ValueError, match=r"^labels\['y'\]: expected class indices >= 0"):
        EEGDataset(X=ds.X, sfreq=ds.sfreq, ch_names=ds.ch_names,
                   labels={"y": np.array([0, 1, -1, 1, 0, 1])}, subject=ds.subject,
                   trial=ds.trial)


@pytest.mark.parametrize("case, kwargs, field", SELECT_CASES, ids=[c[0] for c in SELECT_CASES])
def test_eeg_select_refuses_unknown_indices(case, kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        _eeg_ds().select(**kwargs)


# --------------------------------------------------------------------------------------
# npz, atomic writes, permissions
# --------------------------------------------------------------------------------------
NPZ_CASES = [("npz_truncated", truncate), ("npz_garbage", garbage), ("npz_empty", empty)]


@pytest.mark.parametrize("case, damage", NPZ_CASES, ids=[c[0] for c in NPZ_CASES])
def test_damaged_npz_is_named(tmp_path, case, damage):
    path = tmp_path / "c.npz"
    np.savez(path, a=np.arange(1000), b=np.ones(50))
    damage(path)
    with pytest.raises(CorruptFileError, match="NumPy .npz") as err:
        load_npz(path, ("a", "b"))
    assert err.value.path == path


def test_npz_missing_array_is_named(tmp_path):
    np.savez(tmp_path / "c.npz", a=np.arange(3))
    with pytest.raises(CorruptFileError, match=r"c.npz.*missing \['b'\]"):
        load_npz(tmp_path / "c.npz", ("a", "b"))


def test_damaged_simulation_record_is_named(tmp_path):
    from data_loaders.jobs.simulate_nsd import _check_same_params

    garbage(tmp_path / "SIMULATION.json")
    with pytest.raises(CorruptFileError, match="SIMULATION.json: cannot be read as the JSON"):
        _check_same_params(tmp_path, {"n_sessions": 1, "n_subjects": 1, "voxels": [1]})


def test_damaged_truth_npz_is_named(tmp_path):
    (tmp_path / "simulation").mkdir()
    garbage(tmp_path / "simulation" / "truth.npz")
    with pytest.raises(CorruptFileError, match="truth.npz"):
        load_truth(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_keep_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "plain.txt", "w") as fh:  # what the user's tools would make
            fh.write("x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f.json").write_text("{}")
        assert default_file_mode() == 0o666 & ~umask
    finally:
        os.umask(old)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "plain.txt") == 0o666 & ~umask
    assert mode(tmp_path / "folder" / "f.json") == 0o666 & ~umask
    assert mode(tmp_path / "folder") == 0o777 & ~umask


def test_simulated_root_keeps_the_umask(tmp_path):
    from data_loaders.simulate import fmri

    sim = fmri.simulate_nsd(n_subjects=1, n_sessions=1, trials_per_session=30, n_shared=5,
                            n_subject_images=20, image_size=16, voxels=(50, 60),
                            random_state=0, verbose=False)
    old = os.umask(0o027)
    try:
        root, _ = fmri.write_simulation(tmp_path / "root", sim=sim)
    finally:
        os.umask(old)
    assert root.stat().st_mode & 0o777 == 0o750  # not mkdtemp's 0o700
    assert nsd_paths(root)["expdesign"].stat().st_mode & 0o777 == 0o640


def test_atomic_path_failure_leaves_the_old_file(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_dir_failure_leaves_the_old_folder_whole(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text('{"v": 1}')
        (tmp / "weights.bin").write_bytes(b"1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "config.json").write_text('{"v": 2}')
        raise RuntimeError("killed before the weights")
    assert json.loads((target / "config.json").read_text()) == {"v": 1}
    assert (target / "weights.bin").read_bytes() == b"1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_pair_survives_sigkill(tmp_path):
    """A writer replacing a two-file folder in a loop is killed with SIGKILL at an arbitrary
    moment: the folder always holds a matching pair (both from one save)."""
    target = tmp_path / "model"
    code = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from data_loaders._io import atomic_dir
        i = 0
        while True:
            with atomic_dir({str(target)!r}) as tmp:
                (tmp / "config.json").write_text(str(i))
                np.save(tmp / "weights.npy", np.full(20000, i))
            i += 1
            if i == 3:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    i = int((target / "config.json").read_text())
    w = np.load(target / "weights.npy")
    assert i >= 2 and (w == i).all()
