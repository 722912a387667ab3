"""Readout plasticity: the three-factor rule against its hand-computed equations, FORCE against
sklearn's ridge regression and the sine-wave task of Sussillo & Abbott (2009), and learning on
a small spiking reservoir."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from neurosim.plasticity import ForceReadout, ThreeFactorReadout, scheduled_gate
from neurosim.tasks import WhatWhenTask


def _reference_three_factor(r, y, g, eta, tau_e, dt, w0, normalize=False, standardize=False):
    """The online rule of the docstring written out in float64 numpy, one outer product per
    trial and step: for a first batch, standardised inputs use that batch's per-cell mean and
    sd; the normalised rate divides by the batch-mean |e|^2 (+1 for the bias synapse)."""
    B, T, N = r.shape
    r = r.astype(np.float64)
    if standardize:
        mu = r.reshape(-1, N).mean(axis=0)
        sd = r.reshape(-1, N).std(axis=0)
        r = (r - mu) / np.where(sd > 1e-6, sd, 1.0)
    w = w0.astype(np.float64).copy()
    bias = np.zeros(w.shape[0])
    e = np.zeros((B, N))
    occurred = (y.max(axis=1) > 0).astype(float)
    decay = math.exp(-dt / tau_e)
    for t in range(T):
        e = decay * e + (1 - decay) * r[:, t]
        s = r[:, t] @ w.T + bias
        m = occurred * (y[:, t] - s)  # error, only for identities that occurred
        rate = eta / B
        if normalize:
            rate /= np.mean(np.sum(e * e, axis=1)) + (1.0 if standardize else 0.0)
        for b in range(B):
            w += rate * g[b, t] * np.outer(m[b], e[b])
            if standardize:
                bias += rate * g[b, t] * m[b]
    return w, bias


def _data(seed=0, B=3, T=6, N=7, K=2):
    rng = np.random.default_rng(seed)
    r = rng.random((B, T, N)).astype(np.float32)
    y = np.zeros((B, T, K), dtype=np.float32)
    y[0, :, 0] = rng.random(T)
    y[1, :, 1] = rng.random(T)  # trial 2: nothing occurred
    g = rng.random((B, T)).astype(np.float32)
    return r, y, g


def test_online_update_is_the_gated_outer_product():
    r, y, g = _data()
    ro = ThreeFactorReadout(eta=0.3, tau_e_ms=4.0, dt_ms=1.0, normalize=False,
                            standardize=False)
    ro.partial_fit(torch.from_numpy(r), torch.from_numpy(y), torch.from_numpy(g))
    ref, _ = _reference_three_factor(r, y, g, 0.3, 4.0, 1.0, np.zeros((2, 7)))
    np.testing.assert_allclose(ro.W_when_.numpy(), ref, rtol=1e-5, atol=1e-7)
    assert np.abs(ref).max() > 1e-2  # the check is not vacuous
    assert ro.W_what_.abs().max() == 0  # "what" learns only in consolidation


@pytest.mark.parametrize("standardize", [False, True])
def test_default_normalised_rule_matches_the_reference(standardize):
    """The default form (normalised rate, standardised inputs and a bias synapse) against the
    float64 transcription of its equations."""
    r, y, g = _data(seed=1, T=9)
    ro = ThreeFactorReadout(eta=0.4, tau_e_ms=3.0, standardize=standardize)
    assert ro.normalize  # the default form
    ro.partial_fit(torch.from_numpy(r), torch.from_numpy(y), torch.from_numpy(g))
    ref_w, ref_b = _reference_three_factor(r, y, g, 0.4, 3.0, 1.0, np.zeros((2, 7)),
                                           normalize=True, standardize=standardize)
    np.testing.assert_allclose(ro.W_when_.numpy(), ref_w, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(ro.bias_when_.numpy(), ref_b, rtol=2e-4, atol=1e-6)
    assert np.abs(ref_w).max() > 1e-2 and (np.abs(ref_b).max() > 1e-2) == standardize
    if standardize:
        np.testing.assert_allclose(ro.mean_.numpy(), r.reshape(-1, 7).mean(0), rtol=1e-5)
        np.testing.assert_allclose(ro.scale_.numpy(), r.reshape(-1, 7).std(0), rtol=1e-4)


def test_normalised_rule_by_hand():
    """One cell, one trial, two steps, tau_e = dt: the normalised LMS update worked by hand.
    e0 = (1 - d) r0 with d = exp(-1); w1 = eta M0 e0 / e0^2 = eta y0 / e0; then
    e1 = d e0 + (1 - d) r1, M1 = y1 - w1 r1 and w2 = w1 + eta M1 / e1."""
    d = math.exp(-1.0)
    r0, r1, y0, y1, eta = 0.5, 1.0, 0.2, 0.8, 0.5
    e0 = (1 - d) * r0
    w1 = eta * y0 / e0
    e1 = d * e0 + (1 - d) * r1
    w2 = w1 + eta * (y1 - w1 * r1) / e1
    ro = ThreeFactorReadout(eta=eta, tau_e_ms=1.0, dt_ms=1.0, standardize=False)
    ro.partial_fit(torch.tensor([[[r0], [r1]]]), torch.tensor([[[y0], [y1]]]))
    assert ro.W_when_.item() == pytest.approx(w2, rel=1e-6)
    assert w2 == pytest.approx(0.63949, abs=1e-4)  # the number written out by hand


def test_consolidation_matches_the_replayed_delta_rule():
    """consolidate() = n_replay passes of the normalised delta rule over the stored traces
    (every store_every steps, until onset + margin), with the bias synapse."""
    r, y, g = _data(seed=2, B=4, T=12)
    onset = np.array([3.0, np.nan, 6.0, np.nan])
    y[2, :, 0] = 0.5
    ro = ThreeFactorReadout(eta=0.0, tau_e_ms=2.0, kappa=0.7, n_replay=4, store_every_ms=2.0,
                            store_margin_ms=2.0)
    ro.partial_fit(r, y, g, onset).consolidate()
    x = r.astype(np.float64).reshape(-1, 7)
    x = ((r - x.mean(0)) / x.std(0)).astype(np.float64)
    decay = math.exp(-1.0 / 2.0)
    e, rows, outcomes = np.zeros((4, 7)), [], []
    occurred = (y.max(axis=1) > 0).astype(float)
    for t in range(12):
        e = decay * e + (1 - decay) * x[:, t]
        if t % 2 == 0:
            for b in range(4):
                if np.isnan(onset[b]) or t < onset[b] + 2.0:
                    rows.append(e[b].copy())
                    outcomes.append(occurred[b])
    E, O = np.array(rows), np.array(outcomes)
    w, bias = np.zeros((2, 7)), np.zeros(2)
    rate = 0.7 / len(E) / (np.mean(np.sum(E * E, axis=1)) + 1.0)
    for _ in range(4):
        err = O - E @ w.T - bias
        w += rate * err.T @ E
        bias += rate * err.sum(axis=0)
    np.testing.assert_allclose(ro.W_what_.numpy(), w, rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(ro.bias_what_.numpy(), bias, rtol=2e-4, atol=1e-6)
    assert np.abs(bias).max() > 1e-3


def test_no_update_without_gate_or_error():
    r, y, g = _data()
    ro = ThreeFactorReadout(eta=0.3, normalize=False, standardize=False).partial_fit(r, y, g)
    w = ro.W_when_.clone()
    ro.partial_fit(r, y, gate=np.zeros_like(g))  # gate closed
    torch.testing.assert_close(ro.W_when_, w, rtol=0, atol=0)
    ro.partial_fit(r, np.zeros_like(y), g)  # nothing occurred: no error signal
    torch.testing.assert_close(ro.W_when_, w, rtol=0, atol=0)
    # targets equal to the current output: zero error (W and r positive, so all occurred)
    w_pos = torch.rand_like(w) + 0.1
    ro.W_when_ = w_pos.clone()
    rr = torch.from_numpy(r[:, :1])
    ro.partial_fit(rr, rr @ w_pos.T, torch.ones(3, 1))
    torch.testing.assert_close(ro.W_when_, w_pos, rtol=0, atol=1e-6)


def test_rule_is_local():
    """dW[k, j] depends on neuron j's own trace only: perturbing neuron 3 moves column 3."""
    r, y, g = _data(T=1)
    for standardize in (False, True):
        a = ThreeFactorReadout(eta=0.5, normalize=False, standardize=standardize)
        a.partial_fit(r, y, g)
        r2 = r.copy()
        r2[:, :, 3] = np.array([0.9, 0.1, 0.4])[:, None]  # a new activity pattern of cell 3
        b = ThreeFactorReadout(eta=0.5, normalize=False, standardize=standardize)
        b.partial_fit(r2, y, g)
        diff = (a.W_when_ - b.W_when_).abs().sum(0)
        assert diff[3] > 0 and diff[np.arange(7) != 3].max() == 0


def test_consolidation_changes_what_and_not_when():
    """On a clock-like basis, consolidation moves W_what towards p and leaves the timing."""
    task = WhatWhenTask([150.0], [0.6], trial_ms=300, target_width_ms=10)
    tr = task.sample(120, seed=0)
    t = torch.as_tensor(tr.t_ms, dtype=torch.float32)
    centres = torch.linspace(0, 300, 60)
    basis = torch.exp(-0.5 * ((t[:, None] - centres) / 8.0) ** 2)  # (T, N): time cells
    R = basis.expand(tr.n_trials, -1, -1).contiguous()
    gate = scheduled_gate(np.c_[np.zeros(120), tr.onset_ms], tr.n_steps, 1.0)
    ro = ThreeFactorReadout(eta=0.2, kappa=1.0, n_replay=200, store_margin_ms=20)
    for i in range(0, 120, 20):
        ro.partial_fit(R[i:i + 20], tr.targets[i:i + 20], gate[i:i + 20], tr.onset_ms[i:i + 20])
    w_when, w_what = ro.W_when_.clone(), ro.W_what_.clone()
    before = ro.predict(R[:1], "when")[0, :, 0].numpy()
    ro.consolidate()
    torch.testing.assert_close(ro.W_when_, w_when, rtol=0, atol=0)
    assert (ro.W_what_ - w_what).norm() > 0.1
    when = ro.predict(R[:1], "when")[0, :, 0].numpy()
    obj = ro.predict(R[:1], "object")[0, :, 0].numpy()
    np.testing.assert_array_equal(when, before)
    assert abs(int(np.argmax(obj)) - int(np.argmax(when))) <= 2  # timing kept (ms)
    assert abs(int(np.argmax(when)) - 150) <= 5
    # "what" at the latency ~ the empirical frequency of the identity (0.6)
    freq = float(np.mean(tr.identity == 0))
    assert ro.predict(R[:1], "what")[0, 150, 0].item() == pytest.approx(freq, abs=0.1)


@pytest.mark.parametrize("batch", [1, 4])
def test_force_is_ridge_regression(batch):
    """RLS with P0 = I/alpha over all samples equals ridge regression with penalty alpha."""
    rng = np.random.default_rng(1)
    r = rng.standard_normal((batch, 40, 12))
    y = rng.standard_normal((batch, 40, 2))
    fo = ForceReadout(alpha=0.7, update_every=1).partial_fit(r, y)
    ridge = Ridge(alpha=0.7, fit_intercept=False).fit(r.reshape(-1, 12), y.reshape(-1, 2))
    np.testing.assert_allclose(fo.W_.numpy(), ridge.coef_, rtol=1e-7, atol=1e-9)
    # and P is the regularised inverse correlation
    C = r.reshape(-1, 12).T @ r.reshape(-1, 12) + 0.7 * np.eye(12)
    np.testing.assert_allclose(fo.P_.numpy(), np.linalg.inv(C), rtol=1e-6, atol=1e-10)
    fo.reset_P()
    np.testing.assert_array_equal(fo.P_.numpy(), np.eye(12) / 0.7)


def test_force_learns_a_sine_wave_with_feedback():
    """Sussillo & Abbott (2009), Fig. 2: a chaotic rate network (g = 1.5) with the readout
    fed back learns a periodic target; after training, with the weights frozen, the network
    keeps producing it."""
    rng = np.random.default_rng(0)
    N, g, p, dt, tau, period = 150, 1.5, 0.1, 1.0, 10.0, 100.0
    J = g * rng.standard_normal((N, N)) * (rng.random((N, N)) < p) / np.sqrt(p * N)
    w_fb = rng.uniform(-1, 1, N)
    x = 0.5 * rng.standard_normal(N)
    fo = ForceReadout(alpha=1.0, update_every=2)
    n_train, n_test = 1500, 500
    z_test = []
    for k in range(n_train + n_test):
        r = np.tanh(x)
        f = math.sin(2 * math.pi * k * dt / period)
        fo.step(r, [f], update=k < n_train and k % 2 == 0)
        z = float(fo.W_[0].numpy() @ r)  # output after this step's update
        x = x + dt / tau * (-x + J @ r + w_fb * z)
        if k >= n_train:
            z_test.append(z)
    target = np.sin(2 * np.pi * np.arange(n_train, n_train + n_test) * dt / period)
    assert np.corrcoef(z_test, target)[0, 1] > 0.95


def test_timing_is_learned_on_a_small_spiking_reservoir():
    """One identity at a fixed latency: trained on a 200-cell Izhikevich reservoir, the
    three-factor readout's timing factor peaks within 10 ms of the latency on held-out trials,
    and its prediction does on cue-only probe trials (stimulus omitted: pure anticipation)."""
    from neurosim.jobs.what_when import WhatWhenParams, build_reservoir, reservoir_rates

    p = WhatWhenParams(n_neurons=200)
    task = WhatWhenTask([200.0], [1.0], trial_ms=300, target_width_ms=15)
    res = build_reservoir(p, task.n_channels, seed=0)
    tr = task.sample(70, seed=0)
    R, _ = reservoir_rates(res, tr, 20.0, seed=0)
    Rp, _ = reservoir_rates(res, task.probe(10), 20.0, seed=1)
    gate = scheduled_gate(np.c_[np.zeros(70), tr.onset_ms], tr.n_steps, 1.0)
    ro = ThreeFactorReadout()  # the default rule (what the what_when job runs)
    for i in range(0, 60, 2):  # two trials per batch: the batch averages, so fewer steps
        ro.partial_fit(R[i:i + 2], tr.targets[i:i + 2], gate[i:i + 2], tr.onset_ms[i:i + 2])
        if i % 10 == 8:
            ro.consolidate()
    after_cue = tr.t_ms >= task.cue_ms
    y_untrained = ThreeFactorReadout().partial_fit(R[:1], tr.targets[:1] * 0)
    assert y_untrained.predict(R[60:]).abs().max() == 0
    # held-out trials: the timing factor; cue-only probes (pure anticipation): the prediction
    for rates, component in ((R[60:], "when"), (Rp, "object")):
        tol = 10.0
        y = ro.predict(rates, component).mean(0)[:, 0].numpy()
        peak = tr.t_ms[after_cue][np.argmax(y[after_cue])]
        assert abs(peak - 200.0) <= tol
        assert y[after_cue].max() > 3 * abs(y[int(task.cue_ms):100]).mean()  # a real peak


def test_bad_input():
    r, y, g = _data()
    with pytest.raises(ValueError, match="n_outputs=3 units but the targets have 2"):
        ThreeFactorReadout(n_outputs=3).partial_fit(r, y, g)
    with pytest.raises(ValueError, match="n_outputs=3 units"):
        ForceReadout(n_outputs=3).partial_fit(r, y)
    with pytest.raises(ValueError, match="rates: expected a tensor"):
        ThreeFactorReadout().partial_fit(r[0], y, g)
    with pytest.raises(ValueError, match="targets: expected shape"):
        ThreeFactorReadout().partial_fit(r, y[:, :3], g)
    with pytest.raises(ValueError, match="gate: expected values in"):
        ThreeFactorReadout().partial_fit(r, y, 2 * g + 1)
    with pytest.raises(ValueError, match="eta"):
        ThreeFactorReadout(eta=-1).partial_fit(r, y, g)
    with pytest.raises(ValueError, match="alpha"):
        ForceReadout(alpha=0).partial_fit(r, y)
    ro = ThreeFactorReadout().partial_fit(r, y, g)
    with pytest.raises(ValueError, match="rates: expected 7 neurons"):
        ro.predict(r[:, :, :5])
    with pytest.raises(ValueError, match="component"):
        ro.predict(r, component="why")
    with pytest.raises(ValueError, match="consolidate: nothing stored"):
        ThreeFactorReadout().consolidate()
    bad = r.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        ForceReadout().partial_fit(bad, y)
