"""load_eeg on files made on the fly: FIF (mne), EDF (written here byte by byte from the EDF
spec, Kemp et al. 1992) and a BIDS folder (mne-bids); windows checked against the arrays."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from data_loaders.eeg import load_eeg

SFREQ = 100.0
CH = ["Fz", "Cz", "Pz"]


def _signal(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((len(CH), n)) * 20e-6  # volts


def _raw(data):
    raw = mne.io.RawArray(data, mne.create_info(CH, SFREQ, "eeg"), verbose=False)
    raw.set_annotations(mne.Annotations([1.0, 5.0, 8.5], [3.0, 3.2, 2.0],
                                        ["happy", "sad", "happy"]))
    return raw


def write_edf(path, data_uv, sfreq, ch_names):
    """Minimal EDF (not EDF+) writer following the 1992 spec: 1-s records, int16 samples."""
    n_ch, n = data_uv.shape
    spr = int(sfreq)
    n_rec = n // spr
    pmin, pmax, dmin, dmax = -3276.8, 3276.7, -32768, 32767
    f = lambda s, w: str(s).ljust(w)[:w].encode("ascii")  # noqa: E731
    hdr = (f("0", 8) + f("X X X X", 80) + f("Startdate X X X X", 80) + f("01.01.20", 8)
           + f("00.00.00", 8) + f(256 * (n_ch + 1), 8) + f("", 44) + f(n_rec, 8) + f("1", 8)
           + f(n_ch, 4))
    for field, w in (("label", 16), ("tt", 80), ("dim", 8), ("pmin", 8), ("pmax", 8),
                     ("dmin", 8), ("dmax", 8), ("pf", 80), ("ns", 8), ("res", 32)):
        vals = {"label": ch_names, "tt": [""] * n_ch, "dim": ["uV"] * n_ch,
                "pmin": [pmin] * n_ch, "pmax": [pmax] * n_ch, "dmin": [dmin] * n_ch,
                "dmax": [dmax] * n_ch, "pf": [""] * n_ch, "ns": [spr] * n_ch,
                "res": [""] * n_ch}[field]
        hdr += b"".join(f(v, w) for v in vals)
    digital = np.round((data_uv - pmin) / (pmax - pmin) * (dmax - dmin) + dmin)
    digital = np.clip(digital, dmin, dmax).astype("<i2")
    body = b"".join(digital[:, r * spr:(r + 1) * spr].tobytes() for r in range(n_rec))
    path.write_bytes(hdr + body)
    return (digital.astype(float) - dmin) / (dmax - dmin) * (pmax - pmin) + pmin


def test_fif_windows_match_annotations(tmp_path):
    data = _signal()
    _raw(data).save(tmp_path / "rec_raw.fif", verbose=False)
    ds, classes = load_eeg(tmp_path / "rec_raw.fif", window_s=1.0, return_event_id=True)
    assert classes == {"happy": 0, "sad": 1}
    # annotation 1: [1, 4) s -> 3 windows; 2: [5, 8.2) -> 3; 3: [8.5, 10.5) -> 2
    assert ds.X.shape == (8, 3, 100)
    np.testing.assert_array_equal(ds.labels["event"], [0, 0, 0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(ds.trial, [0, 0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_allclose(ds.X[0], data[:, 100:200], rtol=1e-6)
    np.testing.assert_allclose(ds.X[6], data[:, 850:950], rtol=1e-6)
    # 50 % overlap: starts every 0.5 s
    ds2 = load_eeg(tmp_path / "rec_raw.fif", window_s=1.0, overlap=0.5)
    np.testing.assert_allclose(ds2.X[1], data[:, 150:250], rtol=1e-6)


def test_fif_event_epochs(tmp_path):
    data = _signal()
    _raw(data).save(tmp_path / "rec_raw.fif", verbose=False)
    ds = load_eeg(tmp_path / "rec_raw.fif", tmin=-0.2, tmax=0.5, event_id={"sad": 2, "happy": 1})
    assert ds.X.shape == (3, 3, 71)
    np.testing.assert_array_equal(ds.labels["event"], [0, 1, 0])
    np.testing.assert_allclose(ds.X[1], data[:, 480:551], rtol=1e-6)


def test_edf_written_by_hand(tmp_path):
    data_uv = _signal(n=1000) * 1e6
    expected_uv = write_edf(tmp_path / "rec.edf", data_uv, SFREQ, CH)
    raw = mne.io.read_raw_edf(tmp_path / "rec.edf", verbose=False)
    raw.set_annotations(mne.Annotations([2.0], [3.0], ["calm"]))
    raw.load_data(verbose=False).save(tmp_path / "ann_raw.fif", verbose=False)
    # the reader on the bare EDF: no annotations -> a clear error
    with pytest.raises(ValueError, match="no label annotations"):
        load_eeg(tmp_path / "rec.edf")
    ds = load_eeg(tmp_path / "ann_raw.fif")
    assert ds.X.shape == (3, 3, 100)
    np.testing.assert_allclose(ds.X[0], expected_uv[:, 200:300] * 1e-6, atol=1e-9)


def test_bids_folder(tmp_path):
    mne_bids = pytest.importorskip("mne_bids")
    data_uv = _signal(n=1000) * 1e6
    expected_uv = write_edf(tmp_path / "rec.edf", data_uv, SFREQ, CH)
    raw = mne.io.read_raw_edf(tmp_path / "rec.edf", verbose=False)
    raw.set_annotations(mne.Annotations([1.0, 6.0], [2.0, 2.0], ["happy", "sad"]))
    bp = mne_bids.BIDSPath(subject="07", task="emotion", root=tmp_path / "bids", datatype="eeg")
    mne_bids.write_raw_bids(raw, bp, verbose=False)
    ds = load_eeg(tmp_path / "bids")
    assert ds.X.shape == (4, 3, 100)
    np.testing.assert_array_equal(ds.labels["event"], [0, 0, 1, 1])
    np.testing.assert_array_equal(ds.subject, 7)
    np.testing.assert_allclose(ds.X[2], expected_uv[:, 600:700] * 1e-6, atol=1e-9)


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="path_or_bids"):
        load_eeg(tmp_path / "missing.fif")
    _raw(_signal()).save(tmp_path / "rec_raw.fif", verbose=False)
    with pytest.raises(ValueError, match="tmin, tmax"):
        load_eeg(tmp_path / "rec_raw.fif", tmin=0.0)
    with pytest.raises(ValueError, match="event_id.*'angry'"):
        load_eeg(tmp_path / "rec_raw.fif", event_id={"angry": 1})
    with pytest.raises(ValueError, match="overlap"):
        load_eeg(tmp_path / "rec_raw.fif", overlap=1.0)
    with pytest.raises(ValueError, match="no window of 5"):
        load_eeg(tmp_path / "rec_raw.fif", window_s=5.0)
