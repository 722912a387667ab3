"""MindBridge speed: training, reset-tuning, decoding and reconstruction throughput.

On the job's cross-subject simulation (5 subjects, 300 shared test images, ~2,000 training
trials each): one epoch of the 4-subject fit (timed, then extrapolated to the full config's
epochs), one reset-tuning of the 5th subject at 500 images, embedding decoding (samples/s),
and reconstructions through the shipped generator (images/s at the config's 20 denoising
steps) when the package ships one. The peer is a per-subject ridge decoder from voxels to the
same embedding (scikit-learn ``RidgeCV``, as Takagi & Nishimoto / Brain-Diffuser map fMRI to
their latents), timed and scored in the same run.

    .venv/bin/python benchmarks/bench_mindbridge.py [--epochs 2] [--recon 64] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed (then extrapolated)")
    ap.add_argument("--full-epochs", type=int, default=40, help="the full config's epochs")
    ap.add_argument("--pool", type=int, default=2048, help="pool_size (the full config's)")
    ap.add_argument("--recon", type=int, default=64, help="images reconstructed")
    ap.add_argument("--steps", type=int, default=20, help="denoising steps")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from sklearn.linear_model import RidgeCV

    from decoding.decoders.mindbridge import MindBridge
    from decoding.jobs.mindbridge import (
        MindBridgeParams,
        _load,
        _subset,
        _targets,
        embedding_scores,
    )

    class _Run:  # what the job's data helpers read from a run
        seed, verbose, data_dir = 0, False, None

    from data_loaders.cache import data_home

    _Run.data_dir = data_home()
    params = MindBridgeParams()
    t0 = time.perf_counter()
    raw = _load(params, _Run)
    targets = _targets(params, _Run, raw.stimuli)
    print(f"data + targets: {time.perf_counter() - t0:.1f} s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    train, test = raw.split("shared")
    test = test.average_repeats()
    sources = ["subj01", "subj02", "subj03", "subj04"]

    def score(pred_fn, s):
        rows = targets.rows(test.subjects[s].stim_ids)
        return embedding_scores(pred_fn(s), targets.image[rows],
                                targets.text[rows] if targets.text is not None else None)

    t0 = time.perf_counter()
    model = MindBridge(n_epochs=args.epochs, pool_size=args.pool, verbose=False)
    model.fit(train.select(sources), targets)
    t_fit = time.perf_counter() - t0
    steps = int(np.ceil(max(np.unique(train.subjects[s].stim_ids).size for s in sources) / 50))
    per_epoch = t_fit / args.epochs
    print(f"fit: {per_epoch:.1f} s per epoch ({steps} steps of 4 x 50 samples; "
          f"{steps * 200 / per_epoch:.0f} samples/s); {args.full_epochs} epochs -> "
          f"{per_epoch * args.full_epochs / 60:.1f} min; the full config's 6 such fits "
          f"(the model; 4 per-subject models, about one; 4 ablation models) -> "
          f"{6 * per_epoch * args.full_epochs / 60:.0f} min")

    t0 = time.perf_counter()
    own = np.random.default_rng(0).permutation(np.unique(train.subjects["subj05"].stim_ids))
    model.copy().reset_tune(_subset(train, "subj05", own[:500]), targets,
                            source=train.select(sources), n_epochs=args.epochs)
    t_tune = (time.perf_counter() - t0) / args.epochs
    print(f"reset-tune, 500 images: {t_tune:.2f} s per epoch")

    x = np.concatenate([test.subjects["subj01"].betas] * 10)
    t0 = time.perf_counter()
    model.predict_embeddings("subj01", x)
    print(f"decode embeddings: {len(x) / (time.perf_counter() - t0):.0f} samples/s")

    # the peer: one ridge per subject, voxels -> image embedding
    t0 = time.perf_counter()
    ridge_scores = []
    for s in sources:
        avg = train.select(s).average_repeats().subjects[s]
        r = RidgeCV(alphas=np.logspace(0, 5, 11)).fit(avg.betas, targets.image[
            targets.rows(avg.stim_ids)])
        ridge_scores.append(score(lambda s, r=r: {"image": r.predict(test.subjects[s].betas)}, s))
    t_ridge = time.perf_counter() - t0
    mb = [score(lambda s: model.predict_embeddings(s, test.subjects[s].betas), s)
          for s in sources]  # fmt: skip
    for name, rows in (("MindBridge", mb), ("ridge", ridge_scores)):
        print(f"{name:10s} image 2-way {np.mean([r['image_2way'] for r in rows]):.3f}, "
              f"image retrieval {np.mean([r['image_retrieval'] for r in rows]):.3f} "
              f"(chance {1 / len(test.stimuli):.4f})")
    print(f"ridge fit (4 subjects): {t_ridge:.1f} s; MindBridge {args.epochs} epochs: "
          f"{t_fit:.1f} s ({t_fit / t_ridge:.1f}x ridge)")

    try:
        from decoding.generation import default_pipeline

        pipe = default_pipeline()
    except (ImportError, FileNotFoundError) as err:
        print(f"reconstructions: no shipped generator ({err})")
        return
    n = min(args.recon, len(test.stimuli))
    betas = test.subjects["subj01"].betas[:n]
    model.reconstruct("subj01", betas[:2], pipeline=pipe, num_inference_steps=2)  # warm-up
    t0 = time.perf_counter()
    images = model.reconstruct("subj01", betas, pipeline=pipe, num_inference_steps=args.steps)
    dt = time.perf_counter() - t0
    print(f"reconstruct: {n / dt:.2f} images/s ({dt / n * 1e3:.0f} ms per image, "
          f"{args.steps} steps, {images.shape[1]}x{images.shape[2]} px)")


if __name__ == "__main__":
    main()
