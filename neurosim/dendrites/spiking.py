"""A spiking neuron with active dendritic segments that detects sparse patterns (torch).

The neuron of Hawkins & Ahmad (2016, Front. Neural Circuits 10:23, "Why neurons have
thousands of synapses") and Ahmad & Hawkins (2016): a point soma (leaky integrate-and-fire)
with ``K`` dendritic segments. Each segment has ``s`` synapses; when ``theta`` of them are
active within a few milliseconds, the segment fires an NMDA spike, a plateau potential
that depolarises the soma for tens of milliseconds (Schiller et al. 2000, Nature 404:285;
Antic et al. 2010, J. Neurosci. Res. 88:2991). Isolated synapses barely move the soma.

Equations (time in ms, voltage in mV), per trial and segment ``k``::

    du_k/dt = -u_k / tau_syn_ms + sum_{i in S_k} sum_spikes delta(t - t_i)
    NMDA spike of k when u_k >= theta - 1/2  ->  plateau p_k = 1 for plateau_ms
    tau_m_ms dV/dt = -(V - E_L) + epsp_mv * sum_k u_k + plateau_mv * sum_k p_k
    V >= V_th  ->  spike, V <- V_reset, refractory for refractory_ms

``u_k`` counts recently active synapses, so with synchronous input the segment fires
exactly when the overlap between the input pattern and its synapses reaches ``theta``;
the spiking neuron's false-positive and false-negative rates are then the closed forms of
:mod:`neurosim.dendrites.sdr`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neurosim._checks import check_finite
from neurosim._device import resolve_device

__all__ = ["DendriticNeuron", "DendriticNeuronResult"]


@dataclass
class DendriticNeuronResult:
    """What :meth:`DendriticNeuron.simulate` returns.

    Attributes
    ----------
    spike_counts : ndarray of int, shape (batch,)
        Somatic spikes per trial.
    nmda_spikes : ndarray of bool, shape (batch, K)
        Whether each segment fired an NMDA spike in each trial.
    time_ms : ndarray, shape (n_steps,)
    v_soma_mv : ndarray, shape (n_steps, n_record)
        Somatic voltage of the first ``n_record`` trials.
    u_segments : ndarray, shape (n_steps, n_record, K)
        Segment depolarisation (in active synapses) of the first ``n_record`` trials.
    """

    spike_counts: np.ndarray
    nmda_spikes: np.ndarray
    time_ms: np.ndarray
    v_soma_mv: np.ndarray
    u_segments: np.ndarray

    @property
    def detected(self) -> np.ndarray:
        """Trials in which the soma fired at least once, shape (batch,)."""
        return self.spike_counts > 0


class DendriticNeuron:
    """LIF soma + ``K`` dendritic segments with an NMDA-spike threshold.

    Parameters
    ----------
    synapses : array of bool, shape (K, n_inputs)
        ``synapses[k, i]``: segment ``k`` has a synapse from input ``i``.
    theta : int
        Coincident active synapses that trigger an NMDA spike (``1 <= theta``).
    tau_syn_ms : float
        Decay of a segment's local depolarisation.
    plateau_ms : float
        Duration of an NMDA plateau.
    tau_m_ms, e_l_mv, v_th_mv, v_reset_mv, refractory_ms : float
        Somatic leaky integrate-and-fire parameters.
    epsp_mv : float
        Somatic steady-state depolarisation per active distal synapse (small).
    plateau_mv : float
        Somatic steady-state depolarisation per segment in plateau (large).
    """

    def __init__(
        self,
        synapses: np.ndarray,
        theta: int,
        tau_syn_ms: float = 10.0,
        plateau_ms: float = 50.0,
        tau_m_ms: float = 20.0,
        e_l_mv: float = -70.0,
        v_th_mv: float = -50.0,
        v_reset_mv: float = -65.0,
        refractory_ms: float = 2.0,
        epsp_mv: float = 0.5,
        plateau_mv: float = 40.0,
    ) -> None:
        syn = np.asarray(synapses)
        if syn.ndim != 2 or syn.dtype != bool:
            raise ValueError(
                f"synapses: expected a bool array of shape (K, n_inputs), "
                f"got {syn.dtype} {syn.shape}"
            )
        if isinstance(theta, bool) or not isinstance(theta, int | np.integer) or theta < 1:
            raise ValueError(f"theta: expected an integer >= 1, got {theta!r}")
        if theta > syn.sum(axis=1).min():
            raise ValueError(
                f"theta: expected <= the smallest number of synapses on a segment "
                f"({int(syn.sum(axis=1).min())}), got {theta}"
            )
        for name, value in [("tau_syn_ms", tau_syn_ms), ("plateau_ms", plateau_ms),
                            ("tau_m_ms", tau_m_ms)]:
            check_finite(name, value, gt=0)
        check_finite("refractory_ms", refractory_ms, ge=0)
        for name, value in [("e_l_mv", e_l_mv), ("v_th_mv", v_th_mv),
                            ("v_reset_mv", v_reset_mv)]:
            check_finite(name, value)
        check_finite("epsp_mv", epsp_mv, ge=0)
        check_finite("plateau_mv", plateau_mv, ge=0)
        if not v_th_mv > v_reset_mv:
            raise ValueError(f"v_th_mv: expected > v_reset_mv = {v_reset_mv}, got {v_th_mv}")
        self.synapses = syn
        self.theta = int(theta)
        self.tau_syn_ms = tau_syn_ms
        self.plateau_ms = plateau_ms
        self.tau_m_ms = tau_m_ms
        self.e_l_mv = e_l_mv
        self.v_th_mv = v_th_mv
        self.v_reset_mv = v_reset_mv
        self.refractory_ms = refractory_ms
        self.epsp_mv = epsp_mv
        self.plateau_mv = plateau_mv

    @property
    def n_inputs(self) -> int:
        return self.synapses.shape[1]

    @torch.no_grad()
    def simulate(
        self,
        patterns: np.ndarray,
        duration_ms: float = 100.0,
        dt_ms: float = 0.1,
        onset_ms: float = 10.0,
        jitter_ms: float = 0.0,
        n_record: int = 0,
        random_state: int | np.random.Generator | None = None,
        device: str = "cpu",
    ) -> DendriticNeuronResult:
        """Present each pattern as one volley of input spikes; one trial per pattern.

        Parameters
        ----------
        patterns : array of bool, shape (batch, n_inputs)
            Active inputs of each trial; each fires one spike at ``onset_ms`` plus a
            Gaussian jitter of s.d. ``jitter_ms`` (clipped to the simulated window).
        duration_ms, dt_ms, onset_ms : float
            Simulated time, forward-Euler step, volley time.
        n_record : int
            Trials whose voltage traces are kept.
        random_state : int or Generator, optional
            Source of the jitter.
        device : str
            Torch device of the simulation; ``"auto"`` picks CUDA when present.
        """
        pat = np.asarray(patterns)
        if pat.ndim != 2 or pat.shape[1] != self.n_inputs or pat.dtype != bool:
            raise ValueError(
                f"patterns: expected a bool array of shape (batch, {self.n_inputs}), "
                f"got {pat.dtype} {pat.shape}"
            )
        check_finite("duration_ms", duration_ms, gt=0)
        check_finite("dt_ms", dt_ms, gt=0, lt=duration_ms)
        check_finite("onset_ms", onset_ms, ge=0, lt=duration_ms)
        check_finite("jitter_ms", jitter_ms, ge=0)
        if isinstance(n_record, bool) or not isinstance(n_record, int | np.integer) or (
            n_record < 0
        ):
            raise ValueError(f"n_record: expected an integer >= 0, got {n_record!r}")
        batch, n_steps = pat.shape[0], int(round(duration_ms / dt_ms))
        cells = batch * self.synapses.shape[0] * n_steps
        if cells > 500_000_000:
            raise ValueError(
                f"duration_ms: {n_steps} steps of dt_ms={dt_ms} for {batch} trials and "
                f"{self.synapses.shape[0]} segments need {cells:.3g} input entries; expected "
                "at most 5e8 (fewer trials per call, or a larger dt_ms)"
            )
        K = self.synapses.shape[0]
        rng = np.random.default_rng(random_state)
        t_spike = onset_ms + jitter_ms * rng.standard_normal(pat.shape)
        step_idx = np.clip(np.round(t_spike / dt_ms), 0, n_steps - 1).astype(np.int64)

        # arrivals[b, k, step]: synaptic input spikes reaching segment k at that step
        dev = resolve_device(device)
        syn = torch.as_tensor(self.synapses, dtype=torch.float32, device=dev)
        src = torch.as_tensor(pat, dtype=torch.float32, device=dev)[:, None, :] * syn[None]
        idx = torch.as_tensor(step_idx, device=dev)[:, None, :].expand(batch, K, -1)
        arrivals = torch.zeros(batch, K, n_steps, device=dev).scatter_add_(2, idx, src)

        decay_syn = float(np.exp(-dt_ms / self.tau_syn_ms))
        plateau_steps = int(round(self.plateau_ms / dt_ms))
        refr_steps = int(round(self.refractory_ms / dt_ms))
        u = torch.zeros(batch, K, device=dev)
        plateau_left = torch.zeros(batch, K, dtype=torch.long, device=dev)
        nmda = torch.zeros(batch, K, dtype=torch.bool, device=dev)
        v = torch.full((batch,), self.e_l_mv, device=dev)
        refr_left = torch.zeros(batch, dtype=torch.long, device=dev)
        counts = torch.zeros(batch, dtype=torch.long, device=dev)
        n_rec = min(n_record, batch)
        v_trace = np.zeros((n_steps, n_rec))
        u_trace = np.zeros((n_steps, n_rec, K))
        threshold = self.theta - 0.5
        for step in range(n_steps):
            u = u * decay_syn + arrivals[:, :, step]
            # NMDA spike: regenerative, so it starts once and then lasts plateau_ms
            start = (u >= threshold) & (plateau_left == 0)
            plateau_left = torch.where(start, plateau_steps, (plateau_left - 1).clamp(min=0))
            nmda |= start
            drive = self.epsp_mv * u.sum(1) + self.plateau_mv * (plateau_left > 0).sum(1)
            v_new = v + dt_ms / self.tau_m_ms * (self.e_l_mv - v + drive)
            v = torch.where(refr_left > 0, torch.full_like(v, self.v_reset_mv), v_new)
            refr_left = (refr_left - 1).clamp(min=0)
            fired = v >= self.v_th_mv
            counts += fired
            v = torch.where(fired, torch.full_like(v, self.v_reset_mv), v)
            refr_left = torch.where(fired, refr_steps, refr_left)
            if n_rec:
                v_trace[step] = torch.where(fired[:n_rec], 0.0, v[:n_rec]).cpu().numpy()
                u_trace[step] = u[:n_rec].cpu().numpy()
        return DendriticNeuronResult(
            spike_counts=counts.cpu().numpy(),
            nmda_spikes=nmda.cpu().numpy(),
            time_ms=np.arange(n_steps) * dt_ms,
            v_soma_mv=v_trace,
            u_segments=u_trace,
        )
