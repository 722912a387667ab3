"""Read any EEG recording MNE reads (EDF, BDF, BrainVision, FIF, EEGLAB, ...) or a BIDS
dataset (mne-bids) into an :class:`~data_loaders.schema.EEGDataset`.

Two ways to cut a continuous recording into labelled epochs:

- *windows* (default): fixed-length windows (``window_s``, ``overlap``) inside each
  annotation whose description is a label (a film clip, a task block, a sleep stage);
  windows not fully inside a labelled annotation are dropped. ``trial`` is the index of
  the annotation, so trial-grouped protocols work as for DREAMER.
- *events* (``tmin``/``tmax`` given): one epoch per event (annotation onset), from
  ``tmin`` to ``tmax`` seconds around it (``mne.Epochs(..., baseline=None)``).

Labels are class indices into the sorted label names (``event_id``), returned with
``return_event_id=True``. Data are in volts (MNE's unit for EEG).

Marker descriptions are normalised before use, so one recording gives the same classes in
every format: MNE reads a BrainVision comment marker as ``"Comment/<text>"`` where FIF and
EDF+ give ``"<text>"``; the ``Comment/`` prefix and surrounding blanks are removed. Then
``BAD*`` and ``EDGE*`` annotations (MNE's convention) are never labels, and in window mode
a label needs an annotation of non-zero length (a zero-length marker holds no window).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from data_loaders._io import reading
from data_loaders.schema import EEGDataset

_BIDS_EEG_EXT = (".vhdr", ".edf", ".bdf", ".set", ".fif")
# BrainVision marker types MNE prepends as "<type>/"; only free-text comments are stripped
# ("Stimulus/S  1" stays: it is a trigger code, not a label text)
_BV_PREFIXES = ("Comment/",)


def normalise_description(desc: str) -> str:
    """An annotation description as a label: without BrainVision's ``Comment/``, stripped.

    >>> normalise_description("Comment/rest ")
    'rest'
    """
    d = str(desc).strip()
    for prefix in _BV_PREFIXES:
        if d.startswith(prefix):
            d = d[len(prefix):].strip()
    return d


def _is_bad(desc: str) -> bool:
    return desc.upper().startswith(("BAD", "EDGE"))


def _read_raw(path_or_bids, subject, session, task, run, verbose):
    import mne

    path = Path(path_or_bids)
    if path.is_dir():
        import mne_bids

        ents = {}
        for name, val in (("subject", subject), ("session", session), ("task", task),
                          ("run", run)):
            if val is None:
                vals = mne_bids.get_entity_vals(path, name)
                if len(vals) > 1:
                    raise ValueError(f"{name}: the BIDS dataset {path} has several values "
                                     f"{vals}; pass {name}=...")
                val = vals[0] if vals else None
            ents[name] = val
        if ents["subject"] is None:
            raise ValueError(f"path_or_bids: {path} is a folder but holds no BIDS subject "
                             "(expected a BIDS root with sub-*/ folders)")
        bp = mne_bids.BIDSPath(root=path, datatype="eeg", suffix="eeg", **ents)
        matches = [m for m in bp.match() if m.extension in _BIDS_EEG_EXT]
        if not matches:
            raise FileNotFoundError(f"path_or_bids: no EEG recording matches {bp} in {path}")
        with reading(matches[0].fpath, "an EEG recording of a BIDS dataset (mne-bids)"):
            raw = mne_bids.read_raw_bids(matches[0], verbose=verbose)
        sid = ents["subject"]
        return raw, int(sid) if str(sid).isdigit() else 0
    if not path.exists():
        raise FileNotFoundError(f"path_or_bids: no file or folder at {path}")
    if path.suffix.lower() == ".mat":
        hint = (" For DREAMER.mat use data_loaders.dreamer.load_dreamer."
                if "dreamer" in path.name.lower() else
                " A DREAMER.mat goes to data_loaders.dreamer.load_dreamer; an EEGLAB dataset "
                "is the .set file.")
        raise ValueError(f"path_or_bids: {path} is a MATLAB .mat file, which load_eeg does not "
                         "read (expected a recording MNE reads: .edf, .bdf, .vhdr, .fif, .set, "
                         f"... or a BIDS folder).{hint}")
    with reading(path, "an EEG recording MNE reads (EDF, BDF, BrainVision, FIF, EEGLAB, ...)"):
        raw = mne.io.read_raw(path, preload=True, verbose=verbose)
    return raw, 0


def load_eeg(
    path_or_bids: str | os.PathLike,
    window_s: float = 1.0,
    overlap: float = 0.0,
    event_id: dict[str, int] | None = None,
    tmin: float | None = None,
    tmax: float | None = None,
    sfreq: float | None = None,
    l_freq: float | None = None,
    h_freq: float | None = None,
    label_name: str = "event",
    subject: str | None = None,
    session: str | None = None,
    task: str | None = None,
    run: str | None = None,
    return_event_id: bool = False,
    verbose: bool | str | None = None,
):
    """Read an EEG file or BIDS folder into labelled windows or event epochs.

    Parameters
    ----------
    path_or_bids : path-like
        A file for :func:`mne.io.read_raw` (``.edf``, ``.bdf``, ``.vhdr``, ``.fif``, ``.set``,
        ...) or a BIDS root folder (read with :func:`mne_bids.read_raw_bids`).
    window_s, overlap : float
        Window length (s) and the fraction shared by consecutive windows, in window mode.
    event_id : dict of str -> int | None
        Annotation descriptions to use as labels (default: every description not starting
        with ``"BAD"`` or ``"EDGE"``). Class indices follow the sorted names.
    tmin, tmax : float | None
        Give both for event mode: epochs from ``tmin`` to ``tmax`` s around each event.
    sfreq : float | None
        Resample to this rate (Hz) after reading.
    l_freq, h_freq : float | None
        Band-pass (``raw.filter``) before cutting; ``None`` skips either edge.
    label_name : str
        Key of the labels in the returned dataset.
    subject, session, task, run : str | None
        BIDS entities; needed only when the dataset holds several.
    return_event_id : bool
        Also return the ``{description: class index}`` mapping.
    verbose : bool | str | None
        MNE verbosity.

    Returns
    -------
    EEGDataset (and dict when ``return_event_id``)
        X float32 (n_epochs, n_eeg_channels, n_times) in volts, ``subject`` from the BIDS
        subject label (0 for a plain file), ``trial`` = annotation (event) index.
    """
    import mne

    if (tmin is None) != (tmax is None):
        raise ValueError(f"tmin, tmax: give both for event epochs or neither, got "
                         f"tmin={tmin!r}, tmax={tmax!r}")
    if tmin is not None and not tmax > tmin:
        raise ValueError(f"tmax: expected > tmin={tmin}, got {tmax!r}")
    if not (np.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s: expected finite seconds > 0, got {window_s!r}")
    for name, value in (("sfreq", sfreq), ("l_freq", l_freq), ("h_freq", h_freq)):
        ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool)
        if value is not None and not (ok and np.isfinite(value) and value > 0):
            raise ValueError(f"{name}: expected a finite frequency > 0 Hz or None, got "
                             f"{value!r}")
    if l_freq is not None and h_freq is not None and not l_freq < h_freq:
        raise ValueError(f"h_freq: expected > l_freq={l_freq} Hz, got {h_freq!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap: expected a fraction in [0, 1), got {overlap!r}")
    raw, subj = _read_raw(path_or_bids, subject, session, task, run, verbose)
    source = raw.filenames[0] if raw.filenames and raw.filenames[0] else path_or_bids
    with reading(source, "an EEG recording MNE reads (its samples)"):
        raw.load_data(verbose=verbose)  # a BIDS recording is read lazily: a cut file fails here
    if not any(t == "eeg" for t in raw.get_channel_types()):
        raise ValueError(f"path_or_bids: no EEG channel in {path_or_bids} "
                         f"(types: {sorted(set(raw.get_channel_types()))})")
    raw.pick("eeg")
    if l_freq is not None or h_freq is not None:
        raw.filter(l_freq, h_freq, verbose=verbose)
    if sfreq is not None and sfreq != raw.info["sfreq"]:
        raw.resample(sfreq, verbose=verbose)

    ann = raw.annotations
    labels = [normalise_description(d) for d in ann.description]
    window_mode = tmin is None
    # in window mode a zero-length marker holds no window: it must not take a class index
    usable = [not _is_bad(d) and (not window_mode or dur > 0)
              for d, dur in zip(labels, ann.duration)]
    descs = sorted({d for d, ok in zip(labels, usable) if ok})
    if event_id is None:
        names = descs
    else:
        wanted = {normalise_description(k) for k in event_id}
        unknown = [k for k in event_id if normalise_description(k) not in set(labels)]
        if unknown:
            raise ValueError(f"event_id: {unknown} not among the annotations {descs}")
        bad = sorted(k for k in wanted if k not in descs)
        if bad:
            why = ("BAD/EDGE segments are never labels" if all(_is_bad(k) for k in bad) else
                   "they mark only zero-length annotations, which hold no window (use "
                   "tmin/tmax for event epochs)")
            raise ValueError(f"event_id: {bad} cannot be labels here: {why}")
        names = sorted(wanted)
    if not names:
        raise ValueError(f"path_or_bids: {path_or_bids} has no label annotations "
                         "(expected annotations or events to use as labels)")
    classes = {n: i for i, n in enumerate(names)}
    fs = raw.info["sfreq"]
    data = raw.get_data()
    Xs, ys, trials = [], [], []
    t0 = raw.first_samp / fs if ann.orig_time is not None else 0.0
    if tmin is None:
        n_win = int(round(window_s * fs))
        step = max(1, int(round(n_win * (1 - overlap))))
        for k, (onset, dur, desc) in enumerate(zip(ann.onset, ann.duration, labels)):
            if desc not in classes or dur <= 0:
                continue
            a = int(round((onset - t0) * fs))
            b = min(int(round((onset - t0 + dur) * fs)), data.shape[1])
            starts = np.arange(max(a, 0), b - n_win + 1, step)
            for s in starts:
                Xs.append(data[:, s:s + n_win])
                ys.append(classes[desc])
                trials.append(k)
    else:
        keep = [i for i, d in enumerate(labels) if d in classes]
        events = np.array([[int(round((ann.onset[i] - t0) * fs)) + raw.first_samp, 0,
                            classes[labels[i]] + 1] for i in keep], dtype=int)
        epochs = mne.Epochs(raw, events, tmin=tmin, tmax=tmax, baseline=None, preload=True,
                            event_repeated="drop", reject_by_annotation=False, verbose=verbose)
        kept = np.asarray(keep)[epochs.selection]
        Xs = list(epochs.get_data(copy=False))
        ys = (epochs.events[:, 2] - 1).tolist()
        trials = kept.tolist()
    if not Xs:
        raise ValueError(f"window_s: no window of {window_s} s fits inside a labelled "
                         f"annotation of {path_or_bids}")
    X = np.stack(Xs).astype(np.float32)
    ds = EEGDataset(X=X, sfreq=fs, ch_names=list(raw.ch_names),
                    labels={label_name: np.asarray(ys, dtype=np.int64)},
                    subject=np.full(len(X), subj), trial=np.asarray(trials, dtype=np.int64))
    return (ds, classes) if return_event_id else ds
