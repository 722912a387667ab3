"""The report opens on the paper claims: Run.add_claim, claims.json, the tour's first table."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from neurosuite import cli
from neurosuite.jobs import JOBS
from neurosuite.report import LONG_TABLE_ROWS
from neurosuite.runs import Run


class ClaimParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    n: int = Field(20, gt=0)
    fail_after_claim: bool = False


def claim_job(params: ClaimParams, run) -> dict:
    """Draw n normal numbers; claim their mean is near 0 (a real, checkable claim)."""
    import matplotlib.pyplot as plt

    x = np.random.default_rng(run.seed).normal(size=params.n)
    fig, ax = plt.subplots()
    ax.hist(x, bins=5)
    run.add_figure(fig, "hist", caption="histogram of the draws")
    m = float(x.mean())
    verdict = "holds" if abs(m) < 3 / np.sqrt(params.n) else "does not hold"
    run.add_claim("mean", "the sample mean is within 3 standard errors of 0",
                  f"mean {m:.3f} (n = {params.n})", verdict, figure="hist")
    run.add_claim("ghost", "a claim whose figure was never drawn", "-", "weaker",
                  figure="missing")
    run.add_table("draws", [{"i": i, "x": float(v)} for i, v in enumerate(x)])
    run.add_table("summary", [{"mean": m}])
    if params.fail_after_claim:
        raise RuntimeError("asked to fail")
    return {"mean": m}


@pytest.fixture
def claim_cfg(monkeypatch, tmp_path):
    monkeypatch.setitem(JOBS, "claimtoy", "tests.neurosuite.test_report:claim_job")

    def write(name: str, **params):
        cfg = {"job": "claimtoy", "description": name, "seed": 1, "params": params,
               "quick": {}, "smoke": {}}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


def test_add_claim_validates_and_writes_claims_json(tmp_path):
    run = Run(tmp_path / "r", seed=0)
    run.add_claim("a", "x rises with y", "r = 0.95", "holds", figure="fig one")
    run.add_claim("b", "z is small", "z = 0.3", "weaker")
    run.add_claim("a", "x rises with y", "r = 0.5", "does not hold")  # same name replaces
    stored = json.loads((tmp_path / "r" / "claims.json").read_text())
    assert [c["name"] for c in stored] == ["b", "a"]
    assert stored[1] == {"name": "a", "claim": "x rises with y", "value": "r = 0.5",
                         "verdict": "does not hold", "figure": None}
    with pytest.raises(ValueError, match="verdict must be one of .*'maybe'"):
        run.add_claim("c", "claim", "1", "maybe")
    with pytest.raises(ValueError, match="claim must be a non-empty string"):
        run.add_claim("c", "  ", "1", "holds")


def _positions(html: str, *needles: str) -> list[int]:
    pos = []
    for n in needles:
        i = html.find(n)
        assert i >= 0, n
        pos.append(i)
    return pos


def test_run_report_opens_on_claims_then_figures(claim_cfg, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["run", str(claim_cfg("one", n=LONG_TABLE_ROWS + 5)), "--out", str(out),
                     "--quiet"]) == 0
    claims = json.loads((out / "claims.json").read_text())
    assert claims[0]["verdict"] in ("holds", "does not hold") and claims[0]["figure"] == "hist"
    html = (out / "report.html").read_text()
    claims_at, fig_at, draws_at, summary_at, metrics_at = _positions(
        html, 'class="claims"', "<figure", "<strong>draws</strong>", "<strong>summary</strong>",
        "all metrics")
    assert claims_at < fig_at < draws_at and fig_at < summary_at < metrics_at
    # the claim links to the figure's anchor, which exists
    link = re.search(r'<a href="#([^"]+)">hist</a>', html).group(1)
    assert f'<figure id="{link}">' in html
    assert "missing (not drawn)" in html and '">missing</a>' not in html
    # the long table and the metrics are collapsed, the short table is not
    assert re.search(r"<details><summary><strong>draws</strong>", html)
    assert not re.search(r"<details><summary><strong>summary</strong>", html)
    assert "<details><summary>all metrics" in html and "<details open>" not in html


def test_tour_opens_on_one_claims_table_over_the_stages(claim_cfg, monkeypatch, tmp_path):
    good = claim_cfg("good", n=30)
    bad = claim_cfg("bad", n=10, fail_after_claim=True)
    monkeypatch.setattr(cli, "demo_configs", lambda: [(1, good), (2, bad)])
    monkeypatch.setattr(cli, "configs_dir", lambda: good.parent)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick", "--quiet"]) == 1  # one stage failed
    html = (out / "report.html").read_text()
    body = html[html.index("<body>"):]
    # the first table of the page is the claims table, before the stage list and any figure
    first_table = re.search(r"<table[^>]*>", body).group(0)
    assert 'class="claims"' in first_table
    claims_at, stages_at, fig_at = _positions(body, 'class="claims"', "<h2>Stages</h2>",
                                              "<figure")
    assert claims_at < stages_at < fig_at
    table = body[claims_at:body.index("</table>", claims_at)]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    assert len(rows) == 4  # two claims per stage; the failed stage's claims are kept
    rows = [r for r in rows if "never drawn" not in r]
    for stage_no, row in zip((1, 2), rows, strict=True):
        stage_link, fig_link = re.findall(r'<a href="#([^"]+)">', row)
        assert f'id="{stage_link}"' in body and f"{stage_no}. " in row
        assert f'<figure id="{fig_link}">' in body and fig_link.startswith(stage_link)
    expected = json.loads((out / "01-good" / "claims.json").read_text())[0]
    assert expected["value"] in rows[0] and expected["verdict"] in rows[0]
    # per-stage order: figures before tables, metrics collapsed
    sec1 = body[body.index('id="stage-1'):body.index('id="stage-2')]
    assert sec1.index("<figure") < sec1.index("<strong>draws</strong>") < sec1.index(
        "all metrics")


def test_tour_row_for_a_stage_without_claims(monkeypatch, tmp_path):
    monkeypatch.setitem(JOBS, "toy", "tests.neurosuite.toy_jobs:toy_job")
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"job": "toy", "params": {"n": 5}}))
    monkeypatch.setattr(cli, "demo_configs", lambda: [(1, path)])
    monkeypatch.setattr(cli, "configs_dir", lambda: tmp_path)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quick", "--quiet"]) == 0
    html = (out / "report.html").read_text()
    assert "no claim declared" in html
    assert json.loads((out / "01-toy" / "claims.json").read_text()) == []
