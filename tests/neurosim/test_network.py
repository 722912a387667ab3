"""Izhikevich networks and reservoirs (torch engine) against published numbers and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.sparse
import torch

from neurosim.network import NetworkModel, SpikeRecord, izhikevich_2003, spectral_peak
from neurosim.reservoir import Reservoir


@pytest.fixture(scope="module")
def net2003_record():
    model = izhikevich_2003(seed=0)
    return model, model.run(1000.0, batch=4, device="cpu", seed=1)


def test_2003_parameters_follow_net_m():
    model = izhikevich_2003(n_exc=80, n_inh=20, seed=3)
    rng = np.random.default_rng(3)  # the same draws, in the same order, as net.m's rand
    re, ri = rng.random(80), rng.random(20)
    np.testing.assert_allclose(model.c[:80], -65 + 15 * re**2)
    np.testing.assert_allclose(model.d[:80], 8 - 6 * re**2)
    np.testing.assert_allclose(model.a[80:], 0.02 + 0.08 * ri)
    np.testing.assert_allclose(model.b[80:], 0.25 - 0.05 * ri)
    w = model.weights
    assert w.shape == (100, 100)
    scale = 1000 / 100  # weights scaled by 1000 / N
    assert np.all((w[:80] >= 0) & (w[:80] <= 0.5 * scale))
    assert np.all((w[80:] <= 0) & (w[80:] >= -scale))
    np.testing.assert_allclose(model.noise_std, np.r_[np.full(80, 5.0), np.full(20, 2.0)])
    assert model.v_substeps == 2 and model.dt_ms == 1.0 and model.tau_syn_ms is None


def test_2003_weights_follow_the_published_construction():
    """net.m's S = [0.5 rand(N, Ne), -rand(N, Ni)] (column = presynaptic cell), scaled by
    1000 / N: the weights are those draws (in net.m's order, after re and ri), and their
    distribution has net.m's means and ranges, so e.g. 20% weaker inhibition fails."""
    n_exc, n_inh, seed = 160, 40, 5
    n = n_exc + n_inh
    model = izhikevich_2003(n_exc=n_exc, n_inh=n_inh, seed=seed)
    scale = 1000.0 / n
    rng = np.random.default_rng(seed)
    rng.random(n_exc), rng.random(n_inh)  # re, ri come first
    expected = np.vstack([0.5 * scale * rng.random((n_exc, n), dtype=np.float32),
                          -scale * rng.random((n_inh, n), dtype=np.float32)])
    np.testing.assert_allclose(model.weights, expected, rtol=1e-6)
    # the construction's statistics: U(0, 0.5) and U(-1, 0) times the scale
    w_exc, w_inh = model.weights[:n_exc] / scale, model.weights[n_exc:] / scale
    assert w_exc.mean() == pytest.approx(0.25, abs=0.01)   # se 0.002
    assert w_inh.mean() == pytest.approx(-0.5, abs=0.02)   # se 0.005; 20% weaker: -0.4
    assert 0.49 < w_exc.max() <= 0.5 and -1.0 <= w_inh.min() < -0.98
    # every cell gets the same mix: inhibition per inhibitory synapse is twice excitation
    ratio = w_inh.mean() / w_exc.mean()
    assert ratio == pytest.approx(-2.0, rel=0.05)


def test_2003_network_rates_match_published_rerun(net2003_record):
    # REFERENCES 2.1: a faithful re-run of net.m gives exc 7.44 Hz, inh 6.96 Hz.
    model, rec = net2003_record
    exc = rec.rates_hz("trial", model.exc)
    inh = rec.rates_hz("trial", ~model.exc)
    assert np.all((exc > 6.0) & (exc < 9.0)), exc
    assert np.all((inh > 5.5) & (inh < 9.0)), inh
    assert rec.rates_hz()[:, model.exc].min(axis=0).max() > 0  # no silent excitatory cell ...
    assert (rec.rates_hz()[:, model.exc].sum(axis=0) > 0).mean() > 0.99  # ... across trials


def test_2003_network_has_alpha_and_gamma_peaks(net2003_record):
    model, rec = net2003_record
    f, pxx = rec.psd(bin_ms=1.0)
    p = pxx.mean(axis=0)
    band = (f >= 2) & (f <= 100)
    f_max = f[band][np.argmax(p[band])]
    assert 6 <= f_max <= 14, f_max  # the dominant rhythm is alpha (published: 7.9-8.9 Hz)
    f_g, p_g = spectral_peak(f, p, (25, 50))
    assert p_g > 10 * np.median(p[f >= 60])  # a gamma rhythm well above the spectral floor
    assert p_g > p[(f >= 14) & (f <= 22)].min()  # ... that is a peak, not a shoulder


def test_float64_gives_the_same_statistics():
    model = izhikevich_2003(seed=0)
    r32 = model.run(500.0, device="cpu", seed=2)
    r64 = model.run(500.0, device="cpu", seed=2, dtype="float64")
    assert abs(r32.rates_hz("trial")[0] - r64.rates_hz("trial")[0]) < 0.8


def test_batch_trials_share_weights_and_have_own_noise():
    model = izhikevich_2003(n_exc=160, n_inh=40, seed=0)
    noisy = model.run(100.0, batch=3, device="cpu")
    c = noisy.counts()
    assert not np.array_equal(c[0], c[1])
    quiet = model.run(100.0, batch=2, device="cpu", noise=False)
    assert len(quiet) == 0  # without thalamic input the 2003 network stays at rest
    # with the same drive and no noise, all trials are the same trial
    model.input_weights = np.eye(200)[:5] * 20.0
    drive = np.ones((100, 5))
    rec = model.run(100.0, batch=3, device="cpu", noise=False, inputs=drive)
    c = rec.counts()
    assert c.sum() > 0 and np.array_equal(c[0], c[2])


def test_single_cell_matches_scalar_reference_loop():
    # one RS cell with constant current: the engine against a plain Python loop of the
    # published update (two half-steps of v, u from the new v, reset at v >= 30)
    a, b, c, d, current = 0.02, 0.2, -65.0, 8.0, 10.0
    model = NetworkModel(a=[a], b=[b], c=[c], d=[d], weights=np.zeros((1, 1)), exc=[True],
                         noise_std=[0.0], input_weights=np.ones((1, 1)), v_substeps=2)
    rec = model.run(300.0, dt_ms=1.0, inputs=np.full((300, 1), current), device="cpu",
                    dtype="float64", noise=False)
    v, u, spikes = -65.0, b * -65.0, []
    for k in range(300):
        for _ in range(2):
            v += 0.5 * (0.04 * v * v + 5 * v + 140 - u + current)
        u += a * (b * v - u)
        if v >= 30:
            spikes.append(k * 1.0)
            v, u = c, u + d
    assert len(spikes) > 5
    np.testing.assert_array_equal(rec.times_ms, spikes)


def test_spike_record_helpers_against_numpy():
    rng = np.random.default_rng(0)
    n, dur, dt = 50, 2000.0, 0.5
    # inhomogeneous Poisson spikes, rate 20 (1 + sin(2 pi 10 t)) Hz: a 10 Hz PSD peak
    t = np.arange(0, dur, dt)
    p = 20 * (1 + np.sin(2 * np.pi * 10 * t / 1000)) * dt / 1000
    hits = rng.random((2, t.size, n)) < p[None, :, None]
    trial, step, neuron = np.nonzero(hits)
    rec = SpikeRecord(step * dt, neuron, trial, n, dur, 2, dt)
    np.testing.assert_array_equal(rec.counts(), hits.sum(axis=1))
    np.testing.assert_allclose(rec.rates_hz("trial"), hits.sum(axis=(1, 2)) / n / 2.0)
    t_bins, pop = rec.population_rate(bin_ms=5.0, neurons=np.arange(10))
    sel = neuron < 10
    hist = np.histogram(step[sel & (trial == 1)] * dt, bins=np.arange(0, dur + 5, 5.0))[0]
    np.testing.assert_allclose(pop[1], hist / 10 / 0.005)
    f, pxx = rec.psd()
    assert spectral_peak(f, pxx[0], (2, 100))[0] == 10.0
    _, ref = scipy.signal.welch(rec.population_rate(1.0)[1], fs=1000.0, nperseg=1000)
    np.testing.assert_allclose(pxx, ref)
    trains = rec.spike_trains()
    assert trains.shape == (2, 4000, n)
    np.testing.assert_array_equal(trains.numpy(), hits.astype(np.float32))


def test_filtered_is_exponential_kernel():
    rec = SpikeRecord([10.0, 30.0], [1, 1], [0, 0], n_neurons=3, duration_ms=100.0,
                      batch=1, dt_ms=0.5)
    r = rec.filtered(tau_ms=20.0, dtype=torch.float64)
    assert isinstance(r, torch.Tensor) and r.shape == (1, 200, 3)
    t = np.arange(200) * 0.5
    ref = sum(np.where(t >= s, np.exp(-(t - s) / 20.0), 0.0) for s in (10.0, 30.0))
    np.testing.assert_allclose(r[0, :, 1].numpy(), ref, rtol=1e-12)
    assert float(r[0, :, [0, 2]].abs().max()) == 0.0


def test_raster_draws_every_spike():
    import matplotlib

    matplotlib.use("Agg")
    rec = SpikeRecord([1.0, 2.0, 3.0], [0, 1, 2], [0, 0, 1], 3, 10.0, 2, 1.0)
    ax = rec.raster(exc=np.array([True, False, True]))
    assert sum(len(c.get_offsets()) for c in ax.collections) == 2  # trial 0 only


def test_reservoir_connectivity_statistics():
    res = Reservoir(n=2000, p_connect=0.05, exc_fraction=0.75, n_inputs=3,
                    input_fraction=0.1, seed=1).build()
    w = res.model_.weights
    assert scipy.sparse.issparse(w)
    deg = np.diff(w.indptr)
    # out-degree ~ Binomial(n - 1, p): mean within 4 standard errors, variance within 15 %
    assert abs(deg.mean() - 0.05 * 1999) < 4 * np.sqrt(0.05 * 0.95 * 1999 / 2000)
    assert abs(deg.var() / (0.05 * 0.95 * 1999) - 1) < 0.15
    in_deg = np.bincount(w.indices, minlength=2000)
    assert abs(in_deg.mean() - 0.05 * 1999) < 4 * np.sqrt(0.05 * 0.95 * 1999 / 2000)
    assert w.has_canonical_format  # sorted, no duplicate pairs
    assert w.diagonal().max() == 0 and w.diagonal().min() == 0  # no autapses
    coo = w.tocoo()
    exc = res.exc_
    assert exc.sum() == 1500
    assert np.all(coo.data[exc[coo.row]] > 0) and np.all(coo.data[~exc[coo.row]] < 0)
    assert res.model_.input_weights.shape == (3, 2000)
    assert all(len(c) == 200 for c in res.input_neurons_)
    np.testing.assert_array_equal(np.flatnonzero(res.model_.input_weights[1]),
                                  res.input_neurons_[1])


def test_reservoir_pattern_mixture():
    from neurosim.izhikevich import PATTERNS

    res = Reservoir(n=1000, heterogeneity={"exc": {"RS": 0.7, "CH": 0.3}, "inh": {"FS": 1}},
                    seed=0).build()
    m = res.model_
    is_ch = np.isclose(m.c, PATTERNS["CH"].params.c) & res.exc_
    assert abs(is_ch.sum() / 800 - 0.3) < 0.05
    np.testing.assert_allclose(m.a[~res.exc_], PATTERNS["FS"].params.a)
    with pytest.raises(KeyError, match="valid patterns"):
        Reservoir(n=10, heterogeneity={"exc": {"RSS": 1.0}, "inh": {"FS": 1}}).build()


def test_reservoir_runs_in_a_2003_like_regime():
    res = Reservoir(n=1000, seed=0)
    rec = res.run(1000.0, device="cpu")
    exc = rec.rates_hz("trial", res.exc_)[0]
    assert 4 < exc < 15, exc
    f, pxx = rec.psd()
    assert 5 <= spectral_peak(f, pxx[0], (2, 100))[0] <= 14


def test_sparse_and_dense_weights_give_identical_spikes():
    # the two propagation paths (dense rows, padded sparse rows) are the same arithmetic
    res = Reservoir(n=300, p_connect=0.1, n_inputs=2, seed=2).build()
    dense = NetworkModel(**{**res.model_.__dict__, "weights": res.model_.weights.toarray()})
    drive = np.random.default_rng(0).random((400, 2))
    r_sparse = res.model_.run(200.0, inputs=drive, device="cpu", dtype="float64", seed=5)
    r_dense = dense.run(200.0, inputs=drive, device="cpu", dtype="float64", seed=5)
    assert len(r_sparse) > 100
    np.testing.assert_array_equal(r_sparse.times_ms, r_dense.times_ms)
    np.testing.assert_array_equal(r_sparse.neuron, r_dense.neuron)


# --- bad input -----------------------------------------------------------------------


def test_bad_batch_engine_and_dtype():
    model = izhikevich_2003(n_exc=8, n_inh=2)
    with pytest.raises(ValueError, match="batch: expected an integer >= 1, got 0"):
        model.run(10.0, batch=0)
    with pytest.raises(ValueError, match=r"engine: unknown engine 'brain2'.*'brian2'"):
        model.run(10.0, engine="brain2")
    with pytest.raises(ValueError, match="dtype"):
        model.run(10.0, dtype="float16", device="cpu")
    with pytest.raises(ValueError, match="duration_ms"):
        model.run(10.3, device="cpu")


def test_nan_weights_and_parameters_are_refused():
    model = izhikevich_2003(n_exc=8, n_inh=2)
    model.weights[3, 4] = np.nan
    with pytest.raises(ValueError, match="weights: expected finite values"):
        model.run(10.0, device="cpu")
    with pytest.raises(ValueError, match="a: expected finite values, got nan at neuron 1"):
        NetworkModel(a=[0.02, np.nan], b=[0.2, 0.2], c=[-65, -65], d=[8, 8],
                     weights=np.zeros((2, 2)), exc=[True, True], noise_std=[5, 5]).validate()


def test_inputs_of_wrong_shape_are_refused():
    res = Reservoir(n=50, n_inputs=3, seed=0)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(batch=2, n_steps=20, "
                                         r"n_channels=3\).*got \(2, 20, 4\)"):
        res.run(10.0, inputs=np.zeros((2, 20, 4)), batch=2, device="cpu")
    with pytest.raises(ValueError, match="inputs: expected finite"):
        res.run(10.0, inputs=np.full((20, 3), np.nan), device="cpu")
    with pytest.raises(ValueError, match="inputs: the model has no input projection"):
        izhikevich_2003(n_exc=8, n_inh=2).run(10.0, inputs=np.zeros((10, 1)), device="cpu")


def test_diverging_dt_is_detected_and_named():
    # a strongly inhibited cell: the ODE settles near -220 mV, but Euler at dt = 1 ms
    # overshoots past -1000 mV and blows up
    model = NetworkModel(a=[0.02, 0.02], b=[0.2, 0.2], c=[-65, -65], d=[8, 8],
                         weights=np.zeros((2, 2)), exc=[True, True], noise_std=[0, 0],
                         input_weights=np.array([[0.0, 1.0]]))
    drive = np.full((50, 1), -1000.0)
    with pytest.raises(ValueError, match=r"dt_ms=1.0: .*diverged.*neuron 1 \(trial 0\)"):
        model.run(50.0, dt_ms=1.0, inputs=drive, device="cpu")
    rec = model.run(50.0, dt_ms=0.05, inputs=np.full((1000, 1), -1000.0), device="cpu",
                    record=("spikes", "v"))
    assert -240 < rec.v[0, -1, 1] < -200


def test_reservoir_bad_parameters():
    with pytest.raises(ValueError, match="p_connect: expected a number in \\[0, 1\\], got 1.5"):
        Reservoir(p_connect=1.5).build()
    with pytest.raises(ValueError, match="heterogeneity"):
        Reservoir(heterogeneity="random").build()
    with pytest.raises(ValueError, match="w_inh"):
        Reservoir(w_inh=1.0).build()


# --- the job -------------------------------------------------------------------------


@pytest.mark.parametrize("config", ["izhikevich_2003", "reservoir"])
def test_simulate_network_job_smoke(tmp_path, config):
    from pathlib import Path

    from neurosim.jobs.simulate_network import simulate_network
    from neurosuite.config import resolve
    from neurosuite.runs import Run

    root = Path(__file__).resolve().parents[2]
    cfg = resolve(root / "configs" / "sim" / f"{config}.yaml", level="smoke")
    run = Run(tmp_path, seed=0, level="smoke", device="cpu", verbose=False)
    metrics = simulate_network(cfg.params, run)
    assert (tmp_path / "figures" / "raster.png").stat().st_size > 10_000
    assert (tmp_path / "figures" / "rates_and_spectrum.png").exists()
    assert metrics["exc_rate_hz"] > 0
    lo, hi = cfg.params.alpha_band_hz
    assert lo <= metrics["alpha_peak_hz"] <= hi
    assert run.metrics["tables"]["statistics"][0]["engine"] == "torch"


def test_cpp_kernel_matches_eager_bitwise():
    # the C++ kernel (plain C++ compiled on first use in seconds) does the eager arithmetic
    res = Reservoir(n=500, n_inputs=2, seed=3).build()
    drive = np.random.default_rng(0).random((2, 800, 2))
    for dtype in ("float32", "float64"):
        kw = dict(inputs=drive, batch=2, device="cpu", dtype=dtype, record=("spikes", "v"))
        eager = res.run(400.0, kernel="eager", **kw)
        cpp = res.run(400.0, kernel="cpp", noise_rng="torch", **kw)
        assert len(eager) > 500
        for field in ("times_ms", "neuron", "trial", "v"):
            np.testing.assert_array_equal(getattr(eager, field), getattr(cpp, field))
    model = izhikevich_2003(seed=0)
    eager = model.run(300.0, device="cpu", kernel="eager")
    cpp = model.run(300.0, device="cpu", kernel="cpp", noise_rng="torch")
    np.testing.assert_array_equal(eager.times_ms, cpp.times_ms)
    np.testing.assert_array_equal(eager.neuron, cpp.neuron)
