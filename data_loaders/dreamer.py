"""Reader for DREAMER.mat (Katsigiannis & Ramzan 2018, IEEE JBHI 22(1):98-107).

The real file (Zenodo 546113, access on request) and the suite's simulation
(:func:`data_loaders.simulate.eeg.write_dreamer_mat`) share one structure, so one reader
serves both::

    DREAMER.Data{1, s}.EEG.stimuli{j, 1}   (T_j x 14) uV, 128 Hz
    DREAMER.Data{1, s}.EEG.baseline{j, 1}  (7808 x 14) uV (61 s)
    DREAMER.Data{1, s}.ScoreValence        (18 x 1) in 1..5 (also Arousal, Dominance)
    DREAMER.EEG_SamplingRate, DREAMER.EEG_Electrodes, noOfSubjects, noOfVideoSequences

Header fields are checked, not trusted: ``EEG_SamplingRate`` must be a finite rate > 0 that
makes every baseline last DREAMER's documented 61 s (7808 samples at 128 Hz; Katsigiannis &
Ramzan 2018 and the Zenodo readme). A simulated file states its own baseline length in the
extra field ``EEG_BaselineSeconds``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_loaders._io import reading
from data_loaders.schema import EEGDataset

DREAMER_CHANNELS: tuple[str, ...] = (
    "AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4",
)
_SCORE_FIELDS = {"valence": "ScoreValence", "arousal": "ScoreArousal",
                 "dominance": "ScoreDominance"}
_TOP_FIELDS = ("Data", "EEG_SamplingRate", "EEG_Electrodes")
BASELINES = ("zscore_mid10s", "subtract_mean", None)
#: Length of every ``EEG.baseline`` recording in DREAMER (7808 samples at 128 Hz).
DREAMER_BASELINE_S = 61.0


def _unwrap(x):
    """Strip the (1, 1) object / struct wrappers scipy.io.loadmat puts around MATLAB values."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    if isinstance(x, np.ndarray) and x.dtype.names is not None and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _field(struct, name: str, where: str):
    names = struct.dtype.names or ()
    if name not in names:
        raise ValueError(
            f"{where}: field {name!r} missing; this is not a DREAMER.mat "
            f"(fields present: {list(names)})"
        )
    return _unwrap(struct[name])


def _cells(x, where: str) -> list[np.ndarray]:
    x = _unwrap(x)
    if not (isinstance(x, np.ndarray) and x.dtype == object):
        raise ValueError(f"{where}: expected a cell array of (T x 14) arrays, got {type(x)}")
    return [np.asarray(_unwrap(c)) for c in x.reshape(-1)]


def _as_str(x) -> str:
    x = _unwrap(x)
    if isinstance(x, np.ndarray):
        x = x.reshape(-1)[0] if x.size else ""
    return str(x)


def score_to_label(scores: np.ndarray, binary_threshold: float | None = None) -> np.ndarray:
    """Map 1..5 self-ratings to class labels.

    ``binary_threshold=None`` gives 5 classes ``score - 1`` (HiSTN); a number ``t`` gives
    ``int(score >= t)`` (TorchEEG ``Binary(t)``; ``t = 3`` maps {1, 2} -> 0, {3, 4, 5} -> 1).
    """
    scores = np.asarray(scores)
    if binary_threshold is None:
        return (scores - 1).astype(np.int64)
    _check_threshold(binary_threshold)
    return (scores >= binary_threshold).astype(np.int64)


def _check_threshold(binary_threshold: float) -> None:
    # 1 < t <= 5: each class can occur on the 1..5 scale (t = 10 would make every label 0)
    ok = isinstance(binary_threshold, int | float | np.integer | np.floating) and not isinstance(
        binary_threshold, bool
    )
    if not ok or not (np.isfinite(binary_threshold) and 1 < binary_threshold <= 5):
        raise ValueError(
            f"binary_threshold: expected None or a number in (1, 5] on the 1..5 rating scale "
            f"(label = score >= threshold), got {binary_threshold!r}"
        )


def _positive_finite(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a finite number > 0{' or None' * allow_none}, "
                         f"got {value!r}")


def load_dreamer(
    path: str | os.PathLike,
    window_s: float = 1.0,
    overlap: float = 0.0,
    baseline: str | None = "zscore_mid10s",
    last_s: float | None = 60.0,
    targets: Sequence[str] = ("valence", "arousal", "dominance"),
    subjects: Sequence[int] | None = None,
    binary_threshold: float | None = None,
    sfreq: float | None = None,
    verbose: bool | str | None = None,
) -> EEGDataset:
    """Read DREAMER.mat into fixed-length windows.

    Parameters
    ----------
    path : path-like
        ``DREAMER.mat`` (real or :func:`~data_loaders.simulate.eeg.write_dreamer_mat`).
    window_s : float
        Window length in seconds (1 s = 128 samples, HiSTN and TorchEEG).
    overlap : float
        Fraction of a window shared with the next one, in [0, 1).
    baseline : {"zscore_mid10s", "subtract_mean", None}
        ``"zscore_mid10s"``: channel-wise z-score against the mean and std of the middle
        10 s of the trial's baseline recording (HiSTN ``split.m``); X is then
        dimensionless. ``"subtract_mean"``: subtract the mean 1-s baseline template
        (TorchEEG ``BaselineRemoval``), X in volts. ``None``: the clip mean is removed (the
        Emotiv DC offset of ~4200 uV) and X is in volts.
    last_s : float | None
        Keep the last ``last_s`` seconds of each stimulus (60 in HiSTN); ``None`` keeps
        the whole clip. A clip shorter than ``last_s`` raises ``ValueError``.
    targets : sequence of str
        Ratings to load among ``valence``, ``arousal``, ``dominance``.
    subjects : sequence of int | None
        0-based subject indices to read (default all).
    binary_threshold : float | None
        ``None``: 5 classes, label = score - 1. Else binary ``score >= binary_threshold``.
    sfreq : float | None
        Target sampling rate. ``None`` keeps the file's rate; another value resamples with
        :func:`scipy.signal.resample_poly` (polyphase, anti-aliased).
    verbose : bool | str | None
        Print a summary when truthy.

    Returns
    -------
    EEGDataset
        ``X`` float32 ``(n_windows, 14, n_times)`` in the DREAMER channel order (a file
        with another order is reordered by name), ``labels`` per target, ``subject`` and
        ``trial`` (0-based clip index); windows are in time order within each trial.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no DREAMER file at {path}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline: expected one of {BASELINES}, got {baseline!r}")
    _positive_finite("window_s", window_s)
    _positive_finite("last_s", last_s, allow_none=True)
    _positive_finite("sfreq", sfreq, allow_none=True)
    if binary_threshold is not None:
        _check_threshold(binary_threshold)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap: expected a fraction in [0, 1), got {overlap!r}")
    targets = [targets] if isinstance(targets, str) else list(targets)
    bad = [t for t in targets if t not in _SCORE_FIELDS]
    if bad or not targets:
        raise ValueError(f"targets: expected a subset of {list(_SCORE_FIELDS)}, got {targets!r}")

    with reading(path, "DREAMER.mat (a MATLAB v5 file with the struct 'DREAMER')"):
        try:
            mat = loadmat(str(path), verify_compressed_data_integrity=False)
        except NotImplementedError as err:  # MATLAB v7.3 (HDF5)
            raise ValueError(f"path: {path} is a MATLAB v7.3 file; save it with -v7") from err
    if "DREAMER" not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise ValueError(f"{path}: variable 'DREAMER' missing; this is not a DREAMER.mat "
                         f"(variables: {keys})")
    root = _unwrap(mat["DREAMER"])
    for name in _TOP_FIELDS:
        _field(root, name, "DREAMER")
    file_sfreq = _header_number(root, "EEG_SamplingRate", path)
    if not (np.isfinite(file_sfreq) and file_sfreq > 0):
        raise ValueError(f"{path}: field DREAMER.EEG_SamplingRate expected a sampling rate "
                         f"> 0 Hz (128 in DREAMER), got {file_sfreq!r}")
    names = root.dtype.names or ()
    if "EEG_BaselineSeconds" in names:  # a simulated file says how long its baselines are
        base_s = _header_number(root, "EEG_BaselineSeconds", path)
    elif "Version" in names and _as_str(root["Version"]).startswith("simulated"):
        base_s = None  # an older simulation: its baseline length is not stated
    else:
        base_s = DREAMER_BASELINE_S
    electrodes = [_as_str(e) for e in np.asarray(_field(root, "EEG_Electrodes", "DREAMER")
                                                 ).reshape(-1)]
    missing = [c for c in DREAMER_CHANNELS if c not in electrodes]
    if missing:
        raise ValueError(f"DREAMER.EEG_Electrodes: channels {missing} missing; got {electrodes}")
    order = np.array([electrodes.index(c) for c in DREAMER_CHANNELS])

    out_sfreq = file_sfreq if sfreq is None else float(sfreq)
    data = np.asarray(_field(root, "Data", "DREAMER"), dtype=object).reshape(-1)
    n_subjects = data.size
    n_clips = None
    if "noOfSubjects" in names:  # the counts the header states must be what the file holds
        stated = _header_number(root, "noOfSubjects", path)
        if stated != n_subjects:
            raise ValueError(f"{path}: field DREAMER.noOfSubjects = {stated:g}, but "
                             f"DREAMER.Data holds {n_subjects} subjects; the file is truncated "
                             "or was edited")
    if "noOfVideoSequences" in names:
        n_clips = _header_number(root, "noOfVideoSequences", path)
    subj_ids = range(n_subjects) if subjects is None else list(subjects)
    for s in subj_ids:
        whole = (isinstance(s, int | np.integer) and not isinstance(s, bool)) or (
            isinstance(s, float | np.floating) and float(s).is_integer())
        if not (whole and 0 <= s < n_subjects):
            raise ValueError(f"subjects: expected indices in 0..{n_subjects - 1}, got {s!r}")
    subj_ids = [int(s) for s in subj_ids]

    n_win = int(round(window_s * out_sfreq))
    step = max(1, int(round(n_win * (1 - overlap))))
    Xs, labels, subj_col, trial_col = [], {t: [] for t in targets}, [], []
    for s in subj_ids:
        rec = _unwrap(data[s])
        where = f"DREAMER.Data{{{s + 1}}}"
        eeg = _field(rec, "EEG", where)
        stim = _cells(_field(eeg, "stimuli", where + ".EEG"), where + ".EEG.stimuli")
        base = _cells(_field(eeg, "baseline", where + ".EEG"), where + ".EEG.baseline")
        for cells, what in ((stim, "stimuli"), (base, "baseline")):
            if n_clips is not None and len(cells) != n_clips:
                raise ValueError(f"{path}: {where}.EEG.{what} holds {len(cells)} clips, but "
                                 f"field DREAMER.noOfVideoSequences = {n_clips:g}")
        scores = {}
        for t in targets:
            sc = np.asarray(_field(rec, _SCORE_FIELDS[t], where), dtype=float).reshape(-1)
            if sc.size != len(stim):
                raise ValueError(f"{where}.{_SCORE_FIELDS[t]}: expected {len(stim)} scores "
                                 f"(one per clip), got {sc.size}")
            bad = [int(v) if v == int(v) else float(v)
                   for v in np.unique(sc[~np.isin(sc, [1, 2, 3, 4, 5])])[:5]]
            if bad:
                raise ValueError(f"{where}.{_SCORE_FIELDS[t]}: expected integer scores in "
                                 f"1..5, got {bad}")
            scores[t] = sc.astype(int)
        for j, (x, b) in enumerate(zip(stim, base)):
            w = f"{where}.EEG.stimuli{{{j + 1}}}"
            for arr, name in ((x, w), (b, f"{where}.EEG.baseline{{{j + 1}}}")):
                if arr.ndim != 2 or arr.shape[1] != len(electrodes):
                    raise ValueError(f"{name}: expected (T, {len(electrodes)}) samples x "
                                     f"channels, got shape {arr.shape}")
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name}: {int((~np.isfinite(arr)).sum())} NaN/inf "
                                     "samples; expected finite microvolts")
            if base_s is not None:
                _check_baseline_length(b.shape[0], file_sfreq, base_s, path,
                                       f"{where}.EEG.baseline{{{j + 1}}}")
            x = x[:, order].astype(np.float64).T
            b = b[:, order].astype(np.float64).T
            if out_sfreq != file_sfreq:
                x, b = _resample(x, file_sfreq, out_sfreq), _resample(b, file_sfreq, out_sfreq)
            if last_s is not None:
                n_keep = int(round(last_s * out_sfreq))
                if x.shape[1] < n_keep:
                    raise ValueError(f"{w}: {x.shape[1] / out_sfreq:g} s long, shorter than "
                                     f"last_s={last_s}; pass a smaller last_s or None")
                x = x[:, -n_keep:]
            x = _normalise(x, b, baseline, out_sfreq, f"{where}.EEG.baseline{{{j + 1}}}")
            n = (x.shape[1] - n_win) // step + 1
            if n < 1:
                continue
            idx = np.arange(n)[:, None] * step + np.arange(n_win)[None]
            Xs.append(x[:, idx].transpose(1, 0, 2).astype(np.float32))
            for t in targets:
                labels[t].append(np.full(n, scores[t][j]))
            subj_col.append(np.full(n, s))
            trial_col.append(np.full(n, j))
    if not Xs:
        raise ValueError(f"window_s: {window_s} s is longer than every clip in {path}")
    ds = EEGDataset(
        X=np.concatenate(Xs), sfreq=out_sfreq, ch_names=list(DREAMER_CHANNELS),
        labels={t: score_to_label(np.concatenate(v), binary_threshold)
                for t, v in labels.items()},
        subject=np.concatenate(subj_col), trial=np.concatenate(trial_col),
    )
    if verbose:
        print(f"load_dreamer: {ds!r} from {path.name}")
    return ds


def _header_number(root, name: str, path: Path) -> float:
    """A scalar header field of the file, as float; anything else names the field."""
    value = np.asarray(_field(root, name, "DREAMER"))
    try:
        if value.size != 1:
            raise TypeError(f"{value.size} values")
        return float(value.reshape(-1)[0])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: field DREAMER.{name} expected one number, got "
                         f"{value.dtype} of shape {value.shape} ({err})") from None


def _check_baseline_length(n: int, sfreq: float, base_s: float, path: Path, where: str) -> None:
    """The declared rate must make the baseline last its documented length (one sample)."""
    if abs(n - base_s * sfreq) > 1.0:
        raise ValueError(
            f"{path}: field DREAMER.EEG_SamplingRate = {sfreq:g} Hz makes {where} ({n} "
            f"samples) last {n / sfreq:g} s, but its baselines last {base_s:g} s (DREAMER: 61 s "
            f"= 7808 samples at 128 Hz); expected EEG_SamplingRate = {n / base_s:g} Hz for "
            "these samples"
        )


def _resample(x: np.ndarray, f_in: float, f_out: float) -> np.ndarray:
    from fractions import Fraction

    from scipy.signal import resample_poly

    frac = Fraction(f_out / f_in).limit_denominator(1000)
    return resample_poly(x, frac.numerator, frac.denominator, axis=-1)


def _normalise(x: np.ndarray, b: np.ndarray, mode: str | None, sfreq: float,
               where: str) -> np.ndarray:
    """Baseline normalisation of one clip ``x`` (14, T) uV against its baseline ``b``."""
    if mode == "zscore_mid10s":
        half = int(round(5 * sfreq))
        mid = b.shape[1] // 2
        if b.shape[1] < 2 * half:
            raise ValueError(f"{where}: {b.shape[1] / sfreq:g} s long; baseline='zscore_mid10s'"
                             " needs at least 10 s")
        seg = b[:, mid - half:mid + half]
        sd = seg.std(axis=1, keepdims=True)
        if (sd == 0).any():
            raise ValueError(f"{where}: a flat channel (std 0) in the middle 10 s; cannot z-score")
        return (x - seg.mean(axis=1, keepdims=True)) / sd
    if mode == "subtract_mean":
        n = int(round(sfreq))
        k = b.shape[1] // n
        if k < 1:
            raise ValueError(f"{where}: shorter than 1 s; baseline='subtract_mean' needs 1 s")
        template = b[:, :k * n].reshape(b.shape[0], k, n).mean(axis=1)  # (14, n) uV
        reps = int(np.ceil(x.shape[1] / n))
        return (x - np.tile(template, reps)[:, :x.shape[1]]) * 1e-6
    return (x - x.mean(axis=1, keepdims=True)) * 1e-6
