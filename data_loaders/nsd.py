"""The Natural Scenes Dataset (NSD) on disk: a reader for the real layout and a writer of it.

NSD (Allen et al. 2022, *Nat. Neurosci.* 25:116-126) is published as a folder tree (the
``natural-scenes-dataset`` S3 bucket). :func:`load_nsd` reads a copy of that tree, laid out
exactly as published; :func:`write_nsd_layout` writes a simulated dataset into the same
tree, so that the reader, every model and every test run on it out of the box.

The files used (paths relative to the root; ``XX`` is the 2-digit subject, ``NN`` the
2-digit session):

================================================================================  =========
``nsddata/experiments/nsd/nsd_expdesign.mat``                                     design
``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5`` (``imgBrick``)                   images
``nsddata_betas/ppdata/subjXX/<space>/<betas>/betas_sessionNN.nii.gz`` / ``.hdf5``  betas
``nsddata_betas/ppdata/subjXX/<space>/<betas>/ncsnr.nii.gz``                      ncsnr
``nsddata/ppdata/subjXX/<space>/roi/<roi>.nii.gz``                                ROIs
``nsddata/ppdata/subjXX/<space>/brainmask.nii.gz``                                brain
================================================================================  =========

Conventions (NSD data manual, cvnlab.slite.page; see ``REFERENCES.md`` Part B section 4):

- every index in ``nsd_expdesign.mat`` is 1-based; the 0-based 73k id of trial ``t`` of
  subject ``s`` is ``subjectim[s-1, masterordering[t]-1] - 1``;
- betas are int16 percent signal change x 300; NIfTI files are X x Y x Z x trials, HDF5
  files hold ``/betas`` as trials x Z x Y x X (the MATLAB order reversed by h5py);
- ROI files hold -1 outside the brain, 0 outside the ROI and >= 1 inside it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from data_loaders._io import CorruptFileError, atomic_path, reading
from data_loaders.schema import FMRIDataset, FMRISubject, Stimuli

if TYPE_CHECKING:
    from data_loaders.simulate.fmri import SimulatedNSD

__all__ = [
    "NSD_SESSIONS",
    "NSD_TRIALS_PER_SESSION",
    "BETA_SCALE",
    "PRF_VISUALROIS",
    "STREAMS",
    "MTL_LABELS",
    "NSDExpDesign",
    "nsd_paths",
    "read_expdesign",
    "load_nsd",
    "write_nsd_layout",
]

logger = logging.getLogger("data_loaders.nsd")

#: Sessions completed by subjects 1..8 (NSD manual, "Technical notes").
NSD_SESSIONS: dict[int, int] = {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}
#: Trials per scan session in NSD (12 runs of 62-63 trials).
NSD_TRIALS_PER_SESSION = 750
#: int16 betas are percent signal change times this factor (NSD manual, "Functional data").
BETA_SCALE = 300.0

#: Codes of ``prf-visualrois.nii.gz`` (``prf-visualrois.mgz.ctab``).
PRF_VISUALROIS: dict[int, str] = {
    1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d", 7: "hV4",
}  # fmt: skip
#: Codes of ``streams.nii.gz`` (``streams.mgz.ctab``).
STREAMS: dict[int, str] = {
    1: "early", 2: "midventral", 3: "midlateral", 4: "midparietal",
    5: "ventral", 6: "lateral", 7: "parietal",
}  # fmt: skip
#: Codes of ``MTL.nii.gz`` (medial temporal lobe subregions).
MTL_LABELS: dict[int, str] = {
    1: "ErC", 2: "area35", 3: "area36", 4: "PhC", 5: "Sub",
    6: "CA1", 7: "CA2", 8: "CA3", 9: "DG", 10: "HT",
}  # fmt: skip

# FMRISubject.roi labels from the atlas codes above; the rest of a selection is "other".
_PRF_TO_LABEL = {1: "V1", 2: "V1", 3: "V2", 4: "V2", 5: "V3", 6: "V3", 7: "hV4"}
_HIGHER_STREAMS = (5, 6)  # ventral + lateral: object/category-selective cortex
_EXPDESIGN_FIELDS = ("masterordering", "subjectim", "sharedix")
_SESSION_RE = re.compile(r"^betas_session(\d+)\.(nii\.gz|nii|hdf5)$")
# Prefer HDF5 (uncompressed, voxel-chunked in NSD: cheap partial reads), then .nii.gz, .nii.
_BETA_SUFFIXES = ("hdf5", "nii.gz", "nii")
# Bytes of int16 betas read at once; bounds the working memory of a session read.
_READ_BLOCK_BYTES = 64 * 2**20
_IMAGE_BATCH = 64
# Affines of files on one voxel grid agree to float32 rounding of a header; a real shift
# or flip is millimetres (``load_nifti_betas`` uses the same tolerance).
_AFFINE_ATOL_MM = 1e-4
_EXPDESIGN_WHAT = "a MATLAB file with fields masterordering, subjectim, sharedix"
_BETAS_WHAT = {
    "hdf5": "HDF5 with dataset '/betas' int16 (trials, Z, Y, X)",
    "nii": "a 4D NIfTI of int16 betas (X, Y, Z, trials)",
}


# --------------------------------------------------------------------------------------
# verbosity (MNE-like: None follows the logging config, True/False force it)
# --------------------------------------------------------------------------------------
def _is_verbose(verbose: bool | str | int | None) -> bool:
    if verbose is None:
        return logger.isEnabledFor(logging.INFO)
    if isinstance(verbose, bool):
        return verbose
    if isinstance(verbose, str):
        level = logging.getLevelName(verbose.upper())
        if not isinstance(level, int):
            raise ValueError(
                f"verbose: expected bool, None or a logging level name, got {verbose!r}"
            )
        return level <= logging.INFO
    if isinstance(verbose, int):
        return verbose <= logging.INFO
    raise ValueError(f"verbose: expected bool, None or a logging level, got {verbose!r}")


def _log(verbose: bool | str | int | None, msg: str) -> None:
    if verbose is None:
        logger.info(msg)
    elif _is_verbose(verbose):
        print(f"[data_loaders] {msg}", file=sys.stderr)


def _progress(iterable: Iterable, verbose: Any, total: int | None = None, desc: str = ""):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not _is_verbose(verbose), leave=False)


# --------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Paths:
    root: Path
    space: str = "func1pt8mm"
    betas: str = "betas_fithrf_GLMdenoise_RR"

    @property
    def expdesign(self) -> Path:
        return self.root / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"

    @property
    def stimuli(self) -> Path:
        return self.root / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5"

    def betas_dir(self, subject: int) -> Path:
        subj = f"subj{subject:02d}"
        return self.root / "nsddata_betas" / "ppdata" / subj / self.space / self.betas

    def session(self, subject: int, session: int, suffix: str = "nii.gz") -> Path:
        return self.betas_dir(subject) / f"betas_session{session:02d}.{suffix}"

    def ncsnr(self, subject: int) -> Path:
        return self.betas_dir(subject) / "ncsnr.nii.gz"

    def ppdata(self, subject: int) -> Path:
        return self.root / "nsddata" / "ppdata" / f"subj{subject:02d}" / self.space

    def roi(self, subject: int, name: str) -> Path:
        return self.ppdata(subject) / "roi" / f"{name}.nii.gz"

    def brainmask(self, subject: int) -> Path:
        return self.ppdata(subject) / "brainmask.nii.gz"


def nsd_paths(
    root: str | os.PathLike,
    subject: int = 1,
    session: int = 1,
    space: str = "func1pt8mm",
    betas: str = "betas_fithrf_GLMdenoise_RR",
) -> dict[str, Path]:
    """Where NSD keeps each file, for one subject and session.

    Parameters
    ----------
    root : path-like
        The copy of the ``natural-scenes-dataset`` bucket.
    subject, session : int
        1-based subject (1..8) and session numbers.
    space, betas : str
        Data space (``"func1pt8mm"``, ``"func1mm"``) and beta version folder.

    Returns
    -------
    dict of str -> Path
        Keys ``expdesign``, ``stimuli``, ``betas_nii``, ``betas_hdf5``, ``ncsnr``,
        ``roi_dir``, ``brainmask``.
    """
    p = _Paths(Path(root), space, betas)
    return {
        "expdesign": p.expdesign,
        "stimuli": p.stimuli,
        "betas_nii": p.session(subject, session, "nii.gz"),
        "betas_hdf5": p.session(subject, session, "hdf5"),
        "ncsnr": p.ncsnr(subject),
        "roi_dir": p.roi(subject, "x").parent,
        "brainmask": p.brainmask(subject),
    }


# --------------------------------------------------------------------------------------
# experimental design
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NSDExpDesign:
    """The trial design of ``nsd_expdesign.mat``, converted to 0-based indices.

    Attributes
    ----------
    masterordering : ndarray of int64, shape (n_total_trials,)
        For each trial, the 0-based position in a subject's image list (a row of
        ``subjectim``); the same for all subjects. 30000 in NSD.
    subjectim : ndarray of int64, shape (n_subjects, n_subject_images)
        Each subject's images as 0-based 73k ids; the first ``len(sharedix)`` columns are
        the shared images. (8, 10000) in NSD.
    sharedix : ndarray of int64, shape (n_shared,)
        0-based 73k ids of the shared images (the "shared1000").
    path : Path
        The file read.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray
    path: Path

    def stim_ids(self, subject: int, trials: np.ndarray) -> np.ndarray:
        """0-based 73k ids shown on the given 0-based trials of a subject.

        Implements ``subjectim[s-1, masterordering[t]-1] - 1`` of the NSD manual, with
        both indices already 0-based here.
        """
        if not 1 <= subject <= self.subjectim.shape[0]:
            raise ValueError(
                f"{self.path}: field 'subjectim' has {self.subjectim.shape[0]} rows, "
                f"got subject {subject}"
            )
        trials = np.asarray(trials)
        if trials.size and trials.max() >= self.masterordering.size:
            raise ValueError(
                f"{self.path}: field 'masterordering' holds {self.masterordering.size} trials, "
                f"expected at least {int(trials.max()) + 1} for the sessions requested"
            )
        return self.subjectim[subject - 1, self.masterordering[trials]]


def _int_field(path: Path, mat: dict, name: str, ndim: int) -> np.ndarray:
    if name not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(
            f"{path}: field {name!r} missing; expected {list(_EXPDESIGN_FIELDS)}, got {present}"
        )
    arr = np.asarray(mat[name])
    if arr.dtype.kind not in "iuf" or arr.size == 0:
        raise ValueError(f"{path}: field {name!r} expected numeric indices, got {arr.dtype}")
    if ndim == 1:
        if arr.ndim > 2 or (arr.ndim == 2 and 1 not in arr.shape):
            raise ValueError(f"{path}: field {name!r} expected a 1 x n vector, got {arr.shape}")
        arr = arr.ravel()
    elif arr.ndim != 2:
        raise ValueError(f"{path}: field {name!r} expected a 2D matrix, got {arr.shape}")
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise ValueError(f"{path}: field {name!r} expected integer values, got non-integers")
    out = arr.astype(np.int64)
    if out.min() < 1:
        raise ValueError(
            f"{path}: field {name!r} expected 1-based indices (>= 1), got minimum {out.min()}"
        )
    return out - 1


def read_expdesign(root: str | os.PathLike) -> NSDExpDesign:
    """Read ``nsddata/experiments/nsd/nsd_expdesign.mat`` and make its indices 0-based.

    Parameters
    ----------
    root : path-like
        NSD root folder.

    Returns
    -------
    NSDExpDesign

    Raises
    ------
    FileNotFoundError
        If the file is absent (the message names the path expected).
    ValueError
        If ``masterordering``, ``subjectim`` or ``sharedix`` is missing or malformed, or
        ``masterordering`` points past the columns of ``subjectim``.
    """
    from scipy.io import loadmat

    path = _Paths(Path(root)).expdesign
    if not path.is_file():
        raise FileNotFoundError(f"NSD experimental design not found: expected {path}")
    with reading(path, _EXPDESIGN_WHAT):
        mat = loadmat(path)
    mo = _int_field(path, mat, "masterordering", 1)
    si = _int_field(path, mat, "subjectim", 2)
    sh = _int_field(path, mat, "sharedix", 1)
    if mo.max() >= si.shape[1]:
        raise ValueError(
            f"{path}: field 'masterordering' expected values <= {si.shape[1]} (the columns of "
            f"'subjectim'), got {mo.max() + 1}"
        )
    return NSDExpDesign(masterordering=mo, subjectim=si, sharedix=sh, path=path)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def _as_int_list(name: str, value: Any) -> list[int]:
    vals = [value] if isinstance(value, int | np.integer) else value
    if isinstance(vals, str | bytes):
        vals = [vals]
    try:
        vals = list(vals)
    except TypeError:
        vals = [value]
    ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in vals)
    if not ok or not vals:
        raise ValueError(f"{name}: expected an int or a non-empty list of int, got {value!r}")
    return [int(v) for v in vals]


def _sessions_present(paths: _Paths, subject: int) -> dict[int, Path]:
    """Session number -> file, from the ``betas_sessionNN.*`` files in the betas folder."""
    folder = paths.betas_dir(subject)
    found: dict[int, Path] = {}
    for f in folder.iterdir():
        m = _SESSION_RE.match(f.name)
        if m:
            n = int(m.group(1))
            prev = found.get(n)
            if prev is None or _BETA_SUFFIXES.index(m.group(2)) < _BETA_SUFFIXES.index(
                _SESSION_RE.match(prev.name).group(2)
            ):
                found[n] = f
    return dict(sorted(found.items()))


def _session_file(paths: _Paths, subject: int, session: int) -> Path:
    for suffix in _BETA_SUFFIXES:
        f = paths.session(subject, session, suffix)
        if f.is_file():
            return f
    n_pub = NSD_SESSIONS.get(subject)
    note = (
        f" (subject {subject} completed {n_pub} sessions in NSD)"
        if n_pub is not None and session > n_pub
        else ""
    )
    raise FileNotFoundError(
        f"betas for subject {subject} session {session} not found: expected "
        f"{paths.session(subject, session, 'nii.gz')} or .hdf5{note}"
    )


def _load_volume(path: Path, what: str) -> nib.Nifti1Image:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: expected {path}")
    with reading(path, f"a NIfTI image ({what})"):
        return nib.load(path)


def _volume_data(img: nib.spatialimages.SpatialImage, path: Path, what: str) -> np.ndarray:
    """The voxel values of ``img``; a truncated or corrupt file names itself."""
    with reading(path, f"a NIfTI image ({what})"):
        return np.asanyarray(img.dataobj)


def _check_geometry(
    path: Path, shape: tuple, affine: np.ndarray | None,
    ref: tuple[tuple, np.ndarray | None, Path] | None,
) -> None:
    """Refuse a file whose grid (shape, and affine when both have one) differs from ``ref``."""
    if ref is None:
        return
    ref_shape, ref_affine, ref_path = ref
    if tuple(shape) != tuple(ref_shape):
        raise ValueError(
            f"{path}: grid {tuple(shape)} differs from {ref_path} {tuple(ref_shape)}; expected "
            "every betas, ROI and ncsnr file of a subject on one voxel grid"
        )
    if affine is None or ref_affine is None:
        return
    diff = float(np.abs(np.asarray(affine) - np.asarray(ref_affine)).max())
    if not np.isfinite(diff) or diff > _AFFINE_ATOL_MM:
        raise ValueError(
            f"{path}: affine differs from {ref_path} by up to {diff:.4g} mm (tolerance "
            f"{_AFFINE_ATOL_MM:g}; voxel sizes {np.diag(np.asarray(affine))[:3].round(3).tolist()}"
            f" vs {np.diag(np.asarray(ref_affine))[:3].round(3).tolist()}); expected every "
            "betas, ROI and ncsnr file of a subject on one voxel grid (shifted, flipped or "
            "resampled?)"
        )


def _label_volume(
    img: nib.spatialimages.SpatialImage, path: Path, shape: tuple, ref: tuple | None = None
) -> np.ndarray:
    if tuple(img.shape[:3]) != tuple(shape) or len(img.shape) != 3:
        raise ValueError(
            f"{path}: ROI shape {tuple(img.shape)} does not match the betas grid {tuple(shape)}"
        )
    if ref is not None:
        _check_geometry(path, img.shape[:3], img.affine, ref)
    data = _volume_data(img, path, "ROI labels")
    return np.rint(data).astype(np.int32) if data.dtype.kind == "f" else data.astype(np.int32)


def _betas_dataset(f: Any, path: Path) -> Any:
    if "betas" not in f:
        raise ValueError(f"{path}: dataset '/betas' missing; got {sorted(f.keys())}")
    dset = f["betas"]
    if dset.ndim != 4:
        raise ValueError(
            f"{path}: dataset '/betas' expected shape (trials, Z, Y, X), got {dset.shape}"
        )
    return dset


def _session_grid(path: Path) -> tuple[tuple[int, int, int], int, np.ndarray | None]:
    """((X, Y, Z), n_trials, affine or None for HDF5) of a betas file, from its header."""
    if path.name.endswith(".hdf5"):
        import h5py

        with reading(path, _BETAS_WHAT["hdf5"]), h5py.File(path, "r") as f:
            t, z, y, x = _betas_dataset(f, path).shape
        return (x, y, z), t, None
    with reading(path, _BETAS_WHAT["nii"]):
        img = nib.load(path)
    if len(img.shape) != 4:
        raise ValueError(f"{path}: betas expected a 4D image (X, Y, Z, trials), got {img.shape}")
    return tuple(img.shape[:3]), int(img.shape[3]), img.affine


class _SessionReader:
    """Read the selected voxels of one session file, in blocks that bound memory."""

    def __init__(self, path: Path, xyz: tuple[np.ndarray, np.ndarray, np.ndarray]):
        self.path = path
        self.xyz = xyz
        self.lo = [int(c.min()) for c in xyz]
        self.hi = [int(c.max()) + 1 for c in xyz]
        self.is_hdf5 = path.name.endswith(".hdf5")

    def _dset(self, f):
        return _betas_dataset(f, self.path)

    def _store(
        self, out: np.ndarray, block: np.ndarray, t0: int, cols: np.ndarray | None = None
    ) -> None:
        """Write a block (b, n_cols) of psc*300 into ``out[t0:t0+b, cols]`` as float32 psc."""
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            t, c = np.argwhere(~np.isfinite(block))[0]
            x, y, z = (int(a[c if cols is None else cols[c]]) for a in self.xyz)
            raise ValueError(
                f"{self.path}: field 'betas' holds NaN or inf (trial {t0 + int(t)}, voxel "
                f"({x}, {y}, {z}) in X, Y, Z); expected finite betas"
            )
        # float64 division then float32 (the value a simulation quantised to k/300 stores),
        # a few rows at a time so the float64 copy stays small
        step = max(1, 2**21 // max(1, block.shape[1]))
        for a in range(0, block.shape[0], step):
            vals = (block[a : a + step].astype(np.float64) / BETA_SCALE).astype(np.float32)
            rows = slice(t0 + a, t0 + a + vals.shape[0])
            if cols is None:
                out[rows] = vals
            else:
                out[rows, cols] = vals

    def _read_gzip_stream(self, proxy: Any, out: np.ndarray) -> None:
        import zlib

        try:
            _read_gzip_stream_impl(self, proxy, out)
        except (zlib.error, _zlib().error, EOFError) as err:  # a damaged or cut file
            raise CorruptFileError(self.path, _BETAS_WHAT["nii"], err) from err

    def read(self, out: np.ndarray) -> None:
        """Fill ``out`` (n_trials, n_voxels) float32 with percent signal change."""
        x0, y0, z0 = self.lo
        x1, y1, z1 = self.hi
        xs, ys, zs = self.xyz
        box_vox = (x1 - x0) * (y1 - y0) * (z1 - z0)
        n_trials = out.shape[0]
        if self.is_hdf5:
            import h5py

            with h5py.File(self.path, "r") as f:
                dset = self._dset(f)
                chunks = dset.chunks
                if chunks is not None and chunks[0] < n_trials:
                    # chunks split the trials: read whole trial blocks, aligned to chunks
                    step = max(1, _READ_BLOCK_BYTES // max(1, box_vox * dset.dtype.itemsize))
                    step = max(chunks[0], step // chunks[0] * chunks[0])
                    for t0 in range(0, n_trials, step):
                        box = dset[t0 : t0 + step, z0:z1, y0:y1, x0:x1]
                        block = box[:, zs - z0, ys - y0, xs - x0]
                        self._store(out, block, t0)
                else:
                    # NSD chunks [1 1 1 750]: each chunk is one voxel's time series, so read
                    # all trials of a slab of Z planes at a time (each chunk read once)
                    plane = (x1 - x0) * (y1 - y0) * n_trials * dset.dtype.itemsize
                    step = max(1, _READ_BLOCK_BYTES // max(1, plane))
                    if chunks is not None:
                        step = max(chunks[1], step // chunks[1] * chunks[1])
                    for za in range(z0, z1, step):
                        zb = min(z1, za + step)
                        cols = np.flatnonzero((zs >= za) & (zs < zb))
                        if cols.size == 0:
                            continue
                        box = dset[:, za:zb, y0:y1, x0:x1]
                        block = box[:, zs[cols] - za, ys[cols] - y0, xs[cols] - x0]
                        self._store(out, block, 0, cols)
            return
        # NIfTI: X x Y x Z x trials, Fortran order on disk, so a trial block is contiguous;
        # keep_file_open makes successive gzip reads continue where the last one stopped
        # (the proxy closes its file when it is garbage-collected)
        proxy = nib.load(self.path, keep_file_open=True).dataobj
        if self.path.name.endswith(".gz") and _plain_proxy(proxy):
            self._read_gzip_stream(proxy, out)
            return
        step = max(1, _READ_BLOCK_BYTES // max(1, box_vox * proxy.dtype.itemsize))
        for t0 in range(0, n_trials, step):
            box = np.asanyarray(proxy[x0:x1, y0:y1, z0:z1, t0 : t0 + step])
            block = box[xs - x0, ys - y0, zs - z0, :].T
            self._store(out, block, t0)


def _plain_proxy(proxy: Any) -> bool:
    """An unscaled 4D Fortran-ordered NIfTI array proxy (the stream reader's case)."""
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    return (getattr(proxy, "order", "F") == "F" and len(proxy.shape) == 4
            and slope == 1.0 and inter == 0.0 and hasattr(proxy, "offset"))


# compressed bytes per read of the gzip stream reader, and decompressed bytes per block
_GZ_READ_BYTES = 4 * 2**20
_GZ_PIECE_BYTES = 2**20


def _zlib() -> Any:
    """``isal.isal_zlib`` (ISA-L, ~2x faster inflate, same API) when installed, else zlib."""
    try:
        from isal import isal_zlib

        return isal_zlib
    except ImportError:
        import zlib

        return zlib


def _read_gzip_stream_impl(reader: _SessionReader, proxy: Any, out: np.ndarray) -> None:
    """Decompress the whole file once, in order, keeping only the selected voxels.

    A .nii.gz has to be decompressed from its start whatever is read, so the fastest read is
    one pass of ``zlib`` over the file (no seeks, no nibabel slicing per block), whose
    volumes are gathered a block of trials at a time with precomputed flat indices. Memory:
    one block of volumes (``_READ_BLOCK_BYTES``), one compressed read and ``out``.
    """
    zlib = _zlib()
    X, Y, Z, _ = (int(n) for n in proxy.shape)
    dtype = np.dtype(proxy.dtype)
    vol_bytes = X * Y * Z * dtype.itemsize
    xs, ys, zs = (np.asarray(a, np.int64) for a in reader.xyz)
    flat = xs + X * (ys + Y * zs)  # Fortran order within a volume
    n_trials = out.shape[0]
    per_block = max(1, _READ_BLOCK_BYTES // vol_bytes)
    read_bytes = min(_GZ_READ_BYTES, max(2**16, _READ_BLOCK_BYTES // 4))
    skip = int(proxy.offset)  # header bytes of the decompressed stream, discarded
    buf = bytearray(min(per_block, n_trials) * vol_bytes)  # one block of volumes, reused
    view = memoryview(buf)
    fill, t0 = 0, 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip header and trailer
    with open(reader.path, "rb") as fh:
        while t0 < n_trials:
            b = min(per_block, n_trials - t0)
            if d.eof:  # end of a gzip member: a multi-member file goes on with the next
                data = d.unused_data + d.unconsumed_tail or fh.read(read_bytes)
                if not data:
                    break
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif d.unconsumed_tail:
                data = d.unconsumed_tail
            else:
                data = fh.read(read_bytes)
                if not data:
                    break
            room = skip if skip else b * vol_bytes - fill
            piece = d.decompress(data, min(room, _GZ_PIECE_BYTES))
            del data
            if skip:
                skip -= len(piece)
                continue
            view[fill:fill + len(piece)] = piece
            fill += len(piece)
            if fill == b * vol_bytes:
                vols = np.frombuffer(buf, dtype=dtype, count=b * X * Y * Z)
                block = vols.reshape(b, X * Y * Z)[:, flat]
                reader._store(out, block, t0)
                del vols, block
                t0, fill = t0 + b, 0
        full = t0 == n_trials == int(proxy.shape[3])
        if full and not d.eof:  # the rest (end of stream, gzip trailer and CRC) is checked
            d.decompress(d.unconsumed_tail + fh.read(read_bytes), 2**16)
    view.release()
    if t0 < n_trials or (full and not d.eof):
        raise EOFError(f"the gzip stream ended after {t0} of {n_trials} volumes "
                       f"({X}x{Y}x{Z} {dtype})")


def _read_images(
    path: Path, ids: np.ndarray, image_size: int | tuple[int, int] | None, verbose: Any
) -> np.ndarray:
    """Read ``imgBrick[ids]`` (ids sorted, unique) in batches, resizing each batch."""
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"NSD stimuli not found: expected {path}")
    with h5py.File(path, "r") as f:
        if "imgBrick" not in f:
            raise ValueError(
                f"{path}: dataset 'imgBrick' missing; expected (73000, 425, 425, 3) uint8, "
                f"got datasets {sorted(f.keys())}"
            )
        brick = f["imgBrick"]
        if brick.ndim != 4 or brick.shape[-1] != 3 or brick.dtype != np.uint8:
            raise ValueError(
                f"{path}: dataset 'imgBrick' expected uint8 (n, H, W, 3), got "
                f"{brick.dtype} {brick.shape}"
            )
        if ids.size and ids.max() >= brick.shape[0]:
            raise ValueError(
                f"{path}: dataset 'imgBrick' holds {brick.shape[0]} images, but the design "
                f"asks for id {int(ids.max())}"
            )
        h, w = brick.shape[1:3]
        if image_size is not None:
            h, w = _as_hw(image_size)
        out = np.empty((ids.size, h, w, 3), dtype=np.uint8)
        starts = range(0, ids.size, _IMAGE_BATCH)
        for s in _progress(starts, verbose, total=len(starts), desc="images"):
            # h5py point selection needs increasing indices: ids are sorted and unique
            batch = brick[ids[s : s + _IMAGE_BATCH]]
            if image_size is not None and batch.shape[1:3] != (h, w):
                batch = _resize(batch, (h, w))
            out[s : s + _IMAGE_BATCH] = batch
    return out


def _as_hw(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, int | np.integer) and not isinstance(image_size, bool):
        hw = (int(image_size), int(image_size))
    else:
        try:
            hw = tuple(int(v) for v in image_size)
        except TypeError:
            hw = ()
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(
            f"image_size: expected None, an int or (height, width) >= 1, got {image_size!r}"
        )
    return hw


def _resize(batch: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    out = np.empty((batch.shape[0], *hw, 3), dtype=np.uint8)
    for i, im in enumerate(batch):
        r = resize(im, hw, order=1, anti_aliasing=True, preserve_range=True)
        out[i] = np.clip(np.rint(r), 0, 255).astype(np.uint8)
    return out


def _voxel_labels(
    paths: _Paths, subject: int, shape: tuple, xyz: tuple, verbose: Any, ref: tuple | None = None
) -> np.ndarray:
    """Per-voxel labels V1/V2/V3/hV4 (prf-visualrois), MTL (MTL), higher (streams)."""
    labels = np.full(xyz[0].size, "other", dtype="<U6")
    # later files only label voxels the earlier ones left as "other"
    for name in ("prf-visualrois", "MTL", "streams"):
        path = paths.roi(subject, name)
        if not path.is_file():
            _log(verbose, f"subj{subject:02d}: {path.name} absent, its voxels stay 'other'")
            continue
        codes = _label_volume(_load_volume(path, "ROI file"), path, shape, ref)[xyz]
        free = labels == "other"
        if name == "prf-visualrois":
            for code, lab in _PRF_TO_LABEL.items():
                labels[free & (codes == code)] = lab
        elif name == "MTL":
            labels[free & (codes > 0)] = "MTL"
        else:
            labels[free & np.isin(codes, _HIGHER_STREAMS)] = "higher"
    return labels


def _load_subject(
    paths: _Paths,
    design: NSDExpDesign,
    subject: int,
    sessions: list[int] | None,
    rois: list[str],
    verbose: Any,
) -> FMRISubject:
    name = f"subj{subject:02d}"
    bdir = paths.betas_dir(subject)
    if not bdir.is_dir():
        raise FileNotFoundError(
            f"subjects: subject {subject} not in this NSD root; expected the folder {bdir}"
        )
    if sessions is None:
        files = _sessions_present(paths, subject)
        if not files:
            raise FileNotFoundError(
                f"betas for subject {subject} not found: expected {paths.session(subject, 1)} "
                "(or .hdf5)"
            )
        n_pub = NSD_SESSIONS[subject]
        _log(
            verbose,
            f"{name}: {len(files)} session file(s) present ({n_pub} published), loading "
            f"sessions {list(files)}",
        )
    else:
        files = {s: _session_file(paths, subject, s) for s in sessions}

    # grid, affine and trial counts from the headers, before any data is read; the first
    # file with an affine (a NIfTI session, else the first ROI file) is the reference grid
    shape = n_per = None
    ref: tuple | None = None
    for f in files.values():
        shape_s, n_s, aff_s = _session_grid(f)
        if shape is None:
            shape, n_per = shape_s, n_s
        elif shape_s != shape or n_s != n_per:
            raise ValueError(
                f"{f}: betas grid {shape_s} x {n_s} trials differs from the first session's "
                f"{shape} x {n_per}; expected every session of a subject on one grid"
            )
        if aff_s is not None:
            if ref is None:
                ref = (shape_s, aff_s, f)
            else:
                _check_geometry(f, shape_s, aff_s, ref)

    # voxel selection: union of the ROI files (> 0), C order over (X, Y, Z)
    select = np.zeros(shape, dtype=bool)
    affine = None
    for roi in rois:
        path = paths.roi(subject, roi)
        if not path.is_file():
            folder = path.parent
            avail = sorted(p.name for p in folder.glob("*.nii*")) if folder.is_dir() else []
            raise FileNotFoundError(
                f"roi: ROI file for {roi!r} not found: expected {path}; available: {avail}"
            )
        img = _load_volume(path, "ROI file")
        if ref is None:
            ref = (tuple(img.shape[:3]), img.affine, path)
        select |= _label_volume(img, path, shape, ref) > 0
        affine = img.affine if affine is None else affine
    xyz = np.nonzero(select)
    n_vox = xyz[0].size
    if n_vox == 0:
        raise ValueError(f"roi: {rois} select no voxel (> 0) for subject {subject}")
    mask_img = nib.Nifti1Image(select.astype(np.uint8), affine)

    # trials of each session, then the 73k ids they show
    trial_idx = np.concatenate([(s - 1) * n_per + np.arange(n_per) for s in files])
    stim_ids = design.stim_ids(subject, trial_idx)

    betas = np.empty((trial_idx.size, n_vox), dtype=np.float32)
    bar = _progress(list(files.values()), verbose, len(files), f"{name} sessions")
    for i, f in enumerate(bar):
        with reading(f, _BETAS_WHAT["hdf5" if f.name.endswith(".hdf5") else "nii"]):
            _SessionReader(f, xyz).read(betas[i * n_per : (i + 1) * n_per])

    ncsnr = None
    nc_path = paths.ncsnr(subject)
    if nc_path.is_file():
        nc_img = _load_volume(nc_path, "ncsnr")
        if tuple(nc_img.shape[:3]) != tuple(shape):
            raise ValueError(
                f"{nc_path}: ncsnr shape {nc_img.shape} does not match the betas grid {shape}"
            )
        _check_geometry(nc_path, nc_img.shape[:3], nc_img.affine, ref)
        nc_data = _volume_data(nc_img, nc_path, "float32 ncsnr (X, Y, Z)")
        ncsnr = np.asarray(nc_data, dtype=np.float32).reshape(shape)[xyz]
        if not np.isfinite(ncsnr).all() or (ncsnr < 0).any():
            raise ValueError(f"{nc_path}: field 'ncsnr' expected finite values >= 0")
    else:
        _log(verbose, f"{name}: {nc_path} absent; ncsnr is None")

    roi_labels = _voxel_labels(paths, subject, shape, xyz, verbose, ref)
    return FMRISubject(
        betas=betas, stim_ids=stim_ids, roi=roi_labels, mask_img=mask_img, ncsnr=ncsnr,
        subject=name,
    )  # fmt: skip


def load_nsd(
    root: str | os.PathLike,
    subjects: int | Iterable[int] = (1,),
    sessions: int | Iterable[int] | None = None,
    roi: str | Iterable[str] = "nsdgeneral",
    space: str = "func1pt8mm",
    betas: str = "betas_fithrf_GLMdenoise_RR",
    average_repeats: bool = False,
    images: bool = True,
    image_size: int | tuple[int, int] | None = None,
    verbose: bool | str | None = None,
) -> FMRIDataset:
    """Load NSD single-trial betas, trial design, ROIs and stimuli from the published layout.

    Reads a copy of the Natural Scenes Dataset (Allen et al. 2022, *Nat. Neurosci.*), or a
    simulated root written by :func:`write_nsd_layout`, without ever holding more than one
    session of betas at a time.

    Parameters
    ----------
    root : path-like
        The copy of the ``natural-scenes-dataset`` bucket (the folder that holds
        ``nsddata/``, ``nsddata_betas/`` and ``nsddata_stimuli/``).
    subjects : int or list of int
        1-based NSD subjects (1..8).
    sessions : int, list of int or None
        1-based sessions to load, the same for every subject. ``None`` loads every
        session whose ``betas_sessionNN.{hdf5,nii.gz,nii}`` file is in the subject's betas
        folder (all 40/40/32/30/40/32/40/30 on a complete copy; the written ones on a
        simulated root). Where both exist, the HDF5 file is read.
    roi : str or list of str
        ROI file(s) in ``nsddata/ppdata/subjXX/<space>/roi/`` (without ``.nii.gz``); the
        voxels > 0 of their union are loaded, in C order over (X, Y, Z).
    space : str
        ``"func1pt8mm"`` (default) or ``"func1mm"``.
    betas : str
        Beta version folder, e.g. ``"betas_fithrf_GLMdenoise_RR"`` (GLMsingle, NSD's
        recommended version), ``"betas_fithrf"`` or ``"betas_assumehrf"``.
    average_repeats : bool
        Average the (up to 3) repeats of each image: one row per distinct image.
    images : bool
        Read the images shown (only those, in sorted id order, a batch at a time). If
        False, ``stimuli.images`` has shape ``(n, 0, 0, 3)`` and only the ids are set.
    image_size : int, (height, width) or None
        Resize the images (bilinear with anti-aliasing, :func:`skimage.transform.resize`);
        None keeps NSD's 425 x 425.
    verbose : bool, str or None
        Progress bars and messages; None follows the ``data_loaders`` logger level.

    Returns
    -------
    FMRIDataset
        ``subjects`` keyed ``"subj01"``...; each :class:`FMRISubject` holds

        - ``betas`` float32 (n_sessions * 750, n_voxels), percent signal change
          (the stored int16 divided by 300), sessions in the order requested;
        - ``stim_ids`` the 0-based 73k ids, ``subjectim[s-1, masterordering[t]-1] - 1``;
        - ``roi`` per-voxel labels: ``"V1"``, ``"V2"``, ``"V3"``, ``"hV4"`` from
          ``prf-visualrois`` (ventral and dorsal merged), ``"MTL"`` from ``MTL``,
          ``"higher"`` from ``streams`` ventral/lateral, else ``"other"``;
        - ``ncsnr`` from ``ncsnr.nii.gz`` in the betas folder (None if absent);
        - ``mask_img`` the selected voxels, with the ROI file's affine.

        ``stimuli`` holds every image the loaded trials show; its ``attributes["shared"]``
        flags NSD's shared images (``sharedix``).

    Raises
    ------
    FileNotFoundError
        A missing design, stimulus, betas or ROI file, subject or session; the message
        names the path expected.
    ValueError
        Bad arguments, or a file whose content does not match the layout (a missing field
        or dataset, NaN betas), or files of one subject on different voxel grids: the shape
        and affine (to 1e-4 mm) of every NIfTI betas, ROI and ncsnr file are compared with
        the first one and the message names both files.
    data_loaders._io.CorruptFileError
        (a ``ValueError``) A file that exists but cannot be read (truncated, damaged): the
        message names it and what it should hold.

    Examples
    --------
    >>> from data_loaders.nsd import load_nsd
    >>> ds = load_nsd("/data/natural-scenes-dataset", subjects=[1, 2], sessions=[1, 2],
    ...               image_size=224)  # doctest: +SKIP
    >>> ds.subjects["subj01"].betas.shape  # doctest: +SKIP
    (1500, 15724)
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: NSD root folder not found: {root}")
    subs = _as_int_list("subjects", subjects)
    bad = [s for s in subs if s not in NSD_SESSIONS]
    if bad:
        raise ValueError(f"subjects: NSD has subjects 1..8, got {bad}")
    if len(set(subs)) != len(subs):
        raise ValueError(f"subjects: expected distinct subjects, got {subs}")
    sess = None if sessions is None else _as_int_list("sessions", sessions)
    if sess is not None and (min(sess) < 1 or len(set(sess)) != len(sess)):
        raise ValueError(f"sessions: expected distinct 1-based session numbers, got {sess}")
    rois = [roi] if isinstance(roi, str) else list(roi)
    if not rois or not all(isinstance(r, str) and r for r in rois):
        raise ValueError(f"roi: expected an ROI file name or a list of them, got {roi!r}")
    if image_size is not None:
        _as_hw(image_size)

    if space in ("fsaverage", "nativesurface"):
        raise ValueError(
            f"space: {space!r} is a surface space (.mgh files per hemisphere); expected a "
            "volumetric space such as 'func1pt8mm' or 'func1mm'"
        )
    paths = _Paths(root, space, betas)
    design = read_expdesign(root)
    loaded = {}
    for s in subs:
        sub = _load_subject(paths, design, s, sess, rois, verbose)
        loaded[sub.subject] = sub
        _log(verbose, f"{sub.subject}: {sub.n_trials} trials x {sub.n_voxels} voxels")

    ids = np.unique(np.concatenate([s.stim_ids for s in loaded.values()]))
    if images:
        with reading(paths.stimuli, "HDF5 with dataset 'imgBrick' uint8 (n, H, W, 3)"):
            imgs = _read_images(paths.stimuli, ids, image_size, verbose)
    else:
        imgs = np.zeros((ids.size, 0, 0, 3), dtype=np.uint8)
    stim = Stimuli(images=imgs, ids=ids, attributes={"shared": np.isin(ids, design.sharedix)})
    ds = FMRIDataset(stimuli=stim, subjects=loaded)
    return ds.average_repeats() if average_repeats else ds


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------
def _save_nifti(img: nib.Nifti1Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _split_by_median(coords: np.ndarray, low_code: int, high_code: int) -> np.ndarray:
    """``low_code`` where a coordinate is below the median (ventral / anterior), else high."""
    return np.where(coords < np.median(coords), low_code, high_code) if coords.size else coords


def write_nsd_layout(
    root: str | os.PathLike,
    sim: SimulatedNSD,
    betas_format: str = "nii.gz",
    compress: bool = True,
    verbose: bool | str | None = None,
) -> Path:
    """Write a simulated NSD into the published NSD folder layout.

    Each file has the path, shape, dtype and index convention of the real one, so
    :func:`load_nsd` (or any NSD script) reads it back; betas, ids, ROIs and ncsnr round
    trip exactly. Every file is written atomically (:func:`data_loaders._io.atomic_path`).

    Parameters
    ----------
    root : path-like
        Folder to write into (created). Files already there are replaced, and a
        subject's old ``betas_sessionNN`` files are removed first.
    sim : SimulatedNSD
        From :func:`data_loaders.simulate.fmri.simulate_nsd`: ``stimuli`` (ids play the 73k
        ids), ``subjectim``, ``masterordering`` and ``sharedix`` (0-based), and per subject
        ``betas`` (float32 percent signal change, trials in ``masterordering`` order),
        ``mask_img``, ``roi``, ``ncsnr``, ``brain_mask_img``.
    betas_format : {"nii.gz", "hdf5"}
        ``betas_sessionNN.nii.gz``: int16 X x Y x Z x trials. ``betas_sessionNN.hdf5``:
        ``/betas`` int16 trials x Z x Y x X, chunked one voxel's time series per chunk as
        NSD's files are.
    compress : bool
        gzip the HDF5 datasets (``imgBrick`` and ``/betas``; NSD's own are uncompressed).
        NIfTI files are always gzipped, as their ``.nii.gz`` names say.
    verbose : bool, str or None
        Progress bar and messages.

    Returns
    -------
    Path
        ``root``.

    Notes
    -----
    What each file holds:

    - ``nsd_expdesign.mat``: ``masterordering`` 1 x T, ``subjectim`` n_subjects x
      n_subject_images, ``sharedix`` 1 x n_shared, all 1-based (``scipy.io.savemat``);
    - betas: ``round(betas * 300)`` as int16 (exact when the betas are multiples of 1/300),
      zero outside the subject's voxels;
    - ``roi/nsdgeneral.nii.gz``: 1 on every simulated voxel (all ROIs, MTL included, so the
      default ``load_nsd`` gives back the whole simulated subject), 0 elsewhere in the brain,
      -1 outside it; ``prf-visualrois``: V1..V3 split into ventral (odd code) and dorsal
      (even code) halves at the median z of each area, hV4 = 7; ``streams``: V1-V3 early
      (1), hV4 midventral (2), higher visual ventral (5, below its median z) or lateral (6);
      ``MTL``: PhC (4) posterior and ErC (1) anterior of the median y;
    - ``ncsnr.nii.gz`` float32, 0 outside the voxels; ``brainmask.nii.gz`` uint8.
    """
    from scipy.io import savemat

    if betas_format not in ("nii.gz", "hdf5"):
        raise ValueError(f"betas_format: expected 'nii.gz' or 'hdf5', got {betas_format!r}")
    root = Path(root)
    paths = _Paths(root)
    tps = int(sim.trials_per_session)
    if tps < 1:
        raise ValueError(f"sim.trials_per_session: expected >= 1, got {tps}")
    mo = np.asarray(sim.masterordering)
    si = np.asarray(sim.subjectim)
    sh = np.asarray(sim.sharedix)
    for name, arr, nd in (("masterordering", mo, 1), ("subjectim", si, 2), ("sharedix", sh, 1)):
        if arr.ndim != nd or arr.dtype.kind not in "iu" or arr.size == 0 or arr.min() < 0:
            raise ValueError(
                f"sim.{name}: expected a {nd}D array of 0-based int indices, got "
                f"{arr.dtype} {arr.shape}"
            )
    n_imgs = len(sim.stimuli)
    if mo.max() >= si.shape[1] or si.max() >= n_imgs or sh.max() >= n_imgs:
        raise ValueError(
            "sim: masterordering must index subjectim's columns and subjectim/sharedix the "
            f"{n_imgs} stimuli; got maxima {mo.max()}, {si.max()}, {sh.max()}"
        )
    if not np.array_equal(np.asarray(sim.stimuli.ids), np.arange(n_imgs)):
        raise ValueError("sim.stimuli.ids: expected 0..n_images-1 (they play NSD's 73k ids)")

    # design: MATLAB row vectors / matrix, 1-based, as loadmat returns the real file
    design = {
        "masterordering": (mo + 1).astype(np.int32)[None, :],
        "subjectim": (si + 1).astype(np.int32),
        "sharedix": (sh + 1).astype(np.int32)[None, :],
    }
    with atomic_path(paths.expdesign) as tmp:
        savemat(tmp, design, appendmat=False, do_compression=compress)

    import h5py

    gzip = {"compression": "gzip", "compression_opts": 1} if compress else {}
    images = sim.stimuli.images
    with atomic_path(paths.stimuli) as tmp, h5py.File(tmp, "w") as f:
        # one image per chunk: reading a few images touches only their chunks
        f.create_dataset("imgBrick", data=images, chunks=(1, *images.shape[1:]), **gzip)

    steps = [(s, k) for s, sub in sorted(sim.subjects.items()) for k in range(sub.n_sessions)]
    bar = _progress(steps, verbose, total=len(steps), desc="writing NSD layout")
    done_static: set[int] = set()
    for s, k in bar:
        sub = sim.subjects[s]
        if not 1 <= s <= si.shape[0]:
            raise ValueError(f"sim.subjects: subject {s} has no row in subjectim {si.shape}")
        mask = np.asanyarray(sub.mask_img.dataobj) != 0
        xyz = np.nonzero(mask)
        affine = sub.mask_img.affine
        n_vox = xyz[0].size
        if sub.betas.shape != (sub.n_sessions * tps, n_vox):
            raise ValueError(
                f"sim.subjects[{s}].betas: expected shape ({sub.n_sessions * tps}, {n_vox}) "
                f"(n_sessions * trials_per_session, voxels of mask_img), got {sub.betas.shape}"
            )
        if s not in done_static:
            # replace, not merge: stale sessions (another count or format) would be read
            bdir = paths.betas_dir(s)
            if bdir.is_dir():
                for old in bdir.iterdir():
                    if _SESSION_RE.match(old.name):
                        old.unlink()
            _write_subject_static(paths, s, sub, mask, xyz, affine)
            done_static.add(s)
        scaled = np.rint(sub.betas[k * tps : (k + 1) * tps].astype(np.float64) * BETA_SCALE)
        if np.abs(scaled).max(initial=0) > np.iinfo(np.int16).max:
            raise ValueError(
                f"sim.subjects[{s}].betas: |betas| * 300 exceeds int16 in session {k + 1}; "
                "expected percent signal change within +-109"
            )
        vol = np.zeros((*mask.shape, tps), dtype=np.int16)
        vol[xyz] = scaled.T.astype(np.int16)
        if betas_format == "nii.gz":
            img = nib.Nifti1Image(vol, affine)
            img.header.set_data_dtype(np.int16)
            _save_nifti(img, paths.session(s, k + 1, "nii.gz"))
        else:
            data = vol.transpose(3, 2, 1, 0)  # trials x Z x Y x X, as h5py shows NSD's files
            with atomic_path(paths.session(s, k + 1, "hdf5")) as tmp, h5py.File(tmp, "w") as f:
                f.create_dataset("betas", data=data, chunks=(tps, 1, 1, 1), **gzip)
    _log(verbose, f"wrote {len(sim.subjects)} subject(s), {len(steps)} session(s) to {root}")
    return root


def _write_subject_static(
    paths: _Paths, s: int, sub: Any, mask: np.ndarray, xyz: tuple, affine: np.ndarray
) -> None:
    """Brain mask, ROI files and ncsnr of one simulated subject."""
    brain = np.asanyarray(sub.brain_mask_img.dataobj) != 0
    if brain.shape != mask.shape:
        raise ValueError(
            f"sim.subjects[{s}].brain_mask_img: shape {brain.shape} differs from mask_img "
            f"{mask.shape}"
        )
    roi = np.asarray(sub.roi).astype(str)
    ncsnr = np.asarray(sub.ncsnr, dtype=np.float32)
    if roi.shape != (xyz[0].size,) or ncsnr.shape != roi.shape:
        raise ValueError(
            f"sim.subjects[{s}]: roi {roi.shape} and ncsnr {ncsnr.shape} expected "
            f"({xyz[0].size},) (voxels of mask_img)"
        )
    _save_nifti(nib.Nifti1Image(brain.astype(np.uint8), affine), paths.brainmask(s))

    def atlas(codes: np.ndarray) -> nib.Nifti1Image:
        vol = np.where(brain, 0, -1).astype(np.int16)
        vol[xyz] = codes
        return nib.Nifti1Image(vol, affine)

    x, y, z = xyz
    prf = np.zeros(roi.size, np.int16)
    streams = np.zeros(roi.size, np.int16)
    mtl = np.zeros(roi.size, np.int16)
    for lab, code in (("V1", 1), ("V2", 3), ("V3", 5)):
        sel = roi == lab
        prf[sel] = _split_by_median(z[sel], code, code + 1)  # ventral below, dorsal above
        streams[sel] = 1  # early
    prf[roi == "hV4"] = 7
    streams[roi == "hV4"] = 2  # midventral
    sel = roi == "higher"
    streams[sel] = _split_by_median(z[sel], 5, 6)  # ventral below, lateral above
    sel = roi == "MTL"
    mtl[sel] = _split_by_median(y[sel], 4, 1)  # PhC posterior, ErC anterior
    roi_files = {
        "nsdgeneral": np.ones(roi.size, np.int16),
        "prf-visualrois": prf,
        "streams": streams,
        "MTL": mtl,
    }
    for name, codes in roi_files.items():
        _save_nifti(atlas(codes), paths.roi(s, name))
    nc = np.zeros(mask.shape, dtype=np.float32)
    nc[xyz] = ncsnr
    _save_nifti(nib.Nifti1Image(nc, affine), paths.ncsnr(s))
