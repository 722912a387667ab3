"""Cross-check of the torch engine against Brian2, the reference engine.

In float64 with the noise off and the same input, both engines compute the same arithmetic in
the same order (the torch neuron update mirrors the code Brian2 generates), so the spike
trains must agree exactly. They agree only for a while in a strongly coupled network:
recurrent networks are chaotic, and a last-bit difference (e.g. from a different summation
order of the synaptic input) grows until one spike moves by a step, after which the two runs
are different samples of the same dynamics. With noise (different random generators) only
statistics can agree: rates and spectra within sampling error.
"""

from __future__ import annotations

import numpy as np
import pytest

from neurosim.engines import get_engine
from neurosim.network import NetworkModel, izhikevich_2003, spectral_peak
from neurosim.reservoir import Reservoir

brian2 = pytest.importorskip("brian2")
pytestmark = pytest.mark.brian2


def test_engine_registry():
    assert get_engine("torch").__name__ == "simulate_torch"
    assert get_engine("brian2").__name__ == "simulate_brian2"
    with pytest.raises(ValueError, match=r"engine: unknown engine 'nest'; expected one of"):
        get_engine("nest")


def test_identical_spikes_on_weakly_coupled_reservoir():
    res = Reservoir(n=1000, p_connect=0.1, w_exc=0.2, w_inh=-0.4, n_inputs=3, seed=1)
    drive = np.random.default_rng(0).random((400, 3))
    kw = dict(inputs=drive, noise=False, record=("spikes", "v"))
    r_brian = res.run(200.0, engine="brian2", device="numpy", **kw)
    # both torch paths, and the default ("auto": the C++ kernel where it compiles)
    for kernel in ("eager", "cpp", "auto"):
        r_torch = res.run(200.0, dtype="float64", device="cpu", kernel=kernel, **kw)
        assert len(r_torch) > 1000  # an active network, not a trivially silent one
        np.testing.assert_array_equal(r_torch.times_ms, r_brian.times_ms)
        np.testing.assert_array_equal(r_torch.neuron, r_brian.neuron)
        np.testing.assert_array_equal(r_torch.v, r_brian.v)  # to the last bit


def test_identical_spikes_per_trial_with_2003_pulse_synapses():
    # the net.m update (two half-steps, one-step current pulses), per-trial inputs, batch 2
    model = izhikevich_2003(n_exc=160, n_inh=40, seed=4)
    model.input_weights = np.random.default_rng(1).random((2, 200)) * 12.0
    drive = np.random.default_rng(2).random((2, 100, 2))
    r_brian = model.run(100.0, inputs=drive, batch=2, noise=False, engine="brian2",
                        device="numpy")
    for kernel in ("eager", "cpp"):
        r_torch = model.run(100.0, inputs=drive, batch=2, noise=False, dtype="float64",
                            device="cpu", kernel=kernel)
        assert len(r_torch) > 100
        for field in ("times_ms", "neuron", "trial"):
            np.testing.assert_array_equal(getattr(r_torch, field), getattr(r_brian, field))
    assert not np.array_equal(r_torch.counts()[0], r_torch.counts()[1])


def test_2003_network_statistics_agree_with_noise():
    model = izhikevich_2003(seed=0)
    r_torch = model.run(1000.0, batch=3, device="cpu", seed=0)
    r_brian = model.run(1000.0, engine="brian2", device="numpy", seed=0)
    for sel in (model.exc, ~model.exc):
        t = r_torch.rates_hz("trial", sel)
        b = r_brian.rates_hz("trial", sel)[0]
        # trial-to-trial spread of the mean rate is ~0.15 Hz at 1 s (5 sigma bound)
        assert abs(b - t.mean()) < max(5 * t.std(ddof=1), 0.6), (b, t)
    f, p_b = r_brian.psd()
    assert 6 <= spectral_peak(f, p_b[0], (2, 100))[0] <= 14
    _, p_t = r_torch.psd()
    # power in the alpha and gamma bands relative to the total, within a factor 2
    for band in ((6, 14), (25, 50)):
        sel = (f >= band[0]) & (f <= band[1])
        rel_b = p_b[0, sel].sum() / p_b[0].sum()
        rel_t = p_t[:, sel].sum(axis=1) / p_t.sum(axis=1)
        assert 0.5 < rel_b / rel_t.mean() < 2.0, (band, rel_b, rel_t)


def test_brian2_divergence_and_bad_mode():
    model = izhikevich_2003(n_exc=8, n_inh=2)
    with pytest.raises(ValueError, match="device: expected one of"):
        model.run(10.0, engine="brian2", device="cuda")
    # as in test_network: Euler at dt = 1 ms on a strongly inhibited cell blows up
    cell = NetworkModel(a=[0.02, 0.02], b=[0.2, 0.2], c=[-65, -65], d=[8, 8],
                        weights=np.zeros((2, 2)), exc=[True, True], noise_std=[0, 0],
                        input_weights=np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"dt_ms=1.0: .*diverged.*neuron 1"):
        cell.run(50.0, engine="brian2", device="numpy", inputs=np.full((50, 1), -1000.0))


@pytest.mark.slow
def test_cpp_standalone_matches_runtime_statistics():
    model = izhikevich_2003(seed=0)
    rec = model.run(1000.0, engine="brian2", device="cpp_standalone", seed=0)
    exc = rec.rates_hz("trial", model.exc)[0]
    assert 6 < exc < 9
    assert rec.info["run_s"] > 0 and rec.info["build_s"] > 0
