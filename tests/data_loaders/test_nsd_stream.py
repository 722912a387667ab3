"""The one-pass gzip reader of ``load_nsd``'s .nii.gz betas, against nibabel's ``get_fdata``.

It inflates the file once (ISA-L when ``isal`` is installed, else zlib) and gathers the
selected voxels a block of trials at a time; nibabel's whole-volume read, masked, is the
reference, to the last bit (psc = int16 / 300 in float64, then float32).
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

import data_loaders.nsd as nsd
from data_loaders._io import CorruptFileError


def _session(tmp_path, shape=(9, 11, 7, 23), slope=None, seed=0):
    rng = np.random.default_rng(seed)
    vol = rng.integers(-900, 900, shape, dtype=np.int16)
    img = nib.Nifti1Image(vol, np.eye(4))
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    path = tmp_path / "betas_session01.nii.gz"
    nib.save(img, path)
    roi = rng.random(shape[:3]) < 0.3
    return path, roi


def _read(path, roi, n_trials):
    out = np.empty((n_trials, int(roi.sum())), np.float32)
    nsd._SessionReader(path, np.nonzero(roi)).read(out)
    return out


def _reference(path, roi):
    return (nib.load(path).get_fdata()[roi].T / nsd.BETA_SCALE).astype(np.float32)


@pytest.mark.parametrize("block_bytes", [2**10, 3 * 9 * 11 * 7 * 2, 2**26])
def test_stream_reader_equals_get_fdata(tmp_path, monkeypatch, block_bytes):
    # blocks of 1 volume, of 3 volumes (23 trials: a short last block) and of the whole file
    monkeypatch.setattr(nsd, "_READ_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(nsd, "_GZ_PIECE_BYTES", 1000)  # inflate in small pieces too
    path, roi = _session(tmp_path)
    np.testing.assert_array_equal(_read(path, roi, 23), _reference(path, roi))


def test_zlib_fallback_and_multi_member_gzip(tmp_path, monkeypatch):
    import zlib

    path, roi = _session(tmp_path, seed=1)
    ref = _reference(path, roi)
    monkeypatch.setattr(nsd, "_zlib", lambda: zlib)  # without isal
    np.testing.assert_array_equal(_read(path, roi, 23), ref)
    raw = gzip.decompress(path.read_bytes())  # the same bytes as two gzip members
    cut = len(raw) // 3
    path.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]))
    np.testing.assert_array_equal(_read(path, roi, 23), ref)


def test_scaled_image_takes_nibabels_path(tmp_path):
    # a scl_slope other than 1 is nibabel's business (the proxy applies it)
    path, roi = _session(tmp_path, slope=2.0, seed=2)
    assert not nsd._plain_proxy(nib.load(path).dataobj)
    np.testing.assert_array_equal(_read(path, roi, 23), _reference(path, roi))


def test_cut_or_damaged_stream_is_named(tmp_path):
    path, roi = _session(tmp_path, seed=3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptFileError, match=r"betas_session01.nii.gz.*NIfTI.*ended after"):
        _read(path, roi, 23)
    bad = bytearray(data)
    bad[len(bad) // 2: len(bad) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(bad))
    with pytest.raises(CorruptFileError, match=r"betas_session01.nii.gz"):
        _read(path, roi, 23)
