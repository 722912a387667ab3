"""Reading one NSD session: ``load_nsd``'s blockwise reader against the usual whole-file read.

The peers (brain-diffuser ``prepare_nsddata.py``, MindEye's dataset scripts) read a session
with ``nib.load(path).get_fdata()`` (or ``h5py`` ``f["betas"][()]``) and then mask it; that
holds the whole 81 x 104 x 83 x 750 session in memory, as float64 for ``get_fdata`` (4.2 GB
for subj01). ``data_loaders.nsd`` reads the ROI's bounding box a block at a time.

One synthetic session is written on subj01's 1.8 mm grid (81 x 104 x 83), int16 psc*300, as
``.nii.gz`` (gzip level 1, as nibabel writes) and as NSD's voxel-chunked ``.hdf5``; an
nsdgeneral-like ROI selects a posterior block of the brain. Peers: ``nib.load().get_fdata()``
then the mask (nii.gz); ``f["betas"][()]`` then the mask, and h5py slicing of the ROI's
bounding box then the mask (hdf5). Printed per reader: wall time and tracemalloc peak, and
the ratios (peer / ours). ``load_nsd``'s .nii.gz path inflates the file in one pass (with
ISA-L when ``isal`` is installed: ``pip install 'neurosuite[fast]'``).

Usage::

    python benchmarks/bench_nsd_read.py              # a full NSD session: 750 trials (~6 GB)
    python benchmarks/bench_nsd_read.py --trials 150 # shorter
    python benchmarks/bench_nsd_read.py --formats nii.gz  # NIfTI only (minutes less)

Writes ``benchmarks/results/bench_nsd_read_<time>.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from data_loaders.nsd import BETA_SCALE, _SessionReader

RESULTS = Path(__file__).resolve().parent / "results"
GRID = (81, 104, 83)  # subj01 func1pt8mm


def _write_session(folder: Path, n_trials: int, seed: int = 0, hdf5: bool = True):
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.meshgrid(*[np.linspace(-1, 1, n) for n in GRID], indexing="ij")
    brain = (ii**2 + jj**2 + kk**2) < 0.8
    roi = brain & (jj < -0.2)  # posterior third of the brain, nsdgeneral-like
    vol = np.zeros((*GRID, n_trials), np.int16)
    vol[brain] = rng.integers(-600, 600, (int(brain.sum()), n_trials), dtype=np.int16)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), folder / "betas_session01.nii")
    try:  # gzip level 1 (nibabel's default level), with ISA-L when installed: same format
        from isal import igzip as gz
    except ImportError:
        gz = gzip
    with open(folder / "betas_session01.nii", "rb") as src, \
            gz.open(folder / "betas_session01.nii.gz", "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 2**24)
    (folder / "betas_session01.nii").unlink()
    if not hdf5:
        return roi
    with h5py.File(folder / "betas_session01.hdf5", "w") as f:
        f.create_dataset("betas", data=vol.transpose(3, 2, 1, 0), chunks=(n_trials, 1, 1, 1))
    return roi


def _h5_box(path: Path, roi: np.ndarray) -> np.ndarray:
    """h5py slicing of the ROI's bounding box, then the mask."""
    lo = [int(c.min()) for c in np.nonzero(roi)]
    hi = [int(c.max()) + 1 for c in np.nonzero(roi)]
    with h5py.File(path, "r") as f:
        box = f["betas"][:, lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]].transpose(3, 2, 1, 0)
    sub = roi[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    return (box[sub].T / BETA_SCALE).astype(np.float32)


def _peer(path: Path, roi: np.ndarray) -> np.ndarray:
    if path.suffix == ".hdf5":
        with h5py.File(path, "r") as f:
            data = f["betas"][()].transpose(3, 2, 1, 0)  # -> X, Y, Z, trials
        return (data[roi].T / BETA_SCALE).astype(np.float32)
    return (nib.load(path).get_fdata()[roi].T / BETA_SCALE).astype(np.float32)


def _ours(path: Path, roi: np.ndarray, n_trials: int) -> np.ndarray:
    xyz = np.nonzero(roi)
    out = np.empty((n_trials, xyz[0].size), np.float32)
    _SessionReader(path, xyz).read(out)
    return out


def _measure(fn, *args) -> tuple[float, int, np.ndarray]:
    t0 = time.perf_counter()
    out = fn(*args)
    wall = time.perf_counter() - t0
    tracemalloc.start()
    try:
        fn(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return wall, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=750, help="trials per session (NSD: 750)")
    ap.add_argument("--formats", nargs="+", default=["nii.gz", "hdf5"],
                    choices=["nii.gz", "hdf5"], help="file formats to compare")
    ap.add_argument("--zlib", action="store_true",
                    help="inflate with the standard zlib even if isal is installed")
    args = ap.parse_args()
    if args.zlib:
        import zlib

        import data_loaders.nsd

        data_loaders.nsd._zlib = lambda: zlib
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        roi = _write_session(folder, args.trials, hdf5="hdf5" in args.formats)
        print(f"grid {GRID} x {args.trials} trials, ROI {int(roi.sum())} voxels; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        for name, peer in (("betas_session01.nii.gz", _peer), ("betas_session01.hdf5", _peer),
                           ("betas_session01.hdf5 (box)", _h5_box)):
            if name.split()[0].split(".", 1)[1] not in args.formats:
                continue
            path = folder / name.split()[0]
            t_peer, m_peer, ref = _measure(peer, path, roi)
            t_ours, m_ours, got = _measure(_ours, path, roi, args.trials)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
            row = {
                "file": name, "peer_s": t_peer, "ours_s": t_ours, "peer_peak_mb": m_peer / 1e6,
                "ours_peak_mb": m_ours / 1e6, "speed_ratio": t_peer / t_ours,
                "memory_ratio": m_peer / m_ours,
            }  # fmt: skip
            rows.append(row)
            print(
                f"{name:27s} peer {t_peer:6.2f} s {m_peer / 1e6:8.1f} MB | ours {t_ours:6.2f} s "
                f"{m_ours / 1e6:8.1f} MB | speed x{row['speed_ratio']:.2f}, "
                f"memory x{row['memory_ratio']:.1f}", flush=True
            )
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"bench_nsd_read_{stamp}.json"
    meta = {"trials": args.trials, "zlib_only": args.zlib, "grid": GRID,
            "machine": platform.platform(), "load_avg_1m": os.getloadavg()[0],
            "cpus": os.cpu_count()}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
