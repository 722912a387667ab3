"""Bad-input catalogue of neurosim (issue 14): every non-finite or out-of-range physical
parameter, unusable device and closed-form input beyond its range is refused, with the
exception type asserted and a message that names the parameter. Then the SDR closed forms
on huge inputs: answered in well under a second, and equal to scipy's hypergeometric."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy import stats

from neurosim._device import resolve_device
from neurosim.dendrites import sdr
from neurosim.dendrites.continual import MLP, DendriticMLP
from neurosim.dendrites.layers import ActiveDendritesLayer, KWinners
from neurosim.dendrites.spiking import DendriticNeuron
from neurosim.izhikevich import IzhikevichParams, simulate_neuron
from neurosim.network import izhikevich_2003
from neurosim.plasticity import ThreeFactorReadout, scheduled_gate
from neurosim.reservoir import Reservoir
from neurosim.tasks import WhatWhenTask

NAN, INF = float("nan"), float("inf")
SYN = np.ones((2, 10), dtype=bool)
NO_CUDA = not torch.cuda.is_available()


def neuron(**kw):
    return DendriticNeuron(SYN, 3, **kw)


def simulate(**kw):
    return DendriticNeuron(SYN, 3).simulate(np.ones((1, 10), dtype=bool), **kw)


def gate(**kw):
    return scheduled_gate(np.zeros((1, 1)), **{"n_steps": 10, "dt_ms": 1.0, **kw})


def readout(**kw):
    return ThreeFactorReadout(**kw).partial_fit(torch.rand(2, 20, 5), torch.rand(2, 20, 1))


def task(**kw):
    return WhatWhenTask(**{"latencies_ms": [100.0], "probabilities": [0.8], **kw})


def reservoir(**kw):
    return Reservoir(n=20, **kw).build()


def izh(**kw):
    return simulate_neuron(IzhikevichParams(0.02, 0.2, -65.0, 8.0),
                           **{"current": 10.0, "duration_ms": 10.0, "dt_ms": 0.5, **kw})


def net_run(**kw):
    return izhikevich_2003(n_exc=8, n_inh=2).run(**{"duration_ms": 10.0, "device": "cpu", **kw})


CASES = [
    # -- DendriticNeuron: the silent zeros of the issue (epsp_mv=nan) and its class
    ("neuron epsp nan", lambda: neuron(epsp_mv=NAN), ValueError, "epsp_mv"),
    ("neuron epsp inf", lambda: neuron(epsp_mv=INF), ValueError, "epsp_mv"),
    ("neuron epsp negative", lambda: neuron(epsp_mv=-1.0), ValueError, "epsp_mv"),
    ("neuron plateau_mv nan", lambda: neuron(plateau_mv=NAN), ValueError, "plateau_mv"),
    ("neuron e_l nan", lambda: neuron(e_l_mv=NAN), ValueError, "e_l_mv"),
    ("neuron v_th inf", lambda: neuron(v_th_mv=INF), ValueError, "v_th_mv"),
    ("neuron v_reset nan", lambda: neuron(v_reset_mv=NAN), ValueError, "v_reset_mv"),
    ("neuron v_th below reset", lambda: neuron(v_th_mv=-70.0), ValueError, "v_th_mv"),
    ("neuron tau_syn inf", lambda: neuron(tau_syn_ms=INF), ValueError, "tau_syn_ms"),
    ("neuron tau_m nan", lambda: neuron(tau_m_ms=NAN), ValueError, "tau_m_ms"),
    ("neuron plateau_ms zero", lambda: neuron(plateau_ms=0.0), ValueError, "plateau_ms"),
    ("neuron refractory nan", lambda: neuron(refractory_ms=NAN), ValueError, "refractory_ms"),
    ("neuron refractory negative", lambda: neuron(refractory_ms=-1.0), ValueError,
     "refractory_ms"),
    ("neuron bool parameter", lambda: neuron(tau_m_ms=True), ValueError, "tau_m_ms"),
    ("neuron theta zero", lambda: DendriticNeuron(SYN, 0), ValueError, "theta"),
    ("neuron theta above synapses", lambda: DendriticNeuron(SYN, 11), ValueError, "theta"),
    ("neuron int synapses", lambda: DendriticNeuron(SYN.astype(int), 3), ValueError,
     "synapses"),
    ("simulate duration inf", lambda: simulate(duration_ms=INF), ValueError, "duration_ms"),
    ("simulate dt nan", lambda: simulate(dt_ms=NAN), ValueError, "dt_ms"),
    ("simulate dt above duration", lambda: simulate(dt_ms=200.0), ValueError, "dt_ms"),
    ("simulate onset nan", lambda: simulate(onset_ms=NAN), ValueError, "onset_ms"),
    ("simulate jitter nan", lambda: simulate(jitter_ms=NAN), ValueError, "jitter_ms"),
    ("simulate jitter negative", lambda: simulate(jitter_ms=-1.0), ValueError, "jitter_ms"),
    ("simulate n_record negative", lambda: simulate(n_record=-1), ValueError, "n_record"),
    ("simulate pattern shape", lambda: DendriticNeuron(SYN, 3).simulate(
        np.ones((1, 9), dtype=bool)), ValueError, "patterns"),
    # -- the attention gate and the three-factor readout
    ("gate width nan", lambda: gate(width_ms=NAN), ValueError, "width_ms"),
    ("gate width inf", lambda: gate(width_ms=INF), ValueError, "width_ms"),
    ("gate width zero", lambda: gate(width_ms=0.0), ValueError, "width_ms"),
    ("gate dt nan", lambda: gate(dt_ms=NAN), ValueError, "dt_ms"),
    ("gate baseline above 1", lambda: gate(baseline=1.5), ValueError, "baseline"),
    ("gate baseline nan", lambda: gate(baseline=NAN), ValueError, "baseline"),
    ("gate events 1-D", lambda: scheduled_gate(np.zeros(3), 10, 1.0), ValueError, "event_ms"),
    ("readout eta nan", lambda: readout(eta=NAN), ValueError, "eta"),
    ("readout tau_e inf", lambda: readout(tau_e_ms=INF), ValueError, "tau_e_ms"),
    ("readout kappa negative", lambda: readout(kappa=-1.0), ValueError, "kappa"),
    ("readout dt zero", lambda: readout(dt_ms=0.0), ValueError, "dt_ms"),
    ("readout store_margin nan", lambda: readout(store_margin_ms=NAN), ValueError,
     "store_margin_ms"),
    ("readout NaN rates", lambda: ThreeFactorReadout().partial_fit(
        torch.full((2, 20, 5), NAN), torch.rand(2, 20, 1)), ValueError, "rates"),
    # -- the task
    ("task cue amplitude nan", lambda: task(cue_amplitude=NAN), ValueError, "cue_amplitude"),
    ("task stim amplitude inf", lambda: task(stim_amplitude=INF), ValueError,
     "stim_amplitude"),
    ("task trial nan", lambda: task(trial_ms=NAN), ValueError, "trial_ms"),
    ("task jitter inf", lambda: task(jitter_ms=INF), ValueError, "jitter_ms"),
    ("task probabilities sum", lambda: task(probabilities=[0.7, 0.6],
                                            latencies_ms=[100.0, 200.0]), ValueError,
     "probabilities"),
    ("task probability nan", lambda: task(probabilities=[NAN]), ValueError, "probabilities"),
    ("task latency beyond trial", lambda: task(latencies_ms=[600.0]), ValueError,
     "latencies_ms"),
    # -- the reservoir, the 2003 network, the single neuron
    ("reservoir exc_fraction nan", lambda: reservoir(exc_fraction=NAN), ValueError,
     "exc_fraction"),
    ("reservoir p_connect above 1", lambda: reservoir(p_connect=1.5), ValueError, "p_connect"),
    ("reservoir w_exc inf", lambda: reservoir(w_exc=INF), ValueError, "w_exc"),
    ("reservoir w_inh nan", lambda: reservoir(w_inh=NAN), ValueError, "w_inh"),
    ("reservoir tau_syn zero", lambda: reservoir(tau_syn_ms=0.0), ValueError, "tau_syn_ms"),
    ("reservoir dt inf", lambda: reservoir(dt_ms=INF), ValueError, "dt_ms"),
    ("reservoir input_scale nan", lambda: reservoir(input_scale=NAN), ValueError,
     "input_scale"),
    ("network duration nan", lambda: net_run(duration_ms=NAN), ValueError, "duration_ms"),
    ("network dt inf", lambda: net_run(dt_ms=INF), ValueError, "dt_ms"),
    ("network batch zero", lambda: net_run(batch=0), ValueError, "batch"),
    ("izhikevich a nan", lambda: IzhikevichParams(NAN, 0.2, -65.0, 8.0), ValueError, "a"),
    ("izhikevich current nan", lambda: izh(current=NAN), ValueError, "current"),
    ("izhikevich v0 nan", lambda: izh(v0=NAN), ValueError, "v0"),
    ("izhikevich dt nan", lambda: izh(dt_ms=NAN), ValueError, "dt_ms"),
    ("izhikevich steps beyond memory", lambda: izh(duration_ms=1e12), ValueError,
     "duration_ms"),
    ("izhikevich callable current text", lambda: izh(current=lambda t: "x"), ValueError,
     "current"),
    ("izhikevich steps not whole", lambda: izh(dt_ms=0.3), ValueError, "duration_ms"),
    ("izhikevich engine", lambda: izh(engine="nest"), ValueError, "engine"),
    ("izhikevich pattern name", lambda: simulate_neuron("tonic_spikin"), KeyError, "pattern"),
    ("neuron steps beyond memory", lambda: simulate(duration_ms=1e9), ValueError,
     "duration_ms"),
    # -- active dendrites and k-winners
    ("kwinners k_inference inf", lambda: KWinners(10, 0.2, k_inference_factor=INF),
     ValueError, "k_inference_factor"),
    ("kwinners boost nan", lambda: KWinners(10, 0.2, boost_strength=NAN), ValueError,
     "boost_strength"),
    ("kwinners percent_on zero", lambda: KWinners(10, 0.0), ValueError, "percent_on"),
    ("kwinners boost factor 2", lambda: KWinners(10, 0.2, boost_strength_factor=2.0),
     ValueError, "boost_strength_factor"),
    ("dendrite layer sparsity nan", lambda: ActiveDendritesLayer(
        4, 4, 2, 3, dendrite_sparsity=NAN), ValueError, "dendrite_sparsity"),
    ("dendrite layer weight sparsity 1", lambda: ActiveDendritesLayer(
        4, 4, 2, 3, weight_sparsity=1.0), ValueError, "weight_sparsity"),
    ("dendrite layer variant", lambda: ActiveDendritesLayer(4, 4, 2, 3, variant="max"),
     ValueError, "variant"),
    ("dendritic mlp percent_on nan", lambda: DendriticMLP(4, 2, [8], 2, 3, kw_percent_on=NAN),
     ValueError, "kw_percent_on"),
    ("dendritic mlp context_density 0", lambda: DendriticMLP(
        4, 2, [8], 2, 3, context_density=0.0), ValueError, "context_density"),
    ("dendritic mlp init gain inf", lambda: DendriticMLP(
        4, 2, [8], 2, 3, dendrite_init_gain=INF), ValueError, "dendrite_init_gain"),
    ("mlp k_inference nan", lambda: MLP(4, 2, [8], kw_percent_on=0.5, k_inference_factor=NAN),
     ValueError, "k_inference_factor"),
    ("mlp boost inf", lambda: MLP(4, 2, [8], boost_strength=INF), ValueError,
     "boost_strength"),
    # -- devices: one behaviour with decoding/_device.py
    ("device unknown", lambda: resolve_device("tpu"), ValueError, "device"),
    ("device not a name", lambda: resolve_device(3), ValueError, "device"),
    ("device mps", lambda: resolve_device("mps"), ValueError, "device"),
    ("device gpu index beyond count", lambda: resolve_device("cuda:99"), ValueError, "device"),
    pytest.param("device cuda without CUDA", lambda: resolve_device("cuda"), ValueError,
                 "device", marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA present")),
    pytest.param("neuron on cuda without CUDA", lambda: simulate(device="cuda"), ValueError,
                 "device", marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA present")),
    # -- SDR closed forms and simulators beyond their range
    ("sdr n beyond 2**53", lambda: sdr.false_match_probability(2**60, 10**5, 10**5, 3),
     ValueError, "n"),
    ("sdr exact union table", lambda: sdr.union_size_distribution(10**7, 10**5, 10),
     ValueError, "m"),
    ("sdr exact union method", lambda: sdr.union_false_match_probability(
        10**7, 10**4, 10**5, 10, 10, method="exact"), ValueError, "m"),
    ("sdr monte carlo budget", lambda: sdr.simulate_false_match(10**7, 10**5, 10**5, 1),
     ValueError, "n_trials"),
    ("sdr exact integer too big", lambda: sdr.number_of_sdrs(10**8, 10**6), ValueError, "a"),
    ("sdr optimal threshold no synapse", lambda: sdr.optimal_threshold(100, 20, 0, 5),
     ValueError, "s"),
    ("sdr theta above s", lambda: sdr.false_match_probability(100, 20, 10, 11), ValueError,
     "theta"),
    ("sdr n float", lambda: sdr.false_match_probability(100.5, 20, 10, 5), ValueError, "n"),
    ("sdr fp_weight nan", lambda: sdr.optimal_threshold(100, 20, 10, 5, fp_weight=NAN),
     ValueError, "fp_weight"),
]


def _id(case):
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize(("label", "call", "exc", "field"), CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_refused_naming_the_field(label, call, exc, field):
    with pytest.raises(exc) as info:
        call()
    assert field in str(info.value), f"{label}: {info.value!r} does not name {field!r}"


# --------------------------------------------------------------------------------------
# the hang of the issue, and the class of huge closed-form inputs
# --------------------------------------------------------------------------------------
HUGE = [
    (10**7, 10**5, 10**5, 1),  # the call: no answer in 90 s before
    (10**7, 10**5, 10**5, 1000),  # at the mean overlap
    (10**7, 10**5, 10**5, 1300),  # ~9 sd above it
    (10**9, 10**6, 10**4, 50),
    (10**12, 10**6, 10**6, 1),
]


@pytest.mark.parametrize(("n", "a", "s", "theta"), HUGE)
def test_huge_false_match_answers_fast_and_equals_scipy(n, a, s, theta):
    t0 = time.perf_counter()
    p = sdr.false_match_probability(n, a, s, theta)
    logp = sdr.log_false_match_probability(n, a, s, theta)
    assert time.perf_counter() - t0 < 5.0  # milliseconds on an idle machine
    ref = stats.hypergeom.sf(theta - 1, n, s, a)
    assert p == pytest.approx(ref, rel=1e-12, abs=1e-300)
    if ref > 1e-300:
        assert logp == pytest.approx(math.log(ref), rel=1e-10, abs=1e-12)


def test_log_tail_far_below_float_range_matches_logsf_and_exact_integers():
    # 1e-583: below the smallest float; scipy's logsf sums the same tail independently
    n, a, s, theta = 10**7, 10**5, 10**5, 3000
    ours = sdr.log_false_match_probability(n, a, s, theta)
    assert sdr.false_match_probability(n, a, s, theta) == 0.0
    assert ours == pytest.approx(float(stats.hypergeom.logsf(theta - 1, n, s, a)), rel=1e-9)
    # where the exact integers are still cheap, the floating-point tail agrees with them
    n, a, s, theta = 100_000, 2000, 200, 150
    exact = sdr._log_ratio(*sdr._false_match_counts(n, a, s, theta))
    assert sdr._hypergeom_tail(n, s, a, theta)[1] == pytest.approx(exact, rel=1e-12)


def test_huge_false_negative_and_optimal_threshold_agree_with_scipy():
    a, s, theta, v = 10**6, 10**5, 50_000, 5 * 10**5
    ref = stats.hypergeom.sf(s - theta, a, s, v)
    assert sdr.false_negative_probability(a, s, theta, v) == pytest.approx(ref, rel=1e-10)
    n, a, s, v = 10**7, 10**5, 2000, 3 * 10**4
    t0 = time.perf_counter()
    theta, fp, fn = sdr.optimal_threshold(n, a, s, v)
    assert time.perf_counter() - t0 < 5.0
    ts = np.arange(1, s + 1)
    cost = stats.hypergeom.sf(ts - 1, n, s, a) + stats.hypergeom.sf(s - ts, a, s, v)
    assert fp + fn == pytest.approx(cost.min(), rel=1e-6, abs=1e-300)
    assert cost[theta - 1] == pytest.approx(cost.min(), rel=1e-6, abs=1e-300)


def test_log_number_of_sdrs_matches_exact_integer():
    assert sdr.log_number_of_sdrs(10**5, 2000) == pytest.approx(
        math.log(math.comb(10**5, 2000)), rel=1e-12)


# --------------------------------------------------------------------------------------
# the jobs' params models: finite floats only (``--set params.x=.inf`` used to run)
# --------------------------------------------------------------------------------------
def _float_fields(model):
    import types
    import typing

    for name, info in model.model_fields.items():
        a = info.annotation
        union = typing.get_origin(a) in (typing.Union, types.UnionType)
        if a is float or (union and float in typing.get_args(a)):
            yield name


def _params_models():
    from neurosim.jobs.dendrites import ContinualParams, SdrTheoryParams
    from neurosim.jobs.izhikevich_patterns import PatternsParams
    from neurosim.jobs.simulate_network import SimulateNetworkParams
    from neurosim.jobs.what_when import WhatWhenParams

    return [SdrTheoryParams, ContinualParams, PatternsParams, SimulateNetworkParams,
            WhatWhenParams]


PARAM_CASES = [(m, f, v) for m in _params_models() for f in _float_fields(m) for v in (NAN, INF)]


def test_every_neurosim_params_model_is_finite_only():
    for model in _params_models():
        assert model.model_config.get("allow_inf_nan") is False, model.__name__


@pytest.mark.parametrize(("model", "field", "value"), PARAM_CASES,
                         ids=[f"{m.__name__}.{f}={v}" for m, f, v in PARAM_CASES])
def test_job_params_refuse_non_finite_floats(model, field, value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        model(**{field: value})
    assert field in str(info.value)
