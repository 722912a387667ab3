"""``neurosuite sweep`` on 1 and on 2 local workers: the speed-up of a 20-run sweep.

The sweep is the 2003 network at its smoke level with 5 s of simulated time on the eager
path (about a second of work per run, plus its figures and report), over 4 values of
``n_exc`` x 5 seeds = 20 ordinary runs, through joblib's loky backend (``--backend dask`` for
a ``LocalCluster``). One worker runs the points in this process; more workers are fresh
processes, whose start (imports) is part of the time. Target (issue 16): 2 workers take about half
the time of 1 on a 2-core machine. The printed ratio is wall(1 worker) / wall(n workers);
each sweep starts in an empty folder (a re-run would skip the finished points).

Usage::

    python benchmarks/bench_sweep.py                  # 1 and 2 workers, loky
    python benchmarks/bench_sweep.py --workers 1 2 4 --backend dask

Writes ``benchmarks/results/bench_sweep_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
GRID = ["params.n_exc=400,600,800,1000", "seed=0:5"]
SETS = ["params.kernel=eager", "params.duration_ms=5000"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backend", default="loky", choices=("loky", "dask", "ray"))
    ap.add_argument("--config", default=str(ROOT / "configs" / "sim" / "izhikevich_2003.yaml"))
    ap.add_argument("--out", type=Path, default=None, help="JSON path")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.path.insert(0, str(ROOT))
    from neurosuite.sweep import run_sweep

    rows = []
    for n in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            load = os.getloadavg()[0]
            s = run_sweep(args.config, GRID, Path(tmp) / "sweep", level="smoke", sets=SETS,
                          n_jobs=n, backend=args.backend)
        rows.append({"workers": n, "wall_s": s["wall_s"], "runs": s["n_run"],
                     "failed": s["n_failed"], "load_avg_1m_before": load})
        base = rows[0]["wall_s"]
        print(f"{args.backend} {n} worker(s): {s['n_run']} runs in {s['wall_s']:6.1f} s, "
              f"speed-up x{base / s['wall_s']:.2f} (load avg before {load:.1f})", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"bench_sweep_{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"grid": GRID, "sets": SETS, "backend": args.backend, "rows": rows,
                               "cpus": os.cpu_count()}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
