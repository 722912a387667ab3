"""Atomic file writes: a reader never sees a half-written file, a killed job loses nothing.

Every writer in the suite (datasets, checkpoints, ``save_pretrained``, run folders) goes
through :func:`atomic_path`: write to a temporary file in the same folder, flush and
``fsync``, then ``os.replace`` it onto the target (atomic on POSIX and Windows). The file
gets the permissions of a plain ``open(path, "w")`` (``0o666`` less the user's umask), not
the ``0o600`` of :func:`tempfile.mkstemp`.

Readers go through :func:`reading`: a file that exists but cannot be parsed (truncated,
damaged, another format) raises :class:`CorruptFileError` naming the path and what it was
expected to hold, instead of the h5py / zlib / scipy / zipfile / safetensors error of the
library underneath.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask (reading it needs setting it; a lock keeps that race-free here)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Permission bits of a new file made by ``open(path, "w")``: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """Permission bits of a new folder made by ``os.mkdir``: ``0o777 & ~umask``."""
    return 0o777 & ~_umask()


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a written file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CorruptFileError(ValueError):
    """A file that exists but cannot be read as what it should hold.

    Attributes
    ----------
    path : Path
        The file.
    expected : str
        What it was expected to hold (e.g. ``"HDF5 with dataset '/betas'"``).
    """

    def __init__(self, path: str | os.PathLike, expected: str, cause: BaseException | None):
        self.path = Path(path)
        self.expected = expected
        why = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        super().__init__(
            f"{self.path}: cannot be read as {expected}{why}; the file is truncated or "
            "damaged: write or download it again"
        )


@contextlib.contextmanager
def reading(path: str | os.PathLike, expected: str) -> Iterator[None]:
    """Turn any failure of a library reading ``path`` into a :class:`CorruptFileError`.

    The suite's own errors (raised by its code: they already name the file and the field),
    a ``CorruptFileError`` of an inner reader and ``FileNotFoundError`` pass through.

    Parameters
    ----------
    path : path-like
        The file being read.
    expected : str
        What the file should hold, for the message.
    """
    try:
        yield
    except (FileNotFoundError, CorruptFileError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - h5py, zlib, scipy, zipfile, safetensors ...
        if _raised_by_the_suite(err):
            raise
        raise CorruptFileError(path, expected, err) from err


_SUITE_DIRS = tuple(
    str(Path(__file__).resolve().parents[1] / pkg) + os.sep
    for pkg in ("data_loaders", "decoding", "neurosim", "neurosuite")
)


def _raised_by_the_suite(err: BaseException) -> bool:
    """True when the innermost frame of ``err`` is the suite's code (not a library's)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_SUITE_DIRS)


def load_npz(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a ``.npz`` archive fully into a dict, naming the file if it is damaged.

    Parameters
    ----------
    path : path-like
        The archive.
    keys : tuple of str
        Arrays that must be present; a missing one is a :class:`CorruptFileError`.

    Returns
    -------
    dict of str -> ndarray
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npz file")
    what = "a NumPy .npz archive" + (f" with arrays {list(keys)}" if keys else "")
    with reading(path, what), np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    missing = [k for k in keys if k not in out]
    if missing:
        raise CorruptFileError(path, what, KeyError(f"missing {missing}; has {sorted(out)}"))
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    Parameters
    ----------
    path : path-like
        The final file.
    suffix : str | None
        Suffix of the temporary file (some writers, e.g. nibabel, pick the format from
        it). Defaults to the suffix(es) of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, default_file_mode())  # mkstemp made it 0o600
        fsync_path(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _to_jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON; say so explicitly
        return None
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically; numpy scalars and arrays become plain numbers."""
    return atomic_write_text(path, json.dumps(_to_jsonable(obj), indent=indent, sort_keys=False))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; it replaces the folder ``path`` only on success.

    Everything written into the yielded folder is fsynced, then the folder is renamed onto
    ``path``: a reader (or a killed writer) sees the old folder whole or the new one whole,
    never a mix of the two. An existing ``path`` is first renamed aside and removed after
    the swap; if the process dies between the two renames, the old folder survives as
    ``.<name>.old-*`` next to it.

    Parameters
    ----------
    path : path-like
        The final folder.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, default_dir_mode())  # mkdtemp made it 0o700
        for f in tmp.rglob("*"):
            if f.is_file():
                os.chmod(f, default_file_mode())
                fsync_path(f)
        fsync_path(tmp)
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old / path.name, path)
            raise
        fsync_path(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
