"""Reconstructions as data: one ``reconstructions.npz`` per run, as MindEye writes its outputs.

A reconstruction figure shows eight images; a user who wants to score them with another
metric, or compare two runs, needs the arrays. Every job that reconstructs images writes
them with :func:`save_reconstructions` to its run folder (atomically: a temporary file, then
a rename), and :func:`load_reconstructions` reads them back, checked.

The file holds
- ``true_images``: uint8 ``(n, H, W, 3)``, the stimuli;
- ``stim_ids``: ``(n,)``, their identifiers (integers or strings);
- one uint8 array of the same shape as ``true_images`` per row of the job's reconstruction
  table, named after the row (e.g. ``generated``, ``selected``, ``retrieval``,
  ``regression`` for the generation job; ``cross_subj01`` ... for MindBridge).

Examples
--------
>>> rec = load_reconstructions("runs/stimulus_diffusion-.../reconstructions.npz")  # doctest: +SKIP
>>> rec.rows                      # ('generated', 'selected', 'retrieval', 'regression', ...)
>>> rec["generated"].shape        # (n, 64, 64, 3) uint8
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Reconstructions", "save_reconstructions", "load_reconstructions"]

_RESERVED = ("true_images", "stim_ids")


@dataclass(frozen=True)
class Reconstructions:
    """What :func:`load_reconstructions` returns.

    Attributes
    ----------
    true_images : ndarray of uint8, shape (n, H, W, 3)
    stim_ids : ndarray, shape (n,)
    images : dict of str -> ndarray of uint8, shape (n, H, W, 3)
        One array per row of the job's table, in the order they were saved.
    path : Path or None
        The file it was read from.
    """

    true_images: np.ndarray
    stim_ids: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def rows(self) -> tuple[str, ...]:
        """Names of the reconstruction rows."""
        return tuple(self.images)

    def __getitem__(self, row: str) -> np.ndarray:
        if row not in self.images:
            raise KeyError(f"row: {row!r} is not in this file; expected one of {self.rows}")
        return self.images[row]

    def __len__(self) -> int:
        return len(self.true_images)


def _as_uint8(name: str, images: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    from decoding.evaluation.image_eval import to_uint8

    arr = to_uint8(images, name)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (that of true_images), got {arr.shape}")
    return arr


def _check_ids(stim_ids: Any, n: int) -> np.ndarray:
    ids = np.asarray(stim_ids)
    if ids.ndim != 1 or len(ids) != n:
        raise ValueError(f"stim_ids: expected shape ({n},) (one per true image), got {ids.shape}")
    if ids.dtype.kind not in "iuU":
        raise ValueError(f"stim_ids: expected integers or strings, got dtype {ids.dtype}")
    return ids


def save_reconstructions(
    path: str | os.PathLike,
    true_images: Any,
    stim_ids: Any,
    rows: Mapping[str, Any],
) -> Path:
    """Write ``reconstructions.npz`` atomically.

    Parameters
    ----------
    path : path-like
        The file (``.npz``); an existing file is replaced only once the new one is complete.
    true_images : array, shape (n, H, W, 3)
        uint8, or float in [0, 1] (rounded to uint8).
    stim_ids : array, shape (n,)
        Integer or string identifiers of the stimuli.
    rows : mapping of str -> array, shape (n, H, W, 3)
        One set of reconstructions per row of the table (uint8 or float in [0, 1]).

    Returns
    -------
    Path
        The written file.
    """
    from data_loaders._io import atomic_path

    true = _as_uint8("true_images", true_images, None)
    ids = _check_ids(stim_ids, len(true))
    if not rows:
        raise ValueError("rows: expected at least one row of reconstructions, got none")
    arrays: dict[str, np.ndarray] = {"true_images": true, "stim_ids": ids}
    for name, ims in rows.items():
        if not isinstance(name, str) or not name.isidentifier() or name in _RESERVED:
            raise ValueError(
                f"rows: {name!r} is not a valid row name (a Python identifier other than "
                f"{_RESERVED})"
            )
        arrays[name] = _as_uint8(f"rows[{name!r}]", ims, true.shape)
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def load_reconstructions(path: str | os.PathLike) -> Reconstructions:
    """Read and check a ``reconstructions.npz`` (:func:`save_reconstructions`).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not a readable npz (truncated, corrupt; names the path), or a key is
        missing, or an array has another length, shape or dtype than ``true_images``
        (names the key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no reconstructions file at {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{str(path)!r}: not a readable reconstructions.npz ({err})") from err
    for key in _RESERVED:
        if key not in data:
            raise ValueError(f"{str(path)!r}: missing key {key!r}; it has {sorted(data)}")
    true = data.pop("true_images")
    if true.dtype != np.uint8 or true.ndim != 4 or true.shape[-1] != 3:
        raise ValueError(
            f"{str(path)!r}: key 'true_images' must be uint8 (n, H, W, 3), got {true.dtype} "
            f"{true.shape}"
        )
    ids = data.pop("stim_ids")
    if ids.ndim != 1 or len(ids) != len(true):
        raise ValueError(
            f"{str(path)!r}: key 'stim_ids' has shape {ids.shape}, expected ({len(true)},)"
        )
    if not data:
        raise ValueError(f"{str(path)!r}: no reconstruction rows besides {_RESERVED}")
    for key, arr in data.items():
        if arr.dtype != np.uint8:
            raise ValueError(f"{str(path)!r}: key {key!r} has dtype {arr.dtype}, expected uint8")
        if arr.shape != true.shape:
            raise ValueError(
                f"{str(path)!r}: key {key!r} has shape {arr.shape}, expected {true.shape} "
                "(that of true_images)"
            )
    return Reconstructions(true_images=true, stim_ids=ids, images=data, path=path)
