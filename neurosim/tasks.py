"""Behavioural tasks that drive reservoirs and supply targets for readouts.

`WhatWhenTask` is the "what-and-when" prediction paradigm of Yamada & Chao (2025,
arXiv:2510.14382): a warning cue at t = 0, then stimulus k of K identities at latency
``tau_k`` (plus optional Gaussian jitter) with probability ``p_k``, or nothing at all with
probability ``1 - sum(p)``; trial after trial, in blocks whose latencies and/or
probabilities switch at change points. It is a foreperiod paradigm (a cue announces a target
after a variable delay), the family the Chao lab models with hazard functions.

Inputs are a tensor ``(n_trials, n_steps, 1 + K)``: channel 0 carries the cue pulse,
channel ``1 + k`` the pulse of identity k. Targets for readout k are a Gaussian bump centred
at the actual onset of identity k on the trials where it occurred (zero elsewhere), so that a
least-squares learner converges to the "prediction object" ``E[target_k(t)]``: a bump at
``tau_k`` whose amplitude is the probability of k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["WhatWhenTask", "WhatWhenTrials", "sample_blocks"]


@dataclass
class WhatWhenTrials:
    """A batch of sampled trials of a `WhatWhenTask`.

    Attributes
    ----------
    inputs : torch.Tensor, float32, shape (n_trials, n_steps, 1 + K)
        Channel 0 is the cue, channel ``1 + k`` identity k (pulse amplitude in input units).
    targets : torch.Tensor, float32, shape (n_trials, n_steps, K)
        Gaussian bump (peak 1) at the actual onset of the identity that occurred.
    identity : np.ndarray of int, shape (n_trials,)
        The identity that occurred, or -1 for a trial without stimulus.
    onset_ms : np.ndarray of float, shape (n_trials,)
        Its onset time after the cue (ms), NaN when nothing occurred.
    block : np.ndarray of int, shape (n_trials,)
        Index of the block (segment between change points) each trial belongs to.
    dt_ms : float
        Time step (ms).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    identity: np.ndarray
    onset_ms: np.ndarray
    block: np.ndarray
    dt_ms: float

    @property
    def n_trials(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def t_ms(self) -> np.ndarray:
        """Time of each step after the cue (ms), shape (n_steps,)."""
        return np.arange(self.n_steps) * self.dt_ms

    @property
    def occurred(self) -> torch.Tensor:
        """Bool tensor (n_trials, K): identity k occurred on the trial."""
        k = self.targets.shape[2]
        ids = torch.as_tensor(self.identity)
        return ids[:, None] == torch.arange(k)[None, :]

    def __getitem__(self, index) -> WhatWhenTrials:
        """Sub-select trials (a slice or an index array)."""
        idx = np.arange(self.n_trials)[index]
        t_idx = torch.as_tensor(np.atleast_1d(idx))
        return WhatWhenTrials(
            inputs=self.inputs[t_idx],
            targets=self.targets[t_idx],
            identity=self.identity[idx].reshape(-1),
            onset_ms=self.onset_ms[idx].reshape(-1),
            block=self.block[idx].reshape(-1),
            dt_ms=self.dt_ms,
        )


@dataclass
class WhatWhenTask:
    """The what-and-when prediction paradigm (Yamada & Chao 2025).

    Parameters
    ----------
    latencies_ms : sequence of float, length K
        Mean cue-to-stimulus latency ``tau_k`` of each identity (ms). Each must lie in
        ``(cue_ms, trial_ms - stim_ms]``.
    probabilities : sequence of float, length K
        Probability ``p_k`` that identity k occurs on a trial; each in [0, 1] and
        ``sum(p) <= 1`` (the rest is the probability of an empty trial).
    trial_ms : float
        Trial length after the cue (ms).
    dt_ms : float
        Time step (ms), the same as the reservoir's.
    jitter_ms : float
        Standard deviation of the Gaussian jitter of the onset (ms); onsets are clipped into
        the trial.
    cue_ms, stim_ms : float
        Duration of the cue and stimulus pulses (ms).
    cue_amplitude, stim_amplitude : float
        Pulse heights on the input channels (input units; the reservoir scales them).
    target_width_ms : float
        Standard deviation ``sigma`` of the Gaussian target bump (ms).

    Examples
    --------
    >>> task = WhatWhenTask(latencies_ms=[150, 350], probabilities=[0.3, 0.6])
    >>> trials = task.sample(20, seed=0)
    >>> trials.inputs.shape, trials.targets.shape
    (torch.Size([20, 500, 3]), torch.Size([20, 500, 2]))
    """

    latencies_ms: Sequence[float]
    probabilities: Sequence[float]
    trial_ms: float = 500.0
    dt_ms: float = 1.0
    jitter_ms: float = 0.0
    cue_ms: float = 20.0
    stim_ms: float = 20.0
    cue_amplitude: float = 1.0
    stim_amplitude: float = 1.0
    target_width_ms: float = 10.0
    _lat: np.ndarray = field(init=False, repr=False)
    _p: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lat = np.asarray(self.latencies_ms, dtype=float).reshape(-1)
        p = np.asarray(self.probabilities, dtype=float).reshape(-1)
        for name, val in [
            ("trial_ms", self.trial_ms),
            ("dt_ms", self.dt_ms),
            ("cue_ms", self.cue_ms),
            ("stim_ms", self.stim_ms),
            ("target_width_ms", self.target_width_ms),
        ]:
            if not (math.isfinite(val) and val > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {val!r}")
        if not (math.isfinite(self.jitter_ms) and self.jitter_ms >= 0):
            raise ValueError(f"jitter_ms: expected a finite number >= 0, got {self.jitter_ms!r}")
        for name in ("cue_amplitude", "stim_amplitude"):
            val = getattr(self, name)
            if not math.isfinite(val):
                raise ValueError(f"{name}: expected a finite number, got {val!r}")
        if lat.size == 0:
            raise ValueError("latencies_ms: expected at least one latency, got an empty list")
        if p.shape != lat.shape:
            raise ValueError(
                f"probabilities: expected one per identity ({lat.size}, like latencies_ms), "
                f"got {p.size}"
            )
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise ValueError(f"probabilities: expected values in [0, 1], got {p.tolist()}")
        if p.sum() > 1 + 1e-9:
            raise ValueError(
                f"probabilities: expected a sum <= 1 (the rest is 'no stimulus'), got "
                f"{p.tolist()} summing to {p.sum():.4g}"
            )
        hi = self.trial_ms - self.stim_ms
        bad = ~np.isfinite(lat) | (lat <= self.cue_ms) | (lat > hi)
        if np.any(bad):
            raise ValueError(
                f"latencies_ms: expected each in ({self.cue_ms:g}, {hi:g}] ms (after the cue, "
                f"with the stimulus inside the {self.trial_ms:g} ms trial), got {lat.tolist()}"
            )
        if self.dt_ms > self.target_width_ms:
            raise ValueError(
                f"dt_ms: expected <= target_width_ms ({self.target_width_ms:g}), got {self.dt_ms!r}"
            )
        self._lat, self._p = lat, p

    # ------------------------------------------------------------------ sizes
    @property
    def n_identities(self) -> int:
        """K, the number of stimulus identities."""
        return int(self._lat.size)

    @property
    def n_channels(self) -> int:
        """Input channels: the cue plus one per identity."""
        return 1 + self.n_identities

    @property
    def n_steps(self) -> int:
        return int(round(self.trial_ms / self.dt_ms))

    @property
    def t_ms(self) -> np.ndarray:
        return np.arange(self.n_steps) * self.dt_ms

    def with_changes(
        self,
        latencies_ms: Sequence[float] | None = None,
        probabilities: Sequence[float] | None = None,
    ) -> WhatWhenTask:
        """The same task after a change point (new latencies and/or probabilities)."""
        return WhatWhenTask(
            latencies_ms=self._lat.tolist() if latencies_ms is None else latencies_ms,
            probabilities=self._p.tolist() if probabilities is None else probabilities,
            trial_ms=self.trial_ms,
            dt_ms=self.dt_ms,
            jitter_ms=self.jitter_ms,
            cue_ms=self.cue_ms,
            stim_ms=self.stim_ms,
            cue_amplitude=self.cue_amplitude,
            stim_amplitude=self.stim_amplitude,
            target_width_ms=self.target_width_ms,
        )

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n_trials: int,
        seed: int | np.random.Generator | None = None,
        *,
        block: int = 0,
        identity: Sequence[int] | None = None,
    ) -> WhatWhenTrials:
        """Draw ``n_trials`` trials.

        Parameters
        ----------
        n_trials : int
            Number of trials (>= 1).
        seed : int or numpy Generator, optional
            Randomness for identities and jitter.
        block : int
            Block index stored with the trials.
        identity : sequence of int, optional
            Force the identities (-1 = no stimulus) instead of drawing them; e.g.
            ``[-1] * n`` gives cue-only probe trials, on which a readout's output is purely
            anticipatory.
        """
        if int(n_trials) != n_trials or n_trials < 1:
            raise ValueError(f"n_trials: expected an integer >= 1, got {n_trials!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        K = self.n_identities
        if identity is None:
            probs = np.append(self._p, max(0.0, 1.0 - self._p.sum()))
            ids = rng.choice(K + 1, size=n_trials, p=probs / probs.sum())
            ids = np.where(ids == K, -1, ids)
        else:
            ids = np.asarray(identity, dtype=int).reshape(-1)
            if ids.size != n_trials or np.any((ids < -1) | (ids >= K)):
                raise ValueError(
                    f"identity: expected {n_trials} values in [-1, {K - 1}], got {ids.tolist()}"
                )
        onset = np.full(n_trials, np.nan)
        has = ids >= 0
        onset[has] = self._lat[ids[has]]
        if self.jitter_ms > 0:
            onset[has] += self.jitter_ms * rng.standard_normal(int(has.sum()))
            onset[has] = np.clip(onset[has], self.cue_ms + self.dt_ms, self.trial_ms - self.stim_ms)

        T, dt = self.n_steps, self.dt_ms
        t = self.t_ms
        x = np.zeros((n_trials, T, 1 + K), dtype=np.float32)
        x[:, t < self.cue_ms, 0] = self.cue_amplitude
        y = np.zeros((n_trials, T, K), dtype=np.float32)
        for i in np.flatnonzero(has):
            on = (t >= onset[i] - 0.5 * dt) & (t < onset[i] + self.stim_ms - 0.5 * dt)
            x[i, on, 1 + ids[i]] = self.stim_amplitude
            y[i, :, ids[i]] = np.exp(-0.5 * ((t - onset[i]) / self.target_width_ms) ** 2)
        return WhatWhenTrials(
            inputs=torch.from_numpy(x),
            targets=torch.from_numpy(y),
            identity=ids,
            onset_ms=onset,
            block=np.full(n_trials, int(block)),
            dt_ms=dt,
        )

    def probe(self, n_trials: int = 1) -> WhatWhenTrials:
        """Cue-only trials: what the readouts anticipate when no stimulus arrives."""
        return self.sample(n_trials, seed=0, identity=[-1] * n_trials)

    # ------------------------------------------------------------------ ideal observer
    def expected_prediction(self, conditional: bool = False) -> np.ndarray:
        """The prediction object ``E[target_k(t)]``, shape (n_steps, K).

        A bump at ``tau_k`` (the target bump convolved with the onset jitter, closed form for
        two Gaussians) scaled by ``p_k``. With ``conditional=True`` the scale is instead the
        probability of k given that nothing occurred before ``tau_k`` (the hazard-style
        correction ``p_k / (1 - sum_{j: tau_j < tau_k} p_j)``), which is what an ideal observer
        predicts on a cue-only trial when identities have different latencies.
        """
        s, j = self.target_width_ms, self.jitter_ms
        width = math.sqrt(s * s + j * j)
        t = self.t_ms[:, None]
        bump = (s / width) * np.exp(-0.5 * ((t - self._lat[None, :]) / width) ** 2)
        amp = self._p.copy()
        if conditional:
            for k in range(self.n_identities):
                earlier = self._p[self._lat < self._lat[k]].sum()
                amp[k] = self._p[k] / max(1e-12, 1.0 - earlier)
        return bump * amp[None, :]

    @property
    def latencies(self) -> np.ndarray:
        return self._lat.copy()

    @property
    def probs(self) -> np.ndarray:
        return self._p.copy()


def sample_blocks(
    tasks: Sequence[WhatWhenTask],
    n_trials: int | Sequence[int],
    seed: int | np.random.Generator | None = None,
) -> WhatWhenTrials:
    """Concatenate blocks of trials with change points between them.

    Parameters
    ----------
    tasks : sequence of WhatWhenTask
        One task per block (e.g. ``[task, task.with_changes(latencies_ms=[250])]``); all must
        share K, trial length and dt.
    n_trials : int or sequence of int
        Trials per block.
    seed : int or numpy Generator, optional

    Returns
    -------
    WhatWhenTrials
        All trials in order; ``block`` marks the block, the change points are where it changes.
    """
    if len(tasks) == 0:
        raise ValueError("tasks: expected at least one block, got none")
    counts = [n_trials] * len(tasks) if np.isscalar(n_trials) else list(n_trials)
    if len(counts) != len(tasks):
        raise ValueError(f"n_trials: expected one count per block ({len(tasks)}), got {counts}")
    first = tasks[0]
    shape0 = (first.n_identities, first.n_steps, first.dt_ms)
    for i, tk in enumerate(tasks):
        if (tk.n_identities, tk.n_steps, tk.dt_ms) != shape0:
            raise ValueError(
                f"tasks[{i}]: expected the same K, n_steps and dt_ms as tasks[0] "
                f"({first.n_identities}, {first.n_steps}, {first.dt_ms}), got "
                f"({tk.n_identities}, {tk.n_steps}, {tk.dt_ms})"
            )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    parts = [tk.sample(n, rng, block=b) for b, (tk, n) in enumerate(zip(tasks, counts))]
    return WhatWhenTrials(
        inputs=torch.cat([p.inputs for p in parts]),
        targets=torch.cat([p.targets for p in parts]),
        identity=np.concatenate([p.identity for p in parts]),
        onset_ms=np.concatenate([p.onset_ms for p in parts]),
        block=np.concatenate([p.block for p in parts]),
        dt_ms=first.dt_ms,
    )
