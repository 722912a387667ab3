"""Where the suite keeps generated datasets: ``$NEUROSUITE_DATA`` or the user's cache dir."""

from __future__ import annotations

import os
from pathlib import Path


def data_home(data_home: str | os.PathLike | None = None) -> Path:
    """Return (and create) the folder for cached datasets.

    Parameters
    ----------
    data_home : path-like | None
        Explicit folder. Defaults to ``$NEUROSUITE_DATA``, else ``<user cache>/neurosuite``
        (e.g. ``~/.cache/neurosuite`` on Linux), like scikit-learn's ``get_data_home``.
    """
    if data_home is None:
        data_home = os.environ.get("NEUROSUITE_DATA")
    if data_home is None:
        from platformdirs import user_cache_dir

        data_home = user_cache_dir("neurosuite")
    path = Path(data_home).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
