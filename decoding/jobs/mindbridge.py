"""Job ``mindbridge``: one cross-subject decoder, reset-tuned for a held-out subject.

The experiments of Wang et al. (2024, CVPR, "MindBridge: A Cross-Subject Brain Decoding
Framework") on the simulated visual cortex (or an NSD root: same code), with the
generation layer of the suite for the reconstructions:

1. Table 1: one MindBridge model over the training subjects vs one model per subject
   (embedding-level identification and retrieval; PixCorr, SSIM, low/high 2-way and
   shape / colour accuracy of the reconstructions; the generator's upper bound from the true
   embeddings);
2. Table 2: the held-out subject with 250 / 500 / 1,500 samples, reset-tuning vs training
   from scratch vs full fine-tuning;
3. ablations: aggregation (adaptive max / average / interpolation), losses (SoftCLIP only,
   + MSE, + reconstruction and cycle);
4. a grid of true stimuli and reconstructions per subject and for the new subject;
5. fMRI synthesis: subject a's betas through b's builder, scored against b's real betas for
   the same (shared test) images, against a mean-response baseline;
6. the path to pixels (``pixels``): the reconstructions from the decoded embeddings as they
   are, through the embedding prior, from the low-level image, and both (MindEye2's pieces),
   read by the referee, with the fraction that shows any object.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MindBridgeParams", "mindbridge", "embedding_scores", "synthesis_scores",
           "attribute_readout"]

EXPERIMENTS = ("table1", "table2", "ablations", "synthesis", "reconstructions", "pixels")
STRATEGIES = ("reset", "full", "scratch")
LOSS_VARIANTS = ("softclip", "softclip+mse", "all")
#: The cross-subject simulation: 5 subjects, 300 shared test images, 1,600 own images each.
DEFAULT_DATASET: dict[str, Any] = dict(
    n_subjects=5, n_sessions=4, trials_per_session=750, n_shared=300, n_subject_images=1900,
)  # fmt: skip


class MindBridgeParams(BaseModel):
    """Parameters of the ``mindbridge`` job (``configs/decode/mindbridge.yaml``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    nsd_root: str | None = Field(None, description="NSD root; None: a simulated NSD (cached)")
    dataset: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_DATASET),
        description="default_nsd(...) overrides of the cached simulation",
    )
    simulate: dict[str, Any] | None = Field(
        None, description="simulate_nsd(...) arguments for an in-memory dataset (tests)"
    )
    subjects: list[int] = Field([1, 2, 3, 4, 5], description="1-based subjects to load")
    held_out: int = Field(5, description="the new subject (reset-tuned, never in fit)")
    image_size: int = Field(64, ge=8)
    image_features: dict[str, Any] = Field(
        default_factory=lambda: {"name": "stimnet"},
        description="decoding.features.get_extractor(**image_features); {name: clip, path: "
        "..., hidden_states: bool}: image and text targets from one local CLIP folder",
    )
    captions: str | None = Field(
        None, description="JSON {stimulus id: caption} (real NSD: COCO); default: attributes"
    )
    text_encoder: dict[str, Any] | None = Field(
        default_factory=lambda: {"name": "stimtext"},
        description="decoding.semantics.get_text_encoder(**text_encoder); null: no text",
    )
    model: dict[str, Any] = Field(default_factory=dict, description="MindBridge(...) arguments")
    pretrained: str | None = Field(None, description="a save_pretrained folder: skip the fit")
    experiments: list[str] = Field(list(EXPERIMENTS), description=f"among {list(EXPERIMENTS)}")
    new_subject_samples: list[int] = Field([250, 500, 1500])
    strategies: list[str] = Field(list(STRATEGIES), description=f"among {list(STRATEGIES)}")
    aggregations: list[str] = Field(["max", "average", "interpolation"])
    loss_variants: list[str] = Field(list(LOSS_VARIANTS))
    ablation_epochs: int | None = Field(None, ge=1, description="default: model n_epochs")
    n_candidates: int = Field(300, ge=2, description="retrieval candidate-set size")
    n_recon: int = Field(300, ge=2, description="test images reconstructed per subject")
    recon_steps: int = Field(20, ge=1, description="denoising steps")
    recon_samples: int = Field(1, ge=1, description="samples per image (best by brain)")
    guidance_scale: float | None = Field(None, ge=0)
    grid_images: int = Field(8, ge=1)
    pipeline: str | None = Field(None, description="a local pipeline folder (default: shipped)")
    evaluator: dict[str, Any] = Field(
        default_factory=dict, description="image_eval.get_evaluator(**evaluator) (default shipped)"
    )
    ridge_reference: bool = Field(
        True, description="Table 1 also shows a per-subject ridge from voxels to the embeddings"
    )
    prior: dict[str, Any] | None = Field(
        default_factory=lambda: {"method": "knn"},
        description="MindBridge.fit_prior(method=..., **rest) on the decoded embeddings; "
        "null: the generator gets them as decoded",
    )
    prior_labels: str | None = Field(
        "colour", description="a stimulus attribute the prior weighs through a per-subject "
        "read-out from the betas (null: none; skipped when the stimuli lack it)"
    )
    low_level: bool = Field(True, description="seed the generator with the low-level image")
    low_level_rois: str | list[str] | None = Field(
        "early", description="ROIs of the low-level ridge ('early': V1-hV4; null: all voxels)"
    )
    low_level_strength: float = Field(0.6, ge=0, le=1, description="img2img strength")
    n_pixel_images: int = Field(100, ge=2, description="test images per subject, pixels ablation")
    pixel_strengths: list[float] = Field(
        default_factory=list, description="more img2img strengths shown in the pixels ablation"
    )


# --------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------
def embedding_scores(pred: dict[str, np.ndarray], true_image: np.ndarray,
                     true_text: np.ndarray | None, n_candidates: int = 300,
                     random_state: int = 0) -> dict[str, float]:  # fmt: skip
    """Embedding-level decoding scores on a test set.

    2-way identification of the predicted image (and semantic) embedding (chance 0.5),
    and top-1 retrieval among ``n_candidates`` test images (chance 1 / n_candidates): image
    retrieval (brain embedding -> image) and brain retrieval (image -> brain embedding).
    """
    from decoding.evaluation import retrieval_top1, two_way_identification

    n = len(true_image)
    k = min(n_candidates, n)
    draws = 1 if k == n else 30  # one candidate set when it is the whole test set
    out = {
        "image_2way": two_way_identification(pred["image"], true_image),
        "image_retrieval": retrieval_top1(pred["image"], true_image, k, draws, random_state),
        "brain_retrieval": retrieval_top1(true_image, pred["image"], k, draws, random_state),
    }
    if true_text is not None and "text" in pred:
        out["semantic_2way"] = two_way_identification(pred["text"], true_text)
    return out


def synthesis_scores(pred: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """How well synthesized (aggregated, standardised) fMRI matches the real one.

    ``r2``: mean over bins of the coefficient of determination across images; ``r``: mean
    over bins of the Pearson correlation across images; ``pattern_2way``: 2-way
    identification of each image's synthesized pattern among the real ones (chance 0.5).
    """
    import warnings

    from decoding.evaluation import pearson_r, r2, two_way_identification
    from decoding.evaluation.metrics import ConstantInputWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return {
            "r2": float(np.mean(r2(real, pred))),
            "r": float(np.mean(pearson_r(real, pred))),
            "pattern_2way": two_way_identification(pred, real),
        }


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def _load(params: MindBridgeParams, run):
    """The dataset with stimulus attributes (simulated roots: from the ground truth)."""
    from data_loaders.schema import FMRIDataset, Stimuli

    attributes = None
    if params.simulate is not None:
        from data_loaders.simulate.fmri import simulate_nsd

        sim = simulate_nsd(**params.simulate, random_state=run.seed, verbose=False)
        raw = sim.to_dataset(subjects=params.subjects)
        attributes = sim.stimuli.attributes
    else:
        from data_loaders.nsd import load_nsd
        from data_loaders.simulate.fmri import default_nsd, load_truth

        root = params.nsd_root or default_nsd(data_home=run.data_dir, verbose=run.verbose,
                                              **params.dataset)  # fmt: skip
        raw = load_nsd(root, subjects=params.subjects, image_size=params.image_size,
                       verbose=run.verbose)  # fmt: skip
        try:
            attributes = load_truth(root)["attributes"]
        except FileNotFoundError:
            attributes = None
    st = raw.stimuli
    if attributes is not None:  # indexed by stimulus id, as NSD's imgBrick
        attrs = {k: np.asarray(v)[st.ids] for k, v in attributes.items()}
        st = Stimuli(st.images, st.ids, {**st.attributes, **attrs}, st.objects_3d)
    return FMRIDataset(st, raw.subjects)


def _subset(ds, subject: str, ids: np.ndarray):
    """A one-subject dataset holding only the trials on the given stimulus ids."""
    from data_loaders.schema import FMRIDataset, FMRISubject

    sub = ds.subjects[subject]
    mask = np.isin(sub.stim_ids, ids)
    new = FMRISubject(betas=sub.betas[mask], stim_ids=sub.stim_ids[mask], roi=sub.roi,
                      mask_img=sub.mask_img, ncsnr=sub.ncsnr, subject=subject)  # fmt: skip
    return FMRIDataset(ds.stimuli, {subject: new})


def _captions(params: MindBridgeParams, stimuli) -> list[str] | None:
    """One caption per stimulus: from ``params.captions`` (JSON ``{id: caption}``, e.g. COCO
    captions for NSD's 73k ids) or, without it, the default (scene attributes)."""
    if params.captions is None:
        return None
    import json
    from pathlib import Path

    path = Path(params.captions)
    if not path.is_file():
        raise FileNotFoundError(f"captions: expected a JSON file {{id: caption}}, got {path}")
    table = {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    missing = [int(i) for i in stimuli.ids if int(i) not in table]
    if missing:
        raise ValueError(
            f"captions: {path} has no caption for stimulus ids {missing[:5]} ({len(missing)} "
            "in all); expected one per stimulus"
        )
    return [table[int(i)] for i in stimuli.ids]


def _targets(params: MindBridgeParams, run, stimuli):
    from decoding.decoders.mindbridge import EmbeddingTargets, clip_targets

    img_kw = dict(params.image_features)
    img_name = img_kw.pop("name", "stimnet")
    captions = _captions(params, stimuli)
    if img_name == "clip":  # a local CLIP folder: both targets (the paper's), one model
        if "path" not in img_kw:
            raise ValueError("image_features: {name: clip} needs a path to a local CLIP folder")
        if params.text_encoder is not None and captions is None:
            from decoding import semantics

            captions = semantics.captions_from_attributes(stimuli)
        return clip_targets(img_kw.pop("path"), stimuli,
                            captions=captions if params.text_encoder is not None else None,
                            **img_kw)  # fmt: skip
    if img_name == "stimnet":
        img_kw.setdefault("data_home", run.data_dir)
        img_kw.setdefault("verbose", run.verbose)
    txt_name, txt_kw = None, {}
    if params.text_encoder is not None:
        txt_kw = dict(params.text_encoder)
        txt_name = txt_kw.pop("name", "stimtext")
        if txt_name == "stimtext":
            txt_kw.setdefault("data_home", run.data_dir)
            txt_kw.setdefault("verbose", run.verbose)
            if dict(params.image_features) != {"name": "stimnet"}:
                txt_kw.setdefault("features", dict(params.image_features))
    return EmbeddingTargets.from_registries(stimuli, img_name, txt_name, captions=captions,
                                            image_kwargs=img_kw, text_kwargs=txt_kw)  # fmt: skip


# --------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------
def mindbridge(params: MindBridgeParams, run) -> dict:
    """Train MindBridge across subjects, reset-tune a held-out one, score and reconstruct."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from decoding.decoders.mindbridge import MindBridge

    for name, values, allowed in (("experiments", params.experiments, EXPERIMENTS),
                                  ("strategies", params.strategies, STRATEGIES),
                                  ("loss_variants", params.loss_variants, LOSS_VARIANTS)):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{name}: unknown {bad}; expected among {list(allowed)}")
    unknown = sorted(set(params.model) - set(MindBridge().get_params()))
    if unknown:
        raise ValueError(
            f"model: unknown MindBridge arguments {unknown}; expected among "
            f"{sorted(MindBridge().get_params())}"
        )
    held = f"subj{params.held_out:02d}"
    if params.held_out not in params.subjects or len(params.subjects) < 3:
        raise ValueError(
            f"held_out: expected one of subjects {params.subjects} (at least 3 subjects), got "
            f"{params.held_out}"
        )
    exp = set(params.experiments)
    seconds: dict[str, float] = {}
    metrics: dict[str, Any] = {"held_out": held}
    device = "cpu" if run.device == "auto" else run.device
    model_kw = {"random_state": run.seed, "verbose": run.verbose, "device": device,
                **params.model}  # fmt: skip

    # -- data and targets --------------------------------------------------------------------
    t0 = time.perf_counter()
    raw = _load(params, run)
    train, test = raw.split("shared")
    test = test.average_repeats()  # the paper tests on the 3-repeat average
    seconds["data"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    targets = _targets(params, run, raw.stimuli)
    seconds["targets"] = time.perf_counter() - t0
    run.log(f"data: {raw!r}; targets {targets.image_id} ({targets.image_dim}) / "
            f"{targets.text_id} ({targets.text_dim})")  # fmt: skip
    sources = [s for s in raw.subject_names if s != held]
    attrs = raw.stimuli.attributes

    def true_of(subject: str):
        rows = targets.rows(test.subjects[subject].stim_ids)
        return targets.image[rows], (targets.text[rows] if targets.text is not None else None)

    def scores(model, subject: str) -> dict[str, float]:
        pred = model.predict_embeddings(subject, test.subjects[subject].betas)
        img, txt = true_of(subject)
        return embedding_scores(pred, img, txt, params.n_candidates, run.seed)

    def mean_rows(rows: list[dict], keys: list[str]) -> dict[str, float]:
        return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys
                if any(k in r for r in rows)}  # fmt: skip

    # -- the cross-subject model ----------------------------------------------------------------
    t0 = time.perf_counter()
    if params.pretrained:
        bridge = MindBridge.from_pretrained(params.pretrained, device=device,
                                            image_embedding=targets.image_id,
                                            text_embedding=targets.text_id)  # fmt: skip
        missing = [s for s in sources if s not in bridge.subjects_]
        if missing:
            raise ValueError(
                f"pretrained: the model knows {list(bridge.subjects_)}, not {missing}"
            )
    else:
        bridge = MindBridge(**model_kw).fit(train.select(sources), targets,
                                             checkpoint_dir=run.checkpoint_dir / "bridge")
        bridge.save_pretrained(run.checkpoint_dir / "mindbridge")
    seconds["fit_bridge"] = time.perf_counter() - t0
    metrics["n_parameters"] = bridge.n_parameters_
    keys = ["image_2way", "semantic_2way", "image_retrieval", "brain_retrieval"]

    hist = [h for h in bridge.history_ if "phase" not in h]
    if hist:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for k in ("image", "text", "rec", "cyc"):
            if k in hist[0]:
                ax.plot([h["epoch"] for h in hist], [h[k] for h in hist], label=k)
        ax.set(xlabel="epoch", ylabel="loss (weighted)", yscale="log",
               title=f"MindBridge on {len(sources)} subjects")  # fmt: skip
        ax.legend()
        fig.tight_layout()
        run.add_figure(fig, "training", caption="Training losses per epoch: image and semantic "
                       "(SoftCLIP + MSE), fMRI reconstruction, cycle.")  # fmt: skip

    # -- Table 1 -------------------------------------------------------------------------------
    table1: list[dict[str, Any]] = []
    singles: dict[str, Any] = {}
    if "table1" in exp:
        t0 = time.perf_counter()
        single_kw = {**model_kw, "rec_weight": 0.0, "cyc_weight": 0.0}  # MindSingle: no builder
        for s in run.progress(sources, desc="per-subject models"):
            singles[s] = MindBridge(**single_kw).fit(
                train.select(s), targets, checkpoint_dir=run.checkpoint_dir / f"single-{s}")
        seconds["fit_singles"] = time.perf_counter() - t0
        for s in sources:
            table1.append({"model": "MindBridge (1 model)", "subject": s, **scores(bridge, s)})
            table1.append({"model": "per-subject", "subject": s, **scores(singles[s], s)})
        if params.ridge_reference:
            t0 = time.perf_counter()
            for s in sources:
                table1.append({"model": "per-subject ridge (reference)", "subject": s,
                               **_ridge_scores(train, test, targets, s, params, run)})
            seconds["ridge_reference"] = time.perf_counter() - t0
    # -- reconstructions ----------------------------------------------------------------------
    pipe = None
    recon: dict[tuple[str, str], np.ndarray] = {}
    if "reconstructions" in exp:
        pipe = _pipeline(params, run, bridge)
        if pipe is None:
            metrics["reconstructions"] = "pending: decoding.generation has no shipped pipeline"
    n_rec = 0
    evaluator = None
    if pipe is not None:
        from decoding.evaluation.image_eval import get_evaluator

        ev_kw = dict(params.evaluator)
        ev_kw.setdefault("data_home", run.data_dir)
        ev_kw.setdefault("verbose", run.verbose)
        evaluator = get_evaluator(**ev_kw)
        t0 = time.perf_counter()
        _fit_pixel_path(params, bridge, train.select(sources), targets, pipe, run)
        if not params.pretrained:  # the saved model carries its path to pixels
            bridge.save_pretrained(run.checkpoint_dir / "mindbridge")
        for s, m in singles.items():
            _share_pixel_path(bridge, m, s)
        seconds["fit_prior_and_low_level"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_rec = min(params.n_recon, len(test.stimuli))
        rec_kw = dict(n_samples=params.recon_samples, num_inference_steps=params.recon_steps,
                      guidance_scale=params.guidance_scale, random_state=run.seed,
                      strength=params.low_level_strength)  # fmt: skip
        models = [("MindBridge (1 model)", bridge)]
        if singles:
            models.append(("per-subject", None))
        for label, model in models:
            for s in sources:
                m = model if model is not None else singles[s]
                recon[(label, s)] = m.reconstruct(s, test.subjects[s].betas[:n_rec], pipeline=pipe,
                                                  **rec_kw)  # fmt: skip
        seconds["reconstruct"] = time.perf_counter() - t0
        seconds["reconstruct_per_image"] = seconds["reconstruct"] / (n_rec * len(recon))
        true_rows, bound = {}, {}
        for s in sources:  # the shared test images: one upper bound serves every subject
            ids = test.subjects[s].stim_ids[:n_rec]
            key = tuple(ids.tolist())
            if key not in bound:
                bound[key] = _recon_metrics(raw.stimuli, ids, None, attrs, pipe, targets, run,
                                            rec_kw, evaluator)  # fmt: skip
            true_rows[s] = bound[key]
        for row in table1:
            key = (row["model"], row["subject"])
            if key in recon:
                ids = test.subjects[row["subject"]].stim_ids[:n_rec]
                row.update(_recon_metrics(raw.stimuli, ids, recon[key], attrs, pipe, targets, run,
                                          rec_kw, evaluator))  # fmt: skip
        for s in sources:
            table1.append({"model": "upper bound (true embeddings)", "subject": s,
                           **true_rows[s]})  # fmt: skip
        if "pixels" in exp:
            t0 = time.perf_counter()
            _pixels_experiment(plt, run, bridge, raw.stimuli, train, test, sources, attrs, pipe,
                               rec_kw, evaluator, params.n_pixel_images, metrics,
                               params.pixel_strengths)  # fmt: skip
            seconds["pixels"] = time.perf_counter() - t0
    if table1:
        cols = keys + ["pixcorr", "ssim", "two_way_low", "two_way_high", "object_rate",
                       "shape_accuracy", "colour_accuracy"]  # fmt: skip
        for label in dict.fromkeys(r["model"] for r in table1):
            rows = [r for r in table1 if r["model"] == label]
            table1.append({"model": label, "subject": "mean", **mean_rows(rows, cols)})
        run.add_table("table1", _rounded(table1), caption=(
            f"Like the paper's Table 1: one MindBridge model trained on {len(sources)} subjects "
            f"vs one model per subject, on the {len(test.stimuli)} shared test images "
            f"(3-repeat averages). Embedding level: 2-way identification of the decoded image "
            f"and semantic embeddings (chance 0.5), top-1 retrieval among "
            f"{min(params.n_candidates, len(test.stimuli))} (image: brain -> image; brain: "
            f"image -> brain). Reconstructions ({n_rec} images per subject, when the generator "
            "is there, through the embedding prior and the low-level image): PixCorr, SSIM, "
            "2-way at the referee's low / high layer, the fraction showing an object "
            "(object_rate: above the referee's floor on backgrounds alone), shape-class and "
            "colour accuracy (chance 1/8)."))
        cross = {r["subject"]: r for r in table1 if r["model"] == "MindBridge (1 model)"}
        single = {r["subject"]: r for r in table1 if r["model"] == "per-subject"}
        metrics["table1_mean"] = {k: {kk: round(v, 4) for kk, v in r.items()
                                      if isinstance(v, float)}
                                  for k, r in (("cross", cross["mean"]),
                                               ("single", single["mean"]))}  # fmt: skip
        ridge = {r["subject"]: r for r in table1 if r["model"].startswith("per-subject ridge")}
        _table1_figure(plt, run, cross, single, sources, ridge or None)
        id_keys = [k for k in ("image_2way", "semantic_2way", "two_way_low", "two_way_high")
                   if k in cross["mean"]]  # fmt: skip
        rel = {k: cross["mean"][k] / single["mean"][k] - 1 for k in id_keys}
        worst = min(rel.values())
        metrics["table1_cross_vs_single_relative"] = {k: round(v, 4) for k, v in rel.items()}
        text = ", ".join(f"{k} {cross['mean'][k]:.3f} vs {single['mean'][k]:.3f}"
                         for k in id_keys)  # fmt: skip
        _claim(run, "one_model", "One cross-subject model matches subject-specific models "
               "(paper: CLIP 2-way 94.7 vs 94.3, mean of 4 subjects)",
               f"mean over {len(sources)} subjects, cross vs per-subject: {text}; retrieval "
               f"{cross['mean']['image_retrieval']:.3f} vs {single['mean']['image_retrieval']:.3f}",
               "holds" if worst >= -0.05 else "weaker" if worst >= -0.15 else "does not hold",
               "table1")  # fmt: skip
        if "semantic_2way" in cross["mean"]:
            v = cross["mean"]["semantic_2way"]
            _claim(run, "semantic", "Semantic 2-way well above chance (0.5)",
                   f"semantic 2-way {v:.3f}", "holds" if v > 0.7 else "weaker", "table1")
        if "shape_accuracy" in cross["mean"]:
            _recon_claim(run, "reconstructions", "Reconstructions from brains show the object "
                         f"(mean of {len(sources)} subjects, one model)", cross["mean"],
                         {"shape_accuracy": 0.6, "colour_accuracy": 0.7, "two_way_high": 0.9,
                          "object_rate": 0.95},
                         np.mean([true_rows[s]["shape_accuracy"] for s in sources]))  # fmt: skip

    # -- Table 2: the new subject ---------------------------------------------------------
    table2: list[dict[str, Any]] = []
    tuned_500 = None
    if "table2" in exp:
        t0 = time.perf_counter()
        rng = np.random.default_rng(run.seed + 17)
        own = np.unique(train.subjects[held].stim_ids)
        sizes = sorted({min(n, own.size) for n in params.new_subject_samples})
        order = rng.permutation(own)  # nested subsets: 250 within 500 within 1,500
        bsz = bridge.batch_size
        for n in run.progress(sizes, desc="new-subject sizes"):
            if n < bsz:
                raise ValueError(f"new_subject_samples: {n} < batch_size {bsz}")
            part = _subset(train, held, order[:n])
            for strategy in params.strategies:
                ck = run.checkpoint_dir / f"new-{strategy}-{n}"
                if strategy == "scratch":
                    m = MindBridge(**{**model_kw, "n_epochs": bridge.tune_epochs,
                                      "lr": bridge.tune_lr}).fit(part, targets, checkpoint_dir=ck)
                else:
                    m = bridge.copy().reset_tune(part, targets, source=train.select(sources),
                                                 strategy=strategy, checkpoint_dir=ck)
                row = {"strategy": strategy, "n_samples": n, **scores(m, held)}
                if pipe is not None and n == _closest(sizes, 500) and strategy == "reset":
                    tuned_500 = m
                    if params.low_level:  # its own low-level ridge, from the same 500 images
                        m.fit_low_level(part, pipe, rois=params.low_level_rois)
                    labels = _labels(params, part)
                    if getattr(m, "readout_", None) and labels:
                        m.fit_label_readout(part, labels)
                table2.append(row)
        seconds["table2"] = time.perf_counter() - t0
        if tuned_500 is not None:
            recon[("new", held)] = tuned_500.reconstruct(
                held, test.subjects[held].betas[:n_rec], pipeline=pipe,
                n_samples=params.recon_samples,
                num_inference_steps=params.recon_steps, guidance_scale=params.guidance_scale,
                random_state=run.seed, strength=params.low_level_strength)  # fmt: skip
            ids = test.subjects[held].stim_ids[:n_rec]
            for row in table2:
                if row["strategy"] == "reset" and row["n_samples"] == _closest(sizes, 500):
                    row.update(_recon_metrics(raw.stimuli, ids, recon[("new", held)], attrs, pipe,
                                              targets, run, {}, evaluator))  # fmt: skip
                    if "shape_accuracy" in row:
                        _recon_claim(run, "new_subject_reconstructions",
                                     f"The new subject, reset-tuned on {row['n_samples']} "
                                     "images: reconstructions show the object", row,
                                     {"shape_accuracy": 0.5, "colour_accuracy": 0.6})
        run.add_table("table2", _rounded(table2), caption=(
            f"Like the paper's Table 2: the new subject {held} with n training images. reset: "
            "fresh embedder and builder, translator frozen, source batches for the cycle "
            "(pseudo data augmentation); full: the same with every parameter trained; scratch: "
            f"a fresh model on {held} alone. {bridge.tune_epochs} epochs each."))
        _table2_figure(plt, run, table2, held)
        verdicts = []
        parts = []
        for n in sizes:
            row = {r["strategy"]: r for r in table2 if r["n_samples"] == n}
            if "reset" in row and "scratch" in row:
                a, b = row["reset"]["image_retrieval"], row["scratch"]["image_retrieval"]
                a2, b2 = row["reset"]["image_2way"], row["scratch"]["image_2way"]
                parts.append(f"n={n}: retrieval {a:.3f} vs {b:.3f}, 2-way {a2:.3f} vs {b2:.3f}")
                if n <= 500:
                    verdicts.append(a > b and a2 >= b2)
        if parts:
            _claim(run, "reset_tuning", "A new subject: reset-tuning beats training from scratch "
                   "(paper, 500 samples: CLIP 2-way 86.7 vs 80.1)", "reset vs scratch; " +
                   "; ".join(parts),
                   "holds" if verdicts and all(verdicts) else
                   "weaker" if any(verdicts) else "does not hold", "table2")  # fmt: skip

    # -- ablations -------------------------------------------------------------------------
    if "ablations" in exp:
        t0 = time.perf_counter()
        ab_rows = []
        ab_kw = dict(model_kw)
        if params.ablation_epochs is not None:
            ab_kw["n_epochs"] = params.ablation_epochs
        reuse = params.ablation_epochs is None and not params.pretrained
        base_agg = bridge.aggregation
        for agg in params.aggregations:
            if reuse and agg == base_agg and _is_all_losses(bridge):
                m = bridge
            else:
                m = MindBridge(**{**ab_kw, "aggregation": agg}).fit(
                    train.select(sources), targets,
                    checkpoint_dir=run.checkpoint_dir / f"agg-{agg}")
            ab_rows.append({"ablation": "aggregation", "variant": agg,
                            **mean_rows([scores(m, s) for s in sources], keys)})  # fmt: skip
        loss_kw = {"softclip": dict(mse_weight=0.0, rec_weight=0.0, cyc_weight=0.0),
                   "softclip+mse": dict(rec_weight=0.0, cyc_weight=0.0), "all": {}}  # fmt: skip
        for variant in params.loss_variants:
            if reuse and variant == "all":
                m = bridge
            else:
                kw = {**ab_kw, **loss_kw[variant]}
                if variant == "all":
                    kw.setdefault("mse_weight", MindBridge().mse_weight)
                m = MindBridge(**kw).fit(train.select(sources), targets,
                                         checkpoint_dir=run.checkpoint_dir / f"loss-{variant}")
            ab_rows.append({"ablation": "losses", "variant": variant,
                            **mean_rows([scores(m, s) for s in sources], keys)})  # fmt: skip
        seconds["ablations"] = time.perf_counter() - t0
        run.add_table("ablations", _rounded(ab_rows), caption=(
            "Ablations (like the paper's Tables 3 and 4), mean over the training subjects: "
            "aggregation f (adaptive max-pooling, adaptive average pooling, linear "
            "interpolation) and pretraining losses (SoftCLIP only; + MSE; + fMRI "
            "reconstruction and cycle)."))
        _ablation_figure(plt, run, ab_rows)
        agg = {r["variant"]: r for r in ab_rows if r["ablation"] == "aggregation"}
        if {"max", "average", "interpolation"} <= set(agg):
            v = {k: agg[k]["image_retrieval"] for k in ("max", "average", "interpolation")}
            best = max(v, key=v.get)
            _claim(run, "aggregation", "Adaptive max-pooling is the best aggregation (paper "
                   "Alex(2): max 88.7, average 87.4, interpolation 87.1)",
                   "image retrieval: " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()),
                   "holds" if best == "max" else "does not hold", "ablations")  # fmt: skip
        los = {r["variant"]: r for r in ab_rows if r["ablation"] == "losses"}
        if set(LOSS_VARIANTS) <= set(los):
            v = {k: los[k]["image_retrieval"] for k in LOSS_VARIANTS}
            ok = v["softclip+mse"] >= v["softclip"] and v["all"] >= v["softclip+mse"]
            _claim(run, "losses", "MSE, then reconstruction + cycle losses each help (paper "
                   "Table 4: CLIP 80.6 -> 94.5 -> 94.9)",
                   "image retrieval: " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()),
                   "holds" if ok else "weaker" if v["all"] >= v["softclip"] else "does not hold",
                   "ablations")  # fmt: skip

    # -- fMRI synthesis -------------------------------------------------------------------------
    if "synthesis" in exp and len(sources) >= 2:
        rows = []
        for a in sources:
            for b in sources:
                if a == b:
                    continue
                ta, tb = test.subjects[a], test.subjects[b]
                common, ia, ib = np.intersect1d(ta.stim_ids, tb.stim_ids, return_indices=True)
                real = bridge.aggregated(b, tb.betas[ib])
                syn = bridge.synthesize(a, ta.betas[ia], b)
                mean = np.zeros_like(real)  # b's training mean response (z-units: 0)
                copy = bridge.aggregated(a, ta.betas[ia])
                for label, pred in (("MindBridge B_b(E_a(v_a))", syn),
                                    ("mean response of b", mean), ("a's own pattern", copy)):
                    sc = synthesis_scores(pred, real)
                    if pred is mean:  # a constant cannot identify anything: chance, not 0
                        sc["pattern_2way"] = 0.5
                    rows.append({"method": label, "a": a, "b": b, "n_images": int(common.size),
                                 **sc})  # fmt: skip
        summary = []
        for label in dict.fromkeys(r["method"] for r in rows):
            sel = [r for r in rows if r["method"] == label]
            summary.append({"method": label, "pairs": len(sel),
                            **mean_rows(sel, ["r2", "r", "pattern_2way"])})  # fmt: skip
        run.add_table("synthesis", _rounded(summary), caption=(
            "fMRI synthesis: subject a's test betas through b's builder, scored against b's "
            "real (aggregated, standardised) betas on the same shared test images; mean over "
            "ordered pairs a != b of the training subjects. r2 and r: per aggregated bin across "
            "images; pattern_2way: identification of each image's pattern (chance 0.5; the "
            "constant mean response scores r = 0 and chance by definition)."))
        run.add_table("synthesis_pairs", _rounded(rows), caption="Per ordered pair (a, b).")
        _synthesis_figure(plt, run, summary)
        s0 = summary[0]
        base = summary[1]
        _claim(run, "synthesis", "Novel fMRI synthesis: a's brain through b's builder predicts "
               "b's response to the same image (better than a mean-response baseline)",
               f"R2 {s0['r2']:.3f} vs {base['r2']:.3f}, r {s0['r']:.3f}, pattern 2-way "
               f"{s0['pattern_2way']:.3f} vs {base['pattern_2way']:.3f}",
               "holds" if s0["r2"] > base["r2"] and s0["pattern_2way"] > 0.6 else "weaker",
               "synthesis")  # fmt: skip
        metrics["synthesis"] = {r["method"]: {k: round(v, 4) for k, v in r.items()
                                              if isinstance(v, float)} for r in summary}

    # -- the grid ------------------------------------------------------------------------------
    if recon:
        _grid_figure(plt, run, raw.stimuli, test, recon, params.grid_images, held)
        _save_reconstructions(run, raw.stimuli, test, recon)
    else:
        _retrieval_grid(plt, run, raw.stimuli, test, bridge, targets, sources, params.grid_images)

    metrics["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    metrics["level"] = run.level
    return metrics


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _claim(run, name, claim, value, verdict, figure=None) -> None:
    add = getattr(run, "add_claim", None)
    if add is not None:
        add(name, claim, value, verdict, figure)


def _ridge_scores(train, test, targets, subject, params, run) -> dict[str, float]:
    """A per-subject linear reference: ridge (LOO-chosen alpha) from all voxels to both
    embeddings, on repeat-averaged training betas (as Takagi & Nishimoto or Brain-Diffuser
    map fMRI to their latents)."""
    from sklearn.linear_model import RidgeCV

    from decoding.features import unit_norm

    avg = train.select(subject).average_repeats().subjects[subject]
    rows = targets.rows(avg.stim_ids)
    y = targets.image[rows]
    if targets.text is not None:
        y = np.concatenate([y, targets.text[rows]], axis=1)
    ridge = RidgeCV(alphas=np.logspace(1, 5, 5)).fit(avg.betas, y)
    p = ridge.predict(test.subjects[subject].betas)
    d = targets.image_dim
    pred = {"image": unit_norm(p[:, :d])}
    if targets.text is not None:
        pred["text"] = unit_norm(p[:, d:])
    rows = targets.rows(test.subjects[subject].stim_ids)
    return embedding_scores(pred, targets.image[rows],
                            targets.text[rows] if targets.text is not None else None,
                            params.n_candidates, run.seed)  # fmt: skip


def _at_size(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 images resized (bilinear) to ``size`` (height, width) when they differ."""
    if images.shape[1:3] == tuple(size):
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(t).resize(tuple(size)[::-1], Image.BILINEAR))
                     for t in images])  # fmt: skip


def _save_reconstructions(run, stimuli, test, recon) -> None:
    """``reconstructions.npz``: one row per model and subject (``cross_subj01``,
    ``single_subj01``, ..., ``new_subject``), on the shared test images in one order."""
    from decoding.evaluation.reconstructions import save_reconstructions

    names = {"MindBridge (1 model)": "cross", "per-subject": "single"}
    first = next(iter(recon))
    ids = np.asarray(test.subjects[first[1]].stim_ids[: len(recon[first])])
    rows: dict[str, np.ndarray] = {}
    for (label, subject), images in recon.items():
        sid = np.asarray(test.subjects[subject].stim_ids[: len(images)])
        name = "new_subject" if label == "new" else f"{names.get(label, label)}_{subject}"
        if len(sid) != len(ids) or set(sid.tolist()) != set(ids.tolist()):
            run.log(f"reconstructions.npz: {name} left out (other test images)")
            continue
        order = {v: i for i, v in enumerate(sid.tolist())}
        rows["".join(c if c.isalnum() else "_" for c in name)] = np.asarray(images)[
            [order[v] for v in ids.tolist()]]
    if not rows:
        return
    true = stimuli.images[stimuli.index_of(ids)]
    # the stimuli at the generator's size, as the table scores them
    true = _at_size(true, next(iter(rows.values())).shape[1:3])
    save_reconstructions(run.out_dir / "reconstructions.npz", true, ids, rows)


def _closest(sizes: list[int], n: int) -> int:
    return min(sizes, key=lambda s: abs(s - n))


def _is_all_losses(model) -> bool:
    return bool(model.mse_weight and model.rec_weight and model.cyc_weight and model.softclip)


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def _pipeline(params: MindBridgeParams, run, model):
    """The generator (a local folder or the shipped one), or None when there is none yet."""
    try:
        from decoding import generation
    except ImportError:
        return None
    try:
        if params.pipeline:
            pipe = generation.load_pipeline(params.pipeline)
        else:
            pipe = generation.default_pipeline()
    except FileNotFoundError as err:
        if params.pipeline:
            raise
        run.log(f"reconstructions pending: {err}")
        return None
    model.check_pipeline(pipe)
    return pipe


def _recon_metrics(stimuli, ids, images, attrs, pipe, targets, run, rec_kw,
                   evaluator=None) -> dict[str, float]:  # fmt: skip
    """Reconstruction metrics; ``images=None``: the upper bound from the true embeddings."""
    import torch

    from decoding.evaluation.image_eval import reconstruction_metrics

    pos = stimuli.index_of(ids)
    if images is None:
        rows = targets.rows(ids)
        txt = targets.text[rows] if targets.text is not None and pipe.text_embed_dim else None
        gen = torch.Generator().manual_seed(run.seed)
        kw = {"num_inference_steps": rec_kw.get("num_inference_steps", 20), "generator": gen}
        if rec_kw.get("guidance_scale") is not None:
            kw["guidance_scale"] = rec_kw["guidance_scale"]
        images = pipe(image_embeds=torch.from_numpy(targets.image[rows]),
                      text_embeds=None if txt is None else torch.from_numpy(txt), **kw).images
    true = stimuli.images[pos]
    images = np.asarray(images, dtype=np.float32)
    true = _at_size(true, images.shape[1:3])
    ta = None
    if "shape" in attrs and "colour" in attrs:
        ta = {"shape": np.asarray(attrs["shape"])[pos], "colour": np.asarray(attrs["colour"])[pos]}
    return reconstruction_metrics(images, true, ta, evaluator=evaluator)


def _table1_figure(plt, run, cross, single, sources, ridge=None) -> None:
    ks = [k for k in ("image_2way", "semantic_2way", "image_retrieval", "brain_retrieval",
                      "two_way_low", "two_way_high", "shape_accuracy") if k in cross["mean"]]
    fig, ax = plt.subplots(figsize=(1.3 * len(ks) + 2, 3.4))
    x = np.arange(len(ks))
    bars = [("MindBridge (1 model)", cross, "C3"), ("per-subject models", single, "C0")]
    if ridge is not None:
        bars.append(("per-subject ridge (reference)", ridge, "0.6"))
    width = 0.8 / len(bars)
    for j, (label, d, c) in enumerate(bars):
        vals = np.array([[d[s].get(k, np.nan) for k in ks] for s in sources])
        ax.bar(x + (j - (len(bars) - 1) / 2) * width, vals.mean(0), width, color=c,
               label=label, yerr=vals.std(0), capsize=2)  # fmt: skip
    ax.set_xticks(x, ks, rotation=20)
    ax.set(ylim=(0, 1.05), ylabel="score", title=f"Table 1: mean over {len(sources)} subjects")
    ax.legend(fontsize=8)
    fig.tight_layout()
    run.add_figure(fig, "table1", caption="One cross-subject model vs one model per subject "
                   "(bars: mean, whiskers: sd over subjects).")  # fmt: skip


def _table2_figure(plt, run, table2, held) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, k in zip(axes, ("image_retrieval", "image_2way"), strict=True):
        for strategy, c in (("reset", "C3"), ("full", "C1"), ("scratch", "C0")):
            rows = sorted((r for r in table2 if r["strategy"] == strategy),
                          key=lambda r: r["n_samples"])  # fmt: skip
            if rows:
                ax.plot([r["n_samples"] for r in rows], [r[k] for r in rows], "o-", color=c,
                        label=strategy)
        ax.set(xscale="log", xlabel=f"training images of {held}", ylabel=k)
        sizes = sorted({r["n_samples"] for r in table2})
        ax.minorticks_off()
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.legend(fontsize=8)
    fig.suptitle("Table 2: a new subject")
    fig.tight_layout()
    run.add_figure(fig, "table2", caption="New subject: reset-tuning (translator frozen) vs full "
                   "fine-tuning vs training from scratch.")  # fmt: skip


def _ablation_figure(plt, run, rows) -> None:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"{r['ablation']}: {r['variant']}" for r in rows]
    ax.barh(labels, [r["image_retrieval"] for r in rows], color="C2")
    ax.set(xlabel="image retrieval (top-1)", title="Ablations")
    fig.tight_layout()
    run.add_figure(fig, "ablations", caption="Ablations: image retrieval, mean over subjects.")


def _synthesis_figure(plt, run, summary) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    names = [r["method"] for r in summary]
    for ax, k in zip(axes, ("r2", "pattern_2way"), strict=True):
        ax.barh(names, [r[k] for r in summary], color=["C3", "0.6", "C0"][: len(names)])
        ax.set(xlabel=k)
    fig.suptitle("fMRI synthesis into another subject's space")
    fig.tight_layout()
    run.add_figure(fig, "synthesis", caption="Synthesized vs real aggregated fMRI of subject b.")


def _recon_claim(run, name: str, claim: str, row: dict, targets: dict[str, float],
                 bound: float | None = None) -> None:
    """A claim on reconstruction metrics against the issue's targets: holds when every target
    is met, weaker when at least half are, else does not hold."""
    met = {k: row[k] >= t for k, t in targets.items() if k in row}
    text = ", ".join(f"{k.replace('_accuracy', '')} {row[k]:.3f} (target {t})"
                     for k, t in targets.items() if k in row)  # fmt: skip
    if bound is not None:
        text += f"; shape from the true embeddings {bound:.3f}"
    verdict = "holds" if met and all(met.values()) else (
        "weaker" if 2 * sum(met.values()) >= len(met) else "does not hold")  # fmt: skip
    _claim(run, name, claim, text, verdict, "grid")


def _fit_pixel_path(params, model, train, targets, pipe, run) -> None:
    """The prior (one per model) and the low-level ridges (one per subject) of ``model``."""
    labels = _labels(params, train)
    if params.prior is not None:
        kw = dict(params.prior)
        model.fit_prior(train, targets, kw.pop("method", "knn"), labels=labels, **kw)
        if labels is not None:
            model.fit_label_readout(train, labels)
    if params.low_level:
        model.fit_low_level(train, pipe, rois=params.low_level_rois)
    run.log(f"path to pixels: prior {params.prior} (labels {labels}), low-level "
            f"{params.low_level} (strength {params.low_level_strength})")  # fmt: skip


def _labels(params, dataset) -> str | None:
    """The attribute the prior weighs, when the prior uses the bank and the stimuli have it."""
    key = params.prior_labels
    if key is None or params.prior is None or dict(params.prior).get("method", "knn") != "knn":
        return None
    return key if key in (dataset.stimuli.attributes or {}) else None


def _share_pixel_path(src, dst, subject: str) -> None:
    """Give a per-subject model the cross-subject model's prior and low-level ridge.

    Neither depends on the network: the prior lives in the embedding space and the ridge
    reads betas, so Table 1 compares the two networks through the same path to pixels."""
    if getattr(src, "prior_", None) is not None:
        dst.prior_ = src.prior_
    if subject in (getattr(src, "low_level_", None) or {}):
        dst.low_level_ = {subject: src.low_level_[subject]}
        dst.low_level_voxels_ = {subject: src.low_level_voxels_[subject]}
    if subject in (getattr(src, "readout_", None) or {}):
        dst.readout_ = {subject: src.readout_[subject]}


_PIXEL_ROWS = (
    ("decoded embeddings", dict(prior=False, low_level=False)),
    ("+ prior", dict(prior=True, low_level=False, readout=False)),
    ("+ prior + read-out", dict(prior=True, low_level=False)),
    ("+ low-level image", dict(prior=False, low_level=True)),
    ("+ prior + read-out + low-level (default)", dict(prior=True, low_level=True)),
)


def attribute_readout(train, test, stimuli, attrs, subjects, n_images: int | None = None
                      ) -> dict[str, float]:  # fmt: skip
    """How well the betas themselves tell each attribute: the brains' information ceiling.

    Per subject, a ridge classifier (standardised voxels, penalty by leave-one-out) learns
    the main object's ``shape`` and ``colour`` from the repeat-averaged training betas and
    reads the test images; returns the accuracies averaged over ``subjects``. A decoder that
    goes through embeddings cannot be expected to beat a read-out trained for the attribute.
    """
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    acc: dict[str, list[float]] = {"shape": [], "colour": []}
    for s in subjects:
        tr = train.select(s).average_repeats().subjects[s]
        te = test.subjects[s]
        ptr, pte = stimuli.index_of(tr.stim_ids), stimuli.index_of(te.stim_ids[:n_images])
        for key in acc:
            y = np.asarray(attrs[key])
            clf = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(0, 5, 11)))
            clf.fit(tr.betas, y[ptr])
            acc[key].append(float(clf.score(te.betas[:n_images], y[pte])))
    return {f"{k}_accuracy": float(np.mean(v)) for k, v in acc.items()}


def _pixels_experiment(plt, run, model, stimuli, train, test, sources, attrs, pipe, rec_kw,
                       evaluator, n_images: int, metrics: dict,
                       strengths: list[float] = ()) -> None:  # fmt: skip
    """The path-to-pixels ablation: each piece on and off, and the low-level image alone."""
    from decoding.evaluation.image_eval import reconstruction_metrics

    kw = {k: v for k, v in rec_kw.items() if k != "n_samples"}
    has_low = bool(getattr(model, "low_level_", None))
    has_ro = bool(getattr(model, "readout_", None)) and getattr(
        getattr(model, "prior_", None), "bank_labels_", None) is not None  # fmt: skip
    variants = [(label, v) for label, v in _PIXEL_ROWS
                if (has_low or not v["low_level"]) and (getattr(model, "prior_", None)
                                                         is not None or not v["prior"])
                and (has_ro or "read-out" not in label)]  # fmt: skip
    if not has_ro:  # without a read-out the default is prior + low-level
        variants = [(lab.replace(" + read-out", ""), v) for lab, v in variants]
    shown: dict[str, np.ndarray] = {}
    rows = []
    extra = [(f"default, strength {st}", dict(prior=True, low_level=True, strength=float(st)))
             for st in strengths if has_low and float(st) != kw.get("strength")]  # fmt: skip
    for label, flags in run.progress(variants + extra + [("low-level image alone", None)],
                                     desc="path to pixels"):  # fmt: skip
        if flags is None and not has_low:
            continue
        per = []
        t0 = time.perf_counter()
        for s in sources:
            betas = test.subjects[s].betas[:n_images]
            ids = test.subjects[s].stim_ids[:n_images]
            ims = model.low_level_images(s, betas, pipe) if flags is None else model.reconstruct(
                s, betas, pipeline=pipe, **{**kw, **flags})  # fmt: skip
            pos = stimuli.index_of(ids)
            ta = {k: np.asarray(attrs[k])[pos] for k in ("shape", "colour")} if (
                "shape" in attrs and "colour" in attrs) else None  # fmt: skip
            per.append(reconstruction_metrics(ims, _at_size(stimuli.images[pos], ims.shape[1:3]),
                                              ta, evaluator=evaluator))  # fmt: skip
            if s == sources[0]:
                shown[label] = ims
        sec = (time.perf_counter() - t0) / (n_images * len(sources))
        rows.append({"path": label, **{k: float(np.mean([p[k] for p in per])) for k in per[0]},
                     "seconds_per_image": sec})  # fmt: skip
    if "shape" in attrs and "colour" in attrs:
        rows.append({"path": "read-out from the betas (reference)",
                     **attribute_readout(train, test, stimuli, attrs, sources, n_images)})
    run.add_table("pixels", _rounded(rows), caption=(
        f"The path from decoded embeddings to pixels, mean over {len(sources)} subjects "
        f"({n_images} shared test images each), one MindBridge model: the decoded embeddings "
        "as they are; through the embedding prior (k-nearest true embeddings of the training "
        "images, MindEye2's diffusion prior in its lightest form); the prior weighing a "
        "per-subject read-out of the object's colour from the betas (read-out); starting from "
        "the low-level image (ridge from early visual cortex to the autoencoder's latents, "
        f"image-to-image at strength {kw.get('strength')}); all of them; and the low-level "
        "image alone. object_rate: "
        "the fraction above the referee's floor on backgrounds alone. Reference: shape and "
        "colour read straight from the betas by a ridge classifier trained for them (how much "
        "of each the simulated brains carry)."))
    metrics["pixels"] = {r["path"]: {k: round(v, 4) for k, v in r.items() if k != "path"}
                         for r in rows}  # fmt: skip
    by = {r["path"]: r for r in rows}
    if "decoded embeddings" in by and "+ prior" in by and "shape_accuracy" in by["+ prior"]:
        a, b = by["decoded embeddings"], by["+ prior"]
        ok = b["shape_accuracy"] > a["shape_accuracy"] and b["object_rate"] >= a["object_rate"]
        _claim(run, "prior", "A prior that carries decoded embeddings back to true ones brings "
               "the object back (MindEye2's diffusion prior)",
               f"shape {a['shape_accuracy']:.3f} -> {b['shape_accuracy']:.3f}, colour "
               f"{a['colour_accuracy']:.3f} -> {b['colour_accuracy']:.3f}, with an object "
               f"{a['object_rate']:.3f} -> {b['object_rate']:.3f}, 2-way high "
               f"{a['two_way_high']:.3f} -> {b['two_way_high']:.3f}",
               "holds" if ok else "does not hold", "pixels")  # fmt: skip
    default = next((r for r in by if r.endswith("(default)")), None)
    with_prior = "+ prior + read-out" if "+ prior + read-out" in by else "+ prior"
    if "+ prior" in by and "+ prior + read-out" in by and "shape_accuracy" in by["+ prior"]:
        a, b = by["+ prior"], by["+ prior + read-out"]
        _claim(run, "readout", "What the decoded embeddings lose, a read-out of the same "
               "brain gives back (the prior weighs its colour posterior)",
               f"colour {a['colour_accuracy']:.3f} -> {b['colour_accuracy']:.3f}, shape "
               f"{a['shape_accuracy']:.3f} -> {b['shape_accuracy']:.3f}, 2-way high "
               f"{a['two_way_high']:.3f} -> {b['two_way_high']:.3f}",
               "holds" if b["colour_accuracy"] > a["colour_accuracy"] + 0.05 else
               "does not hold", "pixels")  # fmt: skip
    if with_prior in by and default is not None:
        a, b = by[with_prior], by[default]
        better = [k for k in ("pixcorr", "ssim", "two_way_low") if b[k] > a[k]]
        _claim(run, "low_level", "The low-level image (early visual cortex) helps the "
               "low-level metrics (MindEye: PixCorr, SSIM)",
               f"PixCorr {a['pixcorr']:.3f} -> {b['pixcorr']:.3f}, SSIM {a['ssim']:.3f} -> "
               f"{b['ssim']:.3f}, low 2-way {a['two_way_low']:.3f} -> {b['two_way_low']:.3f}; "
               f"shape {a['shape_accuracy']:.3f} -> {b['shape_accuracy']:.3f}",
               "holds" if len(better) == 3 else "weaker" if better else "does not hold",
               "pixels")  # fmt: skip
    n_show = min(8, n_images)
    ids = test.subjects[sources[0]].stim_ids[:n_show]
    pos = stimuli.index_of(ids)
    order = ["true"] + (["low-level image alone"] if "low-level image alone" in shown else []) + [
        label for label, _ in variants]  # fmt: skip
    fig, axes = plt.subplots(len(order), n_show, figsize=(1.2 * n_show, 1.25 * len(order)),
                             squeeze=False)  # fmt: skip
    for i, label in enumerate(order):
        for j in range(n_show):
            ax = axes[i, j]
            ax.imshow(stimuli.images[pos[j]] if label == "true" else np.clip(shown[label][j], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label.replace(" + ", "\n+ ").replace(" (default)", "\n(default)"),
                              fontsize=6)
    fig.tight_layout()
    run.add_figure(fig, "pixels", caption=f"The path to pixels for {sources[0]}: true images, "
                   "the blurry low-level image, and the reconstructions with each piece.")


def _grid_figure(plt, run, stimuli, test, recon, n_show, held) -> None:
    cols = list(dict.fromkeys(s for _, s in recon))
    first = test.subjects[cols[0]].stim_ids
    n_show = min(n_show, min(len(v) for v in recon.values()))
    ids = first[:n_show]
    rows = [("true", None)] + [(f"{s}" + (" (new, 500)" if lab == "new" else ""), (lab, s))
                               for lab, s in recon if lab != "per-subject"]  # fmt: skip
    fig, axes = plt.subplots(len(rows), n_show, figsize=(1.2 * n_show, 1.25 * len(rows)),
                             squeeze=False)  # fmt: skip
    for i, (label, key) in enumerate(rows):
        for j in range(n_show):
            ax = axes[i, j]
            if key is None:
                ax.imshow(stimuli.images[stimuli.index_of([ids[j]])[0]])
            else:
                sid = test.subjects[key[1]].stim_ids
                k = int(np.flatnonzero(sid == ids[j])[0]) if (sid == ids[j]).any() else None
                if k is not None and k < len(recon[key]):
                    ax.imshow(np.clip(recon[key][k], 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.tight_layout()
    run.add_figure(fig, "grid", caption=f"Shared test images (top row) and their "
                   f"reconstructions from each subject's fMRI by the one MindBridge model (through "
                   f"the embedding prior, from the low-level image); last "
                   f"row: the new subject {held} reset-tuned on 500 images.")  # fmt: skip


def _retrieval_grid(plt, run, stimuli, test, model, targets, sources, n_show) -> None:
    """Without a generator: each test image and the test image its decoded embedding retrieves."""
    ids = test.subjects[sources[0]].stim_ids
    n_show = min(n_show, len(ids))
    fig, axes = plt.subplots(1 + len(sources), n_show,
                             figsize=(1.2 * n_show, 1.25 * (1 + len(sources))), squeeze=False)
    for i, s in enumerate([None, *sources]):
        if s is not None:
            sid = test.subjects[s].stim_ids
            pred = model.predict_embeddings(s, test.subjects[s].betas)["image"]
            cand = targets.image[targets.rows(sid)]
        for j in range(n_show):
            ax = axes[i, j]
            if s is None:
                ax.imshow(stimuli.images[stimuli.index_of([ids[j]])[0]])
            elif (sid == ids[j]).any():
                k = int(np.flatnonzero(sid == ids[j])[0])
                best = int(np.argmax(cand @ pred[k]))
                ax.imshow(stimuli.images[stimuli.index_of([sid[best]])[0]])
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel("true" if s is None else s, fontsize=7)
    fig.tight_layout()
    run.add_figure(fig, "grid", caption="Reconstructions pending (no generator): each shared "
                   "test image (top row) and the test image that each subject's decoded image "
                   "embedding retrieves (top-1 among all test images).")
