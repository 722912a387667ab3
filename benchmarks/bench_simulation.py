"""Speed of the stimulus world and of the simulated cortex's true features.

    python benchmarks/bench_simulation.py [--n 10000]

1. Rendering: images per second for ``render_stimuli`` (the issue's goal: 10,000 images of
   64x64 in under a minute on 2 cores).
2. Gabor energy features: the batched FFT bank of ``gabor_energy_features`` against the
   peer implementation, ``skimage.filters.gabor`` (spatial convolution, one image and one
   filter at a time), on the same images and the same 3 scales x 4 orientations; printed
   as a ratio measured in this run.
3. The embedded default: simulating 4 subjects x 2 sessions (without writing).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images to render")
    parser.add_argument("--n-peer", type=int, default=20, help="images for the skimage peer")
    args = parser.parse_args()

    from skimage.filters import gabor

    from data_loaders.simulate import gabor_energy_features, render_stimuli, simulate_nsd
    from data_loaders.simulate.fmri import DEFAULT_PARAMS

    t0 = time.perf_counter()
    stim = render_stimuli(args.n, image_size=64, random_state=0)
    t_render = time.perf_counter() - t0
    print(f"render_stimuli: {args.n} images of 64x64 in {t_render:.1f} s "
          f"({args.n / t_render:.0f} images/s; goal: 10,000 in < 60 s)")  # fmt: skip

    imgs = stim.images[: args.n_peer]
    t0 = time.perf_counter()
    gabor_energy_features(imgs)
    t_ours = time.perf_counter() - t0
    lum = imgs.astype(np.float64) @ [0.299, 0.587, 0.114] / 255.0
    t0 = time.perf_counter()
    for im in lum:
        for k in range(3):
            f = (4.0 * 2**k) / 64.0  # cycles per pixel: 4, 8, 16 cycles per image
            for o in range(4):
                real, imag = gabor(im, frequency=f, theta=np.pi * o / 4)
                np.hypot(real, imag)
    t_peer = time.perf_counter() - t0
    print(f"gabor energy, {len(imgs)} images x 12 filters: ours {t_ours:.3f} s, "
          f"skimage.filters.gabor {t_peer:.3f} s -> {t_peer / t_ours:.1f}x faster")  # fmt: skip

    t0 = time.perf_counter()
    simulate_nsd(**DEFAULT_PARAMS, verbose=False)
    print(f"simulate_nsd(default: 4 subjects x 2 sessions): {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
