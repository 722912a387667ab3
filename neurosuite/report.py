"""Self-contained HTML reports: config, metrics, tables and figures (PNGs embedded as base64).

One file a user can mail to a colleague, in the spirit of ``mne.Report``.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from data_loaders._io import atomic_write_text

VERDICTS = ("holds", "weaker", "does not hold")
"""How a job judges each paper claim against its own number (see ``Run.add_claim``)."""

LONG_TABLE_ROWS = 8
"""Tables with more rows than this are collapsed (``<details>``) in reports."""


@dataclass
class Figure:
    path: Path
    caption: str = ""
    name: str = ""


@dataclass
class Table:
    name: str
    rows: list[dict[str, Any]]
    caption: str = ""


@dataclass
class Claim:
    """One paper claim a job checked: the claim in one line, our number, the verdict.

    ``figure`` is the name of the run's figure that shows it (``Run.add_figure``'s ``name``).
    """

    name: str
    claim: str
    value: str
    verdict: str
    figure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "claim": self.claim, "value": self.value,
                "verdict": self.verdict, "figure": self.figure}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Claim:
        return cls(name=str(d["name"]), claim=str(d["claim"]), value=str(d["value"]),
                   verdict=str(d["verdict"]), figure=d.get("figure"))


def load_claims(folder: str | Path) -> list[Claim]:
    """The claims a run folder recorded (``claims.json``); ``[]`` when it has none."""
    path = Path(folder) / "claims.json"
    if not path.is_file():
        return []
    try:
        return [Claim.from_dict(d) for d in json.loads(path.read_text())]
    except (ValueError, KeyError, TypeError):
        return []


@dataclass
class Section:
    """One job's part of a report (a whole report, or one stage of the demo).

    ``anchor`` is the HTML id of the section; its figures get ids ``<anchor>-fig-<name>`` so
    that a claims table can link to them.
    """

    title: str
    description: str = ""
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    tables: list[Table] | None = None
    figures: list[Figure] | None = None
    texts: list[tuple[str, str]] | None = None
    link: str | None = None
    claims: list[Claim] | None = None
    anchor: str | None = None


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1150px;color:#222;padding:0 1em}
h1{border-bottom:2px solid #357;padding-bottom:.2em}
h2{color:#357;margin-top:2em;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccd;padding:.25em .6em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444;max-width:900px}
pre{background:#f6f6f9;padding:.8em;overflow-x:auto;font-size:.85em}
.ok{color:#283}.failed{color:#b22;font-weight:bold}
details{margin:.5em 0}summary{cursor:pointer;color:#357}
table.claims td{text-align:left;vertical-align:top}
.v-holds{background:#e3f4e3}.v-weaker{background:#fbf1d6}.v-does-not-hold{background:#f8dcdc}
"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        text = json.dumps(value)
        return html.escape(text if len(text) < 120 else text[:117] + "...")
    return html.escape(str(value))


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for k, v in metrics.items():
        if k == "tables":
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows


def _table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>empty table</em></p>"
    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).stem)}">'


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-") or "s"


def _fig_id(anchor: str, name: str) -> str:
    return f"{anchor}-fig-{_anchor(name)}"


def claims_table_html(rows: list[tuple[Section | None, Claim]], with_stage: bool = True) -> str:
    """The claims table: stage, the paper's claim, our number, the verdict, a figure link.

    ``rows`` pairs each claim with its section (``None`` for a stage that declared none is
    not allowed; pass a placeholder claim instead).
    """
    head = ("<th>stage</th>" if with_stage else "") + (
        "<th>paper's claim</th><th>our number</th><th>verdict</th><th>figure</th>")
    body = []
    for sec, c in rows:
        anchor = (sec.anchor if sec is not None else None) or "results"
        stage = ""
        if with_stage and sec is not None:
            stage = f'<td><a href="#{html.escape(anchor)}">{html.escape(sec.title)}</a></td>'
        elif with_stage:
            stage = "<td></td>"
        fig = ""
        names = {f.name or Path(f.path).stem for f in (sec.figures or [])
                 if Path(f.path).is_file()} if sec is not None else set()
        if c.figure and c.figure in names:
            fig = (f'<a href="#{html.escape(_fig_id(anchor, c.figure))}">'
                   f"{html.escape(c.figure)}</a>")
        elif c.figure:  # the job named a figure it did not draw: no dead link
            fig = f"{html.escape(c.figure)} (not drawn)"
        vclass = "v-" + c.verdict.replace(" ", "-") if c.verdict in VERDICTS else ""
        body.append(
            f"<tr>{stage}<td>{html.escape(c.claim)}</td><td>{html.escape(c.value)}</td>"
            f'<td class="{vclass}">{html.escape(c.verdict)}</td><td>{fig}</td></tr>'
        )
    return f'<table class="claims"><tr>{head}</tr>{"".join(body)}</table>'


def _verdict_counts(claims: list[Claim]) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def render_section(sec: Section, level: int = 2, show_claims: bool = True) -> str:
    """HTML for one section (figures embedded).

    Order: the claims (when ``show_claims``), status and error, figures, notes, then tables
    (long ones collapsed), the metrics (collapsed) and the resolved config (collapsed).
    """
    h = f"h{level}"
    anchor = sec.anchor or "results"
    out = [f'<{h} id="{html.escape(anchor)}">{html.escape(sec.title)}</{h}>']
    if sec.link:
        out.append(f'<p><a href="{html.escape(sec.link)}">full run folder report</a></p>')
    if sec.description:
        out.append(f"<p>{html.escape(sec.description)}</p>")
    metrics = sec.metrics or {}
    status = metrics.get("status")
    if status:
        out.append(f'<p>status: <span class="{html.escape(str(status))}">{_fmt(status)}</span></p>')
    if metrics.get("error"):
        out.append(f'<p class="failed">{_fmt(metrics["error"])}</p>')
    if show_claims and sec.claims:
        out.append(f"<p><strong>Paper claims</strong> ({_verdict_counts(sec.claims)})</p>")
        out.append(claims_table_html([(sec, c) for c in sec.claims], with_stage=False))
    for f in sec.figures or []:
        if Path(f.path).is_file():
            cap = html.escape(f.caption or f.name)
            fid = html.escape(_fig_id(anchor, f.name or Path(f.path).stem))
            out.append(f'<figure id="{fid}">{_img(f.path)}<figcaption>{cap}</figcaption></figure>')
    for title, text in sec.texts or []:
        out.append(f"<p><strong>{html.escape(title)}</strong></p><pre>{html.escape(text)}</pre>")
    for t in sec.tables or []:
        label = f"<strong>{html.escape(t.name)}</strong> {html.escape(t.caption)}"
        if len(t.rows) > LONG_TABLE_ROWS:
            out.append(f"<details><summary>{label} ({len(t.rows)} rows)</summary>")
            out.append(_table_html(t.rows))
            out.append("</details>")
        else:
            out.append(f"<p>{label}</p>")
            out.append(_table_html(t.rows))
    flat = [(k, v) for k, v in _flatten(metrics) if k not in ("status", "error")]
    if flat:
        out.append(f"<details><summary>all metrics ({len(flat)})</summary>")
        out.append(_table_html([{"metric": k, "value": v} for k, v in flat]))
        out.append("</details>")
    if sec.config is not None:
        out.append("<details><summary>resolved config</summary><pre>")
        out.append(html.escape(yaml.safe_dump(sec.config, sort_keys=False)))
        out.append("</pre></details>")
    return "\n".join(out)


def render_page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>"
    )


def write_report(
    path: str | Path,
    title: str,
    description: str = "",
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    tables: list[Table] | None = None,
    figures: list[Figure] | None = None,
    texts: list[tuple[str, str]] | None = None,
    claims: list[Claim] | None = None,
) -> Path:
    """Write one job's report as a self-contained HTML file (atomically).

    It opens on the job's claims table (when it declared claims), then the figures.
    """
    sec = Section(
        title="Results",
        description=description,
        config=config,
        metrics=metrics,
        tables=tables,
        figures=figures,
        texts=texts,
        claims=claims,
        anchor="results",
    )
    atomic_write_text(path, render_page(title, render_section(sec)))
    return Path(path)


def write_sections(path: str | Path, title: str, sections: list[Section], intro: str = "") -> Path:
    """Write a report made of several sections (the demo's tour), atomically.

    The page opens on one claims table over all sections (each row links to its stage and
    to the figure that shows it), then the list of stages, then each stage.
    """
    for i, s in enumerate(sections):
        if not s.anchor:
            s.anchor = f"stage-{i + 1}-{_anchor(s.title)}"
    rows: list[tuple[Section | None, Claim]] = []
    every: list[Claim] = []
    for s in sections:
        status = (s.metrics or {}).get("status", "")
        if s.claims:
            rows.extend((s, c) for c in s.claims)
            every.extend(s.claims)
        else:
            what = "stage failed before declaring its claims" if status == "failed" else (
                "no claim declared")
            rows.append((s, Claim(name="-", claim=what, value="-", verdict="-")))
    body = f"<p>{html.escape(intro)}</p>" if intro else ""
    body += (f"<h2 id=\"claims\">Paper claims at this level</h2><p>{_verdict_counts(every)}. "
             "Each row links to its stage and to the figure that shows it.</p>")
    body += claims_table_html(rows)
    toc = "".join(
        f'<li><a href="#{html.escape(s.anchor or "")}">{html.escape(s.title)}</a> - '
        f"{_fmt((s.metrics or {}).get('status', ''))}</li>"
        for s in sections
    )
    body += f"<h2>Stages</h2><ol>{toc}</ol>"
    body += "\n".join(render_section(s, show_claims=False) for s in sections)
    atomic_write_text(path, render_page(title, body))
    return Path(path)
