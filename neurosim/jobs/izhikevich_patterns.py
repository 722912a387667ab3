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


# --------------------------------------------------------------------------------------
# What each panel is meant to show, as a check on its spike train (the paper's words in
# the claim, our reading of the figure in the test). Each returns (passed, evidence).
# --------------------------------------------------------------------------------------


def _isi(s: np.ndarray) -> np.ndarray:
    return np.diff(s)


def _bursts(s: np.ndarray, gap_ms: float) -> list[np.ndarray]:
    """Split spike times into groups separated by more than ``gap_ms``."""
    if len(s) == 0:
        return []
    cuts = np.flatnonzero(np.diff(s) > gap_ms) + 1
    return np.split(s, cuts)


def _n_extrema(v: np.ndarray) -> int:
    dv = np.diff(v)
    dv = dv[np.abs(dv) > 1e-6]
    return int(np.sum(np.diff(np.sign(dv)) != 0))


def _check(name: str, tr: NeuronTrace) -> tuple[str, bool, str]:  # noqa: C901 - one case each
    s = np.asarray(tr.spike_times_ms, dtype=float)
    n, isi = len(s), _isi(s)
    first, last = (isi[0], isi[-1]) if len(isi) else (np.nan, np.nan)
    ev = f"{n} spikes"
    if n == 0 and name != "subthreshold_oscillations":
        return "its published firing", False, "no spike"
    if name == "tonic_spiking":
        # after the onset transient the last two ISIs agree (a regular train)
        d = float(abs(isi[-1] - isi[-2]) / isi[-1]) if len(isi) >= 2 else np.inf
        return ("keeps firing regularly", n >= 4 and d < 0.1,
                f"{ev}, last two ISIs differ by {100 * d:.0f}%")
    if name == "phasic_spiking":
        return "one spike at onset", n == 1, ev
    if name in ("tonic_bursting", "CH"):
        b = _bursts(s, 10.0)
        k = sum(len(x) >= 2 for x in b)
        return "repeated bursts", k >= 3, f"{k} bursts of >= 2 spikes (gap > 10 ms)"
    if name == "phasic_bursting":
        b = _bursts(s, 15.0)
        ok = len(b) == 1 and len(b[0]) >= 3 and s[-1] < 100
        return "one burst at onset", ok, f"{len(b)} burst(s), last spike {s[-1]:.0f} ms"
    if name in ("mixed_mode", "IB"):
        return ("burst, then single spikes", n >= 4 and first < 5 and last > 20,
                f"first ISI {first:.1f} ms, last {last:.1f} ms")
    if name in ("spike_frequency_adaptation", "RS"):
        return ("ISIs lengthen", n >= 4 and last > 3 * first,
                f"first ISI {first:.1f} ms, last {last:.1f} ms")
    if name == "class_1_excitable":
        return ("onset at low rate that rises with the ramp", n >= 4 and first > 1.5 * last,
                f"first ISI {first:.1f} ms, last {last:.1f} ms")
    if name == "class_2_excitable":
        return ("onset at a high rate (>= 40 Hz)", n >= 2 and first < 25,
                f"first ISI {first:.1f} ms")
    if name == "spike_latency":
        lat = s[0] - 13.0 if n else np.nan
        return ("one spike long after the pulse", n == 1 and lat > 5,
                f"{ev}, {lat:.1f} ms after the pulse")
    if name == "subthreshold_oscillations":
        k = _n_extrema(tr.v[tr.t_ms > (s[-1] + 1 if n else 25)])
        return "damped subthreshold oscillation", n <= 1 and k >= 2, f"{ev}, {k} extrema of v"
    if name == "resonator":
        ok = n >= 1 and s[0] > 320 and s[-1] < 360
        return "fires only to the pulse pair at the resonant interval", ok, f"spikes {s.round(1)}"
    if name == "integrator":
        ok = n >= 1 and s[-1] < 70
        return "fires only to the close pulse pair", ok, f"spikes {s.round(1)}"
    if name == "rebound_spike":
        return "spike after release from inhibition", 1 <= n <= 2 and s[0] > 25, ev
    if name == "rebound_burst":
        return "burst after release from inhibition", n >= 3 and s[0] > 25, ev
    if name == "threshold_variability":
        ok = n >= 1 and s.min() > 80 and s.max() < 100
        return "only the pulse after inhibition fires", ok, f"spikes {s.round(1)}"
    if name == "bistability":
        ok = n >= 3 and s[0] > 37.5 and s[-1] < 221
        return "a pulse switches firing on, the next off", ok, f"{ev} in {s[0]:.0f}-{s[-1]:.0f} ms"
    if name == "depolarizing_after_potential":
        rest = float(tr.v[0])
        peak = float(tr.v[tr.t_ms > s[0] + 1].max()) if n else np.nan
        ok = n == 1 and peak > rest + 10
        return ("depolarised after-potential", ok,
                f"{ev}, v after reset peaks {peak - rest:.1f} mV above rest")
    if name == "accommodation":
        ok = n >= 1 and s.min() > 300
        return "slow ramp silent, fast ramp fires", ok, f"spikes {s.round(1)}"
    if name == "inhibition_induced_spiking":
        ok = n >= 2 and s.min() > 50 and s.max() < 250
        return "fires only while inhibited", ok, f"{ev} in {s.min():.0f}-{s.max():.0f} ms"
    if name == "inhibition_induced_bursting":
        k = sum(len(x) >= 2 for x in _bursts(s, 10.0))
        ok = n >= 2 and s.min() > 50 and s.max() < 250 and k >= 2
        return "bursts only while inhibited", ok, f"{k} bursts in {s.min():.0f}-{s.max():.0f} ms"
    if name == "FS":
        rate = 1000.0 * (n - 1) / (s[-1] - s[0]) if n >= 2 else 0.0
        return "high rate, little adaptation", rate > 80 and last < 2 * first, f"{rate:.0f} Hz"
    if name == "TC":
        ok = n >= 3 and first < 10 and s[0] < 50 and s[-1] > 50
        return ("rebound burst from -87 mV, then tonic under the step", ok,
                f"first ISI {first:.1f} ms, {int(np.sum(s > 50))} spikes in the step")
    if name == "RZ":
        ok = n >= 1 and s.min() > 50 and s.max() < 100
        return "the pulse pair fires, the lone pulse does not", ok, f"spikes {s.round(1)}"
    if name == "LTS":
        return ("high-frequency onset, then adapting", n >= 4 and first < 5 and last > 10,
                f"first ISI {first:.1f} ms, last {last:.1f} ms")
    return "fires", n > 0, ev


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

    feature_rows = []
    for name in names:
        what, ok, evidence = _check(name, traces[name])
        feature_rows.append({"pattern": name, "panel": PATTERNS[name].title, "shows": what,
                             "passed": bool(ok), "evidence": evidence})
    run.add_table("feature_checks", feature_rows, caption=(
        "What each panel is meant to show, checked on its spike train (our reading of the "
        "published figure: spike counts, ISIs and where the spikes fall)."))
    for group, members, fig, claim in (
        ("features_2004", features, "features_2004",
         "Izhikevich (2004), Fig. 1: one model with four parameters shows all 20 "
         "neuro-computational features"),
        ("cell_classes_2003", classes, "cell_classes_2003",
         "Izhikevich (2003), Fig. 2: the (a, b, c, d) of each cortical and thalamic class "
         "give its firing pattern"),
    ):
        if not members:
            continue
        rows_g = [r for r in feature_rows if r["pattern"] in members]
        passed = sum(r["passed"] for r in rows_g)
        failed = [r["pattern"] for r in rows_g if not r["passed"]]
        value = f"{passed}/{len(rows_g)} panels show their feature" + (
            f" (not: {', '.join(failed)})" if failed else "")
        verdict = ("holds" if passed == len(rows_g)
                   else "weaker" if passed >= 0.75 * len(rows_g) else "does not hold")
        run.add_claim(group, claim, value, verdict, figure=fig)
    if other is not None:
        same = sum(r["same_spike_steps_on_both_engines"] for r in rows)
        run.add_claim(
            "engines", "the torch engine integrates the published update exactly as Brian2 "
            "does (same spike steps)", f"{same}/{len(rows)} patterns identical",
            "holds" if same == len(rows) else "weaker" if same >= 0.9 * len(rows)
            else "does not hold", figure="features_2004" if features else None)

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
