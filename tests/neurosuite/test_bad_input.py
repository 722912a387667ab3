"""Bad-input catalogue of the front door (issue 14): run folders that are not ours are never
deleted, ``--resume`` never mixes two configs, job errors are one named line (exit 2), a
damaged checkpoint is named and can be recomputed, a killed run resumes to the numbers of
an uninterrupted one, and saved models name their damaged files."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.base import BaseEstimator

from data_loaders._io import CorruptFileError
from decoding._pretrained import PretrainedMixin
from neurosuite import cli
from neurosuite.jobs import JOBS
from neurosuite.runs import RUN_MARKER, is_run_folder
from tests.neurosuite.ckpt_job import KILL_ENV

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------
# a small real job with one checkpoint per unit of work (tests/neurosuite/ckpt_job.py)
# --------------------------------------------------------------------------------------
@pytest.fixture
def cfg(monkeypatch, tmp_path):
    monkeypatch.setitem(JOBS, "ckpt", "tests.neurosuite.ckpt_job:ckpt_job")
    monkeypatch.setitem(JOBS, "toy", "tests.neurosuite.toy_jobs:toy_job")
    path = tmp_path / "ckpt.yaml"
    path.write_text(yaml.safe_dump({"job": "ckpt", "description": "checkpointed units",
                                    "seed": 0, "params": {"n_units": 4},
                                    "quick": {"n_units": 3}, "smoke": {"n_units": 2}}))
    return path


def run_cli(*args: str) -> int:
    return cli.main(["run", *map(str, args), "--quiet"])


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------
# --force / --resume never destroy a folder that is not a run
# --------------------------------------------------------------------------------------
def _thesis(out: Path) -> None:
    out.mkdir()
    (out / "thesis.tex").write_text("\\chapter{Five years}")


def _thesis_with_run_inside(out: Path) -> None:
    _thesis(out)
    (out / "run1").mkdir()
    (out / "run1" / RUN_MARKER).write_text("{}")


def _a_file(out: Path) -> None:
    out.write_text("not a folder")


def _config_only(out: Path) -> None:  # looks like a run but holds a stranger's file too
    out.mkdir()
    (out / "config.yaml").write_text("job: ckpt\n")
    (out / "notes.md").write_text("mine")


FOLDER_CASES = [
    ("force_on_thesis", _thesis, ["--force"], "not a neurosuite run folder"),
    ("resume_on_thesis", _thesis, ["--resume"], "not a neurosuite run folder"),
    ("plain_on_thesis", _thesis, [], "--force"),
    ("force_restart_on_thesis", _thesis, ["--resume", "--restart-damaged"],
     "not a neurosuite run folder"),
    ("force_on_parent_of_runs", _thesis_with_run_inside, ["--force"],
     "not a neurosuite run folder"),
    ("force_on_a_file", _a_file, ["--force"], "not a folder"),
    ("resume_on_a_file", _a_file, ["--resume"], "not a folder"),
    ("force_on_config_plus_notes", _config_only, ["--force"], "notes.md"),
]


@pytest.mark.parametrize("case, make, flags, needle", FOLDER_CASES,
                         ids=[c[0] for c in FOLDER_CASES])
def test_foreign_folders_are_never_touched(cfg, tmp_path, capsys, case, make, flags, needle):
    out = tmp_path / "out"
    make(out)
    before = snapshot(out) if out.is_dir() else out.read_bytes()
    assert run_cli(cfg, "--out", out, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("neurosuite: error: ") and needle in err and str(out) in err, err
    assert (snapshot(out) if out.is_dir() else out.read_bytes()) == before


def test_force_replaces_a_run_folder_and_marks_new_ones(cfg, tmp_path):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    assert is_run_folder(out) and (out / RUN_MARKER).is_file()
    assert run_cli(cfg, "--out", out, "--force", "--set", "seed=5") == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 5


def test_force_replaces_a_run_folder_made_before_the_marker(cfg, tmp_path):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    (out / RUN_MARKER).unlink()  # a run folder of an earlier version: only run files
    assert is_run_folder(out)
    assert run_cli(cfg, "--out", out, "--force") == 0


# --------------------------------------------------------------------------------------
# --resume refuses another config, naming the keys; nothing is rewritten
# --------------------------------------------------------------------------------------
RESUME_CASES = [
    ("seed", ["--set", "seed=3"], "seed (stored 0, now 3)"),
    ("param", ["--set", "n_units=7"], "params.n_units (stored 4, now 7)"),
    ("float_param", ["--set", "params.scale=2.5"], "params.scale (stored 1.0, now 2.5)"),
    ("level", ["--smoke"], "level (stored 'full', now 'smoke')"),
    ("level_and_param", ["--quick"], "params.n_units (stored 4, now 3)"),
    ("device", ["--set", "device=cpu"], "device (stored 'auto', now 'cpu')"),
    ("two_keys", ["--set", "seed=1", "--set", "scale=3"], "2 key(s)"),
]


@pytest.mark.parametrize("case, extra, needle", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_resume_refuses_another_config(cfg, tmp_path, capsys, case, extra, needle):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert run_cli(cfg, "--out", out, "--resume", *extra) == 2
    err = capsys.readouterr().err
    assert needle in err and "config.yaml" in err, err
    assert snapshot(out) == before  # config.yaml, metrics.json, report: all untouched


def test_resume_refuses_another_job(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    toy = tmp_path / "toy.yaml"
    toy.write_text(yaml.safe_dump({"job": "toy", "description": "toy"}))
    assert run_cli(toy, "--out", out, "--resume") == 2
    assert "job (stored 'ckpt', now 'toy')" in capsys.readouterr().err


def test_resume_refuses_an_unreadable_stored_config(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    (out / "config.yaml").write_text("job: [unclosed\n")
    assert run_cli(cfg, "--out", out, "--resume") == 2
    assert "config.yaml is not valid YAML" in capsys.readouterr().err


def test_resume_with_the_same_config_reuses_every_checkpoint(cfg, tmp_path):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    first = metrics(out)
    assert run_cli(cfg, "--out", out, "--resume") == 0
    again = metrics(out)
    assert first["computed"] == 4 and again["computed"] == 0
    assert again["values"] == first["values"]
    stored = yaml.safe_load((out / "config.yaml").read_text())
    assert len(stored["resumed"]) == 1


# --------------------------------------------------------------------------------------
# CLI errors: one named line, exit 2; --traceback for the rest
# --------------------------------------------------------------------------------------
CLI_CASES = [
    ("missing_data_path", ["--set", "data_path=/no/such/data"], "data_path: no data at",
     False),
    ("missing_data_path_traceback", ["--set", "data_path=/no/such/data", "--traceback"],
     "data_path: no data at", True),
    ("bad_set_syntax", ["--set", "n_units"], "expected key=value", False),
    ("unknown_param", ["--set", "n_unit=3"], "unknown key 'n_unit'", False),
    ("bad_param_value", ["--set", "n_units=0"], "params.n_units", False),
    ("infinite_param", ["--set", "scale=.inf"], "params.scale", False),
    ("set_value_bad_yaml", ["--set", "n_units=[1,"], "is not valid YAML", False),
    ("set_empty_key", ["--set", "=3"], "empty key", False),
    ("set_unknown_top_key_path", ["--set", "params.n_units.x=3"], "params.n_units", False),
]


@pytest.mark.parametrize("case, extra, needle, tb", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_errors_are_one_named_line(cfg, tmp_path, capsys, case, extra, needle, tb):
    assert run_cli(cfg, "--out", tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("neurosuite: error: "))
    assert needle in line, err
    assert ("Traceback (most recent call last)" in err) == tb


def test_cli_traceback_before_the_subcommand(cfg, tmp_path, capsys):
    code = cli.main(["--traceback", "run", str(cfg), "--out", str(tmp_path / "r"), "--quiet",
                     "--set", "data_path=/no/such/data"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and "FileNotFoundError" in err


@pytest.mark.parametrize("content, needle", [
    (b"\xff\xfe\x00binary", "not a UTF-8 text file"),
    (b"job: [unclosed\n", "not valid YAML"),
    (b"- a list\n", "expected a mapping"),
], ids=["binary", "bad_yaml", "a_list"])
def test_cli_unreadable_config_file(tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    assert run_cli(bad, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert f"neurosuite: error: {bad}: {needle}" in err, err
    assert not (tmp_path / "r").exists()


def test_cli_missing_config_file(tmp_path, capsys):
    assert run_cli(tmp_path / "nope.yaml", "--out", tmp_path / "r") == 2
    assert "neurosuite: error: config file not found" in capsys.readouterr().err


def test_failed_job_still_writes_its_folder(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out, "--set", "data_path=/no/such/data") == 2
    assert metrics(out)["status"] == "failed" and "data_path" in metrics(out)["error"]


# --------------------------------------------------------------------------------------
# damaged checkpoints: named, and recomputed on request
# --------------------------------------------------------------------------------------
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:40])


def _garbage(p: Path) -> None:
    p.write_bytes(b"\x00garbage" * 30)


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _other_arrays(p: Path) -> None:
    np.savez(p, something_else=np.ones(3))


DAMAGE_CASES = [("truncated", _truncate), ("garbage", _garbage), ("empty", _empty),
                ("wrong_arrays", _other_arrays)]


@pytest.mark.parametrize("case, damage", DAMAGE_CASES, ids=[c[0] for c in DAMAGE_CASES])
def test_damaged_checkpoint_is_named_and_restarted(cfg, tmp_path, capsys, case, damage):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    fresh = metrics(out)["values"]
    ckpt = out / "checkpoints" / "unit2.npz"
    damage(ckpt)
    capsys.readouterr()
    assert run_cli(cfg, "--out", out, "--resume") == 2
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} is damaged" in err and "--restart-damaged" in err, err
    assert "Traceback" not in err
    assert run_cli(cfg, "--out", out, "--resume", "--restart-damaged") == 0
    m = metrics(out)
    assert m["computed"] == 1 and m["values"] == fresh
    assert (out / "checkpoints" / "unit2.npz.damaged").is_file()


class _Terminal(io.StringIO):
    """Standard input of a person at a terminal who types the given answer."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, code", [("y\n", 0), ("n\n", 2)], ids=["yes", "no"])
def test_damaged_checkpoint_offer_at_a_terminal(cfg, tmp_path, capsys, monkeypatch, answer,
                                                code):
    out = tmp_path / "run"
    assert run_cli(cfg, "--out", out) == 0
    _garbage(out / "checkpoints" / "unit1.npz")
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    assert run_cli(cfg, "--out", out, "--resume") == code
    captured = capsys.readouterr()
    assert "start that unit again" in captured.out and "unit1.npz" in captured.err
    assert (out / "checkpoints" / "unit1.npz.damaged").is_file() == (code == 0)
    if code == 0:
        assert metrics(out)["computed"] == 1


# --------------------------------------------------------------------------------------
# kill -9 in the middle of a run, then --resume
# --------------------------------------------------------------------------------------
def test_killed_run_resumes_to_the_uninterrupted_numbers(cfg, tmp_path):
    out = tmp_path / "killed"
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from neurosuite.jobs import JOBS
        JOBS["ckpt"] = "tests.neurosuite.ckpt_job:ckpt_job"
        from neurosuite import cli
        sys.exit(cli.main(["run", {str(cfg)!r}, "--out", {str(out)!r}, "--quiet"]))
    """)
    env = {**os.environ, KILL_ENV: "2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["unit0.npz", "unit1.npz"]
    assert metrics(out) == {"units_done": 2}  # written atomically up to the kill
    assert run_cli(cfg, "--out", out, "--resume") == 0
    resumed = metrics(out)
    assert resumed["computed"] == 2 and resumed["status"] == "ok"
    ref = tmp_path / "uninterrupted"
    assert run_cli(cfg, "--out", ref) == 0
    assert resumed["values"] == metrics(ref)["values"]


def test_run_folder_files_keep_the_umask(cfg, tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "run"
        assert run_cli(cfg, "--out", out) == 0
        toy = tmp_path / "toy.yaml"
        toy.write_text(yaml.safe_dump({"job": "toy", "description": "toy"}))
        assert run_cli(toy, "--out", tmp_path / "toy") == 0
    finally:
        os.umask(old)
    files = [out / "config.yaml", out / "metrics.json", out / RUN_MARKER,
             out / "checkpoints" / "unit0.npz", tmp_path / "toy" / "figures" / "hist.png"]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
        f.name: oct(0o640) for f in files}


# --------------------------------------------------------------------------------------
# save_pretrained / from_pretrained
# --------------------------------------------------------------------------------------
class TinyLinear(PretrainedMixin, BaseEstimator):
    """A real (tiny) estimator on the mixin: one torch linear layer."""

    def __init__(self, d: int = 3):
        self.d = d

    def fit(self):
        torch.manual_seed(self.d)
        self.module_ = torch.nn.Linear(self.d, 1)
        self.d_in_ = self.d
        return self

    def _extra_config(self):
        return {"d_in_": self.d_in_}

    def _build_module(self, extra):
        return torch.nn.Linear(int(extra["d_in_"]), 1)


class OtherLinear(TinyLinear):
    pass


@pytest.fixture
def saved(tmp_path):
    return TinyLinear(3).fit().save_pretrained(tmp_path / "model")


def _weights_of_d4(folder: Path) -> None:
    other = TinyLinear(4).fit().save_pretrained(folder.parent / "d4")
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())


def _set_config(**change):
    def edit(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(change)
        (folder / "config.json").write_text(json.dumps(cfg))
    return edit


PRETRAINED_CASES = [
    ("weights_truncated", lambda f: _truncate(f / "model.safetensors"), CorruptFileError,
     "model.safetensors", "safetensors"),
    ("weights_garbage", lambda f: _garbage(f / "model.safetensors"), CorruptFileError,
     "model.safetensors", "safetensors"),
    ("weights_empty", lambda f: _empty(f / "model.safetensors"), CorruptFileError,
     "model.safetensors", "safetensors"),
    ("weights_other_shape", _weights_of_d4, ValueError, "model.safetensors", "do not fit"),
    ("weights_missing", lambda f: (f / "model.safetensors").unlink(), FileNotFoundError,
     "model.safetensors", "missing"),
    ("config_truncated", lambda f: _truncate(f / "config.json"), CorruptFileError,
     "config.json", "JSON"),
    ("config_empty", lambda f: _empty(f / "config.json"), CorruptFileError, "config.json",
     "JSON"),
    ("config_a_list", lambda f: (f / "config.json").write_text("[1, 2]"), CorruptFileError,
     "config.json", "JSON object"),
    ("config_other_class", _set_config(_class_name="HiSTN"), ValueError, "config.json",
     "_class_name"),
    ("config_unknown_param", _set_config(params={"d": 3, "width": 9}), ValueError,
     "config.json", "field 'params'"),
    ("config_extra_missing_key", _set_config(extra={}), ValueError, "config.json",
     "do not build"),
    ("config_extra_bad_type", _set_config(extra={"d_in_": "three"}), ValueError,
     "config.json", "do not build"),
    ("config_extra_a_list", _set_config(extra=[1]), ValueError, "config.json",
     "field 'extra'"),
]


@pytest.mark.parametrize("case, damage, exc, name, needle", PRETRAINED_CASES,
                         ids=[c[0] for c in PRETRAINED_CASES])
def test_from_pretrained_names_the_damaged_file(saved, case, damage, exc, name, needle):
    damage(saved)
    with pytest.raises(exc) as err:
        TinyLinear.from_pretrained(saved)
    msg = str(err.value)
    assert str(saved / name) in msg and needle in msg, msg


def test_save_pretrained_swaps_the_whole_folder(saved):
    back = TinyLinear.from_pretrained(saved)
    torch.testing.assert_close(back.module_.weight, TinyLinear(3).fit().module_.weight)
    TinyLinear(5).fit().save_pretrained(saved)  # replaces the pair, leaves no temporary
    assert TinyLinear.from_pretrained(saved).module_.weight.shape == (1, 5)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(ValueError, match="_class_name is 'TinyLinear'"):
        OtherLinear.from_pretrained(saved)


def test_save_pretrained_refuses_a_folder_with_other_files(saved):
    (saved / "thesis.tex").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds other files \['thesis.tex'\]"):
        TinyLinear(3).fit().save_pretrained(saved)
    assert (saved / "thesis.tex").read_text() == "mine"


@pytest.mark.slow
def test_save_pretrained_killed_mid_save_leaves_a_matching_pair(tmp_path):
    """A process saving models of alternating sizes into one folder is killed with SIGKILL:
    the folder always loads, and its config matches its weights."""
    target = tmp_path / "model"
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.neurosuite.test_bad_input import TinyLinear
        i = 0
        while True:
            TinyLinear(3 + 2 * (i % 2)).fit().save_pretrained({str(target)!r})
            i += 1
            if i == 4:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert proc.stdout.readline().strip() == "ready"
        import time

        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    model = TinyLinear.from_pretrained(target)
    assert model.module_.weight.shape == (1, model.d) and model.d in (3, 5)


@pytest.fixture(scope="module")
def stimnet_cache(tmp_path_factory):
    from decoding.features import get_extractor

    home = tmp_path_factory.mktemp("home")
    fx = get_extractor("stimnet", n_train_images=32, n_epochs=1, dim=8, data_home=home,
                       verbose=False)
    return home, fx.folder.relative_to(home)


@pytest.mark.parametrize("name, needle", [("model.safetensors", "weights"),
                                          ("pca.npz", "NumPy .npz")],
                         ids=["stimnet_weights", "stimnet_pca"])
def test_damaged_feature_cache_is_named(stimnet_cache, tmp_path, name, needle):
    import shutil

    from decoding.features import get_extractor

    home = Path(shutil.copytree(stimnet_cache[0], tmp_path / "home"))
    path = home / stimnet_cache[1] / name
    _truncate(path)
    with pytest.raises(CorruptFileError) as err:
        get_extractor("stimnet", n_train_images=32, n_epochs=1, dim=8, data_home=home,
                      verbose=False)
    assert str(path) in str(err.value) and needle in str(err.value)


@pytest.mark.slow
def test_braincorl_resume_reuses_its_meta_trained_model(tmp_path, monkeypatch):
    """``braincorl --resume`` reloads checkpoints/braincorl instead of meta-training again,
    and reports the numbers of the first run."""
    monkeypatch.setenv("NEUROSUITE_DATA", str(tmp_path / "data"))
    cfg_path = REPO / "configs" / "encode" / "braincorl.yaml"
    out = tmp_path / "bc"
    assert run_cli(cfg_path, "--smoke", "--out", out) == 0
    first = metrics(out)
    assert first["meta_training_resumed"] is False
    assert run_cli(cfg_path, "--smoke", "--out", out, "--resume") == 0
    again = metrics(out)
    assert again["meta_training_resumed"] is True
    for key, value in first.items():
        if key not in ("seconds", "wall_time_s", "meta_training_resumed"):
            assert again[key] == value, key
