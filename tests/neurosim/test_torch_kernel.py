"""The C++ kernel's own noise generator (``kernel="cpp", noise_rng="xoshiro"``).

Its streams differ from ``torch.randn``'s, so only distributions can be compared: the noise
itself against the standard normal (scipy's Kolmogorov-Smirnov test), and the 2003 network's
rates and spectrum against the eager path's within sampling error. Noise-free runs stay
bitwise equal to the eager path (tests/neurosim/test_network.py and test_engines.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import scipy.stats

from neurosim.network import NetworkModel, izhikevich_2003, spectral_peak


@pytest.fixture(scope="module")
def kernel():
    from neurosim.engines.torch_engine import load_kernel

    try:
        return load_kernel()
    except RuntimeError as err:  # no C++ compiler on this machine
        pytest.skip(str(err))


def _noise_probe(n: int, noise_every: int) -> NetworkModel:
    # a = b = 0 keeps u = 0 and no spikes occur over a few 0.01 ms steps, so the input current
    # of step k is recovered from v exactly enough in float64: (v[k+1]-v[k])/dt - f(v[k])
    std = np.linspace(0.5, 3.0, n)
    return NetworkModel(a=np.zeros(n), b=np.zeros(n), c=np.full(n, -65.0), d=np.zeros(n),
                        weights=scipy.sparse.csr_matrix((n, n)),
                        exc=np.ones(n, bool), noise_std=std, dt_ms=0.01,
                        noise_interval_ms=0.01 * noise_every)


def _currents(rec, dt: float) -> np.ndarray:
    v = rec.v  # (batch, n_steps, n)
    f = 0.04 * v[:, :-1] ** 2 + 5 * v[:, :-1] + 140
    return (v[:, 1:] - v[:, :-1]) / dt - f


def test_kernel_noise_is_standard_normal_per_trial(kernel):
    model = _noise_probe(5000, noise_every=1)
    kw = dict(device="cpu", kernel="cpp", noise_rng="xoshiro", dtype="float64",
              record=("spikes", "v"))
    rec = model.run(0.11, batch=3, seed=7, **kw)
    assert len(rec) == 0
    z = _currents(rec, 0.01) / model.noise_std  # (3, 10, 5000), standard normal
    assert scipy.stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)
    # Box-Muller of 24-bit uniforms: tails to ~5.6 sigma, P(|z| > 3) as for a Gaussian
    p3 = np.mean(np.abs(z) > 3)
    assert abs(p3 - 2 * scipy.stats.norm.sf(3)) < 5 * np.sqrt(0.0027 / z.size)
    # trials and steps are independent draws
    assert abs(np.corrcoef(z[0].ravel(), z[1].ravel())[0, 1]) < 5 / np.sqrt(z[0].size)
    assert abs(np.corrcoef(z[0, :-1].ravel(), z[0, 1:].ravel())[0, 1]) < 0.02
    # trial b's stream depends on (seed, b) only: not on the batch size; other seeds differ
    one = model.run(0.11, batch=1, seed=7, **kw)
    np.testing.assert_array_equal(one.v[0], rec.v[0])
    other = model.run(0.11, batch=1, seed=8, **kw)
    assert not np.array_equal(other.v[0], rec.v[0])


def test_kernel_noise_held_over_noise_interval(kernel):
    model = _noise_probe(200, noise_every=2)  # redrawn every other step, as in the eager path
    rec = model.run(0.09, device="cpu", kernel="cpp", noise_rng="xoshiro", dtype="float64",
                    record=("spikes", "v"))
    i = _currents(rec, 0.01)[0]  # (8, 200)
    np.testing.assert_allclose(i[0::2], i[1::2], atol=1e-9)
    assert not np.allclose(i[0], i[2])


def test_kernel_noise_gives_eager_rate_and_spectrum_statistics(kernel):
    # the 2003 network, 16 trials per generator (the reference: torch.randn noise, whose
    # kernel run is bitwise the eager run): rates and relative band powers of the population
    # rate agree within 4 standard errors (band powers vary ~40% from trial to trial)
    model = izhikevich_2003(seed=0)
    kw = dict(batch=16, device="cpu", seed=3, kernel="cpp")
    fast = model.run(1000.0, noise_rng="xoshiro", **kw)
    ref = model.run(1000.0, noise_rng="torch", **kw)

    def close(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> bool:
        se = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / len(a))
        return abs(a.mean() - b.mean()) < max(4 * se, floor)

    for sel in (model.exc, ~model.exc):
        a, b = fast.rates_hz("trial", sel), ref.rates_hz("trial", sel)
        assert close(a, b, 0.1), (a.mean(), b.mean())
    assert 6 < fast.rates_hz("trial", model.exc).mean() < 9
    f, p_fast = fast.psd()
    _, p_ref = ref.psd()
    assert 6 <= spectral_peak(f, p_fast.mean(0), (2, 100))[0] <= 14
    for band in ((6, 14), (25, 50)):
        sel = (f >= band[0]) & (f <= band[1])
        rel = [p[:, sel].sum(1) / p.sum(1) for p in (p_fast, p_ref)]
        assert close(*rel), (band, rel[0].mean(), rel[1].mean())


def test_noise_rng_bad_input():
    model = izhikevich_2003(n_exc=8, n_inh=2)
    with pytest.raises(ValueError, match=r"noise_rng: expected one of .*, got 'mt'"):
        model.run(10.0, device="cpu", kernel="cpp", noise_rng="mt")
    with pytest.raises(ValueError, match=r"noise_rng: 'xoshiro' needs kernel='cpp'"):
        model.run(10.0, device="cpu", kernel="eager", noise_rng="xoshiro")
    with pytest.raises(ValueError, match=r"kernel: expected one of \('auto', 'eager', 'cpp'\)"):
        model.run(10.0, device="cpu", kernel="fast")


def test_auto_kernel_is_cpp_on_cpu_with_fast_noise_and_logs_once(kernel, caplog, monkeypatch):
    # kernel="auto" (the default) resolves to the C++ kernel on the CPU when it compiles, and
    # noise_rng="auto" to its in-kernel generator; one log line says which, once per process
    from neurosim.engines import torch_engine

    monkeypatch.setattr(torch_engine, "_AUTO_LOGGED", False)
    model = izhikevich_2003(n_exc=80, n_inh=20, seed=1)
    with caplog.at_level("INFO", logger="neurosim.engines.torch_engine"):
        rec = model.run(50.0, device="cpu", seed=2)
        model.run(50.0, device="cpu", seed=2)
    assert (rec.info["kernel"], rec.info["noise_rng"]) == ("cpp", "xoshiro")
    lines = [r.getMessage() for r in caplog.records if "kernel='auto'" in r.getMessage()]
    assert len(lines) == 1 and "cpp path" in lines[0], lines
    same = model.run(50.0, device="cpu", seed=2, kernel="cpp", noise_rng="xoshiro")
    np.testing.assert_array_equal(rec.times_ms, same.times_ms)  # the same path, bit for bit
    eager = model.run(50.0, device="cpu", seed=2, kernel="eager")
    assert (eager.info["kernel"], eager.info["noise_rng"]) == ("eager", "torch")
    # an explicit kernel="cpp" with the torch generator is the bitwise (eager) path
    cpp_torch = model.run(50.0, device="cpu", seed=2, kernel="cpp", noise_rng="torch")
    np.testing.assert_array_equal(eager.times_ms, cpp_torch.times_ms)
    np.testing.assert_array_equal(eager.neuron, cpp_torch.neuron)


def test_auto_kernel_falls_back_to_eager_without_a_compiler(monkeypatch, caplog, tmp_path):
    # no C++ compiler: "auto" runs the eager path (and its torch.randn noise) and warns once
    from neurosim.engines import torch_engine

    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("NEUROSIM_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch_engine, "_KERNEL", None)
    monkeypatch.setattr(torch_engine, "_KERNEL_ERROR", None)
    monkeypatch.setattr(torch_engine, "_AUTO_LOGGED", False)
    model = izhikevich_2003(n_exc=40, n_inh=10, seed=1)
    with caplog.at_level("INFO", logger="neurosim.engines.torch_engine"):
        rec = model.run(30.0, device="cpu", seed=4)
    assert (rec.info["kernel"], rec.info["noise_rng"]) == ("eager", "torch")
    warn = [r for r in caplog.records if "kernel='auto'" in r.getMessage()]
    assert len(warn) == 1 and warn[0].levelname == "WARNING"
    assert "eager path" in warn[0].getMessage() and "compiler" in warn[0].getMessage()
    ref = model.run(30.0, device="cpu", seed=4, kernel="eager", noise_rng="torch")
    np.testing.assert_array_equal(rec.times_ms, ref.times_ms)
    with pytest.raises(RuntimeError, match="needs a C.. compiler"):
        model.run(30.0, device="cpu", kernel="cpp")
