import json

import numpy as np
import pytest
import yaml

from neurosuite import cli
from neurosuite.config import ConfigError, resolve
from neurosuite.jobs import JOBS, get_job


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setitem(JOBS, "toy", "tests.neurosuite.toy_jobs:toy_job")
    cfg = {"job": "toy", "description": "toy", "seed": 3, "params": {"n": 50},
           "quick": {"n": 20}, "smoke": {"n": 5}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_writes_the_run_folder(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", str(toy), "--out", str(out), "--quiet"]) == 0
    for name in ("config.yaml", "metrics.json", "report.html", "figures/hist.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints").is_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    expected = np.random.default_rng(3).normal(size=50).mean()
    assert metrics["mean"] == pytest.approx(expected)
    assert metrics["status"] == "ok"
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["seed"] == 3 and resolved["params"] == {"n": 50, "scale": 1.0, "fail": False}
    assert resolved["versions"]["numpy"] == np.__version__
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "summary" in html
    assert str(out / "report.html") in capsys.readouterr().out


def test_same_seed_same_numbers_and_levels(toy, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    cli.main(["run", str(toy), "--out", str(a), "--quiet", "--smoke"])
    cli.main(["run", str(toy), "--out", str(b), "--quiet", "--smoke"])
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["mean"] == mb["mean"] and ma["level"] == "smoke"
    assert ma["tables"]["summary"][0]["n"] == 5


def test_run_folder_is_not_overwritten(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", str(toy), "--out", str(out), "--quiet"]) == 0
    before = (out / "metrics.json").read_text()
    assert cli.main(["run", str(toy), "--out", str(out), "--quiet", "--set", "seed=4"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before
    assert cli.main(["run", str(toy), "--out", str(out), "--quiet", "--resume"]) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed"] is True
    assert cli.main(["run", str(toy), "--out", str(out), "--quiet", "--force",
                     "--set", "seed=4"]) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed"] is False


def test_set_overrides(toy):
    cfg = resolve(toy, sets=["n=7", "params.scale=2.5", "seed=9"])
    assert cfg.params.n == 7 and cfg.params.scale == 2.5 and cfg.top.seed == 9
    # --set wins over the level's overrides
    assert resolve(toy, level="smoke", sets=["n=8"]).params.n == 8


@pytest.mark.parametrize(
    "edit, needle",
    [
        ({"jobb": "toy"}, "unknown key 'jobb'"),
        ({"params": {"nn": 3}}, "Did you mean 'n'?"),
        ({"params": {"n": -1}}, "params.n"),
        ({"params": {"n": "many"}}, "params.n"),
        ({"quick": {"sclae": 2}}, "Did you mean 'scale'?"),
        ({"job": "toyy"}, "Did you mean 'toy'?"),
        ({"seed": -2}, "seed"),
    ],
)
def test_bad_configs_are_refused_with_names(toy, edit, needle):
    raw = yaml.safe_load(toy.read_text())
    for k, v in edit.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    with pytest.raises(ConfigError) as err:
        resolve(raw)
    assert needle in str(err.value)


def test_unknown_job_lists_valid_ones(toy, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: nope\n")
    assert cli.main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown job 'nope'" in err and "toy" in err


def test_failed_job_leaves_a_report(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", str(toy), "--out", str(out), "--quiet", "--set", "fail=true"]) == 2
    err = capsys.readouterr().err
    assert "neurosuite: error: RuntimeError: asked to fail" in err and "Traceback" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "asked to fail" in metrics["error"]
    assert "asked to fail" in (out / "report.html").read_text()


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("job: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(bad)


def test_every_registered_job_resolves():
    for name in JOBS:
        func, model = get_job(name)
        assert callable(func) and model.model_config.get("extra") == "forbid", name


@pytest.mark.parametrize("path", cli.shipped_configs(), ids=lambda p: p.stem)
def test_shipped_configs_validate_at_every_level(path):
    for level in ("full", "quick", "smoke"):
        cfg = resolve(path, level=level)
        assert cfg.top.description, f"{path}: give a description for `neurosuite list`"


def test_list_and_info(capsys):
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out
    for path in cli.shipped_configs():
        assert path.stem in listed
    assert cli.main(["info"]) == 0
    assert "torch" in capsys.readouterr().out


def test_demo_runs_every_stage_and_links_the_report(monkeypatch, toy, tmp_path, capsys):
    monkeypatch.setattr(cli, "demo_configs", lambda: [(1, toy), (2, toy)])
    monkeypatch.setattr(cli, "configs_dir", lambda: toy.parent)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick", "--quiet"]) == 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "demo report:" in capsys.readouterr().out
    assert cli.main(["demo", "--out", str(out), "--quick", "--quiet"]) == 2


@pytest.mark.parametrize("path", cli.shipped_configs(), ids=lambda p: p.stem)
def test_shipped_config_runs_end_to_end_at_smoke_level(path, tmp_path, monkeypatch):
    """Every job, through the real front door, writes metrics, figures and a report."""
    monkeypatch.setenv("NEUROSUITE_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    assert cli.main(["run", str(path), "--smoke", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert list((out / "figures").glob("*.png")), f"{path.stem}: a job shows figures"
