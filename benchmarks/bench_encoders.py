"""In-context inference of BraInCoRL for a whole subject vs fitting per-voxel ridge.

A 4,000-voxel subject, 100 context images with 128-d unit-norm features (the default
``stimnet`` size): BraInCoRL writes every voxel's weights in batched forward passes (no
gradient step, no Python loop over voxels); ridge (himalaya RidgeCV, 17 alphas, 5 folds)
fits the same data. Inference time does not depend on the weights, so the transformer is
freshly initialised at the default size. Target: inference under 10 s on a 2-core CPU.

Run: ``.venv/bin/python benchmarks/bench_encoders.py [--voxels 4000] [--context 100]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from decoding.encoders.braincorl import BraInCoRL, MetaTask
from decoding.encoders.ridge import RidgeEncoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voxels", type=int, default=4000)
    ap.add_argument("--context", type=int, default=100)
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.context, args.features)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = (X @ rng.standard_normal((args.features, args.voxels))
         + rng.standard_normal((args.context, args.voxels))).astype(np.float32)  # fmt: skip

    model = BraInCoRL(n_steps=0, verbose=False).meta_fit(MetaTask(X, Y[:, :10]))
    model.fit(X[:10], Y[:10, :10])  # warm-up (first-call allocations)
    t0 = time.perf_counter()
    model.fit(X, Y)
    t_icl = time.perf_counter() - t0

    t0 = time.perf_counter()
    RidgeEncoder().fit(X, Y)
    t_ridge = time.perf_counter() - t0

    print(f"{args.voxels} voxels, {args.context} context images, {args.features} features, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"BraInCoRL in-context inference: {t_icl:8.2f} s (target < 10 s)")
    print(f"ridge (himalaya RidgeCV) fit:   {t_ridge:8.2f} s")
    print(f"ratio ridge / BraInCoRL:        {t_ridge / t_icl:8.2f}")


if __name__ == "__main__":
    main()
