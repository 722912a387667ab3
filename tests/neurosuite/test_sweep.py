"""``neurosuite sweep``: a grid of overrides as ordinary runs, through joblib's backends.

The toy job draws ``n`` normal numbers with the run's seed, so every point's metrics are
known in closed form (numpy with the same seed): the sweep must give exactly those, in one
run folder per point, whatever backend ran it.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from neurosuite import cli
from neurosuite.config import ConfigError
from neurosuite.jobs import JOBS
from neurosuite.sweep import SweepError, parse_grid, run_sweep


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setitem(JOBS, "toy", "tests.neurosuite.toy_jobs:toy_job")
    cfg = {"job": "toy", "description": "toy", "seed": 0, "params": {"n": 50},
           "quick": {"n": 20}, "smoke": {"n": 5}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _expected(n: int, seed: int, scale: float = 1.0) -> float:
    return float(np.random.default_rng(seed).normal(scale=scale, size=n).mean())


def test_parse_grid_values_and_ranges():
    assert parse_grid("params.n=1,2,3") == ("params.n", [1, 2, 3])
    assert parse_grid("seed=0:5") == ("seed", [0, 1, 2, 3, 4])
    assert parse_grid("seed=0:10:4") == ("seed", [0, 4, 8])
    assert parse_grid("scale=0.5,2") == ("params.scale", [0.5, 2])  # bare key -> params.
    assert parse_grid("params.band=[6,14],[8,12]") == ("params.band", [[6, 14], [8, 12]])


def test_loky_sweep_runs_each_point_and_skips_finished(toy, tmp_path):
    out = tmp_path / "sweep"
    grid = ["params.n=10,40", "seed=0:2"]
    s = run_sweep(toy, grid, out, level="smoke", n_jobs=2, backend="loky")
    assert (s["n_run"], s["n_skipped"], s["n_failed"]) == (4, 0, 0)
    for row in s["rows"]:
        folder = out / "runs" / row["run"]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "ok"
        assert metrics["mean"] == pytest.approx(_expected(row["n"], row["seed"]), abs=1e-12)
        stored = yaml.safe_load((folder / "config.yaml").read_text())
        assert stored["params"]["n"] == row["n"] and stored["seed"] == row["seed"]
        assert stored["n_jobs"] == 1  # each run keeps its config's thread policy
    # the aggregate over seeds: mean and sample std (ddof=1) of the two seeds
    for a in s["aggregate"]:
        means = [_expected(a["n"], seed) for seed in range(2)]
        assert a["n"] in (10, 40) and a["mean_mean"] == pytest.approx(np.mean(means))
        assert a["mean_std"] == pytest.approx(np.std(means, ddof=1))
    with open(out / "summary.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    assert (out / "figures" / "summary.png").stat().st_size > 5_000
    assert (out / "report.html").is_file()
    # a re-run (e.g. after a kill) skips the finished points and runs only the new ones
    stamp = (out / "runs" / s["rows"][0]["run"] / "metrics.json").stat().st_mtime_ns
    again = run_sweep(toy, ["params.n=10,40", "seed=0:3"], out, level="smoke", n_jobs=2)
    assert (again["n_run"], again["n_skipped"]) == (2, 4)
    assert (out / "runs" / s["rows"][0]["run"] / "metrics.json").stat().st_mtime_ns == stamp


def test_sweep_resumes_an_unfinished_point(toy, tmp_path):
    out = tmp_path / "sweep"
    run_sweep(toy, ["seed=0:2"], out, level="smoke")
    folder = out / "runs" / "seed=1"
    (folder / "metrics.json").write_text(json.dumps({"status": "failed"}))  # a killed run
    s = run_sweep(toy, ["seed=0:2"], out, level="smoke")
    assert (s["n_run"], s["n_skipped"]) == (1, 1)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["resumed"] is True  # its checkpoint was kept


@pytest.mark.slow  # starting a LocalCluster of 2 worker processes: ~15 s idle, a minute loaded
def test_dask_local_cluster_of_two_workers_gives_the_same_numbers(toy, tmp_path):
    pytest.importorskip("distributed")
    s = run_sweep(toy, ["params.scale=1.0,3.0", "seed=0:2"], tmp_path / "dask",
                  level="smoke", n_jobs=2, backend="dask")
    assert (s["n_run"], s["n_failed"]) == (4, 0)
    for row in s["rows"]:
        assert row["mean"] == pytest.approx(_expected(5, row["seed"], row["scale"]), abs=1e-12)


def test_cli_sweep(toy, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(["sweep", str(toy), "--grid", "n=5,6", "--grid", "seed=0:2", "--smoke",
                     "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "4 points" in text and str(out / "report.html") in text
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert sorted((r["n"], r["seed"]) for r in rows) == [(5, 0), (5, 1), (6, 0), (6, 1)]


@pytest.mark.parametrize(
    "grid, kw, needle",
    [
        (["params.nn=1,2"], {}, r"'nn' is not a parameter of job 'toy'.*Did you mean 'n'\?"),
        (["job=toy,toy"], {}, r"--grid job: not a key a sweep can vary"),
        ([], {}, r"empty grid"),
        (["params.n="], {}, r"empty grid \(no values for params.n\)"),
        (["seed=5:0"], {}, r"empty grid"),
        (["params.n=1,2", "n=3"], {}, r"params.n: given twice"),
        (["params.n=-1,2"], {}, r"params.n"),  # a value the job refuses, before any run
        (["seed=0:2"], {"n_jobs": 0}, r"--n-jobs: expected an integer >= 1 or -1.*got 0"),
        (["seed=0:2"], {"n_jobs": -3}, r"--n-jobs: expected .* got -3"),
        (["seed=0:2"], {"backend": "spark"}, r"--backend: expected one of"),
    ],
)
def test_bad_sweep_input_is_named(toy, tmp_path, grid, kw, needle):
    with pytest.raises(ConfigError, match=needle):  # SweepError is a ConfigError
        run_sweep(toy, grid, tmp_path / "bad", level="smoke", **kw)
    assert not (tmp_path / "bad").exists()  # nothing ran, nothing was written


def test_missing_backend_names_the_package(toy, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(SweepError, match=r"--backend ray: the package 'ray' is not installed; "
                                         r"install it with: pip install"):
        run_sweep(toy, ["seed=0:2"], tmp_path / "ray", level="smoke", backend="ray")


def test_sweep_folder_of_another_config_is_refused(toy, tmp_path):
    out = tmp_path / "sweep"
    run_sweep(toy, ["seed=0:2"], out, level="smoke")
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"job": "toy", "params": {"n": 7, "scale": 2.0}}))
    with pytest.raises(SweepError, match=r"holds the runs of another config \(config differ"):
        run_sweep(other, ["seed=0:2"], out, level="smoke")
    with pytest.raises(SweepError, match=r"another config \(level differ"):
        run_sweep(toy, ["seed=0:2"], out, level="quick")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not a sweep folder"):
        run_sweep(toy, ["seed=0:2"], junk, level="smoke")
