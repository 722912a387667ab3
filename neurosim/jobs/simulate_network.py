"""Job ``simulate_network``: the 2003 Izhikevich network or a sparse reservoir, simulated.

Draws the spike raster (Izhikevich 2003, Fig. 3), the population rate, the distribution of
firing rates and the power spectrum of the population rate with its alpha and gamma peaks;
reports excitatory / inhibitory rates and the spectral peaks, and optionally runs the same
model on the Brian2 engine and compares the statistics (different random generators, so
rates and peak frequencies, not spikes, are compared).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from neurosim.network import NetworkModel, SpikeRecord, izhikevich_2003, spectral_peak
from neurosim.reservoir import Reservoir


class SimulateNetworkParams(BaseModel):
    """Parameters of the ``simulate_network`` job."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: Literal["izhikevich_2003", "reservoir"] = Field(
        "izhikevich_2003", description="which network to simulate")
    n_exc: int = Field(800, ge=1, description="2003 network: excitatory cells")
    n_inh: int = Field(200, ge=0, description="2003 network: inhibitory cells")
    n_neurons: int = Field(2000, ge=2, description="reservoir: number of cells")
    p_connect: float = Field(0.05, gt=0, le=1, description="reservoir: connection probability")
    heterogeneity: str | dict[str, dict[str, float]] = Field(
        "izhikevich2003", description="reservoir: 'izhikevich2003' or a PATTERNS mixture")
    w_exc: float = Field(1.0, ge=0, description="reservoir: largest excitatory weight")
    w_inh: float = Field(-2.0, le=0, description="reservoir: largest inhibitory weight")
    tau_syn_ms: float = Field(5.0, gt=0, description="reservoir: synaptic time constant (ms)")
    duration_ms: float = Field(3000.0, gt=0, description="simulated time per trial (ms)")
    dt_ms: float | None = Field(None, gt=0, description="time step (ms); None: the model's")
    batch: int = Field(4, ge=1, description="independent trials (own noise)")
    engine: Literal["torch", "brian2"] = Field("torch", description="engine")
    kernel: Literal["auto", "eager", "cpp"] = Field(
        "auto", description="torch path: 'auto' (the C++ CPU kernel where it compiles, else "
        "tensor ops), 'eager' (tensor ops) or 'cpp'")
    dtype: Literal["float32", "float64"] = Field("float32", description="torch precision")
    bin_ms: float = Field(1.0, gt=0, description="bin of the population rate (ms)")
    alpha_band_hz: tuple[float, float] = Field((6.0, 14.0), description="alpha band (Hz)")
    gamma_band_hz: tuple[float, float] = Field((25.0, 50.0), description="gamma band (Hz)")
    raster_ms: float = Field(1000.0, gt=0, description="time shown in the raster (ms)")
    cross_check_brian2: bool = Field(
        False, description="also run one trial on Brian2 and compare the statistics")
    brian2_device: Literal["runtime", "numpy", "cython", "cpp_standalone"] = Field(
        "numpy", description="Brian2 mode of the cross-check")

    @field_validator("alpha_band_hz", "gamma_band_hz")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1]:
            raise ValueError(f"band: expected (low, high) with 0 <= low < high, got {value}")
        return value


def build_network(p: SimulateNetworkParams, seed: int) -> NetworkModel:
    """The model the parameters describe."""
    if p.model == "izhikevich_2003":
        return izhikevich_2003(n_exc=p.n_exc, n_inh=p.n_inh, seed=seed)
    return Reservoir(
        n=p.n_neurons, p_connect=p.p_connect, heterogeneity=p.heterogeneity, w_exc=p.w_exc,
        w_inh=p.w_inh, tau_syn_ms=p.tau_syn_ms, seed=seed,
    ).build().model_


def network_statistics(rec: SpikeRecord, model: NetworkModel, p: SimulateNetworkParams
                       ) -> dict:
    """Rates (Hz) of each population and the alpha / gamma peaks of the trial-mean PSD."""
    f, pxx = rec.psd(bin_ms=p.bin_ms)
    mean_psd = pxx.mean(axis=0)
    f_a, p_a = spectral_peak(f, mean_psd, p.alpha_band_hz)
    f_g, p_g = spectral_peak(f, mean_psd, p.gamma_band_hz)
    floor = float(np.median(mean_psd[f >= 2 * p.gamma_band_hz[1]])) if np.any(
        f >= 2 * p.gamma_band_hz[1]) else float("nan")
    rates = rec.rates_hz()
    return {
        "exc_rate_hz": float(rec.rates_hz("trial", model.exc).mean()),
        "inh_rate_hz": float(rec.rates_hz("trial", ~model.exc).mean()) if (~model.exc).any()
        else float("nan"),
        "silent_exc_fraction": float((rates[:, model.exc] == 0).mean()),
        "alpha_peak_hz": f_a, "alpha_peak_power": p_a,
        "gamma_peak_hz": f_g, "gamma_peak_power": p_g,
        "gamma_over_floor": p_g / floor if floor > 0 else float("nan"),
        "spikes_per_trial": len(rec) / rec.batch,
    }


def _figures(rec: SpikeRecord, model: NetworkModel, p: SimulateNetworkParams, stats: dict):
    import matplotlib.pyplot as plt

    show = min(p.raster_ms, rec.duration_ms)
    fig, (ax_r, ax_p) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1]})
    sel = rec.times_ms < show
    sub = SpikeRecord(rec.times_ms[sel], rec.neuron[sel], rec.trial[sel], rec.n_neurons, show,
                      rec.batch, rec.dt_ms)
    sub.raster(ax=ax_r, exc=model.exc, s=0.6)
    ax_r.set_xlabel("")
    ax_r.set_title(f"{model.name}: trial 0 (excitatory black, inhibitory red)")
    t, pop = sub.population_rate(bin_ms=p.bin_ms)
    ax_p.plot(t, pop[0], lw=0.7, color="k")
    ax_p.set_xlabel("time (ms)")
    ax_p.set_ylabel("rate (Hz)")
    ax_p.set_xlim(0, show)
    fig.tight_layout()
    raster = fig

    fig2, (ax_h, ax_s) = plt.subplots(1, 2, figsize=(10, 3.8))
    rates = rec.rates_hz()
    bins = np.linspace(0, max(float(rates.max()), 1.0), 40)
    ax_h.hist(rates[:, model.exc].ravel(), bins=bins, alpha=0.7, color="k", label="excitatory")
    if (~model.exc).any():
        ax_h.hist(rates[:, ~model.exc].ravel(), bins=bins, alpha=0.7, color="tab:red",
                  label="inhibitory")
    ax_h.set_xlabel("firing rate (Hz)")
    ax_h.set_ylabel("cells x trials")
    ax_h.legend(frameon=False)
    f, pxx = rec.psd(bin_ms=p.bin_ms)
    ax_s.semilogy(f[1:], pxx.mean(axis=0)[1:], color="k", lw=1)
    for band, key, col in ((p.alpha_band_hz, "alpha", "tab:blue"),
                           (p.gamma_band_hz, "gamma", "tab:orange")):
        ax_s.axvspan(*band, color=col, alpha=0.15)
        ax_s.axvline(stats[f"{key}_peak_hz"], color=col, lw=1,
                     label=f"{key} peak {stats[f'{key}_peak_hz']:.0f} Hz")
    ax_s.set_xlim(0, min(150, f[-1]))
    ax_s.set_xlabel("frequency (Hz)")
    ax_s.set_ylabel("PSD of population rate (Hz$^2$/Hz)")
    ax_s.legend(frameon=False)
    fig2.tight_layout()
    return raster, fig2


def simulate_network(params: SimulateNetworkParams, run) -> dict:
    """Simulate the network, draw raster / rates / spectrum, report rates and peaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = params
    model = build_network(p, run.seed)
    run.log(f"{model.name}: {model.n_neurons} neurons, {model.n_synapses} synapses")
    kw = {"dt_ms": p.dt_ms, "batch": p.batch, "seed": run.seed + 1, "dtype": p.dtype}
    if p.engine == "torch":
        kw.update(device=run.device, kernel=p.kernel)
    rec = model.run(p.duration_ms, engine=p.engine, verbose=run.verbose, **kw)
    stats = network_statistics(rec, model, p)
    stats["wall_s"] = float(rec.info.get("wall_s", float("nan")))
    raster, spectra = _figures(rec, model, p, stats)
    run.add_figure(raster, "raster", caption=(
        f"Spike raster and population rate of {model.name} ({p.engine} engine); cf. "
        "Izhikevich (2003), Fig. 3: episodes of alpha and gamma rhythms."))
    run.add_figure(spectra, "rates_and_spectrum", caption=(
        f"Firing-rate distribution over {p.batch} trial(s) and the trial-mean power spectrum "
        "of the population rate (Welch), with the alpha and gamma bands and peaks."))
    plt.close("all")
    rows = [{"engine": p.engine, **{k: round(v, 3) for k, v in stats.items()}}]
    metrics = dict(stats)
    if p.cross_check_brian2:
        b_rec = model.run(p.duration_ms, engine="brian2", device=p.brian2_device,
                          dt_ms=p.dt_ms, seed=run.seed + 1)
        b_stats = network_statistics(b_rec, model, p)
        b_stats["wall_s"] = float(b_rec.info["wall_s"])
        rows.append({"engine": f"brian2 ({p.brian2_device})",
                     **{k: round(v, 3) for k, v in b_stats.items()}})
        metrics["brian2"] = b_stats
        metrics["brian2_minus_torch_exc_rate_hz"] = b_stats["exc_rate_hz"] - stats["exc_rate_hz"]
    run.add_table("statistics", rows, caption=(
        "Mean rates (Hz), silent excitatory fraction, spectral peaks (Hz) and their power; "
        "published re-run of net.m: excitatory 7.44 Hz, inhibitory 6.96 Hz, peaks at "
        "7.9-8.9 Hz and 26-38 Hz."))
    _claims(run, p, stats, metrics)
    run.add_metrics(metrics)
    return metrics


def _claims(run, p: SimulateNetworkParams, stats: dict, metrics: dict) -> None:
    """The published statements this run checks (see REFERENCES Part A, 2.1)."""
    if p.model == "izhikevich_2003":
        exc, inh = stats["exc_rate_hz"], stats["inh_rate_hz"]
        full = p.n_exc == 800 and p.n_inh == 200
        ok = 6.0 <= exc <= 9.0 and 5.5 <= inh <= 9.0
        run.add_claim(
            "rates", "Izhikevich (2003) net.m: excitatory about 7.4 Hz, inhibitory about "
            "7.0 Hz (faithful re-run, 5 seeds)",
            f"excitatory {exc:.2f} Hz, inhibitory {inh:.2f} Hz"
            + ("" if full else f" ({p.n_exc}+{p.n_inh} cells, not 800+200)"),
            "holds" if ok and full else "weaker" if ok else "does not hold",
            figure="rates_and_spectrum")
        fa, fg, g = stats["alpha_peak_hz"], stats["gamma_peak_hz"], stats["gamma_over_floor"]
        alpha_ok = 6.0 <= fa <= 12.0
        gamma_ok = g > 3.0
        run.add_claim(
            "rhythms", "Izhikevich (2003), Fig. 3: the raster shows episodes of alpha and "
            "gamma band rhythms",
            f"alpha peak {fa:.0f} Hz, gamma-band peak {fg:.0f} Hz at {g:.0f}x the "
            "high-frequency floor",
            "holds" if alpha_ok and gamma_ok else "weaker" if alpha_ok or gamma_ok
            else "does not hold", figure="raster")
        if "brian2" in metrics:
            d = metrics["brian2_minus_torch_exc_rate_hz"]
            run.add_claim(
                "brian2", "the torch engine gives the same network statistics as the Brian2 "
                "reference engine (own noise, so rates, not spikes)",
                f"excitatory rate differs by {d:+.2f} Hz", "holds" if abs(d) < 0.5
                else "weaker" if abs(d) < 1.5 else "does not hold",
                figure="rates_and_spectrum")
    else:
        exc = stats["exc_rate_hz"]
        silent = stats["silent_exc_fraction"]
        ok = 0.5 <= exc <= 40.0
        run.add_claim(
            "regime", "a heterogeneous sparse Izhikevich reservoir (as in Yamada & Chao's "
            "what/when model) fires irregularly at moderate rates, neither silent nor "
            "saturated",
            f"excitatory {exc:.1f} Hz, {100 * silent:.0f}% of excitatory cells silent",
            "holds" if ok and silent < 0.2 else "weaker" if ok else "does not hold",
            figure="raster")
