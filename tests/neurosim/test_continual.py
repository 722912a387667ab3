"""Permuted-digits continual learning: data, metrics, context inference, learning, the jobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestCentroid

from neurosim.dendrites.continual import (
    MLP,
    ContinualResult,
    build_model,
    make_permuted_digits,
    mlp_parameter_count,
    parameter_matched_hidden_sizes,
    run_continual,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # tiny networks: one thread is fastest, and two threads crawl on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class StandInRun:
    """The duty-typed run object of CONTRIBUTING.md, keeping what the job hands it."""

    def __init__(self, tmp_path, seed=0):
        self.out_dir = self.figures_dir = self.checkpoint_dir = self.data_dir = tmp_path
        self.seed, self.level, self.device, self.verbose = seed, "smoke", "cpu", False
        self.figures, self.tables, self.texts, self.metrics = {}, {}, {}, {}
        self.claims = {}

    def add_figure(self, fig, name, caption=""):
        self.figures[name] = fig  # not rendered: drawing is the slow part, not the science

    def add_table(self, name, rows, caption=""):
        self.tables[name] = rows

    def add_metrics(self, metrics):
        self.metrics.update(metrics)

    def add_text(self, title, text):
        self.texts[title] = text

    def add_claim(self, name, claim, value, verdict, figure=None):
        assert verdict in ("holds", "weaker", "does not hold")
        self.claims[name] = {"claim": claim, "value": value, "verdict": verdict,
                             "figure": figure}

    def progress(self, iterable=None, total=None, desc=None):
        return iterable

    def log(self, msg):
        pass


def test_permuted_digits_are_sklearn_digits_permuted():
    data = make_permuted_digits(4, test_fraction=0.2, random_state=3)
    X, y = load_digits(return_X_y=True)
    assert len(data.X_train) + len(data.X_test) == len(X)
    both = np.concatenate([data.X_train, data.X_test]) * 16
    np.testing.assert_array_equal(np.sort(both.round().astype(int), axis=0), np.sort(X, axis=0))
    np.testing.assert_array_equal(data.permutations[0], np.arange(64))
    for perm in data.permutations:
        np.testing.assert_array_equal(np.sort(perm), np.arange(64))
    assert len({tuple(p) for p in data.permutations}) == 4
    Xt, _ = data.task(2, "test")
    np.testing.assert_array_equal(Xt, data.X_test[:, data.permutations[2]])
    # stratified: every digit is ~20% held out
    counts_test, counts_all = np.bincount(data.y_test), np.bincount(y)
    assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 1)


def test_forgetting_and_stability_gap_by_hand():
    R = np.array([[0.9, 0.0, 0.0], [0.6, 0.8, 0.0], [0.5, 0.7, 0.9]])
    trace_task = np.array([1, 1, 1, 2, 2, 2])
    nan = np.nan
    trace = np.array([
        [0.4, nan, nan], [0.7, nan, nan], [0.6, 0.8, nan],   # while learning task 1
        [0.3, 0.2, nan], [0.5, 0.6, nan], [0.5, 0.7, 0.9],   # while learning task 2
    ])
    res = ContinualResult("mlp", R, np.arange(6), trace_task, trace, 1.0, 0)
    np.testing.assert_allclose(res.seen_accuracy(), [0.9, 0.7, 0.7])
    assert res.forgetting() == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    # task 1: 0.9 - 0.4; task 2: (0.6 - 0.3) and (0.8 - 0.2)
    assert res.stability_gap() == pytest.approx((0.5 + 0.3 + 0.6) / 3)


def test_prototype_context_is_nearest_centroid():
    data = make_permuted_digits(3, random_state=0)
    Xtr = np.concatenate([data.task(t)[0] for t in range(3)])
    ttr = np.repeat(np.arange(3), len(data.X_train))
    Xte = np.concatenate([data.task(t, "test")[0] for t in range(3)])
    tte = np.repeat(np.arange(3), len(data.X_test))
    ref = NearestCentroid().fit(Xtr, ttr).score(Xte, tte)
    res = run_continual(data, "mlp", hidden_sizes=(8,), context="prototype",
                        epochs_per_task=1, batch_size=256, eval_every=100)
    assert res.context_accuracy == pytest.approx(ref)


def test_networks_learn_a_task_as_well_as_logistic_regression():
    data = make_permuted_digits(1, random_state=0)
    Xtr, ytr = data.task(0)
    Xte, yte = data.task(0, "test")
    logreg = LogisticRegression(max_iter=2000).fit(Xtr, ytr).score(Xte, yte)
    kw = dict(hidden_sizes=(64, 64), kw_percent_on=0.25, epochs_per_task=5, batch_size=32,
              lr=2e-3, context="onehot", dendrite_init_gain=4.0, random_state=1)
    for model in ["dendritic", "mlp"]:
        acc = run_continual(data, model, **kw).accuracy_matrix[0, 0]
        # chance is 0.1; logistic regression on the same split gets ~0.97, the k-WTA
        # networks ~0.88-0.95 after 5 short epochs
        assert acc >= logreg - 0.15, (model, acc, logreg)


def test_runs_are_deterministic_given_the_seed():
    data = make_permuted_digits(2, random_state=0)
    kw = dict(hidden_sizes=(16,), kw_percent_on=0.25, epochs_per_task=1, batch_size=64,
              eval_every=3, context="onehot")
    a = run_continual(data, "dendritic", random_state=5, **kw)
    b = run_continual(data, "dendritic", random_state=5, **kw)
    c = run_continual(data, "dendritic", random_state=6, **kw)
    np.testing.assert_array_equal(a.accuracy_matrix, b.accuracy_matrix)
    np.testing.assert_array_equal(a.trace_accuracy, b.trace_accuracy)
    assert not np.array_equal(a.trace_accuracy, c.trace_accuracy)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"model": "cnn"}, "model"), ({"context": "task"}, "context"),
     ({"epochs_per_task": 0}, "epochs_per_task"), ({"eval_every": 1.5}, "eval_every")],
)
def test_bad_arguments_name_the_field(kwargs, field):
    data = make_permuted_digits(2, random_state=0)
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        run_continual(data, **kwargs)


def test_continual_job_smoke(tmp_path, monkeypatch):
    import neurosim.jobs.dendrites as job
    from neurosim.jobs.dendrites import ContinualParams, dendrites_continual

    params = ContinualParams(n_tasks=2, hidden_sizes=[16], kw_percent_on=0.25,
                             epochs_per_task=1, batch_size=128, eval_every=4, num_threads=None)
    run = StandInRun(tmp_path)
    metrics = dendrites_continual(params, run)
    assert set(metrics) >= {"dendritic", "mlp", "mlp_kwta", "mlp_kwta_context"}
    table = run.tables["accuracy_on_seen_tasks"]
    assert [r["network"] for r in table][0] == "active dendrites + kWTA"
    for row, m in zip(table, ["dendritic", "mlp", "mlp_kwta", "mlp_kwta_context"]):
        assert row["after 2"] == pytest.approx(metrics[m]["final_accuracy_all_tasks"], abs=5e-4)
    assert {"forgetting_curves", "accuracy_matrices"} <= set(run.figures)
    assert "Does dendritic gating curb forgetting?" in run.texts
    # a resumed run reads the checkpoints (trains nothing) and reports the same numbers
    assert len(list(tmp_path.glob("continual_*.npz"))) == 4

    def no_training(*args, **kwargs):
        raise AssertionError("resumed run retrained a network")

    monkeypatch.setattr(job, "run_continual", no_training)
    again = dendrites_continual(params, StandInRun(tmp_path))
    for m in ["dendritic", "mlp"]:
        assert again[m] == pytest.approx(metrics[m])


def test_parameter_matched_mlp_counts_like_torch():
    """The matched MLP's count is torch's own parameter count, and it is the closest uniform
    widening to the dendritic network's count (segments add hidden x segments x context)."""
    for hidden in ([16], [128, 128], [50, 20]):
        assert mlp_parameter_count(64, 10, hidden) == sum(
            q.numel() for q in MLP(64, 10, hidden).parameters())
    dend = build_model("dendritic", 64, 10, [128, 128], 10, 10, 0.1, context_density=0.1)
    target = sum(q.numel() for q in dend.parameters())
    assert target == mlp_parameter_count(64, 10, [128, 128]) + 2 * 128 * 10 * 10
    h = parameter_matched_hidden_sizes(target, [128, 128])
    got = mlp_parameter_count(64, 10, h)
    assert h[0] == h[1] and abs(got - target) < mlp_parameter_count(64, 10, [h[0] + 1] * 2) - got
    assert abs(got - target) <= abs(mlp_parameter_count(64, 10, [h[0] - 1] * 2) - target)
    with pytest.raises(ValueError, match="n_parameters: expected >="):
        parameter_matched_hidden_sizes(10, [128, 128])


def test_continual_sweep_smoke(tmp_path):
    """The sweep runs each (gain, segments) cell, the MLP and the matched MLPs, n_seeds each,
    tables 'vs MLP' as the difference of the means, and declares its claim."""
    from neurosim.jobs.dendrites import ContinualParams, dendrites_continual

    params = ContinualParams(n_tasks=2, models=["dendritic", "mlp"], hidden_sizes=[8],
                             kw_percent_on=0.25, epochs_per_task=1, batch_size=256,
                             eval_every=50, n_seeds=2, num_threads=None,
                             sweep_gains=[1.0, 4.0], sweep_segments=[1])
    run = StandInRun(tmp_path)
    metrics = dendrites_continual(params, run)
    rows = {r["network"]: r for r in run.tables["sweep"]}
    matched = {}
    for k in (1, 2):
        net = build_model("dendritic", 64, 10, [8], k, 2, 0.25)
        h = parameter_matched_hidden_sizes(sum(q.numel() for q in net.parameters()), [8])
        matched[k] = f"MLP matched to {k} segments ({h[0]})"
    assert set(rows) == {"dendritic, gain 1, 2 segments", "dendritic, gain 4, 2 segments",
                         "dendritic, gain 4, 1 segments", "MLP", *matched.values()}
    mlp = rows["MLP"]["accuracy (all tasks)"]
    # the default cell and the MLP are the comparison's own networks (reused, not retrained)
    assert rows["dendritic, gain 4, 2 segments"]["accuracy (all tasks)"] == pytest.approx(
        metrics["dendritic"]["final_accuracy_all_tasks"], abs=5e-4)
    assert mlp == pytest.approx(metrics["mlp"]["final_accuracy_all_tasks"], abs=5e-4)
    for r in rows.values():
        assert r["vs MLP"] == pytest.approx(r["accuracy (all tasks)"] - mlp, abs=2e-3)
    assert rows[matched[2]]["parameters"] == mlp_parameter_count(
        64, 10, [int(matched[2].split("(")[1].rstrip(")"))])
    # new networks x 2 seeds: two dendritic cells and the matched MLPs (equal widths share)
    widths = {m.split("(")[1] for m in matched.values()}
    assert len(list(tmp_path.glob("sweep_*.npz"))) == 2 * (2 + len(widths))
    assert run.claims["sweep"]["figure"] == "sweep" and "sweep" in run.figures
    assert metrics["sweep"]["settings"] == 3


def test_sdr_theory_job_smoke(tmp_path):
    import yaml

    from neurosim.jobs.dendrites import SdrTheoryParams, sdr_theory

    config = Path(__file__).resolve().parents[2] / "configs" / "sim" / "sdr_theory.yaml"
    cfg = yaml.safe_load(config.read_text())
    params = SdrTheoryParams(**{**cfg["params"], **cfg["smoke"]})
    run = StandInRun(tmp_path)
    metrics = sdr_theory(params, run)
    assert metrics["published_max_rel_error"] < 1e-12
    assert metrics["spiking_detection_stored"] == 1.0
    assert metrics["spiking_false_positive_rate"] == 0.0  # theory: ~1e-6 per trial
    assert {"sdr_scaling", "spiking_dendritic_neuron"} <= set(run.figures)
    with pytest.raises(ValueError, match="spiking_theta"):
        SdrTheoryParams(spiking_theta=30)
