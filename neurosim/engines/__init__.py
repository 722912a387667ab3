"""Engines that run a :class:`neurosim.network.NetworkModel`: the device is pluggable.

``"torch"``  batched trials on CPU or CUDA, float32 or float64 (:mod:`.torch_engine`).
``"brian2"`` the same equations as a Brian2 ``NeuronGroup`` / ``Synapses``, in runtime
             (Cython or numpy) or ``cpp_standalone`` mode (:mod:`.brian2_engine`).

Both take the same arguments and return the same :class:`neurosim.network.SpikeRecord`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

ENGINES = ("torch", "brian2")

# |v| beyond this (or NaN/inf) means the Euler step diverged: a cell that spikes is reset at
# 30 mV, and no input a model of cortex sees pulls v below -1000 mV.
V_DIVERGED_MV = 1000.0


def get_engine(name: str) -> Callable[..., Any]:
    """Return the simulate function of engine ``name`` ("torch" or "brian2")."""
    if name == "torch":
        from neurosim.engines.torch_engine import simulate_torch

        return simulate_torch
    if name == "brian2":
        from neurosim.engines.brian2_engine import simulate_brian2

        return simulate_brian2
    close = difflib.get_close_matches(str(name), ENGINES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"engine: unknown engine {name!r}; expected one of {ENGINES}.{hint}")


@dataclass
class RunSpec:
    """Validated arguments of one simulation, shared by the engines."""

    duration_ms: float
    dt_ms: float
    n_steps: int
    batch: int
    noise_every: int
    inputs: np.ndarray | None  # (batch or 1, n_steps, n_channels), float64
    record_v: bool


def prepare_run(model: Any, duration_ms: float, dt_ms: float | None, inputs: Any, batch: int,
                record: tuple[str, ...]) -> RunSpec:
    """Check the run arguments against the model; raise ``ValueError`` naming the field."""
    model.validate()
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError(f"batch: expected an integer >= 1, got {batch!r}")
    batch = int(batch)
    dt = float(model.dt_ms if dt_ms is None else dt_ms)
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt_ms: expected a number > 0, got {dt_ms!r}")
    if not (np.isfinite(duration_ms) and duration_ms > 0):
        raise ValueError(f"duration_ms: expected a number > 0, got {duration_ms!r}")
    n_steps = int(round(duration_ms / dt))
    if n_steps < 1 or abs(n_steps * dt - duration_ms) > 1e-6 * max(dt, 1.0):
        raise ValueError(f"duration_ms: expected a multiple of dt_ms={dt}, got {duration_ms}")
    # the noise is redrawn every noise_interval_ms (every step if dt_ms is longer)
    ratio = model.noise_interval_ms / dt
    noise_every = max(int(round(ratio)), 1)
    if ratio > 1 and abs(noise_every - ratio) > 1e-9 * ratio:
        raise ValueError(
            f"dt_ms: the noise interval {model.noise_interval_ms} ms must be a multiple of "
            f"dt_ms, got dt_ms={dt}"
        )
    record = tuple(record)
    unknown = set(record) - {"spikes", "v"}
    if unknown:
        raise ValueError(f"record: expected items among ('spikes', 'v'), got {sorted(unknown)}")
    arr = None
    if inputs is not None:
        if model.input_weights is None:
            raise ValueError("inputs: the model has no input projection (input_weights is None)")
        if hasattr(inputs, "detach"):
            inputs = inputs.detach().cpu().numpy()
        arr = np.asarray(inputs, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[None]
        c = model.n_channels
        if arr.ndim != 3 or arr.shape[0] not in (1, batch) or arr.shape[1:] != (n_steps, c):
            raise ValueError(
                f"inputs: expected shape (batch={batch}, n_steps={n_steps}, n_channels={c}) "
                f"or (n_steps, n_channels), got {tuple(np.shape(inputs))}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError("inputs: expected finite values, got NaN or inf")
    return RunSpec(duration_ms=n_steps * dt, dt_ms=dt, n_steps=n_steps, batch=batch,
                   noise_every=noise_every, inputs=arr, record_v="v" in record)


# Up to this many input channels the projection is summed channel by channel (elementwise
# products and sums round the same way in numpy and torch, so both engines see the same input
# current to the last bit); beyond, a matrix product (BLAS orders its sums its own way).
EXACT_PROJECTION_MAX_CHANNELS = 16


def project_inputs(x: Any, w: Any) -> Any:
    """Input current ``x @ w`` for x (..., n_channels), w (n_channels, n); numpy or torch."""
    n_channels = w.shape[0]
    if n_channels > EXACT_PROJECTION_MAX_CHANNELS:
        return x @ w
    out = x[..., 0:1] * w[0]
    for ch in range(1, n_channels):
        out += x[..., ch:ch + 1] * w[ch]
    return out


def divergence_error(dt_ms: float, neuron: int, trial: int, t_ms: float, v: float) -> ValueError:
    """The error raised when the membrane potential of a neuron diverges."""
    return ValueError(
        f"dt_ms={dt_ms}: the membrane potential diverged (v={v:.4g} mV) for neuron {neuron} "
        f"(trial {trial}) by t={t_ms:g} ms; use a smaller dt_ms (Euler on v' = 0.04 v^2 + ... "
        "is unstable for large steps)"
    )
