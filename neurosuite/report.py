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
class Section:
    """One job's part of a report (a whole report, or one stage of the demo)."""

    title: str
    description: str = ""
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    tables: list[Table] | None = None
    figures: list[Figure] | None = None
    texts: list[tuple[str, str]] | None = None
    link: str | None = None


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
details{margin:.5em 0}
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


def render_section(sec: Section, level: int = 2) -> str:
    """HTML for one section (figures embedded)."""
    h = f"h{level}"
    out = [f"<{h}>{html.escape(sec.title)}</{h}>"]
    if sec.link:
        out.append(f'<p><a href="{html.escape(sec.link)}">full run folder report</a></p>')
    if sec.description:
        out.append(f"<p>{html.escape(sec.description)}</p>")
    metrics = sec.metrics or {}
    status = metrics.get("status")
    if status:
        out.append(f'<p>status: <span class="{html.escape(str(status))}">{_fmt(status)}</span></p>')
    flat = [(k, v) for k, v in _flatten(metrics) if k not in ("status",)]
    if flat:
        out.append("<details open><summary>metrics</summary>")
        out.append(_table_html([{"metric": k, "value": v} for k, v in flat]))
        out.append("</details>")
    for t in sec.tables or []:
        out.append(f"<p><strong>{html.escape(t.name)}</strong> {html.escape(t.caption)}</p>")
        out.append(_table_html(t.rows))
    for f in sec.figures or []:
        if Path(f.path).is_file():
            cap = html.escape(f.caption or f.name)
            out.append(f"<figure>{_img(f.path)}<figcaption>{cap}</figcaption></figure>")
    for title, text in sec.texts or []:
        out.append(f"<p><strong>{html.escape(title)}</strong></p><pre>{html.escape(text)}</pre>")
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
) -> Path:
    """Write one job's report as a self-contained HTML file (atomically)."""
    sec = Section(
        title="Results",
        description=description,
        config=config,
        metrics=metrics,
        tables=tables,
        figures=figures,
        texts=texts,
    )
    atomic_write_text(path, render_page(title, render_section(sec)))
    return Path(path)


def write_sections(path: str | Path, title: str, sections: list[Section], intro: str = "") -> Path:
    """Write a report made of several sections (the demo's tour), atomically."""
    toc = "".join(
        f"<li>{html.escape(s.title)} - {_fmt((s.metrics or {}).get('status', ''))}</li>"
        for s in sections
    )
    body = (f"<p>{html.escape(intro)}</p>" if intro else "") + f"<ol>{toc}</ol>"
    body += "\n".join(render_section(s) for s in sections)
    atomic_write_text(path, render_page(title, body))
    return Path(path)
