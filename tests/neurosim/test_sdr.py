"""SDR closed forms against scipy, log-gamma sums, Numenta's published numbers and Monte Carlo."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import special, stats

from neurosim.dendrites import sdr
from neurosim.dendrites.spiking import DendriticNeuron


def _grid():
    for n, a, s in itertools.product([40, 300, 2000], [5, 20, 35], [4, 12, 30]):
        for theta in sorted({0, 1, s // 3, s // 2, s}):
            yield n, a, s, theta


def test_false_match_matches_scipy_hypergeom_over_grid():
    worst = 0.0
    for n, a, s, theta in _grid():
        ours = sdr.false_match_probability(n, a, s, theta)
        # overlap of an a-subset with s fixed cells ~ Hypergeom(M=n, n=s, N=a)
        ref = 1.0 if theta == 0 else stats.hypergeom.sf(theta - 1, n, s, a)
        if ref > 1e-300:
            worst = max(worst, abs(ours - ref) / ref)
        else:
            assert ours < 1e-290
    assert worst < 1e-8


def test_false_negative_matches_scipy_hypergeom_over_grid():
    for a, s, v in itertools.product([30, 128], [10, 30], [0, 5, 15, 30]):
        for theta in range(0, s + 1, 3):
            ours = sdr.false_negative_probability(a, s, theta, v)
            # removed synapses ~ Hypergeom(M=a, n=s, N=v); fail when >= s - theta + 1
            ref = stats.hypergeom.sf(s - theta, a, s, v)
            assert ours == pytest.approx(ref, rel=1e-8, abs=1e-300)


@pytest.mark.parametrize(
    ("n", "a", "theta"), [(100_000, 2000, 20), (100_000, 200, 24), (100_000, 20, 20)]
)
def test_exact_at_n_100000_where_float_binomials_overflow(n, a, theta):
    s = 24 if theta <= 24 else theta
    assert np.isinf(special.comb(n, a)) or a < 200  # floats cannot hold C(n, a) here
    b = np.arange(theta, min(s, a) + 1)
    lg = special.gammaln
    log_terms = (lg(s + 1) - lg(b + 1) - lg(s - b + 1)
                 + lg(n - s + 1) - lg(a - b + 1) - lg(n - s - a + b + 1))
    log_ref = special.logsumexp(log_terms) - (lg(n + 1) - lg(a + 1) - lg(n - a + 1))
    ours = sdr.log_false_match_probability(n, a, s, theta)
    assert ours == pytest.approx(log_ref, rel=1e-9)
    assert sdr.false_match_probability(n, a, s, theta) == pytest.approx(
        math.exp(log_ref), rel=1e-7, abs=0
    )


# Numenta's exact (sympy) values behind the paper's figures, numenta/htmresearch
# projects/sdr_paper: plot_effect_of_n.py, plot_noise_results.py, sdr_paper_unions.py
@pytest.mark.parametrize(
    ("n", "a", "expected"),
    [(300, 64, 0.00109461662333690), (19900, 64, 1.07499989501613e-24),
     (500, 128, 0.00736788303358289), (19900, 128, 7.49308887332261e-21),
     (500, 256, 0.629372754740777), (2100, 256, 5.89560747849969e-6)],
)
def test_effect_of_n_matches_published_numbers(n, a, expected):
    assert sdr.false_match_probability(n, a, 24, 12) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("theta", "noise", "expected"),
    [(8, 0.5, 0.000735429456875121), (12, 0.5, 0.0716985160403564),
     (16, 0.296875, 0.00627504390204146), (16, 0.75, 0.999889798557155)],
)
def test_effect_of_noise_matches_published_numbers(theta, noise, expected):
    v = round(noise * 128)
    assert sdr.false_negative_probability(128, 30, theta, v) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("n", "m", "expected"),
    [(1000, 1, 1.00140315240769e-5), (1000, 3, 0.501650232353378),
     (10000, 1, 5.30352419025194e-20), (10000, 10, 0.000127080441383853),
     (20000, 19, 8.14089056445047e-5)],
)
def test_union_matches_published_numbers(n, m, expected):
    ours = sdr.union_false_match_probability(n, 200, 25, 15, m, method="expected")
    assert ours == pytest.approx(expected, rel=1e-9)


def test_union_size_distribution_mean_is_closed_form():
    for n, s, m in [(100, 10, 5), (1000, 25, 8), (50, 20, 4)]:
        p = sdr.union_size_distribution(n, s, m)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        # E|union| = n (1 - (1 - s/n)^m) exactly, for independent random s-subsets
        mean = float(np.arange(len(p)) @ p)
        assert mean == pytest.approx(sdr.expected_union_size(n, s, m), rel=1e-10)


def test_monte_carlo_agrees_with_closed_forms():
    cases = [
        (sdr.simulate_false_match(500, 128, 24, 12, n_trials=20_000, random_state=1),
         sdr.false_match_probability(500, 128, 24, 12)),
        (sdr.simulate_false_match(200, 40, 20, 6, n_trials=10_000, random_state=2),
         sdr.false_match_probability(200, 40, 20, 6)),
        (sdr.simulate_false_negative(128, 30, 12, 64, n_trials=20_000, random_state=3),
         sdr.false_negative_probability(128, 30, 12, 64)),
        (sdr.simulate_union_false_match(1000, 200, 25, 15, 3, n_trials=4000, random_state=4),
         sdr.union_false_match_probability(1000, 200, 25, 15, 3, method="exact")),
    ]
    for estimate, exact in cases:
        assert estimate.contains(exact), (estimate, exact)
    # and the Monte Carlo can tell a wrong answer apart: shifting theta leaves the CI
    assert not cases[0][0].contains(sdr.false_match_probability(500, 128, 24, 11))


def test_exact_union_differs_from_expected_size_approximation_as_mc_says():
    mc = sdr.simulate_union_false_match(300, 60, 20, 10, 4, n_trials=6000, random_state=5)
    exact = sdr.union_false_match_probability(300, 60, 20, 10, 4, method="exact")
    assert mc.contains(exact)


def test_optimal_threshold_is_brute_force_minimum():
    n, a, s, v = 2000, 64, 24, 20
    costs = [stats.hypergeom.sf(t - 1, n, s, a) + stats.hypergeom.sf(s - t, a, s, v)
             for t in range(1, s + 1)]
    theta, fp, fn = sdr.optimal_threshold(n, a, s, v)
    assert theta == int(np.argmin(costs)) + 1
    assert fp + fn == pytest.approx(min(costs), rel=1e-8)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: sdr.false_match_probability(100, 20, 10, 11), "theta"),
        (lambda: sdr.false_match_probability(100, 120, 10, 5), "a"),
        (lambda: sdr.false_match_probability(100, 20, 101, 5), "s"),
        (lambda: sdr.false_match_probability(-5, 2, 1, 1), "n"),
        (lambda: sdr.false_match_probability(100, 20.5, 10, 5), "a"),
        (lambda: sdr.false_match_probability(100, 20, 10, -1), "theta"),
        (lambda: sdr.false_negative_probability(20, 30, 5, 2), "s"),
        (lambda: sdr.false_negative_probability(40, 30, 5, 41), "v"),
        (lambda: sdr.union_false_match_probability(100, 20, 10, 5, 0), "m"),
        (lambda: sdr.union_false_match_probability(100, 20, 10, 5, 2, "bogus"), "method"),
        (lambda: sdr.optimal_threshold(100, 20, 10, 5, fp_weight=0), "fp_weight"),
        (lambda: sdr.active_count(100, 0.0), "sparsity"),
        (lambda: sdr.active_count(100, 1.0), "sparsity"),
        (lambda: sdr.active_count(100, -0.2), "sparsity"),
    ],
)
def test_bad_input_names_the_field(call, field):
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        call()


def test_spiking_neuron_false_positives_and_misses_match_closed_forms():
    rng = np.random.default_rng(0)
    n, a, s, theta = 200, 40, 20, 7
    stored = rng.choice(n, a, replace=False)
    syn = np.zeros((1, n), dtype=bool)
    syn[0, rng.choice(stored, s, replace=False)] = True
    neuron = DendriticNeuron(syn, theta)
    batch = 2000
    # random patterns: the soma fires iff the segment's overlap reaches theta
    random_pats = np.zeros((batch, n), dtype=bool)
    np.put_along_axis(random_pats, np.argsort(rng.random((batch, n)), 1)[:, :a], True, 1)
    # the stored pattern with v = 28 of its a cells moved elsewhere (noise)
    v, others = 28, np.setdiff1d(np.arange(n), stored)
    noisy = np.zeros((batch, n), dtype=bool)
    for b in range(batch):
        keep = rng.choice(stored, a - v, replace=False)
        noisy[b, np.concatenate([keep, rng.choice(others, v, replace=False)])] = True
    res = neuron.simulate(np.concatenate([random_pats, noisy]), duration_ms=60.0, dt_ms=0.2)
    fp = stats.binomtest(int(res.detected[:batch].sum()), batch).proportion_ci()
    fn = stats.binomtest(int((~res.detected[batch:]).sum()), batch).proportion_ci()
    assert fp.low <= sdr.false_match_probability(n, a, s, theta) <= fp.high
    assert fn.low <= sdr.false_negative_probability(a, s, theta, v) <= fn.high
    # the stored pattern itself always triggers a somatic burst
    clean = np.zeros((1, n), dtype=bool)
    clean[0, stored] = True
    assert neuron.simulate(clean, duration_ms=60.0, dt_ms=0.2).spike_counts[0] >= 2
