"""Job ``brain3d``: 3D objects from fMRI region by region, and the diagnosis of disorders.

Brain3D (Guo et al. 2024, arXiv 2405.15239) on the simulated visual cortex (or an NSD
root with the simulation's ground truth). Experiments:

1. Scores of the generated objects against the true ones (voxel IoU, silhouette IoU,
   Chamfer distance, shape-class accuracy of the mesh by its nearest class SDF, axis,
   size, position and colour errors), against a retrieval baseline (the nearest training
   object in the stage-1 embedding), stage 2 run on the decoded 2D image alone, Brain3D
   with and without the 2D-prior guidance, and the oracle latent (stage 2's ceiling).
2. Disorder diagnosis: each ROI is corrupted at test time (noise, silence, a lesion of
   part of it); a logistic-regression diagnoser reads the pattern of metric drops, scored
   by cross-validation; the confusion table is shown with chance.
3. Region contributions: each ROI alone, cumulative sets (V1, V1-V2, ..., + higher, +
   MTL), left vs right hemisphere.
4. A figure per subject: the true object, the decoded 2D image, the generated mesh from
   three views; the meshes are written as ``.ply`` (and one ``.obj``).

The paper released no code and no numbers; these are the first public figures.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Brain3DParams", "brain3d"]

METRICS = ("iou", "silhouette_iou", "chamfer", "class_correct", "axis_error_deg",
           "size_error", "position_error", "colour_error")
LABELS = {"iou": "voxel IoU", "silhouette_iou": "silhouette IoU", "chamfer": "Chamfer",
          "class_correct": "shape acc.", "axis_error_deg": "axis err (deg)",
          "size_error": "size err", "position_error": "position err",
          "colour_error": "colour err"}


class Brain3DParams(BaseModel):
    """Parameters of the ``brain3d`` job (``configs/decode/brain3d.yaml``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    nsd_root: str | None = Field(None, description="NSD root with simulation truth; None: "
                                 "the embedded simulated NSD")
    simulate: dict[str, Any] | None = Field(None, description="simulate_nsd(...) arguments "
                                            "for an in-memory dataset (tests)")
    subjects: list[int] = Field([1, 2, 3, 4], min_length=1)
    hidden: int = Field(64, ge=4)
    n_epochs: int = Field(150, ge=1)
    lr: float = Field(2e-3, gt=0)
    l2: float = Field(1.0, ge=0)
    progressive: bool = True
    latent_mode: Literal["expected", "argmax"] = "expected"
    shape_decoder: str | None = Field(None, description="a saved ImplicitShapeModel folder; "
                                      "None: the shipped one")
    n_test: int | None = Field(None, ge=2, description="score at most this many test images")
    eval_resolution: int = Field(24, ge=8, description="grid of the 3D scores (per axis)")
    mesh_resolution: int = Field(48, ge=8, description="marching-cubes grid of the meshes")
    prior_2d: Literal["auto", "early_visual", "generator"] = Field(
        "auto", description="2D image guiding stage 2: the reconstruction generator "
        "(decoding.generation.default_pipeline) when shipped ('auto'), else a ridge image "
        "from early visual cortex")
    guidance_steps: int = Field(20, ge=0)
    guidance_lr: float = Field(0.05, gt=0)
    guidance_subset: int = Field(16, ge=1, description="test images guided per subject")
    guidance_resolution: int = Field(16, ge=4)
    guidance_samples: int = Field(16, ge=4)
    baseline_2d: bool = Field(True, description="stage 2 on the decoded 2D image alone")
    diagnosis: bool = True
    diag_subjects: list[int] | None = Field(None, description="default: all subjects")
    diag_kinds: list[Literal["noise", "silence", "lesion"]] = ["noise", "silence", "lesion"]
    diag_patients: int = Field(3, ge=1, description="patients per subject, ROI and kind")
    diag_batch: int = Field(16, ge=2, description="test images per patient")
    diag_resolution: int = Field(16, ge=8)
    contributions: bool = True
    contribution_subjects: list[int] = Field([1], min_length=1)
    hemispheres: bool = True
    n_demo_meshes: int = Field(8, ge=1, description="meshes exported and rendered")
    max_figure_subjects: int = Field(4, ge=1)


def _claim(run, name: str, claim: str, value: str, verdict: str,
           figure: str | None = None) -> None:
    add = getattr(run, "add_claim", None)
    if add is not None:
        add(name, claim, value, verdict, figure=figure)
    else:  # until the run object has add_claim
        run.add_text(f"claim: {name}", f"{claim} - measured {value}: {verdict}")


def _load(params: Brain3DParams, run):
    from decoding.decoders.brain3d import attach_objects

    if params.simulate is not None:
        from data_loaders.simulate.fmri import simulate_nsd

        sim = simulate_nsd(**params.simulate, random_state=run.seed, verbose=False)
        ds = sim.to_dataset(subjects=params.subjects)
    else:
        from data_loaders.nsd import load_nsd
        from data_loaders.simulate.fmri import default_nsd, load_truth

        root = params.nsd_root or default_nsd(data_home=run.data_dir, verbose=run.verbose)
        ds = load_nsd(root, subjects=params.subjects, verbose=run.verbose)
        try:
            truth = load_truth(root)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"nsd_root: Brain3D is scored against each image's 3D object, which only a "
                f"simulated root holds ({err})"
            ) from err
        ds = attach_objects(ds, truth["objects_3d"])
    return ds.average_repeats()


def _generator_images(train, test, model, params, run) -> tuple[dict | None, str]:
    """Images from the reconstruction generator, or (None, reason) when it is absent."""
    try:
        from decoding.features import get_extractor
        from decoding.generation import default_pipeline

        pipe = default_pipeline()
    except (ImportError, FileNotFoundError, AttributeError) as err:
        return None, f"generator unavailable ({type(err).__name__}: {err})"
    from sklearn.linear_model import RidgeCV

    fx = get_extractor("stimnet")
    if getattr(pipe, "image_embedding_id", fx.identifier) != fx.identifier:
        return None, (f"generator conditioned on {pipe.image_embedding_id!r}, not "
                      f"{fx.identifier!r}")
    import torch

    out = {}
    for s in model.layouts_:
        tr_sub, te_sub = train.subjects[s], test.subjects[s]
        F = fx.transform(train.stimuli.images[train.stimuli.index_of(tr_sub.stim_ids)])
        Xtr = model.subject_betas(tr_sub)
        mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
        r = RidgeCV(alphas=np.logspace(2, 5, 7)).fit((Xtr - mu) / sd, F)
        E = r.predict((model.subject_betas(te_sub) - mu) / sd).astype(np.float32)
        E /= np.linalg.norm(E, axis=1, keepdims=True) + 1e-12
        res = pipe(image_embeds=torch.as_tensor(E), num_inference_steps=20,
                   generator=torch.Generator().manual_seed(run.seed), output_type="np")
        out[s] = np.asarray(res.images, dtype=np.float32)
    return out, "generator"


def _save_reconstructions(run, model, stimuli, tests, names, prior_used: str) -> None:
    """``reconstructions.npz``: the 2D prior of each subject (``prior_2d_subjNN``: the
    generator's image, or the early-visual regression when that is the prior) and, beside
    a generator prior, the early-visual image too (``early_visual_subjNN``). Subjects
    tested on other images than the first are left out (one file, one set of images)."""
    from decoding.evaluation.reconstructions import save_reconstructions

    ids = np.asarray(tests[names[0]]["ids"])
    rows: dict[str, np.ndarray] = {}
    for s in names:
        if not np.array_equal(np.asarray(tests[s]["ids"]), ids):
            run.log(f"reconstructions.npz: {s} left out (other test images)")
            continue
        rows[f"prior_2d_{s}"] = tests[s]["images_2d"]
        if prior_used != "early_visual":
            rows[f"early_visual_{s}"] = model.predict_images(s, tests[s]["betas"],
                                                             size=tests[s]["images_2d"].shape[1])
    true = stimuli.images[stimuli.index_of(ids)]
    size = rows[f"prior_2d_{names[0]}"].shape[1]
    if true.shape[1] != size:  # the stimuli at the size the 2D prior is drawn at
        from PIL import Image

        true = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                         for im in true])  # fmt: skip
    save_reconstructions(run.out_dir / "reconstructions.npz", true, ids, rows)


def _score(shape, lat, truth, res):
    from decoding.decoders.brain3d import evaluate_objects

    return evaluate_objects(shape, lat, truth, resolution=res)


def _mean(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            for k, v in scores.items()}


def _subset(lat: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in lat.items()}


def brain3d(params: Brain3DParams, run) -> dict:
    """Fit Brain3D per subject, score its meshes, diagnose disorders, map contributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from data_loaders.simulate.stimuli import SHAPE_CLASSES
    from decoding.decoders.brain3d import (
        ALL_ROIS,
        Brain3D,
        ImageLatentRegressor,
        corrupt_betas,
        guide_latents,
        object_targets,
        oracle_latents,
        retrieval_latents,
    )
    from decoding.generation.mesh import DEFAULT_VIEWS, field_mesh, render_mesh

    torch.set_num_threads(1)
    rng = np.random.default_rng(run.seed)
    t_start = time.perf_counter()
    ds = _load(params, run)
    train, test = ds.split("shared") if len(ds.subjects) > 1 else ds.split(0.1, run.seed)
    names = ds.subject_names
    run.log(f"data: {ds!r} ({time.perf_counter() - t_start:.1f} s)")

    def make(rois=ALL_ROIS, epochs=None, **kw):
        return Brain3D(rois=tuple(rois), hidden=params.hidden,
                       n_epochs=epochs or params.n_epochs, lr=params.lr, l2=params.l2,
                       progressive=params.progressive, latent_mode=params.latent_mode,
                       shape_decoder=params.shape_decoder,
                       mesh_resolution=params.mesh_resolution, random_state=run.seed,
                       device="cpu" if run.device == "auto" else run.device, **kw)

    t0 = time.perf_counter()
    model = make().fit(train)
    t_fit = time.perf_counter() - t0
    model.save_pretrained(run.checkpoint_dir / "brain3d")
    shape = model.module_.shape
    run.log(f"stage 1 fitted on {len(names)} subject(s) in {t_fit:.1f} s")

    # -- test sets ---------------------------------------------------------------------------
    tests: dict[str, dict[str, Any]] = {}
    for s in names:
        sub = test.subjects[s]
        rows = np.arange(sub.n_trials)
        if params.n_test is not None and len(rows) > params.n_test:
            rows = np.sort(rng.choice(rows, params.n_test, replace=False))
        tests[s] = {"betas": model.subject_betas(sub)[rows], "ids": sub.stim_ids[rows],
                    "truth": object_targets(test.stimuli, sub.stim_ids[rows])}

    # -- 2D prior ------------------------------------------------------------------------------
    gen_images, prior_used = (None, "early_visual")
    if params.prior_2d in ("auto", "generator"):
        gen_images, prior_used = _generator_images(train, test, model, params, run)
        if gen_images is None:
            if params.prior_2d == "generator":
                raise FileNotFoundError(f"prior_2d: 'generator' asked but {prior_used}")
            run.log(f"2D prior: {prior_used}; using the early-visual image regression")
            prior_used = "early_visual"
        else:
            gen_images = {s: v[np.isin(test.subjects[s].stim_ids, tests[s]["ids"])]
                          for s, v in gen_images.items()}
    for s in names:
        tests[s]["images_2d"] = (gen_images[s] if gen_images is not None
                                 else model.predict_images(s, tests[s]["betas"]))
    _save_reconstructions(run, model, test.stimuli, tests, names, prior_used)

    # -- experiment 1: scores against the true objects -----------------------------------------
    img_reg = None
    if params.baseline_2d:
        from decoding.features import get_extractor

        fx = get_extractor("stimnet")  # the shipped weights
        tr_ids = np.unique(np.concatenate([train.subjects[s].stim_ids for s in names]))
        img_reg = ImageLatentRegressor(fx).fit(
            train.stimuli.images[train.stimuli.index_of(tr_ids)],
            object_targets(train.stimuli, tr_ids))
    per_method: dict[str, list[dict[str, np.ndarray]]] = {}
    guided_pairs: list[tuple[dict, dict]] = []
    t_guid = 0.0
    for s in run.progress(names, desc="scoring subjects"):
        T = tests[s]
        lat = model.predict_latents(s, T["betas"])
        T["latents"] = lat
        cands = {
            "Brain3D": lat,
            "oracle latent": oracle_latents(shape, T["truth"]),
            "retrieval": retrieval_latents(
                shape, model.embed(s, T["betas"]),
                model.embed(s, model.subject_betas(train.subjects[s])),
                object_targets(train.stimuli, train.subjects[s].stim_ids)),
        }
        if img_reg is not None:
            cands["2D image only"] = img_reg.predict(T["images_2d"], shape, params.latent_mode)
        for name, la in cands.items():
            per_method.setdefault(name, []).append(
                _score(shape, la, T["truth"], params.eval_resolution))
        if params.guidance_steps > 0:
            g = np.arange(min(params.guidance_subset, len(T["betas"])))
            t0 = time.perf_counter()
            guided = guide_latents(shape, _subset(lat, g), T["images_2d"][g],
                                   n_steps=params.guidance_steps, lr=params.guidance_lr,
                                   resolution=params.guidance_resolution,
                                   n_samples=params.guidance_samples, seed=run.seed,
                                   fit_colour=model.colour_mode != "class")
            t_guid += time.perf_counter() - t0
            tg = _subset(T["truth"], g)
            # the same guidance towards the true stimulus: the ceiling of any 2D prior
            true_img = test.stimuli.images[test.stimuli.index_of(T["ids"][g])]
            guided_true = guide_latents(shape, _subset(lat, g), true_img,
                                        n_steps=params.guidance_steps, lr=params.guidance_lr,
                                        resolution=params.guidance_resolution,
                                        n_samples=params.guidance_samples, seed=run.seed,
                                        fit_colour=model.colour_mode != "class")
            guided_pairs.append((_score(shape, _subset(lat, g), tg, params.eval_resolution),
                                 _score(shape, guided, tg, params.eval_resolution),
                                 _score(shape, guided_true, tg, params.eval_resolution)))
            T["guided"] = (g, guided)

    def pooled(lst):
        return {k: np.concatenate([d[k] for d in lst]) for k in lst[0]}

    summary = {m: _mean(pooled(v)) for m, v in per_method.items()}
    rows = []
    for m, sc in summary.items():
        rows.append({"method": m, **{LABELS[k]: round(sc[k], 4) for k in METRICS}})
    guidance = None
    if guided_pairs:
        before = _mean(pooled([a for a, _, _ in guided_pairs]))
        after = _mean(pooled([b for _, b, _ in guided_pairs]))
        ceiling = _mean(pooled([c for _, _, c in guided_pairs]))
        guidance = {"without": before, "with": after, "with_true_image": ceiling,
                    "n_objects": int(sum(len(a["iou"]) for a, _, _ in guided_pairs)),
                    "seconds": round(t_guid, 1)}
        for lab, sc in (("Brain3D, guided subset, no guidance", before),
                        (f"Brain3D + 2D-prior guidance ({prior_used})", after),
                        ("Brain3D + guidance towards the true image (ceiling)", ceiling)):
            rows.append({"method": lab, **{LABELS[k]: round(sc[k], 4) for k in METRICS}})
    run.add_table("scores", rows, caption=(
        "Generated objects vs the true ones, mean over the test images of every subject "
        "(guided rows: the guided subset only). IoU, Chamfer and silhouette in the true "
        "object's frame and units (its radius = 1); shape acc. = the mesh's nearest class "
        f"SDF (chance 1/{len(SHAPE_CLASSES)}); axis error skips spheres and cubes."))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    meths = list(summary)
    for ax, k in zip(axes, ("iou", "chamfer", "class_correct")):
        vals = [summary[m][k] for m in meths]
        ax.barh(meths, vals, color=["C0", "0.6", "C1", "C2", "C3"][: len(meths)])
        ax.set_title(LABELS[k])
        if k == "class_correct":
            ax.axvline(1 / len(SHAPE_CLASSES), color="k", ls="--", lw=1, label="chance")
            ax.legend(fontsize=7)
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.tight_layout()
    run.add_figure(fig, "scores", caption="Brain3D against its baselines and its ceiling.")

    # -- figure 4: true object / 2D image / mesh from 3 views --------------------------------
    n_fig = min(len(names), params.max_figure_subjects)
    per_sub = max(1, int(np.ceil(params.n_demo_meshes / n_fig)))
    mesh_dir = run.out_dir / "meshes"
    t0 = time.perf_counter()
    n_done = 0
    gallery = []
    for s in names[:n_fig]:
        T = tests[s]
        for i in range(min(per_sub, len(T["betas"]), params.n_demo_meshes - n_done)):
            gallery.append((s, i))
            n_done += 1
    meshes = []
    if gallery:
        fig, axes = plt.subplots(len(gallery), 7, figsize=(10.5, 1.55 * len(gallery)),
                                 squeeze=False)
        for r, (s, i) in enumerate(gallery):
            T = tests[s]
            tr = {k: v[i] for k, v in T["truth"].items()}
            lat = {k: v[i] for k, v in T["latents"].items()}
            codes = shape.codes.detach().numpy()
            true_mesh = field_mesh(shape, codes[tr["shape"]], tr["rotation"], tr["size"],
                                   resolution=params.mesh_resolution, color=tr["rgb"])
            mesh = field_mesh(shape, lat["z"], lat["rotation"], float(lat["size"]),
                              resolution=params.mesh_resolution, color=lat["rgb"])
            mesh.metadata.update(subject=s, stim_id=int(T["ids"][i]),
                                 shape_class=SHAPE_CLASSES[int(lat["shape"])])
            meshes.append(mesh)
            mesh.export(mesh_dir / f"{s}_stim{int(T['ids'][i])}.ply")
            if r == 0:
                mesh.export(mesh_dir / f"{s}_stim{int(T['ids'][i])}.obj")
            ext = 1.15 * max(tr["size"], float(lat["size"]))
            el, az = DEFAULT_VIEWS[1]
            render_mesh(true_mesh, axes[r, 0], el, az, extent=ext)
            axes[r, 1].imshow(test.stimuli.images[test.stimuli.index_of(T["ids"][i:i + 1])][0])
            axes[r, 2].imshow(np.clip(T["images_2d"][i], 0, 1))
            for c, (el, az) in enumerate(DEFAULT_VIEWS):
                render_mesh(mesh, axes[r, 3 + c], el, az, extent=ext)
            axes[r, 6].bar(range(len(SHAPE_CLASSES)), T["latents"]["shape_probs"][i],
                           color=["C3" if k == tr["shape"] else "0.6"
                                  for k in range(len(SHAPE_CLASSES))])
            axes[r, 6].set_ylim(0, 1)
            axes[r, 0].set_ylabel(f"{s}\n{SHAPE_CLASSES[tr['shape']]}", fontsize=7)
            for ax in axes[r, :6]:
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r, 6].set_xticks(range(len(SHAPE_CLASSES)))
            axes[r, 6].set_xticklabels([c[:3] for c in SHAPE_CLASSES], fontsize=5,
                                       rotation=90)
        titles = ["true object (side)", "stimulus", f"2D prior ({prior_used})",
                  "mesh: camera", "mesh: side", "mesh: above", "p(shape)"]
        for c, tt in enumerate(titles):
            axes[0, c].set_title(tt, fontsize=7)
        fig.tight_layout()
        run.add_figure(fig, "objects", caption=(
            "Per subject: the true object (side view), the stimulus, the decoded 2D image, "
            "the generated mesh from three views and the decoded shape probabilities (red: "
            "the true class). Meshes are written to meshes/*.ply."))
    t_demo = time.perf_counter() - t0

    metrics: dict[str, Any] = {
        "scores": summary, "guidance": guidance, "prior_2d": prior_used,
        "n_test_objects": int(sum(len(T["betas"]) for T in tests.values())),
        "seconds": {"fit_stage1": round(t_fit, 1), "guidance": round(t_guid, 1),
                    "meshes_and_renders": round(t_demo, 1)},
        "n_meshes_exported": len(meshes),
    }
    chance = 1 / len(SHAPE_CLASSES)
    acc = summary["Brain3D"]["class_correct"]
    _claim(run, "shape_accuracy", "Shape-class accuracy of the generated meshes is well above "
           "chance (1/8)", f"{acc:.2f} (chance {chance:.3f})",
           "holds" if acc > 2 * chance else ("weaker" if acc > chance else "does not hold"),
           figure="scores")
    iou_b, iou_r = summary["Brain3D"]["iou"], summary["retrieval"]["iou"]
    _claim(run, "iou_vs_retrieval", "IoU of the generated meshes is above the retrieval "
           "baseline's", f"{iou_b:.3f} vs {iou_r:.3f}",
           "holds" if iou_b > iou_r else "does not hold", figure="scores")
    if guidance is not None:
        d_iou = guidance["with"]["iou"] - guidance["without"]["iou"]
        d_ch = guidance["with"]["chamfer"] - guidance["without"]["chamfer"]
        d_col = guidance["with"]["colour_error"] - guidance["without"]["colour_error"]
        # margins: a change smaller than these is not a visible improvement of a mesh
        helps = d_iou >= 0.01 or d_ch <= -0.005 or d_col <= -0.02
        _claim(run, "guidance", "2D-prior guidance improves IoU, Chamfer or colour (by at "
               "least 0.01 IoU, 0.005 Chamfer or 0.02 colour error)",
               f"IoU {d_iou:+.3f}, Chamfer {d_ch:+.3f}, colour error {d_col:+.3f} on "
               f"{guidance['n_objects']} objects ({prior_used} prior)",
               "holds" if helps else "does not hold", figure="scores")

    # -- experiment 2: disorder diagnosis -------------------------------------------------------
    if params.diagnosis:
        metrics["diagnosis"] = _diagnosis(params, run, model, train, tests, names, rng,
                                          corrupt_betas, plt)
        diag = metrics["diagnosis"]
        rec = diag["recall"]
        v1m = [rec.get(r, float("nan")) for r in ("V1", "MTL")]
        _claim(run, "diagnosis", "Disorders are diagnosed from the decoding's degradation, "
               "almost perfectly for V1 and MTL",
               f"accuracy {diag['accuracy']:.2f} (chance {diag['chance']:.2f}); recall V1 "
               f"{v1m[0]:.2f}, MTL {v1m[1]:.2f}",
               "holds" if min(v1m) >= 0.9 else ("weaker" if diag["accuracy"] >
                                                2 * diag["chance"] else "does not hold"),
               figure="diagnosis")

    # -- experiment 3: region contributions and hemispheres --------------------------------------
    if params.contributions:
        metrics["contributions"] = _contributions(params, run, make, train, test, tests,
                                                  names, shape, plt)
        con = metrics["contributions"]
        single = con["alone"]
        early = [single[r]["iou"] for r in ("V1", "V2", "V3", "hV4") if r in single]
        if "MTL" in single and early:
            _claim(run, "visual_beats_mtl", "Visual cortex decodes better than MTL",
                   f"IoU best early ROI {max(early):.3f} vs MTL {single['MTL']['iou']:.3f}; "
                   f"shape acc. {max(single[r]['class_correct'] for r in single if r != 'MTL'):.2f}"
                   f" vs {single['MTL']['class_correct']:.2f}",
                   "holds" if max(early) > single["MTL"]["iou"] else "does not hold",
                   figure="contributions")
        if "V1" in single and len(early) > 1:
            v1 = single["V1"]["iou"]
            others = [single[r]["iou"] for r in ("V2", "V3", "hV4") if r in single]
            _claim(run, "v1_dominates", "V1 dominates among the early ROIs",
                   f"IoU alone: V1 {v1:.3f}, V2-hV4 {', '.join(f'{o:.3f}' for o in others)}",
                   "holds" if v1 >= max(others) else "does not hold", figure="contributions")
        if con.get("hemisphere_tests"):
            h, ht = con["hemispheres"], con["hemisphere_tests"]
            # a side "gives" more only if the paired difference is significant (Wilcoxon)
            left_detail = (h["left"]["chamfer"] < h["right"]["chamfer"]
                           and ht["chamfer"]["wilcoxon_p"] < 0.05)
            right_sil = (h["right"]["silhouette_iou"] > h["left"]["silhouette_iou"]
                         and ht["silhouette_iou"]["wilcoxon_p"] < 0.05)
            _claim(run, "hemispheres", "The left hemisphere gives finer detail (Chamfer), the "
                   "right the silhouette",
                   f"Chamfer L {h['left']['chamfer']:.3f} / R {h['right']['chamfer']:.3f} "
                   f"(Wilcoxon p {ht['chamfer']['wilcoxon_p']:.2g}); silhouette IoU L "
                   f"{h['left']['silhouette_iou']:.3f} / R {h['right']['silhouette_iou']:.3f} "
                   f"(p {ht['silhouette_iou']['wilcoxon_p']:.2g}); the simulated hemispheres "
                   "are mirror images (each sees the contralateral hemifield)",
                   "holds" if left_detail and right_sil else
                   ("weaker" if left_detail or right_sil else "does not hold"),
                   figure="contributions")
    metrics["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    run.add_text("About these numbers", (
        "Brain3D (Guo et al. 2024) released no code and no numeric tables: these are the "
        "first public figures for its analyses, on the suite's simulated visual cortex, where "
        "every image's 3D object is known. Timings are wall-clock on the machine that ran "
        "the job."))
    return metrics


def _diagnosis(params, run, model, train, tests, names, rng, corrupt_betas, plt) -> dict:
    """Corrupt each ROI, measure the metric drops, cross-validate a diagnoser on them."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from decoding.evaluation.metrics import confusion

    shape = model.module_.shape
    subs = names if params.diag_subjects is None else [f"subj{s:02d}"
                                                       for s in params.diag_subjects]
    rois_all = [r for r in model.rois if all(r in model.layouts_[s] for s in subs)]
    feats, labels, kinds = [], [], []
    clean_cache, clean_lat = {}, {}
    jobs = [(s, r, k, p) for s in subs for r in rois_all for k in params.diag_kinds
            for p in range(params.diag_patients)]
    for s, roi, kind, _ in run.progress(jobs, desc="disorders"):
        T = tests[s]
        tr_sub = train.subjects[s]
        if s not in clean_cache:
            Xtr = model.subject_betas(tr_sub)
            cols = model._columns(tr_sub)
            coords = None
            if tr_sub.mask_img is not None:
                coords = tr_sub.voxel_coords_mni()[cols]
            clean = model.predict_latents(s, T["betas"])
            clean_lat[s] = clean
            clean_sc = _score(shape, clean, T["truth"], params.diag_resolution)
            clean_cache[s] = (Xtr.mean(0), Xtr.std(0) + 1e-6, model.subject_roi(tr_sub), coords,
                              clean_sc)
        mean, sd, roi_lab, coords, clean_sc = clean_cache[s]
        b = rng.choice(len(T["betas"]), size=min(params.diag_batch, len(T["betas"])),
                       replace=False)
        sev = {"noise": rng.uniform(1.0, 3.0), "silence": 1.0,
               "lesion": rng.uniform(0.3, 0.8)}[kind]
        bad = corrupt_betas(T["betas"][b], roi_lab, roi, kind, sev, rng, mean, sd, coords)
        lat = model.predict_latents(s, bad)
        sc = _score(shape, lat, _subset(T["truth"], b), params.diag_resolution)
        drop = [np.nanmean(sc[m]) - np.nanmean(clean_sc[m][b]) for m in METRICS]
        # how far each decoded attribute moved from the healthy decoding of the same trials
        cl = clean_lat[s]
        shift = [np.abs(lat["shape_probs"] - cl["shape_probs"][b]).sum(1).mean(),
                 np.degrees(np.arccos(np.clip(np.abs((lat["axis"] * cl["axis"][b]).sum(1)),
                                              0, 1))).mean(),
                 np.abs(np.log(lat["size"] / cl["size"][b])).mean(),
                 np.linalg.norm(lat["position"] - cl["position"][b], axis=1).mean(),
                 np.linalg.norm(lat["rgb"] - cl["rgb"][b], axis=1).mean()]
        feats.append(np.nan_to_num(np.concatenate([drop, shift])))
        labels.append(roi)
        kinds.append(kind)
    X = np.asarray(feats)
    y = np.asarray([rois_all.index(r) for r in labels])
    n_splits = int(min(5, np.bincount(y).min()))
    if n_splits >= 2:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        pred = cross_val_predict(clf, X, y, cv=StratifiedKFold(n_splits, shuffle=True,
                                                               random_state=run.seed))
    else:  # too few patients to cross-validate: nearest mean drop pattern (resubstitution)
        means = np.stack([X[y == c].mean(0) for c in range(len(rois_all))])
        pred = ((X[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    C = confusion(y, pred, n_classes=len(rois_all))
    recall = {r: float(C[i, i] / max(1, C[i].sum())) for i, r in enumerate(rois_all)}
    acc = float(np.trace(C) / C.sum())
    rows = [{"corrupted ROI": r, **{f"diagnosed {q}": int(C[i, j]) for j, q in
                                    enumerate(rois_all)}, "recall": round(recall[r], 3)}
            for i, r in enumerate(rois_all)]
    run.add_table("diagnosis_confusion", rows, caption=(
        f"Disorder diagnosis: corrupted ROI (rows) vs diagnosed ROI, {len(X)} simulated "
        f"patients ({', '.join(params.diag_kinds)}), cross-validated logistic regression on "
        f"the drops of {len(METRICS)} metrics and the shifts of 5 decoded attributes (shape "
        f"probabilities, axis, size, position, colour) from the healthy decoding; accuracy "
        f"{acc:.2f}, chance "
        f"{1 / len(rois_all):.2f}."))
    drops = np.stack([X[y == c, :len(METRICS)].mean(0) for c in range(len(rois_all))])
    drop_rows = [{"ROI": r, **{LABELS[m]: round(float(drops[i, j]), 4)
                               for j, m in enumerate(METRICS)}} for i, r in enumerate(rois_all)]
    run.add_table("diagnosis_drops", drop_rows, caption=(
        "Mean change of each metric when the ROI is corrupted (corrupted minus clean; IoU and "
        "accuracy fall, errors rise)."))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    im = axes[0].imshow(C / np.maximum(1, C.sum(1, keepdims=True)), vmin=0, vmax=1,
                        cmap="viridis")
    for i in range(len(rois_all)):
        for j in range(len(rois_all)):
            axes[0].text(j, i, int(C[i, j]), ha="center", va="center", fontsize=7,
                         color="w" if C[i, j] < C[i].sum() / 2 else "k")
    axes[0].set(xticks=range(len(rois_all)), yticks=range(len(rois_all)),
                xlabel="diagnosed", ylabel="corrupted",
                title=f"accuracy {acc:.2f} (chance {1 / len(rois_all):.2f})")
    axes[0].set_xticklabels(rois_all)
    axes[0].set_yticklabels(rois_all)
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    z = drops / (np.abs(drops).max(0, keepdims=True) + 1e-12)
    axes[1].imshow(z, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    axes[1].set(xticks=range(len(METRICS)), yticks=range(len(rois_all)),
                title="metric change per corrupted ROI (scaled per metric)")
    axes[1].set_xticklabels([LABELS[m] for m in METRICS], rotation=45, ha="right", fontsize=7)
    axes[1].set_yticklabels(rois_all)
    fig.tight_layout()
    run.add_figure(fig, "diagnosis", caption=(
        "Left: confusion table of the disorder diagnosis (row-normalised colour, counts "
        "written). Right: the drop pattern the diagnoser reads."))
    by_kind = {}
    for k in params.diag_kinds:
        sel = np.asarray(kinds) == k
        by_kind[k] = float((pred[sel] == y[sel]).mean())
    return {"accuracy": acc, "chance": 1 / len(rois_all), "recall": recall,
            "accuracy_by_kind": by_kind, "n_patients": len(X),
            "confusion": C.tolist(), "rois": rois_all}


def _contributions(params, run, make, train, test, tests, names, shape, plt) -> dict:
    """Decode from each ROI alone, cumulative ROI sets and each hemisphere."""
    from decoding.decoders.brain3d import ALL_ROIS, object_targets, select_voxels

    subs = [f"subj{s:02d}" for s in params.contribution_subjects if f"subj{s:02d}" in names]
    if not subs:
        raise ValueError(f"contribution_subjects: none of {params.contribution_subjects} is "
                         f"among the loaded subjects {names}")
    sets: list[tuple[str, str, tuple[str, ...], str | None]] = []
    for r in ALL_ROIS:
        sets.append(("alone", r, (r,), None))
    for i in range(1, len(ALL_ROIS) + 1):
        sets.append(("cumulative", "+".join(ALL_ROIS[:i]) if i < 3 else
                     f"V1..{ALL_ROIS[i - 1]}", ALL_ROIS[:i], None))
    if params.hemispheres:
        sets += [("hemispheres", "left", ALL_ROIS, "left"), ("hemispheres", "right", ALL_ROIS,
                                                             "right")]
    out: dict[str, dict[str, dict[str, float]]] = {"alone": {}, "cumulative": {},
                                                    "hemispheres": {}}
    per_object: dict[str, dict[str, np.ndarray]] = {}
    for group, label, rois, hemi in run.progress(sets, desc="ROI sets"):
        scores = []
        for s in subs:
            tr = select_voxels(train.select(s), rois, hemi)
            te = select_voxels(test.select(s), rois, hemi)
            if not all(r in tr.subjects[s].roi_names for r in rois):
                continue
            m = make(rois=rois).fit(tr)
            rows = np.isin(te.subjects[s].stim_ids, tests[s]["ids"])
            b = m.subject_betas(te.subjects[s])[rows]
            truth = object_targets(te.stimuli, te.subjects[s].stim_ids[rows])
            scores.append(_score(shape, m.predict_latents(s, b), truth, params.eval_resolution))
        if scores:
            pooled = {k: np.concatenate([d[k] for d in scores]) for k in scores[0]}
            out[group][label] = _mean(pooled)
            if group == "hemispheres":
                per_object[label] = pooled
    if {"left", "right"} <= set(per_object):
        from scipy.stats import wilcoxon

        tests = {}
        for k in ("chamfer", "silhouette_iou", "iou"):
            a, b = per_object["left"][k], per_object["right"][k]
            tests[k] = {"left_minus_right": float(np.mean(a - b)),
                        "wilcoxon_p": float(wilcoxon(a, b).pvalue) if np.any(a != b) else 1.0}
        out["hemisphere_tests"] = tests
    rows = [{"set": g, "ROIs": lab, **{LABELS[k]: round(v[k], 4) for k in METRICS}}
            for g in ("alone", "cumulative", "hemispheres") for lab, v in out[g].items()]
    run.add_table("contributions", rows, caption=(
        f"Decoding from each ROI alone, cumulative ROI sets and each hemisphere (subjects "
        f"{', '.join(subs)}; MNI x < 0 is left)."))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for ax, g in zip(axes, ("alone", "cumulative", "hemispheres")):
        labs = list(out[g])
        if not labs:
            ax.set_axis_off()
            continue
        x = np.arange(len(labs))
        for j, (k, c) in enumerate((("iou", "C0"), ("silhouette_iou", "C1"),
                                    ("class_correct", "C2"))):
            ax.bar(x + (j - 1) * 0.27, [out[g][lab][k] for lab in labs], 0.27, color=c,
                   label=LABELS[k])
        ax.set_xticks(x)
        ax.set_xticklabels(labs, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title({"alone": "each ROI alone", "cumulative": "cumulative ROI sets",
                      "hemispheres": "hemisphere"}[g])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    run.add_figure(fig, "contributions", caption=(
        "Region contributions: voxel IoU, silhouette IoU and shape accuracy of the meshes "
        "decoded from each ROI alone, from cumulative sets, and from one hemisphere."))
    return out
