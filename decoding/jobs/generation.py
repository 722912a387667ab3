"""Job ``stimulus_diffusion``: the generation layer's upper bound, from TRUE embeddings.

Every decoder predicts embeddings and hands them to the generator; conditioning the
generator on the true embeddings of held-out images measures what the generator alone can
give, the ceiling every decoder's reconstruction table is read against (as MindEye2 reports
its unCLIP's reconstructions from ground-truth CLIP embeddings). The embeddings come from
the documented call, ``pipe.encode_conditioning(stimuli)``. Metrics (MindEye / MindBridge
recipe, :func:`decoding.evaluation.image_eval.reconstruction_metrics`): PixCorr, SSIM,
2-way identification at a low and a high layer of the referee (an independent ResNet), and
the main object's shape and colour as the referee reads them, judged against what it reads
on the true images. Baselines on the same metrics: the nearest training image by embedding
(retrieval), a ridge regression from embeddings to pixels (the blurry decoder) and the
generator's own layout map (its conditional mean). Figures: true vs generated (3 seeds),
the referee's confusion matrices on true vs generated images, guidance sweep,
``init_images`` strength (image-to-image from the blurry decoder's output), training
curves. Every row's images go to ``reconstructions.npz``
(:func:`decoding.evaluation.load_reconstructions`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from decoding.generation.pipeline import DEFAULT_PIPELINE_ID


class StimulusDiffusionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    train: bool = Field(True, description="train the generator (false: load the shipped one)")
    pipeline: str | None = Field(None, description="a local pipeline folder to evaluate")
    n_train_images: int = Field(50000, ge=16)
    n_val_images: int = Field(256, ge=4)
    n_ae_images: int = Field(30000, ge=16, description="images (with masks) of the autoencoder")
    ae_steps: int = Field(2500, ge=1)
    unet_steps: int = Field(13000, ge=1)
    ae_batch: int = Field(32, ge=1)
    unet_batch: int = Field(64, ge=1)
    ae_channels: list[int] = [32, 48, 64]
    unet_channels: list[int] = [32, 64, 64]
    layers_per_block: int = Field(1, ge=1)
    layout_channels: int = Field(4, ge=0, description="layout map channels (0: v1 design)")
    lr: float = Field(1e-3, gt=0)
    ema_decay: float | None = Field(0.999, ge=0, lt=1)
    vae: str | None = Field(None, description="reuse this autoencoder (or pipeline) folder")
    init: str | None = Field(
        None, description="warm-restart the UNet from this pipeline folder ('shipped': the "
        "shipped one), with a fresh learning-rate schedule over unet_steps"
    )
    eval_every: int = Field(1000, ge=0)
    n_eval: int = Field(96, ge=2)
    n_test: int = Field(200, ge=4, description="held-out images scored")
    n_retrieval_train: int = Field(4000, ge=8, description="images of the baselines")
    num_inference_steps: int = Field(20, ge=1)
    guidance_scale: float = Field(3.0, ge=0)
    scheduler: Literal["dpmsolver++", "ddim"] = "dpmsolver++"
    guidance_sweep: list[float] = [1.0, 2.0, 3.0, 5.0, 8.0]
    strengths: list[float] = [0.0, 0.3, 0.6, 0.85, 1.0]
    n_samples: int = Field(4, ge=1, description="samples per embedding (best-of-N)")


def _claim(run, name: str, claim: str, value: str, verdict: str, figure: str | None = None):
    add = getattr(run, "add_claim", None)
    if add is not None:
        add(name, claim, value, verdict, figure=figure)
    else:  # until the run object has add_claim
        run.add_text(f"claim: {name}", f"{claim} - measured {value}: {verdict}")


def _grid(rows: list[np.ndarray], labels: list[str], title: str,
          col_titles: list[str] | None = None):
    import matplotlib.pyplot as plt

    n_col = len(rows[0])
    fig, axes = plt.subplots(len(rows), n_col, figsize=(1.2 * n_col, 1.25 * len(rows)),
                             squeeze=False)  # fmt: skip
    for r, (ims, lab) in enumerate(zip(rows, labels)):
        for c in range(n_col):
            ax = axes[r, c]
            ax.imshow(ims[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(lab, fontsize=7)
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _confusions(attrs: dict, true_pred: dict, gen_pred: dict):
    """Row-normalised shape and colour confusion of the referee: true vs generated images."""
    import matplotlib.pyplot as plt

    from data_loaders.simulate.stimuli import COLOUR_NAMES, SHAPE_CLASSES
    from decoding.evaluation.metrics import confusion

    fig, axes = plt.subplots(2, 2, figsize=(7.2, 6.6))
    for i, (attr, names) in enumerate((("shape", SHAPE_CLASSES), ("colour", COLOUR_NAMES))):
        for j, (pred, who) in enumerate(((true_pred, "true images"),
                                         (gen_pred, "generated from true embeddings"))):
            c = confusion(attrs[attr], pred[attr], n_classes=len(names)).astype(float)
            c /= np.maximum(c.sum(1, keepdims=True), 1)
            ax = axes[i, j]
            ax.imshow(c, vmin=0, vmax=1, cmap="Blues")
            ax.set_xticks(range(len(names)), names, rotation=60, fontsize=6)
            ax.set_yticks(range(len(names)), names, fontsize=6)
            acc = float(np.mean(attrs[attr] == pred[attr]))
            ax.set_title(f"{attr}: {who}\naccuracy {acc:.2f}", fontsize=8)
            if j == 0:
                ax.set_ylabel("true class", fontsize=7)
            ax.set_xlabel("referee reads", fontsize=7)
    fig.tight_layout()
    return fig


def stimulus_diffusion(params: StimulusDiffusionParams, run) -> dict:
    import matplotlib.pyplot as plt
    import torch
    from sklearn.linear_model import RidgeCV

    from data_loaders.simulate.stimuli import COLOUR_NAMES, SHAPE_CLASSES, render_stimuli
    from decoding.evaluation.image_eval import get_evaluator, reconstruction_metrics
    from decoding.evaluation.reconstructions import save_reconstructions
    from decoding.features import WEIGHTS_DIR, get_extractor
    from decoding.generation import check_conditioning, default_pipeline, load_pipeline
    from decoding.generation.selection import select_samples
    from decoding.semantics import captions_from_attributes, get_text_encoder

    p = params
    torch.set_num_threads(1)  # small convolutions: one thread is fastest on shared cores
    metrics: dict = {}
    training = None
    if p.train:
        from decoding.generation.training import train_stimulus_diffusion

        folder = run.checkpoint_dir / "pipeline"
        res = train_stimulus_diffusion(
            folder, n_train_images=p.n_train_images, n_val_images=p.n_val_images,
            n_ae_images=p.n_ae_images, ae_steps=p.ae_steps, unet_steps=p.unet_steps,
            ae_batch=p.ae_batch,
            unet_batch=p.unet_batch, ae_channels=tuple(p.ae_channels),
            unet_channels=tuple(p.unet_channels), layers_per_block=p.layers_per_block,
            layout_channels=p.layout_channels, lr=p.lr, ema_decay=p.ema_decay, vae=p.vae,
            init=_init_folder(p.init), eval_every=p.eval_every, n_eval=p.n_eval, seed=run.seed,
            checkpoint_dir=run.checkpoint_dir / "training", progress=run.verbose,
            log=run.log,
        )  # fmt: skip
        training = {k: res[k] for k in ("ae_history", "unet_history", "ae_psnr", "ae_ssim",
                                        "ae_shape_accuracy", "monitor_evaluator",
                                        "seconds")}  # fmt: skip
        (folder / "training.json").write_text(json.dumps(training, indent=1))
        pipe = res["pipeline"]
        source = f"trained in this run ({sum(res['seconds'].values()) / 60:.1f} min)"
    elif p.pipeline is not None:
        folder = Path(p.pipeline)
        pipe = load_pipeline(folder)
        source = f"loaded from {folder}"
    else:
        folder = WEIGHTS_DIR / DEFAULT_PIPELINE_ID
        pipe = default_pipeline()
        source = f"the shipped pipeline ({DEFAULT_PIPELINE_ID})"
    if training is None and (folder / "training.json").is_file():
        training = json.loads((folder / "training.json").read_text())
    pipe.set_progress_bar_config(disable=True)
    pipe.set_scheduler(p.scheduler)
    run.log(f"generator: {source}")

    # ---- held-out images and their TRUE embeddings -----------------------------------
    fx = get_extractor("stimnet", data_home=run.data_dir, verbose=run.verbose)
    tx = get_text_encoder("stimtext", data_home=run.data_dir, verbose=run.verbose)
    check_conditioning(pipe, fx.dim, tx.dim, fx.identifier, tx.identifier)
    test = render_stimuli(p.n_test, image_size=64, random_state=run.seed + 5077)
    ref = render_stimuli(p.n_retrieval_train, image_size=64, random_state=run.seed + 5081)
    cond = pipe.encode_conditioning(test, data_home=run.data_dir)  # the documented call
    E_img, E_txt = cond.image_embeds, cond.text_embeds
    R_img, R_txt = fx.transform(ref.images), tx.encode(captions_from_attributes(ref))
    attrs = {"shape": test.attributes["shape"], "colour": test.attributes["colour"]}
    ev = get_evaluator()
    true_pred = ev.predict_attributes(test.images)
    ref_shape = float(np.mean(true_pred["shape"] == attrs["shape"]))
    ref_colour = float(np.mean(true_pred["colour"] == attrs["colour"]))
    metrics["evaluator"] = ev.identifier
    metrics["evaluator_shape_accuracy_true"] = ref_shape
    metrics["evaluator_colour_accuracy_true"] = ref_colour

    def gen(g=p.guidance_scale, k=1, seed=run.seed, **kw):
        return pipe(E_img, E_txt, num_inference_steps=p.num_inference_steps, guidance_scale=g,
                    generator=seed, num_images_per_prompt=k, **kw).images  # fmt: skip

    t0 = time.perf_counter()
    samples = gen(k=p.n_samples)
    t_gen = time.perf_counter() - t0
    speed = len(samples) / t_gen
    k = p.n_samples
    first = samples.reshape(p.n_test, k, 64, 64, 3)[:, 0]
    sel = select_samples(samples, E_img, extractor=fx)
    # the oracle some public code uses: the sample closest to the TRUE image in the space the
    # metric is computed in (MindBridge picks by CLIP and reports CLIP 2-way); here the
    # evaluator's high layer. With true embeddings, agreement with the (true) stimnet
    # embedding is a fair brain-derived stand-in; the oracle is shown only to measure inflation.
    hs = ev.high(samples).reshape(p.n_test, k, -1)
    ht = ev.high(test.images)
    zs = (hs - hs.mean(-1, keepdims=True)) / (hs.std(-1, keepdims=True) + 1e-12)
    zt = (ht - ht.mean(-1, keepdims=True)) / (ht.std(-1, keepdims=True) + 1e-12)
    oracle_idx = np.einsum("nkd,nd->nk", zs, zt).argmax(1)
    oracle = samples.reshape(p.n_test, k, 64, 64, 3)[np.arange(p.n_test), oracle_idx]
    metrics["selection_agrees_with_oracle"] = float(np.mean(oracle_idx == sel.index))

    # ---- baselines -------------------------------------------------------------------
    sim = E_img @ R_img.T
    retrieval = ref.images[sim.argmax(1)]
    X_ref, X_test = np.hstack([R_img, R_txt]), np.hstack([E_img, E_txt])
    ridge = RidgeCV(alphas=np.logspace(-2, 3, 6)).fit(X_ref, ref.images.reshape(len(ref.images),
                                                                               -1) / 255.0)
    blurry = np.clip(ridge.predict(X_test), 0, 1).reshape(test.images.shape).astype(np.float32)

    # key (reconstructions.npz row, metric prefix) -> (table label, images)
    rows = {
        "generated": ("generated (1 sample)", first),
        "selected": (f"best of {k}, brain-derived choice", sel.images),
        "oracle": (f"best of {k}, ORACLE choice (not a result)", oracle),
        "retrieval": ("retrieval (nearest training image)", retrieval),
        "regression": ("regression (embedding -> pixels)", blurry),
    }
    if pipe.conditioner.layout_channels:
        rows["layout"] = ("layout map (the generator's conditional mean)",
                          pipe.layout_images(E_img, E_txt))  # fmt: skip
    table, by_key = [], {}
    for key, (label, ims) in rows.items():
        m = reconstruction_metrics(ims, test.images, attrs, evaluator=ev)
        by_key[key] = {name: round(v, 4) for name, v in m.items()}
        table.append({"method": label, **by_key[key]})
        for mk, mv in by_key[key].items():
            metrics[f"{key}_{mk}"] = mv
    run.add_table("upper_bound", table, caption=(
        f"From TRUE embeddings of {p.n_test} held-out images ({p.num_inference_steps} "
        f"{p.scheduler} steps, guidance {p.guidance_scale}). 2-way: chance 0.5; shape / colour "
        f"accuracy: chance 0.125, read by the referee ({ev.identifier}), which reads the TRUE "
        f"images at {ref_shape:.3f} / {ref_colour:.3f}. The oracle row picks the sample "
        "closest to the true image in the referee's high-level space, as some public "
        "decoding code picks by CLIP: it is shown only to measure the inflation."))  # fmt: skip
    metrics["images_per_second"] = speed
    metrics["generator"] = source
    save_reconstructions(run.out_dir / "reconstructions.npz", test.images, test.ids,
                         {key: ims for key, (_, ims) in rows.items()})  # fmt: skip

    # ---- figures ---------------------------------------------------------------------
    n_show = min(10, p.n_test)
    by_emb = samples.reshape(p.n_test, k, 64, 64, 3)
    grid_rows = [test.images[:n_show]] + [by_emb[:n_show, j] for j in range(min(3, k))]
    labels = ["true"] + [f"seed {j}" for j in range(min(3, k))]
    if "layout" in rows:
        grid_rows.append(rows["layout"][1][:n_show])
        labels.append("layout (mean)")
    grid_rows += [retrieval[:n_show], blurry[:n_show]]
    labels += ["retrieval", "regression"]
    names = [f"{COLOUR_NAMES[c]}\n{SHAPE_CLASSES[s]}"
             for s, c in zip(attrs["shape"][:n_show], attrs["colour"][:n_show])]  # fmt: skip
    run.add_figure(_grid(grid_rows, labels, "true images vs generated from true embeddings",
                         col_titles=names), "true_vs_generated", caption=(
        "Columns: held-out images (their main object named above). Rows: the image, samples "
        "from its true embeddings (3 seeds), the generator's layout map (its conditional "
        "mean), the two baselines."))  # fmt: skip
    gen_pred = ev.predict_attributes(first)
    run.add_figure(_confusions(attrs, true_pred, gen_pred), "referee_confusion", caption=(
        f"The referee ({ev.identifier}) on the true held-out images (left) and on the images "
        "generated from their true embeddings (right): rows the true class, columns what the "
        "referee reads, each row sums to 1."))  # fmt: skip

    sweep = []
    for g in p.guidance_sweep:
        ims = first if g == p.guidance_scale else gen(g=g)
        m = reconstruction_metrics(ims, test.images, attrs, evaluator=ev)
        sweep.append({"guidance": g, **{key: round(v, 4) for key, v in m.items()}})
    run.add_table("guidance_sweep", sweep)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key in ("shape_accuracy", "colour_accuracy", "two_way_high", "pixcorr"):
        ax.plot([r["guidance"] for r in sweep], [r[key] for r in sweep], "o-", label=key)
    ax.set_xlabel("guidance scale")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("classifier-free guidance sweep (true embeddings)", fontsize=9)
    fig.tight_layout()
    run.add_figure(fig, "guidance_sweep", caption="Per-attribute fidelity vs guidance.")

    strength_rows, strength_ims = [], []
    for s in p.strengths:
        ims = gen(init_images=blurry, strength=s)
        strength_ims.append(ims[:n_show])
        m = reconstruction_metrics(ims, test.images, attrs, evaluator=ev)
        strength_rows.append({"strength": s, **{key: round(v, 4) for key, v in m.items()}})
    base = reconstruction_metrics(first, test.images, attrs, evaluator=ev)
    strength_rows.append({"strength": "no init", **{key: round(v, 4) for key, v in base.items()}})
    run.add_table("init_strength", strength_rows, caption=(
        "Image-to-image from the regression baseline's blurry images (low-level guidance, as "
        "MindEye and MindBridge do) at each strength."))  # fmt: skip
    run.add_figure(_grid([test.images[:n_show], blurry[:n_show], *strength_ims],
                         ["true", "init (blurry)", *[f"strength {s}" for s in p.strengths]],
                         "init_images strength"), "init_strength",
                   caption="Image-to-image from the blurry decoder's output.")  # fmt: skip

    if training and training.get("unet_history"):
        h = training["unet_history"]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
        a1.plot([r["step"] for r in h], [r["loss"] for r in h], "o-")
        a1.set_xlabel("UNet step")
        a1.set_ylabel("loss (v-pred., Min-SNR-5, + layout MSE)")
        acc = [r for r in h if "shape_accuracy" in r]
        for key in ("shape_accuracy", "colour_accuracy"):
            a2.plot([r["step"] for r in acc], [r[key] for r in acc], "o-", label=key)
        a2.axhline(0.125, color="grey", ls=":", label="chance")
        a2.set_xlabel("UNet step")
        a2.set_ylim(0, 1)
        a2.legend(fontsize=7)
        fig.tight_layout()
        monitor = training.get("monitor_evaluator", "the evaluator of this report")
        run.add_figure(fig, "training", caption=(
            "Training: loss and the shape / colour accuracy of images generated (10 "
            "DPM-Solver++ steps, guidance 3) from true embeddings of validation images, read "
            f"by {monitor}."))
        metrics["autoencoder_psnr"] = training["ae_psnr"]
        metrics["autoencoder_ssim"] = training["ae_ssim"]
        metrics["training_minutes"] = sum(training["seconds"].values()) / 60
    run.add_metrics(metrics)

    # ---- claims ----------------------------------------------------------------------
    g, r, rt = by_key["generated"], by_key["regression"], by_key["retrieval"]
    _claim(run, "referee_sees", "The referee reads the main object of held-out TRUE images: "
           "shape >= 0.97, colour >= 0.98", f"shape {ref_shape:.3f}, colour {ref_colour:.3f}",
           "holds" if ref_shape >= 0.97 and ref_colour >= 0.98 else (
               "weaker" if ref_shape >= 0.8 else "does not hold"),
           "referee_confusion")  # fmt: skip
    for attr, frac, ref_acc in (("shape", 0.85, ref_shape), ("colour", 0.9, ref_colour)):
        acc = g[f"{attr}_accuracy"]
        floor = max(r[f"{attr}_accuracy"], rt[f"{attr}_accuracy"])
        _claim(run, f"{attr}_kept", f"From true embeddings the generated images keep the "
               f"{attr} (>= {frac} x the referee on true images), above retrieval and "
               "regression", f"{acc:.2f} vs {frac} x {ref_acc:.2f} = {frac * ref_acc:.2f}; "
               f"retrieval {rt[f'{attr}_accuracy']:.2f}, regression {r[f'{attr}_accuracy']:.2f}",
               "holds" if acc >= frac * ref_acc and acc > floor else (
                   "weaker" if acc > floor else "does not hold"),
               "true_vs_generated")  # fmt: skip
    _claim(run, "two_way_high", "High-level 2-way identification from true embeddings >= 0.95",
           f"{g['two_way_high']:.3f}",
           "holds" if g["two_way_high"] >= 0.95 else (
               "weaker" if g["two_way_high"] > 0.8 else "does not hold"))  # fmt: skip
    o, s = by_key["oracle"], by_key["selected"]
    _claim(run, "oracle_inflation", "Picking the best of N samples with the TRUE image (an "
           "oracle, as in some public decoding code) inflates the metrics over a brain-derived "
           "choice", f"2-way high {o['two_way_high']:.3f} (oracle) vs {s['two_way_high']:.3f}; "
           f"shape {o['shape_accuracy']:.2f} vs {s['shape_accuracy']:.2f}",
           "holds" if o["two_way_high"] > s["two_way_high"] else "does not hold")  # fmt: skip
    best = max((row for row in strength_rows if row["strength"] != "no init"),
               key=lambda row: row["pixcorr"], default=None)  # fmt: skip
    if best is not None:
        _claim(run, "low_level_guidance", "Starting from a blurry low-level reconstruction "
               "(init_images) raises PixCorr over generating from noise (MindEye)",
               f"PixCorr {best['pixcorr']:.3f} at strength {best['strength']} vs "
               f"{base['pixcorr']:.3f} without", "holds" if best["pixcorr"] > base["pixcorr"]
               else "does not hold", "init_strength")  # fmt: skip
    _claim(run, "speed", f"At least 10 images/s at 64x64, {p.num_inference_steps} steps with "
           "guidance on this CPU (target set for an idle machine)", f"{speed:.1f} images/s "
           f"(batch {len(samples)}, {torch.get_num_threads()} thread, load at run time "
           "uncontrolled)", "holds" if speed >= 10 else "weaker")  # fmt: skip
    return metrics


def _init_folder(init: str | None):
    """The pipeline folder a warm restart starts from ('shipped': the package's weights)."""
    if init != "shipped":
        return init
    from decoding.features import WEIGHTS_DIR
    from decoding.generation import DEFAULT_PIPELINE_ID

    return WEIGHTS_DIR / DEFAULT_PIPELINE_ID
