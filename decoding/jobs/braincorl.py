"""Job ``braincorl``: in-context voxelwise encoders for a new subject vs per-voxel ridge.

Reproduces the experiments of Yu et al. (2025, NeurIPS, "Meta-Learning an In-Context
Transformer Model of Human Higher Visual Cortex") on the simulated visual cortex (or on an
NSD root: same code): BraInCoRL is meta-trained on every subject but one; on the held-out
subject it reads ``n`` context images and their responses and is scored, with ridge fitted
on the same ``n`` images, by explained variance on the shared test images.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BraInCoRLParams", "braincorl", "images_to_match"]


class BraInCoRLParams(BaseModel):
    """Parameters of the ``braincorl`` job (``configs/encode/braincorl.yaml``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    nsd_root: str | None = Field(
        None, description="NSD root (real or simulated); None: the embedded simulated NSD"
    )
    simulate: dict[str, Any] | None = Field(
        None, description="simulate_nsd(...) arguments for an in-memory dataset (tests)"
    )
    subjects: list[int] = Field([1, 2, 3, 4], description="1-based subjects to load")
    held_out: int = Field(4, description="the new subject (never seen in meta-training)")
    image_size: int = Field(64, ge=8, description="images are read at this size (px)")
    features: dict[str, Any] = Field(
        default_factory=lambda: {"name": "stimnet"},
        description="decoding.features.get_extractor(**features)",
    )
    d_model: int = Field(64, ge=4)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(4, ge=1)
    ffn_dim: int = Field(128, ge=1)
    product_tokens: bool = Field(True, description="[x; y; y x] tokens (False: the paper's)")
    gd_readout: bool = Field(True, description="add the learnt one-step regression readout")
    n_steps: int = Field(1500, ge=0, description="meta-training steps on real voxels")
    n_synthetic_steps: int = Field(300, ge=0, description="pre-training steps, synthetic voxels")
    batch_size: int = Field(16, ge=1, description="voxels per meta-training step")
    lr: float = Field(2e-3, gt=0)
    min_context: int = Field(30, ge=2)
    max_context: int = Field(500, ge=2)
    pretrained: str | None = Field(None, description="a save_pretrained folder: skip meta-fit")
    context_sizes: list[int] = Field([25, 50, 100, 200, 500, 1000])
    n_repeats: int = Field(3, ge=1, description="random context sets per size")
    max_eval_voxels: int | None = Field(
        None, ge=10, description="score a random subset of the held-out voxels (speed)"
    )
    ridge_backend: str = "numpy"
    map_context: int = Field(100, ge=2, description="context size of the maps")


def images_to_match(sizes: np.ndarray, curve: np.ndarray, target: float) -> float:
    """Context size at which a (log-size) interpolated curve first reaches ``target``.

    Returns ``inf`` if it never does, the first size if it starts above.
    """
    sizes = np.asarray(sizes, dtype=float)
    curve = np.asarray(curve, dtype=float)
    if curve[0] >= target:
        return float(sizes[0])
    for i in range(1, len(sizes)):
        if curve[i] >= target:
            a, b = curve[i - 1], curve[i]
            t = (target - a) / (b - a) if b > a else 1.0
            return float(np.exp(np.log(sizes[i - 1]) + t * np.log(sizes[i] / sizes[i - 1])))
    return float("inf")


def _load(params: BraInCoRLParams, run) -> tuple[Any, Any, dict]:
    """Raw dataset, repeat-averaged dataset, and ground truth (simulated roots only)."""
    truth: dict = {}
    if params.simulate is not None:
        from data_loaders.simulate.fmri import simulate_nsd

        sim = simulate_nsd(**params.simulate, random_state=run.seed, verbose=False)
        raw = sim.to_dataset(subjects=params.subjects)
        truth["attributes"] = sim.stimuli.attributes
        for s in params.subjects:
            truth[f"subj{s:02d}"] = sim.subjects[s].truth
    else:
        from data_loaders.nsd import load_nsd
        from data_loaders.simulate.fmri import default_nsd, load_truth

        root = params.nsd_root or default_nsd(data_home=run.data_dir, verbose=run.verbose)
        raw = load_nsd(root, subjects=params.subjects, image_size=params.image_size,
                       verbose=run.verbose)
        try:
            truth = load_truth(root)
        except FileNotFoundError:
            truth = {}
    return raw, raw.average_repeats(), truth


def braincorl(params: BraInCoRLParams, run) -> dict:
    """Meta-train BraInCoRL, then compare it with ridge on a held-out subject."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from decoding.encoders.braincorl import BraInCoRL, MetaTask
    from decoding.encoders.ridge import RidgeEncoder
    from decoding.evaluation import explained_variance, noise_ceiling
    from decoding.features import get_extractor

    held = f"subj{params.held_out:02d}"
    if params.held_out not in params.subjects or len(params.subjects) < 2:
        raise ValueError(
            f"held_out: expected one of subjects {params.subjects} (at least 2 subjects), "
            f"got {params.held_out}"
        )
    rng = np.random.default_rng(run.seed)

    # -- data and features ----------------------------------------------------------------
    t0 = time.perf_counter()
    raw, ds, truth = _load(params, run)
    run.log(f"data: {ds!r} ({time.perf_counter() - t0:.1f} s)")
    feat_kw = dict(params.features)
    name = feat_kw.pop("name", "stimnet")
    if name == "stimnet":
        feat_kw.setdefault("data_home", run.data_dir)
        feat_kw.setdefault("random_state", 0)
        feat_kw.setdefault("verbose", run.verbose)
    t0 = time.perf_counter()
    fx = get_extractor(name, **feat_kw)
    F = fx.transform(ds.stimuli.images)
    t_feat = time.perf_counter() - t0
    run.log(f"features: {fx!r}, {F.shape} ({t_feat:.1f} s)")
    train, test = ds.split("shared")

    def feats(d, sub):
        return F[ds.stimuli.index_of(d.subjects[sub].stim_ids)]

    # -- meta-training on the other subjects ----------------------------------------------
    t0 = time.perf_counter()
    # a resumed run (same config: neurosuite checks it) reloads its meta-trained model
    load_ckpt = getattr(run, "load_checkpoint", None)
    ckpt = run.checkpoint_dir / "braincorl"
    resumed = None
    if not params.pretrained and load_ckpt is not None:
        resumed = load_ckpt(ckpt, lambda p: BraInCoRL.from_pretrained(p, feature_extractor=fx))
    if params.pretrained:
        model = BraInCoRL.from_pretrained(params.pretrained, feature_extractor=fx)
    elif resumed is not None:
        model = resumed
        run.log(f"meta-training: resumed from {ckpt}")
    else:
        tasks = [
            MetaTask(feats(train, s), train.subjects[s].betas, s)
            for s in ds.subject_names
            if s != held
        ]
        model = BraInCoRL(
            d_model=params.d_model, n_layers=params.n_layers, n_heads=params.n_heads,
            ffn_dim=params.ffn_dim, product_tokens=params.product_tokens,
            gd_readout=params.gd_readout,
            n_steps=params.n_steps, n_synthetic_steps=params.n_synthetic_steps,
            batch_size=params.batch_size, lr=params.lr, min_context=params.min_context,
            max_context=params.max_context, feature_extractor=fx.identifier,
            device="cpu" if run.device == "auto" else run.device, random_state=run.seed,
            verbose=run.verbose,
        ).meta_fit(tasks)  # fmt: skip
        model.save_pretrained(ckpt)
    t_meta = time.perf_counter() - t0
    run.log(f"meta-training: {t_meta:.1f} s")
    if model.meta_history_:
        fig, ax = plt.subplots(figsize=(5, 3))
        steps = np.arange(len(model.meta_history_)) * 10
        ax.plot(steps, model.meta_history_)
        if params.n_synthetic_steps and not params.pretrained:
            ax.axvline(params.n_synthetic_steps, color="0.5", ls="--", label="synthetic | real")
            ax.legend()
        ax.set(xlabel="step", ylabel="query MSE (z units, smoothed)", title="meta-training")
        fig.tight_layout()
        run.add_figure(fig, "meta_training", caption="Meta-training loss on query images.")

    # -- the held-out subject --------------------------------------------------------------
    Xc_all, Yc_all = feats(train, held), train.subjects[held].betas
    Xq, Yq = feats(test, held), test.subjects[held].betas
    sub = ds.subjects[held]
    cols = np.arange(sub.n_voxels)
    if params.max_eval_voxels is not None and params.max_eval_voxels < sub.n_voxels:
        cols = np.sort(rng.choice(sub.n_voxels, params.max_eval_voxels, replace=False))
    roi = sub.roi[cols]
    # noise ceiling of the test responses: NC for a mean of n_k repeats, averaged over
    # images, is NSD's formula with n_avg = 1 / mean(1 / n_k)
    raw_sub = raw.subjects[held]
    counts = np.array([(raw_sub.stim_ids == i).sum() for i in test.subjects[held].stim_ids])
    n_avg = float(1.0 / np.mean(1.0 / counts))
    nc = noise_ceiling(sub.ncsnr[cols], n_avg=n_avg, as_fraction=True) if sub.ncsnr is not None \
        else None  # fmt: skip
    sizes = sorted({min(n, len(Xc_all)) for n in params.context_sizes if n >= 5})
    rois = ["all"] + [r for r in sub.roi_names if (roi == r).any()]
    ev = {m: np.zeros((len(sizes), params.n_repeats, len(cols))) for m in ("braincorl", "ridge")}
    t_fit = {m: [] for m in ev}
    steps = [(i, n, r) for i, n in enumerate(sizes) for r in range(params.n_repeats)]
    for i, n, r in run.progress(steps, total=len(steps), desc="context sizes"):
        idx = rng.permutation(len(Xc_all))[:n]
        Xc, Yc = Xc_all[idx], Yc_all[idx][:, cols]
        for mname, est in (("braincorl", model),
                           ("ridge", RidgeEncoder(backend=params.ridge_backend))):
            t0 = time.perf_counter()
            est.fit(Xc, Yc)
            t_fit[mname].append((n, time.perf_counter() - t0))
            ev[mname][i, r] = explained_variance(Yq[:, cols], est.predict(Xq))

    rows, curves = [], {}
    for mname in ev:
        for rname in rois:
            sel = np.ones(len(cols), bool) if rname == "all" else roi == rname
            per = ev[mname][:, :, sel].mean(axis=2)  # (sizes, repeats)
            curves[(mname, rname)] = per.mean(axis=1)
            for i, n in enumerate(sizes):
                row = {"model": mname, "roi": rname, "n_context": n,
                       "ev": round(float(per[i].mean()), 4),
                       "ev_sd": round(float(per[i].std()), 4)}  # fmt: skip
                if nc is not None:
                    ok = sel & (nc > 0.1)
                    row["ev_over_nc"] = round(
                        float((ev[mname][i][:, ok] / nc[ok]).mean()), 4) if ok.any() else None
                rows.append(row)
    run.add_table("data_efficiency", rows, caption=(
        f"Explained variance on the {len(Xq)} shared test images of {held} (mean over voxels "
        f"and {params.n_repeats} random context sets; sd over sets). ev_over_nc: EV / noise "
        f"ceiling (n_avg = {n_avg:.2f} repeats), voxels with NC > 10 %."))  # fmt: skip

    # -- curve figure -----------------------------------------------------------------------
    focus = "higher" if "higher" in rois else "all"
    kinds = [("ev", "explained variance")]
    if nc is not None:
        kinds.append(("ev_over_nc", "EV / noise ceiling"))
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 3.6 * len(kinds)), squeeze=False)
    for (key, label), ax_row in zip(kinds, axes, strict=True):
        for ax, rname in zip(ax_row, ["all", focus], strict=True):
            for mname, colour in (("braincorl", "C3"), ("ridge", "C0")):
                ys = [next(r[key] for r in rows if r["model"] == mname and r["roi"] == rname
                           and r["n_context"] == n) for n in sizes]  # fmt: skip
                ax.plot(sizes, [np.nan if y is None else y for y in ys], "o-", color=colour,
                        label=mname)
            ax.set(xscale="log", xlabel="context images", ylabel=label,
                   title=f"{held}: {rname} voxels")  # fmt: skip
            ax.minorticks_off()
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.axhline(0, color="0.8", lw=0.8)
            ax.legend()
    fig.tight_layout()
    run.add_figure(fig, "data_efficiency", caption=(
        "Data efficiency (Yu et al. 2025, Fig. 1d): EV on shared test images vs number of "
        "context images, BraInCoRL (in-context, no gradient step) vs ridge (5-fold CV alpha)."))

    fig, ax = plt.subplots(figsize=(7, 3.8))
    roi_list = [r for r in rois if r != "all"]
    width = 0.38
    k100 = int(np.argmin(np.abs(np.array(sizes) - params.map_context)))
    for j, (mname, colour) in enumerate((("braincorl", "C3"), ("ridge", "C0"))):
        vals = [curves[(mname, r)][k100] for r in roi_list]
        ax.bar(np.arange(len(roi_list)) + (j - 0.5) * width, vals, width, color=colour,
               label=mname)
    ax.set_xticks(np.arange(len(roi_list)), roi_list)
    ax.set(ylabel="explained variance", title=f"per ROI, {sizes[k100]} context images")
    ax.legend()
    fig.tight_layout()
    run.add_figure(fig, "per_roi", caption="Explained variance per ROI at the map context size.")

    # -- maps on the MNI brain ----------------------------------------------------------------
    n_map = sizes[k100]
    idx = np.random.default_rng(run.seed + 1).permutation(len(Xc_all))[:n_map]
    model.fit(Xc_all[idx], Yc_all[idx])
    ev_bc = explained_variance(Yq, model.predict(Xq))
    ridge_map = RidgeEncoder(backend=params.ridge_backend).fit(Xc_all[idx], Yc_all[idx])
    ev_rr = explained_variance(Yq, ridge_map.predict(Xq))
    selectivity: dict[str, Any] = {}
    if sub.mask_img is not None:
        from nilearn import datasets, plotting

        bg = datasets.load_mni152_template(resolution=2)
        vmax = float(max(np.percentile(ev_bc, 99), np.percentile(ev_rr, 99), 0.05))
        fig, axes = plt.subplots(2, 1, figsize=(9, 5.2))
        for ax, vals, title in ((axes[0], ev_bc, "BraInCoRL"), (axes[1], ev_rr, "ridge")):
            plotting.plot_stat_map(
                sub.to_img(np.clip(vals, 0, None)), bg_img=bg, display_mode="z",
                cut_coords=(-20, -12, -4, 4), vmax=vmax, cmap="inferno", axes=ax,
                title=f"{title}: EV, {n_map} context images", colorbar=True,
                symmetric_cbar=False,
            )  # fmt: skip
        run.add_figure(fig, "ev_maps", caption=(
            f"Voxelwise explained variance of {held} on the MNI152 template (nilearn), both "
            f"models fitted on the same {n_map} images."))
        plt.close(fig)

        # selectivity: the shape class whose images drive each higher-visual voxel most
        shape = truth.get("attributes", {}).get("shape")
        if shape is not None and "higher" in sub.roi_names:
            from data_loaders.simulate.stimuli import SHAPE_CLASSES

            all_ids = ds.stimuli.ids
            cls = np.asarray(shape)[all_ids]  # attributes are indexed by stimulus id
            pred_all = model.predict(F)  # (n_images, n_voxels)
            class_mean = np.stack([pred_all[cls == c].mean(0) if (cls == c).any()
                                   else np.full(sub.n_voxels, -np.inf)
                                   for c in range(len(SHAPE_CLASSES))])  # fmt: skip
            pref = np.argmax(class_mean, axis=0)
            hv = sub.roi == "higher"
            true_tuning = truth.get(held, {}).get("class_tuning")
            if true_tuning is not None and np.shape(true_tuning)[0] == sub.n_voxels:
                true_pref = np.argmax(np.asarray(true_tuning), axis=1)
                acc = float((pref[hv] == true_pref[hv]).mean())
                selectivity = {"preferred_class_accuracy_higher": round(acc, 4),
                               "chance": round(1 / len(SHAPE_CLASSES), 4)}  # fmt: skip
            vals = np.where(hv, pref + 1, 0).astype(float)
            fig = plt.figure(figsize=(9, 3))
            cmap = matplotlib.colors.ListedColormap(
                plt.get_cmap("tab10").colors[: len(SHAPE_CLASSES)])
            disp = plotting.plot_roi(
                sub.to_img(vals), bg_img=bg, display_mode="z", cut_coords=(-20, -12, -4, 4),
                cmap=cmap, figure=fig, vmin=1, vmax=len(SHAPE_CLASSES), colorbar=False,
                title=f"preferred shape class (BraInCoRL, {n_map} images)",
            )  # fmt: skip
            del disp
            handles = [matplotlib.patches.Patch(color=cmap(i), label=c)
                       for i, c in enumerate(SHAPE_CLASSES)]  # fmt: skip
            fig.legend(handles=handles, loc="lower center", ncol=8, fontsize=7, frameon=False,
                       labelcolor="w")  # nilearn draws on black
            run.add_figure(fig, "selectivity", caption=(
                "Selectivity of higher-visual voxels: the shape class with the largest mean "
                "predicted response (BraInCoRL weights from in-context images), as in the "
                "paper's interpretability analysis."
                + (f" Agreement with the simulation's true preferred class: "
                   f"{selectivity['preferred_class_accuracy_higher']:.0%} (chance "
                   f"{selectivity['chance']:.0%})." if selectivity else "")))
            plt.close(fig)

    # -- headline numbers -----------------------------------------------------------------------
    def at(mname, rname, n):
        return float(curves[(mname, rname)][sizes.index(n)]) if n in sizes else None

    n_mid, n_max = sizes[k100], sizes[-1]
    t_bc = float(np.mean([t for n, t in t_fit["braincorl"] if n == n_mid]))
    t_rr = float(np.mean([t for n, t in t_fit["ridge"] if n == n_mid]))
    metrics: dict[str, Any] = {"held_out": held, "n_voxels_scored": int(len(cols)),
                               "focus_roi": focus}  # fmt: skip
    for rname in dict.fromkeys([focus, "all"]):
        bc, rr = at("braincorl", rname, n_mid), at("ridge", rname, n_mid)
        match = images_to_match(np.array(sizes), curves[("ridge", rname)], bc)
        metrics[rname] = {
            f"ev_braincorl_{n_mid}": round(bc, 4),
            f"ev_ridge_{n_mid}": round(rr, 4),
            f"ev_ratio_{n_mid}": round(bc / rr, 3) if rr > 0 else None,
            "ridge_images_to_match_braincorl": round(match, 1) if np.isfinite(match) else None,
            "image_ratio": round(match / n_mid, 2) if np.isfinite(match) else None,
            f"ev_braincorl_{n_max}": round(at("braincorl", rname, n_max), 4),
            f"ev_ridge_{n_max}": round(at("ridge", rname, n_max), 4),
        }
    metrics["seconds"] = {
        "features": round(t_feat, 1), "meta_training": round(t_meta, 1),
        f"braincorl_fit_{n_mid}": round(t_bc, 3), f"ridge_fit_{n_mid}": round(t_rr, 3),
    }  # fmt: skip
    metrics["meta_training_resumed"] = resumed is not None
    metrics.update(selectivity)

    def sentence(rname: str) -> str:
        m = metrics[rname]
        match = m["ridge_images_to_match_braincorl"]
        return (
            f"{rname} voxels: BraInCoRL with {n_mid} images explains "
            f"{m[f'ev_braincorl_{n_mid}']:.3f} of the test variance, ridge "
            f"{m[f'ev_ridge_{n_mid}']:.3f}; ridge needs "
            + (f"about {match:.0f}" if match is not None else f"more than {n_max}")
            + f" images to match it. At {n_max} images: BraInCoRL "
            f"{m[f'ev_braincorl_{n_max}']:.3f}, ridge {m[f'ev_ridge_{n_max}']:.3f}."
        )

    run.add_text("Against the paper", (
        f"Held-out {held}. " + " ".join(sentence(r) for r in dict.fromkeys([focus, "all"]))
        + " Paper (NSD, higher visual cortex, CLIP features): 0.13 vs 0.07 at 100 images "
        "(about 2x), and ridge needs at least 300 images to match (image ratio >= 3). "
        f"In-context fit for {len(cols)} voxels: {t_bc:.2f} s; ridge fit {t_rr:.2f} s."))
    _claims(run, metrics, focus, n_mid)
    return metrics


def _claims(run, metrics: dict[str, Any], focus: str, n_mid: int) -> None:
    """The paper's headline claims (Yu et al. 2025; REFERENCES Part B, 1), judged here."""
    add = getattr(run, "add_claim", None)
    if add is None:
        return
    m = metrics[focus]
    bc, rr = m[f"ev_braincorl_{n_mid}"], m[f"ev_ridge_{n_mid}"]
    ratio = m[f"ev_ratio_{n_mid}"]
    add("ev_at_context", f"Yu et al. (2025): with {n_mid} context images BraInCoRL explains "
        "about 2x the variance of ridge in higher visual cortex (0.13 vs 0.07 at 100)",
        f"{focus} voxels: EV {bc:.3f} vs ridge {rr:.3f}"
        + (f" ({ratio:.2f}x)" if ratio is not None else
           " (ridge explains none)" if bc > 0 >= rr else ""),
        # without a ratio (ridge at or below zero) a positive EV is more than 2x of nothing
        "holds" if (ratio is not None and ratio >= 1.5) or (ratio is None and bc > 0 >= rr)
        else "weaker" if ratio is not None and ratio > 1.0 else "does not hold",
        figure="data_efficiency")
    img = m["image_ratio"]
    add("data_efficiency", "ridge needs at least 3x the images to match BraInCoRL "
        "(>= 300 vs 100)",
        f"ridge needs {img:.1f}x the images" if img is not None
        else "ridge does not match it within the largest context",
        "holds" if img is None or img >= 3 else "weaker" if img > 1 else "does not hold",
        figure="data_efficiency")
    acc = metrics.get("preferred_class_accuracy_higher")
    if acc is not None:
        chance = metrics["chance"]
        add("selectivity", "in-context weights reveal the category selectivity of higher "
            "visual voxels", f"preferred shape class right for {acc:.0%} of voxels "
            f"(chance {chance:.0%})",
            "holds" if acc >= 3 * chance else "weaker" if acc > 1.5 * chance
            else "does not hold", figure="selectivity")
