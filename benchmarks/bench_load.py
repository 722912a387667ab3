"""How much each demo stage slows down beside busy processes, against the load factor.

Each stage (a config with a ``demo_stage``) runs as ``neurosuite run CONFIG --quick`` in a
fresh process (so the entry point's thread policy applies: ``OMP_WAIT_POLICY=PASSIVE``, one
torch thread by default), first with nothing else started by the benchmark, then beside 1
and 2 busy processes that the benchmark starts and stops itself (each a bounded pure-Python
spin loop, killed when the stage ends and self-terminating after ``--busy-max-s`` anyway).

The load factor is what a fair scheduler predicts for a single-threaded stage beside ``L``
busy processes on ``C`` cores: ``max(1, (L + 1) / C)``. The printed ratio ``slowdown /
load factor`` should stay below about 1.5 (issue 16); the 2-thread spinning collapse it
guards against was 33x.

Usage::

    python benchmarks/bench_load.py                      # every stage, --quick level, 0/1/2 busy
    python benchmarks/bench_load.py --quick              # smoke level (seconds per stage)
    python benchmarks/bench_load.py --stages izhikevich_2003 histn --busy 0 1

The first measurement is only "idle" on an otherwise idle machine: the script prints the
1-minute load average before each run so that a loaded baseline is visible.
Writes ``benchmarks/results/bench_load_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BUSY = ("import sys, time\nend = time.monotonic() + float(sys.argv[1])\n"
        "while time.monotonic() < end:\n    pass\n")  # a bounded spin loop


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def load_factor(n_busy: int, cores: int, threads: int = 1) -> float:
    """Fair-share slowdown of a ``threads``-thread stage beside ``n_busy`` spinning processes."""
    return max(1.0, (n_busy + threads) / cores) / max(1.0, threads / cores)


def _stages(names: list[str] | None) -> list[tuple[int, Path]]:
    sys.path.insert(0, str(ROOT))
    from neurosuite.cli import demo_configs

    stages = demo_configs()
    if names:
        known = {p.stem for _, p in stages}
        unknown = sorted(set(names) - known)
        if unknown:
            raise SystemExit(f"--stages: unknown {unknown}; expected among {sorted(known)}")
        stages = [(s, p) for s, p in stages if p.stem in names]
    return stages


def _run_stage(config: Path, level: str, timeout: float) -> tuple[float, str]:
    """Wall time of ``neurosuite run CONFIG`` in a fresh process, and its status."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "neurosuite.cli", "run", str(config), f"--{level}",
               "--quiet", "--out", str(Path(tmp) / "run")]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return time.perf_counter() - t0, f"timeout > {timeout:.0f} s"
        wall = time.perf_counter() - t0
        status = "ok" if proc.returncode == 0 else f"failed: {proc.stderr.strip()[-200:]}"
    return wall, status


def _start_busy(n: int, max_s: float) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY, str(max_s)]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke level (seconds per stage)")
    ap.add_argument("--stages", nargs="*", default=None, metavar="NAME",
                    help="config names (e.g. izhikevich_2003 histn); default: every stage")
    ap.add_argument("--busy", type=int, nargs="*", default=[0, 1, 2],
                    help="numbers of busy processes to run beside each stage")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per stage run (s)")
    ap.add_argument("--busy-max-s", type=float, default=3600.0,
                    help="a busy process ends by itself after this long")
    ap.add_argument("--out", type=Path, default=None, help="JSON path")
    args = ap.parse_args(argv)
    if any(b < 0 for b in args.busy):
        ap.error(f"--busy: expected numbers >= 0, got {args.busy}")
    level = "smoke" if args.quick else "quick"
    cores = _cores()
    stages = _stages(args.stages)
    print(f"{len(stages)} stages at level {level!r}, {cores} cores, busy processes "
          f"{args.busy}; load average now {os.getloadavg()[0]:.2f}")
    rows = []
    for _, config in stages:
        base = None
        for n_busy in sorted(set(args.busy)):
            load_before = os.getloadavg()[0]
            busy = _start_busy(n_busy, args.busy_max_s)
            try:
                time.sleep(0.5 if n_busy else 0.0)  # let them reach their cores
                wall, status = _run_stage(config, level, args.timeout)
            finally:
                _stop(busy)
            if n_busy == min(args.busy):
                base = wall
            factor = load_factor(n_busy, cores)
            slowdown = wall / base if base else float("nan")
            row = {"stage": config.stem, "busy": n_busy, "wall_s": wall, "status": status,
                   "slowdown": slowdown, "load_factor": factor,
                   "slowdown_over_load": slowdown / factor, "load_avg_1m_before": load_before}
            rows.append(row)
            print(f"{config.stem:>24} busy {n_busy}: {wall:8.1f} s  slowdown x{slowdown:5.2f}  "
                  f"load factor x{factor:4.2f}  ratio {slowdown / factor:5.2f}  [{status}] "
                  f"(load avg before {load_before:.1f})", flush=True)
    worst = max((r["slowdown_over_load"] for r in rows if r["busy"]), default=float("nan"))
    print(f"worst slowdown / load factor: {worst:.2f} (target <= 1.5)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"bench_load_{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"),
                               "cores": cores, "level": level, "rows": rows,
                               "worst_ratio": worst}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
