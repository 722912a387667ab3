"""WhatWhenTask: sampled statistics against closed forms and scipy, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from neurosim.tasks import WhatWhenTask, sample_blocks


def test_identity_frequencies_match_probabilities():
    task = WhatWhenTask(latencies_ms=[100, 250, 400], probabilities=[0.1, 0.3, 0.4])
    trials = task.sample(4000, seed=0)
    counts = [int(np.sum(trials.identity == k)) for k in (0, 1, 2, -1)]
    expected = 4000 * np.array([0.1, 0.3, 0.4, 0.2])
    assert scipy.stats.chisquare(counts, expected).pvalue > 1e-3
    assert trials.occurred.sum().item() == 4000 - counts[3]


def test_inputs_and_targets_are_placed_at_the_onsets():
    task = WhatWhenTask(latencies_ms=[120, 300], probabilities=[0.5, 0.5], dt_ms=0.5,
                        cue_ms=10, stim_ms=20, target_width_ms=8)
    tr = task.sample(30, seed=1)
    t = tr.t_ms
    assert tr.inputs.shape == (30, task.n_steps, 3)
    np.testing.assert_array_equal(tr.inputs[:, :, 0].numpy(), np.tile(t < 10, (30, 1)))
    for i in range(30):
        k = tr.identity[i]
        on = tr.inputs[i, :, 1 + k].numpy() > 0
        assert t[on][0] == pytest.approx(task.latencies[k]) and on.sum() == 40
        assert t[np.argmax(tr.targets[i, :, k].numpy())] == pytest.approx(task.latencies[k])
        assert tr.targets[i, :, 1 - k].abs().sum() == 0  # the other identity: no target
        # closed form of the bump
        np.testing.assert_allclose(
            tr.targets[i, :, k].numpy(),
            np.exp(-0.5 * ((t - task.latencies[k]) / 8) ** 2), rtol=1e-6, atol=1e-7)


def test_jitter_statistics_and_expected_prediction():
    task = WhatWhenTask(latencies_ms=[250], probabilities=[0.6], jitter_ms=15,
                        trial_ms=500, target_width_ms=10)
    tr = task.sample(3000, seed=2)
    on = tr.onset_ms[tr.identity == 0]
    assert np.isnan(tr.onset_ms[tr.identity == -1]).all()
    assert scipy.stats.ttest_1samp(on, 250).pvalue > 1e-3
    assert np.std(on) == pytest.approx(15, rel=0.06)
    # E[target] (Monte Carlo) against the closed form: Gaussian bump convolved with the jitter
    mc = tr.targets[:, :, 0].mean(0).numpy()
    ideal = task.expected_prediction()[:, 0]
    assert ideal.max() == pytest.approx(0.6 * 10 / np.hypot(10, 15), rel=1e-3)
    assert np.abs(mc - ideal).max() < 0.03


def test_conditional_prediction_is_the_hazard():
    task = WhatWhenTask(latencies_ms=[150, 350], probabilities=[0.3, 0.6])
    amp = task.expected_prediction(conditional=True).max(0)
    np.testing.assert_allclose(amp, [0.3, 0.6 / 0.7], rtol=1e-6)


def test_blocks_and_change_points():
    task = WhatWhenTask(latencies_ms=[200], probabilities=[1.0])
    late = task.with_changes(latencies_ms=[350])
    tr = sample_blocks([task, late], [10, 15], seed=0)
    assert tr.n_trials == 25 and list(np.bincount(tr.block)) == [10, 15]
    np.testing.assert_array_equal(tr.onset_ms, [200.0] * 10 + [350.0] * 15)
    sub = tr[5:12]
    assert sub.n_trials == 7 and list(sub.block) == [0] * 5 + [1] * 2


def test_probe_trials_have_only_the_cue():
    task = WhatWhenTask(latencies_ms=[200], probabilities=[1.0])
    pr = task.probe(3)
    assert (pr.identity == -1).all() and pr.targets.abs().sum() == 0
    assert pr.inputs[:, :, 1].abs().sum() == 0 and pr.inputs[:, :, 0].sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latencies_ms": [100, 200], "probabilities": [0.5, 1.2]}, "probabilities.*\\[0, 1\\]"),
        ({"latencies_ms": [100, 200], "probabilities": [-0.1, 0.5]}, "probabilities.*\\[0, 1\\]"),
        ({"latencies_ms": [100, 200], "probabilities": [0.6, 0.6]}, "probabilities.*sum <= 1"),
        ({"latencies_ms": [100, 700], "probabilities": [0.5, 0.5]}, "latencies_ms.*700"),
        ({"latencies_ms": [5], "probabilities": [0.5]}, "latencies_ms"),
        ({"latencies_ms": [100], "probabilities": [0.5, 0.5]}, "probabilities: expected one"),
        ({"latencies_ms": [100], "probabilities": [0.5], "jitter_ms": -1}, "jitter_ms"),
        ({"latencies_ms": [100], "probabilities": [0.5], "trial_ms": 0}, "trial_ms"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WhatWhenTask(**kwargs)


def test_bad_sampling_input():
    task = WhatWhenTask(latencies_ms=[200], probabilities=[1.0])
    with pytest.raises(ValueError, match="n_trials"):
        task.sample(0)
    with pytest.raises(ValueError, match="identity"):
        task.sample(2, identity=[0, 3])
    other = WhatWhenTask(latencies_ms=[200, 300], probabilities=[0.5, 0.5])
    with pytest.raises(ValueError, match="tasks\\[1\\]"):
        sample_blocks([task, other], 5)
