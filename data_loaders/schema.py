"""The shared containers: every loader and simulator returns them, every model takes them.

Four plain dataclasses over numpy arrays, validated on construction:

- :class:`Stimuli` -- the images shown, with their ids and optional attributes / 3D objects;
- :class:`FMRISubject` -- one subject's single-trial betas over masked voxels;
- :class:`FMRIDataset` -- stimuli + subjects, with NSD-style helpers (average repeats,
  shared-image test split, noise ceiling, voxels back to a NIfTI image);
- :class:`EEGDataset` -- epoched EEG in volts with per-epoch labels, convertible to
  :class:`mne.EpochsArray`.

Every check that fails raises a :class:`ValueError` whose message starts with the field
name, then what was received and what was expected, e.g.
``betas: expected float32 array of shape (n_trials, n_voxels), got float64 (10,)``.
Methods never modify a container in place; they return new ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

if TYPE_CHECKING:
    import mne

__all__ = ["Stimuli", "FMRISubject", "FMRIDataset", "EEGDataset"]

# Rows checked per block when looking for NaN/inf, so that a 30000 x 15000 betas array
# is never duplicated as a boolean array of the same size.
_FINITE_BLOCK_ELEMENTS = 4_000_000


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _describe(arr: Any) -> str:
    """Short 'dtype shape' description of what was received, for error messages."""
    if isinstance(arr, np.ndarray):
        return f"{arr.dtype} {arr.shape}"
    return type(arr).__name__


def _preview(values: Iterable[Any], k: int = 5) -> str:
    values = list(values)
    head = ", ".join(repr(v.item() if isinstance(v, np.generic) else v) for v in values[:k])
    more = f", ... ({len(values)} in all)" if len(values) > k else ""
    return f"[{head}{more}]"


def _check_finite(name: str, arr: np.ndarray) -> None:
    """Raise if a float array holds NaN or inf (checked in blocks to bound memory)."""
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return
    flat_rows = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
    step = max(1, _FINITE_BLOCK_ELEMENTS // max(1, flat_rows.shape[1]))
    for start in range(0, flat_rows.shape[0], step):
        block = flat_rows[start : start + step]
        if not np.isfinite(block).all():
            bad = np.argwhere(~np.isfinite(block))[0]
            bad[0] += start
            raise ValueError(
                f"{name}: expected finite values, got NaN or inf (first at flattened row "
                f"{int(bad[0])}, column {int(bad[1])})"
            )


def _int_vector(name: str, value: Any, n: int | None, n_desc: str) -> np.ndarray:
    """Coerce to a 1-D integer array of length ``n`` (when given); bools are refused."""
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or (n is not None and arr.shape[0] != n):
        expected = f"({n_desc},)" + (f" = ({n},)" if n is not None else "")
        raise ValueError(
            f"{name}: expected integer array of shape {expected}, got {_describe(arr)}"
        )
    return arr


def _select_rows(name: str, n: int, index: Any) -> np.ndarray:
    """Turn a boolean mask or integer positions into integer positions into ``n`` rows."""
    idx = np.asarray(index)
    if idx.dtype.kind == "b":
        if idx.shape != (n,):
            raise ValueError(f"{name}: expected boolean mask of shape ({n},), got {_describe(idx)}")
        return np.flatnonzero(idx)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError(
            f"{name}: expected boolean mask ({n},) or integer positions, got {_describe(idx)}"
        )
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValueError(f"{name}: positions out of range for {n} rows, got {_preview(idx)}")
    return idx


def _as_name_list(name: str, value: str | Iterable[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    out = list(value)
    if not out or not all(isinstance(v, str) for v in out):
        raise ValueError(f"{name}: expected a str or a non-empty list of str, got {value!r}")
    return out


# --------------------------------------------------------------------------------------
# Stimuli
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class Stimuli:
    """The images shown in an experiment.

    Parameters
    ----------
    images : ndarray of uint8, shape (n, H, W, 3)
        RGB images, channels last, values 0..255.
    ids : ndarray of int, shape (n,)
        Unique stimulus ids (for NSD: the 0-based 73k index). ``FMRISubject.stim_ids``
        refer to these values, not to positions.
    attributes : dict of str -> ndarray, optional
        Per-image attributes (e.g. ``"shape_class"``, ``"colour"``), each with first
        dimension ``n``. Float attributes must be finite.
    objects_3d : list of dict, or dict of str -> ndarray, optional
        The parameters that re-create the object each image shows: either one dict per
        image (length ``n``) or a dict of arrays with first dimension ``n``.

    Examples
    --------
    >>> stim = Stimuli(images=np.zeros((3, 8, 8, 3), np.uint8), ids=np.array([10, 20, 30]))
    >>> stim.subset([30, 10]).ids
    array([30, 10])
    """

    images: np.ndarray
    ids: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    objects_3d: list[dict[str, Any]] | dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"images: expected uint8 array of shape (n, H, W, 3), got {_describe(images)}"
            )
        if images.shape[-1] != 3:
            hint = " (channels first? transpose to channels last)" if images.shape[1] == 3 else ""
            raise ValueError(
                f"images: expected uint8 array of shape (n, H, W, 3), got {_describe(images)}{hint}"
            )
        n = images.shape[0]
        self.ids = _int_vector("ids", self.ids, n, "n")
        uniq, counts = np.unique(self.ids, return_counts=True)
        if uniq.size != n:
            raise ValueError(
                f"ids: expected unique ids, got duplicates {_preview(uniq[counts > 1])}"
            )

        if not isinstance(self.attributes, dict):
            raise ValueError(
                f"attributes: expected dict of name -> array, got {type(self.attributes).__name__}"
            )
        attrs = {}
        for key, value in self.attributes.items():
            arr = np.asarray(value)
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ValueError(
                    f"attributes[{key!r}]: expected array with first dimension n={n}, "
                    f"got {_describe(arr)}"
                )
            _check_finite(f"attributes[{key!r}]", arr)
            attrs[str(key)] = arr
        self.attributes = attrs

        obj = self.objects_3d
        if obj is None:
            pass
        elif isinstance(obj, dict):
            converted = {}
            for key, value in obj.items():
                arr = np.asarray(value)
                if arr.ndim == 0 or arr.shape[0] != n:
                    raise ValueError(
                        f"objects_3d[{key!r}]: expected array with first dimension n={n}, "
                        f"got {_describe(arr)}"
                    )
                converted[str(key)] = arr
            self.objects_3d = converted
        elif isinstance(obj, list | tuple):
            if len(obj) != n or not all(isinstance(o, dict) for o in obj):
                raise ValueError(
                    f"objects_3d: expected a list of {n} dicts (one per image), got a "
                    f"{type(obj).__name__} of length {len(obj)}"
                )
            self.objects_3d = list(obj)
        else:
            raise ValueError(
                "objects_3d: expected a list of dicts or a dict of arrays, got "
                f"{type(obj).__name__}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        n, h, w, _ = self.images.shape
        extra = f", attributes={sorted(self.attributes)}" if self.attributes else ""
        extra += ", objects_3d=yes" if self.objects_3d is not None else ""
        return f"Stimuli(n={n}, size={h}x{w}{extra})"

    def index_of(self, ids: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions of stimulus ids in this container.

        Parameters
        ----------
        ids : int or array-like of int, shape (k,)
            Stimulus ids (values of :attr:`ids`).

        Returns
        -------
        positions : ndarray of int64, shape (k,)
            ``self.ids[positions] == ids``.

        Raises
        ------
        ValueError
            If any id is not in :attr:`ids` (the message lists the first unknown ones).
        """
        query = np.atleast_1d(np.asarray(ids))
        if query.size == 0:
            return np.zeros(0, dtype=np.int64)
        if query.ndim != 1 or query.dtype.kind not in "iu":
            raise ValueError(f"ids: expected integer stimulus ids, got {_describe(query)}")
        sorter = np.argsort(self.ids, kind="stable")
        pos = np.searchsorted(self.ids, query, sorter=sorter)
        pos = np.clip(pos, 0, max(len(self) - 1, 0))
        found = sorter[pos] if len(self) else np.zeros_like(pos)
        ok = (self.ids[found] == query) if len(self) else np.zeros(query.shape, bool)
        if not ok.all():
            raise ValueError(
                f"ids: unknown stimulus ids {_preview(query[~ok])}; expected values of "
                f"Stimuli.ids ({len(self)} stimuli)"
            )
        return found.astype(np.int64)

    def subset(self, ids: Sequence[int] | np.ndarray) -> Stimuli:
        """A new :class:`Stimuli` holding the given ids, in the order given.

        Parameters
        ----------
        ids : array-like of int, shape (k,)
            Unique stimulus ids (values of :attr:`ids`).
        """
        pos = self.index_of(ids)
        if np.unique(pos).size != pos.size:
            raise ValueError(
                f"ids: expected unique ids for subset, got {_preview(np.asarray(ids))}"
            )
        obj = self.objects_3d
        if isinstance(obj, dict):
            obj = {k: v[pos] for k, v in obj.items()}
        elif obj is not None:
            obj = [obj[i] for i in pos]
        return Stimuli(
            images=self.images[pos],
            ids=self.ids[pos],
            attributes={k: v[pos] for k, v in self.attributes.items()},
            objects_3d=obj,
        )


# --------------------------------------------------------------------------------------
# fMRI
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class FMRISubject:
    """One subject's single-trial fMRI responses over a set of voxels.

    Parameters
    ----------
    betas : ndarray of float32, shape (n_trials, n_voxels)
        Response amplitude of each voxel on each trial (for NSD: GLMsingle betas, in percent
        signal change, or z-scored). Must be finite.
    stim_ids : ndarray of int, shape (n_trials,)
        The stimulus shown on each trial, as a value of :attr:`Stimuli.ids`.
    roi : ndarray of str, shape (n_voxels,)
        ROI label of each voxel (e.g. ``"V1"``, ``"FFA"``, ``"other"``).
    mask_img : nibabel image or None
        3D image whose non-zero voxels, taken in C order (``np.argwhere(data != 0)``, the
        order nilearn's maskers use), are the columns of ``betas``. Its number of non-zero
        voxels must equal ``n_voxels``.
    ncsnr : ndarray of float, shape (n_voxels,), optional
        Noise-ceiling signal-to-noise ratio of each voxel (>= 0), as NSD provides it
        (Allen et al. 2022, Nat. Neurosci.).
    subject : str
        Subject name, e.g. ``"subj01"``.
    """

    betas: np.ndarray
    stim_ids: np.ndarray
    roi: np.ndarray
    mask_img: Any = None
    ncsnr: np.ndarray | None = None
    subject: str = "sub-01"
    _mask: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        betas = self.betas
        if not isinstance(betas, np.ndarray) or betas.dtype != np.float32 or betas.ndim != 2:
            raise ValueError(
                "betas: expected float32 array of shape (n_trials, n_voxels), got "
                f"{_describe(betas)}"
            )
        _check_finite("betas", betas)
        n_trials, n_voxels = betas.shape
        self.stim_ids = _int_vector("stim_ids", self.stim_ids, n_trials, "n_trials")

        roi = np.asarray(self.roi)
        if roi.dtype.kind == "O" and all(isinstance(r, str) for r in roi.ravel()):
            roi = roi.astype(str)
        if roi.dtype.kind != "U" or roi.shape != (n_voxels,):
            raise ValueError(
                f"roi: expected str array of shape (n_voxels,) = ({n_voxels},), "
                f"got {_describe(roi)}"
            )
        self.roi = roi

        if self.mask_img is not None:
            img = self.mask_img
            if not isinstance(img, nib.spatialimages.SpatialImage) or len(img.shape) != 3:
                shape = getattr(img, "shape", None)
                raise ValueError(
                    f"mask_img: expected a 3D nibabel image or None, got {type(img).__name__}"
                    + (f" of shape {shape}" if shape is not None else "")
                )
            mask = np.asanyarray(img.dataobj) != 0
            if int(mask.sum()) != n_voxels:
                raise ValueError(
                    f"mask_img: expected {n_voxels} non-zero voxels (= n_voxels of betas), "
                    f"got {int(mask.sum())}"
                )
            self._mask = mask

        if self.ncsnr is not None:
            nc = np.asarray(self.ncsnr)
            if nc.dtype.kind != "f" or nc.shape != (n_voxels,):
                raise ValueError(
                    f"ncsnr: expected float array of shape (n_voxels,) = ({n_voxels},), "
                    f"got {_describe(nc)}"
                )
            _check_finite("ncsnr", nc)
            if (nc < 0).any():
                raise ValueError(f"ncsnr: expected values >= 0, got minimum {float(nc.min())}")
            self.ncsnr = nc

        if not isinstance(self.subject, str) or not self.subject:
            raise ValueError(f"subject: expected a non-empty str, got {self.subject!r}")

    def __repr__(self) -> str:
        return (
            f"FMRISubject({self.subject!r}, n_trials={self.n_trials}, n_voxels={self.n_voxels}, "
            f"rois={self.roi_names}, mask_img={'yes' if self.mask_img is not None else 'no'}, "
            f"ncsnr={'yes' if self.ncsnr is not None else 'no'})"
        )

    @property
    def n_trials(self) -> int:
        """Number of trials (rows of ``betas``)."""
        return int(self.betas.shape[0])

    @property
    def n_voxels(self) -> int:
        """Number of voxels (columns of ``betas``)."""
        return int(self.betas.shape[1])

    @property
    def roi_names(self) -> list[str]:
        """The distinct ROI labels, sorted."""
        return [str(r) for r in np.unique(self.roi)]

    def _replace(self, **changes: Any) -> FMRISubject:
        kwargs = dict(
            betas=self.betas,
            stim_ids=self.stim_ids,
            roi=self.roi,
            mask_img=self.mask_img,
            ncsnr=self.ncsnr,
            subject=self.subject,
        )
        kwargs.update(changes)
        return FMRISubject(**kwargs)

    def _take_trials(self, rows: np.ndarray) -> FMRISubject:
        return self._replace(betas=self.betas[rows], stim_ids=self.stim_ids[rows])

    def select_roi(self, name: str | Iterable[str]) -> FMRISubject:
        """A new subject holding only the voxels of one or several ROIs.

        Parameters
        ----------
        name : str or list of str
            ROI label(s), values of :attr:`roi_names`.

        Returns
        -------
        FMRISubject
            Same trials, the selected columns in their original order; ``mask_img`` (if
            any) keeps only the selected voxels, so the C-order contract still holds.
        """
        names = _as_name_list("name", name)
        unknown = sorted(set(names) - set(self.roi_names))
        if unknown:
            raise ValueError(f"name: unknown ROI {unknown}; expected one of {self.roi_names}")
        cols = np.flatnonzero(np.isin(self.roi, names))
        mask_img = None
        if self._mask is not None:
            coords = np.argwhere(self._mask)[cols]
            data = np.zeros(self._mask.shape, dtype=np.uint8)
            data[tuple(coords.T)] = 1
            mask_img = nib.Nifti1Image(data, self.mask_img.affine)
        return self._replace(
            betas=self.betas[:, cols],
            roi=self.roi[cols],
            mask_img=mask_img,
            ncsnr=None if self.ncsnr is None else self.ncsnr[cols],
        )

    def _require_mask(self, what: str) -> np.ndarray:
        if self._mask is None:
            raise ValueError(f"mask_img: {what} needs a mask image, got None")
        return self._mask

    def voxel_coords_mni(self) -> np.ndarray:
        """World (scanner / MNI) coordinates of each voxel, in mm.

        Returns
        -------
        coords : ndarray of float64, shape (n_voxels, 3)
            ``affine @ [i, j, k, 1]`` for each non-zero mask voxel, in column order. They
            are MNI coordinates when the mask image is in MNI space.
        """
        mask = self._require_mask("voxel_coords_mni()")
        return nib.affines.apply_affine(self.mask_img.affine, np.argwhere(mask))

    def to_img(self, values: np.ndarray) -> nib.Nifti1Image:
        """Put per-voxel values back into the mask's 3D grid (zero outside the mask).

        Parameters
        ----------
        values : ndarray of float, shape (n_voxels,) or (k, n_voxels)
            One value per voxel (e.g. an encoding score), or k maps.

        Returns
        -------
        nibabel.Nifti1Image
            float32 image with the mask's affine, 3D (or 4D with k volumes); ready for
            ``nilearn.plotting.plot_stat_map``.
        """
        mask = self._require_mask("to_img()")
        vals = np.asarray(values)
        if (
            vals.dtype.kind not in "iuf"
            or vals.ndim not in (1, 2)
            or vals.shape[-1] != self.n_voxels
        ):
            raise ValueError(
                f"values: expected numeric array of shape (n_voxels,) = ({self.n_voxels},) or "
                f"(k, {self.n_voxels}), got {_describe(vals)}"
            )
        _check_finite("values", vals)
        if vals.ndim == 1:
            data = np.zeros(mask.shape, dtype=np.float32)
            data[mask] = vals
        else:
            data = np.zeros(mask.shape + (vals.shape[0],), dtype=np.float32)
            data[mask] = vals.T
        return nib.Nifti1Image(data, self.mask_img.affine)


def nsd_noise_ceiling(ncsnr: np.ndarray, n_avg: float, as_fraction: bool = False) -> np.ndarray:
    """NSD noise ceiling ``100 * ncsnr**2 / (ncsnr**2 + 1/n_avg)`` (Allen et al. 2022).

    The one implementation of the formula: ``FMRIDataset.noise_ceiling`` and
    ``decoding.evaluation.noise_ceiling`` both call it.

    Parameters
    ----------
    ncsnr : ndarray of float, shape (n_voxels,)
        Noise-ceiling SNR per voxel (already checked by the caller: finite, >= 0).
    n_avg : float
        Trials averaged per image (> 0).
    as_fraction : bool
        Fraction of variance in [0, 1) instead of percent.
    """
    if (
        isinstance(n_avg, bool)
        or not isinstance(n_avg, int | float | np.integer | np.floating)
        or not np.isfinite(n_avg)
        or n_avg <= 0
    ):
        raise ValueError(f"n_avg: expected a number of averaged trials > 0, got {n_avg!r}")
    nc2 = np.asarray(ncsnr, dtype=np.float64) ** 2
    nc = nc2 / (nc2 + 1.0 / float(n_avg))
    return nc if as_fraction else 100.0 * nc


@dataclass(eq=False)
class FMRIDataset:
    """Stimuli plus the fMRI subjects that saw them.

    Parameters
    ----------
    stimuli : Stimuli
        Every image referred to by a subject's ``stim_ids``.
    subjects : dict of str -> FMRISubject
        Keyed by :attr:`FMRISubject.subject`.
    """

    stimuli: Stimuli
    subjects: dict[str, FMRISubject]

    def __post_init__(self) -> None:
        if not isinstance(self.stimuli, Stimuli):
            raise ValueError(f"stimuli: expected a Stimuli, got {type(self.stimuli).__name__}")
        if not isinstance(self.subjects, dict) or not self.subjects:
            raise ValueError(
                "subjects: expected a non-empty dict of name -> FMRISubject, got "
                f"{self.subjects!r:.80}"
            )
        known = self.stimuli.ids
        for key, sub in self.subjects.items():
            if not isinstance(sub, FMRISubject):
                raise ValueError(
                    f"subjects[{key!r}]: expected an FMRISubject, got {type(sub).__name__}"
                )
            if key != sub.subject:
                raise ValueError(
                    f"subjects[{key!r}]: key must equal FMRISubject.subject, got {sub.subject!r}"
                )
            missing = np.setdiff1d(sub.stim_ids, known)
            if missing.size:
                raise ValueError(
                    f"subjects[{key!r}].stim_ids: ids not in stimuli.ids: {_preview(missing)}"
                )

    def __repr__(self) -> str:
        subs = ", ".join(f"{k}: {s.n_trials}x{s.n_voxels}" for k, s in self.subjects.items())
        return f"FMRIDataset({self.stimuli!r}, subjects={{{subs}}})"

    @property
    def subject_names(self) -> list[str]:
        """Subject names, in insertion order."""
        return list(self.subjects)

    def _subject(self, subject: str) -> FMRISubject:
        if subject not in self.subjects:
            raise ValueError(
                f"subject: unknown subject {subject!r}; expected one of {self.subject_names}"
            )
        return self.subjects[subject]

    def select(self, subjects: str | Iterable[str]) -> FMRIDataset:
        """A new dataset with only the given subjects (same stimuli)."""
        names = _as_name_list("subjects", subjects)
        return FMRIDataset(self.stimuli, {n: self._subject(n) for n in names})

    def average_repeats(self) -> FMRIDataset:
        """Average each subject's betas over repeated presentations of the same image.

        NSD shows each image up to 3 times; decoders are usually tested on the 3-trial
        average (MindEye, Scotti et al. 2023/2024). Returns a new dataset whose subjects have
        one row per distinct image, ``stim_ids`` unique and sorted. ``ncsnr`` is kept: it
        describes single trials, so pass ``n_avg`` to :meth:`noise_ceiling`.
        """
        new = {}
        for name, sub in self.subjects.items():
            uniq, inverse, counts = np.unique(sub.stim_ids, return_inverse=True, return_counts=True)
            order = np.argsort(inverse, kind="stable")
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
            means = np.empty((uniq.size, sub.n_voxels), dtype=np.float32)
            if uniq.size:
                # float64 sums over voxel blocks: exact enough, bounded memory
                block = max(1, _FINITE_BLOCK_ELEMENTS // max(1, sub.n_trials))
                for c in range(0, sub.n_voxels, block):
                    chunk = sub.betas[order, c : c + block].astype(np.float64)
                    sums = np.add.reduceat(chunk, starts, axis=0)
                    means[:, c : c + block] = sums / counts[:, None]
            new[name] = sub._replace(betas=means, stim_ids=uniq)
        return FMRIDataset(self.stimuli, new)

    def split(
        self, test: str | float = "shared", random_state: int | None = None
    ) -> tuple[FMRIDataset, FMRIDataset]:
        """Split trials into train and test by stimulus (no image is in both).

        Parameters
        ----------
        test : "shared" or float in (0, 1)
            ``"shared"``: the test images are those seen by *every* subject (NSD's
            "shared1000" design, Allen et al. 2022); a single-subject dataset has all its
            images shared, so use a fraction there. A float: that fraction of the images
            seen by any subject, drawn at random.
        random_state : int or None
            Seed for the random split (ignored for ``"shared"``).

        Returns
        -------
        train, test : FMRIDataset
            ``test.stimuli`` holds the test images (in ``stimuli`` order) and each subject's
            trials on them; ``train`` holds every other stimulus and trial.
        """
        seen = [np.unique(s.stim_ids) for s in self.subjects.values()]
        if isinstance(test, str):
            if test != "shared":
                raise ValueError(f"test: expected 'shared' or a float in (0, 1), got {test!r}")
            test_ids = seen[0]
            for s in seen[1:]:
                test_ids = np.intersect1d(test_ids, s)
            if test_ids.size == 0:
                raise ValueError(
                    "test: 'shared' found no image seen by all subjects "
                    f"{self.subject_names}; use a float fraction"
                )
            all_seen = np.unique(np.concatenate(seen))
            if test_ids.size == all_seen.size:
                raise ValueError(
                    "test: 'shared' would put every image in the test set (all images are seen "
                    "by all subjects); use a float fraction"
                )
        elif isinstance(test, float | int) and not isinstance(test, bool) and 0 < test < 1:
            pool = np.unique(np.concatenate(seen))
            n_test = int(round(float(test) * pool.size))
            if not 0 < n_test < pool.size:
                raise ValueError(
                    f"test: fraction {test} of {pool.size} images gives {n_test} test images; "
                    "expected at least one image on each side"
                )
            rng = np.random.default_rng(random_state)
            test_ids = np.sort(rng.choice(pool, size=n_test, replace=False))
        else:
            raise ValueError(f"test: expected 'shared' or a float in (0, 1), got {test!r}")

        in_test = np.isin(self.stimuli.ids, test_ids)
        parts = []
        for side in (~in_test, in_test):
            stim = self.stimuli.subset(self.stimuli.ids[side])
            subs = {
                name: sub._take_trials(np.isin(sub.stim_ids, stim.ids))
                for name, sub in self.subjects.items()
            }
            parts.append(FMRIDataset(stim, subs))
        return parts[0], parts[1]

    def noise_ceiling(self, subject: str, n_avg: float = 1) -> np.ndarray:
        """NSD noise ceiling of each voxel, in percent of variance explainable.

        ``NC = 100 * ncsnr**2 / (ncsnr**2 + 1/n_avg)`` (Allen et al. 2022, NSD data manual,
        "Noise ceiling"), with ``n_avg`` the number of trials averaged per image (1 for
        single trials, 3 for NSD's 3-repeat average).

        Returns
        -------
        nc : ndarray of float64, shape (n_voxels,)
            Values in [0, 100).
        """
        sub = self._subject(subject)
        if sub.ncsnr is None:
            raise ValueError(f"ncsnr: subject {subject!r} has no ncsnr, got None")
        return nsd_noise_ceiling(sub.ncsnr, n_avg)

    def mni_img(self, subject: str, values: np.ndarray) -> nib.Nifti1Image:
        """Per-voxel values of one subject as a NIfTI image (see :meth:`FMRISubject.to_img`)."""
        return self._subject(subject).to_img(values)


# --------------------------------------------------------------------------------------
# EEG
# --------------------------------------------------------------------------------------
@dataclass(eq=False)
class EEGDataset:
    """Epoched EEG with per-epoch labels.

    Parameters
    ----------
    X : ndarray of float32, shape (n_epochs, n_channels, n_times)
        Signals in **volts** (the SI unit MNE expects). DREAMER stores microvolts; its
        loader divides by 1e6.
    sfreq : float
        Sampling frequency in Hz, > 0.
    ch_names : list of str, length n_channels
        Unique channel names (10-20 names such as ``"AF3"`` for :meth:`to_epochs`).
    labels : dict of str -> ndarray of int, shape (n_epochs,)
        Per-epoch targets, e.g. ``{"valence": ..., "arousal": ..., "dominance": ...}``.
    subject : ndarray of int, shape (n_epochs,)
        Subject index of each epoch.
    trial : ndarray of int, shape (n_epochs,)
        Trial (e.g. film clip) index of each epoch.
    """

    X: np.ndarray
    sfreq: float
    ch_names: list[str]
    labels: dict[str, np.ndarray]
    subject: np.ndarray
    trial: np.ndarray

    def __post_init__(self) -> None:
        X = self.X
        if not isinstance(X, np.ndarray) or X.dtype != np.float32 or X.ndim != 3:
            raise ValueError(
                "X: expected float32 array of shape (n_epochs, n_channels, n_times) in volts, "
                f"got {_describe(X)}"
            )
        _check_finite("X", X)
        n_epochs, n_channels, _ = X.shape

        sfreq = self.sfreq
        if (
            isinstance(sfreq, bool)
            or not isinstance(sfreq, int | float | np.integer | np.floating)
            or not np.isfinite(sfreq)
            or sfreq <= 0
        ):
            raise ValueError(f"sfreq: expected a finite sampling frequency > 0 (Hz), got {sfreq!r}")
        self.sfreq = float(sfreq)

        if isinstance(self.ch_names, str):
            raise ValueError(f"ch_names: expected a list of str, got the str {self.ch_names!r}")
        names = list(self.ch_names)
        if len(names) != n_channels or not all(isinstance(c, str) for c in names):
            raise ValueError(
                f"ch_names: expected {n_channels} str names (= n_channels of X), got {names!r:.200}"
            )
        dupes = sorted({c for c in names if names.count(c) > 1})
        if dupes:
            raise ValueError(f"ch_names: expected unique names, got duplicates {dupes}")
        self.ch_names = names

        if not isinstance(self.labels, dict):
            raise ValueError(
                f"labels: expected dict of name -> int array, got {type(self.labels).__name__}"
            )
        self.labels = {
            str(k): _int_vector(f"labels[{k!r}]", v, n_epochs, "n_epochs")
            for k, v in self.labels.items()
        }
        for k, v in self.labels.items():
            if v.size and v.min() < 0:  # class indices: a -1 would index the last class
                raise ValueError(
                    f"labels[{k!r}]: expected class indices >= 0, got minimum {int(v.min())}"
                )
        self.subject = _int_vector("subject", self.subject, n_epochs, "n_epochs")
        self.trial = _int_vector("trial", self.trial, n_epochs, "n_epochs")

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __repr__(self) -> str:
        return (
            f"EEGDataset(n_epochs={len(self)}, n_channels={self.n_channels}, "
            f"n_times={self.n_times}, sfreq={self.sfreq:g} Hz, labels={sorted(self.labels)}, "
            f"subjects={np.unique(self.subject).size})"
        )

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return int(self.X.shape[1])

    @property
    def n_times(self) -> int:
        """Samples per epoch."""
        return int(self.X.shape[2])

    def select(
        self,
        subject: int | Iterable[int] | None = None,
        trial: int | Iterable[int] | None = None,
        mask: np.ndarray | None = None,
    ) -> EEGDataset:
        """A new dataset with the epochs matching every given criterion.

        Parameters
        ----------
        subject, trial : int or list of int, optional
            Keep epochs whose subject (trial) index is among these; an index no epoch has
            is refused (``ValueError``), as :meth:`FMRIDataset.select` refuses an unknown
            subject.
        mask : ndarray of bool, shape (n_epochs,), optional
            Keep epochs where True.
        """
        keep = np.ones(len(self), dtype=bool)
        for name, values, column in (
            ("subject", subject, self.subject),
            ("trial", trial, self.trial),
        ):
            if values is None:
                continue
            vals = np.atleast_1d(np.asarray(values))
            if vals.ndim != 1 or vals.dtype.kind not in "iu" or vals.size == 0:
                raise ValueError(
                    f"{name}: expected int or a non-empty list of int, got {values!r:.80}"
                )
            # like FMRIDataset.select: an index the data do not hold is refused, not
            # answered with an empty dataset
            present = np.unique(column)
            unknown = np.setdiff1d(vals, present)
            if unknown.size:
                raise ValueError(
                    f"{name}: unknown {name} {_preview(unknown)}; expected among "
                    f"{_preview(present)}"
                )
            keep &= np.isin(column, vals)
        if mask is not None:
            m = np.asarray(mask)
            if m.dtype != bool or m.shape != (len(self),):
                raise ValueError(
                    f"mask: expected boolean array of shape ({len(self)},), got {_describe(m)}"
                )
            keep &= m
        rows = _select_rows("mask", len(self), keep)
        return EEGDataset(
            X=self.X[rows],
            sfreq=self.sfreq,
            ch_names=list(self.ch_names),
            labels={k: v[rows] for k, v in self.labels.items()},
            subject=self.subject[rows],
            trial=self.trial[rows],
        )

    def to_epochs(
        self, montage: str | None = "standard_1020", verbose: bool | str | None = None
    ) -> mne.EpochsArray:
        """Convert to :class:`mne.EpochsArray` (EEG channels, volts, standard montage).

        Parameters
        ----------
        montage : str or None
            Name for :func:`mne.channels.make_standard_montage` (default the 10-20 system,
            called ``"colin27_1020"`` from MNE 1.13 on, with the same positions); None leaves
            the channel positions unset. Channel names are matched case-
            insensitively; a name the montage lacks raises ``ValueError``.
        verbose : bool | str | None
            MNE verbosity.

        Returns
        -------
        mne.EpochsArray
            Data in volts, ``tmin=0``; ``metadata`` holds ``subject``, ``trial`` and every
            label, one row per epoch.
        """
        import mne
        import pandas as pd

        info = mne.create_info(list(self.ch_names), self.sfreq, ch_types="eeg", verbose=verbose)
        meta = pd.DataFrame({"subject": self.subject, "trial": self.trial, **self.labels})
        epochs = mne.EpochsArray(
            self.X.astype(np.float64), info, tmin=0.0, metadata=meta, verbose=verbose
        )
        if montage is not None:
            name = montage
            if name == "standard_1020" and "colin27_1020" in mne.channels.get_builtin_montages():
                # MNE 1.13 renamed it (same positions); the old name warns of removal
                name = "colin27_1020"
            mont = mne.channels.make_standard_montage(name)
            known = {c.lower() for c in mont.ch_names}
            missing = [c for c in self.ch_names if c.lower() not in known]
            if missing:
                raise ValueError(
                    f"ch_names: channels {missing} are not in montage {montage!r}; "
                    "expected 10-20 names or montage=None"
                )
            epochs.set_montage(mont, match_case=False, verbose=verbose)
        return epochs
