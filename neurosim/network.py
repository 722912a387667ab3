"""Izhikevich networks: one model description, run by either engine, and the spike record.

The model description (:class:`NetworkModel`) holds everything that defines a network of
Izhikevich (2003) neurons: per-neuron parameters ``a, b, c, d``, the recurrent weights (dense
or sparse), the synaptic current (a one-step pulse as in the 2003 code, or an exponentially
decaying current), the thalamic noise and an optional input projection. The engines in
:mod:`neurosim.engines` (``"torch"``, ``"brian2"``) consume the same description, as Brian2's
devices consume the same equations.

Update of one step of length ``dt`` (both engines, in this order; Brian2's schedule
``start -> groups -> thresholds -> synapses -> resets``)::

    I      = I_noise + I_syn + I_in                    # I_noise redrawn every noise_interval_ms
    v     += (dt / n_sub) * (0.04 v^2 + 5 v + 140 - u + I)   # n_sub times (n_sub = 2 in net.m)
    u     += dt * a * (b v - u)                         # with the NEW v (Izhikevich's ordering)
    fired  = v >= v_peak                                # spike time recorded as t = k dt
    I_syn  = syn_decay * I_syn + sum_{j fired} W[j, :]  # syn_decay = 0: one-step pulse (net.m)
    v[fired] = c;  u[fired] += d

With ``dt = 1 ms`` and ``n_sub = 2`` this is exactly the loop of ``net.m`` (Izhikevich 2003,
Fig. 3), up to a one-step shift in the time stamp of a spike (``net.m`` stamps it at the
start of the next step, when it resets the cell).

References
----------
Izhikevich, E. M. (2003). Simple model of spiking neurons. IEEE Trans. Neural Netw. 14(6),
1569-1572.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.signal
import scipy.sparse

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.axes
    import torch

logger = logging.getLogger(__name__)

ENGINES = ("torch", "brian2")


def _as_float_array(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected a number or an array of shape ({n},), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name}: expected finite values, got {arr[bad]} at neuron {bad}")
    return arr


@dataclass
class NetworkModel:
    """The one description of an Izhikevich network that every engine runs.

    Parameters
    ----------
    a, b, c, d : ndarray, shape (n_neurons,)
        Izhikevich parameters per neuron (``a``, ``b`` per ms, ``c`` in mV, ``d`` in mV/ms).
    weights : ndarray (n_neurons, n_neurons) or scipy.sparse matrix
        Recurrent weights, **row = presynaptic, column = postsynaptic** (the transpose of
        ``S`` in net.m). A spike of neuron ``j`` adds ``weights[j, :]`` to ``I_syn``.
    exc : ndarray of bool, shape (n_neurons,)
        True for excitatory neurons (used for the rates and plots).
    noise_std : ndarray, shape (n_neurons,)
        Standard deviation of the thalamic input current, redrawn every ``noise_interval_ms``
        (net.m: 5 for excitatory, 2 for inhibitory cells, every ms).
    noise_interval_ms : float
        Interval of the noise redraws (a multiple of the time step).
    tau_syn_ms : float or None
        Time constant of the exponentially decaying synaptic current; ``None`` gives the
        one-step current pulse of net.m.
    v_substeps : int
        Number of Euler sub-steps of ``v`` per step (2 in net.m: two 0.5 ms half-steps).
    dt_ms : float
        Default time step (ms).
    input_weights : ndarray (n_channels, n_neurons) or None
        Projection of the input channels onto the neurons (``I_in = inputs @ input_weights``).
    v_peak, v0 : float
        Spike cut-off and initial membrane potential (mV); ``u0 = b * v0``.
    name : str
        A label for reports.
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    weights: Any
    exc: np.ndarray
    noise_std: np.ndarray
    noise_interval_ms: float = 1.0
    tau_syn_ms: float | None = None
    v_substeps: int = 1
    dt_ms: float = 1.0
    input_weights: np.ndarray | None = None
    v_peak: float = 30.0
    v0: float = -65.0
    name: str = "izhikevich"
    meta: dict = field(default_factory=dict)

    @property
    def n_neurons(self) -> int:
        return int(np.asarray(self.a).shape[0])

    @property
    def n_channels(self) -> int:
        return 0 if self.input_weights is None else int(self.input_weights.shape[0])

    @property
    def n_synapses(self) -> int:
        if scipy.sparse.issparse(self.weights):
            return int(self.weights.nnz)
        return int(np.count_nonzero(self.weights))

    def validate(self) -> NetworkModel:
        """Check shapes and values; raise ``ValueError`` naming the field. Returns self."""
        n = self.n_neurons
        for name in ("a", "b", "c", "d", "noise_std"):
            setattr(self, name, _as_float_array(name, getattr(self, name), n))
        if np.any(self.noise_std < 0):
            raise ValueError(f"noise_std: expected values >= 0, got min {self.noise_std.min()}")
        self.exc = np.asarray(self.exc, dtype=bool)
        if self.exc.shape != (n,):
            raise ValueError(f"exc: expected a bool array of shape ({n},), got {self.exc.shape}")
        w = self.weights
        if w.shape != (n, n):
            raise ValueError(f"weights: expected shape ({n}, {n}) (pre, post), got {w.shape}")
        data = w.data if scipy.sparse.issparse(w) else np.asarray(w)
        if not np.all(np.isfinite(data)):
            raise ValueError("weights: expected finite values, got NaN or inf")
        if self.input_weights is not None:
            iw = np.asarray(self.input_weights, dtype=np.float64)
            if iw.ndim != 2 or iw.shape[1] != n:
                raise ValueError(
                    f"input_weights: expected shape (n_channels, {n}), got {iw.shape}"
                )
            if not np.all(np.isfinite(iw)):
                raise ValueError("input_weights: expected finite values, got NaN or inf")
            self.input_weights = iw
        for name in ("noise_interval_ms", "dt_ms", "v_peak", "v0"):
            val = float(getattr(self, name))
            if not np.isfinite(val):
                raise ValueError(f"{name}: expected a finite number, got {val}")
        if self.noise_interval_ms <= 0 or self.dt_ms <= 0:
            raise ValueError("noise_interval_ms and dt_ms: expected > 0")
        if self.tau_syn_ms is not None and not (np.isfinite(self.tau_syn_ms)
                                                and self.tau_syn_ms > 0):
            raise ValueError(f"tau_syn_ms: expected None or a number > 0, got {self.tau_syn_ms}")
        if int(self.v_substeps) != self.v_substeps or self.v_substeps < 1:
            raise ValueError(f"v_substeps: expected an integer >= 1, got {self.v_substeps}")
        return self

    def syn_decay(self, dt_ms: float) -> float:
        """Factor by which ``I_syn`` decays in one step (0 for the one-step pulse)."""
        return 0.0 if self.tau_syn_ms is None else float(np.exp(-dt_ms / self.tau_syn_ms))

    def run(
        self,
        duration_ms: float,
        dt_ms: float | None = None,
        inputs: Any = None,
        batch: int = 1,
        engine: str = "torch",
        device: str = "auto",
        record: tuple[str, ...] = ("spikes",),
        seed: int = 0,
        noise: bool = True,
        dtype: str = "float32",
        verbose: bool | None = None,
        **engine_options: Any,
    ) -> SpikeRecord:
        """Simulate the network and return its :class:`SpikeRecord`.

        Parameters
        ----------
        duration_ms : float
            Biological time to simulate (ms).
        dt_ms : float, optional
            Time step (ms); default ``self.dt_ms``.
        inputs : array or tensor, shape (batch, n_steps, n_channels) or (n_steps, n_channels)
            Input per step and channel, projected by ``input_weights`` (a 2-D array is shared
            by all trials).
        batch : int
            Independent trials (own noise, shared weights) run along a leading dimension.
        engine : {"torch", "brian2"}
            Which engine runs the model.
        device : str
            Torch engine: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
            Brian2 engine: ``"runtime"`` (Cython if installed, else numpy), ``"numpy"``,
            ``"cython"`` or ``"cpp_standalone"``.
        record : tuple of str
            ``"spikes"`` and optionally ``"v"`` (membrane potential at the start of every step).
        seed : int
            Seed of the noise generator (trial ``b`` of Brian2 uses ``seed + b``).
        noise : bool
            False turns the thalamic noise off.
        dtype : {"float32", "float64"}
            Torch engine precision (Brian2 always uses float64).
        """
        from neurosim.engines import get_engine

        simulate = get_engine(engine)
        return simulate(
            self, duration_ms=duration_ms, dt_ms=dt_ms, inputs=inputs, batch=batch,
            device=device, record=record, seed=seed, noise=noise, dtype=dtype,
            verbose=verbose, **engine_options,
        )


def izhikevich_2003(
    n_exc: int = 800, n_inh: int = 200, seed: int = 0, weight_scale: float | None = None
) -> NetworkModel:
    """The 2003 network of Izhikevich: ``n_exc`` excitatory and ``n_inh`` inhibitory cells.

    As in ``net.m`` (Izhikevich 2003, Fig. 3), with ``re, ri ~ U[0, 1]``:
    excitatory ``a = 0.02, b = 0.2, c = -65 + 15 re^2, d = 8 - 6 re^2``; inhibitory
    ``a = 0.02 + 0.08 ri, b = 0.25 - 0.05 ri, c = -65, d = 2``; dense weights ``0.5 rand``
    from excitatory and ``-rand`` from inhibitory cells, delivered as a one-step (1 ms)
    current pulse; thalamic input ``5 randn`` (excitatory) and ``2 randn`` (inhibitory) every
    ms; ``dt = 1 ms`` with two 0.5 ms Euler half-steps of ``v``. At 1000 neurons the
    excitatory rate is about 7.4 Hz, inhibitory about 7 Hz, with population rhythms in the
    alpha (~8-10 Hz) and gamma (~30-40 Hz) ranges.

    Parameters
    ----------
    n_exc, n_inh : int
        Population sizes.
    seed : int
        Seed of the parameter and weight draws.
    weight_scale : float, optional
        Multiplies all weights; default ``1000 / (n_exc + n_inh)`` keeps the total input of a
        cell as in the 1000-cell original.

    Returns
    -------
    NetworkModel
    """
    for name, val in (("n_exc", n_exc), ("n_inh", n_inh)):
        if int(val) != val or val < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {val!r}")
    n = int(n_exc) + int(n_inh)
    if n < 1:
        raise ValueError(f"n_exc + n_inh: expected >= 1 neuron, got {n}")
    scale = 1000.0 / n if weight_scale is None else float(weight_scale)
    if not np.isfinite(scale):
        raise ValueError(f"weight_scale: expected a finite number, got {weight_scale}")
    rng = np.random.default_rng(seed)
    re = rng.random(n_exc)
    ri = rng.random(n_inh)
    a = np.concatenate([np.full(n_exc, 0.02), 0.02 + 0.08 * ri])
    b = np.concatenate([np.full(n_exc, 0.2), 0.25 - 0.05 * ri])
    c = np.concatenate([-65 + 15 * re**2, np.full(n_inh, -65.0)])
    d = np.concatenate([8 - 6 * re**2, np.full(n_inh, 2.0)])
    # row = presynaptic cell (net.m's S transposed); float32 halves the memory at 10k cells
    w = np.empty((n, n), dtype=np.float32)
    w[:n_exc] = 0.5 * scale * rng.random((n_exc, n), dtype=np.float32)
    w[n_exc:] = -scale * rng.random((n_inh, n), dtype=np.float32)
    exc = np.arange(n) < n_exc
    noise_std = np.where(exc, 5.0, 2.0)
    return NetworkModel(
        a=a, b=b, c=c, d=d, weights=w, exc=exc, noise_std=noise_std, noise_interval_ms=1.0,
        tau_syn_ms=None, v_substeps=2, dt_ms=1.0, name=f"izhikevich_2003_N{n}",
        meta={"seed": seed, "weight_scale": scale},
    ).validate()


@dataclass
class SpikeRecord:
    """Spikes (and optionally membrane potentials) of a batch of simulated trials.

    Parameters
    ----------
    times_ms : ndarray, shape (n_spikes,)
        Spike times (ms), ``k * dt_ms`` for a threshold crossing in step ``k``.
    neuron, trial : ndarray of int, shape (n_spikes,)
        Which neuron fired, in which trial.
    n_neurons, batch : int
        Network size and number of trials.
    duration_ms, dt_ms : float
        Simulated time and time step (ms).
    v : ndarray, shape (batch, n_steps, n_neurons), optional
        Membrane potential (mV) at the start of every step.
    info : dict
        What the engine reports about the run (engine, mode, wall and build times in s).
    """

    times_ms: np.ndarray
    neuron: np.ndarray
    trial: np.ndarray
    n_neurons: int
    duration_ms: float
    batch: int
    dt_ms: float
    v: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.times_ms = np.asarray(self.times_ms, dtype=np.float64)
        self.neuron = np.asarray(self.neuron, dtype=np.int64)
        self.trial = np.asarray(self.trial, dtype=np.int64)
        if not (self.times_ms.shape == self.neuron.shape == self.trial.shape):
            raise ValueError(
                "times_ms, neuron, trial: expected equal shapes, got "
                f"{self.times_ms.shape}, {self.neuron.shape}, {self.trial.shape}"
            )

    @property
    def n_steps(self) -> int:
        return int(round(self.duration_ms / self.dt_ms))

    @property
    def step(self) -> np.ndarray:
        """Step index of every spike, shape (n_spikes,)."""
        return np.rint(self.times_ms / self.dt_ms).astype(np.int64)

    def __len__(self) -> int:
        return int(self.times_ms.size)

    def __repr__(self) -> str:
        return (f"SpikeRecord({len(self)} spikes, {self.n_neurons} neurons, batch={self.batch}, "
                f"{self.duration_ms:g} ms at dt={self.dt_ms:g} ms)")

    def _neuron_mask(self, neurons: Any) -> np.ndarray:
        if neurons is None:
            return np.ones(self.n_neurons, dtype=bool)
        arr = np.asarray(neurons)
        if arr.dtype == bool:
            if arr.shape != (self.n_neurons,):
                raise ValueError(f"neurons: expected a bool mask of shape ({self.n_neurons},), "
                                 f"got {arr.shape}")
            return arr
        mask = np.zeros(self.n_neurons, dtype=bool)
        mask[arr.astype(np.int64)] = True
        return mask

    def counts(self) -> np.ndarray:
        """Spike count per trial and neuron, shape (batch, n_neurons)."""
        out = np.zeros((self.batch, self.n_neurons), dtype=np.int64)
        np.add.at(out, (self.trial, self.neuron), 1)
        return out

    def rates_hz(self, per: str = "neuron", neurons: Any = None) -> np.ndarray:
        """Mean firing rates (Hz).

        Parameters
        ----------
        per : {"neuron", "trial"}
            ``"neuron"``: shape (batch, n_neurons); ``"trial"``: mean over the selected
            neurons, shape (batch,).
        neurons : bool mask or indices, optional
            Neurons to average over for ``per="trial"`` (default all).
        """
        rates = self.counts() / (self.duration_ms / 1000.0)
        if per == "neuron":
            return rates
        if per == "trial":
            return rates[:, self._neuron_mask(neurons)].mean(axis=1)
        raise ValueError(f"per: expected 'neuron' or 'trial', got {per!r}")

    def population_rate(self, bin_ms: float = 1.0, neurons: Any = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Population rate (spikes per neuron per second) in bins of ``bin_ms``.

        Returns
        -------
        t_ms : ndarray, shape (n_bins,)
            Bin starts (ms).
        rate_hz : ndarray, shape (batch, n_bins)
        """
        if not bin_ms > 0:
            raise ValueError(f"bin_ms: expected > 0, got {bin_ms}")
        mask = self._neuron_mask(neurons)
        n_bins = int(np.floor(self.duration_ms / bin_ms + 1e-9))
        sel = mask[self.neuron]
        b = np.minimum((self.times_ms[sel] / bin_ms + 1e-9).astype(np.int64), n_bins - 1)
        out = np.zeros((self.batch, n_bins))
        np.add.at(out, (self.trial[sel], b), 1.0)
        out /= max(int(mask.sum()), 1) * bin_ms / 1000.0
        return np.arange(n_bins) * bin_ms, out

    def psd(self, bin_ms: float = 1.0, nperseg: int | None = None, neurons: Any = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """Power spectral density of the population rate (Welch's method, scipy.signal.welch).

        Returns
        -------
        f_hz : ndarray, shape (n_freqs,)
        pxx : ndarray, shape (batch, n_freqs)
            PSD of the mean-removed population rate (Hz^2 / Hz).
        """
        _, rate = self.population_rate(bin_ms, neurons)
        fs = 1000.0 / bin_ms
        if nperseg is None:
            nperseg = min(rate.shape[1], int(round(fs)))  # 1 s windows: 1 Hz resolution
        return scipy.signal.welch(rate, fs=fs, nperseg=nperseg, axis=-1)

    def spike_trains(self, dtype: Any = None) -> torch.Tensor:
        """Binary spike trains at the simulation step, tensor of shape (batch, n_steps, n)."""
        import torch

        out = torch.zeros(self.batch, self.n_steps, self.n_neurons,
                          dtype=dtype or torch.float32)
        step = np.minimum(self.step, self.n_steps - 1)
        out[torch.from_numpy(self.trial), torch.from_numpy(step),
            torch.from_numpy(self.neuron)] = 1.0
        return out

    def filtered(self, tau_ms: float, dtype: Any = None) -> torch.Tensor:
        """Exponentially filtered spike trains ``r[k] = exp(-dt/tau) r[k-1] + s[k]``.

        The synaptic trace a linear readout sees (e.g. Nicola & Clopath 2017, with a single
        exponential). Returns a torch tensor of shape (batch, n_steps, n_neurons).
        """
        if not tau_ms > 0:
            raise ValueError(f"tau_ms: expected > 0, got {tau_ms}")
        s = self.spike_trains(dtype=dtype).numpy()
        decay = np.exp(-self.dt_ms / tau_ms)
        import torch

        r = scipy.signal.lfilter([1.0], [1.0, -decay], s, axis=1).astype(s.dtype)
        return torch.from_numpy(np.ascontiguousarray(r))

    def raster(self, ax: matplotlib.axes.Axes | None = None, trial: int = 0,
               exc: np.ndarray | None = None, **scatter_kw: Any) -> matplotlib.axes.Axes:
        """Draw a spike raster of one trial (excitatory black, inhibitory red if ``exc``)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(8, 4))
        sel = self.trial == trial
        t, n = self.times_ms[sel], self.neuron[sel]
        kw = {"s": 1.0, "marker": ".", "linewidths": 0}
        kw.update(scatter_kw)
        if exc is None:
            ax.scatter(t, n, c="k", **kw)
        else:
            e = np.asarray(exc, dtype=bool)[n]
            ax.scatter(t[e], n[e], c="k", label="excitatory", **kw)
            ax.scatter(t[~e], n[~e], c="tab:red", label="inhibitory", **kw)
        ax.set_xlim(0, self.duration_ms)
        ax.set_ylim(-0.5, self.n_neurons - 0.5)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("neuron")
        return ax


def spectral_peak(f_hz: np.ndarray, pxx: np.ndarray, band: tuple[float, float]
                  ) -> tuple[float, float]:
    """Frequency (Hz) and power of the largest PSD value inside ``band`` (pxx: 1-D)."""
    sel = (f_hz >= band[0]) & (f_hz <= band[1])
    if not sel.any():
        raise ValueError(f"band: no frequency of the PSD lies in {band} Hz")
    i = int(np.argmax(np.where(sel, pxx, -np.inf)))
    return float(f_hz[i]), float(pxx[i])
