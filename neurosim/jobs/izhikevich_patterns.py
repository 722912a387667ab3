"""Job ``izhikevich_patterns``: the 20 features of Izhikevich (2004) and the 2003 cell classes.

Draws the 2004 paper's Fig. 1 as a 5 x 4 grid (one panel per neuro-computational feature,
membrane potential above the stimulus), the 2003 cell classes (RS, IB, CH, FS, TC, RZ, LTS)
as a second grid, and tabulates spike counts, first-spike times and mean rates. With
``cross_check_brian2`` it runs the same patterns on the other engine and reports whether the
spike trains agree step for step (in float64 they are bit-identical).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from neurosim.izhikevich import (
    CELL_CLASSES_2003,
    FEATURES_2004,
    PATTERNS,
    V_PEAK_MV,
    NeuronTrace,
    get_pattern,
    simulate_patterns,
)


class PatternsParams(BaseModel):
    """Parameters of the ``izhikevich_patterns`` job."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    patterns: list[str] | None = Field(
        None, description="names from neurosim.izhikevich.PATTERNS; default: all 27"
    )
    engine: Literal["torch", "brian2"] = Field("torch", description="engine that draws")
    dtype: Literal["float64", "float32"] = Field("float64", description="precision")
    cross_check_brian2: bool = Field(
        True, description="also run the other engine and compare spike steps"
    )

    @field_validator("patterns")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("patterns: expected at least one pattern name, got []")
        for name in value:
            try:
                get_pattern(name)
            except KeyError as err:
                raise ValueError(err.args[0]) from None
        return value


def _draw_panel(ax, name: str, trace: NeuronTrace) -> None:
    """Membrane potential, with the stimulus drawn as a small trace underneath (as Fig. 1)."""
    pattern = PATTERNS[name]
    current = pattern.current_array()
    span = np.ptp(current)
    # stimulus scaled to a 12 mV tall trace at the bottom of the panel
    stim = -95.0 + (12.0 * (current - current.min()) / span if span > 0 else 0.0 * current)
    ax.plot(trace.t_ms, trace.v, color="black", lw=0.8)
    ax.plot(trace.t_ms, stim, color="tab:blue", lw=0.8)
    ax.set_xlim(0, trace.t_ms[-1])
    ax.set_ylim(-100, V_PEAK_MV + 5)
    ax.set_title(f"{pattern.title} ({pattern.duration_ms:g} ms)", fontsize=8)
    ax.set_axis_off()


def _grid(names: list[str], traces: dict[str, NeuronTrace], n_cols: int, title: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_rows = int(np.ceil(len(names) / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols, 1.7 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, name in zip(axes.ravel(), names):
        _draw_panel(ax, name, traces[name])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def izhikevich_patterns(params: PatternsParams, run) -> dict:
    """Simulate and draw the published Izhikevich patterns.

    Parameters
    ----------
    params : PatternsParams
        Which patterns, which engine and precision, and whether to cross-check with the
        other engine.
    run : Run
        The run folder (figures, tables and metrics go there).

    Returns
    -------
    dict
        ``n_patterns``, ``spike_counts`` (name to count), and, when cross-checked,
        ``engines_identical_spike_steps`` (how many patterns agree step for step) and
        ``engines_max_abs_dv_mV``.

    References
    ----------
    Izhikevich (2004), IEEE TNN 15:1063, Fig. 1 and its figure code; Izhikevich (2003),
    IEEE TNN 14:1569, Fig. 2.
    """
    names = list(PATTERNS) if params.patterns is None else list(params.patterns)
    # 27 neurons: a GPU would only add launch latency, so "auto" stays on the CPU
    device = "cpu" if run.device == "auto" else run.device
    run.log(f"izhikevich_patterns: {len(names)} patterns on {params.engine} ({params.dtype})")
    traces = simulate_patterns(names, engine=params.engine, dtype=params.dtype, device=device)

    features = [n for n in FEATURES_2004 if n in traces]
    classes = [n for n in CELL_CLASSES_2003 if n in traces]
    if features:
        fig = _grid(features, traces, 4, "Izhikevich (2004), Fig. 1: neuro-computational features")
        run.add_figure(fig, "features_2004", caption=(
            "The 20 features of Izhikevich (2004, Fig. 1) with the published parameters, "
            "steps and stimuli (blue, not to scale); every panel spans -100 to 35 mV and "
            "its duration is in its title. Integrated in the published order "
            f"(v first, then u with the new v), engine {params.engine}, {params.dtype}."))
    if classes:
        fig = _grid(classes, traces, 4, "Izhikevich (2003), Fig. 2: cell classes")
        run.add_figure(fig, "cell_classes_2003", caption=(
            "The 2003 cell classes (regular spiking, intrinsically bursting, chattering, fast "
            "spiking, thalamo-cortical, resonator, low-threshold spiking) under a DC step or "
            "pulses (blue); -100 to 35 mV per panel."))

    other = None
    if params.cross_check_brian2:
        other_engine = "brian2" if params.engine == "torch" else "torch"
        run.log(f"cross-check on {other_engine}")
        other = simulate_patterns(names, engine=other_engine, dtype=params.dtype, device=device)

    rows = []
    for name in names:
        p, tr = PATTERNS[name], traces[name]
        row = {
            "pattern": name, "panel": p.title, "a": p.params.a, "b": p.params.b,
            "c": p.params.c, "d": p.params.d, "v0_mV": p.v0, "dt_ms": p.dt_ms,
            "duration_ms": p.duration_ms, "stimulus": p.protocol, "spikes": int(tr.n_spikes),
            "first_spike_ms": float(tr.spike_times_ms[0]) if tr.n_spikes else None,
            "rate_hz": round(float(tr.rate_hz()), 2),
        }
        if other is not None:
            row["same_spike_steps_on_both_engines"] = bool(
                np.array_equal(tr.spike_steps, other[name].spike_steps))
        rows.append(row)
    run.add_table("patterns", rows, caption=(
        "Published parameters and protocol of each pattern, spike count, first spike time and "
        "mean rate over the whole trace."))

    notes = [f"{PATTERNS[n].title}: {PATTERNS[n].note}" for n in names if PATTERNS[n].note]
    run.add_text("Integration and departures from the canonical model", (
        "Each step updates v, then u with the new v, then resets when v > 30 mV (strictly), "
        "as the published figure code does; plain forward Euler does not reproduce the "
        "published spike trains.\n\n" + "\n".join(notes)))

    metrics: dict = {
        "n_patterns": len(names),
        "engine": params.engine,
        "dtype": params.dtype,
        "spike_counts": {n: int(traces[n].n_spikes) for n in names},
    }
    if other is not None:
        metrics["engines_identical_spike_steps"] = sum(
            r["same_spike_steps_on_both_engines"] for r in rows)
        metrics["engines_max_abs_dv_mV"] = float(max(
            np.max(np.abs(traces[n].v - other[n].v)) for n in names))
    return metrics
