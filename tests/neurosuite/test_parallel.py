"""One thread policy: ``n_jobs`` in the run config / ``--n-jobs``, OMP_WAIT_POLICY, workers."""

from __future__ import annotations

import os

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from neurosuite import cli
from neurosuite.jobs import JOBS
from neurosuite.parallel import check_n_jobs, parallel_map, resolve_n_jobs


class ThreadsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def threads_job(params: ThreadsParams, run) -> dict:
    """Report what the run gives the job: its n_jobs and torch's intra-op threads."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "run_n_jobs": run.n_jobs}


def _square_threads(x: int) -> tuple[int, int, int]:
    import torch

    return x * x, torch.get_num_threads(), os.getpid()


@pytest.fixture
def cfg(monkeypatch, tmp_path):
    monkeypatch.setitem(JOBS, "threads", "tests.neurosuite.test_parallel:threads_job")
    path = tmp_path / "threads.yaml"
    path.write_text(yaml.safe_dump({"job": "threads", "params": {}}))
    return path


def test_n_jobs_sets_torch_threads_and_is_recorded(cfg, tmp_path):
    import torch

    before = torch.get_num_threads()
    for flag, expected in (([], 1), (["--n-jobs", "2"], 2), (["--n-jobs", "-1"], None)):
        out = tmp_path / f"run{len(flag)}{expected}"
        assert cli.main(["run", str(cfg), "--out", str(out), "--quiet", *flag]) == 0
        metrics = yaml.safe_load((out / "metrics.json").read_text())
        stored = yaml.safe_load((out / "config.yaml").read_text())
        n = expected or len(os.sched_getaffinity(0))
        assert metrics["torch_threads"] == n and metrics["run_n_jobs"] == n
        assert stored["n_jobs"] == (int(flag[1]) if flag else 1)
    assert torch.get_num_threads() == before  # restored after the run


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_n_jobs_is_named(cfg, tmp_path, capsys, value):
    code = cli.main(["run", str(cfg), "--out", str(tmp_path / "bad"), "--n-jobs", value])
    assert code == 2
    err = capsys.readouterr().err
    assert "n_jobs" in err and f"got {value}" in err and "-1 (all CPUs)" in err
    with pytest.raises(ValueError, match=r"n_jobs: expected an integer >= 1 or -1"):
        check_n_jobs(1.5)
    assert resolve_n_jobs(3) == 3


def test_entry_point_sets_passive_wait_policy(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert cli.main(["list"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # an explicit choice wins
    cli.main(["list"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_parallel_map_runs_in_processes_with_one_thread_each():
    serial = parallel_map(_square_threads, range(4), n_jobs=1)
    assert [r[0] for r in serial] == [0, 1, 4, 9] and {r[2] for r in serial} == {os.getpid()}
    par = parallel_map(_square_threads, range(4), n_jobs=2)
    assert [r[0] for r in par] == [0, 1, 4, 9]  # in order
    assert {r[1] for r in par} == {1} and os.getpid() not in {r[2] for r in par}
