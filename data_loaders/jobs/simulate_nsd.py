"""Job ``simulate_nsd``: write the simulated visual cortex in the NSD layout, and show it.

Simulates (or reuses from the cache) an NSD-like experiment on the stimulus world
(:func:`data_loaders.simulate.fmri.simulate_nsd`), writes it with
:func:`data_loaders.nsd.write_nsd_layout`, reads it back with
:func:`data_loaders.nsd.load_nsd` (checking the round trip when freshly made), and reports:
example stimuli, the ROI map and the noise-ceiling map on the MNI152 brain (nilearn),
pRF sizes by ROI and the visual-field coverage, the shape-class selectivity of higher visual
cortex, ncsnr by ROI, and a check that the simulation means what it says (a voxelwise ridge
on the true early-visual features reaches the known noise ceiling).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from data_loaders.simulate import fmri
from data_loaders.simulate.stimuli import COLOUR_NAMES, SHAPE_CLASSES

_ROI_COLOURS = {
    "V1": "#1f77b4", "V2": "#2ca02c", "V3": "#9467bd", "hV4": "#e377c2", "higher": "#ff7f0e",
    "MTL": "#17becf",
}  # fmt: skip


class SimulateNSDParams(BaseModel):
    """Parameters of the ``simulate_nsd`` job (the arguments of ``simulate_nsd``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_subjects: int = Field(4, ge=1, le=8, description="subjects (NSD has 8)")
    n_sessions: int | list[int] = Field(2, description="sessions per subject, or one per subject")
    trials_per_session: int = Field(750, ge=1, description="trials per session (750 in NSD)")
    n_shared: int = Field(100, ge=1, description="images seen by all subjects, 3 times each")
    n_subject_images: int = Field(1100, ge=2, description="distinct images per subject")
    image_size: int = Field(64, ge=8, description="stimulus size in pixels (multiple of 8)")
    voxels: tuple[int, int] = Field((1500, 4000), description="range of voxel counts")
    snr: float | dict[str, float] = Field(
        1.0, description="scale of the default median ncsnr per ROI, or ROI -> median ncsnr"
    )
    noise_correlation: float = Field(0.3, ge=0.0, lt=1.0, description="shared noise fraction")
    voxel_size_mm: float = Field(4.0, ge=1.0, le=8.0, description="MNI grid voxel size (mm)")
    output: str = Field(
        "cache",
        description="'cache': the dataset cache (reused if present); 'run': <run>/nsd; "
        "or a folder path",
    )
    betas_format: str = Field("nii.gz", description="'nii.gz' or 'hdf5' betas files")
    ridge_check: bool = Field(True, description="ridge on the true features vs noise ceiling")

    @field_validator("betas_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in ("nii.gz", "hdf5"):
            raise ValueError(f"betas_format: expected 'nii.gz' or 'hdf5', got {value!r}")
        return value


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _resolve_root(params: SimulateNSDParams, sim_args: dict[str, Any], run) -> Path:
    if params.output == "cache":
        return Path(run.data_dir) / fmri._folder_name(sim_args)
    if params.output == "run":
        return Path(run.out_dir) / "nsd"
    return Path(params.output).expanduser()


def _check_same_params(root: Path, sim_args: dict[str, Any]) -> None:
    """Refuse to reuse a folder that holds a simulation made with other parameters."""
    import json

    from data_loaders._io import CorruptFileError, reading

    info_path = root / "SIMULATION.json"
    with reading(info_path, "the JSON record of a simulated NSD root"):
        made = json.loads(info_path.read_text())
    if not isinstance(made, dict):
        raise CorruptFileError(info_path, "a JSON object with 'params'", None)
    made = made.get("params", {})

    def norm(p: dict[str, Any]) -> str:
        return json.dumps({k: p.get(k) for k in sorted(sim_args)}, sort_keys=True, default=str)

    sess = sim_args["n_sessions"]
    if isinstance(sess, int):  # simulate_nsd records one value per subject
        sess = [sess] * sim_args["n_subjects"]
    want = {**sim_args, "voxels": list(sim_args["voxels"]), "n_sessions": list(sess)}
    if norm(made) != norm(want):
        raise ValueError(
            f"output: {root} holds a simulation made with other parameters ({made}); expected "
            f"{sim_args}. Choose another folder or delete this one."
        )


def _stimuli_figure(stimuli, ids: np.ndarray):
    plt = _plt()
    fig, axes = plt.subplots(3, 8, figsize=(12, 5.2))
    attrs = stimuli.attributes
    for ax, i in zip(axes.ravel(), ids):
        ax.imshow(stimuli.images[i])
        names = [
            f"{COLOUR_NAMES[attrs['colours'][i, k]]} {SHAPE_CLASSES[attrs['shapes'][i, k]]}"
            for k in range(int(attrs["n_objects"][i]))
        ]
        ax.set_title("\n".join(names), fontsize=7)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _roi_map_figure(sub):
    import nibabel as nib
    from nilearn import datasets, plotting

    plt = _plt()
    from matplotlib.colors import ListedColormap

    codes = np.array([fmri.ROI_NAMES.index(r) + 1 for r in sub.roi])
    img = sub.to_img(codes.astype(np.float32))
    img = nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), img.affine)
    cmap = ListedColormap([_ROI_COLOURS[r] for r in fmri.ROI_NAMES])
    fig = plt.figure(figsize=(11, 3.4))
    plotting.plot_roi(
        img, bg_img=datasets.load_mni152_template(resolution=2), cut_coords=(-30, -78, -6),
        cmap=cmap, vmin=0.5, vmax=len(fmri.ROI_NAMES) + 0.5, figure=fig, draw_cross=False,
        title=f"{sub.subject}: ROIs on MNI152",
    )  # fmt: skip
    handles = [
        plt.Line2D([], [], marker="s", ls="", color=_ROI_COLOURS[r], label=r)
        for r in fmri.ROI_NAMES
    ]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=9, frameon=False,
               labelcolor="white")  # nilearn draws on black  # fmt: skip
    return fig


def _nc_map_figure(sub, nc3: np.ndarray):
    from nilearn import datasets, plotting

    plt = _plt()
    fig = plt.figure(figsize=(11, 3.4))
    plotting.plot_stat_map(
        sub.to_img(nc3.astype(np.float32)), bg_img=datasets.load_mni152_template(resolution=2),
        cut_coords=(-30, -78, -6), cmap="hot", vmin=0, vmax=100, figure=fig,
        title=f"{sub.subject}: noise ceiling (% variance, 3-trial average)", draw_cross=False,
    )  # fmt: skip
    return fig


def _prf_figure(truth: dict[str, dict[str, np.ndarray]], subjects: list[str]):
    plt = _plt()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in fmri.EARLY_ROIS:
        ecc_all, size_all = [], []
        for s in subjects:
            t = truth[s]
            sel = t["roi"] == r
            ecc_all.append(np.hypot(t["prf_x"][sel] - 0.5, t["prf_y"][sel] - 0.5) / 0.5)
            size_all.append(t["prf_size"][sel])
        ecc, size = np.concatenate(ecc_all), np.concatenate(size_all)
        ax0.scatter(ecc, size, s=3, alpha=0.25, color=_ROI_COLOURS[r])
        bins = np.linspace(0, 1.1, 8)
        idx = np.digitize(ecc, bins)
        centres = [(bins[i - 1] + bins[i]) / 2 for i in range(1, len(bins)) if (idx == i).any()]
        means = [np.median(size[idx == i]) for i in range(1, len(bins)) if (idx == i).any()]
        ax0.plot(centres, means, color=_ROI_COLOURS[r], lw=2, label=r)
        t = truth[subjects[0]]
        sel = t["roi"] == r
        ax1.scatter(t["prf_x"][sel], t["prf_y"][sel], s=4, alpha=0.5, color=_ROI_COLOURS[r],
                    label=r)  # fmt: skip
    ax0.set_xlabel("eccentricity (image half-widths)")
    ax0.set_ylabel("pRF size (sd, image widths)")
    ax0.set_title("pRF size grows with eccentricity and from V1 to hV4")
    ax0.legend(fontsize=8)
    ax1.add_patch(plt.Rectangle((0, 0), 1, 1, fill=False, color="k", lw=0.8))
    ax1.set_xlim(-0.1, 1.1)
    ax1.set_ylim(1.1, -0.1)
    ax1.set_aspect("equal")
    ax1.set_title(f"{subjects[0]}: pRF centres (image frame, y down)")
    ax1.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    return fig


def _selectivity_figure(ds, stim_attrs: dict[str, np.ndarray], subject: str):
    """Mean z-scored response of each higher-visual voxel to each shape class (one-object
    images), voxels sorted by preferred class."""
    plt = _plt()
    sub = ds.subjects[subject]
    higher = np.flatnonzero(sub.roi == "higher")
    ids = sub.stim_ids
    cls = stim_attrs["shape"][ids]
    one = stim_attrs["n_objects"][ids] == 1
    z = (sub.betas[:, higher] - sub.betas[:, higher].mean(0)) / (sub.betas[:, higher].std(0) + 1e-9)
    means = np.stack([z[one & (cls == k)].mean(0) for k in range(len(SHAPE_CLASSES))], axis=1)
    order = np.lexsort((-means.max(1), means.argmax(1)))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(2, 1))
    im = ax0.imshow(means[order].T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                    interpolation="nearest")  # fmt: skip
    ax0.set_yticks(range(len(SHAPE_CLASSES)), SHAPE_CLASSES, fontsize=8)
    ax0.set_xlabel("higher-visual voxels (sorted by preferred class)")
    ax0.set_title(f"{subject}: class selectivity from single-trial betas")
    fig.colorbar(im, ax=ax0, label="mean response (z)")
    pref = np.bincount(means.argmax(1), minlength=len(SHAPE_CLASSES))
    ax1.barh(range(len(SHAPE_CLASSES)), pref, color="tab:orange")
    ax1.set_yticks(range(len(SHAPE_CLASSES)), SHAPE_CLASSES, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("voxels preferring the class")
    fig.tight_layout()
    return fig


def estimate_ncsnr(betas: np.ndarray, stim_ids: np.ndarray) -> np.ndarray | None:
    """NSD's ncsnr estimate from repeats (Allen et al. 2022, NSD data manual): z-score each
    voxel, ``noise_sd = sqrt(mean over images of the variance across repeats)``,
    ``signal_sd = sqrt(max(0, 1 - noise_sd^2))``, ``ncsnr = signal_sd / noise_sd``.
    Uses the images shown 3 times; None when there are fewer than 5."""
    uniq, counts = np.unique(stim_ids, return_counts=True)
    three = uniq[counts == 3]
    if three.size < 5:
        return None
    z = (betas - betas.mean(0)) / (betas.std(0) + 1e-12)
    rows = np.stack([np.flatnonzero(stim_ids == i) for i in three])
    noise_sd = np.sqrt(z[rows].var(axis=1, ddof=1).mean(axis=0))
    return np.sqrt(np.clip(1 - noise_sd**2, 0, None)) / noise_sd


def _ncsnr_figure(ds, estimate: np.ndarray | None, subject: str):
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if estimate is not None else 1, figsize=(11, 4),
                             squeeze=False, width_ratios=(3, 2) if estimate is not None else None)
    ax = axes[0, 0]
    data = [np.concatenate([s.ncsnr[s.roi == r] for s in ds.subjects.values()])
            for r in fmri.ROI_NAMES]  # fmt: skip
    parts = ax.boxplot(data, tick_labels=list(fmri.ROI_NAMES), showfliers=False, patch_artist=True)
    for patch, r in zip(parts["boxes"], fmri.ROI_NAMES):
        patch.set_facecolor(_ROI_COLOURS[r])
        patch.set_alpha(0.6)
    ax.set_ylabel("ncsnr (signal sd / noise sd)")
    ax.set_title("exported ncsnr by ROI, all subjects")
    if estimate is not None:
        ax = axes[0, 1]
        sub = ds.subjects[subject]
        for r in fmri.ROI_NAMES:
            sel = sub.roi == r
            ax.scatter(sub.ncsnr[sel], estimate[sel], s=4, alpha=0.5, color=_ROI_COLOURS[r],
                       label=r)  # fmt: skip
        top = float(max(sub.ncsnr.max(), estimate.max()))
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        ax.set_xlabel("exported (true) ncsnr")
        ax.set_ylabel("NSD estimate from the betas")
        ax.set_title(f"{subject}: NSD's estimator recovers it", fontsize=10)
        ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    return fig


def ridge_vs_noise_ceiling(ds, subject: str, stimuli, sharedix: np.ndarray) -> dict[str, Any]:
    """Voxelwise ridge on the true early-visual features of one subject, scored on the
    3-trial averages of the shared images, next to each voxel's known noise ceiling."""
    from sklearn.linear_model import RidgeCV

    sub = ds.subjects[subject]
    ids = sub.stim_ids
    early = np.flatnonzero(np.isin(sub.roi, fmri.EARLY_ROIS))
    uniq = np.unique(ids)
    feats = fmri.gabor_energy_features(stimuli.images[stimuli.index_of(uniq)])
    X = feats[np.searchsorted(uniq, ids)]
    test = np.isin(ids, sharedix)
    t_ids, counts = np.unique(ids[test], return_counts=True)
    t_ids = t_ids[counts == 3]
    if t_ids.size < 5 or (~test).sum() < 20:
        return {}
    rows = np.stack([np.flatnonzero(ids == i) for i in t_ids])
    mu, sd = X[~test].mean(0), X[~test].std(0) + 1e-6
    model = RidgeCV(alphas=np.logspace(0, 4, 9), alpha_per_target=True)
    model.fit((X[~test] - mu) / sd, sub.betas[~test][:, early])
    y = sub.betas[rows][:, :, early].mean(axis=1)
    pred = model.predict((X[rows[:, 0]] - mu) / sd)
    r2 = 1 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    nc = 100 * sub.ncsnr[early].astype(np.float64) ** 2
    nc = nc / (sub.ncsnr[early].astype(np.float64) ** 2 + 1 / 3) / 100
    return {"r2": r2, "nc": nc, "roi": sub.roi[early], "n_test": int(t_ids.size),
            "n_train": int((~test).sum())}  # fmt: skip


def _ridge_figure(res: dict[str, Any], subject: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.6))
    for r in fmri.EARLY_ROIS:
        sel = res["roi"] == r
        ax.scatter(res["nc"][sel], res["r2"][sel], s=5, alpha=0.5, color=_ROI_COLOURS[r], label=r)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="noise ceiling")
    ax.set_xlabel("known noise ceiling (fraction, 3-trial average)")
    ax.set_ylabel("ridge R2 on held-out shared images")
    ax.set_title(f"{subject}: ridge on the true features", fontsize=10)
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig


def simulate_nsd(params: SimulateNSDParams, run) -> dict[str, Any]:
    """Write the simulated NSD (or reuse the cached one) and report on it."""
    from data_loaders.nsd import load_nsd

    sim_args = dict(
        n_subjects=params.n_subjects, n_sessions=params.n_sessions,
        trials_per_session=params.trials_per_session, n_shared=params.n_shared,
        n_subject_images=params.n_subject_images, image_size=params.image_size,
        voxels=tuple(params.voxels), snr=params.snr, noise_correlation=params.noise_correlation,
        voxel_size_mm=params.voxel_size_mm, random_state=run.seed,
    )  # fmt: skip
    root = _resolve_root(params, sim_args, run)
    reused = fmri.is_complete(root)
    sim = None
    t0 = time.perf_counter()
    if reused:
        _check_same_params(root, sim_args)
        run.log(f"reusing the simulated NSD at {root}")
    else:
        run.log(f"simulating and writing the NSD layout into {root}")
        root, sim = fmri.write_simulation(
            root, betas_format=params.betas_format, verbose=run.verbose, **sim_args
        )
    seconds = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6

    subjects = tuple(range(1, params.n_subjects + 1))
    ds = load_nsd(root, subjects=subjects, verbose=False)
    truth = fmri.load_truth(root)
    names = ds.subject_names
    metrics: dict[str, Any] = {
        "dataset_path": str(root),
        "reused_cache": reused,
        "seconds_to_simulate_and_write": round(seconds, 2),
        "size_on_disk_mb": round(size_mb, 1),
        "n_images": len(ds.stimuli),
    }

    # the round trip: what load_nsd reads is what was simulated
    if sim is not None:
        want = sim.to_dataset()
        exact = all(
            np.array_equal(ds.subjects[n].betas, want.subjects[n].betas)
            and np.array_equal(ds.subjects[n].stim_ids, want.subjects[n].stim_ids)
            and np.array_equal(ds.subjects[n].roi, want.subjects[n].roi)
            and np.array_equal(ds.subjects[n].ncsnr, want.subjects[n].ncsnr)
            for n in names
        )
        metrics["round_trip_exact"] = bool(exact)
        if not exact:
            raise RuntimeError(f"{root}: load_nsd did not give back the simulated betas/ids/ROIs")

    # counts and noise ceilings
    counts, nc_rows = {}, []
    for n in names:
        sub = ds.subjects[n]
        counts[n] = {r: int((sub.roi == r).sum()) for r in fmri.ROI_NAMES}
        counts[n]["total"] = sub.n_voxels
    nc_mean = {}
    for r in fmri.ROI_NAMES:
        nc1 = np.concatenate([ds.noise_ceiling(n, 1)[ds.subjects[n].roi == r] for n in names])
        nc3 = np.concatenate([ds.noise_ceiling(n, 3)[ds.subjects[n].roi == r] for n in names])
        nc_mean[r] = round(float(nc3.mean()), 2)
        nc_rows.append({"roi": r, "voxels (all subjects)": int(nc1.size),
                        "mean NC single trial (%)": round(float(nc1.mean()), 1),
                        "mean NC 3-trial average (%)": round(float(nc3.mean()), 1)})  # fmt: skip
    metrics["voxel_counts"] = counts
    metrics["mean_noise_ceiling_pct_3trial"] = nc_mean
    run.add_table(
        "voxel_counts",
        [{"subject": n, **counts[n]} for n in names],
        caption="Voxels per ROI and subject (each subject draws its own count and layout).",
    )
    run.add_table(
        "noise_ceiling", nc_rows,
        caption="NSD noise ceiling NC = 100 ncsnr^2 / (ncsnr^2 + 1/n), by ROI.",
    )  # fmt: skip

    # figures
    stim_attrs = truth["attributes"]
    from data_loaders.schema import Stimuli

    stimuli = Stimuli(images=ds.stimuli.images, ids=ds.stimuli.ids,
                      attributes={k: v[ds.stimuli.ids] for k, v in stim_attrs.items()})  # fmt: skip
    rng = np.random.default_rng(run.seed)
    show = rng.choice(len(stimuli), size=min(24, len(stimuli)), replace=False)
    run.add_figure(_stimuli_figure(stimuli, show), "stimuli",
                   caption="Example stimuli: one or two shaded 3D objects on textured "
                   "backgrounds (class and colour above each).")  # fmt: skip
    first = ds.subjects[names[0]]
    run.add_figure(_roi_map_figure(first), "roi_map",
                   caption="ROIs of the first subject on nilearn's MNI152 template: V1 around "
                   "the calcarine, V2/V3 around it, hV4 ventral, higher visual lateral-occipital"
                   " and ventral-temporal, MTL medial temporal.")  # fmt: skip
    run.add_figure(_nc_map_figure(first, ds.noise_ceiling(names[0], 3)), "noise_ceiling_map",
                   caption="Noise ceiling (3-trial average) of the first subject, from the "
                   "exported ncsnr.")  # fmt: skip
    truth_by_name = {n: truth[n] for n in names}
    run.add_figure(_prf_figure(truth_by_name, names), "prf_tuning",
                   caption="Early ROIs: pRF size against eccentricity (medians as lines), and "
                   "the first subject's pRF centres (contralateral hemifields).")  # fmt: skip
    run.add_figure(_selectivity_figure(ds, stim_attrs, names[0]), "higher_selectivity",
                   caption="Higher visual cortex: mean response to each shape class measured "
                   "from the noisy single-trial betas (one-object images).")  # fmt: skip
    sub0 = ds.subjects[names[0]]
    est = estimate_ncsnr(sub0.betas, sub0.stim_ids)
    if est is not None:
        r = float(np.corrcoef(est, sub0.ncsnr)[0, 1])
        metrics["ncsnr_estimate_vs_exported_r"] = round(r, 3)
        ratio = float(np.median(est / sub0.ncsnr))
        metrics["ncsnr_estimate_over_exported_median"] = round(ratio, 3)
    run.add_figure(_ncsnr_figure(ds, est, names[0]), "ncsnr_by_roi",
                   caption="Left: the exported ncsnr by ROI. Right: NSD's own ncsnr estimator "
                   "(z-scored betas, noise from the 3 repeats of each image) applied to the "
                   "written betas, against the exported values.")  # fmt: skip

    if params.ridge_check:
        res = ridge_vs_noise_ceiling(ds, names[0], ds.stimuli, _sharedix(root))
        if res:
            ratio = {}
            for r in fmri.EARLY_ROIS:
                sel = res["roi"] == r
                if sel.any():
                    ratio[r] = round(float(res["r2"][sel].mean() / res["nc"][sel].mean()), 3)
            metrics["ridge_r2_over_noise_ceiling"] = ratio
            run.add_figure(_ridge_figure(res, names[0]), "ridge_vs_noise_ceiling",
                           caption=f"Voxelwise ridge on the true Gabor-energy features "
                           f"({res['n_train']} single training trials) scored on "
                           f"{res['n_test']} shared images (3-trial averages), against each "
                           "voxel's known noise ceiling: the simulation means what it "
                           "says.")  # fmt: skip
    run.add_text(
        "How to use it",
        f"from data_loaders.nsd import load_nsd\nds = load_nsd({str(root)!r}, subjects={subjects})"
        "\n\nThe same files, paths, dtypes and index conventions as the real NSD; point "
        "load_nsd at a real NSD copy to run the same code on real data.",
    )
    _claims(run, metrics)
    return metrics


def _claims(run, metrics: dict[str, Any]) -> None:
    """What the simulation promises (NSD manual conventions; REFERENCES Part B, 4)."""
    add = getattr(run, "add_claim", None)
    if add is None:
        return
    if "round_trip_exact" in metrics:
        add("round_trip", "the files follow the NSD layout: load_nsd reads back exactly the "
            "simulated betas, ids, ROIs and ncsnr", "exact" if metrics["round_trip_exact"]
            else "differs", "holds" if metrics["round_trip_exact"] else "does not hold",
            figure="roi_map")
    r = metrics.get("ncsnr_estimate_vs_exported_r")
    if r is not None:
        add("ncsnr", "NSD's own ncsnr estimator (3 repeats) recovers the exported ncsnr",
            f"r = {r:.3f}, median ratio {metrics['ncsnr_estimate_over_exported_median']:.2f}",
            "holds" if r >= 0.9 else "weaker" if r >= 0.7 else "does not hold",
            figure="ncsnr_by_roi")
    ratio = metrics.get("ridge_r2_over_noise_ceiling")
    if ratio:
        lo = min(ratio.values())
        add("noise_ceiling", "the noise ceiling means what it says: a ridge on the true "
            "early-visual features explains about the noise ceiling",
            "R2 / noise ceiling " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()),
            "holds" if lo >= 0.8 else "weaker" if lo >= 0.5 else "does not hold",
            figure="ridge_vs_noise_ceiling")


def _sharedix(root: Path) -> np.ndarray:
    from data_loaders.nsd import read_expdesign

    design = read_expdesign(root)
    return np.asarray(design.sharedix)
