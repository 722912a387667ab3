"""Brain3D's stage 2 on the CPU: field queries, meshes, guidance steps (the issue's budget).

Times, with the shipped occupancy decoder: a batch of 32 shapes x 1,024 points (one
training step's forward + backward), a 64^3 mesh by marching cubes on the field (the issue
measured about 1 s) against the same grid on the analytic SDF
(``data_loaders.simulate.stimuli.object_mesh``, the peer: numpy, no network), one guidance
step for 16 objects (16x16 renders, 16 samples per ray, two views) and a three-view render.

    .venv/bin/python benchmarks/bench_brain3d.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from data_loaders.simulate.stimuli import object_mesh
    from decoding.decoders.brain3d import guide_latents
    from decoding.generation.mesh import default_shape_decoder, field_mesh, render_views

    model = default_shape_decoder()
    pts = torch.rand(32, 1024, 3) * 2 - 1
    z = model.codes[torch.arange(32) % 8].detach()

    def step():
        model.zero_grad()
        model(pts, z).sum().backward()

    t_step = best(step, args.repeats)
    code = model.codes[4].detach().numpy()
    t_mesh = best(lambda: field_mesh(model, code, resolution=64), args.repeats)
    t_sdf = best(lambda: object_mesh(4, resolution=64), args.repeats)
    n = 16
    lat = {"z": model.codes[torch.arange(n) % 8].detach().numpy(),
           "rotation": np.broadcast_to(np.eye(3), (n, 3, 3)).copy(),
           "size": np.full(n, 0.2), "position": np.full((n, 2), 0.5),
           "rgb": np.full((n, 3), 0.5)}
    img = np.random.default_rng(0).random((n, 64, 64, 3)).astype(np.float32)
    t_guide = best(lambda: guide_latents(model, lat, img, n_steps=1), args.repeats)
    mesh = field_mesh(model, code, resolution=48)
    t_render = best(lambda: render_views(mesh), args.repeats)
    print(f"training step (32 x 1024 points, fwd+bwd): {t_step * 1e3:.0f} ms")
    print(f"64^3 mesh from the field: {t_mesh:.2f} s; from the analytic SDF: {t_sdf:.2f} s "
          f"(ratio {t_mesh / t_sdf:.1f}x)")
    print(f"one guidance step, {n} objects: {t_guide:.2f} s")
    print(f"three-view render of a 48^3 mesh ({mesh.n_faces} faces): {t_render:.2f} s")


if __name__ == "__main__":
    main()
