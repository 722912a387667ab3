"""Speed of the torch engine against Brian2 on Izhikevich networks (issue 6, "Speed").

Cases (1 s of biological time each):

- the 2003 network (Izhikevich 2003, net.m) at N = 1,000 and 10,000 (dense weights scaled
  by 1000 / N), dt = 1 ms with two 0.5 ms half-steps of v (the net.m scheme, i.e. v is
  integrated at dt = 0.5 ms), batch 1 and 32;
- a sparse reservoir of 100,000 neurons with 100 synapses each (p = 0.001), exponential
  synapses, dt = 0.5 ms, batch 1.

Brian2 runs the same model description in its Cython runtime mode (numpy if Cython is
missing) and in cpp_standalone mode; code generation and compilation are reported apart
from the run time. Brian2 has no batch dimension: its time per trial at batch 32 is its
batch-1 time. The ratio printed is Brian2's fastest run time / torch time (per trial).
Torch runs with one CPU thread, as Brian2 does by default (the fair comparison); ``--threads
1 2`` adds runs with more threads (the C++ kernel runs trials in parallel), reported apart.
Its paths (``--kernels``): ``default`` (``model.run(duration)`` with no flags at all:
``kernel="auto"``, i.e. the C++ kernel with its own noise where it compiles, and the
engine's own thread choice), ``eager`` (tensor operations, also on CUDA), ``cpp`` (the C++
CPU kernel, noise from ``torch.randn``: bitwise the eager run) and ``cpp_xoshiro`` (the C++
kernel drawing the noise itself: same statistics, other numbers); the kernel's one-off
compilation is reported apart, like Brian2's.

Usage::

    python benchmarks/bench_neurosim.py            # all cases (minutes; 10k dense is big)
    python benchmarks/bench_neurosim.py --quick    # N = 1,000 only
    python benchmarks/bench_neurosim.py --no-standalone --device cuda
    python benchmarks/bench_neurosim.py --kernels cpp cpp_xoshiro --threads 1 2

Writes ``benchmarks/results/bench_neurosim_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from neurosim.network import izhikevich_2003
from neurosim.reservoir import Reservoir

RESULTS = Path(__file__).resolve().parent / "results"


def _cases(quick: bool) -> list[dict]:
    cases = [{"name": "izh2003_N1k", "kind": "2003", "n": 1000, "batches": (1, 32)}]
    if not quick:
        cases += [
            {"name": "izh2003_N10k", "kind": "2003", "n": 10_000, "batches": (1, 32)},
            {"name": "reservoir_N100k_K100", "kind": "reservoir", "n": 100_000,
             "batches": (1,)},
        ]
    return cases


def _model(case: dict):
    if case["kind"] == "2003":
        n = case["n"]
        return izhikevich_2003(n_exc=int(0.8 * n), n_inh=n - int(0.8 * n), seed=0)
    return Reservoir(n=case["n"], p_connect=100 / case["n"], seed=0).build().model_


KERNELS = {"default": {}, "eager": dict(kernel="eager"),
           "cpp": dict(kernel="cpp", noise_rng="torch"),
           "cpp_xoshiro": dict(kernel="cpp", noise_rng="xoshiro")}


def _time_torch(model, batch: int, device: str, threads: int, duration_ms: float,
                kernels: list[str], repeats: int = 1) -> list[dict]:
    """Best of ``repeats`` runs per path; the paths take turns in each repeat, so that a
    busy spell of a shared machine does not fall on one path only."""
    kws = {}
    for kernel in kernels:
        kw = dict(batch=batch, device=device, **KERNELS[kernel])
        if kernel != "default":  # the default run passes no flags (the engine picks threads)
            kw["num_threads"] = threads
        model.run(20.0, **kw)  # warm-up
        kws[kernel] = kw
    walls: dict[str, list[float]] = {k: [] for k in kernels}
    recs = {}
    for _ in range(repeats):
        for kernel, kw in kws.items():
            recs[kernel] = model.run(duration_ms, seed=1, **kw)
            walls[kernel].append(recs[kernel].info["wall_s"])
    out = []
    for kernel in kernels:
        rec, wall = recs[kernel], min(walls[kernel])
        out.append({"engine": "torch", "kernel": kernel, "ran": rec.info["kernel"],
                    "noise_rng": rec.info["noise_rng"], "device": rec.info["device"],
                    "batch": batch, "threads": rec.info["threads"], "wall_s": wall,
                    "walls_s": walls[kernel], "per_trial_s": wall / batch, "spikes": len(rec),
                    "exc_rate_hz": float(rec.rates_hz("trial", model.exc).mean())})
    return out


def _time_brian2(model, mode: str, duration_ms: float) -> dict:
    out: dict = {"engine": "brian2", "mode": mode}
    if mode == "cpp_standalone":
        with tempfile.TemporaryDirectory() as build:
            t0 = time.perf_counter()
            rec = model.run(duration_ms, engine="brian2", device=mode, build_dir=build)
            out["wall_s"] = time.perf_counter() - t0
        out["run_s"] = rec.info["run_s"]
        out["build_s"] = out["wall_s"] - out["run_s"]
    else:
        # first run generates and compiles the code objects (cached on disk), second reuses
        t0 = time.perf_counter()
        model.run(duration_ms, engine="brian2", device=mode)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = model.run(duration_ms, engine="brian2", device=mode)
        out["wall_s"] = time.perf_counter() - t0
        out["run_s"] = rec.info["run_s"]
        out["build_s"] = max(first - out["wall_s"], 0.0)
        out["codegen_target"] = rec.info.get("codegen_target")
    out["spikes"] = len(rec)
    out["exc_rate_hz"] = float(rec.rates_hz("trial", model.exc).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1,000 cases only")
    ap.add_argument("--device", default="auto", help="torch device (auto, cpu, cuda)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1],
                    help="torch CPU threads (one run per value; 1 is the fair comparison)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="torch runs per case (the best is kept); Brian2 runs once")
    ap.add_argument("--duration-ms", type=float, default=1000.0)
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--no-standalone", action="store_true", help="skip cpp_standalone")
    ap.add_argument("--kernels", nargs="*", default=list(KERNELS),
                    help=f"torch paths to time, among {list(KERNELS)}")
    ap.add_argument("--cases", nargs="*", default=None,
                    help="case names to run (izh2003_N1k, izh2003_N10k, reservoir_N100k_K100)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path")
    args = ap.parse_args(argv)

    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0], "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "duration_ms": args.duration_ms, "cases": [],
    }
    if not args.no_brian2:
        import brian2

        results["machine"]["brian2"] = brian2.__version__
    unknown = set(args.kernels) - set(KERNELS)
    if unknown:
        ap.error(f"--kernels: unknown {sorted(unknown)}; expected among {list(KERNELS)}")
    kernels = [k for k in args.kernels if k in ("default", "eager")]
    cpp = [k for k in args.kernels if k.startswith("cpp")]
    on_cpu = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu")).type == "cpu"
    if (cpp or "default" in kernels) and on_cpu:
        from neurosim.engines.torch_engine import load_kernel

        t0 = time.perf_counter()
        load_kernel()
        results["torch_cpp_kernel_build_s"] = time.perf_counter() - t0
        print(f"torch C++ kernel: built or loaded in {results['torch_cpp_kernel_build_s']:.1f} s")
        kernels += cpp
    modes = [] if args.no_brian2 else ["runtime"] + ([] if args.no_standalone
                                                     else ["cpp_standalone"])
    for case in _cases(args.quick):
        if args.cases and case["name"] not in args.cases:
            continue
        t0 = time.perf_counter()
        model = _model(case)
        row = {"case": case["name"], "n_neurons": model.n_neurons,
               "n_synapses": model.n_synapses, "build_model_s": time.perf_counter() - t0,
               "torch": [], "brian2": []}
        for b in case["batches"]:
            for threads in args.threads:
                # no flags: one run, whatever --threads lists
                ks = [k for k in kernels if k != "default" or threads == args.threads[0]]
                for r in _time_torch(model, b, args.device, threads, args.duration_ms, ks,
                                     args.repeats):
                    row["torch"].append(r)
                    print(f"{case['name']:>22} torch {r['kernel']:>11} batch {b:>2} threads "
                          f"{r['threads']}: {r['wall_s']:8.3f} s ({r['per_trial_s']:.4f} "
                          f"s/trial, exc {r['exc_rate_hz']:.2f} Hz)", flush=True)
        for mode in modes:
            try:
                r = _time_brian2(model, mode, args.duration_ms)
            except Exception as err:  # noqa: BLE001 - a failed peer is reported, not fatal
                r = {"engine": "brian2", "mode": mode, "error": repr(err)}
                print(f"{case['name']:>22} brian2 {mode}: failed: {err!r}", flush=True)
            else:
                print(f"{case['name']:>22} brian2 {mode:>14}: run {r['run_s']:8.3f} s, build "
                      f"{r['build_s']:6.1f} s (exc {r['exc_rate_hz']:.2f} Hz)", flush=True)
            row["brian2"].append(r)
        runs = [r["run_s"] for r in row["brian2"] if "run_s" in r]
        if runs:
            best = min(runs)
            row["brian2_best_run_s"] = best
            row["ratio_brian2_over_torch"] = {
                f"batch{r['batch']}_{r['kernel']}_threads{r['threads']}_per_trial":
                    best / r["per_trial_s"]
                for r in row["torch"]
            }
            for key, val in row["ratio_brian2_over_torch"].items():
                print(f"{case['name']:>22} Brian2 / torch, {key}: {val:7.2f}x", flush=True)
        results["cases"].append(row)
        del model

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"bench_neurosim_{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
