"""Izhikevich neurons against a plain transcription of the published figure code and Brian2.

The reference below is written straight from Izhikevich's ``figure1.m`` (2004, Fig. 1) and
from the 2003 cell-class protocols of the issue, independently of ``neurosim.izhikevich``:
its own parameter table, its own stimulus functions, one Python loop per panel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurosim.izhikevich import (
    CELL_CLASSES_2003,
    FEATURES_2004,
    PATTERNS,
    IzhikevichParams,
    simulate_neuron,
    simulate_patterns,
)

# brian2 parses its equations with pyparsing, whose deprecation notices are not ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing")

# --------------------------------------------------------------------------------------
# Reference: figure1.m, transcribed panel by panel
# --------------------------------------------------------------------------------------


def figure1_loop(a, b, c, d, V, tau, T, stim, u=None, k1=5.0, k0=140.0, accommodation=False,
                 forward_euler=False):
    """One panel of figure1.m: ``for t = 0:tau:T``; returns VV, uu, spike step indices."""
    u = b * V if u is None else u
    VV, uu, spikes = [], [], []
    for i in range(int(round(T / tau)) + 1):
        t = i * tau
        I = stim(t)
        V_old = V
        # V^2 as V*V, the correctly rounded square; Python's V**2 goes through C pow(), which
        # glibc may round 1 ulp off
        V = V + tau * (0.04 * (V * V) + k1 * V + k0 - u + I)
        if accommodation:
            u = u + tau * a * (b * (V + 65))
        elif forward_euler:
            u = u + tau * a * (b * V_old - u)
        else:
            u = u + tau * a * (b * V - u)
        if V > 30:
            VV.append(30.0)
            V = c
            u = u + d
            spikes.append(i)
        else:
            VV.append(V)
        uu.append(u)
    return np.array(VV), np.array(uu), np.array(spikes, dtype=int)


def _pulses(t, starts, width):
    return any((t > s) and (t < s + width) for s in starts)


# name: (a, b, c, d, V0, tau, T, I(t), extra keyword arguments of figure1_loop)
FIGURE1 = {
    "tonic_spiking": (0.02, 0.2, -65, 6, -70, 0.25, 100, lambda t: 14 if t > 100 / 10 else 0, {}),
    "phasic_spiking": (0.02, 0.25, -65, 6, -64, 0.25, 200, lambda t: 0.5 if t > 20 else 0, {}),
    "tonic_bursting": (0.02, 0.2, -50, 2, -70, 0.25, 220, lambda t: 15 if t > 22 else 0, {}),
    "phasic_bursting": (0.02, 0.25, -55, 0.05, -64, 0.2, 200, lambda t: 0.6 if t > 20 else 0,
                        {}),
    "mixed_mode": (0.02, 0.2, -55, 4, -70, 0.25, 160, lambda t: 10 if t > 160 / 10 else 0, {}),
    "spike_frequency_adaptation": (0.01, 0.2, -65, 8, -70, 0.25, 85,
                                   lambda t: 30 if t > 85 / 10 else 0, {}),
    "class_1_excitable": (0.02, -0.1, -55, 6, -60, 0.25, 300,
                          lambda t: 0.075 * (t - 30) if t > 30 else 0, {"k1": 4.1, "k0": 108}),
    "class_2_excitable": (0.2, 0.26, -65, 0, -64, 0.25, 300,
                          lambda t: -0.5 + 0.015 * (t - 30) if t > 30 else -0.5, {}),
    "spike_latency": (0.02, 0.2, -65, 6, -70, 0.2, 100,
                      lambda t: 7.04 if (t > 10) and (t < 10 + 3) else 0, {}),
    "subthreshold_oscillations": (0.05, 0.26, -60, 0, -62, 0.25, 200,
                                  lambda t: 2 if (t > 20) and (t < 20 + 5) else 0, {}),
    "resonator": (0.1, 0.26, -60, -1, -62, 0.25, 400,
                  lambda t: 0.65 if _pulses(t, (40, 60, 0.7 * 400, 0.7 * 400 + 40), 4) else 0,
                  {}),
    "integrator": (0.02, -0.1, -55, 6, -60, 0.25, 100,
                   lambda t: 9 if _pulses(t, (100 / 11, 100 / 11 + 5, 0.7 * 100, 0.7 * 100 + 10),
                                          2) else 0,
                   {"k1": 4.1, "k0": 108}),
    "rebound_spike": (0.03, 0.25, -60, 4, -64, 0.2, 200,
                      lambda t: -15 if (t > 20) and (t < 25) else 0, {}),
    "rebound_burst": (0.03, 0.25, -52, 0, -64, 0.2, 200,
                      lambda t: -15 if (t > 20) and (t < 25) else 0, {}),
    "threshold_variability": (0.03, 0.25, -60, 4, -64, 0.25, 100,
                              lambda t: 1 if (10 < t < 15) or (80 < t < 85)
                              else (-6 if 70 < t < 75 else 0), {}),
    "bistability": (0.1, 0.26, -60, 0, -61, 0.25, 300,
                    lambda t: 1.24 if _pulses(t, (300 / 8, 216), 5) else 0.24, {}),
    "depolarizing_after_potential": (1, 0.2, -60, -21, -70, 0.1, 50,
                                     lambda t: 20 if abs(t - 10) < 1 else 0, {}),
    "accommodation": (0.02, 1, -55, 4, -65, 0.5, 400,
                      lambda t: t / 25 if t < 200 else (0 if t < 300 else (
                          (t - 300) / 12.5 * 4 if t < 312.5 else 0)),
                      {"u": -16, "accommodation": True}),
    "inhibition_induced_spiking": (-0.02, -1, -60, 8, -63.8, 0.5, 350,
                                   lambda t: 80 if (t < 50) or (t > 250) else 75, {}),
    "inhibition_induced_bursting": (-0.026, -1, -45, -2, -63.8, 0.5, 350,
                                    lambda t: 80 if (t < 50) or (t > 250) else 75, {}),
    # 2003 classes, protocols of issue 6 (v0, I = amplitude after onset, duration)
    "RS": (0.02, 0.2, -65, 8, -63, 0.25, 150, lambda t: 14 if t > 15 else 0, {}),
    "FS": (0.1, 0.2, -65, 2, -70, 0.25, 150, lambda t: 10 if t > 15 else 0, {}),
    "CH": (0.02, 0.2, -50, 2, -70, 0.25, 150, lambda t: 10 if t > 15 else 0, {}),
    "LTS": (0.02, 0.25, -65, 2, -63, 0.25, 250, lambda t: 10 if t > 25 else 0, {}),
    # IB, TC and RZ: (a, b, c, d) of the 2003 paper's Fig. 2; the stimuli are the suite's own
    # protocols (the paper gives none): a DC step, a release from -87 mV then a small step,
    # and a pulse pair 10 ms apart followed by a lone pulse
    "IB": (0.02, 0.2, -55, 4, -70, 0.25, 150, lambda t: 10 if t > 15 else 0, {}),
    "TC": (0.02, 0.25, -65, 0.05, -87, 0.25, 150, lambda t: 2 if t > 50 else 0, {}),
    "RZ": (0.1, 0.26, -65, 2, -62.5, 0.25, 150,
           lambda t: 0.5 if _pulses(t, (40, 50, 100), 5) else 0, {}),
}


def reference(name, forward_euler=False):
    a, b, c, d, v0, tau, T, stim, kw = FIGURE1[name]
    return figure1_loop(a, b, c, d, float(v0), tau, T, stim, forward_euler=forward_euler, **kw)


@pytest.fixture(scope="module")
def torch64():
    return simulate_patterns(engine="torch", dtype="float64")


@pytest.fixture(scope="module")
def brian64():
    pytest.importorskip("brian2")
    return simulate_patterns(engine="brian2", dtype="float64")


# --------------------------------------------------------------------------------------
# Exactness against the published code
# --------------------------------------------------------------------------------------


def test_pattern_table_is_complete():
    assert len(FEATURES_2004) == 20
    assert set(CELL_CLASSES_2003) == {"RS", "IB", "CH", "FS", "TC", "RZ", "LTS"}
    assert set(PATTERNS) == set(FEATURES_2004) | set(CELL_CLASSES_2003)
    # every reference panel is in the table with the same parameters and protocol
    for name, (a, b, c, d, v0, tau, T, _, _) in FIGURE1.items():
        p = PATTERNS[name]
        assert (p.params.a, p.params.b, p.params.c, p.params.d) == (a, b, c, d), name
        assert (p.v0, p.dt_ms, p.duration_ms) == (v0, tau, T), name


@pytest.mark.parametrize("name", list(FIGURE1))
def test_torch_float64_reproduces_figure1_to_the_bit(name, torch64):
    VV, uu, spikes = reference(name)
    tr = torch64[name]
    np.testing.assert_array_equal(tr.spike_steps, spikes)
    np.testing.assert_array_equal(tr.v, VV)  # same operation order -> same rounding
    np.testing.assert_array_equal(tr.u, uu)
    np.testing.assert_array_equal(tr.spike_times_ms, spikes * FIGURE1[name][5])


def test_single_pattern_run_equals_batched_run(torch64):
    for name in ("tonic_bursting", "accommodation", "class_1_excitable"):
        tr = simulate_neuron(name)
        np.testing.assert_array_equal(tr.v, torch64[name].v)
        np.testing.assert_array_equal(tr.spike_steps, torch64[name].spike_steps)


def test_update_order_matters(torch64):
    """The package integrates in the published order (u from the new v): its spike trains
    equal the published-order transcription and differ from forward Euler's (u from the old
    v) in many panels, so an engine that switched to forward Euler would fail here."""
    changed = []
    for n in FEATURES_2004:
        ours = torch64[n].spike_steps
        np.testing.assert_array_equal(ours, reference(n)[2])
        if not np.array_equal(ours, reference(n, forward_euler=True)[2]):
            changed.append(n)
    assert len(changed) >= 5, changed


@pytest.mark.brian2
def test_brian2_float64_identical_for_every_pattern(torch64, brian64):
    for name in PATTERNS:
        np.testing.assert_array_equal(brian64[name].spike_steps, torch64[name].spike_steps,
                                      err_msg=name)
        np.testing.assert_array_equal(brian64[name].v, torch64[name].v, err_msg=name)
        np.testing.assert_array_equal(brian64[name].u, torch64[name].u, err_msg=name)


def test_torch_float32_counts_within_one(torch64):
    t32 = simulate_patterns(engine="torch", dtype="float32")
    for name in PATTERNS:
        assert abs(t32[name].n_spikes - torch64[name].n_spikes) <= 1, name
        assert t32[name].dtype == "float32"


@pytest.mark.brian2
def test_brian2_float32_identical_to_torch_float32():
    pytest.importorskip("brian2")
    t32 = simulate_patterns(engine="torch", dtype="float32")
    b32 = simulate_patterns(engine="brian2", dtype="float32")
    for name in PATTERNS:
        np.testing.assert_array_equal(b32[name].spike_steps, t32[name].spike_steps, err_msg=name)
        np.testing.assert_array_equal(b32[name].v, t32[name].v, err_msg=name)


# --------------------------------------------------------------------------------------
# The features the 2004 paper describes, panel by panel
# --------------------------------------------------------------------------------------


def test_published_features(torch64):
    s = {n: tr.spike_times_ms for n, tr in torch64.items()}
    assert len(s["phasic_spiking"]) == 1 and s["phasic_spiking"][0] > 20
    assert len(s["spike_latency"]) == 1 and s["spike_latency"][0] > 13 + 5  # long latency
    isi = np.diff(s["tonic_bursting"])
    assert isi.min() < 3 and isi.max() > 10  # bursts separated by pauses
    assert np.all(np.diff(np.diff(s["class_1_excitable"])) < 0)  # rate grows with the ramp
    # integrator: fires for the close pair (5 ms apart), not for the far pair (10 ms)
    assert len(s["integrator"]) == 1 and 100 / 11 + 5 < s["integrator"][0] < 70
    # resonator: fires for the pair at its resonant interval (40 ms) only
    assert len(s["resonator"]) == 1 and s["resonator"][0] > 0.7 * 400 + 40
    assert len(s["rebound_spike"]) == 1 and s["rebound_spike"][0] > 25
    assert len(s["rebound_burst"]) >= 3 and s["rebound_burst"][0] > 25
    assert np.all((s["bistability"] > 300 / 8) & (s["bistability"] < 216 + 5))
    # accommodation: no spike on the slow ramp, one on the fast ramp
    assert len(s["accommodation"]) == 1 and 300 < s["accommodation"][0] < 320
    for name in ("inhibition_induced_spiking", "inhibition_induced_bursting"):
        assert len(s[name]) >= 2 and np.all((s[name] > 50) & (s[name] < 260)), name
    assert np.mean(np.diff(s["FS"])) < np.mean(np.diff(s["RS"]))  # FS fires faster
    assert np.diff(s["CH"]).min() < 3  # chattering: high-frequency bursts
    assert s["TC"][0] < 50  # rebound burst on release from -87 mV, before the DC step
    assert np.diff(s["TC"][s["TC"] < 50]).min() < 10 and np.sum(s["TC"] > 50) >= 3  # then tonic
    # IB: a burst at onset (first ISI < 5 ms), then single spikes (last ISI > 20 ms)
    isi_ib = np.diff(s["IB"])
    assert len(s["IB"]) >= 4 and isi_ib[0] < 5 and isi_ib[-1] > 20
    # RZ: the pulse pair (40 and 50 ms) fires, the lone pulse at 100 ms does not
    assert len(s["RZ"]) >= 1 and np.all((s["RZ"] > 50) & (s["RZ"] < 100))


# --------------------------------------------------------------------------------------
# API: currents, populations, engines
# --------------------------------------------------------------------------------------


def test_current_number_array_callable_agree():
    p = IzhikevichParams(0.02, 0.2, -65, 8)
    n = int(200 / 0.5) + 1
    by_number = simulate_neuron(p, 10.0, 200.0, 0.5)
    by_array = simulate_neuron(p, np.full(n, 10.0), 200.0, 0.5)
    by_callable = simulate_neuron(p, lambda t: 10.0, 200.0, 0.5)
    VV, uu, spikes = figure1_loop(0.02, 0.2, -65, 8, -65.0, 0.5, 200, lambda t: 10.0)
    for tr in (by_number, by_array, by_callable):
        np.testing.assert_array_equal(tr.spike_steps, spikes)
        np.testing.assert_array_equal(tr.v, VV)
    assert by_number.t_ms.shape == (n,) and by_number.t_ms[-1] == 200.0


def test_population_matches_neuron_by_neuron_reference():
    rng = np.random.default_rng(0)
    r = rng.random(6)
    # the excitatory heterogeneity of the 2003 network
    pop = IzhikevichParams(0.02, 0.2, -65 + 15 * r**2, 8 - 6 * r**2)
    drive = np.linspace(4.0, 12.0, 6)
    tr = simulate_neuron(pop, lambda t: drive * (t > 5), 100.0, 0.25, v0=-65.0)
    assert tr.v.shape == (401, 6) and len(tr.spike_times_ms) == 6
    for i in range(6):
        VV, _, spikes = figure1_loop(0.02, 0.2, -65 + 15 * r[i] ** 2, 8 - 6 * r[i] ** 2, -65.0,
                                     0.25, 100, lambda t, i=i: drive[i] * (t > 5))
        np.testing.assert_array_equal(tr.spike_steps[i], spikes)
        np.testing.assert_array_equal(tr.v[:, i], VV)
    seq = simulate_neuron([IzhikevichParams(0.02, 0.2, -65, 8), IzhikevichParams(0.1, 0.2, -65, 2)],
                          10.0, 100.0, 0.25)
    assert seq.n_spikes.shape == (2,) and seq.n_spikes[1] > seq.n_spikes[0]  # FS faster than RS


@pytest.mark.brian2
def test_brian2_engine_for_parameters():
    pytest.importorskip("brian2")
    p = IzhikevichParams(np.array([0.02, 0.1]), 0.2, -65.0, np.array([8.0, 2.0]))
    a = simulate_neuron(p, 10.0, 100.0, 0.5, engine="torch")
    b = simulate_neuron(p, 10.0, 100.0, 0.5, engine="brian2")
    for i in range(2):
        np.testing.assert_array_equal(a.spike_steps[i], b.spike_steps[i])
    assert b.engine == "brian2"


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_parameters_are_refused(bad):
    with pytest.raises(ValueError, match=r"IzhikevichParams\.c: expected a finite"):
        IzhikevichParams(0.02, 0.2, bad, 8)
    with pytest.raises(ValueError, match=r"IzhikevichParams\.a: expected finite values.*neuron 1"):
        IzhikevichParams(np.array([0.02, bad]), 0.2, -65, 8)


def test_mismatched_population_lengths():
    with pytest.raises(ValueError, match="same length"):
        IzhikevichParams(np.zeros(3), 0.2, np.zeros(4), 8)


def test_large_dt_diverges_with_a_clear_error():
    with pytest.raises(ValueError, match=r"dt_ms=5 ms is too large: v of neuron 0 \(tonic_spiking"):
        simulate_neuron("tonic_spiking", dt_ms=5.0)
    pop = IzhikevichParams(0.02, 0.2, -65, np.array([8.0, 8.0]))
    with pytest.raises(ValueError, match=r"dt_ms=5 ms is too large: v of neuron 1"):
        simulate_neuron(pop, lambda t: np.array([0.0, 30.0]), 100.0, 5.0)


def test_wrong_current_length_names_expected_length():
    with pytest.raises(ValueError, match="current: expected 401 values .* got 400"):
        simulate_neuron(IzhikevichParams(0.02, 0.2, -65, 8), np.zeros(400), 100.0, 0.25)
    pop = IzhikevichParams(0.02, 0.2, -65, np.array([8.0, 2.0]))
    with pytest.raises(ValueError, match=r"current: a callable must return .* 2 values.*\(3,\)"):
        simulate_neuron(pop, lambda t: np.zeros(3), 10.0, 0.25)
    with pytest.raises(ValueError, match=r"current: expected shape \(41,\) or \(41, 2\)"):
        simulate_neuron(pop, np.zeros((41, 3)), 10.0, 0.25)
    with pytest.raises(ValueError, match="current: expected finite values"):
        simulate_neuron(IzhikevichParams(0.02, 0.2, -65, 8), np.full(401, np.nan), 100.0, 0.25)


def test_unknown_pattern_lists_valid_names_and_suggests():
    with pytest.raises(KeyError, match="valid patterns are: tonic_spiking.*Did you mean 'tonic"):
        simulate_neuron("tonic_spikng")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"engine": "brain2"}, "engine: expected one of .*got 'brain2'.*Did you mean 'brian2'"),
        ({"dtype": "float16"}, "dtype: expected one of .*got 'float16'"),
        ({"dt_ms": -0.1}, "dt_ms: expected a positive"),
        ({"duration_ms": 100.1}, "duration_ms: expected a whole number of steps"),
        ({"v0": math.nan}, "v0: expected finite values"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        simulate_neuron("RS", **kwargs)


def test_parameters_need_current_and_duration():
    with pytest.raises(ValueError, match="current and duration_ms: required"):
        simulate_neuron(IzhikevichParams(0.02, 0.2, -65, 8))


# --------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------


@pytest.mark.brian2
def test_job_draws_and_cross_checks(tmp_path, torch64):
    pytest.importorskip("brian2")
    from neurosim.jobs.izhikevich_patterns import PatternsParams, izhikevich_patterns
    from neurosuite.runs import Run

    run = Run(tmp_path, seed=0, level="smoke", device="auto", verbose=False)
    names = ["tonic_spiking", "accommodation", "RS"]
    metrics = izhikevich_patterns(PatternsParams(patterns=names), run)
    assert metrics["spike_counts"] == {n: int(torch64[n].n_spikes) for n in names}
    assert metrics["engines_identical_spike_steps"] == 3
    assert (tmp_path / "figures" / "features_2004.png").stat().st_size > 10_000
    assert (tmp_path / "figures" / "cell_classes_2003.png").exists()
    rows = run.metrics["tables"]["patterns"]
    assert rows[0]["first_spike_ms"] == float(reference("tonic_spiking")[2][0] * 0.25)
    with pytest.raises(ValueError, match="Did you mean 'tonic_spiking'"):
        PatternsParams(patterns=["tonic_spikin"])
