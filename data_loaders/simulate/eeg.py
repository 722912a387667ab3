"""A simulated DREAMER: 14-channel Emotiv EEG with learnable emotion effects.

The simulation has the shape, channel layout, units and file structure of DREAMER
(Katsigiannis & Ramzan 2018, IEEE JBHI 22(1):98-107): per subject and film clip, a
resting baseline and a stimulus recording, ``(T, 14)`` in microvolts at 128 Hz with the
Emotiv DC offset (about 4200 uV), and integer self-ratings 1..5 of valence, arousal and
dominance.

What a model can learn from it (the *effects*) and what it must ignore (the *nuisance*):

- Valence: frontal alpha asymmetry (Davidson 1992; Coan & Allen 2004). The log amplitude
  of alpha on the four right-frontal channels (AF4, F8, F4, FC6) rises with valence and
  falls on their left mirrors (AF3, F7, F3, FC5):
  ``log a_alpha[ch] += +/- k_v[s] * w_pair[s, ch] * (v - 3) / 2``.
- Arousal: beta and gamma power rise with arousal (Ray & Cole 1985; Zheng & Lu 2015),
  most on temporal and frontal sites, and posterior alpha is blocked:
  ``log a_{beta,gamma}[ch] += k_a[s] * m[ch] * (a - 3) / 2``,
  ``log a_alpha[ch] -= 0.3 k_a[s] * (a - 3) / 2``.
- Both gains ``k_v[s], k_a[s]`` and the frontal pair weights ``w_pair[s]`` vary across
  subjects (log-normal / Dirichlet), so a cross-subject model must generalise.
- Nuisance: a 1/f^chi background (chi per subject), theta / alpha / beta / gamma rhythms
  at subject-specific peak frequencies, slow log-normal fluctuations of every rhythm
  (so single 1-s windows are noisy), per-trial electrode gains (shared by the trial's
  baseline and stimulus, removed by baseline normalisation), per-trial band-power offsets
  unrelated to the ratings (a "fingerprint" that lets a within-trial split leak), eye
  blinks on the frontal channels, sensor noise and a slow DC drift.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DREAMER_CHANNELS: tuple[str, ...] = (
    "AF3", "F7", "F3", "FC5", "T7", "P7", "O1", "O2", "P8", "T8", "FC6", "F4", "F8", "AF4",
)
DREAMER_SFREQ = 128.0

# Mean per-clip ratings of the 18 DREAMER clips (secondary source, REFERENCES C 2.2).
CLIP_MEAN_VALENCE = np.array([3.17, 3.04, 4.57, 2.04, 3.22, 2.70, 4.52, 1.35, 1.39, 2.17, 3.96,
                              3.96, 4.39, 2.35, 2.48, 3.65, 1.52, 2.65])
CLIP_MEAN_AROUSAL = np.array([2.26, 3.00, 3.83, 4.26, 3.70, 3.83, 3.17, 3.96, 3.00, 3.30, 1.96,
                              2.61, 3.70, 2.22, 3.09, 3.35, 3.00, 3.91])

# Left-frontal channels and their right mirrors (indices in DREAMER order).
_LEFT_FRONTAL = np.array([0, 1, 2, 3])      # AF3 F7 F3 FC5
_RIGHT_FRONTAL = np.array([13, 12, 11, 10])  # AF4 F8 F4 FC6
# Spatial profiles (DREAMER order): alpha strongest posterior, theta frontal, gamma temporal.
_ALPHA_MAP = np.array([.5, .4, .5, .5, .6, 1., 1.2, 1.2, 1., .6, .5, .5, .4, .5])
_THETA_MAP = np.array([1., .8, 1., .9, .6, .5, .4, .4, .5, .6, .9, 1., .8, 1.])
_BETA_MAP = np.array([.8, .9, .8, .8, 1., .7, .6, .6, .7, 1., .8, .8, .9, .8])
_GAMMA_MAP = np.array([.7, 1., .6, .8, 1.3, .7, .5, .5, .7, 1.3, .8, .6, 1., .7])
# Arousal weight per channel for beta / gamma (temporal and frontal most).
_AROUSAL_MAP = np.array([.8, 1., .7, .8, 1.2, .6, .4, .4, .6, 1.2, .8, .7, 1., .8])
# Blink propagation from the eyes (AF3/AF4 strongest).
_BLINK_MAP = np.array([1., .7, .45, .2, .08, .02, .01, .01, .02, .08, .2, .45, .7, 1.])


@dataclass
class SimulatedDreamer:
    """A DREAMER-like recording held in memory (what :func:`write_dreamer_mat` writes).

    Attributes
    ----------
    stimuli, baseline : list of list of ndarray
        ``[subject][clip]`` arrays of shape ``(T, 14)``, microvolts, as in DREAMER.mat.
    scores : dict of str -> ndarray
        ``valence``, ``arousal``, ``dominance``: int arrays ``(n_subjects, n_clips)`` in 1..5.
    sfreq : float
        Sampling rate in Hz (128).
    ch_names : list of str
        The 14 Emotiv channels in DREAMER order.
    truth : dict
        Generative parameters (per-subject effect gains ``k_valence``, ``k_arousal``, the
        frontal pair weights and the rhythm peak frequencies), for tests and reports.
    """

    stimuli: list[list[np.ndarray]]
    baseline: list[list[np.ndarray]]
    scores: dict[str, np.ndarray]
    sfreq: float = DREAMER_SFREQ
    ch_names: list[str] = field(default_factory=lambda: list(DREAMER_CHANNELS))
    truth: dict = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        return len(self.stimuli)

    @property
    def n_clips(self) -> int:
        return len(self.stimuli[0])


def _shaped_noise(rng: np.random.Generator, n: int, n_times: int, sfreq: float,
                  amp_spectrum) -> np.ndarray:
    """Gaussian noise ``(n, n_times)`` with the given amplitude spectrum, unit variance rows."""
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    spec = rng.standard_normal((n, freqs.size)) + 1j * rng.standard_normal((n, freqs.size))
    spec *= amp_spectrum(freqs)
    x = np.fft.irfft(spec, n=n_times, axis=-1)
    x /= x.std(axis=-1, keepdims=True) + 1e-12
    return x


def _peak(f0: float, bw: float):
    return lambda f: np.exp(-0.5 * ((f - f0) / bw) ** 2)


def _slow_log_envelope(rng, n, n_times, sfreq, sigma, cutoff_hz=0.25):
    """Log-amplitude fluctuation: low-pass noise, std ``sigma`` (makes 1-s windows noisy)."""
    return sigma * _shaped_noise(rng, n, n_times, sfreq,
                                 lambda f: (f > 0) * np.exp(-0.5 * (f / cutoff_hz) ** 2))


def _blinks(rng, n_times, sfreq, rate_hz):
    """Blink waveform ``(n_times,)`` in uV: Poisson onsets, 100-200 uV, ~300 ms."""
    out = np.zeros(n_times)
    n_blinks = rng.poisson(rate_hz * n_times / sfreq)
    t = np.arange(n_times) / sfreq
    for onset in rng.uniform(0, n_times / sfreq, n_blinks):
        width = rng.uniform(0.06, 0.1)
        out += rng.uniform(100, 200) * np.exp(-0.5 * ((t - onset - 0.15) / width) ** 2)
    return out


def _simulate_segment(rng, subj: dict, n_times: int, sfreq: float, u_val: float, u_aro: float,
                      gains: np.ndarray, trial_offsets: np.ndarray | None) -> np.ndarray:
    """One recording ``(n_times, 14)`` in uV for one subject at centred ratings u in [-1, 1]."""
    n_ch = len(DREAMER_CHANNELS)
    chi = subj["chi"]
    bg = _shaped_noise(rng, n_ch, n_times, sfreq,
                       lambda f: np.where(f > 0, np.maximum(f, 0.5) ** (-chi / 2), 0.0))
    x = subj["bg_amp"][:, None] * bg

    # Log amplitude of each rhythm: subject map + emotion effect + trial offset.
    log_amp = {b: np.log(subj["amp"][b] * subj["maps"][b]) for b in ("theta", "alpha",
                                                                        "beta", "gamma")}
    asym = subj["k_valence"] * subj["pair_w"] * u_val / 2
    log_amp["alpha"][_LEFT_FRONTAL] -= asym
    log_amp["alpha"][_RIGHT_FRONTAL] += asym
    log_amp["alpha"] -= 0.3 * subj["k_arousal"] * u_aro / 2
    for b in ("beta", "gamma"):
        log_amp[b] += subj["k_arousal"] * _AROUSAL_MAP * u_aro / 2
    if trial_offsets is not None:
        for i, b in enumerate(("theta", "alpha", "beta", "gamma")):
            log_amp[b] += trial_offsets[i]

    for b in ("theta", "alpha", "beta", "gamma"):
        f0, bw = subj["peaks"][b]
        osc = _shaped_noise(rng, n_ch, n_times, sfreq, _peak(f0, bw))
        env = _slow_log_envelope(rng, 1, n_times, sfreq, subj["env_sigma"])
        env = env + _slow_log_envelope(rng, n_ch, n_times, sfreq, 0.5 * subj["env_sigma"])
        x += np.exp(log_amp[b][:, None] + env) * osc

    x *= gains[:, None]
    x += 2.0 * rng.standard_normal((n_ch, n_times))                  # sensor noise
    x += _BLINK_MAP[:, None] * _blinks(rng, n_times, sfreq, subj["blink_rate"])[None]
    drift = np.cumsum(rng.standard_normal((n_ch, n_times)), axis=1) * 0.05
    x += subj["dc"][:, None] + drift
    return x.T


def _draw_scores(rng, n_subjects, n_clips):
    idx = np.arange(n_clips) % CLIP_MEAN_VALENCE.size
    val = np.rint(CLIP_MEAN_VALENCE[idx] + rng.normal(0, 0.8, (n_subjects, n_clips)))
    aro = np.rint(CLIP_MEAN_AROUSAL[idx] + rng.normal(0, 0.8, (n_subjects, n_clips)))
    val, aro = np.clip(val, 1, 5), np.clip(aro, 1, 5)
    dom = np.clip(np.rint(3 + 0.5 * (val - 3) + rng.normal(0, 0.8, val.shape)), 1, 5)
    return {"valence": val.astype(int), "arousal": aro.astype(int), "dominance": dom.astype(int)}


def simulate_dreamer(n_subjects: int = 23, n_clips: int = 18, stim_seconds: float = 65.0,
                     baseline_seconds: float = 61.0, valence_effect: float = 1.5,
                     arousal_effect: float = 1.5, trial_nuisance: float = 0.2,
                     random_state: int | None = 0, dtype=np.float32) -> SimulatedDreamer:
    """Simulate DREAMER-like EEG with emotion effects a model can learn.

    Parameters
    ----------
    n_subjects, n_clips : int
        23 and 18 in DREAMER.
    stim_seconds : float
        Length of every stimulus recording, seconds (DREAMER clips last 65-393 s; the
        HiSTN protocol keeps the last 60 s).
    baseline_seconds : float
        Length of every baseline recording, seconds (61 s = 7808 samples in DREAMER).
    valence_effect, arousal_effect : float
        Mean log-amplitude change per half score range (``(score - 3) / 2`` from -1 to 1)
        of frontal alpha asymmetry and of beta/gamma power; per-subject gains are drawn
        log-normally around it. 0 removes the effect (a null simulation).
    trial_nuisance : float
        Std of per-trial log-amplitude offsets of each rhythm and channel, unrelated to
        the ratings.
    random_state : int | None
        Seed.
    dtype : numpy dtype
        Of the arrays (float32 halves the file; DREAMER.mat stores float64).

    Returns
    -------
    SimulatedDreamer
    """
    for name, val in (("n_subjects", n_subjects), ("n_clips", n_clips)):
        if int(val) != val or val < 1:
            raise ValueError(f"{name}: expected a positive integer, got {val!r}")
    for name, val in (("stim_seconds", stim_seconds), ("baseline_seconds", baseline_seconds)):
        if not val > 1.0:
            raise ValueError(f"{name}: expected a duration > 1 s, got {val!r}")
    rng = np.random.default_rng(random_state)
    sfreq = DREAMER_SFREQ
    n_stim, n_base = int(round(stim_seconds * sfreq)), int(round(baseline_seconds * sfreq))
    scores = _draw_scores(rng, n_subjects, n_clips)
    n_ch = len(DREAMER_CHANNELS)

    stimuli, baselines, truth = [], [], {"k_valence": [], "k_arousal": [], "pair_w": [],
                                         "alpha_peak_hz": [], "chi": []}
    for s in range(n_subjects):
        jitter = lambda: np.exp(rng.normal(0, 0.2, n_ch))  # noqa: E731
        subj = {
            "chi": rng.uniform(1.0, 2.0),
            "bg_amp": rng.uniform(8, 14) * jitter(),
            "amp": {"theta": rng.uniform(3, 6), "alpha": rng.uniform(6, 12),
                    "beta": rng.uniform(2, 4), "gamma": rng.uniform(1, 2.5)},
            "maps": {"theta": _THETA_MAP * jitter(), "alpha": _ALPHA_MAP * jitter(),
                     "beta": _BETA_MAP * jitter(), "gamma": _GAMMA_MAP * jitter()},
            "peaks": {"theta": (rng.uniform(5, 7), 1.0),
                      "alpha": (float(np.clip(rng.normal(10, 1), 8, 12.5)), 1.0),
                      "beta": (rng.uniform(17, 24), 3.0), "gamma": (rng.uniform(33, 42), 5.0)},
            "k_valence": valence_effect * np.exp(rng.normal(0, 0.3)),
            "k_arousal": arousal_effect * np.exp(rng.normal(0, 0.3)),
            "pair_w": 4 * rng.dirichlet(np.full(4, 3.0)),
            "env_sigma": rng.uniform(0.25, 0.4),
            "blink_rate": rng.uniform(0.1, 0.4),
            "dc": rng.normal(4200, 60, n_ch),
        }
        for key in ("k_valence", "k_arousal", "pair_w", "chi"):
            truth[key].append(subj[key])
        truth["alpha_peak_hz"].append(subj["peaks"]["alpha"][0])
        stim_s, base_s = [], []
        for c in range(n_clips):
            gains = np.exp(rng.normal(0, 0.15, n_ch))
            offsets = rng.normal(0, trial_nuisance, (4, n_ch))
            u_val = (scores["valence"][s, c] - 3) / 2
            u_aro = (scores["arousal"][s, c] - 3) / 2
            base_s.append(_simulate_segment(rng, subj, n_base, sfreq, 0.0, 0.0, gains,
                                            None).astype(dtype))
            stim_s.append(_simulate_segment(rng, subj, n_stim, sfreq, u_val, u_aro, gains,
                                            offsets).astype(dtype))
        stimuli.append(stim_s)
        baselines.append(base_s)
    truth = {k: np.asarray(v) for k, v in truth.items()}
    return SimulatedDreamer(stimuli=stimuli, baseline=baselines, scores=scores, sfreq=sfreq,
                            truth=truth)


def _cell(items) -> np.ndarray:
    """A MATLAB column cell array ``{n x 1}``."""
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_dreamer_mat(path: str | os.PathLike, recording: SimulatedDreamer | None = None,
                      **simulate_kwargs) -> Path:
    """Write a recording in the structure of the real ``DREAMER.mat`` (MATLAB v5).

    ``DREAMER.Data`` is a 1 x n_subjects cell of structs with ``Age``, ``Gender``,
    ``EEG.baseline`` / ``EEG.stimuli`` (n_clips x 1 cells of ``(T, 14)`` uV arrays),
    ``ECG.baseline`` / ``ECG.stimuli`` (empty ``(0, 2)`` arrays: ECG is not simulated) and
    ``ScoreValence`` / ``ScoreArousal`` / ``ScoreDominance`` (n_clips x 1); at the top
    level ``EEG_SamplingRate``, ``ECG_SamplingRate``, ``EEG_Electrodes`` (1 x 14 cell),
    ``noOfSubjects``, ``noOfVideoSequences``, ``Disclaimer``, ``Provider``, ``Version``,
    ``Acknowledgement`` (REFERENCES C 2.2), plus ``EEG_BaselineSeconds`` (the simulated
    baseline length, which the real file does not need: its baselines are all 61 s). The
    file is written atomically.

    Parameters
    ----------
    path : path-like
        Target ``.mat`` file.
    recording : SimulatedDreamer | None
        What to write; ``None`` simulates one with ``simulate_kwargs``.

    Returns
    -------
    Path
    """
    from scipy.io import savemat

    from data_loaders._io import atomic_path

    if recording is None:
        recording = simulate_dreamer(**simulate_kwargs)
    elif simulate_kwargs:
        raise ValueError(f"simulate_kwargs: given with a recording, got {sorted(simulate_kwargs)}")
    rng = np.random.default_rng(0)
    data = np.empty((1, recording.n_subjects), dtype=object)
    for s in range(recording.n_subjects):
        empty_ecg = _cell([np.zeros((0, 2)) for _ in range(recording.n_clips)])
        data[0, s] = {
            "Age": float(rng.integers(22, 34)),
            "Gender": "male" if s % 2 else "female",
            "EEG": {"baseline": _cell(recording.baseline[s]),
                    "stimuli": _cell(recording.stimuli[s])},
            "ECG": {"baseline": empty_ecg, "stimuli": empty_ecg},
            "ScoreValence": recording.scores["valence"][s].reshape(-1, 1).astype(float),
            "ScoreArousal": recording.scores["arousal"][s].reshape(-1, 1).astype(float),
            "ScoreDominance": recording.scores["dominance"][s].reshape(-1, 1).astype(float),
        }
    electrodes = np.empty((1, len(recording.ch_names)), dtype=object)
    electrodes[0, :] = list(recording.ch_names)
    dreamer = {
        "Data": data,
        "EEG_SamplingRate": float(recording.sfreq),
        # not in the real file (its baselines are all 61 s): the reader checks the rate
        # against the baseline length, so a simulation states its own
        "EEG_BaselineSeconds": float(recording.baseline[0][0].shape[0] / recording.sfreq),
        "ECG_SamplingRate": 256.0,
        "EEG_Electrodes": electrodes,
        "noOfSubjects": float(recording.n_subjects),
        "noOfVideoSequences": float(recording.n_clips),
        "Disclaimer": "SIMULATED data (neurosuite data_loaders.simulate.eeg), not DREAMER.",
        "Provider": "neurosuite",
        "Version": "simulated-1",
        "Acknowledgement": "Structure of DREAMER v1.0.2 (Katsigiannis & Ramzan 2018).",
    }
    path = Path(path)
    with atomic_path(path, suffix=".mat") as tmp:
        savemat(str(tmp), {"DREAMER": dreamer}, do_compression=False, oned_as="column")
    return path


def default_dreamer(data_home: str | os.PathLike | None = None, *, n_subjects: int = 23,
                    n_clips: int = 18, stim_seconds: float = 30.0,
                    baseline_seconds: float = 12.0, random_state: int = 0,
                    **simulate_kwargs) -> Path:
    """Path of the embedded simulated ``DREAMER.mat``, written once into the data cache.

    The file is keyed by its parameters (``DREAMER_sim_<hash>.mat`` in
    :func:`data_loaders.cache.data_home`), so later calls reuse it. The defaults are
    lighter than the real recording (30-s clips, 12-s baselines, float32) to keep the file
    near 125 MB and its generation to seconds; pass ``stim_seconds=65,
    baseline_seconds=61`` for the real lengths.

    Returns
    -------
    Path
        The ``.mat`` file, readable with :func:`data_loaders.dreamer.load_dreamer`.
    """
    from data_loaders.cache import data_home as _data_home

    params = {"n_subjects": n_subjects, "n_clips": n_clips, "stim_seconds": stim_seconds,
              "baseline_seconds": baseline_seconds, "random_state": random_state,
              **simulate_kwargs, "_version": 1}
    key = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    path = _data_home(data_home) / f"DREAMER_sim_{key[:10]}.mat"
    if not path.is_file():
        params.pop("_version")
        write_dreamer_mat(path, **params)
    return path
