"""Single-trial betas from any NIfTI / BIDS derivative, through nilearn's ``NiftiMasker``.

NSD has its own reader (:mod:`data_loaders.nsd`); everything else that gives one beta map
per trial (GLMsingle outputs, LSS/LSA beta series from nilearn or fitlins, a BIDS
derivatives folder) comes in here: images + a mask in, an :class:`FMRISubject` out.
Masking is nilearn's (``NiftiMasker``: lazy loading of paths, ``memory=`` caching with
``joblib.Memory``), so the columns are the mask's voxels in C order, as the schema asks.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from data_loaders._io import reading
from data_loaders.nsd import _log
from data_loaders.schema import FMRISubject

__all__ = ["load_nifti_betas", "find_bids_betas"]

ImgLike = str | os.PathLike | nib.spatialimages.SpatialImage
_NIFTI_WHAT = "a NIfTI image (.nii / .nii.gz)"


def _guard(item: Any, what: str = _NIFTI_WHAT) -> contextlib.AbstractContextManager:
    """Name the file if reading a path fails (an in-memory image needs no name)."""
    if isinstance(item, str | os.PathLike):
        return reading(item, what)
    return contextlib.nullcontext()


def _name(img: Any, i: int) -> str:
    return str(img) if isinstance(img, str | os.PathLike) else f"beta_imgs[{i}]"


def _load(img: Any, field: str) -> nib.spatialimages.SpatialImage:
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img
    if isinstance(img, str | os.PathLike):
        path = Path(img)
        if not path.is_file():
            raise FileNotFoundError(f"{field}: image not found: {path}")
        with reading(path, _NIFTI_WHAT):
            return nib.load(path)  # header only; the data stay on disk until masked
    raise ValueError(f"{field}: expected a NIfTI image or a path, got {type(img).__name__}")


def _check_grid(img: Any, name: str, ref: Any, ref_name: str) -> None:
    diff = float(np.abs(np.asarray(img.affine) - np.asarray(ref.affine)).max())
    if tuple(img.shape[:3]) != tuple(ref.shape[:3]) or not diff <= 1e-4:
        raise ValueError(
            f"{name}: grid {tuple(img.shape[:3])} with affine diagonal "
            f"{np.diag(img.affine)[:3].round(3).tolist()} differs from {ref_name} "
            f"{tuple(ref.shape[:3])} / {np.diag(ref.affine)[:3].round(3).tolist()} (affines "
            f"differ by up to {diff:.4g} mm: shifted, flipped or resampled?); expected the "
            "same voxel grid (resample first, e.g. nilearn.image.resample_to_img)"
        )


def _read_events(events: Any, stim_column: str, n_volumes: int) -> np.ndarray:
    import pandas as pd

    if isinstance(events, str | os.PathLike):
        path = Path(events)
        if not path.is_file():
            raise FileNotFoundError(f"events: file not found: {path}")
        # BIDS: tab-separated, "n/a" for missing values
        with reading(path, "a tab-separated BIDS events.tsv"):
            table = pd.read_csv(path, sep="\t", na_values=["n/a"])
        where = str(path)
    elif isinstance(events, pd.DataFrame):
        table, where = events, "events"
    else:
        raise ValueError(
            "events: expected an events.tsv path or a pandas DataFrame, got "
            f"{type(events).__name__}"
        )
    if stim_column not in table.columns:
        raise ValueError(
            f"{where}: column {stim_column!r} (stim_column) missing; got {list(table.columns)}"
        )
    if len(table) != n_volumes:
        raise ValueError(
            f"{where}: expected one row per beta volume ({n_volumes}), got {len(table)} rows"
        )
    col = table[stim_column]
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}: column {stim_column!r} expected integer stimulus ids, got "
            f"{col.iloc[first]!r} in row {first}"
        )
    return values.astype(np.int64)


def _check_finite(item: Any, img: Any, mask: np.ndarray, name: str) -> None:
    """Refuse NaN/inf inside the mask, reading a block of volumes at a time.

    nilearn's maskers replace non-finite values by 0 (with a warning, and silently once
    the result is cached), so the check is made here, before masking. Integer images
    cannot hold NaN and are not read.
    """
    if np.dtype(img.get_data_dtype()).kind not in "fc":
        return
    if len(img.shape) == 3:
        vol = np.asanyarray(img.dataobj)[mask]
        if not np.isfinite(vol).all():
            raise ValueError(
                f"{name}: betas hold NaN or inf inside the mask; expected finite betas "
                "(mask them out or fill them)"
            )
        return
    if isinstance(item, str | os.PathLike):
        # successive block reads of a .gz continue where the last stopped
        img = nib.load(item, keep_file_open=True)
    proxy = img.dataobj
    n = img.shape[3]
    step = max(1, (64 * 2**20) // max(1, int(np.prod(img.shape[:3])) * 8))
    for a in range(0, n, step):
        block = np.asanyarray(proxy[..., a : a + step])[mask]
        if not np.isfinite(block).all():
            vol = a + int(np.argwhere(~np.isfinite(block))[0][1])
            raise ValueError(
                f"{name}: betas hold NaN or inf inside the mask (volume {vol} of this "
                "image); expected finite betas (mask them out or fill them)"
            )


def _voxel_values(img: Any, field: str, mask_img: Any, mask: np.ndarray) -> np.ndarray:
    src = img
    img = _load(img, field)
    if len(img.shape) != 3:
        raise ValueError(f"{field}: expected a 3D image, got shape {img.shape}")
    _check_grid(img, field, mask_img, "mask_img")
    with _guard(src):
        return np.asanyarray(img.dataobj)[mask]


def load_nifti_betas(
    beta_imgs: ImgLike | Iterable[ImgLike],
    mask_img: ImgLike,
    events: Any = None,
    stim_column: str = "stim_id",
    subject: str = "sub-01",
    roi_img: ImgLike | None = None,
    roi_labels: Mapping[int, str] | None = None,
    ncsnr_img: ImgLike | None = None,
    memory: Any = None,
    verbose: bool | str | None = None,
) -> FMRISubject:
    """Mask single-trial beta maps into an :class:`FMRISubject`.

    Parameters
    ----------
    beta_imgs : image or path, or list of them
        One beta volume per trial: a 4D image (X, Y, Z, n_trials), 3D images, or a list
        mixing them (trials are concatenated in list order). Paths are read lazily, one
        image at a time, so only the masked voxels are ever held for all trials.
    mask_img : image or path
        3D mask on the same grid; voxels > 0 are kept (so an NSD-style ROI file with -1
        outside the brain works as is). Columns are its voxels in C order.
    events : path to a BIDS ``events.tsv``, pandas DataFrame, or None
        One row per beta volume; ``stim_column`` gives the integer stimulus id of each.
        None numbers the volumes 0..n_trials-1 (each its own stimulus).
    stim_column : str
        Column of ``events`` holding the stimulus id.
    subject : str
        Subject name stored in the result (BIDS style ``"sub-01"``).
    roi_img : image or path, optional
        Integer atlas on the same grid; its code at each voxel becomes the voxel's ROI
        label, through ``roi_labels`` (code -> name) when given, else as the code's text.
        Codes <= 0 and voxels without an atlas are labelled ``"other"``.
    roi_labels : mapping of int to str, optional
        Names of the atlas codes, e.g. ``{1: "V1v", 2: "V1d"}``.
    ncsnr_img : image or path, optional
        Per-voxel noise-ceiling SNR on the same grid (NSD's ``ncsnr.nii.gz``).
    memory : str, path, joblib.Memory or None
        Cache of the masking step, as nilearn's ``memory=``: a folder (or a
        :class:`joblib.Memory`) where repeated loads of the same images are reused.
    verbose : bool, str or None
        Messages; None follows the ``data_loaders`` logger level.

    Returns
    -------
    FMRISubject
        ``betas`` float32 (n_trials, n_voxels) in the images' units; ``stim_ids`` from
        ``events``; ``roi``; ``mask_img`` (the binarised mask); ``ncsnr`` if given.

    Raises
    ------
    ValueError
        Images on another grid than the mask, an empty mask, NaN betas, events whose row
        count or stimulus column do not fit.
    FileNotFoundError
        A path that does not exist.

    Notes
    -----
    nilearn's maskers replace NaN by 0; float images are therefore scanned for NaN inside
    the mask first, a block of volumes at a time, which reads them once more.

    See Also
    --------
    nilearn.maskers.NiftiMasker : the masking used here.
    data_loaders.nsd.load_nsd : the reader for NSD's own layout.
    """
    from nilearn.maskers import NiftiMasker

    mask_src = _load(mask_img, "mask_img")
    if len(mask_src.shape) != 3:
        raise ValueError(f"mask_img: expected a 3D image, got shape {mask_src.shape}")
    with _guard(mask_img):
        mask = np.asanyarray(mask_src.dataobj) > 0
    if not mask.any():
        raise ValueError("mask_img: expected at least one voxel > 0, got an empty mask")
    binary = nib.Nifti1Image(mask.astype(np.uint8), mask_src.affine)

    items = (
        [beta_imgs]
        if isinstance(beta_imgs, str | os.PathLike | nib.spatialimages.SpatialImage)
        else list(beta_imgs)
    )
    if not items:
        raise ValueError("beta_imgs: expected at least one image, got an empty list")
    loaded = []
    for i, item in enumerate(items):
        img = _load(item, f"beta_imgs[{i}]")
        if len(img.shape) not in (3, 4):
            raise ValueError(
                f"{_name(item, i)}: expected a 3D or 4D image, got shape {img.shape}"
            )
        _check_grid(img, _name(item, i), binary, "mask_img")
        with _guard(item):
            _check_finite(item, img, mask, _name(item, i))
        loaded.append((item, img))

    masker = NiftiMasker(
        mask_img=binary, standardize=None, memory=memory, memory_level=1, verbose=0,
        reports=False,
    )  # fmt: skip
    masker.fit()
    # consecutive 3D images go through the masker together, each 4D image on its own
    # (paths are passed as paths: nilearn reads them lazily and hashes them cheaply)
    groups: list[list[tuple[Any, int]]] = []
    for item, img in loaded:
        ndim = len(img.shape)
        if ndim == 3 and groups and groups[-1][0][1] == 3:
            groups[-1].append((item, ndim))
        else:
            groups.append([(item, ndim)])
    parts = []
    for group in groups:
        srcs = [str(it) if isinstance(it, os.PathLike) else it for it, _ in group]
        try:
            x = masker.transform(srcs if group[0][1] == 3 else srcs[0])
        except Exception as err:  # noqa: BLE001 - find and name the file nilearn failed on
            for it, _ in group:
                with _guard(it):
                    np.asanyarray(_load(it, "beta_imgs").dataobj)
            raise ValueError(f"beta_imgs: masking failed ({type(err).__name__}: {err})") from err
        parts.append(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    betas = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    n_trials, n_vox = betas.shape
    _log(verbose, f"{subject}: masked {n_trials} beta volumes x {n_vox} voxels")

    stim_ids = (
        np.arange(n_trials, dtype=np.int64)
        if events is None
        else _read_events(events, stim_column, n_trials)
    )

    roi = np.full(n_vox, "other", dtype=object)
    if roi_img is not None:
        codes = _voxel_values(roi_img, "roi_img", binary, mask)
        codes = np.rint(codes).astype(np.int64) if codes.dtype.kind == "f" else codes
        names = dict(roi_labels or {})
        for code in np.unique(codes[codes > 0]):
            roi[codes == code] = names.get(int(code), str(int(code)))
    elif roi_labels is not None:
        raise ValueError("roi_labels: given without roi_img; expected both or neither")

    ncsnr = None
    if ncsnr_img is not None:
        ncsnr = _voxel_values(ncsnr_img, "ncsnr_img", binary, mask).astype(np.float32)

    return FMRISubject(
        betas=betas, stim_ids=stim_ids, roi=roi.astype(str), mask_img=binary, ncsnr=ncsnr,
        subject=subject,
    )  # fmt: skip


_ENTITY_RE = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9]+)$")


def _parse_bids_name(name: str) -> tuple[dict[str, str], str] | None:
    """``sub-01_task-x_run-2_beta.nii.gz`` -> ({"sub": "01", "task": "x", "run": "2"}, "beta")."""
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]
    *pairs, suffix = stem.split("_")
    entities = {}
    for p in pairs:
        m = _ENTITY_RE.match(p)
        if not m:
            return None
        entities[m.group(1)] = m.group(2)
    return entities, suffix


def find_bids_betas(
    bids_root: str | os.PathLike,
    subject: str,
    suffix: str | Iterable[str] = ("beta", "betas"),
    derivatives: str = "derivatives",
    **entities: str | int,
) -> list[Path]:
    """Beta maps of one subject in a BIDS derivatives folder, in session/task/run order.

    Looks under ``<bids_root>/<derivatives>/**/sub-<subject>/`` for NIfTI files named by
    the BIDS convention ``sub-<label>[_<key>-<value>...]_<suffix>.nii[.gz]`` whose suffix
    is one of ``suffix`` and whose entities match ``entities`` (e.g. ``task="nsdcore"``,
    ``space="MNI152NLin2009cAsym"``, ``desc="LSS"``; BIDS Specification, "Derivatives").

    Parameters
    ----------
    bids_root : path-like
        The BIDS dataset (or the derivatives folder itself with ``derivatives="."``).
    subject : str
        Label with or without ``sub-``.
    suffix : str or list of str
        File suffixes to accept; fitlins' statistical maps use ``"statmap"``.
    derivatives : str
        Sub-folder holding the derivatives.
    **entities : str or int
        Required entity values; ints match zero-padded labels (``run=2`` matches
        ``run-02``).

    Returns
    -------
    list of Path
        Sorted by session, task, run (numerically), then name; pass them to
        :func:`load_nifti_betas`.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist or no file matches (the message says what was
        searched for).
    """
    label = subject[4:] if subject.startswith("sub-") else subject
    base = Path(bids_root) / derivatives
    if not base.is_dir():
        raise FileNotFoundError(f"bids_root: derivatives folder not found: {base}")
    suffixes = {suffix} if isinstance(suffix, str) else set(suffix)

    def matches(value: str, want: str | int) -> bool:
        if isinstance(want, int) and not isinstance(want, bool):
            return value.isdigit() and int(value) == want
        return value == str(want)

    found = []
    for path in base.rglob(f"sub-{label}_*.nii*"):
        if f"sub-{label}" not in path.parts or not path.name.endswith((".nii", ".nii.gz")):
            continue
        parsed = _parse_bids_name(path.name)
        if parsed is None:
            continue
        ents, suf = parsed
        if suf not in suffixes or ents.get("sub") != label:
            continue
        if all(k in ents and matches(ents[k], v) for k, v in entities.items()):
            found.append((ents, path))
    if not found:
        want = ", ".join(f"{k}-{v}" for k, v in entities.items())
        raise FileNotFoundError(
            f"no sub-{label} files with suffix {sorted(suffixes)}"
            + (f" and entities {want}" if want else "")
            + f" under {base}"
        )

    def key(item: tuple[dict, Path]) -> tuple:
        ents, path = item

        def num(k: str) -> tuple[int, str]:
            v = ents.get(k, "")
            return (int(v), "") if v.isdigit() else (-1, v)

        return (num("ses"), ents.get("task", ""), num("run"), path.name)

    return [p for _, p in sorted(found, key=key)]
