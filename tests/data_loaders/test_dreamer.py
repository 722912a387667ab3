"""DREAMER.mat: simulate -> write_dreamer_mat -> scipy indexing of the real file ->
load_dreamer, checked against numpy re-computations; bad files; the simulation's effects
are learnable by an independent classifier and a label-shuffled control is not."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from scipy.signal import resample_poly, welch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from data_loaders.dreamer import DREAMER_CHANNELS, load_dreamer, score_to_label
from data_loaders.simulate.eeg import default_dreamer, simulate_dreamer, write_dreamer_mat


@pytest.fixture(scope="module")
def small():
    return simulate_dreamer(n_subjects=2, n_clips=3, stim_seconds=12, baseline_seconds=11,
                            random_state=1)


@pytest.fixture(scope="module")
def small_mat(small, tmp_path_factory):
    return write_dreamer_mat(tmp_path_factory.mktemp("dreamer") / "DREAMER.mat", small)


def test_mat_structure_as_public_loaders_index_it(small, small_mat):
    # TorchEEG / LibEER indexing of the real file (REFERENCES C 2.2), struct_as_record=True
    m = scipy.io.loadmat(small_mat, verify_compressed_data_integrity=False)
    D = m["DREAMER"][0, 0]
    assert len(D["Data"][0]) == 2
    subj = D["Data"][0, 1]
    stim = subj["EEG"][0, 0]["stimuli"][0, 0][2, 0]
    base = subj["EEG"][0, 0]["baseline"][0, 0][2, 0]
    assert stim.shape == (12 * 128, 14) and base.shape == (11 * 128, 14)
    np.testing.assert_array_equal(stim, small.stimuli[1][2])
    assert subj["ScoreValence"][0, 0][2, 0] == small.scores["valence"][1, 2]
    assert subj["ScoreArousal"][0, 0].shape == (3, 1)
    assert int(D["EEG_SamplingRate"][0, 0]) == 128
    # the other public style: squeeze_me + struct_as_record=False
    dr = scipy.io.loadmat(small_mat, squeeze_me=True, struct_as_record=False)["DREAMER"]
    assert dr.noOfSubjects == 2 and dr.noOfVideoSequences == 3
    assert list(dr.EEG_Electrodes) == list(DREAMER_CHANNELS)
    assert dr.Data[0].EEG.baseline[1].shape == (11 * 128, 14)
    # Emotiv DC offset in microvolts, as in the real recordings
    assert 3800 < stim.mean() < 4600


def test_load_windows_and_baselines_match_numpy(small, small_mat):
    ds = load_dreamer(small_mat, baseline=None, last_s=None)
    assert ds.X.shape == (2 * 3 * 12, 14, 128) and ds.X.dtype == np.float32
    x = small.stimuli[1][2].astype(float).T                         # (14, T) uV
    want = (x - x.mean(1, keepdims=True)) * 1e-6
    sel = np.flatnonzero((ds.subject == 1) & (ds.trial == 2))
    np.testing.assert_allclose(ds.X[sel[4]], want[:, 4 * 128:5 * 128], rtol=1e-4, atol=1e-10)

    # HiSTN split.m: z-score on the baseline's middle 10 s, 1-based samples
    # n/2 - 640 + 1 ... n/2 + 640, keeping the last 10 s of the stimulus
    ds = load_dreamer(small_mat, baseline="zscore_mid10s", last_s=10)
    b = small.baseline[0][1].astype(float)
    n = b.shape[0]
    seg = b[n // 2 - 640: n // 2 + 640]
    x = small.stimuli[0][1].astype(float)[-1280:]
    z = ((x - seg.mean(0)) / seg.std(0)).T
    sel = np.flatnonzero((ds.subject == 0) & (ds.trial == 1))
    assert sel.size == 10
    np.testing.assert_allclose(ds.X[sel[-1]], z[:, -128:], rtol=1e-4, atol=1e-5)

    # TorchEEG BaselineRemoval: subtract the mean of the 1-s baseline chunks
    ds = load_dreamer(small_mat, baseline="subtract_mean", last_s=None, window_s=0.5,
                      overlap=0.5)
    template = b[:11 * 128].reshape(11, 128, 14).mean(0)
    want = (small.stimuli[0][1].astype(float)[:128] - template).T * 1e-6
    sel = np.flatnonzero((ds.subject == 0) & (ds.trial == 1))
    np.testing.assert_allclose(ds.X[sel[0]], want[:, :64], rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(ds.X[sel[1]], want[:, 32:96], rtol=1e-4, atol=1e-10)


def test_labels(small, small_mat):
    ds = load_dreamer(small_mat, last_s=2, targets=("valence", "arousal"))
    assert sorted(ds.labels) == ["arousal", "valence"]
    first = np.flatnonzero((ds.subject == 1) & (ds.trial == 0))[0]
    assert ds.labels["valence"][first] == small.scores["valence"][1, 0] - 1
    np.testing.assert_array_equal(score_to_label([1, 2, 3, 4, 5], 3), [0, 0, 1, 1, 1])
    bds = load_dreamer(small_mat, last_s=2, targets="arousal", binary_threshold=3.0)
    np.testing.assert_array_equal(bds.labels["arousal"], (ds.labels["arousal"] >= 2))


def _write_variant(path, small, **changes):
    """Write the small recording with one part of the structure changed."""
    m = scipy.io.loadmat(write_dreamer_mat(path, small), squeeze_me=False)
    D = m["DREAMER"][0, 0]
    fields = {k: D[k] for k in D.dtype.names}
    for k, v in changes.items():
        if v is None:
            fields.pop(k)
        else:
            fields[k] = v
    scipy.io.savemat(path, {"DREAMER": fields})
    return path


def test_bad_files(small, small_mat, tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dreamer(tmp_path / "nope.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"X": np.zeros(3)})
    with pytest.raises(ValueError, match="variable 'DREAMER' missing"):
        load_dreamer(tmp_path / "other.mat")
    p = _write_variant(tmp_path / "a.mat", small, EEG_Electrodes=None)
    with pytest.raises(ValueError, match="field 'EEG_Electrodes' missing"):
        load_dreamer(p)
    el = np.empty((1, 14), dtype=object)
    el[0, :] = ["XX"] + list(DREAMER_CHANNELS[1:])
    p = _write_variant(tmp_path / "b.mat", small, EEG_Electrodes=el)
    with pytest.raises(ValueError, match=r"channels \['AF3'\] missing"):
        load_dreamer(p)
    with pytest.raises(ValueError, match="baseline"):
        load_dreamer(small_mat, baseline="zscore")
    with pytest.raises(ValueError, match="last_s=60"):
        load_dreamer(small_mat, last_s=60)
    with pytest.raises(ValueError, match="targets"):
        load_dreamer(small_mat, targets=("joy",))


def test_nan_and_scores_out_of_range(small, tmp_path):
    import copy

    bad = copy.deepcopy(small)
    bad.stimuli[1][0][5, 3] = np.nan
    p = write_dreamer_mat(tmp_path / "nan.mat", bad)
    with pytest.raises(ValueError, match=r"Data\{2\}.EEG.stimuli\{1\}: 1 NaN"):
        load_dreamer(p, last_s=None)
    bad = copy.deepcopy(small)
    bad.scores["arousal"][0, 2] = 7
    p = write_dreamer_mat(tmp_path / "score.mat", bad)
    with pytest.raises(ValueError, match=r"ScoreArousal: expected integer scores in 1..5, "
                       r"got \[7\]"):
        load_dreamer(p, last_s=None)


def test_channel_order_and_sampling_rate(small, small_mat, tmp_path):
    import copy

    perm = np.random.default_rng(0).permutation(14)
    shuffled = copy.deepcopy(small)
    shuffled.ch_names = [DREAMER_CHANNELS[i] for i in perm]
    for s in range(2):
        for c in range(3):
            shuffled.stimuli[s][c] = small.stimuli[s][c][:, perm]
            shuffled.baseline[s][c] = small.baseline[s][c][:, perm]
    p = write_dreamer_mat(tmp_path / "perm.mat", shuffled)
    a, b = load_dreamer(small_mat, last_s=None), load_dreamer(p, last_s=None)
    np.testing.assert_array_equal(a.X, b.X)

    # sfreq: resampled with a polyphase filter, like scipy's resample_poly on the clip
    ds = load_dreamer(small_mat, last_s=None, baseline=None, sfreq=64, window_s=1.0)
    x = small.stimuli[0][0].astype(float).T
    want = resample_poly(x, 1, 2, axis=-1)
    want = (want - want.mean(1, keepdims=True)) * 1e-6
    assert ds.sfreq == 64 and ds.X.shape[2] == 64
    np.testing.assert_allclose(ds.X[1], want[:, 64:128], rtol=1e-4, atol=1e-10)


def test_default_dreamer_is_cached(tmp_path):
    p1 = default_dreamer(tmp_path, n_subjects=1, n_clips=2, stim_seconds=3, baseline_seconds=10)
    mtime = p1.stat().st_mtime_ns
    p2 = default_dreamer(tmp_path, n_subjects=1, n_clips=2, stim_seconds=3, baseline_seconds=10)
    assert p1 == p2 and p2.stat().st_mtime_ns == mtime
    assert load_dreamer(p1, last_s=None).X.shape == (6, 14, 128)


def _log_band_power(ds):
    f, p = welch(ds.X, fs=ds.sfreq, nperseg=128, axis=-1)
    bands = [(4, 8), (8, 14), (14, 31), (31, 49)]
    return np.concatenate([np.log(p[..., (f >= lo) & (f < hi)].mean(-1)) for lo, hi in bands], 1)


def test_simulated_effects_are_learnable_and_shuffle_control_is_not(tmp_path):
    """Logistic regression on log band power, trial-grouped CV per subject, binary labels
    (valence score >= 3, arousal score >= 4: near the median of each, as the clips' mean
    arousal is ~3.2): well above chance (balanced accuracy) on the simulation, at chance
    when the clip ratings are shuffled across clips (same data, same trial structure)."""
    sim = simulate_dreamer(n_subjects=3, n_clips=30, stim_seconds=6, baseline_seconds=10,
                           random_state=3)
    ds = load_dreamer(write_dreamer_mat(tmp_path / "d.mat", sim), last_s=None)
    F = _log_band_power(ds)
    rng = np.random.default_rng(0)
    for target, threshold in (("valence", 3), ("arousal", 4)):
        y = (ds.labels[target] + 1 >= threshold).astype(int)
        real, shuffled = [], []
        for s in range(3):
            m = ds.subject == s
            groups = ds.trial[m]
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
            pred = cross_val_predict(clf, F[m], y[m], groups=groups, cv=GroupKFold(5))
            real.append(balanced_accuracy_score(y[m], pred))
            for _ in range(2):
                clip_labels = y[m][np.unique(groups, return_index=True)[1]]
                perm = rng.permutation(clip_labels)[groups]
                pred = cross_val_predict(clf, F[m], perm, groups=groups, cv=GroupKFold(5))
                shuffled.append(balanced_accuracy_score(perm, pred))
        assert np.mean(real) > 0.7, (target, real)
        assert abs(np.mean(shuffled) - 0.5) < 0.12, (target, shuffled)
