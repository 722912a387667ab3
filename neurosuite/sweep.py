"""``neurosuite sweep``: a grid of config overrides, one ordinary run folder per point.

::

    neurosuite sweep configs/sim/izhikevich_2003.yaml --grid params.n_exc=400,800 \\
        --grid seed=0:5 --n-jobs 2 [--backend loky|dask|ray] [--scheduler ADDRESS]

Each point of the grid (the Cartesian product of the ``--grid`` lists) is run exactly as
``neurosuite run CONFIG --set KEY=VALUE ...`` would run it, into ``OUT/runs/<point>/``.
The points go through joblib, so the engine that runs them is an existing one, never ours:

- ``loky`` (default): ``n_jobs`` local worker processes;
- ``dask``: a ``dask.distributed`` cluster: a ``LocalCluster`` of ``n_jobs`` single-threaded
  worker processes, or the scheduler at ``--scheduler`` (e.g. one started by
  ``dask-jobqueue``'s ``SLURMCluster`` / ``PBSCluster`` on a cluster);
- ``ray``: Ray's joblib backend (``ray.init`` with ``n_jobs`` CPUs, or ``--scheduler``).

Each run uses its own config's ``n_jobs`` (default 1 torch thread), so ``n_jobs`` workers use
about ``n_jobs`` cores. A point whose folder already holds a finished run of the same
resolved config is skipped, so a killed sweep resumes where it stopped; an unfinished one is
resumed from its checkpoints. ``OUT/sweep.json`` records the base config; a sweep folder that
holds runs of another config is refused. The summary: ``summary.csv`` (one row per point),
``summary.json`` (the rows and, per parameter setting, each metric's mean, std and count
``n_runs`` over the seeds), ``figures/summary.png`` (each metric against the first swept
parameter, seeds as error bars) and ``report.html``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurosuite.config import LEVELS, ConfigError, RunConfig, load_yaml, resolve
from neurosuite.jobs import JOBS, get_job, suggest
from neurosuite.parallel import check_n_jobs, resolve_n_jobs

BACKENDS = ("loky", "dask", "ray")
# top-level keys a grid may sweep (the others name the job or hold the override sections)
GRID_TOP_KEYS = ("seed", "device", "n_jobs")
_INSTALL = {
    "dask": ("distributed", "pip install 'dask[distributed]' (or 'neurosuite[sweep]')"),
    "ray": ("ray", "pip install 'ray[default]'"),
}
_RANGE = re.compile(r"^(-?\d+):(-?\d+)(?::(-?\d+))?$")


class SweepError(ConfigError):
    """A sweep that cannot run; the message names the option, the value and what is expected."""


@dataclass
class Point:
    """One point of the grid: its overrides and its run folder name."""

    values: dict[str, Any]  # dotted key -> value
    name: str
    sets: list[str] = field(default_factory=list)


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so that ``[6,14],[8,12]`` gives two lists."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out if v.strip() != ""]


def parse_grid(item: str) -> tuple[str, list[Any]]:
    """One ``--grid KEY=V1,V2,...``: a dotted key and its values.

    A value ``A:B`` (or ``A:B:STEP``) is the integer range ``A, A+STEP, ..., < B`` (Python's
    ``range``); other values are read as YAML (``1``, ``0.5``, ``true``, ``[6, 14]``). A bare
    key that is not a top-level config key is taken as ``params.<key>``.
    """
    if "=" not in item:
        raise SweepError(f"--grid {item!r}: expected KEY=V1,V2,... or KEY=A:B, "
                         "e.g. --grid params.n=100,200 --grid seed=0:5")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise SweepError(f"--grid {item!r}: empty key")
    if parts[0] not in RunConfig.model_fields:
        parts = ["params", *parts]
    values: list[Any] = []
    for tok in _split_values(raw):
        m = _RANGE.match(tok)
        if m:
            step = int(m.group(3)) if m.group(3) else 1
            if step == 0:
                raise SweepError(f"--grid {item!r}: a range step of 0")
            values.extend(range(int(m.group(1)), int(m.group(2)), step))
        else:
            values.append(yaml.safe_load(tok))
    if not values:
        raise SweepError(f"--grid {item!r}: empty grid (no values for {'.'.join(parts)}); "
                         "expected e.g. KEY=1,2,3 or KEY=0:5")
    return ".".join(parts), values


def _check_key(key: str, job: str, where: str) -> None:
    """The grid key must name a top-level key or a parameter of the config's job."""
    parts = key.split(".")
    if parts[0] != "params":
        if key not in GRID_TOP_KEYS:
            raise SweepError(f"--grid {key}: not a key a sweep can vary in {where}; expected "
                             f"params.<name> or one of {list(GRID_TOP_KEYS)}."
                             f"{suggest(key, GRID_TOP_KEYS)}")
        return
    _, model = get_job(job)
    valid = list(model.model_fields)
    if len(parts) < 2 or parts[1] not in valid:
        name = parts[1] if len(parts) > 1 else ""
        raise SweepError(f"--grid {key}: {name!r} is not a parameter of job {job!r} "
                         f"({where}); valid keys are: {', '.join(valid)}.{suggest(name, valid)}")


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str | int | bool) or v is None:
        return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
    return yaml.safe_dump(v, default_flow_style=True).strip()


def _point_name(values: dict[str, Any]) -> str:
    text = "-".join(f"{k.removeprefix('params.')}={_fmt_value(v)}" for k, v in values.items())
    safe = re.sub(r"[^A-Za-z0-9._=+-]", "_", text)
    if len(safe) > 120:
        safe = safe[:100] + "-" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return safe


def make_points(grid: list[str], job: str, where: str) -> list[Point]:
    """The Cartesian product of the ``--grid`` items, each checked against the job."""
    if not grid:
        raise SweepError("--grid: empty grid; give at least one, e.g. --grid params.n=1,2,3 "
                         "--grid seed=0:5")
    keys, lists = [], []
    for item in grid:
        key, values = parse_grid(item)
        if key in keys:
            raise SweepError(f"--grid {key}: given twice; put all its values in one --grid")
        _check_key(key, job, where)
        keys.append(key)
        lists.append(values)
    points = []
    for combo in itertools.product(*lists):
        values = dict(zip(keys, combo, strict=True))
        sets = [f"{k}={_fmt_value(v)}" for k, v in values.items()]
        points.append(Point(values=values, name=_point_name(values), sets=sets))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise SweepError("--grid: two points have the same values; remove the repeated values")
    return points


# -- one point, in a worker process -----------------------------------------------------------
def _same_run(stored: dict[str, Any], resolved: dict[str, Any]) -> bool:
    keys = ("job", "level", "seed", "device", "params")
    return all(stored.get(k) == resolved.get(k) for k in keys)


def _finished(folder: Path, resolved: dict[str, Any]) -> bool:
    """A finished run of the same resolved config (raises if it is another config's run)."""
    cfg_file = folder / "config.yaml"
    if not cfg_file.is_file():
        return False
    stored = yaml.safe_load(cfg_file.read_text()) or {}
    if not _same_run(stored, resolved):
        diff = [k for k in ("job", "level", "seed", "device", "params")
                if stored.get(k) != resolved.get(k)]
        raise SweepError(f"sweep folder: {folder} holds a run of another config ({', '.join(diff)}"
                         " differ); use another --out or delete that folder")
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return metrics.get("status") == "ok"


def _scalars(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if k in ("tables", "status", "error"):
            continue
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[f"{prefix}{k}"] = float(v)
    return out


def run_point(source: str, level: str, sets: list[str], out_dir: str,
              registry: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one point (``neurosuite run source --set ...``) into ``out_dir``; never raises.

    ``registry`` carries job names registered at run time in the parent process (a worker
    process starts from the shipped registry).
    """
    import matplotlib

    matplotlib.use("Agg")
    from neurosuite.runs import execute

    for name, target in (registry or {}).items():
        JOBS.setdefault(name, target)
    t0 = time.perf_counter()
    try:
        cfg = resolve(source, level=level, sets=sets)
        folder = Path(out_dir)
        resume = folder.is_dir() and any(folder.iterdir())
        run = execute(cfg, folder, resume=resume, verbose=False, argv=None)
        status, error, metrics = "ok", None, run.metrics
    except Exception as err:  # noqa: BLE001 - one failed point must not stop the sweep
        status, error = "failed", f"{type(err).__name__}: {err}"
        try:
            metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
    return {"status": status, "error": error, "metrics": _scalars(metrics),
            "wall_s": time.perf_counter() - t0}


# -- the sweep ---------------------------------------------------------------------------------
def _backend_context(backend: str, n: int, scheduler: str | None):
    """A context manager in which ``joblib.Parallel`` uses ``backend``."""
    import contextlib

    from joblib import parallel_config

    if backend == "loky":
        return parallel_config(backend="loky", n_jobs=n)
    module, install = _INSTALL[backend]
    try:
        __import__(module)
    except ImportError:
        raise SweepError(f"--backend {backend}: the package {module!r} is not installed; "
                         f"install it with: {install}") from None

    @contextlib.contextmanager
    def dask_ctx():
        from distributed import Client, LocalCluster

        if scheduler:
            with Client(scheduler) as client, parallel_config(backend="dask"):
                yield client
        else:
            with (LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None) as cluster,
                  Client(cluster) as client, parallel_config(backend="dask")):
                yield client

    @contextlib.contextmanager
    def ray_ctx():
        import ray
        from ray.util.joblib import register_ray

        started = not ray.is_initialized()
        if started:
            ray.init(address=scheduler, num_cpus=None if scheduler else n)
        register_ray()
        try:
            with parallel_config(backend="ray", n_jobs=n):
                yield None
        finally:
            if started:
                ray.shutdown()

    return dask_ctx() if backend == "dask" else ray_ctx()


def _sweep_identity(source: Path, level: str, sets: list[str]) -> dict[str, Any]:
    raw = load_yaml(source)
    return {"config": raw, "level": level, "sets": list(sets)}


def _check_folder(out: Path, identity: dict[str, Any]) -> None:
    meta = out / "sweep.json"
    if meta.is_file():
        stored = json.loads(meta.read_text())
        mine = json.loads(json.dumps(identity))
        diff = [k for k in ("config", "level", "sets") if stored.get(k) != mine.get(k)]
        if diff:
            raise SweepError(
                f"sweep folder {out}: holds the runs of another config ({', '.join(diff)} "
                f"differ from {stored.get('source')}); use another --out")
    elif out.is_dir() and any(out.iterdir()):
        raise SweepError(f"sweep folder {out}: exists, is not empty and holds no sweep.json "
                         "(not a sweep folder); use another --out")


def run_sweep(
    config: str | Path,
    grid: list[str],
    out: str | Path,
    *,
    level: str = "full",
    sets: list[str] | None = None,
    n_jobs: int = 1,
    backend: str = "loky",
    scheduler: str | None = None,
    metrics: list[str] | None = None,
) -> dict[str, Any]:
    """Run the grid of overrides of ``config`` as ordinary runs; see the module docstring.

    Parameters
    ----------
    config : path
        A run config (YAML).
    grid : list of str
        ``KEY=V1,V2,...`` or ``KEY=A:B`` items (``--grid``), e.g. ``["params.n=1,2", "seed=0:3"]``.
    out : path
        The sweep folder; each point runs into ``out/runs/<point>/``.
    level : {"full", "quick", "smoke"}
        Level of every run.
    sets : list of str
        ``--set`` overrides applied to every point (before the grid's).
    n_jobs : int
        Parallel workers (MNE-like: -1 for one per CPU; with a ``--scheduler``, the cluster
        decides).
    backend : {"loky", "dask", "ray"}
        joblib backend.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) or Ray cluster.
    metrics : list of str, optional
        Metrics to plot (default: every numeric metric but ``wall_time_s``, at most 6).

    Returns
    -------
    dict
        ``rows`` (one per point: values, status, metrics), ``aggregate``, ``n_run``,
        ``n_skipped``, ``n_failed``, ``wall_s`` and the written ``paths``.
    """
    t0 = time.perf_counter()
    if backend not in BACKENDS:
        raise SweepError(f"--backend: expected one of {list(BACKENDS)}, got {backend!r}."
                         f"{suggest(str(backend), BACKENDS)}")
    try:
        n = resolve_n_jobs(check_n_jobs(n_jobs, field="--n-jobs"))
    except ValueError as err:
        raise SweepError(str(err)) from None
    if level not in LEVELS:
        raise SweepError(f"level: expected one of {LEVELS}, got {level!r}")
    source = Path(config)
    sets = list(sets or [])
    base = resolve(source, level=level, sets=sets)  # the config itself must be valid
    points = make_points(grid, base.job, str(source))
    resolved = {}
    for p in points:  # every point validates before anything runs
        resolved[p.name] = resolve(source, level=level, sets=sets + p.sets).to_dict()
    out = Path(out)
    identity = _sweep_identity(source, level, sets)
    _check_folder(out, identity)
    runs_dir = out / "runs"
    todo, skipped = [], set()
    for p in points:
        if _finished(runs_dir / p.name, resolved[p.name]):
            skipped.add(p.name)
        else:
            todo.append(p)
    # the backend is checked before any folder is written
    ctx = _backend_context(backend, n, scheduler) if todo else None
    runs_dir.mkdir(parents=True, exist_ok=True)
    from data_loaders._io import atomic_write_json

    atomic_write_json(out / "sweep.json", {
        **identity, "source": str(source), "grid": list(grid), "backend": backend,
        "n_jobs": n_jobs, "points": [p.name for p in points]})
    registry = {base.job: JOBS[base.job]}
    results: dict[str, dict[str, Any]] = {}
    if todo:
        from joblib import Parallel, delayed

        calls = [delayed(run_point)(str(source), level, sets + p.sets, str(runs_dir / p.name),
                                    registry) for p in todo]
        with ctx:
            par = Parallel(n_jobs=n) if backend == "loky" else Parallel()
            done = par(calls) if len(todo) > 1 or backend != "loky" else [
                run_point(str(source), level, sets + todo[0].sets,
                          str(runs_dir / todo[0].name), registry)]
        results = {p.name: r for p, r in zip(todo, done, strict=True)}
    rows = []
    for p in points:
        if p.name in skipped:
            m = json.loads((runs_dir / p.name / "metrics.json").read_text())
            r = {"status": "ok", "error": None, "metrics": _scalars(m), "wall_s": 0.0}
            state = "skipped"
        else:
            r = results[p.name]
            state = "ran"
        rows.append({"run": p.name, **{k.removeprefix("params."): v for k, v in p.values.items()},
                     "status": r["status"], "sweep": state, **r["metrics"],
                     **({"error": r["error"]} if r["error"] else {})})
    summary = _write_summary(out, source, rows, [k.removeprefix("params.") for k in
                                                 points[0].values], metrics)
    summary.update(n_run=len(todo), n_skipped=len(skipped),
                   n_failed=sum(r["status"] != "ok" for r in rows),
                   wall_s=time.perf_counter() - t0)
    return summary


def _aggregate(rows: list[dict[str, Any]], keys: list[str], metric_names: list[str]
               ) -> list[dict[str, Any]]:
    """Per setting of the non-seed keys: mean, std and n of each metric over the seeds."""
    import numpy as np

    group_keys = [k for k in keys if k != "seed"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault(tuple(json.dumps(r[k]) for k in group_keys), []).append(r)
    out = []
    for members in groups.values():
        row = {k: members[0][k] for k in group_keys}
        row["n_runs"] = len(members)
        for m in metric_names:
            vals = np.array([r[m] for r in members if m in r], dtype=float)
            if len(vals):
                row[f"{m}_mean"] = float(vals.mean())
                row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out.append(row)
    return out


def _write_summary(out: Path, source: Path, rows: list[dict[str, Any]], keys: list[str],
                   metrics: list[str] | None) -> dict[str, Any]:
    from data_loaders._io import atomic_path, atomic_write_json, atomic_write_text
    from neurosuite.report import Figure, Table, write_report

    ok = [r for r in rows if r["status"] == "ok"]
    found = []
    for r in ok:
        for k, v in r.items():
            if (isinstance(v, float) and k not in keys and k != "wall_time_s"
                    and k not in found):
                found.append(k)
    if metrics:
        missing = [m for m in metrics if m not in found]
        if missing and ok:
            raise SweepError(f"--metric {missing[0]!r}: not a numeric metric of these runs; "
                             f"they have: {', '.join(found)}.{suggest(missing[0], found)}")
        names = list(metrics)
    else:
        names = found[:6]
    agg = _aggregate(rows, keys, names)
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with atomic_path(out / "summary.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v
                             for k, v in r.items()})
    atomic_write_json(out / "summary.json", {"rows": rows, "aggregate": agg, "metrics": names,
                                             "keys": keys})
    fig_path = _plot(out, rows, keys, names)
    figures = [Figure(path=fig_path, name="summary",
                      caption="Each metric against the first swept parameter; error bars: "
                              "standard deviation over the seeds.")] if fig_path else []
    report = write_report(
        out / "report.html", title=f"sweep of {source.name}",
        description=f"{len(rows)} points ({len(ok)} ok); each point is an ordinary run folder "
                    "under runs/.",
        tables=[Table(name="summary", rows=agg, caption="mean and std over seeds"),
                Table(name="points", rows=rows, caption="one row per run")],
        figures=figures)
    atomic_write_text(out / "README.txt", f"sweep of {source}: see report.html, summary.csv\n")
    return {"rows": rows, "aggregate": agg, "metrics": names,
            "paths": {"csv": out / "summary.csv", "json": out / "summary.json",
                      "figure": fig_path, "report": report}}


def _plot(out: Path, rows: list[dict[str, Any]], keys: list[str], names: list[str]
          ) -> Path | None:
    """Each metric against the first non-seed key, one line per setting of the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from data_loaders._io import atomic_path

    xkeys = [k for k in keys if k != "seed"]
    if not names or not any(r["status"] == "ok" for r in rows):
        return None
    xk = xkeys[0] if xkeys else "seed"
    others = [k for k in xkeys if k != xk]
    agg = _aggregate(rows, keys, names) if xkeys else None
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, m in zip(axes[0], names, strict=True):
        if agg is None:  # only seeds were swept: the metric per seed
            pts = [(r["seed"], r[m]) for r in rows if r["status"] == "ok" and m in r]
            ax.plot(*zip(*pts, strict=True), "o")
        else:
            lines: dict[str, list[dict[str, Any]]] = {}
            for a in agg:
                label = ", ".join(f"{k}={a[k]}" for k in others)
                lines.setdefault(label, []).append(a)
            xs_all = sorted({json.dumps(a[xk]) for a in agg})
            numeric = all(isinstance(json.loads(x), int | float) for x in xs_all)
            for label, members in lines.items():
                members = [a for a in members if f"{m}_mean" in a]
                if numeric:
                    members.sort(key=lambda a: a[xk])
                    x = np.array([a[xk] for a in members], dtype=float)
                else:
                    x = np.array([xs_all.index(json.dumps(a[xk])) for a in members])
                ax.errorbar(x, [a[f"{m}_mean"] for a in members],
                            yerr=[a[f"{m}_std"] for a in members], marker="o", capsize=3,
                            label=label or None)
            if not numeric:
                ax.set_xticks(range(len(xs_all)), [json.loads(x) for x in xs_all])
            if others:
                ax.legend(fontsize=7)
        ax.set_xlabel(xk)
        ax.set_title(m, fontsize=9)
    fig.tight_layout()
    (out / "figures").mkdir(exist_ok=True)
    path = out / "figures" / "summary.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


# -- the command line ---------------------------------------------------------------------------
def add_sweep_parser(sub: Any) -> None:
    """Add ``neurosuite sweep`` to the CLI's subcommands."""
    import argparse

    w = sub.add_parser("sweep", help="run a grid of overrides, one run folder per point",
                       description=__doc__.split("\n")[0])
    w.add_argument("config", help="a YAML config (see `neurosuite list`)")
    w.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2|A:B",
                   help="values of one key, e.g. --grid params.n=100,200 --grid seed=0:5")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override applied to every point")
    w.add_argument("--out", help="sweep folder (default: runs/sweep-<config>-<time>)")
    w.add_argument("--backend", default="loky", choices=BACKENDS,
                   help="joblib backend (dask / ray: optional dependencies)")
    w.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://host:8786) or Ray cluster")
    w.add_argument("--n-jobs", type=int, default=1, metavar="N",
                   help="parallel workers (-1: one per CPU); each run keeps its own n_jobs")
    w.add_argument("--metric", action="append", default=None, metavar="NAME",
                   help="metric to plot (default: all numeric ones, up to 6)")
    lv = w.add_mutually_exclusive_group()
    lv.add_argument("--quick", action="store_true", help="every run at the quick level")
    lv.add_argument("--smoke", action="store_true", help="every run at the smoke level")
    w.add_argument("--quiet", action="store_true", help="no progress output")
    w.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, print the full Python traceback too")
    w.set_defaults(func=cmd_sweep)


def cmd_sweep(args: Any) -> int:
    """``neurosuite sweep``: run, print the summary, exit 1 if a point failed."""
    from datetime import datetime

    level = "smoke" if args.smoke else "quick" if args.quick else "full"
    out = Path(args.out) if args.out else (
        Path("runs") / f"sweep-{Path(args.config).stem}-{datetime.now():%Y%m%d-%H%M%S}")
    s = run_sweep(args.config, args.grid, out, level=level, sets=args.set, n_jobs=args.n_jobs,
                  backend=args.backend, scheduler=args.scheduler, metrics=args.metric)
    n = len(s["rows"])
    print(f"sweep: {n} points: {s['n_run']} run, {s['n_skipped']} skipped (finished), "
          f"{s['n_failed']} failed, in {s['wall_s']:.1f} s")
    for r in s["rows"]:
        if r["status"] != "ok":
            print(f"  FAILED {r['run']}: {r.get('error')}")
    print(s["paths"]["report"])
    return 1 if s["n_failed"] else 0
