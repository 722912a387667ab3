"""A simulated visual cortex that sees the stimulus world, laid out like NSD.

The generative model, per subject ``s`` and voxel ``v`` (Allen et al. 2022, "A massive 7T
fMRI dataset to bridge cognitive neuroscience and artificial intelligence", Nat.
Neurosci. 25:116, defines the NSD design and the noise ceiling mirrored here):

.. math::

    \\beta_{t v} = \\mu_v + a_v\\, \\tilde s_v(i_t) + \\sigma_v\\, \\varepsilon_{t v},
    \\qquad \\tilde s_v = \\frac{s_v - \\mathrm{mean}_i\\, s_v}{\\mathrm{sd}_i\\, s_v},
    \\qquad \\sigma_v = a_v / \\mathrm{ncsnr}_v

with ``i_t`` the image of trial ``t``, the mean and (population) sd taken over the distinct
images the subject saw, and unit-variance noise ``eps`` (a fraction ``noise_correlation``
of it shared across voxels through a few trial-wise factors, as fMRI noise is). So the
signal sd is ``a_v`` and the noise sd ``sigma_v``: ``ncsnr_v = a_v / sigma_v`` exactly, NSD's
definition, and the noise ceiling of an ``n``-trial average is
``NC = 100 ncsnr^2 / (ncsnr^2 + 1/n)`` (NSD data manual). Betas are in percent signal
change, quantised to multiples of 1/300 as NSD stores them (int16 = psc x 300).

The tuning ``s_v`` depends on the ROI:

- **V1, V2, V3, hV4** -- a population receptive field (pRF; Dumoulin & Wandell 2008,
  NeuroImage 39:647) over a Gabor energy bank (Kay et al. 2008, Nature 452:352):
  ``s_v(i) = sum_{k,o,g} w_v[k,o] p_v[g] E_i[k,o,g] + sum_{c,g} u_v[c] p_v[g] C_i[c,g]``,
  linear in the features of :func:`gabor_energy_features` (``E``: energy at scale ``k``,
  orientation ``o`` and grid cell ``g``; ``C``: luminance and colour-opponent means).
  ``p_v`` is a Gaussian pRF whose centre follows a retinotopic map of the voxel's MNI
  position (contralateral hemifield, ventral = upper field, eccentricity growing
  anteriorly) and whose size grows with eccentricity and from V1 to hV4 (Dumoulin &
  Wandell 2008; Kay et al. 2013, J. Neurophysiol. 110:481); preferred spatial frequency
  falls from V1 to hV4, colour weights rise in hV4.
- **higher** (object / category cortex) -- ``s_v = softplus(g (d_v - theta_v))`` with
  ``d_v(i) = sum_objects RF_v(position) (b_v . psi(object)) + low-level term``; ``psi``
  holds the shape class (one-hot), coarse 3D shape properties, viewpoint (how end-on the
  object's axis is), size and colour; ``b_v`` comes from a few shared prototypes ("round",
  "angular", "holed", ...) plus individual variation.
- **MTL** -- weak, position-invariant, mostly semantic (shape class and superordinate
  category), low ncsnr.

Each subject draws its own tunings from these shared population distributions: its own
ROI geometry (jittered in MNI space) and voxel count, retinotopic jitter, pRF sizes,
spatial-frequency and orientation preferences, and its own mixture over the shared
higher-visual prototypes. Voxels live on a coarse MNI152 grid (nilearn's bundled
template, cropped to the occipito-temporal cortex) so every map plots on a real brain.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..schema import FMRIDataset, FMRISubject, Stimuli, nsd_noise_ceiling
from .stimuli import SHAPE_CLASSES, SHAPE_PROPERTIES, render_stimuli

__all__ = [
    "ROI_NAMES",
    "DEFAULT_NCSNR",
    "SimulatedSubject",
    "SimulatedNSD",
    "gabor_energy_features",
    "simulate_nsd",
    "default_nsd",
    "mni_grid",
    "save_truth",
    "load_truth",
    "DEFAULT_PARAMS",
    "write_simulation",
    "is_complete",
]

ROI_NAMES: tuple[str, ...] = ("V1", "V2", "V3", "hV4", "higher", "MTL")
EARLY_ROIS: tuple[str, ...] = ("V1", "V2", "V3", "hV4")

#: Median single-trial ncsnr per ROI at ``snr=1`` (voxels scatter log-normally around it).
#: NSD's own nsdgeneral voxels have a median near 0.3-0.4; the defaults here are a bit
#: higher so that models trained on two sessions have something to find.
DEFAULT_NCSNR: dict[str, float] = {
    "V1": 0.9, "V2": 0.85, "V3": 0.8, "hV4": 0.7, "higher": 0.7, "MTL": 0.2,
}  # fmt: skip

# Signal sd (percent signal change) and mean response per ROI.
_AMPLITUDE = {"V1": 1.3, "V2": 1.2, "V3": 1.1, "hV4": 1.0, "higher": 0.9, "MTL": 0.4}
_BASELINE = {"V1": 1.5, "V2": 1.3, "V3": 1.2, "hV4": 1.0, "higher": 0.9, "MTL": 0.1}

# pRF size (sd, fraction of the image width) = a + b * eccentricity (half-widths)
_PRF_SIZE = {"V1": (0.035, 0.03), "V2": (0.045, 0.05), "V3": (0.06, 0.08), "hV4": (0.1, 0.12)}
# preferred scale index (0 = coarsest) and colour weight per early ROI
_SF_PREF = {"V1": 1.8, "V2": 1.4, "V3": 1.1, "hV4": 0.6}
_COLOUR_W = {"V1": 0.15, "V2": 0.2, "V3": 0.25, "hV4": 0.6}

# ROI cores in MNI mm, per hemisphere (|x| given; mirrored): (centre, radii) ellipsoids.
_ROI_CORES: dict[str, list[tuple[tuple[float, float, float], tuple[float, float, float]]]] = {
    "V1": [((9.0, -90.0, 3.0), (8.0, 17.0, 6.0))],
    "V2": [((12.0, -91.0, 14.0), (9.0, 12.0, 5.0)), ((12.0, -86.0, -7.0), (9.0, 12.0, 5.0))],
    "V3": [((20.0, -90.0, 24.0), (9.0, 10.0, 6.0)), ((22.0, -82.0, -13.0), (9.0, 9.0, 5.0))],
    "hV4": [((32.0, -78.0, -14.0), (9.0, 12.0, 7.0))],
    "higher": [((44.0, -72.0, 0.0), (9.0, 11.0, 10.0)), ((38.0, -54.0, -18.0), (7.0, 13.0, 6.0))],
    "MTL": [((26.0, -30.0, -12.0), (5.0, 9.0, 4.5))],
}
# cerebellum (per hemisphere, |x|): centre and radii in mm
_CEREB = (24.0, -64.0, -36.0, 30.0, 30.0, 23.0)
# cropping box of the grid (MNI mm): occipital and temporal cortex
_BOX_LO = (-70.0, -110.0, -44.0)
_BOX_HI = (70.0, -4.0, 40.0)

# the calcarine sulcus, per hemisphere: z of the fundus as a function of y (mm)
_CALC_Z0, _CALC_SLOPE, _POLE_Y, _ECC_SPAN_MM = 2.0, 0.22, -104.0, 38.0


# --------------------------------------------------------------------------------------
# voxel grid
# --------------------------------------------------------------------------------------
def _mni_file(name: str) -> Path:
    """A template bundled with nilearn (``nilearn/datasets/data``), found without
    importing ``nilearn.datasets`` (seconds of imports for two small files)."""
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / name
    if not path.is_file():  # layout changed: ask nilearn where its bundled files are
        from nilearn.datasets import struct

        path = Path(struct.__file__).parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"nilearn's bundled MNI152 template not found: expected {path}")
    return path


def _resample(img: nib.Nifti1Image, affine: np.ndarray, shape: tuple, fwhm_mm: float):
    """Smooth (Gaussian, ``fwhm_mm``) then linearly sample ``img`` on a target grid."""
    from scipy import ndimage

    data = np.asarray(img.dataobj, dtype=np.float32)
    src_vox = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    sigma = fwhm_mm / 2.3548 / src_vox
    data = ndimage.gaussian_filter(data, sigma)
    xform = np.linalg.inv(img.affine) @ affine  # target voxel -> source voxel
    return ndimage.affine_transform(
        data, xform[:3, :3], offset=xform[:3, 3], output_shape=shape, order=1, cval=0.0
    )


@functools.lru_cache(maxsize=4)
def mni_grid(voxel_size_mm: float = 4.0) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """The simulation's voxel grid: nilearn's bundled MNI152 templates, resampled and cropped.

    Parameters
    ----------
    voxel_size_mm : float
        Isotropic voxel size in mm (NSD's functional grid is 1.8 mm; 4 mm keeps the
        simulated files small; 2 mm gives room for NSD-sized subjects of ~15k voxels).

    Returns
    -------
    brain_mask_img : Nifti1Image
        uint8, 1 inside the brain (the T1 template above 0.2 of its maximum, nilearn's
        ``load_mni152_brain_mask`` rule); the affine maps voxel indices to MNI mm.
    gm_img : Nifti1Image
        float32 grey-matter probability (ICBM 2009a, as bundled with nilearn) on the grid.
    """
    if not 1.0 <= float(voxel_size_mm) <= 8.0:
        raise ValueError(f"voxel_size_mm: expected a size in [1, 8] mm, got {voxel_size_mm!r}")
    vs = float(voxel_size_mm)
    lo, hi = np.array(_BOX_LO), np.array(_BOX_HI)
    shape = tuple(int(s) for s in np.floor((hi - lo) / vs) + 1)
    affine = np.diag([vs, vs, vs, 1.0])
    affine[:3, 3] = lo
    t1 = nib.load(_mni_file("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))
    gm = nib.load(_mni_file("mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"))
    t1_data = np.asarray(t1.dataobj, dtype=np.float32)
    brain_1mm = nib.Nifti1Image((t1_data > 0.2 * t1_data.max()).astype(np.float32), t1.affine)
    brain = (_resample(brain_1mm, affine, shape, vs / 2) > 0.5).astype(np.uint8)
    gm_max = float(np.asarray(gm.dataobj).max())  # stored as uint8 0..255
    gm_data = np.clip(_resample(gm, affine, shape, vs / 2) / gm_max, 0.0, 1.0) * brain
    return nib.Nifti1Image(brain, affine), nib.Nifti1Image(gm_data.astype(np.float32), affine)


def _roi_distances(xyz_mm: np.ndarray, rng: np.random.Generator, jitter_mm: float) -> np.ndarray:
    """Normalised ellipsoid distance (n_voxels, n_rois) to each ROI's (jittered) cores."""
    ax = np.abs(xyz_mm[:, 0])
    out = np.empty((xyz_mm.shape[0], len(ROI_NAMES)))
    for r, name in enumerate(ROI_NAMES):
        best = np.full(xyz_mm.shape[0], np.inf)
        for centre, radii in _ROI_CORES[name]:
            c = np.asarray(centre) + rng.normal(0.0, jitter_mm, 3)
            rad = np.asarray(radii) * rng.uniform(0.9, 1.1)
            d = np.sqrt(
                ((ax - c[0]) / rad[0]) ** 2
                + ((xyz_mm[:, 1] - c[1]) / rad[1]) ** 2
                + ((xyz_mm[:, 2] - c[2]) / rad[2]) ** 2
            )
            best = np.minimum(best, d)
        out[:, r] = best
    return out


def _select_voxels(
    n_voxels: int, voxel_size_mm: float, rng: np.random.Generator
) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray]:
    """Pick a subject's voxels: the ``n_voxels`` cortical voxels nearest its ROI cores.

    Returns the subject mask image, ROI labels and MNI coordinates (mm) of the voxels in
    C order.
    """
    brain_img, gm_img = mni_grid(voxel_size_mm)
    gm = np.asarray(gm_img.dataobj)
    cand = np.argwhere(gm > 0.35)  # cortex-like voxels, C order
    xyz = nib.affines.apply_affine(gm_img.affine, cand)
    # leave out the cerebellum (grey matter too): an ellipsoid per hemisphere below the
    # tentorium
    cereb = (
        ((np.abs(xyz[:, 0]) - _CEREB[0]) / _CEREB[3]) ** 2
        + ((xyz[:, 1] - _CEREB[1]) / _CEREB[4]) ** 2
        + ((xyz[:, 2] - _CEREB[2]) / _CEREB[5]) ** 2
    ) < 1.0
    cand, xyz = cand[~cereb], xyz[~cereb]
    dist = _roi_distances(xyz, rng, jitter_mm=2.5)
    score = dist.min(axis=1)
    reachable = int((score < 4.0).sum())
    if n_voxels > reachable:
        raise ValueError(
            f"voxels: {n_voxels} voxels requested but a {voxel_size_mm:g} mm grid offers "
            f"{reachable} near the visual ROIs; expected at most {reachable}, or use a "
            "smaller voxel_size_mm (2 mm offers about 30,000)"
        )
    chosen = np.sort(np.argsort(score, kind="stable")[:n_voxels])  # keep C order
    mask = np.zeros(gm.shape, dtype=np.uint8)
    mask[tuple(cand[chosen].T)] = 1
    labels = np.asarray(ROI_NAMES)[dist[chosen].argmin(axis=1)]
    return nib.Nifti1Image(mask, gm_img.affine), labels, xyz[chosen]


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------
def _gabor_bank(size: int, n_scales: int, n_orientations: int) -> np.ndarray:
    """One-sided (analytic) Gabor filters in the Fourier domain, (K, O, size, size).

    Filter k, o is a Gaussian around the frequency ``f_k`` cycles/image (octave spaced,
    the finest at size/4) in direction ``theta_o``, with a bandwidth of about one octave; its
    response is even + i odd, so ``|response|`` is the quadrature-pair energy (Adelson &
    Bergen 1985, JOSA A 2:284).
    """
    f = np.fft.fftfreq(size) * size  # cycles per image
    fy, fx = np.meshgrid(f, f, indexing="ij")
    bank = np.empty((n_scales, n_orientations, size, size), dtype=np.float32)
    for k in range(n_scales):
        fk = size / 4.0 / 2.0 ** (n_scales - 1 - k)
        for o in range(n_orientations):
            th = np.pi * o / n_orientations
            u = fx * np.cos(th) + fy * np.sin(th)
            v = -fx * np.sin(th) + fy * np.cos(th)
            bank[k, o] = np.exp(-((u - fk) ** 2) / (2 * (0.45 * fk) ** 2)
                                - v**2 / (2 * (0.35 * fk) ** 2))  # fmt: skip
    return bank


def gabor_energy_features(
    images: np.ndarray,
    n_scales: int = 3,
    n_orientations: int = 4,
    grid: int = 8,
    batch_size: int = 512,
) -> np.ndarray:
    """The "true features" of the simulated early visual cortex (V1-hV4).

    Quadrature-pair Gabor energy (the amplitude ``|even + i odd|``) at ``n_scales``
    octave-spaced spatial frequencies and ``n_orientations`` orientations (Kay et al. 2008,
    Nature 452:352), averaged over a ``grid x grid`` array of cells and compressed with
    ``log(1 + 8 amplitude)`` (a saturating contrast response), followed by
    the cell means of luminance and two colour-opponent channels (R-G, B-(R+G)/2). Early
    voxels are *linear* in these features, so a linear model on them can reach the noise
    ceiling.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, S, S, 3)
        Square RGB images; ``S`` divisible by ``grid``.
    n_scales, n_orientations, grid : int
        Bank and pooling layout (the simulation uses the defaults).
    batch_size : int
        Images per FFT batch (bounds memory).

    Returns
    -------
    features : ndarray of float32, shape (n, n_scales * n_orientations * grid**2 + 3 * grid**2)
        Energy features ordered (scale, orientation, row, col), then colour features
        ordered (channel, row, col).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images: expected uint8 array of shape (n, S, S, 3), got {images.dtype} "
            f"{images.shape}"
        )
    n, h, w, _ = images.shape
    if h != w or h % grid:
        raise ValueError(
            f"images: expected square images whose size is divisible by grid={grid}, got "
            f"{h}x{w}"
        )
    from scipy import fft as sp_fft

    bank = _gabor_bank(h, n_scales, n_orientations)
    cell = h // grid
    n_energy = n_scales * n_orientations * grid * grid
    out = np.empty((n, n_energy + 3 * grid * grid), dtype=np.float32)
    for s in range(0, n, batch_size):
        x = images[s : s + batch_size].astype(np.float32) / 255.0
        lum = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        spec = sp_fft.fft2(lum - lum.mean(axis=(1, 2), keepdims=True), workers=-1)
        resp = sp_fft.ifft2(
            spec[:, None, None] * bank[None], axes=(-2, -1), workers=-1, overwrite_x=True
        )
        b = x.shape[0]
        amp = np.abs(resp).reshape(b, n_scales, n_orientations, grid, cell, grid, cell)
        # compress after pooling: log(1 + 8 mean amplitude), a saturating contrast response
        out[s : s + b, :n_energy] = np.log1p(8.0 * amp.mean(axis=(4, 6))).reshape(b, -1)
        opp = np.stack(
            [lum, x[..., 0] - x[..., 1], x[..., 2] - 0.5 * (x[..., 0] + x[..., 1])], axis=1
        )
        out[s : s + b, n_energy:] = opp.reshape(b, 3, grid, cell, grid, cell).mean(
            axis=(3, 5)
        ).reshape(b, -1)
    return out


def _object_features(stimuli: Stimuli) -> dict[str, np.ndarray]:
    """Per-object semantic descriptors (n, m, d) for higher visual cortex and MTL."""
    obj = stimuli.objects_3d
    present = obj["present"]
    shape = np.where(present, obj["shape"], 0)
    n_cls = len(SHAPE_CLASSES)
    onehot = np.eye(n_cls, dtype=np.float32)[shape] * present[..., None]
    props = SHAPE_PROPERTIES[shape] * present[..., None]
    # viewpoint: |cos| between the object's symmetry axis (local y) and the line of sight
    end_on = np.abs(obj["rotation"][..., 2, 1]).astype(np.float32) * present
    size = (obj["size"] / 0.3).astype(np.float32) * present
    colour = np.eye(8, dtype=np.float32)[np.clip(stimuli.attributes["colours"], 0, 7)]
    colour *= present[..., None]
    psi = np.concatenate(
        [onehot, props, end_on[..., None], size[..., None], 0.3 * colour], axis=-1
    )
    return {"psi": psi, "present": present, "position": obj["position"], "onehot": onehot}


# --------------------------------------------------------------------------------------
# the simulation containers
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class SimulatedSubject:
    """One simulated subject, as NSD would have recorded it.

    Attributes
    ----------
    subject : int
        1-based subject number (NSD's ``subjXX``).
    n_sessions : int
        The subject ran the first ``n_sessions * trials_per_session`` trials of
        ``masterordering``.
    betas : ndarray of float32, shape (n_sessions * trials_per_session, n_voxels)
        Single-trial responses in percent signal change, trials in ``masterordering``
        order, quantised to multiples of 1/300 (NSD stores int16 = psc x 300).
    mask_img : Nifti1Image
        3D uint8, 1 on the subject's voxels; the columns of ``betas`` are its non-zero
        voxels in C order; the affine maps to MNI mm (same grid for all subjects).
    roi : ndarray of str, shape (n_voxels,)
        One of :data:`ROI_NAMES` per voxel.
    ncsnr : ndarray of float32, shape (n_voxels,)
        The exact ncsnr of the simulation: signal sd / noise sd.
    brain_mask_img : Nifti1Image
        3D uint8 brain mask on the same grid.
    truth : dict of str -> ndarray
        Ground truth per voxel: ``amplitude`` (signal sd, psc), ``noise_sd``, ``baseline``
        (psc), ``prf_x``, ``prf_y`` (pRF centre, fractions of width/height; NaN-free,
        higher/MTL hold their receptive-field centre or 0.5), ``prf_size`` (sd, fraction of
        width), ``sf_pref`` (preferred scale index), ``ori_pref`` (rad), ``prototype``
        (higher-visual prototype index, -1 elsewhere), ``class_tuning`` (n_voxels, 8),
        ``coords_mni`` (n_voxels, 3) mm; and ``signal`` (n_seen, n_voxels) float32, the
        noise-free response (psc) to each distinct image seen, ids in ``signal_ids``.
    """

    subject: int
    n_sessions: int
    betas: np.ndarray
    mask_img: nib.Nifti1Image
    roi: np.ndarray
    ncsnr: np.ndarray
    brain_mask_img: nib.Nifti1Image
    truth: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """NSD-style name, e.g. ``"subj01"``."""
        return f"subj{self.subject:02d}"

    def noise_ceiling(self, n_avg: float = 1) -> np.ndarray:
        """``100 ncsnr^2 / (ncsnr^2 + 1/n_avg)`` per voxel, percent (NSD data manual)."""
        return nsd_noise_ceiling(self.ncsnr, n_avg)


@dataclass(eq=False)
class SimulatedNSD:
    """A simulated NSD: stimuli, the NSD experimental design and the subjects' betas.

    Attributes
    ----------
    stimuli : Stimuli
        All images; ids ``0..n_images-1`` play the role of NSD's 73k ids.
    subjectim : ndarray of int, shape (n_subjects, n_subject_images)
        0-based stimulus ids of each subject's images; the first ``n_shared`` columns are
        the shared images, identical for all subjects.
    masterordering : ndarray of int, shape (n_total_trials,)
        0-based index into a row of ``subjectim`` for every trial (same for all subjects,
        as in NSD); each image is shown up to 3 times.
    sharedix : ndarray of int, shape (n_shared,)
        0-based ids of the shared images (sorted).
    trials_per_session : int
        750 in NSD.
    subjects : dict of int -> SimulatedSubject
        Keyed by 1-based subject number.
    params : dict
        The arguments of :func:`simulate_nsd` that made it.
    """

    stimuli: Stimuli
    subjectim: np.ndarray
    masterordering: np.ndarray
    sharedix: np.ndarray
    trials_per_session: int
    subjects: dict[int, SimulatedSubject]
    params: dict[str, Any] = field(default_factory=dict)

    def stim_ids(self, subject: int) -> np.ndarray:
        """The stimulus id of each of a subject's trials (0-based, like NSD's 73k ids)."""
        sub = self._subject(subject)
        n = sub.n_sessions * self.trials_per_session
        return self.subjectim[subject - 1, self.masterordering[:n]]

    def _subject(self, subject: int) -> SimulatedSubject:
        if subject not in self.subjects:
            raise ValueError(
                f"subjects: unknown subject {subject!r}; expected one of {sorted(self.subjects)}"
            )
        return self.subjects[subject]

    def to_dataset(
        self, subjects: int | list[int] | None = None, average_repeats: bool = False
    ) -> FMRIDataset:
        """The simulation as an :class:`FMRIDataset` (what ``load_nsd`` gives back).

        Parameters
        ----------
        subjects : int or list of int, optional
            1-based subject numbers (default all).
        average_repeats : bool
            Average the betas over repeated presentations of each image.

        Returns
        -------
        FMRIDataset
            Subjects named ``"subjXX"``; ``stimuli`` holds every image.
        """
        if subjects is None:
            subjects = sorted(self.subjects)
        elif isinstance(subjects, int | np.integer):
            subjects = [int(subjects)]
        subs = {}
        for s in subjects:
            sub = self._subject(int(s))
            subs[sub.name] = FMRISubject(
                betas=sub.betas,
                stim_ids=self.stim_ids(int(s)),
                roi=sub.roi,
                mask_img=sub.mask_img,
                ncsnr=sub.ncsnr,
                subject=sub.name,
            )
        ds = FMRIDataset(self.stimuli, subs)
        return ds.average_repeats() if average_repeats else ds


# --------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------
def _design(
    n_subjects: int,
    n_trials: int,
    n_shared: int,
    n_subject_images: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """NSD-like design: ids, per-subject image lists and one masterordering for all."""
    n_unique = n_subject_images - n_shared
    n_images = n_shared + n_subjects * n_unique
    rest = n_trials - 3 * n_shared
    if rest < n_unique or rest > 3 * n_unique:
        lo, hi = 3 * n_shared + n_unique, 3 * n_shared + 3 * n_unique
        raise ValueError(
            f"n_sessions * trials_per_session: {n_trials} trials cannot show the "
            f"{n_shared} shared images 3 times and each of the {n_unique} other images of a "
            f"subject 1 to 3 times; expected between {lo} and {hi} trials (or change "
            "n_subject_images / n_shared)"
        )
    perm = rng.permutation(n_images)  # ids are scattered, as NSD's 73k ids are
    sharedix = np.sort(perm[:n_shared])
    subjectim = np.empty((n_subjects, n_subject_images), dtype=np.int64)
    for s in range(n_subjects):
        own = np.sort(perm[n_shared + s * n_unique : n_shared + (s + 1) * n_unique])
        subjectim[s] = np.concatenate([sharedix, own])
    # repetitions: 3 per shared image; the rest spread as evenly as possible over the others
    reps = np.full(n_subject_images, rest // n_unique, dtype=np.int64)
    reps[:n_shared] = 3
    extra = rest - reps[n_shared:].sum()
    reps[n_shared + rng.choice(n_unique, size=extra, replace=False)] += 1
    masterordering = rng.permutation(np.repeat(np.arange(n_subject_images), reps))
    return subjectim, masterordering, sharedix, n_images


# --------------------------------------------------------------------------------------
# tunings
# --------------------------------------------------------------------------------------
# shared higher-visual prototypes over psi = [class one-hot (8), properties (4), end_on,
# size, colour (8)]: what the population of object-selective voxels likes
def _prototypes() -> np.ndarray:
    n_cls = len(SHAPE_CLASSES)
    d = n_cls + SHAPE_PROPERTIES.shape[1] + 2 + 8
    protos = np.zeros((6, d), dtype=np.float32)
    p0 = n_cls  # start of the property block
    protos[0, p0 + 0] = 1.6  # round things
    protos[1, p0 + 3] = 1.6  # flat-faced / angular things
    protos[2, p0 + 2] = 1.8  # things with a hole
    protos[3, p0 + 1] = 1.6  # elongated things
    protos[3, p0 + 4] = -0.8  # ... seen from the side
    protos[4, p0 + 5] = 1.4  # big objects
    protos[5, [SHAPE_CLASSES.index("cube"), SHAPE_CLASSES.index("pyramid")]] = 1.2
    protos[5, SHAPE_CLASSES.index("cone")] = 1.2  # pointed things
    return protos


_PROTO_WEIGHTS = np.array([0.22, 0.2, 0.16, 0.16, 0.12, 0.14])


def _early_tuning(
    rois: np.ndarray, xyz: np.ndarray, rng: np.random.Generator, n_scales: int, n_ori: int,
    grid: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weights (n_features, n_early) of the early voxels over gabor_energy_features."""
    n = rois.size
    x, y, z = xyz.T
    side = -np.sign(x + 1e-9)  # contralateral visual field
    dz = z - (_CALC_Z0 + _CALC_SLOPE * (y - _POLE_Y))  # above (>0) or below the calcarine
    # eccentricity (image half-widths) grows anteriorly from the pole, saturating
    e0 = np.clip((y - _POLE_Y) / _ECC_SPAN_MM, 0.0, None)
    ecc = (0.03 + 1.05 * np.tanh(1.3 * e0)) * rng.lognormal(0.0, 0.15, n)
    angle = np.empty(n)  # polar angle, +pi/2 upper vertical meridian, -pi/2 lower
    is1 = rois == "V1"
    angle[is1] = np.pi / 2 * np.tanh(-dz[is1] / 5.0)
    for name, width in (("V2", 6.0), ("V3", 8.0)):
        sel = rois == name
        # across the area, away from V1: V2 from the vertical to the horizontal meridian,
        # V3 back again (the mirror reversals of Sereno et al. 1995)
        frac = 1.0 - np.exp(-np.clip(np.abs(dz[sel]) - 3.0, 0.0, None) / width)
        mag = np.pi / 2 * (1.0 - frac) if name == "V2" else np.pi / 2 * frac
        angle[sel] = -np.sign(dz[sel]) * mag  # ventral -> upper field
    sel = rois == "hV4"
    angle[sel] = rng.uniform(-np.pi / 2, np.pi / 2, sel.sum())  # full hemifield
    # scatter, reflected at +-0.48 pi: centres stay in the contralateral hemifield
    lim = 0.48 * np.pi
    angle = angle + rng.normal(0.0, 0.15, n)
    angle = np.where(angle > lim, 2 * lim - angle, angle)
    angle = np.where(angle < -lim, -2 * lim - angle, angle)
    prf_x = 0.5 + 0.5 * side * ecc * np.cos(angle)
    prf_y = 0.5 - 0.5 * ecc * np.sin(angle)
    size = np.array([_PRF_SIZE[r][0] + _PRF_SIZE[r][1] * e for r, e in zip(rois, ecc)])
    size *= rng.lognormal(0.0, 0.2, n)
    sf_pref = np.array([_SF_PREF[r] for r in rois]) - 0.6 * ecc + rng.normal(0.0, 0.35, n)
    ori_pref = rng.uniform(0.0, np.pi, n)
    ori_bias = rng.uniform(0.0, 0.6, n)
    colour_w = np.array([_COLOUR_W[r] for r in rois])[:, None] * rng.normal(0.0, 1.0, (n, 3))

    c = (np.arange(grid) + 0.5) / grid
    gy, gx = np.meshgrid(c, c, indexing="ij")
    prf = np.exp(
        -((gx.ravel()[None] - prf_x[:, None]) ** 2 + (gy.ravel()[None] - prf_y[:, None]) ** 2)
        / (2 * size[:, None] ** 2)
    )
    prf /= prf.sum(axis=1, keepdims=True) + 1e-12  # (n, G*G)
    k = np.arange(n_scales)
    th = np.pi * np.arange(n_ori) / n_ori
    w_sf = np.exp(-((k[None] - sf_pref[:, None]) ** 2) / (2 * 0.8**2))  # (n, K)
    w_ori = 1.0 + ori_bias[:, None] * np.cos(2 * (th[None] - ori_pref[:, None]))  # (n, O)
    w = (w_sf[:, :, None, None] * w_ori[:, None, :, None] * prf[:, None, None, :])
    w_colour = colour_w[:, :, None] * prf[:, None, :]  # (n, 3, G*G)
    weights = np.concatenate([w.reshape(n, -1), w_colour.reshape(n, -1)], axis=1).T
    truth = dict(prf_x=prf_x, prf_y=prf_y, prf_size=size, sf_pref=sf_pref, ori_pref=ori_pref)
    return weights.astype(np.float32), truth


def _higher_response(
    feats: dict[str, np.ndarray], early: np.ndarray, xyz: np.ndarray, rng: np.random.Generator,
    mix: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Responses (n_images, n_voxels) of object-selective voxels and their tunings."""
    n = xyz.shape[0]
    protos = _prototypes()
    proto = rng.choice(len(protos), size=n, p=mix)
    b = protos[proto] + rng.normal(0.0, 0.35, protos[proto].shape)  # individual variation
    cx = 0.5 - np.sign(xyz[:, 0] + 1e-9) * rng.uniform(0.0, 0.2, n)  # contralateral bias
    cy = 0.5 + rng.normal(0.0, 0.1, n)
    rf = rng.uniform(0.22, 0.45, n)
    pos = feats["position"]  # (N, m, 2)
    d2 = (pos[..., 0, None] - cx) ** 2 + (pos[..., 1, None] - cy) ** 2  # (N, m, n)
    gain = np.exp(-d2 / (2 * rf**2)) * feats["present"][..., None]
    drive = np.einsum("imd,vd,imv->iv", feats["psi"], b, gain)
    # a little low-level drive (objects also have edges): a broad pooled energy term
    low = early @ rng.normal(0.0, 1.0, (early.shape[1], n)).astype(np.float32) / np.sqrt(
        early.shape[1]
    )
    low = (low - low.mean(0)) / (low.std(0) + 1e-9)
    drive = (drive - drive.mean(0)) / (drive.std(0) + 1e-9) + 0.3 * low
    theta = rng.uniform(0.0, 1.0, n)
    resp = np.logaddexp(0.0, 3.0 * (drive - theta)) / 3.0  # softplus: rectifying
    n_cls = len(SHAPE_CLASSES)
    # the drive each class evokes alone: its one-hot weight plus its shape properties'
    class_tuning = b[:, :n_cls] + b[:, n_cls : n_cls + 4] @ SHAPE_PROPERTIES.T
    truth = dict(prototype=proto, prf_x=cx, prf_y=cy, prf_size=rf, class_tuning=class_tuning)
    return resp, truth


def _mtl_response(
    feats: dict[str, np.ndarray], rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weak semantic responses of MTL voxels: shape class and superordinate category."""
    onehot = feats["onehot"].max(axis=1)  # which classes are in the image
    props = onehot @ SHAPE_PROPERTIES  # superordinate descriptors
    b_cls = rng.normal(0.0, 1.0, (onehot.shape[1], n))
    b_prop = rng.normal(0.0, 0.7, (props.shape[1], n))
    return onehot @ b_cls + props @ b_prop, (b_cls + SHAPE_PROPERTIES @ b_prop).T


# --------------------------------------------------------------------------------------
# the simulator
# --------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    return int(value)


def _ncsnr_medians(snr: float | dict[str, float]) -> dict[str, float]:
    if isinstance(snr, dict):
        unknown = sorted(set(snr) - set(ROI_NAMES))
        if unknown:
            raise ValueError(f"snr: unknown ROI {unknown}; expected keys among {ROI_NAMES}")
        out = dict(DEFAULT_NCSNR)
        out.update({k: float(v) for k, v in snr.items()})
    elif isinstance(snr, int | float) and not isinstance(snr, bool):
        out = {k: v * float(snr) for k, v in DEFAULT_NCSNR.items()}
    else:
        raise ValueError(f"snr: expected a float or a dict ROI -> median ncsnr, got {snr!r}")
    bad = {k: v for k, v in out.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"snr: expected median ncsnr values > 0, got {bad}")
    return out


def simulate_nsd(
    n_subjects: int = 4,
    n_sessions: int | list[int] = 2,
    trials_per_session: int = 750,
    n_shared: int = 100,
    n_subject_images: int = 1100,
    image_size: int = 64,
    voxels: tuple[int, int] = (1500, 4000),
    snr: float | dict[str, float] = 1.0,
    noise_correlation: float = 0.3,
    voxel_size_mm: float = 4.0,
    random_state: int | None = 0,
    verbose: bool | None = None,
) -> SimulatedNSD:
    """Simulate an NSD-like experiment on the stimulus world.

    Parameters
    ----------
    n_subjects : int
        Number of subjects (NSD has 8; :func:`data_loaders.nsd.load_nsd` reads subjects
        1..8, so write at most 8).
    n_sessions : int or list of int
        Sessions per subject (one value for all, or one per subject; NSD:
        40/40/32/30/40/32/40/30). The design (``masterordering``) covers the largest.
    trials_per_session : int
        Trials per session (750 in NSD).
    n_shared : int
        Images seen by every subject, 3 times each in the full design (NSD: 1000).
    n_subject_images : int
        Distinct images per subject, shared ones included (NSD: 10,000). The other images
        are shown 1 to 3 times, so ``max(n_sessions) * trials_per_session`` must lie in
        ``[3 n_shared + U, 3 n_shared + 3 U]`` with ``U = n_subject_images - n_shared``.
    image_size : int
        Stimulus size in pixels (square; a multiple of 8).
    voxels : (int, int)
        Each subject draws its voxel count uniformly in this range (NSD's nsdgeneral:
        ~13-18k voxels at 1.8 mm; use ``voxel_size_mm=2`` beyond ~5,000).
    snr : float or dict
        A float scales :data:`DEFAULT_NCSNR` (the median single-trial ncsnr per ROI);
        a dict sets the median ncsnr of the ROIs it names. Voxel ncsnr scatter
        log-normally (sd 0.3 in log units) around the median.
    noise_correlation : float in [0, 1)
        Fraction of each voxel's noise variance shared across voxels (5 trial-wise
        factors with smooth spatial loadings). Per-voxel noise variance, hence ncsnr,
        is unchanged by it.
    voxel_size_mm : float
        Isotropic voxel size of the MNI grid.
    random_state : int | None
        Seed: the same seed and arguments give the same simulation.
    verbose : bool | None
        Progress bar (None: shown).

    Returns
    -------
    SimulatedNSD

    Examples
    --------
    >>> sim = simulate_nsd(n_subjects=2, n_sessions=1, trials_per_session=300, n_shared=20,
    ...                    n_subject_images=200, voxels=(300, 400))  # doctest: +SKIP
    >>> ds = sim.to_dataset()  # FMRIDataset, as load_nsd returns  # doctest: +SKIP
    """
    n_subjects = _check_int("n_subjects", n_subjects, 1)
    if isinstance(n_sessions, list | tuple | np.ndarray):
        sess = [_check_int("n_sessions", v, 1) for v in n_sessions]
        if len(sess) != n_subjects:
            raise ValueError(
                f"n_sessions: expected one value per subject ({n_subjects}), got {len(sess)}"
            )
    else:
        sess = [_check_int("n_sessions", n_sessions, 1)] * n_subjects
    tps = _check_int("trials_per_session", trials_per_session, 1)
    n_shared = _check_int("n_shared", n_shared, 1)
    n_subject_images = _check_int("n_subject_images", n_subject_images, n_shared + 1)
    image_size = _check_int("image_size", image_size, 8)
    if image_size % 8:
        raise ValueError(f"image_size: expected a multiple of 8, got {image_size}")
    try:
        v_lo, v_hi = (int(v) for v in voxels)
    except (TypeError, ValueError):
        raise ValueError(f"voxels: expected (min, max) voxel counts, got {voxels!r}") from None
    if not 50 <= v_lo <= v_hi:
        raise ValueError(f"voxels: expected 50 <= min <= max, got {voxels!r}")
    medians = _ncsnr_medians(snr)
    if not 0.0 <= noise_correlation < 1.0:
        raise ValueError(f"noise_correlation: expected a value in [0, 1), got {noise_correlation}")
    params = dict(
        n_subjects=n_subjects, n_sessions=sess, trials_per_session=tps, n_shared=n_shared,
        n_subject_images=n_subject_images, image_size=image_size, voxels=[v_lo, v_hi],
        snr=snr, noise_correlation=noise_correlation, voxel_size_mm=float(voxel_size_mm),
        random_state=random_state,
    )  # fmt: skip
    show = verbose is None or bool(verbose)
    rng = np.random.default_rng(random_state)
    seeds = rng.integers(0, 2**31 - 1, size=2 + n_subjects)

    n_trials = max(sess) * tps
    subjectim, masterordering, sharedix, n_images = _design(
        n_subjects, n_trials, n_shared, n_subject_images, np.random.default_rng(seeds[0])
    )
    steps = ["stimuli", "features"] + [f"subj{s + 1:02d}" for s in range(n_subjects)]
    bar = _bar(steps, show, "simulating NSD")
    next(bar)
    stimuli = render_stimuli(n_images, image_size=image_size, random_state=int(seeds[1]))
    next(bar)
    early_feats = gabor_energy_features(stimuli.images)
    obj_feats = _object_features(stimuli)
    brain_img, _ = mni_grid(voxel_size_mm)
    population_mix = _PROTO_WEIGHTS

    subjects: dict[int, SimulatedSubject] = {}
    for s in range(n_subjects):
        next(bar)
        srng = np.random.default_rng(seeds[2 + s])
        n_vox = int(srng.integers(v_lo, v_hi + 1))
        mask_img, rois, xyz = _select_voxels(n_vox, voxel_size_mm, srng)
        trials = masterordering[: sess[s] * tps]
        ids = subjectim[s, trials]
        seen = np.unique(ids)  # stimulus ids == positions in `stimuli`
        raw = np.zeros((seen.size, n_vox), dtype=np.float32)
        truth: dict[str, np.ndarray] = {
            "prf_x": np.full(n_vox, 0.5), "prf_y": np.full(n_vox, 0.5),
            "prf_size": np.zeros(n_vox), "sf_pref": np.zeros(n_vox),
            "ori_pref": np.zeros(n_vox), "prototype": np.full(n_vox, -1),
            "class_tuning": np.zeros((n_vox, len(SHAPE_CLASSES))),
        }  # fmt: skip

        early = np.flatnonzero(np.isin(rois, EARLY_ROIS))
        w, t_early = _early_tuning(rois[early], xyz[early], srng, 3, 4, 8)
        raw[:, early] = early_feats[seen] @ w
        for k, v in t_early.items():
            truth[k][early] = v

        higher = np.flatnonzero(rois == "higher")
        if higher.size:
            mix = srng.dirichlet(40.0 * population_mix)  # the subject's own mixture
            sub_feats = {k: v[seen] for k, v in obj_feats.items()}
            resp, t_high = _higher_response(sub_feats, early_feats[seen], xyz[higher], srng, mix)
            raw[:, higher] = resp
            for k, v in t_high.items():
                truth[k][higher] = v

        mtl = np.flatnonzero(rois == "MTL")
        if mtl.size:
            resp, cls = _mtl_response({k: v[seen] for k, v in obj_feats.items()}, srng, mtl.size)
            raw[:, mtl] = resp
            truth["class_tuning"][mtl] = cls

        # standardise over the images seen, then scale: signal sd = amplitude exactly
        mean = raw.mean(axis=0, dtype=np.float64)
        sd = raw.std(axis=0, dtype=np.float64)
        if (sd <= 0).any():
            raise ValueError(
                "voxels: some simulated voxels respond identically to every image; expected "
                "more images (n_subject_images) per subject"
            )
        amp = np.array([_AMPLITUDE[r] for r in rois]) * srng.lognormal(0.0, 0.2, n_vox)
        base = np.array([_BASELINE[r] for r in rois]) + srng.normal(0.0, 0.3, n_vox)
        ncsnr = np.array([medians[r] for r in rois]) * srng.lognormal(0.0, 0.3, n_vox)
        ncsnr = ncsnr.astype(np.float32)  # what is exported is what defines the noise
        noise_sd = amp / ncsnr.astype(np.float64)
        signal = raw  # in place, (n_seen, n_vox) psc: base + amp * (raw - mean) / sd
        signal -= mean.astype(np.float32)
        signal *= (amp / sd).astype(np.float32)
        signal += base.astype(np.float32)
        del raw

        # noise: unit variance per voxel, a fraction shared through smooth spatial factors
        load = None
        if noise_correlation > 0:
            centres = xyz[srng.choice(n_vox, size=5, replace=False)]
            d2 = ((xyz[:, None, :] - centres[None]) ** 2).sum(-1)
            load = np.exp(-d2 / (2 * 25.0**2))  # (n_vox, 5), 25 mm smoothness
            load /= np.linalg.norm(load, axis=1, keepdims=True)
        row = np.searchsorted(seen, ids)
        betas = np.empty((trials.size, n_vox), dtype=np.float32)
        limit = np.iinfo(np.int16).max
        step = max(1, 2_000_000 // n_vox)  # trial blocks bound the float64 temporaries
        for t0 in range(0, trials.size, step):
            rows = slice(t0, min(trials.size, t0 + step))
            eps = srng.standard_normal((rows.stop - rows.start, n_vox))
            if load is not None:
                shared = srng.standard_normal((eps.shape[0], 5)) @ load.T
                eps = np.sqrt(noise_correlation) * shared + np.sqrt(1 - noise_correlation) * eps
            block = signal[row[rows]].astype(np.float64) + noise_sd * eps
            # NSD stores int16 psc x 300: quantise so that a write/read round trip is exact
            q = np.clip(np.rint(block * 300.0), -limit, limit)
            betas[rows] = q / 300.0

        truth.update(
            amplitude=amp, noise_sd=noise_sd, baseline=base, coords_mni=xyz,
            signal=signal, signal_ids=seen,
        )  # fmt: skip
        subjects[s + 1] = SimulatedSubject(
            subject=s + 1, n_sessions=sess[s], betas=betas, mask_img=mask_img, roi=rois,
            ncsnr=ncsnr, brain_mask_img=brain_img, truth=truth,
        )  # fmt: skip
    for _ in bar:  # exhaust (closes the progress bar)
        pass
    return SimulatedNSD(
        stimuli=stimuli, subjectim=subjectim, masterordering=masterordering,
        sharedix=sharedix, trials_per_session=tps, subjects=subjects, params=params,
    )  # fmt: skip


def _bar(steps: list[str], show: bool, desc: str):
    """Generator over steps with a tqdm bar (when shown) whose postfix names the step."""
    if not show:
        yield from steps
        return
    from tqdm.auto import tqdm

    with tqdm(total=len(steps), desc=desc, unit="step") as pbar:
        for st in steps:
            pbar.set_postfix_str(st)
            yield st
            pbar.update(1)


# --------------------------------------------------------------------------------------
# the embedded default
# --------------------------------------------------------------------------------------
#: Arguments of the embedded default dataset (``default_nsd``); change the version when
#: they or the generative model change.
DEFAULT_NAME = "simulated_nsd_v1"
DEFAULT_PARAMS: dict[str, Any] = dict(
    n_subjects=4, n_sessions=2, trials_per_session=750, n_shared=100, n_subject_images=1100,
    image_size=64, voxels=(1500, 4000), snr=1.0, noise_correlation=0.3, voxel_size_mm=4.0,
    random_state=0,
)  # fmt: skip
_COMPLETE = "SIMULATION.json"


def save_truth(root: str | os.PathLike, sim: SimulatedNSD) -> Path:
    """Save what the NSD layout cannot hold: stimulus attributes, 3D objects, tunings.

    Writes ``<root>/simulation/truth.npz`` (atomically); read with :func:`load_truth`.
    """
    from .._io import atomic_path

    arrays: dict[str, np.ndarray] = {}
    for k, v in sim.stimuli.attributes.items():
        arrays[f"attributes/{k}"] = v
    for k, v in (sim.stimuli.objects_3d or {}).items():
        arrays[f"objects_3d/{k}"] = v
    for s, sub in sim.subjects.items():
        for k, v in sub.truth.items():
            arrays[f"subj{s:02d}/{k}"] = np.asarray(v)
        arrays[f"subj{s:02d}/roi"] = sub.roi
    path = Path(root) / "simulation" / "truth.npz"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path


def load_truth(root: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read :func:`save_truth`'s file: ``{"attributes": ..., "objects_3d": ..., "subj01": ...}``.

    Stimulus arrays are indexed by stimulus id (= position), as ``imgBrick`` is.
    """
    path = Path(root) / "simulation" / "truth.npz"
    if not path.is_file():
        raise FileNotFoundError(f"root: no simulation ground truth; expected the file {path}")
    from data_loaders._io import load_npz

    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_npz(path).items():  # a damaged file names itself
        group, name = key.split("/", 1)
        out.setdefault(group, {})[name] = value
    return out


def _folder_name(params: dict[str, Any]) -> str:
    """``simulated_nsd_v1`` for the default, else a name keyed by a hash of the params."""
    import hashlib

    def key(p: dict[str, Any]) -> str:  # tuples and lists alike, as a config gives them
        return json.dumps({k: p[k] for k in sorted(p)}, sort_keys=True, default=str)

    if key(params) == key(DEFAULT_PARAMS):
        return DEFAULT_NAME
    return f"{DEFAULT_NAME}_{hashlib.sha1(key(params).encode()).hexdigest()[:10]}"


def is_complete(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a finished simulated NSD (its ``SIMULATION.json`` exists)."""
    return (Path(root) / _COMPLETE).is_file()


def write_simulation(
    root: str | os.PathLike,
    sim: SimulatedNSD | None = None,
    betas_format: str = "nii.gz",
    verbose: bool | None = None,
    **params: Any,
) -> tuple[Path, SimulatedNSD]:
    """Simulate (unless ``sim`` is given) and write a complete simulated NSD root, atomically.

    Everything goes into a temporary sibling folder that is renamed onto ``root`` at the
    end: NSD layout (:func:`data_loaders.nsd.write_nsd_layout`), ground truth
    (:func:`save_truth`) and ``SIMULATION.json`` (the parameters and the time it took).
    An existing complete ``root`` is kept if another process finished first.

    Parameters
    ----------
    root : path-like
        Destination folder (must not hold a complete simulation already).
    sim : SimulatedNSD, optional
        An existing simulation; otherwise ``simulate_nsd(**params)``.
    betas_format : {"nii.gz", "hdf5"}
        Passed to ``write_nsd_layout``.
    verbose : bool | None
        Progress bars.
    **params
        Arguments of :func:`simulate_nsd`.

    Returns
    -------
    root : Path
    sim : SimulatedNSD
    """
    from ..nsd import write_nsd_layout

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    from data_loaders._io import default_dir_mode

    os.chmod(tmp, default_dir_mode())  # mkdtemp makes it 0o700: keep the user's umask
    try:
        if sim is None:
            sim = simulate_nsd(**params, verbose=verbose)
        t1 = time.perf_counter()
        write_nsd_layout(tmp, sim, betas_format=betas_format, verbose=verbose)
        save_truth(tmp, sim)
        info = {
            "name": root.name,
            "params": sim.params,
            "seconds_to_simulate": round(t1 - t0, 2),
            "seconds_to_write": round(time.perf_counter() - t1, 2),
        }
        (tmp / _COMPLETE).write_text(json.dumps(info, indent=2, default=str))
        try:
            os.rename(tmp, root)
        except OSError:
            if not is_complete(root):  # not a concurrent writer's success
                if not root.exists():
                    raise
                shutil.rmtree(root)  # a stale, incomplete copy: replace it
                os.rename(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root, sim


def default_nsd(
    data_home: str | os.PathLike | None = None, verbose: bool | None = None, **params: Any
) -> Path:
    """The embedded default dataset: a simulated NSD root, made once and then reused.

    On first use, simulates :data:`DEFAULT_PARAMS` (4 subjects x 2 sessions of 750 trials,
    1,500-4,000 voxels each) and writes it in the real NSD layout with
    :func:`data_loaders.nsd.write_nsd_layout`, plus the ground truth (:func:`save_truth`),
    into ``<data_home>/simulated_nsd_v1`` (:func:`write_simulation`: a temporary folder
    renamed at the end, so an interrupted run leaves nothing half-written and concurrent
    callers agree on one copy).

    Parameters
    ----------
    data_home : path-like, optional
        Cache folder (default ``$NEUROSUITE_DATA`` or the user's cache dir; see
        :func:`data_loaders.cache.data_home`).
    verbose : bool | None
        Progress bar (None: shown).
    **params
        Overrides of :data:`DEFAULT_PARAMS` (arguments of :func:`simulate_nsd`); another
        set of parameters is cached in its own folder, named with a hash of them.

    Returns
    -------
    Path
        The root to pass to :func:`data_loaders.nsd.load_nsd`.

    Examples
    --------
    >>> from data_loaders.nsd import load_nsd
    >>> ds = load_nsd(default_nsd(), subjects=(1, 2))  # doctest: +SKIP
    """
    from ..cache import data_home as _data_home

    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(
            f"params: unknown simulate_nsd arguments {unknown}; expected among "
            f"{sorted(DEFAULT_PARAMS)}"
        )
    full = {**DEFAULT_PARAMS, **params}
    root = _data_home(data_home) / _folder_name(full)
    if not is_complete(root):
        write_simulation(root, verbose=verbose, **full)
    return root
