"""Izhikevich neurons: parameters, the published firing patterns, and two engines.

The model (Izhikevich 2003, "Simple model of spiking neurons", IEEE TNN 14:1569, eqs. 1-3)::

    v' = 0.04 v^2 + 5 v + 140 - u + I          (v in mV, t in ms, I in the model's units)
    u' = a (b v - u)
    if v > 30 mV:  v <- c,  u <- u + d

`PATTERNS` holds the 20 neuro-computational features of Izhikevich (2004, "Which model to
use for cortical spiking neurons?", IEEE TNN 15:1063, Fig. 1) with the parameters, initial
state, step and stimulus of the published figure code (``figure1.m`` on izhikevich.org), and
the 2003 cell classes (RS, IB, CH, FS, TC, RZ, LTS; 2003 paper, Fig. 2).

Integration follows the published figure code exactly (not plain forward Euler)::

    v <- v + dt * (0.04 v^2 + 5 v + 140 - u + I(t))
    u <- u + dt * a * (b v - u)            # uses the NEW v
    if v > 30 (strictly):  spike at t,  v <- c,  u <- u + d

for t = k dt, k = 0, 1, ..., duration_ms / dt (both ends included, as MATLAB's
``tspan = 0:tau:T``). Plain forward Euler (u from the old v) does not reproduce the
published patterns, so both engines use this order, with the operands of each sum in the
figure code's order: in float64 the torch engine, the Brian2 engine and a plain
transcription of ``figure1.m`` give bit-identical traces and spike steps, and in float32 the
two engines are bit-identical to each other and within +-1 spike of float64 (tested).

Sources: the parameters, initial states, steps and stimuli of the 20 features are those of
``figure1.m``, the code published with the 2004 paper's Fig. 1 (izhikevich.org), read
from public transcriptions that agree with each other. Three panels of that code depart from
the canonical model, and `IzhikevichPattern` carries the departure: (G) and (L) use
0.04 v^2 + 4.1 v + 108; (R) uses u' = a b (v + 65) with u0 = -16. The 2003 classes take
(a, b, c, d) from the 2003 paper's Fig. 2; their step protocols are stated per pattern.

Examples
--------
>>> from neurosim.izhikevich import IzhikevichParams, simulate_neuron
>>> trace = simulate_neuron("tonic_spiking")          # the published panel (A)
>>> trace.spike_times_ms
array([13.  , 17.  , 31.5 , 59.25, 86.75])
>>> rs = simulate_neuron(IzhikevichParams(0.02, 0.2, -65, 8), current=10.0,
...                      duration_ms=200.0, dt_ms=0.25, engine="brian2")
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger("neurosim")

V_PEAK_MV = 30.0
"""Spike cut-off (mV): a spike is emitted when v > 30 mV, strictly (figure1.m)."""

DIVERGENCE_LIMIT_MV = 1.0e4
"""|v| above this (mV) after an update means the step was too large: no step of a stable
integration of the model leaves v that far from [-100, 30] mV (a spike from 30 mV overshoots
to a few hundred mV at dt = 1 ms)."""

ENGINES = ("torch", "brian2")
DTYPES = ("float64", "float32")


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


def _as_param(name: str, value: Any) -> float | np.ndarray:
    """A finite float, or a finite 1-D float64 array (read-only), for one parameter."""
    if isinstance(value, bool):
        raise ValueError(f"IzhikevichParams.{name}: expected a finite number, got {value!r}")
    if np.isscalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"IzhikevichParams.{name}: expected a finite number, got {value!r}"
            ) from None
        if not math.isfinite(out):
            raise ValueError(f"IzhikevichParams.{name}: expected a finite number, got {out!r}")
        return out
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"IzhikevichParams.{name}: expected a number or a 1-D array of numbers, "
            f"got {type(value).__name__}"
        ) from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"IzhikevichParams.{name}: expected a number or a non-empty 1-D array "
            f"(one value per neuron), got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"IzhikevichParams.{name}: expected finite values, got {arr[i]!r} at neuron {i}"
        )
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class IzhikevichParams:
    """The four parameters of the Izhikevich (2003) model, for one neuron or a population.

    Parameters
    ----------
    a : float or array of shape (n_neurons,)
        Time scale of the recovery variable u (1/ms); smaller is slower recovery.
    b : float or array of shape (n_neurons,)
        Sensitivity of u to the subthreshold fluctuations of v (dimensionless).
    c : float or array of shape (n_neurons,)
        After-spike reset value of v (mV).
    d : float or array of shape (n_neurons,)
        After-spike increment of u (model current units).

    Notes
    -----
    Every field must be finite. Arrays give one value per neuron (all arrays the same
    length; scalars are shared), which `simulate_neuron` integrates as one vectorised
    population, e.g. the heterogeneous excitatory cells of the 2003 network
    ``IzhikevichParams(0.02, 0.2, -65 + 15 * r**2, 8 - 6 * r**2)``.

    References
    ----------
    Izhikevich, E. M. (2003). Simple model of spiking neurons. IEEE Trans. Neural Netw.
    14(6), 1569-1572, eqs. (1)-(3) and Fig. 2.
    """

    a: float | np.ndarray
    b: float | np.ndarray
    c: float | np.ndarray
    d: float | np.ndarray

    def __post_init__(self) -> None:
        sizes = {}
        for name in ("a", "b", "c", "d"):
            value = _as_param(name, getattr(self, name))
            object.__setattr__(self, name, value)
            if isinstance(value, np.ndarray):
                sizes[name] = value.size
        if len(set(sizes.values())) > 1:
            raise ValueError(
                "IzhikevichParams: array fields must have one value per neuron and the same "
                f"length, got lengths {sizes}"
            )

    @property
    def n_neurons(self) -> int:
        """Number of neurons described (1 when all four fields are scalars)."""
        for name in ("a", "b", "c", "d"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                return int(value.size)
        return 1

    @property
    def is_batch(self) -> bool:
        """True when at least one field is an array (a population)."""
        return any(isinstance(getattr(self, n), np.ndarray) for n in ("a", "b", "c", "d"))

    def as_arrays(self, n: int | None = None) -> tuple[np.ndarray, ...]:
        """``(a, b, c, d)`` as float64 arrays of shape ``(n,)`` (default ``n_neurons``)."""
        n = self.n_neurons if n is None else n
        return tuple(
            np.broadcast_to(np.asarray(getattr(self, k), dtype=np.float64), (n,)).copy()
            for k in ("a", "b", "c", "d")
        )

    @classmethod
    def stack(cls, params: Sequence[IzhikevichParams]) -> IzhikevichParams:
        """One population from a sequence of parameter sets (scalar or array each)."""
        if len(params) == 0:
            raise ValueError("IzhikevichParams.stack: expected at least one parameter set, got 0")
        parts = [p.as_arrays() for p in params]
        return cls(*(np.concatenate([p[i] for p in parts]) for i in range(4)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IzhikevichParams):
            return NotImplemented
        return all(
            np.array_equal(np.asarray(getattr(self, k)), np.asarray(getattr(other, k)))
            for k in ("a", "b", "c", "d")
        )

    def __repr__(self) -> str:
        if self.is_batch:
            return f"IzhikevichParams(<{self.n_neurons} neurons>)"
        return f"IzhikevichParams(a={self.a:g}, b={self.b:g}, c={self.c:g}, d={self.d:g})"


# --------------------------------------------------------------------------------------
# Published patterns
# --------------------------------------------------------------------------------------

STANDARD_QUADRATIC = (0.04, 5.0, 140.0)
"""(k2, k1, k0) of v' = k2 v^2 + k1 v + k0 - u + I in the 2003 model."""


@dataclass(frozen=True, eq=False)
class IzhikevichPattern:
    """One published firing pattern: model variant, initial state, step and stimulus.

    The v and u updates of a pattern are::

        v <- v + dt * (k2 v^2 + k1 v + k0 - u + I(t))         (k2, k1, k0) = quadratic
        u <- u + dt * a * (b (v - u_rest_mv) - u_decay * u)

    which is the standard model for ``quadratic = (0.04, 5, 140)``, ``u_rest_mv = 0``,
    ``u_decay = 1``. The 2004 figure code changes these for three panels (see `note`):
    (G) Class 1 excitable and (L) integrator use ``0.04 v^2 + 4.1 v + 108``;
    (R) accommodation uses ``u <- u + dt * a * b * (v + 65)`` (``u_rest_mv = -65``,
    ``u_decay = 0``) and starts at u = -16.

    Parameters
    ----------
    name : str
        Key in `PATTERNS` (e.g. ``"tonic_spiking"``, ``"RS"``).
    title : str
        Panel title, e.g. ``"(A) tonic spiking"``.
    params : IzhikevichParams
        (a, b, c, d).
    v0 : float
        Initial membrane potential (mV).
    dt_ms : float
        Integration step (ms).
    duration_ms : float
        Last time simulated (ms); steps are t = 0, dt, ..., duration_ms.
    current : callable
        I(t) for t in ms, called once per step with a Python float (t = k * dt).
    protocol : str
        The stimulus in words, e.g. ``"I = 14 for t > 10 ms"``.
    u0 : float or None
        Initial recovery variable; None means ``b * v0`` (the published default).
    quadratic : tuple of 3 floats
        (k2, k1, k0) of the v equation.
    u_rest_mv, u_decay : float
        Variant of the u update (see above).
    source : str
        Where the numbers come from.
    note : str
        How this panel departs from the canonical model or from the paper's text.
    """

    name: str
    title: str
    params: IzhikevichParams
    v0: float
    dt_ms: float
    duration_ms: float
    current: Callable[[float], float]
    protocol: str
    u0: float | None = None
    quadratic: tuple[float, float, float] = STANDARD_QUADRATIC
    u_rest_mv: float = 0.0
    u_decay: float = 1.0
    source: str = "Izhikevich (2004), Fig. 1; figure code figure1.m"
    note: str = ""

    @property
    def n_steps(self) -> int:
        """Number of steps, ``duration_ms / dt_ms + 1`` (t = 0 and t = duration_ms included)."""
        return _n_steps(self.duration_ms, self.dt_ms)

    @property
    def t_ms(self) -> np.ndarray:
        """Step times ``k * dt_ms`` (ms), shape (n_steps,)."""
        return np.arange(self.n_steps) * self.dt_ms

    def current_array(self) -> np.ndarray:
        """I(k * dt) for every step, shape (n_steps,)."""
        return np.array([float(self.current(float(t))) for t in self.t_ms])

    @property
    def initial_u(self) -> float:
        """u0, or ``b * v0`` when u0 is None."""
        return float(self.params.b) * self.v0 if self.u0 is None else float(self.u0)

    def simulate(self, engine: str = "torch", dtype: str = "float64") -> NeuronTrace:
        """Run the published protocol (see `simulate_neuron`)."""
        return simulate_neuron(self, engine=engine, dtype=dtype)


# The stimuli of figure1.m, one function each, transcribed with its strict inequalities.
def _i_tonic_spiking(t: float) -> float:
    return 14.0 if t > 10.0 else 0.0


def _i_phasic_spiking(t: float) -> float:
    return 0.5 if t > 20.0 else 0.0


def _i_tonic_bursting(t: float) -> float:
    return 15.0 if t > 22.0 else 0.0


def _i_phasic_bursting(t: float) -> float:
    return 0.6 if t > 20.0 else 0.0


def _i_mixed_mode(t: float) -> float:
    return 10.0 if t > 16.0 else 0.0


def _i_spike_frequency_adaptation(t: float) -> float:
    return 30.0 if t > 8.5 else 0.0


def _i_class_1(t: float) -> float:
    return 0.075 * (t - 30.0) if t > 30.0 else 0.0


def _i_class_2(t: float) -> float:
    return -0.5 + 0.015 * (t - 30.0) if t > 30.0 else -0.5


def _i_spike_latency(t: float) -> float:
    return 7.04 if 10.0 < t < 13.0 else 0.0


def _i_subthreshold_oscillations(t: float) -> float:
    return 2.0 if 20.0 < t < 25.0 else 0.0


def _in_windows(t: float, starts: Sequence[float], width: float) -> bool:
    return any(s < t < s + width for s in starts)


_RESONATOR_T = (400.0 / 10, 400.0 / 10 + 20, 0.7 * 400.0, 0.7 * 400.0 + 40)
_INTEGRATOR_T = (100.0 / 11, 100.0 / 11 + 5, 0.7 * 100.0, 0.7 * 100.0 + 10)


def _i_resonator(t: float) -> float:
    return 0.65 if _in_windows(t, _RESONATOR_T, 4.0) else 0.0


def _i_integrator(t: float) -> float:
    return 9.0 if _in_windows(t, _INTEGRATOR_T, 2.0) else 0.0


def _i_rebound(t: float) -> float:
    return -15.0 if 20.0 < t < 25.0 else 0.0


def _i_threshold_variability(t: float) -> float:
    if 10.0 < t < 15.0 or 80.0 < t < 85.0:
        return 1.0
    if 70.0 < t < 75.0:
        return -6.0
    return 0.0


def _i_bistability(t: float) -> float:
    return 1.24 if _in_windows(t, (300.0 / 8, 216.0), 5.0) else 0.24


def _i_dap(t: float) -> float:
    return 20.0 if abs(t - 10.0) < 1.0 else 0.0


def _i_accommodation(t: float) -> float:
    if t < 200.0:
        return t / 25.0
    if t < 300.0:
        return 0.0
    if t < 312.5:
        return (t - 300.0) / 12.5 * 4.0
    return 0.0


def _i_inhibition_induced(t: float) -> float:
    return 80.0 if t < 50.0 or t > 250.0 else 75.0


# The 2003 cell classes (Fig. 2 of the 2003 paper): a DC step after a quiet start.
def _i_step_10_after_15(t: float) -> float:
    return 10.0 if t > 15.0 else 0.0


def _i_step_14_after_15(t: float) -> float:
    return 14.0 if t > 15.0 else 0.0


def _i_step_10_after_25(t: float) -> float:
    return 10.0 if t > 25.0 else 0.0


def _i_tc(t: float) -> float:
    return 2.0 if t > 50.0 else 0.0


def _i_rz_pulses(t: float) -> float:
    # a pulse pair 10 ms apart rides the damped subthreshold oscillation over threshold
    # where the same pulse alone stays subthreshold
    return 0.5 if _in_windows(t, (40.0, 50.0, 100.0), 5.0) else 0.0


_P = IzhikevichParams
_CODE = "Izhikevich (2004), Fig. 1; figure code figure1.m"
_CODE_2003 = "Izhikevich (2003), Fig. 2 (parameters); stimulus protocol as stated in the note"

_PATTERN_LIST = [
    IzhikevichPattern("tonic_spiking", "(A) tonic spiking", _P(0.02, 0.2, -65, 6), -70.0,
                      0.25, 100.0, _i_tonic_spiking, "I = 14 for t > 10 ms", source=_CODE),
    IzhikevichPattern("phasic_spiking", "(B) phasic spiking", _P(0.02, 0.25, -65, 6), -64.0,
                      0.25, 200.0, _i_phasic_spiking, "I = 0.5 for t > 20 ms", source=_CODE),
    IzhikevichPattern("tonic_bursting", "(C) tonic bursting", _P(0.02, 0.2, -50, 2), -70.0,
                      0.25, 220.0, _i_tonic_bursting, "I = 15 for t > 22 ms", source=_CODE),
    IzhikevichPattern("phasic_bursting", "(D) phasic bursting", _P(0.02, 0.25, -55, 0.05),
                      -64.0, 0.2, 200.0, _i_phasic_bursting, "I = 0.6 for t > 20 ms",
                      source=_CODE),
    IzhikevichPattern("mixed_mode", "(E) mixed mode", _P(0.02, 0.2, -55, 4), -70.0, 0.25,
                      160.0, _i_mixed_mode, "I = 10 for t > 16 ms", source=_CODE),
    IzhikevichPattern("spike_frequency_adaptation", "(F) spike freq. adaptation",
                      _P(0.01, 0.2, -65, 8), -70.0, 0.25, 85.0, _i_spike_frequency_adaptation,
                      "I = 30 for t > 8.5 ms", source=_CODE),
    IzhikevichPattern("class_1_excitable", "(G) Class 1 excitable", _P(0.02, -0.1, -55, 6),
                      -60.0, 0.25, 300.0, _i_class_1, "ramp I = 0.075 (t - 30) for t > 30 ms",
                      quadratic=(0.04, 4.1, 108.0), source=_CODE,
                      note="figure1.m uses v' = 0.04 v^2 + 4.1 v + 108 - u + I for this panel, "
                      "not the standard 0.04 v^2 + 5 v + 140 of the paper's eq. (1)"),
    IzhikevichPattern("class_2_excitable", "(H) Class 2 excitable", _P(0.2, 0.26, -65, 0),
                      -64.0, 0.25, 300.0, _i_class_2,
                      "ramp I = -0.5 + 0.015 (t - 30) for t > 30 ms, -0.5 before", source=_CODE),
    IzhikevichPattern("spike_latency", "(I) spike latency", _P(0.02, 0.2, -65, 6), -70.0, 0.2,
                      100.0, _i_spike_latency, "pulse I = 7.04 for 10 < t < 13 ms",
                      source=_CODE),
    IzhikevichPattern("subthreshold_oscillations", "(J) subthreshold osc.",
                      _P(0.05, 0.26, -60, 0), -62.0, 0.25, 200.0, _i_subthreshold_oscillations,
                      "pulse I = 2 for 20 < t < 25 ms", source=_CODE),
    IzhikevichPattern("resonator", "(K) resonator", _P(0.1, 0.26, -60, -1), -62.0, 0.25, 400.0,
                      _i_resonator, "pulses I = 0.65, 4 ms, at 40, 60, 280 and 320 ms",
                      source=_CODE),
    IzhikevichPattern("integrator", "(L) integrator", _P(0.02, -0.1, -55, 6), -60.0, 0.25,
                      100.0, _i_integrator, "pulses I = 9, 2 ms, at 9.09, 14.09, 70, 80 ms",
                      quadratic=(0.04, 4.1, 108.0), source=_CODE,
                      note="figure1.m uses v' = 0.04 v^2 + 4.1 v + 108 - u + I for this panel"),
    IzhikevichPattern("rebound_spike", "(M) rebound spike", _P(0.03, 0.25, -60, 4), -64.0, 0.2,
                      200.0, _i_rebound, "pulse I = -15 for 20 < t < 25 ms", source=_CODE),
    IzhikevichPattern("rebound_burst", "(N) rebound burst", _P(0.03, 0.25, -52, 0), -64.0, 0.2,
                      200.0, _i_rebound, "pulse I = -15 for 20 < t < 25 ms", source=_CODE),
    IzhikevichPattern("threshold_variability", "(O) thresh. variability",
                      _P(0.03, 0.25, -60, 4), -64.0, 0.25, 100.0, _i_threshold_variability,
                      "I = 1 for 10-15 and 80-85 ms, I = -6 for 70-75 ms", source=_CODE),
    IzhikevichPattern("bistability", "(P) bistability", _P(0.1, 0.26, -60, 0), -61.0, 0.25,
                      300.0, _i_bistability, "I = 0.24, pulses 1.24 at 37.5-42.5 and 216-221 ms",
                      source=_CODE),
    IzhikevichPattern("depolarizing_after_potential", "(Q) DAP", _P(1.0, 0.2, -60, -21), -70.0,
                      0.1, 50.0, _i_dap, "pulse I = 20 for |t - 10| < 1 ms", source=_CODE),
    IzhikevichPattern("accommodation", "(R) accommodation", _P(0.02, 1.0, -55, 4), -65.0, 0.5,
                      400.0, _i_accommodation,
                      "slow ramp t/25 to 200 ms; fast ramp to 4 over 300-312.5 ms",
                      u0=-16.0, u_rest_mv=-65.0, u_decay=0.0, source=_CODE,
                      note="figure1.m uses u' = a b (v + 65) for this panel (no -u term) and "
                      "starts at u = -16"),
    IzhikevichPattern("inhibition_induced_spiking", "(S) inh. induced spiking",
                      _P(-0.02, -1.0, -60, 8), -63.8, 0.5, 350.0, _i_inhibition_induced,
                      "I = 80, lowered to 75 for 50-250 ms", source=_CODE,
                      note="standard equations with a < 0 and b < 0 (figure1.m)"),
    IzhikevichPattern("inhibition_induced_bursting", "(T) inh. induced bursting",
                      _P(-0.026, -1.0, -45, -2), -63.8, 0.5, 350.0, _i_inhibition_induced,
                      "I = 80, lowered to 75 for 50-250 ms", source=_CODE,
                      note="standard equations with a < 0, b < 0, d < 0 (figure1.m); some "
                      "re-implementations use d = 0 instead of the code's -2"),
    # The 2003 cell classes: (a, b, c, d) of Fig. 2 of the 2003 paper.
    IzhikevichPattern("RS", "RS: regular spiking", _P(0.02, 0.2, -65, 8), -63.0, 0.25, 150.0,
                      _i_step_14_after_15, "I = 14 for t > 15 ms", source=_CODE_2003,
                      note="protocol: v0 = -63, I = 14 after 15 ms"),
    IzhikevichPattern("IB", "IB: intrinsically bursting", _P(0.02, 0.2, -55, 4), -70.0, 0.25,
                      150.0, _i_step_10_after_15, "I = 10 for t > 15 ms", source=_CODE_2003,
                      note="protocol ours (same step as CH): an initial burst, then tonic "
                      "spikes"),
    IzhikevichPattern("CH", "CH: chattering", _P(0.02, 0.2, -50, 2), -70.0, 0.25, 150.0,
                      _i_step_10_after_15, "I = 10 for t > 15 ms", source=_CODE_2003),
    IzhikevichPattern("FS", "FS: fast spiking", _P(0.1, 0.2, -65, 2), -70.0, 0.25, 150.0,
                      _i_step_10_after_15, "I = 10 for t > 15 ms", source=_CODE_2003),
    IzhikevichPattern("TC", "TC: thalamo-cortical", _P(0.02, 0.25, -65, 0.05), -87.0, 0.25,
                      150.0, _i_tc, "start at v = -87 mV; I = 2 for t > 50 ms",
                      source=_CODE_2003,
                      note="protocol ours: released from -87 mV (the paper's hyperpolarised "
                      "TC trace) the cell fires a rebound burst, then tonic spikes under a DC "
                      "step"),
    IzhikevichPattern("RZ", "RZ: resonator", _P(0.1, 0.26, -65, 2), -62.5, 0.25, 150.0,
                      _i_rz_pulses, "pulses I = 0.5, 5 ms, at 40, 50 and 100 ms",
                      source=_CODE_2003,
                      note="protocol ours: a pulse pair at the resonant period fires, a lone "
                      "pulse does not"),
    IzhikevichPattern("LTS", "LTS: low-threshold spiking", _P(0.02, 0.25, -65, 2), -63.0, 0.25,
                      250.0, _i_step_10_after_25, "I = 10 for t > 25 ms", source=_CODE_2003),
]

PATTERNS: dict[str, IzhikevichPattern] = {p.name: p for p in _PATTERN_LIST}
"""The 20 features of Izhikevich (2004, Fig. 1, in panel order A-T) and the 7 cell classes of
Izhikevich (2003, Fig. 2), by name."""

FEATURES_2004 = tuple(p.name for p in _PATTERN_LIST[:20])
"""Names of the 20 panels of the 2004 figure, in panel order (A) to (T)."""

CELL_CLASSES_2003 = ("RS", "IB", "CH", "FS", "TC", "RZ", "LTS")
"""Names of the 2003 cell classes."""


def get_pattern(name: str) -> IzhikevichPattern:
    """The pattern called ``name``; unknown names raise a KeyError listing the valid ones."""
    if isinstance(name, IzhikevichPattern):
        return name
    if name in PATTERNS:
        return PATTERNS[name]
    close = difflib.get_close_matches(str(name), list(PATTERNS), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(
        f"pattern: unknown pattern {name!r}; valid patterns are: {', '.join(PATTERNS)}.{hint}"
    )


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class NeuronTrace:
    """What `simulate_neuron` returns.

    Attributes
    ----------
    t_ms : ndarray, shape (n_steps,)
        Step times k * dt (ms).
    v : ndarray, shape (n_steps,) or (n_steps, n_neurons)
        Membrane potential (mV) after the update of step k; at a spike step it reads
        30 mV (the spike peak, as the published figure draws it) and the reset to c
        happens before step k + 1.
    u : ndarray, same shape as v
        Recovery variable after step k (after the reset on a spike step).
    spike_times_ms : ndarray or list of ndarray
        Times k * dt of the steps where v exceeded 30 mV (one array per neuron for a
        population).
    spike_steps : ndarray or list of ndarray
        The same as step indices k.
    dt_ms : float
        Integration step (ms).
    engine, dtype : str
        How it was computed.
    name : str or None
        Pattern name, or None for user parameters.
    """

    t_ms: np.ndarray
    v: np.ndarray
    u: np.ndarray
    spike_times_ms: np.ndarray | list[np.ndarray]
    spike_steps: np.ndarray | list[np.ndarray]
    dt_ms: float
    engine: str
    dtype: str
    name: str | None = None

    @property
    def n_spikes(self) -> int | np.ndarray:
        """Spike count (an int, or one per neuron for a population)."""
        if isinstance(self.spike_steps, list):
            return np.array([len(s) for s in self.spike_steps])
        return len(self.spike_steps)

    @property
    def duration_ms(self) -> float:
        """Simulated time span, ``t_ms[-1] + dt_ms`` (ms)."""
        return float(self.t_ms[-1] + self.dt_ms)

    def rate_hz(self) -> float | np.ndarray:
        """Mean firing rate over the whole trace (spikes per second)."""
        return self.n_spikes / (self.duration_ms / 1000.0)


# --------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------


#: The most time steps one simulation takes (its traces are kept in memory).
MAX_STEPS = 100_000_000


def _n_steps(duration_ms: float, dt_ms: float) -> int:
    ratio = duration_ms / dt_ms
    if ratio > MAX_STEPS:
        raise ValueError(
            f"duration_ms: {duration_ms!r} ms in steps of dt_ms={dt_ms!r} is {ratio:.3g} steps; "
            f"expected at most {MAX_STEPS:.0e} (the traces are kept in memory)"
        )
    k = round(ratio)
    if abs(ratio - k) > 1e-9 * max(1.0, abs(ratio)):
        raise ValueError(
            f"duration_ms: expected a whole number of steps of dt_ms={dt_ms!r}, got "
            f"duration_ms={duration_ms!r} ({ratio:.6g} steps)"
        )
    return int(k) + 1


def _check_positive(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return out


@dataclass
class _Batch:
    """Per-neuron arrays of a vectorised run; each neuron may have its own step and model."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    k2: np.ndarray
    k1: np.ndarray
    k0: np.ndarray
    u_rest: np.ndarray
    u_decay: np.ndarray
    dt: np.ndarray
    v0: np.ndarray
    u0: np.ndarray
    current: np.ndarray  # (n_steps_max, n) or shared (n_steps_max, 1); zero-padded
    n_steps: np.ndarray  # (n,)
    labels: list[str]

    @property
    def n(self) -> int:
        return int(self.a.size)


def _current_matrix(current: Any, t_ms: np.ndarray, n: int) -> np.ndarray:
    """The stimulus as an (n_steps, n) float64 array, or (n_steps, 1) when all neurons share
    it; checks length and finiteness."""
    n_steps = t_ms.size
    if callable(current):
        try:
            values = [np.asarray(current(float(t)), dtype=np.float64) for t in t_ms]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"current: the callable must return a number (or one per neuron) for each t "
                f"(ms); got an error: {err}"
            ) from err
        if all(v.ndim == 0 for v in values):
            out = np.array(values, dtype=np.float64)[:, None]
        else:
            try:
                out = np.stack([np.broadcast_to(v, (n,)) for v in values])
            except ValueError:
                bad = next(v.shape for v in values if v.shape not in ((), (n,), (1,)))
                raise ValueError(
                    f"current: a callable must return a number or {n} values (one per "
                    f"neuron), got shape {bad}"
                ) from None
    else:
        try:
            arr = np.asarray(current, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                "current: expected a number, an array with one value per step, or a callable "
                f"of t (ms), got {type(current).__name__}"
            ) from None
        if arr.ndim == 0:
            out = np.full((n_steps, 1), float(arr))
        elif arr.ndim == 1:
            if arr.shape[0] != n_steps:
                raise ValueError(
                    f"current: expected {n_steps} values (one per step t = 0, dt, ..., "
                    f"duration_ms), got {arr.shape[0]}"
                )
            out = arr[:, None].copy()
        elif arr.ndim == 2 and arr.shape == (n_steps, n):
            out = arr.copy()
        else:
            raise ValueError(
                f"current: expected shape ({n_steps},) or ({n_steps}, {n}) (steps, neurons), "
                f"got {arr.shape}"
            )
    bad = ~np.isfinite(out)
    if bad.any():
        k, i = np.argwhere(bad)[0]
        raise ValueError(
            f"current: expected finite values, got {out[k, i]!r} at t = {t_ms[k]:g} ms "
            f"(step {k}, neuron {i})"
        )
    return out


def _batch_from_patterns(patterns: Sequence[IzhikevichPattern]) -> _Batch:
    n_steps = np.array([p.n_steps for p in patterns])
    current = np.zeros((int(n_steps.max()), len(patterns)))
    for i, p in enumerate(patterns):
        current[: n_steps[i], i] = p.current_array()

    def col(f: Callable[[IzhikevichPattern], float]) -> np.ndarray:
        return np.array([float(f(p)) for p in patterns])

    return _Batch(
        a=col(lambda p: p.params.a), b=col(lambda p: p.params.b),
        c=col(lambda p: p.params.c), d=col(lambda p: p.params.d),
        k2=col(lambda p: p.quadratic[0]), k1=col(lambda p: p.quadratic[1]),
        k0=col(lambda p: p.quadratic[2]), u_rest=col(lambda p: p.u_rest_mv),
        u_decay=col(lambda p: p.u_decay), dt=col(lambda p: p.dt_ms),
        v0=col(lambda p: p.v0), u0=col(lambda p: p.initial_u),
        current=current, n_steps=n_steps, labels=[p.name for p in patterns],
    )


def _check_choice(name: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        close = difflib.get_close_matches(str(value), list(valid), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{name}: expected one of {list(valid)}, got {value!r}.{hint}")
    return value


def _run(batch: _Batch, engine: str, dtype: str, device: str) -> tuple[np.ndarray, ...]:
    """Integrate a batch; returns raw v (before the peak clip), u, spikes, each (K, n)."""
    if engine == "torch":
        v, u, spikes = _run_torch(batch, dtype, device)
    else:
        v, u, spikes = _run_brian2(batch, dtype)
    _check_divergence(batch, v, u)
    return v, u, spikes


def _check_divergence(batch: _Batch, v: np.ndarray, u: np.ndarray) -> None:
    steps = np.arange(v.shape[0])[:, None]
    live = steps < batch.n_steps[None, :]
    with np.errstate(invalid="ignore"):
        bad = live & (~np.isfinite(v) | ~np.isfinite(u) | (np.abs(v) > DIVERGENCE_LIMIT_MV))
    if not bad.any():
        return
    ks, idx = np.nonzero(bad)
    first = int(np.argmin(ks))  # earliest step over all neurons
    k, i = int(ks[first]), int(idx[first])
    raise ValueError(
        f"dt_ms={batch.dt[i]:g} ms is too large: v of neuron {i} ({batch.labels[i]}) "
        f"diverged to {v[k, i]:.4g} mV at t = {k * batch.dt[i]:g} ms (step {k}); the "
        "integration needs a smaller dt_ms (the published patterns use 0.1-0.5 ms)"
    )


def _run_torch(batch: _Batch, dtype: str, device: str) -> tuple[np.ndarray, ...]:
    """The figure1.m update, vectorised over neurons; one Python iteration per step."""
    import torch  # lazy, with the device helper: importing this module needs no torch

    from neurosim._device import resolve_device

    td = torch.float64 if dtype == "float64" else torch.float32
    dev = resolve_device(device)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float64), device=dev).to(td)

    a, b, c, d = t(batch.a), t(batch.b), t(batch.c), t(batch.d)
    k2, k1, k0 = t(batch.k2), t(batch.k1), t(batch.k0)
    u_rest, u_decay, h = t(batch.u_rest), t(batch.u_decay), t(batch.dt)
    ha = h * a  # figure1.m computes tau*a*(...) left to right, i.e. (tau*a)*(...)
    current = t(batch.current)
    v, u = t(batch.v0), t(batch.u0)
    n_total, shape = current.shape[0], (current.shape[0], batch.n)
    v_rec = torch.empty(shape, dtype=td, device=dev)
    u_rec = torch.empty(shape, dtype=td, device=dev)
    spk_rec = torch.empty(shape, dtype=torch.bool, device=dev)
    peak = torch.tensor(V_PEAK_MV, dtype=td, device=dev)
    with torch.no_grad():
        for k in range(n_total):
            # same operand order as figure1.m, so float64 rounding matches it bit for bit
            v = v + h * (k2 * (v * v) + k1 * v + k0 - u + current[k])
            u = u + ha * (b * (v - u_rest) - u_decay * u)
            fired = v > peak
            v_rec[k] = v
            spk_rec[k] = fired
            v = torch.where(fired, c, v)
            u = torch.where(fired, u + d, u)
            u_rec[k] = u
    return (v_rec.cpu().numpy().astype(np.float64), u_rec.cpu().numpy().astype(np.float64),
            spk_rec.cpu().numpy())


_BRIAN2_MODEL = """
v : 1
u : 1
a : 1 (constant)
b : 1 (constant)
c : 1 (constant)
d : 1 (constant)
k2 : 1 (constant)
k1 : 1 (constant)
k0 : 1 (constant)
u_rest : 1 (constant)
u_decay : 1 (constant)
h : 1 (constant)
dv_dt : 1
"""
# One Brian2 time step = one step k of every neuron; each neuron's own step (ms) is `h`, so
# panels with different dt share one network. The update runs in the 'groups' slot, before
# the threshold and reset slots: Izhikevich's order, not a Brian2 state updater (whose
# 'euler' would use the old v for u).
# Code generation (sympy) re-orders the terms of a sum; each statement below has a single
# binary sum, which is exact whichever way round, so the figure1.m rounding is kept.
_BRIAN2_UPDATE = """
dv_dt = k2*(v*v)
dv_dt = dv_dt + k1*v
dv_dt = dv_dt + k0
dv_dt = dv_dt - u
dv_dt = dv_dt + I_ext(t, i)
v = v + h*dv_dt
u = u + h*a*(b*(v - u_rest) - u_decay*u)
"""


def _run_brian2(batch: _Batch, dtype: str) -> tuple[np.ndarray, ...]:
    """The same model as Brian2 code (NeuronGroup + run_regularly), numpy target."""
    import brian2 as b2

    np_dtype = np.float64 if dtype == "float64" else np.float32
    old_target = b2.prefs.codegen.target
    old_loop = b2.prefs.codegen.loop_invariant_optimisations
    # numpy target: no compiler start-up; no loop-invariant rewriting, so the expressions
    # are evaluated in the order written (float64 results then match figure1.m)
    b2.prefs.codegen.target = "numpy"
    b2.prefs.codegen.loop_invariant_optimisations = False
    try:
        clock_dt = 1.0 * b2.ms
        n_total = batch.current.shape[0]
        values = np.broadcast_to(batch.current, (n_total, batch.n)).astype(np_dtype)
        i_ext = b2.TimedArray(values, dt=clock_dt)
        group = b2.NeuronGroup(
            batch.n, _BRIAN2_MODEL, threshold="v > v_peak", reset="v = c\nu = u + d",
            method=None, dt=clock_dt, dtype=np_dtype, name="izhikevich*",
        )
        for name in ("a", "b", "c", "d", "k2", "k1", "k0", "u_rest", "u_decay"):
            setattr(group, name, getattr(batch, name))
        group.h = batch.dt
        group.v = batch.v0
        group.u = batch.u0
        group.run_regularly(_BRIAN2_UPDATE, when="groups", name="izhikevich_update*")
        v_mon = b2.StateMonitor(group, "v", record=True, when="after_groups")
        u_mon = b2.StateMonitor(group, "u", record=True, when="after_resets")
        spikes = b2.SpikeMonitor(group)
        net = b2.Network(group, v_mon, u_mon, spikes)
        net.run(n_total * clock_dt, namespace={"I_ext": i_ext, "v_peak": V_PEAK_MV})
        v = np.asarray(v_mon.v, dtype=np.float64).T
        u = np.asarray(u_mon.u, dtype=np.float64).T
        spk = np.zeros((n_total, batch.n), dtype=bool)
        steps = np.rint(np.asarray(spikes.t / clock_dt)).astype(int)
        spk[steps, np.asarray(spikes.i)] = True
    finally:
        b2.prefs.codegen.target = old_target
        b2.prefs.codegen.loop_invariant_optimisations = old_loop
    return v, u, spk


def _traces(batch: _Batch, v: np.ndarray, u: np.ndarray, spikes: np.ndarray, engine: str,
            dtype: str) -> list[NeuronTrace]:
    out = []
    for i in range(batch.n):
        k = int(batch.n_steps[i])
        steps = np.flatnonzero(spikes[:k, i])
        vi = np.where(spikes[:k, i], V_PEAK_MV, v[:k, i])
        t_ms = np.arange(k) * batch.dt[i]
        out.append(NeuronTrace(t_ms=t_ms, v=vi, u=u[:k, i].copy(), spike_times_ms=t_ms[steps],
                               spike_steps=steps, dt_ms=float(batch.dt[i]), engine=engine,
                               dtype=dtype, name=batch.labels[i]))
    return out


def simulate_neuron(
    params_or_pattern_name: str | IzhikevichPattern | IzhikevichParams
    | Sequence[IzhikevichParams],
    current: float | np.ndarray | Callable[[float], Any] | None = None,
    duration_ms: float | None = None,
    dt_ms: float | None = None,
    v0: float | np.ndarray | None = None,
    u0: float | np.ndarray | None = None,
    engine: str = "torch",
    dtype: str = "float64",
    device: str = "cpu",
    verbose: bool | None = None,
) -> NeuronTrace:
    """Simulate Izhikevich neurons with the published update order.

    Each step k (t = k dt) does, in this order (Izhikevich's figure code, not plain
    forward Euler, whose u update would use the old v and does not reproduce the
    published patterns)::

        v <- v + dt (0.04 v^2 + 5 v + 140 - u + I(t))
        u <- u + dt a (b v - u)                        # with the NEW v
        if v > 30: record t, v <- c, u <- u + d        # strictly greater

    Parameters
    ----------
    params_or_pattern_name : str, IzhikevichPattern, IzhikevichParams or sequence
        A name from `PATTERNS` (its published model variant, v0, u0, dt, duration and
        stimulus are the defaults of the arguments below), a pattern, one parameter set,
        a population (`IzhikevichParams` with array fields) or a sequence of parameter
        sets (simulated together, vectorised over neurons).
    current : float, array or callable, optional
        Input current: a number; an array with one value per step, shape (n_steps,) or
        (n_steps, n_neurons), where n_steps = duration_ms / dt_ms + 1; or a callable
        I(t) evaluated at t = k dt (ms) for k = 0, 1, ..., returning a number or one
        value per neuron. Required unless a pattern is given.
    duration_ms : float, optional
        Last time simulated (ms): steps t = 0, dt, ..., duration_ms (both included, as in
        the published ``tspan = 0:tau:T``); must be a whole number of steps. Required
        unless a pattern is given.
    dt_ms : float, optional
        Step (ms). Default: the pattern's, else 0.25 ms.
    v0 : float or array, optional
        Initial membrane potential (mV). Default: the pattern's, else -65 mV.
    u0 : float or array, optional
        Initial recovery variable. Default: the pattern's when v0 is the pattern's too,
        else b * v0.
    engine : {"torch", "brian2"}
        ``"torch"`` (vectorised, CPU or GPU) or ``"brian2"`` (the same equations as a
        Brian2 NeuronGroup with a run_regularly update, numpy target).
    dtype : {"float64", "float32"}
        Floating point precision. float64 reproduces the published traces bit for bit
        (both engines); float32 spike counts stay within +-1 of them.
    device : str
        Torch device (``"cpu"``, ``"cuda"``, ``"auto"``); ignored by Brian2.
    verbose : bool or None
        Log the run at INFO level.

    Returns
    -------
    NeuronTrace
        ``t_ms`` (n_steps,), ``v`` and ``u`` (n_steps,) for one neuron or
        (n_steps, n_neurons) for a population, ``spike_times_ms`` (an array, or a list
        of arrays per neuron).

    Raises
    ------
    ValueError
        Non-finite parameters or stimulus, a current of the wrong length, an unknown
        engine or dtype, or a dt so large that v diverges (the message names dt and the
        neuron).
    KeyError
        An unknown pattern name (the message lists the valid names).

    References
    ----------
    Izhikevich (2003), IEEE TNN 14:1569, eqs. (1)-(3); Izhikevich (2004), IEEE TNN
    15:1063, Fig. 1 and its figure code.
    """
    engine = _check_choice("engine", engine, ENGINES)
    dtype = _check_choice("dtype", dtype, DTYPES)
    target = params_or_pattern_name
    pattern = None
    if isinstance(target, str | IzhikevichPattern):
        pattern = get_pattern(target)
        params = pattern.params
        current = pattern.current if current is None else current
        duration_ms = pattern.duration_ms if duration_ms is None else duration_ms
        dt_ms = pattern.dt_ms if dt_ms is None else dt_ms
        if v0 is None:
            v0 = pattern.v0
            if u0 is None:
                u0 = pattern.initial_u
    elif isinstance(target, IzhikevichParams):
        params = target
    elif isinstance(target, Sequence) and target and all(
        isinstance(p, IzhikevichParams) for p in target
    ):
        params = IzhikevichParams.stack(list(target))
    else:
        raise ValueError(
            "params_or_pattern_name: expected a pattern name, an IzhikevichPattern, "
            f"IzhikevichParams or a sequence of them, got {type(target).__name__}"
        )
    if current is None or duration_ms is None:
        raise ValueError(
            "current and duration_ms: required when simulating parameters rather than a "
            f"named pattern, got current={current!r}, duration_ms={duration_ms!r}"
        )
    dt_ms = _check_positive("dt_ms", 0.25 if dt_ms is None else dt_ms)
    duration_ms = _check_positive("duration_ms", duration_ms)
    n_steps = _n_steps(duration_ms, dt_ms)
    batch_mode = params.is_batch or not isinstance(target, str | IzhikevichPattern | _P)
    n = params.n_neurons
    a, b, c, d = params.as_arrays(n)
    v0_arr = _initial("v0", -65.0 if v0 is None else v0, n)
    u0_arr = b * v0_arr if u0 is None else _initial("u0", u0, n)
    t_ms = np.arange(n_steps) * dt_ms
    quad = pattern.quadratic if pattern is not None else STANDARD_QUADRATIC
    u_rest = pattern.u_rest_mv if pattern is not None else 0.0
    u_decay = pattern.u_decay if pattern is not None else 1.0
    labels = [pattern.name] if pattern is not None else [
        f"a={a[i]:g}, b={b[i]:g}, c={c[i]:g}, d={d[i]:g}" for i in range(n)
    ]
    full = np.full(n, 1.0)
    batch = _Batch(
        a=a, b=b, c=c, d=d, k2=quad[0] * full, k1=quad[1] * full, k0=quad[2] * full,
        u_rest=u_rest * full, u_decay=u_decay * full, dt=dt_ms * full, v0=v0_arr, u0=u0_arr,
        current=_current_matrix(current, t_ms, n), n_steps=np.full(n, n_steps), labels=labels,
    )
    if verbose:
        logger.info("simulate_neuron: %d neuron(s), %d steps of %g ms, engine=%s, dtype=%s",
                    n, n_steps, dt_ms, engine, dtype)
    v, u, spikes = _run(batch, engine, dtype, device)
    traces = _traces(batch, v, u, spikes, engine, dtype)
    if not batch_mode:
        return traces[0]
    return NeuronTrace(
        t_ms=t_ms, v=np.stack([tr.v for tr in traces], axis=1),
        u=np.stack([tr.u for tr in traces], axis=1),
        spike_times_ms=[tr.spike_times_ms for tr in traces],
        spike_steps=[tr.spike_steps for tr in traces], dt_ms=dt_ms, engine=engine,
        dtype=dtype, name=pattern.name if pattern is not None else None,
    )


def _initial(name: str, value: Any, n: int) -> np.ndarray:
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a number or one value per neuron ({n}), got {value!r}"
        ) from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got {value!r}")
    return arr


def simulate_patterns(
    names: Sequence[str] | None = None,
    engine: str = "torch",
    dtype: str = "float64",
    device: str = "cpu",
    verbose: bool | None = None,
) -> dict[str, NeuronTrace]:
    """Run several published patterns at once, each with its own protocol.

    All patterns go into one vectorised run (torch) or one Brian2 network (one neuron per
    pattern, each with its own step and model variant), which is much faster than one run
    per pattern. Results are identical to `simulate_neuron` of each pattern.

    Parameters
    ----------
    names : sequence of str, optional
        Keys of `PATTERNS` (default: all of them).
    engine, dtype, device, verbose
        As in `simulate_neuron`.

    Returns
    -------
    dict of str to NeuronTrace
        One trace per pattern, in the order asked.
    """
    engine = _check_choice("engine", engine, ENGINES)
    dtype = _check_choice("dtype", dtype, DTYPES)
    names = list(PATTERNS) if names is None else list(names)
    if not names:
        raise ValueError("names: expected at least one pattern name, got an empty list")
    patterns = [get_pattern(nm) for nm in names]
    batch = _batch_from_patterns(patterns)
    if verbose:
        logger.info("simulate_patterns: %d patterns, engine=%s, dtype=%s", len(names), engine,
                    dtype)
    v, u, spikes = _run(batch, engine, dtype, device)
    return {p.name: tr for p, tr in zip(patterns, _traces(batch, v, u, spikes, engine, dtype))}
