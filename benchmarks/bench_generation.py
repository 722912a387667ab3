"""Image generation speed at 64x64: latent vs pixel space, with and without guidance.

In one run: images/s of the shipped latent pipeline (16x16x4 latents plus the 4-channel
layout map, pure-conv ``UNet2DConditionModel`` (32, 64, 64), conv autoencoder decoder
included) with DPM-Solver++
and DDIM at 20 steps, with classifier-free guidance (two UNet passes per step) and without;
the same UNet design run directly on 64x64x3 pixels (random weights: speed does not
depend on them); a cross-attention variant of the latent UNet (the embeddings as 2 tokens);
the training seconds per batch-64 UNet step and per batch-32 autoencoder step; and the v1
design (no layout map) with guidance, as the peer: ``v2_over_v1_speed`` is their ratio.
Target (issues 11 and 19): at least 10 images/s with 20 steps and guidance at batch 64 on
the idle 2-core CPU, 1-2 threads.

Run: ``.venv/bin/python benchmarks/bench_generation.py [--batch 64] [--steps 20] [--threads 2]``
(the pixel-space run uses ``--pixel-batch 16``: its images/s hardly depends on the batch).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def _rate(fn, n_images: int, repeats: int, warm=None) -> float:
    (warm or fn)()  # warm-up (first-call allocations)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_images / best


def _pixel_rate(pipe, batch: int, steps: int, guided: bool) -> float:
    """The latent UNet's design run on 64x64x3 pixels (no autoencoder)."""
    from decoding.generation.diffusion import make_scheduler, make_unet

    unet = make_unet(pipe.conditioner.cond_dim, latent_channels=3, sample_size=64,
                     block_out_channels=tuple(pipe.unet.config.block_out_channels))  # fmt: skip
    sched = make_scheduler("dpmsolver++", pipe.scheduler.config)
    cond = torch.randn(batch, unet.config.projection_class_embeddings_input_dim)
    hidden = torch.zeros(batch * (2 if guided else 1), 1, unet.config.cross_attention_dim)

    @torch.no_grad()
    def run() -> None:
        sched.set_timesteps(steps)
        x = torch.randn(batch, 3, 64, 64)
        for t in sched.timesteps:
            if guided:
                out = unet(torch.cat([x, x]), t, encoder_hidden_states=hidden,
                           class_labels=torch.cat([cond, cond])).sample.chunk(2)[1]  # fmt: skip
            else:
                out = unet(x, t, encoder_hidden_states=hidden, class_labels=cond).sample
            x = sched.step(out, t, x).prev_sample

    return _rate(run, batch, 1, warm=lambda: None)


def _cross_attention_rate(pipe, batch: int, steps: int) -> float:
    """Latent UNet with cross-attention blocks reading the two embeddings as tokens (no
    layout map: the v1 design with attention)."""
    from diffusers import UNet2DConditionModel

    from decoding.generation.diffusion import make_scheduler

    cfg = pipe.unet.config
    unet = UNet2DConditionModel(
        sample_size=cfg.sample_size, in_channels=cfg.out_channels, out_channels=cfg.out_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        norm_num_groups=8, cross_attention_dim=64, attention_head_dim=8,
    )  # fmt: skip
    sched = make_scheduler("dpmsolver++", pipe.scheduler.config)
    tokens = torch.randn(2 * batch, 2, 64)

    @torch.no_grad()
    def run() -> None:
        sched.set_timesteps(steps)
        x = torch.randn(batch, cfg.out_channels, cfg.sample_size, cfg.sample_size)
        for t in sched.timesteps:
            out = unet(torch.cat([x, x]), t, encoder_hidden_states=tokens).sample.chunk(2)[1]
            x = sched.step(out, t, x).prev_sample
        pipe.vae.decode(x)

    return _rate(run, batch, 1, warm=lambda: None)


def _v1_pipeline(pipe):
    """The shipped pipeline's design without the layout map (the v1 generator)."""
    from decoding.generation import EmbeddingConditioner, StimulusDiffusionPipeline, make_unet

    torch.manual_seed(0)
    cond = EmbeddingConditioner(pipe.image_embed_dim, pipe.text_embed_dim)
    unet = make_unet(cond.cond_dim, block_out_channels=tuple(pipe.unet.config.block_out_channels),
                     layers_per_block=pipe.unet.config.layers_per_block)  # fmt: skip
    v1 = StimulusDiffusionPipeline(vae=pipe.vae, unet=unet.eval(), scheduler=pipe.scheduler,
                                   conditioner=cond.eval())  # fmt: skip
    v1.set_progress_bar_config(disable=True)
    return v1


def _train_step_seconds(pipe, batch: int, repeats: int = 3) -> dict[str, float]:
    from decoding.generation.diffusion import training_scheduler
    from decoding.generation.training import DiffusionLoss, autoencoder_loss

    loss = DiffusionLoss(training_scheduler())
    parts = torch.nn.ModuleDict({"unet": pipe.unet, "conditioner": pipe.conditioner}).train()
    lat = torch.randn(batch, 4, 16, 16)
    img = torch.randn(batch, pipe.image_embed_dim)
    txt = torch.randn(batch, pipe.text_embed_dim)
    opt = torch.optim.AdamW(parts.parameters(), lr=0.0)  # lr 0: the weights stay as shipped
    out = {}
    for name, fn in (
        ("unet_step_s", lambda: loss(parts, (lat, img, txt), torch.Generator().manual_seed(0))),
        ("autoencoder_step_s", lambda: autoencoder_loss(
            torch.nn.ModuleDict({"vae": pipe.vae}), (torch.rand(32, 3, 64, 64) * 2 - 1,), None)),
    ):  # fmt: skip
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            value = fn()
            opt.zero_grad()
            value.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        out[name] = float(min(times[1:]))
    parts.eval()
    pipe.vae.eval()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1, help="timed calls (best of)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--pixel-batch", type=int, default=16,
                    help="batch of the (slow) pixel-space run; 0 skips it")
    ap.add_argument("--json", type=str, default=None, help="also write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from decoding.generation import default_pipeline

    pipe = default_pipeline()
    rng = np.random.default_rng(0)
    img = rng.normal(size=(args.batch, pipe.image_embed_dim)).astype(np.float32)
    txt = rng.normal(size=(args.batch, pipe.text_embed_dim)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    res: dict[str, float] = {}
    for sched in ("dpmsolver++", "ddim"):
        pipe.set_scheduler(sched)
        for g in (1.0, 3.0):
            def call(g=g, steps=args.steps):
                pipe(img, txt, num_inference_steps=steps, guidance_scale=g, generator=0)

            key = f"latent_{sched}_{'guided' if g != 1 else 'unguided'}_img_per_s"
            res[key] = _rate(call, args.batch, args.repeats, warm=lambda g=g: call(g, 2))
            print(f"{key:45s} {res[key]:7.2f}", flush=True)
    pipe.set_scheduler("dpmsolver++")
    # the v1 design (no layout map: the UNet reads the 4 latent channels only), same widths,
    # random weights (speed does not depend on them): the generator the v2 one replaced
    v1 = _v1_pipeline(pipe)

    def call_v1(steps=args.steps):
        v1(img, txt, num_inference_steps=steps, guidance_scale=3.0, generator=0)

    res["v1_latent_dpmsolver++_guided_img_per_s"] = _rate(call_v1, args.batch, args.repeats,
                                                          warm=lambda: call_v1(2))  # fmt: skip
    res["v2_over_v1_speed"] = (res["latent_dpmsolver++_guided_img_per_s"]
                               / res["v1_latent_dpmsolver++_guided_img_per_s"])  # fmt: skip
    for key in ("v1_latent_dpmsolver++_guided_img_per_s", "v2_over_v1_speed"):
        print(f"{key:45s} {res[key]:7.2f}", flush=True)
    res["latent_crossattn_guided_img_per_s"] = _cross_attention_rate(pipe, args.batch, args.steps)
    print(f"{'latent_crossattn_guided_img_per_s':45s} "
          f"{res['latent_crossattn_guided_img_per_s']:7.2f}", flush=True)
    if args.pixel_batch:
        for guided in (False, True):
            key = f"pixel_{'guided' if guided else 'unguided'}_img_per_s"
            res[key] = _pixel_rate(pipe, args.pixel_batch, args.steps, guided)
            print(f"{key:45s} {res[key]:7.2f}", flush=True)
    res.update(_train_step_seconds(pipe, args.batch))
    for key in ("unet_step_s", "autoencoder_step_s"):
        print(f"{key:45s} {res[key]:7.3f}")
    res["threads"] = torch.get_num_threads()
    res["target_met_10_img_per_s"] = bool(res["latent_dpmsolver++_guided_img_per_s"] >= 10)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
