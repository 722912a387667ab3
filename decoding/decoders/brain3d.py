"""Brain3D: 3D objects decoded from fMRI, region by region (Guo et al. 2024).

Yang, Zhang, Xie, Yuan, Feng, Zhu & Jiang (2024), "Neural 3D decoding for human vision
diagnosis" / "Generating 3D Objects from fMRI" (arXiv 2405.15239). No code and no numeric
tables were released; this is a reimplementation on the suite's stimulus world, whose
images each show a known 3D object (:mod:`data_loaders.simulate.stimuli`).

Stage 1 (region-wise encoders, progressive integration)
    Each ROI gets its own linear projection of its voxels. The low-level encoder reads
    V1-hV4, the high-level one the higher visual cortex and MTL. The low-level latent is
    trained first; the high-level latent is then *gated in*,
    ``h = h_low + sigmoid(W [h_low, h_high]) * h_high`` (the paper's "progressive high-level
    information integration"). Heads read a 3D-aware latent off ``h``: the shape (class
    probabilities, mixed into the stage-2 shape codes), the pose predicted apart from the
    shape (the object's symmetry axis, as the sign-free tensor ``a a^T``, and its size),
    its image position and its colour.
Stage 2 (conditional implicit decoder)
    :class:`decoding.generation.mesh.ImplicitShapeModel`, an occupancy field trained on the
    stimulus world's analytic shapes with pose factored out (query points ``R^T p / s``);
    marching cubes gives the mesh.
2D-prior guidance
    A cheap analogue of the paper's score distillation: the latent (shape code, a rotation
    correction, scale and colour) is optimised for a few dozen steps so that differentiable
    renders of the field (:func:`~decoding.generation.mesh.render_occupancy`) agree with a
    2D image decoded from the same brain: the reconstruction generator's image when one is
    given, else a blurry image regressed linearly from early visual cortex (stored in the
    model).

Examples
--------
>>> model = Brain3D(n_epochs=200).fit(train_dataset)                     # doctest: +SKIP
>>> meshes = model.generate("subj01", test_betas)   # list of Mesh      # doctest: +SKIP
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from data_loaders.schema import FMRIDataset, FMRISubject, Stimuli
from decoding._device import resolve_device
from decoding._pretrained import PretrainedMixin
from decoding.generation.mesh import (
    ImplicitShapeModel,
    Mesh,
    canonical_grid,
    default_shape_decoder,
    field_mesh,
    load_shape_decoder,
    marching_cubes_mesh,
    render_occupancy,
    rotation_from_axis,
    view_rotation,
)

__all__ = [
    "Brain3D",
    "LOW_ROIS",
    "HIGH_ROIS",
    "ALL_ROIS",
    "object_targets",
    "attach_objects",
    "select_voxels",
    "evaluate_objects",
    "oracle_latents",
    "retrieval_latents",
    "ImageLatentRegressor",
    "corrupt_betas",
    "CORRUPTIONS",
    "guide_latents",
]

LOW_ROIS: tuple[str, ...] = ("V1", "V2", "V3", "hV4")
HIGH_ROIS: tuple[str, ...] = ("higher", "MTL")
ALL_ROIS: tuple[str, ...] = LOW_ROIS + HIGH_ROIS
#: Classes whose shape has no symmetry axis that pose can be read from (axis error skips
#: them): the sphere and the cube.
_AXISLESS = (0, 1)
_IMG_RES = 16  # the early-visual image regression predicts 16x16 RGB
CORRUPTIONS: tuple[str, ...] = ("noise", "silence", "lesion")


# --------------------------------------------------------------------------------------
# data helpers
# --------------------------------------------------------------------------------------
def object_targets(stimuli: Stimuli, ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The main (first, larger) object of each image: what Brain3D decodes.

    Parameters
    ----------
    stimuli : Stimuli
        With ``objects_3d`` (as :func:`data_loaders.simulate.stimuli.render_stimuli` makes).
    ids : ndarray of int, optional
        Stimulus ids (default: all, in order).

    Returns
    -------
    dict
        ``shape`` (n,) int, ``rotation`` (n, 3, 3), ``axis`` (n, 3) (the local y axis in
        the camera frame), ``size`` (n,), ``position`` (n, 2), ``rgb`` (n, 3), ``colour``
        (n,) int: the named colour (index into ``COLOUR_RGB``) nearest to ``rgb``.
    """
    from data_loaders.simulate.stimuli import COLOUR_RGB

    if stimuli.objects_3d is None:
        raise ValueError(
            "stimuli.objects_3d: Brain3D needs each image's 3D object, got None; attach them "
            "with attach_objects(dataset, truth['objects_3d'])"
        )
    rows = np.arange(len(stimuli)) if ids is None else stimuli.index_of(ids)
    o = stimuli.objects_3d
    R = np.asarray(o["rotation"])[rows, 0].astype(np.float64)
    return {
        "shape": np.asarray(o["shape"])[rows, 0].astype(np.int64),
        "rotation": R,
        "axis": R[:, :, 1],
        "size": np.asarray(o["size"])[rows, 0].astype(np.float64),
        "position": np.asarray(o["position"])[rows, 0].astype(np.float64),
        "rgb": np.asarray(o["rgb"])[rows, 0].astype(np.float64),
        # the renderer jitters each named colour by N(0, 0.04): the nearest name is the label
        "colour": np.argmin(((np.asarray(o["rgb"])[rows, 0][:, None, :] - COLOUR_RGB[None])
                             ** 2).sum(-1), axis=1).astype(np.int64),
    }


def attach_objects(dataset: FMRIDataset, objects_3d: dict[str, np.ndarray]) -> FMRIDataset:
    """The dataset with ``stimuli.objects_3d`` set from arrays indexed by stimulus id.

    ``load_nsd`` on a simulated root gives the images only; :func:`load_truth` holds the
    objects (indexed by id, as ``imgBrick`` is).
    """
    st = dataset.stimuli
    obj = {k: np.asarray(v)[st.ids] for k, v in objects_3d.items()}
    stim = Stimuli(images=st.images, ids=st.ids, attributes=st.attributes, objects_3d=obj)
    return FMRIDataset(stim, dataset.subjects)


def select_voxels(
    dataset: FMRIDataset, rois: tuple[str, ...] | list[str] | None = None,
    hemisphere: str | None = None,
) -> FMRIDataset:
    """Keep some ROIs and/or one hemisphere (MNI ``x < 0`` is left) of every subject.

    Raises ``ValueError`` naming the subject when nothing is left, or when a hemisphere is
    asked of a subject without a mask image (no coordinates).
    """
    if hemisphere not in (None, "left", "right"):
        raise ValueError(f"hemisphere: expected None, 'left' or 'right', got {hemisphere!r}")
    subs = {}
    for name, sub in dataset.subjects.items():
        keep = np.ones(sub.n_voxels, dtype=bool)
        if rois is not None:
            keep &= np.isin(sub.roi, list(rois))
        if hemisphere is not None:
            if sub.mask_img is None:
                raise ValueError(
                    f"hemisphere: subject {name!r} has no mask_img, so no MNI coordinates; "
                    "expected a mask image to split hemispheres"
                )
            x = sub.voxel_coords_mni()[:, 0]
            keep &= (x < 0) if hemisphere == "left" else (x > 0)
        if not keep.any():
            raise ValueError(
                f"rois/hemisphere: subject {name!r} has no voxel in rois={rois}, "
                f"hemisphere={hemisphere}; its ROIs are {sub.roi_names}"
            )
        cols = np.flatnonzero(keep)
        mask_img = None
        if sub.mask_img is not None:
            import nibabel as nib

            mask = np.asarray(sub.mask_img.dataobj) != 0
            coords = np.argwhere(mask)[cols]
            data = np.zeros(mask.shape, dtype=np.uint8)
            data[tuple(coords.T)] = 1
            mask_img = nib.Nifti1Image(data, sub.mask_img.affine)
        subs[name] = FMRISubject(
            betas=np.ascontiguousarray(sub.betas[:, cols]), stim_ids=sub.stim_ids,
            roi=sub.roi[cols], mask_img=mask_img,
            ncsnr=None if sub.ncsnr is None else sub.ncsnr[cols], subject=name,
        )
    return FMRIDataset(dataset.stimuli, subs)


def _axis_tensor(axis: np.ndarray) -> np.ndarray:
    """Sign-free pose target: the 6 distinct entries of ``a a^T`` (xx, yy, zz, xy, xz, yz)."""
    a = np.asarray(axis, dtype=np.float64)
    return np.stack([a[:, 0] ** 2, a[:, 1] ** 2, a[:, 2] ** 2, a[:, 0] * a[:, 1],
                     a[:, 0] * a[:, 2], a[:, 1] * a[:, 2]], axis=1)


def _axis_from_tensor(t: np.ndarray) -> np.ndarray:
    """Top eigenvector of the symmetric matrix given by :func:`_axis_tensor` entries."""
    m = np.zeros((len(t), 3, 3))
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = t[:, 0], t[:, 1], t[:, 2]
    m[:, 0, 1] = m[:, 1, 0] = t[:, 3]
    m[:, 0, 2] = m[:, 2, 0] = t[:, 4]
    m[:, 1, 2] = m[:, 2, 1] = t[:, 5]
    _, vecs = np.linalg.eigh(m)
    return vecs[:, :, -1]


def corrupt_betas(
    betas: np.ndarray,
    roi: np.ndarray,
    target: str,
    kind: str,
    severity: float,
    rng: np.random.Generator,
    mean: np.ndarray,
    sd: np.ndarray,
    coords: np.ndarray | None = None,
) -> np.ndarray:
    """A simulated disorder of one ROI, applied at test time.

    Parameters
    ----------
    betas : ndarray (n, n_voxels)
    roi : ndarray of str (n_voxels,)
    target : str
        The ROI to corrupt.
    kind : {"noise", "silence", "lesion"}
        ``noise``: add Gaussian noise of ``severity`` x the voxel's training sd;
        ``silence``: replace the ROI's responses by the training mean (no signal);
        ``lesion``: silence the fraction ``severity`` of the ROI nearest a random voxel of
        it (by MNI distance when ``coords`` is given, else a random subset).
    severity : float > 0
    mean, sd : ndarray (n_voxels,)
        Training mean and sd of each voxel.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind: expected one of {CORRUPTIONS}, got {kind!r}")
    cols = np.flatnonzero(roi == target)
    if cols.size == 0:
        raise ValueError(f"target: ROI {target!r} has no voxel; expected one of {sorted(set(roi))}")
    out = np.array(betas, dtype=np.float32, copy=True)
    if kind == "noise":
        out[:, cols] += (severity * sd[cols] * rng.standard_normal((len(out), cols.size))
                         ).astype(np.float32)
    elif kind == "silence":
        out[:, cols] = mean[cols]
    else:
        k = max(1, int(round(min(1.0, severity) * cols.size)))
        if coords is not None:
            seed = coords[rng.choice(cols)]
            near = cols[np.argsort(((coords[cols] - seed) ** 2).sum(1))[:k]]
        else:
            near = rng.choice(cols, size=k, replace=False)
        out[:, near] = mean[near]
    return out


# --------------------------------------------------------------------------------------
# stage 1
# --------------------------------------------------------------------------------------
class _Stage1(nn.Module):
    """Region-wise projections, the two encoders, the gate and the latent's heads."""

    def __init__(self, roi_sizes: dict[str, int], low: list[str], high: list[str],
                 hidden: int, n_classes: int, dropout: float, input_dropout: float) -> None:
        super().__init__()
        self.low, self.high = list(low), list(high)
        self.proj = nn.ModuleDict({r: nn.Linear(n, hidden) for r, n in roi_sizes.items()})
        self.in_drop = nn.Dropout(input_dropout)

        def enc() -> nn.Sequential:
            return nn.Sequential(nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.GELU())

        self.enc_low = enc() if self.low else None
        self.enc_high = enc() if self.high else None
        self.gate = nn.Linear(2 * hidden, hidden) if (self.low and self.high) else None
        self.heads = nn.ModuleDict({
            "shape": nn.Linear(hidden, n_classes), "axis": nn.Linear(hidden, 6),
            "size": nn.Linear(hidden, 1), "position": nn.Linear(hidden, 2),
            "rgb": nn.Linear(hidden, 3),
        })

    def embed(self, xs: dict[str, torch.Tensor], use_high: bool = True) -> torch.Tensor:
        def group(names, enc):
            return enc(sum(self.proj[r](self.in_drop(xs[r])) for r in names))

        h = group(self.low, self.enc_low) if self.low else None
        if self.high and (use_high or h is None):
            hh = group(self.high, self.enc_high)
            if h is None:
                h = hh
            else:
                g = torch.sigmoid(self.gate(torch.cat([h, hh], dim=-1)))
                h = h + g * hh
        return h

    def forward(self, xs: dict[str, torch.Tensor], use_high: bool = True):
        h = self.embed(xs, use_high)
        return {k: head(h) for k, head in self.heads.items()}, h


_N_COLOURS = 8  # the stimulus world's named colours (data_loaders.simulate.stimuli)


class _Brain3DModule(nn.Module):
    """Everything Brain3D saves: one stage-1 network per subject and the shape decoder."""

    def __init__(self, layouts: dict[str, dict[str, int]], low: dict[str, list[str]],
                 high: dict[str, list[str]], hidden: int, shape_config: dict[str, int],
                 dropout: float, input_dropout: float, n_early: dict[str, int]) -> None:
        super().__init__()
        self.shape = ImplicitShapeModel(**shape_config)
        n_cls = shape_config["n_classes"]
        self.stage1 = nn.ModuleDict({
            s: _Stage1(layouts[s], low[s], high[s], hidden, n_cls, dropout, input_dropout)
            for s in layouts
        })
        for s, lay in layouts.items():
            n_vox = int(sum(lay.values()))
            self.register_buffer(f"mean_{s}", torch.zeros(n_vox))
            self.register_buffer(f"sd_{s}", torch.ones(n_vox))
            self.register_buffer(f"img_w_{s}", torch.zeros(n_early[s], 3 * _IMG_RES**2))
            self.register_buffer(f"img_b_{s}", torch.zeros(3 * _IMG_RES**2))
            self.register_buffer(f"col_w_{s}", torch.zeros(n_vox, _N_COLOURS))
            self.register_buffer(f"col_b_{s}", torch.zeros(_N_COLOURS))
        self.register_buffer("target_mean", torch.zeros(12))
        self.register_buffer("target_sd", torch.ones(12))


class Brain3D(PretrainedMixin):
    """Brain3D: fMRI -> 3D-aware latent (stage 1) -> implicit field -> mesh (stage 2).

    Parameters
    ----------
    rois : tuple of str
        ROIs to read, among ``LOW_ROIS`` (V1, V2, V3, hV4: the low-level encoder) and
        ``HIGH_ROIS`` (higher, MTL: the high-level encoder).
    missing_rois : {"error", "drop"}
        A subject without voxels in one of ``rois``: ``"error"`` raises a ``ValueError``
        naming the ROI and the subject; ``"drop"`` warns and decodes from the ROIs it has
        (an encoder whose ROIs are all absent is left out; without low-level ROIs the
        high-level latent is used alone).
    hidden : int
        Width of the region projections and the latent ``h``.
    dropout, input_dropout : float
        Dropout in the encoders and on the voxels.
    n_epochs : int
        Full-batch Adam epochs; with ``progressive`` the first half trains the low-level
        encoder alone, the second gates the high-level one in.
    progressive : bool
        Low-level first, then the high-level latent gated in (False: both from the start).
    lr, weight_decay : float
        AdamW settings.
    l2 : float
        Ridge penalty on the region projections, ``l2 * sum ||W_roi||^2`` (the voxels
        outnumber the training images, as in NSD: without it the encoders overfit).
    val_fraction : float
        Training images held out to pick the best epoch (early stopping).
    latent_mode : {"expected", "argmax"}
        The shape latent is the class-probability-weighted mean of the stage-2 codes, or
        the code of the most probable class.
    colour_mode : {"class", "regression"}
        ``"class"``: a ridge classifier on the voxels reads the main object's named colour
        and the mesh takes that colour (a regressed RGB is a mean of the colours the brain
        cannot tell apart: grey-brown); ``"regression"``: the RGB regressed by the stage-1
        network (MSE).
    shape_decoder : str or None
        A folder of a saved :class:`ImplicitShapeModel`; None: the shipped one.
    mesh_resolution : int
        Marching-cubes grid per axis (>= 8).
    guidance_steps : int
        Steps of 2D-prior guidance in :meth:`generate` (0: none).
    guidance_lr : float
        Adam step size of the guidance.
    guidance_resolution, guidance_samples : int
        Render size (pixels per side) and samples per ray of the guidance renders.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    random_state : int
        Seed of the weights, the validation split and the dropout.
    verbose : bool | None
        Progress bars.
    """

    def __init__(
        self,
        rois: tuple[str, ...] = ALL_ROIS,
        missing_rois: str = "error",
        hidden: int = 64,
        dropout: float = 0.3,
        input_dropout: float = 0.2,
        n_epochs: int = 150,
        progressive: bool = True,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        l2: float = 1.0,
        val_fraction: float = 0.1,
        latent_mode: str = "expected",
        colour_mode: str = "class",
        shape_decoder: str | None = None,
        mesh_resolution: int = 48,
        guidance_steps: int = 0,
        guidance_lr: float = 0.05,
        guidance_resolution: int = 16,
        guidance_samples: int = 16,
        device: str = "cpu",
        random_state: int = 0,
        verbose: bool | None = None,
    ) -> None:
        self.rois = rois
        self.missing_rois = missing_rois
        self.hidden = hidden
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.n_epochs = n_epochs
        self.progressive = progressive
        self.lr = lr
        self.weight_decay = weight_decay
        self.l2 = l2
        self.val_fraction = val_fraction
        self.latent_mode = latent_mode
        self.colour_mode = colour_mode
        self.shape_decoder = shape_decoder
        self.mesh_resolution = mesh_resolution
        self.guidance_steps = guidance_steps
        self.guidance_lr = guidance_lr
        self.guidance_resolution = guidance_resolution
        self.guidance_samples = guidance_samples
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- sklearn plumbing -----------------------------------------------------------------
    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """Constructor arguments (scikit-learn convention)."""
        names = ("rois", "missing_rois", "hidden", "dropout", "input_dropout", "n_epochs",
                 "progressive", "lr", "weight_decay", "l2", "val_fraction", "latent_mode",
                 "colour_mode", "shape_decoder", "mesh_resolution", "guidance_steps",
                 "guidance_lr",
                 "guidance_resolution", "guidance_samples", "device", "random_state",
                 "verbose")
        out = {k: getattr(self, k) for k in names}
        out["rois"] = list(out["rois"])
        return out

    def set_params(self, **params: Any) -> Brain3D:
        """Set constructor arguments."""
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"{k}: not a Brain3D parameter; expected one of "
                                 f"{sorted(self.get_params())}")
            setattr(self, k, v)
        return self

    def _extra_config(self) -> dict[str, Any]:
        return {"layouts_": self.layouts_, "low_": self.low_, "high_": self.high_,
                "shape_config_": self.shape_config_, "shape_identifier_": self.shape_identifier_,
                "n_early_": self.n_early_, "early_cols_": self.early_cols_}

    def _build_module(self, extra: dict[str, Any]) -> nn.Module:
        return _Brain3DModule(extra["layouts_"], extra["low_"], extra["high_"], self.hidden,
                              extra["shape_config_"], self.dropout, self.input_dropout,
                              extra["n_early_"])

    # -- validation -------------------------------------------------------------------------
    def _check_params(self) -> None:
        unknown = sorted(set(self.rois) - set(ALL_ROIS))
        if unknown or not self.rois:
            raise ValueError(f"rois: unknown or empty ROI list {list(self.rois)}; expected a "
                             f"subset of {ALL_ROIS}")
        if self.missing_rois not in ("error", "drop"):
            raise ValueError(f"missing_rois: expected 'error' or 'drop', got {self.missing_rois!r}")
        if self.latent_mode not in ("expected", "argmax"):
            raise ValueError(
                f"latent_mode: expected 'expected' or 'argmax', got {self.latent_mode!r}"
            )
        if self.colour_mode not in ("class", "regression"):
            raise ValueError(
                f"colour_mode: expected 'class' or 'regression', got {self.colour_mode!r}"
            )
        from decoding.generation.mesh import MIN_RESOLUTION

        if self.mesh_resolution < MIN_RESOLUTION:
            raise ValueError(
                f"mesh_resolution: a {self.mesh_resolution}^3 grid is too coarse for marching "
                f"cubes; expected at least {MIN_RESOLUTION}"
            )

    def _layout(self, sub: FMRISubject) -> tuple[dict[str, int], list[str], list[str]]:
        present = set(sub.roi_names)
        missing = [r for r in self.rois if r not in present]
        if missing and self.missing_rois == "error":
            raise ValueError(
                f"rois: subject {sub.subject!r} has no voxels labelled {missing}; its ROIs are "
                f"{sub.roi_names}. Expected every ROI of rois={list(self.rois)}, or pass "
                "missing_rois='drop' to decode from the ROIs it has"
            )
        if missing:
            warnings.warn(f"Brain3D: subject {sub.subject!r} lacks ROIs {missing}; decoding "
                          "without them (missing_rois='drop')", stacklevel=3)
        use = [r for r in self.rois if r in present]
        layout = {r: int((sub.roi == r).sum()) for r in use}
        return layout, [r for r in use if r in LOW_ROIS], [r for r in use if r in HIGH_ROIS]

    def _shape_model(self) -> ImplicitShapeModel:
        if self.shape_decoder is None:
            return default_shape_decoder()
        return load_shape_decoder(self.shape_decoder)

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, dataset: FMRIDataset, subjects: list[str] | None = None) -> Brain3D:
        """Train stage 1 (one network per subject) on a dataset whose stimuli have objects.

        Parameters
        ----------
        dataset : FMRIDataset
            Training trials (repeats may be averaged beforehand); ``stimuli.objects_3d``
            must hold each image's 3D object.
        subjects : list of str, optional
            Subjects to fit (default all).
        """
        self._check_params()
        if not isinstance(dataset, FMRIDataset):
            raise ValueError(f"dataset: expected an FMRIDataset, got {type(dataset).__name__}")
        device = resolve_device(self.device)
        names = list(dataset.subject_names if subjects is None else subjects)
        for s in names:
            dataset._subject(s)
        shape = self._shape_model()
        self.shape_config_ = dict(shape.config)
        self.shape_identifier_ = shape.identifier
        self.layouts_, self.low_, self.high_, self.n_early_, self.early_cols_ = {}, {}, {}, {}, {}
        for s in names:
            sub = dataset.subjects[s]
            lay, low, high = self._layout(sub)
            self.layouts_[s], self.low_[s], self.high_[s] = lay, low, high
            early = np.flatnonzero(np.isin(sub.roi, [r for r in lay if r in LOW_ROIS]))
            if early.size == 0:  # no early ROI: the image regression reads every voxel
                early = np.flatnonzero(np.isin(sub.roi, list(lay)))
            cols = self._columns(sub)
            # early columns as positions within the selected columns
            self.early_cols_[s] = [int(i) for i in np.flatnonzero(np.isin(cols, early))]
            self.n_early_[s] = len(self.early_cols_[s])
        module = self._build_module(self._extra_config())
        module.shape.load_state_dict(shape.state_dict())
        for p in module.shape.parameters():
            p.requires_grad_(False)
        self.module_ = module.to(device)

        # targets, standardised (size in log units)
        all_t = [object_targets(dataset.stimuli, dataset.subjects[s].stim_ids) for s in names]
        cont = np.concatenate([self._cont_targets(t) for t in all_t])
        self.module_.target_mean.copy_(torch.as_tensor(cont.mean(0), dtype=torch.float32))
        self.module_.target_sd.copy_(torch.as_tensor(cont.std(0) + 1e-6, dtype=torch.float32))
        self.history_ = {}
        for s, t in zip(names, all_t):
            self.history_[s] = self._fit_subject(dataset.subjects[s], t, dataset.stimuli)
        self.module_.eval()
        return self

    @staticmethod
    def _cont_targets(t: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([_axis_tensor(t["axis"]), np.log(t["size"])[:, None],
                               t["position"], t["rgb"]], axis=1).astype(np.float32)

    def _columns(self, sub: FMRISubject) -> np.ndarray:
        lay = self.layouts_[sub.subject]
        return np.concatenate([np.flatnonzero(sub.roi == r) for r in lay])

    def _inputs(self, s: str, betas: np.ndarray) -> dict[str, torch.Tensor]:
        dev = next(self.module_.parameters()).device
        x = torch.as_tensor(np.asarray(betas, np.float32), device=dev)
        x = (x - getattr(self.module_, f"mean_{s}")) / getattr(self.module_, f"sd_{s}")
        out, start = {}, 0
        for r, n in self.layouts_[s].items():
            out[r] = x[:, start:start + n]
            start += n
        return out

    def _fit_subject(self, sub: FMRISubject, t: dict[str, np.ndarray], stimuli: Stimuli):
        s = sub.subject
        cols = self._columns(sub)
        X = sub.betas[:, cols].astype(np.float32)
        mean, sd = X.mean(0), X.std(0) + 1e-6
        getattr(self.module_, f"mean_{s}").copy_(torch.as_tensor(mean))
        getattr(self.module_, f"sd_{s}").copy_(torch.as_tensor(sd))
        self._fit_image_regression(s, (X - mean) / sd, stimuli.images[
            stimuli.index_of(sub.stim_ids)])
        self._fit_colour_classifier(s, (X - mean) / sd, t["colour"])
        net = self.module_.stage1[s]
        dev = next(net.parameters()).device
        rng = np.random.default_rng(self.random_state)
        torch.manual_seed(self.random_state)
        n = len(X)
        # hold out whole images (all repeats of an image on one side)
        uniq = np.unique(sub.stim_ids)
        n_val = int(round(self.val_fraction * uniq.size)) if self.val_fraction > 0 else 0
        val_ids = rng.choice(uniq, size=n_val, replace=False) if n_val else np.array([], int)
        is_val = np.isin(sub.stim_ids, val_ids)
        tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        xs = self._inputs(s, X)
        y_cls = torch.as_tensor(t["shape"], device=dev)
        y_cont = (torch.as_tensor(self._cont_targets(t), device=dev)
                  - self.module_.target_mean) / self.module_.target_sd
        axis_w = torch.as_tensor(~np.isin(t["shape"], _AXISLESS), dtype=torch.float32,
                                 device=dev)
        params = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

        def loss_fn(rows: np.ndarray, use_high: bool, train: bool) -> torch.Tensor:
            net.train(train)
            out, _ = net({r: v[rows] for r, v in xs.items()}, use_high)
            yc = y_cont[rows]
            ce = nn.functional.cross_entropy(out["shape"], y_cls[rows])
            ax = ((out["axis"] - yc[:, :6]) ** 2).mean(1)
            ax = (ax * axis_w[rows]).sum() / axis_w[rows].sum().clamp(min=1)
            rest = ((torch.cat([out["size"], out["position"], out["rgb"]], 1) - yc[:, 6:]) ** 2
                    ).mean()
            pen = sum((p.weight ** 2).sum() for p in net.proj.values())
            return ce + ax + rest, pen

        n_first = self.n_epochs // 2 if (self.progressive and net.low and net.high) else 0
        best, best_state, hist = np.inf, None, []
        epochs = range(self.n_epochs)
        if self.verbose:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=f"Brain3D stage 1 {s}", unit="epoch")
        for ep in epochs:
            use_high = ep >= n_first
            if ep == n_first and n_first > 0:
                best, best_state = np.inf, None  # the integrated model restarts the selection
            fit_loss, pen = loss_fn(tr, use_high, True)
            opt.zero_grad()
            (fit_loss + self.l2 * pen).backward()
            opt.step()
            if ep % 5 and ep != self.n_epochs - 1:
                continue
            if len(va):
                with torch.no_grad():
                    v = float(loss_fn(va, use_high, False)[0])
            else:
                v = fit_loss.item()
            hist.append((fit_loss.item(), v))
            if v < best:
                best, best_state = v, copy.deepcopy(net.state_dict())
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        del n
        return hist

    def _fit_image_regression(self, s: str, Xz: np.ndarray, images: np.ndarray) -> None:
        """Ridge from early visual voxels to a 16x16 RGB image (the fallback 2D prior)."""
        from sklearn.linear_model import RidgeCV

        small = torch.nn.functional.interpolate(
            torch.as_tensor(images, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0,
            size=(_IMG_RES, _IMG_RES), mode="area").permute(0, 2, 3, 1).reshape(len(images), -1)
        Xe = Xz[:, self.early_cols_[s]]
        r = RidgeCV(alphas=np.logspace(1, 5, 9)).fit(Xe, small.numpy())
        getattr(self.module_, f"img_w_{s}").copy_(torch.as_tensor(r.coef_.T, dtype=torch.float32))
        getattr(self.module_, f"img_b_{s}").copy_(torch.as_tensor(r.intercept_,
                                                                  dtype=torch.float32))

    def _fit_colour_classifier(self, s: str, Xz: np.ndarray, colour: np.ndarray) -> None:
        """Ridge classifier from every voxel read to the main object's named colour.

        Colour is a weak, distributed signal (simulated colour-opponent weights in V1-hV4,
        a small colour term in the object-selective voxels); trained jointly with the shape
        through the stage-1 latent it lost both (measured: shape 0.84 -> 0.75, colour error
        0.59 -> 0.63 at the quick level), so it gets its own linear read-out.
        """
        from sklearn.linear_model import RidgeClassifierCV

        n_col = getattr(self.module_, f"col_b_{s}").numel()
        clf = RidgeClassifierCV(alphas=np.logspace(0, 5, 11)).fit(Xz, colour)
        W = np.zeros((Xz.shape[1], n_col), np.float32)
        b = np.full(n_col, -1e4, np.float32)  # colours never seen in training: never chosen
        coef = clf.coef_ if clf.coef_.shape[0] > 1 else np.stack([-clf.coef_[0], clf.coef_[0]])
        icpt = np.atleast_1d(clf.intercept_)
        icpt = icpt if icpt.size > 1 else np.array([-icpt[0], icpt[0]])
        W[:, clf.classes_] = coef.T
        b[clf.classes_] = icpt
        getattr(self.module_, f"col_w_{s}").copy_(torch.as_tensor(W))
        getattr(self.module_, f"col_b_{s}").copy_(torch.as_tensor(b))

    # -- prediction ----------------------------------------------------------------------------
    def _check_betas(self, subject: str, betas: Any) -> np.ndarray:
        if not hasattr(self, "module_"):
            raise RuntimeError("Brain3D: not fitted; call fit(dataset) first")
        if subject not in self.layouts_:
            raise ValueError(f"subject: unknown subject {subject!r}; expected one of "
                             f"{sorted(self.layouts_)}")
        b = np.asarray(betas)
        n_vox = int(sum(self.layouts_[subject].values()))
        if b.ndim == 1:
            b = b[None]
        if b.ndim != 2 or b.dtype.kind not in "fiu" or b.shape[1] != n_vox or len(b) == 0:
            raise ValueError(
                f"betas: expected a float array of shape (n_trials, {n_vox}) (the voxels of "
                f"ROIs {list(self.layouts_[subject])} that fit saw), got {b.dtype} {b.shape}"
            )
        if not np.isfinite(b).all():
            bad = int((~np.isfinite(b)).any(axis=1).sum())
            raise ValueError(f"betas: expected finite values, got NaN or inf in {bad} trial(s)")
        return b.astype(np.float32)

    def subject_betas(self, sub: FMRISubject) -> np.ndarray:
        """The columns of a subject's betas that :meth:`fit` used, in the model's order."""
        return sub.betas[:, self._columns(sub)]

    def subject_roi(self, sub: FMRISubject) -> np.ndarray:
        """ROI labels of the columns :meth:`subject_betas` returns."""
        return sub.roi[self._columns(sub)]

    @torch.no_grad()
    def embed(self, subject: str, betas: np.ndarray) -> np.ndarray:
        """The integrated stage-1 latent ``h`` (n, hidden) of betas (model column order)."""
        b = self._check_betas(subject, betas)
        net = self.module_.stage1[subject].eval()
        return net.embed(self._inputs(subject, b)).cpu().numpy()

    @torch.no_grad()
    def predict_latents(self, subject: str, betas: np.ndarray) -> dict[str, np.ndarray]:
        """Stage 1: the 3D-aware latent of each trial.

        Returns
        -------
        dict
            ``shape_probs`` (n, 8), ``shape`` (n,) most probable class, ``z`` (n, d)
            shape latent, ``axis`` (n, 3), ``rotation`` (n, 3, 3), ``size`` (n,),
            ``position`` (n, 2), ``rgb`` (n, 3) in [0, 1] (``colour_mode="class"``: the
            named colour of ``colour``), ``colour_probs`` (n, 8), ``colour`` (n,).
        """
        from data_loaders.simulate.stimuli import COLOUR_RGB

        b = self._check_betas(subject, betas)
        net = self.module_.stage1[subject].eval()
        xs = self._inputs(subject, b)
        out, _ = net(xs)
        probs = torch.softmax(out["shape"], -1)
        codes = self.module_.shape.codes
        if self.latent_mode == "argmax":
            z = codes[probs.argmax(-1)]
        else:
            z = probs @ codes
        cont = torch.cat([out["axis"], out["size"], out["position"], out["rgb"]], 1)
        cont = (cont * self.module_.target_sd + self.module_.target_mean).cpu().numpy()
        axis = _axis_from_tensor(cont[:, :6].astype(np.float64))
        xz = torch.cat([xs[r] for r in self.layouts_[subject]], 1)  # standardised voxels
        scores = xz @ getattr(self.module_, f"col_w_{subject}") + getattr(
            self.module_, f"col_b_{subject}")  # fmt: skip
        col_p = torch.softmax(scores, -1).cpu().numpy()  # ridge scores, softmax-normalised
        rgb = np.clip(cont[:, 9:12], 0.0, 1.0).astype(np.float64)
        if self.colour_mode == "class":
            rgb = COLOUR_RGB[col_p.argmax(1)].astype(np.float64)
        return {
            "shape_probs": probs.cpu().numpy(), "shape": probs.argmax(-1).cpu().numpy(),
            "z": z.cpu().numpy(), "axis": axis, "rotation": rotation_from_axis(axis),
            "size": np.exp(cont[:, 6]).astype(np.float64),
            "position": cont[:, 7:9].astype(np.float64), "rgb": rgb,
            "colour_probs": col_p, "colour": col_p.argmax(1),
        }

    @torch.no_grad()
    def predict_images(self, subject: str, betas: np.ndarray, size: int = 64) -> np.ndarray:
        """The blurry 2D image regressed from early visual cortex, (n, size, size, 3) in [0, 1]."""
        b = self._check_betas(subject, betas)
        x = self._inputs(subject, b)
        xz = torch.cat([x[r] for r in self.layouts_[subject]], 1)[:, self.early_cols_[subject]]
        y = xz @ getattr(self.module_, f"img_w_{subject}") + getattr(self.module_,
                                                                     f"img_b_{subject}")
        img = y.reshape(-1, _IMG_RES, _IMG_RES, 3).permute(0, 3, 1, 2)
        img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear",
                                              align_corners=False)
        return img.permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy()

    def generate(
        self,
        subject: str,
        betas: np.ndarray,
        guide_images: np.ndarray | None = None,
        resolution: int | None = None,
        return_latents: bool = False,
    ) -> list[Mesh] | tuple[list[Mesh], dict[str, np.ndarray]]:
        """fMRI -> meshes: stage 1, optional 2D-prior guidance, stage 2 and marching cubes.

        Parameters
        ----------
        subject : str
        betas : ndarray (n_trials, n_voxels)
            The subject's voxels in the columns :meth:`fit` used (see
            :meth:`subject_betas`). NaN betas are refused.
        guide_images : ndarray (n, H, W, 3), optional
            2D images decoded from the same trials (e.g. the reconstruction generator's),
            floats in [0, 1] or uint8; used when ``guidance_steps > 0``. Default: the
            early-visual image regression (:meth:`predict_images`).
        resolution : int, optional
            Marching-cubes grid (default ``mesh_resolution``; >= 8).
        return_latents : bool
            Also return the (guided) latents.

        Returns
        -------
        list of Mesh
            One per trial, in the object-centred camera frame, in units of the image width
            (vertices ``size * R v``), coloured with the decoded colour; ``metadata`` holds
            the decoded shape class, size, position and colour.
        """
        from data_loaders.simulate.stimuli import SHAPE_CLASSES
        from decoding.generation.mesh import MIN_RESOLUTION

        res = self.mesh_resolution if resolution is None else int(resolution)
        if res < MIN_RESOLUTION:
            raise ValueError(
                f"resolution: a {res}^3 grid is too coarse for marching cubes; expected at "
                f"least {MIN_RESOLUTION}"
            )
        b = self._check_betas(subject, betas)
        lat = self.predict_latents(subject, b)
        if self.guidance_steps > 0:
            imgs = self.predict_images(subject, b) if guide_images is None else guide_images
            lat = guide_latents(self.module_.shape, lat, imgs, n_steps=self.guidance_steps,
                                lr=self.guidance_lr, resolution=self.guidance_resolution,
                                n_samples=self.guidance_samples)
        shape = self.module_.shape
        meshes = []
        for i in range(len(b)):
            m = field_mesh(shape, lat["z"][i], lat["rotation"][i], float(lat["size"][i]),
                           resolution=res, color=lat["rgb"][i])
            m.metadata.update(shape_class=SHAPE_CLASSES[int(lat["shape"][i])],
                              size=float(lat["size"][i]),
                              position=lat["position"][i].tolist(), rgb=lat["rgb"][i].tolist())
            meshes.append(m)
        return (meshes, lat) if return_latents else meshes


# --------------------------------------------------------------------------------------
# 2D-prior guidance
# --------------------------------------------------------------------------------------
def _skew(w: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(w[:, 0])
    return torch.stack([torch.stack([z, -w[:, 2], w[:, 1]], -1),
                        torch.stack([w[:, 2], z, -w[:, 0]], -1),
                        torch.stack([-w[:, 1], w[:, 0], z], -1)], 1)


def guide_latents(
    shape: ImplicitShapeModel,
    latents: dict[str, np.ndarray],
    images: np.ndarray,
    n_steps: int = 30,
    lr: float = 0.05,
    resolution: int = 16,
    n_samples: int = 16,
    prior_weight: float = 0.05,
    side_weight: float = 0.5,
    sil_weight: float = 1.0,
    fit_scale: bool = False,
    fit_rotation: bool = False,
    fit_colour: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Optimise latents so that renders of their fields agree with 2D images (camera view).

    The camera-view render (silhouette composited over the crop's background colour) is
    compared with the crop of the image around the decoded position, at the decoded size
    (``position +- size`` in image fractions); the shape latent, a rotation correction
    (axis-angle), a log-scale correction and the colour move; a second, side view is held
    near its initial render (the image says nothing about it) and the shape latent near its
    start (``prior_weight``). ``sil_weight`` weighs a silhouette term (the rendered
    silhouette against pixels that differ from the background colour); ``fit_scale`` and
    ``fit_rotation`` say whether size and rotation move too (off by default: towards the
    true stimulus itself, moving them lowered the IoU on subject 1, 0.409 -> 0.378, as the
    size drifted). ``fit_colour=False`` keeps the colour (a named colour read from the
    brain: the shaded, lit pixels of the crop would pull it darker). Adam, ``n_steps`` steps.

    Returns
    -------
    dict
        A copy of ``latents`` with ``z``, ``rotation``, ``axis``, ``size`` and ``rgb``
        updated (and ``guided=True``).
    """
    torch.manual_seed(seed)
    img = np.asarray(images)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    if img.ndim != 4 or img.shape[-1] != 3 or len(img) != len(latents["z"]):
        raise ValueError(
            f"images: expected (n, H, W, 3) with n = {len(latents['z'])} trials, got "
            f"{img.shape}"
        )
    if not np.isfinite(img).all():
        raise ValueError("images: expected finite pixel values, got NaN or inf")
    dtype = torch.float32
    target = torch.as_tensor(img, dtype=dtype).permute(0, 3, 1, 2)
    pos = torch.as_tensor(latents["position"], dtype=dtype)
    size0 = torch.as_tensor(latents["size"], dtype=dtype)
    c = (torch.arange(resolution, dtype=dtype) + 0.5) / resolution * 2 - 1
    vv, uu = torch.meshgrid(c, c, indexing="ij")
    # image fractions of each render pixel, then grid_sample's [-1, 1] coordinates
    gx = (pos[:, 0, None, None] + size0[:, None, None] * uu) * 2 - 1
    gy = (pos[:, 1, None, None] + size0[:, None, None] * vv) * 2 - 1
    crop = torch.nn.functional.grid_sample(target, torch.stack([gx, gy], -1), mode="bilinear",
                                           padding_mode="border", align_corners=False)
    crop = crop.permute(0, 2, 3, 1)  # (B, r, r, 3)
    ring = (uu**2 + vv**2) > 1.0
    bg = crop[:, ring].mean(1)  # (B, 3): the crop's background colour
    sil_target = ((crop - bg[:, None, None]).norm(dim=-1) / 0.15).clamp(0, 1)

    z0 = torch.as_tensor(latents["z"], dtype=dtype)
    R0 = torch.as_tensor(latents["rotation"], dtype=dtype)
    rgb0 = torch.as_tensor(latents["rgb"], dtype=dtype).clamp(0.02, 0.98)
    z = z0.clone().requires_grad_(True)
    w = torch.zeros(len(z0), 3, requires_grad=True)
    log_s = torch.zeros(len(z0), requires_grad=True)
    rgb_logit = torch.logit(rgb0).clone().requires_grad_(True)
    views = torch.as_tensor(np.stack([np.eye(3), view_rotation(0.0, 90.0)]), dtype=dtype)
    with torch.no_grad():
        sil0, _ = render_occupancy(shape, z0, R0, rgb0, views[1:], resolution, n_samples)
    params = [z] + ([rgb_logit] if fit_colour else []) + ([w] if fit_rotation else []) + (
        [log_s] if fit_scale else [])  # fmt: skip
    opt = torch.optim.Adam(params, lr=lr)
    for p in shape.parameters():
        p.requires_grad_(False)
    for _ in range(int(n_steps)):
        R = torch.linalg.matrix_exp(_skew(w)) @ R0
        rgb = torch.sigmoid(rgb_logit)
        sil, col = render_occupancy(shape, z, R, rgb, views, resolution, n_samples,
                                    scale=torch.exp(log_s))
        comp = col[:, 0] + (1 - sil[:, 0, ..., None]) * bg[:, None, None]
        loss = ((comp - crop) ** 2).mean() + sil_weight * ((sil[:, 0] - sil_target) ** 2).mean()
        loss = loss + side_weight * ((sil[:, 1] - sil0[:, 0]) ** 2).mean()
        loss = loss + prior_weight * ((z - z0) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        R = (torch.linalg.matrix_exp(_skew(w)) @ R0).numpy().astype(np.float64)
        out = dict(latents)
        out.update(z=z.detach().numpy().astype(np.float32), rotation=R, axis=R[:, :, 1],
                   size=latents["size"] * np.exp(log_s.detach().numpy()),
                   rgb=torch.sigmoid(rgb_logit).numpy().astype(np.float64), guided=True)
    return out


# --------------------------------------------------------------------------------------
# baselines and scores
# --------------------------------------------------------------------------------------
def oracle_latents(
    shape: ImplicitShapeModel, truth: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The true object's latent: its class code, rotation, size, position and colour."""
    codes = shape.codes.detach().cpu().numpy()
    return {"z": codes[truth["shape"]], "shape": truth["shape"], "rotation": truth["rotation"],
            "axis": truth["axis"], "size": truth["size"], "position": truth["position"],
            "rgb": truth["rgb"]}


def retrieval_latents(
    shape: ImplicitShapeModel, query_emb: np.ndarray, train_emb: np.ndarray,
    train_truth: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Retrieval baseline: the nearest training trial's object (cosine, embedding space)."""
    q = query_emb / (np.linalg.norm(query_emb, axis=1, keepdims=True) + 1e-12)
    t = train_emb / (np.linalg.norm(train_emb, axis=1, keepdims=True) + 1e-12)
    nn_idx = (q @ t.T).argmax(1)
    return oracle_latents(shape, {k: v[nn_idx] for k, v in train_truth.items()})


class ImageLatentRegressor:
    """Stage 2 from a 2D image alone: image features -> the 3D-aware latent (baseline).

    Logistic regression (shape class) and ridge (axis tensor, log size, position, colour)
    on features of the images (any ``fx.transform(images) -> (n, d)``), trained on the
    true stimuli; applied to images decoded from the brain.
    """

    def __init__(self, feature_extractor: Any, alpha: float = 1.0, C: float = 1.0) -> None:
        self.feature_extractor = feature_extractor
        self.alpha = alpha
        self.C = C

    def fit(self, images: np.ndarray, truth: dict[str, np.ndarray]) -> ImageLatentRegressor:
        """Fit on images (uint8) and their objects (:func:`object_targets`)."""
        from sklearn.linear_model import LogisticRegression, Ridge

        F = self.feature_extractor.transform(images)
        self.cls_ = LogisticRegression(C=self.C, max_iter=2000).fit(F, truth["shape"])
        self.reg_ = Ridge(alpha=self.alpha).fit(F, Brain3D._cont_targets(truth))
        return self

    def predict(self, images: np.ndarray, shape: ImplicitShapeModel,
                latent_mode: str = "expected") -> dict[str, np.ndarray]:
        """Latents of images (uint8, or floats in [0, 1])."""
        img = np.asarray(images)
        if img.dtype != np.uint8:
            img = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
        F = self.feature_extractor.transform(img)
        probs = np.zeros((len(F), shape.codes.shape[0]))
        probs[:, self.cls_.classes_] = self.cls_.predict_proba(F)
        codes = shape.codes.detach().cpu().numpy()
        z = codes[probs.argmax(1)] if latent_mode == "argmax" else probs @ codes
        cont = self.reg_.predict(F)
        axis = _axis_from_tensor(cont[:, :6])
        return {"shape_probs": probs, "shape": probs.argmax(1), "z": z.astype(np.float32),
                "axis": axis, "rotation": rotation_from_axis(axis), "size": np.exp(cont[:, 6]),
                "position": cont[:, 7:9], "rgb": np.clip(cont[:, 9:12], 0, 1)}


_CANON_POINTS: dict[int, np.ndarray] = {}


def _canonical_points(k: int) -> np.ndarray:
    if k not in _CANON_POINTS:
        from data_loaders.simulate.stimuli import object_points

        _CANON_POINTS[k] = object_points(k, n_points=1024, random_state=k)
    return _CANON_POINTS[k]


@torch.no_grad()
def evaluate_objects(
    shape: ImplicitShapeModel,
    pred: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
    resolution: int = 24,
    class_resolution: int = 16,
    chunk: int = 16,
) -> dict[str, np.ndarray]:
    """Score decoded objects against the true ones, per object.

    Both objects are placed in the true object's centred camera frame, in units of its
    radius (the true shape fits in the unit ball), on a ``resolution^3`` grid over
    ``[-1.2, 1.2]^3``: the true occupancy is ``shape_sdf(R^T p) < 0``, the decoded one the
    field at ``R_pred^T p (s_true / s_pred)``.

    Returns
    -------
    dict of ndarray (n,)
        ``iou`` (3D voxel IoU), ``silhouette_iou`` (IoU of the camera-view projections),
        ``chamfer`` (symmetric, mean Euclidean, on 1,024 surface points each; the decoded
        surface by marching cubes on the same grid), ``class_correct`` (the decoded field's
        nearest class SDF in the canonical frame, by IoU, is the true class),
        ``axis_error_deg`` (sign-free angle between the symmetry axes; NaN for spheres and
        cubes), ``size_error`` (``|s_pred / s_true - 1|``), ``position_error`` (image
        widths), ``colour_error`` (RGB Euclidean distance).
    """
    from data_loaders.simulate.stimuli import SHAPE_CLASSES, shape_sdf
    from decoding.evaluation.metrics import chamfer_distance, voxel_iou

    n = len(truth["shape"])
    bound = 1.2
    grid = canonical_grid(resolution, bound).astype(np.float64)
    cgrid = canonical_grid(class_resolution, 1.05)
    class_occ = np.stack([shape_sdf(k, cgrid) < 0 for k in range(len(SHAPE_CLASSES))])
    out = {k: np.full(n, np.nan) for k in ("iou", "silhouette_iou", "chamfer", "class_correct",
                                         "axis_error_deg", "size_error", "position_error",
                                         "colour_error")}
    z_all = torch.as_tensor(np.asarray(pred["z"], np.float32))
    ratio = np.asarray(truth["size"]) / np.asarray(pred["size"])
    for s0 in range(0, n, chunk):
        idx = np.arange(s0, min(n, s0 + chunk))
        R = np.asarray(pred["rotation"])[idx]
        pts = np.einsum("nj,bjk->bnk", grid, R) * ratio[idx, None, None]
        logits = shape(torch.as_tensor(pts, dtype=torch.float32), z_all[idx]).numpy()
        canon = shape(torch.as_tensor(np.broadcast_to(cgrid, (len(idx),) + cgrid.shape).copy()),
                      z_all[idx]).numpy() > 0
        for j, i in enumerate(idx):
            k = int(truth["shape"][i])
            true_occ = shape_sdf(k, grid @ truth["rotation"][i]) < 0
            pocc = logits[j] > 0
            out["iou"][i] = voxel_iou(pocc, true_occ)
            cube = (resolution,) * 3
            out["silhouette_iou"][i] = voxel_iou(pocc.reshape(cube).any(2),
                                                 true_occ.reshape(cube).any(2))
            true_pts = _canonical_points(k) @ truth["rotation"][i].T
            try:
                m = marching_cubes_mesh(logits[j].reshape(cube), bound=bound, inside="above")
                pred_pts = m.sample_points(1024, random_state=i)
            except ValueError:  # an empty (or full) field: its "surface" is the centre
                pred_pts = np.zeros((1, 3))
            out["chamfer"][i] = chamfer_distance(pred_pts, true_pts)
            ious = [voxel_iou(canon[j], class_occ[c]) for c in range(len(class_occ))]
            out["class_correct"][i] = float(int(np.argmax(ious)) == k)
            if k not in _AXISLESS:
                a, b = np.asarray(pred["rotation"])[i][:, 1], truth["rotation"][i][:, 1]
                cosang = abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
                out["axis_error_deg"][i] = np.degrees(np.arccos(min(1.0, cosang)))
    out["size_error"] = np.abs(1.0 / ratio - 1.0)
    out["position_error"] = np.linalg.norm(np.asarray(pred["position"]) - truth["position"],
                                           axis=1)
    out["colour_error"] = np.linalg.norm(np.asarray(pred["rgb"]) - truth["rgb"], axis=1)
    return out


def summarize_scores(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """Means of :func:`evaluate_objects`' per-object scores (NaN-aware for the axis)."""
    return {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            for k, v in scores.items()}
